//! The architecture-independent part of FreeBSD minidumps: the page bitmap,
//! the optional dump_avail page, and the dumped pages that follow.
//!
//! Each backend parses its own header (`sys/<arch>/include/minidump.h`) and
//! hands the section offsets to [`Minidump::new`]. The physical-address lookup
//! is O(1): a prefix popcount per 64-bit bitmap word, as `_kvm_pt_init` and
//! `_kvm_pt_find` in `lib/libkvm/kvm_private.c` do.

use crate::bitmap::{Builder, RankIndex, BLOCK_BYTES};
use crate::error::{Error, Result};
use crate::image::Image;
use crate::pagetable::{Format, Root};
use crate::physmem::{last_at_or_below, longest, PhysMem, Span};
use crate::walk::{prot, DirectMap, Page};
use byteorder::{ByteOrder, LittleEndian};
use static_assertions::const_assert_eq;
use std::mem::{offset_of, size_of};

/// Where a backend found the sections of a minidump (all offsets in bytes).
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// Dump page size (4 KiB, or 16 KiB for arm64 16K-granule kernels).
    pub page_size: u64,
    /// The dump_avail page, if the format has one: `(offset, size)`.
    pub dump_avail: Option<(u64, u64)>,
    /// The page bitmap: `(offset, size)`.
    pub bitmap: (u64, u64),
    /// File offset of the first dumped page.
    pub sparse_off: u64,
    /// The writing kernel's byte order and `long` (the bitmap's word).
    pub order: Order,
}

/// How the kernel that wrote a minidump stores words: the bitmap is an
/// array of `long`s (`BITSET_DEFINE` in `sys/sys/_bitset.h`) and
/// dump_avail an array of 64-bit `vm_paddr_t`s, both in its byte order
/// (libkvm's `_kvm64toh`; the bitmap's word order is missed there, see
/// FORMAT-NOTES). Little-endian bitmaps read the same for any word size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Order {
    /// The kernel is big-endian.
    pub big_endian: bool,
    /// `sizeof(long)`: 4 or 8.
    pub long: u8,
}

impl Order {
    /// A little-endian kernel (amd64, arm64, riscv, i386, arm, mipsel).
    pub const LITTLE: Order = Order {
        big_endian: false,
        long: 8,
    };

    /// A 64-bit dump_avail entry.
    #[inline]
    fn u64(&self, b: &[u8]) -> u64 {
        crate::image::uint(b, self.big_endian)
    }

    /// `piece` of the bitmap with its words turned little-endian, so
    /// that bit `n` of word `w` is bit `n` counted from the word's first
    /// byte. A short last word is taken as its most significant bytes.
    fn bitmap_in_le(&self, piece: &[u8], out: &mut Vec<u8>) {
        out.clear();
        let long = usize::from(self.long);
        for w in piece.chunks(long) {
            let n = out.len();
            out.extend_from_slice(w);
            out.resize(n + long, 0);
            out[n..].reverse();
        }
    }
}

/// One dump_avail range, in pages, with the number of the bitmap bit for its
/// first page.
#[derive(Debug, Clone, Copy)]
struct AvailRange {
    first: u64,
    end: u64,
    first_bit: u64,
}

/// Physical memory of a minidump: the page bitmap under a rank index
/// ([`crate::bitmap`]), so a lookup is O(1) and memory follows the pages
/// the dump really holds.
pub struct Minidump {
    page_shift: u32,
    sparse_off: u64,
    /// The bitmap's set bits: the dumped pages.
    bits: RankIndex,
    /// dump_avail ranges (`None`: bit N is physical page N).
    avail: Option<Vec<AvailRange>>,
    /// The largest dump_avail range, tried first.
    main: AvailRange,
}

/// Section sizes from a minidump header, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Dump page size.
    pub page_size: u64,
    /// `msgbufsize` (not page-aligned: it is rounded up).
    pub msgbuf: u64,
    /// `dumpavailsize`; 0 for formats without a dump_avail page.
    pub dump_avail: u64,
    /// `bitmapsize`.
    pub bitmap: u64,
    /// `pmapsize` (or `ptesize`).
    pub pmap: u64,
    /// The writing kernel's byte order and word size.
    pub order: Order,
}

