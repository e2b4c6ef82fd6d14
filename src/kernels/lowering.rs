//! Plan-time rewrites a kernel contributes from its own unit ([`super::Kernel::lower`]): the
//! nodes that run an op on a given device when they are not the op itself. The graph applies
//! them in one step (`graph::lower`), knowing nothing of any kernel.

use super::Op;
use crate::gpu::Caps;
use crate::ops::Meta;

/// Where a rewritten node reads or writes: the original node's input `i`, one of the
/// rewrite's temporaries, or the original node's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The original node's input `i`.
    Input(usize),
    /// Temporary `i` of the rewrite.
    Temp(usize),
    /// The original node's output.
    Output,
}

/// One node of a rewrite.
#[derive(Debug, Clone)]
pub struct LoweredNode {
    /// What it runs.
    pub op: Op,
    /// What it reads.
    pub inputs: Vec<Slot>,
    /// What it writes.
    pub output: Slot,
}

/// The nodes that replace one node, in order, and the temporaries between them (a name suffix
/// and the meta of each).
#[derive(Debug, Clone, Default)]
pub struct Lowering {
    /// Intermediate tensors, as (name suffix, meta).
    pub temps: Vec<(&'static str, Meta)>,
    /// The replacing nodes.
    pub nodes: Vec<LoweredNode>,
}

impl Lowering {
    /// A temporary of `meta`, named `<output>.<suffix>`.
    pub fn temp(&mut self, suffix: &'static str, meta: Meta) -> Slot {
        self.temps.push((suffix, meta));
        Slot::Temp(self.temps.len() - 1)
    }

    /// Appends a node running `op` on `inputs` into `output`.
    pub fn node(&mut self, op: impl Into<Op>, inputs: Vec<Slot>, output: Slot) {
        self.nodes.push(LoweredNode { op: op.into(), inputs, output });
    }
}

/// How a device choice reads a forced two-way switch: `on`/`off` names as given, else the
/// heuristic's answer.
pub fn switch(caps: &Caps, name: &str, on: &str, off: &str, heuristic: bool) -> bool {
    match caps.forced(name) {
        Some(v) if v == on => true,
        Some(v) if v == off => false,
        _ => heuristic,
    }
}
