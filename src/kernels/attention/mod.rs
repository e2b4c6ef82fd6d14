//! Multi-head attention. `attention_flash` never stores the queries × keys scores: an online
//! softmax streams the keys (`shaders/attention_subgroup.wgsl` shares each key across a
//! subgroup; `shaders/attention.wgsl` has the portable kernel). `attention_naive` is the
//! three-pass version that materialises them (scores, softmax, weighted sum), kept as the
//! measured baseline. `attention_key_split` splits the keys across workgroups too
//! (`shaders/attention_chunks.wgsl`, `shaders/attention_combine.wgsl`), for GPUs given few
//! queries over many keys.

mod cases;
mod key_split;
mod naive;

use super::lowering::{Lowering, Slot};
use super::{Cost, Dispatch, Kernel, KernelFamily, KernelSpec, bytes, product, wgsl};
use crate::dtype::DType;
use crate::error::Result;
use crate::gpu::Caps;
use crate::ops::{Attention, Geometry, KeySplit, Mask, Meta, Naive, Operand, SplitPass};
use crate::pipeline::Access;
use crate::reference::{self, MaskInput};

const SOURCE: &str = include_str!("../../../shaders/attention.wgsl");
const SUBGROUP_SOURCE: &str = include_str!("../../../shaders/attention_subgroup.wgsl");
const CHUNKS_SOURCE: &str = include_str!("../../../shaders/attention_chunks.wgsl");
const COMBINE_SOURCE: &str = include_str!("../../../shaders/attention_combine.wgsl");

/// Mirrors `Params` in `shaders/common/attention_layout.wgsl`.
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
    /// Elements per query row.
    pub q_stride: u32,
    /// Column of head 0's query.
    pub q_offset: u32,
    /// Elements per row of the first source.
    pub kv_stride_a: u32,
    /// Elements per row of the second source.
    pub kv_stride_b: u32,
    /// Column of head 0's key in a K/V row.
    pub k_offset: u32,
    /// Column of head 0's value in a K/V row.
    pub v_offset: u32,
    /// Applied to q before the dot product.
    pub scale: f32,
    /// Key/value heads.
    pub kv_heads: u32,
    /// The q/k RMSNorm's eps.
    pub norm_eps: f32,
    /// Column of head 0's key in a row of the second source.
    pub k_offset_b: u32,
    /// Column of head 0's value in a row of the second source.
    pub v_offset_b: u32,
    /// `attention_rows`: the output projection's width.
    pub out_width: u32,
    /// `attention_rows`: the post-LayerNorm's eps.
    pub post_eps: f32,
    /// `attention_rows`: the head dimension, as a run-time value.
    pub head_dim: u32,
    /// `attention_partials`: key chunks.
    pub chunks: u32,
    /// `attention_partials`: keys per chunk.
    pub chunk_keys: u32,
    /// Padding to 16 bytes.
    pub _pad: [u32; 3],
}

impl From<&Geometry> for Params {
    fn from(g: &Geometry) -> Self {
        Self {
            batch: g.batch as u32,
            queries: g.queries as u32,
            keys_a: g.keys_a as u32,
            keys_b: g.keys_b as u32,
            heads: g.heads as u32,
            q_stride: g.q_stride as u32,
            q_offset: g.q_offset as u32,
            kv_stride_a: g.kv_stride_a as u32,
            kv_stride_b: g.kv_stride_b as u32,
            k_offset: g.k_offset as u32,
            v_offset: g.v_offset as u32,
            scale: g.scale,
            kv_heads: g.kv_heads as u32,
            norm_eps: g.norm_eps,
            k_offset_b: g.k_offset_b as u32,
            v_offset_b: g.v_offset_b as u32,
            out_width: 0,
            post_eps: 0.0,
            head_dim: g.head_dim as u32,
            chunks: 1,
            chunk_keys: g.keys() as u32,
            _pad: [0; 3],
        }
    }
}

const WORKGROUP: u32 = 64;
/// Queries per (batch, head) up to which a CPU rasteriser runs the portable flash kernel.
pub const FEW_QUERIES: usize = 8;
/// q (or scores), kv_a, kv_b, mask, out, params, q/k norm weights.
const BINDINGS: &[Access] =
    &[Access::Read, Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::Uniform, Access::Read];
const PARAMS: usize = std::mem::size_of::<Params>();

