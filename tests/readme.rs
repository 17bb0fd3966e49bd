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

/// The README's second C program, `guestread.c`, reads a guest's kernel
/// memory through the VMM process and its memory slots on the guest
/// fixture's host dump; the bytes are the model's, and a guest address
/// the guest does not map fails naming it.
#[test]
fn readme_guest_program_reads_a_guest() {
    use fixture::guest::{GuestKind, Lab, Layer};
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let from = readme.find("### Address spaces").expect("the section");
    let (program, _) = block(&readme, "c", from);
    let s = Scratch::new("readme-guest");
    let src = s.file("guestread.c", program.as_bytes());
    let exe = s.path().join("guestread");
    let lib = target_dir();
    let built = output(
        Command::new("cc")
            .arg("-I")
            .arg(root().join("include"))
            .arg("-o")
            .arg(&exe)
            .arg(&src)
            .arg("-L")
            .arg(&lib)
            .arg("-lkvm")
            .arg(format!("-Wl,-rpath,{}", lib.display())),
        "compile guestread.c",
    );
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );

    let lab = Lab::builder().guest(GuestKind::X86_64).build();
    let dump = lab.host.full_dump(false);
    let kernel = s.file("kernel", &lab.host.kernel());
    let core = s.file("vmcore", &dump.bytes);
    let guest = lab.guest("x86-64");
    let stack = [Layer::Guest("x86-64"), Layer::Slots, Layer::Vmm];
    let slots: Vec<String> = lab
        .slots
        .iter()
        .map(|r| format!("{:#x}:{:#x}:{:#x}", r.addr, r.len, r.target))
        .collect();
    let run = |va: u64, len: u64| {
        output(
            Command::new(&exe)
                .arg(&kernel)
                .arg(&core)
                .arg(format!("{:#x}", lab.vmm_cr3))
                .arg(format!("{:#x}", guest.root_reg))
                .arg(format!("{va:#x}"))
                .arg(len.to_string())
                .args(&slots),
            "run guestread",
        )
    };
    // The guest kernel's text, across its two 2 MiB pages.
    let va = 0xffff_ffff_8020_0000 - 24;
    let want = lab
        .expect_read(&stack, &dump, va, 48)
        .expect("the model reads it");
    let got = run(va, 48);
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let hex: String = want.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(String::from_utf8_lossy(&got.stdout), format!("{hex}\n"));
    // A guest address nothing maps.
    let bad = 0xffff_ffff_9000_0000u64;
    assert!(lab.expect_read(&stack, &dump, bad, 8).is_err());
    let failed = run(bad, 8);
    assert_eq!(failed.status.code(), Some(1));
    let text = String::from_utf8_lossy(&failed.stderr);
    assert!(
        text.starts_with(&format!(
            "kvm_read2: invalid address ({bad:#x}): in x86-64 space (layer 3)"
        )),
        "{text}"
    );
}
