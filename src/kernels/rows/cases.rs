//! The fused sublayers' fuzz, bench and precision cases. Each case's tolerance follows the
//! error through the sublayer: the producer's (attention: logit rounding times the values;
//! MLP: the first GEMM's accumulation and input norm), the projection's accumulation of it,
//! then the post-norm's division by the row's spread.

use crate::dtype::{DType, round_to};
use crate::error::Result;
use crate::kernels::cases::{
    BenchCase, Case, CaseRng, CaseTarget, INPUT_NORM_EPS, SUBNORMAL_FLOOR, Tolerance, dot_ulps, normed_rows,
    pick_storage,
};
use crate::ops::{Attention, AttentionRows, GeluForm, InputNorm, MaskedRows, MlpRows, RowsEpilogue};
use crate::reference::{self, MaskInput};

/// `v` as stored in `dtype`, widened.
fn stored(dtype: DType, v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| round_to(dtype, f64::from(x))).collect()
}

fn abs(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| x.abs()).collect()
}

/// The host data of an epilogue's inputs.
struct EpilogueData {
    epilogue: RowsEpilogue,
    w: Vec<f64>,
    bias: Vec<f64>,
    skip: Vec<f64>,
    gamma: Vec<f64>,
}

/// Declares w_out `[n, width]` (in `weights`) and the epilogue's inputs for `rows` rows of
/// `shape` (its last dim n); returns their ids and data.
fn epilogue_inputs(
    c: &mut Case,
    rng: &mut CaseRng,
    epilogue: RowsEpilogue,
    (width, shape): (usize, &[usize]),
    storage: DType,
    weights: DType,
) -> (Vec<usize>, EpilogueData) {
    let n = shape[shape.len() - 1];
    let rows = shape.iter().product::<usize>() / n;
    let w = rng.normals(n * width, 1.0 / (width as f32).sqrt());
    let (b, skip) = (rng.normals(n, 0.3), rng.normals(rows * n, 1.0));
    let (gamma, beta) = (rng.normals(n, 1.0), rng.normals(n, 0.5));
    let mut ids = vec![c.constant("w_out", &[n, width], weights, w.clone())];
    if epilogue.bias {
        ids.push(c.constant("b_out", &[n], DType::F32, b.clone()));
    }
    if epilogue.skip {
        ids.push(c.input("skip", shape, storage, skip.clone()));
    }
    if epilogue.post_norm.is_some() {
        ids.push(c.constant("post_weight", &[n], DType::F32, gamma.clone()));
        ids.push(c.constant("post_bias", &[n], DType::F32, beta));
    }
    let data = EpilogueData {
        epilogue,
        w: stored(weights, &w),
        bias: if epilogue.bias { stored(DType::F32, &b) } else { vec![0.0; n] },
        skip: if epilogue.skip { stored(storage, &skip) } else { vec![0.0; rows * n] },
        gamma: stored(DType::F32, &gamma),
    };
    (ids, data)
}

/// Per output element, the error bound of `post_norm(x·w_outᵀ + b + skip)` for the
/// projection's input `x` (rows of `width`) known to within `x_err` per element.
fn epilogue_tolerance(d: &EpilogueData, x: &[f64], x_err: &[f64], width: usize) -> Vec<f64> {
    let n = d.w.len() / width;
    let rows = x.len() / width;
    let w_abs = abs(&d.w);
    let magnitude = reference::linear(&abs(x), &w_abs, Some(&abs(&d.bias)), rows, n, width);
    let carried = reference::linear(x_err, &w_abs, None, rows, n, width);
    let mut y = reference::linear(x, &d.w, Some(&d.bias), rows, n, width);
    let mut err: Vec<f64> = (0..rows * n)
        .map(|i| dot_ulps(width) * magnitude[i] + carried[i] + 2.4e-7 * (y[i].abs() + d.skip[i].abs()))
        .collect();
    if d.epilogue.post_norm.is_none() {
        return err;
    }
    reference::epilogue(&mut y, None, Some(&d.skip), None);
    let eps = f64::from(d.epilogue.post_norm.unwrap_or(0.0));
    for (row, e) in y.chunks(n).zip(err.chunks_mut(n)) {
        let mean = row.iter().sum::<f64>() / n as f64;
        let spread = (row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64 + eps).sqrt();
        let worst = e.iter().fold(0.0f64, |a, &v| a.max(v));
        let largest = row.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        // (y - mean) off by 2·worst plus the f32 rounding of the sums; 1/σ off relatively by
        // about as much again over σ.
        let off = 2.0 * worst + 2e-7 * largest * (n as f64).sqrt();
        for (j, (e, v)) in e.iter_mut().zip(row).enumerate() {
            *e = d.gamma[j].abs() / spread * (off + (v - mean).abs() * (off / spread + 1e-6)) + 1e-6;
        }
    }
    err
}

