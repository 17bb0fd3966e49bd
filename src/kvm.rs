//! The safe Rust API: a handle on one kernel and crash dump.

use crate::error::{Error, Result};
use crate::identify::{self, Head};
use crate::image::{Image, ReadMode};
use crate::kallsyms;
use crate::kernel::{Kernel, Symbol};
use crate::linux::{self, LinuxCore, Symbols};
use crate::pagetable::Step as WalkStep;
use crate::physmem::Span;
use crate::registry::{self, Backend, Probe, Setup, Translator};
use crate::regs::{Arch, Registers};
use crate::threads::Thread;
use crate::walk::Page;
use object::elf::{EM_386, EM_X86_64};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

/// Resolves a kernel symbol name to an address (the `kvm_open2` resolver).
pub type Resolver = Box<dyn Fn(&str) -> Option<u64> + Send + Sync>;

/// An open kernel and crash dump.
///
/// A `Kvm` is immutable once open: it is `Send` and `Sync`, and any number of
/// threads may read through one handle at the same time.
///
/// ```
/// # fn main() -> kvm::Result<()> {
/// # let (kernel, core) = ("tests/data/kernel", "tests/data/vmcore");
/// let kvm = kvm::Kvm::open(kernel, core)?;
/// let version = kvm.symbol("version").expect("a FreeBSD kernel has one");
/// let mut buf = [0u8; 7];
/// kvm.read_exact(version.value, &mut buf)?;
/// assert_eq!(&buf, b"FreeBSD");
/// # Ok(())
/// # }
/// ```
pub struct Kvm {
    kernel: Kernel,
    core: Arc<Image>,
    backend: &'static Backend,
    vtop: Arc<dyn Translator>,
    resolver: Option<Resolver>,
    /// Linux's run-time symbols, for a Linux dump.
    linux: Option<Symbols>,
    /// FreeBSD's per-CPU and VNET tables, read on first use.
    percpu: PerCpuState,
}

/// The value in `cell`, read by `read` the first time it succeeds (a
/// failure is not kept: the next call reads again).
fn read_once<T>(cell: &OnceLock<T>, read: impl FnOnce() -> Result<T>) -> Result<&T> {
    if let Some(v) = cell.get() {
        return Ok(v);
    }
    let v = read()?;
    Ok(cell.get_or_init(|| v))
}

/// What [`Kvm`]'s per-CPU and VNET calls read once, and the CPU
/// `pcpu_entry_*` symbols are relocated to (`kvm_dpcpu_setcpu`).
#[derive(Default)]
struct PerCpuState {
    pcpu: OnceLock<crate::pcpu::Pcpu>,
    dpcpu: OnceLock<crate::pcpu::Dpcpu>,
    vnet: OnceLock<crate::pcpu::Vnet>,
    cpu: AtomicU32,
}

impl std::fmt::Debug for Kvm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kvm")
            .field("backend", &self.backend.name)
            .finish_non_exhaustive()
    }
}

