//! What the device itself can be trusted with and can do: the driver loop probe and the
//! roofline ceilings, run as graphs of the probe kernels (`kernels::probe`) like any other
//! kernel.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Graph, Plan};
use crate::kernels::Op;
use crate::kernels::probe::{CopyBandwidth, FmaPeak, LoopProbe};
use crate::timing::Timer;

/// Runs a loop of 10⁶ iterations and fails with [`Error::Driver`] if it stopped early (Mesa
/// 22.3's lavapipe stops at ~65,535 iterations per invocation and returns wrong results).
pub fn check_driver(gpu: &Gpu) -> Result<()> {
    let probe = LoopProbe { outer: 1000, inner: 1000 };
    let mut g = Graph::new();
    let counts = g.add(probe, &[])?;
    g.output(counts)?;
    let got = Plan::new(gpu, &g)?.run(&[])?.remove(0).to_f64();
    let want = Op::from(probe).reference(&[], &[]);
    if got != want {
        let info = gpu.info();
        return Err(Error::Driver {
            adapter: info.name.clone(),
            driver: format!("{} {}", info.driver, info.driver_info),
            problem: format!(
                "a loop of {} iterations ran {} (state {:#x}, expected {:#x}): this driver truncates long loops \
                 and every kernel result on it is wrong; install Mesa >= 23 (scripts/setup.sh does)",
                want[0], got[0], got[1] as u32, want[1] as u32
            ),
        });
    }
    Ok(())
}

/// An adapter's measured limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ceilings {
    /// Peak f32 FMA throughput, GFLOP/s (an FMA counts 2).
    pub gflops: f64,
    /// Copy bandwidth, GB/s (bytes read plus bytes written).
    pub gbps: f64,
}

impl Ceilings {
    /// The roofline: the most GFLOP/s a kernel of `intensity` FLOP per byte can reach.
    pub fn bound(&self, intensity: f64) -> f64 {
        self.gflops.min(intensity * self.gbps)
    }
}

/// Doubles `work` from `start` until one timed run lasts `min_ms`; returns (work, ms) of the
/// best of three runs at that size.
fn until_long_enough(start: u32, min_ms: f64, mut timed: impl FnMut(u32) -> Result<f64>) -> Result<(u32, f64)> {
    let mut work = start;
    loop {
        let ms = timed(work)?;
        if ms >= min_ms || work >= 1 << 20 {
            let best = [ms, timed(work)?, timed(work)?].into_iter().fold(f64::INFINITY, f64::min);
            return Ok((work, best));
        }
        work *= 2;
    }
}

/// A one-node graph of `op` on an input of `elements` f32, planned.
fn single(gpu: &Gpu, op: impl Into<Op>, elements: usize) -> Result<Plan> {
    let mut g = Graph::new();
    let x = g.input_as("src", &[elements], DType::F32)?;
    let y = g.add(op, &[x])?;
    g.output(y)?;
    Plan::new(gpu, &g)
}

/// Measures `gpu`'s ceilings with `timer`. Each microbenchmark grows until a run takes
/// `min_ms`.
pub fn measure_ceilings(gpu: &Gpu, timer: &Timer, min_ms: f64) -> Result<Ceilings> {
    // FMA: enough invocations to fill a large GPU, growing the loop.
    let invocations = 1 << 20;
    let (iterations, ms) =
        until_long_enough(16, min_ms, |iterations| single(gpu, FmaPeak { invocations, iterations }, 4)?.time(timer))?;
    let gflops = f64::from(invocations) * f64::from(iterations) * 64.0 / (ms * 1e6);

    // Copy: a buffer well past the caches (or the binding limit), copied repeatedly.
    let max = gpu.limits().max_storage_buffer_binding_size.min(256 << 20);
    let vec4s = (max / 16).min(u64::from(u32::MAX)) as usize;
    let (repeats, ms) =
        until_long_enough(1, min_ms, |repeats| single(gpu, CopyBandwidth { repeats }, vec4s * 4)?.time(timer))?;
    let gbps = 2.0 * 16.0 * vec4s as f64 * f64::from(repeats) / (ms * 1e6);
    Ok(Ceilings { gflops, gbps })
}
