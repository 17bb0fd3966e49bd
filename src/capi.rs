//! The C API, with the names, types and semantics of FreeBSD's `kvm.h`
//! (`kvm_open(3)`, `kvm_read(3)`, `kvm_nlist(3)`, `kvm_geterr(3)`, ...).
//!
//! This layer only converts arguments, results and errors; the work is done
//! by [`crate::Kvm`]. No panic crosses the boundary: every entry point runs
//! under `catch_unwind` and reports a panic as an ordinary failure.

#![allow(non_camel_case_types, clippy::missing_safety_doc)]

use crate::error::Error;
use crate::ffi::{self, copy_msg, path_arg, set_errno, ErrorTexts};
use crate::kvm::{Kvm, OpenOptions, Resolver};
use crate::stack::{AddressSpace, Base, Paging, Range, Space, MAX_RANGES};
use libc::{c_char, c_int, c_uchar, c_uint, c_ulong, c_void, off_t, size_t, ssize_t};
use static_assertions::{assert_eq_size, const_assert_eq};
use std::ffi::{CStr, CString};
use std::io::Write;
use std::mem::offset_of;
use std::path::Path;

/// A kernel virtual address of the dumped machine (any architecture).
pub type kvaddr_t = u64;
/// A physical address of the dumped machine.
pub type kpaddr_t = u64;
/// A signed size or displacement of the dumped machine.
pub type kssize_t = i64;
/// `VM_PROT_*` bits.
pub type vm_prot_t = c_uchar;

/// The `kp_version` this library fills in (`LIBKVM_WALK_PAGES_VERSION`).
pub const LIBKVM_WALK_PAGES_VERSION: c_uint = 2;

/// A mapped page, passed to the `kvm_walk_pages()` callback (FreeBSD's
/// `struct kvm_page`, version 2). Valid only during the call.
#[repr(C)]
pub struct kvm_page {
    /// `LIBKVM_WALK_PAGES_VERSION` (2).
    pub kp_version: c_uint,
    /// Physical address of the first byte.
    pub kp_paddr: kpaddr_t,
    /// Kernel-map virtual address, or 0 when reached only through the direct map.
    pub kp_kmap_vaddr: kvaddr_t,
    /// Direct-map virtual address, or 0 when there is none.
    pub kp_dmap_vaddr: kvaddr_t,
    /// `VM_PROT_READ`, `VM_PROT_WRITE`, `VM_PROT_EXECUTE` bits.
    pub kp_prot: vm_prot_t,
    /// Core-file offset of the first byte, or -1 when it is not in the dump.
    pub kp_offset: off_t,
    /// Length in bytes (page or superpage size).
    pub kp_len: size_t,
}

/// Size of the caller's errbuf and of each handle's error text: FreeBSD's
/// `_POSIX2_LINE_MAX`.
pub const KVM_ERRBUF_SIZE: usize = 2048;
const_assert_eq!(KVM_ERRBUF_SIZE, ffi::ERRBUF_SIZE);

/// One entry of the list given to `kvm_nlist2()`: set `n_name`; on return
/// `n_type` and `n_value` hold the symbol's type and value (0 and 0 when it
/// was not found). The list ends at an entry whose `n_name` is NULL or "".
#[repr(C)]
pub struct kvm_nlist {
    /// The symbol's name (a leading `_` also matches the name without it).
    pub n_name: *const c_char,
    /// Its a.out type (`N_DATA | N_EXT`, ...), 0 when not found.
    pub n_type: c_uchar,
    /// Its value, 0 when not found.
    pub n_value: kvaddr_t,
}

/// FreeBSD's `struct nlist` as `sys/nlist_aout.h` declares it for C code
/// (without `_AOUT_INCLUDE_`), for `kvm_nlist()`. Declared in the header's
/// prelude; this definition must match it.
#[repr(C)]
pub struct nlist {
    /// The symbol's name.
    pub n_name: *const c_char,
    /// Its a.out type, 0 when not found.
    pub n_type: c_uchar,
    /// Cleared to 0.
    pub n_other: c_char,
    /// Cleared to 0.
    pub n_desc: i16,
    /// Its value, 0 when not found.
    pub n_value: c_ulong,
}

// Pin the layouts C code relies on (FreeBSD lib/libkvm/kvm.h, sys/nlist_aout.h).
const_assert_eq!(offset_of!(kvm_nlist, n_type), size_of::<*const c_char>());
#[cfg(target_pointer_width = "64")]
const _: () = {
    const_assert_eq!(offset_of!(kvm_nlist, n_value), 16);
    assert_eq_size!(kvm_nlist, [u64; 3]);
};
const_assert_eq!(offset_of!(nlist, n_type), size_of::<*const c_char>());
const_assert_eq!(offset_of!(nlist, n_desc), size_of::<*const c_char>() + 2);
const_assert_eq!(offset_of!(nlist, n_value), 2 * size_of::<*const c_char>());
assert_eq_size!(nlist, [c_ulong; 3]);
#[cfg(target_pointer_width = "64")]
const _: () = {
    const_assert_eq!(offset_of!(kvm_page, kp_paddr), 8);
    const_assert_eq!(offset_of!(kvm_page, kp_dmap_vaddr), 24);
    const_assert_eq!(offset_of!(kvm_page, kp_prot), 32);
    const_assert_eq!(offset_of!(kvm_page, kp_offset), 40);
    const_assert_eq!(offset_of!(kvm_page, kp_len), 48);
    assert_eq_size!(kvm_page, [u64; 7]);
};

/// Extension: a `kvm_open2()` flag that reads the core with `pread(2)`
/// instead of mapping it, so that a core another process truncates while
/// it is open gives short reads instead of `SIGBUS` (or zeros past a new
/// end in mid-page). Setting the environment variable `KVM_PREAD` to
/// anything but "" or "0" does the same for programs that cannot pass it.
pub const KVM_O_PREAD: c_int = 0x10000000;

