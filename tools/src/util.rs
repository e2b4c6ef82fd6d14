//! Helpers every subcommand shares: random data, medians, wall-clock timing, file errors.

use std::time::Instant;

use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};
use vlbridge::{Error, Result};

/// `n` values ~ N(0, std²).
pub fn normal(rng: &mut StdRng, n: usize, std: f32) -> Vec<f32> {
    let d = Normal::new(0.0, std).unwrap_or_else(|_| unreachable!("std is finite and positive"));
    (0..n).map(|_| d.sample(rng)).collect()
}

/// The median (sorts `values`); `None` when empty.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[values.len() / 2])
}

/// Wall time of `first` (plan, compile, run, read back) and the median of `runs` runs of
/// `again` on what `first` returned, in milliseconds.
pub fn time<P>(
    runs: usize,
    first: impl FnOnce() -> Result<P>,
    again: impl Fn(&P) -> Result<()>,
) -> Result<(P, f64, f64)> {
    let start = Instant::now();
    let planned = first()?;
    let first_ms = start.elapsed().as_secs_f64() * 1e3;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        again(&planned)?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok((planned, first_ms, median(&mut times).unwrap_or(first_ms)))
}

/// An [`Error::File`] for `path`.
pub fn file_error(path: &std::path::Path, problem: impl ToString) -> Error {
    Error::File { path: path.display().to_string(), problem: problem.to_string() }
}

/// Writes `text` to `path` and says so.
pub fn write(path: &std::path::Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| file_error(path, e))?;
    println!("wrote {}", path.display());
    Ok(())
}

/// This process's peak resident memory (VmHWM) in MiB, where the OS reports it (Linux).
pub fn peak_rss() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
