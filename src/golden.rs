//! Parity with the upstream PyTorch modules: runs the cases of a golden manifest (the format
//! of `shared/golden/README.md`) and compares with the outputs stored beside the inputs.

use std::fmt;
use std::path::Path;

use serde_json::Value;

use crate::connectors::{
    GatedXAttnBlock, GatedXAttnConfig, LlavaProjector, PerceiverConfig, PerceiverResampler, QFormer, QFormerConfig,
    add_token_merge,
};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Graph, Plan};
use crate::kernels::Op;
use crate::kernels::anyres::AnyResLayout;
use crate::kernels::downsample::Downsample;
use crate::kernels::tome::Tome;
use crate::reference::{Comparison, compare};
use crate::tensor::DType;
use crate::weights::Weights;

/// How one case ended.
#[derive(Debug)]
pub enum Outcome {
    /// Ran and compared; passed or failed by the tolerance.
    Compared(Comparison),
    /// The op is not implemented yet: neither a pass nor a failure.
    Unsupported,
    /// Ran into an error (bad file, shape, device error).
    Error(String),
}

/// One case's result.
#[derive(Debug)]
pub struct CaseReport {
    /// The case's name in the manifest.
    pub name: String,
    /// The upstream op it covers.
    pub op: String,
    /// How it compared.
    pub outcome: Outcome,
}

impl CaseReport {
    /// A failed comparison or an error.
    pub fn failed(&self) -> bool {
        match &self.outcome {
            Outcome::Compared(c) => !c.passed(),
            Outcome::Unsupported => false,
            Outcome::Error(_) => true,
        }
    }
}

impl fmt::Display for CaseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = format!("{:<28} {:<42}", self.name, self.op);
        match &self.outcome {
            Outcome::Compared(c) => write!(
                f,
                "{head} {}  max abs {:.2e}  max rel {:.2e}  (atol {:.0e}, rtol {:.0e})",
                if c.passed() { "pass" } else { "FAIL" },
                c.max_abs,
                c.max_rel,
                c.atol,
                c.rtol
            ),
            Outcome::Unsupported => write!(f, "{head} unsupported"),
            Outcome::Error(e) => write!(f, "{head} ERROR {e}"),
        }
    }
}

/// Counts over a manifest run.
#[derive(Debug, Default)]
pub struct Summary {
    /// Cases that compared within tolerance.
    pub passed: usize,
    /// Cases that failed or did not run.
    pub failed: usize,
    /// Cases of ops vlbridge does not implement.
    pub unsupported: usize,
}

impl Summary {
    /// Counts `reports`.
    pub fn of(reports: &[CaseReport]) -> Self {
        let mut s = Self::default();
        for r in reports {
            match (&r.outcome, r.failed()) {
                (Outcome::Unsupported, _) => s.unsupported += 1,
                (_, true) => s.failed += 1,
                (_, false) => s.passed += 1,
            }
        }
        s
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} passed, {} failed, {} unsupported", self.passed, self.failed, self.unsupported)
    }
}

/// Runs every case of `manifest` on `gpu`.
pub fn check_manifest(gpu: &Gpu, manifest: &Path) -> Result<Vec<CaseReport>> {
    let file_error = |problem: String| Error::File { path: manifest.display().to_string(), problem };
    let text = std::fs::read_to_string(manifest).map_err(|e| file_error(e.to_string()))?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| file_error(e.to_string()))?;
    if doc["schema_version"].as_u64() != Some(1) {
        return Err(file_error(format!("schema_version {}, expected 1", doc["schema_version"])));
    }
    let cases = doc["cases"].as_array().ok_or_else(|| file_error("no `cases` array".into()))?;
    let dir = manifest.parent().unwrap_or(Path::new("."));
    Ok(cases
        .iter()
        .map(|case| {
            let name = case["name"].as_str().unwrap_or("?").to_string();
            let op = case["op"].as_str().unwrap_or("?").to_string();
            let outcome = match run_case(gpu, dir, case, &op) {
                Ok(Some(c)) => Outcome::Compared(c),
                Ok(None) => Outcome::Unsupported,
                Err(e) => Outcome::Error(e.to_string()),
            };
            CaseReport { name, op, outcome }
        })
        .collect())
}

/// `Ok(None)` for ops not implemented yet.
fn run_case(gpu: &Gpu, dir: &Path, case: &Value, op: &str) -> Result<Option<Comparison>> {
    match op {
        "mlp2x_gelu"
        | "mlp2x_gelu_tanh"
        | "qformer"
        | "perceiver_resampler"
        | "gated_xattn_dense"
        | "avg_pool2d_tokens"
        | "bilinear_half_tokens"
        | "tome_bipartite_soft_matching_merge_wavg"
        | "anyres_pack" => {}
        _ => return Ok(None),
    }
    let weights = Weights::open(dir.join(case["file"].as_str().unwrap_or_default()))?;
    match op {
        "qformer" => qformer(gpu, &weights, case),
        "perceiver_resampler" => perceiver(gpu, &weights, case),
        "gated_xattn_dense" => gated_xattn(gpu, &weights, case),
        "avg_pool2d_tokens" | "bilinear_half_tokens" => downsample(gpu, &weights, case, op),
        "tome_bipartite_soft_matching_merge_wavg" => tome(gpu, &weights, case),
        "anyres_pack" => anyres(gpu, &weights, case),
        _ => llava_mlp(gpu, &weights, case),
    }
    .map(Some)
}

