use std::fmt;

/// Result of holding a computed tensor to a reference: NaN/Inf parity first, then
/// `|got - want| <= atol + rtol·|want|` element-wise.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// Elements compared.
    pub len: usize,
    /// Largest `|got - want|` over finite pairs.
    pub max_abs: f64,
    /// Largest `|got - want| / |want|` over elements with `|want| > atol` (relative error is
    /// meaningless near zero).
    pub max_rel: f64,
    /// Normalised mean squared error `Σ(got-want)² / Σwant²`.
    pub nmse: f64,
    /// The absolute tolerance used.
    pub atol: f64,
    /// The relative tolerance used.
    pub rtol: f64,
    /// Largest error as a fraction of its element's tolerance (1.0 = at the limit).
    pub tolerance_used: f64,
    /// Up to 8 failing elements: (flat index, got, want).
    pub mismatches: Vec<(usize, f64, f64)>,
    /// Elements outside their tolerance (or of the wrong NaN/Inf class).
    pub failures: usize,
}

impl Comparison {
    /// No element failed.
    pub fn passed(&self) -> bool {
        self.failures == 0
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} elements, max abs {:.3e}, max rel {:.3e}, nmse {:.3e} (atol {:.1e}, rtol {:.1e}): {} failures",
            self.len, self.max_abs, self.max_rel, self.nmse, self.atol, self.rtol, self.failures
        )?;
        for (i, got, want) in &self.mismatches {
            write!(f, "\n  [{i}] got {got:e}, want {want:e}")?;
        }
        Ok(())
    }
}

/// Below f16's smallest normal (2⁻¹⁴ ≈ 6.1e-5) a device may flush f16 results to zero: the
/// absolute tolerance floor of anything stored as f16.
pub const F16_FLUSH: f64 = 6.2e-5;

/// Extra tolerance of a result stored as f16, with the reference rounded to f16 too (see
/// [`crate::dtype::round_to`]): the f32 result and the exact one can round to neighbouring
/// f16 values, one f16 ulp apart, at most `|y|·2⁻¹⁰`.
pub fn f16_rounding(want: f64) -> f64 {
    want.abs() * 2f64.powi(-10)
}

/// Compares `got` to `want`. A length mismatch counts every element as failing.
pub fn compare(got: &[f32], want: &[f64], atol: f64, rtol: f64) -> Comparison {
    compare_with(got, want, atol, rtol, |_| 0.0)
}

/// [`compare`] with an extra absolute tolerance per element (`extra(i)`), for kernels whose
/// rounding error scales with their inputs (a dot product's with `Σ|x·w|`). Parity is judged
/// in f32: a finite reference beyond f32's range must come out as the same infinity.
pub fn compare_with(got: &[f32], want: &[f64], atol: f64, rtol: f64, extra: impl Fn(usize) -> f64) -> Comparison {
    let mut c = Comparison {
        len: want.len(),
        max_abs: 0.0,
        max_rel: 0.0,
        nmse: 0.0,
        atol,
        rtol,
        tolerance_used: 0.0,
        mismatches: Vec::new(),
        failures: 0,
    };
    if got.len() != want.len() {
        c.failures = want.len().max(got.len());
        c.max_abs = f64::INFINITY;
        return c;
    }
    let (mut err2, mut ref2) = (0.0, 0.0);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = f64::from(g);
        let w32 = f64::from(w as f32);
        let ok = if w.is_nan() || g.is_nan() {
            w.is_nan() && g.is_nan()
        } else if w32.is_infinite() || g.is_infinite() {
            g == w32
        } else {
            let abs = (g - w).abs();
            c.max_abs = c.max_abs.max(abs);
            if w.abs() > atol {
                c.max_rel = c.max_rel.max(abs / w.abs());
            }
            err2 += abs * abs;
            ref2 += w * w;
            let tolerance = atol + rtol * w.abs() + extra(i);
            if tolerance > 0.0 {
                c.tolerance_used = c.tolerance_used.max(abs / tolerance);
            } else if abs > 0.0 {
                c.tolerance_used = f64::INFINITY;
            }
            abs <= tolerance
        };
        if !ok {
            c.failures += 1;
            if c.mismatches.len() < 8 {
                c.mismatches.push((i, g, w));
            }
        }
    }
    c.nmse = if ref2 > 0.0 { err2 / ref2 } else { err2 };
    c
}
