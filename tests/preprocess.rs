//! Each served family's image processor against transformers 5.24's Pillow backend
//! (`tests/data/vision/<family>/preprocess/`): `pixel_values` within 1e-6 of
//! `pixel_values_slow` for the photo, the synthetic image with sharp edges and the small odd
//! crop; every other key exact. Decoding errors name the file.

use std::path::PathBuf;

use vlbridge::models;
use vlbridge::preprocess::{self, Preprocessor};
use vlbridge::reference;

fn dir(family: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/vision").join(family)
}

const SERVED: [&str; 8] =
    ["llava", "llava_next", "llava_onevision", "blip2", "gemma3", "internvl", "idefics3", "smolvlm"];

/// `image_std` of `family`'s processor.
fn processor_std(family: &str) -> [f64; 3] {
    let text = std::fs::read_to_string(dir(family).join("preprocessor_config.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let s = |i: usize| v["image_std"][i].as_f64().unwrap();
    [s(0), s(1), s(2)]
}

#[test]
fn pixel_values_match_the_pillow_backend() {
    for family in SERVED {
        let processor = Preprocessor::from_pretrained(dir(family)).unwrap();
        for image in ["photo", "synthetic", "small"] {
            let png = preprocess::decode(dir(family).join(format!("preprocess/{image}.png"))).unwrap();
            let got = processor.process(&[png]).unwrap();
            let want = models::read_tensors(dir(family).join(format!("preprocess/{image}.safetensors"))).unwrap();
            let slow = &want["pixel_values_slow"];
            let pixels = &got["pixel_values"];
            assert_eq!(pixels.shape, slow.shape, "{family}/{image}: pixel_values shape");
            let expected: Vec<f64> = slow.data.as_f32().unwrap().iter().map(|&v| f64::from(v)).collect();
            let cmp = reference::compare(pixels.data.as_f32().unwrap(), &expected, 1e-6, 0.0);
            assert!(cmp.passed(), "{family}/{image} vs Pillow: {cmp}");
            for (key, t) in &got {
                if key != "pixel_values" {
                    assert_eq!(Some(t), want.get(key), "{family}/{image}: {key}");
                }
            }
            // The torchvision backend (transformers' default) is held to the shared rule: every
            // element within 4 uint8 levels, at most 5% half a level or more away.
            let std = processor_std(family);
            let fast = want["pixel_values"].data.as_f32().unwrap();
            let plane = pixels.shape[pixels.shape.len() - 2..].iter().product::<usize>();
            let levels: Vec<f64> = pixels
                .data
                .as_f32()
                .unwrap()
                .iter()
                .zip(fast)
                .enumerate()
                .map(|(i, (g, f))| f64::from((g - f).abs()) * 255.0 * std[(i / plane) % 3])
                .collect();
            let max = levels.iter().copied().fold(0.0, f64::max);
            let far = levels.iter().filter(|&&l| l >= 0.5).count() as f64 / levels.len() as f64;
            println!("{family}/{image}: vs torchvision max {max:.2} levels, {:.3}% >= 0.5 level", 100.0 * far);
            assert!(max <= 4.0 && far <= 0.05, "{family}/{image} vs torchvision: {max} levels, {far} far");
        }
    }
}

#[test]
fn the_photo_goes_through_processor_tower_and_connector_as_upstream() {
    let gpu = vlbridge::Gpu::new().unwrap();
    for family in SERVED {
        let processor = Preprocessor::from_pretrained(dir(family)).unwrap();
        let png = preprocess::decode(dir(family).join("preprocess/photo.png")).unwrap();
        let inputs = processor.process(&[png]).unwrap();
        let model = models::from_pretrained(&gpu, dir(family)).unwrap();
        let got = model.run(&inputs).unwrap();
        let want = models::read_tensors(dir(family).join("preprocess/photo_features.safetensors")).unwrap();
        let slow = &want["image_features_slow"];
        let expected: Vec<f64> = slow.data.as_f32().unwrap().iter().map(|&v| f64::from(v)).collect();
        let cmp = reference::compare(got["image_features"].data.as_f32().unwrap(), &expected, 1e-4, 1e-3);
        assert!(cmp.passed(), "{family}: photo -> image_features vs upstream (Pillow pixels): {cmp}");
    }
}

#[test]
fn bad_images_are_errors_naming_the_file() {
    let tmp = std::env::temp_dir().join(format!("vlbridge-pre-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let png = std::fs::read(dir("llava").join("preprocess/photo.png")).unwrap();
    let truncated = tmp.join("truncated.png");
    std::fs::write(&truncated, &png[..png.len() / 3]).unwrap();
    let e = preprocess::decode(&truncated).unwrap_err().to_string();
    assert!(e.contains("truncated.png"), "{e}");
    let text = tmp.join("notes.png");
    std::fs::write(&text, b"not an image at all").unwrap();
    let e = preprocess::decode(&text).unwrap_err().to_string();
    assert!(e.contains("notes.png") && e.contains("not an image format"), "{e}");
    let e = preprocess::decode(tmp.join("absent.png")).unwrap_err().to_string();
    assert!(e.contains("absent.png"), "{e}");
    std::fs::remove_dir_all(tmp).ok();
}
