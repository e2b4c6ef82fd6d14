//! Bad input returns a typed error naming the problem: never a panic, never a device error.

mod common;

use common::gpu;
use ntest::timeout;
use vlbridge::connectors::{
    GatedXAttnBlock, GatedXAttnConfig, LlavaProjector, PerceiverConfig, PerceiverResampler, QFormer, QFormerConfig,
};
use vlbridge::ops::{Attention, AvgPool, BilinearHalf, Epilogue, GeluForm, LayerNorm, MaskedRows, Residual, SplitPass};
use vlbridge::weights::Weights;
use vlbridge::{DType, Error, Graph, Plan, Tensor};

fn f32_tensor(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_f32(gpu(), shape, &vec![0.5; n]).unwrap()
}

/// A safetensors file holding the named f32 tensors (zeros) of the given shapes.
fn checkpoint(tensors: &[(&str, Vec<usize>)]) -> Weights {
    let data: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(name, shape)| (name.to_string(), vec![0u8; shape.iter().product::<usize>() * 4], shape.clone()))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = data
        .iter()
        .map(|(n, bytes, shape)| {
            (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes).unwrap())
        })
        .collect();
    Weights::from_bytes(safetensors::serialize(views, None).unwrap(), "test checkpoint").unwrap()
}

fn projector_names(v: usize, h: usize, t: usize) -> Vec<(&'static str, Vec<usize>)> {
    vec![
        ("multi_modal_projector.linear_1.weight", vec![h, v]),
        ("multi_modal_projector.linear_1.bias", vec![h]),
        ("multi_modal_projector.linear_2.weight", vec![t, h]),
        ("multi_modal_projector.linear_2.bias", vec![t]),
    ]
}

#[test]
#[timeout(60_000)]
fn mismatched_inner_dimension_is_a_shape_error() {
    let mut g = Graph::new();
    let x = g.input("x", &[3, 8]).unwrap();
    let w = g.constant("w", &f32_tensor(&[4, 9]));
    let b = g.constant("b", &f32_tensor(&[4]));
    match g.add(Epilogue::BIAS, &[x, w, b]) {
        Err(Error::Shape { kernel: "linear", what, expected, got }) => {
            assert!(what.contains("in-features"), "{what}");
            assert_eq!((expected.as_str(), got.as_str()), ("8", "9"));
        }
        other => panic!("expected a shape error, got {other:?}"),
    }
}

#[test]
#[timeout(60_000)]
fn wrong_bias_length_is_a_shape_error() {
    let mut g = Graph::new();
    let x = g.input("x", &[3, 8]).unwrap();
    let w = g.constant("w", &f32_tensor(&[4, 8]));
    let b = g.constant("b", &f32_tensor(&[5]));
    assert!(
        matches!(g.add(Epilogue::bias_gelu(GeluForm::Erf), &[x, w, b]), Err(Error::Shape { what, .. }) if what.contains("bias"))
    );
}

#[test]
#[timeout(60_000)]
fn zero_size_dimensions_are_rejected() {
    let mut g = Graph::new();
    assert!(matches!(g.input("x", &[0, 8]), Err(Error::Shape { .. })));
    assert!(matches!(Tensor::zeros(gpu(), &[4, 0], DType::F32), Err(Error::Shape { .. })));
    assert!(matches!(Tensor::zeros(gpu(), &[], DType::F32), Err(Error::Shape { .. })));
}

