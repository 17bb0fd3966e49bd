"""Threads and their registers."""

import pytest

import kvm
from support import CORE, DUMPTID, KERNBASE, KERNEL

# gdb's general registers of x86-64 (64bit-core.xml, 64bit-segments.xml).
X86_64 = (
    "rax rbx rcx rdx rsi rdi rbp rsp r8 r9 r10 r11 r12 r13 r14 r15 rip eflags "
    "cs ss ds es fs gs fs_base gs_base"
).split()


def cli_line(t: kvm.Thread) -> str:
    """The line `vmcore threads` prints for t (cli/src/main.rs)."""
    pid = "-" if t.pid < 0 else str(t.pid)
    cpu = "-" if t.cpu is None else str(t.cpu)
    if not t.comm or not t.name:
        name = t.comm or t.name
    elif t.comm == t.name:
        name = t.comm
    else:
        name = f"{t.comm}/{t.name}"
    mark = "*" if t.crashed else " "
    return f"{pid:>7} {t.tid:>7} {cpu:>4} {t.pcb:#18x} {mark}{name}"


def test_threads_match_the_cli(dump, vmcore):
    threads = dump.threads()
    lines = vmcore("threads", KERNEL, CORE).stdout.decode().splitlines()
    assert lines[1:] == [cli_line(t) for t in threads]
    assert len(threads) == 7


def test_the_dumping_thread(dump):
    crashed = [t for t in dump.threads() if t.crashed]
    assert len(crashed) == 1
    t = crashed[0]
    assert (t.tid, t.pid, t.comm, t.name, t.cpu) == (DUMPTID, 42, "sh", "sh", 0)
    assert repr(t) == (
        f"Thread(tid={DUMPTID}, pid=42, cpu=0, thread={t.thread:#x}, pcb={t.pcb:#x}, "
        "name='sh', comm='sh', crashed=True)"
    )


def test_registers_are_the_pcbs(dump):
    """FreeBSD amd64's struct pcb: r15, r14, r13, r12, rbp, rsp, rbx, rip
    (sys/amd64/include/pcb.h), read here as plain words; cs and ss are the
    kernel's selectors."""
    layout = ["r15", "r14", "r13", "r12", "rbp", "rsp", "rbx", "rip"]
    for t in dump.threads():
        regs = dump.registers(t)
        want = {name: dump.read_u64(t.pcb + 8 * i) for i, name in enumerate(layout)}
        want.update(cs=0x20, ss=0x28)
        assert regs == want
        # Known registers only, in gdb's order.
        assert list(regs) == [r for r in X86_64 if r in regs]
        assert "rax" not in regs
        assert KERNBASE <= regs["rip"]


def test_thread_records(dump):
    a, b = dump.threads(), dump.threads()
    assert a == b and a[0] is not b[0]
    assert {hash(t) for t in a} == {hash(t) for t in b}
    assert len(set(a)) == len(a)
    with pytest.raises(TypeError):
        kvm.Thread()
    with pytest.raises(AttributeError):
        a[0].tid = 1


def test_registers_need_a_thread(dump):
    with pytest.raises(TypeError):
        dump.registers(1)


def test_a_linux_dump_without_cpu_notes_has_no_threads(samples):
    with kvm.open(None, samples / "vmcore.linux-x86_64.kdump") as d:
        assert d.threads() == []
        assert d.cpus is None
