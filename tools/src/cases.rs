//! Every row of `vlbridge bench`: each kernel family's real-size cases (from the registry) and
//! each connector at its real size, as planned graphs with inputs. Built lazily, so a filter
//! skips the expensive ones.

use rand::SeedableRng;
use rand::rngs::StdRng;
use vlbridge::connectors::{
    ConnectorPlan, GatedXAttnBlock, GatedXAttnConfig, LlavaProjector, PerceiverConfig, PerceiverResampler, QFormer,
    QFormerConfig,
};
use vlbridge::kernels::FAMILIES;
use vlbridge::ops::{Concat, GeluForm};
use vlbridge::towers::{TowerConfig, TowerKind, TowerNorm, TowerSelect, VisionTower};
use vlbridge::{DType, Gpu, Graph, HostData, HostVec, Plan, Result};

use crate::synthetic;
use crate::util::normal;

/// A planned graph and the data for its inputs.
pub struct Built {
    pub plan: Plan,
    pub inputs: Vec<HostVec>,
}

impl Built {
    /// The inputs as [`Plan::write_inputs`] takes them.
    pub fn data(&self) -> Vec<HostData<'_>> {
        self.inputs.iter().map(HostVec::as_data).collect()
    }
}

/// Builds a row on a device.
pub type Builder = Box<dyn Fn(&Gpu) -> Result<Built>>;

/// One bench row: `kernel/shape`, and how to build it on a device.
pub struct Row {
    pub kernel: &'static str,
    pub shape: String,
    pub build: Builder,
}

fn row(kernel: &'static str, shape: impl Into<String>, build: impl Fn(&Gpu) -> Result<Built> + 'static) -> Row {
    Row { kernel, shape: shape.into(), build: Box::new(build) }
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(0xbe7c4)
}

/// Every kernel family's bench cases, in registry order.
fn kernels() -> Vec<Row> {
    FAMILIES
        .iter()
        .flat_map(|family| {
            (family.bench)().into_iter().map(move |case| {
                row(family.name, case.shape, move |gpu| {
                    let case = (case.build)()?;
                    // A kernel's row times that kernel, also where the adapter would lower it
                    // into others.
                    let plan = Plan::unlowered(gpu, &Graph::from_case(gpu, &case)?)?;
                    let inputs = case.tensors.into_iter().filter(|t| !t.constant).map(|t| t.data).collect();
                    Ok(Built { plan, inputs })
                })
            })
        })
        .collect()
}

/// A single-input connector plan on N(0, 1) features.
fn features(plan: vlbridge::connectors::ConnectorPlan) -> Built {
    let n = plan.input_shape().iter().product();
    let inputs = vec![HostVec::F32(normal(&mut rng(), n, 1.0))];
    Built { plan: plan.into_plan(), inputs }
}

/// The LLaVA-1.5 projector with (weights, activations) stored as given.
fn llava_projector(weights: DType, activations: DType) -> Row {
    let label = match (weights, activations) {
        (DType::F32, DType::F32) => "576x1024-4096-4096".to_string(),
        _ => format!("576x1024-4096-4096, {weights} weights, {activations} activations"),
    };
    row("llava_projector", label, move |gpu| {
        let layout = LlavaProjector::state_dict([1024, 4096, 4096], true);
        let w = synthetic::checkpoint(&mut rng(), &layout, &[], weights)?;
        let p = LlavaProjector::from_weights(gpu, &w, GeluForm::Erf)?.with_activations(activations);
        Ok(features(p.plan(gpu, 1, 576)?))
    })
}

/// How a connector with fused sublayers is planned: as the adapter chooses
/// ([`vlbridge::kernels::rows::fuses_sublayers`]), or either way whatever the adapter.
#[derive(Clone, Copy)]
enum Sublayers {
    AdaptersChoice,
    Fused,
    Split,
}

