//! One runner per upstream op of the manifest: loads the case's weights into the matching
//! connector or kernel, runs it, and compares with the stored upstream output.

use serde::Deserialize;
use vlbridge::connectors::{
    GatedXAttnBlock, GatedXAttnConfig, LlavaProjector, Merger, MergerConfig, MergerKind, MllamaConfig,
    MllamaCrossAttention, PerceiverConfig, PerceiverResampler, QFormer, QFormerConfig, add_token_merge,
    cross_attention_masks,
};
use vlbridge::ops::{AnyResLayout, AvgPool, BilinearHalf, Tome};
use vlbridge::reference::{Comparison, compare};
use vlbridge::weights::Weights;
use vlbridge::{DType, Error, Gpu, Graph, HostTensor, HostVec, Plan, Result, Tensors};

/// Output `name` of a plan's run, as f32.
fn output(mut outputs: Tensors, name: &str) -> Result<Vec<f32>> {
    let t = outputs.remove(name).ok_or_else(|| Error::Graph(format!("no output `{name}`")))?;
    Ok(t.data.into_f32())
}

use super::ManifestCase;
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

pub(super) type Runner = fn(&Gpu, &Weights, &ManifestCase) -> Result<Comparison>;

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

fn qformer(gpu: &Gpu, weights: &Weights, case: &ManifestCase) -> Result<Comparison> {
    let model = QFormer::from_weights(gpu, weights, QFormerConfig::from_json(&case.config)?)?;
    let [batch, tokens, _] = shape_of(weights, "encoder_hidden_states")?;
    let got = model.plan(gpu, batch, tokens)?.project(&weights.f32("encoder_hidden_states", None)?)?;
    Ok(compare(&got, &expected(weights, "last_hidden_state")?, BLOCK_TOLERANCE, BLOCK_TOLERANCE))
}

/// `get_image_features` after the vision tower: the Q-Former, then `language_projection`.
fn blip2(gpu: &Gpu, weights: &Weights, case: &ManifestCase) -> Result<Comparison> {
    let model = QFormer::from_weights(gpu, weights, QFormerConfig::from_json(&case.config)?)?
        .with_language_projection(gpu, weights)?;
    let [batch, tokens, _] = shape_of(weights, "image_embeds")?;
    let got = model.plan(gpu, batch, tokens)?.project(&weights.f32("image_embeds", None)?)?;
    Ok(compare(&got, &expected(weights, "language_model_inputs")?, BLOCK_TOLERANCE, BLOCK_TOLERANCE))
}

fn perceiver(gpu: &Gpu, weights: &Weights, case: &ManifestCase) -> Result<Comparison> {
    let c: PerceiverCase = case.config()?;
    let config = PerceiverConfig { heads: c.heads, layer_norm_eps: c.layer_norm_eps, ..PerceiverConfig::default() };
    let model = PerceiverResampler::from_weights(gpu, weights, config)?;
    // [b, T, F, v, D]: every (b, T) item is resampled on its own over F·v tokens.
    let [b, media, frames, tokens, _] = shape_of(weights, "x")?;
    let got = model.plan(gpu, b * media, frames * tokens)?.project(&weights.f32("x", None)?)?;
    Ok(compare(&got, &expected(weights, "latents_out")?, BLOCK_TOLERANCE, BLOCK_TOLERANCE))
}

fn gated_xattn(gpu: &Gpu, weights: &Weights, case: &ManifestCase) -> Result<Comparison> {
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
    let got = output(plan.run(&inputs)?, "hidden_states")?;
    Ok(compare(&got, &expected(weights, "y")?, BLOCK_TOLERANCE, BLOCK_TOLERANCE))
}

/// Plans a graph of `op` on the single input `x` and returns its output.
fn single(gpu: &Gpu, weights: &Weights, op: impl Into<vlbridge::kernels::Op>) -> Result<Vec<f32>> {
    let mut g = Graph::new();
    let x = g.input("x", &weights.shape("x")?)?;
    let y = g.add(op, &[x])?;
    g.output(y)?;
    Ok(Plan::new(gpu, &g)?.run_f32(&[&weights.f32("x", None)?])?.remove(0))
}

