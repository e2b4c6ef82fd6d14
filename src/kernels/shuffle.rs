//! Pixel shuffle (`shaders/pixel_shuffle.wgsl`): `s × s` blocks of token grids merged into
//! tokens of `s²·C` channels, for several images of their own grids at once.

use super::cases::{BenchCase, Case, CaseRng, CaseTarget, Tolerance, huge_for, pick_storage};
use super::{Cost, Dispatch, Kernel, KernelFamily, KernelSpec, bytes};
use crate::dtype::DType;
use crate::error::Result;
use crate::ops::shuffle::NAME;
use crate::ops::{ChannelOrder, ImageGrid, Meta, Operand, PixelShuffle};
use crate::pipeline::Access;
use crate::reference;

/// Mirrors `Params` in `shaders/pixel_shuffle.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Channels per input token.
    pub channels: u32,
    /// Block side.
    pub scale: u32,
    /// Images in the table.
    pub images: u32,
    /// Output elements.
    pub total: u32,
}

const WORKGROUP: u32 = 256;

/// The shuffle gather.
pub static SPEC: KernelSpec = KernelSpec::new(
    NAME,
    "pixel_shuffle.wgsl",
    include_str!("../../shaders/pixel_shuffle.wgsl"),
    "pixel_shuffle",
    &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform],
    WORKGROUP,
    std::mem::size_of::<Params>(),
);

/// The pixel-shuffle family.
pub static FAMILY: KernelFamily =
    KernelFamily { name: NAME, specs: &[&SPEC], fuzz: Some(fuzz), bench, precision, ..KernelFamily::BASE };

impl Kernel for PixelShuffle {
    fn name(&self) -> &'static str {
        NAME
    }

    fn operand(&self, i: usize) -> Operand {
        PixelShuffle::operand(i)
    }

    fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        PixelShuffle::check(self, inputs)
    }

    fn variants(&self, _inputs: &[&Meta]) -> Vec<&'static KernelSpec> {
        vec![&SPEC]
    }

    fn overrides(&self, _spec: &KernelSpec, _inputs: &[&Meta]) -> Vec<(&'static str, f64)> {
        vec![("CHANNEL_MAJOR", f64::from(u8::from(self.order == ChannelOrder::ChannelMajor)))]
    }

    fn dispatch(&self, _spec: &KernelSpec, inputs: &[&Meta]) -> Dispatch {
        let channels = *inputs[0].shape.last().unwrap_or(&0);
        let total = self.out_tokens * self.scale * self.scale * channels;
        let p = Params {
            channels: channels as u32,
            scale: self.scale as u32,
            images: self.images as u32,
            total: total as u32,
        };
        Dispatch::new(&p, (total as u64).div_ceil(u64::from(WORKGROUP)))
    }

    fn cost(&self, inputs: &[&Meta]) -> Cost {
        let channels = *inputs[0].shape.last().unwrap_or(&0);
        Cost { flops: 0.0, bytes: 2.0 * bytes(inputs[0].dtype, self.out_tokens * self.scale * self.scale * channels) }
    }

    fn reference(&self, inputs: &[&[f64]], metas: &[&Meta]) -> Vec<f64> {
        reference::pixel_shuffle(self, inputs[0], inputs[1], *metas[0].shape.last().unwrap_or(&0))
    }
}

/// A shuffle of `grids` with `channels` channels from `values`, batched `[B, N, C]` when
/// `batched` (every grid equal).
fn case(
    grids: &[ImageGrid],
    scale: usize,
    order: ChannelOrder,
    channels: usize,
    batched: bool,
    storage: DType,
    values: Vec<f32>,
) -> Result<Case> {
    let (op, table) = PixelShuffle::new(grids, scale, order)?;
    let tokens: usize = grids.iter().map(|g| g.h * g.w).sum();
    let shape = if batched { vec![grids.len(), tokens / grids.len(), channels] } else { vec![tokens, channels] };
    let mut c = Case::builder(NAME);
    let x = c.input("x", &shape, storage, values);
    let t = c.constant("grids", &[grids.len(), 4], DType::U32, table);
    let y = c.node(op, &[x, t])?;
    Ok(c.finish(&[y], format!("{grids:?} s{scale} {order:?} c{channels} {storage}"), Tolerance::exact()))
}

/// Random grids (odd ones included: the remainder is dropped), scales, orders and widths; a
/// pure gather, so exact.
fn fuzz(rng: &mut CaseRng, target: &CaseTarget) -> Result<Case> {
    let (kind, inject, storage) = (rng.distribution(), rng.bool(0.25), pick_storage(rng, target));
    let scale = rng.pick(&[2, 2, 3]);
    let batched = rng.bool(0.5);
    let images = rng.range(1, 4);
    let mut grids = Vec::with_capacity(images);
    for i in 0..images {
        let grid = ImageGrid { h: rng.range(scale, 24), w: rng.range(scale, 24) };
        grids.push(if batched && i > 0 { grids[0] } else { grid });
    }
    let channels = rng.edge(33);
    let order = rng.pick(&[ChannelOrder::OffsetMajor, ChannelOrder::ChannelMajor]);
    let tokens: usize = grids.iter().map(|g| g.h * g.w).sum();
    let values = rng.values(tokens * channels, kind, huge_for(storage, 1e38), inject);
    let c = case(&grids, scale, order, channels, batched, storage, values)?;
    Ok(Case { description: format!("{} {kind:?} inject={inject}", c.description), ..c })
}

/// InternVL3's 32 × 32 grid of 1024 at s = 2, SmolVLM2's 27 × 27 of 1152 at s = 3.
fn bench() -> Vec<BenchCase> {
    [(32, 1024, 2, "internvl 32x32x1024, s=2"), (27, 1152, 3, "smolvlm 27x27x1152, s=3")]
        .into_iter()
        .map(|(side, channels, scale, label)| {
            BenchCase::new(label, move || {
                let values = CaseRng::new(1).normals(side * side * channels, 1.0);
                case(
                    &[ImageGrid { h: side, w: side }],
                    scale,
                    ChannelOrder::OffsetMajor,
                    channels,
                    true,
                    DType::F32,
                    values,
                )
            })
        })
        .collect()
}

fn precision() -> Result<Vec<Case>> {
    let grids = [ImageGrid { h: 6, w: 4 }, ImageGrid { h: 5, w: 7 }];
    let values = CaseRng::new(6).signed(59 * 3);
    Ok(vec![case(&grids, 2, ChannelOrder::ChannelMajor, 3, false, DType::F16, values)?])
}
