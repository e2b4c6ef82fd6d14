//! The vision side of a model directory: which tower its `vision_config` describes, where its
//! tensors live, which hidden states the connector reads, and the pixel inputs as the Hugging
//! Face processor returns them (`pixel_values`, `image_sizes`, `pixel_attention_mask`, ..).

use super::config::ConfigJson;
use super::rotary;
use super::{ModelFamily, Tensors, input_ints};
use crate::dtype::{DType, HostVec};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Graph, TensorId};
use crate::host::HostTensor;
use crate::ops::Concat;
use crate::towers::{
    MllamaTower, MllamaVisionConfig, PixtralConfig, PixtralTower, QwenConfig, QwenKind, QwenTower, TowerConfig,
    TowerKind, TowerSelect, VisionTower,
};
use crate::weights::Weights;

/// A family's tower, described from `config.json`. A config the tower cannot be built from is
/// an error only when the checkpoint holds the tower (a connector-only checkpoint still runs).
#[derive(Debug, Clone)]
pub(crate) struct TowerSpec {
    arch: Arch,
    /// Where the checkpoint may hold it (on-disk names first).
    prefixes: &'static [&'static str],
    /// The tower, or the config field that prevents it and why.
    parsed: std::result::Result<Parsed, (String, String)>,
}

/// The tower's architecture.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Arch {
    /// A ViT with learned absolute positions.
    Vit(TowerKind),
    /// Qwen2-VL's or Qwen2.5-VL's rotary tower.
    Qwen(QwenKind),
    /// Pixtral (Mistral 3).
    Pixtral,
    /// Llama 3.2 Vision's tiled tower.
    Mllama,
}

impl Arch {
    fn upstream(self) -> &'static str {
        match self {
            Arch::Vit(kind) => kind.upstream(),
            Arch::Qwen(kind) => kind.upstream(),
            Arch::Pixtral => "PixtralVisionModel",
            Arch::Mllama => "MllamaVisionModel",
        }
    }

    fn probe(self) -> String {
        match self {
            Arch::Vit(kind) => VisionTower::probe(kind),
            Arch::Qwen(_) => QwenTower::PROBE.into(),
            Arch::Pixtral => PixtralTower::PROBE.into(),
            Arch::Mllama => MllamaTower::PROBE.into(),
        }
    }
}

#[derive(Debug, Clone)]
enum Parsed {
    Vit(VitParsed),
    Qwen(QwenConfig),
    /// With the `hidden_states` index the model reads (`vision_feature_layer`).
    Pixtral(PixtralConfig, usize),
    Mllama(MllamaVisionConfig),
}

/// A loaded rotary tower.
pub(crate) enum Rotary {
    Qwen(QwenTower),
    Pixtral(PixtralTower),
}

#[derive(Debug, Clone)]
struct VitParsed {
    config: TowerConfig,
    select: TowerSelect,
    /// `vision_feature_select_strategy = default`: the class token is dropped.
    drop_class: bool,
    /// `vision_feature_layer` as written, for `inspect`.
    feature_layer: String,
}

