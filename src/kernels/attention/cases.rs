//! The attention kernels' fuzz, bench and precision cases: flash alone, naive as its three
//! passes, the key split as its two, over the same random layouts.

use crate::dtype::DType;
use crate::error::Result;
use crate::kernels::cases::{
    BenchCase, Case, CaseRng, CaseTarget, SUBNORMAL_FLOOR, Tolerance, huge_for, max_abs, pick_storage,
};
use crate::ops::attention::NAME;
use crate::ops::{Attention, KeySplit, MaskedRows, Naive, Pass, SplitPass};

/// How a case computes its attention.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Form {
    /// One flash node.
    Flash,
    /// The naive scores → softmax → weighted-sum passes.
    Naive,
    /// The key split's partials → combine passes over this many chunks.
    KeySplit(u32),
}

impl Form {
    fn name(self) -> &'static str {
        match self {
            Form::Flash => NAME,
            Form::Naive => Naive::NAME,
            Form::KeySplit(_) => KeySplit::NAME,
        }
    }
}

/// Adds the attention's node(s) in `form` on q, the key / value sources, the mask and the q/k
/// norm weights.
fn attend(c: &mut Case, cfg: Attention, form: Form, q: usize, kv: &[usize], extra: Extra) -> Result<usize> {
    let Extra { mask, norms } = extra;
    let inputs = [&[q], kv, &Vec::from_iter(mask.into_iter().chain(norms))].concat();
    match form {
        Form::Flash => c.node(cfg, &inputs),
        Form::Naive => {
            let scores = c.node(cfg.naive(Pass::Scores), &inputs)?;
            let weights = c.node(cfg.naive(Pass::Softmax), &[&[scores], &Vec::from_iter(mask)[..]].concat())?;
            c.node(cfg.naive(Pass::WeightedSum), &[&[weights], kv].concat())
        }
        Form::KeySplit(chunks) => {
            let partials = c.node(cfg.key_split(chunks, SplitPass::Partials), &inputs)?;
            c.node(cfg.key_split(chunks, SplitPass::Combine), &[partials, q])
        }
    }
}

/// The optional inputs after the key/value sources.
#[derive(Default)]
struct Extra {
    mask: Option<usize>,
    norms: Option<usize>,
}

pub(super) fn fuzz_flash(rng: &mut CaseRng, target: &CaseTarget) -> Result<Case> {
    fuzz(rng, target, Form::Flash)
}

pub(super) fn fuzz_naive(rng: &mut CaseRng, target: &CaseTarget) -> Result<Case> {
    fuzz(rng, target, Form::Naive)
}

/// Chunks from 1 (no split) to one key each, small counts (ragged last chunks) most often.
pub(super) fn fuzz_key_split(rng: &mut CaseRng, target: &CaseTarget) -> Result<Case> {
    fuzz(rng, target, Form::KeySplit(0))
}

