//! kdump-compressed ("diskdump") Linux crash dumps, as makedumpfile and
//! QEMU's `dump-guest-memory -z/-l/-s` write them, plain or in makedumpfile's
//! flattened (streamed) form.
//!
//! A file is a sequence of blocks of `block_size` bytes (makedumpfile.c
//! `write_kdump_header`, QEMU dump/dump.c `create_kdump_vmcore`):
//!
//! ```text
//! block 0                 struct disk_dump_header
//! block 1                 struct kdump_sub_header, then the ELF notes
//!                         (sub_hdr_size blocks in all)
//! block 1 + sub_hdr_size  bitmap_blocks blocks: the 1st bitmap (pages that
//!                         exist), then the 2nd (pages dumped), one bit per
//!                         page, LSB first in each byte
//! then                    one page_desc_t (24 bytes) per set bit of the 2nd
//!                         bitmap, in pfn order
//! then                    the page data, each page compressed or not
//! ```
//!
//! The unit of the bitmaps and of the stored pages is `block_size`: both
//! writers set `block_size` to the page size they dump with and number pages
//! by it (makedumpfile: `dh->block_size = info->page_size`; QEMU:
//! `block_size = s->dump_info.page_size` and `dump_paddr_to_pfn` shifts by
//! the same size). QEMU 7.2 dumps an aarch64 guest in 64 KiB units whatever
//! the kernel's page size, so a caller that knows the kernel's page size
//! (VMCOREINFO `PAGESIZE`) gives it to [`Kdump::set_page_size`]: it becomes
//! the granularity of [`Span`]s, while bitmaps and page data keep the
//! header's unit (which is what the file was written in).
//!
//! Reads: [`PhysMem::locate`] is O(1) (a rank index over the 2nd bitmap, as
//! in `crate::minidump`, whose memory follows the pages the file holds);
//! [`PhysMem::read_at`] reads the page descriptor from the file by index,
//! serves an uncompressed page straight from the file, and decompresses a
//! compressed one into a bounded, lock-free cache of pages (a set-associative
//! array of sequence-locked slots), so repeated reads of a page cost a few
//! atomic loads and no system call or allocation.

use crate::bitmap::{Builder, RankIndex, BLOCK_BYTES};
use crate::error::{Error, Fault, Result};
use crate::image::Image;
use crate::physmem::{PhysMem, Span};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering::*};

mod cache;
mod codec;
mod flat;

use cache::*;
use codec::*;
use flat::*;

// ---------------------------------------------------------------------------
// On-disk constants and layouts.

/// `KDUMP_SIGNATURE` (makedumpfile diskdump_mod.h, QEMU include/sysemu/dump.h).
const KDUMP_SIGNATURE: &[u8; 8] = b"KDUMP   ";
/// `MAKEDUMPFILE_SIGNATURE`, NUL-padded to `SIG_LEN_MDF` (16) bytes, at the
/// start of `struct makedumpfile_header` (makedumpfile.h).
const MDF_SIGNATURE: &[u8; 12] = b"makedumpfile";
/// `MAX_SIZE_MDF_HEADER`: the flattened header fills 4096 bytes; records follow.
const MDF_HEADER_SIZE: u64 = 4096;
/// `TYPE_FLAT_HEADER` (makedumpfile.h; the only type `read_start_flat_header` accepts).
const TYPE_FLAT_HEADER: i64 = 1;
/// `END_FLAG_FLAT_HEADER`: a record `{ offset: -1, buf_size: -1 }` ends the stream.
const END_FLAG_FLAT_HEADER: i64 = -1;

/// Page descriptor flags (diskdump_mod.h "page flags"): the codec of a page;
/// none set means stored as is (`size == block_size`). The same bits in the
/// header's `status` name the codec the dump was written with.
const DUMP_DH_COMPRESSED_ZLIB: u32 = 0x1;
const DUMP_DH_COMPRESSED_LZO: u32 = 0x2;
const DUMP_DH_COMPRESSED_SNAPPY: u32 = 0x4;
/// Header `status` only: makedumpfile ran out of space and marked the dump
/// incomplete (`check_and_modify_kdump_headers`); descriptors past what was
/// written read as zero (crash's `cache_page` reports such pages incomplete).
const DUMP_DH_COMPRESSED_INCOMPLETE: u32 = 0x8;
// 0x10, DUMP_DH_EXCLUDED_VMEMMAP: header `status` only (unused vmemmap
// pages excluded, `-e`); nothing for a reader to do.
const DUMP_DH_COMPRESSED_ZSTD: u32 = 0x20;

/// `struct disk_dump_header` offsets. Both word sizes share the first
/// 402 bytes: signature[8], int header_version at 8, struct new_utsname
/// (6 x char[65]) at 12. Then `struct timeval`: on LP64 two 8-byte longs
/// aligned to 8 (at 408; QEMU's DiskDumpHeader64 spells it char[22] at 402),
/// on ILP32 two 4-byte longs (at 404; QEMU's DiskDumpHeader32: char[10] at
/// 402). The u32 fields from `status` on start at 424 (64-bit) or 412.
const H_VERSION: usize = 8;
const H_UTSNAME: usize = 12;
const UTS_FIELD: usize = 65;
/// new_utsname field indexes: sysname, nodename, release, version, machine
/// (the machine is the one read: VMCOREINFO gives the release).
const UTS_MACHINE: usize = 4;
const H_STATUS_64: usize = 424;
const H_STATUS_32: usize = 412;
/// Offsets from `status`: status, block_size, sub_hdr_size, bitmap_blocks,
/// max_mapnr (then total_ram_blocks, device_blocks, written_blocks,
/// current_cpu, nr_cpus, which readers do not need).
const F_STATUS: usize = 0;
const F_BLOCK_SIZE: usize = 4;
const F_SUB_HDR_SIZE: usize = 8;
const F_BITMAP_BLOCKS: usize = 12;
const F_MAX_MAPNR: usize = 16;
/// `sizeof(struct disk_dump_header)` on LP64 (tasks[] at 464): enough to read.
const HEADER_READ: usize = 464;

