//! Linux x86-64 vmcores (ELF, as /proc/vmcore and QEMU write them) through
//! the Rust API, checked against the fixture model: four- and five-level
//! paging, KASLR with a negative phys_base, every way of giving symbols.

mod fixture;
use fixture::linux::*;
use fixture::{Miss, Scratch, PAGE};
use kvm::{Error, Fault, Kvm, OpenOptions};
use std::path::Path;

/// Regions worth reading: (start, length).
fn regions(m: &LinuxX86) -> Vec<(u64, u64)> {
    let text = m.runtime(LINK_TEXT);
    vec![
        (text, KERNEL_SIZE + PAGE),
        (m.vmalloc_page(0) - PAGE, 18 * PAGE),
        (m.page_offset, 0x0400_0000 + PAGE),
        (m.page_offset + 0x9f000 - PAGE, 0x62000),
        (m.page_offset + (4 << 30) - PAGE, (8 << 20) + 2 * PAGE),
    ]
}

/// What reading `len` bytes at `va` must give, from the model.
fn expect(m: &LinuxX86, va: u64, len: u64) -> Result<Vec<u8>, Miss> {
    fixture::expect_read(&m.ram, PAGE, va, len, |a| m.maps.pa(a), |_| true)
}

fn check(kvm: &Kvm, m: &LinuxX86, va: u64, len: u64) {
    fixture::assert_read(kvm, va, len, expect(m, va, len), |a| m.maps.pa(a));
}

/// Fixed probes across page, superpage and mapping boundaries, plus 2000
/// random reads.
fn check_all(kvm: &Kvm, m: &LinuxX86) {
    let banner = m.sym("linux_banner");
    for (va, len) in [
        (banner, BANNER.len() as u64),
        (m.sym("straddle"), 0x1000),
        (m.vmalloc_page(0), 16 * PAGE),
        (m.vmalloc_page(4) - 3, 2 * PAGE),
        (m.vmalloc_page(13) - 8, 16),
        (m.page_offset + 0x9f000 - 8, 16),
        (m.page_offset + (4 << 30) + (8 << 20) - 4, 8),
        (0x0000_7fff_ffff_f000, 8),
        (0, 1),
    ] {
        check(kvm, m, va, len);
    }
    fixture::random_reads(&regions(m), 2000, |va, len| check(kvm, m, va, len));
}

/// How the kernel's symbols are given.
#[derive(Clone, Copy, Debug)]
enum Syms {
    Vmlinux,
    SystemMap,
    Kallsyms,
    None,
}

fn kernel_file(s: &Scratch, m: &LinuxX86, how: Syms) -> Option<std::path::PathBuf> {
    match how {
        Syms::Vmlinux => Some(s.file("vmlinux", &m.vmlinux())),
        Syms::SystemMap => Some(s.file("System.map", &m.system_map())),
        Syms::Kallsyms => Some(s.file("kallsyms", &m.kallsyms())),
        Syms::None => None,
    }
}

fn open(kernel: Option<&Path>, core: &Path) -> kvm::Result<Kvm> {
    OpenOptions::new().open_dump(kernel, core)
}

