//! The C ABI from real C programs: tests/c/capi_test.c, compiled against
//! include/kvm.h and linked with libkvm.so and with libkvm.a, checks every
//! entry point against expectations computed from the fixture model; the
//! examples (C, Python ctypes, Rust) must print the same hex dump.

mod fixture;
use fixture::amd64::*;
use fixture::c::{compile, hex, root, run_capi_test, target_dir, walk_lines};
use fixture::{Fill, Miss, Scratch};
use std::fmt::Write as _;
use std::process::Command;

/// Expectations for capi_test.c (format documented in that file).
fn expectations(m: &Amd64, d: &Dump) -> String {
    let mut e = String::new();
    writeln!(e, "native {}", u8::from(cfg!(target_arch = "x86_64"))).unwrap();
    for (name, value, ntype) in [
        ("version", va::VERSION, 7),
        ("_version", va::VERSION, 7),
        ("kernbase", KERNBASE, 3),
        ("panic", va::TEXT + 0x40, 5),
        ("bss_counter", va::BSS, 9),
        ("local_counter", va::LOCAL, 6),
    ] {
        writeln!(e, "sym {name} {value:x} {ntype}").unwrap();
    }
    writeln!(e, "nosym no_such_symbol").unwrap();
    let probes: &[(u64, u64)] = &[
        (va::VERSION, VERSION.len() as u64),
        (va::STRADDLE, 0x1000),
        (va::K4, 3 * 4096),
        (va::K4 + 2 * 4096 + 100, 4096),
        (va::K4 + 11 * 4096, 2 * 4096),
        (va::K4 + 13 * 4096 - 8, 16),
        (va::K2M + 0x1ff000, 0x1000),
        (va::K2M + 0x1ff000, 0x1001),
        (va::K1G + 0x7ff000, 0x2000),
        (DMAP_MIN + 0x9e000, 0x2000),
        (DMAP_MIN + 0x1_0000_0000 - 8, 16),
        (DMAP_MIN + 0x0380_0000, 0x2000),
        (0x0000_8000_0000_0000, 8),
        (0, 8),
    ];
    for &(a, len) in probes {
        match m.expect(d, a, len) {
            Ok(b) => writeln!(e, "read {a:x} {len} {}", hex(&b)).unwrap(),
            Err(Miss::Unmapped(at)) => writeln!(e, "fail {a:x} {len} ({at:#x})").unwrap(),
            Err(Miss::NotDumped(at)) => {
                writeln!(e, "fail {a:x} {len} ({at:#x}): mapped to physical").unwrap()
            }
        }
    }
    // Translations and physical reads (extensions): the model's physical
    // address of each mapped probe; device memory is not in the dump.
    for &(a, _) in probes {
        match m.model_pa(a) {
            Some(pa) => writeln!(e, "vtop {a:x} {pa:x}").unwrap(),
            None => writeln!(e, "vtopfail {a:x} 0 ({a:#x})").unwrap(),
        }
    }
    let pa = m.model_pa(va::VERSION).unwrap();
    writeln!(e, "phys {pa:x} {} {}", VERSION.len(), hex(VERSION)).unwrap();
    writeln!(
        e,
        "physfail {:x} 8 invalid physical address ({:#x}): not in the dump",
        MMIO, MMIO
    )
    .unwrap();
    writeln!(
        e,
        "threads {:x} {} {}",
        va::VERSION,
        VERSION.len(),
        hex(VERSION)
    )
    .unwrap();
    let pages = m.expected_pages(d);
    let mut picks = vec![0, pages.len() / 2, pages.len() - 1];
    picks.extend(pages.iter().position(|p| p.offset.is_none()));
    picks.extend(pages.iter().position(|p| p.kmap_vaddr == 0));
    e += &walk_lines(&pages, &picks);
    writeln!(e, "resolve version {:x}", va::STRADDLE).unwrap();
    writeln!(e, "resolve KPML4phys {:x}", va::KPML4PHYS).unwrap();
    writeln!(e, "resolve kernbase {KERNBASE:x}").unwrap();
    e
}

