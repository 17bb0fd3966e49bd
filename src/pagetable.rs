//! One page-table walker for every architecture, driven by data.
//!
//! An architecture describes its MMU as a [`Format`]: entry size and byte
//! order, and per level the index bits, the valid and leaf (superpage/block)
//! tests, and how to extract the frame. Full dumps walk from a root table in
//! physical memory; minidumps walk from the flat page map the kernel writes
//! into the dump (a PTE or PDE array starting at `kernbase`).

use crate::error::Fault;
use crate::image::{uint, Image};
use crate::physmem::{PhysMem, Span};

/// `va` as an address of a 32-bit kernel (i386, arm, 32-bit mips), or
/// why it cannot be one; `kernel` names it in the message.
#[inline(always)]
pub fn check_32bit(va: u64, kernel: &'static str) -> Result<(), Fault> {
    if va >> 32 == 0 {
        Ok(())
    } else {
        Err(above_4g(kernel))
    }
}

#[cold]
#[inline(never)]
fn above_4g(kernel: &'static str) -> Fault {
    Fault::OutOfRange(format!(
        "{kernel} virtual addresses are 32-bit; this one lies at or above 4 GiB"
    ))
}

/// A test on an entry: `(entry & mask == value) != negate`, and, when
/// `any` is not 0, at least one of the `any` bits set (riscv: a valid leaf
/// has V and one of R, W, X).
#[derive(Debug, Clone, Copy)]
pub struct Bits {
    /// Bits to look at.
    pub mask: u64,
    /// Their value when the test holds.
    pub value: u64,
    /// Inverts the mask test.
    pub negate: bool,
    /// When not 0, one of these bits must also be set.
    pub any: u64,
}

impl Bits {
    /// Holds when `entry & mask == value`.
    pub const fn eq(mask: u64, value: u64) -> Bits {
        Bits {
            mask,
            value,
            negate: false,
            any: 0,
        }
    }
    /// This test, and one of `any` set as well.
    pub const fn and_any(self, any: u64) -> Bits {
        Bits { any, ..self }
    }
    /// Never holds (a level without superpages).
    pub const NEVER: Bits = Bits::eq(0, 1);
    /// Always holds.
    pub const ALWAYS: Bits = Bits::eq(0, 0);

    /// Applies the test to `entry`.
    #[inline(always)]
    pub fn test(&self, entry: u64) -> bool {
        ((entry & self.mask) == self.value) != self.negate
            && (self.any == 0 || entry & self.any != 0)
    }
}

/// Extracts a physical address from an entry: `(entry & mask) << shl`.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    /// Frame bits of the entry (attribute, NX and software bits cleared).
    pub mask: u64,
    /// Left shift applied after masking (riscv keeps the PPN at bit 10).
    pub shl: u32,
}

impl Frame {
    /// A frame held in place (`shl` 0), as on x86 and arm64.
    pub const fn mask(mask: u64) -> Frame {
        Frame { mask, shl: 0 }
    }
    /// The physical address in `entry`.
    #[inline(always)]
    pub fn of(&self, entry: u64) -> u64 {
        (entry & self.mask) << self.shl
    }
}

/// Where a walk read an entry from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// A table at this physical address.
    Phys(u64),
    /// The entry at this offset of the core file (a minidump's page map).
    File(u64),
}

/// One entry a walk read: the table level's name, where the table lies,
/// the entry's index in it and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The level's name ("PML4E", "PDE", "L2", ...).
    pub level: &'static str,
    /// Where the table (or the entry of a flat map) lies.
    pub table: Table,
    /// The entry's index.
    pub index: u64,
    /// The entry.
    pub entry: u64,
}

/// One level of a page table, top level first in [`Format::levels`].
#[derive(Debug, Clone, Copy)]
pub struct Level {
    /// Name used in error messages ("PML4", "PDE", "L2", ...).
    pub name: &'static str,
    /// Lowest virtual-address bit this level indexes; also log2 of the size
    /// a leaf entry at this level maps.
    pub shift: u32,
    /// Width of the index (ignored when the level is a flat file array).
    pub bits: u32,
    /// The entry is present.
    pub valid: Bits,
    /// The entry maps memory (a superpage or block) instead of pointing to a
    /// table. Ignored on the last level, whose valid entries always map.
    pub leaf: Bits,
    /// Frame of a leaf at this level.
    pub frame: Frame,
}

