//! MMU formats chosen at run time, as data: the page-table formats a
//! [`crate::Space`] walks (x86 in every mode, Intel EPT, aarch64 stage 1
//! from TCR_EL1, riscv Sv39/48/57), and [`Tables`], the MMU of a space
//! that walks one of them over any physical memory.
//!
//! The x86 levels are the amd64 and i386 backends' (`arch/amd64.rs`,
//! `arch/i386.rs`); aarch64's geometry is shared with the Linux aarch64
//! backend. Each format is a [`Walker`]: a [`Format`] of its level count.

use crate::arch::{amd64, i386};
use crate::error::{Error, Fault, Result};
use crate::image::{uint, Image};
use crate::pagetable::{sign_extend, Bits, Format, Frame, Level, Mapping, Root};
use crate::physmem::{PhysMem, Span};
use crate::walk::{prot, Page};

/// A page-table format of 1 to 5 levels.
#[derive(Debug, Clone, Copy)]
pub enum Walker {
    /// One level.
    L1(Format<1>),
    /// Two levels.
    L2(Format<2>),
    /// Three levels.
    L3(Format<3>),
    /// Four levels.
    L4(Format<4>),
    /// Five levels.
    L5(Format<5>),
}

macro_rules! each {
    ($w:expr, $f:ident => $e:expr) => {
        match $w {
            Walker::L1($f) => $e,
            Walker::L2($f) => $e,
            Walker::L3($f) => $e,
            Walker::L4($f) => $e,
            Walker::L5($f) => $e,
        }
    };
}

impl Walker {
    /// Translates `va` from the table at `root` in `mem`.
    #[inline]
    pub fn translate<M: PhysMem>(
        &self,
        image: &Image,
        mem: &M,
        root: u64,
        va: u64,
    ) -> Result<Mapping, Fault> {
        each!(self, f => f.translate(image, mem, Root::Phys(root), va))
    }

    /// Every leaf from `root` (see [`Format::walk`]).
    pub fn walk<M: PhysMem>(
        &self,
        image: &Image,
        mem: &M,
        root: u64,
        f: &mut dyn FnMut(u64, &Mapping) -> bool,
    ) -> Result<bool, Fault> {
        // Addresses are put in their final form by the caller.
        each!(self, w => w.walk(image, mem, Root::Phys(root), 64, f))
    }
}

// Intel EPT (Intel SDM vol. 3C, 29.3.2 and tables 29-1 to 29-7): an
// entry is present when any of bits 2:0 (read, write, execute) is set;
// bit 7 makes a PDPTE map 1 GiB and a PDE 2 MiB; frames are bits 51:12
// (up to MAXPHYADDR). The EPTP holds the memory type in bits 2:0, the
// page-walk length minus one in bits 5:3 (3: four levels, 4: five) and
// the root's address in bits 51:12.
const EPT_RWX: u64 = 0b111;
const EPT_PS: u64 = 1 << 7;
const EPT_PRESENT: Bits = Bits::eq(0, 0).and_any(EPT_RWX);
const EPT_LARGE: Bits = Bits::eq(EPT_PS, EPT_PS);
/// Write without read (bits 2:0 010b or 110b) is a misconfiguration in
/// any entry (SDM 29.3.3.1; KVM's `__reset_rsvds_bits_mask_ept` marks
/// both at every level).
const EPT_NOT_WRITE_ONLY: Bits = Bits {
    mask: 0b11,
    value: 0b10,
    negate: true,
    any: 0,
};

const fn ept_level(name: &'static str, shift: u32, leaf: Bits) -> Level {
    Level {
        name,
        shift,
        bits: 9,
        valid: EPT_PRESENT,
        leaf,
        frame: Frame::mask(amd64::PG_FRAME & !((1 << shift) - 1)),
    }
}

const EPT_PDPTE: Level = ept_level("EPT PDPTE", 30, EPT_LARGE);
const EPT_PDE: Level = ept_level("EPT PDE", 21, EPT_LARGE);
const EPT_PTE: Level = ept_level("EPT PTE", 12, Bits::NEVER);

