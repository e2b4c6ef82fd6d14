//! Shared by the GPU test binaries: one device per process, and data helpers.
#![allow(dead_code)]

pub mod attention;

use std::sync::OnceLock;

use proptest::prelude::*;
use vlbridge::kernels::Case;
use vlbridge::reference::Comparison;
use vlbridge::{Gpu, GpuOptions, Graph, Plan};

fn open(options: GpuOptions) -> Gpu {
    Gpu::with_options(&options).unwrap_or_else(|e| panic!("tests need a GPU adapter (run scripts/setup.sh): {e}"))
}

/// The environment's options, with GEMM input norms and whole sublayers fused even on lavapipe
/// (which splits them by default): the kernels under test are the fused ones;
/// `tests/kernels.rs` and `tests/sublayers.rs` hold the split forms to them.
fn env() -> GpuOptions {
    GpuOptions::from_env()
        .expect("VLBRIDGE_BACKEND / VLBRIDGE_ADAPTER / VLBRIDGE_FORCE")
        .force("input_norm", "fused")
        .force("sublayers", "fused")
}

/// The default adapter (lavapipe in CI), opened once per test binary.
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| open(env()))
}

/// The same adapter with no optional features: exercises the portable kernel variants.
pub fn minimal_gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| open(GpuOptions { minimal_features: true, ..env() }))
}

/// The default adapter with storage bindings capped at 16 KiB: GEMM weights over that are
/// bound in chunks of rows.
pub fn small_binding_gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| open(GpuOptions { max_storage_binding: Some(16 << 10), ..env() }))
}

/// The default adapter with `variant` forced for `kernel` (one device per pair, kept for the
/// process).
pub fn forced_gpu(kernel: &str, variant: &str) -> &'static Gpu {
    static GPUS: OnceLock<std::sync::Mutex<Vec<(String, &'static Gpu)>>> = OnceLock::new();
    let key = format!("{kernel}={variant}");
    let mut gpus = GPUS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, gpu)) = gpus.iter().find(|(k, _)| *k == key) {
        return gpu;
    }
    let gpu: &'static Gpu = Box::leak(Box::new(open(env().force(kernel, variant))));
    gpus.push((key, gpu));
    gpu
}

/// Plans `case` on `gpu`, runs it and holds it to its reference and tolerance.
pub fn run_case(gpu: &Gpu, case: &Case) -> vlbridge::Result<Comparison> {
    let got = Plan::new(gpu, &Graph::from_case(gpu, case)?)?.run(&case.input_data())?;
    case.check(&got)
}

/// Sizes skewed toward the edges that break index math: 1, primes, tile sizes ± 1.
pub fn edge_size(max: usize) -> impl Strategy<Value = usize> {
    let edges: Vec<usize> = [1, 2, 3, 4, 5, 7, 8, 9, 13, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 255, 256, 257]
        .into_iter()
        .filter(|&e| e <= max)
        .collect();
    prop_oneof![prop::sample::select(edges), 1..=max]
}

/// `n` values uniform in [-scale, scale].
pub fn values(n: usize, scale: f32) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-scale..=scale, n)
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}
