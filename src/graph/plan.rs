//! Planning a [`Graph`]: variants chosen, pipelines fetched, buffers assigned by liveness,
//! uniforms written, bind groups built.

use std::sync::{Arc, Mutex};

use super::{Graph, Node, Role, TensorId};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::{BindLimits, Cost, Dispatch, KernelSpec, fold_grid};
use crate::ops::Meta;
use crate::pipeline::{Access, Pipeline};
use crate::tensor::{Tensor, check_binding, checked_bytes, new_buffer};

pub(super) struct Step {
    pub(super) kernel: &'static str,
    pub(super) variant: &'static str,
    pub(super) pipeline: Arc<Pipeline>,
    pub(super) bind_group: wgpu::BindGroup,
    pub(super) grid: [u32; 3],
    pub(super) stage: Option<Arc<str>>,
}

impl Step {
    /// Its dispatch, into `pass`.
    pub(super) fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.grid[0], self.grid[1], self.grid[2]);
    }
}

/// A graph ready to run on the device it was planned for: pipelines fetched, intermediate
/// buffers assigned, uniforms written, bind groups built. Running it only writes inputs and
/// records one compute pass.
///
/// `Plan` is `Send` and `Sync`; its buffers are shared by every run, so [`Plan::run`] and
/// [`Plan::run_into`] hold a lock for the whole round trip and may be called from several
/// threads at once.
pub struct Plan {
    pub(super) gpu: Gpu,
    // Indexed by tensor id; None for tensors only dead nodes compute (never planned).
    pub(super) tensors: Vec<Option<Tensor>>,
    pub(super) inputs: Vec<TensorId>,
    pub(super) outputs: Vec<TensorId>,
    pub(super) steps: Vec<Step>,
    // Keeps the arena alive for the bind groups that reference it.
    _uniforms: wgpu::Buffer,
    activation_bytes: u64,
    constant_bytes: u64,
    cost: Cost,
    // Serialises round trips that write inputs and read outputs of the shared buffers.
    pub(super) round_trip: Mutex<()>,
}

/// Buffers for computed tensors, reused once their last reader has run.
struct Pool {
    buffers: Vec<(wgpu::Buffer, bool)>,
}

impl Pool {
    /// Smallest free buffer that fits, else a new one.
    fn take(&mut self, gpu: &Gpu, bytes: u64) -> usize {
        let best = self
            .buffers
            .iter()
            .enumerate()
            .filter(|(_, (b, free))| *free && b.size() >= bytes)
            .min_by_key(|(_, (b, _))| b.size())
            .map(|(i, _)| i);
        let index = best.unwrap_or_else(|| {
            self.buffers.push((new_buffer(gpu, bytes, "vlbridge intermediate"), true));
            self.buffers.len() - 1
        });
        self.buffers[index].1 = false;
        index
    }

    fn bytes(&self) -> u64 {
        self.buffers.iter().map(|(b, _)| b.size()).sum()
    }
}

/// Everything decided about one node before any buffer exists.
struct Planned {
    spec: &'static KernelSpec,
    pipeline: Arc<Pipeline>,
    dispatches: Vec<(Dispatch, [u32; 3])>,
}

impl Plan {
    /// Plans `graph` on `gpu`: nodes no output depends on dropped, each node lowered for the
    /// device (`graph::lower`), variants chosen. Every size is checked against the device
    /// limits before any buffer is created; GPU errors during set-up come back as
    /// [`Error::Device`].
    pub fn new(gpu: &Gpu, graph: &Graph) -> Result<Self> {
        Self::check_devices(gpu, graph)?;
        Self::planned(gpu, &super::lower::lower(graph, gpu.caps())?)
    }

    /// Plans `graph`'s nodes as built, with no lowering step: what a kernel's own case measures
    /// (its bench row, its fuzz cases), whatever the device would rewrite it into.
    pub fn unlowered(gpu: &Gpu, graph: &Graph) -> Result<Self> {
        Self::check_devices(gpu, graph)?;
        Self::planned(gpu, &graph.pruned())
    }

    /// A constant of another device is an error before any GPU work (wgpu would abort).
    fn check_devices(gpu: &Gpu, graph: &Graph) -> Result<()> {
        if graph.outputs.is_empty() {
            return Err(Error::Graph("graph has no outputs".into()));
        }
        for t in &graph.tensors {
            if let Role::Constant(tensor) = &t.role {
                tensor.check_device(gpu, || format!("graph constant `{}`", t.name))?;
            }
        }
        Ok(())
    }