/// Four-level EPT (48-bit guest-physical addresses).
static EPT4: Format<4> = Format {
    entry_size: 8,
    big_endian: false,
    pointer: EPT_NOT_WRITE_ONLY,
    table: Frame::mask(amd64::PG_FRAME),
    levels: [
        ept_level("EPT PML4E", 39, Bits::NEVER),
        EPT_PDPTE,
        EPT_PDE,
        EPT_PTE,
    ],
};

/// Five-level EPT (57-bit guest-physical addresses).
static EPT5: Format<5> = Format {
    entry_size: 8,
    big_endian: false,
    pointer: EPT_NOT_WRITE_ONLY,
    table: Frame::mask(amd64::PG_FRAME),
    levels: [
        ept_level("EPT PML5E", 48, Bits::NEVER),
        ept_level("EPT PML4E", 39, Bits::NEVER),
        EPT_PDPTE,
        EPT_PDE,
        EPT_PTE,
    ],
};

// riscv (The RISC-V Privileged Architecture, 12.3-12.6: Sv32/39/48/57):
// V is bit 0, R/W/X bits 1-3; a valid entry with any of R, W, X is a
// leaf, one without points to the next table; the PPN is entry bits
// 53:10 for physical bits 55:12. A superpage whose low PPN bits are not
// zero is misaligned (a page fault): those bits are not part of its frame.
const RV_V: u64 = 1 << 0;
const RV_W: u64 = 1 << 2;
const RV_X: u64 = 1 << 3;
const RV_RWX: u64 = 0b1110;
const RV_PPN: u64 = 0x003f_ffff_ffff_fc00;
/// What an entry pointing to the next table must leave clear (12.3.1:
/// U, A and D are reserved in them; 12.3.2 step 2: reserved bits 60:54,
/// PBMT 62:61 and N 63 fault; QEMU checks the same).
const RV_NOT_IN_POINTERS: u64 = (0x1ff << 54) | (1 << 63) | (0b11 << 6) | (1 << 4);

const fn rv_level(shift: u32, last: bool) -> Level {
    const NAMES: [&str; 5] = ["L0 PTE", "L1 PTE", "L2 PTE", "L3 PTE", "L4 PTE"];
    Level {
        name: NAMES[((shift - 12) / 9) as usize],
        shift,
        bits: 9,
        valid: if last {
            Bits::eq(RV_V, RV_V).and_any(RV_RWX)
        } else {
            Bits::eq(RV_V, RV_V)
        },
        leaf: Bits::eq(0, 0).and_any(RV_RWX),
        frame: Frame {
            mask: RV_PPN & !((1 << (shift - 2)) - 1),
            shl: 2,
        },
    }
}

const fn riscv<const N: usize>() -> Format<N> {
    let mut levels = [rv_level(12, true); N];
    let mut i = 0;
    while i + 1 < N {
        levels[i] = rv_level(12 + 9 * (N - 1 - i) as u32, false);
        i += 1;
    }
    Format {
        entry_size: 8,
        big_endian: false,
        pointer: Bits::eq(RV_NOT_IN_POINTERS, 0),
        table: Frame {
            mask: RV_PPN,
            shl: 2,
        },
        levels,
    }
}

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

/// The page-table formats a space may walk, with what each needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// x86-64 4-level paging, CR3.
    X86_64 {
        /// CR3.
        cr3: u64,
    },
    /// x86-64 5-level paging, CR3.
    X86_64La57 {
        /// CR3.
        cr3: u64,
    },
    /// 32-bit paging, CR3; `pse`: 4 MiB pages (CR4.PSE).
    I386 {
        /// CR3.
        cr3: u64,
        /// CR4.PSE.
        pse: bool,
    },
    /// PAE paging, CR3.
    I386Pae {
        /// CR3.
        cr3: u64,
    },
    /// Intel EPT, EPTP.
    Ept {
        /// EPTP.
        eptp: u64,
    },
    /// aarch64 stage 1.
    Aarch64 {
        /// TTBRn_EL1.
        ttbr: u64,
        /// TCR_EL1.
        tcr: u64,
    },
    /// riscv Sv39 (3), Sv48 (4) or Sv57 (5) levels.
    Riscv {
        /// satp.PPN << 12.
        root: u64,
        /// 3, 4 or 5.
        levels: u32,
    },
}