/// Extension: a `kvm_open2()` flag that skips the checks of the kernel
/// against the dump: that it has a `version` symbol, and that its
/// `version` string matches the dump's (open refuses a kernel that does
/// not belong to the dump). The environment variable `KVM_NOVERIFY` does
/// the same.
pub const KVM_O_NOVERIFY: c_int = 0x20000000;

/// Extension: the `ks_version` this library takes (`struct kvm_space`).
pub const KVM_SPACE_VERSION: u32 = 1;
/// `ks_mmu`: a table of linear ranges (memory slots, aliases, p2m runs).
pub const KVM_MMU_LINEAR: u32 = 1;
/// `ks_mmu`: IA-32e 4-level paging; `ks_root` = CR3.
pub const KVM_MMU_X86_64: u32 = 2;
/// `ks_mmu`: 5-level paging; `ks_root` = CR3.
pub const KVM_MMU_X86_64_LA57: u32 = 3;
/// `ks_mmu`: 32-bit 2-level paging, 4 MiB pages; `ks_root` = CR3.
pub const KVM_MMU_I386: u32 = 4;
/// `ks_mmu`: PAE 3-level paging, 2 MiB pages, NX; `ks_root` = CR3.
pub const KVM_MMU_I386_PAE: u32 = 5;
/// `ks_mmu`: as the CPU would choose from `ks_cr0`, `ks_cr4`, `ks_efer`.
pub const KVM_MMU_X86_AUTO: u32 = 6;
/// `ks_mmu`: Intel EPT; `ks_root` = EPTP (walk length from bits 5:3).
pub const KVM_MMU_EPT: u32 = 7;
/// `ks_mmu`: aarch64 stage 1; `ks_root` = TTBRn_EL1, `ks_tcr` = TCR_EL1:
/// TTBR1's half (TG1, T1SZ), or TTBR0's when TCR_EL1.EPD1 is set.
pub const KVM_MMU_AARCH64: u32 = 8;
/// `ks_mmu`: riscv Sv39; `ks_root` = satp.PPN << 12.
pub const KVM_MMU_RISCV_SV39: u32 = 9;
/// `ks_mmu`: riscv Sv48.
pub const KVM_MMU_RISCV_SV48: u32 = 10;
/// `ks_mmu`: riscv Sv57.
pub const KVM_MMU_RISCV_SV57: u32 = 11;
/// `ks_base`: tables and pages lie in the base handle's physical space.
pub const KVM_BASE_PHYS: u32 = 0;
/// `ks_base`: ... in the base handle's virtual space (`kvm_read2`
/// addresses).
pub const KVM_BASE_VIRT: u32 = 1;

/// Extension: a linear range of a `KVM_MMU_LINEAR` space.
#[repr(C)]
pub struct kvm_range {
    /// First address in the new space.
    pub kr_addr: u64,
    /// Length in bytes.
    pub kr_len: u64,
    /// Where `kr_addr` lies in the base space.
    pub kr_target: u64,
}

/// Extension: the description of a space for `kvm_open_space()`.
#[repr(C)]
pub struct kvm_space {
    /// `KVM_SPACE_VERSION`.
    pub ks_version: u32,
    /// `KVM_MMU_*`.
    pub ks_mmu: u32,
    /// `KVM_BASE_PHYS` or `KVM_BASE_VIRT`.
    pub ks_base: u32,
    /// 0; anything else is refused.
    pub ks_flags: u32,
    /// The root: CR3, EPTP, TTBRn_EL1 or satp.PPN << 12.
    pub ks_root: u64,
    /// CR0, for `KVM_MMU_X86_AUTO` only.
    pub ks_cr0: u64,
    /// CR4, for `KVM_MMU_X86_AUTO` only.
    pub ks_cr4: u64,
    /// IA32_EFER, for `KVM_MMU_X86_AUTO` only.
    pub ks_efer: u64,
    /// TCR_EL1, for `KVM_MMU_AARCH64` only.
    pub ks_tcr: u64,
    /// The ranges, for `KVM_MMU_LINEAR` only.
    pub ks_ranges: *const kvm_range,
    /// How many.
    pub ks_nranges: size_t,
}

#[cfg(target_pointer_width = "64")]
const _: () = {
    assert_eq_size!(kvm_range, [u64; 3]);
    const_assert_eq!(offset_of!(kvm_space, ks_root), 16);
    const_assert_eq!(offset_of!(kvm_space, ks_tcr), 48);
    const_assert_eq!(offset_of!(kvm_space, ks_ranges), 56);
    assert_eq_size!(kvm_space, [u64; 9]);
};

/// What a handle reads: a dump, or a space stacked on one.
// Each handle is boxed once (the `kvm_t`): the variants' sizes cost
// nothing, and a second box would cost every read a load.
#[allow(clippy::large_enum_variant)]
enum Handle {
    Dump(Kvm),
    Space(Space),
}

impl Handle {
    fn space(&self) -> &dyn AddressSpace {
        match self {
            Handle::Dump(k) => k,
            Handle::Space(s) => s,
        }
    }
}

/// The handle behind `kvm_t` (`typedef struct __kvm kvm_t`).
pub struct __kvm {
    kvm: Handle,
    errors: ErrorTexts,
}

/// The opaque handle type of the C API.
pub type kvm_t = __kvm;

/// A symbol resolver for `kvm_open2()`: stores the address of `name` in
/// `*addr` and returns 0, or returns non-zero when the name is unknown.
pub type kvm_resolver_t =
    Option<unsafe extern "C" fn(name: *const c_char, addr: *mut kvaddr_t) -> c_int>;

fn print_err(program: &CStr, msg: &str) {
    let _ = writeln!(std::io::stderr(), "{}: {msg}", program.to_string_lossy());
}

impl __kvm {
    /// Records `msg` as this thread's last error on the handle. Like
    /// FreeBSD's soft errors, it is not printed, even for `kvm_open()`.
    fn set_err(&self, msg: &str) {
        self.errors.set(msg);
    }
}

