//! A cross-architecture, libkvm-compatible reader of FreeBSD kernel crash
//! dumps.
//!
//! Open a kernel image and a dump (an ELF full dump or a minidump) taken on
//! any supported architecture with [`Kvm::open`], then resolve symbols and
//! read kernel virtual memory. The same functionality is exported to C with
//! FreeBSD's `kvm.h` names (see `include/kvm.h` and [`capi`]).
//!
//! Backends (one file each under `arch/`) register themselves in
//! [`registry::BACKENDS`]; page tables are walked by the data-driven walker in
//! [`pagetable`]; physical memory is located by the containers in
//! [`elfcore`] and [`minidump`].

#![warn(missing_docs)]

pub mod capi;
pub mod elfcore;
pub mod error;
pub mod identify;
pub mod image;
pub mod kernel;
pub mod kvm;
pub mod minidump;
pub mod pagetable;
pub mod physmem;
pub mod registry;
pub mod walk;

/// Machine-dependent backends, one module per file in `arch/` (listed by
/// `build.rs`).
pub mod arch {
    include!(concat!(env!("OUT_DIR"), "/arch_mods.rs"));
}

pub use error::{Error, Fault, Result};
pub use kernel::Symbol;
pub use kvm::{Kvm, OpenOptions, Resolver};
pub use walk::Page;

/// The C header cbindgen generated from this build (tests compare it with
/// the committed `include/kvm.h`).
#[doc(hidden)]
pub const GENERATED_HEADER: &str = include_str!(concat!(env!("OUT_DIR"), "/kvm.h"));
