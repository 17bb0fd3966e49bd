//! mips minidumps, versions 1 and 2 (FreeBSD 13's
//! `sys/mips/mips/minidump_machdep.c` writes them,
//! `lib/libkvm/kvm_minidump_mips.c` and `kvm_mips.h` read them; mips left
//! FreeBSD in 14).
//!
//! File layout: header page, message buffer (rounded up to a page), the
//! dump_avail page (version 2: 64-bit entries whatever the kernel's
//! `vm_paddr_t`), the page bitmap, the PTE section, then the dumped pages
//! in bitmap order. Every word is in the kernel's byte order: header
//! fields, dump_avail, the bitmap's words and the PTEs. Version 1's bitmap
//! is an array of `uint32_t` (`vm_page_dump`, "CTASSERT(sizeof(*vm_page_dump)
//! == 4)"); version 2's a `BITSET` of `long`s (8 bytes on n64, 4 on o32 and
//! n32) numbered through dump_avail.
//!
//! The PTE section holds the kernel's page-table pages from
//! `VM_MIN_KERNEL_ADDRESS` (the header's `kernbase`) to `kernel_vm_end`,
//! one page per `NBPDR`: a flat array of one PTE per 4 KiB page. A PTE is
//! 8 bytes when the kernel is n64 or n32 (`pt_entry_t` in
//! sys/mips/include/pte.h; the "PHYSADDR_64_BIT" there is only a comment on
//! that condition) and 4 bytes on o32. Nothing in the header says which:
//! like libkvm, the kernel image decides (ELFCLASS64, or `EF_MIPS_ABI2` in
//! `e_flags` for n32), so each ABI and byte order is its own backend here.
//!
//! The unmapped segments translate without tables, as libkvm does
//! (`MIPS_KSEG0_TO_PHYS`, `MIPS_XKPHYS_TO_PHYS` in
//! sys/mips/include/cpuregs.h): KSEG0 and KSEG1 (32-bit kernels, and their
//! sign-extended forms on 64-bit kernels) and XKPHYS (64-bit kernels, any
//! cache attribute). Other addresses go through the PTE section; nothing
//! below `kernbase` outside those segments is readable. `kvm_kerndisp` is
//! 0, as in FreeBSD.
//!
//! `kvm_walk_pages`: FreeBSD reports the PTE section's valid entries only
//! (its direct-segment loop is a comment). Here the valid PTEs come first,
//! with the direct-segment address of their memory (`MIPS_PHYS_TO_DIRECT`:
//! KSEG0 below 512 MiB on 32-bit kernels, cached XKPHYS on 64-bit ones),
//! then every dumped page the PTEs do not reach, by that address.

use crate::error::{Error, Fault, Result};
use crate::image::{uint, Image};
use crate::minidump::{header_page, map_fits, Minidump, Order, Sizes};
use crate::pagetable::{check_32bit, Bits, Format, Frame, Level, Mapping, Root, Step};
use crate::registry::{Backend, Probe, Setup, Translator, BACKENDS};
use crate::space::{Mmu, Paged};
use crate::walk::{prot, DirectMap, Page};
use linkme::distributed_slice;
use object::elf::{EF_MIPS_ABI2, EM_MIPS};
use static_assertions::const_assert_eq;
use std::mem::{offset_of, size_of};

/// `MINIDUMP_MAGIC` (sys/mips/include/minidump.h) and the NUL that ends
/// libkvm's `strncmp` over `magic[24]`.
const MAGIC: &[u8; 22] = b"minidump FreeBSD/mips\0";

/// `MIPS_PAGE_SIZE` (lib/libkvm/kvm_mips.h): 4 KiB pages, the only size
/// FreeBSD/mips's pmap uses for the kernel map.
const PAGE_SIZE: u64 = 4096;
const PAGE_SHIFT: u32 = 12;

