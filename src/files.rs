//! A Hugging Face model directory as the loaders read it: a folder on disk, or its files as
//! bytes. The web has no file system, so a page hands over the files it fetched; an engine that
//! already holds a checkpoint in memory does the same.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};

/// Where a model directory's files come from.
#[derive(Debug, Clone)]
pub enum ModelFiles {
    /// A folder: `config.json`, the shards and the processor's config beside each other.
    Dir(PathBuf),
    /// The directory's files by file name (`config.json`, `model.safetensors.index.json`,
    /// `model-00001-of-00002.safetensors`, ..), `name` naming the whole in errors.
    Bytes {
        /// What errors call the directory.
        name: String,
        /// Each file's bytes, shared: shards are read in place, not copied.
        files: BTreeMap<String, Arc<Vec<u8>>>,
    },
}

impl ModelFiles {
    /// The files `files` (by file name) as one directory that errors call `name`.
    pub fn from_bytes(name: &str, files: impl IntoIterator<Item = (String, Vec<u8>)>) -> Self {
        let files = files.into_iter().map(|(file, bytes)| (file, Arc::new(bytes))).collect();
        ModelFiles::Bytes { name: name.into(), files }
    }

    /// Whether the directory holds `file`.
    pub fn has(&self, file: &str) -> bool {
        match self {
            ModelFiles::Dir(dir) => dir.join(file).is_file(),
            ModelFiles::Bytes { files, .. } => files.contains_key(file),
        }
    }

    /// `file`'s bytes, or an [`Error::File`] naming it.
    pub fn read(&self, file: &str) -> Result<Arc<Vec<u8>>> {
        match self {
            ModelFiles::Dir(dir) => {
                let path = dir.join(file);
                std::fs::read(&path).map(Arc::new).map_err(|e| self.error(file, e.to_string()))
            }
            ModelFiles::Bytes { files, .. } => {
                files.get(file).cloned().ok_or_else(|| self.error(file, "not among the given files".into()))
            }
        }
    }

    /// `file` as UTF-8 text.
    pub fn read_text(&self, file: &str) -> Result<String> {
        let bytes = self.read(file)?;
        String::from_utf8(bytes.to_vec()).map_err(|e| self.error(file, e.to_string()))
    }

    /// The folder, for files read lazily by path (memory-mapped shards).
    pub fn dir(&self) -> Option<&Path> {
        match self {
            ModelFiles::Dir(dir) => Some(dir),
            ModelFiles::Bytes { .. } => None,
        }
    }

    /// Where `file` is, as errors name it.
    pub fn location(&self, file: &str) -> String {
        match self {
            ModelFiles::Dir(dir) => dir.join(file).display().to_string(),
            ModelFiles::Bytes { name, .. } => format!("{name}/{file}"),
        }
    }

    /// The directory, as errors name it.
    pub fn name(&self) -> String {
        match self {
            ModelFiles::Dir(dir) => dir.display().to_string(),
            ModelFiles::Bytes { name, .. } => name.clone(),
        }
    }

    /// An [`Error::File`] for `file`.
    pub fn error(&self, file: &str, problem: String) -> Error {
        Error::File { path: self.location(file), problem }
    }
}
