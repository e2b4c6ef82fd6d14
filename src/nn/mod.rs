//! The layers connectors and vision towers are built of: `nn.Linear` and the norms with their
//! weights on the GPU, loaded by upstream name, and the fused sublayers (attention with its
//! output projection, feed-forward blocks) as graph nodes.

mod blocks;
mod sublayers;

pub(crate) use blocks::*;
pub(crate) use sublayers::*;