impl Sizes {
    /// Lays the sections out as every FreeBSD minidump writer does: header
    /// page, message buffer, dump_avail, bitmap, page map (`map_name`, e.g.
    /// "page map" or "PTE section"), then the dumped pages, each section
    /// rounded up to the page size. Returns the layout and the page map's
    /// offset; fails naming the first section, in file order, that lies
    /// past the end of the file.
    pub fn layout(&self, image: &Image, map_name: &str) -> Result<(Layout, u64)> {
        let ps = self.page_size;
        let r = |x: u64| round_page(x, ps).expect("u32 sizes cannot overflow");
        let avail_off = ps + r(self.msgbuf);
        let bitmap_off = avail_off + r(self.dump_avail);
        let map_off = bitmap_off + r(self.bitmap);
        let sparse_off = map_off + r(self.pmap);
        for (name, off, size) in [
            ("dump_avail page", avail_off, self.dump_avail),
            ("bitmap", bitmap_off, self.bitmap),
            (map_name, map_off, self.pmap),
        ] {
            if off + size > image.len() {
                return Err(Error::BadCore(format!(
                    "the {name} ({size} bytes at {off:#x}) lies past the end of the {}-byte file",
                    image.len()
                )));
            }
        }
        let layout = Layout {
            page_size: ps,
            dump_avail: (self.dump_avail > 0).then_some((avail_off, self.dump_avail)),
            bitmap: (bitmap_off, self.bitmap),
            sparse_off,
            order: self.order,
        };
        Ok((layout, map_off))
    }
}

/// The header of arm64 and riscv minidumps (sys/arm64/include/minidump.h,
/// sys/riscv/include/minidump.h): `dumpavailsize` from version 2, `flags`
/// (arm64 only) from version 3.
#[repr(C)]
#[allow(dead_code)] // read field by field with offset_of!
struct DmapMinidumpHdr {
    magic: [u8; 24],
    version: u32,
    msgbufsize: u32,
    bitmapsize: u32,
    pmapsize: u32,
    kernbase: u64,
    dmapphys: u64,
    dmapbase: u64,
    dmapend: u64,
    dumpavailsize: u32,
    flags: u32,
}
const_assert_eq!(offset_of!(DmapMinidumpHdr, kernbase), 40);
const_assert_eq!(offset_of!(DmapMinidumpHdr, dmapend), 64);
const_assert_eq!(offset_of!(DmapMinidumpHdr, dumpavailsize), 72);
const_assert_eq!(offset_of!(DmapMinidumpHdr, flags), 76);
const_assert_eq!(size_of::<DmapMinidumpHdr>(), 80);

/// The fields of an arm64 or riscv minidump header.
#[derive(Debug, Clone, Copy)]
pub struct DmapHeader {
    /// Format version.
    pub version: u32,
    /// Section sizes (page size still to be set by the caller for arm64 v3).
    pub sizes: Sizes,
    /// Start of the kernel page map.
    pub kernbase: u64,
    /// The direct map.
    pub dmap: DirectMap,
    /// `flags` (version 3 and later; 0 before).
    pub flags: u32,
}

