//! The LLaVA MLP projector: `linear_2(act(linear_1(x)))`, with the activation fused into the
//! first GEMM; biases when the checkpoint has them (`multimodal_projector_bias`).

use super::{ConnectorPlan, StateDict};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Graph, TensorId};
use crate::nn::{Linear, Skip};
use crate::ops::GeluForm;
use crate::tensor::Tensor;
use crate::weights::Weights;

const NAME: &str = "llava projector";

/// Where checkpoints store the projector: llava-hf on disk (`multi_modal_projector.linear_{1,2}`),
/// transformers >= 4.52 in memory (`model.multi_modal_projector.*`), and the original LLaVA
/// repository (`model.mm_projector.{0,2}`, an `nn.Sequential`).
const LAYOUTS: [(&str, &str, &str); 3] = [
    ("multi_modal_projector.", "linear_1", "linear_2"),
    ("model.multi_modal_projector.", "linear_1", "linear_2"),
    ("model.mm_projector.", "0", "2"),
];

/// The LLaVA-1.5 style projector with its weights on the GPU.
#[derive(Debug, Clone)]
pub struct LlavaProjector {
    linear_1: Linear,
    linear_2: Linear,
    act: GeluForm,
    activations: DType,
}

impl LlavaProjector {
    /// Maps a HF `projector_hidden_act` string to the GELU form.
    pub fn activation(name: &str) -> Result<GeluForm> {
        GeluForm::from_hf("projector_hidden_act", name)
    }

