//! Corrupted dumps of every format: random bytes of the headers, bitmaps,
//! page maps, page tables and program headers are overwritten, and opening,
//! reading, symbol lookup and page walks must return errors or data, never
//! panic (tests build with overflow checks, so an arithmetic overflow on a
//! hostile value panics here too) and never read outside the file.

mod fixture;
use fixture::amd64::Amd64;
use fixture::dmap::{DmapMachine, ARM64_16K, ARM64_4K, RISCV};
use fixture::i386::{Era, Mode, I386};
use fixture::{Fill, Rng, Scratch};
use kvm::Kvm;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A kernel, a good dump, and addresses worth reading in it.
struct Case {
    name: String,
    kernel: Vec<u8>,
    core: Vec<u8>,
    /// How much of the file's start holds headers and maps worth corrupting.
    meta: usize,
    probes: Vec<u64>,
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    let mut a = Amd64::new(2 << 20, Fill::Pattern);
    a.add_pcpu(true);
    let amd64_probes = vec![
        fixture::amd64::va::VERSION,
        fixture::amd64::va::K4,
        fixture::amd64::va::K2M,
        fixture::amd64::DMAP_MIN + 0x0100_0000,
    ];
    let full = a.full_dump(false).bytes;
    v.push(Case {
        name: "amd64 full".into(),
        kernel: a.kernel(),
        meta: 4096,
        probes: amd64_probes.clone(),
        core: full,
    });
    for version in 1..=3 {
        let d = a.minidump(version);
        v.push(Case {
            name: format!("amd64 minidump v{version}"),
            kernel: a.kernel(),
            meta: d.offsets.values().min().copied().unwrap_or(0) as usize,
            probes: amd64_probes.clone(),
            core: d.bytes,
        });
    }
    for mode in [Mode::NoPae, Mode::Pae] {
        let m = I386::new(mode, Era::New, false);
        let probes = vec![m.va.version, m.va.k4, m.va.ksp, m.va.low + 0x5000];
        v.push(Case {
            name: format!("i386 {mode:?} full"),
            kernel: m.kernel(),
            meta: 4096,
            probes: probes.clone(),
            core: m.full_dump().bytes,
        });
        let d = m.minidump(2);
        v.push(Case {
            name: format!("i386 {mode:?} minidump"),
            kernel: m.kernel(),
            meta: d.offsets.values().min().copied().unwrap_or(0) as usize,
            probes,
            core: d.bytes,
        });
    }
    for (arch, version) in [(&ARM64_4K, 3), (&ARM64_16K, 3), (&RISCV, 2)] {
        let m = DmapMachine::new(arch, Fill::Pattern);
        let d = m.minidump(version);
        let kb = arch.kernbase;
        v.push(Case {
            name: format!("{} v{version}", String::from_utf8_lossy(&arch.magic[9..22])),
            kernel: m.kernel(),
            meta: d.offsets.values().min().copied().unwrap_or(0) as usize,
            probes: vec![
                m.syms[0].value,
                kb + 0x1000_0000,
                kb + 0x2000_0000,
                arch.dmapbase + 0x10_0000,
            ],
            core: d.bytes,
        });
    }
    linux_cases(&mut v);
    // arm
    {
        use fixture::arm::{Arm, Pmap, VA};
        let probes = vec![VA.version, VA.k4, VA.large + 0x1_0000, VA.sup + (3 << 20)];
        for (pmap, delta, version) in [(Pmap::V4, true, 2), (Pmap::V6, false, 1)] {
            let m = Arm::new(pmap);
            v.push(Case {
                name: format!("arm {pmap:?} full (delta {delta})"),
                kernel: m.kernel(),
                meta: 4096,
                probes: probes.clone(),
                core: m.full_dump(delta).bytes,
            });
            let d = m.minidump(version);
            v.push(Case {
                name: format!("arm {pmap:?} minidump v{version}"),
                kernel: m.kernel(),
                meta: d.offsets.values().min().copied().unwrap_or(0) as usize,
                probes: probes.clone(),
                core: d.bytes,
            });
        }
    }
    // powerpc
    {
        use fixture::powerpc::{self as ppc, Config, Ppc64Machine, VirtMachine};
        for (cfg, version) in [
            (
                Config {
                    big_endian: true,
                    phyp: false,
                    relocated: true,
                    ptegs_log2: 11,
                },
                2,
            ),
            (
                Config {
                    big_endian: false,
                    phyp: true,
                    relocated: false,
                    ptegs_log2: 11,
                },
                1,
            ),
        ] {
            let m = Ppc64Machine::new(cfg);
            let d = m.minidump(version);
            v.push(Case {
                name: format!("powerpc64 minidump {cfg:?} v{version}"),
                kernel: m.kernel(),
                meta: d.offsets.values().min().copied().unwrap_or(0) as usize,
                probes: vec![
                    ppc::DATA,
                    ppc::VM,
                    ppc::COLLIDE,
                    ppc::DMAP_BASE + 0x0680_0000,
                ],
                core: d.bytes,
            });
        }
        for (is_64, be) in [(false, true), (true, false)] {
            let m = VirtMachine::new(is_64, be);
            v.push(Case {
                name: format!("powerpc ELF is_64={is_64} be={be}"),
                kernel: m.kernel(),
                meta: 4096,
                probes: vec![ppc::DATA, m.msgbuf.0, m.kva.0 + ppc::virt::RUN],
                core: m.elf_dump(false),
            });
        }
    }
    // mips
    {
        use fixture::mips::{Abi, Flavour, Mips, XKPHYS_CACHED};
        for (f, version) in [
            (Flavour::new(Abi::O32, true), 1),
            (Flavour::new(Abi::N32, false), 2),
            (Flavour::new(Abi::N64, true), 2),
        ] {
            let m = Mips::new(f);
            let d = m.minidump(version);
            let mut probes = vec![m.va.version, m.va.k4, m.va.khigh, m.va.kseg1 + 0x10_0000];
            if f.elf64() {
                probes.push(XKPHYS_CACHED + 0x0220_0000);
            }
            v.push(Case {
                name: format!("{} v{version}", f.backend()),
                kernel: m.kernel(),
                meta: d.offsets.values().min().copied().unwrap_or(0) as usize,
                probes,
                core: d.bytes,
            });
        }
    }
    v
}

