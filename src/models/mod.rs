//! Hugging Face model directories as they are (`config.json`, sharded safetensors with an
//! index, or one `model.safetensors`): the family detected from `model_type`, the connector
//! built with every setting from the config, its tensors found by the on-disk checkpoint names
//! or transformers' `model.`-prefixed in-memory names, and run by the upstream input and output
//! names. [`inspect`] reads only the config and the shard headers; [`from_pretrained`] uploads
//! only the connector's tensors (a language model's shards are never opened).
//!
//! ```no_run
//! use vlbridge::models::{self, HostTensor};
//! use vlbridge::{Gpu, HostVec};
//!
//! # fn main() -> vlbridge::Result<()> {
//! let gpu = Gpu::new()?;
//! let model = models::from_pretrained(&gpu, "llava-hf/llava-1.5-7b-hf")?;
//! println!("{}", model.inspection()); // family, dims, dtypes, shards, tokens per image
//! let features = HostTensor::new(&[1, 576, 1024], HostVec::F32(vec![0.0; 576 * 1024]))?;
//! let outputs = model.run(&[("image_features".into(), features)].into())?;
//! assert_eq!(outputs["projected"].shape, [1, 576, 4096]);
//! # Ok(())
//! # }
//! ```

mod blip2;
mod config;
mod inputs;
mod inspection;
mod llava;
mod merger;
mod mllama;
mod rotary;
mod vision;

use std::path::Path;

pub use crate::host::{HostTensor, ReferenceTensors, Tensors};
pub use config::{ConfigClass, ConfigJson, FieldDefault, SubConfig, TextConfig, VisionConfig, config_classes};
pub(crate) use inputs::{input_f32, input_ints, input_shape_error};
pub use inputs::{read_tensors, tensors_of};
pub use inspection::{Inspection, TensorEntry};

use crate::connectors::{ConnectorPlan, StateDict};
use crate::dtype::{DType, HostVec};
use crate::error::{Error, Result};
use crate::files::ModelFiles;
use crate::gpu::Gpu;
use crate::graph::{DispatchTime, Graph};
use crate::preprocess::{Preprocessor, Rgb8};
use crate::timing::Timer;
use crate::weights::{ReadObserver, Weights};

/// The model families vlbridge serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFamily {
    /// LLaVA-1.5 (`llava`): the MLP projector.
    Llava,
    /// LLaVA-NeXT (`llava_next`): the projector per tile, then AnyRes packing.
    LlavaNext,
    /// LLaVA-OneVision (`llava_onevision`): as LLaVA-NeXT, with `anyres_max_N` resizing.
    LlavaOnevision,
    /// BLIP-2 (`blip-2`): query tokens, the Q-Former, `language_projection`.
    Blip2,
    /// Qwen2-VL (`qwen2_vl`): the vision tower's `PatchMerger`.
    Qwen2Vl,
    /// Qwen2.5-VL (`qwen2_5_vl`): `Qwen2_5_VLPatchMerger`.
    Qwen25Vl,
    /// InternVL (`internvl`): pixel shuffle and `InternVLMultiModalProjector`.
    InternVl,
    /// Idefics3 (`idefics3`): `Idefics3Connector`.
    Idefics3,
    /// SmolVLM / SmolVLM2 (`smolvlm`): `SmolVLMConnector`.
    SmolVlm,
    /// Gemma 3 (`gemma3`): `Gemma3MultiModalProjector`.
    Gemma3,
    /// Mistral 3 (`mistral3`): `Mistral3MultiModalProjector`.
    Mistral3,
    /// Llama 3.2 Vision (`mllama`): `multi_modal_projector`.
    Mllama,
}