    /// Loads from a checkpoint by upstream names (see the module docs for the aliases), with
    /// biases when `linear_1` has one. The weight matrices stay in their stored dtype (f32, f16
    /// or bf16); biases become f32.
    pub fn from_weights(gpu: &Gpu, weights: &Weights, act: GeluForm) -> Result<Self> {
        let names: Vec<String> = LAYOUTS.iter().map(|(p, l1, _)| format!("{p}{l1}.weight")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let found = weights.resolve(&refs)?;
        let (prefix, l1, l2) = LAYOUTS[refs.iter().position(|n| *n == found).unwrap_or(0)];
        let (p1, p2) = (format!("{prefix}{l1}"), format!("{prefix}{l2}"));
        let shape = weights.shape(&format!("{p1}.weight"))?;
        let [_, vision] = shape[..] else {
            let problem = format!("shape {shape:?}, expected [hidden, vision_dim]");
            return Err(Error::Weights { name: format!("{p1}.weight"), problem });
        };
        let bias = weights.contains(&format!("{p1}.bias"));
        let linear_1 = Linear::load(gpu, weights, &p1, vision, bias)?;
        let linear_2 = Linear::load(gpu, weights, &p2, linear_1.out_features(), bias)?;
        gpu.flush("uploading projector weights")?;
        Ok(Self { linear_1, linear_2, act, activations: DType::F32 })
    }

    /// The tensors of a projector `[vision, hidden, text]` under llava-hf's on-disk names
    /// (`multi_modal_projector.linear_{1,2}`), biases when `bias`
    /// (`multimodal_projector_bias`).
    pub fn state_dict([vision, hidden, text]: [usize; 3], bias: bool) -> StateDict {
        let mut t = StateDict::default();
        t.linear("multi_modal_projector.linear_1", hidden, vision, bias);
        t.linear("multi_modal_projector.linear_2", text, hidden, bias);
        t
    }

    /// Builds from host arrays in nn.Linear layout: `w1 [hidden, vision]`, `w2 [text, hidden]`.
    pub fn from_f32(
        gpu: &Gpu,
        dims: [usize; 3],
        w1: &[f32],
        b1: &[f32],
        w2: &[f32],
        b2: &[f32],
        act: GeluForm,
    ) -> Result<Self> {
        let [vision, hidden, text] = dims;
        let projector = Self::from_tensors(
            Tensor::from_f32(gpu, &[hidden, vision], w1)?,
            Some(Tensor::from_f32(gpu, &[hidden], b1)?),
            Tensor::from_f32(gpu, &[text, hidden], w2)?,
            Some(Tensor::from_f32(gpu, &[text], b2)?),
            act,
        )?;
        gpu.flush("uploading projector weights")?;
        Ok(projector)
    }

    /// Builds from weights already on the GPU (a host engine's): `w1 [hidden, vision]` and
    /// `w2 [text, hidden]` in f32, f16 or bf16, biases f32 (or none). Shapes are checked here,
    /// dtypes when a plan is built.
    pub fn from_tensors(w1: Tensor, b1: Option<Tensor>, w2: Tensor, b2: Option<Tensor>, act: GeluForm) -> Result<Self> {
        let (linear_1, linear_2) = (Linear::from_tensors(NAME, w1, b1)?, Linear::from_tensors(NAME, w2, b2)?);
        if linear_2.in_features() != linear_1.out_features() {
            let (expected, got) = (linear_1.out_features(), linear_2.in_features());
            return Err(Error::shape(NAME, "linear_2 in-features (linear_1's out-features)", expected, got));
        }
        Ok(Self { linear_1, linear_2, act, activations: DType::F32 })
    }

    /// Runs later plans with activations stored as `dtype` (f32, the default, or f16: f32
    /// arithmetic, half the activation memory and traffic; needs `SHADER_F16`). Inputs are
    /// then declared f16 (`Plan::run` rounds the f32 data it is given) and so are outputs.
    pub fn with_activations(mut self, dtype: DType) -> Self {
        self.activations = dtype;
        self
    }

    /// The activation storage type of its plans.
    pub fn activations(&self) -> DType {
        self.activations
    }

    /// `[vision_dim, hidden, text_dim]`.
    pub fn dims(&self) -> [usize; 3] {
        [self.linear_1.in_features(), self.linear_1.out_features(), self.linear_2.out_features()]
    }

    /// Whether the layers have biases.
    pub fn has_bias(&self) -> bool {
        self.linear_1.has_bias()
    }

    /// The GELU form.
    pub fn act(&self) -> GeluForm {
        self.act
    }

    /// The fused graph: GEMM(+bias+GELU) then GEMM(+bias). Returns (graph, input, output).
    pub fn graph(&self, batch: usize, tokens: usize) -> Result<(Graph, TensorId, TensorId)> {
        self.with_input(batch, tokens, |g, x| self.add_to(g, x))
    }

    /// The unfused baseline: GEMM(+bias), a standalone GELU pass, GEMM(+bias).
    pub fn unfused_graph(&self, batch: usize, tokens: usize) -> Result<(Graph, TensorId, TensorId)> {
        self.with_input(batch, tokens, |g, x| {
            let h = self.linear_1.add(g, "linear_1", x, None, Skip::None)?;
            let h = g.add(self.act, &[h])?;
            self.linear_2.add(g, "linear_2", h, None, Skip::None)
        })
    }

    /// Adds the fused projector on `x` `[.., vision_dim]` to `g`; returns its output.
    pub fn add_to(&self, g: &mut Graph, x: TensorId) -> Result<TensorId> {
        let h = self.linear_1.add(g, "linear_1", x, Some(self.act), Skip::None)?;
        self.linear_2.add(g, "linear_2", h, None, Skip::None)
    }

    /// A graph with the `[batch, tokens, vision_dim]` input, `body` on it, its result marked.
    fn with_input(
        &self,
        batch: usize,
        tokens: usize,
        body: impl FnOnce(&mut Graph, TensorId) -> Result<TensorId>,
    ) -> Result<(Graph, TensorId, TensorId)> {
        let mut g = Graph::new();
        let x = g.input_as("image_features", &[batch, tokens, self.dims()[0]], self.activations)?;
        let y = body(&mut g, x)?;
        g.output(y)?;
        Ok((g, x, y))
    }

    /// Plans the fused projector for `[batch, tokens]`.
    pub fn plan(&self, gpu: &Gpu, batch: usize, tokens: usize) -> Result<ConnectorPlan> {
        ConnectorPlan::new(gpu, self.graph(batch, tokens)?.0, &["projected"])
    }
}
