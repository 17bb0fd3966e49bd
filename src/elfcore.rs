//! ELF full dumps, as FreeBSD writes them and savecore leaves them.
//!
//! `sys/kern/kern_dump.c` (`dumpsys_generic`) writes an ELF core with
//! OSABI 255 (ELFOSABI_STANDALONE), `e_version` 0, no section headers and one
//! PT_LOAD per physical memory chunk, `p_paddr == p_vaddr ==` its physical
//! address. savecore strips the kerneldumpheader around it.

use crate::error::{Error, Fault, Result};
use crate::image::Image;
use crate::physmem::{last_at_or_below, longest, PhysMem, Span};
use object::elf;
use object::read::elf::{FileHeader, ProgramHeader};
use object::{Endianness, ReadRef};

/// One PT_LOAD segment: physical addresses `[pa, pa + size)` at file offset `off`.
#[derive(Debug, Clone, Copy)]
struct Segment {
    pa: u64,
    size: u64,
    off: u64,
}

/// Identity of an ELF file: class, byte order, OS ABI, type and machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfIdent {
    /// True for ELFCLASS64.
    pub is_64: bool,
    /// True for ELFDATA2MSB.
    pub big_endian: bool,
    /// `e_ident[EI_OSABI]` (ELFOSABI_FREEBSD for FreeBSD kernels).
    pub osabi: u8,
    /// `e_type` (ET_EXEC for kernels, ET_CORE for full dumps).
    pub e_type: u16,
    /// `e_machine` (EM_X86_64, EM_386, EM_AARCH64, EM_RISCV, ...).
    pub machine: u16,
    /// `e_flags` (0 when the header is cut short): the ABI of a mips
    /// kernel (`EF_MIPS_ABI2` for n32) is recorded there.
    pub flags: u32,
}

impl ElfIdent {
    /// Reads the identity from an ELF header, if `data` starts with one.
    pub fn parse(data: &[u8]) -> Option<ElfIdent> {
        if data.len() < 20 || data[..4] != elf::ELFMAG {
            return None;
        }
        let is_64 = match data[4 /* EI_CLASS */] {
            elf::ELFCLASS32 => false,
            elf::ELFCLASS64 => true,
            _ => return None,
        };
        let big_endian = match data[5 /* EI_DATA */] {
            elf::ELFDATA2LSB => false,
            elf::ELFDATA2MSB => true,
            _ => return None,
        };
        let half = |o: usize| {
            let b = [data[o], data[o + 1]];
            if big_endian {
                u16::from_be_bytes(b)
            } else {
                u16::from_le_bytes(b)
            }
        };
        // e_flags follows e_entry, e_phoff and e_shoff (3 words of the class).
        let flags_at = if is_64 { 48 } else { 36 };
        let flags = data.get(flags_at..flags_at + 4).map_or(0, |b| {
            let b = [b[0], b[1], b[2], b[3]];
            if big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        });
        Some(ElfIdent {
            is_64,
            big_endian,
            osabi: data[7 /* EI_OSABI */],
            e_type: half(16),
            machine: half(18),
            flags,
        })
    }

    /// What kind of ELF file this is, by `e_type`, for messages.
    pub fn kind(&self) -> &'static str {
        match self.e_type {
            elf::ET_REL => "relocatable object (ET_REL), such as a kernel module",
            elf::ET_EXEC => "executable (ET_EXEC)",
            elf::ET_DYN => "shared object or position-independent executable (ET_DYN)",
            elf::ET_CORE => "core file (ET_CORE)",
            _ => "file of unknown type",
        }
    }

    /// A human name for the machine, for error messages.
    pub fn describe(&self) -> String {
        let m = match self.machine {
            elf::EM_X86_64 => "x86-64 (amd64)",
            elf::EM_386 => "i386",
            elf::EM_AARCH64 => "aarch64 (arm64)",
            elf::EM_RISCV => "riscv",
            elf::EM_ARM => "arm",
            elf::EM_PPC => "powerpc",
            elf::EM_PPC64 => "powerpc64",
            elf::EM_MIPS => "mips",
            _ => "unknown machine",
        };
        format!(
            "ELF{} {}-endian {} (e_machine {})",
            if self.is_64 { 64 } else { 32 },
            if self.big_endian { "big" } else { "little" },
            m,
            self.machine
        )
    }
}

