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
    check_on(gpu(), family);
}

/// [`check`] on `gpu`.
fn check_on(gpu: &vlbridge::Gpu, family: &str) {
    let dir = dir(family);
    let inputs = models::read_tensors(dir.join("vision_inputs.safetensors")).unwrap();
    let want = models::read_tensors(dir.join("vision_outputs.safetensors")).unwrap();
    let want = &want["image_features"];
    let model = models::from_pretrained(gpu, &dir).unwrap();
    assert!(!model.vision_input_names().is_empty(), "{family}: the tower was not loaded");
    let got = model.run(&inputs).unwrap();
    let got = &got["image_features"];
    assert_eq!(got.shape, want.shape, "{family}: image_features shape");
    let wide: Vec<f64> = want.data.as_f32().unwrap().iter().map(|&v| f64::from(v)).collect();
    let cmp = reference::compare(got.data.as_f32().unwrap(), &wide, ATOL, RTOL);
    assert!(cmp.passed(), "{family} f32 vs transformers: {cmp}");

    let options = LoadOptions { weights: Some(DType::BF16), ..LoadOptions::default() };
    let bf16 = models::from_pretrained_with(gpu, &dir, &options).unwrap();
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
fn qwen2_vl_rotary_tower_per_image_segments_and_merger() {
    check("qwen2_vl");
}

#[test]
#[timeout(300_000)]
fn qwen2_5_vl_windows_full_attention_layers_and_inverse_order() {
    check("qwen2_5_vl");
}

#[test]
#[timeout(300_000)]
fn mistral3_pixtral_images_of_their_own_sizes_and_merger() {
    check("mistral3");
}

/// The fused sublayers GPUs run (attention, projection and residual in one `attention_rows`
/// dispatch, the MLP in one `mlp_rows`), here forced: the segment table reaches them too.
#[test]
#[timeout(300_000)]
fn rotary_towers_with_fused_sublayers() {
    for family in ["qwen2_vl", "qwen2_5_vl", "mistral3"] {
        check_on(common::forced_gpu("sublayers", "fused"), family);
    }
}

/// The rotary turn as a node of its own after the QKV GEMM (`rope=separate`, the measured
/// baseline of the epilogue the towers run by default): the same upstream outputs.
#[test]
#[timeout(300_000)]
fn rotary_towers_with_the_turn_after_the_gemm() {
    for family in ["qwen2_vl", "qwen2_5_vl", "mistral3"] {
        check_on(common::forced_gpu("rope", "separate"), family);
    }
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

/// A copy of `family`'s directory with `config.json` edited by `edit` and, when given, one
/// tensor left out of its shard; returns the copy.
fn edited_copy(family: &str, tag: &str, edit: impl Fn(&mut serde_json::Value), drop: Option<&str>) -> PathBuf {
    let src = dir(family);
    let dst = std::env::temp_dir().join(format!("vlbridge-vision-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dst.join(path.file_name().unwrap())).unwrap();
        }
    }
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dst.join("config.json")).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(dst.join("config.json"), config.to_string()).unwrap();
    if let Some(name) = drop {
        let index_path = dst.join("model.safetensors.index.json");
        let mut index: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&index_path).unwrap()).unwrap();
        index["weight_map"].as_object_mut().unwrap().remove(name);
        std::fs::write(&index_path, index.to_string()).unwrap();
    }
    dst
}