/// Runs `f`, turning a panic into `on_panic` (and an error on `kd`, if any).
fn guard<T>(kd: *const kvm_t, on_panic: T, f: impl FnOnce() -> T) -> T {
    // SAFETY: callers pass either NULL or a handle from kvm_open*.
    ffi::guard(unsafe { kd.as_ref() }.map(|k| &k.errors), on_panic, f)
}

unsafe fn open_common(
    execfile: *const c_char,
    corefile: *const c_char,
    flags: c_int,
    resolver: kvm_resolver_t,
) -> Result<Box<kvm_t>, Error> {
    // FreeBSD's _kvm_open rejects `flag & ~O_RDWR` (so O_WRONLY too); we
    // also take O_CLOEXEC, which Linux callers may pass, and our own
    // KVM_O_* flags. Dumps are only read.
    let ours = KVM_O_PREAD | KVM_O_NOVERIFY;
    if flags & !(libc::O_RDWR | libc::O_CLOEXEC | ours) != 0 {
        return Err(Error::InvalidArgument("bad flags arg"));
    }
    let env = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0");
    let pread = flags & KVM_O_PREAD != 0 || env("KVM_PREAD");
    let verify = flags & KVM_O_NOVERIFY == 0 && !env("KVM_NOVERIFY");
    // NULL names mean the running system's kernel and memory, as in FreeBSD;
    // a Linux dump opens without a kernel file (extension).
    let exec = (!execfile.is_null()).then(|| path_arg(execfile, ""));
    let core = path_arg(corefile, "/dev/mem");
    let resolver: Option<Resolver> = resolver.map(|r| {
        Box::new(move |name: &str| {
            let c = CString::new(name).ok()?;
            let mut addr: kvaddr_t = 0;
            // SAFETY: the caller of kvm_open2 promises a valid resolver.
            (unsafe { r(c.as_ptr(), &mut addr) } == 0).then_some(addr)
        }) as Resolver
    });
    let mut options = OpenOptions::new()
        .pread(pread)
        .verify_kernel(verify)
        .default_kernel(Path::new("/boot/kernel/kernel"));
    if let Some(r) = resolver {
        options = options.resolver(r);
    }
    Ok(Box::new(__kvm {
        kvm: Handle::Dump(options.open_dump(exec, core)?),
        errors: ErrorTexts::new(),
    }))
}

/// Opens a kernel image and crash dump. On failure returns NULL and writes a
/// NUL-terminated message to `errbuf` (`_POSIX2_LINE_MAX` bytes). A NULL
/// `resolver` resolves symbols from the kernel image's symbol table, for
/// native and cross dumps alike.
///
/// Extension: `corefile` may be a Linux vmcore (ELF or kdump-compressed,
/// plain or flattened). `execfile` is then its `vmlinux`, `System.map` or
/// a `/proc/kallsyms` listing, or NULL (symbols from the kernel's kallsyms
/// tables in the dump, which VMCOREINFO locates on Linux 6.0+, and from
/// VMCOREINFO); `kvm_nlist2` gives run-time (KASLR-moved) addresses and
/// `kvm_kerndisp` the KASLR offset. A NULL `execfile` with a FreeBSD dump
/// means `/boot/kernel/kernel`, as in FreeBSD.
#[no_mangle]
pub unsafe extern "C" fn kvm_open2(
    execfile: *const c_char,
    corefile: *const c_char,
    flags: c_int,
    errbuf: *mut c_char,
    resolver: kvm_resolver_t,
) -> *mut kvm_t {
    ffi::open_guard(errbuf, "kvm_open2", || {
        match open_common(execfile, corefile, flags, resolver) {
            Ok(kd) => Box::into_raw(kd),
            Err(e) => {
                copy_msg(errbuf, &e.to_string());
                std::ptr::null_mut()
            }
        }
    })
}

/// `kvm_open2()` without a resolver; `swapfile` is ignored.
#[no_mangle]
pub unsafe extern "C" fn kvm_openfiles(
    execfile: *const c_char,
    corefile: *const c_char,
    swapfile: *const c_char,
    flags: c_int,
    errbuf: *mut c_char,
) -> *mut kvm_t {
    let _ = swapfile; // dumps have no swap
    kvm_open2(execfile, corefile, flags, errbuf, None)
}

/// Opens like `kvm_openfiles()`, but reports a failure to open on stderr,
/// prefixed with `errstr` when it is not NULL. Later errors on the handle
/// are only recorded for `kvm_geterr()`, as in FreeBSD.
#[no_mangle]
pub unsafe extern "C" fn kvm_open(
    execfile: *const c_char,
    corefile: *const c_char,
    swapfile: *const c_char,
    flags: c_int,
    errstr: *const c_char,
) -> *mut kvm_t {
    let _ = swapfile; // dumps have no swap
    guard(
        std::ptr::null(),
        std::ptr::null_mut(),
        || match open_common(execfile, corefile, flags, None) {
            Ok(kd) => Box::into_raw(kd),
            Err(e) => {
                if !errstr.is_null() {
                    print_err(CStr::from_ptr(errstr), &e.to_string());
                }
                std::ptr::null_mut()
            }
        },
    )
}

/// Closes a handle. Returns 0, or -1 with errno EINVAL for NULL.
#[no_mangle]
pub unsafe extern "C" fn kvm_close(kd: *mut kvm_t) -> c_int {
    if kd.is_null() {
        set_errno(libc::EINVAL);
        return -1;
    }
    guard(std::ptr::null(), -1, || {
        drop(Box::from_raw(kd));
        0
    })
}

/// The text of the last error on the handle in this thread ("" for NULL or
/// before any error). The string stays valid until `kvm_close()`; it
/// changes at the thread's next failing call on the handle (and, once more
/// than 64 threads have failed on one handle, may be given to another
/// thread). Callable from `atexit` handlers and thread-local destructors.
#[no_mangle]
pub unsafe extern "C" fn kvm_geterr(kd: *mut kvm_t) -> *mut c_char {
    static EMPTY: [u8; 1] = [0];
    let text = kd.as_ref().and_then(|k| k.errors.get());
    text.unwrap_or(EMPTY.as_ptr() as *mut c_char)
}

