//! Lowering: an ONNX graph becomes a libtorch program that runs AND trains.
//!
//! Float initializers that feed weights (Conv W/B, Gemm B/C, MatMul constant operands,
//! BatchNormalization scale/bias) become trainable variables of one `VarStore`; the running mean
//! and variance of BatchNormalization become non-trainable buffers that train mode updates, as
//! in PyTorch. Every other constant stays a plain tensor. The map back to ONNX initializer names
//! is kept so that repaired weights can be written back where they came from.

mod error;
mod exec;
mod indexing;
pub mod ops;
mod probe;
mod splice;
mod window;

use std::collections::{BTreeMap, HashMap};

use tch::{nn, Device, Tensor};

use crate::graph::Graph;
use crate::onnx::{Tensor as OnnxTensor, TensorData};

pub use error::LowerError;
pub use splice::{Replacement, Splice};
use ops::{Op, Parsed};

/// What a constant tensor is for; a tensor used in several roles takes the strongest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Constant,
    /// BatchNormalization running statistics: updated in train mode, never by an optimizer.
    Buffer,
    Trainable,
}

/// One lowered weight: where it comes from in the ONNX model and how it is held.
#[derive(Debug)]
pub struct Weight {
    pub onnx_name: String,
    pub role: Role,
    pub tensor: Tensor,
}

struct Step {
    node: String,
    op_type: String,
    op: Op,
    inputs: Vec<Option<usize>>,
    outputs: Vec<usize>,
    /// Slots whose last reader is this step: freed right after it, to bound memory.
    release: Vec<usize>,
}

/// A graph that libtorch can run forward (eval or train mode) and differentiate.
pub struct LoweredModel {
    vs: nn::VarStore,
    steps: Vec<Step>,
    slot_count: usize,
    /// Slots holding constants and weights, bound before each run.
    bound: Vec<(usize, Tensor)>,
    weights: Vec<Weight>,
    input_slot: usize,
    output_slot: usize,
    input_name: String,
    output_name: String,
    /// ONNX tensor name → slot, to capture intermediate values by name.
    slot_of: HashMap<String, usize>,
}

impl LoweredModel {
    /// Lowers `graph` (constant-folded or not) onto `device`.
    pub fn new(graph: &Graph, device: Device) -> Result<Self, LowerError> {
        let opset = graph.opset();
        let input = single(&graph.inputs.iter().map(|v| v.name.clone()).collect::<Vec<_>>(), true)?;
        let output = single(&graph.outputs.iter().map(|v| v.name.clone()).collect::<Vec<_>>(), false)?;

        // Parse every node first and report every unsupported op at once.
        let mut parsed = Vec::with_capacity(graph.nodes.len());
        let mut unsupported: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for node in &graph.nodes {
            match ops::parse(node, opset)? {
                Parsed::Op(op) => parsed.push(op),
                Parsed::Unsupported => {
                    let key = if node.domain.is_empty() { node.op_type.clone() } else { format!("{}::{}", node.domain, node.op_type) };
                    unsupported.entry(key).or_default().push(node.name.clone());
                }
            }
        }
        if !unsupported.is_empty() {
            return Err(LowerError::Unsupported { opset, ops: unsupported });
        }

        // Constants: graph initializers, Constant nodes, and ConstantOfShape of a constant shape
        // (how the onnx `light` models store their weights), materialised once here.
        let mut constants: BTreeMap<String, Tensor> = BTreeMap::new();
        let tensor_error = |name: &str, e: tch::TchError| LowerError::Tensor { tensor: name.to_string(), reason: e.to_string() };
        for (name, value) in &graph.initializers {
            constants.insert(name.clone(), to_torch(value, device).map_err(|e| tensor_error(name, e))?);
        }
        let mut computed = vec![false; graph.nodes.len()];
        for (i, (node, op)) in graph.nodes.iter().zip(&parsed).enumerate() {
            let Some(out) = node.outputs.first() else { continue };
            let value = match op {
                Op::Constant(value) => to_torch(value, device),
                Op::ConstantOfShape(value) => match node.inputs.first().and_then(|n| graph.initializers.get(n)) {
                    Some(shape) => exec::constant_of_shape(&shape.to_i64(), value, device),
                    None => continue,
                },
                _ => continue,
            };
            constants.insert(out.clone(), value.map_err(|e| tensor_error(out, e))?);
            computed[i] = true;
        }
        let roles = weight_roles(graph, |name| constants.get(name).is_some_and(|t| t.is_floating_point()));

        let mut slots = Slots::default();
        let vs = nn::VarStore::new(device);
        let mut bound = Vec::new();
        let mut weights = Vec::new();
        // BTreeMap order: stable variable names across runs.
        for (index, (name, tensor)) in constants.into_iter().enumerate() {
            let role = roles.get(&name).copied().unwrap_or(Role::Constant);
            let tensor = match role {
                Role::Constant => tensor,
                _ => vs.root().add(&variable_name(index, &name), tensor, role == Role::Trainable),
            };
            if role != Role::Constant {
                weights.push(Weight { onnx_name: name.clone(), role, tensor: tensor.shallow_clone() });
            }
            bound.push((slots.get(&name), tensor));
        }

        let input_slot = slots.get(&input);
        let mut steps = Vec::new();
        for ((node, op), computed) in graph.nodes.iter().zip(parsed).zip(computed) {
            if computed {
                continue;
            }
            let inputs = node.inputs.iter().map(|n| (!n.is_empty()).then(|| slots.get(n))).collect();
            let outputs = node.outputs.iter().map(|n| slots.get(n)).collect();
            steps.push(Step { node: node.name.clone(), op_type: node.op_type.clone(), op, inputs, outputs, release: Vec::new() });
        }
        let output_slot = slots.get(&output);
        plan_releases(&mut steps, &bound, input_slot, output_slot);

        Ok(LoweredModel {
            vs,
            steps,
            slot_count: slots.count(),
            bound,
            weights,
            input_slot,
            output_slot,
            input_name: input,
            output_name: output,
            slot_of: slots.0,
        })
    }

