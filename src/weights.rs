//! Checkpoint weights from safetensors, looked up by their upstream state-dict names.

use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::tensor::Tensor;

/// An in-memory safetensors file.
///
/// ```
/// use safetensors::tensor::TensorView;
/// use vlbridge::connectors::LlavaProjector;
/// use vlbridge::ops::GeluForm;
/// use vlbridge::weights::Weights;
/// use vlbridge::{Error, Gpu};
///
/// # fn main() -> vlbridge::Result<()> {
/// // A checkpoint under llava-hf's names, f16 on disk (as published checkpoints ship it).
/// let f16 = |n: usize| (0..n).flat_map(|i| half::f16::from_f32(i as f32 / n as f32).to_le_bytes()).collect::<Vec<u8>>();
/// let tensors = [
///     ("multi_modal_projector.linear_1.weight", vec![16, 8]),
///     ("multi_modal_projector.linear_1.bias", vec![16]),
///     ("multi_modal_projector.linear_2.weight", vec![4, 16]),
///     ("multi_modal_projector.linear_2.bias", vec![4]),
/// ];
/// let data: Vec<Vec<u8>> = tensors.iter().map(|(_, s)| f16(s.iter().product())).collect();
/// let views = tensors.iter().zip(&data).map(|((name, shape), bytes)| {
///     (*name, TensorView::new(safetensors::Dtype::F16, shape.clone(), bytes).expect("view"))
/// });
/// let bytes = safetensors::serialize(views, None).expect("serialize");
///
/// let gpu = Gpu::new()?;
/// let weights = Weights::from_bytes(bytes, "example")?;
/// let projector = LlavaProjector::from_weights(&gpu, &weights, GeluForm::Erf)?;
/// assert_eq!(projector.dims(), [8, 16, 4]);
/// // A name that is not there is an error naming it.
/// match weights.f32("multi_modal_projector.linear_3.weight", None) {
///     Err(Error::Weights { name, .. }) => assert_eq!(name, "multi_modal_projector.linear_3.weight"),
///     other => panic!("{other:?}"),
/// }
/// # Ok(())
/// # }
/// ```
pub struct Weights {
    bytes: Vec<u8>,
    origin: String,
}

