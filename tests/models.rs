//! Hugging Face model directories as transformers 5.24 saves them (tests/data/models: sharded
//! with an index, real config.json): every family loads through `from_pretrained` and matches
//! what transformers computed within atol 1e-4 + rtol 1e-3; both name forms load; every bad
//! directory is a typed error naming the file, tensor or field.

mod common;

use std::path::{Path, PathBuf};

use common::gpu;
use ntest::timeout;
use vlbridge::models::{self, HostTensor, ModelFamily, Tensors};
use vlbridge::reference::compare;
use vlbridge::weights::Weights;
use vlbridge::{Error, HostVec};

fn model_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/models").join(name)
}

/// Every tensor of a safetensors file: floats as f32, integers as u32.
fn read(path: &Path) -> Tensors {
    let file = Weights::open(path).unwrap();
    file.names()
        .unwrap()
        .into_iter()
        .map(|name| {
            let shape = file.shape(&name).unwrap();
            let data = match file.dtype(&name) {
                Ok(_) => HostVec::F32(file.f32(&name, None).unwrap()),
                Err(_) => HostVec::U32(file.i64(&name).unwrap().into_iter().map(|v| v as u32).collect()),
            };
            (name, HostTensor::new(&shape, data).unwrap())
        })
        .collect()
}

/// Runs `dir`'s connector on its `connector_inputs` and holds `primary` (and every other output
/// both sides have) to `connector_outputs` (`reference` names the stored tensor `primary` is
/// compared with, when it is not `primary` itself).
fn check_family(name: &str, family: ModelFamily, primary: &str, reference: &str) {
    let dir = model_dir(name);
    let model = models::from_pretrained(gpu(), &dir).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(model.family(), family, "{name}");
    let got = model.run(&read(&dir.join("connector_inputs.safetensors"))).unwrap_or_else(|e| panic!("{name}: {e}"));
    let want = read(&dir.join("connector_outputs.safetensors"));
    assert!(got.contains_key(primary), "{name}: no `{primary}` output");
    for (output, tensor) in &got {
        let stored = if output == primary { reference } else { output.as_str() };
        let Some(expected) = want.get(stored) else { continue };
        assert_eq!(tensor.shape, expected.shape, "{name}: {output} shape");
        let cmp = compare(tensor.data.as_f32().unwrap(), &expected.data.to_f64(), 1e-4, 1e-3);
        assert!(cmp.passed(), "{name}: {output} vs {stored}: {cmp}");
    }
}

#[test]
#[timeout(300_000)]
fn llava_directories_match_transformers() {
    for name in ["llava", "llava_tanh", "llava_nobias"] {
        check_family(name, ModelFamily::Llava, "projected", "projected");
    }
    // bf16 weights read as stored, f32 features: transformers' f32 evaluation of the same
    // bf16 weights on the unrounded features (README: projected_f32ref_f32in).
    check_family("llava_bf16", ModelFamily::Llava, "projected", "projected_f32ref_f32in");
}

#[test]
#[timeout(300_000)]
fn llava_next_and_onevision_pack_as_transformers_does() {
    check_family("llava_next", ModelFamily::LlavaNext, "packed", "packed");
    check_family("llava_onevision", ModelFamily::LlavaOnevision, "packed", "packed");
    // SigLIP-so400m's geometry: 384-pixel tiles of 14-pixel patches (27 per side), the default
    // pinpoints, with and without the anyres_max_9 resize.
    check_family("llava_onevision_384", ModelFamily::LlavaOnevision, "packed", "packed");
    check_family("llava_onevision_384_max9", ModelFamily::LlavaOnevision, "packed", "packed");
}

