//! Checkpoint weights from safetensors, looked up by their upstream state-dict names.

mod shard;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use safetensors::Dtype;
use serde::Deserialize;
use shard::{Shard, View};

use crate::dtype::{DType, HostData};
use crate::error::{Error, Result};
use crate::files::ModelFiles;
use crate::gpu::Gpu;
use crate::tensor::Tensor;

/// Called with a tensor's name and byte count when its data is read (a progress bar).
pub type ReadObserver = Arc<dyn Fn(&str, u64) + Send + Sync>;

/// A checkpoint's tensors by name: one safetensors file, a Hugging Face directory of shards
/// (`model.safetensors.index.json`, or one `model.safetensors`), or bytes in memory. Files are
/// memory-mapped and read lazily: a shard none of whose tensors is asked for is never opened,
/// and only the pages of the tensors asked for are touched; uploads read straight from the map.
/// Cloning shares the files.
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
#[derive(Clone)]
pub struct Weights {
    origin: String,
    shards: Arc<Vec<Shard>>,
    /// Every tensor name (as stored) → its shard.
    index: Arc<BTreeMap<String, usize>>,
    /// Prepended to every name asked for (`model.` for transformers' in-memory names).
    prefix: String,
    /// Upload float weights in this type instead of the stored one.
    cast: Option<DType>,
    observer: Option<ReadObserver>,
}

/// `model.safetensors.index.json`.
#[derive(Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Weights({}, {} tensors)", self.origin, self.index.len())
    }
}

/// `model.safetensors.index.json`'s shard file names (sorted, each once) and every tensor's
/// shard among them.
fn shard_index(text: &str) -> std::result::Result<(Vec<String>, BTreeMap<String, usize>), String> {
    let map: ShardIndex = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut files: Vec<String> = map.weight_map.values().cloned().collect();
    files.sort_unstable();
    files.dedup();
    for file in &files {
        // Shards are plain file names beside the index.
        if file.contains(['/', '\\']) || file.as_str() == ".." || file.is_empty() {
            return Err(format!("shard name `{file}` is not a file name"));
        }
    }
    let position = |file: &String| files.binary_search(file).unwrap_or_default();
    let index = map.weight_map.iter().map(|(name, file)| (name.clone(), position(file))).collect();
    Ok((files, index))
}

fn file_error(path: &Path, problem: impl ToString) -> Error {
    Error::File { path: path.display().to_string(), problem: problem.to_string() }
}

