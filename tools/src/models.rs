//! `vlbridge run` and `vlbridge inspect`: Hugging Face model directories as they are.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use safetensors::tensor::TensorView;
use vlbridge::models::{self, LoadOptions, Tensors};
use vlbridge::{DType, Gpu, GpuOptions, Result};

use crate::util::{file_error, peak_rss};

#[derive(clap::Args)]
pub struct RunArgs {
    /// The model directory (config.json and safetensors shards).
    #[arg(long)]
    model: PathBuf,
    /// The connector's inputs, by name, in a safetensors file.
    #[arg(long)]
    input: PathBuf,
    /// Where the outputs go, by name (written whole or not at all).
    #[arg(long)]
    output: PathBuf,
    /// Weights as stored when absent; f32 (weights widened), f16 (f16 weights and
    /// activations; needs SHADER_F16) or bf16 (bf16 weights, f32 activations).
    #[arg(long, value_parser = ["f32", "f16", "bf16"])]
    dtype: Option<String>,
}

#[derive(clap::Args)]
pub struct InspectArgs {
    /// The model directory.
    dir: PathBuf,
}

pub fn inspect(args: &InspectArgs) -> Result<ExitCode> {
    let inspection = models::inspect(&args.dir)?;
    println!("{inspection}");
    print_rss();
    Ok(ExitCode::SUCCESS)
}

fn print_rss() {
    if let Some(mib) = peak_rss() {
        println!("  peak RSS: {mib:.1} MiB");
    }
}

pub fn run(args: &RunArgs) -> Result<ExitCode> {
    let inspection = models::inspect(&args.model)?;
    let inputs = models::read_tensors(&args.input)?;
    let gpu = Gpu::with_options(&GpuOptions::from_env()?)?;
    println!("adapter: {}", gpu.describe());
    let (weights, f16_activations) = match args.dtype.as_deref() {
        Some("f16") => (Some(DType::F16), true),
        Some(other) => (Some(DType::parse(other)?), false),
        None => (None, false),
    };
    let bar = ProgressBar::new(inspection.parameter_bytes() as u64);
    bar.set_style(
        ProgressStyle::with_template("reading {bar:30} {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let progress = bar.clone();
    let observer = Arc::new(move |name: &str, bytes: u64| {
        progress.set_message(name.to_string());
        progress.inc(bytes);
    });
    let options = LoadOptions { weights, f16_activations, observer: Some(observer) };
    let model = models::from_pretrained_with(&gpu, &args.model, &options)?;
    bar.finish_and_clear();
    println!("{}: {}", inspection.family.model_type(), inspection.connector);
    let outputs = model.run(&inputs)?;
    write_outputs(&args.output, &outputs)?;
    for (name, t) in &outputs {
        println!("  {name}: {:?}", t.shape);
    }
    println!("wrote {}", args.output.display());
    print_rss();
    Ok(ExitCode::SUCCESS)
}

/// Writes `outputs` as f32 safetensors to a temporary file beside `path`, then renames it:
/// on any error nothing is left at `path`.
fn write_outputs(path: &Path, outputs: &Tensors) -> Result<()> {
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = outputs
        .iter()
        .map(|(name, t)| (name.clone(), t.shape.clone(), bytemuck::cast_slice(&t.data.clone().into_f32()).to_vec()))
        .collect();
    let views = data
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.as_str(), v))
                .map_err(|e| file_error(path, e))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(views, None).map_err(|e| file_error(path, e))?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| file_error(path, "not a file path"))?;
    let temporary = dir.join(format!(".{}.{}.partial", name.to_string_lossy(), std::process::id()));
    let written = std::fs::write(&temporary, bytes).and_then(|()| std::fs::rename(&temporary, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(file_error(path, e));
    }
    Ok(())
}