/// transformers' tiles and packed tokens for many image sizes at the published geometries
/// (LLaVA-NeXT 336/14, LLaVA-OneVision 384/14, default pinpoints; scripts/make_anyres_cases.py).
#[test]
fn anyres_tiles_and_tokens_match_transformers_at_published_geometries() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/configs/anyres_token_counts.json");
    let table: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for (name, geometry) in table.as_object().unwrap() {
        let int = |v: &serde_json::Value| v.as_u64().unwrap() as usize;
        let pinpoints: Vec<(usize, usize)> =
            geometry["image_grid_pinpoints"].as_array().unwrap().iter().map(|p| (int(&p[0]), int(&p[1]))).collect();
        let (tile, patch) = (int(&geometry["image_size"]), int(&geometry["patch_size"]));
        for case in geometry["cases"].as_array().unwrap() {
            let hw = (int(&case["image_size"][0]), int(&case["image_size"][1]));
            let mut layout = vlbridge::ops::AnyResLayout::new(hw, &pinpoints, tile, patch).unwrap();
            if name.contains("onevision") {
                layout = layout.with_max_patches(9);
            }
            assert_eq!(layout.tiles(), int(&case["tiles"]), "{name} {hw:?}: tiles");
            assert_eq!(layout.tokens(), int(&case["tokens"]), "{name} {hw:?}: tokens");
        }
    }
}

#[test]
#[timeout(300_000)]
fn blip2_runs_qformer_and_language_projection() {
    check_family("blip2", ModelFamily::Blip2, "language_model_inputs", "language_model_inputs");
}

#[test]
#[timeout(300_000)]
fn merger_families_match_transformers() {
    check_family("qwen2_vl", ModelFamily::Qwen2Vl, "merged", "merged");
    check_family("qwen2_5_vl", ModelFamily::Qwen25Vl, "merged", "merged");
    check_family("internvl", ModelFamily::InternVl, "projected", "projected");
    check_family("smolvlm", ModelFamily::SmolVlm, "projected", "projected");
    check_family("idefics3_s3", ModelFamily::Idefics3, "projected", "projected");
    check_family("gemma3", ModelFamily::Gemma3, "projected", "projected");
    check_family("mistral3", ModelFamily::Mistral3, "projected", "projected");
    check_family("mllama", ModelFamily::Mllama, "cross_attention_states", "cross_attention_states");
}

/// `name`'s inputs with `input` replaced by `shape` zeros (floats).
fn with_input(name: &str, input: &str, shape: &[usize]) -> Tensors {
    let mut inputs = read(&model_dir(name).join("connector_inputs.safetensors"));
    let zeros = HostVec::F32(vec![0.0; shape.iter().product()]);
    inputs.insert(input.into(), HostTensor::new(shape, zeros).unwrap());
    inputs
}

#[test]
#[timeout(120_000)]
fn grids_the_merge_cannot_tile_are_named_input_errors() {
    let expect_input_error = |name: &str, inputs: &Tensors, input: &str| {
        let model = models::from_pretrained(gpu(), model_dir(name)).unwrap();
        match model.run(inputs) {
            Err(Error::Input { name, .. }) if name == input => {}
            other => panic!("{name}: {other:?}"),
        }
    };
    // Qwen: 4 consecutive tokens per block, 22 is not a multiple of 4.
    expect_input_error("qwen2_vl", &with_input("qwen2_vl", "x", &[22, 32]), "x");
    // InternVL / SmolVLM: 60 tokens are no square grid; 7x7 has no whole 2x2 blocks.
    expect_input_error("internvl", &with_input("internvl", "vision_features", &[2, 60, 32]), "vision_features");
    expect_input_error("smolvlm", &with_input("smolvlm", "image_hidden_states", &[2, 49, 32]), "image_hidden_states");
    // Mistral 3: image_sizes that do not add up to the tokens given.
    let mut inputs = read(&model_dir("mistral3").join("connector_inputs.safetensors"));
    inputs.insert("image_sizes".into(), HostTensor::new(&[1, 2], HostVec::U32(vec![48, 32])).unwrap());
    expect_input_error("mistral3", &inputs, "image_features");
    // Wrong channel count.
    expect_input_error("gemma3", &with_input("gemma3", "vision_outputs", &[2, 64, 31]), "vision_outputs");
}

