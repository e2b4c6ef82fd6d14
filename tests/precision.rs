//! Every kernel with f16 activations, on the precision cases each kernel unit of the registry
//! offers: on a device with SHADER_F16 each runs and matches the f64 reference of its graph
//! (inputs rounded to f16 as the GPU stores them, the reference rounded to f16 as the output
//! is, one f16 ulp and f16's flush floor of tolerance); on the forced no-f16 device each
//! returns `Error::Unsupported`. Random shapes and values in f16 are the fuzzer's job (`vlbridge
//! fuzz` draws f16 storage for half its cases); these cases pin each op once, at sizes with
//! ragged edges. A wrong index or a value read as the wrong type is off by O(1).

mod common;

use common::{gpu, minimal_gpu, run_case};
use ntest::timeout;
use vlbridge::connectors::{
    GatedXAttnBlock, GatedXAttnConfig, PerceiverConfig, PerceiverResampler, QFormer, QFormerConfig,
};
use vlbridge::kernels::{Case, FAMILIES};
use vlbridge::reference::compare;
use vlbridge::weights::Weights;
use vlbridge::{DType, Error, Graph, Plan};

fn cases() -> Vec<Case> {
    FAMILIES.iter().flat_map(|f| (f.precision)().unwrap_or_else(|e| panic!("{}: {e}", f.name))).collect()
}

#[test]
fn every_kernel_family_offers_precision_cases() {
    let cases = cases();
    for family in FAMILIES.iter().filter(|f| f.fuzz.is_some()) {
        assert!(cases.iter().any(|c| c.kernel == family.name), "{} has no f16 case", family.name);
    }
}

#[test]
#[timeout(300_000)]
fn every_kernel_runs_with_f16_activations_and_matches_the_reference() {
    let gpu = gpu();
    if !gpu.caps().shader_f16 {
        eprintln!("skipped: {} has no SHADER_F16", gpu.describe());
        return;
    }
    for case in cases() {
        let cmp = run_case(gpu, &case).unwrap_or_else(|e| panic!("{} {}: {e}", case.kernel, case.description));
        assert!(cmp.passed(), "{} {}: {cmp}", case.kernel, case.description);
        // f16 storage is really in use: the outputs are f16 values.
        let g = Graph::from_case(gpu, &case).unwrap();
        let got = Plan::new(gpu, &g).unwrap().run(&case.input_data()).unwrap();
        for (out, &id) in got.into_iter().zip(&case.outputs) {
            if case.metas[id].dtype == DType::F16 {
                let values = out.into_f32();
                let exact = values.iter().all(|&v| v.is_nan() || f32::from(half::f16::from_f32(v)) == v);
                assert!(exact, "{} {}: outputs are not f16 values", case.kernel, case.description);
            }
        }
    }
}

#[test]
#[timeout(120_000)]
fn every_kernel_with_f16_activations_is_unsupported_without_shader_f16() {
    let gpu = minimal_gpu();
    assert!(!gpu.caps().shader_f16);
    for case in cases() {
        match run_case(gpu, &case) {
            Err(Error::Unsupported { what, .. }) => assert!(what.contains("SHADER_F16"), "{}: {what}", case.kernel),
            other => panic!(
                "{} {}: expected Error::Unsupported, got {:?}",
                case.kernel,
                case.description,
                other.map(|c| c.passed())
            ),
        }
    }
}

/// `weights` with every float tensor re-stored as `dtype` (as a checkpoint shipping that dtype
/// would hold them); integer tensors are kept.
fn recast(weights: &Weights, dtype: DType) -> Weights {
    let names = weights.names().unwrap();
    let tensors: Vec<(String, Vec<usize>, Vec<u8>, safetensors::Dtype)> = names
        .iter()
        .map(|name| {
            let shape = weights.shape(name).unwrap();
            match weights.f32(name, None) {
                Ok(v) => {
                    let (bytes, stored) = match dtype {
                        DType::F16 => (
                            v.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect(),
                            safetensors::Dtype::F16,
                        ),
                        DType::BF16 => (
                            v.iter().flat_map(|&x| half::bf16::from_f32(x).to_le_bytes()).collect(),
                            safetensors::Dtype::BF16,
                        ),
                        _ => (bytemuck::cast_slice(&v).to_vec(), safetensors::Dtype::F32),
                    };
                    (name.clone(), shape, bytes, stored)
                }
                Err(_) => {
                    let v = weights.i64(name).unwrap();
                    (name.clone(), shape, bytemuck::cast_slice(&v).to_vec(), safetensors::Dtype::I64)
                }
            }
        })
        .collect();
    let views = tensors
        .iter()
        .map(|(n, s, b, d)| (n.as_str(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap()));
    Weights::from_bytes(safetensors::serialize(views, None).unwrap(), "recast").unwrap()
}

fn golden(name: &str) -> Weights {
    Weights::open(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)).unwrap()
}

