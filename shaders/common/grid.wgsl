// The grid contract with `kernels::fold_grid`: a 1-D count of workgroups is folded into
// (x, y) within the per-dimension limit, and every shader takes its linear index back here,
// returning past the count it was dispatched for.

fn workgroup_index(wid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return wid.y * groups.x + wid.x;
}

// The linear index of invocation `lid` of workgroups of `size` invocations.
fn invocation(wid: vec3<u32>, groups: vec3<u32>, size: u32, lid: u32) -> u32 {
    return workgroup_index(wid, groups) * size + lid;
}
