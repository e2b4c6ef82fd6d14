// LLaVA-NeXT AnyRes packing (`pack_image_features`) as one gather: output token t is
//   t < side²                  the base tile's token t (the downscaled whole image, no newline)
//   else, u = t - side²        row u / (out_cols + 1), column u % (out_cols + 1) of the packed grid:
//       column == out_cols     image_newline
//       else                   the unpadded grid at (row, column): the stitched tile grid at
//                              (row + top, column + left), tile 1 + (y / side)·grid_w + x / side,
//                              patch (y % side)·side + x % side
// With RESIZE (LLaVA-OneVision's anyres_max_N) the packed grid is the unpadded one resized
// bilinearly (align_corners=False, PyTorch's f32 source coordinates): each output reads its
// two-by-two taps through the same map, so the resized grid is never stored (taps() from
// common/bilinear_taps.wgsl).
// The host computes the few scalars (best resolution, grid, unpad window, resized size); every
// index of every token is computed here. One invocation per output element, channel fastest.

struct Params {
    channels: u32,
    side: u32,      // patches per tile side
    grid_w: u32,    // tiles per row of the grid
    rows: u32,      // unpadded grid rows (H_u)
    cols: u32,      // unpadded grid columns (W_u)
    top: u32,       // first kept row of the stitched grid
    left: u32,      // first kept column
    tokens: u32,    // side² + out_rows·(out_cols + 1)
    out_rows: u32,  // packed grid rows (rows, or resized)
    out_cols: u32,  // packed grid columns
    scale_h: f32,   // RESIZE: rows / out_rows
    scale_w: f32,   // RESIZE: cols / out_cols
}

override RESIZE: u32 = 0u;  // 1: bilinear resize of the unpadded grid to out_rows × out_cols

@group(0) @binding(0) var<storage, read> features: array<Act>;  // [tiles, side², channels]
@group(0) @binding(1) var<storage, read> newline: array<f32>;   // [channels]
@group(0) @binding(2) var<storage, read_write> packed: array<Act>;  // [tokens, channels]
@group(0) @binding(3) var<uniform> params: Params;

const WORKGROUP: u32 = 256u;

// Channel c of the unpadded grid at (y, x).
fn unpadded(y: u32, x: u32, c: u32) -> f32 {
    let sy = y + params.top;
    let sx = x + params.left;
    let tile = 1u + (sy / params.side) * params.grid_w + sx / params.side;
    let cell = (sy % params.side) * params.side + sx % params.side;
    return f32(features[(tile * params.side * params.side + cell) * params.channels + c]);
}

@compute @workgroup_size(256)
fn anyres_pack(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = invocation(wid, groups, WORKGROUP, lid);
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
    let row = u / (params.out_cols + 1u);
    let col = u % (params.out_cols + 1u);
    if col == params.out_cols {
        packed[i] = Act(newline[c]);
        return;
    }
    if RESIZE == 0u {
        packed[i] = Act(unpadded(row, col, c));
        return;
    }
    let ty = taps(row, params.scale_h, params.rows);
    let tx = taps(col, params.scale_w, params.cols);
    let y0 = u32(ty.x);
    let y1 = u32(ty.y);
    let x0 = u32(tx.x);
    let x1 = u32(tx.y);
    let top = (1.0 - tx.z) * unpadded(y0, x0, c) + tx.z * unpadded(y0, x1, c);
    let bottom = (1.0 - tx.z) * unpadded(y1, x0, c) + tx.z * unpadded(y1, x1, c);
    packed[i] = Act((1.0 - ty.z) * top + ty.z * bottom);
}
