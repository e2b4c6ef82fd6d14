//! Every kernel the crate ships, by id, and its static description.

use super::{
    KernelSpec, anyres, attention, convert, downsample, gelu, gemm, layer_norm, loop_probe, repeat, roofline, tome,
};

/// Every kernel the crate ships. Adding a variant forces every match on it to handle it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelId {
    /// `x·Wᵀ (+ b) (then GELU)`, subgroup fast path.
    Gemm,
    /// The fast path over f16 weights.
    GemmF16,
    /// The fast path over bf16 weights.
    GemmBf16,
    /// The same for any `k` and any device.
    GemmPortable,
    /// The portable GEMM over f16 weights.
    GemmPortableF16,
    /// The portable GEMM over bf16 weights.
    GemmPortableBf16,
    /// Elementwise GELU.
    Gelu,
    /// LayerNorm over the last dimension.
    LayerNorm,
    /// Broadcast along a new leading dimension.
    Repeat,
    /// Flash multi-head attention.
    Attention,
    /// The same, keys shared across a subgroup.
    AttentionSubgroup,
    /// Naive attention, pass 1: scores.
    AttentionScores,
    /// Naive attention, pass 2: row softmax.
    AttentionSoftmax,
    /// Naive attention, pass 3: weights · V.
    AttentionWeightedSum,
    /// 2×2 average pooling of a token grid.
    AvgPool2x2,
    /// Bilinear halving of a token grid.
    BilinearHalf,
    /// ToMe: unit-norm metric rows.
    TomeNormalize,
    /// ToMe: best B match of each A token.
    TomeBestMatch,
    /// The same, B rows shared across a subgroup.
    TomeBestMatchSubgroup,
    /// ToMe: stable rank of the matches.
    TomeRank,
    /// ToMe: output row of each A token.
    TomePlace,
    /// ToMe: size-weighted merge (features or sizes).
    TomeMerge,
    /// ToMe: token → output row.
    TomeSource,
    /// LLaVA-NeXT AnyRes packing.
    AnyResPack,
    /// f32 → activation storage type.
    Convert,
    /// Roofline microbenchmark: peak FMA throughput.
    RooflineFma,
    /// Roofline microbenchmark: copy bandwidth.
    RooflineCopy,
    /// Driver loop-count probe.
    LoopProbe,
}

impl KernelId {
    /// All kernels, for the shader tests, the CLI and the benches.
    pub const ALL: [KernelId; 28] = [
        KernelId::Gemm,
        KernelId::GemmF16,
        KernelId::GemmBf16,
        KernelId::GemmPortable,
        KernelId::GemmPortableF16,
        KernelId::GemmPortableBf16,
        KernelId::Gelu,
        KernelId::LayerNorm,
        KernelId::Repeat,
        KernelId::Attention,
        KernelId::AttentionSubgroup,
        KernelId::AttentionScores,
        KernelId::AttentionSoftmax,
        KernelId::AttentionWeightedSum,
        KernelId::AvgPool2x2,
        KernelId::BilinearHalf,
        KernelId::TomeNormalize,
        KernelId::TomeBestMatch,
        KernelId::TomeBestMatchSubgroup,
        KernelId::TomeRank,
        KernelId::TomePlace,
        KernelId::TomeMerge,
        KernelId::TomeSource,
        KernelId::AnyResPack,
        KernelId::Convert,
        KernelId::RooflineFma,
        KernelId::RooflineCopy,
        KernelId::LoopProbe,
    ];

    /// The kernel's static description.
    pub fn spec(self) -> &'static KernelSpec {
        match self {
            KernelId::Gemm => &gemm::SPEC,
            KernelId::GemmF16 => &gemm::F16_SPEC,
            KernelId::GemmBf16 => &gemm::BF16_SPEC,
            KernelId::GemmPortable => &gemm::PORTABLE_SPEC,
            KernelId::GemmPortableF16 => &gemm::PORTABLE_F16_SPEC,
            KernelId::GemmPortableBf16 => &gemm::PORTABLE_BF16_SPEC,
            KernelId::Gelu => &gelu::SPEC,
            KernelId::LayerNorm => &layer_norm::SPEC,
            KernelId::Repeat => &repeat::SPEC,
            KernelId::Attention => &attention::FLASH_SPEC,
            KernelId::AttentionSubgroup => &attention::FLASH_SUBGROUP_SPEC,
            KernelId::AttentionScores => &attention::SCORES_SPEC,
            KernelId::AttentionSoftmax => &attention::SOFTMAX_SPEC,
            KernelId::AttentionWeightedSum => &attention::WEIGHTED_SUM_SPEC,
            KernelId::AvgPool2x2 => &downsample::AVG_POOL_SPEC,
            KernelId::BilinearHalf => &downsample::BILINEAR_SPEC,
            KernelId::TomeNormalize => &tome::NORMALIZE_SPEC,
            KernelId::TomeBestMatch => &tome::BEST_MATCH_SPEC,
            KernelId::TomeBestMatchSubgroup => &tome::BEST_MATCH_SUBGROUP_SPEC,
            KernelId::TomeRank => &tome::RANK_SPEC,
            KernelId::TomePlace => &tome::PLACE_SPEC,
            KernelId::TomeMerge => &tome::MERGE_SPEC,
            KernelId::TomeSource => &tome::SOURCE_SPEC,
            KernelId::AnyResPack => &anyres::SPEC,
            KernelId::Convert => &convert::SPEC,
            KernelId::RooflineFma => &roofline::FMA_SPEC,
            KernelId::RooflineCopy => &roofline::COPY_SPEC,
            KernelId::LoopProbe => &loop_probe::SPEC,
        }
    }
}
