//! Spatial-merge projectors: the connectors that shrink a vision tower's patch grid into fewer,
//! wider tokens before an MLP, as the open VLMs of 2024-25 do.
//!
//! | kind | upstream | steps |
//! |---|---|---|
//! | [`MergerKind::Qwen2Vl`] | `Qwen2VL` `PatchMerger` | LayerNorm per token, 4 consecutive tokens as one row, Linear, GELU, Linear |
//! | [`MergerKind::Qwen25Vl`] | `Qwen2_5_VLPatchMerger` | the same with RMSNorm |
//! | [`MergerKind::InternVl`] | `InternVLModel.pixel_shuffle` + `InternVLMultiModalProjector` | pixel shuffle, LayerNorm(s²C), Linear, GELU, Linear |
//! | [`MergerKind::Idefics3`] | `Idefics3Connector`, `SmolVLMConnector` | pixel shuffle, Linear without bias |
//! | [`MergerKind::Gemma3`] | `Gemma3MultiModalProjector` | k×k average pool, RMSNorm scaling by 1 + w, `x @ W` with W stored `[in, out]` |
//! | [`MergerKind::Mistral3`] | `Mistral3MultiModalProjector` | RMSNorm, per-image 2×2 unfold (channel-major), Linear(4C → C), Linear, GELU, Linear |
//!
//! Qwen's merger needs no gather: its image processor already orders each 2×2 block as 4
//! consecutive tokens, so the input `[N, C]` is declared `[N/4, 4C]` and normalised per
//! C-chunk. The pixel shuffles are one gather each (`pixel_shuffle`), over a grid table that
//! lets Mistral 3 merge several images of different shapes in one dispatch.

use super::{ConnectorPlan, StateDict};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Graph, TensorId};
use crate::nn::{Linear, Norm, Skip};
use crate::ops::{AvgPool, ChannelOrder, GeluForm, ImageGrid, LayerNorm, PixelShuffle, RmsNorm};
use crate::tensor::Tensor;
use crate::weights::Weights;

const NAME: &str = "merger";

/// Which family's merger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MergerKind {
    /// Qwen2-VL: LayerNorm (with bias) per token.
    Qwen2Vl,
    /// Qwen2.5-VL: RMSNorm per token.
    Qwen25Vl,
    /// InternVL (3, 3.5; `-hf` checkpoints).
    InternVl,
    /// Idefics3 and SmolVLM / SmolVLM2.
    Idefics3,
    /// Gemma 3.
    Gemma3,
    /// Mistral 3 (Mistral-Small-3.1) with its Pixtral tower.
    Mistral3,
}

impl MergerKind {
    /// The upstream module(s) it reproduces.
    pub fn upstream(self) -> &'static str {
        match self {
            MergerKind::Qwen2Vl => "PatchMerger (Qwen2-VL)",
            MergerKind::Qwen25Vl => "Qwen2_5_VLPatchMerger",
            MergerKind::InternVl => "InternVLModel.pixel_shuffle + InternVLMultiModalProjector",
            MergerKind::Idefics3 => "Idefics3Connector / SmolVLMConnector",
            MergerKind::Gemma3 => "Gemma3MultiModalProjector",
            MergerKind::Mistral3 => "Mistral3MultiModalProjector (Mistral3RMSNorm + Mistral3PatchMerger)",
        }
    }

    /// The input names upstream calls the vision features (and image sizes).
    pub fn input_names(self) -> &'static [&'static str] {
        match self {
            MergerKind::Qwen2Vl | MergerKind::Qwen25Vl => &["x"],
            MergerKind::InternVl => &["vision_features"],
            MergerKind::Idefics3 => &["image_hidden_states"],
            MergerKind::Gemma3 => &["vision_outputs"],
            MergerKind::Mistral3 => &["image_features", "image_sizes"],
        }
    }

    /// The output names: the connector's result first, then the intermediates transformers'
    /// tests expose.
    pub fn output_names(self) -> &'static [&'static str] {
        match self {
            MergerKind::Qwen2Vl | MergerKind::Qwen25Vl => &["merged"],
            MergerKind::InternVl | MergerKind::Idefics3 => &["projected", "pixel_shuffled"],
            MergerKind::Gemma3 => &["projected"],
            MergerKind::Mistral3 => &["projected", "patch_merged"],
        }
    }
}

