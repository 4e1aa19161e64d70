//! The import rule, checked on the code's own `crate::` paths: a module uses only its
//! own layer or those below, modules of one layer never form a cycle, and `model`
//! imports nothing else of the crate. The layer map is the one in `src/lib.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layer of every top-level module of the library (`src/<name>.rs` or `src/<name>/`).
const LAYERS: &[(&str, u8)] = &[
    ("model", 0),
    ("telemetry", 1),
    ("detect", 1),
    ("track", 1),
    ("geo", 1),
    ("risk", 1),
    ("caption", 1),
    ("evidence", 1),
    ("pipeline", 2),
    ("clients", 3),
    ("sources", 3),
    ("sinks", 3),
    ("store", 3),
    ("fleet", 3),
    ("analysis", 4),
    ("api", 4),
    ("config", 5),
    ("app", 6),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// The top-level module a library file belongs to (`None` for `lib.rs` and the binaries).
fn module_of(rel: &Path) -> Option<String> {
    let mut parts = rel.iter().map(|p| p.to_string_lossy().into_owned());
    let first = parts.next()?;
    if first == "lib.rs" || first == "main.rs" || first == "bin" || first == "cli" {
        return None;
    }
    Some(first.trim_end_matches(".rs").to_string())
}

/// Every top-level module a file refers to by `crate::<module>`, comments left out.
fn crate_refs(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let before = rest[..i].chars().last();
            let after = &rest[i + "crate::".len()..];
            let name: String = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            // `$crate::` in macros, `argus_crate::`…: only a path that starts at `crate`.
            if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') && !name.is_empty() {
                out.insert(name);
            }
            rest = after;
        }
    }
    out
}

/// Everything wrong with the imports of these files (`(path under src/, text)`).
fn violations(files: &[(PathBuf, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, text) in files {
        let Some(from) = module_of(rel) else { continue };
        let Some(from_layer) = layer(&from) else {
            problems.push(format!("{}: module `{from}` has no layer (add it to LAYERS here and to the map in src/lib.rs)", rel.display()));
            continue;
        };
        for to in crate_refs(text) {
            if to == from {
                continue;
            }
            match layer(&to) {
                None => problems.push(format!("{}: uses crate::{to}, which has no layer", rel.display())),
                Some(_) if from == "model" => problems.push(format!("{}: model imports nothing of the crate, but uses crate::{to}", rel.display())),
                Some(l) if l > from_layer => {
                    problems.push(format!("{}: `{from}` (layer {from_layer}) uses crate::{to} (layer {l}), a layer above it", rel.display()))
                }
                Some(l) if l == from_layer => {
                    edges.entry(from.clone()).or_default().insert(to);
                }
                Some(_) => {}
            }
        }
    }
    // Same-layer imports must not form a cycle.
    for start in edges.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for next in edges.get(&node).into_iter().flatten() {
                if next == start {
                    let cycle = format!("{} -> {start}", path.join(" -> "));
                    if !problems.iter().any(|p| p.ends_with(&cycle)) {
                        problems.push(format!("same-layer import cycle: {cycle}"));
                    }
                } else if seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    problems
}

fn source_files(dir: &Path, root: &Path, out: &mut Vec<(PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((path.strip_prefix(root).unwrap().to_path_buf(), text));
        }
    }
}

#[test]
fn every_module_imports_only_its_layer_or_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&src, &src, &mut files);
    assert!(files.len() > 50, "found only {} files under {}", files.len(), src.display());
    let problems = violations(&files);
    assert!(problems.is_empty(), "layer violations:\n  {}", problems.join("\n  "));
}

#[test]
fn every_top_level_module_has_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let declared: BTreeSet<&str> = lib.lines().filter_map(|l| l.trim().strip_prefix("pub mod ")).map(|m| m.trim_end_matches(';')).collect();
    let mapped: BTreeSet<&str> = LAYERS.iter().map(|(m, _)| *m).collect();
    assert_eq!(declared, mapped, "src/lib.rs's modules and this test's LAYERS differ");
}

#[test]
fn the_checker_finds_what_it_must() {
    let f = |p: &str, t: &str| (PathBuf::from(p), t.to_string());
    // Upward: a domain module using the pipeline.
    let up = violations(&[f("risk/mod.rs", "use crate::pipeline::bus::EventBus;")]);
    assert_eq!(up.len(), 1, "{up:?}");
    assert!(up[0].contains("layer 1") && up[0].contains("crate::pipeline (layer 2)"), "{up:?}");
    // The model imports nothing, not even a layer-0 neighbour.
    assert_eq!(violations(&[f("model/event.rs", "use crate::telemetry::metrics::Metrics;")]).len(), 1);
    // A same-layer cycle.
    let cyc = violations(&[f("sinks/mod.rs", "use crate::store::EventStore;"), f("store/mod.rs", "fn x() { crate::sinks::build(); }")]);
    assert!(cyc.iter().any(|p| p.starts_with("same-layer import cycle")), "{cyc:?}");
    // Comments, downward and own-module paths are fine; `$crate` is not a path of ours.
    let ok = violations(&[
        f("app/mod.rs", "use crate::pipeline::Stages; // crate::nothing\nuse crate::app::x;"),
        f("model/x.rs", "/// see crate::pipeline\nmacro_rules! m { () => { $crate::y } }"),
    ]);
    assert!(ok.is_empty(), "{ok:?}");
    // An unknown module is reported, so the map cannot silently fall behind.
    assert_eq!(violations(&[f("newthing/mod.rs", "")]).len(), 1);
}
