//! One runner per upstream op of the manifest: loads the case's weights into the matching
//! connector or kernel, runs it, and compares with the stored upstream output.

use serde::Deserialize;

use super::{Job, ManifestCase};
use crate::connectors::{
    ConnectorPlan, GatedXAttnBlock, GatedXAttnConfig, LlavaProjector, Merger, MergerConfig, MergerKind, MllamaConfig,
    MllamaCrossAttention, PerceiverConfig, PerceiverResampler, QFormer, QFormerConfig, add_token_merge,
    cross_attention_masks,
};
use crate::dtype::{DType, HostVec};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::Graph;
use crate::host::{HostTensor, Tensors};
use crate::ops::{AnyResLayout, AvgPool, BilinearHalf, Tome};
use crate::reference::compare;
use crate::weights::Weights;

/// Output `name` of a plan's run, as f32.
fn output(mut outputs: Tensors, name: &str) -> Result<Vec<f32>> {
    let t = outputs.remove(name).ok_or_else(|| Error::Graph(format!("no output `{name}`")))?;
    Ok(t.data.into_f32())
}

/// `plan`'s one input (by its name and planned shape) holding `data`.
fn one_input(plan: &ConnectorPlan, data: Vec<f32>) -> Result<Tensors> {
    let name = plan.input_names().first().map(|n| n.to_string()).unwrap_or_default();
    let shape = plan.shape(&name).unwrap_or_default().to_vec();
    Ok([(name, HostTensor::new(&shape, HostVec::F32(data))?)].into())
}

/// Named f32 inputs of the given shapes.
fn f32_inputs(inputs: Vec<(&str, &[usize], Vec<f32>)>) -> Result<Tensors> {
    inputs
        .into_iter()
        .map(|(name, shape, data)| Ok((name.to_string(), HostTensor::new(shape, HostVec::F32(data))?)))
        .collect()
}

impl Job {
    /// One run whose single output is held to `want`.
    fn single(plan: ConnectorPlan, inputs: Tensors, want: Vec<f64>, atol: f64, rtol: f64) -> Job {
        let name = plan.output_names()[0].to_string();
        Job::new(vec![(plan, inputs)], move |mut outputs| {
            Ok(compare(&output(outputs.remove(0), &name)?, &want, atol, rtol))
        })
    }

    fn new(
        runs: Vec<(ConnectorPlan, Tensors)>,
        finish: impl FnOnce(Vec<Tensors>) -> Result<crate::reference::Comparison> + 'static,
    ) -> Job {
        Job { runs, finish: Box::new(finish) }
    }
}
#[derive(Deserialize)]
struct MlpCase {
    projector_hidden_act: String,
}

#[derive(Deserialize)]
struct PerceiverCase {
    heads: usize,
    layer_norm_eps: f32,
}

#[derive(Deserialize)]
struct GatedCase {
    heads: usize,
    layer_norm_eps: f32,
    only_attend_immediate_media: bool,
}

#[derive(Deserialize)]
struct GridCase {
    grid_h: usize,
    grid_w: usize,
    #[serde(default)]
    ceil_mode: bool,
}

#[derive(Deserialize)]
struct TomeCase {
    r: usize,
    class_token: bool,
}

/// The merger cases' settings (each op names its own fields).
#[derive(Deserialize)]
struct MergerCase {
    norm: Option<String>,
    spatial_merge_size: Option<usize>,
    merge: Option<usize>,
    scale_factor: Option<f64>,
    pool_kernel: Option<usize>,
    norm_eps: Option<f32>,
    layer_norm_eps: Option<f32>,
    rms_norm_eps: Option<f32>,
    patch_size: Option<usize>,
}

#[derive(Deserialize)]
struct MllamaCase {
    num_attention_heads: usize,
    num_key_value_heads: usize,
    rms_norm_eps: f32,
    layer_idx: usize,
}

#[derive(Deserialize)]
struct AnyResCase {
    grid_pinpoints_hw: Vec<(usize, usize)>,
    vision_image_size: usize,
    patch_size: usize,
}

pub(super) type Runner = fn(&Gpu, &Weights, &ManifestCase) -> Result<Job>;

