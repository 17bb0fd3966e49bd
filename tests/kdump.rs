//! Linux kdump-compressed dumps (makedumpfile's and QEMU's, plain and
//! flattened) through the Rust API, checked against the fixture model:
//! every codec, filtered and absent pages, 32-bit headers, bad input.

mod fixture;
use fixture::kdump::{compress, flatten, mixed_ram, Codec, Kdump, ZLIB};
use fixture::linux::*;
use fixture::{Miss, Scratch, PAGE};
use kvm::{Error, Fault, Kvm, OpenOptions};
use std::collections::BTreeSet;
use std::path::Path;

fn open(core: &Path) -> kvm::Result<Kvm> {
    OpenOptions::new().open_dump(None, core)
}

/// Pages makedumpfile keeps at `-d 31` in the model: the kernel image, the
/// page tables, vmalloc'd pages, the first MiB and RAM above 4 GiB;
/// everything else in RAM is filtered out.
fn kept(m: &LinuxX86) -> BTreeSet<u64> {
    let pfns = |a: u64, b: u64| (a / PAGE..b / PAGE).collect::<Vec<_>>();
    let mut keep = BTreeSet::new();
    keep.extend(pfns(m.phys_text, m.phys_text + KERNEL_SIZE));
    keep.extend(pfns(0x300_0000, 0x304_0000));
    keep.extend((0..16).map(|i| vmalloc_pa(i) / PAGE));
    keep.extend(pfns(0x1000, 0x9f000));
    keep.extend(pfns(0x1_0000_0000, 0x1_0080_0000));
    keep
}

/// The machine's kdump file: RAM in the 1st bitmap, `kept` in the 2nd.
fn kdump<'a>(m: &'a LinuxX86, codec: Codec) -> Kdump<'a> {
    let keep = kept(m);
    let filtered: Vec<u64> = fixture::linux::ram_pages(&m.ram)
        .into_iter()
        .map(|pa| pa / PAGE)
        .filter(|pfn| !keep.contains(pfn))
        .collect();
    Kdump::new(&m.ram)
        .codec(codec)
        .uts("x86_64", RELEASE)
        .vmcoreinfo(&m.vmcoreinfo())
        .notes(&m.notes(None))
        .filter(filtered)
}

/// What a read must give: the bytes, or which page fails and why.
fn check(kvm: &Kvm, m: &LinuxX86, keep: &BTreeSet<u64>, va: u64, len: u64) {
    let want = fixture::expect_read(
        &m.ram,
        PAGE,
        va,
        len,
        |a| m.maps.pa(a),
        |pa| keep.contains(&(pa / PAGE)),
    );
    let mut buf = vec![0u8; len as usize];
    match (want, kvm.read(va, &mut buf)) {
        (Ok(want), Ok(n)) => {
            assert_eq!(n as u64, len, "{va:#x}");
            assert!(buf == want, "wrong bytes at {va:#x}+{len:#x}");
        }
        (Err(Miss::NotDumped(at)), Err(Error::Translate { va: e, fault })) => {
            assert_eq!(e, at, "{va:#x}");
            let pa = m.maps.pa(at).unwrap();
            let want = if m.ram.contains(pa) {
                Fault::Filtered { pa }
            } else {
                Fault::NotInDump { pa }
            };
            assert_eq!(fault, want, "{va:#x}");
        }
        (Err(Miss::Unmapped(at)), Err(Error::Translate { va: e, fault })) => {
            assert_eq!(e, at);
            assert!(matches!(fault, Fault::Unmapped(_) | Fault::OutOfRange(_)));
        }
        (want, got) => panic!("{va:#x}+{len:#x}: model {want:?}, library {got:?}"),
    }
}

fn check_all(kvm: &Kvm, m: &LinuxX86, reads: usize) {
    let keep = kept(m);
    let text = m.runtime(LINK_TEXT);
    for (va, len) in [
        (m.sym("linux_banner"), BANNER.len() as u64),
        (m.sym("straddle"), 0x1000),
        (m.vmalloc_page(0), 16 * PAGE),
        (m.page_offset + 0x9f000 - 8, 16),
        (m.page_offset + 0x200_0000, 8),
    ] {
        check(kvm, m, &keep, va, len);
    }
    let regions = [
        (text, KERNEL_SIZE + PAGE),
        (m.vmalloc_page(0) - PAGE, 18 * PAGE),
        (m.page_offset, 0x0400_0000),
        (m.page_offset + (4 << 30) - PAGE, (8 << 20) + 2 * PAGE),
    ];
    fixture::random_reads(&regions, reads, |va, len| check(kvm, m, &keep, va, len));
}

