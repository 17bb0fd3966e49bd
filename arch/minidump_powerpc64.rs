//! powerpc64 minidumps, versions 1 and 2 (`sys/powerpc/powerpc/minidump_machdep.c`
//! writes them, `lib/libkvm/kvm_minidump_powerpc64.c` and
//! `kvm_minidump_powerpc64_hpt.c` read them), of big-endian (powerpc64)
//! and little-endian (powerpc64le) kernels.
//!
//! The page map is moea64's hashed page table (HPT), dumped whole
//! (`dumpsys_dump_pmap`): PTE groups of eight 16-byte entries, found by
//! hashing the segment's VSID with the page index. Kernel segments have a
//! fixed VSID (`KERNEL_VSID`, sys/powerpc/include/slb.h), so no SLB is
//! needed. The direct map (`dmapbase..=dmapend`) is linear and tried first.
//!
//! Kernel displacement: the kernel runs relocated at `startkernel`, linked
//! at `PPC64_KERNBASE`; `kvm_kerndisp` is the difference. Symbols stay
//! link-time values (`kvm_nlist` does not displace them); a read below
//! `dmapbase` is displaced before translation, as `ppc64mmu_hpt_kvatop`
//! does, so link-time addresses read the running kernel.
//!
//! Where this differs from libkvm (checked against libfbsdvmcore, its
//! portable copy): libkvm builds SLB entries only for `kernbase..kernend`
//! and for the direct map up to `bitmapsize * 8` pages, so it cannot read
//! a kernel that runs at its link address (mapped 1:1, "pre-dmap
//! execution" in `moea64_setup_direct_map`) and its page walk stops at a
//! direct-map segment past that bound (version 2 numbers bitmap bits
//! through dump_avail, so RAM reaches further); here every kernel segment's
//! VSID is computed. libkvm rebuilds an entry's address with the VSID's
//! bits where a table of fewer than 2^16 groups has no hash bits, reports
//! read-only pages writable and no-execute pages executable, and gives
//! 16 MiB pages no file offset; here the address is moea64's
//! (`moea64_vpn_from_pte`), the protection the PP and N bits', and the
//! offset that of the page's first byte. Header, dump_avail and bitmap
//! are read in the kernel's byte order (libkvm: big-endian only).

use crate::error::{Error, Fault, Result};
use crate::image::{uint, Image};
use crate::minidump::{Minidump, Order, Sizes};
use crate::pagetable::{Mapping, Step, Table};
use crate::physmem::PhysMem;
use crate::registry::{Backend, Probe, Setup, Translator, BACKENDS};
use crate::space::{Mmu, Paged};
use crate::walk::{prot, DirectMap, Page};
use linkme::distributed_slice;
use object::elf::EM_PPC64;

/// `MINIDUMP_MAGIC` (sys/powerpc/include/minidump.h) in `char magic[32]`.
const MAGIC: &[u8; 27] = b"minidump FreeBSD/powerpc64\0";
/// `PPC64_KERNBASE` (lib/libkvm/kvm_powerpc64.h): where the kernel is linked.
pub const PPC64_KERNBASE: u64 = 0x10_0100;
/// `PPC64_MMU_G5` and `PPC64_MMU_PHYP`: moea64 native and under a hypervisor.
const MMU_G5: &[u8] = b"mmu_g5";
const MMU_PHYP: &[u8] = b"mmu_phyp";

/// Page and large-page shifts (`PPC64_PAGE_SHIFT`, `LP_PAGE_SHIFT`).
const PAGE_SHIFT: u32 = 12;
const LP_SHIFT: u32 = 24;
/// Segments are 256 MiB (`SEGMENT_LENGTH`, `SLBE_ESID_SHIFT`).
const SEG_SHIFT: u32 = 28;
/// `KERNEL_VSID_BIT` (sys/powerpc/include/slb.h): set in every kernel VSID.
const KERNEL_VSID_BIT: u64 = 1 << 36;
/// `VSID_HASH_MASK`/`PTE_HASH_MASK`: the VSID bits the hash uses.
const HASH_MASK: u64 = 0x7f_ffff_ffff;
/// The hash of the smallest table moea64 builds (and the ISA allows):
/// 2^11 PTEGs; the low 11 bits of the page index come from the hash,
/// the rest from the PTE's AVA (`EA_PAGELO_MASK`, mmu_oea64_native.c).
const MIN_PTEGS: u64 = 1 << 11;
const PAGELO_MASK: u64 = 0x7ff;

