//! The patch embedding in f64: the strided convolution as upstream's `Conv2d`, then the class
//! token and the positions.

use crate::ops::PatchEmbed;

/// The tensors a patch embedding reads (see [`PatchEmbed`]), as f64.
pub struct PatchInputs<'a> {
    /// `[slabs, channels, height, width]`.
    pub pixels: &'a [f64],
    /// `(channels, height, width)` of one slab.
    pub image: (usize, usize, usize),
    /// `[C, channels·patch²]`.
    pub weight: &'a [f64],
    /// The slab each output item embeds.
    pub images: &'a [f64],
    /// `[positions, C]`.
    pub positions: &'a [f64],
    /// `[C]`, when the op has one.
    pub bias: Option<&'a [f64]>,
    /// `[C]`, when the op has one.
    pub class_token: Option<&'a [f64]>,
    /// `[batch, patches]`, when the op reads them.
    pub ids: Option<&'a [f64]>,
}

/// `[batch, tokens, C]`: each item's class token (when configured) then its patches in
/// row-major order, each `Σ pixel · w + bias`, plus its position row.
pub fn patch_embed(op: &PatchEmbed, x: &PatchInputs<'_>) -> Vec<f64> {
    let (channels, height, width) = x.image;
    let p = op.patch;
    let k = channels * p * p;
    let c = x.weight.len() / k.max(1);
    let (gh, gw) = op.grid(height, width);
    let class = usize::from(op.class_token);
    let mut out = Vec::with_capacity(x.images.len() * (class + gh * gw) * c);
    for (b, &slab) in x.images.iter().enumerate() {
        let image = &x.pixels[slab as usize * channels * height * width..][..channels * height * width];
        if let Some(token) = x.class_token {
            out.extend(token.iter().zip(&x.positions[..c]).map(|(t, q)| t + q));
        }
        for patch in 0..gh * gw {
            let (py, px) = (patch / gw, patch % gw);
            let row = match x.ids {
                Some(ids) => class + ids[b * gh * gw + patch] as usize,
                None => class + patch,
            };
            for o in 0..c {
                let w = &x.weight[o * k..(o + 1) * k];
                let mut acc = 0.0;
                for ch in 0..channels {
                    for dy in 0..p {
                        for dx in 0..p {
                            let pixel = image[(ch * height + py * p + dy) * width + px * p + dx];
                            acc += pixel * w[(ch * p + dy) * p + dx];
                        }
                    }
                }
                out.push(acc + x.bias.map_or(0.0, |b| b[o]) + x.positions[row * c + o]);
            }
        }
    }
    out
}
