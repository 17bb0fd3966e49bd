//! powerpc64 minidumps (BE and LE kernels, mmu_g5 and mmu_phyp, relocated
//! kernels and kernels at their link address, versions 1 and 2) and the
//! powerpc and powerpc64 ELF dumps, checked against the fixture model:
//! reads, must-fail reads, kerndisp and symbols, page walks, the C API and
//! bad headers.

mod fixture;
use fixture::c::{hex, run_capi_test, walk_ends};
use fixture::powerpc::{
    virt, Config, Ppc64Machine, VirtMachine, COLLIDE, DATA, DATA_AREA, DMAP_BASE, KDATA_FREE, KVA,
    LOAD, MMIO, TEXT, VERSION, VM,
};
use fixture::{Scratch, PAGE};
use kvm::Kvm;
use std::fmt::Write as _;

fn configs() -> Vec<(Config, u32)> {
    let c = |big_endian, phyp, relocated, ptegs_log2| Config {
        big_endian,
        phyp,
        relocated,
        ptegs_log2,
    };
    vec![
        (c(true, false, true, 11), 2),
        (c(false, true, true, 11), 2),
        (c(false, false, false, 11), 1),
        (c(true, true, false, 12), 2),
        (c(false, false, true, 16), 2),
    ]
}

fn open(s: &Scratch, m: &Ppc64Machine, core: &[u8]) -> Kvm {
    Kvm::open(s.file("kernel", &m.kernel()), s.file("core", core)).unwrap()
}

#[test]
fn minidump_reads_match_model() {
    for (cfg, version) in configs() {
        let m = Ppc64Machine::new(cfg);
        let d = m.minidump(version);
        let s = Scratch::new("ppc64-reads");
        let kvm = open(&s, &m, &d.bytes);
        let what = format!("{cfg:?} v{version}");
        assert_eq!(
            kvm.backend(),
            if cfg.big_endian {
                "powerpc64 minidump"
            } else {
                "powerpc64le minidump"
            }
        );
        let native =
            cfg!(target_arch = "powerpc64") && cfg!(target_endian = "big") == cfg.big_endian;
        assert_eq!(kvm.native(), native, "{what}");
        // kvm_kerndisp is startkernel - PPC64_KERNBASE; symbols stay
        // link-time values and reads of them are displaced.
        let disp = if cfg.relocated { DMAP_BASE + LOAD } else { 0 };
        assert_eq!(kvm.kerndisp() as u64, disp, "{what}");
        assert_eq!(kvm.symbol("version").unwrap().value, DATA, "{what}");
        let mut v = vec![0u8; VERSION.len()];
        kvm.read(DATA, &mut v).unwrap();
        assert_eq!(v, VERSION, "{what}");
        let check = |va: u64, len: u64| {
            fixture::assert_read(&kvm, va, len, m.expect(&d, va, len), |a| m.pa_of(a));
        };
        let seg = KVA + 0x1000_0000;
        let mut probes = vec![
            (DATA, VERSION.len() as u64),
            (VM, 16 * PAGE),
            (seg - 8, 16),
            (VM + 4 * PAGE - 3, 2 * PAGE),
            (VM + 13 * PAGE - 8, 16),
            (DATA_AREA, 16 * PAGE),
            (DATA_AREA + 16 * PAGE - 8, 16),
            (COLLIDE + 11 * 0x800 * PAGE, PAGE),
            (COLLIDE + 12 * 0x800 * PAGE, 8),
            (COLLIDE + 7 * 0x800 * PAGE + 100, 8),
            (COLLIDE + 8 * 0x800 * PAGE - 8, 16),
            (DMAP_BASE + 0x0680_0000, 3 * PAGE),
            (DMAP_BASE + 0x1100_0000 - 8, 16),
            (DMAP_BASE + 0x0900_0000, 8),
            (KVA - 8, 8),
            (KVA + 0x5000_0000, 8),
        ];
        if cfg.relocated {
            // The 16 MiB direct-map page that holds the kernel is dumped
            // whole; the next one is not.
            probes.push((DMAP_BASE + LOAD + 0x100_0000 - 8, 16));
            probes.push((DMAP_BASE + LOAD - 8, 16));
            probes.push((0x30_0000, 0x10));
        } else {
            probes.push((0x1f_fff8, 16));
            probes.push((0x10_0000 - 8, 16));
        }
        for (va, len) in probes {
            check(va, len);
        }
        let regions = [
            (VM - PAGE, 18 * PAGE),
            (COLLIDE, 13 * 0x800 * PAGE),
            (DATA_AREA - PAGE, 18 * PAGE),
            (0x10_0000, 0x10_0000),
            (DMAP_BASE, 0x0800_0000),
        ];
        fixture::random_reads(&regions, 1500, check);
        let e = kvm.read(VM + 12 * PAGE, &mut [0u8; 4]).unwrap_err();
        assert!(
            e.to_string().contains(&format!(
                "mapped to physical address {MMIO:#x}, which is not in the dump"
            )),
            "{e}"
        );
        let e = kvm.read(VM + 3 * PAGE, &mut [0u8; 4]).unwrap_err();
        assert!(
            e.to_string()
                .contains("no valid hashed page table entry for kernel VSID"),
            "{e}"
        );
    }
}