#[test]
#[timeout(60_000)]
fn mixed_or_bf16_activations_and_non_f32_parameters_are_dtype_errors() {
    // Activations are f32 or f16, one type per node; parameters (bias, norm weights, masks)
    // are f32; GEMM weights may be f32, f16 or bf16.
    let gpu = gpu();
    let mut g = Graph::new();
    let x16 = g.input_as("x16", &[2, 4], DType::F16).unwrap();
    let x32 = g.input("x32", &[2, 4]).unwrap();
    let w = g.constant("w", &Tensor::from_f32(gpu, &[3, 4], &[0.5; 12]).unwrap());
    let w16 = g.constant("w16", &Tensor::from_f16(gpu, &[3, 4], &[half::f16::ONE; 12]).unwrap());
    let wbf = g.constant("wbf", &Tensor::from_bf16(gpu, &[3, 4], &[half::bf16::ONE; 12]).unwrap());
    for (x, w) in [(x16, w), (x16, w16), (x16, wbf), (x32, w16), (x32, wbf)] {
        assert!(g.add(Epilogue::NONE, &[x, w]).is_ok(), "every activation × weight dtype");
    }
    let y16 = g.add(Epilogue::NONE, &[x16, w]).unwrap();
    let y32 = g.add(Epilogue::NONE, &[x32, w]).unwrap();
    // A residual in another type than x.
    let add = Epilogue::NONE.with_residual(Residual::Add);
    match g.add(add, &[x16, w, y32]) {
        Err(Error::DType { what, expected, got, .. }) => {
            assert!(what.contains("input 2"), "{what}");
            assert_eq!((expected.as_str(), got.as_str()), ("f16", "f32"));
        }
        other => panic!("expected a dtype error, got {other:?}"),
    }
    assert!(g.add(add, &[x16, w, y16]).is_ok());
    // bf16 is a weight format, not an activation type.
    let xbf = g.input_as("xbf", &[2, 4], DType::BF16).unwrap();
    match g.add(GeluForm::Erf, &[xbf]) {
        Err(Error::DType { what, got, .. }) => assert!(what.contains("bf16") && got == "bf16", "{what}"),
        other => panic!("expected a dtype error, got {other:?}"),
    }
    // LayerNorm parameters must be f32 even when x is f16.
    let ln16 = g.constant("ln16", &Tensor::from_f16(gpu, &[4], &[half::f16::ONE; 4]).unwrap());
    let ln = g.constant("ln", &Tensor::from_f32(gpu, &[4], &[1.0; 4]).unwrap());
    assert!(matches!(g.add(LayerNorm::new(1e-5), &[x16, ln16, ln]), Err(Error::DType { .. })));
    assert!(g.add(LayerNorm::new(1e-5), &[x16, ln, ln]).is_ok());
}

#[test]
#[timeout(60_000)]
fn missing_weight_is_named() {
    let mut names = projector_names(8, 16, 4);
    names.remove(3);
    let err = LlavaProjector::from_weights(gpu(), &checkpoint(&names), GeluForm::Erf).unwrap_err();
    match err {
        Error::Weights { name, problem } => {
            assert_eq!(name, "multi_modal_projector.linear_2.bias");
            assert!(problem.contains("not found"), "{problem}");
        }
        other => panic!("expected a weights error, got {other:?}"),
    }
}

#[test]
#[timeout(60_000)]
fn weight_of_wrong_shape_is_named() {
    let mut names = projector_names(8, 16, 4);
    names[2].1 = vec![4, 15];
    let err = LlavaProjector::from_weights(gpu(), &checkpoint(&names), GeluForm::Erf).unwrap_err();
    assert!(matches!(&err, Error::Weights { name, .. } if name == "multi_modal_projector.linear_2.weight"), "{err}");
    let mut names = projector_names(8, 16, 4);
    names[1].1 = vec![17];
    let err = LlavaProjector::from_weights(gpu(), &checkpoint(&names), GeluForm::Erf).unwrap_err();
    assert!(matches!(&err, Error::Weights { name, .. } if name == "multi_modal_projector.linear_1.bias"), "{err}");
}

#[test]
#[timeout(60_000)]
fn original_llava_names_load() {
    let names: Vec<(&str, Vec<usize>)> = vec![
        ("model.mm_projector.0.weight", vec![16, 8]),
        ("model.mm_projector.0.bias", vec![16]),
        ("model.mm_projector.2.weight", vec![4, 16]),
        ("model.mm_projector.2.bias", vec![4]),
    ];
    let p = LlavaProjector::from_weights(gpu(), &checkpoint(&names), GeluForm::Tanh).unwrap();
    assert_eq!(p.dims(), [8, 16, 4]);
}