/// `struct kdump_sub_header` field offsets at block 1, per layout
/// (diskdump_mod.h; QEMU KdumpSubHeader32/64; libkdumpfile diskdump.c
/// `kdump_sub_header_32pack`/`_32pad`; crash diskdump.c's offset tables).
/// 64-bit: longs and off_t are 8 bytes. 32-bit "pack" (i386, QEMU): longs
/// are 4 bytes and 64-bit fields 4-aligned. 32-bit "pad" (ARM EABI and
/// other 32-bit ABIs that align 64-bit fields to 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SubLayout {
    name: &'static str,
    long: usize,
    phys_base: usize,
    dump_level: usize,
    split: usize,
    start_pfn: usize,
    end_pfn: usize,
    offset_vmcoreinfo: usize,
    size_vmcoreinfo: usize,
    offset_note: usize,
    size_note: usize,
    offset_eraseinfo: usize,
    size_eraseinfo: usize,
    start_pfn_64: usize,
    end_pfn_64: usize,
    max_mapnr_64: usize,
    size: usize,
}

const SUB_64: SubLayout = SubLayout {
    name: "64-bit",
    long: 8,
    phys_base: 0,
    dump_level: 8,
    split: 12,
    start_pfn: 16,
    end_pfn: 24,
    offset_vmcoreinfo: 32,
    size_vmcoreinfo: 40,
    offset_note: 48,
    size_note: 56,
    offset_eraseinfo: 64,
    size_eraseinfo: 72,
    start_pfn_64: 80,
    end_pfn_64: 88,
    max_mapnr_64: 96,
    size: 104,
};
const SUB_32_PACK: SubLayout = SubLayout {
    name: "32-bit packed",
    long: 4,
    phys_base: 0,
    dump_level: 4,
    split: 8,
    start_pfn: 12,
    end_pfn: 16,
    offset_vmcoreinfo: 20,
    size_vmcoreinfo: 28,
    offset_note: 32,
    size_note: 40,
    offset_eraseinfo: 44,
    size_eraseinfo: 52,
    start_pfn_64: 56,
    end_pfn_64: 64,
    max_mapnr_64: 72,
    size: 80,
};
const SUB_32_PAD: SubLayout = SubLayout {
    name: "32-bit padded",
    long: 4,
    phys_base: 0,
    dump_level: 4,
    split: 8,
    start_pfn: 12,
    end_pfn: 16,
    offset_vmcoreinfo: 24,
    size_vmcoreinfo: 32,
    offset_note: 40,
    size_note: 48,
    offset_eraseinfo: 56,
    size_eraseinfo: 64,
    start_pfn_64: 72,
    end_pfn_64: 80,
    max_mapnr_64: 88,
    size: 96,
};

/// `sizeof(page_desc_t)`: i64 offset, u32 size, u32 flags, u64 page_flags,
/// in the dumped machine's byte order.
const DESC_SIZE: u64 = 24;

/// Block sizes accepted (libkdumpfile accepts 4 KiB to 256 KiB; QEMU writes
/// up to 64 KiB).
const MIN_BLOCK: u64 = 1 << 10;
const MAX_BLOCK: u64 = 1 << 20;
/// Largest VMCOREINFO accepted: the kernel's is one page
/// (`VMCOREINFO_BYTES`), QEMU's guest note at most 1 MiB (`MAX_GUEST_NOTE_SIZE`).
const MAX_VMCOREINFO: u64 = 1 << 20;
/// Largest note section accepted (a PRSTATUS note per CPU is under 1 KiB).
const MAX_NOTES: u64 = 64 << 20;
/// Decompressed pages the cache holds, in bytes (at least `MIN_SLOTS` pages).
const CACHE_BYTES: u64 = 16 << 20;
const MIN_SLOTS: usize = 8;
/// Ways per cache set.
const WAYS: usize = 4;

// ---------------------------------------------------------------------------
// The 2nd bitmap's rank index (crate::bitmap).

/// The set bits of a bitmap word whose first bit is `base` that lie in
/// `[lo, hi)` (a split dump's pfn range).
fn mask_word(base: u64, lo: u64, hi: u64) -> u64 {
    let bit = |x: u64| -> u64 {
        // Mask of the bits of this word below bit number x.
        if x <= base {
            0
        } else if x >= base + 64 {
            !0
        } else {
            (1u64 << (x - base)) - 1
        }
    };
    bit(hi) & !bit(lo)
}

/// Indexes the bitmap `[off, off + len)` of the dump, counting only the
/// bits in `[lo, hi)`.
fn rank_index(
    src: &Source,
    image: &Image,
    off: u64,
    len: u64,
    lo: u64,
    hi: u64,
) -> Result<RankIndex> {
    let oom = || Error::OutOfMemory("the index of the kdump bitmap".into());
    let mut builder = Builder::new(len).ok_or_else(oom)?;
    let read = src.for_each_piece(image, off, len, BLOCK_BYTES, |piece| {
        builder.push(piece, |base| mask_word(base, lo, hi))
    });
    let index = builder.finish().ok_or_else(oom)?;
    if !read {
        return Err(Error::BadCore(format!(
            "the 2nd bitmap ({len} bytes at offset {off:#x}) lies past the end of the {}-byte \
             dump",
            src.len(image)
        )));
    }
    Ok(index)
}

