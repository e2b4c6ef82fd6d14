//! Timing GPU work: timestamp queries at the compute pass's beginning and end when the device
//! has `TIMESTAMP_QUERY`, wall clock around submit-and-wait otherwise.

use web_time::Instant;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::tensor::{Staging, read_buffer};

/// How a [`Timer`] measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// GPU timestamps around the pass: kernel time only.
    Timestamps,
    /// Host wall clock around submit and wait: includes submission and synchronisation.
    WallClock,
}

/// Measures recorded GPU work.
pub struct Timer {
    gpu: Gpu,
    queries: Option<(wgpu::QuerySet, wgpu::Buffer)>,
}

impl Timer {
    /// Timestamps when the device offers them.
    pub fn new(gpu: &Gpu) -> Self {
        let queries = gpu.features().contains(wgpu::Features::TIMESTAMP_QUERY).then(|| timestamp_queries(gpu, 1));
        Self { gpu: gpu.clone(), queries }
    }

    /// Host wall clock around submit and wait, whatever the device offers (what a caller of
    /// the whole round trip sees).
    pub fn wall_clock(gpu: &Gpu) -> Self {
        Self { gpu: gpu.clone(), queries: None }
    }

    /// Which clock this timer uses.
    pub fn clock(&self) -> Clock {
        if self.queries.is_some() { Clock::Timestamps } else { Clock::WallClock }
    }

