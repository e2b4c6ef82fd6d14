//! Attention (naive, flash, split and key-split) against the f64 reference on random shapes,
//! layouts and values.
//!
//! Attention outputs are convex combinations of values in [-1, 1]; f32 logits of magnitude L
//! carry ~1e-7·L of rounding that exp turns into relative weight error, so the tolerance is
//! 2e-5 + 1e-6·L absolute (L up to ~90 in the extreme-logit cases) and 1e-4 relative. A wrong
//! key, head or offset moves outputs by ~0.1.

mod common;

use common::attention::{Form, attend};
use common::{edge_size, forced_gpu, gpu, minimal_gpu, values};
use ntest::timeout;
use proptest::prelude::*;
use vlbridge::kernels::attention::subgroup_query_rows;
use vlbridge::ops::{Attention, KeySplit, MaskedRows};
use vlbridge::reference;
use vlbridge::{DType, Gpu, Graph, HostData, Plan};

#[derive(Debug, Clone)]
struct AttentionCase {
    batch: usize,
    queries: usize,
    keys: [usize; 2],
    cfg: Attention,
    /// Self-attention over one fused QKV tensor (queries and keys are the same rows).
    fused_qkv: bool,
    q_width: usize,
    kv_width: usize,
    q: Vec<f32>,
    kv: [Vec<f32>; 2],
    mask: Vec<u8>,
    magnitude: f32,
}

fn attention_case() -> impl Strategy<Value = AttentionCase> {
    attention_case_with(edge_size(70).boxed())
}

/// Like [`attention_case`], with `queries` query rows where they are not the keys (self-attention
/// over a fused QKV row has as many as it has keys).
fn attention_case_with(queries: BoxedStrategy<usize>) -> impl Strategy<Value = AttentionCase> {
    let head_dim = prop_oneof![prop::sample::select(vec![16u32, 32, 64, 128]), 1u32..=128];
    let layout = (queries, edge_size(70), prop_oneof![Just(0usize), edge_size(40)], any::<bool>());
    let masking = prop::sample::select(vec![None, Some(MaskedRows::Uniform), Some(MaskedRows::Zero)]);
    (1usize..=2, 1u32..=4, head_dim, layout, masking, prop::sample::select(vec![1.0f32, 9.0]), 0u32..3).prop_flat_map(
        |(batch, heads, head_dim, (queries, keys_a, keys_b, fused), masking, magnitude, pad)| {
            let w = heads * head_dim;
            let mut cfg = Attention::new(heads, head_dim);
            // Self-attention reads q, k and v out of one [.., 3W] row; cross-attention reads
            // q at an offset in a padded row and k / v from a padded `[K; V]`-or-`[V; K]` row.
            let fused = fused && keys_b == 0;
            let (queries, q_width, kv_width) = if fused {
                cfg = cfg.offsets(0, w, 2 * w);
                (keys_a, 3 * w, 3 * w)
            } else if pad == 1 {
                cfg = cfg.offsets(pad, w + pad, pad);
                (queries, w + 2 * pad, 2 * w + 2 * pad)
            } else {
                cfg = cfg.offsets(pad, pad, w + pad);
                (queries, w + pad, 2 * w + pad)
            };
            if keys_b > 0 {
                cfg = cfg.two_sources();
            }
            if let Some(rows) = masking {
                cfg = cfg.masked(rows);
            }
            let (q_width, kv_width) = (q_width as usize, kv_width as usize);
            let keys = keys_a + keys_b;
            let mask = prop::collection::vec(prop::bool::weighted(0.7), batch * queries * keys).prop_map(move |keep| {
                // Every third query row keeps nothing: the fully masked case.
                keep.iter().enumerate().map(|(i, &k)| u8::from((i / keys) % 3 != 2 && k)).collect::<Vec<u8>>()
            });
            let data = (
                values(batch * queries * q_width, magnitude),
                values(batch * keys_a * kv_width, magnitude),
                values(batch * keys_b * kv_width, 1.0),
                mask,
            );
            data.prop_map(move |(q, kv_a, kv_b, mask)| AttentionCase {
                batch,
                queries,
                keys: [keys_a, keys_b],
                cfg,
                fused_qkv: fused,
                q_width,
                kv_width,
                q,
                kv: [kv_a, kv_b],
                mask,
                magnitude,
            })
        },
    )
}