/// Linux: an x86-64 ELF vmcore, its kdump-compressed file (every codec in
/// turn) plain and flattened, a 32-bit i386 kdump file and an aarch64 ELF
/// vmcore, each with its System.map.
fn linux_cases(v: &mut Vec<Case>) {
    use fixture::kdump::{flatten, Codec, Kdump};
    use fixture::linux::{LinuxI386, LinuxX86, Style, KERNEL_SIZE, LINK_TEXT};
    use fixture::PAGE;
    let m = LinuxX86::kaslr();
    let probes = vec![
        m.sym("linux_banner"),
        m.runtime(LINK_TEXT) + KERNEL_SIZE - 8,
        m.vmalloc_page(0),
        m.page_offset + 0x0100_0000,
    ];
    v.push(Case {
        name: "Linux x86-64 ELF vmcore".into(),
        kernel: m.system_map(),
        meta: 4096,
        probes: probes.clone(),
        core: m.elf_vmcore(Style::Kdump),
    });
    // makedumpfile-style: the kernel image, the page tables, the vmalloc'd
    // pages and low memory kept; the rest filtered out.
    let keep = |pa: u64| {
        (m.phys_text..m.phys_text + KERNEL_SIZE).contains(&pa)
            || (0x300_0000..0x304_0000).contains(&pa)
            || (0x388_0000..0x389_0000).contains(&pa)
            || pa < 0x10_0000
    };
    let filtered: Vec<u64> = fixture::linux::ram_pages(&m.ram)
        .into_iter()
        .filter(|&pa| !keep(pa))
        .map(|pa| pa / PAGE)
        .collect();
    let w = Kdump::new(&m.ram)
        .codec(Codec::Mixed)
        .vmcoreinfo(&m.vmcoreinfo())
        .filter(filtered)
        .write();
    v.push(Case {
        name: "Linux x86-64 kdump".into(),
        kernel: m.system_map(),
        meta: w.data_off as usize,
        probes: probes.clone(),
        core: w.bytes.clone(),
    });
    v.push(Case {
        name: "Linux x86-64 flattened kdump".into(),
        kernel: m.system_map(),
        meta: 64 << 10,
        probes,
        core: flatten(&w.bytes, 64 << 10, true),
    });
    let i = LinuxI386::new(Mode::Pae, 0xc000_0000, 0x80_0000);
    let w = Kdump::new(&i.ram)
        .codec(Codec::Mixed)
        .target(false, false)
        .uts("i686", "")
        .vmcoreinfo(&i.vmcoreinfo())
        .write();
    v.push(Case {
        name: "Linux i386 kdump".into(),
        kernel: i.system_map(),
        meta: w.data_off as usize,
        probes: vec![i.sym("linux_banner"), i.vmalloc_page(0), 0xc010_0000],
        core: w.bytes,
    });
    let a = fixture::linux_arm64::LinuxArm64::new(&fixture::linux_arm64::CFG_4K_48);
    v.push(Case {
        name: "Linux aarch64 ELF vmcore".into(),
        kernel: a.system_map(),
        meta: 4096,
        probes: vec![a.sym("linux_banner"), a.vmalloc_page(0), a.lm(0x4010_0000)],
        core: a.elf_vmcore(Style::Qemu),
    });
}