/// `PT_DUMP_DELTA` (`sys/sys/elf_common.h`): an auxiliary program header
/// some kernels add to full dumps (`dumpsys_write_aux_headers`, arm and
/// amd64 since freebsd-src PR #1706) whose `p_vaddr`/`p_paddr` pair gives
/// the kernel's virtual-to-physical displacement.
pub const PT_DUMP_DELTA: u32 = 0x6fb5_d000;

/// What to do with PT_LOAD segments that cover the same physical memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// Refuse the core (FreeBSD writes one segment per memory chunk).
    Refuse,
    /// Keep the first segment's bytes (a Linux vmcore describes the
    /// kernel's text twice: once by its kernel-map address, once inside
    /// the RAM segment that holds it; `kexec-tools`, `fs/proc/vmcore.c`).
    KeepFirst,
}

/// The physical memory of an ELF full dump.
pub struct ElfCore {
    /// The `PT_DUMP_DELTA` header's `(p_vaddr, p_paddr)`, if present.
    pub dump_delta: Option<(u64, u64)>,
    /// The PT_NOTE segments: (file offset, size).
    pub notes: Vec<(u64, u64)>,
    /// Each PT_LOAD's `(p_vaddr, p_paddr)`, in file order (a Linux vmcore
    /// names the direct-map address of its RAM segments).
    pub loads: Vec<(u64, u64)>,
    /// Sorted by physical address, non-overlapping.
    segs: Vec<Segment>,
    /// Physical ranges segments describe but do not hold (`p_memsz` past
    /// `p_filesz`: makedumpfile `-E` shortens segments over pages it
    /// filters out), sorted.
    unheld: Vec<(u64, u64)>,
    /// The largest segment, tried first.
    main: Segment,
    /// 4 KiB pages of memory the file really holds.
    held_pages: u64,
}

impl ElfCore {
    /// Parses the program headers of an ELF core file.
    pub fn parse(image: &Image) -> Result<ElfCore> {
        Self::parse_with(image, Overlap::Refuse)
    }

    /// Parses the program headers of an ELF core file, treating segments
    /// that cover the same memory as `overlap` says.
    pub fn parse_with(image: &Image, overlap: Overlap) -> Result<ElfCore> {
        // Headers are read once: with pread (see Image::read_exact_at). The
        // identity's read is the one an ELF64 header parse asks for, cached.
        let cache = object::ReadCache::new(image.reader());
        let head = (&cache)
            .read_bytes_at(0, image.len().min(64))
            .unwrap_or(&[]);
        let ident =
            ElfIdent::parse(head).ok_or_else(|| Error::BadCore("not an ELF file".into()))?;
        let Segments {
            segs,
            dump_delta,
            notes,
            loads,
            unheld,
        } = segments_of(ident, &cache, overlap)?;
        let main = segs[longest(&segs, |s| s.size)];
        // Segments may share file bytes (nothing forbids it): what the
        // file holds is at most its own length.
        let held_pages = segs
            .iter()
            .map(|s| image.len().saturating_sub(s.off).min(s.size) / 4096)
            .fold(0u64, u64::saturating_add)
            .min(image.len() / 4096);
        Ok(ElfCore {
            dump_delta,
            notes,
            loads,
            segs,
            unheld,
            main,
            held_pages,
        })
    }

    /// Physical address ranges whose bytes the file really holds (a
    /// segment of a truncated core is cut at the end of the file), in
    /// ascending order.
    pub fn ranges_in_file(&self, file_len: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.segs.iter().filter_map(move |s| {
            let held = file_len.saturating_sub(s.off).min(s.size);
            (held > 0).then(|| (s.pa, s.pa + held))
        })
    }
}

/// What the program headers describe.
struct Segments {
    segs: Vec<Segment>,
    dump_delta: Option<(u64, u64)>,
    notes: Vec<(u64, u64)>,
    loads: Vec<(u64, u64)>,
    unheld: Vec<(u64, u64)>,
}

fn segments_of<'d, R: ReadRef<'d>>(ident: ElfIdent, data: R, overlap: Overlap) -> Result<Segments> {
    if ident.is_64 {
        segments::<elf::FileHeader64<Endianness>, R>(data, overlap)
    } else {
        segments::<elf::FileHeader32<Endianness>, R>(data, overlap)
    }
}

