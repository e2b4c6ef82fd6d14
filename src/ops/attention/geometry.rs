//! Where an attention node's queries, keys, values and outputs live, as the kernels and the
//! reference index them.

/// Where queries, keys, values and outputs live for one attention node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    /// Batch items.
    pub batch: usize,
    /// Queries per item.
    pub queries: usize,
    /// Keys of the first source per item.
    pub keys_a: usize,
    /// Keys of the second source per item (0: one source).
    pub keys_b: usize,
    /// Attention heads.
    pub heads: usize,
    /// Key/value heads (each serves `heads / kv_heads` query heads).
    pub kv_heads: usize,
    /// Dimension per head.
    pub head_dim: usize,
    /// Elements per query row.
    pub q_stride: usize,
    /// Column of head 0's query.
    pub q_offset: usize,
    /// Elements per row of the first source.
    pub kv_stride_a: usize,
    /// Elements per row of the second source.
    pub kv_stride_b: usize,
    /// Column of head 0's key in a K/V row.
    pub k_offset: usize,
    /// Column of head 0's value in a K/V row.
    pub v_offset: usize,
    /// Column of head 0's key in a row of the second source.
    pub k_offset_b: usize,
    /// Column of head 0's value in a row of the second source.
    pub v_offset_b: usize,
    /// Applied to q before the dot product.
    pub scale: f32,
    /// The q/k RMSNorm's eps (when the attention has one).
    pub norm_eps: f32,
}

impl Geometry {
    /// Keys per batch item, both sources.
    pub fn keys(&self) -> usize {
        self.keys_a + self.keys_b
    }

    /// (batch · heads · queries) rows of scores.
    pub fn rows(&self) -> usize {
        self.batch * self.heads * self.queries
    }

    /// `(k_offset, v_offset)` of key `j`'s source.
    pub fn offsets_of(&self, j: usize) -> (usize, usize) {
        if j < self.keys_a { (self.k_offset, self.v_offset) } else { (self.k_offset_b, self.v_offset_b) }
    }

    /// The key/value head query head `h` reads.
    pub fn kv_head(&self, h: usize) -> usize {
        h / (self.heads / self.kv_heads.max(1)).max(1)
    }
}
