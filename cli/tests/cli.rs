//! `vmcore` as a user runs it, on the sample amd64 minidump the library's
//! tests carry (tests/data): each subcommand's output against what the
//! library reads, exit codes, and errors that name what is wrong.

use kvm::Kvm;
use std::path::PathBuf;
use std::process::{Command, Output};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data")
        .join(name)
}

fn vmcore(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmcore"))
        .args(args)
        .output()
        .expect("run vmcore")
}

/// Runs a subcommand on the sample dump; its standard output.
fn ok(sub: &str, rest: &[&str]) -> String {
    let (kernel, core) = (data("kernel"), data("vmcore"));
    let mut args = vec![sub, kernel.to_str().unwrap(), core.to_str().unwrap()];
    args.extend(rest);
    let out = vmcore(&args);
    assert!(
        out.status.success(),
        "vmcore {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn sample() -> Kvm {
    Kvm::open(data("kernel"), data("vmcore")).unwrap()
}

#[test]
fn info_says_what_the_dump_is() {
    let out = ok("info", &[]);
    assert!(out.contains("backend:       amd64 minidump\n"), "{out}");
    assert!(
        out.contains("kernel:        FreeBSD 14.2-RELEASE amd64 fixture #0"),
        "{out}"
    );
    let held = sample().memory_held();
    assert!(out.contains(&format!("({held} bytes)")), "{out}");
}

#[test]
fn read_prints_what_the_library_reads() {
    let kvm = sample();
    let version = kvm.symbol("version").unwrap().value;
    let mut want = vec![0u8; 40];
    kvm.read_exact(version, &mut want).unwrap();
    let by_name = ok("read", &["version", "40"]);
    let by_addr = ok("read", &[&format!("{version:#x}"), "0x28"]);
    assert_eq!(by_name, by_addr);
    let lines: Vec<&str> = by_name.lines().collect();
    assert_eq!(lines.len(), 3);
    for (i, line) in lines.iter().enumerate() {
        let chunk = &want[16 * i..(16 * i + 16).min(want.len())];
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        assert!(
            line.starts_with(&format!(
                "{:016x}  {}",
                version + 16 * i as u64,
                hex.join(" ")
            )),
            "{line}"
        );
    }
    assert!(lines[0].ends_with("FreeBSD 14.2-REL"), "{}", lines[0]);
    // --raw writes the bytes themselves, across the 64 KiB read chunks.
    let (kernel, core) = (data("kernel"), data("vmcore"));
    let big = 70_000u64;
    let raw = vmcore(&[
        "read",
        kernel.to_str().unwrap(),
        core.to_str().unwrap(),
        "version",
        &big.to_string(),
        "--raw",
    ]);
    let mut want = vec![0u8; big as usize];
    match kvm.read_exact(version, &mut want) {
        Ok(()) => {
            assert!(raw.status.success());
            assert!(raw.stdout == want);
        }
        Err(e) => {
            // The sample need not map 70,000 bytes there: then the same
            // failure, naming the address.
            assert_eq!(raw.status.code(), Some(1));
            let text = String::from_utf8_lossy(&raw.stderr);
            let at = match e {
                kvm::Error::Translate { va, .. } => va,
                e => panic!("{e}"),
            };
            assert!(
                text.contains(&format!("invalid address ({at:#x})")),
                "{text}"
            );
        }
    }
}

#[test]
fn vtop_translates() {
    let kvm = sample();
    let version = kvm.symbol("version").unwrap().value;
    let pa = kvm.vtop(version).unwrap();
    let out = ok("vtop", &["version"]);
    // The minidump's page map entry, in the core file, then the address.
    let (steps, _) = kvm.translation(version);
    assert_eq!(steps.len(), 1);
    let kvm::TableAt::File(off) = steps[0].table else {
        panic!("{steps:?}")
    };
    assert_eq!(steps[0].entry & !0xfff, pa & !0xfff);
    assert_eq!(
        out,
        format!(
            "  PTE    page map entry {} at core offset {off:#x} = {:#x}\n{version:#x} -> physical {pa:#x}\n",
            steps[0].index, steps[0].entry
        )
    );
    // A failure: the entries read, then the error naming the address.
    let out = vmcore(&[
        "vtop",
        data("kernel").to_str().unwrap(),
        data("vmcore").to_str().unwrap(),
        "0xffffffff80000000",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("PTE "));
    assert!(String::from_utf8_lossy(&out.stderr).contains("(0xffffffff80000000): not mapped"));
}

#[test]
fn pages_merge_runs_and_cover_the_walk() {
    let kvm = sample();
    let mut total = 0u64;
    let mut count = 0u64;
    kvm.walk_pages(|p| {
        total += p.len;
        count += 1;
        true
    })
    .unwrap();
    let out = ok("pages", &[]);
    let mut listed = 0u64;
    for line in out.lines() {
        let range = line.split(' ').next().unwrap();
        let (a, b) = range.split_once('-').unwrap();
        let (a, b) = (
            u64::from_str_radix(a, 16).unwrap(),
            u64::from_str_radix(b, 16).unwrap(),
        );
        assert!(b > a, "{line}");
        listed += b - a;
    }
    assert_eq!(listed, total);
    assert!((out.lines().count() as u64) < count, "runs are merged");
}

#[test]
fn symbols_sorted_and_filtered() {
    let out = ok("symbols", &[]);
    let values: Vec<u64> = out
        .lines()
        .map(|l| u64::from_str_radix(&l[..16], 16).unwrap())
        .collect();
    assert!(values.windows(2).all(|w| w[0] <= w[1]));
    let version = sample().symbol("version").unwrap().value;
    assert_eq!(
        ok("symbols", &["versio"]),
        format!("{version:016x} D version\n")
    );
}

#[test]
fn errors_name_what_is_wrong() {
    let kernel = data("kernel");
    let k = kernel.to_str().unwrap();
    let core = data("vmcore");
    let c = core.to_str().unwrap();
    let run = |args: &[&str]| {
        let out = vmcore(args);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["info", k, "no-such-core"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        "vmcore: core no-such-core: No such file or directory\n"
    );
    let (code, err) = run(&["read", k, c, "0xffffffff80000000", "8"]);
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with("vmcore: invalid address (0xffffffff80000000): not mapped"),
        "{err}"
    );
    let (code, err) = run(&["read", k, c, "no_such_symbol"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("\"no_such_symbol\" is neither an address nor a symbol"),
        "{err}"
    );
    let (code, _) = run(&["read", k, c, "version", "lots"]);
    assert_eq!(code, Some(2));
    let (code, _) = run(&["frobnicate"]);
    assert_eq!(code, Some(2));
}

#[test]
fn every_subcommand_has_help() {
    for sub in [
        "info", "read", "vtop", "pages", "dmesg", "threads", "symbols",
    ] {
        let out = vmcore(&[sub, "--help"]);
        assert!(out.status.success(), "{sub}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("<KERNEL>") && text.contains("<CORE>"),
            "{sub}: {text}"
        );
    }
}

/// The README's `vmcore` transcript is what `vmcore` prints today.
#[test]
fn readme_transcript_is_current() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let section = &readme[readme.find("## `vmcore`").expect("the section")..];
    let start = section.find("```\n").unwrap() + 4;
    let block = &section[start..start + section[start..].find("```").unwrap()];
    let mut runs = 0;
    for part in block.split("$ vmcore ").skip(1) {
        let (command, want) = part.split_once('\n').unwrap();
        let args: Vec<&str> = command.split(' ').collect();
        let out = Command::new(env!("CARGO_BIN_EXE_vmcore"))
            .args(&args)
            .current_dir(&root)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            want,
            "vmcore {command}"
        );
        runs += 1;
    }
    assert_eq!(runs, 3);
}

/// dmesg prints the message buffer without priorities, as dmesg(8);
/// `-a` prints it whole.
#[test]
fn dmesg_prints_the_message_buffer() {
    let raw = sample().message_buffer().unwrap();
    assert_eq!(ok("dmesg", &["-a"]).as_bytes(), &raw[..]);
    let out = ok("dmesg", &[]);
    assert!(
        out.ends_with("Copyright (c) 1992-2024 The FreeBSD Project.\nfixture boot\n"),
        "{out}"
    );
    assert!(!out.contains('<'), "{out}");
    assert_eq!(out.lines().count(), raw.split(|&b| b == b'\n').count() - 1);
    // The buffer wrapped: its partial first line is not shown.
    assert!(out.starts_with("an older line\n"), "{out}");
}

/// threads prints one line per thread the library lists.
#[test]
fn threads_table() {
    let threads = sample().threads().unwrap();
    let out = ok("threads", &[]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].contains("PID") && lines[0].contains("COMM/NAME"));
    assert_eq!(lines.len(), threads.len() + 1);
    for (line, t) in lines[1..].iter().zip(&threads) {
        assert!(
            line.contains(&t.tid.to_string()) && line.contains(&format!("{:#x}", t.pcb)),
            "{line}"
        );
        assert_eq!(line.contains('*'), t.crashed, "{line}");
    }
    assert!(
        out.contains("kernel/softclock") && out.contains(" *sh\n"),
        "{out}"
    );
}

