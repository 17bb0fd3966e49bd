//! The Linux personality: what a Linux dump says about the kernel that
//! wrote it, whatever holds its memory.
//!
//! A Linux dump is an ELF core (`/proc/vmcore`, `makedumpfile -E`, QEMU's
//! `dump-guest-memory`) or a kdump-compressed file (makedumpfile, QEMU),
//! plain or flattened. Either carries VMCOREINFO (`crate::vmcoreinfo`),
//! from which the architecture backends find the page-table root, the
//! KASLR offset and the memory layout.

use crate::elfcore::{ElfCore, ElfIdent, Overlap};
use crate::error::{Error, Result};
use crate::image::{uint, Image};
use crate::kdump::Kdump;
use crate::kernel::Kernel;
use crate::vmcoreinfo::{for_each_note, VmcoreInfo};
use object::elf;

/// What holds a Linux dump's memory (moved into the backend at once, so
/// the variants' sizes do not matter).
#[allow(clippy::large_enum_variant)]
pub enum Mem {
    /// An ELF vmcore: PT_LOAD segments by physical address.
    Elf(ElfCore),
    /// A kdump-compressed file.
    Kdump(Kdump),
}

/// A Linux dump, as identified before a backend takes it.
pub struct LinuxCore {
    /// Its memory.
    pub mem: Mem,
    /// `e_machine` of the dumped kernel (`EM_X86_64`, `EM_386`,
    /// `EM_AARCH64`), 0 when the dump does not say.
    pub machine: u16,
    /// Entries and headers are big-endian.
    pub big_endian: bool,
    /// VMCOREINFO, empty when the dump has none.
    pub info: VmcoreInfo,
    /// The first CPU's control registers from QEMU's notes (`cr[0..5]`),
    /// where QEMU wrote the dump.
    pub qemu_cr: Option<[u64; 5]>,
    /// "ELF vmcore" or the kdump description, for messages.
    pub format: String,
    /// Each `NT_PRSTATUS` note: one per CPU the crash kernel saved, in
    /// note order.
    pub prstatus: Vec<Prstatus>,
}

/// What a CPU's `NT_PRSTATUS` note holds for a debugger.
#[derive(Debug, Clone, Default)]
pub struct Prstatus {
    /// `pr_pid`: the task that ran on the CPU (-1 when the note is too
    /// short to say).
    pub pid: i32,
    /// The note's bytes from `pr_reg` on (at most `regs::PR_REG_MAX`).
    pub reg: Vec<u8>,
}

/// The most note bytes read (a `PRSTATUS` note is under 512 bytes: this
/// is room for thousands of CPUs).
const MAX_NOTES: u64 = 16 << 20;

impl LinuxCore {
    /// Identifies a Linux dump from the core's first bytes, parsing its
    /// container; `None` when the core is no Linux dump (a FreeBSD one).
    /// `kernel_is_linux` says the kernel file given is a Linux kernel or
    /// symbol map: then an ELF core without VMCOREINFO is taken as Linux.
    pub fn identify(core: &Image, head: &[u8], kernel_is_linux: bool) -> Result<Option<Self>> {
        if Kdump::is_kdump(head) {
            return Self::from_kdump(core).map(Some);
        }
        let Some(id) = ElfIdent::parse(head).filter(|i| i.e_type == elf::ET_CORE) else {
            return Ok(None);
        };
        // FreeBSD's full dumps say ELFOSABI_STANDALONE (sys/kern/kern_dump.c).
        if id.osabi == elf::ELFOSABI_STANDALONE {
            return Ok(None);
        }
        let elf = ElfCore::parse_with(core, Overlap::KeepFirst)?;
        let mut notes = Vec::new();
        for &(off, size) in &elf.notes {
            let size = size.min(MAX_NOTES.saturating_sub(notes.len() as u64));
            let bytes = core.read_vec(off, size).ok_or_else(|| {
                Error::BadCore(format!(
                    "ELF vmcore: PT_NOTE at offset {off:#x} ({size} bytes) lies past the end of \
                     the file"
                ))
            })?;
            notes.extend_from_slice(&bytes);
        }
        let info = vmcoreinfo_note(&notes, id.big_endian);
        if info.is_none() && !kernel_is_linux {
            return Ok(None);
        }
        Ok(Some(LinuxCore {
            mem: Mem::Elf(elf),
            machine: id.machine,
            big_endian: id.big_endian,
            qemu_cr: qemu_control_registers(&notes, id.big_endian),
            prstatus: prstatus(&notes, id.big_endian, id.machine),
            info: info.unwrap_or_default(),
            format: "ELF vmcore".into(),
        }))
    }

