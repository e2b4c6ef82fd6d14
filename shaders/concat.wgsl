// Copies that select and join tokens without arithmetic, one invocation per output element:
//   concat_channels: y[b, t, :] = [a[b, t + skip, :] | b[b, t + skip, :]]  (the second source
//                    optional): hidden states of several layers side by side, the class token
//                    dropped (LLaVA's vision_feature_layer list and select strategy)
//   concat_flat:     y[i] = a[offset + i] for i < len_a, else b[i - len_a]: a slice along the
//                    leading dimension, or two tensors one after the other (images' features)

struct Params {
    total: u32,       // elements of y
    tokens_out: u32,  // concat_channels: tokens per item of y
    tokens_in: u32,   // concat_channels: tokens per item of a and b
    skip: u32,        // concat_channels: leading tokens dropped
    width_a: u32,     // concat_channels: channels of a
    width_b: u32,     // concat_channels: channels of b (0: one source)
    offset: u32,      // concat_flat: first element of a read
    len_a: u32,       // concat_flat: elements taken from a
}

@group(0) @binding(0) var<storage, read> a: array<Act>;
@group(0) @binding(1) var<storage, read> b: array<Act>;
@group(0) @binding(2) var<storage, read_write> y: array<Act>;
@group(0) @binding(3) var<uniform> params: Params;

const WORKGROUP: u32 = 256u;

@compute @workgroup_size(256)
fn concat_channels(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = invocation(wid, groups, WORKGROUP, lid);
    if i >= params.total {
        return;
    }
    let width = params.width_a + params.width_b;
    let c = i % width;
    let row = i / width;
    let source_row = (row / params.tokens_out) * params.tokens_in + row % params.tokens_out + params.skip;
    if c < params.width_a {
        y[i] = a[source_row * params.width_a + c];
    } else {
        y[i] = b[source_row * params.width_b + c - params.width_a];
    }
}

@compute @workgroup_size(256)
fn concat_flat(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = invocation(wid, groups, WORKGROUP, lid);
    if i >= params.total {
        return;
    }
    if i < params.len_a {
        y[i] = a[params.offset + i];
    } else {
        y[i] = b[i - params.len_a];
    }
}
