//! The committed include/kvm.h is what cbindgen generates, and it compiles
//! as C and as C++ (extern "C" guards).

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn committed_header_is_current() {
    let committed = std::fs::read_to_string(root().join("include/kvm.h")).unwrap();
    assert!(
        committed == kvm::GENERATED_HEADER,
        "include/kvm.h is stale: run `cargo build` outside CI and commit the result"
    );
}

#[test]
fn header_compiles_as_c_and_cpp() {
    let src = "#include <kvm.h>\n#include <string.h>\nint main(void) { struct kvm_nlist nl[2]; \
               struct nlist al[1]; memset(nl, 0, sizeof nl); memset(al, 0, sizeof al); return \
               kvm_native((kvm_t *)0) + nl[0].n_type + al[0].n_type; }\n";
    let dir = std::env::temp_dir().join(format!("kvm-header-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (compiler, file, std) in [("cc", "t.c", "-std=c99"), ("c++", "t.cc", "-std=c++11")] {
        let path = dir.join(file);
        std::fs::write(&path, src).unwrap();
        let out = Command::new(compiler)
            .args([
                std,
                "-Wall",
                "-Wextra",
                "-Werror",
                "-pedantic",
                "-fsyntax-only",
                "-I",
            ])
            .arg(root().join("include"))
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{compiler}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
