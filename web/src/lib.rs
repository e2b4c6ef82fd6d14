//! vlbridge on a web page: the page's WebGPU device, a model directory given as its files, runs
//! on named typed arrays, results as typed arrays. Everything that waits on the GPU is a
//! promise; nothing blocks.
//!
//! ```js
//! import init, { Device, Model } from "./pkg/vlbridge_web.js";
//! await init();
//! const device = await Device.open();
//! const model = Model.load(device, names, bytes);          // file names, Uint8Arrays
//! const out = await model.run({ image_features: { shape: [1, 576, 1024], data: f32 } });
//! out.projected.data;                                      // Float32Array
//! ```

use js_sys::{Array, Float32Array, Object, Reflect, Uint8Array, Uint32Array};
use vlbridge::models::{self, LoadOptions, Pretrained};
use vlbridge::preprocess;
use vlbridge::{DType, Gpu, GpuOptions, HostTensor, HostVec, ModelFiles, Tensors};
use wasm_bindgen::prelude::*;

/// The page's WebGPU adapter and device.
#[wasm_bindgen]
pub struct Device {
    gpu: Gpu,
}

#[wasm_bindgen]
impl Device {
    /// Opens the page's WebGPU adapter (`navigator.gpu`) with the features vlbridge uses that it
    /// offers (subgroups, shader-f16, timestamp-query).
    pub async fn open() -> Result<Device, JsError> {
        let gpu = Gpu::open(&GpuOptions::default()).await.map_err(js_error)?;
        Ok(Device { gpu })
    }

    /// The adapter as a plain object: `name`, `backend`, `driver`, `features` (wgpu's names),
    /// `shaderF16`, `subgroups`, `timestampQuery`, `maxStorageBufferBindingSize`,
    /// `maxBufferSize`.
    pub fn info(&self) -> Result<JsValue, JsError> {
        let info = self.gpu.info();
        let features = self.gpu.features();
        let limits = self.gpu.limits();
        let names = Array::new();
        for (name, _) in features.iter_names() {
            names.push(&JsValue::from_str(name));
        }
        let object = Object::new();
        set(&object, "name", &JsValue::from_str(&info.name))?;
        set(&object, "backend", &JsValue::from_str(&format!("{:?}", info.backend)))?;
        set(&object, "driver", &JsValue::from_str(&format!("{} {}", info.driver, info.driver_info)))?;
        set(&object, "features", &names)?;
        set(&object, "shaderF16", &JsValue::from_bool(self.gpu.caps().shader_f16))?;
        set(&object, "subgroups", &JsValue::from_bool(self.gpu.caps().subgroups))?;
        let timestamps = features.contains(vlbridge::wgpu::Features::TIMESTAMP_QUERY);
        set(&object, "timestampQuery", &JsValue::from_bool(timestamps))?;
        let binding = limits.max_storage_buffer_binding_size as f64;
        set(&object, "maxStorageBufferBindingSize", &JsValue::from_f64(binding))?;
        set(&object, "maxBufferSize", &JsValue::from_f64(limits.max_buffer_size as f64))?;
        Ok(object.into())
    }
}

/// A model directory's connector (and vision tower, where the checkpoint holds one) on the
/// device.
#[wasm_bindgen]
pub struct Model {
    model: Pretrained,
}

#[wasm_bindgen]
impl Model {
    /// Loads a Hugging Face model directory given as its files: `files[i]` holds the bytes of
    /// the file named `names[i]` (`config.json`, the index, the shards, ..). `dtype` is
    /// `"f32"`, `"f16"` (needs shader-f16) or `"bf16"`; absent keeps the stored types.
    pub fn load(
        device: &Device,
        names: Vec<String>,
        files: Vec<Uint8Array>,
        dtype: Option<String>,
    ) -> Result<Model, JsError> {
        if names.len() != files.len() {
            return Err(JsError::new(&format!("{} names for {} files", names.len(), files.len())));
        }
        let files = ModelFiles::from_bytes("model", names.into_iter().zip(files.iter().map(Uint8Array::to_vec)));
        let options = match dtype.as_deref() {
            None => LoadOptions::default(),
            Some("f32") => LoadOptions { weights: Some(DType::F32), ..LoadOptions::default() },
            Some("bf16") => LoadOptions { weights: Some(DType::BF16), ..LoadOptions::default() },
            Some("f16") => LoadOptions { weights: Some(DType::F16), f16_activations: true, ..LoadOptions::default() },
            Some(other) => return Err(JsError::new(&format!("dtype `{other}` (f32, f16 or bf16)"))),
        };
        let model = models::from_files(&device.gpu, &files, &options).map_err(js_error)?;
        Ok(Model { model })
    }

