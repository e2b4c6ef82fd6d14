//! Pixtral's vision tower (`PixtralVisionModel`, Mistral 3's `vision_tower`): images of their
//! own sizes, each padded into the processor's batch, as one packed sequence.
//!
//! Each image's real patches (`image_sizes` over the padding) become rows of `C·P·P` values on
//! the host, in the conv weight's (channel, y, x) order, so the patch conv is one GEMM. Then
//! `ln_pre`, and layers with 2D rotary positions over each image's own patch grid (Pixtral's
//! interleaved frequencies) and attention block-diagonal per image from a segment table.

use super::rotary::{self, FeedForward, RotaryLayer, Segments};
use crate::connectors::StateDict;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Graph, TensorId};
use crate::nn::{Linear, Norm, Skip};
use crate::ops::{Concat, GeluForm, RmsNorm, Rope2d, RopeFrequencies};
use crate::weights::Weights;

/// `PixtralRMSNorm`'s eps, fixed by the architecture.
const EPS: f32 = 1e-5;

/// The tower's hyper-parameters, from its `vision_config`.
#[derive(Debug, Clone, PartialEq)]
pub struct PixtralConfig {
    /// `hidden_size`.
    pub hidden: usize,
    /// `intermediate_size`.
    pub intermediate: usize,
    /// `num_hidden_layers`.
    pub layers: usize,
    /// `num_attention_heads`.
    pub heads: usize,
    /// `patch_size`.
    pub patch: usize,
    /// `num_channels`.
    pub channels: usize,
    /// `image_size`: the largest side, in pixels.
    pub image_size: usize,
    /// The rotary base (`rope_parameters.rope_theta`).
    pub theta: f32,
    /// The gate's activation: `None` for `silu`, else a GELU (`hidden_act`).
    pub gate: Option<GeluForm>,
}

impl PixtralConfig {
    /// The 2D rotary turn of its query and key heads.
    pub fn rope(&self) -> Rope2d {
        let head_dim = self.hidden / self.heads.max(1);
        Rope2d { head_dim, heads: 2 * self.heads, theta: self.theta, frequencies: RopeFrequencies::Interleaved }
    }

    /// Reads a `vision_config`; `field` names it in errors.
    pub fn from_json(field: &str, v: &serde_json::Value) -> Result<Self> {
        let config_error = |key: &str, problem: String| Error::Config { field: format!("{field}.{key}"), problem };
        let size = |key: &str| -> Result<usize> {
            match v[key].as_u64() {
                Some(n) if n > 0 => Ok(n as usize),
                _ => Err(config_error(key, format!("{} (a positive integer)", v[key]))),
            }
        };
        let gate = match v["hidden_act"].as_str() {
            None | Some("silu") => None,
            Some(other) => Some(GeluForm::from_hf(&format!("{field}.hidden_act"), other)?),
        };
        let theta = rotary::theta(v);
        let config = Self {
            hidden: size("hidden_size")?,
            intermediate: size("intermediate_size")?,
            layers: size("num_hidden_layers")?,
            heads: size("num_attention_heads")?,
            patch: size("patch_size")?,
            channels: if v["num_channels"].is_null() { 3 } else { size("num_channels")? },
            image_size: size("image_size")?,
            theta,
            gate,
        };
        let d = rotary::head_dim(&format!("{field}.num_attention_heads"), config.hidden, config.heads)?;
        if let Some(head_dim) = v["head_dim"].as_u64()
            && head_dim as usize != d
        {
            let problem = format!("{head_dim}, but hidden_size / num_attention_heads is {d}");
            return Err(config_error("head_dim", problem));
        }
        Ok(config)
    }

