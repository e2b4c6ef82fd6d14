//! The fused sublayers (`attention_rows`, `mlp_rows`), forced on lavapipe (which splits them
//! by default): random cases against the f64 reference within their derived tolerance; the
//! Q-Former and the Perceiver fused and split agree, with the dispatches the fusion saves;
//! bad inputs are typed errors.

mod common;

use common::{forced_gpu, gpu, run_case};
use ntest::timeout;
use proptest::prelude::*;
use vlbridge::connectors::{ConnectorPlan, PerceiverConfig, PerceiverResampler, QFormer, QFormerConfig, StateDict};
use vlbridge::kernels::rows::{SMALL_HEAD_DIMS, attention_case, mlp_case};
use vlbridge::kernels::{CaseRng, CaseTarget};
use vlbridge::ops::{Attention, AttentionRows, GeluForm, MlpRows, RowsEpilogue};
use vlbridge::reference;
use vlbridge::weights::Weights;
use vlbridge::{DType, Error, Gpu, Graph, Tensor};

fn target(gpu: &Gpu) -> CaseTarget {
    CaseTarget { shader_f16: gpu.features().contains(vlbridge::wgpu::Features::SHADER_F16) }
}

proptest! {
    // Each case is a pipeline of its own: few cases keep the suite quick; `vlbridge fuzz`
    // runs thousands.
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Batch, heads, head dims 1-17, odd query and key counts, one or two sources, keep masks,
    /// output widths to 1024, every epilogue, f16 storage and weights.
    #[test]
    #[timeout(300_000)]
    fn fused_attention_sublayer_matches_reference(seed in any::<u64>()) {
        let gpu = gpu();
        let case = attention_case(&mut CaseRng::new(seed), &target(gpu), SMALL_HEAD_DIMS).unwrap();
        let cmp = run_case(gpu, &case).unwrap();
        prop_assert!(cmp.passed(), "{}: {cmp}", case.description);
    }

    /// Odd row, input, hidden and output widths, input norms, both GELUs, every epilogue.
    #[test]
    #[timeout(300_000)]
    fn fused_feed_forward_sublayer_matches_reference(seed in any::<u64>()) {
        let gpu = gpu();
        let case = mlp_case(&mut CaseRng::new(seed), &target(gpu)).unwrap();
        let cmp = run_case(gpu, &case).unwrap();
        prop_assert!(cmp.passed(), "{}: {cmp}", case.description);
    }
}

/// A checkpoint of `layout` with N(0, 0.5²) values (norm weights around 1).
fn random_checkpoint(layout: &StateDict, seed: u64) -> Weights {
    let mut rng = CaseRng::new(seed);
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = layout
        .tensors
        .iter()
        .map(|(name, shape)| {
            let n = shape.iter().product();
            let norm_weight = name.contains("norm") && name.ends_with("weight") || name.contains("LayerNorm.weight");
            let values: Vec<f32> = rng.normals(n, 0.5).iter().map(|v| if norm_weight { 1.0 + v } else { *v }).collect();
            (name.clone(), shape.clone(), bytemuck::cast_slice(&values).to_vec())
        })
        .collect();
    let views = data.iter().map(|(n, shape, bytes)| {
        (n.as_str(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes).unwrap())
    });
    Weights::from_bytes(safetensors::serialize(views, None).unwrap(), "random checkpoint").unwrap()
}

/// Runs a connector's fused plan (forced) and its split one on the same features: both match
/// the graph's f64 reference, and the fused one takes `dispatches` = (fused, split).
fn fused_and_split_agree(plans: [ConnectorPlan; 2], dispatches: (usize, usize), seed: u64) {
    let [fused, split] = plans;
    let n: usize = fused.input_shape().iter().product();
    let features = CaseRng::new(seed).normals(n, 1.0);
    let want = fused.project_reference(&features).unwrap();
    for (label, plan) in [("fused", &fused), ("split", &split)] {
        let got = plan.project(&features).unwrap();
        let cmp = reference::compare(&got, &want, 5e-5, 1e-4);
        assert!(cmp.passed(), "{label} vs reference: {cmp}");
    }
    assert_eq!((fused.plan().dispatches().len(), split.plan().dispatches().len()), dispatches);
    assert!(fused.plan().dispatches().contains(&"attention_rows"));
    assert!(!split.plan().dispatches().iter().any(|d| d.ends_with("_rows")));
}

#[test]
#[timeout(300_000)]
fn a_qformer_fused_and_split_agree_with_the_dispatches_saved() {
    // 11 queries (not a multiple of 8), heads of 12, 3 layers with cross-attention in 0 and 2.
    let config = QFormerConfig {
        num_attention_heads: 4,
        hidden_size: 48,
        num_hidden_layers: 3,
        intermediate_size: 80,
        encoder_hidden_size: 40,
        num_query_tokens: 11,
        ..QFormerConfig::default()
    };
    let weights = random_checkpoint(&QFormer::state_dict(&config), 7);
    let gpu = gpu();
    let model = QFormer::from_weights(gpu, &weights, config).unwrap();
    let split = model.graph(2, 9).unwrap().0.with_sublayers_split().unwrap();
    let plans = [model.plan(gpu, 2, 9).unwrap(), ConnectorPlan::new(gpu, split, model.output_names()).unwrap()];
    // K/V GEMM and the batch repeat, then per layer q/k/v, attention sublayer and FFN (3 × 3)
    // and per cross layer q and attention sublayer (2 × 2); split: 3 × 7 and 2 × 4.
    fused_and_split_agree(plans, (2 + 9 + 4, 2 + 21 + 8), 11);
    // Forcing the split (lavapipe's own choice) plans the same graph split.
    let split = forced_gpu("sublayers", "split");
    let model = QFormer::from_weights(split, &weights, config).unwrap();
    assert_eq!(model.plan(split, 2, 9).unwrap().plan().dispatches().len(), 31);
}

