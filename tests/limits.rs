//! Memory limits and cores that change while open.
//!
//! - Under an address-space limit (`RLIMIT_AS`), headers that claim huge
//!   sections (a 1.5 GiB minidump bitmap, a 1.5 GiB `.symtab`) must not make
//!   open allocate what they claim: it returns, `Ok` or a clean error, and
//!   never aborts; a 1 TiB sparse core that cannot be mapped is read with
//!   `pread(2)` instead.
//! - A core truncated by another process while open gives short reads in
//!   pread mode (`OpenOptions::pread`, `KVM_O_PREAD`, `KVM_PREAD`); mapped,
//!   it faults, which is why pread mode exists.
//!
//! Each case runs its risky part in a child: this test binary re-executes
//! itself to run one `#[ignore]`d `child_*` test, with the files' paths in
//! [`FILES_ENV`] and, when asked, `RLIMIT_AS` set between fork and exec. An
//! abort or a signal then fails one test instead of killing the harness;
//! the parent asserts the child's exit status and checks what it printed.
//!
//! Linux only: `RLIMIT_AS` is enforced there, and the children read their
//! memory figures from /proc/self/status.

#![cfg(target_os = "linux")]

mod fixture;
use fixture::amd64::{self, va, Amd64, KERNSIZE};
use fixture::{Fill, Scratch, PAGE};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Marks the lines a child prints for its parent (the harness prints
/// `test name ... ` before them on the same line).
const MARK: &str = "[child] ";

/// The variable that carries the files a child works on (joined as `PATH`).
const FILES_ENV: &str = "KVM_LIMITS_FILES";

/// An address-space limit smaller than the 1.5 GiB files: they cannot be
/// mapped, so the library reads them with `pread`. The test binary itself
/// needs about 134 MiB of address space (`VmPeak` of a child that opens a
/// small dump: two threads, each with a 64 MiB malloc arena reserved).
const SMALL_AS: u64 = 1 << 30;

/// A limit that lets a 1.5 GiB file be mapped (1.6 GiB with the binary)
/// but leaves no room for a copy of what its header claims: the old
/// library's allocations (1.5 GiB and more on top of the mapping) fail.
const ROOMY_AS: u64 = 5 << 29;

/// What the lying headers claim: 1.5 GiB (a multiple of the page size and
/// of the 24-byte ELF64 symbol).
const CLAIM: u64 = 3 << 29;

/// Peak resident memory allowed to a child that opens a lying dump.
const MAX_RSS_KIB: i64 = 200 << 10;

fn machine() -> Amd64 {
    Amd64::new(2 << 20, Fill::Pattern)
}

// ---------------------------------------------------------------------
// Running children.

/// How a child ended, and what it printed.
struct Child {
    name: &'static str,
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

impl Child {
    /// Runs the `#[ignore]`d test `name` of this binary in a new process
    /// with `files` in [`FILES_ENV`], `env` set, and the address space
    /// limited to `limit` bytes when given.
    fn run(name: &'static str, files: &[&Path], limit: Option<u64>, env: &[(&str, &str)]) -> Child {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(FILES_ENV, std::env::join_paths(files).unwrap())
        .env_remove("KVM_PREAD")
        .env_remove("KVM_NOVERIFY");
        for (k, v) in env {
            cmd.env(k, v);
        }
        // SAFETY: only async-signal-safe calls (setrlimit) between fork and
        // exec.
        unsafe {
            cmd.pre_exec(move || {
                let set = |resource, bytes: u64| {
                    let r = libc::rlimit {
                        rlim_cur: bytes,
                        rlim_max: bytes,
                    };
                    if libc::setrlimit(resource, &r) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                };
                // No core files from the children that die on purpose.
                set(libc::RLIMIT_CORE, 0)?;
                match limit {
                    Some(bytes) => set(libc::RLIMIT_AS, bytes),
                    None => Ok(()),
                }
            });
        }
        let start = std::time::Instant::now();
        let out = cmd.output().expect("run the test binary as a child");
        let c = Child {
            name,
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        let limit = limit.map_or("none".into(), |l| format!("{} MiB", l >> 20));
        println!(
            "child {name} (RLIMIT_AS {limit}) {} after {:.2?}",
            c.how(),
            start.elapsed()
        );
        c
    }

    /// The exit status in words: an abort (a failed allocation) is signal
    /// 6, which a shell reports as status 134.
    fn how(&self) -> String {
        match (self.status.code(), self.status.signal()) {
            (Some(c), _) => format!("exited with status {c}"),
            (_, Some(6)) => "was killed by signal 6 (SIGABRT, shell status 134: an allocation \
                             failed and the process aborted)"
                .into(),
            (_, Some(7)) => "was killed by signal 7 (SIGBUS, shell status 135)".into(),
            (_, Some(s)) => format!("was killed by signal {s}"),
            _ => format!("ended with {:?}", self.status),
        }
    }

    /// Everything the child printed, for failure messages.
    fn output(&self) -> String {
        format!(
            "--- stdout ---\n{}--- stderr ---\n{}",
            self.stdout, self.stderr
        )
    }

    /// Asserts that the child ran its test and the test passed.
    fn assert_passed(&self) {
        assert!(
            self.status.success(),
            "child {} {}\n{}",
            self.name,
            self.how(),
            self.output()
        );
        assert!(
            self.stdout.contains("test result: ok. 1 passed"),
            "child {} did not run its test\n{}",
            self.name,
            self.output()
        );
    }

    /// The child's peak resident set in KiB, as it printed it.
    fn peak_rss_kib(&self) -> i64 {
        self.value("peak_rss_kib").parse().unwrap()
    }

    /// The child's memory figures, for the parent's own output.
    fn memory(&self) -> String {
        format!(
            "peak RSS {} KiB, peak address space {} KiB, anonymous memory at the end {} KiB",
            self.value("peak_rss_kib"),
            self.value("peak_vm_kib"),
            self.value("anon_kib")
        )
    }

    /// The value the child printed as `key value`.
    fn value(&self, key: &str) -> &str {
        self.stdout
            .lines()
            .find_map(|l| Some(l.split_once(&format!("{MARK}{key} "))?.1))
            .unwrap_or_else(|| panic!("child {} printed no {key}\n{}", self.name, self.output()))
    }
}

/// The files given to this child, or `None` when the test runs on its own
/// (`cargo test -- --ignored`): it then has nothing to do.
fn child_files() -> Option<Vec<PathBuf>> {
    let files = std::env::var_os(FILES_ENV);
    if files.is_none() {
        println!("runs only as a child of another test of this file");
    }
    Some(std::env::split_paths(&files?).collect())
}

/// A figure of /proc/self/status, in KiB: `VmHWM` (peak resident set),
/// `VmPeak` (peak address space), `RssAnon` (anonymous memory now).
///
/// The peak resident set is `VmHWM`, not `getrusage`'s `ru_maxrss`, which
/// keeps the high-water mark of the process image before `execve`: a copy
/// of the parent, whose fixtures weigh tens of MiB.
fn status_kib(field: &str) -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    line.trim().trim_end_matches(" kB").parse().unwrap()
}

/// Prints the outcome of an open as `open Ok` or `open Err <message>`, for
/// the parent, and the memory figures.
fn report_open(kvm: &kvm::Result<kvm::Kvm>) {
    match kvm {
        Ok(k) => println!("{MARK}open Ok ({})", k.backend()),
        Err(e) => println!("{MARK}open Err {e}"),
    }
    for (key, field) in [
        ("peak_rss_kib", "VmHWM"),
        ("peak_vm_kib", "VmPeak"),
        ("anon_kib", "RssAnon"),
    ] {
        println!("{MARK}{key} {}", status_kib(field));
    }
}

/// Writes `head`, a hole of `hole` bytes, then `tail` to `path`.
fn write_with_hole(path: &Path, head: &[u8], hole: u64, tail: &[u8]) {
    let mut f = File::create(path).unwrap();
    f.write_all(head).unwrap();
    f.seek(SeekFrom::Current(hole as i64)).unwrap();
    f.write_all(tail).unwrap();
    f.set_len(head.len() as u64 + hole + tail.len() as u64)
        .unwrap();
}

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fn le64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

// ---------------------------------------------------------------------
// 1. A minidump whose bitmap claims 1.5 GiB.

/// An amd64 minidump v3 whose bitmap is 1.5 GiB long: the real bitmap,
/// then zeros (a hole) up to `bitmapsize`, then the page map and pages,
/// moved along. A valid dump: the extra bits are clear.
fn minidump_with_huge_bitmap(path: &Path) {
    let d = machine().minidump(3).bytes;
    // struct minidumphdr (arch/minidump_amd64.rs): msgbufsize at 28,
    // bitmapsize at 32; the bitmap follows the header page, the message
    // buffer (rounded up) and the dump_avail page.
    let msgbufsize = u64::from(le32(&d, 28));
    let bitmapsize = u64::from(le32(&d, 32));
    let bitmap_end = (2 * PAGE + msgbufsize.next_multiple_of(PAGE) + bitmapsize) as usize;
    let mut head = d[..bitmap_end].to_vec();
    head[32..36].copy_from_slice(&u32::try_from(CLAIM).unwrap().to_le_bytes());
    write_with_hole(path, &head, CLAIM - bitmapsize, &d[bitmap_end..]);
}

/// Old behaviour: open copied the whole bitmap and built one 8-byte rank
/// per 8-byte word: 3 GiB of allocations for a 1.5 GiB bitmap. Under
/// [`ROOMY_AS`], where the file maps, the child aborted (signal 6); under
/// [`SMALL_AS`] the open failed with "Cannot allocate memory", the file not
/// being mappable. Now the index follows the pages the dump holds (one
/// entry per 4096-bit block, copies only of blocks with a bit set), and a
/// file that cannot be mapped is read with `pread`: the dump opens under
/// either limit, reads `version`, and the peak resident set stays small
/// when nothing is mapped.
#[test]
fn huge_minidump_bitmap_under_a_limit() {
    let s = Scratch::new("limits-bitmap");
    let kernel = s.file("kernel", &machine().kernel());
    let core = s.path().join("core");
    minidump_with_huge_bitmap(&core);
    for limit in [ROOMY_AS, SMALL_AS] {
        let c = Child::run("child_open_bitmap", &[&kernel, &core], Some(limit), &[]);
        c.assert_passed();
        println!("  open {}; {}", c.value("open"), c.memory());
        assert!(c.value("open").starts_with("Ok"), "{}", c.output());
        // Read with pread (SMALL_AS), the peak resident set is the index
        // and the buffers; mapped (ROOMY_AS), it also counts the bitmap's
        // file pages as the index scans them (1.5 GiB), so only the
        // anonymous memory the handle holds is checked there.
        if limit == SMALL_AS {
            let rss = c.peak_rss_kib();
            assert!(rss < MAX_RSS_KIB, "peak RSS {rss} KiB\n{}", c.output());
        }
        let anon: i64 = c.value("anon_kib").parse().unwrap();
        assert!(anon < MAX_RSS_KIB, "anonymous memory {anon} KiB");
    }
}

/// Runs as a child of [`huge_minidump_bitmap_under_a_limit`]: opens the
/// dump, reports, and reads `version`.
#[test]
#[ignore]
fn child_open_bitmap() {
    let Some(files) = child_files() else { return };
    let kvm = kvm::Kvm::open(&files[0], &files[1]);
    report_open(&kvm);
    if let Ok(kvm) = kvm {
        let mut buf = vec![0u8; amd64::VERSION.len()];
        kvm.read_exact(va::VERSION, &mut buf).unwrap();
        assert_eq!(buf, amd64::VERSION);
    }
}

// ---------------------------------------------------------------------
// 2. A kernel whose .symtab claims 1.5 GiB.

/// The kernel image with its `.symtab` moved to a 1.5 GiB hole at the end
/// of the file: 64 Mi symbols, all zero (no name), `sh_link` still naming
/// `.strtab`.
fn kernel_with_huge_symtab(path: &Path) {
    let mut k = machine().kernel();
    // ELF64: e_shoff at 0x28, e_shentsize at 0x3a, e_shnum at 0x3c; in a
    // section header sh_type at 4, sh_offset at 24, sh_size at 32.
    let shoff = le64(&k, 0x28) as usize;
    let shentsize = usize::from(u16::from_le_bytes([k[0x3a], k[0x3b]]));
    let shnum = usize::from(u16::from_le_bytes([k[0x3c], k[0x3d]]));
    let sh = (0..shnum)
        .map(|i| shoff + i * shentsize)
        .find(|&sh| le32(&k, sh + 4) == object::elf::SHT_SYMTAB)
        .expect("the fixture kernel has a .symtab");
    let at = (k.len() as u64).next_multiple_of(PAGE);
    k[sh + 24..sh + 32].copy_from_slice(&at.to_le_bytes());
    k[sh + 32..sh + 40].copy_from_slice(&CLAIM.to_le_bytes());
    let len = k.len() as u64;
    write_with_hole(path, &k, at - len + CLAIM, &[]);
}

/// Old behaviour: the symbol index was made with
/// `HashMap::with_capacity(table.len())`, about 5.5 GB for 64 Mi entries:
/// under [`ROOMY_AS`], where the kernel maps, the child aborted (signal
/// 6). Now the index grows with the named symbols, reserving fallibly: the
/// open fails cleanly under either limit (the table holds no `version`;
/// under [`SMALL_AS`] the kernel is read with `pread` and the table cannot
/// be read into memory), and without a limit it fails saying the kernel
/// has no symbol `version`.
#[test]
fn huge_symtab_under_a_limit() {
    let s = Scratch::new("limits-symtab");
    let kernel = s.path().join("kernel");
    kernel_with_huge_symtab(&kernel);
    let core = s.file("core", &machine().minidump(3).bytes);
    for limit in [ROOMY_AS, SMALL_AS] {
        let c = Child::run("child_open_symtab", &[&kernel, &core], Some(limit), &[]);
        c.assert_passed();
        let open = c.value("open");
        println!("  open {open}; {}", c.memory());
        // A clean error about the kernel, whatever its wording.
        let about_kernel = open.contains(&format!("kernel {}", kernel.display()));
        assert!(open.starts_with("Err ") && about_kernel, "{}", c.output());
        if limit == SMALL_AS {
            let rss = c.peak_rss_kib();
            assert!(rss < MAX_RSS_KIB, "peak RSS {rss} KiB\n{}", c.output());
        } else {
            assert!(open.contains("has no symbol `version`"), "{open}");
        }
    }
    // Without a limit, in this process: the table holds only empty entries.
    let e = kvm::Kvm::open(&kernel, &core).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "kernel {}: has no symbol `version`",
            kernel.display()
        )),
        "{e}"
    );
}

