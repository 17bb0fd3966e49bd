//! `kvm._kvm`, the native module of the `kvm` Python package: the Rust
//! library's [`kvm::Kvm`] and [`kvm::Space`] as Python objects.
//!
//! Every call that reads the dump releases the GIL (the handle is `Send`
//! and `Sync`: any number of threads read through it at once); errors of
//! the library are `kvm.KvmError`, an `OSError` whose text is the
//! library's message.

use pyo3::create_exception;
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use std::path::PathBuf;

mod handle;
mod pages;
mod records;

create_exception!(
    kvm,
    KvmError,
    PyOSError,
    "An error of the library: a dump that cannot be opened, an address that \
     does not translate, a page the dump lacks... `str(e)` is the library's \
     message, which names the file or the address; `e.errno` is set when the \
     system refused a file."
);

/// The Python exception for a library error: a `KvmError` whose text is the
/// library's message, with `errno` from the system's error where there is
/// one (`str(e)` stays the message: `OSError` prints `[Errno N]` only when
/// `strerror` is set too).
pub(crate) fn error(py: Python<'_>, e: kvm::Error) -> PyErr {
    let errno = match &e {
        kvm::Error::Io { source, .. } => source.raw_os_error(),
        _ => None,
    };
    let err = KvmError::new_err(e.to_string());
    if let Some(errno) = errno {
        // Setting an attribute of a fresh OSError cannot fail.
        let _ = err.value(py).setattr("errno", errno);
    }
    err
}

/// Opens a kernel image and its crash dump and returns a `Kvm` handle, a
/// context manager that closes it.
///
/// `kernel` is a FreeBSD kernel, or a Linux vmlinux, System.map or
/// kallsyms listing; None opens a Linux vmcore without one (symbols then
/// come from the dump). `core` is the dump. Paths are str or os.PathLike.
/// `pread=True` reads the core with pread(2) instead of mapping it (for a
/// core another process may truncate); `verify_kernel=False` skips the
/// check that the kernel is the one that was running.
///
/// Raises KvmError when the files cannot be opened or do not match.
#[pyfunction]
#[pyo3(signature = (kernel, core, *, pread = false, verify_kernel = true))]
fn open(
    py: Python<'_>,
    kernel: Option<PathBuf>,
    core: PathBuf,
    pread: bool,
    verify_kernel: bool,
) -> PyResult<Bound<'_, handle::Kvm>> {
    let opened = py.detach(|| {
        kvm::OpenOptions::new()
            .pread(pread)
            .verify_kernel(verify_kernel)
            .open_dump(kernel.as_deref(), &core)
    });
    let dump = opened.map_err(|e| error(py, e))?;
    handle::Kvm::wrap(py, dump, &core)
}

/// Python bindings of libkvm: FreeBSD kernel crash dumps and Linux vmcores
/// of any architecture, read on any host.
#[pymodule]
fn _kvm(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("KvmError", py.get_type::<KvmError>())?;
    m.add_function(wrap_pyfunction!(open, m)?)?;
    m.add_class::<handle::AddressSpace>()?;
    m.add_class::<handle::Kvm>()?;
    m.add_class::<handle::Space>()?;
    m.add_class::<pages::PageIterator>()?;
    m.add_class::<records::Page>()?;
    m.add_class::<records::Thread>()?;
    m.add("PROT_READ", kvm::prot::READ)?;
    m.add("PROT_WRITE", kvm::prot::WRITE)?;
    m.add("PROT_EXECUTE", kvm::prot::EXECUTE)?;
    Ok(())
}