impl Weights {
    /// Reads a `.safetensors` file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path)
            .map_err(|e| Error::File { path: path.display().to_string(), problem: e.to_string() })?;
        Self::from_bytes(bytes, &path.display().to_string())
    }

    /// Wraps safetensors bytes; `origin` names them in errors.
    pub fn from_bytes(bytes: Vec<u8>, origin: &str) -> Result<Self> {
        SafeTensors::deserialize(&bytes).map_err(|e| Error::File { path: origin.into(), problem: e.to_string() })?;
        Ok(Self { bytes, origin: origin.into() })
    }

    fn parsed(&self) -> Result<SafeTensors<'_>> {
        SafeTensors::deserialize(&self.bytes)
            .map_err(|e| Error::File { path: self.origin.clone(), problem: e.to_string() })
    }

    /// Every tensor name in the file.
    pub fn names(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self.parsed()?.names().into_iter().map(str::to_string).collect();
        names.sort();
        Ok(names)
    }

    /// The first of `aliases` present in the file, or an error listing them all.
    pub fn resolve<'a>(&self, aliases: &[&'a str]) -> Result<&'a str> {
        let st = self.parsed()?;
        aliases.iter().copied().find(|n| st.tensor(n).is_ok()).ok_or_else(|| Error::Weights {
            name: aliases.first().copied().unwrap_or("").to_string(),
            problem: format!("not found in {} (also looked for {:?})", self.origin, &aliases[1.min(aliases.len())..]),
        })
    }

    /// Shape of tensor `name`.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        let st = self.parsed()?;
        let view = st.tensor(name).map_err(|e| Error::Weights { name: name.into(), problem: e.to_string() })?;
        Ok(view.shape().to_vec())
    }

    /// Tensor `name` widened to f32 (f32, f16 and bf16 on disk), checked against `shape`
    /// when given.
    pub fn f32(&self, name: &str, shape: Option<&[usize]>) -> Result<Vec<f32>> {
        let st = self.parsed()?;
        let view = st
            .tensor(name)
            .map_err(|e| Error::Weights { name: name.into(), problem: format!("{e} in {}", self.origin) })?;
        if let Some(shape) = shape
            && view.shape() != shape
        {
            return Err(Error::Weights {
                name: name.into(),
                problem: format!("shape {:?}, expected {shape:?}", view.shape()),
            });
        }
        let data = view.data();
        Ok(match view.dtype() {
            Dtype::F32 => bytemuck::pod_collect_to_vec(data),
            Dtype::F16 => bytemuck::pod_collect_to_vec::<u8, half::f16>(data).iter().map(|h| h.to_f32()).collect(),
            Dtype::BF16 => bytemuck::pod_collect_to_vec::<u8, half::bf16>(data).iter().map(|h| h.to_f32()).collect(),
            other => {
                return Err(Error::Weights {
                    name: name.into(),
                    problem: format!("dtype {other:?}, expected a float type (f32, f16, bf16)"),
                });
            }
        })
    }

    /// Raw little-endian integers (u8 / i64 bookkeeping tensors) widened to i64.
    pub fn i64(&self, name: &str) -> Result<Vec<i64>> {
        let st = self.parsed()?;
        let view = st.tensor(name).map_err(|e| Error::Weights { name: name.into(), problem: e.to_string() })?;
        let data = view.data();
        Ok(match view.dtype() {
            Dtype::I64 => bytemuck::pod_collect_to_vec(data),
            Dtype::U8 => data.iter().map(|&b| i64::from(b)).collect(),
            other => {
                return Err(Error::Weights {
                    name: name.into(),
                    problem: format!("dtype {other:?}, expected an integer type"),
                });
            }
        })
    }

    /// Uploads the first present alias in its stored dtype, bytes as they are on disk (no
    /// conversion pass): f32, f16 or bf16, which the GEMMs read directly. f16 is widened to
    /// f32 on the host only when the device lacks `SHADER_F16`.
    pub fn upload_native(&self, gpu: &Gpu, aliases: &[&str], shape: &[usize]) -> Result<Tensor> {
        let name = self.resolve(aliases)?;
        let stored = self.shape(name)?;
        if stored != shape {
            return Err(Error::Weights { name: name.into(), problem: format!("shape {stored:?}, expected {shape:?}") });
        }
        self.upload_rows(gpu, &[name], shape)
    }

    /// Tensors `names` (all `[rows_i, ..shape[1..]]`) stacked along their first dimension into
    /// one GPU tensor of `shape`, in the dtype they share on disk when the GEMMs read it (f32,
    /// bf16; f16 where the device has `SHADER_F16`): their bytes are concatenated as they are.
    /// Mixed dtypes, or f16 on a device without it, are widened to f32 on the host.
    pub fn upload_rows(&self, gpu: &Gpu, names: &[&str], shape: &[usize]) -> Result<Tensor> {
        let st = self.parsed()?;
        let views = names
            .iter()
            .map(|name| st.tensor(name).map_err(|e| Error::Weights { name: (*name).into(), problem: e.to_string() }))
            .collect::<Result<Vec<_>>>()?;
        let f16_readable = gpu.features().contains(wgpu::Features::SHADER_F16);
        let native = match views.first().map(|v| v.dtype()) {
            Some(Dtype::F16) if f16_readable => Some(DType::F16),
            Some(Dtype::BF16) => Some(DType::BF16),
            _ => None,
        };
        match native {
            Some(dtype) if views.iter().all(|v| v.dtype() == views[0].dtype()) => {
                let bytes: Vec<u8> = views.iter().flat_map(|v| v.data().iter().copied()).collect();
                Tensor::from_bytes(gpu, shape, dtype, &bytes)
            }
            _ => {
                let mut data = Vec::new();
                for name in names {
                    data.extend(self.f32(name, None)?);
                }
                Tensor::from_f32(gpu, shape, &data)
            }
        }
    }

    /// Uploads the first present alias as an f32 tensor of the given shape.
    pub fn upload(&self, gpu: &Gpu, aliases: &[&str], shape: &[usize]) -> Result<Tensor> {
        let name = self.resolve(aliases)?;
        Tensor::from_f32(gpu, shape, &self.f32(name, Some(shape))?)
    }
}