/// Builds the case's attention in `form` over its inputs.
fn attention_graph(c: &AttentionCase, form: Form) -> (Graph, Vec<HostData<'_>>) {
    let mut g = Graph::new();
    let mut data = vec![HostData::F32(&c.q)];
    let q = g.input("q", &[c.batch, c.queries, c.q_width]).unwrap();
    let mut kv = vec![q];
    if !c.fused_qkv {
        data.push(HostData::F32(&c.kv[0]));
        kv[0] = g.input("kv_a", &[c.batch, c.keys[0], c.kv_width]).unwrap();
    }
    if c.cfg.two_sources {
        data.push(HostData::F32(&c.kv[1]));
        kv.push(g.input("kv_b", &[c.batch, c.keys[1], c.kv_width]).unwrap());
    }
    let mask = c.cfg.has_mask().then(|| {
        data.push(HostData::U8(&c.mask));
        g.input_as("mask", &[c.batch, c.queries, c.keys[0] + c.keys[1]], DType::U8).unwrap()
    });
    let inputs = [vec![q], kv, mask.into_iter().collect()].concat();
    let out = attend(&mut g, c.cfg, form, &inputs);
    g.output(out).unwrap();
    (g, data)
}

fn check_attention(gpu: &Gpu, c: &AttentionCase, form: Form) -> Result<(), TestCaseError> {
    let (g, inputs) = attention_graph(c, form);
    let got = Plan::new(gpu, &g).unwrap().run(&inputs).unwrap().remove(0).into_f32();
    let want = g.reference(&inputs).unwrap().remove(0);
    // Largest |logit|: magnitude² per term · head_dim terms · head_dim^-0.5, bounded loosely.
    let logit = f64::from(c.magnitude * c.magnitude) * f64::from(c.cfg.head_dim).sqrt();
    let atol = 2e-5 + 1e-6 * logit.min(200.0);
    let cmp = reference::compare(&got, &want, atol, 1e-4);
    prop_assert!(cmp.passed(), "{form:?}: {cmp}");
    Ok(())
}

/// Mllama's cross-attention: grouped key/value heads in a `[K | V]` row, an additive mask with
/// `finfo(f32).min` entries (every third row entirely), per-head q/k RMSNorms.
#[derive(Debug, Clone)]
struct GroupedCase {
    batch: usize,
    queries: usize,
    keys: usize,
    cfg: Attention,
    q: Vec<f32>,
    kv: Vec<f32>,
    mask: Vec<f32>,
    norms: Vec<f32>,
}

fn grouped_case() -> impl Strategy<Value = GroupedCase> {
    let heads = prop::sample::select(vec![(1u32, 1u32), (2, 1), (4, 2), (4, 1), (6, 3), (8, 2)]);
    let head_dim = prop_oneof![prop::sample::select(vec![16u32, 64, 128]), 1u32..=128];
    (1usize..=2, heads, head_dim, edge_size(40), edge_size(60), any::<bool>(), any::<bool>()).prop_flat_map(
        |(batch, (heads, kv_heads), d, queries, keys, masked, qk_norm)| {
            let mut cfg = Attention::new(heads, d).grouped(kv_heads).offsets(0, 0, kv_heads * d);
            if masked {
                cfg = cfg.additive_mask();
            }
            if qk_norm {
                cfg = cfg.qk_norm(1e-5);
            }
            let (w, kv_w) = ((heads * d) as usize, (kv_heads * d) as usize);
            let mask = (
                prop::collection::vec(prop::bool::weighted(0.6), batch * queries * keys),
                values(batch * queries * keys, 3.0),
            )
                .prop_map(move |(keep, bias)| {
                    keep.iter()
                        .zip(bias)
                        .enumerate()
                        .map(|(i, (&k, b))| if (i / keys) % 3 == 2 || !k { f32::MIN } else { b })
                        .collect::<Vec<f32>>()
                });
            let norms = values(2 * d as usize, 0.5).prop_map(|v| v.iter().map(|x| 1.0 + x).collect::<Vec<f32>>());
            (values(batch * queries * w, 2.0), values(batch * keys * 2 * kv_w, 2.0), mask, norms)
                .prop_map(move |(q, kv, mask, norms)| GroupedCase { batch, queries, keys, cfg, q, kv, mask, norms })
        },
    )
}

