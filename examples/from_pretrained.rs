//! A Hugging Face model directory planned once and run many times: `Pretrained::plan` takes
//! inputs like the ones that will come (their shapes, and the values that shape the graph, such
//! as LLaVA-NeXT's `image_size`), and the plan then runs on new inputs by name, here three
//! images' features through the LLaVA-NeXT projector and AnyRes packing, each checked against
//! the f64 reference of the same graph.
//!
//! Run: `cargo run --release --example from_pretrained` (the tiny directory in `tests/data/`).

use std::path::Path;

use vlbridge::models::{self, HostTensor, Tensors};
use vlbridge::{Gpu, GpuOptions, HostVec, reference};

/// Inputs of the tiny LLaVA-NeXT directory: 7 tiles of 16 patches of 32 features, for an
/// image of 100 x 140 pixels, filled from `seed`.
fn inputs(seed: u32) -> vlbridge::Result<Tensors> {
    let n = 7 * 16 * 32u32;
    let features =
        (0..n).map(|i: u32| (i.wrapping_mul(2654435761) ^ seed) % 2001).map(|v| v as f32 / 1000.0 - 1.0).collect();
    Ok([
        ("image_features".to_string(), HostTensor::new(&[7, 16, 32], HostVec::F32(features))?),
        ("image_size".to_string(), HostTensor::new(&[2], HostVec::U32(vec![100, 140]))?),
    ]
    .into())
}

/// Plans once, runs three times; returns the largest error against the reference relative to
/// its tolerance (at most 1 passes).
pub fn run() -> vlbridge::Result<f64> {
    let gpu = Gpu::with_options(&GpuOptions::from_env()?)?;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/models/llava_next");
    let model = models::from_pretrained(&gpu, &dir)?;
    println!("{}", model.inspection());
    let plan = model.plan(&inputs(0)?)?; // plan once ...
    println!(
        "plan: inputs {:?}, outputs {:?}, {} dispatches",
        plan.input_names(),
        plan.output_names(),
        plan.plan().dispatches().len()
    );
    let mut worst = 0.0f64;
    for seed in 1..=3 {
        let x = inputs(seed)?; // ... run many times, by name
        let got = plan.run(&x)?;
        let want = plan.reference(&x)?;
        for (name, (shape, values)) in &want {
            assert_eq!(&got[name].shape, shape);
            let check = reference::compare(got[name].data.as_f32().unwrap_or_default(), values, 1e-4, 1e-3);
            worst = worst.max(if check.passed() { check.tolerance_used } else { f64::INFINITY });
            println!("image {seed}: {name} {shape:?} {check}");
        }
    }
    Ok(worst)
}

#[allow(dead_code)]
fn main() -> vlbridge::Result<()> {
    let worst = run()?;
    assert!(worst <= 1.0, "worst error at {worst} of its tolerance");
    Ok(())
}