#[test]
#[timeout(60_000)]
fn non_float_weight_dtype_is_rejected() {
    let bytes = vec![0u8; 16 * 8];
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![16], &bytes).unwrap();
    let w = Weights::from_bytes(safetensors::serialize([("a", view)], None).unwrap(), "ints").unwrap();
    assert!(matches!(w.f32("a", None), Err(Error::Weights { problem, .. }) if problem.contains("I64")));
}

#[test]
#[timeout(60_000)]
fn unknown_activation_is_rejected() {
    assert!(
        matches!(LlavaProjector::activation("relu"), Err(Error::Config { field, .. }) if field == "projector_hidden_act")
    );
    assert_eq!(LlavaProjector::activation("gelu_pytorch_tanh").unwrap(), GeluForm::Tanh);
}

#[test]
#[timeout(60_000)]
fn tensors_over_the_device_limits_are_refused_before_allocation() {
    let gpu = gpu();
    let limits = gpu.limits();
    // One element more than the largest buffer.
    match Tensor::zeros(gpu, &[(limits.max_buffer_size / 4 + 1) as usize], DType::F32) {
        Err(Error::Limit { limit, requested, max, .. }) => {
            assert!(requested > max, "{limit}: {requested} <= {max}");
        }
        other => panic!("expected a limit error, got {other:?}"),
    }
    // One element more than the largest storage binding: an activation cannot be split.
    let elements = (limits.max_storage_buffer_binding_size / 4 + 1) as usize;
    let mut g = Graph::new();
    let x = g.input("x", &[elements]).unwrap();
    let y = g.add(GeluForm::Erf, &[x]).unwrap();
    g.output(y).unwrap();
    assert!(matches!(Plan::new(gpu, &g), Err(Error::Limit { .. })));
}

#[test]
#[timeout(60_000)]
fn wrong_input_length_at_run_time_is_a_shape_error() {
    let gpu = gpu();
    let mut g = Graph::new();
    let x = g.input("x", &[10]).unwrap();
    let y = g.add(GeluForm::Erf, &[x]).unwrap();
    g.output(y).unwrap();
    let plan = Plan::new(gpu, &g).unwrap();
    assert!(matches!(plan.run_f32(&[&[0.0; 9]]), Err(Error::Shape { .. })));
    assert!(matches!(plan.run(&[]), Err(Error::Shape { .. })));
    assert!(plan.run_f32(&[&[0.0; 10]]).is_ok());
    // Data of the wrong type for the input is a dtype error.
    assert!(matches!(plan.run(&[(&[0u32; 10][..]).into()]), Err(Error::DType { .. })));
}

#[test]
#[timeout(60_000)]
fn graph_without_outputs_is_refused() {
    let mut g = Graph::new();
    let x = g.input("x", &[4]).unwrap();
    g.add(GeluForm::Erf, &[x]).unwrap();
    assert!(matches!(Plan::new(gpu(), &g), Err(Error::Graph(_))));
    assert!(matches!(g.output(x), Err(Error::Graph(_))));
}

fn golden(name: &str) -> Weights {
    Weights::open(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)).unwrap()
}

/// `weights` re-serialised without tensor `drop`.
fn without(weights: &Weights, drop: &str) -> Weights {
    let kept: Vec<(String, Vec<usize>, Vec<u8>)> = weights
        .names()
        .unwrap()
        .into_iter()
        .filter(|n| n != drop && weights.f32(n, None).is_ok())
        .map(|n| {
            let bytes = bytemuck::cast_slice(&weights.f32(&n, None).unwrap()).to_vec();
            (n.clone(), weights.shape(&n).unwrap(), bytes)
        })
        .collect();
    let views = kept.iter().map(|(n, shape, bytes)| {
        (n.as_str(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes).unwrap())
    });
    Weights::from_bytes(safetensors::serialize(views, None).unwrap(), "edited checkpoint").unwrap()
}

