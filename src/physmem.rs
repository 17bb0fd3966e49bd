//! Physical memory as a dump container holds it: each container answers one
//! question, "where in the core file is physical address `pa`?".

/// A run of bytes in the core file: `len` bytes starting at file offset `off`
/// are contiguous in the address space being read. `off + len` may lie past
/// the end of a truncated file; readers clamp to the file and report a short
/// read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// File offset of the first byte.
    pub off: u64,
    /// Number of bytes that follow contiguously (at least 1).
    pub len: u64,
}

/// Physical memory held by a dump container (an ELF full dump's PT_LOAD
/// segments, or a minidump's bitmap of dumped pages).
pub trait PhysMem: Send + Sync {
    /// The file span holding physical address `pa`, or `None` when the dump
    /// does not contain it.
    fn locate(&self, pa: u64) -> Option<Span>;

    /// How many pages of memory the file really holds: what bounds the
    /// work of a page walk, whatever the tables claim.
    fn held_pages(&self) -> u64;
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
