//! GPU kernels against the f64 reference on random shapes and values.
//!
//! Tolerance for a K-term f32 dot product of O(1) terms: |err| <= 2e-6·√K + 1e-5 absolute plus
//! 1e-4 relative, well above f32 rounding (~6e-8·√K) and far below what a wrong index,
//! a dropped tail or a swapped GELU form produce (>= 1e-3).

mod common;

use common::{edge_size, forced_gpu, gpu, minimal_gpu, small_binding_gpu, to_f64, values};
use ntest::timeout;
use proptest::prelude::*;
use vlbridge::kernels::cases::INPUT_NORM_EPS;
use vlbridge::kernels::gemm::EPILOGUES;
use vlbridge::ops::{Epilogue, GeluForm, InputNorm, LayerNorm, RmsNorm, RotaryPairs};
use vlbridge::reference;
use vlbridge::{DType, Gpu, Graph, Plan, Tensor};

fn tolerance(k: usize) -> (f64, f64) {
    (2e-6 * (k as f64).sqrt() + 1e-5, 1e-4)
}

/// The linear kernel's epilogues as its fuzz cases draw them (`kernels::gemm::EPILOGUES`), with
/// or without a row scale and an input norm of each kind; one in five a rotary turn instead
/// (after the bias, with or without the input norm: the rotary towers' QKV GEMM) of 1-3 heads
/// of 2-16 dims.
fn epilogue() -> impl Strategy<Value = Epilogue> {
    let base = prop::sample::select(EPILOGUES.to_vec());
    let norms = (prop::sample::select(INPUT_NORM_EPS.to_vec()), 0..3usize)
        .prop_map(|(eps, kind)| InputNorm::each_kind(eps)[kind]);
    let rotary = prop::option::weighted(0.2, (1..4usize, 1..9usize));
    (base, any::<bool>(), prop::option::of(norms), rotary).prop_map(|(e, scaled, norm, rotary)| match rotary {
        Some((heads, half)) => {
            let pairs = RotaryPairs { heads, head_dim: 2 * half };
            Epilogue { bias: e.bias, input_norm: norm, ..Epilogue::NONE.with_rotary(pairs) }
        }
        None => {
            let e = if scaled { e.with_row_scale() } else { e };
            Epilogue { input_norm: norm, ..e }
        }
    })
}

#[derive(Debug, Clone)]
struct LinearCase {
    m: usize,
    n: usize,
    k: usize,
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    /// One per row, read when the epilogue scales rows.
    scale: Vec<f32>,
    /// The input norm's weight and bias, `[k]` each.
    norm: (Vec<f32>, Vec<f32>),
    /// Each row's (cos, sin) per rotary pair, read when the epilogue turns pairs.
    table: Vec<f32>,
    epilogue: Epilogue,
    /// Storage of the weight; `w` holds the values it represents exactly.
    weights: DType,
}

/// Shapes across both tile grids (16 × 256 outputs per workgroup for `gemm`, 4 × 4 blocks for
/// `gemm_portable`), k both a multiple of 4 (fast path) and not (portable path).
fn linear_case() -> impl Strategy<Value = LinearCase> {
    linear_case_up_to(40)
}

fn linear_case_up_to(max_m: usize) -> impl Strategy<Value = LinearCase> {
    let dtypes = prop::sample::select(vec![DType::F32, DType::F16, DType::BF16]);
    (edge_size(max_m), edge_size(300), edge_size(96), epilogue(), dtypes).prop_flat_map(
        |(m, n, k, epilogue, weights)| {
            // SwiGLU reads gate/up pairs of weight rows; a rotary turn needs its heads.
            let n = if epilogue.swiglu { 2 * n } else { n };
            let n = epilogue.rotary.map_or(n, |r| n.max(r.channels()));
            let pairs = epilogue.rotary.map_or(0, |r| r.head_dim / 2);
            let spread = 1.0 / (k as f32).sqrt();
            let data = (values(m * k, 1.0), values(n * k, spread * 1.7), values(n, 0.5), values(m, 1.0));
            (data, values(k, 1.5), values(k, 0.5), values(m * pairs, 100.0)).prop_map(
                move |((x, w, b, scale), nw, nb, angles)| {
                    // The reference sees exactly the values the narrow storage holds.
                    let w = w.iter().map(|&v| vlbridge::dtype::round_to(weights, f64::from(v)) as f32).collect();
                    let table = angles.iter().flat_map(|a| [a.cos(), a.sin()]).collect();
                    LinearCase { m, n, k, x, w, b, scale, norm: (nw, nb), table, epilogue, weights }
                },
            )
        },
    )
}

