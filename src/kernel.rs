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
use object::{Endianness, ReadRef};
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
/// The index copies each distinct name once and hashes it once, into a
/// table of entry numbers (no allocation per name): a kernel of 50,000
/// symbols indexes in about a millisecond, and memory follows the named
/// symbols, not the size of the tables.
pub struct Kernel {
    /// Class, byte order, type and machine; `None` for a symbol map.
    pub ident: Option<ElfIdent>,
    index: Index,
    /// Sections whose contents the file holds: (address, size, offset).
    initialised: Vec<(u64, u64, u64)>,
}

/// Symbols by name.
struct Index {
    /// The names, one after another.
    names: Vec<u8>,
    /// One entry per distinct name.
    entries: Vec<Entry>,
    /// Entry numbers by the hash of their name.
    table: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

/// An indexed symbol: its name (a range of `Index::names`) and value.
struct Entry {
    name: (usize, usize),
    symbol: Symbol,
    global: bool,
}

impl Kernel {
    /// Parses the kernel ELF image of identity `ident` and indexes its
    /// symbol table (`.symtab`, or `.dynsym` if the image is stripped).
    /// Entries without a name are skipped, and an allocation that fails is
    /// an error.
    pub fn parse(image: &Image, ident: ElfIdent) -> Result<Kernel> {
        let parsed = match image.mapped() {
            Some(data) => load_any(ident, data),
            // A kernel that cannot be mapped: read as object asks (slower).
            None => load_any(ident, &object::ReadCache::new(image.reader())),
        };
        parsed.map_err(|e| match e {
            LoadError::Elf(e) => Error::BadKernel(format!("{e}")),
            LoadError::Memory => Error::OutOfMemory("the kernel's symbol index".into()),
        })
    }

    /// No kernel file: no symbols.
    pub fn empty() -> Kernel {
        Kernel {
            ident: None,
            index: Index::new(),
            initialised: Vec::new(),
        }
    }

    /// Indexes a Linux symbol map: `System.map` or a `/proc/kallsyms`
    /// listing, lines of `ADDRESS TYPE NAME` (kallsyms adds ` [MODULE]`
    /// after module symbols, which are skipped: their addresses belong to
    /// one boot). The type letters are `nm`'s (`scripts/mksysmap`); lower
    /// case is local. Lines that do not parse are an error naming the
    /// first, as the file is then no symbol map.
    pub fn from_map(image: &Image) -> Result<Kernel> {
        let mut index = Index::new();
        let mut line_no = 0u64;
        let mut partial = Vec::new();
        let mut bad: Option<(u64, String)> = None;
        let mut on_line = |line: &[u8], index: &mut Index| -> Result<(), LoadError> {
            line_no += 1;
            let text = String::from_utf8_lossy(line);
            let mut f = text.split_ascii_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (f.next(), f.next(), f.next()) else {
                if !text.trim().is_empty() && bad.is_none() {
                    bad = Some((line_no, text.into_owned()));
                }
                return Ok(());
            };
            let (Ok(value), 1) = (u64::from_str_radix(addr, 16), kind.len()) else {
                if bad.is_none() {
                    bad = Some((line_no, text.into_owned()));
                }
                return Ok(());
            };
            if f.next().is_some_and(|m| m.starts_with('[')) {
                return Ok(());
            }
            let (n_type, global) = nm_type(kind.as_bytes()[0]);
            index.insert(name.as_bytes(), Symbol { value, n_type }, global)
        };
        let mut failed = None;
        let mut long_line = false;
        let read = image.for_each_piece(0, image.len(), 65536, |piece: &[u8]| {
            if failed.is_some() {
                return;
            }
            let mut rest = piece;
            while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
                let r = if partial.is_empty() {
                    on_line(&rest[..nl], &mut index)
                } else {
                    partial.extend_from_slice(&rest[..nl]);
                    let line = std::mem::take(&mut partial);
                    on_line(&line, &mut index)
                };
                if let Err(e) = r {
                    failed = Some(e);
                    return;
                }
                rest = &rest[nl + 1..];
            }
            // A line longer than any symbol map's is no symbol map.
            if partial.len() + rest.len() > 4096 {
                long_line = true;
                failed = Some(LoadError::Memory);
                return;
            }
            partial.extend_from_slice(rest);
        });
        if failed.is_none() && !partial.is_empty() {
            let line = std::mem::take(&mut partial);
            failed = on_line(&line, &mut index).err();
        }
        if !read {
            return Err(Error::BadKernel("the symbol map cannot be read".into()));
        }
        if long_line {
            return Err(Error::BadKernel(
                "has a line longer than 4096 bytes: not a System.map or kallsyms listing".into(),
            ));
        }
        match failed {
            Some(LoadError::Memory) => {
                return Err(Error::OutOfMemory("the kernel's symbol index".into()))
            }
            Some(LoadError::Elf(e)) => return Err(Error::BadKernel(format!("{e}"))),
            None => {}
        }
        if let Some((n, text)) = bad {
            return Err(Error::BadKernel(format!(
                "line {n} ({:?}) is not `ADDRESS TYPE NAME`: not a System.map or kallsyms \
                 listing",
                &text[..text.len().min(80)]
            )));
        }
        if index.entries.is_empty() {
            return Err(Error::BadKernel("the symbol map lists no symbols".into()));
        }
        Ok(Kernel {
            ident: None,
            index,
            initialised: Vec::new(),
        })
    }

