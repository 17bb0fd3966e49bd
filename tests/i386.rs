//! i386 full dumps (PAE and not, pre-12 and 12+ kernel layouts) and
//! minidumps v1 and v2 through the Rust API and the C ABI, checked against
//! the fixture model; mismatched pairs and lying headers.

mod fixture;
use fixture::c::{hex, run_capi_test};
use fixture::i386::*;
use fixture::{open, open_err, Miss, Rng, Scratch, PAGE};
use kvm::{Error, Kvm, Symbol};
use std::fmt::Write as _;

/// Regions worth reading: (start, length).
fn regions(m: &I386) -> Vec<(u64, u64)> {
    let (v, sp) = (m.va, m.mode.nbpdr());
    vec![
        (v.low, 4 << 20),
        (v.text - PAGE, KERNSIZE + 2 * PAGE),
        (v.k4 - PAGE, 18 * PAGE),
        (v.ksp - PAGE, 2 * sp + 2 * PAGE),
        (v.khigh - PAGE, 2 * sp + 5 * PAGE),
        (v.klast - sp, sp + 2 * PAGE),
        (v.kernbase - 2 * PAGE, 4 * PAGE),
        (v.kvm_end - PAGE, 2 * PAGE),
        (v.ptmap, m.mode.npdeptd() * PAGE),
        (0xffff_e000, 0x4000),
    ]
}

/// Checks one read against the model.
fn check(kvm: &Kvm, m: &I386, d: &Dump, va: u64, len: u64) {
    fixture::assert_read(kvm, va, len, m.expect(d, va, len), |a| m.model_pa(a));
}

/// Fixed probes across page, superpage, PDE and map boundaries and
/// through the recursive PDEs, plus 3000 random reads in the regions.
fn check_all(kvm: &Kvm, m: &I386, d: &Dump) {
    let (v, sp) = (m.va, m.mode.nbpdr());
    let ptmap = |va: u64| v.ptmap + (va >> m.mode.pdrshift()) * PAGE;
    for (va, len) in [
        (v.version, VERSION.len() as u64),
        (v.straddle, 0x1000),
        (v.k4, 16 * PAGE),
        (v.k4 + 4 * PAGE - 3, 2 * PAGE),
        (v.k4 + 7 * PAGE - 8, 2 * PAGE),
        (v.k4 + 13 * PAGE - 8, 16),
        (v.ksp + sp - 4, 8),
        (v.ksp_hole + (1 << 20) - 4, 8),
        (v.ksp_hole + (1 << 20), 3 * PAGE),
        (v.khigh + sp - 8, 16),
        (v.khigh4 + 2 * PAGE, 2 * PAGE),
        (v.low, 8),
        (v.low + 0x9f000 - 8, 16),
        (v.low + 0x10_0000, 8),
        (v.kernbase - 8, 16),
        (v.klast, PAGE),
        (ptmap(v.ptmap), m.mode.npgptd() * PAGE),
        (ptmap(v.k4), 2 * PAGE),
        (ptmap(v.text) - 8, 16),
        (0xffff_fff8, 16),
        (1 << 32, 8),
        (v.version | 1 << 32, 8),
        (0, 1),
    ] {
        check(kvm, m, d, va, len);
    }
    fixture::random_reads(&regions(m), 3000, |va, len| check(kvm, m, d, va, len));
}

fn full_dump(mode: Mode, era: Era) {
    let m = I386::new(mode, era, false);
    let s = Scratch::new(&format!("i386-full-{mode:?}-{era:?}"));
    let d = m.full_dump();
    let kvm = open(&s, &m.kernel(), &d.bytes).unwrap();
    assert_eq!(kvm.backend(), "i386 ELF full dump");
    check_all(&kvm, &m, &d);
    if era == Era::New {
        // libkvm's "symbol - kernbase" is not where a 12+ kernel keeps it.
        let var = if mode == Mode::Pae {
            m.va.idlepdpt
        } else {
            m.va.idleptd_nopae
        };
        assert_ne!(m.ram.get(var - m.va.kernbase, 4, false), m.pt.root);
    }
}

#[test]
fn full_dump_nopae_old() {
    full_dump(Mode::NoPae, Era::Old);
}

#[test]
fn full_dump_pae_old() {
    full_dump(Mode::Pae, Era::Old);
}

#[test]
fn full_dump_nopae_12() {
    full_dump(Mode::NoPae, Era::New);
}

#[test]
fn full_dump_pae_12() {
    full_dump(Mode::Pae, Era::New);
}

