//! Embeds the native suite's model directories (`../tests/data/models/<name>/`, every file)
//! into the browser tests, which have no file system: `$OUT_DIR/models.rs` lists each
//! directory's files as `include_bytes!`.

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
    std::fs::write(Path::new(&std::env::var("OUT_DIR").unwrap()).join("models.rs"), out).unwrap();
}
