//! Every kernel with f16 activations: on a device with SHADER_F16 each runs and matches the f64
//! reference of its graph (inputs rounded to f16 as the GPU stores them, the reference rounded
//! to f16 as the output is); on the forced no-f16 device each returns `Error::Unsupported`.
//! Random shapes and values in f16 are the fuzzer's job (`vlbridge fuzz` draws f16 storage for
//! half its cases); these cases pin each op once, at sizes with ragged edges.
//!
//! Tolerance: one f16 ulp of the result (`|y|·2⁻¹⁰`), f16's flush floor (6.2e-5), plus 2e-3
//! for the naive attention passes, which also store logits and weights as f16 (logits ≤ 4.5:
//! ≈ 5.5·2⁻¹⁰). A wrong index or a value read as the wrong type is off by O(1).

mod common;

use common::{gpu, minimal_gpu};
use ntest::timeout;
use vlbridge::connectors::{
    GatedXAttnBlock, GatedXAttnConfig, PerceiverConfig, PerceiverResampler, QFormer, QFormerConfig, add_token_merge,
};
use vlbridge::kernels::anyres::AnyResLayout;
use vlbridge::kernels::attention::{Attention, MaskedRows, Pass};
use vlbridge::kernels::downsample::Downsample;
use vlbridge::kernels::gelu::GeluForm;
use vlbridge::kernels::gemm::{Epilogue, Residual};
use vlbridge::kernels::tome::Tome;
use vlbridge::kernels::{Op, round_to};
use vlbridge::reference::{self, compare, compare_with};
use vlbridge::weights::Weights;
use vlbridge::{DType, Error, Gpu, Graph, Plan, Result, Tensor, TensorId};

const F16: DType = DType::F16;

/// Deterministic values in [-1, 1) (a small LCG: no dependence on the proptest runner).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A graph under test with the data of its inputs, in declaration order.
struct Case {
    name: &'static str,
    graph: Graph,
    inputs: Vec<Vec<f32>>,
    extra_tolerance: f64,
}

struct Builder<'a> {
    gpu: &'a Gpu,
    graph: Graph,
    inputs: Vec<Vec<f32>>,
}

impl Builder<'_> {
    fn input(&mut self, shape: &[usize], dtype: DType) -> TensorId {
        let n = shape.iter().product();
        self.inputs.push(values(n, self.inputs.len() as u64 + 1));
        self.graph.input_as(&format!("in{}", self.inputs.len()), shape, dtype).unwrap()
    }

    fn param(&mut self, shape: &[usize], data: &[f32]) -> TensorId {
        self.graph.constant("param", &Tensor::from_f32(self.gpu, shape, data).unwrap())
    }

    fn done(mut self, name: &'static str, outputs: &[TensorId], extra_tolerance: f64) -> Case {
        for &o in outputs {
            self.graph.output(o).unwrap();
        }
        Case { name, graph: self.graph, inputs: self.inputs, extra_tolerance }
    }
}

