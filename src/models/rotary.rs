//! The rotary towers' model paths (Qwen2-VL, Qwen2.5-VL, Mistral 3's Pixtral): their inputs
//! checked and laid out on the host, the tower and the merger in one graph, and what
//! `inspect` says of them.

use super::{Built, Tensors};
use crate::connectors::Merger;
use crate::dtype::HostVec;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::Graph;
use crate::host::HostTensor;
use crate::towers::{GridThw, PixtralConfig, PixtralLayout, PixtralTower, QwenConfig, QwenLayout, QwenTower};

/// Qwen2-VL / 2.5-VL: `pixel_values` `[Σ t·h·w, C·T·P·P]` with `image_grid_thw` → tower →
/// merge units (back in the processor's order after Qwen2.5-VL's windows) → merger.
pub(super) fn build_qwen(gpu: &Gpu, merger: &Merger, tower: &QwenTower, inputs: &Tensors) -> Result<Built> {
    let config = tower.config();
    let name = "pixel_values";
    let (t, data) = super::vision::finite_pixels(inputs)?;
    let k = config.row_width();
    if t.shape.len() != 2 || t.shape[1] != k {
        let problem = format!(
            "shape {:?}, expected [patches, {k}] (rows of in_channels x temporal_patch_size x patch_size²)",
            t.shape
        );
        return Err(Error::Input { name: name.into(), problem });
    }
    let grids: Vec<GridThw> = super::vision::int_rows(inputs, "image_grid_thw", 3)?
        .into_iter()
        .map(|r| GridThw { t: r[0], h: r[1], w: r[2] })
        .collect();
    let rows = t.shape[0];
    let layout = QwenLayout::new(config, &grids, rows)?;
    let mut g = Graph::new();
    let mut feeds = Tensors::new();
    let shape = [1, rows, k];
    let pixels = g.input_as(name, &shape, tower.activations())?;
    feeds.insert(name.into(), HostTensor::new(&shape, HostVec::F32(layout.permute_rows(data, config.merge)))?);
    let units = tower.add_merge_units(gpu, &mut g, pixels, &layout)?;
    let out = merger.add_to(gpu, &mut g, units)?[0];
    g.output(out)?;
    Ok(Built { graph: g, outputs: &["image_features"], feeds })
}

/// Mistral 3: the padded `pixel_values` `[images, 3, H, W]` with `image_sizes` → each
/// image's real patches as rows → Pixtral → the merger over each image's own grid.
pub(super) fn build_pixtral(gpu: &Gpu, merger: &Merger, tower: &PixtralTower, inputs: &Tensors) -> Result<Built> {
    let (t, data) = super::vision::finite_pixels(inputs)?;
    let sizes = image_sizes(inputs)?;
    let layout = PixtralLayout::new(tower.config(), data, &t.shape, &sizes)?;
    let mut g = Graph::new();
    let mut feeds = Tensors::new();
    let shape = [1, layout.tokens(), tower.config().row_width()];
    let rows = g.input_as("pixel_values", &shape, tower.activations())?;
    feeds.insert("pixel_values".into(), HostTensor::new(&shape, HostVec::F32(layout.rows.clone()))?);
    g.set_stage("tower");
    let tokens = tower.add_to(gpu, &mut g, rows, &layout)?;
    g.set_stage("connector");
    let out = merger.add_to_images(gpu, &mut g, tokens, &sizes)?[0];
    g.output(out)?;
    Ok(Built { graph: g, outputs: &["image_features"], feeds })
}

/// Mistral 3's `image_sizes` `[images, 2]`: (height, width) in pixels.
pub(super) fn image_sizes(inputs: &Tensors) -> Result<Vec<(usize, usize)>> {
    let name = "image_sizes";
    let t = inputs
        .get(name)
        .ok_or_else(|| Error::Input { name: name.into(), problem: "missing from the inputs".into() })?;
    let values = super::input_ints(inputs, name, t.data.len())?;
    if t.shape.len() != 2 || t.shape[1] != 2 {
        return Err(Error::Input { name: name.into(), problem: format!("shape {:?}, expected [images, 2]", t.shape) });
    }
    Ok(values.chunks(2).map(|p| (p[0], p[1])).collect())
}

/// Mistral 3's tower: its `vision_config` and the `hidden_states` index `vision_feature_layer`
/// names (an int).
pub(super) fn pixtral_config(config: &serde_json::Value) -> Result<(PixtralConfig, usize)> {
    let tower = PixtralConfig::from_json("vision_config", &config["vision_config"])?;
    let layer = &config["vision_feature_layer"];
    let n = tower.layers as i64 + 1;
    let index = layer.as_i64().unwrap_or(-1);
    let i = if index < 0 { n + index } else { index };
    if !(layer.is_null() || layer.is_i64()) || !(0..n).contains(&i) {
        let problem = format!("{layer}: one hidden state of the {} layers' {n} (a list is not served)", tower.layers);
        return Err(Error::Config { field: "vision_feature_layer".into(), problem });
    }
    Ok((tower, i as usize))
}

/// What `inspect` says of Pixtral: sizes are the input's.
pub(super) fn describe_pixtral(c: &PixtralConfig, depth: usize) -> Vec<(String, String)> {
    vec![
        (
            "vision tower".into(),
            format!(
                "PixtralVisionModel ({} layers, {depth} used; width {}, {} heads, MLP {})",
                c.layers, c.hidden, c.heads, c.intermediate
            ),
        ),
        ("image".into(), format!("own sizes up to {0} x {0} px, patch {1}", c.image_size, c.patch)),
        ("attention".into(), format!("2D rotary (theta {}), within each image", c.theta)),
        ("tower tokens".into(), "Σ (h / patch)·(w / patch) of image_sizes".into()),
    ]
}

/// What `inspect` says of a rotary tower: its sizes are the input's.
pub(super) fn describe_qwen(c: &QwenConfig) -> Vec<(String, String)> {
    let attention = match c.window {
        Some(w) => format!("windows of {w} px, whole frames at layers {:?}", c.full_attention),
        None => "whole frames".into(),
    };
    vec![
        (
            "vision tower".into(),
            format!(
                "{} ({} layers; width {}, {} heads, MLP {})",
                c.kind.upstream(),
                c.layers,
                c.hidden,
                c.heads,
                c.intermediate
            ),
        ),
        (
            "image".into(),
            format!("native resolution: rows of {} values, patch {}, merge {}", c.row_width(), c.patch, c.merge),
        ),
        ("attention".into(), format!("2D rotary (theta {}), {attention}", c.theta)),
        ("tower tokens".into(), "Σ t·h·w of image_grid_thw".into()),
    ]
}
