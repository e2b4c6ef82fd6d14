//! Graph executor: build a graph of kernel nodes once, [`Plan`] it (shape checks, pipelines,
//! buffer reuse by liveness, one uniform arena, prebuilt bind groups), run it many times.

mod lower;
mod plan;
mod run;

pub use plan::Plan;
pub use run::DispatchTime;

use std::sync::Arc;

use crate::dtype::{DType, HostData};
use crate::error::{Error, Result};
use crate::gpu::{Caps, Gpu};
use crate::kernels::cases::evaluate;
use crate::kernels::{Case, Op};
use crate::ops::{Meta, check_u32_elements};
use crate::tensor::Tensor;

/// Handle to a tensor of a [`Graph`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(pub(crate) usize);

#[derive(Debug, Clone)]
pub(crate) enum Role {
    /// Written by the caller before each run.
    Input,
    /// A tensor that already lives on the GPU (weights); bound as-is.
    Constant(Tensor),
    /// Produced by a node.
    Computed,
}

#[derive(Debug, Clone)]
pub(crate) struct TensorDecl {
    pub(crate) name: String,
    pub(crate) meta: Meta,
    pub(crate) role: Role,
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) op: Op,
    pub(crate) inputs: Vec<TensorId>,
    pub(crate) output: TensorId,
    /// The [`Graph::set_stage`] in force when the node was added (kept through lowering).
    pub(crate) stage: Option<Arc<str>>,
}

