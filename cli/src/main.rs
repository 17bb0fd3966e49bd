//! `vmcore`: what a kernel crash dump holds, from the command line.
//!
//! `vmcore SUBCOMMAND KERNEL CORE [...]` opens a FreeBSD kernel and its
//! dump, or a Linux vmcore with its vmlinux, System.map or kallsyms
//! listing (`-` for none), through the `kvm` library, and prints what the
//! subcommand asks. Exit status: 0 on success, 1 when the dump cannot be
//! opened or read (the message names the file or address), 2 for usage
//! errors.

mod gdb;
mod progress;
mod rsp;

use clap::{Args, Parser, Subcommand};
use kvm::{Kvm, OpenOptions, Page};
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "vmcore",
    version,
    about = "Read FreeBSD kernel crash dumps and Linux vmcores of any architecture",
    long_about = "Read FreeBSD kernel crash dumps (ELF full dumps and minidumps) and Linux \
                  vmcores (ELF and kdump-compressed) of any architecture, on any host."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// What the dump is: backend, kernel version, memory it holds.
    Info(Dump),
    /// Prints memory at an address or symbol as a hex dump.
    Read {
        #[command(flatten)]
        dump: Dump,
        /// A kernel virtual address (0x... hex, or decimal) or a symbol.
        what: String,
        /// Bytes to read (default 64; 0x... hex or decimal).
        len: Option<String>,
        /// Writes the bytes themselves to standard output.
        #[arg(long)]
        raw: bool,
    },
    /// Translates a kernel virtual address to a physical address, printing
    /// the table entry read at every level.
    Vtop {
        #[command(flatten)]
        dump: Dump,
        /// A kernel virtual address or a symbol.
        what: String,
    },
    /// Lists mapped pages (kvm_walk_pages), runs of contiguous pages
    /// merged.
    Pages(Dump),
    /// Prints the kernel's message buffer (FreeBSD's msgbuf, Linux's printk
    /// ring), as dmesg(8).
    Dmesg {
        #[command(flatten)]
        dump: Dump,
        /// Everything the buffer holds: priority prefixes, and lines
        /// from outside the kernel (syslog's other facilities).
        #[arg(short, long)]
        all: bool,
    },
    /// Lists the kernel's threads, like ps -H: pid, tid, CPU, PCB, names;
    /// `*` marks the thread that was dumping.
    Threads(Dump),
    /// Serves the dump to gdb over the GDB remote serial protocol: on
    /// standard input and output (`target remote | vmcore gdbserver
    /// KERNEL CORE`), or on a TCP port.
    Gdbserver {
        #[command(flatten)]
        dump: Dump,
        /// Listens on HOST:PORT (or PORT, on the loopback interface) for
        /// one gdb connection instead.
        #[arg(long, value_name = "HOST:PORT")]
        listen: Option<String>,
    },
    /// Lists the kernel's symbols, sorted by address.
    Symbols {
        #[command(flatten)]
        dump: Dump,
        /// Only names containing this text.
        pattern: Option<String>,
    },
}

impl Command {
    /// The files the subcommand opens.
    fn dump(&self) -> &Dump {
        match self {
            Command::Info(d) | Command::Pages(d) | Command::Threads(d) => d,
            Command::Read { dump, .. }
            | Command::Vtop { dump, .. }
            | Command::Dmesg { dump, .. }
            | Command::Gdbserver { dump, .. }
            | Command::Symbols { dump, .. } => dump,
        }
    }
}

/// The two files every subcommand opens.
#[derive(Args)]
struct Dump {
    /// The kernel image (a Linux vmlinux, System.map or kallsyms listing,
    /// or `-` for none with a Linux vmcore).
    kernel: PathBuf,
    /// The crash dump.
    core: PathBuf,
}

impl Dump {
    fn open(&self) -> kvm::Result<Kvm> {
        let kernel = (self.kernel.as_os_str() != "-").then_some(self.kernel.as_path());
        OpenOptions::new().open_dump(kernel, &self.core)
    }
}

/// Why a command failed: the library's message, or an output error.
enum Failure {
    Kvm(kvm::Error),
    Usage(String),
    Io(io::Error),
}