/// One case per kernel (each attention pass, pooling mode and ToMe pass), all in f16 storage.
fn cases(gpu: &Gpu) -> Vec<Case> {
    let new = || Builder { gpu, graph: Graph::new(), inputs: Vec::new() };
    let mut cases = Vec::new();

    for weights in [DType::F32, DType::F16, DType::BF16] {
        let mut b = new();
        let (m, k, n) = (7, 36, 13);
        let x = b.input(&[m, k], F16);
        let w: Vec<f32> = values(n * k, 99).iter().map(|v| v / 6.0).collect();
        let w = b.graph.constant("w", &Tensor::from_f32_as(gpu, &[n, k], &w, weights).unwrap());
        let bias = b.param(&[n], &values(n, 5));
        let residual = b.input(&[m, n], F16);
        let epilogue = Epilogue::bias_gelu(GeluForm::Tanh).with_residual(Residual::Add);
        let y = b.graph.add(Op::Linear(epilogue), &[x, w, bias, residual]).unwrap();
        let name = match weights {
            DType::F32 => "linear, f32 weights",
            DType::F16 => "linear, f16 weights",
            DType::BF16 => "linear, bf16 weights",
        };
        cases.push(b.done(name, &[y], 0.0));
    }

    let mut b = new();
    let x = b.input(&[1001], F16);
    let y = b.graph.add(Op::Gelu(GeluForm::Erf), &[x]).unwrap();
    cases.push(b.done("gelu", &[y], 0.0));

    let mut b = new();
    let x = b.input(&[5, 67], F16);
    let (w, bias) = (b.param(&[67], &values(67, 3)), b.param(&[67], &values(67, 4)));
    let y = b.graph.add(Op::LayerNorm { eps: 1e-5 }, &[x, w, bias]).unwrap();
    cases.push(b.done("layer_norm", &[y], 0.0));

    let mut b = new();
    let x = b.input(&[3, 11], F16);
    let y = b.graph.add(Op::Repeat { times: 3 }, &[x]).unwrap();
    cases.push(b.done("repeat", &[y], 0.0));

    let mut b = new();
    let x = b.param(&[3, 11], &values(33, 8).iter().map(|v| v * 1e5).collect::<Vec<_>>());
    let y = b.graph.add(Op::Convert(F16), &[x]).unwrap();
    cases.push(b.done("convert (values past f16's range included)", &[y], 0.0));

    // Two sources, a mask with a fully masked row, head dim 20, both flash and naive.
    let (batch, nq, ka, kb, heads, d) = (2, 5, 9, 4, 2, 20);
    let cfg = Attention::new(heads, d as u32).two_sources().masked(MaskedRows::Uniform);
    for naive in [false, true] {
        let mut b = new();
        let q = b.input(&[batch, nq, heads as usize * d], F16);
        let kv_a = b.input(&[batch, ka, 2 * heads as usize * d], F16);
        let kv_b = b.input(&[batch, kb, 2 * heads as usize * d], F16);
        let keep: Vec<f32> = (0..batch * nq * (ka + kb)).map(|i| f32::from(i % 5 != 0 && i / (ka + kb) != 3)).collect();
        let mask = b.param(&[batch, nq, ka + kb], &keep);
        let out = if naive {
            let s = b.graph.add(Op::Attention(Pass::Scores, cfg), &[q, kv_a, kv_b, mask]).unwrap();
            let p = b.graph.add(Op::Attention(Pass::Softmax, cfg), &[s, mask]).unwrap();
            b.graph.add(Op::Attention(Pass::WeightedSum, cfg), &[p, kv_a, kv_b]).unwrap()
        } else {
            b.graph.add(Op::Attention(Pass::Flash, cfg), &[q, kv_a, kv_b, mask]).unwrap()
        };
        let (name, extra) = if naive { ("attention, naive passes", 2e-3) } else { ("attention, flash", 0.0) };
        cases.push(b.done(name, &[out], extra));
    }

    for op in [Downsample::AvgPool2x2 { h: 5, w: 7, ceil_mode: true }, Downsample::BilinearHalf { h: 6, w: 9 }] {
        let mut b = new();
        let (h, w) = op.grid();
        let x = b.input(&[2, h * w, 3], F16);
        let y = b.graph.add(Op::Downsample(op), &[x]).unwrap();
        cases.push(b.done(if h == 5 { "avg_pool_2x2" } else { "bilinear_half" }, &[y], 0.0));
    }

    // ToMe on planted, well-separated tokens (the reference sees the same f16 values).
    let mut b = new();
    let (n, c) = (23, 40);
    let x = b.input(&[2, n, c], F16);
    b.inputs[0] = reference::separated_tokens(2, n, c, 11);
    let merged = add_token_merge(gpu, &mut b.graph, x, None, Tome::new(n, 7, true).unwrap()).unwrap();
    cases.push(b.done(
        "tome (normalize, match, rank, place, merge, source)",
        &[merged.tokens, merged.sizes, merged.source],
        0.0,
    ));

    let mut b = new();
    let layout = AnyResLayout::new((300, 500), &[(8, 16), (16, 8)], 8, 2).unwrap();
    let x = b.input(&[layout.tiles(), 16, 5], F16);
    let newline = b.param(&[5], &values(5, 77));
    let y = b.graph.add(Op::AnyRes(layout), &[x, newline]).unwrap();
    cases.push(b.done("anyres_pack", &[y], 0.0));
    cases
}

