//! The connector families of current VLMs at their real sizes, on random checkpoints of their
//! upstream state dicts: what `vlbridge demo` times and checks, what the visual-token table
//! lists and what `vlbridge bench` measures (fused and, where vlbridge fuses, the unfused
//! composition beside it).

use rand::SeedableRng;
use rand::rngs::StdRng;
use vlbridge::connectors::{
    ConnectorPlan, Merger, MergerConfig, MergerKind, MllamaConfig, MllamaCrossAttention, QFormer, QFormerConfig,
    cross_attention_masks,
};
use vlbridge::{DType, Gpu, Graph, HostData, HostVec, Plan, Result};

use crate::synthetic;
use crate::util::normal;

/// A family planned at its real size, with its inputs.
pub struct Sized {
    pub plan: Plan,
    pub graph: Graph,
    pub inputs: Vec<HostVec>,
    /// Visual tokens in and out.
    pub tokens: (usize, usize),
}

impl Sized {
    /// The inputs as the plan takes them.
    pub fn data(&self) -> Vec<HostData<'_>> {
        self.inputs.iter().map(HostVec::as_data).collect()
    }
}

/// How to build one family: (gpu, weight dtype, activation dtype, unfused baseline).
pub type Build = fn(&Gpu, DType, DType, bool) -> Result<Sized>;

/// One family at its real size.
pub struct Workload {
    /// Row label in the demo and the token table.
    pub label: &'static str,
    /// `kernel` column of the bench.
    pub bench: &'static str,
    /// `shape` column of the bench.
    pub shape: &'static str,
    /// The image the token counts are for.
    pub image: &'static str,
    /// Its visual tokens enter the LLM's context (not: cross-attention).
    pub in_context: bool,
    /// Whether `build(.., true)` differs from the fused plan.
    pub has_unfused: bool,
    pub build: Build,
}

/// Every family, in the README's order.
pub fn all() -> Vec<Workload> {
    let f = |label, bench, shape, image, build| Workload {
        label,
        bench,
        shape,
        image,
        in_context: true,
        has_unfused: false,
        build,
    };
    vec![
        Workload {
            has_unfused: true,
            ..f("Qwen2-VL merger", "qwen2_vl_merger", "1024x1280 -> 256x3584", "448x448", qwen2_vl)
        },
        f("Qwen2.5-VL merger", "qwen2_5_vl_merger", "1024x1280 -> 256x3584", "448x448", qwen2_5_vl),
        f("InternVL projector", "internvl_projector", "32x32x1024 -> 256x3584", "448x448", internvl),
        f("SmolVLM2 connector (scale 3)", "idefics3_connector", "27x27x1152 -> 81x2048", "384x384", smolvlm),
        f("Gemma 3 projector", "gemma3_projector", "64x64x1152 -> 256x2560", "896x896", gemma3),
        f(
            "Mistral 3 projector, 2 images",
            "mistral3_projector",
            "32x32 + 24x48 x1024 -> 544x5120",
            "2 images",
            mistral3,
        ),
        f("BLIP-2 Q-Former + projection", "blip2_connector", "32x768 over 257x1408 -> 2560", "224x224", blip2),
        Workload {
            in_context: false,
            has_unfused: true,
            ..f("Mllama cross-attn layer", "mllama_xattn_layer", "64x4096 over 4x1601, 32/8 heads", "4 tiles", mllama)
        },
    ]
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(0xfa111e5)
}

/// A merger of `kind` from `vision` to `text` channels on an input of `shape` (Mistral 3:
/// image sizes in pixels).
fn merger(
    gpu: &Gpu,
    config: MergerConfig,
    dims: [usize; 2],
    shape: &[usize],
    sizes: &[(usize, usize)],
    d: (DType, DType, bool),
) -> Result<Sized> {
    let (weights, activations, unfused) = d;
    let mut rng = rng();
    let layout = config.state_dict(dims[0], dims[1], false);
    let checkpoint = synthetic::checkpoint(&mut rng, &layout, &[], weights)?;
    let merger = Merger::from_weights(gpu, &checkpoint, config)?.with_activations(activations);
    let plan = if unfused {
        ConnectorPlan::new(gpu, merger.baseline_graph(gpu, shape, sizes)?, config.kind.output_names())?
    } else {
        merger.plan(gpu, shape, sizes)?
    };
    let tokens = (
        shape[..shape.len() - 1].iter().product(),
        plan.output_shape()[..plan.output_shape().len() - 1].iter().product(),
    );
    let x = normal(&mut rng, shape.iter().product(), 1.0);
    let (plan, graph) = plan.into_parts();
    Ok(Sized { plan, graph, inputs: vec![HostVec::F32(x)], tokens })
}

