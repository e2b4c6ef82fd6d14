//! `attention` group: the flash kernel against the naive three-pass version that materialises
//! the scores, on the same adapter, at the BLIP-2 Q-Former and Flamingo Perceiver sizes; alone
//! and inside one full cross-attention block (LayerNorms, Q/K/V and output projections,
//! residual); and the flash kernel with f16 storage against f32. Throughput is in FLOP; each
//! plan's peak activation bytes go to stderr. The adapter comes from `VLBRIDGE_BACKEND` /
//! `VLBRIDGE_ADAPTER` (`GpuOptions::from_env`).

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vlbridge::ops::{Attention, Epilogue, LayerNorm, Pass, Residual};
use vlbridge::timing::Timer;
use vlbridge::{DType, Gpu, GpuOptions, Graph, HostData, Plan, Tensor, TensorId};

/// Deterministic values in [-scale, scale] (no RNG needed for timing).
fn ramp(n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|i| (((i * 7919) % 2001) as f32 / 1000.0 - 1.0) * scale).collect()
}

/// Adds the flash node, or the naive scores → softmax → weighted-sum passes.
fn attend(g: &mut Graph, cfg: Attention, q: TensorId, kv: &[TensorId], naive: bool) -> TensorId {
    let inputs = [&[q][..], kv].concat();
    if !naive {
        return g.add(cfg, &inputs).expect("flash");
    }
    let scores = g.add(cfg.naive(Pass::Scores), &inputs).expect("scores");
    let weights = g.add(cfg.naive(Pass::Softmax), &[scores]).expect("softmax");
    g.add(cfg.naive(Pass::WeightedSum), &[&[weights][..], kv].concat()).expect("weighted sum")
}

struct Size {
    label: &'static str,
    queries: usize,
    dim: usize,
    /// Key/value sources: (rows, width) of the media and, for the Perceiver, the latents.
    media: (usize, usize),
    latents_are_keys: bool,
    heads: u32,
    head_dim: u32,
    /// Q-Former projections have biases and a post-LN; the Perceiver's have neither.
    bert: bool,
}

const QFORMER: Size = Size {
    label: "qformer_32x768_over_257x1408_12x64",
    queries: 32,
    dim: 768,
    media: (257, 1408),
    latents_are_keys: false,
    heads: 12,
    head_dim: 64,
    bert: true,
};
const PERCEIVER: Size = Size {
    label: "perceiver_64x1024_over_257+64_16x64",
    queries: 64,
    dim: 1024,
    media: (257, 1024),
    latents_are_keys: true,
    heads: 16,
    head_dim: 64,
    bert: false,
};

fn constant(g: &mut Graph, gpu: &Gpu, name: &str, shape: &[usize]) -> TensorId {
    let n = shape.iter().product();
    let scale = if shape.len() == 2 { 1.0 / (shape[1] as f32).sqrt() } else { 0.1 };
    g.constant(name, &Tensor::from_f32(gpu, shape, &ramp(n, scale)).expect("weight"))
}

fn linear(
    g: &mut Graph,
    gpu: &Gpu,
    x: TensorId,
    out: usize,
    input: usize,
    bias: bool,
    residual: Option<TensorId>,
) -> TensorId {
    let mut inputs = vec![x, constant(g, gpu, "w", &[out, input])];
    if bias {
        inputs.push(constant(g, gpu, "b", &[out]));
    }
    inputs.extend(residual);
    let epilogue =
        Epilogue { bias, residual: if residual.is_some() { Residual::Add } else { Residual::None }, ..Epilogue::NONE };
    g.add(epilogue, &inputs).expect("linear")
}

fn layer_norm(g: &mut Graph, gpu: &Gpu, x: TensorId, dim: usize) -> TensorId {
    let (w, b) = (constant(g, gpu, "ln.w", &[dim]), constant(g, gpu, "ln.b", &[dim]));
    g.add(LayerNorm::new(1e-5), &[x, w, b]).expect("layer norm")
}