/// Mirrors `Params` in `shaders/attention_combine.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct CombineParams {
    /// Batch items.
    pub batch: u32,
    /// Queries per item.
    pub queries: u32,
    /// Attention heads.
    pub heads: u32,
    /// Dimension per head.
    pub head_dim: u32,
    /// Key chunks per query.
    pub chunks: u32,
    /// Padding to 16 bytes.
    pub _pad: [u32; 3],
}

/// Partials, output, params.
const COMBINE_BINDINGS: &[Access] = &[Access::Read, Access::ReadWrite, Access::Uniform];

const fn spec(name: &'static str, variant: &'static str, entry: &'static str) -> KernelSpec {
    KernelSpec {
        variant,
        prelude: &[wgsl::ATTENTION_STREAM],
        ..KernelSpec::new(name, "attention.wgsl", SOURCE, entry, BINDINGS, WORKGROUP, PARAMS)
    }
}

/// Flash attention sharing each key across 8 lanes by subgroup broadcast.
pub static FLASH_SUBGROUP: KernelSpec = KernelSpec {
    file: "attention_subgroup.wgsl",
    body: SUBGROUP_SOURCE,
    prelude: &[wgsl::ATTENTION_LAYOUT, wgsl::ZERO_TIMES],
    features: wgpu::Features::SUBGROUP,
    min_subgroup: 8,
    ..spec("attention_flash_subgroup", "subgroup", "flash_subgroup")
};
/// Flash attention, any device.
pub static FLASH_PORTABLE: KernelSpec = spec("attention_flash", "portable", "flash");
/// Flash attention for GPUs: a workgroup per (batch, head, 8 queries), keys split over 8
/// slices merged through workgroup memory.
pub static FLASH_SPLIT: KernelSpec = spec("attention_flash_split", "split", "flash_split");
/// Naive pass 1: the scores.
pub static SCORES: KernelSpec = spec("attention_scores", "scores", "scores");
/// Naive pass 2: row softmax.
pub static SOFTMAX: KernelSpec = spec("attention_softmax", "softmax", "softmax_rows");
/// Naive pass 3: weights · V.
pub static WEIGHTED_SUM: KernelSpec = spec("attention_weighted_sum", "weighted_sum", "weighted_sum");

/// Key-split pass 1: each key chunk's online-softmax state (f32 records).
pub static PARTIALS: KernelSpec = KernelSpec {
    file: "attention_chunks.wgsl",
    body: CHUNKS_SOURCE,
    ..spec("attention_partials", "partials", "attention_partials")
};
/// Key-split pass 2: the log-sum-exp merge of the chunks.
pub static COMBINE: KernelSpec = KernelSpec {
    prelude: &[wgsl::ZERO_TIMES],
    ..KernelSpec::new(
        "attention_combine",
        "attention_combine.wgsl",
        COMBINE_SOURCE,
        "attention_combine",
        COMBINE_BINDINGS,
        WORKGROUP,
        std::mem::size_of::<CombineParams>(),
    )
};

/// The flash attention family.
pub static FAMILY: KernelFamily = KernelFamily {
    name: crate::ops::attention::NAME,
    specs: &[&FLASH_SUBGROUP, &FLASH_SPLIT, &FLASH_PORTABLE],
    fuzz: Some(cases::fuzz_flash),
    bench: cases::bench_flash,
    precision: cases::precision_flash,
    tune: cases::tune_flash,
    ..KernelFamily::BASE
};

/// The naive three-pass family.
pub static NAIVE_FAMILY: KernelFamily = KernelFamily {
    name: Naive::NAME,
    specs: &[&SCORES, &SOFTMAX, &WEIGHTED_SUM],
    fuzz: Some(cases::fuzz_naive),
    bench: cases::bench_naive,
    precision: cases::precision_naive,
    forceable: false,
    ..KernelFamily::BASE
};

/// The key-split attention's two passes.
pub static KEY_SPLIT_FAMILY: KernelFamily = KernelFamily {
    name: KeySplit::NAME,
    specs: &[&PARTIALS, &COMBINE],
    fuzz: Some(cases::fuzz_key_split),
    bench: cases::bench_key_split,
    precision: cases::precision_key_split,
    forceable: false,
    ..KernelFamily::BASE
};

