//! `config.json` as transformers reads it: resolved once (legacy spellings, sub-configs by
//! `model_type`, every missing field from transformers' class defaults), then each family reads
//! its own fields through serde.

mod classes;
mod resolve;

use std::path::Path;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::files::ModelFiles;

pub use classes::{ConfigClass, FieldDefault, SubConfig};

/// The whole `config.json`, parsed and resolved once; families read their own fields from it.
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
        if !dir.is_dir() {
            return Err(Error::File { path: dir.display().to_string(), problem: "not a model directory".into() });
        }
        Self::read_from(&ModelFiles::Dir(dir.to_path_buf()))
    }

    /// Reads the directory's `config.json` wherever its files are.
    pub fn read_from(files: &ModelFiles) -> Result<Self> {
        let name = "config.json";
        let text = files.read_text(name)?;
        let value = serde_json::from_str(&text).map_err(|e| files.error(name, e.to_string()))?;
        Ok(Self::from_value(&files.location(name), value))
    }

    /// From a JSON value as a file holds it; `path` names it in errors.
    pub fn from_value(path: &str, mut value: serde_json::Value) -> Self {
        resolve::resolve(&mut value);
        Self { path: path.into(), value }
    }

    /// The resolved config: what transformers' config classes hold after reading the file.
    pub fn value(&self) -> &serde_json::Value {
        &self.value
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
    pub image_size: Option<Side>,
    /// `patch_size`: pixels per patch.
    pub patch_size: Option<Side>,
}

/// A size written as one number or as `[height, width]` (InternVL's vision config; the
/// config classes accept both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Side {
    /// Square.
    One(usize),
    /// `[height, width]`.
    Pair([usize; 2]),
}

impl Side {
    /// The height (the towers served are square).
    pub fn get(self) -> usize {
        match self {
            Side::One(v) | Side::Pair([v, _]) => v,
        }
    }
}

/// A language model's `text_config`: its width.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct TextConfig {
    /// `hidden_size`: the width the connector projects to.
    pub hidden_size: Option<usize>,
}

/// A field the connector cannot do without.
pub fn required<T>(field: &str, value: Option<T>) -> Result<T> {
    value.ok_or_else(|| Error::Config { field: field.into(), problem: "missing from config.json".into() })
}

/// The transformers config classes whose defaults vlbridge applies, with their tables.
pub fn config_classes() -> impl Iterator<Item = &'static ConfigClass> {
    classes::all()
}
