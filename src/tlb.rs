//! A small translation cache (TLB) shared by every thread reading through
//! one address space.
//!
//! A dump never changes, so a virtual page always translates to the same
//! place: an entry is either right or absent, and the only hazard is
//! pairing one page's tag with another's location while writers replace a
//! slot. Each slot is a sequence lock over a tag and a location: a writer
//! claims the slot by moving its sequence from even to odd (a writer that
//! loses the race gives up), writes both, then makes the sequence even
//! again; a reader takes the location only if the sequence was the same
//! even number before and after it read the tag and location, so it never
//! pairs words from two writes, however many writes run between its loads
//! (a tag checked twice would not do: a slot can go from page A to B and
//! back to A while a reader sleeps). A hit costs three loads and a fence,
//! with no lock and no allocation.
//!
//! What is cached is where a 4 KiB virtual page lies in the container (the
//! span a translation gives, a file offset or, for kdump, a physical
//! address), whatever the size of the mapping: a hit needs neither the
//! page tables nor the container's index.

use crate::physmem::Span;
use std::sync::atomic::{fence, AtomicU64, Ordering};

/// Slots: 1024 x 24 bytes, a 4 MiB reach of 4 KiB pages (a debugger's
/// working set: the structures it follows, the stacks it reads).
const SLOTS: usize = 1024;

#[derive(Default)]
struct Slot {
    /// Even when the slot is stable, odd while a writer fills it.
    seq: AtomicU64,
    /// The virtual page number plus one; 0 when the slot is empty.
    tag: AtomicU64,
    /// Where the page's first byte lies in the container.
    loc: AtomicU64,
}

/// The translation cache.
pub struct Tlb {
    slots: Box<[Slot]>,
}

impl Default for Tlb {
    fn default() -> Self {
        Tlb {
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
        }
    }
}

impl Tlb {
    #[inline(always)]
    fn slot(&self, vpn: u64) -> &Slot {
        let h = vpn.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SLOTS.trailing_zeros());
        &self.slots[h as usize % SLOTS]
    }

    /// Where `va` lies, to the end of its 4 KiB page, if cached.
    #[inline(always)]
    pub fn get(&self, va: u64) -> Option<Span> {
        let vpn = va >> 12;
        let s = self.slot(vpn);
        let seq = s.seq.load(Ordering::Acquire);
        let tag = s.tag.load(Ordering::Relaxed);
        let loc = s.loc.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if tag != vpn.wrapping_add(1) || seq & 1 != 0 || s.seq.load(Ordering::Relaxed) != seq {
            return None;
        }
        let in_page = va & 0xfff;
        Some(Span {
            off: loc.wrapping_add(in_page),
            len: 4096 - in_page,
        })
    }

    /// Caches `span`, where `va` lies. The caller checks that the whole
    /// 4 KiB page of `va` lies contiguously there (from `span.off` minus
    /// `va`'s offset in the page), as a hit assumes; a span that does not
    /// reach the end of the page is not kept either.
    #[inline(always)]
    pub fn put(&self, va: u64, span: Span) {
        let in_page = va & 0xfff;
        if span.len < 4096 - in_page {
            return;
        }
        let vpn = va >> 12;
        let s = self.slot(vpn);
        let seq = s.seq.load(Ordering::Relaxed);
        if seq & 1 != 0
            || s.seq
                .compare_exchange(
                    seq,
                    seq.wrapping_add(1),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return; // another writer holds the slot
        }
        fence(Ordering::Release);
        s.tag.store(vpn.wrapping_add(1), Ordering::Relaxed);
        s.loc
            .store(span.off.wrapping_sub(in_page), Ordering::Relaxed);
        s.seq.store(seq.wrapping_add(2), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_misses_and_replacement() {
        let tlb = Tlb::default();
        let span = |off, len| Span { off, len };
        assert!(tlb.get(0xffff_8000_0000_1234).is_none());
        tlb.put(0xffff_8000_0000_1234, span(0x20_1234, 1 << 20));
        assert_eq!(tlb.get(0xffff_8000_0000_1ff8), Some(span(0x20_1ff8, 8)));
        assert!(tlb.get(0xffff_8000_0000_2000).is_none());
        // A page whose rest is not contiguous is not kept.
        tlb.put(0x5000, span(0x9000, 0x10));
        assert!(tlb.get(0x5000).is_none());
        // Threads filling and reading slots never see another page's frame,
        // pages that share a slot included (8 pages per slot here).
        std::thread::scope(|sc| {
            for t in 0..4u64 {
                let tlb = &tlb;
                sc.spawn(move || {
                    for i in 0..200_000u64 {
                        let va = ((i * 7 + t) % (8 * SLOTS as u64)) << 12;
                        match tlb.get(va) {
                            Some(h) => assert_eq!(h.off, va * 3),
                            None => tlb.put(va, span(va * 3, 4096)),
                        }
                    }
                });
            }
        });
    }
}