/// Random batch, heads, grouped key/value heads, head dims (a fixed set: each is a pipeline of
/// its own), query and key counts, one or two sources, keep masks with fully masked rows, key
/// padding masks, pad-pair masks, segment bounds, or additive masks with `finfo.min` entries,
/// per-head q/k norms, logits up to ±80.
fn fuzz(rng: &mut CaseRng, target: &CaseTarget, form: Form) -> Result<Case> {
    let (kind, inject, storage) = (rng.distribution(), rng.bool(0.25), pick_storage(rng, target));
    let (batch, heads) = (rng.range(1, 2), rng.range(1, 4) as u32);
    let kv_heads = rng.pick(&(1..=heads).filter(|k| heads.is_multiple_of(*k)).collect::<Vec<_>>());
    let d = rng.pick(&[1u32, 5, 16, 17, 24, 32, 33, 48, 64, 80, 96, 127, 128]);
    // A pad-pair mask is self-attention: one source, a key per query.
    let pad_pairs = rng.bool(0.15);
    let (nq, ka) = (rng.edge(70), rng.edge(70));
    let ka = if pad_pairs { nq } else { ka };
    let kb = if rng.bool(0.5) && !pad_pairs { rng.edge(40) } else { 0 };
    let qk_norm = rng.bool(0.3);
    let (w, kv_w) = ((heads * d) as usize, (kv_heads * d) as usize);
    // Logits up to ±max_logit: q and k ~ N(0, s²) give logits of std s².
    let max_logit = rng.range_f32(1.0, 80.0);
    let s = (max_logit / 4.0).sqrt();
    let q = rng.normals(batch * nq * w, s);
    let huge = huge_for(storage, 1e30);
    let mut kv_a = rng.values(batch * ka * 2 * kv_w, kind, huge, inject);
    let mut kv_b = rng.values(batch * kb * 2 * kv_w, kind, huge, inject);
    // Keys keep the logit scale (±Inf stays: it makes ±Inf logits, but not with q/k norms,
    // where it makes a NaN logit whose max() WGSL leaves unspecified); values carry the
    // distribution and NaN, but not ±Inf: a weight that underflows f32 but not f64 would make
    // 0 · Inf = NaN against the reference's Inf.
    for (i, v) in kv_a.iter_mut().chain(kv_b.iter_mut()).enumerate() {
        if i % (2 * kv_w) < kv_w && (v.is_finite() || qk_norm) {
            *v = v.signum() * s * (1.0 + (i % 7) as f32 / 7.0);
        } else if i % (2 * kv_w) >= kv_w && v.is_infinite() {
            *v = f32::NAN;
        }
    }
    let v_max = max_abs(&kv_a).max(max_abs(&kv_b));
    let mut cfg = Attention::new(heads, d).grouped(kv_heads).offsets(0, 0, kv_w as u32);
    let mut c = Case::builder(form.name());
    let qi = c.input("q", &[batch, nq, w], storage, q);
    let mut kv = vec![c.input("kv_a", &[batch, ka, 2 * kv_w], storage, kv_a)];
    if kb > 0 {
        cfg = cfg.two_sources();
        // Half the time kv_b's rows start with `pre` NaN columns (the Perceiver's [q | k | v]
        // latents beside [k | v] media): reading them would show.
        let pre = if rng.bool(0.5) { rng.range(1, 9) } else { 0 };
        if pre > 0 {
            cfg = cfg.second_source_offsets(pre as u32, (pre + kv_w) as u32);
            kv_b = kv_b
                .chunks(2 * kv_w)
                .flat_map(|row| std::iter::repeat_n(f32::NAN, pre).chain(row.iter().copied()))
                .collect();
        }
        kv.push(c.input("kv_b", &[batch, kb, pre + 2 * kv_w], storage, kv_b));
    }
    let keys = ka + kb;
    let mut extra = Extra::default();
    let mask_kind = if pad_pairs { "pad_pairs" } else { rng.pick(&["none", "keep", "additive", "keys", "segments"]) };
    let mut mask_range = 0.0;
    if mask_kind == "keep" {
        cfg = cfg.masked(rng.pick(&[MaskedRows::Zero, MaskedRows::Uniform]));
        // Every third row fully masked.
        let keep: Vec<u8> = (0..batch * nq * keys).map(|i| u8::from(!((i / keys) % 3 == 2 || rng.bool(0.3)))).collect();
        extra.mask = Some(c.input("mask", &[batch, nq, keys], DType::U8, keep));
    } else if mask_kind == "keys" {
        // Padded patches: the last keys of every item, and some inside; key 0 always real.
        cfg = cfg.key_mask();
        let real = rng.range(1, keys);
        let keep: Vec<u8> =
            (0..batch * keys).map(|i| u8::from(i % keys == 0 || (i % keys < real && !rng.bool(0.2)))).collect();
        extra.mask = Some(c.input("mask", &[batch, keys], DType::U8, keep));
    } else if mask_kind == "pad_pairs" {
        // Mllama's padded tiles: a run of padding after every few real tokens, and rows of
        // padding; token 0 real.
        cfg = cfg.pad_pairs();
        let run = rng.range(2, 9);
        let real: Vec<u8> = (0..batch * keys)
            .map(|i| u8::from(i % keys == 0 || ((i % keys) % run < run - 1 && !rng.bool(0.2))))
            .collect();
        extra.mask = Some(c.input("mask", &[batch, keys], DType::U8, real));
    } else if mask_kind == "segments" {
        // Random segments of the keys; query i takes the segment holding key i·keys/nq, so the
        // bounds never decrease and segments may hold several queries or none.
        let mut cuts: Vec<usize> = (1..keys).filter(|_| rng.bool(0.1)).collect();
        cuts.insert(0, 0);
        cuts.push(keys);
        let lengths: Vec<usize> = cuts.windows(2).map(|w| w[1] - w[0]).collect();
        cfg = cfg.segments(&lengths);
        let bounds: Vec<u32> = (0..batch * nq)
            .flat_map(|i| {
                let key = (i % nq) * keys / nq;
                let seg = cuts.partition_point(|&c| c <= key) - 1;
                [cuts[seg] as u32, cuts[seg + 1] as u32]
            })
            .collect();
        extra.mask = Some(c.input("segments", &[batch, nq, 2], DType::U32, bounds));
    } else if mask_kind == "additive" {
        cfg = cfg.additive_mask();
        // Mllama's: 0 or finfo.min, every third row all finfo.min; plus some ±5 biases.
        mask_range = 5.0;
        let add: Vec<f32> = (0..batch * nq * keys)
            .map(|i| {
                if (i / keys) % 3 == 2 || rng.bool(0.3) {
                    f32::MIN
                } else if rng.bool(0.3) {
                    rng.range_f32(-5.0, 5.0)
                } else {
                    0.0
                }
            })
            .collect();
        extra.mask = Some(c.input("mask", &[batch, nq, keys], DType::F32, add));
    }
    let mut max_logit = f64::from(max_logit);
    if qk_norm {
        cfg = cfg.qk_norm(rng.pick(&[1e-5, 1e-6]));
        let weights: Vec<f32> = rng.normals(2 * d as usize, 0.3).iter().map(|v| 1.0 + v).collect();
        let (wq, wk) = weights.split_at(d as usize);
        // Normalised heads have norm √d: a logit is at most √d·max|w_q|·max|w_k|.
        max_logit = f64::from(d).sqrt() * max_abs(wq) * max_abs(wk);
        extra.norms = Some(c.constant("norms", &[2, d as usize], DType::F32, weights));
    }
    let form = match form {
        Form::KeySplit(_) => {
            let (few, any) = (rng.range(1, 9).min(keys), rng.range(1, keys));
            Form::KeySplit(rng.pick(&[few, few, few, keys, any]) as u32)
        }
        other => other,
    };
    let out = attend(&mut c, cfg, form, qi, &kv, extra)?;
    let max_logit = max_logit + mask_range;
    // A convex combination of the values: error ~ (logit rounding) · max|v|.
    let mut tol = (2e-5 + 2e-6 * max_logit) * v_max;
    if storage == DType::F16 && form == Form::Naive {
        // The naive passes store logits and weights as f16: a logit off by |s|·2⁻¹¹ scales a
        // weight by up to that, and each weight is off by 2⁻¹¹.
        tol += 2f64.powi(-10) * (max_logit + 1.0) * v_max;
    }
    let chunks = match form {
        Form::KeySplit(n) => format!(" chunks {n}"),
        _ => String::new(),
    };
    let description = format!(
        "b{batch} q{nq} k{ka}+{kb}{chunks} {heads}x{d} kv_heads {kv_heads} qk_norm={qk_norm} logits<={max_logit:.0} mask={mask_kind} {storage} {kind:?} inject={inject}"
    );
    Ok(c.finish(&[out], description, Tolerance::new(SUBNORMAL_FLOOR, 1e-4).plus(tol)))
}