#[test]
fn minidump_walk_pages_match_model() {
    for (cfg, version) in configs() {
        let m = Ppc64Machine::new(cfg);
        let d = m.minidump(version);
        let s = Scratch::new("ppc64-walk");
        let kvm = open(&s, &m, &d.bytes);
        let want = m.expected_pages(&d);
        assert!(want.iter().any(|p| p.offset.is_none()), "undumped pages");
        if cfg.relocated {
            assert!(want.iter().any(|p| p.len == 1 << 24), "16 MiB pages");
        }
        fixture::assert_walk(&kvm, &want, &format!("{cfg:?} v{version}"));
    }
}

#[test]
fn minidump_secondary_hash_is_used() {
    let m = Ppc64Machine::new(configs()[0].0);
    let secondary = m
        .hpt
        .values()
        .filter(|s| s.hi & fixture::powerpc::LPTE_HID != 0)
        .count();
    assert!(
        secondary >= 4,
        "the model puts collisions in secondary groups"
    );
}

#[test]
fn minidump_bad_headers() {
    let s = Scratch::new("ppc64-bad");
    let m = Ppc64Machine::new(configs()[0].0);
    let k = s.file("kernel", &m.kernel());
    let open_err = |bytes: &[u8], want: &str| {
        let e = Kvm::open(&k, s.file("core", bytes))
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{e:?} lacks {want:?}");
    };
    let good = m.minidump(2).bytes;
    let mut v = good.clone();
    v[32..40].copy_from_slice(b"mmu_radi");
    open_err(&v, "powerpc64 minidump: unsupported MMU \"mmu_radi\"");
    let mut v = good.clone();
    v[67] = 3;
    open_err(&v, "unknown version 3 (expected 1 or 2, in the big-endian");
    open_err(&good[..100], "too short for the 144-byte header");
    let mut v = good.clone();
    v[76..80].copy_from_slice(&0x3000u32.to_be_bytes());
    open_err(&v, "pmapsize 0x3000 is not a hashed page table");
    // A truncated HPT.
    let hpt_end = {
        let mut v = good.clone();
        v[76..80].copy_from_slice(&0x0800_0000u32.to_be_bytes());
        v
    };
    open_err(&hpt_end, "the hashed page table (134217728 bytes");
    open_err(
        &good[..good.len() - 4096],
        "truncated dump or corrupt bitmap",
    );
    // A little-endian kernel with a big-endian dump.
    let le = Ppc64Machine::new(configs()[1].0);
    let e = Kvm::open(s.file("lek", &le.kernel()), s.file("c", &good)).unwrap_err();
    assert!(
        e.to_string()
            .contains("powerpc64le minidump: unknown version 33554432"),
        "{e}"
    );
}

/// The C program on a little-endian powerpc64 minidump of a kernel at its
/// link address (the program expects kvm_kerndisp 0 and address 0 unmapped,
/// which a displaced kernel's dump maps, as in FreeBSD).
#[test]
fn minidump_c_abi() {
    let s = Scratch::new("ppc64-c");
    let m = Ppc64Machine::new(configs()[2].0);
    let d = m.minidump(2);
    let kernel = s.file("kernel", &m.kernel());
    let core = s.file("core", &d.bytes);
    let mut e = String::new();
    let native = cfg!(all(target_arch = "powerpc64", target_endian = "little"));
    writeln!(e, "native {}", u8::from(native)).unwrap();
    writeln!(e, "sym version {DATA:x} 7").unwrap();
    writeln!(e, "read {DATA:x} {} {}", VERSION.len(), hex(VERSION)).unwrap();
    let bad = VM + 12 * PAGE;
    writeln!(e, "fail {bad:x} 8 ({bad:#x}): mapped to physical").unwrap();
    let pages = m.expected_pages(&d);
    e += &walk_ends(&pages);
    writeln!(e, "resolve version {DATA:x}").unwrap();
    run_capi_test(&kernel, &core, &e);
}