/// Every machine, every ELF style, every way of giving symbols: symbols
/// resolve to run-time addresses, reads match the model, the walk reports
/// every leaf.
#[test]
fn elf_vmcores() {
    for (name, m) in [
        ("kaslr", LinuxX86::kaslr()),
        ("nokaslr", LinuxX86::nokaslr()),
        ("la57", LinuxX86::la57()),
    ] {
        let s = Scratch::new(&format!("linux-elf-{name}"));
        for style in [Style::Kdump, Style::Qemu] {
            let core = s.file("vmcore", &m.elf_vmcore(style));
            for how in [Syms::Vmlinux, Syms::SystemMap, Syms::Kallsyms, Syms::None] {
                let what = format!("{name} {style:?} {how:?}");
                let k = kernel_file(&s, &m, how);
                let kvm = open(k.as_deref(), &core).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(kvm.backend(), "Linux x86-64", "{what}");
                assert_eq!(kvm.kerndisp(), m.kaslr as i64, "{what}");
                assert_eq!(kvm.native(), cfg!(target_arch = "x86_64"));
                // VMCOREINFO's symbols, always; the kernel file's, moved.
                for sym in ["init_top_pgt", "_stext", "init_uts_ns"] {
                    let got = kvm.symbol(sym).map(|s| s.value);
                    assert_eq!(got, Some(m.sym(sym)), "{what}: {sym}");
                }
                let file_sym = |sym: &str| kvm.symbol(sym).map(|s| s.value);
                match how {
                    Syms::None => assert_eq!(file_sym("linux_banner"), None, "{what}"),
                    _ => {
                        for sym in ["linux_banner", "straddle", "jiffies", "page_offset_base"] {
                            assert_eq!(file_sym(sym), Some(m.sym(sym)), "{what}: {sym}");
                        }
                        assert_eq!(file_sym("vmalloc_pages"), Some(m.sym("vmalloc_pages")));
                    }
                }
                if matches!(how, Syms::Kallsyms) {
                    assert_eq!(
                        file_sym("ext4_fill_super"),
                        None,
                        "module symbols are skipped"
                    );
                }
                check_all(&kvm, &m);
            }
            // Without a kernel file the direct map is found from
            // kexec-tools' segment addresses, or in the tables (QEMU).
            let kvm = open(None, &core).unwrap();
            let offset = |pa: u64| elf_offset(&m, style, pa);
            fixture::assert_walk(
                &kvm,
                &m.expected_pages(offset),
                &format!("{name} {style:?}"),
            );
        }
    }
}

/// The file offset of physical `pa` in an ELF vmcore the fixture wrote:
/// RAM segments in order after the notes page (the kdump style's kernel
/// text segment comes first, and its copy is the one a reader keeps
/// only if it is the lower segment: RAM's comes first by address).
fn elf_offset(m: &LinuxX86, style: Style, pa: u64) -> Option<u64> {
    let mut off = PAGE; // headers and notes fit in the first page
    if style == Style::Kdump {
        off += KERNEL_SIZE;
    }
    for &(start, end) in &m.ram.ranges {
        if (start..end).contains(&pa) {
            return Some(off + pa - start);
        }
        off += end - start;
    }
    None
}

/// Reads that must fail say why: unmapped, not canonical, device memory
/// outside the dump.
#[test]
fn must_fail_reads() {
    let m = LinuxX86::kaslr();
    let s = Scratch::new("linux-fail");
    let core = s.file("vmcore", &m.elf_vmcore(Style::Kdump));
    let kvm = open(None, &core).unwrap();
    let mut buf = [0u8; 8];
    let hole = fixture::fault_at(&kvm, m.vmalloc_page(3));
    assert!(matches!(hole, Fault::Unmapped(_)), "{hole}");
    let mmio = fixture::fault_at(&kvm, m.vmalloc_page(12));
    assert_eq!(mmio, Fault::NotInDump { pa: MMIO });
    let err = kvm.read(0x8000_0000_0000_0000, &mut buf).unwrap_err();
    assert!(err.to_string().contains("canonical"), "{err}");
}

/// The wrong kernel file is refused with a message naming both files.
#[test]
fn wrong_kernel_files() {
    let m = LinuxX86::kaslr();
    let s = Scratch::new("linux-wrong");
    let core = s.file("vmcore", &m.elf_vmcore(Style::Kdump));
    // Another build: its symbols sit 1 MiB elsewhere.
    let mut other = LinuxX86::kaslr();
    for sym in &mut other.syms {
        sym.value += 0x10_0000;
    }
    let map = s.file("System.map", &other.system_map());
    let err = open(Some(&map), &core).unwrap_err().to_string();
    assert!(
        err.contains("does not match") && err.contains("_stext"),
        "{err}"
    );
    // A vmlinux whose banner differs from the running kernel's.
    let mut changed = LinuxX86::kaslr();
    let at = changed.sym("linux_banner") + 14;
    changed.write_virt(at, b"9");
    let vmlinux = s.file("vmlinux", &changed.vmlinux());
    let err = open(Some(&vmlinux), &core).unwrap_err().to_string();
    assert!(
        err.contains("does not match") && err.contains("Linux version"),
        "{err}"
    );
    // A FreeBSD kernel with a Linux dump.
    let bsd = fixture::amd64::Amd64::new(2 << 20, fixture::Fill::Zero);
    let k = s.file("kernel", &bsd.kernel());
    let err = open(Some(&k), &core).unwrap_err().to_string();
    assert!(
        err.contains("not a Linux kernel") && err.contains("Linux"),
        "{err}"
    );
    // A Linux vmlinux with a FreeBSD dump.
    let d = bsd.minidump(2);
    let mini = s.file("minidump", &d.bytes);
    let err = open(Some(&vmlinux), &mini).unwrap_err().to_string();
    assert!(err.contains("linux_banner"), "{err}");
    // A text file that is no symbol map.
    let junk = s.file("notes.txt", b"hello world\nthis is not a map\n");
    let err = open(Some(&junk), &core).unwrap_err().to_string();
    assert!(
        err.contains("notes.txt") && err.contains("System.map"),
        "{err}"
    );
    // A bzImage.
    let mut bz = vec![0u8; 0x400];
    bz[0x202..0x206].copy_from_slice(b"HdrS");
    let bz = s.file("vmlinuz", &bz);
    let err = open(Some(&bz), &core).unwrap_err().to_string();
    assert!(err.contains("bzImage"), "{err}");
}

