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
    fixture::open_err(s, kernel, core, &[want]);
}

fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn bad_core_files() {
    let m = machine();
    let s = Scratch::new("badcore");
    let k = m.kernel();
    let core = s.path().join("core");
    let core = core.display();
    open_err(
        &s,
        &k,
        b"",
        &format!("core {core}: is an empty file (expected a crash dump"),
    );
    open_err(&s, &k, &[0x55; 8192], "neither an ELF core nor a minidump");
    let full = m.full_dump(false).bytes;
    open_err(&s, &k, &full[..40], &format!("core {core}: ELF header"));
    open_err(&s, &k, &full[..100], "program headers");
    // The kernel image given as the core.
    open_err(
        &s,
        &k,
        &k,
        &format!(
            "core {core}: is an ELF64 little-endian x86-64 (amd64) (e_machine 62) executable \
             (ET_EXEC), not a crash dump (an ELF core or a minidump); is it the kernel?"
        ),
    );
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
        "kernel: is not an ELF file (expected a FreeBSD kernel image)",
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

/// The standard machine with hostile tables in kernel VM: all 512 PDPEs of
/// one PDPT name one PD, whose 512 PDEs all name one page table.
fn machine_with_shared_tables() -> Amd64 {
    use fixture::amd64::{PD, PDP};
    let mut m = machine();
    let va = VM_MIN_KERNEL_ADDRESS;
    let pdpe_slot = m.pt.slot(&mut m.ram, va, PDP);
    let pde_slot = m.pt.slot(&mut m.ram, va, PD);
    let (pdpe, pde) = (
        m.ram.get(pdpe_slot, 8, false),
        m.ram.get(pde_slot, 8, false),
    );
    for i in 0..512 {
        m.ram.set((pdpe_slot & !0xfff) + i * 8, 8, false, pdpe);
        m.ram.set((pde_slot & !0xfff) + i * 8, 8, false, pde);
    }
    m
}

/// Hostile page tables that share one table among all entries (512 PDPEs
/// to one PD, 512 PDEs to one page table: 2^27 paths to the same pages):
/// the walk reports pages until it has entered as many tables as the dump
/// holds pages, then fails saying why: its work follows the dump's size.
#[test]
fn shared_tables_do_not_multiply_a_walk() {
    let m = machine_with_shared_tables();
    let s = Scratch::new("shared");
    let kvm = Kvm::open(
        s.file("k", &m.kernel()),
        s.file("c", &m.full_dump(false).bytes),
    )
    .unwrap();
    let mut n = 0u64;
    let e = kvm
        .walk_pages(|_| {
            n += 1;
            true
        })
        .unwrap_err();
    assert!(e.to_string().contains("alias or loop"), "{e}");
    let held_pages = m.ram.ranges.iter().map(|r| (r.1 - r.0) / PAGE).sum::<u64>();
    assert!(n <= (held_pages + 64) * 512, "{n} pages reported");
}

/// Patches the kernel image's `version` string as a rebuilt kernel's would
/// differ ("14.2" becomes "14.3").
fn other_build(kernel: &[u8]) -> Vec<u8> {
    let v = fixture::amd64::VERSION;
    let at = kernel
        .windows(v.len())
        .position(|w| w == v)
        .expect("the kernel image holds its version string");
    let mut k = kernel.to_vec();
    k[at + 11] = b'3';
    k
}

/// Files that cannot be a FreeBSD kernel are refused at open, saying what
/// they are; a kernel and core given in the wrong order are called swapped.
#[test]
fn kernels_that_are_not_freebsd_kernels() {
    let m = machine();
    let s = Scratch::new("notkernel");
    let k = m.kernel();
    let core = m.minidump(3).bytes;
    let kernel = s.path().join("kernel");
    let kernel = kernel.display();
    // A position-independent executable, such as /bin/ls.
    let mut pie = k.clone();
    pie[16..18].copy_from_slice(&object::elf::ET_DYN.to_le_bytes());
    open_err(
        &s,
        &pie,
        &core,
        &format!(
            "kernel {kernel}: is an ELF64 little-endian x86-64 (amd64) (e_machine 62) shared \
             object or position-independent executable (ET_DYN), not a FreeBSD kernel image"
        ),
    );
    // A kernel module.
    let mut module = k.clone();
    module[16..18].copy_from_slice(&object::elf::ET_REL.to_le_bytes());
    open_err(
        &s,
        &module,
        &core,
        "relocatable object (ET_REL), such as a kernel module",
    );
    // A Linux ELF file.
    let mut linux = k.clone();
    linux[7] = object::elf::ELFOSABI_LINUX;
    open_err(&s, &linux, &core, "its ELF OS ABI is 3 (Linux)");
    // A Linux vmlinux: no OS ABI, no FreeBSD symbols.
    let t = fixture::amd64::TARGET;
    let layout = KernelLayout {
        text: fixture::amd64::va::TEXT,
        data: fixture::amd64::va::DATA,
        bss: fixture::amd64::va::BSS,
    };
    let mut vmlinux = elf::kernel_image(
        t,
        layout,
        &[],
        &[KSym::global("linux_banner", layout.data, Place::Data)],
    );
    vmlinux[7] = object::elf::ELFOSABI_NONE;
    open_err(
        &s,
        &vmlinux,
        &core,
        &format!(
            "kernel {kernel}: has no symbol `version`: it looks like a Linux kernel (it has \
             linux_banner)"
        ),
    );
    let mut stripped = machine();
    stripped.syms.retain(|s| s.name != "version");
    open_err(
        &s,
        &stripped.kernel(),
        &core,
        "has no symbol `version`: not a FreeBSD kernel, or one stripped of its symbol table",
    );
    // The dump given as the kernel, with and without the kernel as the core.
    for dump in [m.full_dump(false).bytes, core.clone()] {
        open_err(
            &s,
            &dump,
            &k,
            "the two look swapped (give the kernel image first",
        );
        open_err(&s, &dump, &dump, "is a crash dump, not a kernel image");
    }
}

/// A kernel of another build than the running one is refused, naming both
/// version strings; the check can be turned off.
#[test]
fn kernel_of_another_build() {
    let m = machine();
    let s = Scratch::new("otherbuild");
    let k = s.file("kernel", &other_build(&m.kernel()));
    for (name, dump) in [("full", m.full_dump(false)), ("mini", m.minidump(3))] {
        let c = s.file(name, &dump.bytes);
        let e = Kvm::open(&k, &c).unwrap_err();
        assert!(matches!(e, kvm::Error::Mismatch(_)), "{e:?}");
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "kernel {} does not match core {}: the kernel's version is \"FreeBSD 14.3-RELEASE",
                k.display(),
                c.display()
            )),
            "{text}"
        );
        assert!(
            text.contains("but the dump holds \"FreeBSD 14.2-RELEASE amd64 fixture #0"),
            "{text}"
        );
        let kvm = kvm::OpenOptions::new()
            .verify_kernel(false)
            .open(&k, &c)
            .unwrap();
        assert!(kvm.symbol("version").is_some());
    }
    // The matching kernel opens.
    Kvm::open(s.file("good", &m.kernel()), s.path().join("mini")).unwrap();
}

