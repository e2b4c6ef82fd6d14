//! LLaVA (`llava`), LLaVA-NeXT (`llava_next`) and LLaVA-OneVision (`llava_onevision`): the MLP
//! projector, and for the latter two AnyRes packing of the projected tiles (OneVision with its
//! `anyres_max_N` resize).

use serde::Deserialize;

use super::config::{ConfigJson, TextConfig, VisionConfig, required};
use super::vision::{Tower, TowerSpec, all_slabs, int_rows};
use super::{Built, Model, ModelFamily, Runner, Tensors, input_f32, input_ints, input_shape_error};
use crate::connectors::{AnyRes, LlavaProjector, StateDict};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::Graph;
use crate::ops::{AnyResLayout, Concat, GeluForm};
use crate::weights::Weights;

/// The fields of a LLaVA-family `config.json` the connector uses (the resolved config has
/// transformers' defaults for every one).
#[derive(Debug, Deserialize)]
struct LlavaJson {
    projector_hidden_act: Option<String>,
    multimodal_projector_bias: Option<bool>,
    vision_feature_layer: Option<serde_json::Value>,
    vision_feature_select_strategy: Option<String>,
    vision_config: Option<VisionConfig>,
    text_config: Option<TextConfig>,
    image_grid_pinpoints: Option<Vec<(usize, usize)>>,
    vision_aspect_ratio: Option<String>,
}

/// A LLaVA-family connector described by its config.
#[derive(Debug, Clone)]
pub(super) struct Llava {
    family: ModelFamily,
    act: GeluForm,
    act_name: String,
    bias: bool,
    /// Vision width × selected feature layers, hidden (= text) width.
    vision: usize,
    text: usize,
    feature_layer: String,
    strategy: String,
    /// Tile (vision image size) and patch, in pixels.
    tile: usize,
    patch: usize,
    pinpoints: Vec<(usize, usize)>,
    max_patches: Option<usize>,
    tower: TowerSpec,
}

impl Llava {
    pub(super) fn new(family: ModelFamily, config: &ConfigJson) -> Result<Self> {
        let c: LlavaJson = config.parse()?;
        let act_name = required("projector_hidden_act", c.projector_hidden_act)?;
        let act = GeluForm::from_hf("projector_hidden_act", &act_name)?;
        let vision_config = required("vision_config", c.vision_config)?;
        let width = required("vision_config.hidden_size", vision_config.hidden_size)?;
        let text = required("text_config.hidden_size", required("text_config", c.text_config)?.hidden_size)?;
        // A list of feature layers is concatenated along the features.
        let feature_layer = required("vision_feature_layer", c.vision_feature_layer)?;
        let layers = feature_layer.as_array().map_or(1, Vec::len);
        let strategy = required("vision_feature_select_strategy", c.vision_feature_select_strategy)?;
        if !matches!(strategy.as_str(), "default" | "full") {
            return Err(Error::Config {
                field: "vision_feature_select_strategy".into(),
                problem: format!("`{strategy}` (default or full)"),
            });
        }
        let anyres = family != ModelFamily::Llava;
        let pinpoints = if anyres {
            required("image_grid_pinpoints", c.image_grid_pinpoints.as_ref())?.clone()
        } else {
            Vec::new()
        };
        let max_patches = match (family, c.vision_aspect_ratio.as_deref()) {
            (ModelFamily::LlavaOnevision, None) => {
                return Err(Error::Config {
                    field: "vision_aspect_ratio".into(),
                    problem: "missing from config.json".into(),
                });
            }
            (ModelFamily::LlavaOnevision, Some(ratio)) => {
                Some(ratio.strip_prefix("anyres_max_").and_then(|n| n.parse().ok()).ok_or_else(|| Error::Config {
                    field: "vision_aspect_ratio".into(),
                    problem: format!("`{ratio}` (anyres_max_N)"),
                })?)
            }
            _ => None,
        };
        Ok(Self {
            family,
            act,
            act_name,
            bias: required("multimodal_projector_bias", c.multimodal_projector_bias)?,
            vision: width * layers,
            text,
            feature_layer: feature_layer.to_string(),
            strategy,
            tile: required("vision_config.image_size", vision_config.image_size)?.get(),
            patch: required("vision_config.patch_size", vision_config.patch_size)?.get(),
            pinpoints,
            max_patches,
            tower: TowerSpec::new(family, config)?,
        })
    }

    fn side(&self) -> usize {
        self.tile / self.patch.max(1)
    }

    /// The packing of an image of `image_hw` pixels.
    fn layout(&self, image_hw: (usize, usize)) -> Result<AnyResLayout> {
        let layout = AnyResLayout::new(image_hw, &self.pinpoints, self.tile, self.patch)?;
        Ok(match self.max_patches {
            Some(max) => layout.with_max_patches(max),
            None => layout,
        })
    }
}

