//! The LLaVA MLP projector: `linear_2(gelu(linear_1(x)))`, with GELU fused into the first GEMM.

use super::{ConnectorPlan, StateDict, finish};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Graph, TensorId};
use crate::ops::{Epilogue, GeluForm};
use crate::tensor::Tensor;
use crate::weights::Weights;

/// Names under which checkpoints store the projector: llava-hf on disk, transformers >= 4.52 in
/// memory, and the original LLaVA repository (`mm_projector` is an `nn.Sequential`).
const PREFIXES_1: [&str; 3] =
    ["multi_modal_projector.linear_1", "model.multi_modal_projector.linear_1", "model.mm_projector.0"];
const PREFIXES_2: [&str; 3] =
    ["multi_modal_projector.linear_2", "model.multi_modal_projector.linear_2", "model.mm_projector.2"];

/// The LLaVA-1.5 style projector with its weights on the GPU.
#[derive(Debug, Clone)]
pub struct LlavaProjector {
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
    act: GeluForm,
    activations: DType,
}

impl LlavaProjector {
    /// Maps a HF `projector_hidden_act` string to the GELU form.
    pub fn activation(name: &str) -> Result<GeluForm> {
        GeluForm::from_hf("projector_hidden_act", name)
    }

    /// Loads from a checkpoint by upstream names (see the module docs for the aliases). The
    /// weight matrices stay in their stored dtype (f32, f16 or bf16); biases become f32.
    pub fn from_weights(gpu: &Gpu, weights: &Weights, act: GeluForm) -> Result<Self> {
        let names = |prefixes: &[&str; 3], leaf: &str| prefixes.map(|p| format!("{p}.{leaf}"));
        let [w1, b1, w2, b2] = [
            names(&PREFIXES_1, "weight"),
            names(&PREFIXES_1, "bias"),
            names(&PREFIXES_2, "weight"),
            names(&PREFIXES_2, "bias"),
        ];
        let w1_name = weights.resolve(&refs(&w1))?;
        let w2_name = weights.resolve(&refs(&w2))?;
        let (s1, s2) = (weights.shape(w1_name)?, weights.shape(w2_name)?);
        if s1.len() != 2 {
            return Err(Error::Weights {
                name: w1_name.into(),
                problem: format!("shape {s1:?}, expected [hidden, vision_dim]"),
            });
        }
        let (hidden, vision) = (s1[0], s1[1]);
        if s2.len() != 2 || s2[1] != hidden {
            return Err(Error::Weights {
                name: w2_name.into(),
                problem: format!("shape {s2:?}, expected [text_dim, {hidden}]"),
            });
        }
        let text = s2[0];
        let projector = Self {
            w1: weights.upload_native(gpu, &[w1_name], &[hidden, vision])?,
            b1: weights.upload(gpu, &refs(&b1), &[hidden])?,
            w2: weights.upload_native(gpu, &[w2_name], &[text, hidden])?,
            b2: weights.upload(gpu, &refs(&b2), &[text])?,
            act,
            activations: DType::F32,
        };
        gpu.flush("uploading projector weights")?;
        Ok(projector)
    }

    /// The tensors of a projector `[vision, hidden, text]` under llava-hf's on-disk names
    /// (`multi_modal_projector.linear_{1,2}`), biases when `bias`
    /// (`multimodal_projector_bias`).
    pub fn state_dict([vision, hidden, text]: [usize; 3], bias: bool) -> StateDict {
        let mut t = StateDict::default();
        t.linear(PREFIXES_1[0], hidden, vision, bias);
        t.linear(PREFIXES_2[0], text, hidden, bias);
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
            Tensor::from_f32(gpu, &[hidden], b1)?,
            Tensor::from_f32(gpu, &[text, hidden], w2)?,
            Tensor::from_f32(gpu, &[text], b2)?,
            act,
        )?;
        gpu.flush("uploading projector weights")?;
        Ok(projector)
    }

    /// Builds from weights already on the GPU (a host engine's): `w1 [hidden, vision]` and
    /// `w2 [text, hidden]` in f32, f16 or bf16, biases f32. Shapes are checked here, dtypes
    /// when a plan is built.
    pub fn from_tensors(w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, act: GeluForm) -> Result<Self> {
        let (s1, s2) = (w1.shape(), w2.shape());
        let fits = s1.len() == 2
            && s2.len() == 2
            && s2[1] == s1[0]
            && b1.shape() == [s1[0]].as_slice()
            && b2.shape() == [s2[0]].as_slice();
        if !fits {
            let got = format!("w1 {s1:?}, b1 {:?}, w2 {s2:?}, b2 {:?}", b1.shape(), b2.shape());
            return Err(Error::shape("llava projector", "weights", "w1 [h, v], b1 [h], w2 [t, h], b2 [t]", got));
        }
        Ok(Self { w1, b1, w2, b2, act, activations: DType::F32 })
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
        [self.w1.shape()[1], self.w1.shape()[0], self.w2.shape()[0]]
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
        let act = self.act;
        self.with_input(batch, tokens, |g, x| {
            self.add_layers(g, x, |g, x, w1, b1| {
                let h = g.add(Epilogue::BIAS, &[x, w1, b1])?;
                g.add(act, &[h])
            })
        })
    }

    /// Adds the fused projector on `x` `[.., vision_dim]` to `g`; returns its output.
    pub fn add_to(&self, g: &mut Graph, x: TensorId) -> Result<TensorId> {
        let epilogue = Epilogue::bias_gelu(self.act);
        self.add_layers(g, x, |g, x, w1, b1| g.add(epilogue, &[x, w1, b1]))
    }

    /// The weights as constants, `first(x, w1, b1)` for the first layer, then linear_2.
    fn add_layers(
        &self,
        g: &mut Graph,
        x: TensorId,
        first: impl FnOnce(&mut Graph, TensorId, TensorId, TensorId) -> Result<TensorId>,
    ) -> Result<TensorId> {
        let (w1, b1) = (g.constant("linear_1.weight", &self.w1), g.constant("linear_1.bias", &self.b1));
        let (w2, b2) = (g.constant("linear_2.weight", &self.w2), g.constant("linear_2.bias", &self.b2));
        let h = first(g, x, w1, b1)?;
        g.add(Epilogue::BIAS, &[h, w2, b2])
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
        finish(gpu, self.graph(batch, tokens)?)
    }

    /// Plans the unfused baseline for `[batch, tokens]`.
    pub fn plan_unfused(&self, gpu: &Gpu, batch: usize, tokens: usize) -> Result<ConnectorPlan> {
        finish(gpu, self.unfused_graph(batch, tokens)?)
    }
}

fn refs(names: &[String; 3]) -> [&str; 3] {
    names.each_ref().map(String::as_str)
}

impl LlavaProjector {
    /// Reads the weights back to the host as `[w1, b1, w2, b2]` (for reference checks).
    pub fn download(&self) -> Result<[Vec<f32>; 4]> {
        Ok([self.w1.to_f32()?, self.b1.to_f32()?, self.w2.to_f32()?, self.b2.to_f32()?])
    }
}
