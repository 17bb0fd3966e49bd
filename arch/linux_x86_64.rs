//! Linux x86-64 dumps (ELF vmcores and kdump-compressed files): four- or
//! five-level paging from the kernel's `init_top_pgt`, with KASLR.
//!
//! The root is found as the kernel finds its own physical addresses
//! (`__phys_addr_nodebug`, `arch/x86/include/asm/page_64.h`): a kernel-map
//! address `va` lies at physical `va - __START_KERNEL_map + phys_base`,
//! with `va` the run-time (relocated) address that VMCOREINFO's `SYMBOL()`
//! lines give and `phys_base` VMCOREINFO's signed `NUMBER(phys_base)`.
//! `arch/x86/kernel/vmcore_info_64.c` (formerly `crash_core_64.c`) writes
//! `phys_base`, `init_top_pgt`, `pgtable_l5_enabled`, `KERNELOFFSET` and
//! `sme_mask` (AMD memory encryption: the C-bit is set in entries and is
//! no part of a frame).

use super::amd64::{check_canonical, entry_prot, native, MMU, MMU_LA57, PG_FRAME};
use crate::error::{Error, Fault, Result};
use crate::image::Image;
use crate::linux::{LinuxCore, Mem, Needs};
use crate::space::{Mmu, Paged};
use crate::pagetable::{sign_extend, Format, Mapping, Root, Step};
use crate::physmem::PhysMem;
use crate::registry::{Backend, Probe, Setup, Translator, BACKENDS};
use crate::walk::{linux_page, DirectMap, Page};
use linkme::distributed_slice;
use object::elf::EM_X86_64;

/// `__START_KERNEL_map` (`arch/x86/include/asm/page_64_types.h`): where
/// the kernel image is mapped, physical `phys_base` at its start.
const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;

/// `__PAGE_OFFSET_BASE_L4` and `__PAGE_OFFSET_BASE_L5`
/// (`arch/x86/include/asm/page_64_types.h`): the direct map without
/// `CONFIG_RANDOMIZE_MEMORY`.
const PAGE_OFFSET_L4: u64 = 0xffff_8880_0000_0000;
const PAGE_OFFSET_L5: u64 = 0xff11_0000_0000_0000;

/// The direct map's size: `1 << MAX_PHYSMEM_BITS` (46 with four levels,
/// 52 with five; `arch/x86/include/asm/sparsemem.h`).
const DMAP_BITS_L4: u32 = 46;
const DMAP_BITS_L5: u32 = 52;

fn probe(p: &Probe<'_>) -> bool {
    p.linux.is_some_and(|l| l.machine == EM_X86_64)
        && p.kernel.is_none_or(|k| k.machine == EM_X86_64)
}

#[distributed_slice(BACKENDS)]
static LINUX_X86_64: Backend = Backend {
    name: "Linux x86-64",
    probe,
    initvtop,
    native,
};

/// The paging mode. Without memory encryption the formats are the
/// shared statics, which a read's walk folds into constants; with it, a
/// copy whose frame masks leave out the C-bit.
#[derive(Clone, Copy)]
enum Paging {
    L4,
    L5,
    L4Sme(Format<4>),
    L5Sme(Format<5>),
}

struct LinuxX86<M> {
    mem: M,
    paging: Paging,
    root: u64,
    dmap: DirectMap,
}

fn initvtop(s: &Setup<'_>) -> Result<Box<dyn Translator>> {
    let LinuxCore {
        mem, info, qemu_cr, ..
    } = s.take_linux()?;
    let info = Needs::new(&info, "x86-64");
    Ok(match mem {
        Mem::Elf(m) => {
            // kexec-tools names each RAM segment by its direct-map address.
            // (/proc/kcore's vmalloc and module segments have no physical
            // address: p_paddr -1.)
            let base = m.loads.iter().find_map(|&(va, pa)| {
                ((va as i64) < 0 && va < START_KERNEL_MAP && pa != u64::MAX)
                    .then(|| va.wrapping_sub(pa))
            });
            Paged::boxed(LinuxX86::new(s, &info, m, base, qemu_cr)?)
        }
        Mem::Kdump(m) => Paged::boxed(LinuxX86::new(s, &info, m, None, qemu_cr)?),
    })
}

