//! arm (32-bit) ELF full dumps (ARMv4 and ARMv6 tables, with and without
//! `PT_DUMP_DELTA`, the kernel loaded where it was linked or elsewhere) and
//! minidumps v1 and v2 (both entry formats, and headers from before
//! `mmuformat`) through the Rust API and the C ABI, checked against the
//! fixture model; page walks; mismatched pairs and lying headers.

mod fixture;
use fixture::arm::*;
use fixture::c::{hex, run_capi_test};
use fixture::{open, open_err, Miss, Rng, Scratch, PAGE};
use kvm::{Fault, Kvm};
use std::fmt::Write as _;

/// Regions worth reading: (start, length).
fn regions() -> Vec<(u64, u64)> {
    let v = VA;
    vec![
        (KERNBASE - 2 * PAGE, KERNSIZE + 4 * PAGE),
        (v.k4 - PAGE, 18 * PAGE),
        (v.large - PAGE, 0x2_0000 + 2 * PAGE),
        (v.sect - PAGE, (3 << 20) + 2 * PAGE),
        (v.sup - PAGE, (16 << 20) + 2 * PAGE),
        (v.klast - (1 << 20), (1 << 20) + 2 * PAGE),
        (v.kvm_end - PAGE, 2 * PAGE),
        (0xffff_e000, 0x4000),
    ]
}

fn check(kvm: &Kvm, m: &Arm, d: &Dump, va: u64, len: u64) {
    fixture::assert_read(kvm, va, len, m.expect(d, va, len), |a| m.model_pa(a));
}

/// Fixed probes across page, large-page, section, supersection and map
/// boundaries, plus 2000 random reads in the regions.
fn check_all(kvm: &Kvm, m: &Arm, d: &Dump) {
    let v = VA;
    for (va, len) in [
        (v.version, VERSION.len() as u64),
        (v.straddle, 0x1000),
        (KERNBASE + (1 << 20) - 4, 8),
        (v.k4, 16 * PAGE),
        (v.k4 + 4 * PAGE - 3, 2 * PAGE),
        (v.k4 + 7 * PAGE - 8, 2 * PAGE),
        (v.k4 + 13 * PAGE - 8, 16),
        (v.large + 0x1000 - 4, 8),
        (v.large + 0xfff8, 16),
        (v.large + 0x1_fff8, 16),
        (v.sect + (1 << 20) - 8, 16),
        (v.sect + (2 << 20) - 8, 16),
        (v.sect_hole, 8),
        (v.sup + (1 << 20) - 8, 16),
        (v.sup + (5 << 20) + 0x1234, 0x3000),
        (v.sup + (16 << 20) - 8, 16),
        (v.klast, PAGE),
        (v.klast - 8, 16),
        (KERNBASE - 8, 16),
        (v.kvm_end - 8, 16),
        (0xffff_fff8, 16),
        (1 << 32, 8),
        (v.version | 1 << 32, 8),
        (0, 1),
    ] {
        check(kvm, m, d, va, len);
    }
    fixture::random_reads(&regions(), 2000, |va, len| check(kvm, m, d, va, len));
}

/// Both formats, the kernel loaded at `kernphys`, with and without
/// `PT_DUMP_DELTA`.
fn full_dumps(kernphys: u64) {
    for pmap in [Pmap::V4, Pmap::V6] {
        let m = Arm::loaded_at(pmap, kernphys);
        for delta in [true, false] {
            let s = Scratch::new(&format!("arm-full-{pmap:?}-{kernphys:x}-{delta}"));
            let d = m.full_dump(delta);
            let kvm = open(&s, &m.kernel(), &d.bytes).unwrap();
            assert_eq!(kvm.backend(), "arm ELF full dump");
            check_all(&kvm, &m, &d);
            let want = m.expected_pages(&d);
            assert!(want.len() > 50, "{} pages", want.len());
            let what = format!("{pmap:?} full dump, kernel at {kernphys:#x}, delta {delta}");
            fixture::assert_walk(&kvm, &want, &what);
        }
    }
}

