//! Malformed, truncated, lying and mismatched inputs: each gets a clear
//! error, never a panic, never a read outside the file.

mod fixture;
use fixture::amd64::{Amd64, DMAP_MIN, VM_MIN_KERNEL_ADDRESS};
use fixture::elf::{self, KSym, KernelLayout, Place, Target};
use fixture::{Fill, PhysRam, Scratch, PAGE};
use kvm::Kvm;

fn machine() -> Amd64 {
    Amd64::new(2 << 20, Fill::Pattern)
}

/// Opening must fail with a message containing `want`.
fn open_err(s: &Scratch, kernel: &[u8], core: &[u8], want: &str) {
    let k = s.file("kernel", kernel);
    let c = s.file("core", core);
    match Kvm::open(k, c) {
        Ok(kvm) => panic!("opened ({}) but expected: {want}", kvm.backend()),
        Err(e) => assert!(e.to_string().contains(want), "error {e:?} lacks {want:?}"),
    }
}

fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn bad_core_files() {
    let m = machine();
    let s = Scratch::new("badcore");
    let k = m.kernel();
    open_err(&s, &k, b"", "core is an empty file");
    open_err(&s, &k, &[0x55; 8192], "neither an ELF core nor a minidump");
    let full = m.full_dump(false).bytes;
    open_err(&s, &k, &full[..40], "bad core file: ELF header");
    open_err(&s, &k, &full[..100], "program headers");
    // The kernel image given as the core.
    open_err(&s, &k, &k, "not ET_CORE");
}

#[test]
fn lying_minidump_headers() {
    let m = machine();
    let s = Scratch::new("badmini");
    let k = m.kernel();
    let good = m.minidump(3).bytes;
    open_err(&s, &k, &good[..100], "too short for the header page");

    let mut v = good.clone();
    put32(&mut v, 24, 9); // version
    open_err(&s, &k, &v, "unknown version 9 (expected 1, 2 or 3)");

    let mut v = good.clone();
    put32(&mut v, 28, u32::MAX); // msgbufsize
    open_err(&s, &k, &v, "lies past the end");

    let mut v = good.clone();
    put32(&mut v, 32, u32::MAX - 4095); // bitmapsize
    open_err(&s, &k, &v, "lies past the end");

    let mut v = good.clone();
    put32(&mut v, 36, 0x7fff_0000); // pmapsize
    open_err(&s, &k, &v, "page map");

    let mut v = good.clone();
    put32(&mut v, 64, 0x7fff_0000); // dumpavailsize
    open_err(&s, &k, &v, "lies past the end");

    // The bitmap claims pages the (truncated) file does not hold.
    open_err(
        &s,
        &k,
        &good[..good.len() - 2 * PAGE as usize],
        "truncated dump or corrupt bitmap",
    );

    // Section offsets, from the header as a reader finds them: header page,
    // rounded message buffer, dump_avail page, bitmap.
    let msgbufsize = u64::from(u32::from_le_bytes(good[28..32].try_into().unwrap()));
    let avail = (PAGE + msgbufsize.next_multiple_of(PAGE)) as usize;
    let bitmap_off = avail + PAGE as usize;

    // A bitmap claiming every page.
    let mut v = good.clone();
    v[bitmap_off..bitmap_off + 64].fill(0xff);
    open_err(&s, &k, &v, "corrupt bitmap");

    // dump_avail ranges out of order.
    let mut v = good.clone();
    v[avail..avail + 8].copy_from_slice(&0x9000_0000u64.to_le_bytes());
    v[avail + 8..avail + 16].copy_from_slice(&0x8000_0000u64.to_le_bytes());
    open_err(&s, &k, &v, "reversed, out of order");

    // dump_avail ranges overlapping (their bit numbers would overflow).
    let mut v = good.clone();
    for i in 0..64 {
        let at = avail + 16 * i;
        v[at..at + 8].copy_from_slice(&0u64.to_le_bytes());
        v[at + 8..at + 16].copy_from_slice(&0xffff_ffff_ffff_f000u64.to_le_bytes());
    }
    open_err(&s, &k, &v, "overlaps the one before");

    // The direct map ending before it starts.
    let mut v = good;
    v[56..64].copy_from_slice(&(DMAP_MIN - 1).to_le_bytes());
    open_err(&s, &k, &v, "direct map ends");
}