/// 1 when the dump's architecture is the host's, else 0 (0 for a space).
#[no_mangle]
pub unsafe extern "C" fn kvm_native(kd: *mut kvm_t) -> c_int {
    match kd.as_ref().map(|kd| &kd.kvm) {
        Some(Handle::Dump(k)) => c_int::from(k.native()),
        _ => 0,
    }
}

/// The kernel displacement (0 where the backend cannot know it, and for a
/// space); for a Linux dump (extension), the KASLR offset.
#[no_mangle]
pub unsafe extern "C" fn kvm_kerndisp(kd: *mut kvm_t) -> kssize_t {
    match kd.as_ref().map(|kd| &kd.kvm) {
        Some(Handle::Dump(k)) => k.kerndisp(),
        _ => 0,
    }
}

/// An entry of a symbol list: `struct kvm_nlist` or `struct nlist`.
trait NlistEntry {
    /// The name to resolve.
    fn name(&self) -> *const c_char;
    /// Stores a result (type and value 0 for a name not found); false when
    /// the value does not fit the entry.
    fn set(&mut self, n_type: u8, value: u64) -> bool;
}

impl NlistEntry for kvm_nlist {
    fn name(&self) -> *const c_char {
        self.n_name
    }
    fn set(&mut self, n_type: u8, value: u64) -> bool {
        self.n_type = n_type;
        self.n_value = value;
        true
    }
}

impl NlistEntry for nlist {
    fn name(&self) -> *const c_char {
        self.n_name
    }
    fn set(&mut self, n_type: u8, value: u64) -> bool {
        #[allow(irrefutable_let_patterns)] // c_ulong is u64 on LP64 hosts
        let Ok(v) = c_ulong::try_from(value) else {
            return false;
        };
        self.n_type = n_type;
        self.n_value = v;
        // FreeBSD's kvm_nlist clears these for every entry.
        self.n_other = 0;
        self.n_desc = 0;
        true
    }
}

/// Resolves each entry of `nl` up to one with a NULL or empty name; returns
/// how many were not found, or -1 on error (`func` names the entry point).
unsafe fn resolve_list<E: NlistEntry>(kd: *mut kvm_t, nl: *mut E, func: &str) -> c_int {
    let Some(k) = kd.as_ref() else { return -1 };
    if nl.is_null() {
        k.set_err(&format!("{func}: NULL list"));
        return -1;
    }
    guard(kd, -1, || {
        let mut missing = 0;
        let mut p = nl;
        while !(*p).name().is_null() && *(*p).name() != 0 {
            let name = CStr::from_ptr((*p).name()).to_str().ok();
            // A space has no symbols (extension): every name is missing.
            let sym = match &k.kvm {
                Handle::Dump(kvm) => name.and_then(|n| kvm.nlist_symbol(n)),
                Handle::Space(_) => None,
            };
            let (n_type, value) = sym.map_or((0, 0), |s| (s.n_type, s.value));
            missing += c_int::from(sym.is_none());
            if !(*p).set(n_type, value) {
                k.set_err(&format!(
                    "{func}: value {value:#x} of {} does not fit in unsigned long; use \
                     kvm_nlist2",
                    name.unwrap_or("?")
                ));
                return -1;
            }
            p = p.add(1);
        }
        missing
    })
}

/// Resolves each name in `nl` (up to an entry with a NULL or empty name).
/// Returns the number of names not found (their `n_type` and `n_value` are
/// set to 0), or -1 on error.
#[no_mangle]
pub unsafe extern "C" fn kvm_nlist2(kd: *mut kvm_t, nl: *mut kvm_nlist) -> c_int {
    resolve_list(kd, nl, "kvm_nlist2")
}

/// Resolves each name in the a.out-style list `nl`, as `kvm_nlist2()`.
/// Fails (-1) if a value does not fit in `unsigned long`. (Declared in the
/// header's prelude, where elfutils' `<nlist.h>` can leave it out.)
///
/// cbindgen:ignore
#[no_mangle]
pub unsafe extern "C" fn kvm_nlist(kd: *mut kvm_t, nl: *mut nlist) -> c_int {
    resolve_list(kd, nl, "kvm_nlist")
}

/// Reads `len` bytes of kernel virtual memory at `kva` into `buf`. Returns
/// `len`; fewer bytes only when the core file ends early; -1 when any page of
/// the range fails to translate (`kvm_geterr()` names the address and says
/// whether it is unmapped or mapped but not in the dump). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn kvm_read2(
    kd: *mut kvm_t,
    kva: kvaddr_t,
    buf: *mut c_void,
    len: size_t,
) -> ssize_t {
    read_into(kd, "kvm_read2", buf, len, |kvm, dst| kvm.read(kva, dst))
}

/// The shared body of `kvm_read2` and `kvm_read_phys`: checks the buffer,
/// calls `read` on it, records a failure's text.
unsafe fn read_into(
    kd: *mut kvm_t,
    func: &str,
    buf: *mut c_void,
    len: size_t,
    read: impl FnOnce(&dyn AddressSpace, &mut [u8]) -> Result<usize, Error>,
) -> ssize_t {
    let Some(k) = kd.as_ref() else { return -1 };
    if len == 0 {
        return 0;
    }
    if buf.is_null() || len > isize::MAX as usize {
        k.set_err(&format!(
            "{func}: NULL buffer or length larger than SSIZE_MAX"
        ));
        return -1;
    }
    guard(kd, -1, || {
        // SAFETY: the caller gives `len` writable bytes at `buf`.
        let dst = std::slice::from_raw_parts_mut(buf.cast::<u8>(), len);
        match read(k.kvm.space(), dst) {
            Ok(n) => n as ssize_t,
            Err(e) => {
                k.set_err(&e.to_string());
                -1
            }
        }
    })
}

