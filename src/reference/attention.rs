use crate::ops::Geometry;

/// open_flamingo's masked-logit fill value, `-finfo(float32).max`.
pub const MASK_FILL: f64 = -(f32::MAX as f64);

/// A mask input as the reference reads it.
#[derive(Debug, Clone, Copy)]
pub enum MaskInput<'a> {
    /// `[batch, queries, keys]`, 0 = masked: the logit becomes [`MASK_FILL`].
    Keep(&'a [f64]),
    /// `[batch, queries, keys]` added to the logit.
    Additive(&'a [f64]),
    /// `[batch, keys]`, 0 = a padded key, masked for every query (its logit [`MASK_FILL`]).
    Keys(&'a [f64]),
    /// `[batch, queries, 2]`: query i attends keys `start .. end` only (block-diagonal).
    Segments(&'a [f64]),
    /// `[batch, tokens]`, 0 = padding: a padding query's padding keys are masked (their logit
    /// [`MASK_FILL`]); every other pair attends.
    PadPairs(&'a [f64]),
}

impl<'a> MaskInput<'a> {
    /// The keep mask, if this is one.
    pub fn keep(self) -> Option<&'a [f64]> {
        match self {
            MaskInput::Keep(m) => Some(m),
            MaskInput::Additive(_) | MaskInput::Keys(_) | MaskInput::Segments(_) | MaskInput::PadPairs(_) => None,
        }
    }

    /// Whether query `i` of batch item `b` attends key `j` (an additive mask keeps every key).
    pub fn keeps(self, b: usize, i: usize, j: usize, queries: usize, keys: usize) -> bool {
        match self {
            MaskInput::Keep(m) => m[(b * queries + i) * keys + j] != 0.0,
            MaskInput::Keys(m) => m[b * keys + j] != 0.0,
            MaskInput::PadPairs(m) => m[b * keys + i] != 0.0 || m[b * keys + j] != 0.0,
            MaskInput::Segments(m) => {
                let row = 2 * (b * queries + i);
                (m[row]..m[row + 1]).contains(&(j as f64))
            }
            MaskInput::Additive(_) => true,
        }
    }

    /// Whether key `j` is no part of query `i`'s attention at all: outside its segment
    /// (upstream attends each segment on its own, so those values never enter, not even times
    /// a zero weight, which would carry their NaNs). Other masks weight keys by zero.
    pub fn excludes(self, b: usize, i: usize, j: usize, queries: usize, keys: usize) -> bool {
        matches!(self, MaskInput::Segments(_)) && !self.keeps(b, i, j, queries, keys)
    }
}

/// `v / rms(v) · w` (RMSNorm over one head).
fn rms_normed(v: &[f64], w: &[f64], eps: f64) -> Vec<f64> {
    let inv = 1.0 / (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64 + eps).sqrt();
    v.iter().zip(w).map(|(x, w)| x * inv * w).collect()
}

/// Where key `j` of batch item `b` lives: its source's row, read in place.
fn key_row<'a>(p: &Geometry, kv: [&'a [f64]; 2], b: usize, j: usize) -> &'a [f64] {
    let (keys_a, keys_b) = (p.keys_a, p.keys_b);
    let (src, stride, r) = if j < keys_a {
        (kv[0], p.kv_stride_a, b * keys_a + j)
    } else {
        (kv[1], p.kv_stride_b, b * keys_b + j - keys_a)
    };
    &src[r * stride..(r + 1) * stride]
}