/// A leaf made of `2^k` consecutive entries of its level that repeat one
/// descriptor, mapping one larger page: ARM short-descriptor
/// supersections (16 L1 entries of 1 MiB for 16 MiB) and large pages (16
/// L2 entries of 4 KiB for 64 KiB; ARM ARM B3.5.1, "must be repeated in
/// 16 consecutive memory locations"). The frame is aligned to the whole
/// page, so the address takes the virtual-address bits below `shift`;
/// each entry still maps its own level-sized part.
#[derive(Debug, Clone, Copy)]
pub struct Wide {
    /// Which leaves of the level are wide.
    pub test: Bits,
    /// log2 of the whole page's size.
    pub shift: u32,
    /// Frame of the whole page.
    pub frame: Frame,
}

impl Wide {
    /// The physical address of the level-sized part of a leaf `e` that
    /// holds `va` (or, with `va` the part's first byte, of that part).
    #[inline(always)]
    fn pa(&self, e: u64, va: u64) -> u64 {
        self.frame.of(e) | (va & ((1u64 << self.shift) - 1))
    }
}

/// A [`Format`] some of whose levels have [`Wide`] leaves, one entry of
/// `wide` per level.
#[derive(Debug, Clone, Copy)]
pub struct WideFormat<const N: usize> {
    /// The format.
    pub format: Format<N>,
    /// Wide leaves, per level (a `test` of [`Bits::NEVER`] where there are
    /// none).
    pub wide: [Wide; N],
}

impl<const N: usize> WideFormat<N> {
    /// [`Format::translate_traced`], with wide leaves.
    #[inline(always)]
    pub fn translate_traced<M: PhysMem>(
        &self,
        image: &Image,
        mem: &M,
        root: Root,
        va: u64,
        trace: &mut impl FnMut(Step),
    ) -> Result<Mapping, Fault> {
        self.format
            .translate_in(image, mem, root, va, Some(&self.wide), trace)
    }

    /// [`Format::walk`], with wide leaves: each entry is reported as the
    /// level-sized part of the page it maps.
    pub fn walk<M: PhysMem>(
        &self,
        image: &Image,
        mem: &M,
        root: Root,
        va_bits: u32,
        f: &mut dyn FnMut(u64, &Mapping) -> bool,
    ) -> Result<bool, Fault> {
        self.format
            .walk_in(image, mem, root, va_bits, Some(&self.wide), f)
    }
}

/// A page-table format of `N` levels (a fixed count, so a walk over a
/// `static` format unrolls into straight-line code).
#[derive(Debug, Clone, Copy)]
pub struct Format<const N: usize> {
    /// Entry size in bytes: 4 or 8.
    pub entry_size: u8,
    /// Entries are big-endian.
    pub big_endian: bool,
    /// What an entry that points to the next level's table must also
    /// pass (riscv: no leaf-only bits; EPT: no write without read); one
    /// that fails is a fault.
    pub pointer: Bits,
    /// Frame of an entry that points to the next level's table.
    pub table: Frame,
    /// Levels, top first.
    pub levels: [Level; N],
}

/// Where a walk starts.
#[derive(Debug, Clone, Copy)]
pub enum Root {
    /// A table at this physical address, indexed by the first level's bits.
    Phys(u64),
    /// A flat entry array in the core file at offset `off` with `count`
    /// entries; entry `i` covers `base + (i << shift)` of the first level.
    File {
        /// File offset of entry 0.
        off: u64,
        /// Number of entries.
        count: u64,
        /// Virtual address entry 0 maps.
        base: u64,
    },
}

/// A successful translation: a run of `size` virtual bytes from `first`
/// that lies contiguously in the base space, the translated byte at `pa`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// Physical address of the translated byte.
    pub pa: u64,
    /// First virtual address of the page, superpage or linear range.
    pub first: u64,
    /// Its size: a power of two for pages, any length for linear ranges.
    pub size: u64,
    /// The leaf entry (0 where there is none).
    pub entry: u64,
}

