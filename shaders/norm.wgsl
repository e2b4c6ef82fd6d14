// Normalisation over the last dimension, one workgroup per row, sums in f32:
//   layer_norm  y = (x - mean) / sqrt(var + eps) · weight + bias, as torch's nn.LayerNorm:
//               biased variance, computed in two passes (mean first, then the mean of squared
//               deviations) so a row with a large common offset loses no precision
//   rms_norm    y = x / sqrt(mean(x²) + eps) · (WEIGHT_OFFSET + weight): Llama/Qwen RMSNorm
//               (offset 0), Gemma's, which scales by 1 + w (offset 1)
// x and y are activations (Act); weight and bias f32 parameters.

struct Params {
    rows: u32,  // all leading dimensions folded
    dim: u32,   // normalised (last) dimension
    eps: f32,
    _pad: u32,
}

override WEIGHT_OFFSET: f32 = 0.0;  // rms_norm: 1 scales by (1 + weight)

// rms_norm has no bias: its layout skips binding 2.
@group(0) @binding(0) var<storage, read> x: array<Act>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<Act>;
@group(0) @binding(4) var<uniform> params: Params;

const WORKGROUP: u32 = 64u;

var<workgroup> partial: array<f32, WORKGROUP>;

// Sum of `v` over the workgroup, returned to every invocation.
fn workgroup_sum(lid: u32, v: f32) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var stride = WORKGROUP / 2u; stride > 0u; stride /= 2u) {
        if lid < stride {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    // Nobody may overwrite partial[0] for the next reduction before everyone has read it.
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(64)
fn layer_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    // Uniform per workgroup, so the barriers below stay in uniform control flow.
    let row = workgroup_index(wid, groups);
    if row >= params.rows {
        return;
    }
    let base = row * params.dim;
    let n = f32(params.dim);

    var sum = 0.0;
    for (var i = lid; i < params.dim; i += WORKGROUP) {
        sum += f32(x[base + i]);
    }
    let mean = workgroup_sum(lid, sum) / n;

    var squares = 0.0;
    for (var i = lid; i < params.dim; i += WORKGROUP) {
        let d = f32(x[base + i]) - mean;
        squares += d * d;
    }
    let inv_std = inverseSqrt(workgroup_sum(lid, squares) / n + params.eps);

    for (var i = lid; i < params.dim; i += WORKGROUP) {
        y[base + i] = Act((f32(x[base + i]) - mean) * inv_std * weight[i] + bias[i]);
    }
}

@compute @workgroup_size(64)
fn rms_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    // Uniform per workgroup, so the barriers below stay in uniform control flow.
    let row = workgroup_index(wid, groups);
    if row >= params.rows {
        return;
    }
    let base = row * params.dim;
    var squares = 0.0;
    for (var i = lid; i < params.dim; i += WORKGROUP) {
        let v = f32(x[base + i]);
        squares += v * v;
    }
    let inv_rms = inverseSqrt(workgroup_sum(lid, squares) / f32(params.dim) + params.eps);
    for (var i = lid; i < params.dim; i += WORKGROUP) {
        y[base + i] = Act(f32(x[base + i]) * inv_rms * (WEIGHT_OFFSET + weight[i]));
    }
}
