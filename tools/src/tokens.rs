//! The seed's comparison of connectors by how many visual tokens reach the LLM, measured: for
//! a 336 px image (24 × 24 = 576 patches of CLIP ViT-L/14-336, 577 tokens with the class
//! token) and a 672 × 672 LLaVA-NeXT AnyRes image (5 tiles, 2880 patches), each connector's
//! output tokens, compression, text tokens left in a 4096 context, GPU time and GFLOP.

use std::path::Path;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;
use vlbridge::connectors::{AnyRes, ConnectorPlan, LlavaProjector, PerceiverResampler, PoolOrder, QFormer};
use vlbridge::timing::Timer;
use vlbridge::{Error, Gpu, Result, Tensor};

use crate::util::{normal, time};

const CONTEXT: usize = 4096;
/// LLaVA-NeXT's `image_grid_pinpoints` at 336 px tiles, as (height, width).
const PINPOINTS: [(usize, usize); 5] = [(336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)];

/// The connectors the demo has already loaded.
pub struct Connectors<'a> {
    pub projector: &'a LlavaProjector,
    pub qformer: &'a QFormer,
    pub perceiver: &'a PerceiverResampler,
}

/// One row of the table.
pub struct Row {
    pub connector: String,
    pub image: &'static str,
    pub tokens_in: usize,
    /// Tokens that enter the LLM's context (cross-attention: its states do not).
    pub tokens_out: Option<usize>,
    pub gpu_ms: f64,
    pub gflop: f64,
}

/// Plans, runs `runs` times on random features of the plan's input size, returns the median.
fn measure(
    gpu: &Gpu,
    runs: usize,
    plan: impl FnOnce() -> Result<ConnectorPlan>,
    elements: usize,
) -> Result<(ConnectorPlan, f64)> {
    let x = normal(&mut StdRng::seed_from_u64(0x7013e5), elements, 1.0);
    let wall = Timer::wall_clock(gpu);
    let ((plan, _), _, median_ms) = time(
        runs,
        || {
            let p = plan()?;
            let y = p.project(&x)?;
            Ok((p, y))
        },
        |(p, _)| p.plan().time(&wall).map(|_| ()),
    )?;
    Ok((plan, median_ms))
}

fn row(connector: String, image: &'static str, tokens_in: usize, measured: (ConnectorPlan, f64)) -> Result<Row> {
    let (plan, gpu_ms) = measured;
    let [.., tokens_out, _] = plan.output_shape()[..] else {
        return Err(Error::Graph("connector output has rank < 2".into()));
    };
    Ok(Row { connector, image, tokens_in, tokens_out: Some(tokens_out), gpu_ms, gflop: plan.plan().cost().flops / 1e9 })
}

/// Measures the classic connectors and prints them with `families` (measured by the demo).
pub fn run(gpu: &Gpu, runs: usize, c: &Connectors, families: Vec<Row>, json_path: Option<&Path>) -> Result<()> {
    let [vision, _, _] = c.projector.dims();
    let [_, _, encoder, _] = c.qformer.dims();
    let [_, perceiver_dim, _] = c.perceiver.dims();
    let (patches, with_cls) = (576, 577);
    let mut rows = Vec::new();
    let image = "336x336";
    let p = c.projector;
    rows.push(row(
        "LLaVA MLP".into(),
        image,
        patches,
        measure(gpu, runs, || p.plan(gpu, 1, patches), patches * vision)?,
    )?);
    rows.push(row(
        "Q-Former (32 queries, 12 layers)".into(),
        image,
        with_cls,
        measure(gpu, runs, || c.qformer.plan(gpu, 1, with_cls), with_cls * encoder)?,
    )?);
    rows.push(row(
        "Perceiver (64 latents, depth 6)".into(),
        image,
        with_cls,
        measure(gpu, runs, || c.perceiver.plan(gpu, 1, with_cls), with_cls * perceiver_dim)?,
    )?);
    let pooled = measure(gpu, runs, || p.plan_pooled(gpu, 1, (24, 24), PoolOrder::PoolThenProject), patches * vision)?;
    rows.push(row("2x2 avg pool + MLP".into(), image, patches, pooled)?);
    for (label, r) in [("ToMe r=25% + MLP", patches / 4), ("ToMe r=50% + MLP", patches / 2)] {
        let merged = measure(gpu, runs, || p.plan_merged(gpu, 1, patches, r, false), patches * vision)?;
        rows.push(row(label.into(), image, patches, merged)?);
    }
    let [.., text] = p.dims();
    let newline = Tensor::from_f32(gpu, &[text], &normal(&mut StdRng::seed_from_u64(0x4e3), text, 1.0))?;
    let anyres = AnyRes::new(newline, 336, 14, &PINPOINTS)?;
    let layout = anyres.layout((672, 672))?;
    let tiles_in = layout.tiles() * layout.side * layout.side;
    let packed = measure(gpu, runs, || p.plan_anyres(gpu, &anyres, &layout), tiles_in * vision)?;
    rows.push(row("AnyRes 2x2 tiles + MLP".into(), "672x672", tiles_in, packed)?);
    rows.extend(families);

    println!();
    println!("visual tokens per connector ({CONTEXT}-token context; GPU time = median of {runs} runs):");
    println!(
        "{:<34} {:>8} {:>9} {:>10} {:>12} {:>10} {:>9} {:>8}",
        "connector", "image", "tokens in", "tokens out", "compression", "text left", "GPU ms", "GFLOP"
    );
    for r in &rows {
        let (out, compression, left) = match r.tokens_out {
            Some(t) => (t.to_string(), format!("{:.2}x", r.tokens_in as f64 / t as f64), CONTEXT as i64 - t as i64),
            None => ("x-attn".into(), "-".into(), CONTEXT as i64),
        };
        println!(
            "{:<34} {:>8} {:>9} {:>10} {:>12} {:>10} {:>9.1} {:>8.1}",
            r.connector, r.image, r.tokens_in, out, compression, left, r.gpu_ms, r.gflop
        );
    }
    if let Some(path) = json_path {
        let doc = json!({
            "adapter": gpu.describe(),
            "context": CONTEXT,
            "rows": rows.iter().map(|r| json!({
                "connector": r.connector,
                "image": r.image,
                "input_tokens": r.tokens_in,
                "output_tokens": r.tokens_out,
                "compression": r.tokens_out.map(|t| r.tokens_in as f64 / t as f64),
                "text_tokens_left": CONTEXT as i64 - r.tokens_out.unwrap_or(0) as i64,
                "gpu_ms": r.gpu_ms,
                "gflop": r.gflop,
            })).collect::<Vec<_>>(),
        });
        let text = serde_json::to_string_pretty(&doc).map_err(|e| crate::util::file_error(path, e))?;
        crate::util::write(path, &text)?;
    }
    Ok(())
}