impl Mapping {
    /// The translation of `va` by the page (or superpage) of `size` bytes
    /// that holds it.
    #[inline(always)]
    pub fn at(va: u64, pa: u64, size: u64, entry: u64) -> Mapping {
        Mapping {
            pa,
            first: va & !(size - 1),
            size,
            entry,
        }
    }

    /// Where `va` (which the mapping translated) lies in it. A walker
    /// may have changed bits of `va` above the page before walking
    /// (aarch64 pointer-authentication codes), so when `va` is not in
    /// `[first, first + size)` the page's own bits say.
    #[inline(always)]
    fn offset(&self, va: u64) -> u64 {
        let d = va.wrapping_sub(self.first);
        if d < self.size {
            d
        } else {
            va & (self.size - 1)
        }
    }

    /// Bytes from `va` (which the mapping translated) to its end.
    #[inline(always)]
    pub fn left(&self, va: u64) -> u64 {
        self.size - self.offset(va)
    }

    /// True when the whole 4 KiB page of `va` lies in the mapping.
    #[inline(always)]
    pub fn holds_page_of(&self, va: u64) -> bool {
        let at = self.offset(va);
        let in_page = va & 0xfff;
        at >= in_page && self.size >= 4096 && at - in_page <= self.size - 4096
    }

    /// Where the byte this mapping translated (at virtual `va`) lies in
    /// `mem`, and how many bytes from there are contiguous: to the end of
    /// the page or superpage, or of the container's span if that comes
    /// first (a superpage can extend past the end of an ELF segment).
    /// `pages`: the mapping is an aligned page of a power-of-two size (a
    /// page-table leaf), whose end follows from `va` alone.
    #[inline(always)]
    pub fn span_in<M: PhysMem>(&self, mem: &M, va: u64, pages: bool) -> Result<Span, Fault> {
        let span = if M::TRANSLATES {
            mem.find(self.pa)?
        } else {
            match mem.locate(self.pa) {
                Some(span) => span,
                None => return Err(mem.missing(self.pa)),
            }
        };
        let left = if pages {
            self.size - (va & (self.size - 1))
        } else {
            self.left(va)
        };
        Ok(Span {
            off: span.off,
            len: span.len.min(left),
        })
    }
}

impl<const N: usize> Format<N> {
    /// This format with `bits` cleared from every frame mask (bits the
    /// hardware takes for something else, such as AMD's memory-encryption
    /// C-bit).
    pub const fn without(&self, bits: u64) -> Format<N> {
        let mut f = *self;
        f.table.mask &= !bits;
        let mut i = 0;
        while i < N {
            f.levels[i].frame.mask &= !bits;
            i += 1;
        }
        f
    }

    /// Reads the entry at location `off` of `mem`.
    #[inline(always)]
    fn entry<M: PhysMem>(&self, mem: &M, image: &Image, off: u64) -> Option<u64> {
        Some(match (self.entry_size, self.big_endian) {
            (8, false) => u64::from_le_bytes(mem.array(image, off)?),
            (8, true) => u64::from_be_bytes(mem.array(image, off)?),
            (_, false) => u64::from(u32::from_le_bytes(mem.array(image, off)?)),
            (_, true) => u64::from(u32::from_be_bytes(mem.array(image, off)?)),
        })
    }

    /// The entry at the start of `b` (which holds at least one), for runs
    /// of entries read at once. (`entry` spells the same rule out per
    /// case: translation runs through it, and compiles to fewer
    /// instructions so, 247 against 300 per read measured with callgrind.)
    #[inline(always)]
    fn decode(&self, b: &[u8]) -> u64 {
        uint(&b[..usize::from(self.entry_size)], self.big_endian)
    }

    /// Translates `va` by walking the tables from `root`, reading tables in
    /// physical memory through `mem`.
    ///
    /// The walk visits each level once, so a page-table loop cannot make it
    /// run away. Errors are built only on the failure path. Always inlined:
    /// called on a `static` format, the levels fold into constants and the
    /// loop unrolls.
    #[inline(always)]
    pub fn translate<M: PhysMem>(
        &self,
        image: &Image,
        mem: &M,
        root: Root,
        va: u64,
    ) -> Result<Mapping, Fault> {
        self.translate_traced(image, mem, root, va, &mut |_| {})
    }

