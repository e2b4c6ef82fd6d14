//! The whole vision paths at their checkpoints' sizes for `vlbridge bench` and `vlbridge demo
//! --all`: random bf16 weights (as checkpoints ship) through the same loaders as a real
//! checkpoint, one image of N(0, 1) pixels, the tower then the family's connector. Row shapes
//! start with the keys of the PyTorch peer's `tower/*` rows, so the side-by-side join pairs them.

use rand::SeedableRng;
use rand::rngs::StdRng;
use vlbridge::connectors::{LlavaProjector, Merger, MergerConfig, MergerKind, QFormer, QFormerConfig};
use vlbridge::ops::{Concat, GeluForm};
use vlbridge::towers::{TowerConfig, TowerKind, TowerNorm, TowerSelect, VisionTower};
use vlbridge::{DType, Gpu, Graph, Result};

use crate::synthetic;
use crate::util::normal;

/// One tower workload.
#[derive(Clone)]
pub struct Workload {
    /// Row label.
    pub label: &'static str,
    /// The tower.
    pub config: TowerConfig,
    /// What its model reads of it.
    pub select: TowerSelect,
    /// What follows the tower.
    pub connector: Connector,
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
}

impl Workload {
    /// The same workload one layer deep (what the f64 reference checks at full width).
    pub fn one_layer(&self) -> Workload {
        let select = match self.select {
            TowerSelect::Hidden(_) => TowerSelect::Hidden(vec![1]),
            TowerSelect::PostNormed => TowerSelect::PostNormed,
        };
        Workload { config: TowerConfig { layers: 1, ..self.config }, select, ..self.clone() }
    }

    /// Its graph (input `pixel_values` `[1, 3, s, s]`) and the pixels to feed it.
    pub fn graph(&self, gpu: &Gpu) -> Result<(Graph, Vec<f32>)> {
        let mut rng = StdRng::seed_from_u64(0x70e5);
        let config = self.config;
        let used = match &self.select {
            TowerSelect::Hidden(i) => i.iter().copied().max().unwrap_or(0),
            TowerSelect::PostNormed => config.layers,
        };
        let w = synthetic::checkpoint(&mut rng, &config.state_dict(used), &[], DType::BF16)?;
        let vit = VisionTower::from_weights(gpu, &w, config, self.select.clone())?;
        drop(w);
        let mut g = Graph::new();
        let s = config.image_size;
        let pixels = g.input("pixel_values", &[1, 3, s, s])?;
        let mut h = vit.add_to(gpu, &mut g, pixels, &[0], None, None)?[0];
        let class = config.kind.class_token() && !matches!(self.connector, Connector::QFormer(_));
        if class {
            h = g.add(Concat::Channels { skip: 1, two: false }, &[h])?;
        }
        let c = config.hidden;
        h = match self.connector {
            Connector::Llava(text) => {
                let layout = LlavaProjector::state_dict([c, text, text], true);
                let pw = synthetic::checkpoint(&mut rng, &layout, &[], DType::BF16)?;
                LlavaProjector::from_weights(gpu, &pw, GeluForm::Erf)?.add_to(&mut g, h)?
            }
            Connector::QFormer(text) => {
                let q = QFormerConfig { encoder_hidden_size: c, ..QFormerConfig::default() };
                let mut layout = QFormer::state_dict(&q);
                layout.linear("language_projection", text, q.hidden_size, true);
                let qw = synthetic::checkpoint(&mut rng, &layout, &[], DType::BF16)?;
                QFormer::from_weights(gpu, &qw, q)?.with_language_projection(gpu, &qw)?.add_to(&mut g, h)?.0
            }
            Connector::Merger(kind, scale, text) => {
                let m = MergerConfig::new(kind, scale);
                let mw = synthetic::checkpoint(&mut rng, &m.state_dict(c, text, true), &[], DType::BF16)?;
                Merger::from_weights(gpu, &mw, m)?.add_to(gpu, &mut g, h)?[0]
            }
        };
        g.output(h)?;
        Ok((g, normal(&mut rng, 3 * s * s, 1.0)))
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
    let w = |label, config, select, connector| Workload { label, config, select, connector };
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
    ]
}