/// A kernel loaded 4 MiB above where it was linked: only `PT_DUMP_DELTA`
/// (or a search) finds `kernel_l1pa`; libkvm without the header reads it
/// at the linked address, which holds something else.
#[test]
fn full_dumps_kernel_moved() {
    full_dumps(KERNPHYS);
    let m = Arm::new(Pmap::V6);
    let linked = VA.kernel_l1pa - KERNBASE + LINKED_PHYS;
    let value = m.ram.get(linked, 4, false);
    assert_ne!(value, KERNBASE + m.l1 - KERNPHYS, "libkvm's place is wrong");
}

#[test]
fn full_dumps_kernel_where_linked() {
    full_dumps(LINKED_PHYS);
}

fn minidumps(pmap: Pmap) {
    let m = Arm::new(pmap);
    for version in [1, 2] {
        let s = Scratch::new(&format!("arm-mini-{pmap:?}-v{version}"));
        let d = m.minidump(version);
        let kvm = open(&s, &m.kernel(), &d.bytes).unwrap();
        assert_eq!(kvm.backend(), "arm minidump");
        check_all(&kvm, &m, &d);
        let want = m.expected_pages(&d);
        assert!(want.len() > 4000, "{} pages", want.len());
        assert!(want.iter().any(|p| p.offset.is_none()), "undumped pages");
        fixture::assert_walk(&kvm, &want, &format!("{pmap:?} minidump v{version}"));
    }
}

#[test]
fn minidumps_v4() {
    minidumps(Pmap::V4);
}

#[test]
fn minidumps_v6() {
    minidumps(Pmap::V6);
}

/// An XScale kernel's minidump: its `pmap_dump_kextract` writes every
/// entry with `L2_S_PROTO`, XScale's extended small page (type 3), which
/// libkvm refuses ("pte not supported"); read as small pages.
#[test]
fn xscale_minidump() {
    let m = Arm::new(Pmap::V4);
    let s = Scratch::new("arm-xscale");
    let mut d = m.minidump(1);
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as u64;
    let round = |x: u64| x.next_multiple_of(PAGE);
    // Header page, message buffer, bitmap, then the PTE section.
    let (msgbuf, bitmap, ptes) = (
        u32_at(&d.bytes, 0x1c),
        u32_at(&d.bytes, 0x20),
        u32_at(&d.bytes, 0x24),
    );
    let at = (PAGE + round(msgbuf) + round(bitmap)) as usize;
    let mut small = 0;
    for e in d.bytes[at..at + ptes as usize].chunks_exact_mut(4) {
        if e[0] & 3 == 2 {
            e[0] |= 3;
            small += 1;
        }
    }
    assert!(small > 1000, "{small} small pages");
    let kvm = open(&s, &m.kernel(), &d.bytes).unwrap();
    check_all(&kvm, &m, &d);
}

/// A version 1 dump from before `arch` and `mmuformat` (both 0) is read
/// with ARMv6 entries, as libkvm does.
#[test]
fn minidump_without_mmuformat() {
    let m = Arm::new(Pmap::V6);
    let s = Scratch::new("arm-mini-old");
    let d = m.minidump_with(1, 0, 0);
    let kvm = open(&s, &m.kernel(), &d.bytes).unwrap();
    check_all(&kvm, &m, &d);
    fixture::assert_walk(&kvm, &m.expected_pages(&d), "v1 without mmuformat");
}

/// The 64 KiB large pages and the 16 MiB supersection translate to the
/// model's addresses in every entry they span (ARMv4 tables have both).
#[test]
fn large_pages_and_supersections() {
    let m = Arm::new(Pmap::V4);
    let s = Scratch::new("arm-wide");
    for d in [m.full_dump(true), m.minidump(2)] {
        let kvm = open(&s, &m.kernel(), &d.bytes).unwrap();
        for va in (VA.large..VA.large + 0x2_0000).step_by(0x1000) {
            assert_eq!(
                kvm.vtop(va + 0x123).unwrap(),
                m.model_pa(va).unwrap() + 0x123
            );
        }
        for va in (VA.sup..VA.sup + (16 << 20)).step_by(1 << 20) {
            assert_eq!(
                kvm.vtop(va + 0x5678).unwrap(),
                m.model_pa(va).unwrap() + 0x5678
            );
        }
    }
}

