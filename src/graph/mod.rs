//! Graph executor: build a graph of kernel nodes once, [`Plan`] it (shape checks, pipelines,
//! buffer reuse by liveness, one uniform arena, prebuilt bind groups), run it many times.

mod plan;

pub use plan::Plan;

use crate::error::{Error, Result};
use crate::kernels::{Meta, Op};
use crate::tensor::{DType, Tensor};

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
}

/// A dataflow graph of kernel nodes. Shapes are checked as nodes are added, so a graph that
/// builds is a graph whose every shape fits.
///
/// ```
/// use vlbridge::kernels::Op;
/// use vlbridge::kernels::gelu::GeluForm;
/// use vlbridge::kernels::gemm::Epilogue;
/// use vlbridge::{Gpu, Graph, Plan, Tensor};
///
/// # fn main() -> vlbridge::Result<()> {
/// let gpu = Gpu::new()?;
/// let mut g = Graph::new();
/// let x = g.input("x", &[2, 4])?;
/// let w = g.constant("w", &Tensor::from_f32(&gpu, &[3, 4], &[0.25; 12])?);
/// let b = g.constant("b", &Tensor::from_f32(&gpu, &[3], &[1.0, 0.0, -1.0])?);
/// let y = g.add(Op::Linear(Epilogue::bias_gelu(GeluForm::Erf)), &[x, w, b])?; // gelu(x·Wᵀ + b)
/// g.output(y)?;
/// // A mismatched shape is an error when the node is added, not at run time.
/// assert!(g.add(Op::Linear(Epilogue::NONE), &[y, w]).is_err());
///
/// let plan = Plan::new(&gpu, &g)?;
/// let out = plan.run_and_read(&gpu, &[&[1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]])?;
/// let want = g.reference(&gpu, &[&[1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]])?;
/// assert!(vlbridge::reference::compare(&out[0], &want[0], 1e-6, 1e-6).passed());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub(crate) tensors: Vec<TensorDecl>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) outputs: Vec<TensorId>,
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
    /// storage). [`Plan::run`] rounds the f32 data it is given to `dtype`.
    pub fn input_as(&mut self, name: &str, shape: &[usize], dtype: DType) -> Result<TensorId> {
        crate::kernels::check_u32_elements("graph", &format!("input `{name}`"), shape)?;
        Ok(self.push(name, Meta { shape: shape.to_vec(), dtype }, Role::Input))
    }

    /// Declares a tensor already on the GPU (a weight), bound without copying.
    pub fn constant(&mut self, name: &str, tensor: &Tensor) -> TensorId {
        let meta = Meta { shape: tensor.shape().to_vec(), dtype: tensor.dtype() };
        self.push(name, meta, Role::Constant(tensor.clone()))
    }

    /// Adds a node running `op` on `inputs`; returns its output. Fails if shapes do not fit.
    pub fn add(&mut self, op: Op, inputs: &[TensorId]) -> Result<TensorId> {
        let metas = inputs
            .iter()
            .map(|id| {
                self.tensors
                    .get(id.0)
                    .map(|t| &t.meta)
                    .ok_or_else(|| Error::Graph(format!("unknown tensor id {}", id.0)))
            })
            .collect::<Result<Vec<_>>>()?;
        let meta = op.check(&metas)?;
        let output = self.push(&format!("{}#{}", op.name(), self.nodes.len()), meta, Role::Computed);
        self.nodes.push(Node { op, inputs: inputs.to_vec(), output });
        Ok(output)
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
        self.tensors.get(id.0).map(|t| t.meta.shape.as_slice())
    }

    /// Number of kernel nodes (dispatches per run).
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
        Graph { tensors: self.tensors.clone(), nodes, outputs: self.outputs.clone() }
    }

    fn push(&mut self, name: &str, meta: Meta, role: Role) -> TensorId {
        self.tensors.push(TensorDecl { name: name.to_string(), meta, role });
        TensorId(self.tensors.len() - 1)
    }
}

impl Graph {
    /// Evaluates the graph on the CPU with every op's f64 reference: the truth a plan of this
    /// graph is compared with. Weights are read back from the GPU; `inputs` are in the order
    /// the graph declared them and are rounded to their declared dtype, as [`Plan::run`]
    /// stores them (so the reference sees what the kernels see). Intermediate results are not
    /// rounded: the difference is the storage error of f16 graphs. Returns the outputs in the
    /// order they were marked.
    pub fn reference(&self, gpu: &crate::Gpu, inputs: &[&[f32]]) -> Result<Vec<Vec<f64>>> {
        let declared = self.tensors.iter().filter(|t| matches!(t.role, Role::Input)).count();
        if inputs.len() != declared {
            return Err(Error::shape("graph reference", "number of inputs", declared, inputs.len()));
        }
        let mut given = inputs.iter();
        let mut values: Vec<Option<Vec<f64>>> = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            values.push(match &t.role {
                Role::Input => {
                    let data = given.next().copied().unwrap_or_default();
                    if data.len() != t.meta.shape.iter().product::<usize>() {
                        return Err(Error::shape(
                            "graph reference",
                            format!("input `{}` elements", t.name),
                            t.meta.shape.iter().product::<usize>(),
                            data.len(),
                        ));
                    }
                    Some(data.iter().map(|&v| crate::kernels::round_to(t.meta.dtype, f64::from(v))).collect())
                }
                Role::Constant(tensor) => Some(tensor.to_f32(gpu)?.into_iter().map(f64::from).collect()),
                Role::Computed => None,
            });
        }
        for node in &self.nodes {
            let metas: Vec<&Meta> = node.inputs.iter().map(|id| &self.tensors[id.0].meta).collect();
            let data = node
                .inputs
                .iter()
                .map(|id| {
                    values[id.0]
                        .as_deref()
                        .ok_or_else(|| Error::Graph(format!("tensor id {} read before it is computed", id.0)))
                })
                .collect::<Result<Vec<_>>>()?;
            values[node.output.0] = Some(node.op.reference(&data, &metas));
        }
        Ok(self.outputs.iter().map(|id| values[id.0].clone().unwrap_or_default()).collect())
    }
}
