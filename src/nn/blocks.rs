//! Layers the connectors share: `nn.Linear` and `nn.LayerNorm` with their weights on the GPU,
//! loaded by upstream name, and their graph nodes.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Graph, TensorId};
use crate::ops::{Convert, Epilogue, GeluForm, InputNorm, LayerNorm, Residual, RmsNorm, Rope2d};
use crate::tensor::Tensor;
use crate::weights::Weights;

/// `nn.Linear`: weight `[out, in]`, optional bias `[out]`.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    pub(crate) weight: Tensor,
    pub(crate) bias: Option<Tensor>,
}

/// The `{prefix}.weight` names of stacked projections over `in_features` (checked), their
/// biases (f32) when `bias`, and the rows they stack to.
fn stacked(
    weights: &Weights,
    prefixes: &[&str],
    in_features: usize,
    bias: bool,
) -> Result<(Vec<String>, Vec<f32>, usize)> {
    let (mut names, mut b, mut rows) = (Vec::new(), Vec::new(), 0);
    for prefix in prefixes {
        let name = format!("{prefix}.weight");
        let shape = weights.shape(&name)?;
        if shape.len() != 2 || shape[1] != in_features {
            return Err(Error::Weights { name, problem: format!("shape {shape:?}, expected [out, {in_features}]") });
        }
        if bias {
            b.extend(weights.f32(&format!("{prefix}.bias"), Some(&[shape[0]]))?);
        }
        names.push(name);
        rows += shape[0];
    }
    Ok((names, b, rows))
}

/// What a linear node adds after its activation.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Skip {
    None,
    /// `+ residual`
    Add(TensorId),
    /// `+ tanh(gate)·` with the residual and the 1-element gate.
    Gated(TensorId, TensorId),
}

impl Skip {
    /// The GEMM epilogue with `activation` and this skip, and the tensors it adds as inputs.
    fn epilogue(self, activation: Option<GeluForm>) -> (Epilogue, Vec<TensorId>) {
        let (residual, extra) = match self {
            Skip::None => (Residual::None, vec![]),
            Skip::Add(r) => (Residual::Add, vec![r]),
            Skip::Gated(r, gate) => (Residual::Gated, vec![r, gate]),
        };
        (Epilogue { activation, residual, ..Epilogue::NONE }, extra)
    }
}

impl Linear {
    /// Loads `{prefix}.weight` (and `{prefix}.bias` when `bias`), checking the input width.
    pub(crate) fn load(gpu: &Gpu, weights: &Weights, prefix: &str, in_features: usize, bias: bool) -> Result<Self> {
        Self::concat(gpu, weights, &[prefix], in_features, bias)
    }

    /// Several `nn.Linear`s over the same input stacked into one (fused Q/K/V projections):
    /// their rows are concatenated in order, once, at load time.
    pub(crate) fn concat(
        gpu: &Gpu,
        weights: &Weights,
        prefixes: &[&str],
        in_features: usize,
        bias: bool,
    ) -> Result<Self> {
        let (names, b, rows) = stacked(weights, prefixes, in_features, bias)?;
        // Weights keep their checkpoint dtype (the GEMMs read f16 and bf16); biases are f32.
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        Ok(Self {
            weight: weights.upload_rows(gpu, &names, &[rows, in_features])?,
            bias: if bias { Some(Tensor::from_f32(gpu, &[rows], &b)?) } else { None },
        })
    }

    /// [`Linear::concat`] of a fused `[q | k | v]` projection with each rotated head's rows in
    /// `rope`'s paired order ([`Rope2d::paired_rows`]), so that the GEMM can turn its query and
    /// key outputs in its epilogue ([`Epilogue::rotary`]).
    pub(crate) fn concat_paired(
        gpu: &Gpu,
        weights: &Weights,
        prefixes: &[&str],
        in_features: usize,
        (bias, rope): (bool, &Rope2d),
    ) -> Result<Self> {
        let (names, b, rows) = stacked(weights, prefixes, in_features, bias)?;
        if rows < rope.heads * rope.head_dim {
            let problem = format!("{rows} rows, fewer than the {} heads of {} it turns", rope.heads, rope.head_dim);
            return Err(Error::Weights { name: names.join(", "), problem });
        }
        let order = rope.paired_rows(rows);
        let reorder =
            |v: &[f32], k: usize| -> Vec<f32> { order.iter().flat_map(|&r| &v[r * k..(r + 1) * k]).copied().collect() };
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let weight =
            weights.upload_arranged(gpu, &names, &[rows, in_features], |v| reorder(&v.concat(), in_features))?;
        Ok(Self { weight, bias: if bias { Some(Tensor::from_f32(gpu, &[rows], &reorder(&b, 1))?) } else { None } })
    }

