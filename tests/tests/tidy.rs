//! Tidy: the rules that keep the code base walkable, checked over the source text.
//!
//! - no source file over 1,000 lines, no function over 120 lines;
//! - no clock, thread or randomness call in `engine/` or in the node's state machines: time
//!   and randomness come from their caller (the node's `Env`), so the simulator can supply
//!   them;
//! - no import cycle between the modules of `node/src` (or `engine/src`): a module that names
//!   another (`crate::a::b`, `super::x`) depends on it, and the graph of those dependencies
//!   has no cycle. A module and its own parent or children do not count (Rust's `mod` tree
//!   already ties them).
//!
//! Each failure names the file and line, and the rule.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 1_000;
const MAX_FN_LINES: usize = 120;

/// Calls that read the clock, start a thread or draw randomness.
const NONDETERMINISTIC: &[&str] = &[
    "Instant::now",
    "SystemTime",
    "now_ms()",
    "Uuid::new_v4",
    "std::thread",
    "thread::spawn",
    "thread_rng",
    "rand::",
    "getrandom",
    "tokio::time",
    "tokio::spawn",
    "spawn_local",
];

/// The node's state machines: their inputs (messages, ticks, completions) carry time, and
/// randomness comes from the node's `Env`.
const NODE_STATE_MACHINES: &[&str] = &[
    "node/src/groups",
    "node/src/meta",
    "node/src/shard",
    "node/src/zk/server.rs",
    "node/src/zk/sessions.rs",
    "node/src/zk/watches.rs",
    "node/src/zk/read.rs",
    "node/src/zk/write.rs",
    "node/src/zk/acl.rs",
    "node/src/zk/four_letter.rs",
    "node/src/replica.rs",
    "node/src/msg.rs",
    "node/src/metadata.rs",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_path_buf()
}

/// Every `.rs` file under `dir` (relative to the root), build output and vendored code left out.
fn sources(dir: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root().join(dir)];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                if name != "target" && name != "third_party" && name != "corpus" && name != "artifacts" {
                    pending.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn all_sources() -> Vec<PathBuf> {
    ["engine", "node", "tests", "benches", "perf"].iter().flat_map(|d| sources(d)).collect()
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root()).unwrap_or(path).display().to_string()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn report(rule: &str, failures: Vec<String>) {
    assert!(failures.is_empty(), "{rule}:\n  {}", failures.join("\n  "));
}

#[test]
fn no_source_file_is_over_1000_lines() {
    let failures = all_sources()
        .into_iter()
        .filter_map(|p| {
            let n = read(&p).lines().count();
            (n > MAX_FILE_LINES).then(|| format!("{}: {n} lines", relative(&p)))
        })
        .collect();
    report(&format!("source files over {MAX_FILE_LINES} lines (split them by responsibility)"), failures);
}

/// The functions of a file as (name, first line, number of lines): from the `fn` line to the
/// closing brace at the same indentation (rustfmt's layout).
fn functions(text: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let mut rest = trimmed;
        for prefix in ["pub(crate) ", "pub(super) ", "pub ", "const ", "async ", "unsafe ", "extern \"C\" "] {
            rest = rest.strip_prefix(prefix).unwrap_or(rest);
        }
        let Some(signature) = rest.strip_prefix("fn ") else { continue };
        let name: String = signature.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        // The body opens on the first line ending in `{`; a `;` first means a declaration.
        let Some(open) = (i..lines.len()).find(|&j| {
            let l = lines[j].trim_end();
            l.ends_with('{') || l.ends_with(';')
        }) else {
            continue;
        };
        if lines[open].trim_end().ends_with(';') {
            continue;
        }
        let close = format!("{indent}}}");
        if let Some(end) = (open + 1..lines.len()).find(|&j| lines[j] == close) {
            found.push((name, i + 1, end - i + 1));
        }
    }
    found
}

#[test]
fn no_function_is_over_120_lines() {
    let mut failures = Vec::new();
    for path in all_sources() {
        for (name, line, count) in functions(&read(&path)) {
            if count > MAX_FN_LINES {
                failures.push(format!("{}:{line}: fn {name} is {count} lines", relative(&path)));
            }
        }
    }
    report(&format!("functions over {MAX_FN_LINES} lines (give their parts names)"), failures);
}

#[test]
fn the_function_finder_measures_bodies() {
    let text = "fn a() {\n    x();\n}\n\n    pub(super) async fn b(\n        y: u8,\n    ) -> u8 {\n        y\n    }\n    fn c();\n";
    let found = functions(text);
    assert_eq!(found, vec![("a".to_owned(), 1, 3), ("b".to_owned(), 5, 5)]);
}

/// The text without comments and without the unit tests at the end of a file.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// True if `line` names `call` itself: not a method of that name (`env.now_ms()`) nor a longer
/// identifier ending in it.
fn calls(line: &str, call: &str) -> bool {
    line.match_indices(call)
        .any(|(i, _)| !line[..i].chars().next_back().is_some_and(|c| c == '.' || c == '_' || c.is_alphanumeric()))
}

