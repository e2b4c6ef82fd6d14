//! `vlbridge bench`: every kernel and connector at its real size on every adapter of the chosen
//! backends, each row placed against that adapter's measured ceilings (a roofline).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use vlbridge::diagnostics::{self, Ceilings};
use vlbridge::gpu::{list_adapters, parse_backends};
use vlbridge::kernels::KernelFamily;
use vlbridge::timing::{Clock, Timer};
use vlbridge::{Error, Gpu, GpuOptions, Result};

use crate::cases;
use crate::util::{median, write};

#[derive(clap::Args)]
pub struct Args {
    /// vulkan, metal, dx12, gl or all.
    #[arg(long, default_value = "all")]
    backend: String,
    /// Only cases whose `kernel/shape` matches this regular expression.
    #[arg(long)]
    filter: Option<String>,
    /// Leave out the cases whose `kernel/shape` matches this regular expression (`^tower/`:
    /// the real-size vision paths, which build gigabytes of random weights first).
    #[arg(long)]
    skip: Option<String>,
    /// Write every row as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the tables as Markdown.
    #[arg(long)]
    md: Option<PathBuf>,
    /// Draw the roofline (intensity vs achieved GFLOP/s, the two ceilings) as SVG.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// 3 timed runs per case after at least 0.1 s of warm-up, instead of 10 after 0.3 s.
    #[arg(long)]
    quick: bool,
    /// Also time every single-kernel row under each variant of its kernel the adapter runs
    /// (forced), beside the row of the adapter's own choice.
    #[arg(long)]
    variants: bool,
}

struct Row {
    kernel: &'static str,
    shape: String,
    dispatches: usize,
    /// `kernel=variant` of every kernel with a per-adapter choice in the plan.
    variants: String,
    median_ms: f64,
    min_ms: f64,
    max_ms: f64,
    flops: f64,
    bytes: f64,
}

impl Row {
    fn gflops(&self) -> f64 {
        self.flops / (self.median_ms * 1e6)
    }
    fn gbps(&self) -> f64 {
        self.bytes / (self.median_ms * 1e6)
    }
    fn intensity(&self) -> f64 {
        self.flops / self.bytes.max(1.0)
    }
    /// Achieved rate over what the roofline allows at this intensity (bandwidth for
    /// zero-FLOP gathers).
    fn fraction(&self, c: &Ceilings) -> f64 {
        if self.flops == 0.0 { self.gbps() / c.gbps } else { self.gflops() / c.bound(self.intensity()) }
    }
}

struct AdapterReport {
    name: String,
    backend: String,
    device_type: String,
    driver: String,
    clock: Clock,
    ceilings: Ceilings,
    rows: Vec<Row>,
}

const BACKENDS: [&str; 4] = ["vulkan", "metal", "dx12", "gl"];