#[test]
#[timeout(60_000)]
fn inspect_reads_config_and_headers_only() {
    let inspection = models::inspect(model_dir("blip2")).unwrap();
    assert_eq!(inspection.family, ModelFamily::Blip2);
    // The Q-Former spans shards: the index says which.
    assert!(inspection.shards().len() > 1, "{inspection}");
    assert!(inspection.tensors.iter().any(|t| t.name == "language_projection.weight"));
    // Published OneVision geometry: 384 // 14 = 27 patches per side, not an error.
    let onevision = models::inspect(model_dir("llava_onevision_384")).unwrap().to_string();
    assert!(onevision.contains("384 // 14 = 27 per side") && onevision.contains("729 per tile"), "{onevision}");
    let bf16 = models::inspect(model_dir("llava_bf16")).unwrap();
    assert_eq!(bf16.dtypes(), [vlbridge::DType::BF16]);
    assert_eq!(bf16.shards(), ["model.safetensors"]);
}

/// A copy of `name` in a fresh temporary directory, for tests that break it.
fn scratch(name: &str, tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vlbridge-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(model_dir(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    dir
}

/// Rewrites every shard of `dir` with tensor names mapped by `rename` (and the index).
fn rename_tensors(dir: &Path, rename: impl Fn(&str) -> String) {
    let index_path = dir.join("model.safetensors.index.json");
    let mut index: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&index_path).unwrap()).unwrap();
    let map = index["weight_map"].as_object().unwrap().clone();
    let mut shards: Vec<String> = map.values().map(|v| v.as_str().unwrap().to_string()).collect();
    shards.sort();
    shards.dedup();
    for shard in shards {
        let bytes = std::fs::read(dir.join(&shard)).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let renamed: Vec<(String, safetensors::tensor::TensorView)> =
            file.tensors().into_iter().map(|(n, v)| (rename(&n), v)).collect();
        std::fs::write(dir.join(&shard), safetensors::serialize(renamed, None).unwrap()).unwrap();
    }
    let renamed: serde_json::Map<String, serde_json::Value> = map.into_iter().map(|(k, v)| (rename(&k), v)).collect();
    index["weight_map"] = serde_json::Value::Object(renamed);
    std::fs::write(index_path, index.to_string()).unwrap();
}

#[test]
#[timeout(300_000)]
fn transformers_in_memory_names_load_too() {
    // transformers >= 4.52 holds LLaVA-NeXT's tensors under `model.` in memory.
    let dir = scratch("llava_next", "in-memory-names");
    rename_tensors(&dir, |n| format!("model.{n}"));
    let inspection = models::inspect(&dir).unwrap();
    assert_eq!(inspection.prefix, "model.");
    let model = models::from_pretrained(gpu(), &dir).unwrap();
    let got = model.run(&read(&dir.join("connector_inputs.safetensors"))).unwrap();
    let want = read(&dir.join("connector_outputs.safetensors"));
    let cmp = compare(got["packed"].data.as_f32().unwrap(), &want["packed"].data.to_f64(), 1e-4, 1e-3);
    assert!(cmp.passed(), "{cmp}");
    std::fs::remove_dir_all(dir).ok();
}

fn expect_error(dir: &Path) -> Error {
    match models::from_pretrained(gpu(), dir) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e,
    }
}