fn run(gpu: &Gpu, case: &Case) -> Result<Vec<f32>> {
    let inputs: Vec<&[f32]> = case.inputs.iter().map(Vec::as_slice).collect();
    Ok(Plan::new(gpu, &case.graph)?.run_and_read(gpu, &inputs)?.concat())
}

#[test]
#[timeout(300_000)]
fn every_kernel_runs_with_f16_activations_and_matches_the_reference() {
    let gpu = gpu();
    if !gpu.features().contains(vlbridge::wgpu::Features::SHADER_F16) {
        eprintln!("skipped: {} has no SHADER_F16", gpu.describe());
        return;
    }
    for case in cases(gpu) {
        let got = run(gpu, &case).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let inputs: Vec<&[f32]> = case.inputs.iter().map(Vec::as_slice).collect();
        let want: Vec<f64> =
            case.graph.reference(gpu, &inputs).unwrap().concat().iter().map(|&v| round_to(F16, v)).collect();
        let tolerance = |i: usize| case.extra_tolerance + reference::f16_rounding(want[i]);
        let cmp = compare_with(&got, &want, reference::F16_FLUSH, 1e-5, tolerance);
        assert!(cmp.passed(), "{}: {cmp}", case.name);
        // f16 storage is really in use: the outputs are f16 values.
        let f16_exact = got.iter().all(|&v| v.is_nan() || f32::from(half::f16::from_f32(v)) == v);
        assert!(f16_exact, "{}: outputs are not f16 values", case.name);
    }
}

#[test]
#[timeout(120_000)]
fn every_kernel_with_f16_activations_is_unsupported_without_shader_f16() {
    let gpu = minimal_gpu();
    assert!(!gpu.features().contains(vlbridge::wgpu::Features::SHADER_F16));
    for case in cases(gpu) {
        match run(gpu, &case) {
            Err(Error::Unsupported { what, .. }) => assert!(what.contains("SHADER_F16"), "{}: {what}", case.name),
            other => panic!("{}: expected Error::Unsupported, got {:?}", case.name, other.map(|v| v.len())),
        }
    }
}

/// `weights` with every float tensor re-stored as `dtype` (as a checkpoint shipping that dtype
/// would hold them); integer tensors are kept.
fn recast(weights: &Weights, dtype: DType) -> Weights {
    let names = weights.names().unwrap();
    let tensors: Vec<(String, Vec<usize>, Vec<u8>, safetensors::Dtype)> = names
        .iter()
        .map(|name| {
            let shape = weights.shape(name).unwrap();
            match weights.f32(name, None) {
                Ok(v) => {
                    let (bytes, stored) = match dtype {
                        DType::F16 => (
                            v.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect(),
                            safetensors::Dtype::F16,
                        ),
                        DType::BF16 => (
                            v.iter().flat_map(|&x| half::bf16::from_f32(x).to_le_bytes()).collect(),
                            safetensors::Dtype::BF16,
                        ),
                        DType::F32 => (bytemuck::cast_slice(&v).to_vec(), safetensors::Dtype::F32),
                    };
                    (name.clone(), shape, bytes, stored)
                }
                Err(_) => {
                    let v = weights.i64(name).unwrap();
                    (name.clone(), shape, bytemuck::cast_slice(&v).to_vec(), safetensors::Dtype::I64)
                }
            }
        })
        .collect();
    let views = tensors
        .iter()
        .map(|(n, s, b, d)| (n.as_str(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap()));
    Weights::from_bytes(safetensors::serialize(views, None).unwrap(), "recast").unwrap()
}

fn golden(name: &str) -> Weights {
    Weights::open(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)).unwrap()
}