    fn planned(gpu: &Gpu, graph: &Graph) -> Result<Self> {
        let limits = gpu.limits();
        let bytes = graph
            .tensors
            .iter()
            .map(|t| checked_bytes(gpu, "graph", &t.meta.shape, t.meta.dtype))
            .collect::<Result<Vec<_>>>()?;
        let bind = BindLimits {
            max_binding: limits.max_storage_buffer_binding_size,
            offset_alignment: u64::from(limits.min_storage_buffer_offset_alignment),
        };
        let planned = graph
            .nodes
            .iter()
            .map(|node| {
                let metas = node_inputs(graph, &node.inputs);
                let kernel = node.op.kernel();
                let spec = node.op.select(gpu.caps(), &metas);
                let dispatches = kernel.dispatches(spec, &metas, &bind)?;
                // Every binding but a partially bound input is bound whole.
                for (slot, id) in node.inputs.iter().chain([&node.output]).enumerate() {
                    if !dispatches.iter().any(|d| d.partial.is_some_and(|(input, ..)| input == slot)) {
                        check_binding(gpu, kernel.name(), bytes[id.0])?;
                    }
                }
                let max = limits.max_compute_workgroups_per_dimension;
                let dispatches = dispatches
                    .into_iter()
                    .map(|d| {
                        let grid = fold_grid(kernel.name(), d.workgroups, max)?;
                        Ok((d, grid))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let overrides = kernel.overrides(spec, &metas);
                let storage = kernel.storage(&metas);
                let pipeline = gpu.pipeline(&spec.pipeline(storage, &overrides, &|| spec.source_for(storage)))?;
                Ok(Planned { spec, pipeline, dispatches })
            })
            .collect::<Result<Vec<_>>>()?;
        gpu.scoped("planning a graph", || Self::build(gpu, graph, &bytes, planned))?
    }

    fn build(gpu: &Gpu, graph: &Graph, bytes: &[u64], planned: Vec<Planned>) -> Result<Self> {
        // Last node that reads each tensor; outputs live to the end.
        let mut last_use = vec![None; graph.tensors.len()];
        for (i, node) in graph.nodes.iter().enumerate() {
            for input in &node.inputs {
                last_use[input.0] = Some(i);
            }
        }
        let pinned = |id: TensorId| graph.outputs.contains(&id);

        let mut tensors: Vec<Option<Tensor>> = vec![None; graph.tensors.len()];
        let mut pool = Pool { buffers: Vec::new() };
        let mut pool_slot = vec![None; graph.tensors.len()];
        let (mut own_bytes, mut constant_bytes) = (0, 0);
        for (i, t) in graph.tensors.iter().enumerate() {
            let own = match &t.role {
                Role::Constant(tensor) => {
                    constant_bytes += tensor.buffer().size();
                    tensors[i] = Some(tensor.clone());
                    false
                }
                Role::Input => true,
                Role::Computed => pinned(TensorId(i)),
            };
            if own {
                own_bytes += bytes[i];
                let buffer = new_buffer(gpu, bytes[i], &t.name);
                tensors[i] = Some(Tensor::from_buffer(gpu, buffer, &t.meta.shape, t.meta.dtype)?);
            }
        }
        for (i, node) in graph.nodes.iter().enumerate() {
            let out = node.output.0;
            if tensors[out].is_none() {
                let index = pool.take(gpu, bytes[out]);
                pool_slot[out] = Some(index);
                let meta = &graph.tensors[out].meta;
                tensors[out] = Some(Tensor::from_buffer(gpu, pool.buffers[index].0.clone(), &meta.shape, meta.dtype)?);
            }
            // Free after the output is taken, so a node never writes a buffer it reads.
            for id in node.inputs.iter().chain([&node.output]) {
                if last_use[id.0].is_none_or(|last| last <= i)
                    && let Some(index) = pool_slot[id.0]
                {
                    pool.buffers[index].1 = true;
                }
            }
        }

        // One uniform buffer for every dispatch's Params, at aligned offsets.
        let align = u64::from(gpu.limits().min_uniform_buffer_offset_alignment);
        let mut arena = Vec::new();
        let offsets: Vec<Vec<u64>> = planned
            .iter()
            .map(|p| {
                p.dispatches
                    .iter()
                    .map(|(d, _)| {
                        arena.resize((arena.len() as u64).next_multiple_of(align) as usize, 0);
                        let offset = arena.len() as u64;
                        arena.extend(&d.params);
                        offset
                    })
                    .collect()
            })
            .collect();
        arena.resize(arena.len().max(16).next_multiple_of(16), 0);
        let uniforms = gpu.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("vlbridge params"),
            size: arena.len() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        gpu.queue().write_buffer(&uniforms, 0, &arena);

        let mut steps = Vec::with_capacity(graph.nodes.len());
        let mut cost = Cost::default();
        for ((node, planned), offsets) in graph.nodes.iter().zip(planned).zip(offsets) {
            cost = cost + node.op.cost(&node_inputs(graph, &node.inputs));
            for ((dispatch, grid), offset) in planned.dispatches.iter().zip(offsets) {
                let binding = Binding { tensors: &tensors, uniforms: &uniforms, offset, dispatch };
                let bind_group = binding.group(gpu, node, planned.spec, &planned.pipeline)?;
                steps.push(Step {
                    kernel: node.op.name(),
                    variant: planned.spec.name,
                    pipeline: Arc::clone(&planned.pipeline),
                    bind_group,
                    grid: *grid,
                    stage: node.stage.clone(),
                });
            }
        }

        Ok(Self {
            gpu: gpu.clone(),
            tensors,
            inputs: graph.inputs(),
            outputs: graph.outputs.clone(),
            steps,
            _uniforms: uniforms,
            activation_bytes: own_bytes + pool.bytes(),
            constant_bytes,
            cost,
            round_trip: Mutex::new(()),
        })
    }

    /// Bytes of input, output and pooled intermediate buffers this plan allocated: its peak
    /// device memory besides the weights.
    pub fn activation_bytes(&self) -> u64 {
        self.activation_bytes
    }

    /// Bytes of constant tensors (weights) the plan binds.
    pub fn constant_bytes(&self) -> u64 {
        self.constant_bytes
    }

    /// Total work of one run.
    pub fn cost(&self) -> Cost {
        self.cost
    }

    /// Kernel names in dispatch order (a node bound in chunks appears once per dispatch).
    pub fn dispatches(&self) -> Vec<&'static str> {
        self.steps.iter().map(|s| s.kernel).collect()
    }

    /// The variant (shader entry point) of every dispatch, in order.
    pub fn variants(&self) -> Vec<&'static str> {
        self.steps.iter().map(|s| s.variant).collect()
    }