/// Reads `len` bytes of the handle's physical memory at `pa` into `buf`
/// (extension): for a dump, the machine's physical memory, of which only
/// the pages the dump holds can be read. Returns `len`; fewer bytes only
/// when the core file ends early; -1 when a page of the range is not in
/// the dump (`kvm_geterr()` names the first such address). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn kvm_read_phys(
    kd: *mut kvm_t,
    pa: kpaddr_t,
    buf: *mut c_void,
    len: size_t,
) -> ssize_t {
    read_into(kd, "kvm_read_phys", buf, len, |kvm, dst| {
        kvm.read_phys(pa, dst)
    })
}

/// Translates the kernel virtual address `va` to a physical address,
/// stored in `*pa` (extension). Returns 0, or -1 with a `kvm_geterr()`
/// text naming the address and why it does not translate, as `kvm_read2`
/// gives. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn kvm_vtop(kd: *mut kvm_t, va: kvaddr_t, pa: *mut kpaddr_t) -> c_int {
    let Some(k) = kd.as_ref() else { return -1 };
    if pa.is_null() {
        k.set_err("kvm_vtop: NULL pa");
        return -1;
    }
    guard(kd, -1, || match k.kvm.space().vtop(va) {
        Ok(p) => {
            *pa = p;
            0
        }
        Err(e) => {
            k.set_err(&e.to_string());
            -1
        }
    })
}

/// Extension: opens an address space stacked on `base` (a dump handle or
/// another space) as `ks` describes it: a table of linear ranges, or page
/// tables of one of the `KVM_MMU_*` formats at `ks_root`, whose tables and
/// pages lie in `base`'s physical space (`KVM_BASE_PHYS`) or virtual space
/// (`KVM_BASE_VIRT`). Page-table entries are frames of that space; nothing
/// else is applied (Xen paravirtual guests: the entries hold machine
/// frames, so open the space over the host's physical memory).
///
/// The new handle's virtual space is what `kvm_read2()`, `kvm_vtop()` and
/// `kvm_walk_pages()` see; its physical space, what `kvm_read_phys()`
/// reads, is the base space. `kvm_nlist2()` resolves nothing on a space
/// (it returns the count of names), `kvm_native()` and `kvm_kerndisp()`
/// return 0. The space keeps what it needs of its base: `base` may be
/// closed first. Errors name the address and the layer that failed
/// ("x86-64 space (layer 2)", the dump's "kernel virtual memory", ...).
///
/// Returns NULL with a text in `errbuf` (`_POSIX2_LINE_MAX` bytes) for a
/// description it refuses: an unknown version, MMU or base, flags other
/// than 0, no ranges, ranges that are empty, overlap or wrap, control
/// registers no CPU runs with, a root the base space does not hold, a
/// base that is already the 16th layer of its stack.
#[no_mangle]
pub unsafe extern "C" fn kvm_open_space(
    base: *mut kvm_t,
    ks: *const kvm_space,
    errbuf: *mut c_char,
) -> *mut kvm_t {
    ffi::open_guard(errbuf, "kvm_open_space", || {
        match open_space(base.as_ref(), ks.as_ref()) {
            Ok(space) => Box::into_raw(Box::new(__kvm {
                kvm: Handle::Space(space),
                errors: ErrorTexts::new(),
            })),
            Err(e) => {
                copy_msg(errbuf, &format!("kvm_open_space: {e}"));
                std::ptr::null_mut()
            }
        }
    })
}

unsafe fn open_space(base: Option<&kvm_t>, ks: Option<&kvm_space>) -> Result<Space, Error> {
    let bad = |m: String| Err(Error::InvalidSpace(m));
    let Some(base) = base else {
        return bad("NULL base handle".into());
    };
    let Some(ks) = ks else {
        return bad("NULL space description".into());
    };
    if ks.ks_version != KVM_SPACE_VERSION {
        return bad(format!(
            "ks_version {} is not KVM_SPACE_VERSION ({KVM_SPACE_VERSION})",
            ks.ks_version
        ));
    }
    let on = match ks.ks_base {
        KVM_BASE_PHYS => Base::Phys,
        KVM_BASE_VIRT => Base::Virt,
        b => {
            return bad(format!(
                "ks_base {b} is neither KVM_BASE_PHYS (0) nor KVM_BASE_VIRT (1)"
            ))
        }
    };
    if ks.ks_flags != 0 {
        return bad(format!(
            "ks_flags {:#x}: no flags are defined (pass 0)",
            ks.ks_flags
        ));
    }
    let root = ks.ks_root;
    let paging = match ks.ks_mmu {
        KVM_MMU_LINEAR => {
            if ks.ks_ranges.is_null() || ks.ks_nranges == 0 {
                return bad("KVM_MMU_LINEAR with a NULL ks_ranges or ks_nranges 0".into());
            }
            if ks.ks_nranges > MAX_RANGES {
                return bad(format!(
                    "ks_nranges {} is more than the {MAX_RANGES} ranges a space takes",
                    ks.ks_nranges
                ));
            }
            // SAFETY: the caller gives ks_nranges ranges at ks_ranges.
            let ranges = std::slice::from_raw_parts(ks.ks_ranges, ks.ks_nranges);
            Paging::Linear(
                ranges
                    .iter()
                    .map(|r| Range {
                        addr: r.kr_addr,
                        len: r.kr_len,
                        target: r.kr_target,
                    })
                    .collect(),
            )
        }
        KVM_MMU_X86_64 => Paging::X86_64 { cr3: root },
        KVM_MMU_X86_64_LA57 => Paging::X86_64La57 { cr3: root },
        KVM_MMU_I386 => Paging::I386 { cr3: root },
        KVM_MMU_I386_PAE => Paging::I386Pae { cr3: root },
        KVM_MMU_X86_AUTO => Paging::X86Auto {
            cr3: root,
            cr0: ks.ks_cr0,
            cr4: ks.ks_cr4,
            efer: ks.ks_efer,
        },
        KVM_MMU_EPT => Paging::Ept { eptp: root },
        KVM_MMU_AARCH64 => Paging::Aarch64 {
            ttbr: root,
            tcr: ks.ks_tcr,
        },
        KVM_MMU_RISCV_SV39 => Paging::RiscvSv39 { satp_root: root },
        KVM_MMU_RISCV_SV48 => Paging::RiscvSv48 { satp_root: root },
        KVM_MMU_RISCV_SV57 => Paging::RiscvSv57 { satp_root: root },
        m => {
            return bad(format!(
                "ks_mmu {m} is no KVM_MMU_* value (KVM_MMU_LINEAR (1) to KVM_MMU_RISCV_SV57 (11))"
            ))
        }
    };
    Space::new(base.kvm.space(), on, paging)
}

