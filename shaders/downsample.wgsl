// Spatial downsampling of a token grid: tokens [batch, h·w, channels] are a row-major h × w
// image (token t = y·w + x), and the output is a row-major out_h × out_w grid again.
//   avg_pool: torch.nn.functional.avg_pool2d(kernel k, stride k, padding 0). With ceil_mode
//     the last window of an axis k does not divide is partial and divides by its in-bounds
//     count (for k = 2: 2 on an edge, 1 in the corner); without it the remainder is dropped.
//   bilinear: F.interpolate(size=(out_h, out_w), mode="bilinear", align_corners=False, no
//     antialias), as LLaVA-OneVision pools: scale = in/out (not 2), src = (dst + 0.5)·scale
//     - 0.5 clamped at 0, two taps per axis, computed in f32 like PyTorch (taps(), in
//     common/bilinear_taps.wgsl).
// One invocation per output element, channel fastest.

struct Params {
    batch: u32,
    h: u32,
    w: u32,
    channels: u32,
    out_h: u32,
    out_w: u32,
    k: u32,        // avg_pool: window side and stride
    _pad0: u32,
    scale_h: f32,  // bilinear: h / out_h
    scale_w: f32,  // bilinear: w / out_w
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<Act>;
@group(0) @binding(1) var<storage, read_write> y: array<Act>;
@group(0) @binding(2) var<uniform> params: Params;

const WORKGROUP: u32 = 256u;

// (batch, output row, output column, channel) of invocation `i`, or none past the end.
fn output_coords(wid: vec3<u32>, groups: vec3<u32>, lid: u32) -> vec4<u32> {
    let i = invocation(wid, groups, WORKGROUP, lid);
    let c = i % params.channels;
    let pixel = i / params.channels;
    let ox = pixel % params.out_w;
    let oy = (pixel / params.out_w) % params.out_h;
    let b = pixel / (params.out_w * params.out_h);
    return vec4(b, oy, ox, c);
}

fn input_at(b: u32, yy: u32, xx: u32, c: u32) -> f32 {
    return f32(x[((b * params.h + yy) * params.w + xx) * params.channels + c]);
}

fn output_index(o: vec4<u32>) -> u32 {
    return ((o.x * params.out_h + o.y) * params.out_w + o.z) * params.channels + o.w;
}

@compute @workgroup_size(256)
fn avg_pool(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let o = output_coords(wid, groups, lid);
    if o.x >= params.batch {
        return;
    }
    var sum = 0.0;
    var count = 0u;
    for (var dy = 0u; dy < params.k; dy++) {
        for (var dx = 0u; dx < params.k; dx++) {
            let yy = params.k * o.y + dy;
            let xx = params.k * o.z + dx;
            if yy < params.h && xx < params.w {
                sum += input_at(o.x, yy, xx, o.w);
                count += 1u;
            }
        }
    }
    y[output_index(o)] = Act(sum / f32(count));
}

@compute @workgroup_size(256)
fn bilinear(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let o = output_coords(wid, groups, lid);
    if o.x >= params.batch {
        return;
    }
    let ty = taps(o.y, params.scale_h, params.h);
    let tx = taps(o.z, params.scale_w, params.w);
    let y0 = u32(ty.x);
    let y1 = u32(ty.y);
    let x0 = u32(tx.x);
    let x1 = u32(tx.y);
    let top = (1.0 - tx.z) * input_at(o.x, y0, x0, o.w) + tx.z * input_at(o.x, y0, x1, o.w);
    let bottom = (1.0 - tx.z) * input_at(o.x, y1, x0, o.w) + tx.z * input_at(o.x, y1, x1, o.w);
    y[output_index(o)] = Act((1.0 - ty.z) * top + ty.z * bottom);
}
