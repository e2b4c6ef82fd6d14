//! Planning and running a [`Graph`].

use std::sync::Arc;

use super::{Graph, Role, TensorId};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::{Access, Cost, Dispatch, KernelSpec, Meta, fold_grid};
use crate::pipeline::Pipeline;
use crate::tensor::{TENSOR_USAGE, Tensor, check_binding, checked_bytes};

struct Step {
    name: &'static str,
    pipeline: Arc<Pipeline>,
    bind_group: wgpu::BindGroup,
    grid: [u32; 3],
}

/// A graph ready to run: pipelines fetched, intermediate buffers assigned, uniforms written,
/// bind groups built. Running it only writes inputs and records one dispatch per node.
///
/// `Plan` is `Send` and `Sync`. Its buffers are shared by every run, so [`Plan::run_and_read`]
/// and [`Plan::run_into`] hold a lock for the whole round trip and may be called from several
/// threads at once; a separate [`Plan::run`] then [`Plan::read`] is not atomic across threads
/// (another thread's run can land in between).
pub struct Plan {
    // Indexed by tensor id; None for tensors only dead nodes compute (never planned).
    tensors: Vec<Option<Tensor>>,
    inputs: Vec<TensorId>,
    outputs: Vec<TensorId>,
    steps: Vec<Step>,
    // Keeps the arena alive for the bind groups that reference it.
    _uniforms: wgpu::Buffer,
    activation_bytes: u64,
    constant_bytes: u64,
    cost: Cost,
    // Serialises round trips that write inputs and read outputs of the shared buffers.
    round_trip: std::sync::Mutex<()>,
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

fn new_buffer(gpu: &Gpu, bytes: u64, label: &str) -> wgpu::Buffer {
    gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes,
        usage: TENSOR_USAGE,
        mapped_at_creation: false,
    })
}

impl Plan {
    /// Plans `graph` on `gpu`. Every size is checked against the device limits before any
    /// buffer is created; GPU errors during set-up come back as [`Error::Device`].
    pub fn new(gpu: &Gpu, graph: &Graph) -> Result<Self> {
        if graph.outputs.is_empty() {
            return Err(Error::Graph("graph has no outputs".into()));
        }
        // Nodes no output depends on are dropped here: no pipeline, dispatch or buffer.
        let graph = &graph.pruned();
        let limits = gpu.limits();
        // Check everything that can fail on sizes before touching the device.
        let caps = gpu.caps();
        let mut bytes = Vec::with_capacity(graph.tensors.len());
        for t in &graph.tensors {
            bytes.push(checked_bytes(gpu, "graph", &t.meta.shape, t.meta.dtype)?);
        }
        let max_binding = limits.max_storage_buffer_binding_size;
        let align = u64::from(limits.min_storage_buffer_offset_alignment);
        let mut dispatches = Vec::with_capacity(graph.nodes.len());
        let mut specs = Vec::with_capacity(graph.nodes.len());
        for node in &graph.nodes {
            let metas = node_inputs(graph, &node.inputs);
            let spec = node.op.spec(&caps, &metas);
            let parts = node.op.dispatches(spec, &metas, max_binding, align)?;
            // Every binding but a chunked weight is bound whole.
            for (slot, id) in node.inputs.iter().chain([&node.output]).enumerate() {
                if !(slot == 1 && parts[0].weight_bytes.is_some()) {
                    check_binding(gpu, node.op.name(), bytes[id.0])?;
                }
            }
            let grids = parts
                .iter()
                .map(|d| fold_grid(node.op.name(), d.workgroups, limits.max_compute_workgroups_per_dimension))
                .collect::<Result<Vec<_>>>()?;
            dispatches.push(parts.into_iter().zip(grids).collect::<Vec<_>>());
            specs.push(spec);
        }
        let pipelines = graph
            .nodes
            .iter()
            .zip(&specs)
            .map(|(n, spec)| {
                let storage = n.op.storage(&node_inputs(graph, &n.inputs));
                Ok((*spec, gpu.pipeline(spec, storage, &n.op.overrides())?))
            })
            .collect::<Result<Vec<_>>>()?;

        gpu.scoped("planning a graph", || Self::build(gpu, graph, &bytes, dispatches, pipelines))?
    }