fn random_epilogue(rng: &mut CaseRng) -> RowsEpilogue {
    let e = RowsEpilogue { bias: rng.bool(0.7), skip: rng.bool(0.7), post_norm: None };
    if rng.bool(0.5) { e.post_norm(rng.pick(&[1e-5, 1e-12])) } else { e }
}

fn pick_weights(rng: &mut CaseRng, target: &CaseTarget) -> DType {
    rng.pick(if target.shader_f16 { &[DType::F32, DType::BF16, DType::F16][..] } else { &[DType::F32, DType::BF16] })
}

/// Output widths: small, odd, and up to the 1024 a workgroup owns (every COLS).
fn random_width(rng: &mut CaseRng) -> usize {
    if rng.bool(0.2) { rng.range(900, crate::ops::rows::MAX_WIDTH) } else { rng.edge(200) }
}

/// Head dims the fuzzer draws from (each is a pipeline of its own; 64 and up take llvmpipe
/// seconds to compile).
const FUZZ_HEAD_DIMS: &[u32] = &[1, 5, 16, 17, 32, 64, 80, 128];
/// The quick ones, for the test suite and the precision cases.
pub const SMALL_HEAD_DIMS: &[u32] = &[1, 5, 8, 17];

pub(super) fn fuzz_attention(rng: &mut CaseRng, target: &CaseTarget) -> Result<Case> {
    attention_case(rng, target, FUZZ_HEAD_DIMS)
}

/// Random batch, heads, head dims (from `head_dims`), query and key counts (blocks of 8 and
/// their remainders), one or two sources, keep masks with fully masked rows, output widths to
/// 1024, every epilogue; activations f32 or f16, weights f32, bf16 or f16.
pub fn attention_case(rng: &mut CaseRng, target: &CaseTarget, head_dims: &[u32]) -> Result<Case> {
    let storage = pick_storage(rng, target);
    let weights = pick_weights(rng, target);
    let (batch, heads) = (rng.range(1, 2), rng.range(1, 4) as u32);
    let d = rng.pick(head_dims);
    let (nq, ka) = (rng.edge(40), rng.edge(50));
    let kb = if rng.bool(0.4) { rng.edge(20) } else { 0 };
    let w = (heads * d) as usize;
    let n = random_width(rng);
    let max_logit = rng.range_f32(1.0, 30.0);
    let s = (max_logit / 4.0).sqrt();
    let (q, kv_a, kv_b) =
        (rng.normals(batch * nq * w, s), rng.normals(batch * ka * 2 * w, s), rng.normals(batch * kb * 2 * w, s));
    let mut attention = Attention::new(heads, d).offsets(0, 0, w as u32);
    let mut c = Case::builder(AttentionRows::NAME);
    let mut inputs = vec![c.input("q", &[batch, nq, w], storage, q.clone())];
    inputs.push(c.input("kv_a", &[batch, ka, 2 * w], storage, kv_a.clone()));
    if kb > 0 {
        attention = attention.two_sources();
        inputs.push(c.input("kv_b", &[batch, kb, 2 * w], storage, kv_b.clone()));
    }
    let keys = ka + kb;
    let mut keep = Vec::new();
    if rng.bool(0.3) {
        attention = attention.masked(rng.pick(&[MaskedRows::Zero, MaskedRows::Uniform]));
        keep = (0..batch * nq * keys).map(|i| u8::from(!((i / keys) % 3 == 2 || rng.bool(0.3)))).collect();
        inputs.push(c.input("mask", &[batch, nq, keys], DType::U8, keep.clone()));
    }
    let epilogue = random_epilogue(rng);
    let (extra, data) = epilogue_inputs(&mut c, rng, epilogue, (w, &[batch, nq, n]), storage, weights);
    inputs.extend(extra);
    let out = c.node(AttentionRows { attention, epilogue }, &inputs)?;
    // The attention's output (as the reference computes it) and its error: a convex
    // combination of the values, off by the logits' rounding.
    let g = attention.geometry(&[
        &crate::ops::Meta::new(&[batch, nq, w], storage),
        &crate::ops::Meta::new(&[batch, ka, 2 * w], storage),
        &crate::ops::Meta::new(&[batch, kb, 2 * w], storage),
    ]);
    let keep_f64: Vec<f64> = keep.iter().map(|&k| f64::from(k)).collect();
    let mask = (!keep.is_empty()).then_some(MaskInput::Keep(&keep_f64));
    let (kv_a, kv_b) = (stored(storage, &kv_a), stored(storage, &kv_b));
    let attended =
        reference::attention(&g, attention.zeroes_masked_rows(), &stored(storage, &q), [&kv_a, &kv_b], mask, None);
    let v_max = kv_a.iter().chain(&kv_b).fold(0.0f64, |a, v| a.max(v.abs()));
    let attended_err = vec![(2e-5 + 2e-6 * f64::from(max_logit)) * v_max; attended.len()];
    let extra = epilogue_tolerance(&data, &attended, &attended_err, w);
    let description = format!(
        "b{batch} q{nq} k{ka}+{kb} {heads}x{d} -> {n} mask={} {epilogue:?} {storage} activations {weights} weights",
        !keep.is_empty()
    );
    Ok(c.finish(&[out], description, Tolerance::new(SUBNORMAL_FLOOR, 1e-5).with_extra(extra)))
}

