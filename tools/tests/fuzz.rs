//! The short fuzz run of the test suite: `vlbridge fuzz` for about a minute over every kernel,
//! on the default kernels and the portable ones. The seed is fixed so the suite is
//! reproducible; set VLBRIDGE_FUZZ_SEED to explore others (`vlbridge fuzz --cases 20000` is
//! the long run).

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn one_minute_of_fuzzing_finds_nothing() {
    let seed = std::env::var("VLBRIDGE_FUZZ_SEED").unwrap_or_else(|_| "20261127".into());
    let out = std::env::temp_dir().join(format!("vlbridge-fuzz-{}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_vlbridge"))
        .args(["fuzz", "--seconds", "60", "--seed", &seed, "--out"])
        .arg(&out)
        .spawn()
        .expect("run vlbridge fuzz");
    // No GPU watchdog here: a runaway kernel would hang, so the run has a deadline.
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for vlbridge fuzz") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(600) {
            child.kill().ok();
            panic!("vlbridge fuzz ran past 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.success(), "fuzzing failed (seed {seed}); reproducers in {}", out.display());
}
