//! Token compression before or after a projector: 2×2 pooling and bilinear halving of the
//! patch grid, ToMe merging, and LLaVA-NeXT AnyRes packing, as graph pieces and composed with
//! the LLaVA projector.

use super::{ConnectorPlan, LlavaProjector};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Graph, TensorId};
use crate::nn::activation_constant;
use crate::ops::{AnyResLayout, AvgPool, Concat, Step, Tome};
use crate::tensor::Tensor;
use crate::weights::Weights;

/// The outputs of a ToMe merge in a graph.
#[derive(Debug, Clone, Copy)]
pub struct Merged {
    /// `[batch, n - r, C]`: unmerged A tokens, then every B token.
    pub tokens: TensorId,
    /// `[batch, n - r, 1]`: how many input tokens (by size) each row holds, for
    /// proportional attention (`log(size)`).
    pub sizes: TensorId,
    /// `[batch, n]` (u32): the output row of every input token (upstream `merge_source`).
    pub source: TensorId,
}

/// Adds ToMe merging of `x` `[batch, n, C]` to `g`, with `x` as the similarity metric and
/// `sizes` `[batch, n, 1]` (all ones when `None`: a constant is uploaded).
pub fn add_token_merge(gpu: &Gpu, g: &mut Graph, x: TensorId, sizes: Option<TensorId>, tome: Tome) -> Result<Merged> {
    let shape = g.shape(x).map(<[usize]>::to_vec).unwrap_or_default();
    let batch = shape.first().copied().unwrap_or(0);
    let sizes = match sizes {
        Some(s) => s,
        None => {
            g.constant("tome.ones", &Tensor::from_f32(gpu, &[batch, tome.tokens, 1], &vec![1.0; batch * tome.tokens])?)
        }
    };
    let unit = g.add(tome.step(Step::Normalize), &[x])?;
    let best = g.add(tome.step(Step::BestMatch), &[unit])?;
    let scores = g.add(tome.step(Step::Score), &[unit, best])?;
    let ranks = g.add(tome.step(Step::Rank), &[scores])?;
    let rows = g.add(tome.step(Step::Place), &[best, ranks])?;
    Ok(Merged {
        tokens: g.add(tome.step(Step::MergeFeatures), &[x, sizes, rows])?,
        sizes: g.add(tome.step(Step::MergeSizes), &[sizes, rows])?,
        source: g.add(tome.step(Step::Source), &[x, rows])?,
    })
}

/// Where a pool sits relative to the projector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolOrder {
    /// Pool the vision features, then project (4× less projector work).
    PoolThenProject,
    /// Project, then pool in the LLM's space (LLaVA-NeXT-Video, OneVision).
    ProjectThenPool,
}

/// LLaVA-NeXT's AnyRes packer: the learned `image_newline` and the tiling configuration.
#[derive(Debug, Clone)]
pub struct AnyRes {
    newline: Tensor,
    /// Vision tower input size in pixels (one tile).
    pub tile: usize,
    /// Patch size in pixels.
    pub patch: usize,
    /// `image_grid_pinpoints` as (height, width).
    pub pinpoints: Vec<(usize, usize)>,
}

impl AnyRes {
    /// Loads `image_newline` (llava-hf `image_newline`, in memory `model.image_newline`).
    pub fn from_weights(
        gpu: &Gpu,
        weights: &Weights,
        tile: usize,
        patch: usize,
        pinpoints: &[(usize, usize)],
    ) -> Result<Self> {
        let name = weights.resolve(&["image_newline", "model.image_newline"])?;
        let shape = weights.shape(name)?;
        if shape.len() != 1 {
            return Err(Error::Weights { name: name.into(), problem: format!("shape {shape:?}, expected [hidden]") });
        }
        Self::new(Tensor::from_f32(gpu, &shape, &weights.f32(name, None)?)?, tile, patch, pinpoints)
    }

