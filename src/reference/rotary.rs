use crate::ops::RotaryPairs;

/// [`RotaryPairs`] in place on rows of `width`: channels 2j, 2j + 1 of each turned head by the
/// row's `(cos, sin)` for pair j (`table` `[rows, D/2, 2]`).
pub fn rotate_pairs(y: &mut [f64], table: &[f64], width: usize, op: RotaryPairs) {
    let half = op.head_dim / 2;
    for (row, angles) in y.chunks_mut(width).zip(table.chunks(2 * half)) {
        for (c, pair) in row[..op.channels()].chunks_mut(2).enumerate() {
            let j = c % half;
            let (cos, sin) = (angles[2 * j], angles[2 * j + 1]);
            let (a, b) = (pair[0], pair[1]);
            pair[0] = a * cos - b * sin;
            pair[1] = b * cos + a * sin;
        }
    }
}
