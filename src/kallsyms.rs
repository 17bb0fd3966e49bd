//! The kernel's own symbol table, read from the dump: kallsyms, whose
//! location Linux 6.0+ writes into VMCOREINFO (`SYMBOL(kallsyms_names)`,
//! `kallsyms_num_syms`, `kallsyms_token_table`, `kallsyms_token_index`,
//! `kallsyms_offsets` and `kallsyms_relative_base`, or
//! `kallsyms_addresses`: `kernel/vmcore_info.c`). It gives a Linux dump
//! opened without a kernel file its symbols.
//!
//! The tables (`scripts/kallsyms.c` writes them, `kernel/kallsyms.c` reads
//! them):
//! - `kallsyms_num_syms`: a 32-bit count;
//! - `kallsyms_names`: per symbol, a length in tokens (one byte; since
//!   6.1, "big" symbols of 128 tokens or more take two, the first with bit
//!   7 set, `(b0 & 0x7f) | b1 << 7`), then that many token numbers;
//! - `kallsyms_token_table` / `kallsyms_token_index`: the 256 tokens, NUL-
//!   terminated strings, and a 16-bit offset of each; a symbol's expanded
//!   name starts with its `nm` type letter;
//! - `kallsyms_offsets` (32-bit) with `kallsyms_relative_base`: the address
//!   is `base + (u32)offset`, or, with `CONFIG_KALLSYMS_ABSOLUTE_PERCPU`
//!   (x86-64), `offset` itself when it is not negative and
//!   `base - 1 - offset` when it is (`kallsyms_sym_address`); which one
//!   applies is told by `_stext`, whose address VMCOREINFO gives. Older
//!   configurations store `kallsyms_addresses`, one pointer per symbol.

use crate::error::{Error, Result};
use crate::image::uint;
use crate::kernel::Kernel;
use crate::vmcoreinfo::VmcoreInfo;

/// The most symbols believed (a kernel with every option has about 300k).
const MAX_SYMS: u32 = 4 << 20;

/// The longest name a kernel symbol has, its type letter included
/// (`KSYM_NAME_LEN`, `include/linux/kallsyms.h`).
const KSYM_NAME_LEN: usize = 512;

/// Reads kernel memory: `read(va, buf)` fills `buf` or fails.
pub type Read<'a> = &'a dyn Fn(u64, &mut [u8]) -> Result<()>;

/// The kernel's kallsyms tables as a symbol index, or `None` when
/// VMCOREINFO does not say where they are.
pub fn load(
    info: &VmcoreInfo,
    ptr_size: usize,
    big_endian: bool,
    read: Read<'_>,
) -> Result<Option<Kernel>> {
    let sym = |n: &str| info.symbol(n);
    let (Some(names), Some(num), Some(table), Some(index)) = (
        sym("kallsyms_names"),
        sym("kallsyms_num_syms"),
        sym("kallsyms_token_table"),
        sym("kallsyms_token_index"),
    ) else {
        return Ok(None);
    };
    let bad = |m: String| Error::BadCore(format!("kallsyms tables (from VMCOREINFO): {m}"));
    let mut w = [0u8; 4];
    read(num, &mut w)?;
    let count = uint(&w, big_endian) as u32;
    if count == 0 || count > MAX_SYMS {
        return Err(bad(format!(
            "kallsyms_num_syms is {count} (expected 1 to {MAX_SYMS})"
        )));
    }

    // The tokens.
    let mut idx = [0u8; 512];
    read(index, &mut idx)?;
    let offsets: Vec<usize> = idx
        .chunks(2)
        .map(|c| uint(c, big_endian) as usize)
        .collect();
    let last = offsets.iter().copied().max().unwrap_or(0);
    // The table ends with the last token's NUL; token_index follows it in
    // the kernel image, so read no further than that.
    let mut len = last + 256;
    if let Some(gap) = index.checked_sub(table).filter(|&g| g > last as u64) {
        len = len.min(gap as usize);
    }
    let mut tokens = vec![0u8; len];
    read(table, &mut tokens)?;
    let token = |t: u8| -> &[u8] {
        let s = &tokens[offsets[usize::from(t)]..];
        &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())]
    };

    // The names, read a chunk at a time as the lengths say.
    let long = long_names(info.osrelease().unwrap_or(""));
    let mut bytes: Vec<u8> = Vec::new();
    let mut at = 0usize;
    // A page at a time: nothing past the page that holds the last name.
    let more = |bytes: &mut Vec<u8>, need: usize| -> Result<()> {
        while bytes.len() < need {
            let start = bytes.len();
            let n = (4096 - (names.wrapping_add(start as u64) & 4095)) as usize;
            bytes
                .try_reserve(n)
                .map_err(|_| Error::OutOfMemory("the kernel's kallsyms names".into()))?;
            bytes.resize(start + n, 0);
            read(names + start as u64, &mut bytes[start..])?;
        }
        Ok(())
    };
    // The names one after another in `text`, each a range and a type.
    let oom = |_| Error::OutOfMemory("the kernel's kallsyms".into());
    let mut text: Vec<u8> = Vec::new();
    let mut list: Vec<(usize, usize, u8)> = Vec::new();
    list.try_reserve(count as usize).map_err(oom)?;
    let mut name = Vec::with_capacity(KSYM_NAME_LEN);
    for _ in 0..count {
        more(&mut bytes, at + 2)?;
        let mut len = usize::from(bytes[at]);
        at += 1;
        if long && len & 0x80 != 0 {
            len = (len & 0x7f) | usize::from(bytes[at]) << 7;
            at += 1;
        }
        more(&mut bytes, at + len)?;
        name.clear();
        for &t in &bytes[at..at + len] {
            let tok = token(t);
            if name.len() + tok.len() > KSYM_NAME_LEN {
                return Err(bad(format!(
                    "symbol {} expands past {KSYM_NAME_LEN} bytes (KSYM_NAME_LEN): the tables \
                     are not a kernel's",
                    list.len()
                )));
            }
            name.extend_from_slice(tok);
        }
        at += len;
        let Some((&kind, rest)) = name.split_first() else {
            return Err(bad(format!("symbol {} has an empty name", list.len())));
        };
        text.try_reserve(rest.len()).map_err(oom)?;
        let start = text.len();
        text.extend_from_slice(rest);
        list.push((start, text.len(), kind));
    }

    // The addresses.
    let stext = list.iter().position(|&(a, b, _)| &text[a..b] == b"_stext");
    let values = addresses(info, stext, count, ptr_size, big_endian, read)?;
    let kernel = Kernel::from_list(
        list.iter()
            .zip(values)
            .map(|(&(a, b, kind), value)| (&text[a..b], value, kind)),
    )?;
    Ok(Some(kernel))
}