// PTE bits (sys/powerpc/include/pte.h; kvm_minidump_powerpc64_hpt.c).
/// `LPTE_VALID`, `LPTE_HID` (secondary hash), `LPTE_BIG` (16 MiB page).
const LPTE_VALID: u64 = 1;
const LPTE_HID: u64 = 2;
const LPTE_BIG: u64 = 4;
/// `LPTEH_B_MASK`: segment size, 0 for 256 MiB segments.
const LPTE_B_MASK: u64 = 0xc000_0000_0000_0000;
/// `PTEH_AVA_VSID_MASK` and the AVA's page bits (`PTEH_AVA_PAGE_MASK`).
const AVA_VSID_MASK: u64 = 0x3fff_ffff_ffff_f000;
const AVA_PAGE_MASK: u64 = 0xf80;
/// `PTEL_PA_MASK`, `PTEL_LP_PA_MASK`.
const PA_MASK: u64 = 0x0fff_ffff_ffff_f000;
const LP_PA_MASK: u64 = 0x0fff_ffff_ff00_0000;
/// `LPTE_NOEXEC`; the PP bits (`LPTE_PP`): 0b11 (`LPTE_BR`) is read-only.
const LPTE_NOEXEC: u64 = 4;
const LPTE_PP: u64 = 3;
const LPTE_BR: u64 = 3;

/// `KERNEL_VSID(esid)` (sys/powerpc/include/slb.h).
#[inline(always)]
fn kernel_vsid(esid: u64) -> u64 {
    ((((esid << 8) | (esid >> 28)).wrapping_mul(0x13bb)) & (KERNEL_VSID_BIT - 1)) | KERNEL_VSID_BIT
}

/// The ESID whose kernel VSID is `vsid`: `KERNEL_VSID` is a bijection of
/// 36-bit ESIDs (a rotation by 8, then a product by an odd number modulo
/// 2^36), undone here.
fn kernel_esid(vsid: u64) -> u64 {
    const M: u64 = KERNEL_VSID_BIT - 1;
    // The inverse of 0x13bb modulo 2^64 (Newton's iteration), then mod 2^36.
    let mut inv: u64 = 0x13bb;
    for _ in 0..6 {
        inv = inv.wrapping_mul(2u64.wrapping_sub(0x13bbu64.wrapping_mul(inv)));
    }
    let x = (vsid & M).wrapping_mul(inv) & M;
    ((x >> 8) | (x << 28)) & M
}

/// The minidump header (sys/powerpc/include/minidump.h), in the kernel's
/// byte order: offsets of `struct minidumphdr`.
mod hdr {
    pub const MMU_NAME: usize = 32;
    pub const VERSION: usize = 64;
    pub const MSGBUFSIZE: usize = 68;
    pub const BITMAPSIZE: usize = 72;
    pub const PMAPSIZE: usize = 76;
    // kernbase (80) and kernend (88) bound the kernel map; libkvm builds
    // SLB entries from them, every kernel segment's VSID is known here.
    pub const DMAPBASE: usize = 96;
    pub const DMAPEND: usize = 104;
    // `int hw_direct_map` at 112 (then 4 bytes of padding) only says
    // whether the direct map has 16 MiB pages in the HPT.
    pub const STARTKERNEL: usize = 120;
    pub const ENDKERNEL: usize = 128;
    /// Version 2.
    pub const DUMPAVAILSIZE: usize = 136;
    pub const SIZE: usize = 144;
}

fn probe_be(p: &Probe<'_>) -> bool {
    p.kernel_is(true, true, EM_PPC64) && p.core_starts_with(MAGIC)
}

fn probe_le(p: &Probe<'_>) -> bool {
    p.kernel_is(true, false, EM_PPC64) && p.core_starts_with(MAGIC)
}

fn native_be() -> bool {
    cfg!(all(target_arch = "powerpc64", target_endian = "big"))
}

fn native_le() -> bool {
    cfg!(all(target_arch = "powerpc64", target_endian = "little"))
}

#[distributed_slice(BACKENDS)]
static POWERPC64_MINIDUMP: Backend = Backend {
    name: "powerpc64 minidump",
    probe: probe_be,
    initvtop: |s| initvtop(s, true),
    native: native_be,
};

#[distributed_slice(BACKENDS)]
static POWERPC64LE_MINIDUMP: Backend = Backend {
    name: "powerpc64le minidump",
    probe: probe_le,
    initvtop: |s| initvtop(s, false),
    native: native_le,
};

