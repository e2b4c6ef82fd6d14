//! `mlp` group: the fused LLaVA projector against the unfused three-dispatch version (GEMM, GELU
//! pass, GEMM) on the same adapter, at the LLaVA-1.5 size and a small size; and the GEMM alone
//! at the projector's two shapes, with f32, f16 and bf16 weights; and the projector with f32
//! against f16 storage (weights and activations), and bf16 weights with f32 activations.
//! Throughput is reported in FLOP (criterion's "elements").
//! The adapter comes from `VLBRIDGE_BACKEND` / `VLBRIDGE_ADAPTER` (`GpuOptions::from_env`).

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vlbridge::connectors::{ConnectorPlan, LlavaProjector};
use vlbridge::ops::{Epilogue, GeluForm};
use vlbridge::{DType, Gpu, GpuOptions, Graph, Plan, Tensor};

/// Deterministic values in [-scale, scale] (no RNG needed for timing).
fn ramp(n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|i| (((i * 7919) % 2001) as f32 / 1000.0 - 1.0) * scale).collect()
}

fn adapter_tag(gpu: &Gpu) -> String {
    gpu.info().name.split_whitespace().next().unwrap_or("gpu").to_lowercase()
}

/// Writes the input and runs the plan to completion (no readback), as a host engine would.
fn timed_run(plan: &Plan, input: &[f32]) {
    plan.write_inputs(&[input.into()]).expect("write");
    plan.time(&vlbridge::timing::Timer::wall_clock(plan.gpu())).expect("run");
}

fn bench_projector(c: &mut Criterion, gpu: &Gpu, [v, h, t]: [usize; 3], tokens: usize, label: &str) {
    let projector = LlavaProjector::from_f32(
        gpu,
        [v, h, t],
        &ramp(h * v, (1.0 / v as f32).sqrt()),
        &ramp(h, 0.1),
        &ramp(t * h, (1.0 / h as f32).sqrt()),
        &ramp(t, 0.1),
        GeluForm::Erf,
    )
    .expect("projector");
    let x = ramp(tokens * v, 1.0);
    let tag = adapter_tag(gpu);
    let mut group = c.benchmark_group("mlp");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(8));
    for (name, plan) in [
        ("fused", projector.plan(gpu, 1, tokens).expect("plan")),
        (
            "unfused",
            ConnectorPlan::new(gpu, projector.unfused_graph(1, tokens).expect("graph").0, &["projected"])
                .expect("plan"),
        ),
    ] {
        group.throughput(Throughput::Elements(plan.plan().cost().flops as u64));
        group.bench_function(format!("{name}/{label}/{tag}"), |b| b.iter(|| timed_run(plan.plan(), &x)));
    }
    group.finish();
}

/// `values` stored on the GPU as `dtype`.
fn stored(gpu: &Gpu, shape: &[usize], values: &[f32], dtype: DType) -> Tensor {
    Tensor::from_f32_as(gpu, shape, values, dtype).expect("weight")
}

/// The LLaVA-1.5 projector with (weights, activations) stored as given, side by side.
fn bench_projector_storage(c: &mut Criterion, gpu: &Gpu, tokens: usize) {
    let [v, h, t] = [1024, 4096, 4096];
    let x = ramp(tokens * v, 1.0);
    let tag = adapter_tag(gpu);
    let mut group = c.benchmark_group("mlp");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(8));
    for (weights, activations) in [(DType::F32, DType::F32), (DType::F16, DType::F16), (DType::BF16, DType::F32)] {
        let projector = LlavaProjector::from_tensors(
            stored(gpu, &[h, v], &ramp(h * v, (1.0 / v as f32).sqrt()), weights),
            Some(stored(gpu, &[h], &ramp(h, 0.1), DType::F32)),
            stored(gpu, &[t, h], &ramp(t * h, (1.0 / h as f32).sqrt()), weights),
            Some(stored(gpu, &[t], &ramp(t, 0.1), DType::F32)),
            GeluForm::Erf,
        )
        .expect("projector")
        .with_activations(activations);
        let plan = match projector.plan(gpu, 1, tokens) {
            Ok(plan) => plan,
            Err(e) => {
                eprintln!("skipped {weights} weights / {activations} activations: {e}");
                continue;
            }
        };
        gpu.flush("uploading weights").expect("flush");
        group.throughput(Throughput::Elements(plan.plan().cost().flops as u64));
        let name = format!("storage/{weights} weights {activations} activations/llava15_{tokens}/{tag}");
        group.bench_function(name, |b| b.iter(|| timed_run(plan.plan(), &x)));
    }
    group.finish();
}

fn bench_gemm(c: &mut Criterion, gpu: &Gpu, m: usize, k: usize, n: usize, weights: DType) {
    let mut g = Graph::new();
    let x = g.input("x", &[m, k]).expect("input");
    let w = g.constant("w", &stored(gpu, &[n, k], &ramp(n * k, 0.03), weights));
    let b = g.constant("b", &Tensor::from_f32(gpu, &[n], &ramp(n, 0.1)).expect("b"));
    let y = g.add(Epilogue::BIAS, &[x, w, b]).expect("linear");
    g.output(y).expect("output");
    let plan = Plan::new(gpu, &g).expect("plan");
    gpu.flush("uploading weights").expect("flush");
    let input = ramp(m * k, 1.0);
    let mut group = c.benchmark_group("mlp");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(6));
    group.throughput(Throughput::Elements(plan.cost().flops as u64));
    group.bench_function(format!("gemm/{m}x{k}x{n} {weights} weights/{}", adapter_tag(gpu)), |b| {
        b.iter(|| timed_run(&plan, &input))
    });
    group.finish();
}

fn mlp(c: &mut Criterion) {
    let gpu =
        Gpu::with_options(&GpuOptions::from_env().expect("VLBRIDGE_*")).expect("a GPU adapter (run scripts/setup.sh)");
    eprintln!("adapter: {}", gpu.describe());
    bench_projector(c, &gpu, [1024, 4096, 4096], 576, "llava15_576x1024-4096-4096");
    bench_projector(c, &gpu, [64, 128, 128], 74, "small_74x64-128-128");
    // f16 and bf16 weights (as checkpoints ship them) against f32, same shapes and adapter.
    for weights in [DType::F32, DType::F16, DType::BF16] {
        if weights != DType::F16 || gpu.caps().shader_f16 {
            bench_gemm(c, &gpu, 576, 1024, 4096, weights);
            bench_gemm(c, &gpu, 576, 4096, 4096, weights);
        }
    }
    bench_projector_storage(c, &gpu, 576);
}

criterion_group!(benches, mlp);
criterion_main!(benches);
