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
//! (VMCOREINFO `PAGESIZE`) passes it to [`Kdump::parse`]: it becomes
//! [`Kdump::page_size`] and the granularity of [`Span`]s, while bitmaps and
//! page data keep the header's unit (which is what the file was written in).
//!
//! Reads: [`PhysMem::locate`] is O(1) (a rank index over the 2nd bitmap, as
//! in `crate::minidump`, whose memory follows the pages the file holds);
//! [`PhysMem::read_at`] reads the page descriptor from the file by index,
//! serves an uncompressed page straight from the file, and decompresses a
//! compressed one into a bounded, lock-free cache of pages (a set-associative
//! array of sequence-locked slots), so repeated reads of a page cost a few
//! atomic loads and no system call or allocation.

#![allow(dead_code)] // the glue to the backends comes separately

use crate::error::{Error, Fault, Result};
use crate::image::Image;
use crate::physmem::{PhysMem, Span};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering::*};

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
/// Header `status` only: unused vmemmap pages were excluded (`-e`).
const DUMP_DH_EXCLUDED_VMEMMAP: u32 = 0x10;
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
/// new_utsname field indexes: sysname, nodename, release, version, machine.
const UTS_RELEASE: usize = 2;
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
const CACHE_BYTES: u64 = 4 << 20;
const MIN_SLOTS: usize = 8;
/// Ways per cache set.
const WAYS: usize = 4;

// ---------------------------------------------------------------------------
// The bytes of the dump: the file itself, or a flattened stream reassembled.

/// One record of a flattened stream, after merging: dump bytes
/// `[virt, virt + len)` are file bytes from `file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rec {
    virt: u64,
    len: u64,
    file: u64,
}

/// A flattened stream's index: its records sorted by dump offset, disjoint
/// (a later record overrides an earlier one for the bytes they share, as
/// `makedumpfile -R` writing them in order leaves them). Dump bytes no
/// record covers read as zeros, as the holes of a rearranged file do.
#[derive(Debug, Default)]
struct Flat {
    recs: Vec<Rec>,
    /// End of the furthest record: the reassembled dump's length.
    vlen: u64,
    /// Bytes the records hold, after merging.
    held: u64,
}

/// Where the dump's bytes are.
enum Source {
    Plain,
    Flat(Flat),
}

impl Flat {
    /// Indexes the records of the flattened stream in `image` (which starts
    /// with a makedumpfile header), checking each against the file.
    fn parse(image: &Image) -> Result<Flat> {
        let head: [u8; 32] = image.header(0).ok_or_else(|| {
            Error::BadCore(format!(
                "makedumpfile flattened header: the {}-byte file is too short",
                image.len()
            ))
        })?;
        // struct makedumpfile_header: signature[16], int64_t type, version,
        // big-endian ("change the values to big endian", makedumpfile.h).
        let typ = i64::from_be_bytes(head[16..24].try_into().unwrap());
        if typ != TYPE_FLAT_HEADER {
            return Err(Error::BadCore(format!(
                "makedumpfile flattened header: type {typ} (expected {TYPE_FLAT_HEADER}, \
                 TYPE_FLAT_HEADER)"
            )));
        }
        let len = image.len();
        let mut raw: Vec<(u64, u64, u64)> = Vec::new();
        let mut pos = MDF_HEADER_SIZE;
        loop {
            // struct makedumpfile_data_header: int64_t offset, buf_size, big-endian.
            let Some(h) = image.array::<16>(pos) else {
                return Err(Error::BadCore(format!(
                    "flattened stream cut short: no record header at file offset {pos:#x} \
                     (the file ends at {len:#x}, before the end mark)"
                )));
            };
            let off = i64::from_be_bytes(h[..8].try_into().unwrap());
            let size = i64::from_be_bytes(h[8..].try_into().unwrap());
            if off == END_FLAG_FLAT_HEADER && size == END_FLAG_FLAT_HEADER {
                break;
            }
            let data = pos + 16;
            let (Ok(o), Ok(s)) = (u64::try_from(off), u64::try_from(size)) else {
                return Err(Error::BadCore(format!(
                    "flattened stream: the record at file offset {pos:#x} has offset {off} and \
                     size {size} (expected both >= 0, or -1 and -1 to end the stream)"
                )));
            };
            if o.checked_add(s).is_none_or(|e| e > i64::MAX as u64) {
                return Err(Error::BadCore(format!(
                    "flattened stream: the record at file offset {pos:#x} ({s} bytes at dump \
                     offset {o:#x}) overflows"
                )));
            }
            if data.checked_add(s).is_none_or(|e| e > len) {
                return Err(Error::BadCore(format!(
                    "flattened stream cut short: the record at file offset {pos:#x} holds {s} \
                     bytes for dump offset {o:#x}, but the file ends at {len:#x}"
                )));
            }
            if s > 0 {
                raw.try_reserve(1)
                    .map_err(|_| Error::OutOfMemory("the flattened stream's index".into()))?;
                raw.push((o, s, data));
            }
            pos = data + s;
        }
        Flat::merge(raw)
    }

