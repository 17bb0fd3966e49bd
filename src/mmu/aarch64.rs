//! aarch64 VMSAv8-64 stage-1 tables: descriptors, granule geometry, the
//! 52-bit address bits entries keep apart, and a space's half of the
//! address space from TCR_EL1 and TTBRn_EL1.

use super::{Addresses, Flavor, Format0, Walker};
use crate::error::{Error, Fault, Result};
use crate::image::{uint, Image};
use crate::pagetable::{Bits, Format, Frame, Level};
use crate::physmem::{PhysMem, Span};
use crate::walk::prot;

// aarch64 VMSAv8-64 descriptors (Arm ARM D8.3; Linux
// `arch/arm64/include/asm/pgtable-hwdef.h`).
/// Bits [1:0]: 0b11 a table (or, on the last level, a page), 0b01 a block
/// (`PMD_TYPE_SECT`), anything with bit 0 clear invalid.
const TYPE_MASK: u64 = 0b11;
const TYPE_TABLE: u64 = 0b11;
const TYPE_BLOCK: u64 = 0b01;
/// AP[2] (`PTE_RDONLY`): read-only.
const A64_RDONLY: u64 = 1 << 7;
/// PXN: no execution at EL1; UXN: none at EL0.
const A64_PXN: u64 = 1 << 53;
const A64_UXN: u64 = 1 << 54;
/// `PTE_ADDR_LOW`: output address bits [49:PAGE_SHIFT] (bits 48-49 are
/// RES0 unless FEAT_LPA2 uses them). Everything else of an entry, the
/// attribute index, SH, AP, AF, nG, DBM, GP, contiguous, PXN/UXN and the
/// software bits, is no part of a frame.
const ADDR_LOW_TOP: u64 = 1 << 50;
/// 52-bit physical addresses: with 64 KiB pages (FEAT_LPA) entry bits
/// [15:12] hold PA[51:48] (`PTE_ADDR_HIGH`, `PTE_ADDR_HIGH_SHIFT` 36;
/// RES0 otherwise, so they are always taken); with 4 or 16 KiB pages and
/// 52-bit addresses (FEAT_LPA2, TCR_EL1.DS) bits [9:8] hold PA[51:50].
const HIGH_64K: HighPa = HighPa {
    from: 0xf << 12,
    shl: 36,
};
const HIGH_LPA2: HighPa = HighPa {
    from: 0x3 << 8,
    shl: 42,
};

/// Physical-address bits an entry keeps outside its address field: they
/// are moved into place as entries are read (see [`HighTables`]), so that
/// the walker's frame masks see a plain 52-bit address.
#[derive(Clone, Copy, Debug)]
pub struct HighPa {
    /// Entry bits holding the high address bits (0: none).
    from: u64,
    /// How far up they go.
    shl: u32,
}

impl HighPa {
    /// No bits to move.
    pub const NONE: HighPa = HighPa { from: 0, shl: 0 };

    /// True when entries keep no address bits apart.
    #[inline(always)]
    pub fn is_none(self) -> bool {
        self.from == 0
    }

    /// `e` with its high address bits in place (what they replace there,
    /// DBM and GP or RES0, is no part of a frame).
    #[inline(always)]
    fn apply(self, e: u64) -> u64 {
        if self.from == 0 {
            return e;
        }
        let to = self.from << self.shl;
        (e & !(self.from | to)) | ((e & self.from) << self.shl)
    }
}

/// Physical memory as the walker reads aarch64 tables from it: entries
/// come out with their high address bits in place. Everything else is
/// the memory's.
pub struct HighTables<'a, M> {
    /// The memory.
    pub mem: &'a M,
    /// The bits to move.
    pub high: HighPa,
    /// Entries are big-endian.
    pub big_endian: bool,
}

impl<M: PhysMem> PhysMem for HighTables<'_, M> {
    const TRANSLATES: bool = M::TRANSLATES;

    #[inline(always)]
    fn locate(&self, pa: u64) -> Option<Span> {
        self.mem.locate(pa)
    }
    fn held_pages(&self) -> u64 {
        self.mem.held_pages()
    }
    fn missing(&self, pa: u64) -> Fault {
        self.mem.missing(pa)
    }
    #[inline(always)]
    fn find(&self, pa: u64) -> Result<Span, Fault> {
        self.mem.find(pa)
    }
    fn read_at(&self, image: &Image, off: u64, buf: &mut [u8]) -> Result<usize> {
        self.mem.read_at(image, off, buf)
    }
    fn view<'a>(&'a self, image: &'a Image, off: u64, buf: &'a mut [u8]) -> Option<&'a [u8]> {
        if self.high.from == 0 {
            return self.mem.view(image, off, buf);
        }
        for (i, chunk) in buf.chunks_exact_mut(8).enumerate() {
            chunk.copy_from_slice(&self.array::<8>(image, off + 8 * i as u64)?);
        }
        Some(buf)
    }
    #[inline(always)]
    fn array<const N: usize>(&self, image: &Image, off: u64) -> Option<[u8; N]> {
        let mut a = self.mem.array::<N>(image, off)?;
        if N == 8 && self.high.from != 0 {
            let e = self.high.apply(uint(&a[..8], self.big_endian));
            a[..8].copy_from_slice(&if self.big_endian {
                e.to_be_bytes()
            } else {
                e.to_le_bytes()
            });
        }
        Some(a)
    }
    fn file_offset(&self, image: &Image, pa: u64) -> Option<u64> {
        self.mem.file_offset(image, pa)
    }
    fn in_file(&self) -> bool {
        self.mem.in_file()
    }
    fn location_offset(&self, image: &Image, loc: u64) -> Option<u64> {
        self.mem.location_offset(image, loc)
    }
    fn end(&self, image: &Image) -> u64 {
        self.mem.end(image)
    }
}