// Control-register bits the x86 paging mode follows (Intel SDM vol. 3A,
// 4.1.1, "Four Paging Modes"; 2.5 "Control Registers"; 2.2.1 IA32_EFER).
const CR0_PE: u64 = 1 << 0;
const CR0_PG: u64 = 1 << 31;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;
const CR4_LA57: u64 = 1 << 12;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// The paging mode a CPU runs in with these control registers, as the
/// SDM's table 4-1 chooses it; `None` when paging is off (CR0.PG clear:
/// addresses are physical). A combination no CPU can run in is refused.
pub fn x86_mode(cr3: u64, cr0: u64, cr4: u64, efer: u64) -> Result<Option<Mode>> {
    let bad = |m: &str| {
        Err(Error::InvalidSpace(format!(
            "CR0 {cr0:#x}, CR4 {cr4:#x} and EFER {efer:#x}: {m}, a state no x86 CPU can run in"
        )))
    };
    let (pg, pae, lma) = (cr0 & CR0_PG != 0, cr4 & CR4_PAE != 0, efer & EFER_LMA != 0);
    if pg && cr0 & CR0_PE == 0 {
        return bad("CR0.PG is set without CR0.PE");
    }
    if lma && !pg {
        return bad("EFER.LMA is set with paging off");
    }
    if lma && !pae {
        return bad("EFER.LMA is set without CR4.PAE");
    }
    // With paging on, LMA is LME (SDM 9.8.5; KVM's kvm_is_valid_sregs).
    if pg && lma != (efer & EFER_LME != 0) {
        return bad("EFER.LMA differs from EFER.LME with paging on");
    }
    Ok(match (pg, lma, pae) {
        (false, _, _) => None,
        (true, true, _) if cr4 & CR4_LA57 != 0 => Some(Mode::X86_64La57 { cr3 }),
        (true, true, _) => Some(Mode::X86_64 { cr3 }),
        (true, false, true) => Some(Mode::I386Pae { cr3 }),
        (true, false, false) => Some(Mode::I386 {
            cr3,
            pse: cr4 & CR4_PSE != 0,
        }),
    })
}

/// Which addresses a format translates, and how the walker's addresses
/// become the CPU's.
#[derive(Debug, Clone, Copy)]
enum Addresses {
    /// Sign-extended from bit `bits - 1` (x86-64, riscv).
    Canonical(u32),
    /// Below `1 << bits` (i386, EPT).
    Below(u32),
    /// One half of an aarch64 address space: bit 55 says which half an
    /// address is in, and the rest of the bits above the tables' are all
    /// ones (the upper half) or zeros (the lower), once the top byte is
    /// set or cleared when TBI says it is ignored.
    Aarch64 {
        /// TTBR1's half (else TTBR0's).
        upper: bool,
        /// TCR_EL1.TBIn of that half.
        tbi: bool,
    },
}

/// How a format's leaves read: their protection, and what a CPU refuses
/// or computes beyond the walker's masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    /// x86: RW and NX (`nx`: the NX bit exists; not in 32-bit paging);
    /// `pse36`: a 4 MiB page takes physical bits 39:32 from its PDE's
    /// bits 20:13 (32-bit paging with PSE).
    X86 { nx: bool, pse36: bool },
    /// EPT: R, W, X in bits 0-2; write without read is a misconfiguration.
    Ept,
    /// aarch64 (`upper`: the TTBR1 half, whose execute bit is PXN).
    Aarch64 { upper: bool },
    /// riscv: W and X (R implied by a readable leaf); write without read,
    /// reserved bits and misaligned superpages fault; Svnapot.
    Riscv,
}

