//! mips minidumps, versions 1 and 2, of o32, n32 and n64 kernels of both
//! byte orders, through the Rust API and the C ABI, checked against the
//! fixture model: the unmapped segments (KSEG0, KSEG1, XKPHYS), the PTE
//! section, must-fail reads, `kvm_walk_pages`, and lying headers.

mod fixture;
use fixture::c::{hex, run_capi_test};
use fixture::mips::*;
use fixture::{open, open_err, Miss, Rng, Scratch, PAGE};
use kvm::{Error, Fault, Kvm};
use std::fmt::Write as _;

/// Regions worth reading: (start, length).
fn regions(m: &Mips) -> Vec<(u64, u64)> {
    let (v, f) = (m.va, m.f);
    let mut r = vec![
        // Low memory through KSEG0 and KSEG1: dumped below phys_avail[0],
        // then only what the kernel map or uma reaches.
        (v.kseg0, PHYS_AVAIL0 + 2 * PAGE),
        (v.kseg1, PHYS_AVAIL0 + 2 * PAGE),
        (v.kseg0 + k4_pa(0) - PAGE, 18 * PAGE),
        (v.kseg0 + LOW_RAM[0].1 - 2 * PAGE, 4 * PAGE),
        (v.kseg0 + LOW_RAM[1].0 - 2 * PAGE, 4 * PAGE),
        (v.kseg0 + 0x0220_0000 - PAGE, 14 * PAGE),
        (v.kseg0 + 0x2000_0000 - PAGE, 2 * PAGE),
        (v.kseg1 + 0x2000_0000 - PAGE, 2 * PAGE),
        // Kernel VM.
        (v.kernbase - 2 * PAGE, 4 * PAGE),
        (v.k4 - PAGE, 18 * PAGE),
        (v.khigh - PAGE, 66 * PAGE),
        (v.kempty - PAGE, f.nbpdr() + 2 * PAGE),
        (v.klast - PAGE, 3 * PAGE),
    ];
    if f.elf64() {
        let high = f.high_ram().0;
        r.extend([
            (XKPHYS_CACHED, PHYS_AVAIL0 + 2 * PAGE),
            (XKPHYS_CACHED + k4_pa(0) - PAGE, 18 * PAGE),
            // Uncached (attribute 2) XKPHYS, over the RAM above 4 GiB.
            (0x9000_0000_0000_0000 | high, 0x10_0000 + PAGE),
            (0x7fff_ffff_ffff_f000, 2 * PAGE),
            (0xbfff_ffff_ffff_f000, 2 * PAGE),
            (0xffff_ffff_7fff_f000, 2 * PAGE),
        ]);
    } else {
        r.extend([(0x7fff_f000, 2 * PAGE), (0xffff_e000, 4 * PAGE)]);
    }
    r
}

/// Checks one read against the model.
fn check(kvm: &Kvm, m: &Mips, d: &Dump, va: u64, len: u64) {
    fixture::assert_read(kvm, va, len, m.expect(d, va, len), |a| m.pa_of(a));
}

/// Fixed probes across page, segment and page-table-page boundaries, then
/// 2000 random reads in the regions.
fn check_all(kvm: &Kvm, m: &Mips, d: &Dump) {
    let (v, f) = (m.va, m.f);
    let mut probes = vec![
        (v.version, VERSION.len() as u64),
        (v.k4, 16 * PAGE),
        (v.k4 + 4 * PAGE - 3, 2 * PAGE),
        (v.k4 + 8 * PAGE - 8, 16),
        (v.k4 + 13 * PAGE - 8, 16),
        (v.khigh, 64 * PAGE),
        (v.klast, PAGE),
        (v.klast + PAGE - 4, 8),
        (v.kseg0 + 0x9f_fff8, 16),
        (f.seg(0x9fff_fff8), 16),
        (v.kseg0, 1),
        (v.kseg1 + KERNPHYS, 2 * PAGE),
        (0, 1),
    ];
    if f.elf64() {
        probes.extend([(XKPHYS_CACHED | 0x10_0000, PAGE), (1 << 32, 8)]);
    } else {
        probes.extend([(1 << 32, 8), (v.version | 1 << 32, 8), (0xffff_fff8, 16)]);
    }
    for (va, len) in probes {
        check(kvm, m, d, va, len);
    }
    fixture::random_reads(&regions(m), 2000, |va, len| check(kvm, m, d, va, len));
}

