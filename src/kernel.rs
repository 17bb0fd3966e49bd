//! The kernel image: its ELF identity and symbol table.
//!
//! Symbols are matched as FreeBSD's `__elf_fdnlist` (`lib/libc/gen/nlist.c`)
//! matches them: a name matches the ELF symbol of the same name, or, when it
//! starts with `_`, the symbol without that underscore (a.out habit). The
//! `n_type` of a found symbol is derived as `elf_sym_to_nlist` does.

use crate::elfcore::ElfIdent;
use crate::error::{Error, Result};
use crate::image::Image;
use hashbrown::{DefaultHashBuilder, HashTable};
use object::elf;
use object::read::elf::{FileHeader, SectionHeader, Sym};
use object::Endianness;
use std::hash::BuildHasher;

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

/// A parsed kernel image: its identity, a symbol index and where its
/// initialised data lies in the file.
///
/// The index copies the string table once and hashes each name once, into
/// a table of entry numbers (no allocation per name): a kernel of 50,000
/// symbols indexes in about a millisecond.
pub struct Kernel {
    /// Class, byte order, type and machine.
    pub ident: ElfIdent,
    /// The symbol table's string table.
    names: Vec<u8>,
    /// One entry per distinct named symbol.
    entries: Vec<Entry>,
    /// Entry numbers by the hash of their name.
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    /// Sections whose contents the file holds: (address, size, offset).
    initialised: Vec<(u64, u64, u64)>,
}

/// An indexed symbol: its name (a range of `Kernel::names`) and value.
struct Entry {
    name: (u32, u32),
    symbol: Symbol,
    global: bool,
}

impl Kernel {
    /// Parses the kernel ELF image and indexes its symbol table (`.symtab`,
    /// or `.dynsym` if the image is stripped). Memory follows the symbols
    /// the table really holds: entries without a name are skipped, and an
    /// allocation that fails is an error.
    pub fn parse(image: &Image) -> Result<Kernel> {
        let mut head = [0u8; 64];
        let n = image.read_prefix(&mut head)?;
        let ident = ElfIdent::parse(&head[..n]).ok_or_else(|| {
            Error::BadKernel("is not an ELF file (expected a FreeBSD kernel image)".into())
        })?;
        let cache = object::ReadCache::new(image.reader());
        let parsed = if ident.is_64 {
            load::<elf::FileHeader64<Endianness>>(ident, image, &cache)
        } else {
            load::<elf::FileHeader32<Endianness>>(ident, image, &cache)
        };
        parsed.map_err(|e| match e {
            LoadError::Elf(e) => Error::BadKernel(format!("{e}")),
            LoadError::Bad(what) => Error::BadKernel(what.into()),
            LoadError::Memory => Error::OutOfMemory("the kernel's symbol index".into()),
        })
    }

    /// Looks a symbol up by name.
    pub fn symbol(&self, name: &str) -> Option<Symbol> {
        self.find(name.as_bytes())
            .or_else(|| self.find(name.strip_prefix('_')?.as_bytes()))
            .map(|e| e.symbol)
    }

    fn name(&self, e: &Entry) -> &[u8] {
        let (off, len) = (e.name.0 as usize, e.name.1 as usize);
        &self.names[off..off + len]
    }

