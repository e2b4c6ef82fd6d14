use crate::ops::{AnyResLayout, AvgPool, BilinearHalf, ChannelOrder, PixelShuffle, Step, Tome};

/// `avg_pool2d(k, stride k)` of `[batch, h·w, channels]` tokens (partial windows divide by
/// their in-bounds count).
pub fn avg_pool(op: &AvgPool, x: &[f64], batch: usize, channels: usize) -> Vec<f64> {
    let ((h, w), (oh, ow), k) = ((op.h, op.w), op.output_grid(), op.k);
    let at = |b: usize, y: usize, xx: usize, c: usize| x[((b * h + y) * w + xx) * channels + c];
    let mut out = Vec::with_capacity(batch * oh * ow * channels);
    for b in 0..batch {
        for oy in 0..oh {
            for ox in 0..ow {
                for c in 0..channels {
                    let window: Vec<f64> = (0..k * k)
                        .map(|i| (k * oy + i / k, k * ox + i % k))
                        .filter(|&(y, xx)| y < h && xx < w)
                        .map(|(y, xx)| at(b, y, xx, c))
                        .collect();
                    out.push(window.iter().sum::<f64>() / window.len() as f64);
                }
            }
        }
    }
    out
}

/// Bilinear halving of `[batch, h·w, channels]` tokens, with PyTorch's f32 source coordinates.
pub fn bilinear_half(op: &BilinearHalf, x: &[f64], batch: usize, channels: usize) -> Vec<f64> {
    let per_item = op.h * op.w * channels;
    x.chunks(per_item)
        .take(batch)
        .flat_map(|item| resize_bilinear(item, (op.h, op.w), op.output_grid(), channels))
        .collect()
}

/// ToMe as upstream writes it (`bipartite_soft_matching`, `merge_wavg`, `merge_source`), with
/// a stable descending sort (ties by index). `sizes` `[batch, n]`. Returns the merged tokens
/// `[batch, n - r, channels]`, their sizes `[batch, n - r]` and each token's output row
/// `[batch, n]`.
pub fn tome(cfg: &Tome, x: &[f64], sizes: &[f64], batch: usize, channels: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (n, r) = (cfg.tokens, cfg.r);
    let (na, nb) = (n.div_ceil(2), n / 2);
    let (mut merged, mut merged_sizes, mut mapping) = (Vec::new(), Vec::new(), Vec::new());
    for b in 0..batch {
        let row = |t: usize| &x[(b * n + t) * channels..(b * n + t + 1) * channels];
        let unit = |t: usize| {
            let norm = row(t).iter().map(|v| v * v).sum::<f64>().sqrt();
            row(t).iter().map(|v| v / norm).collect::<Vec<f64>>()
        };
        let (a_hat, b_hat): (Vec<_>, Vec<_>) =
            ((0..na).map(|i| unit(2 * i)).collect(), (0..nb).map(|j| unit(2 * j + 1)).collect());
        // node_max / node_idx: the first index wins a tie.
        let nodes: Vec<(f64, usize)> = (0..na)
            .map(|i| {
                if cfg.class_token && i == 0 {
                    return (f64::NEG_INFINITY, 0);
                }
                (0..nb).fold((f64::NEG_INFINITY, 0), |best, j| {
                    let s: f64 = a_hat[i].iter().zip(&b_hat[j]).map(|(p, q)| p * q).sum();
                    if s > best.0 || j == 0 { (s, j) } else { best }
                })
            })
            .collect();
        let mut order: Vec<usize> = (0..na).collect();
        order.sort_by(|&p, &q| nodes[q].0.total_cmp(&nodes[p].0)); // stable: ties keep index order
        let (src, mut unmerged) = (order[..r].to_vec(), order[r..].to_vec());
        if cfg.class_token {
            unmerged.sort_unstable();
        }
        let nu = unmerged.len();
        let size = |t: usize| sizes[b * n + t];
        let mut rows_of = vec![0usize; n];
        let mut sums: Vec<(Vec<f64>, f64)> = Vec::with_capacity(n - r);
        for (o, &i) in unmerged.iter().enumerate() {
            rows_of[2 * i] = o;
            sums.push((row(2 * i).iter().map(|v| v * size(2 * i)).collect(), size(2 * i)));
        }
        for j in 0..nb {
            rows_of[2 * j + 1] = nu + j;
            sums.push((row(2 * j + 1).iter().map(|v| v * size(2 * j + 1)).collect(), size(2 * j + 1)));
        }
        for &i in &src {
            let o = nu + nodes[i].1;
            rows_of[2 * i] = o;
            for (acc, v) in sums[o].0.iter_mut().zip(row(2 * i)) {
                *acc += v * size(2 * i);
            }
            sums[o].1 += size(2 * i);
        }
        for (values, s) in sums {
            merged.extend(values.iter().map(|v| v / s));
            merged_sizes.push(s);
        }
        mapping.extend(rows_of.iter().map(|&o| o as f64));
    }
    (merged, merged_sizes, mapping)
}