fn minidump(f: Flavour, version: u32) {
    let m = Mips::new(f);
    let s = Scratch::new(&format!("mips-{f:?}-v{version}"));
    let d = m.minidump(version);
    let kvm = open(&s, &m.kernel(), &d.bytes).unwrap();
    assert_eq!(kvm.backend(), f.backend());
    check_all(&kvm, &m, &d);
    // The PTE pages lie below phys_avail[0]: read through KSEG0 they are
    // the PTE section the dump holds.
    let mut page = vec![0u8; PAGE as usize];
    kvm.read_exact(v_kseg0(&m, m.pte_pages[0]), &mut page)
        .unwrap();
    assert!(
        page == m.ram.page(m.pte_pages[0]),
        "{f:?}: PTE page via KSEG0"
    );
}

fn v_kseg0(m: &Mips, pa: u64) -> u64 {
    m.va.kseg0 + pa
}

#[test]
fn o32_big_endian() {
    for version in [1, 2] {
        minidump(Flavour::new(Abi::O32, true), version);
    }
}

#[test]
fn o32_little_endian() {
    for version in [1, 2] {
        minidump(Flavour::new(Abi::O32, false), version);
    }
}

#[test]
fn n32_big_endian() {
    for version in [1, 2] {
        minidump(Flavour::new(Abi::N32, true), version);
    }
}

#[test]
fn n32_little_endian() {
    for version in [1, 2] {
        minidump(Flavour::new(Abi::N32, false), version);
    }
}

#[test]
fn n64_big_endian() {
    for version in [1, 2] {
        minidump(Flavour::new(Abi::N64, true), version);
    }
}

#[test]
fn n64_little_endian() {
    for version in [1, 2] {
        minidump(Flavour::new(Abi::N64, false), version);
    }
}

/// The bytes of the dump are in the kernel's order: the PTE section, the
/// bitmap's words and dump_avail of a big-endian dump differ from a
/// little-endian one of the same machine (so no test passes by reading
/// one order only).
#[test]
fn byte_order_shows_in_every_section() {
    for abi in [Abi::O32, Abi::N32, Abi::N64] {
        let be = Mips::new(Flavour::new(abi, true)).minidump(2).bytes;
        let le = Mips::new(Flavour::new(abi, false)).minidump(2).bytes;
        assert_eq!(be.len(), le.len(), "{abi:?}");
        let differ = |from: usize| be[from..from + PAGE as usize] != le[from..from + PAGE as usize];
        // Header, msgbuf (4 pages: its size is not page-aligned), dump_avail.
        assert!(differ(0) && differ(5 * PAGE as usize), "{abi:?}");
    }
}

/// Error texts, for a 32-bit and a 64-bit kernel.
#[test]
fn failed_reads_say_why() {
    for f in [Flavour::new(Abi::O32, true), Flavour::new(Abi::N64, false)] {
        let m = Mips::new(f);
        let s = Scratch::new("mips-errors");
        let kvm = open(&s, &m.kernel(), &m.minidump(2).bytes).unwrap();
        let msg = |va: u64| kvm.read(va, &mut [0u8; 8]).unwrap_err().to_string();
        let v = m.va;
        // An unmapped kernel PTE holds PTE_G, not 0.
        let k4_3 = v.k4 + 3 * PAGE;
        assert_eq!(m.pte(k4_3), 1, "{f:?}");
        let index = (k4_3 - v.kernbase) / PAGE;
        assert_eq!(
            msg(k4_3),
            format!(
                "invalid address ({k4_3:#x}): not mapped: PTE entry {index} is not valid (0x1)"
            )
        );
        // Device memory: mapped, not RAM, not dumped.
        let k4_12 = v.k4 + 12 * PAGE;
        assert_eq!(
            msg(k4_12),
            format!(
                "invalid address ({k4_12:#x}): mapped to physical address {MMIO:#x}, which is \
                 not in the dump"
            )
        );
        // RAM reached through KSEG0 that the kernel did not dump.
        let undumped = v.kseg0 + 0x0240_0000;
        assert_eq!(
            fixture::fault_at(&kvm, undumped),
            Fault::NotInDump { pa: 0x0240_0000 }
        );
        // Past kernel_vm_end.
        assert!(msg(v.kvm_end).contains("outside the"), "{}", msg(v.kvm_end));
        let user = 0x0040_0000;
        let below = if f.elf64() {
            format!(
                "invalid address ({user:#x}): not mapped: not in XKPHYS, KSEG0 or KSEG1 and \
                 below kernbase ({:#x}): a mips minidump holds only the kernel map and the \
                 unmapped segments",
                v.kernbase
            )
        } else {
            format!(
                "invalid address ({user:#x}): not mapped: not in KSEG0 or KSEG1 and below \
                 kernbase (0xc0000000): a mips minidump holds only the kernel map and the \
                 unmapped segments"
            )
        };
        assert_eq!(msg(user), below);
        if !f.elf64() {
            // A 64-bit address on a 32-bit kernel, even KSEG0's sign-extended form.
            for va in [1u64 << 32, 0xffff_ffff_8010_0000] {
                assert_eq!(
                    msg(va),
                    format!(
                        "invalid address ({va:#x}): out of range: a 32-bit mips kernel's \
                         virtual addresses are 32-bit; this one lies at or above 4 GiB"
                    )
                );
            }
            let e = kvm.read(0xffff_fff8, &mut [0u8; 16]).unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::Translate {
                        va: 0xffff_fff8,
                        ..
                    }
                ),
                "{e}"
            );
        } else {
            // The compat segments and XKPHYS with any attribute.
            let mut a = [0u8; 16];
            let mut b = [0u8; 16];
            kvm.read_exact(v.version, &mut a).unwrap();
            kvm.read_exact(
                0xb800_0000_0000_0000 | (v.version & KSEG0_PHYS_MASK),
                &mut b,
            )
            .unwrap();
            assert_eq!(a, b);
        }
    }
}

