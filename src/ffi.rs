//! What the C APIs share (libkvm's `kvm.h`, and libfbsdvmcore's `fvc.h`
//! for the `fvc` feature): per-thread error texts, copying messages into
//! callers' buffers, `errno`, file names, and the guard that keeps panics
//! from crossing into C.

use crate::walk::Page;
use libc::{c_char, c_int, c_void, off_t, size_t};
use std::cell::UnsafeCell;
use std::ffi::{CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Mutex;

/// Size of a caller's errbuf and of each error text: FreeBSD's
/// `_POSIX2_LINE_MAX`.
pub(crate) const ERRBUF_SIZE: usize = 2048;

/// The last error text of each thread that failed on a handle, for
/// `kvm_geterr()` and `fvc_geterr()`. Per thread, because any number of threads may read
/// through one handle: each sees its own failures, and no text is written
/// while another thread reads it. Kept in the handle, not in thread-local
/// storage, so that calls from `atexit` handlers and thread-local
/// destructors work, and freed with it. At most `MAX_TEXTS` threads keep a
/// text: past that, the thread that failed least recently gives its buffer
/// to the new one.
pub(crate) struct ErrorTexts(Mutex<Vec<ErrorText>>);

/// One thread's text: a buffer that stays at one address until the handle
/// is closed, since `kvm_geterr()` returns a pointer into it.
struct ErrorText {
    thread: libc::pthread_t,
    last_use: u64,
    buf: Box<UnsafeCell<[u8; ERRBUF_SIZE]>>,
}

/// Threads whose error texts a handle keeps (2 KiB each).
const MAX_TEXTS: usize = 64;

impl ErrorTexts {
    pub(crate) fn new() -> Self {
        ErrorTexts(Mutex::new(Vec::new()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ErrorText>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `msg` as the calling thread's last error.
    pub(crate) fn set(&self, msg: &str) {
        // SAFETY: pthread_self is always safe, even while a thread exits.
        let me = unsafe { libc::pthread_self() };
        let mut all = self.lock();
        let clock = all.iter().map(|t| t.last_use).max().unwrap_or(0) + 1;
        let i = match all.iter().position(|t| t.thread == me) {
            Some(i) => i,
            None if all.len() < MAX_TEXTS => {
                all.push(ErrorText {
                    thread: me,
                    last_use: 0,
                    buf: Box::new(UnsafeCell::new([0; ERRBUF_SIZE])),
                });
                all.len() - 1
            }
            None => {
                let (i, _) = all
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, t)| t.last_use)
                    .expect("MAX_TEXTS > 0");
                all[i].thread = me;
                i
            }
        };
        all[i].last_use = clock;
        // SAFETY: written under the lock; see `ErrorText`.
        let buf = unsafe { &mut *all[i].buf.get() };
        let n = msg.len().min(ERRBUF_SIZE - 1);
        buf[..n].copy_from_slice(&msg.as_bytes()[..n]);
        buf[n] = 0;
    }

    /// The calling thread's last error text, if it has one.
    pub(crate) fn get(&self) -> Option<*mut c_char> {
        // SAFETY: pthread_self is always safe.
        let me = unsafe { libc::pthread_self() };
        let all = self.lock();
        let t = all.iter().find(|t| t.thread == me)?;
        Some(t.buf.get().cast())
    }
}

/// Copies `msg` into a C buffer of `ERRBUF_SIZE` bytes, NUL-terminated.
pub(crate) unsafe fn copy_msg(dst: *mut c_char, msg: &str) {
    if dst.is_null() {
        return;
    }
    let n = msg.len().min(ERRBUF_SIZE - 1);
    std::ptr::copy_nonoverlapping(msg.as_ptr(), dst.cast::<u8>(), n);
    *dst.add(n) = 0;
}

/// Sets `errno` (the C library's thread-local error number).
pub(crate) fn set_errno(e: c_int) {
    // SAFETY: each C library's errno accessor returns this thread's errno.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    unsafe {
        *libc::__errno_location() = e;
    }
    #[cfg(any(
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "dragonfly"
    ))]
    unsafe {
        *libc::__error() = e;
    }
    #[cfg(any(target_os = "netbsd", target_os = "openbsd"))]
    unsafe {
        *libc::__errno() = e;
    }
}

/// Runs `f`, turning a panic into `on_panic` (and an error in `errors`,
/// the handle's, if any).
pub(crate) fn guard<T>(errors: Option<&ErrorTexts>, on_panic: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        if let Some(e) = errors {
            e.set("internal error (a bug in libkvm): the operation panicked");
        }
        on_panic
    })
}

/// Runs an open call `f`; a panic returns NULL with a message in `errbuf`
/// (a `KVM_ERRBUF_SIZE` buffer, or NULL), so the caller never prints what
/// its buffer held before.
///
/// # Safety
/// `errbuf` is NULL or a writable buffer of `ERRBUF_SIZE` bytes.
pub(crate) unsafe fn open_guard<T>(
    errbuf: *mut c_char,
    what: &str,
    f: impl FnOnce() -> *mut T,
) -> *mut T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        copy_msg(
            errbuf,
            &format!("{what}: internal error (a bug in libkvm): it panicked"),
        );
        std::ptr::null_mut()
    })
}

/// The body of `kvm_walk_pages()` and `fvc_walk_pages()`: calls `cb` with
/// each page `walk` reports, laid out by `make` (given the page, its core
/// offset as C takes it (-1 when not in the dump) and its length); 1 when
/// the walk completed, 0 when `cb` stopped it or it failed (the error, after
/// `name`, in `errors`).
///
/// # Safety
/// `cb` is a valid callback for `closure`.
pub(crate) unsafe fn walk_pages<P>(
    errors: &ErrorTexts,
    name: &str,
    walk: impl FnOnce(&mut dyn FnMut(&Page) -> bool) -> crate::Result<bool>,
    cb: Option<unsafe extern "C" fn(page: *mut P, closure: *mut c_void) -> c_int>,
    closure: *mut c_void,
    make: impl Fn(&Page, off_t, size_t) -> P,
) -> c_int {
    let Some(cb) = cb else {
        errors.set(&format!("{name}: NULL callback"));
        return 0;
    };
    guard(Some(errors), 0, || {
        let walked = walk(&mut |p| {
            let offset = p.offset.and_then(|o| off_t::try_from(o).ok()).unwrap_or(-1);
            let mut page = make(p, offset, usize::try_from(p.len).unwrap_or(usize::MAX));
            // SAFETY: the caller of walk_pages passes a valid callback.
            unsafe { cb(&mut page, closure) != 0 }
        });
        match walked {
            Ok(done) => c_int::from(done),
            Err(e) => {
                errors.set(&format!("{name}: {e}"));
                0
            }
        }
    })
}

/// A file name from C (any bytes but NUL), or `default` for NULL.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string that outlives the result.
pub(crate) unsafe fn path_arg(p: *const c_char, default: &str) -> &Path {
    if p.is_null() {
        Path::new(default)
    } else {
        Path::new(OsStr::from_bytes(CStr::from_ptr(p).to_bytes()))
    }
}
