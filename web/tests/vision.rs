//! The whole vision path in a real browser: each directory of `tests/data/vision` (tower and
//! connector, twelve families) loads from its files as bytes and runs from `pixel_values` on the
//! page's WebGPU device, against transformers' `image_features` at the native tolerance
//! (atol 1e-4 + rtol 1e-3).

use vlbridge::models::{self, LoadOptions, tensors_of};
use vlbridge::reference::compare;
use vlbridge::weights::Weights;
use vlbridge::{Gpu, GpuOptions, ModelFiles, Tensors};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

include!(concat!(env!("OUT_DIR"), "/models.rs"));

fn stored(files: &[File], file: &str) -> Result<Tensors, String> {
    let (_, bytes) = files.iter().find(|(f, _)| *f == file).ok_or_else(|| format!("no {file}"))?;
    tensors_of(&Weights::from_bytes(bytes.to_vec(), file).map_err(|e| e.to_string())?).map_err(|e| e.to_string())
}

async fn check(gpu: &Gpu, name: &str, files: &[File]) -> Result<String, String> {
    let dir = ModelFiles::from_bytes(name, files.iter().map(|(f, b)| (f.to_string(), b.to_vec())));
    let model = models::from_files(gpu, &dir, &LoadOptions::default()).map_err(|e| e.to_string())?;
    let got = model.run_async(&stored(files, "vision_inputs.safetensors")?).await.map_err(|e| e.to_string())?;
    let want = &stored(files, "vision_outputs.safetensors")?["image_features"];
    let got = got.get("image_features").ok_or("no image_features output")?;
    if got.shape != want.shape {
        return Err(format!("image_features shape {:?}, stored {:?}", got.shape, want.shape));
    }
    let cmp = compare(got.data.as_f32().unwrap_or_default(), &want.data.to_f64(), 1e-4, 1e-3);
    if !cmp.passed() {
        return Err(cmp.to_string());
    }
    Ok(format!("image_features {:?} ({cmp})", got.shape))
}

#[wasm_bindgen_test]
async fn every_vision_path_matches_transformers_in_the_browser() {
    let gpu = Gpu::open(&GpuOptions::default()).await.expect("the page's WebGPU adapter");
    let mut failures = Vec::new();
    for (name, files) in VISION {
        match check(&gpu, name, files).await {
            Ok(line) => console_log!("{name}: {line}"),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{} of {} failed:\n{}", failures.len(), VISION.len(), failures.join("\n"));
}
