//! Selecting and joining tokens: hidden states of several layers side by side with the class
//! token dropped, a range of items, two tensors one after the other, rows regrouped or
//! gathered by index.

use super::{Meta, check_arity, check_u32_elements};
use crate::dtype::DType;
use crate::error::{Error, Result};

/// Name in errors and reports.
pub const NAME: &str = "concat";

/// A [`Concat::Gather`] index that writes a row of zeros.
pub const ZERO_ROW: u32 = u32::MAX;

/// A copy that selects or joins tensors of one dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Concat {
    /// `[B, T, Ca]` and, with `two`, `[B, T, Cb]` → `[B, T − skip, Ca + Cb]`: the last dims
    /// joined, the first `skip` tokens of every item dropped (`torch.cat(dim=-1)[:, skip:]`).
    Channels {
        /// Leading tokens dropped from every item.
        skip: usize,
        /// Two sources (else one: only the drop).
        two: bool,
    },
    /// `[Ra, ..]` and `[Rb, ..]` (the same trailing dims) → `[Ra + Rb, ..]`.
    Rows,
    /// `[A, B, .., C]` → `[A·B·.., C]`: upstream's `torch.cat` of per-image features, for a
    /// result that is already contiguous.
    Flatten,
    /// `[.., C]` read as rows of `cols` elements → `[len / cols, cols]`: Qwen's merge units,
    /// s² consecutive tokens as one row (`view(-1, s²·C)`), as a copy.
    Regroup {
        /// Elements per output row (they must divide the input's).
        cols: usize,
    },
    /// `[.., C]` read as rows of `cols` elements and u32 `index` `[.., M]` → `[.., M, cols]`,
    /// row m being row `index[m]`, or zeros where `index[m]` is past the rows ([`ZERO_ROW`]):
    /// Qwen2.5-VL's inverse window permutation, Mllama's tiles padded with zero tokens.
    Gather {
        /// Elements per row (they must divide the input's).
        cols: usize,
    },
    /// Items `start .. start + len` of the leading dimension.
    Slice {
        /// First item.
        start: usize,
        /// Items taken.
        len: usize,
    },
}

impl Concat {
    /// Number of inputs.
    pub fn arity(&self) -> usize {
        match self {
            Concat::Channels { two: false, .. } | Concat::Slice { .. } | Concat::Flatten | Concat::Regroup { .. } => 1,
            _ => 2,
        }
    }

    /// Checks the inputs; returns the output (the first input's dtype).
    pub fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        check_arity(NAME, inputs, self.arity())?;
        for (i, m) in inputs.iter().enumerate() {
            check_u32_elements(NAME, &format!("input {i}"), &m.shape)?;
        }
        let a = &inputs[0].shape;
        let out = match *self {
            Concat::Channels { skip, two } => {
                let [batch, tokens, ca] = a[..] else {
                    return Err(Error::shape(NAME, "input rank ([batch, tokens, channels])", 3, a.len()));
                };
                let cb = if two {
                    let b = &inputs[1].shape;
                    if b.len() != 3 || b[..2] != a[..2] {
                        let what = "second input shape ([batch, tokens, C], the first's batch and tokens)";
                        return Err(Error::shape(NAME, what, format!("[{batch}, {tokens}, C]"), format!("{b:?}")));
                    }
                    b[2]
                } else {
                    0
                };
                if skip >= tokens {
                    return Err(Error::shape(
                        NAME,
                        "tokens dropped (fewer than the tokens)",
                        format!("< {tokens}"),
                        skip,
                    ));
                }
                vec![batch, tokens - skip, ca + cb]
            }
            Concat::Rows => {
                let b = &inputs[1].shape;
                if a.len() != b.len() || a[1..] != b[1..] {
                    let what = "second input's trailing dims (the first's)";
                    return Err(Error::shape(NAME, what, format!("[_, {:?}]", &a[1..]), format!("{b:?}")));
                }
                [&[a[0] + b[0]], &a[1..]].concat()
            }
            Concat::Flatten => {
                let (rows, cols) = super::rows_cols(a);
                vec![rows, cols]
            }
            Concat::Regroup { cols } | Concat::Gather { cols } => {
                let len = inputs[0].len();
                if cols == 0 || !len.is_multiple_of(cols) {
                    let what = "row width (a divisor of the input's elements)";
                    return Err(Error::shape(NAME, what, format!("divides {len}"), cols));
                }
                if let Concat::Gather { .. } = self {
                    let index = inputs[1];
                    if index.dtype != DType::U32 {
                        let got = format!("{:?} {}", index.shape, index.dtype);
                        return Err(Error::shape(NAME, "index (u32 rows)", "[.., M] u32", got));
                    }
                    [&index.shape[..], &[cols]].concat()
                } else {
                    vec![len / cols, cols]
                }
            }
            Concat::Slice { start, len } => {
                if len == 0 || start + len > a[0] {
                    let what = "slice of the leading dimension";
                    return Err(Error::shape(
                        NAME,
                        what,
                        format!("within 0..{}", a[0]),
                        format!("{start}..{}", start + len),
                    ));
                }
                [&[len], &a[1..]].concat()
            }
        };
        let joined = if let Concat::Gather { .. } = self { &inputs[..1] } else { inputs };
        if joined.iter().any(|m| m.dtype != inputs[0].dtype) {
            return Err(Error::shape(NAME, "dtypes (all the same)", inputs[0].dtype, joined[joined.len() - 1].dtype));
        }
        check_u32_elements(NAME, "output", &out)?;
        Ok(Meta { shape: out, dtype: inputs[0].dtype })
    }
}