/// A space's MMU: a page-table format walked from `root` over `mem`.
pub struct Tables<M> {
    mem: M,
    root: u64,
    walker: Walker,
    /// Address bits the tables translate.
    va_bits: u32,
    /// aarch64's 52-bit entries.
    high: HighPa,
    addresses: Addresses,
    flavor: Flavor,
    /// The format's name, for messages.
    name: &'static str,
}

/// A format before its memory is known.
struct Format0 {
    root: u64,
    walker: Walker,
    va_bits: u32,
    high: HighPa,
    addresses: Addresses,
    flavor: Flavor,
    name: &'static str,
}

impl<M: PhysMem> Tables<M> {
    /// The tables of `mode` over `mem`; the root must lie in `mem`.
    pub fn new(mem: M, mode: Mode) -> Result<Self> {
        use Mode::*;
        let x86 = |root, walker, va_bits, name| Format0 {
            root,
            walker,
            va_bits,
            high: HighPa::NONE,
            addresses: Addresses::Canonical(va_bits),
            flavor: Flavor::X86 {
                nx: true,
                pse36: false,
            },
            name,
        };
        let f = match mode {
            // CR3 bits 11:0 are PCID or PWT/PCD (SDM 4.5); the PAE CR3
            // holds the 32-byte-aligned PDPT in bits 31:5 (4.4.1).
            X86_64 { cr3 } => x86(cr3 & amd64::PG_FRAME, Walker::L4(amd64::MMU), 48, "x86-64"),
            X86_64La57 { cr3 } => x86(
                cr3 & amd64::PG_FRAME,
                Walker::L5(amd64::MMU_LA57),
                57,
                "x86-64 LA57",
            ),
            I386Pae { cr3 } => Format0 {
                addresses: Addresses::Below(32),
                ..x86(cr3 & 0xffff_ffe0, Walker::L3(i386::PAE), 32, "i386 PAE")
            },
            I386 { cr3, pse } => {
                let mut f = i386::NOPAE;
                if !pse {
                    f.levels[0].leaf = Bits::NEVER;
                }
                Format0 {
                    addresses: Addresses::Below(32),
                    flavor: Flavor::X86 {
                        nx: false,
                        pse36: pse,
                    },
                    ..x86(cr3 & 0xffff_f000, Walker::L2(f), 32, "i386")
                }
            }
            Ept { eptp } => {
                let (walker, bits) = match (eptp >> 3) & 7 {
                    3 => (Walker::L4(EPT4), 48),
                    4 => (Walker::L5(EPT5), 57),
                    n => {
                        return Err(Error::InvalidSpace(format!(
                            "EPTP {eptp:#x}: a page-walk length of {} (bits 5:3 hold {n}; EPT \
                             walks 4 or 5 levels: 3 or 4)",
                            n + 1
                        )))
                    }
                };
                Format0 {
                    addresses: Addresses::Below(bits),
                    flavor: Flavor::Ept,
                    ..x86(eptp & amd64::PG_FRAME, walker, bits, "EPT")
                }
            }
            Riscv { root, levels } => {
                let (walker, name) = match levels {
                    3 => (Walker::L3(riscv::<3>()), "riscv Sv39"),
                    4 => (Walker::L4(riscv::<4>()), "riscv Sv48"),
                    _ => (Walker::L5(riscv::<5>()), "riscv Sv57"),
                };
                if root & 0xfff != 0 {
                    return Err(Error::InvalidSpace(format!(
                        "{name} root {root:#x} is not page-aligned (it is satp.PPN << 12)"
                    )));
                }
                Format0 {
                    flavor: Flavor::Riscv,
                    ..x86(root, walker, 12 + 9 * levels, name)
                }
            }
            Aarch64 { ttbr, tcr } => aarch64(ttbr, tcr)?,
        };
        let t = Tables {
            mem,
            root: f.root,
            walker: f.walker,
            va_bits: f.va_bits,
            high: f.high,
            addresses: f.addresses,
            flavor: f.flavor,
            name: f.name,
        };
        if let Err(why) = t.mem.find(t.root) {
            return Err(Error::InvalidSpace(format!(
                "the {} root table at {:#x}: {why}",
                t.name, t.root
            )));
        }
        Ok(t)
    }