impl TowerSpec {
    /// The tower of `family`.
    pub(crate) fn new(family: ModelFamily, config: &ConfigJson) -> Result<Self> {
        let (arch, prefixes): (Arch, &'static [&'static str]) = match family {
            ModelFamily::Llava | ModelFamily::LlavaNext => (Arch::Vit(TowerKind::Clip), &["vision_tower."]),
            ModelFamily::LlavaOnevision | ModelFamily::Gemma3 => (Arch::Vit(TowerKind::Siglip), &["vision_tower."]),
            ModelFamily::Idefics3 | ModelFamily::SmolVlm => {
                (Arch::Vit(TowerKind::Siglip), &["model.vision_model.", "vision_model."])
            }
            ModelFamily::Blip2 => (Arch::Vit(TowerKind::Blip2), &["vision_model."]),
            ModelFamily::InternVl => (Arch::Vit(TowerKind::InternVit), &["vision_tower."]),
            ModelFamily::Qwen2Vl => (Arch::Qwen(QwenKind::Qwen2Vl), &["model.visual.", "visual."]),
            ModelFamily::Qwen25Vl => (Arch::Qwen(QwenKind::Qwen25Vl), &["model.visual.", "visual."]),
            ModelFamily::Mistral3 => (Arch::Pixtral, &["model.vision_tower.", "vision_tower."]),
            ModelFamily::Mllama => (Arch::Mllama, &["model.vision_model.", "vision_model."]),
        };
        let vision = &config.value()["vision_config"];
        let parsed = match arch {
            Arch::Vit(kind) => VitParsed::new(family, kind, config).map(Parsed::Vit),
            Arch::Qwen(kind) => QwenConfig::from_json(kind, "vision_config", vision).map(Parsed::Qwen),
            Arch::Pixtral => rotary::pixtral_config(config.value()).map(|(c, depth)| Parsed::Pixtral(c, depth)),
            Arch::Mllama => MllamaVisionConfig::from_json("vision_config", vision).map(Parsed::Mllama),
        };
        let parsed = parsed.map_err(|e| match e {
            Error::Config { field, problem } => (field, problem),
            other => ("vision_config".to_string(), other.to_string()),
        });
        Ok(Self { arch, prefixes, parsed })
    }

    /// The prefix the checkpoint holds the tower under, if it does.
    fn prefix(&self, weights: &Weights) -> Option<&'static str> {
        let probe = self.arch.probe();
        self.prefixes.iter().copied().find(|p| weights.contains(&format!("{p}{probe}")))
    }

    /// Whether the checkpoint holds the tower.
    pub(crate) fn present(&self, weights: &Weights) -> bool {
        self.prefix(weights).is_some()
    }

    /// Uploads the tower when the checkpoint holds it (its patch embedding under one of the
    /// family's prefixes); `None` for a connector-only checkpoint. A config it cannot be built
    /// from is an [`Error::Config`] naming the field.
    pub(crate) fn load(&self, gpu: &Gpu, weights: &Weights, activations: DType) -> Result<Option<Tower>> {
        let Some((prefix, parsed)) = self.parsed_for(weights)? else {
            return Ok(None);
        };
        let Parsed::Vit(p) = parsed else {
            return Err(Error::Config { field: "vision_config".into(), problem: "not a ViT (a rotary tower)".into() });
        };
        let tower = VisionTower::from_weights(gpu, &weights.with_prefix(prefix), p.config, p.select.clone())?;
        Ok(Some(Tower { tower: tower.with_activations(activations), drop_class: p.drop_class }))
    }

    /// [`TowerSpec::load`] for the rotary towers (Qwen2-VL, Qwen2.5-VL, Pixtral).
    pub(crate) fn load_rotary(&self, gpu: &Gpu, weights: &Weights, activations: DType) -> Result<Option<Rotary>> {
        let Some((prefix, parsed)) = self.parsed_for(weights)? else {
            return Ok(None);
        };
        let weights = weights.with_prefix(prefix);
        let tower = match parsed {
            Parsed::Qwen(config) => {
                Rotary::Qwen(QwenTower::from_weights(gpu, &weights, config.clone())?.with_activations(activations))
            }
            Parsed::Pixtral(config, depth) => Rotary::Pixtral(
                PixtralTower::from_weights(gpu, &weights, config.clone(), *depth)?.with_activations(activations),
            ),
            Parsed::Vit(_) | Parsed::Mllama(_) => {
                return Err(Error::Config { field: "vision_config".into(), problem: "not a rotary tower".into() });
            }
        };
        Ok(Some(tower))
    }

    /// [`TowerSpec::load`] for Llama 3.2 Vision's tiled tower, with the projector it feeds
    /// (`multi_modal_projector.` beside the tower's prefix).
    pub(crate) fn load_tiled(&self, gpu: &Gpu, weights: &Weights, activations: DType) -> Result<Option<MllamaTower>> {
        let Some((prefix, parsed)) = self.parsed_for(weights)? else {
            return Ok(None);
        };
        let Parsed::Mllama(config) = parsed else {
            return Err(Error::Config { field: "vision_config".into(), problem: "not a tiled tower".into() });
        };
        let root = prefix.strip_suffix("vision_model.").unwrap_or_default();
        let tower =
            MllamaTower::from_weights(gpu, &weights.with_prefix(prefix), &weights.with_prefix(root), config.clone())?;
        Ok(Some(tower.with_activations(activations)))
    }

    /// The prefix and the parsed config where the checkpoint holds the tower.
    fn parsed_for(&self, weights: &Weights) -> Result<Option<(&'static str, &Parsed)>> {
        let Some(prefix) = self.prefix(weights) else {
            return Ok(None);
        };
        let p = self
            .parsed
            .as_ref()
            .map_err(|(field, problem)| Error::Config { field: field.clone(), problem: problem.clone() })?;
        Ok(Some((prefix, p)))
    }

    /// What `inspect` says of the tower.
    pub(crate) fn describe(&self) -> Vec<(String, String)> {
        let p = match &self.parsed {
            Ok(Parsed::Vit(p)) => p,
            Ok(Parsed::Qwen(c)) => return rotary::describe_qwen(c),
            Ok(Parsed::Pixtral(c, depth)) => return rotary::describe_pixtral(c, *depth),
            Ok(Parsed::Mllama(c)) => return super::mllama::describe_tower(c),
            Err((field, problem)) => {
                return vec![(
                    "vision tower".into(),
                    format!("{} (not buildable: {field}: {problem})", self.arch.upstream()),
                )];
            }
        };
        let c = &p.config;
        let used = match &p.select {
            TowerSelect::Hidden(i) => i.iter().copied().max().unwrap_or(0),
            TowerSelect::PostNormed => c.layers,
        };
        let tokens = c.tokens() - usize::from(p.drop_class);
        vec![
            (
                "vision tower".into(),
                format!(
                    "{} ({} layers, {} used; width {}, {} heads, MLP {}, {:?})",
                    c.kind.upstream(),
                    c.layers,
                    used,
                    c.hidden,
                    c.heads,
                    c.intermediate,
                    c.act
                ),
            ),
            ("image".into(), format!("{0} x {0} px, patch {1} ({2} x {2} patches)", c.image_size, c.patch, c.side())),
            ("feature layer".into(), p.feature_layer.clone()),
            ("tower tokens".into(), format!("{} per image ({} to the connector)", c.tokens(), tokens)),
            ("tower FLOPs".into(), format!("{:.2} GFLOP per image", c.flops(used) / 1e9)),
        ]
    }
}

