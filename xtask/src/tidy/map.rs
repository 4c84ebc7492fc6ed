//! ARCHITECTURE.md holds the map, and these rules hold the tree to it: each crate's table of
//! allowed module uses (its layer order, "shared uses only sys", "error is a leaf"), and each
//! crate's code map, which must name every source file and no file that is gone.

use std::collections::{BTreeMap, BTreeSet};

use super::modules::{crate_sources, member_crates, module_edges, root_reexport_uses};
use super::read;

/// The part of ARCHITECTURE.md about one crate: from its `### \`crates/<dir>\`` heading to the
/// next heading of that level or above.
pub(super) fn crate_section<'a>(architecture: &'a str, dir: &str) -> Option<&'a str> {
    let heading = format!("### `crates/{dir}`");
    let start = architecture.find(&heading)?;
    let body = &architecture[start + heading.len()..];
    let end = body
        .match_indices("\n#")
        .find(|(at, _)| {
            let rest = &body[at + 1..];
            rest.starts_with("## ") || rest.starts_with("### ")
        })
        .map_or(body.len(), |(at, _)| at);
    Some(&body[..end])
}

/// The names in backticks in `text`, in order.
fn ticked(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The allowed-uses table of a section: module -> the modules it may use. The table is the one
/// under a header row `| module | may use |`; each row names one top-level module (in
/// backticks) and, in its second cell, the modules it may use (in backticks; none: a leaf).
pub(super) fn allowed_uses(section: &str) -> Option<BTreeMap<String, BTreeSet<String>>> {
    let at = section.find("| module | may use |")?;
    let mut table = BTreeMap::new();
    for line in section[at..].lines().skip(2) {
        let line = line.trim();
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').collect();
        let (Some(module), Some(uses)) = (cells.first(), cells.get(1)) else {
            continue;
        };
        for name in ticked(module) {
            table.insert(name, ticked(uses).into_iter().collect());
        }
    }
    Some(table)
}

/// The top-level module a module path (`a::b::c`) belongs to; `""` for the crate root.
fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or("")
}

/// The uses between top-level modules that `table` does not allow, and the top-level modules it
/// has no row for. The crate root (`lib.rs`) may use everything: it declares and re-exports.
pub(super) fn disallowed_uses(
    sources: &[(String, String)],
    table: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let mut found = BTreeSet::new();
    for (path, _) in sources {
        let module = super::modules::module_of(path);
        if let Some(first) = module.first() {
            if !table.contains_key(first) {
                found.insert(format!("`{first}` has no row in the table"));
            }
        }
    }
    for (from, to) in module_edges(sources) {
        let (from, to) = (top(&from), top(&to));
        if from.is_empty() || to.is_empty() || from == to {
            continue;
        }
        if table.get(from).is_some_and(|uses| !uses.contains(to)) {
            found.insert(format!(
                "`{from}` uses `{to}`, which its row does not allow"
            ));
        }
    }
    found.into_iter().collect()
}

#[test]
fn every_crate_keeps_to_its_table_of_allowed_uses() {
    let root = crate::workspace_root();
    let architecture = read(&root.join("ARCHITECTURE.md"));
    let mut found = Vec::new();
    for (dir, name, _) in member_crates() {
        let dir_name = dir
            .file_name()
            .expect("a crate directory")
            .to_string_lossy();
        let Some(section) = crate_section(&architecture, &dir_name) else {
            found.push(format!(
                "{name}: no section ### `crates/{dir_name}` in ARCHITECTURE.md"
            ));
            continue;
        };
        let Some(table) = allowed_uses(section) else {
            found.push(format!(
                "{name}: no `| module | may use |` table in its section"
            ));
            continue;
        };
        for problem in disallowed_uses(&crate_sources(&dir.join("src")), &table) {
            found.push(format!("{name}: {problem}"));
        }
    }
    assert!(
        found.is_empty(),
        "module uses against ARCHITECTURE.md's tables (change the code, or the table through \
         an issue): {found:#?}"
    );
}

/// Uses through the crate root still to change: (crate, module prefix, name, why not yet).
const ROOT_USES_PENDING: &[(&str, &str, &str, &str)] = &[
    (
        "process-ipc",
        "manager",
        "Wire",
        "manager/ was another branch's while #20 landed",
    ),
    (
        "process-ipc",
        "pool",
        "Wire",
        "pool/ was another branch's while #20 landed",
    ),
];

