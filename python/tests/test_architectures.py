"""The demo's FreeBSD samples of the 32-bit and big-endian backends (arm,
mips, powerpc64, powerpc) through Python: each opens with its backend,
reads its kernel's version string, agrees with the CLI on the kernel
displacement, and translates the pages its walk reports."""

import pytest

import kvm

SAMPLES = [
    # kernel, core, backend, big-endian
    ("kernel.armv6", "vmcore.armv6.full", "arm ELF full dump", False),
    ("kernel.armv4", "vmcore.armv4.minidump2", "arm minidump", False),
    ("kernel.mips64", "vmcore.mips64.minidump2", "mips64 minidump", True),
    ("kernel.mipsel", "vmcore.mipsel.minidump2", "mipsel minidump", False),
    ("kernel.powerpc64", "vmcore.powerpc64.minidump2", "powerpc64 minidump", True),
    ("kernel.powerpc64le", "vmcore.powerpc64le.minidump1", "powerpc64le minidump", False),
    ("kernel.powerpc", "vmcore.powerpc.elf", "powerpc ELF dump", True),
]


@pytest.mark.parametrize("kernel,core,backend,big_endian", SAMPLES)
def test_sample(samples, vmcore, kernel, core, backend, big_endian):
    if not (samples / core).is_file():
        pytest.fail(f"{core} missing: run `cargo run --example demo`")
    with kvm.open(samples / kernel, samples / core) as d:
        assert d.backend == backend
        assert d.big_endian == big_endian
        assert not d.native
        assert d.read_cstr(d.symbol("version")).startswith(b"FreeBSD ")
        info = vmcore("info", samples / kernel, samples / core).stdout.decode()
        line = next(l for l in info.splitlines() if l.startswith("kerndisp:"))
        assert int(line.split()[1], 16) == d.kerndisp % (1 << 64)
        # powerpc64 minidumps are the one FreeBSD format with a displacement.
        assert (d.kerndisp != 0) == (core == "vmcore.powerpc64.minidump2")
        checked = 0
        for p in d.pages():
            # ELF dumps of virtual chunks have no physical addresses (their
            # p_paddr is all ones, in the ELF class's width).
            if p.offset is None or p.paddr in ((1 << 32) - 1, (1 << 64) - 1):
                continue
            va = p.kmap_vaddr or p.dmap_vaddr
            assert d.translate(va) == p.paddr, f"{va:#x}"
            checked += 1
            if checked == 64:
                break
        assert checked > 0 or backend == "powerpc ELF dump"
