//! arm64 minidumps, versions 1 to 3 (`sys/arm64/arm64/minidump_machdep.c`
//! writes them, `lib/libkvm/kvm_minidump_aarch64.c` reads them).
//!
//! The page map is an array of L3 descriptors, one per kernel page from
//! `kernbase`; the kernel writes L1 and L2 blocks as fake L3 pages. Version 2
//! adds dump_avail; version 3 a flags word giving the page size (4 KiB or
//! 16 KiB granule; every section is then rounded to that size). The direct
//! map lies above `kernbase`, so it is checked first. `kvm_kerndisp` is 0,
//! as in FreeBSD (no arm64 backend there reports a displacement).

use crate::error::{Error, Fault, Result};
use crate::image::Image;
use crate::minidump::{DmapHeader, Minidump};
use crate::pagetable::{Bits, Format, Frame, Level, Root, Mapping, Step};
use crate::registry::{Backend, Probe, Setup, Translator, BACKENDS};
use crate::space::{Mmu, Paged};
use crate::walk::{prot, DirectMap, Page};
use linkme::distributed_slice;
use object::elf::EM_AARCH64;

/// `MINIDUMP_MAGIC` (sys/arm64/include/minidump.h), NUL-padded.
const MAGIC: &[u8; 23] = b"minidump FreeBSD/arm64\0";

// Descriptor bits (sys/arm64/include/pte.h, lib/libkvm/kvm_aarch64.h).
/// `L3_PAGE` in `ATTR_DESCR_MASK`.
const L3_PAGE: u64 = 0b11;
/// `ATTR_S1_AP(ATTR_S1_AP_RO)`: read-only.
const ATTR_AP_RO: u64 = 1 << 7;
/// `ATTR_S1_PXN`: execute-never at EL1, where the kernel runs. (FreeBSD's
/// pmap sets `ATTR_S1_UXN` on every kernel mapping, so only PXN says
/// whether kernel code may run there; libkvm tests both and never reports
/// kernel text executable.)
const ATTR_PXN: u64 = 1 << 53;
/// The output address of a 4 KiB page, bits 12-49: everything else
/// (attributes, DBM, software bits, XN) is stripped (`~AARCH64_ATTR_MASK`).
const FRAME_4K: u64 = 0x0003_ffff_ffff_f000;
/// The same for 16 KiB pages, bits 14-49.
const FRAME_16K: u64 = 0x0003_ffff_ffff_c000;
/// `MINIDUMP_FLAG_PS_MASK` and its values (version 3).
const FLAG_PS_MASK: u32 = 3;
const FLAG_PS_4K: u32 = 0;
const FLAG_PS_16K: u32 = 1;

const fn l3(shift: u32, frame: u64) -> Format<1> {
    Format {
        entry_size: 8,
        big_endian: false,
        pointer: Bits::ALWAYS,
        table: Frame::mask(frame),
        levels: [Level {
            name: "L3",
            shift,
            bits: 0,
            valid: Bits::eq(0b11, L3_PAGE),
            leaf: Bits::NEVER,
            frame: Frame::mask(frame),
        }],
    }
}

/// The page map with 4 KiB and with 16 KiB pages.
static MAP_4K: Format<1> = l3(12, FRAME_4K);
static MAP_16K: Format<1> = l3(14, FRAME_16K);

/// `VM_PROT_*` of an L3 descriptor (`_aarch64_entry_to_prot`).
fn entry_prot(e: u64) -> u8 {
    let mut p = prot::READ;
    if e & ATTR_AP_RO == 0 {
        p |= prot::WRITE;
    }
    if e & ATTR_PXN == 0 {
        p |= prot::EXECUTE;
    }
    p
}

fn probe(p: &Probe<'_>) -> bool {
    p.kernel_is(true, false, EM_AARCH64) && p.core_starts_with(MAGIC)
}

fn native() -> bool {
    cfg!(target_arch = "aarch64")
}

#[distributed_slice(BACKENDS)]
static ARM64_MINIDUMP: Backend = Backend {
    name: "arm64 minidump",
    probe,
    initvtop,
    native,
};

struct Arm64Minidump {
    mem: Minidump,
    map_off: u64,
    map_entries: u64,
    kernbase: u64,
    dmap: DirectMap,
    /// 16 KiB granule.
    big: bool,
}

fn initvtop(s: &Setup<'_>) -> Result<Box<dyn Translator>> {
    let bad = |m: String| Error::BadCore(format!("arm64 minidump: {m}"));
    let mut h = DmapHeader::parse(s.core).map_err(|e| e.within("arm64 minidump"))?;
    if !(1..=3).contains(&h.version) {
        return Err(bad(format!("unknown version {} (expected 1, 2 or 3)", h.version)));
    }
    h.sizes.page_size = match h.flags & FLAG_PS_MASK {
        FLAG_PS_4K => 4096,
        FLAG_PS_16K => 16384,
        f => return Err(bad(format!("unknown page size flag {f:#x} (4 KiB and 16 KiB are known)"))),
    };
    let (layout, map_off) = h.sizes.layout(s.core, "page map").map_err(|e| e.within("arm64 minidump"))?;
    Ok(Paged::boxed(Arm64Minidump {
        mem: Minidump::new(s.core, layout).map_err(|e| e.within("arm64 minidump"))?,
        map_off,
        map_entries: h.sizes.pmap / 8,
        kernbase: h.kernbase,
        dmap: h.dmap,
        big: h.sizes.page_size == 16384,
    }))
}

impl Arm64Minidump {
    fn root(&self) -> Root {
        Root::File {
            off: self.map_off,
            count: self.map_entries,
            base: self.kernbase,
        }
    }
}

impl Mmu for Arm64Minidump {
    type Mem = Minidump;

    fn mem(&self) -> &Minidump {
        &self.mem
    }

    /// 4 KiB or 16 KiB, as the version 3 flags say.
    fn page_size(&self) -> u64 {
        self.mem.page_size()
    }

    #[inline]
    fn translate_traced(
        &self,
        image: &Image,
        va: u64,
        trace: &mut impl FnMut(Step),
    ) -> Result<Mapping, Fault> {
        let pa = if let Some(pa) = self.dmap.pa_of(va) {
            pa
        } else if va >= self.kernbase {
            let m = if self.big {
                MAP_16K.translate_traced(image, &self.mem, self.root(), va, trace)?
            } else {
                MAP_4K.translate_traced(image, &self.mem, self.root(), va, trace)?
            };
            m.pa
        } else {
            return Err(Fault::Unmapped(format!(
                "below the kernel map (from {:#x}) and outside the direct map",
                self.kernbase
            )));
        };
        Ok(Mapping::at(va, pa, self.mem.page_size(), 0))
    }

    /// The page map's L3 pages, then the dumped pages only the direct map
    /// reaches. (FreeBSD's second pass reports nothing on arm64, and its
    /// direct-map addresses forget `dmapphys`; ours do not.)
    fn walk_pages(&self, image: &Image, f: &mut dyn FnMut(&Page) -> bool) -> Result<bool> {
        let (mem, dmap) = (&self.mem, &self.dmap);
        if self.big {
            mem.walk_pages(image, &MAP_16K, self.root(), dmap, entry_prot, f)
        } else {
            mem.walk_pages(image, &MAP_4K, self.root(), dmap, entry_prot, f)
        }
    }
}