impl From<kvm::Error> for Failure {
    fn from(e: kvm::Error) -> Self {
        Failure::Kvm(e)
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let spinner = match &cli.command {
        Command::Gdbserver { .. } => progress::Spinner::none(),
        c => progress::Spinner::start(format!("reading {}", c.dump().core.display())),
    };
    let stdout = io::stdout();
    let to_terminal = stdout.is_terminal();
    let mut out = progress::Output::new(io::BufWriter::new(stdout.lock()), &spinner, to_terminal);
    let result = run(cli.command, &mut out).and_then(|()| out.flush().map_err(Failure::Io));
    spinner.stop();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`vmcore symbols ... | head`) is no error.
        Err(Failure::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(Failure::Io(e)) => {
            eprintln!("vmcore: standard output: {e}");
            ExitCode::FAILURE
        }
        Err(Failure::Kvm(e)) => {
            eprintln!("vmcore: {e}");
            ExitCode::FAILURE
        }
        Err(Failure::Usage(m)) => {
            eprintln!("vmcore: {m}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command, out: &mut impl Write) -> Result<(), Failure> {
    match command {
        Command::Info(d) => info(&d.open()?, out),
        Command::Read {
            dump,
            what,
            len,
            raw,
        } => {
            let kvm = dump.open()?;
            let addr = address(&kvm, &what)?;
            let len = match len {
                Some(l) => number(&l).ok_or_else(|| {
                    Failure::Usage(format!("length {l:?} is not a number (0x... or decimal)"))
                })?,
                None => 64,
            };
            read(&kvm, addr, len, raw, out)
        }
        Command::Vtop { dump, what } => {
            let kvm = dump.open()?;
            let addr = address(&kvm, &what)?;
            let (steps, pa) = kvm.translation(addr);
            for s in &steps {
                let at = match s.table {
                    kvm::TableAt::Phys(pa) => format!("table {pa:#x} [{}]", s.index),
                    kvm::TableAt::File(off) => {
                        format!("page map entry {} at core offset {off:#x}", s.index)
                    }
                };
                writeln!(out, "  {:<6} {at} = {:#x}", s.level, s.entry)?;
            }
            writeln!(out, "{addr:#x} -> physical {:#x}", pa?)?;
            Ok(())
        }
        Command::Pages(d) => pages(&d.open()?, out),
        Command::Threads(d) => {
            let threads = d.open()?.threads()?;
            writeln!(
                out,
                "{:>7} {:>7} {:>4} {:>18}  COMM/NAME",
                "PID", "TID", "CPU", "PCB"
            )?;
            for t in threads {
                let pid = if t.pid < 0 {
                    "-".into()
                } else {
                    t.pid.to_string()
                };
                let cpu = t.cpu.map_or_else(|| "-".into(), |c| c.to_string());
                let mark = if t.crashed { '*' } else { ' ' };
                let name = match (t.comm.as_str(), t.name.as_str()) {
                    ("", n) | (n, "") => n.to_string(),
                    (c, n) if c == n => c.to_string(),
                    (c, n) => format!("{c}/{n}"),
                };
                writeln!(
                    out,
                    "{pid:>7} {:>7} {cpu:>4} {:#18x} {mark}{name}",
                    t.tid, t.pcb
                )?;
            }
            Ok(())
        }
        Command::Gdbserver { dump, listen } => {
            let kvm = dump.open()?;
            let target = gdb::DumpTarget::new(&kvm)?;
            match listen {
                None => rsp::serve(&target, io::stdin().lock(), out)?,
                Some(addr) => {
                    let addr = if addr.contains(':') {
                        addr
                    } else {
                        format!("127.0.0.1:{addr}")
                    };
                    let listener = std::net::TcpListener::bind(&addr)
                        .map_err(|e| Failure::Usage(format!("cannot listen on {addr}: {e}")))?;
                    eprintln!("vmcore: listening on {}", listener.local_addr()?);
                    let (conn, peer) = listener.accept()?;
                    eprintln!("vmcore: gdb connected from {peer}");
                    conn.set_nodelay(true)?;
                    rsp::serve(&target, &conn, &conn)?;
                }
            }
            Ok(())
        }
        Command::Dmesg { dump, all } => {
            let text = dump.open()?.message_buffer()?;
            if all {
                out.write_all(&text)?;
            } else {
                for line in text.split_inclusive(|&b| b == b'\n') {
                    if let Some(line) = kernel_line(line) {
                        out.write_all(&vis(line))?;
                    }
                }
            }
            if !text.ends_with(b"\n") {
                writeln!(out)?;
            }
            Ok(())
        }
        Command::Symbols { dump, pattern } => {
            let kvm = dump.open()?;
            let mut list: Vec<_> = kvm
                .symbols()
                .filter(|(name, _)| pattern.as_deref().is_none_or(|p| name.contains(p)))
                .collect();
            list.sort_by(|a, b| (a.1.value, a.0).cmp(&(b.1.value, b.0)));
            for (name, s) in list {
                writeln!(out, "{:016x} {} {name}", s.value, type_letter(s.n_type))?;
            }
            Ok(())
        }
    }
}

/// A number as a debugger user writes it: `0x` hex, or decimal.
fn number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16).ok(),
        None => s.parse().ok(),
    }
}