/// Every codec, mapped and with pread, plain and flattened: reads match
/// the model, filtered pages say so.
#[test]
fn codecs() {
    let m = LinuxX86::kaslr();
    let s = Scratch::new("kdump-codecs");
    for codec in [
        Codec::None,
        Codec::Zlib,
        Codec::Lzo,
        Codec::Snappy,
        Codec::Zstd,
        Codec::Mixed,
    ] {
        let w = kdump(&m, codec).write();
        let core = s.file("dump", &w.bytes);
        let kvm = open(&core).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
        assert_eq!(kvm.backend(), "Linux x86-64");
        assert_eq!(kvm.kerndisp(), m.kaslr as i64);
        assert_eq!(
            kvm.symbol("init_top_pgt").map(|s| s.value),
            Some(m.sym("init_top_pgt"))
        );
        check_all(&kvm, &m, 500);
        // The CPUs' registers, from the NT_PRSTATUS notes the kdump file
        // carries (pr_reg word 16 is x86-64's rip).
        let threads = kvm.threads().unwrap();
        assert_eq!(threads.len(), m.cpus as usize);
        for t in &threads {
            let cpu = t.cpu.unwrap();
            assert_eq!(t.tid, cpu as i32 + 1);
            let rip = kvm.registers(t).unwrap().get("rip");
            assert_eq!(rip, Some(fixture::linux::pr_reg_word(cpu, 16)), "{codec:?}");
        }
        if codec == Codec::Mixed {
            let kvm = OpenOptions::new()
                .pread(true)
                .open_dump(None, &core)
                .unwrap();
            check_all(&kvm, &m, 300);
            let flat = s.file("flat", &flatten(&w.bytes, 64 << 10, true));
            let kvm = open(&flat).unwrap();
            check_all(&kvm, &m, 300);
        }
    }
}

/// A filtered page's error says it was filtered out; device memory is
/// not in the dump.
#[test]
fn filtered_pages() {
    let m = LinuxX86::kaslr();
    let s = Scratch::new("kdump-filtered");
    let core = s.file("dump", &kdump(&m, Codec::Zlib).write().bytes);
    let kvm = open(&core).unwrap();
    let mut buf = [0u8; 8];
    let va = m.page_offset + 0x200_0000;
    let err = kvm.read(va, &mut buf).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "invalid address ({va:#x}): mapped to physical address {:#x}, a page filtered out \
             of the dump",
            0x200_0000
        )
    );
    let err = kvm.read(m.vmalloc_page(12), &mut buf).unwrap_err();
    assert!(err.to_string().contains("not in the dump"), "{err}");
}

/// The walk reports every leaf, with a file offset exactly for the pages
/// the dump holds: where the page's bytes are, for a page stored as is
/// (in the flattened stream too), where its compressed data starts
/// otherwise.
#[test]
fn walk() {
    let m = LinuxX86::kaslr();
    let s = Scratch::new("kdump-walk");
    let keep = kept(&m);
    for (codec, flat) in [
        (Codec::Snappy, false),
        (Codec::None, false),
        (Codec::None, true),
    ] {
        let w = kdump(&m, codec).write();
        let bytes = if flat {
            flatten(&w.bytes, 64 << 10, false)
        } else {
            w.bytes
        };
        let kvm = open(&s.file("dump", &bytes)).unwrap();
        let got = fixture::walk(&kvm, "kdump");
        let want = m.expected_pages(|_| None);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(kvm::Page { offset: None, ..*g }, *w);
            assert_eq!(
                g.offset.is_some(),
                keep.contains(&(g.paddr / PAGE)),
                "{g:x?}"
            );
            if let (Some(off), Codec::None) = (g.offset, codec) {
                let at = off as usize;
                let n = if flat { 1 } else { PAGE as usize }; // records may split a page
                assert!(
                    bytes[at..at + n] == m.ram.page(g.paddr)[..n],
                    "{flat} {g:x?}"
                );
            }
        }
    }
}

