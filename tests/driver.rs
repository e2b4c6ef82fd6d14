//! Detects drivers that compute wrong results silently. Debian 12's stock Mesa 22.3 lavapipe
//! stops every loop after ~65,535 iterations per invocation; run scripts/setup.sh for a fixed
//! Mesa. A failure here names the adapter and driver, so nobody debugs kernels on a broken driver.

mod common;

use ntest::timeout;
use vlbridge::kernels::Op;
use vlbridge::kernels::probe::LoopProbe;

#[test]
#[timeout(120_000)]
fn long_loops_run_to_completion() {
    if let Err(e) = vlbridge::diagnostics::check_driver(common::gpu()) {
        panic!("{e}");
    }
}

#[test]
fn probe_expectation_is_exact() {
    // 3 iterations of the LCG from 1, by hand.
    let s1 = 1u32.wrapping_mul(1664525).wrapping_add(1013904223);
    let s2 = s1.wrapping_mul(1664525).wrapping_add(1013904223);
    let s3 = s2.wrapping_mul(1664525).wrapping_add(1013904223);
    assert_eq!(Op::from(LoopProbe { outer: 1, inner: 3 }).reference(&[], &[]), [3.0, f64::from(s3)]);
}
