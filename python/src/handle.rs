//! The handles: a dump (`kvm.Kvm`) and the spaces stacked on one
//! (`kvm.Space`), both `kvm.AddressSpace`s, which read, translate and walk
//! pages.
//!
//! A handle holds the library's handle in an `Arc` behind a lock that
//! `close` empties: a call takes its own reference, then reads with the
//! GIL released, so a handle closed meanwhile by another thread stays
//! open under that call until it returns.

use crate::error;
use crate::pages::PageIterator;
use crate::records::Thread;
use kvm::{Base, Paging, Range};
use pyo3::exceptions::{PyKeyError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyIterator, PyList, PyString};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

/// What an open handle reads through.
#[derive(Clone)]
enum Target {
    Dump(Arc<kvm::Kvm>),
    Space(Arc<kvm::Space>),
}

impl Target {
    fn space(&self) -> Arc<dyn kvm::AddressSpace> {
        match self {
            Target::Dump(d) => d.clone(),
            Target::Space(s) => s.clone(),
        }
    }
}

/// A space that reads, translates and walks its pages: a dump (Kvm) or a
/// space stacked on one (Space). Its virtual space is what read() reads,
/// its physical space what read_phys() reads: for a dump, the kernel's
/// virtual memory and the machine's physical memory; for a space, its own
/// addresses and its base's.
///
/// A context manager: leaving the `with` block closes it. Every read
/// releases the GIL, so threads read through one handle in parallel.
#[pyclass(subclass, frozen, module = "kvm")]
pub struct AddressSpace {
    target: Mutex<Option<Target>>,
    /// The dump stores words big-endian (read_u16 and the rest).
    big_endian: bool,
    /// What the handle is, for its repr.
    description: String,
}

impl AddressSpace {
    fn new(target: Target, big_endian: bool, description: String) -> Self {
        AddressSpace {
            target: Mutex::new(Some(target)),
            big_endian,
            description,
        }
    }

    /// The library's handle, or ValueError once closed.
    fn target(&self) -> PyResult<Target> {
        self.target
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| PyValueError::new_err("I/O operation on a closed handle"))
    }

    fn reader(&self) -> PyResult<Arc<dyn kvm::AddressSpace>> {
        Ok(self.target()?.space())
    }

    /// The `size`-byte unsigned integer at `addr`, in the dump's byte
    /// order.
    fn uint(&self, py: Python<'_>, addr: u64, size: usize) -> PyResult<u64> {
        let space = self.reader()?;
        let mut b = [0u8; 8];
        py.detach(|| space.read_exact(addr, &mut b[..size]))
            .map_err(|e| error(py, e))?;
        // The bytes past `size` stay 0.
        Ok(if self.big_endian {
            u64::from_be_bytes(b) >> (64 - 8 * size)
        } else {
            u64::from_le_bytes(b)
        })
    }
}

/// Reads `size` bytes into a new bytes object with `read`, called with the
/// GIL released: all of them, or with `partial`, as many as `read` gives.
/// `at` names the address for the error of a short read.
fn read_bytes<'py>(
    py: Python<'py>,
    size: usize,
    partial: bool,
    at: impl FnOnce() -> String,
    read: impl Fn(&mut [u8]) -> kvm::Result<usize> + Sync,
) -> PyResult<Bound<'py, PyBytes>> {
    let mut got = 0;
    let bytes = PyBytes::new_with(py, size, |buf| {
        got = py.detach(|| read(buf)).map_err(|e| error(py, e))?;
        Ok(())
    })?;
    if got == size {
        Ok(bytes)
    } else if partial {
        Ok(PyBytes::new(py, &bytes.as_bytes()[..got]))
    } else {
        // The library reads short only where the core file ends early (it
        // shrank after the open), as AddressSpace::read_exact says.
        Err(crate::KvmError::new_err(format!(
            "the core file ends after {got} of the {size} bytes at {}",
            at()
        )))
    }
}