/// The deep attention blocks: README's suggested atol/rtol for f32.
const BLOCK_TOLERANCE: f64 = 1e-4;
/// Gathers, pools and ToMe (absolute).
const GATHER_TOLERANCE: f64 = 1e-5;
/// Bilinear: PyTorch computes source coordinates in f32 (absolute).
const BILINEAR_TOLERANCE: f64 = 2e-5;

fn config_usize(case: &Value, key: &str) -> Result<usize> {
    case["config"][key].as_u64().map(|v| v as usize).ok_or_else(|| Error::Weights {
        name: format!("config.{key}"),
        problem: "missing from the manifest case".into(),
    })
}

fn config_f32(case: &Value, key: &str) -> Result<f32> {
    case["config"][key].as_f64().map(|v| v as f32).ok_or_else(|| Error::Weights {
        name: format!("config.{key}"),
        problem: "missing from the manifest case".into(),
    })
}

/// Shape of `name`, which must have `rank` dims.
fn shape_of<const N: usize>(weights: &Weights, name: &str) -> Result<[usize; N]> {
    let shape = weights.shape(name)?;
    shape.clone().try_into().map_err(|_| Error::shape("golden", format!("{name} rank"), N, shape.len()))
}

fn expected(weights: &Weights, name: &str) -> Result<Vec<f64>> {
    Ok(weights.f32(name, None)?.into_iter().map(f64::from).collect())
}

fn qformer(gpu: &Gpu, weights: &Weights, case: &Value) -> Result<Comparison> {
    let config = QFormerConfig::from_json(&case["config"])?;
    let model = QFormer::from_weights(gpu, weights, config)?;
    let [batch, tokens, _] = shape_of(weights, "encoder_hidden_states")?;
    let x = weights.f32("encoder_hidden_states", None)?;
    let got = model.plan(gpu, batch, tokens)?.project(gpu, &x)?;
    Ok(compare(&got, &expected(weights, "last_hidden_state")?, BLOCK_TOLERANCE, BLOCK_TOLERANCE))
}

fn perceiver(gpu: &Gpu, weights: &Weights, case: &Value) -> Result<Comparison> {
    let config =
        PerceiverConfig { heads: config_usize(case, "heads")?, layer_norm_eps: config_f32(case, "layer_norm_eps")? };
    let model = PerceiverResampler::from_weights(gpu, weights, config)?;
    // [b, T, F, v, D]: every (b, T) item is resampled on its own over F·v tokens.
    let [b, media, frames, tokens, _] = shape_of(weights, "x")?;
    let x = weights.f32("x", None)?;
    let got = model.plan(gpu, b * media, frames * tokens)?.project(gpu, &x)?;
    Ok(compare(&got, &expected(weights, "latents_out")?, BLOCK_TOLERANCE, BLOCK_TOLERANCE))
}

fn gated_xattn(gpu: &Gpu, weights: &Weights, case: &Value) -> Result<Comparison> {
    let config = GatedXAttnConfig {
        heads: config_usize(case, "heads")?,
        only_attend_immediate_media: case["config"]["only_attend_immediate_media"].as_bool().unwrap_or(true),
        layer_norm_eps: config_f32(case, "layer_norm_eps")?,
    };
    let block = GatedXAttnBlock::from_weights(gpu, weights, "lang_encoder.gated_cross_attn_layers.0.", config)?;
    let [batch, text, _] = shape_of(weights, "x")?;
    let [_, media, latents, _] = shape_of(weights, "media")?;
    let locations: Vec<u8> = weights.i64("media_locations")?.into_iter().map(|v| u8::from(v != 0)).collect();
    let plan = block.plan(gpu, batch, text, media, latents)?;
    let got = plan.run(gpu, &weights.f32("x", None)?, &weights.f32("media", None)?, &locations)?;
    Ok(compare(&got, &expected(weights, "y")?, BLOCK_TOLERANCE, BLOCK_TOLERANCE))
}

/// Plans `g` with `inputs` declared in order and returns every output.
fn run_graph(gpu: &Gpu, g: &Graph, inputs: &[&[f32]]) -> Result<Vec<Vec<f32>>> {
    Plan::new(gpu, g)?.run_and_read(gpu, inputs)
}

fn config_bool(case: &Value, key: &str) -> Result<bool> {
    case["config"][key].as_bool().ok_or_else(|| Error::Weights {
        name: format!("config.{key}"),
        problem: "missing from the manifest case".into(),
    })
}

