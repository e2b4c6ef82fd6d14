//! The forms a test builds an attention in (flash, naive passes, key split), shared by the
//! attention and segment test binaries.

use vlbridge::ops::{Attention, Pass, SplitPass};
use vlbridge::{Graph, TensorId};

/// How a test builds its attention.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Form {
    /// One flash node.
    Flash,
    /// The naive scores → softmax → weighted-sum passes.
    Naive,
    /// The key split's partials → combine passes over this many chunks.
    KeySplit(u32),
}

/// Adds `form`'s node(s) for `cfg` on `inputs` (q, the key/value sources, the mask and norm
/// weights when configured).
pub fn attend(g: &mut Graph, cfg: Attention, form: Form, inputs: &[TensorId]) -> TensorId {
    let sources = &inputs[1..=cfg.kv_inputs()];
    let mask: Vec<TensorId> = cfg.mask_input().map(|m| inputs[m]).into_iter().collect();
    match form {
        Form::Flash => g.add(cfg, inputs).unwrap(),
        Form::Naive => {
            let scores = g.add(cfg.naive(Pass::Scores), inputs).unwrap();
            let weights = g.add(cfg.naive(Pass::Softmax), &[vec![scores], mask].concat()).unwrap();
            g.add(cfg.naive(Pass::WeightedSum), &[&[weights], sources].concat()).unwrap()
        }
        Form::KeySplit(chunks) => {
            let partials = g.add(cfg.key_split(chunks, SplitPass::Partials), inputs).unwrap();
            g.add(cfg.key_split(chunks, SplitPass::Combine), &[partials, inputs[0]]).unwrap()
        }
    }
}