/// Runs of set bits of the 1st bitmap (pages that exist), to tell filtered
/// pages from absent ones; `None` when they are more than the index may
/// hold (then every missing page is "not in the dump").
fn runs_of(
    src: &Source,
    image: &Image,
    off: u64,
    len: u64,
    cap: usize,
) -> Result<Option<Vec<(u64, u64)>>> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let mut open: Option<u64> = None;
    let mut bit0 = 0u64;
    let mut over = false;
    let read = src.for_each_piece(image, off, len, 8, |c| {
        if over {
            return;
        }
        let mut b = [0u8; 8];
        b[..c.len()].copy_from_slice(c);
        let w = u64::from_le_bytes(b);
        let base = bit0;
        bit0 += 8 * c.len() as u64;
        let mut pos = 0u32;
        while pos < 64 {
            let rest = w >> pos;
            match open {
                Some(start) => {
                    let ones = rest.trailing_ones().min(64 - pos);
                    pos += ones;
                    if pos < 64 {
                        if runs.len() >= cap || runs.try_reserve(1).is_err() {
                            over = true;
                            return;
                        }
                        runs.push((start, base + u64::from(pos)));
                        open = None;
                    }
                }
                None => {
                    let zeros = rest.trailing_zeros().min(64 - pos);
                    pos += zeros;
                    if pos < 64 {
                        open = Some(base + u64::from(pos));
                    }
                }
            }
        }
    });
    if over {
        return Ok(None);
    }
    if !read {
        return Err(Error::BadCore(format!(
            "the 1st bitmap ({len} bytes at offset {off:#x}) lies past the end of the {}-byte \
             dump",
            src.len(image)
        )));
    }
    if let Some(start) = open {
        if runs.try_reserve(1).is_err() {
            return Ok(None);
        }
        runs.push((start, bit0));
    }
    Ok(Some(runs))
}

// ---------------------------------------------------------------------------
// The dump.

/// A kdump-compressed dump: its header's facts and an index of its pages.
pub struct Kdump {
    src: Source,
    /// log2 of `block_size`: the unit of the bitmaps and the stored pages.
    unit_shift: u32,
    /// The kernel's page size (the caller's, else `block_size`).
    page_size: u64,
    /// Spans never cross a kernel page nor a unit.
    span: u64,
    is_64: bool,
    big_endian: bool,
    version: u32,
    status: u32,
    machine: String,
    sub: Option<&'static str>,
    dump_level: u32,
    split: Option<(u64, u64)>,
    vmcoreinfo: Option<Box<[u8]>>,
    notes: Option<Box<[u8]>>,
    /// Dump offset of the first page descriptor.
    desc_off: u64,
    /// Number of bits of the 2nd bitmap (units it can describe).
    bits: u64,
    /// The 2nd bitmap: dumped pages.
    rank: RankIndex,
    /// Pages with a descriptor in the file.
    held: u64,
    /// Runs of the 1st bitmap (existing pages), when kept.
    ram: Option<Vec<(u64, u64)>>,
    cache: Cache,
}

/// Reads integers of the dump's byte order.
#[derive(Clone, Copy)]
struct Order {
    big: bool,
}

impl Order {
    fn u32(self, b: &[u8], at: usize) -> u32 {
        crate::image::uint(&b[at..at + 4], self.big) as u32
    }
    fn u64(self, b: &[u8], at: usize) -> u64 {
        crate::image::uint(&b[at..at + 8], self.big)
    }
    /// An `unsigned long` of `size` bytes.
    fn long(self, b: &[u8], at: usize, size: usize) -> u64 {
        if size == 8 {
            self.u64(b, at)
        } else {
            self.u32(b, at).into()
        }
    }
}

/// The word size a `utsname.machine` implies, when it is one Linux names.
fn machine_is_64(m: &str) -> Option<bool> {
    const BITS64: &[&str] = &[
        "x86_64",
        "aarch64",
        "arm64",
        "ppc64",
        "ppc64le",
        "s390x",
        "riscv64",
        "mips64",
        "loongarch64",
        "sparc64",
        "ia64",
        "alpha",
    ];
    if BITS64.contains(&m) {
        return Some(true);
    }
    let i86 = m.len() == 4 && m.starts_with('i') && m.ends_with("86");
    (i86 || m.starts_with("arm") || ["ppc", "s390", "mips", "mipsel", "riscv32"].contains(&m))
        .then_some(false)
}

/// A NUL-terminated utsname field.
fn uts(h: &[u8], field: usize) -> String {
    let at = H_UTSNAME + field * UTS_FIELD;
    let f = &h[at..at + UTS_FIELD];
    let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
    String::from_utf8_lossy(&f[..end]).into_owned()
}

/// The header fields from `status` on, for a word size and byte order.
#[derive(Debug, Clone, Copy)]
struct Fields {
    status: u32,
    block_size: u32,
    sub_hdr_size: u32,
    bitmap_blocks: u32,
    max_mapnr: u32,
}

impl Fields {
    fn read(h: &[u8], is_64: bool, o: Order) -> Fields {
        let base = if is_64 { H_STATUS_64 } else { H_STATUS_32 };
        Fields {
            status: o.u32(h, base + F_STATUS),
            block_size: o.u32(h, base + F_BLOCK_SIZE),
            sub_hdr_size: o.u32(h, base + F_SUB_HDR_SIZE),
            bitmap_blocks: o.u32(h, base + F_BITMAP_BLOCKS),
            max_mapnr: o.u32(h, base + F_MAX_MAPNR),
        }
    }

    /// Whether these look like a header's: a power-of-two block size in
    /// range, a sub-header (from version 1) and a bitmap.
    fn plausible(&self, version: u32) -> bool {
        let bs = u64::from(self.block_size);
        bs.is_power_of_two()
            && (MIN_BLOCK..=MAX_BLOCK).contains(&bs)
            && (version == 0 || self.sub_hdr_size >= 1)
            && self.bitmap_blocks >= 1
    }
}