/// QEMU writes an aarch64 guest's kdump file in 64 KiB blocks whatever the
/// kernel's page size (FORMAT-NOTES): VMCOREINFO's PAGESIZE rules pages,
/// the header's block size rules the bitmaps and the stored data; a walk's
/// file offsets point into the block at the page's own bytes.
#[test]
fn aarch64_64k_blocks() {
    use fixture::linux_arm64::{LinuxArm64, CFG_4K_48};
    let m = LinuxArm64::new(&CFG_4K_48);
    let s = Scratch::new("kdump-a64");
    let w = Kdump::new(&m.ram)
        .block_size(64 << 10)
        .codec(Codec::Mixed)
        .uts("Unknown", "")
        .vmcoreinfo(&m.vmcoreinfo())
        .write();
    let kvm = open(&s.file("dump", &w.bytes)).unwrap();
    assert_eq!(kvm.backend(), "Linux aarch64");
    let mut buf = vec![0u8; BANNER.len()];
    let banner = m.sym("linux_banner");
    kvm.read_exact(banner, &mut buf).unwrap();
    assert_eq!(buf, m.maps.read(&m.ram, banner, buf.len() as u64));
    let mut checked = 0;
    kvm.walk_pages(|p| {
        if let (Some(off), true) = (p.offset, p.len == PAGE) {
            // Blocks stored as is (Mixed: every fifth) hold the page at
            // its place in the block.
            let block = p.paddr & !0xffff;
            let raw = (block >> 16) % 5 == 4;
            if raw {
                let at = off as usize;
                assert!(
                    w.bytes[at..at + PAGE as usize] == m.ram.page(p.paddr),
                    "{p:x?}"
                );
                checked += 1;
            }
        }
        true
    })
    .unwrap();
    assert!(checked > 0);
}

/// QEMU leaves the header's machine empty: VMCOREINFO says x86-64.
#[test]
fn qemu_header() {
    let m = LinuxX86::la57();
    let s = Scratch::new("kdump-qemu");
    let core = s.file("dump", &kdump(&m, Codec::Lzo).uts("", "").write().bytes);
    let kvm = open(&core).unwrap();
    assert_eq!(kvm.backend(), "Linux x86-64");
    check_all(&kvm, &m, 300);
}

/// A 32-bit (i686) kdump file of a PAE kernel.
#[test]
fn i386_header() {
    let m = LinuxI386::new(fixture::i386::Mode::Pae, 0xc000_0000, 0x80_0000);
    let s = Scratch::new("kdump-i386");
    let w = Kdump::new(&m.ram)
        .codec(Codec::Mixed)
        .target(false, false)
        .uts("i686", RELEASE)
        .vmcoreinfo(&m.vmcoreinfo())
        .write();
    let kvm = open(&s.file("dump", &w.bytes)).unwrap();
    assert_eq!(kvm.backend(), "Linux i386");
    let mut buf = vec![0u8; BANNER.len()];
    kvm.read_exact(m.sym("linux_banner"), &mut buf).unwrap();
    assert_eq!(buf, BANNER);
    let mut page = vec![0u8; PAGE as usize];
    kvm.read_exact(m.vmalloc_page(13), &mut page).unwrap();
    assert_eq!(page, m.ram.page(0x1_0000_0000));
}

