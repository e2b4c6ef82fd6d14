//! Checkpoint weights from safetensors, looked up by their upstream state-dict names.

use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::tensor::{DType, Tensor};

/// An in-memory safetensors file.
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
        let st = self.parsed()?;
        let view = st.tensor(name).map_err(|e| Error::Weights { name: name.into(), problem: e.to_string() })?;
        if view.shape() != shape {
            return Err(Error::Weights {
                name: name.into(),
                problem: format!("shape {:?}, expected {shape:?}", view.shape()),
            });
        }
        let f16_readable = gpu.features().contains(wgpu::Features::SHADER_F16);
        match view.dtype() {
            Dtype::F16 if f16_readable => Tensor::from_bytes(gpu, shape, DType::F16, view.data()),
            Dtype::BF16 => Tensor::from_bytes(gpu, shape, DType::BF16, view.data()),
            _ => Tensor::from_f32(gpu, shape, &self.f32(name, Some(shape))?),
        }
    }

    /// Uploads the first present alias as an f32 tensor of the given shape.
    pub fn upload(&self, gpu: &Gpu, aliases: &[&str], shape: &[usize]) -> Result<Tensor> {
        let name = self.resolve(aliases)?;
        Tensor::from_f32(gpu, shape, &self.f32(name, Some(shape))?)
    }
}