#[test]
#[timeout(60_000)]
fn missing_norm_media_weight_is_named() {
    let weights = without(&golden("perceiver_resampler.safetensors"), "perceiver.layers.1.0.norm_media.weight");
    let config = PerceiverConfig { heads: 4, ..PerceiverConfig::default() };
    match PerceiverResampler::from_weights(gpu(), &weights, config) {
        Err(Error::Weights { name, .. }) => assert_eq!(name, "perceiver.layers.1.0.norm_media.weight"),
        other => panic!("expected a weights error, got {:?}", other.map(|_| ())),
    }
}

#[test]
#[timeout(60_000)]
fn heads_that_do_not_divide_the_width_are_refused() {
    // Inner width 64 over 3 heads.
    let weights = golden("perceiver_resampler.safetensors");
    let config = PerceiverConfig { heads: 3, ..PerceiverConfig::default() };
    let err = PerceiverResampler::from_weights(gpu(), &weights, config).map(|_| ()).unwrap_err();
    assert!(matches!(&err, Error::Shape { what, .. } if what.contains("heads")), "{err}");
    let weights = golden("qformer.safetensors");
    let config = QFormerConfig { num_attention_heads: 5, ..QFormerConfig::default() };
    let err = QFormer::from_weights(gpu(), &weights, config).map(|_| ()).unwrap_err();
    assert!(matches!(&err, Error::Shape { what, .. } if what.contains("heads")), "{err}");
    // At the op level: a head dimension over the kernels' register budget.
    let mut g = Graph::new();
    let q = g.input("q", &[1, 4, 129]).unwrap();
    let kv = g.input("kv", &[1, 4, 258]).unwrap();
    let err = g.add(Attention::new(1, 129), &[q, kv]).unwrap_err();
    assert!(matches!(&err, Error::Shape { what, .. } if what == "head_dim"), "{err}");
}

#[test]
#[timeout(60_000)]
fn attention_inputs_must_agree() {
    let mut g = Graph::new();
    let q = g.input("q", &[2, 5, 32]).unwrap();
    let kv_other_batch = g.input("kv", &[3, 7, 64]).unwrap();
    let err = g.add(Attention::new(2, 16), &[q, kv_other_batch]).unwrap_err();
    assert!(matches!(&err, Error::Shape { what, .. } if what.contains("batch")), "{err}");
    // Keys and values need heads·head_dim columns past their offsets.
    let kv_narrow = g.input("kv", &[2, 7, 48]).unwrap();
    let err = g.add(Attention::new(2, 16), &[q, kv_narrow]).unwrap_err();
    assert!(matches!(&err, Error::Shape { what, .. } if what.contains("row width")), "{err}");
    // A mask must be [batch, queries, keys].
    let kv = g.input("kv", &[2, 7, 64]).unwrap();
    let mask = g.input_as("mask", &[2, 5, 6], DType::U8).unwrap();
    let masked = Attention::new(2, 16).masked(MaskedRows::Uniform);
    let err = g.add(masked, &[q, kv, mask]).unwrap_err();
    assert!(matches!(&err, Error::Shape { what, .. } if what.contains("mask")), "{err}");
    // A keep mask is an integer tensor: f32 is a dtype error.
    let float_mask = g.input("mask", &[2, 5, 7]).unwrap();
    let err = g.add(masked, &[q, kv, float_mask]).unwrap_err();
    assert!(matches!(&err, Error::DType { expected, .. } if expected == "u8"), "{err}");
}