impl Weights {
    /// Opens a `.safetensors` file, or a model directory (see [`Weights::open_dir`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if path.is_dir() {
            return Self::open_dir(path);
        }
        let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().to_string());
        if !path.exists() {
            return Err(file_error(path, "no such file"));
        }
        let shard = Shard::file(name, path.to_path_buf());
        let index = shard.names()?.into_iter().map(|n| (n, 0)).collect();
        Ok(Self::assemble(path.display().to_string(), vec![shard], index))
    }

    /// Opens a Hugging Face model directory: the shards `model.safetensors.index.json` names
    /// (mapped when first needed), or its one `model.safetensors`.
    pub fn open_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let index_path = dir.join("model.safetensors.index.json");
        if !index_path.exists() {
            let single = dir.join("model.safetensors");
            if single.exists() {
                return Self::open(single);
            }
            return Err(file_error(dir, "neither model.safetensors.index.json nor model.safetensors is there"));
        }
        let text = std::fs::read_to_string(&index_path).map_err(|e| file_error(&index_path, e))?;
        let (files, index) = shard_index(&text).map_err(|e| file_error(&index_path, e))?;
        let shards: Vec<Shard> = files.iter().map(|f| Shard::file(f.clone(), dir.join(f))).collect();
        Ok(Self::assemble(dir.display().to_string(), shards, index))
    }

    /// Opens a model directory from wherever its files are: a folder ([`Weights::open_dir`]),
    /// or the files as bytes, each shard read in place.
    pub fn open_model(files: &ModelFiles) -> Result<Self> {
        if let Some(dir) = files.dir() {
            return Self::open_dir(dir);
        }
        let index_file = "model.safetensors.index.json";
        if !files.has(index_file) {
            let single = "model.safetensors";
            if !files.has(single) {
                let problem = "neither model.safetensors.index.json nor model.safetensors is there".into();
                return Err(Error::File { path: files.name(), problem });
            }
            return Self::shared(files.read(single)?, &files.location(single));
        }
        let (names, index) = shard_index(&files.read_text(index_file)?).map_err(|e| files.error(index_file, e))?;
        let shards =
            names.iter().map(|f| Shard::in_memory(&files.location(f), files.read(f)?)).collect::<Result<Vec<_>>>()?;
        Ok(Self::assemble(files.name(), shards, index))
    }

    /// Wraps safetensors bytes; `origin` names them in errors.
    pub fn from_bytes(bytes: Vec<u8>, origin: &str) -> Result<Self> {
        Self::shared(Arc::new(bytes), origin)
    }

    fn shared(bytes: Arc<Vec<u8>>, origin: &str) -> Result<Self> {
        let shard = Shard::in_memory(origin, bytes)?;
        let index = shard.names()?.into_iter().map(|n| (n, 0)).collect();
        Ok(Self::assemble(origin.into(), vec![shard], index))
    }

    fn assemble(origin: String, shards: Vec<Shard>, index: BTreeMap<String, usize>) -> Self {
        Self {
            origin,
            shards: Arc::new(shards),
            index: Arc::new(index),
            prefix: String::new(),
            cast: None,
            observer: None,
        }
    }

    /// The same checkpoint with every name looked up under `prefix` (transformers' in-memory
    /// names put `model.` in front of the on-disk ones).
    pub fn with_prefix(&self, prefix: &str) -> Self {
        Self { prefix: format!("{}{prefix}", self.prefix), ..self.clone() }
    }

    /// The same checkpoint whose float weights upload as `dtype` (f32, f16 or bf16, converted
    /// on the host when stored otherwise); `None` keeps the stored types.
    pub fn cast(&self, dtype: Option<DType>) -> Self {
        Self { cast: dtype, ..self.clone() }
    }

    /// The same checkpoint, calling `observer` whenever a tensor's data is read.
    pub fn observed(&self, observer: ReadObserver) -> Self {
        Self { observer: Some(observer), ..self.clone() }
    }

    /// The file or directory it came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    fn full(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn view(&self, name: &str) -> Result<View<'_>> {
        let full = self.full(name);
        let Some(&shard) = self.index.get(&full) else {
            return Err(Error::Weights { name: full, problem: format!("not found in {}", self.origin) });
        };
        let shard = &self.shards[shard];
        shard.view(&full)?.ok_or_else(|| Error::Weights {
            problem: format!("listed for {} but absent from it", shard.location()),
            name: full,
        })
    }

    /// `view(name)`'s data, reported to the observer.
    fn read<'a>(&self, name: &str, view: &View<'a>) -> &'a [u8] {
        if let Some(observe) = &self.observer {
            observe(name, view.data.len() as u64);
        }
        view.data
    }

    /// Every tensor name (under the prefix, which is stripped), sorted.
    pub fn names(&self) -> Result<Vec<String>> {
        Ok(self.index.keys().filter_map(|n| n.strip_prefix(&self.prefix)).map(str::to_string).collect())
    }

    /// Whether the checkpoint lists `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(&self.full(name))
    }

    /// The file holding `name`, as the index names it.
    pub fn shard_of(&self, name: &str) -> Option<&str> {
        self.index.get(&self.full(name)).map(|&s| self.shards[s].name.as_str())
    }

    /// The first of `aliases` present, or an error listing them all.
    pub fn resolve<'a>(&self, aliases: &[&'a str]) -> Result<&'a str> {
        aliases.iter().copied().find(|n| self.contains(n)).ok_or_else(|| Error::Weights {
            name: self.full(aliases.first().copied().unwrap_or("")),
            problem: format!("not found in {} (also looked for {:?})", self.origin, &aliases[1.min(aliases.len())..]),
        })
    }

    /// Shape of tensor `name`.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.view(name)?.shape.to_vec())
    }

    /// Stored dtype of tensor `name` (f32, f16 or bf16; other types are an error).
    pub fn dtype(&self, name: &str) -> Result<DType> {
        let view = self.view(name)?;
        float_dtype(view.dtype).ok_or_else(|| self.not_float(name, view.dtype))
    }

    /// Bytes of tensor `name` as stored.
    pub fn byte_len(&self, name: &str) -> Result<usize> {
        Ok(self.view(name)?.data.len())
    }

    fn not_float(&self, name: &str, dtype: Dtype) -> Error {
        Error::Weights {
            name: self.full(name),
            problem: format!("dtype {dtype:?}, expected a float type (f32, f16, bf16)"),
        }
    }

    fn check_shape(&self, name: &str, view: &View<'_>, shape: &[usize]) -> Result<()> {
        if view.shape != shape {
            let problem = format!("shape {:?}, expected {shape:?}", view.shape);
            return Err(Error::Weights { name: self.full(name), problem });
        }
        Ok(())
    }

    /// Tensor `name` widened to f32 (f32, f16 and bf16 on disk), checked against `shape`
    /// when given.
    pub fn f32(&self, name: &str, shape: Option<&[usize]>) -> Result<Vec<f32>> {
        let view = self.view(name)?;
        if let Some(shape) = shape {
            self.check_shape(name, &view, shape)?;
        }
        let data = self.read(name, &view);
        Ok(match view.dtype {
            Dtype::F32 => bytemuck::pod_collect_to_vec(data),
            Dtype::F16 => bytemuck::pod_collect_to_vec::<u8, half::f16>(data).iter().map(|h| h.to_f32()).collect(),
            Dtype::BF16 => bytemuck::pod_collect_to_vec::<u8, half::bf16>(data).iter().map(|h| h.to_f32()).collect(),
            other => return Err(self.not_float(name, other)),
        })
    }

    /// Integer bookkeeping tensors (i64, i32, u8) widened to i64.
    pub fn i64(&self, name: &str) -> Result<Vec<i64>> {
        let view = self.view(name)?;
        let data = self.read(name, &view);
        Ok(match view.dtype {
            Dtype::I64 => bytemuck::pod_collect_to_vec(data),
            Dtype::I32 => bytemuck::pod_collect_to_vec::<u8, i32>(data).into_iter().map(i64::from).collect(),
            Dtype::U8 | Dtype::BOOL => data.iter().map(|&b| i64::from(b)).collect(),
            other => {
                let problem = format!("dtype {other:?}, expected an integer type");
                return Err(Error::Weights { name: self.full(name), problem });
            }
        })
    }

    /// Uploads the first present alias in its stored dtype (or the cast one), checked against
    /// `shape`.
    pub fn upload_native(&self, gpu: &Gpu, aliases: &[&str], shape: &[usize]) -> Result<Tensor> {
        let name = self.resolve(aliases)?;
        self.check_shape(name, &self.view(name)?, shape)?;
        self.upload_rows(gpu, &[name], shape)
    }

    /// Tensors `names` (all `[rows_i, ..shape[1..]]`) stacked along their first dimension into
    /// one GPU tensor of `shape`, in the dtype they share on disk when the GEMMs read it (f32,
    /// bf16; f16 where the device has `SHADER_F16`), or the cast one. Kept dtypes go from the
    /// memory map to the GPU with no host copy; mixed dtypes, f16 on a device without it, and
    /// casts are converted on the host.
    pub fn upload_rows(&self, gpu: &Gpu, names: &[&str], shape: &[usize]) -> Result<Tensor> {
        let views = names.iter().map(|name| self.view(name)).collect::<Result<Vec<_>>>()?;
        let dtypes = names
            .iter()
            .zip(&views)
            .map(|(name, view)| float_dtype(view.dtype).ok_or_else(|| self.not_float(name, view.dtype)))
            .collect::<Result<Vec<_>>>()?;
        // One stored type for all of them, or None when mixed.
        let stored = dtypes.first().copied().filter(|first| dtypes.iter().all(|d| d == first));
        let target = self.gemm_dtype(gpu, stored);
        let elements: usize = shape.iter().product();
        let stored_elements: usize = views.iter().map(|v| v.shape.iter().product::<usize>()).sum();
        if elements != stored_elements {
            let got = views.iter().map(|v| format!("{:?}", v.shape)).collect::<Vec<_>>().join(" + ");
            return Err(Error::Weights { name: self.full(names[0]), problem: format!("{got} do not fill {shape:?}") });
        }
        if Some(target) == stored && views.iter().all(|v| v.data.len().is_multiple_of(4)) {
            return self.stream(gpu, shape, target, names, &views);
        }
        let mut values = Vec::with_capacity(elements);
        for name in names {
            values.extend(self.f32(name, None)?);
        }
        Tensor::from_data(gpu, shape, target, HostData::F32(&values))
    }

    /// The dtype GEMM weights stored as `stored` (None: mixed) are uploaded in: the cast one,
    /// else the stored one, where the device reads it; else f32.
    fn gemm_dtype(&self, gpu: &Gpu, stored: Option<DType>) -> DType {
        let readable = |d: DType| d != DType::F16 || gpu.caps().shader_f16;
        match (self.cast, stored) {
            (Some(cast), _) if readable(cast) => cast,
            (_, Some(stored)) if readable(stored) => stored,
            _ => DType::F32,
        }
    }

    /// Tensors `names` rearranged on the host by `arrange` (their values, in order) into one
    /// GPU tensor of `shape`, in the dtype [`Weights::upload_rows`] would pick: for layouts the
    /// GEMMs need that checkpoints do not store (Gemma 3's `[in, out]` projection transposed,
    /// Llama's gate and up projections interleaved). Narrow dtypes round-trip exactly.
    pub fn upload_arranged(
        &self,
        gpu: &Gpu,
        names: &[&str],
        shape: &[usize],
        arrange: impl FnOnce(Vec<Vec<f32>>) -> Vec<f32>,
    ) -> Result<Tensor> {
        let mut stored = None;
        let mut values = Vec::with_capacity(names.len());
        for name in names {
            let view = self.view(name)?;
            let dtype = float_dtype(view.dtype).ok_or_else(|| self.not_float(name, view.dtype))?;
            stored = match stored {
                None => Some(Some(dtype)),
                Some(s) => Some(s.filter(|s| *s == dtype)),
            };
            values.push(self.f32(name, None)?);
        }
        let target = self.gemm_dtype(gpu, stored.flatten());
        let data = arrange(values);
        if data.len() != shape.iter().product::<usize>() {
            let problem = format!("{} values do not fill {shape:?}", data.len());
            return Err(Error::Weights { name: self.full(names.first().copied().unwrap_or_default()), problem });
        }
        Tensor::from_data(gpu, shape, target, HostData::F32(&data))
    }

    /// Copies `views` (kept dtype, whole words) into one new tensor in chunks straight from the
    /// memory maps, each chunk's staging copy and mapped pages released before the next: what
    /// stays resident is the tensor and one chunk, not the checkpoint too.
    fn stream(&self, gpu: &Gpu, shape: &[usize], dtype: DType, names: &[&str], views: &[View<'_>]) -> Result<Tensor> {
        const CHUNK: usize = 4 << 20;
        let tensor = Tensor::zeros(gpu, shape, dtype)?;
        let mut offset = 0;
        for (name, view) in names.iter().zip(views) {
            for chunk in self.read(name, view).chunks(CHUNK) {
                tensor.write_at(offset, chunk)?;
                offset += chunk.len() as u64;
                gpu.flush("uploading weights")?;
                view.release(chunk);
            }
        }
        Ok(tensor)
    }

    /// Uploads the first present alias as an f32 tensor of the given shape (biases, norms).
    pub fn upload(&self, gpu: &Gpu, aliases: &[&str], shape: &[usize]) -> Result<Tensor> {
        let name = self.resolve(aliases)?;
        Tensor::from_f32(gpu, shape, &self.f32(name, Some(shape))?)
    }
}

fn float_dtype(dtype: Dtype) -> Option<DType> {
    match dtype {
        Dtype::F32 => Some(DType::F32),
        Dtype::F16 => Some(DType::F16),
        Dtype::BF16 => Some(DType::BF16),
        _ => None,
    }
}