#[pymethods]
impl AddressSpace {
    /// Reads `size` bytes of the virtual space at `addr` (kvm_read2(3)).
    ///
    /// Returns exactly `size` bytes: raises KvmError, naming the first
    /// address that does not translate, when any page of the range is not
    /// mapped or not in the dump. A core file that ends early (a truncated
    /// dump) fails too, unless `partial=True`: then the bytes up to where
    /// it ends are returned.
    #[pyo3(signature = (addr, size, *, partial = false))]
    fn read<'py>(
        &self,
        py: Python<'py>,
        addr: u64,
        size: usize,
        partial: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let space = self.reader()?;
        let at = || format!("{addr:#x}");
        read_bytes(py, size, partial, at, |buf| space.read(addr, buf))
    }

    /// Reads `size` bytes of the physical space at `paddr`
    /// (kvm_read_phys): for a dump, the machine's memory; for a space, its
    /// base's space. Raises KvmError naming the first address the dump
    /// does not hold; `partial` as in read().
    #[pyo3(signature = (paddr, size, *, partial = false))]
    fn read_phys<'py>(
        &self,
        py: Python<'py>,
        paddr: u64,
        size: usize,
        partial: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let space = self.reader()?;
        let at = || format!("physical address {paddr:#x}");
        read_bytes(py, size, partial, at, |buf| space.read_phys(paddr, buf))
    }

    /// The unsigned byte at `addr`.
    fn read_u8(&self, py: Python<'_>, addr: u64) -> PyResult<u64> {
        self.uint(py, addr, 1)
    }

    /// The unsigned 16-bit integer at `addr`, in the dump's byte order.
    fn read_u16(&self, py: Python<'_>, addr: u64) -> PyResult<u64> {
        self.uint(py, addr, 2)
    }

    /// The unsigned 32-bit integer at `addr`, in the dump's byte order.
    fn read_u32(&self, py: Python<'_>, addr: u64) -> PyResult<u64> {
        self.uint(py, addr, 4)
    }

    /// The unsigned 64-bit integer at `addr`, in the dump's byte order.
    fn read_u64(&self, py: Python<'_>, addr: u64) -> PyResult<u64> {
        self.uint(py, addr, 8)
    }

    /// The NUL-terminated string at `addr`, without its NUL.
    ///
    /// Reads a page at a time, so a string that ends before an unmapped
    /// page reads. When no NUL comes within `max` bytes, returns those
    /// `max` bytes (a fixed-size name that fills its array has none); a
    /// page that cannot be read before the NUL raises KvmError.
    #[pyo3(signature = (addr, max = 4096))]
    fn read_cstr<'py>(
        &self,
        py: Python<'py>,
        addr: u64,
        max: usize,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let space = self.reader()?;
        let text = py
            .detach(|| -> kvm::Result<Vec<u8>> {
                let mut text = Vec::new();
                let mut chunk = [0u8; 4096];
                while text.len() < max {
                    let at = addr.wrapping_add(text.len() as u64);
                    let n = (4096 - (at & 0xfff) as usize).min(max - text.len());
                    space.read_exact(at, &mut chunk[..n])?;
                    match chunk[..n].iter().position(|&b| b == 0) {
                        Some(end) => {
                            text.extend_from_slice(&chunk[..end]);
                            break;
                        }
                        None => text.extend_from_slice(&chunk[..n]),
                    }
                }
                Ok(text)
            })
            .map_err(|e| error(py, e))?;
        Ok(PyBytes::new(py, &text))
    }

    /// The physical-space address that virtual address `addr` translates
    /// to (kvm_vtop). Raises KvmError, naming the address and why, when it
    /// does not translate.
    fn translate(&self, py: Python<'_>, addr: u64) -> PyResult<u64> {
        let space = self.reader()?;
        py.detach(|| space.vtop(addr)).map_err(|e| error(py, e))
    }

    /// An iterator of the mapped pages (kvm_walk_pages(3)), as Page
    /// records, in the library's order: each leaf of the page tables in
    /// table order, then, on minidumps with a direct map, the dumped pages
    /// only the direct map reaches. The walk runs in a thread of its own
    /// as the iterator is consumed, a few batches of pages ahead; it
    /// raises KvmError where the walk fails (tables damaged). The iterator
    /// holds the dump: closing the handle does not end it.
    fn pages(&self) -> PyResult<PageIterator> {
        Ok(PageIterator::new(self.reader()?))
    }

    /// Opens a space stacked on this handle: a guest's, a process's or a
    /// hypervisor's view of the dump, which reads, translates and walks
    /// its pages as any handle.
    ///
    /// `paging` is how it translates, with the keywords each takes:
    ///
    /// - "linear": `ranges`, an iterable of (addr, len, target) (or
    ///   kvm.Range): `[addr, addr + len)` of the new space lies at `target`
    ///   of the base.
    /// - "x86_64", "x86_64_la57", "i386", "i386_pae": `root`, the CR3.
    /// - "x86_auto": `root` (CR3), `cr0`, `cr4` and `efer`: the mode the
    ///   CPU would use (paging off is the identity map).
    /// - "ept": `root`, the EPTP.
    /// - "aarch64": `root`, TTBR0_EL1 or TTBR1_EL1, and `tcr`, TCR_EL1.
    /// - "riscv_sv39", "riscv_sv48", "riscv_sv57": `root`, satp.PPN << 12.
    ///
    /// `base` says where its tables and pages lie: "phys", this handle's
    /// physical space (read_phys), or "virt", its virtual space (read).
    /// The space keeps what it needs of this handle, which may be closed
    /// first. Raises KvmError when the library refuses the description,
    /// TypeError or ValueError for keywords that do not fit.
    #[pyo3(signature = (
        paging, *, root = None, base = "phys", ranges = None, cr0 = None, cr4 = None,
        efer = None, tcr = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn space<'py>(
        &self,
        py: Python<'py>,
        paging: &str,
        root: Option<u64>,
        base: &str,
        ranges: Option<&Bound<'py, PyAny>>,
        cr0: Option<u64>,
        cr4: Option<u64>,
        efer: Option<u64>,
        tcr: Option<u64>,
    ) -> PyResult<Bound<'py, Space>> {
        let on = match base {
            "phys" => Base::Phys,
            "virt" => Base::Virt,
            other => {
                return Err(PyValueError::new_err(format!(
                    "base must be 'phys' or 'virt', not {}",
                    py_repr(py, other)
                )))
            }
        };
        let ranges = match ranges {
            Some(r) => Some(
                r.try_iter()?
                    .map(|item| {
                        let (addr, len, target) = item?.extract::<(u64, u64, u64)>()?;
                        Ok(Range { addr, len, target })
                    })
                    .collect::<PyResult<Vec<_>>>()?,
            ),
            None => None,
        };
        let given = Keywords {
            root,
            ranges,
            cr0,
            cr4,
            efer,
            tcr,
        };
        let paging = given.paging(py, paging)?;
        let base = self.reader()?;
        let opened = py.detach(|| kvm::Space::new(base.as_ref(), on, paging));
        let space = opened.map_err(|e| error(py, e))?;
        Space::wrap(py, space, self.big_endian)
    }

    /// The dump stores words big-endian: the byte order of read_u16,
    /// read_u32 and read_u64 (a space reads in its dump's order).
    #[getter]
    fn big_endian(&self) -> bool {
        self.big_endian
    }

    /// True once closed.
    #[getter]
    fn closed(&self) -> bool {
        self.target
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }

    /// Closes the handle: calls after this raise ValueError. Calls already
    /// under way in other threads finish normally, and the spaces opened
    /// on it and iterators from pages() go on: each holds what it reads.
    /// The dump's files are released with the last of them. Closing twice
    /// does nothing.
    fn close(&self) {
        let target = self
            .target
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(target);
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __exit__(
        &self,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _traceback: &Bound<'_, PyAny>,
    ) -> bool {
        self.close();
        false
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let this = slf.get();
        let class = slf.get_type().qualname()?;
        let closed = if this.closed() { " (closed)" } else { "" };
        Ok(format!("<kvm.{class} {}{closed}>", this.description))
    }
}

