//! amd64 ELF full dumps (`lib/libkvm/kvm_amd64.c`): a four-level walk from
//! the kernel's PML4, with 4 KiB, 2 MiB and 1 GiB pages.
//!
//! The MMU description here is shared with the amd64 minidump backend.
//! `kvm_kerndisp` is 0, as in FreeBSD: a kernel loaded at another physical
//! address (found below) keeps its linked virtual addresses.

use crate::elfcore::ElfCore;
use crate::error::{Error, Fault, Result};
use crate::image::Image;
use crate::pagetable::{Bits, Format, Frame, Level, Root, Mapping, Step};
use crate::physmem::PhysMem;
use crate::registry::{Backend, Probe, Setup, Translator, BACKENDS};
use crate::space::{Mmu, Paged};
use crate::walk::{prot, DirectMap, Page};
use linkme::distributed_slice;
use object::elf::EM_X86_64;

// Entry bits and frame masks: sys/amd64/include/pmap.h (X86_PG_V, X86_PG_PS,
// PG_FRAME, PG_PS_FRAME, PG_PS_PDP_FRAME); bit 63 (NX) and bits 52-62 are
// outside every frame mask.
/// Present.
pub const PG_V: u64 = 0x001;
/// Page size: the PDPE or PDE maps a 1 GiB or 2 MiB page.
pub const PG_PS: u64 = 0x080;
/// Frame of a 4 KiB page or of a page-table page.
pub const PG_FRAME: u64 = 0x000f_ffff_ffff_f000;
/// Frame of a 2 MiB page.
pub const PG_PS_FRAME: u64 = 0x000f_ffff_ffe0_0000;
/// Frame of a 1 GiB page.
pub const PG_PS_PDP_FRAME: u64 = 0x000f_ffff_c000_0000;
/// Writable.
pub const PG_RW: u64 = 0x002;
/// No-execute.
pub const PG_NX: u64 = 1 << 63;
/// 4 KiB.
pub const PAGE_SIZE: u64 = 4096;
/// The direct map with 4-level paging (sys/amd64/include/vmparam.h:
/// `DMAP_MIN_ADDRESS`, `DMAP_MAX_ADDRESS`), physical 0 at its start.
pub const DMAP: DirectMap = DirectMap {
    base: 0xffff_f800_0000_0000,
    end: 0xffff_fc00_0000_0000,
    phys: 0,
};

/// `VM_PROT_*` of a leaf entry (`_amd64_entry_to_prot`).
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
/// 2 MiB, the span of one PDE (`NBPDR`).
pub const NBPDR: u64 = 1 << 21;

const VALID: Bits = Bits::eq(PG_V, PG_V);
const LARGE: Bits = Bits::eq(PG_PS, PG_PS);

/// The page-directory level (2 MiB superpages), also the top level of the
/// page map in version 2 and 3 minidumps.
pub const PDE: Level = Level {
    name: "PDE",
    shift: 21,
    bits: 9,
    valid: VALID,
    leaf: LARGE,
    frame: Frame::mask(PG_PS_FRAME),
};

/// The page-table level (4 KiB pages).
pub const PTE: Level = Level {
    name: "PTE",
    shift: 12,
    bits: 9,
    valid: VALID,
    leaf: Bits::NEVER,
    frame: Frame::mask(PG_FRAME),
};

/// A table-only level indexed from `shift` (PML5, PML4).
const fn upper(name: &'static str, shift: u32) -> Level {
    Level {
        name,
        shift,
        bits: 9,
        valid: VALID,
        leaf: Bits::NEVER,
        frame: Frame::mask(PG_FRAME),
    }
}

/// The page-directory-pointer level (1 GiB pages).
const PDPE: Level = Level {
    name: "PDPE",
    shift: 30,
    bits: 9,
    valid: VALID,
    leaf: LARGE,
    frame: Frame::mask(PG_PS_PDP_FRAME),
};

/// The amd64 four-level MMU (48-bit virtual addresses).
pub static MMU: Format<4> = Format {
    entry_size: 8,
    big_endian: false,
    pointer: Bits::ALWAYS,
    table: Frame::mask(PG_FRAME),
    levels: [upper("PML4E", 39), PDPE, PDE, PTE],
};

/// Five-level paging (CR4.LA57: 57-bit virtual addresses; Intel SDM vol.
/// 3A, 4.5): a PML5 table above the four levels.
pub static MMU_LA57: Format<5> = Format {
    entry_size: 8,
    big_endian: false,
    pointer: Bits::ALWAYS,
    table: Frame::mask(PG_FRAME),
    levels: [upper("PML5E", 48), upper("PML4E", 39), PDPE, PDE, PTE],
};

