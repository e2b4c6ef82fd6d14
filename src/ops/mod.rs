//! What each operation *is*, GPU-free: its configuration (GELU form, GEMM epilogue, attention
//! geometry, pooling, ToMe step, AnyRes layout, norms) and its shape and dtype rules. Both the
//! kernels and the f64 reference build on these; neither is needed to describe an op.

pub mod activation;
pub mod anyres;
pub mod attention;
pub mod concat;
pub mod elementwise;
pub mod linear;
pub mod norm;
pub mod patch;
pub mod pool;
pub mod rope;
pub mod rows;
pub mod shuffle;
pub mod tome;

pub use activation::GeluForm;
pub use anyres::AnyResLayout;
pub use attention::{Attention, Geometry, KeySplit, Mask, MaskedRows, Naive, Pass, SplitPass, segment_bounds};
pub use concat::{Concat, ZERO_ROW};
pub use elementwise::{AddRows, Convert, Repeat};
pub use linear::{Epilogue, InputNorm, Residual, interleave_rows};
pub use norm::{LayerNorm, RmsNorm};
pub use patch::PatchEmbed;
pub use pool::{AvgPool, BilinearHalf};
pub use rope::{Rope2d, RopeFrequencies, RotaryPairs};
pub use rows::{AttentionRows, EpilogueSlots, MlpRows, RowsEpilogue};
pub use shuffle::{ChannelOrder, ImageGrid, PixelShuffle};
pub use tome::{Step, Tome, TomeStep};

use crate::dtype::DType;
use crate::error::{Error, Result};

/// A tensor's shape and dtype as ops see them before anything runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: DType,
}

impl Meta {
    /// A tensor of `shape` and `dtype`.
    pub fn new(shape: &[usize], dtype: DType) -> Self {
        Self { shape: shape.to_vec(), dtype }
    }

    /// An f32 tensor of `shape`.
    pub fn f32(shape: &[usize]) -> Self {
        Self::new(shape, DType::F32)
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True for a shape with a zero dimension.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What an op expects of one input's dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operand {
    /// An activation: stored as the node's storage type, f32 or f16, and read as such.
    Activation,
    /// A parameter read as f32 whatever the activations are: bias, norm weight and bias,
    /// gate, additive mask, AnyRes newline, ToMe sizes and scores.
    Param,
    /// A GEMM weight: f32, f16 or bf16, read in the type it is stored in.
    Weight,
    /// Token indices, ranks, rows: u32.
    Index,
    /// A keep mask: u8, non-zero = keep.
    Mask,
    /// Only its shape is used.
    ShapeOnly,
}

/// Collapses all leading dimensions: `[.., K]` → `(rows, K)`.
pub fn rows_cols(shape: &[usize]) -> (usize, usize) {
    let cols = shape.last().copied().unwrap_or(0);
    (shape.iter().rev().skip(1).product(), cols)
}

/// `[.., rows, cols]` → (batch, rows, cols); rank 2 is one batch item.
pub fn batch_rows_cols(shape: &[usize]) -> (usize, usize, usize) {
    let n = shape.len();
    if n < 2 {
        return (1, 1, shape.first().copied().unwrap_or(0));
    }
    (shape[..n - 2].iter().product(), shape[n - 2], shape[n - 1])
}

/// `inputs` has exactly `n` entries.
pub fn check_arity(kernel: &'static str, inputs: &[&Meta], n: usize) -> Result<()> {
    if inputs.len() != n {
        return Err(Error::shape(kernel, "number of inputs", n, inputs.len()));
    }
    Ok(())
}

/// Rejects zero-size dimensions and, since shaders index with u32, tensors of 2^32 elements
/// or more.
pub fn check_u32_elements(kernel: &'static str, what: &str, shape: &[usize]) -> Result<()> {
    if shape.is_empty() || shape.contains(&0) {
        return Err(Error::shape(kernel, format!("{what} shape"), "every dimension >= 1", format!("{shape:?}")));
    }
    let n = shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64)).unwrap_or(u64::MAX);
    if n > u64::from(u32::MAX) {
        return Err(Error::Limit {
            kernel,
            limit: "elements per tensor (u32 indexing)",
            requested: n,
            max: u64::from(u32::MAX),
        });
    }
    Ok(())
}

/// `got` is exactly `want`.
pub fn expect_shape(kernel: &'static str, what: &str, got: &[usize], want: &[usize]) -> Result<()> {
    if got != want {
        return Err(Error::shape(kernel, format!("{what} shape"), format!("{want:?}"), format!("{got:?}")));
    }
    Ok(())
}
