"""Read FreeBSD kernel crash dumps and Linux vmcores of any architecture.

A libkvm-compatible reader, on any host: open a kernel and its dump, resolve
symbols, read kernel virtual and physical memory, translate addresses, walk
the mapped pages, list threads and their registers, and stack address
spaces (a guest's, a process's) on a dump::

    import kvm

    with kvm.open("kernel", "vmcore") as dump:
        print(dump.read_cstr(dump.symbol("version")).decode())
        for page in dump.pages():
            ...

Errors of the library raise KvmError, an OSError whose text is the
library's message. Reads release the GIL.
"""

from typing import NamedTuple

from ._kvm import (
    PROT_EXECUTE,
    PROT_READ,
    PROT_WRITE,
    AddressSpace,
    Kvm,
    KvmError,
    Page,
    PageIterator,
    Space,
    Thread,
    __version__,
    open,
)


class Range(NamedTuple):
    """A range of a "linear" space (AddressSpace.space("linear", ranges=...)):
    ``[addr, addr + len)`` of the new space lies at ``target`` of its base."""

    addr: int
    """First address in the new space."""
    len: int
    """Length in bytes."""
    target: int
    """Where ``addr`` lies in the base space."""


__all__ = [
    "PROT_EXECUTE",
    "PROT_READ",
    "PROT_WRITE",
    "AddressSpace",
    "Kvm",
    "KvmError",
    "Page",
    "PageIterator",
    "Range",
    "Space",
    "Thread",
    "__version__",
    "open",
]