    /// Sorts records `(dump offset, size, file offset)`, given in stream
    /// order, into disjoint runs; where they overlap, the later one wins.
    fn merge(raw: Vec<(u64, u64, u64)>) -> Result<Flat> {
        let oom = || Error::OutOfMemory("the flattened stream's index".into());
        let mut sorted: Vec<(u64, u64, u64, usize)> = Vec::new();
        sorted.try_reserve_exact(raw.len()).map_err(|_| oom())?;
        sorted.extend(raw.iter().enumerate().map(|(i, &(o, s, f))| (o, s, f, i)));
        sorted.sort_unstable_by_key(|r| (r.0, r.3));
        let overlaps = sorted.windows(2).any(|w| w[0].0 + w[0].1 > w[1].0);
        let mut recs: Vec<Rec> = Vec::new();
        if !overlaps {
            recs.try_reserve_exact(sorted.len()).map_err(|_| oom())?;
            recs.extend(
                sorted
                    .iter()
                    .map(|&(virt, len, file, _)| Rec { virt, len, file }),
            );
        } else {
            // Insert in stream order, cutting what each record covers out
            // of those before it: O(n log n), and as many runs as records
            // plus the pieces cut in two.
            drop(sorted);
            let mut map: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
            for &(s, len, f) in &raw {
                let e = s + len;
                if let Some((&a, &(b, fo))) = map.range(..s).next_back() {
                    if b > s {
                        map.insert(a, (s, fo));
                        if b > e {
                            map.insert(e, (b, fo + (e - a)));
                        }
                    }
                }
                while let Some((&a, &(b, fo))) = map.range(s..e).next() {
                    map.remove(&a);
                    if b > e {
                        map.insert(e, (b, fo + (e - a)));
                    }
                }
                map.insert(s, (e, f));
            }
            recs.try_reserve_exact(map.len()).map_err(|_| oom())?;
            recs.extend(map.into_iter().map(|(virt, (end, file))| Rec {
                virt,
                len: end - virt,
                file,
            }));
        }
        let vlen = recs.last().map_or(0, |r| r.virt + r.len);
        let held = recs.iter().map(|r| r.len).sum();
        Ok(Flat { recs, vlen, held })
    }

    /// Index of the first record that ends after `off`.
    #[inline]
    fn first_after(&self, off: u64) -> usize {
        self.recs.partition_point(|r| r.virt + r.len <= off)
    }

    /// Copies dump bytes `[off, off + buf.len())` into `buf` (holes read as
    /// zeros) with `read(file_offset, piece)`; false past the end of the
    /// dump or when `read` fails.
    fn read(&self, off: u64, buf: &mut [u8], mut read: impl FnMut(u64, &mut [u8]) -> bool) -> bool {
        let Some(end) = off
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.vlen)
        else {
            return false;
        };
        let mut i = self.first_after(off);
        let mut at = off;
        while at < end {
            let lo = (at - off) as usize;
            match self.recs.get(i) {
                Some(r) if r.virt <= at => {
                    let stop = end.min(r.virt + r.len);
                    let hi = (stop - off) as usize;
                    if !read(r.file + (at - r.virt), &mut buf[lo..hi]) {
                        return false;
                    }
                    at = stop;
                    i += 1;
                }
                next => {
                    let stop = next.map_or(end, |r| r.virt.min(end));
                    buf[lo..(stop - off) as usize].fill(0);
                    at = stop;
                }
            }
        }
        true
    }

    /// The single record holding all of `[off, off + len)`, as a file offset.
    #[inline]
    fn contiguous(&self, off: u64, len: u64) -> Option<u64> {
        let r = self.recs.get(self.first_after(off))?;
        (r.virt <= off && off.checked_add(len)? <= r.virt + r.len).then(|| r.file + (off - r.virt))
    }
}