/// Both kernel layouts (a v2 minidump comes from a 13+ kernel, but the
/// format does not depend on the layout); PAE machines have RAM above 4 GiB.
fn minidump(version: u32, mode: Mode) {
    for era in [Era::Old, Era::New] {
        let m = I386::new(mode, era, mode == Mode::Pae);
        let s = Scratch::new(&format!("i386-v{version}-{mode:?}-{era:?}"));
        let d = m.minidump(version);
        let kvm = open(&s, &m.kernel(), &d.bytes).unwrap();
        assert_eq!(kvm.backend(), "i386 minidump");
        check_all(&kvm, &m, &d);
    }
}

#[test]
fn minidump_v1_nopae() {
    minidump(1, Mode::NoPae);
}

#[test]
fn minidump_v1_pae() {
    minidump(1, Mode::Pae);
}

#[test]
fn minidump_v2_nopae() {
    minidump(2, Mode::NoPae);
}

#[test]
fn minidump_v2_pae() {
    minidump(2, Mode::Pae);
}

/// Symbol values are the 32-bit values zero-extended; not native on amd64.
#[test]
fn symbols_native_and_kerndisp() {
    let m = I386::new(Mode::Pae, Era::Old, false);
    let s = Scratch::new("i386-syms");
    for d in [m.full_dump(), m.minidump(2)] {
        let kvm = open(&s, &m.kernel(), &d.bytes).unwrap();
        let kernbase = Symbol {
            value: 0xc000_0000,
            n_type: 3,
        };
        assert_eq!(kvm.symbol("kernbase"), Some(kernbase));
        let version = kvm.symbol("_version").unwrap();
        assert_eq!(version.value, m.va.version);
        assert_eq!(version.value >> 32, 0, "zero-extended");
        assert_eq!(kvm.symbol("local_counter").unwrap().n_type, 6);
        assert_eq!(kvm.native(), cfg!(target_arch = "x86"));
        #[cfg(target_arch = "x86_64")]
        assert!(!kvm.native());
        assert_eq!(kvm.kerndisp(), 0);
    }
}

/// Addresses at or above 4 GiB fail clearly instead of wrapping.
#[test]
fn addresses_above_4g() {
    let m = I386::new(Mode::Pae, Era::New, false);
    let s = Scratch::new("i386-4g");
    for d in [m.full_dump(), m.minidump(2)] {
        let kvm = open(&s, &m.kernel(), &d.bytes).unwrap();
        let wrapped = m.va.version | 1 << 32;
        let e = kvm.read(wrapped, &mut [0u8; 8]).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "invalid address ({wrapped:#x}): out of range: i386 virtual addresses are \
                 32-bit; this one lies at or above 4 GiB"
            )
        );
        assert!(kvm.translate(u64::MAX).is_err());
        // A read running across 4 GiB names the first bad address.
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
    }
}

/// Error texts of the minidump backend.
#[test]
fn minidump_error_messages() {
    let m = I386::new(Mode::NoPae, Era::New, false);
    let s = Scratch::new("i386-errors");
    let kvm = open(&s, &m.kernel(), &m.minidump(2).bytes).unwrap();
    let msg = |va| kvm.read(va, &mut [0u8; 8]).unwrap_err().to_string();
    let v = m.va;
    assert_eq!(
        msg(v.low + 0x10_0000),
        "invalid address (0x100000): not mapped: below kernbase (0x800000): an i386 minidump \
         holds only the kernel map"
    );
    let k4_3 = v.k4 + 3 * PAGE;
    let index = (k4_3 - v.kernbase) / PAGE;
    assert_eq!(
        msg(k4_3),
        format!("invalid address ({k4_3:#x}): not mapped: PTE entry {index} is not valid (0x0)")
    );
    let k4_12 = v.k4 + 12 * PAGE;
    assert_eq!(
        msg(k4_12),
        format!(
            "invalid address ({k4_12:#x}): mapped to physical address {MMIO:#x}, which is not \
             in the dump"
        )
    );
    assert!(msg(v.kvm_end).contains("outside the"), "{}", msg(v.kvm_end));
}

