//! Physical memory as a dump container holds it: each container answers
//! "where is physical address `pa`?" and reads the bytes found there.
//!
//! ELF cores and minidumps hold memory as it was, so a location is a file
//! offset and reads go to the core file (mapped: a bounds check and a copy).
//! A kdump-compressed dump holds pages compressed: its locations are
//! physical addresses, and its reads decompress through a bounded cache.

use crate::error::{Fault, Result};
use crate::image::Image;

/// A run of bytes in the dump: `len` bytes starting at `off` are contiguous
/// in the address space being read. `off` is a file offset in the core file,
/// except for kdump-compressed dumps, whose pages are compressed: there it is
/// the physical address. `off + len` may lie past the end of a truncated
/// file; readers clamp to the file and report a short read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// File offset of the first byte.
    pub off: u64,
    /// Number of bytes that follow contiguously (at least 1).
    pub len: u64,
}

/// Physical memory held by a dump container (an ELF core's PT_LOAD
/// segments, a minidump's or kdump file's bitmap of dumped pages).
///
/// The reading methods take locations `locate` gave; by default they read
/// the core file, which is where every container but kdump's keeps memory.
pub trait PhysMem: Send + Sync {
    /// Where physical address `pa` lies (a file offset, for containers that
    /// hold memory uncompressed) and how many bytes from there are
    /// contiguous, or `None` when the dump does not contain it.
    fn locate(&self, pa: u64) -> Option<Span>;

    /// How many pages of memory the file really holds: what bounds the
    /// work of a page walk, whatever the tables claim.
    fn held_pages(&self) -> u64;

    /// Why `locate(pa)` found nothing: not in the dump, or filtered out.
    #[cold]
    fn missing(&self, pa: u64) -> Fault {
        Fault::NotInDump { pa }
    }

    /// True when `locate` translates through another space (a space
    /// stacked on a handle): walkers then call `find`, which keeps the
    /// reason of a failure, rather than `locate` and then `missing`, which
    /// would translate again for the reason, doubling the work of a
    /// failure at every layer of a stack. Containers answer `locate`
    /// faster than `find`.
    const TRANSLATES: bool = false;

    /// `locate(pa)`, or why not. A space over another space overrides
    /// it to translate through its base once.
    #[inline(always)]
    fn find(&self, pa: u64) -> Result<Span, Fault> {
        match self.locate(pa) {
            Some(span) => Ok(span),
            None => Err(self.missing(pa)),
        }
    }

    /// True when locations are core-file offsets of bytes stored as they
    /// were (every container but kdump's): then the core file can be read
    /// directly, as the defaults below do.
    fn in_file(&self) -> bool {
        true
    }

    /// Reads `buf.len()` bytes at location `off`, within the span `locate`
    /// gave; fewer only when the core file ends early.
    #[inline(always)]
    fn read_at(&self, image: &Image, off: u64, buf: &mut [u8]) -> Result<usize> {
        image.read_at(off, buf)
    }

    /// The `buf.len()` bytes at location `off`, borrowed from the mapped
    /// file when possible, else copied into `buf`; `None` when they cannot
    /// be had.
    #[inline(always)]
    fn view<'a>(&'a self, image: &'a Image, off: u64, buf: &'a mut [u8]) -> Option<&'a [u8]> {
        image.view(off, buf)
    }

    /// `N` bytes at location `off` (a page-table entry).
    #[inline(always)]
    fn array<const N: usize>(&self, image: &Image, off: u64) -> Option<[u8; N]> {
        image.array(off)
    }

    /// The file offset where the bytes of `pa` are kept (compressed, for
    /// kdump), for `kvm_walk_pages`; `None` when the file does not hold them.
    fn file_offset(&self, image: &Image, pa: u64) -> Option<u64> {
        self.locate(pa)
            .and_then(|s| self.location_offset(image, s.off))
    }

    /// The file offset of location `loc` (one `locate` gave), as
    /// `file_offset` gives it.
    fn location_offset(&self, image: &Image, loc: u64) -> Option<u64> {
        (loc < image.len()).then_some(loc)
    }

    /// The end of this container's locations: page walks skip what lies
    /// beyond (the file length, for file offsets).
    fn end(&self, image: &Image) -> u64 {
        image.len()
    }
}

/// Index of the last element of `sorted` whose start (`key`) is at or below
/// `x`. Dumps have a handful of ranges, where a linear scan beats a binary
/// search; long lists are searched in O(log n).
#[inline(always)]
pub fn last_at_or_below<T>(sorted: &[T], x: u64, key: impl Fn(&T) -> u64) -> Option<usize> {
    if sorted.len() <= 8 {
        sorted.iter().rposition(|t| key(t) <= x)
    } else {
        sorted.partition_point(|t| key(t) <= x).checked_sub(1)
    }
}

/// Index of the longest range: most of a machine's RAM (and so most
/// lookups) falls in one range, so containers test it first.
pub fn longest<T>(ranges: &[T], len: impl Fn(&T) -> u64) -> usize {
    (0..ranges.len())
        .max_by_key(|&i| len(&ranges[i]))
        .unwrap_or(0)
}