    /// From tensors already on the GPU: weight `[out, in]` (any float), bias `[out]` (f32).
    pub(crate) fn from_tensors(connector: &'static str, weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let s = weight.shape().to_vec();
        let fits = s.len() == 2 && bias.as_ref().is_none_or(|b| b.shape() == [s[0]].as_slice());
        if !fits {
            let got = format!("weight {s:?}, bias {:?}", bias.as_ref().map(|b| b.shape().to_vec()));
            return Err(Error::shape(connector, "linear", "weight [out, in], bias [out]", got));
        }
        Ok(Self { weight, bias })
    }

    pub(crate) fn out_features(&self) -> usize {
        self.weight.shape()[0]
    }

    pub(crate) fn in_features(&self) -> usize {
        self.weight.shape()[1]
    }

    pub(crate) fn has_bias(&self) -> bool {
        self.bias.is_some()
    }

    /// Adds `skip(activation(x·Wᵀ + b))` to `g` as one GEMM.
    pub(crate) fn add(
        &self,
        g: &mut Graph,
        name: &str,
        x: TensorId,
        activation: Option<GeluForm>,
        skip: Skip,
    ) -> Result<TensorId> {
        let (epilogue, extra) = skip.epilogue(activation);
        self.add_epilogue(g, name, x, epilogue, &extra)
    }

    /// Adds `skip(activation(norm(x)·Wᵀ + b))` as one GEMM, the norm applied as x is loaded
    /// (where the GEMM can: a norm over whole rows), else as a norm node in front.
    pub(crate) fn add_normed(
        &self,
        g: &mut Graph,
        name: &str,
        norm: &Norm,
        x: TensorId,
        activation: Option<GeluForm>,
        skip: Skip,
    ) -> Result<TensorId> {
        let (epilogue, extra) = skip.epilogue(activation);
        self.add_normed_with(g, name, norm, x, epilogue, &extra)
    }

    /// [`Linear::add_epilogue`] on `norm(x)`, the norm fused into the GEMM's input where it can
    /// be (its parameters follow `extra`).
    pub(crate) fn add_normed_with(
        &self,
        g: &mut Graph,
        name: &str,
        norm: &Norm,
        x: TensorId,
        epilogue: Epilogue,
        extra: &[TensorId],
    ) -> Result<TensorId> {
        let Some(input_norm) = norm.as_input_norm() else {
            let normed = norm.add(g, &format!("{name}.norm"), x)?;
            return self.add_epilogue(g, name, normed, epilogue, extra);
        };
        let mut extra = extra.to_vec();
        norm.push_params(g, &format!("{name}.norm"), &mut extra);
        self.add_epilogue(g, name, x, epilogue.with_input_norm(input_norm), &extra)
    }

    /// Adds one GEMM with `epilogue` (its bias flag set from this layer); `extra` are the
    /// epilogue's inputs after the bias, in [`Epilogue::slots`] order.
    pub(crate) fn add_epilogue(
        &self,
        g: &mut Graph,
        name: &str,
        x: TensorId,
        epilogue: Epilogue,
        extra: &[TensorId],
    ) -> Result<TensorId> {
        let mut inputs = vec![x, g.constant(&format!("{name}.weight"), &self.weight)];
        if let Some(b) = &self.bias {
            inputs.push(g.constant(&format!("{name}.bias"), b));
        }
        inputs.extend_from_slice(extra);
        g.add(Epilogue { bias: self.bias.is_some(), ..epilogue }, &inputs)
    }
}

/// A norm over the last dim with its parameters on the GPU: `nn.LayerNorm` (affine weight and
/// bias) or an RMSNorm (weight only).
#[derive(Debug, Clone)]
pub(crate) struct Norm {
    weight: Tensor,
    bias: Option<Tensor>,
    op: NormOp,
}

#[derive(Debug, Clone, Copy)]
enum NormOp {
    Layer(LayerNorm),
    Rms(RmsNorm),
}

impl Norm {
    /// Loads an `nn.LayerNorm(dim, eps)`: `{prefix}.weight` and `{prefix}.bias`, both `[dim]`.
    pub(crate) fn load(gpu: &Gpu, weights: &Weights, prefix: &str, dim: usize, eps: f32) -> Result<Self> {
        Self::load_layer(gpu, weights, prefix, dim, LayerNorm::new(eps))
    }

    /// Loads a LayerNorm of the given kind (per head: weight and bias `[dim]` for every
    /// `dim`-chunk of the rows it normalises).
    pub(crate) fn load_layer(gpu: &Gpu, weights: &Weights, prefix: &str, dim: usize, op: LayerNorm) -> Result<Self> {
        Ok(Self {
            weight: norm_param(gpu, weights, prefix, "weight", dim)?,
            bias: Some(norm_param(gpu, weights, prefix, "bias", dim)?),
            op: NormOp::Layer(op),
        })
    }

