//! Element types of tensors, and host data in and out of them. GPU-free.

use crate::error::{Error, Result};

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
    /// Unsigned 32-bit integers: token indices, ranks, rows.
    U32,
    /// Bytes, four per word on the GPU: keep masks (non-zero = keep).
    U8,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::U8 => 1,
        }
    }

    /// Name as in safetensors / numpy.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::U32 => "u32",
            DType::U8 => "u8",
        }
    }

    /// A floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }

    /// Parses `f32`, `f16`, `bf16`, `u32` or `u8` (the spellings the CLI takes).
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "f32" | "float32" => DType::F32,
            "f16" | "float16" => DType::F16,
            "bf16" | "bfloat16" => DType::BF16,
            "u32" | "uint32" => DType::U32,
            "u8" | "uint8" | "bool" => DType::U8,
            other => {
                return Err(Error::DType {
                    kernel: "dtype",
                    what: "name".into(),
                    expected: "f32, f16, bf16, u32 or u8".into(),
                    got: other.into(),
                });
            }
        })
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `v` as stored in `dtype` (f16 and bf16 round to nearest even; integers are exact), for the
/// references, which see values as the kernels do.
pub fn round_to(dtype: DType, v: f64) -> f64 {
    match dtype {
        DType::F32 => f64::from(v as f32),
        DType::F16 => f64::from(half::f16::from_f64(v).to_f32()),
        DType::BF16 => f64::from(half::bf16::from_f64(v).to_f32()),
        DType::U32 => f64::from(v as u32),
        DType::U8 => f64::from(v as u8),
    }
}

/// Host data for a tensor, borrowed: what [`crate::Plan::run`] and [`crate::Tensor::write`]
/// take. Float data may fill an f32, f16 or bf16 tensor (rounded to nearest); integers fill
/// integer tensors of their own type, and booleans a `u8` mask.
#[derive(Debug, Clone, Copy)]
pub enum HostData<'a> {
    /// f32 values.
    F32(&'a [f32]),
    /// f16 values.
    F16(&'a [half::f16]),
    /// u32 values.
    U32(&'a [u32]),
    /// Bytes.
    U8(&'a [u8]),
    /// Flags, stored as bytes 0 / 1.
    Bool(&'a [bool]),
}

impl HostData<'_> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            HostData::F32(v) => v.len(),
            HostData::F16(v) => v.len(),
            HostData::U32(v) => v.len(),
            HostData::U8(v) => v.len(),
            HostData::Bool(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn kind(&self) -> &'static str {
        match self {
            HostData::F32(_) => "f32 data",
            HostData::F16(_) => "f16 data",
            HostData::U32(_) => "u32 data",
            HostData::U8(_) => "u8 data",
            HostData::Bool(_) => "bool data",
        }
    }

    /// The little-endian bytes of this data stored as `dtype`, or a dtype error when the data
    /// cannot fill such a tensor.
    pub fn encode(&self, dtype: DType) -> Result<Vec<u8>> {
        let mismatch = || Error::DType {
            kernel: "tensor",
            what: self.kind().into(),
            expected: format!("data a {dtype} tensor can hold"),
            got: dtype.to_string(),
        };
        Ok(match (self, dtype) {
            (HostData::F32(v), DType::F32) => bytemuck::cast_slice(v).to_vec(),
            (HostData::F32(v), DType::F16) => v.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect(),
            (HostData::F32(v), DType::BF16) => v.iter().flat_map(|&x| half::bf16::from_f32(x).to_le_bytes()).collect(),
            (HostData::F16(v), DType::F16) => bytemuck::cast_slice(v).to_vec(),
            (HostData::F16(v), DType::F32) => v.iter().flat_map(|x| x.to_f32().to_le_bytes()).collect(),
            (HostData::U32(v), DType::U32) => bytemuck::cast_slice(v).to_vec(),
            (HostData::U8(v), DType::U8) => v.to_vec(),
            (HostData::Bool(v), DType::U8) => v.iter().map(|&b| u8::from(b)).collect(),
            _ => return Err(mismatch()),
        })
    }

    /// The values as a tensor of `dtype` stores them, widened to f64 (the references' view).
    pub fn to_f64_as(&self, dtype: DType) -> Result<Vec<f64>> {
        Ok(HostVec::decode(dtype, &self.encode(dtype)?, self.len()).to_f64())
    }
}

impl<'a> From<&'a [f32]> for HostData<'a> {
    fn from(v: &'a [f32]) -> Self {
        HostData::F32(v)
    }
}

impl<'a> From<&'a Vec<f32>> for HostData<'a> {
    fn from(v: &'a Vec<f32>) -> Self {
        HostData::F32(v)
    }
}

impl<'a> From<&'a [u32]> for HostData<'a> {
    fn from(v: &'a [u32]) -> Self {
        HostData::U32(v)
    }
}