#[test]
fn lying_elf_cores() {
    let m = machine();
    let s = Scratch::new("badelf");
    let k = m.kernel();
    let good = m.full_dump(false).bytes;
    let phoff = 64;
    // e_phnum far larger than the file.
    let mut v = good.clone();
    v[56..58].copy_from_slice(&0xffffu16.to_le_bytes());
    open_err(&s, &k, &v, "program headers");
    // A segment whose offset + size overflows.
    let mut v = good.clone();
    v[phoff + 8..phoff + 16].copy_from_slice(&u64::MAX.to_le_bytes());
    open_err(&s, &k, &v, "overflows");
    // Overlapping segments: the second starts inside the first.
    let mut v = good.clone();
    let second = phoff + 56;
    v[second + 24..second + 32].copy_from_slice(&0x2000u64.to_le_bytes());
    open_err(&s, &k, &v, "overlap");
    // A segment at the very top of physical memory, and one claiming 2^60
    // bytes of a small file: the search for the page tables must end at
    // once, with an error, without overflowing.
    let mut v = good.clone();
    v[phoff + 16..phoff + 24].copy_from_slice(&0xffff_ffff_ffe0_0000u64.to_le_bytes()); // p_paddr
    v[phoff + 32..phoff + 40].copy_from_slice(&0x1f_ffffu64.to_le_bytes()); // p_filesz
    v[56..58].copy_from_slice(&1u16.to_le_bytes());
    open_err(&s, &k, &v, "cannot find the kernel page tables");
    let mut v = good[..2 << 20].to_vec();
    v[phoff + 16..phoff + 24].copy_from_slice(&0x1000_0000u64.to_le_bytes());
    v[phoff + 32..phoff + 40].copy_from_slice(&(1u64 << 60).to_le_bytes());
    v[56..58].copy_from_slice(&1u16.to_le_bytes());
    let t = std::time::Instant::now();
    open_err(&s, &k, &v, "cannot find the kernel page tables");
    assert!(
        t.elapsed().as_secs() < 10,
        "the page-table search scanned what the file does not hold"
    );

    // No PT_LOAD at all.
    let mut v = good;
    v[56..58].copy_from_slice(&0u16.to_le_bytes());
    open_err(&s, &k, &v, "no PT_LOAD");
}

fn other_kernel(machine: u16, is_64: bool) -> Vec<u8> {
    let t = Target {
        is_64,
        big_endian: false,
        machine,
    };
    let l = KernelLayout {
        text: 0x0100_0000,
        data: 0x0110_0000,
        bss: 0x0120_0000,
    };
    elf::kernel_image(
        t,
        l,
        &[],
        &[KSym::global("kernbase", 0x0080_0000, Place::Abs)],
    )
}

#[test]
fn mismatched_kernel_and_core() {
    use object::elf::{EM_386, EM_AARCH64};
    let m = machine();
    let s = Scratch::new("mismatch");
    let k = m.kernel();
    // i386 and arm64 kernels with amd64 cores.
    for core in [m.full_dump(false).bytes, m.minidump(3).bytes] {
        open_err(
            &s,
            &other_kernel(EM_386, false),
            &core,
            "kernel is ELF32 little-endian i386",
        );
        open_err(&s, &other_kernel(EM_AARCH64, true), &core, "aarch64");
    }
    // An amd64 kernel with an i386 ELF core and with foreign minidumps.
    let ram = PhysRam::new(&[(0, 0x10_0000)], Fill::Zero, (0x8_0000, 0x9_0000));
    let i386 = Target {
        is_64: false,
        big_endian: false,
        machine: EM_386,
    };
    open_err(
        &s,
        &k,
        &elf::full_dump(i386, &ram, None),
        "core is an ELF32 little-endian i386",
    );
    for magic in [&b"minidump FreeBSD/i386\0"[..], b"minidump FreeBSD/arm64\0"] {
        let mut v = vec![0u8; 2 * PAGE as usize];
        v[..magic.len()].copy_from_slice(magic);
        let name = String::from_utf8_lossy(&magic[..magic.len() - 1]).into_owned();
        open_err(&s, &k, &v, &format!("a minidump with magic {name:?}"));
    }
    // Not a kernel at all.
    open_err(
        &s,
        b"#!/bin/sh\n",
        &m.minidump(3).bytes,
        "bad kernel image: not an ELF file",
    );
}

