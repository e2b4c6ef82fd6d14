//! The Qwen2-VL and Qwen2.5-VL vision towers (`Qwen2VisionTransformerPretrainedModel`,
//! `Qwen2_5_VisionTransformerPretrainedModel`) at native resolution: processor rows in, the
//! hidden states before the merger out.
//!
//! The Conv3d patch embedding is one GEMM over the rows (`[Σ t·h·w, C·T·P·P]`, each row one
//! patch). Every layer turns the query and key heads of its QKV row by the patch's (row,
//! column) and attends block-diagonally from a segment table: per frame (`cu_seqlens`), or in
//! Qwen2.5-VL per window of `window_size` pixels outside `fullatt_block_indexes`. Windows are
//! contiguous only after `window_index`, so the rows are permuted once on the host, before
//! the tower, and the merge units back once after it ([`QwenLayout`]).

use super::rotary::{self, FeedForward, RotaryLayer, Segments};
use crate::connectors::StateDict;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Graph, TensorId};
use crate::nn::{Linear, Norm, Skip};
use crate::ops::{Concat, GeluForm, LayerNorm, RmsNorm, Rope2d, RopeFrequencies};
use crate::tensor::Tensor;
use crate::weights::Weights;

/// Which of the two towers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QwenKind {
    /// Qwen2-VL: LayerNorm, quick_gelu MLP, full attention per frame.
    Qwen2Vl,
    /// Qwen2.5-VL: RMSNorm, SwiGLU with biases, window attention.
    Qwen25Vl,
}

impl QwenKind {
    /// The upstream class.
    pub fn upstream(self) -> &'static str {
        match self {
            QwenKind::Qwen2Vl => "Qwen2VisionTransformerPretrainedModel",
            QwenKind::Qwen25Vl => "Qwen2_5_VisionTransformerPretrainedModel",
        }
    }
}

/// The tower's hyper-parameters, from its `vision_config`.
#[derive(Debug, Clone, PartialEq)]
pub struct QwenConfig {
    /// The layout.
    pub kind: QwenKind,
    /// The tower's width (`embed_dim` in Qwen2-VL, `hidden_size` in 2.5).
    pub hidden: usize,
    /// The MLP's width (`embed_dim · mlp_ratio`, or `intermediate_size`).
    pub intermediate: usize,
    /// `depth`.
    pub layers: usize,
    /// `num_heads`.
    pub heads: usize,
    /// `patch_size`.
    pub patch: usize,
    /// `temporal_patch_size`.
    pub temporal: usize,
    /// `in_channels`.
    pub channels: usize,
    /// `spatial_merge_size`.
    pub merge: usize,
    /// The rotary base (`rope_parameters.rope_theta`, 10000 when absent).
    pub theta: f32,
    /// Qwen2-VL's MLP activation (`hidden_act`); 2.5 gates with SiLU.
    pub act: GeluForm,
    /// `window_size` in pixels (Qwen2.5-VL).
    pub window: Option<usize>,
    /// The layers that attend within the whole frame (Qwen2.5-VL; all of them in Qwen2-VL).
    pub full_attention: Vec<usize>,
}

/// The norms' eps: fixed in both architectures (`eps=1e-6`).
const EPS: f32 = 1e-6;

impl QwenConfig {
    /// The 2D rotary turn of its query and key heads.
    pub fn rope(&self) -> Rope2d {
        let head_dim = self.hidden / self.heads.max(1);
        Rope2d { head_dim, heads: 2 * self.heads, theta: self.theta, frequencies: RopeFrequencies::Axial }
    }