/// (label, queries, keys of source a, keys of source b, heads, head dim). The last is Mllama's
/// cross-attention from a few text tokens to one tile's vision tokens: the long-key case the key
/// split is for.
type Size = (&'static str, usize, usize, usize, u32, u32);
const SIZES: [Size; 3] = [
    ("qformer 32 over 257, 12x64", 32, 257, 0, 12, 64),
    ("perceiver 64 over 257+64, 16x64", 64, 257, 64, 16, 64),
    ("mllama 8 over 1601, 32x128", 8, 1601, 0, 32, 128),
];
/// The vision towers' self-attention, flash only (the naive passes would store 1 GiB of
/// scores): CLIP-L/14-336's 577 tokens and Gemma 3's SigLIP at 896 px, 4096 tokens.
const TOWER_SIZES: [Size; 2] = [
    ("clip tower 577 over 577, 16x64", 577, 577, 0, 16, 64),
    ("gemma3 tower 4096 over 4096, 16x72", 4096, 4096, 0, 16, 72),
];

fn bench_case(form: Form, storage: DType, (q, ka, kb, heads, d): (usize, usize, usize, u32, u32)) -> Result<Case> {
    let mut rng = CaseRng::new(0xbe7c4);
    let w = (heads * d) as usize;
    let mut cfg = Attention::new(heads, d);
    let mut c = Case::builder(form.name());
    let qi = c.input("q", &[1, q, w], storage, rng.normals(q * w, 1.0));
    let mut kv = vec![c.input("kv_a", &[1, ka, 2 * w], storage, rng.normals(ka * 2 * w, 1.0))];
    if kb > 0 {
        cfg = cfg.two_sources();
        kv.push(c.input("kv_b", &[1, kb, 2 * w], storage, rng.normals(kb * 2 * w, 1.0)));
    }
    // The chunks a GPU plan would take, but at least 2.
    let form = match form {
        Form::KeySplit(_) => Form::KeySplit(KeySplit::chunks_for(heads as usize, q, ka + kb).max(2)),
        other => other,
    };
    let out = attend(&mut c, cfg, form, qi, &kv, Extra::default())?;
    Ok(c.finish(&[out], String::new(), Tolerance::exact()))
}

fn bench(form: Form, storages: &[DType], sizes: &'static [Size]) -> Vec<BenchCase> {
    storages
        .iter()
        .flat_map(|&storage| {
            sizes.iter().map(move |&(label, q, ka, kb, heads, d)| {
                let label =
                    if storage == DType::F32 { label.to_string() } else { format!("{label}, {storage} activations") };
                BenchCase::new(label, move || bench_case(form, storage, (q, ka, kb, heads, d)))
            })
        })
        .collect()
}

pub(super) fn bench_flash() -> Vec<BenchCase> {
    let storages = [DType::F32, DType::F16];
    let mut cases = bench(Form::Flash, &storages, &SIZES);
    cases.extend(bench(Form::Flash, &storages, &TOWER_SIZES));
    cases
}

/// What `vlbridge tune` times: the Q-Former's cross-attention, 12 heads of 64, 32 queries over
/// 257 keys.
pub(super) fn tune_flash() -> Vec<BenchCase> {
    vec![BenchCase::new("32 over 257, 12x64", || bench_case(Form::Flash, DType::F32, (32, 257, 0, 12, 64)))]
}

pub(super) fn bench_naive() -> Vec<BenchCase> {
    bench(Form::Naive, &[DType::F32], &SIZES)
}

pub(super) fn bench_key_split() -> Vec<BenchCase> {
    bench(Form::KeySplit(0), &[DType::F32, DType::F16], &SIZES)
}

/// Two sources, a mask with a fully masked row, head dim 20, f16 storage.
fn precision(form: Form) -> Result<Vec<Case>> {
    let (batch, nq, ka, kb, heads, d) = (2, 5, 9, 4, 2u32, 20u32);
    let w = (heads * d) as usize;
    let cfg = Attention::new(heads, d).two_sources().masked(MaskedRows::Uniform);
    let mut rng = CaseRng::new(1);
    let mut c = Case::builder(form.name());
    let q = c.input("q", &[batch, nq, w], DType::F16, rng.signed(batch * nq * w));
    let kv_a = c.input("kv_a", &[batch, ka, 2 * w], DType::F16, rng.signed(batch * ka * 2 * w));
    let kv_b = c.input("kv_b", &[batch, kb, 2 * w], DType::F16, rng.signed(batch * kb * 2 * w));
    let keep: Vec<u8> = (0..batch * nq * (ka + kb)).map(|i| u8::from(i % 5 != 0 && i / (ka + kb) != 3)).collect();
    let mask = c.constant("mask", &[batch, nq, ka + kb], DType::U8, keep);
    let out = attend(&mut c, cfg, form, q, &[kv_a, kv_b], Extra { mask: Some(mask), norms: None })?;
    // The naive passes also store logits and weights as f16 (logits <= 4.5: ≈ 5.5·2⁻¹⁰).
    let extra = if form == Form::Naive { 2e-3 } else { 0.0 };
    Ok(vec![c.finish(&[out], "two sources, masked".into(), Tolerance::new(0.0, 1e-5).plus(extra))])
}

pub(super) fn precision_flash() -> Result<Vec<Case>> {
    precision(Form::Flash)
}

pub(super) fn precision_naive() -> Result<Vec<Case>> {
    precision(Form::Naive)
}

/// Four chunks of the 13 keys (the last one key): the partials stay f32 under f16 activations.
pub(super) fn precision_key_split() -> Result<Vec<Case>> {
    precision(Form::KeySplit(4))
}
