//! Multi-head attention (`shaders/attention.wgsl`): the flash kernel and the naive three-pass
//! baseline that materialises the scores.

use super::{Access, Caps, Cost, KernelId, KernelSpec, Meta, check_arity, check_u32_elements};
use crate::error::{Error, Result};
use crate::shader;

/// Name in errors and reports.
pub const NAME: &str = "attention";
/// Largest head dimension the kernels hold in registers.
pub const MAX_HEAD_DIM: u32 = 128;

/// What a fully masked query row produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MaskedRows {
    /// Masked logits are `-f32::MAX` (open_flamingo's fill), so the row averages every value.
    Uniform,
    /// The row is zero: open_flamingo with `only_attend_immediate_media=True`.
    Zero,
}

/// Static configuration of an attention node. Inputs: queries `[.., Nq, Wq]`, the first
/// key/value source `[.., Na, Wa]`, the second `[.., Nb, Wb]` when `two_sources`, and a keep
/// mask `[.., Nq, Na + Nb]` (non-zero = attend) when `mask`. Leading dims are the batch and
/// must agree. Output: `[.., Nq, heads·head_dim]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attention {
    /// Attention heads.
    pub heads: u32,
    /// Dimension per head (1..=128).
    pub head_dim: u32,
    /// Column of head 0's query in a query row.
    pub q_offset: u32,
    /// Column of head 0's key in a key/value row.
    pub k_offset: u32,
    /// Column of head 0's value in a key/value row.
    pub v_offset: u32,
    /// Keys/values come from two tensors (the Perceiver's media and latents).
    pub two_sources: bool,
    /// A keep mask `[batch, queries, keys]` is the last input.
    pub mask: bool,
    /// What a fully masked query row becomes.
    pub masked_rows: MaskedRows,
    /// Multiplies the queries; `head_dim^-0.5` by default.
    pub scale: f32,
}

impl Attention {
    /// `heads × head_dim` attention over key/value rows laid out `[K; V]` (an `nn.Linear`
    /// producing both, as open_flamingo's `to_kv`), no mask.
    pub fn new(heads: u32, head_dim: u32) -> Self {
        Self {
            heads,
            head_dim,
            q_offset: 0,
            k_offset: 0,
            v_offset: heads * head_dim,
            two_sources: false,
            mask: false,
            masked_rows: MaskedRows::Uniform,
            scale: 1.0 / (head_dim as f32).sqrt(),
        }
    }

    /// Queries at column `q`, keys at `k` and values at `v` of their rows (fused projections).
    pub fn offsets(self, q: u32, k: u32, v: u32) -> Self {
        Self { q_offset: q, k_offset: k, v_offset: v, ..self }
    }

    /// Keys and values continue in a second tensor (read in place, not concatenated).
    pub fn two_sources(self) -> Self {
        Self { two_sources: true, ..self }
    }

    /// Takes a keep mask input; fully masked rows behave as `rows` says.
    pub fn masked(self, rows: MaskedRows) -> Self {
        Self { mask: true, masked_rows: rows, ..self }
    }

    fn width(&self) -> u64 {
        u64::from(self.heads) * u64::from(self.head_dim)
    }

    pub(crate) fn kv_inputs(&self) -> usize {
        1 + usize::from(self.two_sources)
    }
}

/// Which kernel of `attention.wgsl` a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pass {
    /// Online softmax, no score matrix. Inputs: q, kv_a, then kv_b and mask when configured.
    Flash,
    /// Naive pass 1: scores `[B, H, Nq, Nk]`. Inputs as flash.
    Scores,
    /// Naive pass 2: row softmax. Inputs: scores, then the mask when configured.
    Softmax,
    /// Naive pass 3: weights · V. Inputs: weights, kv_a, then kv_b when configured.
    WeightedSum,
}

/// Mirrors `Params` in `shaders/attention.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Batch items.
    pub batch: u32,
    /// Queries per item.
    pub queries: u32,
    /// Keys of the first source per item.
    pub keys_a: u32,
    /// Keys of the second source per item (0: one source).
    pub keys_b: u32,
    /// Attention heads.
    pub heads: u32,
    /// Floats per query row.
    pub q_stride: u32,
    /// Column of head 0's query.
    pub q_offset: u32,
    /// Floats per row of the first source.
    pub kv_stride_a: u32,
    /// Floats per row of the second source.
    pub kv_stride_b: u32,
    /// Column of head 0's key in a K/V row.
    pub k_offset: u32,
    /// Column of head 0's value in a K/V row.
    pub v_offset: u32,
    /// Applied to q before the dot product.
    pub scale: f32,
}

