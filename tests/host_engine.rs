//! The host-engine example runs in the suite: a device the engine owns, its own buffers in and
//! out, outputs consumed by its own GPU pass.

#[path = "../examples/host_engine.rs"]
mod host_engine;

#[test]
#[ntest::timeout(300_000)]
fn host_engine_example_matches_the_reference() {
    let worst = host_engine::run().unwrap();
    assert!(worst < 1e-4, "per-token means differ from the f64 reference by {worst}");
}
