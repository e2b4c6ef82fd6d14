//! Connectors: graphs of kernels plus weights by their upstream names.

mod blocks;
mod compress;
mod gated_xattn;
mod llava;
mod perceiver;
mod qformer;

pub use compress::{AnyRes, Merged, PoolOrder, add_token_merge};
pub use gated_xattn::{GatedXAttnBlock, GatedXAttnConfig, GatedXAttnPlan};
pub use llava::LlavaProjector;
pub use perceiver::{PerceiverConfig, PerceiverResampler};
pub use qformer::{QFormer, QFormerConfig};

use crate::error::Result;
use crate::gpu::Gpu;
use crate::graph::{Graph, Plan, TensorId};

/// A connector planned for fixed input sizes: run it many times.
pub struct ConnectorPlan {
    /// The planned graph: run it many times.
    pub plan: Plan,
    /// The graph it was planned from, for [`ConnectorPlan::reference`].
    pub graph: Graph,
    /// The image-feature input.
    pub input: TensorId,
    /// The connector's output.
    pub output: TensorId,
    /// Shape of the output, e.g. `[batch, tokens, text_dim]`.
    pub output_shape: Vec<usize>,
}

/// The LLaVA projector's plan (the same type as every single-input connector's).
pub type ProjectorPlan = ConnectorPlan;

impl ConnectorPlan {
    /// Runs on `features` (row-major, the input shape the plan was made for) and downloads
    /// the output.
    pub fn project(&self, gpu: &Gpu, features: &[f32]) -> Result<Vec<f32>> {
        self.plan.run(gpu, &[features])?;
        self.plan.read(gpu, self.output)
    }

    /// The f64 CPU reference of the same graph on `features`.
    pub fn reference(&self, gpu: &Gpu, features: &[f32]) -> Result<Vec<f64>> {
        Ok(self.graph.reference(gpu, &[features])?.remove(0))
    }
}

fn finish(gpu: &Gpu, (graph, input, output): (Graph, TensorId, TensorId)) -> Result<ConnectorPlan> {
    let output_shape = graph.shape(output).map(<[usize]>::to_vec).unwrap_or_default();
    Ok(ConnectorPlan { plan: Plan::new(gpu, &graph)?, graph, input, output, output_shape })
}
