//! `vlbridge run` and `vlbridge inspect` on the model directories transformers saved
//! (tests/data/models), as a user runs them: outputs within atol 1e-4 + rtol 1e-3 of what
//! transformers computed, nothing left at OUT on an error, and a connector loaded next to a
//! multi-GB language-model shard without reading it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vlbridge::reference::compare;
use vlbridge::weights::Weights;

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/models")
}

fn vlbridge(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_vlbridge")).args(args).output().expect("run vlbridge");
    println!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vlbridge-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// `vlbridge run` on `name`'s inputs; every output it writes that transformers also wrote
/// matches (`primary`, which must be there, against `reference`).
fn run_family(name: &str, primary: &str, reference: &str, out_dir: &Path) {
    let dir = models().join(name);
    let out = out_dir.join(format!("{name}.safetensors"));
    let status = vlbridge(&[
        "run",
        "--model",
        dir.to_str().unwrap(),
        "--input",
        dir.join("connector_inputs.safetensors").to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(status.status.success(), "{name}: vlbridge run failed");
    let got = Weights::open(&out).unwrap();
    let want = Weights::open(dir.join("connector_outputs.safetensors")).unwrap();
    assert!(got.contains(primary), "{name}: {primary} not written");
    for output in got.names().unwrap() {
        let stored = if output == primary { reference.to_string() } else { output.clone() };
        if !want.contains(&stored) {
            continue;
        }
        assert_eq!(got.shape(&output).unwrap(), want.shape(&stored).unwrap(), "{name}: {output}");
        let expected: Vec<f64> = want.f32(&stored, None).unwrap().into_iter().map(f64::from).collect();
        let cmp = compare(&got.f32(&output, None).unwrap(), &expected, 1e-4, 1e-3);
        assert!(cmp.passed(), "{name}: {output}: {cmp}");
    }
}

#[test]
fn run_matches_transformers_for_every_family() {
    let out = scratch("run");
    for (name, primary, reference) in [
        ("llava", "projected", "projected"),
        ("llava_tanh", "projected", "projected"),
        ("llava_nobias", "projected", "projected"),
        ("llava_bf16", "projected", "projected_f32ref_f32in"),
        ("llava_next", "packed", "packed"),
        ("llava_onevision", "packed", "packed"),
        ("blip2", "language_model_inputs", "language_model_inputs"),
        ("qwen2_vl", "merged", "merged"),
        ("qwen2_5_vl", "merged", "merged"),
        ("internvl", "projected", "projected"),
        ("smolvlm", "projected", "projected"),
        ("idefics3_s3", "projected", "projected"),
        ("gemma3", "projected", "projected"),
        ("mistral3", "projected", "projected"),
        ("mllama", "cross_attention_states", "cross_attention_states"),
    ] {
        run_family(name, primary, reference, &out);
    }
    std::fs::remove_dir_all(out).ok();
}

#[test]
fn run_with_f16_storage_stays_within_f16_error() {
    let dir = models().join("llava");
    let out = scratch("run-f16").join("projected.safetensors");
    let args = ["run", "--model", dir.to_str().unwrap(), "--input"];
    let input = dir.join("connector_inputs.safetensors");
    let status = vlbridge(
        &[&args[..], &[input.to_str().unwrap(), "--output", out.to_str().unwrap(), "--dtype", "f16"]].concat(),
    );
    assert!(status.status.success());
    let (got, want) = (Weights::open(&out).unwrap(), Weights::open(dir.join("connector_outputs.safetensors")).unwrap());
    let expected: Vec<f64> = want.f32("projected", None).unwrap().into_iter().map(f64::from).collect();
    let got = got.f32("projected", None).unwrap();
    // f16 weights and activations: a few f16 ulps of O(1) outputs.
    assert!(compare(&got, &expected, 1e-2, 1e-2).passed());
    assert!(!compare(&got, &expected, 1e-6, 0.0).passed(), "f16 storage left no trace: was it used?");
}

#[test]
fn inspect_describes_every_directory() {
    for entry in std::fs::read_dir(models()).unwrap() {
        let dir = entry.unwrap().path();
        if dir.join("config.json").exists() {
            let out = vlbridge(&["inspect", dir.to_str().unwrap()]);
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{}", dir.display());
            assert!(text.contains("family:") && text.contains("shards holding the connector"), "{text}");
        }
    }
}

#[test]
fn a_failed_run_leaves_nothing_at_the_output() {
    let dir = models().join("llava_next");
    let scratch = scratch("failed-run");
    let out = scratch.join("out.safetensors");
    // The llava inputs lack `image_size`, which llava_next needs.
    let wrong = models().join("llava/connector_inputs.safetensors");
    let status = vlbridge(&[
        "run",
        "--model",
        dir.to_str().unwrap(),
        "--input",
        wrong.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(!status.status.success());
    assert!(String::from_utf8_lossy(&status.stderr).contains("image_size"));
    assert!(std::fs::read_dir(&scratch).unwrap().next().is_none(), "something was left in {}", scratch.display());
    std::fs::remove_dir_all(scratch).ok();
}

/// Writes a safetensors file of `tensors` (name, shape, f16 values all `value`).
fn write_f16(path: &Path, tensors: &[(&str, Vec<usize>)], value: f32) {
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, s)| {
            ((*n).to_string(), s.clone(), half::f16::from_f32(value).to_le_bytes().repeat(s.iter().product()))
        })
        .collect();
    let views = data.iter().map(|(n, s, b)| {
        (n.as_str(), safetensors::tensor::TensorView::new(safetensors::Dtype::F16, s.clone(), b).unwrap())
    });
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// A sparse safetensors file of one `[rows, 2048]` f16 tensor: 4 GiB that occupy no disk.
fn write_sparse_shard(path: &Path, name: &str, rows: usize) {
    let bytes = rows * 2048 * 2;
    let header = format!(r#"{{"{name}":{{"dtype":"F16","shape":[{rows},2048],"data_offsets":[0,{bytes}]}}}}"#);
    let header = format!("{header:<width$}", width = header.len().next_multiple_of(8));
    let mut start = (header.len() as u64).to_le_bytes().to_vec();
    start.extend(header.as_bytes());
    std::fs::write(path, &start).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_len((start.len() + bytes) as u64).unwrap();
}

/// The "peak RSS: X MiB" line `vlbridge` prints.
fn peak_rss(out: &Output) -> f64 {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains("peak RSS")).expect("peak RSS line");
    line.split_whitespace().rev().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_connector_loads_without_reading_the_language_model_shard() {
    // LLaVA-1.5-7B's projector in f16 (42 MB) beside a 4 GiB language-model shard.
    let dir = scratch("sparse");
    let (vision, text) = (1024, 4096);
    let config = serde_json::json!({
        "model_type": "llava",
        "architectures": ["LlavaForConditionalGeneration"],
        "vision_config": {"hidden_size": vision, "image_size": 336, "patch_size": 14},
        "text_config": {"hidden_size": text},
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let projector = [
        ("multi_modal_projector.linear_1.weight", vec![text, vision]),
        ("multi_modal_projector.linear_1.bias", vec![text]),
        ("multi_modal_projector.linear_2.weight", vec![text, text]),
        ("multi_modal_projector.linear_2.bias", vec![text]),
    ];
    write_f16(&dir.join("model-00001-of-00002.safetensors"), &projector, 0.01);
    let embed = "language_model.model.embed_tokens.weight";
    write_sparse_shard(&dir.join("model-00002-of-00002.safetensors"), embed, 1 << 20);
    let mut map = serde_json::Map::new();
    for (name, _) in &projector {
        map.insert((*name).into(), "model-00001-of-00002.safetensors".into());
    }
    map.insert(embed.into(), "model-00002-of-00002.safetensors".into());
    std::fs::write(dir.join("model.safetensors.index.json"), serde_json::json!({ "weight_map": map }).to_string())
        .unwrap();
    let features: Vec<f32> = (0..64 * vision).map(|i| (i % 13) as f32 / 13.0).collect();
    let view = safetensors::tensor::TensorView::new(
        safetensors::Dtype::F32,
        vec![1, 64, vision],
        bytemuck::cast_slice(&features),
    )
    .unwrap();
    std::fs::write(dir.join("in.safetensors"), safetensors::serialize([("image_features", view)], None).unwrap())
        .unwrap();

    let connector_mib = (2 * (text * vision + text * text + 2 * text)) as f64 / (1 << 20) as f64;
    let inspect = vlbridge(&["inspect", dir.to_str().unwrap()]);
    assert!(inspect.status.success());
    let out = dir.join("out.safetensors");
    let run = vlbridge(&[
        "run",
        "--model",
        dir.to_str().unwrap(),
        "--input",
        dir.join("in.safetensors").to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success());
    let (inspect_mib, run_mib) = (peak_rss(&inspect), peak_rss(&run));
    println!("connector {connector_mib:.1} MiB; peak RSS inspect {inspect_mib:.1} MiB, run {run_mib:.1} MiB");
    assert!(inspect_mib < 100.0, "inspect read tensor data: {inspect_mib} MiB");
    assert!(run_mib < 2.0 * connector_mib + 100.0, "run: {run_mib} MiB for a {connector_mib:.1} MiB connector");
    // Every output is 4096 · (0.01·(0.01·Σx + 0.01 ... )): just check it is finite and written.
    assert_eq!(Weights::open(&out).unwrap().shape("projected").unwrap(), [1, 64, text]);
    std::fs::remove_dir_all(dir).ok();
}

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
    let (model, input) = (dir.to_str().unwrap().to_string(), dir.join("vision_inputs.safetensors"));
    let mut args =
        vec!["run", "--model", &model, "--input", input.to_str().unwrap(), "--output", out.to_str().unwrap()];
    if let Some(d) = dtype {
        args.extend(["--dtype", d]);
    }
    assert!(vlbridge(&args).status.success(), "{family}: vlbridge run failed");
    Weights::open(&out).unwrap()
}

#[test]
fn run_from_pixels_matches_transformers_for_every_tower_family() {
    let out_dir = scratch("pixels");
    for family in TOWER_FAMILIES {
        let got = run_pixels(family, None, &out_dir);
        let want = Weights::open(vision().join(family).join("vision_outputs.safetensors")).unwrap();
        assert!(got.contains("image_features"), "{family}: image_features not written");
        for output in got.names().unwrap() {
            if !want.contains(&output) {
                continue;
            }
            assert_eq!(got.shape(&output).unwrap(), want.shape(&output).unwrap(), "{family}: {output}");
            let expected: Vec<f64> = want.f32(&output, None).unwrap().into_iter().map(f64::from).collect();
            let cmp = compare(&got.f32(&output, None).unwrap(), &expected, 1e-4, 1e-3);
            assert!(cmp.passed(), "{family}: {output}: {cmp}");
        }
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
    let run = vlbridge(&[
        "run",
        "--model",
        dir.to_str().unwrap(),
        "--input",
        bad.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
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
    let run = vlbridge(&[
        "run",
        "--model",
        dir.to_str().unwrap(),
        "--input",
        dir.join("pixels.safetensors").to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success());
    let mib = weight_bytes as f64 / (1 << 20) as f64;
    let rss = peak_rss(&run);
    println!("real-size CLIP + projector: {mib:.0} MiB of bf16 weights, peak RSS of vlbridge run {rss:.0} MiB");
    assert_eq!(Weights::open(&out).unwrap().shape("image_features").unwrap(), [576, 4096]);
    assert!(rss < 2.0 * mib + 400.0, "peak RSS {rss:.0} MiB for {mib:.0} MiB of weights");
    std::fs::remove_dir_all(dir).ok();
}

/// The families whose image processors are served.
const PROCESSOR_FAMILIES: [&str; 8] = TOWER_FAMILIES;

#[test]
fn run_from_an_image_file_matches_transformers_end_to_end() {
    let out_dir = scratch("image");
    for family in PROCESSOR_FAMILIES {
        let dir = vision().join(family);
        let out = out_dir.join(format!("{family}.safetensors"));
        let photo = dir.join("preprocess/photo.png");
        let run = vlbridge(&[
            "run",
            "--model",
            dir.to_str().unwrap(),
            "--image",
            photo.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ]);
        assert!(run.status.success(), "{family}: vlbridge run --image failed");
        let got = Weights::open(&out).unwrap();
        let want = Weights::open(dir.join("preprocess/photo_features.safetensors")).unwrap();
        let expected: Vec<f64> = want.f32("image_features_slow", None).unwrap().into_iter().map(f64::from).collect();
        let cmp = compare(&got.f32("image_features", None).unwrap(), &expected, 1e-4, 1e-3);
        assert!(cmp.passed(), "{family}: photo -> image_features: {cmp}");
    }
}

#[test]
fn preprocess_writes_what_the_pillow_backend_returns() {
    let out_dir = scratch("preprocess");
    for family in PROCESSOR_FAMILIES {
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
    let run = vlbridge(&[
        "run",
        "--model",
        dir.to_str().unwrap(),
        "--image",
        bad.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("cut.png"), "the error names the file");
    assert!(!out.exists(), "nothing at OUT");
}
