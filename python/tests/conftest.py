"""Fixtures of the kvm package's tests.

The dumps: the sample amd64 minidump the repository carries (tests/data:
kernel and vmcore, the fixture's sample machine, tests/fixture/amd64.rs),
and, for what it cannot show, the dumps `cargo run --example demo` writes
into target/samples (an amd64 ELF full dump, which holds the kernel's page
tables, a version 3 minidump, a Linux vmcore that opens without its
kernel).

Values are checked against an independent path where there is one: the
`vmcore` command-line tool of this repository (cli/, built by `cargo build
-p vmcore`), the facts the fixture builds into the sample machine, and the
core file's own bytes.

Tests that need the tool or target/samples are skipped when these are
missing, unless KVM_PYTHON_STRICT=1 (python/ci.sh sets it): then they fail.
"""

import os
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest

import kvm
from support import CORE, KERNEL, ROOT, SAMPLES, missing


@pytest.fixture
def dump() -> Iterator[kvm.Kvm]:
    """The sample minidump, opened for one test."""
    with kvm.open(KERNEL, CORE) as d:
        yield d


Run = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(scope="session")
def vmcore() -> Run:
    """Runs the `vmcore` tool: vmcore(*args, check=True) -> CompletedProcess
    (stdout as bytes). $KVM_VMCORE, else target/{debug,release}/vmcore."""
    candidates = [os.environ.get("KVM_VMCORE")] + [
        str(ROOT / "target" / p / "vmcore") for p in ("debug", "release")
    ]
    found = [c for c in candidates if c and os.access(c, os.X_OK)]
    if not found:
        missing("no vmcore tool: run `cargo build -p vmcore` (or set KVM_VMCORE)")
    tool = found[0]

    def run(*args: object, check: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run([tool, *map(str, args)], capture_output=True, timeout=120)
        if check and p.returncode != 0:
            raise AssertionError(f"vmcore {args}: {p.stderr.decode(errors='replace')}")
        return p

    return run


@pytest.fixture(scope="session")
def samples() -> Path:
    """target/samples, as `cargo run --example demo` writes it."""
    need = ["kernel", "vmcore.full", "vmcore.minidump3", "vmcore.linux-x86_64.kdump"]
    if not all((SAMPLES / n).is_file() for n in need):
        missing(f"no sample dumps in {SAMPLES}: run `cargo run --example demo`")
    return SAMPLES
