//! amd64 full dumps and minidumps v1-v3 through the Rust API, checked
//! against the fixture model.

mod fixture;
use fixture::amd64::*;
use fixture::{Fill, Rng, Scratch, PAGE};
use kvm::{Error, Kvm};
use std::sync::Arc;

/// Regions worth reading: (start, length).
fn regions() -> Vec<(u64, u64)> {
    vec![
        (KERNBASE + KERNLOAD, KERNSIZE + PAGE),
        (va::K4 - PAGE, 18 * PAGE),
        (va::K4_ALIAS - PAGE, 10 * PAGE),
        (va::K2M - PAGE, (2 << 20) + 2 * PAGE),
        (va::K1G, 9 << 20),
        (DMAP_MIN, 0x0400_0000),
        (DMAP_MIN + 0x1_0000_0000 - PAGE, (8 << 20) + 2 * PAGE),
        (VM_MIN_KERNEL_ADDRESS - PAGE, 2 * PAGE),
    ]
}

/// Checks one read against the model.
fn check(kvm: &Kvm, m: &Amd64, d: &Dump, va: u64, len: u64) {
    fixture::assert_read(kvm, va, len, m.expect(d, va, len), |a| m.model_pa(a));
}

/// Fixed probes across page, superpage and mapping boundaries, plus 3000
/// random reads in the regions.
fn check_all(kvm: &Kvm, m: &Amd64, d: &Dump) {
    for (va, len) in [
        (va::VERSION, VERSION.len() as u64),
        (va::STRADDLE, 0x1000),
        (va::K4, 16 * PAGE),
        (va::K4 + 4 * PAGE - 3, 2 * PAGE),
        (va::K4 + 13 * PAGE - 8, 16),
        (va::K4_ALIAS, 8 * PAGE),
        (va::K4_ALIAS + 4 * PAGE - 8, 16),
        (va::K2M + (2 << 20) - 4, 8),
        (va::K1G + (8 << 20) - 4, 8),
        (DMAP_MIN + 0x9f000 - 8, 16),
        (DMAP_MIN + 0x0380_0000, 2 * PAGE),
        (0xffff_8000_0000_0000 - 8, 8),
        (0, 1),
    ] {
        check(kvm, m, d, va, len);
    }
    fixture::random_reads(&regions(), 3000, |va, len| check(kvm, m, d, va, len));
}

fn open(s: &Scratch, m: &Amd64, name: &str, d: &Dump) -> Kvm {
    let k = s.file("kernel", &m.kernel());
    let c = s.file(name, &d.bytes);
    Kvm::open(k, c).unwrap_or_else(|e| panic!("open {name}: {e}"))
}

#[test]
fn full_dump() {
    let m = Amd64::new(2 << 20, Fill::Pattern);
    let s = Scratch::new("full");
    let d = m.full_dump(false);
    let kvm = open(&s, &m, "core", &d);
    assert_eq!(kvm.backend(), "amd64 ELF full dump");
    check_all(&kvm, &m, &d);
}

#[test]
fn minidump_v1() {
    let m = Amd64::new(2 << 20, Fill::Pattern);
    let s = Scratch::new("v1");
    let d = m.minidump(1);
    let kvm = open(&s, &m, "core", &d);
    assert_eq!(kvm.backend(), "amd64 minidump");
    check_all(&kvm, &m, &d);
}

#[test]
fn minidump_v2() {
    let m = Amd64::new(2 << 20, Fill::Pattern);
    let s = Scratch::new("v2");
    let d = m.minidump(2);
    check_all(&open(&s, &m, "core", &d), &m, &d);
}

#[test]
fn minidump_v3() {
    let m = Amd64::new(2 << 20, Fill::Pattern);
    let s = Scratch::new("v3");
    let d = m.minidump(3);
    check_all(&open(&s, &m, "core", &d), &m, &d);
}

