//! The forms the web uses, run natively: a model directory given as its files' bytes loads as
//! the folder does, and the async runs (`Plan::run_async`, `Pretrained::run_async`,
//! `Tensor::read_async`) return what the blocking ones do. A directory missing a file named
//! in its index is a typed error naming it.

mod common;

use std::path::{Path, PathBuf};

use common::gpu;
use ntest::timeout;
use vlbridge::models::{self, LoadOptions};
use vlbridge::{Graph, HostData, ModelFiles, Plan, Tensor};

fn dir(family: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/vision").join(family)
}

fn as_bytes(dir: &Path) -> ModelFiles {
    let files = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| (e.file_name().to_string_lossy().to_string(), std::fs::read(e.path()).unwrap()));
    ModelFiles::from_bytes(&dir.display().to_string(), files)
}

#[test]
#[timeout(300_000)]
fn a_directory_as_bytes_runs_as_the_folder_does_and_async_matches_blocking() {
    for family in ["llava", "mllama"] {
        let inputs = models::read_tensors(dir(family).join("vision_inputs.safetensors")).unwrap();
        let folder = models::from_pretrained(gpu(), dir(family)).unwrap();
        let bytes = models::from_files(gpu(), &as_bytes(&dir(family)), &LoadOptions::default()).unwrap();
        assert_eq!(bytes.family(), folder.family());
        let want = folder.run(&inputs).unwrap();
        let got = pollster::block_on(bytes.run_async(&inputs)).unwrap();
        assert_eq!(got, want, "{family}: bytes + async vs folder + blocking");
        let (timed, ms) = pollster::block_on(bytes.run_timed_async(&inputs)).unwrap();
        assert_eq!(timed, want, "{family}: the timed run's outputs");
        assert!(ms > 0.0 && ms.is_finite(), "{family}: {ms} ms");
    }
}

#[test]
#[timeout(60_000)]
fn async_plan_runs_and_reads_equal_the_blocking_ones() {
    let mut g = Graph::new();
    let x = g.input("x", &[3, 5]).unwrap();
    let y = g.add(vlbridge::ops::Repeat { times: 2 }, &[x]).unwrap();
    g.output(y).unwrap();
    let plan = Plan::new(gpu(), &g).unwrap();
    let data: Vec<f32> = (0..15).map(|i| i as f32 * 0.5 - 3.0).collect();
    let blocking = plan.run(&[HostData::F32(&data)]).unwrap();
    let awaited = pollster::block_on(plan.run_async(&[HostData::F32(&data)])).unwrap();
    assert_eq!(awaited, blocking);
    let t = Tensor::from_f32(gpu(), &[15], &data).unwrap();
    assert_eq!(pollster::block_on(t.read_async()).unwrap().into_f32(), data);
}

#[test]
#[timeout(60_000)]
fn a_shard_missing_from_the_given_files_is_named() {
    let ModelFiles::Bytes { name, mut files } = as_bytes(&dir("llava")) else { unreachable!() };
    files.remove("model-00002-of-00011.safetensors");
    let Err(e) = models::from_files(gpu(), &ModelFiles::Bytes { name, files }, &LoadOptions::default()) else {
        panic!("a directory without one of its shards loaded");
    };
    let e = e.to_string();
    assert!(e.contains("model-00002-of-00011.safetensors") && e.contains("not among the given files"), "{e}");
}