/// Random rows (blocks of 8 and remainders), input, hidden (blocks of 64 and remainders) and
/// output widths to 1024, with or without b_in, GELU (both forms), LayerNorm or RMSNorm on
/// the input, every epilogue; activations f32 or f16, weights f32, bf16 or f16.
pub fn mlp_case(rng: &mut CaseRng, target: &CaseTarget) -> Result<Case> {
    let storage = pick_storage(rng, target);
    let weights = pick_weights(rng, target);
    let (m, k, hidden, n) = (rng.edge(40), rng.edge(200), rng.edge(300), random_width(rng));
    let activation = rng.pick(&GeluForm::OR_NONE);
    let eps = rng.pick(&INPUT_NORM_EPS);
    let input_norm = if rng.bool(0.25) { None } else { Some(rng.pick(&InputNorm::each_kind(eps))) };
    let op = MlpRows { in_bias: rng.bool(0.7), activation, input_norm, epilogue: random_epilogue(rng) };
    // Rows with a large common offset make the input norm's cancellation show.
    let offset = if rng.bool(0.3) { rng.range_f32(-20.0, 20.0) } else { 0.0 };
    let x: Vec<f32> = rng.normals(m * k, 1.0).iter().map(|v| v + offset).collect();
    let w_in = rng.normals(hidden * k, 1.0 / (k as f32).sqrt());
    let b_in = rng.normals(hidden, 0.3);
    let (norm_w, norm_b) = (rng.normals(k, 1.0), rng.normals(k, 0.5));
    let mut c = Case::builder(MlpRows::NAME);
    let mut inputs =
        vec![c.input("x", &[m, k], storage, x.clone()), c.constant("w_in", &[hidden, k], weights, w_in.clone())];
    if op.in_bias {
        inputs.push(c.constant("b_in", &[hidden], DType::F32, b_in.clone()));
    }
    if let Some(norm) = input_norm {
        inputs.push(c.constant("in_norm_weight", &[k], DType::F32, norm_w.clone()));
        if norm.inputs() == 2 {
            inputs.push(c.constant("in_norm_bias", &[k], DType::F32, norm_b.clone()));
        }
    }
    let (extra, data) = epilogue_inputs(&mut c, rng, op.epilogue, (hidden, &[m, n]), storage, weights);
    inputs.extend(extra);
    let out = c.node(op, &inputs)?;
    // The hidden activations and their error: the first GEMM's accumulation (and the input
    // norm's: a few ulps of the row's largest |x| over its spread), GELU's slope at most 1.13.
    let (x, w_in) = (stored(storage, &x), stored(weights, &w_in));
    let (x_seen, row_error) = match input_norm {
        None => (x.clone(), vec![0.0; m]),
        Some(norm) => normed_rows(&x, k, norm, &stored(DType::F32, &norm_w), &stored(DType::F32, &norm_b)),
    };
    let b_in = if op.in_bias { stored(DType::F32, &b_in) } else { vec![0.0; hidden] };
    let pre = reference::linear(&x_seen, &w_in, Some(&b_in), m, hidden, k);
    let magnitude = reference::linear(&abs(&x_seen), &abs(&w_in), Some(&abs(&b_in)), m, hidden, k);
    let hidden_err: Vec<f64> =
        magnitude.iter().enumerate().map(|(i, v)| 1.13 * v * (dot_ulps(k) + row_error[i / hidden]) + 1e-30).collect();
    let h: Vec<f64> = pre.iter().map(|&v| activation.map_or(v, |form| reference::gelu(form, v))).collect();
    let extra = epilogue_tolerance(&data, &h, &hidden_err, hidden);
    let description = format!("{m}x{k}x{hidden}x{n} {op:?} offset {offset:.1} {storage} activations {weights} weights");
    Ok(c.finish(&[out], description, Tolerance::new(SUBNORMAL_FLOOR, 1e-5).with_extra(extra)))
}