pub(crate) fn overrides(cfg: &Attention) -> Vec<(&'static str, f64)> {
    let mask = match cfg.mask {
        Mask::None => 0.0,
        Mask::Keep(_) => 1.0,
        Mask::Additive => 2.0,
        Mask::Keys => 3.0,
        Mask::Segments { .. } => 4.0,
        Mask::PadPairs => 5.0,
    };
    vec![
        ("HEAD_DIM", f64::from(cfg.head_dim)),
        ("MASK", mask),
        ("MASKED_ROWS", if cfg.zeroes_masked_rows() { 1.0 } else { 0.0 }),
        ("QK_NORM", if cfg.qk_norm.is_some() { 1.0 } else { 0.0 }),
    ]
}

/// Queries and key/value sources are activations; a keep mask is u8, segment bounds u32, an
/// additive mask and the norm weights f32.
pub(crate) fn operand(cfg: &Attention, mask_input: Option<usize>, i: usize) -> Operand {
    if Some(i) == mask_input {
        match cfg.mask {
            Mask::Additive => Operand::Param,
            Mask::Segments { .. } => Operand::Index,
            _ => Operand::Mask,
        }
    } else if Some(i) == cfg.norm_input() {
        Operand::Param
    } else {
        Operand::Activation
    }
}

/// The mask input as the reference reads it.
pub(crate) fn mask_of<'a>(cfg: &Attention, mask_input: Option<usize>, inputs: &[&'a [f64]]) -> Option<MaskInput<'a>> {
    let m = inputs[mask_input?];
    Some(match cfg.mask {
        Mask::Additive => MaskInput::Additive(m),
        Mask::Keys => MaskInput::Keys(m),
        Mask::PadPairs => MaskInput::PadPairs(m),
        Mask::Segments { .. } => MaskInput::Segments(m),
        _ => MaskInput::Keep(m),
    })
}

/// Bytes of q, K/V, mask and output for `rows` query rows over `keys` keys.
pub(crate) fn io_bytes(g: &Geometry, a: DType, mask: Mask) -> f64 {
    let kv = bytes(a, 2 * g.batch * g.kv_heads * g.keys() * g.head_dim);
    2.0 * bytes(a, g.rows() * g.head_dim) + kv + mask_bytes(g, mask)
}

fn mask_bytes(g: &Geometry, mask: Mask) -> f64 {
    let per_entry = match mask {
        Mask::None => 0.0,
        Mask::Keep(_) => 1.0,
        Mask::Additive => 4.0,
        // One byte per key, not per (query, key).
        Mask::Keys | Mask::PadPairs => return product(&[g.batch, g.keys()]),
        // Two u32 bounds per query.
        Mask::Segments { .. } => return 8.0 * product(&[g.batch, g.queries]),
    };
    per_entry * product(&[g.batch, g.queries, g.keys()])
}

/// Keys each query attends, for the cost model: its segment's mean length under
/// [`Mask::Segments`], else every key.
pub(crate) fn attended_keys(cfg: &Attention, g: &Geometry) -> usize {
    match cfg.mask {
        Mask::Segments { mean_keys } => (mean_keys as usize).min(g.keys()),
        _ => g.keys(),
    }
}

/// Query rows per invocation of the subgroup kernel (`QUERY_BLOCKS`) for `queries` per head:
/// the count whose measured llvmpipe rate, times the share of its 64·R-query workgroups that
/// is real queries, is highest. More rows reuse each broadcast key more (24, 37 and 47 GFLOP/s
/// for 1, 2 and 4 over 1024 tokens, 16 heads of 72), but a short sequence leaves the extra
/// lanes computing along for nothing.
pub fn subgroup_query_rows(queries: usize) -> u32 {
    const RATES: [(u32, usize); 3] = [(4, 47), (2, 37), (1, 24)];
    let useful = |rows: u32| {
        let block = WORKGROUP as usize * rows as usize;
        let rate = RATES.iter().find(|r| r.0 == rows).map_or(0, |r| r.1);
        rate * queries.max(1) * 1024 / queries.max(1).div_ceil(block) / block
    };
    RATES.into_iter().map(|(rows, _)| rows).max_by_key(|&r| useful(r)).unwrap_or(1)
}