    /// The tensors a checkpoint of this tower holds for `layers` layers (names relative to the
    /// tower's prefix): what the demo and the bench load at real size.
    pub fn state_dict(&self, layers: usize) -> StateDict {
        let (c, f) = (self.hidden, self.intermediate);
        let mut t = StateDict::default();
        t.tensor(PixtralTower::PROBE, &[c, self.channels, self.patch, self.patch]);
        t.norm("ln_pre", c, false);
        for i in 0..layers {
            let l = format!("transformer.layers.{i}");
            t.norm(&format!("{l}.attention_norm"), c, false);
            t.norm(&format!("{l}.ffn_norm"), c, false);
            for x in ["q_proj", "k_proj", "v_proj", "o_proj"] {
                t.linear(&format!("{l}.attention.{x}"), c, c, false);
            }
            t.linear(&format!("{l}.feed_forward.gate_proj"), f, c, false);
            t.linear(&format!("{l}.feed_forward.up_proj"), f, c, false);
            t.linear(&format!("{l}.feed_forward.down_proj"), c, f, false);
        }
        t
    }

    /// Values per patch row: `num_channels · patch_size²`.
    pub fn row_width(&self) -> usize {
        self.channels * self.patch * self.patch
    }

    /// FLOPs of images of `grids` patches through `layers` layers (an FMA counts 2).
    pub fn flops(&self, grids: &[(usize, usize)], layers: usize) -> f64 {
        let tokens: usize = grids.iter().map(|(h, w)| h * w).sum();
        let squares: usize = grids.iter().map(|(h, w)| (h * w) * (h * w)).sum();
        let (t, c, f) = (tokens as f64, self.hidden as f64, self.intermediate as f64);
        let layer = 2.0 * t * c * (4.0 * c + 3.0 * f) + 4.0 * squares as f64 * c;
        2.0 * t * c * self.row_width() as f64 + layers as f64 * layer
    }
}

/// The packed sequence of a batch: each image's real patches as rows, their positions and the
/// per-image segments.
#[derive(Debug, Clone, PartialEq)]
pub struct PixtralLayout {
    /// Patch rows `[Σ h·w, C·P·P]`, image after image, each row-major.
    pub rows: Vec<f32>,
    /// (row, column) of each patch in its own image, `[Σ h·w, 2]`.
    pub positions: Vec<u32>,
    /// Each image's patch grid (rows, columns).
    pub grids: Vec<(usize, usize)>,
}

impl PixtralLayout {
    /// Cuts the real patches out of `pixels` `[images, C, H, W]` (`shape`), image `i` being
    /// `image_sizes[i]` = (height, width) px in its top-left corner (remainders of a patch
    /// dropped, as upstream). Sizes past the padded pixels, or under one patch, are
    /// [`Error::Input`]s naming `image_sizes`.
    pub fn new(
        config: &PixtralConfig,
        pixels: &[f32],
        shape: &[usize],
        image_sizes: &[(usize, usize)],
    ) -> Result<Self> {
        let bad = |problem: String| Error::Input { name: "image_sizes".into(), problem };
        let [images, ch, height, width] = shape[..] else {
            let problem = format!("shape {shape:?}, expected [images, {}, H, W]", config.channels);
            return Err(Error::Input { name: "pixel_values".into(), problem });
        };
        if ch != config.channels {
            let problem = format!("{ch} channels, expected {} (vision_config.num_channels)", config.channels);
            return Err(Error::Input { name: "pixel_values".into(), problem });
        }
        if image_sizes.len() != images {
            return Err(bad(format!("{} sizes for {images} images", image_sizes.len())));
        }
        let p = config.patch;
        let (mut rows, mut positions, mut grids) = (Vec::new(), Vec::new(), Vec::new());
        for (i, &(h, w)) in image_sizes.iter().enumerate() {
            if h > height || w > width {
                return Err(bad(format!(
                    "image {i} is {h} x {w} px, larger than the padded pixels ({height} x {width})"
                )));
            }
            if h < p || w < p {
                return Err(bad(format!("image {i} is {h} x {w} px, smaller than one {p} px patch")));
            }
            let image = &pixels[i * ch * height * width..(i + 1) * ch * height * width];
            let (gh, gw) = (h / p, w / p);
            super::patch_rows(image, (ch, height, width), p, (gh, gw), &mut rows);
            positions.extend((0..gh).flat_map(|y| (0..gw).flat_map(move |x| [y as u32, x as u32])));
            grids.push((gh, gw));
        }
        Ok(Self { rows, positions, grids })
    }

    /// Patch rows in all.
    pub fn tokens(&self) -> usize {
        self.positions.len() / 2
    }
}

