//! ToMe token merging on the GPU (`shaders/tome*.wgsl`): normalise, best match, score, rank
//! sort, place, size-weighted merge and the token → row map, one dispatch each, no host round
//! trip. Indices are u32.

use super::cases::{BenchCase, Case, CaseRng, CaseTarget, Tolerance, huge_for, max_abs, pick_storage};
use super::{Cost, Dispatch, Kernel, KernelFamily, KernelSpec, bytes, product, wgsl};
use crate::dtype::DType;
use crate::error::Result;
use crate::ops::tome::NAME;
use crate::ops::{Meta, Operand, Step, Tome, TomeStep};
use crate::pipeline::Access;
use crate::reference;

/// Mirrors `Params` in `shaders/common/tome_layout.wgsl`.
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
    fn new(cfg: &Tome, inputs: &[&Meta]) -> Self {
        let s = &inputs[0].shape;
        let na = cfg.a_tokens();
        Self {
            batch: s[0] as u32,
            tokens: cfg.tokens as u32,
            channels: s.get(2).copied().unwrap_or(1) as u32,
            r: cfg.r as u32,
            class_token: u32::from(cfg.class_token),
            na: na as u32,
            nb: cfg.b_tokens() as u32,
            nu: (na - cfg.r) as u32,
        }
    }
}

const WORKGROUP: u32 = 64;
const BINDINGS: &[Access] = &[Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::Uniform];
const PARAMS: usize = std::mem::size_of::<Params>();

const fn spec(name: &'static str, file: &'static str, body: &'static str, entry: &'static str) -> KernelSpec {
    KernelSpec {
        variant: "portable",
        prelude: &[wgsl::TOME_LAYOUT],
        ..KernelSpec::new(name, file, body, entry, BINDINGS, WORKGROUP, PARAMS)
    }
}

const MAIN: &str = include_str!("../../shaders/tome.wgsl");
const INDEX: &str = include_str!("../../shaders/tome_index.wgsl");
const MERGE: &str = include_str!("../../shaders/tome_merge.wgsl");

/// Unit-norm metric rows.
pub static NORMALIZE: KernelSpec = spec("tome_normalize", "tome.wgsl", MAIN, "normalize");
/// Similarity of each A token to its best match.
pub static SCORE: KernelSpec = spec("tome_score", "tome.wgsl", MAIN, "score");
/// Best B match of each A token.
pub static BEST_MATCH: KernelSpec = spec("tome_best_match", "tome_index.wgsl", INDEX, "best_match");
/// The same, B rows shared across 8 lanes by subgroup broadcast.
pub static BEST_MATCH_SUBGROUP: KernelSpec = KernelSpec {
    variant: "subgroup",
    features: wgpu::Features::SUBGROUP,
    min_subgroup: 8,
    ..spec(
        "tome_best_match_subgroup",
        "tome_subgroup.wgsl",
        include_str!("../../shaders/tome_subgroup.wgsl"),
        "best_match_subgroup",
    )
};
/// Stable rank of the scores.
pub static RANK: KernelSpec = spec("tome_rank", "tome_index.wgsl", INDEX, "rank");
/// Output row of each A token.
pub static PLACE: KernelSpec = spec("tome_place", "tome_index.wgsl", INDEX, "place");
/// Size-weighted merge (features or sizes).
pub static MERGE_SPEC: KernelSpec = spec("tome_merge", "tome_merge.wgsl", MERGE, "merge");
/// Token → output row.
pub static SOURCE: KernelSpec = spec("tome_source", "tome_index.wgsl", INDEX, "source");

/// The ToMe family.
pub static FAMILY: KernelFamily = KernelFamily {
    name: NAME,
    specs: &[&NORMALIZE, &BEST_MATCH, &BEST_MATCH_SUBGROUP, &SCORE, &RANK, &PLACE, &MERGE_SPEC, &SOURCE],
    fuzz: Some(fuzz),
    bench,
    precision,
    ..KernelFamily::BASE
};

