//! The README's C program and build commands work as written: the ```c
//! block is compiled with each `cc` line of the ```sh block that follows
//! (against this build's libkvm.so and libkvm.a, placed where the commands
//! expect target/release), and the program runs on the sample dump.

mod fixture;
use fixture::c::{output, root, target_dir};
use fixture::Scratch;
use std::process::Command;

/// The body of the first fenced block of `lang` after `from` in `text`.
fn block<'a>(text: &'a str, lang: &str, from: usize) -> (&'a str, usize) {
    let fence = format!("```{lang}\n");
    let start = from + text[from..].find(&fence).expect("the README has the block") + fence.len();
    let end = start + text[start..].find("```").expect("the block ends");
    (&text[start..end], end)
}

#[test]
fn readme_c_program_builds_and_runs() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let (program, end) = block(&readme, "c", 0);
    let (commands, _) = block(&readme, "sh", end);
    let s = Scratch::new("readme");
    std::fs::write(s.path().join("version.c"), program).unwrap();
    // The commands run in the repository: give them its include/ and a
    // target/release/ that holds this build's libraries and samples.
    std::os::unix::fs::symlink(root().join("include"), s.path().join("include")).unwrap();
    std::fs::create_dir_all(s.path().join("target")).unwrap();
    std::os::unix::fs::symlink(target_dir(), s.path().join("target/release")).unwrap();
    std::os::unix::fs::symlink(root().join("tests"), s.path().join("tests")).unwrap();
    let (compiles, runs): (Vec<&str>, Vec<&str>) =
        commands.lines().partition(|l| l.starts_with("cc "));
    assert_eq!((compiles.len(), runs.len()), (2, 1), "{commands}");
    for cc in compiles {
        let sh = |line: &str| {
            output(
                Command::new("sh").arg("-c").arg(line).current_dir(s.path()),
                "run the README's commands",
            )
        };
        let built = sh(cc);
        assert!(
            built.status.success(),
            "{cc}\n{}",
            String::from_utf8_lossy(&built.stderr)
        );
        let ran = sh(runs[0]);
        let out = String::from_utf8_lossy(&ran.stdout);
        assert!(
            ran.status.success() && out.starts_with("FreeBSD 14.2-RELEASE amd64 fixture #0"),
            "{cc}: {out}{}",
            String::from_utf8_lossy(&ran.stderr)
        );
        // Errors reach the user.
        let failed = sh("./version tests/data/kernel no-such-core");
        assert_eq!(failed.status.code(), Some(1));
        assert_eq!(
            String::from_utf8_lossy(&failed.stderr),
            "kvm_open2: core no-such-core: No such file or directory\n"
        );
    }
}