/// Runs as a child of [`huge_symtab_under_a_limit`]: opens and reports.
#[test]
#[ignore]
fn child_open_symtab() {
    let Some(files) = child_files() else { return };
    report_open(&kvm::Kvm::open(&files[0], &files[1]));
}

// ---------------------------------------------------------------------
// 3. A 1 TiB sparse core.

/// Old behaviour: open mapped the core or failed, and a 1 TiB mapping does
/// not fit a 1 GiB address space: "Cannot allocate memory". Now a core that
/// cannot be mapped is read with `pread`, and reads are those of the same
/// dump without the trailing hole (which the format ignores).
#[test]
fn terabyte_sparse_core_under_a_limit() {
    let s = Scratch::new("limits-tib");
    let m = machine();
    let kernel = s.file("kernel", &m.kernel());
    let dump = m.minidump(3).bytes;
    let small = s.file("small", &dump);
    let huge = s.file("huge", &dump);
    File::options()
        .write(true)
        .open(&huge)
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    let c = Child::run(
        "child_read_terabyte",
        &[&kernel, &huge, &small],
        Some(SMALL_AS),
        &[],
    );
    c.assert_passed();
    println!(
        "  open {}; {}; {} reads compared",
        c.value("open"),
        c.memory(),
        c.value("compared")
    );
    let rss = c.peak_rss_kib();
    assert!(rss < MAX_RSS_KIB, "peak RSS {rss} KiB\n{}", c.output());
}

