//! Ops that move or convert elements without arithmetic across them.

use super::{Meta, check_arity, check_u32_elements};
use crate::dtype::DType;
use crate::error::{Error, Result};

/// `[times, ..x.shape]` copies of x: broadcasts learnable queries / latents over the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repeat {
    /// Copies (the batch).
    pub times: usize,
}

impl Repeat {
    /// Name in errors and reports.
    pub const NAME: &'static str = "repeat";

    /// Checks x (any shape); returns `[times, ..x.shape]`.
    pub fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        check_arity(Self::NAME, inputs, 1)?;
        if self.times == 0 {
            return Err(Error::shape(Self::NAME, "times", ">= 1", 0));
        }
        let mut out = vec![self.times];
        out.extend(&inputs[0].shape);
        check_u32_elements(Self::NAME, "output", &out)?;
        Ok(Meta { shape: out, dtype: inputs[0].dtype })
    }
}

/// An f32 tensor rounded to an activation storage type (f32: a copy, f16: round to nearest):
/// f32 parameters such as learnable queries entering an f16 graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Convert {
    /// The storage type to round to: f32 or f16.
    pub to: DType,
}

impl Convert {
    /// Name in errors and reports.
    pub const NAME: &'static str = "convert";

    /// Checks the f32 input (any shape); returns the same shape in `to`.
    pub fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        check_arity(Self::NAME, inputs, 1)?;
        check_u32_elements(Self::NAME, "input", &inputs[0].shape)?;
        if !matches!(self.to, DType::F32 | DType::F16) {
            return Err(Error::DType {
                kernel: Self::NAME,
                what: "target".into(),
                expected: "f32 or f16".into(),
                got: self.to.to_string(),
            });
        }
        Ok(Meta { shape: inputs[0].shape.clone(), dtype: self.to })
    }
}

/// Elementwise check: one input of any shape, the output its shape.
pub(crate) fn check_unary(kernel: &'static str, inputs: &[&Meta]) -> Result<Meta> {
    check_arity(kernel, inputs, 1)?;
    check_u32_elements(kernel, "input", &inputs[0].shape)?;
    Ok(inputs[0].clone())
}

/// `x + t[r / group]` row by row: row `i` of `t` `[rows / group, C]` is added to the `group`
/// consecutive rows of x `[.., C]` it covers. Mllama's post-tile embedding, one row per tile
/// added to each of the tile's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddRows {
    /// Rows of x that each row of `t` is added to.
    pub group: usize,
}

impl AddRows {
    /// Name in errors and reports.
    pub const NAME: &'static str = "add_rows";

    /// Checks x `[.., C]` (an activation) and t `[rows / group, C]` (f32); returns x's shape.
    pub fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        check_arity(Self::NAME, inputs, 2)?;
        let (x, t) = (inputs[0], inputs[1]);
        check_u32_elements(Self::NAME, "x", &x.shape)?;
        check_u32_elements(Self::NAME, "t", &t.shape)?;
        let (rows, cols) = super::rows_cols(&x.shape);
        if self.group == 0 || !rows.is_multiple_of(self.group) {
            return Err(Error::shape(
                Self::NAME,
                "group (a divisor of x's rows)",
                format!("divides {rows}"),
                self.group,
            ));
        }
        let want = [rows / self.group, cols];
        if super::rows_cols(&t.shape) != (want[0], want[1]) {
            let what = "t shape ([x rows / group, C])";
            return Err(Error::shape(Self::NAME, what, format!("{want:?}"), format!("{:?}", t.shape)));
        }
        if t.dtype != DType::F32 {
            return Err(Error::DType {
                kernel: Self::NAME,
                what: "t".into(),
                expected: "f32".into(),
                got: t.dtype.to_string(),
            });
        }
        Ok(x.clone())
    }
}
