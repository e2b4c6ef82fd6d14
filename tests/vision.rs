//! The whole vision path of each family served (`tests/data/vision/<family>`: tiny model
//! directories saved by transformers 5.24 with the processor's outputs and the model's own
//! `get_image_features`): pixels through the tower and the connector in one plan, via
//! `from_pretrained`, against upstream at 1e-4 + 1e-3·|want| (f32 weights as stored), and with
//! the weights cast to bf16 against the f64 reference of the same plan.

mod common;

use std::path::PathBuf;

use common::gpu;
use ntest::timeout;
use vlbridge::models::{self, LoadOptions};
use vlbridge::{DType, reference};

const ATOL: f64 = 1e-4;
const RTOL: f64 = 1e-3;

fn dir(family: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/vision").join(family)
}

/// `family`'s `image_features` from its `vision_inputs`, f32 weights vs upstream, bf16 weights
/// vs the f64 reference; also how many dispatches the plan records.
fn check(family: &str) {
    let dir = dir(family);
    let inputs = models::read_tensors(dir.join("vision_inputs.safetensors")).unwrap();
    let want = models::read_tensors(dir.join("vision_outputs.safetensors")).unwrap();
    let want = &want["image_features"];
    let model = models::from_pretrained(gpu(), &dir).unwrap();
    assert!(!model.vision_input_names().is_empty(), "{family}: the tower was not loaded");
    let got = model.run(&inputs).unwrap();
    let got = &got["image_features"];
    assert_eq!(got.shape, want.shape, "{family}: image_features shape");
    let wide: Vec<f64> = want.data.as_f32().unwrap().iter().map(|&v| f64::from(v)).collect();
    let cmp = reference::compare(got.data.as_f32().unwrap(), &wide, ATOL, RTOL);
    assert!(cmp.passed(), "{family} f32 vs transformers: {cmp}");

    let options = LoadOptions { weights: Some(DType::BF16), ..LoadOptions::default() };
    let bf16 = models::from_pretrained_with(gpu(), &dir, &options).unwrap();
    let got = bf16.run(&inputs).unwrap();
    let reference = bf16.reference(&inputs).unwrap();
    let (_, want) = &reference["image_features"];
    let cmp = reference::compare(got["image_features"].data.as_f32().unwrap(), want, ATOL, RTOL);
    assert!(cmp.passed(), "{family} bf16 weights vs the f64 reference: {cmp}");
}

#[test]
#[timeout(300_000)]
fn gemma3_siglip_tower_and_projector() {
    check("gemma3");
}

#[test]
#[timeout(300_000)]
fn internvl_layer_scaled_tower_and_pixel_shuffle() {
    check("internvl");
}

#[test]
#[timeout(300_000)]
fn idefics3_padded_frames_masked_keys_bucketed_positions() {
    check("idefics3");
}

#[test]
#[timeout(300_000)]
fn smolvlm_padded_frames_masked_keys_bucketed_positions() {
    check("smolvlm");
}

#[test]
#[timeout(300_000)]
fn blip2_vit_qformer_and_language_projection() {
    check("blip2");
}

#[test]
#[timeout(300_000)]
fn llava_clip_tower_feature_layer_and_projector() {
    check("llava");
}

#[test]
#[timeout(300_000)]
fn llava_next_tiles_two_feature_layers_and_packing() {
    check("llava_next");
}

#[test]
#[timeout(300_000)]
fn llava_onevision_anyres_max_and_multi_image_samples() {
    check("llava_onevision");
}