impl VitParsed {
    fn new(family: ModelFamily, kind: TowerKind, config: &ConfigJson) -> Result<Self> {
        let value = config.value();
        let tower = TowerConfig::from_json(kind, "vision_config", &value["vision_config"])?;
        let strategy = value["vision_feature_select_strategy"].as_str().unwrap_or("full");
        let layer = &value["vision_feature_layer"];
        let select = match family {
            ModelFamily::Llava | ModelFamily::LlavaNext | ModelFamily::LlavaOnevision | ModelFamily::InternVl => {
                let indices: Vec<i64> = match layer {
                    serde_json::Value::Array(list) => list.iter().filter_map(serde_json::Value::as_i64).collect(),
                    other => other.as_i64().into_iter().collect(),
                };
                if indices.is_empty() {
                    let problem = format!("{layer} (an int or a list of ints)");
                    return Err(Error::Config { field: "vision_feature_layer".into(), problem });
                }
                let hidden = indices
                    .iter()
                    .map(|&i| tower.hidden_state("vision_feature_layer", i))
                    .collect::<Result<Vec<_>>>()?;
                TowerSelect::Hidden(hidden)
            }
            _ => TowerSelect::PostNormed,
        };
        let drop_class = kind.class_token() && strategy == "default" && matches!(select, TowerSelect::Hidden(_));
        let feature_layer =
            if layer.is_null() { "last_hidden_state (post_layernorm)".into() } else { layer.to_string() };
        Ok(Self { config: tower, select, drop_class, feature_layer })
    }
}

/// A loaded tower with how its features reach the connector.
pub(crate) struct Tower {
    pub(crate) tower: VisionTower,
    drop_class: bool,
}