    /// Reads a `vision_config`; `field` names it in errors.
    pub fn from_json(kind: QwenKind, field: &str, v: &serde_json::Value) -> Result<Self> {
        let config_error = |key: &str, problem: String| Error::Config { field: format!("{field}.{key}"), problem };
        let size = |key: &str| -> Result<usize> {
            match v[key].as_u64() {
                Some(n) if n > 0 => Ok(n as usize),
                _ => Err(config_error(key, format!("{} (a positive integer)", v[key]))),
            }
        };
        let optional = |key: &str, default: usize| if v[key].is_null() { Ok(default) } else { size(key) };
        let (hidden, intermediate, act) = match kind {
            QwenKind::Qwen2Vl => {
                let hidden = size("embed_dim")?;
                let ratio = v["mlp_ratio"].as_f64().filter(|r| *r > 0.0);
                let ratio = ratio.ok_or_else(|| config_error("mlp_ratio", format!("{} (positive)", v["mlp_ratio"])))?;
                let act = v["hidden_act"].as_str().unwrap_or("quick_gelu");
                (hidden, (hidden as f64 * ratio) as usize, GeluForm::from_hf(&format!("{field}.hidden_act"), act)?)
            }
            QwenKind::Qwen25Vl => {
                let act = v["hidden_act"].as_str().unwrap_or("silu");
                if act != "silu" {
                    return Err(config_error("hidden_act", format!("`{act}` (the SwiGLU MLP gates with silu)")));
                }
                (size("hidden_size")?, size("intermediate_size")?, GeluForm::Erf)
            }
        };
        let theta = rotary::theta(v);
        let layers = size("depth")?;
        let (window, full_attention) = match kind {
            QwenKind::Qwen2Vl => (None, (0..layers).collect()),
            QwenKind::Qwen25Vl => {
                let list = v["fullatt_block_indexes"].as_array().map(|a| a.iter().map(|x| x.as_u64()).collect());
                let Some(Some(list)) = list.map(|l: Vec<Option<u64>>| l.into_iter().collect::<Option<Vec<u64>>>())
                else {
                    let problem = format!("{} (a list of layer indices)", v["fullatt_block_indexes"]);
                    return Err(config_error("fullatt_block_indexes", problem));
                };
                (Some(size("window_size")?), list.into_iter().map(|i| i as usize).collect())
            }
        };
        let config = Self {
            kind,
            hidden,
            intermediate,
            layers,
            heads: size("num_heads")?,
            patch: size("patch_size")?,
            temporal: optional("temporal_patch_size", 2)?,
            channels: optional("in_channels", 3)?,
            merge: size("spatial_merge_size")?,
            theta,
            act,
            window,
            full_attention,
        };
        rotary::head_dim(&format!("{field}.num_heads"), config.hidden, config.heads)?;
        if let Some(&bad) = config.full_attention.iter().find(|&&i| i >= layers) {
            return Err(config_error("fullatt_block_indexes", format!("{bad} is past depth {layers}")));
        }
        if let Some(w) = config.window
            && w < config.merge * config.patch
        {
            let problem = format!("{w} px, less than one merged unit ({} px)", config.merge * config.patch);
            return Err(config_error("window_size", problem));
        }
        Ok(config)
    }

    /// The tensors a checkpoint of this tower holds for `layers` layers (names relative to the
    /// tower's prefix): what the demo and the bench load at real size.
    pub fn state_dict(&self, layers: usize) -> StateDict {
        let (c, f) = (self.hidden, self.intermediate);
        let mut t = StateDict::default();
        t.tensor(QwenTower::PROBE, &[c, self.channels, self.temporal, self.patch, self.patch]);
        let layer_norm = self.kind == QwenKind::Qwen2Vl;
        for i in 0..layers {
            let l = format!("blocks.{i}");
            t.norm(&format!("{l}.norm1"), c, layer_norm);
            t.norm(&format!("{l}.norm2"), c, layer_norm);
            t.linear(&format!("{l}.attn.qkv"), 3 * c, c, true);
            t.linear(&format!("{l}.attn.proj"), c, c, true);
            match self.kind {
                QwenKind::Qwen2Vl => {
                    t.linear(&format!("{l}.mlp.fc1"), f, c, true);
                    t.linear(&format!("{l}.mlp.fc2"), c, f, true);
                }
                QwenKind::Qwen25Vl => {
                    t.linear(&format!("{l}.mlp.gate_proj"), f, c, true);
                    t.linear(&format!("{l}.mlp.up_proj"), f, c, true);
                    t.linear(&format!("{l}.mlp.down_proj"), c, f, true);
                }
            }
        }
        t
    }

    /// Values per processor row: `in_channels · temporal_patch_size · patch_size²`.
    pub fn row_width(&self) -> usize {
        self.channels * self.temporal * self.patch * self.patch
    }