fn weight_tensor(gpu: &Gpu, c: &LinearCase) -> Tensor {
    Tensor::from_f32_as(gpu, &[c.n, c.k], &c.w, c.weights).unwrap()
}

/// Runs the case; `None` when the device cannot read the weight's dtype (f16 without
/// SHADER_F16), which must be the typed `Error::Unsupported`.
fn run_linear(gpu: &Gpu, c: &LinearCase) -> Option<Vec<f32>> {
    let mut g = Graph::new();
    let x = g.input("x", &[c.m, c.k]).unwrap();
    let w = g.constant("w", &weight_tensor(gpu, c));
    let mut inputs = vec![x, w];
    if c.epilogue.has_bias() {
        inputs.push(g.constant("b", &Tensor::from_f32(gpu, &[c.n], &c.b).unwrap()));
    }
    if c.epilogue.row_scale {
        inputs.push(g.constant("scale", &Tensor::from_f32(gpu, &[c.m], &c.scale).unwrap()));
    }
    if let Some(r) = c.epilogue.rotary {
        inputs.push(g.constant("table", &Tensor::from_f32(gpu, &[c.m, r.head_dim / 2, 2], &c.table).unwrap()));
    }
    if let Some(norm) = c.epilogue.input_norm {
        inputs.push(g.constant("norm_w", &Tensor::from_f32(gpu, &[c.k], &c.norm.0).unwrap()));
        if norm.inputs() == 2 {
            inputs.push(g.constant("norm_b", &Tensor::from_f32(gpu, &[c.k], &c.norm.1).unwrap()));
        }
    }
    let y = g.add(c.epilogue, &inputs).unwrap();
    g.output(y).unwrap();
    match Plan::new(gpu, &g) {
        Ok(plan) => Some(plan.run_f32(&[&c.x]).unwrap().remove(0)),
        Err(vlbridge::Error::Unsupported { .. })
            if c.weights == DType::F16 && !gpu.features().contains(vlbridge::wgpu::Features::SHADER_F16) =>
        {
            None
        }
        Err(e) => panic!("{e}"),
    }
}

fn reference_linear(c: &LinearCase) -> Vec<f64> {
    let bias = to_f64(&c.b);
    let (nw, nb) = (to_f64(&c.norm.0), to_f64(&c.norm.1));
    let x = match c.epilogue.input_norm {
        None => to_f64(&c.x),
        Some(InputNorm::Layer { eps }) => reference::layer_norm(&to_f64(&c.x), &nw, &nb, c.k, f64::from(eps)),
        Some(InputNorm::Rms { eps, unit_offset }) => {
            reference::rms_norm(&to_f64(&c.x), &nw, c.k, f64::from(eps), f64::from(u8::from(unit_offset)))
        }
    };
    let mut y = reference::linear(&x, &to_f64(&c.w), c.epilogue.has_bias().then_some(&bias[..]), c.m, c.n, c.k);
    if let Some(r) = c.epilogue.rotary {
        reference::rotate_pairs(&mut y, &to_f64(&c.table), c.n, r);
    }
    let mut y: Vec<f64> = match c.epilogue.activation {
        _ if c.epilogue.swiglu => reference::swiglu_pairs(&y, c.epilogue.activation),
        Some(form) => y.into_iter().map(|v| reference::gelu(form, v)).collect(),
        None => y,
    };
    if c.epilogue.row_scale {
        reference::scale_rows(&mut y, &to_f64(&c.scale));
    }
    y
}

fn check_linear(gpu: &Gpu, c: &LinearCase) -> Result<(), TestCaseError> {
    let Some(got) = run_linear(gpu, c) else {
        return Ok(());
    };
    let (mut atol, rtol) = tolerance(c.k);
    if c.epilogue.input_norm.is_some() {
        // Normalised inputs have rms 1 (entries up to √k): dot products √k times larger.
        atol *= (c.k as f64).sqrt();
    }
    if c.epilogue.rotary.is_some() {
        // A turned output combines two dot products, each with its own rounding.
        atol *= 2.0;
    }
    let cmp = reference::compare(&got, &reference_linear(c), atol, rtol);
    prop_assert!(cmp.passed(), "{}x{}x{} {:?}: {cmp}", c.m, c.n, c.k, c.epilogue);
    Ok(())
}

