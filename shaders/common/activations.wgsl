// Activation functions shared by every kernel that applies one. Prepended to kernel sources.

// tanh that saturates instead of producing inf/inf = NaN for large |x|.
fn tanh_safe(x: f32) -> f32 {
    let e = exp(-2.0 * abs(x));
    return sign(x) * (1.0 - e) / (1.0 + e);
}

// erfc(z) with relative error below 1.2e-7 everywhere (Numerical Recipes `erfcc`, a Chebyshev
// fit). Working from erfc keeps GELU's negative tail accurate where 1 + erf(z) cancels.
fn erfc_approx(z: f32) -> f32 {
    let a = abs(z);
    let t = 1.0 / (1.0 + 0.5 * a);
    let p = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
        + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let r = t * exp(-a * a + p);
    return select(2.0 - r, r, z >= 0.0);
}

// Exact GELU, 0.5·x·(1 + erf(x/√2)) = 0.5·x·erfc(-x/√2): PyTorch's default, used by HF
// `gelu`, the BLIP-2 Q-Former and open_flamingo.
fn gelu_erf(x: f32) -> f32 {
    return 0.5 * x * erfc_approx(-x * 0.70710678118654752);
}

// Tanh-approximated GELU: HF `gelu_pytorch_tanh`, F.gelu(approximate="tanh").
fn gelu_tanh(x: f32) -> f32 {
    let inner = 0.79788456080286536 * (x + 0.044715 * x * x * x);
    return 0.5 * x * (1.0 + tanh_safe(inner));
}

// SiLU (swish), x·sigmoid(x): Llama's MLP gate. exp(-x) = inf for very negative x gives -0.
fn silu(x: f32) -> f32 {
    return x / (1.0 + exp(-x));
}

// Quick GELU, x·sigmoid(1.702·x): HF `quick_gelu` (CLIP, Qwen2-VL's ViT). As silu, a very
// negative x gives -0 (exp overflows to inf), -inf gives NaN (-inf / inf), as PyTorch's
// x · sigmoid(1.702x) = -inf · 0.
fn gelu_quick(x: f32) -> f32 {
    return x / (1.0 + exp(-1.702 * x));
}

// Activation by code, for kernels that pick one with an override constant:
// 0: identity, 1: exact GELU, 2: tanh GELU, 3: quick GELU.
fn activate(kind: u32, v: f32) -> f32 {
    switch kind {
        case 1u: { return gelu_erf(v); }
        case 2u: { return gelu_tanh(v); }
        case 3u: { return gelu_quick(v); }
        default: { return v; }
    }
}