/// Attention alone over already projected q and K/V stored as `storage`; returns the graph
/// and its inputs' data.
fn attention_only(s: &Size, naive: bool, storage: DType) -> (Graph, Vec<Vec<f32>>) {
    let width = (s.heads * s.head_dim) as usize;
    let mut g = Graph::new();
    let q = g.input_as("q", &[1, s.queries, width], storage).expect("q");
    let mut kv = vec![g.input_as("kv_media", &[1, s.media.0, 2 * width], storage).expect("kv")];
    let mut data = vec![ramp(s.queries * width, 1.0), ramp(s.media.0 * 2 * width, 1.0)];
    let mut cfg = Attention::new(s.heads, s.head_dim);
    if s.latents_are_keys {
        kv.push(g.input_as("kv_latents", &[1, s.queries, 2 * width], storage).expect("kv"));
        data.push(ramp(s.queries * 2 * width, 1.0));
        cfg = cfg.two_sources();
    }
    let out = attend(&mut g, cfg, q, &kv, naive);
    g.output(out).expect("output");
    (g, data)
}

/// One cross-attention block: the Q-Former's (projections with bias, residual, post-LN) or
/// the Perceiver's (pre-LN on media and latents, K/V over both, residual).
fn block(gpu: &Gpu, s: &Size, naive: bool) -> (Graph, Vec<Vec<f32>>) {
    let width = (s.heads * s.head_dim) as usize;
    let mut g = Graph::new();
    let h = g.input("queries", &[1, s.queries, s.dim]).expect("queries");
    let media = g.input("media", &[1, s.media.0, s.media.1]).expect("media");
    let data = vec![ramp(s.queries * s.dim, 1.0), ramp(s.media.0 * s.media.1, 1.0)];
    let out = if s.bert {
        let q = linear(&mut g, gpu, h, width, s.dim, true, None);
        let kv = linear(&mut g, gpu, media, 2 * width, s.media.1, true, None);
        let a = attend(&mut g, Attention::new(s.heads, s.head_dim), q, &[kv], naive);
        let sum = linear(&mut g, gpu, a, s.dim, width, true, Some(h));
        layer_norm(&mut g, gpu, sum, s.dim)
    } else {
        let media_n = layer_norm(&mut g, gpu, media, s.dim);
        let latents_n = layer_norm(&mut g, gpu, h, s.dim);
        let q = linear(&mut g, gpu, latents_n, width, s.dim, false, None);
        let kv_media = linear(&mut g, gpu, media_n, 2 * width, s.dim, false, None);
        let kv_latents = linear(&mut g, gpu, latents_n, 2 * width, s.dim, false, None);
        let cfg = Attention::new(s.heads, s.head_dim).two_sources();
        let a = attend(&mut g, cfg, q, &[kv_media, kv_latents], naive);
        linear(&mut g, gpu, a, s.dim, width, false, Some(h))
    };
    g.output(out).expect("output");
    (g, data)
}

fn attention(c: &mut Criterion) {
    let gpu =
        Gpu::with_options(&GpuOptions::from_env().expect("VLBRIDGE_*")).expect("a GPU adapter (run scripts/setup.sh)");
    eprintln!("adapter: {}", gpu.describe());
    let tag = gpu.info().name.split_whitespace().next().unwrap_or("gpu").to_lowercase();
    let mut group = c.benchmark_group("attention");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    for size in [QFORMER, PERCEIVER] {
        // f16 storage of q, K/V and the output against f32, on the flash kernel.
        let f16 = gpu.caps().shader_f16;
        for (what, naive) in
            [("flash", false), ("flash_f16", false), ("naive", true), ("block_flash", false), ("block_naive", true)]
        {
            let storage = if what.ends_with("f16") { DType::F16 } else { DType::F32 };
            if storage == DType::F16 && !f16 {
                eprintln!("skipped {what}: no SHADER_F16 on {tag}");
                continue;
            }
            let (graph, data) = if what.starts_with("block") {
                block(&gpu, &size, naive)
            } else {
                attention_only(&size, naive, storage)
            };
            let plan = Plan::new(&gpu, &graph).expect("plan");
            gpu.flush("uploading weights").expect("flush");
            let inputs: Vec<HostData<'_>> = data.iter().map(|d| d.into()).collect();
            plan.write_inputs(&inputs).expect("write");
            let wall = Timer::wall_clock(&gpu);
            let id = format!("{what}/{}/{tag}", size.label);
            eprintln!(
                "{id}: peak activation bytes {}, {} dispatches",
                plan.activation_bytes(),
                plan.dispatches().len()
            );
            group.throughput(Throughput::Elements(plan.cost().flops as u64));
            group.bench_function(id, |b| b.iter(|| plan.time(&wall).expect("run")));
        }
    }
    group.finish();
}

criterion_group!(benches, attention);
criterion_main!(benches);