/// Pixtral's tower with its weights on the GPU, up to the hidden state its model reads.
#[derive(Debug, Clone)]
pub struct PixtralTower {
    config: PixtralConfig,
    /// The patch conv as `[C, C_in·P·P]`, no bias.
    patch: Linear,
    ln_pre: Norm,
    layers: Vec<RotaryLayer>,
    activations: DType,
}

impl PixtralTower {
    /// The first tensor every checkpoint holds (whether it has the tower).
    pub const PROBE: &'static str = "patch_conv.weight";

    /// Loads the tower from `weights` (names relative to its prefix, `vision_tower.`): the
    /// patch conv, `ln_pre` and the first `depth` layers (`hidden_states[depth]` is what the
    /// model reads). GEMM weights keep their stored dtype.
    pub fn from_weights(gpu: &Gpu, weights: &Weights, config: PixtralConfig, depth: usize) -> Result<Self> {
        let (c, f, p, ch) = (config.hidden, config.intermediate, config.patch, config.channels);
        let stored = weights.shape(Self::PROBE)?;
        if stored != [c, ch, p, p] {
            let problem = format!(
                "shape {stored:?}, expected [{c}, {ch}, {p}, {p}] (vision_config hidden_size, num_channels, patch_size)"
            );
            return Err(Error::Weights { name: Self::PROBE.into(), problem });
        }
        let patch = weights.upload_rows(gpu, &[Self::PROBE], &[c, config.row_width()])?;
        let patch = Linear::from_tensors("pixtral_vision", patch, None)?;
        let ln_pre = Norm::load_rms(gpu, weights, "ln_pre", c, RmsNorm::new(EPS))?;
        let rope = config.rope();
        let layers = (0..depth.min(config.layers))
            .map(|i| {
                let at = |leaf: &str| format!("transformer.layers.{i}.{leaf}");
                let qkv = ["q_proj", "k_proj", "v_proj"].map(|x| at(&format!("attention.{x}")));
                let layer = RotaryLayer {
                    norm1: Norm::load_rms(gpu, weights, &at("attention_norm"), c, RmsNorm::new(EPS))?,
                    qkv: Linear::concat_paired(gpu, weights, &qkv.each_ref().map(String::as_str), c, (false, &rope))?,
                    proj: Linear::load(gpu, weights, &at("attention.o_proj"), c, false)?,
                    norm2: Norm::load_rms(gpu, weights, &at("ffn_norm"), c, RmsNorm::new(EPS))?,
                    ffn: FeedForward::swiglu(gpu, weights, &at("feed_forward"), (c, f), false, config.gate)?,
                };
                layer.check(&at("attention.q_proj.weight"), c)?;
                Ok(layer)
            })
            .collect::<Result<Vec<_>>>()?;
        gpu.flush("uploading vision tower weights")?;
        Ok(Self { config, patch, ln_pre, layers, activations: DType::F32 })
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
    pub fn config(&self) -> &PixtralConfig {
        &self.config
    }

    /// Layers on the GPU.
    pub fn layers_loaded(&self) -> usize {
        self.layers.len()
    }

    /// Adds the tower on `rows` `[1, tokens, C_in·P·P]` (an input of `g` in
    /// [`PixtralTower::activations`], holding `layout`'s rows) and returns the hidden state it
    /// was loaded for as `[tokens, C]`, the images' tokens one after the other.
    pub fn add_to(&self, gpu: &Gpu, g: &mut Graph, rows: TensorId, layout: &PixtralLayout) -> Result<TensorId> {
        let (heads, d) = (self.config.heads, self.config.hidden / self.config.heads);
        let rope = rotary::table(gpu, g, &self.config.rope(), &layout.positions)?;
        let lengths: Vec<usize> = layout.grids.iter().map(|(h, w)| h * w).collect();
        let segments = Segments::new(gpu, g, "attention.images", (heads, d), &lengths)?;
        let embedded = self.patch.add(g, "patch_conv", rows, None, Skip::None)?;
        let mut h = self.ln_pre.add(g, "ln_pre", embedded)?;
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.add(g, &format!("transformer.layers.{i}"), h, rope, segments)?;
        }
        g.add(Concat::Flatten, &[h])
    }
}
