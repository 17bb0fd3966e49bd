//! The kernel image: its ELF identity and symbol table.
//!
//! Symbols are matched as FreeBSD's `__elf_fdnlist` (`lib/libc/gen/nlist.c`)
//! matches them: a name matches the ELF symbol of the same name, or, when it
//! starts with `_`, the symbol without that underscore (a.out habit). The
//! `n_type` of a found symbol is derived as `elf_sym_to_nlist` does.

use crate::elfcore::ElfIdent;
use crate::error::{Error, Result};
use crate::image::Image;
use object::elf;
use object::read::elf::{FileHeader, SectionHeader, Sym};
use object::{Endianness, ReadRef};
use std::collections::HashMap;

/// a.out symbol types, from FreeBSD's `sys/nlist_aout.h`.
pub mod ntype {
    /// Undefined.
    pub const N_UNDF: u8 = 0x00;
    /// Absolute.
    pub const N_ABS: u8 = 0x02;
    /// Text (code).
    pub const N_TEXT: u8 = 0x04;
    /// Initialised data.
    pub const N_DATA: u8 = 0x06;
    /// Uninitialised data.
    pub const N_BSS: u8 = 0x08;
    /// File name.
    pub const N_FN: u8 = 0x1f;
    /// External (global) bit.
    pub const N_EXT: u8 = 0x01;
}

/// A resolved kernel symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Symbol {
    /// Its value (address), zero-extended from 32-bit kernels.
    pub value: u64,
    /// Its a.out type (`N_DATA | N_EXT`, ...).
    pub n_type: u8,
}

/// A parsed kernel image.
pub struct Kernel {
    /// Class, byte order and machine.
    pub ident: ElfIdent,
    symbols: HashMap<Box<str>, (Symbol, bool)>,
    /// Sections whose contents the file holds: (address, size, offset).
    initialised: Vec<(u64, u64, u64)>,
}

/// Symbols, and sections whose contents the file holds.
type Loaded = (HashMap<Box<str>, (Symbol, bool)>, Vec<(u64, u64, u64)>);

impl Kernel {
    /// Parses the kernel ELF image and indexes its symbol table (`.symtab`,
    /// or `.dynsym` if the image is stripped). Memory follows the symbols
    /// the table really holds: entries without a name are skipped, and an
    /// allocation that fails is an error.
    pub fn parse(image: &Image) -> Result<Kernel> {
        let mut head = [0u8; 64];
        let n = image.read_at(0, &mut head)?;
        let ident = ElfIdent::parse(&head[..n]).ok_or_else(|| {
            Error::BadKernel("is not an ELF file (expected a FreeBSD kernel image)".into())
        })?;
        let loaded = match image.mapped() {
            Some(data) => load_any(ident, data),
            None => load_any(ident, &object::ReadCache::new(image.file())),
        };
        let (symbols, initialised) = loaded.map_err(|e| match e {
            LoadError::Elf(e) => Error::BadKernel(format!("{e}")),
            LoadError::Memory => Error::OutOfMemory("the kernel's symbol index".into()),
        })?;
        Ok(Kernel {
            ident,
            symbols,
            initialised,
        })
    }

    /// Looks a symbol up by name.
    pub fn symbol(&self, name: &str) -> Option<Symbol> {
        self.symbols
            .get(name)
            .or_else(|| self.symbols.get(name.strip_prefix('_')?))
            .map(|&(s, _)| s)
    }

    /// Up to `len` bytes of the kernel's initialised data at address
    /// `addr`, as the kernel file holds them (fewer at the end of their
    /// section); `None` when no section of the file holds `addr`.
    pub fn initialised(&self, image: &Image, addr: u64, len: u64) -> Option<Vec<u8>> {
        let &(start, size, off) = self
            .initialised
            .iter()
            .find(|&&(start, size, _)| addr.wrapping_sub(start) < size)?;
        let delta = addr - start;
        image.read_vec(off.checked_add(delta)?, len.min(size - delta))
    }
}

/// Why a kernel's symbols could not be loaded.
enum LoadError {
    Elf(object::read::Error),
    Memory,
}

impl From<object::read::Error> for LoadError {
    fn from(e: object::read::Error) -> Self {
        LoadError::Elf(e)
    }
}

fn load_any<'d, R: ReadRef<'d>>(ident: ElfIdent, data: R) -> Result<Loaded, LoadError> {
    if ident.is_64 {
        load::<elf::FileHeader64<Endianness>, R>(data)
    } else {
        load::<elf::FileHeader32<Endianness>, R>(data)
    }
}

fn load<'d, H: FileHeader<Endian = Endianness>, R: ReadRef<'d>>(
    data: R,
) -> Result<Loaded, LoadError> {
    use ntype::*;
    let hdr = H::parse(data)?;
    let endian = hdr.endian()?;
    let sections = hdr.sections(endian, data)?;
    let mut initialised = Vec::new();
    for sh in sections.iter() {
        let flags: u64 = sh.sh_flags(endian).into();
        if sh.sh_type(endian) == elf::SHT_PROGBITS && flags & u64::from(elf::SHF_ALLOC) != 0 {
            initialised.try_reserve(1).map_err(|_| LoadError::Memory)?;
            initialised.push((
                sh.sh_addr(endian).into(),
                sh.sh_size(endian).into(),
                sh.sh_offset(endian).into(),
            ));
        }
    }
    let mut table = sections.symbols(endian, data, elf::SHT_SYMTAB)?;
    if table.is_empty() {
        table = sections.symbols(endian, data, elf::SHT_DYNSYM)?;
    }
    let mut map = HashMap::new();
    for sym in table.iter() {
        let Ok(name) = table.symbol_name(endian, sym) else {
            continue;
        };
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        let shndx = sym.st_shndx(endian);
        let mut n_type = match shndx {
            elf::SHN_UNDEF | elf::SHN_COMMON => N_UNDF,
            elf::SHN_ABS if sym.st_type() == elf::STT_FILE => N_FN,
            elf::SHN_ABS => N_ABS,
            i => match sections.section(object::SectionIndex(i.into())) {
                Ok(sh) if sh.sh_type(endian) == elf::SHT_PROGBITS => {
                    if sh.sh_flags(endian).into() & u64::from(elf::SHF_WRITE) != 0 {
                        N_DATA
                    } else {
                        N_TEXT
                    }
                }
                Ok(sh) if sh.sh_type(endian) == elf::SHT_NOBITS => N_BSS,
                _ => N_UNDF,
            },
        };
        let global = matches!(sym.st_bind(), elf::STB_GLOBAL | elf::STB_WEAK);
        if global {
            n_type |= N_EXT;
        }
        let value = Symbol {
            value: sym.st_value(endian).into(),
            n_type,
        };
        // Prefer a global definition over a local of the same name, and the
        // first of equals.
        match map.get(name) {
            Some(&(_, true)) => {}
            Some(&(_, false)) if !global => {}
            _ => {
                let mut key = String::new();
                key.try_reserve_exact(name.len())
                    .map_err(|_| LoadError::Memory)?;
                key.push_str(name);
                map.try_reserve(1).map_err(|_| LoadError::Memory)?;
                map.insert(key.into_boxed_str(), (value, global));
            }
        }
    }
    Ok((map, initialised))
}
