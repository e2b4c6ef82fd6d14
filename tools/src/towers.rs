//! The whole vision paths at their checkpoints' sizes for `vlbridge bench` and `vlbridge demo
//! --all`: random bf16 weights (as checkpoints ship) through the same loaders as a real
//! checkpoint, one image of N(0, 1) pixels, the tower then the family's connector. Row shapes
//! start with the keys of the PyTorch peer's `tower/*` rows, so the side-by-side join pairs them.

use rand::SeedableRng;
use rand::rngs::StdRng;
use vlbridge::connectors::{LlavaProjector, Merger, MergerConfig, MergerKind, QFormer, QFormerConfig};
use vlbridge::ops::{Concat, Convert, GeluForm};
use vlbridge::towers::{
    GridThw, MllamaLayout, MllamaTower, MllamaVisionConfig, PixtralConfig, PixtralLayout, PixtralTower, QwenConfig,
    QwenKind, QwenLayout, QwenTower, TowerConfig, TowerKind, TowerNorm, TowerSelect, VisionTower,
};
use vlbridge::{DType, Gpu, Graph, Result, Tensor};

use crate::synthetic;
use crate::util::normal;

/// One tower workload.
#[derive(Clone)]
pub struct Workload {
    /// Row label.
    pub label: &'static str,
    /// The tower and its image.
    pub tower: Tower,
    /// What follows the tower.
    pub connector: Connector,
    /// Activations' storage type (f32, or f16 with f32 arithmetic).
    pub activations: DType,
}

/// A workload's tower.
#[derive(Clone)]
pub enum Tower {
    /// A ViT at its `image_size`, and what its model reads of it.
    Vit(TowerConfig, TowerSelect),
    /// A Qwen tower over one image of this patch grid.
    Qwen(QwenConfig, GridThw),
    /// Pixtral over one square image of this many pixels, `layers` of its layers run.
    Pixtral(PixtralConfig, usize, usize),
    /// Mllama over one image of `max_num_tiles` tiles, of which this many are real (the rest
    /// are the processor's padding tiles, computed all the same), and its projector.
    Mllama(MllamaVisionConfig, usize),
}

/// The connector of a workload, at the language model's width.
#[derive(Clone, Copy)]
pub enum Connector {
    /// The LLaVA MLP `[C, text, text]` (the class token dropped first where the tower has one).
    Llava(usize),
    /// BLIP-2's Q-Former (12 layers, 32 queries of 768) and `language_projection` to `text`.
    QFormer(usize),
    /// A spatial merger of this kind and scale into `text` (class token dropped first).
    Merger(MergerKind, usize, usize),
    /// Mllama's `multi_modal_projector` into `text`, part of its tower's graph.
    Projector(usize),
}

impl Workload {
    /// The same workload one layer deep (what the f64 reference checks at full width; Qwen's
    /// first layer attends within windows where the tower has them).
    pub fn one_layer(&self) -> Workload {
        let tower = match &self.tower {
            Tower::Vit(config, select) => {
                let select = match select {
                    TowerSelect::Hidden(_) => TowerSelect::Hidden(vec![1]),
                    TowerSelect::PostNormed => TowerSelect::PostNormed,
                };
                Tower::Vit(TowerConfig { layers: 1, ..*config }, select)
            }
            Tower::Qwen(config, grid) => {
                let full_attention = config.full_attention.iter().copied().filter(|&i| i == 0).collect();
                Tower::Qwen(QwenConfig { layers: 1, full_attention, ..config.clone() }, *grid)
            }
            Tower::Pixtral(config, side, _) => Tower::Pixtral(config.clone(), *side, 1),
            Tower::Mllama(config, tiles) => Tower::Mllama(mllama_depth(config, 1, 1), *tiles),
        };
        Workload { tower, ..self.clone() }
    }

