//! What the two files given to open are, checked before any backend reads
//! them: a kernel that cannot be a FreeBSD kernel, a core that is no crash
//! dump, and the two swapped are refused with a message that says so; once
//! the dump is open, the kernel's `version` string is compared with the
//! dump's copy of it.

use crate::elfcore::ElfIdent;
use crate::error::{Error, Result};
use crate::image::Image;
use crate::kernel::Kernel;
use object::elf;

/// The first bytes of a file (up to 64), enough to identify it.
pub struct Head {
    bytes: [u8; 64],
    len: usize,
}

impl Head {
    /// Reads the first bytes of `image`.
    pub fn read(image: &Image) -> Result<Head> {
        let mut bytes = [0u8; 64];
        let len = image.read_prefix(&mut bytes)?;
        Ok(Head { bytes, len })
    }

    /// The bytes read.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    fn elf(&self) -> Option<ElfIdent> {
        ElfIdent::parse(self.bytes())
    }

    /// True for a crash dump: an ELF core, a minidump or a kdump file
    /// (plain: "KDUMP   ", flattened: "makedumpfile").
    fn is_dump(&self) -> bool {
        let b = self.bytes();
        b.starts_with(b"minidump")
            || b.starts_with(b"KDUMP   ")
            || b.starts_with(b"makedumpfile")
            || self.elf().is_some_and(|e| e.e_type == elf::ET_CORE)
    }

    /// True for an ELF executable, as kernels are.
    fn is_executable(&self) -> bool {
        self.elf().is_some_and(|e| e.e_type == elf::ET_EXEC)
    }

    /// The identity of an ELF executable or shared object (a kernel image
    /// of some kind), if the file is one.
    pub fn executable(&self) -> Option<ElfIdent> {
        self.elf()
            .filter(|e| matches!(e.e_type, elf::ET_EXEC | elf::ET_DYN))
    }
}

/// Refuses a kernel and core given in the wrong order, and a kernel file
/// that is a dump.
pub fn check_order(kernel: &Image, khead: &Head, core: &Image, chead: &Head) -> Result<()> {
    if khead.is_dump() && chead.is_executable() {
        return Err(Error::BadKernel(format!(
            "kernel {} is a crash dump and core {} an executable: the two look swapped (give \
             the kernel image first, then the dump)",
            kernel.path().display(),
            core.path().display()
        )));
    }
    if khead.is_dump() {
        return Err(Error::BadKernel(format!(
            "kernel {}: is a crash dump, not a kernel image (give the kernel image first, then \
             the dump)",
            kernel.path().display()
        )));
    }
    Ok(())
}

/// True when a file starts as text does (a `System.map` or kallsyms
/// listing): printable ASCII and line breaks only.
pub fn looks_like_text(head: &Head) -> bool {
    let b = head.bytes();
    !b.is_empty()
        && b.iter()
            .all(|&c| c == b'\n' || c == b'\t' || (b' '..=b'~').contains(&c))
}

/// Refuses a compressed Linux kernel (a bzImage `vmlinuz`: the setup
/// header's "HdrS" at offset 0x202, `Documentation/arch/x86/boot.rst`;
/// an arm64 `Image`'s "ARM\x64" at 0x38) with a message saying what to
/// give instead.
pub fn refuse_compressed_kernel(kernel: &Image, head: &Head) -> Result<()> {
    let mut magic = [0u8; 4];
    let bzimage = kernel.read_exact_at(0x202, &mut magic) && &magic == b"HdrS";
    let arm64 = head.bytes().get(0x38..0x3c) == Some(b"ARM\x64");
    if bzimage || arm64 {
        return Err(Error::BadKernel(format!(
            "kernel {}: is a bootable kernel image ({}), which has no symbol table: give the \
             kernel's vmlinux, its System.map, a /proc/kallsyms listing, or no kernel file",
            kernel.path().display(),
            if bzimage {
                "an x86 bzImage"
            } else {
                "an arm64 Image"
            }
        )));
    }
    Ok(())
}

