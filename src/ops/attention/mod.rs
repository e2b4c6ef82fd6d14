//! Multi-head attention: where queries, keys and values live in their rows, masking, and which
//! pass of the naive three-pass version a node runs.

use super::{Meta, batch_rows_cols, check_arity, check_u32_elements, expect_shape};
use crate::error::{Error, Result};

mod geometry;
mod key_split;
mod mask;
pub use geometry::Geometry;
pub use key_split::{KeySplit, SplitPass};
pub use mask::{Mask, MaskedRows, segment_bounds};

/// Name in errors and reports.
pub const NAME: &str = "attention_flash";
/// Largest head dimension the kernels hold in registers.
pub const MAX_HEAD_DIM: u32 = 128;

/// One pass of the naive three-pass attention that materialises the scores (the measured
/// baseline of the flash kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pass {
    /// Pass 1: scores `[B, H, Nq, Nk]`. Inputs as flash: q, kv_a, then kv_b and the mask when
    /// configured.
    Scores,
    /// Pass 2: row softmax. Inputs: scores, then the mask when configured.
    Softmax,
    /// Pass 3: weights · V. Inputs: weights, kv_a, then kv_b when configured.
    WeightedSum,
}

/// One naive pass of an attention: what an `attention_naive` node runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Naive {
    /// The pass.
    pub pass: Pass,
    /// The attention it is a pass of.
    pub attention: Attention,
}

/// Configuration of an attention node. Inputs: queries `[.., Nq, Wq]`, the first key/value
/// source `[.., Na, Wa]`, the second `[.., Nb, Wb]` when `two_sources`, the mask
/// `[.., Nq, Na + Nb]` when there is one, and the q/k norm weights `[2, head_dim]` when
/// `qk_norm`. Leading dims are the batch and must agree. Output: `[.., Nq, heads·head_dim]`.
///
/// With `kv_heads < heads` the keys and values have `kv_heads` heads and query head `h` reads
/// key/value head `h / (heads / kv_heads)` (grouped-query attention, `repeat_kv`). With
/// `qk_norm`, each head of q and of k is RMS-normalised (eps `norm_eps`) and scaled by row 0
/// (q) or row 1 (k) of the norm weights before the dot product, as Mllama's q_norm/k_norm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attention {
    /// Attention heads.
    pub heads: u32,
    /// Dimension per head (1..=128).
    pub head_dim: u32,
    /// Column of head 0's query in a query row.
    pub q_offset: u32,
    /// Column of head 0's key in a key/value row.
    pub k_offset: u32,
    /// Column of head 0's value in a key/value row.
    pub v_offset: u32,
    /// Heads of the keys and values (divides `heads`).
    pub kv_heads: u32,
    /// Keys/values come from two tensors (the Perceiver's media and latents).
    pub two_sources: bool,
    /// `(k_offset, v_offset)` in the second source's rows, when they differ from the first's.
    pub second_offsets: Option<(u32, u32)>,
    /// The mask input.
    pub mask: Mask,
    /// Per-head RMSNorm of q and k with this eps (norm weights are the last input).
    pub qk_norm: Option<f32>,
    /// Multiplies the queries; `head_dim^-0.5` by default.
    pub scale: f32,
}

impl Attention {
    /// `heads × head_dim` attention over key/value rows laid out `[K; V]` (an `nn.Linear`
    /// producing both, as open_flamingo's `to_kv`), no mask.
    pub fn new(heads: u32, head_dim: u32) -> Self {
        Self {
            heads,
            head_dim,
            q_offset: 0,
            k_offset: 0,
            v_offset: heads * head_dim,
            kv_heads: heads,
            two_sources: false,
            second_offsets: None,
            mask: Mask::None,
            qk_norm: None,
            scale: 1.0 / (head_dim as f32).sqrt(),
        }
    }

    /// Keys and values have `kv_heads` heads, each serving `heads / kv_heads` query heads.
    pub fn grouped(self, kv_heads: u32) -> Self {
        Self { kv_heads, ..self }
    }

