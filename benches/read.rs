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
    // The dumps are kept in target/bench-dumps and rebuilt only when
    // missing (the model is deterministic).
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-dumps");
    std::fs::create_dir_all(&dir).unwrap();
    let path = |n: &str| dir.join(n);
    let (kernel, full, mini) = (path("kernel"), path("full"), path("mini"));
    let (small, small_kernel) = (path("small"), path("small_kernel"));
    let cached = [&kernel, &full, &mini, &small, &small_kernel]
        .iter()
        .all(|p| p.exists());
    let mut m = Amd64::with_ram(2 << 20, Fill::Zero, RAM_TOP);
    let t = Instant::now();
    if !cached {
        // Give every RAM page distinct contents cheaply: one word per page.
        // Every page is in the minidump too (as after a busy system's dump).
        for pa in (0x10_0000..RAM_TOP).step_by(PAGE as usize) {
            if !(0x300_0000..0x340_0000).contains(&pa) {
                m.ram.write(pa + 8, &pa.to_le_bytes());
            }
            m.extra_dumped.insert(pa);
        }
        std::fs::write(&kernel, m.kernel()).unwrap();
        write_sparse(&full, &m.full_dump(false).bytes);
        write_sparse(&mini, &m.minidump(3).bytes);
        let sm = Amd64::new(2 << 20, Fill::Zero);
        write_sparse(&small, &sm.minidump(3).bytes);
        std::fs::write(&small_kernel, sm.kernel()).unwrap();
    }
    if !cached {
        println!("fixtures: 1 GiB RAM dumps written in {:.1?}", t.elapsed());
    }

    // Addresses: the direct map over all of RAM, and the kernel image.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let dmap: Vec<u64> = (0..1 << 16)
        .map(|_| DMAP_MIN + 0x10_0000 + ((rnd() % (RAM_TOP - 0x10_0000 - 8)) & !7))
        .collect();
    let kimg: Vec<u64> = (0..1 << 16)
        .map(|_| KERNBASE + KERNLOAD + ((rnd() % (KERNSIZE - 8)) & !7))
        .collect();
    let dmap4k: Vec<u64> = dmap
        .iter()
        .map(|&a| a.min(DMAP_MIN + RAM_TOP - 4096))
        .collect();

    for (name, core, kern) in [
        ("ELF full dump", &full, &kernel),
        ("minidump v3", &mini, &kernel),
    ] {
        let size = std::fs::metadata(core).unwrap().len();
        let t = Instant::now();
        let kvm = Kvm::open(kern, core).unwrap();
        let open = t.elapsed();
        println!(
            "\n{name} ({} MiB file, backend {:?})",
            size >> 20,
            kvm.backend()
        );
        println!("  open: {open:.2?}");
        let mut b8 = [0u8; 8];
        let before = ALLOCS.load(Relaxed);
        let r_dmap = rate(budget, &dmap, |a| {
            black_box(kvm.read(a, black_box(&mut b8)).unwrap());
        });
        let r_kimg = rate(budget, &kimg, |a| {
            black_box(kvm.read(a, black_box(&mut b8)).unwrap());
        });
        let allocs = ALLOCS.load(Relaxed) - before;
        let mut b4k = vec![0u8; 4096];
        let r_4k = rate(budget, &dmap4k, |a| {
            black_box(kvm.read(a, black_box(&mut b4k)).unwrap());
        });
        let mut mib = vec![0u8; 1 << 20];
        let seq: Vec<u64> = (0..(RAM_TOP - 0x20_0000) >> 20)
            .map(|i| DMAP_MIN + 0x10_0000 + (i << 20))
            .collect();
        let r_seq = rate(budget, &seq, |a| {
            black_box(kvm.read(a, black_box(&mut mib)).unwrap());
        });
        // The floor: random 8-byte loads from a mapping of the core at the
        // offsets these addresses occupy, with no translation (memory and
        // TLB latency alone).
        let raw = unsafe { memmap2::Mmap::map(&File::open(core).unwrap()).unwrap() };
        let floor = |addrs: &[u64]| {
            let offs: Vec<u64> = addrs
                .iter()
                .map(|&a| kvm.translate(a).unwrap().off)
                .collect();
            rate(budget, &offs, |o| {
                let o = o as usize;
                black_box(u64::from_le_bytes(raw[o..o + 8].try_into().unwrap()));
            })
        };
        let (f_dmap, f_kimg) = (floor(&dmap), floor(&kimg));
        // The same loads, each waiting for the one before (as a read's
        // page-table walk waits for each entry): memory latency alone.
        let dependent = |addrs: &[u64]| {
            let offs: Vec<u64> = addrs
                .iter()
                .map(|&a| kvm.translate(a).unwrap().off)
                .collect();
            let mut last = 0u64;
            rate(budget, &offs, |o| {
                let o = (o ^ u64::from(last == 0x5eed_5eed_5eed_5eed)) as usize;
                last = u64::from_le_bytes(raw[o..o + 8].try_into().unwrap());
            })
        };
        let d_dmap = dependent(&dmap);
        println!(
            "  random 8-byte reads, direct map:   {:>6.2} M/s (raw loads at the same offsets: {:.2} M/s \
             independent, {:.2} M/s dependent)",
            r_dmap / 1e6,
            f_dmap / 1e6,
            d_dmap / 1e6
        );
        println!(
            "  random 8-byte reads, kernel image: {:>6.2} M/s (raw loads at the same offsets: {:.2} M/s)",
            r_kimg / 1e6,
            f_kimg / 1e6
        );
        println!("  heap allocations in those reads:   {allocs}");
        println!(
            "  random 4 KiB reads:                {:>6.2} M/s",
            r_4k / 1e6
        );
        let (pages, secs) = walk_rate(&kvm);
        println!(
            "  kvm_walk_pages:                    {:>6.2} M pages/s ({pages} pages in {:.1} ms)",
            pages as f64 / secs / 1e6,
            secs * 1e3
        );
        println!(
            "  sequential 1 MiB reads:            {:>6.2} GiB/s",
            r_seq / 1024.0
        );
        if name.starts_with("ELF") {
            let kvm_segs: Vec<(u64, u64, u64)> = {
                let mut off = 4096u64;
                m.ram
                    .ranges
                    .iter()
                    .map(|&(s, e)| {
                        let r = (s, e - s, off);
                        off += e - s;
                        r
                    })
                    .collect()
            };
            let file = File::open(core).unwrap();
            let mut pml4 = vec![0u64; 512];
            let b = PreadFull {
                file,
                segs: kvm_segs,
                pml4: vec![],
            };
            for (i, e) in pml4.iter_mut().enumerate() {
                *e = b.entry(m.pt.root + i as u64 * 8);
            }
            let base = PreadFull { pml4, ..b };
            let mut check = [0u8; 8];
            base.read(dmap[0], &mut check);
            kvm.read(dmap[0], &mut b8).unwrap();
            assert_eq!(check, b8, "baseline reads the same bytes");
            let p_dmap = rate(budget, &dmap, |a| base.read(a, &mut b8));
            let p_kimg = rate(budget, &kimg, |a| base.read(a, &mut b8));
            println!("  libkvm-style pread reader, 8-byte: {:>6.2} M/s direct map, {:.2} M/s kernel image", p_dmap / 1e6, p_kimg / 1e6);
            println!(
                "  speed-up over it:                  {:>6.1}x direct map, {:.1}x kernel image",
                r_dmap / p_dmap,
                r_kimg / p_kimg
            );
        }
    }
    let t = Instant::now();
    let k = Kvm::open(&small_kernel, &small).unwrap();
    println!(
        "\nopen of a 64 MiB-RAM minidump for comparison: {:.2?} ({})",
        t.elapsed(),
        k.backend()
    );
    other_architectures(budget);
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
        let t = Instant::now();
        let kvm = Kvm::open(&kernel, &core).unwrap();
        let open = t.elapsed();
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
        println!("  open: {open:.2?}");
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