/// Refuses a kernel and core given in the wrong order, a kernel file that
/// cannot be a FreeBSD kernel image and a core file that is no dump;
/// returns the kernel's ELF identity.
pub fn check_files(kernel: &Image, khead: &Head, core: &Image, chead: &Head) -> Result<ElfIdent> {
    let kname = |m: String| Error::BadKernel(format!("kernel {}: {m}", kernel.path().display()));
    check_order(kernel, khead, core, chead)?;
    let Some(k) = khead.elf() else {
        return Err(kname(
            "is not an ELF file (expected a FreeBSD kernel image)".into(),
        ));
    };
    let powerpc = matches!(k.machine, elf::EM_PPC | elf::EM_PPC64);
    let want = if powerpc { elf::ET_DYN } else { elf::ET_EXEC };
    if k.e_type != want {
        return Err(kname(format!(
            "is an {} {}, not a FreeBSD kernel image (an ELF {})",
            k.describe(),
            k.kind(),
            if powerpc {
                "ET_DYN"
            } else {
                "executable, ET_EXEC"
            }
        )));
    }
    if !matches!(k.osabi, elf::ELFOSABI_NONE | elf::ELFOSABI_FREEBSD) {
        return Err(kname(format!(
            "its ELF OS ABI is {}{}, not FreeBSD's (9) or none (0): not a FreeBSD kernel",
            k.osabi,
            if k.osabi == elf::ELFOSABI_LINUX {
                " (Linux)"
            } else {
                ""
            }
        )));
    }
    if let Some(c) = chead.elf().filter(|c| c.e_type != elf::ET_CORE) {
        return Err(Error::BadCore(format!(
            "core {}: is an {} {}, not a crash dump (an ELF core or a minidump){}",
            core.path().display(),
            c.describe(),
            c.kind(),
            if c.e_type == elf::ET_EXEC {
                "; is it the kernel? Give the kernel image first, then the dump"
            } else {
                ""
            }
        )));
    }
    Ok(k)
}

/// Refuses a kernel without the symbols every FreeBSD kernel defines
/// (`version`, from the `vers.c` that `sys/conf/newvers.sh` generates).
pub fn check_freebsd(
    kernel: &Image,
    k: &Kernel,
    lookup: &dyn Fn(&str) -> Option<u64>,
    resolver: bool,
) -> Result<u64> {
    lookup("version").ok_or_else(|| {
        let what = if resolver {
            " (the resolver does not know it)"
        } else if k.symbol("linux_banner").is_some() {
            ": it looks like a Linux kernel (it has linux_banner)"
        } else {
            ": not a FreeBSD kernel, or one stripped of its symbol table"
        };
        Error::BadKernel(format!(
            "kernel {}: has no symbol `version`{what}",
            kernel.path().display()
        ))
    })
}

/// The longest `version` string compared.
const VERSION_MAX: u64 = 1024;

/// Compares the kernel file's `version` string at `va` with the dump's
/// copy, read with `read`. Passes when they match, or when either cannot
/// be had for a reason that says nothing of the pair (the kernel file does
/// not hold the string, or the core file ends early).
pub fn check_version(
    kernel: &Image,
    core: &Image,
    k: &Kernel,
    va: u64,
    read: impl Fn(&mut [u8]) -> Result<usize>,
) -> Result<()> {
    let Some(mut want) = k.initialised(kernel, va, VERSION_MAX) else {
        return Ok(());
    };
    if let Some(nul) = want.iter().position(|&b| b == 0) {
        want.truncate(nul + 1);
    }
    let mut got = vec![0u8; want.len()];
    let mismatch = |dump: &str| {
        Error::Mismatch(format!(
            "kernel {} does not match core {}: the kernel's version is {} but {dump} (give the \
             kernel that was running when the dump was taken)",
            kernel.path().display(),
            core.path().display(),
            quote(&want)
        ))
    };
    match read(&mut got) {
        Ok(n) if n == got.len() && got != want => {
            Err(mismatch(&format!("the dump holds {}", quote(&got))))
        }
        Ok(_) => Ok(()),
        Err(Error::Translate { fault, .. }) => Err(mismatch(&format!(
            "the dump cannot be read at its address {va:#x} ({fault})"
        ))),
        Err(e) => Err(e),
    }
}

/// The first line of a C string, quoted, for messages.
fn quote(s: &[u8]) -> String {
    let end = s
        .iter()
        .position(|&b| b == 0 || b == b'\n')
        .unwrap_or(s.len());
    format!("{:?}", String::from_utf8_lossy(&s[..end.min(160)]))
}