/// `$payload#checksum`.
fn packet(payload: &str) -> String {
    let sum = payload.bytes().fold(0u8, |s, b| s.wrapping_add(b));
    format!("${payload}#{sum:02x}")
}

/// gdbserver on stdin/stdout answers packets about the sample dump, shrugs
/// off garbage and hostile requests, and ends cleanly on `k`.
#[test]
fn gdbserver_answers_packets() {
    use std::io::Write as _;
    use std::process::Stdio;
    let kvm = sample();
    let version = kvm.symbol("version").unwrap().value;
    // k4_pages' page 3 is unmapped: a read across its start is partial.
    let hole = kvm.symbol("k4_pages").unwrap().value + 3 * 0x1000;
    let mut input = String::from("\x03garbage$$#zz");
    for p in [
        "QStartNoAckMode",
        "?",
        &format!("m{version:x},8"),
        "mffffffffffffff00,ffffffff",
        "m0,10",
        "g",
        "p10",
        "p999",
        "Hg999",
        "M0,1:00",
        "c",
        &format!("m{:x},10", hole - 8),
        "k",
    ] {
        input += &packet(p);
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmcore"))
        .args(["gdbserver"])
        .args([data("kernel"), data("vmcore")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // Replies, in order, without the framing.
    let replies: Vec<&str> = text
        .split('$')
        .skip(1)
        .map(|r| r.split('#').next().unwrap())
        .collect();
    assert_eq!(replies[0], "OK", "{text}");
    let dumping = kvm
        .threads()
        .unwrap()
        .iter()
        .position(|t| t.crashed)
        .unwrap()
        + 1;
    assert_eq!(replies[1], format!("T05thread:{dumping:x};"));
    assert_eq!(replies[2], "4672656542534420"); // "FreeBSD "
    assert!(
        replies[3].starts_with('E') && replies[4].starts_with('E'),
        "{text}"
    );
    // g: rax unknown, rbx known (the dumping thread's PCB), x87 unknown.
    assert!(replies[5].starts_with(&"x".repeat(16)), "{}", replies[5]);
    assert!(!replies[5][16..32].contains('x'), "{}", replies[5]);
    assert_eq!(replies[6].len(), 16); // p10: rip
    assert!(replies[7].starts_with('E') && replies[8].starts_with('E'));
    assert!(replies[9].starts_with('E'), "writes fail: {text}");
    // A resume prints why it cannot (an O packet) and stops again.
    assert!(
        replies[10].starts_with('O') && replies[11].starts_with('T'),
        "{text}"
    );
}