#[test]
fn symbols_native_and_kerndisp() {
    let m = Arm::new(Pmap::V6);
    let s = Scratch::new("arm-syms");
    for d in [m.full_dump(true), m.minidump(2)] {
        let kvm = open(&s, &m.kernel(), &d.bytes).unwrap();
        assert_eq!(kvm.symbol("kernbase").unwrap().value, KERNBASE);
        assert_eq!(kvm.symbol("_version").unwrap().value, VA.version);
        assert_eq!(
            kvm.native(),
            cfg!(all(target_arch = "arm", target_endian = "little"))
        );
        #[cfg(not(target_arch = "arm"))]
        assert!(!kvm.native());
        assert_eq!(kvm.kerndisp(), 0);
    }
}

/// Error texts: unmapped, outside 32 bits, below kernbase, not dumped.
#[test]
fn error_messages() {
    let m = Arm::new(Pmap::V6);
    let s = Scratch::new("arm-errors");
    let v = VA;
    for d in [m.full_dump(true), m.minidump(2)] {
        let kvm = open(&s, &m.kernel(), &d.bytes).unwrap();
        let msg = |va| kvm.read(va, &mut [0u8; 8]).unwrap_err().to_string();
        let wrapped = v.version | 1 << 32;
        assert_eq!(
            msg(wrapped),
            format!(
                "invalid address ({wrapped:#x}): out of range: arm virtual addresses are \
                 32-bit; this one lies at or above 4 GiB"
            )
        );
        let mmio = v.k4 + 12 * PAGE;
        assert_eq!(
            msg(mmio),
            format!(
                "invalid address ({mmio:#x}): mapped to physical address {MMIO:#x}, which is \
                 not in the dump"
            )
        );
        assert_eq!(
            fixture::fault_at(&kvm, v.sect_hole),
            Fault::NotInDump { pa: HOLE.0 }
        );
        let k4_3 = v.k4 + 3 * PAGE;
        if d.kmap.is_some() {
            let index = (k4_3 - KERNBASE) / PAGE;
            assert_eq!(
                msg(k4_3),
                format!(
                    "invalid address ({k4_3:#x}): not mapped: PTE entry {index} is not valid (0x0)"
                )
            );
            assert_eq!(
                msg(0x1000),
                "invalid address (0x1000): not mapped: below kernbase (0xc0000000): an arm \
                 minidump holds only the kernel map"
            );
            assert!(msg(v.kvm_end).contains("outside the"), "{}", msg(v.kvm_end));
        } else {
            assert_eq!(
                msg(k4_3),
                format!(
                    "invalid address ({k4_3:#x}): not mapped: L2 entry {} is not valid (0x0)",
                    (k4_3 >> 12) & 0xff
                )
            );
            assert_eq!(
                msg(0x1000),
                "invalid address (0x1000): not mapped: L1 entry 0 is not valid (0x0)"
            );
        }
    }
}

#[test]
fn page_tables_not_found() {
    let s = Scratch::new("arm-noroot");
    let mut m = Arm::new(Pmap::V6);
    let k = m.kernel();
    let mut d = m.full_dump(true).bytes;
    let off = open(&s, &k, &d)
        .unwrap()
        .translate(VA.kernel_l1pa)
        .unwrap()
        .off as usize;
    d[off..off + 4].copy_from_slice(&0xc03f_0000u32.to_le_bytes());
    let want = [
        "cannot find the kernel page tables: kernel_l1pa (0xc0100100) at physical 0x80500100",
        "from PT_DUMP_DELTA",
        "does the kernel match",
    ];
    open_err(&s, &k, &d, &want);
    let d = m.full_dump(false).bytes;
    m.syms.retain(|s| s.name != "physaddr");
    open_err(&s, &m.kernel(), &d, &["no symbol physaddr"]);
    m.syms.retain(|s| s.name != "kernel_l1pa");
    open_err(&s, &m.kernel(), &d, &["no symbol kernel_l1pa"]);
}

