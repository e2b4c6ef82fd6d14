//! Connectors: graphs of kernels plus weights by their upstream names.

mod compress;
mod gated_xattn;
mod llava;
mod merger;
mod mllama;
mod perceiver;
mod plan;
mod qformer;

pub use compress::{AnyRes, Merged, PoolOrder, add_token_merge};
pub use gated_xattn::{GatedXAttnBlock, GatedXAttnConfig};
pub use llava::LlavaProjector;
pub use merger::{Merger, MergerConfig, MergerKind};
pub use mllama::{MllamaConfig, MllamaCrossAttention, MllamaProjector, cross_attention_masks};
pub use perceiver::{PerceiverConfig, PerceiverResampler};
pub use plan::ConnectorPlan;
pub use qformer::{QFormer, QFormerConfig};

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
