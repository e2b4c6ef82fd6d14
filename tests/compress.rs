//! Pooling, bilinear halving, ToMe and AnyRes packing against the f64 reference on random
//! grids, token counts, merge counts, image sizes and pinpoint lists. Gathers and pools are
//! exact up to f32 rounding of a 4-term mean (atol 1e-6); ToMe merges at most a few tokens per
//! row (atol 1e-5).

mod common;

use common::{edge_size, gpu, minimal_gpu, to_f64, values};
use ntest::timeout;
use proptest::prelude::*;
use vlbridge::connectors::add_token_merge;
use vlbridge::kernels::Op;
use vlbridge::ops::{AnyResLayout, AvgPool, BilinearHalf, ChannelOrder, ImageGrid, PixelShuffle, Tome};
use vlbridge::reference;
use vlbridge::{Gpu, Graph, HostVec, Plan};

fn run(g: &Graph, inputs: &[&[f32]]) -> Vec<HostVec> {
    run_on(gpu(), g, inputs)
}

fn run_on(gpu: &Gpu, g: &Graph, inputs: &[&[f32]]) -> Vec<HostVec> {
    let data: Vec<_> = inputs.iter().map(|&x| x.into()).collect();
    Plan::new(gpu, g).unwrap().run(&data).unwrap()
}