/// The runner of each upstream op; `None` for ops not implemented.
pub(super) fn runner(op: &str) -> Option<Runner> {
    Some(match op {
        "mlp2x_gelu" | "mlp2x_gelu_tanh" => llava_mlp,
        "qformer" => qformer,
        "blip2_connector" => blip2,
        "mllama_cross_attention_decoder_layer" => mllama,
        "perceiver_resampler" => perceiver,
        "gated_xattn_dense" => gated_xattn,
        "avg_pool2d_tokens" => avg_pool,
        "bilinear_half_tokens" => bilinear,
        "tome_bipartite_soft_matching_merge_wavg" => tome,
        "anyres_pack" => anyres,
        "patch_merger_2x2_mlp"
        | "pixel_shuffle_ln_mlp"
        | "pixel_shuffle_linear"
        | "avgpool_rmsnorm_matmul"
        | "rmsnorm_unfold_merge_mlp" => merger,
        _ => return None,
    })
}

/// The deep attention blocks: README's suggested atol/rtol for f32.
const BLOCK_TOLERANCE: f64 = 1e-4;
/// Gathers, pools and ToMe (absolute).
const GATHER_TOLERANCE: f64 = 1e-5;
/// Bilinear: PyTorch computes source coordinates in f32 (absolute).
const BILINEAR_TOLERANCE: f64 = 2e-5;

/// Shape of `name`, which must have `N` dims.
fn shape_of<const N: usize>(weights: &Weights, name: &str) -> Result<[usize; N]> {
    let shape = weights.shape(name)?;
    shape.clone().try_into().map_err(|_| Error::shape("golden", format!("{name} rank"), N, shape.len()))
}

fn expected(weights: &Weights, name: &str) -> Result<Vec<f64>> {
    Ok(weights.f32(name, None)?.into_iter().map(f64::from).collect())
}

/// A connector planned for its input `x`, held to the stored `want` at the block tolerance.
fn block(plan: ConnectorPlan, weights: &Weights, x: &str, want: &str) -> Result<Job> {
    let inputs = one_input(&plan, weights.f32(x, None)?)?;
    Ok(Job::single(plan, inputs, expected(weights, want)?, BLOCK_TOLERANCE, BLOCK_TOLERANCE))
}

fn qformer(gpu: &Gpu, weights: &Weights, case: &ManifestCase) -> Result<Job> {
    let model = QFormer::from_weights(gpu, weights, QFormerConfig::from_json(&case.config)?)?;
    let [batch, tokens, _] = shape_of(weights, "encoder_hidden_states")?;
    block(model.plan(gpu, batch, tokens)?, weights, "encoder_hidden_states", "last_hidden_state")
}

/// `get_image_features` after the vision tower: the Q-Former, then `language_projection`.
fn blip2(gpu: &Gpu, weights: &Weights, case: &ManifestCase) -> Result<Job> {
    let model = QFormer::from_weights(gpu, weights, QFormerConfig::from_json(&case.config)?)?
        .with_language_projection(gpu, weights)?;
    let [batch, tokens, _] = shape_of(weights, "image_embeds")?;
    block(model.plan(gpu, batch, tokens)?, weights, "image_embeds", "language_model_inputs")
}

fn perceiver(gpu: &Gpu, weights: &Weights, case: &ManifestCase) -> Result<Job> {
    let c: PerceiverCase = case.config()?;
    let config = PerceiverConfig { heads: c.heads, layer_norm_eps: c.layer_norm_eps, ..PerceiverConfig::default() };
    let model = PerceiverResampler::from_weights(gpu, weights, config)?;
    // [b, T, F, v, D]: every (b, T) item is resampled on its own over F·v tokens.
    let [b, media, frames, tokens, _] = shape_of(weights, "x")?;
    block(model.plan(gpu, b * media, frames * tokens)?, weights, "x", "latents_out")
}

fn gated_xattn(gpu: &Gpu, weights: &Weights, case: &ManifestCase) -> Result<Job> {
    let c: GatedCase = case.config()?;
    let config = GatedXAttnConfig {
        heads: c.heads,
        only_attend_immediate_media: c.only_attend_immediate_media,
        layer_norm_eps: c.layer_norm_eps,
        ..GatedXAttnConfig::default()
    };
    let block = GatedXAttnBlock::from_weights(gpu, weights, "lang_encoder.gated_cross_attn_layers.0.", config)?;
    let [batch, text, _] = shape_of(weights, "x")?;
    let [_, media, latents, _] = shape_of(weights, "media")?;
    let locations: Vec<u8> = weights.i64("media_locations")?.into_iter().map(|v| u8::from(v != 0)).collect();
    let plan = block.plan(gpu, batch, text, media, latents)?;
    let inputs = block.inputs(
        [batch, text, media, latents],
        &weights.f32("x", None)?,
        &weights.f32("media", None)?,
        &locations,
    )?;
    Ok(Job::single(plan, inputs, expected(weights, "y")?, BLOCK_TOLERANCE, BLOCK_TOLERANCE))
}

