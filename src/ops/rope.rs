//! 2D rotary position embedding of the rotary vision towers (Qwen2-VL / 2.5-VL, Pixtral):
//! each patch's query and key heads turned by angles from its (row, column) in the image grid.
//!
//! Upstream pairs dim d of a head with d + D/2 (`rotate_half`). The towers store their query
//! and key weight rows reordered so that those partners sit side by side, `[d₀, d₀ + D/2,
//! d₁, d₁ + D/2, ..]` ([`Rope2d::paired_rows`]): attention's scores are dot products over a
//! head, which the same reordering of queries and keys leaves unchanged, and adjacent
//! partners let the QKV GEMM turn them in its epilogue, where each invocation holds both.
//! The op here ([`RotaryPairs`]) turns such adjacent pairs by a per-row table of (cos, sin)
//! computed on the host ([`Rope2d::table`]).

use super::{Meta, check_arity, check_u32_elements, rows_cols};
use crate::dtype::DType;
use crate::error::{Error, Result};

/// Name in errors and reports.
pub const NAME: &str = "rotary_pairs";

/// Which frequency each rotary pair takes. Both split a head's `D / 2` rotary pairs in two
/// halves, the first turned by the patch's row, the second by its column, and both pair dim d
/// with d + D/2 (`rotate_half`); they differ in the frequencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RopeFrequencies {
    /// Qwen2-VL's `VisionRotaryEmbedding(D / 2)`: pair i of either half turns by
    /// θ^(−2i / (D/2)), rows and columns alike.
    Axial,
    /// Pixtral's: D / 2 frequencies θ^(−2k / D), rows taking the even-indexed ones and columns
    /// the odd-indexed ones.
    Interleaved,
}

/// A tower's 2D rotary embedding: the first `heads` heads of each fused QKV row (its query
/// and key heads: `2 · heads`), pair j of a head turned by `position[axis] · frequency(j)`
/// (axis 0, the row, for the first D/4 pairs; 1, the column, after them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rope2d {
    /// Dims per head (a multiple of 4: D/4 pairs per axis).
    pub head_dim: usize,
    /// Heads rotated at the start of each row.
    pub heads: usize,
    /// The base of the frequencies (θ; 10000 in both families).
    pub theta: f32,
    /// Which frequency each pair takes.
    pub frequencies: RopeFrequencies,
}

impl Rope2d {
    /// The inverse frequency pair `j` (of a head's D/2) turns by, computed as upstream does in
    /// f32 (`1 / θ^(2k / dim)`), and the axis (0 row, 1 column) whose position it multiplies.
    pub fn frequency(&self, j: usize) -> (f32, usize) {
        let quarter = self.head_dim / 4;
        let axis = usize::from(j >= quarter);
        let i = j - axis * quarter;
        let (k, dim) = match self.frequencies {
            RopeFrequencies::Axial => (i, self.head_dim / 2),
            RopeFrequencies::Interleaved => (2 * i + axis, self.head_dim),
        };
        (1.0 / self.theta.powf((2 * k) as f32 / dim as f32), axis)
    }

    /// The turn as the GEMM epilogue or a [`RotaryPairs`] node applies it.
    pub fn pairs(&self) -> RotaryPairs {
        RotaryPairs { heads: self.heads, head_dim: self.head_dim }
    }

    /// `[rows, D/2, 2]`: each row's (cos a, sin a) for each pair, from `positions` (`[rows, 2]`:
    /// the patch's row and column). The angle is upstream's, an f32 position times the f32
    /// inverse frequency; its cosine and sine are taken in f64 and rounded once, which leaves
    /// the shaders' own `sin`/`cos` (2⁻¹¹ in WGSL's bounds) out of it.
    pub fn table(&self, positions: &[u32]) -> Result<Vec<f32>> {
        self.check()?;
        let half = self.head_dim / 2;
        let frequencies: Vec<(f32, usize)> = (0..half).map(|j| self.frequency(j)).collect();
        Ok(positions
            .chunks_exact(2)
            .flat_map(|p| {
                frequencies.iter().flat_map(move |&(inverse, axis)| {
                    let angle = f64::from(p[axis] as f32 * inverse);
                    [angle.cos() as f32, angle.sin() as f32]
                })
            })
            .collect())
    }

