//! The key-split attention's passes: their configuration, shape checks and chunk heuristic.

use super::{Attention, Geometry, check_rank};
use crate::error::{Error, Result};
use crate::ops::{Meta, batch_rows_cols, check_arity, check_u32_elements, expect_shape};

/// One pass of an attention whose keys are split across workgroups as well as within them
/// (flash-decoding): what an `attention_key_split` node runs. [`crate::Plan`] rewrites an
/// attention node into the two passes where few (batch, head, query block) triples meet many
/// keys on a GPU (`kernels::attention`'s lowering); graphs may also hold them directly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeySplit {
    /// The pass.
    pub pass: SplitPass,
    /// The attention it is a pass of.
    pub attention: Attention,
    /// Key chunks, one workgroup each per (batch, head, block of 8 queries): 1..=keys.
    pub chunks: u32,
}

/// The two passes of a [`KeySplit`] attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SplitPass {
    /// Each chunk's online-softmax state: f32 `[batch, heads, queries, chunks, head_dim + 3]`,
    /// a record being `[max logit, Σ exp(logit - max), any key kept (0 or 1),
    /// Σ exp(logit - max)·v]`. Inputs as the attention's.
    Partials,
    /// The log-sum-exp merge of the chunks, in chunk order: the attention's output. Inputs:
    /// the partials, then the attention's queries (read for their shape and dtype only).
    Combine,
}

impl KeySplit {
    /// Name in errors and reports.
    pub const NAME: &'static str = "attention_key_split";
    /// f32s in front of a record's values: max, sum, kept.
    pub const STATS: usize = 3;

    /// Keys per chunk for `keys` keys: the last chunk may hold fewer, or none.
    pub fn chunk_keys(&self, keys: usize) -> usize {
        keys.div_ceil(self.chunks.max(1) as usize).max(1)
    }

    /// f32s per record: the stats, then head_dim values.
    pub fn record(&self) -> usize {
        Self::STATS + self.attention.head_dim as usize
    }

    /// Checks the pass's inputs; returns its output.
    pub fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        let a = &self.attention;
        match self.pass {
            SplitPass::Partials => {
                a.check(inputs)?;
                let g = a.geometry(inputs);
                if self.chunks == 0 || self.chunks as usize > g.keys() {
                    return Err(Error::shape(Self::NAME, "key chunks", format!("1..={}", g.keys()), self.chunks));
                }
                let shape = vec![g.batch, g.heads, g.queries, self.chunks as usize, self.record()];
                check_u32_elements(Self::NAME, "partials", &shape)?;
                Ok(Meta { shape, dtype: crate::dtype::DType::F32 })
            }
            SplitPass::Combine => {
                a.check_config()?;
                check_arity(Self::NAME, inputs, 2)?;
                let queries = &inputs[1].shape;
                check_rank("queries", queries)?;
                let (batch, rows, _) = batch_rows_cols(queries);
                let want = [batch, a.heads as usize, rows, self.chunks as usize, self.record()];
                expect_shape(
                    Self::NAME,
                    "partials ([batch, heads, queries, chunks, head_dim + 3])",
                    &inputs[0].shape,
                    &want,
                )?;
                let mut shape = queries[..queries.len() - 1].to_vec();
                shape.push(a.width() as usize);
                check_u32_elements(Self::NAME, "output", &shape)?;
                Ok(Meta { shape, dtype: inputs[1].dtype })
            }
        }
    }

    /// Where everything lives for the partials pass's (checked) inputs.
    pub fn geometry(&self, inputs: &[&Meta]) -> Geometry {
        self.attention.geometry(inputs)
    }

    /// Chunks that fill a large GPU with an attention of `batch_heads` (batch items × heads)
    /// and `queries` queries over `keys` keys: enough workgroups for the (batch, head, block
    /// of 8 queries) triples to reach [`KeySplit::FILL_WORKGROUPS`], none shorter than
    /// [`KeySplit::MIN_CHUNK_KEYS`]; 1 (no split) where one workgroup per triple already fills
    /// it or the keys are few.
    pub fn chunks_for(batch_heads: usize, queries: usize, keys: usize) -> u32 {
        let groups = (batch_heads * queries.div_ceil(8)).max(1);
        let wanted = Self::FILL_WORKGROUPS.div_ceil(groups);
        wanted.min(keys / Self::MIN_CHUNK_KEYS).max(1) as u32
    }

    /// Workgroups that keep a large GPU busy: an H200 has 132 SMs, each holding several of
    /// these 64-invocation workgroups at once.
    pub const FILL_WORKGROUPS: usize = 512;
    /// Fewest keys per chunk worth a second pass: 32 per invocation of a workgroup's 8 slices.
    pub const MIN_CHUNK_KEYS: usize = 256;
}
