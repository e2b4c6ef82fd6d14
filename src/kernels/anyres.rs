//! LLaVA-NeXT AnyRes packing (`shaders/anyres.wgsl`): the layout is computed on the host from
//! the image size (a few scalars), the per-token gather runs on the GPU.

use super::cases::{BenchCase, Case, CaseRng, CaseTarget, SUBNORMAL_FLOOR, Tolerance, huge_for, max_abs, pick_storage};
use super::{Cost, Dispatch, Kernel, KernelFamily, KernelSpec, bytes, wgsl};
use crate::dtype::DType;
use crate::error::Result;
use crate::ops::anyres::NAME;
use crate::ops::{AnyResLayout, Meta, Operand};
use crate::pipeline::Access;
use crate::reference;

/// Mirrors `Params` in `shaders/anyres.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Feature width.
    pub channels: u32,
    /// Patches per tile side.
    pub side: u32,
    /// Tiles per row of the grid.
    pub grid_w: u32,
    /// Unpadded rows of patches.
    pub rows: u32,
    /// Unpadded columns of patches.
    pub cols: u32,
    /// First unpadded row.
    pub top: u32,
    /// First unpadded column.
    pub left: u32,
    /// Output tokens.
    pub tokens: u32,
    /// Packed grid rows (unpadded, or resized).
    pub out_rows: u32,
    /// Packed grid columns.
    pub out_cols: u32,
    /// Resize: rows / out_rows.
    pub scale_h: f32,
    /// Resize: cols / out_cols.
    pub scale_w: f32,
}

const WORKGROUP: u32 = 256;

/// The AnyRes packing gather.
pub static SPEC: KernelSpec = KernelSpec {
    prelude: &[wgsl::BILINEAR_TAPS],
    ..KernelSpec::new(
        NAME,
        "anyres.wgsl",
        include_str!("../../shaders/anyres.wgsl"),
        "anyres_pack",
        &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform],
        WORKGROUP,
        std::mem::size_of::<Params>(),
    )
};

/// The AnyRes family.
pub static FAMILY: KernelFamily =
    KernelFamily { name: NAME, specs: &[&SPEC], fuzz: Some(fuzz), bench, precision, ..KernelFamily::BASE };

impl Kernel for AnyResLayout {
    fn name(&self) -> &'static str {
        NAME
    }

    fn operand(&self, i: usize) -> Operand {
        if i == 0 { Operand::Activation } else { Operand::Param }
    }

    fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        AnyResLayout::check(self, inputs)
    }

    fn variants(&self, _inputs: &[&Meta]) -> Vec<&'static KernelSpec> {
        vec![&SPEC]
    }

    fn overrides(&self, _spec: &KernelSpec, _inputs: &[&Meta]) -> Vec<(&'static str, f64)> {
        vec![("RESIZE", f64::from(u8::from(self.resized.is_some())))]
    }

    fn dispatch(&self, _spec: &KernelSpec, inputs: &[&Meta]) -> Dispatch {
        let (out_rows, out_cols) = self.packed_grid();
        let p = Params {
            channels: inputs[0].shape[2] as u32,
            side: self.side as u32,
            grid_w: self.grid.1 as u32,
            rows: self.unpadded.0 as u32,
            cols: self.unpadded.1 as u32,
            top: self.offset.0 as u32,
            left: self.offset.1 as u32,
            tokens: self.tokens() as u32,
            out_rows: out_rows as u32,
            out_cols: out_cols as u32,
            // PyTorch's scale is in/out in f32.
            scale_h: self.unpadded.0 as f32 / out_rows.max(1) as f32,
            scale_w: self.unpadded.1 as f32 / out_cols.max(1) as f32,
        };
        Dispatch::new(&p, (u64::from(p.tokens) * u64::from(p.channels)).div_ceil(u64::from(WORKGROUP)))
    }

    fn cost(&self, inputs: &[&Meta]) -> Cost {
        let out = self.tokens() * inputs[0].shape[2];
        let flops = if self.resized.is_some() { 8.0 * out as f64 } else { 0.0 };
        Cost { flops, bytes: 2.0 * bytes(inputs[0].dtype, out) }
    }

    fn reference(&self, inputs: &[&[f64]], _metas: &[&Meta]) -> Vec<f64> {
        reference::anyres_pack(self, inputs[0], inputs[1])
    }
}

