//! Read-path benchmark: `cargo bench -- --quick` (short budgets), `cargo
//! bench` (longer ones), `cargo bench -- --quick --smoke` (CI: small dumps,
//! tiny budgets, every code path in a few seconds).
//!
//! Builds an amd64 ELF full dump and a v3 minidump, an i386 ELF full dump
//! and an i386 PAE minidump, each of 1 GiB of RAM (sparse files, cached in
//! `target/bench-dumps`; `--smoke` builds 64 MiB ones in
//! `target/bench-dumps/smoke`), then measures open time, random 8-byte and
//! 4 KiB reads per second, sequential 1 MiB throughput and the page walk.
//!
//! Cold and warm reads are compared in the same run with libkvm-style
//! readers (the top-level table, or a minidump's bitmap ranks and page map,
//! read at open; then one pread per uncached page-table level and one for
//! the data, as `lib/libkvm/kvm_amd64.c`, `kvm_i386.c`,
//! `kvm_minidump_amd64.c` and `kvm_minidump_i386.c` do), so results are
//! ratios on one machine. A counting allocator checks the read loop
//! performs no heap allocation.
//!
//! Run without `--bench` (as `cargo test --benches` does) it runs as a
//! test: the `--smoke` run.

#[path = "../tests/fixture/mod.rs"]
mod fixture;

use fixture::amd64::{Amd64, DMAP_MIN, KERNBASE, KERNLOAD, KERNSIZE};
use fixture::{write_sparse, Fill, PAGE};
use kvm::{Kvm, OpenOptions};
use std::alloc::{GlobalAlloc, Layout, System};
use std::fs::File;
use std::hint::black_box;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
}
#[global_allocator]
static A: Counting = Counting;

/// What a run measures and how long it may take.
struct Cfg {
    /// Small dumps in their own directory, tiny budgets.
    smoke: bool,
    /// Time per rate measurement.
    budget: Duration,
    /// Addresses in each random list of the rate measurements.
    n_random: usize,
    /// Reads per pass of the cold/warm comparison.
    cold_n: usize,
    /// Repetitions of the cold/warm comparison.
    cold_reps: usize,
    /// Top of the amd64 machines' main RAM range.
    amd64_top: u64,
    /// Top of the i386 machines' RAM (mapped at `BIG_VA` from 32 MiB).
    i386_top: u64,
    /// Where the dumps are kept.
    dir: PathBuf,
}

const USAGE: &str = "usage: cargo bench --bench read -- [--quick] [--smoke]
  --quick  short budgets (0.2 s per measurement instead of 1 s)
  --smoke  64 MiB-RAM dumps in target/bench-dumps/smoke and tiny budgets:
           every code path in a few seconds (CI)
libtest options cargo may pass (--bench, --nocapture, --color X, ...) are
accepted and ignored; without --bench the binary runs as a test (--smoke).";

impl Cfg {
    /// Parses the command line as a libtest binary would receive it.
    fn from_args() -> Cfg {
        let (mut quick, mut smoke, mut bench, mut list, mut ignored) =
            (false, false, false, false, false);
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let (flag, inline_value) = match arg.split_once('=') {
                Some((f, _)) if f.starts_with("--") => (f.to_owned(), true),
                _ => (arg.clone(), false),
            };
            match flag.as_str() {
                "--quick" => quick = true,
                "--smoke" => smoke = true,
                "--bench" => bench = true,
                "--list" => list = true,
                "--ignored" => ignored = true,
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                // libtest flags: accepted, meaningless here.
                "--test"
                | "--nocapture"
                | "--show-output"
                | "--exact"
                | "--include-ignored"
                | "-q"
                | "--quiet"
                | "--force-run-in-process"
                | "--report-time"
                | "--ensure-time"
                | "--shuffle"
                | "--no-capture" => {}
                // libtest options with a value.
                "--color" | "--format" | "--test-threads" | "--skip" | "--logfile" | "-Z"
                | "--shuffle-seed" => {
                    if !inline_value {
                        args.next();
                    }
                }
                _ if arg.starts_with('-') => {
                    eprintln!("read bench: unknown option {arg:?}\n{USAGE}");
                    std::process::exit(2);
                }
                _ => {
                    eprintln!("read bench: ignoring the filter {arg:?} (one benchmark, always run)")
                }
            }
        }
        if list {
            // libtest's listing: one benchmark (none among the ignored).
            if !ignored {
                println!("read: {}", if bench { "bench" } else { "test" });
            }
            std::process::exit(0);
        }
        if !bench && !smoke {
            println!("no --bench: running as a test, with --smoke");
            smoke = true;
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-dumps");
        let cfg = if smoke {
            Cfg {
                smoke,
                budget: Duration::from_millis(2),
                n_random: 1 << 12,
                cold_n: 2000,
                cold_reps: 3,
                amd64_top: 0x400_0000,
                i386_top: 0x200_0000 + (64 << 20),
                dir: root.join("smoke"),
            }
        } else {
            Cfg {
                smoke,
                budget: Duration::from_millis(if quick { 200 } else { 1000 }),
                n_random: 1 << 16,
                cold_n: 20_000,
                cold_reps: 5,
                amd64_top: 0x4000_0000 + 0x10_0000, // 1 GiB of RAM from 1 MiB
                i386_top: (1 << 30) + (32 << 20),
                dir: root,
            }
        };
        std::fs::create_dir_all(&cfg.dir).unwrap();
        cfg
    }
}

/// Runs `f` over `addrs` three times untimed (a page is read with pread,
/// then from the library's small cache, then through the mapping, whose
/// first touch faults: src/cold.rs), then repeatedly for about `budget`;
/// returns calls per second: the warm rate. (The cold and warm passes are
/// measured apart, by `cold_warm`.)
fn rate(budget: Duration, addrs: &[u64], mut f: impl FnMut(u64)) -> f64 {
    for _ in 0..3 {
        for &a in addrs {
            f(a);
        }
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for &a in addrs {
            f(a);
        }
        n += addrs.len() as u64;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Reads 8 bytes of kernel virtual memory; the readers compared.
trait Read8 {
    fn read8(&self, va: u64) -> u64;
}

impl Read8 for Kvm {
    #[inline]
    fn read8(&self, va: u64) -> u64 {
        let mut b = [0u8; 8];
        self.read(va, &mut b).unwrap();
        u64::from_le_bytes(b)
    }
}

fn le16(b: &[u8]) -> usize {
    u16::from_le_bytes(b[..2].try_into().unwrap()).into()
}
fn le32(b: &[u8]) -> u64 {
    u32::from_le_bytes(b[..4].try_into().unwrap()).into()
}
fn le64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().unwrap())
}

/// `len` bytes at `off`, with one pread.
fn pread_vec(file: &File, off: u64, len: u64) -> Vec<u8> {
    let mut v = vec![0u8; len as usize];
    file.read_exact_at(&mut v, off).unwrap();
    v
}

/// The 8 bytes at `off`, with one pread.
fn pread8(file: &File, off: u64) -> u64 {
    let mut b = [0u8; 8];
    file.read_exact_at(&mut b, off).unwrap();
    u64::from_le_bytes(b)
}

/// An ELF full dump read as libkvm reads one: the PT_LOAD headers at open,
/// then a physical address is found by a scan of the segments
/// (`_kvm_pa2off`) and read with pread.
struct ElfCore {
    file: File,
    /// PT_LOAD segments: (p_paddr, p_filesz, p_offset).
    segs: Vec<(u64, u64, u64)>,
}

