//! The backend registry: a linker set of machine-dependent backends, as
//! libkvm's `kvm_arch` set (`lib/libkvm/kvm_private.h`, `KVM_ARCH()`).
//!
//! A backend lives in one file under `arch/` and adds itself with
//! `#[distributed_slice(BACKENDS)]`. Opening a dump takes the first backend
//! whose `probe` accepts the kernel and core pair.

use crate::elfcore::ElfIdent;
use crate::error::{Error, Fault, Result};
use crate::image::Image;
use crate::linux::LinuxCore;
use crate::physmem::Span;
use crate::walk::Page;
use linkme::distributed_slice;

/// Every backend compiled into the library.
#[distributed_slice]
pub static BACKENDS: [Backend];

/// A machine-dependent backend (one dump format of one architecture).
pub struct Backend {
    /// Short name, e.g. `"amd64 minidump"`.
    pub name: &'static str,
    /// Accepts the kernel and core pair (libkvm's `ka_probe`).
    pub probe: fn(&Probe<'_>) -> bool,
    /// Reads the dump's headers and page-table roots (`ka_initvtop`).
    pub initvtop: fn(&Setup<'_>) -> Result<Box<dyn Translator>>,
    /// True when the dump's architecture is the host's (`ka_native`).
    pub native: fn() -> bool,
}

/// What a backend's probe sees.
pub struct Probe<'a> {
    /// The kernel's ELF identity; `None` for a symbol map or no kernel file.
    pub kernel: Option<ElfIdent>,
    /// The first bytes of the core file (up to 64).
    pub core_head: &'a [u8],
    /// The Linux dump, when the core is one (the Linux personality).
    pub linux: Option<&'a LinuxCore>,
}

impl Probe<'_> {
    /// The core's ELF identity, if it is an ELF core file (a full dump).
    pub fn core_elf(&self) -> Option<ElfIdent> {
        ElfIdent::parse(self.core_head).filter(|c| c.e_type == object::elf::ET_CORE)
    }

    /// True when the core starts with `magic` (a minidump header).
    pub fn core_starts_with(&self, magic: &[u8]) -> bool {
        self.core_head.starts_with(magic)
    }

    /// True when the core is a FreeBSD dump and the kernel an executable
    /// ELF file of `machine` and class, as `_kvm_probe_elf_kernel`
    /// (`lib/libkvm/kvm_private.c`) accepts it: ET_EXEC, except ET_DYN on
    /// powerpc.
    pub fn kernel_is(&self, is_64: bool, big_endian: bool, machine: u16) -> bool {
        use object::elf::{EM_PPC, EM_PPC64, ET_DYN, ET_EXEC};
        let Some(k) = self.kernel.as_ref().filter(|_| self.linux.is_none()) else {
            return false;
        };
        let e_type = if matches!(machine, EM_PPC | EM_PPC64) {
            ET_DYN
        } else {
            ET_EXEC
        };
        k.is_64 == is_64 && k.big_endian == big_endian && k.machine == machine && k.e_type == e_type
    }
}

/// What a backend's `initvtop` works with.
pub struct Setup<'a> {
    /// The core file.
    pub core: &'a Image,
    /// Resolves a kernel symbol (the caller's resolver, else the kernel's table).
    pub lookup: &'a dyn Fn(&str) -> Option<u64>,
    /// The Linux dump the probe saw, for the Linux backend to take.
    pub linux: std::cell::Cell<Option<LinuxCore>>,
}

impl Setup<'_> {
    /// Takes the Linux dump (once).
    pub fn take_linux(&self) -> Result<LinuxCore> {
        self.linux.take().ok_or(Error::NotSupported(
            "a Linux backend was chosen for a FreeBSD dump",
        ))
    }

    /// Resolves a symbol the backend cannot do without.
    pub fn require(&self, name: &'static str) -> Result<u64> {
        (self.lookup)(name).ok_or(Error::MissingSymbol(name))
    }
}

/// Per-dump translation state built by `initvtop`.
pub trait Translator: Send + Sync {
    /// Where kernel virtual address `va` lies in the core file, and how many
    /// bytes from there are contiguous in the virtual address space
    /// (libkvm's `ka_kvatop`).
    fn kvatop(&self, core: &Image, va: u64) -> Result<Span, Fault>;

    /// The physical address `va` translates to (`kvm_vtop`).
    fn vtop(&self, core: &Image, va: u64) -> Result<u64, Fault>;
    /// [`Translator::vtop`], telling `f` each table entry the walk reads
    /// (`vmcore vtop`).
    fn trace(
        &self,
        core: &Image,
        va: u64,
        f: &mut dyn FnMut(crate::pagetable::Step),
    ) -> Result<u64, Fault> {
        let _ = f;
        self.vtop(core, va)
    }

    /// Reads the dump's physical memory at `pa` (`kvm_read_phys`): the
    /// length, fewer only when the core file ends early; an error naming
    /// the first address the dump does not hold.
    fn read_phys(&self, core: &Image, pa: u64, buf: &mut [u8]) -> Result<usize>;

