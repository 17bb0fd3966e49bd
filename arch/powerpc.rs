//! powerpc (32-bit, big-endian) ELF dumps (`lib/libkvm/kvm_powerpc.c`),
//! and the reader they share with powerpc64's (`arch/powerpc64.rs`).
//!
//! A powerpc kernel without minidump page tracking writes, for
//! `debug.minidump=1` (the default), an ELF core of *virtual* chunks:
//! `moea_scan_init`/`moea64_scan_init` list the kernel's data and bss, the
//! message buffer and each mapped run of kernel VM, and `cb_dumphdr`
//! (sys/kern/kern_dump.c; sys/powerpc/powerpc/dump_machdep.c before it)
//! writes each as a PT_LOAD with `p_vaddr` its virtual address and
//! `p_paddr` all ones (`~0L`). Addresses translate through those program
//! headers, no page tables. The other form (`debug.minidump=0`:
//! `p_vaddr` all ones, `p_paddr` physical) holds no way to translate a
//! virtual address; libkvm refuses it ("Raw corefile not supported") and
//! so does this reader, saying why.
//!
//! A core may start with the 512-byte `struct kerneldumpheader` (a dump
//! not written by savecore(8), e.g. over the network), which libkvm
//! skips, and so does this reader. `kvm_walk_pages` (which libkvm lacks
//! here) reports each page of each chunk: its virtual address, the
//! `p_paddr` the dump gives (all ones: unknown), no direct-map address,
//! the protection of `p_flags` and its file offset.

use crate::error::{Error, Fault, Result};
use crate::image::{uint, Image};
use crate::physmem::{last_at_or_below, PhysMem, Span};
use crate::registry::{Backend, Probe, Setup, Translator, BACKENDS};
use crate::walk::{prot, Page};
use linkme::distributed_slice;
use object::elf::{
    ELFCLASS32, ELFCLASS64, ELFDATA2LSB, ELFDATA2MSB, ELFOSABI_STANDALONE, EM_PPC, ET_CORE,
    PF_R, PF_W, PF_X, PT_LOAD,
};

/// `KERNELDUMPMAGIC` (sys/sys/kerneldump.h) and the header's size; its
/// `architecture[12]` follows the 20-byte magic.
const KDH_MAGIC: &[u8; 20] = b"FreeBSD Kernel Dump\0";
const KDH_SIZE: u64 = 512;
const KDH_ARCH: usize = 20;

/// The ELF identity a core must have: class, byte order, machine.
#[derive(Clone, Copy)]
pub(crate) struct Kind {
    pub is_64: bool,
    pub big_endian: bool,
    pub machine: u16,
    /// `architecture` names a kerneldumpheader may give
    /// (`dump_header_size` in kvm_powerpc*.c).
    pub kdh_arch: &'static [&'static [u8]],
    /// For messages.
    pub name: &'static str,
}

impl Kind {
    /// True when `head` (the core's first bytes) is an ELF core of this
    /// kind, or starts with a kerneldumpheader of this architecture.
    pub fn probe(&self, p: &Probe<'_>) -> bool {
        if let Some(c) = p.core_elf() {
            return c.is_64 == self.is_64
                && c.big_endian == self.big_endian
                && c.machine == self.machine;
        }
        p.core_starts_with(KDH_MAGIC) && {
            let a = &p.core_head[KDH_ARCH.min(p.core_head.len())..];
            let a = &a[..a.len().min(12)];
            let a = &a[..a.iter().position(|&c| c == 0).unwrap_or(a.len())];
            self.kdh_arch.contains(&a)
        }
    }
}

/// One PT_LOAD: virtual `[va, va + size)` at file offset `off`.
#[derive(Clone, Copy, Debug)]
struct Chunk {
    va: u64,
    size: u64,
    off: u64,
    flags: u32,
    paddr: u64,
}

/// An ELF dump of virtual chunks: locations are file offsets, looked up by
/// virtual address.
pub(crate) struct VirtualDump {
    /// Sorted by virtual address, disjoint.
    chunks: Vec<Chunk>,
    held_pages: u64,
    name: &'static str,
}

/// Reads the ELF header and program headers of a `kind` core, after a
/// kerneldumpheader if one comes first.
pub(crate) fn initvtop_kind(s: &Setup<'_>, kind: Kind) -> Result<Box<dyn Translator>> {
    let d = VirtualDump::parse(s.core, kind).map_err(|e| e.within(kind.name))?;
    Ok(Box::new(d))
}