    /// The format's name ("x86-64", "EPT", ...).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The memory the tables and pages lie in.
    pub fn mem(&self) -> &M {
        &self.mem
    }

    /// `va` as the tables see it, or why they cannot.
    #[inline(always)]
    fn check(&self, va: u64) -> Result<u64, Fault> {
        match self.addresses {
            Addresses::Canonical(bits) if sign_extend(va, bits) == va => Ok(va),
            Addresses::Below(bits) if va >> bits == 0 => Ok(va),
            Addresses::Aarch64 { upper, tbi } => {
                let va = match (tbi, va >> 55 & 1 == 1) {
                    (false, _) => va,
                    (true, true) => va | 0xff << 56,
                    (true, false) => va & (u64::MAX >> 8),
                };
                let rest = va >> self.va_bits;
                if rest == if upper { u64::MAX >> self.va_bits } else { 0 } {
                    Ok(va)
                } else {
                    Err(outside_half(upper, self.va_bits, va >> 55 & 1 == 1))
                }
            }
            a => Err(outside(self.name, a)),
        }
    }

    /// Translates `va`.
    #[inline]
    pub fn translate(&self, image: &Image, va: u64) -> Result<Mapping, Fault> {
        let at = self.check(va)?;
        let m = if self.high.from == 0 {
            self.walker.translate(image, &self.mem, self.root, at)?
        } else {
            let tables = HighTables {
                mem: &self.mem,
                high: self.high,
                big_endian: false,
            };
            self.walker.translate(image, &tables, self.root, at)?
        };
        if self.flavor_needs_leaf_check() {
            self.leaf(at, m)
        } else {
            Ok(m)
        }
    }

    /// True when leaves need more than the walker's masks.
    #[inline(always)]
    fn flavor_needs_leaf_check(&self) -> bool {
        !matches!(
            self.flavor,
            Flavor::Aarch64 { .. } | Flavor::X86 { pse36: false, .. }
        )
    }

    /// A leaf as the CPU takes it, from the walker's mapping of `va`:
    /// the checks and frame bits the masks cannot express.
    fn leaf(&self, va: u64, m: Mapping) -> Result<Mapping, Fault> {
        let e = m.entry;
        match self.flavor {
            // SDM 4.3, table 4-6: a 4 MiB PDE's bits 20:13 are physical
            // bits 39:32 (PSE-36; QEMU's mmu_translate does the same).
            Flavor::X86 { pse36: true, .. } if m.size == 1 << 22 => Ok(Mapping {
                pa: m.pa | ((e >> 13) & 0xff) << 32,
                ..m
            }),
            // Intel SDM 29.3.3.1: write without read is a misconfiguration.
            Flavor::Ept if e & 0b11 == 0b10 => Err(Fault::BadPageTable(format!(
                "EPT entry {e:#x} allows writes but not reads (an EPT misconfiguration)"
            ))),
            Flavor::Riscv => riscv_leaf(va, m),
            _ => Ok(m),
        }
    }

    /// Every leaf of the tables, as `kvm_walk_pages` reports it.
    pub fn walk_pages(&self, image: &Image, f: &mut dyn FnMut(&Page) -> bool) -> Result<bool> {
        let mut visit = |va: u64, m: &Mapping| {
            let va = match self.addresses {
                Addresses::Canonical(bits) => sign_extend(va, bits),
                Addresses::Below(_) => va,
                Addresses::Aarch64 { upper: true, .. } => va | (u64::MAX << self.va_bits),
                Addresses::Aarch64 { upper: false, .. } => va,
            };
            // A leaf the CPU would refuse is no page; a riscv NAPOT
            // entry maps its own 4 KiB of the 64 KiB run.
            let m = if self.flavor_needs_leaf_check() {
                match self.leaf(va, *m) {
                    Ok(leaf) => Mapping {
                        pa: leaf.pa & !(m.size.min(leaf.size) - 1),
                        size: m.size.min(leaf.size),
                        ..leaf
                    },
                    Err(_) => return true,
                }
            } else {
                *m
            };
            f(&Page {
                paddr: m.pa,
                kmap_vaddr: va,
                dmap_vaddr: 0,
                prot: self.prot(m.entry),
                offset: self.mem.file_offset(image, m.pa),
                len: m.size,
            })
        };
        let walked = if self.high.from == 0 {
            self.walker.walk(image, &self.mem, self.root, &mut visit)
        } else {
            let tables = HighTables {
                mem: &self.mem,
                high: self.high,
                big_endian: false,
            };
            self.walker.walk(image, &tables, self.root, &mut visit)
        };
        walked.map_err(|fault| Error::BadCore(format!("{} page walk: {fault}", self.name)))
    }