/// A graph of `op` on the single input `x`, its output `y`.
fn single(gpu: &Gpu, weights: &Weights, op: impl Into<crate::kernels::Op>) -> Result<(ConnectorPlan, Tensors)> {
    let shape = weights.shape("x")?;
    let mut g = Graph::new();
    let x = g.input("x", &shape)?;
    let y = g.add(op, &[x])?;
    g.output(y)?;
    let plan = ConnectorPlan::new(gpu, g, &["y"])?;
    let inputs = f32_inputs(vec![("x", &shape, weights.f32("x", None)?)])?;
    Ok((plan, inputs))
}

fn avg_pool(gpu: &Gpu, weights: &Weights, case: &ManifestCase) -> Result<Job> {
    let c: GridCase = case.config()?;
    let (plan, inputs) = single(gpu, weights, AvgPool::two_by_two(c.grid_h, c.grid_w, c.ceil_mode))?;
    Ok(Job::single(plan, inputs, expected(weights, "y")?, GATHER_TOLERANCE, 0.0))
}

fn bilinear(gpu: &Gpu, weights: &Weights, case: &ManifestCase) -> Result<Job> {
    let c: GridCase = case.config()?;
    let (plan, inputs) = single(gpu, weights, BilinearHalf { h: c.grid_h, w: c.grid_w })?;
    Ok(Job::single(plan, inputs, expected(weights, "y")?, BILINEAR_TOLERANCE, 0.0))
}

/// Merged tokens, then sizes, then the token → row mapping as upstream's one-hot `source`
/// `[batch, n - r, n]`, compared in one go.
fn tome(gpu: &Gpu, weights: &Weights, case: &ManifestCase) -> Result<Job> {
    let c: TomeCase = case.config()?;
    let [batch, tokens, channels] = shape_of(weights, "x")?;
    let cfg = Tome::new(tokens, c.r, c.class_token)?;
    let mut g = Graph::new();
    let x = g.input("x", &[batch, tokens, channels])?;
    let mut inputs = vec![("x", vec![batch, tokens, channels], weights.f32("x", None)?)];
    let sizes = if weights.names()?.iter().any(|n| n == "size_in") {
        inputs.push(("size_in", vec![batch, tokens, 1], weights.f32("size_in", Some(&[batch, tokens, 1]))?));
        Some(g.input("size_in", &[batch, tokens, 1])?)
    } else {
        None
    };
    let merged = add_token_merge(gpu, &mut g, x, sizes, cfg)?;
    for id in [merged.tokens, merged.sizes, merged.source] {
        g.output(id)?;
    }
    let plan = ConnectorPlan::new(gpu, g, &["tokens", "sizes", "source"])?;
    let inputs = f32_inputs(inputs.iter().map(|(n, s, d)| (*n, &s[..], d.clone())).collect())?;
    let want = [expected(weights, "merged")?, expected(weights, "size")?, expected(weights, "source")?].concat();
    let rows = cfg.output_tokens();
    Ok(Job::new(vec![(plan, inputs)], move |mut outputs| {
        let mut out = outputs.remove(0);
        let mut take =
            |name: &str| out.remove(name).map(|t| t.data).ok_or_else(|| Error::Graph(format!("no `{name}`")));
        let (tokens_out, sizes_out, source) = (take("tokens")?, take("sizes")?, take("source")?);
        let mut one_hot = vec![0.0f32; batch * rows * tokens];
        for (i, &row) in source.as_u32().unwrap_or_default().iter().enumerate() {
            let (b, t) = (i / tokens, i % tokens);
            if let Some(cell) = one_hot.get_mut((b * rows + row as usize) * tokens + t) {
                *cell = 1.0;
            }
        }
        let got: Vec<f32> = [tokens_out.into_f32(), sizes_out.into_f32(), one_hot].concat();
        Ok(compare(&got, &want, GATHER_TOLERANCE, 0.0))
    }))
}

