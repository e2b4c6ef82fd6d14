//! The ops Llama 3.2 Vision's tiled tower adds, on random odd sizes: pad-pair attention
//! (`Mask::PadPairs`) with every flash variant forced and the naive and key-split passes,
//! against the f64 reference and against the dense keep mask it stands for; the row gather's
//! zero rows and index of any rank; the row-broadcast add; and their shape errors.

mod common;

use common::attention::{Form, attend};
use common::{edge_size, forced_gpu, gpu, to_f64, values};
use ntest::timeout;
use proptest::prelude::*;
use vlbridge::ops::{AddRows, Attention, Concat, MaskedRows, ZERO_ROW};
use vlbridge::reference;
use vlbridge::{DType, Gpu, Graph, HostData, Plan};

/// Self-attention over `tokens` tokens of a fused QKV row per item, `real` marking the
/// non-padding tokens (Mllama's: real runs, then padding, tile after tile).
#[derive(Debug, Clone)]
struct PadCase {
    batch: usize,
    tokens: usize,
    cfg: Attention,
    real: Vec<u8>,
    qkv: Vec<f32>,
}

/// 1–2 items of 1–90 tokens, 1–3 heads of odd and even dims, runs of 1–9 real tokens then
/// 0–8 padding ones, sometimes a whole item of padding but its first token.
fn pad_case() -> impl Strategy<Value = PadCase> {
    let head_dim = prop::sample::select(vec![4u32, 16, 17, 32, 40, 64]);
    (1usize..=2, 1usize..=90, 1u32..=3, head_dim, 1usize..=9, 0usize..=8).prop_flat_map(
        |(batch, tokens, heads, d, run, pad)| {
            let w = heads * d;
            let cfg = Attention::new(heads, d).offsets(0, w, 2 * w).pad_pairs();
            let real: Vec<u8> =
                (0..batch * tokens).map(|i| u8::from(i % tokens == 0 || (i % tokens) % (run + pad) < run)).collect();
            values(batch * tokens * 3 * w as usize, 3.0).prop_map(move |qkv| PadCase {
                batch,
                tokens,
                cfg,
                real: real.clone(),
                qkv,
            })
        },
    )
}

fn pad_graph(c: &PadCase, form: Form) -> Graph {
    let width = 3 * c.cfg.width() as usize;
    let mut g = Graph::new();
    let qkv = g.input("qkv", &[c.batch, c.tokens, width]).unwrap();
    let real = g.input_as("real", &[c.batch, c.tokens], DType::U8).unwrap();
    let out = attend(&mut g, c.cfg, form, &[qkv, qkv, real]);
    g.output(out).unwrap();
    g
}