impl Kdump {
    /// True if `head` (the first bytes of a file, up to 64) starts a
    /// kdump-compressed dump or a makedumpfile flattened stream (whose
    /// content [`Kdump::parse`] then checks: it may hold an ELF core).
    pub fn is_kdump(head: &[u8]) -> bool {
        head.starts_with(KDUMP_SIGNATURE)
            || (head.len() >= 16 && head.starts_with(MDF_SIGNATURE) && head[12..16] == [0; 4])
    }

    /// Parses a kdump-compressed file, plain or flattened.
    pub fn parse(image: &Image) -> Result<Kdump> {
        let head: [u8; 16] = image.header(0).unwrap_or([0; 16]);
        let src = if head.starts_with(MDF_SIGNATURE) {
            Source::Flat(Flat::parse(image)?)
        } else {
            Source::Plain
        };
        Kdump::parse_from(image, src)
    }

    /// Sets the kernel's page size, when the caller knows it better than
    /// the header (VMCOREINFO `PAGESIZE`): it becomes [`Kdump::page_size`]
    /// and the span granularity, while the bitmaps and stored pages keep
    /// the header's `block_size` (see the module documentation).
    pub fn set_page_size(&mut self, p: u64) -> Result<()> {
        if !p.is_power_of_two() || !(MIN_BLOCK..=MAX_BLOCK).contains(&p) {
            return Err(Error::BadCore(format!(
                "VMCOREINFO's PAGESIZE {p} (expected a power of two from {MIN_BLOCK} to {MAX_BLOCK})"
            )));
        }
        self.page_size = p;
        self.span = p.min(self.block_size());
        Ok(())
    }