/// (GPU output, f64 reference) of a grouped case in `form`.
fn run_grouped(gpu: &Gpu, c: &GroupedCase, form: Form) -> (Vec<f32>, Vec<f64>) {
    let (w, kv_w) = (c.cfg.width() as usize, c.cfg.kv_width() as usize);
    let mut g = Graph::new();
    let q = g.input("q", &[c.batch, c.queries, w]).unwrap();
    let kv = g.input("kv", &[c.batch, c.keys, 2 * kv_w]).unwrap();
    let mut data = vec![HostData::F32(&c.q), HostData::F32(&c.kv)];
    let mut extra = Vec::new();
    if c.cfg.has_mask() {
        extra.push(g.input("mask", &[c.batch, c.queries, c.keys]).unwrap());
        data.push(HostData::F32(&c.mask));
    }
    if c.cfg.qk_norm.is_some() {
        let d = c.cfg.head_dim as usize;
        extra.push(g.constant("norms", &vlbridge::Tensor::from_f32(gpu, &[2, d], &c.norms).unwrap()));
    }
    let inputs = [vec![q, kv], extra.clone()].concat();
    let out = attend(&mut g, c.cfg, form, &inputs);
    g.output(out).unwrap();
    let got = Plan::new(gpu, &g).unwrap().run(&data).unwrap().remove(0).into_f32();
    (got, g.reference(&data).unwrap().remove(0))
}

fn check_grouped(gpu: &Gpu, c: &GroupedCase, form: Form) -> Result<(), TestCaseError> {
    let (got, want) = run_grouped(gpu, c, form);
    // Logits: |q|·|k|·d^-0.5 with entries up to 2 (normalised: √d·max|w|²), plus the mask's 3.
    let d = f64::from(c.cfg.head_dim);
    let logit = if c.cfg.qk_norm.is_some() { d.sqrt() * 2.25 } else { 4.0 * d.sqrt() } + 3.0;
    let cmp = reference::compare(&got, &want, (2e-5 + 2e-6 * logit) * 2.0, 1e-4);
    prop_assert!(cmp.passed(), "{form:?} {:?}: {cmp}", c.cfg);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    #[timeout(300_000)]
    fn grouped_masked_normed_attention_matches_reference(c in grouped_case()) {
        check_grouped(gpu(), &c, Form::Flash)?;
        check_grouped(gpu(), &c, Form::Naive)?;
    }

    #[test]
    #[timeout(300_000)]
    fn portable_grouped_masked_normed_attention_matches_reference(c in grouped_case()) {
        check_grouped(minimal_gpu(), &c, Form::Flash)?;
    }
}