/// An address, or the value of the symbol of that name.
fn address(kvm: &Kvm, what: &str) -> Result<u64, Failure> {
    if let Some(a) = number(what) {
        return Ok(a);
    }
    kvm.symbol(what).map(|s| s.value).ok_or_else(|| {
        Failure::Usage(format!(
            "{what:?} is neither an address nor a symbol of the kernel"
        ))
    })
}

/// A line of the message buffer as dmesg(8) shows it: without its
/// `<priority>` prefix (`<` and digits), and `None` for a line another
/// syslog facility than the kernel's (`LOG_FAC(pri)` 0) wrote.
fn kernel_line(line: &[u8]) -> Option<&[u8]> {
    let digits = line
        .get(1..)?
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if line.first() != Some(&b'<') || digits == 0 || line.get(1 + digits) != Some(&b'>') {
        return Some(line);
    }
    let pri: u64 = std::str::from_utf8(&line[1..1 + digits])
        .ok()?
        .parse()
        .ok()?;
    // LOG_FAC (sys/sys/syslog.h): (pri & LOG_FACMASK) >> 3.
    ((pri & 0x3f8) >> 3 == 0).then_some(&line[2 + digits..])
}

/// `line` with control and 8-bit characters escaped as vis(3) does by
/// default (`\^C`, `\^?`, `\M-x`), as dmesg(8) prints them; newlines
/// and tabs stay.
fn vis(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    for &b in line {
        let c = b & 0x7f;
        if b & 0x80 != 0 {
            out.extend_from_slice(b"\\M-");
        }
        match c {
            b'\n' | b'\t' if b & 0x80 == 0 => out.push(c),
            0x7f => out.extend_from_slice(b"\\^?"),
            0..=0x1f => out.extend_from_slice(&[b'\\', b'^', c + 0x40]),
            _ => out.push(c),
        }
    }
    out
}

/// `nm`'s letter for an a.out type (upper case for external symbols).
fn type_letter(n_type: u8) -> char {
    use kvm::ntype::*;
    let c = match n_type & !N_EXT {
        N_ABS => 'a',
        N_TEXT => 't',
        N_DATA => 'd',
        N_BSS => 'b',
        _ => '?',
    };
    if n_type & N_EXT != 0 {
        c.to_ascii_uppercase()
    } else {
        c
    }
}

fn info(kvm: &Kvm, out: &mut impl Write) -> Result<(), Failure> {
    writeln!(out, "backend:       {}", kvm.backend())?;
    writeln!(
        out,
        "native:        {}",
        if kvm.native() { "yes" } else { "no" }
    )?;
    let held = kvm.memory_held();
    writeln!(out, "memory held:   {} MiB ({held} bytes)", held >> 20)?;
    writeln!(out, "kerndisp:      {:#x}", kvm.kerndisp())?;
    // FreeBSD's `version`, Linux's `linux_banner`.
    for name in ["version", "linux_banner"] {
        if let Some(s) = kvm.symbol(name) {
            let mut buf = [0u8; 256];
            let text = match kvm.read(s.value, &mut buf) {
                Ok(n) => {
                    let b = &buf[..n];
                    let end = b.iter().position(|&c| c == 0 || c == b'\n').unwrap_or(n);
                    String::from_utf8_lossy(&b[..end]).into_owned()
                }
                Err(e) => format!("(unreadable: {e})"),
            };
            writeln!(out, "kernel:        {text}")?;
            break;
        }
    }
    if let Some(n) = kvm.cpus() {
        writeln!(out, "cpus:          {n}")?;
    }
    match kvm.panic_string() {
        Some(p) => writeln!(out, "panic:         {p}")?,
        None => writeln!(out, "panic:         (none recorded)")?,
    }
    Ok(())
}