/// VMCOREINFO that lies, or is missing, gives an error saying what is wrong.
#[test]
fn bad_vmcoreinfo() {
    let m = LinuxX86::kaslr();
    let s = Scratch::new("linux-badinfo");
    let open_with = |info: &str| {
        let notes = m.notes(Some(info));
        let loads: Vec<_> = m.ram.ranges.iter().map(|&(a, b)| (0, a, b - a)).collect();
        let core = s.file("vmcore", &elf_core(TARGET, &notes, &loads, &m.ram));
        open(None, &core)
    };
    let good = m.vmcoreinfo();
    // phys_base off by 2 MiB: the tables found do not map themselves.
    let lie = good.replace(
        &format!("NUMBER(phys_base)={}", m.phys_base),
        &format!("NUMBER(phys_base)={}", m.phys_base + (2 << 20)),
    );
    let err = open_with(&lie).unwrap_err().to_string();
    assert!(err.contains("do not map init_top_pgt back"), "{err}");
    // No phys_base at all.
    let gone = good.replace(&format!("NUMBER(phys_base)={}\n", m.phys_base), "");
    let err = open_with(&gone).unwrap_err().to_string();
    assert!(err.contains("NUMBER(phys_base)"), "{err}");
    // Neither VMCOREINFO nor QEMU's CPU notes: nothing says where the
    // tables are.
    let loads: Vec<_> = m.ram.ranges.iter().map(|&(a, b)| (0, a, b - a)).collect();
    let core = s.file("bare", &elf_core(TARGET, &m.notes(None), &loads, &m.ram));
    let map = s.file("System.map", &m.system_map());
    let err = open(Some(&map), &core).unwrap_err().to_string();
    assert!(
        err.contains("no VMCOREINFO") && err.contains("-device vmcoreinfo"),
        "{err}"
    );
}

