//! Tensors: a GPU buffer with a row-major shape and an element type, and the device it lives on.

use crate::dtype::{DType, HostData, HostVec};
use crate::error::{Error, Result};
use crate::gpu::Gpu;

/// A row-major tensor living in a GPU buffer. Cloning shares the buffer. A tensor knows its
/// device, so reading it back needs nothing else.
///
/// ```
/// use vlbridge::{DType, Gpu, Tensor};
///
/// # fn main() -> vlbridge::Result<()> {
/// let gpu = Gpu::new()?;
/// let t = Tensor::from_f32(&gpu, &[2, 2], &[1.0, 2.0, 3.0, 4.0])?;
/// assert_eq!(t.to_f32()?, [1.0, 2.0, 3.0, 4.0]);
/// // bf16 as checkpoints store it (no conversion pass); reads widen exactly.
/// let w = Tensor::from_bf16(&gpu, &[3], &[half::bf16::from_f32(0.5); 3])?;
/// assert_eq!((w.dtype(), w.to_f32()?), (DType::BF16, vec![0.5; 3]));
/// // Indices are integers.
/// let rows = Tensor::from_data(&gpu, &[3], DType::U32, (&[7u32, 0, 2][..]).into())?;
/// assert_eq!(rows.read()?.as_u32(), Some(&[7u32, 0, 2][..]));
/// // Wrong element counts are errors, not truncations.
/// assert!(Tensor::from_f32(&gpu, &[2, 2], &[1.0]).is_err());
/// // A reshape shares the buffer; it keeps the element count.
/// assert_eq!(t.reshape(&[1, 4])?.to_f32()?, [1.0, 2.0, 3.0, 4.0]);
/// assert!(t.reshape(&[3]).is_err());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Tensor {
    gpu: Gpu,
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
        let buffer = gpu.scoped("allocating a tensor", || new_buffer(gpu, bytes, "vlbridge tensor"))?;
        Ok(Self { gpu: gpu.clone(), buffer, shape: shape.to_vec(), dtype })
    }

    /// An [`Error::OtherDevice`] unless it lives on `gpu`'s device; `what` names it.
    pub(crate) fn check_device(&self, gpu: &Gpu, what: impl FnOnce() -> String) -> Result<()> {
        if self.gpu.same_device(gpu) {
            return Ok(());
        }
        Err(Error::OtherDevice { what: what(), ours: gpu.describe(), theirs: self.gpu.describe() })
    }

    /// Uploads f32 data.
    pub fn from_f32(gpu: &Gpu, shape: &[usize], data: &[f32]) -> Result<Self> {
        Self::from_data(gpu, shape, DType::F32, HostData::F32(data))
    }

    /// Uploads f32 data stored as `dtype` (f16 and bf16 rounded to nearest on the host), for
    /// weights given as f32 but meant to be read in a narrow type.
    pub fn from_f32_as(gpu: &Gpu, shape: &[usize], data: &[f32], dtype: DType) -> Result<Self> {
        Self::from_data(gpu, shape, dtype, HostData::F32(data))
    }

    /// Uploads f16 data.
    pub fn from_f16(gpu: &Gpu, shape: &[usize], data: &[half::f16]) -> Result<Self> {
        Self::from_data(gpu, shape, DType::F16, HostData::F16(data))
    }

    /// Uploads bf16 data as it is (no conversion pass).
    pub fn from_bf16(gpu: &Gpu, shape: &[usize], data: &[half::bf16]) -> Result<Self> {
        Self::from_bytes(gpu, shape, DType::BF16, bytemuck::cast_slice(data))
    }

    /// Uploads `data` into a new tensor of `dtype` (see [`HostData`] for what fills what).
    pub fn from_data(gpu: &Gpu, shape: &[usize], dtype: DType, data: HostData<'_>) -> Result<Self> {
        let t = Self::zeros(gpu, shape, dtype)?;
        t.write(data)?;
        Ok(t)
    }

    /// Uploads raw little-endian elements of `dtype` (a checkpoint's bytes as they are on
    /// disk).
    pub fn from_bytes(gpu: &Gpu, shape: &[usize], dtype: DType, bytes: &[u8]) -> Result<Self> {
        let t = Self::zeros(gpu, shape, dtype)?;
        t.write_bytes(bytes)?;
        Ok(t)
    }

    /// Wraps a buffer the caller owns (a host engine's activations) on `gpu`'s device. The
    /// buffer needs `STORAGE` usage, plus `COPY_SRC`/`COPY_DST` for reads and writes.
    pub fn from_buffer(gpu: &Gpu, buffer: wgpu::Buffer, shape: &[usize], dtype: DType) -> Result<Self> {
        let need = element_count("tensor", shape)? as u64 * dtype.size() as u64;
        if buffer.size() < need {
            return Err(Error::shape("tensor", "buffer size in bytes", format!(">= {need}"), buffer.size()));
        }
        if !buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(Error::shape("tensor", "buffer usage", "STORAGE", format!("{:?}", buffer.usage())));
        }
        Ok(Self { gpu: gpu.clone(), buffer, shape: shape.to_vec(), dtype })
    }

    /// The same buffer under another shape of the same element count (no copy).
    pub fn reshape(&self, shape: &[usize]) -> Result<Self> {
        let len = element_count("tensor", shape)?;
        if len != self.len() {
            return Err(Error::shape("tensor", "reshaped element count", self.len(), len));
        }
        Ok(Self { shape: shape.to_vec(), ..self.clone() })
    }

    /// Overwrites the contents with `data` of the same element count (f32 data is rounded
    /// to nearest where the tensor is f16 or bf16).
    pub fn write(&self, data: HostData<'_>) -> Result<()> {
        if data.len() != self.len() {
            return Err(Error::shape(
                "tensor",
                format!("data length for shape {:?}", self.shape),
                self.len(),
                data.len(),
            ));
        }
        self.write_bytes(&data.encode(self.dtype)?)
    }

    /// Overwrites the contents with f32 data (see [`Tensor::write`]).
    pub fn write_f32(&self, data: &[f32]) -> Result<()> {
        self.write(HostData::F32(data))
    }

    /// Writes raw bytes at byte `offset` (both whole words): checkpoint data streamed in
    /// chunks straight from a memory map.
    pub(crate) fn write_at(&self, offset: u64, bytes: &[u8]) -> Result<()> {
        let end = offset + bytes.len() as u64;
        if !offset.is_multiple_of(4) || !bytes.len().is_multiple_of(4) || end > self.byte_len() {
            let what = format!("byte range of a {}-byte tensor (whole words)", self.byte_len());
            return Err(Error::shape("tensor", what, "in range and 4-aligned", format!("{offset}..{end}")));
        }
        self.gpu.queue().write_buffer(&self.buffer, offset, bytes);
        Ok(())
    }

    fn write_bytes(&self, bytes: &[u8]) -> Result<()> {
        if bytes.len() != self.len() * self.dtype.size() {
            return Err(Error::shape(
                "tensor",
                format!("{} bytes for shape {:?}", self.dtype, self.shape),
                self.len() * self.dtype.size(),
                bytes.len(),
            ));
        }
        // write_buffer needs a multiple of 4 bytes; odd f16 / u8 counts get padding.
        if bytes.len().is_multiple_of(4) {
            self.gpu.queue().write_buffer(&self.buffer, 0, bytes);
        } else {
            let mut padded = bytes.to_vec();
            padded.resize(bytes.len().next_multiple_of(4), 0);
            self.gpu.queue().write_buffer(&self.buffer, 0, &padded);
        }
        Ok(())
    }

    /// Downloads the contents (floats widened to f32 exactly, integers as they are).
    pub fn read(&self) -> Result<HostVec> {
        let bytes = read_buffer(&self.gpu, &self.buffer, self.byte_len())?;
        Ok(HostVec::decode(self.dtype, &bytes, self.len()))
    }

    /// [`Tensor::read`] without blocking: the form for the web (natively it is ready at once).
    pub async fn read_async(&self) -> Result<HostVec> {
        let bytes = read_buffer_async(&self.gpu, &self.buffer, self.byte_len()).await?;
        Ok(HostVec::decode(self.dtype, &bytes, self.len()))
    }

    /// Downloads as f32 (f16 and bf16 storage is widened exactly; integers converted).
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        Ok(self.read()?.into_f32())
    }

    /// Downloads as f16 (f32 storage is rounded to nearest).
    pub fn to_f16(&self) -> Result<Vec<half::f16>> {
        if self.dtype == DType::F16 {
            let bytes = read_buffer(&self.gpu, &self.buffer, self.byte_len())?;
            return Ok(bytemuck::pod_collect_to_vec(&bytes[..self.len() * 2]));
        }
        Ok(self.to_f32()?.into_iter().map(half::f16::from_f32).collect())
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

    /// The device the tensor lives on.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Bytes of its elements, rounded up to whole words (what copies move).
    pub fn byte_len(&self) -> u64 {
        (self.len() as u64 * self.dtype.size() as u64).next_multiple_of(4)
    }
}

