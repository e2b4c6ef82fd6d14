//! Embeds the native suite's data into the browser tests, which have no file system:
//! `$OUT_DIR/models.rs` lists, as `include_bytes!`, the model directories
//! (`../tests/data/models/<name>/`), the vision directories (`../tests/data/vision/<name>/`,
//! their top-level files and the photo with its features from `preprocess/`) and the golden
//! cases (`../tests/data/manifest.json` and the files beside it).

use std::fmt::Write;
use std::path::{Path, PathBuf};

fn main() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data").canonicalize().unwrap();
    println!("cargo:rerun-if-changed={}", data.display());
    let mut out = String::from("/// A file: its name and bytes.\npub type File = (&'static str, &'static [u8]);\n");
    directories(&mut out, "MODELS", "Each model directory of tests/data/models", &data.join("models"));
    directories(&mut out, "VISION", "Each vision directory of tests/data/vision", &data.join("vision"));
    let manifest = data.join("manifest.json");
    writeln!(out, "\n/// `tests/data/manifest.json`.\npub const MANIFEST: &str = include_str!({:?});", manifest)
        .unwrap();
    let cases: Vec<PathBuf> =
        files(&data).into_iter().filter(|p| p.extension().is_some_and(|e| e == "safetensors")).collect();
    out.push_str("\n/// The golden cases' files beside it.\npub const GOLDEN_FILES: &[File] = &[\n");
    list(&mut out, &cases, &data, "    ");
    out.push_str("];\n");
    std::fs::write(Path::new(&std::env::var("OUT_DIR").unwrap()).join("models.rs"), out).unwrap();
}

/// `const NAME: &[(&str, &[File])]`: each directory under `root` with its top-level files (named
/// relative to the directory).
fn directories(out: &mut String, name: &str, doc: &str, root: &Path) {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root).unwrap().flatten().map(|e| e.path()).collect();
    dirs.retain(|p| p.is_dir());
    dirs.sort();
    writeln!(out, "\n/// {doc}: its name and its files.\npub const {name}: &[(&str, &[File])] = &[").unwrap();
    for dir in dirs {
        writeln!(out, "    ({:?}, &[", dir.file_name().unwrap().to_string_lossy()).unwrap();
        let mut files = files(&dir);
        // The photo and what transformers made of it, for the end-to-end check.
        let photo = ["preprocess/photo.png", "preprocess/photo_features.safetensors"].map(|f| dir.join(f));
        files.extend(photo.into_iter().filter(|p| p.is_file()));
        list(out, &files, &dir, "        ");
        out.push_str("    ]),\n");
    }
    out.push_str("];\n");
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).collect();
    files.retain(|p| p.is_file());
    files.sort();
    files
}

/// `(name, include_bytes!(path))` rows, each named by its path under `base`.
fn list(out: &mut String, files: &[PathBuf], base: &Path, indent: &str) {
    for file in files {
        let name = file.strip_prefix(base).unwrap().to_string_lossy();
        writeln!(out, "{indent}({name:?}, include_bytes!({file:?})),").unwrap();
    }
}