    fn parse_from(image: &Image, src: Source) -> Result<Kdump> {
        let flat = matches!(src, Source::Flat(_));
        let vlen = src.len(image);
        let mut h = [0u8; HEADER_READ];
        if !src.read_exact(image, 0, &mut h) {
            return Err(Error::BadCore(format!(
                "the dump's {vlen} bytes are too short for a kdump header ({HEADER_READ} bytes)"
            )));
        }
        if !h.starts_with(KDUMP_SIGNATURE) {
            let what = if h.starts_with(b"\x7fELF") {
                "an ELF core, not a kdump-compressed dump (makedumpfile -E -F)".to_string()
            } else {
                format!(
                    "signature {:?} (expected \"KDUMP   \")",
                    String::from_utf8_lossy(&h[..8])
                )
            };
            let whose = if flat {
                "the flattened stream holds "
            } else {
                ""
            };
            return Err(Error::BadCore(format!("{whose}{what}")));
        }

        // Byte order: the one in which header_version is a small number.
        let (le, be) = (Order { big: false }, Order { big: true });
        let small = |o: Order| o.u32(&h, H_VERSION) <= 0xffff;
        let machine = uts(&h, UTS_MACHINE);
        let hint = machine_is_64(&machine);
        let candidates = |o: Order| {
            let v = o.u32(&h, H_VERSION);
            let mut c: Vec<bool> = [true, false]
                .into_iter()
                .filter(|&w| Fields::read(&h, w, o).plausible(v))
                .collect();
            if c.len() == 2 {
                c = vec![hint.unwrap_or(true)];
            }
            c.first().copied()
        };
        let (order, is_64) = match (small(le), small(be)) {
            (true, false) => (le, candidates(le).unwrap_or(hint.unwrap_or(true))),
            (false, true) => (be, candidates(be).unwrap_or(hint.unwrap_or(true))),
            (true, true) => match (candidates(le), candidates(be)) {
                (Some(w), _) => (le, w),
                (None, Some(w)) => (be, w),
                (None, None) => (le, hint.unwrap_or(true)),
            },
            (false, false) => {
                return Err(Error::BadCore(format!(
                    "kdump header_version {:#x} is not a version number in either byte order \
                     (expected 0 to 6)",
                    le.u32(&h, H_VERSION)
                )))
            }
        };
        let version = order.u32(&h, H_VERSION);
        let f = Fields::read(&h, is_64, order);

        let bs = u64::from(f.block_size);
        if !bs.is_power_of_two() || !(MIN_BLOCK..=MAX_BLOCK).contains(&bs) {
            return Err(Error::BadCore(format!(
                "kdump block_size {bs} (expected a power of two from {MIN_BLOCK} to {MAX_BLOCK})"
            )));
        }
        let unit_shift = bs.trailing_zeros();
        let page_size = bs;
        if version >= 1 && f.sub_hdr_size == 0 {
            return Err(Error::BadCore(format!(
                "kdump sub_hdr_size 0 in a version {version} header (expected at least one block)"
            )));
        }
        // Block 0 is the header, then sub_hdr_size blocks, then the bitmap.
        let bitmap_off = (1 + u64::from(f.sub_hdr_size)) * bs;
        if bitmap_off > vlen {
            return Err(Error::BadCore(format!(
                "kdump sub_hdr_size {} blocks of {bs} bytes puts the bitmap at {bitmap_off:#x}, \
                 past the end of the {vlen}-byte dump",
                f.sub_hdr_size
            )));
        }
        let bitmap_len = u64::from(f.bitmap_blocks) * bs;
        if f.bitmap_blocks == 0 || bitmap_off + bitmap_len > vlen {
            return Err(Error::BadCore(format!(
                "kdump bitmap_blocks {} ({bitmap_len} bytes at {bitmap_off:#x}) lies past the end \
                 of the {vlen}-byte dump (expected at least one block, within the file)",
                f.bitmap_blocks
            )));
        }
        if bitmap_len > src.held(image) {
            return Err(Error::BadCore(format!(
                "kdump bitmap_blocks {} ({bitmap_len} bytes) is more than the flattened stream \
                 holds ({} bytes)",
                f.bitmap_blocks,
                src.held(image)
            )));
        }
        let desc_off = bitmap_off + bitmap_len;

        // The sub-header.
        let mut max_mapnr = u64::from(f.max_mapnr);
        let mut sub_name = None;
        // The sub-header's phys_base is left alone: QEMU writes a wrong one
        // (FORMAT-NOTES); VMCOREINFO's is the kernel's.
        let (mut dump_level, mut split) = (0, None);
        let (mut vmcoreinfo, mut notes) = (None, None);
        if version >= 1 {
            let mut s = [0u8; SUB_64.size];
            if !src.read_exact(image, bs, &mut s) {
                return Err(Error::BadCore(format!(
                    "the kdump sub-header at {bs:#x} lies past the end of the {vlen}-byte dump"
                )));
            }
            let payload_end = bitmap_off;
            let l = if is_64 {
                SUB_64
            } else {
                // libkdumpfile's read_sub_hdr_32: the packed layout unless
                // its VMCOREINFO range is impossible.
                let o = order.u64(&s, SUB_32_PACK.offset_vmcoreinfo);
                let n = u64::from(order.u32(&s, SUB_32_PACK.size_vmcoreinfo));
                let pack_ok = version < 3
                    || (o == 0 && n == 0)
                    || (o > bs && o.checked_add(n).is_some_and(|e| e <= payload_end));
                if pack_ok {
                    SUB_32_PACK
                } else {
                    SUB_32_PAD
                }
            };
            sub_name = Some(l.name);
            let long = |at: usize| order.long(&s, at, l.long);
            dump_level = order.u32(&s, l.dump_level);
            if version >= 2 && order.u32(&s, l.split) != 0 {
                split = Some(if version >= 6 {
                    (order.u64(&s, l.start_pfn_64), order.u64(&s, l.end_pfn_64))
                } else {
                    (long(l.start_pfn), long(l.end_pfn))
                });
            }
            if version >= 6 {
                // max_mapnr_64 replaces the header's 32-bit max_mapnr.
                max_mapnr = order.u64(&s, l.max_mapnr_64);
            }
            let blob = |name: &str, off: u64, size: u64, cap: u64| -> Result<_> {
                if off == 0 || size == 0 {
                    return Ok(None);
                }
                let fits = off.checked_add(size).is_some_and(|e| e <= vlen);
                if size > cap || size > src.held(image) || !fits {
                    return Err(Error::BadCore(format!(
                        "kdump sub-header: {name} of {size} bytes at offset {off:#x} (expected at \
                         most {cap} bytes within the {vlen}-byte dump)"
                    )));
                }
                let mut v = Vec::new();
                v.try_reserve_exact(size as usize)
                    .map_err(|_| Error::OutOfMemory(format!("the dump's {name}")))?;
                v.resize(size as usize, 0);
                if !src.read_exact(image, off, &mut v) {
                    return Err(Error::BadCore(format!(
                        "kdump sub-header: {name} ({size} bytes at {off:#x}) cannot be read"
                    )));
                }
                Ok(Some(v.into_boxed_slice()))
            };
            if version >= 3 {
                vmcoreinfo = blob(
                    "VMCOREINFO (offset_vmcoreinfo, size_vmcoreinfo)",
                    order.u64(&s, l.offset_vmcoreinfo),
                    long(l.size_vmcoreinfo),
                    MAX_VMCOREINFO,
                )?;
            }
            if version >= 4 {
                notes = blob(
                    "ELF note section (offset_note, size_note)",
                    order.u64(&s, l.offset_note),
                    long(l.size_note),
                    MAX_NOTES,
                )?;
            }
        }

        // The bitmaps: two halves when the bitmap can hold max_mapnr bits
        // twice over (crash's dump_is_partial; libkdumpfile's read_bitmap),
        // else one bitmap serving as both (old diskdump).
        let needed = max_mapnr.div_ceil(8).div_ceil(bs);
        let two = u64::from(f.bitmap_blocks) >= needed.saturating_mul(2);
        let (first_off, second_off, half) = if two {
            (bitmap_off, bitmap_off + bitmap_len / 2, bitmap_len / 2)
        } else {
            (bitmap_off, bitmap_off, bitmap_len)
        };
        let (lo, hi) = split.unwrap_or((0, u64::MAX));
        let rank = rank_index(&src, image, second_off, half, lo, hi)?;
        let incomplete = f.status & DUMP_DH_COMPRESSED_INCOMPLETE != 0;
        let room = (vlen - desc_off) / DESC_SIZE;
        if rank.total() > room && !incomplete {
            return Err(Error::BadCore(format!(
                "the kdump 2nd bitmap marks {} dumped pages, whose descriptors ({} bytes at \
                 {desc_off:#x}) run past the end of the {vlen}-byte dump: truncated dump or \
                 corrupt bitmap",
                rank.total(),
                rank.total() * DESC_SIZE
            )));
        }
        let held = rank.total().min(room);
        // The 1st bitmap's runs, bounded by what the file holds.
        let ram = if two && first_off != second_off {
            let cap = usize::try_from(held)
                .unwrap_or(usize::MAX)
                .saturating_add(1 << 16);
            runs_of(&src, image, first_off, half, cap)?
        } else {
            None
        };
        Ok(Kdump {
            cache: Cache::new(bs)?,
            src,
            unit_shift,
            page_size,
            span: page_size.min(bs),
            is_64,
            big_endian: order.big,
            version,
            status: f.status,
            machine,
            sub: sub_name,
            dump_level,
            split,
            vmcoreinfo,
            notes,
            desc_off,
            bits: half.saturating_mul(8),
            rank,
            held,
            ram,
        })
    }

    /// The header's `block_size`: the unit of the bitmaps and stored pages.
    pub fn block_size(&self) -> u64 {
        1 << self.unit_shift
    }

    /// `utsname.machine`, NUL-trimmed ("" or "Unknown" from QEMU).
    pub fn machine(&self) -> &str {
        &self.machine
    }

    /// True if the header is big-endian (the dumped machine's order).
    pub fn big_endian(&self) -> bool {
        self.big_endian
    }

