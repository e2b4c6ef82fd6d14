//! `Plan` is `Send + Sync`, and `run` / `run_into` may be called from several threads
//! at once: each caller gets the result of its own inputs.

mod common;

use common::gpu;
use ntest::timeout;
use vlbridge::ops::GeluForm;
use vlbridge::{DType, Graph, Plan, Tensor};

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn the_public_handles_are_send_and_sync() {
    assert_send_sync::<Plan>();
    assert_send_sync::<vlbridge::Gpu>();
    assert_send_sync::<Tensor>();
    assert_send_sync::<vlbridge::connectors::LlavaProjector>();
    assert_send_sync::<vlbridge::connectors::ConnectorPlan>();
}

#[test]
#[timeout(300_000)]
fn one_plan_runs_from_four_threads_at_once() {
    let gpu = gpu();
    let len = 50_000;
    let mut g = Graph::new();
    let x = g.input("x", &[len]).unwrap();
    let y = g.add(GeluForm::Erf, &[x]).unwrap();
    g.output(y).unwrap();
    let plan = Plan::new(gpu, &g).unwrap();
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let plan = &plan;
            scope.spawn(move || {
                for round in 0..10 {
                    // Each thread and round has its own input; its own output must come back.
                    let value = thread as f32 + round as f32 / 10.0;
                    let input = vec![value; len];
                    if round % 2 == 0 {
                        let got = plan.run_f32(&[&input]).unwrap().remove(0);
                        assert!(got.iter().all(|&v| v == got[0]), "thread {thread} round {round}: mixed output");
                        assert!((f64::from(got[0]) - vlbridge::reference::gelu_erf(f64::from(value))).abs() < 1e-5);
                    } else {
                        let (src, dst) = (
                            Tensor::from_f32(gpu, &[len], &input).unwrap(),
                            Tensor::zeros(gpu, &[len], DType::F32).unwrap(),
                        );
                        plan.run_into(&[&src], &[&dst]).unwrap();
                        let got = dst.to_f32().unwrap();
                        assert!(
                            (f64::from(got[len - 1]) - vlbridge::reference::gelu_erf(f64::from(value))).abs() < 1e-5
                        );
                    }
                }
            });
        }
    });
}

#[test]
#[timeout(60_000)]
fn run_into_checks_the_host_tensors() {
    let gpu = gpu();
    let mut g = Graph::new();
    let x = g.input("x", &[8]).unwrap();
    let y = g.add(GeluForm::Erf, &[x]).unwrap();
    g.output(y).unwrap();
    let plan = Plan::new(gpu, &g).unwrap();
    let (ok, wrong) = (Tensor::zeros(gpu, &[8], DType::F32).unwrap(), Tensor::zeros(gpu, &[9], DType::F32).unwrap());
    assert!(matches!(plan.run_into(&[&wrong], &[&ok]), Err(vlbridge::Error::Shape { .. })));
    assert!(matches!(plan.run_into(&[&ok], &[]), Err(vlbridge::Error::Shape { .. })));
}

/// A small two-kernel graph (a projector: GEMM with GELU, GEMM) on `gpu`'s device.
fn projector_graph(gpu: &vlbridge::Gpu) -> Graph {
    use vlbridge::ops::Epilogue;
    let mut g = Graph::new();
    let x = g.input("x", &[5, 8]).unwrap();
    let w1 = g.constant("w1", &Tensor::from_f32(gpu, &[16, 8], &[0.1; 128]).unwrap());
    let w2 = g.constant("w2", &Tensor::from_f32(gpu, &[4, 16], &[0.1; 64]).unwrap());
    let b1 = g.constant("b1", &Tensor::from_f32(gpu, &[16], &[0.0; 16]).unwrap());
    let h = g.add(Epilogue::bias_gelu(GeluForm::Erf), &[x, w1, b1]).unwrap();
    let y = g.add(Epilogue::NONE, &[h, w2]).unwrap();
    g.output(y).unwrap();
    g
}

#[test]
#[timeout(300_000)]
fn two_threads_planning_one_graph_compile_each_pipeline_once_and_forced_devices_share_the_cache() {
    // Devices of their own: other tests' pipelines do not count.
    let fresh = || vlbridge::Gpu::with_options(&vlbridge::GpuOptions::from_env().unwrap()).unwrap();
    let alone = fresh();
    Plan::new(&alone, &projector_graph(&alone)).unwrap();
    let once = alone.pipelines_built();
    assert!(once >= 2, "{once} pipelines for two differently fused GEMMs");
    let gpu = fresh();
    let g = projector_graph(&gpu);
    let plans: Vec<Plan> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2).map(|_| scope.spawn(|| Plan::new(&gpu, &g).unwrap())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(gpu.pipelines_built(), once, "two threads planning at once compile each pipeline once");
    // The same device with a variant forced shares the cache: planning the graph again under
    // the variant it already runs compiles nothing.
    let spec = plans[0].variants()[0];
    let family = vlbridge::kernels::KernelFamily::find("linear").unwrap();
    let variant = family.specs.iter().find(|s| s.name == spec).unwrap().variant;
    let forced = gpu.with_forced("linear", variant);
    Plan::new(&forced, &g).unwrap();
    assert_eq!(forced.pipelines_built(), once);
}