fn check_pads(gpu: &Gpu, c: &PadCase, form: Form) -> Result<(), TestCaseError> {
    let g = pad_graph(c, form);
    let inputs = [HostData::F32(&c.qkv), HostData::U8(&c.real)];
    let got = Plan::new(gpu, &g).unwrap().run(&inputs).unwrap().remove(0).into_f32();
    let want = g.reference(&inputs).unwrap().remove(0);
    // Logits up to 9·d·d^-0.5 = 9·√d.
    let atol = 2e-5 + 1e-6 * 9.0 * f64::from(c.cfg.head_dim).sqrt();
    let cmp = reference::compare(&got, &want, atol, 1e-4);
    prop_assert!(cmp.passed(), "{form:?} {} x {} tokens: {cmp}", c.batch, c.tokens);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Every flash variant and the naive and key-split passes, each forced.
    #[test]
    #[timeout(600_000)]
    fn pad_pair_attention_matches_reference(c in pad_case()) {
        for variant in ["subgroup", "split", "portable"] {
            check_pads(forced_gpu("attention_flash", variant), &c, Form::Flash)?;
        }
        check_pads(gpu(), &c, Form::Naive)?;
        check_pads(gpu(), &c, Form::KeySplit(3.min(c.tokens as u32)))?;
    }

    /// The per-token mask equals the dense keep mask `real_i || real_j` built by hand, so the
    /// kernels read the query's byte and the key's byte, not one of them twice.
    #[test]
    #[timeout(300_000)]
    fn pad_pairs_equal_their_dense_keep_mask(c in pad_case()) {
        let got = {
            let g = pad_graph(&c, Form::Flash);
            Plan::new(gpu(), &g).unwrap().run(&[HostData::F32(&c.qkv), HostData::U8(&c.real)]).unwrap().remove(0)
        };
        let n = c.tokens;
        let dense: Vec<u8> = (0..c.batch * n * n)
            .map(|i| {
                let (b, q, k) = (i / (n * n), (i / n) % n, i % n);
                u8::from(c.real[b * n + q] != 0 || c.real[b * n + k] != 0)
            })
            .collect();
        let width = 3 * c.cfg.width() as usize;
        let (heads, d) = (c.cfg.heads, c.cfg.head_dim);
        let keep = Attention::new(heads, d).offsets(0, heads * d, 2 * heads * d).masked(MaskedRows::Uniform);
        let mut g = Graph::new();
        let qkv = g.input("qkv", &[c.batch, n, width]).unwrap();
        let mask = g.input_as("mask", &[c.batch, n, n], DType::U8).unwrap();
        let out = g.add(keep, &[qkv, qkv, mask]).unwrap();
        g.output(out).unwrap();
        let want = Plan::new(gpu(), &g).unwrap().run(&[HostData::F32(&c.qkv), HostData::U8(&dense)]).unwrap().remove(0);
        let cmp = reference::compare(&got.into_f32(), &to_f64(&want.into_f32()), 1e-6, 1e-5);
        prop_assert!(cmp.passed(), "{} x {n} tokens: {cmp}", c.batch);
    }

    /// A gather by an index `[outer, m]` of rows, repeats and zero rows (past the rows, or
    /// `ZERO_ROW`) is exact.
    #[test]
    #[timeout(120_000)]
    fn a_gather_with_zero_rows_matches_reference(
        (rows, cols, outer, picks, x) in (1usize..=40, edge_size(33), 1usize..=3, 1usize..=30).prop_flat_map(
            |(rows, cols, outer, m)| {
                let pick = prop::sample::select((0..rows as u32).chain([rows as u32, ZERO_ROW, ZERO_ROW]).collect::<Vec<_>>());
                (Just(rows), Just(cols), Just(outer), prop::collection::vec(pick, outer * m), values(rows * cols, 5.0))
            },
        ),
    ) {
        let m = picks.len() / outer;
        let mut g = Graph::new();
        let xi = g.input("x", &[rows, cols]).unwrap();
        let index = g.input_as("index", &[outer, m], DType::U32).unwrap();
        let y = g.add(Concat::Gather { cols }, &[xi, index]).unwrap();
        g.output(y).unwrap();
        prop_assert_eq!(g.shape(y).unwrap(), &[outer, m, cols]);
        let got = Plan::new(gpu(), &g).unwrap().run(&[HostData::F32(&x), HostData::U32(&picks)]).unwrap().remove(0);
        let want: Vec<f32> = picks
            .iter()
            .flat_map(|&r| match x.get(r as usize * cols..(r as usize + 1) * cols) {
                Some(row) => row.to_vec(),
                None => vec![0.0; cols],
            })
            .collect();
        prop_assert_eq!(got.into_f32(), want);
    }

    /// Each row of t reaches exactly its group's rows of x.
    #[test]
    #[timeout(120_000)]
    fn a_row_broadcast_add_matches_reference(
        (groups, group, cols, x, t) in (1usize..=9, edge_size(40), edge_size(65)).prop_flat_map(|(groups, group, cols)| {
            (Just(groups), Just(group), Just(cols), values(groups * group * cols, 4.0), values(groups * cols, 4.0))
        }),
    ) {
        let mut g = Graph::new();
        let xi = g.input("x", &[1, groups * group, cols]).unwrap();
        let ti = g.input("t", &[groups, cols]).unwrap();
        let y = g.add(AddRows { group }, &[xi, ti]).unwrap();
        g.output(y).unwrap();
        let got = Plan::new(gpu(), &g).unwrap().run_f32(&[&x, &t]).unwrap().remove(0);
        let want: Vec<f64> = (0..x.len())
            .map(|e| f64::from(x[e]) + f64::from(t[(e / cols / group) * cols + e % cols]))
            .collect();
        let cmp = reference::compare(&got, &want, 1e-6, 1e-6);
        prop_assert!(cmp.passed(), "{groups} groups of {group} x {cols}: {cmp}");
    }
}

/// A pad-pair mask is self-attention over one byte per token: other shapes, a second source
/// and more queries than keys are typed errors; so are row-broadcast tables that do not fit.
#[test]
#[timeout(60_000)]
fn tile_ops_of_the_wrong_shape_are_refused() {
    let cfg = Attention::new(2, 8).offsets(0, 16, 32).pad_pairs();
    for (queries, mask) in [(5, vec![1, 5, 5]), (5, vec![1, 4]), (4, vec![1, 5])] {
        let mut g = Graph::new();
        let q = g.input("q", &[1, queries, 48]).unwrap();
        let kv = g.input("kv", &[1, 5, 48]).unwrap();
        let m = g.input_as("real", &mask, DType::U8).unwrap();
        let err = g.add(cfg, &[q, kv, m]).unwrap_err().to_string();
        assert!(err.contains("mask") || err.contains("pad-pair"), "{queries} queries, mask {mask:?}: {err}");
    }
    let mut g = Graph::new();
    let x = g.input("x", &[12, 7]).unwrap();
    for (group, t) in [(5, vec![3, 7]), (4, vec![4, 7]), (4, vec![3, 6]), (0, vec![3, 7])] {
        let ti = g.input("t", &t).unwrap();
        let err = g.add(AddRows { group }, &[x, ti]).unwrap_err().to_string();
        assert!(err.contains("add_rows"), "group {group}, t {t:?}: {err}");
    }
    let half = g.input_as("t16", &[3, 7], DType::F16).unwrap();
    let err = g.add(AddRows { group: 4 }, &[x, half]).unwrap_err().to_string();
    assert!(err.contains("f32"), "{err}");
}
