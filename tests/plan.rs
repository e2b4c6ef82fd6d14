//! The planner: dispatch grids folded under the per-dimension limit, plans run again with new
//! inputs, intermediates pooled once dead, and nodes no output reads left unplanned.

mod common;

use common::{gpu, to_f64};
use ntest::timeout;
use vlbridge::ops::{Epilogue, GeluForm, Meta};
use vlbridge::reference;
use vlbridge::{Graph, Plan, Tensor};

#[test]
#[timeout(300_000)]
fn grids_beyond_65535_workgroups_fold_into_2d() {
    // 256 elements per GELU workgroup: this needs 65,537 workgroups.
    let len = 65_537 * 256 - 3;
    let x: Vec<f32> = (0..len).map(|i| (i % 2001) as f32 / 100.0 - 10.0).collect();
    let gpu = gpu();
    let mut g = Graph::new();
    let input = g.input("x", &[len]).unwrap();
    let y = g.add(GeluForm::Erf, &[input]).unwrap();
    g.output(y).unwrap();
    let got = Plan::new(gpu, &g).unwrap().run_f32(&[&x]).unwrap().remove(0);
    // Every element, so a skipped or doubled workgroup anywhere is caught.
    let want: Vec<f64> = x.iter().map(|&v| reference::gelu_erf(f64::from(v))).collect();
    let cmp = reference::compare(&got, &want, 1e-6, 1e-5);
    assert!(cmp.passed(), "{cmp}");
}

#[test]
fn fold_grid_covers_every_workgroup_within_limits() {
    use vlbridge::kernels::fold_grid;
    for count in [1u64, 65_535, 65_536, 65_537, 1 << 20, 65_535 * 65_535] {
        let [x, y, z] = fold_grid("test", count, 65_535).unwrap();
        assert!(x <= 65_535 && y <= 65_535 && z == 1);
        let launched = u64::from(x) * u64::from(y);
        assert!(launched >= count && launched - count < u64::from(x), "count {count}: grid {x}x{y}");
    }
    assert!(fold_grid("test", 65_535 * 65_535 + 1, 65_535).is_err());
}

#[test]
#[timeout(120_000)]
fn plan_runs_again_with_new_inputs() {
    let gpu = gpu();
    let (v, h, t, m) = (12, 20, 8, 5);
    let ramp = |n: usize, s: f32| (0..n).map(|i| ((i * 37 % 17) as f32 - 8.0) * s).collect::<Vec<f32>>();
    let (w1, b1, w2, b2) = (ramp(h * v, 0.05), ramp(h, 0.1), ramp(t * h, 0.05), ramp(t, 0.1));
    let p = vlbridge::connectors::LlavaProjector::from_f32(gpu, [v, h, t], &w1, &b1, &w2, &b2, GeluForm::Erf).unwrap();
    let plan = vlbridge::connectors::ConnectorPlan::new(gpu, p.unfused_graph(1, m).unwrap().0, &["projected"]).unwrap();
    // GEMM, standalone GELU pass, GEMM.
    let dispatches = plan.plan().dispatches();
    assert_eq!((dispatches.len(), dispatches[1]), (3, "gelu"));
    for round in 0..3 {
        let x = ramp(m * v, 0.1 * (round + 1) as f32);
        let got = plan.project(&x).unwrap();
        let want = reference::mlp(
            &to_f64(&x),
            &to_f64(&w1),
            &to_f64(&b1),
            &to_f64(&w2),
            &to_f64(&b2),
            GeluForm::Erf,
            m,
            [v, h, t],
        );
        let cmp = reference::compare(&got, &want, 1e-5, 1e-4);
        assert!(cmp.passed(), "round {round}: {cmp}");
    }
}