struct Ppc64Minidump {
    mem: Minidump,
    /// File offset of the HPT and its PTEG count minus one (`hmask`).
    hpt_off: u64,
    hmask: u64,
    /// HPT entries are big-endian.
    hpt_be: bool,
    dmap: DirectMap,
    kerndisp: u64,
}

fn initvtop(s: &Setup<'_>, big_endian: bool) -> Result<Box<dyn Translator>> {
    let what = if big_endian {
        "powerpc64 minidump"
    } else {
        "powerpc64le minidump"
    };
    let bad = |m: String| Error::BadCore(format!("{what}: {m}"));
    let h: [u8; hdr::SIZE] = s.core.header(0).ok_or_else(|| {
        bad(format!(
            "{} bytes is too short for the {}-byte header",
            s.core.len(),
            hdr::SIZE
        ))
    })?;
    let u32_at = |o: usize| uint(&h[o..o + 4], big_endian) as u32;
    let u64_at = |o: usize| uint(&h[o..o + 8], big_endian);
    let version = u32_at(hdr::VERSION);
    if !(1..=2).contains(&version) {
        return Err(bad(format!(
            "unknown version {version} (expected 1 or 2, in the {} kernel's byte order)",
            if big_endian { "big-endian" } else { "little-endian" }
        )));
    }
    let name = &h[hdr::MMU_NAME..hdr::MMU_NAME + 32];
    let name = &name[..name.iter().position(|&c| c == 0).unwrap_or(32)];
    // moea64_native keeps the HPT in the MMU's byte order, big-endian
    // (be64toh in mmu_oea64_native.c), and dumps it as it is; mmu_phyp
    // reads each entry with H_READ into host-order words
    // (mphyp_dump_pmap, sys/powerpc/pseries/mmu_phyp.c).
    let hpt_be = match name {
        MMU_G5 => true,
        MMU_PHYP => big_endian,
        _ => {
            return Err(bad(format!(
                "unsupported MMU {:?} in mmu_name (mmu_g5 and mmu_phyp are hashed page \
                 tables; libkvm reads no other)",
                String::from_utf8_lossy(name)
            )))
        }
    };
    let pmap = u64::from(u32_at(hdr::PMAPSIZE));
    let ptegs = pmap / 128;
    if pmap % 128 != 0 || !ptegs.is_power_of_two() || ptegs < MIN_PTEGS {
        return Err(bad(format!(
            "pmapsize {pmap:#x} is not a hashed page table of 2^n 128-byte PTE groups, \
             n >= 11"
        )));
    }
    let (dmapbase, dmapend) = (u64_at(hdr::DMAPBASE), u64_at(hdr::DMAPEND));
    if dmapend < dmapbase {
        return Err(bad(format!(
            "direct map [{dmapbase:#x}, {dmapend:#x}] is reversed"
        )));
    }
    let (start, end) = (u64_at(hdr::STARTKERNEL), u64_at(hdr::ENDKERNEL));
    if end < start {
        return Err(bad(format!(
            "kernel image [startkernel {start:#x}, endkernel {end:#x}) is reversed"
        )));
    }
    let sizes = Sizes {
        page_size: 1 << PAGE_SHIFT,
        msgbuf: u32_at(hdr::MSGBUFSIZE).into(),
        dump_avail: if version >= 2 {
            u32_at(hdr::DUMPAVAILSIZE).into()
        } else {
            0
        },
        bitmap: u32_at(hdr::BITMAPSIZE).into(),
        pmap,
        // The bitmap is an array of 64-bit words (uint64_t in version 1,
        // long in version 2) in the kernel's byte order.
        order: Order {
            big_endian,
            long: 8,
        },
    };
    let (layout, hpt_off) = sizes
        .layout(s.core, "hashed page table")
        .map_err(|e| e.within(what))?;
    Ok(Paged::boxed(Ppc64Minidump {
        mem: Minidump::new(s.core, layout).map_err(|e| e.within(what))?,
        hpt_off,
        hmask: ptegs - 1,
        hpt_be,
        // Inclusive dmapend (DMAP_MAX_ADDRESS); `va & ~dmapbase` is the
        // physical address in libkvm, `va - dmapbase` for any valid base.
        dmap: DirectMap {
            base: dmapbase,
            end: dmapend.checked_add(1).ok_or_else(|| {
                Error::BadCore(format!(
                    "{what}: dmapend {dmapend:#x} is the last address: no direct map ends there"
                ))
            })?,
            phys: 0,
        },
        kerndisp: start.wrapping_sub(PPC64_KERNBASE),
    }))
}

