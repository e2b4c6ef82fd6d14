//! The optional measured tune: times every variant of the GEMM (thin and wide problems) and of
//! flash attention on this adapter, in seconds, and caches the fastest per adapter on disk.
//! [`crate::Gpu::with_options`] reads the cache when there is one, and the kernels' choice
//! follows it ahead of their built-in heuristic (a forced variant still wins over both).
//!
//! The cache is one JSON file per adapter and driver under `$VLBRIDGE_TUNE_DIR`, else
//! `$XDG_CACHE_HOME/vlbridge`, else `~/.cache/vlbridge`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dtype::{DType, HostVec};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Graph, Plan};
use crate::kernels::Family;
use crate::ops::{Attention, Epilogue};
use crate::tensor::Tensor;
use crate::timing::Timer;

/// One tuned choice: the fastest variant of `kernel` for problems of `class`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// The kernel (`linear`, `attention_flash`).
    pub kernel: String,
    /// The problem class (`thin`, `wide`, `all`).
    pub class: String,
    /// The fastest variant.
    pub variant: String,
    /// Every variant timed, (variant, median ms).
    pub timings: Vec<(String, f64)>,
}

/// The tune of one adapter, as cached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneTable {
    /// The adapter it was measured on.
    pub adapter: String,
    /// Its driver.
    pub driver: String,
    /// The choices.
    pub choices: Vec<Choice>,
}

impl TuneTable {
    /// (kernel, class, variant) of every choice.
    pub fn choices(&self) -> Vec<(String, String, String)> {
        self.choices.iter().map(|c| (c.kernel.clone(), c.class.clone(), c.variant.clone())).collect()
    }
}

/// The cache directory: `dir` when given, else `$VLBRIDGE_TUNE_DIR`, `$XDG_CACHE_HOME/vlbridge`,
/// `~/.cache/vlbridge`.
pub fn cache_dir(dir: Option<&Path>) -> Option<PathBuf> {
    if let Some(dir) = dir {
        return Some(dir.to_path_buf());
    }
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    env("VLBRIDGE_TUNE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("vlbridge")))
        .or_else(|| env("HOME").map(|h| h.join(".cache/vlbridge")))
}

/// The cache file of an adapter: its name, PCI ids and driver, made file-name safe.
pub fn cache_file(dir: &Path, info: &wgpu::AdapterInfo) -> PathBuf {
    let key = format!("{}-{:x}-{:x}-{:?}-{}", info.name, info.vendor, info.device, info.backend, info.driver_info);
    let safe: String = key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    dir.join(format!("tune-{safe}.json"))
}

/// The cached tune of `info`'s adapter in `dir`, if any (an unreadable file is no tune).
pub fn load(dir: &Path, info: &wgpu::AdapterInfo) -> Option<TuneTable> {
    let text = std::fs::read_to_string(cache_file(dir, info)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Problems timed per (kernel, class): sizes like the connectors' own, small enough that the
/// whole tune takes seconds.
const GEMM_CLASSES: [(&str, [usize; 3]); 2] = [("thin", [32, 768, 768]), ("wide", [256, 1024, 1024])];

/// Times every variant `gpu` can run and writes the table to `dir`'s cache file. `runs` timed
/// runs per variant after one warm-up.
pub fn measure(gpu: &Gpu, dir: &Path, runs: usize) -> Result<(TuneTable, PathBuf)> {
    let timer = Timer::new(gpu);
    let mut choices = Vec::new();
    for (class, [m, k, n]) in GEMM_CLASSES {
        let graph = gemm_graph(gpu, m, k, n)?;
        let inputs = [HostVec::F32(vec![0.5; m * k])];
        choices.push(fastest(gpu, "linear", class, &graph, &inputs, &timer, runs)?);
    }
    // The Q-Former's cross-attention: 12 heads of 64, 32 queries over 257 keys.
    let mut g = Graph::new();
    let q = g.input("q", &[1, 32, 768])?;
    let kv = g.input("kv", &[1, 257, 1536])?;
    let y = g.add(Attention::new(12, 64), &[q, kv])?;
    g.output(y)?;
    let inputs = [HostVec::F32(vec![0.1; 32 * 768]), HostVec::F32(vec![0.1; 257 * 1536])];
    choices.push(fastest(gpu, "attention_flash", "all", &g, &inputs, &timer, runs)?);
    let info = gpu.info();
    let table = TuneTable { adapter: info.name.clone(), driver: info.driver_info.clone(), choices };
    let path = cache_file(dir, info);
    let file_error = |e: std::io::Error| Error::File { path: path.display().to_string(), problem: e.to_string() };
    std::fs::create_dir_all(dir).map_err(file_error)?;
    // Written whole then renamed: a reader never sees half a table.
    let temp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(&table).map_err(|e| file_error(std::io::Error::other(e)))?;
    std::fs::write(&temp, text).map_err(file_error)?;
    std::fs::rename(&temp, &path).map_err(file_error)?;
    Ok((table, path))
}

fn gemm_graph(gpu: &Gpu, m: usize, k: usize, n: usize) -> Result<Graph> {
    let mut g = Graph::new();
    let x = g.input("x", &[m, k])?;
    let w = g.constant("w", &Tensor::from_data(gpu, &[n, k], DType::F32, (&vec![0.01f32; n * k][..]).into())?);
    let y = g.add(Epilogue::NONE, &[x, w])?;
    g.output(y)?;
    Ok(g)
}

/// Times `graph` with each variant of `kernel` forced; returns the fastest.
fn fastest(
    gpu: &Gpu,
    kernel: &str,
    class: &str,
    graph: &Graph,
    inputs: &[HostVec],
    timer: &Timer,
    runs: usize,
) -> Result<Choice> {
    let family = Family::find(kernel)?;
    let variants = family.alternatives().into_iter().filter(|v| family.runs(v, gpu.caps()));
    let data: Vec<_> = inputs.iter().map(HostVec::as_data).collect();
    let mut timings = Vec::new();
    for variant in variants {
        let forced = gpu.with_forced(kernel, variant);
        let Ok(plan) = Plan::new(&forced, graph) else { continue };
        plan.write_inputs(&data)?;
        plan.time(timer)?;
        let mut times = (0..runs.max(1)).map(|_| plan.time(timer)).collect::<Result<Vec<f64>>>()?;
        times.sort_by(f64::total_cmp);
        timings.push((variant.to_string(), times[times.len() / 2]));
    }
    let best = timings
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|t| t.0.clone())
        .ok_or_else(|| Error::Graph(format!("no variant of {kernel} runs here")))?;
    Ok(Choice { kernel: kernel.into(), class: class.into(), variant: best, timings })
}
