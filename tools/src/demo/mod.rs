//! `vlbridge demo`: every connector at its real size, timed and checked against the CPU reference.

use std::process::ExitCode;

mod towers;

use crate::util::{normal, time};
use crate::{families, synthetic, tokens};
use rand::SeedableRng;
use rand::rngs::StdRng;
use towers::tower_rows;
use vlbridge::connectors::{
    ConnectorPlan, GatedXAttnBlock, GatedXAttnConfig, LlavaProjector, PerceiverConfig, PerceiverResampler, QFormer,
    QFormerConfig,
};
use vlbridge::reference;
use vlbridge::timing::Timer;
use vlbridge::weights::Weights;
use vlbridge::{DType, Gpu, GpuOptions, Result};

#[derive(clap::Args)]
pub struct Args {
    /// LLaVA projector checkpoint (safetensors); random weights when absent.
    #[arg(long)]
    weights: Option<std::path::PathBuf>,
    /// `projector_hidden_act`: gelu or gelu_pytorch_tanh.
    #[arg(long, default_value = "gelu")]
    act: String,
    /// Vision tokens per image (576 = 24×24 patches of a 336 px image).
    #[arg(long, default_value_t = 576)]
    tokens: usize,
    /// Timed runs after the first.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Rows checked against the f64 CPU reference (spread evenly; 0 = all).
    #[arg(long, default_value_t = 48)]
    check_rows: usize,
    /// Also write the visual-token table as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Weight dtype of the random checkpoints: f32, f16 (activations f16 too, f32
    /// arithmetic; needs SHADER_F16) or bf16 (activations f32).
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16", "bf16"])]
    dtype: String,
    /// Also the vision towers at their checkpoints' sizes (minutes on a CPU rasteriser):
    /// timed at full depth, checked against the f64 reference one layer deep at full width.
    #[arg(long)]
    all: bool,
    /// Only the vision towers of `--all`, whose labels match this regular expression ("." for
    /// every one).
    #[arg(long)]
    towers: Option<String>,
    /// Run the towers this many layers deep instead of their full depth (the selected hidden
    /// states and Qwen's full-attention layers keep their place): minutes become seconds on a
    /// CPU rasteriser. The `layers` column says the depth run.
    #[arg(long)]
    tower_layers: Option<usize>,
    /// Store the towers' activations as f16 (f32 arithmetic; needs SHADER_F16): Qwen2.5-VL's
    /// QKV activation at 1344 px is 141 MiB in f32, past lavapipe's 128 MiB storage binding.
    /// The one-layer check then allows f16 storage's rounding (1e-2).
    #[arg(long)]
    tower_f16: bool,
    /// Also plan each tower with its rotary turn as a node of its own after the QKV GEMM
    /// (`rope=separate`) and time it interleaved with the fused plan: the measurement behind
    /// fusing the turn into the GEMM's epilogue. Towers without a turn time the same plan twice.
    #[arg(long)]
    rope_separate: bool,
}

impl Args {
    /// (weight dtype, activation dtype).
    fn dtypes(&self) -> (DType, DType) {
        match self.dtype.as_str() {
            "f16" => (DType::F16, DType::F16),
            "bf16" => (DType::BF16, DType::F32),
            _ => (DType::F32, DType::F32),
        }
    }

    /// (atol, rtol) against the f64 reference, which sees the same stored weights and inputs:
    /// f32 activations differ by f32 rounding (≈1e-6 here, 1e-3 held); f16 activations round
    /// every stored intermediate to 2⁻¹¹ relative and the next GEMM sums √K of those errors
    /// (K = 4096: ≈ 3·10⁻³ of a unit output), so 1e-2.
    fn tolerance(&self) -> (f64, f64) {
        if self.dtypes().1 == DType::F16 { (1e-2, 1e-2) } else { (1e-3, 1e-3) }
    }
}

/// One row of the demo table.
struct Row {
    connector: String,
    tokens_in: usize,
    tokens_out: usize,
    first_ms: f64,
    median_ms: f64,
    gflops: f64,
    max_abs: f64,
    max_rel: f64,
    passed: bool,
}