#[test]
#[timeout(120_000)]
fn bad_directories_are_typed_errors_naming_the_problem() {
    // No config.json.
    let dir = scratch("llava", "no-config");
    std::fs::remove_file(dir.join("config.json")).unwrap();
    assert!(matches!(expect_error(&dir), Error::File { path, .. } if path.ends_with("config.json")));

    // An unknown model_type.
    let dir = scratch("llava", "unknown-type");
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap().replace("\"llava\"", "\"llava_9000\"");
    std::fs::write(dir.join("config.json"), config).unwrap();
    assert!(
        matches!(expect_error(&dir), Error::Config { field, problem } if field == "model_type" && problem.contains("llava_9000"))
    );

    // The index names a shard that is not there (the one holding linear_1).
    let dir = scratch("llava", "missing-shard");
    let holder =
        Weights::open_dir(&dir).unwrap().shard_of("multi_modal_projector.linear_1.weight").unwrap().to_string();
    std::fs::remove_file(dir.join(&holder)).unwrap();
    assert!(matches!(expect_error(&dir), Error::File { path, .. } if path.ends_with(&holder)));

    // A truncated shard.
    let dir = scratch("llava", "truncated");
    let bytes = std::fs::read(dir.join(&holder)).unwrap();
    std::fs::write(dir.join(&holder), &bytes[..bytes.len() - 100]).unwrap();
    assert!(
        matches!(expect_error(&dir), Error::File { path, problem } if path.ends_with(&holder) && problem.contains("truncated"))
    );

    // A tensor the index lists for a shard that does not hold it.
    let dir = scratch("llava", "misplaced");
    let index_path = dir.join("model.safetensors.index.json");
    let mut index: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&index_path).unwrap()).unwrap();
    let other =
        index["weight_map"]["model.norm.weight"].as_str().unwrap_or("model-00001-of-00010.safetensors").to_string();
    index["weight_map"]["multi_modal_projector.linear_2.weight"] = serde_json::Value::String(other.clone());
    std::fs::write(&index_path, index.to_string()).unwrap();
    match expect_error(&dir) {
        Error::Weights { name, problem } => {
            assert_eq!(name, "multi_modal_projector.linear_2.weight");
            assert!(problem.contains("absent") && problem.contains(&other), "{problem}");
        }
        other => panic!("{other}"),
    }

    // A config whose dims disagree with the tensors.
    let dir = scratch("llava", "wrong-dims");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    config["text_config"]["hidden_size"] = 40.into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    match expect_error(&dir) {
        Error::Config { field, problem } => {
            assert!(field.contains("text_config.hidden_size"), "{field}");
            assert!(problem.contains("multi_modal_projector.linear_1.weight"), "{problem}");
        }
        other => panic!("{other}"),
    }

    // A setting vlbridge does not support, named with its value.
    let dir = scratch("llava", "bad-act");
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap().replace("\"gelu\"", "\"swish\"");
    std::fs::write(dir.join("config.json"), config).unwrap();
    assert!(
        matches!(expect_error(&dir), Error::Config { field, problem } if field == "projector_hidden_act" && problem.contains("swish"))
    );
    for tag in ["no-config", "unknown-type", "missing-shard", "truncated", "misplaced", "wrong-dims", "bad-act"] {
        std::fs::remove_dir_all(std::env::temp_dir().join(format!("vlbridge-{tag}-{}", std::process::id()))).ok();
    }
}

#[test]
#[timeout(120_000)]
fn missing_or_misshapen_inputs_are_named() {
    let model = models::from_pretrained(gpu(), model_dir("llava_next")).unwrap();
    let mut inputs = read(&model_dir("llava_next").join("connector_inputs.safetensors"));
    let features = inputs.remove("image_features").unwrap();
    assert!(matches!(model.run(&inputs), Err(Error::Input { name, .. }) if name == "image_features"));
    // One tile short of what the image size needs.
    let short = HostTensor::new(&[6, 16, 32], HostVec::F32(features.data.into_f32()[..6 * 16 * 32].to_vec())).unwrap();
    inputs.insert("image_features".into(), short);
    match model.run(&inputs) {
        Err(Error::Input { name, problem }) => {
            assert!(name == "image_features" && problem.contains("[7, 16, 32]"), "{problem}")
        }
        other => panic!("{other:?}"),
    }
    inputs.remove("image_size");
    assert!(matches!(model.run(&inputs), Err(Error::Input { name, .. }) if name == "image_size"));
}
