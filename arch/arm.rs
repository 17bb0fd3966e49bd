//! arm (32-bit) ELF full dumps (`lib/libkvm/kvm_arm.c`): a walk of the
//! kernel's short-descriptor translation tables (ARM ARM B3.5) from the L1
//! table `kernel_l1pa` names: 1 MiB sections and 16 MiB supersections in
//! L1, coarse L2 tables of 64 KiB large and 4 KiB small pages.
//!
//! The MMU description and the entry constants here are shared with the
//! arm minidump backend. `kvm_kerndisp` is 0, as in FreeBSD.

use crate::elfcore::ElfCore;
use crate::error::{Error, Fault, Result};
use crate::image::Image;
use crate::pagetable::{check_32bit, Bits, Format, Frame, Level, Mapping, Root, Step, Wide, WideFormat};
use crate::physmem::PhysMem;
use crate::registry::{Backend, Probe, Setup, Translator, BACKENDS};
use crate::space::{Mmu, Paged};
use crate::walk::{prot, Page};
use linkme::distributed_slice;
use object::elf::EM_ARM;

// Descriptor types, sizes and frames: lib/libkvm/kvm_arm.h (ARM_L1_*,
// ARM_L2_*), asserted there against sys/arm/include/pte-v4.h and pte-v6.h.
/// 4 KiB (`ARM_PAGE_SIZE`).
pub const PAGE_SIZE: u64 = 4096;
/// The L1 table: 4096 four-byte entries (`ARM_L1_TABLE_SIZE`), 16 KiB
/// aligned (the TTBR ignores bits 0-13).
pub const L1_TABLE_SIZE: u64 = 0x4000;
/// Descriptor type bits of L1 and L2 entries (`ARM_L1_TYPE_MASK`,
/// `ARM_L2_TYPE_MASK`).
pub const TYPE_MASK: u64 = 0x3;
/// L1: a coarse L2 table (`ARM_L1_TYPE_C`).
pub const L1_TYPE_C: u64 = 0x1;
/// L1: a section or supersection (`ARM_L1_TYPE_S`).
pub const L1_TYPE_S: u64 = 0x2;
/// L1 section: a 16 MiB supersection (`L1_S_SUPERSEC`, pte-v4.h and
/// pte-v6.h).
pub const L1_S_SUPERSEC: u64 = 1 << 18;
/// Frame of a section (`ARM_L1_S_ADDR_MASK`).
pub const L1_S_FRAME: u64 = 0xfff0_0000;
/// Frame of a supersection (`L1_SUP_FRAME`; bits 20-23 and 5-8 hold
/// physical-address bits 32-39, which FreeBSD never sets).
pub const L1_SUP_FRAME: u64 = 0xff00_0000;
/// Frame of a coarse L2 table (`ARM_L1_C_ADDR_MASK`): 1 KiB aligned.
pub const L1_C_FRAME: u64 = 0xffff_fc00;
/// L2: a 64 KiB large page (`ARM_L2_TYPE_L`).
pub const L2_TYPE_L: u64 = 0x1;
// L2 types 2 (`ARM_L2_TYPE_S`) and 3 (`ARM_L2_TYPE_T`: an ARMv4 1 KiB
// tiny page, an XScale extended small page; ARMv6: a small page with XN in
// bit 0) are small pages to the walker.
/// Frame of a large page (`ARM_L2_L_FRAME`).
pub const L2_L_FRAME: u64 = 0xffff_0000;
/// Frame of a small page (`ARM_L2_S_FRAME`).
pub const L2_S_FRAME: u64 = 0xffff_f000;
/// `KERNBASE` (sys/arm/include/vmparam.h), libkvm's default when the
/// kernel has no `kernbase` symbol.
pub const KERNBASE: u64 = 0xc000_0000;