impl<M: PhysMem> LinuxX86<M> {
    /// `dmap_hint`: the direct map's base, where the container says it;
    /// `cr`: the first CPU's control registers, where QEMU wrote them.
    fn new(
        s: &Setup<'_>,
        info: &Needs<'_>,
        mem: M,
        dmap_hint: Option<u64>,
        cr: Option<[u64; 5]>,
    ) -> Result<Self> {
        let image = s.core;
        // Without VMCOREINFO (QEMU's dump of a guest started without
        // -device vmcoreinfo), the CPU's own CR3 and CR4.
        let from_cpu = match (info.info.number("phys_base"), cr) {
            (None, Some(cr)) => Some(cpu_root(&cr)?),
            _ => None,
        };
        let l5 = match from_cpu {
            Some((_, l5)) => l5,
            None => info.info.number("pgtable_l5_enabled") == Some(1),
        };
        // The C-bit of memory encryption is set in entries, not in frames.
        let sme = info.info.number("sme_mask").unwrap_or(0) as u64;
        let paging = match (l5, sme) {
            (false, 0) => Paging::L4,
            (true, 0) => Paging::L5,
            (false, _) => Paging::L4Sme(MMU.without(sme)),
            (true, _) => Paging::L5Sme(MMU_LA57.without(sme)),
        };
        let mut t = LinuxX86 {
            mem,
            paging,
            root: 0,
            dmap: DirectMap::NONE,
        };
        t.root = match from_cpu {
            Some((root, _)) => {
                if t.mem.locate(root).is_none() {
                    return Err(Error::BadCore(format!(
                        "{}: the CPU's CR3 ({:#x}, from QEMU's notes) names a page table the \
                         dump does not hold",
                        info.what,
                        cr.map_or(0, |c| c[3])
                    )));
                }
                root
            }
            None => t.root_from_vmcoreinfo(s, info)?,
        };
        // The direct map's base is randomised (CONFIG_RANDOMIZE_MEMORY):
        // the kernel keeps it in page_offset_base.
        let (base, bits) = if l5 {
            (PAGE_OFFSET_L5, DMAP_BITS_L5)
        } else {
            (PAGE_OFFSET_L4, DMAP_BITS_L4)
        };
        let base = (s.lookup)("page_offset_base")
            .and_then(|va| t.read_u64(image, va))
            .or(dmap_hint)
            .or_else(|| t.find_dmap(image))
            .unwrap_or(base);
        t.dmap = DirectMap {
            base,
            end: base.saturating_add(1 << bits),
            phys: 0,
        };
        Ok(t)
    }

    /// The root VMCOREINFO gives: `init_top_pgt` through `phys_base`,
    /// checked: the tables found must map the root's own address to the
    /// root, so a wrong phys_base or root symbol (another kernel's, or a
    /// lying VMCOREINFO) fails here rather than reading garbage later.
    fn root_from_vmcoreinfo(&mut self, s: &Setup<'_>, info: &Needs<'_>) -> Result<u64> {
        let phys_base = info.number("phys_base")?;
        let (name, root_va) = ["init_top_pgt", "init_level4_pgt", "swapper_pg_dir"]
            .into_iter()
            .find_map(|n| Some((n, (s.lookup)(n)?)))
            .ok_or_else(|| {
                Error::BadCore(format!(
                    "{}: neither VMCOREINFO nor the kernel's symbols give init_top_pgt (or \
                     swapper_pg_dir), the kernel's page-table root",
                    info.what
                ))
            })?;
        let root = kernel_map_pa(root_va, phys_base).ok_or_else(|| {
            Error::BadCore(format!(
                "{name} ({root_va:#x}) is not in the kernel map (from {START_KERNEL_MAP:#x})"
            ))
        })?;
        self.root = root;
        match self.translate(s.core, root_va).map(|m| m.pa) {
            Ok(pa) if pa == root => Ok(root),
            got => Err(Error::BadCore(format!(
                "the page tables at physical {root:#x} ({name} {root_va:#x} with phys_base \
                 {phys_base}) do not map {name} back to themselves ({}): VMCOREINFO does not \
                 describe this memory",
                match got {
                    Ok(pa) => format!("they give {pa:#x}"),
                    Err(f) => f.to_string(),
                }
            ))),
        }
    }

    /// The translation of `va`.
    #[inline(always)]
    fn walk_to(
        &self,
        image: &Image,
        va: u64,
        trace: &mut impl FnMut(Step),
    ) -> Result<Mapping, Fault> {
        let root = Root::Phys(self.root);
        let mem = &self.mem;
        match &self.paging {
            Paging::L4 => {
                check_canonical(va)?;
                MMU.translate_traced(image, mem, root, va, trace)
            }
            Paging::L4Sme(f) => {
                check_canonical(va)?;
                f.translate_traced(image, mem, root, va, trace)
            }
            Paging::L5 => {
                check_canonical_57(va)?;
                MMU_LA57.translate_traced(image, mem, root, va, trace)
            }
            Paging::L5Sme(f) => {
                check_canonical_57(va)?;
                f.translate_traced(image, mem, root, va, trace)
            }
        }
    }