    fn build(
        gpu: &Gpu,
        graph: &Graph,
        bytes: &[u64],
        dispatches: Vec<Vec<(Dispatch, [u32; 3])>>,
        pipelines: Vec<(&'static KernelSpec, Arc<Pipeline>)>,
    ) -> Result<Self> {
        // Last node that reads each tensor; outputs live to the end.
        let mut last_use = vec![None; graph.tensors.len()];
        for (i, node) in graph.nodes.iter().enumerate() {
            for input in &node.inputs {
                last_use[input.0] = Some(i);
            }
        }
        let pinned = |id: TensorId| graph.outputs.contains(&id);

        let mut slots: Vec<Option<Tensor>> = vec![None; graph.tensors.len()];
        let mut pool = Pool { buffers: Vec::new() };
        let mut pool_slot = vec![None; graph.tensors.len()];
        let (mut own_bytes, mut constant_bytes) = (0, 0);
        for (i, t) in graph.tensors.iter().enumerate() {
            match &t.role {
                Role::Constant(tensor) => {
                    constant_bytes += tensor.buffer().size();
                    slots[i] = Some(tensor.clone());
                }
                Role::Input => {
                    own_bytes += bytes[i];
                    slots[i] =
                        Some(Tensor::from_buffer(new_buffer(gpu, bytes[i], &t.name), &t.meta.shape, t.meta.dtype)?);
                }
                Role::Computed if pinned(TensorId(i)) => {
                    own_bytes += bytes[i];
                    slots[i] =
                        Some(Tensor::from_buffer(new_buffer(gpu, bytes[i], &t.name), &t.meta.shape, t.meta.dtype)?);
                }
                Role::Computed => {}
            }
        }
        for (i, node) in graph.nodes.iter().enumerate() {
            let out = node.output.0;
            if slots[out].is_none() {
                let index = pool.take(gpu, bytes[out]);
                pool_slot[out] = Some(index);
                let meta = &graph.tensors[out].meta;
                slots[out] = Some(Tensor::from_buffer(pool.buffers[index].0.clone(), &meta.shape, meta.dtype)?);
            }
            // Free after the output is taken, so a node never writes a buffer it reads.
            for id in node.inputs.iter().chain([&node.output]) {
                if last_use[id.0].is_none_or(|last| last <= i) {
                    if let Some(index) = pool_slot[id.0] {
                        pool.buffers[index].1 = true;
                    }
                }
            }
        }
        let tensors = slots;

        // One uniform buffer for every node's Params, at aligned offsets.
        let align = u64::from(gpu.limits().min_uniform_buffer_offset_alignment);
        let mut arena = Vec::new();
        let mut offsets = Vec::with_capacity(graph.nodes.len());
        for node_dispatches in &dispatches {
            offsets.push(
                node_dispatches
                    .iter()
                    .map(|(d, _)| {
                        arena.resize((arena.len() as u64).next_multiple_of(align) as usize, 0);
                        let offset = arena.len() as u64;
                        arena.extend(&d.params);
                        offset
                    })
                    .collect::<Vec<_>>(),
            );
        }
        arena.resize(arena.len().max(16).next_multiple_of(16), 0);
        let uniforms = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("vlbridge params"),
            size: arena.len() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        gpu.queue.write_buffer(&uniforms, 0, &arena);

        let mut steps = Vec::with_capacity(graph.nodes.len());
        let mut cost = Cost::default();
        for (((node, (spec, pipeline)), node_dispatches), offsets) in
            graph.nodes.iter().zip(pipelines).zip(dispatches).zip(offsets)
        {
            cost = cost + node.op.cost(&node_inputs(graph, &node.inputs));
            for ((dispatch, grid), offset) in node_dispatches.into_iter().zip(offsets) {
                let bind_group = bind_group(gpu, node, spec, &pipeline, &tensors, &uniforms, offset, &dispatch)?;
                steps.push(Step { name: spec.name, pipeline: pipeline.clone(), bind_group, grid });
            }
        }

        let inputs =
            (0..graph.tensors.len()).filter(|&i| matches!(graph.tensors[i].role, Role::Input)).map(TensorId).collect();
        Ok(Self {
            tensors,
            inputs,
            outputs: graph.outputs.clone(),
            steps,
            _uniforms: uniforms,
            activation_bytes: own_bytes + pool.bytes(),
            constant_bytes,
            cost,
            round_trip: std::sync::Mutex::new(()),
        })
    }

    /// Writes `inputs` (in the order the graph declared them), records every dispatch in one
    /// encoder and submits once. Returns without waiting; [`Plan::read`] waits.
    pub fn run(&self, gpu: &Gpu, inputs: &[&[f32]]) -> Result<()> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::shape("plan", "number of inputs", self.inputs.len(), inputs.len()));
        }
        for (id, data) in self.inputs.iter().zip(inputs) {
            self.own(*id)?.write_f32(gpu, data)?;
        }
        gpu.scoped("running a plan", || {
            let mut encoder =
                gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("vlbridge plan") });
            self.encode(&mut encoder);
            gpu.queue.submit([encoder.finish()]);
        })
    }

    /// Records every dispatch into `encoder` (one compute pass), for a host engine that
    /// submits its own command buffers. Inputs must already be written.
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder) {
        self.encode_timed(encoder, None);
    }

    /// [`Plan::encode`] with timestamps written at the pass's beginning and end (see
    /// [`crate::timing::Timer`]).
    pub fn encode_timed(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        timestamp_writes: Option<wgpu::ComputePassTimestampWrites<'_>>,
    ) {
        let mut pass =
            encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("vlbridge"), timestamp_writes });
        for step in &self.steps {
            pass.set_pipeline(&step.pipeline.pipeline);
            pass.set_bind_group(0, &step.bind_group, &[]);
            pass.dispatch_workgroups(step.grid[0], step.grid[1], step.grid[2]);
        }
    }

    /// Waits for submitted work and downloads output `id` as f32.
    pub fn read(&self, gpu: &Gpu, id: TensorId) -> Result<Vec<f32>> {
        if !self.outputs.contains(&id) {
            return Err(Error::Graph(format!("tensor id {} is not an output of this plan", id.0)));
        }
        self.own(id)?.to_f32(gpu)
    }

    /// Runs and downloads every output, in the order they were marked.
    /// Safe to call from several threads at once (see [`Plan`]).
    pub fn run_and_read(&self, gpu: &Gpu, inputs: &[&[f32]]) -> Result<Vec<Vec<f32>>> {
        let _exclusive = self.round_trip.lock().map_err(|_| Error::device("running a plan", "lock poisoned"))?;
        self.run(gpu, inputs)?;
        self.outputs.iter().map(|&id| self.read(gpu, id)).collect()
    }

    /// Runs on a host engine's GPU tensors and leaves the outputs in its GPU tensors: the
    /// inputs (in declaration order) are copied into the plan's buffers, the plan runs, and
    /// the outputs (in the order they were marked) are copied out, all in one submission, with
    /// no host copy and no readback. Shapes and dtypes must match the graph's. Safe to call
    /// from several threads at once.
    pub fn run_into(&self, gpu: &Gpu, inputs: &[&Tensor], outputs: &[&Tensor]) -> Result<()> {
        let pairs = |ids: &[TensorId], given: &[&Tensor], what: &str| -> Result<Vec<(&Tensor, usize)>> {
            if ids.len() != given.len() {
                return Err(Error::shape("plan", format!("number of {what}"), ids.len(), given.len()));
            }
            ids.iter()
                .zip(given)
                .map(|(id, t)| {
                    let own = self.own(*id)?;
                    if t.shape() != own.shape() || t.dtype() != own.dtype() {
                        return Err(Error::shape(
                            "plan",
                            format!("{what} tensor"),
                            format!("{:?} {}", own.shape(), own.dtype()),
                            format!("{:?} {}", t.shape(), t.dtype()),
                        ));
                    }
                    Ok((own, own.len() * own.dtype().size()))
                })
                .collect()
        };
        let ins = pairs(&self.inputs, inputs, "inputs")?;
        let outs = pairs(&self.outputs, outputs, "outputs")?;
        let _exclusive = self.round_trip.lock().map_err(|_| Error::device("running a plan", "lock poisoned"))?;
        gpu.scoped("running a plan into host tensors", || {
            let mut encoder =
                gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("vlbridge run_into") });
            let aligned = |bytes: usize| (bytes as u64).next_multiple_of(4);
            for ((own, bytes), t) in ins.iter().zip(inputs) {
                encoder.copy_buffer_to_buffer(t.buffer(), 0, own.buffer(), 0, aligned(*bytes));
            }
            self.encode(&mut encoder);
            for ((own, bytes), t) in outs.iter().zip(outputs) {
                encoder.copy_buffer_to_buffer(own.buffer(), 0, t.buffer(), 0, aligned(*bytes));
            }
            gpu.queue.submit([encoder.finish()]);
        })
    }

    /// The GPU tensor bound to `id` (inputs, outputs, weights): a host engine can write
    /// inputs or consume outputs without a host round trip. None for an id of another graph
    /// and for tensors only unused nodes compute (those are not planned).
    pub fn tensor(&self, id: TensorId) -> Option<&Tensor> {
        self.tensors.get(id.0).and_then(Option::as_ref)
    }

    fn own(&self, id: TensorId) -> Result<&Tensor> {
        self.tensor(id).ok_or_else(|| Error::Graph(format!("tensor id {} has no buffer in this plan", id.0)))
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

    /// Kernel names in dispatch order.
    pub fn dispatches(&self) -> Vec<&'static str> {
        self.steps.iter().map(|s| s.name).collect()
    }
}