/// `s` as Python writes it in a message (its repr).
fn py_repr(py: Python<'_>, s: &str) -> String {
    PyString::new(py, s)
        .repr()
        .map_or_else(|_| format!("{s:?}"), |r| r.to_string())
}

/// The keywords of AddressSpace.space() that describe the paging.
struct Keywords {
    root: Option<u64>,
    ranges: Option<Vec<Range>>,
    cr0: Option<u64>,
    cr4: Option<u64>,
    efer: Option<u64>,
    tcr: Option<u64>,
}

/// The names `paging` takes, in the order messages list them.
const PAGINGS: &[&str] = &[
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
];

impl Keywords {
    /// The library's description of `paging` from these keywords:
    /// TypeError for a keyword it needs that is missing, or one it does
    /// not take.
    fn paging(self, py: Python<'_>, paging: &str) -> PyResult<Paging> {
        // What `root` is, and the other keywords each paging needs.
        let (root, others): (&str, &[&str]) = match paging {
            "linear" => ("", &["ranges"]),
            "x86_64" | "x86_64_la57" | "i386" | "i386_pae" => ("the CR3", &[]),
            "x86_auto" => ("the CR3", &["cr0", "cr4", "efer"]),
            "ept" => ("the EPTP", &[]),
            "aarch64" => ("TTBR0_EL1 or TTBR1_EL1", &["tcr"]),
            "riscv_sv39" | "riscv_sv48" | "riscv_sv57" => ("satp.PPN << 12", &[]),
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown paging {}: one of {}",
                    py_repr(py, other),
                    PAGINGS.join(", ")
                )))
            }
        };
        let given = [
            ("root", self.root.is_some()),
            ("ranges", self.ranges.is_some()),
            ("cr0", self.cr0.is_some()),
            ("cr4", self.cr4.is_some()),
            ("efer", self.efer.is_some()),
            ("tcr", self.tcr.is_some()),
        ];
        let takes = |name: &str| (name == "root" && !root.is_empty()) || others.contains(&name);
        for (name, present) in given {
            if present && !takes(name) {
                return Err(PyTypeError::new_err(format!(
                    "paging='{paging}' takes no {name}= keyword"
                )));
            }
            if !present && takes(name) {
                let what = if name == "root" {
                    format!(" ({root})")
                } else {
                    String::new()
                };
                return Err(PyTypeError::new_err(format!(
                    "paging='{paging}' needs the {name}= keyword{what}"
                )));
            }
        }
        let (r, z) = (self.root.unwrap_or(0), |v: Option<u64>| v.unwrap_or(0));
        Ok(match paging {
            "linear" => Paging::Linear(self.ranges.unwrap_or_default()),
            "x86_64" => Paging::X86_64 { cr3: r },
            "x86_64_la57" => Paging::X86_64La57 { cr3: r },
            "i386" => Paging::I386 { cr3: r },
            "i386_pae" => Paging::I386Pae { cr3: r },
            "x86_auto" => Paging::X86Auto {
                cr3: r,
                cr0: z(self.cr0),
                cr4: z(self.cr4),
                efer: z(self.efer),
            },
            "ept" => Paging::Ept { eptp: r },
            "aarch64" => Paging::Aarch64 {
                ttbr: r,
                tcr: z(self.tcr),
            },
            "riscv_sv39" => Paging::RiscvSv39 { satp_root: r },
            "riscv_sv48" => Paging::RiscvSv48 { satp_root: r },
            _ => Paging::RiscvSv57 { satp_root: r },
        })
    }
}