/// Checks that `va` is a canonical 48-bit address (bits 47-63 all equal).
pub fn check_canonical(va: u64) -> Result<(), Fault> {
    let top = (va as i64) >> 47;
    if top == 0 || top == -1 {
        Ok(())
    } else {
        Err(Fault::OutOfRange(
            "not a canonical amd64 address (bits 47-63 must be equal)".into(),
        ))
    }
}

/// True for an amd64 kernel image.
pub fn is_amd64_kernel(p: &Probe<'_>) -> bool {
    p.kernel_is(true, false, EM_X86_64)
}

fn probe(p: &Probe<'_>) -> bool {
    is_amd64_kernel(p) && p.core_elf().is_some_and(|c| c.is_64 && c.machine == EM_X86_64)
}

/// Host is amd64.
pub fn native() -> bool {
    cfg!(target_arch = "x86_64")
}

#[distributed_slice(BACKENDS)]
static AMD64_ELF: Backend = Backend {
    name: "amd64 ELF full dump",
    probe,
    initvtop,
    native,
};

struct Amd64Elf {
    core: ElfCore,
    pml4: u64,
}

fn initvtop(s: &Setup<'_>) -> Result<Box<dyn Translator>> {
    let core = ElfCore::parse(s.core)?;
    let kernbase = s.require("kernbase")?;
    let var = s.require("KPML4phys")?;
    let pml4 = find_pml4(&core, s.core, kernbase, var)?;
    Ok(Paged::boxed(Amd64Elf { core, pml4 }))
}

/// Finds the kernel's PML4 from the `KPML4phys` variable.
///
/// libkvm reads the variable at physical address "its address - kernbase",
/// which is wrong for a kernel the loader placed elsewhere (FreeBSD 13.1+ can
/// load amd64 kernels at any 2 MiB-aligned physical address; freebsd-src
/// PR #1706). We try, in order: the displacement a `PT_DUMP_DELTA` header
/// records, libkvm's address, and every 2 MiB displacement inside the dump.
/// A candidate is accepted only if the PML4 it names maps the variable's own
/// virtual address back to the candidate: a self-consistency check that
/// random memory does not pass.
fn find_pml4(core: &ElfCore, image: &Image, kernbase: u64, var: u64) -> Result<u64> {
    let linked = var.checked_sub(kernbase).ok_or_else(|| {
        Error::BadKernel(format!("KPML4phys ({var:#x}) lies below kernbase ({kernbase:#x})"))
    })?;
    let check = |pa: u64| -> Option<u64> {
        let root = image.le64(core.locate(pa)?.off)?;
        if root == 0 || root & !PG_FRAME != 0 {
            return None;
        }
        let m = MMU.translate(image, core, Root::Phys(root), var).ok()?;
        (m.pa == pa).then_some(root)
    };
    let recorded = core
        .dump_delta
        .and_then(|(va, pa)| var.checked_sub(va)?.checked_add(pa));
    if let Some(root) = recorded.into_iter().chain([linked]).find_map(check) {
        return Ok(root);
    }
    // Only memory the file holds can hold the variable: a hostile segment
    // size cannot make this scan long.
    let phase = linked % NBPDR;
    for (start, end) in core.ranges_in_file(image.len()) {
        let first = (start & !(NBPDR - 1)) | phase;
        let mut pa = if first < start { first.checked_add(NBPDR) } else { Some(first) };
        while let Some(p) = pa.filter(|&p| p < end) {
            if let Some(root) = check(p) {
                return Ok(root);
            }
            pa = p.checked_add(NBPDR);
        }
    }
    Err(Error::BadCore(format!(
        "cannot find the kernel page tables: KPML4phys ({var:#x}) holds no valid PML4 at \
         physical {linked:#x} nor at any 2 MiB displacement of it in the dump (does the kernel \
         match the core?)"
    )))
}

impl Mmu for Amd64Elf {
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
        check_canonical(va)?;
        MMU.translate_traced(image, &self.core, Root::Phys(self.pml4), va, trace)
    }

    /// Walks the kernel page tables from the PML4. Leaves inside the direct
    /// map are reported by their direct-map address only; other leaves also
    /// carry the direct-map address of their memory.
    fn walk_pages(&self, image: &Image, f: &mut dyn FnMut(&Page) -> bool) -> Result<bool> {
        MMU.walk(image, &self.core, Root::Phys(self.pml4), 48, &mut |va, m| {
            let in_dmap = DMAP.pa_of(va).is_some();
            f(&Page {
                paddr: m.pa,
                kmap_vaddr: if in_dmap { 0 } else { va },
                dmap_vaddr: if in_dmap { va } else { DMAP.va_of(m.pa) },
                prot: entry_prot(m.entry),
                offset: self.core.file_offset(image, m.pa),
                len: m.size,
            })
        })
        .map_err(|fault| Error::BadCore(format!("page walk: {fault}")))
    }
}
