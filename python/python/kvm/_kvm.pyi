"""Type stubs of kvm._kvm, the native module (python/src/ in the repository)."""

import os
from types import TracebackType
from typing import Iterable, Iterator, Literal, Optional, Tuple, Type, TypeVar, Union, final

from typing_extensions import disjoint_base

_Path = Union[str, "os.PathLike[str]"]
_S = TypeVar("_S", bound="AddressSpace")
_Paging = Literal[
    "linear",
    "x86_64",
    "x86_64_la57",
    "i386",
    "i386_pae",
    "x86_auto",
    "ept",
    "aarch64",
    "riscv_sv39",
    "riscv_sv48",
    "riscv_sv57",
]

__version__: str
__all__ = [
    "AddressSpace",
    "Kvm",
    "KvmError",
    "PROT_EXECUTE",
    "PROT_READ",
    "PROT_WRITE",
    "Page",
    "PageIterator",
    "Space",
    "Thread",
    "__version__",
    "open",
]

PROT_READ: int
"""Page.prot bit: readable (VM_PROT_READ)."""
PROT_WRITE: int
"""Page.prot bit: writable (VM_PROT_WRITE)."""
PROT_EXECUTE: int
"""Page.prot bit: executable (VM_PROT_EXECUTE)."""

class KvmError(OSError):
    """An error of the library; ``str(e)`` is its message, which names the
    file or the address. ``errno`` is set when the system refused a file."""

def open(
    kernel: Optional[_Path],
    core: _Path,
    *,
    pread: bool = False,
    verify_kernel: bool = True,
) -> Kvm:
    """Opens a kernel image and its crash dump: a Kvm handle, a context
    manager. ``kernel`` None opens a Linux vmcore without its kernel file.
    Raises KvmError."""

@disjoint_base
class AddressSpace:
    """A space that reads, translates and walks its pages: a dump (Kvm) or a
    space stacked on one (Space). A context manager that closes it."""

    @property
    def big_endian(self) -> bool:
        """The byte order of read_u16, read_u32 and read_u64."""
    @property
    def closed(self) -> bool:
        """True once closed."""
    def read(self, addr: int, size: int, *, partial: bool = False) -> bytes:
        """``size`` bytes of the virtual space at ``addr``; KvmError naming the
        address when any of it does not translate. ``partial``: a core file
        that ends early gives the bytes up to its end instead of an error."""
    def read_phys(self, paddr: int, size: int, *, partial: bool = False) -> bytes:
        """``size`` bytes of the physical space at ``paddr``."""
    def read_u8(self, addr: int) -> int:
        """The unsigned byte at ``addr``."""
    def read_u16(self, addr: int) -> int:
        """The unsigned 16-bit integer at ``addr``, in the dump's byte order."""
    def read_u32(self, addr: int) -> int:
        """The unsigned 32-bit integer at ``addr``, in the dump's byte order."""
    def read_u64(self, addr: int) -> int:
        """The unsigned 64-bit integer at ``addr``, in the dump's byte order."""
    def read_cstr(self, addr: int, max: int = 4096) -> bytes:
        """The NUL-terminated string at ``addr`` without its NUL; the ``max``
        bytes read when none of them is NUL; KvmError when a page before the
        NUL cannot be read."""
    def translate(self, addr: int) -> int:
        """The physical-space address ``addr`` translates to (kvm_vtop)."""
    def pages(self) -> PageIterator:
        """An iterator of the mapped pages (kvm_walk_pages)."""
    def space(
        self,
        paging: _Paging,
        *,
        root: Optional[int] = None,
        base: Literal["phys", "virt"] = "phys",
        ranges: Optional[Iterable[Tuple[int, int, int]]] = None,
        cr0: Optional[int] = None,
        cr4: Optional[int] = None,
        efer: Optional[int] = None,
        tcr: Optional[int] = None,
    ) -> Space:
        """Opens a space stacked on this handle's physical (``base="phys"``) or
        virtual (``base="virt"``) space. ``root`` is the CR3, EPTP, TTBR or
        satp root; "linear" takes ``ranges`` instead, "x86_auto" also
        ``cr0``, ``cr4`` and ``efer``, "aarch64" also ``tcr``."""
    def close(self) -> None:
        """Closes the handle (spaces opened on it stay open)."""
    def __enter__(self: _S) -> _S: ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> Literal[False]: ...