impl ElfCore {
    fn open(core: &Path) -> ElfCore {
        let file = File::open(core).unwrap();
        let eh = pread_vec(&file, 0, 64);
        let is64 = eh[4] == 2; // EI_CLASS == ELFCLASS64
        let (phoff, phentsize, phnum) = if is64 {
            (le64(&eh[32..]), le16(&eh[54..]), le16(&eh[56..]))
        } else {
            (le32(&eh[28..]), le16(&eh[42..]), le16(&eh[44..]))
        };
        let ph = pread_vec(&file, phoff, (phentsize * phnum) as u64);
        let segs = ph
            .chunks(phentsize)
            .filter(|p| le32(p) == 1) // PT_LOAD
            .map(|p| {
                if is64 {
                    (le64(&p[24..]), le64(&p[32..]), le64(&p[8..]))
                } else {
                    (le32(&p[12..]), le32(&p[16..]), le32(&p[4..]))
                }
            })
            .collect();
        ElfCore { file, segs }
    }
    fn pa2off(&self, pa: u64) -> u64 {
        let s = self
            .segs
            .iter()
            .find(|s| pa >= s.0 && pa < s.0 + s.1)
            .expect("pa in dump");
        s.2 + (pa - s.0)
    }
    /// The 8 bytes at physical `pa`: one pread.
    fn phys8(&self, pa: u64) -> u64 {
        pread8(&self.file, self.pa2off(pa))
    }
}

/// libkvm's amd64 full-dump reader: the PML4 read at open, then one pread
/// per lower level and one for the data (`_amd64_vatop` + `kvm_read2`).
struct PreadFull {
    core: ElfCore,
    pml4: Vec<u64>,
}

impl PreadFull {
    /// Opens `core` whose PML4 is at physical `root` (libkvm finds it
    /// through `KPML4phys`; the bench takes it from the model).
    fn open(core: &Path, root: u64) -> PreadFull {
        let core = ElfCore::open(core);
        let page = pread_vec(&core.file, core.pa2off(root), PAGE);
        let pml4 = page.chunks(8).map(le64).collect();
        PreadFull { core, pml4 }
    }
    fn read(&self, va: u64, buf: &mut [u8]) {
        let f = 0x000f_ffff_ffff_f000;
        let pdpe = self
            .core
            .phys8((self.pml4[((va >> 39) & 511) as usize] & f) + ((va >> 30) & 511) * 8);
        let pa = if pdpe & 0x80 != 0 {
            (pdpe & 0x000f_ffff_c000_0000) + (va & 0x3fff_ffff)
        } else {
            let pde = self.core.phys8((pdpe & f) + ((va >> 21) & 511) * 8);
            if pde & 0x80 != 0 {
                (pde & 0x000f_ffff_ffe0_0000) + (va & 0x1f_ffff)
            } else {
                (self.core.phys8((pde & f) + ((va >> 12) & 511) * 8) & f) + (va & 0xfff)
            }
        };
        self.core
            .file
            .read_exact_at(buf, self.core.pa2off(pa))
            .unwrap();
    }
}

impl Read8 for PreadFull {
    fn read8(&self, va: u64) -> u64 {
        let mut b = [0u8; 8];
        self.read(va, &mut b);
        u64::from_le_bytes(b)
    }
}

/// libkvm's i386 non-PAE full-dump reader: the page directory read at
/// open, then one pread for a page table (none under a 4 MiB page) and one
/// for the data (`_i386_vatop`).
struct PreadI386Full {
    core: ElfCore,
    ptd: Vec<u64>,
}

impl PreadI386Full {
    /// Opens `core` whose page directory is at physical `root` (libkvm
    /// finds it through `IdlePTD_nopae`; the bench takes it from the model).
    fn open(core: &Path, root: u64) -> PreadI386Full {
        let core = ElfCore::open(core);
        let page = pread_vec(&core.file, core.pa2off(root), PAGE);
        let ptd = page.chunks(4).map(le32).collect();
        PreadI386Full { core, ptd }
    }
}

impl Read8 for PreadI386Full {
    fn read8(&self, va: u64) -> u64 {
        let pde = self.ptd[(va >> 22) as usize & 1023];
        assert!(pde & 1 != 0, "{va:#x} not mapped");
        let pa = if pde & 0x80 != 0 {
            (pde & 0xffc0_0000) | (va & 0x3f_ffff)
        } else {
            let pte = self
                .core
                .phys8((pde & 0xffff_f000) + ((va >> 12) & 1023) * 4);
            (pte & 0xffff_f000) | (va & 0xfff)
        };
        self.core.phys8(pa)
    }
}

/// The physical memory of a minidump as libkvm indexes it: dump_avail, the
/// page bitmap and a popcount per 64-bit word (`_kvm_pt_init`); a page's
/// file offset is then its rank among the dumped pages (`_kvm_pt_find`).
struct MiniPhys {
    file: File,
    /// dump_avail ranges (empty: bit N is physical page N).
    avail: Vec<(u64, u64)>,
    bitmap: Vec<u64>,
    /// Set bits before each bitmap word.
    ranks: Vec<u32>,
    sparse_off: u64,
}

impl MiniPhys {
    /// Reads dump_avail (`avail`: offset and size, size 0 if none) and
    /// the bitmap; the dumped pages start at `sparse_off`.
    fn open(file: File, avail: (u64, u64), bitmap: (u64, u64), sparse_off: u64) -> MiniPhys {
        let avail = pread_vec(&file, avail.0, avail.1)
            .chunks_exact(16)
            .map(|p| (le64(p), le64(&p[8..])))
            .take_while(|&r| r != (0, 0))
            .collect();
        let bitmap: Vec<u64> = pread_vec(&file, bitmap.0, bitmap.1)
            .chunks(8)
            .map(|w| {
                let mut b = [0u8; 8];
                b[..w.len()].copy_from_slice(w);
                u64::from_le_bytes(b)
            })
            .collect();
        let mut sum = 0u32;
        let ranks = bitmap
            .iter()
            .map(|w| {
                let r = sum;
                sum += w.count_ones();
                r
            })
            .collect();
        MiniPhys {
            file,
            avail,
            bitmap,
            ranks,
            sparse_off,
        }
    }
    /// The bitmap bit of `pa` (`_kvm_pa_bit_id`).
    fn bit(&self, pa: u64) -> u64 {
        if self.avail.is_empty() {
            return pa / PAGE;
        }
        let mut adj = 0;
        for &(s, e) in &self.avail {
            if pa >= s && pa < e {
                return pa / PAGE - s / PAGE + adj;
            }
            adj += e.div_ceil(PAGE) - s / PAGE;
        }
        panic!("{pa:#x} outside dump_avail")
    }
    /// The file offset of physical `pa`.
    fn pa2off(&self, pa: u64) -> u64 {
        let b = self.bit(pa);
        let (w, mask) = ((b / 64) as usize, 1u64 << (b % 64));
        assert!(self.bitmap[w] & mask != 0, "{pa:#x} not in the dump");
        let rank = u64::from(self.ranks[w]) + u64::from((self.bitmap[w] & (mask - 1)).count_ones());
        self.sparse_off + rank * PAGE + (pa & (PAGE - 1))
    }
    /// The 8 bytes at physical `pa`: one pread.
    fn phys8(&self, pa: u64) -> u64 {
        pread8(&self.file, self.pa2off(pa))
    }
}

/// The section offsets of a minidump: header page, message buffer,
/// dump_avail, bitmap, page map, pages; returns (dump_avail, bitmap, page
/// map) as (offset, size), and the offset of the pages.
fn mini_layout(msgbuf: u64, avail: u64, bitmap: u64, pmap: u64) -> [(u64, u64); 4] {
    let r = fixture::round_page;
    let avail_off = PAGE + r(msgbuf);
    let bitmap_off = avail_off + r(avail);
    let pmap_off = bitmap_off + r(bitmap);
    let sparse_off = pmap_off + r(pmap);
    [
        (avail_off, avail),
        (bitmap_off, bitmap),
        (pmap_off, pmap),
        (sparse_off, 0),
    ]
}

/// libkvm's amd64 minidump reader: header, dump_avail, bitmap ranks and
/// the page map (PDEs) read at open; a direct-map read is then one pread
/// for the data, a kernel-map read one more for a 4 KiB page's PTE
/// (`_amd64_minidump_vatop`).
struct PreadMiniAmd64 {
    phys: MiniPhys,
    kernbase: u64,
    dmap: (u64, u64),
    pdes: Vec<u64>,
}

