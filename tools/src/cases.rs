//! Every kernel and connector at its real size, as planned graphs with inputs: what `vlbridge
//! bench` times. Built lazily, so a filter skips the expensive ones.

use rand::SeedableRng;
use rand::rngs::StdRng;
use vlbridge::connectors::{
    AnyRes, GatedXAttnBlock, GatedXAttnConfig, LlavaProjector, PerceiverConfig, PerceiverResampler, QFormer,
    QFormerConfig, add_token_merge,
};
use vlbridge::kernels::Op;
use vlbridge::kernels::attention::{Attention, Pass};
use vlbridge::kernels::downsample::Downsample;
use vlbridge::kernels::gelu::GeluForm;
use vlbridge::kernels::gemm::Epilogue;
use vlbridge::kernels::tome::Tome;
use vlbridge::{DType, Gpu, Graph, Plan, Result, Tensor, TensorId};

use crate::demo::normal;
use crate::synthetic;

/// A planned graph and the data for its inputs.
pub struct Built {
    pub plan: Plan,
    pub inputs: Vec<Vec<f32>>,
}

/// Builds a case on a device.
pub type Builder = Box<dyn Fn(&Gpu) -> Result<Built>>;

/// One bench case: a name `kernel/shape`, and how to build it on a device.
pub struct Case {
    pub kernel: &'static str,
    pub shape: String,
    pub build: Builder,
}

fn case(kernel: &'static str, shape: impl Into<String>, build: impl Fn(&Gpu) -> Result<Built> + 'static) -> Case {
    Case { kernel, shape: shape.into(), build: Box::new(build) }
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(0xbe7c4)
}

/// A graph of inputs with random N(0, 1) data; `body` adds the nodes and returns the output.
fn graph(
    gpu: &Gpu,
    inputs: &[&[usize]],
    body: impl FnOnce(&mut Graph, &[TensorId]) -> Result<TensorId>,
) -> Result<Built> {
    graph_as(gpu, inputs, DType::F32, body)
}

/// [`graph`] with the inputs (and so the activations) stored as `storage`.
fn graph_as(
    gpu: &Gpu,
    inputs: &[&[usize]],
    storage: DType,
    body: impl FnOnce(&mut Graph, &[TensorId]) -> Result<TensorId>,
) -> Result<Built> {
    let mut g = Graph::new();
    let mut rng = rng();
    let ids = inputs
        .iter()
        .enumerate()
        .map(|(i, s)| g.input_as(&format!("in{i}"), s, storage))
        .collect::<Result<Vec<_>>>()?;
    let data = inputs.iter().map(|s| normal(&mut rng, s.iter().product(), 1.0)).collect();
    let out = body(&mut g, &ids)?;
    g.output(out)?;
    Ok(Built { plan: Plan::new(gpu, &g)?, inputs: data })
}

fn constant(gpu: &Gpu, g: &mut Graph, shape: &[usize]) -> Result<TensorId> {
    let n = shape.iter().product();
    let scale = 1.0 / (*shape.last().unwrap_or(&1) as f32).sqrt();
    Ok(g.constant("w", &Tensor::from_f32(gpu, shape, &normal(&mut rng(), n, scale))?))
}

fn linear(m: usize, k: usize, n: usize, weights: DType, activations: DType) -> Case {
    let label = match activations {
        DType::F32 => format!("{m}x{k}x{n} bias+gelu, {weights} weights"),
        _ => format!("{m}x{k}x{n} bias+gelu, {weights} weights, {activations} activations"),
    };
    case("linear", label, move |gpu| {
        graph_as(gpu, &[&[m, k]], activations, |g, x| {
            let values = normal(&mut rng(), n * k, 1.0 / (k as f32).sqrt());
            let w = Tensor::from_f32_as(gpu, &[n, k], &values, weights)?;
            let (w, b) = (g.constant("w", &w), constant(gpu, g, &[n])?);
            g.add(Op::Linear(Epilogue::bias_gelu(GeluForm::Erf)), &[x[0], w, b])
        })
    })
}

