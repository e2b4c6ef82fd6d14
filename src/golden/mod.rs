//! Parity with the upstream PyTorch modules: the cases of a golden manifest (the format of
//! `tests/data/README.md`, read through serde), each planned into a [`Job`] that runs, blocking
//! natively ([`check_manifest`]) or awaited on the web ([`Job::run_async`]), and compares with
//! the outputs stored beside the inputs.

use std::fmt;
use std::path::Path;

use serde::Deserialize;

use crate::connectors::ConnectorPlan;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::host::Tensors;
use crate::reference::Comparison;
use crate::weights::Weights;

mod runners;

fn file_error(path: &Path, problem: impl ToString) -> Error {
    Error::File { path: path.display().to_string(), problem: problem.to_string() }
}

/// `manifest.json`, schema version 1.
#[derive(Debug, Deserialize)]
pub struct Manifest {
    /// Must be 1.
    pub schema_version: u32,
    /// The cases.
    pub cases: Vec<ManifestCase>,
}

/// One case of the manifest.
#[derive(Debug, Deserialize)]
pub struct ManifestCase {
    /// Its name.
    pub name: String,
    /// The safetensors file beside the manifest.
    pub file: String,
    /// The upstream op it covers.
    pub op: String,
    /// `float32` or `float16`.
    #[serde(default)]
    pub dtype: Option<String>,
    /// Every hyper-parameter; each op reads its own fields (below).
    #[serde(default)]
    pub config: serde_json::Value,
}

impl ManifestCase {
    /// The config as the op's own typed struct.
    fn config<T: for<'de> Deserialize<'de>>(&self) -> Result<T> {
        serde_json::from_value(self.config.clone())
            .map_err(|e| Error::Config { field: format!("{}.config", self.name), problem: e.to_string() })
    }
}

/// How one case ended.
#[derive(Debug)]
pub enum Outcome {
    /// Ran and compared; passed or failed by the tolerance.
    Compared(Comparison),
    /// The op is not implemented: neither a pass nor a failure.
    Unsupported,
    /// Ran into an error (bad file, shape, device error).
    Error(String),
}

/// One case's result.
#[derive(Debug)]
pub struct CaseReport {
    /// The case's name in the manifest.
    pub name: String,
    /// The upstream op it covers.
    pub op: String,
    /// How it compared.
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
    /// Cases that compared within tolerance.
    pub passed: usize,
    /// Cases that failed or did not run.
    pub failed: usize,
    /// Cases of ops vlbridge does not implement.
    pub unsupported: usize,
}

impl Summary {
    /// Counts `reports`.
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

impl Manifest {
    /// Parses `manifest.json`'s text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let doc: Manifest = serde_json::from_str(text).map_err(|e| file_error(path, e))?;
        if doc.schema_version != 1 {
            return Err(file_error(path, format!("schema_version {}, expected 1", doc.schema_version)));
        }
        Ok(doc)
    }
}

/// A case ready to run: its plans with their inputs, and how their outputs become the
/// comparison with upstream's.
pub struct Job {
    runs: Vec<(ConnectorPlan, Tensors)>,
    finish: Box<dyn FnOnce(Vec<Tensors>) -> Result<Comparison>>,
}

impl Job {
    /// Runs the plans, blocking (native).
    pub fn run(self) -> Result<Comparison> {
        let outputs = self.runs.iter().map(|(plan, inputs)| plan.run(inputs)).collect::<Result<Vec<_>>>()?;
        (self.finish)(outputs)
    }

    /// Runs the plans without blocking (the web).
    pub async fn run_async(self) -> Result<Comparison> {
        let mut outputs = Vec::with_capacity(self.runs.len());
        for (plan, inputs) in &self.runs {
            outputs.push(plan.run_async(inputs).await?);
        }
        (self.finish)(outputs)
    }
}

/// `case`'s job on `gpu` with its tensors `weights`; `None` for an op vlbridge does not
/// implement.
pub fn job(gpu: &Gpu, weights: &Weights, case: &ManifestCase) -> Result<Option<Job>> {
    runners::runner(&case.op).map(|run| run(gpu, weights, case)).transpose()
}

/// What became of one case.
pub fn outcome(result: Result<Option<Comparison>>) -> Outcome {
    match result {
        Ok(Some(c)) => Outcome::Compared(c),
        Ok(None) => Outcome::Unsupported,
        Err(e) => Outcome::Error(e.to_string()),
    }
}

/// Runs every case of `manifest` on `gpu`, each case's file beside it (native).
#[cfg(not(target_arch = "wasm32"))]
pub fn check_manifest(gpu: &Gpu, manifest: &Path) -> Result<Vec<CaseReport>> {
    let text = std::fs::read_to_string(manifest).map_err(|e| file_error(manifest, e))?;
    let doc = Manifest::parse(&text, manifest)?;
    let dir = manifest.parent().unwrap_or(Path::new("."));
    Ok(doc
        .cases
        .iter()
        .map(|case| {
            let result = Weights::open(dir.join(&case.file))
                .and_then(|weights| job(gpu, &weights, case))
                .and_then(|job| job.map(Job::run).transpose());
            CaseReport { name: case.name.clone(), op: case.op.clone(), outcome: outcome(result) }
        })
        .collect())
}