/// How to open a dump: the options behind [`Kvm::open`].
///
/// ```
/// # fn main() -> kvm::Result<()> {
/// # let (kernel, core) = ("tests/data/kernel", "tests/data/vmcore");
/// // A core that another process may still truncate: read it with pread(2).
/// let kvm = kvm::OpenOptions::new().pread(true).open(kernel, core)?;
/// assert!(kvm.symbol("version").is_some());
/// # Ok(())
/// # }
/// ```
pub struct OpenOptions {
    resolver: Option<Resolver>,
    mode: ReadMode,
    verify: bool,
    /// The kernel a FreeBSD dump opened without one uses (the C API's
    /// NULL execfile: `/boot/kernel/kernel`, as in FreeBSD).
    default_kernel: Option<std::path::PathBuf>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl OpenOptions {
    /// The defaults: symbols from the kernel's own table, the core mapped
    /// into memory, the kernel checked against the dump.
    pub fn new() -> Self {
        OpenOptions {
            resolver: None,
            mode: ReadMode::Map,
            verify: true,
            default_kernel: None,
        }
    }

    /// Resolves symbols with `resolver` (as `kvm_open2` does) instead of the
    /// kernel's symbol table.
    pub fn resolver(mut self, resolver: Resolver) -> Self {
        self.resolver = Some(resolver);
        self
    }

    /// Reads the core with `pread(2)` instead of mapping it: slower, but a
    /// core that shrinks while open (another process truncating it) gives
    /// short reads instead of `SIGBUS` or zeros.
    pub fn pread(mut self, pread: bool) -> Self {
        self.mode = if pread {
            ReadMode::Pread
        } else {
            ReadMode::Map
        };
        self
    }

    /// Whether open checks the kernel against the dump (on by default): a
    /// kernel without a `version` symbol is refused, and one whose
    /// `version` string differs from the dump's copy of it.
    pub fn verify_kernel(mut self, verify: bool) -> Self {
        self.verify = verify;
        self
    }

    /// The kernel file a FreeBSD dump opened without one reads.
    #[cfg_attr(not(feature = "capi"), allow(dead_code))]
    pub(crate) fn default_kernel(mut self, path: &Path) -> Self {
        self.default_kernel = Some(path.to_owned());
        self
    }

    /// Opens a kernel image and its crash dump with these options: a
    /// FreeBSD kernel and its ELF full dump or minidump, or a Linux
    /// kernel (its `vmlinux`, `System.map` or a `/proc/kallsyms` listing)
    /// and its ELF or kdump-compressed vmcore.
    pub fn open(self, kernel: impl AsRef<Path>, core: impl AsRef<Path>) -> Result<Kvm> {
        self.open_dump(Some(kernel.as_ref()), core.as_ref())
    }

    /// Opens a crash dump, with its kernel file or without one. A Linux
    /// dump opens without: symbols then come from its VMCOREINFO. A
    /// FreeBSD dump needs its kernel.
    pub fn open_dump(mut self, kernel: Option<&Path>, core_path: &Path) -> Result<Kvm> {
        // Open reads the core's headers and the tables it checks once: with
        // pread, before the core is mapped for the reads that follow.
        let core = Image::open(core_path, "core", ReadMode::Pread)?;
        let chead = Head::read(&core)?;
        let kfile = match kernel {
            Some(path) => {
                let image = Image::open(path, "kernel", ReadMode::Map)?;
                let head = Head::read(&image)?;
                let kernel = match head.executable() {
                    Some(ident) => Some(
                        Kernel::parse(&image, ident)
                            .map_err(|e| e.in_file("kernel", image.path()))?,
                    ),
                    None => None,
                };
                Some((image, head, kernel))
            }
            None => None,
        };
        let kernel_is_linux = match &kfile {
            Some((_, _, Some(k))) => linux::is_linux_kernel(k),
            Some((_, head, None)) => identify::looks_like_text(head),
            None => true,
        };
        let linux = LinuxCore::identify(&core, chead.bytes(), kernel_is_linux)
            .map_err(|e| e.in_file("core", core.path()))?;
        match (linux, kfile) {
            (Some(l), kfile) => self.open_linux(kfile, core, &chead, l),
            (None, Some((image, head, kernel))) => {
                self.open_freebsd(image, head, kernel, core, chead)
            }
            (None, None) if self.default_kernel.is_some() => {
                let path = self.default_kernel.take().unwrap_or_default();
                self.open_dump(Some(&path), core_path)
            }
            (None, None) => Err(Error::BadKernel(format!(
                "core {}: is {}, which cannot be read without its kernel image (give the kernel \
                 file too)",
                core.path().display(),
                registry::describe_core(chead.bytes())
            ))),
        }
    }

    fn open_freebsd(
        self,
        kimage: Image,
        khead: Head,
        kernel: Option<Kernel>,
        core: Image,
        chead: Head,
    ) -> Result<Kvm> {
        // check_files refuses a kernel that is not a FreeBSD kernel ELF.
        identify::check_files(&kimage, &khead, &core, &chead)?;
        let Some(kernel) = kernel else {
            unreachable!("check_files refuses a kernel that is not an executable ELF file")
        };
        let backend = registry::find(&Probe {
            kernel: kernel.ident,
            core_head: chead.bytes(),
            linux: None,
        })
        .map_err(|e| e.in_file("core", core.path()))?;
        let resolver = self.resolver;
        let lookup = |name: &str| match &resolver {
            Some(r) => r(name),
            None => kernel.symbol(name).map(|s| s.value),
        };
        // Without the check, a kernel without `version` (stripped, say)
        // opens where the backend needs no symbol, as with libkvm.
        let version = if self.verify {
            Some(identify::check_freebsd(
                &kimage,
                &kernel,
                &lookup,
                resolver.is_some(),
            )?)
        } else {
            None
        };
        let vtop = (backend.initvtop)(&Setup {
            core: &core,
            lookup: &lookup,
            linux: Default::default(),
        })
        .map_err(|e| e.in_file("core", core.path()))?;
        let mut kvm = Kvm {
            kernel,
            core: Arc::new(core),
            backend,
            vtop: Arc::from(vtop),
            resolver,
            linux: None,
            percpu: PerCpuState::default(),
        };
        if let Some(version) = version {
            identify::check_version(&kimage, &kvm.core, &kvm.kernel, version, |buf| {
                kvm.read(version, buf)
            })?;
        }
        if let (ReadMode::Map, Some(core)) = (self.mode, Arc::get_mut(&mut kvm.core)) {
            core.map();
        }
        Ok(kvm)
    }

    fn open_linux(
        self,
        kfile: Option<(Image, Head, Option<Kernel>)>,
        core: Image,
        chead: &Head,
        l: LinuxCore,
    ) -> Result<Kvm> {
        if let Some((image, head, _)) = &kfile {
            identify::check_order(image, head, &core, chead)?;
        }
        let (kimage, kernel) = match kfile {
            None => (None, Kernel::empty()),
            Some((image, _, Some(k))) if !linux::is_linux_kernel(&k) => {
                return Err(Error::Mismatch(format!(
                    "kernel {} is not a Linux kernel ({}) but core {} is {}: give the Linux \
                     kernel's vmlinux, System.map or kallsyms listing, or none",
                    image.path().display(),
                    if k.symbol("version").is_some() {
                        "it has FreeBSD's `version` symbol"
                    } else {
                        "it has no `linux_banner` symbol"
                    },
                    core.path().display(),
                    l.describe()
                )))
            }
            Some((image, _, Some(k))) => (Some(image), k),
            Some((image, head, None)) => {
                identify::refuse_compressed_kernel(&image, &head)?;
                let k = Kernel::from_map(&image).map_err(|e| e.in_file("kernel", image.path()))?;
                (Some(image), k)
            }
        };
        let kpath = kimage
            .as_ref()
            .map_or_else(String::new, |i| i.path().display().to_string());
        let mut symbols = Symbols::new(&l.info, &kernel, &kpath)?;
        symbols.word = (if l.machine == EM_386 { 4 } else { 8 }, l.big_endian);
        symbols.prstatus = l.prstatus.clone();
        symbols.machine = l.machine;
        let backend = registry::find(&Probe {
            kernel: kernel.ident,
            core_head: chead.bytes(),
            linux: Some(&l),
        })
        .map_err(|e| e.in_file("core", core.path()))?;
        let (ptr_size, big_endian) = (if l.machine == EM_386 { 4 } else { 8 }, l.big_endian);
        let machine = l.machine;
        let resolver = self.resolver;
        let lookup = |name: &str| match &resolver {
            Some(r) => r(name),
            None => linux_symbol(&kernel, &symbols, name).map(|s| s.value),
        };
        let vtop = (backend.initvtop)(&Setup {
            core: &core,
            lookup: &lookup,
            linux: std::cell::Cell::new(Some(l)),
        })
        .map_err(|e| e.in_file("core", core.path()))?;
        let mut kvm = Kvm {
            kernel,
            core: Arc::new(core),
            backend,
            vtop: Arc::from(vtop),
            resolver,
            linux: Some(symbols),
            percpu: PerCpuState::default(),
        };
        // No KERNELOFFSET to move the kernel file's symbols by (a QEMU dump
        // without VMCOREINFO): x86-64's kernel map tells it.
        if let (true, Some(text), Some(banner), Some(symbols)) = (
            machine == EM_X86_64,
            kvm.kernel.symbol("_text"),
            kvm.kernel.symbol("linux_banner"),
            kvm.linux.as_ref(),
        ) {
            if symbols.info.kernel_offset().is_none() && symbols.info.symbol("_stext").is_none() {
                if let Some(slide) = linux::x86_64_image_slide(&kvm, text.value, banner.value) {
                    if let Some(s) = kvm.linux.as_mut() {
                        (s.slide, s.kaslr) = (slide, slide);
                    }
                }
            }
        }
        // Without a kernel file, the kernel's own kallsyms tables, where
        // VMCOREINFO says they are (Linux 6.0+); their values are run-time
        // ones. A table that does not decode fails the open, unless told not
        // to check.
        if let (true, None, Some(symbols)) =
            (kvm.kernel.is_empty(), &kvm.resolver, kvm.linux.as_ref())
        {
            let read = |va: u64, buf: &mut [u8]| kvm.read_exact(va, buf);
            let loaded = kallsyms::load(&symbols.info, ptr_size, big_endian, &read);
            match loaded {
                Ok(Some(k)) => {
                    kvm.kernel = k;
                    if let Some(s) = kvm.linux.as_mut() {
                        s.slide = 0;
                    }
                }
                Ok(None) => {}
                Err(e) if self.verify => return Err(e.in_file("core", kvm.core.path())),
                Err(_) => {}
            }
        }
        // A vmlinux holds the banner the running kernel prints: compare.
        if let (Some(kimage), true) = (&kimage, self.verify) {
            if let Some(banner) = kvm.kernel.symbol("linux_banner") {
                let slide = kvm.linux.as_ref().map_or(0, |s| s.slide);
                let at = banner.value.wrapping_add(slide);
                identify::check_version(kimage, &kvm.core, &kvm.kernel, banner.value, |buf| {
                    kvm.read(at, buf)
                })?;
            }
        }
        if let (ReadMode::Map, Some(core)) = (self.mode, Arc::get_mut(&mut kvm.core)) {
            core.map();
        }
        Ok(kvm)
    }
}

/// The dumped kernel's memory as its structures are read: integers and
/// pointers of its word size and byte order, at kernel virtual addresses.
pub(crate) struct Words<'a> {
    kvm: &'a Kvm,
    /// Pointer size: 4 or 8.
    pub ptr_size: usize,
    be: bool,
}