    /// Calls `f` for every leaf of the kernel's tables.
    fn walk(&self, image: &Image, f: &mut dyn FnMut(u64, &Mapping) -> bool) -> Result<bool, Fault> {
        let (root, mem) = (Root::Phys(self.root), &self.mem);
        match &self.paging {
            Paging::L4 => MMU.walk(image, mem, root, 48, f),
            Paging::L4Sme(fmt) => fmt.walk(image, mem, root, 48, f),
            Paging::L5 => MMU_LA57.walk(image, mem, root, 57, f),
            Paging::L5Sme(fmt) => fmt.walk(image, mem, root, 57, f),
        }
    }

    /// Where the direct map starts, found in the tables as the first
    /// kernel-half leaf that maps physical 0 at a 1 GiB-aligned address
    /// (the direct map comes first in the kernel half and maps low memory
    /// from 0, `init_mem_mapping`; KASLR aligns its base to a PUD,
    /// `arch/x86/mm/kaslr.c`): for dumps that give neither
    /// `page_offset_base` nor segment addresses.
    fn find_dmap(&self, image: &Image) -> Option<u64> {
        let mut found = None;
        let mut visit = |va: u64, m: &Mapping| {
            if (va as i64) < 0 && m.pa == 0 && va & ((1 << 30) - 1) == 0 {
                found = Some(va);
                return false;
            }
            true
        };
        let _ = self.walk(image, &mut visit);
        found
    }

    /// A little-endian word of kernel memory.
    fn read_u64(&self, image: &Image, va: u64) -> Option<u64> {
        let pa = self.translate(image, va).ok()?.pa;
        let span = self.mem.locate(pa).filter(|s| s.len >= 8)?;
        Some(u64::from_le_bytes(self.mem.array(image, span.off)?))
    }
}

/// Checks that `va` is a canonical 57-bit address.
#[inline(always)]
fn check_canonical_57(va: u64) -> Result<(), Fault> {
    if sign_extend(va, 57) == va {
        Ok(())
    } else {
        Err(non_canonical_57())
    }
}

#[cold]
#[inline(never)]
fn non_canonical_57() -> Fault {
    Fault::OutOfRange("not a canonical 57-bit address (bits 56-63 must be equal)".into())
}

/// The page-table root and paging mode a CPU's control registers give
/// (Intel SDM vol. 3A, 4.1: CR0.PG (bit 31) enables paging; CR4.PAE
/// (bit 5) is set in IA-32e mode; CR4.LA57 (bit 12) selects five levels;
/// CR3 bits 12-51 hold the top table, its low bits PCID or flags).
fn cpu_root(cr: &[u64; 5]) -> Result<(u64, bool)> {
    if cr[0] & (1 << 31) == 0 {
        return Err(Error::BadCore(
            "Linux x86-64 dump without VMCOREINFO: the CPU QEMU dumped had paging off (CR0.PG \
             clear), so there are no kernel page tables to read"
                .into(),
        ));
    }
    if cr[4] & (1 << 5) == 0 {
        return Err(Error::BadCore(format!(
            "Linux x86-64 dump without VMCOREINFO: CR4 {:#x} has PAE clear, which no 64-bit \
             kernel runs with",
            cr[4]
        )));
    }
    Ok((cr[3] & PG_FRAME, cr[4] & (1 << 12) != 0))
}

/// The physical address of kernel-map address `va`.
fn kernel_map_pa(va: u64, phys_base: i64) -> Option<u64> {
    va.checked_sub(START_KERNEL_MAP)?
        .checked_add_signed(phys_base)
}

impl<M: PhysMem> Mmu for LinuxX86<M> {
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

    /// Walks the kernel page tables from the root: leaves inside the
    /// direct map by their direct-map address, others by their kernel
    /// address with the direct-map address of their memory.
    fn walk_pages(&self, image: &Image, f: &mut dyn FnMut(&Page) -> bool) -> Result<bool> {
        let mut visit = |va: u64, m: &Mapping| {
            let offset = self.mem.file_offset(image, m.pa);
            f(&linux_page(&self.dmap, va, m.pa, m.size, entry_prot(m.entry), offset))
        };
        self.walk(image, &mut visit)
            .map_err(|fault| Error::BadCore(format!("page walk: {fault}")))
    }
}
