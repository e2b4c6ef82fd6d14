//! The tower kernels against their f64 references on random shapes: the patch embedding
//! (odd image sides, patches that do not divide them, every flag and weight dtype), the token
//! copies (layers side by side, class token dropped, slices, rows, flatten), and the key-padding
//! attention mask composed from first principles (a padded key changes nothing it should not).

mod common;

use common::{edge_size, forced_gpu, gpu, run_case, to_f64, values};
use ntest::timeout;
use proptest::prelude::*;
use vlbridge::kernels::{CaseRng, CaseTarget, FAMILIES};
use vlbridge::ops::{Attention, Concat, Epilogue, GeluForm, PatchEmbed, Rope2d, RopeFrequencies, RotaryPairs};
use vlbridge::{DType, Graph, Plan, Tensor, reference};

fn target() -> CaseTarget {
    CaseTarget { shader_f16: gpu().features().contains(vlbridge::wgpu::Features::SHADER_F16) }
}

/// Runs `family`'s fuzz case for `seed` and holds it to its reference.
fn fuzz_case(family: &str, seed: u64) -> Result<(), TestCaseError> {
    let fuzz = FAMILIES.iter().find(|f| f.name == family).and_then(|f| f.fuzz).expect("a fuzzed family");
    let case = fuzz(&mut CaseRng::new(seed), &target()).unwrap();
    let cmp = run_case(gpu(), &case).unwrap();
    prop_assert!(cmp.passed(), "{}: {cmp}", case.description);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    #[timeout(300_000)]
    fn patch_embed_cases_match_reference(seed in any::<u64>()) {
        fuzz_case("patch_embed", seed)?;
    }

    #[test]
    #[timeout(300_000)]
    fn concat_cases_match_reference(seed in any::<u64>()) {
        fuzz_case("concat", seed)?;
    }

    #[test]
    #[timeout(300_000)]
    fn rotary_pairs_cases_match_reference(seed in any::<u64>()) {
        fuzz_case("rotary_pairs", seed)?;
    }

    /// Conv2d by hand (an independent loop order) against the kernel, f32 weights: a swapped
    /// dy/dx, a wrong channel stride or an off-by-one class-token row fails.
    #[test]
    #[timeout(300_000)]
    fn patch_embed_is_a_strided_convolution(
        (patch, h, w, c, class, data) in (1usize..6, 1usize..5, 1usize..5, edge_size(40), any::<bool>())
            .prop_flat_map(|(patch, gh, gw, c, class)| {
                let (h, w) = (patch * gh + patch / 2, patch * gw + 1);
                (Just(patch), Just(h), Just(w), Just(c), Just(class),
                 (values(2 * 3 * h * w, 1.0), values(c * 3 * patch * patch, 0.5), values(((gh + 1) * (gw + 2) + 1) * c, 1.0), values(c, 1.0)))
            }),
    ) {
        let (pixels, weight, positions, class_token) = data;
        let op = PatchEmbed { patch, bias: false, class_token: class, position_ids: false };
        let (gh, gw) = op.grid(h, w);
        let tokens = op.tokens(h, w);
        let mut g = Graph::new();
        let x = g.input("pixels", &[2, 3, h, w]).unwrap();
        let k = 3 * patch * patch;
        let mut inputs = vec![
            x,
            g.constant("w", &Tensor::from_f32(gpu(), &[c, k], &weight).unwrap()),
            g.constant("images", &Tensor::from_data(gpu(), &[2], DType::U32, [1u32, 0][..].into()).unwrap()),
            g.constant("pos", &Tensor::from_f32(gpu(), &[tokens, c], &positions[..tokens * c]).unwrap()),
        ];
        if class {
            inputs.push(g.constant("class", &Tensor::from_f32(gpu(), &[c], &class_token).unwrap()));
        }
        let y = g.add(op, &inputs).unwrap();
        g.output(y).unwrap();
        let got = Plan::new(gpu(), &g).unwrap().run_f32(&[&pixels]).unwrap().remove(0);
        let mut want = Vec::new();
        for slab in [1usize, 0] {
            if class {
                want.extend((0..c).map(|o| f64::from(class_token[o]) + f64::from(positions[o])));
            }
            for py in 0..gh {
                for px in 0..gw {
                    let t = usize::from(class) + py * gw + px;
                    for o in 0..c {
                        let mut acc = 0.0;
                        for ch in 0..3 {
                            for dy in 0..patch {
                                for dx in 0..patch {
                                    let pixel = pixels[((slab * 3 + ch) * h + py * patch + dy) * w + px * patch + dx];
                                    acc += f64::from(pixel) * f64::from(weight[o * k + (ch * patch + dy) * patch + dx]);
                                }
                            }
                        }
                        want.push(acc + f64::from(positions[t * c + o]));
                    }
                }
            }
        }
        let cmp = reference::compare(&got, &want, 1e-5, 1e-5);
        prop_assert!(cmp.passed(), "patch {patch}, {h}x{w}, C {c}, class {class}: {cmp}");
    }

    /// A key-padding mask equals attending over the real keys only (the padded keys' rows
    /// removed): padded keys get no weight, real ones all of it.
    #[test]
    #[timeout(300_000)]
    fn key_padding_mask_equals_dropping_the_padded_keys(
        (keys, real, queries, data) in (2usize..40, 1usize..40, edge_size(17))
            .prop_flat_map(|(keys, real, queries)| {
                let real = real.min(keys);
                (Just(keys), Just(real), Just(queries), (values(queries * 16, 2.0), values(keys * 32, 2.0)))
            }),
    ) {
        let (q, kv) = data;
        let attention = Attention::new(2, 8).offsets(0, 0, 16);
        let run = |keys_used: usize, mask: Option<&[u8]>| {
            let mut g = Graph::new();
            let qi = g.input("q", &[1, queries, 16]).unwrap();
            let ki = g.input("kv", &[1, keys_used, 32]).unwrap();
            let out = match mask {
                Some(m) => {
                    let t = Tensor::from_data(gpu(), &[1, keys_used], DType::U8, m.into()).unwrap();
                    let mi = g.constant("mask", &t);
                    g.add(attention.key_mask(), &[qi, ki, mi]).unwrap()
                }
                None => g.add(attention, &[qi, ki]).unwrap(),
            };
            g.output(out).unwrap();
            Plan::new(gpu(), &g).unwrap().run_f32(&[&q, &kv[..keys_used * 32]]).unwrap().remove(0)
        };
        let mask: Vec<u8> = (0..keys).map(|j| u8::from(j < real)).collect();
        let masked = run(keys, Some(&mask));
        let dropped = run(real, None);
        let cmp = reference::compare(&masked, &to_f64(&dropped), 1e-6, 1e-5);
        prop_assert!(cmp.passed(), "{real} of {keys} keys real, {queries} queries: {cmp}");
    }
}

