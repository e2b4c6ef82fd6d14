//! Running a [`Plan`]: host data in and out ([`Plan::run`]), a host engine's GPU tensors in
//! and out ([`Plan::run_into`]), into a host engine's encoder ([`Plan::encode`]), or timed for
//! the bench ([`Plan::time`]).

use super::{Plan, TensorId};
use crate::dtype::{HostData, HostVec};
use crate::error::{Error, Result};
use crate::tensor::{Staging, Tensor};
use crate::timing::Timer;

/// One dispatch's time in [`Plan::profile`].
#[derive(Debug, Clone, PartialEq)]
pub struct DispatchTime {
    /// The kernel it runs.
    pub kernel: &'static str,
    /// The stage of the node it came from, if the graph named one.
    pub stage: Option<String>,
    /// Milliseconds.
    pub ms: f64,
}

impl Plan {
    /// Writes `inputs` (in the order the graph declared them), runs every dispatch in one
    /// submission and reads back every output, in the order they were marked. Atomic: safe
    /// to call from several threads at once, each getting the outputs of its own inputs.
    pub fn run(&self, inputs: &[HostData<'_>]) -> Result<Vec<HostVec>> {
        let _exclusive = self.lock()?;
        self.write_unlocked(inputs)?;
        self.gpu.scoped("running a plan", || {
            let mut encoder = self
                .gpu
                .device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("vlbridge plan") });
            self.encode(&mut encoder);
            self.gpu.queue().submit([encoder.finish()]);
        })?;
        self.outputs.iter().map(|&id| self.own(id)?.read()).collect()
    }

    /// [`Plan::run`] without blocking, the form for the web: the outputs are copied out right
    /// after the run, before the next can start, then awaited (natively they are ready at once).
    pub async fn run_async(&self, inputs: &[HostData<'_>]) -> Result<Vec<HostVec>> {
        let (staging, outputs) = {
            let _exclusive = self.lock()?;
            self.write_unlocked(inputs)?;
            let outputs = self.outputs.iter().map(|&id| self.own(id)).collect::<Result<Vec<_>>>()?;
            self.gpu.scoped("running a plan", || {
                let mut encoder = self
                    .gpu
                    .device()
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("vlbridge plan") });
                self.encode(&mut encoder);
                self.gpu.queue().submit([encoder.finish()]);
            })?;
            let sources: Vec<_> = outputs.iter().map(|t| (t.buffer(), t.byte_len())).collect();
            (Staging::copy(&self.gpu, &sources)?, outputs)
        };
        let mut read = Vec::with_capacity(outputs.len());
        for (i, t) in outputs.iter().enumerate() {
            read.push(HostVec::decode(t.dtype(), &staging.read(&self.gpu, i).await?, t.len()));
        }
        Ok(read)
    }

    /// [`Plan::run`] for all-f32 data, outputs widened to f32.
    pub fn run_f32(&self, inputs: &[&[f32]]) -> Result<Vec<Vec<f32>>> {
        let data: Vec<HostData<'_>> = inputs.iter().map(|&x| HostData::F32(x)).collect();
        Ok(self.run(&data)?.into_iter().map(HostVec::into_f32).collect())
    }

    /// Runs on a host engine's GPU tensors and leaves the outputs in its GPU tensors: the
    /// inputs (in declaration order) are copied into the plan's buffers, the plan runs, and
    /// the outputs (in the order they were marked) are copied out, all in one submission, with
    /// no host copy and no readback. Shapes and dtypes must match the graph's. Atomic.
    pub fn run_into(&self, inputs: &[&Tensor], outputs: &[&Tensor]) -> Result<()> {
        let pairs = |ids: &[TensorId], given: &[&Tensor], what: &str| -> Result<Vec<&Tensor>> {
            if ids.len() != given.len() {
                return Err(Error::shape("plan", format!("number of {what}"), ids.len(), given.len()));
            }
            ids.iter()
                .zip(given)
                .enumerate()
                .map(|(i, (id, t))| {
                    t.check_device(&self.gpu, || format!("{what} tensor {i} of run_into"))?;
                    let own = self.own(*id)?;
                    if t.shape() != own.shape() || t.dtype() != own.dtype() {
                        return Err(Error::shape(
                            "plan",
                            format!("{what} tensor"),
                            format!("{:?} {}", own.shape(), own.dtype()),
                            format!("{:?} {}", t.shape(), t.dtype()),
                        ));
                    }
                    Ok(own)
                })
                .collect()
        };
        let ins = pairs(&self.inputs, inputs, "inputs")?;
        let outs = pairs(&self.outputs, outputs, "outputs")?;
        let _exclusive = self.lock()?;
        self.gpu.scoped("running a plan into host tensors", || {
            let mut encoder = self
                .gpu
                .device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("vlbridge run_into") });
            for (own, t) in ins.iter().zip(inputs) {
                encoder.copy_buffer_to_buffer(t.buffer(), 0, own.buffer(), 0, own.byte_len());
            }
            self.encode(&mut encoder);
            for (own, t) in outs.iter().zip(outputs) {
                encoder.copy_buffer_to_buffer(own.buffer(), 0, t.buffer(), 0, own.byte_len());
            }
            self.gpu.queue().submit([encoder.finish()]);
        })
    }

    /// Records every dispatch into `encoder` (one compute pass), for a host engine that
    /// submits its own command buffers. Inputs must already be in the plan's tensors
    /// ([`Plan::tensor`], [`Plan::write_inputs`]); the caller serialises its own submissions.
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder) {
        self.encode_timed(encoder, None);
    }

    /// [`Plan::encode`] with timestamps written at the pass's beginning and end.
    pub fn encode_timed(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        timestamp_writes: Option<wgpu::ComputePassTimestampWrites<'_>>,
    ) {
        let mut pass =
            encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("vlbridge"), timestamp_writes });
        for step in &self.steps {
            step.record(&mut pass);
        }
    }

    /// Writes `inputs` into the plan's input tensors (for [`Plan::encode`] and
    /// [`Plan::time`]).
    pub fn write_inputs(&self, inputs: &[HostData<'_>]) -> Result<()> {
        let _exclusive = self.lock()?;
        self.write_unlocked(inputs)
    }

    /// Runs the plan on the inputs last written and returns the pass's duration in
    /// milliseconds by `timer` (GPU timestamps where the device has them). For the bench.
    pub fn time(&self, timer: &Timer) -> Result<f64> {
        let _exclusive = self.lock()?;
        timer.time(|encoder, writes| self.encode_timed(encoder, writes))
    }

    /// [`Plan::time`] without blocking (the form for the web): submitted under the plan's lock,
    /// awaited after it.
    pub async fn time_async(&self, timer: &Timer) -> Result<f64> {
        let pending = {
            let _exclusive = self.lock()?;
            timer.submit(|encoder, writes| self.encode_timed(encoder, writes))?
        };
        pending.ms().await
    }

    /// Runs the plan on the inputs last written with every dispatch in a compute pass of its
    /// own, and returns each dispatch's time by `timer`, in plan order, with its kernel and
    /// the [`Graph::set_stage`](super::Graph::set_stage) of the node it came from. The pass
    /// boundaries cost a little: for attributing a run's time, not for timing it.
    pub fn profile(&self, timer: &Timer) -> Result<Vec<DispatchTime>> {
        let _exclusive = self.lock()?;
        let times = timer.time_each(self.steps.len(), |encoder, i, timestamp_writes| {
            let step = &self.steps[i];
            let mut pass =
                encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(step.kernel), timestamp_writes });
            step.record(&mut pass);
        })?;
        Ok(self
            .steps
            .iter()
            .zip(times)
            .map(|(step, ms)| DispatchTime {
                kernel: step.kernel,
                stage: step.stage.as_deref().map(str::to_string),
                ms,
            })
            .collect())
    }

    /// The GPU tensor bound to `id` (inputs, outputs, weights): a host engine can write
    /// inputs or consume outputs without a host round trip. None for an id of another graph
    /// and for tensors only unused nodes compute (those are not planned).
    pub fn tensor(&self, id: TensorId) -> Option<&Tensor> {
        self.tensors.get(id.0).and_then(Option::as_ref)
    }

    /// The inputs in declaration order.
    pub fn inputs(&self) -> &[TensorId] {
        &self.inputs
    }

    /// The outputs in the order they were marked.
    pub fn outputs(&self) -> &[TensorId] {
        &self.outputs
    }

    fn write_unlocked(&self, inputs: &[HostData<'_>]) -> Result<()> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::shape("plan", "number of inputs", self.inputs.len(), inputs.len()));
        }
        for (id, data) in self.inputs.iter().zip(inputs) {
            self.own(*id)?.write(*data)?;
        }
        Ok(())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, ()>> {
        self.round_trip.lock().map_err(|_| Error::device("running a plan", "lock poisoned"))
    }

    fn own(&self, id: TensorId) -> Result<&Tensor> {
        self.tensor(id).ok_or_else(|| Error::Graph(format!("tensor id {} has no buffer in this plan", id.0)))
    }
}
