//! The GPU context: adapter selection, device creation with the optional features we use,
//! what kernels may assume of the device ([`Caps`]), and capture of wgpu errors as
//! [`Error`]s instead of panics.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, RwLock};

use crate::error::{Error, Result};
use crate::pipeline::{Pipeline, PipelineKey};

mod caps;
mod pipelines;
pub use caps::Caps;

/// Optional device features vlbridge uses when the adapter has them and works without.
const WANTED_FEATURES: wgpu::Features = wgpu::Features::SHADER_F16
    .union(wgpu::Features::SUBGROUP)
    .union(wgpu::Features::TIMESTAMP_QUERY)
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS)
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES);

/// How to choose an adapter and what to ask of it. `Default` takes the best adapter of the
/// primary backends and GL; [`GpuOptions::from_env`] reads the environment, explicitly.
#[derive(Debug, Clone)]
pub struct GpuOptions {
    /// Backends to consider.
    pub backends: wgpu::Backends,
    /// Keep only adapters whose name contains this (case-insensitive).
    pub adapter_name: Option<String>,
    /// Request no optional features (tests use this to exercise the fallback paths).
    pub minimal_features: bool,
    /// Cap the storage binding size below the adapter's (tests use this to exercise GEMMs
    /// whose weight is bound in several chunks).
    pub max_storage_binding: Option<u64>,
    /// Kernel variants to use instead of the per-adapter choice, as (kernel, variant) names
    /// (`("linear", "portable")`): every variant can be run on any device that supports it.
    pub force_variants: Vec<(String, String)>,
    /// Ask for wgpu's `EXPERIMENTAL_COOPERATIVE_MATRIX` where the adapter offers it (the
    /// tensor-core GEMM). wgpu marks the feature experimental: it may hold bugs that reach
    /// undefined behaviour, so it is opt-in (`VLBRIDGE_COOPERATIVE_MATRIX=1`).
    pub cooperative_matrix: bool,
    /// Follow the cached measured tune of the adapter, when there is one ([`crate::tune_table`]).
    pub use_tune: bool,
    /// Where the tune cache is (default: [`crate::tune_table::cache_dir`]).
    pub tune_dir: Option<std::path::PathBuf>,
}

impl Default for GpuOptions {
    fn default() -> Self {
        Self {
            backends: wgpu::Backends::PRIMARY | wgpu::Backends::GL,
            adapter_name: None,
            minimal_features: false,
            max_storage_binding: None,
            force_variants: Vec::new(),
            cooperative_matrix: false,
            use_tune: true,
            tune_dir: None,
        }
    }
}

impl GpuOptions {
    /// Options from `VLBRIDGE_BACKEND=vulkan|metal|dx12|gl|auto`, `VLBRIDGE_ADAPTER=<substring>`
    /// and `VLBRIDGE_FORCE=<kernel>=<variant>[,..]`.
    pub fn from_env() -> Result<Self> {
        let mut options = Self::default();
        if let Ok(name) = std::env::var("VLBRIDGE_BACKEND") {
            options.backends = parse_backends(&name)?;
        }
        options.adapter_name = std::env::var("VLBRIDGE_ADAPTER").ok().filter(|s| !s.is_empty());
        if let Ok(forced) = std::env::var("VLBRIDGE_FORCE") {
            options.force_variants = parse_forced(&forced)?;
        }
        options.cooperative_matrix = std::env::var("VLBRIDGE_COOPERATIVE_MATRIX").is_ok_and(|v| v == "1");
        Ok(options)
    }

    /// These options with `variant` forced for `kernel`.
    pub fn force(mut self, kernel: &str, variant: &str) -> Self {
        self.force_variants.push((kernel.to_string(), variant.to_string()));
        self
    }
}

/// Parses `kernel=variant,kernel=variant`.
pub fn parse_forced(text: &str) -> Result<Vec<(String, String)>> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
                Ok((k.trim().to_string(), v.trim().to_string()))
            }
            _ => Err(Error::Config {
                field: "VLBRIDGE_FORCE".into(),
                problem: format!("`{pair}` is not kernel=variant"),
            }),
        })
        .collect()
}