fn segments<'d, H: FileHeader<Endian = Endianness>, R: ReadRef<'d>>(
    data: R,
    overlap: Overlap,
) -> Result<Segments> {
    let bad = |m: String| Error::BadCore(m);
    let hdr = H::parse(data).map_err(|e| bad(format!("ELF header: {e}")))?;
    let endian = hdr.endian().map_err(|e| bad(format!("ELF header: {e}")))?;
    if hdr.e_type(endian) != elf::ET_CORE {
        return Err(bad("is an ELF file but not a core file (ET_CORE)".into()));
    }
    // object bounds-checks the program header table against the file.
    let phdrs = hdr
        .program_headers(endian, data)
        .map_err(|e| bad(format!("program headers: {e}")))?;
    let mut segs = Vec::with_capacity(phdrs.len());
    let mut delta = None;
    let mut notes = Vec::new();
    let mut loads = Vec::new();
    let mut unheld = Vec::new();
    for (i, ph) in phdrs.iter().enumerate() {
        if ph.p_type(endian) == elf::PT_NOTE {
            notes.push((ph.p_offset(endian).into(), ph.p_filesz(endian).into()));
        }
        if ph.p_type(endian) == PT_DUMP_DELTA {
            delta = Some((ph.p_vaddr(endian).into(), ph.p_paddr(endian).into()));
        }
        if ph.p_type(endian) != elf::PT_LOAD {
            continue;
        }
        loads.push((ph.p_vaddr(endian).into(), ph.p_paddr(endian).into()));
        let pa: u64 = ph.p_paddr(endian).into();
        // /proc/kcore names vmalloc, module and other segments that are
        // no physical memory by p_paddr -1 (fs/proc/kcore.c): in a Linux
        // core, such a segment holds nothing physical memory needs.
        let none = if hdr.is_type_64() {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        };
        if overlap == Overlap::KeepFirst && pa == none {
            continue;
        }
        let size: u64 = ph.p_filesz(endian).into();
        let memsz: u64 = ph.p_memsz(endian).into();
        if memsz > size {
            if let Some(end) = pa.checked_add(memsz) {
                unheld.push((pa + size.min(memsz), end));
            }
        }
        let off: u64 = ph.p_offset(endian).into();
        if size == 0 {
            continue;
        }
        if pa.checked_add(size).is_none() || off.checked_add(size).is_none() {
            return Err(bad(format!(
                "PT_LOAD {i} (paddr {pa:#x}, offset {off:#x}, size {size:#x}) overflows"
            )));
        }
        segs.push(Segment { pa, size, off });
    }
    if segs.is_empty() {
        return Err(bad("no PT_LOAD segments: the dump holds no memory".into()));
    }
    segs.sort_by_key(|s| s.pa);
    if overlap == Overlap::KeepFirst {
        // Keep what the earlier segment holds; trim the later one to what
        // lies past it (stable sort: file order decides among equals).
        let mut kept: Vec<Segment> = Vec::with_capacity(segs.len());
        for mut s in segs {
            if let Some(last) = kept.last() {
                let end = last.pa + last.size;
                if s.pa + s.size <= end {
                    continue;
                }
                if s.pa < end {
                    let cut = end - s.pa;
                    (s.pa, s.off, s.size) = (end, s.off + cut, s.size - cut);
                }
            }
            kept.push(s);
        }
        segs = kept;
    }
    for w in segs.windows(2) {
        if w[0].pa + w[0].size > w[1].pa {
            return Err(bad(format!(
                "PT_LOAD segments overlap at physical address {:#x}",
                w[1].pa
            )));
        }
    }
    Ok(Segments {
        segs,
        dump_delta: delta,
        notes,
        loads,
        unheld: {
            unheld.sort_unstable();
            unheld
        },
    })
}

impl PhysMem for ElfCore {
    /// A page a segment describes without holding was filtered out.
    #[cold]
    fn missing(&self, pa: u64) -> Fault {
        match last_at_or_below(&self.unheld, pa, |r| r.0) {
            Some(i) if pa < self.unheld[i].1 => Fault::Filtered { pa },
            _ => Fault::NotInDump { pa },
        }
    }

    fn held_pages(&self) -> u64 {
        self.held_pages
    }

    #[inline]
    fn locate(&self, pa: u64) -> Option<Span> {
        let s = if pa.wrapping_sub(self.main.pa) < self.main.size {
            &self.main
        } else {
            &self.segs[last_at_or_below(&self.segs, pa, |s| s.pa)?]
        };
        let delta = pa.wrapping_sub(s.pa);
        (delta < s.size).then(|| Span {
            off: s.off + delta,
            len: s.size - delta,
        })
    }
}
