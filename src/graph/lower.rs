//! The one lowering step between a graph as built and the graph a device runs: every node's
//! kernel may replace it with the nodes that run it there ([`crate::kernels::Kernel::lower`]:
//! fused sublayers split on CPU rasterisers, GEMM input norms split off, attention keys split
//! across workgroups on GPUs). The decisions live in the kernel units; this step only applies
//! them, checks the nodes they return, and lowers those again.

use super::{Graph, Node, Role, TensorId};
use crate::error::{Error, Result};
use crate::gpu::Caps;
use crate::kernels::{Op, Slot};
use crate::ops::Meta;

/// Rewrites deeper than this are a kernel lowering into itself.
const MAX_DEPTH: usize = 4;

/// `graph` as a device with `caps` runs it: pruned to what its outputs need, every node lowered.
pub(crate) fn lower(graph: &Graph, caps: &Caps) -> Result<Graph> {
    lower_where(&graph.pruned(), caps, &|_| true)
}

/// `graph` with the nodes `which` selects lowered for `caps` (and what they lower into, when
/// `which` selects it too); the others kept.
pub(crate) fn lower_where(graph: &Graph, caps: &Caps, which: &dyn Fn(&Op) -> bool) -> Result<Graph> {
    let mut g =
        Graph { tensors: graph.tensors.clone(), nodes: Vec::new(), outputs: graph.outputs.clone(), ..Graph::new() };
    for node in &graph.nodes {
        push(&mut g, node.clone(), caps, which, 0)?;
    }
    Ok(g)
}

fn push(g: &mut Graph, node: Node, caps: &Caps, which: &dyn Fn(&Op) -> bool, depth: usize) -> Result<()> {
    let metas: Vec<&Meta> = node.inputs.iter().map(|i| &g.tensors[i.0].meta).collect();
    let output = g.tensors[node.output.0].meta.clone();
    if depth > 0 && node.op.check(&metas)? != output {
        return Err(Error::Graph(format!("{} lowers to a node of another output", node.op.name())));
    }
    let lowering = if which(&node.op) { node.op.kernel().lower(caps, &metas, &output)? } else { None };
    let Some(lowering) = lowering else {
        g.nodes.push(node);
        return Ok(());
    };
    if depth == MAX_DEPTH {
        return Err(Error::Graph(format!("{} keeps lowering", node.op.name())));
    }
    let name = g.tensors[node.output.0].name.clone();
    let temps: Vec<TensorId> = lowering
        .temps
        .into_iter()
        .map(|(suffix, meta)| g.push(&format!("{name}.{suffix}"), meta, Role::Computed))
        .collect();
    let resolve = |slot: Slot| match slot {
        Slot::Input(i) => node.inputs[i],
        Slot::Temp(i) => temps[i],
        Slot::Output => node.output,
    };
    for lowered in lowering.nodes {
        let inputs = lowered.inputs.into_iter().map(resolve).collect();
        let lowered = Node { op: lowered.op, inputs, output: resolve(lowered.output), stage: node.stage.clone() };
        push(g, lowered, caps, which, depth + 1)?;
    }
    Ok(())
}