pub(crate) fn new_buffer(gpu: &Gpu, bytes: u64, label: &str) -> wgpu::Buffer {
    gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes,
        usage: TENSOR_USAGE,
        mapped_at_creation: false,
    })
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

/// Copies `bytes` bytes of `buffer` to the host, blocking until they arrive (native only: on
/// the web it is an [`Error::Device`] naming the async form).
pub(crate) fn read_buffer(gpu: &Gpu, buffer: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
    #[cfg(not(target_arch = "wasm32"))]
    return pollster::block_on(read_buffer_async(gpu, buffer, bytes));
    #[cfg(target_arch = "wasm32")]
    {
        let _ = (gpu, buffer, bytes);
        let problem = "the web cannot block on a readback: use the async form (Tensor::read_async, Plan::run_async)";
        Err(Error::device("reading back", problem))
    }
}

/// [`read_buffer`] as a future: the browser's event loop maps the copy, natively the device
/// is polled first so the future is ready at once.
pub(crate) async fn read_buffer_async(gpu: &Gpu, buffer: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
    let staging = Staging::copy(gpu, &[(buffer, bytes)])?;
    staging.read(gpu, 0).await
}

/// Host-readable copies of buffers, submitted in one go (a plan's outputs are copied in its
/// run's submission, so the next run cannot overwrite them before they are read).
pub(crate) struct Staging {
    buffers: Vec<wgpu::Buffer>,
}

