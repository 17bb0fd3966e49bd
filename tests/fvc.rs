//! The libfbsdvmcore drop-in (issue 11): tests/c/fvc_test.c, built against
//! fbsdvmcore/include/fvc.h and linked with libfbsdvmcore.so and .a, opens
//! dumps as lldb's FreeBSDKernel plugin does (no errbuf, no resolver, no
//! closure) and with a resolver and its closure, reads, walks pages, and
//! checks the refusals libfbsdvmcore's own tests check; its output must be
//! what the library reads through Rust.

mod fixture;
use fixture::amd64::{va, Amd64};
use fixture::c::{compile_with, fbsdvmcore_dir, root};
use fixture::dmap::{DmapMachine, ARM64_16K, RISCV};
use fixture::{Fill, Scratch};
use kvm::{Kvm, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Command;

fn binaries() -> &'static [PathBuf; 2] {
    static BINS: std::sync::OnceLock<[PathBuf; 2]> = std::sync::OnceLock::new();
    BINS.get_or_init(|| {
        let lib = fbsdvmcore_dir();
        let dir = lib.join("fvc-test");
        std::fs::create_dir_all(&dir).unwrap();
        let src = root().join("tests/c/fvc_test.c");
        let include = root().join("fbsdvmcore/include");
        [false, true].map(|static_link| {
            let out = dir.join(if static_link {
                "fvc_static"
            } else {
                "fvc_shared"
            });
            compile_with(&src, &out, &include, &lib, "fbsdvmcore", static_link)
        })
    })
}

/// What fvc_test must print for `kernel` and `core` and reads at `addrs`.
fn expected(kernel: &Path, core: &Path, addrs: &[u64], resolves: &[(&str, u64)]) -> String {
    let kvm = Kvm::open(kernel, core).unwrap();
    let mut out = format!(
        "kerndisp {}\nnative {}\n",
        kvm.kerndisp(),
        u8::from(kvm.native())
    );
    let (mut n, mut bytes) = (0u64, 0u64);
    kvm.walk_pages(|p| {
        n += 1;
        bytes += p.len;
        true
    })
    .unwrap();
    out += &format!("pages {n} {bytes}\n");
    for &a in addrs {
        let mut b = [0u8; 16];
        match kvm.read(a, &mut b) {
            Ok(16) => {
                let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
                out += &format!("read {a:x} {hex}\n");
            }
            Ok(n) => panic!("short read {n}"),
            Err(e) => out += &format!("fail {a:x} fvc_read: {e}\n"),
        }
    }
    // With a resolver that knows `resolves` (and no kernel check, as
    // fvc_open with a resolver): the names it was asked, and whether a
    // resolver that knows nothing still opens the dump.
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let table: Vec<(String, u64)> = resolves.iter().map(|&(n, v)| (n.to_string(), v)).collect();
    let count = asked.clone();
    let with = OpenOptions::new()
        .verify_kernel(false)
        .resolver(Box::new(move |name: &str| {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            table.iter().find(|(n, _)| *n == name).map(|&(_, v)| v)
        }))
        .open(kernel, core);
    match (&with, addrs.first()) {
        (Err(e), _) => out += &format!("resolver-open {e}\n"),
        (Ok(k), Some(&a)) => {
            if let Err(e) = k.read(a, &mut [0u8; 1]) {
                out += &format!("resolver-read fvc_read: {e}\n");
            }
        }
        (Ok(_), None) => {}
    }
    let none = OpenOptions::new()
        .verify_kernel(false)
        .resolver(Box::new(|_: &str| None))
        .open(kernel, core);
    let asked = asked.load(std::sync::atomic::Ordering::Relaxed);
    out + &format!(
        "resolved {}\nresolve-none {}\n",
        u8::from(asked > 0),
        if none.is_ok() { "opened" } else { "refused" }
    )
}

fn run(name: &str, kernel: &Path, core: &Path, addrs: &[u64], resolves: &[(&str, u64)]) {
    let want = expected(kernel, core, addrs, resolves);
    for bin in binaries() {
        let mut cmd = Command::new(bin);
        cmd.arg(kernel).arg(core);
        cmd.args(addrs.iter().map(|a| format!("{a:x}")));
        for (n, v) in resolves {
            cmd.env(n, format!("{v:x}"));
        }
        let out = cmd.current_dir(kernel.parent().unwrap()).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name} {}:\n{stdout}", bin.display());
        assert_eq!(stdout, want, "{name} {}", bin.display());
    }
}

#[test]
fn lldb_style_client_on_every_backend() {
    let s = Scratch::new("fvc");
    // amd64: a minidump, and a full dump of a kernel loaded at 22 MiB
    // whose resolver gives kernbase and KPML4phys.
    let m = Amd64::new(2 << 20, Fill::Pattern);
    let kernel = s.file("kernel", &m.kernel());
    let version = m.syms.iter().find(|k| k.name == "version").unwrap().value;
    let hole = va::K4 + 3 * 0x1000;
    run(
        "amd64 minidump",
        &kernel,
        &s.file("mini", &m.minidump(3).bytes),
        &[version, hole],
        &[],
    );
    let r = Amd64::new(22 << 20, Fill::Pattern);
    let rkernel = s.file("kernel-relocated", &r.kernel());
    let sym = |n: &str| r.syms.iter().find(|k| k.name == n).unwrap().value;
    run(
        "amd64 relocated full",
        &rkernel,
        &s.file("full", &r.full_dump(false).bytes),
        &[version, hole],
        &[
            ("kernbase", sym("kernbase")),
            ("KPML4phys", sym("KPML4phys")),
        ],
    );
    // arm64 with 16 KiB pages (minidump v3) and riscv.
    for (name, arch, v) in [("arm64-16k", &ARM64_16K, 3), ("riscv", &RISCV, 2)] {
        let d = DmapMachine::new(arch, Fill::Pattern);
        let k = s.file(&format!("kernel-{name}"), &d.kernel());
        let version = d.syms.iter().find(|k| k.name == "version").unwrap().value;
        run(
            name,
            &k,
            &s.file(name, &d.minidump(v).bytes),
            &[version],
            &[],
        );
    }
}
