//! Pixel shuffle (space to depth) of token grids: each `s × s` block of a row-major grid becomes
//! one token of `s²·C` channels. InternVL and Idefics3 / SmolVLM concatenate the block
//! offset-major (`(a·s + d)·C + c`), Mistral 3's `unfold` channel-major (`c·s² + a·s + d`);
//! Qwen2-VL's merger is the offset-major case on a `(N/2) × 2` grid.

use super::{Meta, Operand, check_arity, check_u32_elements, expect_shape};
use crate::error::{Error, Result};

/// Name in errors and reports.
pub const NAME: &str = "pixel_shuffle";

/// How a block's channels are ordered in the merged token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelOrder {
    /// `(a·s + d)·C + c`: the block's tokens one after the other (InternVL, Idefics3, Qwen).
    OffsetMajor,
    /// `c·s² + a·s + d`: each channel's `s²` values together (Mistral 3's `F.unfold`).
    ChannelMajor,
}

/// One image's grid in a pixel-shuffle table: its first input and output tokens and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageGrid {
    /// Patch rows.
    pub h: usize,
    /// Patch columns.
    pub w: usize,
}

/// Pixel shuffle of one or more images' token grids. Inputs: the tokens, `[N_total, C]` (images
/// one after the other) or `[B, N, C]` (B images of one grid), and the grid table `[images, 4]`
/// (u32: first input token, first output token, rows, columns; [`PixelShuffle::new`] builds it).
/// Output: `[M_total, s²C]` or `[B, M, s²C]`. Grids that `s` does not divide drop the remainder
/// rows and columns (as `unfold` floors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PixelShuffle {
    /// The block side `s`.
    pub scale: usize,
    /// How a block's channels are ordered.
    pub order: ChannelOrder,
    /// Images in the table.
    pub images: usize,
    /// Output tokens of all images.
    pub out_tokens: usize,
}

impl PixelShuffle {
    /// The shuffle of `grids` (their tokens one after the other) and its grid table.
    pub fn new(grids: &[ImageGrid], scale: usize, order: ChannelOrder) -> Result<(Self, Vec<u32>)> {
        if scale == 0 {
            return Err(Error::shape(NAME, "scale", ">= 1", 0));
        }
        let (mut table, mut input, mut output) = (Vec::with_capacity(4 * grids.len()), 0, 0);
        for g in grids {
            let out = (g.h / scale) * (g.w / scale);
            if out == 0 {
                let got = format!("{}x{}", g.h, g.w);
                return Err(Error::shape(
                    NAME,
                    format!("grid (at least one {scale}x{scale} block)"),
                    format!(">= {scale}x{scale}"),
                    got,
                ));
            }
            table.extend([input, output, g.h, g.w].map(|v| v as u32));
            input += g.h * g.w;
            output += out;
        }
        Ok((Self { scale, order, images: grids.len(), out_tokens: output }, table))
    }

    /// How the op reads input `i`.
    pub fn operand(i: usize) -> Operand {
        if i == 0 { Operand::Activation } else { Operand::Index }
    }

    /// Checks the tokens and the table; returns the shuffled tokens.
    pub fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        check_arity(NAME, inputs, 2)?;
        let x = &inputs[0].shape;
        check_u32_elements(NAME, "tokens", x)?;
        expect_shape(NAME, "grid table", &inputs[1].shape, &[self.images, 4])?;
        let channels = *x.last().unwrap_or(&0);
        let merged = self.scale * self.scale * channels;
        let out = match x[..] {
            [_, _] => vec![self.out_tokens, merged],
            [batch, _, _] if batch == self.images && self.out_tokens.is_multiple_of(batch) => {
                vec![batch, self.out_tokens / batch, merged]
            }
            _ => {
                let expected = format!("[tokens, C] or [{}, tokens, C]", self.images);
                return Err(Error::shape(NAME, "tokens shape", expected, format!("{x:?}")));
            }
        };
        check_u32_elements(NAME, "output", &out)?;
        Ok(Meta { shape: out, dtype: inputs[0].dtype })
    }
}
