//! `vlbridge fuzz`: differential testing of every kernel of the registry against the f64
//! reference, on the random cases each kernel unit offers. A kernel's cases rotate over the
//! default device (its variant for this adapter), the same adapter with no optional features
//! (portable variants) and the default with each of its other variants forced (the GEMM's
//! workgroup-memory tiles and split-K, ..), so every variant is fuzzed here. Each failure is
//! written as a reproducer that `--replay` re-runs on the same device.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use vlbridge::kernels::{CaseRng, CaseTarget, KernelFamily};
use vlbridge::reference::Comparison;
use vlbridge::{Error, Gpu, GpuOptions, Graph, Plan, Result};

#[derive(clap::Args)]
pub struct Args {
    /// Run for this long (the default: 60 s).
    #[arg(long, conflicts_with = "cases")]
    seconds: Option<u64>,
    /// Run exactly this many cases, spread over the kernels.
    #[arg(long)]
    cases: Option<u64>,
    /// Seed of the whole run (random when absent; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Only this kernel.
    #[arg(long)]
    kernel: Option<String>,
    /// Re-run one reproducer written by an earlier run.
    #[arg(long)]
    replay: Option<PathBuf>,
    /// Where reproducers go.
    #[arg(long, default_value = "fuzz-failures")]
    out: PathBuf,
}

#[derive(Default)]
struct Stats {
    cases: u64,
    failures: u64,
    /// Largest error as a fraction of its tolerance among passing elements.
    worst: f64,
    /// The case that came closest to its tolerance, with its seed (`--replay` takes both).
    worst_case: String,
}

