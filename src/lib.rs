//! A cross-architecture, libkvm-compatible reader of FreeBSD kernel crash
//! dumps and Linux vmcores.
//!
//! Open a kernel image and a dump taken on any supported architecture with
//! [`Kvm::open`] (FreeBSD: an ELF full dump or a minidump of amd64, i386,
//! arm64 or riscv; Linux: an ELF or kdump-compressed vmcore of x86-64, i386
//! or aarch64, with its `vmlinux`, `System.map`, a kallsyms listing, or no
//! kernel file at all through [`OpenOptions::open_dump`]), then resolve
//! symbols, read kernel virtual memory and walk the mapped pages. The same
//! functionality is exported to C with FreeBSD's `kvm.h` names
//! (`include/kvm.h`; `libkvm.so` and `libkvm.a`).
//!
//! ```
//! # fn main() -> kvm::Result<()> {
//! // A sample amd64 minidump and its kernel, from the test fixture.
//! let kvm = kvm::Kvm::open("tests/data/kernel", "tests/data/vmcore")?;
//! assert_eq!(kvm.backend(), "amd64 minidump");
//!
//! // Symbols resolve as kvm_nlist(3) resolves them.
//! let version = kvm.symbol("_version").expect("every FreeBSD kernel has one");
//! let mut buf = [0u8; 64];
//! let n = kvm.read(version.value, &mut buf)?;
//! let text = String::from_utf8_lossy(&buf[..n]);
//! assert!(text.starts_with("FreeBSD 14.2-RELEASE"));
//!
//! // Reads that cannot be satisfied say why, naming the address.
//! let err = kvm.read(0xffff_ffff_8000_0000, &mut buf).unwrap_err();
//! assert!(err.to_string().starts_with("invalid address (0xffffffff80000000): not mapped"));
//!
//! // Every page the kernel maps.
//! let mut pages = 0;
//! kvm.walk_pages(|page| {
//!     pages += page.len / 4096;
//!     true
//! })?;
//! assert!(pages > 0);
//! # Ok(())
//! # }
//! ```
//!
//! Inside, each dump format is a backend (one file under `arch/`) in a
//! linker set, as libkvm's `kvm_arch`; one page-table walker described by
//! data serves every architecture; containers (ELF cores, minidumps, kdump
//! files) locate and read physical memory; a personality (FreeBSD's, or
//! Linux's: VMCOREINFO, KASLR, kallsyms) finds the tables and symbols.

#![warn(missing_docs)]

mod bitmap;
#[cfg(feature = "capi")]
mod capi;
mod cold;
mod elfcore;
mod error;
#[cfg(any(feature = "capi", feature = "fvc"))]
mod ffi;
#[cfg(feature = "fvc")]
mod fvc;
mod identify;
mod image;
mod kallsyms;
mod kdump;
mod kernel;
mod kvm;
mod linux;
mod minidump;
mod mmu;
mod pagetable;
mod pcpu;
mod physmem;
mod printk;
mod registry;
mod regs;
mod space;
mod stack;
mod threads;
mod tlb;
mod vmcoreinfo;
mod walk;

/// Machine-dependent backends, one module per file in `arch/` (listed by
/// `build.rs`).
mod arch {
    include!(concat!(env!("OUT_DIR"), "/arch_mods.rs"));
}

pub use error::{Error, Fault, Result};
pub use kernel::{ntype, Symbol};
pub use kvm::{Kvm, OpenOptions, Resolver};
pub use pagetable::{Step as WalkStep, Table as TableAt};
pub use physmem::Span;
pub use regs::{Arch, RegisterInfo, Registers, MAX_REGISTERS};
pub use stack::{AddressSpace, Base, Paging, Range, Space, MAX_LAYERS, MAX_RANGES};
pub use threads::Thread;
pub use walk::{prot, Page};

/// The C header cbindgen generated from this build (tests compare it with
/// the committed `include/kvm.h`).
#[doc(hidden)]
pub const GENERATED_HEADER: &str = include_str!(concat!(env!("OUT_DIR"), "/kvm.h"));
