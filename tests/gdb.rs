//! Stock gdb debugging dumps through `vmcore gdbserver` (issue 10): the
//! system's gdb in batch mode over the pipe and over TCP on the amd64
//! fixture (FreeBSD: threads from allproc, registers from PCBs), and
//! gdb-multiarch on a Linux aarch64 vmcore (registers from NT_PRSTATUS,
//! symbols moved by KASLR through qOffsets). `.ci/run` installs gdb and
//! gdb-multiarch; elsewhere a missing one skips its test, saying so.

mod fixture;
use fixture::amd64::{va, Amd64, VERSION};
use fixture::c::vmcore_bin;
use fixture::linux::{pr_reg_word, Style};
use fixture::linux_arm64::{LinuxArm64, BANNER, CONFIGS};
use fixture::{Fill, Scratch};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The first of `names` on PATH; `None` (the test is skipped, saying so)
/// when there is none, except under CI, which installs them.
fn find_gdb(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in names {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let what = format!("{} not found on PATH", names.join(" or "));
    assert!(
        std::env::var_os("CI").is_none(),
        "{what}: .ci/run installs it (Debian packages gdb and gdb-multiarch)"
    );
    eprintln!("skipped: {what} (Debian packages gdb and gdb-multiarch)");
    None
}

/// The gdb command that debugs `core` through `vmcore gdbserver` over
/// the pipe.
fn remote(kernel: &Path, core: &Path) -> String {
    format!(
        "target remote | {} gdbserver {} {}",
        vmcore_bin().display(),
        kernel.display(),
        core.display()
    )
}

/// Runs gdb in batch mode on `file` with `commands`; its output (stdout
/// and stderr).
fn gdb(gdb: &Path, early: &[&str], file: &Path, commands: &[String]) -> String {
    let mut cmd = Command::new(gdb);
    cmd.args(["-batch", "-nx"]);
    for c in early {
        cmd.args(["-iex", c]);
    }
    cmd.arg(file);
    for c in commands {
        cmd.args(["-ex", c]);
    }
    let out = cmd.output().expect("run gdb");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "gdb failed:\n{text}");
    text
}

/// The amd64 fixture kernel and a minidump of it.
fn amd64(s: &Scratch) -> (Amd64, PathBuf, PathBuf) {
    let m = Amd64::new(2 << 20, Fill::Pattern);
    let kernel = s.file("kernel", &m.kernel());
    let core = s.file("vmcore", &m.minidump(3).bytes);
    (m, kernel, core)
}

// Debian's gdb has no FreeBSD OS ABI for x86-64; a FreeBSD kernel is
// debugged with the generic one.
const FREEBSD_AMD64: &[&str] = &["set osabi none"];

#[test]
fn gdb_debugs_a_freebsd_dump_over_the_pipe() {
    let Some(gdb_bin) = find_gdb(&["gdb", "gdb-multiarch"]) else {
        return;
    };
    let s = Scratch::new("gdb-amd64");
    let (m, kernel, core) = amd64(&s);
    let remote = remote(&kernel, &core);
    let cmds: Vec<String> = [
        remote.as_str(),
        "info threads",
        "thread 2",
        "info registers rip rsp rbx cs rax",
        "x/s &version",
        "p/x (int)mp_ncpus",
        "p *(int *)0",
        "continue",
        "info threads",
    ]
    .iter()
    .map(|c| c.to_string())
    .collect();
    let started = Instant::now();
    let out = gdb(&gdb_bin, FREEBSD_AMD64, &kernel, &cmds);
    eprintln!("gdb session: {:?}", started.elapsed());
    // The threads, named pid/tid comm/tdname, the dumping one selected
    // and in doadump (dumppcb), a stopped CPU's in cpustop_handler.
    for t in m.expected_threads() {
        let name = format!("\"{}/{} {}/{}\"", t.pid, t.tid, t.comm, t.name);
        assert!(out.contains(&name), "{name}:\n{out}");
    }
    let selected = out.lines().find(|l| l.starts_with("* 5 ")).unwrap_or("");
    assert!(
        selected.contains("\"42/100042 sh/sh\"") && selected.ends_with("in doadump ()"),
        "{out}"
    );
    assert!(out.contains("in cpustop_handler ()"), "{out}");
    // Thread 2 (softclock, on stopped CPU 1): stoppcbs[1].
    let pcb = Amd64::pcb_words(va::STOPPCBS + 0x80);
    for (reg, v) in [("rip", pcb[7]), ("rsp", pcb[5]), ("rbx", pcb[6])] {
        let line = format!("{reg:<15}{v:#x}");
        assert!(out.contains(&line), "{line}:\n{out}");
    }
    assert!(out.contains("cs             0x20"), "{out}");
    assert!(out.contains("rax            <unavailable>"), "{out}");
    let version = String::from_utf8_lossy(&VERSION[..VERSION.len() - 2]).into_owned();
    assert!(
        out.contains(&format!("<version>:\t\"{version}\\n\"")),
        "{out}"
    );
    assert!(out.contains("$1 = 0x4"), "{out}");
    assert!(out.contains("Cannot access memory at address 0x0"), "{out}");
    assert!(out.contains("a crash dump cannot run"), "{out}");
}

