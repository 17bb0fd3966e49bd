//! Page enumeration (`kvm_walk_pages`): FreeBSD's `struct kvm_page`.
//!
//! Every backend reports, in order:
//! 1. each valid leaf of the kernel map (the minidump's page map, or a full
//!    dump's page tables from the root), with its virtual address, its
//!    physical address, its size (4 KiB up to 1 GiB), the protection of its
//!    entry, the direct-map address of the same memory where the
//!    architecture has a direct map, and the file offset of its first byte
//!    (none when that page is not in the dump);
//! 2. on minidumps of architectures with a direct map, each dumped page the
//!    kernel map did not reach, by its direct-map address alone.
//!
//! Nothing is collected: pages stream to the callback, and the only memory
//! used records which dumped pages the first part reached (one bit per bit
//! of the bitmap blocks that hold pages).

/// `VM_PROT_*` (sys/vm/vm.h).
pub mod prot {
    /// Readable.
    pub const READ: u8 = 0x01;
    /// Writable.
    pub const WRITE: u8 = 0x02;
    /// Executable.
    pub const EXECUTE: u8 = 0x04;
}

/// One mapped page or superpage (`struct kvm_page`, version 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Physical address of the first byte.
    pub paddr: u64,
    /// Kernel-map virtual address, 0 when reached only through the direct map.
    pub kmap_vaddr: u64,
    /// Direct-map virtual address of the same memory, 0 when there is none.
    pub dmap_vaddr: u64,
    /// `VM_PROT_*` bits from the mapping's entry.
    pub prot: u8,
    /// File offset of the first byte; `None` when that page is not in the dump.
    pub offset: Option<u64>,
    /// Length in bytes (the page or superpage size).
    pub len: u64,
}

/// A direct map: virtual `[base, end)` maps physical from `phys`.
#[derive(Debug, Clone, Copy)]
pub struct DirectMap {
    /// First virtual address.
    pub base: u64,
    /// End of the virtual range.
    pub end: u64,
    /// Physical address mapped at `base`.
    pub phys: u64,
}

impl DirectMap {
    /// No direct map (i386).
    pub const NONE: DirectMap = DirectMap {
        base: 0,
        end: 0,
        phys: 0,
    };

    /// The direct-map address of `pa`, or 0 when the map does not cover it.
    pub fn va_of(&self, pa: u64) -> u64 {
        match pa.checked_sub(self.phys) {
            Some(d) if d < self.end - self.base => self.base + d,
            _ => 0,
        }
    }

    /// The physical address of direct-map address `va`, if it is in range.
    pub fn pa_of(&self, va: u64) -> Option<u64> {
        if va < self.base || va >= self.end {
            return None;
        }
        (va - self.base).checked_add(self.phys)
    }
}
