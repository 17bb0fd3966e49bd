//! An address space: an MMU (a page-table format, a root, a container to
//! read tables and pages from) with a small TLB, as one translator. Every
//! backend describes its MMU, and so does every space stacked on a handle
//! ([`crate::Space`]); this is where reads, translations and physical
//! reads are written once.

use crate::error::{Error, Fault, Result};
use crate::image::Image;
use crate::pagetable::{Mapping, Step};
use crate::physmem::{PhysMem, Span};
use crate::registry::Translator;
use crate::tlb::Tlb;
use crate::walk::Page;

/// A kernel's MMU over a dump's container: what each backend provides;
/// [`Space`] makes it a translator.
pub trait Mmu: Send + Sync {
    /// The container the tables and pages are read from.
    type Mem: PhysMem;
    /// The container.
    fn mem(&self) -> &Self::Mem;
    /// True when every mapping `translate` gives is an aligned page of a
    /// power-of-two size, at least 4 KiB (page tables; not linear ranges).
    const PAGES: bool = true;
    /// Walks the tables for `va`, telling `trace` each entry it reads.
    fn translate_traced(
        &self,
        image: &Image,
        va: u64,
        trace: &mut impl FnMut(Step),
    ) -> Result<Mapping, Fault>;
    /// Walks the tables for `va`.
    #[inline(always)]
    fn translate(&self, image: &Image, va: u64) -> Result<Mapping, Fault> {
        self.translate_traced(image, va, &mut |_| {})
    }
    /// `kvm_walk_pages` over the kernel's tables.
    fn walk_pages(&self, image: &Image, f: &mut dyn FnMut(&Page) -> bool) -> Result<bool>;
    /// The kernel's `PAGE_SIZE`.
    fn page_size(&self) -> u64 {
        4096
    }
    /// Kernel displacement (`ka_kerndisp`): see [`Translator::kerndisp`].
    fn kerndisp(&self) -> i64 {
        0
    }
}

/// An address space: its MMU, with a TLB of where recently translated
/// pages lie (see [`crate::tlb`]).
pub struct Paged<A> {
    mmu: A,
    tlb: Tlb,
}

impl<A: Mmu + 'static> Paged<A> {
    /// The translator of `mmu`'s space.
    pub fn boxed(mmu: A) -> Box<dyn Translator> {
        Box::new(Paged {
            mmu,
            tlb: Tlb::default(),
        })
    }
}

impl<A: Mmu> Translator for Paged<A> {
    #[inline]
    fn kvatop(&self, image: &Image, va: u64) -> Result<Span, Fault> {
        if let Some(span) = self.tlb.get(va) {
            return Ok(span);
        }
        let mem = self.mmu.mem();
        let m = self.mmu.translate(image, va)?;
        let span = m.span_in(mem, va, A::PAGES)?;
        // Kept only if the mapping holds the whole 4 KiB page (a linear
        // range may start or end mid-page) and the page lies contiguously
        // in the container (a segment may start, or a kdump block end,
        // mid-page).
        let in_page = va & 0xfff;
        let whole = (A::PAGES || m.holds_page_of(va))
            && mem
                .locate(m.pa.wrapping_sub(in_page))
                .is_some_and(|p| p.off.wrapping_add(in_page) == span.off && p.len >= 4096);
        if whole {
            self.tlb.put(va, span);
        }
        Ok(span)
    }

    #[inline(always)]
    fn read_at(&self, image: &Image, off: u64, buf: &mut [u8]) -> Result<usize> {
        self.mmu.mem().read_at(image, off, buf)
    }

    fn walk_pages(&self, image: &Image, f: &mut dyn FnMut(&Page) -> bool) -> Result<bool> {
        self.mmu.walk_pages(image, f)
    }

    fn page_size(&self) -> u64 {
        self.mmu.page_size()
    }

    fn kerndisp(&self) -> i64 {
        self.mmu.kerndisp()
    }

    fn locate_phys(&self, pa: u64) -> Result<Span, Fault> {
        self.mmu.mem().find(pa)
    }

    fn view<'a>(&'a self, image: &'a Image, off: u64, buf: &'a mut [u8]) -> Option<&'a [u8]> {
        self.mmu.mem().view(image, off, buf)
    }

    fn held_pages(&self) -> u64 {
        self.mmu.mem().held_pages()
    }

    fn end(&self, image: &Image) -> u64 {
        self.mmu.mem().end(image)
    }

    fn in_file(&self) -> bool {
        self.mmu.mem().in_file()
    }

    fn location_offset(&self, image: &Image, loc: u64) -> Option<u64> {
        self.mmu.mem().location_offset(image, loc)
    }

    fn vtop(&self, image: &Image, va: u64) -> Result<u64, Fault> {
        self.mmu.translate(image, va).map(|m| m.pa)
    }

    fn trace(&self, image: &Image, va: u64, f: &mut dyn FnMut(Step)) -> Result<u64, Fault> {
        self.mmu
            .translate_traced(image, va, &mut |s| f(s))
            .map(|m| m.pa)
    }

    fn read_phys(&self, image: &Image, pa: u64, buf: &mut [u8]) -> Result<usize> {
        let mem = self.mmu.mem();
        let mut done = 0usize;
        while done < buf.len() {
            let at = pa.checked_add(done as u64).ok_or_else(|| {
                Error::physical(
                    pa,
                    Fault::OutOfRange(
                        "the read runs past the top of the physical address space".into(),
                    ),
                )
            })?;
            let span = mem.find(at).map_err(|f| Error::physical(at, f))?;
            let want = (buf.len() - done).min(usize::try_from(span.len).unwrap_or(usize::MAX));
            let n = mem.read_at(image, span.off, &mut buf[done..done + want])?;
            done += n;
            if n < want {
                break; // the core file ended early
            }
        }
        Ok(done)
    }
}