/// Inside a crate a module names the module that defines what it uses; the root's re-exports
/// are the crate's public face, and a path through them hides the real dependency.
#[test]
fn modules_name_what_they_use_by_its_defining_module() {
    let mut found = Vec::new();
    for (dir, name, _) in member_crates() {
        for (module, item) in root_reexport_uses(&crate_sources(&dir.join("src"))) {
            let pending = ROOT_USES_PENDING
                .iter()
                .any(|(c, prefix, i, _)| *c == name && module.starts_with(prefix) && *i == item);
            if !pending {
                found.push(format!("{name}: `{module}` uses `crate::{item}`"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "uses through the crate root's re-exports (name the defining module instead): \
         {found:#?}"
    );
}

/// The files a section's code map names: every backticked `….rs` path after a line that starts
/// with `Files`, up to the next blank line.
pub(super) fn code_map(section: &str) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    let mut inside = false;
    for line in section.lines() {
        if line.starts_with("Files") {
            inside = true;
        } else if line.trim().is_empty() {
            inside = false;
        }
        if inside {
            named.extend(ticked(line).into_iter().filter(|t| t.ends_with(".rs")));
        }
    }
    named
}

/// What differs between a code map and the tree: files the map does not name, and names of
/// files that are not there.
pub(super) fn map_drift(named: &BTreeSet<String>, files: &BTreeSet<String>) -> Vec<String> {
    let mut out: Vec<String> = files
        .difference(named)
        .map(|f| format!("`{f}` is not in the code map"))
        .collect();
    out.extend(
        named
            .difference(files)
            .map(|f| format!("the code map names `{f}`, which is gone")),
    );
    out
}

#[test]
fn every_code_map_matches_the_tree() {
    let root = crate::workspace_root();
    let architecture = read(&root.join("ARCHITECTURE.md"));
    let mut found = Vec::new();
    for (dir, name, _) in member_crates() {
        let dir_name = dir
            .file_name()
            .expect("a crate directory")
            .to_string_lossy();
        let section = crate_section(&architecture, &dir_name).unwrap_or("");
        let files: BTreeSet<String> = crate_sources(&dir.join("src"))
            .into_iter()
            .map(|(path, _)| path)
            .collect();
        for problem in map_drift(&code_map(section), &files) {
            found.push(format!("{name}: {problem}"));
        }
    }
    assert!(
        found.is_empty(),
        "ARCHITECTURE.md's code maps (the `Files` lists) against the tree: {found:#?}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "# A\n\n### `crates/demo`\nText.\n\n| module | may use |\n| --- | --- |\n\
                       | `error` | |\n| `sys` | `error` |\n| `shared` | `sys`, `error` |\n\
                       | `queue` | `shared`, `sys`, `error` |\n\nFiles: `lib.rs`, `error.rs`,\n\
                       `sys.rs`, `queue.rs`.\n\n### `crates/other`\n| module | may use |\n";

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn the_table_is_read_from_the_crates_own_section() {
        let section = crate_section(DOC, "demo").unwrap();
        assert!(!section.contains("crates/other"), "{section}");
        let table = allowed_uses(section).unwrap();
        assert!(table["error"].is_empty());
        assert_eq!(
            table["shared"],
            ["sys".to_string(), "error".to_string()].into()
        );
    }

    #[test]
    fn a_use_the_table_does_not_allow_is_caught() {
        let table = allowed_uses(crate_section(DOC, "demo").unwrap()).unwrap();
        let ok = files(&[
            ("lib.rs", "mod error;\nmod sys;\nmod shared;\nmod queue;\n"),
            ("error.rs", "pub struct E;\n"),
            ("sys.rs", "use crate::error::E;\n"),
            ("shared/mod.rs", "mod lock;\nuse crate::sys::x;\n"),
            ("shared/lock.rs", "use super::y;\n"),
            ("queue.rs", "use crate::shared::lock::L;\n"),
        ]);
        assert_eq!(disallowed_uses(&ok, &table), Vec::<String>::new());
        // error is a leaf; shared uses only sys (and error); a module without a row.
        let bad = files(&[
            (
                "lib.rs",
                "mod error;\nmod sys;\nmod shared;\nmod queue;\nmod pool;\n",
            ),
            ("error.rs", "use crate::sys::x;\n"),
            ("sys.rs", ""),
            ("shared/mod.rs", "use crate::queue::Q;\n"),
            ("queue.rs", ""),
            ("pool.rs", ""),
        ]);
        let found = disallowed_uses(&bad, &table);
        assert!(
            found.iter().any(|f| f.contains("`error` uses `sys`")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|f| f.contains("`shared` uses `queue`")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|f| f.contains("`pool` has no row")),
            "{found:?}"
        );
    }

    #[test]
    fn a_use_through_the_crate_roots_re_export_is_caught() {
        let crate_ = files(&[
            ("lib.rs", "mod queue;\nmod pool;\npub use queue::Queue;\n"),
            ("queue.rs", "pub struct Queue;\n"),
            (
                "pool.rs",
                "struct P(crate::queue::Queue);\nfn f() { let _ = crate::Queue; }\n",
            ),
        ]);
        assert_eq!(
            root_reexport_uses(&crate_),
            vec![("pool".to_string(), "Queue".to_string())]
        );
    }

    #[test]
    fn a_file_missing_from_the_map_or_gone_from_the_tree_is_caught() {
        let named = code_map(crate_section(DOC, "demo").unwrap());
        let tree: BTreeSet<String> = ["lib.rs", "error.rs", "sys.rs", "queue.rs"]
            .map(String::from)
            .into();
        assert!(map_drift(&named, &tree).is_empty(), "{named:?}");
        let mut grown = tree.clone();
        grown.insert("pool/launch.rs".into());
        grown.remove("sys.rs");
        let drift = map_drift(&named, &grown);
        assert!(
            drift.iter().any(|d| d.contains("`pool/launch.rs` is not")),
            "{drift:?}"
        );
        assert!(
            drift.iter().any(|d| d.contains("`sys.rs`, which is gone")),
            "{drift:?}"
        );
    }
}

/// Prints each crate's uses between top-level modules as table rows, for writing a table by
/// hand: `cargo test -p xtask -- --ignored dump_top_level_uses --nocapture`.
#[test]
#[ignore]
fn dump_top_level_uses() {
    for (dir, name, _) in member_crates() {
        let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let sources = crate_sources(&dir.join("src"));
        for (path, _) in &sources {
            if let Some(first) = super::modules::module_of(path).first() {
                uses.entry(first.clone()).or_default();
            }
        }
        for (from, to) in module_edges(&sources) {
            let (from, to) = (top(&from).to_string(), top(&to).to_string());
            if !from.is_empty() && !to.is_empty() && from != to {
                uses.entry(from).or_default().insert(to);
            }
        }
        println!("== {name}");
        for (m, u) in uses {
            let list: Vec<String> = u.iter().map(|x| format!("`{x}`")).collect();
            println!("| `{m}` | {} |", list.join(", "));
        }
    }
}
