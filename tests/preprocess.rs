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

const SERVED: [&str; 12] = [
    "llava",
    "llava_next",
    "llava_onevision",
    "blip2",
    "gemma3",
    "internvl",
    "idefics3",
    "smolvlm",
    "qwen2_vl",
    "qwen2_5_vl",
    "mistral3",
    "mllama",
];

/// `image_std` of `family`'s processor.
fn processor_std(family: &str) -> [f64; 3] {
    let text = std::fs::read_to_string(dir(family).join("preprocessor_config.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let s = |i: usize| v["image_std"][i].as_f64().unwrap();
    [s(0), s(1), s(2)]
}

/// How far normalised pixels are apart in uint8 levels (at channel std `std`): the largest
/// distance, and the share of elements half a level or more away.
fn levels(got: &[f32], want: &[f32], std: f64) -> (f64, f64) {
    assert_eq!(got.len(), want.len());
    let levels: Vec<f64> = got.iter().zip(want).map(|(g, w)| f64::from((g - w).abs()) * 255.0 * std).collect();
    let far = levels.iter().filter(|&&l| l >= 0.5).count() as f64 / levels.len() as f64;
    (levels.iter().copied().fold(0.0, f64::max), far)
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
            // Levels at the largest channel std: an upper bound whatever the layout.
            let std = processor_std(family).into_iter().fold(0.0, f64::max);
            let fast = want["pixel_values"].data.as_f32().unwrap();
            let (max, far) = levels(pixels.data.as_f32().unwrap(), fast, std);
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
        assert_eq!(got["image_features"].shape, slow.shape, "{family}: photo -> image_features shape");
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
    let jpeg =
        std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/jpeg/photo_q75_420.jpg")).unwrap();
    let truncated = tmp.join("truncated.jpg");
    std::fs::write(&truncated, &jpeg[..jpeg.len() / 2]).unwrap();
    let e = preprocess::decode(&truncated).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("truncated.jpg") && e.contains("end-of-image"), "{e}");
    let e = preprocess::decode(tmp.join("absent.png")).unwrap_err().to_string();
    assert!(e.contains("absent.png"), "{e}");
    std::fs::remove_dir_all(tmp).ok();
}

/// A PNG of `image` encoded by the `image` crate.
fn png_bytes<P: image::PixelWithColorType>(image: &image::ImageBuffer<P, Vec<P::Subpixel>>) -> Vec<u8>
where
    [P::Subpixel]: image::EncodableLayout,
{
    let mut bytes = std::io::Cursor::new(Vec::new());
    image.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
    bytes.into_inner()
}

#[test]
fn colour_types_convert_as_transformers_convert_rgb() {
    // 16-bit RGB keeps each sample's high byte (Pillow's RGB;16B unpacking).
    let wide =
        image::ImageBuffer::from_fn(3, 2, |x, y| image::Rgb([(x * 20000) as u16 + 255, (y * 30000) as u16, 65535]));
    let got = preprocess::decode_bytes(&png_bytes(&wide), "wide.png").unwrap();
    let want: Vec<u8> = wide.into_raw().into_iter().map(|v| (v >> 8) as u8).collect();
    assert_eq!(got.data, want);
    // Alpha over white in Pillow's integer alpha_composite: transparent is white, opaque keeps
    // its colour, black at alpha 128 is 127.
    let rgba = image::RgbaImage::from_raw(3, 1, vec![10, 20, 30, 0, 10, 20, 30, 255, 0, 0, 0, 128]).unwrap();
    let got = preprocess::decode_bytes(&png_bytes(&rgba), "alpha.png").unwrap();
    assert_eq!(got.data, [255, 255, 255, 10, 20, 30, 127, 127, 127]);
    // 16-bit grey is Pillow's mode I;16, which converts to RGB by clipping at 255 (measured
    // with Pillow 13: 0, 100, 255, 256, 1000, 65535 -> 0, 100, 255, 255, 255, 255).
    let grey16 =
        image::ImageBuffer::<image::Luma<u16>, _>::from_raw(6, 1, vec![0u16, 100, 255, 256, 1000, 65535]).unwrap();
    let got = preprocess::decode_bytes(&png_bytes(&grey16), "grey16.png").unwrap();
    assert_eq!(got.data, [0, 100, 255, 255, 255, 255].map(|v| [v; 3]).concat());
    // 16-bit grey with alpha is RGBA of the high bytes in Pillow, then over white (measured with
    // Pillow 13: grey 300 at alpha 40000 is 100).
    let la16 = image::ImageBuffer::<image::LumaA<u16>, _>::from_raw(2, 1, vec![0u16, 65535, 300, 40000]).unwrap();
    assert_eq!(preprocess::decode_bytes(&png_bytes(&la16), "la16.png").unwrap().data, [0, 0, 0, 100, 100, 100]);
    // Grey is replicated.
    let grey = image::GrayImage::from_raw(2, 1, vec![7, 200]).unwrap();
    assert_eq!(preprocess::decode_bytes(&png_bytes(&grey), "grey.png").unwrap().data, [7, 7, 7, 200, 200, 200]);
}

/// IEEE CRC-32 (PNG's chunk checksum).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[test]
fn a_decompression_bomb_is_refused_from_its_header() {
    // A valid 1 x 1 PNG whose header then claims 20000 x 20000 pixels (the data never decoded).
    let mut png = png_bytes(&image::RgbImage::from_raw(1, 1, vec![1, 2, 3]).unwrap());
    png[16..20].copy_from_slice(&20000u32.to_be_bytes());
    png[20..24].copy_from_slice(&20000u32.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    let e = preprocess::decode_bytes(&png, "bomb.png").unwrap_err().to_string();
    assert!(e.contains("bomb.png") && e.contains("decompression bomb"), "{e}");
}

/// Largest difference, in levels, between two 8-bit images, and the share of samples that
/// differ at all.
fn distance(got: &[u8], want: &[u8]) -> (u8, f64) {
    assert_eq!(got.len(), want.len());
    let max = got.iter().zip(want).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0);
    let differing = got.iter().zip(want).filter(|(a, b)| a != b).count();
    (max, differing as f64 / got.len() as f64)
}

/// `tests/data/jpeg/` (scripts/make_jpeg_cases.py): JPEGs of the photo and a synthetic image
/// at several qualities and chroma subsamplings, a grey one and an Adobe CMYK one, next to
/// Pillow 13's decoding of each (libjpeg-turbo 3.2) as RGB. The `image` crate's decoder is a
/// different implementation of the same standard: its IDCT and chroma upsampling round
/// differently. Measured (see the README) and held here: every sample within JPEG_LEVELS
/// levels of Pillow's, at most JPEG_DIFFERING of them different at all; and through the
/// LLaVA-1.5 processor (bicubic resize, crop, normalise), `pixel_values` within
/// JPEG_PIXEL_LEVELS levels of the same processor run on Pillow's decoding (at most
/// JPEG_PIXEL_FAR of them half a level or more), and the model's `image_features` within the
/// shared end-to-end rule (NMSE 1e-4) of those of Pillow's decoding.
#[test]
fn jpeg_decodes_within_the_measured_distance_of_libjpeg_turbo() {
    const JPEG_LEVELS: u8 = 3;
    const JPEG_DIFFERING: f64 = 0.25;
    const JPEG_PIXEL_LEVELS: f64 = 4.0;
    const JPEG_PIXEL_FAR: f64 = 0.30;
    const JPEG_FEATURES_NMSE: f64 = 1e-4;
    let gpu = vlbridge::Gpu::new().unwrap();
    let model = models::from_pretrained(&gpu, dir("llava")).unwrap();
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/jpeg");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("manifest.json")).unwrap()).unwrap();
    let std = processor_std("llava").into_iter().fold(0.0, f64::max);
    let cases = manifest["cases"].as_object().unwrap();
    assert_eq!(cases.len(), 6);
    for name in cases.keys() {
        let got = preprocess::decode(data.join(format!("{name}.jpg"))).unwrap();
        let want = preprocess::decode(data.join(format!("{name}.pillow.png"))).unwrap();
        assert_eq!((got.width, got.height), (want.width, want.height), "{name}");
        let (max, differing) = distance(&got.data, &want.data);
        // The same processor and model on both decodings.
        let processed = |image| model.preprocess(&[image]).unwrap();
        let (ours, theirs) = (processed(got), processed(want));
        let pixels = |t: &models::Tensors| t["pixel_values"].data.as_f32().unwrap().to_vec();
        let (most, far) = levels(&pixels(&ours), &pixels(&theirs), std);
        let features = |t: &models::Tensors| model.run(t).unwrap()["image_features"].data.as_f32().unwrap().to_vec();
        let want_features: Vec<f64> = features(&theirs).into_iter().map(f64::from).collect();
        let nmse = reference::compare(&features(&ours), &want_features, 0.0, 0.0).nmse;
        println!(
            "{name}: max {max} levels, {:.2}% of samples differ; pixel_values max {most:.2} levels, {:.2}% >= 0.5; \
             image_features NMSE {nmse:.1e}",
            100.0 * differing,
            100.0 * far
        );
        assert!(nmse <= JPEG_FEATURES_NMSE, "{name}: image_features NMSE {nmse}");
        assert!(max <= JPEG_LEVELS && differing <= JPEG_DIFFERING, "{name}: {max} levels, {differing} differ");
        assert!(most <= JPEG_PIXEL_LEVELS && far <= JPEG_PIXEL_FAR, "{name}: pixel_values {most} levels, {far} far");
    }
}

#[test]
fn zero_size_images_are_errors_naming_the_file() {
    // A valid 1 x 1 PNG whose header then claims 0 columns (the PNG standard forbids it).
    let mut png = png_bytes(&image::RgbImage::from_raw(1, 1, vec![1, 2, 3]).unwrap());
    png[16..20].copy_from_slice(&0u32.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    let e = preprocess::decode_bytes(&png, "empty.png").unwrap_err().to_string();
    assert!(e.contains("empty.png") && (e.contains("zero-size") || e.contains("header")), "{e}");
}

#[test]
fn a_processor_refuses_an_empty_image() {
    let processor = Preprocessor::from_pretrained(dir("llava")).unwrap();
    let empty = preprocess::Rgb8 { width: 0, height: 5, data: Vec::new() };
    let e = processor.process(&[empty]).unwrap_err().to_string();
    assert!(e.contains("images[0]") && e.contains("0 x 5"), "{e}");
}

#[test]
fn an_image_the_tiling_cannot_fit_is_an_error() {
    // Qwen2-VL's smart_resize refuses an aspect ratio over 200, as upstream does.
    let processor = Preprocessor::from_pretrained(dir("qwen2_vl")).unwrap();
    let strip = preprocess::Rgb8 { width: 300, height: 1, data: vec![90; 900] };
    let e = processor.process(&[strip]).unwrap_err().to_string();
    assert!(e.contains("aspect ratio") && e.contains("300 x 1"), "{e}");
}
