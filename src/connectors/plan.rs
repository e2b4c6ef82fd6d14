//! The one plan every connector (and [`crate::models::Pretrained`]) returns: a graph planned
//! for fixed input sizes, run many times, by the upstream input and output names.

use crate::dtype::HostData;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{DispatchTime, Graph, Plan, TensorId};
use crate::host::{HostTensor, ReferenceTensors, Tensors};
use crate::tensor::Tensor;
use crate::timing::Timer;

/// A connector planned for fixed input sizes: run it many times, by name ([`ConnectorPlan::run`]),
/// on the host engine's tensors ([`ConnectorPlan::run_into`]) or inside its encoder
/// ([`ConnectorPlan::encode`]); its f64 reference is [`ConnectorPlan::reference`].
pub struct ConnectorPlan {
    plan: Plan,
    graph: Graph,
    /// A name for each of the graph's outputs, in their order.
    outputs: Vec<String>,
}

impl ConnectorPlan {
    /// Plans `graph` on `gpu`; its inputs keep the names they were declared with, its outputs
    /// (in the order they were marked) take `outputs`.
    pub fn new(gpu: &Gpu, graph: Graph, outputs: &[&str]) -> Result<Self> {
        if outputs.len() != graph.outputs().len() {
            return Err(Error::Graph(format!("{} output names for {} outputs", outputs.len(), graph.outputs().len())));
        }
        let plan = Plan::new(gpu, &graph)?;
        Ok(Self { plan, graph, outputs: outputs.iter().map(|s| s.to_string()).collect() })
    }

    /// The input names, in the graph's input order (the order [`ConnectorPlan::run_into`] takes).
    pub fn input_names(&self) -> Vec<&str> {
        self.graph.inputs().into_iter().map(|id| self.graph.name(id).unwrap_or_default()).collect()
    }

    /// The output names, in order.
    pub fn output_names(&self) -> Vec<&str> {
        self.outputs.iter().map(String::as_str).collect()
    }