impl Kernel for TomeStep {
    fn name(&self) -> &'static str {
        NAME
    }

    fn operand(&self, i: usize) -> Operand {
        TomeStep::operand(self, i)
    }

    fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        let shape = TomeStep::check(self, inputs)?;
        let storage = self.storage(inputs);
        Ok(Meta { shape, dtype: self.output_dtype(storage) })
    }

    fn variants(&self, _inputs: &[&Meta]) -> Vec<&'static KernelSpec> {
        match self.step {
            Step::Normalize => vec![&NORMALIZE],
            Step::BestMatch => vec![&BEST_MATCH_SUBGROUP, &BEST_MATCH],
            Step::Score => vec![&SCORE],
            Step::Rank => vec![&RANK],
            Step::Place => vec![&PLACE],
            Step::MergeFeatures | Step::MergeSizes => vec![&MERGE_SPEC],
            Step::Source => vec![&SOURCE],
        }
    }

    fn overrides(&self, _spec: &KernelSpec, _inputs: &[&Meta]) -> Vec<(&'static str, f64)> {
        match self.step {
            Step::MergeFeatures => vec![("MERGE", 0.0)],
            Step::MergeSizes => vec![("MERGE", 1.0)],
            _ => Vec::new(),
        }
    }

    /// Inputs bound to bindings 0 (features, or ranks), 1 (f32 values), 2 (u32 indices).
    fn read_slots(&self, _spec: &KernelSpec) -> Vec<Option<usize>> {
        match self.step {
            Step::Normalize => vec![Some(0), None, None],
            Step::BestMatch | Step::Rank => vec![None, Some(0), None],
            Step::Score => vec![None, Some(0), Some(1)],
            Step::Place => vec![Some(1), None, Some(0)],
            Step::MergeFeatures => vec![Some(0), Some(1), Some(2)],
            Step::MergeSizes => vec![None, Some(0), Some(1)],
            Step::Source => vec![None, None, Some(1)],
        }
    }

    fn dispatch(&self, spec: &KernelSpec, inputs: &[&Meta]) -> Dispatch {
        let p = Params::new(&self.tome, inputs);
        let (batch, workgroup) = (u64::from(p.batch), u64::from(WORKGROUP));
        let workgroups = match self.step {
            // 64 A tokens of one batch item per workgroup.
            Step::BestMatch if spec.variant == "subgroup" => batch * u64::from(p.na).div_ceil(workgroup),
            Step::Normalize | Step::Source => (batch * u64::from(p.tokens)).div_ceil(workgroup),
            Step::BestMatch | Step::Score | Step::Rank | Step::Place => (batch * u64::from(p.na)).div_ceil(workgroup),
            // One workgroup per output row.
            Step::MergeFeatures | Step::MergeSizes => batch * u64::from(p.tokens - p.r),
        };
        Dispatch::new(&p, workgroups)
    }

    fn cost(&self, inputs: &[&Meta]) -> Cost {
        let p = Params::new(&self.tome, inputs);
        let (b, n, c) = (p.batch as usize, p.tokens as usize, p.channels as usize);
        let (na, nb, rows) = (p.na as usize, p.nb as usize, (p.tokens - p.r) as usize);
        let f = |n: usize| bytes(DType::F32, n);
        let a = |n: usize| bytes(inputs[0].dtype, n);
        match self.step {
            Step::Normalize => Cost { flops: 3.0 * product(&[b, n, c]), bytes: a(b * n * c) + f(b * n * c) },
            Step::BestMatch => Cost { flops: 2.0 * product(&[b, na, nb, c]), bytes: f(b * n * c) },
            Step::Score => Cost { flops: 2.0 * product(&[b, na, c]), bytes: f(2 * b * na * c) },
            Step::Rank | Step::Place => Cost { flops: product(&[b, na, na]), bytes: f(2 * b * na) },
            Step::MergeFeatures => Cost { flops: 2.0 * product(&[b, n, c]), bytes: a(b * (n + rows) * c) },
            Step::MergeSizes => Cost { flops: product(&[b, n]), bytes: f(b * (n + rows)) },
            Step::Source => Cost { flops: 0.0, bytes: f(b * (na + n)) },
        }
    }

    fn reference(&self, inputs: &[&[f64]], metas: &[&Meta]) -> Vec<f64> {
        let s = &metas[0].shape;
        reference::tome_step(self.step, &self.tome, inputs, s[0], s.get(2).copied().unwrap_or(1))
    }
}