    /// Runs the graph on a batch. `train` selects BatchNormalization's batch statistics (and
    /// updates its running buffers) as PyTorch's train mode does.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor, LowerError> {
        self.run(x, train, |_, _| {})
    }

    /// Runs the steps, handing every value a step produces (slot, tensor) to `seen`.
    fn run(&self, x: &Tensor, train: bool, seen: impl FnMut(usize, &Tensor)) -> Result<Tensor, LowerError> {
        self.run_steps(x, train, None, seen)
    }

    /// [`LoweredModel::run`], optionally with a spliced stretch replaced (splice.rs).
    fn run_steps(
        &self,
        x: &Tensor,
        train: bool,
        mut splice: Option<(&Splice, &mut Replacement)>,
        mut seen: impl FnMut(usize, &Tensor),
    ) -> Result<Tensor, LowerError> {
        let mut values: Vec<Option<Tensor>> = (0..self.slot_count).map(|_| None).collect();
        for (slot, t) in &self.bound {
            values[*slot] = Some(t.shallow_clone());
        }
        let x = x.f_to_device(self.vs.device())?;
        seen(self.input_slot, &x);
        values[self.input_slot] = Some(x);
        for (index, step) in self.steps.iter().enumerate() {
            if let Some((plan, replacement)) = splice.as_mut() {
                match Self::splice_step(plan, index) {
                    splice::SpliceStep::Run => {}
                    skipped => {
                        if let splice::SpliceStep::Replace { entry, target } = skipped {
                            let input = values[entry].as_ref().ok_or_else(|| LowerError::Tensor {
                                tensor: format!("#{entry}"),
                                reason: "the spliced stretch's entry was not computed".into(),
                            })?;
                            let value = replacement(input)?;
                            seen(target, &value);
                            values[target] = Some(value);
                        }
                        for slot in &step.release {
                            values[*slot] = None;
                        }
                        continue;
                    }
                }
            }
            let args: Vec<Option<&Tensor>> = step.inputs.iter().map(|s| s.and_then(|s| values[s].as_ref())).collect();
            let outs = exec::run(&step.op, &args, train).map_err(|e| match e {
                exec::ExecError::Torch(source) => LowerError::Run { node: step.node.clone(), op_type: step.op_type.clone(), source },
                exec::ExecError::Invalid(reason) => LowerError::Node { node: step.node.clone(), op_type: step.op_type.clone(), reason },
            })?;
            for (slot, t) in step.outputs.iter().zip(outs) {
                seen(*slot, &t);
                values[*slot] = Some(t);
            }
            for slot in &step.release {
                values[*slot] = None;
            }
        }
        values[self.output_slot].take().ok_or_else(|| LowerError::Tensor {
            tensor: self.output_name.clone(),
            reason: "the graph output was not computed".into(),
        })
    }

    /// Eval-mode forward without gradient tracking.
    pub fn predict(&self, x: &Tensor) -> Result<Tensor, LowerError> {
        tch::no_grad(|| self.forward_t(x, false))
    }

    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    pub fn var_store_mut(&mut self) -> &mut nn::VarStore {
        &mut self.vs
    }

    /// Trainable weights and BatchNormalization buffers, with their ONNX initializer names.
    pub fn weights(&self) -> &[Weight] {
        &self.weights
    }

    pub fn input_name(&self) -> &str {
        &self.input_name
    }

    pub fn output_name(&self) -> &str {
        &self.output_name
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }
}

