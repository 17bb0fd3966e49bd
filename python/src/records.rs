//! What a handle returns: mapped pages (`kvm.Page`) and kernel threads
//! (`kvm.Thread`), immutable values.

use pyo3::prelude::*;
use pyo3::types::PyString;
use std::hash::{Hash, Hasher};

/// One mapped page or superpage, as kvm_walk_pages(3) reports it
/// (`struct kvm_page`). Immutable, comparable and hashable.
#[pyclass(frozen, eq, hash, get_all, module = "kvm")]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Page {
    /// Physical address of the first byte.
    pub paddr: u64,
    /// Kernel-map virtual address; 0 when reached only through the direct
    /// map.
    pub kmap_vaddr: u64,
    /// Direct-map virtual address of the same memory; 0 when there is none.
    pub dmap_vaddr: u64,
    /// The entry's protection: kvm.PROT_READ, PROT_WRITE and PROT_EXECUTE
    /// bits.
    pub prot: u8,
    /// Offset of the first byte in the core file; None when the dump does
    /// not hold the page.
    pub offset: Option<u64>,
    /// Length in bytes: the page or superpage size.
    pub len: u64,
}

impl From<&kvm::Page> for Page {
    fn from(p: &kvm::Page) -> Self {
        Page {
            paddr: p.paddr,
            kmap_vaddr: p.kmap_vaddr,
            dmap_vaddr: p.dmap_vaddr,
            prot: p.prot,
            offset: p.offset,
            len: p.len,
        }
    }
}

#[pymethods]
impl Page {
    /// A page record (handles return them; build one to compare with).
    #[new]
    #[pyo3(signature = (paddr, kmap_vaddr, dmap_vaddr, prot, offset, len))]
    fn new(
        paddr: u64,
        kmap_vaddr: u64,
        dmap_vaddr: u64,
        prot: u8,
        offset: Option<u64>,
        len: u64,
    ) -> Self {
        Page {
            paddr,
            kmap_vaddr,
            dmap_vaddr,
            prot,
            offset,
            len,
        }
    }

    /// The address a read of this page uses: its kernel-map address, else
    /// its direct-map address.
    #[getter]
    fn vaddr(&self) -> u64 {
        if self.kmap_vaddr != 0 {
            self.kmap_vaddr
        } else {
            self.dmap_vaddr
        }
    }

    fn __repr__(&self) -> String {
        let offset = self
            .offset
            .map_or_else(|| "None".to_owned(), |o| format!("{o:#x}"));
        format!(
            "Page(paddr={:#x}, kmap_vaddr={:#x}, dmap_vaddr={:#x}, prot={:#x}, offset={offset}, \
             len={:#x})",
            self.paddr, self.kmap_vaddr, self.dmap_vaddr, self.prot, self.len
        )
    }
}

/// A kernel thread, as a debugger lists it: FreeBSD's threads of
/// `allproc` and `zombproc`, a Linux dump's one per CPU it saved registers
/// of. Pass it to Kvm.registers(). Immutable, comparable and hashable.
#[pyclass(frozen, eq, module = "kvm")]
#[derive(Clone, PartialEq, Eq)]
pub struct Thread(pub kvm::Thread);

#[pymethods]
impl Thread {
    /// Thread id (FreeBSD `td_tid`; Linux: the CPU note's `pr_pid`).
    #[getter]
    fn tid(&self) -> i32 {
        self.0.tid
    }

    /// Process id (FreeBSD `p_pid`); -1 where the dump does not say.
    #[getter]
    fn pid(&self) -> i32 {
        self.0.pid
    }

    /// The CPU the thread was running on; None when it was not running.
    #[getter]
    fn cpu(&self) -> Option<u32> {
        self.0.cpu
    }

    /// Address of its `struct thread`; 0 where there is none (Linux).
    #[getter]
    fn thread(&self) -> u64 {
        self.0.thread
    }

    /// Address of the PCB its registers come from; 0 where there is none
    /// (Linux: registers come from the dump's notes).
    #[getter]
    fn pcb(&self) -> u64 {
        self.0.pcb
    }

    /// Thread name (`td_name`); empty where unknown.
    #[getter]
    fn name(&self) -> &str {
        &self.0.name
    }

    /// Process name (`p_comm`); empty where unknown.
    #[getter]
    fn comm(&self) -> &str {
        &self.0.comm
    }

    /// True for the thread that was dumping (FreeBSD `dumptid`), or the
    /// CPU that panicked (Linux `panic_cpu`).
    #[getter]
    fn crashed(&self) -> bool {
        self.0.crashed
    }

    fn __hash__(&self) -> u64 {
        let t = &self.0;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (
            t.tid, t.pid, t.cpu, t.thread, t.pcb, &t.name, &t.comm, t.crashed,
        )
            .hash(&mut h);
        h.finish()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let t = &self.0;
        let cpu = t.cpu.map_or_else(|| "None".to_owned(), |c| c.to_string());
        let text = |s: &str| -> PyResult<String> { Ok(PyString::new(py, s).repr()?.to_string()) };
        Ok(format!(
            "Thread(tid={}, pid={}, cpu={cpu}, thread={:#x}, pcb={:#x}, name={}, comm={}, \
             crashed={})",
            t.tid,
            t.pid,
            t.thread,
            t.pcb,
            text(&t.name)?,
            text(&t.comm)?,
            if t.crashed { "True" } else { "False" }
        ))
    }
}