impl PreadMiniAmd64 {
    fn open(core: &Path) -> PreadMiniAmd64 {
        let file = File::open(core).unwrap();
        let h = pread_vec(&file, 0, PAGE);
        assert!(h.starts_with(b"minidump FreeBSD/amd64\0"));
        let version = le32(&h[24..]);
        let avail = if version >= 3 { le32(&h[64..]) } else { 0 };
        let [avail, bitmap, pmap, sparse] =
            mini_layout(le32(&h[28..]), avail, le32(&h[32..]), le32(&h[36..]));
        let pdes = pread_vec(&file, pmap.0, pmap.1)
            .chunks(8)
            .map(le64)
            .collect();
        PreadMiniAmd64 {
            phys: MiniPhys::open(file, avail, bitmap, sparse.0),
            kernbase: le64(&h[40..]),
            dmap: (le64(&h[48..]), le64(&h[56..])),
            pdes,
        }
    }
}

impl Read8 for PreadMiniAmd64 {
    fn read8(&self, va: u64) -> u64 {
        let pa = if va >= self.dmap.0 && va < self.dmap.1 {
            va - self.dmap.0
        } else {
            let pde = self.pdes[((va - self.kernbase) >> 21) as usize];
            assert!(pde & 1 != 0, "{va:#x} not mapped");
            if pde & 0x80 != 0 {
                (pde & 0x000f_ffff_ffe0_0000) + (va & 0x1f_ffff)
            } else {
                let pte = self
                    .phys
                    .phys8((pde & 0x000f_ffff_ffff_f000) + ((va >> 12) & 511) * 8);
                (pte & 0x000f_ffff_ffff_f000) + (va & 0xfff)
            }
        };
        self.phys.phys8(pa)
    }
}

/// libkvm's i386 minidump reader: header, dump_avail, bitmap ranks and the
/// PTE map read at open; a read is then one pread for the data
/// (`_i386_minidump_vatop` and `_i386_minidump_vatop_pae`).
struct PreadMiniI386 {
    phys: MiniPhys,
    kernbase: u64,
    ptes: Vec<u64>,
    pae: bool,
}

impl PreadMiniI386 {
    fn open(core: &Path) -> PreadMiniI386 {
        let file = File::open(core).unwrap();
        let h = pread_vec(&file, 0, PAGE);
        assert!(h.starts_with(b"minidump FreeBSD/i386\0"));
        let version = le32(&h[24..]);
        let avail = if version >= 2 { le32(&h[48..]) } else { 0 };
        let [avail, bitmap, pmap, sparse] =
            mini_layout(le32(&h[28..]), avail, le32(&h[32..]), le32(&h[36..]));
        let pae = le32(&h[44..]) != 0;
        let ptes = pread_vec(&file, pmap.0, pmap.1)
            .chunks(if pae { 8 } else { 4 })
            .map(|e| if pae { le64(e) } else { le32(e) })
            .collect();
        PreadMiniI386 {
            phys: MiniPhys::open(file, avail, bitmap, sparse.0),
            kernbase: le32(&h[40..]),
            ptes,
            pae,
        }
    }
}

impl Read8 for PreadMiniI386 {
    fn read8(&self, va: u64) -> u64 {
        let pte = self.ptes[((va - self.kernbase) >> 12) as usize];
        assert!(pte & 1 != 0, "{va:#x} not mapped");
        let frame = if self.pae {
            0x000f_ffff_ffff_f000
        } else {
            0xffff_f000
        };
        self.phys.phys8((pte & frame) | (va & 0xfff))
    }
}

fn main() {
    let cfg = Cfg::from_args();
    let t = Instant::now();
    amd64(&cfg);
    i386(&cfg);
    other_architectures(&cfg);
    more_freebsd_backends(&cfg);
    linux(&cfg);
    spaces(&cfg);
    threads(&cfg);
    if cfg.smoke {
        println!("\nsmoke run done in {:.1?}", t.elapsed());
    }
}

/// Writes a dump sparse, under a temporary name first, so that an
/// interrupted run never leaves a partial file that looks cached.
fn write_dump(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("partial");
    write_sparse(&tmp, bytes);
    std::fs::rename(&tmp, path).unwrap();
}

/// `n` random 8-byte-aligned addresses in `[base, base + len - 8)`.
fn random_addrs(seed: u64, n: usize, base: u64, len: u64) -> Vec<u64> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            base + ((x % (len - 8)) & !7)
        })
        .collect()
}

/// Where a dump's memory is: a wide region (all of RAM through one map),
/// a narrow one (the kernel image) and the range for sequential reads.
struct Regions {
    wide_range: (u64, u64),
    wide: Vec<u64>,
    narrow: Vec<u64>,
    seq: Vec<u64>,
}

impl Regions {
    fn new(n: usize, wide: (u64, u64), narrow: (u64, u64)) -> Regions {
        Regions {
            wide_range: wide,
            wide: random_addrs(0x9e37_79b9_7f4a_7c15, n, wide.0, wide.1),
            narrow: random_addrs(0x2545_f491_4f6c_dd1d, n, narrow.0, narrow.1),
            seq: (0..wide.1 >> 20).map(|i| wide.0 + (i << 20)).collect(),
        }
    }
}

/// Opens a dump; reports the best of five opens (the cache warm) and the
/// first (which may wait for the disk).
fn open_timed(kernel: &Path, core: &Path) -> (Kvm, String) {
    let once = || {
        let t = Instant::now();
        let kvm = Kvm::open(kernel, core).unwrap();
        (t.elapsed(), kvm)
    };
    let (first, kvm) = once();
    let best = (0..5).map(|_| once().0).min().unwrap();
    (kvm, format!("{best:.2?} (first open {first:.2?})"))
}

/// Reads a file whole, so that its pages are in the page cache.
fn warm_page_cache(path: &Path) {
    let mut f = File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    while f.read(&mut buf).unwrap() > 0 {}
}

/// Minor page faults of this process so far.
fn minor_faults() -> u64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_minflt as u64
}

/// One reader's three passes over one list, on a handle opened for them.
#[derive(Clone, Copy, Default)]
struct Passes {
    /// Reads per second in passes 1 (cold), 2 and 3 (warm).
    rate: [f64; 3],
    /// Minor page faults during pass 1.
    faults: u64,
}

