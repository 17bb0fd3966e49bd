//! Per-CPU and VNET data (`kvm_getpcpu(3)`, `kvm_nlist(3)`'s
//! `pcpu_entry_*` and `vnet_entry_*` relocation) on dumps of every
//! architecture, through the Rust API and the C API, checked against the
//! fixture's layout ([`fixture::pcpu`]).

mod fixture;
use fixture::amd64::Amd64;
use fixture::arm::{Arm, Pmap};
use fixture::c::{compile, hex, root, target_dir};
use fixture::dmap::{DmapMachine, ARM64_16K, ARM64_4K, RISCV};
use fixture::i386::{Era, Mode, I386};
use fixture::mips::{Flavour, Mips};
use fixture::pcpu::{PerCpu, MAXCPUS, NCPUS, PCPU_SIZE};
use fixture::powerpc::{Config, Ppc64Machine, VirtMachine};
use fixture::{Fill, Scratch};
use kvm::Kvm;
use std::process::Command;

/// A kernel, a dump and the per-CPU layout written into it.
struct Case {
    name: String,
    kernel: Vec<u8>,
    core: Vec<u8>,
    p: PerCpu,
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for offsets in [false, true] {
        let mut a = Amd64::new(2 << 20, Fill::Pattern);
        let p = a.add_pcpu(offsets);
        let which = if offsets { "13+" } else { "12" };
        v.push(Case {
            name: format!("amd64 {which} full"),
            kernel: a.kernel(),
            core: a.full_dump(false).bytes,
            p,
        });
        v.push(Case {
            name: format!("amd64 {which} minidump v3"),
            kernel: a.kernel(),
            core: a.minidump(3).bytes,
            p,
        });
    }
    for mode in [Mode::NoPae, Mode::Pae] {
        let mut m = I386::new(mode, Era::New, false);
        // A FreeBSD 10 struct vnet on one of them.
        let p = m.add_pcpu_with(|p| p.vnet_without_state = mode == Mode::NoPae);
        v.push(Case {
            name: format!("i386 {mode:?} full"),
            kernel: m.kernel(),
            core: m.full_dump().bytes,
            p,
        });
        v.push(Case {
            name: format!("i386 {mode:?} minidump"),
            kernel: m.kernel(),
            core: m.minidump(2).bytes,
            p,
        });
    }
    for (arch, name) in [
        (&ARM64_4K, "arm64 4K"),
        (&ARM64_16K, "arm64 16K"),
        (&RISCV, "riscv"),
    ] {
        let mut m = DmapMachine::new(arch, Fill::Pattern);
        let p = m.add_pcpu();
        v.push(Case {
            name: format!("{name} minidump"),
            kernel: m.kernel(),
            core: m.minidump(arch.max_version).bytes,
            p,
        });
    }
    for pmap in [Pmap::V4, Pmap::V6] {
        let mut m = Arm::new(pmap);
        let p = m.add_pcpu();
        v.push(Case {
            name: format!("arm {pmap:?} full"),
            kernel: m.kernel(),
            core: m.full_dump(true).bytes,
            p,
        });
        v.push(Case {
            name: format!("arm {pmap:?} minidump"),
            kernel: m.kernel(),
            core: m.minidump(2).bytes,
            p,
        });
    }
    for f in Flavour::FOUR {
        let mut m = Mips::new(f);
        let p = m.add_pcpu();
        v.push(Case {
            name: f.backend().to_string(),
            kernel: m.kernel(),
            core: m.minidump(2).bytes,
            p,
        });
    }
    for (big_endian, relocated) in [(true, true), (false, false)] {
        let mut m = Ppc64Machine::new(Config {
            big_endian,
            phyp: false,
            relocated,
            ptegs_log2: 11,
        });
        let p = m.add_pcpu();
        v.push(Case {
            name: format!("powerpc64 minidump be={big_endian} relocated={relocated}"),
            kernel: m.kernel(),
            core: m.minidump(2).bytes,
            p,
        });
    }
    let mut m = VirtMachine::new(false, true);
    let p = m.add_pcpu();
    v.push(Case {
        name: "powerpc ELF".into(),
        kernel: m.kernel(),
        core: m.elf_dump(false),
        p,
    });
    v
}

fn u64_at(kvm: &Kvm, va: u64) -> u64 {
    let mut b = [0u8; 8];
    kvm.read_exact(va, &mut b).unwrap();
    if kvm.big_endian() {
        u64::from_be_bytes(b)
    } else {
        u64::from_le_bytes(b)
    }
}