/// Runs as a child of [`terabyte_sparse_core_under_a_limit`]: opens the
/// 1 TiB core and the same dump without its hole, and compares reads.
#[test]
#[ignore]
fn child_read_terabyte() {
    let Some(files) = child_files() else { return };
    let huge = kvm::Kvm::open(&files[0], &files[1]);
    report_open(&huge);
    let huge = huge.unwrap();
    let small = kvm::Kvm::open(&files[0], &files[2]).unwrap();
    let mut buf = vec![0u8; amd64::VERSION.len()];
    huge.read_exact(va::VERSION, &mut buf).unwrap();
    assert_eq!(buf, amd64::VERSION);
    // Reads over the kernel, kernel VM (pages of every size, holes, pages
    // outside RAM) and the direct map: same bytes, or the same error.
    let regions = [
        (va::TEXT, KERNSIZE),
        (va::K4, 24 * PAGE),
        (va::K2M, 2 << 20),
        (va::K1G, 16 << 20),
        (amd64::DMAP_MIN, 0x400_0000),
    ];
    let mut n = 0;
    fixture::random_reads(&regions, 300, |a, len| {
        let (mut x, mut y) = (vec![0u8; len as usize], vec![0u8; len as usize]);
        match (huge.read(a, &mut x), small.read(a, &mut y)) {
            (Ok(p), Ok(q)) => assert!(p == q && x == y, "{a:#x}+{len:#x}: reads differ"),
            (Err(e), Err(f)) => assert_eq!(e.to_string(), f.to_string(), "{a:#x}"),
            (p, q) => panic!("{a:#x}+{len:#x}: 1 TiB core {p:?}, small core {q:?}"),
        }
        n += 1;
    });
    println!("{MARK}compared {n}");
}