    /// Adds an f32 mask to the logits (its input follows the key/value sources).
    pub fn additive_mask(self) -> Self {
        Self { mask: Mask::Additive, ..self }
    }

    /// RMS-normalises each head of q and k (weights `[2, head_dim]`, the last input).
    pub fn qk_norm(self, eps: f32) -> Self {
        Self { qk_norm: Some(eps), ..self }
    }

    /// Queries at column `q`, keys at `k` and values at `v` of their rows (fused projections).
    pub fn offsets(self, q: u32, k: u32, v: u32) -> Self {
        Self { q_offset: q, k_offset: k, v_offset: v, ..self }
    }

    /// Keys and values continue in a second tensor (read in place, not concatenated).
    pub fn two_sources(self) -> Self {
        Self { two_sources: true, ..self }
    }

    /// A second source whose rows hold head 0's key at column `k` and value at `v` (the
    /// Perceiver's latents in a fused `[q | k | v]` row beside the media's `[.. k | v ..]`).
    pub fn second_source_offsets(self, k: u32, v: u32) -> Self {
        Self { two_sources: true, second_offsets: Some((k, v)), ..self }
    }

    /// `(k_offset, v_offset)` of source `i`.
    fn source_offsets(&self, i: usize) -> (u32, u32) {
        match (i, self.second_offsets) {
            (1, Some(kv)) => kv,
            _ => (self.k_offset, self.v_offset),
        }
    }

    /// Takes a key-padding mask `[.., keys]` (its input follows the key/value sources).
    pub fn key_mask(self) -> Self {
        Self { mask: Mask::Keys, ..self }
    }

    /// Takes a per-token padding mask `[.., tokens]` for self-attention (its input follows the
    /// key/value sources): only padding-to-padding pairs are dropped (see [`Mask::PadPairs`]).
    pub fn pad_pairs(self) -> Self {
        Self { mask: Mask::PadPairs, ..self }
    }

    /// Takes segment bounds `[.., Nq, 2]` (u32, after the key/value sources): block-diagonal
    /// attention within each query's segment, the segments being `lengths` tokens long (see
    /// [`Mask::Segments`], [`segment_bounds`]).
    pub fn segments(self, lengths: &[usize]) -> Self {
        let tokens: usize = lengths.iter().sum();
        let squares: usize = lengths.iter().map(|n| n * n).sum();
        let mean_keys = squares.div_ceil(tokens.max(1)) as u32;
        Self { mask: Mask::Segments { mean_keys }, ..self }
    }

    /// Takes a keep mask input; fully masked rows behave as `rows` says.
    pub fn masked(self, rows: MaskedRows) -> Self {
        Self { mask: Mask::Keep(rows), ..self }
    }

    /// Rows of the mask per batch item: one per query, or one for all with a key mask.
    fn mask_rows(&self, queries: usize) -> usize {
        if matches!(self.mask, Mask::Keys | Mask::PadPairs) { 1 } else { queries }
    }

    /// Whether there is a mask input.
    pub fn has_mask(&self) -> bool {
        self.mask != Mask::None
    }

    /// Whether fully masked rows are zeroed.
    pub fn zeroes_masked_rows(&self) -> bool {
        self.mask == Mask::Keep(MaskedRows::Zero)
    }

    /// One pass of the naive version of this attention.
    pub fn naive(self, pass: Pass) -> Naive {
        Naive { pass, attention: self }
    }

    /// One pass of this attention with its keys split into `chunks` chunks across workgroups.
    pub fn key_split(self, chunks: u32, pass: SplitPass) -> KeySplit {
        KeySplit { pass, attention: self, chunks }
    }

    /// `heads · head_dim`.
    pub fn width(&self) -> u64 {
        u64::from(self.heads) * u64::from(self.head_dim)
    }

    /// `kv_heads · head_dim`: what a key/value row holds of keys (and of values).
    pub fn kv_width(&self) -> u64 {
        u64::from(self.kv_heads) * u64::from(self.head_dim)
    }

    /// Key/value source tensors: 1 or 2.
    pub fn kv_inputs(&self) -> usize {
        1 + usize::from(self.two_sources)
    }