/// An aarch64 translation regime's tables: granule, address size and
/// whether 52-bit output addresses are on.
#[derive(Clone, Copy, Debug)]
pub struct Geometry {
    /// 12, 14 or 16.
    pub page_shift: u32,
    /// Address bits the tables translate.
    pub va_bits: u32,
    /// Levels of the tables.
    pub levels: usize,
    /// Where entries keep their high address bits.
    pub high: HighPa,
    /// Output-address bits of a (transformed) entry.
    pa_mask: u64,
    /// FEAT_LPA/LPA2 in use: blocks one level higher.
    lpa: bool,
}

impl Geometry {
    /// The tables of `va_bits`-bit addresses with `1 << page_shift`-byte
    /// pages; `lpa` when 52-bit output addresses are on (FEAT_LPA with 64
    /// KiB pages, FEAT_LPA2 with 4 and 16 KiB). Levels are
    /// `ceil((va_bits - page_shift) / (page_shift - 3))`, the top level
    /// indexing what is left. The caller checks `va_bits` against the
    /// granule (at least `page_shift + 1`).
    pub fn new(page_shift: u32, va_bits: u32, lpa: bool) -> Geometry {
        let per = page_shift - 3;
        let levels = (va_bits - page_shift).div_ceil(per) as usize;
        let (high, top) = match (page_shift, lpa) {
            (16, _) => (HIGH_64K, 1u64 << 52),
            (_, true) => (HIGH_LPA2, 1u64 << 52),
            _ => (HighPa::NONE, ADDR_LOW_TOP),
        };
        Geometry {
            page_shift,
            va_bits,
            levels,
            high,
            pa_mask: (top - 1) & !((1u64 << page_shift) - 1),
            lpa,
        }
    }

    /// The tables as the walker's data: level `i` of `N`, top first.
    pub fn format<const N: usize>(&self, big_endian: bool) -> Format<N> {
        let ps = self.page_shift;
        let per = ps - 3;
        let level = |i: usize| {
            // The architecture's number of this level: the last is 3.
            let arm = 3 + i as i32 - (N as i32 - 1);
            let shift = ps + per * (N - 1 - i) as u32;
            let bits = if i == 0 { self.va_bits - shift } else { per };
            let last = i + 1 == N;
            // Blocks (VMSAv8-64 translation tables): 4 KiB granule at
            // levels 1 and 2, 16 and 64 KiB at level 2; one level higher
            // with 52-bit addresses (level 0 with 4 KiB, 1 otherwise).
            let block = !last && {
                let lowest = match (ps, self.lpa) {
                    (12, false) => 1,
                    (12, true) => 0,
                    (_, false) => 2,
                    (_, true) => 1,
                };
                (lowest..=2).contains(&arm)
            };
            Level {
                name: ["L-1", "L0", "L1", "L2", "L3"][(arm + 1).clamp(0, 4) as usize],
                shift,
                bits,
                valid: if block {
                    Bits::eq(1, 1)
                } else {
                    Bits::eq(TYPE_MASK, TYPE_TABLE)
                },
                leaf: if block {
                    Bits::eq(TYPE_MASK, TYPE_BLOCK)
                } else {
                    Bits::NEVER
                },
                frame: Frame::mask(self.pa_mask & !((1u64 << shift) - 1)),
            }
        };
        Format {
            entry_size: 8,
            big_endian,
            pointer: Bits::ALWAYS,
            table: Frame::mask(self.pa_mask),
            levels: std::array::from_fn(level),
        }
    }

    /// The format as a [`Walker`].
    pub fn walker(&self, big_endian: bool) -> Walker {
        match self.levels {
            1 => Walker::L1(self.format(big_endian)),
            2 => Walker::L2(self.format(big_endian)),
            3 => Walker::L3(self.format(big_endian)),
            4 => Walker::L4(self.format(big_endian)),
            _ => Walker::L5(self.format(big_endian)),
        }
    }
}