#[test]
#[timeout(60_000)]
fn key_split_chunks_and_partials_are_checked() {
    let mut g = Graph::new();
    let q = g.input("q", &[2, 5, 32]).unwrap();
    let kv = g.input("kv", &[2, 7, 64]).unwrap();
    let cfg = Attention::new(2, 16);
    // Chunks: 1..=keys.
    for chunks in [0, 8] {
        let err = g.add(cfg.key_split(chunks, SplitPass::Partials), &[q, kv]).unwrap_err();
        assert!(
            matches!(&err, Error::Shape { what, expected, .. } if what == "key chunks" && expected == "1..=7"),
            "{err}"
        );
    }
    let partials = g.add(cfg.key_split(3, SplitPass::Partials), &[q, kv]).unwrap();
    assert_eq!(g.meta(partials).unwrap().shape, [2, 2, 5, 3, 19]);
    assert_eq!(g.meta(partials).unwrap().dtype, DType::F32);
    // The combine pass must be told the same chunks and queries as the partials it merges.
    let err = g.add(cfg.key_split(4, SplitPass::Combine), &[partials, q]).unwrap_err();
    assert!(matches!(&err, Error::Shape { what, .. } if what.contains("partials")), "{err}");
    let other_q = g.input("q2", &[2, 6, 32]).unwrap();
    let err = g.add(cfg.key_split(3, SplitPass::Combine), &[partials, other_q]).unwrap_err();
    assert!(matches!(&err, Error::Shape { what, .. } if what.contains("partials")), "{err}");
    // Partials are f32 whatever the activations.
    let f16_partials = g.input_as("p", &[2, 2, 5, 3, 19], DType::F16).unwrap();
    let err = g.add(cfg.key_split(3, SplitPass::Combine), &[f16_partials, q]).unwrap_err();
    assert!(matches!(&err, Error::DType { expected, .. } if expected == "f32"), "{err}");
    let out = g.add(cfg.key_split(3, SplitPass::Combine), &[partials, q]).unwrap();
    assert_eq!(g.meta(out).unwrap().shape, [2, 5, 32]);
}

#[test]
#[timeout(60_000)]
fn media_locations_of_the_wrong_length_are_refused() {
    let weights = golden("gated_xattn.safetensors");
    let config = GatedXAttnConfig { heads: 4, ..GatedXAttnConfig::default() };
    let block =
        GatedXAttnBlock::from_weights(gpu(), &weights, "lang_encoder.gated_cross_attn_layers.0.", config).unwrap();
    let plan = block.plan(gpu(), 2, 19, 2, 8).unwrap();
    let (x, media) = (vec![0.1; 2 * 19 * 64], vec![0.1; 2 * 16 * 48]);
    let dims = [2, 19, 2, 8];
    let err = block.inputs(dims, &x, &media, &[0; 37]).unwrap_err();
    assert!(matches!(&err, Error::Shape { what, .. } if what.contains("media_locations")), "{err}");
    // Three media tokens in a row, for two media items.
    let mut locations = vec![0u8; 2 * 19];
    locations[..3].fill(1);
    let err = block.inputs(dims, &x, &media, &locations).unwrap_err();
    assert!(matches!(&err, Error::Shape { what, .. } if what.contains("media tokens")), "{err}");
    // The wrong feature width for x is caught before any GPU work.
    assert!(matches!(block.inputs(dims, &x[1..], &media, &[0; 38]), Err(Error::Shape { .. })));
    // And a plan given inputs of another shape names the input.
    let mut inputs = block.inputs(dims, &x, &media, &[0; 38]).unwrap();
    inputs.get_mut("x").unwrap().shape = vec![2, 38, 32];
    assert!(matches!(plan.run(&inputs), Err(Error::Input { name, .. }) if name == "x"));
}