#[test]
fn gdb_connects_over_tcp() {
    let Some(gdb_bin) = find_gdb(&["gdb", "gdb-multiarch"]) else {
        return;
    };
    let s = Scratch::new("gdb-tcp");
    let (_, kernel, core) = amd64(&s);
    let mut server = Command::new(vmcore_bin())
        .args(["gdbserver", "--listen", "127.0.0.1:0"])
        .arg(&kernel)
        .arg(&core)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(server.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line
        .strip_prefix("vmcore: listening on ")
        .unwrap_or_else(|| panic!("{line}"))
        .trim()
        .to_string();
    let cmds = vec![
        format!("target remote {addr}"),
        "info threads".into(),
        "kill".into(),
    ];
    let out = gdb(&gdb_bin, FREEBSD_AMD64, &kernel, &cmds);
    assert!(
        out.contains("Thread 7 \"77/100077 zombie/zombie\""),
        "{out}"
    );
    // `k` ends the session and the server with it.
    let status = server.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn gdb_multiarch_debugs_a_linux_aarch64_vmcore() {
    let Some(gdb_bin) = find_gdb(&["gdb-multiarch"]) else {
        return;
    };
    // A kernel KASLR moved: gdb's vmlinux symbols follow through qOffsets.
    let cfg = CONFIGS.iter().find(|c| c.kaslr != 0).unwrap();
    let m = LinuxArm64::new(cfg);
    let s = Scratch::new("gdb-linux-arm64");
    let vmlinux = s.file("vmlinux", &m.vmlinux());
    let core = s.file("vmcore", &m.elf_vmcore(Style::Kdump));
    let cmds: Vec<String> = vec![
        remote(&vmlinux, &core),
        "info threads".into(),
        "thread 2".into(),
        "info registers x0 x29 sp pc".into(),
        "x/s &linux_banner".into(),
        "p/x &linux_banner".into(),
    ];
    let out = gdb(&gdb_bin, &[], &vmlinux, &cmds);
    assert!(out.contains("Thread 1 \"CPU 0 tid 1\""), "{out}");
    assert!(out.contains("Thread 2 \"CPU 1 tid 2\""), "{out}");
    for (reg, i) in [("x0", 0), ("x29", 29), ("sp", 31), ("pc", 32)] {
        let line = format!("{reg:<15}{:#x}", pr_reg_word(1, i));
        assert!(out.contains(&line), "{line}:\n{out}");
    }
    let banner = String::from_utf8_lossy(BANNER);
    let banner = banner.trim_end_matches(['\0', '\n']);
    assert!(out.contains(banner), "{banner}:\n{out}");
    assert!(
        out.contains(&format!("= {:#x}", m.sym("linux_banner"))),
        "{out}"
    );
}

/// The README's gdb session is what gdb shows today: its commands run in
/// batch mode from the repository root with `vmcore` on PATH, and the
/// output (stdout and stderr, in order) matches the README's lines.
#[test]
fn readme_gdb_session_is_current() {
    let Some(gdb_bin) = find_gdb(&["gdb"]) else {
        return;
    };
    let root = fixture::c::root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    const START: &str = "$ gdb -q -iex 'set osabi none' tests/data/kernel\n";
    let at = readme.find(START).expect("the README's gdb session") + START.len();
    let block = &readme[at..at + readme[at..].find("```").unwrap()];
    let commands: Vec<&str> = block
        .lines()
        .filter_map(|l| l.strip_prefix("(gdb) "))
        .collect();
    let want: Vec<&str> = block.lines().filter(|l| !l.starts_with("(gdb) ")).collect();
    let s = Scratch::new("gdb-readme");
    let log = s.0.join("session");
    let file = std::fs::File::create(&log).unwrap();
    let bin_dir = vmcore_bin().parent().unwrap().to_path_buf();
    let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let mut cmd = Command::new(gdb_bin);
    cmd.args([
        "-q",
        "-batch",
        "-nx",
        "-iex",
        "set osabi none",
        "tests/data/kernel",
    ]);
    for c in &commands {
        cmd.args(["-ex", c]);
    }
    let status = cmd
        .current_dir(&root)
        .env("PATH", path)
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .status()
        .unwrap();
    let out = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{out}");
    // Batch mode detaches at the end; gdb pads the threads header.
    let got: Vec<&str> = out
        .lines()
        .map(str::trim_end)
        .filter(|l| *l != "[Inferior 1 (Remote target) detached]")
        .collect();
    assert_eq!(
        got.join("\n"),
        want.join("\n"),
        "update the README's session to what gdb prints now"
    );
}

/// gdb-multiarch picks aarch64 and riscv:rv64 from the target description
/// of FreeBSD arm64 and riscv minidumps, and shows their threads in the
/// functions their PCBs resume in.
#[test]
fn gdb_multiarch_debugs_freebsd_arm64_and_riscv() {
    use fixture::dmap::{DmapMachine, ARM64_4K, RISCV};
    use fixture::procs::Pcb;
    let Some(gdb_bin) = find_gdb(&["gdb-multiarch"]) else {
        return;
    };
    for (name, arch, pcb) in [
        ("arm64", &ARM64_4K, Pcb::Arm64),
        ("riscv", &RISCV, Pcb::Riscv),
    ] {
        let mut m = DmapMachine::new(arch, Fill::Pattern);
        let procs = m.add_threads(pcb, Some(1_500_000));
        let s = Scratch::new(&format!("gdb-freebsd-{name}"));
        let kernel = s.file("kernel", &m.kernel());
        let core = s.file("vmcore", &m.minidump(2).bytes);
        let cmds: Vec<String> = vec![
            remote(&kernel, &core),
            "info threads".into(),
            "info registers pc sp".into(),
            "x/s &version".into(),
        ];
        let out = gdb(&gdb_bin, &["set osabi none"], &kernel, &cmds);
        let selected = out.lines().find(|l| l.starts_with("* 5 ")).unwrap_or("");
        assert!(
            selected.contains("\"42/100042 sh/sh\"") && selected.ends_with("in doadump ()"),
            "{name}:\n{out}"
        );
        assert!(out.contains("in cpustop_handler ()"), "{name}:\n{out}");
        let pc = procs.resume_pc(procs.dumppcb());
        assert!(
            out.contains(&format!("pc             {pc:#x}")),
            "{name}:\n{out}"
        );
        let sp = procs.expected_registers(procs.dumppcb());
        let sp = sp.iter().find(|r| r.0 == "sp").unwrap().1;
        assert!(
            out.contains(&format!("sp             {sp:#x}")),
            "{name}:\n{out}"
        );
        assert!(
            out.contains("FreeBSD 15.0-CURRENT fixture"),
            "{name}:\n{out}"
        );
    }
}

/// A thread list that loops (a damaged dump) still leaves gdb the memory
/// and symbols (one thread without registers, which gdb does not list),
/// and the reason on stderr.
#[test]
fn gdb_debugs_memory_when_the_thread_list_is_damaged() {
    let Some(gdb_bin) = find_gdb(&["gdb", "gdb-multiarch"]) else {
        return;
    };
    let mut m = Amd64::new(2 << 20, Fill::Pattern);
    // The second thread of `sh` points back to the first.
    let sh2 = va::THREADS + 0x100 * 5;
    m.write_virt(
        sh2 + fixture::procs::TD_PLIST,
        &(va::THREADS + 0x100 * 4).to_le_bytes(),
    );
    let s = Scratch::new("gdb-damaged");
    let kernel = s.file("kernel", &m.kernel());
    let core = s.file("vmcore", &m.minidump(3).bytes);
    let cmds = vec![
        remote(&kernel, &core),
        "info threads".into(),
        "info registers rip".into(),
        "x/s &version".into(),
    ];
    let out = gdb(&gdb_bin, FREEBSD_AMD64, &kernel, &cmds);
    assert!(
        out.contains("no kernel threads (") && out.contains("it loops"),
        "{out}"
    );
    // gdb shows no thread without a pc, but reads memory.
    assert!(out.contains("FreeBSD 14.2-RELEASE amd64 fixture"), "{out}");
}