fn load_error(dir: &std::path::Path) -> String {
    match models::from_pretrained(gpu(), dir) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
#[timeout(120_000)]
fn bad_towers_and_pixels_are_typed_errors_naming_the_problem() {
    // A feature layer past the tower.
    let d = edited_copy("llava", "layer", |c| c["vision_feature_layer"] = (-7).into(), None);
    let e = load_error(&d);
    assert!(e.contains("vision_feature_layer") && e.contains("out of range"), "{e}");
    // An activation the kernels do not have, and a norm type InternViT does not know.
    let d = edited_copy("llava", "act", |c| c["vision_config"]["hidden_act"] = "relu".into(), None);
    let e = load_error(&d);
    assert!(e.contains("vision_config.hidden_act") && e.contains("relu"), "{e}");
    let d = edited_copy("internvl", "norm", |c| c["vision_config"]["norm_type"] = "batch_norm".into(), None);
    let e = load_error(&d);
    assert!(e.contains("vision_config.norm_type") && e.contains("batch_norm"), "{e}");
    // A tower tensor missing from the shards.
    let missing = "vision_tower.encoder.layers.1.mlp.fc2.weight";
    let d = edited_copy("llava", "missing", |_| {}, Some(missing));
    let e = load_error(&d);
    assert!(e.contains(missing), "{e}");
    // Layers past the last one used are never uploaded: dropping the last layer's weights
    // (vision_feature_layer -2) still loads and runs.
    let unused = "vision_tower.encoder.layers.2.mlp.fc2.weight";
    let d = edited_copy("llava", "unused", |_| {}, Some(unused));
    let model = models::from_pretrained(gpu(), &d).unwrap();
    let inputs = models::read_tensors(dir("llava").join("vision_inputs.safetensors")).unwrap();
    assert!(model.run(&inputs).is_ok());

    // pixel_values of another size than the config's, and non-finite pixels.
    let mut small = inputs.clone();
    small.insert(
        "pixel_values".into(),
        vlbridge::HostTensor::new(&[1, 3, 42, 42], vlbridge::HostVec::F32(vec![0.5; 3 * 42 * 42])).unwrap(),
    );
    let e = model.run(&small).expect_err("a 42 px image").to_string();
    assert!(e.contains("pixel_values") && e.contains("image_size 56"), "{e}");
    let mut nan = inputs.clone();
    let t = &inputs["pixel_values"];
    let mut values = t.data.as_f32().unwrap().to_vec();
    values[7] = f32::INFINITY;
    nan.insert("pixel_values".into(), vlbridge::HostTensor::new(&t.shape, vlbridge::HostVec::F32(values)).unwrap());
    let e = model.run(&nan).expect_err("an Inf pixel").to_string();
    assert!(e.contains("pixel_values") && e.contains("finite"), "{e}");
}

/// The host's window order is upstream's: `window_index` and `cu_window_seqlens` as
/// transformers computed them for grids [1, 10, 14] and [1, 4, 6] (windows of 4 × 4 merge
/// units, partial ones at the edges); and upstream's padding where the merged grid fills whole
/// windows (a whole extra row and column of empty windows).
#[test]
#[timeout(60_000)]
fn qwen2_5_vl_window_order_is_upstreams() {
    use vlbridge::towers::{GridThw, QwenConfig, QwenKind, QwenLayout};
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir("qwen2_5_vl").join("config.json")).unwrap()).unwrap();
    let config = QwenConfig::from_json(QwenKind::Qwen25Vl, "vision_config", &config["vision_config"]).unwrap();
    let grids = [GridThw { t: 1, h: 10, w: 14 }, GridThw { t: 1, h: 4, w: 6 }];
    let layout = QwenLayout::new(&config, &grids, 164).unwrap();
    let want = models::read_tensors(dir("qwen2_5_vl").join("vision_outputs.safetensors")).unwrap();
    let ints = |name: &str| match &want[name].data {
        vlbridge::HostVec::U32(v) => v.clone(),
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(layout.window_index.as_deref(), Some(&ints("window_index")[..]));
    let mut bounds = vec![0u32];
    for &n in layout.windows.as_ref().unwrap() {
        let end = bounds[bounds.len() - 1] + n as u32;
        if end != bounds[bounds.len() - 1] {
            bounds.push(end);
        }
    }
    assert_eq!(bounds, ints("cu_window_seqlens"));
    let whole = QwenLayout::new(&config, &[GridThw { t: 1, h: 8, w: 8 }], 64).unwrap();
    assert_eq!(whole.windows, Some(vec![64, 0, 0, 0]));
    // The inverse reads every unit back to its place.
    let inverse = layout.inverse().unwrap();
    let index = layout.window_index.as_ref().unwrap();
    assert!(inverse.iter().enumerate().all(|(unit, &place)| index[place as usize] == unit as u32));
}