/// (is_64, big_endian, backend name) of every ELF dump flavour.
const ELF_KINDS: [(bool, bool, &str); 3] = [
    (false, true, "powerpc ELF dump"),
    (true, true, "powerpc64 ELF dump"),
    (true, false, "powerpc64le ELF dump"),
];

#[test]
fn elf_reads_match_model() {
    for (is_64, be, name) in ELF_KINDS {
        let m = VirtMachine::new(is_64, be);
        let s = Scratch::new("ppc-elf");
        let kvm = fixture::open(&s, &m.kernel(), &m.elf_dump(false)).unwrap();
        assert_eq!(kvm.backend(), name);
        assert_eq!(kvm.kerndisp(), 0, "{name}");
        let native = if is_64 {
            cfg!(target_arch = "powerpc64") && cfg!(target_endian = "big") == be
        } else {
            cfg!(all(target_arch = "powerpc", target_endian = "big"))
        };
        assert_eq!(kvm.native(), native, "{name}");
        assert_eq!(kvm.symbol("version").unwrap().value, DATA);
        let chunks = m.chunks();
        assert_eq!(chunks.len(), 3, "{name}: data, msgbuf, kernel VM");
        let check = |va: u64, len: u64| {
            fixture::assert_read(&kvm, va, len, m.expect(va, len), |_| None);
        };
        let mut regions = Vec::new();
        for &(s0, e0) in &chunks {
            check(s0, e0 - s0);
            check(s0 - 8, 16);
            check(e0 - 8, 16);
            regions.push((s0 - PAGE, e0 - s0 + 2 * PAGE));
        }
        check(DATA, VERSION.len() as u64);
        check(TEXT, 8); // text is not dumped
        fixture::random_reads(&regions, 1000, check);
        let e = kvm.read(TEXT, &mut [0u8; 8]).unwrap_err().to_string();
        assert!(e.contains("in no PT_LOAD segment"), "{e}");
        let e = kvm.read_phys(0, &mut [0u8; 8]).unwrap_err().to_string();
        assert!(e.contains("holds virtual chunks only"), "{e}");
        // The run of kernel VM stops at the first unmapped page.
        assert_eq!(
            chunks[2],
            (m.kva.0 + virt::RUN, m.kva.0 + virt::RUN + 5 * PAGE)
        );
    }
}

#[test]
fn elf_walk_pages_match_model() {
    for (is_64, be, name) in ELF_KINDS {
        let m = VirtMachine::new(is_64, be);
        let s = Scratch::new("ppc-elf-walk");
        let kvm = fixture::open(&s, &m.kernel(), &m.elf_dump(false)).unwrap();
        fixture::assert_walk(&kvm, &m.expected_pages(), name);
    }
}

#[test]
fn elf_kerneldumpheader_is_skipped() {
    // A core not written by savecore(8) starts with the 512-byte
    // kerneldumpheader (sys/sys/kerneldump.h): magic, then architecture.
    for (is_64, be, name) in ELF_KINDS {
        let m = VirtMachine::new(is_64, be);
        let arch = match name {
            "powerpc ELF dump" => "powerpc",
            "powerpc64 ELF dump" => "powerpc64",
            _ => "powerpc64le",
        };
        let mut core = vec![0u8; 512];
        core[..20].copy_from_slice(b"FreeBSD Kernel Dump\0");
        core[20..20 + arch.len()].copy_from_slice(arch.as_bytes());
        core.extend_from_slice(&m.elf_dump(false));
        let s = Scratch::new("ppc-elf-kdh");
        let kvm = fixture::open(&s, &m.kernel(), &core).unwrap();
        assert_eq!(kvm.backend(), name);
        let mut v = vec![0u8; VERSION.len()];
        kvm.read(DATA, &mut v).unwrap();
        assert_eq!(v, VERSION, "{name}");
    }
}