// Protection bits. ARMv6/v7 (pte-v6.h): small pages keep XN in bit 0
// (`L2_NX`) and FreeBSD's software read-only bit in TEX[1] (`PTE2_RO` =
// `L2_TEX1`, bit 7); sections keep XN in bit 4 (`L1_S_NX`) and read-only in
// TEX[1] (`PTE1_RO` = `L1_S_TEX1`, bit 13); large pages keep XN in bit 15
// and TEX in bits 12-14 (ARM ARM B3.5.1), so TEX[1] is bit 13 there too.
// ARMv4/v5 (pte-v4.h) have no XN: access permissions AP in bits 10-11 of a
// section and 4-5 (subpage 0) of a small or large page, AP_W (1) writable.
/// `PTE2_NX`.
pub const PTE2_NX: u64 = 1 << 0;
/// `PTE2_RO` (`L2_TEX1`).
pub const PTE2_RO: u64 = 1 << 7;
/// `PTE1_NX` (`L1_S_NX`).
pub const PTE1_NX: u64 = 1 << 4;
/// `PTE1_RO` (`L1_S_TEX1`).
pub const PTE1_RO: u64 = 1 << 13;
/// XN of a large page.
pub const L2_L_XN: u64 = 1 << 15;
/// TEX[1] of a large page.
pub const L2_L_TEX1: u64 = 1 << 13;
/// `L2_AP0(AP_W)` (`ARM_L2_S_PROT_W` in kvm_arm.h).
pub const L2_S_PROT_W: u64 = 1 << 4;
/// `L1_S_AP(AP_W)`.
pub const L1_S_PROT_W: u64 = 1 << 10;

/// The two page-table formats (`MINIDUMP_MMU_FORMAT_V4` and `_V6` in
/// sys/arm/include/minidump.h): what the protection bits mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pte {
    /// ARMv4/v5, `pmap-v4.c`: AP bits, no execute-never.
    V4,
    /// ARMv6/v7, `pmap-v6.c`: read-only and execute-never bits.
    V6,
}

/// A descriptor whose type bits are not 0 (fault).
const PRESENT: Bits = Bits {
    mask: TYPE_MASK,
    value: 0,
    negate: true,
    any: 0,
};

/// The short-descriptor MMU as FreeBSD uses it, for both formats: an L1
/// entry of type 2 maps a section (a supersection with `L1_S_SUPERSEC`),
/// type 1 points to a coarse table; in a coarse table type 1 is a large
/// page and types 2 and 3 small pages (ARMv6: 3 is a small page with XN;
/// ARMv4 XScale: an extended small page, which kvm_arm.c also reads as
/// small; FreeBSD builds no fine tables and no tiny pages). An L1 entry
/// of type 3 (ARMv4: a fine table; ARMv6: reserved) points to nothing
/// FreeBSD builds and is refused.
pub static MMU: WideFormat<2> = WideFormat {
    format: Format {
        entry_size: 4,
        big_endian: false,
        pointer: Bits::eq(TYPE_MASK, L1_TYPE_C),
        table: Frame::mask(L1_C_FRAME),
        levels: [
            Level {
                name: "L1",
                shift: 20,
                bits: 12,
                valid: PRESENT,
                leaf: Bits::eq(TYPE_MASK, L1_TYPE_S),
                frame: Frame::mask(L1_S_FRAME),
            },
            Level {
                name: "L2",
                shift: 12,
                bits: 8,
                valid: PRESENT,
                leaf: Bits::NEVER,
                frame: Frame::mask(L2_S_FRAME),
            },
        ],
    },
    wide: [
        Wide {
            test: Bits::eq(TYPE_MASK | L1_S_SUPERSEC, L1_TYPE_S | L1_S_SUPERSEC),
            shift: 24,
            frame: Frame::mask(L1_SUP_FRAME),
        },
        LARGE_PAGE,
    ],
};

/// 64 KiB large pages: 16 repeated L2 entries.
pub const LARGE_PAGE: Wide = Wide {
    test: Bits::eq(TYPE_MASK, L2_TYPE_L),
    shift: 16,
    frame: Frame::mask(L2_L_FRAME),
};

/// `VM_PROT_*` of a leaf of a full dump's tables, as the MMU reads its
/// permissions (`size`: the level-sized part the entry maps, 1 MiB for L1).
/// FreeBSD has no page walk for arm full dumps; this follows the
/// descriptor formats (see the bit constants above).
pub fn table_prot(pte: Pte, size: u64, e: u64) -> u8 {
    let section = size > PAGE_SIZE;
    let large = !section && e & TYPE_MASK == L2_TYPE_L;
    match pte {
        Pte::V4 => {
            let w = if section { L1_S_PROT_W } else { L2_S_PROT_W };
            prot::READ | prot::EXECUTE | if e & w != 0 { prot::WRITE } else { 0 }
        }
        Pte::V6 => {
            let (ro, nx) = match (section, large) {
                (true, _) => (PTE1_RO, PTE1_NX),
                (false, true) => (L2_L_TEX1, L2_L_XN),
                (false, false) => (PTE2_RO, PTE2_NX),
            };
            let mut p = prot::READ;
            if e & ro == 0 {
                p |= prot::WRITE;
            }
            if e & nx == 0 {
                p |= prot::EXECUTE;
            }
            p
        }
    }
}

