//! Parity with the upstream PyTorch modules on the golden vectors copied into tests/data
//! (and on ../shared/golden when present).

mod common;

use std::path::Path;

use ntest::timeout;
use vlbridge::golden::{Outcome, Summary, check_manifest};

/// The ops implemented so far; every other op must be reported `unsupported`, never passed.
const IMPLEMENTED: &[&str] = &[
    "mlp2x_gelu",
    "mlp2x_gelu_tanh",
    "qformer",
    "perceiver_resampler",
    "gated_xattn_dense",
    "avg_pool2d_tokens",
    "bilinear_half_tokens",
    "tome_bipartite_soft_matching_merge_wavg",
    "anyres_pack",
];

fn check(manifest: &Path) {
    let reports = check_manifest(common::gpu(), manifest).unwrap();
    for r in &reports {
        println!("{r}");
        let implemented = IMPLEMENTED.contains(&r.op.as_str());
        match &r.outcome {
            Outcome::Compared(c) => assert!(implemented && c.passed(), "{r}"),
            Outcome::Unsupported => assert!(!implemented, "{r}"),
            Outcome::Error(e) => panic!("{}: {e}", r.name),
        }
    }
    for must in [
        "llava_mlp",
        "llava_mlp_gelu_tanh",
        "qformer",
        "perceiver_resampler",
        "gated_xattn",
        "gated_xattn_all_previous",
        "gated_xattn_zero_gates",
        "avg_pool_2x2",
        "avg_pool_2x2_odd_floor",
        "avg_pool_2x2_odd_ceil",
        "bilinear_half",
        "bilinear_half_even",
        "tome_cls",
        "tome_nocls",
        "tome_cls_sizes",
        "anyres_landscape",
        "anyres_portrait",
        "anyres_square",
    ] {
        assert!(
            reports.iter().any(|r| r.name == must && matches!(r.outcome, Outcome::Compared(_))),
            "{must} did not run"
        );
    }
    println!("{}", Summary::of(&reports));
}

#[test]
#[timeout(300_000)]
fn bundled_golden_cases() {
    check(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/manifest.json"));
}

#[test]
#[timeout(300_000)]
fn shared_golden_cases_when_present() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/golden/manifest.json");
    if shared.exists() {
        check(&shared);
    }
}

#[test]
#[timeout(300_000)]
fn a_wrong_activation_fails_parity() {
    // The tanh case computed with exact GELU must fail at the golden tolerance: the check can fail.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let gpu = common::gpu();
    let w = vlbridge::weights::Weights::open(dir.join("llava_mlp_gelu_tanh.safetensors")).unwrap();
    let p =
        vlbridge::connectors::LlavaProjector::from_weights(gpu, &w, vlbridge::kernels::gelu::GeluForm::Erf).unwrap();
    let x = w.f32("image_features", None).unwrap();
    let got = p.plan(gpu, 2, 37).unwrap().project(gpu, &x).unwrap();
    let want: Vec<f64> = w.f32("projected", None).unwrap().into_iter().map(f64::from).collect();
    assert!(!vlbridge::reference::compare(&got, &want, 1e-4, 1e-4).passed());
}