// ---------------------------------------------------------------------
// 4. A core truncated while open.

/// Kernel data whose page the truncation cuts in half: a page of the
/// 1 GiB kernel-VM mapping over RAM at 4 GiB, the last segment of the full
/// dump, so the page tables (at 48 MiB physical) survive the truncation.
/// Not `.data` (at 3 MiB): cutting the file there would also cut off the
/// page tables, and every read would fail to translate.
const CUT_VA: u64 = va::K1G + 0x40_0000;

/// Where in [`CUT_VA`]'s page the file now ends.
const CUT_AT: u64 = 0x800;

/// The C API (include/kvm.h), linked from the library's rlib.
mod c {
    use super::*;
    pub type Resolver = Option<unsafe extern "C" fn(*const c_char, *mut u64) -> c_int>;
    extern "C" {
        pub fn kvm_open2(
            execfile: *const c_char,
            corefile: *const c_char,
            flags: c_int,
            errbuf: *mut c_char,
            resolver: Resolver,
        ) -> *mut c_void;
        pub fn kvm_read2(kd: *mut c_void, kva: u64, buf: *mut c_void, len: usize) -> isize;
        pub fn kvm_close(kd: *mut c_void) -> c_int;
        pub fn kvm_geterr(kd: *mut c_void) -> *mut c_char;
    }
    /// `KVM_O_PREAD` (src/capi.rs).
    pub const KVM_O_PREAD: c_int = 0x1000_0000;
}

