//! Timing GPU work: timestamp queries at the compute pass's beginning and end when the device
//! has `TIMESTAMP_QUERY`, wall clock around submit-and-wait otherwise.

use std::time::Instant;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::tensor::read_buffer;

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
        let queries = gpu.features().contains(wgpu::Features::TIMESTAMP_QUERY).then(|| {
            let set = gpu.device().create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("vlbridge timer"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            });
            let resolve = gpu.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("vlbridge timer resolve"),
                size: 16,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            (set, resolve)
        });
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
        let writes = self.queries.as_ref().map(|(set, _)| wgpu::ComputePassTimestampWrites {
            query_set: set,
            beginning_of_pass_write_index: Some(0),
            end_of_pass_write_index: Some(1),
        });
        record(&mut encoder, writes);
        if let Some((set, resolve)) = &self.queries {
            encoder.resolve_query_set(set, 0..2, resolve, 0);
        }
        let start = Instant::now();
        gpu.queue().submit([encoder.finish()]);
        gpu.wait("timing")?;
        let wall_ms = start.elapsed().as_secs_f64() * 1e3;
        let Some((_, resolve)) = &self.queries else {
            return Ok(wall_ms);
        };
        let bytes = read_buffer(gpu, resolve, 16)?;
        Ok(self.durations(&bytes)?[0])
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
        let gpu = &self.gpu;
        if self.queries.is_none() {
            return (0..count).map(|i| self.time(|encoder, writes| record(encoder, i, writes))).collect();
        }
        let mut times = Vec::with_capacity(count);
        for first in (0..count).step_by(PASSES) {
            let n = PASSES.min(count - first);
            let queries = 2 * n as u32;
            let set = gpu.device().create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("vlbridge profile"),
                ty: wgpu::QueryType::Timestamp,
                count: queries,
            });
            let resolve = gpu.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("vlbridge profile resolve"),
                size: 8 * u64::from(queries),
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let mut encoder = gpu.device().create_command_encoder(&Default::default());
            for i in 0..n {
                let writes = wgpu::ComputePassTimestampWrites {
                    query_set: &set,
                    beginning_of_pass_write_index: Some(2 * i as u32),
                    end_of_pass_write_index: Some(2 * i as u32 + 1),
                };
                record(&mut encoder, first + i, Some(writes));
            }
            encoder.resolve_query_set(&set, 0..queries, &resolve, 0);
            gpu.queue().submit([encoder.finish()]);
            gpu.wait("timing")?;
            times.extend(self.durations(&read_buffer(gpu, &resolve, 8 * u64::from(queries))?)?);
        }
        Ok(times)
    }

    /// Milliseconds between each (begin, end) pair of resolved timestamps.
    fn durations(&self, bytes: &[u8]) -> Result<Vec<f64>> {
        let period = f64::from(self.gpu.queue().get_timestamp_period());
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
}