    /// The names of the inputs it reads (the connector's; the pixel path's where it has a
    /// tower).
    #[wasm_bindgen(js_name = inputNames)]
    pub fn input_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.model.input_names().iter().map(|s| s.to_string()).collect();
        names.extend(self.model.vision_input_names().iter().map(|s| s.to_string()));
        names
    }

    /// Runs on `inputs`, an object of named `{ shape, data }` (data a Float32Array,
    /// Uint32Array or Uint8Array), and resolves to the outputs in the same form, data as
    /// Float32Array (integers as Uint32Array).
    pub async fn run(&self, inputs: JsValue) -> Result<JsValue, JsError> {
        let outputs = self.model.run_async(&tensors(&inputs)?).await.map_err(js_error)?;
        tensors_object(&outputs)
    }

    /// [`Model::run`], then the same plan once more timed: resolves to `{ outputs, ms, clock }`,
    /// `clock` being `"timestamps"` (GPU time, where the adapter has timestamp-query) or
    /// `"wall clock"`.
    #[wasm_bindgen(js_name = runTimed)]
    pub async fn run_timed(&self, inputs: JsValue) -> Result<JsValue, JsError> {
        let (outputs, ms) = self.model.run_timed_async(&tensors(&inputs)?).await.map_err(js_error)?;
        let timestamps = self.model.gpu().features().contains(vlbridge::wgpu::Features::TIMESTAMP_QUERY);
        let object = Object::new();
        set(&object, "outputs", &tensors_object(&outputs)?)?;
        set(&object, "ms", &JsValue::from_f64(ms))?;
        set(&object, "clock", &JsValue::from_str(if timestamps { "timestamps" } else { "wall clock" }))?;
        Ok(object.into())
    }

    /// What the directory's image processor (its `preprocessor_config.json`, given to
    /// [`Model::load`]) makes of `images`, each an encoded PNG, JPEG, WebP or GIF file: the
    /// inputs [`Model::run`] takes (`pixel_values`, `image_grid_thw`, ..).
    pub fn preprocess(&self, images: Vec<Uint8Array>) -> Result<JsValue, JsError> {
        let decoded = images
            .iter()
            .enumerate()
            .map(|(i, bytes)| preprocess::decode_bytes(&bytes.to_vec(), &format!("image {i}")))
            .collect::<vlbridge::Result<Vec<_>>>()
            .map_err(js_error)?;
        tensors_object(&self.model.preprocess(&decoded).map_err(js_error)?)
    }

    /// The model family (`llava`, `qwen2_vl`, ..).
    pub fn family(&self) -> String {
        self.model.family().model_type().to_string()
    }
}

/// The tensors of a safetensors file (a processor's saved outputs, a model's stored outputs)
/// as `{ name: { shape, data } }`: floats as Float32Array, integers as Uint32Array.
#[wasm_bindgen(js_name = readSafetensors)]
pub fn read_safetensors(bytes: Uint8Array) -> Result<JsValue, JsError> {
    let file = vlbridge::weights::Weights::from_bytes(bytes.to_vec(), "safetensors").map_err(js_error)?;
    tensors_object(&models::tensors_of(&file).map_err(js_error)?)
}

fn tensors_object(tensors: &Tensors) -> Result<JsValue, JsError> {
    let object = Object::new();
    for (name, t) in tensors {
        set(&object, name, &tensor_object(t)?)?;
    }
    Ok(object.into())
}

fn js_error(e: vlbridge::Error) -> JsError {
    JsError::new(&e.to_string())
}

fn set(object: &Object, key: &str, value: &JsValue) -> Result<(), JsError> {
    Reflect::set(object, &JsValue::from_str(key), value).map_err(|_| JsError::new(&format!("cannot set `{key}`")))?;
    Ok(())
}

/// `{ name: { shape, data } }` as host tensors.
fn tensors(inputs: &JsValue) -> Result<Tensors, JsError> {
    let mut out = Tensors::new();
    for entry in Object::entries(&Object::from(inputs.clone())).iter() {
        let pair = Array::from(&entry);
        let name = pair.get(0).as_string().unwrap_or_default();
        let value = pair.get(1);
        let field = |key: &str| Reflect::get(&value, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED);
        let bad = |problem: &str| JsError::new(&format!("input `{name}`: {problem}"));
        let shape: Vec<usize> = Array::from(&field("shape"))
            .iter()
            .map(|d| d.as_f64().filter(|d| *d >= 0.0 && d.fract() == 0.0).map(|d| d as usize))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("shape must be an array of non-negative integers"))?;
        let data = field("data");
        let data = if let Some(a) = data.dyn_ref::<Float32Array>() {
            HostVec::F32(a.to_vec())
        } else if let Some(a) = data.dyn_ref::<Uint32Array>() {
            HostVec::U32(a.to_vec())
        } else if let Some(a) = data.dyn_ref::<Uint8Array>() {
            HostVec::U8(a.to_vec())
        } else {
            return Err(bad("data must be a Float32Array, Uint32Array or Uint8Array"));
        };
        out.insert(name.clone(), HostTensor::new(&shape, data).map_err(js_error)?);
    }
    Ok(out)
}

/// A host tensor as `{ shape, data }`.
fn tensor_object(t: &HostTensor) -> Result<JsValue, JsError> {
    let object = Object::new();
    let shape = Array::new();
    for &d in &t.shape {
        shape.push(&JsValue::from_f64(d as f64));
    }
    set(&object, "shape", &shape)?;
    let data: JsValue = match &t.data {
        HostVec::F32(v) => Float32Array::from(&v[..]).into(),
        HostVec::U32(v) => Uint32Array::from(&v[..]).into(),
        HostVec::U8(v) => Uint8Array::from(&v[..]).into(),
    };
    set(&object, "data", &data)?;
    Ok(object.into())
}
