//! ToMe token merging on the GPU (`shaders/tome.wgsl`): bipartite soft matching, a stable rank
//! sort of the matches, size-weighted merging and the token → row mapping, one dispatch each.

use super::{Access, Caps, Cost, KernelId, KernelSpec, Meta, check_arity, check_u32_elements};
use crate::error::{Error, Result};
use crate::shader;

/// Name in errors and reports.
pub const NAME: &str = "tome";

/// A ToMe merge of `tokens` tokens removing `r`, optionally protecting a class token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tome {
    /// Tokens before merging (N).
    pub tokens: usize,
    /// Tokens merged away.
    pub r: usize,
    /// Token 0 is a class token: never merged, kept first.
    pub class_token: bool,
}

impl Tome {
    /// Checks `r` against what bipartite matching can remove: half of the unprotected tokens.
    pub fn new(tokens: usize, r: usize, class_token: bool) -> Result<Self> {
        let protected = usize::from(class_token);
        if tokens <= protected {
            return Err(Error::shape(NAME, "tokens", format!(">= {}", protected + 1), tokens));
        }
        let max = (tokens - protected) / 2;
        if r > max {
            return Err(Error::shape(NAME, "r (at most half the unprotected tokens)", format!("<= {max}"), r));
        }
        Ok(Self { tokens, r, class_token })
    }

    /// A tokens (even indices).
    pub fn a_tokens(&self) -> usize {
        self.tokens.div_ceil(2)
    }

    /// Tokens after merging.
    pub fn output_tokens(&self) -> usize {
        self.tokens - self.r
    }
}

/// Which pass of `tome.wgsl` a node runs (see the shader for what each computes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// x `[B, N, C]` → unit rows, A then B.
    Normalize,
    /// unit rows → `[B, na, 2]` (best similarity, B index).
    BestMatch,
    /// matches → `[B, na]` ranks.
    Rank,
    /// matches, ranks → `[B, na]` output row of each A token.
    Place,
    /// x, sizes `[B, N, 1]`, rows → merged `[B, N - r, C]`.
    MergeFeatures,
    /// sizes, rows → `[B, N - r, 1]`.
    MergeSizes,
    /// x, rows → `[B, N]` output row of every token.
    Source,
}

/// Mirrors `Params` in `shaders/tome.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Batch items.
    pub batch: u32,
    /// Tokens (N).
    pub tokens: u32,
    /// Feature width.
    pub channels: u32,
    /// A tokens merged away.
    pub r: u32,
    /// 1: A token 0 is protected.
    pub class_token: u32,
    /// A tokens: ceil(N / 2).
    pub na: u32,
    /// B tokens: floor(N / 2).
    pub nb: u32,
    /// Unmerged A tokens.
    pub nu: u32,
}

impl Params {
    pub(crate) fn new(cfg: &Tome, inputs: &[&Meta]) -> Self {
        let s = &inputs[0].shape;
        let na = cfg.a_tokens();
        Self {
            batch: s[0] as u32,
            tokens: cfg.tokens as u32,
            channels: s.get(2).copied().unwrap_or(1) as u32,
            r: cfg.r as u32,
            class_token: u32::from(cfg.class_token),
            na: na as u32,
            nb: (cfg.tokens / 2) as u32,
            nu: (na - cfg.r) as u32,
        }
    }
}

const WORKGROUP: u32 = 64;

const fn spec(id: KernelId, name: &'static str, entry: &'static str) -> KernelSpec {
    KernelSpec {
        id,
        name,
        file: "tome.wgsl",
        prelude: &[shader::TOME_LAYOUT],
        body: shader::TOME,
        entry,
        bindings: &[Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::Uniform],
        workgroup_size: [WORKGROUP, 1, 1],
        params_size: std::mem::size_of::<Params>() as u64,
        features: wgpu::Features::empty(),
    }
}

/// Unit-norm metric rows.
pub const NORMALIZE_SPEC: KernelSpec = spec(KernelId::TomeNormalize, "tome_normalize", "normalize");
/// Best B match of each A token.
pub const BEST_MATCH_SPEC: KernelSpec = spec(KernelId::TomeBestMatch, "tome_best_match", "best_match");
/// Stable rank of the matches.
pub const RANK_SPEC: KernelSpec = spec(KernelId::TomeRank, "tome_rank", "rank");
/// Output row of each A token.
pub const PLACE_SPEC: KernelSpec = spec(KernelId::TomePlace, "tome_place", "place");
/// The merge reads and writes features as activations (f32 or f16).
pub const MERGE_SPEC: KernelSpec = KernelSpec {
    file: "tome_merge.wgsl",
    body: shader::TOME_MERGE,
    ..spec(KernelId::TomeMerge, "tome_merge", "merge")
};
/// Token → output row.
pub const SOURCE_SPEC: KernelSpec = spec(KernelId::TomeSource, "tome_source", "source");
/// Best match sharing B rows across 8 lanes by subgroup broadcast: the fast path.
pub const BEST_MATCH_SUBGROUP_SPEC: KernelSpec = KernelSpec {
    file: "tome_subgroup.wgsl",
    body: shader::TOME_SUBGROUP,
    entry: "best_match_subgroup",
    features: wgpu::Features::SUBGROUP,
    ..spec(KernelId::TomeBestMatchSubgroup, "tome_best_match_subgroup", "")
};

/// The kernel for `step` on a device: subgroup broadcast when it has subgroups of 8+ lanes.
pub(crate) fn select(step: Step, caps: &Caps) -> &'static KernelSpec {
    if step == Step::BestMatch && caps.subgroups && caps.subgroup_min_size >= 8 {
        &BEST_MATCH_SUBGROUP_SPEC
    } else {
        spec_of(step)
    }
}