/// A hashed-page-table entry.
#[derive(Clone, Copy)]
struct Pte {
    hi: u64,
    lo: u64,
}

impl Ppc64Minidump {
    /// Entry `ptex` of the HPT (checked to lie in the file at open).
    #[inline(always)]
    /// Reports entry `ptex` of the table to a page walk if it maps a
    /// kernel page (valid, a kernel VSID, a 256 MiB segment); returns
    /// what `f` says (true for an entry it is not given).
    fn visit(&self, pte: Pte, ptex: u64, f: &mut dyn FnMut(&Page) -> bool) -> bool {
        let vsid = (pte.hi & AVA_VSID_MASK) >> 12;
        if pte.hi & LPTE_VALID == 0 || vsid & KERNEL_VSID_BIT == 0 || pte.hi & LPTE_B_MASK != 0 {
            return true;
        }
        let (pa, len) = if pte.hi & LPTE_BIG != 0 {
            (pte.lo & LP_PA_MASK, 1 << LP_SHIFT)
        } else {
            (pte.lo & PA_MASK, 1 << PAGE_SHIFT)
        };
        f(&Page {
            paddr: pa,
            kmap_vaddr: self.ea_of(pte, ptex),
            dmap_vaddr: self.dmap.va_of(pa),
            prot: entry_prot(pte.lo),
            offset: self.mem.locate(pa).map(|s| s.off),
            len,
        })
    }

    fn pte(&self, image: &Image, ptex: u64) -> Option<Pte> {
        let b: [u8; 16] = image.array(self.hpt_off + ptex * 16)?;
        Some(Pte {
            hi: uint(&b[..8], self.hpt_be),
            lo: uint(&b[8..], self.hpt_be),
        })
    }

    /// The address a read of `va` translates (libkvm's kvatop: below the
    /// direct map, link-time addresses are displaced to run time).
    #[inline(always)]
    fn displaced(&self, va: u64) -> u64 {
        if va < self.dmap.base {
            va.wrapping_add(self.kerndisp)
        } else {
            va
        }
    }

    /// Searches the PTEGs of `ea` for its PTE, as the MMU does: the
    /// primary hash, then the secondary (`pte_search`). Kernel segments
    /// outside the direct map have 4 KiB base pages (SLB L clear,
    /// `moea64_bootstrap_slb_prefault(va, 0)`); the direct map, whose
    /// segments have 16 MiB pages when `hw_direct_map`, is translated
    /// linearly before a search.
    #[inline(always)]
    fn search(
        &self,
        image: &Image,
        ea: u64,
        trace: &mut impl FnMut(Step),
    ) -> Result<(u64, Pte), Fault> {
        let vsid = kernel_vsid(ea >> SEG_SHIFT);
        let page = (ea & ((1 << SEG_SHIFT) - 1)) >> PAGE_SHIFT;
        // The AVA holds the top 5 of the 16 page-index bits
        // (AVA_PAGE_SHIFT(12) = 0, VA_PAGE_SHIFT(12) = 11).
        let hash = (vsid & HASH_MASK) ^ page;
        for hid in [0, LPTE_HID] {
            let h = if hid == 0 { hash } else { !hash & HASH_MASK };
            let pteg = (h & self.hmask) << 3;
            for ptex in pteg..pteg + 8 {
                let Some(pte) = self.pte(image, ptex) else {
                    return Err(Fault::BadPageTable(format!(
                        "hashed page table entry {ptex} lies past the end of the core file"
                    )));
                };
                if pte.hi & LPTE_HID != hid
                    || pte.hi & LPTE_VALID == 0
                    || pte.hi & LPTE_B_MASK != 0
                    || (pte.hi & AVA_VSID_MASK) >> 12 != vsid
                    || (pte.hi & AVA_PAGE_MASK) >> 7 != page >> 11
                    || pte.hi & LPTE_BIG != 0
                {
                    continue;
                }
                trace(Step {
                    level: "PTEH",
                    table: Table::File(self.hpt_off + ptex * 16),
                    index: ptex,
                    entry: pte.hi,
                });
                trace(Step {
                    level: "PTEL",
                    table: Table::File(self.hpt_off + ptex * 16 + 8),
                    index: ptex,
                    entry: pte.lo,
                });
                return Ok((ptex, pte));
            }
        }
        Err(no_pte(vsid, hash & self.hmask, !hash & self.hmask))
    }

