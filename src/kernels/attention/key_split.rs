//! The `Kernel` impl of [`KeySplit`]: its passes' operands, dispatches, costs and f64
//! references (the specs and the combine pass's `Params` are in the parent module).

use super::{COMBINE, CombineParams, PARTIALS, Params, WORKGROUP, io_bytes, mask_of, operand, overrides};
use crate::dtype::DType;
use crate::error::Result;
use crate::gpu::Caps;
use crate::kernels::{Cost, Dispatch, Kernel, KernelSpec, bytes, product};
use crate::ops::{Geometry, KeySplit, Mask, Meta, Operand, SplitPass};
use crate::reference;

/// The key chunks an attention over `g` runs in across workgroups on a device with `caps`
/// (1: one pass, no split). On GPUs [`KeySplit::chunks_for`]: a second pass where few (batch,
/// head, query block) triples meet many keys. Never on CPU rasterisers, whose few cores the
/// workgroups of one pass already fill, nor for segment bounds: their short segments give
/// every query few keys, and the chunks would mostly hold none of them. `VLBRIDGE_FORCE=key_split=off|on|N` decides instead:
/// `on` splits in at least 2 chunks, `N` in N (both at most one key each).
pub fn key_chunks(caps: &Caps, g: &Geometry, mask: Mask) -> u32 {
    let keys = g.keys().max(1);
    let at_most_keys = |n: u32| n.clamp(1, u32::try_from(keys).unwrap_or(u32::MAX));
    let natural = || KeySplit::chunks_for(g.batch * g.heads, g.queries, g.keys());
    match caps.forced("key_split") {
        Some("off") => 1,
        Some("on") => at_most_keys(natural().max(2)),
        Some(n) if let Ok(n) = n.parse() => at_most_keys(n),
        _ if caps.is_cpu() || matches!(mask, Mask::Segments { .. }) => 1,
        _ => natural(),
    }
}

impl Kernel for KeySplit {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    /// Partials: the attention's inputs. Combine: the f32 partials, then the queries, whose
    /// dtype is the output's.
    fn operand(&self, i: usize) -> Operand {
        match (self.pass, i) {
            (SplitPass::Partials, _) => operand(&self.attention, self.attention.mask_input(), i),
            (SplitPass::Combine, 0) => Operand::Param,
            (SplitPass::Combine, _) => Operand::ShapeOnly,
        }
    }

    fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        KeySplit::check(self, inputs)
    }

    fn variants(&self, _inputs: &[&Meta]) -> Vec<&'static KernelSpec> {
        vec![match self.pass {
            SplitPass::Partials => &PARTIALS,
            SplitPass::Combine => &COMBINE,
        }]
    }

    fn overrides(&self, _spec: &KernelSpec, _inputs: &[&Meta]) -> Vec<(&'static str, f64)> {
        match self.pass {
            SplitPass::Partials => overrides(&self.attention),
            SplitPass::Combine => vec![("MASKED_ROWS", if self.attention.zeroes_masked_rows() { 1.0 } else { 0.0 })],
        }
    }

    fn read_slots(&self, _spec: &KernelSpec) -> Vec<Option<usize>> {
        let a = &self.attention;
        match self.pass {
            SplitPass::Partials => vec![Some(0), Some(1), a.two_sources.then_some(2), a.mask_input(), a.norm_input()],
            SplitPass::Combine => vec![Some(0)],
        }
    }

    fn dispatch(&self, _spec: &KernelSpec, inputs: &[&Meta]) -> Dispatch {
        match self.pass {
            SplitPass::Partials => {
                let g = self.geometry(inputs);
                let params =
                    Params { chunks: self.chunks, chunk_keys: self.chunk_keys(g.keys()) as u32, ..Params::from(&g) };
                let blocks = g.queries.div_ceil(8);
                Dispatch::new(&params, (g.batch * g.heads * blocks * self.chunks as usize) as u64)
            }
            SplitPass::Combine => {
                let [batch, heads, queries, chunks, _] = combine_dims(inputs);
                let params = CombineParams {
                    batch: batch as u32,
                    queries: queries as u32,
                    heads: heads as u32,
                    head_dim: self.attention.head_dim,
                    chunks: chunks as u32,
                    _pad: [0; 3],
                };
                let outputs = batch * queries * self.attention.width() as usize;
                Dispatch::new(&params, (outputs as u64).div_ceil(u64::from(WORKGROUP)))
            }
        }
    }

    fn cost(&self, inputs: &[&Meta]) -> Cost {
        let partials = |m: &Meta| bytes(DType::F32, m.len());
        match self.pass {
            SplitPass::Partials => {
                let g = self.geometry(inputs);
                let a = inputs[0].dtype;
                let (rows, keys, d) = (g.rows(), g.keys(), g.head_dim);
                // The attention's reads; the partials instead of its output.
                let reads = io_bytes(&g, a, self.attention.mask) - bytes(a, rows * d);
                let written = bytes(DType::F32, rows * self.chunks as usize * self.record());
                Cost { flops: 4.0 * product(&[rows, keys, d]), bytes: reads + written }
            }
            SplitPass::Combine => {
                let [batch, heads, queries, chunks, _] = combine_dims(inputs);
                let outputs = batch * heads * queries * self.attention.head_dim as usize;
                let written = bytes(inputs[1].dtype, outputs);
                Cost { flops: 3.0 * product(&[outputs, chunks]), bytes: partials(inputs[0]) + written }
            }
        }
    }

    fn reference(&self, inputs: &[&[f64]], metas: &[&Meta]) -> Vec<f64> {
        let a = &self.attention;
        match self.pass {
            SplitPass::Partials => {
                let g = self.geometry(metas);
                let mask = mask_of(a, a.mask_input(), inputs);
                let kv = [inputs[1], if a.two_sources { inputs[2] } else { &[] }];
                let norms = a.norm_input().map(|n| inputs[n]);
                let chunking = [self.chunks as usize, self.chunk_keys(g.keys())];
                reference::attention_partials(&g, chunking, inputs[0], kv, mask, norms)
            }
            SplitPass::Combine => {
                let [batch, heads, queries, chunks, _] = combine_dims(metas);
                let dims = [batch, heads, queries, chunks, a.head_dim as usize];
                reference::attention_combine(inputs[0], dims, a.zeroes_masked_rows())
            }
        }
    }

    fn storage(&self, inputs: &[&Meta]) -> DType {
        let activations = match self.pass {
            SplitPass::Partials => inputs.first(),
            SplitPass::Combine => inputs.get(1),
        };
        activations.map_or(DType::F32, |m| m.dtype)
    }
}

/// `[batch, heads, queries, chunks, record]` of a (checked) combine pass's partials.
fn combine_dims(inputs: &[&Meta]) -> [usize; 5] {
    let s = &inputs[0].shape;
    [s[0], s[1], s[2], s[3], s[4]]
}