#[test]
#[timeout(60_000)]
fn compression_inputs_are_checked() {
    use vlbridge::ops::{AnyResLayout, Tome};
    // ToMe can merge at most half of the unprotected tokens.
    assert!(Tome::new(577, 288, true).is_ok());
    let err = Tome::new(577, 289, true).unwrap_err();
    assert!(matches!(&err, Error::Shape { what, .. } if what.contains("r ")), "{err}");
    assert!(matches!(Tome::new(10, 6, false), Err(Error::Shape { .. })));
    // A grid that is not the token count.
    let mut g = Graph::new();
    let x = g.input("x", &[1, 576, 8]).unwrap();
    let err = g.add(AvgPool::two_by_two(24, 23, false), &[x]).unwrap_err();
    assert!(matches!(&err, Error::Shape { what, .. } if what.contains("grid")), "{err}");
    let err = g.add(AvgPool { h: 24, w: 24, k: 0, ceil_mode: false }, &[x]).unwrap_err();
    assert!(matches!(&err, Error::Shape { what, .. } if what.contains("window")), "{err}");
    let err = g.add(BilinearHalf { h: 0, w: 576 }, &[x]).unwrap_err();
    assert!(matches!(&err, Error::Shape { .. }), "{err}");
    // AnyRes: an empty image, no pinpoints, a pinpoint smaller than a tile.
    let pinpoints = [(336, 672), (672, 336)];
    let err = AnyResLayout::new((0, 500), &pinpoints, 336, 14).unwrap_err();
    assert!(matches!(&err, Error::Shape { what, .. } if what.contains("image size")), "{err}");
    let err = AnyResLayout::new((300, 500), &[], 336, 14).unwrap_err();
    assert!(matches!(&err, Error::Shape { what, .. } if what.contains("pinpoints")), "{err}");
    assert!(matches!(AnyResLayout::new((300, 500), &[(100, 100)], 336, 14), Err(Error::Shape { .. })));
    // Features with the wrong number of tiles for the layout.
    let layout = AnyResLayout::new((672, 672), &pinpoints, 336, 14).unwrap();
    let features = g.input("features", &[4, 576, 8]).unwrap();
    let newline = g.input("newline", &[8]).unwrap();
    let err = g.add(layout, &[features, newline]).unwrap_err();
    assert!(matches!(&err, Error::Shape { what, .. } if what.contains("tile features")), "{err}");
}

#[test]
#[timeout(120_000)]
fn a_tensor_of_another_device_is_a_typed_error_before_any_gpu_work() {
    // Two devices on the same adapter: an engine that owns several.
    let other = vlbridge::Gpu::with_options(&vlbridge::GpuOptions::from_env().unwrap()).unwrap();
    assert!(!other.same_device(gpu()) && gpu().same_device(&gpu().clone()));
    let foreign = Tensor::from_f32(&other, &[3, 4], &[0.5; 12]).unwrap();
    let mut g = Graph::new();
    let x = g.input("x", &[2, 4]).unwrap();
    let w = g.constant("w", &foreign);
    let y = g.add(Epilogue::NONE, &[x, w]).unwrap();
    g.output(y).unwrap();
    match Plan::new(gpu(), &g) {
        Err(Error::OtherDevice { what, .. }) => assert!(what.contains("`w`"), "{what}"),
        other => panic!("expected OtherDevice, got {:?}", other.err()),
    }
    // A plan of this device given another device's tensors to run into.
    let mut g = Graph::new();
    let x = g.input("x", &[2, 4]).unwrap();
    let w = g.constant("w", &f32_tensor(&[3, 4]));
    let y = g.add(Epilogue::NONE, &[x, w]).unwrap();
    g.output(y).unwrap();
    let plan = Plan::new(gpu(), &g).unwrap();
    let (input, output) = (Tensor::from_f32(&other, &[2, 4], &[1.0; 8]).unwrap(), f32_tensor(&[2, 3]));
    match plan.run_into(&[&input], &[&output]) {
        Err(Error::OtherDevice { what, .. }) => assert!(what.contains("inputs tensor 0"), "{what}"),
        other => panic!("expected OtherDevice, got {other:?}"),
    }
    // The plan still runs with its own device's tensors.
    plan.run_into(&[&f32_tensor(&[2, 4])], &[&output]).unwrap();
}