/// One pass of the GPU decomposition (see [`Step`]), for graph evaluation. Inputs as the node
/// takes them.
pub fn tome_step(step: Step, cfg: &Tome, inputs: &[&[f64]], batch: usize, channels: usize) -> Vec<f64> {
    let (n, r) = (cfg.tokens, cfg.r);
    let (na, nb) = (n.div_ceil(2), n / 2);
    let nu = na - r;
    match step {
        Step::Normalize => {
            let mut out = vec![0.0; batch * n * channels];
            for b in 0..batch {
                for t in 0..n {
                    let src = &inputs[0][(b * n + t) * channels..][..channels];
                    let norm = src.iter().map(|v| v * v).sum::<f64>().sqrt();
                    let slot = if t % 2 == 0 { t / 2 } else { na + t / 2 };
                    for (o, v) in out[(b * n + slot) * channels..][..channels].iter_mut().zip(src) {
                        *o = v / norm;
                    }
                }
            }
            out
        }
        Step::BestMatch | Step::Score => {
            let mut out = Vec::with_capacity(batch * na);
            for b in 0..batch {
                let unit = |slot: usize| &inputs[0][(b * n + slot) * channels..][..channels];
                let dot = |i: usize, j: usize| -> f64 { unit(i).iter().zip(unit(na + j)).map(|(p, q)| p * q).sum() };
                for i in 0..na {
                    // The class token never merges; without B tokens nothing does.
                    let class = (cfg.class_token && i == 0) || nb == 0;
                    out.push(if step == Step::Score {
                        if class { -f64::from(f32::MAX) } else { dot(i, inputs[1][b * na + i] as usize) }
                    } else {
                        // The first index wins a tie.
                        let best = (0..nb).fold((f64::NEG_INFINITY, 0), |best, j| {
                            let s = dot(i, j);
                            if s > best.0 || j == 0 { (s, j) } else { best }
                        });
                        if class { 0.0 } else { best.1 as f64 }
                    });
                }
            }
            out
        }
        Step::Rank => (0..batch * na)
            .map(|g| {
                let (b, i) = (g / na, g % na);
                let value = |k: usize| inputs[0][b * na + k];
                (0..na).filter(|&k| value(k) > value(i) || (value(k) == value(i) && k < i)).count() as f64
            })
            .collect(),
        Step::Place => (0..batch * na)
            .map(|g| {
                let (b, i) = (g / na, g % na);
                let rank = |k: usize| inputs[1][b * na + k] as usize;
                if rank(i) < r {
                    (nu + inputs[0][g] as usize) as f64
                } else if cfg.class_token {
                    (0..i).filter(|&k| rank(k) >= r).count() as f64
                } else {
                    (rank(i) - r) as f64
                }
            })
            .collect(),
        Step::MergeFeatures | Step::MergeSizes => {
            let features = step == Step::MergeFeatures;
            let (x, sizes, rows) =
                if features { (inputs[0], inputs[1], inputs[2]) } else { (inputs[0], inputs[0], inputs[1]) };
            let c = if features { channels } else { 1 };
            let mut out = vec![0.0; batch * (n - r) * c];
            let mut den = vec![0.0; batch * (n - r)];
            for b in 0..batch {
                for t in 0..n {
                    let o = b * (n - r) + if t % 2 == 0 { rows[b * na + t / 2] as usize } else { nu + t / 2 };
                    let s = sizes[b * n + t];
                    den[o] += s;
                    for k in 0..c {
                        out[o * c + k] += if features { x[(b * n + t) * channels + k] * s } else { s };
                    }
                }
            }
            if features {
                for (i, v) in out.iter_mut().enumerate() {
                    *v /= den[i / c];
                }
            }
            out
        }
        Step::Source => (0..batch * n)
            .map(|g| {
                let (b, t) = (g / n, g % n);
                if t % 2 == 0 { inputs[1][b * na + t / 2] } else { (nu + t / 2) as f64 }
            })
            .collect(),
    }
}

