//! The module graph the layer rules read, from the source text alone: comments and strings
//! blanked, test modules left out, each file's module path, the paths its code names (imports,
//! re-exports, inline modules), and the edges between modules they make.

use std::path::PathBuf;

use super::super::{read, rust_files};

/// Source text with comments and string literals blanked out (their lines kept), so that an
/// intra-doc link or a message that names `crate::x` is not taken for a use of it.
pub(in crate::tidy) fn code_only(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').unwrap_or(rest.len());
            i += end;
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").map_or(rest.len(), |e| e + 2);
            out.extend(rest[..end].chars().filter(|&c| c == '\n'));
            i += end;
        } else if rest.starts_with("r#\"") || rest.starts_with("r\"") {
            let hashes = rest[1..].chars().take_while(|&c| c == '#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let body = &rest[2 + hashes..];
            let end = body
                .find(&close)
                .map_or(rest.len(), |e| 2 + hashes + e + close.len());
            out.extend(rest[..end].chars().filter(|&c| c == '\n'));
            out.push_str("\"\"");
            i += end;
        } else if rest.starts_with('"') {
            let mut j = 1;
            let b = rest.as_bytes();
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(rest.len());
            out.extend(rest[..end].chars().filter(|&c| c == '\n'));
            out.push_str("\"\"");
            i += end;
        } else {
            let c = rest.chars().next().expect("not at the end");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

pub(in crate::tidy) fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The module path a source file defines, from its path under `src/`.
pub(in crate::tidy) fn module_of(rel: &str) -> Vec<String> {
    let rel = rel.strip_suffix(".rs").unwrap_or(rel);
    let mut parts: Vec<String> = rel.split('/').map(str::to_string).collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("lib" | "main" | "mod")
    ) {
        parts.pop();
    }
    parts
}

/// The paths that follow `at` in `code`: `a::b::{c, d::e}` gives `[a, b, c]` and `[a, b, d, e]`.
fn paths_from(code: &str, at: usize) -> Vec<Vec<String>> {
    let mut prefix = Vec::new();
    let mut i = at;
    let b = code.as_bytes();
    loop {
        let start = i;
        while i < b.len() && is_ident(b[i] as char) {
            i += 1;
        }
        if i > start {
            prefix.push(code[start..i].to_string());
        }
        if code[i..].starts_with("::") {
            i += 2;
            while i < b.len() && (b[i] as char).is_whitespace() {
                i += 1;
            }
            if i < b.len() && b[i] == b'{' {
                // A group: split its items at top-level commas.
                let mut depth = 0;
                let mut item_start = i + 1;
                let mut out = Vec::new();
                for (j, c) in code[i..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' | ',' if depth == 1 => {
                            for mut tail in paths_from(code[i + item_start - i..i + j].trim(), 0) {
                                let mut full = prefix.clone();
                                full.append(&mut tail);
                                out.push(full);
                            }
                            item_start = i + j + 1;
                            if c == '}' {
                                return out;
                            }
                        }
                        '}' => depth -= 1,
                        _ => {}
                    }
                }
                return out;
            }
            continue;
        }
        return vec![prefix];
    }
}