    /// The effective address a kernel PTE at `ptex` maps (the inverse of
    /// the hash, as moea64_vpn_from_pte does, with the ESID from the
    /// kernel VSID).
    fn ea_of(&self, pte: Pte, ptex: u64) -> u64 {
        let vsid = (pte.hi & AVA_VSID_MASK) >> 12;
        let mut slot = ptex & !7;
        if pte.hi & LPTE_HID != 0 {
            slot ^= self.hmask << 3;
        }
        let pagelo = ((vsid & HASH_MASK) ^ (slot >> 3)) & PAGELO_MASK;
        // The 16-bit 4 KiB page index within the segment: AVA bits 7-11
        // are its top five bits.
        let pidx = if pte.hi & LPTE_BIG != 0 {
            // A 16 MiB page: the AVA holds its four index bits (the low
            // bit of the five is the large page's own bit 23, always 0).
            (pte.hi & AVA_PAGE_MASK) >> 7 << 11
        } else {
            ((pte.hi & AVA_PAGE_MASK) >> 7 << 11) | pagelo
        };
        (kernel_esid(vsid) << SEG_SHIFT) | (pidx << PAGE_SHIFT)
    }
}

#[cold]
#[inline(never)]
fn no_pte(vsid: u64, primary: u64, secondary: u64) -> Fault {
    Fault::Unmapped(format!(
        "no valid hashed page table entry for kernel VSID {vsid:#x} in its primary PTE group \
         {primary:#x} or secondary {secondary:#x}"
    ))
}

/// `VM_PROT_*` of a PTE: read-only when PP is 0b11 (`LPTE_BR`), executable
/// unless `LPTE_NOEXEC`. (libkvm's `entry_to_prot` tests `LPTE_RW`, a bit
/// `LPTE_BR` also has, and reports execute when `LPTE_NOEXEC` is set.)
fn entry_prot(lo: u64) -> u8 {
    let mut p = prot::READ;
    if lo & LPTE_PP != LPTE_BR {
        p |= prot::WRITE;
    }
    if lo & LPTE_NOEXEC == 0 {
        p |= prot::EXECUTE;
    }
    p
}

impl Mmu for Ppc64Minidump {
    type Mem = Minidump;

    fn mem(&self) -> &Minidump {
        &self.mem
    }

    /// Displacement makes the page of `va` start wherever the displaced
    /// address's page does.
    const PAGES: bool = false;

    #[inline]
    fn translate_traced(
        &self,
        image: &Image,
        va: u64,
        trace: &mut impl FnMut(Step),
    ) -> Result<Mapping, Fault> {
        let ea = self.displaced(va);
        let in_page = ea & ((1 << PAGE_SHIFT) - 1);
        let pa = if let Some(pa) = self.dmap.pa_of(ea) {
            pa
        } else {
            // Kernel segments use 4 KiB pages (the direct map, the one
            // place with 16 MiB pages, is translated above).
            let (_, pte) = self.search(image, ea, trace)?;
            (pte.lo & PA_MASK) | in_page
        };
        Ok(Mapping {
            pa,
            first: va.wrapping_sub(in_page),
            size: 1 << PAGE_SHIFT,
            entry: 0,
        })
    }

    /// Every valid kernel entry of the HPT, in table order
    /// (`ppc64mmu_hpt_walk_pages`): its effective address, its page
    /// (4 KiB or 16 MiB) and its direct-map address.
    fn walk_pages(&self, image: &Image, f: &mut dyn FnMut(&Page) -> bool) -> Result<bool> {
        // The table read 4 KiB at a time (one pread each when the core is
        // not mapped), its entries in order.
        let (mut ptex, mut going) = (0u64, true);
        let size = (self.hmask + 1) * 8 * 16;
        image.for_each_piece(self.hpt_off, size, 4096, |piece| {
            for b in piece.chunks_exact(16) {
                if !going {
                    return;
                }
                let pte = Pte {
                    hi: uint(&b[..8], self.hpt_be),
                    lo: uint(&b[8..], self.hpt_be),
                };
                going = self.visit(pte, ptex, f);
                ptex += 1;
            }
        });
        Ok(going)
    }

    fn kerndisp(&self) -> i64 {
        self.kerndisp as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_vsid_inverts() {
        for esid in [0u64, 1, 0xe_0000_0000, 0xc_0000_0000, 0xf_ffff_ffff, 0x1234_5678] {
            let esid = esid & (KERNEL_VSID_BIT - 1);
            assert_eq!(kernel_esid(kernel_vsid(esid)), esid, "{esid:#x}");
        }
    }
}