/// A 12+ kernel whose both pmaps pass the self-consistency check: the
/// kernel's `pae_mode` decides; without it, PAE is tried first.
#[test]
fn pae_mode_decides() {
    let s = Scratch::new("i386-paemode");
    for mode in [Mode::Pae, Mode::NoPae] {
        let mut m = I386::new(mode, Era::New, false);
        m.add_decoy_tables();
        let mut d = m.full_dump();
        let k = s.file("kernel", &m.kernel());
        let kvm = Kvm::open(&k, s.file("core", &d.bytes)).unwrap();
        check_all(&kvm, &m, &d);
        // Without pae_mode, the first candidate (PAE) wins.
        let syms: Vec<(String, u64)> = m.syms.iter().map(|s| (s.name.clone(), s.value)).collect();
        let resolver: kvm::Resolver = Box::new(move |name| {
            let found = syms.iter().find(|s| s.0 == name && name != "pae_mode");
            found.map(|s| s.1)
        });
        let hidden = Kvm::open_with_resolver(&k, s.path().join("core"), Some(resolver)).unwrap();
        assert_eq!(hidden.translate(m.va.klast).is_ok(), mode == Mode::Pae);
        // Flip pae_mode in the dump: the decoy (kernel image only) is used.
        let off = kvm.translate(m.va.pae_mode).unwrap().off as usize;
        let flip = u32::from(mode == Mode::NoPae);
        d.bytes[off..off + 4].copy_from_slice(&flip.to_le_bytes());
        let kvm = Kvm::open(&k, s.file("flipped", &d.bytes)).unwrap();
        kvm.read_exact(m.va.version, &mut [0u8; 16]).unwrap();
        assert!(kvm.translate(m.va.klast).is_err(), "decoy chosen");
    }
}

#[test]
fn page_tables_not_found() {
    let s = Scratch::new("i386-noroot");
    for era in [Era::Old, Era::New] {
        let m = I386::new(Mode::NoPae, era, false);
        let (var, name) = match era {
            Era::Old => (m.va.idleptd, "IdlePTD ("),
            Era::New => (m.va.idleptd_nopae, "IdlePTD_nopae ("),
        };
        let k = m.kernel();
        let mut d = m.full_dump().bytes;
        // Point the root variable at a page that holds no page tables.
        let off = open(&s, &k, &d).unwrap().translate(var).unwrap().off as usize;
        d[off..off + 4].copy_from_slice(&0x01bf_f000u32.to_le_bytes());
        let want = [
            "cannot find the kernel page tables",
            name,
            "does the kernel match",
        ];
        open_err(&s, &k, &d, &want);
    }
    let mut m = I386::new(Mode::Pae, Era::Old, false);
    let d = m.full_dump().bytes;
    m.syms.retain(|s| !s.name.starts_with("Idle"));
    open_err(&s, &m.kernel(), &d, &["bad namelist: no symbol IdlePTD"]);
    m.syms.retain(|s| s.name != "kernbase");
    open_err(&s, &m.kernel(), &d, &["bad namelist: no symbol kernbase"]);
}

/// amd64 kernels with i386 cores and the reverse.
#[test]
fn mismatched_kernel_and_core() {
    use fixture::amd64::Amd64;
    let s = Scratch::new("i386-mismatch");
    let amd = Amd64::new(2 << 20, fixture::Fill::Pattern);
    let i = I386::new(Mode::Pae, Era::New, false);
    let amd_k = "kernel is ELF64 little-endian x86-64 (amd64)";
    let i_k = "kernel is ELF32 little-endian i386";
    let i_full = "core is an ELF32 little-endian i386";
    let i_mini = "core is a minidump with magic \"minidump FreeBSD/i386\"";
    open_err(&s, &amd.kernel(), &i.full_dump().bytes, &[amd_k, i_full]);
    open_err(&s, &amd.kernel(), &i.minidump(2).bytes, &[amd_k, i_mini]);
    let amd_full = "core is an ELF64 little-endian x86-64 (amd64)";
    let amd_mini = "core is a minidump with magic \"minidump FreeBSD/amd64\"";
    open_err(
        &s,
        &i.kernel(),
        &amd.full_dump(false).bytes,
        &[i_k, amd_full],
    );
    open_err(&s, &i.kernel(), &amd.minidump(3).bytes, &[i_k, amd_mini]);
}

fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn lying_minidump_headers() {
    let m = I386::new(Mode::Pae, Era::New, true);
    let s = Scratch::new("i386-badmini");
    let k = m.kernel();
    let good = m.minidump(2).bytes;
    let err = |v: &[u8], want: &str| open_err(&s, &k, v, &["i386 minidump: ", want]);
    err(&good[..100], "too short for the header page");
    for version in [0, 3] {
        let mut v = good.clone();
        put32(&mut v, 0x18, version);
        err(&v, &format!("unknown version {version} (expected 1 or 2)"));
    }
    let mut v = good.clone();
    put32(&mut v, 0x1c, u32::MAX); // msgbufsize
    err(&v, "lies past the end");
    let mut v = good.clone();
    put32(&mut v, 0x20, u32::MAX - 4095); // bitmapsize
    err(&v, "bitmap");
    let mut v = good.clone();
    put32(&mut v, 0x24, 0xffff_f000); // ptesize, with paemode set
    err(&v, "the PTE section (4294963200 bytes");
    let mut v = good.clone();
    put32(&mut v, 0x30, 0x7fff_0000); // dumpavailsize
    err(&v, "lies past the end");
    err(
        &good[..good.len() - 2 * PAGE as usize],
        "truncated dump or corrupt bitmap",
    );
}

/// A header whose paemode lies about the PTE size is refused, since the
/// kernel's `version` cannot be read back; opened anyway, reads give bytes
/// or errors, never a panic or a read outside the file.
#[test]
fn flipped_paemode_does_not_crash() {
    let s = Scratch::new("i386-flip");
    for mode in [Mode::Pae, Mode::NoPae] {
        let m = I386::new(mode, Era::Old, false);
        let mut v = m.minidump(1).bytes;
        put32(&mut v, 0x2c, u32::from(mode == Mode::NoPae));
        let e = open(&s, &m.kernel(), &v).unwrap_err();
        assert!(e.to_string().contains("does not match core"), "{e}");
        let kvm = kvm::OpenOptions::new()
            .verify_kernel(false)
            .open(s.file("kernel", &m.kernel()), s.file("core", &v))
            .unwrap();
        let mut rng = Rng(7);
        for (start, size) in regions(&m) {
            for _ in 0..200 {
                let _ = kvm.read(start + rng.below(size), &mut [0u8; 64]);
            }
        }
    }
}