    /// (layers run, tower tokens per image).
    pub fn size(&self) -> (usize, usize) {
        match &self.tower {
            Tower::Vit(config, select) => {
                let used = match select {
                    TowerSelect::Hidden(i) => i.iter().copied().max().unwrap_or(0),
                    TowerSelect::PostNormed => config.layers,
                };
                (used, config.tokens())
            }
            Tower::Qwen(config, grid) => (config.layers, grid.t * grid.h * grid.w),
            Tower::Pixtral(config, side, layers) => (*layers, (side / config.patch).pow(2)),
            Tower::Mllama(config, _) => {
                (config.layers + config.global_layers, config.max_tiles * config.padded_tokens())
            }
        }
    }

    /// The same workload `layers` deep (fewer for a CPU rasteriser's minutes): the ViTs'
    /// selected hidden states and Qwen's full-attention layers keep their place within it.
    pub fn with_layers(&self, layers: usize) -> Workload {
        let tower = match &self.tower {
            Tower::Vit(config, select) => {
                let select = match select {
                    TowerSelect::Hidden(i) => TowerSelect::Hidden(i.iter().map(|&i| i.min(layers)).collect()),
                    TowerSelect::PostNormed => TowerSelect::PostNormed,
                };
                Tower::Vit(TowerConfig { layers: layers.min(config.layers), ..*config }, select)
            }
            Tower::Qwen(config, grid) => {
                let full_attention = config.full_attention.iter().copied().filter(|&i| i < layers).collect();
                Tower::Qwen(QwenConfig { layers: layers.min(config.layers), full_attention, ..config.clone() }, *grid)
            }
            Tower::Pixtral(config, side, used) => Tower::Pixtral(config.clone(), *side, layers.min(*used)),
            Tower::Mllama(config, tiles) => {
                // The global layers' share of the depth kept (8 of 40), at least one of each.
                let local = (layers * config.layers).div_ceil(config.layers + config.global_layers).max(1);
                let global = layers.saturating_sub(local).max(1);
                Tower::Mllama(mllama_depth(config, local, global), *tiles)
            }
        };
        Workload { tower, ..self.clone() }
    }

    /// The same workload with activations stored as `dtype`.
    pub fn with_activations(&self, dtype: DType) -> Workload {
        Workload { activations: dtype, ..self.clone() }
    }

