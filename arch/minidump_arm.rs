//! arm (32-bit) minidumps, versions 1 and 2 (`sys/arm/arm/minidump_machdep.c`
//! writes them, `lib/libkvm/kvm_minidump_arm.c` reads them).
//!
//! File layout: header page, message buffer (rounded up to a page), the
//! dump_avail page (version 2; 64-bit entries), the page bitmap (32-bit
//! words), the PTE section, then the dumped pages in bitmap order. The PTE
//! section holds one 4-byte L2 entry per 4 KiB page from `kernbase` to the
//! end of kernel VM, as `pmap_dump_kextract` gives it: the page's own
//! entry under a coarse table (a large page's entry repeated 16 times),
//! a small-page entry made up for each page of a section or supersection
//! (ARMv4: `L2_S_PROTO | pa | L2_S_PROT(PTE_KERNEL, RW)`; ARMv6: `pa |
//! ATTR_TO_L2(pte1) | PTE2_V`), 0 where nothing is mapped. The header's
//! `mmuformat` says which entry format (ARMv4 or ARMv6/v7) the kernel
//! wrote. There is no direct map: nothing below `kernbase` can be read.
//! `kvm_kerndisp` is 0, as in FreeBSD.

use super::arm::{
    is_arm_kernel, native, LARGE_PAGE, L2_S_FRAME, L2_S_PROT_W, PAGE_SIZE,
    PTE2_NX, PTE2_RO, TYPE_MASK,
};
use crate::error::{Error, Fault, Result};
use crate::image::Image;
use crate::minidump::{header_page, map_fits, Minidump, Order, Sizes};
use crate::pagetable::{check_32bit, Bits, Format, Frame, Level, Mapping, Root, Step, WideFormat};
use crate::physmem::PhysMem;
use crate::registry::{Backend, Probe, Setup, Translator, BACKENDS};
use crate::space::{Mmu, Paged};
use crate::walk::{prot, Page};
use byteorder::{ByteOrder, LittleEndian};
use linkme::distributed_slice;
use static_assertions::const_assert_eq;
use std::mem::{offset_of, size_of};

/// `MINIDUMP_MAGIC` (sys/arm/include/minidump.h), NUL-padded to 24 bytes.
const MAGIC: &[u8; 24] = b"minidump FreeBSD/arm\0\0\0\0";

/// `struct minidumphdr` (sys/arm/include/minidump.h): every field after
/// the magic is a u32. `arch` and `mmuformat` were added without a version
/// change (older version 1 dumps hold 0 there); `dumpavailsize` exists
/// from version 2.
#[repr(C)]
#[allow(dead_code)] // the layout is read field by field with offset_of!
struct MinidumpHdr {
    magic: [u8; 24],
    version: u32,
    msgbufsize: u32,
    bitmapsize: u32,
    ptesize: u32,
    kernbase: u32,
    arch: u32,
    mmuformat: u32,
    dumpavailsize: u32,
}
const_assert_eq!(offset_of!(MinidumpHdr, version), 0x18);
const_assert_eq!(offset_of!(MinidumpHdr, ptesize), 0x24);
const_assert_eq!(offset_of!(MinidumpHdr, kernbase), 0x28);
const_assert_eq!(offset_of!(MinidumpHdr, arch), 0x2c);
const_assert_eq!(offset_of!(MinidumpHdr, mmuformat), 0x30);
const_assert_eq!(offset_of!(MinidumpHdr, dumpavailsize), 0x34);
const_assert_eq!(size_of::<MinidumpHdr>(), 56);

/// `MINIDUMP_MMU_FORMAT_*` (sys/arm/include/minidump.h).
const MMU_FORMAT_UNKNOWN: u64 = 0;
const MMU_FORMAT_V4: u64 = 1;
const MMU_FORMAT_V6: u64 = 2;
const MMU_FORMAT_V6_LPAE: u64 = 3;

/// One 4-byte L2 entry per page, in a flat array.
const PTE: Level = Level {
    name: "PTE",
    shift: 12,
    bits: 20,
    valid: Bits {
        mask: TYPE_MASK,
        value: 0,
        negate: true,
        any: 0,
    },
    leaf: Bits::NEVER,
    frame: Frame::mask(L2_S_FRAME),
};

/// The PTE section as the walker reads it.
const fn section(pte: Level) -> WideFormat<1> {
    WideFormat {
        format: Format {
            entry_size: 4,
            big_endian: false,
            pointer: Bits::ALWAYS,
            table: Frame::mask(L2_S_FRAME),
            levels: [pte],
        },
        wide: [LARGE_PAGE],
    }
}

/// The PTE section: any entry of a non-zero type maps, large pages
/// (type 1) take virtual-address bits 12-15 (`_arm_minidump_kvatop`).
/// Type 3 is a small page with XN on ARMv6/v7 and XScale's extended small
/// page on ARMv4/v5: an XScale kernel's `pmap_dump_kextract` (pmap-v4.c)
/// writes every entry with `L2_S_PROTO`, which is `L2_TYPE_XSCALE_XS` (3)
/// there (sys/arm/include/pte-v4.h). libkvm refuses type 3 on ARMv4 ("pte
/// not supported"), a 1 KiB tiny page no FreeBSD kernel makes, and so
/// cannot read XScale minidumps.
static MAP: WideFormat<1> = section(PTE);