impl Words<'_> {
    /// The `size`-byte unsigned integer at `at`.
    pub fn uint(&self, at: u64, size: usize) -> Result<u64> {
        let mut b = [0u8; 8];
        self.kvm.read_exact(at, &mut b[..size])?;
        Ok(crate::image::uint(&b[..size], self.be))
    }
    /// The `int` at `at`.
    pub fn int(&self, at: u64) -> Result<i32> {
        Ok(self.uint(at, 4)? as u32 as i32)
    }
    /// The pointer (or `unsigned long`) at `at`.
    pub fn ptr(&self, at: u64) -> Result<u64> {
        self.uint(at, self.ptr_size)
    }
    /// Reads `buf.len()` bytes at `at`.
    pub fn read(&self, at: u64, buf: &mut [u8]) -> Result<()> {
        self.kvm.read_exact(at, buf)
    }
    /// A symbol's value.
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.kvm.symbol(name).map(|s| s.value)
    }
    /// The kernel stores words big-endian.
    pub fn big_endian(&self) -> bool {
        self.be
    }
}

/// A Linux symbol at run time: the kernel file's, moved by the KASLR
/// offset, else VMCOREINFO's. What KASLR does not move stays: absolute
/// symbols and those below the kernel image, such as x86-64's zero-based
/// per-CPU variables (`arch/x86/tools/relocs.c` leaves both out of the
/// relocations; the running kernel's kallsyms agrees).
fn linux_symbol(kernel: &Kernel, symbols: &Symbols, name: &str) -> Option<Symbol> {
    use crate::kernel::ntype::{N_DATA, N_EXT};
    match kernel.symbol(name) {
        Some(s) => Some(linux_runtime(symbols, s)),
        None => symbols.info.symbol(name).map(|value| Symbol {
            value,
            n_type: N_DATA | N_EXT,
        }),
    }
}