fn qwen2_vl(gpu: &Gpu, w: DType, a: DType, unfused: bool) -> Result<Sized> {
    merger(gpu, MergerConfig::new(MergerKind::Qwen2Vl, 2), [1280, 3584], &[1024, 1280], &[], (w, a, unfused))
}

fn qwen2_5_vl(gpu: &Gpu, w: DType, a: DType, unfused: bool) -> Result<Sized> {
    merger(gpu, MergerConfig::new(MergerKind::Qwen25Vl, 2), [1280, 3584], &[1024, 1280], &[], (w, a, unfused))
}

fn internvl(gpu: &Gpu, w: DType, a: DType, unfused: bool) -> Result<Sized> {
    merger(gpu, MergerConfig::new(MergerKind::InternVl, 2), [1024, 3584], &[1, 1024, 1024], &[], (w, a, unfused))
}

fn smolvlm(gpu: &Gpu, w: DType, a: DType, unfused: bool) -> Result<Sized> {
    merger(gpu, MergerConfig::new(MergerKind::Idefics3, 3), [1152, 2048], &[1, 729, 1152], &[], (w, a, unfused))
}

fn gemma3(gpu: &Gpu, w: DType, a: DType, unfused: bool) -> Result<Sized> {
    merger(gpu, MergerConfig::new(MergerKind::Gemma3, 4), [1152, 2560], &[1, 4096, 1152], &[], (w, a, unfused))
}

/// Mistral-Small-3.1: Pixtral (1024, patch 14) into 5120, two images of different shapes.
fn mistral3(gpu: &Gpu, w: DType, a: DType, unfused: bool) -> Result<Sized> {
    let config = MergerConfig { patch_size: 14, ..MergerConfig::new(MergerKind::Mistral3, 2) };
    let sizes = [(448, 448), (336, 672)];
    merger(gpu, config, [1024, 5120], &[32 * 32 + 24 * 48, 1024], &sizes, (w, a, unfused))
}

/// BLIP-2 (ViT-g/14, OPT-2.7b): the Q-Former's 32 queries of 768 over 257 tokens of 1408, then
/// `language_projection` to 2560.
fn blip2(gpu: &Gpu, w: DType, a: DType, _unfused: bool) -> Result<Sized> {
    let mut rng = rng();
    let config = QFormerConfig::default();
    let mut layout = QFormer::state_dict(&config);
    layout.linear("language_projection", 2560, config.hidden_size, true);
    let checkpoint = synthetic::checkpoint(&mut rng, &layout, &[], w)?;
    let model = QFormer::from_weights(gpu, &checkpoint, config)?.with_language_projection(gpu, &checkpoint)?;
    let plan = model.with_activations(a).plan(gpu, 1, 257)?;
    let x = normal(&mut rng, 257 * config.encoder_hidden_size, 1.0);
    let (plan, graph) = plan.into_parts();
    Ok(Sized { plan, graph, inputs: vec![HostVec::F32(x)], tokens: (257, config.num_query_tokens) })
}

/// Llama-3.2-11B-Vision's first cross-attention layer: 64 text tokens over one image of 4 tiles
/// of 1601 tokens (the last tile padding, masked), the first 8 text tokens before the image.
fn mllama(gpu: &Gpu, w: DType, a: DType, unfused: bool) -> Result<Sized> {
    let mut rng = rng();
    let (config, prefix) = (MllamaConfig::default(), "language_model.model.layers.3.");
    let gates = [(format!("{prefix}cross_attn_attn_gate"), 0.3), (format!("{prefix}cross_attn_mlp_gate"), -0.7)];
    let fixed: Vec<(&str, f32)> = gates.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    let checkpoint = synthetic::checkpoint(&mut rng, &config.state_dict(prefix), &fixed, w)?;
    let layer = MllamaCrossAttention::from_weights(gpu, &checkpoint, prefix, config)?.with_activations(a);
    let (text, tiles, per_tile) = (64, 4, 1601);
    let vision = tiles * per_tile;
    let plan = if unfused {
        ConnectorPlan::new(gpu, layer.baseline_graph(1, text, vision)?, &["hidden_states"])?
    } else {
        layer.plan(gpu, 1, text, vision)?
    };
    let int_mask: Vec<i64> = (0..text * tiles).map(|i| i64::from(i / tiles >= 8 && i % tiles < 3)).collect();
    let (mask, rows) = cross_attention_masks(&int_mask, [1, text, 1, tiles], per_tile);
    let h = config.hidden_size;
    let inputs = vec![
        HostVec::F32(normal(&mut rng, text * h, 1.0)),
        HostVec::F32(normal(&mut rng, vision * h, 1.0)),
        HostVec::F32(mask),
        HostVec::F32(rows),
    ];
    let (plan, graph) = plan.into_parts();
    Ok(Sized { plan, graph, inputs, tokens: (vision, text) })
}