/// `kvm_read2()` with an `unsigned long` address.
#[no_mangle]
pub unsafe extern "C" fn kvm_read(
    kd: *mut kvm_t,
    kva: c_ulong,
    buf: *mut c_void,
    len: size_t,
) -> ssize_t {
    kvm_read2(kd, kva as kvaddr_t, buf, len)
}

/// Always fails (-1): crash dumps are read-only.
#[no_mangle]
pub unsafe extern "C" fn kvm_write(
    kd: *mut kvm_t,
    kva: c_ulong,
    buf: *const c_void,
    len: size_t,
) -> ssize_t {
    let _ = (kva, buf, len);
    if let Some(k) = kd.as_ref() {
        k.set_err(&format!("kvm_write: {}", Error::ReadOnly));
    }
    -1
}

/// Calls `cb(page, closure)` for every mapped page: first each leaf of the
/// kernel map, then (minidumps with a direct map) each dumped page only the
/// direct map reaches. `cb` returns 0 to stop. Returns 1 when the walk
/// completed, 0 when it was stopped or failed (see `kvm_geterr()`).
#[no_mangle]
pub unsafe extern "C" fn kvm_walk_pages(
    kd: *mut kvm_t,
    cb: Option<unsafe extern "C" fn(page: *mut kvm_page, closure: *mut c_void) -> c_int>,
    closure: *mut c_void,
) -> c_int {
    let Some(k) = kd.as_ref() else { return 0 };
    let walk = |f: &mut dyn FnMut(&crate::walk::Page) -> bool| k.kvm.space().walk_pages(f);
    ffi::walk_pages(
        &k.errors,
        "kvm_walk_pages",
        walk,
        cb,
        closure,
        |p, offset, len| kvm_page {
            kp_version: LIBKVM_WALK_PAGES_VERSION,
            kp_paddr: p.paddr,
            kp_kmap_vaddr: p.kmap_vaddr,
            kp_dmap_vaddr: p.dmap_vaddr,
            kp_prot: p.prot,
            kp_offset: offset,
            kp_len: len,
        },
    )
}

/// Extension: the `kt_version` this library fills in (`struct kvm_thread`).
pub const KVM_THREAD_VERSION: c_uint = 1;
/// `kt_flags`: the thread that was dumping (FreeBSD's `dumptid`), or the
/// Linux CPU that panicked.
pub const KVM_THREAD_CRASHED: c_uint = 0x1;
/// Bytes of `kt_name` and `kt_comm`: FreeBSD's `MAXCOMLEN + 1`.
pub const KVM_THREAD_NAMELEN: usize = 20;
/// Extension: the most registers `kvm_thread_registers()` fills (one bit
/// each in its mask).
pub const KVM_REGS_MAX: c_uint = 64;
const_assert_eq!(KVM_REGS_MAX as usize, crate::regs::MAX_REGISTERS);

/// Extension: a kernel thread, passed to the `kvm_walk_threads()`
/// callback. Valid only during the call; copy what is kept.
#[repr(C)]
pub struct kvm_thread {
    /// `KVM_THREAD_VERSION`.
    pub kt_version: c_uint,
    /// `KVM_THREAD_*` bits.
    pub kt_flags: c_uint,
    /// Thread id (FreeBSD `td_tid`; Linux: the `NT_PRSTATUS` note's
    /// `pr_pid`).
    pub kt_tid: c_int,
    /// Process id (FreeBSD `p_pid`), -1 where the dump does not say.
    pub kt_pid: c_int,
    /// The CPU the thread ran on, or -1.
    pub kt_cpu: c_int,
    /// Reserved, 0.
    pub kt_spare: c_int,
    /// Address of its `struct thread`, 0 where there is none.
    pub kt_thread: kvaddr_t,
    /// Address of the PCB its registers come from, 0 where there is none
    /// (a Linux CPU's registers are in the dump's notes).
    pub kt_pcb: kvaddr_t,
    /// Thread name (`td_name`), NUL-terminated; "" when unknown.
    pub kt_name: [c_char; KVM_THREAD_NAMELEN],
    /// Process name (`p_comm`), NUL-terminated; "" when unknown.
    pub kt_comm: [c_char; KVM_THREAD_NAMELEN],
}

#[cfg(target_pointer_width = "64")]
const _: () = {
    const_assert_eq!(offset_of!(kvm_thread, kt_thread), 24);
    const_assert_eq!(offset_of!(kvm_thread, kt_name), 40);
    assert_eq_size!(kvm_thread, [u64; 10]);
};

/// A NUL-terminated copy of `s` in `KVM_THREAD_NAMELEN` bytes, cut at a
/// character boundary if longer (names are UTF-8: a byte of the kernel's
/// name that is not became U+FFFD).
fn c_name(s: &str) -> [c_char; KVM_THREAD_NAMELEN] {
    let mut end = s.len().min(KVM_THREAD_NAMELEN - 1);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = [0 as c_char; KVM_THREAD_NAMELEN];
    for (o, &b) in out.iter_mut().zip(&s.as_bytes()[..end]) {
        *o = b as c_char;
    }
    out
}

/// The Rust form of a C thread: what `Kvm::registers` needs.
fn from_c(t: &kvm_thread) -> crate::Thread {
    crate::Thread {
        tid: t.kt_tid,
        pid: t.kt_pid,
        cpu: u32::try_from(t.kt_cpu).ok(),
        thread: t.kt_thread,
        pcb: t.kt_pcb,
        name: String::new(),
        comm: String::new(),
        crashed: t.kt_flags & KVM_THREAD_CRASHED != 0,
    }
}