/// i386: non-PAE and PAE kernels, the default 3G/1G split and a 2G/2G one,
/// KASLR without KERNELOFFSET (the offset comes from `_stext`), kexec-tools'
/// ELFCLASS32 cores and QEMU's ELFCLASS64 ones with EM_386.
#[test]
fn i386_vmcores() {
    use fixture::i386::Mode;
    for (mode, page_offset) in [
        (Mode::NoPae, 0xc000_0000),
        (Mode::Pae, 0xc000_0000),
        (Mode::Pae, 0x8000_0000),
    ] {
        let m = LinuxI386::new(mode, page_offset, 0x80_0000);
        let what = format!("{mode:?} {page_offset:#x}");
        let s = Scratch::new(&format!("linux-i386-{mode:?}-{page_offset:x}"));
        for style in [Style::Kdump, Style::Qemu] {
            let core = s.file("vmcore", &m.elf_vmcore(style));
            for how in [Syms::Vmlinux, Syms::SystemMap, Syms::None] {
                let what = format!("{what} {style:?} {how:?}");
                let k = match how {
                    Syms::Vmlinux => Some(s.file("vmlinux", &m.vmlinux())),
                    Syms::SystemMap => Some(s.file("System.map", &m.system_map())),
                    _ => None,
                };
                let kvm = open(k.as_deref(), &core).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(kvm.backend(), "Linux i386", "{what}");
                let kaslr = if k.is_some() { m.kaslr as i64 } else { 0 };
                assert_eq!(kvm.kerndisp(), kaslr, "{what}: KASLR offset from _stext");
                if k.is_some() {
                    assert_eq!(
                        kvm.symbol("linux_banner").map(|s| s.value),
                        Some(m.sym("linux_banner")),
                        "{what}"
                    );
                }
                let check = |va: u64, len: u64| {
                    let want =
                        fixture::expect_read(&m.ram, PAGE, va, len, |a| m.maps.pa(a), |_| true);
                    fixture::assert_read(&kvm, va, len, want, |a| m.maps.pa(a));
                };
                check(m.sym("linux_banner"), BANNER.len() as u64);
                check(m.sym("straddle"), 0x1000);
                check(m.vmalloc_page(0), 16 * PAGE);
                check(0x1_0000_0000, 4);
                let regions = [
                    (page_offset, 0x400_0000 + PAGE),
                    (m.vmalloc_page(0) - PAGE, 18 * PAGE),
                ];
                fixture::random_reads(&regions, 1000, check);
            }
            let kvm = open(None, &core).unwrap();
            // Headers and notes fit in the first page; RAM follows in order.
            let offset = |pa: u64| {
                let mut off = PAGE;
                for &(a, b) in &m.ram.ranges {
                    if (a..b).contains(&pa) {
                        return Some(off + pa - a);
                    }
                    off += b - a;
                }
                None
            };
            fixture::assert_walk(&kvm, &m.expected_pages(offset), &what);
        }
    }
}

/// makedumpfile -E leaves filtered pages out by shortening a segment's
/// `p_filesz` below its `p_memsz`: those pages read as filtered out.
#[test]
fn elf_segments_shortened_by_filtering() {
    let m = LinuxX86::kaslr();
    let s = Scratch::new("linux-memsz");
    let mut core = m.elf_vmcore(Style::Qemu);
    // Program headers at 64, 56 bytes each: PT_NOTE, then one PT_LOAD per
    // RAM range; the second range (1 MiB - 64 MiB) loses its top 12 MiB
    // (above the page tables, at 48 MiB).
    let ph = 64 + 2 * 56;
    let filesz = u64::from_le_bytes(core[ph + 32..ph + 40].try_into().unwrap());
    core[ph + 32..ph + 40].copy_from_slice(&(filesz - (12 << 20)).to_le_bytes());
    let kvm = open(None, &s.file("vmcore", &core)).unwrap();
    let mut buf = [0u8; 8];
    let va = m.page_offset + 0x340_0000 - 8;
    kvm.read(va, &mut buf).unwrap();
    let va = m.page_offset + 0x340_0000;
    match kvm.read(va, &mut buf) {
        Err(Error::Translate { fault, .. }) => {
            assert_eq!(fault, Fault::Filtered { pa: 0x340_0000 })
        }
        other => panic!("{other:?}"),
    }
}