/// Opens a reader, reads `addrs` three times (each pass timed), closes it.
fn passes<R: Read8>(open: &impl Fn() -> R, addrs: &[u64]) -> Passes {
    let reader = open();
    let mut p = Passes::default();
    for i in 0..3 {
        let faults = minor_faults();
        let t = Instant::now();
        let mut sum = 0u64;
        for &a in addrs {
            sum = sum.wrapping_add(reader.read8(black_box(a)));
        }
        p.rate[i] = addrs.len() as f64 / t.elapsed().as_secs_f64();
        black_box(sum);
        if i == 0 {
            p.faults = minor_faults() - faults;
        }
    }
    drop(reader);
    p
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Cold and warm random 8-byte reads over `wide` (base, length) for this
/// library mapped, this library in pread mode, and the libkvm-style reader
/// `libkvm` opens: the page cache holds the files; each repetition opens
/// every reader afresh, in a rotating order, with its own address list;
/// pass 1 is cold, passes 2 and 3 warm. Prints medians of rates and of
/// the ratios within each repetition.
fn cold_warm<L: Read8>(
    cfg: &Cfg,
    kernel: &Path,
    core: &Path,
    wide: (u64, u64),
    libkvm: impl Fn() -> L,
) {
    warm_page_cache(kernel);
    warm_page_cache(core);
    let mapped = || Kvm::open(kernel, core).unwrap();
    let pread_mode = || OpenOptions::new().pread(true).open(kernel, core).unwrap();
    // Untimed: every reader once (first-use costs out of the way), and all
    // read the same bytes.
    {
        let (m, p, l) = (mapped(), pread_mode(), libkvm());
        for va in random_addrs(0x0123_4567_89ab_cdef, 2000, wide.0, wide.1) {
            let want = m.read8(va);
            assert_eq!(p.read8(va), want, "pread mode at {va:#x}");
            assert_eq!(l.read8(va), want, "libkvm-style reader at {va:#x}");
        }
    }
    for (pattern, structs) in [("random 8 B", false), ("8 B, 8 per 512 B struct", true)] {
        cold_warm_pattern(cfg, wide, pattern, structs, &mapped, &pread_mode, &libkvm);
    }
}

/// `n` addresses: `n / 8` random 512-byte-aligned "structures" in
/// `[base, base + len)`, each read 8 bytes at a time at 8 places, as a
/// debugger reads the fields of the structures it follows.
fn struct_addrs(seed: u64, n: usize, base: u64, len: u64) -> Vec<u64> {
    random_addrs(seed, n.div_ceil(8), base, len - 512)
        .into_iter()
        .flat_map(|a| (0..8).map(move |k| (a & !511) + k * 64))
        .take(n)
        .collect()
}

/// One address pattern of [`cold_warm`].
fn cold_warm_pattern<M: Read8, P: Read8, L: Read8>(
    cfg: &Cfg,
    wide: (u64, u64),
    pattern: &str,
    structs: bool,
    mapped: &impl Fn() -> M,
    pread_mode: &impl Fn() -> P,
    libkvm: &impl Fn() -> L,
) {
    let mut runs = Vec::new();
    for rep in 0..cfg.cold_reps {
        let mut row = [Passes::default(); 3];
        for k in 0..3 {
            let who = (rep + k) % 3;
            let seed = 0x9e37_79b9_7f4a_7c15u64.wrapping_mul((rep * 3 + who + 1) as u64);
            let addrs = if structs {
                struct_addrs(seed, cfg.cold_n, wide.0, wide.1)
            } else {
                random_addrs(seed, cfg.cold_n, wide.0, wide.1)
            };
            row[who] = match who {
                0 => passes(mapped, &addrs),
                1 => passes(pread_mode, &addrs),
                _ => passes(libkvm, &addrs),
            };
        }
        runs.push(row);
    }
    let med = |who: usize, pass: usize| median(runs.iter().map(|r| r[who].rate[pass]).collect());
    let ratio = |who: usize, pass: usize| {
        median(
            runs.iter()
                .map(|r| r[who].rate[pass] / r[2].rate[pass])
                .collect(),
        )
    };
    let faults = median(runs.iter().map(|r| r[0].faults as f64).collect());
    let n = if cfg.cold_n.is_multiple_of(1000) {
        format!("{}k", cfg.cold_n / 1000)
    } else {
        cfg.cold_n.to_string()
    };
    println!(
        "  cold {n} {pattern}, all RAM: kvm {:.2} M/s ({faults:.0} faults), kvm pread-mode {:.2} M/s, \
         libkvm-style pread {:.2} M/s (kvm/pread {:.2}x, pread-mode/pread {:.2}x; median of {})",
        med(0, 0) / 1e6,
        med(1, 0) / 1e6,
        med(2, 0) / 1e6,
        ratio(0, 0),
        ratio(1, 0),
        cfg.cold_reps
    );
    println!(
        "  warm, passes 2 | 3: kvm {:.2} | {:.2} M/s, kvm pread-mode {:.2} | {:.2} M/s, \
         libkvm-style pread {:.2} | {:.2} M/s (kvm/pread {:.2}x | {:.2}x)",
        med(0, 1) / 1e6,
        med(0, 2) / 1e6,
        med(1, 1) / 1e6,
        med(1, 2) / 1e6,
        med(2, 1) / 1e6,
        med(2, 2) / 1e6,
        ratio(0, 1),
        ratio(0, 2)
    );
}

/// Opens a dump and measures every read pattern on it, cold and warm reads
/// against the libkvm-style reader `libkvm` opens among them; returns the
/// handle.
fn measure<L: Read8>(
    cfg: &Cfg,
    name: &str,
    kernel: &Path,
    core: &Path,
    r: &Regions,
    libkvm: impl Fn() -> L,
) -> Kvm {
    let budget = cfg.budget;
    let size = std::fs::metadata(core).unwrap().len();
    let (kvm, open) = open_timed(kernel, core);
    println!(
        "\n{name} ({} MiB file, backend {:?})",
        size >> 20,
        kvm.backend()
    );
    println!("  open: {open}");
    cold_warm(cfg, kernel, core, r.wide_range, libkvm);
    let mut b8 = [0u8; 8];
    let before = ALLOCS.load(Relaxed);
    let r_wide = rate(budget, &r.wide, |a| {
        black_box(kvm.read(a, black_box(&mut b8)).unwrap());
    });
    let r_narrow = rate(budget, &r.narrow, |a| {
        black_box(kvm.read(a, black_box(&mut b8)).unwrap());
    });
    let allocs = ALLOCS.load(Relaxed) - before;
    let mut b4k = vec![0u8; 4096];
    let r_4k = rate(budget, &r.wide, |a| {
        black_box(kvm.read(a & !4095, black_box(&mut b4k)).unwrap());
    });
    let mut mib = vec![0u8; 1 << 20];
    let r_seq = rate(budget, &r.seq, |a| {
        black_box(kvm.read(a, black_box(&mut mib)).unwrap());
    });
    // Floors: the same loads straight from a mapping of the core, with no
    // translation; independent (overlapping) and each waiting for the one
    // before (as a page-table walk waits for each entry).
    let raw = unsafe { memmap2::Mmap::map(&File::open(core).unwrap()).unwrap() };
    let offs = |addrs: &[u64]| -> Vec<u64> {
        addrs
            .iter()
            .map(|&a| kvm.translate(a).unwrap().off)
            .collect()
    };
    let (wide_offs, narrow_offs) = (offs(&r.wide), offs(&r.narrow));
    let load = |o: u64| u64::from_le_bytes(raw[o as usize..o as usize + 8].try_into().unwrap());
    let f_wide = rate(budget, &wide_offs, |o| {
        black_box(load(o));
    });
    let mut last = 0u64;
    let d_wide = rate(budget, &wide_offs, |o| {
        last = load(o ^ u64::from(last == 0x5eed_5eed_5eed_5eed));
    });
    let f_narrow = rate(budget, &narrow_offs, |o| {
        black_box(load(o));
    });
    let (pages, secs) = walk_rate(&kvm);
    println!(
        "  random 8-byte reads, all RAM:      {:>6.2} M/s (raw loads: {:.2} M/s independent, {:.2} M/s dependent)",
        r_wide / 1e6,
        f_wide / 1e6,
        d_wide / 1e6
    );
    println!(
        "  random 8-byte reads, kernel image: {:>6.2} M/s (raw loads: {:.2} M/s)",
        r_narrow / 1e6,
        f_narrow / 1e6
    );
    println!("  heap allocations in those reads:   {allocs}");
    println!(
        "  random 4 KiB reads:                {:>6.2} M/s",
        r_4k / 1e6
    );
    println!(
        "  sequential 1 MiB reads:            {:>6.2} GiB/s",
        r_seq / 1024.0
    );
    println!(
        "  kvm_walk_pages:                    {:>6.2} M pages/s ({pages} pages in {:.1} ms)",
        pages as f64 / secs / 1e6,
        secs * 1e3
    );
    kvm
}

/// amd64: an ELF full dump and a v3 minidump of 1 GiB of RAM (64 MiB with
/// `--smoke`), every page dumped; reads through the direct map and the
/// kernel image; and the libkvm-style pread readers in the same run.
fn amd64(cfg: &Cfg) {
    let (dir, top) = (&cfg.dir, cfg.amd64_top);
    let (kernel, full, mini) = (dir.join("kernel"), dir.join("full"), dir.join("mini"));
    let mut m = Amd64::with_ram(2 << 20, Fill::Zero, top);
    if ![&kernel, &full, &mini].iter().all(|p| p.exists()) {
        let t = Instant::now();
        // Distinct contents cheaply: one word per page. Every page is in the
        // minidump too (as after a busy system's dump).
        for pa in (0x10_0000..top).step_by(PAGE as usize) {
            if !(0x300_0000..0x340_0000).contains(&pa) {
                m.ram.write(pa + 8, &pa.to_le_bytes());
            }
            m.extra_dumped.insert(pa);
        }
        std::fs::write(&kernel, m.kernel()).unwrap();
        write_dump(&full, &m.full_dump(false).bytes);
        write_dump(&mini, &m.minidump(3).bytes);
        println!(
            "amd64 {} MiB dumps written in {:.1?}",
            (top - 0x10_0000) >> 20,
            t.elapsed()
        );
    }
    let r = Regions::new(
        cfg.n_random,
        (DMAP_MIN + 0x10_0000, top - 0x20_0000),
        (KERNBASE + KERNLOAD, KERNSIZE),
    );
    let root = m.pt.root;
    let kvm = measure(cfg, "amd64 ELF full dump", &kernel, &full, &r, || {
        PreadFull::open(&full, root)
    });
    // libkvm's reader, warm, in the kernel image too.
    let base = PreadFull::open(&full, root);
    let (mut b8, mut check) = ([0u8; 8], [0u8; 8]);
    base.read(r.wide[0], &mut check);
    kvm.read(r.wide[0], &mut b8).unwrap();
    assert_eq!(check, b8, "baseline reads the same bytes");
    let budget = cfg.budget;
    let r_wide = rate(budget, &r.wide, |a| {
        black_box(kvm.read(a, black_box(&mut b8)).unwrap());
    });
    let p_wide = rate(budget, &r.wide, |a| base.read(a, &mut b8));
    let r_narrow = rate(budget, &r.narrow, |a| {
        black_box(kvm.read(a, black_box(&mut b8)).unwrap());
    });
    let p_narrow = rate(budget, &r.narrow, |a| base.read(a, &mut b8));
    println!(
        "  libkvm-style pread reader, 8-byte: {:.2} M/s all RAM, {:.2} M/s kernel image; \
         this library {:.1}x and {:.1}x faster in the same run",
        p_wide / 1e6,
        p_narrow / 1e6,
        r_wide / p_wide,
        r_narrow / p_narrow
    );
    drop((kvm, base));
    measure(cfg, "amd64 minidump v3", &kernel, &mini, &r, || {
        PreadMiniAmd64::open(&mini)
    });

    // Open time does not grow with the dump: a 64 MiB-RAM minidump.
    let (small, small_kernel) = (dir.join("small"), dir.join("small_kernel"));
    if !small.exists() || !small_kernel.exists() {
        let sm = Amd64::new(2 << 20, Fill::Zero);
        write_dump(&small, &sm.minidump(3).bytes);
        std::fs::write(&small_kernel, sm.kernel()).unwrap();
    }
    let (_, open) = open_timed(&small_kernel, &small);
    println!("\nopen of a 64 MiB-RAM amd64 minidump for comparison: {open}");
}

/// i386: a non-PAE ELF full dump and a PAE v2 minidump of a 12+ kernel with
/// 1 GiB of RAM (64 MiB with `--smoke`) mapped by superpages at `BIG_VA`.
fn i386(cfg: &Cfg) {
    use fixture::i386::{Mode, BIG_VA, I386, KERNSIZE as I386_KERNSIZE};
    let (dir, top) = (&cfg.dir, cfg.i386_top);
    for (name, mode, file) in [
        ("i386 ELF full dump (non-PAE)", Mode::NoPae, "i386-full"),
        ("i386 minidump v2 (PAE)", Mode::Pae, "i386-mini"),
    ] {
        let m = I386::with_big_ram(mode, top);
        let kernel = dir.join(format!("{file}-kernel"));
        let core = dir.join(file);
        if !kernel.exists() || !core.exists() {
            std::fs::write(&kernel, m.kernel()).unwrap();
            let d = if mode == Mode::NoPae {
                m.full_dump()
            } else {
                m.minidump(2)
            };
            write_dump(&core, &d.bytes);
        }
        // RAM from 32 MiB to `top` is at BIG_VA.
        let r = Regions::new(
            cfg.n_random,
            (BIG_VA, top - 0x200_0000),
            (m.va.text, I386_KERNSIZE),
        );
        if mode == Mode::NoPae {
            let root = m.pt.root;
            measure(cfg, name, &kernel, &core, &r, || {
                PreadI386Full::open(&core, root)
            });
        } else {
            measure(cfg, name, &kernel, &core, &r, || PreadMiniI386::open(&core));
        }
    }
}

/// Walks every page; returns the count and the seconds taken.
fn walk_rate(kvm: &Kvm) -> (u64, f64) {
    let t = Instant::now();
    let mut n = 0u64;
    kvm.walk_pages(|p| {
        black_box(p);
        n += 1;
        true
    })
    .unwrap();
    (n, t.elapsed().as_secs_f64())
}

/// arm64 (4 KiB and 16 KiB granules) and riscv minidumps of the standard
/// fixture machines (72-136 MiB of RAM): random 8-byte reads of the kernel
/// map and the direct map, and the page walk.
fn other_architectures(cfg: &Cfg) {
    use fixture::dmap::{DmapMachine, ARM64_16K, ARM64_4K, RISCV};
    let budget = cfg.budget;
    for (name, arch, version) in [
        ("arm64 4 KiB minidump v3", &ARM64_4K, 3),
        ("arm64 16 KiB minidump v3", &ARM64_16K, 3),
        ("riscv minidump v2", &RISCV, 2),
    ] {
        let m = DmapMachine::new(arch, Fill::Zero);
        let d = m.minidump(version);
        let (kernel, core) = (cfg.dir.join("dmap-kernel"), cfg.dir.join("dmap-core"));
        std::fs::write(&kernel, m.kernel()).unwrap();
        write_dump(&core, &d.bytes);
        let (kvm, open) = open_timed(&kernel, &core);
        // Readable addresses only: dumped pages through each map.
        let ps = arch.page_size();
        let mut kmap = Vec::new();
        let mut dmap = Vec::new();
        kvm.walk_pages(|p| {
            if p.offset.is_some() {
                let list = if p.kmap_vaddr != 0 {
                    &mut kmap
                } else {
                    &mut dmap
                };
                let va = if p.kmap_vaddr != 0 {
                    p.kmap_vaddr
                } else {
                    p.dmap_vaddr
                };
                list.extend((0..p.len.min(ps)).step_by(512).map(|o| va + o));
            }
            true
        })
        .unwrap();
        // Random order (Fisher-Yates with a fixed xorshift).
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for list in [&mut kmap, &mut dmap] {
            for i in (1..list.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                list.swap(i, (x % (i as u64 + 1)) as usize);
            }
        }
        let mut b8 = [0u8; 8];
        let r_kmap = rate(budget, &kmap, |a| {
            black_box(kvm.read(a, black_box(&mut b8)).unwrap());
        });
        let r_dmap = rate(budget, &dmap, |a| {
            black_box(kvm.read(a, black_box(&mut b8)).unwrap());
        });
        let (pages, secs) = walk_rate(&kvm);
        println!("\n{name} ({} MiB file)", d.bytes.len() >> 20);
        println!("  open: {open}");
        println!(
            "  random 8-byte reads, kernel map:   {:>6.2} M/s",
            r_kmap / 1e6
        );
        println!(
            "  random 8-byte reads, direct map:   {:>6.2} M/s",
            r_dmap / 1e6
        );
        println!(
            "  kvm_walk_pages:                    {:>6.2} M pages/s ({pages} pages)",
            pages as f64 / secs / 1e6
        );
    }
}

/// What [`dump_rates`] measures on one dump.
struct DumpRates {
    open: String,
    /// Random 8-byte reads per second over the bytes a page walk finds in
    /// the dump.
    r8: f64,
    /// Random page-aligned 4 KiB reads per second over the same pages.
    r4k: f64,
    /// Pages the walk reports, and pages per second.
    pages: u64,
    walk: f64,
    /// Heap allocations in the timed reads (must be 0).
    allocs: u64,
}

/// Opens a dump and measures random reads of what it holds: 8-byte reads
/// at 16 places in each of up to 4096 dumped pages (a 16 MiB working set,
/// the same for every dump, so rates compare), and 4 KiB reads of those
/// pages; the pages are those of the leaves its `kvm_walk_pages` reports
/// (by kernel-map address, else by direct-map address) that the dump
/// holds.
fn dump_rates(cfg: &Cfg, tag: &str, kernel: &[u8], core: &[u8]) -> DumpRates {
    let (kpath, cpath) = (
        cfg.dir.join(format!("{tag}-kernel")),
        cfg.dir.join(format!("{tag}-core")),
    );
    std::fs::write(&kpath, kernel).unwrap();
    write_dump(&cpath, core);
    rates_of(cfg, &kpath, &cpath)
}

/// [`dump_rates`] of dump files.
fn rates_of(cfg: &Cfg, kpath: &Path, cpath: &Path) -> DumpRates {
    let (kvm, open) = open_timed(kpath, cpath);
    let mut pages = Vec::new();
    kvm.walk_pages(|p| {
        let va = if p.kmap_vaddr != 0 {
            p.kmap_vaddr
        } else {
            p.dmap_vaddr
        };
        if p.offset.is_some() && va != 0 && p.len >= 4096 {
            pages.extend((0..p.len / 4096).map(|i| va + 4096 * i));
        }
        pages.len() < 1 << 18
    })
    .unwrap();
    // A large leaf may be only partly in the dump.
    pages.retain(|&va| kvm.translate(va).is_ok_and(|s| s.len >= 4096));
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut shuffle = |list: &mut Vec<u64>| {
        for i in (1..list.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            list.swap(i, (x % (i as u64 + 1)) as usize);
        }
    };
    shuffle(&mut pages);
    pages.truncate(4096);
    let mut bytes: Vec<u64> = pages
        .iter()
        .flat_map(|&va| (0..4096).step_by(256).map(move |o| va + o + 8))
        .collect();
    shuffle(&mut bytes);
    let mut b8 = [0u8; 8];
    let mut b4k = vec![0u8; 4096];
    let before = ALLOCS.load(Relaxed);
    let r8 = rate(cfg.budget, &bytes, |a| {
        black_box(kvm.read(a, black_box(&mut b8)).unwrap());
    });
    let r4k = rate(cfg.budget, &pages, |a| {
        black_box(kvm.read(a, black_box(&mut b4k)).unwrap());
    });
    let allocs = ALLOCS.load(Relaxed) - before;
    let (pages, secs) = walk_rate(&kvm);
    DumpRates {
        open,
        r8,
        r4k,
        pages,
        walk: pages as f64 / secs,
        allocs,
    }
}

/// The 32-bit and big-endian FreeBSD backends (arm, mips, powerpc64,
/// powerpc), each against the amd64 v3 minidump measured the same way in
/// the same run: random 8-byte and 4 KiB reads of the dumped pages and the
/// page walk.
fn more_freebsd_backends(cfg: &Cfg) {
    use fixture::arm::{Arm, Pmap};
    use fixture::mips::{Abi, Flavour, Mips};
    use fixture::powerpc::{Config, Ppc64Machine, VirtMachine};
    let ram = if cfg.smoke { 64 << 20 } else { 256 << 20 };
    // The amd64 v3 minidump amd64() wrote, all of its RAM dumped.
    let reference = rates_of(cfg, &cfg.dir.join("kernel"), &cfg.dir.join("mini"));
    let mut dumps: Vec<(String, Vec<u8>, Vec<u8>)> = Vec::new();
    for pmap in [Pmap::V4, Pmap::V6] {
        let m = Arm::new(pmap);
        dumps.push((
            format!("arm {pmap:?} full"),
            m.kernel(),
            m.full_dump(true).bytes,
        ));
        dumps.push((
            format!("arm {pmap:?} minidump v2"),
            m.kernel(),
            m.minidump(2).bytes,
        ));
    }
    for (abi, be) in [(Abi::O32, true), (Abi::N64, true), (Abi::N64, false)] {
        let f = Flavour::new(abi, be);
        let m = Mips::with_big_ram(f, f.big_ram() + ram);
        dumps.push((
            format!("{} v2", f.backend()),
            m.kernel(),
            m.minidump(2).bytes,
        ));
    }
    for big_endian in [true, false] {
        let cfg64 = Config {
            big_endian,
            phyp: false,
            relocated: true,
            ptegs_log2: if cfg.smoke { 11 } else { 17 },
        };
        let top = if cfg.smoke { 0x0800_0000 } else { 1 << 30 };
        let m = Ppc64Machine::with_ram(cfg64, &[(0, top)], Fill::Zero);
        let name = if big_endian {
            "powerpc64"
        } else {
            "powerpc64le"
        };
        dumps.push((
            format!("{name} minidump v2"),
            m.kernel(),
            m.minidump(2).bytes,
        ));
    }
    let p = VirtMachine::new(false, true);
    dumps.push(("powerpc ELF".into(), p.kernel(), p.elf_dump(false)));
    println!(
        "\nMore FreeBSD backends (ratios against the amd64 v3 minidump in this run: \
         {:.2} M/s 8 B, {:.0} k/s 4 KiB; walk {:.2} M pages/s)",
        reference.r8 / 1e6,
        reference.r4k / 1e3,
        reference.walk / 1e6
    );
    println!(
        "  {:<24} {:>7} {:>9} {:>13} {:>13} {:>16} {:>6}",
        "dump", "file", "open", "8 B reads", "4 KiB reads", "walk", "allocs"
    );
    for (i, (name, kernel, core)) in dumps.iter().enumerate() {
        let r = dump_rates(cfg, &format!("more-{i}"), kernel, core);
        println!(
            "  {:<24} {:>5}Ki {:>9} {:>6.2} M/s {:.2}x {:>5.0} k/s {:.2}x {:>5.2} M/s {:>6} {:>6}",
            name,
            core.len() >> 10,
            r.open,
            r.r8 / 1e6,
            r.r8 / reference.r8,
            r.r4k / 1e3,
            r.r4k / reference.r4k,
            r.walk / 1e6,
            r.pages,
            r.allocs
        );
        assert_eq!(r.allocs, 0, "{name}: reads allocated");
    }
}

/// Linux x86-64 (the fixture's KASLR'd 64 MiB machine): an ELF vmcore
/// against the FreeBSD amd64 full dump of the same RAM size, read in the
/// same run through the direct map; kdump-compressed files (zlib, lzo,
/// snappy, zstd) with random 8-byte reads over a working set that fits the
/// page cache and over all RAM, sequential 1 MiB reads, and the codec's own
/// rate on the same pages as the reference; and open times.
fn linux(cfg: &Cfg) {
    use fixture::kdump::{compress, Codec, Kdump};
    use fixture::linux::{ram_pages, LinuxX86, Style};
    let budget = cfg.budget;
    let m = LinuxX86::new(
        false,
        0x1c60_0000,
        0x240_0000,
        0xffff_9a40_0000_0000,
        Fill::Zero,
    );
    // Distinct, half-compressible pages: a counter word and text.
    let mut m = m;
    for pa in ram_pages(&m.ram) {
        if !(0x300_0000..0x340_0000).contains(&pa) && pa >= 0x10_0000 {
            let mut page = [0u8; 256];
            page[..8].copy_from_slice(&pa.to_le_bytes());
            page[8..]
                .iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b = b"kernel data "[i % 12]);
            m.ram.write(pa + 512, &page);
        }
    }
    let dir = &cfg.dir;
    let elf = dir.join("linux-elf");
    write_dump(&elf, &m.elf_vmcore(Style::Kdump));
    let open = |core: &Path| OpenOptions::new().open_dump(None, core).unwrap();
    let kvm = open(&elf);
    let dmap = (m.page_offset + 0x10_0000, 0x2f0_0000);
    let wide = random_addrs(0x9e37_79b9_7f4a_7c15, cfg.n_random, dmap.0, dmap.1);
    let mut b8 = [0u8; 8];
    let r_elf = rate(budget, &wide, |a| {
        black_box(kvm.read(a, black_box(&mut b8)).unwrap());
    });
    // The FreeBSD amd64 full dump of the same 64 MiB, read the same way.
    let bsd = Amd64::new(2 << 20, Fill::Zero);
    let (bk, bc) = (dir.join("linux-cmp-kernel"), dir.join("linux-cmp-full"));
    std::fs::write(&bk, bsd.kernel()).unwrap();
    write_dump(&bc, &bsd.full_dump(false).bytes);
    let bkvm = Kvm::open(&bk, &bc).unwrap();
    let bwide = random_addrs(
        0x9e37_79b9_7f4a_7c15,
        cfg.n_random,
        DMAP_MIN + 0x10_0000,
        0x2f0_0000,
    );
    let r_bsd = rate(budget, &bwide, |a| {
        black_box(bkvm.read(a, black_box(&mut b8)).unwrap());
    });
    println!("\nLinux x86-64 ELF vmcore (64 MiB RAM, KASLR, 4-level)");
    println!(
        "  random 8-byte reads, direct map:   {:>6.2} M/s; FreeBSD amd64 full dump of the same \
         size {:.2} M/s: ratio {:.2}",
        r_elf / 1e6,
        r_bsd / 1e6,
        r_elf / r_bsd
    );
    // A working set of 256 pages (1 MiB, inside the 4 MiB page cache).
    let hot = random_addrs(0x2545_f491_4f6c_dd1d, cfg.n_random, dmap.0, 1 << 20);
    let page = m.ram.page(0x100_0000);
    for codec in [Codec::Zlib, Codec::Lzo, Codec::Snappy, Codec::Zstd] {
        let path = dir.join(format!("linux-kdump-{codec:?}"));
        let w = Kdump::new(&m.ram)
            .codec(codec)
            .vmcoreinfo(&m.vmcoreinfo())
            .write();
        write_dump(&path, &w.bytes);
        let t = Instant::now();
        let kvm = open(&path);
        let opened = t.elapsed();
        let r_hot = rate(budget, &hot, |a| {
            black_box(kvm.read(a, black_box(&mut b8)).unwrap());
        });
        let r_wide = rate(budget, &wide, |a| {
            black_box(kvm.read(a, black_box(&mut b8)).unwrap());
        });
        let mut mib = vec![0u8; 1 << 20];
        let seq: Vec<u64> = (0..0x2f).map(|i| dmap.0 + (i << 20)).collect();
        let r_seq = rate(budget, &seq, |a| {
            black_box(kvm.read(a, black_box(&mut mib)).unwrap());
        });
        // The codec alone on a page of the same kind: the reference for
        // sequential reads.
        let flag = codec.flag(0);
        let packed = compress(flag, &page);
        let mut out = vec![0u8; 4096];
        let r_codec = rate(budget, &[0u64; 64], |_| {
            black_box(decompress(flag, &packed, &mut out));
        });
        println!(
            "\nLinux x86-64 kdump-compressed, {codec:?} ({} MiB file)",
            w.bytes.len() >> 20
        );
        println!("  open: {opened:.2?}");
        println!(
            "  random 8-byte reads, 1 MiB working set: {:>6.2} M/s",
            r_hot / 1e6
        );
        println!(
            "  random 8-byte reads, all RAM:           {:>6.2} M/s",
            r_wide / 1e6
        );
        println!(
            "  sequential 1 MiB reads:                 {:>6.0} MiB/s; the codec alone {:.0} MiB/s \
             (ratio {:.2})",
            r_seq,
            r_codec * 4096.0 / (1 << 20) as f64,
            r_seq / (r_codec * 4096.0 / (1 << 20) as f64)
        );
    }
}