/// An open kernel and crash dump (kvm.open() returns one): kernel virtual
/// memory, the machine's physical memory, symbols, threads, registers and
/// what the dump says of the crash.
#[pyclass(extends = AddressSpace, frozen, module = "kvm")]
pub struct Kvm;

impl Kvm {
    /// The Python handle of `dump`, opened from `core`.
    pub fn wrap<'py>(py: Python<'py>, dump: kvm::Kvm, core: &Path) -> PyResult<Bound<'py, Kvm>> {
        let description = format!("{}, core {}", dump.backend(), core.display());
        let big_endian = dump.big_endian();
        let base = AddressSpace::new(Target::Dump(Arc::new(dump)), big_endian, description);
        Bound::new(py, PyClassInitializer::from(base).add_subclass(Kvm))
    }
}

/// The library's dump handle behind `slf`, or ValueError once closed.
fn dump(slf: &Bound<'_, Kvm>) -> PyResult<Arc<kvm::Kvm>> {
    match slf.as_super().get().target()? {
        Target::Dump(d) => Ok(d),
        Target::Space(_) => Err(PyTypeError::new_err("not a dump handle")),
    }
}

#[pymethods]
impl Kvm {
    /// The address of kernel symbol `name` (kvm_nlist2(3), with the a.out
    /// leading underscore tried too; for a Linux dump, where it lies at
    /// run time). Raises KeyError when the kernel has no such symbol.
    fn symbol(slf: &Bound<'_, Self>, name: &str) -> PyResult<u64> {
        let d = dump(slf)?;
        d.symbol(name)
            .map(|s| s.value)
            .ok_or_else(|| PyKeyError::new_err(name.to_owned()))
    }