fn anyres(gpu: &Gpu, weights: &Weights, case: &ManifestCase) -> Result<Job> {
    let c: AnyResCase = case.config()?;
    let size = weights.i64("image_size")?;
    let [h, w] = size[..] else {
        return Err(Error::shape("golden", "image_size elements", 2, size.len()));
    };
    let layout = AnyResLayout::new((h as usize, w as usize), &c.grid_pinpoints_hw, c.vision_image_size, c.patch_size)?;
    let (fs, ns) = (weights.shape("image_features")?, weights.shape("image_newline")?);
    let mut g = Graph::new();
    let features = g.input("image_features", &fs)?;
    let newline = g.input("image_newline", &ns)?;
    let packed = g.add(layout, &[features, newline])?;
    g.output(packed)?;
    let plan = ConnectorPlan::new(gpu, g, &["packed"])?;
    let inputs = f32_inputs(vec![
        ("image_features", &fs, weights.f32("image_features", None)?),
        ("image_newline", &ns, weights.f32("image_newline", None)?),
    ])?;
    // The token count must match exactly: it is appended to both sides.
    let want: Vec<f64> = expected(weights, "packed")?
        .into_iter()
        .chain(weights.i64("packed_len")?.into_iter().map(|v| v as f64))
        .collect();
    Ok(Job::new(vec![(plan, inputs)], move |mut outputs| {
        let got: Vec<f32> = output(outputs.remove(0), "packed")?.into_iter().chain([layout.tokens() as f32]).collect();
        if got.len() != want.len() {
            return Err(Error::shape("golden", "packed elements (+1 for the count)", want.len(), got.len()));
        }
        Ok(compare(&got, &want, GATHER_TOLERANCE, 0.0))
    }))
}

fn llava_mlp(gpu: &Gpu, weights: &Weights, case: &ManifestCase) -> Result<Job> {
    let c: MlpCase = case.config()?;
    let projector = LlavaProjector::from_weights(gpu, weights, LlavaProjector::activation(&c.projector_hidden_act)?)?;
    let [batch, tokens, dim] = shape_of(weights, "image_features")?;
    let x = weights.f32("image_features", Some(&[batch, tokens, dim]))?;
    let plan = projector.plan(gpu, batch, tokens)?;
    let inputs = one_input(&plan, x.clone())?;
    if case.dtype.as_deref() != Some("float16") {
        return Ok(Job::single(plan, inputs, expected(weights, "projected")?, 1e-4, 1e-4));
    }
    // f16 cases (README: atol ~5e-3): f32 activations over the f16 weights against upstream's
    // f32 evaluation of the same f16 values, and, where the device reads f16, f16 activations
    // (as upstream's f16 module stores them) against upstream's f16 output, in one comparison.
    let mut want = expected(weights, "projected_f32ref")?;
    let mut runs = vec![(plan, inputs)];
    if gpu.caps().shader_f16 {
        let f16 = projector.with_activations(DType::F16).plan(gpu, batch, tokens)?;
        let inputs = one_input(&f16, x)?;
        runs.push((f16, inputs));
        want.extend(expected(weights, "projected")?);
    }
    Ok(Job::new(runs, move |outputs| {
        let got = outputs.into_iter().map(|o| output(o, "projected")).collect::<Result<Vec<_>>>()?.concat();
        Ok(compare(&got, &want, 5e-3, 5e-3))
    }))
}