/// Extension: calls `cb(thread, closure)` for every kernel thread (see
/// `struct kvm_thread`): FreeBSD's from `allproc` then `zombproc`, each
/// oldest process first; a Linux dump's one per CPU it saved registers
/// of (`kt_cpu` is the index of the CPU's `NT_PRSTATUS` note: the crash
/// kernel writes one per online CPU, in CPU order). `cb`
/// returns 0 to stop. Returns 1 when the walk completed, 0 when it was
/// stopped or failed (see `kvm_geterr()`), as `kvm_walk_pages()`.
#[no_mangle]
pub unsafe extern "C" fn kvm_walk_threads(
    kd: *mut kvm_t,
    cb: Option<unsafe extern "C" fn(thread: *mut kvm_thread, closure: *mut c_void) -> c_int>,
    closure: *mut c_void,
) -> c_int {
    let Some(k) = kd.as_ref() else { return 0 };
    let Some(cb) = cb else {
        k.set_err("kvm_walk_threads: NULL callback");
        return 0;
    };
    guard(kd, 0, || {
        let threads = match &k.kvm {
            Handle::Dump(kvm) => kvm.threads(),
            Handle::Space(_) => Err(Error::NotSupported("threads of an address space")),
        };
        let threads = match threads {
            Ok(t) => t,
            Err(e) => {
                k.set_err(&format!("kvm_walk_threads: {e}"));
                return 0;
            }
        };
        for t in &threads {
            let mut kt = kvm_thread {
                kt_version: KVM_THREAD_VERSION,
                kt_flags: if t.crashed { KVM_THREAD_CRASHED } else { 0 },
                kt_tid: t.tid,
                kt_pid: t.pid,
                kt_cpu: t.cpu.and_then(|c| c_int::try_from(c).ok()).unwrap_or(-1),
                kt_spare: 0,
                kt_thread: t.thread,
                kt_pcb: t.pcb,
                kt_name: c_name(&t.name),
                kt_comm: c_name(&t.comm),
            };
            if cb(&mut kt, closure) == 0 {
                return 0;
            }
        }
        1
    })
}

/// Extension: fills `regs[i]` with thread `td`'s register `i`, for `i`
/// below `nregs` and the architecture's count: gdb's general registers in
/// the order of its target description for the architecture, without
/// the floating-point and vector ones (amd64: `rax` ... `gs`, then
/// `fs_base`, `gs_base`; `kvm_register_name()` names them). Bit `i` of
/// `*known` is set for each register the saved state holds or the kernel
/// fixes (amd64's and i386's kernel segment selectors); a PCB holds the
/// callee-saved registers only, and unknown registers are 0. `td` is one `kvm_walk_threads()` passed (or
/// a copy). Returns the architecture's register count (at most
/// `KVM_REGS_MAX`), or -1 with `kvm_geterr()` set.
#[no_mangle]
pub unsafe extern "C" fn kvm_thread_registers(
    kd: *mut kvm_t,
    td: *const kvm_thread,
    regs: *mut u64,
    nregs: c_uint,
    known: *mut u64,
) -> c_int {
    let Some(k) = kd.as_ref() else { return -1 };
    let Some(td) = td.as_ref() else {
        k.set_err("kvm_thread_registers: NULL thread");
        return -1;
    };
    if td.kt_version != KVM_THREAD_VERSION {
        k.set_err(&format!(
            "kvm_thread_registers: kt_version {} is not KVM_THREAD_VERSION ({KVM_THREAD_VERSION})",
            td.kt_version
        ));
        return -1;
    }
    if regs.is_null() && nregs > 0 {
        k.set_err("kvm_thread_registers: NULL regs");
        return -1;
    }
    guard(kd, -1, || {
        let got = match &k.kvm {
            Handle::Dump(kvm) => kvm.registers(&from_c(td)),
            Handle::Space(_) => Err(Error::NotSupported("threads of an address space")),
        };
        match got {
            Ok(r) => {
                for i in 0..r.len().min(nregs as usize) {
                    *regs.add(i) = r.value(i).unwrap_or(0);
                }
                if !known.is_null() {
                    *known = r.known();
                }
                r.len() as c_int
            }
            Err(e) => {
                k.set_err(&format!("kvm_thread_registers: {e}"));
                -1
            }
        }
    })
}

/// Extension: gdb's name of register `regno` of the dump's architecture
/// (`"rip"`, `"x29"`, ...), NULL past the last or when registers of the
/// architecture cannot be read. `*bits`, when not NULL, gets its size in
/// bits. The string is static.
#[no_mangle]
pub unsafe extern "C" fn kvm_register_name(
    kd: *mut kvm_t,
    regno: c_uint,
    bits: *mut c_uint,
) -> *const c_char {
    let Some(k) = kd.as_ref() else {
        return std::ptr::null();
    };
    let arch = match &k.kvm {
        Handle::Dump(kvm) => kvm.register_arch(),
        Handle::Space(_) => None,
    };
    let Some(r) = arch.and_then(|a| a.registers().get(regno as usize)) else {
        return std::ptr::null();
    };
    if !bits.is_null() {
        *bits = r.bits;
    }
    r.c_name().as_ptr()
}

/// Runs a per-CPU call on a dump handle (a space has no kernel: "not a
/// dump"), recording a failure's text as `func: why`.
fn on_dump<T>(
    kd: *mut kvm_t,
    func: &str,
    on_error: T,
    f: impl FnOnce(&Kvm) -> Result<T, Error>,
) -> T
where
    T: Copy,
{
    // SAFETY: callers pass NULL or a handle from kvm_open*.
    let Some(k) = (unsafe { kd.as_ref() }) else {
        return on_error;
    };
    guard(kd, on_error, || {
        let r = match &k.kvm {
            Handle::Dump(kvm) => f(kvm),
            Handle::Space(_) => Err(Error::NotSupported(
                "a space opened with kvm_open_space has no kernel",
            )),
        };
        r.unwrap_or_else(|e| {
            k.set_err(&format!("{func}: {e}"));
            on_error
        })
    })
}

