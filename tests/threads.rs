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
