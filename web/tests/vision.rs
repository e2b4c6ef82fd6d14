//! The whole vision path in a real browser: each directory of `tests/data/vision` (tower and
//! connector, twelve families) loads from its files as bytes and runs from `pixel_values` on the
//! page's WebGPU device, against transformers' `image_features` at the native tolerance
//! (atol 1e-4 + rtol 1e-3); then its photo, decoded and processed by the directory's own image
//! processor in the page, through the same model, against the features transformers made from
//! the Pillow backend's pixels (`image_features_slow`) at the same tolerance.

use vlbridge::models::{self, LoadOptions, Pretrained, tensors_of};
use vlbridge::preprocess::decode_bytes;
use vlbridge::reference::compare;
use vlbridge::weights::Weights;
use vlbridge::{Gpu, GpuOptions, HostTensor, ModelFiles, Tensors};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

include!(concat!(env!("OUT_DIR"), "/models.rs"));

fn stored(files: &[File], file: &str) -> Result<Tensors, String> {
    let (_, bytes) = files.iter().find(|(f, _)| *f == file).ok_or_else(|| format!("no {file}"))?;
    tensors_of(&Weights::from_bytes(bytes.to_vec(), file).map_err(|e| e.to_string())?).map_err(|e| e.to_string())
}

fn matches(got: &Tensors, want: &HostTensor) -> Result<String, String> {
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

/// The photo from its PNG bytes: decoded, processed, tower and connector.
async fn photo(model: &Pretrained, files: &[File]) -> Result<String, String> {
    let (_, png) = files.iter().find(|(f, _)| *f == "preprocess/photo.png").ok_or("no preprocess/photo.png")?;
    let image = decode_bytes(png, "photo.png").map_err(|e| e.to_string())?;
    let inputs = model.preprocess(&[image]).map_err(|e| e.to_string())?;
    let got = model.run_async(&inputs).await.map_err(|e| e.to_string())?;
    matches(&got, &stored(files, "preprocess/photo_features.safetensors")?["image_features_slow"])
}

async fn check(gpu: &Gpu, name: &str, files: &[File]) -> Result<String, String> {
    let dir = ModelFiles::from_bytes(name, files.iter().map(|(f, b)| (f.to_string(), b.to_vec())));
    let model = models::from_files(gpu, &dir, &LoadOptions::default()).map_err(|e| e.to_string())?;
    let got = model.run_async(&stored(files, "vision_inputs.safetensors")?).await.map_err(|e| e.to_string())?;
    let path = matches(&got, &stored(files, "vision_outputs.safetensors")?["image_features"])?;
    let photo = photo(&model, files).await.map_err(|e| format!("photo: {e}"))?;
    Ok(format!("{path}; photo end to end: {photo}"))
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
