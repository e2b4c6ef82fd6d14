//! `vlbridge demo --towers`: the vision towers at their checkpoints' sizes, timed beside the
//! LLaVA-1.5 projector's GEMMs and checked one layer deep against the f64 reference.

use super::Args;
use crate::towers;
use crate::util::median;
use vlbridge::reference;
use vlbridge::timing::Timer;
use vlbridge::{DType, Gpu, Result};

/// Each kernel's share of a profiled run, largest first ("linear 71%, attention_flash 19%, ..").
fn time_by_kernel(profile: &[vlbridge::graph::DispatchTime]) -> String {
    let mut totals: Vec<(&str, f64)> = Vec::new();
    for d in profile {
        match totals.iter_mut().find(|(k, _)| *k == d.kernel) {
            Some((_, ms)) => *ms += d.ms,
            None => totals.push((d.kernel, d.ms)),
        }
    }
    totals.sort_by(|a, b| b.1.total_cmp(&a.1));
    let all: f64 = totals.iter().map(|t| t.1).sum();
    let share = |(kernel, ms): &(&str, f64)| format!("{kernel} {:.0}%", 100.0 * ms / all.max(f64::MIN_POSITIVE));
    totals.iter().map(share).collect::<Vec<_>>().join(", ")
}

/// Each tower of [`towers::all`] (bf16 weights, f32 activations): the full-depth plan timed
/// (dispatches, peak activation bytes, GFLOP/s, each kernel's share of a profiled run), its
/// one-layer version at full width checked against the f64 reference (a full-depth f64 run
/// takes minutes). Each timed run follows a run of the LLaVA-1.5 projector's GEMMs (bf16
/// weights, 576 rows), so the two rates compare under the same conditions even where the
/// machine's speed drifts (shared CPUs do).
pub(super) fn tower_rows(gpu: &Gpu, args: &Args, pattern: &str) -> Result<()> {
    let chosen = regex::Regex::new(pattern)
        .map_err(|e| vlbridge::Error::Config { field: "--towers".into(), problem: e.to_string() })?;
    println!(
        "{:<48} {:>6} {:>6} {:>10} {:>8} {:>9} {:>10} {:>11} {:>11} {:>9} {:>9} {:>8} {:>10}  check (1 layer)",
        "tower",
        "layers",
        "tokens",
        "dispatches",
        "peak MiB",
        "GFLOP",
        "first ms",
        "median ms",
        "us/tok/lay",
        "GFLOP/s",
        "GEMM",
        "ratio",
        "max rel"
    );
    let timer = Timer::new(gpu);
    let (projector, features) = towers::projector(gpu)?;
    let projector = vlbridge::Plan::new(gpu, &projector)?;
    projector.write_inputs(&[features[..].into()])?;
    let mut passed = true;
    for workload in towers::all() {
        if !chosen.is_match(workload.label) {
            continue;
        }
        let workload = match args.tower_layers {
            Some(layers) => workload.with_layers(layers),
            None => workload,
        };
        let workload = if args.tower_f16 { workload.with_activations(DType::F16) } else { workload };
        let (g, pixels) = workload.graph(gpu)?;
        let start = std::time::Instant::now();
        let plan = vlbridge::Plan::new(gpu, &g)?;
        plan.run_f32(&[&pixels])?;
        let first_ms = start.elapsed().as_secs_f64() * 1e3;
        let separate = match args.rope_separate {
            true => Some(vlbridge::Plan::new(&gpu.with_forced("rope", "separate"), &g)?),
            false => None,
        };
        if let Some(p) = &separate {
            p.run_f32(&[&pixels])?;
        }
        let (mut tower_ms, mut gemm_ms, mut separate_ms) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..args.runs.max(1) {
            gemm_ms.push(projector.time(&timer)?);
            tower_ms.push(plan.time(&timer)?);
            if let Some(p) = &separate {
                separate_ms.push(p.time(&timer)?);
            }
        }
        let median_ms = median(&mut tower_ms).unwrap_or(first_ms);
        let gemm_rate = projector.cost().flops / (median(&mut gemm_ms).unwrap_or(f64::INFINITY) * 1e6);
        let rate = plan.cost().flops / (median_ms * 1e6);
        let shares = time_by_kernel(&plan.profile(&timer)?);
        let (small, small_pixels) = workload.one_layer().graph(gpu)?;
        let got = vlbridge::Plan::new(gpu, &small)?.run_f32(&[&small_pixels])?.remove(0);
        let want = small.reference(&[small_pixels[..].into()])?.remove(0);
        // f16 storage rounds each stored activation by 2⁻¹¹ relative, a few times per layer.
        let tol = if args.tower_f16 { 1e-2 } else { 1e-3 };
        let c = reference::compare(&got, &want, tol, tol);
        passed &= c.passed();
        let (layers, tokens) = workload.size();
        let label = workload.label.split(' ').next().unwrap_or(workload.label);
        println!("{}", workload.label);
        println!(
            "{:<48} {:>6} {:>6} {:>10} {:>8.1} {:>9.1} {:>10.1} {:>11.1} {:>11.3} {:>9.2} {:>9.2} {:>7.2}x {:>10.2e}  {}",
            label,
            layers,
            tokens,
            plan.dispatches().len(),
            plan.activation_bytes() as f64 / (1 << 20) as f64,
            plan.cost().flops / 1e9,
            first_ms,
            median_ms,
            1e3 * median_ms / (tokens * layers.max(1)) as f64,
            rate,
            gemm_rate,
            rate / gemm_rate,
            c.max_rel,
            if c.passed() { "ok" } else { "FAIL" }
        );
        println!("{:<48} time by kernel: {shares}", "");
        if let (Some(p), Some(ms)) = (&separate, median(&mut separate_ms)) {
            println!(
                "{:<48} rope separate: {} dispatches, median {ms:.1} ms; fused {:.3}x its speed; time by kernel: {}",
                "",
                p.dispatches().len(),
                ms / median_ms,
                time_by_kernel(&p.profile(&timer)?)
            );
        }
    }
    if passed { Ok(()) } else { Err(vlbridge::Error::Graph("a tower failed its reference check".into())) }
}