proptest! {
    // Each variant is a pipeline of its own per epilogue: fewer cases keep the suite quick.
    #![proptest_config(ProptestConfig { cases: 20, ..ProptestConfig::default() })]

    /// The GPU variants, forced on lavapipe: 64 × 64 and 32 × 32 workgroup-memory tiles and
    /// split-K, on sizes that are not multiples of any tile.
    #[test]
    #[timeout(300_000)]
    fn tiled_and_split_k_linear_match_reference(c in linear_case_up_to(80), variant in prop::sample::select(vec!["tiled", "tiled32", "splitk"])) {
        let gpu = forced_gpu("linear", variant);
        check_linear(gpu, &c)?;
        // The variant ran, not a fallback.
        let mut g = Graph::new();
        let x = g.input("x", &[c.m, c.k]).unwrap();
        let w = g.constant("w", &weight_tensor(gpu, &c));
        let y = g.add(Epilogue::NONE, &[x, w]).unwrap();
        g.output(y).unwrap();
        if let Ok(plan) = Plan::new(gpu, &g) {
            let ran = plan.variants();
            prop_assert!(ran.len() == 1 && ran[0].starts_with(&format!("gemm_{variant}")), "{ran:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    #[timeout(300_000)]
    fn linear_matches_reference(c in linear_case()) {
        check_linear(gpu(), &c)?;
    }

    #[test]
    #[timeout(300_000)]
    fn portable_linear_matches_reference(c in linear_case()) {
        check_linear(minimal_gpu(), &c)?;
    }

    #[test]
    #[timeout(300_000)]
    fn linear_with_weights_bound_in_chunks_matches_reference(c in linear_case_up_to(8)) {
        // 16 KiB bindings: weights up to 300 × 96 floats (112 KiB) run as several dispatches
        // over row ranges; x and y (at most 8 rows) still fit one binding.
        check_linear(small_binding_gpu(), &c)?;
    }

    #[test]
    #[timeout(300_000)]
    fn gelu_pass_matches_reference(
        len in edge_size(5000),
        form in prop::sample::select(GeluForm::ALL.to_vec()),
        seed in any::<u64>(),
    ) {
        // Deterministic spread over [-12, 12], covering both tails.
        let x: Vec<f32> = (0..len).map(|i| ((i as u64 * 2654435761 + seed) % 24001) as f32 / 1000.0 - 12.0).collect();
        let gpu = gpu();
        let mut g = Graph::new();
        let input = g.input("x", &[len]).unwrap();
        let y = g.add(form, &[input]).unwrap();
        g.output(y).unwrap();
        let got = Plan::new(gpu, &g).unwrap().run_f32(&[&x]).unwrap().remove(0);
        let want: Vec<f64> = x.iter().map(|&v| reference::gelu(form, f64::from(v))).collect();
        let cmp = reference::compare(&got, &want, 1e-6, 1e-5);
        prop_assert!(cmp.passed(), "{form:?}: {cmp}");
    }

    #[test]
    #[timeout(300_000)]
    fn rms_norm_matches_reference(
        (rows, heads, dim, x, w, unit_offset, eps) in (edge_size(40), 1..4usize, edge_size(300), any::<bool>(), prop::sample::select(vec![1e-6f32, 1e-5]))
            .prop_flat_map(|(rows, heads, dim, unit_offset, eps)| (Just(rows), Just(heads), Just(dim), values(rows * heads * dim, 3.0), values(dim, 1.5), Just(unit_offset), Just(eps)))
    ) {
        let gpu = gpu();
        // heads > 1: the weight serves every dim-chunk of a [rows, heads·dim] row (Mllama's q/k norms).
        let op = RmsNorm { eps, unit_offset, per_head: heads > 1 };
        let mut g = Graph::new();
        let input = g.input("x", &[rows, heads * dim]).unwrap();
        let weight = g.constant("w", &Tensor::from_f32(gpu, &[dim], &w).unwrap());
        let y = g.add(op, &[input, weight]).unwrap();
        g.output(y).unwrap();
        let got = Plan::new(gpu, &g).unwrap().run_f32(&[&x]).unwrap().remove(0);
        let want = reference::rms_norm(&to_f64(&x), &to_f64(&w), dim, f64::from(eps), f64::from(u8::from(unit_offset)));
        // |x|/rms <= √dim: the normalised values carry ~√dim·1e-7 relative rounding.
        let cmp = reference::compare(&got, &want, 2e-6 * (dim as f64).sqrt() * 3.0, 1e-5);
        prop_assert!(cmp.passed(), "{rows}x{heads}x{dim} {op:?}: {cmp}");
    }

    #[test]
    #[timeout(300_000)]
    fn per_token_layer_norm_matches_reference(
        (rows, group, dim, x, w, b) in (edge_size(40), 1..5usize, edge_size(200))
            .prop_flat_map(|(rows, group, dim)| (Just(rows), Just(group), Just(dim), values(rows * group * dim, 3.0), values(dim, 1.5), values(dim, 0.5)))
    ) {
        // Qwen2-VL's merger: each of the `group` tokens of a [rows, group·dim] row on its own.
        let gpu = gpu();
        let mut g = Graph::new();
        let input = g.input("x", &[rows, group * dim]).unwrap();
        let weight = g.constant("w", &Tensor::from_f32(gpu, &[dim], &w).unwrap());
        let bias = g.constant("b", &Tensor::from_f32(gpu, &[dim], &b).unwrap());
        let y = g.add(LayerNorm::new(1e-6).per_head(), &[input, weight, bias]).unwrap();
        g.output(y).unwrap();
        let got = Plan::new(gpu, &g).unwrap().run_f32(&[&x]).unwrap().remove(0);
        let want = reference::layer_norm(&to_f64(&x), &to_f64(&w), &to_f64(&b), dim, 1e-6);
        // f32 rounding of x and its mean, ~2⁻²³·max|x|, is divided by the token's std: a token
        // of nearly equal values (std ≪ |x|) amplifies it, as it does in PyTorch's f32.
        let amplified = x
            .chunks(dim)
            .map(|t| {
                let t = to_f64(t);
                let mean = t.iter().sum::<f64>() / dim as f64;
                let var = t.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / dim as f64;
                t.iter().fold(0.0f64, |m, v| m.max(v.abs())) / (var + 1e-6).sqrt()
            })
            .fold(0.0, f64::max);
        let atol = 2e-6 * (dim as f64).sqrt() * 3.0 + 4.0 * f64::from(f32::EPSILON) * amplified * 1.5;
        let cmp = reference::compare(&got, &want, atol, 1e-5);
        prop_assert!(cmp.passed(), "{rows}x{group}x{dim}: {cmp}");
    }

    #[test]
    #[timeout(300_000)]
    fn fused_projector_matches_unfused_and_reference(
        (m, dims, tanh, data) in (edge_size(40), (edge_size(64), edge_size(80), edge_size(70)), any::<bool>())
            .prop_flat_map(|(m, (v, h, t), tanh)| {
                let data = (values(m * v, 1.0), values(h * v, 1.0 / (v as f32).sqrt()), values(h, 0.3),
                            values(t * h, 1.0 / (h as f32).sqrt()), values(t, 0.3));
                (Just(m), Just([v, h, t]), Just(tanh), data)
            })
    ) {
        let (x, w1, b1, w2, b2) = data;
        let form = if tanh { GeluForm::Tanh } else { GeluForm::Erf };
        let gpu = gpu();
        let p = vlbridge::connectors::LlavaProjector::from_f32(gpu, dims, &w1, &b1, &w2, &b2, form).unwrap();
        let fused = p.plan(gpu, 1, m).unwrap();
        // GELU rides in the first GEMM's epilogue: two dispatches, no activation pass.
        prop_assert_eq!(fused.plan().dispatches().len(), 2);
        let got = fused.project(&x).unwrap();
        let baseline = vlbridge::connectors::ConnectorPlan::new(gpu, p.unfused_graph(1, m).unwrap().0, &["projected"]);
        let unfused = baseline.unwrap().project(&x).unwrap();
        let want = reference::mlp(&to_f64(&x), &to_f64(&w1), &to_f64(&b1), &to_f64(&w2), &to_f64(&b2), form, m, dims);
        let (atol, rtol) = tolerance(dims[0].max(dims[1]));
        let cmp = reference::compare(&got, &want, atol, rtol);
        prop_assert!(cmp.passed(), "fused vs reference: {cmp}");
        let cmp = reference::compare(&got, &to_f64(&unfused), atol, rtol);
        prop_assert!(cmp.passed(), "fused vs unfused: {cmp}");
    }
}

#[test]
#[timeout(120_000)]
fn input_norms_fused_or_split_off_agree() {
    // A LayerNorm and an RMSNorm (1 + w) riding in GEMMs: fused into the loads (GPUs) or as
    // norm nodes in front (CPU rasterisers); one dispatch fewer each when fused.
    let (m, k, n) = (37, 70, 29);
    let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919 % 211) as f32 - 105.0) / 50.0 + 3.0).collect();
    let run = |gpu: &Gpu| {
        let mut g = Graph::new();
        let input = g.input("x", &[m, k]).unwrap();
        let param = |g: &mut Graph, name: &str, len: usize, scale: f32| {
            let v: Vec<f32> = (0..len).map(|i| 1.0 + scale * ((i % 13) as f32 - 6.0)).collect();
            g.constant(name, &Tensor::from_f32(gpu, &[len], &v).unwrap())
        };
        let w = g.constant("w", &Tensor::from_f32(gpu, &[n, k], &vec![0.05; n * k]).unwrap());
        let (gamma, beta) = (param(&mut g, "gamma", k, 0.05), param(&mut g, "beta", k, 0.1));
        let ln = Epilogue::NONE.with_input_norm(InputNorm::Layer { eps: 1e-5 });
        let a = g.add(ln, &[input, w, gamma, beta]).unwrap();
        let w2 = g.constant("w2", &Tensor::from_f32(gpu, &[k, n], &vec![-0.03; n * k]).unwrap());
        let r = param(&mut g, "r", n, 0.02);
        let rms = Epilogue::NONE.with_input_norm(InputNorm::Rms { eps: 1e-6, unit_offset: true });
        let b = g.add(rms, &[a, w2, r]).unwrap();
        g.output(b).unwrap();
        let plan = Plan::new(gpu, &g).unwrap();
        let got = plan.run_f32(&[&x]).unwrap().remove(0);
        let want = g.reference(&[x[..].into()]).unwrap().remove(0);
        (got, want, plan.dispatches().len())
    };
    let fused = forced_gpu("input_norm", "fused");
    let split = forced_gpu("input_norm", "separate");
    let (got_fused, want, fused_dispatches) = run(fused);
    let (got_split, _, split_dispatches) = run(split);
    assert_eq!((fused_dispatches, split_dispatches), (2, 4));
    for got in [&got_fused, &got_split] {
        let cmp = reference::compare(got, &want, 1e-4, 1e-4);
        assert!(cmp.passed(), "{cmp}");
    }
}