/// Runs `f` on another thread and fails if it has not returned within a
/// minute: a guard against hangs, not a measure of speed.
fn within_a_minute<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(f()));
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what} did not return within a minute"))
}

/// Paths that are not regular files are refused without blocking (a FIFO
/// would block a plain open), saying what they are.
#[test]
fn special_files_are_refused() {
    let m = machine();
    let s = Scratch::new("special");
    let k = s.file("kernel", &m.kernel());
    let c = s.file("core", &m.minidump(3).bytes);
    let fifo = s.path().join("fifo");
    let cpath = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(cpath.as_ptr(), 0o600) }, 0);
    let open = |kernel: &std::path::Path, core: &std::path::Path| {
        let (kernel, core) = (kernel.to_owned(), core.to_owned());
        within_a_minute("open", move || {
            Kvm::open(kernel, core).unwrap_err().to_string()
        })
    };
    let dir = s.path();
    for (kernel, core, want) in [
        (&fifo, &c, format!("kernel {}: is a FIFO (named pipe), not a regular file (expected a FreeBSD kernel image)", fifo.display())),
        (&k, &fifo, format!("core {}: is a FIFO (named pipe), not a regular file (expected a crash dump: an ELF core or a minidump)", fifo.display())),
        (&k, &dir.to_path_buf(), format!("core {}: is a directory, not a regular file", dir.display())),
        (&k, &"/dev/null".into(), "core /dev/null: is a character device (live kernels, /dev/mem, are not supported), not a regular file".to_string()),
        (&k, &dir.join("missing"), format!("core {}: No such file or directory", dir.join("missing").display())),
    ] {
        let e = open(kernel, core);
        assert!(e.starts_with(&want), "{e}\nwanted: {want}");
        assert!(!e.contains("os error"), "{e}");
    }
    // procfs files report size 0 but are not empty.
    if cfg!(target_os = "linux") {
        let e = open(&k, "/proc/self/mem".as_ref());
        assert_eq!(
            e,
            "core /proc/self/mem: is a special file whose size is unknown (as in /proc or /sys), \
             not a regular file (expected a crash dump: an ELF core or a minidump)"
        );
    }
}

