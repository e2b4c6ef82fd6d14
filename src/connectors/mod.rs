//! Connectors: graphs of kernels plus weights by their upstream names.

mod llava;

pub use llava::{LlavaProjector, ProjectorPlan};
