//! One differential case per call: a random shape (skewed toward 1, primes and tile sizes ± 1)
//! and random values from one of several distributions, run on the GPU and held to the f64
//! reference of the same graph with a tolerance derived from the inputs. Deterministic in
//! the seed, so a failing case is reproduced from (kernel, seed, device) alone.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use vlbridge::connectors::add_token_merge;
use vlbridge::kernels::anyres::AnyResLayout;
use vlbridge::kernels::attention::{Attention, MaskedRows, Pass};
use vlbridge::kernels::downsample::Downsample;
use vlbridge::kernels::gelu::GeluForm;
use vlbridge::kernels::gemm::Epilogue;
use vlbridge::kernels::tome::Tome;
use vlbridge::kernels::{Op, round_to};
use vlbridge::reference::{self, Comparison, compare_with};
use vlbridge::{DType, Gpu, Graph, Plan, Result, Tensor};

/// Every kernel the fuzzer knows, by the name `--kernel` takes.
pub const KERNELS: [&str; 11] = [
    "linear",
    "gelu",
    "layer_norm",
    "attention",
    "attention_naive",
    "repeat",
    "avg_pool_2x2",
    "bilinear_half",
    "tome",
    "anyres_pack",
    "convert",
];

/// What one case ran and how it compared.
pub struct Outcome {
    pub description: String,
    pub comparison: Comparison,
}

/// f32's smallest normal: below it a device may flush subnormals to zero.
const SUBNORMAL_FLOOR: f64 = 1.2e-38;

#[derive(Debug, Clone, Copy)]
enum Values {
    Normal,
    /// ±150, as ggml fuzzes GELU.
    Uniform150,
    Huge,
    Tiny,
    Subnormal,
}

fn edge(rng: &mut StdRng, max: usize) -> usize {
    const EDGES: [usize; 24] =
        [1, 2, 3, 4, 5, 7, 8, 9, 13, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257];
    if rng.random_bool(0.5) {
        let fits: Vec<usize> = EDGES.into_iter().filter(|&e| e <= max).collect();
        fits[rng.random_range(0..fits.len())]
    } else {
        rng.random_range(1..=max)
    }
}

fn pick_values(rng: &mut StdRng) -> Values {
    [Values::Normal, Values::Normal, Values::Uniform150, Values::Huge, Values::Tiny, Values::Subnormal]
        [rng.random_range(0..6)]
}

/// `n` values of `kind`, `huge` being the magnitude the kernel's f32 range allows; with
/// `inject`, about 2% of them replaced by NaN, +Inf or -Inf.
fn values(rng: &mut StdRng, n: usize, kind: Values, huge: f32, inject: bool) -> Vec<f32> {
    let normal = Normal::new(0.0f32, 1.0).unwrap_or_else(|_| unreachable!("unit normal"));
    (0..n)
        .map(|_| {
            if inject && rng.random_bool(0.02) {
                return [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][rng.random_range(0..3)];
            }
            let z = normal.sample(rng);
            match kind {
                Values::Normal => z,
                Values::Uniform150 => rng.random_range(-150.0..=150.0),
                Values::Huge => z * huge,
                Values::Tiny => z * 1e-15,
                Values::Subnormal => z * 1e-40,
            }
        })
        .collect()
}

fn max_abs(v: &[f32]) -> f64 {
    v.iter().filter(|x| x.is_finite()).fold(0.0f64, |m, &x| m.max(f64::from(x).abs()))
}

