//! The masks an attention takes, and their shape checks: keep, additive, key-padding and
//! segment tables.

use super::{Attention, NAME};
use crate::error::{Error, Result};
use crate::ops::{Meta, batch_rows_cols, check_u32_elements};

/// The mask input of an attention, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mask {
    /// No mask input.
    None,
    /// A keep mask `[.., Nq, keys]` (u8, non-zero = attend); fully masked rows as given.
    Keep(MaskedRows),
    /// An f32 mask `[.., Nq, keys]` added to the scaled logits (Mllama's cross-attention mask:
    /// 0 attends, `finfo(f32).min` does not).
    Additive,
    /// A key-padding mask `[.., keys]` (u8, non-zero = a real key): padded keys are masked for
    /// every query (Idefics3's and SmolVLM's padded patches), one byte per key.
    Keys,
    /// Block-diagonal attention over packed sequences: u32 bounds `[.., Nq, 2]`, query i
    /// attending keys `start_i .. end_i` only (Qwen2-VL's `cu_seqlens`, Qwen2.5-VL's windows,
    /// Pixtral's images). Segments are contiguous and in order: starts and ends never decrease
    /// from one query to the next ([`segment_bounds`] builds such a table). No dense mask, and
    /// the kernels stream only the keys of the segments they hold.
    Segments {
        /// Keys per query, rounded up: what the cost model counts (the bounds are data).
        mean_keys: u32,
    },
    /// Self-attention over padded tokens: u8 `[.., tokens]` (non-zero = a real token), and
    /// query i drops key j only when both are padding. Mllama's tiles: real tokens attend the
    /// padding too, padding attends the real tokens only. One byte per token.
    PadPairs,
}

/// The bounds `[Σ lengths, 2]` of the segments `lengths` packed one after the other: each
/// token's segment's first key and its end, as [`Mask::Segments`] reads them. Empty segments
/// take no rows.
pub fn segment_bounds(lengths: &[usize]) -> Vec<u32> {
    let mut bounds = Vec::with_capacity(2 * lengths.iter().sum::<usize>());
    let mut start = 0;
    for &n in lengths {
        for _ in 0..n {
            bounds.extend([start as u32, (start + n) as u32]);
        }
        start += n;
    }
    bounds
}

/// What a fully masked query row produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MaskedRows {
    /// Masked logits are `-f32::MAX` (open_flamingo's fill), so the row averages every value.
    Uniform,
    /// The row is zero: open_flamingo with `only_attend_immediate_media=True`.
    Zero,
}

impl Attention {
    /// The mask input against `batch` items of `queries` over `keys`: segment bounds are
    /// `[batch, queries, 2]`, other masks `[batch, rows, keys]` (see [`Attention::mask_rows`]).
    pub(super) fn check_mask(&self, batch: usize, queries: usize, keys: usize, mask: &Meta) -> Result<()> {
        if self.mask == Mask::PadPairs && queries != keys {
            let what = "queries of a pad-pair mask (self-attention: one per key)";
            return Err(Error::shape(NAME, what, keys, queries));
        }
        if !matches!(self.mask, Mask::Segments { .. }) {
            return check_mask(batch, self.mask_rows(queries), keys, mask);
        }
        check_u32_elements(NAME, "segment bounds", &mask.shape)?;
        let (b, rows, cols) = batch_rows_cols(&mask.shape);
        if mask.shape.len() < 2 || (b, rows, cols) != (batch, queries, 2) {
            return Err(Error::shape(
                NAME,
                "segment bounds shape ([batch, queries, 2])",
                format!("[{batch}, {queries}, 2]"),
                format!("{:?}", mask.shape),
            ));
        }
        Ok(())
    }
}

/// A mask of `rows` rows per batch item (queries, or 1 for a key mask `[batch, keys]`).
fn check_mask(batch: usize, rows: usize, keys: usize, mask: &Meta) -> Result<()> {
    check_u32_elements(NAME, "mask", &mask.shape)?;
    let (b, r, cols) = if rows == 1 && mask.shape.len() == 2 {
        (mask.shape[0], 1, mask.shape[1])
    } else {
        batch_rows_cols(&mask.shape)
    };
    let queries = rows;
    if mask.shape.len() < 2 || (b, r, cols) != (batch, queries, keys) {
        return Err(Error::shape(
            NAME,
            "mask shape ([batch, queries, keys])",
            format!("[{batch}, {queries}, {keys}]"),
            format!("{:?}", mask.shape),
        ));
    }
    Ok(())
}
