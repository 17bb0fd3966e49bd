//! amd64 minidumps, versions 1 to 3 (`sys/amd64/amd64/minidump_machdep.c`
//! writes them, `lib/libkvm/kvm_minidump_amd64.c` reads them).
//!
//! File layout: header page, message buffer (rounded up to a page), the
//! dump_avail page (version 3), the page bitmap, the page map, then the dumped
//! pages in bitmap order. The page map holds one PTE per 4 KiB page from
//! `kernbase` in version 1, and one PDE per 2 MiB from `kernbase` in versions
//! 2 and 3 (1 GiB pages become 512 fake 2 MiB PDEs; the page-table pages the
//! PDEs point to are among the dumped pages). Addresses in
//! `[dmapbase, dmapend)` are read through the direct map. `kvm_kerndisp` is
//! 0, as in FreeBSD (the header records no displacement).

use super::amd64::{
    check_canonical, entry_prot, is_amd64_kernel, native, PAGE_SIZE, PDE, PG_FRAME, PTE,
};
use crate::error::{Error, Fault, Result};
use crate::image::Image;
use crate::minidump::{header_page, Order, Minidump, Sizes};
use crate::pagetable::{Bits, Format, Frame, Mapping, Root, Step};
use crate::registry::{Backend, Probe, Setup, Translator, BACKENDS};
use crate::space::{Mmu, Paged};
use crate::walk::{DirectMap, Page};
use byteorder::{ByteOrder, LittleEndian};
use linkme::distributed_slice;
use static_assertions::const_assert_eq;
use std::mem::{offset_of, size_of};

/// `MINIDUMP_MAGIC` (sys/amd64/include/minidump.h), NUL-padded to 24 bytes.
const MAGIC: &[u8; 24] = b"minidump FreeBSD/amd64\0\0";

/// `struct minidumphdr` (sys/amd64/include/minidump.h). Version 1 names
/// `pmapsize` `ptesize`; `dumpavailsize` exists from version 3.
#[repr(C)]
#[allow(dead_code)] // the layout is read field by field with offset_of!
struct MinidumpHdr {
    magic: [u8; 24],
    version: u32,
    msgbufsize: u32,
    bitmapsize: u32,
    pmapsize: u32,
    kernbase: u64,
    dmapbase: u64,
    dmapend: u64,
    dumpavailsize: u32,
}
const_assert_eq!(offset_of!(MinidumpHdr, version), 24);
const_assert_eq!(offset_of!(MinidumpHdr, pmapsize), 36);
const_assert_eq!(offset_of!(MinidumpHdr, kernbase), 40);
const_assert_eq!(offset_of!(MinidumpHdr, dumpavailsize), 64);
const_assert_eq!(size_of::<MinidumpHdr>(), 72);

/// Version 1: the page map is a PTE array from kernbase.
static MAP_V1: Format<1> = Format {
    entry_size: 8,
    big_endian: false,
    pointer: Bits::ALWAYS,
    table: Frame::mask(PG_FRAME),
    levels: [PTE],
};

/// Versions 2 and 3: the page map is a PDE array from kernbase.
static MAP_V2: Format<2> = Format {
    entry_size: 8,
    big_endian: false,
    pointer: Bits::ALWAYS,
    table: Frame::mask(PG_FRAME),
    levels: [PDE, PTE],
};

fn probe(p: &Probe<'_>) -> bool {
    is_amd64_kernel(p) && p.core_starts_with(MAGIC)
}

#[distributed_slice(BACKENDS)]
static AMD64_MINIDUMP: Backend = Backend {
    name: "amd64 minidump",
    probe,
    initvtop,
    native,
};

struct Amd64Minidump {
    mem: Minidump,
    /// Version 1 page map (PTEs) rather than PDEs.
    v1: bool,
    /// Page map: file offset and number of entries.
    map_off: u64,
    map_entries: u64,
    kernbase: u64,
    dmap: DirectMap,
}

