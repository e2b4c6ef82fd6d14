//! ToMe token merging (facebookresearch/ToMe `bipartite_soft_matching`, `merge_wavg`,
//! `merge_source`) as a chain of passes with no host round trip between them.

use super::{Meta, Operand, check_arity, check_u32_elements, expect_shape};
use crate::dtype::DType;
use crate::error::{Error, Result};

/// Name in errors and reports.
pub const NAME: &str = "tome";

/// A ToMe merge of `tokens` tokens removing `r`, optionally protecting a class token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tome {
    /// Tokens before merging (N).
    pub tokens: usize,
    /// Tokens merged away.
    pub r: usize,
    /// Token 0 is a class token: never merged, kept first.
    pub class_token: bool,
}

impl Tome {
    /// Checks `r` against what bipartite matching can remove: half of the unprotected tokens.
    pub fn new(tokens: usize, r: usize, class_token: bool) -> Result<Self> {
        let protected = usize::from(class_token);
        if tokens <= protected {
            return Err(Error::shape(NAME, "tokens", format!(">= {}", protected + 1), tokens));
        }
        let max = (tokens - protected) / 2;
        if r > max {
            return Err(Error::shape(NAME, "r (at most half the unprotected tokens)", format!("<= {max}"), r));
        }
        Ok(Self { tokens, r, class_token })
    }

    /// A tokens (even indices).
    pub fn a_tokens(&self) -> usize {
        self.tokens.div_ceil(2)
    }

    /// B tokens (odd indices).
    pub fn b_tokens(&self) -> usize {
        self.tokens / 2
    }

    /// Tokens after merging.
    pub fn output_tokens(&self) -> usize {
        self.tokens - self.r
    }

    /// One pass of this merge.
    pub fn step(self, step: Step) -> TomeStep {
        TomeStep { tome: self, step }
    }
}

/// The passes of a ToMe merge, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// x `[B, N, C]` → unit rows `[B, N, C]` (f32), A then B.
    Normalize,
    /// unit rows → `[B, na]` (u32): each A token's most similar B token (first on ties).
    BestMatch,
    /// unit rows, best match → `[B, na]` (f32): its similarity (`-f32::MAX` for the class
    /// token).
    Score,
    /// scores → `[B, na]` (u32): position in a stable descending sort.
    Rank,
    /// best match, ranks → `[B, na]` (u32): output row of each A token.
    Place,
    /// x, sizes `[B, N, 1]` (f32), rows → merged `[B, N - r, C]`.
    MergeFeatures,
    /// sizes, rows → `[B, N - r, 1]` (f32).
    MergeSizes,
    /// x (shape only), rows → `[B, N]` (u32): output row of every token.
    Source,
}

/// One pass of a ToMe merge: what a graph node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TomeStep {
    /// The merge.
    pub tome: Tome,
    /// The pass.
    pub step: Step,
}

impl TomeStep {
    /// How the pass reads input `i`.
    pub fn operand(&self, i: usize) -> Operand {
        use Operand::{Activation, Index, Param, ShapeOnly};
        match (self.step, i) {
            (Step::Normalize | Step::MergeFeatures, 0) => Activation,
            (Step::Source, 0) => ShapeOnly,
            (Step::BestMatch | Step::Score | Step::Rank | Step::MergeSizes, 0) => Param,
            (Step::Score, 1) | (Step::Place, _) | (Step::MergeSizes, 1) | (Step::Source, 1) => Index,
            (Step::MergeFeatures, 1) => Param,
            _ => Index,
        }
    }

    /// The dtype the pass writes (merged features keep the activations').
    pub fn output_dtype(&self, storage: DType) -> DType {
        match self.step {
            Step::Normalize | Step::Score | Step::MergeSizes => DType::F32,
            Step::BestMatch | Step::Rank | Step::Place | Step::Source => DType::U32,
            Step::MergeFeatures => storage,
        }
    }

    fn arity(&self) -> usize {
        match self.step {
            Step::Normalize | Step::BestMatch | Step::Rank => 1,
            Step::Score | Step::Place | Step::MergeSizes | Step::Source => 2,
            Step::MergeFeatures => 3,
        }
    }

    /// Checks the pass's inputs; returns its output shape (dtype: see
    /// [`TomeStep::output_dtype`]).
    pub fn check(&self, inputs: &[&Meta]) -> Result<Vec<usize>> {
        check_arity(NAME, inputs, self.arity())?;
        let cfg = self.tome;
        Tome::new(cfg.tokens, cfg.r, cfg.class_token)?;
        let first = &inputs[0].shape;
        check_u32_elements(NAME, "input", first)?;
        let batch = first[0];
        let (n, na, rows) = (cfg.tokens, cfg.a_tokens(), cfg.output_tokens());
        let tokens_of = |s: &[usize]| -> Result<usize> {
            let [_, _, c] = s[..] else {
                return Err(Error::shape(NAME, "tokens rank ([batch, tokens, channels])", 3, s.len()));
            };
            expect_shape(NAME, "tokens", s, &[batch, n, c])?;
            Ok(c)
        };
        let per_a = [batch, na];
        let out = match self.step {
            Step::Normalize => {
                tokens_of(first)?;
                first.clone()
            }
            Step::BestMatch => {
                tokens_of(first)?;
                per_a.to_vec()
            }
            Step::Score => {
                tokens_of(first)?;
                expect_shape(NAME, "best matches", &inputs[1].shape, &per_a)?;
                per_a.to_vec()
            }
            Step::Rank => {
                expect_shape(NAME, "scores", first, &per_a)?;
                per_a.to_vec()
            }
            Step::Place => {
                expect_shape(NAME, "best matches", first, &per_a)?;
                expect_shape(NAME, "ranks", &inputs[1].shape, &per_a)?;
                per_a.to_vec()
            }
            Step::MergeFeatures => {
                let c = tokens_of(first)?;
                expect_shape(NAME, "sizes", &inputs[1].shape, &[batch, n, 1])?;
                expect_shape(NAME, "rows", &inputs[2].shape, &per_a)?;
                vec![batch, rows, c]
            }
            Step::MergeSizes => {
                expect_shape(NAME, "sizes", first, &[batch, n, 1])?;
                expect_shape(NAME, "rows", &inputs[1].shape, &per_a)?;
                vec![batch, rows, 1]
            }
            Step::Source => {
                tokens_of(first)?;
                expect_shape(NAME, "rows", &inputs[1].shape, &per_a)?;
                vec![batch, n]
            }
        };
        check_u32_elements(NAME, "output", &out)?;
        Ok(out)
    }
}