/// Attention logits `[batch, heads, queries, keys]` with the layout of the attention kernels
/// (`p`): `(q·scale)·k` (query head `h` reading key/value head `p.kv_head(h)`), each head of q
/// and k RMS-normalised first with `norms` (`[2, head_dim]`: q's weight, then k's) when given;
/// then [`MASK_FILL`] where a keep or key mask is 0, or plus an additive mask.
pub fn attention_scores(
    p: &Geometry,
    q: &[f64],
    kv: [&[f64]; 2],
    mask: Option<MaskInput<'_>>,
    norms: Option<&[f64]>,
) -> Vec<f64> {
    let (batch, queries, heads, head_dim) = (p.batch, p.queries, p.heads, p.head_dim);
    let keys = p.keys();
    let eps = f64::from(p.norm_eps);
    let norm = |v: &[f64], which: usize| match norms {
        Some(w) => rms_normed(v, &w[which * head_dim..(which + 1) * head_dim], eps),
        None => v.to_vec(),
    };
    let mut scores = Vec::with_capacity(batch * heads * queries * keys);
    for b in 0..batch {
        for h in 0..heads {
            let head = p.kv_head(h) * head_dim;
            let keys_normed: Vec<Vec<f64>> = (0..keys)
                .map(|j| {
                    let k0 = p.offsets_of(j).0 + head;
                    norm(&key_row(p, kv, b, j)[k0..k0 + head_dim], 1)
                })
                .collect();
            for i in 0..queries {
                let q0 = (b * queries + i) * p.q_stride + p.q_offset + h * head_dim;
                let qh: Vec<f64> = norm(&q[q0..q0 + head_dim], 0).iter().map(|v| v * f64::from(p.scale)).collect();
                scores.extend(keys_normed.iter().enumerate().map(|(j, kh)| {
                    let at = (b * queries + i) * keys + j;
                    let dot = || qh.iter().zip(kh).map(|(a, c)| a * c).sum::<f64>();
                    match mask {
                        Some(MaskInput::Additive(m)) => dot() + m[at],
                        Some(m) if !m.keeps(b, i, j, queries, keys) => MASK_FILL,
                        _ => dot(),
                    }
                }));
            }
        }
    }
    scores
}

/// Softmax of each row of `scores` `[batch, heads, queries, keys]` (max subtracted first).
/// With `zero_masked_rows`, rows whose mask keeps nothing are zero instead of uniform.
pub fn softmax_rows(
    scores: &[f64],
    keys: usize,
    queries: usize,
    heads: usize,
    mask: Option<&[f64]>,
    zero_masked_rows: bool,
) -> Vec<f64> {
    let mut out = Vec::with_capacity(scores.len());
    for (r, row) in scores.chunks(keys).enumerate() {
        let (i, b) = (r % queries, r / (queries * heads));
        let mask_row = mask.map(|m| &m[(b * queries + i) * keys..(b * queries + i + 1) * keys]);
        if zero_masked_rows && mask_row.is_some_and(|m| m.iter().all(|&k| k == 0.0)) {
            out.extend(std::iter::repeat_n(0.0, keys));
            continue;
        }
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = row.iter().map(|l| (l - max).exp()).sum();
        out.extend(row.iter().map(|l| (l - max).exp() / sum));
    }
    out
}

/// `weights · V`: `[batch, queries, heads·head_dim]` from weights `[batch, heads, queries,
/// keys]` and the value columns of the key/value sources; the keys a segment `mask` excludes
/// are skipped ([`MaskInput::excludes`]).
pub fn weighted_sum(p: &Geometry, weights: &[f64], kv: [&[f64]; 2], mask: Option<MaskInput<'_>>) -> Vec<f64> {
    let (batch, queries, heads, head_dim) = (p.batch, p.queries, p.heads, p.head_dim);
    let keys = p.keys();
    let width = heads * head_dim;
    let mut out = vec![0.0; batch * queries * width];
    for b in 0..batch {
        for h in 0..heads {
            let head = p.kv_head(h) * head_dim;
            for i in 0..queries {
                let o = (b * queries + i) * width + h * head_dim;
                let w = &weights[((b * heads + h) * queries + i) * keys..][..keys];
                for (j, wj) in w.iter().enumerate() {
                    if mask.is_some_and(|m| m.excludes(b, i, j, queries, keys)) {
                        continue;
                    }
                    let v0 = p.offsets_of(j).1 + head;
                    for (acc, v) in out[o..o + head_dim].iter_mut().zip(&key_row(p, kv, b, j)[v0..v0 + head_dim]) {
                        *acc += wj * v;
                    }
                }
            }
        }
    }
    out
}