    /// Indexes a list of `(name, value, nm type letter)`, as the kernel's
    /// own kallsyms tables give them; `None` when memory for the index
    /// cannot be had.
    pub fn from_list<'a>(list: impl IntoIterator<Item = (&'a [u8], u64, u8)>) -> Result<Kernel> {
        let mut index = Index::new();
        for (name, value, kind) in list {
            let (n_type, global) = nm_type(kind);
            index
                .insert(name, Symbol { value, n_type }, global)
                .map_err(|_| Error::OutOfMemory("the kernel's symbol index".into()))?;
        }
        Ok(Kernel {
            ident: None,
            index,
            initialised: Vec::new(),
        })
    }

    /// True when the kernel gives no symbol (no kernel file).
    pub fn is_empty(&self) -> bool {
        self.index.entries.is_empty()
    }

    /// Looks a symbol up by name.
    pub fn symbol(&self, name: &str) -> Option<Symbol> {
        let i = &self.index;
        i.find(name.as_bytes())
            .or_else(|| i.find(name.strip_prefix('_')?.as_bytes()))
            .map(|e| e.symbol)
    }

    /// Every indexed symbol, in the order the kernel's table lists them
    /// (one entry per distinct name).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Symbol)> + '_ {
        let i = &self.index;
        i.entries.iter().map(move |e| (i.name(e), e.symbol))
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

impl Index {
    fn new() -> Index {
        Index {
            names: Vec::new(),
            entries: Vec::new(),
            table: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
        }
    }

    fn name(&self, e: &Entry) -> &[u8] {
        &self.names[e.name.0..e.name.0 + e.name.1]
    }

    /// Makes room for `n` entries if the memory can be had (else the
    /// index grows as entries come).
    fn reserve(&mut self, n: usize) {
        if self.entries.try_reserve(n).is_ok() {
            let (names, entries, hasher) = (&self.names, &self.entries, &self.hasher);
            let _ = self
                .table
                .try_reserve(n, |&i| hash_of(hasher, names, &entries[i as usize]));
        }
    }

    fn find(&self, name: &[u8]) -> Option<&Entry> {
        let hash = self.hasher.hash_one(name);
        let &i = self
            .table
            .find(hash, |&i| self.name(&self.entries[i as usize]) == name)?;
        Some(&self.entries[i as usize])
    }

    /// Adds a symbol, preferring a global definition over a local of the
    /// same name, and the first of equals.
    fn insert(&mut self, name: &[u8], symbol: Symbol, global: bool) -> Result<(), LoadError> {
        let hash = self.hasher.hash_one(name);
        let (names, entries) = (&self.names, &mut self.entries);
        let found = self.table.find(hash, |&i| {
            let e = &entries[i as usize];
            &names[e.name.0..e.name.0 + e.name.1] == name
        });
        if let Some(&i) = found {
            let e = &mut entries[i as usize];
            if global && !e.global {
                (e.symbol, e.global) = (symbol, global);
            }
            return Ok(());
        }
        let i = u32::try_from(entries.len()).map_err(|_| LoadError::Memory)?;
        self.names
            .try_reserve(name.len())
            .map_err(|_| LoadError::Memory)?;
        self.entries.try_reserve(1).map_err(|_| LoadError::Memory)?;
        let (names, entries, hasher) = (&self.names, &self.entries, &self.hasher);
        self.table
            .try_reserve(1, |&i| hash_of(hasher, names, &entries[i as usize]))
            .map_err(|_| LoadError::Memory)?;
        let at = self.names.len();
        self.names.extend_from_slice(name);
        self.entries.push(Entry {
            name: (at, name.len()),
            symbol,
            global,
        });
        let (names, entries, hasher) = (&self.names, &self.entries, &self.hasher);
        self.table
            .insert_unique(hash, i, |&i| hash_of(hasher, names, &entries[i as usize]));
        Ok(())
    }
}

/// The a.out type of an `nm` type letter (`System.map`, kallsyms; lower
/// case is local), and whether it is global.
fn nm_type(c: u8) -> (u8, bool) {
    use ntype::*;
    let global = c.is_ascii_uppercase();
    let t = match c.to_ascii_lowercase() {
        b't' | b'w' => N_TEXT,
        b'd' | b'r' | b'g' => N_DATA,
        b'b' | b's' => N_BSS,
        b'a' => N_ABS,
        _ => N_UNDF,
    };
    (t | if global { N_EXT } else { 0 }, global)
}

/// The hash of an entry's name.
fn hash_of(hasher: &DefaultHashBuilder, names: &[u8], e: &Entry) -> u64 {
    hasher.hash_one(&names[e.name.0..e.name.0 + e.name.1])
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

fn load_any<'d, R: ReadRef<'d>>(ident: ElfIdent, data: R) -> Result<Kernel, LoadError> {
    if ident.is_64 {
        load::<elf::FileHeader64<Endianness>, R>(ident, data)
    } else {
        load::<elf::FileHeader32<Endianness>, R>(ident, data)
    }
}

fn load<'d, H: FileHeader<Endian = Endianness>, R: ReadRef<'d>>(
    ident: ElfIdent,
    data: R,
) -> Result<Kernel, LoadError> {
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
    // Room for every symbol, as far as the names can be distinct (each
    // needs a byte and a NUL of the string table): a table of empty names
    // reserves nothing.
    let strings = sections
        .section(table.string_section())
        .map_or(0, |sh| sh.sh_size(endian).into());
    let mut index = Index::new();
    index.reserve((table.len() as u64).min(strings / 2) as usize);
    for sym in table.iter() {
        let Ok(name) = table.symbol_name(endian, sym) else {
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
        let symbol = Symbol {
            value: sym.st_value(endian).into(),
            n_type,
        };
        index.insert(name, symbol, global)?;
    }
    Ok(Kernel {
        ident: Some(ident),
        index,
        initialised,
    })
}