    /// From a newline vector already on the GPU.
    pub fn new(newline: Tensor, tile: usize, patch: usize, pinpoints: &[(usize, usize)]) -> Result<Self> {
        // Validates the configuration once, on a square image.
        AnyResLayout::new((tile, tile), pinpoints, tile, patch)?;
        Ok(Self { newline, tile, patch, pinpoints: pinpoints.to_vec() })
    }

    /// The packing of an image of `image_hw` pixels.
    pub fn layout(&self, image_hw: (usize, usize)) -> Result<AnyResLayout> {
        AnyResLayout::new(image_hw, &self.pinpoints, self.tile, self.patch)
    }

    /// Adds the packing of `features` `[tiles, side², D]` to `g`.
    pub fn add(&self, g: &mut Graph, features: TensorId, layout: &AnyResLayout) -> Result<TensorId> {
        let newline = g.constant("image_newline", &self.newline);
        g.add(*layout, &[features, newline])
    }

    /// Adds the packing of an image that was not tiled (LLaVA-OneVision's images in samples of
    /// several): its one tile's tokens `[1, side², D]` then one `image_newline`.
    pub fn add_untiled(&self, g: &mut Graph, features: TensorId) -> Result<TensorId> {
        let storage = g.meta(features).map_or(DType::F32, |m| m.dtype);
        let flat = g.add(Concat::Flatten, &[features])?;
        let row = [1, self.newline.len()];
        let newline = Tensor::from_buffer(self.newline.gpu(), self.newline.buffer().clone(), &row, DType::F32)?;
        let newline = activation_constant(g, "image_newline.row", &newline, storage)?;
        g.add(Concat::Rows, &[flat, newline])
    }
}

impl LlavaProjector {
    /// Projector and a 2×2 pool (`ceil_mode` for odd grids) over a `grid` of patches.
    pub fn plan_pooled(
        &self,
        gpu: &Gpu,
        batch: usize,
        grid: (usize, usize),
        order: PoolOrder,
    ) -> Result<ConnectorPlan> {
        let pool = AvgPool::two_by_two(grid.0, grid.1, true);
        let mut g = Graph::new();
        let x = g.input_as("image_features", &[batch, grid.0 * grid.1, self.dims()[0]], self.activations())?;
        let y = match order {
            PoolOrder::PoolThenProject => {
                let pooled = g.add(pool, &[x])?;
                self.add_to(&mut g, pooled)?
            }
            PoolOrder::ProjectThenPool => {
                let projected = self.add_to(&mut g, x)?;
                g.add(pool, &[projected])?
            }
        };
        g.output(y)?;
        ConnectorPlan::new(gpu, g, &["projected"])
    }

    /// ToMe (removing `r` of `tokens`, x as its own metric) then the projector.
    pub fn plan_merged(
        &self,
        gpu: &Gpu,
        batch: usize,
        tokens: usize,
        r: usize,
        class_token: bool,
    ) -> Result<ConnectorPlan> {
        let tome = Tome::new(tokens, r, class_token)?;
        let mut g = Graph::new();
        let x = g.input_as("image_features", &[batch, tokens, self.dims()[0]], self.activations())?;
        let merged = add_token_merge(gpu, &mut g, x, None, tome)?;
        let y = self.add_to(&mut g, merged.tokens)?;
        g.output(y)?;
        ConnectorPlan::new(gpu, g, &["projected"])
    }

    /// LLaVA-NeXT: project every tile's features `[tiles, side², vision_dim]`, then pack.
    pub fn plan_anyres(&self, gpu: &Gpu, anyres: &AnyRes, layout: &AnyResLayout) -> Result<ConnectorPlan> {
        let mut g = Graph::new();
        let shape = [layout.tiles(), layout.side * layout.side, self.dims()[0]];
        let x = g.input_as("image_features", &shape, self.activations())?;
        let projected = self.add_to(&mut g, x)?;
        let y = anyres.add(&mut g, projected, layout)?;
        g.output(y)?;
        ConnectorPlan::new(gpu, g, &["packed"])
    }
}