/// `VM_PROT_*` of a PTE-section entry (`_arm_entry_to_prot`): ARMv4,
/// writable with `L2_S_PROT_W` and never executable (libkvm's reading:
/// ARMv4/v5 have no execute-never); ARMv6, writable without `PTE2_RO`,
/// executable without `PTE2_NX` (bits of a small page, also tested on
/// large pages, which ARMv6 kernels do not make).
fn entry_prot(v4: bool, e: u64) -> u8 {
    let mut p = prot::READ;
    if v4 {
        if e & L2_S_PROT_W != 0 {
            p |= prot::WRITE;
        }
        return p;
    }
    if e & PTE2_RO == 0 {
        p |= prot::WRITE;
    }
    if e & PTE2_NX == 0 {
        p |= prot::EXECUTE;
    }
    p
}

fn probe(p: &Probe<'_>) -> bool {
    is_arm_kernel(p) && p.core_starts_with(MAGIC)
}

#[distributed_slice(BACKENDS)]
static ARM_MINIDUMP: Backend = Backend {
    name: "arm minidump",
    probe,
    initvtop,
    native,
};

struct ArmMinidump {
    mem: Minidump,
    /// ARMv4 entries (else ARMv6/v7).
    v4: bool,
    /// The PTE section as a walk root.
    map: Root,
    kernbase: u64,
}

fn field(h: &[u8], off: usize) -> u64 {
    u64::from(LittleEndian::read_u32(&h[off..]))
}

fn initvtop(s: &Setup<'_>) -> Result<Box<dyn Translator>> {
    let bad = |m: String| Error::BadCore(format!("arm minidump: {m}"));
    let h: [u8; size_of::<MinidumpHdr>()] = header_page(s.core).map_err(bad)?;
    let h = &h[..];
    let version = field(h, offset_of!(MinidumpHdr, version));
    if !(1..=2).contains(&version) {
        return Err(bad(format!("unknown version {version} (expected 1 or 2)")));
    }
    let arch = field(h, offset_of!(MinidumpHdr, arch));
    let v4 = match field(h, offset_of!(MinidumpHdr, mmuformat)) {
        MMU_FORMAT_V4 => true,
        MMU_FORMAT_V6 => false,
        // Dumps from before the field existed: libkvm assumes ARMv6 ("1K
        // pages are not used"); `arch` (`__ARM_ARCH`, added with it, so
        // also 0 there) says better when it is set.
        MMU_FORMAT_UNKNOWN => (1..6).contains(&arch),
        MMU_FORMAT_V6_LPAE => {
            return Err(bad(
                "mmuformat 3 (ARMv6 LPAE, 8-byte entries) is not supported: no FreeBSD \
                 kernel writes it"
                    .into(),
            ))
        }
        f => {
            return Err(bad(format!(
                "unknown mmuformat {f} (expected 1 for ARMv4 or 2 for ARMv6 entries, or 0)"
            )))
        }
    };
    let ptesize = field(h, offset_of!(MinidumpHdr, ptesize));
    let kernbase = field(h, offset_of!(MinidumpHdr, kernbase));
    let sizes = Sizes {
        page_size: PAGE_SIZE,
        msgbuf: field(h, offset_of!(MinidumpHdr, msgbufsize)),
        dump_avail: if version >= 2 {
            field(h, offset_of!(MinidumpHdr, dumpavailsize))
        } else {
            0
        },
        bitmap: field(h, offset_of!(MinidumpHdr, bitmapsize)),
        pmap: ptesize,
        // The bitmap's words are 32-bit (`uint32_t vm_page_dump[]` in
        // version 1, a bitset of 32-bit `long`s in version 2).
        order: Order {
            big_endian: false,
            long: 4,
        },
    };
    let within = |e: Error| e.within("arm minidump");
    let (layout, map_off) = sizes.layout(s.core, "PTE section").map_err(within)?;
    // A 4-byte entry for each 4 KiB page from kernbase.
    let entries = ptesize / 4;
    map_fits(kernbase, entries, 12, 32).map_err(bad)?;
    let mem = Minidump::new(s.core, layout).map_err(within)?;
    let map = Root::File {
        off: map_off,
        count: entries,
        base: kernbase,
    };
    Ok(Paged::boxed(ArmMinidump {
        mem,
        v4,
        map,
        kernbase,
    }))
}

impl Mmu for ArmMinidump {
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
        check_32bit(va, "arm")?;
        if va < self.kernbase {
            return Err(below_kernbase(self.kernbase));
        }
        MAP.translate_traced(image, &self.mem, self.map, va, trace)
    }

    /// Each valid entry of the PTE section as a 4 KiB page, with the
    /// physical address of that page (a large page's entry gives each of
    /// its 16 pages), as `_arm_minidump_walk_pages` reports them; arm has
    /// no direct map, so there is no second pass.
    fn walk_pages(&self, image: &Image, f: &mut dyn FnMut(&Page) -> bool) -> Result<bool> {
        let v4 = self.v4;
        MAP.walk(image, &self.mem, self.map, 64, &mut |va, m| {
                f(&Page {
                    paddr: m.pa,
                    kmap_vaddr: va,
                    dmap_vaddr: 0,
                    prot: entry_prot(v4, m.entry),
                    offset: self.mem.locate(m.pa).map(|s| s.off),
                    len: m.size,
                })
            })
            .map_err(|fault| Error::BadCore(format!("page walk: {fault}")))
    }
}

#[cold]
#[inline(never)]
fn below_kernbase(kernbase: u64) -> Fault {
    Fault::Unmapped(format!(
        "below kernbase ({kernbase:#x}): an arm minidump holds only the kernel map"
    ))
}
