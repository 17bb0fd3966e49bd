//! Reads of a mapped core that the mapping does not serve yet.
//!
//! The first read of a page of a file mapping takes a page fault, which
//! also maps the cached pages of the 64 KiB around it (Linux's
//! "fault-around"). Measured on the machines this library was developed
//! on, that fault costs from about one `pread(2)` to seven, depending on
//! how much of the file the system caches; a debugger reading a freshly
//! opened dump mostly makes first reads. So each 4 KiB page of the file
//! goes through three stages:
//!
//! 1. its first read is a `pread` of the bytes asked for (a dump read at
//!    random touches most pages once, and so does a libkvm-style reader);
//! 2. its second read is a `pread` of the whole page into a small cache,
//!    where the reads that follow find it (the fields of one structure);
//! 3. read again after leaving the cache, or read often from it, the page
//!    goes to the mapping: one fault maps the 64 KiB around it, whose reads
//!    are then copies from memory, without a system call.
//!
//! The cache is a fixed set of slots, each a sequence lock over the page's
//! words: readers never block or allocate, and a reader that races a
//! writer retries through the other stages. The cache and the bitmaps
//! live in one anonymous mapping: opening costs a system call, not the
//! clearing of half a megabyte, and a page of it takes memory only once
//! it is written.

use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering::*};

/// log2 of a page and of the 64 KiB a fault maps.
const PAGE_SHIFT: u32 = 12;
const CHUNK_SHIFT: u32 = 16;
const PAGE: usize = 1 << PAGE_SHIFT;
/// Pages the cache holds (512 KiB).
const SLOTS: usize = 128;
/// Cache hits after which a page goes to the mapping.
const PROMOTE: u32 = 32;

/// Where each page of a mapped file is in the stages above.
pub struct Cold {
    /// Per page: read once.
    once: &'static [AtomicU64],
    /// Per page: went through the cache.
    cached: &'static [AtomicU64],
    /// Per 64 KiB chunk: served by the mapping.
    mapped: &'static [AtomicU64],
    slots: &'static [Slot],
    /// The memory of all four, zeroed by the system; the slices above
    /// borrow it for as long as `Cold` lives (they are private and never
    /// outlive it).
    _memory: memmap2::MmapMut,
}

/// One cached page.
#[repr(C, align(64))]
struct Slot {
    /// Even when stable, odd while a writer fills the slot.
    seq: AtomicU64,
    /// The file page number plus one; 0 for an empty slot.
    page: AtomicU64,
    hits: AtomicU32,
    words: [AtomicU64; PAGE / 8],
}

impl Cold {
    /// The state of a file of `len` bytes, all pages unread; `None` when
    /// its memory cannot be had. The bitmaps take 1/16384 of the file's
    /// size, allocated zeroed (untouched parts cost no memory).
    pub fn new(len: u64) -> Option<Cold> {
        let words = |shift: u32| usize::try_from(len.div_ceil(64 << shift)).ok();
        let (pages, chunks) = (words(PAGE_SHIFT)?, words(CHUNK_SHIFT)?);
        let slots = SLOTS * size_of::<Slot>();
        let size = (2 * pages + chunks).checked_mul(8)?.checked_add(slots)?;
        let memory = memmap2::MmapMut::map_anon(size).ok()?;
        let base = memory.as_ptr();
        // SAFETY: the mapping is page-aligned, zeroed and `size` bytes long:
        // the slots, then three arrays of words, each aligned for its type
        // (a slot's size is a multiple of 64). All-zero atomics and slots
        // are valid. The mapping stays in `Cold` with the slices and is
        // only ever accessed through them, as atomics.
        unsafe {
            let words_at = |at: usize, n: usize| {
                std::slice::from_raw_parts(base.add(at).cast::<AtomicU64>(), n)
            };
            Some(Cold {
                slots: std::slice::from_raw_parts(base.cast::<Slot>(), SLOTS),
                once: words_at(slots, pages),
                cached: words_at(slots + 8 * pages, pages),
                mapped: words_at(slots + 16 * pages, chunks),
                _memory: memory,
            })
        }
    }