/// A kernel that does not match the full dump: no consistent PML4 exists.
#[test]
fn full_dump_without_page_tables() {
    let m = machine();
    let s = Scratch::new("nopml4");
    let mut other = machine();
    // Point KPML4phys at a page of zeros.
    other.write_virt(fixture::amd64::va::KPML4PHYS, &0x0390_0000u64.to_le_bytes());
    open_err(
        &s,
        &m.kernel(),
        &other.full_dump(false).bytes,
        "cannot find the kernel page tables",
    );
    // A kernel without KPML4phys.
    let mut nosym = machine();
    nosym.syms.retain(|s| s.name != "KPML4phys");
    open_err(
        &s,
        &nosym.kernel(),
        &m.full_dump(false).bytes,
        "bad namelist: no symbol KPML4phys",
    );
}

/// A page-table entry pointing outside the dump is reported as damage.
#[test]
fn page_table_outside_the_dump() {
    let mut m = machine();
    // Make the PD entry for the 4 KiB kernel-VM pages point past RAM.
    let slot =
        m.pt.slot(&mut m.ram, VM_MIN_KERNEL_ADDRESS, fixture::amd64::PD);
    m.ram.set(slot, 8, false, 0x7_0000_0000 | 0x3);
    let s = Scratch::new("ptout");
    for d in [m.full_dump(false), m.minidump(2)] {
        let kvm = Kvm::open(s.file("k", &m.kernel()), s.file("c", &d.bytes)).unwrap();
        let e = kvm
            .read(VM_MIN_KERNEL_ADDRESS + 0x1000, &mut [0u8; 8])
            .unwrap_err();
        assert!(
            e.to_string().contains("damaged page tables: PTE table page at physical address 0x700000000 is not in the dump"),
            "{e}"
        );
    }
}

/// Hostile page tables that share one table among all entries (512 PDPEs
/// to one PD, 512 PDEs to one page table: 2^27 paths to the same pages):
/// the walk enters each table once and ends promptly.
#[test]
fn shared_tables_do_not_multiply_a_walk() {
    use fixture::amd64::{PD, PDP};
    let mut m = machine();
    let va = VM_MIN_KERNEL_ADDRESS;
    let pdpe_slot = m.pt.slot(&mut m.ram, va, PDP);
    let pde_slot = m.pt.slot(&mut m.ram, va, PD);
    let (pdpe, pde) = (
        m.ram.get(pdpe_slot, 8, false),
        m.ram.get(pde_slot, 8, false),
    );
    let (pdp_table, pd_table) = (pdpe_slot & !0xfff, pde_slot & !0xfff);
    for i in 0..512 {
        m.ram.set(pdp_table + i * 8, 8, false, pdpe);
        m.ram.set(pd_table + i * 8, 8, false, pde);
    }
    let s = Scratch::new("shared");
    let kvm = Kvm::open(
        s.file("k", &m.kernel()),
        s.file("c", &m.full_dump(false).bytes),
    )
    .unwrap();
    let mut n = 0u64;
    assert!(kvm
        .walk_pages(|_| {
            n += 1;
            n < 1_000_000
        })
        .unwrap());
    assert!(n < 10_000, "{n} pages reported");
}
