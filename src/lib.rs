//! # vlbridge
//!
//! Hand-written WGSL compute kernels, run through `wgpu`, for the connector layers that join a
//! vision encoder to a language model: the LLaVA MLP projector, the BLIP-2 Q-Former, the
//! Flamingo Perceiver Resampler and gated cross-attention, and token compression (pooling,
//! bilinear halving, ToMe, LLaVA-NeXT AnyRes). Each connector loads its weights from
//! safetensors by the upstream state-dict names, is planned once into a [`Plan`] (shapes
//! checked, pipelines built, buffers assigned) and run many times; every op has an f64 CPU
//! reference ([`mod@reference`]) that the GPU is held to.
//!
//! ## The API a linking engine uses
//! - [`Gpu`] / [`GpuOptions`]: open a device, or share the engine's with [`Gpu::from_wgpu`]
//!   ([`Gpu::from_wgpu_with`]: the same tune and forcing as [`Gpu::with_options`]).
//! - [`models`]: a Hugging Face model directory as it is, planned by
//!   [`models::Pretrained::plan`]; [`connectors`]: the connectors, loaded from weights, each
//!   planned into the one [`connectors::ConnectorPlan`] (run by name, into the engine's
//!   tensors, or into its encoder); [`weights`]: checkpoints by upstream name.
//! - [`Graph`] / [`Plan`] / [`Tensor`] / [`DType`]: build, plan and run graphs of [`ops`];
//!   [`Plan::run`] (host data), [`Plan::run_into`] (the engine's GPU tensors),
//!   [`Plan::encode`] (the engine's encoder).
//! - [`Error`]: one error type, every failure typed.
//!
//! The other public modules are the layers underneath, public for tests, benches and tools:
//! [`kernels`] (the kernel units and their registry), [`mod@reference`] (the f64 truth),
//! [`pipeline`], [`timing`] and [`diagnostics`] (driver probe, roofline ceilings). Layers
//! point one way, each module using only those under it (`tests/layers.rs` holds them so):
//! models → connectors → tune, diagnostics → graph → kernels → reference → ops → core
//! (`weights`, `timing`, `tensor`, `gpu`, `tune_table`, `pipeline`, `host`, `dtype`, `error`).
//! The graph's one lowering step (`graph::lower`) applies the rewrites each kernel unit
//! contributes for a device ([`kernels::Kernel::lower`]).
//!
//! ```
//! use vlbridge::connectors::LlavaProjector;
//! use vlbridge::ops::GeluForm;
//! use vlbridge::{DType, Gpu, reference};
//!
//! # fn main() -> vlbridge::Result<()> {
//! let gpu = Gpu::new()?; // the default adapter (lavapipe on a machine without a GPU)
//! // A small projector: 8 → 16 → 4, nn.Linear layout [out, in].
//! let ramp = |n: usize| (0..n).map(|i| ((i % 7) as f32 - 3.0) / 10.0).collect::<Vec<_>>();
//! let projector =
//!     LlavaProjector::from_f32(&gpu, [8, 16, 4], &ramp(128), &ramp(16), &ramp(64), &ramp(4), GeluForm::Erf)?;
//! let plan = projector.plan(&gpu, 1, 3)?; // one image of 3 tokens
//! let features = ramp(3 * 8);
//! let projected = plan.project(&features)?;
//! assert_eq!(plan.output_shape(), [1, 3, 4]);
//! // The f64 CPU reference of the same graph agrees to f32 rounding.
//! let check = reference::compare(&projected, &plan.project_reference(&features)?, 1e-5, 1e-5);
//! assert!(check.passed(), "{check}");
//!
//! // The same projector with f16 activations (f32 arithmetic), where the device reads f16.
//! if gpu.caps().shader_f16 {
//!     let half = projector.with_activations(DType::F16).plan(&gpu, 1, 3)?;
//!     let projected = half.project(&features)?;
//!     assert!(reference::compare(&projected, &half.project_reference(&features)?, 1e-2, 1e-2).passed());
//! }
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

pub mod connectors;
pub mod diagnostics;
pub mod dtype;
pub mod error;
pub mod files;
pub mod golden;
pub mod gpu;
pub mod graph;
pub mod host;
pub mod kernels;
pub mod models;
pub(crate) mod nn;
pub mod ops;
pub mod pipeline;
pub mod preprocess;
pub mod reference;
pub mod tensor;
pub mod timing;
pub mod towers;
pub mod tune;
pub mod tune_table;
pub mod weights;

pub use dtype::{DType, HostData, HostVec};
pub use error::{Error, Result};
pub use files::ModelFiles;
pub use gpu::{Gpu, GpuOptions};
pub use graph::{Graph, Plan, TensorId};
pub use host::{HostTensor, Tensors};
pub use tensor::Tensor;

/// The wgpu version vlbridge is built against, for host engines sharing a device.
pub use wgpu;