    /// The shape of input or output `name`.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.id(name).and_then(|id| self.graph.shape(id))
    }

    /// The plan's own GPU tensor of input or output `name`: write an input there, or read an
    /// output, without a host round trip.
    pub fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.id(name).and_then(|id| self.plan.tensor(id))
    }

    /// Runs on `inputs` by name (extra names are ignored, so a processor's whole output can be
    /// passed) and returns every output by name. Float data is rounded to f16 where the plan
    /// stores activations so; a missing input or one of another shape is [`Error::Input`].
    pub fn run(&self, inputs: &Tensors) -> Result<Tensors> {
        let outputs = self.plan.run(&self.inputs_from(inputs)?)?;
        self.named(outputs, HostTensor::new)
    }

    /// [`ConnectorPlan::run`] without blocking: the form for the web.
    pub async fn run_async(&self, inputs: &Tensors) -> Result<Tensors> {
        let outputs = self.plan.run_async(&self.inputs_from(inputs)?).await?;
        self.named(outputs, HostTensor::new)
    }

    /// One run on `inputs` timed by `timer` (GPU time where the device has timestamps),
    /// without blocking.
    pub async fn time_async(&self, inputs: &Tensors, timer: &Timer) -> Result<f64> {
        self.plan.write_inputs(&self.inputs_from(inputs)?)?;
        self.plan.time_async(timer).await
    }

    /// Runs on `inputs` by name with every dispatch timed on its own ([`Plan::profile`]): where
    /// a run's time goes, by kernel and by stage (tower, connector).
    pub fn profile(&self, inputs: &Tensors, timer: &Timer) -> Result<Vec<DispatchTime>> {
        self.plan.write_inputs(&self.inputs_from(inputs)?)?;
        self.plan.profile(timer)
    }

    /// The f64 CPU reference of the same graph on `inputs`, each output as (shape, values).
    pub fn reference(&self, inputs: &Tensors) -> Result<ReferenceTensors> {
        let outputs = self.graph.reference(&self.inputs_from(inputs)?)?;
        self.named(outputs, |shape, data| Ok((shape.to_vec(), data)))
    }

    /// Runs a one-input plan on `features` (row-major, its input shape) and returns its first
    /// output as f32: the shorthand of [`ConnectorPlan::run`] for the projectors.
    pub fn project(&self, features: &[f32]) -> Result<Vec<f32>> {
        Ok(self.plan.run(&[HostData::F32(features)])?.remove(0).into_f32())
    }

    /// The f64 reference of [`ConnectorPlan::project`] on `features`.
    pub fn project_reference(&self, features: &[f32]) -> Result<Vec<f64>> {
        Ok(self.graph.reference(&[HostData::F32(features)])?.remove(0))
    }

    /// Runs on a host engine's GPU tensors (inputs in [`ConnectorPlan::input_names`] order,
    /// outputs in [`ConnectorPlan::output_names`] order), one submission, no readback.
    pub fn run_into(&self, inputs: &[&Tensor], outputs: &[&Tensor]) -> Result<()> {
        self.plan.run_into(inputs, outputs)
    }

    /// Records every dispatch into the host's `encoder` (inputs already in
    /// [`ConnectorPlan::tensor`]s).
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder) {
        self.plan.encode(encoder);
    }

    /// The planned graph, for [`Plan::time`] and the plan's statistics.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The graph it was planned from.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The plan, owned.
    pub fn into_plan(self) -> Plan {
        self.plan
    }

    /// The plan and the graph it was planned from, owned.
    pub fn into_parts(self) -> (Plan, Graph) {
        (self.plan, self.graph)
    }

    /// Shape of the first input.
    pub fn input_shape(&self) -> &[usize] {
        self.graph.inputs().first().and_then(|&id| self.graph.shape(id)).unwrap_or_default()
    }

    /// Shape of the first output, e.g. `[batch, tokens, text_dim]`.
    pub fn output_shape(&self) -> &[usize] {
        self.graph.outputs().first().and_then(|&id| self.graph.shape(id)).unwrap_or_default()
    }

    fn id(&self, name: &str) -> Option<TensorId> {
        let input = self.graph.inputs().into_iter().find(|&id| self.graph.name(id) == Some(name));
        let output = || self.outputs.iter().position(|n| n == name).map(|i| self.graph.outputs()[i]);
        input.or_else(output)
    }

    /// The graph's inputs from `inputs`, in order, checked by name and shape; borrowed, not copied.
    fn inputs_from<'a>(&self, inputs: &'a Tensors) -> Result<Vec<HostData<'a>>> {
        self.graph
            .inputs()
            .into_iter()
            .map(|id| {
                let name = self.graph.name(id).unwrap_or_default();
                let shape = self.graph.shape(id).unwrap_or_default();
                let t = inputs
                    .get(name)
                    .ok_or_else(|| Error::Input { name: name.into(), problem: "missing from the inputs".into() })?;
                if !fits(&t.shape, shape) {
                    let problem = format!("shape {:?}, the plan was made for {shape:?}", t.shape);
                    return Err(Error::Input { name: name.into(), problem });
                }
                Ok(t.data.as_data())
            })
            .collect()
    }

    fn named<T, V>(
        &self,
        values: Vec<V>,
        make: impl Fn(&[usize], V) -> Result<T>,
    ) -> Result<std::collections::BTreeMap<String, T>> {
        self.outputs
            .iter()
            .zip(self.graph.outputs())
            .zip(values)
            .map(|((name, id), v)| Ok((name.clone(), make(self.graph.shape(*id).unwrap_or_default(), v)?)))
            .collect()
    }
}

/// Whether data of shape `given` feeds an input planned as `planned`: the same shape, or the
/// same with its leading dims split (the processor's `[images, tiles, 3, H, W]` for a plan's
/// `[images · tiles, 3, H, W]`, as upstream flattens them).
fn fits(given: &[usize], planned: &[usize]) -> bool {
    if given == planned {
        return true;
    }
    let Some(split) = (given.len() + 1).checked_sub(planned.len()).filter(|_| !planned.is_empty()) else {
        return false;
    };
    split > 1 && given[split..] == planned[1..] && given[..split].iter().product::<usize>() == planned[0]
}