    /// Its graph (input `pixel_values`) and the pixels to feed it.
    pub fn graph(&self, gpu: &Gpu) -> Result<(Graph, Vec<f32>)> {
        let mut rng = StdRng::seed_from_u64(0x70e5);
        let act = self.activations;
        let mut g = Graph::new();
        let (mut h, c, pixels) = match &self.tower {
            Tower::Vit(config, select) => {
                let used = match select {
                    TowerSelect::Hidden(i) => i.iter().copied().max().unwrap_or(0),
                    TowerSelect::PostNormed => config.layers,
                };
                let w = synthetic::checkpoint(&mut rng, &config.state_dict(used), &[], DType::BF16)?;
                let vit = VisionTower::from_weights(gpu, &w, *config, select.clone())?.with_activations(act);
                drop(w);
                let s = config.image_size;
                let pixels = g.input_as("pixel_values", &[1, 3, s, s], act)?;
                let mut h = vit.add_to(gpu, &mut g, pixels, &[0], None, None)?[0];
                if config.kind.class_token() && !matches!(self.connector, Connector::QFormer(_)) {
                    h = g.add(Concat::Channels { skip: 1, two: false }, &[h])?;
                }
                (h, config.hidden, normal(&mut rng, 3 * s * s, 1.0))
            }
            Tower::Qwen(config, grid) => {
                let w = synthetic::checkpoint(&mut rng, &config.state_dict(config.layers), &[], DType::BF16)?;
                let tower = QwenTower::from_weights(gpu, &w, config.clone())?.with_activations(act);
                drop(w);
                let layout = QwenLayout::new(config, &[*grid], grid.t * grid.h * grid.w)?;
                let k = config.row_width();
                let pixels = g.input_as("pixel_values", &[1, layout.rows, k], act)?;
                // N(0, 1) rows need no permuting: any order is as random.
                let units = tower.add_merge_units(gpu, &mut g, pixels, &layout)?;
                (units, config.hidden, normal(&mut rng, layout.rows * k, 1.0))
            }
            Tower::Pixtral(config, side, layers) => {
                let w = synthetic::checkpoint(&mut rng, &config.state_dict(*layers), &[], DType::BF16)?;
                let tower = PixtralTower::from_weights(gpu, &w, config.clone(), *layers)?.with_activations(act);
                drop(w);
                let image = normal(&mut rng, 3 * side * side, 1.0);
                let layout = PixtralLayout::new(config, &image, &[1, 3, *side, *side], &[(*side, *side)])?;
                let rows = g.input_as("pixel_values", &[1, layout.tokens(), config.row_width()], act)?;
                (tower.add_to(gpu, &mut g, rows, &layout)?, config.hidden, layout.rows)
            }
            Tower::Mllama(config, tiles) => {
                let Connector::Projector(text) = self.connector else {
                    unreachable!("Mllama's rows end in its projector")
                };
                let w = synthetic::checkpoint(&mut rng, &config.state_dict(text), &[], DType::BF16)?;
                let tower = MllamaTower::from_weights(gpu, &w.with_prefix("vision_model."), &w, config.clone())?;
                let tower = tower.with_activations(act);
                drop(w);
                let (t, s, tiles) = (config.max_tiles, config.image_size, *tiles);
                // The processor's padding tiles are zeros; the aspect ratio is the first with
                // `tiles` tiles (1 x 1: id 1, 2 x 2: id 6).
                let mut image = normal(&mut rng, t * 3 * s * s, 1.0);
                image[tiles * 3 * s * s..].fill(0.0);
                let ratio = config.aspect_ratios.iter().position(|(h, w)| h * w == tiles).unwrap_or(0) + 1;
                let mask: Vec<usize> = (0..t).map(|i| usize::from(i < tiles)).collect();
                let layout = MllamaLayout::new(config, &image, &[1, 1, t, 3, s, s], &[ratio], &mask)?;
                let rows = g.input_as("pixel_values", &[1, layout.tokens(config), config.row_width()], act)?;
                let table = Tensor::from_f32(
                    gpu,
                    &[1, layout.tokens(config), config.hidden],
                    &tower.token_embeddings(&layout),
                )?;
                let embeddings = g.constant("embeddings", &table);
                let embeddings = g.add(Convert { to: act }, &[embeddings])?;
                (tower.add_to(gpu, &mut g, (rows, embeddings), &layout)?, config.hidden, layout.rows)
            }
        };
        h = match self.connector {
            Connector::Llava(text) => {
                let layout = LlavaProjector::state_dict([c, text, text], true);
                let pw = synthetic::checkpoint(&mut rng, &layout, &[], DType::BF16)?;
                LlavaProjector::from_weights(gpu, &pw, GeluForm::Erf)?.with_activations(act).add_to(&mut g, h)?
            }
            Connector::QFormer(text) => {
                let q = QFormerConfig { encoder_hidden_size: c, ..QFormerConfig::default() };
                let mut layout = QFormer::state_dict(&q);
                layout.linear("language_projection", text, q.hidden_size, true);
                let qw = synthetic::checkpoint(&mut rng, &layout, &[], DType::BF16)?;
                let qformer = QFormer::from_weights(gpu, &qw, q)?.with_language_projection(gpu, &qw)?;
                qformer.with_activations(act).add_to(&mut g, h)?.0
            }
            Connector::Merger(kind, scale, text) => {
                let mut m = MergerConfig::new(kind, scale);
                let mut sizes = Vec::new();
                if let Tower::Pixtral(config, side, _) = &self.tower {
                    m.patch_size = config.patch;
                    sizes.push((*side, *side));
                }
                let bias = kind != MergerKind::Mistral3;
                let mw = synthetic::checkpoint(&mut rng, &m.state_dict(c, text, bias), &[], DType::BF16)?;
                let merger = Merger::from_weights(gpu, &mw, m)?.with_activations(act);
                merger.add_to_images(gpu, &mut g, h, &sizes)?[0]
            }
            Connector::Projector(_) => h,
        };
        g.output(h)?;
        Ok((g, pixels))
    }
}