    /// Merged units per window side (Qwen2.5-VL).
    fn window_units(&self) -> Option<usize> {
        self.window.map(|w| w / self.merge / self.patch)
    }

    /// FLOPs of `tokens` patches in segments of `attended` keys per token on average (an FMA
    /// counts 2): patch GEMM, QKV, attention, output projection and the MLP (SwiGLU's two
    /// input projections in 2.5).
    pub fn flops(&self, tokens: usize, full_keys: f64, window_keys: f64) -> f64 {
        let (t, c, f) = (tokens as f64, self.hidden as f64, self.intermediate as f64);
        let mlp = if self.kind == QwenKind::Qwen25Vl { 3.0 * c * f } else { 2.0 * c * f };
        let full = self.full_attention.len() as f64;
        let keys = full * full_keys + (self.layers as f64 - full) * window_keys;
        2.0 * t * c * self.row_width() as f64 + self.layers as f64 * 2.0 * t * (4.0 * c * c + mlp) + 4.0 * t * c * keys
    }
}

/// One image (or video) entry of `image_grid_thw`: frames and patch rows and columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridThw {
    /// Frames (`t`).
    pub t: usize,
    /// Patch rows (`h`).
    pub h: usize,
    /// Patch columns (`w`).
    pub w: usize,
}

impl GridThw {
    fn patches(&self) -> usize {
        self.t * self.h * self.w
    }
}

/// What the host computes from `image_grid_thw` before the tower runs: each row's position,
/// the attention segments, and in Qwen2.5-VL the window order of the merge units.
#[derive(Debug, Clone, PartialEq)]
pub struct QwenLayout {
    /// Patch rows in all.
    pub rows: usize,
    /// (row, column) of each patch in its frame, in the tower's row order, `[rows, 2]`.
    pub positions: Vec<u32>,
    /// Frame lengths in patches: the full-attention segments.
    pub frames: Vec<usize>,
    /// Window lengths in patches, empty windows included (Qwen2.5-VL).
    pub windows: Option<Vec<usize>>,
    /// `window_index`: the merge unit at each place of the tower's order (Qwen2.5-VL).
    pub window_index: Option<Vec<u32>>,
}

impl QwenLayout {
    /// The layout of `grids` over `rows` processor rows; grids that do not sum to the rows or
    /// that the merge cannot tile are [`Error::Input`]s naming `image_grid_thw`.
    pub fn new(config: &QwenConfig, grids: &[GridThw], rows: usize) -> Result<Self> {
        let bad = |problem: String| Error::Input { name: "image_grid_thw".into(), problem };
        let s = config.merge;
        if grids.is_empty() {
            return Err(bad("no images".into()));
        }
        for (i, g) in grids.iter().enumerate() {
            if g.t == 0 || g.h == 0 || g.w == 0 {
                return Err(bad(format!("image {i}: grid {}x{}x{} has a zero side", g.t, g.h, g.w)));
            }
            if !g.h.is_multiple_of(s) || !g.w.is_multiple_of(s) {
                let problem =
                    format!("image {i}: {} x {} patches, which spatial_merge_size {s} does not tile", g.h, g.w);
                return Err(bad(problem));
            }
        }
        let total: usize = grids.iter().map(GridThw::patches).sum();
        if total != rows {
            return Err(bad(format!("the grids hold {total} patches (Σ t·h·w), but pixel_values has {rows} rows")));
        }
        // The processor's order: merge blocks row-major, the s × s patches of a block row-major.
        let mut natural = Vec::with_capacity(2 * rows);
        let mut frames = Vec::new();
        for g in grids {
            for _ in 0..g.t {
                for (by, bx) in (0..g.h / s).flat_map(|by| (0..g.w / s).map(move |bx| (by, bx))) {
                    for (dy, dx) in (0..s).flat_map(|dy| (0..s).map(move |dx| (dy, dx))) {
                        natural.extend([(by * s + dy) as u32, (bx * s + dx) as u32]);
                    }
                }
                frames.push(g.h * g.w);
            }
        }
        let Some(units) = config.window_units() else {
            return Ok(Self { rows, positions: natural, frames, windows: None, window_index: None });
        };
        let (index, windows) = window_index(grids, s, units);
        let unit = 2 * s * s;
        let positions =
            index.iter().flat_map(|&u| &natural[u as usize * unit..(u as usize + 1) * unit]).copied().collect();
        Ok(Self { rows, positions, frames, windows: Some(windows), window_index: Some(index) })
    }