/// kvm_walk_pages reports the model's PTEs, then the dumped pages only a
/// direct segment reaches, for every ABI, byte order and version.
#[test]
fn walk_pages_match_model() {
    let s = Scratch::new("mips-walk");
    for f in Flavour::ALL {
        let m = Mips::new(f);
        for version in [1, 2] {
            let d = m.minidump(version);
            let kvm = open(&s, &m.kernel(), &d.bytes).unwrap();
            let want = m.expected_pages(&d);
            let what = format!("{f:?} v{version}");
            assert!(
                want.iter().any(|p| p.offset.is_none()),
                "{what}: undumped pages exist"
            );
            assert!(
                want.iter().any(|p| p.kmap_vaddr == 0),
                "{what}: direct-segment pages exist"
            );
            assert!(
                want.iter().any(|p| p.prot & kvm::prot::WRITE == 0),
                "{what}: read-only pages exist"
            );
            if !f.elf64() {
                // The high RAM is mapped, but no direct address reaches it.
                assert!(
                    want.iter()
                        .any(|p| p.paddr >= f.high_ram().0 && p.dmap_vaddr == 0),
                    "{what}"
                );
            }
            fixture::assert_walk(&kvm, &want, &what);
        }
    }
}

/// Symbols keep the kernel's class (32-bit values zero-extended); native
/// only on a host of the same ABI and byte order; no displacement.
#[test]
fn symbols_native_and_kerndisp() {
    let s = Scratch::new("mips-syms");
    for f in Flavour::ALL {
        let m = Mips::new(f);
        let kvm = open(&s, &m.kernel(), &m.minidump(2).bytes).unwrap();
        let version = kvm.symbol("_version").unwrap();
        assert_eq!(version.value, m.va.version);
        assert_eq!(version.value >> 32 == 0, !f.elf64(), "{f:?}");
        assert_eq!(kvm.symbol("local_counter").unwrap().n_type, 6);
        let host = native_host();
        assert_eq!(kvm.native(), host == Some(f), "{f:?}");
        assert_eq!(kvm.kerndisp(), 0);
        // kernel_vm_end, a pointer-sized word in the kernel's byte order.
        let at = kvm.symbol("kernel_vm_end").unwrap().value;
        let mut w = vec![0u8; if f.elf64() { 8 } else { 4 }];
        kvm.read_exact(at, &mut w).unwrap();
        if !f.big_endian {
            w.reverse();
        }
        let got = w.iter().fold(0u64, |a, &b| a << 8 | u64::from(b));
        assert_eq!(got, m.va.kvm_end, "{f:?}");
    }
}

/// The flavour this test runs on, if it is a mips host.
fn native_host() -> Option<Flavour> {
    let be = cfg!(target_endian = "big");
    if cfg!(any(target_arch = "mips", target_arch = "mips32r6")) {
        Some(Flavour::new(Abi::O32, be))
    } else if cfg!(any(target_arch = "mips64", target_arch = "mips64r6")) {
        let abi = if cfg!(target_pointer_width = "64") {
            Abi::N64
        } else {
            Abi::N32
        };
        Some(Flavour::new(abi, be))
    } else {
        None
    }
}