    /// Copies `data[start..start + buf.len()]` into `buf` (the range lies
    /// in `data`, the mapped file), from the mapping, the cache or with
    /// `pread`, by the stage of its page; returns the bytes read (fewer
    /// only when `pread` finds the file shorter than the mapping).
    #[inline(always)]
    pub fn read<E>(
        &self,
        data: &[u8],
        start: usize,
        buf: &mut [u8],
        pread: impl Fn(u64, &mut [u8]) -> Result<usize, E>,
    ) -> Result<usize, E> {
        if test(self.mapped, start >> CHUNK_SHIFT) {
            buf.copy_from_slice(&data[start..start + buf.len()]);
            return Ok(buf.len());
        }
        self.not_mapped(data, start, buf, pread)
    }

    #[inline(never)]
    fn not_mapped<E>(
        &self,
        data: &[u8],
        start: usize,
        buf: &mut [u8],
        pread: impl Fn(u64, &mut [u8]) -> Result<usize, E>,
    ) -> Result<usize, E> {
        let (first, last) = (start >> PAGE_SHIFT, (start + buf.len() - 1) >> PAGE_SHIFT);
        let map = |buf: &mut [u8]| {
            (start >> CHUNK_SHIFT..=(start + buf.len() - 1) >> CHUNK_SHIFT)
                .for_each(|c| set(self.mapped, c));
            buf.copy_from_slice(&data[start..start + buf.len()]);
            Ok(buf.len())
        };
        if first != last {
            // Reads across pages bypass the cache: a page's first read
            // reads them all once; a second goes to the mapping.
            if test(self.once, first) {
                return map(buf);
            }
            (first..=last).for_each(|p| set(self.once, p));
            return pread(start as u64, buf);
        }
        let in_page = start & (PAGE - 1);
        if let Some(hits) = self.slot(first).get(first, in_page, buf) {
            if hits >= PROMOTE {
                set(self.mapped, start >> CHUNK_SHIFT);
            }
            return Ok(buf.len());
        }
        if !test(self.once, first) {
            set(self.once, first);
            return pread(start as u64, buf);
        }
        if test(self.cached, first) {
            return map(buf); // back after leaving the cache
        }
        set(self.cached, first);
        let mut page = [0u8; PAGE];
        let at = first << PAGE_SHIFT;
        let n = pread(at as u64, &mut page)?;
        if n < in_page + buf.len() {
            // The file is shorter than it was: read what there is.
            return pread(start as u64, buf);
        }
        if n == PAGE || at + n == data.len() {
            self.slot(first).put(first, &page); // whole, as the file was
        }
        buf.copy_from_slice(&page[in_page..in_page + buf.len()]);
        Ok(buf.len())
    }

    fn slot(&self, page: usize) -> &Slot {
        &self.slots[page % SLOTS]
    }
}

impl Slot {
    /// Copies bytes `off..off + out.len()` of `page` into `out` if the slot
    /// holds that page; returns its hits so far.
    fn get(&self, page: usize, off: usize, out: &mut [u8]) -> Option<u32> {
        let seq = self.seq.load(Acquire);
        if seq & 1 != 0 || self.page.load(Relaxed) != page as u64 + 1 {
            return None;
        }
        let end = off + out.len();
        for w in off / 8..end.div_ceil(8) {
            let bytes = self.words[w].load(Relaxed).to_ne_bytes();
            let (lo, hi) = ((w * 8).max(off), (w * 8 + 8).min(end));
            out[lo - off..hi - off].copy_from_slice(&bytes[lo - w * 8..hi - w * 8]);
        }
        fence(Acquire);
        if self.seq.load(Relaxed) != seq {
            return None; // a writer replaced the page meanwhile
        }
        Some(self.hits.fetch_add(1, Relaxed) + 1)
    }

