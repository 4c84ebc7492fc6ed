//! Rules on the source text itself: every `unsafe` says why it is sound, no file grows past the
//! size a reader takes in, libc is called only where the map says, and performance figures
//! live in the benches and docs/ladder.md, not in ARCHITECTURE.md or module headers.

use std::path::{Path, PathBuf};

use super::modules::{code_only, is_ident};
use super::{read, rust_files};

/// Every Rust source file the rules below read: (path relative to the workspace, text).
fn sources() -> Vec<(String, String)> {
    let root = crate::workspace_root();
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in ["src", "xtask/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    for entry in std::fs::read_dir(root.join("crates"))
        .expect("crates/ exists")
        .flatten()
    {
        rust_files(&entry.path().join("src"), &mut files);
    }
    files.sort();
    files
        .iter()
        .map(|f| (relative(&root, f), read(f)))
        .collect()
}

fn relative(root: &Path, file: &Path) -> String {
    file.strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// `unsafe` with its reason.

/// The lines (1-based) of `text` with an `unsafe` block, fn, impl, trait or extern block that
/// has no `SAFETY:` comment (or, for an item, a `# Safety` doc section) on its line or in the
/// comment lines above it (across the lines of the statement it opens, if it continues one).
pub(super) fn unsafe_without_reason(text: &str) -> Vec<usize> {
    let code = code_only(text);
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (at, _) in code.match_indices("unsafe") {
        let before = code[..at].chars().next_back().unwrap_or(' ');
        let after = code[at + "unsafe".len()..].chars().next().unwrap_or(' ');
        if is_ident(before) || is_ident(after) {
            continue;
        }
        let rest = code[at + "unsafe".len()..].trim_start();
        // `unsafe extern "C" fn(..)` and `unsafe fn(..)` are pointer types, not code.
        let item = rest
            .strip_prefix("extern")
            .map(|r| r.trim_start().trim_start_matches("\"\"").trim_start())
            .unwrap_or(rest);
        let is_type = item.starts_with("fn(") || item.starts_with("fn (");
        let kind_ok = rest.starts_with('{')
            || ["fn ", "impl", "trait ", "extern "]
                .iter()
                .any(|k| rest.starts_with(k));
        if !kind_ok || is_type {
            continue; // `#[unsafe(no_mangle)]`, `ctor(unsafe)`: attributes, not code.
        }
        let line = code[..at].matches('\n').count();
        if rest.starts_with("fn ") && in_trait_impl(&lines, line) {
            continue; // A trait's unsafe method: its `# Safety` is on the trait.
        }
        if !has_reason(&lines, line) {
            found.push(line + 1);
        }
    }
    found
}

/// Whether line `line` (0-based) sits in an `impl Trait for Type` block: the nearest line above
/// it that is less indented opens one.
fn in_trait_impl(lines: &[&str], line: usize) -> bool {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mine = indent(lines[line]);
    lines[..line]
        .iter()
        .rev()
        .find(|l| !l.trim().is_empty() && indent(l) < mine)
        .is_some_and(|l| {
            let l = l.trim_start();
            (l.starts_with("impl") || l.starts_with("unsafe impl")) && l.contains(" for ")
        })
}

/// Whether line `line` (0-based) or the comments just above it give a reason. Up to four lines
/// of code above that open or continue the statement (no `;` or `}` at their end, no `fn`
/// signature) are stepped over: a reason may stand above `let x = if c {` or a call's first
/// line.
fn has_reason(lines: &[&str], line: usize) -> bool {
    let says = |l: &str| l.contains("SAFETY:") || l.contains("# Safety");
    if lines.get(line).is_some_and(|l| says(l)) {
        return true;
    }
    let mut i = line;
    let mut statement_lines = 0;
    while i > 0 {
        i -= 1;
        let l = lines[i].trim();
        if l.starts_with("//") || l.starts_with("#[") {
            if says(l) {
                return true;
            }
            continue;
        }
        let continues =
            !(l.ends_with(';') || l.ends_with('}') || l.is_empty() || l.contains("fn "));
        if continues && statement_lines < 4 {
            statement_lines += 1;
            continue;
        }
        return false;
    }
    false
}

#[test]
fn every_unsafe_says_why_it_is_sound() {
    let found: Vec<String> = sources()
        .iter()
        .flat_map(|(path, text)| {
            unsafe_without_reason(text)
                .into_iter()
                .map(move |line| format!("{path}:{line}"))
        })
        .collect();
    assert!(
        found.is_empty(),
        "`unsafe` without a `// SAFETY:` comment (or a `# Safety` section): {found:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// File size.

/// The most lines a source file may have.
const MAX_LINES: usize = 600;

/// Files allowed past [`MAX_LINES`], each with its reason.
const LONG_FILES: &[(&str, &str)] = &[
    (
        "crates/coro/src/greenlet.rs",
        "the Greenlet and its one state machine; its builder already lives in greenlet/",
    ),
    (
        "crates/iter-gen/src/generator.rs",
        "the generator is written once for both flavours (see ARCHITECTURE.md): one definition",
    ),
];

/// The files of `files` over `max` lines that `allowed` does not list.
pub(super) fn too_long(
    files: &[(String, String)],
    max: usize,
    allowed: &[(&str, &str)],
) -> Vec<String> {
    files
        .iter()
        .filter(|(path, text)| {
            text.lines().count() > max && !allowed.iter().any(|(a, _)| a == path)
        })
        .map(|(path, text)| format!("{path}: {} lines", text.lines().count()))
        .collect()
}

#[test]
fn no_source_file_is_over_600_lines() {
    let found = too_long(&sources(), MAX_LINES, LONG_FILES);
    assert!(
        found.is_empty(),
        "files over {MAX_LINES} lines: split them by job, or list one in LONG_FILES with its \
         reason: {found:#?}"
    );
    let all = sources();
    for (path, _) in LONG_FILES {
        assert!(
            all.iter()
                .any(|(p, t)| p == path && t.lines().count() > MAX_LINES),
            "{path} is listed in LONG_FILES but is gone or short now: take it off the list"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Where libc is called.

/// Where a crate may call libc: path prefixes, each with its reason.
const LIBC_CALLERS: &[(&str, &str)] = &[
    (
        "crates/process-ipc/src/sys/",
        "process-ipc's OS layer: every libc call of the crate goes through it",
    ),
    (
        "crates/coro/src/monkey/",
        "the symbol hooks forward to glibc's own functions",
    ),
    (
        "crates/timeline/",
        "its own crate (no sibling to go through): gettid, CLOCK_MONOTONIC and atexit",
    ),
    (
        "crates/threads-sync/src/registry.rs",
        "join_non_daemon_at_exit's atexit(3) hook: std has no exit hook",
    ),
];

/// The lines (1-based) of `text` that call a libc function (`libc::name(`, a lowercase name:
/// constants and types are data, not calls).
pub(super) fn libc_calls(text: &str) -> Vec<usize> {
    let code = code_only(text);
    code.match_indices("libc::")
        .filter(|(at, _)| {
            let before = code[..*at].chars().next_back().unwrap_or(' ');
            let name: String = code[at + "libc::".len()..]
                .chars()
                .take_while(|&c| is_ident(c))
                .collect();
            let after = code[at + "libc::".len() + name.len()..].trim_start();
            !is_ident(before)
                && name.starts_with(|c: char| c.is_ascii_lowercase())
                && after.starts_with('(')
        })
        .map(|(at, _)| code[..at].matches('\n').count() + 1)
        .collect()
}

/// The calls in `files` outside the `allowed` path prefixes.
pub(super) fn misplaced_libc_calls(
    files: &[(String, String)],
    allowed: &[(&str, &str)],
) -> Vec<String> {
    files
        .iter()
        .filter(|(path, _)| !allowed.iter().any(|(prefix, _)| path.starts_with(prefix)))
        .flat_map(|(path, text)| {
            libc_calls(text)
                .into_iter()
                .map(move |line| format!("{path}:{line}"))
        })
        .collect()
}

#[test]
fn libc_is_called_only_where_the_map_says() {
    let found = misplaced_libc_calls(&sources(), LIBC_CALLERS);
    assert!(
        found.is_empty(),
        "libc called outside the OS layers (process-ipc: add a wrapper to sys/): {found:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Performance figures.

/// Whether `line` states a measured speed: a time with a decimal point (`0.48 ms`, `2.6 ns`),
/// or any time beside a word of measuring (`measured`, `bench`, `faster`, `→`, `per item`...).
/// Design constants (`50 ms`, `a 250 µs look`) are whole numbers with no such word.
pub(super) fn states_a_speed(line: &str) -> bool {
    let units = ["ns", "µs", "us", "ms"];
    let bytes: Vec<char> = line.chars().collect();
    let mut timed = false;
    let mut decimal = false;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() && (i == 0 || !is_ident(bytes[i - 1])) {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == '.') {
                i += 1;
            }
            let number: String = bytes[start..i].iter().collect();
            let rest: String = bytes[i..].iter().collect();
            let rest = rest.strip_prefix(' ').unwrap_or(&rest);
            let unit = units.iter().find(|u| {
                rest.starts_with(*u) && !rest[u.len()..].starts_with(|c: char| is_ident(c))
            });
            if unit.is_some() {
                timed = true;
                decimal |= number.trim_end_matches('.').contains('.');
            }
            continue;
        }
        i += 1;
    }
    let lower = line.to_lowercase();
    let words = [
        "measured",
        "bench",
        "faster",
        "slower",
        "→",
        "->",
        " per item",
        " per call",
        " took ",
    ];
    timed && (decimal || words.iter().any(|w| lower.contains(w)))
}

/// The lines of ARCHITECTURE.md-like `text` (all of it) or of a source file's module header
/// (`//!` lines) that state a speed.
pub(super) fn speed_lines(text: &str, header_only: bool) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !header_only || l.trim_start().starts_with("//!"))
        .filter(|(_, l)| states_a_speed(l))
        .map(|(n, _)| n + 1)
        .collect()
}

#[test]
fn performance_figures_live_in_the_benches_and_the_ladder() {
    let root = crate::workspace_root();
    let mut found: Vec<String> = speed_lines(&read(&root.join("ARCHITECTURE.md")), false)
        .into_iter()
        .map(|n| format!("ARCHITECTURE.md:{n}"))
        .collect();
    for (path, text) in sources() {
        found.extend(
            speed_lines(&text, true)
                .into_iter()
                .map(|n| format!("{path}:{n}")),
        );
    }
    assert!(
        found.is_empty(),
        "measured figures go stale where they are copied: keep them in docs/ladder.md and the \
         benches, and link there: {found:#?}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsafe_without_a_reason_is_caught() {
        let text = "fn a() {\n    // SAFETY: no preconditions.\n    unsafe { f() };\n}\n\
                    fn b() {\n    let n =\n        unsafe { g() };\n}\n\
                    fn c() {\n    // SAFETY: the pointer is valid.\n    let n = h(\n        1,\n        \
                    unsafe { *p },\n    );\n}\n\
                    /// # Safety\n/// The caller checks.\npub unsafe fn d() {}\n\
                    // a comment that says nothing\nunsafe impl Send for X {}\n\
                    #[unsafe(no_mangle)]\npub extern \"C\" fn e() {}\n\
                    const S: &str = \"unsafe { }\";\n\
                    type F = unsafe extern \"C\" fn(i32) -> i32;\n\
                    impl Source for V {\n    unsafe fn take(&self) {}\n}\n\
                    impl V {\n    unsafe fn own(&self) {}\n}\n";
        assert_eq!(unsafe_without_reason(text), vec![7, 20, 29]);
    }

    #[test]
    fn a_long_file_is_caught_unless_listed() {
        let files = vec![
            ("a.rs".to_string(), "x\n".repeat(601)),
            ("b.rs".to_string(), "x\n".repeat(600)),
            ("c.rs".to_string(), "x\n".repeat(700)),
        ];
        let found = too_long(&files, 600, &[("c.rs", "a reason")]);
        assert_eq!(found, vec!["a.rs: 601 lines".to_string()]);
    }

    #[test]
    fn a_libc_call_outside_the_listed_modules_is_caught() {
        let files = vec![
            (
                "crates/p/src/sys/socket.rs".to_string(),
                "fn f() { unsafe { libc::close(3) }; }\n".to_string(),
            ),
            (
                "crates/p/src/queue.rs".to_string(),
                "// libc::close(3) in a comment\nconst K: i32 = libc::SIGKILL;\n\
                 fn g(t: libc::pid_t) {\n    unsafe { libc::kill(t, K) };\n}\n"
                    .to_string(),
            ),
        ];
        let found = misplaced_libc_calls(&files, &[("crates/p/src/sys/", "the OS layer")]);
        assert_eq!(found, vec!["crates/p/src/queue.rs:4".to_string()]);
    }

    #[test]
    fn a_measured_figure_is_caught_and_a_design_constant_is_not() {
        assert!(states_a_speed("spawn+join 0.48 ms against Spawn's 2.39 ms"));
        assert!(states_a_speed("it takes well under 1 ns per item"));
        assert!(states_a_speed("drain: 2.7 -> 2.0 ms"));
        assert!(!states_a_speed("a sleeper within 50 ms."));
        assert!(!states_a_speed(
            "looks for a short while (250 µs, yielding between looks)"
        ));
        assert!(!states_a_speed("Python 3.14 added it; 12 items"));
        let header =
            "//! Costs 2.6 ns a step.\n/// 3.5 ms in a doc comment of an item\nfn f() {}\n";
        assert_eq!(speed_lines(header, true), vec![1]);
    }
}