#[test]
fn elf_bad_input() {
    let s = Scratch::new("ppc-elf-bad");
    let m = VirtMachine::new(false, true);
    let k = s.file("kernel", &m.kernel());
    let open_err = |bytes: &[u8], want: &str| {
        let e = Kvm::open(&k, s.file("core", bytes))
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{e:?} lacks {want:?}");
    };
    open_err(
        &m.elf_dump(true),
        "powerpc: PT_LOAD 0 has p_vaddr all ones and p_paddr 0x0: a dump of physical memory",
    );
    let good = m.elf_dump(false);
    open_err(
        &good[..100],
        "program header 1 (at 0x34 + 1 * 32) lies past the end",
    );
    let mut v = good.clone();
    v[42..44].copy_from_slice(&40u16.to_be_bytes());
    open_err(&v, "e_phentsize is 40, not 32");
    // A powerpc64 minidump with a powerpc64 kernel goes to the minidump
    // backend, never to the ELF one (libkvm's probe would take it).
    let m64 = Ppc64Machine::new(configs()[0].0);
    let kvm = open(&s, &m64, &m64.minidump(2).bytes);
    assert_eq!(kvm.backend(), "powerpc64 minidump");
    // An ELF dump of the other byte order than the kernel's.
    let le = VirtMachine::new(true, false);
    let be = VirtMachine::new(true, true);
    let e = Kvm::open(
        s.file("k2", &le.kernel()),
        s.file("c2", &be.elf_dump(false)),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("no backend reads this pair"), "{e}");
}

/// The C program on a powerpc (32-bit) ELF dump.
#[test]
fn elf_c_abi() {
    let s = Scratch::new("ppc-elf-c");
    let m = VirtMachine::new(false, true);
    let kernel = s.file("kernel", &m.kernel());
    let core = s.file("core", &m.elf_dump(false));
    let mut e = String::new();
    let native = cfg!(all(target_arch = "powerpc", target_endian = "big"));
    writeln!(e, "native {}", u8::from(native)).unwrap();
    writeln!(e, "sym version {DATA:x} 7").unwrap();
    writeln!(e, "read {DATA:x} {} {}", VERSION.len(), hex(VERSION)).unwrap();
    writeln!(
        e,
        "fail {TEXT:x} 8 ({TEXT:#x}): not mapped: in no PT_LOAD segment"
    )
    .unwrap();
    let pages = m.expected_pages();
    e += &walk_ends(&pages);
    writeln!(e, "resolve version {DATA:x}").unwrap();
    run_capi_test(&kernel, &core, &e);
}

/// A 1 GiB machine (2^17 PTE groups, as moea64 sizes the HPT for it)
/// builds and reads like the small one: its dump holds the mapped pages,
/// not the RAM.
#[test]
fn minidump_of_a_1gib_machine() {
    let cfg = Config {
        big_endian: false,
        phyp: false,
        relocated: true,
        ptegs_log2: 17,
    };
    let m = Ppc64Machine::with_ram(cfg, &[(0, 1 << 30)], fixture::Fill::Pattern);
    let d = m.minidump(2);
    let s = Scratch::new("ppc64-1g");
    let kvm = open(&s, &m, &d.bytes);
    for (va, len) in [
        (DATA, 64),
        (DATA_AREA, 2 * PAGE),
        (DMAP_BASE + (1 << 30) - 8, 16),
        (DMAP_BASE + 0x0680_0000, 8),
    ] {
        fixture::assert_read(&kvm, va, len, m.expect(&d, va, len), |a| m.pa_of(a));
    }
    fixture::assert_walk(&kvm, &m.expected_pages(&d), "1 GiB");
}

/// What the fixture offers other tests' data: `KDATA_FREE` (link-time
/// kernel data) in every dump, `DATA_AREA` (kernel VM) in minidumps, both
/// written with `write_virt` and read back through the library.
#[test]
fn data_areas_are_dumped() {
    let bytes: Vec<u8> = (0..0x1_0000u32).map(|i| (i * 7 + 3) as u8).collect();
    let s = Scratch::new("ppc-areas");
    for (cfg, version) in configs() {
        let mut m = Ppc64Machine::new(cfg);
        m.write_virt(KDATA_FREE, &bytes);
        m.write_virt(DATA_AREA, &bytes);
        let kvm = open(&s, &m, &m.minidump(version).bytes);
        for va in [KDATA_FREE, DATA_AREA] {
            let mut b = vec![0u8; bytes.len()];
            assert_eq!(kvm.read(va, &mut b).unwrap(), b.len(), "{cfg:?} {va:#x}");
            assert!(b == bytes, "{cfg:?} {va:#x}");
        }
    }
    for (is_64, be, name) in ELF_KINDS {
        let mut m = VirtMachine::new(is_64, be);
        m.write_virt(KDATA_FREE, &bytes);
        let kvm = Kvm::open(s.file("k", &m.kernel()), s.file("c", &m.elf_dump(false))).unwrap();
        let mut b = vec![0u8; bytes.len()];
        assert_eq!(kvm.read(KDATA_FREE, &mut b).unwrap(), b.len(), "{name}");
        assert!(b == bytes, "{name}");
    }
}
