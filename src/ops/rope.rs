//! 2D rotary position embedding of the rotary vision towers (Qwen2-VL / 2.5-VL, Pixtral):
//! each patch's query and key heads turned by angles from its (row, column) in the image grid.

use super::{Meta, check_arity, check_u32_elements, rows_cols};
use crate::dtype::DType;
use crate::error::{Error, Result};

/// Name in errors and reports.
pub const NAME: &str = "rope2d";

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

/// `y = x` with the first `heads` heads of every row rotated (a fused QKV row's query and key
/// heads: `2 · heads`), the rest copied: `x · cos a + rotate_half(x) · sin a`, where pair j of a
/// head turns by `position[axis] · frequency(j)` (axis 0, the row, for the first D/4 pairs).
/// Inputs: x `[.., C]` and positions `[rows, 2]` (u32 row and column of each row's patch).
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

/// The largest head dim: the shader holds a head's D/2 inverse frequencies in its uniform.
pub const MAX_HEAD_DIM: usize = 128;

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

    /// Checks the inputs; returns the output (x's shape and dtype).
    pub fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        check_arity(NAME, inputs, 2)?;
        let (x, positions) = (inputs[0], inputs[1]);
        check_u32_elements(NAME, "x", &x.shape)?;
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(4) || self.head_dim > MAX_HEAD_DIM {
            let what = format!("head dim (a positive multiple of 4, at most {MAX_HEAD_DIM})");
            return Err(Error::shape(NAME, what, "4k", self.head_dim));
        }
        if self.heads == 0 {
            return Err(Error::shape(NAME, "rotated heads (at least one)", ">= 1", 0));
        }
        if !(self.theta.is_finite() && self.theta > 1.0) {
            return Err(Error::shape(NAME, "theta (finite, above 1)", "> 1", self.theta));
        }
        if x.shape.len() < 2 {
            return Err(Error::shape(NAME, "x rank ([rows, channels])", ">= 2", x.shape.len()));
        }
        let (rows, width) = rows_cols(&x.shape);
        if self.heads * self.head_dim > width {
            let what = "channels (at least heads x head dim)";
            return Err(Error::shape(NAME, what, format!(">= {}", self.heads * self.head_dim), width));
        }
        if positions.shape != [rows, 2] || positions.dtype != DType::U32 {
            let what = "positions ([rows, 2] u32: each row's patch row and column)";
            let got = format!("{:?} {}", positions.shape, positions.dtype);
            return Err(Error::shape(NAME, what, format!("[{rows}, 2] u32"), got));
        }
        Ok(x.clone())
    }
}
