//! From the image processor's outputs to the language model's image embeddings: a model
//! directory that holds its vision tower (here the tiny BLIP-2: EVA ViT, Q-Former,
//! `language_projection`) runs `pixel_values` through tower and connector in one plan, and
//! the result is what transformers' `get_image_features` returned for the same pixels.
//!
//! Run: `cargo run --release --example pixels` (the tiny directory in `tests/data/vision/`).

use std::path::Path;

use vlbridge::models;
use vlbridge::{Gpu, GpuOptions, reference};

/// Plans the pixel path once, runs it twice; returns the largest error against transformers'
/// output relative to the model-path tolerance 1e-4 + 1e-3·|want| (at most 1 passes).
pub fn run() -> vlbridge::Result<f64> {
    let gpu = Gpu::with_options(&GpuOptions::from_env()?)?;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/vision/blip2");
    let model = models::from_pretrained(&gpu, &dir)?;
    println!("{}", model.inspection());
    // What BlipImageProcessor returned for two images, and what the model made of them.
    let inputs = models::read_tensors(dir.join("vision_inputs.safetensors"))?;
    let upstream = models::read_tensors(dir.join("vision_outputs.safetensors"))?;
    println!("pixel path inputs: {:?}", model.vision_input_names());
    let plan = model.plan(&inputs)?;
    println!(
        "plan: {} dispatches, {} activation bytes",
        plan.plan().dispatches().len(),
        plan.plan().activation_bytes()
    );
    let mut worst: f64 = 0.0;
    for _ in 0..2 {
        let out = plan.run(&inputs)?;
        let got = out["image_features"].data.as_f32().unwrap_or_default();
        let want: Vec<f64> =
            upstream["image_features"].data.as_f32().unwrap_or_default().iter().map(|&v| f64::from(v)).collect();
        let cmp = reference::compare(got, &want, 1e-4, 1e-3);
        println!("image_features {:?}: {cmp}", out["image_features"].shape);
        worst = worst.max(if cmp.passed() { cmp.tolerance_used } else { f64::INFINITY });
    }
    Ok(worst)
}

#[allow(dead_code)]
fn main() -> vlbridge::Result<()> {
    let worst = run()?;
    println!("worst error: {worst:.3} of the tolerance");
    Ok(())
}