/// `pixel_values` as the graph takes it: `[slabs, 3, H, W]` (leading dims flattened), with its
/// data fed under the same name.
pub(crate) struct Pixels {
    pub(crate) id: TensorId,
    /// The input's own shape, as the processor returned it.
    pub(crate) shape: Vec<usize>,
    pub(crate) slabs: usize,
}

impl Tower {
    /// Declares `pixel_values` (rank `rank`: 4 for `[images, 3, H, W]`, 5 for
    /// `[images, tiles, 3, H, W]`) in `g` and feeds it; its size must be the config's.
    pub(crate) fn pixels(&self, g: &mut Graph, inputs: &Tensors, rank: usize, feeds: &mut Tensors) -> Result<Pixels> {
        let name = "pixel_values";
        let (t, data) = finite_pixels(inputs)?;
        let c = self.tower.config();
        let (s, p) = (c.image_size, c.patch);
        let expected = if rank == 5 { "[images, tiles, 3, H, W]" } else { "[images, 3, H, W]" };
        if t.shape.len() != rank || t.shape[rank - 3] != 3 {
            let problem = format!("shape {:?}, expected {expected}", t.shape);
            return Err(Error::Input { name: name.into(), problem });
        }
        let (h, w) = (t.shape[rank - 2], t.shape[rank - 1]);
        if (h, w) != (s, s) {
            let problem = format!(
                "{h} x {w} px, but vision_config has image_size {s} (patch {p}): the learned positions are not interpolated"
            );
            return Err(Error::Input { name: name.into(), problem });
        }
        let slabs = t.shape[..rank - 3].iter().product();
        let shape = [slabs, 3, h, w];
        let id = g.input_as(name, &shape, self.tower.activations())?;
        feeds.insert(name.into(), HostTensor::new(&shape, HostVec::F32(data.to_vec()))?);
        Ok(Pixels { id, shape: t.shape.clone(), slabs })
    }

    /// The connector's input: the tower over the slabs `images`, the selected hidden states
    /// side by side, the class token dropped under the `default` strategy.
    pub(crate) fn features(
        &self,
        gpu: &Gpu,
        g: &mut Graph,
        pixels: &Pixels,
        images: &[u32],
        position_ids: Option<&[u32]>,
        key_mask: Option<&[u8]>,
    ) -> Result<TensorId> {
        g.set_stage("tower");
        let states = self.tower.add_to(gpu, g, pixels.id, images, position_ids, key_mask)?;
        g.set_stage("connector");
        let skip = usize::from(self.drop_class);
        let mut h = states[0];
        for (i, &next) in states.iter().enumerate().skip(1) {
            let last = i + 1 == states.len();
            h = g.add(Concat::Channels { skip: if last { skip } else { 0 }, two: true }, &[h, next])?;
        }
        if states.len() == 1 && skip > 0 {
            h = g.add(Concat::Channels { skip, two: false }, &[h])?;
        }
        Ok(h)
    }
}

/// `pixel_values` as float data, every element finite.
pub(crate) fn finite_pixels(inputs: &Tensors) -> Result<(&HostTensor, &[f32])> {
    let name = "pixel_values";
    let t = inputs
        .get(name)
        .ok_or_else(|| Error::Input { name: name.into(), problem: "missing from the inputs".into() })?;
    let Some(data) = t.data.as_f32() else {
        return Err(Error::Input { name: name.into(), problem: "expected float data".into() });
    };
    if let Some(bad) = data.iter().position(|v| !v.is_finite()) {
        let problem = format!("element {bad} is {} (pixels must be finite)", data[bad]);
        return Err(Error::Input { name: name.into(), problem });
    }
    Ok((t, data))
}

/// Every slab of `pixels`, in order.
pub(crate) fn all_slabs(pixels: &Pixels) -> Vec<u32> {
    (0..pixels.slabs as u32).collect()
}

/// Integer input `name` of shape `[rows, cols]`.
pub(crate) fn int_rows(inputs: &Tensors, name: &str, cols: usize) -> Result<Vec<Vec<usize>>> {
    let t = inputs
        .get(name)
        .ok_or_else(|| Error::Input { name: name.into(), problem: "missing from the inputs".into() })?;
    if t.shape.len() != 2 || t.shape[1] != cols {
        let problem = format!("shape {:?}, expected [images, {cols}]", t.shape);
        return Err(Error::Input { name: name.into(), problem });
    }
    Ok(input_ints(inputs, name, t.data.len())?.chunks(cols).map(<[usize]>::to_vec).collect())
}

