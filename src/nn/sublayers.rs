//! The connectors' sublayers as fused nodes: an attention with its output projection,
//! residual and post-norm (`attention_rows`), a feed-forward block with its input norm,
//! residual and post-norm (`mlp_rows`), falling back to the nodes they fuse where a sublayer
//! does not fit one (wider than a workgroup's rows, weights of two types, per-head norms).

use super::blocks::{Linear, Norm, Skip};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::graph::{Graph, TensorId};
use crate::ops::rows::MAX_WIDTH;
use crate::ops::{Attention, AttentionRows, GeluForm, MlpRows, RowsEpilogue};
use crate::weights::Weights;

impl Linear {
    /// The inputs of a fused sublayer's output side: this weight, its bias, the residual and
    /// the post-norm's parameters, with the epilogue they make; `None` where it cannot be
    /// fused (wider than a workgroup's rows, or a norm that is not a LayerNorm over them).
    fn rows_epilogue(
        &self,
        g: &mut Graph,
        name: &str,
        skip: Option<TensorId>,
        post_norm: Option<&Norm>,
    ) -> Option<(RowsEpilogue, Vec<TensorId>)> {
        let eps = match post_norm {
            Some(norm) => Some(norm.as_post_norm()?),
            None => None,
        };
        if self.out_features() > MAX_WIDTH {
            return None;
        }
        let mut inputs = vec![g.constant(&format!("{name}.weight"), &self.weight)];
        if let Some(b) = &self.bias {
            inputs.push(g.constant(&format!("{name}.bias"), b));
        }
        inputs.extend(skip);
        if let Some(norm) = post_norm {
            norm.push_params(g, &format!("{name}.norm"), &mut inputs);
        }
        Some((RowsEpilogue { bias: self.bias.is_some(), skip: skip.is_some(), post_norm: eps }, inputs))
    }

    /// Adds `post_norm(attention(inputs)·Wᵀ + b + skip)`: one `attention_rows` node where it
    /// fits, else attention, GEMM and norm nodes. (A plan splits the fused node the same way
    /// on devices where that runs faster: [`crate::kernels::rows::fuses_sublayers`].)
    pub(crate) fn add_after_attention(
        &self,
        g: &mut Graph,
        name: &str,
        attention: Attention,
        inputs: &[TensorId],
        skip: Option<TensorId>,
        post_norm: Option<&Norm>,
    ) -> Result<TensorId> {
        if let Some((epilogue, extra)) = self.rows_epilogue(g, name, skip, post_norm) {
            return g.add(AttentionRows { attention, epilogue }, &[inputs, &extra].concat());
        }
        let attended = g.add(attention, inputs)?;
        let sum = self.add(g, name, attended, None, skip.map_or(Skip::None, Skip::Add))?;
        match post_norm {
            Some(norm) => norm.add(g, &format!("{name}.norm"), sum),
            None => Ok(sum),
        }
    }
}

/// open_flamingo's `FeedForward`: `nn.Sequential(LayerNorm, Linear, GELU, Linear)` without
/// biases, stored as `{prefix}.0` (norm), `{prefix}.1` and `{prefix}.3`.
#[derive(Debug, Clone)]
pub(crate) struct FeedForward {
    norm: Norm,
    up: Linear,
    down: Linear,
}

impl FeedForward {
    pub(crate) fn load(gpu: &Gpu, weights: &Weights, prefix: &str, dim: usize, eps: f32) -> Result<Self> {
        let up = Linear::load(gpu, weights, &format!("{prefix}.1"), dim, false)?;
        Ok(Self {
            norm: Norm::load(gpu, weights, &format!("{prefix}.0"), dim, eps)?,
            down: Linear::load(gpu, weights, &format!("{prefix}.3"), up.out_features(), false)?,
            up,
        })
    }

    /// Adds `skip(FF(x))` to `g`: the LayerNorm rides in the first GEMM's input, the residual
    /// (gated or not) in the last one's epilogue.
    pub(crate) fn add(&self, g: &mut Graph, name: &str, x: TensorId, skip: Skip) -> Result<TensorId> {
        let f = self.up.add_normed(g, &format!("{name}.1"), &self.norm, x, Some(GeluForm::Erf), Skip::None)?;
        self.down.add(g, &format!("{name}.3"), f, None, skip)
    }

