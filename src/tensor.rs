//! Tensors: a GPU buffer with a row-major shape and an element type.

use crate::error::{Error, Result};
use crate::gpu::Gpu;

/// Element type of a tensor's storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16 (needs `SHADER_F16` for kernels to read it).
    F16,
    /// bfloat16, as checkpoints store it; kernels read pairs of them as `u32` words and
    /// unpack with a shift, so no device feature is needed.
    BF16,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// Name as in safetensors / numpy.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A row-major tensor living in a GPU buffer. Cloning shares the buffer.
///
/// ```
/// use vlbridge::{DType, Gpu, Tensor};
///
/// # fn main() -> vlbridge::Result<()> {
/// let gpu = Gpu::new()?;
/// let t = Tensor::from_f32(&gpu, &[2, 2], &[1.0, 2.0, 3.0, 4.0])?;
/// assert_eq!(t.to_f32(&gpu)?, [1.0, 2.0, 3.0, 4.0]);
/// // bf16 as checkpoints store it (no conversion pass); reads widen exactly.
/// let w = Tensor::from_bf16(&gpu, &[3], &[half::bf16::from_f32(0.5); 3])?;
/// assert_eq!((w.dtype(), w.to_f32(&gpu)?), (DType::BF16, vec![0.5; 3]));
/// // Wrong element counts are errors, not truncations.
/// assert!(Tensor::from_f32(&gpu, &[2, 2], &[1.0]).is_err());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Tensor {
    buffer: wgpu::Buffer,
    shape: Vec<usize>,
    dtype: DType,
}

/// Usage every vlbridge tensor buffer has: bound as storage, copied in and out.
pub(crate) const TENSOR_USAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

impl Tensor {
    /// A zero-filled tensor.
    pub fn zeros(gpu: &Gpu, shape: &[usize], dtype: DType) -> Result<Self> {
        let bytes = checked_bytes(gpu, "tensor", shape, dtype)?;
        let buffer = gpu.scoped("allocating a tensor", || {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("vlbridge tensor"),
                size: bytes,
                usage: TENSOR_USAGE,
                mapped_at_creation: false,
            })
        })?;
        Ok(Self { buffer, shape: shape.to_vec(), dtype })
    }

    /// Uploads f32 data.
    pub fn from_f32(gpu: &Gpu, shape: &[usize], data: &[f32]) -> Result<Self> {
        Self::from_f32_as(gpu, shape, data, DType::F32)
    }

    /// Uploads f32 data stored as `dtype` (f16 and bf16 rounded to nearest on the host), for
    /// weights given as f32 but meant to be read in a narrow type.
    pub fn from_f32_as(gpu: &Gpu, shape: &[usize], data: &[f32], dtype: DType) -> Result<Self> {
        let t = Self::zeros(gpu, shape, dtype)?;
        t.write_f32(gpu, data)?;
        Ok(t)
    }

    /// Uploads f16 data.
    pub fn from_f16(gpu: &Gpu, shape: &[usize], data: &[half::f16]) -> Result<Self> {
        let t = Self::zeros(gpu, shape, DType::F16)?;
        t.write_bytes(gpu, "f16 data", data.len(), bytemuck::cast_slice(data))?;
        Ok(t)
    }

    /// Uploads bf16 data as it is (no conversion pass).
    pub fn from_bf16(gpu: &Gpu, shape: &[usize], data: &[half::bf16]) -> Result<Self> {
        Self::from_bytes(gpu, shape, DType::BF16, bytemuck::cast_slice(data))
    }

    /// Uploads raw little-endian elements of `dtype` (a checkpoint's bytes as they are on
    /// disk).
    pub fn from_bytes(gpu: &Gpu, shape: &[usize], dtype: DType, bytes: &[u8]) -> Result<Self> {
        let t = Self::zeros(gpu, shape, dtype)?;
        if !bytes.len().is_multiple_of(dtype.size()) {
            return Err(Error::shape(
                "tensor",
                format!("{dtype} byte length"),
                format!("a multiple of {}", dtype.size()),
                bytes.len(),
            ));
        }
        t.write_bytes(gpu, "raw data", bytes.len() / dtype.size(), bytes)?;
        Ok(t)
    }

    /// Wraps a buffer the caller owns (a host engine's activations). The buffer needs
    /// `STORAGE` usage, plus `COPY_SRC`/`COPY_DST` for [`Tensor::to_f32`] / writes.
    pub fn from_buffer(buffer: wgpu::Buffer, shape: &[usize], dtype: DType) -> Result<Self> {
        let need = element_count("tensor", shape)? as u64 * dtype.size() as u64;
        if buffer.size() < need {
            return Err(Error::shape("tensor", "buffer size in bytes", format!(">= {need}"), buffer.size()));
        }
        if !buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(Error::shape("tensor", "buffer usage", "STORAGE", format!("{:?}", buffer.usage())));
        }
        Ok(Self { buffer, shape: shape.to_vec(), dtype })
    }

    /// Overwrites the contents with f32 data of the same element count, rounded to nearest
    /// on the host where the tensor is f16 or bf16.
    pub fn write_f32(&self, gpu: &Gpu, data: &[f32]) -> Result<()> {
        match self.dtype {
            DType::F32 => self.write_bytes(gpu, "f32 data", data.len(), bytemuck::cast_slice(data)),
            DType::F16 => {
                let halves: Vec<half::f16> = data.iter().map(|&v| half::f16::from_f32(v)).collect();
                self.write_bytes(gpu, "f32 data", data.len(), bytemuck::cast_slice(&halves))
            }
            DType::BF16 => {
                let halves: Vec<half::bf16> = data.iter().map(|&v| half::bf16::from_f32(v)).collect();
                self.write_bytes(gpu, "f32 data", data.len(), bytemuck::cast_slice(&halves))
            }
        }
    }

    fn write_bytes(&self, gpu: &Gpu, what: &str, len: usize, bytes: &[u8]) -> Result<()> {
        if len != self.len() {
            return Err(Error::shape("tensor", format!("{what} length for shape {:?}", self.shape), self.len(), len));
        }
        // write_buffer needs a multiple of 4 bytes; an odd f16 count gets one padding element.
        if bytes.len().is_multiple_of(4) {
            gpu.queue.write_buffer(&self.buffer, 0, bytes);
        } else {
            let mut padded = bytes.to_vec();
            padded.resize(bytes.len().next_multiple_of(4), 0);
            gpu.queue.write_buffer(&self.buffer, 0, &padded);
        }
        Ok(())
    }

    /// Downloads as f32 (f16 and bf16 storage is widened exactly).
    pub fn to_f32(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        let bytes = read_buffer(gpu, &self.buffer, self.byte_len())?;
        let halves = &bytes[..self.len() * 2];
        Ok(match self.dtype {
            DType::F32 => bytemuck::pod_collect_to_vec(&bytes[..self.len() * 4]),
            DType::F16 => bytemuck::pod_collect_to_vec::<u8, half::f16>(halves).iter().map(|h| h.to_f32()).collect(),
            DType::BF16 => bytemuck::pod_collect_to_vec::<u8, half::bf16>(halves).iter().map(|h| h.to_f32()).collect(),
        })
    }

    /// Downloads as f16 (f32 storage is rounded to nearest).
    pub fn to_f16(&self, gpu: &Gpu) -> Result<Vec<half::f16>> {
        Ok(match self.dtype {
            DType::F16 => {
                let bytes = read_buffer(gpu, &self.buffer, self.byte_len())?;
                bytemuck::pod_collect_to_vec(&bytes[..self.len() * 2])
            }
            DType::F32 | DType::BF16 => self.to_f32(gpu)?.into_iter().map(half::f16::from_f32).collect(),
        })
    }

    /// Shape, row-major.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when the tensor has no elements (never for tensors vlbridge creates).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The underlying buffer, for a host engine to bind.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    fn byte_len(&self) -> u64 {
        (self.len() * self.dtype.size()).next_multiple_of(4) as u64
    }
}

