use crate::ops::GeluForm;

/// Exact GELU, `0.5·x·(1 + erf(x/√2))`.
pub fn gelu_erf(x: f64) -> f64 {
    0.5 * x * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// Tanh GELU, `0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³)))`.
pub fn gelu_tanh(x: f64) -> f64 {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
}

/// Quick GELU, `x·sigmoid(1.702·x)`, with 1.702 as PyTorch's f32 multiply sees it.
pub fn gelu_quick(x: f64) -> f64 {
    x / (1.0 + (-f64::from(1.702f32) * x).exp())
}

/// GELU of the given form.
pub fn gelu(form: GeluForm, x: f64) -> f64 {
    match form {
        GeluForm::Erf => gelu_erf(x),
        GeluForm::Tanh => gelu_tanh(x),
        GeluForm::Quick => gelu_quick(x),
    }
}

/// `x·Wᵀ + b` for x `[m, k]`, W `[n, k]` (nn.Linear layout), b `[n]`; returns `[m, n]`.
/// Rows are split over the machine's cores: real-size connector references are tens of
/// GFLOP.
pub fn linear(x: &[f64], w: &[f64], b: Option<&[f64]>, m: usize, n: usize, k: usize) -> Vec<f64> {
    assert_eq!(x.len(), m * k, "x must be [m, k]");
    assert_eq!(w.len(), n * k, "w must be [n, k]");
    let mut y = vec![0.0; m * n];
    // One thread where the platform has no others (the web): it cannot spawn any.
    let threads = std::thread::available_parallelism().map_or(1, usize::from).min(m.max(1));
    let rows_per_thread = m.div_ceil(threads).max(1);
    let fill = |chunk: usize, out: &mut [f64]| {
        for (r, out_row) in out.chunks_mut(n.max(1)).enumerate() {
            let i = chunk * rows_per_thread + r;
            let row = &x[i * k..(i + 1) * k];
            for (j, y) in out_row.iter_mut().enumerate() {
                let col = &w[j * k..(j + 1) * k];
                let dot: f64 = row.iter().zip(col).map(|(a, b)| a * b).sum();
                *y = dot + b.map_or(0.0, |b| b[j]);
            }
        }
    };
    if threads == 1 {
        fill(0, &mut y);
        return y;
    }
    std::thread::scope(|scope| {
        for (chunk, out) in y.chunks_mut(rows_per_thread * n.max(1)).enumerate() {
            scope.spawn(move || fill(chunk, out));
        }
    });
    y
}

/// The GEMM epilogue after the bias: activation, then `residual + v` or, with a gate,
/// `residual + tanh(gate)·v`.
pub fn epilogue(y: &mut [f64], activation: Option<GeluForm>, residual: Option<&[f64]>, gate: Option<f64>) {
    for (i, v) in y.iter_mut().enumerate() {
        if let Some(form) = activation {
            *v = gelu(form, *v);
        }
        if let Some(r) = residual {
            *v = r[i] + gate.map_or(1.0, f64::tanh) * *v;
        }
    }
}

/// `y = residual + λ ⊙ y` with `λ` per column (`y.len() / λ.len()` rows): a layer scale.
pub fn layer_scale(y: &mut [f64], residual: &[f64], scale: &[f64]) {
    let cols = scale.len().max(1);
    for (i, v) in y.iter_mut().enumerate() {
        *v = residual[i] + scale[i % cols] * *v;
    }
}

/// SwiGLU over interleaved pairs: `[.., 2n]` (gate₀, up₀, gate₁, up₁, ..) → `[.., n]` of
/// `silu(gate) · up`, or `gelu(gate) · up` with a GELU form (GEGLU: Pixtral's `gelu`).
pub fn swiglu_pairs(y: &[f64], gate: Option<GeluForm>) -> Vec<f64> {
    let act = |v: f64| gate.map_or_else(|| silu(v), |form| gelu(form, v));
    y.chunks(2).map(|p| act(p[0]) * p[1]).collect()
}

/// SiLU, `x · sigmoid(x)`.
pub fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

/// Multiplies row `r` of `y` (rows of `y.len() / scale.len()`) by `scale[r]`.
pub fn scale_rows(y: &mut [f64], scale: &[f64]) {
    let cols = y.len() / scale.len().max(1);
    for (row, s) in y.chunks_mut(cols.max(1)).zip(scale) {
        row.iter_mut().for_each(|v| *v *= s);
    }
}

/// The LLaVA projector: `linear_2(gelu(linear_1(x)))`.
#[allow(clippy::too_many_arguments)]
pub fn mlp(
    x: &[f64],
    w1: &[f64],
    b1: &[f64],
    w2: &[f64],
    b2: &[f64],
    form: GeluForm,
    m: usize,
    dims: [usize; 3],
) -> Vec<f64> {
    let [k, hidden, n] = dims;
    let h: Vec<f64> = linear(x, w1, Some(b1), m, hidden, k).into_iter().map(|v| gelu(form, v)).collect();
    linear(&h, w2, Some(b2), m, n, hidden)
}
