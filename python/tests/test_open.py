"""Opening and closing dumps, what a handle says of its dump, and errors."""

import errno
import platform
import re
from pathlib import Path

import pytest

import kvm
from support import CORE, KERNEL, NCPUS, PANIC, VERSION


def test_paths_are_str_or_pathlike():
    for kernel, core in [(str(KERNEL), str(CORE)), (KERNEL, CORE), (KERNEL, str(CORE))]:
        with kvm.open(kernel, core) as d:
            assert isinstance(d, kvm.Kvm) and isinstance(d, kvm.AddressSpace)
            assert d.backend == "amd64 minidump"
    with pytest.raises(TypeError):
        kvm.open(KERNEL, 42)


def test_properties_agree_with_the_cli(dump, vmcore):
    info = vmcore("info", KERNEL, CORE).stdout.decode()
    field = dict(re.findall(r"^([a-z ]+):\s+(.*)$", info, re.M))
    assert dump.backend == field["backend"]
    assert dump.native == (field["native"] == "yes")
    assert dump.kerndisp == int(field["kerndisp"], 16)
    assert f"({dump.memory_held} bytes)" in field["memory held"]
    assert dump.cpus == int(field["cpus"])
    assert dump.panic_string == field["panic"]
    assert field["kernel"].encode() + b"\n" == dump.read_cstr(dump.symbol("version"))


def test_what_the_fixture_built(dump):
    assert dump.backend == "amd64 minidump"
    assert dump.cpus == NCPUS
    assert dump.panic_string == PANIC
    assert dump.kerndisp == 0
    assert dump.arch == "i386:x86-64"
    assert dump.big_endian is False
    # The dump holds the kernel's 2 MiB page and the dumped pages besides.
    assert 2 << 20 <= dump.memory_held < CORE.stat().st_size
    assert dump.read(dump.symbol("version"), len(VERSION)) == VERSION


def test_native_is_the_hosts_architecture(dump):
    assert dump.native == (platform.machine().lower() in ("x86_64", "amd64"))


def test_context_manager_closes():
    with kvm.open(KERNEL, CORE) as d:
        assert not d.closed
        assert "(closed)" not in repr(d)
        version = d.symbol("version")
    assert d.closed
    assert repr(d) == f"<kvm.Kvm amd64 minidump, core {CORE} (closed)>"
    for call in (
        lambda: d.read(version, 8),
        lambda: d.read_u32(version),
        lambda: d.symbol("version"),
        lambda: d.backend,
        lambda: d.threads(),
        lambda: d.pages(),
        lambda: d.space("x86_64", root=0),
    ):
        with pytest.raises(ValueError, match="closed"):
            call()
    d.close()  # again: nothing


def test_an_exception_leaves_the_with_block_and_closes():
    with pytest.raises(RuntimeError, match="inside"):
        with kvm.open(KERNEL, CORE) as d:
            raise RuntimeError("inside")
    assert d.closed


def test_close_without_with():
    d = kvm.open(KERNEL, CORE)
    assert d.read(d.symbol("version"), 7) == b"FreeBSD"
    d.close()
    assert d.closed


def test_missing_file_is_an_oserror_with_errno(tmp_path):
    path = tmp_path / "no-such-kernel"
    with pytest.raises(kvm.KvmError) as e:
        kvm.open(path, CORE)
    assert isinstance(e.value, OSError)
    assert e.value.errno == errno.ENOENT
    assert str(e.value) == f"kernel {path}: No such file or directory"
    # `except OSError` catches what the library raises.
    try:
        kvm.open(KERNEL, tmp_path)
    except OSError as e:
        assert str(e) == (
            f"core {tmp_path}: is a directory, not a regular file "
            "(expected a crash dump: an ELF core or a minidump)"
        )
        assert e.errno is None
    else:
        pytest.fail("a directory opened as a core")


def test_files_swapped_or_missing_are_refused_naming_them(vmcore):
    with pytest.raises(kvm.KvmError) as e:
        kvm.open(CORE, KERNEL)
    # The same message as the command-line tool's.
    cli = vmcore("info", CORE, KERNEL, check=False)
    assert cli.returncode == 1
    assert cli.stderr.decode() == f"vmcore: {e.value}\n"
    # A FreeBSD dump cannot be read without its kernel (a Linux one can).
    with pytest.raises(kvm.KvmError, match="cannot be read without its kernel image"):
        kvm.open(None, CORE)


def test_pread_reads_the_same(dump):
    version = dump.symbol("version")
    with kvm.open(KERNEL, CORE, pread=True) as p:
        assert p.read(version, 4096) == dump.read(version, 4096)


def test_a_linux_vmcore_opens_without_its_kernel(samples, vmcore):
    core = samples / "vmcore.linux-x86_64.kdump"
    with kvm.open(None, core) as d:
        assert d.backend == "Linux x86-64"
        info = vmcore("info", "-", core).stdout.decode()
        assert f"({d.memory_held} bytes)" in info
        assert f"kerndisp:      {d.kerndisp:#x}" in info
        assert d.kerndisp != 0  # KASLR
        banner = d.read_cstr(d.symbol("linux_banner"))
        assert banner.startswith(b"Linux version 6.1.0-fixture")
        raw = vmcore("read", "-", core, "linux_banner", len(banner), "--raw").stdout
        assert raw == banner
        log = d.message_buffer()
        assert log.endswith(b"Kernel panic - not syncing: sysrq triggered crash\n")
        assert log == vmcore("dmesg", "--all", "-", core).stdout
        assert d.panic_string == "sysrq triggered crash"


def test_version_attribute():
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", kvm.__version__)
    assert Path(kvm.__file__).name == "__init__.py"