/// `code` with the bodies of `#[cfg(test)]` modules blanked: tests may use any layer.
fn without_test_modules(code: &str) -> String {
    let mut out = code.to_string();
    let mut from = 0;
    while let Some(found) = out[from..].find("#[cfg(test)]") {
        let attr = from + found;
        let after = attr + "#[cfg(test)]".len();
        let rest = out[after..].trim_start();
        let is_mod = rest.starts_with("mod ") || rest.starts_with("pub(crate) mod ");
        let open = out[after..].find('{').map(|o| after + o);
        let (true, Some(open)) = (is_mod, open) else {
            from = after;
            continue;
        };
        let mut depth = 0usize;
        let mut close = out.len();
        for (i, c) in out[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = open + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let blank: String = out[open + 1..close]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        out.replace_range(open + 1..close, &blank);
        from = close;
    }
    out
}

/// The modules of one crate: file modules, inline modules, their code, and their imports.
struct Modules {
    /// The module each file defines.
    files: Vec<Vec<String>>,
    /// Inline modules (`mod tests { … }`): full path, and the file module they belong to.
    inline: Vec<(Vec<String>, Vec<String>)>,
    /// Code only (comments and strings blanked), per file.
    codes: Vec<String>,
    /// Per file: (byte offset, inline module path inside the file from there on).
    scopes: Vec<Vec<(usize, Vec<String>)>>,
    /// Per file module: (re-exported name, the file module it comes from).
    imports: Vec<Vec<(String, Vec<String>)>>,
}

impl Modules {
    fn new(sources: &[(String, String)]) -> Modules {
        let files: Vec<Vec<String>> = sources.iter().map(|(p, _)| module_of(p)).collect();
        let codes: Vec<String> = sources
            .iter()
            .map(|(_, t)| without_test_modules(&code_only(t)))
            .collect();
        let mut inline = Vec::new();
        let mut scopes = Vec::new();
        for (k, code) in codes.iter().enumerate() {
            let (marks, found) = inline_modules(code);
            for path in found {
                let mut full = files[k].clone();
                full.extend(path);
                inline.push((full, files[k].clone()));
            }
            scopes.push(marks);
        }
        let mut modules = Modules {
            imports: vec![Vec::new(); files.len()],
            files,
            inline,
            codes,
            scopes,
        };
        // Imports can name re-exports of re-exports: settle them in a few rounds.
        for _ in 0..3 {
            let mut imports = vec![Vec::new(); modules.files.len()];
            for (k, code) in modules.codes.iter().enumerate() {
                for (at, _) in code.match_indices("use ") {
                    if at > 0 && is_ident(code[..at].chars().next_back().unwrap_or(' ')) {
                        continue;
                    }
                    // Only a `pub` use (any visibility) makes a name others can reach here.
                    let line_start = code[..at].rfind('\n').map_or(0, |n| n + 1);
                    if !code[line_start..at].trim_start().starts_with("pub") {
                        continue;
                    }
                    let current = modules.scope_at(k, at);
                    for path in paths_from(code, at + "use ".len()) {
                        let Some(name) = path.last().filter(|n| *n != "self") else {
                            continue;
                        };
                        if let Some(target) = modules.resolve(&current, &path) {
                            imports[k].push((name.clone(), target));
                        }
                    }
                }
            }
            modules.imports = imports;
        }
        modules
    }

    fn is_module(&self, path: &[String]) -> bool {
        self.files.iter().any(|m| m == path) || self.inline.iter().any(|(i, _)| i == path)
    }

    /// The file module that holds `path` (itself, or the file of an inline module).
    fn file_of(&self, path: &[String]) -> Vec<String> {
        if self.files.iter().any(|m| m == path) {
            return path.to_vec();
        }
        self.inline
            .iter()
            .find(|(i, _)| i == path)
            .map_or_else(|| path.to_vec(), |(_, f)| f.clone())
    }

    /// The module (file plus inline modules) at byte `at` of file `k`.
    fn scope_at(&self, k: usize, at: usize) -> Vec<String> {
        let mut current = self.files[k].clone();
        if let Some((_, inner)) = self.scopes[k].iter().rev().find(|(m, _)| *m <= at) {
            current.extend(inner.iter().cloned());
        }
        current
    }

    /// The file module a path written in module `current` leads to, if it names one of ours.
    fn resolve(&self, current: &[String], path: &[String]) -> Option<Vec<String>> {
        let mut segs = path;
        let mut at: Vec<String> = match segs.first().map(String::as_str) {
            Some("crate") => {
                segs = &segs[1..];
                Vec::new()
            }
            Some("self") => {
                segs = &segs[1..];
                current.to_vec()
            }
            Some("super") => {
                let mut up = current.to_vec();
                while segs.first().is_some_and(|s| s == "super") {
                    up.pop();
                    segs = &segs[1..];
                }
                up
            }
            Some(first) => {
                let mut child = current.to_vec();
                child.push(first.to_string());
                if !self.is_module(&child) {
                    return None;
                }
                current.to_vec()
            }
            None => return None,
        };
        for seg in segs {
            let mut next = at.clone();
            next.push(seg.clone());
            if self.is_module(&next) {
                at = next;
                continue;
            }
            // An item this module imports (a re-export, say) leads to where it comes from.
            let file = self.file_of(&at);
            if let Some(k) = self.files.iter().position(|m| *m == file) {
                if let Some((_, from)) = self.imports[k].iter().find(|(n, _)| n == seg) {
                    return Some(from.clone());
                }
            }
            break;
        }
        Some(self.file_of(&at))
    }
}

/// The inline modules of one file's code: scope marks (offset, inline path from there on) and
/// every inline module path found.
#[allow(clippy::type_complexity)]
fn inline_modules(code: &str) -> (Vec<(usize, Vec<String>)>, Vec<Vec<String>>) {
    let mut stack: Vec<(String, i32)> = Vec::new();
    let mut depth = 0i32;
    let mut marks = vec![(0usize, Vec::new())];
    let mut found = Vec::new();
    let mut pending: Option<String> = None;
    let mut prev_mod = false;
    let mut start = 0;
    for (at, sep) in code.match_indices(|c: char| !is_ident(c)) {
        let word = &code[start..at];
        start = at + sep.len();
        if !word.is_empty() {
            if prev_mod {
                pending = Some(word.to_string());
            }
            prev_mod = word == "mod";
        }
        match sep {
            "{" => {
                depth += 1;
                if let Some(name) = pending.take() {
                    stack.push((name, depth));
                    let path: Vec<String> = stack.iter().map(|(n, _)| n.clone()).collect();
                    found.push(path.clone());
                    marks.push((at, path));
                }
                prev_mod = false;
            }
            "}" => {
                if stack.last().is_some_and(|&(_, d)| d == depth) {
                    stack.pop();
                    marks.push((at, stack.iter().map(|(n, _)| n.clone()).collect()));
                }
                depth -= 1;
                prev_mod = false;
            }
            s if s.trim().is_empty() => {}
            _ => {
                pending = None;
                prev_mod = false;
            }
        }
    }
    (marks, found)
}

/// True if one module contains the other (or they are the same).
fn nested(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Every module-to-module edge of one crate: `(from, to)` between file modules. `sources` are
/// (path under `src/`, text). Paths `crate::…`, `super::…`, `self::…` and paths that start
/// with a child module's name count, in `use` lines and in code; an inline module
/// (`mod tests { … }`) belongs to its file; a name a module imports (a re-export) leads to the
/// module it comes from, so siblings that use each other through their parent are edges
/// between the siblings. A module and its own ancestors are one unit, not layers (a child sees
/// its parent's private items by design): no edge between them.
pub(in crate::tidy) fn module_edges(sources: &[(String, String)]) -> Vec<(String, String)> {
    let modules = Modules::new(sources);
    let mut edges = Vec::new();
    for (k, code) in modules.codes.iter().enumerate() {
        let b = code.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let boundary = i == 0 || !(is_ident(b[i - 1] as char) || b[i - 1] == b':');
            if !boundary || !is_ident(b[i] as char) {
                i += 1;
                continue;
            }
            let end = i + code[i..]
                .find(|c: char| !is_ident(c))
                .unwrap_or(code.len() - i);
            if !code[end..].starts_with("::") {
                i = end.max(i + 1);
                continue;
            }
            let current = modules.scope_at(k, i);
            for path in paths_from(code, i) {
                let Some(to) = modules.resolve(&current, &path) else {
                    continue;
                };
                let from = &modules.files[k];
                if nested(from, &to) {
                    continue;
                }
                let edge = (from.join("::"), to.join("::"));
                if !edges.contains(&edge) {
                    edges.push(edge);
                }
            }
            i = end;
        }
    }
    edges
}

/// Uses, outside the crate root, of a name the root re-exports (`crate::Queue` for
/// `crate::queue::Queue`): (file module, name).
pub(in crate::tidy) fn root_reexport_uses(sources: &[(String, String)]) -> Vec<(String, String)> {
    let modules = Modules::new(sources);
    let Some(root) = modules.files.iter().position(|m| m.is_empty()) else {
        return Vec::new();
    };
    let reexported: Vec<&String> = modules.imports[root].iter().map(|(n, _)| n).collect();
    let mut found = Vec::new();
    for (k, code) in modules.codes.iter().enumerate() {
        if k == root {
            continue;
        }
        for (at, _) in code.match_indices("crate::") {
            if at > 0 && is_ident(code[..at].chars().next_back().unwrap_or(' ')) {
                continue;
            }
            let name: String = code[at + "crate::".len()..]
                .chars()
                .take_while(|&c| is_ident(c))
                .collect();
            if !modules.is_module(std::slice::from_ref(&name)) && reexported.contains(&&name) {
                let entry = (modules.files[k].join("::"), name);
                if !found.contains(&entry) {
                    found.push(entry);
                }
            }
        }
    }
    found
}

/// The source files of one crate: (path under `src/`, text), sorted by path.
pub(in crate::tidy) fn crate_sources(src: &std::path::Path) -> Vec<(String, String)> {
    let mut paths = Vec::new();
    rust_files(src, &mut paths);
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let rel = p
                .strip_prefix(src)
                .expect("under src")
                .display()
                .to_string();
            (rel, read(p))
        })
        .collect()
}

/// The crates under `crates/`: (directory name, package name, manifest text).
pub(in crate::tidy) fn member_crates() -> Vec<(PathBuf, String, String)> {
    let root = crate::workspace_root();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root.join("crates"))
        .expect("crates/ exists")
        .flatten()
    {
        let manifest = entry.path().join("Cargo.toml");
        if !manifest.exists() {
            continue;
        }
        let text = read(&manifest);
        let name = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("name = "))
            .map(|n| n.trim_matches('"').to_string())
            .expect("a package name");
        out.push((entry.path(), name, text));
    }
    out
}
