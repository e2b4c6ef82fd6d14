//! `vlbridge run` and `vlbridge preprocess` on the vision directories (tests/data/vision): from
//! the processor's outputs and from image files through tower and connector, against what
//! transformers computed; bad pixels and images leave nothing at OUT; a real-size CLIP
//! directory's peak RSS (ignored: minutes in a debug build).

mod common;

use std::path::{Path, PathBuf};

use common::{matches_upstream, peak_rss, run, scratch, vlbridge};
use vlbridge::reference::compare;
use vlbridge::weights::Weights;

fn vision() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/vision")
}

/// The families whose towers have learned absolute positions (issue: vision towers, part 1).
const TOWER_FAMILIES: [&str; 8] =
    ["llava", "llava_next", "llava_onevision", "blip2", "internvl", "gemma3", "idefics3", "smolvlm"];

/// `vlbridge run` on `family`'s processor outputs (`pixel_values` ..): the path is picked from
/// the input names; returns what it wrote.
fn run_pixels(family: &str, dtype: Option<&str>, out_dir: &Path) -> Weights {
    let dir = vision().join(family);
    let out = out_dir.join(format!("{family}.safetensors"));
    let extra: Vec<&str> = dtype.map(|d| vec!["--dtype", d]).unwrap_or_default();
    let status = run(&dir, "--input", &dir.join("vision_inputs.safetensors"), &out, &extra).status;
    assert!(status.success(), "{family}: vlbridge run failed");
    Weights::open(&out).unwrap()
}

#[test]
fn run_from_pixels_matches_transformers_for_every_tower_family() {
    let out_dir = scratch("pixels");
    for family in TOWER_FAMILIES {
        let got = run_pixels(family, None, &out_dir);
        let want = Weights::open(vision().join(family).join("vision_outputs.safetensors")).unwrap();
        assert!(got.contains("image_features"), "{family}: image_features not written");
        matches_upstream(family, &got, &want, str::to_string);
    }
}

#[test]
fn run_from_pixels_on_bf16_weights_matches_the_reference_of_the_same_weights() {
    use vlbridge::models::{self, LoadOptions};
    let out_dir = scratch("pixels-bf16");
    let gpu = vlbridge::Gpu::new().unwrap();
    for family in TOWER_FAMILIES {
        let got = run_pixels(family, Some("bf16"), &out_dir);
        let dir = vision().join(family);
        let options = LoadOptions { weights: Some(vlbridge::DType::BF16), ..LoadOptions::default() };
        let model = models::from_pretrained_with(&gpu, &dir, &options).unwrap();
        let inputs = models::read_tensors(dir.join("vision_inputs.safetensors")).unwrap();
        let reference = model.reference(&inputs).unwrap();
        let cmp = compare(&got.f32("image_features", None).unwrap(), &reference["image_features"].1, 1e-4, 1e-3);
        assert!(cmp.passed(), "{family} bf16: {cmp}");
    }
}

