// LLaVA-NeXT AnyRes packing (`pack_image_features`) as one gather: output token t is
//   t < side²                  the base tile's token t (the downscaled whole image, no newline)
//   else, u = t - side²        row u / (cols + 1), column u % (cols + 1) of the unpadded grid:
//       column == cols         image_newline
//       else                   the stitched tile grid at (row + top, column + left): tile
//                              1 + (y / side)·grid_w + x / side, patch (y % side)·side + x % side
// The host computes the few scalars (best resolution, grid, unpad window); every index of
// every token is computed here. One invocation per output element, channel fastest.

struct Params {
    channels: u32,
    side: u32,     // patches per tile side
    grid_w: u32,   // tiles per row of the grid
    rows: u32,     // unpadded grid rows (H_u)
    cols: u32,     // unpadded grid columns (W_u)
    top: u32,      // first kept row of the stitched grid
    left: u32,     // first kept column
    tokens: u32,   // side² + rows·(cols + 1)
}

@group(0) @binding(0) var<storage, read> features: array<Act>;  // [tiles, side², channels]
@group(0) @binding(1) var<storage, read> newline: array<f32>;   // [channels]
@group(0) @binding(2) var<storage, read_write> packed: array<Act>;  // [tokens, channels]
@group(0) @binding(3) var<uniform> params: Params;

const WORKGROUP: u32 = 256u;

@compute @workgroup_size(256)
fn anyres_pack(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * groups.x + wid.x) * WORKGROUP + lid;
    if i >= params.tokens * params.channels {
        return;
    }
    let c = i % params.channels;
    let t = i / params.channels;
    let patches = params.side * params.side;
    if t < patches {
        packed[i] = features[t * params.channels + c];
        return;
    }
    let u = t - patches;
    let row = u / (params.cols + 1u);
    let col = u % (params.cols + 1u);
    if col == params.cols {
        packed[i] = Act(newline[c]);
        return;
    }
    let y = row + params.top;
    let x = col + params.left;
    let tile = 1u + (y / params.side) * params.grid_w + x / params.side;
    let cell = (y % params.side) * params.side + x % params.side;
    packed[i] = features[(tile * patches + cell) * params.channels + c];
}
