//! The golden cases of `tests/data/manifest.json` in a real browser: each case planned as
//! natively (`vlbridge::golden::job`), run on the page's WebGPU device through the async path,
//! and held to upstream's stored outputs at the same tolerances as `vlbridge check`. Every case
//! of an op vlbridge implements runs; none is skipped.

use std::path::Path;

use vlbridge::golden::{self, CaseReport, Manifest, Summary};
use vlbridge::weights::Weights;
use vlbridge::{Gpu, GpuOptions};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

include!(concat!(env!("OUT_DIR"), "/models.rs"));

#[wasm_bindgen_test]
async fn golden_cases_match_upstream_in_the_browser() {
    let gpu = Gpu::open(&GpuOptions::default()).await.expect("the page's WebGPU adapter");
    let manifest = Manifest::parse(MANIFEST, Path::new("tests/data/manifest.json")).unwrap();
    let mut reports = Vec::new();
    for case in &manifest.cases {
        let result = match GOLDEN_FILES.iter().find(|(name, _)| *name == case.file) {
            None => Err(vlbridge::Error::File { path: case.file.clone(), problem: "not embedded".into() }),
            Some((_, bytes)) => match Weights::from_bytes(bytes.to_vec(), &case.file)
                .and_then(|weights| golden::job(&gpu, &weights, case))
            {
                Ok(Some(job)) => job.run_async().await.map(Some),
                other => other.map(|_| None),
            },
        };
        let report = CaseReport { name: case.name.clone(), op: case.op.clone(), outcome: golden::outcome(result) };
        console_log!("{report}");
        reports.push(report);
    }
    let summary = Summary::of(&reports);
    console_log!("{summary}");
    assert!(summary.failed == 0 && summary.unsupported == 0, "{summary}");
}