impl<'a> From<&'a Vec<u32>> for HostData<'a> {
    fn from(v: &'a Vec<u32>) -> Self {
        HostData::U32(v)
    }
}

impl<'a> From<&'a [u8]> for HostData<'a> {
    fn from(v: &'a [u8]) -> Self {
        HostData::U8(v)
    }
}

impl<'a> From<&'a Vec<u8>> for HostData<'a> {
    fn from(v: &'a Vec<u8>) -> Self {
        HostData::U8(v)
    }
}

impl<'a> From<&'a [bool]> for HostData<'a> {
    fn from(v: &'a [bool]) -> Self {
        HostData::Bool(v)
    }
}

impl<'a> From<&'a [half::f16]> for HostData<'a> {
    fn from(v: &'a [half::f16]) -> Self {
        HostData::F16(v)
    }
}

/// Host data read back from a tensor, owned: floats widened to f32 (exactly, from f16 and
/// bf16), integers as they are.
#[derive(Debug, Clone, PartialEq)]
pub enum HostVec {
    /// Float values (f32, f16 or bf16 storage).
    F32(Vec<f32>),
    /// u32 values.
    U32(Vec<u32>),
    /// Bytes.
    U8(Vec<u8>),
}

impl HostVec {
    /// `len` elements of `dtype` from their little-endian bytes (`bytes` may be longer).
    pub fn decode(dtype: DType, bytes: &[u8], len: usize) -> Self {
        let bytes = &bytes[..len * dtype.size()];
        match dtype {
            DType::F32 => HostVec::F32(bytemuck::pod_collect_to_vec(bytes)),
            DType::F16 => {
                HostVec::F32(bytemuck::pod_collect_to_vec::<u8, half::f16>(bytes).iter().map(|h| h.to_f32()).collect())
            }
            DType::BF16 => {
                HostVec::F32(bytemuck::pod_collect_to_vec::<u8, half::bf16>(bytes).iter().map(|h| h.to_f32()).collect())
            }
            DType::U32 => HostVec::U32(bytemuck::pod_collect_to_vec(bytes)),
            DType::U8 => HostVec::U8(bytes.to_vec()),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            HostVec::F32(v) => v.len(),
            HostVec::U32(v) => v.len(),
            HostVec::U8(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values as f32: floats as they are, integers converted (exact below 2^24).
    pub fn into_f32(self) -> Vec<f32> {
        match self {
            HostVec::F32(v) => v,
            HostVec::U32(v) => v.into_iter().map(|x| x as f32).collect(),
            HostVec::U8(v) => v.into_iter().map(f32::from).collect(),
        }
    }

    /// The values as f64 (exact for every type).
    pub fn to_f64(&self) -> Vec<f64> {
        match self {
            HostVec::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            HostVec::U32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            HostVec::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
        }
    }

    /// The f32 values, if this is float data.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match self {
            HostVec::F32(v) => Some(v),
            _ => None,
        }
    }

    /// The u32 values, if this is u32 data.
    pub fn as_u32(&self) -> Option<&[u32]> {
        match self {
            HostVec::U32(v) => Some(v),
            _ => None,
        }
    }

    /// Borrowed, to write into a tensor again.
    pub fn as_data(&self) -> HostData<'_> {
        match self {
            HostVec::F32(v) => HostData::F32(v),
            HostVec::U32(v) => HostData::U32(v),
            HostVec::U8(v) => HostData::U8(v),
        }
    }
}

impl From<Vec<f32>> for HostVec {
    fn from(v: Vec<f32>) -> Self {
        HostVec::F32(v)
    }
}

impl From<Vec<u32>> for HostVec {
    fn from(v: Vec<u32>) -> Self {
        HostVec::U32(v)
    }
}

impl From<Vec<u8>> for HostVec {
    fn from(v: Vec<u8>) -> Self {
        HostVec::U8(v)
    }
}