#[test]
fn mismatched_kernel_and_core() {
    use fixture::i386::{Era, Mode, I386};
    let s = Scratch::new("arm-mismatch");
    let a = Arm::new(Pmap::V6);
    let i = I386::new(Mode::NoPae, Era::New, false);
    let arm_k = "kernel is ELF32 little-endian arm";
    let i_k = "kernel is ELF32 little-endian i386";
    open_err(
        &s,
        &i.kernel(),
        &a.full_dump(true).bytes,
        &[i_k, "core is an ELF32 little-endian arm"],
    );
    open_err(
        &s,
        &i.kernel(),
        &a.minidump(2).bytes,
        &[
            i_k,
            "core is a minidump with magic \"minidump FreeBSD/arm\"",
        ],
    );
    open_err(&s, &a.kernel(), &i.full_dump().bytes, &[arm_k, "i386"]);
    open_err(
        &s,
        &a.kernel(),
        &i.minidump(2).bytes,
        &[arm_k, "FreeBSD/i386"],
    );
}

fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn lying_minidump_headers() {
    let m = Arm::new(Pmap::V4);
    let s = Scratch::new("arm-badmini");
    let k = m.kernel();
    let good = m.minidump(2).bytes;
    let err = |v: &[u8], want: &str| open_err(&s, &k, v, &["arm minidump: ", want]);
    err(&good[..100], "too short for the header page");
    for version in [0, 3] {
        let mut v = good.clone();
        put32(&mut v, 0x18, version);
        err(&v, &format!("unknown version {version} (expected 1 or 2)"));
    }
    let mut v = good.clone();
    put32(&mut v, 0x30, 7);
    err(
        &v,
        "unknown mmuformat 7 (expected 1 for ARMv4 or 2 for ARMv6 entries, or 0)",
    );
    let mut v = good.clone();
    put32(&mut v, 0x30, 3);
    err(
        &v,
        "mmuformat 3 (ARMv6 LPAE, 8-byte entries) is not supported",
    );
    let mut v = good.clone();
    put32(&mut v, 0x1c, u32::MAX); // msgbufsize
    err(&v, "lies past the end");
    let mut v = good.clone();
    put32(&mut v, 0x20, u32::MAX - 4095); // bitmapsize
    err(&v, "bitmap");
    let mut v = good.clone();
    put32(&mut v, 0x24, 0xffff_f000); // ptesize
    err(&v, "the PTE section (4294963200 bytes");
    let mut v = good.clone();
    put32(&mut v, 0x28, 0xffff_0000); // kernbase
    err(
        &v,
        "entries from kernbase 0xffff0000 run past the top of the 32-bit",
    );
    let mut v = good.clone();
    put32(&mut v, 0x34, 0x7fff_0000); // dumpavailsize
    err(&v, "lies past the end");
    err(
        &good[..good.len() - 2 * PAGE as usize],
        "truncated dump or corrupt bitmap",
    );
}

/// A header whose mmuformat lies (ARMv4 entries read as ARMv6 and the
/// reverse) still reads bytes or fails, never panics; random reads.
#[test]
fn flipped_mmuformat_does_not_crash() {
    let s = Scratch::new("arm-flip");
    for pmap in [Pmap::V4, Pmap::V6] {
        let m = Arm::new(pmap);
        let mut v = m.minidump(1).bytes;
        put32(&mut v, 0x30, if pmap == Pmap::V4 { 2 } else { 1 });
        let kvm = kvm::OpenOptions::new()
            .verify_kernel(false)
            .open(s.file("kernel", &m.kernel()), s.file("core", &v))
            .unwrap();
        let mut rng = Rng(7);
        for (start, size) in regions() {
            for _ in 0..200 {
                let _ = kvm.read(start + rng.below(size), &mut [0u8; 64]);
            }
        }
        let _ = kvm.walk_pages(|_| true);
    }
}