/// A merger's settings, as config.json gives them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MergerConfig {
    /// The family.
    pub kind: MergerKind,
    /// Side of a merged block: `spatial_merge_size` (Qwen, Mistral), `1 / downsample_ratio`
    /// (InternVL), `scale_factor` (Idefics3), the pool window (Gemma 3: patches per side /
    /// tokens per side).
    pub scale: usize,
    /// The norm's eps (Idefics3 has no norm).
    pub eps: f32,
    /// The MLP's GELU form (`projector_hidden_act`; Qwen's `nn.GELU()` is exact).
    pub act: GeluForm,
    /// Pixels per patch: Mistral 3's `image_sizes` are in pixels.
    pub patch_size: usize,
}

impl MergerConfig {
    /// A config of `kind` with block side `scale` and the family's upstream eps.
    pub fn new(kind: MergerKind, scale: usize) -> Self {
        let eps = match kind {
            MergerKind::InternVl | MergerKind::Mistral3 => 1e-5,
            _ => 1e-6,
        };
        Self { kind, scale, eps, act: GeluForm::Erf, patch_size: 14 }
    }

    fn merged(&self, vision: usize) -> usize {
        self.scale * self.scale * vision
    }

    /// The tensors of a merger from `vision` channels to `text`, under the on-disk checkpoint
    /// names; `bias` is Mistral 3's `multimodal_projector_bias` (the others are fixed).
    pub fn state_dict(&self, vision: usize, text: usize, bias: bool) -> StateDict {
        let (c, merged) = (vision, self.merged(vision));
        let mut t = StateDict::default();
        match self.kind {
            MergerKind::Qwen2Vl | MergerKind::Qwen25Vl => {
                t.norm("visual.merger.ln_q", c, self.kind == MergerKind::Qwen2Vl);
                t.linear("visual.merger.mlp.0", merged, merged, true);
                t.linear("visual.merger.mlp.2", text, merged, true);
            }
            MergerKind::InternVl => {
                t.norm("multi_modal_projector.layer_norm", merged, true);
                t.linear("multi_modal_projector.linear_1", text, merged, true);
                t.linear("multi_modal_projector.linear_2", text, text, true);
            }
            MergerKind::Idefics3 => t.linear("model.connector.modality_projection.proj", text, merged, false),
            MergerKind::Gemma3 => {
                t.tensor("multi_modal_projector.mm_input_projection_weight", &[c, text]);
                t.norm("multi_modal_projector.mm_soft_emb_norm", c, false);
            }
            MergerKind::Mistral3 => {
                t.norm("multi_modal_projector.norm", c, false);
                t.linear("multi_modal_projector.patch_merger.merging_layer", c, merged, false);
                t.linear("multi_modal_projector.linear_1", text, c, bias);
                t.linear("multi_modal_projector.linear_2", text, text, bias);
            }
        }
        t
    }

    /// (vision channels, output width, biases) read off a checkpoint's shapes.
    fn dims(&self, weights: &Weights) -> Result<(usize, usize, bool)> {
        let s2 = self.scale * self.scale;
        let (name, transposed) = match self.kind {
            MergerKind::Qwen2Vl | MergerKind::Qwen25Vl => ("visual.merger.mlp.2.weight", false),
            MergerKind::InternVl => ("multi_modal_projector.linear_1.weight", false),
            MergerKind::Idefics3 => ("model.connector.modality_projection.proj.weight", false),
            MergerKind::Gemma3 => ("multi_modal_projector.mm_input_projection_weight", true),
            MergerKind::Mistral3 => ("multi_modal_projector.linear_1.weight", false),
        };
        let shape = weights.shape(name)?;
        let [rows, cols] = shape[..] else {
            return Err(Error::Weights { name: name.into(), problem: format!("shape {shape:?}, expected rank 2") });
        };
        let (out, input) = if transposed { (cols, rows) } else { (rows, cols) };
        let vision = match self.kind {
            MergerKind::Gemma3 | MergerKind::Mistral3 => input,
            _ if input.is_multiple_of(s2) => input / s2,
            _ => {
                let problem = format!("shape {shape:?}: in-features not a multiple of scale² = {s2}");
                return Err(Error::Weights { name: name.into(), problem });
            }
        };
        let bias = weights.contains("multi_modal_projector.linear_1.bias");
        Ok((vision, out, bias))
    }
}

/// One GEMM of the merger's MLP and its activation.
#[derive(Debug, Clone)]
struct Layer {
    name: &'static str,
    linear: Linear,
    act: Option<GeluForm>,
}

