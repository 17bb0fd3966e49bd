//! The manual pages in man/ cover the C API and hold together: every
//! function include/kvm.h declares is in the SYNOPSIS and the NAME of a
//! page (and every function a SYNOPSIS shows is declared), every `.Xr`
//! to a page of this library names a page in man/, and `mandoc -T lint`
//! finds nothing to say about any page.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every page in man/: its file name and text, sorted by name.
fn pages() -> Vec<(String, String)> {
    let dir = root().join("man");
    let mut pages: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (name, text)
        })
        .collect();
    pages.sort();
    assert!(
        pages.iter().any(|(n, _)| n == "kvm.3"),
        "man/ has no kvm.3: {:?}",
        pages.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    pages
}

/// The functions include/kvm.h declares: a declaration starts a line
/// (not a comment, a `typedef` or a preprocessor line) and the first
/// `kvm_` identifier followed by `(` is the function's name.
fn declared_functions() -> BTreeSet<String> {
    let header = std::fs::read_to_string(root().join("include/kvm.h")).unwrap();
    let mut names = BTreeSet::new();
    for line in header.lines() {
        let starts_declaration = line.starts_with(|c: char| c.is_ascii_alphabetic())
            && !line.starts_with("typedef")
            && !line.starts_with("struct")
            && !line.starts_with("extern");
        if !starts_declaration {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("kvm_") {
            let after = &rest[at..];
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            let preceded_by_ident = rest[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            if !preceded_by_ident && after[len..].starts_with('(') {
                names.insert(after[..len].to_string());
                break;
            }
            rest = &after[len..];
        }
    }
    // Guard the parser: these are declared in different ways (in the
    // header's prelude, across lines, returning pointers or const ones).
    for f in [
        "kvm_nlist",
        "kvm_open2",
        "kvm_close",
        "kvm_read2",
        "kvm_walk_pages",
        "kvm_thread_registers",
        "kvm_register_name",
    ] {
        assert!(names.contains(f), "{f} not found in kvm.h: {names:?}");
    }
    names
}

/// The lines of section `sh` (`.Sh NAME`, ...) of a page.
fn section<'a>(text: &'a str, sh: &str) -> Vec<&'a str> {
    let start = format!(".Sh {sh}");
    text.lines()
        .skip_while(|l| l.trim_end() != start)
        .skip(1)
        .take_while(|l| !l.starts_with(".Sh "))
        .collect()
}

/// The first argument of each line of `lines` that starts with one of
/// `macros` (".Nm", ".Fn", ...), without quotes or trailing punctuation.
fn first_args(lines: &[&str], macros: &[&str]) -> BTreeSet<String> {
    lines
        .iter()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let m = words.next()?;
            macros.contains(&m).then(|| words.next())?
        })
        .map(|w| w.trim_matches('"').to_string())
        .collect()
}

#[test]
fn every_function_has_a_synopsis_and_a_name() {
    let declared = declared_functions();
    // function -> pages that have it in both their NAME and SYNOPSIS.
    let mut documented: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for (page, text) in pages() {
        let names = first_args(&section(&text, "NAME"), &[".Nm"]);
        let synopsis = first_args(&section(&text, "SYNOPSIS"), &[".Fn", ".Fo"]);
        for f in &synopsis {
            if !declared.contains(f) {
                problems.push(format!(
                    "{page}: the SYNOPSIS shows {f}, which include/kvm.h does not declare"
                ));
            } else if !names.contains(f) {
                problems.push(format!(
                    "{page}: the SYNOPSIS shows {f}, but the NAME section has no `.Nm {f}`"
                ));
            } else {
                documented.entry(f.clone()).or_default().push(page.clone());
            }
        }
    }
    for f in &declared {
        if !documented.contains_key(f) {
            problems.push(format!(
                "{f} (include/kvm.h) is in no page's SYNOPSIS (`.Fn {f}` or `.Fo {f}`) \
                 with `.Nm {f}` in its NAME"
            ));
        }
    }
    for (f, where_) in &documented {
        if where_.len() > 1 {
            problems.push(format!("{f} is documented by several pages: {where_:?}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn cross_references_name_existing_pages() {
    let pages = pages();
    let files: BTreeSet<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
    let mut problems = Vec::new();
    for (page, text) in &pages {
        for (n, line) in text.lines().enumerate() {
            let mut words = line.split_whitespace();
            if words.next() != Some(".Xr") {
                continue;
            }
            let (Some(name), Some(sec)) = (words.next(), words.next()) else {
                problems.push(format!("{page}:{}: `{line}` lacks a section", n + 1));
                continue;
            };
            // This library's pages: kvm(3), kvm_*(3) and vmcore(1).
            let ours = name == "kvm" || name.starts_with("kvm_") || name == "vmcore";
            let file = format!("{name}.{sec}");
            if ours && !files.contains(file.as_str()) {
                problems.push(format!(
                    "{page}:{}: `.Xr {name} {sec}` names no page in man/ (a function \
                     documented in another page is `.Fn {name}`)",
                    n + 1
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `mandoc -T lint -W warning` on every page, or why it cannot run.
fn lint(paths: &[PathBuf]) -> Result<std::process::Output, std::io::Error> {
    Command::new("mandoc")
        .args(["-T", "lint", "-W", "warning"])
        .args(paths)
        .output()
}

#[test]
fn pages_pass_mandoc_lint() {
    let dir = root().join("man");
    let mut paths: Vec<PathBuf> = pages()
        .iter()
        .map(|(name, _)| Path::new(&dir).join(name))
        .collect();
    // The libfbsdvmcore drop-in's page.
    paths.push(root().join("fbsdvmcore/man/fvc_open.3"));
    match lint(&paths) {
        Ok(out) => {
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.status.success() && said.is_empty(),
                "mandoc -T lint -W warning man/* ({}):\n{said}",
                out.status
            );
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let why = "mandoc is not installed (Debian package mandoc)";
            assert!(
                std::env::var_os("CI").is_none(),
                "{why}: CI must lint the manual pages"
            );
            eprintln!("skipping the lint of man/: {why}");
        }
        Err(e) => panic!("cannot run mandoc: {e}"),
    }
}

/// Each second name of a page (`.Nm` in its NAME other than the page's
/// own) has a link in man/links to the page, as FreeBSD's MLINKS give
/// `man kvm_open2` (cargo cinstall copies the page under that name); and
/// each link names a page that lists it.
#[test]
fn second_names_have_links() {
    let mut want = BTreeSet::new();
    for (page, text) in &pages() {
        let (stem, sec) = page.rsplit_once('.').unwrap();
        for n in first_args(&section(text, "NAME"), &[".Nm"]) {
            if n != stem {
                want.insert((format!("{n}.{sec}"), format!("../{page}")));
            }
        }
    }
    let dir = root().join("man/links");
    let have: BTreeSet<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let target = std::fs::read_link(&path)
                .unwrap_or_else(|e| panic!("{} is no symbolic link: {e}", path.display()));
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, target.to_string_lossy().into_owned())
        })
        .collect();
    assert_eq!(
        have, want,
        "man/links/ must link each second name to its page"
    );
}