#[test]
fn c_program_checks_every_entry_point() {
    let s = Scratch::new("capi");
    let m = Amd64::new(2 << 20, Fill::Pattern);
    let kernel = s.file("kernel", &m.kernel());
    for (name, dump) in [
        ("full", m.full_dump(false)),
        ("v2", m.minidump(2)),
        ("v3", m.minidump(3)),
    ] {
        let core = s.file(name, &dump.bytes);
        let stderr = run_capi_test(&kernel, &core, &expectations(&m, &dump));
        // kvm_open() reports a failure to open on stderr with its errstr
        // prefix, but not the soft error of a failed read on its handle.
        assert!(stderr.contains("capi_test: "), "stderr: {stderr}");
        assert!(!stderr.contains("invalid address"), "stderr: {stderr}");
    }
}

/// The Python interpreter that runs examples/kvm_ctypes.py.
const PYTHON: &str = "python3";

/// A program the tests need but cannot find fails them with its name and
/// why it is needed, not an opaque `NotFound`.
#[test]
fn a_missing_tool_is_named() {
    let e = std::panic::catch_unwind(|| {
        fixture::c::output(&mut Command::new("kvm-no-such-tool"), "run this test")
    })
    .unwrap_err();
    let text = e.downcast_ref::<String>().unwrap();
    assert!(
        text.starts_with("`kvm-no-such-tool` was not found: it is needed to run this test"),
        "{text}"
    );
}

/// The C, Python and Rust examples print the same thing for the same dump:
/// a FreeBSD minidump with its kernel, and a Linux kdump-compressed file
/// with none (`-`: symbols from the dump's kallsyms tables).
#[test]
fn examples_agree() {
    let s = Scratch::new("examples");
    let m = Amd64::new(2 << 20, Fill::Pattern);
    let kernel = s.file("kernel", &m.kernel());
    let core = s.file("core", &m.minidump(3).bytes);
    let mut linux = fixture::linux::LinuxX86::kaslr();
    let info = linux.vmcoreinfo() + &linux.write_kallsyms();
    let kdump = fixture::kdump::Kdump::new(&linux.ram)
        .codec(fixture::kdump::Codec::Mixed)
        .vmcoreinfo(&info)
        .write();
    let linux_core = s.file("linux.kdump", &kdump.bytes);
    let c = compile(
        &root().join("examples/kvmdump.c"),
        &s.path().join("kvmdump"),
        false,
    );
    for (kernel, core, symbol, banner) in [
        (kernel.as_os_str(), &core, "version", "FreeBSD 14.2"),
        (
            "-".as_ref(),
            &linux_core,
            "linux_banner",
            "|Linux version 6.|",
        ),
    ] {
        let run = |cmd: &mut Command| {
            let out = fixture::c::output(
                cmd.arg(kernel).arg(core).arg(symbol).arg("0x50"),
                "run the examples (python3 runs examples/kvm_ctypes.py)",
            );
            assert!(
                out.status.success(),
                "{cmd:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        let from_c = run(&mut Command::new(&c));
        let from_py = run(Command::new(PYTHON)
            .arg(root().join("examples/kvm_ctypes.py"))
            .env("KVM_LIBRARY", target_dir().join("libkvm.so")));
        let rust_bin = target_dir().join("examples/kvmread");
        let from_rust = run(&mut Command::new(&rust_bin));
        assert!(from_c.contains(banner), "{from_c}");
        assert_eq!(from_c, from_py);
        // The Rust example also names the backend on its first line.
        assert_eq!(from_rust.split_once('\n').unwrap().1, from_c);
    }
}

/// kvm_read2, kvm_geterr and kvm_close work from an atexit handler and a
/// thread-specific data destructor, after the same threads failed calls
/// (per-thread error texts once lived in thread-local storage, destroyed
/// by then: the process aborted with status 134).
#[test]
fn calls_from_exit_paths() {
    let m = Amd64::new(2 << 20, Fill::Pattern);
    let s = Scratch::new("exitpaths");
    let k = s.file("kernel", &m.kernel());
    let c = s.file("core", &m.minidump(3).bytes);
    for static_link in [false, true] {
        let bin = compile(
            &root().join("tests/c/exit_paths.c"),
            &s.path().join(format!("exit_paths_{static_link}")),
            static_link,
        );
        let out = Command::new(&bin)
            .arg(&k)
            .arg(&c)
            .arg("0x10")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {:?}\n{stdout}\n{}",
            bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let text = "invalid address (0x10): not mapped";
        for step in ["thread", "destructor", "main", "atexit"] {
            assert!(
                stdout.contains(&format!("{step}: {text}")),
                "{step} missing:\n{stdout}"
            );
        }
        assert!(stdout.ends_with("atexit: closed\n"), "{stdout}");
    }
}