/// `struct minidumphdr` (sys/mips/include/minidump.h, FreeBSD 13):
/// `dumpavailsize` was added by version 2 (`MINIDUMP_VERSION` 2); the
/// writer never sets `dmapbase` and `dmapend`. A 64-bit field is 8-aligned
/// on every mips ABI, o32 included, so the layout is one.
#[repr(C)]
#[allow(dead_code)] // the layout is read field by field with offset_of!
struct MinidumpHdr {
    magic: [u8; 24],
    version: u32,
    msgbufsize: u32,
    bitmapsize: u32,
    ptesize: u32,
    kernbase: u64,
    dmapbase: u64,
    dmapend: u64,
    dumpavailsize: u32,
}
const_assert_eq!(offset_of!(MinidumpHdr, version), 0x18);
const_assert_eq!(offset_of!(MinidumpHdr, ptesize), 0x24);
const_assert_eq!(offset_of!(MinidumpHdr, kernbase), 0x28);
const_assert_eq!(offset_of!(MinidumpHdr, dumpavailsize), 0x40);
const_assert_eq!(size_of::<MinidumpHdr>(), 72);

// PTE bits (sys/mips/include/pte.h; lib/libkvm/kvm_mips.h).
/// `PTE_V` (`PTE_VR`): valid. An unmapped kernel PTE holds `PTE_G` (1)
/// rather than 0 (`pmap_remove_pte` in sys/mips/mips/pmap.c), so only this
/// bit counts.
const PTE_V: u64 = 0x02;
/// `TLBLO_PFN_MASK` of o32 kernels (`MIPS32_PFN_MASK`): the PFN field, bits
/// 6-28; the software bits sit above it (`TLBLO_SWBITS_SHIFT` 29).
const PFN_MASK_32: u64 = 0x1fff_ffc0;
/// `TLBLO_PFN_MASK` of n64 and n32 kernels (`MIPS64_PFN_MASK`): bits 6-33;
/// the software bits start at bit 55.
const PFN_MASK_64: u64 = 0x3_ffff_ffc0;
/// `TLBLO_PFN_SHIFT`: the PFN of a 4 KiB frame is stored at bit 6
/// (`TLBLO_PTE_TO_PA(pte) = (pte & TLBLO_PFN_MASK) >> 6 << 12`).
const PFN_TO_PA: u32 = PAGE_SHIFT - 6;
/// `PTE_RO` (`0x01 << TLBLO_SWBITS_SHIFT`): read-only.
const PTE_RO_32: u64 = 1 << 29;
const PTE_RO_64: u64 = 1 << 55;

/// The PTE section as a one-level format: 4- or 8-byte PTEs, either byte
/// order.
const fn pte_map(entry_size: u8, big_endian: bool, pfn_mask: u64) -> Format<1> {
    let frame = Frame {
        mask: pfn_mask,
        shl: PFN_TO_PA,
    };
    Format {
        entry_size,
        big_endian,
        pointer: Bits::ALWAYS,
        table: frame,
        levels: [Level {
            name: "PTE",
            shift: PAGE_SHIFT,
            bits: 0,
            valid: Bits::eq(PTE_V, PTE_V),
            leaf: Bits::NEVER,
            frame,
        }],
    }
}

static MAP_32_LE: Format<1> = pte_map(4, false, PFN_MASK_32);
static MAP_32_BE: Format<1> = pte_map(4, true, PFN_MASK_32);
static MAP_64_LE: Format<1> = pte_map(8, false, PFN_MASK_64);
static MAP_64_BE: Format<1> = pte_map(8, true, PFN_MASK_64);

/// The PTE format of a kernel with 8-byte PTEs or not, of either byte order.
const fn pte_format(pte64: bool, big_endian: bool) -> &'static Format<1> {
    match (pte64, big_endian) {
        (false, false) => &MAP_32_LE,
        (false, true) => &MAP_32_BE,
        (true, false) => &MAP_64_LE,
        (true, true) => &MAP_64_BE,
    }
}

