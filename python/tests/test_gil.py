"""Reads release the GIL, and threads read through one handle at once."""

import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import kvm
from support import CORE, KERNEL

# Bytes of the slow read: one translation each.
SLOW = 1 << 17


def test_reads_release_the_gil(dump):
    """With a switch interval of 1000 s, Python never takes the GIL from a
    thread: another thread runs only when one lets it go. A reader makes
    slow reads (~10 ms: a space of 1-byte ranges, one translation a byte)
    while a watcher waits to run and stop it: the watcher runs during the
    reader's first read only if the read releases the GIL (else after all
    of them)."""
    base = dump.symbol("version") & ~0xFFF
    slow = dump.space("linear", base="virt", ranges=[(i, 1, base + i) for i in range(SLOW)])
    want = dump.read(base, SLOW)
    calls = 20
    state = {"reads": 0, "stop": False, "seen": None}

    def reader():
        for _ in range(calls):
            if state["stop"]:
                return
            state["reads"] += 1
            assert slow.read(0, SLOW) == want

    def watcher():
        state["seen"] = state["reads"]
        state["stop"] = True

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1000)
    try:
        r = threading.Thread(target=reader)
        w = threading.Thread(target=watcher)
        r.start()  # waits for the reader to start: the GIL is let go
        w.start()  # needs the GIL: it runs while a read runs
        r.join()
        w.join()
    finally:
        sys.setswitchinterval(interval)
    assert state["stop"]
    assert state["reads"] < calls, "the reads held the GIL"
    # The watcher ran while a read was under way, not between two.
    assert state["seen"] == state["reads"]


def test_threads_read_one_handle_at_once(dump):
    """Reads of every kind from 8 threads at once return what one thread
    reads."""
    pages = [p for p in dump.pages() if p.offset is not None]
    places = [(p.vaddr + (i * 97) % 4000, 1 + i % 300) for i, p in enumerate(pages)]
    thread = next(t for t in dump.threads() if t.crashed)
    calls = (
        [("read", a, n) for a, n in places]
        + [("read_phys", p.paddr, 4096) for p in pages[::7]]
        + [("translate", a, 0) for a, _ in places[::5]]
        + [("read_u64", a, 0) for a, _ in places[::5]]
    )

    def run(call):
        what, a, n = call
        if what in ("read", "read_phys"):
            return getattr(dump, what)(a, n)
        return getattr(dump, what)(a)

    want = {c: run(c) for c in calls}
    regs = dump.registers(thread)

    def work(k):
        mine = calls[k::8] + calls[: k * 8]
        got = {c: run(c) for c in mine * 2}
        return got, dump.registers(thread), dump.message_buffer()

    with ThreadPoolExecutor(8) as pool:
        for got, r, msgs in pool.map(work, range(8)):
            assert all(want[c] == v for c, v in got.items())
            assert r == regs and msgs == dump.message_buffer()


def test_close_while_another_thread_reads():
    d = kvm.open(KERNEL, CORE)
    version = d.symbol("version")
    errors, done = [], threading.Event()

    def reader():
        try:
            while not done.is_set():
                d.read(version, 64 << 10)
        except ValueError:  # closed: the only error there may be
            pass
        except Exception as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    d.close()
    done.set()
    for t in threads:
        t.join()
    assert errors == []