/// A kernel file's symbol where it lies at run time (see `linux_symbol`).
fn linux_runtime(symbols: &Symbols, s: Symbol) -> Symbol {
    use crate::kernel::ntype::{N_ABS, N_EXT};
    Symbol {
        value: if s.n_type & !N_EXT == N_ABS || s.value < symbols.image_start {
            s.value
        } else {
            s.value.wrapping_add(symbols.slide)
        },
        n_type: s.n_type,
    }
}

impl Kvm {
    /// Opens a kernel image and its crash dump (an ELF full dump or a
    /// minidump); symbols come from the kernel's symbol table. See
    /// [`OpenOptions`] for the choices.
    pub fn open(kernel: impl AsRef<Path>, core: impl AsRef<Path>) -> Result<Kvm> {
        OpenOptions::new().open(kernel, core)
    }

    /// Opens as [`Kvm::open`], resolving symbols with `resolver` when given
    /// (as `kvm_open2` does), for native and cross dumps alike.
    pub fn open_with_resolver(
        kernel: impl AsRef<Path>,
        core: impl AsRef<Path>,
        resolver: Option<Resolver>,
    ) -> Result<Kvm> {
        let options = OpenOptions::new();
        match resolver {
            Some(r) => options.resolver(r),
            None => options,
        }
        .open(kernel, core)
    }