/// Parses a backend name as accepted by `VLBRIDGE_BACKEND` and the CLI.
pub fn parse_backends(name: &str) -> Result<wgpu::Backends> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "" | "auto" => GpuOptions::default().backends,
        "vulkan" | "vk" => wgpu::Backends::VULKAN,
        "metal" | "mtl" => wgpu::Backends::METAL,
        "dx12" | "d3d12" => wgpu::Backends::DX12,
        "gl" | "gles" | "opengl" => wgpu::Backends::GL,
        "all" => wgpu::Backends::all(),
        other => {
            return Err(Error::NoAdapter {
                wanted: format!("unknown backend `{other}` (use vulkan, metal, dx12, gl or auto)"),
            });
        }
    })
}

fn new_instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

/// Every adapter the given backends expose, for `vlbridge info`.
#[cfg(not(target_arch = "wasm32"))]
pub fn list_adapters(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    pollster::block_on(new_instance(backends).enumerate_adapters(backends))
}

/// The adapters [`Gpu::open`] chooses from: every one natively, the one the page's WebGPU
/// grants in a browser (which lists none).
async fn candidate_adapters(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let instance = new_instance(backends);
    #[cfg(not(target_arch = "wasm32"))]
    return instance.enumerate_adapters(backends).await;
    #[cfg(target_arch = "wasm32")]
    {
        let options = wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        };
        instance.request_adapter(&options).await.into_iter().collect()
    }
}

/// A device and queue plus what vlbridge needs to know about them. A cheap handle: clones
/// share the device, its pipeline cache and its error sink, so plans and tensors each hold
/// one.
///
/// ```
/// use vlbridge::{Gpu, GpuOptions};
///
/// # fn main() -> vlbridge::Result<()> {
/// // vlbridge's own device on the adapter the environment names (explicitly) ...
/// let gpu = Gpu::with_options(&GpuOptions::from_env()?)?;
/// println!("{}", gpu.describe());
///
/// // ... or a host engine's device, which vlbridge then shares (see examples/host_engine.rs).
/// let instance = vlbridge::wgpu::Instance::default();
/// let adapter = pollster::block_on(instance.request_adapter(&Default::default()))
///     .map_err(|e| vlbridge::Error::NoAdapter { wanted: e.to_string() })?;
/// let (device, queue) = pollster::block_on(adapter.request_device(&Default::default()))
///     .map_err(|e| vlbridge::Error::RequestDevice { adapter: adapter.get_info().name, reason: e.to_string() })?;
/// let shared = Gpu::from_wgpu(device, queue);
/// assert!(shared.limits().max_storage_buffer_binding_size > 0);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Gpu {
    inner: Arc<Inner>,
}

struct Inner {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    caps: Caps,
    shared: Arc<Shared>,
}

/// What every handle of one device shares, [`Gpu::with_forced`] copies included: the error
/// sink and the pipeline cache (pipelines depend on the device, not on the variant choice).
#[derive(Default)]
struct Shared {
    uncaptured: Mutex<Vec<String>>,
    pipelines: RwLock<HashMap<PipelineKey, Arc<Pipeline>>>,
    built: AtomicUsize,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Gpu {
    /// Opens the best adapter of the default backends (discrete, then integrated, then
    /// software). Reads no environment variables: `Gpu::with_options(&GpuOptions::from_env()?)`
    /// does. Native only, as [`Gpu::with_options`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new() -> Result<Self> {
        Self::with_options(&GpuOptions::default())
    }

