//! Linux aarch64 vmcores (ELF, as /proc/vmcore and QEMU write them)
//! through the Rust API, checked against the fixture model: 4, 16 and
//! 64 KiB granules, 39- to 52-bit addresses, 52-bit physical addresses,
//! KASLR with a "negative" PHYS_OFFSET, pointer authentication.

mod fixture;
use fixture::linux::Style;
use fixture::linux_arm64::*;
use fixture::{Miss, Scratch, PAGE};
use kvm::{Error, Fault, Kvm, OpenOptions};
use std::path::Path;

fn open(kernel: Option<&Path>, core: &Path) -> kvm::Result<Kvm> {
    OpenOptions::new().open_dump(kernel, core)
}

fn expect(m: &LinuxArm64, va: u64, len: u64) -> Result<Vec<u8>, Miss> {
    fixture::expect_read(&m.ram, PAGE, va, len, |a| m.maps.pa(a), |_| true)
}

fn check(kvm: &Kvm, m: &LinuxArm64, va: u64, len: u64) {
    fixture::assert_read(kvm, va, len, expect(m, va, len), |a| m.maps.pa(a));
}

/// Fixed probes across page, block and mapping boundaries, plus random
/// reads in the image, vmalloc space and the linear map.
fn check_all(kvm: &Kvm, m: &LinuxArm64) {
    let g = m.granule();
    for (va, len) in [
        (m.sym("linux_banner"), BANNER.len() as u64),
        (m.sym("straddle"), 0x1000),
        (m.vmalloc_page(0), 16 * g),
        (m.vmalloc_page(4) - 3, 2 * g),
        (m.vmalloc_page(14) - 8, 16),
        (m.lm(0x4400_0000) - 8, 16),
        (m.lm(0x8_8020_0000) - 4, 8),
        (0x0000_7fff_ffff_f000, 8),
        (0, 1),
    ] {
        check(kvm, m, va, len);
    }
    let regions = [
        (m.text(), KERNEL_SIZE + g),
        (m.vmalloc_page(0) - g, 18 * g),
        (m.lm(0x4000_0000), 0x0500_0000 + g),
        (m.lm(0x8_8000_0000) - g, 0x20_0000 + 2 * g),
    ];
    fixture::random_reads(&regions, 1500, |va, len| check(kvm, m, va, len));
}

/// Every configuration, both ELF styles, every way of giving symbols.
#[test]
fn elf_vmcores() {
    for cfg in CONFIGS {
        let m = LinuxArm64::new(cfg);
        // The tables say what the model says; the fixture's generic
        // descent finds the same leaves (where addresses fit 48 bits).
        let leaves = m.leaves();
        fixture::assert_mapped(&leaves, &m.maps);
        if !cfg.high_ram {
            let generic = fixture::leaves(&m.ram, cfg.rules, m.pt.root);
            let a: Vec<_> = leaves.iter().map(|l| (l.va, l.pa, l.size)).collect();
            let b: Vec<_> = generic
                .iter()
                .map(|l| (l.va | m.top(), l.pa, l.size))
                .collect();
            assert_eq!(a, b, "{}", cfg.name);
        }
        let s = Scratch::new(&format!("linux-arm64-{}", cfg.name));
        let vmlinux = s.file("vmlinux", &m.vmlinux());
        let map = s.file("System.map", &m.system_map());
        for style in [Style::Kdump, Style::Qemu] {
            let core = s.file("vmcore", &m.elf_vmcore(style));
            for kernel in [Some(&vmlinux), Some(&map), None] {
                let what = format!("{} {style:?} {kernel:?}", cfg.name);
                let kvm = open(kernel.map(|p| p.as_path()), &core)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(kvm.backend(), "Linux aarch64", "{what}");
                assert_eq!(kvm.kerndisp(), cfg.kaslr as i64, "{what}");
                assert_eq!(kvm.native(), cfg!(target_arch = "aarch64"));
                let sym = |n: &str| kvm.symbol(n).map(|s| s.value);
                for n in ["swapper_pg_dir", "_stext", "init_uts_ns"] {
                    assert_eq!(sym(n), Some(m.sym(n)), "{what}: {n}");
                }
                match kernel {
                    None => assert_eq!(sym("linux_banner"), None, "{what}"),
                    Some(_) => {
                        for n in [
                            "linux_banner",
                            "straddle",
                            "jiffies",
                            "_text",
                            "vmalloc_pages",
                        ] {
                            assert_eq!(sym(n), Some(m.sym(n)), "{what}: {n}");
                        }
                    }
                }
                if kernel.is_some() && style == Style::Kdump {
                    check_all(&kvm, &m);
                    pac(&kvm, &m);
                }
            }
            let kvm = open(None, &core).unwrap();
            if style == Style::Qemu {
                check_all(&kvm, &m);
            }
            let want = m.expected_pages(|pa| m.elf_offset(style, pa));
            fixture::assert_walk(&kvm, &want, &format!("{} {style:?}", cfg.name));
        }
    }
}

