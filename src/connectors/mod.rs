//! Connectors: graphs of kernels plus weights by their upstream names.

mod blocks;
mod compress;
mod gated_xattn;
mod llava;
mod merger;
mod mllama;
mod perceiver;
mod qformer;
mod sublayers;

pub use compress::{AnyRes, Merged, PoolOrder, add_token_merge};
pub use gated_xattn::{GatedXAttnBlock, GatedXAttnConfig, GatedXAttnPlan};
pub use llava::LlavaProjector;
pub use merger::{Merger, MergerConfig, MergerKind};
pub use mllama::{MllamaConfig, MllamaCrossAttention, MllamaPlan, MllamaProjector, cross_attention_masks};
pub use perceiver::{PerceiverConfig, PerceiverResampler};
pub use qformer::{QFormer, QFormerConfig};

use crate::dtype::HostData;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::graph::{Graph, Plan, TensorId};

/// A connector's tensors as its upstream state dict names them, with their shapes, for a
/// given configuration: what a checkpoint of it holds (synthetic checkpoints are generated
/// from it; loaders check checkpoints against it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateDict {
    /// (name, shape), in upstream order.
    pub tensors: Vec<(String, Vec<usize>)>,
}

impl StateDict {
    /// Adds a tensor.
    pub fn tensor(&mut self, name: impl Into<String>, shape: &[usize]) {
        self.tensors.push((name.into(), shape.to_vec()));
    }

    /// Adds `nn.Linear(cols, rows)`: `{prefix}.weight` `[rows, cols]` and, with `bias`,
    /// `{prefix}.bias` `[rows]`.
    pub fn linear(&mut self, prefix: &str, rows: usize, cols: usize, bias: bool) {
        self.tensor(format!("{prefix}.weight"), &[rows, cols]);
        if bias {
            self.tensor(format!("{prefix}.bias"), &[rows]);
        }
    }

    /// Adds a norm over `dim`: `{prefix}.weight` and, with `bias`, `{prefix}.bias`.
    pub fn norm(&mut self, prefix: &str, dim: usize, bias: bool) {
        self.tensor(format!("{prefix}.weight"), &[dim]);
        if bias {
            self.tensor(format!("{prefix}.bias"), &[dim]);
        }
    }

    /// Every name under `prefix` (names of the other tensors stay).
    pub fn prefixed(self, prefix: &str) -> Self {
        Self { tensors: self.tensors.into_iter().map(|(n, s)| (format!("{prefix}{n}"), s)).collect() }
    }

    /// The number of parameters.
    pub fn parameters(&self) -> usize {
        self.tensors.iter().map(|(_, s)| s.iter().product::<usize>()).sum()
    }
}

/// A single-input connector planned for fixed input sizes: run it many times.
pub struct ConnectorPlan {
    plan: Plan,
    graph: Graph,
    input: TensorId,
    output: TensorId,
}

impl ConnectorPlan {
    /// Plans `graph`, whose only input is `input` and whose output is `output`.
    pub fn new(gpu: &Gpu, graph: Graph, input: TensorId, output: TensorId) -> Result<Self> {
        Ok(Self { plan: Plan::new(gpu, &graph)?, graph, input, output })
    }

    /// Runs on `features` (row-major, the input shape the plan was made for; rounded to f16
    /// where the connector stores activations as f16) and downloads the output as f32.
    pub fn project(&self, features: &[f32]) -> Result<Vec<f32>> {
        Ok(self.plan.run(&[HostData::F32(features)])?.remove(0).into_f32())
    }

    /// The f64 CPU reference of the same graph on `features`.
    pub fn reference(&self, features: &[f32]) -> Result<Vec<f64>> {
        Ok(self.graph.reference(&[HostData::F32(features)])?.remove(0))
    }

    /// The planned graph, for [`Plan::run_into`], [`Plan::encode`] and [`Plan::time`].
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The graph it was planned from.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The plan, owned.
    pub fn into_plan(self) -> Plan {
        self.plan
    }

    /// The plan and the graph it was planned from, owned.
    pub fn into_parts(self) -> (Plan, Graph) {
        (self.plan, self.graph)
    }

    /// The image-feature input.
    pub fn input(&self) -> TensorId {
        self.input
    }

    /// The connector's output.
    pub fn output(&self) -> TensorId {
        self.output
    }

    /// Shape of the input.
    pub fn input_shape(&self) -> &[usize] {
        self.graph.shape(self.input).unwrap_or_default()
    }

    /// Shape of the output, e.g. `[batch, tokens, text_dim]`.
    pub fn output_shape(&self) -> &[usize] {
        self.graph.shape(self.output).unwrap_or_default()
    }
}

fn finish(gpu: &Gpu, (graph, input, output): (Graph, TensorId, TensorId)) -> Result<ConnectorPlan> {
    ConnectorPlan::new(gpu, graph, input, output)
}

/// [`finish`] with every fused sublayer split into the dispatches it replaces.
fn finish_unfused(gpu: &Gpu, (graph, input, output): (Graph, TensorId, TensorId)) -> Result<ConnectorPlan> {
    ConnectorPlan::new(gpu, graph.with_sublayers_split()?, input, output)
}
