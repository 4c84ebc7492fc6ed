//! Layers: no module cycle inside a crate, no crate under crates/ depending on a sibling. The
//! module graph these rules read is `graph`'s.

mod graph;

pub(super) use graph::{
    code_only, crate_sources, is_ident, member_crates, module_edges, module_of, root_reexport_uses,
};

/// A cycle in `edges`, as the list of modules around it, if there is one.
fn find_cycle(edges: &[(String, String)]) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &[(String, String)],
        path: &mut Vec<String>,
        done: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.iter().any(|n| n == node) {
            return None;
        }
        path.push(node.to_string());
        for (_, to) in edges.iter().filter(|(f, _)| f == node) {
            if let Some(cycle) = visit(to, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.push(node.to_string());
        None
    }
    let mut done = Vec::new();
    edges
        .iter()
        .find_map(|(from, _)| visit(from, edges, &mut Vec::new(), &mut done))
}

fn display(module: &str) -> &str {
    if module.is_empty() { "crate" } else { module }
}

#[test]
fn no_module_cycle_inside_any_crate() {
    let mut found = Vec::new();
    let mut checked = 0;
    for (dir, name, _) in member_crates() {
        let edges = module_edges(&crate_sources(&dir.join("src")));
        checked += edges.len();
        if let Some(cycle) = find_cycle(&edges) {
            let cycle: Vec<&str> = cycle.iter().map(|m| display(m)).collect();
            found.push(format!("{name}: {}", cycle.join(" -> ")));
        }
    }
    assert!(
        checked > 10,
        "the walk found too few module uses ({checked})"
    );
    assert!(
        found.is_empty(),
        "module cycles (a module may use only modules below it): {found:#?}"
    );
}

/// Dependency names in every dependency table of a manifest (`[dependencies]`,
/// `[dev-dependencies]`, `[build-dependencies]`, and their `[target.….…]` forms).
fn dependency_names(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_deps = false;
    let mut table_dep: Option<String> = None;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            let header = line.trim_matches(|c| c == '[' || c == ']');
            let kinds = ["dependencies", "dev-dependencies", "build-dependencies"];
            in_deps = kinds
                .iter()
                .any(|k| header == *k || header.ends_with(&format!(".{k}")));
            // `[dependencies.foo]`
            table_dep = kinds.iter().find_map(|k| {
                header
                    .split_once(&format!("{k}."))
                    .map(|(_, n)| n.to_string())
            });
            if let Some(dep) = &table_dep {
                names.push(dep.clone());
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(dep) = &table_dep {
            if let Some(p) = line.strip_prefix("package") {
                let p = p.trim_start_matches([' ', '=']).trim_matches('"');
                names.push(p.to_string());
            }
            let _ = dep;
            continue;
        }
        if in_deps {
            if let Some((key, value)) = line.split_once('=') {
                let key = key.trim().split('.').next().unwrap_or("").trim_matches('"');
                names.push(key.to_string());
                if let Some(at) = value.find("package") {
                    let rest = value[at + "package".len()..].trim_start_matches([' ', '=']);
                    if let Some(p) = rest.split('"').nth(1) {
                        names.push(p.to_string());
                    }
                }
            }
        }
    }
    names
}

/// Crates under `crates/` that are no chapter but a tool every chapter may use behind an
/// optional feature: `timeline` records the `trace` feature's events. They depend on no
/// sibling themselves.
const SHARED_TOOLS: &[&str] = &["timeline"];

#[test]
fn no_crate_depends_on_a_sibling() {
    let crates = member_crates();
    assert!(crates.len() >= 2, "too few crates found");
    let mut found = Vec::new();
    for (_, name, manifest) in &crates {
        for dep in dependency_names(manifest) {
            let allowed = SHARED_TOOLS.contains(&dep.as_str())
                && !SHARED_TOOLS.contains(&name.as_str())
                && manifest
                    .lines()
                    .any(|l| l.starts_with(&format!("{dep} = ")) && l.contains("optional = true"));
            if dep != *name && !allowed && crates.iter().any(|(_, sibling, _)| *sibling == dep) {
                found.push(format!("{name} -> {dep}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "crates under crates/ must not depend on each other (take the one you need): {found:?}"
    );
}

#[cfg(test)]
mod layer_rule_tests;
