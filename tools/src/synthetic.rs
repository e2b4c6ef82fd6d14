//! Random checkpoints of a connector's state dict ([`vlbridge::connectors::StateDict`]), so the
//! demo and the bench load every connector the way they load a real one, at real sizes,
//! without downloading anything.

use rand::rngs::StdRng;
use safetensors::tensor::TensorView;
use vlbridge::connectors::StateDict;
use vlbridge::weights::Weights;
use vlbridge::{DType, Error, HostData, Result};

use crate::util::normal;

/// Upstream's init scale for a tensor, from its name and rank: `nn.Linear` weights
/// N(0, 1/fan_in), norm weights 1 + N(0, 0.1²), biases N(0, 0.1²), learnable queries /
/// latents and gates N(0, 1).
fn init(rng: &mut StdRng, name: &str, shape: &[usize]) -> Vec<f32> {
    let n = shape.iter().product();
    if name.ends_with("weight") && shape.len() == 2 {
        normal(rng, n, 1.0 / (shape[1] as f32).sqrt())
    } else if name.ends_with("weight") {
        normal(rng, n, 0.1).into_iter().map(|v| 1.0 + v).collect()
    } else if name.ends_with("bias") {
        normal(rng, n, 0.1)
    } else {
        normal(rng, n, 1.0)
    }
}

/// A checkpoint of `layout` with random values, `fixed` tensors set to a value, every tensor
/// stored as `dtype` (as checkpoints ship them: f32, f16 or bf16).
pub fn checkpoint(rng: &mut StdRng, layout: &StateDict, fixed: &[(&str, f32)], dtype: DType) -> Result<Weights> {
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = layout
        .tensors
        .iter()
        .map(|(name, shape)| {
            let values = match fixed.iter().find(|(n, _)| n == name) {
                Some((_, v)) => vec![*v; shape.iter().product()],
                None => init(rng, name, shape),
            };
            Ok((name.clone(), shape.clone(), HostData::F32(&values).encode(dtype)?))
        })
        .collect::<Result<_>>()?;
    let stored = match dtype {
        DType::F16 => safetensors::Dtype::F16,
        DType::BF16 => safetensors::Dtype::BF16,
        _ => safetensors::Dtype::F32,
    };
    let file_error =
        |e: safetensors::SafeTensorError| Error::File { path: "synthetic checkpoint".into(), problem: e.to_string() };
    let views = data
        .iter()
        .map(|(name, shape, bytes)| {
            Ok((name.as_str(), TensorView::new(stored, shape.clone(), bytes).map_err(file_error)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(views, None).map_err(file_error)?;
    Weights::from_bytes(bytes, "synthetic checkpoint")
}