/// Qwen's `image_grid_thw` must account for every row of `pixel_values`, and the merge must
/// tile each grid; rows of another width and a missing grid are errors too.
#[test]
#[timeout(120_000)]
fn qwen_grids_that_do_not_fit_the_rows_are_typed_errors() {
    let model = models::from_pretrained(gpu(), dir("qwen2_5_vl")).unwrap();
    let inputs = models::read_tensors(dir("qwen2_5_vl").join("vision_inputs.safetensors")).unwrap();
    let with = |name: &str, shape: &[usize], data: vlbridge::HostVec| {
        let mut changed = inputs.clone();
        changed.insert(name.into(), vlbridge::HostTensor::new(shape, data).unwrap());
        model.run(&changed).expect_err("a bad input").to_string()
    };
    let grids = |g: &[u32]| with("image_grid_thw", &[g.len() / 3, 3], vlbridge::HostVec::U32(g.to_vec()));
    // [1, 10, 14] and [1, 4, 6] hold the 164 rows.
    let e = grids(&[1, 10, 14, 1, 4, 4]);
    assert!(e.contains("image_grid_thw") && e.contains("156 patches") && e.contains("164 rows"), "{e}");
    let e = grids(&[1, 10, 14, 1, 3, 8]);
    assert!(e.contains("image_grid_thw") && e.contains("does not tile"), "{e}");
    let e = grids(&[1, 10, 14, 0, 4, 6]);
    assert!(e.contains("image_grid_thw") && e.contains("zero side"), "{e}");
    let e = with("pixel_values", &[164, 1000], vlbridge::HostVec::F32(vec![0.5; 164_000]));
    assert!(e.contains("pixel_values") && e.contains("[patches, 1176]"), "{e}");
    let mut missing = inputs.clone();
    missing.remove("image_grid_thw");
    let e = model.run(&missing).unwrap_err().to_string();
    assert!(e.contains("image_grid_thw") && e.contains("missing"), "{e}");
}

/// Mistral 3's `image_sizes` must lie within the padded pixels, one per image, each at least a
/// patch.
#[test]
#[timeout(120_000)]
fn pixtral_sizes_past_the_padding_are_typed_errors() {
    let model = models::from_pretrained(gpu(), dir("mistral3")).unwrap();
    let inputs = models::read_tensors(dir("mistral3").join("vision_inputs.safetensors")).unwrap();
    let sizes = |s: &[u32]| {
        let mut changed = inputs.clone();
        let t = vlbridge::HostTensor::new(&[s.len() / 2, 2], vlbridge::HostVec::U32(s.to_vec())).unwrap();
        changed.insert("image_sizes".into(), t);
        model.run(&changed).expect_err("bad image_sizes").to_string()
    };
    // The pixels are padded to 84 x 84.
    let e = sizes(&[56, 84, 98, 28, 70, 42]);
    assert!(e.contains("image_sizes") && e.contains("98 x 28 px, larger than the padded pixels (84 x 84)"), "{e}");
    let e = sizes(&[56, 84, 84, 28]);
    assert!(e.contains("image_sizes") && e.contains("2 sizes for 3 images"), "{e}");
    let e = sizes(&[56, 84, 84, 10, 70, 42]);
    assert!(e.contains("image_sizes") && e.contains("smaller than one 14 px patch"), "{e}");
}

/// Llama 3.2 Vision's aspect ratio ids must be the config's, its tiles at most
/// `max_num_tiles`, its tile mask 0/1 and one per tile.
#[test]
#[timeout(120_000)]
fn mllama_ids_and_tiles_past_the_config_are_typed_errors() {
    let model = models::from_pretrained(gpu(), dir("mllama")).unwrap();
    let inputs = models::read_tensors(dir("mllama").join("vision_inputs.safetensors")).unwrap();
    let with = |name: &str, shape: &[usize], data: vlbridge::HostVec| {
        let mut changed = inputs.clone();
        changed.insert(name.into(), vlbridge::HostTensor::new(shape, data).unwrap());
        model.run(&changed).expect_err("a bad input").to_string()
    };
    // Eight supported aspect ratios: ids 0 (a padding image) to 8.
    let e = with("aspect_ratio_ids", &[2, 2], vlbridge::HostVec::U32(vec![6, 9, 3, 0]));
    assert!(e.contains("aspect_ratio_ids") && e.contains("9 is out of range") && e.contains("0..=8"), "{e}");
    let e = with("aspect_ratio_ids", &[1, 2], vlbridge::HostVec::U32(vec![6, 5]));
    assert!(e.contains("aspect_ratio_ids") && e.contains("2 ids for 2 x 2 images"), "{e}");
    let five = vec![0.25; 2 * 2 * 5 * 3 * 56 * 56];
    let e = with("pixel_values", &[2, 2, 5, 3, 56, 56], vlbridge::HostVec::F32(five));
    assert!(e.contains("pixel_values") && e.contains("5 tiles, more than max_num_tiles 4"), "{e}");
    let wide = vec![0.25; 2 * 2 * 4 * 3 * 56 * 70];
    let e = with("pixel_values", &[2, 2, 4, 3, 56, 70], vlbridge::HostVec::F32(wide));
    assert!(e.contains("pixel_values") && e.contains("expected [batch, images, 4, 3, 56, 56]"), "{e}");
    let mask = |m: Vec<u32>| with("aspect_ratio_mask", &[2, 2, m.len() / 4], vlbridge::HostVec::U32(m));
    let e = mask(vec![1, 1, 1, 2, 1, 1, 0, 0, 1, 1, 1, 0, 1, 0, 0, 0]);
    assert!(e.contains("aspect_ratio_mask") && e.contains("holds 2"), "{e}");
    let e = mask(vec![1; 8]);
    assert!(e.contains("aspect_ratio_mask") && e.contains("8 entries, expected 2 x 2 x 4"), "{e}");
}

