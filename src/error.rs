//! The error type shared by the Rust API and the C layer (whose `kvm_geterr`
//! text is this type's `Display`).

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a kernel virtual address could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The page tables (or the minidump's page map) have no mapping here.
    Unmapped(String),
    /// Mapped to physical address `pa`, but the dump does not hold that page
    /// (minidumps leave most pages out; full dumps can have holes).
    NotInDump {
        /// The physical address the page tables give.
        pa: u64,
    },
    /// Mapped to physical address `pa`, a page the dump tool chose to leave
    /// out (makedumpfile's filtering of zero, cache, user or free pages).
    Filtered {
        /// The physical address the page tables give.
        pa: u64,
    },
    /// The address cannot be a kernel address of this architecture at all.
    OutOfRange(String),
    /// The page tables themselves are damaged or missing from the dump.
    BadPageTable(String),
    /// A failure in a layer of a stack of spaces (see [`crate::Space`]):
    /// `what` says where ("in EPT space (layer 1)", "0x5000 in linear
    /// space (layer 2)", "its PML4E table at 0x1000"), `fault` why.
    In {
        /// Where the failure happened.
        what: String,
        /// What failed there.
        fault: Box<Fault>,
    },
}

/// Everything that can go wrong while opening or reading a dump.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be opened or read.
    Io {
        /// "kernel" or "core".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The path names something other than a regular file.
    NotAFile {
        /// "kernel" or "core".
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// What it is instead ("directory", "FIFO (named pipe)", ...).
        kind: &'static str,
    },
    /// The file is empty.
    EmptyFile {
        /// "kernel" or "core".
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// The kernel image is not a usable FreeBSD kernel (the message names
    /// the file once the handle's open has added it).
    BadKernel(String),
    /// The core file is malformed, truncated or lies in its headers (the
    /// message names the file once the handle's open has added it).
    BadCore(String),
    /// The kernel is not the one that was running when the dump was taken.
    Mismatch(String),
    /// Memory for an index of the dump could not be had.
    OutOfMemory(String),
    /// No backend accepts this kernel and core pair.
    Unsupported(String),
    /// A kernel symbol the backend needs could not be resolved.
    MissingSymbol(&'static str),
    /// A virtual address could not be translated.
    Translate {
        /// The first address that failed.
        va: u64,
        /// Why.
        fault: Fault,
    },
    /// A physical address could not be read.
    Physical {
        /// The first address that failed.
        pa: u64,
        /// Why.
        fault: Fault,
    },
    /// A caller's argument is invalid.
    InvalidArgument(&'static str),
    /// Crash dumps are read-only.
    ReadOnly,
    /// The operation is not available for this dump or backend.
    NotSupported(&'static str),
    /// A space description ([`crate::Space::new`], `kvm_open_space`) is
    /// refused.
    InvalidSpace(String),
}

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A translation error for `va`.
    pub fn fault(va: u64, fault: Fault) -> Self {
        Error::Translate { va, fault }
    }

    /// A physical-read error for `pa`.
    pub fn physical(pa: u64, fault: Fault) -> Self {
        Error::Physical { pa, fault }
    }

    /// Names the format a bad-core message concerns ("amd64 minidump: ...").
    pub fn within(self, format: &str) -> Self {
        match self {
            Error::BadCore(m) => Error::BadCore(format!("{format}: {m}")),
            e => e,
        }
    }

    /// Names the file a kernel or core message concerns ("core PATH: ...").
    pub fn in_file(self, what: &str, path: &std::path::Path) -> Self {
        let name = |m: String| format!("{what} {}: {m}", path.display());
        match self {
            Error::BadKernel(m) => Error::BadKernel(name(m)),
            Error::BadCore(m) => Error::BadCore(name(m)),
            Error::OutOfMemory(m) => Error::OutOfMemory(name(m)),
            Error::Unsupported(m) => Error::Unsupported(name(m)),
            e => e,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Unmapped(why) => write!(f, "not mapped: {why}"),
            Fault::NotInDump { pa } => write!(
                f,
                "mapped to physical address {pa:#x}, which is not in the dump"
            ),
            Fault::Filtered { pa } => write!(
                f,
                "mapped to physical address {pa:#x}, a page filtered out of the dump"
            ),
            Fault::OutOfRange(why) => write!(f, "out of range: {why}"),
            Fault::BadPageTable(why) => write!(f, "damaged page tables: {why}"),
            Fault::In { what, fault } => write!(f, "{what}: {fault}"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { what, path, source } => {
                write!(f, "{what} {}: {}", path.display(), os_text(source))
            }
            Error::NotAFile { what, path, kind } => write!(
                f,
                "{what} {}: is a {kind}, not a regular file (expected {})",
                path.display(),
                expected(what)
            ),
            Error::EmptyFile { what, path } => write!(
                f,
                "{what} {}: is an empty file (expected {})",
                path.display(),
                expected(what)
            ),
            Error::BadKernel(m) | Error::BadCore(m) | Error::Mismatch(m) => f.write_str(m),
            Error::OutOfMemory(m) => write!(f, "out of memory: {m}"),
            Error::Unsupported(m) => write!(f, "unsupported dump: {m}"),
            Error::MissingSymbol(s) => write!(f, "bad namelist: no symbol {s}"),
            // "invalid address (0x...)" is libkvm's own wording; tools grep it.
            Error::Translate { va, fault } => write!(f, "invalid address ({va:#x}): {fault}"),
            Error::Physical { pa, fault } => match fault {
                Fault::NotInDump { .. } => {
                    write!(f, "invalid physical address ({pa:#x}): not in the dump")
                }
                Fault::Filtered { .. } => write!(
                    f,
                    "invalid physical address ({pa:#x}): a page filtered out of the dump"
                ),
                other => write!(f, "invalid physical address ({pa:#x}): {other}"),
            },
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::ReadOnly => write!(f, "cannot write: crash dumps are opened read-only"),
            Error::NotSupported(m) => write!(f, "not supported: {m}"),
            Error::InvalidSpace(m) => write!(f, "invalid space: {m}"),
        }
    }
}

/// What a file given as `what` should be.
fn expected(what: &str) -> &'static str {
    if what == "kernel" {
        "a FreeBSD kernel image"
    } else {
        "a crash dump: an ELF core or a minidump"
    }
}

/// The system's text for an I/O error, without Rust's " (os error N)".
fn os_text(e: &io::Error) -> String {
    let text = e.to_string();
    match e.raw_os_error() {
        Some(code) => text
            .strip_suffix(&format!(" (os error {code})"))
            .map_or_else(|| text.clone(), str::to_owned),
        None => text,
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