/// ToMe test tokens `[batch, n, c]` (c >= n / 2 keeps B near-orthogonal) with a planted best
/// match per A token and well separated similarities, so f32 and f64 agree on every max and
/// every rank (upstream leaves ties unspecified): B tokens are near-orthogonal, A token i sits
/// at cosine s_i from its partner, the s_i in [0.7, 0.99] distinct by >= 2e-3 for na <= 145,
/// and every token has a random norm in [0.5, 1.5). Deterministic in `seed`.
pub fn separated_tokens(batch: usize, n: usize, c: usize, seed: u64) -> Vec<f32> {
    let mut state = seed | 1;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let (na, nb) = (n.div_ceil(2), n / 2);
    let mut x = vec![0.0f32; batch * n * c];
    for b in 0..batch {
        let mut bs: Vec<Vec<f64>> = Vec::new();
        for j in 0..nb {
            let mut v: Vec<f64> = (0..c).map(|_| 0.05 * (uniform() - 0.5)).collect();
            // A coordinate of its own per B token (nb <= c): a stride sharing a factor with c
            // gave two B tokens one spike, and their partners near-ties (c = 77, stride 7).
            v[(j + b) % c] += 1.0;
            let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            bs.push(v.iter().map(|a| a / norm).collect());
        }
        // Distinct similarity levels in [0.7, 0.99], shuffled over the A tokens.
        let mut levels: Vec<f64> = (0..na).map(|i| 0.7 + 0.29 * i as f64 / na.max(2) as f64).collect();
        for i in (1..levels.len()).rev() {
            levels.swap(i, (uniform() * (i + 1) as f64) as usize % (i + 1));
        }
        for t in 0..n {
            let row = &mut x[(b * n + t) * c..][..c];
            let scale = 0.5 + uniform();
            if t % 2 == 1 || nb == 0 {
                let v = if t % 2 == 1 { bs[t / 2].clone() } else { (0..c).map(|_| uniform() - 0.5).collect() };
                row.iter_mut().zip(v).for_each(|(r, v)| *r = (v * scale) as f32);
                continue;
            }
            let (partner, s) = (&bs[(uniform() * nb as f64) as usize % nb], levels[t / 2]);
            let mut u: Vec<f64> = (0..c).map(|_| uniform() - 0.5).collect();
            let along: f64 = u.iter().zip(partner).map(|(a, p)| a * p).sum();
            u.iter_mut().zip(partner).for_each(|(a, p)| *a -= along * p);
            let norm = u.iter().map(|a| a * a).sum::<f64>().sqrt();
            let off = (1.0 - s * s).sqrt();
            row.iter_mut()
                .zip(partner.iter().zip(&u))
                .for_each(|(r, (p, a))| *r = ((s * p + off * a / norm) * scale) as f32);
        }
    }
    x
}

