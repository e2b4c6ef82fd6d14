//! The `Kernel` impl of [`Naive`]: each of its three passes' operands, dispatches, costs and
//! f64 references (the specs are in the parent module).

use super::{Params, SCORES, SOFTMAX, WEIGHTED_SUM, WORKGROUP, io_bytes, mask_bytes, mask_of, operand, overrides};
use crate::error::Result;
use crate::kernels::{Cost, Dispatch, Kernel, KernelSpec, bytes};
use crate::ops::{Mask, Meta, Naive, Operand, Pass};
use crate::reference::{self, MaskInput};

impl Kernel for Naive {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn operand(&self, i: usize) -> Operand {
        operand(&self.attention, self.mask_input(), i)
    }

    fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        Naive::check(self, inputs)
    }

    fn variants(&self, _inputs: &[&Meta]) -> Vec<&'static KernelSpec> {
        vec![match self.pass {
            Pass::Scores => &SCORES,
            Pass::Softmax => &SOFTMAX,
            Pass::WeightedSum => &WEIGHTED_SUM,
        }]
    }

    fn overrides(&self, _spec: &KernelSpec, _inputs: &[&Meta]) -> Vec<(&'static str, f64)> {
        overrides(&self.attention)
    }

    fn read_slots(&self, _spec: &KernelSpec) -> Vec<Option<usize>> {
        let second = self.attention.two_sources.then_some(2);
        match self.pass {
            Pass::Scores => vec![Some(0), Some(1), second, self.mask_input(), self.attention.norm_input()],
            Pass::Softmax => vec![Some(0), None, None, self.mask_input(), None],
            Pass::WeightedSum => vec![Some(0), Some(1), second, None, None],
        }
    }

    fn dispatch(&self, _spec: &KernelSpec, inputs: &[&Meta]) -> Dispatch {
        let g = self.geometry(inputs);
        let invocations = match self.pass {
            Pass::Softmax => g.rows(),
            Pass::Scores => g.rows() * g.keys(),
            Pass::WeightedSum => g.rows() * g.head_dim,
        };
        Dispatch::new(&Params::from(&g), (invocations as u64).div_ceil(u64::from(WORKGROUP)))
    }

    fn cost(&self, inputs: &[&Meta]) -> Cost {
        let g = self.geometry(inputs);
        let a = inputs[0].dtype;
        let (rows, keys, d) = (g.rows() as f64, g.keys() as f64, g.head_dim as f64);
        let scores = bytes(a, g.rows() * g.keys());
        let half_io = io_bytes(&g, a, Mask::None) / 2.0;
        let mask = mask_bytes(&g, self.attention.mask);
        match self.pass {
            Pass::Scores => Cost { flops: 2.0 * rows * keys * d, bytes: half_io + scores + mask },
            Pass::Softmax => Cost { flops: 3.0 * rows * keys, bytes: 2.0 * scores + mask },
            Pass::WeightedSum => Cost { flops: 2.0 * rows * keys * d, bytes: scores + half_io },
        }
    }

    fn reference(&self, inputs: &[&[f64]], metas: &[&Meta]) -> Vec<f64> {
        let g = self.geometry(metas);
        let cfg = &self.attention;
        let mask = mask_of(cfg, self.mask_input(), inputs);
        let kv = || [inputs[1], if cfg.two_sources { inputs[2] } else { &[] }];
        match self.pass {
            Pass::Scores => reference::attention_scores(&g, inputs[0], kv(), mask, cfg.norm_input().map(|n| inputs[n])),
            Pass::Softmax => {
                let keep = mask.and_then(MaskInput::keep);
                reference::softmax_rows(inputs[0], g.keys(), g.queries, g.heads, keep, cfg.zeroes_masked_rows())
            }
            Pass::WeightedSum => reference::weighted_sum(&g, inputs[0], kv(), None),
        }
    }
}