    /// An iterator of (name, address) for every symbol of the kernel's
    /// table, in the table's order, with the addresses symbol() gives.
    fn symbols<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyIterator>> {
        let d = dump(slf)?;
        let list = PyList::new(slf.py(), d.symbols().map(|(name, s)| (name, s.value)))?;
        PyIterator::from_object(&list)
    }

    /// The kernel's `mp_maxcpus` (kvm_getmaxcpu(3)).
    fn max_cpus(slf: &Bound<'_, Self>) -> PyResult<u32> {
        let (py, d) = (slf.py(), dump(slf)?);
        py.detach(|| d.max_cpus()).map_err(|e| error(py, e))
    }

    /// The kernel's `mp_ncpus` (kvm_getncpus(3)).
    fn ncpus(slf: &Bound<'_, Self>) -> PyResult<u32> {
        let (py, d) = (slf.py(), dump(slf)?);
        py.detach(|| d.ncpus()).map_err(|e| error(py, e))
    }

    /// Where CPU `cpu`'s `struct pcpu` lies (`cpuid_to_pcpu[cpu]`); None
    /// for a CPU the kernel does not have.
    fn pcpu(slf: &Bound<'_, Self>, cpu: u32) -> PyResult<Option<u64>> {
        let (py, d) = (slf.py(), dump(slf)?);
        py.detach(|| d.pcpu(cpu)).map_err(|e| error(py, e))
    }

    /// Selects the CPU whose copies of dynamic per-CPU variables
    /// nlist_symbol() gives (kvm_dpcpu_setcpu(3)).
    fn dpcpu_set_cpu(slf: &Bound<'_, Self>, cpu: u32) -> PyResult<()> {
        let (py, d) = (slf.py(), dump(slf)?);
        py.detach(|| d.dpcpu_set_cpu(cpu)).map_err(|e| error(py, e))
    }

    /// The address of `name` as kvm_nlist(3) resolves it: a kernel symbol,
    /// else a VNET variable in vnet0's data, else a dynamic per-CPU
    /// variable in the selected CPU's copy. Raises KeyError when none.
    fn nlist_symbol(slf: &Bound<'_, Self>, name: &str) -> PyResult<u64> {
        let (py, d) = (slf.py(), dump(slf)?);
        py.detach(|| d.nlist_symbol(name))
            .map(|s| s.value)
            .ok_or_else(|| PyKeyError::new_err(name.to_owned()))
    }

