//! Embeds the native suite's model directories (`../tests/data/models/<name>/`, every file)
//! and golden cases (`../tests/data/manifest.json` and the files beside it) into the browser
//! tests, which have no file system: `$OUT_DIR/models.rs` lists them as `include_bytes!`.

use std::fmt::Write;
use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/models");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut dirs: Vec<_> = std::fs::read_dir(&root).expect("tests/data/models").flatten().map(|e| e.path()).collect();
    dirs.retain(|p| p.is_dir());
    dirs.sort();
    let mut out = String::from(
        "/// A file of a model directory: its name and bytes.\npub type File = (&'static str, &'static [u8]);\n\n\
         /// Each model directory: its name and its files.\npub const MODELS: &[(&str, &[File])] = &[\n",
    );
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
        files.retain(|p| p.is_file());
        files.sort();
        writeln!(out, "    (\"{name}\", &[").unwrap();
        for file in files {
            let file_name = file.file_name().unwrap().to_string_lossy().to_string();
            let path = file.canonicalize().unwrap();
            writeln!(out, "        (\"{file_name}\", include_bytes!(\"{}\")),", path.display()).unwrap();
        }
        out.push_str("    ]),\n");
    }
    out.push_str("];\n");
    // The golden cases: the manifest and every file beside it.
    let data = root.parent().unwrap().canonicalize().unwrap();
    let mut cases: Vec<_> = std::fs::read_dir(&data).unwrap().flatten().map(|e| e.path()).collect();
    cases.retain(|p| p.extension().is_some_and(|e| e == "safetensors"));
    cases.sort();
    let manifest = data.join("manifest.json");
    println!("cargo:rerun-if-changed={}", manifest.display());
    writeln!(
        out,
        "\n/// `tests/data/manifest.json`.\npub const MANIFEST: &str = include_str!(\"{}\");",
        manifest.display()
    )
    .unwrap();
    out.push_str("\n/// The golden cases' files beside it.\npub const GOLDEN_FILES: &[File] = &[\n");
    for file in cases {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        writeln!(out, "    (\"{name}\", include_bytes!(\"{}\")),", file.display()).unwrap();
    }
    out.push_str("];\n");
    std::fs::write(Path::new(&std::env::var("OUT_DIR").unwrap()).join("models.rs"), out).unwrap();
}