/// A spatial-merge projector with its weights on the GPU.
#[derive(Debug, Clone)]
pub struct Merger {
    config: MergerConfig,
    vision: usize,
    text: usize,
    pre_norm: Option<Norm>,
    post_norm: Option<Norm>,
    layers: Vec<Layer>,
    activations: DType,
}

impl Merger {
    /// Loads from a checkpoint by the on-disk names (`visual.merger.*`,
    /// `multi_modal_projector.*`, `model.connector.*`; see [`MergerConfig::state_dict`]).
    /// Dims come from the weights; GEMM weights keep their stored dtype.
    pub fn from_weights(gpu: &Gpu, weights: &Weights, config: MergerConfig) -> Result<Self> {
        if config.scale == 0 {
            return Err(Error::Config { field: "merge scale".into(), problem: "must be >= 1".into() });
        }
        let (vision, text, bias) = config.dims(weights)?;
        let (c, merged) = (vision, config.merged(vision));
        let linear = |prefix: &str, input: usize, bias: bool| Linear::load(gpu, weights, prefix, input, bias);
        let layer =
            |name, prefix: &str, input, bias, act| Ok(Layer { name, linear: linear(prefix, input, bias)?, act });
        let gelu = Some(config.act);
        let (mut pre_norm, mut post_norm) = (None, None);
        let layers = match config.kind {
            MergerKind::Qwen2Vl | MergerKind::Qwen25Vl => {
                let p = "visual.merger.ln_q";
                pre_norm = Some(if config.kind == MergerKind::Qwen2Vl {
                    Norm::load_layer(gpu, weights, p, c, LayerNorm::new(config.eps).per_head())?
                } else {
                    Norm::load_rms(gpu, weights, p, c, RmsNorm::new(config.eps).per_head())?
                });
                vec![
                    layer("mlp.0", "visual.merger.mlp.0", merged, true, gelu)?,
                    layer("mlp.2", "visual.merger.mlp.2", merged, true, None)?,
                ]
            }
            MergerKind::InternVl => {
                let p = "multi_modal_projector.layer_norm";
                post_norm = Some(Norm::load_layer(gpu, weights, p, merged, LayerNorm::new(config.eps))?);
                vec![
                    layer("linear_1", "multi_modal_projector.linear_1", merged, true, gelu)?,
                    layer("linear_2", "multi_modal_projector.linear_2", text, true, None)?,
                ]
            }
            MergerKind::Idefics3 => {
                vec![layer("proj", "model.connector.modality_projection.proj", merged, false, None)?]
            }
            MergerKind::Gemma3 => {
                let p = "multi_modal_projector.mm_soft_emb_norm";
                let op = RmsNorm { unit_offset: true, ..RmsNorm::new(config.eps) };
                post_norm = Some(Norm::load_rms(gpu, weights, p, c, op)?);
                // Stored [in, out] for `x @ W`: transposed once to nn.Linear's [out, in].
                let name = "multi_modal_projector.mm_input_projection_weight";
                let w = weights.upload_arranged(gpu, &[name], &[text, c], |v| transpose(&v[0], c, text))?;
                vec![Layer { name: "mm_input_projection", linear: Linear::from_tensors(NAME, w, None)?, act: None }]
            }
            MergerKind::Mistral3 => {
                let op = RmsNorm::new(config.eps);
                pre_norm = Some(Norm::load_rms(gpu, weights, "multi_modal_projector.norm", c, op)?);
                let p = "multi_modal_projector.patch_merger.merging_layer";
                vec![
                    layer("merging_layer", p, merged, false, None)?,
                    layer("linear_1", "multi_modal_projector.linear_1", c, bias, gelu)?,
                    layer("linear_2", "multi_modal_projector.linear_2", text, bias, None)?,
                ]
            }
        };
        gpu.flush("uploading merger weights")?;
        Ok(Self { config, vision, text, pre_norm, post_norm, layers, activations: DType::F32 })
    }

    /// Runs later plans with activations stored as `dtype` (f32 or f16).
    pub fn with_activations(mut self, dtype: DType) -> Self {
        self.activations = dtype;
        self
    }

    /// Its settings.
    pub fn config(&self) -> &MergerConfig {
        &self.config
    }

    /// `[vision channels, output width]`.
    pub fn dims(&self) -> [usize; 2] {
        [self.vision, self.text]
    }