impl Staging {
    /// Records and submits the copies of each `(buffer, bytes)`: the first `bytes` bytes.
    pub(crate) fn copy(gpu: &Gpu, sources: &[(&wgpu::Buffer, u64)]) -> Result<Self> {
        gpu.scoped("reading back", || {
            let mut encoder = gpu.device().create_command_encoder(&Default::default());
            let buffers = sources
                .iter()
                .map(|&(source, bytes)| {
                    let staging = gpu.device().create_buffer(&wgpu::BufferDescriptor {
                        label: Some("vlbridge readback"),
                        size: bytes,
                        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    });
                    encoder.copy_buffer_to_buffer(source, 0, &staging, 0, bytes);
                    staging
                })
                .collect();
            gpu.queue().submit([encoder.finish()]);
            Staging { buffers }
        })
    }

    /// The bytes of copy `i`, once the GPU has written them.
    pub(crate) async fn read(&self, gpu: &Gpu, i: usize) -> Result<Vec<u8>> {
        let staging = &self.buffers[i];
        let (tx, rx) = futures_channel::oneshot::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        // Natively this runs the map callback; on the web it returns at once.
        gpu.wait("reading back")?;
        rx.await
            .map_err(|_| Error::device("reading back", "map callback never ran"))?
            .map_err(|e| Error::device("reading back", e.to_string()))?;
        // On the web the errors of the work before the copy arrive by now.
        gpu.check_uncaptured("reading back")?;
        let data = staging.get_mapped_range(..).map_err(|e| Error::device("reading back", e.to_string()))?.to_vec();
        staging.unmap();
        Ok(data)
    }
}