    /// Reads `buf.len()` bytes at a location `kvatop` gave, within its
    /// span; fewer only when the core file ends early. Backends whose
    /// container does not keep memory in the file as it was (kdump) say
    /// how to read it.
    #[inline(always)]
    fn read_at(&self, core: &Image, off: u64, buf: &mut [u8]) -> Result<usize> {
        core.read_at(off, buf)
    }

    /// Reads kernel virtual memory at `va` (`kvm_read2`): see
    /// [`crate::Kvm::read`]. Each backend gets its own copy of this
    /// loop, with its `kvatop` and `read_at` inlined: one indirect call
    /// per read.
    fn read(&self, core: &Image, va: u64, buf: &mut [u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let span = self.kvatop(core, va).map_err(|f| Error::fault(va, f))?;
        // Most reads lie in one page: one translation and one copy.
        if buf.len() as u64 <= span.len {
            return self.read_at(core, span.off, buf);
        }
        read_spans(self, core, va, span, buf)
    }

    /// Where physical address `pa` lies in the container, as `kvatop`
    /// says for virtual addresses (the physical space of a handle, as a
    /// space stacked on it sees it).
    fn locate_phys(&self, pa: u64) -> Result<Span, Fault>;

    /// The bytes at a location, borrowed when possible (see
    /// [`crate::physmem::PhysMem::view`]).
    fn view<'a>(&'a self, core: &'a Image, off: u64, buf: &'a mut [u8]) -> Option<&'a [u8]>;

    /// Pages the container holds: what bounds a page walk.
    fn held_pages(&self) -> u64;

    /// The end of the container's locations.
    fn end(&self, core: &Image) -> u64;

    /// True when locations are core-file offsets of bytes stored as they
    /// were (see [`crate::physmem::PhysMem::in_file`]).
    fn in_file(&self) -> bool;

    /// The file offset of a location (for `kvm_walk_pages`).
    fn location_offset(&self, core: &Image, loc: u64) -> Option<u64>;

    /// The kernel's `PAGE_SIZE` (4 KiB unless the dump says otherwise).
    fn page_size(&self) -> u64 {
        4096
    }

    /// Kernel displacement: where the kernel runs relative to where it was
    /// linked (`ka_kerndisp`); 0 when the backend cannot know.
    fn kerndisp(&self) -> i64 {
        0
    }

    /// Calls `f` for every mapped page (see [`crate::walk`]) until it returns
    /// false (`ka_walk_pages`). Returns whether the walk completed.
    fn walk_pages(&self, core: &Image, f: &mut dyn FnMut(&Page) -> bool) -> Result<bool> {
        let _ = (core, f);
        Err(Error::NotSupported("this backend cannot enumerate pages"))
    }
}

/// The general case of [`Translator::read`], page by page from `first`,
/// the translation of `va`.
#[inline(never)]
fn read_spans<T: Translator + ?Sized>(
    t: &T,
    core: &Image,
    va: u64,
    first: Span,
    buf: &mut [u8],
) -> Result<usize> {
    let mut done = 0usize;
    let mut span = first;
    loop {
        let want = (buf.len() - done).min(usize::try_from(span.len).unwrap_or(usize::MAX));
        let n = t.read_at(core, span.off, &mut buf[done..done + want])?;
        done += n;
        if n < want || done == buf.len() {
            return Ok(done); // done, or the core file ended early
        }
        let addr = va.checked_add(done as u64).ok_or_else(|| {
            Error::fault(
                va,
                Fault::OutOfRange("the read runs past the top of the address space".into()),
            )
        })?;
        span = t.kvatop(core, addr).map_err(|f| Error::fault(addr, f))?;
    }
}

/// Finds the backend that accepts this pair, or explains why none does.
pub fn find(probe: &Probe<'_>) -> Result<&'static Backend> {
    if let Some(b) = BACKENDS.iter().find(|b| (b.probe)(probe)) {
        return Ok(b);
    }
    let core = match probe.linux {
        Some(l) => l.describe(),
        None => describe_core(probe.core_head),
    };
    let kernel = match &probe.kernel {
        Some(k) => k.describe(),
        None => "a symbol map or none".into(),
    };
    Err(Error::Unsupported(format!(
        "kernel is {kernel}, core is {core}: no backend reads this pair (supported: {})",
        names().join(", ")
    )))
}

/// Names of all registered backends, sorted.
pub fn names() -> Vec<&'static str> {
    let mut v: Vec<_> = BACKENDS.iter().map(|b| b.name).collect();
    v.sort_unstable();
    v
}

/// What the first bytes of a core file say it is, for messages.
pub fn describe_core(b: &[u8]) -> String {
    if let Some(id) = ElfIdent::parse(b) {
        return format!("an {} {}", id.describe(), id.kind());
    }
    if b.starts_with(b"minidump") {
        let magic = &b[..b.len().min(24)];
        let end = magic.iter().position(|&c| c == 0).unwrap_or(magic.len());
        return format!(
            "a minidump with magic {:?}",
            String::from_utf8_lossy(&magic[..end])
        );
    }
    "neither an ELF core nor a minidump".into()
}