impl Sublayers {
    /// The device to plan on, and whether to plan the unfused baseline.
    fn device(self, gpu: &Gpu) -> (Gpu, bool) {
        match self {
            Sublayers::AdaptersChoice => (gpu.clone(), false),
            Sublayers::Fused => (gpu.with_forced("sublayers", "fused"), false),
            Sublayers::Split => (gpu.clone(), true),
        }
    }
}

fn qformer(gpu: &Gpu, sublayers: Sublayers) -> Result<Built> {
    let config = QFormerConfig::default();
    let w = synthetic::checkpoint(&mut rng(), &QFormer::state_dict(&config), &[], DType::F32)?;
    let model = QFormer::from_weights(gpu, &w, config)?;
    let (gpu, unfused) = sublayers.device(gpu);
    let plan = if unfused {
        ConnectorPlan::new(&gpu, model.graph(1, 257)?.0.with_sublayers_split()?, model.output_names())?
    } else {
        model.plan(&gpu, 1, 257)?
    };
    Ok(features(plan))
}

fn perceiver(gpu: &Gpu, sublayers: Sublayers) -> Result<Built> {
    let config = PerceiverConfig::default();
    let layout = PerceiverResampler::state_dict(&config, "perceiver.");
    let w = synthetic::checkpoint(&mut rng(), &layout, &[], DType::F32)?;
    let model = PerceiverResampler::from_weights(gpu, &w, config)?;
    let (gpu, unfused) = sublayers.device(gpu);
    let plan = if unfused {
        ConnectorPlan::new(&gpu, model.graph(1, 257)?.0.with_sublayers_split()?, &["latents"])?
    } else {
        model.plan(&gpu, 1, 257)?
    };
    Ok(features(plan))
}

fn connectors() -> Vec<Row> {
    vec![
        llava_projector(DType::F32, DType::F32),
        llava_projector(DType::F16, DType::F16),
        llava_projector(DType::BF16, DType::F32),
        row("qformer", "32x768 over 257x1408, 12 layers", |gpu| qformer(gpu, Sublayers::AdaptersChoice)),
        row("qformer", "32x768 over 257x1408, 12 layers, fused sublayers", |gpu| qformer(gpu, Sublayers::Fused)),
        row("qformer", "32x768 over 257x1408, 12 layers, unfused", |gpu| qformer(gpu, Sublayers::Split)),
        row("perceiver", "64x1024 over 257, depth 6", |gpu| perceiver(gpu, Sublayers::AdaptersChoice)),
        row("perceiver", "64x1024 over 257, depth 6, fused sublayers", |gpu| perceiver(gpu, Sublayers::Fused)),
        row("perceiver", "64x1024 over 257, depth 6, unfused", |gpu| perceiver(gpu, Sublayers::Split)),
        row("gated_xattn", "64x4096 over 64x1024", |gpu| {
            let (prefix, config) = ("lang_encoder.gated_cross_attn_layers.0.", GatedXAttnConfig::default());
            let gates = [(format!("{prefix}attn_gate"), 0.3), (format!("{prefix}ff_gate"), -0.7)];
            let fixed: Vec<(&str, f32)> = gates.iter().map(|(n, v)| (n.as_str(), *v)).collect();
            let layout = GatedXAttnBlock::state_dict(&config, prefix);
            let w = synthetic::checkpoint(&mut rng(), &layout, &fixed, DType::F32)?;
            let block = GatedXAttnBlock::from_weights(gpu, &w, prefix, config)?;
            let plan = block.plan(gpu, 1, 64, 1, 64)?;
            let mut locations = vec![0u8; 64];
            locations[0] = 1;
            let mask = block.media_mask(&locations, 1, 64, 1, 64)?.data;
            let mut r = rng();
            let inputs =
                vec![HostVec::F32(normal(&mut r, 64 * 4096, 1.0)), HostVec::F32(normal(&mut r, 64 * 1024, 1.0)), mask];
            Ok(Built { plan: plan.into_plan(), inputs })
        }),
    ]
}

