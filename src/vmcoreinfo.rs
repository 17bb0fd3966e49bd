//! VMCOREINFO: the `KEY=VALUE` lines a Linux kernel leaves for dump readers
//! (`kernel/vmcore_info.c`, formerly `kernel/crash_core.c`, and each
//! architecture's `arch_crash_save_vmcoreinfo`). The ELF vmcore carries
//! it as a note named `VMCOREINFO`; a kdump-compressed file, in its
//! sub-header.
//!
//! The kernel writes (format strings from those files):
//! - `OSRELEASE=%s`, `BUILD-ID=%s`, `PAGESIZE=%ld`, `CRASHTIME=%lld`;
//! - `SYMBOL(%s)=%lx`: run-time (relocated) addresses, in hexadecimal
//!   without `0x`;
//! - `SIZE(%s)=%lu`, `OFFSET(%s.%s)=%lu`, `LENGTH(%s)=%lu`: decimal;
//! - `NUMBER(%s)=%ld`: signed decimal (x86-64's `phys_base` is negative
//!   when the kernel runs below where it was linked), except the ones
//!   arm64 and others print as `0x%llx` (`kimage_voffset`, `PHYS_OFFSET`,
//!   `KERNELPACMASK`, `TCR_EL1_T1SZ`);
//! - `KERNELOFFSET=%lx`: the KASLR offset, hexadecimal (x86-64, arm64,
//!   riscv; not i386);
//! - `CONFIG_%s=y`.

use std::collections::HashMap;

/// The parsed lines of a VMCOREINFO text.
#[derive(Debug, Default, Clone)]
pub struct VmcoreInfo {
    lines: HashMap<String, String>,
}

/// The longest VMCOREINFO text read (the kernel's buffer is one page,
/// `VMCOREINFO_BYTES`; 64 KiB leaves room for 64 KiB-page kernels).
pub const MAX_BYTES: usize = 64 << 10;

impl VmcoreInfo {
    /// Parses `KEY=VALUE` lines; other lines (and NUL padding) are ignored.
    pub fn parse(text: &[u8]) -> VmcoreInfo {
        let text = &text[..text.len().min(MAX_BYTES)];
        let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
        let mut lines = HashMap::new();
        for line in String::from_utf8_lossy(&text[..end]).lines() {
            if let Some((k, v)) = line.split_once('=') {
                lines.insert(k.trim().to_owned(), v.trim().to_owned());
            }
        }
        VmcoreInfo { lines }
    }

    /// True when no line was found.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.lines.get(key).map(String::as_str)
    }

    /// `OSRELEASE`.
    pub fn osrelease(&self) -> Option<&str> {
        self.get("OSRELEASE")
    }

    /// `PAGESIZE`.
    pub fn page_size(&self) -> Option<u64> {
        self.get("PAGESIZE").and_then(number)
    }

    /// `SYMBOL(name)`: a run-time address.
    pub fn symbol(&self, name: &str) -> Option<u64> {
        hex(self.get(&format!("SYMBOL({name})"))?)
    }

    /// `NUMBER(name)`, signed (decimal or `0x` hexadecimal).
    pub fn number(&self, name: &str) -> Option<i64> {
        let v = self.get(&format!("NUMBER({name})"))?;
        match v.strip_prefix('-') {
            Some(m) => number(m).and_then(|n| 0i64.checked_sub_unsigned(n)),
            None => number(v).map(|n| n as i64),
        }
    }

    /// `KERNELOFFSET`: the KASLR offset.
    pub fn kernel_offset(&self) -> Option<u64> {
        hex(self.get("KERNELOFFSET")?)
    }

    /// `CONFIG_name=y`.
    pub fn config(&self, name: &str) -> bool {
        self.get(&format!("CONFIG_{name}")) == Some("y")
    }
}

/// A hexadecimal value, with or without `0x`.
fn hex(v: &str) -> Option<u64> {
    let v = v.strip_prefix("0x").unwrap_or(v);
    u64::from_str_radix(v, 16).ok()
}

/// A decimal value, or hexadecimal with `0x`.
pub fn number(v: &str) -> Option<u64> {
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

/// Walks ELF notes (`Elf32_Nhdr`/`Elf64_Nhdr` are both three 32-bit words;
/// name and descriptor are padded to 4 bytes, as Linux writes them for both
/// classes: `include/linux/elfnote.h`, `fs/proc/vmcore.c`), calling
/// `f(name, type, desc)` for each; stops at the first malformed one.
pub fn for_each_note(notes: &[u8], big_endian: bool, mut f: impl FnMut(&[u8], u32, &[u8])) {
    let word = |b: &[u8]| crate::image::uint(&b[..4], big_endian) as u32;
    let pad = |n: usize| n.checked_add(3).map(|n| n & !3);
    let mut at = 0usize;
    while notes.len().saturating_sub(at) >= 12 {
        let namesz = word(&notes[at..]) as usize;
        let descsz = word(&notes[at + 4..]) as usize;
        let ntype = word(&notes[at + 8..]);
        let name_at = at + 12;
        let Some(desc_at) = pad(namesz).and_then(|n| name_at.checked_add(n)) else {
            return;
        };
        let Some(next) = pad(descsz).and_then(|n| desc_at.checked_add(n)) else {
            return;
        };
        if desc_at.checked_add(descsz).is_none_or(|e| e > notes.len()) {
            return;
        }
        let name = &notes[name_at..name_at + namesz];
        let name = name.strip_suffix(&[0]).unwrap_or(name);
        f(name, ntype, &notes[desc_at..desc_at + descsz]);
        at = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_as_the_kernel_prints_them() {
        let info = VmcoreInfo::parse(
            b"OSRELEASE=6.1.0-18-amd64\nPAGESIZE=4096\nSYMBOL(init_top_pgt)=ffffffff9ae0a000\n\
              NUMBER(phys_base)=-405798912\nNUMBER(KERNELPACMASK)=0xff80000000000000\n\
              KERNELOFFSET=19c00000\nOFFSET(list_head.next)=0\nCONFIG_X86_PAE=y\n\0\0junk",
        );
        assert_eq!(info.osrelease(), Some("6.1.0-18-amd64"));
        assert_eq!(info.page_size(), Some(4096));
        assert_eq!(info.symbol("init_top_pgt"), Some(0xffff_ffff_9ae0_a000));
        assert_eq!(info.number("phys_base"), Some(-405_798_912));
        assert_eq!(
            info.number("KERNELPACMASK"),
            Some(0xff80_0000_0000_0000u64 as i64)
        );
        assert_eq!(info.kernel_offset(), Some(0x19c0_0000));
        assert!(info.config("X86_PAE"));
        assert_eq!(info.symbol("missing"), None);
    }
}
