//! Read-path benchmark: `cargo bench` (or `cargo bench -- --quick`).
//!
//! Builds an amd64 ELF full dump and a v3 minidump of 1 GiB of RAM (sparse
//! files) with the test fixture, then measures open time, random 8-byte and
//! 4 KiB reads per second, and sequential 1 MiB throughput. In the same run
//! it measures a libkvm-style reader (one pread per page-table level and per
//! page, no caching, as `lib/libkvm/kvm_amd64.c` and
//! `kvm_minidump_amd64.c` do) so results are ratios on one machine.
//! A counting allocator checks the read loop performs no heap allocation.

#[path = "../tests/fixture/mod.rs"]
mod fixture;

use fixture::amd64::{Amd64, DMAP_MIN, KERNBASE, KERNLOAD, KERNSIZE};
use fixture::{write_sparse, Fill, PAGE};
use kvm::Kvm;
use std::alloc::{GlobalAlloc, Layout, System};
use std::fs::File;
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::Path;
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

const RAM_TOP: u64 = 0x4000_0000 + 0x10_0000; // 1 GiB of RAM from 1 MiB

/// Runs `f` over `addrs` once untimed (so first-touch page faults of the
/// mapping are not counted), then repeatedly for about `budget`; returns
/// calls per second.
fn rate(budget: Duration, addrs: &[u64], mut f: impl FnMut(u64)) -> f64 {
    for &a in addrs {
        f(a);
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

/// libkvm's full-dump read: PML4 cached, then one pread per level and one
/// for the data (`_amd64_vatop` + `kvm_read2`).
struct PreadFull {
    file: File,
    segs: Vec<(u64, u64, u64)>,
    pml4: Vec<u64>,
}
impl PreadFull {
    fn pa2off(&self, pa: u64) -> u64 {
        let s = self
            .segs
            .iter()
            .find(|s| pa >= s.0 && pa < s.0 + s.1)
            .expect("pa in dump");
        s.2 + (pa - s.0)
    }
    fn entry(&self, pa: u64) -> u64 {
        let mut b = [0u8; 8];
        self.file.read_exact_at(&mut b, self.pa2off(pa)).unwrap();
        u64::from_le_bytes(b)
    }
    fn read(&self, va: u64, buf: &mut [u8]) {
        let f = 0x000f_ffff_ffff_f000;
        let pdpe =
            self.entry((self.pml4[((va >> 39) & 511) as usize] & f) + ((va >> 30) & 511) * 8);
        let pa = if pdpe & 0x80 != 0 {
            (pdpe & 0x000f_ffff_c000_0000) + (va & 0x3fff_ffff)
        } else {
            let pde = self.entry((pdpe & f) + ((va >> 21) & 511) * 8);
            if pde & 0x80 != 0 {
                (pde & 0x000f_ffff_ffe0_0000) + (va & 0x1f_ffff)
            } else {
                (self.entry((pde & f) + ((va >> 12) & 511) * 8) & f) + (va & 0xfff)
            }
        };
        self.file.read_exact_at(buf, self.pa2off(pa)).unwrap();
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let budget = Duration::from_millis(if quick { 200 } else { 1000 });
    amd64(budget);
    i386(budget);
    other_architectures(budget);
}

/// The directory holding the benchmark dumps; they are rebuilt only when
/// missing (the models are deterministic).
fn dumps_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-dumps");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `n` random 8-byte-aligned addresses in `[base, base + len - 8)`.
fn random_addrs(seed: u64, n: usize, base: u64, len: u64) -> Vec<u64> {
    let mut x = seed;
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
    wide: Vec<u64>,
    narrow: Vec<u64>,
    seq: Vec<u64>,
}

impl Regions {
    fn new(wide: (u64, u64), narrow: (u64, u64)) -> Regions {
        Regions {
            wide: random_addrs(0x9e37_79b9_7f4a_7c15, 1 << 16, wide.0, wide.1),
            narrow: random_addrs(0x2545_f491_4f6c_dd1d, 1 << 16, narrow.0, narrow.1),
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

/// Opens a dump and measures every read pattern on it; returns the handle.
fn measure(name: &str, kernel: &Path, core: &Path, r: &Regions, budget: Duration) -> Kvm {
    let size = std::fs::metadata(core).unwrap().len();
    let (kvm, open) = open_timed(kernel, core);
    println!(
        "\n{name} ({} MiB file, backend {:?})",
        size >> 20,
        kvm.backend()
    );
    println!("  open: {open}");
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

/// amd64: an ELF full dump and a v3 minidump of 1 GiB of RAM, every page
/// dumped; reads through the direct map and the kernel image; and a
/// libkvm-style pread reader on the full dump in the same run.
fn amd64(budget: Duration) {
    let dir = dumps_dir();
    let (kernel, full, mini) = (dir.join("kernel"), dir.join("full"), dir.join("mini"));
    let mut m = Amd64::with_ram(2 << 20, Fill::Zero, RAM_TOP);
    if ![&kernel, &full, &mini].iter().all(|p| p.exists()) {
        let t = Instant::now();
        // Distinct contents cheaply: one word per page. Every page is in the
        // minidump too (as after a busy system's dump).
        for pa in (0x10_0000..RAM_TOP).step_by(PAGE as usize) {
            if !(0x300_0000..0x340_0000).contains(&pa) {
                m.ram.write(pa + 8, &pa.to_le_bytes());
            }
            m.extra_dumped.insert(pa);
        }
        std::fs::write(&kernel, m.kernel()).unwrap();
        write_sparse(&full, &m.full_dump(false).bytes);
        write_sparse(&mini, &m.minidump(3).bytes);
        println!("amd64 1 GiB dumps written in {:.1?}", t.elapsed());
    }
    let r = Regions::new(
        (DMAP_MIN + 0x10_0000, RAM_TOP - 0x20_0000),
        (KERNBASE + KERNLOAD, KERNSIZE),
    );
    let kvm = measure("amd64 ELF full dump", &kernel, &full, &r, budget);
    // libkvm's reader: PML4 cached, one pread per level and per read.
    let mut off = 4096u64;
    let segs = m
        .ram
        .ranges
        .iter()
        .map(|&(s, e)| {
            let seg = (s, e - s, off);
            off += e - s;
            seg
        })
        .collect();
    let mut base = PreadFull {
        file: File::open(&full).unwrap(),
        segs,
        pml4: vec![],
    };
    base.pml4 = (0..512u64).map(|i| base.entry(m.pt.root + i * 8)).collect();
    let (mut b8, mut check) = ([0u8; 8], [0u8; 8]);
    base.read(r.wide[0], &mut check);
    kvm.read(r.wide[0], &mut b8).unwrap();
    assert_eq!(check, b8, "baseline reads the same bytes");
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
    measure("amd64 minidump v3", &kernel, &mini, &r, budget);

    // Open time does not grow with the dump: a 64 MiB-RAM minidump.
    let (small, small_kernel) = (dir.join("small"), dir.join("small_kernel"));
    if !small.exists() || !small_kernel.exists() {
        let sm = Amd64::new(2 << 20, Fill::Zero);
        write_sparse(&small, &sm.minidump(3).bytes);
        std::fs::write(&small_kernel, sm.kernel()).unwrap();
    }
    let (_, open) = open_timed(&small_kernel, &small);
    println!("\nopen of a 64 MiB-RAM amd64 minidump for comparison: {open}");
}

/// i386: a non-PAE ELF full dump and a PAE v2 minidump of a 12+ kernel with
/// 1 GiB of RAM mapped by superpages at `BIG_VA`.
fn i386(budget: Duration) {
    use fixture::i386::{Mode, BIG_VA, I386, KERNSIZE as I386_KERNSIZE};
    let dir = dumps_dir();
    let top = (1 << 30) + (32 << 20);
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
            write_sparse(&core, &d.bytes);
        }
        let r = Regions::new((BIG_VA, 1 << 30), (m.va.text, I386_KERNSIZE));
        measure(name, &kernel, &core, &r, budget);
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
fn other_architectures(budget: Duration) {
    use fixture::dmap::{DmapMachine, ARM64_16K, ARM64_4K, RISCV};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-dumps");
    for (name, arch, version) in [
        ("arm64 4 KiB minidump v3", &ARM64_4K, 3),
        ("arm64 16 KiB minidump v3", &ARM64_16K, 3),
        ("riscv minidump v2", &RISCV, 2),
    ] {
        let m = DmapMachine::new(arch, Fill::Zero);
        let d = m.minidump(version);
        let (kernel, core) = (dir.join("dmap-kernel"), dir.join("dmap-core"));
        std::fs::write(&kernel, m.kernel()).unwrap();
        write_sparse(&core, &d.bytes);
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
