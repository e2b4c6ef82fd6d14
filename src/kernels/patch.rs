//! The patch embedding (`shaders/patch_embed.wgsl`): a ViT's strided `Conv2d` as one GEMM whose
//! A-load reads each patch from the image in place (no unfold copy), with the class token and
//! the learned positions added in its epilogue. One entry point per weight dtype.

use super::cases::{BenchCase, Case, CaseRng, CaseTarget, Tolerance, dot_ulps, pick_storage};
use super::{Cost, Dispatch, Kernel, KernelFamily, KernelSpec, bytes, product, wgsl};
use crate::dtype::DType;
use crate::error::Result;
use crate::ops::patch::NAME;
use crate::ops::{Meta, Operand, PatchEmbed};
use crate::pipeline::Access;
use crate::reference::{self, PatchInputs};

/// Mirrors `Params` in `shaders/patch_embed.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Rows of the output: batch · tokens.
    pub m: u32,
    /// Embedding width C.
    pub n: u32,
    /// channels · patch².
    pub k: u32,
    /// Tokens per item (class token + patches).
    pub tokens: u32,
    /// Pixels per patch side.
    pub patch_side: u32,
    /// Image height in pixels.
    pub height: u32,
    /// Image width in pixels.
    pub width: u32,
    /// Patches per image row.
    pub grid_w: u32,
    /// Images in the pixel tensor.
    pub slabs: u32,
    /// Rows of the position table.
    pub positions: u32,
    /// Patches per item.
    pub patches: u32,
    /// Padding to 16 bytes.
    pub _pad: u32,
}

const WORKGROUP: u32 = 64;
const BLOCK: u64 = 4;
const SOURCE: &str = include_str!("../../shaders/patch_embed.wgsl");
/// pixels, weight, images, positions, bias, class token, ids, y, params.
const BINDINGS: &[Access] = &[
    Access::Read,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::ReadWrite,
    Access::Uniform,
];
const PARAMS: usize = std::mem::size_of::<Params>();

const fn spec(name: &'static str, prelude: &'static [&'static str], features: wgpu::Features) -> KernelSpec {
    KernelSpec {
        prelude,
        features,
        ..KernelSpec::new(name, "patch_embed.wgsl", SOURCE, "patch_embed", BINDINGS, WORKGROUP, PARAMS)
    }
}

/// The patch embedding over f32 weights.
pub static F32: KernelSpec = spec(NAME, &[wgsl::WEIGHTS_SCALAR_F32], wgpu::Features::empty());
/// The same over f16 weights.
pub static F16: KernelSpec = spec("patch_embed_f16w", &[wgsl::WEIGHTS_SCALAR_F16], wgpu::Features::SHADER_F16);
/// The same over bf16 weights (most checkpoints).
pub static BF16: KernelSpec = spec("patch_embed_bf16w", &[wgsl::WEIGHTS_SCALAR_BF16], wgpu::Features::empty());

/// The patch-embedding family: one entry per weight dtype, nothing to choose between.
pub static FAMILY: KernelFamily = KernelFamily {
    name: NAME,
    specs: &[&F32, &F16, &BF16],
    forceable: false,
    fuzz: Some(fuzz),
    bench,
    precision,
    ..KernelFamily::BASE
};

impl Kernel for PatchEmbed {
    fn name(&self) -> &'static str {
        NAME
    }

    fn operand(&self, i: usize) -> Operand {
        let [_, _, ids] = self.slots();
        match i {
            0 => Operand::Activation,
            1 => Operand::Weight,
            2 => Operand::Index,
            _ if Some(i) == ids => Operand::Index,
            _ => Operand::Param,
        }
    }

    fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        PatchEmbed::check(self, inputs)
    }

    fn variants(&self, inputs: &[&Meta]) -> Vec<&'static KernelSpec> {
        vec![match inputs[1].dtype {
            DType::F16 => &F16,
            DType::BF16 => &BF16,
            _ => &F32,
        }]
    }

    fn overrides(&self, _spec: &KernelSpec, _inputs: &[&Meta]) -> Vec<(&'static str, f64)> {
        let flag = |b: bool| f64::from(u8::from(b));
        vec![
            ("HAS_BIAS", flag(self.bias)),
            ("CLASS_TOKEN", flag(self.class_token)),
            ("POSITION_IDS", flag(self.position_ids)),
        ]
    }

    /// Bindings 0-3 are always bound; bias, class token and ids where the op has them.
    fn read_slots(&self, _spec: &KernelSpec) -> Vec<Option<usize>> {
        let [bias, class, ids] = self.slots();
        vec![Some(0), Some(1), Some(2), Some(3), bias, class, ids]
    }

    fn dispatch(&self, _spec: &KernelSpec, inputs: &[&Meta]) -> Dispatch {
        let p = params(self, inputs);
        let blocks = u64::from(p.m).div_ceil(BLOCK) * u64::from(p.n).div_ceil(BLOCK);
        Dispatch::new(&p, blocks.div_ceil(u64::from(WORKGROUP)))
    }

    fn cost(&self, inputs: &[&Meta]) -> Cost {
        let p = params(self, inputs);
        let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
        let a = inputs[0].dtype;
        let io = bytes(a, p.slabs as usize * inputs[0].shape[1..].iter().product::<usize>()) + bytes(a, m * n);
        Cost { flops: 2.0 * product(&[m, n, k]), bytes: io + bytes(inputs[1].dtype, n * k) + bytes(DType::F32, m * n) }
    }

    fn reference(&self, inputs: &[&[f64]], metas: &[&Meta]) -> Vec<f64> {
        let s = &metas[0].shape;
        let [bias, class_token, ids] = self.slots().map(|slot| slot.map(|i| inputs[i]));
        let x = PatchInputs {
            pixels: inputs[0],
            image: (s[1], s[2], s[3]),
            weight: inputs[1],
            images: inputs[2],
            positions: inputs[3],
            bias,
            class_token,
            ids,
        };
        reference::patch_embed(self, &x)
    }
}