/// The LLaVA-1.5 projector (1024 → 4096 → 4096, bf16 weights) over one image's 576 tokens:
/// the GEMM rate the towers are held to. Its graph and features.
pub fn projector(gpu: &Gpu) -> Result<(Graph, Vec<f32>)> {
    let mut rng = StdRng::seed_from_u64(0x9e33);
    let layout = LlavaProjector::state_dict([1024, 4096, 4096], true);
    let w = synthetic::checkpoint(&mut rng, &layout, &[], DType::BF16)?;
    let mut g = Graph::new();
    let x = g.input("image_features", &[576, 1024])?;
    let y = LlavaProjector::from_weights(gpu, &w, GeluForm::Erf)?.add_to(&mut g, x)?;
    g.output(y)?;
    Ok((g, normal(&mut rng, 576 * 1024, 1.0)))
}

/// The towers of the real-size table.
pub fn all() -> Vec<Workload> {
    let vit = |kind, hidden, intermediate, layers, image_size, act, eps| TowerConfig {
        kind,
        hidden,
        intermediate,
        layers,
        heads: 16,
        image_size,
        patch: 14,
        act,
        eps,
        norm: TowerNorm::Layer,
    };
    let clip = vit(TowerKind::Clip, 1024, 4096, 24, 336, GeluForm::Quick, 1e-5);
    let so400m = |size, layers| vit(TowerKind::Siglip, 1152, 4304, layers, size, GeluForm::Tanh, 1e-6);
    let w = |label, config, select, connector| Workload {
        label,
        tower: Tower::Vit(config, select),
        connector,
        activations: DType::F32,
    };
    let qwen25 = QwenConfig {
        kind: QwenKind::Qwen25Vl,
        hidden: 1280,
        intermediate: 3420,
        layers: 32,
        heads: 16,
        patch: 14,
        temporal: 2,
        channels: 3,
        merge: 2,
        theta: 1e4,
        act: GeluForm::Erf,
        window: Some(112),
        full_attention: vec![7, 15, 23, 31],
    };
    let qwen2 = QwenConfig {
        kind: QwenKind::Qwen2Vl,
        intermediate: 5120,
        act: GeluForm::Quick,
        window: None,
        full_attention: (0..32).collect(),
        ..qwen25.clone()
    };
    let grid = |side: usize| GridThw { t: 1, h: side / 14, w: side / 14 };
    let qwen = |label, config: &QwenConfig, side, kind| Workload {
        label,
        tower: Tower::Qwen(config.clone(), grid(side)),
        connector: Connector::Merger(kind, 2, 3584),
        activations: DType::F32,
    };
    let pixtral = PixtralConfig {
        hidden: 1024,
        intermediate: 4096,
        layers: 24,
        heads: 16,
        patch: 14,
        channels: 3,
        image_size: 1540,
        theta: 1e4,
        gate: None,
    };
    vec![
        w(
            "llava15_clip_l336 (CLIP-L/14-336, layer -2: 23 of 24 layers, + MLP 1024-4096-4096), bf16 weights",
            clip,
            TowerSelect::Hidden(vec![23]),
            Connector::Llava(4096),
        ),
        w(
            "llava_ov_siglip384_1crop (SigLIP-so400m/14-384 x26, layer -1, + MLP 1152-3584-3584), bf16 weights",
            so400m(384, 26),
            TowerSelect::Hidden(vec![26]),
            Connector::Llava(3584),
        ),
        w(
            "blip2_eva_g224 (EVA ViT-g/14-224 x39, post-LN, + Q-Former x12 + 768-2560), bf16 weights",
            vit(TowerKind::Blip2, 1408, 6144, 39, 224, GeluForm::Erf, 1e-6),
            TowerSelect::PostNormed,
            Connector::QFormer(2560),
        ),
        w(
            "internvl3_448 (InternViT-300M/14-448 x24 + shuffle 0.5 + MLP 4096-3584-3584), bf16 weights",
            vit(TowerKind::InternVit, 1024, 4096, 24, 448, GeluForm::Erf, 1e-6),
            TowerSelect::Hidden(vec![24]),
            Connector::Merger(MergerKind::InternVl, 2, 3584),
        ),
        w(
            "gemma3_siglip896 (SigLIP-so400m/14-896 x27, post-LN, + pool 4x4 + 1152-2560), bf16 weights",
            so400m(896, 27),
            TowerSelect::PostNormed,
            Connector::Merger(MergerKind::Gemma3, 4, 2560),
        ),
        qwen(
            "qwen25vl_448 (Qwen2.5-VL-7B ViT 1280 x32, windows 112 px, full 7/15/23/31, + merger 5120-3584), bf16 weights",
            &qwen25,
            448,
            MergerKind::Qwen25Vl,
        ),
        qwen(
            "qwen25vl_1344 (Qwen2.5-VL-7B ViT 1280 x32, windows 112 px, full 7/15/23/31, + merger 5120-3584), bf16 weights",
            &qwen25,
            1344,
            MergerKind::Qwen25Vl,
        ),
        qwen(
            "qwen2vl_448 (Qwen2-VL-7B ViT 1280 x32, full attention, + merger 5120-3584), bf16 weights",
            &qwen2,
            448,
            MergerKind::Qwen2Vl,
        ),
        Workload {
            label: "mistral31_pixtral_1036 (Pixtral 1024 x24 at 1036 px, + merge 2x2 + MLP 1024-5120-5120), bf16 weights",
            tower: Tower::Pixtral(pixtral, 1036, 24),
            connector: Connector::Merger(MergerKind::Mistral3, 2, 5120),
            activations: DType::F32,
        },
        mllama(
            "mllama_1tile_560 (Llama 3.2 11B Vision ViT-H/14-560 x32 + 8 global, 1 tile + 3 padding tiles, + 7680-4096), bf16 weights",
            1,
        ),
        mllama(
            "mllama_4tiles_560 (Llama 3.2 11B Vision ViT-H/14-560 x32 + 8 global, 2 x 2 tiles, + 7680-4096), bf16 weights",
            4,
        ),
    ]
}