/// `(model_type, family, the architecture class transformers writes)`.
const FAMILIES: [(&str, ModelFamily, &str); 12] = [
    ("llava", ModelFamily::Llava, "LlavaForConditionalGeneration"),
    ("llava_next", ModelFamily::LlavaNext, "LlavaNextForConditionalGeneration"),
    ("llava_onevision", ModelFamily::LlavaOnevision, "LlavaOnevisionForConditionalGeneration"),
    ("blip-2", ModelFamily::Blip2, "Blip2ForConditionalGeneration"),
    ("qwen2_vl", ModelFamily::Qwen2Vl, "Qwen2VLForConditionalGeneration"),
    ("qwen2_5_vl", ModelFamily::Qwen25Vl, "Qwen2_5_VLForConditionalGeneration"),
    ("internvl", ModelFamily::InternVl, "InternVLForConditionalGeneration"),
    ("idefics3", ModelFamily::Idefics3, "Idefics3ForConditionalGeneration"),
    ("smolvlm", ModelFamily::SmolVlm, "SmolVLMForConditionalGeneration"),
    ("gemma3", ModelFamily::Gemma3, "Gemma3ForConditionalGeneration"),
    ("mistral3", ModelFamily::Mistral3, "Mistral3ForConditionalGeneration"),
    ("mllama", ModelFamily::Mllama, "MllamaForConditionalGeneration"),
];

impl ModelFamily {
    /// From `model_type`, or from `architectures` when the config has no `model_type`.
    pub fn detect(config: &ConfigJson) -> Result<Self> {
        let (model_type, architectures) = config.model_type()?;
        let known = || FAMILIES.iter().map(|f| f.0).collect::<Vec<_>>().join(", ");
        if let Some(model_type) = model_type {
            return FAMILIES.iter().find(|f| f.0 == model_type).map(|f| f.1).ok_or_else(|| Error::Config {
                field: "model_type".into(),
                problem: format!("`{model_type}` is not a family vlbridge serves ({})", known()),
            });
        }
        architectures.iter().find_map(|a| FAMILIES.iter().find(|f| f.2 == a)).map(|f| f.1).ok_or_else(|| {
            Error::Config {
                field: "model_type".into(),
                problem: format!(
                    "missing, and architectures {architectures:?} name no family vlbridge serves ({})",
                    known()
                ),
            }
        })
    }

    /// The `model_type` transformers writes.
    pub fn model_type(self) -> &'static str {
        FAMILIES.iter().find(|f| f.1 == self).map_or("?", |f| f.0)
    }
}

/// A connector described from `config.json` alone, before any weight is read.
pub(crate) trait Model: Send + Sync {
    /// The upstream module(s) it reproduces.
    fn connector(&self) -> &'static str;
    /// Dims and layer counts, as (label, value).
    fn dims(&self) -> Vec<(String, String)>;
    /// Settings taken from the config that the caller needs (feature layer, strategy, ..).
    fn settings(&self) -> Vec<(String, String)>;
    /// Visual tokens (in, out), in words: what the config fixes and what the input decides.
    fn tokens(&self) -> (String, String);
    /// The config fields its tensor shapes follow, for errors.
    fn shape_fields(&self) -> &'static str;
    /// Its tensors under the on-disk checkpoint names, with the shapes the config implies.
    fn state_dict(&self) -> StateDict;
    /// Uploads its weights (`weights` finds them by the on-disk names) and returns it ready.
    fn load(&self, gpu: &Gpu, weights: &Weights, activations: DType) -> Result<Box<dyn Runner>>;
    /// The vision tower its config describes, where vlbridge serves it.
    fn tower(&self) -> Option<&vision::TowerSpec> {
        None
    }
}

/// A loaded connector, run by upstream input and output names.
pub(crate) trait Runner: Send + Sync {
    /// The input names it reads.
    fn inputs(&self) -> &'static [&'static str];
    /// Its graph for `inputs`' shapes, with their data in the graph's input order: from
    /// `pixel_values` through the tower when they are given (and the tower is loaded), else
    /// from the connector's own inputs.
    fn build(&self, inputs: &Tensors) -> Result<Built>;
    /// The inputs of its pixel path (as the processor returns them); empty without a tower.
    fn vision_inputs(&self) -> &'static [&'static str] {
        &[]
    }
}

