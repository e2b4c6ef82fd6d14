//! `config.json` as transformers writes it: the fields vlbridge reads, through serde.

use std::path::Path;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// The whole `config.json`, parsed once; families read their own fields from it.
#[derive(Debug, Clone)]
pub struct ConfigJson {
    path: String,
    value: serde_json::Value,
}

/// Fields every family has.
#[derive(Debug, Deserialize)]
struct Head {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
}

impl ConfigJson {
    /// Reads `dir/config.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let file_error = |problem: String| Error::File { path: path.display().to_string(), problem };
        if !dir.is_dir() {
            return Err(Error::File { path: dir.display().to_string(), problem: "not a model directory".into() });
        }
        let text = std::fs::read_to_string(&path).map_err(|e| file_error(e.to_string()))?;
        let value = serde_json::from_str(&text).map_err(|e| file_error(e.to_string()))?;
        Ok(Self { path: path.display().to_string(), value })
    }

    /// From a JSON value (tests); `path` names it in errors.
    pub fn from_value(path: &str, value: serde_json::Value) -> Self {
        Self { path: path.into(), value }
    }

    /// `model_type` and `architectures`.
    pub fn model_type(&self) -> Result<(Option<String>, Vec<String>)> {
        let head: Head = self.parse()?;
        Ok((head.model_type, head.architectures))
    }

    /// The whole config as a family's own typed struct.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.value.clone())
            .map_err(|e| Error::Config { field: format!("config.json ({})", self.path), problem: e.to_string() })
    }
}

/// A vision tower's `vision_config`: the fields a connector depends on.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct VisionConfig {
    /// `hidden_size`: the feature width the connector reads.
    pub hidden_size: Option<usize>,
    /// `image_size`: pixels per tile.
    pub image_size: Option<usize>,
    /// `patch_size`: pixels per patch.
    pub patch_size: Option<usize>,
}

/// A language model's `text_config`: its width.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct TextConfig {
    /// `hidden_size`: the width the connector projects to.
    pub hidden_size: Option<usize>,
}

/// A field the connector cannot do without.
pub fn required<T: Copy>(field: &str, value: Option<T>) -> Result<T> {
    value.ok_or_else(|| Error::Config { field: field.into(), problem: "missing from config.json".into() })
}