fn params(op: &PatchEmbed, inputs: &[&Meta]) -> Params {
    let s = &inputs[0].shape;
    let (height, width) = (s[2], s[3]);
    let (gh, gw) = op.grid(height, width);
    let tokens = op.tokens(height, width);
    let batch = inputs[2].shape[0];
    let n = inputs[1].shape[0];
    Params {
        m: (batch * tokens) as u32,
        n: n as u32,
        k: inputs[1].shape[1] as u32,
        tokens: tokens as u32,
        patch_side: op.patch as u32,
        height: height as u32,
        width: width as u32,
        grid_w: gw as u32,
        slabs: s[0] as u32,
        positions: inputs[3].shape[0] as u32,
        patches: (gh * gw) as u32,
        _pad: 0,
    }
}

/// Builds a patch-embedding case: `slabs` images of `channels × height × width`, `batch`
/// items each reading a random slab, the configured extras; the tolerance follows Σ|x·w|.
struct Shape {
    op: PatchEmbed,
    slabs: usize,
    batch: usize,
    image: (usize, usize, usize),
    width: usize,
    storage: DType,
    weights: DType,
}

fn case(rng: &mut CaseRng, s: Shape) -> Result<Case> {
    let Shape { op, slabs, batch, image: (channels, height, width), width: c, storage, weights } = s;
    let k = channels * op.patch * op.patch;
    let (gh, gw) = op.grid(height, width);
    let patches = gh * gw;
    let positions = usize::from(op.class_token) + if op.position_ids { rng.range(1, patches + 3) } else { patches };
    let pixels = rng.signed(slabs * channels * height * width);
    let w = rng.normals(c * k, 1.0 / (k as f32).sqrt());
    let mut b = Case::builder(NAME);
    let mut inputs = vec![
        b.input("pixels", &[slabs, channels, height, width], storage, pixels.clone()),
        b.constant("weight", &[c, k], weights, w.clone()),
        b.constant(
            "images",
            &[batch],
            DType::U32,
            (0..batch).map(|_| rng.range(0, slabs - 1) as u32).collect::<Vec<_>>(),
        ),
        b.constant("positions", &[positions, c], DType::F32, rng.normals(positions * c, 1.0)),
    ];
    if op.bias {
        inputs.push(b.constant("bias", &[c], DType::F32, rng.normals(c, 0.1)));
    }
    if op.class_token {
        inputs.push(b.constant("class_token", &[c], DType::F32, rng.normals(c, 1.0)));
    }
    if op.position_ids {
        let rows = positions - usize::from(op.class_token);
        let ids: Vec<u32> = (0..batch * patches).map(|_| rng.range(0, rows - 1) as u32).collect();
        inputs.push(b.constant("position_ids", &[batch, patches], DType::U32, ids));
    }
    let y = b.node(op, &inputs)?;
    // |pixel|·|w| summed over a patch bounds the dot product's rounding; positions are O(1).
    let max_w = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let extra = dot_ulps(k) * f64::from(max_w) * k as f64 + 4e-7;
    let description =
        format!("{op:?} {slabs} slabs -> {batch} items of {channels}x{height}x{width}, C {c} {storage} {weights}w");
    Ok(b.finish(&[y], description, Tolerance::new(1e-6, 1e-5).plus(extra)))
}

/// Odd image sides (not multiples of the patch: the edge pixels are never read), tiny and
/// non-multiple-of-4 widths, every flag and weight dtype.
fn fuzz(rng: &mut CaseRng, target: &CaseTarget) -> Result<Case> {
    let storage = pick_storage(rng, target);
    let patch = rng.range(1, 9);
    let op = PatchEmbed { patch, bias: rng.bool(0.5), class_token: rng.bool(0.5), position_ids: rng.bool(0.3) };
    let image = (
        rng.range(1, 4),
        patch * rng.range(1, 6) + rng.range(0, patch - 1),
        patch * rng.range(1, 6) + rng.range(0, patch - 1),
    );
    let weights = rng.pick(if target.shader_f16 {
        &[DType::F32, DType::BF16, DType::F16][..]
    } else {
        &[DType::F32, DType::BF16]
    });
    let (slabs, batch, width) = (rng.range(1, 4), rng.range(1, 5), rng.edge(70));
    case(rng, Shape { op, slabs, batch, image, width, storage, weights })
}

/// CLIP ViT-L/14-336's embedding: 577 tokens of 1024 from a 336 × 336 image, bf16 weights.
fn bench() -> Vec<BenchCase> {
    vec![BenchCase::new("1x3x336x336 p14 -> 577x1024 bf16w", || {
        let op = PatchEmbed { patch: 14, bias: false, class_token: true, position_ids: false };
        let image = (3, 336, 336);
        case(
            &mut CaseRng::new(1),
            Shape { op, slabs: 1, batch: 1, image, width: 1024, storage: DType::F32, weights: DType::BF16 },
        )
    })]
}

fn precision() -> Result<Vec<Case>> {
    let op = PatchEmbed { patch: 7, bias: true, class_token: true, position_ids: false };
    let shape =
        Shape { op, slabs: 3, batch: 2, image: (3, 30, 23), width: 37, storage: DType::F16, weights: DType::F32 };
    Ok(vec![case(&mut CaseRng::new(4), shape)?])
}
