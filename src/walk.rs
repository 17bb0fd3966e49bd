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

    /// Bytes the map spans (`end` may wrap to 0 at the top of the address
    /// space, and `phys` may be "negative": arm64's PHYS_OFFSET under
    /// KASLR, so arithmetic wraps).
    fn size(&self) -> u64 {
        self.end.wrapping_sub(self.base)
    }

    /// The direct-map address of `pa`, or 0 when the map does not cover it.
    pub fn va_of(&self, pa: u64) -> u64 {
        let d = pa.wrapping_sub(self.phys);
        if d < self.size() {
            self.base.wrapping_add(d)
        } else {
            0
        }
    }

    /// The physical address of direct-map address `va`, if it is in range.
    pub fn pa_of(&self, va: u64) -> Option<u64> {
        let d = va.wrapping_sub(self.base);
        (d < self.size()).then(|| d.wrapping_add(self.phys))
    }
}

/// A leaf as `kvm_walk_pages` reports it on a Linux dump: a leaf that
/// maps its own address in the linear (direct) map `linear` belongs to
/// that map and is reported by that address alone; any other leaf by its
/// own address, with the linear address of its memory where there is one.
/// (The linear map's size follows RAM and other regions start close
/// after it, so a range test would misfile them.)
pub fn linux_page(
    linear: &DirectMap,
    va: u64,
    pa: u64,
    size: u64,
    prot: u8,
    offset: Option<u64>,
) -> Page {
    let in_linear = linear.pa_of(va) == Some(pa);
    Page {
        paddr: pa,
        kmap_vaddr: if in_linear { 0 } else { va },
        dmap_vaddr: if in_linear { va } else { linear.va_of(pa) },
        prot,
        offset,
        len: size,
    }
}