/// Decompresses one page as the library's codecs do (the reference rate).
fn decompress(flag: u32, input: &[u8], out: &mut [u8]) -> usize {
    use fixture::kdump::{LZO, SNAPPY, ZLIB, ZSTD};
    match flag {
        ZLIB => {
            let mut d = flate2::Decompress::new(true);
            d.decompress(input, out, flate2::FlushDecompress::Finish)
                .unwrap();
            d.total_out() as usize
        }
        SNAPPY => snap::raw::Decoder::new().decompress(input, out).unwrap(),
        ZSTD => {
            let mut d = ruzstd::decoding::FrameDecoder::new();
            d.decode_from_to(input, out).unwrap().1
        }
        LZO => lzokay_native::decompress_all(input, Some(out.len()))
            .unwrap()
            .len(),
        _ => 0,
    }
}

/// Spaces over the amd64 host dump of the guest fixture (its ELF full
/// dump): random 8-byte reads of the same host pages through the host
/// handle (its direct map), through one layer (the VMM process), through
/// guest VA → EPT → host (two layers) and through guest VA → memory slots
/// → VMM process → host (three), each pass over one list of guest pages in
/// random order; then the guest's page walk. The goal: three layers within
/// 3x of one.
fn spaces(cfg: &Cfg) {
    use fixture::guest::{GuestKind, Lab};
    use kvm::{AddressSpace, Base, Paging, Range, Space};
    let lab = Lab::builder().ept(4).guest(GuestKind::X86_64).build();
    let d = lab.host.full_dump(false);
    let (kernel, core) = (cfg.dir.join("guest-kernel"), cfg.dir.join("guest-core"));
    std::fs::write(&kernel, lab.host.kernel()).unwrap();
    write_dump(&core, &d.bytes);
    let kvm = Kvm::open(&kernel, &core).unwrap();
    let vmm = Space::new(&kvm, Base::Phys, Paging::X86_64 { cr3: lab.vmm_cr3 }).unwrap();
    let ranges = |r: &[fixture::guest::Range]| {
        r.iter()
            .map(|r| Range {
                addr: r.addr,
                len: r.len,
                target: r.target,
            })
            .collect()
    };
    let slots = Space::new(&vmm, Base::Virt, Paging::Linear(ranges(&lab.slots))).unwrap();
    let eptp = lab.ept4.as_ref().unwrap().root;
    let ept = Space::new(&kvm, Base::Phys, Paging::Ept { eptp }).unwrap();
    let cr3 = lab.guest("x86-64").root_reg;
    let guest3 = Space::new(&slots, Base::Virt, Paging::X86_64 { cr3 }).unwrap();
    let guest2 = Space::new(&ept, Base::Virt, Paging::X86_64 { cr3 }).unwrap();
    // The guest pages readable both ways, 8 addresses a page, and where
    // each lies for the VMM and for the host.
    let mut b8 = [0u8; 8];
    let mut pages = Vec::new();
    guest3
        .walk_pages(&mut |p| {
            for va in (p.kmap_vaddr..p.kmap_vaddr + p.len).step_by(4096).take(512) {
                if guest3.read(va, &mut b8).is_ok() && guest2.read(va, &mut b8).is_ok() {
                    pages.push(va);
                }
            }
            true
        })
        .unwrap();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut gva: Vec<u64> = pages
        .iter()
        .flat_map(|&p| (0..8).map(move |i| p + i * 512))
        .collect();
    for i in (1..gva.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        gva.swap(i, j);
    }
    let vmm_va: Vec<u64> = gva
        .iter()
        .map(|&va| slots.vtop(guest3.vtop(va).unwrap()).unwrap())
        .collect();
    let host_va: Vec<u64> = vmm_va
        .iter()
        .map(|&va| DMAP_MIN + vmm.vtop(va).unwrap())
        .collect();
    // A working set within every layer's TLB (256 pages): hits only.
    let hot = |list: &[u64]| -> Vec<u64> {
        let keep: std::collections::BTreeSet<u64> = gva.iter().map(|a| a >> 12).take(256).collect();
        gva.iter()
            .zip(list)
            .filter(|(g, _)| keep.contains(&(*g >> 12)))
            .map(|(_, a)| *a)
            .collect()
    };
    let (hot_host, hot_vmm, hot_g) = (hot(&host_va), hot(&vmm_va), hot(&gva));
    let budget = cfg.budget;
    let allocs = ALLOCS.load(Relaxed);
    let r_host = rate(budget, &host_va, |a| {
        black_box(kvm.read(a, black_box(&mut b8)).unwrap());
    });
    let r1 = rate(budget, &vmm_va, |a| {
        black_box(vmm.read(a, black_box(&mut b8)).unwrap());
    });
    let r2 = rate(budget, &gva, |a| {
        black_box(guest2.read(a, black_box(&mut b8)).unwrap());
    });
    let r3 = rate(budget, &gva, |a| {
        black_box(guest3.read(a, black_box(&mut b8)).unwrap());
    });
    let h_host = rate(budget, &hot_host, |a| {
        black_box(kvm.read(a, black_box(&mut b8)).unwrap());
    });
    let h1 = rate(budget, &hot_vmm, |a| {
        black_box(vmm.read(a, black_box(&mut b8)).unwrap());
    });
    let h3 = rate(budget, &hot_g, |a| {
        black_box(guest3.read(a, black_box(&mut b8)).unwrap());
    });
    let allocated = ALLOCS.load(Relaxed) - allocs;
    // Misses: a fresh stack per pass, every page read once.
    let mut fresh = |n: usize| {
        let t = Instant::now();
        for _ in 0..n {
            let vmm = Space::new(&kvm, Base::Phys, Paging::X86_64 { cr3: lab.vmm_cr3 }).unwrap();
            let slots = Space::new(&vmm, Base::Virt, Paging::Linear(ranges(&lab.slots))).unwrap();
            let g = Space::new(&slots, Base::Virt, Paging::X86_64 { cr3 }).unwrap();
            for &p in &pages {
                black_box(g.read(p, black_box(&mut b8)).unwrap());
            }
        }
        t.elapsed().as_secs_f64() / (n * pages.len()) as f64
    };
    let miss3 = fresh(if cfg.smoke { 2 } else { 20 });
    let (walked, secs) = {
        let t = Instant::now();
        let mut n = 0u64;
        guest3
            .walk_pages(&mut |p| {
                black_box(p);
                n += 1;
                true
            })
            .unwrap();
        (n, t.elapsed().as_secs_f64())
    };
    println!(
        "\nspaces over the amd64 host full dump ({} guest pages, {} addresses)",
        pages.len(),
        gva.len()
    );
    println!("  random 8-byte reads of the same pages:");
    println!(
        "    host handle (direct map):            {:>6.2} M/s",
        r_host / 1e6
    );
    println!(
        "    1 layer (VMM process):               {:>6.2} M/s",
        r1 / 1e6
    );
    println!(
        "    2 layers (guest VA -> EPT -> host):  {:>6.2} M/s ({:.2}x the 1-layer time)",
        r2 / 1e6,
        r1 / r2
    );
    println!(
        "    3 layers (guest -> slots -> VMM):    {:>6.2} M/s ({:.2}x the 1-layer time; goal: \
         within 3x)",
        r3 / 1e6,
        r1 / r3
    );
    println!(
        "  a working set within the TLBs ({} addresses): host {:.2} M/s, 1 layer {:.2} M/s, \
         3 layers {:.2} M/s ({:.2}x the 1-layer time)",
        hot_g.len(),
        h_host / 1e6,
        h1 / 1e6,
        h3 / 1e6,
        h1 / h3
    );
    println!(
        "  first read of each page, fresh 3-layer stack: {:.2} us/page",
        miss3 * 1e6
    );
    println!(
        "  kvm_walk_pages of the guest: {walked} pages in {:.2?}",
        Duration::from_secs_f64(secs)
    );
    println!("  heap allocations during the read passes: {allocated}");
    assert_eq!(allocated, 0, "the read path allocates");
}

