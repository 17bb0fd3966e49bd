//! libfbsdvmcore's C API (`fvc.h`), over the same core as `kvm.h`: the
//! library lldb's FreeBSDKernel plugin and other Linux-side tools link to
//! read FreeBSD vmcores. Names, types and semantics are libfbsdvmcore's
//! (Moritz-Systems/libfbsdvmcore `lib/fvc.h`, `lib/fvc.c`,
//! `man/fvc_open.3`): `fvc_open` takes the kernel and core (both
//! required), an errbuf (may be NULL), and a resolver with a closure;
//! `fvc_read`, `fvc_kerndisp`, `fvc_native`, `fvc_walk_pages`,
//! `fvc_geterr`, `fvc_close`. The `fbsdvmcore` package builds these into
//! `libfbsdvmcore.so` with `fvc.h` and `fbsdvmcore.pc`; tools relinked
//! against it read every dump this library reads.
//!
//! Differences, documented in fvc.h: the kernel must belong to the dump
//! (its `version` string is compared, as `kvm_open2` does, unless a
//! resolver is given or `KVM_NOVERIFY=1`), `fvc_geterr` returns the calling thread's
//! last error (libfbsdvmcore keeps one per handle), and `fvc_native` is
//! defined (libfbsdvmcore declares it only).

#![allow(non_camel_case_types, clippy::missing_safety_doc)]

use crate::ffi::{self, copy_msg, path_arg, set_errno, ErrorTexts};
use crate::kvm::{Kvm, OpenOptions, Resolver};
use libc::{c_char, c_int, c_uchar, c_uint, c_void, off_t, size_t, ssize_t};
use std::ffi::CString;

/// An address of the dumped machine.
pub type fvc_addr_t = u64;
/// `FVC_VM_PROT_*` bits.
pub type fvc_vm_prot_t = c_uchar;

/// The `kp_version` filled in (`LIBFVC_WALK_PAGES_VERSION`).
pub const LIBFVC_WALK_PAGES_VERSION: c_uint = 2;

/// A mapped page, for the `fvc_walk_pages()` callback: libfbsdvmcore's
/// `struct fvc_page` (FreeBSD's `struct kvm_page` version 2).
#[repr(C)]
pub struct fvc_page {
    /// `LIBFVC_WALK_PAGES_VERSION`.
    pub kp_version: c_uint,
    /// Physical address.
    pub kp_paddr: fvc_addr_t,
    /// Kernel-map virtual address, 0 when reached only by the direct map.
    pub kp_kmap_vaddr: fvc_addr_t,
    /// Direct-map virtual address, 0 when there is none.
    pub kp_dmap_vaddr: fvc_addr_t,
    /// `FVC_VM_PROT_*` bits.
    pub kp_prot: fvc_vm_prot_t,
    /// Core-file offset, -1 when not in the dump.
    pub kp_offset: off_t,
    /// Length in bytes.
    pub kp_len: size_t,
}

/// The handle (`fvc_t`).
pub struct __fvc {
    kvm: Kvm,
    errors: ErrorTexts,
}

/// The opaque handle type.
pub type fvc_t = __fvc;

/// The resolver: stores the address of `name` in `*addr` and returns 0,
/// non-zero when unknown; `closure` is `fvc_open`'s `resolver_data`.
pub type fvc_resolver_t = Option<
    unsafe extern "C" fn(name: *const c_char, addr: *mut fvc_addr_t, closure: *mut c_void) -> c_int,
>;

/// The caller's closure, which the resolver is given back.
struct Closure(*mut c_void);
// SAFETY: the resolver runs only within fvc_open, on the caller's thread
// (no fvc_* call after it resolves symbols), where the caller's closure is
// valid, as in libfbsdvmcore.
unsafe impl Send for Closure {}
unsafe impl Sync for Closure {}

fn guard<T>(kd: *const fvc_t, on_panic: T, f: impl FnOnce() -> T) -> T {
    // SAFETY: callers pass NULL or a handle from fvc_open.
    ffi::guard(unsafe { kd.as_ref() }.map(|k| &k.errors), on_panic, f)
}