/// `VM_PROT_*` of a valid PTE, as libkvm's `_mips_iterator_next`: every
/// kernel page is readable and executable (`init_pte_prot` in
/// sys/mips/mips/pmap.c), writable unless `PTE_RO`.
fn entry_prot<const PTE64: bool>(e: u64) -> u8 {
    let ro = if PTE64 { PTE_RO_64 } else { PTE_RO_32 };
    let w = if e & ro == 0 { prot::WRITE } else { 0 };
    prot::READ | prot::EXECUTE | w
}

/// An unmapped segment: `[start, end)` translates to `va & mask`.
struct Segment {
    start: u64,
    end: u64,
    mask: u64,
}

/// `MIPS_KSEG0_PHYS_MASK`, `MIPS_XKPHYS_PHYS_MASK` (sys/mips/include/cpuregs.h).
const KSEG0_PHYS_MASK: u64 = 0x1fff_ffff;
const XKPHYS_PHYS_MASK: u64 = 0xff_ffff_ffff;

/// 32-bit kernels: KSEG0 (cached) and KSEG1 (uncached) map the first 512 MiB
/// (`MIPS32_KSEG0_START` ... in lib/libkvm/kvm_mips.h).
static SEGMENTS_32: [Segment; 2] = [
    Segment {
        start: 0x8000_0000,
        end: 0xa000_0000,
        mask: KSEG0_PHYS_MASK,
    },
    Segment {
        start: 0xa000_0000,
        end: 0xc000_0000,
        mask: KSEG0_PHYS_MASK,
    },
];

/// 64-bit kernels: XKPHYS (`MIPS_XKPHYS_START` ... `_END`, the cache
/// attribute in bits 59-61 ignored) and the sign-extended KSEG0 and KSEG1
/// (`MIPS64_KSEG0_START` ...).
static SEGMENTS_64: [Segment; 3] = [
    Segment {
        start: 0x8000_0000_0000_0000,
        end: 0xc000_0000_0000_0000,
        mask: XKPHYS_PHYS_MASK,
    },
    Segment {
        start: 0xffff_ffff_8000_0000,
        end: 0xffff_ffff_a000_0000,
        mask: KSEG0_PHYS_MASK,
    },
    Segment {
        start: 0xffff_ffff_a000_0000,
        end: 0xffff_ffff_c000_0000,
        mask: KSEG0_PHYS_MASK,
    },
];

/// `MIPS_PHYS_TO_DIRECT` (sys/mips/include/cpuregs.h), for the walk: KSEG0
/// on 32-bit kernels (`MIPS_DIRECT_MAPPABLE`: below 512 MiB), cached XKPHYS
/// on n64 (`MIPS_PHYS_TO_XKPHYS_CACHED`, with `MIPS_CCA_CACHED` taken as 3,
/// cacheable non-coherent, the default of sys/mips/include/cca.h; some
/// CPUs use another attribute, which reads the same memory).
const DIRECT_32: DirectMap = DirectMap {
    base: 0x8000_0000,
    end: 0xa000_0000,
    phys: 0,
};
const DIRECT_64: DirectMap = DirectMap {
    base: 0x9800_0000_0000_0000,
    end: 0x9800_0000_0000_0000 + XKPHYS_PHYS_MASK + 1,
    phys: 0,
};

/// A mips kernel ABI and byte order: ELFCLASS64 (n64), 8-byte PTEs (n64
/// and n32), big-endian.
struct Abi<const ELF64: bool, const PTE64: bool, const BE: bool>;

