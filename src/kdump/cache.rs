//! The cache of decompressed pages: a set-associative array of
//! sequence-locked slots, shared by every thread reading the dump.

use super::*;
use crate::cold::ZeroedWords;

/// A slot's tag: a sequence lock (odd while a writer fills the slot) and
/// the page it holds, plus one (0: empty).
#[derive(Default)]
pub(super) struct Tag {
    pub(super) seq: AtomicU64,
    pub(super) key: AtomicU64,
}

/// A set-associative cache of decompressed pages: `WAYS` slots per set,
/// each a sequence lock over the page's words, so readers never block or
/// allocate, and a reader racing a writer misses and decompresses itself.
pub(super) struct Cache {
    pub(super) words_per: usize,
    pub(super) set_bits: u32,
    pub(super) tags: Box<[Tag]>,
    pub(super) hands: Box<[AtomicU32]>,
    pub(super) words: ZeroedWords,
}

impl Cache {
    /// A cache of about `CACHE_BYTES` for pages of `unit` bytes.
    pub(super) fn new(unit: u64) -> Result<Cache> {
        let want = ((CACHE_BYTES / unit) as usize).max(MIN_SLOTS) / WAYS;
        let set_bits = usize::BITS - 1 - want.max(1).leading_zeros();
        let slots = WAYS << set_bits;
        let words_per = (unit / 8) as usize;
        let oom = || Error::OutOfMemory("the cache of decompressed kdump pages".into());
        let words = slots
            .checked_mul(words_per)
            .and_then(ZeroedWords::new)
            .ok_or_else(oom)?;
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
            words,
        })
    }

    #[inline(always)]
    pub(super) fn set_of(&self, unit: u64) -> usize {
        if self.set_bits == 0 {
            return 0;
        }
        (unit.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - self.set_bits)) as usize
    }

    /// Copies bytes `off..off + out.len()` of page `unit` into `out` if the
    /// cache holds it.
    #[inline]
    pub(super) fn get(&self, unit: u64, off: usize, out: &mut [u8]) -> bool {
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
            if off % 8 + out.len() <= 8 {
                // Within one word (an aligned 8-byte read, say): one load.
                let bytes = words[off / 8].load(Relaxed).to_ne_bytes();
                out.copy_from_slice(&bytes[off % 8..off % 8 + out.len()]);
                fence(Acquire);
                return tag.seq.load(Relaxed) == seq;
            }
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
    pub(super) fn put(&self, unit: u64, data: &[u8]) {
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