impl Row {
    /// A row from its token counts (in, out), first and median times, FLOPs and check.
    fn new(connector: String, tokens: (usize, usize), ms: (f64, f64), flops: f64, c: &reference::Comparison) -> Self {
        Self {
            connector,
            tokens_in: tokens.0,
            tokens_out: tokens.1,
            first_ms: ms.0,
            median_ms: ms.1,
            gflops: flops / (ms.1 * 1e6),
            max_abs: c.max_abs,
            max_rel: c.max_rel,
            passed: c.passed(),
        }
    }
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let gpu = Gpu::with_options(&GpuOptions::from_env()?)?;
    println!("adapter: {}", gpu.describe());
    // A driver that truncates loops would make every number below wrong: refuse it up front.
    vlbridge::diagnostics::check_driver(&gpu)?;
    if let Some(pattern) = &args.towers {
        tower_rows(&gpu, args, pattern)?;
        return Ok(ExitCode::SUCCESS);
    }
    let (weights, activations) = args.dtypes();
    println!("weights {weights}, activations {activations} (f32 arithmetic)");
    let (llava_row, projector) = llava(&gpu, args)?;
    let (qformer_row, qformer) = qformer(&gpu, args)?;
    let (perceiver_row, perceiver) = perceiver(&gpu, args)?;
    let mut rows = vec![llava_row, qformer_row, perceiver_row, gated_xattn(&gpu, args)?];
    let mut token_rows = Vec::new();
    for family in families::all() {
        let (row, token_row) = family_row(&gpu, args, &family)?;
        rows.push(row);
        token_rows.push(token_row);
    }
    print_table(&rows);
    if args.all {
        tower_rows(&gpu, args, ".")?;
    }
    let connectors = tokens::Connectors { projector: &projector, qformer: &qformer, perceiver: &perceiver };
    tokens::run(&gpu, args.runs.clamp(1, 3), &connectors, token_rows, args.json.as_deref())?;
    Ok(if rows.iter().all(|r| r.passed) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn llava(gpu: &Gpu, args: &Args) -> Result<(Row, LlavaProjector)> {
    let act = LlavaProjector::activation(&args.act)?;
    let mut rng = StdRng::seed_from_u64(0x11a7a);
    // LLaVA-1.5: CLIP ViT-L/14 (1024) -> 4096 -> Vicuna-7B (4096).
    let (dtype, activations) = args.dtypes();
    let weights = match &args.weights {
        Some(path) => Weights::open(path)?,
        None => synthetic::checkpoint(&mut rng, &LlavaProjector::state_dict([1024, 4096, 4096], true), &[], dtype)?,
    };
    let projector = LlavaProjector::from_weights(gpu, &weights, act)?.with_activations(activations);
    drop(weights);
    let [v, h, t] = projector.dims();
    let x = normal(&mut rng, args.tokens * v, 1.0);
    let wall = Timer::wall_clock(gpu);
    let ((plan, y), first_ms, median_ms) = time(
        args.runs,
        || {
            let plan = projector.plan(gpu, 1, args.tokens)?;
            let y = plan.project(&x)?;
            Ok((plan, y))
        },
        |(plan, _)| plan.plan().time(&wall).map(|_| ()),
    )?;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "llava plan: dispatches {:?}, activation buffers {:.1} MiB (peak), weights {:.1} MiB",
        plan.plan().dispatches(),
        mib(plan.plan().activation_bytes()),
        mib(plan.plan().constant_bytes())
    );
    // The projector is row-wise: the graph reference of the same projector on the sampled
    // rows is the reference of those rows (an f64 reference of all 576 is ~24 GFLOP).
    let rows = sample_rows(args.tokens, args.check_rows);
    let xs: Vec<f32> = rows.iter().flat_map(|&r| x[r * v..(r + 1) * v].iter().copied()).collect();
    let want = projector.plan(gpu, 1, rows.len())?.project_reference(&xs)?;
    let got: Vec<f32> = rows.iter().flat_map(|&r| y[r * t..(r + 1) * t].iter().copied()).collect();
    let (atol, rtol) = args.tolerance();
    let c = reference::compare(&got, &want, atol, rtol);
    let label = format!("LLaVA MLP {v}->{h}->{t} ({})", args.act);
    let row = Row::new(label, (args.tokens, args.tokens), (first_ms, median_ms), plan.plan().cost().flops, &c);
    Ok((row, projector))
}

/// Times a single-input connector plan on `x` and checks it against its f64 graph reference.
fn connector_row(
    gpu: &Gpu,
    label: String,
    tokens_in: usize,
    args: &Args,
    plan: impl FnOnce() -> Result<ConnectorPlan>,
    x: &[f32],
) -> Result<Row> {
    let wall = Timer::wall_clock(gpu);
    let ((p, y), first_ms, median_ms) = time(
        args.runs,
        || {
            let p = plan()?;
            let y = p.project(x)?;
            Ok((p, y))
        },
        |(p, _)| p.plan().time(&wall).map(|_| ()),
    )?;
    let (atol, rtol) = args.tolerance();
    let c = reference::compare(&y, &p.project_reference(x)?, atol, rtol);
    let [.., tokens, _] = p.output_shape()[..] else {
        return Err(vlbridge::Error::Graph("connector output has rank < 2".into()));
    };
    Ok(Row::new(label, (tokens_in, tokens), (first_ms, median_ms), p.plan().cost().flops, &c))
}

/// BLIP-2 (ViT-g/14, OPT / Flan-T5): 32 queries of 768 over 257 tokens of 1408, 12 layers.
fn qformer(gpu: &Gpu, args: &Args) -> Result<(Row, QFormer)> {
    let mut rng = StdRng::seed_from_u64(0xb11b2);
    let config = QFormerConfig::default();
    let (queries, hidden, encoder, layers, tokens) =
        (config.num_query_tokens, config.hidden_size, config.encoder_hidden_size, config.num_hidden_layers, 257);
    let (dtype, activations) = args.dtypes();
    let weights = synthetic::checkpoint(&mut rng, &QFormer::state_dict(&config), &[], dtype)?;
    let model = QFormer::from_weights(gpu, &weights, config)?.with_activations(activations);
    drop(weights);
    let x = normal(&mut rng, tokens * encoder, 1.0);
    let label = format!("Q-Former {queries}x{hidden}, {layers} layers");
    Ok((connector_row(gpu, label, tokens, args, || model.plan(gpu, 1, tokens), &x)?, model))
}

/// OpenFlamingo's resampler over CLIP ViT-L/14 tokens: 64 latents of 1024, depth 6, 8 heads
/// of 64 (open_flamingo's defaults), 257 tokens.
fn perceiver(gpu: &Gpu, args: &Args) -> Result<(Row, PerceiverResampler)> {
    let mut rng = StdRng::seed_from_u64(0xf1a60);
    let config = PerceiverConfig::default();
    let (latents, dim, depth, tokens) = (config.num_latents, config.dim, config.depth, 257);
    let (dtype, activations) = args.dtypes();
    let weights = synthetic::checkpoint(&mut rng, &PerceiverResampler::state_dict(&config, "perceiver."), &[], dtype)?;
    let model = PerceiverResampler::from_weights(gpu, &weights, config)?.with_activations(activations);
    drop(weights);
    let x = normal(&mut rng, tokens * dim, 1.0);
    let label = format!("Perceiver {latents}x{dim}, depth {depth}");
    Ok((connector_row(gpu, label, tokens, args, || model.plan(gpu, 1, tokens), &x)?, model))
}

/// OpenFlamingo-9B's gated cross-attention layer: text of 4096 (64 tokens, an image token
/// first) over one image of 64 latents of 1024; 8 heads of 64; gates 0.3 / -0.7 (0 at init
/// would make the block an identity and the check trivial).
fn gated_xattn(gpu: &Gpu, args: &Args) -> Result<Row> {
    let mut rng = StdRng::seed_from_u64(0x6a7ed);
    let config = GatedXAttnConfig::default();
    let (dim, visual, text, latents) = (config.dim, config.dim_visual, 64, 64);
    let prefix = "lang_encoder.gated_cross_attn_layers.0.";
    let (attn_gate, ff_gate) = (format!("{prefix}attn_gate"), format!("{prefix}ff_gate"));
    let (dtype, activations) = args.dtypes();
    let layout = GatedXAttnBlock::state_dict(&config, prefix);
    let weights = synthetic::checkpoint(&mut rng, &layout, &[(&attn_gate, 0.3), (&ff_gate, -0.7)], dtype)?;
    let block = GatedXAttnBlock::from_weights(gpu, &weights, prefix, config)?.with_activations(activations);
    drop(weights);
    let x = normal(&mut rng, text * dim, 1.0);
    let media = normal(&mut rng, latents * visual, 1.0);
    let mut locations = vec![0u8; text];
    locations[0] = 1;
    let inputs = block.inputs([1, text, 1, latents], &x, &media, &locations)?;
    let wall = Timer::wall_clock(gpu);
    let ((p, y), first_ms, median_ms) = time(
        args.runs,
        || {
            let p = block.plan(gpu, 1, text, 1, latents)?;
            let y = p.run(&inputs)?.remove("hidden_states").map(|t| t.data.into_f32()).unwrap_or_default();
            Ok((p, y))
        },
        |(p, _)| p.plan().time(&wall).map(|_| ()),
    )?;
    let (atol, rtol) = args.tolerance();
    let want = p.reference(&inputs)?.remove("hidden_states").map(|t| t.1).unwrap_or_default();
    let c = reference::compare(&y, &want, atol, rtol);
    let label = format!("Gated x-attn {dim} over {latents}x{visual}");
    Ok(Row::new(label, (latents, text), (first_ms, median_ms), p.plan().cost().flops, &c))
}

/// A family of current VLMs at its real size: timed, checked against the f64 reference of its
/// whole graph, and its row of the visual-token table.
fn family_row(gpu: &Gpu, args: &Args, family: &families::Workload) -> Result<(Row, tokens::Row)> {
    let (weights, activations) = args.dtypes();
    let wall = Timer::wall_clock(gpu);
    let ((sized, y), first_ms, median_ms) = time(
        args.runs,
        || {
            let sized = (family.build)(gpu, weights, activations, false)?;
            let y = sized.plan.run(&sized.data())?.remove(0).into_f32();
            Ok((sized, y))
        },
        |(sized, _)| sized.plan.time(&wall).map(|_| ()),
    )?;
    let want = sized.graph.reference(&sized.data())?.remove(0);
    let (atol, rtol) = args.tolerance();
    let c = reference::compare(&y, &want, atol, rtol);
    let flops = sized.plan.cost().flops;
    let token_row = tokens::Row {
        connector: family.label.to_string(),
        image: family.image,
        tokens_in: sized.tokens.0,
        tokens_out: family.in_context.then_some(sized.tokens.1),
        gpu_ms: median_ms,
        gflop: flops / 1e9,
    };
    Ok((Row::new(family.label.to_string(), sized.tokens, (first_ms, median_ms), flops, &c), token_row))
}

fn sample_rows(total: usize, wanted: usize) -> Vec<usize> {
    if wanted == 0 || wanted >= total {
        return (0..total).collect();
    }
    let mut rows: Vec<usize> = (0..wanted).map(|i| i * (total - 1) / (wanted - 1).max(1)).collect();
    rows.dedup();
    rows
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<40} {:>9} {:>10} {:>10} {:>11} {:>9} {:>10} {:>10}  check",
        "connector", "tokens in", "tokens out", "first ms", "median ms", "GFLOP/s", "max abs", "max rel"
    );
    for r in rows {
        println!(
            "{:<40} {:>9} {:>10} {:>10.1} {:>11.1} {:>9.2} {:>10.2e} {:>10.2e}  {}",
            r.connector,
            r.tokens_in,
            r.tokens_out,
            r.first_ms,
            r.median_ms,
            r.gflops,
            r.max_abs,
            r.max_rel,
            if r.passed { "ok" } else { "FAIL" }
        );
    }
}