/// Idefics3 / SmolVLM: the real images of `pixel_values` `[batch, images, 3, H, W]` (those not
/// entirely 0.0, as upstream drops them; SmolVLM keeps image 0 when none is real), and for each
/// its patch mask and NaViT-bucketed position ids from `pixel_attention_mask`
/// `[batch, images, H, W]`.
pub(crate) struct Frames {
    pub(crate) images: Vec<u32>,
    pub(crate) key_mask: Vec<u8>,
    pub(crate) position_ids: Vec<u32>,
}

impl Frames {
    pub(crate) fn new(inputs: &Tensors, pixels: &Pixels, patch: usize, keep_first: bool) -> Result<Self> {
        let name = "pixel_attention_mask";
        let (h, w) = (pixels.shape[pixels.shape.len() - 2], pixels.shape[pixels.shape.len() - 1]);
        let t = inputs
            .get(name)
            .ok_or_else(|| Error::Input { name: name.into(), problem: "missing from the inputs".into() })?;
        let want = [&pixels.shape[..pixels.shape.len() - 3], &[h, w]].concat();
        if t.shape != want {
            return Err(Error::Input { name: name.into(), problem: format!("shape {:?}, expected {want:?}", t.shape) });
        }
        let mask = input_ints(inputs, name, t.data.len())?;
        let data = inputs["pixel_values"].data.as_f32().unwrap_or_default();
        let slab = 3 * h * w;
        let mut images: Vec<u32> = (0..pixels.slabs)
            .filter(|&i| data[i * slab..(i + 1) * slab].iter().any(|&v| v != 0.0))
            .map(|i| i as u32)
            .collect();
        if images.is_empty() && keep_first {
            images.push(0);
        }
        if images.is_empty() {
            return Err(Error::Input {
                name: "pixel_values".into(),
                problem: "every image is padding (all 0.0)".into(),
            });
        }
        let (gh, gw) = (h / patch, w / patch);
        let (mut key_mask, mut position_ids) = (Vec::new(), Vec::new());
        for &i in &images {
            let m = &mask[i as usize * h * w..(i as usize + 1) * h * w];
            let valid: Vec<bool> = (0..gh * gw)
                .map(|q| {
                    let (py, px) = (q / gw, q % gw);
                    (0..patch).any(|dy| (0..patch).any(|dx| m[(py * patch + dy) * w + px * patch + dx] != 0))
                })
                .collect();
            let rows = (0..gh).filter(|&r| valid[r * gw]).count();
            let cols = (0..gw).filter(|&c| valid[c]).count();
            let (bh, bw) = (buckets(rows, gh), buckets(cols, gw));
            for (q, &v) in valid.iter().enumerate() {
                key_mask.push(u8::from(v));
                let (py, px) = (q / gw, q % gw);
                let id = if v { bh.get(py).copied().unwrap_or(0) * gw + bw.get(px).copied().unwrap_or(0) } else { 0 };
                position_ids.push(id as u32);
            }
        }
        Ok(Self { images, key_mask, position_ids })
    }
}

/// `torch.bucketize(arange(n) * (1 / n) clamped to 1 - 1e-6, arange(1/N, 1, 1/N), right=True)`
/// in float32, as upstream computes each valid patch's row (or column) bucket among `side`.
fn buckets(n: usize, side: usize) -> Vec<usize> {
    let step = 1.0f32 / side as f32;
    // torch.arange(1/N, 1.0, 1/N) in float32: start + i·step while < 1.
    let boundaries: Vec<f32> = (1..).map(|i| step + (i - 1) as f32 * step).take_while(|&b| b < 1.0).collect();
    let inv = 1.0f32 / n.max(1) as f32;
    (0..n)
        .map(|i| {
            let frac = (i as f32 * inv).min(1.0 - 1e-6);
            boundaries.iter().filter(|&&b| b <= frac).count()
        })
        .collect()
}
