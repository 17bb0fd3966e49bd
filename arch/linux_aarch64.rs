//! Linux aarch64 dumps (ELF vmcores and kdump-compressed files): 4, 16 or
//! 64 KiB granules, 36- to 52-bit kernel virtual addresses, from the
//! kernel's `swapper_pg_dir`, with KASLR and pointer authentication.
//!
//! VMCOREINFO (`arch/arm64/kernel/vmcore_info.c`, formerly `crash_core.c`)
//! gives `NUMBER(VA_BITS)` (decimal), `NUMBER(kimage_voffset)`,
//! `NUMBER(PHYS_OFFSET)`, `NUMBER(TCR_EL1_T1SZ)` (5.9+) and
//! `NUMBER(KERNELPACMASK)` (5.7+) in `0x%llx`, `KERNELOFFSET`; the generic
//! part `PAGESIZE` and `SYMBOL(swapper_pg_dir)`. The root is found as the
//! kernel finds its own image (`__kimg_to_phys`,
//! `arch/arm64/include/asm/memory.h`): `pa = va - kimage_voffset`.
//!
//! The geometry follows drgn's `libdrgn/arch_aarch64.c`: the tables'
//! address size is `64 - TCR_EL1_T1SZ` where given, except with 64 KiB
//! pages, whose 52-bit `swapper_pg_dir` stays 52-bit when the CPU falls
//! back to 48 bits (TTBR1 is offset into it); levels are
//! `ceil((va_bits - PAGE_SHIFT) / (PAGE_SHIFT - 3))`, the top level
//! indexing what is left. `kvm_kerndisp` is the KASLR offset.

use crate::error::{Error, Fault, Result};
use crate::image::{uint, Image};
use crate::linux::{LinuxCore, Mem, Needs};
use crate::space::{Mmu, Space};
use crate::pagetable::{Bits, Format, Frame, Level, Mapping, Root};
use crate::physmem::{PhysMem, Span};
use crate::registry::{Backend, Probe, Setup, Translator, BACKENDS};
use crate::walk::{linux_page, prot, DirectMap, Page};
use linkme::distributed_slice;
use object::elf::EM_AARCH64;

// Descriptor bits (`arch/arm64/include/asm/pgtable-hwdef.h`).
/// Bits [1:0]: 0b11 a table (or, on the last level, a page), 0b01 a block
/// (`PMD_TYPE_SECT`), anything with bit 0 clear invalid.
const TYPE_MASK: u64 = 0b11;
const TYPE_TABLE: u64 = 0b11;
const TYPE_BLOCK: u64 = 0b01;
/// `PTE_RDONLY`, AP[2]: the kernel may not write.
const PTE_RDONLY: u64 = 1 << 7;
/// `PTE_PXN`: the kernel may not execute (UXN, bit 54, is the user's).
const PTE_PXN: u64 = 1 << 53;
/// `PTE_ADDR_LOW`: output address bits [49:PAGE_SHIFT] (bits 48-49 are
/// RES0 unless FEAT_LPA2 uses them). Everything else of an entry, the
/// attribute index, SH, AP, AF, nG, DBM, GP, contiguous, PXN/UXN and the
/// software bits, is no part of a frame.
const ADDR_LOW_TOP: u64 = 1 << 50;
/// 52-bit physical addresses: with 64 KiB pages (FEAT_LPA) entry bits
/// [15:12] hold PA[51:48] (`PTE_ADDR_HIGH`, `PTE_ADDR_HIGH_SHIFT` 36;
/// RES0 otherwise, so they are always taken); with 4 or 16 KiB pages and
/// 52-bit addresses (FEAT_LPA2, 6.9+) bits [9:8] hold PA[51:50] (shift 42).
const HIGH_64K: HighPa = HighPa {
    from: 0xf << 12,
    shl: 36,
};
const HIGH_LPA2: HighPa = HighPa {
    from: 0x3 << 8,
    shl: 42,
};

fn probe(p: &Probe<'_>) -> bool {
    p.linux.is_some_and(|l| l.machine == EM_AARCH64)
        && p.kernel.is_none_or(|k| k.machine == EM_AARCH64)
}