    /// Records with `record` (which must begin exactly one compute pass with the given
    /// timestamp writes), submits, waits, and returns the pass's duration in milliseconds.
    pub fn time(
        &self,
        record: impl FnOnce(&mut wgpu::CommandEncoder, Option<wgpu::ComputePassTimestampWrites<'_>>),
    ) -> Result<f64> {
        let gpu = &self.gpu;
        let mut encoder = gpu.device().create_command_encoder(&Default::default());
        if let Some((set, resolve)) = &self.queries {
            record(&mut encoder, Some(pass_writes(set, 0)));
            return Ok(self.submit_resolved(encoder, set, resolve, 1)?[0]);
        }
        record(&mut encoder, None);
        let start = Instant::now();
        gpu.queue().submit([encoder.finish()]);
        gpu.wait("timing")?;
        Ok(start.elapsed().as_secs_f64() * 1e3)
    }

    /// [`Timer::time`] without blocking, the form for the web: records and submits now (so a
    /// plan's lock need not be held while waiting) and returns what to await for the time.
    pub fn submit(
        &self,
        record: impl FnOnce(&mut wgpu::CommandEncoder, Option<wgpu::ComputePassTimestampWrites<'_>>),
    ) -> Result<PendingTime> {
        let gpu = &self.gpu;
        let mut encoder = gpu.device().create_command_encoder(&Default::default());
        if let Some((set, resolve)) = &self.queries {
            record(&mut encoder, Some(pass_writes(set, 0)));
            encoder.resolve_query_set(set, 0..2, resolve, 0);
            gpu.queue().submit([encoder.finish()]);
            let staging = Staging::copy(gpu, &[(resolve, 16)])?;
            return Ok(PendingTime { gpu: gpu.clone(), wait: Wait::Timestamps(staging) });
        }
        record(&mut encoder, None);
        let (tx, rx) = futures_channel::oneshot::channel();
        let start = Instant::now();
        gpu.queue().submit([encoder.finish()]);
        gpu.queue().on_submitted_work_done(move || {
            let _ = tx.send(Instant::now());
        });
        Ok(PendingTime { gpu: gpu.clone(), wait: Wait::Done(start, rx) })
    }

    /// Times `count` compute passes that `record(encoder, i, writes)` records one each: with
    /// timestamps, in one submission per 2048 passes (a query set's limit is 4096); with the
    /// wall clock, each submitted and waited for alone. Milliseconds per pass.
    pub fn time_each(
        &self,
        count: usize,
        mut record: impl FnMut(&mut wgpu::CommandEncoder, usize, Option<wgpu::ComputePassTimestampWrites<'_>>),
    ) -> Result<Vec<f64>> {
        const PASSES: usize = 2048;
        if self.queries.is_none() {
            return (0..count).map(|i| self.time(|encoder, writes| record(encoder, i, writes))).collect();
        }
        let mut times = Vec::with_capacity(count);
        for first in (0..count).step_by(PASSES) {
            let passes = PASSES.min(count - first);
            let (set, resolve) = timestamp_queries(&self.gpu, passes);
            let mut encoder = self.gpu.device().create_command_encoder(&Default::default());
            for i in 0..passes {
                record(&mut encoder, first + i, Some(pass_writes(&set, i)));
            }
            times.extend(self.submit_resolved(encoder, &set, &resolve, passes)?);
        }
        Ok(times)
    }

    /// Resolves the first `passes` (begin, end) pairs of `set` into `resolve` after what
    /// `encoder` recorded, submits, waits, and returns each pass's milliseconds.
    fn submit_resolved(
        &self,
        mut encoder: wgpu::CommandEncoder,
        set: &wgpu::QuerySet,
        resolve: &wgpu::Buffer,
        passes: usize,
    ) -> Result<Vec<f64>> {
        let queries = 2 * passes as u32;
        encoder.resolve_query_set(set, 0..queries, resolve, 0);
        self.gpu.queue().submit([encoder.finish()]);
        self.gpu.wait("timing")?;
        durations(&self.gpu, &read_buffer(&self.gpu, resolve, 8 * u64::from(queries))?)
    }
}

/// Milliseconds between each (begin, end) pair of resolved timestamps.
fn durations(gpu: &Gpu, bytes: &[u8]) -> Result<Vec<f64>> {
    let period = f64::from(gpu.queue().get_timestamp_period());
    bytes
        .chunks_exact(16)
        .map(|pair| {
            let [begin, end]: [u64; 2] = bytemuck::pod_read_unaligned(pair);
            if end < begin {
                return Err(Error::device("timing", format!("timestamps went backwards ({begin} -> {end})")));
            }
            Ok((end - begin) as f64 * period / 1e6)
        })
        .collect()
}

/// A submitted timing ([`Timer::submit`]) to await.
pub struct PendingTime {
    gpu: Gpu,
    wait: Wait,
}

enum Wait {
    /// The resolved timestamps, being copied out.
    Timestamps(Staging),
    /// The submission's start and the time its work was done.
    Done(Instant, futures_channel::oneshot::Receiver<Instant>),
}

impl PendingTime {
    /// The pass's milliseconds once the GPU is done (natively the device is polled).
    pub async fn ms(self) -> Result<f64> {
        match self.wait {
            Wait::Timestamps(staging) => {
                let bytes = staging.read(&self.gpu, 0).await?;
                durations(&self.gpu, &bytes).map(|d| d[0])
            }
            Wait::Done(start, done) => {
                self.gpu.wait("timing")?;
                let end = done.await.map_err(|_| Error::device("timing", "work-done callback never ran"))?;
                Ok(end.duration_since(start).as_secs_f64() * 1e3)
            }
        }
    }
}

/// A timestamp query set of `passes` (begin, end) pairs and the buffer it resolves into.
fn timestamp_queries(gpu: &Gpu, passes: usize) -> (wgpu::QuerySet, wgpu::Buffer) {
    let count = 2 * passes as u32;
    let set = gpu.device().create_query_set(&wgpu::QuerySetDescriptor {
        label: Some("vlbridge timer"),
        ty: wgpu::QueryType::Timestamp,
        count,
    });
    let resolve = gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("vlbridge timer resolve"),
        size: 8 * u64::from(count),
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    (set, resolve)
}

/// Pass `i`'s begin and end writes into `set`.
fn pass_writes(set: &wgpu::QuerySet, i: usize) -> wgpu::ComputePassTimestampWrites<'_> {
    let begin = 2 * i as u32;
    wgpu::ComputePassTimestampWrites {
        query_set: set,
        beginning_of_pass_write_index: Some(begin),
        end_of_pass_write_index: Some(begin + 1),
    }
}
