//! The measured tune: `tune::measure` times every runnable variant and caches the fastest per
//! adapter; a device opened later follows the cached choice ahead of the heuristic, and a
//! forced variant still wins over it.

mod common;

use ntest::timeout;
use vlbridge::ops::Epilogue;
use vlbridge::tune::{self, Choice, TuneTable};
use vlbridge::{Gpu, GpuOptions, Graph, Plan, Tensor};

fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vlbridge-tune-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The variant a `[m, 64] x [96, 64]` GEMM plans with on `gpu`.
fn gemm_variant(gpu: &Gpu, m: usize) -> &'static str {
    let mut g = Graph::new();
    let x = g.input("x", &[m, 64]).unwrap();
    let w = g.constant("w", &Tensor::from_f32(gpu, &[96, 64], &vec![0.1; 96 * 64]).unwrap());
    let y = g.add(Epilogue::NONE, &[x, w]).unwrap();
    g.output(y).unwrap();
    Plan::new(gpu, &g).unwrap().variants()[0]
}

#[test]
#[timeout(300_000)]
fn measure_times_every_variant_and_caches_the_fastest() {
    let dir = scratch("measure");
    let options = GpuOptions { use_tune: false, ..GpuOptions::from_env().unwrap() };
    let gpu = Gpu::with_options(&options).unwrap();
    let (table, path) = tune::measure(&gpu, &dir, 1).unwrap();
    assert!(path.exists());
    assert_eq!(tune::load(&dir, gpu.info()).as_ref(), Some(&table));
    for choice in &table.choices {
        let best = choice.timings.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
        assert_eq!(best.0, choice.variant, "{choice:?}");
        assert!(choice.timings.len() >= 2, "{choice:?}: fewer than two variants timed");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
#[timeout(120_000)]
fn a_cached_tune_steers_the_choice_and_forcing_still_wins() {
    let dir = scratch("steer");
    let base = GpuOptions { tune_dir: Some(dir.clone()), ..GpuOptions::from_env().unwrap() };
    let plain = Gpu::with_options(&GpuOptions { use_tune: false, ..base.clone() }).unwrap();
    let heuristic = gemm_variant(&plain, 200);
    // A tune that prefers the portable GEMM for wide problems (what a measurement on some
    // adapter could say), written where the device looks.
    let choice = |class: &str| Choice {
        kernel: "linear".into(),
        class: class.into(),
        variant: "portable".into(),
        timings: vec![("portable".into(), 1.0)],
    };
    let table = TuneTable { adapter: plain.info().name.clone(), driver: String::new(), choices: vec![choice("wide")] };
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(tune::cache_file(&dir, plain.info()), serde_json::to_string(&table).unwrap()).unwrap();

    let tuned = Gpu::with_options(&base).unwrap();
    assert_eq!(gemm_variant(&tuned, 200), "gemm_portable", "the wide class follows the tune");
    assert_eq!(gemm_variant(&tuned, 32), gemm_variant(&plain, 32), "the thin class was not tuned");
    assert_ne!(heuristic, "gemm_portable", "the test needs a heuristic that picks something else");
    let forced = Gpu::with_options(&base.clone().force("linear", "splitk")).unwrap();
    assert_eq!(gemm_variant(&forced, 200), "gemm_splitk", "a forced variant wins over the tune");
    std::fs::remove_dir_all(dir).ok();
}
