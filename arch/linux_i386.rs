//! Linux i386 dumps (ELF vmcores, including QEMU's ELFCLASS64 ones with
//! `EM_386`, and kdump-compressed files): two-level (non-PAE, 4 MiB pages)
//! or PAE three-level paging from `swapper_pg_dir`.
//!
//! On i386 the kernel lives in the lowmem linear map: `__pa(va) = va -
//! PAGE_OFFSET` (`arch/x86/include/asm/page_32.h`), for the kernel image
//! as for the rest of low memory, and KASLR moves the kernel virtually and
//! physically together. `PAGE_OFFSET` is a build choice (`CONFIG_VMSPLIT_*`,
//! `arch/x86/Kconfig`) that VMCOREINFO does not record, so each split is
//! tried and the one whose tables map `swapper_pg_dir` back to itself is
//! kept. VMCOREINFO (`arch/x86/kernel/machine_kexec_32.c`) says
//! `CONFIG_X86_PAE=y` for PAE kernels and has no KERNELOFFSET: the KASLR
//! offset is `_stext`'s move when a kernel file gives it (src/linux.rs).

use super::i386::{entry_prot, native, NOPAE, PAE};
use crate::error::{Error, Fault, Result};
use crate::image::Image;
use crate::linux::{LinuxCore, Mem};
use crate::space::{Mmu, Paged};
use crate::pagetable::{check_32bit, Mapping, Root, Step};
use crate::physmem::PhysMem;
use crate::registry::{Backend, Probe, Setup, Translator, BACKENDS};
use crate::walk::{linux_page, DirectMap, Page};
use linkme::distributed_slice;
use object::elf::EM_386;

/// `PAGE_OFFSET` of each `CONFIG_VMSPLIT_*` choice (`arch/x86/Kconfig`:
/// 3G, 3G_OPT, 2G, 2G_OPT, 1G), the default (3G/1G) first.
const PAGE_OFFSETS: [u64; 5] = [0xc000_0000, 0xb000_0000, 0x8000_0000, 0x7800_0000, 0x4000_0000];

fn probe(p: &Probe<'_>) -> bool {
    p.linux.is_some_and(|l| l.machine == EM_386) && p.kernel.is_none_or(|k| k.machine == EM_386)
}

#[distributed_slice(BACKENDS)]
static LINUX_I386: Backend = Backend {
    name: "Linux i386",
    probe,
    initvtop,
    native,
};

struct LinuxI386<M> {
    mem: M,
    pae: bool,
    root: u64,
    /// The lowmem linear map.
    lowmem: DirectMap,
}

fn initvtop(s: &Setup<'_>) -> Result<Box<dyn Translator>> {
    let LinuxCore { mem, info, .. } = s.take_linux()?;
    let pae = info.config("X86_PAE");
    Ok(match mem {
        Mem::Elf(m) => Paged::boxed(LinuxI386::new(s, m, pae)?),
        Mem::Kdump(m) => Paged::boxed(LinuxI386::new(s, m, pae)?),
    })
}

impl<M: PhysMem> LinuxI386<M> {
    fn new(s: &Setup<'_>, mem: M, pae: bool) -> Result<Self> {
        let root_va = (s.lookup)("swapper_pg_dir").ok_or_else(|| {
            Error::BadCore(
                "Linux i386 dump: neither VMCOREINFO nor the kernel's symbols give \
                 swapper_pg_dir, the kernel's page-table root"
                    .into(),
            )
        })?;
        let mut t = LinuxI386 {
            mem,
            pae,
            root: 0,
            lowmem: DirectMap::NONE,
        };
        // The tables must map swapper_pg_dir to where they lie: that
        // picks the split, and refuses a root that is not one.
        for offset in PAGE_OFFSETS {
            let Some(root) = root_va.checked_sub(offset) else {
                continue;
            };
            t.root = root;
            if t.translate(s.core, root_va).is_ok_and(|m| m.pa == root) {
                t.lowmem = DirectMap {
                    base: offset,
                    end: 1 << 32,
                    phys: 0,
                };
                return Ok(t);
            }
        }
        Err(Error::BadCore(format!(
            "Linux i386 dump: no PAGE_OFFSET of the kernel's memory splits makes the {} page \
             tables at swapper_pg_dir ({root_va:#x}) map swapper_pg_dir back to themselves \
             (VMCOREINFO {} CONFIG_X86_PAE)",
            if pae { "PAE" } else { "non-PAE" },
            if pae { "says" } else { "does not say" }
        )))
    }

    #[inline(always)]
    fn walk_to(
        &self,
        image: &Image,
        va: u64,
        trace: &mut impl FnMut(Step),
    ) -> Result<Mapping, Fault> {
        check_32bit(va, "i386")?;
        let root = Root::Phys(self.root);
        if self.pae {
            PAE.translate_traced(image, &self.mem, root, va, trace)
        } else {
            NOPAE.translate_traced(image, &self.mem, root, va, trace)
        }
    }
}

impl<M: PhysMem> Mmu for LinuxI386<M> {
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

    /// Walks the kernel page tables from `swapper_pg_dir`: leaves of the
    /// lowmem linear map by their linear address, others (vmalloc, kmap,
    /// fixmap) by their address with the linear address of their memory
    /// where it is low memory.
    fn walk_pages(&self, image: &Image, f: &mut dyn FnMut(&Page) -> bool) -> Result<bool> {
        let mut visit = |va: u64, m: &Mapping| {
            let offset = self.mem.file_offset(image, m.pa);
            f(&linux_page(&self.lowmem, va, m.pa, m.size, entry_prot(m.entry), offset))
        };
        let root = Root::Phys(self.root);
        if self.pae {
            PAE.walk(image, &self.mem, root, 64, &mut visit)
        } else {
            NOPAE.walk(image, &self.mem, root, 64, &mut visit)
        }
        .map_err(|fault| Error::BadCore(format!("page walk: {fault}")))
    }
}