impl VirtualDump {
    fn parse(image: &Image, kind: Kind) -> Result<VirtualDump> {
        let bad = |m: String| Error::BadCore(m);
        let mut magic = [0u8; 20];
        let base = if image.read_exact_at(0, &mut magic) && &magic == KDH_MAGIC {
            KDH_SIZE
        } else {
            0
        };
        let be = kind.big_endian;
        let (ehsize, phentsize) = if kind.is_64 { (64, 56) } else { (52, 32) };
        let mut eh = [0u8; 64];
        if !image.read_exact_at(base, &mut eh[..ehsize]) {
            return Err(bad(format!(
                "the ELF header ({ehsize} bytes at {base:#x}) lies past the end of the file"
            )));
        }
        let class = if kind.is_64 { ELFCLASS64 } else { ELFCLASS32 };
        let data = if be { ELFDATA2MSB } else { ELFDATA2LSB };
        let u16_at = |b: &[u8], o: usize| uint(&b[o..o + 2], be) as u16;
        // valid_elf_header (kvm_powerpc*.c).
        if eh[..4] != object::elf::ELFMAG
            || eh[4] != class
            || eh[5] != data
            || eh[6] != 1
            || eh[7] != ELFOSABI_STANDALONE
            || u16_at(&eh, 16) != ET_CORE
            || u16_at(&eh, 18) != kind.machine
        {
            return Err(bad(format!(
                "no {} ELF core header at offset {base:#x} (ELFCLASS{}, {}, \
                 ELFOSABI_STANDALONE, ET_CORE)",
                kind.name,
                if kind.is_64 { 64 } else { 32 },
                if be { "big-endian" } else { "little-endian" }
            )));
        }
        let (phoff, ph_entsize, phnum) = if kind.is_64 {
            (uint(&eh[32..40], be), u16_at(&eh, 54), u16_at(&eh, 56))
        } else {
            (uint(&eh[28..32], be), u16_at(&eh, 42), u16_at(&eh, 44))
        };
        if usize::from(ph_entsize) != phentsize {
            return Err(bad(format!(
                "e_phentsize is {ph_entsize}, not {phentsize}"
            )));
        }
        let ones = if kind.is_64 {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        };
        let mut chunks = Vec::new();
        let mut ph = [0u8; 56];
        for i in 0..u64::from(phnum) {
            let at = base
                .checked_add(phoff)
                .and_then(|o| o.checked_add(i * phentsize as u64));
            if !at.is_some_and(|at| image.read_exact_at(at, &mut ph[..phentsize])) {
                return Err(bad(format!(
                    "program header {i} (at {phoff:#x} + {i} * {phentsize}) lies past the end \
                     of the file"
                )));
            }
            // Elf64_Phdr: type, flags, offset, vaddr, paddr, filesz;
            // Elf32_Phdr: type, offset, vaddr, paddr, filesz, memsz, flags.
            let u32_at = |o: usize| uint(&ph[o..o + 4], be);
            let w = |o: usize| uint(&ph[o..o + if kind.is_64 { 8 } else { 4 }], be);
            let (p_type, flags, off, va, pa, filesz) = if kind.is_64 {
                (u32_at(0), u32_at(4), w(8), w(16), w(24), w(32))
            } else {
                (u32_at(0), u32_at(24), w(4), w(8), w(12), w(16))
            };
            if p_type != u64::from(PT_LOAD) || filesz == 0 {
                continue;
            }
            if va == ones {
                return Err(bad(format!(
                    "PT_LOAD {i} has p_vaddr all ones and p_paddr {pa:#x}: a dump of \
                     physical memory (debug.minidump=0), which says nothing of how kernel \
                     virtual addresses map (libkvm: \"Raw corefile not supported\")"
                )));
            }
            let off = base.checked_add(off);
            let (Some(off), Some(_), Some(_)) = (
                off,
                va.checked_add(filesz),
                off.and_then(|o| o.checked_add(filesz)),
            ) else {
                return Err(bad(format!(
                    "PT_LOAD {i} (vaddr {va:#x}, size {filesz:#x}) overflows"
                )));
            };
            if chunks.try_reserve(1).is_err() {
                return Err(Error::OutOfMemory("the dump's program headers".into()));
            }
            chunks.push(Chunk {
                va,
                size: filesz,
                off,
                flags: flags as u32,
                paddr: pa,
            });
        }
        if chunks.is_empty() {
            return Err(bad("no PT_LOAD segments: the dump holds no memory".into()));
        }
        chunks.sort_by_key(|c| c.va);
        for w in chunks.windows(2) {
            if w[0].va + w[0].size > w[1].va {
                return Err(bad(format!(
                    "PT_LOAD segments overlap at virtual address {:#x}",
                    w[1].va
                )));
            }
        }
        let held_pages = chunks
            .iter()
            .map(|c| image.len().saturating_sub(c.off).min(c.size) / 4096)
            .fold(0u64, u64::saturating_add);
        Ok(VirtualDump {
            chunks,
            held_pages,
            name: kind.name,
        })
    }
}

