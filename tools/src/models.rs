//! `vlbridge run` and `vlbridge inspect`: Hugging Face model directories as they are.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use safetensors::tensor::TensorView;
use vlbridge::models::{self, LoadOptions, Tensors};
use vlbridge::preprocess::{self, Preprocessor};
use vlbridge::{DType, Gpu, GpuOptions, HostVec, Result};

use crate::util::{file_error, peak_rss};

#[derive(clap::Args)]
pub struct RunArgs {
    /// The model directory (config.json and safetensors shards).
    #[arg(long)]
    model: PathBuf,
    /// The inputs, by name, in a safetensors file: the processor's outputs (`pixel_values`, ..)
    /// run tower and connector, `image_features` the connector alone.
    #[arg(long, required_unless_present = "image", conflicts_with = "image")]
    input: Option<PathBuf>,
    /// Image files (PNG, JPEG, WebP, GIF): the directory's image processor, then tower and
    /// connector. Repeat for several images.
    #[arg(long)]
    image: Vec<PathBuf>,
    /// Where the outputs go, by name (written whole or not at all).
    #[arg(long)]
    output: PathBuf,
    /// Weights as stored when absent; f32 (weights widened), f16 (f16 weights and
    /// activations; needs SHADER_F16) or bf16 (bf16 weights, f32 activations).
    #[arg(long, value_parser = ["f32", "f16", "bf16"])]
    dtype: Option<String>,
    /// Print one JSON object instead of the report: each stage's milliseconds (decode,
    /// preprocess, tower, connector; the last two from a second, per-dispatch timed run) and
    /// the outputs' shapes.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct InspectArgs {
    /// The model directory.
    dir: PathBuf,
}

#[derive(clap::Args)]
pub struct PreprocessArgs {
    /// The model directory (its preprocessor_config.json).
    #[arg(long)]
    model: PathBuf,
    /// Image files; repeat for several.
    #[arg(long, required = true)]
    image: Vec<PathBuf>,
    /// Where the processor's outputs go, under transformers' key names.
    #[arg(long)]
    output: PathBuf,
}

/// `vlbridge preprocess`: what the family's processor returns for the images, as transformers'
/// Pillow backend computes it, to diff against Python.
pub fn preprocess(args: &PreprocessArgs) -> Result<ExitCode> {
    let processor = Preprocessor::from_pretrained(&args.model)?;
    let started = Instant::now();
    let images = decode_all(&args.image)?;
    let decode_ms = elapsed_ms(started);
    let started = Instant::now();
    let outputs = processor.process(&images)?;
    let preprocess_ms = elapsed_ms(started);
    write_outputs(&args.output, &outputs)?;
    println!("{}: decode {decode_ms:.0} ms, preprocess {preprocess_ms:.0} ms", processor.class());
    for (name, t) in &outputs {
        println!("  {name}: {:?}", t.shape);
    }
    println!("wrote {}", args.output.display());
    Ok(ExitCode::SUCCESS)
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
    let say = |line: String| {
        if !args.json {
            println!("{line}");
        }
    };
    let inspection = models::inspect(&args.model)?;
    // Decoded before anything is loaded: a bad file fails fast and names itself.
    let started = Instant::now();
    let images = decode_all(&args.image)?;
    let decode_ms = elapsed_ms(started);
    let inputs = match &args.input {
        Some(path) => Some(models::read_tensors(path)?),
        None => None,
    };
    let gpu = Gpu::with_options(&GpuOptions::from_env()?)?;
    say(format!("adapter: {}", gpu.describe()));
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
    let started = Instant::now();
    let model = models::from_pretrained_with(&gpu, &args.model, &options)?;
    let load_ms = elapsed_ms(started);
    bar.finish_and_clear();
    say(format!("{}: {}", inspection.family.model_type(), inspection.connector));
    let started = Instant::now();
    let inputs = match inputs {
        Some(inputs) => inputs,
        None => model.preprocess(&images)?,
    };
    let preprocess_ms = elapsed_ms(started);
    let started = Instant::now();
    let outputs = model.run(&inputs)?;
    let run_ms = elapsed_ms(started);
    write_outputs(&args.output, &outputs)?;
    if args.json {
        let profile = model.profile(&inputs)?;
        let stage_ms = |tower: bool| -> f64 {
            profile.iter().filter(|d| (d.stage.as_deref() == Some("tower")) == tower).map(|d| d.ms).sum()
        };
        let shapes: serde_json::Map<String, serde_json::Value> =
            outputs.iter().map(|(name, t)| (name.clone(), serde_json::json!(t.shape))).collect();
        let report = serde_json::json!({
            "adapter": gpu.describe(),
            "family": inspection.family.model_type(),
            "images": images.len(),
            "decode_ms": decode_ms,
            "load_ms": load_ms,
            "preprocess_ms": preprocess_ms,
            "run_ms": run_ms,
            "tower_ms": stage_ms(true),
            "connector_ms": stage_ms(false),
            "dispatches": profile.len(),
            "outputs": shapes,
            "output": args.output.display().to_string(),
        });
        println!("{report}");
        return Ok(ExitCode::SUCCESS);
    }
    for (name, t) in &outputs {
        say(format!("  {name}: {:?}", t.shape));
    }
    say(format!("wrote {}", args.output.display()));
    print_rss();
    Ok(ExitCode::SUCCESS)
}

/// Decodes every image, with a progress bar over many.
fn decode_all(paths: &[PathBuf]) -> Result<Vec<preprocess::Rgb8>> {
    let bar = if paths.len() > 1 { ProgressBar::new(paths.len() as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("decoding {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let images = paths
        .iter()
        .map(|path| {
            bar.set_message(path.display().to_string());
            let image = preprocess::decode(path);
            bar.inc(1);
            image
        })
        .collect();
    bar.finish_and_clear();
    images
}

fn elapsed_ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Writes `outputs` as f32 safetensors to a temporary file beside `path`, then renames it:
/// on any error nothing is left at `path`.
fn write_outputs(path: &Path, outputs: &Tensors) -> Result<()> {
    // Floats as f32; integers (sizes, masks, counts) as int64, as transformers returns them.
    let data: Vec<(String, Vec<usize>, safetensors::Dtype, Vec<u8>)> = outputs
        .iter()
        .map(|(name, t)| {
            let (dtype, bytes) = match &t.data {
                HostVec::U32(v) => {
                    let wide: Vec<i64> = v.iter().map(|&x| i64::from(x)).collect();
                    (safetensors::Dtype::I64, bytemuck::cast_slice(&wide).to_vec())
                }
                other => (safetensors::Dtype::F32, bytemuck::cast_slice(&other.clone().into_f32()).to_vec()),
            };
            (name.clone(), t.shape.clone(), dtype, bytes)
        })
        .collect();
    let views = data
        .iter()
        .map(|(name, shape, dtype, bytes)| {
            TensorView::new(*dtype, shape.clone(), bytes).map(|v| (name.as_str(), v)).map_err(|e| file_error(path, e))
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