/// Tolerance against the f64 reference of the same graph (which sees the stored weights and
/// inputs): f32 rounding for f32 activations; with f16 activations every stored intermediate
/// is off by up to 2⁻¹¹ relative and the next layer sums those errors over K = 64..256 inputs
/// (≈ 2⁻¹¹·√K ≈ 8e-3 of a unit output at worst), so 1e-2 as the demo holds.
fn connector_tolerance(activations: DType) -> f64 {
    if activations == DType::F16 { 1e-2 } else { 1e-4 }
}

#[test]
#[timeout(300_000)]
fn connectors_run_with_f16_and_bf16_weights_and_f16_activations() {
    let gpu = gpu();
    let f16 = gpu.caps().shader_f16;
    let modes =
        [(DType::F32, DType::F16), (DType::F16, DType::F16), (DType::BF16, DType::F32), (DType::BF16, DType::F16)];
    for (weights, activations) in modes.into_iter().filter(|m| f16 || (m.0 != DType::F16 && m.1 != DType::F16)) {
        let mode = format!("{weights} weights, {activations} activations");
        let tol = connector_tolerance(activations);

        let w = recast(&golden("qformer.safetensors"), weights);
        let config = QFormerConfig { num_attention_heads: 4, ..QFormerConfig::default() };
        let model = QFormer::from_weights(gpu, &w, config).unwrap().with_activations(activations);
        let x = w.f32("encoder_hidden_states", None).unwrap();
        let plan = model.plan(gpu, 2, 17).unwrap();
        let c = compare(&plan.project(&x).unwrap(), &plan.project_reference(&x).unwrap(), tol, tol);
        assert!(c.passed(), "Q-Former, {mode}: {c}");

        let w = recast(&golden("perceiver_resampler.safetensors"), weights);
        let config = PerceiverConfig { heads: 4, ..PerceiverConfig::default() };
        let model = PerceiverResampler::from_weights(gpu, &w, config).unwrap().with_activations(activations);
        let x = w.f32("x", None).unwrap();
        let plan = model.plan(gpu, 4, 17).unwrap();
        let c = compare(&plan.project(&x).unwrap(), &plan.project_reference(&x).unwrap(), tol, tol);
        assert!(c.passed(), "Perceiver, {mode}: {c}");

        let w = recast(&golden("gated_xattn.safetensors"), weights);
        let config = GatedXAttnConfig { heads: 4, ..GatedXAttnConfig::default() };
        let prefix = "lang_encoder.gated_cross_attn_layers.0.";
        let block = GatedXAttnBlock::from_weights(gpu, &w, prefix, config).unwrap().with_activations(activations);
        let (x, media) = (w.f32("x", None).unwrap(), w.f32("media", None).unwrap());
        let locations: Vec<u8> = w.i64("media_locations").unwrap().into_iter().map(|v| u8::from(v != 0)).collect();
        let plan = block.plan(gpu, 2, 19, 2, 8).unwrap();
        let inputs = block.inputs([2, 19, 2, 8], &x, &media, &locations).unwrap();
        let got = plan.run(&inputs).unwrap().remove("hidden_states").unwrap().data.into_f32();
        let c = compare(&got, &plan.reference(&inputs).unwrap()["hidden_states"].1, tol, tol);
        assert!(c.passed(), "gated cross-attention, {mode}: {c}");
        // The block's own dtype really is in use: outputs are f16 values with f16 activations.
        if activations == DType::F16 {
            assert!(got.iter().all(|&v| f32::from(half::f16::from_f32(v)) == v), "{mode}: outputs not f16");
        }
    }
}
