//! i386 ELF full dumps (`lib/libkvm/kvm_i386.c`): a two-level walk from the
//! kernel's page directory (non-PAE, 4 MiB superpages) or a three-level walk
//! from its PDPT (PAE, 2 MiB superpages, 64-bit physical addresses).
//!
//! The MMU descriptions here are shared with the i386 minidump backend.
//! `kvm_kerndisp` is 0, as in FreeBSD.

use crate::elfcore::ElfCore;
use crate::error::{Error, Fault, Result};
use crate::image::Image;
use crate::pagetable::{check_32bit, Bits, Format, Frame, Level, Mapping, Root, Step};
use crate::physmem::PhysMem;
use crate::registry::{Backend, Probe, Setup, Translator, BACKENDS};
use crate::space::{Mmu, Paged};
use crate::walk::{prot, Page};
use linkme::distributed_slice;
use object::elf::EM_386;

// Entry bits and frame masks: lib/libkvm/kvm_i386.h (I386_PG_V, I386_PG_PS,
// I386_PG_FRAME, I386_PG_PS_FRAME and their _PAE forms), which assert them
// against sys/i386/include/pmap.h. The PAE masks clear bits 52-63, so NX
// (bit 63) is stripped by the mask.
/// Present.
pub const PG_V: u64 = 0x001;
/// Page size: the PDE maps a 4 MiB (non-PAE) or 2 MiB (PAE) page.
pub const PG_PS: u64 = 0x080;
/// Non-PAE frame of a 4 KiB page or of a page-table page.
pub const PG_FRAME: u64 = 0xffff_f000;
/// Non-PAE frame of a 4 MiB page (bits 13-21, PSE-36 and PAT, are not
/// address bits for FreeBSD).
pub const PG_PS_FRAME: u64 = 0xffc0_0000;
/// PAE frame of a 4 KiB page or of a table page.
pub const PG_FRAME_PAE: u64 = 0x000f_ffff_ffff_f000;
/// PAE frame of a 2 MiB page.
pub const PG_PS_FRAME_PAE: u64 = 0x000f_ffff_ffe0_0000;
/// 4 KiB (`I386_PAGE_SIZE`).
pub const PAGE_SIZE: u64 = 4096;
/// Writable.
pub const PG_RW: u64 = 0x002;
/// No-execute (PAE only).
pub const PG_NX: u64 = 1 << 63;

/// `VM_PROT_*` of a leaf entry (`_i386_entry_to_prot`); without PAE every
/// page is executable.
pub fn entry_prot(e: u64) -> u8 {
    let mut p = prot::READ;
    if e & PG_RW != 0 {
        p |= prot::WRITE;
    }
    if e & PG_NX == 0 {
        p |= prot::EXECUTE;
    }
    p
}

const VALID: Bits = Bits::eq(PG_V, PG_V);
const LARGE: Bits = Bits::eq(PG_PS, PG_PS);

/// Non-PAE page-table level: 1024 four-byte PTEs (`I386_NPTEPG`).
pub const PTE_NOPAE: Level = Level {
    name: "PTE",
    shift: 12,
    bits: 10,
    valid: VALID,
    leaf: Bits::NEVER,
    frame: Frame::mask(PG_FRAME),
};

/// PAE page-table level: 512 eight-byte PTEs (`I386_NPTEPG_PAE`).
pub const PTE_PAE: Level = Level {
    name: "PTE",
    shift: 12,
    bits: 9,
    valid: VALID,
    leaf: Bits::NEVER,
    frame: Frame::mask(PG_FRAME_PAE),
};

/// The non-PAE MMU: page directory (`I386_PDRSHIFT` 22) and page tables.
pub static NOPAE: Format<2> = Format {
    entry_size: 4,
    big_endian: false,
    pointer: Bits::ALWAYS,
    table: Frame::mask(PG_FRAME),
    levels: [
        Level {
            name: "PDE",
            shift: 22,
            bits: 10,
            valid: VALID,
            leaf: LARGE,
            frame: Frame::mask(PG_PS_FRAME),
        },
        PTE_NOPAE,
    ],
};

