//! The layers of `src/` point one way: golden → models → connectors → tune, diagnostics →
//! graph → kernels → reference → ops → core (weights, timing, tensor, gpu, tune_table, pipeline,
//! files, host, dtype, error), each module taking only from the ones under it. Reads every
//! `crate::` path in the code of `src/` (comments left out) and fails on an arrow that points up
//! or sideways.

use std::path::Path;

/// Top-level modules of the crate, bottom first: a module may use the ones before it.
const LAYERS: &[&str] = &[
    "error",
    "dtype",
    "host",
    "files",
    "pipeline",
    "tune_table",
    "gpu",
    "tensor",
    "timing",
    "weights",
    "ops",
    "preprocess",
    "reference",
    "kernels",
    "graph",
    "diagnostics",
    "tune",
    "nn",
    "connectors",
    "towers",
    "models",
    "golden",
];

/// The module a file of `src/` belongs to (`src/gpu/caps.rs` → `gpu`); `lib.rs` is the root.
fn module_of(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")).join("src")).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib").then(|| name.to_string())
}

/// The code of a Rust file without its comments (line comments, doc comments, block comments)
/// and string literals, so that a path in prose is no import.
fn code_of(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    if !escaped && c == '"' {
                        break;
                    }
                    escaped = !escaped && c == '\\';
                }
                out.push_str("\"\"");
            }
            _ => out.push(c),
        }
    }
    out
}

/// Every top-level module a file's code names through `crate::` (`crate::gpu::Caps`,
/// `use crate::{dtype::DType, error::Error}`).
fn used_modules(code: &str) -> Vec<String> {
    let mut used = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `vlbridge_crate::` or the like
        }
        if let Some(group) = rest.strip_prefix('{') {
            // One level of a braced group: the first identifier of each entry.
            let end = group.find('}').unwrap_or(group.len());
            for entry in group[..end].split(',') {
                let name: String = entry.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    used.push(name);
                }
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            used.push(name);
        }
    }
    used
}

/// The arrows of `files` (module, code) that do not point down, as "module → used".
fn upward_arrows(files: &[(String, String)]) -> Vec<String> {
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut bad = Vec::new();
    for (module, code) in files {
        let own = rank(module).unwrap_or_else(|| panic!("module `{module}` has no layer: add it to LAYERS"));
        for used in used_modules(code) {
            match rank(&used) {
                Some(r) if r < own || used == *module => {}
                Some(_) => bad.push(format!("{module} → {used}")),
                None => {} // a re-export or macro path of the root (`crate::Result`)
            }
        }
    }
    bad.sort();
    bad.dedup();
    bad
}

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            && let Some(module) = module_of(&path)
        {
            out.push((module, code_of(&std::fs::read_to_string(&path).unwrap())));
        }
    }
}

#[test]
fn every_arrow_in_src_points_down() {
    let mut files = Vec::new();
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    assert!(files.len() > 50, "{} files", files.len());
    let bad = upward_arrows(&files);
    assert!(bad.is_empty(), "imports that point up the layers ({LAYERS:?}, bottom first):\n{}", bad.join("\n"));
}

#[test]
fn a_planted_upward_import_is_caught() {
    let file = |module: &str, code: &str| (module.to_string(), code_of(code));
    let files = [
        file("gpu", "use crate::error::Result;\nuse crate::{pipeline::Access, tune::measure};"),
        file("kernels", "// crate::models is only named in prose\nfn f() -> crate::graph::Plan { todo!() }"),
        file("ops", "let s = \"crate::connectors\"; use crate::{ dtype::DType };"),
    ];
    assert_eq!(upward_arrows(&files), ["gpu → tune", "kernels → graph"]);
}
