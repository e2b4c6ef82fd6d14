// ToMe's best_match (see tome.wgsl) for devices with SUBGROUP and subgroups of at least 8
// lanes. Each invocation owns one A token; B tokens are taken 8 at a time: lane l loads
// B row j0 + l % 8 and `subgroupBroadcast` hands it to every lane, so each B element is loaded
// once per 8 A tokens instead of once per A token (the loads were the cost on llvmpipe).
// A workgroup is 64 consecutive A tokens of one batch item; lanes past the last one compute
// along (broadcasts need the whole subgroup) and store nothing.

// As in tome_index.wgsl: values = unit rows -> out = best B index [batch, na]. Binding 0 is
// part of the shared layout but not read here.
@group(0) @binding(0) var<storage, read> unused: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;

var<private> best: f32;
var<private> best_j: u32;

// Candidate B token j with similarity partials `s`: strictly greater wins, so the first index
// keeps a tie (candidates arrive in index order).
fn consider(s: vec4<f32>, j: u32) {
    let dot = s.x + s.y + s.z + s.w;
    if j < params.nb && (dot > best || j == 0u) {
        best = dot;
        best_j = j;
    }
}

fn row4(row: u32, k: u32) -> vec4<f32> {
    return vec4(values[row + k], values[row + k + 1u], values[row + k + 2u], values[row + k + 3u]);
}

@compute @workgroup_size(64)
fn best_match_subgroup(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32,
                       @builtin(subgroup_invocation_id) lane: u32) {
    let blocks = (params.na + WORKGROUP - 1u) / WORKGROUP;
    let group = workgroup_index(wid, groups);
    // Uniform per workgroup, so the subgroup operations below stay in uniform control flow.
    if group >= params.batch * blocks {
        return;
    }
    let b = group / blocks;
    let a_raw = (group % blocks) * WORKGROUP + lid;
    let a = min(a_raw, params.na - 1u);
    let c = params.channels;
    let a_row = unit_row(b, a);
    let whole = c - c % 4u;
    best = LOWEST;
    best_j = 0u;
    for (var j0 = 0u; j0 < params.nb; j0 += 8u) {
        let b_row = unit_row(b, params.na + min(j0 + (lane & 7u), params.nb - 1u));
        var s0 = vec4(0.0); var s1 = vec4(0.0); var s2 = vec4(0.0); var s3 = vec4(0.0);
        var s4 = vec4(0.0); var s5 = vec4(0.0); var s6 = vec4(0.0); var s7 = vec4(0.0);
        for (var k = 0u; k < whole; k += 4u) {
            let av = row4(a_row, k);
            let bv = row4(b_row, k);
            s0 += av * subgroupBroadcast(bv, 0u);
            s1 += av * subgroupBroadcast(bv, 1u);
            s2 += av * subgroupBroadcast(bv, 2u);
            s3 += av * subgroupBroadcast(bv, 3u);
            s4 += av * subgroupBroadcast(bv, 4u);
            s5 += av * subgroupBroadcast(bv, 5u);
            s6 += av * subgroupBroadcast(bv, 6u);
            s7 += av * subgroupBroadcast(bv, 7u);
        }
        for (var k = whole; k < c; k++) {
            let av = values[a_row + k];
            let bv = values[b_row + k];
            s0.x += av * subgroupBroadcast(bv, 0u);
            s1.x += av * subgroupBroadcast(bv, 1u);
            s2.x += av * subgroupBroadcast(bv, 2u);
            s3.x += av * subgroupBroadcast(bv, 3u);
            s4.x += av * subgroupBroadcast(bv, 4u);
            s5.x += av * subgroupBroadcast(bv, 5u);
            s6.x += av * subgroupBroadcast(bv, 6u);
            s7.x += av * subgroupBroadcast(bv, 7u);
        }
        consider(s0, j0);
        consider(s1, j0 + 1u);
        consider(s2, j0 + 2u);
        consider(s3, j0 + 3u);
        consider(s4, j0 + 4u);
        consider(s5, j0 + 5u);
        consider(s6, j0 + 6u);
        consider(s7, j0 + 7u);
    }
    if a_raw >= params.na {
        return;
    }
    let is_class = params.class_token == 1u && a == 0u;
    out[b * params.na + a] = select(best_j, 0u, is_class);
}