pub fn run(args: &Args) -> Result<ExitCode> {
    let pattern = |flag: &str, value: &Option<String>| {
        value.as_deref().map(regex::Regex::new).transpose().map_err(|e| Error::Graph(format!("--{flag}: {e}")))
    };
    let filter = Selection { keep: pattern("filter", &args.filter)?, skip: pattern("skip", &args.skip)? };
    let backends: Vec<&str> = if args.backend == "all" { BACKENDS.to_vec() } else { vec![args.backend.as_str()] };
    let (mut reports, mut absent) = (Vec::new(), Vec::new());
    for backend in backends {
        let adapters = list_adapters(parse_backends(backend)?);
        if adapters.is_empty() {
            println!("backend {backend}: absent on this machine");
            absent.push(backend.to_string());
            continue;
        }
        for adapter in adapters {
            let name = adapter.get_info().name;
            let options = GpuOptions {
                backends: parse_backends(backend)?,
                adapter_name: Some(name.clone()),
                ..GpuOptions::from_env()?
            };
            match Gpu::with_options(&options).and_then(|gpu| bench_adapter(&gpu, backend, args, &filter)) {
                Ok(report) => reports.push(report),
                Err(e) => println!("{backend} / {name}: skipped: {e}"),
            }
        }
    }
    if let Some(path) = &args.json {
        write(path, &serde_json::to_string_pretty(&to_json(&reports, &absent)).unwrap_or_default())?;
    }
    if let Some(path) = &args.md {
        write(path, &markdown(&reports, &absent))?;
    }
    if let Some(path) = &args.plot {
        crate::roofline_plot::draw(path, &reports.iter().map(plot_series).collect::<Vec<_>>())?;
        println!("wrote {}", path.display());
    }
    Ok(if reports.is_empty() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Which `kernel/shape` rows run: those `keep` matches (all without it) and `skip` does not.
struct Selection {
    keep: Option<regex::Regex>,
    skip: Option<regex::Regex>,
}

impl Selection {
    fn runs(&self, row: &str) -> bool {
        self.keep.as_ref().is_none_or(|f| f.is_match(row)) && !self.skip.as_ref().is_some_and(|s| s.is_match(row))
    }
}

fn bench_adapter(gpu: &Gpu, backend: &str, args: &Args, filter: &Selection) -> Result<AdapterReport> {
    let info = gpu.info().clone();
    println!("\n{backend} / {}", gpu.describe());
    diagnostics::check_driver(gpu)?;
    let timer = Timer::new(gpu);
    let clock = timer.clock();
    let ceilings = diagnostics::measure_ceilings(gpu, &timer, if args.quick { 20.0 } else { 50.0 })?;
    println!(
        "clock: {}; measured ceilings: {:.1} GFLOP/s FMA, {:.1} GB/s copy",
        match clock {
            Clock::Timestamps => "GPU timestamps around the pass",
            Clock::WallClock => "wall clock around submit and wait (no timestamp queries)",
        },
        ceilings.gflops,
        ceilings.gbps
    );
    let (warmup, runs) = if args.quick { (1, 3) } else { (2, 10) };
    let warm_for = Duration::from_millis(if args.quick { 100 } else { 300 });
    let cases: Vec<_> =
        cases::all().into_iter().filter(|c| filter.runs(&format!("{}/{}", c.kernel, c.shape))).collect();
    let bar = ProgressBar::new(cases.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut rows = Vec::new();
    for case in cases {
        bar.set_message(format!("{}/{}", case.kernel, case.shape));
        let mut devices = vec![gpu.clone()];
        if args.variants {
            devices.extend(variants_of(gpu, case.kernel).into_iter().map(|v| gpu.with_forced(case.kernel, v)));
        }
        let mut timed: Vec<String> = Vec::new();
        for device in &devices {
            let built = match (case.build)(device) {
                Ok(built) => built,
                // f16 weights on a device without SHADER_F16 (or a variant refusing the case):
                // said, not fatal.
                Err(e @ Error::Unsupported { .. }) => {
                    bar.suspend(|| println!("skipped {}/{}: {e}", case.kernel, case.shape));
                    continue;
                }
                Err(e) => return Err(e),
            };
            // A forced variant that is the adapter's own choice is timed once.
            let variants = chosen_variants(&built.plan);
            if timed.contains(&variants) {
                continue;
            }
            timed.push(variants);
            rows.push(time_row(&case, &built, &timer, warmup, runs, warm_for)?);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let report = AdapterReport {
        name: info.name.clone(),
        backend: backend.to_string(),
        device_type: format!("{:?}", info.device_type),
        driver: format!("{} {}", info.driver, info.driver_info),
        clock,
        ceilings,
        rows,
    };
    print!("{}", table(&report));
    Ok(report)
}

/// The variants of `kernel` that `gpu` can run, when it has a choice.
fn variants_of(gpu: &Gpu, kernel: &str) -> Vec<&'static str> {
    let Ok(family) = KernelFamily::find(kernel) else { return Vec::new() };
    family.alternatives().into_iter().filter(|v| family.runs(v, gpu.caps())).collect()
}

/// `kernel=variant` of each dispatch whose kernel has a per-adapter choice, once each.
fn chosen_variants(plan: &vlbridge::Plan) -> String {
    let mut seen: Vec<String> = Vec::new();
    for (kernel, spec) in plan.dispatches().into_iter().zip(plan.variants()) {
        let Ok(family) = KernelFamily::find(kernel) else { continue };
        let variant = family.specs.iter().find(|s| s.name == spec).map(|s| s.variant);
        let entry = format!("{kernel}={}", variant.unwrap_or(spec));
        if !family.alternatives().is_empty() && !seen.contains(&entry) {
            seen.push(entry);
        }
    }
    seen.join(" ")
}

fn time_row(
    case: &cases::Row,
    built: &cases::Built,
    timer: &Timer,
    warmup: usize,
    runs: usize,
    warm_for: Duration,
) -> Result<Row> {
    built.plan.write_inputs(&built.data())?;
    // A GPU that idled while the host built the case (random checkpoints take seconds) has
    // lowered its clocks, and a couple of millisecond runs do not raise them again (on an
    // H200 the same projector timed 2.4 or 6.3 ms by what ran before): warm up for a
    // minimum time too.
    let started = Instant::now();
    let mut warmed = 0;
    while warmed < warmup || started.elapsed() < warm_for {
        built.plan.time(timer)?;
        warmed += 1;
    }
    let mut times = (0..runs).map(|_| built.plan.time(timer)).collect::<Result<Vec<f64>>>()?;
    let cost = built.plan.cost();
    let median_ms = median(&mut times).unwrap_or(f64::NAN);
    Ok(Row {
        kernel: case.kernel,
        shape: case.shape.clone(),
        dispatches: built.plan.dispatches().len(),
        variants: chosen_variants(&built.plan),
        median_ms,
        min_ms: times.first().copied().unwrap_or(f64::NAN),
        max_ms: times.last().copied().unwrap_or(f64::NAN),
        flops: cost.flops,
        bytes: cost.bytes,
    })
}

fn table(r: &AdapterReport) -> String {
    let mut out = String::from(
        "| kernel | shape | dispatches | variants | median ms | min ms | max ms | GFLOP/s | GB/s | FLOP/B | of ceiling |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in &r.rows {
        out += &format!(
            "| {} | {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.2} | {:.2} | {:.2} | {:.1}% |\n",
            row.kernel,
            row.shape,
            row.dispatches,
            row.variants,
            row.median_ms,
            row.min_ms,
            row.max_ms,
            row.gflops(),
            row.gbps(),
            row.intensity(),
            100.0 * row.fraction(&r.ceilings)
        );
    }
    out
}

fn markdown(reports: &[AdapterReport], absent: &[String]) -> String {
    let mut out = String::new();
    for r in reports {
        out += &format!(
            "## {} ({}, {})\n\nDriver: {}. Clock: {}. Measured ceilings: {:.1} GFLOP/s (FMA), {:.1} GB/s (copy).\n\n",
            r.name,
            r.backend,
            r.device_type,
            r.driver,
            if r.clock == Clock::Timestamps { "GPU timestamps" } else { "wall clock" },
            r.ceilings.gflops,
            r.ceilings.gbps
        );
        out += &table(r);
        out += "\n";
    }
    if !absent.is_empty() {
        out += &format!("Backends absent on this machine: {}.\n", absent.join(", "));
    }
    out
}

fn to_json(reports: &[AdapterReport], absent: &[String]) -> Value {
    json!({
        "adapters": reports.iter().map(|r| json!({
            "adapter": r.name,
            "backend": r.backend,
            "device_type": r.device_type,
            "driver": r.driver,
            "clock": if r.clock == Clock::Timestamps { "timestamps" } else { "wall_clock" },
            "ceilings": { "gflops": r.ceilings.gflops, "gbps": r.ceilings.gbps },
            "rows": r.rows.iter().map(|row| json!({
                "kernel": row.kernel,
                "shape": row.shape,
                "dispatches": row.dispatches,
                "variants": row.variants,
                "median_ms": row.median_ms,
                "min_ms": row.min_ms,
                "max_ms": row.max_ms,
                "gflops": row.gflops(),
                "gbps": row.gbps(),
                "intensity": row.intensity(),
                "ceiling_fraction": row.fraction(&r.ceilings),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "absent_backends": absent,
    })
}

fn plot_series(r: &AdapterReport) -> crate::roofline_plot::Series {
    crate::roofline_plot::Series {
        label: format!("{} ({})", r.name, r.backend),
        ceilings: r.ceilings,
        points: r
            .rows
            .iter()
            .filter(|row| row.flops > 0.0)
            .map(|row| (row.kernel.to_string(), row.intensity(), row.gflops()))
            .collect(),
    }
}