#[test]
#[timeout(300_000)]
fn a_perceiver_fused_and_split_agree_with_the_dispatches_saved() {
    let config = PerceiverConfig {
        heads: 2,
        dim: 40,
        depth: 2,
        dim_head: 12,
        num_latents: 9,
        ff_mult: 2,
        ..PerceiverConfig::default()
    };
    let weights = random_checkpoint(&PerceiverResampler::state_dict(&config, ""), 8);
    let gpu = gpu();
    let model = PerceiverResampler::from_weights(gpu, &weights, config).unwrap();
    let split = model.graph(2, 7).unwrap().0.with_sublayers_split().unwrap();
    let plans = [model.plan(gpu, 2, 7).unwrap(), ConnectorPlan::new(gpu, split, &["latents"]).unwrap()];
    // Media K/V and the repeat, then per layer to_qkv, attention sublayer and FFN (the last
    // with the final norm); split: to_qkv, attention, to_out, two GEMMs, and the final norm.
    fused_and_split_agree(plans, (2 + 2 * 3, 2 + 2 * 5 + 1), 12);
}

fn param(gpu: &Gpu, g: &mut Graph, name: &str, shape: &[usize], dtype: DType) -> vlbridge::TensorId {
    let n = shape.iter().product();
    g.constant(name, &Tensor::from_f32_as(gpu, shape, &vec![0.25; n], dtype).unwrap())
}

#[test]
#[timeout(60_000)]
fn fused_sublayers_refuse_bad_inputs_by_name() {
    let gpu = gpu();
    let mut g = Graph::new();
    let q = g.input("q", &[1, 5, 16]).unwrap();
    let kv = g.input("kv", &[1, 6, 32]).unwrap();
    let attention = Attention::new(2, 8).offsets(0, 0, 16);
    let op = AttentionRows { attention, epilogue: RowsEpilogue { bias: false, skip: false, post_norm: None } };
    // Wider than a workgroup's rows.
    let wide = param(gpu, &mut g, "w_wide", &[1025, 16], DType::F32);
    let err = g.add(op, &[q, kv, wide]).unwrap_err();
    assert!(matches!(&err, Error::Limit { limit, requested: 1025, .. } if limit.contains("output width")), "{err}");
    // w_out's input width is not the attention's.
    let narrow = param(gpu, &mut g, "w_narrow", &[8, 15], DType::F32);
    let err = g.add(op, &[q, kv, narrow]).unwrap_err();
    assert!(matches!(&err, Error::Shape { what, .. } if what.contains("w_out")), "{err}");
    // A residual of the wrong shape.
    let w = param(gpu, &mut g, "w", &[8, 16], DType::F32);
    let skip = g.input("skip", &[1, 5, 9]).unwrap();
    let with_skip = AttentionRows { epilogue: RowsEpilogue::residual(false), ..op };
    let err = g.add(with_skip, &[q, kv, w, skip]).unwrap_err();
    assert!(matches!(&err, Error::Shape { what, .. } if what.contains("skip")), "{err}");
    // Two weights of different storage.
    let x = g.input("x", &[3, 16]).unwrap();
    let w_in = param(gpu, &mut g, "w_in", &[20, 16], DType::F32);
    let w_out = param(gpu, &mut g, "w_out", &[16, 20], DType::BF16);
    let mlp = MlpRows {
        in_bias: false,
        activation: Some(GeluForm::Erf),
        input_norm: None,
        epilogue: RowsEpilogue { bias: false, skip: false, post_norm: None },
    };
    let err = g.add(mlp, &[x, w_in, w_out]).unwrap_err();
    assert!(matches!(&err, Error::DType { what, .. } if what.contains("w_out")), "{err}");
    // Both bf16, it runs.
    let mut g = Graph::new();
    let x = g.input("x", &[3, 16]).unwrap();
    let w_in = param(gpu, &mut g, "w_in", &[20, 16], DType::BF16);
    let w_out = param(gpu, &mut g, "w_out", &[16, 20], DType::BF16);
    let y = g.add(mlp, &[x, w_in, w_out]).unwrap();
    g.output(y).unwrap();
    let x: Vec<f32> = (0..48).map(|i| (i as f32 * 0.37).sin()).collect();
    let got = vlbridge::Plan::new(gpu, &g).unwrap().run_f32(&[&x]).unwrap().remove(0);
    let want = g.reference(&[x[..].into()]).unwrap().remove(0);
    let cmp = reference::compare(&got, &want, 1e-5, 1e-5);
    assert!(cmp.passed(), "{cmp}");
}