#[test]
fn inspect_describes_the_tower() {
    let out = vlbridge(&["inspect", vision().join("llava").to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in
        ["CLIPVisionModel (3 layers, 2 used", "patch 14", "feature layer: -2", "17 per image", "GFLOP per image"]
    {
        assert!(text.contains(needle), "inspect lacks `{needle}`:\n{text}");
    }
}

#[test]
fn non_finite_pixels_are_an_error_and_nothing_is_written() {
    let out_dir = scratch("pixels-nan");
    let dir = vision().join("gemma3");
    let inputs = Weights::open(dir.join("vision_inputs.safetensors")).unwrap();
    let mut pixels = inputs.f32("pixel_values", None).unwrap();
    pixels[5] = f32::NAN;
    let shape = inputs.shape("pixel_values").unwrap();
    let bad = out_dir.join("nan_inputs.safetensors");
    let bytes = bytemuck::cast_slice(&pixels).to_vec();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, &bytes).unwrap();
    std::fs::write(&bad, safetensors::serialize([("pixel_values", view)], None).unwrap()).unwrap();
    let out = out_dir.join("out.safetensors");
    let run = run(&dir, "--input", &bad, &out, &[]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("pixel_values"), "the error names the input");
    assert!(!out.exists(), "nothing at OUT");
}

/// A real-size LLaVA-1.5-7B vision side (CLIP ViT-L/14-336 + the projector, bf16, 0.6 GB) under
/// the published config: `vlbridge run` from one 336 px image. Prints the peak RSS; the weights
/// are uploaded once in their stored dtype, so it stays under twice their bytes (the mapped file
/// and lavapipe's host-memory buffers) plus the driver. Minutes in a debug build: run with
/// `cargo test --release -p vlbridge-cli --test models -- --ignored`.
#[test]
#[ignore]
fn a_real_size_clip_directory_runs_from_pixels_within_its_weights_memory() {
    use vlbridge::connectors::LlavaProjector;
    use vlbridge::ops::GeluForm;
    use vlbridge::towers::{TowerConfig, TowerKind, TowerNorm};
    let dir = scratch("clip-real");
    let published = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/configs/llava-1.5-7b-hf/config.json");
    std::fs::copy(published, dir.join("config.json")).unwrap();
    let tower = TowerConfig {
        kind: TowerKind::Clip,
        hidden: 1024,
        intermediate: 4096,
        layers: 24,
        heads: 16,
        image_size: 336,
        patch: 14,
        act: GeluForm::Quick,
        eps: 1e-5,
        norm: TowerNorm::Layer,
    };
    let mut layout = tower.state_dict(24).prefixed("vision_tower.");
    layout.tensors.extend(LlavaProjector::state_dict([1024, 4096, 4096], true).tensors);
    // bf16 values from a small LCG, scaled per tensor as an init would (1/√fan_in for matrices).
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = layout
        .tensors
        .iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let scale = if shape.len() >= 2 { 1.0 / (shape[1..].iter().product::<usize>() as f32).sqrt() } else { 0.1 };
            let mut bytes = Vec::with_capacity(2 * n);
            for _ in 0..n {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let u = ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 3.4 * scale;
                bytes.extend_from_slice(&half::bf16::from_f32(u).to_le_bytes());
            }
            (name.clone(), shape.clone(), bytes)
        })
        .collect();
    let weight_bytes: usize = data.iter().map(|d| d.2.len()).sum();
    let views = data.iter().map(|(name, shape, bytes)| {
        (name.as_str(), safetensors::tensor::TensorView::new(safetensors::Dtype::BF16, shape.clone(), bytes).unwrap())
    });
    std::fs::write(dir.join("model.safetensors"), safetensors::serialize(views, None).unwrap()).unwrap();
    drop(data);
    let pixels: Vec<f32> = (0..3 * 336 * 336).map(|i| ((i % 251) as f32 / 125.0) - 1.0).collect();
    let view = safetensors::tensor::TensorView::new(
        safetensors::Dtype::F32,
        vec![1, 3, 336, 336],
        bytemuck::cast_slice(&pixels),
    )
    .unwrap();
    std::fs::write(dir.join("pixels.safetensors"), safetensors::serialize([("pixel_values", view)], None).unwrap())
        .unwrap();
    let out = dir.join("out.safetensors");
    let run = run(&dir, "--input", &dir.join("pixels.safetensors"), &out, &[]);
    assert!(run.status.success());
    let mib = weight_bytes as f64 / (1 << 20) as f64;
    let rss = peak_rss(&run);
    println!("real-size CLIP + projector: {mib:.0} MiB of bf16 weights, peak RSS of vlbridge run {rss:.0} MiB");
    assert_eq!(Weights::open(&out).unwrap().shape("image_features").unwrap(), [576, 4096]);
    assert!(rss < 2.0 * mib + 400.0, "peak RSS {rss:.0} MiB for {mib:.0} MiB of weights");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn run_from_an_image_file_matches_transformers_end_to_end() {
    let out_dir = scratch("image");
    for family in TOWER_FAMILIES {
        let dir = vision().join(family);
        let out = out_dir.join(format!("{family}.safetensors"));
        let photo = dir.join("preprocess/photo.png");
        let run = run(&dir, "--image", &photo, &out, &[]);
        assert!(run.status.success(), "{family}: vlbridge run --image failed");
        let got = Weights::open(&out).unwrap();
        let want = Weights::open(dir.join("preprocess/photo_features.safetensors")).unwrap();
        let expected: Vec<f64> = want.f32("image_features_slow", None).unwrap().into_iter().map(f64::from).collect();
        let cmp = compare(&got.f32("image_features", None).unwrap(), &expected, 1e-4, 1e-3);
        assert!(cmp.passed(), "{family}: photo -> image_features: {cmp}");
    }
}

