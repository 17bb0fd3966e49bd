//! A rank index over a dump's page bitmap (a minidump's, or a kdump
//! file's 2nd bitmap): is bit N set, and how many bits are set before it
//! (the dumped page's number in file order), in O(1).
//!
//! The bitmap is indexed per block of 4096 bits: a table with one entry per
//! block (1/128 of the bitmap's size) names the copy of each block that has
//! a bit set, each word with its rank, so memory follows the pages the dump
//! really holds rather than the bitmap size a header claims.

/// Bits per block (64 words).
pub const BLOCK_BITS: u64 = 4096;
/// Bytes per block: what [`Builder::push`] takes at a time.
pub const BLOCK_BYTES: usize = (BLOCK_BITS / 8) as usize;
/// `top` entry of a block with no bit set.
const EMPTY: u32 = u32::MAX;

/// 64 bitmap words that hold at least one set bit, each with the number of
/// set bits in the whole bitmap before it: a word and its rank share a
/// cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Block([[u64; 2]; 64]);

/// The index.
pub struct RankIndex {
    /// For each block of the bitmap, its index in `blocks`, or `EMPTY`.
    top: Vec<u32>,
    /// The blocks with a bit set, in bitmap order.
    blocks: Vec<Block>,
    /// Set bits in the bitmap.
    total: u64,
}

/// Builds a [`RankIndex`] from the bitmap's bytes, a block at a time.
pub struct Builder {
    index: RankIndex,
    next_bit: u64,
    failed: bool,
}

impl Builder {
    /// A builder for a bitmap of `bytes` bytes; `None` if the table
    /// cannot be had.
    pub fn new(bytes: u64) -> Option<Builder> {
        let mut top = Vec::new();
        top.try_reserve_exact(usize::try_from(bytes.div_ceil(BLOCK_BITS / 8)).ok()?)
            .ok()?;
        Some(Builder {
            index: RankIndex {
                top,
                blocks: Vec::new(),
                total: 0,
            },
            next_bit: 0,
            failed: false,
        })
    }

    /// Adds the next block of the bitmap (`BLOCK_BYTES`, fewer at its end).
    /// Bits are numbered from the least significant of each byte, so a
    /// little-endian word numbers them in order. `keep(bit0)` masks the
    /// word whose first bit is `bit0` (all ones: keep every bit).
    pub fn push(&mut self, piece: &[u8], keep: impl Fn(u64) -> u64) {
        let base = self.next_bit;
        self.next_bit += BLOCK_BITS;
        let ix = &mut self.index;
        if self.failed || piece.iter().all(|&b| b == 0) {
            ix.top.push(EMPTY);
            return;
        }
        let mut block = Block([[0; 2]; 64]);
        let mut total = ix.total;
        for (i, c) in piece.chunks(8).enumerate() {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            let w = u64::from_le_bytes(b) & keep(base + 64 * i as u64);
            block.0[i] = [w, total];
            total += u64::from(w.count_ones());
        }
        if total == ix.total {
            ix.top.push(EMPTY);
            return;
        }
        if ix.blocks.len() >= EMPTY as usize || ix.blocks.try_reserve(1).is_err() {
            self.failed = true;
            ix.top.push(EMPTY);
            return;
        }
        ix.total = total;
        ix.top.push(ix.blocks.len() as u32);
        ix.blocks.push(block);
    }

    /// The index, or `None` if memory for it could not be had.
    pub fn finish(self) -> Option<RankIndex> {
        (!self.failed).then_some(self.index)
    }
}

impl RankIndex {
    /// Set bits in the bitmap.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Blocks that hold a set bit.
    pub fn blocks(&self) -> usize {
        self.blocks.len()
    }

    /// The number of `bit`'s block among those with a bit set, if its
    /// block has one.
    #[inline(always)]
    pub fn block_of(&self, bit: u64) -> Option<usize> {
        let b = *self.top.get(usize::try_from(bit / BLOCK_BITS).ok()?)?;
        (b != EMPTY).then_some(b as usize)
    }

    /// The number of set bits before `bit`, if `bit` is set.
    #[inline(always)]
    pub fn rank(&self, bit: u64) -> Option<u64> {
        let [word, rank] = self.blocks[self.block_of(bit)?].0[(bit / 64 % 64) as usize];
        let mask = 1u64 << (bit % 64);
        (word & mask != 0).then(|| rank + u64::from((word & (mask - 1)).count_ones()))
    }

    /// Every word of the blocks with a bit set, in bitmap order, as
    /// `(block number, word number, first bit, word)`.
    pub fn words(&self) -> impl Iterator<Item = (usize, usize, u64, u64)> + '_ {
        let blocks = self.top.iter().enumerate().filter(|&(_, &b)| b != EMPTY);
        blocks.flat_map(move |(no, &b)| {
            let (bi, bit0) = (b as usize, no as u64 * BLOCK_BITS);
            self.blocks[bi]
                .0
                .iter()
                .enumerate()
                .map(move |(wi, &[w, _])| (bi, wi, bit0 + wi as u64 * 64, w))
        })
    }
}