fn put(b: &mut [u8], off: usize, size: usize, be: bool, v: u64) {
    let bytes = if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let bytes = if be {
        &bytes[8 - size..]
    } else {
        &bytes[..size]
    };
    b[off..off + size].copy_from_slice(bytes);
}

#[test]
fn lying_minidump_headers() {
    let s = Scratch::new("mips-badmini");
    for f in Flavour::FOUR {
        let m = Mips::new(f);
        let k = m.kernel();
        let good = m.minidump(2).bytes;
        let be = f.big_endian;
        let name = format!("{}: ", f.backend());
        let err = |v: &[u8], want: &str| open_err(&s, &k, v, &[&name, want]);
        err(&good[..100], "too short for the header page");
        for version in [0, 3] {
            let mut v = good.clone();
            put(&mut v, 0x18, 4, be, version);
            err(&v, &format!("unknown version {version} (expected 1 or 2)"));
        }
        let mut v = good.clone();
        put(&mut v, 0x1c, 4, be, u64::from(u32::MAX)); // msgbufsize
        err(&v, "lies past the end");
        let mut v = good.clone();
        put(&mut v, 0x20, 4, be, u64::from(u32::MAX - 4095)); // bitmapsize
        err(&v, "bitmap");
        let mut v = good.clone();
        put(&mut v, 0x24, 4, be, 0x7fff_f000); // ptesize
        err(&v, "the PTE section (2147479552 bytes");
        let mut v = good.clone();
        put(&mut v, 0x40, 4, be, 0x7fff_0000); // dumpavailsize
        err(&v, "lies past the end");
        let mut v = good.clone();
        put(&mut v, 0x28, 8, be, m.va.kernbase + 8); // kernbase
        err(&v, "is not page-aligned");
        let mut v = good.clone();
        let top = if f.elf64() { u64::MAX } else { 0xffff_ffff };
        put(&mut v, 0x28, 8, be, top & !0xfff); // the PTEs run past the top
        err(&v, "run past the top of the");
        err(
            &good[..good.len() - 2 * PAGE as usize],
            "truncated dump or corrupt bitmap",
        );
        // A dump of the other byte order (the magic is bytes, the rest is not).
        let other = Mips::new(Flavour::new(f.abi, !f.big_endian))
            .minidump(2)
            .bytes;
        err(
            &other,
            &format!(
                "reads as version 2 in the other byte order, so the dump was written by a \
                 {}-endian kernel",
                if be { "little" } else { "big" }
            ),
        );
    }
}

/// The kernel image decides the PTE size: an o32 kernel with the dump of
/// the same machine's n32 build (8-byte PTEs) is refused, since its
/// `version` cannot be read back; opened anyway, reads give bytes or
/// errors, never a panic or a read outside the file.
#[test]
fn wrong_abi_kernel_does_not_crash() {
    let s = Scratch::new("mips-abi");
    for be in [true, false] {
        let o32 = Mips::new(Flavour::new(Abi::O32, be));
        let n32 = Mips::new(Flavour::new(Abi::N32, be));
        for (kernel, dump, m) in [
            (o32.kernel(), n32.minidump(2).bytes, &o32),
            (n32.kernel(), o32.minidump(1).bytes, &n32),
        ] {
            let kvm = kvm::OpenOptions::new()
                .verify_kernel(false)
                .open(s.file("kernel", &kernel), s.file("core", &dump))
                .unwrap();
            assert_eq!(kvm.backend(), m.f.backend());
            let mut rng = Rng(7);
            for (start, size) in regions(m) {
                for _ in 0..100 {
                    let _ = kvm.read(start + rng.below(size), &mut [0u8; 64]);
                }
            }
            let _ = kvm.walk_pages(|_| true);
        }
    }
}

/// A mips kernel with another architecture's dump, and the reverse.
#[test]
fn mismatched_kernel_and_core() {
    use fixture::amd64::Amd64;
    let s = Scratch::new("mips-mismatch");
    let amd = Amd64::new(2 << 20, fixture::Fill::Pattern);
    let m = Mips::new(Flavour::new(Abi::O32, true));
    open_err(
        &s,
        &m.kernel(),
        &amd.minidump(3).bytes,
        &["kernel is ELF32 big-endian mips", "minidump FreeBSD/amd64"],
    );
    open_err(
        &s,
        &amd.kernel(),
        &m.minidump(2).bytes,
        &[
            "kernel is ELF64 little-endian x86-64",
            "minidump FreeBSD/mips",
        ],
    );
}