    /// Number of inputs: queries, key/value sources, then the mask and the norm weights when
    /// configured.
    pub fn arity(&self) -> usize {
        1 + self.kv_inputs() + usize::from(self.has_mask()) + usize::from(self.qk_norm.is_some())
    }

    /// The input index of the mask, when configured.
    pub fn mask_input(&self) -> Option<usize> {
        self.has_mask().then(|| 1 + self.kv_inputs())
    }

    /// The input index of the q/k norm weights, when configured.
    pub fn norm_input(&self) -> Option<usize> {
        self.qk_norm.map(|_| 1 + self.kv_inputs() + usize::from(self.has_mask()))
    }

    /// Checks queries, key/value sources and mask; returns `[.., Nq, heads·head_dim]`.
    pub fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        self.check_pass(None, inputs)
    }

    fn check_pass(&self, pass: Option<Pass>, inputs: &[&Meta]) -> Result<Meta> {
        self.check_config()?;
        let arity = match pass {
            None | Some(Pass::Scores) => self.arity(),
            Some(Pass::Softmax) => 1 + usize::from(self.has_mask()),
            Some(Pass::WeightedSum) => 1 + self.kv_inputs(),
        };
        check_arity(NAME, inputs, arity)?;
        let heads = self.heads as usize;
        let first = &inputs[0].shape;
        let dtype = inputs[0].dtype;
        match pass {
            None | Some(Pass::Scores) => {
                check_rank("queries", first)?;
                let (batch, queries, q_width) = batch_rows_cols(first);
                let need = u64::from(self.q_offset) + self.width();
                if (q_width as u64) < need {
                    let what = "query row width (q offset + heads·head_dim)";
                    return Err(Error::shape(NAME, what, format!(">= {need}"), q_width));
                }
                let keys = self.check_sources(batch, &inputs[1..1 + self.kv_inputs()])?;
                if let Some(m) = self.mask_input() {
                    self.check_mask(batch, queries, keys, inputs[m])?;
                }
                if let Some(n) = self.norm_input() {
                    let d = self.head_dim as usize;
                    expect_shape(NAME, "q/k norm weights ([2, head_dim])", &inputs[n].shape, &[2, d])?;
                }
                let out = if pass.is_none() {
                    let mut out = first[..first.len() - 1].to_vec();
                    out.push(self.width() as usize);
                    out
                } else {
                    vec![batch, heads, queries, keys]
                };
                check_u32_elements(NAME, "output", &out)?;
                Ok(Meta { shape: out, dtype })
            }
            Some(Pass::Softmax) => {
                let [batch, _, queries, keys] = self.check_scores("scores", first)?;
                if self.has_mask() {
                    self.check_mask(batch, queries, keys, inputs[1])?;
                }
                Ok(inputs[0].clone())
            }
            Some(Pass::WeightedSum) => {
                let [batch, _, queries, keys] = self.check_scores("weights", first)?;
                let total = self.check_sources(batch, &inputs[1..])?;
                if total != keys {
                    return Err(Error::shape(NAME, "keys in the value sources", keys, total));
                }
                Ok(Meta { shape: vec![batch, queries, self.width() as usize], dtype })
            }
        }
    }

    fn check_config(&self) -> Result<()> {
        if self.heads == 0 {
            return Err(Error::shape(NAME, "heads", ">= 1", 0));
        }
        if self.head_dim == 0 || self.head_dim > MAX_HEAD_DIM {
            return Err(Error::shape(NAME, "head_dim", format!("1..={MAX_HEAD_DIM}"), self.head_dim));
        }
        if self.kv_heads == 0 || !self.heads.is_multiple_of(self.kv_heads) {
            return Err(Error::shape(
                NAME,
                "kv_heads (a divisor of heads)",
                format!("a divisor of {}", self.heads),
                self.kv_heads,
            ));
        }
        if let Some(eps) = self.qk_norm
            && !(eps.is_finite() && eps >= 0.0)
        {
            return Err(Error::shape(NAME, "q/k norm eps", "finite and >= 0", eps));
        }
        Ok(())
    }

    fn check_scores(&self, what: &str, shape: &[usize]) -> Result<[usize; 4]> {
        let [batch, h, queries, keys] = shape[..] else {
            return Err(Error::shape(NAME, format!("{what} rank ([batch, heads, queries, keys])"), 4, shape.len()));
        };
        if h != self.heads as usize {
            return Err(Error::shape(NAME, format!("{what} heads"), self.heads, h));
        }
        Ok([batch, h, queries, keys])
    }

    /// Checks the key/value sources; returns their total key count.
    fn check_sources(&self, batch: usize, sources: &[&Meta]) -> Result<usize> {
        let mut keys = 0;
        for (i, m) in sources.iter().enumerate() {
            let (k, v) = self.source_offsets(i);
            let need = u64::from(k.max(v)) + self.kv_width();
            let what = format!("key/value source {i}");
            check_rank(&what, &m.shape)?;
            let (b, rows, width) = batch_rows_cols(&m.shape);
            if b != batch {
                return Err(Error::shape(NAME, format!("{what} batch (leading dims)"), batch, b));
            }
            if (width as u64) < need {
                let w = format!("{what} row width (key/value offsets + heads·head_dim)");
                return Err(Error::shape(NAME, w, format!(">= {need}"), width));
            }
            keys += rows;
        }
        Ok(keys)
    }

    /// Where everything lives for these (checked) inputs.
    pub fn geometry(&self, inputs: &[&Meta]) -> Geometry {
        self.geometry_of(None, inputs)
    }

    fn geometry_of(&self, pass: Option<Pass>, inputs: &[&Meta]) -> Geometry {
        let (batch, queries, q_stride, sources) = match pass {
            None | Some(Pass::Scores) => {
                let (b, q, w) = batch_rows_cols(&inputs[0].shape);
                (b, q, w, &inputs[1..1 + self.kv_inputs()])
            }
            Some(p) => {
                let s = &inputs[0].shape;
                (s[0], s[2], 0, if p == Pass::Softmax { &inputs[..0] } else { &inputs[1..] })
            }
        };
        let source = |i: usize| {
            sources.get(i).map_or((0, 0), |m| {
                let (_, rows, width) = batch_rows_cols(&m.shape);
                (rows, width)
            })
        };
        let (mut keys_a, kv_stride_a) = source(0);
        let (keys_b, kv_stride_b) = source(1);
        if pass == Some(Pass::Softmax) {
            keys_a = inputs[0].shape[3];
        }
        Geometry {
            batch,
            queries,
            keys_a,
            keys_b,
            heads: self.heads as usize,
            kv_heads: self.kv_heads as usize,
            head_dim: self.head_dim as usize,
            q_stride,
            q_offset: self.q_offset as usize,
            kv_stride_a,
            kv_stride_b,
            k_offset: self.k_offset as usize,
            v_offset: self.v_offset as usize,
            k_offset_b: self.source_offsets(1).0 as usize,
            v_offset_b: self.source_offsets(1).1 as usize,
            scale: self.scale,
            norm_eps: self.qk_norm.unwrap_or(0.0),
        }
    }
}

impl Naive {
    /// Name in errors and reports.
    pub const NAME: &'static str = "attention_naive";

    /// The input index of the mask, when this pass reads it.
    pub fn mask_input(&self) -> Option<usize> {
        match self.pass {
            Pass::Scores => self.attention.mask_input(),
            Pass::Softmax => self.attention.has_mask().then_some(1),
            Pass::WeightedSum => None,
        }
    }

    /// Checks the pass's inputs; returns its output.
    pub fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        self.attention.check_pass(Some(self.pass), inputs)
    }

    /// Where everything lives for these (checked) inputs.
    pub fn geometry(&self, inputs: &[&Meta]) -> Geometry {
        self.attention.geometry_of(Some(self.pass), inputs)
    }
}

pub(super) fn check_rank(what: &str, shape: &[usize]) -> Result<()> {
    check_u32_elements(NAME, what, shape)?;
    if shape.len() < 2 {
        return Err(Error::shape(NAME, format!("{what} rank"), ">= 2 ([.., rows, features])", shape.len()));
    }
    Ok(())
}
