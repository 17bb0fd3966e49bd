"""The pages iterator (kvm_walk_pages) and Page records."""

import gc
import itertools
import threading

import pytest

import kvm
from support import CORE, KERNEL, MMIO, PAGE, k4_pa, merged_runs


def test_pages_match_the_cli(dump, vmcore):
    pages = list(dump.pages())
    assert all(isinstance(p, kvm.Page) for p in pages)
    assert merged_runs(pages) == vmcore("pages", KERNEL, CORE).stdout.decode().splitlines()


@pytest.mark.parametrize(
    "kernel, core",
    [
        ("kernel", "vmcore.full"),
        ("kernel", "vmcore.minidump3"),
        ("-", "vmcore.linux-x86_64.kdump"),
    ],
)
def test_pages_of_other_dumps_match_the_cli(samples, vmcore, kernel, core):
    k = None if kernel == "-" else samples / kernel
    with kvm.open(k, samples / core) as d:
        lines = merged_runs(list(d.pages()))
    assert (
        lines
        == vmcore("pages", kernel if k is None else k, samples / core).stdout.decode().splitlines()
    )


def test_pages_hold_what_the_core_file_holds(dump):
    """Each dumped page's offset points at its bytes in the core file."""
    with open(CORE, "rb") as f:
        core = f.read()
    n = 0
    for p in dump.pages():
        assert p.len % PAGE == 0 and p.prot & kvm.PROT_READ
        if p.offset is None:
            continue
        size = min(p.len, 2 * PAGE)
        assert dump.read(p.vaddr, size) == core[p.offset : p.offset + size]
        assert dump.read_phys(p.paddr, size) == core[p.offset : p.offset + size]
        assert dump.translate(p.vaddr) == p.paddr
        n += 1
    assert n > 100


def test_k4_pages(samples):
    """k4_pages: 16 scattered 4 KiB pages; page 3 unmapped, page 12 device
    memory outside RAM (so not in the dump)."""
    for core in ("vmcore.full", "vmcore.minidump3"):
        with kvm.open(samples / "kernel", samples / core) as d:
            k4 = d.symbol("k4_pages")
            found = {
                (p.kmap_vaddr - k4) // PAGE: p
                for p in d.pages()
                if k4 <= p.kmap_vaddr < k4 + 16 * PAGE
            }
            assert sorted(found) == [i for i in range(16) if i != 3]
            for i, p in found.items():
                assert p.len == PAGE
                if i == 12:
                    assert (p.paddr, p.offset) == (MMIO, None)
                    with pytest.raises(
                        kvm.KvmError, match=f"physical address {MMIO:#x}, which is not in the dump"
                    ):
                        d.read(p.kmap_vaddr, 1)
                else:
                    assert p.paddr == k4_pa(i) and p.offset is not None
                    assert d.read(p.kmap_vaddr, PAGE) == d.read_phys(k4_pa(i), PAGE)
            with pytest.raises(
                kvm.KvmError, match=f"^invalid address \\({k4 + 3 * PAGE:#x}\\): not mapped"
            ):
                d.read(k4 + 3 * PAGE, 1)


def test_iterator_protocol(dump):
    it = dump.pages()
    assert iter(it) is it
    assert isinstance(it, kvm.PageIterator)
    pages = list(it)
    assert len(pages) == len(set(pages)) > 0
    with pytest.raises(StopIteration):
        next(it)
    # Each call walks anew.
    assert list(dump.pages()) == pages


def test_dropping_an_iterator_stops_its_walk(dump):
    first = list(itertools.islice(dump.pages(), 3))
    gc.collect()
    for _ in range(50):
        it = dump.pages()
        assert next(it) == first[0]
        del it
    # An iterator walks on after the handle is closed, as calls under way
    # do: it holds the dump.
    it = dump.pages()
    dump.close()
    assert list(it)[:3] == first


def test_threads_share_an_iterator(dump):
    want = list(dump.pages())
    it = dump.pages()
    got = [[] for _ in range(4)]

    def drain(out):
        for p in it:
            out.append(p)

    threads = [threading.Thread(target=drain, args=(g,)) for g in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(itertools.chain(*got), key=want.index) == want


def test_page_records(dump):
    p = next(dump.pages())
    assert eval(repr(p), {"Page": kvm.Page}) == p
    assert hash(kvm.Page(p.paddr, p.kmap_vaddr, p.dmap_vaddr, p.prot, p.offset, p.len)) == hash(p)
    assert p != kvm.Page(p.paddr, p.kmap_vaddr, p.dmap_vaddr, p.prot, None, p.len)
    with pytest.raises(AttributeError):
        p.paddr = 0
    dmap_only = kvm.Page(0x1000, 0, 0xFFFFF80000001000, kvm.PROT_READ, None, PAGE)
    assert dmap_only.vaddr == 0xFFFFF80000001000
    assert repr(dmap_only) == (
        "Page(paddr=0x1000, kmap_vaddr=0x0, dmap_vaddr=0xfffff80000001000, prot=0x1, "
        "offset=None, len=0x1000)"
    )