/// Whether a kernel of release `osrelease` writes big symbols' lengths in
/// two bytes (commit 73bbb94466fd, "kallsyms: support "big" kernel
/// symbols", Linux 6.1; no table records it).
fn long_names(osrelease: &str) -> bool {
    let mut parts = osrelease.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (6, 1)
}

/// Each symbol's address; `stext_index` is the number of the symbol
/// named `_stext`, if there is one.
fn addresses(
    info: &VmcoreInfo,
    stext_index: Option<usize>,
    count: u32,
    ptr_size: usize,
    big_endian: bool,
    read: Read<'_>,
) -> Result<Vec<u64>> {
    let bad = |m: &str| Error::BadCore(format!("kallsyms tables (from VMCOREINFO): {m}"));
    let word = |b: &[u8]| uint(b, big_endian);
    let n = count as usize;
    if let Some(at) = info.symbol("kallsyms_addresses") {
        let mut raw = vec![0u8; n * ptr_size];
        read(at, &mut raw)?;
        return Ok(raw.chunks(ptr_size).map(word).collect());
    }
    let (Some(at), Some(base_at)) = (
        info.symbol("kallsyms_offsets"),
        info.symbol("kallsyms_relative_base"),
    ) else {
        return Err(bad("VMCOREINFO gives neither kallsyms_addresses nor kallsyms_offsets with kallsyms_relative_base"));
    };
    let mut b = vec![0u8; ptr_size];
    read(base_at, &mut b)?;
    let base = word(&b);
    let mut raw = vec![0u8; n * 4];
    read(at, &mut raw)?;
    let offsets: Vec<u32> = raw.chunks(4).map(|c| word(c) as u32).collect();
    let relative = |o: u32| base.wrapping_add(u64::from(o));
    let percpu = |o: u32| match o as i32 {
        v if v >= 0 => v as u64,
        v => base.wrapping_sub(1).wrapping_sub(v as i64 as u64),
    };
    // _stext tells which way the offsets are meant.
    let stext = info
        .symbol("_stext")
        .ok_or_else(|| bad("VMCOREINFO has no SYMBOL(_stext) to check the addresses against"))?;
    let i = stext_index.ok_or_else(|| bad("no _stext among the symbols"))?;
    let decode: &dyn Fn(u32) -> u64 = if relative(offsets[i]) == stext {
        &relative
    } else if percpu(offsets[i]) == stext {
        &percpu
    } else {
        return Err(bad(&format!(
            "neither reading of kallsyms_offsets puts _stext at {stext:#x}, where VMCOREINFO has it"
        )));
    };
    Ok(offsets.into_iter().map(decode).collect())
}