/// A connector's graph for one set of inputs, its outputs' names (in the graph's order) and
/// the inputs as the graph takes them (by its input names, in its shapes).
pub(crate) struct Built {
    pub graph: Graph,
    pub outputs: &'static [&'static str],
    pub feeds: Tensors,
}

impl Built {
    /// A graph of one input, fed `data` under its name and shape.
    pub(crate) fn one(graph: Graph, data: &[f32], outputs: &'static [&'static str]) -> Result<Self> {
        let id = graph.inputs()[0];
        let (name, shape) = (graph.name(id).unwrap_or_default().to_string(), graph.shape(id).unwrap_or_default());
        let feeds = [(name, HostTensor::new(shape, HostVec::F32(data.to_vec()))?)].into();
        Ok(Self { graph, outputs, feeds })
    }
}

fn model(family: ModelFamily, config: &ConfigJson) -> Result<Box<dyn Model>> {
    Ok(match family {
        ModelFamily::Llava | ModelFamily::LlavaNext | ModelFamily::LlavaOnevision => {
            Box::new(llava::Llava::new(family, config)?)
        }
        ModelFamily::Blip2 => Box::new(blip2::Blip2::new(config)?),
        ModelFamily::Mllama => Box::new(mllama::Mllama::new(config)?),
        _ => Box::new(merger::MergerModel::new(family, config)?),
    })
}

/// The connector's tensors (on-disk names and shapes) that `dir`'s `config.json` implies,
/// from the config alone: what a checkpoint for it must hold.
pub fn connector_tensors(dir: impl AsRef<Path>) -> Result<StateDict> {
    let config = ConfigJson::read(dir.as_ref())?;
    Ok(model(ModelFamily::detect(&config)?, &config)?.state_dict())
}

/// Reads `dir`'s config and the headers of the shards holding the connector: the family, the
/// connector's dims and tensors, where they are. Reads no tensor data, needs no GPU. Every
/// tensor the config implies must be in the checkpoint with that shape.
pub fn inspect(dir: impl AsRef<Path>) -> Result<Inspection> {
    Ok(open(&directory(dir.as_ref())?)?.0)
}

/// A folder as model files, or an error saying it is not one.
fn directory(dir: &Path) -> Result<ModelFiles> {
    if !dir.is_dir() {
        return Err(Error::File { path: dir.display().to_string(), problem: "not a model directory".into() });
    }
    Ok(ModelFiles::Dir(dir.to_path_buf()))
}

fn open(files: &ModelFiles) -> Result<(Inspection, Box<dyn Model>, Weights)> {
    let config = ConfigJson::read_from(files)?;
    let family = ModelFamily::detect(&config)?;
    let model = model(family, &config)?;
    let weights = Weights::open_model(files)?;
    let expected = model.state_dict();
    // On-disk names, or transformers' in-memory ones (`model.` in front).
    let probe = expected.tensors.first().map(|t| t.0.clone()).unwrap_or_default();
    let prefix = if weights.contains(&probe) || !weights.contains(&format!("model.{probe}")) { "" } else { "model." };
    let weights = weights.with_prefix(prefix);
    let mut tensors = Vec::with_capacity(expected.tensors.len());
    for (name, shape) in &expected.tensors {
        let stored = weights.shape(name)?;
        if &stored != shape {
            return Err(Error::Config {
                field: model.shape_fields().into(),
                problem: format!(
                    "tensor `{prefix}{name}` is {stored:?} in the checkpoint, but config.json implies {shape:?}"
                ),
            });
        }
        tensors.push(TensorEntry {
            name: format!("{prefix}{name}"),
            shape: stored,
            dtype: weights.dtype(name)?,
            shard: weights.shard_of(name).unwrap_or_default().to_string(),
            bytes: weights.byte_len(name)?,
        });
    }
    let has_tower = model.tower().is_some_and(|t| t.present(&weights));
    let inspection = Inspection {
        dir: files.name(),
        family,
        connector: model.connector(),
        dims: model.dims(),
        settings: model.settings(),
        tokens: model.tokens(),
        tower: model.tower().map(vision::TowerSpec::describe).unwrap_or_default(),
        has_tower,
        tensors,
        prefix: prefix.into(),
    };
    Ok((inspection, model, weights))
}