    /// The grids of the input: `image_sizes` in pixels for Mistral 3 (each `(h / patch,
    /// w / patch)`, floored as upstream), else one square grid per batch item.
    pub fn grids(&self, shape: &[usize], image_sizes: &[(usize, usize)]) -> Result<Vec<ImageGrid>> {
        let bad = |expected: String| Error::Input { name: self.input_name().into(), problem: expected };
        let channels = shape.last().copied().unwrap_or(0);
        if channels != self.vision {
            return Err(bad(format!("shape {shape:?}, expected {} channels", self.vision)));
        }
        match self.config.kind {
            MergerKind::Qwen2Vl | MergerKind::Qwen25Vl => Ok(Vec::new()),
            MergerKind::Mistral3 => {
                let p = self.config.patch_size.max(1);
                let grids: Vec<ImageGrid> =
                    image_sizes.iter().map(|&(h, w)| ImageGrid { h: h / p, w: w / p }).collect();
                let total: usize = grids.iter().map(|g| g.h * g.w).sum();
                match shape[..] {
                    [n, _] if n == total && !grids.is_empty() => Ok(grids),
                    _ => Err(bad(format!(
                        "shape {shape:?}, expected [{total}, {channels}]: image_sizes {image_sizes:?} px at patch {p}"
                    ))),
                }
            }
            _ => {
                let [batch, n, _] = shape[..] else {
                    return Err(bad(format!("shape {shape:?}, expected [batch, side², {channels}]")));
                };
                let side = (n as f64).sqrt().round() as usize;
                let divisible = self.config.kind == MergerKind::Gemma3 || side.is_multiple_of(self.config.scale);
                if side * side != n || !divisible {
                    let s = self.config.scale;
                    return Err(bad(format!(
                        "{n} tokens: not a square grid whose side {s} divides (as upstream's view)"
                    )));
                }
                Ok(vec![ImageGrid { h: side, w: side }; batch])
            }
        }
    }

