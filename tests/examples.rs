//! The examples run in the suite (`examples/README.md`); `tests/host_engine.rs` runs the third.

#[path = "../examples/from_pretrained.rs"]
mod from_pretrained;

#[path = "../examples/encode.rs"]
mod encode;

#[path = "../examples/pixels.rs"]
mod pixels;

#[test]
#[ntest::timeout(300_000)]
fn from_pretrained_plans_once_and_runs_many_times() {
    let worst = from_pretrained::run().unwrap();
    assert!(worst <= 1.0, "worst error at {worst} of its tolerance");
}

#[test]
#[ntest::timeout(300_000)]
fn encode_records_into_the_hosts_encoder() {
    let worst = encode::run().unwrap();
    assert!(worst <= 1.0, "worst error at {worst} of its tolerance");
}

#[test]
#[ntest::timeout(300_000)]
fn pixels_run_through_tower_and_connector_as_transformers() {
    let worst = pixels::run().unwrap();
    assert!(worst <= 1.0, "worst error at {worst} of its tolerance");
}
