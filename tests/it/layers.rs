//! The import graph is the layer map of `src/lib.rs`: every `crate::…` path in a top-level
//! module names a module that map lets it use, the map has no circle, and every top-level
//! module is in it. A new import across layers fails here first, with the file that made it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Who may use whom: the map of `src/lib.rs`, lowest layers first.
const MAP: &[(&str, &[&str])] = &[
    ("telemetry", &[]),
    ("domain", &[]),
    ("clock", &["domain"]),
    ("store", &["domain"]),
    ("inbound", &["domain"]),
    ("outbound", &["domain"]),
    ("metrics", &["domain", "store"]),
    (
        "service",
        &["clock", "domain", "inbound", "metrics", "outbound", "store"],
    ),
    (
        "worker",
        &[
            "clock",
            "domain",
            "inbound",
            "metrics",
            "outbound",
            "service",
            "store",
            "telemetry",
        ],
    ),
    ("queue", &["domain", "outbound", "service", "store"]),
    (
        "http",
        &[
            "clock",
            "domain",
            "inbound",
            "metrics",
            "service",
            "store",
            "telemetry",
        ],
    ),
    (
        "mcp",
        &[
            "clock", "domain", "http", "inbound", "outbound", "service", "store",
        ],
    ),
    (
        "config",
        &[
            "domain",
            "http",
            "inbound",
            "outbound",
            "queue",
            "service",
            "store",
            "telemetry",
            "worker",
        ],
    ),
    (
        "app",
        &[
            "clock",
            "config",
            "domain",
            "http",
            "inbound",
            "mcp",
            "metrics",
            "outbound",
            "queue",
            "service",
            "store",
            "telemetry",
            "worker",
        ],
    ),
    (
        "bench",
        &[
            "app", "clock", "config", "domain", "outbound", "service", "store", "worker",
        ],
    ),
    (
        "cli",
        &[
            "app",
            "bench",
            "clock",
            "config",
            "domain",
            "http",
            "mcp",
            "outbound",
            "service",
            "store",
            "telemetry",
        ],
    ),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The files of top-level module `m`: `src/m.rs` and everything under `src/m/`.
fn files_of(m: &str) -> Vec<PathBuf> {
    let mut out = vec![];
    let file = src().join(format!("{m}.rs"));
    if file.exists() {
        out.push(file);
    }
    let mut dirs = vec![src().join(m)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out
}

/// The code of a file without its comments (doc comments name other layers freely).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            // A `//` inside a string ("http://…") is not a comment; the strings that hold
            // `crate::` are none, so cutting there only drops text no import can be in.
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a file's code names through `crate::`, including inside groups
/// (`use crate::{a::X, b}`).
fn used_modules(code: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        // `$crate::` (macros) and names ending in `crate` are not this crate's paths.
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut at_item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => at_item_start = true,
                    c if c.is_whitespace() => {}
                    _ if depth == 1 && at_item_start => {
                        at_item_start = false;
                        let name = ident(&group[j..]);
                        if !name.is_empty() {
                            used.insert(name);
                        }
                    }
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                used.insert(name);
            }
        }
    }
    used
}

fn map() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    MAP.iter()
        .map(|(m, deps)| (*m, deps.iter().copied().collect()))
        .collect()
}

#[test]
fn every_top_level_module_is_in_the_layer_map() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let declared: BTreeSet<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    let mapped: BTreeSet<&str> = map().keys().copied().collect();
    assert_eq!(declared, mapped);
}

#[test]
fn the_layer_map_has_no_circle() {
    let map = map();
    // Each module may only use modules listed before it: the order is a topological one.
    let mut seen = BTreeSet::new();
    for (m, deps) in MAP {
        for d in *deps {
            assert!(
                seen.contains(d),
                "{m} uses {d}, which is not below it in the map"
            );
        }
        seen.insert(*m);
    }
    assert_eq!(seen.len(), map.len());
}

#[test]
fn every_import_follows_the_layer_map() {
    let map = map();
    let mut wrong = vec![];
    for (m, allowed) in &map {
        for file in files_of(m) {
            let text = std::fs::read_to_string(&file).unwrap();
            for used in used_modules(&code(&text)) {
                if used != *m && map.contains_key(used.as_str()) && !allowed.contains(used.as_str())
                {
                    let file = file.strip_prefix(src()).unwrap().display().to_string();
                    wrong.push(format!("src/{file}: {m} uses {used}"));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports outside the layer map:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_import_scanner_sees_grouped_and_nested_paths_but_not_comments() {
    let used = used_modules(&code(
        "use crate::{domain::{a, b}, store::Store};\n\
         let x = crate::clock::now(); // crate::http is only mentioned\n\
         $crate::worker::x!();",
    ));
    let expected: BTreeSet<String> = ["clock", "domain", "store"].map(String::from).into();
    assert_eq!(used, expected);
}