impl Kernel for Attention {
    fn name(&self) -> &'static str {
        crate::ops::attention::NAME
    }

    /// Where the device splits the keys across workgroups (`key_split::key_chunks`): the
    /// partials pass, then the combine pass.
    fn lower(&self, caps: &Caps, inputs: &[&Meta], _output: &Meta) -> Result<Option<Lowering>> {
        let chunks = key_split::key_chunks(caps, &self.geometry(inputs), self.mask);
        if chunks < 2 {
            return Ok(None);
        }
        let partials = self.key_split(chunks, SplitPass::Partials);
        let mut l = Lowering::default();
        let records = l.temp("partials", partials.check(inputs)?);
        l.node(partials, (0..inputs.len()).map(Slot::Input).collect(), records);
        l.node(self.key_split(chunks, SplitPass::Combine), vec![records, Slot::Input(0)], Slot::Output);
        Ok(Some(l))
    }

    fn operand(&self, i: usize) -> Operand {
        operand(self, self.mask_input(), i)
    }

    fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        Attention::check(self, inputs)
    }

    fn variants(&self, _inputs: &[&Meta]) -> Vec<&'static KernelSpec> {
        vec![&FLASH_SUBGROUP, &FLASH_SPLIT, &FLASH_PORTABLE]
    }

    /// The adapter's measured tune when there is one (it times 32 queries: not the few-query
    /// class); else on a GPU the key-split workgroups, which fill it; on a CPU rasteriser the
    /// register-blocked kernel, sharing keys by subgroup broadcast where it can, unless there are
    /// at most [`FEW_QUERIES`]: the subgroup kernel's workgroup is 64 queries of one head, so
    /// 7/8 of its lanes would compute along for nothing (Mllama, 8 queries over 1601 keys: 268
    /// ms against the portable kernel's 156 on llvmpipe; one query, 145 against 48).
    fn choose(&self, caps: &Caps, inputs: &[&Meta]) -> &'static KernelSpec {
        let few = self.geometry(inputs).queries <= FEW_QUERIES;
        let tuned = if few { None } else { caps.tuned(crate::ops::attention::NAME, self.tune_class(inputs)) };
        if let Some(spec) = [&FLASH_SUBGROUP, &FLASH_SPLIT, &FLASH_PORTABLE]
            .into_iter()
            .find(|s| Some(s.variant) == tuned && s.runs_on(caps))
        {
            return spec;
        }
        if !caps.is_cpu() {
            return &FLASH_SPLIT;
        }
        if FLASH_SUBGROUP.runs_on(caps) && !few { &FLASH_SUBGROUP } else { &FLASH_PORTABLE }
    }

    fn overrides(&self, spec: &KernelSpec, inputs: &[&Meta]) -> Vec<(&'static str, f64)> {
        let mut o = overrides(self);
        if spec.variant == FLASH_SUBGROUP.variant {
            o.push(("QUERY_BLOCKS", f64::from(subgroup_query_rows(self.geometry(inputs).queries))));
        }
        o
    }

    fn read_slots(&self, _spec: &KernelSpec) -> Vec<Option<usize>> {
        vec![Some(0), Some(1), self.two_sources.then_some(2), self.mask_input(), self.norm_input()]
    }

    fn dispatch(&self, spec: &KernelSpec, inputs: &[&Meta]) -> Dispatch {
        let g = self.geometry(inputs);
        let workgroups = match spec.variant {
            // One workgroup per (batch, head, block of 64 queries).
            "subgroup" => {
                (g.batch * g.heads * g.queries.div_ceil(WORKGROUP as usize * subgroup_query_rows(g.queries) as usize))
                    as u64
            }
            // One workgroup per (batch, head, block of 8 queries).
            "split" => (g.batch * g.heads * g.queries.div_ceil(8)) as u64,
            _ => (g.rows() as u64).div_ceil(u64::from(WORKGROUP)),
        };
        Dispatch::new(&Params::from(&g), workgroups)
    }

    fn cost(&self, inputs: &[&Meta]) -> Cost {
        let g = self.geometry(inputs);
        let flops = 4.0 * product(&[g.rows(), attended_keys(self, &g), g.head_dim]);
        Cost { flops, bytes: io_bytes(&g, inputs[0].dtype, self.mask) }
    }

    fn reference(&self, inputs: &[&[f64]], metas: &[&Meta]) -> Vec<f64> {
        let g = self.geometry(metas);
        let mask = mask_of(self, self.mask_input(), inputs);
        let kv = [inputs[1], if self.two_sources { inputs[2] } else { &[] }];
        let norms = self.norm_input().map(|n| inputs[n]);
        reference::attention(&g, self.zeroes_masked_rows(), inputs[0], kv, mask, norms)
    }
}