/// Element count of `shape`, rejecting empty shapes and zero-size dimensions.
pub(crate) fn element_count(kernel: &'static str, shape: &[usize]) -> Result<usize> {
    if shape.is_empty() || shape.contains(&0) {
        return Err(Error::shape(kernel, "tensor shape", "non-empty with every dimension >= 1", format!("{shape:?}")));
    }
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or(Error::Limit {
        kernel,
        limit: "element count",
        requested: u64::MAX,
        max: usize::MAX as u64,
    })
}

/// Byte size of a buffer for `shape`, checked against the device's buffer size limit. (The
/// binding limit is checked where a tensor is bound: a GEMM binds large weights in chunks.)
pub(crate) fn checked_bytes(gpu: &Gpu, kernel: &'static str, shape: &[usize], dtype: DType) -> Result<u64> {
    let bytes = (element_count(kernel, shape)? as u64 * dtype.size() as u64).next_multiple_of(4);
    let max = gpu.limits().max_buffer_size;
    if bytes > max {
        return Err(Error::Limit { kernel, limit: "buffer size in bytes", requested: bytes, max });
    }
    Ok(bytes)
}

/// Rejects a binding of `bytes` over the device's storage binding limit.
pub(crate) fn check_binding(gpu: &Gpu, kernel: &'static str, bytes: u64) -> Result<()> {
    let max = gpu.limits().max_storage_buffer_binding_size;
    if bytes > max {
        return Err(Error::Limit { kernel, limit: "storage binding size in bytes", requested: bytes, max });
    }
    Ok(())
}

/// Copies `bytes` bytes of `buffer` to the host.
pub(crate) fn read_buffer(gpu: &Gpu, buffer: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
    let staging = gpu.scoped("reading back", || {
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("vlbridge readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, bytes);
        gpu.queue.submit([encoder.finish()]);
        staging
    })?;
    let (tx, rx) = std::sync::mpsc::channel();
    staging.map_async(wgpu::MapMode::Read, .., move |r| {
        let _ = tx.send(r);
    });
    gpu.wait("reading back")?;
    rx.recv()
        .map_err(|_| Error::device("reading back", "map callback never ran"))?
        .map_err(|e| Error::device("reading back", e.to_string()))?;
    let data = staging.get_mapped_range(..).map_err(|e| Error::device("reading back", e.to_string()))?.to_vec();
    staging.unmap();
    Ok(data)
}
