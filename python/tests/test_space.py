"""Spaces stacked on a dump (kvm::Space): linear ranges, page tables."""

import pytest

import kvm
from support import KERNBASE, PAGE, VERSION

CR0_PE, CR0_PG = 1 << 0, 1 << 31
CR4_PAE = 1 << 5
EFER_LME, EFER_LMA = 1 << 8, 1 << 10


def test_a_linear_window_on_kernel_memory(dump):
    version = dump.symbol("version")
    text = version & ~0x1F_FFFF
    with dump.space("linear", base="virt", ranges=[(0, 2 << 20, text)]) as w:
        assert isinstance(w, kvm.Space) and isinstance(w, kvm.AddressSpace)
        assert w.name == "linear space (layer 1)"
        assert repr(w) == "<kvm.Space linear space (layer 1)>"
        assert w.read(0x1000, 64) == dump.read(text + 0x1000, 64)
        assert w.read_cstr(version - text) == VERSION
        assert w.read_u64(8) == dump.read_u64(text + 8)
        # Its physical space is its base's: the kernel's virtual space.
        assert w.translate(0x1010) == text + 0x1010
        assert w.read_phys(version, 16) == VERSION[:16]
        # One leaf, the range, at the file offset of its target.
        offset = next(p.offset for p in dump.pages() if p.kmap_vaddr == text)
        rwx = kvm.PROT_READ | kvm.PROT_WRITE | kvm.PROT_EXECUTE
        assert list(w.pages()) == [kvm.Page(text, 0, 0, rwx, offset, 2 << 20)]
        with pytest.raises(kvm.KvmError) as e:
            w.read(2 << 20, 1)
        assert str(e.value) == (
            "invalid address (0x200000): in linear space (layer 1): not mapped: "
            "none of the space's 1 linear ranges holds it"
        )


def test_ranges_take_any_iterable_of_triples(dump):
    version = dump.symbol("version")
    gen = (r for r in [kvm.Range(0x5000, 0x100, version), (0x1000, 0x10, version)])
    with dump.space("linear", base="virt", ranges=gen) as s:
        # Sorted by address.
        assert [(p.kmap_vaddr, p.len) for p in s.pages()] == [(0x1000, 0x10), (0x5000, 0x100)]
        assert s.read(0x5000, 16) == s.read(0x1000, 16) == VERSION[:16]
        with pytest.raises(kvm.KvmError, match=r"^invalid address \(0x1010\)"):
            s.read(0x1000, 17)


def test_spaces_stack_and_outlive_their_base(dump):
    version = dump.symbol("version")
    one = dump.space("linear", base="virt", ranges=[(0x10000, PAGE, version & ~0xFFF)])
    two = one.space("linear", base="virt", ranges=[(0, PAGE, 0x10000)])
    assert two.name == "linear space (layer 2)"
    off = version & 0xFFF
    assert two.read(off, 7) == b"FreeBSD"
    with pytest.raises(kvm.KvmError) as e:
        two.read(PAGE, 1)
    assert "in linear space (layer 2)" in str(e.value)
    dump.close()
    one.close()
    assert two.read(off, 7) == b"FreeBSD"
    with pytest.raises(ValueError, match="closed"):
        one.read(0x10000, 1)
    two.close()
    assert two.closed and repr(two).endswith("(closed)>")


def test_descriptions_that_do_not_fit_are_refused(dump):
    with pytest.raises(ValueError, match="unknown paging 'sparc'"):
        dump.space("sparc", root=0)
    with pytest.raises(ValueError, match="base must be 'phys' or 'virt'"):
        dump.space("x86_64", root=0, base="kernel")
    with pytest.raises(TypeError, match=r"paging='x86_64' needs the root= keyword \(the CR3\)"):
        dump.space("x86_64")
    with pytest.raises(TypeError, match="paging='x86_64' takes no ranges= keyword"):
        dump.space("x86_64", root=0, ranges=[])
    with pytest.raises(TypeError, match="paging='linear' takes no root= keyword"):
        dump.space("linear", root=0, ranges=[(0, 1, 0)])
    with pytest.raises(TypeError, match="paging='x86_auto' needs the cr4= keyword"):
        dump.space("x86_auto", root=0, cr0=0)
    with pytest.raises(TypeError, match="paging='aarch64' needs the tcr= keyword"):
        dump.space("aarch64", root=0)
    with pytest.raises(ValueError, match="expected tuple of length 3"):
        dump.space("linear", ranges=[(0, 1)])
    with pytest.raises(TypeError):
        dump.space("linear", ranges=[0x1000])
    with pytest.raises(TypeError):
        dump.space("linear", ranges=0x1000)
    # What the library refuses is a KvmError with its message.
    with pytest.raises(kvm.KvmError) as e:
        dump.space("linear", ranges=[])
    assert str(e.value) == "invalid space: a linear space needs at least one range"
    with pytest.raises(kvm.KvmError, match="overlaps"):
        dump.space("linear", ranges=[(0, 0x2000, 0), (0x1000, 0x1000, 0)])


def test_the_minidump_lacks_the_kernels_page_tables(dump):
    root = dump.read_u64(dump.symbol("KPML4phys"))
    with pytest.raises(kvm.KvmError) as e:
        dump.space("x86_64", root=root)
    assert str(e.value) == (
        f"invalid space: the x86-64 root table at {root:#x}: mapped to physical "
        f"address {root:#x}, which is not in the dump"
    )


def test_the_kernels_own_page_tables(samples):
    """An x86-64 space over the full dump's physical memory, from the
    kernel's own PML4 (KPML4phys), translates as the dump does."""
    with kvm.open(samples / "kernel", samples / "vmcore.full") as d:
        root = d.read_u64(d.symbol("KPML4phys"))
        with d.space("x86_64", root=root, base="phys") as s:
            assert s.name == "x86-64 space (layer 1)"
            version = d.symbol("version")
            assert s.read(version, len(VERSION)) == VERSION
            k4 = d.symbol("k4_pages")
            addrs = [version, k4, k4 + 5 * PAGE + 17, KERNBASE + (2 << 20)]
            for a in addrs:
                assert s.translate(a) == d.translate(a)
                assert s.read(a, 64) == d.read(a, 64)
            for a in (k4 + 3 * PAGE, KERNBASE):
                with pytest.raises(
                    kvm.KvmError, match=f"^invalid address \\({a:#x}\\): in x86-64 space"
                ):
                    s.read(a, 1)
            # The same leaves as the dump's own walk, which knows the
            # direct map: it reports the direct map's leaves by their
            # dmap_vaddr, and adds the direct-map address of the others.
            mine = [(p.kmap_vaddr, p.paddr, p.len, p.prot, p.offset) for p in s.pages()]
            dumps = [(p.vaddr, p.paddr, p.len, p.prot, p.offset) for p in d.pages()]
            assert mine == dumps and len(mine) > 500
        # x86_auto chooses 4-level paging from these registers, and the
        # identity map with paging off.
        auto = d.space(
            "x86_auto", root=root, cr0=CR0_PG | CR0_PE, cr4=CR4_PAE, efer=EFER_LME | EFER_LMA
        )
        assert auto.name == "x86-64 space (layer 1)"
        assert auto.read(version, 7) == b"FreeBSD"
        off = d.space("x86_auto", root=root, cr0=CR0_PE, cr4=0, efer=0)
        assert off.name == "identity space (layer 1)"
        assert off.read(d.translate(version), 7) == b"FreeBSD"
        with pytest.raises(kvm.KvmError, match="^not supported: a space with paging off"):
            list(off.pages())