const WORKGROUP: u32 = 64;
const BINDINGS: &[Access] =
    &[Access::Read, Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::Uniform];

const fn spec(id: KernelId, name: &'static str, entry: &'static str) -> KernelSpec {
    KernelSpec {
        id,
        name,
        file: "attention.wgsl",
        prelude: &[shader::ATTENTION_LAYOUT],
        body: shader::ATTENTION,
        entry,
        bindings: BINDINGS,
        workgroup_size: [WORKGROUP, 1, 1],
        params_size: std::mem::size_of::<Params>() as u64,
        features: wgpu::Features::empty(),
    }
}

/// Flash attention sharing each key across 8 lanes by subgroup broadcast: the fast path.
pub const FLASH_SUBGROUP_SPEC: KernelSpec = KernelSpec {
    id: KernelId::AttentionSubgroup,
    name: "attention_subgroup",
    file: "attention_subgroup.wgsl",
    body: shader::ATTENTION_SUBGROUP,
    entry: "flash_subgroup",
    features: wgpu::Features::SUBGROUP,
    ..spec(KernelId::AttentionSubgroup, "", "")
};

/// The flash kernel for a device: subgroup broadcast when it has subgroups of 8+ lanes.
pub(crate) fn select(pass: Pass, caps: &Caps) -> &'static KernelSpec {
    if pass == Pass::Flash && caps.subgroups && caps.subgroup_min_size >= 8 {
        &FLASH_SUBGROUP_SPEC
    } else {
        spec_of(pass)
    }
}

/// Flash attention, any device.
pub const FLASH_SPEC: KernelSpec = spec(KernelId::Attention, "attention", "flash");
/// Naive pass 1: the scores.
pub const SCORES_SPEC: KernelSpec = spec(KernelId::AttentionScores, "attention_scores", "scores");
/// Naive pass 2: row softmax.
pub const SOFTMAX_SPEC: KernelSpec = spec(KernelId::AttentionSoftmax, "attention_softmax", "softmax_rows");
/// Naive pass 3: weights · V.
pub const WEIGHTED_SUM_SPEC: KernelSpec =
    spec(KernelId::AttentionWeightedSum, "attention_weighted_sum", "weighted_sum");

pub(crate) fn spec_of(pass: Pass) -> &'static KernelSpec {
    match pass {
        Pass::Flash => &FLASH_SPEC,
        Pass::Scores => &SCORES_SPEC,
        Pass::Softmax => &SOFTMAX_SPEC,
        Pass::WeightedSum => &WEIGHTED_SUM_SPEC,
    }
}

pub(crate) fn overrides(cfg: &Attention) -> Vec<(&'static str, f64)> {
    vec![
        ("HEAD_DIM", f64::from(cfg.head_dim)),
        ("MASK", f64::from(u8::from(cfg.mask))),
        ("MASKED_ROWS", if cfg.masked_rows == MaskedRows::Zero { 1.0 } else { 0.0 }),
    ]
}

pub(crate) fn read_slots(pass: Pass, cfg: &Attention) -> Vec<Option<usize>> {
    let second = cfg.two_sources.then_some(2);
    let mask_after = |n: usize| cfg.mask.then_some(n);
    match pass {
        Pass::Flash | Pass::Scores => vec![Some(0), Some(1), second, mask_after(1 + cfg.kv_inputs())],
        Pass::Softmax => vec![Some(0), None, None, mask_after(1)],
        Pass::WeightedSum => vec![Some(0), Some(1), second, None],
    }
}

/// `[.., rows, cols]` → (batch, rows, cols); rank 2 is one batch item.
fn split(shape: &[usize]) -> (usize, usize, usize) {
    let n = shape.len();
    (shape[..n.saturating_sub(2)].iter().product(), shape[n - 2], shape[n - 1])
}