    /// Opens an adapter chosen by `options` (blocks until the device is granted; native only:
    /// [`Gpu::open`] is the form for every target).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_options(options: &GpuOptions) -> Result<Self> {
        pollster::block_on(Self::open(options))
    }

    /// Opens an adapter chosen by `options`, awaiting the device: on the web the page's
    /// WebGPU adapter, natively the best of the backends' (discrete, integrated, software).
    pub async fn open(options: &GpuOptions) -> Result<Self> {
        let mut adapters = candidate_adapters(options.backends).await;
        if let Some(name) = &options.adapter_name {
            let name = name.to_ascii_lowercase();
            adapters.retain(|a| a.get_info().name.to_ascii_lowercase().contains(&name));
        }
        adapters.sort_by_key(|a| device_type_rank(a.get_info().device_type));
        let adapter = adapters.into_iter().next().ok_or_else(|| Error::NoAdapter {
            wanted: format!("backends {:?}, name filter {:?}", options.backends, options.adapter_name),
        })?;
        let mut features =
            if options.minimal_features { wgpu::Features::empty() } else { adapter.features() & WANTED_FEATURES };
        let coop = wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
        let cooperative = options.cooperative_matrix && !options.minimal_features && adapter.features().contains(coop);
        if cooperative {
            features |= coop;
        }
        let info = adapter.get_info();
        // Ask for everything the adapter offers: projector weights exceed the default 128 MiB
        // storage binding limit.
        let mut limits = adapter.limits();
        if let Some(cap) = options.max_storage_binding {
            limits.max_storage_buffer_binding_size = limits.max_storage_buffer_binding_size.min(cap);
        }
        let mut desc = wgpu::DeviceDescriptor {
            label: Some("vlbridge"),
            required_features: features,
            required_limits: limits,
            ..Default::default()
        };
        if cooperative {
            // SAFETY: wgpu requires this acknowledgement for its experimental features; the
            // caller asked for it (`GpuOptions::cooperative_matrix`), and only the
            // cooperative-matrix GEMM uses the feature.
            desc.experimental_features = unsafe { wgpu::ExperimentalFeatures::enabled() };
        }
        let (device, queue) = adapter
            .request_device(&desc)
            .await
            .map_err(|e| Error::RequestDevice { adapter: info.name.clone(), reason: e.to_string() })?;
        let shapes = if cooperative { adapter.cooperative_matrix_properties() } else { Vec::new() };
        Ok(Self::assemble(device, queue, info, options, shapes))
    }

    /// Wraps a device and queue owned by a host engine, with the default options (the adapter's
    /// cached tune, no forced variants). vlbridge installs no global state on the device
    /// besides an uncaptured-error handler, which the host may replace afterwards.
    pub fn from_wgpu(device: wgpu::Device, queue: wgpu::Queue) -> Self {
        Self::from_wgpu_with(device, queue, &GpuOptions::default())
    }

    /// [`Gpu::from_wgpu`] with `options`' variant forcing and tune (`use_tune`, `tune_dir`,
    /// `force_variants`), so a host's device picks the kernels [`Gpu::with_options`] would on
    /// the same adapter. The device's features and limits are the host's: the options that
    /// shape a device request (backends, adapter name, features, binding cap) do not apply.
    pub fn from_wgpu_with(device: wgpu::Device, queue: wgpu::Queue, options: &GpuOptions) -> Self {
        let info = device.adapter_info();
        Self::assemble(device, queue, info, options, Vec::new())
    }

    fn assemble(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        options: &GpuOptions,
        cooperative_matrix: Vec<wgpu::CooperativeMatrixProperties>,
    ) -> Self {
        let tuned = match crate::tune_table::cache_dir(options.tune_dir.as_deref()) {
            Some(dir) if options.use_tune && !options.minimal_features => crate::tune_table::load(&dir, &info),
            _ => None,
        };
        let shared = Arc::new(Shared::default());
        let sink = Arc::clone(&shared);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut errors) = sink.uncaptured.lock() {
                errors.push(e.to_string());
            }
        }));
        let features = device.features();
        let limits = device.limits();
        let caps = Caps {
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            subgroup_min_size: info.subgroup_min_size,
            subgroup_max_size: info.subgroup_max_size,
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            features,
            device_type: info.device_type,
            workgroup_storage: limits.max_compute_workgroup_storage_size,
            workgroup_invocations: limits.max_compute_invocations_per_workgroup,
            storage_buffers: limits.max_storage_buffers_per_shader_stage,
            cooperative_matrix,
            forced: options.force_variants.clone(),
            tuned: tuned.map(|t| t.choices()).unwrap_or_default(),
        };
        Self { inner: Arc::new(Inner { device, queue, info, caps, shared }) }
    }

    /// The same device with `variant` forced for `kernel` (the tune times each variant so).
    pub fn with_forced(&self, kernel: &str, variant: &str) -> Gpu {
        let mut caps = self.inner.caps.clone();
        caps.forced.push((kernel.to_string(), variant.to_string()));
        let inner = Inner {
            device: self.inner.device.clone(),
            queue: self.inner.queue.clone(),
            info: self.inner.info.clone(),
            caps,
            shared: Arc::clone(&self.inner.shared),
        };
        Gpu { inner: Arc::new(inner) }
    }

    /// Whether `other` is a handle of the same device: a clone or a [`Gpu::with_forced`] copy.
    /// Two wrappers of one wgpu device ([`Gpu::from_wgpu`] called twice) count as two: wrap a
    /// device once and clone the handle. (wgpu's own device equality compares ids, which two
    /// instances reuse.)
    pub fn same_device(&self, other: &Gpu) -> bool {
        Arc::ptr_eq(&self.inner.shared, &other.inner.shared)
    }

    /// The wgpu device, for a host engine that shares it.
    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }

    /// Adapter name, backend, driver.
    pub fn info(&self) -> &wgpu::AdapterInfo {
        &self.inner.info
    }

    /// What kernels may assume of this device.
    pub fn caps(&self) -> &Caps {
        &self.inner.caps
    }

    /// Features enabled on the device.
    pub fn features(&self) -> wgpu::Features {
        self.inner.device.features()
    }

    /// Limits of the device.
    pub fn limits(&self) -> wgpu::Limits {
        self.inner.device.limits()
    }

    /// One line naming the adapter: `name (backend, driver)`; used in bench ids and reports.
    pub fn describe(&self) -> String {
        let i = &self.inner.info;
        format!("{} ({:?}, {} {})", i.name, i.backend, i.driver, i.driver_info)
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// Runs `f` inside validation and out-of-memory error scopes and returns any error wgpu
    /// reports as [`Error::Device`].
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn scoped<T>(&self, during: &'static str, f: impl FnOnce() -> T) -> Result<T> {
        let device = &self.inner.device;
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let value = f();
        let validation = pollster::block_on(validation.pop());
        let oom = pollster::block_on(oom.pop());
        if let Some(e) = validation.or(oom) {
            return Err(Error::device(during, e.to_string()));
        }
        self.check_uncaptured(during)?;
        Ok(value)
    }

    /// On the web an error scope resolves only after the browser's event loop runs, so `f`
    /// runs unscoped: errors reach the uncaptured-error sink, reported by the next check.
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn scoped<T>(&self, during: &'static str, f: impl FnOnce() -> T) -> Result<T> {
        let value = f();
        self.check_uncaptured(during)?;
        Ok(value)
    }

    /// Blocks until all submitted work is done, then reports any error the device raised.
    pub fn wait(&self, during: &'static str) -> Result<()> {
        self.inner
            .device
            .poll(wgpu::PollType::Wait { submission_index: None, timeout: None })
            .map_err(|e| Error::device(during, e.to_string()))?;
        self.check_uncaptured(during)
    }

    /// Submits pending buffer writes (weight uploads) and waits for them, so the next run is
    /// not charged for them.
    pub fn flush(&self, during: &'static str) -> Result<()> {
        self.inner.queue.submit([]);
        self.wait(during)
    }

    /// Reports any error the device raised outside a scope since the last check.
    pub(crate) fn check_uncaptured(&self, during: &'static str) -> Result<()> {
        let mut errors =
            self.inner.shared.uncaptured.lock().map_err(|_| Error::device(during, "error sink poisoned"))?;
        if errors.is_empty() {
            return Ok(());
        }
        let message = errors.join("; ");
        errors.clear();
        Err(Error::device(during, message))
    }

    /// Whether timestamp queries may be written inside compute passes.
    pub fn has_pass_timestamps(&self) -> bool {
        self.features().contains(wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)
    }
}

fn device_type_rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}
