//! Shared by the CLI test binaries: running the built `vlbridge`, scratch directories, and
//! what it prints.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vlbridge::reference::compare;
use vlbridge::weights::Weights;

/// Runs `vlbridge` with `args`, echoing what it printed.
pub fn vlbridge(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_vlbridge")).args(args).output().expect("run vlbridge");
    println!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out
}

/// `vlbridge run --model MODEL FLAG INPUT --output OUT` (FLAG: `--input` or `--image`) and any
/// `extra` arguments.
pub fn run(model: &Path, flag: &str, input: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["run", "--model", model.to_str().unwrap(), flag, input.to_str().unwrap()];
    args.extend(["--output", out.to_str().unwrap()]);
    args.extend(extra);
    vlbridge(&args)
}

/// A fresh directory under the system's temporary one.
pub fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vlbridge-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The "peak RSS: X MiB" line `vlbridge` prints.
pub fn peak_rss(out: &Output) -> f64 {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains("peak RSS")).expect("peak RSS line");
    line.split_whitespace().rev().nth(1).unwrap().parse().unwrap()
}

/// Every tensor of `got` that upstream also wrote (under `stored(name)` in `want`) has its
/// shape and matches at the model-path rule, 1e-4 + 1e-3·|want|; `label` names the case.
pub fn matches_upstream(label: &str, got: &Weights, want: &Weights, stored: impl Fn(&str) -> String) {
    for output in got.names().unwrap() {
        let name = stored(&output);
        if !want.contains(&name) {
            continue;
        }
        assert_eq!(got.shape(&output).unwrap(), want.shape(&name).unwrap(), "{label}: {output}");
        let expected: Vec<f64> = want.f32(&name, None).unwrap().into_iter().map(f64::from).collect();
        let cmp = compare(&got.f32(&output, None).unwrap(), &expected, 1e-4, 1e-3);
        assert!(cmp.passed(), "{label}: {output}: {cmp}");
    }
}