/// A kernel the loader placed at 22 MiB instead of 2 MiB (FreeBSD 13.1+;
/// freebsd-src PR #1706): libkvm's "address - kernbase" reads the wrong
/// page, we find the PML4 anyway, with and without a PT_DUMP_DELTA header.
#[test]
fn relocated_kernel_full_dump() {
    let m = Amd64::new(22 << 20, Fill::Pattern);
    let s = Scratch::new("reloc");
    // The classic assumption would read something that is not the PML4.
    let naive = m.ram.get(va::KPML4PHYS - KERNBASE, 8, false);
    assert_ne!(naive, m.pt.root);
    for delta in [false, true] {
        let d = m.full_dump(delta);
        let kvm = open(&s, &m, "core", &d);
        check_all(&kvm, &m, &d);
        let mut v = [0u8; 8];
        kvm.read_exact(va::KERNPHYS, &mut v).unwrap();
        assert_eq!(u64::from_le_bytes(v), 22 << 20);
    }
    // Minidumps do not depend on where the kernel was loaded.
    let d = m.minidump(3);
    check_all(&open(&s, &m, "mini", &d), &m, &d);
}

#[test]
fn symbols_follow_nlist_rules() {
    use kvm::Symbol;
    let m = Amd64::new(2 << 20, Fill::Pattern);
    let s = Scratch::new("syms");
    let kvm = open(&s, &m, "core", &m.minidump(3));
    let sym = |n| kvm.symbol(n);
    // n_type: N_ABS|N_EXT 3, N_TEXT|N_EXT 5, N_DATA|N_EXT 7, N_BSS|N_EXT 9, N_DATA 6.
    assert_eq!(
        sym("kernbase"),
        Some(Symbol {
            value: KERNBASE,
            n_type: 3
        })
    );
    assert_eq!(
        sym("panic"),
        Some(Symbol {
            value: va::TEXT + 0x40,
            n_type: 5
        })
    );
    assert_eq!(
        sym("version"),
        Some(Symbol {
            value: va::VERSION,
            n_type: 7
        })
    );
    assert_eq!(sym("_version"), sym("version"), "a.out leading underscore");
    assert_eq!(
        sym("bss_counter"),
        Some(Symbol {
            value: va::BSS,
            n_type: 9
        })
    );
    assert_eq!(
        sym("local_counter"),
        Some(Symbol {
            value: va::LOCAL,
            n_type: 6
        })
    );
    assert_eq!(sym("no_such_symbol"), None);
    assert_eq!(sym(""), None);
    assert_eq!(kvm.kerndisp(), 0);
    assert_eq!(kvm.native(), cfg!(target_arch = "x86_64"));
}

/// With a resolver, symbols (including those initvtop needs) come from it.
#[test]
fn resolver_is_used() {
    let m = Amd64::new(2 << 20, Fill::Pattern);
    let s = Scratch::new("resolver");
    let k = s.file("kernel", &m.kernel());
    let c = s.file("core", &m.full_dump(false).bytes);
    let resolver: kvm::Resolver = Box::new(|name| match name {
        "kernbase" => Some(KERNBASE),
        "KPML4phys" => Some(va::KPML4PHYS),
        "version" => Some(va::STRADDLE),
        _ => None,
    });
    let kvm = Kvm::open_with_resolver(&k, &c, Some(resolver)).unwrap();
    assert_eq!(kvm.symbol("version").unwrap().value, va::STRADDLE);
    assert_eq!(kvm.symbol("panic"), None, "only the resolver answers");
    // Without kernbase and KPML4phys the full-dump backend cannot start.
    let bad: kvm::Resolver = Box::new(|name| (name == "version").then_some(va::VERSION));
    let e = Kvm::open_with_resolver(&k, &c, Some(bad)).unwrap_err();
    assert_eq!(e.to_string(), "bad namelist: no symbol kernbase");
    // Without `version` it is no FreeBSD kernel.
    let none: kvm::Resolver = Box::new(|_| None);
    let e = Kvm::open_with_resolver(&k, &c, Some(none)).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("has no symbol `version` (the resolver does not know it)"),
        "{e}"
    );
}

#[test]
fn reads_of_nothing_and_past_the_top() {
    let m = Amd64::new(2 << 20, Fill::Pattern);
    let s = Scratch::new("edges");
    let kvm = open(&s, &m, "core", &m.full_dump(false));
    assert_eq!(kvm.read(0xdead_beef, &mut []).unwrap(), 0);
    let e = kvm.read(u64::MAX - 7, &mut [0u8; 16]).unwrap_err();
    assert!(matches!(e, Error::Translate { .. }), "{e}");
    let e = kvm.read(0x0000_9000_0000_0000, &mut [0u8; 8]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid address (0x900000000000): out of range: not a canonical amd64 address (bits \
         47-63 must be equal)"
    );
    assert!(matches!(kvm.write(va::VERSION, b"x"), Err(Error::ReadOnly)));
}

