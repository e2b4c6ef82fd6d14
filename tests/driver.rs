//! Detects drivers that compute wrong results silently. Debian 12's stock Mesa 22.3 lavapipe
//! stops every loop after ~65,535 iterations per invocation; run scripts/setup.sh for a fixed
//! Mesa. A failure here names the adapter and driver, so nobody debugs kernels on a broken driver.

mod common;

use ntest::timeout;

#[test]
#[timeout(120_000)]
fn long_loops_run_to_completion() {
    if let Err(e) = vlbridge::kernels::loop_probe::check(common::gpu()) {
        panic!("{e}");
    }
}

#[test]
fn probe_expectation_is_exact() {
    // 3 iterations of the LCG from 1, by hand.
    let s1 = 1u32.wrapping_mul(1664525).wrapping_add(1013904223);
    let s2 = s1.wrapping_mul(1664525).wrapping_add(1013904223);
    let s3 = s2.wrapping_mul(1664525).wrapping_add(1013904223);
    assert_eq!(vlbridge::kernels::loop_probe::expected(1, 3), (3, s3));
}