/// Cuts the core in the middle of [`CUT_VA`]'s page: finds the page in the
/// file (through a handle of its own) and truncates the file there.
fn truncate_core(kernel: &Path, core: &Path) {
    let locate = kvm::OpenOptions::new()
        .pread(true)
        .open(kernel, core)
        .unwrap();
    let span = locate.translate(CUT_VA).unwrap();
    let len = std::fs::metadata(core).unwrap().len();
    assert!(
        span.off.is_multiple_of(PAGE) && span.off + 2 * PAGE <= len,
        "{span:?}"
    );
    File::options()
        .write(true)
        .open(core)
        .unwrap()
        .set_len(span.off + CUT_AT)
        .unwrap();
    println!("{MARK}truncated at {:#x}", span.off + CUT_AT);
}

/// The model's bytes at `va` (mapped RAM).
fn model_bytes(m: &Amd64, va: u64, len: u64) -> Vec<u8> {
    m.ram.read(m.model_pa(va).unwrap(), len)
}

/// The reads every pread-mode child makes after the truncation, through
/// `read`: across the new end, a short count of the right bytes; past it,
/// in the same page or the next, 0 bytes.
fn check_short_reads(read: impl Fn(u64, &mut [u8]) -> Result<usize, String>) {
    let m = machine();
    let mut buf = vec![0u8; 0x2000];
    let n = read(CUT_VA + 0x100, &mut buf).unwrap();
    assert_eq!(n as u64, CUT_AT - 0x100, "a read across the new end");
    assert!(buf[..n] == model_bytes(&m, CUT_VA + 0x100, n as u64)[..]);
    for past in [CUT_VA + CUT_AT + 0x100, CUT_VA + PAGE, CUT_VA + 3 * PAGE] {
        assert_eq!(read(past, &mut buf[..64]), Ok(0), "a read at {past:#x}");
    }
    println!("{MARK}short reads ok");
}

