//! Bad input returns a typed error naming the problem: never a panic, never a device error.

mod common;

use common::gpu;
use ntest::timeout;
use vlbridge::connectors::LlavaProjector;
use vlbridge::kernels::Op;
use vlbridge::kernels::gelu::GeluForm;
use vlbridge::kernels::gemm::Epilogue;
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
    match g.add(Op::Linear(Epilogue::BIAS), &[x, w, b]) {
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
        matches!(g.add(Op::Linear(Epilogue::bias_gelu(GeluForm::Erf)), &[x, w, b]), Err(Error::Shape { what, .. }) if what.contains("bias"))
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
fn f16_tensor_into_an_f32_kernel_is_a_dtype_error() {
    let gpu = gpu();
    let mut g = Graph::new();
    let x = g.input("x", &[2, 4]).unwrap();
    let w16 = Tensor::from_f16(gpu, &[3, 4], &[half::f16::ONE; 12]).unwrap();
    let w = g.constant("w", &w16);
    match g.add(Op::Linear(Epilogue::NONE), &[x, w]) {
        Err(Error::DType { what, got, .. }) => {
            assert_eq!(got, "f16");
            assert!(what.contains("input 1"), "{what}");
        }
        other => panic!("expected a dtype error, got {other:?}"),
    }
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
    assert!(matches!(LlavaProjector::activation("relu"), Err(Error::Weights { .. })));
    assert_eq!(LlavaProjector::activation("gelu_pytorch_tanh").unwrap(), GeluForm::Tanh);
}

#[test]
#[timeout(60_000)]
fn tensors_over_the_device_limits_are_refused_before_allocation() {
    let gpu = gpu();
    let limits = gpu.limits();
    // One element more than the largest storage binding.
    let elements = (limits.max_storage_buffer_binding_size / 4 + 1) as usize;
    match Tensor::zeros(gpu, &[elements], DType::F32) {
        Err(Error::Limit { limit, requested, max, .. }) => {
            assert!(requested > max, "{limit}: {requested} <= {max}");
        }
        other => panic!("expected a limit error, got {other:?}"),
    }
    let mut g = Graph::new();
    let x = g.input("x", &[elements]).unwrap();
    let y = g.add(Op::Gelu(GeluForm::Erf), &[x]).unwrap();
    g.output(y).unwrap();
    assert!(matches!(Plan::new(gpu, &g), Err(Error::Limit { .. })));
}

#[test]
#[timeout(60_000)]
fn wrong_input_length_at_run_time_is_a_shape_error() {
    let gpu = gpu();
    let mut g = Graph::new();
    let x = g.input("x", &[10]).unwrap();
    let y = g.add(Op::Gelu(GeluForm::Erf), &[x]).unwrap();
    g.output(y).unwrap();
    let plan = Plan::new(gpu, &g).unwrap();
    assert!(matches!(plan.run(gpu, &[&[0.0; 9]]), Err(Error::Shape { .. })));
    assert!(matches!(plan.run(gpu, &[]), Err(Error::Shape { .. })));
    assert!(plan.run_and_read(gpu, &[&[0.0; 10]]).is_ok());
}

#[test]
#[timeout(60_000)]
fn graph_without_outputs_is_refused() {
    let mut g = Graph::new();
    let x = g.input("x", &[4]).unwrap();
    g.add(Op::Gelu(GeluForm::Erf), &[x]).unwrap();
    assert!(matches!(Plan::new(gpu(), &g), Err(Error::Graph(_))));
    assert!(matches!(g.output(x), Err(Error::Graph(_))));
}