impl Model for Llava {
    fn connector(&self) -> &'static str {
        match self.family {
            ModelFamily::Llava => "LlavaMultiModalProjector",
            ModelFamily::LlavaNext => "LlavaMultiModalProjector + LlavaNextModel.pack_image_features",
            _ => "LlavaOnevisionMultiModalProjector + LlavaOnevisionModel.pack_image_features",
        }
    }

    fn dims(&self) -> Vec<(String, String)> {
        vec![
            (
                "projector".into(),
                format!("{} -> {} -> {} ({}, bias {})", self.vision, self.text, self.text, self.act_name, self.bias),
            ),
            ("layers".into(), "2 linear".into()),
        ]
    }

    fn settings(&self) -> Vec<(String, String)> {
        let mut s = vec![
            ("vision_feature_layer".into(), self.feature_layer.clone()),
            ("vision_feature_select_strategy".into(), self.strategy.clone()),
        ];
        if self.family != ModelFamily::Llava {
            s.push((
                "tile".into(),
                format!("{} px, patch {} ({0} // {1} = {} per side)", self.tile, self.patch, self.side()),
            ));
            s.push(("image_grid_pinpoints".into(), format!("{:?}", self.pinpoints)));
        }
        if let Some(max) = self.max_patches {
            s.push(("vision_aspect_ratio".into(), format!("anyres_max_{max}")));
        }
        s
    }

    fn tokens(&self) -> (String, String) {
        // The feature layer keeps CLIP's class token only under `full`.
        let class = usize::from(self.strategy == "full" && self.family == ModelFamily::Llava);
        let patches = self.side() * self.side() + class;
        if self.family == ModelFamily::Llava {
            return (format!("{patches} per image"), format!("{patches} per image"));
        }
        // The tile grid comes from each image's size: one example, the largest pinpoint.
        let largest = self.pinpoints.iter().copied().max_by_key(|(h, w)| h * w).unwrap_or((self.tile, self.tile));
        let most = self.pinpoints.iter().map(|(h, w)| (h / self.tile.max(1)) * (w / self.tile.max(1))).max();
        let example = match self.layout(largest) {
            Ok(l) => format!("{} for a {}x{} px image", l.tokens(), largest.0, largest.1),
            Err(e) => e.to_string(),
        };
        (
            format!(
                "{patches} per tile; 1 base tile + the grid the image size picks (up to {} tiles here)",
                most.unwrap_or(0)
            ),
            format!("set by the image size (image_size input): {example}"),
        )
    }

    fn shape_fields(&self) -> &'static str {
        "vision_config.hidden_size / text_config.hidden_size"
    }

    fn state_dict(&self) -> StateDict {
        let mut t = LlavaProjector::state_dict([self.vision, self.text, self.text], self.bias);
        if self.family != ModelFamily::Llava {
            t.tensor("image_newline", &[self.text]);
        }
        t
    }

    fn load(&self, gpu: &Gpu, weights: &Weights, activations: DType) -> Result<Box<dyn Runner>> {
        let projector = LlavaProjector::from_weights(gpu, weights, self.act)?.with_activations(activations);
        let tower = self.tower.load(gpu, weights, activations)?;
        if self.family == ModelFamily::Llava {
            return Ok(Box::new(Projector { projector, tower, gpu: gpu.clone() }));
        }
        let anyres = AnyRes::from_weights(gpu, weights, self.tile, self.patch, &self.pinpoints)?;
        Ok(Box::new(Packed { projector, anyres, config: self.clone(), tower, gpu: gpu.clone() }))
    }

    fn tower(&self) -> Option<&TowerSpec> {
        Some(&self.tower)
    }
}

/// `llava`: `projected = multi_modal_projector(image_features)`; from `pixel_values`
/// `[images, 3, H, W]` through the tower, `image_features` is every image's tokens in a row.
struct Projector {
    projector: LlavaProjector,
    tower: Option<Tower>,
    gpu: Gpu,
}

impl Runner for Projector {
    fn inputs(&self) -> &'static [&'static str] {
        &["image_features"]
    }

    fn vision_inputs(&self) -> &'static [&'static str] {
        if self.tower.is_some() { &["pixel_values"] } else { &[] }
    }

    fn build(&self, inputs: &Tensors) -> Result<Built> {
        if let Some(tower) = &self.tower
            && inputs.contains_key("pixel_values")
        {
            let (mut g, mut feeds) = (Graph::new(), Tensors::new());
            let pixels = tower.pixels(&mut g, inputs, 4, &mut feeds)?;
            let features = tower.features(&self.gpu, &mut g, &pixels, &all_slabs(&pixels), None, None)?;
            let projected = self.projector.add_to(&mut g, features)?;
            let out = g.add(Concat::Flatten, &[projected])?;
            g.output(out)?;
            return Ok(Built { graph: g, outputs: &["image_features"], feeds });
        }
        let (shape, x) = input_f32(inputs, "image_features", 3)?;
        let vision = self.projector.dims()[0];
        if shape[2] != vision {
            return Err(input_shape_error("image_features", shape, format!("[batch, tokens, {vision}]")));
        }
        Built::one(self.projector.graph(shape[0], shape[1])?.0, x, &["projected"])
    }
}

/// `llava_next` / `llava_onevision`: the projector over every tile, then
/// `pack_image_features` for the image's size.
struct Packed {
    projector: LlavaProjector,
    anyres: AnyRes,
    config: Llava,
    tower: Option<Tower>,
    gpu: Gpu,
}

