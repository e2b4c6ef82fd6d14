//! The measured tune as the device reads it: the cached table per adapter and driver, where the
//! cache is, and how to load it. Core: [`crate::Gpu::with_options`] follows it; measuring it
//! ([`crate::tune::measure`]) stands above the graph.
//!
//! The cache is one JSON file per adapter and driver under `$VLBRIDGE_TUNE_DIR`, else
//! `$XDG_CACHE_HOME/vlbridge`, else `~/.cache/vlbridge`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One tuned choice: the fastest variant of `kernel` for problems of `class`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// The kernel (`linear`, `attention_flash`).
    pub kernel: String,
    /// The problem class (`thin`, `wide`, `all`).
    pub class: String,
    /// The fastest variant.
    pub variant: String,
    /// Every variant timed, (variant, median ms).
    pub timings: Vec<(String, f64)>,
}

/// The tune of one adapter, as cached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneTable {
    /// The adapter it was measured on.
    pub adapter: String,
    /// Its driver.
    pub driver: String,
    /// The choices.
    pub choices: Vec<Choice>,
}

impl TuneTable {
    /// (kernel, class, variant) of every choice.
    pub fn choices(&self) -> Vec<(String, String, String)> {
        self.choices.iter().map(|c| (c.kernel.clone(), c.class.clone(), c.variant.clone())).collect()
    }
}

/// The cache directory: `dir` when given, else `$VLBRIDGE_TUNE_DIR`, `$XDG_CACHE_HOME/vlbridge`,
/// `~/.cache/vlbridge`.
pub fn cache_dir(dir: Option<&Path>) -> Option<PathBuf> {
    if let Some(dir) = dir {
        return Some(dir.to_path_buf());
    }
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    env("VLBRIDGE_TUNE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("vlbridge")))
        .or_else(|| env("HOME").map(|h| h.join(".cache/vlbridge")))
}

/// The cache file of an adapter: its name, PCI ids and driver, made file-name safe.
pub fn cache_file(dir: &Path, info: &wgpu::AdapterInfo) -> PathBuf {
    let key = format!("{}-{:x}-{:x}-{:?}-{}", info.name, info.vendor, info.device, info.backend, info.driver_info);
    let safe: String = key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    dir.join(format!("tune-{safe}.json"))
}

/// The cached tune of `info`'s adapter in `dir`, if any (an unreadable file is no tune).
pub fn load(dir: &Path, info: &wgpu::AdapterInfo) -> Option<TuneTable> {
    let text = std::fs::read_to_string(cache_file(dir, info)).ok()?;
    serde_json::from_str(&text).ok()
}
