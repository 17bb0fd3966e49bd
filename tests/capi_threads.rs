//! The thread extensions of the C API (issue 10) from a real C program:
//! tests/c/threads_test.c, linked with libkvm.so and libkvm.a, lists the
//! amd64 fixture kernel's threads and their registers, and the output must
//! be what the fixture's model says, line for line.

mod fixture;
use fixture::amd64::{va, Amd64};
use fixture::c::{compile, root, target_dir};
use fixture::Fill;
use fixture::Scratch;
use std::process::Command;

#[test]
fn threads_and_registers_from_c() {
    let m = Amd64::new(2 << 20, Fill::Pattern);
    let s = Scratch::new("capi-threads");
    let kernel = s.file("kernel", &m.kernel());
    let core = s.file("vmcore", &m.minidump(3).bytes);
    let mut want = String::new();
    for t in m.expected_threads() {
        want += &format!(
            "{} {} {} {} {:#x} {:#x} {}/{}\n",
            t.tid,
            t.pid,
            t.cpu.map_or(-1, |c| c as i64),
            u32::from(t.crashed),
            t.thread,
            t.pcb,
            t.name,
            t.comm
        );
        // gdb's order: rbx rbp rsp r12..r15 rip cs ss.
        let w = Amd64::pcb_words(t.pcb);
        for (name, v) in [
            ("rbx", w[6]),
            ("rbp", w[4]),
            ("rsp", w[5]),
            ("r12", w[3]),
            ("r13", w[2]),
            ("r14", w[1]),
            ("r15", w[0]),
            ("rip", w[7]),
            ("cs", 0x20),
            ("ss", 0x28),
        ] {
            want += &format!("  {name}={v:#x}\n");
        }
    }
    assert!(want.contains(&format!("{:#x}", va::DUMPPCB)));
    assert_eq!(want.lines().filter(|l| !l.starts_with(' ')).count(), 7);
    let dir = target_dir().join("capi-threads");
    std::fs::create_dir_all(&dir).unwrap();
    let src = root().join("tests/c/threads_test.c");
    for (name, static_link) in [("shared", false), ("static", true)] {
        let bin = compile(&src, &dir.join(format!("threads_test_{name}")), static_link);
        let out = Command::new(&bin).arg(&kernel).arg(&core).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name}:\n{stdout}");
        assert_eq!(stdout, want, "{name}");
    }
}