impl<const ELF64: bool, const PTE64: bool, const BE: bool> Abi<ELF64, PTE64, BE> {
    const NAME: &'static str = match (ELF64, PTE64, BE) {
        (true, _, true) => "mips64 minidump",
        (true, _, false) => "mips64el minidump",
        (false, true, true) => "mipsn32 minidump",
        (false, true, false) => "mipsn32el minidump",
        (false, false, true) => "mips minidump",
        (false, false, false) => "mipsel minidump",
    };
    const FORMAT: &'static Format<1> = pte_format(PTE64, BE);
    const SEGMENTS: &'static [Segment] = if ELF64 { &SEGMENTS_64 } else { &SEGMENTS_32 };
    const DIRECT: DirectMap = if ELF64 { DIRECT_64 } else { DIRECT_32 };
    const PTE_SIZE: u64 = if PTE64 { 8 } else { 4 };

    /// `_mips_minidump_probe` (ELFCLASS32 or 64, EM_MIPS, a minidump),
    /// narrowed to this ABI and byte order so that exactly one backend
    /// takes a dump.
    fn probe(p: &Probe<'_>) -> bool {
        let pte64 = |flags: u32| ELF64 || flags & EF_MIPS_ABI2 != 0;
        p.kernel_is(ELF64, BE, EM_MIPS)
            && p.kernel.is_some_and(|k| pte64(k.flags) == PTE64)
            && p.core_starts_with(MAGIC)
    }
}

macro_rules! backend {
    ($static:ident, $elf64:literal, $pte64:literal, $be:literal, $native:expr) => {
        #[distributed_slice(BACKENDS)]
        static $static: Backend = Backend {
            name: Abi::<$elf64, $pte64, $be>::NAME,
            probe: Abi::<$elf64, $pte64, $be>::probe,
            initvtop: initvtop::<$elf64, $pte64, $be>,
            native: || $native,
        };
    };
}

// `_mips_native`: the host's ABI (n64, n32 or o32) and byte order.
backend!(MIPS_O32_BE, false, false, true, cfg!(all(any(target_arch = "mips", target_arch = "mips32r6"), target_endian = "big")));
backend!(MIPS_O32_LE, false, false, false, cfg!(all(any(target_arch = "mips", target_arch = "mips32r6"), target_endian = "little")));
backend!(MIPS_N32_BE, false, true, true, cfg!(all(any(target_arch = "mips64", target_arch = "mips64r6"), target_pointer_width = "32", target_endian = "big")));
backend!(MIPS_N32_LE, false, true, false, cfg!(all(any(target_arch = "mips64", target_arch = "mips64r6"), target_pointer_width = "32", target_endian = "little")));
backend!(MIPS_N64_BE, true, true, true, cfg!(all(any(target_arch = "mips64", target_arch = "mips64r6"), target_pointer_width = "64", target_endian = "big")));
backend!(MIPS_N64_LE, true, true, false, cfg!(all(any(target_arch = "mips64", target_arch = "mips64r6"), target_pointer_width = "64", target_endian = "little")));

struct MipsMinidump<const ELF64: bool, const PTE64: bool, const BE: bool> {
    mem: Minidump,
    /// The PTE section as a walk root.
    map: Root,
    kernbase: u64,
}