/// An ELF full dump whose page-directory pages name 512 distinct page
/// tables each, inside a PT_LOAD that claims 1 TiB but whose file ends long
/// before: no table past the end of the file is entered, so the walk costs
/// what the file holds. (Entering them all, 512 entries each, takes minutes.)
#[test]
fn walk_cost_follows_the_file() {
    use fixture::amd64::PML4;
    let mut m = machine();
    // Without the recursive slot, which would show the hostile tables
    // themselves as 4 KiB pages (millions of them, rightly).
    let recursive = m.pt.root + 256 * 8;
    m.ram.set(recursive, 8, false, 0);
    let mut d = m.full_dump(false);
    // Claim 1 TiB for the last PT_LOAD (RAM at 4 GiB, at the end of the
    // file): its "page tables" at 4 GiB + 8 MiB and up lie past the end.
    let last = m.ram.ranges.len() - 1;
    let ph = 64 + 56 * last;
    d.bytes[ph + 32..ph + 40].copy_from_slice(&(1u64 << 40).to_le_bytes()); // p_filesz
    let beyond = m.ram.ranges[last].1;
    // 6000 page directories in free RAM from 8 MiB, 512 PDPEs to a page,
    // each PDE naming another table beyond the end of the file.
    let free = (8u64 << 20)..(32 << 20);
    let pds: Vec<u64> = free.clone().step_by(PAGE as usize).take(6000).collect();
    let pdpts: Vec<u64> = (free.end..)
        .step_by(PAGE as usize)
        .take(pds.len().div_ceil(512))
        .collect();
    let put = |bytes: &mut Vec<u8>, pa: u64, v: u64| {
        let off = (d.offsets[&(pa & !(PAGE - 1))] + (pa & (PAGE - 1))) as usize;
        bytes[off..off + 8].copy_from_slice(&v.to_le_bytes());
    };
    let mut bytes = std::mem::take(&mut d.bytes);
    for &pdpt in &pdpts {
        let off = d.offsets[&pdpt] as usize;
        bytes[off..off + PAGE as usize].fill(0);
    }
    for (i, &pd) in pds.iter().enumerate() {
        for j in 0..512u64 {
            let pt = beyond + (i as u64 * 512 + j) * PAGE;
            put(&mut bytes, pd + j * 8, pt | 0x3);
        }
        put(&mut bytes, pdpts[i / 512] + (i as u64 % 512) * 8, pd | 0x3);
    }
    for (i, &pdpt) in pdpts.iter().enumerate() {
        let slot = m.pt.root + (1 + i as u64) * 8; // PML4 entries 1.., unused
        assert_eq!(m.pt.entry(&m.ram, (1 + i as u64) << 39, PML4), Some(0));
        put(&mut bytes, slot, pdpt | 0x3);
    }
    let s = Scratch::new("walkcost");
    let k = s.file("k", &m.kernel());
    let c = s.file("c", &bytes);
    let (done, n) = within_a_minute("the walk", move || {
        let kvm = Kvm::open(k, c).unwrap();
        let mut n = 0u64;
        let done = kvm.walk_pages(|_| {
            n += 1;
            true
        });
        (done.unwrap(), n)
    });
    assert!(done);
    // Only the model's own pages are leaves: the hostile tables hold none.
    assert_eq!(n, m.expected_pages(&m.full_dump(false)).len() as u64);
}

