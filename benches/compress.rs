//! `compress` group: ToMe merging at CLIP ViT-L/14-336 size (577 tokens incl. the class token,
//! 1024 channels, r = 144) with every pass on the GPU, and 2×2 average pooling / bilinear
//! halving of a 24 × 24 × 1024 patch grid. Throughput in bytes moved. The adapter comes from
//! `VLBRIDGE_BACKEND` / `VLBRIDGE_ADAPTER` (`GpuOptions::from_env`).

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vlbridge::connectors::add_token_merge;
use vlbridge::kernels::Op;
use vlbridge::ops::{AvgPool, BilinearHalf, Tome};
use vlbridge::timing::Timer;
use vlbridge::{Gpu, GpuOptions, Graph, Plan};

fn ramp(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0).collect()
}

fn bench_plan(c: &mut Criterion, gpu: &Gpu, name: &str, graph: &Graph, input: &[f32]) {
    let plan = Plan::new(gpu, graph).expect("plan");
    let mut group = c.benchmark_group("compress");
    group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Bytes(plan.cost().bytes as u64));
    let tag = gpu.info().name.split_whitespace().next().unwrap_or("gpu").to_lowercase();
    eprintln!("{name}: {} dispatches, {:.1} MFLOP", plan.dispatches().len(), plan.cost().flops / 1e6);
    plan.write_inputs(&[input.into()]).expect("write");
    let wall = Timer::wall_clock(gpu);
    group.bench_function(format!("{name}/{tag}"), |b| b.iter(|| plan.time(&wall).expect("run")));
    group.finish();
}

fn compress(c: &mut Criterion) {
    let gpu =
        Gpu::with_options(&GpuOptions::from_env().expect("VLBRIDGE_*")).expect("a GPU adapter (run scripts/setup.sh)");
    eprintln!("adapter: {}", gpu.describe());
    let (tokens, channels) = (577, 1024);
    let mut g = Graph::new();
    let x = g.input("x", &[1, tokens, channels]).expect("input");
    let merged = add_token_merge(&gpu, &mut g, x, None, Tome::new(tokens, 144, true).expect("r")).expect("tome");
    for id in [merged.tokens, merged.sizes, merged.source] {
        g.output(id).expect("output");
    }
    bench_plan(c, &gpu, "tome/577x1024_r144_cls", &g, &ramp(tokens * channels));

    for (name, op) in [
        ("avg_pool/24x24x1024 2x2", Op::AvgPool(AvgPool::two_by_two(24, 24, false))),
        ("bilinear_half/24x24x1024", Op::BilinearHalf(BilinearHalf { h: 24, w: 24 })),
    ] {
        let mut g = Graph::new();
        let x = g.input("x", &[1, 576, 1024]).expect("input");
        let y = g.add(op, &[x]).expect("pool");
        g.output(y).expect("output");
        bench_plan(c, &gpu, name, &g, &ramp(576 * 1024));
    }
}

criterion_group!(benches, compress);
criterion_main!(benches);
