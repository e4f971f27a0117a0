//! The library's layering, checked from its source: which top-level
//! modules may use which (`crate::x` paths), no import loop between
//! top-level modules, and none between the sibling files of a module
//! (`super::x` and `crate::m::x` paths). Fast, no root, no registry.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// Imports the design forbids: (from, to).
const FORBIDDEN: &[(&str, &str)] = &[
    ("solver", "frontend"),
    ("exporter", "frontend"),
    ("exporter", "solver"),
    ("exporter", "worker"),
    ("worker", "solver"),
    ("worker", "frontend"),
    ("worker", "exporter"),
];

/// The module every other one must stay out of: the HTTP surface sits on
/// top of the library, and only the binary and the tests use it.
const TOP: &str = "api";

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The top-level modules `src/lib.rs` declares.
fn library_modules() -> BTreeSet<String> {
    let lib = std::fs::read_to_string(Path::new(SRC).join("lib.rs")).unwrap();
    lib.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod ").or_else(|| l.trim().strip_prefix("mod ")))
        .map(|m| m.trim_end_matches(';').to_string())
        .collect()
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The first path segment of every item of the paths that start with
/// `prefix` (`prefix::a`, `prefix::{a, b::c}` → `a`, `b`).
fn targets(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let (mut depth, mut item, mut end) = (0usize, String::new(), group.len());
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        end = i;
                        break;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 && c == ',' {
                    found.extend(first_ident(&item));
                    item.clear();
                } else {
                    item.push(c);
                }
            }
            found.extend(first_ident(&item));
            rest = &group[end..];
        } else {
            found.extend(first_ident(rest));
        }
    }
    found
}

fn first_ident(text: &str) -> Option<String> {
    let ident: String = text.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    (!ident.is_empty() && ident != "self").then_some(ident)
}

/// Top-level module → the top-level modules its files name.
fn top_level_graph() -> Graph {
    let modules = library_modules();
    let mut graph = Graph::new();
    for file in rust_files(Path::new(SRC)) {
        let rel = file.strip_prefix(SRC).unwrap();
        let first = rel.components().next().unwrap().as_os_str().to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if !modules.contains(&module) {
            continue; // the binary's own modules
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let used: Vec<String> =
            targets(&text, "crate::").into_iter().filter(|t| modules.contains(t) && *t != module).collect();
        graph.entry(module).or_default().extend(used);
    }
    graph
}

/// The cycles of `graph` (strongly connected components of two or more).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    let nodes: Vec<&String> =
        graph.keys().chain(graph.values().flatten()).collect::<BTreeSet<_>>().into_iter().collect();
    let reach = |from: &String| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(n) = todo.pop() {
            for next in graph.get(&n).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> = nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut found: BTreeSet<Vec<String>> = BTreeSet::new();
    for n in &nodes {
        let component: Vec<String> = nodes
            .iter()
            .filter(|m| reaches[n].contains(**m) && reaches[*m].contains(*n))
            .map(|m| (*m).clone())
            .collect();
        if component.len() > 1 {
            found.insert(component);
        }
    }
    found.into_iter().collect()
}

/// Files a sibling pulls in with `#[path = "…"]`: children of that file,
/// not siblings.
fn path_included(dir: &Path) -> BTreeSet<String> {
    let mut included = BTreeSet::new();
    for file in std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()) {
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        for line in text.lines().filter_map(|l| l.trim().strip_prefix("#[path = \"")) {
            included.insert(line.split('"').next().unwrap().trim_end_matches(".rs").to_string());
        }
    }
    included
}

/// For each module directory, its child files → the siblings they name.
fn sibling_graphs() -> BTreeMap<String, Graph> {
    let mut all = BTreeMap::new();
    let mut dirs = vec![PathBuf::from(SRC)];
    while let Some(dir) = dirs.pop() {
        let included = path_included(&dir);
        let mut children: BTreeMap<String, PathBuf> = BTreeMap::new();
        for path in std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()) {
            if path.is_dir() {
                dirs.push(path.clone());
                if path.join("mod.rs").exists() {
                    children.insert(path.file_name().unwrap().to_string_lossy().into(), path.join("mod.rs"));
                }
            } else if let Some(stem) = path.file_stem().map(|s| s.to_string_lossy().to_string()) {
                if stem != "mod" && !included.contains(&stem) && path.extension().is_some_and(|e| e == "rs") {
                    children.insert(stem, path);
                }
            }
        }
        if dir == Path::new(SRC) {
            continue; // top level: checked through crate:: paths
        }
        let module_path = dir.strip_prefix(SRC).unwrap().to_string_lossy().replace('/', "::");
        let mut graph = Graph::new();
        for (name, file) in &children {
            let text = std::fs::read_to_string(file).unwrap();
            let text = text.split("#[cfg(test)]").next().unwrap();
            let mut used = targets(text, "super::");
            used.extend(targets(text, &format!("crate::{module_path}::")));
            let siblings = used.into_iter().filter(|t| children.contains_key(t) && t != name);
            graph.entry(name.clone()).or_default().extend(siblings);
        }
        all.insert(module_path, graph);
    }
    all
}

#[test]
fn forbidden_imports_are_absent() {
    let graph = top_level_graph();
    assert!(graph.contains_key("solver") && graph.contains_key("exporter"), "the scan found the modules: {graph:?}");
    for (from, to) in FORBIDDEN {
        assert!(!graph[*from].contains(*to), "{from} imports {to}");
    }
    for (from, uses) in &graph {
        assert!(from == TOP || !uses.contains(TOP), "{from} imports {TOP}");
    }
}

#[test]
fn top_level_modules_have_no_import_loop() {
    let loops = cycles(&top_level_graph());
    assert!(loops.is_empty(), "import loops between modules: {loops:?}");
}

#[test]
fn sibling_files_have_no_import_loop() {
    let graphs = sibling_graphs();
    assert!(graphs.contains_key("api") && graphs.contains_key("solver"), "{:?}", graphs.keys());
    for (module, graph) in graphs {
        let loops = cycles(&graph);
        assert!(loops.is_empty(), "import loops between the files of {module}: {loops:?}");
    }
}

#[test]
fn the_scanner_sees_grouped_and_nested_paths() {
    let text = "use crate::{graph::{A, B}, oci, self};\nlet x = crate::solver::run();\nuse super::{job::X, failure};";
    assert_eq!(targets(text, "crate::"), ["graph", "oci", "solver"].map(String::from).into());
    assert_eq!(targets(text, "super::"), ["failure", "job"].map(String::from).into());
    let mut looped = Graph::new();
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        looped.entry(from.to_string()).or_default().insert(to.to_string());
    }
    assert_eq!(cycles(&looped), vec![vec!["a".to_string(), "b".into(), "c".into()]]);
}