/// How [`from_pretrained_with`] loads.
#[derive(Clone, Default)]
pub struct LoadOptions {
    /// Upload float weights as this type (f32, f16 or bf16) instead of the stored one.
    pub weights: Option<DType>,
    /// Store activations as f16 (f32 arithmetic; needs `SHADER_F16`) instead of f32.
    pub f16_activations: bool,
    /// Called as each tensor is read (a progress bar).
    pub observer: Option<ReadObserver>,
}

/// A model directory's connector on the GPU, run by the upstream input and output names.
pub struct Pretrained {
    gpu: Gpu,
    inspection: Inspection,
    runner: Box<dyn Runner>,
    /// Its image processor, or why there is none.
    preprocessor: std::result::Result<Preprocessor, String>,
}

impl Pretrained {
    /// What was loaded, from where.
    pub fn inspection(&self) -> &Inspection {
        &self.inspection
    }

    /// The family.
    pub fn family(&self) -> ModelFamily {
        self.inspection.family
    }

    /// The device it runs on.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// The input names [`Pretrained::run`] reads (as the upstream module calls them) on the
    /// connector path.
    pub fn input_names(&self) -> &'static [&'static str] {
        self.runner.inputs()
    }

    /// The input names of the pixel path (what the family's image processor returns), empty
    /// when the checkpoint holds no tower. [`Pretrained::run`] takes this path whenever
    /// `pixel_values` is among its inputs.
    pub fn vision_input_names(&self) -> &'static [&'static str] {
        self.runner.vision_inputs()
    }

    /// Plans the connector for inputs like `inputs` (by the upstream names: their shapes, and
    /// the values that decide the graph, such as `image_size` for AnyRes or `image_sizes` for
    /// Mistral 3). Run the plan many times, into the host's tensors or inside its encoder; its
    /// input names and shapes are [`ConnectorPlan::input_names`] and [`ConnectorPlan::shape`]
    /// (leading dimensions flattened where upstream reshapes). Missing inputs and inputs of
    /// the wrong shape are [`Error::Input`].
    pub fn plan(&self, inputs: &Tensors) -> Result<ConnectorPlan> {
        let built = self.build(inputs)?;
        ConnectorPlan::new(&self.gpu, built.graph, built.outputs)
    }

    /// Runs the connector once on `inputs` (by name): [`Pretrained::plan`], then the plan's
    /// run; returns its outputs by name.
    pub fn run(&self, inputs: &Tensors) -> Result<Tensors> {
        let built = self.build(inputs)?;
        let feeds = built.feeds;
        ConnectorPlan::new(&self.gpu, built.graph, built.outputs)?.run(&feeds)
    }

    /// [`Pretrained::run`] without blocking: the form for the web (natively it is ready at once).
    pub async fn run_async(&self, inputs: &Tensors) -> Result<Tensors> {
        let built = self.build(inputs)?;
        ConnectorPlan::new(&self.gpu, built.graph, built.outputs)?.run_async(&built.feeds).await
    }

    /// [`Pretrained::run_async`], then one more run of the same plan timed: the outputs and its
    /// milliseconds, GPU time where the device has timestamps (the first run compiles the
    /// pipelines, so the timed one does not pay for it).
    pub async fn run_timed_async(&self, inputs: &Tensors) -> Result<(Tensors, f64)> {
        let built = self.build(inputs)?;
        let plan = ConnectorPlan::new(&self.gpu, built.graph, built.outputs)?;
        let outputs = plan.run_async(&built.feeds).await?;
        let ms = plan.time_async(&built.feeds, &Timer::new(&self.gpu)).await?;
        Ok((outputs, ms))
    }

    /// [`Pretrained::run`]'s plan on `inputs` with every dispatch timed on its own
    /// ([`Plan::profile`](crate::Plan::profile)): the tower's dispatches carry the stage
    /// "tower", the connector's "connector".
    pub fn profile(&self, inputs: &Tensors) -> Result<Vec<DispatchTime>> {
        let built = self.build(inputs)?;
        let plan = ConnectorPlan::new(&self.gpu, built.graph, built.outputs)?;
        plan.profile(&built.feeds, &Timer::new(&self.gpu))
    }

    /// The graph for `inputs`; pixels without a tower in the checkpoint are an [`Error::Input`]
    /// saying so.
    fn build(&self, inputs: &Tensors) -> Result<Built> {
        if inputs.contains_key("pixel_values") && self.runner.vision_inputs().is_empty() {
            let problem = format!(
                "the checkpoint holds no vision tower: give the connector's inputs ({}) instead",
                self.input_names().join(", ")
            );
            return Err(Error::Input { name: "pixel_values".into(), problem });
        }
        self.runner.build(inputs)
    }

    /// Images to the language model's image embeddings: the directory's image processor
    /// ([`Preprocessor`], exact to Pillow), then [`Pretrained::run`] from the pixels.
    pub fn embed_images(&self, images: &[Rgb8]) -> Result<Tensors> {
        self.run(&self.preprocess(images)?)
    }

    /// What the directory's image processor returns for `images` (the inputs
    /// [`Pretrained::embed_images`] runs on).
    pub fn preprocess(&self, images: &[Rgb8]) -> Result<Tensors> {
        let processor = self
            .preprocessor
            .as_ref()
            .map_err(|problem| Error::Config { field: "preprocessor_config.json".into(), problem: problem.clone() })?;
        processor.process(images)
    }

    /// Its image processor, when the directory has one vlbridge serves.
    pub fn preprocessor(&self) -> Option<&Preprocessor> {
        self.preprocessor.as_ref().ok()
    }

    /// The f64 CPU reference of [`Pretrained::run`] on the same graph: each output by name, as
    /// (shape, values).
    pub fn reference(&self, inputs: &Tensors) -> Result<ReferenceTensors> {
        let built = self.build(inputs)?;
        let feeds = built.feeds;
        ConnectorPlan::new(&self.gpu, built.graph, built.outputs)?.reference(&feeds)
    }
}