    /// The raw VMCOREINFO text from the sub-header.
    pub fn vmcoreinfo(&self) -> Option<&[u8]> {
        self.vmcoreinfo.as_deref()
    }

    /// The raw ELF note section from the sub-header.
    pub fn notes(&self) -> Option<&[u8]> {
        self.notes.as_deref()
    }

    /// Pages (of 4 KiB, as every container counts them) the file holds.
    pub fn held_pages(&self) -> u64 {
        (self.held << self.unit_shift).div_ceil(4096).max(self.held)
    }

    /// What the dump is, for messages.
    pub fn describe(&self) -> String {
        let codec = codec_of(self.status).map_or("uncompressed", |c| c.1);
        let mut s = format!(
            "kdump-compressed (header version {}, {codec} pages",
            self.version
        );
        if matches!(self.src, Source::Flat(_)) {
            s += ", flattened";
        }
        if let (false, Some(sub)) = (self.is_64, self.sub) {
            s += &format!(", 32-bit with the {sub} sub-header");
        }
        if self.dump_level != 0 {
            s += &format!(", dump level {}", self.dump_level);
        }
        if self.big_endian {
            s += ", big-endian";
        }
        if self.block_size() != self.page_size {
            s += &format!(
                ", {} KiB blocks of {} KiB pages",
                self.block_size() >> 10,
                self.page_size >> 10
            );
        }
        if let Some((a, b)) = self.split {
            s += &format!(", split part: pfns {a:#x}-{b:#x}");
        }
        if self.status & DUMP_DH_COMPRESSED_INCOMPLETE != 0 {
            s += ", incomplete";
        }
        s + ")"
    }

    /// The descriptor index of dump unit `unit`, if it is dumped.
    #[inline(always)]
    fn index_of(&self, unit: u64) -> Option<u64> {
        self.rank.rank(unit).filter(|&i| i < self.held)
    }

    /// A read error about the page descriptor of `unit`.
    #[cold]
    fn bad(&self, unit: u64, d: Option<&Desc>, what: &str) -> Error {
        let desc = d.map_or(String::new(), |d| {
            format!(
                " (offset {:#x}, size {}, flags {:#x})",
                d.offset, d.size, d.flags
            )
        });
        let incomplete = if self.status & DUMP_DH_COMPRESSED_INCOMPLETE != 0 {
            " (the dump is marked incomplete)"
        } else {
            ""
        };
        Error::BadCore(format!(
            "kdump page of pfn {unit:#x}: descriptor{desc} {what}{incomplete}"
        ))
    }

    /// The page descriptor of `unit` (the `index`th).
    #[inline]
    fn desc(&self, image: &Image, unit: u64, index: u64) -> Result<Desc> {
        let at = self.desc_off + index * DESC_SIZE;
        let Some(b) = self.src.array::<24>(image, at) else {
            return Err(self.bad(
                unit,
                None,
                &format!("at {at:#x} lies past the end of the file"),
            ));
        };
        let o = Order {
            big: self.big_endian,
        };
        let d = Desc {
            offset: o.u64(&b, 0) as i64,
            size: o.u32(&b, 8),
            flags: o.u32(&b, 12),
        };
        let bs = self.block_size();
        let codec = codec_of(d.flags);
        let err = |what: String| Err(self.bad(unit, Some(&d), &what));
        if d.offset <= 0 || d.size == 0 {
            return err("was never written (zero offset or size)".into());
        }
        if u64::from(d.size) > bs || (codec.is_none() && u64::from(d.size) != bs) {
            let kind = if codec.is_some() {
                "compressed"
            } else {
                "stored"
            };
            return err(format!(
                "has a {kind} size larger than a block or not a whole block (block_size {bs})"
            ));
        }
        if (d.offset as u64)
            .checked_add(d.size.into())
            .is_none_or(|e| e > self.src.len(image))
        {
            return err(format!(
                "points outside the {}-byte dump",
                self.src.len(image)
            ));
        }
        Ok(d)
    }

    /// Decompresses the page of `unit` into the cache and copies
    /// `buf.len()` bytes from `in_unit` out of it.
    #[inline(never)]
    fn fill(
        &self,
        image: &Image,
        unit: u64,
        d: &Desc,
        codec: (u32, &str),
        in_unit: usize,
        buf: &mut [u8],
    ) -> Result<()> {
        let bs = self.block_size() as usize;
        let mut run = |s: &mut Scratch| -> Result<()> {
            let oom = |_| Error::OutOfMemory("a buffer for a kdump page".into());
            if s.out.len() < bs {
                s.out.try_reserve_exact(bs - s.out.len()).map_err(oom)?;
                s.out.resize(bs, 0);
            }
            let size = d.size as usize;
            if s.input.len() < size {
                s.input
                    .try_reserve_exact(size - s.input.len())
                    .map_err(oom)?;
                s.input.resize(size, 0);
            }
            let mut out = std::mem::take(&mut s.out);
            let mut input = std::mem::take(&mut s.input);
            let r = match self.src.view(image, d.offset as u64, &mut input[..size]) {
                None => Err(self.bad(unit, Some(d), "points at bytes the file does not hold")),
                Some(data) => decompress(s, codec.0, data, &mut out[..bs]).map_err(|e| {
                    self.bad(unit, Some(d), &format!("holds {} data that {e}", codec.1))
                }),
            };
            if r.is_ok() {
                self.cache.put(unit, &out[..bs]);
                buf.copy_from_slice(&out[in_unit..in_unit + buf.len()]);
            }
            s.out = out;
            s.input = input;
            r
        };
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut s) => run(&mut s),
            Err(_) => run(&mut Scratch::default()),
        })
    }
}

/// The fields of a `page_desc_t` a reader needs.
#[derive(Debug, Clone, Copy)]
struct Desc {
    offset: i64,
    size: u32,
    flags: u32,
}