    fn from_kdump(core: &Image) -> Result<Self> {
        let mut dump = Kdump::parse(core)?;
        // The sub-header's VMCOREINFO, else the VMCOREINFO note among the
        // ELF notes it also carries.
        let info = match dump.vmcoreinfo() {
            Some(text) => VmcoreInfo::parse(text),
            None => vmcoreinfo_note(dump.notes().unwrap_or_default(), dump.big_endian())
                .unwrap_or_default(),
        };
        // The kernel's page size, where VMCOREINFO gives it (QEMU writes
        // aarch64 dumps in 64 KiB blocks of 4 KiB pages: FORMAT-NOTES).
        if let Some(ps) = info.page_size() {
            dump.set_page_size(ps)?;
        }
        let machine = match dump.machine() {
            "x86_64" => elf::EM_X86_64,
            "i386" | "i486" | "i586" | "i686" => elf::EM_386,
            "aarch64" | "arm64" => elf::EM_AARCH64,
            _ => machine_from_info(&info),
        };
        let big_endian = dump.big_endian();
        let format = dump.describe();
        let qemu_cr = qemu_control_registers(dump.notes().unwrap_or_default(), big_endian);
        let prstatus = prstatus(dump.notes().unwrap_or_default(), big_endian, machine);
        Ok(LinuxCore {
            mem: Mem::Kdump(dump),
            prstatus,
            machine,
            big_endian,
            qemu_cr,
            info,
            format,
        })
    }

    /// The dumped machine, for messages.
    pub fn describe(&self) -> String {
        let arch = match self.machine {
            elf::EM_X86_64 => "x86-64",
            elf::EM_386 => "i386",
            elf::EM_AARCH64 => "aarch64",
            0 => "an unnamed architecture",
            _ => "an unsupported architecture",
        };
        match self.info.osrelease() {
            Some(r) => format!("a Linux {r} {} of {arch}", self.format),
            None => format!("a Linux {} of {arch} without VMCOREINFO", self.format),
        }
    }
}

/// Each `NT_PRSTATUS` note ("CORE", type 1: include/uapi/linux/elf.h):
/// kexec's crash kernel and QEMU write one per CPU. `struct elf_prstatus`
/// starts with `elf_siginfo` (3 ints), `pr_cursig` (a short, padded),
/// `pr_sigpend` and `pr_sighold` (longs), then `pr_pid`: at 32 with 8-byte
/// longs, 24 with 4-byte ones (i386); `pr_reg` follows the times.
fn prstatus(notes: &[u8], big_endian: bool, machine: u16) -> Vec<Prstatus> {
    let at = if machine == elf::EM_386 { 24 } else { 32 };
    let reg = crate::regs::pr_reg_offset(machine);
    let mut out = Vec::new();
    for_each_note(notes, big_endian, |name, ty, desc| {
        if name == b"CORE" && ty == elf::NT_PRSTATUS {
            let pid = desc
                .get(at..at + 4)
                .map_or(-1, |b| uint(b, big_endian) as u32 as i32);
            let reg = desc.get(reg..).unwrap_or_default();
            out.push(Prstatus {
                pid,
                reg: reg[..reg.len().min(crate::regs::PR_REG_MAX)].to_vec(),
            });
        }
    });
    out
}

