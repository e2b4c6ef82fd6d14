// ToMe's size-weighted merge (see tome.wgsl for the whole algorithm): features are read and
// written as activations (Act: f32 or f16), sums are f32. Params, bindings 1 (sizes), 2 (A
// rows) and 4 and helpers come from common/tome_layout.wgsl.

override MERGE: u32 = 0u;  // 0 size-weighted features, 1 summed sizes

@group(0) @binding(0) var<storage, read> x: array<Act>;
@group(0) @binding(3) var<storage, read_write> out: array<Act>;

// Channels k .. k+3 of token t (batch item b); channels past the row read its last one.
fn features4(b: u32, t: u32, k: u32) -> vec4<f32> {
    let row = (b * params.tokens + t) * params.channels;
    let last = params.channels - 1u;
    return vec4(f32(x[row + min(k, last)]), f32(x[row + min(k + 1u, last)]),
                f32(x[row + min(k + 2u, last)]), f32(x[row + min(k + 3u, last)]));
}

// x [batch, n, channels], values = sizes [batch, n], indices = A rows [batch, na]
// -> out [batch, n - r, channels] (MERGE 0) or [batch, n - r] (MERGE 1). One workgroup per
// output row, each lane summing 4 channels in f32 registers per sweep over the A rows (a
// sweep per 256 channels: the A rows are scanned c / 256 times, not once per channel).
@compute @workgroup_size(64)
fn merge(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let rows = params.tokens - params.r;
    let group = workgroup_index(wid, groups);
    if group >= params.batch * rows {
        return;
    }
    let row = group % rows;
    let b = group / rows;
    let c = select(params.channels, 1u, MERGE == 1u);
    let o = group * c;
    for (var k = lid * 4u; k < c; k += WORKGROUP * 4u) {
        // A B row starts from its own token (scatter_reduce's include_self); an A row from zero.
        var den = 0.0;
        var sum = vec4(0.0);
        if row >= params.nu {
            let t = 2u * (row - params.nu) + 1u;
            den = values[b * params.tokens + t];
            sum = features4(b, t, k) * den;
        }
        for (var a = 0u; a < params.na; a++) {
            if indices[b * params.na + a] == row {
                let s = values[b * params.tokens + 2u * a];
                den += s;
                sum += features4(b, 2u * a, k) * s;
            }
        }
        let merged = select(sum / den, vec4(den), MERGE == 1u);
        for (var j = 0u; j < 4u && k + j < c; j++) {
            out[o + k + j] = Act(merged[j]);
        }
    }
}