/// A kernel without `version` (stripped) opens when the kernel check is
/// off, where the backend needs no symbol (an amd64 minidump), as with
/// libkvm.
#[test]
fn stripped_kernel_opens_unverified() {
    let m = machine();
    let s = Scratch::new("stripped");
    let mut stripped = machine();
    stripped.syms.retain(|s| s.name != "version");
    let (k, c) = (
        s.file("kernel", &stripped.kernel()),
        s.file("core", &m.minidump(3).bytes),
    );
    assert!(Kvm::open(&k, &c).is_err());
    let kvm = kvm::OpenOptions::new()
        .verify_kernel(false)
        .open(&k, &c)
        .unwrap();
    let mut buf = [0u8; 7];
    kvm.read_exact(fixture::amd64::va::VERSION, &mut buf)
        .unwrap();
    assert_eq!(&buf, b"FreeBSD");
}

/// A segment whose file offset lies past what `off_t` holds reads as past
/// the end of the file (a short count), mapped or with pread alike.
#[test]
fn segment_offset_past_off_t() {
    let m = machine();
    let s = Scratch::new("offt");
    let mut core = m.full_dump(false).bytes;
    let last = m.ram.ranges.len() - 1; // RAM at 4 GiB, mapped at va::K1G
    let ph = 64 + 56 * last;
    core[ph + 8..ph + 16].copy_from_slice(&(1u64 << 63).to_le_bytes()); // p_offset
    let (k, c) = (s.file("kernel", &m.kernel()), s.file("core", &core));
    for pread in [false, true] {
        let kvm = kvm::OpenOptions::new().pread(pread).open(&k, &c).unwrap();
        let n = kvm.read(fixture::amd64::va::K1G, &mut [0u8; 8]).unwrap();
        assert_eq!(n, 0, "pread mode {pread}");
    }
}

