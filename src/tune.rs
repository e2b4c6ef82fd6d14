//! The optional measured tune: times every variant of each kernel family that has tune problems
//! (the GEMM's thin and wide, flash attention's) on this adapter, in seconds, and caches the
//! fastest per adapter on disk
//! ([`crate::tune_table`], which [`crate::Gpu::with_options`] reads: the kernels' choice
//! follows it ahead of their built-in heuristic, a forced variant still wins over both).

use std::path::{Path, PathBuf};

pub use crate::tune_table::{Choice, TuneTable, cache_dir, cache_file, load};

use crate::dtype::HostVec;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Graph, Plan};
use crate::kernels::{FAMILIES, KernelFamily};
use crate::timing::Timer;

/// Times every variant `gpu` can run of every kernel family with tune problems
/// (`KernelFamily::tune`, one per problem class) and writes the table to `dir`'s cache file.
/// `runs` timed runs per variant after one warm-up.
pub fn measure(gpu: &Gpu, dir: &Path, runs: usize) -> Result<(TuneTable, PathBuf)> {
    let timer = Timer::new(gpu);
    let mut choices = Vec::new();
    for family in FAMILIES.iter().filter(|f| !f.alternatives().is_empty()) {
        for problem in (family.tune)() {
            let case = (problem.build)()?;
            let graph = Graph::from_case(gpu, &case)?;
            let class = case.nodes.first().map_or("all", |n| {
                let metas: Vec<_> = n.inputs.iter().map(|&i| &case.metas[i]).collect();
                n.op.kernel().tune_class(&metas)
            });
            let inputs: Vec<HostVec> = case.tensors.into_iter().filter(|t| !t.constant).map(|t| t.data).collect();
            choices.push(fastest(gpu, family, class, &graph, &inputs, &timer, runs)?);
        }
    }
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

/// Times `graph` with each variant of `family` forced; returns the fastest.
fn fastest(
    gpu: &Gpu,
    family: &KernelFamily,
    class: &str,
    graph: &Graph,
    inputs: &[HostVec],
    timer: &Timer,
    runs: usize,
) -> Result<Choice> {
    let kernel = family.name;
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