    /// `argsort(window_index)`: the place of each merge unit in the tower's order, which reads
    /// the merger's rows back in the processor's order.
    pub fn inverse(&self) -> Option<Vec<u32>> {
        self.window_index.as_ref().map(|index| {
            let mut inverse = vec![0u32; index.len()];
            for (place, &unit) in index.iter().enumerate() {
                inverse[unit as usize] = place as u32;
            }
            inverse
        })
    }

    /// `rows` values per row of the processor's order in the tower's order (the identity
    /// without windows): `values` is `[rows, width]`.
    pub fn permute_rows<T: Copy>(&self, values: &[T], merge: usize) -> Vec<T> {
        let Some(index) = &self.window_index else {
            return values.to_vec();
        };
        let unit = values.len() / self.rows * merge * merge;
        index.iter().flat_map(|&u| &values[u as usize * unit..(u as usize + 1) * unit]).copied().collect()
    }
}

/// Qwen2.5-VL's `get_window_index`: per image and frame the merged grid, padded up to whole
/// windows of `units` × `units` (a full extra window when `units` divides it, as upstream),
/// windows row-major and each window's units row-major; the padding dropped. Returns the
/// units in that order and each window's length in patches (empty ones included).
fn window_index(grids: &[GridThw], merge: usize, units: usize) -> (Vec<u32>, Vec<usize>) {
    let (mut index, mut lengths, mut first) = (Vec::new(), Vec::new(), 0usize);
    for g in grids {
        let (gh, gw) = (g.h / merge, g.w / merge);
        let (wh, ww) = ((gh + units - gh % units) / units, (gw + units - gw % units) / units);
        for t in 0..g.t {
            for (y0, x0) in (0..wh).flat_map(|y| (0..ww).map(move |x| (y * units, x * units))) {
                let before = index.len();
                for y in y0..(y0 + units).min(gh) {
                    for x in x0..(x0 + units).min(gw) {
                        index.push((first + (t * gh + y) * gw + x) as u32);
                    }
                }
                lengths.push((index.len() - before) * merge * merge);
            }
        }
        first += g.t * gh * gw;
    }
    (index, lengths)
}

/// A Qwen2-VL or Qwen2.5-VL tower with its weights on the GPU.
#[derive(Debug, Clone)]
pub struct QwenTower {
    config: QwenConfig,
    /// The Conv3d as `[C, C·T·P·P]`, no bias.
    patch: Linear,
    layers: Vec<RotaryLayer>,
    activations: DType,
}

impl QwenTower {
    /// The first tensor every checkpoint holds (whether it has the tower).
    pub const PROBE: &'static str = "patch_embed.proj.weight";

