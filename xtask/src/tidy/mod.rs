//! Repository rules kept as tests, so CI enforces what reviewers would otherwise repeat.

use std::path::{Path, PathBuf};

mod code;
mod map;
mod modules;

pub(super) fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
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

pub(super) fn read(path: &Path) -> String {
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

/// The platform audit, for machines where CI cannot check a non-Linux target for real:
/// the Linux-only crates stop a foreign build with their own message, and the portable crates
/// keep every OS-specific call behind a `cfg`.
#[test]
fn linux_only_code_is_gated_and_says_so() {
    let root = crate::workspace_root();
    let process_lib = read(&root.join("crates/process-ipc/src/lib.rs"));
    assert!(
        process_lib.contains(
            "#[cfg(not(target_os = \"linux\"))]\ncompile_error!(\n    \"process-ipc is Linux-only"
        ),
        "process-ipc/src/lib.rs must stop a non-Linux build with a compile_error! saying why"
    );
    let coro_lib = read(&root.join("crates/coro/src/lib.rs"));
    assert!(
        coro_lib.contains("compile_error!(") && coro_lib.contains("feature = \"patch\""),
        "coro/src/lib.rs must stop a `patch` build off Linux + glibc with a compile_error!"
    );
    let os_specific = ["libc::", "std::os::unix", "std::os::linux", "\"/proc/"];
    for krate in ["threads-sync", "iter-gen"] {
        let mut files = Vec::new();
        rust_files(&root.join("crates").join(krate).join("src"), &mut files);
        for file in files {
            let text = read(&file);
            if os_specific.iter().any(|s| text.contains(s)) {
                assert!(
                    text.contains("#[cfg(unix)]") || text.contains("#[cfg(target_os"),
                    "{} uses an OS-specific API with no cfg gate: {krate} must build anywhere",
                    file.display()
                );
            }
        }
        let manifest = read(&root.join("crates").join(krate).join("Cargo.toml"));
        let normal = manifest
            .split("\n[")
            .find(|t| t.starts_with("dependencies]"));
        assert!(
            !normal.is_some_and(|deps| deps.contains("\nlibc")),
            "{krate} takes libc only under a [target.'cfg(unix)'] table"
        );
    }
}
