//! Test, fuzz and bench cases as GPU-free recipes: tensors with their data, nodes, outputs and
//! a tolerance model derived from the data. Kernel units offer them ([`super::KernelFamily`]); the
//! harnesses (`vlbridge fuzz`, `vlbridge bench`, the precision tests) build them into graphs
//! with `Graph::from_case`, run them and hold them to [`Case::check`].

use super::Op;
use crate::dtype::{DType, HostData, HostVec, round_to};
use crate::error::{Error, Result};
use crate::ops::{InputNorm, Meta};
use crate::reference::{self, Comparison};

/// Deterministic random numbers for cases (xoshiro256**, seeded by splitmix64): a case is
/// reproduced from its kernel and seed alone.
#[derive(Debug, Clone)]
pub struct CaseRng {
    s: [u64; 4],
}

impl CaseRng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x ^ (x >> 31)
        };
        Self { s: [next(), next(), next(), next()] }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// Uniform in [lo, hi).
    pub fn range_f32(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.uniform() as f32
    }

    /// True with probability `p`.
    pub fn bool(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// One of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.range(0, items.len() - 1)]
    }

    /// `n` values uniform in [-1, 1).
    pub fn signed(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.range_f32(-1.0, 1.0)).collect()
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u = self.uniform().max(f64::MIN_POSITIVE);
        let v = self.uniform();
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }

    /// `n` values ~ N(0, std²).
    pub fn normals(&mut self, n: usize, std: f32) -> Vec<f32> {
        (0..n).map(|_| self.normal() * std).collect()
    }

    /// A size in `1..=max`, half the time one of the edges that break index math (1, primes,
    /// tile sizes ± 1).
    pub fn edge(&mut self, max: usize) -> usize {
        const EDGES: [usize; 24] =
            [1, 2, 3, 4, 5, 7, 8, 9, 13, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257];
        if self.bool(0.5) {
            let fits: Vec<usize> = EDGES.into_iter().filter(|&e| e <= max).collect();
            self.pick(&fits)
        } else {
            self.range(1, max)
        }
    }

    /// A value distribution, normal twice as often as each other one.
    pub fn distribution(&mut self) -> Values {
        self.pick(&[Values::Normal, Values::Normal, Values::Uniform150, Values::Huge, Values::Tiny, Values::Subnormal])
    }

    /// `n` values of `kind`, `huge` being the magnitude the kernel's range allows; with
    /// `inject`, about 2% of them replaced by NaN, +Inf or -Inf.
    pub fn values(&mut self, n: usize, kind: Values, huge: f32, inject: bool) -> Vec<f32> {
        (0..n)
            .map(|_| {
                if inject && self.bool(0.02) {
                    return self.pick(&[f32::NAN, f32::INFINITY, f32::NEG_INFINITY]);
                }
                let z = self.normal();
                match kind {
                    Values::Normal => z,
                    Values::Uniform150 => self.range_f32(-150.0, 150.0),
                    Values::Huge => z * huge,
                    Values::Tiny => z * 1e-15,
                    Values::Subnormal => z * 1e-40,
                }
            })
            .collect()
    }
}

/// A distribution of fuzz values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Values {
    /// N(0, 1).
    Normal,
    /// ±150, as ggml fuzzes GELU.
    Uniform150,
    /// N(0, 1) times the largest magnitude the kernel's range allows.
    Huge,
    /// N(0, 1e-30).
    Tiny,
    /// f32 subnormals.
    Subnormal,
}

/// What a case is generated for.
#[derive(Debug, Clone, Copy)]
pub struct CaseTarget {
    /// The device reads f16 (`SHADER_F16`): cases may store activations or weights as f16.
    pub shader_f16: bool,
}

/// The eps of the fused input norms the cases draw: LayerNorm's and RMSNorm's usual ones.
pub const INPUT_NORM_EPS: [f32; 2] = [1e-5, 1e-6];

/// f32's smallest normal: below it a device may flush subnormals to zero.
pub const SUBNORMAL_FLOOR: f64 = 1.2e-38;

/// How far a case's outputs may be from the f64 reference: `atol + rtol·|want| + extra(i)`
/// per element. f16 outputs add one f16 ulp and f16's flush floor (see [`Case::check`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Tolerance {
    /// Absolute.
    pub atol: f64,
    /// Relative.
    pub rtol: f64,
    /// Per output element (outputs concatenated), or empty.
    pub extra: Vec<f64>,
    /// Added to every element's bound (after the f16 flush floor).
    pub all: f64,
}

impl Tolerance {
    /// `atol + rtol·|want|`.
    pub fn new(atol: f64, rtol: f64) -> Self {
        Self { atol, rtol, extra: Vec::new(), all: 0.0 }
    }

    /// Exact.
    pub fn exact() -> Self {
        Self::new(0.0, 0.0)
    }

    /// Plus `extra[i]` for output element i.
    pub fn with_extra(self, extra: Vec<f64>) -> Self {
        Self { extra, ..self }
    }