/// PT_LOAD headers may all claim the same file bytes (nothing forbids it):
/// the pages the dump holds, which bound a walk's work, are still at most
/// the file's own. 1000 such headers over aliased tables once let a walk
/// run for hours.
#[test]
fn segments_sharing_file_bytes_do_not_stretch_a_walk() {
    let mut m = machine_with_shared_tables();
    let va = VM_MIN_KERNEL_ADDRESS;
    let pml4e = m.ram.get(m.pt.root + (va >> 39 & 511) * 8, 8, false);
    for i in 1..200 {
        m.ram.set(m.pt.root + i * 8, 8, false, pml4e);
    }
    // The dump, then 1000 more PT_LOADs, each the whole file again at a
    // physical address of its own; their headers go at the end.
    let mut core = m.full_dump(false).bytes;
    let len = core.len() as u64;
    let (phoff, phnum) = (len, 3 + 1000u64);
    let mut extra = core[64..64 + 56 * 3].to_vec();
    for i in 0..1000u64 {
        let mut ph = [0u8; 56];
        ph[0..4].copy_from_slice(&object::elf::PT_LOAD.to_le_bytes());
        let pa = (1u64 << 40) + i * len.next_multiple_of(1 << 30);
        for (at, v) in [(8, 0), (16, pa), (24, pa), (32, len), (40, len)] {
            ph[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        extra.extend_from_slice(&ph);
    }
    core.extend_from_slice(&extra);
    core[32..40].copy_from_slice(&phoff.to_le_bytes()); // e_phoff
    core[56..58].copy_from_slice(&(phnum as u16).to_le_bytes()); // e_phnum
    let s = Scratch::new("sharedsegs");
    let (k, c) = (s.file("k", &m.kernel()), s.file("c", &core));
    let e = within_a_minute("the walk", move || {
        let kvm = Kvm::open(k, c).unwrap();
        kvm.walk_pages(|_| true).unwrap_err().to_string()
    });
    assert!(e.contains("alias or loop"), "{e}");
}

/// An arm full dump whose `PT_DUMP_DELTA` lies about where the kernel was
/// loaded: `kernel_l1pa` is read where the header says, names no table
/// that maps it back, and the error says what was tried and from what.
#[test]
fn arm_dump_delta_that_lies() {
    use fixture::arm::{Arm, Pmap, KERNBASE};
    let m = Arm::new(Pmap::V6);
    let s = Scratch::new("arm-delta");
    let mut core = m.full_dump(true).bytes;
    // The third program header is PT_DUMP_DELTA (after the two PT_LOADs);
    // move its p_paddr (ELF32: offset 12) 1 MiB down.
    let ph = 52 + 32 * 2;
    assert_eq!(core[ph..ph + 4], 0x6fb5_d000u32.to_le_bytes());
    let paddr = u32::from_le_bytes(core[ph + 12..ph + 16].try_into().unwrap());
    put32(&mut core, ph + 12, paddr - 0x10_0000);
    let at = fixture::arm::VA.kernel_l1pa - KERNBASE + u64::from(paddr) - 0x10_0000;
    open_err(
        &s,
        &m.kernel(),
        &core,
        &format!(
            "cannot find the kernel page tables: kernel_l1pa (0xc0100100) at physical {at:#x} \
             (kernbase 0xc0000000, physaddr {:#x} from PT_DUMP_DELTA)",
            paddr - 0x10_0000
        ),
    );
}

/// powerpc64 minidump headers and powerpc ELF program headers that lie
/// about sizes: refused naming the section, with no allocation from the
/// header's values.
#[test]
fn powerpc_lying_sizes() {
    use fixture::powerpc::{Config, Ppc64Machine, VirtMachine};
    let s = Scratch::new("ppc-lying");
    let m = Ppc64Machine::new(Config {
        big_endian: true,
        phyp: false,
        relocated: false,
        ptegs_log2: 11,
    });
    let good = m.minidump(2).bytes;
    let kernel = m.kernel();
    for (off, v, want) in [
        (68, u32::MAX, "lies past the end"),
        (72, u32::MAX, "bitmap"),
        (76, 1 << 31, "hashed page table (2147483648 bytes"),
        (136, u32::MAX, "dump_avail page"),
    ] {
        let mut c = good.clone();
        c[off..off + 4].copy_from_slice(&v.to_be_bytes());
        open_err(&s, &kernel, &c, want);
    }
    let p = VirtMachine::new(false, true);
    let mut c = p.elf_dump(false);
    c[44..46].copy_from_slice(&u16::MAX.to_be_bytes()); // e_phnum
    open_err(&s, &p.kernel(), &c, "lies past the end of the file");
}

/// A mips kernel of the wrong ABI for the dump: an o32 kernel (ELFCLASS32,
/// so 32-bit addresses and 4-byte PTEs) with an n64 kernel's minidump,
/// whose kernbase no 32-bit kernel has (its five PTE pages read as 5120
/// 4-byte entries).
#[test]
fn mips_dump_with_a_kernel_of_another_abi() {
    use fixture::mips::{Abi, Flavour, Mips};
    let s = Scratch::new("mips-abi-mismatch");
    let o32 = Mips::new(Flavour::new(Abi::O32, true));
    let n64 = Mips::new(Flavour::new(Abi::N64, true));
    open_err(
        &s,
        &o32.kernel(),
        &n64.minidump(2).bytes,
        "mips minidump: the PTE section's 5120 entries from kernbase 0xc000000000000000 run \
         past the top of the 32-bit address space",
    );
}