    /// Whether [`FeedForward::add_residual`] fuses into one dispatch with `post_norm`.
    pub(crate) fn fuses(&self, post_norm: &Norm) -> bool {
        self.mlp().fits(Some(post_norm))
    }

    fn mlp(&self) -> Mlp<'_> {
        Mlp { norm: Some(&self.norm), up: &self.up, activation: Some(GeluForm::Erf), down: &self.down }
    }

    /// Adds `post_norm(FF(x) + x)`: one `mlp_rows` node where it fits.
    pub(crate) fn add_residual(
        &self,
        g: &mut Graph,
        name: &str,
        x: TensorId,
        post_norm: Option<&Norm>,
    ) -> Result<TensorId> {
        self.mlp().add(g, name, x, post_norm)
    }
}

/// Two `nn.Linear`s with an activation between, after an optional norm: a feed-forward
/// sublayer, added with its residual by [`Mlp::add`].
pub(crate) struct Mlp<'a> {
    pub(crate) norm: Option<&'a Norm>,
    pub(crate) up: &'a Linear,
    pub(crate) activation: Option<GeluForm>,
    pub(crate) down: &'a Linear,
}

impl Mlp<'_> {
    /// Whether one `mlp_rows` dispatch can run it with `post_norm`: weights of one type, an
    /// output no wider than a workgroup's rows, norms over whole rows.
    fn fits(&self, post_norm: Option<&Norm>) -> bool {
        self.up.weight.dtype() == self.down.weight.dtype()
            && self.down.out_features() <= MAX_WIDTH
            && self.norm.is_none_or(|n| n.as_input_norm().is_some())
            && post_norm.is_none_or(|n| n.as_post_norm().is_some())
    }

    /// Adds `post_norm(down(act(up(norm(x)))) + x)`: one `mlp_rows` node where it fits
    /// (weights of one type, norms over whole rows), else GEMMs (the input norm in the first
    /// one's loads where it can be) and a norm node. The weights are named `{name}.1` and
    /// `{name}.3` (open_flamingo's `FeedForward`) unless given.
    pub(crate) fn add(&self, g: &mut Graph, name: &str, x: TensorId, post_norm: Option<&Norm>) -> Result<TensorId> {
        self.add_named(g, [&format!("{name}.1"), &format!("{name}.3")], x, post_norm)
    }

    /// [`Mlp::add`] with the two Linears' names.
    pub(crate) fn add_named(
        &self,
        g: &mut Graph,
        [up_name, down_name]: [&str; 2],
        x: TensorId,
        post_norm: Option<&Norm>,
    ) -> Result<TensorId> {
        if self.fits(post_norm)
            && let Some((epilogue, extra)) = self.down.rows_epilogue(g, down_name, Some(x), post_norm)
        {
            let input_norm = self.norm.and_then(Norm::as_input_norm);
            let mut inputs = vec![x, g.constant(&format!("{up_name}.weight"), &self.up.weight)];
            if let Some(b) = &self.up.bias {
                inputs.push(g.constant(&format!("{up_name}.bias"), b));
            }
            if let Some(norm) = self.norm {
                norm.push_params(g, &format!("{up_name}.norm"), &mut inputs);
            }
            inputs.extend(extra);
            let op = MlpRows { in_bias: self.up.bias.is_some(), activation: self.activation, input_norm, epilogue };
            return g.add(op, &inputs);
        }
        let f = match self.norm {
            Some(norm) => self.up.add_normed(g, up_name, norm, x, self.activation, Skip::None)?,
            None => self.up.add(g, up_name, x, self.activation, Skip::None)?,
        };
        let sum = self.down.add(g, down_name, f, None, Skip::Add(x))?;
        match post_norm {
            Some(norm) => norm.add(g, &format!("{down_name}.norm"), sum),
            None => Ok(sum),
        }
    }
}
