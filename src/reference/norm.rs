//! Normalisations over the last dimension.

/// `nn.LayerNorm` over the last dim (`dim`) with biased variance.
pub fn layer_norm(x: &[f64], weight: &[f64], bias: &[f64], dim: usize, eps: f64) -> Vec<f64> {
    let mut y = Vec::with_capacity(x.len());
    for row in x.chunks(dim) {
        let mean = row.iter().sum::<f64>() / dim as f64;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / dim as f64;
        let inv_std = 1.0 / (var + eps).sqrt();
        y.extend(row.iter().zip(weight).zip(bias).map(|((v, w), b)| (v - mean) * inv_std * w + b));
    }
    y
}

/// RMSNorm over the last dim: `x / sqrt(mean(x²) + eps) · (offset + w)` (offset 1: Gemma).
pub fn rms_norm(x: &[f64], weight: &[f64], dim: usize, eps: f64, offset: f64) -> Vec<f64> {
    x.chunks(dim)
        .flat_map(|row| {
            let inv_rms = 1.0 / (row.iter().map(|v| v * v).sum::<f64>() / dim as f64 + eps).sqrt();
            row.iter().zip(weight).map(move |(v, w)| v * inv_rms * (offset + w))
        })
        .collect()
}