/// Expectations for tests/c/capi_test.c.
fn expectations(m: &Arm, d: &Dump, resolve: &[(&str, u64)]) -> String {
    let v = VA;
    let mut e = String::new();
    let native = cfg!(all(target_arch = "arm", target_endian = "little"));
    writeln!(e, "native {}", u8::from(native)).unwrap();
    for (name, value, ntype) in [
        ("version", v.version, 7),
        ("_version", v.version, 7),
        ("kernbase", KERNBASE, 3),
        ("panic", v.text + 0x40, 5),
        ("bss_counter", v.bss, 9),
        ("local_counter", v.local, 6),
    ] {
        writeln!(e, "sym {name} {value:x} {ntype}").unwrap();
    }
    writeln!(e, "nosym no_such_symbol").unwrap();
    for &(a, len) in &[
        (v.version, VERSION.len() as u64),
        (v.straddle, 0x1000),
        (v.k4, 3 * PAGE),
        (v.k4 + 2 * PAGE + 100, PAGE),
        (v.k4 + 13 * PAGE - 8, 16),
        (v.large + 0xfff8, 16),
        (v.sect + (1 << 20) - 8, 16),
        (v.sup + (3 << 20) - 8, 16),
        (v.klast, 64),
        (0xffff_fff8, 16),
        (v.version | 1 << 32, 8),
    ] {
        match m.expect(d, a, len) {
            Ok(b) => writeln!(e, "read {a:x} {len} {}", hex(&b)).unwrap(),
            Err(Miss::Unmapped(at)) if at >> 32 != 0 => {
                writeln!(e, "fail {a:x} {len} ({at:#x}): out of range").unwrap()
            }
            Err(Miss::Unmapped(at)) => writeln!(e, "fail {a:x} {len} ({at:#x})").unwrap(),
            Err(Miss::NotDumped(at)) => {
                writeln!(e, "fail {a:x} {len} ({at:#x}): mapped to physical").unwrap()
            }
        }
    }
    let pa = m.model_pa(v.version).unwrap();
    writeln!(e, "vtop {:x} {pa:x}", v.version).unwrap();
    writeln!(e, "phys {pa:x} 16 {}", hex(&VERSION[..16])).unwrap();
    writeln!(
        e,
        "threads {:x} {} {}",
        v.version,
        VERSION.len(),
        hex(VERSION)
    )
    .unwrap();
    writeln!(e, "walkcount {}", m.expected_pages(d).len()).unwrap();
    for (name, value) in resolve {
        writeln!(e, "resolve {name} {value:x}").unwrap();
    }
    e
}

/// tests/c/capi_test.c on an ARMv6 full dump without PT_DUMP_DELTA (the
/// resolver gives kernel_l1pa, kernbase and physaddr) and an ARMv4
/// minidump.
#[test]
fn c_program_on_arm_dumps() {
    let s = Scratch::new("arm-capi");
    let v6 = Arm::new(Pmap::V6);
    let v4 = Arm::new(Pmap::V4);
    let cases = [
        (
            "full-v6",
            &v6,
            v6.full_dump(false),
            vec![
                ("kernbase", KERNBASE),
                ("physaddr", LINKED_PHYS),
                ("kernel_l1pa", VA.kernel_l1pa),
            ],
        ),
        ("mini-v4", &v4, v4.minidump(2), vec![]),
    ];
    for (name, m, dump, needed) in cases {
        let mut resolve = vec![("version", VA.straddle)];
        resolve.extend(needed);
        let kernel = s.file(&format!("{name}.kernel"), &m.kernel());
        let core = s.file(name, &dump.bytes);
        run_capi_test(&kernel, &core, &expectations(m, &dump, &resolve));
    }
}