/// Old behaviour: the core was always mapped, so after the truncation a
/// read of a page wholly past the new end raised `SIGBUS`, and one past the
/// new end within its last page returned zeros with the full count. Now,
/// in pread mode (the Rust option, the C flag, the environment variable),
/// reads are short; the mapped child still dies of `SIGBUS`: that is the
/// price of mapped reads, and why pread mode exists.
#[test]
fn core_truncated_while_open() {
    let s = Scratch::new("limits-truncate");
    let m = machine();
    let kernel = s.file("kernel", &m.kernel());
    let full = s.file("full", &m.full_dump(false).bytes);
    let core = |name: &str| {
        let p = s.path().join(name);
        std::fs::copy(&full, &p).unwrap();
        p
    };
    for (child, env) in [
        ("child_truncate_rust_pread", None),
        ("child_truncate_c_flag", None),
        ("child_truncate_c_env", Some(("KVM_PREAD", "1"))),
    ] {
        let c = Child::run(child, &[&kernel, &core(child)], None, env.as_slice());
        c.assert_passed();
        assert!(c.stdout.contains("short reads ok"), "{}", c.output());
    }
    let c = Child::run(
        "child_truncate_mapped",
        &[&kernel, &core("mapped")],
        None,
        &[],
    );
    println!("mapped child {}", c.how());
    assert_eq!(
        c.status.signal(),
        Some(libc::SIGBUS),
        "the mapped child {}, expected SIGBUS\n{}",
        c.how(),
        c.output()
    );
    // What it saw before: zeros with the full count past the new end.
    for seen in [
        "mapped: across the new end: the full count, zeros past the end",
        "mapped: 256 bytes past the new end in its page: all zero",
    ] {
        assert!(c.stdout.contains(seen), "{}", c.output());
    }
    assert!(
        c.stdout.contains("mapped: reading the next page"),
        "{}",
        c.output()
    );
}

/// Runs as a child of [`core_truncated_while_open`]: opens in pread mode,
/// truncates, reads.
#[test]
#[ignore]
fn child_truncate_rust_pread() {
    let Some(files) = child_files() else { return };
    let kvm = kvm::OpenOptions::new()
        .pread(true)
        .open(&files[0], &files[1])
        .unwrap();
    truncate_core(&files[0], &files[1]);
    check_short_reads(|a, buf| kvm.read(a, buf).map_err(|e| e.to_string()));
}

