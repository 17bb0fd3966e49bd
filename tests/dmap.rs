//! arm64 (4 KiB and 16 KiB granules, versions 1-3) and riscv (versions 1-2)
//! minidumps, through the Rust API and the C ABI, checked against the
//! fixture model: reads, must-fail reads, page walks and bad headers.

mod fixture;
use fixture::c::{hex, run_capi_test, walk_ends};
use fixture::dmap::{off, DmapArch, DmapMachine, Dump, ARM64_16K, ARM64_4K, MMIO, RISCV, VERSION};
use fixture::{Fill, Scratch};
use kvm::Kvm;
use std::fmt::Write as _;

/// Every (architecture, version) pair the formats define.
fn cases() -> Vec<(&'static DmapArch, u32)> {
    let mut v = Vec::new();
    for arch in [&ARM64_4K, &ARM64_16K, &RISCV] {
        for version in 1..=arch.max_version {
            // A 16 KiB granule needs the version 3 flags word.
            if arch.page_shift == 12 || version == 3 {
                v.push((arch, version));
            }
        }
    }
    v
}

fn check(kvm: &Kvm, m: &DmapMachine, d: &Dump, va: u64, len: u64) {
    fixture::assert_read(kvm, va, len, m.expect(d, va, len), |a| m.pa_of(a));
}

fn open(s: &Scratch, m: &DmapMachine, d: &Dump) -> Kvm {
    Kvm::open(s.file("kernel", &m.kernel()), s.file("core", &d.bytes)).unwrap()
}

#[test]
fn reads_match_model() {
    for (arch, version) in cases() {
        let m = DmapMachine::new(arch, Fill::Pattern);
        let d = m.minidump(version);
        let s = Scratch::new("dmap-reads");
        let kvm = open(&s, &m, &d);
        assert!(!kvm.native() || cfg!(any(target_arch = "aarch64", target_arch = "riscv64")));
        assert_eq!(kvm.kerndisp(), 0);
        let kb = arch.kernbase;
        let ps = arch.page_size();
        let l2 = 1u64 << arch.spec.levels[arch.l2].0;
        let dmap = |pa: u64| arch.dmapbase + pa - arch.ram[0].0;
        let version_va = kvm.symbol("version").unwrap().value;
        let mut probes = vec![
            (version_va, VERSION.len() as u64),
            (kb + off::VM, 16 * ps),
            (kb + off::VM + 4 * ps - 3, 2 * ps),
            (kb + off::VM + 13 * ps - 8, 16),
            (kb + off::L2BLOCK + l2 - 8, 16),
            (kb + l2 - 8, 16),
            (dmap(arch.ram[0].0 + 0x680_0000), 3 * ps),
            (dmap(arch.ram[0].1 - 8), 16),
            (dmap(arch.ram[2].0), 8),
            (kb - 8, 8),
            (m.kva_end, 8),
        ];
        if arch.l1_blocks && ps == 4096 {
            probes.push((kb + off::L1BLOCK + (8 << 20) - 8, 16));
        }
        for (va, len) in probes {
            check(&kvm, &m, &d, va, len);
        }
        let mut x = 0x1234_5678u64;
        for _ in 0..1500 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let base = [
                kb + l2,
                kb + off::VM - ps,
                kb + off::L2BLOCK,
                dmap(arch.ram[0].0),
            ][(x % 4) as usize];
            let va = base + (x >> 8) % (2 * l2);
            check(&kvm, &m, &d, va, 1 + (x >> 40) % (2 * ps));
        }
        // Messages name the address and the reason.
        let e = kvm.read(kb + off::VM + 12 * ps, &mut [0u8; 4]).unwrap_err();
        assert!(
            e.to_string().contains(&format!(
                "mapped to physical address {MMIO:#x}, which is not in the dump"
            )),
            "{e}"
        );
    }
}

#[test]
fn walk_pages_match_model() {
    for (arch, version) in cases() {
        let m = DmapMachine::new(arch, Fill::Pattern);
        let d = m.minidump(version);
        let s = Scratch::new("dmap-walk");
        let kvm = open(&s, &m, &d);
        let want = m.expected_pages(&d);
        assert!(
            want.iter().any(|p| p.kmap_vaddr == 0),
            "dmap-only pages exist"
        );
        assert!(
            want.iter().any(|p| p.offset.is_none()),
            "undumped pages exist"
        );
        fixture::assert_walk(&kvm, &want, &format!("{:?} v{version}", arch.magic));
    }
}

#[test]
fn bad_headers() {
    let s = Scratch::new("dmap-bad");
    let m = DmapMachine::new(&ARM64_4K, Fill::Pattern);
    let k = s.file("kernel", &m.kernel());
    let open_err = |bytes: &[u8], want: &str| {
        let e = Kvm::open(&k, s.file("core", bytes))
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{e:?} lacks {want:?}");
    };
    let good = m.minidump(3).bytes;
    let mut v = good.clone();
    v[76] = 2; // a 64 KiB page size: not supported
    open_err(&v, "arm64 minidump: unknown page size flag 0x2");
    let mut v = good.clone();
    v[24] = 4;
    open_err(&v, "unknown version 4 (expected 1, 2 or 3)");
    open_err(&good[..60], "too short for a minidump header");
    open_err(
        &good[..good.len() - 4096],
        "truncated dump or corrupt bitmap",
    );
    let mut v = good;
    v[36..40].copy_from_slice(&0x7fff_0000u32.to_le_bytes());
    open_err(&v, "page map");
    // riscv kernel with an arm64 core, and the reverse.
    let r = DmapMachine::new(&RISCV, Fill::Pattern);
    let e = Kvm::open(s.file("rk", &r.kernel()), s.file("c", &m.minidump(2).bytes)).unwrap_err();
    assert!(
        e.to_string().contains("riscv") && e.to_string().contains("arm64"),
        "{e}"
    );
    let mut v = r.minidump(2).bytes;
    v[24] = 3;
    let e = Kvm::open(s.file("rk", &r.kernel()), s.file("c", &v)).unwrap_err();
    assert!(
        e.to_string()
            .contains("unknown version 3 (expected 1 or 2)"),
        "{e}"
    );
}

/// The C program on arm64 (16 KiB) and riscv minidumps, shared and static.
#[test]
fn c_abi() {
    let s = Scratch::new("dmap-c");
    for (arch, version) in [(&ARM64_16K, 3), (&ARM64_4K, 2), (&RISCV, 2)] {
        let m = DmapMachine::new(arch, Fill::Pattern);
        let d = m.minidump(version);
        let kernel = s.file("kernel", &m.kernel());
        let core = s.file("core", &d.bytes);
        let version_va = m.syms[0].value;
        let mut e = String::new();
        let native = cfg!(target_arch = "aarch64") && arch.machine == object::elf::EM_AARCH64;
        writeln!(e, "native {}", u8::from(native)).unwrap();
        writeln!(e, "sym version {version_va:x} 7").unwrap();
        writeln!(e, "read {version_va:x} {} {}", VERSION.len(), hex(VERSION)).unwrap();
        let bad = arch.kernbase + off::VM + 12 * arch.page_size();
        writeln!(e, "fail {bad:x} 8 ({bad:#x}): mapped to physical").unwrap();
        let pages = m.expected_pages(&d);
        e += &walk_ends(&pages);
        writeln!(e, "resolve version {version_va:x}").unwrap();
        run_capi_test(&kernel, &core, &e);
    }
}