/// (label, queries, keys of source a, keys of source b, heads, head dim).
const ATTENTION_SIZES: [(&str, usize, usize, usize, u32, u32); 2] =
    [("qformer 32 over 257, 12x64", 32, 257, 0, 12, 64), ("perceiver 64 over 257+64, 16x64", 64, 257, 64, 16, 64)];

fn attention(naive: bool, storage: DType) -> impl Iterator<Item = Case> {
    ATTENTION_SIZES.into_iter().map(move |(label, q, ka, kb, heads, d)| {
        let kernel = if naive { "attention_naive" } else { "attention_flash" };
        let label = if storage == DType::F32 { label.to_string() } else { format!("{label}, {storage} activations") };
        case(kernel, label, move |gpu| {
            let w = (heads * d) as usize;
            let mut shapes: Vec<Vec<usize>> = vec![vec![1, q, w], vec![1, ka, 2 * w]];
            let mut cfg = Attention::new(heads, d);
            if kb > 0 {
                shapes.push(vec![1, kb, 2 * w]);
                cfg = cfg.two_sources();
            }
            let refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
            graph_as(gpu, &refs, storage, |g, x| {
                if !naive {
                    return g.add(Op::Attention(Pass::Flash, cfg), x);
                }
                let scores = g.add(Op::Attention(Pass::Scores, cfg), x)?;
                let weights = g.add(Op::Attention(Pass::Softmax, cfg), &[scores])?;
                g.add(Op::Attention(Pass::WeightedSum, cfg), &[&[weights], &x[1..]].concat())
            })
        })
    })
}

fn kernels() -> Vec<Case> {
    let mut cases = vec![
        linear(576, 1024, 4096, DType::F32, DType::F32),
        linear(576, 4096, 4096, DType::F32, DType::F32),
        linear(576, 1024, 4096, DType::F16, DType::F32),
        linear(576, 1024, 4096, DType::BF16, DType::F32),
        linear(576, 1024, 4096, DType::F16, DType::F16),
        linear(576, 4096, 4096, DType::F16, DType::F32),
        linear(576, 4096, 4096, DType::BF16, DType::F32),
        linear(576, 4096, 4096, DType::F16, DType::F16),
        case("gelu", "576x4096", |gpu| graph(gpu, &[&[576, 4096]], |g, x| g.add(Op::Gelu(GeluForm::Erf), x))),
        case("layer_norm", "577x1024", |gpu| {
            graph(gpu, &[&[577, 1024]], |g, x| {
                let (w, b) = (constant(gpu, g, &[1024])?, constant(gpu, g, &[1024])?);
                g.add(Op::LayerNorm { eps: 1e-5 }, &[x[0], w, b])
            })
        }),
        case("repeat", "64x1024 x 8", |gpu| graph(gpu, &[&[64, 1024]], |g, x| g.add(Op::Repeat { times: 8 }, x))),
    ];
    cases.extend(attention(false, DType::F32));
    cases.extend(attention(false, DType::F16));
    cases.extend(attention(true, DType::F32));
    for (kernel, op) in [
        ("avg_pool_2x2", Downsample::AvgPool2x2 { h: 24, w: 24, ceil_mode: false }),
        ("bilinear_half", Downsample::BilinearHalf { h: 24, w: 24 }),
    ] {
        cases.push(case(kernel, "24x24x1024", move |gpu| {
            graph(gpu, &[&[1, 576, 1024]], |g, x| g.add(Op::Downsample(op), x))
        }));
    }
    cases.push(case("tome", "577x1024 r=144 cls", |gpu| {
        graph(gpu, &[&[1, 577, 1024]], |g, x| {
            Ok(add_token_merge(gpu, g, x[0], None, Tome::new(577, 144, true)?)?.tokens)
        })
    }));
    cases.push(case("anyres_pack", "672x672, 5x576x4096", |gpu| {
        let newline = Tensor::from_f32(gpu, &[4096], &normal(&mut rng(), 4096, 1.0))?;
        let anyres = AnyRes::new(newline, 336, 14, &[(336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)])?;
        let layout = anyres.layout((672, 672))?;
        graph(gpu, &[&[5, 576, 4096]], |g, x| anyres.add(g, x[0], &layout))
    }));
    cases
}

