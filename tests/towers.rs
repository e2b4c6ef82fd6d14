//! The tower kernels against their f64 references on random shapes: the patch embedding
//! (odd image sides, patches that do not divide them, every flag and weight dtype), the token
//! copies (layers side by side, class token dropped, slices, rows, flatten), and the key-padding
//! attention mask composed from first principles (a padded key changes nothing it should not).

mod common;

use common::{edge_size, gpu, run_case, to_f64, values};
use ntest::timeout;
use proptest::prelude::*;
use vlbridge::kernels::{CaseRng, CaseTarget, FAMILIES};
use vlbridge::ops::{Attention, Concat, PatchEmbed, Rope2d, RopeFrequencies};
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
    fn rope2d_cases_match_reference(seed in any::<u64>()) {
        fuzz_case("rope2d", seed)?;
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

/// One head of 4 dims turned by hand: pair 0 (dims 0 and 2) by the patch's row, pair 1 (dims 1
/// and 3) by its column, at frequency 1 (Qwen2-VL) or θ^(-1/2) = 0.01 (Pixtral's odd-indexed
/// one); a third head of the row is copied. A swapped axis, partner or sign fails.
#[test]
#[timeout(60_000)]
fn rope2d_turns_each_pair_by_its_axis_and_frequency() {
    let gpu = gpu();
    let positions: [u32; 4] = [3, 7, 11, 2];
    for (frequencies, column) in [(RopeFrequencies::Axial, 1.0f64), (RopeFrequencies::Interleaved, 0.01)] {
        let op = Rope2d { head_dim: 4, heads: 2, theta: 10000.0, frequencies };
        let mut g = Graph::new();
        let x = g.input("x", &[2, 12]).unwrap();
        let p = g.constant("positions", &Tensor::from_data(gpu, &[2, 2], DType::U32, (&positions[..]).into()).unwrap());
        let y = g.add(op, &[x, p]).unwrap();
        g.output(y).unwrap();
        // Row 0: head 0 = e0, head 1 = e1, head 2 copied; row 1 the same.
        let row: [f32; 12] = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 5.0, 6.0, 7.0, 8.0];
        let data = [row, row].concat();
        let got = Plan::new(gpu, &g).unwrap().run_f32(&[&data]).unwrap().remove(0);
        for (r, pos) in positions.chunks(2).enumerate() {
            let (a_row, a_col) = (f64::from(pos[0]), column * f64::from(pos[1]));
            let want = [a_row.cos(), 0.0, a_row.sin(), 0.0, 0.0, a_col.cos(), 0.0, a_col.sin(), 5.0, 6.0, 7.0, 8.0];
            let cmp = reference::compare(&got[r * 12..(r + 1) * 12], &want, 1e-5, 1e-5);
            assert!(cmp.passed(), "{frequencies:?} row {r}: {cmp}");
        }
    }
}

#[test]
#[timeout(60_000)]
fn rope2d_rejects_what_it_cannot_turn() {
    let mut g = Graph::new();
    let x = g.input("x", &[5, 24]).unwrap();
    let p = g.input_as("positions", &[5, 2], DType::U32).unwrap();
    let op = |head_dim, heads| Rope2d { head_dim, heads, theta: 10000.0, frequencies: RopeFrequencies::Axial };
    let e = g.add(op(6, 1), &[x, p]).unwrap_err().to_string();
    assert!(e.contains("multiple of 4"), "{e}");
    let e = g.add(op(8, 4), &[x, p]).unwrap_err().to_string();
    assert!(e.contains("channels"), "{e}");
    let wrong = g.input_as("rows", &[4, 2], DType::U32).unwrap();
    let e = g.add(op(8, 3), &[x, wrong]).unwrap_err().to_string();
    assert!(e.contains("positions"), "{e}");
    let floats = g.input("float_positions", &[5, 2]).unwrap();
    let e = g.add(op(8, 3), &[x, floats]).unwrap_err().to_string();
    assert!(e.contains("u32"), "{e}");
}