#[test]
#[timeout(60_000)]
fn the_cooperative_matrix_gemm_is_refused_where_the_device_lacks_it() {
    let gpu = forced_gpu("linear", "coop");
    let mut g = Graph::new();
    let x = g.input_as("x", &[5, 16], DType::F16).unwrap();
    let w = g.constant("w", &Tensor::from_f32_as(gpu, &[7, 16], &[0.5; 112], DType::F16).unwrap());
    let y = g.add(Epilogue::NONE, &[x, w]).unwrap();
    g.output(y).unwrap();
    let coop = vlbridge::wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
    match Plan::new(gpu, &g) {
        Err(vlbridge::Error::Unsupported { .. }) => assert!(!gpu.features().contains(coop)),
        Ok(plan) => assert!(gpu.features().contains(coop) && plan.variants() == ["gemm_coop"]),
        Err(e) => panic!("{e}"),
    }
}

#[test]
#[timeout(300_000)]
fn a_wrong_activation_fails_parity() {
    // The tanh golden case computed with exact GELU must fail at the golden tolerance: the
    // parity check (`vlbridge check`) can fail.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let w = vlbridge::weights::Weights::open(dir.join("llava_mlp_gelu_tanh.safetensors")).unwrap();
    let p = vlbridge::connectors::LlavaProjector::from_weights(gpu(), &w, GeluForm::Erf).unwrap();
    let x = w.f32("image_features", None).unwrap();
    let got = p.plan(gpu(), 2, 37).unwrap().project(&x).unwrap();
    let want: Vec<f64> = w.f32("projected", None).unwrap().into_iter().map(f64::from).collect();
    assert!(!reference::compare(&got, &want, 1e-4, 1e-4).passed());
}