fn initvtop<const ELF64: bool, const PTE64: bool, const BE: bool>(
    s: &Setup<'_>,
) -> Result<Box<dyn Translator>> {
    let name = Abi::<ELF64, PTE64, BE>::NAME;
    let bad = |m: String| Error::BadCore(format!("{name}: {m}"));
    let h: [u8; size_of::<MinidumpHdr>()] = header_page(s.core).map_err(bad)?;
    let field = |off: usize, len: usize| uint(&h[off..off + len], BE);
    let version = field(offset_of!(MinidumpHdr, version), 4);
    if !(1..=2).contains(&version) {
        let swapped = (version as u32).swap_bytes();
        let hint = if (1..=2).contains(&swapped) {
            format!(
                ": the header reads as version {swapped} in the other byte order, so the dump \
                 was written by a {}-endian kernel and the kernel image is {}-endian",
                if BE { "little" } else { "big" },
                if BE { "big" } else { "little" },
            )
        } else {
            String::new()
        };
        return Err(bad(format!(
            "unknown version {version} (expected 1 or 2){hint}"
        )));
    }
    let ptesize = field(offset_of!(MinidumpHdr, ptesize), 4);
    let kernbase = field(offset_of!(MinidumpHdr, kernbase), 8);
    let sizes = Sizes {
        page_size: PAGE_SIZE,
        msgbuf: field(offset_of!(MinidumpHdr, msgbufsize), 4),
        dump_avail: if version >= 2 {
            field(offset_of!(MinidumpHdr, dumpavailsize), 4)
        } else {
            0
        },
        bitmap: field(offset_of!(MinidumpHdr, bitmapsize), 4),
        pmap: ptesize,
        order: Order {
            big_endian: BE,
            // uint32_t words in version 1, longs in version 2.
            long: if version >= 2 && ELF64 { 8 } else { 4 },
        },
    };
    let (layout, map_off) = sizes
        .layout(s.core, "PTE section")
        .map_err(|e| e.within(name))?;
    let entries = ptesize / Abi::<ELF64, PTE64, BE>::PTE_SIZE;
    if kernbase % PAGE_SIZE != 0 {
        return Err(bad(format!("kernbase {kernbase:#x} is not page-aligned")));
    }
    map_fits(kernbase, entries, PAGE_SHIFT, if ELF64 { 64 } else { 32 }).map_err(bad)?;
    let mem = Minidump::new(s.core, layout).map_err(|e| e.within(name))?;
    Ok(Paged::boxed(MipsMinidump::<ELF64, PTE64, BE> {
        mem,
        map: Root::File {
            off: map_off,
            count: entries,
            base: kernbase,
        },
        kernbase,
    }))
}

impl<const ELF64: bool, const PTE64: bool, const BE: bool> Mmu for MipsMinidump<ELF64, PTE64, BE> {
    type Mem = Minidump;

    fn mem(&self) -> &Minidump {
        &self.mem
    }

    /// `_mips_minidump_kvatop`: the unmapped segments, then the PTE section
    /// from `kernbase`.
    #[inline]
    fn translate_traced(
        &self,
        image: &Image,
        va: u64,
        trace: &mut impl FnMut(Step),
    ) -> Result<Mapping, Fault> {
        if !ELF64 {
            check_32bit(va, "a 32-bit mips kernel's")?;
        }
        let segment = Abi::<ELF64, PTE64, BE>::SEGMENTS
            .iter()
            .find(|s| va.wrapping_sub(s.start) < s.end - s.start);
        let pa = match segment {
            Some(s) => va & s.mask,
            None if va >= self.kernbase => {
                let format = Abi::<ELF64, PTE64, BE>::FORMAT;
                format
                    .translate_traced(image, &self.mem, self.map, va, trace)?
                    .pa
            }
            None => return Err(below_kernbase::<ELF64>(self.kernbase)),
        };
        Ok(Mapping::at(va, pa, PAGE_SIZE, 0))
    }

    /// The PTE section's valid entries, then the dumped pages they do not
    /// reach, by their direct-segment address (see the module comment).
    fn walk_pages(&self, image: &Image, f: &mut dyn FnMut(&Page) -> bool) -> Result<bool> {
        let format = Abi::<ELF64, PTE64, BE>::FORMAT;
        let direct = Abi::<ELF64, PTE64, BE>::DIRECT;
        self.mem
            .walk_pages(image, format, self.map, &direct, entry_prot::<PTE64>, f)
    }
}

#[cold]
#[inline(never)]
fn below_kernbase<const ELF64: bool>(kernbase: u64) -> Fault {
    let segments = if ELF64 { "XKPHYS, KSEG0 or KSEG1" } else { "KSEG0 or KSEG1" };
    Fault::Unmapped(format!(
        "not in {segments} and below kernbase ({kernbase:#x}): a mips minidump holds only \
         the kernel map and the unmapped segments"
    ))
}