/// The LLaVA-1.5 projector with (weights, activations) stored as given.
fn llava_projector(weights: DType, activations: DType) -> Case {
    let label = match (weights, activations) {
        (DType::F32, DType::F32) => "576x1024-4096-4096".to_string(),
        _ => format!("576x1024-4096-4096, {weights} weights, {activations} activations"),
    };
    case("llava_projector", label, move |gpu| {
        let w = synthetic::checkpoint(&mut rng(), &synthetic::llava(1024, 4096, 4096), &[], weights)?;
        let p = LlavaProjector::from_weights(gpu, &w, GeluForm::Erf)?.with_activations(activations);
        let plan = p.plan(gpu, 1, 576)?;
        Ok(Built { plan: plan.plan, inputs: vec![normal(&mut rng(), 576 * 1024, 1.0)] })
    })
}

fn connectors() -> Vec<Case> {
    vec![
        llava_projector(DType::F32, DType::F32),
        llava_projector(DType::F16, DType::F16),
        llava_projector(DType::BF16, DType::F32),
        case("qformer", "32x768 over 257x1408, 12 layers", |gpu| {
            let w =
                synthetic::checkpoint(&mut rng(), &synthetic::qformer(32, 768, 1408, 12, 3072, 2), &[], DType::F32)?;
            let plan = QFormer::from_weights(gpu, &w, QFormerConfig::default())?.plan(gpu, 1, 257)?;
            Ok(Built { plan: plan.plan, inputs: vec![normal(&mut rng(), 257 * 1408, 1.0)] })
        }),
        case("perceiver", "64x1024 over 257, depth 6", |gpu| {
            let w = synthetic::checkpoint(&mut rng(), &synthetic::perceiver(64, 1024, 6, 512, 4096), &[], DType::F32)?;
            let config = PerceiverConfig { heads: 8, ..PerceiverConfig::default() };
            let plan = PerceiverResampler::from_weights(gpu, &w, config)?.plan(gpu, 1, 257)?;
            Ok(Built { plan: plan.plan, inputs: vec![normal(&mut rng(), 257 * 1024, 1.0)] })
        }),
        case("gated_xattn", "64x4096 over 64x1024", |gpu| {
            let prefix = "lang_encoder.gated_cross_attn_layers.0.";
            let gates = [(format!("{prefix}attn_gate"), 0.3), (format!("{prefix}ff_gate"), -0.7)];
            let fixed: Vec<(&str, f32)> = gates.iter().map(|(n, v)| (n.as_str(), *v)).collect();
            let w = synthetic::checkpoint(
                &mut rng(),
                &synthetic::gated_xattn(prefix, 4096, 1024, 512, 16384),
                &fixed,
                DType::F32,
            )?;
            let block = GatedXAttnBlock::from_weights(gpu, &w, prefix, GatedXAttnConfig::default())?;
            let plan = block.plan(gpu, 1, 64, 1, 64)?;
            let mut locations = vec![0u8; 64];
            locations[0] = 1;
            let mask = plan.mask(&locations)?;
            let mut r = rng();
            Ok(Built {
                plan: plan.plan,
                inputs: vec![normal(&mut r, 64 * 4096, 1.0), normal(&mut r, 64 * 1024, 1.0), mask],
            })
        }),
    ]
}

/// Every case, kernels first.
pub fn all() -> Vec<Case> {
    let mut cases = kernels();
    cases.extend(connectors());
    cases
}