/// A key of -inf logit gets weight 0, as in upstream's f32 softmax, also in a row that the
/// additive mask drops entirely (whose other keys average uniformly): the naive scores pass
/// once clamped that logit to -f32::MAX and so weighed it like the masked keys (fuzz-found).
#[test]
#[timeout(120_000)]
fn a_minus_infinite_logit_weighs_nothing_in_an_additively_masked_row() {
    let cfg = Attention::new(1, 4).grouped(1).offsets(0, 0, 4).additive_mask();
    let (inf, v) = (f32::INFINITY, [[1.0, 2.0, 3.0, 4.0], [100.0; 4], [3.0, 4.0, 5.0, 6.0]]);
    let k = [[0.5, 0.1, 0.2, 0.3], [inf, 0.0, 0.0, 0.0], [0.4, 0.3, 0.2, 0.1]];
    let kv: Vec<f32> = k.iter().zip(&v).flat_map(|(k, v)| k.iter().chain(v).copied()).collect();
    let c = GroupedCase {
        batch: 1,
        queries: 2,
        keys: 3,
        cfg,
        q: vec![-1.0, 0.5, 0.5, 0.5, -2.0, 1.0, 0.0, 1.0],
        kv,
        // Query 0 masked throughout, query 1 not at all.
        mask: vec![f32::MIN, f32::MIN, f32::MIN, 0.0, 0.0, 0.0],
        norms: Vec::new(),
    };
    for form in [Form::Flash, Form::Naive, Form::KeySplit(2)] {
        let (got, want) = run_grouped(gpu(), &c, form);
        assert_eq!(&got[..4], &[2.0, 3.0, 4.0, 5.0], "{form:?}: mean of keys 0 and 2");
        assert!(got[4..].iter().all(|&x| (1.0..=6.0).contains(&x)), "{form:?}: {got:?}");
        let cmp = reference::compare(&got, &want, 1e-5, 1e-5);
        assert!(cmp.passed(), "{form:?}: {cmp}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// The GPU variant (keys split over a workgroup's slices), forced on lavapipe.
    #[test]
    #[timeout(300_000)]
    fn split_variant_attention_matches_reference(c in attention_case(), g in grouped_case()) {
        let gpu = forced_gpu("attention_flash", "split");
        check_attention(gpu, &c, Form::Flash)?;
        check_grouped(gpu, &g, Form::Flash)?;
    }
}

proptest! {
    // Each head dim compiles a partials pipeline of its own (seconds on llvmpipe): few cases,
    // each covering both layouts.
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// Keys split across workgroups too: 1 to 9 chunks (ragged or empty last ones), or one
    /// key each.
    #[test]
    #[timeout(300_000)]
    fn key_chunk_attention_matches_reference(
        c in attention_case(),
        g in grouped_case(),
        chunks in 1u32..=9,
        one_key_each in prop::bool::weighted(0.2),
    ) {
        let chunks_of = |keys: usize| if one_key_each { keys as u32 } else { chunks.min(keys as u32) };
        check_attention(gpu(), &c, Form::KeySplit(chunks_of(c.keys[0] + c.keys[1])))?;
        check_grouped(gpu(), &g, Form::KeySplit(chunks_of(g.keys)))?;
    }
}

/// Where the device splits keys (forced here; a GPU does for few queries over many keys), the
/// planner runs an attention node as the partials and combine passes, with the same result.
#[test]
#[timeout(300_000)]
fn the_planner_splits_long_keys_across_workgroups_where_the_device_does() {
    let c = AttentionCase {
        batch: 2,
        queries: 3,
        keys: [29, 8],
        cfg: Attention::new(2, 24).two_sources().masked(MaskedRows::Zero),
        fused_qkv: false,
        q_width: 48,
        kv_width: 96,
        q: (0..2 * 3 * 48).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect(),
        kv: [
            (0..2 * 29 * 96).map(|i| ((i * 53 % 97) as f32 / 48.0) - 1.0).collect(),
            (0..2 * 8 * 96).map(|i| ((i * 71 % 89) as f32 / 44.0) - 1.0).collect(),
        ],
        // Query row 1 of each batch item masked throughout (zeroed), others keep 2 keys in 3.
        mask: (0..2 * 3 * 37).map(|i| u8::from((i / 37) % 3 != 1 && i % 3 != 0)).collect(),
        magnitude: 1.0,
    };
    let (g, inputs) = attention_graph(&c, Form::Flash);
    let want = g.reference(&inputs).unwrap().remove(0);
    for (force, dispatches) in [("5", 2), ("on", 2), ("off", 1), ("37", 2), ("99", 2)] {
        let plan = Plan::new(forced_gpu("key_split", force), &g).unwrap();
        assert_eq!(plan.dispatches().len(), dispatches, "key_split={force}: {:?}", plan.variants());
        if dispatches == 2 {
            assert_eq!(plan.variants(), ["attention_partials", "attention_combine"]);
        }
        let got = plan.run(&inputs).unwrap().remove(0).into_f32();
        let cmp = reference::compare(&got, &want, 2e-5, 1e-4);
        assert!(cmp.passed(), "key_split={force}: {cmp}");
        assert!(got[48..96].iter().all(|&x| x == 0.0), "key_split={force}: the masked row is zeroed");
    }
    // lavapipe's own choice: one pass (its cores are few).
    assert_eq!(Plan::new(gpu(), &g).unwrap().dispatches(), ["attention_flash"]);
}

/// A CPU rasteriser with subgroups (lavapipe) runs many queries on the subgroup kernel and
/// at most 8 on the portable one, where the subgroup kernel's 64-query workgroups would idle.
#[test]
#[timeout(120_000)]
fn a_cpu_rasteriser_runs_few_queries_on_the_portable_kernel() {
    let gpu = gpu();
    if !(gpu.caps().is_cpu() && gpu.caps().subgroups_of(8)) {
        eprintln!("skipped: {} is not a CPU rasteriser with subgroups", gpu.info().name);
        return;
    }
    for (queries, variant) in [(1, "attention_flash"), (8, "attention_flash"), (9, "attention_flash_subgroup")] {
        let mut g = Graph::new();
        let q = g.input("q", &[1, queries, 32]).unwrap();
        let kv = g.input("kv", &[1, 40, 64]).unwrap();
        let out = g.add(Attention::new(2, 16), &[q, kv]).unwrap();
        g.output(out).unwrap();
        assert_eq!(Plan::new(gpu, &g).unwrap().variants(), [variant], "{queries} queries");
    }
}

/// The heuristic a GPU plans with: a second pass only where few workgroups meet many keys.
#[test]
fn key_chunks_fill_a_gpu_only_where_one_pass_cannot() {
    // Mllama decoding: 1 query, 32 heads over 4 tiles of 1601 vision tokens.
    assert_eq!(KeySplit::chunks_for(32, 1, 6404), 16);
    // A prompt of 40 text tokens: 160 workgroups already, 4 chunks reach 512.
    assert_eq!(KeySplit::chunks_for(32, 40, 6404), 4);
    // The Q-Former's and the Perceiver's attentions: too few keys to be worth a second pass.
    assert_eq!(KeySplit::chunks_for(12, 32, 257), 1);
    assert_eq!(KeySplit::chunks_for(16, 64, 321), 1);
    // Enough (batch, head, query block) triples: one pass.
    assert_eq!(KeySplit::chunks_for(64, 64, 100_000), 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    #[timeout(300_000)]
    fn flash_attention_matches_reference(c in attention_case()) {
        check_attention(gpu(), &c, Form::Flash)?;
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Long query sequences, where the subgroup kernel gives each invocation 2 or 4 query rows
    /// (a partial last block included; the CPU rasteriser picks that kernel here).
    #[test]
    #[timeout(300_000)]
    fn flash_attention_over_query_blocks_matches_reference(
        c in attention_case_with(prop_oneof![65usize..=128, 129usize..=320].boxed()),
    ) {
        check_attention(gpu(), &c, Form::Flash)?;
    }
}

/// Rows per invocation follow the real queries: 1 up to a workgroup's 64, then 2, then 4 (CLIP's
/// 577 tokens too: three 256-row blocks at 47 GFLOP/s beat five 128-row ones at 37).
#[test]
fn the_subgroup_kernel_takes_more_query_rows_for_longer_sequences() {
    for (queries, rows) in [(1, 1), (64, 1), (65, 2), (128, 2), (129, 4), (256, 4), (577, 4), (4096, 4)] {
        assert_eq!(subgroup_query_rows(queries), rows, "{queries} queries");
    }
}

proptest! {
    // The portable kernel is the slow one on llvmpipe: fewer cases keep the suite quick.
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    #[timeout(300_000)]
    fn portable_flash_attention_matches_reference(c in attention_case()) {
        check_attention(minimal_gpu(), &c, Form::Flash)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    #[timeout(300_000)]
    fn naive_attention_matches_reference(c in attention_case()) {
        check_attention(gpu(), &c, Form::Naive)?;
    }
}