    /// `size` bytes of CPU `cpu`'s copy of the per-CPU allocation `base`
    /// (kvm_read_zpcpu(3)).
    fn read_zpcpu<'py>(
        slf: &Bound<'py, Self>,
        base: u64,
        size: usize,
        cpu: u32,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let (py, d) = (slf.py(), dump(slf)?);
        let mut buf = vec![0u8; size];
        let n = py
            .detach(|| d.read_zpcpu(base, cpu, &mut buf))
            .map_err(|e| error(py, e))?;
        Ok(PyBytes::new(py, &buf[..n]))
    }

    /// The value of the counter(9) at `base` (kvm_counter_u64_fetch(3)).
    fn counter_u64_fetch(slf: &Bound<'_, Self>, base: u64) -> PyResult<u64> {
        let (py, d) = (slf.py(), dump(slf)?);
        py.detach(|| d.counter_u64_fetch(base))
            .map_err(|e| error(py, e))
    }

    /// The kernel's threads, as Thread records: FreeBSD's processes of
    /// `allproc` and `zombproc`, oldest first, each with its threads; a
    /// Linux dump's one per CPU it saved registers of.
    fn threads(slf: &Bound<'_, Self>) -> PyResult<Vec<Thread>> {
        let (py, d) = (slf.py(), dump(slf)?);
        let threads = py.detach(|| d.threads()).map_err(|e| error(py, e))?;
        Ok(threads.into_iter().map(Thread).collect())
    }

    /// A thread's registers, {gdb's name: value}, in gdb's order, with only
    /// the registers its saved state holds (a FreeBSD PCB holds the
    /// callee-saved ones and the stack and instruction pointers).
    fn registers<'py>(
        slf: &Bound<'py, Self>,
        thread: PyRef<'py, Thread>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let (py, d) = (slf.py(), dump(slf)?);
        let thread = thread.0.clone();
        let regs = py
            .detach(|| d.registers(&thread))
            .map_err(|e| error(py, e))?;
        let dict = PyDict::new(py);
        for (info, value) in regs.iter() {
            if let Some(value) = value {
                dict.set_item(info.name, value)?;
            }
        }
        Ok(dict)
    }

    /// The kernel's message buffer, oldest line first: FreeBSD's msgbuf as
    /// the kernel wrote it (`<priority>` prefixes kept), Linux's log as
    /// dmesg prints it. Raises KvmError when the dump has none.
    fn message_buffer<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyBytes>> {
        let (py, d) = (slf.py(), dump(slf)?);
        let text = py.detach(|| d.message_buffer()).map_err(|e| error(py, e))?;
        Ok(PyBytes::new(py, &text))
    }

    /// The backend reading the dump, e.g. "amd64 minidump".
    #[getter]
    fn backend(slf: &Bound<'_, Self>) -> PyResult<&'static str> {
        Ok(dump(slf)?.backend())
    }

    /// True when the dump's architecture is the host's (kvm_native(3)).
    #[getter]
    fn native(slf: &Bound<'_, Self>) -> PyResult<bool> {
        Ok(dump(slf)?.native())
    }

    /// The kernel's displacement (kvm_kerndisp(3)): for a Linux dump the
    /// KASLR offset, 0 for FreeBSD's.
    #[getter]
    fn kerndisp(slf: &Bound<'_, Self>) -> PyResult<i64> {
        Ok(dump(slf)?.kerndisp())
    }

    /// Bytes of memory the dump holds.
    #[getter]
    fn memory_held(slf: &Bound<'_, Self>) -> PyResult<u64> {
        Ok(dump(slf)?.memory_held())
    }

    /// How many CPUs the machine ran (FreeBSD `mp_ncpus`; Linux: the CPUs
    /// the dump saved registers of); None when the dump does not say.
    #[getter]
    fn cpus(slf: &Bound<'_, Self>) -> PyResult<Option<u32>> {
        let (py, d) = (slf.py(), dump(slf)?);
        Ok(py.detach(|| d.cpus()))
    }

    /// Why the kernel panicked (FreeBSD `panicstr`, Linux's last "Kernel
    /// panic - not syncing: " line); None when the dump does not say.
    #[getter]
    fn panic_string(slf: &Bound<'_, Self>) -> PyResult<Option<String>> {
        let (py, d) = (slf.py(), dump(slf)?);
        Ok(py.detach(|| d.panic_string()))
    }

    /// gdb's name of the architecture whose registers registers() reads
    /// ("i386:x86-64", "i386", "aarch64", "riscv:rv64"); None when it
    /// reads none of this dump's.
    #[getter]
    fn arch(slf: &Bound<'_, Self>) -> PyResult<Option<&'static str>> {
        Ok(dump(slf)?.register_arch().map(|a| a.gdb_name()))
    }
}

/// A space stacked on a handle (AddressSpace.space() opens one): a guest's,
/// a process's or a hypervisor's view of a dump. Spaces stack: a space's
/// space is one layer higher.
#[pyclass(extends = AddressSpace, frozen, module = "kvm")]
pub struct Space {
    name: String,
}

impl Space {
    fn wrap(py: Python<'_>, space: kvm::Space, big_endian: bool) -> PyResult<Bound<'_, Space>> {
        let name = space.name().to_owned();
        let base = AddressSpace::new(Target::Space(Arc::new(space)), big_endian, name.clone());
        Bound::new(
            py,
            PyClassInitializer::from(base).add_subclass(Space { name }),
        )
    }
}

#[pymethods]
impl Space {
    /// The space's name in messages: its MMU and layer, e.g. "x86-64 space
    /// (layer 1)".
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }
}