/// Opens kernel `execfile` and its crash dump `corefile` (both required).
/// A NULL `resolver` resolves symbols from the kernel's symbol table;
/// otherwise `resolver(name, &addr, resolver_data)` does. On failure
/// returns NULL with a message in `errbuf` (`_POSIX2_LINE_MAX` bytes; may
/// be NULL).
#[no_mangle]
pub unsafe extern "C" fn fvc_open(
    execfile: *const c_char,
    corefile: *const c_char,
    errbuf: *mut c_char,
    resolver: fvc_resolver_t,
    resolver_data: *mut c_void,
) -> *mut fvc_t {
    let fail = |msg: &str| {
        copy_msg(errbuf, msg);
        std::ptr::null_mut()
    };
    if execfile.is_null() {
        return fail("exec file must be specified");
    }
    if corefile.is_null() {
        return fail("core file must be specified");
    }
    ffi::open_guard(errbuf, "fvc_open", || {
        let closure = Closure(resolver_data);
        // The kernel is checked against the dump through its symbol table;
        // a resolver stands for the table, as in libfbsdvmcore, which
        // checks nothing: then neither do we.
        let env = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0");
        let mut options = OpenOptions::new()
            .verify_kernel(!env("KVM_NOVERIFY") && resolver.is_none())
            .pread(env("KVM_PREAD"));
        if let Some(r) = resolver {
            options = options.resolver(Box::new(move |name: &str| {
                let c = CString::new(name).ok()?;
                let mut addr: fvc_addr_t = 0;
                let data = &closure;
                // SAFETY: the caller of fvc_open promises a valid resolver.
                (unsafe { r(c.as_ptr(), &mut addr, data.0) } == 0).then_some(addr)
            }) as Resolver);
        }
        let exec = path_arg(execfile, "");
        match options.open_dump(Some(exec), path_arg(corefile, "")) {
            Ok(kvm) => Box::into_raw(Box::new(__fvc {
                kvm,
                errors: ErrorTexts::new(),
            })),
            Err(e) => fail(&e.to_string()),
        }
    })
}

/// Closes the handle: 0, or -1 with `errno` EINVAL for NULL.
#[no_mangle]
pub unsafe extern "C" fn fvc_close(kd: *mut fvc_t) -> c_int {
    if kd.is_null() {
        set_errno(libc::EINVAL);
        return -1;
    }
    drop(Box::from_raw(kd));
    0
}

/// The calling thread's last error on the handle, "" when it has none
/// (and for NULL).
#[no_mangle]
pub unsafe extern "C" fn fvc_geterr(kd: *mut fvc_t) -> *mut c_char {
    static EMPTY: [u8; 1] = [0];
    match kd.as_ref().and_then(|k| k.errors.get()) {
        Some(p) => p,
        None => EMPTY.as_ptr().cast_mut().cast(),
    }
}

/// Reads `len` bytes at kernel virtual address `kva`: the count read
/// (short only when the core file ends early), or -1 when an address
/// does not translate (see `fvc_geterr()`).
#[no_mangle]
pub unsafe extern "C" fn fvc_read(
    kd: *mut fvc_t,
    kva: fvc_addr_t,
    buf: *mut c_void,
    len: size_t,
) -> ssize_t {
    let Some(k) = kd.as_ref() else { return -1 };
    if len == 0 {
        return 0;
    }
    if buf.is_null() || isize::try_from(len).is_err() {
        k.errors
            .set("fvc_read: NULL buffer or a length past SSIZE_MAX");
        return -1;
    }
    guard(kd, -1, || {
        let out = std::slice::from_raw_parts_mut(buf.cast::<u8>(), len);
        match k.kvm.read(kva, out) {
            Ok(n) => n as ssize_t,
            Err(e) => {
                k.errors.set(&format!("fvc_read: {e}"));
                -1
            }
        }
    })
}

/// The kernel's displacement: where it runs minus where it was linked, 0
/// when there is none or it is unknown.
#[no_mangle]
pub unsafe extern "C" fn fvc_kerndisp(kd: *mut fvc_t) -> ssize_t {
    kd.as_ref().map_or(0, |k| k.kvm.kerndisp() as ssize_t)
}

/// 1 when the dump's architecture is the host's, else 0.
#[no_mangle]
pub unsafe extern "C" fn fvc_native(kd: *mut fvc_t) -> c_int {
    kd.as_ref().map_or(0, |k| c_int::from(k.kvm.native()))
}

/// Calls `cb(page, closure)` for every mapped page; `cb` returns 0 to
/// stop. Returns 1 when the walk completed, 0 when it was stopped or
/// failed (see `fvc_geterr()`).
#[no_mangle]
pub unsafe extern "C" fn fvc_walk_pages(
    kd: *mut fvc_t,
    cb: Option<unsafe extern "C" fn(page: *mut fvc_page, closure: *mut c_void) -> c_int>,
    closure: *mut c_void,
) -> c_int {
    let Some(k) = kd.as_ref() else { return 0 };
    let walk = |f: &mut dyn FnMut(&crate::walk::Page) -> bool| k.kvm.walk_pages(f);
    ffi::walk_pages(
        &k.errors,
        "fvc_walk_pages",
        walk,
        cb,
        closure,
        |p, offset, len| fvc_page {
            kp_version: LIBFVC_WALK_PAGES_VERSION,
            kp_paddr: p.paddr,
            kp_kmap_vaddr: p.kmap_vaddr,
            kp_dmap_vaddr: p.dmap_vaddr,
            kp_prot: p.prot,
            kp_offset: offset,
            kp_len: len,
        },
    )
}