fn native() -> bool {
    cfg!(target_arch = "aarch64")
}

#[distributed_slice(BACKENDS)]
static LINUX_AARCH64: Backend = Backend {
    name: "Linux aarch64",
    probe,
    initvtop,
    native,
};

/// Physical-address bits an entry keeps outside its address field: they
/// are moved into place as entries are read (see [`Tables`]), so that the
/// walker's frame masks see a plain 52-bit address.
#[derive(Clone, Copy)]
struct HighPa {
    /// Entry bits holding the high address bits (0: none).
    from: u64,
    /// How far up they go.
    shl: u32,
}

impl HighPa {
    const NONE: HighPa = HighPa { from: 0, shl: 0 };

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

/// The dump's physical memory as the walker reads tables from it: entries
/// come out with their high address bits in place. Everything else is the
/// container's.
struct Tables<'a, M> {
    mem: &'a M,
    high: HighPa,
    big_endian: bool,
}

impl<M: PhysMem> PhysMem for Tables<'_, M> {
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
    fn end(&self, image: &Image) -> u64 {
        self.mem.end(image)
    }
}

/// The MMU configuration VMCOREINFO describes.
#[derive(Clone, Copy)]
struct Geometry {
    /// 12, 14 or 16.
    page_shift: u32,
    /// Address bits the kernel's tables translate.
    va_bits: u32,
    /// Levels of the tables.
    levels: usize,
    high: HighPa,
    /// Output-address bits of a (transformed) entry.
    pa_mask: u64,
    /// FEAT_LPA/LPA2 in use: blocks one level higher.
    lpa: bool,
}

impl Geometry {
    fn new(what: &str, page_size: u64, config_va_bits: i64, t1sz: Option<i64>) -> Result<Self> {
        let bad = |m: String| Error::BadCore(format!("{what}: {m}"));
        let page_shift = match page_size {
            4096 => 12,
            16384 => 14,
            65536 => 16,
            _ => {
                return Err(bad(format!(
                    "PAGESIZE {page_size} is no aarch64 granule (4096, 16384 or 65536)"
                )))
            }
        };
        // drgn's rule (see the module comment). T1SZ is 12 to 28 for the
        // 36- to 52-bit spaces (TCR_EL1.T1SZ = 64 - VA bits).
        let va_bits = match t1sz {
            Some(t) if page_shift != 16 => {
                if !(12..=28).contains(&t) {
                    return Err(bad(format!(
                        "VMCOREINFO's NUMBER(TCR_EL1_T1SZ) is {t:#x} (expected 12 to 28)"
                    )));
                }
                64 - t
            }
            _ => config_va_bits,
        };
        if !(36..=52).contains(&va_bits) || va_bits < i64::from(page_shift) + 10 {
            return Err(bad(format!(
                "{va_bits}-bit kernel addresses with {} KiB pages are no aarch64 configuration \
                 (VA_BITS {config_va_bits}{})",
                page_size >> 10,
                t1sz.map_or(String::new(), |t| format!(", TCR_EL1_T1SZ {t}"))
            )));
        }
        let va_bits = va_bits as u32;
        let per = page_shift - 3;
        let levels = (va_bits - page_shift).div_ceil(per) as usize;
        let lpa = va_bits == 52;
        let (high, top) = match (page_shift, lpa) {
            (16, _) => (HIGH_64K, 1u64 << 52),
            (_, true) => (HIGH_LPA2, 1u64 << 52),
            _ => (HighPa::NONE, ADDR_LOW_TOP),
        };
        Ok(Geometry {
            page_shift,
            va_bits,
            levels,
            high,
            pa_mask: (top - 1) & !((1u64 << page_shift) - 1),
            lpa,
        })
    }

    /// The tables as the walker's data: level `i` of `N`, top first.
    fn format<const N: usize>(&self, big_endian: bool) -> Format<N> {
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
                name: ["L-1", "L0", "L1", "L2", "L3"][(arm + 1) as usize],
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
            table: Frame::mask(self.pa_mask),
            levels: std::array::from_fn(level),
        }
    }
}

