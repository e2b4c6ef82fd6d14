//! A ViT's patch embedding: `Conv2d(channels, C, kernel = stride = patch)` over the image, the
//! class token in front, learned positions added, as one GEMM that reads the patches in place.

use super::{Meta, check_arity, check_u32_elements, expect_shape};
use crate::error::{Error, Result};

/// Name in errors and reports.
pub const NAME: &str = "patch_embed";

/// The patch embedding of a ViT (CLIP, SigLIP, BLIP-2, InternViT, Idefics3). Inputs, in this
/// order: pixels `[slabs, channels, H, W]` (an activation), the Conv2d weight flattened to
/// `[C, channels·patch²]` (any float), the image table `[batch]` (u32: which slab each output
/// item embeds, so padding tiles are skipped without a copy), the position table
/// `[positions, C]` (f32), then the bias `[C]`, the class token `[C]` and the position ids
/// `[batch, patches]` (u32) when configured. Output `[batch, class + patches, C]` with
/// `patches = (H / patch)·(W / patch)` (floored, as the strided convolution).
///
/// Token `t` adds position row `t` (the class token row 0), or with `position_ids` the class
/// token keeps row 0 and patch `p` adds row `1·class + ids[b, p]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PatchEmbed {
    /// Pixels per patch side (kernel = stride).
    pub patch: usize,
    /// Adds the convolution's bias.
    pub bias: bool,
    /// Prepends the class token.
    pub class_token: bool,
    /// Reads each patch's position row from a table of ids.
    pub position_ids: bool,
}

impl PatchEmbed {
    /// Number of inputs.
    pub fn arity(&self) -> usize {
        4 + usize::from(self.bias) + usize::from(self.class_token) + usize::from(self.position_ids)
    }

    /// Input index of (bias, class token, position ids), where present.
    pub fn slots(&self) -> [Option<usize>; 3] {
        let mut next = 4..;
        let mut take = |present: bool| if present { next.next() } else { None };
        [take(self.bias), take(self.class_token), take(self.position_ids)]
    }

    /// `(patches per column, per row)` of an image of `height × width` pixels.
    pub fn grid(&self, height: usize, width: usize) -> (usize, usize) {
        (height / self.patch.max(1), width / self.patch.max(1))
    }

    /// Tokens per item: the class token and the patches.
    pub fn tokens(&self, height: usize, width: usize) -> usize {
        let (gh, gw) = self.grid(height, width);
        usize::from(self.class_token) + gh * gw
    }

    /// Checks the inputs; returns `[batch, tokens, C]` (the pixels' dtype).
    pub fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        check_arity(NAME, inputs, self.arity())?;
        let pixels = &inputs[0].shape;
        check_u32_elements(NAME, "pixels", pixels)?;
        let [_, channels, height, width] = pixels[..] else {
            return Err(Error::shape(NAME, "pixels rank ([images, channels, H, W])", 4, pixels.len()));
        };
        if self.patch == 0 || height < self.patch || width < self.patch {
            let what = "image side (at least one patch)";
            return Err(Error::shape(NAME, what, format!(">= {}", self.patch), format!("{height}x{width}")));
        }
        let w = &inputs[1].shape;
        let k = channels * self.patch * self.patch;
        if w.len() != 2 || w[1] != k {
            let what = "weight shape ([C, channels·patch²])";
            return Err(Error::shape(NAME, what, format!("[C, {k}]"), format!("{w:?}")));
        }
        let c = w[0];
        let images = &inputs[2].shape;
        if images.len() != 1 {
            return Err(Error::shape(NAME, "image table rank ([batch])", 1, images.len()));
        }
        let batch = images[0];
        let tokens = self.tokens(height, width);
        let patches = tokens - usize::from(self.class_token);
        let positions = &inputs[3].shape;
        // Without ids every token reads its own row; with ids any row may be read.
        let min_rows = if self.position_ids { usize::from(self.class_token) + 1 } else { tokens };
        if positions.len() != 2 || positions[1] != c || positions[0] < min_rows {
            let what = "position table shape ([positions, C])";
            return Err(Error::shape(NAME, what, format!("[>= {min_rows}, {c}]"), format!("{positions:?}")));
        }
        let [bias, class, ids] = self.slots();
        for (slot, what) in [(bias, "bias"), (class, "class token")] {
            if let Some(i) = slot {
                expect_shape(NAME, what, &inputs[i].shape, &[c])?;
            }
        }
        if let Some(i) = ids {
            expect_shape(NAME, "position ids", &inputs[i].shape, &[batch, patches])?;
        }
        let out = vec![batch, tokens, c];
        check_u32_elements(NAME, "output", &out)?;
        Ok(Meta { shape: out, dtype: inputs[0].dtype })
    }
}