/// `k × k` pooling (k = 2 mostly) or bilinear halving of a random grid.
fn downsample_case() -> impl Strategy<Value = (Op, (usize, usize), usize, usize, Vec<f32>)> {
    (1usize..=64, 1usize..=64, 0u8..3, prop::sample::select(vec![2usize, 2, 3, 4]), 1usize..=2, edge_size(9))
        .prop_flat_map(|(h, w, kind, k, batch, channels)| {
            // A grid narrower than the window has no full window: floor mode would be empty.
            let op = match kind {
                0 if h >= k && w >= k => Op::AvgPool(AvgPool { h, w, k, ceil_mode: false }),
                0 | 1 => Op::AvgPool(AvgPool { h, w, k, ceil_mode: true }),
                _ => Op::BilinearHalf(BilinearHalf { h, w }),
            };
            (Just(op), Just((h, w)), Just(batch), Just(channels), values(batch * h * w * channels, 1.0))
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    #[timeout(300_000)]
    fn downsampling_matches_reference((op, (h, w), batch, channels, x) in downsample_case()) {
        let mut g = Graph::new();
        let input = g.input("x", &[batch, h * w, channels]).unwrap();
        let y = g.add(op, &[input]).unwrap();
        g.output(y).unwrap();
        let got = run(&g, &[&x]).remove(0).into_f32();
        let (want, (oh, ow)) = match op {
            Op::AvgPool(p) => (reference::avg_pool(&p, &to_f64(&x), batch, channels), p.output_grid()),
            Op::BilinearHalf(b) => (reference::bilinear_half(&b, &to_f64(&x), batch, channels), b.output_grid()),
            _ => unreachable!("only pools are drawn"),
        };
        prop_assert_eq!(got.len(), batch * oh * ow * channels);
        let cmp = reference::compare(&got, &want, 1e-6, 1e-6);
        prop_assert!(cmp.passed(), "{op:?}: {cmp}");
    }

    #[test]
    #[timeout(300_000)]
    fn tome_matches_reference(
        (batch, n, c, r_pick, class_token, seed, sized) in
            (prop::sample::select(vec![1usize, 3]), 1usize..=80, 40usize..=96, 0usize..=100, any::<bool>(), any::<u64>(), any::<bool>())
    ) {
        let class_token = class_token && n > 1;
        let max_r = (n - usize::from(class_token)) / 2;
        // r = 0, r = max and values between.
        let r = match r_pick { 0..=10 => 0, 11..=30 => max_r, _ => r_pick * max_r / 100 };
        let cfg = Tome::new(n, r, class_token).unwrap();
        let x = reference::separated_tokens(batch, n, c, seed);
        let sizes: Vec<f32> = (0..batch * n).map(|i| if sized { 1.0 + ((i * 7 + 3) % 4) as f32 } else { 1.0 }).collect();
        let mut g = Graph::new();
        let xi = g.input("x", &[batch, n, c]).unwrap();
        let si = g.input("sizes", &[batch, n, 1]).unwrap();
        let merged = add_token_merge(gpu(), &mut g, xi, Some(si), cfg).unwrap();
        for id in [merged.tokens, merged.sizes, merged.source] {
            g.output(id).unwrap();
        }
        let (tokens, new_sizes, mapping) = reference::tome(&cfg, &to_f64(&x), &to_f64(&sizes), batch, c);
        // The subgroup best-match kernel, and the portable one.
        for device in [gpu(), minimal_gpu()] {
            let out = run_on(device, &g, &[&x, &sizes]);
            prop_assert_eq!(out[0].len(), batch * (n - r) * c);
            prop_assert!(out[2].as_u32().is_some(), "the token -> row mapping is u32");
            prop_assert_eq!(&out[2].to_f64(), &mapping, "token -> row mapping");
            prop_assert_eq!(&out[1].to_f64(), &new_sizes, "sizes");
            let cmp = reference::compare(out[0].as_f32().unwrap(), &tokens, 1e-5, 1e-5);
            prop_assert!(cmp.passed(), "merged tokens: {cmp}");
        }
    }

    #[test]
    #[timeout(300_000)]
    fn anyres_matches_reference(
        (h, w, side, patch, picks, d, seed) in
            (1usize..=1200, 1usize..=1200, 2usize..=6, prop::sample::select(vec![2usize, 14]),
             prop::collection::vec((1usize..=4, 1usize..=4), 1..=6), edge_size(9), any::<u32>())
    ) {
        let tile = side * patch;
        let pinpoints: Vec<(usize, usize)> = picks.iter().map(|&(a, b)| (a * tile, b * tile)).collect();
        let layout = AnyResLayout::new((h, w), &pinpoints, tile, patch).unwrap();
        // Token count by the upstream formula, written out independently.
        let (gh, gw) = (layout.best_resolution.0 / tile, layout.best_resolution.1 / tile);
        let (cur_h, cur_w) = (gh * side, gw * side);
        let (rows, cols) = if w as f64 / h as f64 > cur_w as f64 / cur_h as f64 {
            let new = ((h as f64 * (cur_w as f64 / w as f64) * 1e7).round() / 1e7) as usize;
            (cur_h - 2 * ((cur_h - new) / 2), cur_w)
        } else {
            let new = ((w as f64 * (cur_h as f64 / h as f64) * 1e7).round() / 1e7) as usize;
            (cur_h, cur_w - 2 * ((cur_w - new) / 2))
        };
        prop_assert_eq!(layout.tokens(), side * side + rows * (cols + 1));
        let tiles = 1 + gh * gw;
        let features: Vec<f32> = (0..tiles * side * side * d).map(|i| ((i as u64 * 2654435761 + u64::from(seed)) % 10007) as f32).collect();
        let newline: Vec<f32> = (0..d).map(|i| -1.0 - i as f32).collect();
        let mut g = Graph::new();
        let fi = g.input("features", &[tiles, side * side, d]).unwrap();
        let ni = g.input("newline", &[d]).unwrap();
        let y = g.add(layout, &[fi, ni]).unwrap();
        g.output(y).unwrap();
        let got = run(&g, &[&features, &newline]).remove(0);
        prop_assert_eq!(got.to_f64(), reference::anyres_pack(&layout, &to_f64(&features), &to_f64(&newline)));
    }

    #[test]
    #[timeout(300_000)]
    fn pixel_shuffle_matches_reference(
        (grids, scale, channel_major, channels, seed) in
            (prop::collection::vec((1usize..=9, 1usize..=9), 1..=3), 2usize..=3, any::<bool>(), edge_size(17), any::<u32>())
    ) {
        // Grids at least one block big; odd remainders dropped.
        let grids: Vec<ImageGrid> = grids.iter().map(|&(h, w)| ImageGrid { h: h.max(scale), w: w.max(scale) }).collect();
        let order = if channel_major { ChannelOrder::ChannelMajor } else { ChannelOrder::OffsetMajor };
        let (op, table) = PixelShuffle::new(&grids, scale, order).unwrap();
        let tokens: usize = grids.iter().map(|g| g.h * g.w).sum();
        let x: Vec<f32> = (0..tokens * channels).map(|i| ((i as u64 * 2654435761 + u64::from(seed)) % 10007) as f32).collect();
        let mut g = Graph::new();
        let xi = g.input("x", &[tokens, channels]).unwrap();
        let ti = g.constant("grids", &vlbridge::Tensor::from_data(gpu(), &[grids.len(), 4], vlbridge::DType::U32, table[..].into()).unwrap());
        let y = g.add(op, &[xi, ti]).unwrap();
        g.output(y).unwrap();
        let got = run(&g, &[&x]).remove(0);
        let table: Vec<f64> = table.iter().map(|&v| f64::from(v)).collect();
        prop_assert_eq!(got.to_f64(), reference::pixel_shuffle(&op, &to_f64(&x), &table, channels));
    }

    #[test]
    #[timeout(300_000)]
    fn onevision_resize_matches_reference(
        (h, w, side, picks, max_patches, d, seed) in
            (1usize..=1200, 1usize..=1200, 2usize..=6, prop::collection::vec((1usize..=6, 1usize..=6), 1..=8),
             1usize..=9, edge_size(9), any::<u32>())
    ) {
        // OneVision: SigLIP-like tiles of `side` patches of 8 px, anyres_max_N.
        let tile = side * 8;
        let pinpoints: Vec<(usize, usize)> = picks.iter().map(|&(a, b)| (a * tile, b * tile)).collect();
        let layout = AnyResLayout::new((h, w), &pinpoints, tile, 8).unwrap().with_max_patches(max_patches);
        let (uh, uw) = layout.unpadded;
        let ratio = ((uh * uw) as f64 / (max_patches * side * side) as f64).sqrt();
        prop_assume!(ratio <= 1.1 || ((uh as f64 / ratio) as usize > 0 && (uw as f64 / ratio) as usize > 0));
        // Python's int(h // ratio) where the map is more than 1.1² times the budget.
        let expected = (ratio > 1.1).then(|| ((uh as f64 / ratio).floor() as usize, (uw as f64 / ratio).floor() as usize));
        prop_assert_eq!(layout.resized, expected);
        let features: Vec<f32> = (0..layout.tiles() * side * side * d).map(|i| ((i as u64 * 2654435761 + u64::from(seed)) % 10007) as f32 / 1000.0).collect();
        let newline: Vec<f32> = (0..d).map(|i| -1.0 - i as f32).collect();
        let mut g = Graph::new();
        let fi = g.input("features", &[layout.tiles(), side * side, d]).unwrap();
        let ni = g.input("newline", &[d]).unwrap();
        let y = g.add(layout, &[fi, ni]).unwrap();
        g.output(y).unwrap();
        let got = run(&g, &[&features, &newline]).remove(0).into_f32();
        let want = reference::anyres_pack(&layout, &to_f64(&features), &to_f64(&newline));
        // Features up to 10: a two-tap blend per axis rounds within a few ulps of that.
        let cmp = reference::compare(&got, &want, 1e-5, 1e-6);
        prop_assert!(cmp.passed(), "{layout:?}: {cmp}");
    }
}

#[test]
fn anyres_keeps_one_row_more_than_the_rounded_height_when_the_padding_is_odd() {
    // LLaVA-NeXT at 336 px tiles: a 300 × 1000 image picks 336 × 1008 (1 × 3 tiles, a 24 × 72
    // grid); new height int(round(300·72/1000)) = 21, pad (24 - 21) // 2 = 1, kept 24 - 2 = 22.
    let pinpoints = [(336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)];
    let layout = AnyResLayout::new((300, 1000), &pinpoints, 336, 14).unwrap();
    assert_eq!(layout.best_resolution, (336, 1008));
    assert_eq!(layout.unpadded, (22, 72));
    assert_eq!(layout.tokens(), 576 + 22 * 73);
    // 672 × 672: 2 × 2 tiles, nothing to unpad: 576 + 48 · 49 = 2928 tokens from 2880 patches.
    let square = AnyResLayout::new((672, 672), &pinpoints, 336, 14).unwrap();
    assert_eq!((square.tiles(), square.tokens()), (5, 2928));
}

#[test]
#[ntest::timeout(300_000)]
fn projector_compositions_match_their_graph_references() {
    use vlbridge::connectors::{AnyRes, LlavaProjector, PoolOrder};
    use vlbridge::ops::GeluForm;
    let gpu = gpu();
    let [v, h, t] = [12, 20, 8];
    let ramp = |n: usize, s: f32| (0..n).map(|i| ((i * 37 % 17) as f32 - 8.0) * s).collect::<Vec<f32>>();
    let p = LlavaProjector::from_f32(
        gpu,
        [v, h, t],
        &ramp(h * v, 0.05),
        &ramp(h, 0.1),
        &ramp(t * h, 0.05),
        &ramp(t, 0.1),
        GeluForm::Erf,
    )
    .unwrap();
    let check = |plan: vlbridge::connectors::ConnectorPlan, tokens_out: usize| {
        let elements: usize = plan.input_shape().iter().product();
        let x: Vec<f32> = (0..elements).map(|i| ((i * 7919 % 2001) as f32 / 1000.0) - 1.0).collect();
        assert_eq!(plan.output_shape()[plan.output_shape().len() - 2], tokens_out);
        let cmp = reference::compare(&plan.project(&x).unwrap(), &plan.project_reference(&x).unwrap(), 1e-5, 1e-4);
        assert!(cmp.passed(), "{cmp}");
    };
    // A 5 × 7 grid: ceil-mode pooling keeps the partial windows (3 × 4 = 12 tokens).
    check(p.plan_pooled(gpu, 2, (5, 7), PoolOrder::PoolThenProject).unwrap(), 12);
    check(p.plan_pooled(gpu, 2, (5, 7), PoolOrder::ProjectThenPool).unwrap(), 12);
    check(p.plan_merged(gpu, 2, 35, 10, true).unwrap(), 25);
    let anyres =
        AnyRes::new(vlbridge::Tensor::from_f32(gpu, &[t], &ramp(t, 1.0)).unwrap(), 6, 2, &[(6, 12), (12, 6), (12, 12)])
            .unwrap();
    let layout = anyres.layout((10, 25)).unwrap();
    check(p.plan_anyres(gpu, &anyres, &layout).unwrap(), layout.tokens());
}