impl DmapHeader {
    /// Parses the header page (checked to hold 80 bytes). `dumpavailsize`
    /// is read from version 2 and `flags` from version 3.
    pub fn parse(image: &Image) -> Result<DmapHeader> {
        let h: [u8; size_of::<DmapMinidumpHdr>()] = image.header(0).ok_or_else(|| {
            Error::BadCore(format!(
                "{} bytes is too short for a minidump header",
                image.len()
            ))
        })?;
        let u32_at = |o: usize| LittleEndian::read_u32(&h[o..]);
        let u64_at = |o: usize| LittleEndian::read_u64(&h[o..]);
        let version = u32_at(offset_of!(DmapMinidumpHdr, version));
        let dmap = DirectMap {
            phys: u64_at(offset_of!(DmapMinidumpHdr, dmapphys)),
            base: u64_at(offset_of!(DmapMinidumpHdr, dmapbase)),
            end: u64_at(offset_of!(DmapMinidumpHdr, dmapend)),
        };
        if dmap.end < dmap.base || dmap.phys.checked_add(dmap.end - dmap.base).is_none() {
            return Err(Error::BadCore(format!(
                "direct map [{:#x}, {:#x}) from physical {:#x} is reversed or overflows",
                dmap.base, dmap.end, dmap.phys
            )));
        }
        Ok(DmapHeader {
            version,
            sizes: Sizes {
                page_size: 4096,
                msgbuf: u32_at(offset_of!(DmapMinidumpHdr, msgbufsize)).into(),
                dump_avail: if version >= 2 {
                    u32_at(offset_of!(DmapMinidumpHdr, dumpavailsize)).into()
                } else {
                    0
                },
                bitmap: u32_at(offset_of!(DmapMinidumpHdr, bitmapsize)).into(),
                pmap: u32_at(offset_of!(DmapMinidumpHdr, pmapsize)).into(),
                order: Order::LITTLE,
            },
            kernbase: u64_at(offset_of!(DmapMinidumpHdr, kernbase)),
            dmap,
            flags: if version >= 3 {
                u32_at(offset_of!(DmapMinidumpHdr, flags))
            } else {
                0
            },
        })
    }
}

/// The first `N` bytes of a minidump's header page, after checking that
/// the file holds the whole 4 KiB page (every writer pads its header to
/// one); the error says what is wrong, for the caller to prefix.
pub fn header_page<const N: usize>(image: &Image) -> std::result::Result<[u8; N], String> {
    if image.len() < 4096 {
        return Err(format!(
            "{} bytes is too short for the header page",
            image.len()
        ));
    }
    image
        .header(0)
        .ok_or_else(|| "the header page cannot be read".into())
}

/// Checks that a page map of `entries` entries, one for each page of
/// `1 << page_shift` bytes from `kernbase`, ends within a `bits`-bit
/// address space: its last page starts at or below the top (a map that
/// does not would make walks report addresses no read can translate).
pub fn map_fits(
    kernbase: u64,
    entries: u64,
    page_shift: u32,
    bits: u32,
) -> std::result::Result<(), String> {
    let top = u64::MAX >> (64 - bits);
    if kernbase > top || (top - kernbase) >> page_shift < entries.saturating_sub(1) {
        return Err(format!(
            "the PTE section's {entries} entries from kernbase {kernbase:#x} run past the top \
             of the {bits}-bit address space"
        ));
    }
    Ok(())
}

/// Rounds `x` up to a multiple of `page` (a power of two); `None` on overflow.
pub fn round_page(x: u64, page: u64) -> Option<u64> {
    Some(x.checked_add(page - 1)? & !(page - 1))
}

impl Minidump {
    /// Checks the sections against the file and indexes the bitmap.
    pub fn new(image: &Image, layout: Layout) -> Result<Minidump> {
        let ps = layout.page_size;
        debug_assert!(ps.is_power_of_two());
        let (boff, bsize) = layout.bitmap;
        let oom = |what: &str| Error::OutOfMemory(format!("the index of the minidump {what}"));
        let mut builder = Builder::new(bsize).ok_or_else(|| oom("bitmap"))?;
        let mut le = Vec::new();
        let read = image.for_each_piece(boff, bsize, BLOCK_BYTES, |piece| {
            if layout.order.big_endian {
                layout.order.bitmap_in_le(piece, &mut le);
                builder.push(&le, |_| !0)
            } else {
                builder.push(piece, |_| !0)
            }
        });
        let bits = builder.finish().ok_or_else(|| oom("bitmap"))?;
        if !read {
            return Err(Error::BadCore(format!(
                "minidump bitmap ({bsize} bytes at offset {boff:#x}) lies past the end of the \
                 {}-byte file",
                image.len()
            )));
        }
        let total = bits.total();
        let need = total
            .checked_mul(ps)
            .and_then(|n| n.checked_add(layout.sparse_off));
        if need.is_none_or(|n| n > image.len()) {
            return Err(Error::BadCore(format!(
                "minidump bitmap marks {total} pages of {ps} bytes after offset {:#x}, but the \
                 file ends at {:#x}: truncated dump or corrupt bitmap",
                layout.sparse_off,
                image.len()
            )));
        }
        let avail = match layout.dump_avail {
            None => None,
            Some((off, size)) => Some(read_dump_avail(image, off, size, ps, layout.order)?),
        };
        let main = match &avail {
            Some(r) if !r.is_empty() => r[longest(r, |r| r.end - r.first)],
            _ => AvailRange {
                first: 0,
                end: 0,
                first_bit: 0,
            },
        };
        Ok(Minidump {
            page_shift: ps.trailing_zeros(),
            sparse_off: layout.sparse_off,
            bits,
            avail,
            main,
        })
    }