/// Opens a Hugging Face model directory and uploads its connector (weights as stored, f32
/// activations).
pub fn from_pretrained(gpu: &Gpu, dir: impl AsRef<Path>) -> Result<Pretrained> {
    from_pretrained_with(gpu, dir, &LoadOptions::default())
}

/// [`from_pretrained`] with options.
pub fn from_pretrained_with(gpu: &Gpu, dir: impl AsRef<Path>, options: &LoadOptions) -> Result<Pretrained> {
    from_files(gpu, &directory(dir.as_ref())?, options)
}

/// [`from_pretrained_with`] wherever the directory's files are: a folder, or the files as bytes
/// (the web, where a page fetches them; shards are read in place).
pub fn from_files(gpu: &Gpu, files: &ModelFiles, options: &LoadOptions) -> Result<Pretrained> {
    let (inspection, model, weights) = open(files)?;
    let mut weights = weights.cast(options.weights);
    if let Some(observer) = &options.observer {
        weights = weights.observed(observer.clone());
    }
    let activations = if options.f16_activations { DType::F16 } else { DType::F32 };
    let runner = model.load(gpu, &weights, activations)?;
    let preprocessor = Preprocessor::from_files(files).map_err(|e| e.to_string());
    Ok(Pretrained { gpu: gpu.clone(), inspection, runner, preprocessor })
}
