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

const SERVED: [&str; 6] = ["llava", "llava_next", "llava_onevision", "blip2", "gemma3", "internvl"];

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