struct LinuxArm64<M, const N: usize> {
    mem: M,
    format: Format<N>,
    high: HighPa,
    root: u64,
    /// The lowest kernel address, `-(1 << va_bits)`: bits the walker does
    /// not see, set on every address it reports.
    top: u64,
    /// `KERNELPACMASK`: set in kernel pointers to strip their PAC.
    pac: u64,
    /// The linear map (wrapping: with KASLR, `PHYS_OFFSET` is often
    /// "negative").
    linear: Option<DirectMap>,
}

fn initvtop(s: &Setup<'_>) -> Result<Box<dyn Translator>> {
    let LinuxCore {
        mem,
        info,
        big_endian,
        ..
    } = s.take_linux()?;
    let info = Needs::new(&info, "aarch64");
    // VA_BITS 36 to 52 (arch/arm64/Kconfig); checked here, as every use
    // below shifts by it.
    let va_bits = info.number("VA_BITS")?;
    if !(36..=52).contains(&va_bits) {
        return Err(Error::BadCore(format!(
            "{}: VMCOREINFO's NUMBER(VA_BITS) is {va_bits} (expected 36 to 52)",
            info.what
        )));
    }
    let page_size = info
        .info
        .page_size()
        .ok_or_else(|| Error::BadCore(format!("{}: VMCOREINFO has no PAGESIZE", info.what)))?;
    // Spelt in lower case by the first version of the patch (5.9-rc).
    let t1sz = ["TCR_EL1_T1SZ", "tcr_el1_t1sz"]
        .iter()
        .find_map(|n| info.info.number(n));
    let g = Geometry::new(&info.what, page_size, va_bits, t1sz)?;
    match mem {
        Mem::Elf(m) => build(s, &info, g, big_endian, m),
        Mem::Kdump(m) => build(s, &info, g, big_endian, m),
    }
}

fn build<M: PhysMem + 'static>(
    s: &Setup<'_>,
    info: &Needs<'_>,
    g: Geometry,
    big_endian: bool,
    mem: M,
) -> Result<Box<dyn Translator>> {
    Ok(match g.levels {
        2 => Space::boxed(LinuxArm64::<M, 2>::new(s, info, g, big_endian, mem)?),
        3 => Space::boxed(LinuxArm64::<M, 3>::new(s, info, g, big_endian, mem)?),
        4 => Space::boxed(LinuxArm64::<M, 4>::new(s, info, g, big_endian, mem)?),
        _ => Space::boxed(LinuxArm64::<M, 5>::new(s, info, g, big_endian, mem)?),
    })
}

impl<M: PhysMem, const N: usize> LinuxArm64<M, N> {
    fn new(s: &Setup<'_>, info: &Needs<'_>, g: Geometry, big_endian: bool, mem: M) -> Result<Self> {
        let voffset = info.number("kimage_voffset")? as u64;
        let root_va = (s.lookup)("swapper_pg_dir").ok_or_else(|| {
            Error::BadCore(format!(
                "{}: neither VMCOREINFO nor the kernel's symbols give swapper_pg_dir, the \
                 kernel's page-table root",
                info.what
            ))
        })?;
        let root = root_va.wrapping_sub(voffset);
        let config_va_bits = info.number("VA_BITS")? as u32;
        let mut t = LinuxArm64 {
            mem,
            format: g.format::<N>(big_endian),
            high: g.high,
            root,
            top: u64::MAX << g.va_bits,
            pac: info.info.number("KERNELPACMASK").unwrap_or(0) as u64,
            linear: None,
        };
        // The tables found must map swapper_pg_dir back to itself: a wrong
        // kimage_voffset or root (another kernel's, a lying VMCOREINFO)
        // fails here rather than reading garbage later.
        match t.translate(s.core, root_va).map(|m| m.pa) {
            Ok(pa) if pa == root => {}
            got => {
                return Err(Error::BadCore(format!(
                    "the page tables at physical {root:#x} (swapper_pg_dir {root_va:#x} with \
                     kimage_voffset {voffset:#x}) do not map swapper_pg_dir back to themselves \
                     ({}): VMCOREINFO does not describe this memory",
                    match got {
                        Ok(pa) => format!("they give {pa:#x}"),
                        Err(f) => f.to_string(),
                    }
                )))
            }
        }
        // The linear map (memory.h): since 5.4 the lower half of the
        // kernel's space, [PAGE_OFFSET = -(1 << VA_BITS), PAGE_END =
        // -(1 << (VA_BITS_MIN - 1))), the image in the upper half; before,
        // the upper half [-(1 << (VA_BITS - 1)), 0), the image below.
        // `__lm_to_phys(va) = (va & ~PAGE_OFFSET) + PHYS_OFFSET`.
        t.linear = info.info.number("PHYS_OFFSET").map(|phys| {
            let half = 1u64 << (config_va_bits - 1);
            if root_va >= half.wrapping_neg() {
                let min = if config_va_bits > 48 {
                    if g.page_shift == 14 {
                        47
                    } else {
                        48
                    }
                } else {
                    config_va_bits
                };
                let base = (1u64 << config_va_bits).wrapping_neg();
                // [-(1 << VA_BITS), -(1 << (VA_BITS_MIN - 1))): memory.h
                DirectMap {
                    base,
                    end: (1u64 << (min - 1)).wrapping_neg(),
                    phys: phys as u64,
                }
            } else {
                // Before 5.4: the upper half, to the top.
                DirectMap {
                    base: half.wrapping_neg(),
                    end: 0,
                    phys: phys as u64,
                }
            }
        });
        Ok(t)
    }

