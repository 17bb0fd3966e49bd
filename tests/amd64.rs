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
    // Without KPML4phys the full-dump backend cannot start.
    let bad: kvm::Resolver = Box::new(|_| None);
    let e = Kvm::open_with_resolver(&k, &c, Some(bad)).unwrap_err();
    assert_eq!(e.to_string(), "bad namelist: no symbol kernbase");
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

/// A recursive PML4 slot (FreeBSD keeps one) is a loop in the page-table
/// graph; a walk still ends, and reads the PML4 page itself.
#[test]
fn page_table_loop_terminates() {
    let mut m = Amd64::new(2 << 20, Fill::Pattern);
    let root = m.pt.root;
    m.ram.set(root + 256 * 8, 8, false, root | 0x3);
    let s = Scratch::new("loop");
    let d = m.full_dump(false);
    let kvm = open(&s, &m, "core", &d);
    let rec = 0xffff_8000_0000_0000 | (256 << 39) | (256 << 30) | (256 << 21) | (256 << 12);
    let mut page = vec![0u8; PAGE as usize];
    kvm.read_exact(rec, &mut page).unwrap();
    assert_eq!(page, m.ram.page(root));
}

/// kvm_walk_pages reports exactly the model's pages, in order, for every
/// format, and stops when the callback says so.
#[test]
fn walk_pages_match_model() {
    let m = Amd64::new(2 << 20, Fill::Pattern);
    let s = Scratch::new("walk");
    for d in [
        m.full_dump(false),
        m.minidump(1),
        m.minidump(2),
        m.minidump(3),
    ] {
        let kvm = open(&s, &m, "core", &d);
        let want = m.expected_pages(&d);
        // The model's list exercises every kind of page.
        use kvm::walk::prot::EXECUTE;
        assert!(
            want.len() > 100,
            "version {}: {} pages",
            d.version,
            want.len()
        );
        assert!(want.iter().any(|p| p.prot & EXECUTE != 0));
        // (Version 1 maps only the kernel image, all of it dumped.)
        assert!(d.version == 1 || want.iter().any(|p| p.offset.is_none()));
        assert!(want.iter().any(|p| p.kmap_vaddr == 0 && p.offset.is_some()));
        let got = fixture::assert_walk(&kvm, &want, &format!("version {}", d.version));
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
}
