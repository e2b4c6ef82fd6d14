//! # vlbridge
//!
//! Hand-written WGSL compute kernels, run through `wgpu`, for the connector layers that join a
//! vision encoder to a language model.

pub mod connectors;
pub mod error;
pub mod golden;
pub mod gpu;
pub mod graph;
pub mod kernels;
pub mod pipeline;
pub mod reference;
pub mod shader;
pub mod tensor;
pub mod timing;
pub mod weights;

pub use error::{Error, Result};
pub use gpu::{Gpu, GpuOptions};
pub use graph::{Graph, Plan, TensorId};
pub use tensor::{DType, Tensor};

/// The wgpu version vlbridge is built against, for host engines sharing a device.
pub use wgpu;
