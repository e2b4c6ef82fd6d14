//! The linear kernel's fuzz, bench and precision cases.

use super::NAME;
use crate::dtype::DType;
use crate::error::Result;
use crate::kernels::cases::{
    BenchCase, Case, CaseRng, CaseTarget, INPUT_NORM_EPS, SUBNORMAL_FLOOR, Tolerance, dot_ulps, huge_for, normed_rows,
    pick_storage,
};
use crate::ops::{Epilogue, GeluForm, InputNorm, Residual, RotaryPairs};
use crate::reference;

/// The epilogues the linear kernel fuses, before a row scale or an input norm is added: the
/// fuzzer and the proptests draw from these.
pub const EPILOGUES: [Epilogue; 8] = [
    Epilogue::NONE,
    Epilogue::BIAS,
    Epilogue::bias_gelu(GeluForm::Erf),
    Epilogue::bias_gelu(GeluForm::Tanh),
    Epilogue::bias_gelu(GeluForm::Quick),
    Epilogue::SWIGLU,
    Epilogue { bias: true, ..Epilogue::SWIGLU },
    Epilogue { activation: Some(GeluForm::Erf), ..Epilogue::SWIGLU },
];

/// Random shapes, epilogues and weight dtypes; x from the fuzz distributions. A dot
/// product's rounding grows with Σ|x·w| (+|b|), not with its result: the tolerance follows it.
pub(super) fn fuzz(rng: &mut CaseRng, target: &CaseTarget) -> Result<Case> {
    let (kind, inject, storage) = (rng.distribution(), rng.bool(0.25), pick_storage(rng, target));
    let (m, k, n) = (rng.edge(64), rng.edge(300), rng.edge(300));
    let mut epilogue = rng.pick(&EPILOGUES);
    if rng.bool(0.2) {
        epilogue = epilogue.with_row_scale();
    }
    // The rotary towers' QKV GEMM: a turn after the bias, nothing after it.
    if rng.bool(0.15) {
        let pairs = RotaryPairs { heads: rng.range(1, 3), head_dim: 2 * rng.range(1, 40) };
        epilogue = Epilogue { bias: rng.bool(0.5), ..Epilogue::NONE.with_rotary(pairs) };
    }
    if rng.bool(0.25) {
        let eps = rng.pick(&INPUT_NORM_EPS);
        epilogue = epilogue.with_input_norm(rng.pick(&InputNorm::each_kind(eps)));
    }
    // SwiGLU reads gate/up pairs of weight rows; a rotary turn needs its heads.
    let n = if epilogue.swiglu { 2 * n } else { n };
    let n = epilogue.rotary.map_or(n, |r| n.max(r.channels()));
    let x = rng.values(m * k, kind, huge_for(storage, 1e15), inject);
    let w = rng.normals(n * k, 1.0 / (k as f32).sqrt());
    let b = rng.normals(n, 0.1);
    let scale = rng.normals(m, 1.0);
    // The reference reads the weights as stored, so it sees exactly what the kernel does.
    let weights = rng.pick(if target.shader_f16 {
        &[DType::F32, DType::BF16, DType::F16][..]
    } else {
        &[DType::F32, DType::BF16]
    });
    let mut c = Case::builder(NAME);
    let mut inputs = vec![c.input("x", &[m, k], storage, x.clone()), c.constant("w", &[n, k], weights, w.clone())];
    if epilogue.has_bias() {
        inputs.push(c.constant("b", &[n], DType::F32, b.clone()));
    }
    if epilogue.row_scale {
        inputs.push(c.constant("row_scale", &[m], DType::F32, scale.clone()));
    }
    let angles = rng.normals(m * epilogue.rotary.map_or(0, |r| r.head_dim / 2), 100.0);
    if let Some(r) = epilogue.rotary {
        let table: Vec<f32> = angles.iter().flat_map(|a| [a.cos(), a.sin()]).collect();
        inputs.push(c.constant("table", &[m, r.head_dim / 2, 2], DType::F32, table));
    }
    let (norm_w, norm_b) = (rng.normals(k, 1.0), rng.normals(k, 0.5));
    if let Some(norm) = epilogue.input_norm {
        inputs.push(c.constant("norm_weight", &[k], DType::F32, norm_w.clone()));
        if norm.inputs() == 2 {
            inputs.push(c.constant("norm_bias", &[k], DType::F32, norm_b.clone()));
        }
    }
    let y = c.node(epilogue, &inputs)?;
    let abs = |v: &[f32]| v.iter().map(|a| f64::from(a.abs())).collect::<Vec<_>>();
    let bias = epilogue.has_bias().then(|| abs(&b));
    // With an input norm the GEMM sees x̂, each element off by a few ulps of the row's largest
    // |x| over its spread (f32 cancellation in x - mean, as a separate f32 LayerNorm).
    let (x_seen, row_error) = match epilogue.input_norm {
        None => (abs(&x), vec![0.0; m]),
        Some(norm) => {
            let wide = |v: &[f32]| v.iter().map(|&a| f64::from(a)).collect::<Vec<_>>();
            let (normed, errors) = normed_rows(&wide(&x), k, norm, &wide(&norm_w), &wide(&norm_b));
            (normed.iter().map(|v| v.abs()).collect(), errors)
        }
    };
    let mut magnitude = reference::linear(&x_seen, &abs(&w), bias.as_deref(), m, n, k);
    for (row, e) in magnitude.chunks_mut(n).zip(&row_error) {
        row.iter_mut().for_each(|v| *v *= 1.0 + e);
    }
    let ulps = dot_ulps(k);
    // silu(g)·u: each factor's rounding times the other's size (|silu'| <= 1.1).
    let mut extra: Vec<f64> = if epilogue.swiglu {
        magnitude.chunks(2).map(|p| 2.1 * ulps * p[0] * p[1]).collect()
    } else if let Some(r) = epilogue.rotary {
        // A turned output combines its own and its partner's dot product (|cos|, |sin| <= 1),
        // then two f32 products and a sum.
        (0..m * n)
            .map(|i| {
                let col = i % n;
                let partner = if col < r.channels() { magnitude[i - col + (col ^ 1)] } else { 0.0 };
                (ulps + 3e-7) * (magnitude[i] + partner)
            })
            .collect()
    } else {
        magnitude.iter().map(|v| ulps * v).collect()
    };
    if epilogue.row_scale {
        reference::scale_rows(&mut extra, &abs(&scale));
    }
    let description =
        format!("{m}x{k}x{n} {storage} activations {weights} weights {epilogue:?} {kind:?} inject={inject}");
    Ok(c.finish(&[y], description, Tolerance::new(SUBNORMAL_FLOOR, 1e-5).with_extra(extra)))
}