    /// Plus `all` for every element.
    pub fn plus(self, all: f64) -> Self {
        Self { all: self.all + all, ..self }
    }
}

/// One tensor a case declares.
#[derive(Debug, Clone)]
pub struct CaseTensor {
    /// Its name in the graph.
    pub name: String,
    /// Shape and dtype.
    pub meta: Meta,
    /// Its values (inputs and constants).
    pub data: HostVec,
    /// Uploaded once (a weight), not written per run.
    pub constant: bool,
}

/// One node of a case: the op, the tensors it reads, the tensor it writes.
#[derive(Debug, Clone)]
pub struct CaseNode {
    /// The op.
    pub op: Op,
    /// Indices into the case's tensors (declared ones first, then node outputs).
    pub inputs: Vec<usize>,
    /// The tensor it writes.
    pub output: usize,
}

/// A graph recipe with data and a tolerance: what a kernel unit offers the harnesses.
#[derive(Debug, Clone)]
pub struct Case {
    /// The kernel it exercises (its family's name).
    pub kernel: &'static str,
    /// Shapes, dtypes and parameters, for messages and reproducers.
    pub description: String,
    /// Declared tensors, then one per node output.
    pub tensors: Vec<CaseTensor>,
    /// Metas of every tensor (declared and computed).
    pub metas: Vec<Meta>,
    /// Nodes in order.
    pub nodes: Vec<CaseNode>,
    /// Output tensors, in order.
    pub outputs: Vec<usize>,
    /// How far the outputs may be from the reference.
    pub tolerance: Tolerance,
}

impl Case {
    /// A new, empty case of `kernel`.
    pub fn builder(kernel: &'static str) -> Case {
        Case {
            kernel,
            description: String::new(),
            tensors: Vec::new(),
            metas: Vec::new(),
            nodes: Vec::new(),
            outputs: Vec::new(),
            tolerance: Tolerance::exact(),
        }
    }

    fn declare(&mut self, name: &str, shape: &[usize], dtype: DType, data: HostVec, constant: bool) -> usize {
        assert!(self.nodes.is_empty(), "declare every tensor before the first node");
        let meta = Meta::new(shape, dtype);
        self.metas.push(meta.clone());
        self.tensors.push(CaseTensor { name: name.into(), meta, data, constant });
        self.tensors.len() - 1
    }

    /// Declares an input written before each run.
    pub fn input(&mut self, name: &str, shape: &[usize], dtype: DType, data: impl Into<HostVec>) -> usize {
        self.declare(name, shape, dtype, data.into(), false)
    }

    /// Declares a constant (a weight, uploaded once).
    pub fn constant(&mut self, name: &str, shape: &[usize], dtype: DType, data: impl Into<HostVec>) -> usize {
        self.declare(name, shape, dtype, data.into(), true)
    }

    /// Adds a node; shapes and dtypes are checked here, as a graph would.
    pub fn node(&mut self, op: impl Into<Op>, inputs: &[usize]) -> Result<usize> {
        let op = op.into();
        let metas = inputs
            .iter()
            .map(|&i| self.metas.get(i).ok_or_else(|| Error::Graph(format!("case tensor {i} does not exist"))))
            .collect::<Result<Vec<_>>>()?;
        let meta = op.check(&metas)?;
        self.metas.push(meta);
        let output = self.metas.len() - 1;
        self.nodes.push(CaseNode { op, inputs: inputs.to_vec(), output });
        Ok(output)
    }

    /// Marks outputs, names and bounds the case.
    pub fn finish(mut self, outputs: &[usize], description: String, tolerance: Tolerance) -> Case {
        self.outputs = outputs.to_vec();
        self.description = description;
        self.tolerance = tolerance;
        self
    }

    /// The data of the inputs (not the constants), in declaration order.
    pub fn input_data(&self) -> Vec<HostData<'_>> {
        self.tensors.iter().filter(|t| !t.constant).map(|t| t.data.as_data()).collect()
    }

    /// The f64 reference of every output, inputs and constants as their dtypes store them.
    pub fn reference(&self) -> Result<Vec<Vec<f64>>> {
        let mut values: Vec<Option<Vec<f64>>> = vec![None; self.metas.len()];
        for (value, t) in values.iter_mut().zip(&self.tensors) {
            *value = Some(t.data.as_data().to_f64_as(t.meta.dtype)?);
        }
        let metas: Vec<&Meta> = self.metas.iter().collect();
        let nodes = self.nodes.iter().map(|n| (&n.op, n.inputs.clone(), n.output));
        evaluate(&metas, values, nodes, &self.outputs)
    }

    /// Holds `got` (the outputs, in order) to the reference: NaN/Inf parity, then the
    /// tolerance; f16 outputs are compared with the reference rounded to f16, one f16 ulp
    /// (`|y|·2⁻¹⁰`) and f16's flush floor added.
    pub fn check(&self, got: &[HostVec]) -> Result<Comparison> {
        let reference = self.reference()?;
        let (mut want, mut extra) = (Vec::new(), Vec::new());
        let mut atol = self.tolerance.atol;
        for (values, &id) in reference.iter().zip(&self.outputs) {
            let f16 = self.metas[id].dtype == DType::F16;
            if f16 {
                atol = atol.max(reference::F16_FLUSH);
            }
            for &v in values {
                let stored = if f16 { round_to(DType::F16, v) } else { v };
                extra.push(if f16 { reference::f16_rounding(stored) } else { 0.0 });
                want.push(stored);
            }
        }
        for (i, e) in extra.iter_mut().enumerate() {
            *e += self.tolerance.all + self.tolerance.extra.get(i).copied().unwrap_or(0.0);
        }
        let got: Vec<f32> = got.iter().flat_map(|v| v.clone().into_f32()).collect();
        Ok(reference::compare_with(&got, &want, atol, self.tolerance.rtol, |i| extra.get(i).copied().unwrap_or(0.0)))
    }
}