/// Kernel threads (Kvm::threads, what `vmcore threads` lists): a FreeBSD
/// amd64 full dump whose kernel has one process of 100,000 threads
/// (10,000 with --smoke) besides the fixture's own, their struct threads
/// in the direct map; the best of three walks.
fn threads(cfg: &Cfg) {
    use fixture::amd64::{threads as t, va};
    let n: u64 = if cfg.smoke { 10_000 } else { 100_000 };
    let mut m = Amd64::new(2 << 20, Fill::Zero);
    // The new process goes to the head of allproc.
    let proc_va = va::PROCS + 0x100 * 8;
    let old_head = m.maps.read(&m.ram, va::ALLPROC, 8);
    m.write_virt(proc_va + t::P_LIST, &old_head);
    m.write_virt(proc_va + t::P_PID, &4242i32.to_le_bytes());
    m.write_virt(proc_va + t::P_COMM, b"many\0");
    // Thread i at 16 MiB + 256 i of physical memory, in the direct map
    // (a real struct thread is over 1 KiB; the walk allows a quarter).
    const STRIDE: u64 = 0x100;
    let base_pa = 16 << 20;
    let mut area = vec![0u8; (n * STRIDE) as usize];
    for i in 0..n {
        let b = &mut area[(i * STRIDE) as usize..((i + 1) * STRIDE) as usize];
        let next = if i + 1 < n {
            DMAP_MIN + base_pa + (i + 1) * STRIDE
        } else {
            0
        };
        let put = |b: &mut [u8], off: u64, v: &[u8]| {
            b[off as usize..off as usize + v.len()].copy_from_slice(v)
        };
        put(b, t::TD_PLIST, &next.to_le_bytes());
        put(b, t::TD_TID, &(200_000 + i as i32).to_le_bytes());
        put(b, t::TD_NAME, b"worker\0");
        put(b, t::TD_ONCPU, &(-1i32).to_le_bytes());
        put(b, t::TD_PCB, &va::PCBS.to_le_bytes());
    }
    m.ram.write(base_pa, &area);
    m.write_virt(proc_va + t::P_THREADS, &(DMAP_MIN + base_pa).to_le_bytes());
    m.write_virt(va::ALLPROC, &proc_va.to_le_bytes());
    let (kernel, core) = (cfg.dir.join("threads-kernel"), cfg.dir.join("threads-core"));
    std::fs::write(&kernel, m.kernel()).unwrap();
    write_dump(&core, &m.full_dump(false).bytes);
    let kvm = Kvm::open(&kernel, &core).unwrap();
    let mut best = Duration::MAX;
    let mut count = 0;
    for _ in 0..3 {
        let t0 = Instant::now();
        let list = kvm.threads().unwrap();
        best = best.min(t0.elapsed());
        count = list.len();
    }
    assert_eq!(count as u64, n + 7);
    println!("\nkernel threads (FreeBSD amd64 full dump, {count} threads)");
    println!(
        "  Kvm::threads: {best:.2?} ({:.0} ns a thread)",
        best.as_nanos() as f64 / count as f64
    );
    // The tools on the same dump: `vmcore threads`, and gdb's `info
    // threads` through `vmcore gdbserver` over the pipe (gdb reads every
    // thread's registers for its frame column), where gdb is installed.
    let vmcore = fixture::c::vmcore_bin();
    let t0 = Instant::now();
    let out = std::process::Command::new(&vmcore)
        .arg("threads")
        .args([&kernel, &core])
        .output()
        .unwrap();
    let listed = t0.elapsed();
    assert!(out.status.success());
    assert_eq!(
        out.stdout.iter().filter(|&&b| b == b'\n').count(),
        count + 1
    );
    println!("  vmcore threads: {listed:.2?}");
    let remote = format!(
        "target remote | {} gdbserver {} {}",
        vmcore.display(),
        kernel.display(),
        core.display()
    );
    let t0 = Instant::now();
    let gdb = std::process::Command::new("gdb")
        .args(["-batch", "-nx", "-iex", "set osabi none"])
        .arg(&kernel)
        .args(["-ex", &remote, "-ex", "info threads"])
        .output();
    match gdb {
        Ok(out) if out.status.success() => {
            let lines = out.stdout.iter().filter(|&&b| b == b'\n').count();
            assert!(lines > count, "gdb listed {lines} lines");
            println!("  gdb info threads over the pipe: {:.2?}", t0.elapsed());
        }
        Ok(out) => println!(
            "  gdb info threads: gdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => println!("  gdb info threads: skipped, gdb cannot run: {e}"),
    }
}