/// Opens with the C API (`flags`), truncates, checks the reads.
fn c_api_child(flags: c_int) {
    let Some(files) = child_files() else { return };
    let path = |p: &PathBuf| CString::new(p.as_os_str().as_bytes()).unwrap();
    let (k, core) = (path(&files[0]), path(&files[1]));
    let mut errbuf = [0 as c_char; 2048];
    // SAFETY: valid NUL-terminated names and a 2048-byte errbuf.
    let kd = unsafe { c::kvm_open2(k.as_ptr(), core.as_ptr(), flags, errbuf.as_mut_ptr(), None) };
    assert!(
        !kd.is_null(),
        "kvm_open2: {}",
        unsafe { CStr::from_ptr(errbuf.as_ptr()) }.to_string_lossy()
    );
    truncate_core(&files[0], &files[1]);
    check_short_reads(|a, buf| {
        // SAFETY: an open handle and a buffer of buf.len() bytes.
        let n = unsafe { c::kvm_read2(kd, a, buf.as_mut_ptr().cast(), buf.len()) };
        usize::try_from(n).map_err(|_| {
            unsafe { CStr::from_ptr(c::kvm_geterr(kd)) }
                .to_string_lossy()
                .into_owned()
        })
    });
    // SAFETY: closing the handle opened above, once.
    assert_eq!(unsafe { c::kvm_close(kd) }, 0);
}

/// Runs as a child of [`core_truncated_while_open`]: the C API with
/// `KVM_O_PREAD`.
#[test]
#[ignore]
fn child_truncate_c_flag() {
    c_api_child(libc::O_RDONLY | c::KVM_O_PREAD);
}

/// Runs as a child of [`core_truncated_while_open`]: the C API with flags
/// `O_RDONLY` and, from the parent, `KVM_PREAD=1` in the environment.
#[test]
#[ignore]
fn child_truncate_c_env() {
    if std::env::var_os(FILES_ENV).is_some() {
        assert_eq!(std::env::var("KVM_PREAD").as_deref(), Ok("1"));
    }
    c_api_child(libc::O_RDONLY);
}

/// Runs as a child of [`core_truncated_while_open`]: opens mapped, reads
/// the pages around the cut until the library reads them through the
/// mapping (a page's first reads use pread: src/cold.rs), truncates, reads
/// across the new end and past it within its page (the full count, zeros
/// past the end), then the next page, which raises `SIGBUS`.
#[test]
#[ignore]
fn child_truncate_mapped() {
    let Some(files) = child_files() else { return };
    let kvm = kvm::Kvm::open(&files[0], &files[1]).unwrap();
    for _ in 0..40 {
        for va in [CUT_VA, CUT_VA + PAGE] {
            kvm.read(va, &mut [0u8; 8]).unwrap();
        }
    }
    truncate_core(&files[0], &files[1]);
    let mut buf = vec![0xffu8; (PAGE - 0x100) as usize];
    let n = kvm.read(CUT_VA + 0x100, &mut buf);
    assert_eq!(n.ok(), Some(buf.len()), "mapped: across the new end");
    let (data, zeros) = buf.split_at((CUT_AT - 0x100) as usize);
    assert!(data == model_bytes(&machine(), CUT_VA + 0x100, data.len() as u64));
    assert!(zeros.iter().all(|&b| b == 0));
    println!("{MARK}mapped: across the new end: the full count, zeros past the end");
    let mut buf = [0xffu8; 256];
    let n = kvm.read(CUT_VA + CUT_AT + 0x100, &mut buf);
    assert_eq!(n.ok(), Some(256), "mapped: past the new end in its page");
    assert!(buf.iter().all(|&b| b == 0));
    println!("{MARK}mapped: 256 bytes past the new end in its page: all zero");
    println!("{MARK}mapped: reading the next page");
    let n = kvm.read(CUT_VA + PAGE, &mut buf);
    // Not reached where the mapping faults.
    println!("{MARK}mapped: no SIGBUS; the read gave {n:?}");
}