@final
class Kvm(AddressSpace):
    """An open kernel and crash dump (kvm.open() returns one)."""

    @property
    def backend(self) -> str:
        """The backend reading the dump, e.g. "amd64 minidump"."""
    @property
    def native(self) -> bool:
        """True when the dump's architecture is the host's."""
    @property
    def kerndisp(self) -> int:
        """The kernel's displacement: Linux's KASLR offset, 0 for FreeBSD."""
    @property
    def memory_held(self) -> int:
        """Bytes of memory the dump holds."""
    @property
    def cpus(self) -> Optional[int]:
        """CPUs of the dumped machine; None when the dump does not say."""
    @property
    def panic_string(self) -> Optional[str]:
        """Why the kernel panicked; None when the dump does not say."""
    @property
    def arch(self) -> Optional[str]:
        """gdb's name of the architecture registers() reads, or None."""
    def symbol(self, name: str) -> int:
        """The address of kernel symbol ``name``; KeyError when unknown."""
    def symbols(self) -> Iterator[Tuple[str, int]]:
        """(name, address) of every symbol of the kernel's table."""
    def max_cpus(self) -> int:
        """The kernel's mp_maxcpus (kvm_getmaxcpu(3))."""
    def ncpus(self) -> int:
        """The kernel's mp_ncpus (kvm_getncpus(3))."""
    def pcpu(self, cpu: int) -> Optional[int]:
        """Where CPU ``cpu``'s struct pcpu lies; None for a CPU it lacks."""
    def dpcpu_set_cpu(self, cpu: int) -> None:
        """Selects the CPU whose per-CPU variables nlist_symbol() gives."""
    def nlist_symbol(self, name: str) -> int:
        """``name`` as kvm_nlist(3) resolves it, VNET and DPCPU included."""
    def read_zpcpu(self, base: int, size: int, cpu: int) -> bytes:
        """CPU ``cpu``'s copy of the per-CPU allocation ``base``."""
    def counter_u64_fetch(self, base: int) -> int:
        """The value of the counter(9) at ``base``."""
    def threads(self) -> list[Thread]:
        """The kernel's threads."""
    def registers(self, thread: Thread) -> dict[str, int]:
        """A thread's known registers, {gdb's name: value}, in gdb's order."""
    def message_buffer(self) -> bytes:
        """The kernel's message buffer, oldest line first."""

@final
class Space(AddressSpace):
    """A space stacked on a handle (AddressSpace.space() opens one)."""

    @property
    def name(self) -> str:
        """Its name in messages, e.g. "x86-64 space (layer 1)"."""

@final
class PageIterator(Iterator[Page]):
    """The pages AddressSpace.pages() walks, as the walk finds them."""

    def __iter__(self) -> PageIterator: ...
    def __next__(self) -> Page: ...

@final
class Page:
    """One mapped page or superpage (struct kvm_page)."""

    def __new__(
        cls,
        paddr: int,
        kmap_vaddr: int,
        dmap_vaddr: int,
        prot: int,
        offset: Optional[int],
        len: int,
    ) -> Page: ...
    @property
    def paddr(self) -> int:
        """Physical address of the first byte."""
    @property
    def kmap_vaddr(self) -> int:
        """Kernel-map virtual address; 0 when only the direct map reaches it."""
    @property
    def dmap_vaddr(self) -> int:
        """Direct-map virtual address; 0 when there is none."""
    @property
    def prot(self) -> int:
        """PROT_READ, PROT_WRITE and PROT_EXECUTE bits."""
    @property
    def offset(self) -> Optional[int]:
        """Offset of the first byte in the core file; None when not dumped."""
    @property
    def len(self) -> int:
        """Length in bytes."""
    @property
    def vaddr(self) -> int:
        """kmap_vaddr, else dmap_vaddr: the address to read it at."""
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Thread:
    """A kernel thread; pass it to Kvm.registers()."""

    @property
    def tid(self) -> int:
        """Thread id."""
    @property
    def pid(self) -> int:
        """Process id; -1 where the dump does not say."""
    @property
    def cpu(self) -> Optional[int]:
        """The CPU it was running on; None when not running."""
    @property
    def thread(self) -> int:
        """Address of its struct thread; 0 where there is none."""
    @property
    def pcb(self) -> int:
        """Address of the PCB its registers come from; 0 where there is none."""
    @property
    def name(self) -> str:
        """Thread name; empty where unknown."""
    @property
    def comm(self) -> str:
        """Process name; empty where unknown."""
    @property
    def crashed(self) -> bool:
        """The thread that was dumping, or the CPU that panicked."""
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...