fn avg_pool(gpu: &Gpu, weights: &Weights, case: &ManifestCase) -> Result<Comparison> {
    let c: GridCase = case.config()?;
    let got = single(gpu, weights, AvgPool::two_by_two(c.grid_h, c.grid_w, c.ceil_mode))?;
    Ok(compare(&got, &expected(weights, "y")?, GATHER_TOLERANCE, 0.0))
}

fn bilinear(gpu: &Gpu, weights: &Weights, case: &ManifestCase) -> Result<Comparison> {
    let c: GridCase = case.config()?;
    let got = single(gpu, weights, BilinearHalf { h: c.grid_h, w: c.grid_w })?;
    Ok(compare(&got, &expected(weights, "y")?, BILINEAR_TOLERANCE, 0.0))
}

/// Merged tokens, then sizes, then the token → row mapping as upstream's one-hot `source`
/// `[batch, n - r, n]`, compared in one go.
fn tome(gpu: &Gpu, weights: &Weights, case: &ManifestCase) -> Result<Comparison> {
    let c: TomeCase = case.config()?;
    let [batch, tokens, channels] = shape_of(weights, "x")?;
    let cfg = Tome::new(tokens, c.r, c.class_token)?;
    let mut g = Graph::new();
    let x = g.input("x", &[batch, tokens, channels])?;
    let mut data = vec![weights.f32("x", None)?];
    let sizes = if weights.names()?.iter().any(|n| n == "size_in") {
        data.push(weights.f32("size_in", Some(&[batch, tokens, 1]))?);
        Some(g.input("size_in", &[batch, tokens, 1])?)
    } else {
        None
    };
    let merged = add_token_merge(gpu, &mut g, x, sizes, cfg)?;
    for id in [merged.tokens, merged.sizes, merged.source] {
        g.output(id)?;
    }
    let inputs: Vec<_> = data.iter().map(|d| d.into()).collect();
    let [tokens_out, sizes_out, source] = <[HostVec; 3]>::try_from(Plan::new(gpu, &g)?.run(&inputs)?)
        .map_err(|_| Error::Graph("ToMe graph has three outputs".into()))?;
    let rows = cfg.output_tokens();
    let mut one_hot = vec![0.0f32; batch * rows * tokens];
    for (i, &row) in source.as_u32().unwrap_or_default().iter().enumerate() {
        let (b, t) = (i / tokens, i % tokens);
        if let Some(cell) = one_hot.get_mut((b * rows + row as usize) * tokens + t) {
            *cell = 1.0;
        }
    }
    let got: Vec<f32> = [tokens_out.into_f32(), sizes_out.into_f32(), one_hot].concat();
    let want = [expected(weights, "merged")?, expected(weights, "size")?, expected(weights, "source")?].concat();
    Ok(compare(&got, &want, GATHER_TOLERANCE, 0.0))
}

fn anyres(gpu: &Gpu, weights: &Weights, case: &ManifestCase) -> Result<Comparison> {
    let c: AnyResCase = case.config()?;
    let size = weights.i64("image_size")?;
    let [h, w] = size[..] else {
        return Err(Error::shape("golden", "image_size elements", 2, size.len()));
    };
    let layout = AnyResLayout::new((h as usize, w as usize), &c.grid_pinpoints_hw, c.vision_image_size, c.patch_size)?;
    let mut g = Graph::new();
    let features = g.input("image_features", &weights.shape("image_features")?)?;
    let newline = g.input("image_newline", &weights.shape("image_newline")?)?;
    let packed = g.add(layout, &[features, newline])?;
    g.output(packed)?;
    let inputs = [weights.f32("image_features", None)?, weights.f32("image_newline", None)?];
    let got = Plan::new(gpu, &g)?.run_f32(&[&inputs[0], &inputs[1]])?.remove(0);
    // The token count must match exactly: it is appended to both sides.
    let got: Vec<f32> = got.into_iter().chain([layout.tokens() as f32]).collect();
    let want: Vec<f64> = expected(weights, "packed")?
        .into_iter()
        .chain(weights.i64("packed_len")?.into_iter().map(|v| v as f64))
        .collect();
    if got.len() != want.len() {
        return Err(Error::shape("golden", "packed elements (+1 for the count)", want.len(), got.len()));
    }
    Ok(compare(&got, &want, GATHER_TOLERANCE, 0.0))
}