    /// [`Format::translate`], telling `trace` each entry the walk reads
    /// (`vmcore vtop`); with a closure that does nothing, the same code.
    #[inline(always)]
    pub fn translate_traced<M: PhysMem>(
        &self,
        image: &Image,
        mem: &M,
        root: Root,
        va: u64,
        trace: &mut impl FnMut(Step),
    ) -> Result<Mapping, Fault> {
        self.translate_in(image, mem, root, va, None, trace)
    }

    /// The walk of [`Format::translate_traced`] and
    /// [`WideFormat::translate_traced`]: `wide`, when given, names the
    /// wide leaves of each level (a constant `None` folds away).
    #[inline(always)]
    fn translate_in<M: PhysMem>(
        &self,
        image: &Image,
        mem: &M,
        root: Root,
        va: u64,
        wide: Option<&[Wide; N]>,
        trace: &mut impl FnMut(Step),
    ) -> Result<Mapping, Fault> {
        let esz = u64::from(self.entry_size);
        let mut table = root;
        for depth in 0..N {
            // A flat page map lies in the core file itself; tables lie in
            // the container's physical memory.
            let from_file = matches!(table, Root::File { .. });
            let lvl = &self.levels[depth];
            let (index, entry_off) = match table {
                Root::Phys(pa) => {
                    let index = (va >> lvl.shift) & ((1u64 << lvl.bits) - 1);
                    let at = pa + index * esz;
                    // See PhysMem::TRANSLATES: a stacked space's lookup
                    // keeps its reason; a container's is looked up again.
                    let span = if M::TRANSLATES {
                        match mem.find(at) {
                            Ok(span) => span,
                            Err(why) => return Err(table_missing(lvl, pa, why)),
                        }
                    } else {
                        match mem.locate(at) {
                            Some(span) => span,
                            None => return Err(table_missing(lvl, pa, mem.missing(at))),
                        }
                    };
                    (index, span.off)
                }
                Root::File { off, count, base } => {
                    let index = va.wrapping_sub(base) >> lvl.shift;
                    if va < base || index >= count {
                        return Err(outside_map(lvl, count, base));
                    }
                    (index, off + index * esz)
                }
            };
            let e = if from_file {
                self.entry(&InFile, image, entry_off)
            } else {
                self.entry(mem, image, entry_off)
            };
            let Some(e) = e else {
                return Err(entry_past_eof(lvl, index));
            };
            trace(Step {
                level: lvl.name,
                table: match table {
                    Root::Phys(pa) => Table::Phys(pa),
                    Root::File { .. } => Table::File(entry_off),
                },
                index,
                entry: e,
            });
            if !lvl.valid.test(e) {
                return Err(invalid_entry(lvl, index, e));
            }
            if depth + 1 == N || lvl.leaf.test(e) {
                let size = 1u64 << lvl.shift;
                let pa = match wide {
                    Some(w) if w[depth].test.test(e) => w[depth].pa(e, va),
                    _ => lvl.frame.of(e) | (va & (size - 1)),
                };
                return Ok(Mapping::at(va, pa, size, e));
            }
            if !self.pointer.test(e) {
                return Err(bad_pointer(lvl, index, e));
            }
            table = Root::Phys(self.table.of(e));
        }
        Err(Fault::BadPageTable(
            "page-table format has no levels".into(),
        ))
    }
}

// Error construction stays out of the walk's hot code.

/// A table the base space does not hold: not in the dump, or (for a
/// space over another space) not translated by it, as `why` says.
#[cold]
#[inline(never)]
fn table_missing(lvl: &Level, pa: u64, why: Fault) -> Fault {
    match why {
        Fault::NotInDump { .. } => Fault::BadPageTable(format!(
            "{} table page at physical address {pa:#x} is not in the dump",
            lvl.name
        )),
        why => Fault::In {
            what: format!("its {} table at {pa:#x}", lvl.name),
            fault: Box::new(why),
        },
    }
}