/// A dataflow graph of kernel nodes. Shapes are checked as nodes are added, so a graph that
/// builds is a graph whose every shape fits.
///
/// ```
/// use vlbridge::ops::{Epilogue, GeluForm};
/// use vlbridge::{Gpu, Graph, Plan, Tensor};
///
/// # fn main() -> vlbridge::Result<()> {
/// let gpu = Gpu::new()?;
/// let mut g = Graph::new();
/// let x = g.input("x", &[2, 4])?;
/// let w = g.constant("w", &Tensor::from_f32(&gpu, &[3, 4], &[0.25; 12])?);
/// let b = g.constant("b", &Tensor::from_f32(&gpu, &[3], &[1.0, 0.0, -1.0])?);
/// let y = g.add(Epilogue::bias_gelu(GeluForm::Erf), &[x, w, b])?; // gelu(x·Wᵀ + b)
/// g.output(y)?;
/// // A mismatched shape is an error when the node is added, not at run time.
/// assert!(g.add(Epilogue::NONE, &[y, w]).is_err());
///
/// let plan = Plan::new(&gpu, &g)?;
/// let x_data = [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0];
/// let out = plan.run(&[x_data[..].into()])?;
/// let want = g.reference(&[x_data[..].into()])?; // f64, on the CPU
/// assert!(vlbridge::reference::compare(out[0].as_f32().unwrap(), &want[0], 1e-6, 1e-6).passed());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub(crate) tensors: Vec<TensorDecl>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) outputs: Vec<TensorId>,
    stage: Option<Arc<str>>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares an f32 input the caller writes before every run.
    pub fn input(&mut self, name: &str, shape: &[usize]) -> Result<TensorId> {
        self.input_as(name, shape, DType::F32)
    }

    /// Declares an input stored as `dtype` (f16 activations: the nodes reading it run with f16
    /// storage; u8 masks; u32 indices). [`Plan::run`] rounds f32 data to f16.
    pub fn input_as(&mut self, name: &str, shape: &[usize], dtype: DType) -> Result<TensorId> {
        check_u32_elements("graph", &format!("input `{name}`"), shape)?;
        Ok(self.push(name, Meta::new(shape, dtype), Role::Input))
    }

    /// Declares a tensor already on the GPU (a weight), bound without copying.
    pub fn constant(&mut self, name: &str, tensor: &Tensor) -> TensorId {
        let meta = Meta::new(tensor.shape(), tensor.dtype());
        self.push(name, meta, Role::Constant(tensor.clone()))
    }

    /// Adds a node running `op` on `inputs`; returns its output. Fails if shapes or dtypes do
    /// not fit.
    pub fn add(&mut self, op: impl Into<Op>, inputs: &[TensorId]) -> Result<TensorId> {
        let op = op.into();
        let metas = inputs
            .iter()
            .map(|id| self.meta(*id).ok_or_else(|| Error::Graph(format!("unknown tensor id {}", id.0))))
            .collect::<Result<Vec<_>>>()?;
        let meta = op.check(&metas)?;
        let output = self.push(&format!("{}#{}", op.name(), self.nodes.len()), meta, Role::Computed);
        self.nodes.push(Node { op, inputs: inputs.to_vec(), output, stage: self.stage.clone() });
        Ok(output)
    }

    /// Names the stage the nodes added from now on belong to ("tower", "connector"), which
    /// [`Plan::profile`] sums their time by.
    pub fn set_stage(&mut self, stage: &str) {
        self.stage = Some(stage.into());
    }

    /// Marks a computed tensor as an output: it keeps its own buffer and can be read back.
    pub fn output(&mut self, id: TensorId) -> Result<()> {
        match self.tensors.get(id.0).map(|t| &t.role) {
            Some(Role::Computed) => {
                self.outputs.push(id);
                Ok(())
            }
            Some(_) => Err(Error::Graph(format!("tensor `{}` is not computed by a node", self.tensors[id.0].name))),
            None => Err(Error::Graph(format!("unknown tensor id {}", id.0))),
        }
    }

    /// Shape of a tensor.
    pub fn shape(&self, id: TensorId) -> Option<&[usize]> {
        self.meta(id).map(|m| m.shape.as_slice())
    }

    /// Shape and dtype of a tensor.
    pub fn meta(&self, id: TensorId) -> Option<&Meta> {
        self.tensors.get(id.0).map(|t| &t.meta)
    }

    /// The inputs in declaration order: the order [`Plan::run`] takes their data in.
    pub fn inputs(&self) -> Vec<TensorId> {
        (0..self.tensors.len()).filter(|&i| matches!(self.tensors[i].role, Role::Input)).map(TensorId).collect()
    }

    /// The outputs in the order they were marked.
    pub fn outputs(&self) -> &[TensorId] {
        &self.outputs
    }

    /// The name a tensor was declared with.
    pub fn name(&self, id: TensorId) -> Option<&str> {
        self.tensors.get(id.0).map(|t| t.name.as_str())
    }

    /// Renames input `id` (a connector composed into a model takes the model's input name).
    pub fn rename(&mut self, id: TensorId, name: &str) -> Result<()> {
        match self.tensors.get_mut(id.0) {
            Some(t) if matches!(t.role, Role::Input) => {
                t.name = name.to_string();
                Ok(())
            }
            _ => Err(Error::Graph(format!("tensor id {} is no input", id.0))),
        }
    }

    /// Number of kernel nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The same graph with only the nodes some output depends on (same tensor ids): what the
    /// planner runs, so a branch nobody reads costs no dispatch and no buffer.
    pub(crate) fn pruned(&self) -> Graph {
        let mut needed = vec![false; self.tensors.len()];
        for output in &self.outputs {
            needed[output.0] = true;
        }
        let mut keep = vec![false; self.nodes.len()];
        for (i, node) in self.nodes.iter().enumerate().rev() {
            if needed[node.output.0] {
                keep[i] = true;
                for input in &node.inputs {
                    needed[input.0] = true;
                }
            }
        }
        let nodes = self.nodes.iter().zip(keep).filter(|(_, k)| *k).map(|(n, _)| n.clone()).collect();
        Graph { tensors: self.tensors.clone(), nodes, outputs: self.outputs.clone(), stage: self.stage.clone() }
    }

    /// The same graph with every fused sublayer as the nodes it fuses: `attention_rows` as
    /// attention, GEMM (bias, residual) and LayerNorm; `mlp_rows` as GEMM (input norm, bias,
    /// activation), GEMM (bias, residual) and LayerNorm. What CPU rasterisers plan
    /// (`kernels::rows::fuses_sublayers`), and the measured baseline of the fusion.
    pub fn with_sublayers_split(&self) -> Result<Graph> {
        let split = Caps::offline(&[("sublayers", "split")]);
        lower::lower_where(self, &split, &|op| matches!(op, Op::AttentionRows(_) | Op::MlpRows(_)))
    }

    fn push(&mut self, name: &str, meta: Meta, role: Role) -> TensorId {
        self.tensors.push(TensorDecl { name: name.to_string(), meta, role });
        TensorId(self.tensors.len() - 1)
    }

    /// Evaluates the graph on the CPU with every op's f64 reference: the truth a plan of this
    /// graph is compared with. Constants are read back from their tensors; `inputs` are in
    /// declaration order and are seen as their declared dtype stores them (f32 data rounded to
    /// an f16 input), as [`Plan::run`] stores them. Intermediate results are not rounded: the
    /// difference is the storage error of f16 graphs. Returns the outputs in the order they
    /// were marked.
    pub fn reference(&self, inputs: &[HostData<'_>]) -> Result<Vec<Vec<f64>>> {
        let declared = self.inputs();
        if inputs.len() != declared.len() {
            return Err(Error::shape("graph reference", "number of inputs", declared.len(), inputs.len()));
        }
        let mut given = inputs.iter();
        let mut values: Vec<Option<Vec<f64>>> = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            values.push(match &t.role {
                Role::Input => {
                    let data = given.next().copied().unwrap_or(HostData::F32(&[]));
                    if data.len() != t.meta.len() {
                        let what = format!("input `{}` elements", t.name);
                        return Err(Error::shape("graph reference", what, t.meta.len(), data.len()));
                    }
                    Some(data.to_f64_as(t.meta.dtype)?)
                }
                Role::Constant(tensor) => Some(tensor.read()?.to_f64()),
                Role::Computed => None,
            });
        }
        let metas: Vec<&Meta> = self.tensors.iter().map(|t| &t.meta).collect();
        let nodes = self.nodes.iter().map(|n| (&n.op, n.inputs.iter().map(|i| i.0).collect(), n.output.0));
        let outputs: Vec<usize> = self.outputs.iter().map(|o| o.0).collect();
        evaluate(&metas, values, nodes, &outputs)
    }

    /// The graph of a kernel's case, its constants uploaded to `gpu`. Inputs keep the case's
    /// declaration order, so `Plan::run(&case.input_data())` runs it.
    pub fn from_case(gpu: &Gpu, case: &Case) -> Result<Graph> {
        let mut g = Graph::new();
        let mut ids = Vec::with_capacity(case.metas.len());
        for t in &case.tensors {
            ids.push(if t.constant {
                g.constant(&t.name, &Tensor::from_data(gpu, &t.meta.shape, t.meta.dtype, t.data.as_data())?)
            } else {
                g.input_as(&t.name, &t.meta.shape, t.meta.dtype)?
            });
        }
        for node in &case.nodes {
            let inputs: Vec<TensorId> = node.inputs.iter().map(|&i| ids[i]).collect();
            ids.push(g.add(node.op, &inputs)?);
        }
        for &o in &case.outputs {
            g.output(ids[o])?;
        }
        Ok(g)
    }
}