/// The PAE MMU: four PDPT entries, page directories (`I386_PDRSHIFT_PAE`
/// 21) and page tables.
pub static PAE: Format<3> = Format {
    entry_size: 8,
    big_endian: false,
    pointer: Bits::ALWAYS,
    table: Frame::mask(PG_FRAME_PAE),
    levels: [
        Level {
            name: "PDPTE",
            shift: 30,
            bits: 2,
            valid: VALID,
            leaf: Bits::NEVER,
            frame: Frame::mask(PG_FRAME_PAE),
        },
        Level {
            name: "PDE",
            shift: 21,
            bits: 9,
            valid: VALID,
            leaf: LARGE,
            frame: Frame::mask(PG_PS_FRAME_PAE),
        },
        PTE_PAE,
    ],
};

/// True for an i386 kernel image (`_kvm_probe_elf_kernel(kd, ELFCLASS32,
/// EM_386)`).
pub fn is_i386_kernel(p: &Probe<'_>) -> bool {
    p.kernel_is(false, false, EM_386)
}

fn probe(p: &Probe<'_>) -> bool {
    is_i386_kernel(p)
        && p.core_elf()
            .is_some_and(|c| !c.is_64 && c.machine == EM_386)
}

/// Host is i386.
pub fn native() -> bool {
    cfg!(target_arch = "x86")
}

#[distributed_slice(BACKENDS)]
static I386_ELF: Backend = Backend {
    name: "i386 ELF full dump",
    probe,
    initvtop,
    native,
};

/// The paging mode and its root table's physical address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Paging {
    /// PAE: the PDPT.
    Pae(u64),
    /// Non-PAE: the page directory.
    NoPae(u64),
}

impl Paging {
    #[inline(always)]
    fn translate<M: PhysMem>(
        self,
        image: &Image,
        mem: &M,
        va: u64,
        trace: &mut impl FnMut(Step),
    ) -> Result<Mapping, Fault> {
        match self {
            Paging::Pae(root) => PAE.translate_traced(image, mem, Root::Phys(root), va, trace),
            Paging::NoPae(root) => {
                NOPAE.translate_traced(image, mem, Root::Phys(root), va, trace)
            }
        }
    }
}

struct I386Elf {
    core: ElfCore,
    mmu: Paging,
}

fn initvtop(s: &Setup<'_>) -> Result<Box<dyn Translator>> {
    let core = ElfCore::parse(s.core)?;
    let kernbase = s.require("kernbase")?;
    let mmu = find_root(&core, s, kernbase)?;
    Ok(Paged::boxed(I386Elf { core, mmu }))
}

/// Root-pointer variables, in the order they are tried. libkvm tries
/// `IdlePDPT` (PAE) and else `IdlePTD`; FreeBSD 12+ kernels hold both pmaps
/// (sys/i386/i386/pmap.c built twice, `PMAP_PAE_COMP`) and name the non-PAE
/// directory `IdlePTD_nopae`, so it comes before the pre-12 `IdlePTD`.
const CANDIDATES: [(&str, bool); 3] = [
    ("IdlePDPT", true),
    ("IdlePTD_nopae", false),
    ("IdlePTD", false),
];