    /// `VM_PROT_*` of a leaf entry.
    fn prot(&self, e: u64) -> u8 {
        let bit = |b: u64, p: u8| if e & b != 0 { p } else { 0 };
        match self.flavor {
            Flavor::X86 { nx: true, .. } => amd64::entry_prot(e),
            Flavor::X86 { nx: false, .. } => amd64::entry_prot(e) | prot::EXECUTE,
            Flavor::Ept => bit(1, prot::READ) | bit(2, prot::WRITE) | bit(4, prot::EXECUTE),
            Flavor::Aarch64 { upper } => aarch64_prot(e, upper),
            Flavor::Riscv => prot::READ | bit(RV_W, prot::WRITE) | bit(RV_X, prot::EXECUTE),
        }
    }
}

// riscv leaf rules (privileged spec 12.3.2 steps 3 and 6, 12.6 Svnapot;
// QEMU target/riscv/cpu_helper.c get_physical_address).
const RV_R: u64 = 1 << 1;
/// Bits 60:54 are reserved (a page fault when set).
const RV_RESERVED: u64 = 0x7f << 54;
/// Svnapot's N bit: with PPN[3:0] = 0b1000 on a 4 KiB leaf, one of 16
/// entries of a naturally aligned 64 KiB mapping.
const RV_N: u64 = 1 << 63;

/// The CPU's reading of a riscv leaf the walker found for `va`.
fn riscv_leaf(va: u64, m: Mapping) -> Result<Mapping, Fault> {
    let e = m.entry;
    let ppn = (e & RV_PPN) >> 10;
    if e & (RV_R | RV_W) == RV_W {
        return Err(rv_fault(e, "write without read is reserved"));
    }
    if e & RV_RESERVED != 0 {
        return Err(rv_fault(e, "reserved bits 60:54 are set"));
    }
    if m.size > 4096 && ppn & ((m.size >> 12) - 1) != 0 {
        return Err(rv_fault(e, "a misaligned superpage"));
    }
    if e & RV_N != 0 {
        if m.size != 4096 || ppn & 0xf != 0b1000 {
            return Err(rv_fault(e, "an N (Svnapot) entry that is no 64 KiB run"));
        }
        let first = va & !0xffff;
        return Ok(Mapping {
            pa: ((ppn & !0xf) << 12) | (va & 0xffff),
            first,
            size: 0x1_0000,
            entry: e,
        });
    }
    Ok(m)
}

#[cold]
#[inline(never)]
fn rv_fault(e: u64, why: &str) -> Fault {
    Fault::BadPageTable(format!("riscv leaf {e:#x}: {why} (a page fault)"))
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
fn aarch64(ttbr: u64, tcr: u64) -> Result<Format0> {
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
fn outside(name: &str, a: Addresses) -> Fault {
    Fault::OutOfRange(match a {
        Addresses::Canonical(bits) => format!(
            "not a canonical {name} address (bits {} to 63 must be equal)",
            bits - 1
        ),
        Addresses::Below(bits) => format!("{name} addresses are {bits}-bit"),
        Addresses::Aarch64 { .. } => format!("not a {name} address"),
    })
}

#[cold]
#[inline(never)]
fn outside_half(upper: bool, bits: u32, in_upper: bool) -> Fault {
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
