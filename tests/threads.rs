//! Kernel threads and their registers on FreeBSD dumps of every
//! architecture (issue 10): the fixture kernels' process tables
//! (tests/fixture/procs.rs) with `struct pcb` as amd64, i386 (before and
//! after the AVX-era layout), arm64 (before and after FreeBSD 14's) and
//! riscv kernels lay it out, read back through `Kvm::threads` and
//! `Kvm::registers` and compared with what kgdb would show.

mod fixture;
use fixture::dmap::{DmapMachine, ARM64_16K, ARM64_4K, RISCV};
use fixture::i386::{Era, Mode, I386};
use fixture::procs::{Pcb, Procs};
use fixture::{Fill, Scratch};
use kvm::Kvm;
use std::path::Path;

/// The threads of the dump are the fixture's, and each one's registers
/// are what its PCB holds, as kgdb supplies them: no more, no fewer.
fn check(what: &str, kernel: &Path, core: &Path, procs: &Procs, arch: &str) {
    let kvm = Kvm::open(kernel, core).unwrap_or_else(|e| panic!("{what}: {e}"));
    let threads = kvm.threads().unwrap();
    assert_eq!(threads, procs.expected_threads(), "{what}");
    for t in &threads {
        let regs = kvm.registers(t).unwrap();
        assert_eq!(regs.arch().gdb_name(), arch, "{what}");
        let want = procs.expected_registers(t.pcb);
        for &(name, v) in &want {
            assert_eq!(regs.get(name), Some(v), "{what}: thread {} {name}", t.tid);
        }
        let known: Vec<&str> = regs
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(r, _)| r.name)
            .collect();
        assert_eq!(known.len(), want.len(), "{what}: {known:?}");
    }
}

#[test]
fn i386_pcbs_of_both_layouts() {
    for (name, pcb, osreldate) in [
        ("new", Pcb::I386, Some(1_302_000)),
        ("avx-era-unknown", Pcb::I386, None),
        ("old", Pcb::I386Old, Some(1_001_000)),
    ] {
        let mut m = I386::new(Mode::Pae, Era::New, false);
        let procs = m.add_threads(pcb, osreldate);
        let s = Scratch::new(&format!("threads-i386-{name}"));
        let kernel = s.file("kernel", &m.kernel());
        let core = s.file("full", &m.full_dump().bytes);
        check(name, &kernel, &core, &procs, "i386");
        let core = s.file("mini", &m.minidump(2).bytes);
        check(name, &kernel, &core, &procs, "i386");
    }
}

#[test]
fn arm64_pcbs_before_and_after_freebsd_14() {
    for (name, arch, pcb, osreldate) in [
        ("14-4k", &ARM64_4K, Pcb::Arm64, Some(1_400_084)),
        ("15-16k", &ARM64_16K, Pcb::Arm64, Some(1_500_000)),
        ("no-osreldate", &ARM64_4K, Pcb::Arm64, None),
        ("13", &ARM64_4K, Pcb::Arm64Old, Some(1_400_083)),
    ] {
        let mut m = DmapMachine::new(arch, Fill::Pattern);
        let procs = m.add_threads(pcb, osreldate);
        let s = Scratch::new(&format!("threads-arm64-{name}"));
        let kernel = s.file("kernel", &m.kernel());
        // 16 KiB pages need version 3 (its dump_avail).
        let version = if arch.page_size() == 0x4000 { 3 } else { 2 };
        let core = s.file("mini", &m.minidump(version).bytes);
        check(name, &kernel, &core, &procs, "aarch64");
    }
}

#[test]
fn riscv_pcbs() {
    let mut m = DmapMachine::new(&RISCV, Fill::Pattern);
    let procs = m.add_threads(Pcb::Riscv, Some(1_500_000));
    let s = Scratch::new("threads-riscv");
    let kernel = s.file("kernel", &m.kernel());
    let core = s.file("mini", &m.minidump(2).bytes);
    check("riscv", &kernel, &core, &procs, "riscv:rv64");
}

/// The thread list of 32-bit and big-endian kernels: arm, mips (o32 and
/// n64, both byte orders), powerpc64 (both byte orders) and powerpc, read
/// in the kernel's word size and byte order (the `stopped_cpus` set is an
/// array of the kernel's `long`s). Their registers are not decoded: the
/// error says so.
#[test]
fn thread_lists_of_32_bit_and_big_endian_kernels() {
    use fixture::arm::{Arm, Pmap};
    use fixture::mips::{Flavour, Mips};
    use fixture::powerpc::{Config, Ppc64Machine, VirtMachine};
    let mut cases: Vec<(String, Vec<u8>, Vec<u8>, Procs)> = Vec::new();
    let mut arm = Arm::new(Pmap::V6);
    let p = arm.add_threads();
    cases.push(("arm".into(), arm.kernel(), arm.minidump(2).bytes, p));
    for f in Flavour::FOUR {
        let mut m = Mips::new(f);
        let p = m.add_threads();
        cases.push((f.backend().into(), m.kernel(), m.minidump(2).bytes, p));
    }
    for big_endian in [true, false] {
        let mut m = Ppc64Machine::new(Config {
            big_endian,
            phyp: false,
            relocated: false,
            ptegs_log2: 11,
        });
        let p = m.add_threads();
        let name = format!("powerpc64 be={big_endian}");
        cases.push((name, m.kernel(), m.minidump(2).bytes, p));
    }
    let mut ppc = VirtMachine::new(false, true);
    let p = ppc.add_threads();
    cases.push(("powerpc".into(), ppc.kernel(), ppc.elf_dump(false), p));
    for (name, kernel, core, procs) in cases {
        let s = Scratch::new("threads-other");
        let kvm = Kvm::open(s.file("kernel", &kernel), s.file("core", &core))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let threads = kvm.threads().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(threads, procs.expected_threads(), "{name}");
        assert!(threads.iter().any(|t| t.crashed), "{name}");
        assert_eq!(kvm.register_arch(), None, "{name}");
        let e = kvm.registers(&threads[0]).unwrap_err().to_string();
        assert!(e.contains("registers"), "{name}: {e}");
    }
}
