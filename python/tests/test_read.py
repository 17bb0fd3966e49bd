"""Reads of virtual and physical memory, typed reads, strings, symbols."""

import os
import re
import shutil
import struct

import pytest

import kvm
from support import CORE, KERNBASE, KERNEL, NCPUS, VERSION

# The sample kernel maps one 2 MiB page at KERNBASE + 2 MiB.
KERNEL_MAP = (KERNBASE + (2 << 20), KERNBASE + (4 << 20))


@pytest.mark.parametrize(
    "what, size",
    [
        ("version", len(VERSION)),
        ("version", 1),
        # Across pages, past the CLI's 64 KiB chunks.
        (hex(KERNEL_MAP[0]), 70_000),
        (hex(KERNEL_MAP[1] - 5000), 5000),
        ("panic", 300),
    ],
)
def test_read_matches_the_cli(dump, vmcore, what, size):
    addr = dump.symbol(what) if not what.startswith("0x") else int(what, 16)
    got = dump.read(addr, size)
    assert type(got) is bytes and len(got) == size
    assert got == vmcore("read", KERNEL, CORE, what, size, "--raw").stdout


def test_read_nothing(dump):
    assert dump.read(dump.symbol("version"), 0) == b""


def test_typed_reads_are_little_endian_here(dump):
    version = dump.symbol("version")
    raw = dump.read(version, 8)
    assert dump.read_u8(version) == raw[0] == ord("F")
    assert dump.read_u16(version) == struct.unpack("<H", raw[:2])[0]
    assert dump.read_u32(version) == struct.unpack("<I", raw[:4])[0]
    assert dump.read_u64(version) == struct.unpack("<Q", raw)[0]
    assert dump.read_u32(dump.symbol("mp_ncpus")) == NCPUS
    # msgbufp points into the kernel's data.
    msgbuf = dump.read_u64(dump.symbol("msgbufp"))
    assert KERNEL_MAP[0] <= msgbuf < KERNEL_MAP[1]


def test_read_cstr(dump):
    version = dump.symbol("version")
    assert dump.read_cstr(version) == VERSION  # the NUL after the newline ends it
    assert dump.read_cstr(version, max=7) == b"FreeBSD"  # no NUL within max
    assert dump.read_cstr(version + len(VERSION)) == b""
    assert dump.read_cstr(version, max=0) == b""
    with pytest.raises(kvm.KvmError, match=r"^invalid address \(0xffffffff80000000\)"):
        dump.read_cstr(KERNBASE)


def test_read_cstr_reads_page_by_page(dump):
    version = dump.symbol("version")
    n = len(VERSION) + 1
    # A space whose page 0 ends with the version string and its NUL, and
    # whose page 1 is not mapped: the string reads; without its NUL, the
    # read runs into page 1 and fails there.
    with dump.space("linear", base="virt", ranges=[(0x1000 - n, n, version)]) as s:
        assert s.read_cstr(0x1000 - n) == VERSION
    with dump.space("linear", base="virt", ranges=[(0x1000 - 7, 7, version)]) as s:
        with pytest.raises(kvm.KvmError, match=r"^invalid address \(0x1000\)"):
            s.read_cstr(0x1000 - 7)


def test_unmapped_reads_name_the_address(dump, vmcore):
    with pytest.raises(kvm.KvmError) as e:
        dump.read(KERNBASE, 8)
    assert str(e.value).startswith("invalid address (0xffffffff80000000): not mapped")
    assert isinstance(e.value, OSError)
    cli = vmcore("read", KERNEL, CORE, hex(KERNBASE), 8, check=False)
    assert cli.returncode == 1 and cli.stderr.decode() == f"vmcore: {e.value}\n"
    # A read that runs off the end of the map names the first address
    # that fails, not the one it started at.
    with pytest.raises(kvm.KvmError, match=r"^invalid address \(0xffffffff80400000\)"):
        dump.read(KERNEL_MAP[1] - 8, 16)
    for read in (dump.read_u8, dump.read_u16, dump.read_u32, dump.read_u64):
        with pytest.raises(kvm.KvmError, match=r"^invalid address \(0xffffffff80000000\)"):
            read(KERNBASE)


def test_addresses_are_unsigned_64_bit(dump):
    with pytest.raises(OverflowError):
        dump.read(-1, 1)
    with pytest.raises(OverflowError):
        dump.read(1 << 64, 1)


def test_translate_matches_the_cli(dump, vmcore):
    version = dump.symbol("version")
    out = vmcore("vtop", KERNEL, CORE, "version").stdout.decode()
    pa = int(re.search(r"-> physical (0x[0-9a-f]+)", out).group(1), 16)
    assert dump.translate(version) == pa
    assert dump.translate(version + 0x123) == pa + 0x123
    with pytest.raises(kvm.KvmError, match=r"^invalid address \(0xffffffff80000000\): not mapped"):
        dump.translate(KERNBASE)


def test_read_phys(dump):
    version = dump.symbol("version")
    pa = dump.translate(version)
    assert dump.read_phys(pa, 8192) == dump.read(version, 8192)
    # Page table pages are not in a minidump.
    with pytest.raises(kvm.KvmError) as e:
        dump.read_phys(0x300_0000, 8)
    assert str(e.value) == "invalid physical address (0x3000000): not in the dump"


def test_core_that_shrinks_reads_short(tmp_path):
    """Only a core that shrinks under an open handle (read with pread)
    reads short: an error, or with partial=True the bytes up to its end."""
    core = tmp_path / "vmcore"
    shutil.copy(CORE, core)
    with kvm.open(KERNEL, core, pread=True) as d:
        version = d.symbol("version")
        offset = next(p.offset for p in d.pages() if p.kmap_vaddr == version & ~0xFFF)
        os.truncate(core, offset + (version & 0xFFF) + 16)
        assert d.read(version, 32, partial=True) == VERSION[:16]
        with pytest.raises(kvm.KvmError) as e:
            d.read(version, 32)
        assert str(e.value) == f"the core file ends after 16 of the 32 bytes at {version:#x}"
        pa = d.translate(version)
        assert d.read_phys(pa, 32, partial=True) == VERSION[:16]
        with pytest.raises(
            kvm.KvmError, match=f"ends after 16 of the 32 bytes at physical address {pa:#x}$"
        ):
            d.read_phys(pa, 32)


def test_symbols_match_the_cli(dump, vmcore):
    listed = {}
    for line in vmcore("symbols", KERNEL, CORE).stdout.decode().splitlines():
        addr, _kind, name = line.split(maxsplit=2)
        listed[name] = int(addr, 16)
    mine = dict(dump.symbols())
    assert mine == listed
    for name, addr in listed.items():
        assert dump.symbol(name) == addr
    assert len(mine) > 20


def test_unknown_symbols_are_key_errors(dump):
    with pytest.raises(KeyError) as e:
        dump.symbol("no_such_symbol")
    assert e.value.args == ("no_such_symbol",)
    # kvm_nlist's a.out underscore.
    assert dump.symbol("_version") == dump.symbol("version")


def test_message_buffer_matches_the_cli(dump, vmcore):
    buf = dump.message_buffer()
    assert buf.endswith(b"<5>Copyright (c) 1992-2024 The FreeBSD Project.\n<6>fixture boot\n")
    # dmesg -a prints it as it is (plain dmesg strips the priorities).
    assert vmcore("dmesg", "--all", KERNEL, CORE).stdout == buf
