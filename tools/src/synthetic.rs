//! Random checkpoints under upstream state-dict names, so the demo loads every connector the
//! way it loads a real one (`from_weights`), at real sizes, without downloading anything.

use rand::rngs::StdRng;
use safetensors::tensor::TensorView;
use vlbridge::weights::Weights;
use vlbridge::{DType, Error, Result};

use crate::demo::normal;

/// Upstream's init scale for a tensor, from its name and rank: `nn.Linear` weights
/// N(0, 1/fan_in), LayerNorm weights 1 + N(0, 0.1²), biases N(0, 0.1²), learnable queries /
/// latents N(0, 1).
fn init(rng: &mut StdRng, name: &str, shape: &[usize]) -> Vec<f32> {
    let n = shape.iter().product();
    if name.ends_with("weight") && shape.len() == 2 {
        normal(rng, n, 1.0 / (shape[1] as f32).sqrt())
    } else if name.ends_with("weight") {
        normal(rng, n, 0.1).into_iter().map(|v| 1.0 + v).collect()
    } else if name.ends_with("bias") {
        normal(rng, n, 0.1)
    } else {
        normal(rng, n, 1.0)
    }
}

/// `values` as little-endian `dtype` bytes (f16 and bf16 rounded to nearest).
fn encode(values: &[f32], dtype: DType) -> Vec<u8> {
    match dtype {
        DType::F32 => bytemuck::cast_slice(values).to_vec(),
        DType::F16 => values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect(),
        DType::BF16 => values.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect(),
    }
}

/// A checkpoint holding `tensors` (name, shape) with random values, plus `fixed` values, every
/// tensor stored as `dtype` (as checkpoints ship them: f32, f16 or bf16).
pub fn checkpoint(
    rng: &mut StdRng,
    tensors: &[(String, Vec<usize>)],
    fixed: &[(&str, f32)],
    dtype: DType,
) -> Result<Weights> {
    let mut data: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, shape)| (name.clone(), shape.clone(), encode(&init(rng, name, shape), dtype)))
        .collect();
    data.extend(fixed.iter().map(|(name, v)| (name.to_string(), vec![1], encode(&[*v], dtype))));
    let stored = match dtype {
        DType::F32 => safetensors::Dtype::F32,
        DType::F16 => safetensors::Dtype::F16,
        DType::BF16 => safetensors::Dtype::BF16,
    };
    let views = data
        .iter()
        .map(|(name, shape, bytes)| Ok((name.as_str(), TensorView::new(stored, shape.clone(), bytes)?)))
        .collect::<std::result::Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| Error::File { path: "synthetic checkpoint".into(), problem: e.to_string() })?;
    let bytes = safetensors::serialize(views, None)
        .map_err(|e| Error::File { path: "synthetic checkpoint".into(), problem: e.to_string() })?;
    Weights::from_bytes(bytes, "synthetic checkpoint")
}

fn linear(out: &mut Vec<(String, Vec<usize>)>, prefix: &str, rows: usize, cols: usize, bias: bool) {
    out.push((format!("{prefix}.weight"), vec![rows, cols]));
    if bias {
        out.push((format!("{prefix}.bias"), vec![rows]));
    }
}

fn norm(out: &mut Vec<(String, Vec<usize>)>, prefix: &str, dim: usize) {
    out.push((format!("{prefix}.weight"), vec![dim]));
    out.push((format!("{prefix}.bias"), vec![dim]));
}

/// llava-hf's projector names: `multi_modal_projector.linear_{1,2}`.
pub fn llava(vision: usize, hidden: usize, text: usize) -> Vec<(String, Vec<usize>)> {
    let mut t = Vec::new();
    linear(&mut t, "multi_modal_projector.linear_1", hidden, vision, true);
    linear(&mut t, "multi_modal_projector.linear_2", text, hidden, true);
    t
}

/// BLIP-2's Q-Former names (`Blip2ForConditionalGeneration`): `query_tokens`, `qformer.*`.
pub fn qformer(
    queries: usize,
    hidden: usize,
    encoder: usize,
    layers: usize,
    inter: usize,
    freq: usize,
) -> Vec<(String, Vec<usize>)> {
    let mut t = vec![("query_tokens".to_string(), vec![1, queries, hidden])];
    norm(&mut t, "qformer.layernorm", hidden);
    for i in 0..layers {
        let p = format!("qformer.encoder.layer.{i}");
        for part in ["query", "key", "value"] {
            linear(&mut t, &format!("{p}.attention.attention.{part}"), hidden, hidden, true);
        }
        linear(&mut t, &format!("{p}.attention.output.dense"), hidden, hidden, true);
        norm(&mut t, &format!("{p}.attention.output.LayerNorm"), hidden);
        if i % freq == 0 {
            linear(&mut t, &format!("{p}.crossattention.attention.query"), hidden, hidden, true);
            linear(&mut t, &format!("{p}.crossattention.attention.key"), hidden, encoder, true);
            linear(&mut t, &format!("{p}.crossattention.attention.value"), hidden, encoder, true);
            linear(&mut t, &format!("{p}.crossattention.output.dense"), hidden, hidden, true);
            norm(&mut t, &format!("{p}.crossattention.output.LayerNorm"), hidden);
        }
        linear(&mut t, &format!("{p}.intermediate_query.dense"), inter, hidden, true);
        linear(&mut t, &format!("{p}.output_query.dense"), hidden, inter, true);
        norm(&mut t, &format!("{p}.output_query.LayerNorm"), hidden);
    }
    t
}

/// open_flamingo's `Flamingo.perceiver` names.
pub fn perceiver(latents: usize, dim: usize, depth: usize, inner: usize, ff: usize) -> Vec<(String, Vec<usize>)> {
    let mut t = vec![("perceiver.latents".to_string(), vec![latents, dim])];
    for i in 0..depth {
        let (a, f) = (format!("perceiver.layers.{i}.0"), format!("perceiver.layers.{i}.1"));
        norm(&mut t, &format!("{a}.norm_media"), dim);
        norm(&mut t, &format!("{a}.norm_latents"), dim);
        linear(&mut t, &format!("{a}.to_q"), inner, dim, false);
        linear(&mut t, &format!("{a}.to_kv"), 2 * inner, dim, false);
        linear(&mut t, &format!("{a}.to_out"), dim, inner, false);
        norm(&mut t, &format!("{f}.0"), dim);
        linear(&mut t, &format!("{f}.1"), ff, dim, false);
        linear(&mut t, &format!("{f}.3"), dim, ff, false);
    }
    norm(&mut t, "perceiver.norm", dim);
    t
}

/// open_flamingo's gated cross-attention layer names under `prefix` (gates are added apart).
pub fn gated_xattn(prefix: &str, dim: usize, visual: usize, inner: usize, ff: usize) -> Vec<(String, Vec<usize>)> {
    let mut t = Vec::new();
    norm(&mut t, &format!("{prefix}attn.norm"), dim);
    linear(&mut t, &format!("{prefix}attn.to_q"), inner, dim, false);
    linear(&mut t, &format!("{prefix}attn.to_kv"), 2 * inner, visual, false);
    linear(&mut t, &format!("{prefix}attn.to_out"), dim, inner, false);
    norm(&mut t, &format!("{prefix}ff.0"), dim);
    linear(&mut t, &format!("{prefix}ff.1"), ff, dim, false);
    linear(&mut t, &format!("{prefix}ff.3"), dim, ff, false);
    t
}