/// AnyRes packing: the base tile, then each row of the unpadded grid (bilinearly resized when
/// the layout says so) followed by the newline.
pub fn anyres_pack(layout: &AnyResLayout, features: &[f64], newline: &[f64]) -> Vec<f64> {
    let d = newline.len();
    let side = layout.side;
    let patches = side * side;
    let (rows, cols) = layout.unpadded;
    // The unpadded grid, row-major, gathered from the stitched tiles.
    let mut grid = Vec::with_capacity(rows * cols * d);
    for y in layout.offset.0..layout.offset.0 + rows {
        for x in layout.offset.1..layout.offset.1 + cols {
            let tile = 1 + (y / side) * layout.grid.1 + x / side;
            let patch = (y % side) * side + x % side;
            grid.extend_from_slice(&features[(tile * patches + patch) * d..][..d]);
        }
    }
    let (out_rows, out_cols) = layout.packed_grid();
    if layout.resized.is_some() {
        grid = resize_bilinear(&grid, (rows, cols), (out_rows, out_cols), d);
    }
    let mut out = features[..patches * d].to_vec();
    // An unpadded grid can be zero columns wide (a 2000 × 1 image): rows of newlines only.
    let row_len = out_cols * d;
    for r in 0..out_rows {
        out.extend_from_slice(&grid[r * row_len..(r + 1) * row_len]);
        out.extend_from_slice(newline);
    }
    out
}

/// Bilinear resize of a row-major `[h·w, d]` grid to `(oh, ow)`: `F.interpolate(mode="bilinear",
/// align_corners=False)` with PyTorch's f32 source coordinates.
pub fn resize_bilinear(x: &[f64], (h, w): (usize, usize), (oh, ow): (usize, usize), d: usize) -> Vec<f64> {
    let tap = |dst: usize, size: usize, out: usize| {
        let scale = size as f32 / out as f32;
        let src = ((dst as f32 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(size - 1);
        (i0, (i0 + 1).min(size - 1), f64::from(src) - i0 as f64)
    };
    let at = |y: usize, xx: usize, c: usize| x[(y * w + xx) * d + c];
    let mut out = Vec::with_capacity(oh * ow * d);
    for oy in 0..oh {
        let (y0, y1, ly) = tap(oy, h, oh);
        for ox in 0..ow {
            let (x0, x1, lx) = tap(ox, w, ow);
            for c in 0..d {
                let top = (1.0 - lx) * at(y0, x0, c) + lx * at(y0, x1, c);
                let bottom = (1.0 - lx) * at(y1, x0, c) + lx * at(y1, x1, c);
                out.push((1.0 - ly) * top + ly * bottom);
            }
        }
    }
    out
}

/// Pixel shuffle of the images a grid table describes (`[in_start, out_start, h, w]` per image),
/// tokens `[.., C]`: each output token the `s × s` block at its place, channels ordered by
/// `op.order`.
pub fn pixel_shuffle(op: &PixelShuffle, x: &[f64], table: &[f64], channels: usize) -> Vec<f64> {
    let s = op.scale;
    let mut out = vec![0.0; op.out_tokens * s * s * channels];
    for image in table.chunks(4) {
        let [in_start, out_start, h, w] = [0, 1, 2, 3].map(|i| image[i] as usize);
        let (oh, ow) = (h / s, w / s);
        for (t, (i, j)) in (0..oh).flat_map(|i| (0..ow).map(move |j| (i, j))).enumerate() {
            for (a, d, c) in (0..s).flat_map(|a| (0..s).flat_map(move |d| (0..channels).map(move |c| (a, d, c)))) {
                let k = match op.order {
                    ChannelOrder::OffsetMajor => (a * s + d) * channels + c,
                    ChannelOrder::ChannelMajor => c * s * s + a * s + d,
                };
                let src = in_start + (s * i + a) * w + s * j + d;
                out[(out_start + t) * s * s * channels + k] = x[src * channels + c];
            }
        }
    }
    out
}
