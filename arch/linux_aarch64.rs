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
use crate::image::Image;
use crate::mmu::{aarch64_prot, Geometry, HighPa, HighTables};
use crate::linux::{LinuxCore, Mem, Needs};
use crate::space::{Mmu, Paged};
use crate::pagetable::{Format, Mapping, Root, Step};
use crate::physmem::PhysMem;
use crate::registry::{Backend, Probe, Setup, Translator, BACKENDS};
use crate::walk::{linux_page, DirectMap, Page};
use linkme::distributed_slice;
use object::elf::EM_AARCH64;

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

/// The geometry VMCOREINFO describes.
fn geometry(what: &str, page_size: u64, config_va_bits: i64, t1sz: Option<i64>) -> Result<Geometry> {
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
    // 52-bit addresses come with 52-bit output addresses (FEAT_LPA2 for 4
    // and 16 KiB pages; 64 KiB pages keep their high bits either way).
    Ok(Geometry::new(page_shift, va_bits as u32, va_bits == 52))
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
    let g = geometry(&info.what, page_size, va_bits, t1sz)?;
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
        2 => Paged::boxed(LinuxArm64::<M, 2>::new(s, info, g, big_endian, mem)?),
        3 => Paged::boxed(LinuxArm64::<M, 3>::new(s, info, g, big_endian, mem)?),
        4 => Paged::boxed(LinuxArm64::<M, 4>::new(s, info, g, big_endian, mem)?),
        _ => Paged::boxed(LinuxArm64::<M, 5>::new(s, info, g, big_endian, mem)?),
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
    fn walk_to(
        &self,
        image: &Image,
        va: u64,
        trace: &mut impl FnMut(Step),
    ) -> Result<Mapping, Fault> {
        let va = if va & (1 << 55) != 0 {
            va | self.pac
        } else {
            va
        };
        if va < self.top {
            return Err(not_kernel(self.top));
        }
        let tables = HighTables {
            mem: &self.mem,
            high: self.high,
            big_endian: self.format.big_endian,
        };
        self.format
            .translate_traced(image, &tables, Root::Phys(self.root), va, trace)
    }
}

#[cold]
#[inline(never)]
fn not_kernel(top: u64) -> Fault {
    Fault::OutOfRange(format!(
        "not an aarch64 kernel address (swapper_pg_dir maps {top:#x} and up)"
    ))
}

impl<M: PhysMem, const N: usize> Mmu for LinuxArm64<M, N> {
    type Mem = M;

    fn mem(&self) -> &M {
        &self.mem
    }

    #[inline(always)]
    fn translate_traced(
        &self,
        image: &Image,
        va: u64,
        trace: &mut impl FnMut(Step),
    ) -> Result<Mapping, Fault> {
        self.walk_to(image, va, trace)
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
            f(&linux_page(&lm, va, m.pa, m.size, aarch64_prot(m.entry, true), offset))
        };
        let tables = HighTables {
            mem: &self.mem,
            high: self.high,
            big_endian: self.format.big_endian,
        };
        self.format
            .walk(image, &tables, Root::Phys(self.root), 64, &mut visit)
            .map_err(|fault| Error::BadCore(format!("page walk: {fault}")))
    }
}
