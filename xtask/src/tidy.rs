//! Repository rules kept as tests, so CI enforces what reviewers would otherwise repeat.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if !path.ends_with("target") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn every_rust_file_opens_with_a_doc_line() {
    let root = crate::workspace_root();
    let mut files = Vec::new();
    for dir in ["src", "tests", "examples", "crates", "xtask"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 5, "the walk found too few files: {files:?}");
    let bare: Vec<String> = files
        .iter()
        .filter(|f| !read(f).trim_start().starts_with("//!"))
        .map(|f| f.strip_prefix(&root).unwrap_or(f).display().to_string())
        .collect();
    assert!(
        bare.is_empty(),
        "files that do not open with a `//!` line saying what they hold: {bare:?}"
    );
}

#[test]
fn every_member_takes_the_workspace_lints() {
    let root = crate::workspace_root();
    let mut manifests = vec![root.join("Cargo.toml"), root.join("xtask/Cargo.toml")];
    for entry in std::fs::read_dir(root.join("crates"))
        .expect("crates/ exists")
        .flatten()
    {
        manifests.push(entry.path().join("Cargo.toml"));
    }
    for manifest in manifests {
        let text = read(&manifest);
        assert!(
            text.contains("[lints]\nworkspace = true"),
            "{} lacks `[lints] workspace = true`",
            manifest.display()
        );
    }
}

#[test]
fn ci_runs_the_readme_test_command() {
    let root = crate::workspace_root();
    let readme = read(&root.join("README.md"));
    let ci = read(&root.join(".ci/run"));
    for command in ["cargo xtask demo", "cargo test --workspace"] {
        assert!(readme.contains(command), "README.md must give `{command}`");
    }
    for command in [
        "cargo test --workspace",
        "cargo fmt --all -- --check",
        "cargo clippy --workspace --all-targets -- -D warnings",
    ] {
        assert!(ci.contains(command), ".ci/run must run `{command}`");
    }
}