#[test]
#[timeout(120_000)]
fn the_connector_path_keeps_working_beside_the_tower() {
    // The same directory, fed image_features instead of pixels, runs the projector alone.
    let model = models::from_pretrained(gpu(), dir("llava")).unwrap();
    let outputs = models::read_tensors(dir("llava").join("vision_outputs.safetensors")).unwrap();
    let features = outputs["projector_input"].clone();
    let got = model.run(&[("image_features".to_string(), features)].into()).unwrap();
    let want: Vec<f64> = outputs["image_features"].data.as_f32().unwrap().iter().map(|&v| f64::from(v)).collect();
    let cmp = reference::compare(got["projected"].data.as_f32().unwrap(), &want, ATOL, RTOL);
    assert!(cmp.passed(), "connector path: {cmp}");
}

#[test]
#[timeout(120_000)]
fn a_pixel_plan_runs_many_times_on_the_processor_outputs_in_one_submission() {
    let model = models::from_pretrained(gpu(), dir("llava_next")).unwrap();
    let inputs = models::read_tensors(dir("llava_next").join("vision_inputs.safetensors")).unwrap();
    let plan = model.plan(&inputs).unwrap();
    assert_eq!(plan.input_names(), ["pixel_values"]);
    // Planned as [images · tiles, 3, H, W]; fed the processor's [images, tiles, 3, H, W].
    assert_eq!(plan.shape("pixel_values").unwrap(), [14, 3, 56, 56]);
    let once = model.run(&inputs).unwrap();
    for _ in 0..2 {
        let again = plan.run(&inputs).unwrap();
        assert_eq!(again["image_features"].data.as_f32(), once["image_features"].data.as_f32());
    }
    // Per layer: QKV, attention (with its output projection where fused), MLP; no more than a
    // Q-Former layer's five.
    let dispatches = plan.plan().dispatches().len();
    let layers = 3;
    assert!(dispatches <= 5 * layers + 12, "{dispatches} dispatches: {:?}", plan.plan().dispatches());
    println!(
        "llava_next pixels -> features: {dispatches} dispatches, {} activation bytes",
        plan.plan().activation_bytes()
    );
}

#[test]
#[timeout(300_000)]
fn the_pixel_path_runs_with_f16_weights_and_activations() {
    if !gpu().features().contains(vlbridge::wgpu::Features::SHADER_F16) {
        return;
    }
    // f16 storage rounds every stored intermediate to 2⁻¹¹ relative: held to the f64 reference
    // of the same plan at 2e-2, as the demo's f16 rows.
    for family in ["llava_next", "idefics3", "blip2"] {
        let dir = dir(family);
        let options = LoadOptions { weights: Some(DType::F16), f16_activations: true, ..LoadOptions::default() };
        let model = models::from_pretrained_with(gpu(), &dir, &options).unwrap();
        let inputs = models::read_tensors(dir.join("vision_inputs.safetensors")).unwrap();
        let got = model.run(&inputs).unwrap();
        let reference = model.reference(&inputs).unwrap();
        let cmp = reference::compare(
            got["image_features"].data.as_f32().unwrap(),
            &reference["image_features"].1,
            2e-2,
            2e-2,
        );
        assert!(cmp.passed(), "{family} f16: {cmp}");
    }
}

#[test]
#[timeout(300_000)]
fn mllama_tiles_gated_embeddings_pad_pair_mask_global_layers_and_projector() {
    check("mllama");
}