    /// The device the plan runs on.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }
}

/// What one dispatch binds.
struct Binding<'a> {
    tensors: &'a [Option<Tensor>],
    uniforms: &'a wgpu::Buffer,
    offset: u64,
    dispatch: &'a Dispatch,
}

impl Binding<'_> {
    /// The bind group of one dispatch of `node`. Read bindings an op leaves out (a bias under
    /// `Epilogue::NONE`) are bound to the first input (or the output when there is none);
    /// override constants make the shader never read them.
    fn group(&self, gpu: &Gpu, node: &Node, spec: &KernelSpec, pipeline: &Pipeline) -> Result<wgpu::BindGroup> {
        // Every tensor a planned node touches has a buffer (pruning keeps whatever live nodes read).
        let buffer_of = |id: TensorId| {
            self.tensors
                .get(id.0)
                .and_then(Option::as_ref)
                .map(Tensor::buffer)
                .ok_or_else(|| Error::Graph(format!("tensor id {} has no buffer in this plan", id.0)))
        };
        let mut slots = node.op.kernel().read_slots(spec).into_iter();
        let entries = spec
            .bindings
            .iter()
            .enumerate()
            .map(|(binding, access)| {
                let resource = match access {
                    Access::Read => {
                        let input = slots.next().flatten().unwrap_or(0);
                        let buffer = buffer_of(node.inputs.get(input).copied().unwrap_or(node.output))?;
                        match self.dispatch.partial {
                            Some((bound, offset, size)) if bound == input => {
                                wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                    buffer,
                                    offset,
                                    size: wgpu::BufferSize::new(size),
                                })
                            }
                            _ => buffer.as_entire_binding(),
                        }
                    }
                    Access::ReadWrite => buffer_of(node.output)?.as_entire_binding(),
                    Access::Uniform => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: self.uniforms,
                        offset: self.offset,
                        size: wgpu::BufferSize::new(spec.params_size),
                    }),
                };
                Ok(wgpu::BindGroupEntry { binding: binding as u32, resource })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(gpu.device().create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(spec.name),
            layout: &pipeline.layout,
            entries: &entries,
        }))
    }
}

fn node_inputs<'g>(graph: &'g Graph, ids: &[TensorId]) -> Vec<&'g Meta> {
    ids.iter().map(|id| &graph.tensors[id.0].meta).collect()
}