    /// Dump page size in bytes.
    pub fn page_size(&self) -> u64 {
        1 << self.page_shift
    }

    /// The bitmap bit of physical page `page`, if the dump could hold it.
    #[inline]
    fn bit_of(&self, page: u64) -> Option<u64> {
        let Some(ranges) = &self.avail else {
            return Some(page);
        };
        // Unlike `_kvm_pa_bit_id`, check the lower bound: a page between two
        // ranges is not in the dump.
        let r = if page.wrapping_sub(self.main.first) < self.main.end - self.main.first {
            &self.main
        } else {
            &ranges[last_at_or_below(ranges, page, |r| r.first)?]
        };
        (page < r.end).then(|| r.first_bit + (page - r.first))
    }

    /// Physical page of bitmap bit `bit` (the inverse of `bit_of`); `None`
    /// for a bit past the last dump_avail range (a corrupt bitmap).
    fn page_of(&self, bit: u64) -> Option<u64> {
        let Some(ranges) = &self.avail else {
            return Some(bit);
        };
        let r = &ranges[last_at_or_below(ranges, bit, |r| r.first_bit)?];
        let page = r.first + (bit - r.first_bit);
        (page < r.end).then_some(page)
    }

    /// Physical addresses of the dumped pages, in file order, leaving out
    /// those marked in `skip`.
    fn pages_except<'a>(&'a self, skip: Option<&'a Reached>) -> impl Iterator<Item = u64> + 'a {
        self.bits.words().flat_map(move |(bi, wi, base, w)| {
            let mut w = w & !skip.map_or(0, |r| r.0[bi][wi]);
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let b = w.trailing_zeros();
                w &= w - 1;
                Some(self.page_of(base + u64::from(b)))
            })
            .flatten()
            .map(|page| page << self.page_shift)
        })
    }
}

/// Reads dump_avail: pairs of 64-bit physical addresses in the kernel's
/// byte order, on every architecture (`vm_paddr_t dump_avail[]`), ending
/// at the first pair
/// whose end is 0. Bits are numbered through the ranges in order
/// (`vm_page_dump_add` in `sys/vm/vm_dumpset.h`).
fn read_dump_avail(
    image: &Image,
    off: u64,
    size: u64,
    ps: u64,
    order: Order,
) -> Result<Vec<AvailRange>> {
    let mut ranges: Vec<AvailRange> = Vec::new();
    let mut next_bit = 0u64;
    let mut status = Ok(false); // Ok(true): the list ended
    let read = image.for_each_piece(off, size, 4096, |piece| {
        for pair in piece.chunks_exact(16) {
            if !matches!(status, Ok(false)) {
                return;
            }
            let start = order.u64(&pair[..8]);
            let end = order.u64(&pair[8..]);
            if end == 0 {
                status = Ok(true);
                return;
            }
            let first = start / ps;
            // The kernel numbers bits through disjoint, ascending ranges.
            if end < start || ranges.last().is_some_and(|r| first < r.end) {
                status = Err(Error::BadCore(format!(
                    "minidump dump_avail range [{start:#x}, {end:#x}) is reversed, out of \
                     order or overlaps the one before"
                )));
                return;
            }
            if ranges.try_reserve(1).is_err() {
                status = Err(Error::OutOfMemory("the minidump dump_avail ranges".into()));
                return;
            }
            let end = end.div_ceil(ps);
            ranges.push(AvailRange {
                first,
                end,
                first_bit: next_bit,
            });
            // Disjoint ascending ranges of pages cannot sum past 2^64 / ps.
            next_bit += end - first;
        }
    });
    if !read {
        return Err(Error::BadCore(format!(
            "minidump dump_avail ({size} bytes at offset {off:#x}) lies past the end of the file"
        )));
    }
    status?;
    if ranges.is_empty() {
        return Err(Error::BadCore(
            "minidump dump_avail holds no memory ranges".into(),
        ));
    }
    Ok(ranges)
}