impl PhysMem for Kdump {
    /// The span holding `pa` (its `off` is `pa` itself: pages are read by
    /// physical address), up to the end of its kernel page.
    #[inline]
    fn locate(&self, pa: u64) -> Option<Span> {
        self.index_of(pa >> self.unit_shift)?;
        let in_span = pa & (self.span - 1);
        Some(Span {
            off: pa,
            len: self.span - in_span,
        })
    }

    fn held_pages(&self) -> u64 {
        Kdump::held_pages(self)
    }

    /// `Filtered` for a page of the 1st bitmap (it existed) left out of the
    /// 2nd (makedumpfile's `-d` excluded it).
    #[cold]
    fn missing(&self, pa: u64) -> Fault {
        let unit = pa >> self.unit_shift;
        let filtered = self.ram.as_ref().is_some_and(|runs| {
            let i = runs.partition_point(|r| r.0 <= unit);
            i > 0 && unit < runs[i - 1].1
        });
        if filtered {
            Fault::Filtered { pa }
        } else {
            Fault::NotInDump { pa }
        }
    }

    /// Reads `buf.len()` bytes at physical address `off` (within one span):
    /// from the cache, straight from the file for a page stored
    /// uncompressed, else by decompressing the page into the cache.
    #[inline]
    fn read_at(&self, image: &Image, off: u64, buf: &mut [u8]) -> Result<usize> {
        let unit = off >> self.unit_shift;
        let in_unit = (off & (self.block_size() - 1)) as usize;
        if buf.is_empty() {
            return Ok(0);
        }
        if in_unit + buf.len() > self.block_size() as usize {
            return Err(Error::BadCore(format!(
                "kdump read of {} bytes at physical address {off:#x} crosses a page",
                buf.len()
            )));
        }
        if self.cache.get(unit, in_unit, buf) {
            return Ok(buf.len());
        }
        let Some(index) = self.index_of(unit) else {
            return Err(Error::BadCore(format!(
                "kdump read at physical address {off:#x}: the page is not in the dump"
            )));
        };
        let d = self.desc(image, unit, index)?;
        match codec_of(d.flags) {
            None => self
                .src
                .read_at(image, d.offset as u64 + in_unit as u64, buf),
            Some(c) => {
                self.fill(image, unit, &d, c, in_unit, buf)?;
                Ok(buf.len())
            }
        }
    }

