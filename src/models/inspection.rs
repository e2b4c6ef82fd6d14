//! What `vlbridge inspect` prints of a model directory, from its config and shard headers.

use std::fmt;

use super::ModelFamily;
use crate::dtype::DType;

/// One tensor of a connector as the checkpoint holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorEntry {
    /// Its name in the checkpoint.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its stored dtype.
    pub dtype: DType,
    /// The shard that holds it.
    pub shard: String,
    /// Its bytes.
    pub bytes: usize,
}

/// What `vlbridge inspect` prints: a model directory's connector, from its config and shard
/// headers only.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// The directory.
    pub dir: String,
    /// The family.
    pub family: ModelFamily,
    /// The upstream module(s).
    pub connector: &'static str,
    /// Dims and layer counts.
    pub dims: Vec<(String, String)>,
    /// Settings the caller needs.
    pub settings: Vec<(String, String)>,
    /// Visual tokens (in, out): what the config fixes, and what it leaves to the input.
    pub tokens: (String, String),
    /// The vision tower the config describes (layers, width, patch, image size, feature
    /// layer, tokens, FLOPs per image), empty where it is not served.
    pub tower: Vec<(String, String)>,
    /// Whether the checkpoint holds the tower (else only the connector path runs).
    pub has_tower: bool,
    /// The connector's tensors.
    pub tensors: Vec<TensorEntry>,
    /// `""` for the on-disk names, `model.` for transformers' in-memory ones.
    pub prefix: String,
}

impl Inspection {
    /// Bytes of the connector's parameters as stored.
    pub fn parameter_bytes(&self) -> usize {
        self.tensors.iter().map(|t| t.bytes).sum()
    }

    /// The distinct stored dtypes.
    pub fn dtypes(&self) -> Vec<DType> {
        let mut d: Vec<DType> = self.tensors.iter().map(|t| t.dtype).collect();
        d.sort_by_key(|t| t.name());
        d.dedup();
        d
    }

    /// The shards holding the connector, sorted.
    pub fn shards(&self) -> Vec<&str> {
        let mut s: Vec<&str> = self.tensors.iter().map(|t| t.shard.as_str()).collect();
        s.sort_unstable();
        s.dedup();
        s
    }
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.dir)?;
        writeln!(f, "  family: {} ({})", self.family.model_type(), self.connector)?;
        for (label, value) in self.dims.iter().chain(&self.settings) {
            writeln!(f, "  {label}: {value}")?;
        }
        for (label, value) in &self.tower {
            writeln!(f, "  {label}: {value}")?;
        }
        if !self.tower.is_empty() && !self.has_tower {
            writeln!(f, "  (the checkpoint holds no vision tower: image_features in only)")?;
        }
        writeln!(f, "  visual tokens in: {}", self.tokens.0)?;
        writeln!(f, "  visual tokens out: {}", self.tokens.1)?;
        let dtypes: Vec<&str> = self.dtypes().iter().map(|d| d.name()).collect();
        writeln!(f, "  dtypes on disk: {}", dtypes.join(", "))?;
        let params: usize = self.tensors.iter().map(|t| t.shape.iter().product::<usize>()).sum();
        writeln!(f, "  parameters: {params} ({} bytes, {} tensors)", self.parameter_bytes(), self.tensors.len())?;
        let names = if self.prefix.is_empty() {
            "on-disk names".to_string()
        } else {
            format!("in-memory names ({}*)", self.prefix)
        };
        write!(f, "  shards holding the connector ({names}): {}", self.shards().join(", "))
    }
}