/// Opens and exercises a (possibly corrupt) dump; panics only on a bug.
fn exercise(kvm: &Kvm, probes: &[u64]) {
    let mut buf = vec![0u8; 8192];
    for &va in probes {
        for len in [8usize, 4096, 8192] {
            let _ = kvm.read(va, &mut buf[..len]);
            let _ = kvm.read(va.wrapping_add(0x1ff8), &mut buf[..len]);
        }
        let _ = kvm.translate(va);
    }
    let _ = kvm.symbol("version");
    let _ = kvm.symbol("linux_banner");
    // The debugger layer reads structures the dump describes: the
    // message buffer or printk ring, the process and thread lists.
    let _ = kvm.message_buffer();
    for t in kvm.threads().unwrap_or_default().iter().take(64) {
        let _ = kvm.registers(t);
    }
    let _ = kvm.translation(0xffff_ffff_8030_0200);
    let _ = kvm.cpus();
    let _ = kvm.panic_string();
    // Per-CPU and VNET tables.
    let _ = kvm.max_cpus();
    for cpu in [0, 1, 7, 8, u32::MAX] {
        let _ = kvm.pcpu(cpu);
        let _ = kvm.dpcpu_set_cpu(cpu);
        let _ = kvm.nlist_symbol("dpcpu_word");
    }
    let _ = kvm.nlist_symbol("_vnet_word");
    for base in [0, 0x8000, 0xffff_ffff_8030_0000, u64::MAX] {
        let _ = kvm.counter_u64_fetch(base);
    }
    let mut n = 0u32;
    let _ = kvm.walk_pages(|_| {
        n += 1;
        n < 20_000
    });
}

#[test]
fn corrupted_dumps_never_panic() {
    use std::os::unix::fs::FileExt;
    let s = Scratch::new("mutation");
    // KVM_MUTATION_SEED and KVM_MUTATION_ROUNDS explore beyond the fixed
    // default run: `KVM_MUTATION_SEED=7 KVM_MUTATION_ROUNDS=2000 cargo test
    // --test mutation`.
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let mut rng = Rng(env("KVM_MUTATION_SEED", 0x5eed));
    let per_case = env("KVM_MUTATION_ROUNDS", 150);
    let (mut opened, mut rounds) = (0, 0);
    for case in cases() {
        let kernel = s.file("kernel", &case.kernel);
        // The intact dump first: it must open and read.
        let path = s.file("core", &case.core);
        exercise(&Kvm::open(&kernel, &path).unwrap(), &case.probes);
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let len = case.core.len() as u64;
        for round in 0..per_case {
            // Corrupt 1 to 8 places in the file: header fields, the maps,
            // anywhere (page-table pages live among the data); sometimes
            // cut the file short. Undo it all afterwards.
            let mut spots = Vec::new();
            for _ in 0..1 + rng.below(8) {
                let at = match rng.below(3) {
                    0 => rng.below(128.min(len)), // the header's fields
                    1 => rng.below(case.meta.max(64) as u64),
                    _ => rng.below(len),
                };
                let width = [1, 4, 8][rng.below(3) as usize].min(len - at);
                let value = match rng.below(4) {
                    0 => 0,
                    1 => u64::MAX,
                    2 => rng.next() & 0xffff_ffff,
                    _ => rng.next(),
                };
                file.write_all_at(&value.to_le_bytes()[..width as usize], at)
                    .unwrap();
                spots.push((at, width));
            }
            let cut = (rng.below(8) == 0).then(|| rng.below(len));
            if let Some(cut) = cut {
                file.set_len(cut).unwrap();
            }
            // Sometimes the kernel image is corrupt too (its symbol table,
            // section headers, ELF header).
            let kernel = if rng.below(8) == 0 {
                let mut k = case.kernel.clone();
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(k.len() as u64) as usize;
                    k[at] = rng.next() as u8;
                }
                s.file("bad-kernel", &k)
            } else {
                kernel.clone()
            };
            // Every third round checks the kernel against the dump (which
            // refuses many corrupt dumps); the others open what they can,
            // so that reads and walks meet the corruption. One round in
            // four reads the core with pread rather than the mapping.
            let options = kvm::OpenOptions::new()
                .verify_kernel(round % 3 == 0)
                .pread(round % 4 == 1);
            let result = catch_unwind(AssertUnwindSafe(|| {
                options
                    .open(&kernel, &path)
                    .map(|kvm| exercise(&kvm, &case.probes))
                    .is_ok()
            }));
            let Ok(did_open) = result else {
                panic!(
                    "{} round {round}: a corrupt dump made the library panic",
                    case.name
                );
            };
            opened += usize::from(did_open);
            rounds += 1;
            if let Some(cut) = cut {
                file.set_len(len).unwrap();
                file.write_all_at(&case.core[cut as usize..], cut).unwrap();
            }
            for (at, width) in spots {
                file.write_all_at(&case.core[at as usize..(at + width) as usize], at)
                    .unwrap();
            }
        }
    }
    // Not every corruption is caught at open: reads and walks ran too.
    assert!(
        opened > rounds / 4,
        "only {opened} of {rounds} corrupt dumps opened"
    );
    eprintln!("{opened} of {rounds} corrupt dumps opened and were read and walked");
}