#[test]
fn the_call_finder_tells_the_environment_from_the_system() {
    assert!(calls("let t = now_ms();", "now_ms()"));
    assert!(calls("let t = crate::process::now_ms();", "now_ms()"));
    assert!(!calls("let t = self.shared.env.now_ms();", "now_ms()"));
    assert!(!calls("let t = self.snapshot_now_ms();", "now_ms()"));
    assert!(calls("std::thread::spawn(f)", "std::thread"));
}

#[test]
fn engine_and_state_machines_take_time_and_randomness_from_outside() {
    let mut files = sources("engine/src");
    for dir in NODE_STATE_MACHINES {
        let path = root().join(dir);
        assert!(path.exists(), "{dir} is listed as a state machine but does not exist");
        if path.is_dir() {
            files.extend(sources(dir));
        } else {
            files.push(path);
        }
    }
    let mut failures = Vec::new();
    for path in files {
        // The engine's io_uring storage is the real disk, not the state machine.
        if relative(&path).ends_with("io/uring.rs") {
            continue;
        }
        let code = code_of(&read(&path));
        for (n, line) in code.lines().enumerate() {
            for call in NONDETERMINISTIC.iter().filter(|c| calls(line, c)) {
                failures.push(format!("{}:{}: {call}", relative(&path), n + 1));
            }
        }
    }
    report("clock, thread or randomness calls where only the environment may supply them", failures);
}

/// The module a file is: `node/src/zk/server.rs` is `zk::server`, a `mod.rs` its directory.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src").with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    if parts.is_empty() {
        "crate".to_owned()
    } else {
        parts.join("::")
    }
}

/// The paths named after each occurrence of `prefix` (e.g. `crate::`), as `a::b::c`.
fn paths_after(code: &str, prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let path: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == ':')
            .collect();
        found.push(path.trim_end_matches(':').to_owned());
    }
    found
}

/// The dependency graph between the modules of a crate's `src`.
fn module_graph(src_dir: &str) -> BTreeMap<String, BTreeSet<String>> {
    let src = root().join(src_dir);
    let files = sources(src_dir);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    // The longest known module a path starts with.
    let resolve = |path: &str| -> Option<String> {
        let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
        (1..=parts.len()).rev().map(|n| parts[..n].join("::")).find(|m| modules.contains(m))
    };
    let related = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}::")) || b.starts_with(&format!("{a}::"));
    let mut graph = BTreeMap::new();
    for file in &files {
        let module = module_of(&src, file);
        let code = code_of(&read(file));
        let parent = module.rsplit_once("::").map(|(p, _)| p.to_owned());
        let mut deps = BTreeSet::new();
        let named =
            paths_after(&code, "crate::").into_iter().chain(paths_after(&code, "super::").into_iter().map(|p| {
                match &parent {
                    Some(parent) => format!("{parent}::{p}"),
                    None => p,
                }
            }));
        for path in named {
            if let Some(dep) = resolve(&path).filter(|d| !related(&module, d)) {
                deps.insert(dep);
            }
        }
        graph.insert(module, deps);
    }
    graph
}

/// The cycles of a graph: its strongly connected components of more than one module.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Which modules each reaches; two modules are in one cycle when each reaches the other.
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut pending: Vec<&str> = graph.get(from).into_iter().flatten().map(String::as_str).collect();
        while let Some(m) = pending.pop() {
            if seen.insert(m.to_owned()) {
                pending.extend(graph.get(m).into_iter().flatten().map(String::as_str));
            }
        }
        seen
    };
    let reached: BTreeMap<&str, BTreeSet<String>> = graph.keys().map(|m| (m.as_str(), reach(m))).collect();
    let mut found: Vec<Vec<String>> = Vec::new();
    for (m, from_m) in &reached {
        if !from_m.contains(*m) || found.iter().any(|c| c.iter().any(|x| x == m)) {
            continue;
        }
        let cycle: Vec<String> = from_m
            .iter()
            .filter(|other| reached.get(other.as_str()).is_some_and(|r| r.contains(*m)))
            .cloned()
            .collect();
        found.push(cycle);
    }
    found
}

#[test]
fn modules_import_without_cycles() {
    let mut failures = Vec::new();
    for src in ["node/src", "engine/src"] {
        let graph = module_graph(src);
        assert!(graph.len() > 10, "{src}: found only {} modules", graph.len());
        for cycle in cycles(&graph) {
            let edges: Vec<String> = cycle
                .iter()
                .flat_map(|m| graph[m].iter().filter(|d| cycle.contains(d)).map(move |d| format!("{m} -> {d}")))
                .collect();
            failures.push(format!("{src}: {}", edges.join(", ")));
        }
    }
    report("import cycles (move what both sides use into a lower module)", failures);
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let graph: BTreeMap<String, BTreeSet<String>> =
        [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"]), ("d", vec!["a"])]
            .into_iter()
            .map(|(m, deps)| (m.to_owned(), deps.into_iter().map(str::to_owned).collect()))
            .collect();
    assert_eq!(cycles(&graph), vec![vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]]);
    assert_eq!(paths_after("use crate::zk::server::{A, B}; x_crate::no", "crate::"), vec!["zk::server".to_owned()]);
}
