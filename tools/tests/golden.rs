//! Parity with the upstream PyTorch modules: `vlbridge check` on the golden vectors copied into
//! tests/data (and on ../shared/golden when present) passes every case, and every case of an
//! op vlbridge implements is compared, never skipped.

use std::path::Path;
use std::process::Command;

/// Runs `vlbridge check` on `manifest`; returns (exit success, per-case lines).
fn check(manifest: &Path) -> (bool, Vec<String>) {
    check_forced(manifest, "")
}

/// [`check`] with `VLBRIDGE_FORCE=forced` (added to what the environment forces).
fn check_forced(manifest: &Path, forced: &str) -> (bool, Vec<String>) {
    let env = std::env::var("VLBRIDGE_FORCE").unwrap_or_default();
    let both: Vec<&str> = [env.as_str(), forced].into_iter().filter(|s| !s.is_empty()).collect();
    let out = Command::new(env!("CARGO_BIN_EXE_vlbridge"))
        .env("VLBRIDGE_FORCE", both.join(","))
        .arg("check")
        .arg("--manifest")
        .arg(manifest)
        .output()
        .expect("run vlbridge check");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    println!("{text}{}", String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text.lines().map(str::to_string).collect())
}

fn case_line<'a>(lines: &'a [String], name: &str) -> Option<&'a String> {
    lines.iter().find(|l| l.split_whitespace().next() == Some(name))
}

#[test]
fn bundled_golden_cases_all_pass() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/manifest.json");
    let (ok, lines) = check(&manifest);
    assert!(ok, "vlbridge check failed");
    for must in [
        "llava_mlp",
        "llava_mlp_gelu_tanh",
        "llava_mlp_f16",
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
        "qwen2vl_merger",
        "qwen25vl_merger",
        "internvl_projector",
        "idefics3_connector",
        "idefics3_connector_s3",
        "gemma3_projector",
        "mistral3_projector",
        "mistral3_projector_odd",
        "mllama_cross_attention_layer",
        "blip2_connector",
    ] {
        let line = case_line(&lines, must).unwrap_or_else(|| panic!("{must} did not run"));
        assert!(line.contains(" pass "), "{line}");
    }
    assert!(lines.iter().any(|l| l.contains(" 0 failed, 0 unsupported")), "every bundled case is implemented");
}

/// The same parity with the sublayers fused (a GPU's plan; lavapipe splits them by default):
/// the Q-Former, the Perceiver and BLIP-2's connector run `attention_rows` and `mlp_rows`.
#[test]
fn bundled_golden_cases_pass_with_fused_sublayers() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/manifest.json");
    let (ok, lines) = check_forced(&manifest, "sublayers=fused,input_norm=fused");
    assert!(ok, "vlbridge check failed with fused sublayers");
    for must in ["qformer", "perceiver_resampler", "blip2_connector"] {
        let line = case_line(&lines, must).unwrap_or_else(|| panic!("{must} did not run"));
        assert!(line.contains(" pass "), "{line}");
    }
}

#[test]
fn shared_golden_cases_when_present() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/golden/manifest.json");
    if shared.exists() {
        let (ok, _) = check(&shared);
        assert!(ok, "vlbridge check failed on ../shared/golden");
    }
}
