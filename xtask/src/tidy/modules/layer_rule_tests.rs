//! The module graph's own tests: planted cycles are found, comments and tests are not edges.

use super::*;

fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(p, t)| (p.to_string(), t.to_string()))
        .collect()
}

#[test]
fn a_cycle_through_crate_paths_is_found() {
    let crate_ = files(&[
        ("lib.rs", "mod a;\nmod b;\nmod c;\npub use a::Thing;\n"),
        ("a.rs", "use crate::b::helper;\npub struct Thing;\n"),
        ("b.rs", "pub fn helper() { crate::c::run() }\n"),
        ("c.rs", "pub fn run() { let _ = crate::Thing; }\n"),
    ]);
    let cycle = find_cycle(&module_edges(&crate_)).expect("a -> b -> c -> a");
    assert_eq!(cycle.len(), 4, "{cycle:?}");
    assert_eq!(cycle.first(), cycle.last());
}

#[test]
fn comments_strings_and_test_modules_do_not_count() {
    let crate_ = files(&[
        ("lib.rs", "mod a;\nmod b;\n"),
        ("a.rs", "use crate::b::x;\n"),
        (
            "b.rs",
            "//! See [`A`](crate::a::A).\n/* crate::a */\nconst S: &str = \"crate::a::A\";\n\
             #[cfg(test)]\nmod tests {\n    use super::*;\n    fn f() { self::g(); crate::a::y(); }\n}\n",
        ),
    ]);
    assert_eq!(module_edges(&crate_), vec![("a".into(), "b".into())]);
    assert!(find_cycle(&module_edges(&crate_)).is_none());
}

#[test]
fn submodules_may_use_each_other_through_their_parent_without_a_cycle() {
    let ok = files(&[
        ("lib.rs", "mod pool;\n"),
        (
            "pool/mod.rs",
            "mod schedule;\nmod worker;\nuse worker::run;\npub use schedule::Plan;\n",
        ),
        ("pool/schedule.rs", "pub struct Plan;\n"),
        (
            "pool/worker.rs",
            "use super::schedule::Plan;\npub fn run() {}\n",
        ),
    ]);
    let edges = module_edges(&ok);
    assert!(
        edges.contains(&("pool::worker".into(), "pool::schedule".into())),
        "{edges:?}"
    );
    assert!(find_cycle(&edges).is_none(), "{edges:?}");
    // The same layout where the schedule reaches back into the worker, through the parent.
    let bad = files(&[
        ("lib.rs", "mod pool;\n"),
        ("pool.rs", "mod schedule;\nmod worker;\n"),
        (
            "pool/schedule.rs",
            "use super::{worker::run, Other};\npub struct Plan;\n",
        ),
        (
            "pool/worker.rs",
            "use super::schedule::Plan;\npub fn run() {}\n",
        ),
    ]);
    let cycle = find_cycle(&module_edges(&bad)).expect("schedule <-> worker");
    assert!(cycle.contains(&"pool::worker".to_string()), "{cycle:?}");
    // A child that uses its parent's own items while the parent uses the child: one unit.
    let up = files(&[
        ("lib.rs", "mod pool;\n"),
        (
            "pool.rs",
            "mod worker;\npub struct Shared;\nfn f() { worker::run(); }\n",
        ),
        (
            "pool/worker.rs",
            "pub fn run() { let _ = super::Shared; }\n",
        ),
    ]);
    assert!(module_edges(&up).is_empty());
    // Siblings that reach each other through names their parent re-exports: a cycle.
    let via_parent = files(&[
        ("lib.rs", "mod pool;\n"),
        (
            "pool/mod.rs",
            "mod a;\nmod b;\npub use a::A;\npub(crate) use b::B;\n",
        ),
        ("pool/a.rs", "use super::B;\npub struct A;\n"),
        ("pool/b.rs", "pub struct B(super::A);\n"),
    ]);
    let edges = module_edges(&via_parent);
    assert!(
        edges.contains(&("pool::a".into(), "pool::b".into())),
        "{edges:?}"
    );
    assert!(find_cycle(&edges).is_some(), "{edges:?}");
}

#[test]
fn sibling_dependencies_are_read_from_every_table() {
    let manifest = "[package]\nname = \"a\"\n\n[dependencies]\nserde.workspace = true\n\
                    b = { path = \"../b\" }\n\n[dev-dependencies]\nmine = { package = \"c\", \
                    path = \"../c\" }\n\n[target.'cfg(unix)'.dependencies]\nd = \"1\"\n\n\
                    [dev-dependencies.e]\npath = \"../e\"\n";
    let names = dependency_names(manifest);
    for dep in ["serde", "b", "c", "d", "e"] {
        assert!(
            names.contains(&dep.to_string()),
            "{dep} missing from {names:?}"
        );
    }
    assert!(!names.contains(&"a".to_string()), "{names:?}");
}