fn check_rank(what: &str, shape: &[usize]) -> Result<()> {
    check_u32_elements(NAME, what, shape)?;
    if shape.len() < 2 {
        return Err(Error::shape(NAME, format!("{what} rank"), ">= 2 ([.., rows, features])", shape.len()));
    }
    Ok(())
}

/// Key/value sources: (keys per source, row width per source) after checking them.
fn check_sources(cfg: &Attention, batch: usize, sources: &[&Meta]) -> Result<Vec<(usize, usize)>> {
    let need = u64::from(cfg.k_offset.max(cfg.v_offset)) + cfg.width();
    sources
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let what = format!("key/value source {i}");
            check_rank(&what, &m.shape)?;
            let (b, rows, width) = split(&m.shape);
            if b != batch {
                return Err(Error::shape(NAME, format!("{what} batch (leading dims)"), batch, b));
            }
            if (width as u64) < need {
                return Err(Error::shape(
                    NAME,
                    format!("{what} row width (key/value offsets + heads·head_dim)"),
                    format!(">= {need}"),
                    width,
                ));
            }
            Ok((rows, width))
        })
        .collect()
}

fn check_config(cfg: &Attention) -> Result<()> {
    if cfg.heads == 0 {
        return Err(Error::shape(NAME, "heads", ">= 1", 0));
    }
    if cfg.head_dim == 0 || cfg.head_dim > MAX_HEAD_DIM {
        return Err(Error::shape(NAME, "head_dim", format!("1..={MAX_HEAD_DIM}"), cfg.head_dim));
    }
    Ok(())
}

fn check_mask(batch: usize, queries: usize, keys: usize, mask: &Meta) -> Result<()> {
    check_u32_elements(NAME, "mask", &mask.shape)?;
    let (b, rows, cols) = split(&mask.shape);
    if mask.shape.len() < 2 || (b, rows, cols) != (batch, queries, keys) {
        return Err(Error::shape(
            NAME,
            "mask shape ([batch, queries, keys])",
            format!("[{batch}, {queries}, {keys}]"),
            format!("{:?}", mask.shape),
        ));
    }
    Ok(())
}

pub(crate) fn check(pass: Pass, cfg: &Attention, inputs: &[&Meta]) -> Result<Meta> {
    check_config(cfg)?;
    let mask_inputs = usize::from(cfg.mask);
    let arity = match pass {
        Pass::Flash | Pass::Scores => 1 + cfg.kv_inputs() + mask_inputs,
        Pass::Softmax => 1 + mask_inputs,
        Pass::WeightedSum => 1 + cfg.kv_inputs(),
    };
    check_arity(NAME, inputs, arity)?;
    let heads = cfg.heads as usize;
    let width = cfg.width() as usize;
    let first = &inputs[0].shape;
    match pass {
        Pass::Flash | Pass::Scores => {
            check_rank("queries", first)?;
            let (batch, queries, q_width) = split(first);
            if (q_width as u64) < u64::from(cfg.q_offset) + cfg.width() {
                return Err(Error::shape(
                    NAME,
                    "query row width (q offset + heads·head_dim)",
                    format!(">= {}", u64::from(cfg.q_offset) + cfg.width()),
                    q_width,
                ));
            }
            let sources = check_sources(cfg, batch, &inputs[1..1 + cfg.kv_inputs()])?;
            let keys: usize = sources.iter().map(|s| s.0).sum();
            if cfg.mask {
                check_mask(batch, queries, keys, inputs[1 + cfg.kv_inputs()])?;
            }
            let mut out = first[..first.len() - 1].to_vec();
            if pass == Pass::Flash {
                out.push(width);
            } else {
                out = vec![batch, heads, queries, keys];
            }
            check_u32_elements(NAME, "output", &out)?;
            Ok(Meta::f32(&out))
        }
        Pass::Softmax => {
            let [batch, h, queries, keys] = first[..] else {
                return Err(Error::shape(NAME, "scores rank ([batch, heads, queries, keys])", 4, first.len()));
            };
            if h != heads {
                return Err(Error::shape(NAME, "scores heads", heads, h));
            }
            if cfg.mask {
                check_mask(batch, queries, keys, inputs[1])?;
            }
            Ok(inputs[0].clone())
        }
        Pass::WeightedSum => {
            let [batch, h, queries, keys] = first[..] else {
                return Err(Error::shape(NAME, "weights rank ([batch, heads, queries, keys])", 4, first.len()));
            };
            if h != heads {
                return Err(Error::shape(NAME, "weights heads", heads, h));
            }
            let sources = check_sources(cfg, batch, &inputs[1..])?;
            let total: usize = sources.iter().map(|s| s.0).sum();
            if total != keys {
                return Err(Error::shape(NAME, "keys in the value sources", keys, total));
            }
            Ok(Meta::f32(&[batch, queries, width]))
        }
    }
}