impl Source {
    /// Length of the dump's bytes.
    fn len(&self, image: &Image) -> u64 {
        match self {
            Source::Plain => image.len(),
            Source::Flat(f) => f.vlen,
        }
    }

    /// Bytes the file really holds.
    fn held(&self, image: &Image) -> u64 {
        match self {
            Source::Plain => image.len(),
            Source::Flat(f) => f.held,
        }
    }

    /// Fills `buf` from dump offset `off` with `pread` (for what is read
    /// once); false if the dump does not hold it all.
    fn read_exact(&self, image: &Image, off: u64, buf: &mut [u8]) -> bool {
        match self {
            Source::Plain => image.read_exact_at(off, buf),
            Source::Flat(f) => f.read(off, buf, |o, b| image.read_exact_at(o, b)),
        }
    }

    /// The bytes at dump offset `off`: borrowed from the mapped file when
    /// they are contiguous there, else copied into `buf`.
    #[inline]
    fn view<'a>(&'a self, image: &'a Image, off: u64, buf: &'a mut [u8]) -> Option<&'a [u8]> {
        match self {
            Source::Plain => image.view(off, buf),
            Source::Flat(f) => match f.contiguous(off, buf.len() as u64) {
                Some(fo) => image.view(fo, buf),
                None => {
                    let ok = f.read(off, buf, |o, b| {
                        image.read_at(o, b).is_ok_and(|n| n == b.len())
                    });
                    ok.then_some(&*buf)
                }
            },
        }
    }

    /// `N` bytes at dump offset `off`.
    #[inline]
    fn array<const N: usize>(&self, image: &Image, off: u64) -> Option<[u8; N]> {
        match self {
            Source::Plain => image.array(off),
            Source::Flat(f) => match f.contiguous(off, N as u64) {
                Some(fo) => image.array(fo),
                None => {
                    let mut b = [0u8; N];
                    f.read(off, &mut b, |o, p| image.read_exact_at(o, p))
                        .then_some(b)
                }
            },
        }
    }

    /// The data path: copies the bytes at dump offset `off` into `buf`;
    /// how many there were (fewer only at the end of a plain file).
    #[inline]
    fn read_at(&self, image: &Image, off: u64, buf: &mut [u8]) -> Result<usize> {
        match self {
            Source::Plain => image.read_at(off, buf),
            Source::Flat(f) => {
                let mut err = None;
                let ok = f.read(off, buf, |o, b| match image.read_at(o, b) {
                    Ok(n) => n == b.len(),
                    Err(e) => {
                        err = Some(e);
                        false
                    }
                });
                match err {
                    Some(e) => Err(e),
                    None if ok => Ok(buf.len()),
                    None => Ok(0),
                }
            }
        }
    }

    /// Calls `f` on `[off, off + len)` in pieces of `piece` bytes, in order,
    /// read with `pread`; false if the dump does not hold it all.
    fn for_each_piece(
        &self,
        image: &Image,
        off: u64,
        len: u64,
        piece: usize,
        mut f: impl FnMut(&[u8]),
    ) -> bool {
        match self {
            Source::Plain => image.for_each_piece(off, len, piece, f),
            Source::Flat(flat) => {
                let Some(end) = off.checked_add(len).filter(|&e| e <= flat.vlen) else {
                    return false;
                };
                let chunk = piece * (65536 / piece).max(1);
                let mut buf = vec![0u8; chunk.min(len as usize)];
                let mut at = off;
                while at < end {
                    let n = chunk.min((end - at) as usize);
                    if !flat.read(at, &mut buf[..n], |o, b| image.read_exact_at(o, b)) {
                        return false;
                    }
                    buf[..n].chunks(piece).for_each(&mut f);
                    at += n as u64;
                }
                true
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The 2nd bitmap's rank index (the scheme of crate::minidump).

/// Bits per block of the bitmap index (64 words).
const BLOCK_BITS: u64 = 4096;
/// `top` entry of a block with no bit set.
const EMPTY: u32 = u32::MAX;

/// 64 bitmap words holding at least one set bit, each with the number of
/// set bits before it in the whole bitmap.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Block([[u64; 2]; 64]);

/// The set bits of a bitmap in `[lo, hi)` (a split dump's pfn range).
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

/// The rank index over a bitmap.
struct Rank {
    top: Vec<u32>,
    blocks: Vec<Block>,
    total: u64,
}

impl Rank {
    /// Indexes the bitmap `[off, off + len)` of the dump, counting only the
    /// bits in `[lo, hi)`.
    fn build(src: &Source, image: &Image, off: u64, len: u64, lo: u64, hi: u64) -> Result<Rank> {
        let oom = || Error::OutOfMemory("the index of the kdump bitmap".into());
        let mut top = Vec::new();
        top.try_reserve_exact(len.div_ceil(BLOCK_BITS / 8) as usize)
            .map_err(|_| oom())?;
        let mut blocks: Vec<Block> = Vec::new();
        let mut total = 0u64;
        let mut failed = false;
        let mut bit0 = 0u64;
        let read = src.for_each_piece(image, off, len, (BLOCK_BITS / 8) as usize, |piece| {
            let base = bit0;
            bit0 += BLOCK_BITS;
            if failed {
                return;
            }
            if piece.iter().all(|&b| b == 0) || base >= hi || base + BLOCK_BITS <= lo {
                top.push(EMPTY);
                return;
            }
            let mut block = Block([[0; 2]; 64]);
            let mut any = false;
            for (i, c) in piece.chunks(8).enumerate() {
                let mut b = [0u8; 8];
                b[..c.len()].copy_from_slice(c);
                // Bits are numbered LSB first in each byte: a little-endian
                // word numbers them in order, whatever the dump's byte order.
                let w = u64::from_le_bytes(b) & mask_word(base + 64 * i as u64, lo, hi);
                block.0[i] = [w, total];
                total += u64::from(w.count_ones());
                any |= w != 0;
            }
            if !any {
                top.push(EMPTY);
                return;
            }
            if blocks.try_reserve(1).is_err() || blocks.len() >= EMPTY as usize {
                failed = true;
                return;
            }
            top.push(blocks.len() as u32);
            blocks.push(block);
        });
        if failed {
            return Err(oom());
        }
        if !read {
            return Err(Error::BadCore(format!(
                "the 2nd bitmap ({len} bytes at offset {off:#x}) lies past the end of the \
                 {}-byte dump",
                src.len(image)
            )));
        }
        Ok(Rank { top, blocks, total })
    }

    /// The number of set bits before `bit`, if `bit` is set.
    #[inline(always)]
    fn index(&self, bit: u64) -> Option<u64> {
        let b = *self.top.get(usize::try_from(bit / BLOCK_BITS).ok()?)?;
        if b == EMPTY {
            return None;
        }
        let [word, rank] = self.blocks[b as usize].0[(bit / 64 % 64) as usize];
        let mask = 1u64 << (bit % 64);
        (word & mask != 0).then(|| rank + u64::from((word & (mask - 1)).count_ones()))
    }
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
// The cache of decompressed pages.

/// A slot's tag: a sequence lock (odd while a writer fills the slot) and
/// the page it holds, plus one (0: empty).
#[derive(Default)]
struct Tag {
    seq: AtomicU64,
    key: AtomicU64,
}

/// A set-associative cache of decompressed pages: `WAYS` slots per set,
/// each a sequence lock over the page's words, so readers never block or
/// allocate, and a reader racing a writer misses and decompresses itself.
struct Cache {
    words_per: usize,
    set_bits: u32,
    tags: Box<[Tag]>,
    hands: Box<[AtomicU32]>,
    words: Box<[AtomicU64]>,
}

impl Cache {
    /// A cache of about `CACHE_BYTES` for pages of `unit` bytes.
    fn new(unit: u64) -> Result<Cache> {
        let want = ((CACHE_BYTES / unit) as usize).max(MIN_SLOTS) / WAYS;
        let set_bits = usize::BITS - 1 - want.max(1).leading_zeros();
        let slots = WAYS << set_bits;
        let words_per = (unit / 8) as usize;
        let oom = || Error::OutOfMemory("the cache of decompressed kdump pages".into());
        let mut words = Vec::new();
        words
            .try_reserve_exact(slots * words_per)
            .map_err(|_| oom())?;
        words.resize_with(slots * words_per, || AtomicU64::new(0));
        let mut tags = Vec::new();
        tags.try_reserve_exact(slots).map_err(|_| oom())?;
        tags.resize_with(slots, Tag::default);
        let mut hands = Vec::new();
        hands.try_reserve_exact(1 << set_bits).map_err(|_| oom())?;
        hands.resize_with(1 << set_bits, || AtomicU32::new(0));
        Ok(Cache {
            words_per,
            set_bits,
            tags: tags.into_boxed_slice(),
            hands: hands.into_boxed_slice(),
            words: words.into_boxed_slice(),
        })
    }

    #[inline(always)]
    fn set_of(&self, unit: u64) -> usize {
        if self.set_bits == 0 {
            return 0;
        }
        (unit.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - self.set_bits)) as usize
    }

    /// Copies bytes `off..off + out.len()` of page `unit` into `out` if the
    /// cache holds it.
    #[inline]
    fn get(&self, unit: u64, off: usize, out: &mut [u8]) -> bool {
        let key = unit.wrapping_add(1);
        let set = self.set_of(unit) * WAYS;
        for slot in set..set + WAYS {
            let tag = &self.tags[slot];
            if tag.key.load(Relaxed) != key {
                continue;
            }
            let seq = tag.seq.load(Acquire);
            if seq & 1 != 0 || tag.key.load(Relaxed) != key {
                return false;
            }
            let words = &self.words[slot * self.words_per..(slot + 1) * self.words_per];
            let end = off + out.len();
            for w in off / 8..end.div_ceil(8) {
                let bytes = words[w].load(Relaxed).to_ne_bytes();
                let (lo, hi) = ((w * 8).max(off), (w * 8 + 8).min(end));
                out[lo - off..hi - off].copy_from_slice(&bytes[lo - w * 8..hi - w * 8]);
            }
            fence(Acquire);
            return tag.seq.load(Relaxed) == seq;
        }
        false
    }

    /// Stores page `unit` (`data`: a whole page), unless another thread is
    /// writing the slot it would take.
    fn put(&self, unit: u64, data: &[u8]) {
        let set = self.set_of(unit);
        let first = set * WAYS;
        let way = (first..first + WAYS)
            .find(|&s| self.tags[s].key.load(Relaxed) == 0)
            .unwrap_or_else(|| first + self.hands[set].fetch_add(1, Relaxed) as usize % WAYS);
        let tag = &self.tags[way];
        let seq = tag.seq.load(Relaxed);
        if seq & 1 != 0
            || tag
                .seq
                .compare_exchange(seq, seq + 1, Acquire, Relaxed)
                .is_err()
        {
            return;
        }
        fence(Release);
        let words = &self.words[way * self.words_per..(way + 1) * self.words_per];
        for (w, bytes) in words.iter().zip(data.chunks_exact(8)) {
            w.store(u64::from_ne_bytes(bytes.try_into().unwrap()), Relaxed);
        }
        tag.key.store(unit.wrapping_add(1), Relaxed);
        tag.seq.store(seq + 2, Release);
    }
}

// ---------------------------------------------------------------------------
// Codecs.

/// Per-thread buffers and decoder states, reused so that a warm reader
/// does not allocate.
#[derive(Default)]
struct Scratch {
    input: Vec<u8>,
    out: Vec<u8>,
    #[cfg(feature = "zlib")]
    zlib: Option<flate2::Decompress>,
    #[cfg(feature = "zstd")]
    zstd: Option<ruzstd::decoding::FrameDecoder>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// The codec a descriptor's flags name, in the order readers test them
/// (makedumpfile's and crash's `if ... else if`): zlib, lzo, snappy, zstd.
fn codec_of(flags: u32) -> Option<(u32, &'static str)> {
    [
        (DUMP_DH_COMPRESSED_ZLIB, "zlib"),
        (DUMP_DH_COMPRESSED_LZO, "lzo"),
        (DUMP_DH_COMPRESSED_SNAPPY, "snappy"),
        (DUMP_DH_COMPRESSED_ZSTD, "zstd"),
    ]
    .into_iter()
    .find(|&(bit, _)| flags & bit != 0)
}

/// Decompresses `input` (codec `codec`) into `out`, which must come out
/// exactly full; the error says why not.
fn decompress(s: &mut Scratch, codec: u32, input: &[u8], out: &mut [u8]) -> Result<(), String> {
    let n = out.len();
    let size = |got: usize| {
        if got == n {
            Ok(())
        } else {
            Err(format!("decompresses to {got} bytes, not a page of {n}"))
        }
    };
    match codec {
        DUMP_DH_COMPRESSED_ZLIB => {
            #[cfg(feature = "zlib")]
            {
                // makedumpfile's compress2() and QEMU's write zlib-wrapped
                // deflate streams.
                use flate2::{Decompress, FlushDecompress, Status};
                let z = s.zlib.get_or_insert_with(|| Decompress::new(true));
                z.reset(true);
                let status = z
                    .decompress(input, out, FlushDecompress::Finish)
                    .map_err(|e| format!("is corrupt ({e})"))?;
                let got = z.total_out() as usize;
                match status {
                    Status::StreamEnd => size(got),
                    _ if got == n => Err(format!("expands past a page of {n} bytes")),
                    _ => Err(format!("ends early, after {got} of a page's {n} bytes")),
                }
            }
            #[cfg(not(feature = "zlib"))]
            {
                let _ = (s, input, size);
                Err(missing_codec("zlib"))
            }
        }
        DUMP_DH_COMPRESSED_LZO => {
            #[cfg(feature = "lzo")]
            {
                let _ = s;
                let got = lzo1x_decompress(input, out).map_err(str::to_owned)?;
                size(got)
            }
            #[cfg(not(feature = "lzo"))]
            {
                let _ = (s, input, size);
                Err(missing_codec("lzo"))
            }
        }
        DUMP_DH_COMPRESSED_SNAPPY => {
            #[cfg(feature = "snappy")]
            {
                // Raw snappy: makedumpfile and QEMU call snappy_compress().
                let _ = s;
                let want =
                    snap::raw::decompress_len(input).map_err(|e| format!("is corrupt ({e})"))?;
                if want != n {
                    return Err(format!(
                        "says it decompresses to {want} bytes, not a page of {n}"
                    ));
                }
                let got = snap::raw::Decoder::new()
                    .decompress(input, out)
                    .map_err(|e| format!("is corrupt ({e})"))?;
                size(got)
            }
            #[cfg(not(feature = "snappy"))]
            {
                let _ = (s, input, size);
                Err(missing_codec("snappy"))
            }
        }
        _ => {
            #[cfg(feature = "zstd")]
            {
                use ruzstd::decoding::errors::FrameDecoderError;
                let z = s.zstd.get_or_insert_with(|| {
                    let mut d = ruzstd::decoding::FrameDecoder::new();
                    // A page's frame needs no larger window than the page;
                    // refuse the allocation a lying frame header asks for.
                    d.set_max_window_size(MAX_BLOCK.max(8 << 20));
                    d
                });
                match z.decode_all(input, out) {
                    Ok(got) => size(got),
                    Err(FrameDecoderError::TargetTooSmall) => {
                        Err(format!("expands past a page of {n} bytes"))
                    }
                    Err(e) => Err(format!("is corrupt ({e})")),
                }
            }
            #[cfg(not(feature = "zstd"))]
            {
                let _ = (s, input, size);
                Err(missing_codec("zstd"))
            }
        }
    }
}

#[allow(dead_code)]
fn missing_codec(name: &str) -> String {
    format!("this build of the library cannot read (cargo feature `{name}` is off)")
}

/// Decompresses an LZO1X stream (what `lzo1x_1_compress` writes, and what
/// `lzo1x_decompress_safe` reads) into `out`; returns the bytes written.
/// Every read and copy is bounds-checked: corrupt input is an error.
///
/// The instruction set, from lzo1x_d.ch (and lzokay's decoder, which
/// follows it): after a first byte >= 18 (a literal run of `byte - 17`),
/// each instruction byte is
/// - `1LLDDDSS HHHHHHHH` (M2, >= 64): copy `(inst >> 5) + 1` bytes from
///   distance `(H << 3) + D + 1`, then `S` literals;
/// - `001LLLLL` (M3): copy `L + 2` bytes (L = 0: `31 + 255 * zeros + next`)
///   from distance `(LE16 >> 2) + 1`, then `LE16 & 3` literals;
/// - `0001HLLL` (M4): copy `L + 2` bytes (L = 0: `7 + 255 * zeros + next`)
///   from distance `16384 + (H << 14) + (LE16 >> 2)`; distance 16384 with
///   L = 1 ends the stream;
/// - `0000LLLL` after an instruction that copied no literals: a literal run
///   of `L + 3` (L = 0: `18 + 255 * zeros + next`);
/// - `0000DDSS HHHHHHHH` otherwise: copy 2 bytes from distance
///   `(H << 2) + D + 1` after 1-3 literals, or 3 bytes from
///   `(H << 2) + D + 2049` after a longer run; then `S` literals.
#[cfg(any(feature = "lzo", test))]
fn lzo1x_decompress(src: &[u8], out: &mut [u8]) -> Result<usize, &'static str> {
    const OVERRUN_IN: &str = "ends early (input overrun)";
    const OVERRUN_OUT: &str = "expands past a page (output overrun)";
    let mut ip = 0usize;
    let mut op = 0usize;
    let byte = |ip: &mut usize| -> Result<usize, &'static str> {
        let b = *src.get(*ip).ok_or(OVERRUN_IN)?;
        *ip += 1;
        Ok(usize::from(b))
    };
    // A length continued by zero bytes: each adds 255, then a non-zero byte.
    let long = |ip: &mut usize, base: usize| -> Result<usize, &'static str> {
        let mut n = base;
        loop {
            let b = *src.get(*ip).ok_or(OVERRUN_IN)?;
            *ip += 1;
            if b != 0 {
                return Ok(n + usize::from(b));
            }
            n += 255;
        }
    };
    let literals = |ip: &mut usize, op: &mut usize, n: usize, out: &mut [u8]| {
        let s = src.get(*ip..*ip + n).ok_or(OVERRUN_IN)?;
        out.get_mut(*op..*op + n)
            .ok_or(OVERRUN_OUT)?
            .copy_from_slice(s);
        *ip += n;
        *op += n;
        Ok::<(), &'static str>(())
    };
    let mut state;
    let first = *src.first().ok_or(OVERRUN_IN)?;
    if first >= 22 {
        ip = 1;
        literals(&mut ip, &mut op, usize::from(first) - 17, out)?;
        state = 4;
    } else if first >= 18 {
        ip = 1;
        state = usize::from(first) - 17;
        literals(&mut ip, &mut op, state, out)?;
    } else {
        state = 0;
    }
    loop {
        let inst = byte(&mut ip)?;
        let (dist, len, next);
        if inst >= 64 {
            let h = byte(&mut ip)?;
            dist = (h << 3) + ((inst >> 2) & 7) + 1;
            len = (inst >> 5) + 1;
            next = inst & 3;
        } else if inst >= 32 {
            len = match inst & 31 {
                0 => long(&mut ip, 31)? + 2,
                l => l + 2,
            };
            let le = byte(&mut ip)? | byte(&mut ip)? << 8;
            dist = (le >> 2) + 1;
            next = le & 3;
        } else if inst >= 16 {
            len = match inst & 7 {
                0 => long(&mut ip, 7)? + 2,
                l => l + 2,
            };
            let le = byte(&mut ip)? | byte(&mut ip)? << 8;
            let d = ((inst & 8) << 11) + (le >> 2);
            if d == 0 {
                if len != 3 {
                    return Err("has a malformed end marker");
                }
                break;
            }
            dist = d + 16384;
            next = le & 3;
        } else if state == 0 {
            let n = match inst {
                0 => long(&mut ip, 15)? + 3,
                l => l + 3,
            };
            literals(&mut ip, &mut op, n, out)?;
            state = 4;
            continue;
        } else {
            let h = byte(&mut ip)?;
            if state < 4 {
                dist = (inst >> 2) + (h << 2) + 1;
                len = 2;
            } else {
                dist = (inst >> 2) + (h << 2) + 2049;
                len = 3;
            }
            next = inst & 3;
        }
        if dist > op {
            return Err("refers back before its start (lookbehind overrun)");
        }
        if op + len > out.len() {
            return Err(OVERRUN_OUT);
        }
        // Byte by byte: the source may overlap what is being written.
        for i in op..op + len {
            out[i] = out[i - dist];
        }
        op += len;
        state = next;
        literals(&mut ip, &mut op, next, out)?;
    }
    if ip != src.len() {
        return Err("has bytes after its end marker (input not consumed)");
    }
    Ok(op)
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
    release: String,
    sub: Option<&'static str>,
    phys_base: u64,
    dump_level: u32,
    split: Option<(u64, u64)>,
    max_mapnr: u64,
    vmcoreinfo: Option<Box<[u8]>>,
    notes: Option<Box<[u8]>>,
    /// Dump offset of the first page descriptor.
    desc_off: u64,
    /// Number of bits of the 2nd bitmap (units it can describe).
    bits: u64,
    /// The 2nd bitmap: dumped pages.
    rank: Rank,
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
        let a: [u8; 4] = b[at..at + 4].try_into().unwrap();
        if self.big {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }
    fn u64(self, b: &[u8], at: usize) -> u64 {
        let a: [u8; 8] = b[at..at + 8].try_into().unwrap();
        if self.big {
            u64::from_be_bytes(a)
        } else {
            u64::from_le_bytes(a)
        }
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

    /// Parses a kdump-compressed file, plain or flattened. `page_size`:
    /// the kernel's page size when the caller knows it better than the
    /// header (VMCOREINFO `PAGESIZE`); it sets [`Kdump::page_size`] and the
    /// span granularity, while the bitmaps and stored pages keep the
    /// header's `block_size` (see the module documentation).
    pub fn parse(image: &Image, page_size: Option<u64>) -> Result<Kdump> {
        let head: [u8; 16] = image.header(0).unwrap_or([0; 16]);
        let src = if head.starts_with(MDF_SIGNATURE) {
            Source::Flat(Flat::parse(image)?)
        } else {
            Source::Plain
        };
        Kdump::parse_from(image, src, page_size)
    }

    fn parse_from(image: &Image, src: Source, page_size: Option<u64>) -> Result<Kdump> {
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
        let page_size = match page_size {
            None => bs,
            Some(p) if p.is_power_of_two() && (MIN_BLOCK..=MAX_BLOCK).contains(&p) => p,
            Some(p) => {
                return Err(Error::BadCore(format!(
                    "kernel page size {p} (expected a power of two from {MIN_BLOCK} to \
                     {MAX_BLOCK})"
                )))
            }
        };
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
        let (mut phys_base, mut dump_level, mut split) = (0, 0, None);
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
            phys_base = long(l.phys_base);
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
        let rank = Rank::build(&src, image, second_off, half, lo, hi)?;
        let incomplete = f.status & DUMP_DH_COMPRESSED_INCOMPLETE != 0;
        let room = (vlen - desc_off) / DESC_SIZE;
        if rank.total > room && !incomplete {
            return Err(Error::BadCore(format!(
                "the kdump 2nd bitmap marks {} dumped pages, whose descriptors ({} bytes at \
                 {desc_off:#x}) run past the end of the {vlen}-byte dump: truncated dump or \
                 corrupt bitmap",
                rank.total,
                rank.total * DESC_SIZE
            )));
        }
        let held = rank.total.min(room);
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
            release: uts(&h, UTS_RELEASE),
            machine,
            sub: sub_name,
            phys_base,
            dump_level,
            split,
            max_mapnr,
            vmcoreinfo,
            notes,
            desc_off,
            bits: half.saturating_mul(8),
            rank,
            held,
            ram,
        })
    }

    /// The kernel's page size: the caller's, else the header's block size.
    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// The header's `block_size`: the unit of the bitmaps and stored pages.
    pub fn block_size(&self) -> u64 {
        1 << self.unit_shift
    }

    /// `utsname.machine`, NUL-trimmed ("" or "Unknown" from QEMU).
    pub fn machine(&self) -> &str {
        &self.machine
    }

    /// `utsname.release`.
    pub fn release(&self) -> &str {
        &self.release
    }

    /// True for the 64-bit header layout.
    pub fn is_64(&self) -> bool {
        self.is_64
    }

    /// True if the header is big-endian (the dumped machine's order).
    pub fn big_endian(&self) -> bool {
        self.big_endian
    }

    /// `header_version`.
    pub fn header_version(&self) -> u32 {
        self.version
    }

    /// The header's `status` flags.
    pub fn status(&self) -> u32 {
        self.status
    }

    /// The sub-header's `phys_base` (QEMU 7.2 writes a wrong one for
    /// x86-64: prefer VMCOREINFO's).
    pub fn phys_base(&self) -> u64 {
        self.phys_base
    }

    /// The sub-header's `dump_level` (makedumpfile's `-d`).
    pub fn dump_level(&self) -> u32 {
        self.dump_level
    }

    /// `max_mapnr` (`max_mapnr_64` from version 6).
    pub fn max_mapnr(&self) -> u64 {
        self.max_mapnr
    }

    /// The pfn range `[start, end)` of a split dump's part.
    pub fn split(&self) -> Option<(u64, u64)> {
        self.split
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
        if !self.is_64 {
            s += ", 32-bit";
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
        self.rank.index(unit).filter(|&i| i < self.held)
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

    /// Where the page's data (compressed or not) lies in a plain file; a
    /// flattened stream's pages have no single place (`None`).
    fn file_offset(&self, image: &Image, pa: u64) -> Option<u64> {
        let unit = pa >> self.unit_shift;
        let index = self.index_of(unit)?;
        match self.src {
            Source::Plain => self.desc(image, unit, index).ok().map(|d| d.offset as u64),
            Source::Flat(_) => None,
        }
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
                let k = Kdump::parse(&image, None).unwrap_or_else(|e| panic!("{name}: {e}"));
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