    fn input_name(&self) -> &'static str {
        self.config.kind.input_names()[0]
    }

    /// The merger's graph on an input of `shape` (image sizes for Mistral 3, in pixels):
    /// returns the graph, its input and its outputs named as in
    /// [`MergerKind::output_names`] (all marked as outputs, the result first).
    pub fn graph(
        &self,
        gpu: &Gpu,
        shape: &[usize],
        image_sizes: &[(usize, usize)],
    ) -> Result<(Graph, TensorId, Vec<TensorId>)> {
        self.build(gpu, shape, image_sizes, false)
    }

    /// `gathered`: Qwen's grouping as a materialised gather (the measured baseline of reading
    /// `[N, C]` as `[N/4, 4C]`); no change for the other kinds.
    fn build(
        &self,
        gpu: &Gpu,
        shape: &[usize],
        image_sizes: &[(usize, usize)],
        gathered: bool,
    ) -> Result<(Graph, TensorId, Vec<TensorId>)> {
        let grids = self.grids(shape, image_sizes)?;
        let mut g = Graph::new();
        let s = self.config.scale;
        let qwen = matches!(self.config.kind, MergerKind::Qwen2Vl | MergerKind::Qwen25Vl);
        let n = shape[..shape.len() - 1].iter().product::<usize>();
        if qwen && !n.is_multiple_of(s * s) {
            let problem = format!("{n} tokens, not a multiple of spatial_merge_size² = {}", s * s);
            return Err(Error::Input { name: self.input_name().into(), problem });
        }
        let x = if qwen && !gathered {
            // 4 consecutive tokens are one block: read [N, C] as [N/s², s²C], norm per C-chunk.
            g.input_as(self.input_name(), &[n / (s * s), s * s * self.vision], self.activations)?
        } else if qwen {
            g.input_as(self.input_name(), &[n, self.vision], self.activations)?
        } else {
            g.input_as(self.input_name(), shape, self.activations)?
        };
        let outputs = self.nodes(gpu, &mut g, x, &grids, gathered)?;
        for &id in &outputs {
            g.output(id)?;
        }
        Ok((g, x, outputs))
    }

    /// Adds the merger to `g` on `x` (a tower's `[images, side², C]` output, of the square-grid
    /// kinds: InternVL, Idefics3, Gemma 3; the Qwen kinds take its merge units
    /// `[N / s², s²·C]`); returns its result and the intermediates
    /// [`MergerKind::output_names`] lists, none of them marked as outputs.
    pub fn add_to(&self, gpu: &Gpu, g: &mut Graph, x: TensorId) -> Result<Vec<TensorId>> {
        self.add_to_images(gpu, g, x, &[])
    }

    /// [`Merger::add_to`] with Mistral 3's `image_sizes` in pixels (its `x` is `[N, C]`, the
    /// images' tokens one after the other).
    pub fn add_to_images(
        &self,
        gpu: &Gpu,
        g: &mut Graph,
        x: TensorId,
        image_sizes: &[(usize, usize)],
    ) -> Result<Vec<TensorId>> {
        let shape = g.shape(x).unwrap_or_default().to_vec();
        let s2 = self.config.scale * self.config.scale;
        if matches!(self.config.kind, MergerKind::Qwen2Vl | MergerKind::Qwen25Vl) {
            if shape.len() != 2 || shape[1] != s2 * self.vision {
                let problem = format!("shape {shape:?}, expected merge units [N / {s2}, {}]", s2 * self.vision);
                return Err(Error::Input { name: self.input_name().into(), problem });
            }
            return self.nodes(gpu, g, x, &[], false);
        }
        let grids = self.grids(&shape, image_sizes)?;
        self.nodes(gpu, g, x, &grids, false)
    }

    fn nodes(
        &self,
        gpu: &Gpu,
        g: &mut Graph,
        x: TensorId,
        grids: &[ImageGrid],
        gathered: bool,
    ) -> Result<Vec<TensorId>> {
        let s = self.config.scale;
        let n = g.shape(x).map_or(0, |shape| shape[..shape.len() - 1].iter().product::<usize>());
        let mut h = x;
        if let Some(norm) = &self.pre_norm {
            h = norm.add(g, "pre_norm", h)?;
        }
        let mut aux = None;
        match self.config.kind {
            MergerKind::Qwen2Vl | MergerKind::Qwen25Vl if gathered => {
                // The same grouping as an offset-major shuffle of an (N/s) × s grid.
                let grid = [ImageGrid { h: n / s, w: s }];
                let (op, table) = PixelShuffle::new(&grid, s, ChannelOrder::OffsetMajor)?;
                let table = g.constant("grids", &Tensor::from_data(gpu, &[1, 4], DType::U32, table[..].into())?);
                h = g.add(op, &[h, table])?;
            }
            MergerKind::Qwen2Vl | MergerKind::Qwen25Vl => {}
            MergerKind::Gemma3 => h = g.add(AvgPool { h: grids[0].h, w: grids[0].w, k: s, ceil_mode: false }, &[h])?,
            kind => {
                let order =
                    if kind == MergerKind::Mistral3 { ChannelOrder::ChannelMajor } else { ChannelOrder::OffsetMajor };
                let (op, table) = PixelShuffle::new(grids, s, order)?;
                let table =
                    g.constant("grids", &Tensor::from_data(gpu, &[grids.len(), 4], DType::U32, table[..].into())?);
                h = g.add(op, &[h, table])?;
                if kind != MergerKind::Mistral3 {
                    aux = Some(h);
                }
            }
        }
        for (i, layer) in self.layers.iter().enumerate() {
            // InternVL's LayerNorm(4C) and Gemma's RMSNorm ride in the first GEMM's input.
            h = match (&self.post_norm, i) {
                (Some(norm), 0) => layer.linear.add_normed(g, layer.name, norm, h, layer.act, Skip::None)?,
                _ => layer.linear.add(g, layer.name, h, layer.act, Skip::None)?,
            };
            if layer.name == "merging_layer" {
                aux = Some(h);
            }
        }
        Ok(std::iter::once(h).chain(aux).collect())
    }

    /// Plans the merger for an input of `shape` ([`Merger::graph`]); the plan's output is the
    /// connector's result, its other outputs the intermediates.
    pub fn plan(&self, gpu: &Gpu, shape: &[usize], image_sizes: &[(usize, usize)]) -> Result<ConnectorPlan> {
        ConnectorPlan::new(gpu, self.graph(gpu, shape, image_sizes)?.0, self.config.kind.output_names())
    }

    /// The measured baseline's graph: as [`Merger::graph`], with Qwen's 2×2 grouping
    /// materialised by a gather instead of read in place.
    pub fn baseline_graph(&self, gpu: &Gpu, shape: &[usize], image_sizes: &[(usize, usize)]) -> Result<Graph> {
        Ok(self.build(gpu, shape, image_sizes, true)?.0)
    }
}

/// `[rows, cols]` → `[cols, rows]`.
fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols).flat_map(|c| (0..rows).map(move |r| v[r * cols + c])).collect()
}
