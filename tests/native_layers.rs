//! The architecture as a test: the source tree is layered, and no module imports one above it or
//! takes part in an import cycle. Layers, bottom up:
//!
//! | layer | modules | what it knows |
//! |---|---|---|
//! | 0 | `error`, `parallel`, `kernels` | numbers and threads |
//! | 1 | `quant` | how a tensor becomes codes (dtype decoding, layout, widths, params, metrics) |
//! | 2 | `diffusion` | calibration statistics, time groups, channel equalization |
//! | 3 | `format` | files: safetensors, calibration, Parquet |
//! | 4 | `policy` | which width and storage each tensor gets, and why |
//! | 5 | `pipeline` | the orchestrator and its report |
//! | 6 | `wasm` | the JS bindings |
//!
//! Imports are read from the source text (`crate::a::b` paths, test modules excluded).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const LAYERS: &[(&str, u32)] = &[
    ("error", 0),
    ("parallel", 0),
    ("kernels", 0),
    ("quant", 1),
    ("diffusion", 2),
    ("format", 3),
    ("policy", 4),
    ("pipeline", 5),
    ("wasm", 6),
];

/// Module path (`format::parquet::reader`) → source text, for every file under `src/` but lib.rs.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix("src").unwrap().with_extension("");
                let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
                if parts.last().is_some_and(|p| p == "mod") {
                    parts.pop();
                }
                let name = parts.join("::");
                if name != "lib" {
                    out.insert(name, std::fs::read_to_string(&path).unwrap());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(Path::new("src"), &mut out);
    out
}

/// The modules `src` refers to through `crate::…` paths (outside its test module).
fn imports(src: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let code = match src.find("#[cfg(test)]\nmod tests") {
        Some(i) => &src[..i],
        None => src,
    };
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let path: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect();
        let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
        // The longest prefix that names a module file.
        if let Some(m) = (1..=parts.len()).rev().map(|k| parts[..k].join("::")).find(|m| known.contains(m)) {
            out.insert(m);
        }
    }
    out
}

fn layer_of(module: &str) -> u32 {
    let top = module.split("::").next().unwrap();
    LAYERS.iter().find(|(name, _)| *name == top).unwrap_or_else(|| panic!("module '{top}' has no layer")).1
}

#[test]
fn no_module_imports_a_higher_layer() {
    let mods = modules();
    let known: BTreeSet<String> = mods.keys().cloned().collect();
    let mut upward = Vec::new();
    for (m, src) in &mods {
        for t in imports(src, &known) {
            if layer_of(&t) > layer_of(m) {
                upward.push(format!("{m} → {t}"));
            }
        }
    }
    assert!(upward.is_empty(), "imports that go up the layers: {upward:?}");
}

#[test]
fn no_import_cycles() {
    let mods = modules();
    let known: BTreeSet<String> = mods.keys().cloned().collect();
    // A module importing its own parent (`mod.rs` re-exports) is not an edge.
    let graph: BTreeMap<&str, Vec<String>> = mods
        .iter()
        .map(|(m, src)| {
            let deps = imports(src, &known)
                .into_iter()
                .filter(|t| t != m && !m.starts_with(&format!("{t}::")) && !t.starts_with(&format!("{m}::")))
                .collect();
            (m.as_str(), deps)
        })
        .collect();
    // Depth-first search with colours; a grey target is a cycle.
    fn visit<'a>(
        m: &'a str,
        graph: &'a BTreeMap<&str, Vec<String>>,
        colour: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        colour.insert(m, 1);
        stack.push(m);
        for t in &graph[m] {
            match colour.get(t.as_str()) {
                Some(1) => {
                    let start = stack.iter().position(|s| *s == t).unwrap();
                    return Some(stack[start..].iter().map(|s| s.to_string()).chain([t.clone()]).collect());
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(t.as_str(), graph, colour, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        colour.insert(m, 2);
        None
    }
    let mut colour = BTreeMap::new();
    for m in graph.keys() {
        if !colour.contains_key(m) {
            if let Some(cycle) = visit(m, &graph, &mut colour, &mut Vec::new()) {
                panic!("import cycle: {}", cycle.join(" → "));
            }
        }
    }
}

#[test]
fn the_checker_sees_real_imports() {
    // Guards the two tests above against passing vacuously.
    let mods = modules();
    let known: BTreeSet<String> = mods.keys().cloned().collect();
    let run = imports(&mods["pipeline::run"], &known);
    assert!(run.contains("pipeline::layer") && run.contains("format::parquet::writer"), "{run:?}");
    assert!(imports("use crate::quant::width::Width;", &known).contains("quant::width"));
    assert_eq!(layer_of("wasm::model"), 6);
}