/// Reads `len` bytes at `addr` and prints them as `xxd` does (address,
/// 16 bytes in hex, the printable ones as text), or raw.
fn read(kvm: &Kvm, addr: u64, len: u64, raw: bool, out: &mut impl Write) -> Result<(), Failure> {
    let mut done = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        let at = addr.wrapping_add(done);
        let got = kvm.read(at, &mut buf[..n])?;
        if raw {
            out.write_all(&buf[..got])?;
        } else {
            for (i, line) in buf[..got].chunks(16).enumerate() {
                let a = at.wrapping_add(16 * i as u64);
                let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
                let text: String = line
                    .iter()
                    .map(|&b| {
                        if b.is_ascii_graphic() || b == b' ' {
                            b as char
                        } else {
                            '.'
                        }
                    })
                    .collect();
                writeln!(out, "{a:016x}  {:<47}  {text}", hex.join(" "))?;
            }
        }
        if got < n {
            return Err(Failure::Kvm(kvm::Error::BadCore(format!(
                "the core file ends after {} of the {len} bytes at {addr:#x}",
                done + got as u64
            ))));
        }
        done += n as u64;
    }
    Ok(())
}

/// A run of pages the walk reported one after another, contiguous in
/// virtual and physical memory, with one protection, all in the file or
/// none.
struct Run {
    first: Page,
    len: u64,
}

impl Run {
    fn extends(&self, p: &Page) -> bool {
        let f = &self.first;
        let (va, pa) = (va_of(f), f.paddr);
        va_of(p) == va.wrapping_add(self.len)
            && p.paddr == pa.wrapping_add(self.len)
            && p.prot == f.prot
            && (f.kmap_vaddr == 0) == (p.kmap_vaddr == 0)
            && p.offset.is_some() == f.offset.is_some()
    }
}

/// The address a walk reports a page by: its kernel-map address, else its
/// direct-map address.
fn va_of(p: &Page) -> u64 {
    if p.kmap_vaddr != 0 {
        p.kmap_vaddr
    } else {
        p.dmap_vaddr
    }
}

fn pages(kvm: &Kvm, out: &mut impl Write) -> Result<(), Failure> {
    use kvm::prot::{EXECUTE, READ, WRITE};
    let print = |out: &mut dyn Write, r: &Run| -> io::Result<()> {
        let p = &r.first;
        let prot: String = [(READ, 'r'), (WRITE, 'w'), (EXECUTE, 'x')]
            .iter()
            .map(|&(b, c)| if p.prot & b != 0 { c } else { '-' })
            .collect();
        let map = if p.kmap_vaddr != 0 { "kmap" } else { "dmap" };
        let off = p
            .offset
            .map_or_else(|| "not in dump".into(), |o| format!("offset {o:#x}"));
        let va = va_of(p);
        writeln!(
            out,
            "{va:016x}-{:016x} {prot} {map} phys {:#x} {off}",
            va.wrapping_add(r.len),
            p.paddr
        )
    };
    let mut run: Option<Run> = None;
    let mut error = None;
    kvm.walk_pages(|p| {
        match &mut run {
            Some(r) if r.extends(p) => r.len += p.len,
            _ => {
                if let Some(r) = run.take() {
                    if let Err(e) = print(out, &r) {
                        error = Some(e);
                        return false;
                    }
                }
                run = Some(Run {
                    first: *p,
                    len: p.len,
                });
            }
        }
        true
    })?;
    if let Some(e) = error {
        return Err(Failure::Io(e));
    }
    if let Some(r) = run {
        print(out, &r)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{kernel_line, vis};

    #[test]
    fn message_lines_as_dmesg_shows_them() {
        let k = |l: &[u8]| kernel_line(l).map(<[u8]>::to_vec);
        assert_eq!(k(b"<6>boot\n"), Some(b"boot\n".to_vec()));
        // LOG_FAC(1030) is 0: the kernel's; facility 1 (user) is not.
        assert_eq!(k(b"<1030>x\n"), Some(b"x\n".to_vec()));
        assert_eq!(k(b"<14>from userland\n"), None);
        // Not a priority: kept whole.
        for l in [&b"<6 no closing\n"[..], b"<+0>x\n", b"<>x\n", b"plain\n"] {
            assert_eq!(k(l), Some(l.to_vec()));
        }
        assert_eq!(
            vis(b"a\x01b\x7f\xe9\tc\n"),
            b"a\\^Ab\\^?\\M-i\tc\n".to_vec()
        );
    }
}