/// Finds the paging mode and root table.
///
/// Each root variable holds a physical address. libkvm reads it at physical
/// "symbol - kernbase", right for pre-12 kernels (KERNBASE 0xc0000000, the
/// kernel at VA KERNBASE + PA) but not for FreeBSD 12+ (4/4 split: KERNBASE
/// = KERNLOAD = 8 MiB, kernel VA == PA; sys/i386/include/vmparam.h), so the
/// symbol's own value is tried too. A candidate is accepted only if its
/// tables map the variable's virtual address back onto the physical address
/// it was read from. When both modes pass, the kernel's `pae_mode` decides
/// (12+ kernels, `int pae_mode` in sys/i386/i386/pmap_base.c, which runs
/// only one pmap's `pmap_cold`), else the first found.
fn find_root(core: &ElfCore, s: &Setup<'_>, kernbase: u64) -> Result<Paging> {
    let (mut pae, mut nopae) = (None, None);
    let mut tried: Vec<String> = Vec::new();
    for (name, is_pae) in CANDIDATES {
        let slot = if is_pae { &mut pae } else { &mut nopae };
        let Some(var) = (s.lookup)(name).filter(|_| slot.is_none()) else {
            continue;
        };
        let mut places: Vec<u64> = [var.checked_sub(kernbase), Some(var)]
            .into_iter()
            .flatten()
            .collect();
        places.dedup();
        tried.push(format!(
            "{name} ({var:#x}) at physical {}",
            hex_list(&places)
        ));
        *slot = places
            .iter()
            .find_map(|&pa| check(core, s.core, is_pae, var, pa));
    }
    match (pae, nopae) {
        (Some(p), Some(n)) => Ok(by_pae_mode(core, s, p, n).unwrap_or(p)),
        (Some(m), None) | (None, Some(m)) => Ok(m),
        (None, None) if tried.is_empty() => Err(Error::MissingSymbol("IdlePTD")),
        (None, None) => Err(Error::BadCore(format!(
            "cannot find the kernel page tables: no root pointer maps its own address back \
             (tried {}; does the kernel match the core?)",
            tried.join(", ")
        ))),
    }
}

/// Formats addresses as `0x.. or 0x..`.
fn hex_list(v: &[u64]) -> String {
    v.iter()
        .map(|a| format!("{a:#x}"))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The root the variable at physical `pa` names, if it is self-consistent.
fn check(core: &ElfCore, image: &Image, pae: bool, var: u64, pa: u64) -> Option<Paging> {
    check_32bit(var, "i386").ok()?;
    let root = u64::from(read32(core, image, pa)?);
    // The PDPT is 32-byte aligned (the CPU ignores CR3 bits 0-4 under PAE);
    // a page directory is a page.
    let align = if pae { 0x1f } else { PAGE_SIZE - 1 };
    if root == 0 || root & align != 0 {
        return None;
    }
    let mmu = if pae {
        Paging::Pae(root)
    } else {
        Paging::NoPae(root)
    };
    let m = mmu.translate(image, core, var, &mut |_| {}).ok()?;
    (m.pa == pa).then_some(mmu)
}

/// A little-endian u32 at physical `pa` (a pointer-sized kernel variable).
fn read32(core: &ElfCore, image: &Image, pa: u64) -> Option<u32> {
    let span = core.locate(pa)?;
    if span.len < 4 {
        return None;
    }
    image.le32(span.off)
}

/// Picks the mode `int pae_mode` names, read through a validated root.
fn by_pae_mode(core: &ElfCore, s: &Setup<'_>, pae: Paging, nopae: Paging) -> Option<Paging> {
    let var = (s.lookup)("pae_mode")?;
    let pae_mode = [pae, nopae].iter().find_map(|mmu| {
        let pa = mmu.translate(s.core, core, var, &mut |_| {}).ok()?.pa;
        read32(core, s.core, pa)
    })?;
    Some(if pae_mode != 0 { pae } else { nopae })
}

impl Mmu for I386Elf {
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
        check_32bit(va, "i386")?;
        self.mmu.translate(image, &self.core, va, trace)
    }

    /// Walks the kernel page tables from the root (i386 has no direct map;
    /// FreeBSD does not walk full dumps).
    fn walk_pages(&self, image: &Image, f: &mut dyn FnMut(&Page) -> bool) -> Result<bool> {
        let mut visit = |va: u64, m: &Mapping| {
            f(&Page {
                paddr: m.pa,
                kmap_vaddr: va,
                dmap_vaddr: 0,
                prot: entry_prot(m.entry),
                offset: self.core.file_offset(image, m.pa),
                len: m.size,
            })
        };
        match self.mmu {
            Paging::Pae(root) => PAE.walk(image, &self.core, Root::Phys(root), 64, &mut visit),
            Paging::NoPae(root) => NOPAE.walk(image, &self.core, Root::Phys(root), 64, &mut visit),
        }
        .map_err(|fault| Error::BadCore(format!("page walk: {fault}")))
    }
}
