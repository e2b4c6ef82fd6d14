//! LayerNorm and the residual and tanh-gated GEMM epilogues against the f64 reference on
//! random shapes and values, and the gated cross-attention's gates changed without a replan.

mod common;

use common::{edge_size, gpu, minimal_gpu, to_f64, values};
use ntest::timeout;
use proptest::prelude::*;
use vlbridge::ops::{Epilogue, GeluForm, LayerNorm, Residual};
use vlbridge::reference;
use vlbridge::{Graph, Plan};

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    #[timeout(300_000)]
    fn layer_norm_matches_reference(
        (rows, dim, offset, x, w, b, eps) in (edge_size(40), edge_size(300), prop::sample::select(vec![0.0f32, 100.0]),
            prop::sample::select(vec![1e-12f32, 1e-5]))
            .prop_flat_map(|(rows, dim, offset, eps)| (Just(rows), Just(dim), Just(offset), values(rows * dim, 1.0),
                values(dim, 1.5), values(dim, 0.5), Just(eps)))
    ) {
        // A large common offset per row checks the two-pass variance (one pass loses it).
        let x: Vec<f32> = x.iter().map(|v| v + offset).collect();
        let gpu = gpu();
        let mut g = Graph::new();
        let input = g.input("x", &[rows, dim]).unwrap();
        let weight = g.constant("w", &vlbridge::Tensor::from_f32(gpu, &[dim], &w).unwrap());
        let bias = g.constant("b", &vlbridge::Tensor::from_f32(gpu, &[dim], &b).unwrap());
        let y = g.add(LayerNorm::new(eps), &[input, weight, bias]).unwrap();
        g.output(y).unwrap();
        let got = Plan::new(gpu, &g).unwrap().run_f32(&[&x]).unwrap().remove(0);
        let want = reference::layer_norm(&to_f64(&x), &to_f64(&w), &to_f64(&b), dim, f64::from(eps));
        // f32 loses one ulp of the row's largest |x| in x - mean, as PyTorch's f32 LayerNorm
        // does: relative to the row's standard deviation that is large when a big common offset
        // sits on a small spread. A wrong index or a one-pass variance is off by far more.
        let cancellation: Vec<f64> = to_f64(&x)
            .chunks(dim)
            .map(|row| {
                let mean = row.iter().sum::<f64>() / dim as f64;
                let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / dim as f64;
                4e-7 * row.iter().fold(0.0f64, |m, v| m.max(v.abs())) / (var + f64::from(eps)).sqrt()
            })
            .collect();
        let cmp = reference::compare_with(&got, &want, 2e-5, 1e-4, |i| f64::from(w[i % dim].abs()) * cancellation[i / dim]);
        prop_assert!(cmp.passed(), "{rows}x{dim} offset {offset}: {cmp}");
    }

    #[test]
    #[timeout(300_000)]
    fn residual_epilogues_match_the_composed_reference(
        (m, n, k, bias, act, residual, gate, data) in (edge_size(40), edge_size(300), edge_size(96), any::<bool>(),
            prop::sample::select(GeluForm::OR_NONE.to_vec()),
            prop::sample::select(vec![Residual::Add, Residual::Gated, Residual::Scaled]),
            prop::sample::select(vec![0.0f32, 0.3, -0.7, 25.0]))
            .prop_flat_map(|(m, n, k, bias, act, residual, gate)| {
                let data = (values(m * k, 1.0), values(n * k, 1.7 / (k as f32).sqrt()), values(n, 0.5),
                    values(m * n, 2.0), values(n, 1.5));
                (Just(m), Just(n), Just(k), Just(bias), Just(act), Just(residual), Just(gate), data)
            }),
        portable in any::<bool>(),
    ) {
        let (x, w, b, r, lambda) = data;
        let gpu = if portable { minimal_gpu() } else { gpu() };
        let plain = Epilogue { bias, activation: act, ..Epilogue::NONE };
        // Fused: one GEMM. Unfused: the GEMM, then the residual composed on the host.
        let build = |epilogue: Epilogue| {
            let mut g = Graph::new();
            let xi = g.input("x", &[m, k]).unwrap();
            let ri = g.input("residual", &[m, n]).unwrap();
            let mut inputs = vec![xi, g.constant("w", &vlbridge::Tensor::from_f32(gpu, &[n, k], &w).unwrap())];
            if bias {
                inputs.push(g.constant("b", &vlbridge::Tensor::from_f32(gpu, &[n], &b).unwrap()));
            }
            if epilogue.residual != Residual::None {
                inputs.push(ri);
            }
            match epilogue.residual {
                Residual::Gated => inputs.push(g.constant("gate", &vlbridge::Tensor::from_f32(gpu, &[1], &[gate]).unwrap())),
                Residual::Scaled => inputs.push(g.constant("lambda", &vlbridge::Tensor::from_f32(gpu, &[n], &lambda).unwrap())),
                _ => {}
            }
            let y = g.add(epilogue, &inputs).unwrap();
            g.output(y).unwrap();
            Plan::new(gpu, &g).unwrap().run_f32(&[&x, &r]).unwrap().remove(0)
        };
        let fused = build(plain.with_residual(residual));
        let unfused = build(plain);
        // The factor on column j: 1, tanh(gate) or λ_j.
        let factor = |j: usize| match residual {
            Residual::Gated => f64::from(gate).tanh(),
            Residual::Scaled => f64::from(lambda[j]),
            _ => 1.0,
        };
        let composed: Vec<f64> =
            unfused.iter().zip(&r).enumerate().map(|(i, (&v, &r))| f64::from(r) + factor(i % n) * f64::from(v)).collect();
        let mut want = reference::linear(&to_f64(&x), &to_f64(&w), bias.then_some(&to_f64(&b)[..]), m, n, k);
        match residual {
            Residual::Scaled => {
                want.iter_mut().for_each(|v| *v = act.map_or(*v, |form| reference::gelu(form, *v)));
                reference::layer_scale(&mut want, &to_f64(&r), &to_f64(&lambda));
            }
            _ => reference::epilogue(&mut want, act, Some(&to_f64(&r)), (residual == Residual::Gated).then_some(f64::from(gate))),
        }
        let atol = 2e-6 * (k as f64).sqrt() * 1.5 + 2e-5;
        let cmp = reference::compare(&fused, &want, atol, 1e-4);
        prop_assert!(cmp.passed(), "{residual:?} fused vs reference: {cmp}");
        let cmp = reference::compare(&fused, &composed, atol, 1e-4);
        prop_assert!(cmp.passed(), "{residual:?} fused vs composed unfused: {cmp}");
        if residual == Residual::Gated && gate == 0.0 {
            prop_assert_eq!(&fused, &r, "a zero gate must be an exact identity");
        }
    }
}