/// The bind group of one dispatch of `node`. Read bindings an op leaves out (a bias under
/// `Epilogue::NONE`) are bound to the first input; override constants make the shader never
/// read them.
#[allow(clippy::too_many_arguments)]
fn bind_group(
    gpu: &Gpu,
    node: &super::Node,
    spec: &KernelSpec,
    pipeline: &Pipeline,
    tensors: &[Option<Tensor>],
    uniforms: &wgpu::Buffer,
    offset: u64,
    dispatch: &Dispatch,
) -> Result<wgpu::BindGroup> {
    // Every tensor a planned node touches has a buffer (pruning keeps whatever live nodes read).
    let buffer_of = |id: TensorId| {
        tensors
            .get(id.0)
            .and_then(Option::as_ref)
            .map(Tensor::buffer)
            .ok_or_else(|| Error::Graph(format!("tensor id {} has no buffer in this plan", id.0)))
    };
    let mut slots = node.op.read_slots(spec).into_iter();
    let entries = spec
        .bindings
        .iter()
        .enumerate()
        .map(|(binding, access)| {
            Ok(wgpu::BindGroupEntry {
                binding: binding as u32,
                resource: match access {
                    Access::Read => {
                        let input = slots.next().flatten().unwrap_or(0);
                        let buffer = buffer_of(node.inputs.get(input).copied().unwrap_or(node.output))?;
                        match dispatch.weight_bytes {
                            // A chunked GEMM binds its slice of the weight rows.
                            Some((start, size)) if input == 1 => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                buffer,
                                offset: start,
                                size: wgpu::BufferSize::new(size),
                            }),
                            _ => buffer.as_entire_binding(),
                        }
                    }
                    Access::ReadWrite => buffer_of(node.output)?.as_entire_binding(),
                    Access::Uniform => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: uniforms,
                        offset,
                        size: wgpu::BufferSize::new(spec.params_size),
                    }),
                },
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(spec.name),
        layout: &pipeline.layout,
        entries: &entries,
    }))
}

fn node_inputs<'g>(graph: &'g Graph, ids: &[TensorId]) -> Vec<&'g Meta> {
    ids.iter().map(|id| &graph.tensors[id.0].meta).collect()
}
