//! `vlbridge run` and `vlbridge inspect` on the model directories transformers saved
//! (tests/data/models), as a user runs them: outputs within atol 1e-4 + rtol 1e-3 of what
//! transformers computed, nothing left at OUT on an error, and a connector loaded next to a
//! multi-GB language-model shard without reading it.

mod common;

use std::path::{Path, PathBuf};

use common::{matches_upstream, peak_rss, run, scratch, vlbridge};

use vlbridge::reference::compare;
use vlbridge::weights::Weights;

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/models")
}

/// `vlbridge run` on `name`'s inputs; every output it writes that transformers also wrote
/// matches (`primary`, which must be there, against `reference`).
fn run_family(name: &str, primary: &str, reference: &str, out_dir: &Path) {
    let dir = models().join(name);
    let out = out_dir.join(format!("{name}.safetensors"));
    let status = run(&dir, "--input", &dir.join("connector_inputs.safetensors"), &out, &[]);
    assert!(status.status.success(), "{name}: vlbridge run failed");
    let got = Weights::open(&out).unwrap();
    let want = Weights::open(dir.join("connector_outputs.safetensors")).unwrap();
    assert!(got.contains(primary), "{name}: {primary} not written");
    matches_upstream(
        name,
        &got,
        &want,
        |output| {
            if output == primary { reference.to_string() } else { output.to_string() }
        },
    );
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
    let status = run(&dir, "--input", &wrong, &out, &[]);
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

#[test]
fn a_connector_loads_without_reading_the_language_model_shard() {
    // LLaVA-1.5-7B's projector in f16 (42 MB) beside a 4 GiB language-model shard, and the
    // same directory with an 8-wide projector: what the process costs besides the connector
    // (the driver, its shader compiler), which varies by tens of MiB from run to run.
    let (vision, text) = (1024, 4096);
    let dir = llava_beside_a_language_model("sparse", vision, text);
    let baseline = llava_beside_a_language_model("sparse-baseline", 8, 8);
    let connector_mib = (2 * (text * vision + text * text + 2 * text)) as f64 / (1 << 20) as f64;
    let inspect = vlbridge(&["inspect", dir.to_str().unwrap()]);
    assert!(inspect.status.success());
    let out = dir.join("out.safetensors");
    let base = run(&baseline, "--input", &baseline.join("in.safetensors"), &baseline.join("out.safetensors"), &[]);
    assert!(base.status.success());
    let full = run(&dir, "--input", &dir.join("in.safetensors"), &out, &[]);
    assert!(full.status.success());
    let (inspect_mib, run_mib, base_mib) = (peak_rss(&inspect), peak_rss(&full), peak_rss(&base));
    println!(
        "connector {connector_mib:.1} MiB; peak RSS inspect {inspect_mib:.1} MiB, run {run_mib:.1} MiB, \
         run with an 8-wide projector {base_mib:.1} MiB"
    );
    assert!(inspect_mib < 100.0, "inspect read tensor data: {inspect_mib} MiB");
    // Weights mapped once, uploaded once (lavapipe's buffers are host memory): about twice the
    // connector; reading the 4 GiB shard would add gigabytes.
    let own = run_mib - base_mib;
    assert!(
        own < 2.0 * connector_mib + 40.0,
        "run: {own} MiB over the baseline for a {connector_mib:.1} MiB connector"
    );
    // Every output is 4096 · (0.01·(0.01·Σx + 0.01 ... )): just check it is finite and written.
    assert_eq!(Weights::open(&out).unwrap().shape("projected").unwrap(), [1, 64, text]);
    std::fs::remove_dir_all(dir).ok();
    std::fs::remove_dir_all(baseline).ok();
}

/// A LLaVA directory whose f16 projector (`vision` → `text` → `text`) is in one shard and a
/// sparse 4 GiB language-model tensor in another, with 64 tokens of inputs.
fn llava_beside_a_language_model(tag: &str, vision: usize, text: usize) -> PathBuf {
    let dir = scratch(tag);
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
    dir
}
