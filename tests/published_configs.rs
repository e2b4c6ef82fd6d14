//! Every config.json under `tests/data/configs/` as the hub publishes it: `inspect` reads it,
//! and its connector at real width (random bf16 weights under the on-disk names, written here
//! next to the verbatim config) loads through `from_pretrained`, runs, and matches the f64
//! reference of the same graph.

mod common;

use std::path::{Path, PathBuf};

use common::gpu;
use ntest::timeout;
use safetensors::tensor::TensorView;
use vlbridge::models::{self, HostTensor, ModelFamily, Tensors};
use vlbridge::reference::compare;
use vlbridge::{DType, HostData, HostVec};

/// A deterministic normal source (Box-Muller over a 64-bit LCG): the test needs values, not
/// statistics.
struct Normal(u64);

impl Normal {
    fn next(&mut self) -> f32 {
        let mut uniform = || {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let (u, v) = (uniform(), uniform());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }

    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

/// A model directory: the published config verbatim, one bf16 `model.safetensors` holding the
/// connector at the shapes the config implies (upstream's init scales).
fn directory_for(config_dir: &Path) -> PathBuf {
    let name = config_dir.file_name().unwrap().to_str().unwrap();
    let dir = std::env::temp_dir().join(format!("vlbridge-published-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(config_dir.join("config.json"), dir.join("config.json")).unwrap();
    let layout = models::connector_tensors(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut rng = Normal(name.len() as u64 * 7919);
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = layout
        .tensors
        .iter()
        .map(|(tensor, shape)| {
            let n = shape.iter().product();
            let values = if tensor.ends_with("weight") && shape.len() == 2 {
                rng.vec(n, 1.0 / (shape[1] as f32).sqrt())
            } else if tensor.ends_with("weight") {
                rng.vec(n, 0.1).into_iter().map(|v| 1.0 + v).collect()
            } else if tensor.ends_with("bias") {
                rng.vec(n, 0.1)
            } else {
                rng.vec(n, 1.0)
            };
            (tensor.clone(), shape.clone(), HostData::F32(&values).encode(DType::BF16).unwrap())
        })
        .collect();
    let views: Vec<(&str, TensorView<'_>)> = data
        .iter()
        .map(|(n, shape, bytes)| (n.as_str(), TensorView::new(safetensors::Dtype::BF16, shape.clone(), bytes).unwrap()))
        .collect();
    std::fs::write(dir.join("model.safetensors"), safetensors::serialize(views, None).unwrap()).unwrap();
    dir
}

/// The shape of `tensor` in the layout `dir`'s config implies.
fn shape_of(dir: &Path, tensor: &str) -> Vec<usize> {
    let layout = models::connector_tensors(dir).unwrap();
    layout.tensors.into_iter().find(|(n, _)| n == tensor).unwrap_or_else(|| panic!("no {tensor}")).1
}

fn float(shape: &[usize], rng: &mut Normal) -> HostTensor {
    HostTensor::new(shape, HostVec::F32(rng.vec(shape.iter().product(), 1.0))).unwrap()
}

/// Inputs for `family` at the checkpoint's real width, few tokens.
fn inputs(family: ModelFamily, dir: &Path) -> Tensors {
    let mut rng = Normal(17);
    let mut t = Tensors::new();
    match family {
        ModelFamily::Llava => {
            let vision = shape_of(dir, "multi_modal_projector.linear_1.weight")[1];
            t.insert("image_features".into(), float(&[1, 12, vision], &mut rng));
        }
        ModelFamily::LlavaNext => {
            let vision = shape_of(dir, "multi_modal_projector.linear_1.weight")[1];
            // An image of 300 x 500 pixels takes the 336 x 672 pinpoint: a base tile and 1 x 2
            // grid tiles of 24 x 24 patches, CLS dropped.
            t.insert("image_features".into(), float(&[3, 24 * 24, vision], &mut rng));
            t.insert("image_size".into(), HostTensor::new(&[2], HostVec::U32(vec![300, 500])).unwrap());
        }
        ModelFamily::Blip2 => {
            let encoder = shape_of(dir, "qformer.encoder.layer.0.crossattention.attention.key.weight")[1];
            t.insert("image_embeds".into(), float(&[1, 17, encoder], &mut rng));
        }
        ModelFamily::Qwen2Vl | ModelFamily::Qwen25Vl => {
            let width = shape_of(dir, "visual.merger.ln_q.weight")[0];
            t.insert("x".into(), float(&[16, width], &mut rng));
        }
        ModelFamily::Gemma3 => {
            let width = shape_of(dir, "multi_modal_projector.mm_input_projection_weight")[0];
            // Gemma 3's tower always gives 64 x 64 patches (896 / 14).
            t.insert("vision_outputs".into(), float(&[1, 64 * 64, width], &mut rng));
        }
        ModelFamily::Mistral3 => {
            let width = shape_of(dir, "multi_modal_projector.norm.weight")[0];
            // One image of 4 x 6 patches of 14 pixels.
            t.insert("image_features".into(), float(&[24, width], &mut rng));
            t.insert("image_sizes".into(), HostTensor::new(&[1, 2], HostVec::U32(vec![56, 84])).unwrap());
        }
        ModelFamily::SmolVlm | ModelFamily::Idefics3 => {
            let config = vlbridge::models::ConfigJson::read(dir).unwrap();
            let scale = config.value()["scale_factor"].as_u64().unwrap() as usize;
            let width = shape_of(dir, "model.connector.modality_projection.proj.weight")[1] / (scale * scale);
            // One tile of the tower's patch grid (image_size / patch_size per side).
            let v = &config.value()["vision_config"];
            let side = (v["image_size"].as_u64().unwrap() / v["patch_size"].as_u64().unwrap()) as usize;
            t.insert("image_hidden_states".into(), float(&[1, side * side, width], &mut rng));
        }
        other => panic!("no inputs written for {other:?} yet"),
    }
    t
}

#[test]
#[timeout(600_000)]
fn every_published_config_inspects_loads_and_matches_the_reference_at_real_width() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/configs");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("config.json").is_file())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 10, "{} published configs", dirs.len());
    for config_dir in dirs {
        let name = config_dir.file_name().unwrap().to_string_lossy().to_string();
        let dir = directory_for(&config_dir);
        let inspection = models::inspect(&dir).unwrap_or_else(|e| panic!("{name}: inspect: {e}"));
        assert_eq!(inspection.dtypes(), [DType::BF16], "{name}");
        let model = models::from_pretrained(gpu(), &dir).unwrap_or_else(|e| panic!("{name}: load: {e}"));
        let inputs = inputs(model.family(), &dir);
        let got = model.run(&inputs).unwrap_or_else(|e| panic!("{name}: run: {e}"));
        let want = model.reference(&inputs).unwrap();
        assert_eq!(got.len(), want.len(), "{name}");
        for (output, (shape, values)) in &want {
            let tensor = &got[output];
            assert_eq!(&tensor.shape, shape, "{name}: {output}");
            let cmp = compare(tensor.data.as_f32().unwrap(), values, 1e-4, 1e-3);
            assert!(cmp.passed(), "{name}: {output}: {cmp}");
        }
        println!(
            "{name}: {} ({} tensors, bf16) runs and matches",
            inspection.family.model_type(),
            inspection.tensors.len()
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