/// Plans `g`, runs it on `inputs` and compares every output (concatenated) with the graph's
/// f64 reference. With f16 `storage` the reference is rounded to f16 as the output is, and the
/// tolerance grows by one f16 ulp and the f16 flush-to-zero floor.
fn differential(
    gpu: &Gpu,
    g: &Graph,
    inputs: &[&[f32]],
    storage: DType,
    atol: f64,
    rtol: f64,
    extra: impl Fn(usize) -> f64,
) -> Result<Comparison> {
    let got: Vec<f32> = Plan::new(gpu, g)?.run_and_read(gpu, inputs)?.concat();
    let want: Vec<f64> = g.reference(gpu, inputs)?.concat();
    if storage == DType::F16 {
        let want: Vec<f64> = want.iter().map(|&v| round_to(DType::F16, v)).collect();
        let tolerance = |i: usize| extra(i) + reference::f16_rounding(want[i]);
        return Ok(compare_with(&got, &want, atol.max(reference::F16_FLUSH), rtol, tolerance));
    }
    Ok(compare_with(&got, &want, atol, rtol, extra))
}

/// Runs case `seed` of `kernel` on `gpu`.
pub fn run(gpu: &Gpu, kernel: &str, seed: u64) -> Result<Outcome> {
    let mut rng = StdRng::seed_from_u64(seed);
    let rng = &mut rng;
    let kind = pick_values(rng);
    let inject = rng.random_bool(0.25);
    // Activations in f16 for half the cases where the device has SHADER_F16, drawn from a
    // stream of its own so the f32 cases stay what they were.
    let f16 = gpu.features().contains(vlbridge::wgpu::Features::SHADER_F16);
    let storage = if f16 && StdRng::seed_from_u64(!seed).random_bool(0.5) { DType::F16 } else { DType::F32 };
    // f16 holds magnitudes up to 65504: huge values stay near that instead of at f32's edge.
    let huge = |f32_huge: f32| if storage == DType::F16 { f32_huge.min(2e3) } else { f32_huge };
    let mut g = Graph::new();
    let (description, comparison) = match kernel {
        "linear" => {
            let (m, k, n) = (edge(rng, 64), edge(rng, 300), edge(rng, 300));
            let x = values(rng, m * k, kind, huge(1e15), inject);
            let w = values(rng, n * k, Values::Normal, 0.0, false)
                .iter()
                .map(|v| v / (k as f32).sqrt())
                .collect::<Vec<_>>();
            let b = values(rng, n, Values::Normal, 0.0, false).iter().map(|v| v * 0.1).collect::<Vec<_>>();
            let epilogue = [
                Epilogue::NONE,
                Epilogue::BIAS,
                Epilogue::bias_gelu(GeluForm::Erf),
                Epilogue::bias_gelu(GeluForm::Tanh),
            ][rng.random_range(0..4)];
            // Weights in f32, bf16 or (where the device reads it) f16; the graph's reference
            // reads them back, so it sees exactly the stored values.
            let weights = [DType::F32, DType::BF16, DType::F16][rng.random_range(0..if f16 { 3 } else { 2 })];
            let stored = Tensor::from_f32_as(gpu, &[n, k], &w, weights)?;
            let xi = g.input_as("x", &[m, k], storage)?;
            let mut inputs = vec![xi, g.constant("w", &stored)];
            if epilogue.has_bias() {
                inputs.push(g.constant("b", &Tensor::from_f32(gpu, &[n], &b)?));
            }
            let y = g.add(Op::Linear(epilogue), &inputs)?;
            g.output(y)?;
            // A dot product's rounding grows with Σ|x·w| (+|b|), not with its result.
            let magnitude = reference::linear(
                &x.iter().map(|v| f64::from(v.abs())).collect::<Vec<_>>(),
                &w.iter().map(|v| f64::from(v.abs())).collect::<Vec<_>>(),
                epilogue.has_bias().then_some(&b.iter().map(|v| f64::from(v.abs())).collect::<Vec<_>>()[..]),
                m,
                n,
                k,
            );
            let c = differential(gpu, &g, &[&x], storage, SUBNORMAL_FLOOR, 1e-5, |i| {
                4e-7 * (k as f64).sqrt() * magnitude[i]
            })?;
            (format!("{m}x{k}x{n} {storage} activations {weights} weights {epilogue:?} {kind:?} inject={inject}"), c)
        }
        "gelu" => {
            let n = edge(rng, 5000);
            let form = if rng.random_bool(0.5) { GeluForm::Erf } else { GeluForm::Tanh };
            let x = values(rng, n, kind, huge(1e30), inject);
            let xi = g.input_as("x", &[n], storage)?;
            let y = g.add(Op::Gelu(form), &[xi])?;
            g.output(y)?;
            // The tanh form cancels in 1 + tanh for x < -5, as PyTorch's f32 does: absolute
            // error up to ~|x|·1e-7 there.
            let c = differential(gpu, &g, &[&x], storage, SUBNORMAL_FLOOR, 1e-5, |i| 2e-7 * f64::from(x[i].abs()))?;
            (format!("{n} {form:?} {storage} {kind:?} inject={inject}"), c)
        }
        "layer_norm" => {
            let (rows, dim) = (edge(rng, 64), edge(rng, 300));
            let eps = if rng.random_bool(0.5) { 1e-5 } else { 1e-12 };
            // Variance is computed in f32, as PyTorch's: |x| up to 1e15 keeps it finite.
            let x = values(rng, rows * dim, kind, huge(1e15), inject);
            let w = values(rng, dim, Values::Normal, 0.0, false);
            let b = values(rng, dim, Values::Normal, 0.0, false);
            let xi = g.input_as("x", &[rows, dim], storage)?;
            let (wi, bi) = (
                g.constant("w", &Tensor::from_f32(gpu, &[dim], &w)?),
                g.constant("b", &Tensor::from_f32(gpu, &[dim], &b)?),
            );
            let y = g.add(Op::LayerNorm { eps }, &[xi, wi, bi])?;
            g.output(y)?;
            // |normalised| <= sqrt(dim), plus f32 cancellation in x - mean: one ulp of the
            // row's largest |x| over its standard deviation (PyTorch's f32 loses the same).
            let cancellation: Vec<f64> = x
                .chunks(dim)
                .map(|row| {
                    let row: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
                    let mean = row.iter().sum::<f64>() / dim as f64;
                    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / dim as f64;
                    let largest = row.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                    4e-7 * largest / (var + f64::from(eps)).sqrt()
                })
                .collect();
            let c = differential(gpu, &g, &[&x], storage, 1e-6, 1e-5, |i| {
                f64::from(w[i % dim].abs()) * (2e-6 * (dim as f64).sqrt() + cancellation[i / dim])
            })?;
            (format!("{rows}x{dim} eps {eps:e} {storage} {kind:?} inject={inject}"), c)
        }
        "attention" | "attention_naive" => {
            let (batch, heads) = (rng.random_range(1..=2), rng.random_range(1..=4u32));
            // Each head dimension is its own pipeline (compiled once per process): a fixed set
            // keeps the fuzzer's rate up while covering odd, tiny and full-size heads.
            let d = [1u32, 5, 16, 17, 24, 32, 33, 48, 64, 80, 96, 127, 128][rng.random_range(0..13)];
            let (nq, ka, kb) = (edge(rng, 70), edge(rng, 70), if rng.random_bool(0.5) { edge(rng, 40) } else { 0 });
            let w = (heads * d) as usize;
            // Logits up to ±`max_logit` (the extreme-logit case at 80): q and k ~ N(0, s²)
            // give logits of std s².
            let max_logit = rng.random_range(1.0..80.0f32);
            let s = (max_logit / 4.0).sqrt();
            let q = values(rng, batch * nq * w, Values::Normal, 0.0, false).iter().map(|v| v * s).collect::<Vec<_>>();
            let mut kv_a = values(rng, batch * ka * 2 * w, kind, huge(1e30), inject);
            let mut kv_b = values(rng, batch * kb * 2 * w, kind, huge(1e30), inject);
            // Keys keep the logit scale (±Inf stays: it makes ±Inf logits); values carry the
            // distribution and NaN, but not ±Inf: a weight that underflows f32 but not f64
            // would make 0 · Inf = NaN against the reference's Inf (see the README).
            for (i, v) in kv_a.iter_mut().chain(kv_b.iter_mut()).enumerate() {
                if i % (2 * w) < w && v.is_finite() {
                    *v = v.signum() * s * (1.0 + (i % 7) as f32 / 7.0);
                } else if i % (2 * w) >= w && v.is_infinite() {
                    *v = f32::NAN;
                }
            }
            let mut cfg = Attention::new(heads, d);
            let mut data = vec![q.clone(), kv_a.clone()];
            let qi = g.input_as("q", &[batch, nq, w], storage)?;
            let mut ids = vec![qi, g.input_as("kv_a", &[batch, ka, 2 * w], storage)?];
            if kb > 0 {
                cfg = cfg.two_sources();
                ids.push(g.input_as("kv_b", &[batch, kb, 2 * w], storage)?);
                data.push(kv_b.clone());
            }
            let masked = rng.random_bool(0.5);
            let mut mask_id = None;
            if masked {
                cfg = cfg.masked(if rng.random_bool(0.5) { MaskedRows::Zero } else { MaskedRows::Uniform });
                let keys = ka + kb;
                // Every third row fully masked.
                let mask: Vec<f32> = (0..batch * nq * keys)
                    .map(|i| if (i / keys) % 3 == 2 || rng.random_bool(0.3) { 0.0 } else { 1.0 })
                    .collect();
                mask_id = Some(g.input("mask", &[batch, nq, keys])?);
                data.push(mask);
            }
            let with_mask = |mut v: Vec<_>| {
                v.extend(mask_id);
                v
            };
            let out = if kernel == "attention" {
                g.add(Op::Attention(Pass::Flash, cfg), &with_mask(ids.clone()))?
            } else {
                let scores = g.add(Op::Attention(Pass::Scores, cfg), &with_mask(ids.clone()))?;
                let weights = g.add(Op::Attention(Pass::Softmax, cfg), &with_mask(vec![scores]))?;
                g.add(Op::Attention(Pass::WeightedSum, cfg), &[vec![weights], ids[1..].to_vec()].concat())?
            };
            g.output(out)?;
            let inputs: Vec<&[f32]> = data.iter().map(Vec::as_slice).collect();
            // A convex combination of the values: error ~ (logit rounding) · max|v|.
            let v_max = max_abs(&kv_a).max(max_abs(&kv_b));
            let mut tol = (2e-5 + 2e-6 * f64::from(max_logit)) * v_max;
            if storage == DType::F16 && kernel == "attention_naive" {
                // The naive passes store logits and weights as f16: a logit off by
                // |s|·2⁻¹¹ scales a weight by up to that, and each weight is off by 2⁻¹¹.
                tol += 2f64.powi(-10) * (f64::from(max_logit) + 1.0) * v_max;
            }
            let c = differential(gpu, &g, &inputs, storage, SUBNORMAL_FLOOR, 1e-4, |_| tol)?;
            (
                format!(
                    "b{batch} q{nq} k{ka}+{kb} {heads}x{d} logits<={max_logit:.0} mask={masked} {storage} {kind:?} inject={inject}"
                ),
                c,
            )
        }
        "repeat" => {
            let (n, times) = (edge(rng, 3000), edge(rng, 9));
            let x = values(rng, n, kind, huge(1e38), inject);
            let xi = g.input_as("x", &[n], storage)?;
            let y = g.add(Op::Repeat { times }, &[xi])?;
            g.output(y)?;
            let c = differential(gpu, &g, &[&x], storage, 0.0, 0.0, |_| 0.0)?;
            (format!("{n} x{times} {storage} {kind:?} inject={inject}"), c)
        }
        "avg_pool_2x2" | "bilinear_half" => {
            let (h, w, batch, channels) = (edge(rng, 64), edge(rng, 64), rng.random_range(1..=2), edge(rng, 9));
            let op = if kernel == "bilinear_half" {
                Downsample::BilinearHalf { h, w }
            } else {
                Downsample::AvgPool2x2 { h, w, ceil_mode: h == 1 || w == 1 || rng.random_bool(0.5) }
            };
            let x = values(rng, batch * h * w * channels, kind, huge(1e30), inject);
            let xi = g.input_as("x", &[batch, h * w, channels], storage)?;
            let y = g.add(Op::Downsample(op), &[xi])?;
            g.output(y)?;
            let tol = 2e-6 * max_abs(&x);
            (
                format!("{op:?} b{batch} c{channels} {storage} {kind:?} inject={inject}"),
                differential(gpu, &g, &[&x], storage, SUBNORMAL_FLOOR, 1e-6, |_| tol)?,
            )
        }
        "tome" => {
            // Matching needs well-separated similarities (upstream leaves ties unspecified), so
            // the tokens are planted; the magnitude varies, NaN/Inf are not injected (their
            // ordering is unspecified upstream too).
            let (batch, n) = (rng.random_range(1..=3), edge(rng, 160));
            let c = rng.random_range(n.div_ceil(2).max(40)..=n.div_ceil(2).max(40) + 40);
            let class_token = n > 1 && rng.random_bool(0.5);
            let r = rng.random_range(0..=(n - usize::from(class_token)) / 2);
            let scale = [1.0f32, huge(1e10), 1e-10][rng.random_range(0..3)];
            let x: Vec<f32> =
                reference::separated_tokens(batch, n, c, rng.random()).iter().map(|v| v * scale).collect();
            let sizes: Vec<f32> = (0..batch * n).map(|_| rng.random_range(1..=4) as f32).collect();
            let xi = g.input_as("x", &[batch, n, c], storage)?;
            let si = g.input("sizes", &[batch, n, 1])?;
            let merged = add_token_merge(gpu, &mut g, xi, Some(si), Tome::new(n, r, class_token)?)?;
            for id in [merged.tokens, merged.sizes, merged.source] {
                g.output(id)?;
            }
            let tol = 2e-6 * max_abs(&x);
            let description = format!("b{batch} n{n} c{c} r{r} cls={class_token} scale {scale:e} {storage}");
            (description, differential(gpu, &g, &[&x, &sizes], storage, 0.0, 1e-6, |_| tol)?)
        }
        "anyres_pack" => {
            let (side, patch) = (rng.random_range(1..=6), [1, 2, 14][rng.random_range(0..3)]);
            let tile = side * patch;
            let pinpoints: Vec<(usize, usize)> = (0..rng.random_range(1..=6))
                .map(|_| (rng.random_range(1..=4) * tile, rng.random_range(1..=4) * tile))
                .collect();
            let image = (rng.random_range(1..=2000), rng.random_range(1..=2000));
            let layout = AnyResLayout::new(image, &pinpoints, tile, patch)?;
            let d = edge(rng, 17);
            let features = values(rng, layout.tiles() * side * side * d, kind, huge(1e38), inject);
            let newline = values(rng, d, Values::Normal, 0.0, false);
            let fi = g.input_as("features", &[layout.tiles(), side * side, d], storage)?;
            let ni = g.input("newline", &[d])?;
            let y = g.add(Op::AnyRes(layout), &[fi, ni])?;
            g.output(y)?;
            let c = differential(gpu, &g, &[&features, &newline], storage, 0.0, 0.0, |_| 0.0)?;
            (format!("image {image:?} tile {tile} pinpoints {pinpoints:?} d{d} {storage} {kind:?} inject={inject}"), c)
        }
        "convert" => {
            // Rounding f32 to the storage type, overflow to ±Inf included (f32's full range).
            let n = edge(rng, 3000);
            let x = values(rng, n, kind, 1e38, inject);
            let xi = g.input("x", &[n])?;
            let y = g.add(Op::Convert(storage), &[xi])?;
            g.output(y)?;
            (
                format!("{n} to {storage} {kind:?} inject={inject}"),
                differential(gpu, &g, &[&x], storage, 0.0, 0.0, |_| 0.0)?,
            )
        }
        other => {
            return Err(vlbridge::Error::Graph(format!("unknown kernel `{other}` (known: {})", KERNELS.join(", "))));
        }
    };
    Ok(Outcome { description, comparison })
}