    /// The order of a fused `[q | k | v]` projection's `rows` output rows that puts each rotated
    /// head's partners side by side: entry i is the checkpoint row that becomes row i (d of a
    /// head at 2d below D/2, at 2(d − D/2) + 1 above); the rows past the rotated heads keep
    /// their place.
    pub fn paired_rows(&self, rows: usize) -> Vec<usize> {
        let (d, half) = (self.head_dim, self.head_dim / 2);
        (0..rows)
            .map(|i| {
                if i >= self.heads * d {
                    return i;
                }
                let (head, within) = (i / d, i % d);
                head * d + within / 2 + (within % 2) * half
            })
            .collect()
    }

    /// Checks what a table can be built for.
    pub fn check(&self) -> Result<()> {
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(4) {
            return Err(Error::shape(NAME, "head dim (a positive multiple of 4)", "4k", self.head_dim));
        }
        if self.heads == 0 {
            return Err(Error::shape(NAME, "rotated heads (at least one)", ">= 1", 0));
        }
        if !(self.theta.is_finite() && self.theta > 1.0) {
            return Err(Error::shape(NAME, "theta (finite, above 1)", "> 1", self.theta));
        }
        Ok(())
    }
}

/// `y = x` with channels 2j and 2j + 1 of each of the first `heads` heads of a row turned
/// as a pair by the row's angle for pair j, the rest copied:
/// `(y₂ⱼ, y₂ⱼ₊₁) = (x₂ⱼ cos a − x₂ⱼ₊₁ sin a, x₂ⱼ₊₁ cos a + x₂ⱼ sin a)`.
/// Inputs: x `[.., C]` and the table `[rows, D/2, 2]` f32 of (cos a, sin a) ([`Rope2d::table`]).
/// The same turn is also a GEMM epilogue ([`super::Epilogue::rotary`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RotaryPairs {
    /// Heads turned at the start of each row.
    pub heads: usize,
    /// Dims per head (even).
    pub head_dim: usize,
}

impl RotaryPairs {
    /// Channels turned at the start of each row.
    pub fn channels(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Checks the turn against rows of `width` channels and its `table`, naming the op
    /// `kernel` in errors.
    pub fn check_table(&self, kernel: &'static str, rows: usize, width: usize, table: &Meta) -> Result<()> {
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return Err(Error::shape(kernel, "rotary head dim (pairs of channels)", "an even count", self.head_dim));
        }
        if self.heads == 0 {
            return Err(Error::shape(kernel, "rotary heads (at least one)", ">= 1", 0));
        }
        if self.channels() > width {
            let what = "channels (at least rotary heads x head dim)";
            return Err(Error::shape(kernel, what, format!(">= {}", self.channels()), width));
        }
        let want = [rows, self.head_dim / 2, 2];
        if table.shape != want || table.dtype != DType::F32 {
            let what = "rotary table ([rows, head dim / 2, 2] f32: each pair's cos and sin)";
            let got = format!("{:?} {}", table.shape, table.dtype);
            return Err(Error::shape(kernel, what, format!("{want:?} f32"), got));
        }
        Ok(())
    }

    /// Checks the inputs; returns the output (x's shape and dtype).
    pub fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        check_arity(NAME, inputs, 2)?;
        let x = inputs[0];
        check_u32_elements(NAME, "x", &x.shape)?;
        if x.shape.len() < 2 {
            return Err(Error::shape(NAME, "x rank ([rows, channels])", ">= 2", x.shape.len()));
        }
        let (rows, width) = rows_cols(&x.shape);
        self.check_table(NAME, rows, width, inputs[1])?;
        Ok(x.clone())
    }
}