/// Without a kernel file, symbols come from the kernel's own kallsyms
/// tables, which VMCOREINFO locates: every symbol at its run-time address,
/// per-CPU ones unmoved, a name of more than 127 tokens; a System.map gives
/// the same values. Tables that do not decode fail the open, unless the
/// kernel is not to be checked.
#[test]
fn kallsyms_from_the_dump() {
    use fixture::elf::Place;
    let mut m = LinuxX86::kaslr();
    let lines = m.write_kallsyms();
    let s = Scratch::new("linux-kallsyms");
    let core_with = |m: &LinuxX86, info: &str| {
        let notes = m.notes(Some(info));
        let loads: Vec<_> = m.ram.ranges.iter().map(|&(a, b)| (0, a, b - a)).collect();
        s.file("vmcore", &elf_core(TARGET, &notes, &loads, &m.ram))
    };
    let core = core_with(&m, &(m.vmcoreinfo() + &lines));
    let kvm = open(None, &core).unwrap();
    let map = open(Some(&s.file("System.map", &m.system_map())), &core).unwrap();
    for sym in m.syms.iter().filter(|s| s.place != Place::Abs) {
        let want = m.runtime_of(sym);
        assert_eq!(
            kvm.symbol(&sym.name).map(|s| s.value),
            Some(want),
            "{}",
            sym.name
        );
        assert_eq!(
            map.symbol(&sym.name).map(|s| s.value),
            Some(want),
            "{}",
            sym.name
        );
    }
    assert_eq!(kvm.symbol("runqueues").map(|s| s.value), Some(0x2_c9c0));
    assert_eq!(kvm.kerndisp(), m.kaslr as i64);
    let mut buf = vec![0u8; BANNER.len()];
    kvm.read_exact(m.sym("linux_banner"), &mut buf).unwrap();
    assert_eq!(buf, BANNER);
    // A name that expands past KSYM_NAME_LEN: refused before it grows.
    let names = lines
        .lines()
        .find_map(|l| l.strip_prefix("SYMBOL(kallsyms_names)="))
        .map(|v| u64::from_str_radix(v, 16).unwrap())
        .unwrap();
    let saved = m.maps.read(&m.ram, names, 128);
    let mut long = vec![0x7fu8];
    long.extend([0x87u8; 127]); // token 0x87: "vmalloc", 7 bytes each
    m.write_virt(names, &long);
    let err = open(None, &core_with(&m, &(m.vmcoreinfo() + &lines)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("KSYM_NAME_LEN"), "{err}");
    m.write_virt(names, &saved);
    // A lying count: refused, or ignored when the kernel is not checked.
    let num = m.runtime(LINK_TEXT) + off::KALLSYMS;
    m.write_virt(num, &u32::MAX.to_le_bytes());
    let core = core_with(&m, &(m.vmcoreinfo() + &lines));
    let err = open(None, &core).unwrap_err().to_string();
    assert!(err.contains("kallsyms_num_syms"), "{err}");
    let kvm = OpenOptions::new()
        .verify_kernel(false)
        .open_dump(None, &core)
        .unwrap();
    assert_eq!(kvm.symbol("linux_banner"), None);
    assert!(kvm.symbol("init_top_pgt").is_some(), "VMCOREINFO's still");
}

/// With AMD memory encryption every entry carries the C-bit that
/// VMCOREINFO's `sme_mask` names: reads and walks leave it out of frames.
#[test]
fn sme_c_bit() {
    for mut m in [LinuxX86::kaslr(), LinuxX86::la57()] {
        m.encrypt(1 << 47);
        let s = Scratch::new("linux-sme");
        let core = s.file("vmcore", &m.elf_vmcore(Style::Kdump));
        let kvm = open(None, &core).unwrap();
        check_all(&kvm, &m);
        let pages = fixture::walk(&kvm, "sme");
        assert!(!pages.is_empty());
        assert!(pages.iter().all(|p| p.paddr & (1 << 47) == 0));
    }
}

/// `/proc/kcore` names the segments that are no physical memory (vmalloc,
/// modules) by p_paddr -1, their offsets far into a sparse file, and
/// lists vmalloc before RAM (`fs/proc/kcore.c`): such a core opens, reads
/// through its RAM segments, and its walk finds the direct map from the RAM
/// segments' addresses.
#[test]
fn kcore_style_segments() {
    let m = LinuxX86::kaslr();
    let s = Scratch::new("linux-kcore");
    let info = m.vmcoreinfo();
    let mut loads = vec![(m.vmalloc, u64::MAX, 0)];
    loads.extend(
        m.ram
            .ranges
            .iter()
            .map(|&(a, b)| (m.page_offset + a, a, b - a)),
    );
    let mut core = elf_core(TARGET, &m.notes(Some(&info)), &loads, &m.ram);
    // The vmalloc segment: 32 TiB at an offset past the end of the file.
    let ph = 64 + 56;
    core[ph + 8..ph + 16].copy_from_slice(&(1u64 << 46).to_le_bytes());
    core[ph + 32..ph + 40].copy_from_slice(&(32u64 << 40).to_le_bytes());
    core[ph + 40..ph + 48].copy_from_slice(&(32u64 << 40).to_le_bytes());
    let kvm = open(None, &s.file("kcore", &core)).unwrap();
    check_all(&kvm, &m);
    let pages = fixture::walk(&kvm, "kcore");
    let low = pages.iter().find(|p| p.paddr == 0x20_0000).unwrap();
    assert_eq!(
        (low.kmap_vaddr, low.dmap_vaddr),
        (0, m.page_offset + 0x20_0000)
    );
}

/// A segment that starts in the middle of a page: what the TLB keeps of
/// that page must not reach before the segment (the bytes there are the
/// file's, not the page's).
#[test]
fn segment_starting_mid_page() {
    let m = LinuxX86::kaslr();
    let s = Scratch::new("linux-midpage");
    let info = m.vmcoreinfo();
    // RAM 1 MiB-64 MiB split at 0x100800, its upper part first in the file.
    let (a, b) = m.ram.ranges[1];
    let mut loads = vec![(0, 0x10_0800, b - 0x10_0800), (0, a, 0x800)];
    loads.extend(
        m.ram
            .ranges
            .iter()
            .filter(|r| r.0 != a)
            .map(|&(x, y)| (0, x, y - x)),
    );
    let core = s.file(
        "vmcore",
        &elf_core(TARGET, &m.notes(Some(&info)), &loads, &m.ram),
    );
    let kvm = open(None, &core).unwrap();
    for va in [m.page_offset + 0x10_0900, m.page_offset + 0x10_0100] {
        check(&kvm, &m, va, 16);
    }
}

/// QEMU's dump of a guest started without `-device vmcoreinfo`: the tables
/// come from the CPU's CR3 and CR4 in QEMU's notes, and the KASLR offset of
/// a System.map's symbols from where the kernel image is mapped (checked
/// against `linux_banner`); without a kernel file, reads by address.
#[test]
fn qemu_without_vmcoreinfo() {
    for m in [LinuxX86::kaslr(), LinuxX86::la57()] {
        let s = Scratch::new("linux-qemu-bare");
        let core = s.file("vmcore", &m.elf_vmcore(Style::QemuNoVmcoreinfo));
        let map = s.file("System.map", &m.system_map());
        let kvm = open(Some(&map), &core).unwrap();
        assert_eq!(kvm.kerndisp(), m.kaslr as i64);
        for sym in ["linux_banner", "init_top_pgt", "jiffies"] {
            assert_eq!(kvm.symbol(sym).map(|s| s.value), Some(m.sym(sym)), "{sym}");
        }
        check_all(&kvm, &m);
        let kvm = open(None, &core).unwrap();
        assert_eq!(kvm.symbol("linux_banner"), None);
        check_all(&kvm, &m);
    }
}

/// The kernel log from the printk ring buffer VMCOREINFO describes, as
/// `dmesg` prints it: the records still readable (overwritten ones and a
/// reserved one skipped, a wrapped data block read from the ring's start,
/// a failed one empty), through an ELF vmcore of each machine; a ring
/// whose geometry cannot be a printk ring is refused.
#[test]
fn kernel_log() {
    let want = printk::text();
    let text = String::from_utf8_lossy(&want);
    assert!(
        text.ends_with("[    5.000200] Kernel panic - not syncing: sysrq triggered crash\n"),
        "{text}"
    );
    assert!(
        text.contains("[    3.141592] two lines\n[    3.141592] in one record\n"),
        "{text}"
    );
    assert!(
        !text.contains("reserved") && !text.contains("Linux version"),
        "{text}"
    );
    for (name, m) in [("kaslr", LinuxX86::kaslr()), ("la57", LinuxX86::la57())] {
        let s = Scratch::new(&format!("linux-log-{name}"));
        let core = s.file("vmcore", &m.elf_vmcore(Style::Kdump));
        let kvm = open(None, &core).unwrap();
        let got = kvm.message_buffer().unwrap();
        assert!(got == want, "{name}:\n{}", String::from_utf8_lossy(&got));
        assert_eq!(kvm.cpus(), Some(m.cpus), "{name}");
        // One thread per CPU, with the tid its NT_PRSTATUS note carries
        // (the fixture writes cpu + 1).
        let threads = kvm.threads().unwrap();
        let tids: Vec<(i32, Option<u32>)> = threads.iter().map(|t| (t.tid, t.cpu)).collect();
        let want: Vec<(i32, Option<u32>)> = (0..m.cpus).map(|c| (c as i32 + 1, Some(c))).collect();
        assert_eq!(tids, want, "{name}");
        assert_eq!(kvm.panic_string().as_deref(), Some("sysrq triggered crash"));
    }
    // Linux 3.5-5.9: log_buf, wrapped at its end marker.
    let mut old = LinuxX86::kaslr();
    old.legacy_log = true;
    let s = Scratch::new("linux-log-legacy");
    let kvm = open(None, &s.file("vmcore", &old.elf_vmcore(Style::Kdump))).unwrap();
    let got = kvm.message_buffer().unwrap();
    let want = printk::legacy_text();
    assert!(got == want, "legacy:\n{}", String::from_utf8_lossy(&got));
    assert!(String::from_utf8_lossy(&want).ends_with("sysrq triggered crash\n"));
    let mut m = LinuxX86::kaslr();
    let rb = m.sym("prb");
    let rb = m.maps.read(&m.ram, rb, 8);
    let rb = u64::from_le_bytes(rb.try_into().unwrap());
    m.write_virt(rb, &40u32.to_le_bytes());
    let s = Scratch::new("linux-log-bad");
    let kvm = open(None, &s.file("vmcore", &m.elf_vmcore(Style::Kdump))).unwrap();
    let e = kvm.message_buffer().unwrap_err().to_string();
    assert!(
        e.contains("2^40 descriptors") && e.contains("no printk ring"),
        "{e}"
    );
}

/// Each CPU's registers from its `NT_PRSTATUS` note's `pr_reg`, in gdb's
/// order: x86-64's `user_regs_struct`, i386's, arm64's `user_pt_regs`.
#[test]
fn cpu_registers() {
    let x86 = LinuxX86::kaslr();
    let i386 = LinuxI386::new(fixture::i386::Mode::Pae, 0xc000_0000, 0x80_0000);
    let arm64 = fixture::linux_arm64::LinuxArm64::new(fixture::linux_arm64::CONFIGS[0]);
    // (name, vmcore, gdb architecture, [(register, pr_reg word)]).
    type Case = (
        &'static str,
        Vec<u8>,
        &'static str,
        Vec<(&'static str, usize)>,
    );
    let cases: [Case; 3] = [
        (
            "x86-64",
            x86.elf_vmcore(Style::Kdump),
            "i386:x86-64",
            vec![
                ("r15", 0),
                ("rbx", 5),
                ("rax", 10),
                ("rdi", 14),
                ("rip", 16),
                ("cs", 17),
                ("eflags", 18),
                ("rsp", 19),
                ("fs_base", 21),
                ("gs", 26),
            ],
        ),
        (
            "i386",
            i386.elf_vmcore(Style::Kdump),
            "i386",
            vec![
                ("ebx", 0),
                ("eax", 6),
                ("eip", 12),
                ("eflags", 14),
                ("esp", 15),
                ("ss", 16),
            ],
        ),
        (
            "aarch64",
            arm64.elf_vmcore(Style::Kdump),
            "aarch64",
            vec![
                ("x0", 0),
                ("x29", 29),
                ("x30", 30),
                ("sp", 31),
                ("pc", 32),
                ("cpsr", 33),
            ],
        ),
    ];
    for (name, core, arch, regs) in cases {
        let s = Scratch::new(&format!("linux-regs-{name}"));
        let kvm = open(None, &s.file("vmcore", &core)).unwrap();
        assert_eq!(kvm.register_arch().map(|a| a.gdb_name()), Some(arch));
        let threads = kvm.threads().unwrap();
        assert_eq!(threads.len(), 2, "{name}");
        for t in &threads {
            let cpu = t.cpu.unwrap();
            let got = kvm.registers(t).unwrap();
            for &(reg, word) in &regs {
                let bits = got.iter().find(|(r, _)| r.name == reg).unwrap().0.bits;
                let want = fixture::linux::pr_reg_word(cpu, word) & (u64::MAX >> (64 - bits));
                assert_eq!(got.get(reg), Some(want), "{name} cpu {cpu} {reg}");
            }
        }
        // The whole register set, less what pr_reg has no room for.
        let all = kvm.registers(&threads[0]).unwrap();
        let unknown: Vec<&str> = all
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(r, _)| r.name)
            .collect();
        assert!(unknown.is_empty(), "{name}: {unknown:?}");
        // A thread on a CPU without a note.
        let mut t = threads[0].clone();
        t.cpu = Some(7);
        let e = kvm.registers(&t).unwrap_err().to_string();
        assert!(e.contains("2 NT_PRSTATUS notes"), "{e}");
    }
}