/// Llama 3.2 11B Vision's tower over one image of `tiles` real tiles, and its projector.
fn mllama(label: &'static str, tiles: usize) -> Workload {
    let config = MllamaVisionConfig {
        hidden: 1280,
        intermediate: 5120,
        layers: 32,
        global_layers: 8,
        heads: 16,
        image_size: 560,
        patch: 14,
        channels: 3,
        max_tiles: 4,
        aspect_ratios: vec![(1, 1), (1, 2), (1, 3), (1, 4), (2, 1), (2, 2), (3, 1), (4, 1)],
        intermediate_indices: vec![3, 7, 15, 23, 30],
        eps: 1e-5,
        act: GeluForm::Erf,
    };
    Workload {
        label,
        tower: Tower::Mllama(config, tiles),
        connector: Connector::Projector(4096),
        activations: DType::F32,
    }
}

/// `config` with `local` and `global` layers: the intermediate layers read clamped into the
/// local ones, so the projector keeps its width.
fn mllama_depth(config: &MllamaVisionConfig, local: usize, global: usize) -> MllamaVisionConfig {
    let intermediate_indices = config.intermediate_indices.iter().map(|&i| i.min(local - 1)).collect();
    MllamaVisionConfig {
        layers: local.min(config.layers),
        global_layers: global.min(config.global_layers),
        intermediate_indices,
        ..config.clone()
    }
}
