// Pixel shuffle (space to depth): output token o of [out_tokens, s²·C] is the s × s block of
// its image's row-major grid at its place, concatenated offset-major ((a·s + d)·C + c: InternVL,
// Idefics3, Qwen's merger) or channel-major (c·s² + a·s + d: Mistral 3's F.unfold). Several
// images of their own grids, one after the other, are described by a table of
// [first input token, first output token, rows, columns] per image; remainders of grids that s
// does not divide are dropped. One invocation per output element, channel fastest.

struct Params {
    channels: u32,  // C
    scale: u32,     // s
    images: u32,    // rows of the table
    total: u32,     // output elements: out_tokens · s² · C
}

override CHANNEL_MAJOR: u32 = 0u;  // 1: c·s² + a·s + d

@group(0) @binding(0) var<storage, read> x: array<Act>;           // [tokens, C]
@group(0) @binding(1) var<storage, read> grids: array<vec4<u32>>;  // [images]
@group(0) @binding(2) var<storage, read_write> y: array<Act>;     // [out_tokens, s²·C]
@group(0) @binding(3) var<uniform> params: Params;

const WORKGROUP: u32 = 256u;

@compute @workgroup_size(256)
fn pixel_shuffle(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let e = invocation(wid, groups, WORKGROUP, lid);
    if e >= params.total {
        return;
    }
    let s = params.scale;
    let merged = s * s * params.channels;
    let o = e / merged;
    let k = e % merged;
    // The last image whose first output token is at or before o (few images: a scan).
    var grid = grids[0];
    for (var g = 1u; g < params.images; g++) {
        let next = grids[g];
        if next.y <= o {
            grid = next;
        }
    }
    let t = o - grid.y;
    let out_w = grid.w / s;
    let i = t / out_w;
    let j = t % out_w;
    var block = k / params.channels;
    var c = k % params.channels;
    if CHANNEL_MAJOR == 1u {
        block = k % (s * s);
        c = k / (s * s);
    }
    let src = grid.x + (s * i + block / s) * grid.w + s * j + block % s;
    y[e] = x[src * params.channels + c];
}
