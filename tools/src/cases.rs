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
use vlbridge::ops::GeluForm;
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

/// The vision towers at their checkpoints' sizes, one image each.
fn towers() -> Vec<Row> {
    crate::towers::all()
        .into_iter()
        .map(|workload| {
            row("tower", workload.label, move |gpu| {
                let (g, pixels) = workload.graph(gpu)?;
                Ok(Built { plan: Plan::new(gpu, &g)?, inputs: vec![HostVec::F32(pixels)] })
            })
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