#[test]
#[timeout(120_000)]
fn gates_change_without_a_replan_and_zero_is_an_exact_identity() {
    use vlbridge::connectors::{GatedXAttnBlock, GatedXAttnConfig};
    let gpu = gpu();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gated_xattn.safetensors");
    let weights = vlbridge::weights::Weights::open(path).unwrap();
    let config = GatedXAttnConfig { heads: 4, ..GatedXAttnConfig::default() };
    let block =
        GatedXAttnBlock::from_weights(gpu, &weights, "lang_encoder.gated_cross_attn_layers.0.", config).unwrap();
    let plan = block.plan(gpu, 2, 19, 2, 8).unwrap();
    let x = weights.f32("x", None).unwrap();
    let media = weights.f32("media", None).unwrap();
    let locations: Vec<u8> = weights.i64("media_locations").unwrap().into_iter().map(|v| v as u8).collect();
    let want = to_f64(&weights.f32("y", None).unwrap());
    let inputs = block.inputs([2, 19, 2, 8], &x, &media, &locations).unwrap();
    let run = || plan.run(&inputs).unwrap().remove("hidden_states").unwrap().data.into_f32();
    let cmp = reference::compare(&run(), &want, 1e-4, 1e-4);
    assert!(cmp.passed(), "upstream gates: {cmp}");
    block.set_gates(0.0, 0.0).unwrap();
    assert_eq!(run(), x, "zero gates must return x bit for bit");
    block.set_gates(0.3, -0.7).unwrap();
    let cmp = reference::compare(&run(), &want, 1e-4, 1e-4);
    assert!(cmp.passed(), "gates restored: {cmp}");
}