/// Tolerance against the f64 reference of the same graph (which sees the stored weights and
/// inputs): f32 rounding for f32 activations; with f16 activations every stored intermediate
/// is off by up to 2⁻¹¹ relative and the next layer sums those errors over K = 64..256 inputs
/// (≈ 2⁻¹¹·√K ≈ 8e-3 of a unit output at worst), so 1e-2 as the demo holds.
fn connector_tolerance(activations: DType) -> f64 {
    if activations == DType::F16 { 1e-2 } else { 1e-4 }
}

#[test]
#[timeout(300_000)]
fn connectors_run_with_f16_and_bf16_weights_and_f16_activations() {
    let gpu = gpu();
    let f16 = gpu.features().contains(vlbridge::wgpu::Features::SHADER_F16);
    let modes =
        [(DType::F32, DType::F16), (DType::F16, DType::F16), (DType::BF16, DType::F32), (DType::BF16, DType::F16)];
    for (weights, activations) in modes.into_iter().filter(|m| f16 || (m.0 != DType::F16 && m.1 != DType::F16)) {
        let mode = format!("{weights} weights, {activations} activations");
        let tol = connector_tolerance(activations);

        let w = recast(&golden("qformer.safetensors"), weights);
        let config = QFormerConfig { num_attention_heads: 4, ..QFormerConfig::default() };
        let model = QFormer::from_weights(gpu, &w, config).unwrap().with_activations(activations);
        let x = w.f32("encoder_hidden_states", None).unwrap();
        let plan = model.plan(gpu, 2, 17).unwrap();
        let c = compare(&plan.project(gpu, &x).unwrap(), &plan.reference(gpu, &x).unwrap(), tol, tol);
        assert!(c.passed(), "Q-Former, {mode}: {c}");

        let w = recast(&golden("perceiver_resampler.safetensors"), weights);
        let config = PerceiverConfig { heads: 4, ..PerceiverConfig::default() };
        let model = PerceiverResampler::from_weights(gpu, &w, config).unwrap().with_activations(activations);
        let x = w.f32("x", None).unwrap();
        let plan = model.plan(gpu, 4, 17).unwrap();
        let c = compare(&plan.project(gpu, &x).unwrap(), &plan.reference(gpu, &x).unwrap(), tol, tol);
        assert!(c.passed(), "Perceiver, {mode}: {c}");

        let w = recast(&golden("gated_xattn.safetensors"), weights);
        let config = GatedXAttnConfig { heads: 4, ..GatedXAttnConfig::default() };
        let prefix = "lang_encoder.gated_cross_attn_layers.0.";
        let block = GatedXAttnBlock::from_weights(gpu, &w, prefix, config).unwrap().with_activations(activations);
        let (x, media) = (w.f32("x", None).unwrap(), w.f32("media", None).unwrap());
        let locations: Vec<u8> = w.i64("media_locations").unwrap().into_iter().map(|v| u8::from(v != 0)).collect();
        let plan = block.plan(gpu, 2, 19, 2, 8).unwrap();
        let got = plan.run(gpu, &x, &media, &locations).unwrap();
        let c = compare(&got, &plan.reference(gpu, &x, &media, &locations).unwrap(), tol, tol);
        assert!(c.passed(), "gated cross-attention, {mode}: {c}");
        // The block's own dtype really is in use: outputs are f16 values with f16 activations.
        if activations == DType::F16 {
            assert!(got.iter().all(|&v| f32::from(half::f16::from_f32(v)) == v), "{mode}: outputs not f16");
        }
    }
}