fn single(names: &[String], is_input: bool) -> Result<String, LowerError> {
    match names {
        [one] => Ok(one.clone()),
        _ if is_input => Err(LowerError::InputCount { count: names.len(), names: names.join(", ") }),
        _ => Err(LowerError::OutputCount { count: names.len(), names: names.join(", ") }),
    }
}

/// Which constant tensors are weights, from the operator inputs that consume them. Tensors
/// absent from the map are plain constants.
pub fn weight_roles(graph: &Graph, is_float_constant: impl Fn(&str) -> bool) -> HashMap<String, Role> {
    let mut roles: HashMap<String, Role> = HashMap::new();
    for node in &graph.nodes {
        let positions: &[(usize, Role)] = match node.op_type.as_str() {
            "Conv" => &[(1, Role::Trainable), (2, Role::Trainable)],
            "Gemm" => &[(1, Role::Trainable), (2, Role::Trainable)],
            "MatMul" => &[(0, Role::Trainable), (1, Role::Trainable)],
            "BatchNormalization" => &[(1, Role::Trainable), (2, Role::Trainable), (3, Role::Buffer), (4, Role::Buffer)],
            _ => &[],
        };
        for &(i, role) in positions {
            let Some(name) = node.inputs.get(i).filter(|n| !n.is_empty()) else { continue };
            if is_float_constant(name) {
                let entry = roles.entry(name.clone()).or_insert(role);
                *entry = (*entry).max(role);
            }
        }
    }
    roles
}

/// A VarStore-safe variable name (tch rejects '.'), unique through its index, readable through
/// the ONNX name it keeps.
fn variable_name(index: usize, onnx_name: &str) -> String {
    let clean: String = onnx_name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("w{index:04}_{clean}")
}

fn to_torch(t: &OnnxTensor, device: Device) -> Result<Tensor, tch::TchError> {
    let tensor = match &t.data {
        TensorData::Float(v) => Tensor::f_from_slice(v)?,
        TensorData::Int(v) => Tensor::f_from_slice(v)?,
    };
    tensor.f_reshape(t.dims.as_slice())?.f_to_device(device)
}

/// Name → slot index of the values a run holds.
#[derive(Default)]
struct Slots(HashMap<String, usize>);

impl Slots {
    fn get(&mut self, name: &str) -> usize {
        let next = self.0.len();
        *self.0.entry(name.to_string()).or_insert(next)
    }

    fn count(&self) -> usize {
        self.0.len()
    }
}

/// Marks, for each step, the slots it reads for the last time (never constants, weights, the
/// input or the output), so a run keeps only live activations.
fn plan_releases(steps: &mut [Step], bound: &[(usize, Tensor)], input_slot: usize, output_slot: usize) {
    let mut last_use: HashMap<usize, usize> = HashMap::new();
    for (i, step) in steps.iter().enumerate() {
        for slot in step.inputs.iter().flatten() {
            last_use.insert(*slot, i);
        }
    }
    let keep: std::collections::HashSet<usize> =
        bound.iter().map(|(s, _)| *s).chain([input_slot, output_slot]).collect();
    for (slot, i) in last_use {
        if !keep.contains(&slot) {
            steps[i].release.push(slot);
        }
    }
}