/// The first CPU's `cr[0..5]` from QEMU's per-CPU "QEMU" notes
/// (`QEMUCPUState`, `target/i386/arch_dump.c`: version and size (u32),
/// 18 general registers, 10 segments of 24 bytes, then `cr[5]` at offset
/// 392), if the notes hold one.
fn qemu_control_registers(notes: &[u8], big_endian: bool) -> Option<[u64; 5]> {
    const CR: usize = 392;
    let mut found = None;
    for_each_note(notes, big_endian, |name, _, desc| {
        if name == b"QEMU" && found.is_none() && desc.len() >= CR + 40 {
            let word = |i: usize| uint(&desc[CR + 8 * i..CR + 8 * i + 8], big_endian);
            found = Some([word(0), word(1), word(2), word(3), word(4)]);
        }
    });
    found
}

/// The VMCOREINFO note's text, if the notes hold one.
fn vmcoreinfo_note(notes: &[u8], big_endian: bool) -> Option<VmcoreInfo> {
    let mut found = None;
    for_each_note(notes, big_endian, |name, _, desc| {
        if name == b"VMCOREINFO" && found.is_none() {
            found = Some(VmcoreInfo::parse(desc));
        }
    });
    found
}

/// The architecture VMCOREINFO implies, for kdump files whose header does
/// not name it (QEMU leaves `utsname.machine` empty or "Unknown"): only
/// x86-64 exports `init_top_pgt` and `phys_base`; only arm64 `VA_BITS`
/// with `kimage_voffset`; only i386 `CONFIG_X86_PAE` or no KERNELOFFSET
/// with `swapper_pg_dir`.
fn machine_from_info(info: &VmcoreInfo) -> u16 {
    if info.symbol("init_top_pgt").is_some() || info.number("phys_base").is_some() {
        elf::EM_X86_64
    } else if info.number("kimage_voffset").is_some() || info.number("VA_BITS").is_some() {
        elf::EM_AARCH64
    } else if info.config("X86_PAE") || info.symbol("swapper_pg_dir").is_some() {
        elf::EM_386
    } else {
        0
    }
}

/// True when a kernel file's symbols are a Linux kernel's.
pub fn is_linux_kernel(k: &Kernel) -> bool {
    k.symbol("linux_banner").is_some() || k.symbol("init_task").is_some()
}

/// Linux symbols at run time: the kernel file's (vmlinux, System.map or
/// kallsyms) moved by the KASLR offset, then VMCOREINFO's, which are
/// run-time already.
pub struct Symbols {
    /// Added to the kernel file's values (0 for a kallsyms listing, whose
    /// values are run-time ones).
    pub slide: u64,
    /// The KASLR offset (`kvm_kerndisp`): KERNELOFFSET, else `_stext`'s
    /// move where a link-time kernel file tells it, else 0.
    pub kaslr: u64,
    /// Where the kernel image starts (`_text`, link-time): symbols below
    /// it (x86-64's zero-based per-CPU variables) do not move.
    pub image_start: u64,
    /// VMCOREINFO's `SYMBOL()` lines.
    pub info: VmcoreInfo,
    /// The kernel's pointer size (4 or 8) and byte order, for reading
    /// its structures.
    pub word: (usize, bool),
    /// Each CPU the dump has registers of (`NT_PRSTATUS`).
    pub prstatus: Vec<Prstatus>,
    /// The dumped machine (`EM_*`).
    pub machine: u16,
}