/// The families of current VLMs at their real sizes (f32), and their unfused compositions.
fn families() -> Vec<Row> {
    let mut rows = Vec::new();
    for family in crate::families::all() {
        let variants: &[bool] = if family.has_unfused { &[false, true] } else { &[false] };
        for &unfused in variants {
            let shape = if unfused { format!("{}, unfused", family.shape) } else { family.shape.to_string() };
            let build = family.build;
            rows.push(row(family.bench, shape, move |gpu| {
                let sized = build(gpu, DType::F32, DType::F32, unfused)?;
                Ok(Built { plan: sized.plan, inputs: sized.inputs })
            }));
        }
    }
    rows
}

/// A ViT at a checkpoint's size (bf16 weights, as they ship; f32 activations) on one image of
/// N(0, 1) pixels, with the LLaVA projector `[C, text, text]` after it when given.
fn tower(config: TowerConfig, select: TowerSelect, projector: Option<usize>) -> Result<impl Fn(&Gpu) -> Result<Built>> {
    Ok(move |gpu: &Gpu| {
        let used = match &select {
            TowerSelect::Hidden(i) => i.iter().copied().max().unwrap_or(0),
            TowerSelect::PostNormed => config.layers,
        };
        let w = synthetic::checkpoint(&mut rng(), &config.state_dict(used), &[], DType::BF16)?;
        let vit = VisionTower::from_weights(gpu, &w, config, select.clone())?;
        let mut g = Graph::new();
        let s = config.image_size;
        let pixels = g.input("pixel_values", &[1, 3, s, s])?;
        let mut h = vit.add_to(gpu, &mut g, pixels, &[0], None, None)?[0];
        if let Some(text) = projector {
            if config.kind.class_token() {
                h = g.add(Concat::Channels { skip: 1, two: false }, &[h])?;
            }
            let layout = LlavaProjector::state_dict([config.hidden, text, text], true);
            let pw = synthetic::checkpoint(&mut rng(), &layout, &[], DType::BF16)?;
            h = LlavaProjector::from_weights(gpu, &pw, GeluForm::Erf)?.add_to(&mut g, h)?;
        }
        g.output(h)?;
        let plan = Plan::new(gpu, &g)?;
        Ok(Built { plan, inputs: vec![HostVec::F32(normal(&mut rng(), 3 * s * s, 1.0))] })
    })
}

/// The vision towers at their checkpoints' sizes, one image each.
fn towers() -> Vec<Row> {
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
    let rows: Vec<(&str, TowerConfig, TowerSelect, Option<usize>)> = vec![
        ("clip_vit_l14_336 (layer -2) + llava-1.5 projector 4096", clip, TowerSelect::Hidden(vec![23]), Some(4096)),
        (
            "siglip_so400m_384 (layer -1) + onevision projector 3584",
            so400m(384),
            TowerSelect::Hidden(vec![27]),
            Some(3584),
        ),
        (
            "blip2_vit_g_224 (post-LN), tower only",
            vit(TowerKind::Blip2, 1408, 6144, 39, 224, GeluForm::Erf, 1e-6),
            TowerSelect::PostNormed,
            None,
        ),
        (
            "internvit_300m_448 (layer -1), tower only",
            vit(TowerKind::InternVit, 1024, 4096, 24, 448, GeluForm::Erf, 1e-6),
            TowerSelect::Hidden(vec![24]),
            None,
        ),
        ("gemma3_siglip_896 (post-LN), tower only", so400m(896), TowerSelect::PostNormed, None),
    ];
    rows.into_iter()
        .filter_map(|(shape, config, select, projector)| {
            Some(row("tower", shape, tower(config, select, projector).ok()?))
        })
        .collect()
}

/// Every row, kernels first.
pub fn all() -> Vec<Row> {
    let mut rows = kernels();
    rows.extend(connectors());
    rows.extend(families());
    rows.extend(towers());
    rows
}
