//! kvmread: the kvmdump example (`examples/kvmdump.c`) written against the
//! safe Rust API.
//!
//! ```text
//! cargo run --example kvmread -- KERNEL CORE SYMBOL [LENGTH]
//! cargo run --example kvmread -- - LINUX-VMCORE linux_banner
//! cargo run --example kvmread -- KERNEL CORE 0xADDRESS [LENGTH]
//! ```
//!
//! Opens the kernel image and crash dump, prints the backend and whether the
//! dump is native, resolves SYMBOL (or takes a 0x-prefixed hexadecimal
//! address), reads LENGTH bytes there (decimal or 0x hex, at most 1 MiB,
//! default 64) and prints them as a hex dump, 16 bytes per line, in the same
//! format as `kvmdump.c` and `kvm_ctypes.py`.
//!
//! Exit status: 0 on success (also after a short read), 1 on an error, 2 on a
//! usage error.

use kvm::Kvm;
use std::process::ExitCode;

const DEFAULT_LENGTH: usize = 64;
const MAX_LENGTH: usize = 1024 * 1024;

/// All of `s` as a number: hex digits after a `0x` prefix, else decimal
/// digits (no sign, space or octal).
fn parse_number(s: &str) -> Option<u64> {
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (s, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

fn is_hex_address(s: &str) -> bool {
    s.starts_with("0x") || s.starts_with("0X")
}

/// Prints `data`, read at `addr`, as `kvmdump.c` does.
fn hexdump(addr: u64, data: &[u8]) {
    for (i, chunk) in data.chunks(16).enumerate() {
        let mut line = format!("{:#018x}  ", addr.wrapping_add(16 * i as u64));
        for b in chunk {
            line += &format!("{b:02x} ");
        }
        line += &"   ".repeat(16 - chunk.len());
        line += " |";
        line.extend(chunk.iter().map(|&b| match b {
            0x20..=0x7e => b as char,
            _ => '.',
        }));
        line += "|";
        println!("{line}");
    }
}

/// Reads `length` bytes at `addr`, or at symbol `what` when `addr` is None.
fn run(
    kernel: &str,
    core: &str,
    what: &str,
    addr: Option<u64>,
    length: usize,
) -> Result<(), String> {
    // `-`: no kernel file (a Linux dump's symbols come from the dump).
    let kvm = if kernel == "-" {
        kvm::OpenOptions::new().open_dump(None, core.as_ref())
    } else {
        Kvm::open(kernel, core)
    }
    .map_err(|e| e.to_string())?;
    println!("backend: {}", kvm.backend());
    println!("native: {}", u8::from(kvm.native()));

    let addr = match addr {
        Some(addr) => addr,
        None => {
            let sym = kvm
                .symbol(what)
                .ok_or_else(|| format!("{what}: symbol not found"))?;
            println!("{what} = {:#018x} (n_type {:#04x})", sym.value, sym.n_type);
            sym.value
        }
    };

    let mut buf = vec![0u8; length];
    let n = kvm.read(addr, &mut buf).map_err(|e| e.to_string())?;
    hexdump(addr, &buf[..n]);
    if n < length {
        println!("(short read: {n} of {length} bytes; the core file ends early)");
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if !(4..=5).contains(&args.len()) {
        eprintln!("usage: kvmread KERNEL CORE SYMBOL|0xADDRESS [LENGTH]");
        return ExitCode::from(2);
    }
    let (kernel, core, what) = (&args[1], &args[2], &args[3]);
    let length = match args.get(4) {
        None => DEFAULT_LENGTH,
        Some(s) => match parse_number(s).and_then(|n| usize::try_from(n).ok()) {
            Some(n) if (1..=MAX_LENGTH).contains(&n) => n,
            _ => {
                eprintln!("kvmread: invalid LENGTH '{s}' (1 to {MAX_LENGTH} bytes)");
                return ExitCode::from(2);
            }
        },
    };
    let addr = if is_hex_address(what) {
        match parse_number(what) {
            Some(addr) => Some(addr),
            None => {
                eprintln!("kvmread: invalid address '{what}'");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    match run(kernel, core, what, addr, length) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kvmread: {e}");
            ExitCode::FAILURE
        }
    }
}