fn llava_mlp(gpu: &Gpu, weights: &Weights, case: &ManifestCase) -> Result<Comparison> {
    let c: MlpCase = case.config()?;
    let projector = LlavaProjector::from_weights(gpu, weights, LlavaProjector::activation(&c.projector_hidden_act)?)?;
    let [batch, tokens, dim] = shape_of(weights, "image_features")?;
    let x = weights.f32("image_features", Some(&[batch, tokens, dim]))?;
    let got = projector.plan(gpu, batch, tokens)?.project(&x)?;
    if case.dtype.as_deref() != Some("float16") {
        return Ok(compare(&got, &expected(weights, "projected")?, 1e-4, 1e-4));
    }
    // f16 cases (README: atol ~5e-3): f32 activations over the f16 weights against upstream's
    // f32 evaluation of the same f16 values, and, where the device reads f16, f16 activations
    // (as upstream's f16 module stores them) against upstream's f16 output, in one comparison.
    let (mut got, mut want) = (got, expected(weights, "projected_f32ref")?);
    if gpu.caps().shader_f16 {
        let f16 = projector.with_activations(DType::F16);
        got.extend(f16.plan(gpu, batch, tokens)?.project(&x)?);
        want.extend(expected(weights, "projected")?);
    }
    Ok(compare(&got, &want, 5e-3, 5e-3))
}

/// The spatial-merge projectors: the result and, where the case has it, the intermediate
/// upstream exposes (`pixel_shuffled`, Mistral's merging-layer output), compared in one go.
fn merger(gpu: &Gpu, weights: &Weights, case: &ManifestCase) -> Result<Comparison> {
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
    let got: Vec<f32> =
        plan.plan().run(&[(&weights.f32(input, None)?[..]).into()])?.into_iter().flat_map(HostVec::into_f32).collect();
    let mut want = expected(weights, kind.output_names()[0])?;
    // The golden files name Mistral's merging-layer output `merged`.
    for aux in ["pixel_shuffled", "merged"].into_iter().filter(|_| kind.output_names().len() > 1) {
        if weights.contains(aux) && aux != kind.output_names()[0] {
            want.extend(expected(weights, aux)?);
        }
    }
    if got.len() != want.len() {
        return Err(Error::shape("golden", "merger outputs", want.len(), got.len()));
    }
    Ok(compare(&got, &want, BLOCK_TOLERANCE, BLOCK_TOLERANCE))
}

/// `MllamaCrossAttentionDecoderLayer` on the masks exactly as the layer receives them.
fn mllama(gpu: &Gpu, weights: &Weights, case: &ManifestCase) -> Result<Comparison> {
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
    let f32s = |shape: &[usize], data: &[f32]| HostTensor::new(shape, HostVec::F32(data.to_vec()));
    let inputs: Tensors = [
        ("hidden_states".to_string(), f32s(&[batch, text, hidden], &x?)?),
        ("cross_attention_states".to_string(), f32s(&[batch, vision, hidden], &states?)?),
        ("cross_attention_mask".to_string(), f32s(&[batch, text, vision], &mask)?),
        ("full_text_row_masked_out_mask".to_string(), f32s(&[batch * text], &rows)?),
    ]
    .into();
    let mut got = output(layer.plan(gpu, batch, text, vision)?.run(&inputs)?, "hidden_states")?;
    let mut want = expected(weights, "y")?;
    // The masks vlbridge builds from the int mask must be the ones upstream passed.
    let shape = shape_of::<4>(weights, "cross_attention_mask_int")?;
    let (built, built_rows) =
        cross_attention_masks(&weights.i64("cross_attention_mask_int")?, shape, vision / (shape[2] * shape[3]));
    got.extend(built.iter().chain(&built_rows));
    want.extend(mask.iter().chain(&rows).map(|&v| f64::from(v)));
    Ok(compare(&got, &want, BLOCK_TOLERANCE, BLOCK_TOLERANCE))
}