    /// Copies (compressed pages cannot be borrowed); an uncompressed page
    /// of a plain file is borrowed from the mapping.
    fn view<'a>(&'a self, image: &'a Image, off: u64, buf: &'a mut [u8]) -> Option<&'a [u8]> {
        let unit = off >> self.unit_shift;
        let in_unit = off & (self.block_size() - 1);
        if in_unit + buf.len() as u64 > self.block_size() {
            return None;
        }
        if let (Source::Plain, Some(index)) = (&self.src, self.index_of(unit)) {
            if !self.cache.get(unit, in_unit as usize, buf) {
                let d = self.desc(image, unit, index).ok()?;
                if codec_of(d.flags).is_none() {
                    return image.view(d.offset as u64 + in_unit, buf);
                }
            } else {
                return Some(&*buf);
            }
        }
        let n = self.read_at(image, off, buf).ok()?;
        (n == buf.len()).then_some(&*buf)
    }

    #[inline]
    fn array<const N: usize>(&self, image: &Image, off: u64) -> Option<[u8; N]> {
        let mut b = [0u8; N];
        (self.read_at(image, off, &mut b).ok()? == N).then_some(b)
    }

    /// Where the page's data lies in the file: its bytes, for a page
    /// stored as is; the start of its compressed data otherwise (in a
    /// flattened stream, in the record that holds it).
    fn file_offset(&self, image: &Image, pa: u64) -> Option<u64> {
        let unit = pa >> self.unit_shift;
        let d = self.desc(image, unit, self.index_of(unit)?).ok()?;
        // Within a block stored as is, the page's own bytes; a compressed
        // block's data as a whole.
        let at = match codec_of(d.flags) {
            None => (d.offset as u64).checked_add(pa & (self.block_size() - 1))?,
            Some(_) => d.offset as u64,
        };
        match &self.src {
            Source::Plain => Some(at),
            Source::Flat(flat) => flat.contiguous(at, 1),
        }
    }

    /// Locations are physical addresses of compressed pages.
    fn in_file(&self) -> bool {
        false
    }

    fn location_offset(&self, image: &Image, loc: u64) -> Option<u64> {
        self.file_offset(image, loc)
    }

    /// Locations are physical addresses, up to the end of the bitmap.
    fn end(&self, _image: &Image) -> u64 {
        self.bits
            .checked_shl(self.unit_shift)
            .filter(|&e| e >> self.unit_shift == self.bits)
            .unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records that overlap: a later one wins for the bytes both cover,
    /// whatever the order of their offsets.
    #[test]
    fn flat_merge_later_records_win() {
        // (dump offset, size, file offset), in stream order.
        let raw = vec![
            (100, 50, 1000), // [100, 150)
            (0, 10, 2000),   // [0, 10)
            (120, 10, 3000), // [120, 130) splits the first
            (140, 20, 4000), // [140, 160) cuts the first's tail
            (90, 15, 5000),  // [90, 105) cuts the first's head
            (0, 10, 6000),   // replaces [0, 10) whole
        ];
        let f = Flat::merge(raw).unwrap();
        let want = [
            Rec {
                virt: 0,
                len: 10,
                file: 6000,
            },
            Rec {
                virt: 90,
                len: 15,
                file: 5000,
            },
            Rec {
                virt: 105,
                len: 15,
                file: 1005,
            },
            Rec {
                virt: 120,
                len: 10,
                file: 3000,
            },
            Rec {
                virt: 130,
                len: 10,
                file: 1030,
            },
            Rec {
                virt: 140,
                len: 20,
                file: 4000,
            },
        ];
        assert_eq!(f.recs, want);
        assert_eq!(f.vlen, 160);
        assert_eq!(f.held, 80);
    }

    /// Disjoint records out of order are sorted; holes read as zeros and
    /// reads stop at the end.
    #[test]
    fn flat_reads_through_records_and_holes() {
        let f = Flat::merge(vec![(8, 4, 100), (0, 4, 200)]).unwrap();
        let file: Vec<u8> = (0..=255).collect();
        let read = |o: u64, b: &mut [u8]| {
            b.copy_from_slice(&file[o as usize..o as usize + b.len()]);
            true
        };
        let mut buf = [0xffu8; 12];
        assert!(f.read(0, &mut buf, read));
        assert_eq!(buf, [200, 201, 202, 203, 0, 0, 0, 0, 100, 101, 102, 103]);
        let mut b = [0u8; 2];
        assert!(f.read(2, &mut b, read));
        assert_eq!(b, [202, 203]);
        assert!(!f.read(11, &mut b, read), "past the end");
        assert_eq!(f.contiguous(9, 3), Some(101));
        assert_eq!(f.contiguous(3, 2), None);
    }

    /// The LZO decoder reads literal runs, every match form and the end
    /// marker, and refuses what would read or write out of bounds.
    #[test]
    fn lzo_decoder_bounds() {
        // A first-byte literal run of 5 ("hello"), then an M2 copy of 3
        // bytes from distance 5 ("hel"), then the end marker.
        let inst = 0b0100_0000 | (4 & 7) << 2; // L=0 (len 3), D=4 -> dist (0<<3)+4+1
        let src = [17 + 5, b'h', b'e', b'l', b'l', b'o', inst, 0, 0x11, 0, 0];
        let mut out = [0u8; 8];
        assert_eq!(lzo1x_decompress(&src, &mut out), Ok(8));
        assert_eq!(&out, b"hellohel");
        let mut small = [0u8; 7];
        assert!(
            lzo1x_decompress(&src, &mut small).is_err(),
            "output overrun"
        );
        assert!(
            lzo1x_decompress(&src[..7], &mut out).is_err(),
            "input overrun"
        );
        // A copy from before the start.
        let bad = [17 + 1, b'x', 0b0101_1100, 0xff, 0x11, 0, 0];
        assert!(lzo1x_decompress(&bad, &mut out).is_err(), "lookbehind");
        assert!(lzo1x_decompress(&[], &mut out).is_err());
    }

    /// A page in the cache reads back; a page in the same slot replaces it.
    #[test]
    fn cache_get_put() {
        let c = Cache::new(4096).unwrap();
        let page: Vec<u8> = (0..4096).map(|i| (i * 7) as u8).collect();
        let mut b = [0u8; 13];
        assert!(!c.get(5, 3, &mut b));
        c.put(5, &page);
        assert!(c.get(5, 3, &mut b));
        assert_eq!(&b[..], &page[3..16]);
        assert!(!c.get(6, 3, &mut b));
        // Fill the set of page 5 with other pages: it is evicted.
        let set = c.set_of(5);
        let others: Vec<u64> = (6..).filter(|&u| c.set_of(u) == set).take(WAYS).collect();
        for &u in &others {
            c.put(u, &page);
        }
        assert!(!c.get(5, 0, &mut b));
    }

    #[test]
    fn split_mask() {
        assert_eq!(mask_word(0, 0, u64::MAX), !0);
        assert_eq!(mask_word(64, 70, 72), 0b1100_0000);
        assert_eq!(mask_word(0, 64, 128), 0);
    }
}

/// Reads the samples scripts/oracle/kdump_check.py has the fixture write
/// (`$KDUMP_ORACLE_DIR/NAME.kdump` and `NAME.expect`) and checks every
/// dumped page, whole and in 8-byte reads, against what was written.
#[cfg(test)]
mod samples {
    use super::*;
    use crate::image::ReadMode;

    #[test]
    #[ignore = "run by scripts/oracle/kdump_check.py"]
    fn kdump_oracle_samples_read() {
        let Ok(dir) = std::env::var("KDUMP_ORACLE_DIR") else {
            return;
        };
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(".kdump").map(str::to_owned))
            .collect();
        names.sort();
        for name in names {
            let path = std::path::Path::new(&dir).join(format!("{name}.kdump"));
            for mode in [ReadMode::Map, ReadMode::Pread] {
                let image = Image::open(&path, "core", mode).unwrap();
                let k = Kdump::parse(&image).unwrap_or_else(|e| panic!("{name}: {e}"));
                let exp = std::fs::read(format!("{dir}/{name}.expect")).unwrap();
                let mut at = 0;
                let mut n = 0;
                while at < exp.len() {
                    let pfn = u64::from_le_bytes(exp[at..at + 8].try_into().unwrap());
                    let bs = u64::from_le_bytes(exp[at + 8..at + 16].try_into().unwrap());
                    let want = &exp[at + 16..at + 16 + bs as usize];
                    at += 16 + bs as usize;
                    n += 1;
                    let pa = pfn * bs;
                    assert!(k.locate(pa).is_some(), "{name}: pfn {pfn:#x} not located");
                    let mut got = vec![0u8; bs as usize];
                    assert_eq!(k.read_at(&image, pa, &mut got).unwrap(), bs as usize);
                    assert!(got == want, "{name}: pfn {pfn:#x} differs");
                    for off in (0..bs).step_by(1000) {
                        let b: [u8; 8] = k.array(&image, pa + off).unwrap();
                        assert_eq!(&b[..], &want[off as usize..off as usize + 8]);
                    }
                }
                assert_eq!(k.held, n, "{name}");
                println!("{name}: {} ({n} pages)", k.describe());
            }
        }
    }
}
