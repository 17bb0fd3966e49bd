//! MMU formats chosen at run time, as data: the page-table formats a
//! [`crate::Space`] walks, and [`Tables`], the MMU of a space that walks
//! one of them over any physical memory. Each format is a [`Walker`]: a
//! [`Format`] of its level count; what the masks cannot say (which half
//! of an address space, leaves a CPU refuses, PSE-36's frame bits) is
//! [`Tables`]'s, per format.
//!
//! - `x86`: the paging modes (the amd64 and i386 backends' levels,
//!   `arch/amd64.rs` and `arch/i386.rs`), their choice from control
//!   registers, and Intel EPT;
//! - `aarch64`: VMSAv8-64 stage 1 from TCR_EL1 and TTBRn_EL1, its granule
//!   geometry shared with the Linux aarch64 backend;
//! - `riscv`: Sv39, Sv48 and Sv57 with Svnapot.

mod aarch64;
mod riscv;
mod x86;

pub use aarch64::{aarch64_prot, Geometry, HighPa, HighTables};
pub use x86::x86_mode;

use crate::arch::{amd64, i386};
use crate::error::{Error, Fault, Result};
use crate::image::Image;
use crate::pagetable::{sign_extend, Bits, Format, Mapping, Root, Step};
use crate::physmem::PhysMem;
use crate::walk::{prot, Page};

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
        trace: &mut impl FnMut(Step),
    ) -> Result<Mapping, Fault> {
        each!(self, f => f.translate_traced(image, mem, Root::Phys(root), va, trace))
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
                    3 => (Walker::L4(x86::EPT4), 48),
                    4 => (Walker::L5(x86::EPT5), 57),
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
                    3 => (Walker::L3(riscv::format::<3>()), "riscv Sv39"),
                    4 => (Walker::L4(riscv::format::<4>()), "riscv Sv48"),
                    _ => (Walker::L5(riscv::format::<5>()), "riscv Sv57"),
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
            Aarch64 { ttbr, tcr } => aarch64::stage1(ttbr, tcr)?,
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
                    Err(aarch64::outside_half(
                        upper,
                        self.va_bits,
                        va >> 55 & 1 == 1,
                    ))
                }
            }
            a => Err(outside(self.name, a)),
        }
    }

    /// Translates `va`, telling `trace` each entry the walk reads.
    #[inline]
    pub fn translate_traced(
        &self,
        image: &Image,
        va: u64,
        trace: &mut impl FnMut(Step),
    ) -> Result<Mapping, Fault> {
        let at = self.check(va)?;
        let m = if self.high.is_none() {
            self.walker
                .translate(image, &self.mem, self.root, at, trace)?
        } else {
            let tables = HighTables {
                mem: &self.mem,
                high: self.high,
                big_endian: false,
            };
            self.walker
                .translate(image, &tables, self.root, at, trace)?
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
            Flavor::Riscv => riscv::leaf(va, m),
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
        let walked = if self.high.is_none() {
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
            Flavor::Riscv => {
                prot::READ | bit(riscv::RV_W, prot::WRITE) | bit(riscv::RV_X, prot::EXECUTE)
            }
        }
    }
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