/// `VM_PROT_*` of an aarch64 leaf: AP[2], and PXN for the kernel's (upper)
/// half or UXN for the lower. (Hierarchical attributes, PXNTable and
/// APTable, are not applied.)
pub fn aarch64_prot(e: u64, upper: bool) -> u8 {
    let mut p = prot::READ;
    if e & A64_RDONLY == 0 {
        p |= prot::WRITE;
    }
    if e & if upper { A64_PXN } else { A64_UXN } == 0 {
        p |= prot::EXECUTE;
    }
    p
}

/// aarch64 stage 1 from TTBRn_EL1 and TCR_EL1 (Arm ARM D19.2.139,
/// TCR_EL1): T0SZ [5:0], EPD0 [7], TG0 [15:14] (0b00 4K, 0b01 64K, 0b10
/// 16K), T1SZ [21:16], EPD1 [23], TG1 [31:30] (0b01 16K, 0b10 4K, 0b11
/// 64K), IPS [34:32], TBI0 [37], TBI1 [38], DS [59]. TTBR: ASID [63:48],
/// BADDR [47:1] (with 52-bit output addresses, BADDR[51:48] in [5:2]),
/// CnP [0].
///
/// One root serves one half: TTBR1's (the kernel's) unless EPD1 disables
/// its walks, then TTBR0's. Addresses of the other half fail: a space of
/// the other TTBR is another space.
pub(super) fn stage1(ttbr: u64, tcr: u64) -> Result<Format0> {
    let field = |lo: u32, bits: u32| (tcr >> lo) & ((1 << bits) - 1);
    let bad = |m: String| Err(Error::InvalidSpace(format!("TCR_EL1 {tcr:#x}: {m}")));
    let upper = field(23, 1) == 0;
    if !upper && field(7, 1) == 1 {
        return bad("EPD0 and EPD1 both disable table walks".into());
    }
    let n = u8::from(upper);
    let (tsz, tg, tbi) = if upper {
        (field(16, 6), field(30, 2), field(38, 1))
    } else {
        (field(0, 6), field(14, 2), field(37, 1))
    };
    let page_shift = match (upper, tg) {
        (false, 0b00) | (true, 0b10) => 12,
        (false, 0b10) | (true, 0b01) => 14,
        (false, 0b01) | (true, 0b11) => 16,
        _ => return bad(format!("TG{n} {tg:#b} is no granule")),
    };
    // 52-bit output addresses: FEAT_LPA's 64 KiB pages with IPS 52 bits,
    // FEAT_LPA2's DS with 4 and 16 KiB.
    let ips52 = field(32, 3) == 0b110;
    let lpa = if page_shift == 16 {
        ips52
    } else {
        field(59, 1) == 1
    };
    // TnSZ 16 to 39 (48- to 25-bit spaces); down to 12 (52 bits) with
    // FEAT_LVA (64 KiB) or FEAT_LPA2 (DS).
    let min = if lpa || page_shift == 16 { 12 } else { 16 };
    if !(min..=39).contains(&tsz) {
        return bad(format!("T{n}SZ {tsz} is outside {min} to 39"));
    }
    let g = Geometry::new(page_shift, 64 - tsz as u32, lpa);
    // BADDR: bits 47:1, and 51:48 from bits 5:2 with 52-bit output
    // addresses. The table is aligned to its own size (at least 64 bytes
    // with 52-bit addresses): Linux's 16 KiB, 48-bit user tables are 16
    // bytes (arch/arm64/mm/pgd.c).
    let mut root = ttbr & 0x0000_ffff_ffff_fffe;
    if ips52 && lpa {
        root = (root & !0x3c) | ((ttbr & 0x3c) << 46);
    }
    let top_bits = g.va_bits - (g.page_shift + (g.page_shift - 3) * (g.levels as u32 - 1));
    let align = (8u64 << top_bits).max(if lpa { 64 } else { 8 });
    Ok(Format0 {
        root: root & !(align - 1),
        walker: g.walker(false),
        va_bits: g.va_bits,
        high: g.high,
        addresses: Addresses::Aarch64 {
            upper,
            tbi: tbi == 1,
        },
        flavor: Flavor::Aarch64 { upper },
        name: "aarch64",
    })
}

#[cold]
#[inline(never)]
pub(super) fn outside_half(upper: bool, bits: u32, in_upper: bool) -> Fault {
    let (n, which) = if upper { (1, "upper") } else { (0, "lower") };
    Fault::OutOfRange(if upper == in_upper {
        format!(
            "outside the {which} half's {bits}-bit range (TCR_EL1.T{n}SZ {})",
            64 - bits
        )
    } else if upper {
        "in the lower half (TTBR0's): this space walks TTBR1's tables (open one with \
         TCR_EL1.EPD1 set for TTBR0's)"
            .into()
    } else {
        "in the upper half (TTBR1's): this space walks TTBR0's tables (TCR_EL1.EPD1 is set)".into()
    })
}