pub(crate) fn spec_of(step: Step) -> &'static KernelSpec {
    match step {
        Step::Normalize => &NORMALIZE_SPEC,
        Step::BestMatch => &BEST_MATCH_SPEC,
        Step::Rank => &RANK_SPEC,
        Step::Place => &PLACE_SPEC,
        Step::MergeFeatures | Step::MergeSizes => &MERGE_SPEC,
        Step::Source => &SOURCE_SPEC,
    }
}

pub(crate) fn overrides(step: Step) -> Vec<(&'static str, f64)> {
    match step {
        Step::MergeFeatures => vec![("MERGE", 0.0)],
        Step::MergeSizes => vec![("MERGE", 1.0)],
        _ => Vec::new(),
    }
}

/// Input index per read binding (in0, in1, in2).
pub(crate) fn read_slots(step: Step) -> Vec<Option<usize>> {
    match step {
        Step::Normalize | Step::BestMatch | Step::Rank => vec![Some(0), None, None],
        Step::Place => vec![Some(0), Some(1), None],
        Step::MergeFeatures => vec![Some(0), Some(1), Some(2)],
        Step::MergeSizes => vec![None, Some(0), Some(1)],
        Step::Source => vec![Some(1), None, None],
    }
}

fn expect(what: &str, got: &[usize], want: &[usize]) -> Result<()> {
    if got != want {
        return Err(Error::shape(NAME, format!("{what} shape"), format!("{want:?}"), format!("{got:?}")));
    }
    Ok(())
}

pub(crate) fn check(step: Step, cfg: &Tome, inputs: &[&Meta]) -> Result<Meta> {
    let arity = match step {
        Step::Normalize | Step::BestMatch | Step::Rank => 1,
        Step::Place | Step::MergeSizes | Step::Source => 2,
        Step::MergeFeatures => 3,
    };
    check_arity(NAME, inputs, arity)?;
    Tome::new(cfg.tokens, cfg.r, cfg.class_token)?;
    let first = &inputs[0].shape;
    check_u32_elements(NAME, "input", first)?;
    let batch = first[0];
    let (n, na, rows) = (cfg.tokens, cfg.a_tokens(), cfg.output_tokens());
    let tokens_of = |s: &[usize]| -> Result<()> {
        let [_, _, c] = s[..] else {
            return Err(Error::shape(NAME, "tokens rank ([batch, tokens, channels])", 3, s.len()));
        };
        expect("tokens", s, &[batch, n, c])
    };
    let out = match step {
        Step::Normalize | Step::BestMatch => {
            tokens_of(first)?;
            if step == Step::Normalize { first.clone() } else { vec![batch, na, 2] }
        }
        Step::Rank => {
            expect("matches", first, &[batch, na, 2])?;
            vec![batch, na]
        }
        Step::Place => {
            expect("matches", first, &[batch, na, 2])?;
            expect("ranks", &inputs[1].shape, &[batch, na])?;
            vec![batch, na]
        }
        Step::MergeFeatures => {
            tokens_of(first)?;
            expect("sizes", &inputs[1].shape, &[batch, n, 1])?;
            expect("rows", &inputs[2].shape, &[batch, na])?;
            vec![batch, rows, first[2]]
        }
        Step::MergeSizes => {
            expect("sizes", first, &[batch, n, 1])?;
            expect("rows", &inputs[1].shape, &[batch, na])?;
            vec![batch, rows, 1]
        }
        Step::Source => {
            tokens_of(first)?;
            expect("rows", &inputs[1].shape, &[batch, na])?;
            vec![batch, n]
        }
    };
    check_u32_elements(NAME, "output", &out)?;
    Ok(Meta::f32(&out))
}

pub(crate) fn workgroups(spec: &KernelSpec, step: Step, cfg: &Tome, inputs: &[&Meta]) -> u64 {
    let p = Params::new(cfg, inputs);
    let batch = u64::from(p.batch);
    if spec.id == KernelId::TomeBestMatchSubgroup {
        // 64 A tokens of one batch item per workgroup.
        return batch * u64::from(p.na).div_ceil(u64::from(WORKGROUP));
    }
    let per_invocation = match step {
        Step::Normalize | Step::Source => batch * u64::from(p.tokens),
        Step::BestMatch | Step::Rank | Step::Place => batch * u64::from(p.na),
        // One workgroup per output row.
        Step::MergeFeatures | Step::MergeSizes => return batch * u64::from(p.tokens - p.r),
    };
    per_invocation.div_ceil(u64::from(WORKGROUP))
}

pub(crate) fn cost(step: Step, cfg: &Tome, inputs: &[&Meta]) -> Cost {
    let p = Params::new(cfg, inputs);
    let (b, n, c) = (f64::from(p.batch), f64::from(p.tokens), f64::from(p.channels));
    let (na, nb, rows) = (f64::from(p.na), f64::from(p.nb), f64::from(p.tokens - p.r));
    match step {
        Step::Normalize => Cost { flops: 3.0 * b * n * c, bytes: 8.0 * b * n * c },
        Step::BestMatch => Cost { flops: 2.0 * b * na * nb * c, bytes: 4.0 * b * n * c },
        Step::Rank | Step::Place => Cost { flops: b * na * na, bytes: 8.0 * b * na },
        Step::MergeFeatures => Cost { flops: 2.0 * b * n * c, bytes: 4.0 * b * (n * c + rows * c) },
        Step::MergeSizes => Cost { flops: b * n, bytes: 4.0 * b * (n + rows) },
        Step::Source => Cost { flops: 0.0, bytes: 4.0 * b * (na + n) },
    }
}