/// Packs `layout` with features of width `d` from `values`.
fn case(layout: AnyResLayout, d: usize, storage: DType, features: Vec<f32>, newline: Vec<f32>) -> Result<Case> {
    let mut c = Case::builder(NAME);
    let fi = c.input("features", &[layout.tiles(), layout.side * layout.side, d], storage, features);
    let ni = c.input("newline", &[d], DType::F32, newline);
    let y = c.node(layout, &[fi, ni])?;
    Ok(c.finish(&[y], format!("{layout:?} d{d} {storage}"), Tolerance::exact()))
}

/// Random image sizes, pinpoint lists, tile and patch sizes, half with OneVision's resize; a
/// pure gather is exact, the resize within a few ulps of the largest feature.
fn fuzz(rng: &mut CaseRng, target: &CaseTarget) -> Result<Case> {
    let (kind, inject, storage) = (rng.distribution(), rng.bool(0.25), pick_storage(rng, target));
    let (side, patch) = (rng.range(1, 6), rng.pick(&[1, 2, 14]));
    let tile = side * patch;
    let pinpoints: Vec<(usize, usize)> =
        (0..rng.range(1, 6)).map(|_| (rng.range(1, 4) * tile, rng.range(1, 4) * tile)).collect();
    let image = (rng.range(1, 2000), rng.range(1, 2000));
    let mut layout = AnyResLayout::new(image, &pinpoints, tile, patch)?;
    // OneVision's resize half the time, where it leaves a non-empty grid (upstream's
    // interpolate refuses an empty one, and so does the layout check).
    let resized = layout.with_max_patches(rng.range(1, 9));
    if rng.bool(0.5) && resized.resized.is_none_or(|(r, c)| r > 0 && c > 0) {
        layout = resized;
    }
    let d = rng.edge(17);
    let resize = layout.resized.is_some();
    let features =
        rng.values(layout.tiles() * side * side * d, kind, huge_for(storage, if resize { 1e30 } else { 1e38 }), inject);
    let tolerance = Tolerance::new(SUBNORMAL_FLOOR, 1e-6).plus(if resize { 2e-6 * max_abs(&features) } else { 0.0 });
    let c = case(layout, d, storage, features, rng.normals(d, 1.0))?;
    let description = format!(
        "image {image:?} tile {tile} pinpoints {pinpoints:?} resized {:?} d{d} {storage} {kind:?} inject={inject}",
        layout.resized
    );
    Ok(Case { description, tolerance, ..c })
}

/// LLaVA-NeXT at 336 px tiles: a 672 × 672 image, 5 tiles of 576 patches, projected to 4096.
fn bench() -> Vec<BenchCase> {
    vec![BenchCase::new("672x672, 5x576x4096", || {
        let pinpoints = [(336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)];
        let layout = AnyResLayout::new((672, 672), &pinpoints, 336, 14)?;
        let mut rng = CaseRng::new(1);
        case(layout, 4096, DType::F32, rng.normals(5 * 576 * 4096, 1.0), rng.normals(4096, 1.0))
    })]
}

fn precision() -> Result<Vec<Case>> {
    let layout = AnyResLayout::new((300, 500), &[(8, 16), (16, 8)], 8, 2)?;
    let mut rng = CaseRng::new(77);
    let resized = layout.with_max_patches(1);
    Ok(vec![
        case(layout, 5, DType::F16, rng.signed(layout.tiles() * 16 * 5), rng.signed(5))?,
        case(resized, 5, DType::F16, rng.signed(layout.tiles() * 16 * 5), rng.signed(5))?,
    ])
}
