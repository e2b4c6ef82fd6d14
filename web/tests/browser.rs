//! The native suite's model directories (`tests/data/models`) in a real browser: each loads
//! from its files as bytes, runs on the page's WebGPU device through the async path, and
//! matches what transformers computed within the native tolerance (atol 1e-4 + rtol 1e-3).
//! Run by `scripts/browser_tests.sh` (headless Chromium through chromedriver).

use vlbridge::models::{self, LoadOptions, tensors_of};
use vlbridge::reference::compare;
use vlbridge::weights::Weights;
use vlbridge::{Gpu, GpuOptions, ModelFiles, Tensors};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

include!(concat!(env!("OUT_DIR"), "/models.rs"));

/// (directory, the output checked, the stored tensor it is checked against), as
/// `tests/models.rs` pairs them natively.
const CASES: &[(&str, &str, &str)] = &[
    ("llava", "projected", "projected"),
    ("llava_tanh", "projected", "projected"),
    ("llava_nobias", "projected", "projected"),
    // bf16 weights as stored against transformers' f32 evaluation of them.
    ("llava_bf16", "projected", "projected_f32ref_f32in"),
    ("llava_next", "packed", "packed"),
    ("llava_onevision", "packed", "packed"),
    ("llava_onevision_384", "packed", "packed"),
    ("llava_onevision_384_max9", "packed", "packed"),
    ("blip2", "language_model_inputs", "language_model_inputs"),
    ("qwen2_vl", "merged", "merged"),
    ("qwen2_5_vl", "merged", "merged"),
    ("internvl", "projected", "projected"),
    ("smolvlm", "projected", "projected"),
    ("idefics3_s3", "projected", "projected"),
    ("gemma3", "projected", "projected"),
    ("mistral3", "projected", "projected"),
    ("mllama", "cross_attention_states", "cross_attention_states"),
];

/// Every directory of `tests/data/models` is in [`CASES`].
#[wasm_bindgen_test]
fn every_model_directory_is_checked() {
    for (name, _) in MODELS {
        assert!(CASES.iter().any(|c| c.0 == *name), "{name} is not in the browser cases");
    }
}

fn files(name: &str) -> &'static [File] {
    MODELS.iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("no model directory {name}")).1
}

fn stored(name: &str, file: &str) -> Tensors {
    let bytes = files(name).iter().find(|(f, _)| *f == file).unwrap_or_else(|| panic!("{name}/{file}")).1;
    tensors_of(&Weights::from_bytes(bytes.to_vec(), file).unwrap()).unwrap()
}

async fn check(gpu: &Gpu, name: &str, primary: &str, reference: &str) -> Result<(), String> {
    let dir = ModelFiles::from_bytes(name, files(name).iter().map(|(f, b)| (f.to_string(), b.to_vec())));
    let model = models::from_files(gpu, &dir, &LoadOptions::default()).map_err(|e| format!("{name}: {e}"))?;
    let got =
        model.run_async(&stored(name, "connector_inputs.safetensors")).await.map_err(|e| format!("{name}: {e}"))?;
    let want = stored(name, "connector_outputs.safetensors");
    let tensor = got.get(primary).ok_or_else(|| format!("{name}: no `{primary}` output"))?;
    let expected = &want[reference];
    if tensor.shape != expected.shape {
        return Err(format!("{name}: {primary} shape {:?}, stored {:?}", tensor.shape, expected.shape));
    }
    let cmp = compare(tensor.data.as_f32().unwrap_or_default(), &expected.data.to_f64(), 1e-4, 1e-3);
    if !cmp.passed() {
        return Err(format!("{name}: {primary} vs {reference}: {cmp}"));
    }
    web_sys_log(&format!("{name}: {primary} {:?} ok ({cmp})", tensor.shape));
    Ok(())
}

fn web_sys_log(line: &str) {
    wasm_bindgen_test::console_log!("{line}");
}

#[wasm_bindgen_test]
async fn model_directories_match_transformers_in_the_browser() {
    let gpu = Gpu::open(&GpuOptions::default()).await.expect("the page's WebGPU adapter");
    web_sys_log(&format!("adapter: {}", gpu.describe()));
    let mut failures = Vec::new();
    for (name, primary, reference) in CASES {
        if let Err(e) = check(&gpu, name, primary, reference).await {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{} of {} directories failed:\n{}", failures.len(), CASES.len(), failures.join("\n"));
}
