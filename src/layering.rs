//! Tidy test of the crate's layers, in the style of rust-analyzer's `tidy` tests: it reads
//! every file under `src/` and checks, from the `crate::…` paths they name (and `super::…`
//! in a top-level module's own file), that
//!
//! - the engine never names a front end (`crate::cli`, `crate::serve`);
//! - the front ends never name each other;
//! - the top-level modules form no cycle.
//!
//! Comments are ignored; binaries (`src/bin/`, `src/main.rs`) and the crate root are not
//! modules of the graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules of the engine: they serve every front end and know none.
const ENGINE: &[&str] = &[
    "runner",
    "approval",
    "batch",
    "case",
    "browser",
    "channel",
    "db",
    "evidence",
    "playbook",
    "policy",
    "queue",
    "replay",
    "rollback",
    "schedule",
    "write",
    "url_pattern",
    "sample",
    "stats",
    "pause",
    "instance",
    "users",
    "display",
    "witness",
];

/// Front ends: each depends on the engine only.
const FRONT_ENDS: &[&str] = &["cli", "serve"];

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to, and whether the file is that module's own file
/// (where `super::` is the crate root). `None` for the crate root, binaries and this test.
fn module_of(src: &Path, file: &Path) -> Option<(String, bool)> {
    let rel = file.strip_prefix(src).ok()?;
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    match parts.as_slice() {
        [one] if one == "lib.rs" || one == "main.rs" || one == "layering.rs" => None,
        [first, ..] if first == "bin" => None,
        [one] => Some((one.trim_end_matches(".rs").to_owned(), true)),
        [dir, file] => Some((dir.clone(), file == "mod.rs")),
        [dir, ..] => Some((dir.clone(), false)),
        [] => None,
    }
}

/// The text without `//` comments (doc comments included); strings are kept whole.
fn strip_comments(text: &str) -> String {
    let mut out = Vec::new();
    for line in text.lines() {
        let bytes = line.as_bytes();
        let (mut in_string, mut cut) = (false, line.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' if in_string => i += 1,
                b'"' if !(i > 0 && bytes[i - 1] == b'\'' && bytes.get(i + 1) == Some(&b'\'')) => {
                    in_string = !in_string
                }
                b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => {
                    cut = i;
                    break;
                }
                _ => {}
            }
            i += 1;
        }
        out.push(&line[..cut]);
    }
    out.join("\n")
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules named after each `prefix` (`crate::`, `super::`): `crate::a::b`
/// gives `a`, `crate::{a, b::c}` gives `a` and `b`.
fn referenced(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group: split at commas outside nested braces.
            let mut depth = 0usize;
            let mut start = 0usize;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        out.insert(ident_at(group[start..j].trim_start()).to_owned());
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(ident_at(group[start..j].trim_start()).to_owned());
                        start = j + 1;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident_at(rest).to_owned());
        }
    }
    out.retain(|m| !m.is_empty() && m != "self");
    out
}

/// module → (referenced module → files that reference it).
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 10, "found no sources under {}", src.display());
    let mut g = Graph::new();
    for file in files {
        let Some((module, own_file)) = module_of(&src, &file) else {
            continue;
        };
        let text = strip_comments(&std::fs::read_to_string(&file).unwrap_or_default());
        let mut refs = referenced(&text, "crate::");
        if own_file {
            refs.extend(referenced(&text, "super::"));
        }
        let edges = g.entry(module.clone()).or_default();
        let rel = file
            .strip_prefix(&src)
            .unwrap_or(&file)
            .display()
            .to_string();
        for r in refs.into_iter().filter(|r| *r != module) {
            edges.entry(r).or_default().insert(rel.clone());
        }
    }
    g
}

/// Every elementary cycle found by a depth-first search (one per back edge), as paths.
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    fn visit(
        g: &Graph,
        node: &str,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        out: &mut Vec<Vec<String>>,
    ) {
        stack.push(node.to_owned());
        for next in g.get(node).into_iter().flat_map(|e| e.keys()) {
            if let Some(pos) = stack.iter().position(|s| s == next) {
                let mut cycle = stack[pos..].to_vec();
                cycle.push(next.clone());
                out.push(cycle);
            } else if !done.contains(next) {
                visit(g, next, stack, done, out);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
    }
    let mut out = Vec::new();
    let mut done = BTreeSet::new();
    for node in g.keys() {
        if !done.contains(node) {
            visit(g, node, &mut Vec::new(), &mut done, &mut out);
        }
    }
    out
}

fn describe(g: &Graph, from: &str, to: &str) -> String {
    let files = g
        .get(from)
        .and_then(|e| e.get(to))
        .map(|f| f.iter().cloned().collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    format!("{from} -> {to} (in {files})")
}

#[test]
fn front_ends_and_engine_are_layered() {
    let g = graph();
    let mut problems = Vec::new();
    for (from, edges) in &g {
        for to in edges.keys() {
            let engine_to_front =
                ENGINE.contains(&from.as_str()) && FRONT_ENDS.contains(&to.as_str());
            let front_to_front = FRONT_ENDS.contains(&from.as_str())
                && FRONT_ENDS.contains(&to.as_str())
                && from != to;
            if engine_to_front {
                problems.push(format!(
                    "the engine names a front end: {}",
                    describe(&g, from, to)
                ));
            }
            if front_to_front {
                problems.push(format!(
                    "a front end names another: {}",
                    describe(&g, from, to)
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn top_level_modules_form_no_cycle() {
    let g = graph();
    let found = cycles(&g);
    let text: Vec<String> = found
        .iter()
        .map(|c| {
            let path = c.join(" -> ");
            let edges: Vec<String> = c.windows(2).map(|w| describe(&g, &w[0], &w[1])).collect();
            format!("cycle {path}:\n    {}", edges.join("\n    "))
        })
        .collect();
    assert!(found.is_empty(), "{}", text.join("\n"));
}

#[test]
fn the_reader_sees_references() {
    let text = strip_comments(
        "use crate::a::B;\nuse crate::{b, c::{D, E}, self};\n// crate::z\nlet x = crate::d::f(); let u = \"http://x\"; // crate::y\nfoo_crate::g",
    );
    let got: Vec<String> = referenced(&text, "crate::").into_iter().collect();
    assert_eq!(got, ["a", "b", "c", "d"]);
    let mut g = Graph::new();
    for (a, b) in [("x", "y"), ("y", "z"), ("z", "x"), ("z", "w")] {
        g.entry(a.into())
            .or_default()
            .entry(b.into())
            .or_default()
            .insert("f.rs".into());
    }
    assert_eq!(cycles(&g), vec![vec!["x", "y", "z", "x"]]);
}