/// Expectations for tests/c/capi_test.c (format documented in that file).
fn expectations(m: &Mips, d: &Dump) -> String {
    let v = m.va;
    let mut e = String::new();
    writeln!(e, "native {}", u8::from(native_host() == Some(m.f))).unwrap();
    for (name, value, ntype) in [
        ("version", v.version, 7),
        ("_version", v.version, 7),
        ("panic", v.text + 0x40, 5),
        ("bss_counter", v.bss, 9),
        ("local_counter", v.local, 6),
        ("k4_pages", v.k4, 3),
    ] {
        writeln!(e, "sym {name} {value:x} {ntype}").unwrap();
    }
    writeln!(e, "nosym no_such_symbol").unwrap();
    for &(a, len) in &[
        (v.version, VERSION.len() as u64),
        (v.k4, 3 * PAGE),
        (v.k4 + 2 * PAGE + 100, PAGE),
        (v.k4 + 7 * PAGE, 2 * PAGE),
        (v.k4 + 13 * PAGE - 8, 16),
        (v.khigh + 0x1000, 0x3000),
        (v.kseg1 + 0x10_0000, 64),
        (v.kseg0 + 0x0240_0000, 8),
        (v.klast, 64),
        (0x40_0000, 8),
        (1 << 32, 8),
    ] {
        match m.expect(d, a, len) {
            Ok(b) => writeln!(e, "read {a:x} {len} {}", hex(&b)).unwrap(),
            Err(Miss::Unmapped(at)) => writeln!(e, "fail {a:x} {len} ({at:#x})").unwrap(),
            Err(Miss::NotDumped(at)) => {
                writeln!(e, "fail {a:x} {len} ({at:#x}): mapped to physical").unwrap()
            }
        }
    }
    writeln!(e, "vtop {:x} {:x}", v.k4, k4_pa(0)).unwrap();
    writeln!(e, "vtop {:x} {:x}", v.version, v.version - v.kseg0).unwrap();
    writeln!(
        e,
        "phys {:x} 16 {}",
        KERNPHYS,
        hex(&m.ram.read(KERNPHYS, 16))
    )
    .unwrap();
    writeln!(e, "walkcount {}", m.expected_pages(d).len()).unwrap();
    writeln!(
        e,
        "threads {:x} {} {}",
        v.version,
        VERSION.len(),
        hex(VERSION)
    )
    .unwrap();
    writeln!(e, "resolve version {:x}", v.version).unwrap();
    e
}

/// tests/c/capi_test.c, linked with libkvm.so and libkvm.a, on an o32
/// big-endian v2 minidump.
#[test]
fn c_program_on_a_mips_dump() {
    let s = Scratch::new("mips-capi");
    let m = Mips::new(Flavour::new(Abi::O32, true));
    let d = m.minidump(2);
    let kernel = s.file("mips.kernel", &m.kernel());
    let core = s.file("mips", &d.bytes);
    run_capi_test(&kernel, &core, &expectations(&m, &d));
}

/// 64 MiB machines for benchmarks build and read as the model says, and
/// the spare kernel data area is mapped and dumped.
#[test]
fn big_ram_machines_and_the_spare_area() {
    let s = Scratch::new("mips-big");
    for f in [Flavour::new(Abi::O32, false), Flavour::new(Abi::N64, true)] {
        let mut m = Mips::with_big_ram(f, f.big_ram() + 0x0400_0000);
        let spare: Vec<u8> = (0..0x1_0000u32).map(|i| (i * 7) as u8).collect();
        m.write_virt(m.va.spare, &spare);
        let d = m.minidump(2);
        let kvm = open(&s, &m.kernel(), &d.bytes).unwrap();
        let base = Mips::new(f).va.kvm_end;
        for va in [base, base + 0x20_0000 - 8, base + 0x3ff_f000] {
            check(&kvm, &m, &d, va, 16);
        }
        let mut got = vec![0u8; spare.len()];
        kvm.read_exact(m.va.spare, &mut got).unwrap();
        assert!(got == spare, "{f:?}: the spare area");
    }
}