    /// Loads the tower from `weights` (names relative to its prefix, `visual.` or
    /// `model.visual.`). GEMM weights keep their stored dtype.
    pub fn from_weights(gpu: &Gpu, weights: &Weights, config: QwenConfig) -> Result<Self> {
        let (c, f, k) = (config.hidden, config.intermediate, config.row_width());
        let (t, p, ch) = (config.temporal, config.patch, config.channels);
        let stored = weights.shape(Self::PROBE)?;
        if stored != [c, ch, t, p, p] {
            return Err(Error::Weights {
                name: Self::PROBE.into(),
                problem: format!(
                    "shape {stored:?}, expected [{c}, {ch}, {t}, {p}, {p}] (vision_config width, in_channels, temporal_patch_size, patch_size)"
                ),
            });
        }
        let patch = Linear::from_tensors("qwen_vision", weights.upload_rows(gpu, &[Self::PROBE], &[c, k])?, None)?;
        let layers = (0..config.layers)
            .map(|i| {
                let at = |leaf: &str| format!("blocks.{i}.{leaf}");
                let norm = |leaf: &str| match config.kind {
                    QwenKind::Qwen2Vl => Norm::load_layer(gpu, weights, &at(leaf), c, LayerNorm::new(EPS)),
                    QwenKind::Qwen25Vl => Norm::load_rms(gpu, weights, &at(leaf), c, RmsNorm::new(EPS)),
                };
                let ffn = match config.kind {
                    QwenKind::Qwen2Vl => FeedForward::Gelu {
                        fc1: Linear::load(gpu, weights, &at("mlp.fc1"), c, true)?,
                        act: config.act,
                        fc2: Linear::load(gpu, weights, &at("mlp.fc2"), f, true)?,
                    },
                    QwenKind::Qwen25Vl => FeedForward::swiglu(gpu, weights, &at("mlp"), (c, f), true, None)?,
                };
                let layer = RotaryLayer {
                    norm1: norm("norm1")?,
                    qkv: Linear::concat_paired(gpu, weights, &[&at("attn.qkv")], c, (true, &config.rope()))?,
                    proj: Linear::load(gpu, weights, &at("attn.proj"), c, true)?,
                    norm2: norm("norm2")?,
                    ffn,
                };
                layer.check(&at("attn.qkv.weight"), c)?;
                Ok(layer)
            })
            .collect::<Result<Vec<_>>>()?;
        gpu.flush("uploading vision tower weights")?;
        Ok(Self { config, patch, layers, activations: DType::F32 })
    }

    /// Builds later graphs with activations stored as `dtype` (f32, the default, or f16).
    pub fn with_activations(mut self, dtype: DType) -> Self {
        self.activations = dtype;
        self
    }

    /// Activations' storage type.
    pub fn activations(&self) -> DType {
        self.activations
    }

    /// Its configuration.
    pub fn config(&self) -> &QwenConfig {
        &self.config
    }

    /// Adds the tower on `pixels` `[1, rows, C·T·P·P]` (an input of `g` in
    /// [`QwenTower::activations`], its rows already in `layout`'s order, see
    /// [`QwenLayout::permute_rows`]) and returns the last layer's output `[1, rows, C]`, in
    /// the same order.
    pub fn add_to(&self, gpu: &Gpu, g: &mut Graph, pixels: TensorId, layout: &QwenLayout) -> Result<TensorId> {
        let (heads, d) = (self.config.heads, self.config.hidden / self.config.heads);
        let rope = rotary::table(gpu, g, &self.config.rope(), &layout.positions)?;
        let full = Segments::new(gpu, g, "attention.frames", (heads, d), &layout.frames)?;
        let windowed = layout.windows.as_deref().map(|w| Segments::new(gpu, g, "attention.windows", (heads, d), w));
        let windowed = windowed.transpose()?;
        let mut h = self.patch.add(g, "patch_embed", pixels, None, Skip::None)?;
        for (i, layer) in self.layers.iter().enumerate() {
            let segments = match windowed {
                Some(w) if !self.config.full_attention.contains(&i) => w,
                _ => full,
            };
            h = layer.add(g, &format!("blocks.{i}"), h, rope, segments)?;
        }
        Ok(h)
    }

    /// [`QwenTower::add_to`], then its output read as the merger's units `[rows / s², s²·C]`
    /// in the processor's order (`argsort(window_index)` after Qwen2.5-VL's windows: the merger
    /// is row-wise over units, so this equals upstream's `merger(x)[argsort(window_index)]`).
    /// The tower's nodes are in stage `tower`, the copy in `connector`.
    pub fn add_merge_units(&self, gpu: &Gpu, g: &mut Graph, pixels: TensorId, layout: &QwenLayout) -> Result<TensorId> {
        g.set_stage("tower");
        let h = self.add_to(gpu, g, pixels, layout)?;
        g.set_stage("connector");
        let unit = self.config.merge * self.config.merge * self.config.hidden;
        match layout.inverse() {
            Some(inverse) => {
                let index = Tensor::from_data(gpu, &[inverse.len()], DType::U32, inverse[..].into())?;
                let index = g.constant("window_index.inverse", &index);
                g.add(Concat::Gather { cols: unit }, &[h, index])
            }
            None => g.add(Concat::Regroup { cols: unit }, &[h]),
        }
    }
}