/// Whole multi-head attention: [`weighted_sum`] of the [`softmax_rows`] of the
/// [`attention_scores`], the keys outside a query's segment taking no part in its softmax
/// (upstream attends each segment alone).
pub fn attention(
    p: &Geometry,
    zero_masked_rows: bool,
    q: &[f64],
    kv: [&[f64]; 2],
    mask: Option<MaskInput<'_>>,
    norms: Option<&[f64]>,
) -> Vec<f64> {
    let mut scores = attention_scores(p, q, kv, mask, norms);
    if let Some(m @ MaskInput::Segments(_)) = mask {
        let keys = p.keys();
        for (r, row) in scores.chunks_mut(keys).enumerate() {
            let (i, b) = (r % p.queries, r / (p.queries * p.heads));
            for (j, s) in row.iter_mut().enumerate() {
                if m.excludes(b, i, j, p.queries, keys) {
                    *s = f64::NEG_INFINITY;
                }
            }
        }
    }
    let weights = softmax_rows(&scores, p.keys(), p.queries, p.heads, mask.and_then(MaskInput::keep), zero_masked_rows);
    weighted_sum(p, &weights, kv, mask)
}

/// The partials pass of the key-split attention: for each `[batch, heads, queries]` row and
/// each chunk of `chunk_keys` keys, the record `[m, Σ exp(l - m), kept, Σ exp(l - m)·v]` over
/// the chunk's logits l, with m their max (at least [`MASK_FILL`], as the kernels start from
/// it) and kept 1 where a key is attended (no keep mask: any key).
pub fn attention_partials(
    p: &Geometry,
    [chunks, chunk_keys]: [usize; 2],
    q: &[f64],
    kv: [&[f64]; 2],
    mask: Option<MaskInput<'_>>,
    norms: Option<&[f64]>,
) -> Vec<f64> {
    let keys = p.keys();
    let scores = attention_scores(p, q, kv, mask, norms);
    let head_dim = p.head_dim;
    let mut out = Vec::with_capacity(scores.len() / keys.max(1) * chunks * (3 + head_dim));
    for (r, row) in scores.chunks(keys).enumerate() {
        let (i, h, b) = (r % p.queries, (r / p.queries) % p.heads, r / (p.queries * p.heads));
        let v0 = |j: usize| p.offsets_of(j).1 + p.kv_head(h) * head_dim;
        for c in 0..chunks {
            let span = (c * chunk_keys).min(keys)..((c + 1) * chunk_keys).min(keys);
            let m = row[span.clone()].iter().copied().fold(MASK_FILL, f64::max);
            let kept = span.clone().any(|j| mask.is_none_or(|m| m.keeps(b, i, j, p.queries, keys)));
            let mut values = vec![0.0; head_dim];
            let mut sum = 0.0;
            for j in span {
                if mask.is_some_and(|m| m.excludes(b, i, j, p.queries, keys)) {
                    continue;
                }
                let w = (row[j] - m).exp();
                sum += w;
                for (acc, v) in values.iter_mut().zip(&key_row(p, kv, b, j)[v0(j)..v0(j) + head_dim]) {
                    *acc += w * v;
                }
            }
            out.extend([m, sum, f64::from(u8::from(kept))]);
            out.extend(values);
        }
    }
    out
}

/// The combine pass of the key-split attention: `[batch, queries, heads·head_dim]` from the
/// partials `[batch, heads, queries, chunks, 3 + head_dim]` of [`attention_partials`], rows
/// no chunk kept a key zeroed (as `0 · mean`) when `zero_masked_rows`.
pub fn attention_combine(
    partials: &[f64],
    [batch, heads, queries, chunks, head_dim]: [usize; 5],
    zero_masked_rows: bool,
) -> Vec<f64> {
    let record = 3 + head_dim;
    let width = heads * head_dim;
    let mut out = vec![0.0; batch * queries * width];
    for (r, row) in partials.chunks(chunks * record).enumerate() {
        let (i, h, b) = (r % queries, (r / queries) % heads, r / (queries * heads));
        let records = || row.chunks(record);
        let m = records().map(|c| c[0]).fold(MASK_FILL, f64::max);
        let kept = records().any(|c| c[2] != 0.0);
        let total: f64 = records().map(|c| c[1] * (c[0] - m).exp()).sum();
        let o = (b * queries + i) * width + h * head_dim;
        for (d, y) in out[o..o + head_dim].iter_mut().enumerate() {
            let mean = records().map(|c| c[3 + d] * (c[0] - m).exp()).sum::<f64>() / total;
            *y = if zero_masked_rows && !kept { 0.0 * mean } else { mean };
        }
    }
    out
}