/// `--json`: one object with every stage's time, the tower's and connector's from a profiled
/// run of the same plan, over a batch of two images (a progress bar goes to stderr).
#[test]
fn run_json_reports_each_stage_of_a_batch() {
    let out_dir = scratch("json");
    let dir = vision().join("llava");
    let out = out_dir.join("features.safetensors");
    let photo = dir.join("preprocess/photo.png");
    let small = dir.join("preprocess/small.png");
    let extra = ["--image", small.to_str().unwrap(), "--json"];
    let run = run(&dir, "--image", &photo, &out, &extra);
    assert!(run.status.success(), "vlbridge run --json failed");
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).expect("stdout is one JSON object");
    assert_eq!(report["images"], 2);
    for stage in ["decode_ms", "load_ms", "preprocess_ms", "run_ms", "tower_ms", "connector_ms"] {
        let ms = report[stage].as_f64().unwrap_or(-1.0);
        assert!(ms > 0.0, "{stage}: {ms}");
    }
    // The tower (CLIP layers) costs more than the two-GEMM projector.
    assert!(report["tower_ms"].as_f64() > report["connector_ms"].as_f64(), "{report}");
    // Both images' tokens, one after the other.
    let one = Weights::open(dir.join("preprocess/photo_features.safetensors")).unwrap();
    let rows = one.shape("image_features_slow").unwrap()[0];
    assert_eq!(report["outputs"]["image_features"][0], 2 * rows);
    assert!(Weights::open(&out).is_ok());
    std::fs::remove_dir_all(out_dir).ok();
}

#[test]
fn preprocess_writes_what_the_pillow_backend_returns() {
    let out_dir = scratch("preprocess");
    for family in TOWER_FAMILIES {
        let dir = vision().join(family);
        for image in ["photo", "synthetic", "small"] {
            let out = out_dir.join(format!("{family}-{image}.safetensors"));
            let png = dir.join(format!("preprocess/{image}.png"));
            let run = vlbridge(&[
                "preprocess",
                "--model",
                dir.to_str().unwrap(),
                "--image",
                png.to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
            ]);
            assert!(run.status.success(), "{family}/{image}: vlbridge preprocess failed");
            let got = Weights::open(&out).unwrap();
            let want = Weights::open(dir.join(format!("preprocess/{image}.safetensors"))).unwrap();
            let expected: Vec<f64> = want.f32("pixel_values_slow", None).unwrap().into_iter().map(f64::from).collect();
            let cmp = compare(&got.f32("pixel_values", None).unwrap(), &expected, 1e-6, 0.0);
            assert!(cmp.passed(), "{family}/{image}: {cmp}");
            for name in got.names().unwrap().into_iter().filter(|n| n != "pixel_values") {
                assert_eq!(got.i64(&name).unwrap(), want.i64(&name).unwrap(), "{family}/{image}: {name}");
            }
        }
    }
}

#[test]
fn a_corrupt_image_is_an_error_naming_it_and_nothing_is_written() {
    let out_dir = scratch("image-bad");
    let dir = vision().join("llava");
    let png = std::fs::read(dir.join("preprocess/photo.png")).unwrap();
    let bad = out_dir.join("cut.png");
    std::fs::write(&bad, &png[..png.len() / 2]).unwrap();
    let out = out_dir.join("out.safetensors");
    let run = run(&dir, "--image", &bad, &out, &[]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("cut.png"), "the error names the file");
    assert!(!out.exists(), "nothing at OUT");
}