impl PhysMem for Minidump {
    #[inline]
    fn locate(&self, pa: u64) -> Option<Span> {
        let bit = self.bit_of(pa >> self.page_shift)?;
        let index = self.bits.rank(bit)?;
        let in_page = pa & (self.page_size() - 1);
        Some(Span {
            off: self.sparse_off + (index << self.page_shift) + in_page,
            len: self.page_size() - in_page,
        })
    }

    fn held_pages(&self) -> u64 {
        // A 16 KiB-page dump holds four 4 KiB pages per bit.
        self.bits.total() << (self.page_shift - 12)
    }
}

/// Which dumped pages a page walk has reached: one bit per bitmap bit of
/// the blocks that have one set.
pub struct Reached(Vec<[u64; 64]>);

impl Minidump {
    /// Marks the dumped pages of `[pa, pa + len)` as reached.
    fn mark(&self, reached: &mut Reached, pa: u64, len: u64) {
        let ps = self.page_size();
        let first = pa >> self.page_shift;
        let end = pa.saturating_add(len).div_ceil(ps);
        for page in first..end {
            let Some(bit) = self.bit_of(page) else {
                continue;
            };
            if let Some(b) = self.bits.block_of(bit) {
                reached.0[b][(bit / 64 % 64) as usize] |= 1 << (bit % 64);
            }
        }
    }

    /// A minidump page walk (see [`crate::walk`]): each leaf of the page
    /// map at `root`, decoded by `format` and `prot`, then each dumped page
    /// only the direct map reaches. Returns false if `f` stopped the walk;
    /// fails if the page map's tables alias beyond what the dump can hold.
    pub fn walk_pages<const N: usize>(
        &self,
        image: &Image,
        format: &Format<N>,
        root: Root,
        dmap: &DirectMap,
        prot: fn(u64) -> u8,
        f: &mut dyn FnMut(&Page) -> bool,
    ) -> Result<bool> {
        // Without a direct map there is no second pass to prepare for.
        let has_dmap = dmap.end > dmap.base;
        let mut reached = Reached(Vec::new());
        if has_dmap {
            reached
                .0
                .try_reserve_exact(self.bits.blocks())
                .map_err(|_| Error::OutOfMemory("a page walk's record of pages".into()))?;
            reached.0.resize(self.bits.blocks(), [0; 64]);
        }
        let done = format.walk(image, self, root, 64, &mut |va, m| {
            if has_dmap {
                self.mark(&mut reached, m.pa, m.size);
            }
            f(&Page {
                paddr: m.pa,
                kmap_vaddr: va,
                dmap_vaddr: dmap.va_of(m.pa),
                prot: prot(m.entry),
                offset: self.locate(m.pa).map(|s| s.off),
                len: m.size,
            })
        });
        let done = done.map_err(|fault| Error::BadCore(format!("page walk: {fault}")))?;
        Ok(done && (!has_dmap || self.walk_direct_map(&reached, dmap, f)))
    }

    /// The second pass of a minidump page walk: each dumped page the first
    /// pass did not reach, by its direct-map address (pages the direct map
    /// does not cover are skipped). Returns false if `f` stopped the walk.
    fn walk_direct_map(
        &self,
        reached: &Reached,
        dmap: &DirectMap,
        f: &mut dyn FnMut(&Page) -> bool,
    ) -> bool {
        self.unreached(reached).all(|pa| {
            let dmap_vaddr = dmap.va_of(pa);
            dmap_vaddr == 0
                || f(&Page {
                    paddr: pa,
                    kmap_vaddr: 0,
                    dmap_vaddr,
                    prot: prot::READ | prot::WRITE,
                    offset: self.locate(pa).map(|s| s.off),
                    len: self.page_size(),
                })
        })
    }

    /// Physical addresses of the dumped pages not marked in `reached`, in
    /// file order.
    fn unreached<'a>(&'a self, reached: &'a Reached) -> impl Iterator<Item = u64> + 'a {
        self.pages_except(Some(reached))
    }
}