#[test]
#[timeout(60_000)]
fn token_copies_reject_shapes_that_do_not_fit() {
    let mut g = Graph::new();
    let a = g.input("a", &[2, 5, 3]).unwrap();
    let b = g.input("b", &[2, 4, 3]).unwrap();
    let e = g.add(Concat::Channels { skip: 1, two: true }, &[a, b]).unwrap_err().to_string();
    assert!(e.contains("second input shape"), "{e}");
    let e = g.add(Concat::Channels { skip: 5, two: false }, &[a]).unwrap_err().to_string();
    assert!(e.contains("tokens dropped"), "{e}");
    let e = g.add(Concat::Slice { start: 1, len: 2 }, &[a]).unwrap_err().to_string();
    assert!(e.contains("slice"), "{e}");
    let c = g.input("c", &[3, 5, 4]).unwrap();
    let e = g.add(Concat::Rows, &[a, c]).unwrap_err().to_string();
    assert!(e.contains("trailing dims"), "{e}");
    let e = g.add(Concat::Regroup { cols: 4 }, &[a]).unwrap_err().to_string();
    assert!(e.contains("row width"), "{e}");
    let index = g.input_as("index", &[3], DType::U32).unwrap();
    let e = g.add(Concat::Gather { cols: 7 }, &[a, index]).unwrap_err().to_string();
    assert!(e.contains("row width"), "{e}");
    let e = g.add(Concat::Gather { cols: 3 }, &[a, c]).unwrap_err().to_string();
    assert!(e.contains("expected u32"), "{e}");
    let table = g.input_as("table", &[3, 2], DType::U32).unwrap();
    let gathered = g.add(Concat::Gather { cols: 3 }, &[a, table]).unwrap();
    assert_eq!(g.shape(gathered), Some(&[3, 2, 3][..]), "the index's shape, then the row");
}