#[test]
#[timeout(120_000)]
fn intermediates_share_buffers_once_dead() {
    // x -> g1 -> g2 -> g3 -> y: three intermediates, but at most two are alive at once.
    let gpu = gpu();
    let len = 1000;
    let mut g = Graph::new();
    let mut t = g.input("x", &[len]).unwrap();
    for _ in 0..4 {
        t = g.add(GeluForm::Erf, &[t]).unwrap();
    }
    g.output(t).unwrap();
    let plan = Plan::new(gpu, &g).unwrap();
    let bytes = (len * 4) as u64;
    assert_eq!(plan.activation_bytes(), 2 * bytes + 2 * bytes, "input + output + two pooled buffers");
    let x: Vec<f32> = (0..len).map(|i| i as f32 / 100.0 - 5.0).collect();
    let got = plan.run_f32(&[&x]).unwrap().remove(0);
    let want: Vec<f64> = x.iter().map(|&v| (0..4).fold(f64::from(v), |a, _| reference::gelu_erf(a))).collect();
    let cmp = reference::compare(&got, &want, 1e-6, 1e-5);
    assert!(cmp.passed(), "{cmp}");
}

#[test]
#[timeout(60_000)]
fn nodes_no_output_depends_on_are_not_planned() {
    // x -> gelu -> y (the output); x -> linear -> gelu (a branch nobody reads).
    let gpu = gpu();
    let mut g = Graph::new();
    let x = g.input("x", &[3, 8]).unwrap();
    let y = g.add(GeluForm::Tanh, &[x]).unwrap();
    let w = g.constant("w", &Tensor::from_f32(gpu, &[5, 8], &[0.5; 40]).unwrap());
    let unused = g.add(Epilogue::NONE, &[x, w]).unwrap();
    let unused = g.add(GeluForm::Erf, &[unused]).unwrap();
    g.output(y).unwrap();
    let plan = Plan::new(gpu, &g).unwrap();
    assert_eq!(plan.dispatches(), ["gelu"], "the unused branch runs no dispatch");
    assert!(plan.tensor(unused).is_none(), "and gets no buffer");
    assert_eq!(plan.activation_bytes(), 2 * 3 * 8 * 4, "input + output only");
    let gelu = vlbridge::kernels::Op::Gelu(GeluForm::Tanh);
    assert_eq!(plan.cost().flops, gelu.cost(&[&Meta::f32(&[3, 8])]).flops);
    let xs: Vec<f32> = (0..24).map(|i| i as f32 / 4.0 - 3.0).collect();
    let got = plan.run_f32(&[&xs]).unwrap().remove(0);
    let want: Vec<f64> = xs.iter().map(|&v| reference::gelu_tanh(f64::from(v))).collect();
    assert!(reference::compare(&got, &want, 1e-6, 1e-5).passed());
}

/// `Plan::profile` times every dispatch (a lowered node's too) and keeps the stage its node
/// was added under; the plan still computes the same outputs afterwards.
#[test]
#[timeout(120_000)]
fn a_profile_times_every_dispatch_under_its_stage() {
    let gpu = gpu();
    let mut g = Graph::new();
    let x = g.input("x", &[3, 8]).unwrap();
    let w = g.constant("w", &Tensor::from_f32(gpu, &[8, 8], &[0.125; 64]).unwrap());
    let h = g.add(Epilogue::NONE, &[x, w]).unwrap();
    g.set_stage("tower");
    let h = g.add(Epilogue { activation: Some(GeluForm::Erf), ..Epilogue::NONE }, &[h, w]).unwrap();
    g.set_stage("connector");
    let y = g.add(Epilogue::NONE, &[h, w]).unwrap();
    g.output(y).unwrap();
    let plan = Plan::new(gpu, &g).unwrap();
    let data: Vec<f32> = (0..24).map(|i| i as f32 / 10.0).collect();
    let first = plan.run_f32(&[&data]).unwrap();
    let profile = plan.profile(&vlbridge::timing::Timer::new(gpu)).unwrap();
    assert_eq!(profile.len(), plan.dispatches().len());
    let stages: Vec<Option<&str>> = profile.iter().map(|d| d.stage.as_deref()).collect();
    assert_eq!(stages.first(), Some(&None), "{stages:?}");
    assert_eq!(stages.last(), Some(&Some("connector")), "{stages:?}");
    assert!(stages.contains(&Some("tower")), "{stages:?}");
    assert!(profile.iter().all(|d| d.ms >= 0.0 && d.ms.is_finite()), "{profile:?}");
    assert_eq!(plan.run_f32(&[&data]).unwrap(), first);
}
