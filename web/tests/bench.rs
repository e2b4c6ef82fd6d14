//! Real-size timings in the browser (ignored by the test run; `scripts/web_bench.sh` runs
//! them), the shapes of `vlbridge bench`'s rows: the LLaVA-1.5 projector (576 tokens, 1024 →
//! 4096 → 4096, bf16 weights) and BLIP-2's Q-Former (32 queries of 768 over 257 tokens of 1408,
//! 12 layers, f32 weights), random values, f32 activations, GPU time by timestamps where the
//! adapter has them; then the GEMM under each variant. Each prints one line of
//! `bench name ms GFLOP/s` for `docs/benchmarks.md`.

use vlbridge::connectors::{ConnectorPlan, LlavaProjector, QFormer, QFormerConfig, StateDict};
use vlbridge::ops::GeluForm;
use vlbridge::timing::Timer;
use vlbridge::weights::Weights;
use vlbridge::{DType, Gpu, GpuOptions, HostData, HostTensor, HostVec, Tensors};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// A checkpoint of `layout` stored as `dtype` (f32 or bf16): uniform values of variance
/// 1/fan-in (norm weights near 1), from a fixed linear congruential sequence.
fn checkpoint(layout: &StateDict, dtype: DType) -> Weights {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = layout
        .tensors
        .iter()
        .map(|(name, shape)| {
            let fan_in = shape.last().copied().unwrap_or(1).max(1) as f32;
            let norm = name.contains("norm") && shape.len() == 1;
            let values: Vec<f32> = (0..shape.iter().product())
                .map(|_| if norm { 1.0 + 0.1 * next() } else { next() * (3.0 / fan_in).sqrt() })
                .collect();
            (name.clone(), shape.clone(), HostData::F32(&values).encode(dtype).unwrap())
        })
        .collect();
    let stored = if dtype == DType::BF16 { safetensors::Dtype::BF16 } else { safetensors::Dtype::F32 };
    let views = data.iter().map(|(name, shape, bytes)| {
        (name.as_str(), safetensors::tensor::TensorView::new(stored, shape.clone(), bytes).unwrap())
    });
    Weights::from_bytes(safetensors::serialize(views, None).unwrap(), "random weights").unwrap()
}

/// Runs `plan` once (its pipelines compile), then times it `runs` times; prints the median.
async fn time(gpu: &Gpu, name: &str, plan: &ConnectorPlan, inputs: &Tensors, runs: usize) {
    plan.run_async(inputs).await.unwrap();
    let timer = Timer::new(gpu);
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        ms.push(plan.time_async(inputs, &timer).await.unwrap());
    }
    ms.sort_by(f64::total_cmp);
    let median = ms[ms.len() / 2];
    let flops = plan.plan().cost().flops;
    console_log!("bench {name} {median:.3} ms {:.2} GFLOP/s ({:?})", flops / (median * 1e6), timer.clock());
}

fn features(plan: &ConnectorPlan) -> Tensors {
    let name = plan.input_names()[0].to_string();
    let shape = plan.shape(&name).unwrap().to_vec();
    let n = shape.iter().product::<usize>();
    let data = (0..n).map(|i| ((i * 7919) % 2003) as f32 / 1001.5 - 1.0).collect();
    [(name, HostTensor::new(&shape, HostVec::F32(data)).unwrap())].into()
}

#[wasm_bindgen_test]
#[ignore]
async fn real_size_connectors_in_the_browser() {
    let gpu = Gpu::open(&GpuOptions::default()).await.unwrap();
    let weights = checkpoint(&LlavaProjector::state_dict([1024, 4096, 4096], true), DType::BF16);
    let projector = LlavaProjector::from_weights(&gpu, &weights, GeluForm::Erf).unwrap();
    let plan = projector.plan(&gpu, 1, 576).unwrap();
    time(&gpu, "llava_projector 576x1024-4096-4096, bf16 weights, f32 activations", &plan, &features(&plan), 5).await;

    let q = QFormerConfig::default();
    let qformer = QFormer::from_weights(&gpu, &checkpoint(&QFormer::state_dict(&q), DType::F32), q).unwrap();
    let plan = qformer.plan(&gpu, 1, 257).unwrap();
    time(&gpu, "qformer 32x768 over 257x1408, 12 layers", &plan, &features(&plan), 3).await;
}

/// The projector's GEMMs (576 × 1024 → 1024 → 1024, f32) as the heuristic plans them for the
/// page's adapter, then under each GEMM variant that runs without subgroups, forced: the
/// browser's counterpart of `vlbridge bench --variants`, showing whether the choice is the best.
#[wasm_bindgen_test]
#[ignore]
async fn gemm_variants_in_the_browser() {
    for variant in ["", "portable", "splitk", "tiled32", "tiled"] {
        let force_variants = if variant.is_empty() { vec![] } else { vec![("linear".into(), variant.into())] };
        let gpu = Gpu::open(&GpuOptions { force_variants, ..GpuOptions::default() }).await.unwrap();
        let weights = checkpoint(&LlavaProjector::state_dict([1024, 1024, 1024], true), DType::F32);
        let projector = LlavaProjector::from_weights(&gpu, &weights, GeluForm::Erf).unwrap();
        let plan = projector.plan(&gpu, 1, 576).unwrap();
        let variants = plan.plan().variants().join(", ");
        let chosen = if variant.is_empty() { format!("chosen ({variants})") } else { format!("forced {variants}") };
        time(&gpu, &format!("linear x2 576x1024-1024-1024 {chosen}"), &plan, &features(&plan), 2).await;
    }
}
