//! Block-diagonal attention from a segment table (`Mask::Segments`: Qwen's frames and windows,
//! Pixtral's images) against the f64 reference, with every flash variant forced, and the
//! naive and key-split passes; a leak between segments, and the table's shape errors.

mod common;

use common::attention::{Form, attend};
use common::{forced_gpu, gpu, values};
use ntest::timeout;
use proptest::prelude::*;
use vlbridge::ops::{Attention, segment_bounds};
use vlbridge::reference;
use vlbridge::{DType, Gpu, Graph, HostData, Plan};

/// Block-diagonal self-attention over packed segments (images, windows) of a fused QKV row.
#[derive(Debug, Clone)]
struct SegmentCase {
    lengths: Vec<usize>,
    cfg: Attention,
    qkv: Vec<f32>,
}

/// 1–7 segments of 1–90 tokens (so 64·R-query blocks of the subgroup kernel straddle them),
/// 1–3 heads of odd and even dims, values in [-3, 3].
fn segment_case() -> impl Strategy<Value = SegmentCase> {
    let head_dim = prop::sample::select(vec![4u32, 16, 17, 32, 40, 64, 80]);
    (prop::collection::vec(1usize..=90, 1..=7), 1u32..=3, head_dim).prop_flat_map(|(lengths, heads, d)| {
        let w = heads * d;
        let cfg = Attention::new(heads, d).offsets(0, w, 2 * w).segments(&lengths);
        let tokens: usize = lengths.iter().sum();
        values(tokens * 3 * w as usize, 3.0).prop_map(move |qkv| SegmentCase { lengths: lengths.clone(), cfg, qkv })
    })
}

fn check_segments(gpu: &Gpu, c: &SegmentCase, form: Form) -> Result<(), TestCaseError> {
    let tokens: usize = c.lengths.iter().sum();
    let width = 3 * c.cfg.width() as usize;
    let bounds = segment_bounds(&c.lengths);
    let mut g = Graph::new();
    let qkv = g.input("qkv", &[1, tokens, width]).unwrap();
    let segments = g.input_as("segments", &[1, tokens, 2], DType::U32).unwrap();
    let out = attend(&mut g, c.cfg, form, &[qkv, qkv, segments]);
    g.output(out).unwrap();
    let inputs = [HostData::F32(&c.qkv), HostData::U32(&bounds)];
    let got = Plan::new(gpu, &g).unwrap().run(&inputs).unwrap().remove(0).into_f32();
    let want = g.reference(&inputs).unwrap().remove(0);
    // Logits up to 9·d·d^-0.5 = 9·√d.
    let atol = 2e-5 + 1e-6 * 9.0 * f64::from(c.cfg.head_dim).sqrt();
    let cmp = reference::compare(&got, &want, atol, 1e-4);
    prop_assert!(cmp.passed(), "{form:?} {:?}: {cmp}", c.lengths);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Every flash variant and the naive and key-split passes, each forced.
    #[test]
    #[timeout(600_000)]
    fn segment_attention_matches_reference(c in segment_case()) {
        for variant in ["subgroup", "split", "portable"] {
            check_segments(forced_gpu("attention_flash", variant), &c, Form::Flash)?;
        }
        check_segments(gpu(), &c, Form::Naive)?;
        check_segments(gpu(), &c, Form::KeySplit(3.min(c.lengths.iter().sum::<usize>() as u32)))?;
    }
}

/// A query attends its own segment only: with two segments of one token each, every output is
/// that token's own value, which dense attention would mix with the other's.
#[test]
#[timeout(120_000)]
fn a_segment_never_attends_another() {
    let cfg = Attention::new(1, 4).offsets(0, 4, 8).segments(&[1, 1]);
    // Rows [q | k | v]: equal queries and keys, opposite values.
    let row = |v: f32| [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, v, 1.5 * v, 2.0 * v, 2.5 * v];
    let qkv = [row(2.0), row(-2.0)].concat();
    for variant in ["subgroup", "split", "portable"] {
        let mut g = Graph::new();
        let x = g.input("qkv", &[1, 2, 12]).unwrap();
        let s = g.input_as("segments", &[1, 2, 2], DType::U32).unwrap();
        let out = g.add(cfg, &[x, x, s]).unwrap();
        g.output(out).unwrap();
        let bounds = segment_bounds(&[1, 1]);
        let got = Plan::new(forced_gpu("attention_flash", variant), &g)
            .unwrap()
            .run(&[HostData::F32(&qkv), HostData::U32(&bounds)])
            .unwrap()
            .remove(0)
            .into_f32();
        assert_eq!(got, [2.0, 3.0, 4.0, 5.0, -2.0, -3.0, -4.0, -5.0], "{variant}");
    }
}

/// Segment bounds are `[batch, queries, 2]` u32: other shapes and dtypes are typed errors.
#[test]
fn segment_bounds_of_the_wrong_shape_or_dtype_are_refused() {
    let cfg = Attention::new(2, 8).offsets(0, 16, 32).segments(&[3, 2]);
    for (shape, dtype) in [(vec![1, 5, 3], DType::U32), (vec![1, 4, 2], DType::U32), (vec![1, 5, 2], DType::U8)] {
        let mut g = Graph::new();
        let x = g.input("qkv", &[1, 5, 48]).unwrap();
        let s = g.input_as("segments", &shape, dtype).unwrap();
        let err = g.add(cfg, &[x, x, s]).unwrap_err().to_string();
        assert!(err.contains("segment bounds") || err.contains("u32"), "{shape:?} {dtype}: {err}");
    }
}
