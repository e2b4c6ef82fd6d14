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
