//! One error type for the whole crate: every failure names what went wrong and where.

use std::fmt;

/// Everything vlbridge can report. Variants are structured so callers can match on them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No adapter matched the requested backend / name filter.
    #[error("no GPU adapter found ({wanted})")]
    NoAdapter {
        /// The backends and name filter asked for.
        wanted: String,
    },

    /// wgpu refused to create a device on the chosen adapter.
    #[error("could not open a device on adapter `{adapter}`: {reason}")]
    RequestDevice {
        /// The adapter's name.
        adapter: String,
        /// wgpu's reason.
        reason: String,
    },

    /// A WGSL shader failed to parse, validate or build into a pipeline.
    #[error("shader for kernel `{kernel}` failed to compile: {diagnostic}")]
    ShaderCompile {
        /// The kernel whose shader failed.
        kernel: &'static str,
        /// The compiler's message.
        diagnostic: String,
    },

    /// A tensor's shape does not fit what the kernel or connector expects.
    #[error("{kernel}: {what}: expected {expected}, got {got}")]
    Shape {
        /// The kernel or connector that checked it.
        kernel: &'static str,
        /// Which tensor or dimension.
        what: String,
        /// What fits.
        expected: String,
        /// What was given.
        got: String,
    },

    /// A tensor has a dtype the kernel cannot read.
    #[error("{kernel}: {what} has dtype {got}, expected {expected}")]
    DType {
        /// The kernel or component that checked it.
        kernel: &'static str,
        /// Which input.
        what: String,
        /// The dtype(s) it reads.
        expected: String,
        /// The dtype given.
        got: String,
    },

    /// The device lacks a feature the kernel needs (f16 storage without `SHADER_F16`).
    #[error("{kernel}: {what} is not supported on this device")]
    Unsupported {
        /// The kernel that needs it.
        kernel: &'static str,
        /// The missing features, and what needed them.
        what: String,
    },

    /// A size exceeds a limit of the device.
    #[error("{kernel}: {limit} of {requested} exceeds the device maximum {max}")]
    Limit {
        /// The kernel or component that checked it.
        kernel: &'static str,
        /// Which limit.
        limit: &'static str,
        /// The size asked for.
        requested: u64,
        /// The device's maximum.
        max: u64,
    },

    /// A weight is missing, misnamed, or has the wrong dtype/shape in a checkpoint.
    #[error("weight `{name}`: {problem}")]
    Weights {
        /// The upstream state-dict name.
        name: String,
        /// What is wrong with it.
        problem: String,
    },

    /// A configuration value (config.json, an option, an environment variable) is missing,
    /// malformed or not supported.
    #[error("config `{field}`: {problem}")]
    Config {
        /// The field, as the configuration spells it (`text_config.hidden_size`).
        field: String,
        /// What is wrong with it, naming the value.
        problem: String,
    },

    /// An input tensor given to a connector is missing or does not fit.
    #[error("input `{name}`: {problem}")]
    Input {
        /// The input's name (as the upstream module calls it).
        name: String,
        /// What is wrong with it.
        problem: String,
    },

    /// A file could not be read or parsed (checkpoints, manifests).
    #[error("{path}: {problem}")]
    File {
        /// The file (or what stands for one).
        path: String,
        /// What went wrong.
        problem: String,
    },

    /// The GPU reported an error (validation, out of memory, device loss) during an operation.
    #[error("GPU error during {during}: {source}")]
    Device {
        /// What vlbridge was doing.
        during: &'static str,
        /// wgpu's error.
        source: DeviceError,
    },

    /// The device computed something provably wrong (a known driver defect).
    #[error("driver defect on `{adapter}` (driver {driver}): {problem}")]
    Driver {
        /// The adapter's name.
        adapter: String,
        /// The driver's name and version.
        driver: String,
        /// The defect observed.
        problem: String,
    },

    /// A tensor of one device was given to a plan or graph of another (checked before any GPU
    /// work: wgpu would abort the process).
    #[error("{what} lives on another device ({theirs}) than the plan's ({ours})")]
    OtherDevice {
        /// Which tensor (a graph constant by name, an input or output of `run_into`).
        what: String,
        /// The plan's device.
        ours: String,
        /// The tensor's device.
        theirs: String,
    },

    /// A graph referenced a tensor id or input that does not exist or was not supplied.
    #[error("graph: {0}")]
    Graph(String),
}

/// A GPU-side error message captured from wgpu (validation, out of memory, internal, lost).
#[derive(Debug, Clone)]
pub struct DeviceError(pub String);

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeviceError {}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A [`Error::Shape`] of `kernel`: `what` was `got` where `expected` fits.
    pub fn shape(
        kernel: &'static str,
        what: impl Into<String>,
        expected: impl fmt::Display,
        got: impl fmt::Display,
    ) -> Self {
        Error::Shape { kernel, what: what.into(), expected: expected.to_string(), got: got.to_string() }
    }

    pub(crate) fn device(during: &'static str, message: impl Into<String>) -> Self {
        Error::Device { during, source: DeviceError(message.into()) }
    }
}