fn field32(h: &[u8], off: usize) -> u32 {
    LittleEndian::read_u32(&h[off..])
}
fn field64(h: &[u8], off: usize) -> u64 {
    LittleEndian::read_u64(&h[off..])
}

fn initvtop(s: &Setup<'_>) -> Result<Box<dyn Translator>> {
    let bad = |m: String| Error::BadCore(format!("amd64 minidump: {m}"));
    let h: [u8; size_of::<MinidumpHdr>()] = header_page(s.core).map_err(bad)?;
    let h = &h[..];
    let version = field32(h, offset_of!(MinidumpHdr, version));
    if !(1..=3).contains(&version) {
        return Err(bad(format!("unknown version {version} (expected 1, 2 or 3)")));
    }
    let msgbufsize = u64::from(field32(h, offset_of!(MinidumpHdr, msgbufsize)));
    let bitmapsize = u64::from(field32(h, offset_of!(MinidumpHdr, bitmapsize)));
    let pmapsize = u64::from(field32(h, offset_of!(MinidumpHdr, pmapsize)));
    let kernbase = field64(h, offset_of!(MinidumpHdr, kernbase));
    let dmapbase = field64(h, offset_of!(MinidumpHdr, dmapbase));
    let dmapend = field64(h, offset_of!(MinidumpHdr, dmapend));
    let availsize = if version >= 3 {
        u64::from(field32(h, offset_of!(MinidumpHdr, dumpavailsize)))
    } else {
        0
    };
    if dmapend < dmapbase {
        return Err(bad(format!("direct map ends ({dmapend:#x}) before it starts ({dmapbase:#x})")));
    }
    let sizes = Sizes {
        page_size: PAGE_SIZE,
        msgbuf: msgbufsize,
        dump_avail: availsize,
        bitmap: bitmapsize,
        pmap: pmapsize,
        order: Order::LITTLE,
    };
    let (layout, map_off) = sizes.layout(s.core, "page map").map_err(|e| e.within("amd64 minidump"))?;
    let mem = Minidump::new(s.core, layout).map_err(|e| e.within("amd64 minidump"))?;
    Ok(Paged::boxed(Amd64Minidump {
        mem,
        v1: version == 1,
        map_off,
        map_entries: pmapsize / 8,
        kernbase,
        dmap: DirectMap {
            base: dmapbase,
            end: dmapend,
            phys: 0,
        },
    }))
}

impl Mmu for Amd64Minidump {
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
        check_canonical(va)?;
        let pa = if va >= self.kernbase {
            let root = Root::File {
                off: self.map_off,
                count: self.map_entries,
                base: self.kernbase,
            };
            // Two call sites so each format's levels fold into constants.
            if self.v1 {
                MAP_V1.translate_traced(image, &self.mem, root, va, trace)?.pa
            } else {
                MAP_V2.translate_traced(image, &self.mem, root, va, trace)?.pa
            }
        } else if let Some(pa) = self.dmap.pa_of(va) {
            pa
        } else {
            return Err(Fault::Unmapped(format!(
                "neither in the kernel map (from {:#x}) nor in the direct map [{:#x}, {:#x})",
                self.kernbase, self.dmap.base, self.dmap.end
            )));
        };
        Ok(Mapping::at(va, pa, self.mem.page_size(), 0))
    }

    /// The page map's leaves (PTEs in version 1, PDEs and the page-table
    /// pages they point to from version 2), then the dumped pages only the
    /// direct map reaches. FreeBSD walks nothing in version 1; we do.
    fn walk_pages(&self, image: &Image, f: &mut dyn FnMut(&Page) -> bool) -> Result<bool> {
        let root = Root::File {
            off: self.map_off,
            count: self.map_entries,
            base: self.kernbase,
        };
        let (mem, dmap) = (&self.mem, &self.dmap);
        if self.v1 {
            mem.walk_pages(image, &MAP_V1, root, dmap, entry_prot, f)
        } else {
            mem.walk_pages(image, &MAP_V2, root, dmap, entry_prot, f)
        }
    }
}