pub(crate) fn params(pass: Pass, cfg: &Attention, inputs: &[&Meta]) -> Params {
    let first = split(&inputs[0].shape);
    let (batch, queries, q_stride, sources) = match pass {
        Pass::Flash | Pass::Scores => (first.0, first.1, first.2, &inputs[1..1 + cfg.kv_inputs()]),
        Pass::Softmax => {
            let s = &inputs[0].shape;
            (s[0], s[2], 0, &inputs[..0])
        }
        Pass::WeightedSum => {
            let s = &inputs[0].shape;
            (s[0], s[2], 0, &inputs[1..])
        }
    };
    let source = |i: usize| {
        sources.get(i).map_or((0, 0), |m| {
            let (_, rows, width) = split(&m.shape);
            (rows as u32, width as u32)
        })
    };
    let (mut keys_a, kv_stride_a) = source(0);
    let (keys_b, kv_stride_b) = source(1);
    if pass == Pass::Softmax {
        keys_a = inputs[0].shape[3] as u32;
    }
    Params {
        batch: batch as u32,
        queries: queries as u32,
        keys_a,
        keys_b,
        heads: cfg.heads,
        q_stride: q_stride as u32,
        q_offset: cfg.q_offset,
        kv_stride_a,
        kv_stride_b,
        k_offset: cfg.k_offset,
        v_offset: cfg.v_offset,
        scale: cfg.scale,
    }
}

pub(crate) fn workgroups(spec: &KernelSpec, pass: Pass, cfg: &Attention, inputs: &[&Meta]) -> u64 {
    let p = params(pass, cfg, inputs);
    if spec.id == KernelId::AttentionSubgroup {
        // One workgroup per (batch, head, block of 64 queries).
        return u64::from(p.batch) * u64::from(p.heads) * u64::from(p.queries).div_ceil(u64::from(WORKGROUP));
    }
    let rows = u64::from(p.batch) * u64::from(p.heads) * u64::from(p.queries);
    let invocations = match pass {
        Pass::Flash | Pass::Softmax => rows,
        Pass::Scores => rows * u64::from(p.keys_a + p.keys_b),
        Pass::WeightedSum => rows * u64::from(cfg.head_dim),
    };
    invocations.div_ceil(u64::from(WORKGROUP))
}

pub(crate) fn cost(pass: Pass, cfg: &Attention, inputs: &[&Meta]) -> Cost {
    let p = params(pass, cfg, inputs);
    let rows = f64::from(p.batch) * f64::from(p.heads) * f64::from(p.queries);
    let keys = f64::from(p.keys_a + p.keys_b);
    let d = f64::from(cfg.head_dim);
    // Activations (q, K/V, scores, output) in their storage type; the mask is f32.
    let a = inputs[0].dtype.size() as f64;
    let q_bytes = a * rows * d;
    let kv_bytes = a * 2.0 * f64::from(p.batch) * f64::from(p.heads) * keys * d;
    let mask_bytes = if cfg.mask { 4.0 * f64::from(p.batch) * f64::from(p.queries) * keys } else { 0.0 };
    let score_bytes = a * rows * keys;
    match pass {
        Pass::Flash => Cost { flops: 4.0 * rows * keys * d, bytes: q_bytes + kv_bytes + mask_bytes + q_bytes },
        Pass::Scores => {
            Cost { flops: 2.0 * rows * keys * d, bytes: q_bytes + kv_bytes / 2.0 + mask_bytes + score_bytes }
        }
        Pass::Softmax => Cost { flops: 3.0 * rows * keys, bytes: 2.0 * score_bytes + mask_bytes },
        Pass::WeightedSum => Cost { flops: 2.0 * rows * keys * d, bytes: score_bytes + kv_bytes / 2.0 + q_bytes },
    }
}
