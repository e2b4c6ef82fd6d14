//! `vlbridge`: adapter info, the connector demo, golden parity checks.

mod bench;
mod cases;
mod demo;
mod families;
mod fuzz;
mod models;
mod roofline_plot;
mod synthetic;
mod tokens;
mod towers;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "vlbridge", version, about = "WGSL connector kernels for vision-language models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List adapters, backends, features and limits.
    Info {
        /// Backend to list: vulkan, metal, dx12, gl, all.
        #[arg(long, default_value = "all")]
        backend: String,
    },
    /// Run every connector at real size on the default adapter and check it against the CPU
    /// reference.
    Demo(demo::Args),
    /// Time every kernel and connector at real size on every adapter of the chosen backends,
    /// against each adapter's measured ceilings.
    Bench(bench::Args),
    /// Differential testing of every kernel against the f64 reference on random shapes and
    /// values; writes a reproducer per failure.
    Fuzz(fuzz::Args),
    /// Run a Hugging Face model directory's connector on named inputs; write the outputs.
    Run(models::RunArgs),
    /// What a model directory's image processor returns for images (transformers' key names).
    Preprocess(models::PreprocessArgs),
    /// Time every GEMM and attention variant on the default adapter (seconds) and cache the
    /// fastest per problem class; later runs on this adapter follow the cache.
    Tune {
        /// Cache directory (default: $VLBRIDGE_TUNE_DIR, $XDG_CACHE_HOME/vlbridge, ~/.cache/vlbridge).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// Timed runs per variant.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Describe a model directory's connector (no GPU, no tensor data read).
    Inspect(models::InspectArgs),
    /// Run every case of a golden manifest and compare with its stored outputs.
    Check {
        /// Path to manifest.json.
        #[arg(long)]
        manifest: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info { backend } => info(&backend),
        Command::Demo(args) => demo::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Fuzz(args) => fuzz::run(&args),
        Command::Check { manifest } => check(&manifest),
        Command::Run(args) => models::run(&args),
        Command::Preprocess(args) => models::preprocess(&args),
        Command::Inspect(args) => models::inspect(&args),
        Command::Tune { dir, runs } => tune(dir.as_deref(), runs),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn info(backend: &str) -> vlbridge::Result<ExitCode> {
    let adapters = vlbridge::gpu::list_adapters(vlbridge::gpu::parse_backends(backend)?);
    if adapters.is_empty() {
        println!("no adapters for backend `{backend}`");
        return Ok(ExitCode::FAILURE);
    }
    for adapter in adapters {
        let i = adapter.get_info();
        let l = adapter.limits();
        println!("{} [{:?}, {:?}]", i.name, i.backend, i.device_type);
        println!("  driver: {} {}", i.driver, i.driver_info);
        println!("  subgroup size: {}..{}", i.subgroup_min_size, i.subgroup_max_size);
        let f = adapter.features();
        for (name, flag) in [
            ("SHADER_F16", vlbridge::wgpu::Features::SHADER_F16),
            ("SUBGROUP", vlbridge::wgpu::Features::SUBGROUP),
            ("TIMESTAMP_QUERY", vlbridge::wgpu::Features::TIMESTAMP_QUERY),
            ("TIMESTAMP_QUERY_INSIDE_PASSES", vlbridge::wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
        ] {
            println!("  {name}: {}", if f.contains(flag) { "yes" } else { "no" });
        }
        println!("  max buffer size: {} MiB", l.max_buffer_size >> 20);
        println!("  max storage binding: {} MiB", l.max_storage_buffer_binding_size >> 20);
        println!("  max workgroups per dimension: {}", l.max_compute_workgroups_per_dimension);
        println!("  max invocations per workgroup: {}", l.max_compute_invocations_per_workgroup);
        println!("  max workgroup storage: {} KiB", l.max_compute_workgroup_storage_size >> 10);
    }
    Ok(ExitCode::SUCCESS)
}

fn tune(dir: Option<&std::path::Path>, runs: usize) -> vlbridge::Result<ExitCode> {
    // Measure with the built-in choices, not a previous tune's.
    let options = vlbridge::GpuOptions { use_tune: false, ..vlbridge::GpuOptions::from_env()? };
    let gpu = vlbridge::Gpu::with_options(&options)?;
    println!("adapter: {}", gpu.describe());
    let dir = vlbridge::tune::cache_dir(dir).ok_or_else(|| vlbridge::Error::Config {
        field: "tune directory".into(),
        problem: "no --dir, VLBRIDGE_TUNE_DIR, XDG_CACHE_HOME or HOME".into(),
    })?;
    let start = std::time::Instant::now();
    let (table, path) = vlbridge::tune::measure(&gpu, &dir, runs)?;
    for c in &table.choices {
        let timings: Vec<String> = c.timings.iter().map(|(v, ms)| format!("{v} {ms:.2} ms")).collect();
        println!("{:<16} {:<5} -> {:<9} ({})", c.kernel, c.class, c.variant, timings.join(", "));
    }
    println!("tuned in {:.1} s; cached at {}", start.elapsed().as_secs_f64(), path.display());
    Ok(ExitCode::SUCCESS)
}

fn check(manifest: &std::path::Path) -> vlbridge::Result<ExitCode> {
    let gpu = vlbridge::Gpu::with_options(&vlbridge::GpuOptions::from_env()?)?;
    println!("adapter: {}", gpu.describe());
    let reports = vlbridge::golden::check_manifest(&gpu, manifest)?;
    let summary = vlbridge::golden::Summary::of(&reports);
    for r in &reports {
        println!("{r}");
    }
    println!("{summary}");
    Ok(if summary.failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
