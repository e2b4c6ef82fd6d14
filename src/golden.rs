//! Parity with the upstream PyTorch modules: runs the cases of a golden manifest (the format
//! of `shared/golden/README.md`) and compares with the outputs stored beside the inputs.

use std::fmt;
use std::path::Path;

use serde_json::Value;

use crate::connectors::LlavaProjector;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::reference::{Comparison, compare};
use crate::weights::Weights;

/// How one case ended.
#[derive(Debug)]
pub enum Outcome {
    /// Ran and compared; passed or failed by the tolerance.
    Compared(Comparison),
    /// The op is not implemented yet: neither a pass nor a failure.
    Unsupported,
    /// Ran into an error (bad file, shape, device error).
    Error(String),
}

/// One case's result.
#[derive(Debug)]
pub struct CaseReport {
    pub name: String,
    pub op: String,
    pub outcome: Outcome,
}

impl CaseReport {
    /// A failed comparison or an error.
    pub fn failed(&self) -> bool {
        match &self.outcome {
            Outcome::Compared(c) => !c.passed(),
            Outcome::Unsupported => false,
            Outcome::Error(_) => true,
        }
    }
}

impl fmt::Display for CaseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = format!("{:<28} {:<42}", self.name, self.op);
        match &self.outcome {
            Outcome::Compared(c) => write!(
                f,
                "{head} {}  max abs {:.2e}  max rel {:.2e}  (atol {:.0e}, rtol {:.0e})",
                if c.passed() { "pass" } else { "FAIL" },
                c.max_abs,
                c.max_rel,
                c.atol,
                c.rtol
            ),
            Outcome::Unsupported => write!(f, "{head} unsupported"),
            Outcome::Error(e) => write!(f, "{head} ERROR {e}"),
        }
    }
}

/// Counts over a manifest run.
#[derive(Debug, Default)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub unsupported: usize,
}

impl Summary {
    pub fn of(reports: &[CaseReport]) -> Self {
        let mut s = Self::default();
        for r in reports {
            match (&r.outcome, r.failed()) {
                (Outcome::Unsupported, _) => s.unsupported += 1,
                (_, true) => s.failed += 1,
                (_, false) => s.passed += 1,
            }
        }
        s
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} passed, {} failed, {} unsupported", self.passed, self.failed, self.unsupported)
    }
}

/// Runs every case of `manifest` on `gpu`.
pub fn check_manifest(gpu: &Gpu, manifest: &Path) -> Result<Vec<CaseReport>> {
    let file_error = |problem: String| Error::File { path: manifest.display().to_string(), problem };
    let text = std::fs::read_to_string(manifest).map_err(|e| file_error(e.to_string()))?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| file_error(e.to_string()))?;
    if doc["schema_version"].as_u64() != Some(1) {
        return Err(file_error(format!("schema_version {}, expected 1", doc["schema_version"])));
    }
    let cases = doc["cases"].as_array().ok_or_else(|| file_error("no `cases` array".into()))?;
    let dir = manifest.parent().unwrap_or(Path::new("."));
    Ok(cases
        .iter()
        .map(|case| {
            let name = case["name"].as_str().unwrap_or("?").to_string();
            let op = case["op"].as_str().unwrap_or("?").to_string();
            let outcome = match run_case(gpu, dir, case, &op) {
                Ok(Some(c)) => Outcome::Compared(c),
                Ok(None) => Outcome::Unsupported,
                Err(e) => Outcome::Error(e.to_string()),
            };
            CaseReport { name, op, outcome }
        })
        .collect())
}

/// `Ok(None)` for ops not implemented yet.
fn run_case(gpu: &Gpu, dir: &Path, case: &Value, op: &str) -> Result<Option<Comparison>> {
    match op {
        "mlp2x_gelu" | "mlp2x_gelu_tanh" => {
            let weights = Weights::open(dir.join(case["file"].as_str().unwrap_or_default()))?;
            llava_mlp(gpu, &weights, case).map(Some)
        }
        _ => Ok(None),
    }
}

fn config_str<'a>(case: &'a Value, key: &str) -> Result<&'a str> {
    case["config"][key].as_str().ok_or_else(|| Error::Weights {
        name: format!("config.{key}"),
        problem: "missing from the manifest case".into(),
    })
}

fn llava_mlp(gpu: &Gpu, weights: &Weights, case: &Value) -> Result<Comparison> {
    let act = LlavaProjector::activation(config_str(case, "projector_hidden_act")?)?;
    let projector = LlavaProjector::from_weights(gpu, weights, act)?;
    let shape = weights.shape("image_features")?;
    let [batch, tokens, dim] = shape[..] else {
        return Err(Error::shape("golden", "image_features rank", 3, shape.len()));
    };
    let x = weights.f32("image_features", Some(&[batch, tokens, dim]))?;
    let got = projector.plan(gpu, batch, tokens)?.project(gpu, &x)?;
    // f16 cases: our f32 compute over the f16 values is compared with upstream's f32
    // evaluation of the same f16-rounded weights and input (README: atol ~5e-3).
    let (want, tol) =
        if case["dtype"].as_str() == Some("float16") { ("projected_f32ref", 5e-3) } else { ("projected", 1e-4) };
    let want: Vec<f64> = weights.f32(want, None)?.into_iter().map(f64::from).collect();
    Ok(compare(&got, &want, tol, tol))
}