impl Packed {
    /// `pixel_values` `[images, tiles, 3, H, W]` with `image_sizes` `[images, 2]` (and
    /// OneVision's `batch_num_images`): each image's real tiles through the tower (the
    /// processor's padding tiles are never embedded), the projector over all of them, each
    /// image packed, the images' tokens in a row.
    fn build_vision(&self, tower: &Tower, inputs: &Tensors) -> Result<Built> {
        let (mut g, mut feeds) = (Graph::new(), Tensors::new());
        let pixels = tower.pixels(&mut g, inputs, 5, &mut feeds)?;
        let (images, max_tiles) = (pixels.shape[0], pixels.shape[1]);
        let sizes = int_rows(inputs, "image_sizes", 2)?;
        if sizes.len() != images {
            let problem = format!("{} sizes for {images} images in pixel_values", sizes.len());
            return Err(Error::Input { name: "image_sizes".into(), problem });
        }
        // OneVision tiles an image only when its sample holds no other (need_patching).
        let patched: Vec<bool> = match (self.config.family, inputs.get("batch_num_images")) {
            (ModelFamily::LlavaOnevision, Some(t)) => {
                let counts = input_ints(inputs, "batch_num_images", t.data.len())?;
                let flags: Vec<bool> = counts.iter().flat_map(|&n| std::iter::repeat_n(n == 1, n)).collect();
                if flags.len() != images {
                    let problem = format!("{counts:?} images per sample, but pixel_values holds {images}");
                    return Err(Error::Input { name: "batch_num_images".into(), problem });
                }
                flags
            }
            _ => vec![true; images],
        };
        let mut table = Vec::new();
        let mut packing = Vec::with_capacity(images);
        for (i, size) in sizes.iter().enumerate() {
            let layout = if patched[i] {
                let layout = self
                    .config
                    .layout((size[0], size[1]))
                    .map_err(|e| Error::Input { name: "image_sizes".into(), problem: e.to_string() })?;
                Some(layout)
            } else {
                None
            };
            let tiles = layout.map_or(1, |l| l.tiles());
            if tiles > max_tiles {
                let problem = format!(
                    "image {i} of {}x{} px needs {tiles} tiles, pixel_values holds {max_tiles}",
                    size[0], size[1]
                );
                return Err(Error::Input { name: "pixel_values".into(), problem });
            }
            packing.push((table.len(), tiles, layout));
            table.extend((0..tiles).map(|t| (i * max_tiles + t) as u32));
        }
        let features = tower.features(&self.gpu, &mut g, &pixels, &table, None, None)?;
        let projected = self.projector.add_to(&mut g, features)?;
        let mut packed: Option<crate::graph::TensorId> = None;
        for (start, tiles, layout) in packing {
            let tiles_of = if tiles == table.len() {
                projected
            } else {
                g.add(Concat::Slice { start, len: tiles }, &[projected])?
            };
            let image = match layout {
                Some(layout) => self.anyres.add(&mut g, tiles_of, &layout)?,
                None => self.anyres.add_untiled(&mut g, tiles_of)?,
            };
            packed = Some(match packed {
                Some(previous) => g.add(Concat::Rows, &[previous, image])?,
                None => image,
            });
        }
        let out = packed.ok_or_else(|| Error::Input { name: "pixel_values".into(), problem: "no images".into() })?;
        g.output(out)?;
        Ok(Built { graph: g, outputs: &["image_features"], feeds })
    }
}

impl Runner for Packed {
    fn inputs(&self) -> &'static [&'static str] {
        &["image_features", "image_size"]
    }

    fn vision_inputs(&self) -> &'static [&'static str] {
        match (&self.tower, self.config.family) {
            (None, _) => &[],
            (_, ModelFamily::LlavaOnevision) => &["pixel_values", "image_sizes", "batch_num_images"],
            _ => &["pixel_values", "image_sizes"],
        }
    }

    fn build(&self, inputs: &Tensors) -> Result<Built> {
        if let Some(tower) = &self.tower
            && inputs.contains_key("pixel_values")
        {
            return self.build_vision(tower, inputs);
        }
        let (shape, x) = input_f32(inputs, "image_features", 3)?;
        let size = input_ints(inputs, "image_size", 2)?;
        let layout = self
            .config
            .layout((size[0], size[1]))
            .map_err(|e| Error::Input { name: "image_size".into(), problem: e.to_string() })?;
        let (side, vision) = (self.config.side(), self.projector.dims()[0]);
        let expected = [layout.tiles(), side * side, vision];
        if shape != expected {
            return Err(input_shape_error(
                "image_features",
                shape,
                format!("{expected:?} for an image of {}x{} px", size[0], size[1]),
            ));
        }
        let mut g = Graph::new();
        let features = g.input_as("image_features", shape, self.projector.activations())?;
        let projected = self.projector.add_to(&mut g, features)?;
        let packed = self.anyres.add(&mut g, projected, &layout)?;
        g.output(packed)?;
        g.output(projected)?;
        Built::one(g, x, &["packed", "projected_tiles"])
    }
}
