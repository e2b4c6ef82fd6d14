//! One safetensors file of a checkpoint: memory-mapped on first use (a shard nobody asks a
//! tensor of is never opened), its header parsed once; tensor data is read straight from the
//! map, so only the pages of the tensors asked for are touched. The web has no memory maps
//! (nor files): there, a checkpoint's shards come as bytes ([`Shard::in_memory`]).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use safetensors::SafeTensors;
use safetensors::tensor::Metadata;

use crate::error::{Error, Result};

/// A tensor's bytes as stored, with its dtype and shape.
pub(crate) struct View<'a> {
    pub(crate) dtype: safetensors::Dtype,
    pub(crate) shape: &'a [usize],
    pub(crate) data: &'a [u8],
    shard: &'a Shard,
}

impl View<'_> {
    /// Tells the OS the pages of `part` (a piece of this view's data, already copied) will not
    /// be needed again, so a streamed upload keeps only a chunk of the checkpoint resident.
    pub(crate) fn release(&self, part: &[u8]) {
        self.shard.release(part);
    }
}

enum Source {
    #[cfg(not(target_arch = "wasm32"))]
    Map(memmap2::Mmap),
    Owned(Arc<Vec<u8>>),
}

impl Source {
    fn bytes(&self) -> &[u8] {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            Source::Map(m) => m,
            Source::Owned(v) => v,
        }
    }

    /// The file at `path`, mapped.
    #[cfg(not(target_arch = "wasm32"))]
    fn open(path: &std::path::Path) -> std::result::Result<Self, String> {
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        // SAFETY: the map is read-only and private to this process; a checkpoint modified
        // while it is loaded is outside what any loader can guard against (candle and
        // safetensors' own docs map checkpoints the same way).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| e.to_string())?;
        Ok(Source::Map(map))
    }

    #[cfg(target_arch = "wasm32")]
    fn open(_path: &std::path::Path) -> std::result::Result<Self, String> {
        Err("the web has no file system: give the shard's bytes (Weights::from_bytes)".into())
    }
}

struct Loaded {
    source: Source,
    data_start: usize,
    metadata: Metadata,
}

/// A safetensors file, opened lazily.
pub(crate) struct Shard {
    /// How errors and `vlbridge inspect` name it (the file name the index uses).
    pub(crate) name: String,
    path: Option<PathBuf>,
    loaded: OnceLock<std::result::Result<Loaded, String>>,
}

impl Shard {
    /// A file, mapped when a tensor of it is first asked for.
    pub(crate) fn file(name: String, path: PathBuf) -> Self {
        Self { name, path: Some(path), loaded: OnceLock::new() }
    }

    /// Bytes in memory (shared, not copied), parsed now.
    pub(crate) fn in_memory(name: &str, bytes: Arc<Vec<u8>>) -> Result<Self> {
        let shard = Self { name: name.into(), path: None, loaded: OnceLock::new() };
        let parsed = parse(Source::Owned(bytes));
        let _ = shard.loaded.set(parsed);
        shard.loaded()?;
        Ok(shard)
    }

    /// Where it is, for errors.
    pub(crate) fn location(&self) -> String {
        self.path.as_ref().map_or_else(|| self.name.clone(), |p| p.display().to_string())
    }

    fn loaded(&self) -> Result<&Loaded> {
        let loaded = self.loaded.get_or_init(|| {
            let path = self.path.as_ref().ok_or("no data")?;
            parse(Source::open(path)?)
        });
        loaded.as_ref().map_err(|problem| Error::File { path: self.location(), problem: problem.clone() })
    }

    /// Drops the mapped pages of `part` from this process (they are re-read from the file if
    /// touched again). A no-op for bytes in memory and where the OS has no `madvise`.
    fn release(&self, part: &[u8]) {
        #[cfg(not(unix))]
        let _ = part;
        #[cfg(unix)]
        if let Some(Ok(Loaded { source: Source::Map(map), .. })) = self.loaded.get() {
            let offset = (part.as_ptr() as usize).wrapping_sub(map.as_ptr() as usize);
            if offset < map.len() && part.len() <= map.len() - offset {
                // SAFETY: a read-only file-backed mapping: MADV_DONTNEED only drops its page
                // table entries, and a later read refaults the same bytes from the file, so
                // every slice into the map stays valid and unchanged.
                let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, part.len()) };
            }
        }
    }

    /// Every tensor name in the file (parses it).
    pub(crate) fn names(&self) -> Result<Vec<String>> {
        Ok(self.loaded()?.metadata.tensors().into_keys().collect())
    }

    /// Tensor `name`, or `None` when the file does not hold it.
    pub(crate) fn view(&self, name: &str) -> Result<Option<View<'_>>> {
        let loaded = self.loaded()?;
        Ok(loaded.metadata.info(name).map(|info| {
            let (start, end) = info.data_offsets;
            let bytes = loaded.source.bytes();
            let data = &bytes[loaded.data_start + start..loaded.data_start + end];
            View { dtype: info.dtype, shape: &info.shape, data, shard: self }
        }))
    }
}

/// Reads the header (and checks that every tensor's bytes are in the file: a truncated file
/// is refused here, not when a tensor is read).
fn parse(source: Source) -> std::result::Result<Loaded, String> {
    let (header, metadata) = SafeTensors::read_metadata(source.bytes()).map_err(|e| match e {
        safetensors::SafeTensorError::MetadataIncompleteBuffer => {
            "truncated: the header names more bytes than the file holds".to_string()
        }
        other => format!("not a valid safetensors file: {other}"),
    })?;
    Ok(Loaded { source, data_start: 8 + header, metadata })
}