impl PhysMem for VirtualDump {
    /// Locations by *virtual* address.
    #[inline]
    fn locate(&self, va: u64) -> Option<Span> {
        let c = &self.chunks[last_at_or_below(&self.chunks, va, |c| c.va)?];
        let d = va - c.va;
        (d < c.size).then(|| Span {
            off: c.off + d,
            len: c.size - d,
        })
    }

    fn held_pages(&self) -> u64 {
        self.held_pages
    }

    #[cold]
    fn missing(&self, _va: u64) -> Fault {
        Fault::Unmapped("in no PT_LOAD segment: the dump holds only the chunks of kernel \
             memory its program headers name"
            .into())
    }
}

impl Translator for VirtualDump {
    #[inline]
    fn kvatop(&self, _core: &Image, va: u64) -> Result<Span, Fault> {
        self.find(va)
    }

    fn vtop(&self, _core: &Image, _va: u64) -> Result<u64, Fault> {
        Err(no_physical(self.name))
    }

    fn read_phys(&self, _core: &Image, pa: u64, _buf: &mut [u8]) -> Result<usize> {
        Err(Error::physical(pa, no_physical(self.name)))
    }

    fn locate_phys(&self, _pa: u64) -> Result<Span, Fault> {
        Err(no_physical(self.name))
    }

    fn view<'a>(&'a self, core: &'a Image, off: u64, buf: &'a mut [u8]) -> Option<&'a [u8]> {
        PhysMem::view(self, core, off, buf)
    }

    fn held_pages(&self) -> u64 {
        self.held_pages
    }

    fn end(&self, core: &Image) -> u64 {
        core.len()
    }

    fn in_file(&self) -> bool {
        true
    }

    fn location_offset(&self, core: &Image, loc: u64) -> Option<u64> {
        (loc < core.len()).then_some(loc)
    }

    /// Each 4 KiB page of each chunk the file holds, by virtual address.
    fn walk_pages(&self, core: &Image, f: &mut dyn FnMut(&Page) -> bool) -> Result<bool> {
        for c in &self.chunks {
            let mut p = prot::READ * u8::from(c.flags & PF_R != 0);
            if c.flags & PF_W != 0 {
                p |= prot::WRITE;
            }
            if c.flags & PF_X != 0 {
                p |= prot::EXECUTE;
            }
            let mut d = 0;
            while d < c.size && c.off + d < core.len() {
                let len = (c.size - d).min(4096);
                let page = Page {
                    paddr: c.paddr,
                    kmap_vaddr: c.va + d,
                    dmap_vaddr: 0,
                    prot: p,
                    offset: Some(c.off + d),
                    len,
                };
                if !f(&page) {
                    return Ok(false);
                }
                d += len;
            }
        }
        Ok(true)
    }
}

#[cold]
fn no_physical(name: &str) -> Fault {
    Fault::OutOfRange(format!(
        "a {name} ELF dump holds virtual chunks only: it has no physical addresses"
    ))
}

const POWERPC: Kind = Kind {
    is_64: false,
    big_endian: true,
    machine: EM_PPC,
    kdh_arch: &[b"powerpc"],
    name: "powerpc",
};

fn probe(p: &Probe<'_>) -> bool {
    // _powerpc_probe: a big-endian ELFCLASS32 EM_PPC kernel (ET_DYN).
    p.kernel_is(false, true, EM_PPC) && POWERPC.probe(p)
}

fn native() -> bool {
    cfg!(all(target_arch = "powerpc", target_endian = "big"))
}

#[distributed_slice(BACKENDS)]
static POWERPC_ELF: Backend = Backend {
    name: "powerpc ELF dump",
    probe,
    initvtop: |s| initvtop_kind(s, POWERPC),
    native,
};
