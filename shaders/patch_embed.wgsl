// A ViT's patch embedding as one GEMM that reads its patches straight from the image:
//   y[b, t, c] = Σ_k patch(b, t)[k] · w[c, k] + bias[c] + pos[pos_row(b, t), c]
// with k = (channel, dy, dx) over one patch (Conv2d's [C, channels, p, p] weight flattened),
// so there is no unfold copy. Row t = 0 is the class token when CLASS_TOKEN = 1:
// class[c] + pos[0, c]. Item b reads image images[b] of pixels [slabs, channels, height,
// width] (padding tiles are never embedded); pos_row is the token's own row, or with
// POSITION_IDS = 1 its entry of ids [batch, patches] (Idefics3's bucketed positions).
// Each invocation owns a 4 × 4 block of y, as gemm_portable.wgsl.
//
// Pixels and y are activations (Act); the weight (binding 1) comes from a
// common/weights_scalar_*.wgsl; bias, class token and positions are f32.

struct Params {
    m: u32,          // rows of y: batch · tokens
    n: u32,          // embedding width C (rows of w)
    k: u32,          // channels · patch²
    tokens: u32,     // per item: class token + patches
    patch_side: u32, // pixels per patch side
    height: u32,     // image height in pixels
    width: u32,      // image width in pixels
    grid_w: u32,     // patches per image row (width / patch)
    slabs: u32,      // images in `pixels`
    positions: u32,  // rows of pos
    patches: u32,    // patches per item
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> pixels: array<Act>;
@group(0) @binding(2) var<storage, read> images: array<u32>;
@group(0) @binding(3) var<storage, read> pos: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read> class_token: array<f32>;
@group(0) @binding(6) var<storage, read> ids: array<u32>;
@group(0) @binding(7) var<storage, read_write> y: array<Act>;
@group(0) @binding(8) var<uniform> params: Params;

override HAS_BIAS: u32 = 1u;      // 1: add bias[c] to patch rows
override CLASS_TOKEN: u32 = 1u;   // 1: row 0 of every item is the class token
override POSITION_IDS: u32 = 0u;  // 1: patch rows take their position row from ids

const WORKGROUP: u32 = 64u;
const BLOCK: u32 = 4u;

// Index of pixel (channel 0, top-left) of the patch in y row `row`; the class token's row
// points at its item's first patch (its product is discarded).
fn patch_origin(row: u32) -> u32 {
    let b = row / params.tokens;
    let p = (row % params.tokens) - min(row % params.tokens, CLASS_TOKEN);
    let image = min(images[b], params.slabs - 1u);
    let py = p / params.grid_w;
    let px = p % params.grid_w;
    let channels = params.k / (params.patch_side * params.patch_side);
    return (image * channels * params.height + py * params.patch_side) * params.width + px * params.patch_side;
}

// The position-table row of y row `row`.
fn position_row(row: u32) -> u32 {
    let t = row % params.tokens;
    if POSITION_IDS == 0u || t < CLASS_TOKEN {
        return t;
    }
    let b = row / params.tokens;
    return min(ids[b * params.patches + t - CLASS_TOKEN] + CLASS_TOKEN, params.positions - 1u);
}

@compute @workgroup_size(64)
fn patch_embed(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let blocks_n = (params.n + BLOCK - 1u) / BLOCK;
    let block = invocation(wid, groups, WORKGROUP, lid);
    let m0 = (block / blocks_n) * BLOCK;
    let n0 = (block % blocks_n) * BLOCK;
    if m0 >= params.m {
        return;
    }
    let pp = params.patch_side * params.patch_side;
    var origin: array<u32, 4>;
    for (var i = 0u; i < BLOCK; i++) {
        origin[i] = patch_origin(min(m0 + i, params.m - 1u));
    }
    var acc: array<vec4<f32>, 4>;
    for (var kk = 0u; kk < params.k; kk++) {
        // im2col in the load: k = (channel, dy, dx) of the patch.
        let channel = kk / pp;
        let dy = (kk % pp) / params.patch_side;
        let dx = kk % params.patch_side;
        let offset = (channel * params.height + dy) * params.width + dx;
        let b = vec4(weight(min(n0, params.n - 1u) * params.k + kk), weight(min(n0 + 1u, params.n - 1u) * params.k + kk),
                     weight(min(n0 + 2u, params.n - 1u) * params.k + kk), weight(min(n0 + 3u, params.n - 1u) * params.k + kk));
        for (var i = 0u; i < BLOCK; i++) {
            acc[i] += f32(pixels[origin[i] + offset]) * b;
        }
    }
    for (var i = 0u; i < BLOCK; i++) {
        let row = m0 + i;
        if row >= params.m {
            break;
        }
        let is_class = CLASS_TOKEN == 1u && row % params.tokens == 0u;
        let pos_base = position_row(row) * params.n;
        for (var j = 0u; j < BLOCK; j++) {
            let c = n0 + j;
            if c >= params.n {
                break;
            }
            var v = acc[i][j];
            if is_class {
                v = class_token[c];
            } else if HAS_BIAS == 1u {
                v += bias[c];
            }
            y[row * params.n + c] = Act(v + pos[pos_base + c]);
        }
    }
}