/// Error texts name the address and say unmapped or not dumped.
#[test]
fn error_messages() {
    let m = Amd64::new(2 << 20, Fill::Pattern);
    let s = Scratch::new("errors");
    let kvm = open(&s, &m, "core", &m.minidump(3));
    let msg = |va| kvm.read(va, &mut [0u8; 8]).unwrap_err().to_string();
    assert_eq!(
        msg(va::K4 + 3 * PAGE),
        format!(
            "invalid address ({:#x}): not mapped: PTE entry 507 is not valid (0x0)",
            va::K4 + 3 * PAGE
        )
    );
    assert_eq!(
        msg(va::K4 + 12 * PAGE),
        format!(
            "invalid address ({:#x}): mapped to physical address {MMIO:#x}, which is not in the \
             dump",
            va::K4 + 12 * PAGE
        )
    );
    assert!(msg(DMAP_MIN + DMAP_SIZE).contains("nor in the direct map"));
}

/// One handle, many threads, all reads correct.
#[test]
fn concurrent_reads_on_one_handle() {
    let m = Arc::new(Amd64::new(2 << 20, Fill::Pattern));
    let s = Scratch::new("threads");
    for d in [m.full_dump(false), m.minidump(3)] {
        let kvm = Arc::new(open(&s, &m, "core", &d));
        let d = Arc::new(d);
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let (kvm, m, d) = (kvm.clone(), m.clone(), d.clone());
                std::thread::spawn(move || {
                    let mut rng = Rng(0x9e37_79b9 + t);
                    let regions = regions();
                    for _ in 0..500 {
                        let (start, size) = regions[rng.below(regions.len() as u64) as usize];
                        check(
                            &kvm,
                            &m,
                            &d,
                            start + rng.below(size),
                            1 + rng.below(2 * PAGE),
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}

/// A truncated full dump opens; reads stop short where the file ends.
#[test]
fn truncated_full_dump_reads_short() {
    let m = Amd64::new(2 << 20, Fill::Pattern);
    let s = Scratch::new("trunc");
    let mut d = m.full_dump(false);
    // Physical 56 MiB lies in the second segment, which starts at file
    // offset 0x1000 + 0x9e000 (after the first segment).
    let cut_pa = 56 << 20;
    let cut = 0x1000 + (0x9f000 - 0x1000) + (cut_pa - 0x10_0000);
    d.bytes.truncate(cut as usize);
    let kvm = open(&s, &m, "core", &d);
    let mut buf = [0u8; 16];
    assert_eq!(kvm.read(DMAP_MIN + cut_pa - 8, &mut buf).unwrap(), 8);
    assert_eq!(buf[..8], m.ram.read(cut_pa - 8, 8)[..]);
    assert_eq!(kvm.read(DMAP_MIN + cut_pa + PAGE, &mut buf).unwrap(), 0);
    assert!(kvm.read_exact(DMAP_MIN + cut_pa - 8, &mut buf).is_err());
    // Memory before the cut is intact.
    check(&kvm, &m, &d, va::VERSION, VERSION.len() as u64);
}

/// The recursive PML4 slot (`PML4PML4I`, as FreeBSD installs it) is a
/// loop in the page-table graph: reads through it return the PML4 and every
/// table page and superpage the MMU sees there.
#[test]
fn recursive_slot_shows_the_tables() {
    let m = Amd64::new(2 << 20, Fill::Pattern);
    let s = Scratch::new("recursive");
    let d = m.full_dump(false);
    let kvm = open(&s, &m, "core", &d);
    let mut page = vec![0u8; PAGE as usize];
    kvm.read_exact(table_va([PML4PML4I; 4]), &mut page).unwrap();
    assert_eq!(page, m.ram.page(m.pt.root));
    let slot = table_va([PML4PML4I, 0, 0, 0])..table_va([PML4PML4I + 1, 0, 0, 0]);
    let through: Vec<_> = m
        .leaves()
        .into_iter()
        .filter(|l| slot.contains(&l.va))
        .collect();
    assert!(through.len() > 500, "{} leaves", through.len());
    for l in through {
        let pa_of = |a: u64| Some(l.pa + (a - l.va));
        let want = fixture::expect_read(&m.ram, PAGE, l.va, 64, pa_of, |_| true);
        fixture::assert_read(&kvm, l.va, 64, want, pa_of);
    }
}

/// kvm_walk_pages reports exactly the model's pages, in order, and stops
/// when the callback says so.
fn walk_matches_model(version: u32) {
    use kvm::prot::{EXECUTE, READ, WRITE};
    let m = Amd64::new(2 << 20, Fill::Pattern);
    let s = Scratch::new(&format!("walk-{version}"));
    let d = match version {
        0 => m.full_dump(false),
        v => m.minidump(v),
    };
    let kvm = open(&s, &m, "core", &d);
    let want = m.expected_pages(&d);
    let what = format!("version {version}");
    // The model's list exercises every kind of page.
    assert!(want.len() > 100, "{what}: {} pages", want.len());
    assert!(want.iter().any(|p| p.prot & EXECUTE != 0));
    // (Version 1 maps only the kernel image, all of it dumped.)
    assert!(version == 1 || want.iter().any(|p| p.offset.is_none()));
    assert!(want.iter().any(|p| p.kmap_vaddr == 0 && p.offset.is_some()));
    let got = fixture::walk(&kvm, &what);
    let at = |va: u64| got.iter().find(|p| p.kmap_vaddr == va);
    if version != 1 {
        // The alias: K4 page 9 through both PDEs naming its page table.
        let twice: Vec<u64> = got
            .iter()
            .filter(|p| p.paddr == k4_pa(9))
            .map(|p| p.kmap_vaddr)
            .collect();
        assert_eq!(
            twice,
            [va::K4 + 9 * PAGE, va::K4_ALIAS + PAGE],
            "{what}: K4 page 9 and its alias"
        );
    }
    if version == 0 {
        // The recursive slot shows the PML4 (whose entry there has NX),
        // and the 1 GiB direct-map page at 1 GiB as a 2 MiB leaf.
        let pml4 = table_va([PML4PML4I; 4]);
        assert_eq!(pml4, 0xffff_8040_2010_0000);
        let p = at(pml4).unwrap_or_else(|| panic!("{what}: no PML4 at {pml4:#x}"));
        assert_eq!((p.paddr, p.len, p.prot), (m.pt.root, PAGE, READ | WRITE));
        let g1 = table_va([PML4PML4I, (DMAP_MIN >> 39) & 511, 1, 0]);
        let p = at(g1).unwrap_or_else(|| panic!("{what}: no 1 GiB page at {g1:#x}"));
        assert_eq!((p.paddr, p.len), (NBPDP, NBPDR));
    }
    fixture::assert_pages(&got, &want, &what);
    // Every reported offset holds the bytes of its physical page.
    for p in got.iter().filter(|p| p.offset.is_some()).step_by(97) {
        let off = p.offset.unwrap() as usize;
        assert_eq!(d.bytes[off..off + 64], m.ram.read(p.paddr, 64)[..]);
    }
    let mut n = 0;
    assert!(!kvm
        .walk_pages(|_| {
            n += 1;
            n < 10
        })
        .unwrap());
    assert_eq!(n, 10, "the walk stops when the callback returns false");
}

/// Every leaf the MMU sees: the recursive slot at every depth, and the
/// alias twice.
#[test]
fn walk_pages_full_dump() {
    walk_matches_model(0);
}

#[test]
fn walk_pages_minidump_v1() {
    walk_matches_model(1);
}

/// The page map holds the alias PDE: its pages are reported twice.
#[test]
fn walk_pages_minidump_v2() {
    walk_matches_model(2);
}

#[test]
fn walk_pages_minidump_v3() {
    walk_matches_model(3);
}

/// `tests/data/kernel` and `tests/data/vmcore`, which the documentation's
/// examples open, are the fixture's sample machine and its version 1
/// minidump, byte for byte (`KVM_UPDATE_SAMPLE=1` rewrites them).
#[test]
fn sample_dump_is_current() {
    let m = Amd64::sample();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    for (name, bytes) in [("kernel", m.kernel()), ("vmcore", m.minidump(1).bytes)] {
        let path = dir.join(name);
        if std::env::var_os("KVM_UPDATE_SAMPLE").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap();
        assert!(
            committed == bytes,
            "{} differs from the fixture's",
            path.display()
        );
    }
    let kvm = Kvm::open(dir.join("kernel"), dir.join("vmcore")).unwrap();
    let mut buf = vec![0u8; VERSION.len()];
    kvm.read_exact(kvm.symbol("version").unwrap().value, &mut buf)
        .unwrap();
    assert_eq!(buf, VERSION);
}

/// Reads of the same places again and again, from several threads at
/// once, go through every stage a page of a mapped core goes through
/// (pread, the small page cache, whose slots the threads contend for, and
/// the mapping: src/cold.rs) and always return the model's bytes.
#[test]
fn repeated_reads_through_every_stage() {
    let m = Arc::new(Amd64::new(2 << 20, Fill::Pattern));
    let s = Scratch::new("stages");
    for d in [m.full_dump(false), m.minidump(3)] {
        let kvm = Arc::new(open(&s, &m, "core", &d));
        let d = Arc::new(d);
        // 64 places in 16 pages of RAM 128 pages apart (in a full dump,
        // one cache slot for all), the kernel's data, and pages of their
        // own read across their end.
        let mut places: Vec<(u64, u64)> = (0..64u64)
            .map(|i| {
                let pa = (8 << 20) + (i % 16) * 128 * PAGE + (i * 56) % 4000;
                (DMAP_MIN + pa, 1 + i % 24)
            })
            .collect();
        places.extend((0..16u64).map(|i| (va::DATA + i * 40, 8)));
        places.extend((0..64u64).map(|i| (DMAP_MIN + 0x0380_0000 + i * 2 * PAGE + 4090, 12)));
        let places = Arc::new(places);
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let (kvm, m, d, places) = (kvm.clone(), m.clone(), d.clone(), places.clone());
                std::thread::spawn(move || {
                    let mut rng = Rng(0x51ed + t);
                    for _ in 0..4000 {
                        let (va, len) = places[rng.below(places.len() as u64) as usize];
                        check(&kvm, &m, &d, va, len);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}

/// A handle that reads the core with pread (OpenOptions::pread) reads and
/// walks exactly as a mapped one, for every dump format.
#[test]
fn pread_mode_reads_and_walks_the_same() {
    let m = Amd64::new(2 << 20, Fill::Pattern);
    let s = Scratch::new("preadmode");
    for d in [
        m.full_dump(false),
        m.minidump(1),
        m.minidump(2),
        m.minidump(3),
    ] {
        let mapped = open(&s, &m, "core", &d);
        let pread = kvm::OpenOptions::new()
            .pread(true)
            .open(s.path().join("kernel"), s.path().join("core"))
            .unwrap();
        let what = format!("version {}", d.version);
        fixture::assert_pages(
            &fixture::walk(&pread, &what),
            &fixture::walk(&mapped, &what),
            &what,
        );
        fixture::random_reads(&regions(), 500, |va, len| check(&pread, &m, &d, va, len));
    }
}

/// The message buffer, as dmesg(8) reads it through `msgbufp`: the
/// circular area from the oldest byte (the fixture's buffer has wrapped),
/// the same through a full dump and every minidump version; a damaged
/// `struct msgbuf` is refused naming it.
#[test]
fn message_buffer() {
    let mut m = Amd64::new(2 << 20, Fill::Pattern);
    let s = Scratch::new("amd64-msgbuf");
    let kernel = s.file("kernel", &m.kernel());
    // The buffer has wrapped: it starts mid-line, and the reader starts
    // at the first whole line.
    let stream = msgbuf_stream(&m.msgbuf);
    assert_eq!(stream.len() as u64, MSGBUF_SIZE);
    let first = stream.iter().position(|&b| b == b'\n').unwrap() + 1;
    assert!(
        !stream.starts_with(b"<"),
        "the fixture's buffer must start mid-line"
    );
    let want = stream[first..].to_vec();
    assert!(want.starts_with(b"<6>an older line\n"));
    assert!(want.ends_with(b"<6>fixture boot\n"));
    for (name, dump) in [
        ("full", m.full_dump(false)),
        ("mini1", m.minidump(1)),
        ("mini2", m.minidump(2)),
        ("mini3", m.minidump(3)),
    ] {
        let kvm = Kvm::open(&kernel, s.file(name, &dump.bytes)).unwrap();
        assert!(kvm.message_buffer().unwrap() == want, "{name}");
        assert_eq!(kvm.cpus(), Some(NCPUS), "{name}");
        assert_eq!(kvm.panic_string().as_deref(), Some(PANIC), "{name}");
    }
    // A wrong magic, and a size past what the dump holds.
    m.write_virt(va::MSGBUF + 8, &0x1234u32.to_le_bytes());
    let kvm = Kvm::open(&kernel, s.file("bad", &m.full_dump(false).bytes)).unwrap();
    let e = kvm.message_buffer().unwrap_err().to_string();
    assert!(
        e.contains(&format!("struct msgbuf at {:#x}", va::MSGBUF)) && e.contains("0x1234"),
        "{e}"
    );
    m.write_virt(va::MSGBUF + 8, &0x063062u32.to_le_bytes());
    m.write_virt(va::MSGBUF + 12, &u32::MAX.to_le_bytes());
    let kvm = Kvm::open(&kernel, s.file("huge", &m.full_dump(false).bytes)).unwrap();
    let e = kvm.message_buffer().unwrap_err().to_string();
    assert!(e.contains("claims a buffer of 4294967295 bytes"), "{e}");
}

/// Kernel threads as kgdb and lldb list them: allproc's processes then
/// zombproc's, oldest first; registers from dumppcb for the dumping
/// thread, stoppcbs for a thread on a stopped CPU, td_pcb otherwise (a
/// thread on a CPU that did not stop included); the same through every
/// dump format. A process list that loops is refused.
#[test]
fn kernel_threads() {
    let mut m = Amd64::new(2 << 20, Fill::Pattern);
    let s = Scratch::new("amd64-threads");
    let kernel = s.file("kernel", &m.kernel());
    let want = m.expected_threads();
    assert_eq!(want.len(), 7);
    assert!(want.iter().any(|t| t.crashed && t.pcb == va::DUMPPCB));
    for (name, dump) in [("full", m.full_dump(false)), ("mini3", m.minidump(3))] {
        let kvm = Kvm::open(&kernel, s.file(name, &dump.bytes)).unwrap();
        assert_eq!(kvm.threads().unwrap(), want, "{name}");
        // Registers as kgdb supplies them from each thread's PCB.
        for t in &want {
            let regs = kvm.registers(t).unwrap();
            let w = Amd64::pcb_words(t.pcb);
            let names = ["r15", "r14", "r13", "r12", "rbp", "rsp", "rbx", "rip"];
            for (n, v) in names.iter().zip(w) {
                assert_eq!(regs.get(n), Some(v), "{name}: {} {n}", t.tid);
            }
            assert_eq!((regs.get("cs"), regs.get("ss")), (Some(0x20), Some(0x28)));
            // What a PCB does not hold: the scratch registers and flags.
            for n in [
                "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r11", "eflags", "fs_base",
            ] {
                assert_eq!(regs.get(n), None, "{n}");
            }
            assert_eq!(regs.known().count_ones(), 10);
            assert_eq!(regs.arch().gdb_name(), "i386:x86-64");
        }
        let dumping = want.iter().find(|t| t.crashed).unwrap();
        let rip = kvm.registers(dumping).unwrap().get("rip").unwrap();
        assert_eq!(rip, kvm.symbol("doadump").unwrap().value + 0x1c);
    }
    // A PCB the dump does not hold: the error names it.
    let mut lost = want[0].clone();
    lost.pcb = 0xffff_ffff_ffff_f000;
    let kvm = Kvm::open(&kernel, s.file("regs", &m.full_dump(false).bytes)).unwrap();
    let e = kvm.registers(&lost).unwrap_err().to_string();
    assert!(e.contains("0xfffffffffffff000"), "{e}");
    lost.pcb = 0;
    let e = kvm.registers(&lost).unwrap_err().to_string();
    assert!(e.contains("has no PCB"), "{e}");
    // A thread on a CPU past any cpuset (a damaged td_oncpu) is listed
    // with its own td_pcb; so are threads on CPUs when the kernel has no
    // stopped_cpus (kgdb's cpu_stopped is false then).
    let softclock = va::THREADS + 0x100;
    m.write_virt(softclock + threads::TD_ONCPU, &0x4000_0000i32.to_le_bytes());
    let kvm = Kvm::open(&kernel, s.file("oncpu", &m.full_dump(false).bytes)).unwrap();
    let got = kvm.threads().unwrap();
    let t = got.iter().find(|t| t.tid == 100_001).unwrap();
    assert_eq!(
        (t.cpu, t.pcb),
        (Some(0x4000_0000), va::PCBS + threads::PCB_SIZE)
    );
    m.write_virt(softclock + threads::TD_ONCPU, &1i32.to_le_bytes());
    let mut no_set = Amd64::new(2 << 20, Fill::Pattern);
    no_set.syms.retain(|k| k.name != "stopped_cpus");
    let kernel2 = s.file("kernel-no-set", &no_set.kernel());
    let kvm = Kvm::open(&kernel2, s.file("no-set", &no_set.full_dump(false).bytes)).unwrap();
    let got = kvm.threads().unwrap();
    let t = got.iter().find(|t| t.tid == 100_001).unwrap();
    assert_eq!(
        t.pcb,
        va::PCBS + threads::PCB_SIZE,
        "td_pcb without stopped_cpus"
    );
    // A thread list that loops.
    let sh2 = va::THREADS + 0x100 * 5;
    m.write_virt(
        sh2 + threads::TD_PLIST,
        &(va::THREADS + 0x100 * 4).to_le_bytes(),
    );
    let kvm = Kvm::open(&kernel, s.file("tdloop", &m.full_dump(false).bytes)).unwrap();
    let e = kvm.threads().unwrap_err().to_string();
    assert!(e.contains("thread list") && e.contains("loops"), "{e}");
    m.write_virt(sh2 + threads::TD_PLIST, &0u64.to_le_bytes());
    // p_list of the oldest process points back at the newest: a loop.
    let newest = va::PROCS + 0x100 * 2;
    m.write_virt(va::PROCS + threads::P_LIST, &newest.to_le_bytes());
    let kvm = Kvm::open(&kernel, s.file("loop", &m.full_dump(false).bytes)).unwrap();
    let e = kvm.threads().unwrap_err().to_string();
    assert!(e.contains("allproc") && e.contains("loop"), "{e}");
}

/// `Kvm::translation` (what `vmcore vtop` prints) walks the tables the
/// fixture laid out: from the PML4 at the root, each table where the entry
/// above points, each index from the address's bits, the leaf the model
/// placed; a failing address shows the entries up to the invalid one.
#[test]
fn translation_steps() {
    let m = Amd64::new(2 << 20, Fill::Pattern);
    let s = Scratch::new("amd64-translation");
    let kernel = s.file("kernel", &m.kernel());
    let kvm = Kvm::open(&kernel, s.file("full", &m.full_dump(false).bytes)).unwrap();
    let leaves = m.leaves();
    assert!(leaves.iter().any(|l| l.size == 1 << 30) && leaves.iter().any(|l| l.size == PAGE));
    for leaf in leaves.iter().step_by(97) {
        let va = leaf.va + leaf.size / 2;
        let (steps, pa) = kvm.translation(va);
        assert_eq!(pa.unwrap(), leaf.pa + leaf.size / 2, "{va:#x}");
        let depth = match leaf.size {
            0x1000 => 4,
            0x20_0000 => 3,
            _ => 2,
        };
        let names: Vec<&str> = steps.iter().map(|s| s.level).collect();
        assert_eq!(names, ["PML4E", "PDPE", "PDE", "PTE"][..depth], "{va:#x}");
        let mut table = m.pt.root;
        for (i, step) in steps.iter().enumerate() {
            assert_eq!(step.table, kvm::TableAt::Phys(table), "{va:#x} level {i}");
            assert_eq!(step.index, (va >> (39 - 9 * i)) & 511, "{va:#x} level {i}");
            table = step.entry & 0x000f_ffff_ffff_f000;
        }
        assert_eq!(steps.last().unwrap().entry, leaf.entry, "{va:#x}");
    }
    // An address no PML4E maps: one step, then the error.
    let (steps, pa) = kvm.translation(0xffff_8800_0000_0000);
    assert_eq!(steps.len(), 1);
    assert!(pa.unwrap_err().to_string().contains("not mapped"));
}