/// Every pass of a merge of `x` `[batch, n, c]` with `sizes` `[batch, n, 1]`: (tokens, sizes,
/// source) outputs.
fn merge(c: &mut Case, tome: Tome, x: usize, sizes: usize) -> Result<[usize; 3]> {
    let unit = c.node(tome.step(Step::Normalize), &[x])?;
    let best = c.node(tome.step(Step::BestMatch), &[unit])?;
    let scores = c.node(tome.step(Step::Score), &[unit, best])?;
    let ranks = c.node(tome.step(Step::Rank), &[scores])?;
    let rows = c.node(tome.step(Step::Place), &[best, ranks])?;
    Ok([
        c.node(tome.step(Step::MergeFeatures), &[x, sizes, rows])?,
        c.node(tome.step(Step::MergeSizes), &[sizes, rows])?,
        c.node(tome.step(Step::Source), &[x, rows])?,
    ])
}

/// Matching needs well-separated similarities (upstream leaves ties unspecified), so the
/// tokens are planted; the magnitude varies, NaN/Inf are not injected (their ordering is
/// unspecified upstream too).
fn fuzz(rng: &mut CaseRng, target: &CaseTarget) -> Result<Case> {
    let storage = pick_storage(rng, target);
    let (batch, n) = (rng.range(1, 3), rng.edge(160));
    let c_min = n.div_ceil(2).max(40);
    let channels = rng.range(c_min, c_min + 40);
    let class_token = n > 1 && rng.bool(0.5);
    let r = rng.range(0, (n - usize::from(class_token)) / 2);
    let scale = rng.pick(&[1.0f32, huge_for(storage, 1e10), 1e-10]);
    let x: Vec<f32> =
        reference::separated_tokens(batch, n, channels, rng.next_u64()).iter().map(|v| v * scale).collect();
    let sizes: Vec<f32> = (0..batch * n).map(|_| rng.range(1, 4) as f32).collect();
    let tol = 2e-6 * max_abs(&x);
    let mut c = Case::builder(NAME);
    let xi = c.input("x", &[batch, n, channels], storage, x);
    let si = c.input("sizes", &[batch, n, 1], DType::F32, sizes);
    let outputs = merge(&mut c, Tome::new(n, r, class_token)?, xi, si)?;
    let description = format!("b{batch} n{n} c{channels} r{r} cls={class_token} scale {scale:e} {storage}");
    Ok(c.finish(&outputs, description, Tolerance::new(0.0, 1e-6).plus(tol)))
}

fn case(batch: usize, n: usize, channels: usize, tome: Tome, storage: DType, seed: u64) -> Result<Case> {
    let mut c = Case::builder(NAME);
    let xi = c.input("x", &[batch, n, channels], storage, reference::separated_tokens(batch, n, channels, seed));
    let si = c.constant("sizes", &[batch, n, 1], DType::F32, vec![1.0f32; batch * n]);
    let outputs = merge(&mut c, tome, xi, si)?;
    Ok(c.finish(&outputs, format!("b{batch} n{n} c{channels} {tome:?} {storage}"), Tolerance::new(0.0, 1e-5)))
}

fn bench() -> Vec<BenchCase> {
    vec![BenchCase::new("577x1024 r=144 cls", || case(1, 577, 1024, Tome::new(577, 144, true)?, DType::F32, 1))]
}

fn precision() -> Result<Vec<Case>> {
    Ok(vec![case(2, 23, 40, Tome::new(23, 7, true)?, DType::F16, 11)?])
}