#[cold]
#[inline(never)]
fn outside_map(lvl: &Level, count: u64, base: u64) -> Fault {
    Fault::Unmapped(format!(
        "outside the {count} {} entries the dump holds from {base:#x}",
        lvl.name
    ))
}

#[cold]
#[inline(never)]
fn entry_past_eof(lvl: &Level, index: u64) -> Fault {
    Fault::BadPageTable(format!(
        "{} entry {index} lies past the end of the core file",
        lvl.name
    ))
}

#[cold]
#[inline(never)]
fn bad_pointer(lvl: &Level, index: u64, e: u64) -> Fault {
    Fault::BadPageTable(format!(
        "{} entry {index} ({e:#x}) points to a table with bits the format reserves",
        lvl.name
    ))
}

#[cold]
#[inline(never)]
fn invalid_entry(lvl: &Level, index: u64, e: u64) -> Fault {
    Fault::Unmapped(format!("{} entry {index} is not valid ({e:#x})", lvl.name))
}

/// Sign-extends `va` from bit `bits - 1` (48 on amd64, 39 on riscv Sv39);
/// `bits` of 64 leaves it alone.
#[inline]
pub fn sign_extend(va: u64, bits: u32) -> u64 {
    if bits >= 64 {
        va
    } else {
        let shift = 64 - bits;
        (((va << shift) as i64) >> shift) as u64
    }
}

impl<const N: usize> Format<N> {
    /// Calls `f(va, mapping)` for every valid leaf reachable from `root`, in
    /// ascending table order (`mapping.pa` is the frame, without offset).
    /// Returns `Ok(false)` as soon as `f` returns false.
    ///
    /// Every entry of every table is followed, so recursive slots and
    /// aliases (two entries naming one table) are reported as the MMU sees
    /// them, and a loop ends because a walk never goes deeper than `N`
    /// levels. What bounds the work is the dump, not a record of the
    /// tables seen: a table page the file does not hold is skipped, and a
    /// walk that enters more tables than the dump holds pages (a real
    /// kernel's tables are a small part of its memory, and recursion enters
    /// each at most `N` times) stops with an error. `va_bits` sign-extends
    /// the addresses of physical-root walks (64: none).
    pub fn walk<M: PhysMem>(
        &self,
        image: &Image,
        mem: &M,
        root: Root,
        va_bits: u32,
        f: &mut dyn FnMut(u64, &Mapping) -> bool,
    ) -> Result<bool, Fault> {
        self.walk_in(image, mem, root, va_bits, None, f)
    }

    /// [`Format::walk`] with the wide leaves `wide` names, if any.
    fn walk_in<M: PhysMem>(
        &self,
        image: &Image,
        mem: &M,
        root: Root,
        va_bits: u32,
        wide: Option<&[Wide; N]>,
        f: &mut dyn FnMut(u64, &Mapping) -> bool,
    ) -> Result<bool, Fault> {
        let limit = mem.held_pages().saturating_add(TABLES_ANY_DUMP_MAY_ENTER);
        let mut w = Walk {
            format: self,
            image,
            mem,
            va_bits,
            wide,
            tables_left: limit,
            limit,
            f,
        };
        match root {
            Root::Phys(pa) => w.table(0, pa, 0),
            Root::File { off, count, base } => {
                // The page map is read a page of entries at a time (one
                // pread each when the file is not mapped); it ends with the
                // file.
                let esz = u64::from(self.entry_size);
                let count = count.min(image.len().saturating_sub(off) / esz);
                let per = 4096 / esz;
                let mut local = [0u8; 4096];
                for first in (0..count).step_by(per as usize) {
                    let n = per.min(count - first);
                    let buf = &mut local[..(n * esz) as usize];
                    let Some(bytes) = image.view(off + first * esz, buf) else {
                        break;
                    };
                    for (j, b) in bytes.chunks_exact(esz as usize).enumerate() {
                        let i = first + j as u64;
                        let va = base.wrapping_add(i << self.levels[0].shift);
                        if !w.visit(0, va, self.decode(b))? {
                            return Ok(false);
                        }
                    }
                }
                Ok(true)
            }
        }
    }
}