fn downsample(gpu: &Gpu, weights: &Weights, case: &Value, op: &str) -> Result<Comparison> {
    let (h, w) = (config_usize(case, "grid_h")?, config_usize(case, "grid_w")?);
    let (down, tol) = if op == "avg_pool2d_tokens" {
        (Downsample::AvgPool2x2 { h, w, ceil_mode: config_bool(case, "ceil_mode")? }, GATHER_TOLERANCE)
    } else {
        (Downsample::BilinearHalf { h, w }, BILINEAR_TOLERANCE)
    };
    let mut g = Graph::new();
    let x = g.input("x", &weights.shape("x")?)?;
    let y = g.add(Op::Downsample(down), &[x])?;
    g.output(y)?;
    let got = run_graph(gpu, &g, &[&weights.f32("x", None)?])?.remove(0);
    Ok(compare(&got, &expected(weights, "y")?, tol, 0.0))
}

/// Merged tokens, then sizes, then the token → row mapping as upstream's one-hot `source`
/// `[batch, n - r, n]`, compared in one go.
fn tome(gpu: &Gpu, weights: &Weights, case: &Value) -> Result<Comparison> {
    let [batch, tokens, _] = shape_of(weights, "x")?;
    let cfg = Tome::new(tokens, config_usize(case, "r")?, config_bool(case, "class_token")?)?;
    let mut g = Graph::new();
    let x = g.input("x", &[batch, tokens, weights.shape("x")?[2]])?;
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
    let inputs: Vec<&[f32]> = data.iter().map(Vec::as_slice).collect();
    let [tokens_out, sizes_out, source] = <[Vec<f32>; 3]>::try_from(run_graph(gpu, &g, &inputs)?)
        .map_err(|_| Error::Graph("ToMe graph has three outputs".into()))?;
    let rows = cfg.output_tokens();
    let mut one_hot = vec![0.0f32; batch * rows * tokens];
    for (i, &row) in source.iter().enumerate() {
        let (b, t) = (i / tokens, i % tokens);
        if let Some(cell) = one_hot.get_mut((b * rows + row as usize) * tokens + t) {
            *cell = 1.0;
        }
    }
    let got: Vec<f32> = [tokens_out, sizes_out, one_hot].concat();
    let want = [expected(weights, "merged")?, expected(weights, "size")?, expected(weights, "source")?].concat();
    Ok(compare(&got, &want, GATHER_TOLERANCE, 0.0))
}

fn anyres(gpu: &Gpu, weights: &Weights, case: &Value) -> Result<Comparison> {
    let size = weights.i64("image_size")?;
    let [h, w] = size[..] else {
        return Err(Error::shape("golden", "image_size elements", 2, size.len()));
    };
    let pinpoints: Vec<(usize, usize)> = case["config"]["grid_pinpoints_hw"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| Some((p[0].as_u64()? as usize, p[1].as_u64()? as usize))).collect())
        .unwrap_or_default();
    let layout = AnyResLayout::new(
        (h as usize, w as usize),
        &pinpoints,
        config_usize(case, "vision_image_size")?,
        config_usize(case, "patch_size")?,
    )?;
    let mut g = Graph::new();
    let features = g.input("image_features", &weights.shape("image_features")?)?;
    let newline = g.input("image_newline", &weights.shape("image_newline")?)?;
    let packed = g.add(Op::AnyRes(layout), &[features, newline])?;
    g.output(packed)?;
    let inputs = [weights.f32("image_features", None)?, weights.f32("image_newline", None)?];
    let got = run_graph(gpu, &g, &[&inputs[0], &inputs[1]])?.remove(0);
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

fn config_str<'a>(case: &'a Value, key: &str) -> Result<&'a str> {
    case["config"][key].as_str().ok_or_else(|| Error::Weights {
        name: format!("config.{key}"),
        problem: "missing from the manifest case".into(),
    })
}

fn llava_mlp(gpu: &Gpu, weights: &Weights, case: &Value) -> Result<Comparison> {
    let act = LlavaProjector::activation(config_str(case, "projector_hidden_act")?)?;
    let projector = LlavaProjector::from_weights(gpu, weights, act)?;
    let shape = weights.shape("image_features")?;
    let [batch, tokens, dim] = shape[..] else {
        return Err(Error::shape("golden", "image_features rank", 3, shape.len()));
    };
    let x = weights.f32("image_features", Some(&[batch, tokens, dim]))?;
    let got = projector.plan(gpu, batch, tokens)?.project(gpu, &x)?;
    let read = |name: &str| -> Result<Vec<f64>> { Ok(weights.f32(name, None)?.into_iter().map(f64::from).collect()) };
    if case["dtype"].as_str() != Some("float16") {
        return Ok(compare(&got, &read("projected")?, 1e-4, 1e-4));
    }
    // f16 cases (README: atol ~5e-3): f32 activations over the f16 weights against upstream's
    // f32 evaluation of the same f16 values, and, where the device reads f16, f16 activations
    // (as upstream's f16 module stores them) against upstream's f16 output, in one comparison.
    let (mut got, mut want) = (got, read("projected_f32ref")?);
    if gpu.features().contains(wgpu::Features::SHADER_F16) {
        let f16 = projector.with_activations(DType::F16);
        got.extend(f16.plan(gpu, batch, tokens)?.project(gpu, &x)?);
        want.extend(read("projected")?);
    }
    Ok(compare(&got, &want, 5e-3, 5e-3))
}