/// Expectations for tests/c/capi_test.c (format documented in that file).
fn expectations(m: &I386, d: &Dump, resolve: &[(&str, u64)]) -> String {
    let v = m.va;
    let mut e = String::new();
    writeln!(e, "native {}", u8::from(cfg!(target_arch = "x86"))).unwrap();
    for (name, value, ntype) in [
        ("version", v.version, 7),
        ("_version", v.version, 7),
        ("kernbase", v.kernbase, 3),
        ("panic", v.text + 0x40, 5),
        ("bss_counter", v.bss, 9),
        ("local_counter", v.local, 6),
    ] {
        writeln!(e, "sym {name} {value:x} {ntype}").unwrap();
    }
    writeln!(e, "nosym no_such_symbol").unwrap();
    let probes: &[(u64, u64)] = &[
        (v.version, VERSION.len() as u64),
        (v.straddle, 0x1000),
        (v.k4, 3 * PAGE),
        (v.k4 + 2 * PAGE + 100, PAGE),
        (v.k4 + 7 * PAGE, 2 * PAGE),
        (v.k4 + 13 * PAGE - 8, 16),
        (v.ksp + 0x1000, 0x1000),
        (v.khigh + 0x1f_f000, 0x1000),
        (v.khigh4 + 2 * PAGE, 2 * PAGE),
        (v.low + 0x9e000, 0x2000),
        (v.klast, 64),
        (0xffff_fff8, 16),
        (1 << 32, 8),
        (v.version | 1 << 32, 8),
    ];
    for &(a, len) in probes {
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
    writeln!(
        e,
        "threads {:x} {} {}",
        v.version,
        VERSION.len(),
        hex(VERSION)
    )
    .unwrap();
    for (name, value) in resolve {
        writeln!(e, "resolve {name} {value:x}").unwrap();
    }
    e
}

/// tests/c/capi_test.c, linked with libkvm.so and libkvm.a, on an i386 PAE
/// minidump and an i386 non-PAE full dump (12+ layout).
#[test]
fn c_program_on_i386_dumps() {
    let s = Scratch::new("i386-capi");
    let pae = I386::new(Mode::Pae, Era::New, true);
    let nopae = I386::new(Mode::NoPae, Era::New, false);
    let cases = [
        ("mini-pae", &pae, pae.minidump(2), vec![]),
        (
            "full-nopae",
            &nopae,
            nopae.full_dump(),
            vec![
                ("kernbase", nopae.va.kernbase),
                ("IdlePTD_nopae", nopae.va.idleptd_nopae),
            ],
        ),
    ];
    for (name, m, dump, needed) in cases {
        let mut resolve = vec![("version", m.va.straddle)];
        resolve.extend(needed);
        let kernel = s.file(&format!("{name}.kernel"), &m.kernel());
        let core = s.file(name, &dump.bytes);
        run_capi_test(&kernel, &core, &expectations(m, &dump, &resolve));
    }
}

/// The recursive PDEs (`PTDPTDI`) show the page directory and every page
/// table at `PTmap`, as the MMU does, in every mode and layout.
#[test]
fn ptmap_shows_the_page_tables() {
    let s = Scratch::new("i386-ptmap");
    for mode in [Mode::NoPae, Mode::Pae] {
        for era in [Era::Old, Era::New] {
            let m = I386::new(mode, era, false);
            let kvm = open(&s, &m.kernel(), &m.full_dump().bytes).unwrap();
            let (v, first) = (m.va, ptdptdi(mode, era));
            let mut page = vec![0u8; PAGE as usize];
            for i in 0..mode.npgptd() {
                kvm.read_exact(v.ptmap + (first + i) * PAGE, &mut page)
                    .unwrap();
                assert!(
                    page == m.ram.page(m.ptd + i * PAGE),
                    "{mode:?} {era:?}: PD page {i}"
                );
            }
            let pde = m.pt.entry(&m.ram, v.klast, mode.pd()).unwrap();
            let j = v.klast >> mode.pdrshift();
            kvm.read_exact(v.ptmap + j * PAGE, &mut page).unwrap();
            let pt = (mode.spec().table_frame)(pde);
            assert!(
                page == m.ram.page(pt),
                "{mode:?} {era:?}: klast's page table"
            );
        }
    }
}

/// kvm_walk_pages on a full dump reports every leaf the MMU sees, in order:
/// the model's mappings and `PTmap`, whose PDEs point to page-directory
/// pages the walk also enters as page directories.
fn walk_full_dump(mode: Mode, era: Era) {
    let m = I386::new(mode, era, false);
    let s = Scratch::new(&format!("i386-walk-{mode:?}-{era:?}"));
    let d = m.full_dump();
    let kvm = open(&s, &m.kernel(), &d.bytes).unwrap();
    let want = m.expected_pages(&d);
    let what = format!("{mode:?} {era:?} full dump");
    assert!(want.len() > 50, "{what}: {} pages", want.len());
    assert!(
        want.iter().any(|p| p.offset.is_none()),
        "undumped pages exist"
    );
    let got = fixture::walk(&kvm, &what);
    let has = |va: u64, pa: u64, len: u64| {
        got.iter()
            .any(|p| (p.kmap_vaddr, p.paddr, p.len) == (va, pa, len))
    };
    let v = m.va;
    assert!(
        has(v.text, v.kernphys, mode.nbpdr()),
        "{what}: the kernel text at {:#x}",
        v.text
    );
    for i in 0..mode.npgptd() {
        let at = v.ptmap + (ptdptdi(mode, era) + i) * PAGE;
        assert!(
            has(at, m.ptd + i * PAGE, PAGE),
            "{what}: page-directory page {i} at {at:#x}"
        );
    }
    fixture::assert_pages(&got, &want, &what);
}

#[test]
fn walk_full_dump_nopae_old() {
    walk_full_dump(Mode::NoPae, Era::Old);
}

#[test]
fn walk_full_dump_pae_old() {
    walk_full_dump(Mode::Pae, Era::Old);
}

#[test]
fn walk_full_dump_nopae_12() {
    walk_full_dump(Mode::NoPae, Era::New);
}

#[test]
fn walk_full_dump_pae_12() {
    walk_full_dump(Mode::Pae, Era::New);
}

/// kvm_walk_pages on minidumps reports exactly the model's PTEs, in order,
/// for every paging mode and layout.
#[test]
fn walk_minidumps_match_model() {
    let s = Scratch::new("i386-walk-mini");
    for mode in [Mode::NoPae, Mode::Pae] {
        for era in [Era::Old, Era::New] {
            let m = I386::new(mode, era, false);
            for d in [m.minidump(1), m.minidump(2)] {
                let kvm = open(&s, &m.kernel(), &d.bytes).unwrap();
                let want = m.expected_pages(&d);
                assert!(want.len() > 50, "{mode:?} {era:?}: {} pages", want.len());
                assert!(
                    want.iter().any(|p| p.offset.is_none()),
                    "undumped pages exist"
                );
                fixture::assert_walk(&kvm, &want, &format!("{mode:?} {era:?} {:?}", d.kmap));
            }
        }
    }
}