/// The core file itself, for flat page maps (minidumps): locations are
/// file offsets and nothing is located by physical address.
struct InFile;

impl PhysMem for InFile {
    fn locate(&self, _pa: u64) -> Option<Span> {
        None
    }
    fn held_pages(&self) -> u64 {
        0
    }
}

/// Tables a walk may enter beyond the pages the dump holds, so that a dump
/// of a few pages still walks its tables.
const TABLES_ANY_DUMP_MAY_ENTER: u64 = 64;

/// The state of one [`Format::walk`].
struct Walk<'a, 'f, const N: usize, M: PhysMem> {
    format: &'a Format<N>,
    image: &'a Image,
    mem: &'a M,
    va_bits: u32,
    /// Wide leaves per level, if the format has any.
    wide: Option<&'a [Wide; N]>,
    /// Tables the walk may still enter, and how many it could at first.
    tables_left: u64,
    limit: u64,
    f: &'a mut (dyn FnMut(u64, &Mapping) -> bool + 'f),
}

impl<const N: usize, M: PhysMem> Walk<'_, '_, N, M> {
    /// Visits the entries of the table at `table` on level `depth`.
    fn table(&mut self, depth: usize, table: u64, prefix: u64) -> Result<bool, Fault> {
        let lvl = &self.format.levels[depth];
        let esz = u64::from(self.format.entry_size);
        // Locate the table once; entries past a break in the file (a table
        // straddling two segments) are located one by one.
        let Some(first) = self.mem.locate(table) else {
            return Ok(true); // the table page is not in the dump
        };
        if first.off >= self.mem.end(self.image) {
            return Ok(true); // a segment claims it, but the file ends before
        }
        if self.tables_left == 0 {
            return Err(too_many_tables(self.limit, prefix));
        }
        self.tables_left -= 1;
        // A table that lies whole in one run of the file is read at once:
        // one pread when the file is not mapped, not one per entry.
        let size = (1u64 << lvl.bits) * esz;
        let mut local = [0u8; 4096];
        let whole = (size <= first.len && size <= local.len() as u64)
            .then(|| {
                self.mem
                    .view(self.image, first.off, &mut local[..size as usize])
            })
            .flatten();
        for index in 0..1u64 << lvl.bits {
            let at = index * esz;
            let e = match whole {
                Some(b) => Some(self.format.decode(&b[at as usize..])),
                None if at + esz <= first.len => {
                    self.format.entry(self.mem, self.image, first.off + at)
                }
                None => self
                    .mem
                    .locate(table + at)
                    .and_then(|s| self.format.entry(self.mem, self.image, s.off)),
            };
            let Some(e) = e else {
                continue;
            };
            let va = sign_extend(prefix | (index << lvl.shift), self.va_bits);
            if !self.visit(depth, va, e)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Reports a leaf, or enters the table an entry points to.
    fn visit(&mut self, depth: usize, va: u64, e: u64) -> Result<bool, Fault> {
        let lvl = &self.format.levels[depth];
        if !lvl.valid.test(e) {
            return Ok(true);
        }
        if depth + 1 == N || lvl.leaf.test(e) {
            let pa = match self.wide {
                Some(w) if w[depth].test.test(e) => w[depth].pa(e, va),
                _ => lvl.frame.of(e),
            };
            let m = Mapping {
                pa,
                first: va,
                size: 1u64 << lvl.shift,
                entry: e,
            };
            return Ok((self.f)(va, &m));
        }
        if !self.format.pointer.test(e) {
            return Ok(true); // the CPU faults there: nothing below is mapped
        }
        self.table(depth + 1, self.format.table.of(e), va)
    }
}

#[cold]
#[inline(never)]
fn too_many_tables(limit: u64, va: u64) -> Fault {
    Fault::BadPageTable(format!(
        "the walk entered {limit} page tables, as many as the dump holds pages, and they \
         reach more (near {va:#x}): entries alias or loop far beyond what a kernel builds; \
         walk stopped"
    ))
}
