//! The vision towers at their checkpoints' sizes for `vlbridge bench` and `vlbridge demo
//! --all`: random bf16 weights (as checkpoints ship) through the same loader as a real
//! checkpoint, one image of N(0, 1) pixels, the connector's projector after the tower where
//! the family's connector is the LLaVA MLP.

use rand::SeedableRng;
use rand::rngs::StdRng;
use vlbridge::connectors::LlavaProjector;
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
    /// The LLaVA projector's output width after the tower, if any.
    pub projector: Option<usize>,
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
        if let Some(text) = self.projector {
            if config.kind.class_token() {
                h = g.add(Concat::Channels { skip: 1, two: false }, &[h])?;
            }
            let layout = LlavaProjector::state_dict([config.hidden, text, text], true);
            let pw = synthetic::checkpoint(&mut rng, &layout, &[], DType::BF16)?;
            h = LlavaProjector::from_weights(gpu, &pw, GeluForm::Erf)?.add_to(&mut g, h)?;
        }
        g.output(h)?;
        Ok((g, normal(&mut rng, 3 * s * s, 1.0)))
    }
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
    let so400m = |size| vit(TowerKind::Siglip, 1152, 4304, 27, size, GeluForm::Tanh, 1e-6);
    let w = |label, config, select, projector| Workload { label, config, select, projector };
    vec![
        w("CLIP ViT-L/14-336 (layer -2) + LLaVA-1.5 MLP", clip, TowerSelect::Hidden(vec![23]), Some(4096)),
        w("SigLIP-so400m-384 (layer -1) + OneVision MLP", so400m(384), TowerSelect::Hidden(vec![27]), Some(3584)),
        w(
            "BLIP-2 ViT-g/14 (post-LN), tower only",
            vit(TowerKind::Blip2, 1408, 6144, 39, 224, GeluForm::Erf, 1e-6),
            TowerSelect::PostNormed,
            None,
        ),
        w(
            "InternViT-300M-448 (layer -1), tower only",
            vit(TowerKind::InternVit, 1024, 4096, 24, 448, GeluForm::Erf, 1e-6),
            TowerSelect::Hidden(vec![24]),
            None,
        ),
        w("Gemma 3 SigLIP-896 (post-LN), tower only", so400m(896), TowerSelect::PostNormed, None),
    ]
}
