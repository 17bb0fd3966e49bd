//! The committed include/kvm.h is what cbindgen generates, and it compiles
//! as C and as C++ (extern "C" guards), alone and with elfutils' `<nlist.h>`
//! (which declares another `struct nlist`) in either order.

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

/// Compiles `src` (syntax only) as C99 and C++11 with warnings as errors;
/// returns the compilers' complaints, if any.
fn compile(name: &str, src: &str) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("kvm-header-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut errors = String::new();
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
            .unwrap_or_else(|e| {
                panic!("cannot run `{compiler}` ({e}): it is needed to compile include/kvm.h")
            });
        if !out.status.success() {
            errors += &format!("{compiler}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[test]
fn header_compiles_as_c_and_cpp() {
    let src = "#include <kvm.h>\n#include <string.h>\nint main(void) { struct kvm_nlist nl[2]; \
               struct nlist al[1]; memset(nl, 0, sizeof nl); memset(al, 0, sizeof al); return \
               kvm_native((kvm_t *)0) + nl[0].n_type + al[0].n_type + kvm_nlist((kvm_t *)0, \
               al); }\n";
    compile("alone", src).unwrap();
}

/// elfutils' `<nlist.h>` (Debian's libelf-dev; .ci/run installs it) with
/// kvm.h: included first, it hides kvm_nlist() and leaves kvm_nlist2();
/// included after, it needs KVM_NO_NLIST, without which the two `struct
/// nlist` collide.
#[test]
fn header_and_elfutils_nlist_in_either_order() {
    let nlist_h = std::path::Path::new("/usr/include/nlist.h");
    assert!(
        std::fs::read_to_string(nlist_h).is_ok_and(|t| t.contains("elfutils")),
        "this test needs elfutils' {} (Debian package libelf-dev)",
        nlist_h.display()
    );
    let body = "int main(void) { struct nlist el[2]; struct kvm_nlist nl[2]; memset(el, 0, \
                sizeof el); memset(nl, 0, sizeof nl); return nlist(\"/bin/sh\", el) + \
                kvm_nlist2((kvm_t *)0, nl) + el[0].n_scnum; }\n";
    let first = format!("#include <string.h>\n#include <nlist.h>\n#include <kvm.h>\n{body}");
    compile("elfutils-first", &first).unwrap();
    let after = format!(
        "#include <string.h>\n#define KVM_NO_NLIST\n#include <kvm.h>\n#include <nlist.h>\n{body}"
    );
    compile("elfutils-after", &after).unwrap();
    let clash = after.replace("#define KVM_NO_NLIST\n", "");
    let e = compile("elfutils-clash", &clash).unwrap_err();
    assert!(e.contains("struct nlist"), "{e}");
}