/// Heads of 4 dims turned by hand in upstream's order: pair 0 (dims 0 and 2) by the patch's
/// row, pair 1 (dims 1 and 3) by its column, at frequency 1 (Qwen2-VL) or θ^(-1/2) = 0.01
/// (Pixtral's odd-indexed one); a third head of the row is copied. The heads run through a
/// GEMM of identity weight rows in paired order (as the towers store their QKV weights) that
/// turns them in its epilogue, or, forced, in a node after it; its output read back in
/// upstream's order must be the hand-turned row. A swapped axis, partner, sign or order fails.
#[test]
#[timeout(60_000)]
fn rotary_turn_in_paired_order_is_upstreams_rotate_half() {
    let positions: [u32; 4] = [3, 7, 11, 2];
    for (gpu, dispatches) in [(gpu(), 1), (forced_gpu("rope", "separate"), 2)] {
        for (frequencies, column) in [(RopeFrequencies::Axial, 1.0f64), (RopeFrequencies::Interleaved, 0.01)] {
            let rope = Rope2d { head_dim: 4, heads: 2, theta: 10000.0, frequencies };
            let order = rope.paired_rows(12);
            let identity: Vec<f32> =
                order.iter().flat_map(|&r| (0..12).map(move |c| f32::from(u8::from(c == r)))).collect();
            let mut g = Graph::new();
            let x = g.input("x", &[2, 12]).unwrap();
            let w = g.constant("w", &Tensor::from_f32(gpu, &[12, 12], &identity).unwrap());
            let table = Tensor::from_f32(gpu, &[2, 2, 2], &rope.table(&positions).unwrap()).unwrap();
            let t = g.constant("table", &table);
            let y = g.add(Epilogue::NONE.with_rotary(rope.pairs()), &[x, w, t]).unwrap();
            g.output(y).unwrap();
            // Both partners of every pair non-zero; head 2 copied; row 1 the same.
            let row: [f32; 12] = [1.0, 2.0, 3.0, -4.0, -1.0, 0.5, 2.0, -3.0, 5.0, 6.0, 7.0, 8.0];
            let plan = Plan::new(gpu, &g).unwrap();
            assert_eq!(plan.dispatches().len(), dispatches, "{:?}", plan.dispatches());
            let paired = plan.run_f32(&[&[row, row].concat()]).unwrap().remove(0);
            for (r, pos) in positions.chunks(2).enumerate() {
                let mut got = [0.0f32; 12];
                for (i, &source) in order.iter().enumerate() {
                    got[source] = paired[r * 12 + i];
                }
                // rotate_half: dim d < 2 pairs with d + 2; dim 0's pair turns by the row, dim 1's
                // by the column.
                let angles = [f64::from(pos[0]), column * f64::from(pos[1])];
                let mut want: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
                for head in 0..2 {
                    for d in 0..2 {
                        let (lo, hi) = (f64::from(row[4 * head + d]), f64::from(row[4 * head + d + 2]));
                        let (cos, sin) = (angles[d].cos(), angles[d].sin());
                        want[4 * head + d] = lo * cos - hi * sin;
                        want[4 * head + d + 2] = hi * cos + lo * sin;
                    }
                }
                let cmp = reference::compare(&got, &want, 1e-6, 1e-6);
                assert!(cmp.passed(), "{frequencies:?} row {r}, {dispatches} dispatches: {cmp}");
            }
        }
    }
}

#[test]
#[timeout(60_000)]
fn rotary_pairs_reject_what_they_cannot_turn() {
    let mut g = Graph::new();
    let x = g.input("x", &[5, 24]).unwrap();
    let table = |g: &mut Graph, name: &str, shape: &[usize]| g.input(name, shape).unwrap();
    let t4 = table(&mut g, "t4", &[5, 4, 2]);
    let op = |heads, head_dim| RotaryPairs { heads, head_dim };
    let e = g.add(op(1, 7), &[x, t4]).unwrap_err().to_string();
    assert!(e.contains("even"), "{e}");
    let e = g.add(op(4, 8), &[x, t4]).unwrap_err().to_string();
    assert!(e.contains("channels"), "{e}");
    let short = table(&mut g, "short", &[4, 4, 2]);
    let e = g.add(op(3, 8), &[x, short]).unwrap_err().to_string();
    assert!(e.contains("rotary table"), "{e}");
    let ints = g.input_as("ints", &[5, 4, 2], DType::U32).unwrap();
    let e = g.add(op(3, 8), &[x, ints]).unwrap_err().to_string();
    assert!(e.contains("f32"), "{e}");
    assert!(g.add(op(3, 8), &[x, t4]).is_ok());
    // In a GEMM: only after a bias (and an input norm); a GELU after it is refused.
    let w = g.input("w", &[24, 24]).unwrap();
    let gelu = Epilogue::bias_gelu(GeluForm::Erf).with_rotary(op(3, 8));
    let b = g.input("b", &[24]).unwrap();
    let e = g.add(gelu, &[x, w, b, t4]).unwrap_err().to_string();
    assert!(e.contains("rotary epilogue"), "{e}");
    assert!(g.add(Epilogue::BIAS.with_rotary(op(3, 8)), &[x, w, b, t4]).is_ok());
    let rope = |head_dim| Rope2d { head_dim, heads: 1, theta: 10000.0, frequencies: RopeFrequencies::Axial };
    let e = rope(6).table(&[0, 0]).unwrap_err().to_string();
    assert!(e.contains("multiple of 4"), "{e}");
}