    /// Name of the backend reading this dump, e.g. `"amd64 minidump"`.
    pub fn backend(&self) -> &'static str {
        self.backend.name
    }

    /// True when the dump's architecture is the host's (`kvm_native`).
    pub fn native(&self) -> bool {
        (self.backend.native)()
    }

    /// Kernel displacement (`kvm_kerndisp`); 0 when unknown. For a Linux
    /// dump, the KASLR offset.
    pub fn kerndisp(&self) -> i64 {
        match &self.linux {
            Some(symbols) => symbols.kaslr as i64,
            None => self.vtop.kerndisp(),
        }
    }

    /// Resolves a symbol: through the resolver given at open, else the
    /// kernel's symbol table (`kvm_nlist2` semantics, including the a.out
    /// leading underscore).
    pub fn symbol(&self, name: &str) -> Option<Symbol> {
        match &self.resolver {
            Some(r) => r(name).map(|value| Symbol {
                value,
                n_type: crate::kernel::ntype::N_DATA | crate::kernel::ntype::N_EXT,
            }),
            None => match &self.linux {
                Some(symbols) => linux_symbol(&self.kernel, symbols, name),
                None => self.kernel.symbol(name),
            },
        }
    }

    /// Every symbol of the kernel's table (the kernel file's, or for a
    /// Linux dump opened without one, the kernel's own kallsyms tables),
    /// with the values [`Kvm::symbol`] gives without a resolver: for a
    /// Linux dump, run-time addresses. Names that are not UTF-8 are left
    /// out; the order is the table's.
    pub fn symbols(&self) -> impl Iterator<Item = (&str, Symbol)> + '_ {
        self.kernel.iter().filter_map(move |(name, s)| {
            let name = std::str::from_utf8(name).ok()?;
            Some(match &self.linux {
                Some(symbols) => (name, linux_runtime(symbols, s)),
                None => (name, s),
            })
        })
    }

    /// Bytes of memory the dump holds (what a page walk can reach at
    /// most): all of RAM for a full dump, the dumped pages of a minidump
    /// or a filtered kdump file.
    pub fn memory_held(&self) -> u64 {
        self.vtop.held_pages().saturating_mul(4096)
    }

    /// The kernel's message buffer, oldest line first: for FreeBSD as the
    /// kernel wrote it, from the first whole line (each line's
    /// `<priority>` prefix kept; dmesg(8) strips it); for Linux the kernel
    /// log's records as `dmesg` prints them, `[seconds.micros] text` (the
    /// printk ring of 5.10+, `log_buf` before: see `src/printk.rs`).
    ///
    /// FreeBSD: the `struct msgbuf` that `msgbufp` points to
    /// (sys/sys/msgbuf.h: `msg_ptr`, then `msg_magic`, `msg_size`,
    /// `msg_wseq`), whose circular area is read from the write position
    /// `msg_wseq % msg_size`, the oldest byte once it has wrapped, with the
    /// NULs of a buffer that has not wrapped dropped (as sbin/dmesg does).
    pub fn message_buffer(&self) -> Result<Vec<u8>> {
        let Some(w) = self.words() else {
            return Err(Error::NotSupported(
                "a message buffer without a kernel image",
            ));
        };
        if let Some(symbols) = &self.linux {
            return crate::printk::kernel_log(&symbols.info, &w, self.memory_held());
        }
        let msgbufp = w.symbol("msgbufp").ok_or(Error::MissingSymbol("msgbufp"))?;
        let hdr_at = w.ptr(msgbufp)?;
        let field = |i: u64| w.uint(hdr_at.wrapping_add(w.ptr_size as u64 + 4 * i), 4);
        let (area, magic, size, wseq) = (w.ptr(hdr_at)?, field(0)?, field(1)?, field(2)?);
        // MSG_MAGIC (sys/sys/msgbuf.h).
        if magic != 0x063062 {
            return Err(Error::BadCore(format!(
                "the struct msgbuf at {hdr_at:#x} (msgbufp) has magic {magic:#x}, not \
                 MSG_MAGIC (0x63062)"
            )));
        }
        // FreeBSD's kern.msgbufsize defaults to 96 KiB; more than the dump
        // holds, or than 64 MiB, is no message buffer.
        if size == 0 || size > (64 << 20) || size > self.memory_held() {
            return Err(Error::BadCore(format!(
                "the struct msgbuf at {hdr_at:#x} (msgbufp) claims a buffer of {size} bytes"
            )));
        }
        let mut buf = vec![0u8; size as usize];
        self.read_exact(area, &mut buf)?;
        buf.rotate_left((wseq % size) as usize);
        // A buffer that has wrapped starts with the oldest byte, mid-line:
        // from its first whole line, as dmesg(8) prints it. One that has
        // not starts with the NULs it was cleared to.
        let wrapped = buf.first().is_some_and(|&b| b != 0);
        buf.retain(|&b| b != 0);
        if wrapped {
            let first = buf
                .iter()
                .position(|&b| b == b'\n')
                .map_or(buf.len(), |i| i + 1);
            buf.drain(..first);
        }
        Ok(buf)
    }

    /// How many CPUs the dumped machine ran: FreeBSD's `mp_ncpus`, or the
    /// CPUs a Linux dump saved registers of (its `NT_PRSTATUS` notes);
    /// `None` when the dump does not say.
    pub fn cpus(&self) -> Option<u32> {
        if let Some(symbols) = &self.linux {
            let n = u32::try_from(symbols.prstatus.len()).ok()?;
            return (n > 0).then_some(n);
        }
        // sys/kern/subr_smp.c: `int mp_ncpus`.
        let w = self.words()?;
        let n = w.int(w.symbol("mp_ncpus")?).ok()? as u32;
        (1..=65536).contains(&n).then_some(n)
    }

    /// The kernel's threads (see [`Thread`]): FreeBSD's from `allproc`
    /// and `zombproc` with the PCB their registers come from, Linux's one
    /// per CPU the dump saved registers of.
    pub fn threads(&self) -> Result<Vec<Thread>> {
        if let Some(symbols) = &self.linux {
            // The CPU that panicked: `panic_cpu` (kernel/panic.c, an
            // atomic_t, PANIC_CPU_INVALID -1 when none), where symbols
            // give it. Notes come in CPU order, one per online CPU.
            let panic_cpu = self
                .words()
                .and_then(|w| usize::try_from(w.int(w.symbol("panic_cpu")?).ok()?).ok());
            return Ok(symbols
                .prstatus
                .iter()
                .enumerate()
                .map(|(cpu, note)| Thread {
                    tid: note.pid,
                    pid: -1,
                    cpu: u32::try_from(cpu).ok(),
                    thread: 0,
                    pcb: 0,
                    name: String::new(),
                    comm: String::new(),
                    crashed: panic_cpu == Some(cpu),
                })
                .collect());
        }
        let Some(w) = self.words() else {
            return Err(Error::NotSupported("threads without a kernel image"));
        };
        // A struct thread takes over a kilobyte: a dump cannot hold a
        // quarter as many threads as this (and memory stays a fraction of
        // the dump's; loops end at their first repeat).
        crate::threads::freebsd(&w, self.memory_held() / 256 + 1024)
    }

    /// The FreeBSD kernel's words, for the per-CPU and VNET calls.
    fn freebsd_words(&self) -> Result<Words<'_>> {
        if self.linux.is_some() {
            return Err(Error::NotSupported(
                "FreeBSD's per-CPU and VNET data in a Linux dump",
            ));
        }
        self.words()
            .ok_or(Error::NotSupported("per-CPU data without a kernel image"))
    }

    /// `cpuid_to_pcpu`, `mp_maxcpus` and `mp_ncpus`, read once.
    fn pcpu_tables(&self) -> Result<&crate::pcpu::Pcpu> {
        read_once(&self.percpu.pcpu, || {
            crate::pcpu::pcpu(&self.freebsd_words()?)
        })
    }

    /// The dynamic per-CPU area, read once.
    fn dpcpu(&self) -> Result<&crate::pcpu::Dpcpu> {
        read_once(&self.percpu.dpcpu, || {
            crate::pcpu::dpcpu(&self.freebsd_words()?)
        })
    }

    /// `vnet0`'s data, read once.
    fn vnet(&self) -> Result<&crate::pcpu::Vnet> {
        read_once(&self.percpu.vnet, || {
            crate::pcpu::vnet(&self.freebsd_words()?, self.kerndisp())
        })
    }

    /// The kernel's `mp_maxcpus`: how many CPU slots its per-CPU tables
    /// have (`kvm_getmaxcpu(3)`).
    pub fn max_cpus(&self) -> Result<u32> {
        Ok(self.pcpu_tables()?.maxcpus)
    }

    /// The kernel's `mp_ncpus`: how many CPUs it ran (`kvm_getncpus(3)`).
    pub fn ncpus(&self) -> Result<u32> {
        Ok(self.pcpu_tables()?.ncpus)
    }

    /// Where CPU `cpu`'s `struct pcpu` lies (`cpuid_to_pcpu[cpu]`, what
    /// `kvm_getpcpu(3)` copies); `None` for a CPU the kernel does not have.
    pub fn pcpu(&self, cpu: u32) -> Result<Option<u64>> {
        let p = self.pcpu_tables()?;
        Ok(p.pcpu.get(cpu as usize).copied().filter(|&a| a != 0))
    }

    /// The kernel's `PAGE_SIZE`, which is `UMA_PCPU_ALLOC_SIZE`
    /// (sys/sys/pcpu.h): the distance between two CPUs' copies of a
    /// per-CPU allocation, and the largest `struct pcpu` any
    /// architecture has (its `CTASSERT`s).
    pub fn pcpu_alloc_size(&self) -> u64 {
        self.vtop.page_size()
    }

    /// Selects the CPU whose copies of dynamic per-CPU variables
    /// (`pcpu_entry_*`) [`Kvm::nlist_symbol`] gives
    /// (`kvm_dpcpu_setcpu(3)`); CPU 0 until set. Fails for a CPU beyond
    /// `mp_maxcpus` or without a per-CPU area.
    pub fn dpcpu_set_cpu(&self, cpu: u32) -> Result<()> {
        let d = self.dpcpu()?;
        match d.off.get(cpu as usize) {
            None => Err(Error::InvalidArgument(
                "the CPU number is mp_maxcpus or more",
            )),
            Some(0) => Err(Error::InvalidArgument(
                "that CPU has no per-CPU area (its dpcpu_off is 0)",
            )),
            Some(_) => {
                self.percpu.cpu.store(cpu, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    /// The CPU [`Kvm::dpcpu_set_cpu`] selected (0 until set).
    pub fn dpcpu_cpu(&self) -> u32 {
        self.percpu.cpu.load(Ordering::Relaxed)
    }

    /// Where CPU `cpu`'s copy of the per-CPU allocation `base` (a
    /// `UMA_ZONE_PCPU` item, a `counter_u64_t`) lies: `base` plus
    /// `cpu` times [`Kvm::pcpu_alloc_size`]. On amd64 since FreeBSD 13 the
    /// kernel stores such pointers as offsets from `__pcpu`
    /// (`zpcpu_base_to_offset`, sys/amd64/include/pcpu.h); a `base` that
    /// is no kernel address (below 2^63) is one and is moved by it. Such
    /// offsets are never negative: the per-CPU arena lies above `__pcpu`
    /// (`pcpu_page_alloc` in sys/vm/uma_core.c takes offsets below
    /// `VM_PCPU_BOOTSTRAP_SIZE` for the bootstrap pages), and amd64
    /// kernel addresses all have bit 63 set.
    pub fn zpcpu_addr(&self, base: u64, cpu: u32) -> Result<u64> {
        let w = self.freebsd_words()?;
        let mut base = base;
        let amd64 = self.kernel.ident.is_some_and(|i| i.machine == EM_X86_64);
        if amd64 && base >> 63 == 0 {
            if let Some(at) = w.symbol("__pcpu") {
                base = base.wrapping_add(w.ptr(at)?);
            }
        }
        Ok(base.wrapping_add(self.pcpu_alloc_size().wrapping_mul(u64::from(cpu))))
    }

    /// Reads CPU `cpu`'s copy of the per-CPU allocation `base`
    /// (`kvm_read_zpcpu(3)`); see [`Kvm::zpcpu_addr`].
    pub fn read_zpcpu(&self, base: u64, cpu: u32, buf: &mut [u8]) -> Result<usize> {
        self.read(self.zpcpu_addr(base, cpu)?, buf)
    }

    /// The value of the `counter(9)` at `base`: the sum of its 64-bit
    /// per-CPU copies over CPUs 0 to `mp_ncpus` - 1
    /// (`kvm_counter_u64_fetch(3)`).
    pub fn counter_u64_fetch(&self, base: u64) -> Result<u64> {
        let n = self.ncpus()?;
        let w = self.freebsd_words()?;
        let mut sum = 0u64;
        for cpu in 0..n {
            sum = sum.wrapping_add(w.uint(self.zpcpu_addr(base, cpu)?, 8)?);
        }
        Ok(sum)
    }

    /// Resolves a symbol as `kvm_nlist(3)` does on a FreeBSD dump: as
    /// [`Kvm::symbol`], else, for a kernel with virtualised network
    /// stacks, `vnet_entry_NAME` in `vnet0`'s data, else `pcpu_entry_NAME`
    /// in the selected CPU's dynamic per-CPU area (a leading `_` of `name`
    /// is dropped first, as libkvm does). A prefix is tried only where the
    /// kernel's tables for it can be read.
    pub fn nlist_symbol(&self, name: &str) -> Option<Symbol> {
        use crate::pcpu::{prefixed, relocate};
        if let Some(s) = self.symbol(name) {
            return Some(s);
        }
        if self.linux.is_some() {
            return None;
        }
        if let Ok(v) = self.vnet() {
            if let Some(s) = self.symbol(&prefixed("vnet_entry_", name)) {
                let value = relocate(s.value, v.start, v.stop, v.base);
                return Some(Symbol { value, ..s });
            }
        }
        if let Ok(d) = self.dpcpu() {
            if let Some(s) = self.symbol(&prefixed("pcpu_entry_", name)) {
                let off = d.off.get(self.dpcpu_cpu() as usize).copied().unwrap_or(0);
                let value = relocate(s.value, d.start, d.stop, off);
                return Some(Symbol { value, ..s });
            }
        }
        None
    }

    /// The dumped kernel stores words big-endian (false where the dump
    /// cannot say: no kernel image with a FreeBSD dump).
    pub fn big_endian(&self) -> bool {
        self.words().is_some_and(|w| w.big_endian())
    }

    /// The architecture whose registers [`Kvm::registers`] reads, `None`
    /// when it reads none of this dump's.
    pub fn register_arch(&self) -> Option<Arch> {
        let machine = match (&self.linux, self.kernel.ident) {
            (Some(symbols), _) => symbols.machine,
            (None, Some(ident)) => ident.machine,
            (None, None) => return None,
        };
        Arch::from_machine(machine)
    }

    /// A thread's registers (see [`Registers`]): FreeBSD's from the PCB
    /// [`Kvm::threads`] chose, in the layout of the kernel's architecture
    /// and era (arm64's changed at osreldate 1400084); a Linux CPU's from
    /// its `NT_PRSTATUS` note.
    pub fn registers(&self, thread: &Thread) -> Result<Registers> {
        if let Some(symbols) = &self.linux {
            let note = thread
                .cpu
                .and_then(|c| symbols.prstatus.get(c as usize))
                .ok_or_else(|| {
                    Error::BadCore(format!(
                        "thread {} has no CPU with registers in the dump (it has {} \
                         NT_PRSTATUS notes)",
                        thread.tid,
                        symbols.prstatus.len()
                    ))
                })?;
            let (_, be) = symbols.word;
            return crate::regs::linux(symbols.machine, be, &note.reg, thread.cpu.unwrap_or(0));
        }
        let (Some(w), Some(arch)) = (self.words(), self.register_arch()) else {
            return Err(Error::NotSupported(
                "registers without a kernel image of a known architecture",
            ));
        };
        if thread.pcb == 0 {
            return Err(Error::BadCore(format!(
                "thread {} has no PCB to read registers from",
                thread.tid
            )));
        }
        crate::regs::freebsd(&w, arch, thread.pcb)
    }

    /// The kernel's memory as its structures are read, in its word size
    /// and byte order (a Linux dump's from its machine, a FreeBSD one's
    /// from the kernel image); `None` without either.
    pub(crate) fn words(&self) -> Option<Words<'_>> {
        let (ptr, be) = match (&self.linux, self.kernel.ident) {
            (Some(symbols), _) => symbols.word,
            (None, Some(ident)) => (if ident.is_64 { 8 } else { 4 }, ident.big_endian),
            (None, None) => return None,
        };
        Some(Words {
            kvm: self,
            ptr_size: ptr,
            be,
        })
    }

    /// Why the kernel panicked, if it did: FreeBSD's `panicstr`
    /// (sys/kern/kern_shutdown.c), Linux's last `Kernel panic - not
    /// syncing: ` line of its log. `None` when the dump does not say.
    pub fn panic_string(&self) -> Option<String> {
        if self.linux.is_some() {
            const PANIC: &[u8] = b"Kernel panic - not syncing: ";
            let log = self.message_buffer().ok()?;
            let line = log.split(|&b| b == b'\n').rev().find_map(|l| {
                let at = l.windows(PANIC.len()).position(|w| w == PANIC)?;
                Some(&l[at + PANIC.len()..])
            })?;
            return Some(String::from_utf8_lossy(line).into_owned());
        }
        let w = self.words()?;
        let at = w.ptr(w.symbol("panicstr")?).ok()?;
        if at == 0 {
            return None;
        }
        // Up to 1 KiB, a page at a time: the string may end before an
        // unmapped page.
        let mut text = Vec::new();
        while text.len() < 1024 {
            let va = at.wrapping_add(text.len() as u64);
            let mut chunk = vec![0u8; (4096 - (va & 0xfff)).min(1024 - text.len() as u64) as usize];
            if self.read_exact(va, &mut chunk).is_err() {
                if text.is_empty() {
                    return None;
                }
                break; // what could be read
            }
            match chunk.iter().position(|&b| b == 0) {
                Some(end) => {
                    text.extend_from_slice(&chunk[..end]);
                    break;
                }
                None => text.extend_from_slice(&chunk),
            }
        }
        Some(String::from_utf8_lossy(&text).into_owned())
    }

    /// Where `va` lies in the core file and how many bytes from there are
    /// contiguous (`kvm_kvatop`-style translation, without reading).
    pub fn translate(&self, va: u64) -> Result<Span> {
        self.vtop
            .kvatop(&self.core, va)
            .map_err(|f| Error::fault(va, f))
    }

    /// Reads kernel virtual memory at `va` into `buf` (`kvm_read2`).
    ///
    /// Returns `buf.len()`, or fewer bytes only when the core file ends early
    /// (a truncated dump). Fails if any page of the range does not translate,
    /// even after some bytes were copied; the error names the address.
    #[inline]
    pub fn read(&self, va: u64, buf: &mut [u8]) -> Result<usize> {
        self.vtop.read(&self.core, va, buf)
    }

    /// The physical address `va` translates to (`kvm_vtop`, an extension).
    pub fn vtop(&self, va: u64) -> Result<u64> {
        self.vtop
            .vtop(&self.core, va)
            .map_err(|f| Error::fault(va, f))
    }

    /// How `va` translates, level by level (`vmcore vtop`): each table
    /// entry the walk read, top level first, then the physical address or
    /// why there is none. Translations that read no table (a direct map
    /// computed from the address) have no steps.
    pub fn translation(&self, va: u64) -> (Vec<WalkStep>, Result<u64>) {
        let mut steps = Vec::new();
        let pa = self
            .vtop
            .trace(&self.core, va, &mut |s| steps.push(s))
            .map_err(|f| Error::fault(va, f));
        (steps, pa)
    }

    /// Reads the dump's physical memory at `pa` into `buf`
    /// (`kvm_read_phys`, an extension): `buf.len()`, or fewer bytes only
    /// when the core file ends early; an error naming the first address
    /// the dump does not hold.
    pub fn read_phys(&self, pa: u64, buf: &mut [u8]) -> Result<usize> {
        self.vtop.read_phys(&self.core, pa, buf)
    }

    /// Reads exactly `buf.len()` bytes, treating a short read as an error.
    pub fn read_exact(&self, va: u64, buf: &mut [u8]) -> Result<()> {
        let n = self.read(va, buf)?;
        if n == buf.len() {
            Ok(())
        } else {
            Err(Error::BadCore(format!(
                "core {}: the file ends after {n} of the {} bytes at {va:#x}",
                self.core.path().display(),
                buf.len()
            )))
        }
    }

    /// Calls `f` for every mapped page until `f` returns false
    /// (`kvm_walk_pages`): first each leaf of the kernel's page tables (or
    /// of a minidump's page map), recursive and aliased mappings included,
    /// in table order; then, on minidumps of architectures with a direct
    /// map, each dumped page only the direct map reaches. Returns
    /// `Ok(true)` when the walk completed, `Ok(false)` when `f` stopped it,
    /// and an error when the tables reach more page tables than the dump
    /// holds pages (hostile or damaged tables).
    pub fn walk_pages(&self, mut f: impl FnMut(&Page) -> bool) -> Result<bool> {
        self.vtop.walk_pages(&self.core, &mut f)
    }

    /// The core file and the translator, for spaces stacked on this handle.
    pub(crate) fn parts(&self) -> (&Arc<Image>, &Arc<dyn Translator>) {
        (&self.core, &self.vtop)
    }

    /// Writing is not possible: dumps are read-only (`kvm_write`).
    pub fn write(&self, _va: u64, _buf: &[u8]) -> Result<usize> {
        Err(Error::ReadOnly)
    }
}
