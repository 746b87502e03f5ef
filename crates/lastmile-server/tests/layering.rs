//! The server's layering, checked on its source: dependencies between its
//! top-level modules point one way (no cycle), and the application layer,
//! the sinks, the journal and the error table know no transport.
//!
//! Read from the source text (`use crate::x` and `crate::x::` paths), not
//! from the compiler: cheap, and enough for a crate whose modules are named
//! at the top level of `src/`. Test code (after a file's first
//! `#[cfg(test)]`) is not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`app` for
/// `src/app/feed.rs`, `wire` for `src/wire.rs`); `None` for `lib.rs`.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next()?.as_os_str().to_str()?.to_string();
    match first.strip_suffix(".rs") {
        Some("lib") => None,
        Some(name) => Some(name.to_string()),
        None => Some(first),
    }
}

/// The file's code before its tests, without comments (doc links name
/// modules without using them).
fn code(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let text = match text.find("#[cfg(test)]") {
        Some(at) => &text[..at],
        None => &text,
    };
    text.lines().filter(|line| !line.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// Top-level modules named by `crate::name` in `text` (a `use crate::{a, b}`
/// group counts each).
fn crate_references(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        // `lastmile_crate::` and the like are not ours.
        if text[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(&src, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else { continue };
        let uses = crate_references(&code(file));
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(uses.into_iter().filter(|m| modules.contains(m) && *m != module));
    }
    graph
}

/// A cycle through `start`, if any (depth-first).
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(at).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, start, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    walk(graph, start, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn no_module_of_the_server_depends_on_itself_through_others() {
    let graph = graph();
    assert!(graph.contains_key("app") && graph.contains_key("grpc") && graph.contains_key("http"), "{graph:?}");
    for module in graph.keys() {
        if let Some(cycle) = cycle_from(&graph, module) {
            panic!("module cycle: {}", cycle.join(" -> "));
        }
    }
    // The adapters are siblings: neither calls the other.
    assert!(!graph["grpc"].contains("http"), "grpc uses http: {:?}", graph["grpc"]);
    assert!(!graph["http"].contains("grpc"), "http uses grpc: {:?}", graph["http"]);
}

#[test]
fn the_application_layer_and_the_sinks_know_no_transport() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    // (`config` is not among them: it checks webhook event names against
    // the proto's.)
    let transport_free = ["app", "sinks", "journal", "error", "auth", "store", "metrics", "clock"];
    let transports =
        ["tonic", "axum", "hyper", "lastmile_proto", "crate::json", "crate::http", "crate::grpc", "crate::wire"];
    let mut checked = 0;
    for file in &files {
        let Some(module) = module_of(&src, file) else { continue };
        if !transport_free.contains(&module.as_str()) {
            continue;
        }
        checked += 1;
        let code = code(file);
        for transport in transports {
            let mentions = code.match_indices(transport).any(|(at, _)| {
                !code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_')
                    && !code[at + transport.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
            });
            assert!(!mentions, "{} ({module}) mentions {transport}", file.display());
        }
    }
    assert!(checked >= 14, "only {checked} files checked");
}

#[test]
fn references_are_read_from_use_groups_and_paths() {
    let refs = crate_references("use crate::{app::App, error};\nlet x = crate::wire::f(); lastmile_crate::y;");
    assert_eq!(refs, ["app", "error", "wire"].into_iter().map(String::from).collect());
}
