//! riscv minidumps, versions 1 and 2 (`sys/riscv/riscv/minidump_machdep.c`
//! writes them, `lib/libkvm/kvm_minidump_riscv.c` reads them).
//!
//! Sv39: the page map is an array of L3 PTEs, one per 4 KiB page from
//! `kernbase`, with 2 MiB L2 superpages written as fake L3 pages. Version 2
//! adds dump_avail. The direct map lies above `kernbase` and is checked
//! first. `kvm_kerndisp` is 0, as in FreeBSD.

use crate::error::{Error, Fault, Result};
use crate::image::Image;
use crate::minidump::{DmapHeader, Minidump};
use crate::pagetable::{Bits, Format, Frame, Level, Root, Mapping, Step};
use crate::registry::{Backend, Probe, Setup, Translator, BACKENDS};
use crate::space::{Mmu, Paged};
use crate::walk::{prot, DirectMap, Page};
use linkme::distributed_slice;
use object::elf::EM_RISCV;

/// `MINIDUMP_MAGIC` (sys/riscv/include/minidump.h), NUL-padded.
const MAGIC: &[u8; 23] = b"minidump FreeBSD/riscv\0";

// PTE bits (sys/riscv/include/pte.h, lib/libkvm/kvm_riscv.h).
const PTE_V: u64 = 1 << 0;
const PTE_W: u64 = 1 << 2;
const PTE_X: u64 = 1 << 3;
/// `PTE_RWX`: a leaf has at least one of these.
const PTE_RWX: u64 = 0b1110;
/// The PPN, bits 10-53; the reserved, PBMT and N bits above it are
/// stripped (FreeBSD's reader keeps them).
const PTE_PPN: u64 = 0x003f_ffff_ffff_fc00;
/// The PPN is stored at bit 10 (`PTE_PPN0_S`) for a frame at bit 12.
const PPN_TO_PA: u32 = 2;

static MAP: Format<1> = Format {
    entry_size: 8,
    big_endian: false,
    pointer: Bits::ALWAYS,
    table: Frame {
        mask: PTE_PPN,
        shl: PPN_TO_PA,
    },
    levels: [Level {
        name: "L3 PTE",
        shift: 12,
        bits: 0,
        valid: Bits::eq(PTE_V, PTE_V).and_any(PTE_RWX),
        leaf: Bits::NEVER,
        frame: Frame {
            mask: PTE_PPN,
            shl: PPN_TO_PA,
        },
    }],
};

/// `VM_PROT_*` of a leaf PTE (`_riscv_entry_to_prot`).
fn entry_prot(e: u64) -> u8 {
    let mut p = prot::READ;
    if e & PTE_W != 0 {
        p |= prot::WRITE;
    }
    if e & PTE_X != 0 {
        p |= prot::EXECUTE;
    }
    p
}

fn probe(p: &Probe<'_>) -> bool {
    p.kernel_is(true, false, EM_RISCV) && p.core_starts_with(MAGIC)
}

fn native() -> bool {
    cfg!(target_arch = "riscv64")
}

#[distributed_slice(BACKENDS)]
static RISCV_MINIDUMP: Backend = Backend {
    name: "riscv minidump",
    probe,
    initvtop,
    native,
};

struct RiscvMinidump {
    mem: Minidump,
    root: Root,
    dmap: DirectMap,
}

fn initvtop(s: &Setup<'_>) -> Result<Box<dyn Translator>> {
    let bad = |m: String| Error::BadCore(format!("riscv minidump: {m}"));
    let h = DmapHeader::parse(s.core).map_err(|e| e.within("riscv minidump"))?;
    if !(1..=2).contains(&h.version) {
        return Err(bad(format!("unknown version {} (expected 1 or 2)", h.version)));
    }
    let (layout, map_off) = h.sizes.layout(s.core, "page map").map_err(|e| e.within("riscv minidump"))?;
    Ok(Paged::boxed(RiscvMinidump {
        mem: Minidump::new(s.core, layout).map_err(|e| e.within("riscv minidump"))?,
        root: Root::File {
            off: map_off,
            count: h.sizes.pmap / 8,
            base: h.kernbase,
        },
        dmap: h.dmap,
    }))
}

impl Mmu for RiscvMinidump {
    type Mem = Minidump;

    fn mem(&self) -> &Minidump {
        &self.mem
    }

    #[inline]
    fn translate_traced(
        &self,
        image: &Image,
        va: u64,
        trace: &mut impl FnMut(Step),
    ) -> Result<Mapping, Fault> {
        let pa = match self.dmap.pa_of(va) {
            Some(pa) => pa,
            None => MAP.translate_traced(image, &self.mem, self.root, va, trace)?.pa,
        };
        Ok(Mapping::at(va, pa, self.mem.page_size(), 0))
    }

    /// The page map's leaves, then the dumped pages only the direct map
    /// reaches (FreeBSD's second pass reports nothing on riscv).
    fn walk_pages(&self, image: &Image, f: &mut dyn FnMut(&Page) -> bool) -> Result<bool> {
        self.mem
            .walk_pages(image, &MAP, self.root, &self.dmap, entry_prot, f)
    }
}
