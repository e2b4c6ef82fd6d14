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

use super::ConnectorPlan;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Graph, TensorId};
use crate::nn::{Linear, Norm, Skip};
use crate::ops::{AvgPool, ChannelOrder, GeluForm, ImageGrid, LayerNorm, PixelShuffle, RmsNorm};
use crate::tensor::Tensor;
use crate::weights::Weights;

mod config;

pub use config::{MergerConfig, MergerKind};

const NAME: &str = "merger";

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