#[test]
fn per_cpu_data_of_every_architecture() {
    for c in cases() {
        let s = Scratch::new("pcpu");
        let kvm = Kvm::open(s.file("kernel", &c.kernel), s.file("core", &c.core))
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        let name = &c.name;
        assert_eq!(kvm.max_cpus().unwrap(), MAXCPUS, "{name}");
        assert_eq!(kvm.ncpus().unwrap(), NCPUS, "{name}");
        for cpu in 0..MAXCPUS + 2 {
            assert_eq!(kvm.pcpu(cpu).unwrap(), c.p.pcpu(cpu), "{name} cpu {cpu}");
        }
        // Dynamic per-CPU variables: CPU 0 until another is selected.
        let sym = |n: &str| kvm.nlist_symbol(n).map(|s| s.value);
        assert_eq!(kvm.dpcpu_cpu(), 0);
        assert_eq!(sym("dpcpu_word"), c.p.dpcpu_word(0), "{name}");
        assert_eq!(sym("_dpcpu_word"), c.p.dpcpu_word(0), "{name}");
        for cpu in 0..NCPUS {
            kvm.dpcpu_set_cpu(cpu).unwrap();
            let at = sym("dpcpu_word").unwrap();
            assert_eq!(Some(at), c.p.dpcpu_word(cpu), "{name} cpu {cpu}");
            assert_eq!(
                u64_at(&kvm, at),
                PerCpu::dpcpu_value(cpu),
                "{name} cpu {cpu}"
            );
        }
        for cpu in [NCPUS, MAXCPUS - 1, MAXCPUS, u32::MAX] {
            let e = kvm.dpcpu_set_cpu(cpu).unwrap_err().to_string();
            let want = if cpu < MAXCPUS {
                "that CPU has no per-CPU area (its dpcpu_off is 0)"
            } else {
                "the CPU number is mp_maxcpus or more"
            };
            assert!(e.contains(want), "{name}: {e}");
            assert_eq!(kvm.dpcpu_cpu(), NCPUS - 1, "a refused CPU changes nothing");
        }
        // The set's own symbol is the kernel's, unrelocated, as in libkvm.
        let raw = kvm.symbol("pcpu_entry_dpcpu_word").unwrap().value;
        assert_eq!(sym("pcpu_entry_dpcpu_word"), Some(raw), "{name}");
        assert_eq!(raw, c.p.set_pcpu() + fixture::pcpu::DPCPU_WORD);
        // VNET variables: vnet0's copy.
        let at = sym("vnet_word").unwrap();
        assert_eq!(at, c.p.vnet_word(), "{name}");
        assert_eq!(u64_at(&kvm, at), PerCpu::VNET_VALUE, "{name}");
        assert_eq!(sym("no_such_variable"), None);
        // A counter(9) and its per-CPU copies.
        let counter = kvm
            .nlist_symbol("fixture_counter")
            .map(|s| s.value)
            .unwrap();
        let mut b = [0u8; 8];
        let w = c.p.word as usize;
        kvm.read_exact(counter, &mut b[..w]).unwrap();
        let base = if kvm.big_endian() {
            u64::from_be_bytes(b) >> (64 - 8 * w)
        } else {
            u64::from_le_bytes(b)
        };
        assert_eq!(base, c.p.counter_base(), "{name}");
        for cpu in 0..NCPUS {
            let mut b = [0u8; 8];
            assert_eq!(kvm.read_zpcpu(base, cpu, &mut b).unwrap(), 8);
            let share = if kvm.big_endian() {
                u64::from_be_bytes(b)
            } else {
                u64::from_le_bytes(b)
            };
            assert_eq!(share, PerCpu::counter_share(cpu), "{name} cpu {cpu}");
        }
        assert_eq!(
            kvm.counter_u64_fetch(base).unwrap(),
            PerCpu::counter_value(),
            "{name}"
        );
    }
}

/// Kernels without the tables: clear errors, and nlist finds no
/// relocated names.
#[test]
fn kernels_without_per_cpu_tables() {
    let a = Amd64::new(2 << 20, Fill::Pattern);
    let s = Scratch::new("pcpu-none");
    let kvm = Kvm::open(
        s.file("kernel", &a.kernel()),
        s.file("core", &a.minidump(3).bytes),
    )
    .unwrap();
    let e = kvm.max_cpus().unwrap_err().to_string();
    assert!(e.contains("cpuid_to_pcpu"), "{e}");
    let e = kvm.dpcpu_set_cpu(0).unwrap_err().to_string();
    assert!(e.contains("__start_set_pcpu"), "{e}");
    assert!(kvm.nlist_symbol("dpcpu_word").is_none());
    assert!(kvm.nlist_symbol("version").is_some());
}