/// The LLaVA-1.5 projector's two GEMM shapes with bias+GELU, weights and activations as shipped.
pub(super) fn bench() -> Vec<BenchCase> {
    let rows = [
        (1024, DType::F32, DType::F32),
        (4096, DType::F32, DType::F32),
        (1024, DType::F16, DType::F32),
        (1024, DType::BF16, DType::F32),
        (1024, DType::F16, DType::F16),
        (4096, DType::F16, DType::F32),
        (4096, DType::BF16, DType::F32),
        (4096, DType::F16, DType::F16),
    ];
    rows.into_iter()
        .map(|(k, weights, activations)| {
            let (m, n) = (576, 4096);
            let label = match activations {
                DType::F32 => format!("{m}x{k}x{n} bias+gelu, {weights} weights"),
                _ => format!("{m}x{k}x{n} bias+gelu, {weights} weights, {activations} activations"),
            };
            BenchCase::new(label, move || {
                let mut rng = CaseRng::new(0xbe7c4);
                let mut c = Case::builder(NAME);
                let x = c.input("x", &[m, k], activations, rng.normals(m * k, 1.0));
                let w = c.constant("w", &[n, k], weights, rng.normals(n * k, 1.0 / (k as f32).sqrt()));
                let b = c.constant("b", &[n], DType::F32, rng.normals(n, 1.0 / (n as f32).sqrt()));
                let y = c.node(Epilogue::bias_gelu(GeluForm::Erf), &[x, w, b])?;
                Ok(c.finish(&[y], String::new(), Tolerance::exact()))
            })
        })
        .collect()
}

/// What `vlbridge tune` times: one problem per class ([`super::tune_class`]), at connector-like
/// sizes small enough that the whole tune takes seconds.
pub(super) fn tune() -> Vec<BenchCase> {
    [(32, 768, 768), (256, 1024, 1024)]
        .into_iter()
        .map(|(m, k, n)| {
            BenchCase::new(format!("{m}x{k}x{n}"), move || {
                let mut rng = CaseRng::new(0x7e4e);
                let mut c = Case::builder(NAME);
                let x = c.input("x", &[m, k], DType::F32, rng.normals(m * k, 1.0));
                let w = c.constant("w", &[n, k], DType::F32, rng.normals(n * k, 1.0 / (k as f32).sqrt()));
                let y = c.node(Epilogue::NONE, &[x, w])?;
                Ok(c.finish(&[y], String::new(), Tolerance::exact()))
            })
        })
        .collect()
}

/// f16 activations over f32, f16 and bf16 weights, with bias, tanh GELU and a residual.
pub(super) fn precision() -> Result<Vec<Case>> {
    [DType::F32, DType::F16, DType::BF16]
        .into_iter()
        .map(|weights| {
            let mut rng = CaseRng::new(99);
            let (m, k, n) = (7, 36, 13);
            let mut c = Case::builder(NAME);
            let x = c.input("x", &[m, k], DType::F16, rng.signed(m * k));
            let residual = c.input("residual", &[m, n], DType::F16, rng.signed(m * n));
            let w: Vec<f32> = rng.signed(n * k).iter().map(|v| v / 6.0).collect();
            let w = c.constant("w", &[n, k], weights, w);
            let bias = c.constant("bias", &[n], DType::F32, rng.signed(n));
            let epilogue = Epilogue::bias_gelu(GeluForm::Tanh).with_residual(Residual::Add);
            let y = c.node(epilogue, &[x, w, bias, residual])?;
            Ok(c.finish(&[y], format!("{weights} weights"), Tolerance::new(0.0, 1e-5)))
        })
        .collect()
}