/// The spatial-merge projectors: the result and, where the case has it, the intermediate
/// upstream exposes (`pixel_shuffled`, Mistral's merging-layer output), compared in one go.
fn merger(gpu: &Gpu, weights: &Weights, case: &ManifestCase) -> Result<Job> {
    let c: MergerCase = case.config()?;
    let kind = match case.op.as_str() {
        "patch_merger_2x2_mlp" if c.norm.as_deref() == Some("torch.nn.LayerNorm") => MergerKind::Qwen2Vl,
        "patch_merger_2x2_mlp" => MergerKind::Qwen25Vl,
        "pixel_shuffle_ln_mlp" => MergerKind::InternVl,
        "pixel_shuffle_linear" => MergerKind::Idefics3,
        "avgpool_rmsnorm_matmul" => MergerKind::Gemma3,
        _ => MergerKind::Mistral3,
    };
    // InternVL's scale_factor is the downsample ratio (0.5); its block side is `merge`.
    let scale = match kind {
        MergerKind::InternVl => c.merge,
        MergerKind::Idefics3 => c.scale_factor.map(|s| s as usize),
        MergerKind::Gemma3 => c.pool_kernel,
        _ => c.spatial_merge_size,
    };
    let scale = scale
        .ok_or_else(|| Error::Config { field: format!("{}.config", case.name), problem: "no block side".into() })?;
    let mut config = MergerConfig::new(kind, scale);
    config.eps = c.norm_eps.or(c.layer_norm_eps).or(c.rms_norm_eps).unwrap_or(config.eps);
    config.patch_size = c.patch_size.unwrap_or(config.patch_size);
    let merger = Merger::from_weights(gpu, weights, config)?;
    let input = kind.input_names()[0];
    let sizes: Vec<(usize, usize)> = match weights.i64("image_sizes") {
        Ok(v) => v.chunks(2).map(|p| (p[0] as usize, p.get(1).copied().unwrap_or(0) as usize)).collect(),
        Err(_) => Vec::new(),
    };
    let plan = merger.plan(gpu, &weights.shape(input)?, &sizes)?;
    let names: Vec<String> = plan.output_names().iter().map(|n| n.to_string()).collect();
    let inputs = one_input(&plan, weights.f32(input, None)?)?;
    let mut want = expected(weights, kind.output_names()[0])?;
    // The golden files name Mistral's merging-layer output `merged`.
    for aux in ["pixel_shuffled", "merged"].into_iter().filter(|_| kind.output_names().len() > 1) {
        if weights.contains(aux) && aux != kind.output_names()[0] {
            want.extend(expected(weights, aux)?);
        }
    }
    Ok(Job::new(vec![(plan, inputs)], move |mut outputs| {
        let out = outputs.remove(0);
        let got = names.iter().map(|n| output(out.clone(), n)).collect::<Result<Vec<_>>>()?.concat();
        if got.len() != want.len() {
            return Err(Error::shape("golden", "merger outputs", want.len(), got.len()));
        }
        Ok(compare(&got, &want, BLOCK_TOLERANCE, BLOCK_TOLERANCE))
    }))
}

/// `MllamaCrossAttentionDecoderLayer` on the masks exactly as the layer receives them.
fn mllama(gpu: &Gpu, weights: &Weights, case: &ManifestCase) -> Result<Job> {
    let c: MllamaCase = case.config()?;
    let [batch, text, hidden] = shape_of(weights, "hidden_states")?;
    let [_, vision, _] = shape_of(weights, "cross_attention_states")?;
    let prefix = format!("language_model.model.layers.{}.", c.layer_idx);
    let [intermediate, _] = shape_of(weights, &format!("{prefix}mlp.gate_proj.weight"))?;
    let config = MllamaConfig {
        hidden_size: hidden,
        heads: c.num_attention_heads,
        kv_heads: c.num_key_value_heads,
        intermediate_size: intermediate,
        rms_norm_eps: c.rms_norm_eps,
    };
    let layer = MllamaCrossAttention::from_weights(gpu, weights, &prefix, config)?;
    let [x, states, mask, rows] =
        ["hidden_states", "cross_attention_states", "cross_attention_mask", "full_text_row_masked_out_mask"]
            .map(|name| weights.f32(name, None));
    let (mask, rows) = (mask?, rows?);
    let inputs = f32_inputs(vec![
        ("hidden_states", &[batch, text, hidden], x?),
        ("cross_attention_states", &[batch, vision, hidden], states?),
        ("cross_attention_mask", &[batch, text, vision], mask.clone()),
        ("full_text_row_masked_out_mask", &[batch * text], rows.clone()),
    ])?;
    let mut want = expected(weights, "y")?;
    // The masks vlbridge builds from the int mask must be the ones upstream passed.
    let shape = shape_of::<4>(weights, "cross_attention_mask_int")?;
    let (built, built_rows) =
        cross_attention_masks(&weights.i64("cross_attention_mask_int")?, shape, vision / (shape[2] * shape[3]));
    want.extend(mask.iter().chain(&rows).map(|&v| f64::from(v)));
    let plan = layer.plan(gpu, batch, text, vision)?;
    Ok(Job::new(vec![(plan, inputs)], move |mut outputs| {
        let mut got = output(outputs.remove(0), "hidden_states")?;
        got.extend(built.iter().chain(&built_rows));
        Ok(compare(&got, &want, BLOCK_TOLERANCE, BLOCK_TOLERANCE))
    }))
}
