"""What the tests share: where the dumps are, the facts the fixture built
into the sample machine, and the CLI's page listing redone in Python."""

import os
from pathlib import Path
from typing import List, Optional

import pytest

import kvm

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
KERNEL = DATA / "kernel"
CORE = DATA / "vmcore"
SAMPLES = ROOT / "target" / "samples"

# Facts of the fixture's sample machine (tests/fixture/amd64.rs,
# tests/fixture/procs.rs).
VERSION = b"FreeBSD 14.2-RELEASE amd64 fixture #0: built by tests/fixture/amd64.rs\n"
NCPUS = 4
PANIC = "page fault while in kernel mode"
DUMPTID = 100042
KERNBASE = 0xFFFF_FFFF_8000_0000
PAGE = 4096
# k4_pages (va::K4): 16 pages of kernel VM; page 3 is unmapped, page 12 maps
# device memory (MMIO) outside RAM, page i lives at k4_pa(i).
MMIO = 0xFEE0_0000


def k4_pa(i: int) -> int:
    """Where page i of k4_pages lives (tests/fixture/amd64.rs: k4_pa)."""
    return 0x0280_0000 + ((i * 7) % 16) * PAGE


STRICT = os.environ.get("KVM_PYTHON_STRICT") == "1"


def missing(why: str) -> None:
    """Skips the test, or fails it under KVM_PYTHON_STRICT=1."""
    if STRICT:
        pytest.fail(why + " (KVM_PYTHON_STRICT=1)")
    pytest.skip(why)


def merged_runs(pages: List[kvm.Page]) -> List[str]:
    """The lines `vmcore pages` prints for these pages: runs of contiguous
    pages of one kind merged (cli/src/main.rs: pages, Run::extends)."""
    lines: List[str] = []
    first: Optional[kvm.Page] = None
    n = 0  # the run's length
    for p in pages:
        if first is not None:
            f = first
            if (
                p.vaddr == f.vaddr + n
                and p.paddr == f.paddr + n
                and p.prot == f.prot
                and (f.kmap_vaddr == 0) == (p.kmap_vaddr == 0)
                and (p.offset is None) == (f.offset is None)
            ):
                n += p.len
                continue
            lines.append(_run_line(f, n))
        first, n = p, p.len
    if first is not None:
        lines.append(_run_line(first, n))
    return lines


def _run_line(p: kvm.Page, n: int) -> str:
    prot = "".join(
        c if p.prot & bit else "-"
        for bit, c in ((kvm.PROT_READ, "r"), (kvm.PROT_WRITE, "w"), (kvm.PROT_EXECUTE, "x"))
    )
    kind = "kmap" if p.kmap_vaddr else "dmap"
    off = "not in dump" if p.offset is None else f"offset {p.offset:#x}"
    end = (p.vaddr + n) % (1 << 64)
    return f"{p.vaddr:016x}-{end:016x} {prot} {kind} phys {p.paddr:#x} {off}"