    /// Stores `data` as `page`, unless another thread is writing the slot.
    fn put(&self, page: usize, data: &[u8; PAGE]) {
        let seq = self.seq.load(Relaxed);
        if seq & 1 != 0
            || self
                .seq
                .compare_exchange(seq, seq + 1, Acquire, Relaxed)
                .is_err()
        {
            return;
        }
        fence(Release);
        for (w, bytes) in self.words.iter().zip(data.chunks_exact(8)) {
            w.store(u64::from_ne_bytes(bytes.try_into().unwrap()), Relaxed);
        }
        self.page.store(page as u64 + 1, Relaxed);
        self.hits.store(0, Relaxed);
        self.seq.store(seq + 2, Release);
    }
}

#[inline(always)]
fn test(bits: &[AtomicU64], i: usize) -> bool {
    bits[i / 64].load(Relaxed) & (1 << (i % 64)) != 0
}

fn set(bits: &[AtomicU64], i: usize) {
    bits[i / 64].fetch_or(1 << (i % 64), Relaxed);
}

/// `n` zeroed atomic words in memory the system zeroes on first touch, so
/// a large, sparsely used table (the kdump page cache) costs only what is
/// used, and nothing at open.
pub struct ZeroedWords {
    words: &'static [AtomicU64],
    /// The memory `words` borrows for as long as this lives.
    _memory: memmap2::MmapMut,
}

impl ZeroedWords {
    /// The words, or `None` when the memory cannot be had.
    pub fn new(n: usize) -> Option<ZeroedWords> {
        let memory = memmap2::MmapMut::map_anon(n.checked_mul(8)?.max(1)).ok()?;
        // SAFETY: the mapping is page-aligned, zeroed and at least 8n bytes
        // long; all-zero atomics are valid; it stays here with the slice,
        // which is private and only accessed as atomics.
        let words = unsafe { std::slice::from_raw_parts(memory.as_ptr().cast::<AtomicU64>(), n) };
        Some(ZeroedWords {
            words,
            _memory: memory,
        })
    }
}

impl std::ops::Deref for ZeroedWords {
    type Target = [AtomicU64];
    fn deref(&self) -> &[AtomicU64] {
        self.words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of `n` pages whose every byte says where it is.
    fn file(n: usize) -> Vec<u8> {
        (0..n * PAGE).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    /// Every stage returns the file's bytes, for reads inside one page,
    /// across pages and at the end, on first, second and later reads.
    #[test]
    fn every_stage_reads_the_file() {
        let data = file(40);
        let cold = Cold::new(data.len() as u64).unwrap();
        let preads = std::cell::Cell::new(0);
        let pread = |off: u64, b: &mut [u8]| -> Result<usize, ()> {
            preads.set(preads.get() + 1);
            let off = off as usize;
            let n = b.len().min(data.len() - off);
            b[..n].copy_from_slice(&data[off..off + n]);
            Ok(n)
        };
        for round in 0..40 {
            for (start, len) in [
                (8, 8),
                (4090, 12),
                (PAGE * 3 + 100, 300),
                (data.len() - 5, 5),
            ] {
                let mut buf = vec![0u8; len];
                assert_eq!(cold.read(&data, start, &mut buf, pread), Ok(len));
                assert_eq!(
                    buf,
                    &data[start..start + len],
                    "round {round} at {start:#x}"
                );
            }
        }
        // Each page: a pread of bytes, one of the page, then memory.
        assert!(preads.get() <= 4 * 2 + 2, "{} preads", preads.get());
    }

    /// A page leaves the cache when another takes its slot, and is then
    /// read through the mapping.
    #[test]
    fn evicted_pages_go_to_the_mapping() {
        let data = file(SLOTS + 1);
        let cold = Cold::new(data.len() as u64).unwrap();
        let pread = |off: u64, b: &mut [u8]| -> Result<usize, ()> {
            b.copy_from_slice(&data[off as usize..off as usize + b.len()]);
            Ok(b.len())
        };
        let mut b = [0u8; 8];
        for page in [0, 0, SLOTS, SLOTS] {
            cold.read(&data, page * PAGE, &mut b, pread).unwrap();
        }
        assert!(!test(cold.mapped, 0));
        cold.read(&data, 0, &mut b, pread).unwrap();
        assert!(test(cold.mapped, 0), "page 0 left the cache: mapped now");
    }
}