/// True for a little-endian arm kernel image (`_kvm_probe_elf_kernel(kd,
/// ELFCLASS32, EM_ARM)`; big-endian armeb kernels are not read).
pub fn is_arm_kernel(p: &Probe<'_>) -> bool {
    p.kernel_is(false, false, EM_ARM)
}

fn probe(p: &Probe<'_>) -> bool {
    is_arm_kernel(p)
        && p.core_elf()
            .is_some_and(|c| !c.is_64 && !c.big_endian && c.machine == EM_ARM)
}

/// Host is little-endian 32-bit arm (`_arm_native`: `__arm__` and the
/// kernel's byte order).
pub fn native() -> bool {
    cfg!(all(target_arch = "arm", target_endian = "little"))
}

#[distributed_slice(BACKENDS)]
static ARM_ELF: Backend = Backend {
    name: "arm ELF full dump",
    probe,
    initvtop,
    native,
};

struct ArmElf {
    core: ElfCore,
    /// Physical address of the L1 table.
    l1: u64,
    /// How to read protection bits.
    pte: Pte,
}

fn initvtop(s: &Setup<'_>) -> Result<Box<dyn Translator>> {
    let core = ElfCore::parse(s.core)?;
    let var = s.require("kernel_l1pa")?;
    check_32bit(var, "arm").map_err(|_| {
        Error::BadKernel(format!("kernel_l1pa ({var:#x}) is not a 32-bit address"))
    })?;
    let (l1, pte) = find_l1(&core, s, var)?;
    Ok(Paged::boxed(ArmElf { core, l1, pte }))
}

/// Where the kernel was loaded: `(kernbase, physaddr)`, virtual and
/// physical, and what said so.
fn load_addresses(core: &ElfCore, s: &Setup<'_>) -> Result<((u64, u64), &'static str)> {
    if let Some(d) = core.dump_delta {
        return Ok((d, "PT_DUMP_DELTA"));
    }
    // kvm_arm.c: the kernbase symbol (KERNBASE when a native libkvm lacks
    // it) and the physaddr symbol.
    let kernbase = (s.lookup)("kernbase").unwrap_or(KERNBASE);
    let physaddr = s.require("physaddr")?;
    Ok(((kernbase, physaddr), "the kernbase and physaddr symbols"))
}

/// 1 MiB: kernels are loaded at section-aligned physical addresses
/// (they are mapped with sections, `pmap_bootstrap_prepare`).
const SECTION: u64 = 1 << 20;

