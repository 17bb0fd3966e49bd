//! powerpc64 ELF dumps (`lib/libkvm/kvm_powerpc64.c`), big- and
//! little-endian: the ELF core of virtual chunks a powerpc64 kernel wrote
//! before it had minidumps (FreeBSD 12; `moea64_scan_init` and
//! `cb_dumphdr` in sys/kern/kern_dump.c), read as `arch/powerpc.rs`
//! describes. Since powerpc64 writes minidumps (`MINIDUMP_PAGE_TRACKING`),
//! its ELF dumps are the `debug.minidump=0` form of physical memory, which
//! libkvm cannot read ("Raw corefile not supported") and which is refused
//! here with that reason.
//!
//! libkvm's probe accepts any core with a powerpc64 kernel, minidumps
//! included; this one takes only ELF cores (or a kerneldumpheader naming
//! powerpc64), so minidumps go to `arch/minidump_powerpc64.rs`.
//! `kvm_kerndisp` is 0, as in libkvm (no `ka_kerndisp` here).

use crate::arch::powerpc::{initvtop_kind, Kind};
use crate::registry::{Backend, Probe, BACKENDS};
use linkme::distributed_slice;
use object::elf::EM_PPC64;

const POWERPC64: Kind = Kind {
    is_64: true,
    big_endian: true,
    machine: EM_PPC64,
    kdh_arch: &[b"powerpc64"],
    name: "powerpc64",
};

const POWERPC64LE: Kind = Kind {
    is_64: true,
    big_endian: false,
    machine: EM_PPC64,
    kdh_arch: &[b"powerpc64le"],
    name: "powerpc64le",
};

fn probe_be(p: &Probe<'_>) -> bool {
    p.kernel_is(true, true, EM_PPC64) && POWERPC64.probe(p)
}

fn probe_le(p: &Probe<'_>) -> bool {
    p.kernel_is(true, false, EM_PPC64) && POWERPC64LE.probe(p)
}

#[distributed_slice(BACKENDS)]
static POWERPC64_ELF: Backend = Backend {
    name: "powerpc64 ELF dump",
    probe: probe_be,
    initvtop: |s| initvtop_kind(s, POWERPC64),
    native: || cfg!(all(target_arch = "powerpc64", target_endian = "big")),
};

#[distributed_slice(BACKENDS)]
static POWERPC64LE_ELF: Backend = Backend {
    name: "powerpc64le ELF dump",
    probe: probe_le,
    initvtop: |s| initvtop_kind(s, POWERPC64LE),
    native: || cfg!(all(target_arch = "powerpc64", target_endian = "little")),
};