    fn find(&self, name: &[u8]) -> Option<&Entry> {
        let hash = self.hasher.hash_one(name);
        let &i = self
            .index
            .find(hash, |&i| self.name(&self.entries[i as usize]) == name)?;
        Some(&self.entries[i as usize])
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
    Bad(&'static str),
    Memory,
}

impl From<object::read::Error> for LoadError {
    fn from(e: object::read::Error) -> Self {
        LoadError::Elf(e)
    }
}

fn bad(what: &'static str) -> LoadError {
    LoadError::Bad(what)
}

/// Reads `size` bytes at `off` into a buffer aligned for ELF symbols.
fn read_aligned(image: &Image, off: u64, size: u64) -> Result<Vec<u64>, LoadError> {
    let n = usize::try_from(size).map_err(|_| LoadError::Memory)?;
    let mut words: Vec<u64> = Vec::new();
    words
        .try_reserve_exact(n.div_ceil(8))
        .map_err(|_| LoadError::Memory)?;
    words.resize(n.div_ceil(8), 0);
    let bytes = object::pod::bytes_of_slice_mut(&mut words[..]);
    if off.checked_add(size).is_none_or(|e| e > image.len())
        || !image.read_exact_at(off, &mut bytes[..n])
    {
        return Err(bad("the symbol table lies past the end of the kernel file"));
    }
    Ok(words)
}

fn load<H: FileHeader<Endian = Endianness>>(
    ident: ElfIdent,
    image: &Image,
    cache: &object::ReadCache<crate::image::Reader<'_>>,
) -> Result<Kernel, LoadError> {
    use ntype::*;
    let hdr = H::parse(cache)?;
    let endian = hdr.endian()?;
    let sections = hdr.sections(endian, cache)?;
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
    // The symbol table and its strings, each read once.
    let table = [elf::SHT_SYMTAB, elf::SHT_DYNSYM]
        .into_iter()
        .find_map(|t| sections.iter().find(|sh| sh.sh_type(endian) == t));
    let (syms, names) = match table {
        None => (Vec::new(), Vec::new()),
        Some(sh) => {
            let strtab = sections.section(object::SectionIndex(sh.sh_link(endian) as usize))?;
            let syms = read_aligned(
                image,
                sh.sh_offset(endian).into(),
                sh.sh_size(endian).into(),
            )?;
            let (off, size): (u64, u64) = (
                strtab.sh_offset(endian).into(),
                strtab.sh_size(endian).into(),
            );
            let names = image
                .read_vec(off, size)
                .ok_or(bad("the symbol names lie past the end of the kernel file"))?;
            (syms, names)
        }
    };
    let sym_bytes = object::pod::bytes_of_slice(&syms[..]);
    let count = table.map_or(0, |sh| {
        let size: u64 = sh.sh_size(endian).into();
        size as usize / size_of::<H::Sym>()
    });
    let (syms, _) = object::pod::slice_from_bytes::<H::Sym>(sym_bytes, count)
        .map_err(|_| bad("invalid kernel symbol table"))?;
    let strings = object::StringTable::new(&names[..], 0, names.len() as u64);

    let hasher = DefaultHashBuilder::default();
    let mut entries: Vec<Entry> = Vec::new();
    let mut index: HashTable<u32> = HashTable::new();
    // Distinct names need distinct bytes of the string table.
    let most = count.min(names.len() / 2);
    entries.try_reserve(most).map_err(|_| LoadError::Memory)?;
    index
        .try_reserve(most, |&i| hash_of(&hasher, &names, &entries[i as usize]))
        .map_err(|_| LoadError::Memory)?;
    for sym in syms {
        let st_name = sym.st_name(endian);
        let Ok(name) = strings.get(st_name) else {
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
        let entry = Entry {
            // The name lies in `names` at st_name (a u32), so both fit.
            name: (st_name, name.len() as u32),
            symbol: Symbol {
                value: sym.st_value(endian).into(),
                n_type,
            },
            global,
        };
        let hash = hasher.hash_one(name);
        let found = index.find(hash, |&i| {
            let (off, len) = entries[i as usize].name;
            &names[off as usize..(off + len) as usize] == name
        });
        match found {
            // Prefer a global definition over a local of the same name, and
            // the first of equals.
            Some(&i) => {
                if global && !entries[i as usize].global {
                    entries[i as usize] = entry;
                }
            }
            None => {
                entries.try_reserve(1).map_err(|_| LoadError::Memory)?;
                index
                    .try_reserve(1, |&i| hash_of(&hasher, &names, &entries[i as usize]))
                    .map_err(|_| LoadError::Memory)?;
                let i = u32::try_from(entries.len()).map_err(|_| LoadError::Memory)?;
                entries.push(entry);
                index.insert_unique(hash, i, |&i| hash_of(&hasher, &names, &entries[i as usize]));
            }
        }
    }
    Ok(Kernel {
        ident,
        names,
        entries,
        index,
        hasher,
        initialised,
    })
}

/// The hash of an entry's name.
fn hash_of(hasher: &DefaultHashBuilder, names: &[u8], e: &Entry) -> u64 {
    let (off, len) = (e.name.0 as usize, e.name.1 as usize);
    hasher.hash_one(&names[off..off + len])
}