/// Finds the L1 table and the format of its entries.
///
/// kvm_arm.c reads `kernel_l1pa` at physical "symbol - kernbase +
/// physaddr", `(kernbase, physaddr)` from `PT_DUMP_DELTA` or else from
/// the kernel's symbols, and uses the value read as the L1 table's
/// physical address. That is what ARMv4/v5 kernels store (`pmap-v4.c`:
/// `kernel_l1pa = l1pt->pv_pa`), but ARMv6/v7 kernels store the table's
/// *virtual* address (`pmap-v6.c`: `kernel_l1pa = (vm_paddr_t)kern_pt1`,
/// `kern_pt1 = KERNEL_P2V(base_pt1)`), which is converted back with the
/// same displacement here. A candidate is accepted only if the table it
/// names maps `kernel_l1pa`'s own address back to where it was read.
/// Without `PT_DUMP_DELTA`, the physaddr symbol is the address the kernel
/// was linked for; if the loader put it elsewhere, every 1 MiB
/// displacement the file holds is tried (as for amd64).
fn find_l1(core: &ElfCore, s: &Setup<'_>, var: u64) -> Result<(u64, Pte)> {
    let image = s.core;
    let ((kernbase, physaddr), from) = load_addresses(core, s)?;
    // A table at `pa` of `pte` format names a root if it maps the
    // variable, read at `at`, back to `at`.
    let check = |at: u64, kernbase: u64, physaddr: u64| -> Option<(u64, Pte)> {
        let value = u64::from(image.le32(core.locate(at).filter(|s| s.len >= 4)?.off)?);
        // ARMv6/v7: a kernel virtual address; ARMv4/v5: physical.
        let as_va = value
            .checked_sub(kernbase)
            .and_then(|d| d.checked_add(physaddr))
            .map(|pa| (pa, Pte::V6));
        as_va
            .into_iter()
            .chain([(value, Pte::V4)])
            .find(|&(l1, _)| {
                l1 != 0
                    && l1 % L1_TABLE_SIZE == 0
                    && MMU
                        .translate_traced(image, core, Root::Phys(l1), var, &mut |_| {})
                        .is_ok_and(|m| m.pa == at)
            })
    };
    let at = |kernbase: u64, physaddr: u64| {
        var.checked_sub(kernbase)?
            .checked_add(physaddr)
            .filter(|a| a >> 32 == 0)
    };
    let linked = at(kernbase, physaddr);
    if let Some(found) = linked.and_then(|a| check(a, kernbase, physaddr)) {
        return Ok(found);
    }
    if core.dump_delta.is_none() {
        // Only memory the file holds can hold the variable: a hostile
        // segment size cannot make this scan long.
        // Each 1 MiB slot of the 32-bit space is tried once, however many
        // (overlapping) segments name it.
        let into = var.checked_sub(kernbase).unwrap_or(u64::MAX);
        let mut tried = [0u64; (1 << 32) / SECTION as usize / 64];
        for (start, end) in core.ranges_in_file(image.len()) {
            let mut a = (start & !(SECTION - 1)) | (into % SECTION);
            if a < start {
                a += SECTION;
            }
            while a < end.min(1 << 32) {
                let slot = (a / SECTION) as usize;
                if tried[slot / 64] & 1 << (slot % 64) == 0 {
                    tried[slot / 64] |= 1 << (slot % 64);
                    if let Some(found) = a.checked_sub(into).and_then(|p| check(a, kernbase, p))
                    {
                        return Ok(found);
                    }
                }
                a += SECTION;
            }
        }
    }
    let place = match linked {
        Some(a) => format!("physical {a:#x}"),
        None => "no physical address".into(),
    };
    Err(Error::BadCore(format!(
        "cannot find the kernel page tables: kernel_l1pa ({var:#x}) at {place} (kernbase \
         {kernbase:#x}, physaddr {physaddr:#x} from {from}) names no L1 table that maps it \
         back{} (does the kernel match the core?)",
        if core.dump_delta.is_none() {
            ", nor at any 1 MiB displacement in the dump"
        } else {
            ""
        }
    )))
}

impl Mmu for ArmElf {
    type Mem = ElfCore;

    fn mem(&self) -> &ElfCore {
        &self.core
    }

    #[inline]
    fn translate_traced(
        &self,
        image: &Image,
        va: u64,
        trace: &mut impl FnMut(Step),
    ) -> Result<Mapping, Fault> {
        check_32bit(va, "arm")?;
        MMU.translate_traced(image, &self.core, Root::Phys(self.l1), va, trace)
    }

    /// Walks the tables from the L1 table (arm has no direct map; FreeBSD
    /// does not walk full dumps): each entry as the part it maps, 1 MiB
    /// for an L1 entry, 4 KiB for an L2 entry (the 16 entries of a
    /// supersection or large page report its 16 parts).
    fn walk_pages(&self, image: &Image, f: &mut dyn FnMut(&Page) -> bool) -> Result<bool> {
        let pte = self.pte;
        MMU.walk(image, &self.core, Root::Phys(self.l1), 64, &mut |va, m| {
            f(&Page {
                paddr: m.pa,
                kmap_vaddr: va,
                dmap_vaddr: 0,
                prot: table_prot(pte, m.size, m.entry),
                offset: self.core.file_offset(image, m.pa),
                len: m.size,
            })
        })
        .map_err(|fault| Error::BadCore(format!("page walk: {fault}")))
    }
}