/// The Q-Former's sublayers at real size (BLIP-2: 32 queries, 12 heads of 64, 768 wide, FFN
/// 3072, cross-attention over 257 image tokens), post-LN, and the Perceiver's (64 latents, 16
/// heads of 64 over 257 media + 64 latent keys, 1024 wide, FFN 4096), pre-LN.
fn bench_case(attention: bool, perceiver: bool) -> Result<Case> {
    let mut rng = CaseRng::new(0xbe7c4);
    let (rows, width, hidden, heads, keys_a, keys_b) =
        if perceiver { (64, 1024, 4096, 16u32, 257, 64) } else { (32, 768, 3072, 12, 257, 0) };
    let epilogue =
        if perceiver { RowsEpilogue::residual(false) } else { RowsEpilogue::residual(true).post_norm(1e-12) };
    let name = if attention { AttentionRows::NAME } else { MlpRows::NAME };
    let mut c = Case::builder(name);
    let inputs = if attention {
        let mut cfg = Attention::new(heads, 64);
        let w = width;
        let mut inputs = vec![
            c.input("q", &[1, rows, w], DType::F32, rng.normals(rows * w, 1.0)),
            c.input("kv_a", &[1, keys_a, 2 * w], DType::F32, rng.normals(keys_a * 2 * w, 1.0)),
        ];
        if keys_b > 0 {
            cfg = cfg.two_sources();
            inputs.push(c.input("kv_b", &[1, keys_b, 2 * w], DType::F32, rng.normals(keys_b * 2 * w, 1.0)));
        }
        (inputs, Some(cfg))
    } else {
        let inputs = vec![
            c.input("x", &[1, rows, width], DType::F32, rng.normals(rows * width, 1.0)),
            c.constant("w_in", &[hidden, width], DType::F32, rng.normals(hidden * width, 1.0 / (width as f32).sqrt())),
        ];
        (inputs, None)
    };
    let (mut inputs, attention_cfg) = inputs;
    let mlp = MlpRows {
        in_bias: !perceiver,
        activation: Some(GeluForm::Erf),
        input_norm: perceiver.then_some(InputNorm::Layer { eps: 1e-5 }),
        epilogue,
    };
    if attention_cfg.is_none() {
        if mlp.in_bias {
            inputs.push(c.constant("b_in", &[hidden], DType::F32, rng.normals(hidden, 0.1)));
        }
        if perceiver {
            inputs.push(c.constant("in_norm_weight", &[width], DType::F32, rng.normals(width, 1.0)));
            inputs.push(c.constant("in_norm_bias", &[width], DType::F32, rng.normals(width, 0.1)));
        }
    }
    let projected = if attention_cfg.is_some() { width } else { hidden };
    let (extra, _) =
        epilogue_inputs(&mut c, &mut rng, epilogue, (projected, &[1, rows, width]), DType::F32, DType::F32);
    inputs.extend(extra);
    let out = match attention_cfg {
        Some(attention) => c.node(AttentionRows { attention, epilogue }, &inputs)?,
        None => c.node(mlp, &inputs)?,
    };
    Ok(c.finish(&[out], String::new(), Tolerance::exact()))
}

fn bench(attention: bool) -> Vec<BenchCase> {
    let what = if attention { "attention" } else { "FFN" };
    vec![
        BenchCase::new(format!("qformer {what} 32x768, post-LN"), move || bench_case(attention, false)),
        BenchCase::new(format!("perceiver {what} 64x1024"), move || bench_case(attention, true)),
    ]
}

pub(super) fn fuzz_mlp(rng: &mut CaseRng, target: &CaseTarget) -> Result<Case> {
    mlp_case(rng, target)
}

pub(super) fn bench_attention() -> Vec<BenchCase> {
    bench(true)
}

pub(super) fn bench_mlp() -> Vec<BenchCase> {
    bench(false)
}

/// f16 activations at small odd sizes, f16 weights, the post-norm on: the output is one f16
/// rounding from the f32 result, the intermediates never stored.
fn precision(attention: bool) -> Result<Vec<Case>> {
    let target = CaseTarget { shader_f16: true };
    // Seeds whose draws store f16 activations (pick_storage's own stream).
    let mut found = Vec::new();
    for seed in 0..64 {
        let mut rng = CaseRng::new(seed);
        if pick_storage(&rng, &target) != DType::F16 {
            continue;
        }
        let case =
            if attention { attention_case(&mut rng, &target, SMALL_HEAD_DIMS)? } else { mlp_case(&mut rng, &target)? };
        found.push(case);
        if found.len() == 2 {
            break;
        }
    }
    Ok(found)
}

pub(super) fn precision_attention() -> Result<Vec<Case>> {
    precision(true)
}

pub(super) fn precision_mlp() -> Result<Vec<Case>> {
    precision(false)
}