/// Lying tables: an `mp_maxcpus` no kernel has, an `mp_ncpus` above it,
/// a vnet without its magic.
#[test]
fn lying_per_cpu_tables() {
    let mut a = Amd64::new(2 << 20, Fill::Pattern);
    let p = a.add_pcpu(true);
    let kernel = a.kernel();
    let maxcpus = kvm_symbol(&kernel, "mp_maxcpus");
    let vnet0 = kvm_symbol(&kernel, "vnet0");
    let s = Scratch::new("pcpu-lies");
    for (what, va, bytes, want) in [
        (
            "maxcpus",
            maxcpus,
            0x7fff_ffffu32.to_le_bytes().to_vec(),
            "mp_maxcpus",
        ),
        (
            "maxcpus 0",
            maxcpus,
            0u32.to_le_bytes().to_vec(),
            "mp_maxcpus",
        ),
        ("ncpus", maxcpus, 2u32.to_le_bytes().to_vec(), "mp_ncpus"),
    ] {
        let mut m = Amd64::new(2 << 20, Fill::Pattern);
        m.add_pcpu(true);
        m.write_virt(va, &bytes);
        let kvm = Kvm::open(
            s.file("kernel", &m.kernel()),
            s.file("core", &m.minidump(3).bytes),
        )
        .unwrap();
        let e = kvm.max_cpus().unwrap_err().to_string();
        assert!(e.contains(want), "{what}: {e}");
    }
    let mut m = Amd64::new(2 << 20, Fill::Pattern);
    m.add_pcpu(true);
    m.write_virt(vnet0, &(p.vnet_word() - 0x100).to_le_bytes());
    let kvm = Kvm::open(
        s.file("kernel", &m.kernel()),
        s.file("core", &m.minidump(3).bytes),
    )
    .unwrap();
    assert!(kvm.nlist_symbol("vnet_word").is_none());
    assert_eq!(
        kvm.nlist_symbol("dpcpu_word").map(|s| s.value),
        p.dpcpu_word(0)
    );
}

fn kvm_symbol(kernel: &[u8], name: &str) -> u64 {
    let s = Scratch::new("pcpu-sym");
    let a = Amd64::new(2 << 20, Fill::Pattern);
    let kvm = kvm::OpenOptions::new()
        .verify_kernel(false)
        .open(
            s.file("kernel", kernel),
            s.file("core", &a.minidump(3).bytes),
        )
        .unwrap();
    kvm.symbol(name).unwrap().value
}

/// The C API: `kvm_getmaxcpu`, `kvm_getncpus`, `kvm_getpcpu`,
/// `kvm_dpcpu_setcpu`, `kvm_nlist2`'s relocation, `kvm_read_zpcpu` and
/// `kvm_counter_u64_fetch`, on a 64-bit and a 32-bit dump.
#[test]
fn c_api() {
    for c in cases()
        .into_iter()
        .filter(|c| c.name == "amd64 13+ minidump v3" || c.name == "i386 Pae minidump")
    {
        let s = Scratch::new("pcpu-capi");
        let kernel = s.file("kernel", &c.kernel);
        let core = s.file("core", &c.core);
        let mut expect = format!("maxcpu {MAXCPUS} ncpus {NCPUS}\n");
        for cpu in 0..MAXCPUS {
            match c.p.pcpu(cpu) {
                Some(_) => {
                    let want = PerCpu::pcpu_bytes(cpu);
                    expect += &format!("pcpu {cpu} {}\n", hex(&want[..PCPU_SIZE as usize]));
                }
                None => expect += &format!("pcpu {cpu} none\n"),
            }
        }
        for cpu in 0..MAXCPUS {
            match c.p.dpcpu_word(cpu) {
                Some(at) => {
                    expect += &format!("dpcpu {cpu} {at:#x} {:#x}\n", PerCpu::dpcpu_value(cpu))
                }
                None => expect += &format!("dpcpu {cpu} refused\n"),
            }
        }
        expect += &format!("vnet {:#x} {:#x}\n", c.p.vnet_word(), PerCpu::VNET_VALUE);
        for cpu in 0..NCPUS {
            expect += &format!("zpcpu {cpu} {:#x}\n", PerCpu::counter_share(cpu));
        }
        expect += &format!("counter {:#x}\n", PerCpu::counter_value());
        let dir = target_dir().join("capi-pcpu");
        std::fs::create_dir_all(&dir).unwrap();
        let src = root().join("tests/c/pcpu_test.c");
        for (link, static_link) in [("shared", false), ("static", true)] {
            let bin = compile(&src, &dir.join(format!("pcpu_test_{link}")), static_link);
            let out = Command::new(&bin)
                .arg(&kernel)
                .arg(&core)
                .arg(format!("{:#x}", c.p.counter_base()))
                .arg(PCPU_SIZE.to_string())
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{} {link}:\n{stdout}", c.name);
            assert_eq!(stdout, expect, "{} {link}", c.name);
        }
    }
}