/// A kernel pointer signed with a PAC reads as the address it signs when
/// VMCOREINFO gives KERNELPACMASK; without one it is no kernel address.
fn pac(kvm: &Kvm, m: &LinuxArm64) {
    let va = m.sym("linux_banner");
    let mask = m.cfg.pac.filter(|&p| p != 0).unwrap_or(m.top());
    let junk = 0x5a3c_96e1_0000_0000u64;
    let signed = (va & !mask) | (junk & mask & !(1 << 55)) | (1 << 55);
    assert_ne!(signed, va);
    let mut buf = vec![0u8; BANNER.len()];
    match (m.cfg.pac.unwrap_or(0), kvm.read(signed, &mut buf)) {
        (
            0,
            Err(Error::Translate {
                va: e,
                fault: Fault::OutOfRange(_),
            }),
        ) => assert_eq!(e, signed),
        (0, got) => panic!(
            "{}: signed pointer without KERNELPACMASK: {got:?}",
            m.cfg.name
        ),
        (_, Ok(n)) => assert_eq!(&buf[..n], BANNER, "{}", m.cfg.name),
        (_, got) => panic!("{}: signed pointer: {got:?}", m.cfg.name),
    }
}

/// Reads that must fail say why: unmapped, device memory outside the
/// dump, no kernel address.
#[test]
fn must_fail_reads() {
    for cfg in [&CFG_4K_48, &CFG_64K_52] {
        let m = LinuxArm64::new(cfg);
        let s = Scratch::new(&format!("linux-arm64-fail-{}", cfg.name));
        let core = s.file("vmcore", &m.elf_vmcore(Style::Qemu));
        let kvm = open(None, &core).unwrap();
        let mut buf = [0u8; 8];
        let hole = fixture::fault_at(&kvm, m.vmalloc_page(3));
        assert!(matches!(hole, Fault::Unmapped(_)), "{hole}");
        let mmio = fixture::fault_at(&kvm, m.vmalloc_page(12));
        assert_eq!(mmio, Fault::NotInDump { pa: MMIO });
        // A user address (bit 55 clear: TTBR0's).
        let err = kvm.read(0x0000_ffff_f000_0000, &mut buf).unwrap_err();
        assert!(
            err.to_string().contains("not an aarch64 kernel address"),
            "{err}"
        );
        // 52-bit physical addresses: RAM above 256 TiB through vmalloc.
        if cfg.high_ram {
            let va = m.vmalloc_page(14);
            assert_eq!(m.maps.pa(va), Some(HIGH_RAM + 2 * m.granule()));
            check(&kvm, &m, va, 64);
        }
    }
}

/// VMCOREINFO that lies, or lacks what the backend needs, is refused
/// with a message saying what is wrong.
#[test]
fn bad_vmcoreinfo() {
    let m = LinuxArm64::new(&CFG_4K_48);
    let s = Scratch::new("linux-arm64-badinfo");
    let open_with = |info: &str| {
        let core = s.file("vmcore", &m.elf_vmcore_with(Style::Qemu, info));
        open(None, &core)
    };
    let good = m.vmcoreinfo();
    let v = format!("NUMBER(kimage_voffset)={:#x}\n", m.kimage_voffset());
    // kimage_voffset off by 2 MiB: the tables found do not map themselves.
    let lie = good.replace(
        &v,
        &format!(
            "NUMBER(kimage_voffset)={:#x}\n",
            m.kimage_voffset() + (2 << 20)
        ),
    );
    let err = open_with(&lie).unwrap_err().to_string();
    assert!(err.contains("do not map swapper_pg_dir back"), "{err}");
    let err = open_with(&good.replace(&v, "")).unwrap_err().to_string();
    assert!(err.contains("NUMBER(kimage_voffset)"), "{err}");
    let err = open_with(&good.replace("NUMBER(VA_BITS)=48\n", ""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("NUMBER(VA_BITS)"), "{err}");
    let err = open_with(&good.replace("PAGESIZE=4096", "PAGESIZE=8192")).unwrap_err();
    assert!(err.to_string().contains("PAGESIZE 8192"), "{err}");
    // Numbers no arm64 kernel has: refused, not overflowing.
    for bits in ["0", "64", "200"] {
        let lie = good.replace("NUMBER(VA_BITS)=48", &format!("NUMBER(VA_BITS)={bits}"));
        let err = open_with(&lie).unwrap_err().to_string();
        assert!(err.contains("NUMBER(VA_BITS)"), "{err}");
    }
    let t1sz = good
        .lines()
        .find(|l| l.starts_with("NUMBER(TCR_EL1_T1SZ)"))
        .expect("the 4K/48 model writes TCR_EL1_T1SZ");
    let lie = good.replace(t1sz, "NUMBER(TCR_EL1_T1SZ)=0x8000000000000000");
    let err = open_with(&lie).unwrap_err().to_string();
    assert!(err.contains("TCR_EL1_T1SZ"), "{err}");
    // QEMU without -device vmcoreinfo, with the System.map.
    let core = s.file("qemu", &m.elf_vmcore(Style::QemuNoVmcoreinfo));
    let map = s.file("System.map", &m.system_map());
    let err = open(Some(&map), &core).unwrap_err().to_string();
    assert!(
        err.contains("no VMCOREINFO") && err.contains("VA_BITS"),
        "{err}"
    );
    // An x86-64 vmlinux with an aarch64 dump.
    let x86 = fixture::linux::LinuxX86::kaslr();
    let vmlinux = s.file("vmlinux-x86", &x86.vmlinux());
    let core = s.file("vmcore", &m.elf_vmcore(Style::Kdump));
    assert!(open(Some(&vmlinux), &core).is_err());
}