/// splitmix64: independent case seeds from the run seed and the case index.
fn case_seed(seed: u64, index: u64) -> u64 {
    let mut z = seed.wrapping_add(index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What one case ran and how it compared.
struct Outcome {
    description: String,
    comparison: Comparison,
}

/// Runs case `seed` of `family` on `gpu`.
fn run_case(gpu: &Gpu, family: &KernelFamily, seed: u64) -> Result<Outcome> {
    let fuzz = family.fuzz.ok_or_else(|| Error::Config {
        field: "kernel".into(),
        problem: format!("`{}` offers no fuzz cases", family.name),
    })?;
    let case = fuzz(&mut CaseRng::new(seed), &CaseTarget { shader_f16: gpu.caps().shader_f16 })?;
    // The case's own kernel: no lowering into others.
    let got = Plan::unlowered(gpu, &Graph::from_case(gpu, &case)?)?.run(&case.input_data())?;
    Ok(Outcome { comparison: case.check(&got)?, description: case.description })
}

/// A device the cases run on: the default adapter, the same with no optional features
/// (portable variants), or the default with one variant forced (`kernel=variant`), so every
/// variant of every kernel is fuzzed on lavapipe.
struct Device {
    label: String,
    gpu: Gpu,
}

fn devices() -> Result<Vec<Device>> {
    let options = GpuOptions::from_env()?;
    let mut devices = vec![
        Device { label: "default".into(), gpu: Gpu::with_options(&options)? },
        Device {
            label: "portable".into(),
            gpu: Gpu::with_options(&GpuOptions { minimal_features: true, ..options.clone() })?,
        },
    ];
    for family in KernelFamily::fuzzable() {
        for variant in family.alternatives() {
            let label = format!("{}={variant}", family.name);
            // A variant the adapter cannot run (the cooperative-matrix GEMM on lavapipe) is said, not fuzzed.
            if !family.runs(variant, devices[0].gpu.caps()) {
                println!("not fuzzed here: {label} (the adapter lacks what it needs)");
                continue;
            }
            let forced = options.clone().force(family.name, variant);
            devices.push(Device { label, gpu: Gpu::with_options(&forced)? });
        }
    }
    Ok(devices)
}

/// The devices `family`'s cases rotate over.
fn devices_for<'a>(devices: &'a [Device], family: &KernelFamily) -> Vec<&'a Device> {
    let prefix = format!("{}=", family.name);
    devices.iter().filter(|d| !d.label.contains('=') || d.label.starts_with(&prefix)).collect()
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let devices = devices()?;
    println!("adapter: {}", devices[0].gpu.describe());
    vlbridge::diagnostics::check_driver(&devices[0].gpu)?;
    if let Some(path) = &args.replay {
        return replay(&devices, path);
    }
    let kernels: Vec<&'static KernelFamily> = match &args.kernel {
        Some(k) => vec![KernelFamily::find(k)?],
        None => KernelFamily::fuzzable().collect(),
    };
    let seed = args.seed.unwrap_or_else(rand::random);
    let deadline = args.cases.is_none().then(|| Duration::from_secs(args.seconds.unwrap_or(60)));
    println!(
        "seed {seed}; {}",
        match (args.cases, deadline) {
            (Some(n), _) => format!("{n} cases"),
            (None, Some(d)) => format!("{} s", d.as_secs()),
            (None, None) => String::new(),
        }
    );
    let bar = ProgressBar::new(args.cases.unwrap_or(0));
    bar.set_style(
        ProgressStyle::with_template("{pos} cases, {per_sec}, {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut stats: BTreeMap<&str, Stats> = kernels.iter().map(|k| (k.name, Stats::default())).collect();
    let start = Instant::now();
    let mut index = 0u64;
    loop {
        let done = match (args.cases, deadline) {
            (Some(n), _) => index >= n,
            (None, Some(d)) => start.elapsed() >= d,
            (None, None) => true,
        };
        if done {
            break;
        }
        let family = kernels[(index % kernels.len() as u64) as usize];
        let kernel = family.name;
        let rotation = devices_for(&devices, family);
        let device = rotation[((index / kernels.len() as u64) % rotation.len() as u64) as usize];
        let seed = case_seed(seed, index);
        index += 1;
        let entry = stats.entry(kernel).or_default();
        entry.cases += 1;
        match run_case(&device.gpu, family, seed) {
            Ok(o) if o.comparison.passed() => {
                if o.comparison.tolerance_used > entry.worst {
                    entry.worst = o.comparison.tolerance_used;
                    entry.worst_case = format!("seed {seed} on {}: {}", device.label, o.description);
                }
            }
            result => {
                entry.failures += 1;
                let (description, detail) = match result {
                    Ok(o) => (o.description, o.comparison.to_string()),
                    Err(e) => (String::from("(the case did not run)"), e.to_string()),
                };
                let path = write_reproducer(&args.out, kernel, seed, &device.label, &description, &detail)?;
                // suspend, not bar.println: a hidden bar (output not a terminal) drops println.
                bar.suspend(|| println!("FAIL {kernel} {description}\n  {detail}\n  reproducer: {}", path.display()));
            }
        }
        bar.inc(1);
        bar.set_message(kernel);
    }
    bar.finish_and_clear();
    let rate = index as f64 / start.elapsed().as_secs_f64().max(1e-9);
    println!("{index} cases in {:.1} s ({rate:.1} cases/s)", start.elapsed().as_secs_f64());
    println!("{:<18} {:>7} {:>9} {:>22}", "kernel", "cases", "failures", "worst error/tolerance");
    for (kernel, s) in &stats {
        println!("{kernel:<18} {:>7} {:>9} {:>22.3}", s.cases, s.failures, s.worst);
    }
    println!("closest to its tolerance, per kernel:");
    for (kernel, s) in stats.iter().filter(|(_, s)| !s.worst_case.is_empty()) {
        println!("  {kernel}: {}", s.worst_case);
    }
    Ok(if stats.values().any(|s| s.failures > 0) { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn write_reproducer(
    dir: &Path,
    kernel: &str,
    seed: u64,
    device: &str,
    description: &str,
    detail: &str,
) -> Result<PathBuf> {
    let file_error = |e: std::io::Error| Error::File { path: dir.display().to_string(), problem: e.to_string() };
    std::fs::create_dir_all(dir).map_err(file_error)?;
    let path = dir.join(format!("{kernel}-{seed}.json"));
    let doc = json!({ "kernel": kernel, "seed": seed, "device": device, "case": description, "failure": detail });
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap_or_default()).map_err(file_error)?;
    Ok(path)
}

fn replay(devices: &[Device], path: &Path) -> Result<ExitCode> {
    let file_error = |problem: String| Error::File { path: path.display().to_string(), problem };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| file_error(e.to_string()))?;
    let (Some(kernel), Some(seed)) = (doc["kernel"].as_str(), doc["seed"].as_u64()) else {
        return Err(file_error("needs `kernel` and `seed`".into()));
    };
    let label = doc["device"].as_str().unwrap_or("default");
    let device =
        devices.iter().find(|d| d.label == label).ok_or_else(|| file_error(format!("unknown device `{label}`")))?;
    let outcome = run_case(&device.gpu, KernelFamily::find(kernel)?, seed)?;
    println!("{kernel} seed {seed} (on {label}): {}", outcome.description);
    println!("{}", outcome.comparison);
    Ok(if outcome.comparison.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