    /// The translation of `va`. A kernel pointer (bit 55 set) may carry a
    /// pointer-authentication code in the bits KERNELPACMASK names: they
    /// are set, as the kernel's `ptrauth_clear_pac` does, so a signed
    /// pointer reads as the address it signs.
    #[inline(always)]
    fn translate(&self, image: &Image, va: u64) -> Result<Mapping, Fault> {
        let va = if va & (1 << 55) != 0 {
            va | self.pac
        } else {
            va
        };
        if va < self.top {
            return Err(not_kernel(self.top));
        }
        let tables = Tables {
            mem: &self.mem,
            high: self.high,
            big_endian: self.format.big_endian,
        };
        self.format
            .translate(image, &tables, Root::Phys(self.root), va)
    }
}

#[cold]
#[inline(never)]
fn not_kernel(top: u64) -> Fault {
    Fault::OutOfRange(format!(
        "not an aarch64 kernel address (swapper_pg_dir maps {top:#x} and up)"
    ))
}

/// `VM_PROT_*` of a leaf: AP[2] and PXN.
fn entry_prot(e: u64) -> u8 {
    let mut p = prot::READ;
    if e & PTE_RDONLY == 0 {
        p |= prot::WRITE;
    }
    if e & PTE_PXN == 0 {
        p |= prot::EXECUTE;
    }
    p
}

impl<M: PhysMem, const N: usize> Mmu for LinuxArm64<M, N> {
    type Mem = M;

    fn mem(&self) -> &M {
        &self.mem
    }

    #[inline(always)]
    fn translate(&self, image: &Image, va: u64) -> Result<Mapping, Fault> {
        LinuxArm64::translate(self, image, va)
    }

    /// Walks swapper_pg_dir: leaves of the linear map by their linear
    /// address, others by their kernel address with the linear address
    /// of their memory. (Hierarchical table attributes, PXNTable and
    /// APTable, are not applied to the protection.)
    fn walk_pages(&self, image: &Image, f: &mut dyn FnMut(&Page) -> bool) -> Result<bool> {
        let lm = self.linear.unwrap_or(DirectMap::NONE);
        let mut visit = |va: u64, m: &Mapping| {
            // TTBR1: every address has the bits above va_bits set.
            let va = va | self.top;
            let offset = self.mem.file_offset(image, m.pa);
            f(&linux_page(&lm, va, m.pa, m.size, entry_prot(m.entry), offset))
        };
        let tables = Tables {
            mem: &self.mem,
            high: self.high,
            big_endian: self.format.big_endian,
        };
        self.format
            .walk(image, &tables, Root::Phys(self.root), 64, &mut visit)
            .map_err(|fault| Error::BadCore(format!("page walk: {fault}")))
    }
}