impl Symbols {
    /// The slide of `kernel`'s values in this dump. A System.map or
    /// vmlinux holds link-time values, moved by VMCOREINFO's KERNELOFFSET
    /// (the KASLR offset); a /proc/kallsyms listing holds run-time values
    /// already. `_stext`, which both the kernel file and VMCOREINFO give,
    /// tells which: its move must be 0 or KERNELOFFSET, else the file is
    /// another build's. Where VMCOREINFO has no KERNELOFFSET (i386),
    /// `_stext`'s move is the offset.
    pub fn new(info: &VmcoreInfo, kernel: &Kernel, kernel_path: &str) -> Result<Symbols> {
        let linked = kernel.symbol("_stext").map(|s| s.value);
        let running = info.symbol("_stext");
        let kaslr = match (info.kernel_offset(), linked, running) {
            (Some(off), _, _) => off,
            (None, Some(l), Some(r)) => r.wrapping_sub(l),
            (None, _, _) => 0,
        };
        let slide = match (info.kernel_offset(), linked, running) {
            (Some(off), Some(l), Some(r)) => {
                let moved = r.wrapping_sub(l);
                if moved != off && moved != 0 {
                    return Err(Error::Mismatch(format!(
                        "kernel {kernel_path} does not match the dump: its _stext is {l:#x}, \
                         but the dump's VMCOREINFO has _stext at {r:#x}, which is neither that \
                         nor that moved by KERNELOFFSET {off:#x} (give the vmlinux, System.map \
                         or kallsyms of the kernel that was running)"
                    )));
                }
                moved
            }
            (Some(off), _, _) => off,
            (None, Some(l), Some(r)) => r.wrapping_sub(l),
            (None, _, _) => 0,
        };
        let image_start = ["_text", "_stext"]
            .iter()
            .find_map(|n| kernel.symbol(n))
            .map_or(0, |s| s.value);
        Ok(Symbols {
            slide,
            kaslr,
            image_start,
            info: info.clone(),
            word: (8, false),
            prstatus: Vec::new(),
            machine: 0,
        })
    }
}

/// VMCOREINFO, with errors that say what the backend needed.
pub struct Needs<'a> {
    /// The text.
    pub info: &'a VmcoreInfo,
    /// "Linux ARCH dump", for messages.
    pub what: String,
}

impl<'a> Needs<'a> {
    /// Wraps `info` for the backend of `arch`.
    pub fn new(info: &'a VmcoreInfo, arch: &str) -> Self {
        Needs {
            info,
            what: format!("Linux {arch} dump"),
        }
    }

    /// `NUMBER(name)`, which the backend cannot do without.
    pub fn number(&self, name: &str) -> Result<i64> {
        self.info.number(name).ok_or_else(|| {
            Error::BadCore(if self.info.is_empty() {
                format!(
                    "{}: the dump has no VMCOREINFO (QEMU writes it only for a guest started \
                     with -device vmcoreinfo), and NUMBER({name}) is needed",
                    self.what
                )
            } else {
                format!("{}: VMCOREINFO has no NUMBER({name})", self.what)
            })
        })
    }
}

/// `__START_KERNEL_map` (x86-64, `arch/x86/include/asm/page_64_types.h`).
const X86_64_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;

/// The KASLR offset of an x86-64 kernel whose dump does not say it (no
/// VMCOREINFO): the running kernel's image is the first leaf of the kernel
/// map (`cleanup_highmap` clears what lies before `_text`), so its move
/// from `link_text` (the kernel file's `_text`, 2 MiB-aligned) is the
/// offset; accepted only if `linux_banner` (link-time `banner`) then reads
/// "Linux version".
pub fn x86_64_image_slide(kvm: &crate::Kvm, link_text: u64, banner: u64) -> Option<u64> {
    let mut first = None;
    let _ = kvm.walk_pages(|p| {
        if p.kmap_vaddr >= X86_64_KERNEL_MAP {
            first = Some(p.kmap_vaddr);
            return false;
        }
        true
    });
    let slide = first?.wrapping_sub(link_text & !((2 << 20) - 1));
    let mut text = [0u8; 13];
    kvm.read_exact(banner.wrapping_add(slide), &mut text).ok()?;
    (&text == b"Linux version").then_some(slide)
}