    /// A LayerNorm without affine (weight 1, bias 0): what several norms share when their
    /// affine parts are folded into the weights that follow.
    pub(crate) fn plain(gpu: &Gpu, dim: usize, eps: f32) -> Result<Self> {
        Ok(Self {
            weight: Tensor::from_f32(gpu, &[dim], &vec![1.0; dim])?,
            bias: Some(Tensor::from_f32(gpu, &[dim], &vec![0.0; dim])?),
            op: NormOp::Layer(LayerNorm::new(eps)),
        })
    }

    /// Loads an RMSNorm: `{prefix}.weight` `[dim]`.
    pub(crate) fn load_rms(gpu: &Gpu, weights: &Weights, prefix: &str, dim: usize, op: RmsNorm) -> Result<Self> {
        Ok(Self { weight: norm_param(gpu, weights, prefix, "weight", dim)?, bias: None, op: NormOp::Rms(op) })
    }

    /// The norm as a fused sublayer's post-norm (its eps): a LayerNorm over whole rows.
    pub(crate) fn as_post_norm(&self) -> Option<f32> {
        match self.op {
            NormOp::Layer(op) if !op.per_head && self.bias.is_some() => Some(op.eps),
            _ => None,
        }
    }

    /// Appends its weight (and bias) as constants of `g`.
    pub(crate) fn push_params(&self, g: &mut Graph, name: &str, inputs: &mut Vec<TensorId>) {
        inputs.push(g.constant(&format!("{name}.weight"), &self.weight));
        if let Some(b) = &self.bias {
            inputs.push(g.constant(&format!("{name}.bias"), b));
        }
    }

    /// The norm as a GEMM's input norm, where it is one over whole rows.
    pub(crate) fn as_input_norm(&self) -> Option<InputNorm> {
        match self.op {
            NormOp::Layer(op) if !op.per_head => Some(InputNorm::Layer { eps: op.eps }),
            NormOp::Rms(op) if !op.per_head => Some(InputNorm::Rms { eps: op.eps, unit_offset: op.unit_offset }),
            _ => None,
        }
    }

    pub(crate) fn add(&self, g: &mut Graph, name: &str, x: TensorId) -> Result<TensorId> {
        let mut inputs = vec![x];
        self.push_params(g, name, &mut inputs);
        match self.op {
            NormOp::Layer(op) => g.add(op, &inputs),
            NormOp::Rms(op) => g.add(op, &inputs),
        }
    }
}

fn norm_param(gpu: &Gpu, weights: &Weights, prefix: &str, leaf: &str, dim: usize) -> Result<Tensor> {
    let name = format!("{prefix}.{leaf}");
    Tensor::from_f32(gpu, &[dim], &weights.f32(&name, Some(&[dim]))?)
}

/// `tensor` (an f32 parameter: learnable queries, latents) as a constant of `g` in the
/// activation storage type: rounded to f16 by a convert node when the graph runs in f16.
pub(crate) fn activation_constant(g: &mut Graph, name: &str, tensor: &Tensor, storage: DType) -> Result<TensorId> {
    let id = g.constant(name, tensor);
    if storage == DType::F32 { Ok(id) } else { g.add(Convert { to: storage }, &[id]) }
}

/// Number of consecutive layers `0, 1, ..` for which `probe(i)` names a tensor in `weights`.
pub(crate) fn count_layers(weights: &Weights, probe: impl Fn(usize) -> String) -> Result<usize> {
    let names = weights.names()?;
    Ok((0..).take_while(|&i| names.binary_search(&probe(i)).is_ok()).count())
}

/// `heads` that divide `width` evenly, as the head dimension.
pub(crate) fn head_dim(connector: &'static str, width: usize, heads: usize) -> Result<u32> {
    if heads == 0 || !width.is_multiple_of(heads) {
        return Err(Error::shape(
            connector,
            "attention width divisible by heads",
            format!("a multiple of {heads}"),
            width,
        ));
    }
    Ok((width / heads) as u32)
}

/// The first `candidates` prefix under which `leaf` exists (`""` allowed): checkpoints store
/// the same module under different parents.
pub(crate) fn find_prefix(weights: &Weights, candidates: &[&str], leaf: &str) -> Result<String> {
    let names: Vec<String> = candidates.iter().map(|p| format!("{p}{leaf}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let found = weights.resolve(&refs)?;
    Ok(found[..found.len() - leaf.len()].to_string())
}