/// Damaged and lying files: a clear error naming what is wrong, at open
/// or at the read that meets it.
#[test]
fn bad_input() {
    let m = LinuxX86::kaslr();
    let s = Scratch::new("kdump-bad");
    let w = kdump(&m, Codec::Zlib).write();
    let banner = m.sym("linux_banner");
    let pfn = (m.phys_text + off::LINUX_BANNER) / PAGE;
    let desc = w.descs.iter().find(|d| d.0 == pfn).unwrap().1 as usize;
    let read_err = |bytes: &[u8]| {
        let kvm = open(&s.file("bad", bytes)).unwrap();
        kvm.read(banner, &mut [0u8; 8]).unwrap_err().to_string()
    };
    // A descriptor pointing past the end of the file.
    let mut b = w.bytes.clone();
    b[desc..desc + 8].copy_from_slice(&(1i64 << 40).to_le_bytes());
    let err = read_err(&b);
    assert!(
        err.contains(&format!("{pfn:#x}")) && err.contains("offset"),
        "{err}"
    );
    // A page that expands past a page.
    let mut b = w.bytes.clone();
    let big = compress(ZLIB, &vec![0u8; 2 * PAGE as usize]);
    let at = b.len();
    b.extend_from_slice(&big);
    b[desc..desc + 8].copy_from_slice(&(at as i64).to_le_bytes());
    b[desc + 8..desc + 12].copy_from_slice(&(big.len() as u32).to_le_bytes());
    let err = read_err(&b);
    assert!(
        err.contains(&format!("{pfn:#x}")) && err.contains("zlib"),
        "{err}"
    );
    // A bitmap claiming more pages than the file holds.
    let mut b = w.bytes.clone();
    b[436..440].copy_from_slice(&0x4000_0000u32.to_le_bytes()); // bitmap_blocks
    let err = open(&s.file("bad", &b)).unwrap_err().to_string();
    assert!(err.contains("bitmap"), "{err}");
    // A VMCOREINFO size beyond the file.
    let mut b = w.bytes.clone();
    b[4096 + 40..4096 + 48].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let err = open(&s.file("bad", &b)).unwrap_err().to_string();
    assert!(err.to_lowercase().contains("vmcoreinfo"), "{err}");
    // A flattened stream cut short.
    let flat = flatten(&w.bytes, 64 << 10, false);
    let err = open(&s.file("bad", &flat[..flat.len() / 2]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("flattened") || err.contains("makedumpfile"),
        "{err}"
    );
}
/// Writes sample dumps for scripts/oracle/kdump_check.py into
/// `$KDUMP_ORACLE_DIR`: `NAME.kdump` and `NAME.expect` (per dumped page:
/// u64 pfn, u64 block size, then the page's bytes, little-endian).
#[test]
#[ignore = "run by scripts/oracle/kdump_check.py"]
fn kdump_oracle_samples() {
    let Ok(dir) = std::env::var("KDUMP_ORACLE_DIR") else {
        return;
    };
    let dir = std::path::Path::new(&dir);
    let ram = mixed_ram(&[(0, 4 << 20), (6 << 20, 8 << 20)]);
    let info = "OSRELEASE=6.1.0-test\nPAGESIZE=4096\n";
    let base = || Kdump::new(&ram).vmcoreinfo(info);
    let samples: Vec<(&str, Kdump, bool)> = vec![
        ("none", base().codec(Codec::None), false),
        ("zlib", base().codec(Codec::Zlib), false),
        ("lzo", base().codec(Codec::Lzo), false),
        ("snappy", base().codec(Codec::Snappy), false),
        ("zstd", base().codec(Codec::Zstd), false),
        ("mixed", base().codec(Codec::Mixed), false),
        (
            "filtered",
            base()
                .codec(Codec::Mixed)
                .exclude_zero(true)
                .filter((40..60).chain(1000..1010)),
            false,
        ),
        ("flat-zlib", base().codec(Codec::Zlib), true),
        (
            "flat-mixed",
            base().codec(Codec::Mixed).exclude_zero(true),
            true,
        ),
        ("v3", base().version(3), false),
        ("v5", base().version(5).codec(Codec::Snappy), false),
        (
            "i686",
            base().target(false, false).uts("i686", "6.1.0-686"),
            false,
        ),
        (
            "ppc64",
            base().target(true, true).uts("ppc64", "6.1.0-ppc64"),
            false,
        ),
        (
            "armeb",
            base()
                .target(false, true)
                .pad32(true)
                .uts("armv7b", "6.1.0-arm"),
            false,
        ),
        (
            // 64 KiB pages: libkdumpfile takes VMCOREINFO's PAGESIZE as the
            // page size, so a 4096 there fails it as QEMU 7.2's dumps do.
            "aarch64-64k",
            Kdump::new(&ram)
                .vmcoreinfo("OSRELEASE=6.1.0-test\nPAGESIZE=65536\n")
                .block_size(64 << 10)
                .uts("aarch64", "6.1.0-arm64"),
            false,
        ),
        (
            "flat-i686",
            base().target(false, false).uts("i686", "6.1.0-686"),
            true,
        ),
    ];
    for (name, k, flat) in samples {
        let w = k.write();
        let bytes = if flat {
            flatten(&w.bytes, 4096, true)
        } else {
            w.bytes
        };
        std::fs::write(dir.join(format!("{name}.kdump")), &bytes).unwrap();
        let mut exp = Vec::new();
        for &pfn in &k.dumped {
            exp.extend_from_slice(&pfn.to_le_bytes());
            exp.extend_from_slice(&k.block_size.to_le_bytes());
            exp.extend_from_slice(&k.unit(pfn));
        }
        std::fs::write(dir.join(format!("{name}.expect")), exp).unwrap();
    }
}

/// `kvm_vtop` and `kvm_read_phys` (extensions) on a kdump file: the model's
/// physical addresses, physical reads across pages, filtered and absent
/// pages named.
#[test]
fn vtop_and_physical_reads() {
    let m = LinuxX86::kaslr();
    let s = Scratch::new("kdump-phys");
    let kvm = open(&s.file("dump", &kdump(&m, Codec::Mixed).write().bytes)).unwrap();
    for va in [
        m.sym("linux_banner"),
        m.vmalloc_page(5) + 8,
        m.page_offset + 0x1234,
    ] {
        assert_eq!(kvm.vtop(va).ok(), m.maps.pa(va), "{va:#x}");
    }
    assert!(matches!(
        kvm.vtop(m.vmalloc_page(3)),
        Err(Error::Translate { .. })
    ));
    let pa = kvm.vtop(m.sym("linux_banner")).unwrap();
    let mut buf = vec![0u8; BANNER.len()];
    assert_eq!(kvm.read_phys(pa, &mut buf).unwrap(), BANNER.len());
    assert_eq!(buf, BANNER);
    let mut two = vec![0u8; 2 * PAGE as usize];
    let at = m.phys_text + 0x1800;
    kvm.read_phys(at, &mut two).unwrap();
    assert!(two == m.ram.read(at, 2 * PAGE));
    let err = kvm.read_phys(0x200_0000, &mut [0u8; 8]).unwrap_err();
    assert!(matches!(
        err,
        Error::Physical {
            pa: 0x200_0000,
            fault: Fault::Filtered { .. }
        }
    ));
    assert_eq!(
        err.to_string(),
        "invalid physical address (0x2000000): a page filtered out of the dump"
    );
    let err = kvm.read_phys(MMIO, &mut [0u8; 8]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("invalid physical address ({MMIO:#x}): not in the dump")
    );
}

/// Spaces stacked on a kdump file, whose locations are physical
/// addresses read through the page cache, not file offsets: the kernel's
/// own tables opened as an x86-64 space over the dump's physical memory
/// read what the model holds (filtered pages fail as such, naming the
/// space), a linear window over kernel virtual memory reads the same
/// bytes again, and walks report each leaf's compressed data offset.
#[test]
fn spaces_over_a_kdump_file() {
    use kvm::{AddressSpace, Base, Paging, Range, Space};
    let m = LinuxX86::kaslr();
    let keep = kept(&m);
    let s = Scratch::new("kdump-spaces");
    let kvm = open(&s.file("dump", &kdump(&m, Codec::Zlib).write().bytes)).unwrap();
    let kernel = Space::new(&kvm, Base::Phys, Paging::X86_64 { cr3: m.pt.root }).unwrap();
    let text = m.runtime(LINK_TEXT);
    let window = Space::new(
        &kernel,
        Base::Virt,
        Paging::Linear(vec![Range {
            addr: 0x1000,
            len: KERNEL_SIZE,
            target: text,
        }]),
    )
    .unwrap();
    let check = |va: u64, len: u64| {
        let want = fixture::expect_read(
            &m.ram,
            PAGE,
            va,
            len,
            |a| m.maps.pa(a),
            |pa| keep.contains(&(pa / PAGE)),
        );
        let mut buf = vec![0u8; len as usize];
        match (want, kernel.read(va, &mut buf)) {
            (Ok(want), Ok(n)) => assert!(n as u64 == len && buf == want, "{va:#x}+{len:#x}"),
            (Err(Miss::NotDumped(at)), Err(e)) => {
                let text = e.to_string();
                let pa = m.maps.pa(at).unwrap();
                assert!(
                    text.starts_with(&format!(
                        "invalid address ({at:#x}): in x86-64 space (layer 1)"
                    )) && text.contains(&format!("{pa:#x}")),
                    "{text}"
                );
            }
            (Err(Miss::Unmapped(at)), Err(Error::Translate { va: e, .. })) => assert_eq!(e, at),
            (want, got) => panic!("{va:#x}+{len:#x}: model {want:?}, library {got:?}"),
        }
        // The window maps the kernel image at 0x1000.
        if (text..text + KERNEL_SIZE - len).contains(&va) {
            let mut again = vec![0u8; len as usize];
            let w = window.read(va - text + 0x1000, &mut again);
            assert_eq!(w.is_ok(), kernel.read(va, &mut buf).is_ok(), "{va:#x}");
            if w.is_ok() {
                assert!(again == buf, "window at {va:#x}");
            }
        }
    };
    let regions = [
        (text, KERNEL_SIZE),
        (m.vmalloc_page(0) - PAGE, 18 * PAGE),
        (m.page_offset, 0x0400_0000),
    ];
    fixture::random_reads(&regions, 3000, check);
    // The walk: every leaf of the model, its data where the dump keeps it.
    let leaves = m.leaves();
    let mut got = Vec::new();
    kernel
        .walk_pages(&mut |p| {
            got.push(*p);
            true
        })
        .unwrap();
    assert_eq!(got.len(), leaves.len());
    let mut offsets = BTreeSet::new();
    for (g, l) in got.iter().zip(&leaves) {
        assert_eq!((g.kmap_vaddr, g.paddr, g.len), (l.va, l.pa, l.size));
        assert_eq!(g.offset.is_some(), keep.contains(&(l.pa / PAGE)), "{g:x?}");
        offsets.extend(g.offset);
    }
    assert!(
        offsets.len() > 10,
        "walks report the compressed data's offsets"
    );
}