/// The kernel's `mp_maxcpus` (`kvm_getpcpu(3)`), or -1; 0 for a NULL
/// handle (FreeBSD then clears its cache; here each handle has its own).
#[no_mangle]
pub unsafe extern "C" fn kvm_getmaxcpu(kd: *mut kvm_t) -> c_int {
    if kd.is_null() {
        return 0;
    }
    on_dump(kd, "kvm_getmaxcpu", -1, |k| Ok(k.max_cpus()? as c_int))
}

/// The kernel's `mp_ncpus`, or -1.
#[no_mangle]
pub unsafe extern "C" fn kvm_getncpus(kd: *mut kvm_t) -> c_int {
    on_dump(kd, "kvm_getncpus", -1, |k| Ok(k.ncpus()? as c_int))
}

/// A copy of CPU `cpu`'s `struct pcpu`, to release with `free(3)`; NULL
/// for a CPU the kernel does not have (and for a NULL handle); `(void
/// *)-1` on error. Here (cross-architecture) the copy is the kernel's
/// `PAGE_SIZE` bytes (`UMA_PCPU_ALLOC_SIZE`: the size of `struct pcpu` on
/// x86, more than it elsewhere) from `cpuid_to_pcpu[cpu]`, its bytes past
/// the first page that cannot be read set to 0: read the fields of the
/// dumped kernel's `struct pcpu` from it.
#[no_mangle]
pub unsafe extern "C" fn kvm_getpcpu(kd: *mut kvm_t, cpu: c_int) -> *mut c_void {
    let failed = usize::MAX as *mut c_void;
    if kd.is_null() {
        return std::ptr::null_mut();
    }
    let got = on_dump(kd, "kvm_getpcpu", None, |k| {
        let Some(at) = u32::try_from(cpu).ok().map_or(Ok(None), |c| k.pcpu(c))? else {
            return Ok(Some((0, 0)));
        };
        Ok(Some((at, k.pcpu_alloc_size())))
    });
    let Some((at, size)) = got else {
        return failed;
    };
    if at == 0 {
        return std::ptr::null_mut();
    }
    let k = &*kd;
    guard(kd, failed, || {
        let Handle::Dump(kvm) = &k.kvm else {
            return failed;
        };
        let size = size as usize;
        let buf = libc::calloc(1, size).cast::<u8>();
        if buf.is_null() {
            k.set_err("kvm_getpcpu: out of memory");
            return failed;
        }
        // SAFETY: calloc gave `size` bytes.
        let dst = std::slice::from_raw_parts_mut(buf, size);
        let first = (size as u64 - (at & (size as u64 - 1))) as usize;
        let read = kvm
            .read_exact(at, dst)
            .or_else(|_| kvm.read_exact(at, &mut dst[..first]));
        match read {
            Ok(()) => buf.cast(),
            Err(e) => {
                libc::free(buf.cast());
                k.set_err(&format!("kvm_getpcpu: CPU {cpu}'s struct pcpu: {e}"));
                failed
            }
        }
    })
}

/// Selects the CPU whose copies `kvm_nlist()` gives for dynamic per-CPU
/// variables (`DPCPU_DEFINE`): 0, or -1 for a CPU beyond `mp_maxcpus` or
/// without a per-CPU area, or when the kernel's per-CPU tables cannot be
/// read. Here it works on dumps of every architecture.
#[no_mangle]
pub unsafe extern "C" fn kvm_dpcpu_setcpu(kd: *mut kvm_t, cpu: c_uint) -> c_int {
    on_dump(kd, "kvm_dpcpu_setcpu", -1, |k| {
        k.dpcpu_set_cpu(cpu)?;
        Ok(0)
    })
}

/// Reads `size` bytes of CPU `cpu`'s copy of the `UMA_ZONE_PCPU`
/// allocation `base` into `buf`: `size`, fewer if the core file ends
/// early, -1 on error. Here it works on dumps of every architecture, CPU
/// copies lie `PAGE_SIZE` apart (`zpcpu_offset_cpu`; FreeBSD's libkvm
/// uses the host's `sizeof(struct pcpu)`), and an amd64 `base` stored as
/// an offset from `__pcpu` (FreeBSD 13 and later) is moved by it.
#[no_mangle]
pub unsafe extern "C" fn kvm_read_zpcpu(
    kd: *mut kvm_t,
    base: c_ulong,
    buf: *mut c_void,
    size: size_t,
    cpu: c_int,
) -> ssize_t {
    let Some(k) = kd.as_ref() else { return -1 };
    let Ok(cpu) = u32::try_from(cpu) else {
        k.set_err("kvm_read_zpcpu: negative CPU number");
        return -1;
    };
    read_into(kd, "kvm_read_zpcpu", buf, size, |_, dst| {
        let Handle::Dump(kvm) = &k.kvm else {
            return Err(Error::NotSupported(
                "a space opened with kvm_open_space has no kernel",
            ));
        };
        kvm.read_zpcpu(widen(base), cpu, dst)
    })
}

/// The value of the `counter(9)` at `base`: the sum of its copies on CPUs
/// 0 to `mp_ncpus` - 1; 0 on error (as in FreeBSD, where 0 is also a
/// value: `kvm_geterr()` tells).
#[no_mangle]
pub unsafe extern "C" fn kvm_counter_u64_fetch(kd: *mut kvm_t, base: c_ulong) -> u64 {
    on_dump(kd, "kvm_counter_u64_fetch", 0, |k| {
        k.counter_u64_fetch(widen(base))
    })
}

/// An `unsigned long` address as a `kvaddr_t` (a no-op on LP64 hosts).
#[allow(clippy::useless_conversion)]
fn widen(v: c_ulong) -> u64 {
    u64::from(v)
}
