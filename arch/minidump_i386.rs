//! i386 minidumps, versions 1 and 2 (`sys/i386/i386/minidump_machdep_base.c`
//! writes them, `lib/libkvm/kvm_minidump_i386.c` reads them).
//!
//! File layout: header page, message buffer (rounded up to a page), the
//! dump_avail page (version 2; 64-bit entries even on i386), the page
//! bitmap, the PTE section, then the dumped pages in bitmap order. The PTE
//! section holds one page of PTEs per PDE from `kernbase` to the end of
//! kernel VM (superpages become fake PTEs, invalid PDEs zero pages): a flat
//! array of one PTE per 4 KiB page from `kernbase`, 4 bytes each, or 8 when
//! the header's `paemode` is set. There is no direct map: nothing below
//! `kernbase` can be read. `kvm_kerndisp` is 0, as in FreeBSD.

use super::i386::{
    entry_prot, is_i386_kernel, native, PAGE_SIZE, PG_FRAME, PTE_NOPAE, PTE_PAE,
};
use crate::error::{Error, Fault, Result};
use crate::image::Image;
use crate::minidump::{header_page, Order, Minidump, Sizes};
use crate::pagetable::{check_32bit, Bits, Format, Frame, Mapping, Root, Step};
use crate::registry::{Backend, Probe, Setup, Translator, BACKENDS};
use crate::space::{Mmu, Paged};
use crate::walk::{DirectMap, Page};
use byteorder::{ByteOrder, LittleEndian};
use linkme::distributed_slice;
use static_assertions::const_assert_eq;
use std::mem::{offset_of, size_of};

/// `MINIDUMP_MAGIC` (sys/i386/include/minidump.h), NUL-padded to 24 bytes.
const MAGIC: &[u8; 24] = b"minidump FreeBSD/i386\0\0\0";

/// `struct minidumphdr` (sys/i386/include/minidump.h): every field after
/// the magic is a u32; `dumpavailsize` exists from version 2.
#[repr(C)]
#[allow(dead_code)] // the layout is read field by field with offset_of!
struct MinidumpHdr {
    magic: [u8; 24],
    version: u32,
    msgbufsize: u32,
    bitmapsize: u32,
    ptesize: u32,
    kernbase: u32,
    paemode: u32,
    dumpavailsize: u32,
}
const_assert_eq!(offset_of!(MinidumpHdr, version), 0x18);
const_assert_eq!(offset_of!(MinidumpHdr, ptesize), 0x24);
const_assert_eq!(offset_of!(MinidumpHdr, kernbase), 0x28);
const_assert_eq!(offset_of!(MinidumpHdr, paemode), 0x2c);
const_assert_eq!(offset_of!(MinidumpHdr, dumpavailsize), 0x30);
const_assert_eq!(size_of::<MinidumpHdr>(), 52);

/// Non-PAE PTE section: 4-byte PTEs (`_i386_minidump_vatop`).
static MAP_NOPAE: Format<1> = Format {
    entry_size: 4,
    big_endian: false,
    pointer: Bits::ALWAYS,
    table: Frame::mask(PG_FRAME),
    levels: [PTE_NOPAE],
};

/// PAE PTE section: 8-byte PTEs, NX stripped by the frame mask
/// (`_i386_minidump_vatop_pae`).
static MAP_PAE: Format<1> = Format {
    entry_size: 8,
    big_endian: false,
    pointer: Bits::ALWAYS,
    table: Frame::mask(super::i386::PG_FRAME_PAE),
    levels: [PTE_PAE],
};

fn probe(p: &Probe<'_>) -> bool {
    is_i386_kernel(p) && p.core_starts_with(MAGIC)
}

#[distributed_slice(BACKENDS)]
static I386_MINIDUMP: Backend = Backend {
    name: "i386 minidump",
    probe,
    initvtop,
    native,
};

struct I386Minidump {
    mem: Minidump,
    /// 8-byte PTEs.
    pae: bool,
    /// The PTE section as a walk root.
    map: Root,
    kernbase: u64,
}

fn field(h: &[u8], off: usize) -> u64 {
    u64::from(LittleEndian::read_u32(&h[off..]))
}

fn initvtop(s: &Setup<'_>) -> Result<Box<dyn Translator>> {
    let bad = |m: String| Error::BadCore(format!("i386 minidump: {m}"));
    let h: [u8; size_of::<MinidumpHdr>()] = header_page(s.core).map_err(bad)?;
    let h = &h[..];
    let version = field(h, offset_of!(MinidumpHdr, version));
    if !(1..=2).contains(&version) {
        return Err(bad(format!("unknown version {version} (expected 1 or 2)")));
    }
    let msgbufsize = field(h, offset_of!(MinidumpHdr, msgbufsize));
    let bitmapsize = field(h, offset_of!(MinidumpHdr, bitmapsize));
    let ptesize = field(h, offset_of!(MinidumpHdr, ptesize));
    let kernbase = field(h, offset_of!(MinidumpHdr, kernbase));
    let pae = field(h, offset_of!(MinidumpHdr, paemode)) != 0;
    let availsize = if version >= 2 {
        field(h, offset_of!(MinidumpHdr, dumpavailsize))
    } else {
        0
    };
    let sizes = Sizes {
        page_size: PAGE_SIZE,
        msgbuf: msgbufsize,
        dump_avail: availsize,
        bitmap: bitmapsize,
        pmap: ptesize,
        order: Order::LITTLE,
    };
    let (layout, map_off) = sizes.layout(s.core, "PTE section").map_err(|e| e.within("i386 minidump"))?;
    let mem = Minidump::new(s.core, layout).map_err(|e| e.within("i386 minidump"))?;
    let map = Root::File {
        off: map_off,
        count: ptesize / if pae { 8 } else { 4 },
        base: kernbase,
    };
    Ok(Paged::boxed(I386Minidump {
        mem,
        pae,
        map,
        kernbase,
    }))
}

impl Mmu for I386Minidump {
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
        check_32bit(va, "i386")?;
        if va < self.kernbase {
            return Err(below_kernbase(self.kernbase));
        }
        // Two call sites so each format's levels fold into constants.
        let pa = if self.pae {
            MAP_PAE.translate_traced(image, &self.mem, self.map, va, trace)?.pa
        } else {
            MAP_NOPAE.translate_traced(image, &self.mem, self.map, va, trace)?.pa
        };
        Ok(Mapping::at(va, pa, self.mem.page_size(), 0))
    }

    /// The PTE section's valid entries, 4 KiB each (i386 has no direct map,
    /// so there is no second pass).
    fn walk_pages(&self, image: &Image, f: &mut dyn FnMut(&Page) -> bool) -> Result<bool> {
        let (mem, none) = (&self.mem, &DirectMap::NONE);
        if self.pae {
            mem.walk_pages(image, &MAP_PAE, self.map, none, entry_prot, f)
        } else {
            mem.walk_pages(image, &MAP_NOPAE, self.map, none, entry_prot, f)
        }
    }
}

#[cold]
#[inline(never)]
fn below_kernbase(kernbase: u64) -> Fault {
    Fault::Unmapped(format!(
        "below kernbase ({kernbase:#x}): an i386 minidump holds only the kernel map"
    ))
}