/// A real-size row of `vlbridge bench`: a label and how to build its case (lazily: the data
/// of the largest rows is hundreds of MB).
pub struct BenchCase {
    /// Shape and dtypes, as the row shows them.
    pub shape: String,
    /// Builds the case.
    pub build: Box<dyn Fn() -> Result<Case> + Send + Sync>,
}

impl BenchCase {
    /// A row labelled `shape`.
    pub fn new(shape: impl Into<String>, build: impl Fn() -> Result<Case> + Send + Sync + 'static) -> Self {
        Self { shape: shape.into(), build: Box::new(build) }
    }
}

/// Evaluates nodes with each op's f64 reference: `values` holds the declared tensors (and
/// `None` for computed ones), nodes come in order. Returns the outputs.
pub fn evaluate<'a>(
    metas: &[&Meta],
    mut values: Vec<Option<Vec<f64>>>,
    nodes: impl IntoIterator<Item = (&'a Op, Vec<usize>, usize)>,
    outputs: &[usize],
) -> Result<Vec<Vec<f64>>> {
    for (op, inputs, output) in nodes {
        let node_metas: Vec<&Meta> = inputs.iter().map(|&i| metas[i]).collect();
        let data = inputs
            .iter()
            .map(|&i| {
                values[i].as_deref().ok_or_else(|| Error::Graph(format!("tensor {i} read before it is computed")))
            })
            .collect::<Result<Vec<_>>>()?;
        values[output] = Some(op.reference(&data, &node_metas));
    }
    outputs
        .iter()
        .map(|&o| values[o].clone().ok_or_else(|| Error::Graph(format!("output {o} is never computed"))))
        .collect()
}

/// f32 accumulation error of a `k`-term dot product, per unit of Σ|a|·|b|.
pub fn dot_ulps(k: usize) -> f64 {
    4e-7 * (k as f64).sqrt()
}

/// `x` (rows of `k`) normalised by `norm` in f64, and per row the relative error of its
/// elements in a kernel's f32: a few ulps of the row's largest |x| over its spread (the
/// cancellation in x - mean, as a separate f32 norm has it); 0 for a non-finite row.
pub fn normed_rows(x: &[f64], k: usize, norm: InputNorm, w: &[f64], b: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let eps = f64::from(norm.eps());
    let normed = match norm {
        InputNorm::Layer { .. } => reference::layer_norm(x, w, b, k, eps),
        InputNorm::Rms { unit_offset, .. } => reference::rms_norm(x, w, k, eps, f64::from(u8::from(unit_offset))),
    };
    let errors = x
        .chunks(k)
        .map(|row| {
            let mean = row.iter().sum::<f64>() / k as f64;
            let spread = (row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / k as f64 + eps).sqrt();
            let largest = row.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            let e = 1e-6 * (k as f64).sqrt() + 8e-7 * largest / spread;
            if e.is_finite() { e } else { 0.0 }
        })
        .collect();
    (normed, errors)
}

/// The largest finite magnitude in `v`.
pub fn max_abs(v: &[f32]) -> f64 {
    v.iter().filter(|x| x.is_finite()).fold(0.0f64, |m, &x| m.max(f64::from(x).abs()))
}

/// `f32_huge`, capped near f16's range (65504) when activations are f16.
pub fn huge_for(storage: DType, f32_huge: f32) -> f32 {
    if storage == DType::F16 { f32_huge.min(2e3) } else { f32_huge }
}

/// Activations in f16 for half the cases where the device reads f16, drawn from a stream of
/// its own so the f32 cases stay what they were.
pub fn pick_storage(rng: &CaseRng, target: &CaseTarget) -> DType {
    let mut own = CaseRng::new(rng.s[0] ^ 0x05ee_df16);
    if target.shader_f16 && own.bool(0.5) { DType::F16 } else { DType::F32 }
}
