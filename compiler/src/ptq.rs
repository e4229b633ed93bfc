//! Post-training quantization (PTQ): a float graph -> a QDQ graph the lowering compiles.
//!
//! [`quantize`] calibrates activation ranges by running the reference interpreter on sample
//! inputs, then rewrites the graph the way onnxruntime's `quantize_static` lays out a QDQ
//! model (int8 activations per tensor, int8 symmetric weights per output channel):
//!
//! * **Layers** are `MatMul` and `Gemm` nodes whose `B` is a 2-D constant, and `Conv` nodes
//!   whose weights are a constant (float, or already behind a `DequantizeLinear`), as long as
//!   their `A` operand (the convolution's input) derives from the graph input through layers
//!   and operators the lowering runs only: elementwise and shape-only operators (below),
//!   `MaxPool`, quantize/dequantize and the quantized operators, each with one computed
//!   input. The first other operator (e.g. `GlobalAveragePool`) starts the float tail that the
//!   host runs after the last quantized layer: layers after it stay float, as does every node
//!   that is not a layer.
//! * **Gemm normalisation** (before calibration): a constant `C` moves into an `Add` after the
//!   `Gemm` (scaled by `beta`), and `alpha` is folded into constant float weights, so every
//!   layer is `A x B` followed by an elementwise epilogue. `transB` is kept (the weights are
//!   then quantized per row, axis 0); `transA` is left alone.
//! * **Epilogue and boundary**: from a layer's output, the chain follows single consumers that
//!   are elementwise operators with constant other operands (`Add`, `Sub`, `Mul`, `Div`,
//!   `Relu`, `Clip`, `BatchNormalization`) or shape-only operators (`Identity`, `Flatten`,
//!   `Reshape`, `Squeeze`, `Unsqueeze`). The layer's boundary is the output of the last
//!   elementwise node of that chain (the product itself if there is none). A boundary gets
//!   `QuantizeLinear -> DequantizeLinear`, except when its chain reaches a graph output: that
//!   output stays float (the lowering returns the int32 accumulators and runs the float tail on
//!   the host), or when it already feeds a `QuantizeLinear`.
//! * **A operands**: the `A` input of each layer is traced back through shape-only operators
//!   to its origin. If the origin is not already the output of a `DequantizeLinear` (or a
//!   quantized boundary or pooling), it gets `QuantizeLinear -> DequantizeLinear`, and every
//!   consumer of the origin reads the dequantized value (one quantization per tensor, as
//!   onnxruntime does).
//!   When the graph input flows into the first layer through shape-only operators, this is the
//!   quantizer of the graph input. Float pre-processing between the input and the first layer
//!   (e.g. `Sub` mean, `Div` std) stays before the quantizer: the lowering runs it on the host,
//!   and it could not run a float operator after the input's quantizer.
//! * **Max pooling**: a `MaxPool` whose input derives (through shape-only operators or other
//!   poolings) from a value the pass quantizes gets `QuantizeLinear -> DequantizeLinear` with
//!   the scale and zero point constants of that value (max commutes with the monotone
//!   quantization, so this requantization is exact), unless it already feeds a
//!   `QuantizeLinear` or nothing reads it. The lowering folds such a pooling into the
//!   convolution before it.
//! * **Weights**: each float constant `B` (a convolution's `W`) becomes `DequantizeLinear(int8
//!   weights, per-channel scale, zero point 0, axis = output-channel axis)` with
//!   [`weight_scale`] and [`quantize_weight`]; convolution weights `[cout, cin, kh, kw]` are
//!   quantized per output channel (axis 0). Biases of `MatMul`/`Gemm` layers stay float
//!   constants of their `Add`s: the lowering evaluates the epilogue exactly. A convolution's
//!   float bias becomes int32 as onnxruntime quantizes it: `round_half_even(b / (x_scale *
//!   w_scale[c]))` (f32 arithmetic) behind a `DequantizeLinear` with those scales (axis 0,
//!   zero point 0), which the lowering adds to the accumulators.
//!
//! **Calibration**: each calibration tensor is one input of the graph (shape and type exactly
//! those of the graph input), run one by one with [`interp::run_all`]. For every value to
//! quantize the pass collects the minimum and maximum over all elements of all runs
//! ([`Calib::MinMax`]), or, for [`Calib::Percentile`]`(p)`, also every `|x|`: with `T` the
//! nearest-rank `p`-th percentile of those absolute values (the smallest `|x|` such that at
//! least `p`% of them are `<= |x|`), the range is the min/max clipped to `[-T, T]`. The range
//! becomes a scale and zero point with [`activation_qparams`], onnxruntime's `compute_scale_zp`.

use crate::interp::{self, InterpError};
use crate::ir::{Graph, Node, Op, ValueId};
use crate::tensor::{DType, Tensor, TensorData};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// How activation ranges are calibrated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Calib {
    /// Minimum and maximum over every calibration sample.
    MinMax,
    /// Min/max clipped to `[-T, T]`, `T` the given percentile (in `(0, 100]`, e.g. 99.99) of
    /// `|x|` over every calibration sample.
    Percentile(f32),
}

/// Options of [`quantize`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PtqOptions {
    pub method: Calib,
    /// int8 activations (true, the default) or uint8 (false). Weights are always int8.
    pub activation_signed: bool,
}

impl Default for PtqOptions {
    fn default() -> Self {
        PtqOptions {
            method: Calib::MinMax,
            activation_signed: true,
        }
    }
}

/// Why a graph could not be quantized.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PtqError {
    #[error("invalid options: {0}")]
    Options(String),
    #[error("post-training quantization needs at least one calibration input")]
    NoCalibration,
    #[error("post-training quantization handles single-input graphs; this one has {0} inputs")]
    InputCount(usize),
    #[error("calibration tensor {index}: {message}")]
    CalibInput { index: usize, message: String },
    #[error("calibration tensor {index}: {source}")]
    Interp {
        index: usize,
        #[source]
        source: InterpError,
    },
    #[error("value '{name}': {message}")]
    Value { name: String, message: String },
    #[error("node '{node}' ({op}): {message}")]
    Node {
        node: String,
        op: &'static str,
        message: String,
    },
}

/// Scale and zero point of an activation with calibrated range `[min, max]`, exactly as
/// onnxruntime's `compute_scale_zp` (asymmetric): the range is widened to include 0, `scale =
/// f32(f64(max - min) / 255)` (`max - min` in f32, as numpy computes it on float32 arrays),
/// `zero_point = round_half_even(qmin - min / scale)` in f64 with the unrounded scale, clamped
/// to the type's range; `qmin` is -128 for int8 (`signed`) and 0 for uint8. A range narrower
/// than the smallest normal f32 gives scale 1 and zero point 0. `min` and `max` must be finite.
pub fn activation_qparams(min: f32, max: f32, signed: bool) -> (f32, i32) {
    let (qmin, qmax) = if signed { (-128i32, 127i32) } else { (0, 255) };
    let lo = min.min(0.0);
    let hi = max.max(0.0);
    let dr = f64::from(hi - lo);
    let scale = dr / f64::from(qmax - qmin);
    if !scale.is_finite() || scale < f64::from(f32::MIN_POSITIVE) {
        return (1.0, 0);
    }
    let zp = (f64::from(qmin) - f64::from(lo) / scale).round_ties_even();
    let zp = zp.clamp(f64::from(qmin), f64::from(qmax)) as i32;
    (scale as f32, zp)
}

/// Symmetric int8 weight scale of one output channel with largest magnitude `absmax`:
/// `absmax / 127` (onnxruntime: `f32(f64(2 absmax) / 254)`, the same number); 1 for an
/// all-zero channel (a scale below the smallest normal f32).
pub fn weight_scale(absmax: f32) -> f32 {
    let s = (f64::from(absmax) * 2.0 / 254.0) as f32;
    if s >= f32::MIN_POSITIVE && s.is_finite() {
        s
    } else {
        1.0
    }
}

/// One weight: `round_half_even(w / scale)` (f32 division) clamped to `[-127, 127]`.
pub fn quantize_weight(w: f32, scale: f32) -> i8 {
    (w / scale).round_ties_even().clamp(-127.0, 127.0) as i8
}

/// Quantizes `g` after calibrating on `calib` (one tensor per run of the graph's single input).
/// See the module documentation for what is quantized and how.
pub fn quantize(g: &Graph, calib: &[Tensor], opts: &PtqOptions) -> Result<Graph, PtqError> {
    if let Calib::Percentile(p) = opts.method {
        if !(p > 0.0 && p <= 100.0) {
            return Err(PtqError::Options(format!(
                "the percentile must be in (0, 100], not {p}"
            )));
        }
    }
    if g.inputs.len() != 1 {
        return Err(PtqError::InputCount(g.inputs.len()));
    }
    if calib.is_empty() {
        return Err(PtqError::NoCalibration);
    }
    let mut names = Names::new(g);
    let g = normalize_gemms(g, &chain_layers(g), &mut names)?;
    let plan = plan(&g);
    let ranges = calibrate(&g, calib, &plan.targets, opts.method)?;
    let q = rewrite(&g, &plan, &ranges, opts.activation_signed, &mut names)?;
    Ok(compact(&q))
}

// ---------------------------------------------------------------------------------------------
// Graph analysis

/// Fresh names for values and nodes.
struct Names {
    used: HashSet<String>,
}

impl Names {
    fn new(g: &Graph) -> Names {
        let mut used: HashSet<String> = g.values.iter().map(|v| v.name.clone()).collect();
        used.extend(g.nodes.iter().map(|n| n.name.clone()));
        Names { used }
    }

    fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut i = 1;
        while self.used.contains(&name) {
            name = format!("{base}_{i}");
            i += 1;
        }
        self.used.insert(name.clone());
        name
    }
}

fn is_elementwise(op: &Op) -> bool {
    matches!(
        op,
        Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Relu | Op::Clip | Op::BatchNormalization { .. }
    )
}

fn is_shape_only(op: &Op) -> bool {
    matches!(
        op,
        Op::Identity | Op::Flatten { .. } | Op::Reshape | Op::Squeeze { .. } | Op::Unsqueeze { .. }
    )
}

/// Operators the lowering runs (or folds into a layer) between layers, besides the layers
/// themselves: the accelerated part of a graph is made of these.
fn is_lowered(op: &Op) -> bool {
    is_elementwise(op)
        || is_shape_only(op)
        || matches!(
            op,
            Op::MaxPool(_)
                | Op::AveragePool(_)
                | Op::GlobalAveragePool
                | Op::QuantizeLinear { .. }
                | Op::DequantizeLinear { .. }
                | Op::QLinearMatMul
                | Op::QLinearConv(_)
                | Op::MatMulInteger
                | Op::ConvInteger(_)
        )
}

/// The weights of a layer, if `n` is one.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Weights {
    /// A float constant, quantized per channel along `axis`.
    Float { value: ValueId, axis: usize },
    /// Already behind a DequantizeLinear.
    Quantized,
}

/// `MatMul` and `Gemm` with 2-D weights `B` (channels along the output axis), `Conv` with
/// weights `[cout, cin/group, kh, kw]` (channels along axis 0).
fn layer_weights(g: &Graph, n: &Node) -> Option<Weights> {
    let (axis, rank_ok): (usize, fn(usize) -> bool) = match n.op {
        Op::MatMul => (1, |r| r == 2),
        Op::Gemm { trans_b, .. } => (usize::from(!trans_b), |r| r == 2),
        Op::Conv(_) => (0, |r| r >= 3),
        _ => return None,
    };
    let b = n.input(1)?;
    n.input(0)?;
    if let Some(t) = g.constant(b) {
        return (rank_ok(t.shape.len()) && t.dtype() == DType::F32)
            .then_some(Weights::Float { value: b, axis });
    }
    let p = g.producer(b)?;
    let pn = &g.nodes[p];
    let w = pn.input(0)?;
    (matches!(pn.op, Op::DequantizeLinear { .. })
        && g.constant(w).is_some_and(|t| rank_ok(t.shape.len())))
    .then_some(Weights::Quantized)
}

/// The layers the pass quantizes, by node index: layers whose `A` operand derives from the
/// graph input through layers and lowered operators ([`is_lowered`], one computed input
/// each) only. A layer after anything else (e.g. `GlobalAveragePool`) is part of the float
/// tail that the host runs, and stays float, as does everything after it.
fn chain_layers(g: &Graph) -> Vec<bool> {
    chain(g).0
}

/// [`chain_layers`], and every node on that chain (layers and lowered operators).
fn chain(g: &Graph) -> (Vec<bool>, Vec<bool>) {
    let mut on: HashSet<ValueId> = g.inputs.iter().copied().collect();
    let mut layers = vec![false; g.nodes.len()];
    let mut nodes = vec![false; g.nodes.len()];
    for (ni, n) in g.nodes.iter().enumerate() {
        let on_chain = if layer_weights(g, n).is_some() {
            let a = n.input(0).is_some_and(|a| on.contains(&a));
            layers[ni] = a;
            a
        } else if matches!(n.op, Op::Transpose { .. }) {
            // Host pre-processing of the graph input (e.g. a Gemm's transA).
            n.input(0).is_some_and(|x| g.inputs.contains(&x))
        } else {
            let data = computed_inputs(g, n);
            is_lowered(&n.op) && data.len() == 1 && on.contains(&data[0])
        };
        if on_chain {
            nodes[ni] = true;
            on.extend(n.outputs.iter().copied());
        }
    }
    (layers, nodes)
}

/// The computed (non-constant) inputs of `n`.
fn computed_inputs(g: &Graph, n: &Node) -> Vec<ValueId> {
    n.inputs
        .iter()
        .flatten()
        .copied()
        .filter(|&i| g.constant(i).is_none())
        .collect()
}

fn consumer_map(g: &Graph) -> HashMap<ValueId, Vec<usize>> {
    let mut m: HashMap<ValueId, Vec<usize>> = HashMap::new();
    for (ni, n) in g.nodes.iter().enumerate() {
        let mut seen = BTreeSet::new();
        for &i in n.inputs.iter().flatten() {
            if seen.insert(i) {
                m.entry(i).or_default().push(ni);
            }
        }
    }
    m
}

fn producer_map(g: &Graph) -> HashMap<ValueId, usize> {
    let mut m = HashMap::new();
    for (ni, n) in g.nodes.iter().enumerate() {
        for &o in &n.outputs {
            m.insert(o, ni);
        }
    }
    m
}

/// Gemm with a constant C -> Gemm + Add(beta C); alpha folded into constant float weights.
/// Only the Gemms in `layers` (from [`chain_layers`]) change.
fn normalize_gemms(g: &Graph, layers: &[bool], names: &mut Names) -> Result<Graph, PtqError> {
    let mut out = g.clone();
    out.nodes.clear();
    for (ni, n) in g.nodes.iter().enumerate() {
        let Op::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        } = n.op
        else {
            out.nodes.push(n.clone());
            continue;
        };
        if !layers[ni] {
            out.nodes.push(n.clone());
            continue;
        }
        let layer = layer_weights(g, n);
        let mut n = n.clone();
        let mut alpha_now = alpha;
        // transA: an explicit Transpose of A (on the graph input, the host does it before
        // quantizing; a layer's rows are A's rows).
        if trans_a {
            let a = n.input(0).expect("layer_weights checked A");
            let av = g.value(a).clone();
            let shape: Vec<usize> = av.shape.iter().rev().copied().collect();
            let at = out.add_value(
                &names.fresh(&format!("{}_transposed", av.name)),
                shape,
                av.dtype,
            );
            out.nodes.push(Node {
                name: names.fresh(&format!("{}_transpose_a", n.name)),
                op: Op::Transpose { perm: vec![1, 0] },
                inputs: vec![Some(a)],
                outputs: vec![at],
            });
            n.inputs[0] = Some(at);
        }
        if alpha != 1.0 {
            if let Some(Weights::Float { value: b, .. }) = layer {
                let t = &g.consts[&b];
                let v: Vec<f32> = t.to_f32_vec().iter().map(|&x| alpha * x).collect();
                let name = names.fresh(&format!("{}_alpha", g.value(b).name));
                let id = add_const(&mut out, &name, t.shape.clone(), TensorData::F32(v));
                n.inputs[1] = Some(id);
                alpha_now = 1.0;
            }
        }
        let c = n
            .input(2)
            .filter(|&c| layer.is_some() && g.constant(c).is_some_and(|t| t.dtype() == DType::F32));
        if let Some(c) = c {
            let t = &g.consts[&c];
            let c_id = if beta == 1.0 {
                c
            } else {
                let v: Vec<f32> = t.to_f32_vec().iter().map(|&x| beta * x).collect();
                let name = names.fresh(&format!("{}_beta", g.value(c).name));
                add_const(&mut out, &name, t.shape.clone(), TensorData::F32(v))
            };
            let y = n.outputs[0];
            let yv = g.value(y).clone();
            let mm = out.add_value(
                &names.fresh(&format!("{}_product", yv.name)),
                yv.shape.clone(),
                yv.dtype,
            );
            n.inputs.truncate(2);
            n.outputs = vec![mm];
            n.op = Op::Gemm {
                alpha: alpha_now,
                beta: 1.0,
                trans_a: false,
                trans_b,
            };
            let add = Node {
                name: names.fresh(&format!("{}_bias", n.name)),
                op: Op::Add,
                inputs: vec![Some(mm), Some(c_id)],
                outputs: vec![y],
            };
            out.nodes.push(n);
            out.nodes.push(add);
        } else {
            n.op = Op::Gemm {
                alpha: alpha_now,
                beta,
                trans_a: false,
                trans_b,
            };
            out.nodes.push(n);
        }
    }
    Ok(out)
}

fn add_const(g: &mut Graph, name: &str, shape: Vec<usize>, data: TensorData) -> ValueId {
    let t = Tensor { shape, data };
    let id = g.add_value(name, t.shape.clone(), t.dtype());
    g.consts.insert(id, t);
    id
}

/// What the rewrite quantizes.
#[derive(Debug)]
struct Plan {
    /// The layers, by node index ([`chain_layers`]).
    layers: Vec<bool>,
    /// Values that get QuantizeLinear -> DequantizeLinear with calibrated parameters.
    targets: BTreeSet<ValueId>,
    /// MaxPool outputs that get QuantizeLinear -> DequantizeLinear with the parameters of the
    /// target their input derives from (max commutes with the monotone quantization, so
    /// requantizing is exact): output -> that target.
    pooled: BTreeMap<ValueId, ValueId>,
}

/// The values to quantize.
fn plan(g: &Graph) -> Plan {
    let consumers = consumer_map(g);
    let producers = producer_map(g);
    let outputs: HashSet<ValueId> = g.outputs.iter().copied().collect();
    let cons = |v: ValueId| consumers.get(&v).map(Vec::as_slice).unwrap_or(&[]);
    let is_float = |v: ValueId| g.value(v).dtype == DType::F32 && g.constant(v).is_none();
    let mut targets = BTreeSet::new();
    let (chain, on_chain) = chain(g);
    let layers: Vec<usize> = (0..g.nodes.len()).filter(|&ni| chain[ni]).collect();
    // Operators the lowering gives a layer of their own: average pooling, and in a graph
    // without any matrix product the first elementwise operator of each chain. Their inputs
    // and outputs are quantized like a layer's, even at a graph output (else the host would
    // compute them).
    let elementwise_source = |mut v: ValueId| loop {
        match producers.get(&v).map(|&p| &g.nodes[p]) {
            Some(p) if is_shape_only(&p.op) => match p.input(0) {
                Some(x) => v = x,
                None => return false,
            },
            Some(p) => return is_elementwise(&p.op),
            None => return false,
        }
    };
    let pseudo: BTreeSet<usize> = (0..g.nodes.len())
        .filter(|&ni| on_chain[ni] && !chain[ni])
        .filter(|&ni| {
            let n = &g.nodes[ni];
            matches!(n.op, Op::AveragePool(_) | Op::GlobalAveragePool)
                || (layers.is_empty()
                    && is_elementwise(&n.op)
                    && !computed_inputs(g, n)
                        .first()
                        .is_some_and(|&x| elementwise_source(x)))
        })
        .collect();
    if layers.is_empty() && pseudo.is_empty() {
        // Only shape changes and max pooling: the program copies (or pools) the quantized input.
        for &i in &g.inputs {
            if is_float(i) && cons(i).iter().any(|&c| on_chain[c]) {
                targets.insert(i);
            }
        }
    }
    // Layer boundaries.
    for &ni in layers.iter().chain(&pseudo) {
        let mut cur = g.nodes[ni].outputs[0];
        let mut boundary = cur;
        let mut keep_float = false;
        loop {
            if outputs.contains(&cur) {
                keep_float = !pseudo.contains(&ni);
                break;
            }
            let [next] = cons(cur) else { break };
            let nn = &g.nodes[*next];
            let data = computed_inputs(g, nn);
            if data != [cur] || nn.outputs.len() != 1 {
                break;
            }
            if is_elementwise(&nn.op) {
                cur = nn.outputs[0];
                boundary = cur;
            } else if is_shape_only(&nn.op) && nn.input(0) == Some(cur) {
                cur = nn.outputs[0];
            } else {
                if matches!(nn.op, Op::QuantizeLinear { .. }) {
                    keep_float = true; // already quantized
                }
                break;
            }
        }
        if !keep_float && is_float(boundary) {
            targets.insert(boundary);
        }
    }
    // A operands, and max pooling of quantized values, in graph order.
    let mut pooled: BTreeMap<ValueId, ValueId> = BTreeMap::new();
    // The target `v` derives from through shape-only operators and pooling, if any.
    let source = |mut v: ValueId, targets: &BTreeSet<ValueId>, pooled: &BTreeMap<_, _>| loop {
        if targets.contains(&v) {
            return Some(v);
        }
        if let Some(&t) = pooled.get(&v) {
            return Some(t);
        }
        match producers.get(&v).map(|&p| &g.nodes[p]) {
            Some(p) if is_shape_only(&p.op) => v = p.input(0)?,
            _ => return None,
        }
    };
    for (ni, n) in g.nodes.iter().enumerate() {
        if let Op::MaxPool(_) = n.op {
            let (Some(x), &[y]) = (n.input(0), &n.outputs[..]) else {
                continue;
            };
            let feeds_quantizer = cons(y)
                .iter()
                .any(|&c| matches!(g.nodes[c].op, Op::QuantizeLinear { .. }));
            if let Some(t) = source(x, &targets, &pooled) {
                if !cons(y).is_empty() && !feeds_quantizer && is_float(y) {
                    pooled.insert(y, t);
                }
            }
            continue;
        }
        if !chain[ni] && !pseudo.contains(&ni) {
            continue;
        }
        let Some(mut v) = computed_inputs(g, n).first().copied() else {
            continue;
        };
        let quantized = loop {
            if targets.contains(&v) || pooled.contains_key(&v) {
                break true;
            }
            match producers.get(&v).map(|&p| &g.nodes[p]) {
                Some(p) if matches!(p.op, Op::DequantizeLinear { .. }) => break true,
                Some(p) if is_shape_only(&p.op) => match p.input(0) {
                    Some(x) => v = x,
                    None => break false,
                },
                _ => break false,
            }
        };
        if !quantized && is_float(v) {
            targets.insert(v);
        }
    }
    Plan {
        layers: chain,
        targets,
        pooled,
    }
}

// ---------------------------------------------------------------------------------------------
// Calibration

#[derive(Debug, Clone)]
struct Stat {
    min: f32,
    max: f32,
    /// Every |x|, for the percentile method.
    abs: Vec<f32>,
}

/// Calibrated range of every target value.
fn calibrate(
    g: &Graph,
    calib: &[Tensor],
    targets: &BTreeSet<ValueId>,
    method: Calib,
) -> Result<BTreeMap<ValueId, (f32, f32)>, PtqError> {
    let input = g.value(g.inputs[0]);
    let keep_abs = matches!(method, Calib::Percentile(_));
    let mut stats: BTreeMap<ValueId, Stat> = targets
        .iter()
        .map(|&v| {
            (
                v,
                Stat {
                    min: f32::INFINITY,
                    max: f32::NEG_INFINITY,
                    abs: Vec::new(),
                },
            )
        })
        .collect();
    for (index, t) in calib.iter().enumerate() {
        if t.shape != input.shape || t.dtype() != input.dtype {
            return Err(PtqError::CalibInput {
                index,
                message: format!(
                    "is {} {:?} but the graph input '{}' is {} {:?}",
                    t.dtype(),
                    t.shape,
                    input.name,
                    input.dtype,
                    input.shape
                ),
            });
        }
        let env = interp::run_all(g, std::slice::from_ref(t))
            .map_err(|source| PtqError::Interp { index, source })?;
        for (&v, s) in stats.iter_mut() {
            let x = env.get(v).and_then(|x| x.as_ref());
            let Some(TensorData::F32(x)) = x.map(|x| &x.data) else {
                return Err(PtqError::Value {
                    name: g.value(v).name.clone(),
                    message: "is not computed as float32".into(),
                });
            };
            for &e in x {
                if !e.is_finite() {
                    return Err(PtqError::Value {
                        name: g.value(v).name.clone(),
                        message: format!("calibration tensor {index} makes it {e}"),
                    });
                }
                s.min = s.min.min(e);
                s.max = s.max.max(e);
            }
            if keep_abs {
                s.abs.extend(x.iter().map(|e| e.abs()));
            }
        }
    }
    Ok(stats
        .into_iter()
        .map(|(v, mut s)| {
            let (mut lo, mut hi) = (s.min, s.max);
            if let Calib::Percentile(p) = method {
                if let Some(t) = percentile(&mut s.abs, p) {
                    lo = lo.max(-t);
                    hi = hi.min(t);
                }
            }
            (v, (lo, hi))
        })
        .collect())
}

/// Nearest-rank percentile: the element of rank `ceil(p/100 * n)` (1-based) in ascending order.
fn percentile(v: &mut [f32], p: f32) -> Option<f32> {
    if v.is_empty() {
        return None;
    }
    let n = v.len();
    let rank = (f64::from(p) / 100.0 * n as f64).ceil() as usize;
    let idx = rank.clamp(1, n) - 1;
    let (_, x, _) = v.select_nth_unstable_by(idx, f32::total_cmp);
    Some(*x)
}

// ---------------------------------------------------------------------------------------------
// Rewriting

fn rewrite(
    g: &Graph,
    plan: &Plan,
    ranges: &BTreeMap<ValueId, (f32, f32)>,
    signed: bool,
    names: &mut Names,
) -> Result<Graph, PtqError> {
    let mut out = g.clone();
    out.nodes.clear();
    // Original value -> its dequantized replacement for consumers.
    let mut repl: HashMap<ValueId, ValueId> = HashMap::new();
    // Original value -> the scale and zero point constants of its quantizer.
    let mut params: HashMap<ValueId, (ValueId, ValueId)> = HashMap::new();
    // (float weights, axis) -> dequantized weights.
    let mut weights: HashMap<(ValueId, usize), ValueId> = HashMap::new();
    // Quantizes `v` if the plan says so.
    let quantize_value = |out: &mut Graph,
                          v: ValueId,
                          params: &mut HashMap<ValueId, (ValueId, ValueId)>,
                          repl: &mut HashMap<ValueId, ValueId>,
                          names: &mut Names| {
        let sz = if let Some(&(lo, hi)) = ranges.get(&v) {
            Some(qparams_consts(out, v, lo, hi, signed, names))
        } else {
            plan.pooled.get(&v).map(|t| params[t])
        };
        if let Some((s, z)) = sz {
            params.insert(v, (s, z));
            let dq = qdq(out, v, s, z, names);
            repl.insert(v, dq);
        }
    };
    for &i in &g.inputs {
        quantize_value(&mut out, i, &mut params, &mut repl, names);
    }
    for (ni, n) in g.nodes.iter().enumerate() {
        let mut node = n.clone();
        for i in node.inputs.iter_mut().flatten() {
            if let Some(&r) = repl.get(i) {
                *i = r;
            }
        }
        let node_error = |message: String| PtqError::Node {
            node: n.name.clone(),
            op: n.op.op_type(),
            message,
        };
        if plan.layers[ni] {
            if let Some(Weights::Float { value, axis }) = layer_weights(g, n) {
                let dq = match weights.get(&(value, axis)) {
                    Some(&dq) => dq,
                    None => {
                        let dq = weight_dq(&mut out, value, axis, names).map_err(node_error)?;
                        weights.insert((value, axis), dq);
                        dq
                    }
                };
                node.inputs[1] = Some(dq);
            }
            if let (Op::Conv(_), Some(b)) = (&n.op, n.input(2)) {
                if g.constant(b).is_some_and(|t| t.dtype() == DType::F32) {
                    node.inputs[2] = Some(bias_dq(&mut out, &node, b, names).map_err(node_error)?);
                }
            }
        }
        out.nodes.push(node);
        for &o in &n.outputs {
            quantize_value(&mut out, o, &mut params, &mut repl, names);
        }
    }
    // A quantized graph output: the graph returns its dequantized value, under its name.
    for o in out.outputs.iter_mut() {
        if let Some(&dq) = repl.get(o) {
            let name = std::mem::take(&mut out.values[*o].name);
            out.values[*o].name = names.fresh(&format!("{name}_float"));
            out.values[dq].name = name;
            *o = dq;
        }
    }
    Ok(out)
}

/// Scale and zero point constants of an activation with calibrated range `[lo, hi]`.
fn qparams_consts(
    g: &mut Graph,
    v: ValueId,
    lo: f32,
    hi: f32,
    signed: bool,
    names: &mut Names,
) -> (ValueId, ValueId) {
    let (scale, zp) = activation_qparams(lo, hi, signed);
    let zp_data = if signed {
        TensorData::I8(vec![zp as i8])
    } else {
        TensorData::U8(vec![zp as u8])
    };
    let base = g.value(v).name.clone();
    let s = add_const(
        g,
        &names.fresh(&format!("{base}_scale")),
        vec![],
        TensorData::F32(vec![scale]),
    );
    let z = add_const(
        g,
        &names.fresh(&format!("{base}_zero_point")),
        vec![],
        zp_data,
    );
    (s, z)
}

/// Appends QuantizeLinear -> DequantizeLinear of `v` (per tensor, with the scale and zero
/// point constants `s` and `z`) and returns the dequantized value.
fn qdq(g: &mut Graph, v: ValueId, s: ValueId, z: ValueId, names: &mut Names) -> ValueId {
    let val = g.value(v).clone();
    let qdt = g.consts[&z].dtype();
    let base = val.name.clone();
    let q = g.add_value(
        &names.fresh(&format!("{base}_quantized")),
        val.shape.clone(),
        qdt,
    );
    let dq = g.add_value(
        &names.fresh(&format!("{base}_dequantized")),
        val.shape.clone(),
        DType::F32,
    );
    g.nodes.push(Node {
        name: names.fresh(&format!("{base}_QuantizeLinear")),
        op: Op::QuantizeLinear { axis: 1 },
        inputs: vec![Some(v), Some(s), Some(z)],
        outputs: vec![q],
    });
    g.nodes.push(Node {
        name: names.fresh(&format!("{base}_DequantizeLinear")),
        op: Op::DequantizeLinear { axis: 1 },
        inputs: vec![Some(q), Some(s), Some(z)],
        outputs: vec![dq],
    });
    dq
}

/// The constant scales of the DequantizeLinear that `v` comes from through shape-only
/// operators in `g`, if any.
fn dq_scales(g: &Graph, mut v: ValueId) -> Option<Vec<f32>> {
    loop {
        let n = &g.nodes[g.producer(v)?];
        match n.op {
            Op::DequantizeLinear { .. } => {
                let s = g.constant(n.input(1)?)?;
                return (s.dtype() == DType::F32).then(|| s.to_f32_vec());
            }
            ref op if is_shape_only(op) => v = n.input(0)?,
            _ => return None,
        }
    }
}

/// Quantizes the float bias `b` of the convolution `conv` (whose input and weights are
/// already dequantized values of `g`) as onnxruntime does: int32 `round_half_even(b / (x_scale
/// w_scale))` per output channel (f32 arithmetic, clamped to int32), behind a
/// DequantizeLinear with those scales (axis 0, zero point 0). The lowering adds these integers
/// to the accumulators.
fn bias_dq(g: &mut Graph, conv: &Node, b: ValueId, names: &mut Names) -> Result<ValueId, String> {
    let bname = g.value(b).name.clone();
    let x_scale = conv
        .input(0)
        .and_then(|x| dq_scales(g, x))
        .filter(|s| s.len() == 1)
        .ok_or("its input is not a per-tensor dequantized activation")?[0];
    let w_scales = conv
        .input(1)
        .and_then(|w| dq_scales(g, w))
        .ok_or("its weights are not dequantized")?;
    let t = &g.consts[&b];
    let bias = t.to_f32_vec();
    if t.shape.len() != 1 || !(w_scales.len() == 1 || w_scales.len() == bias.len()) {
        return Err(format!(
            "bias '{bname}' {:?} does not match {} weight scales",
            t.shape,
            w_scales.len()
        ));
    }
    let scales: Vec<f32> = (0..bias.len())
        .map(|c| x_scale * w_scales[c % w_scales.len()])
        .collect();
    let mut q = Vec::with_capacity(bias.len());
    for (&v, &s) in bias.iter().zip(&scales) {
        if !(v.is_finite() && s.is_normal()) {
            return Err(format!("bias '{bname}': {v} with scale {s}"));
        }
        q.push(
            f64::from((v / s).round_ties_even()).clamp(f64::from(i32::MIN), f64::from(i32::MAX))
                as i32,
        );
    }
    let n = bias.len();
    let qb = add_const(
        g,
        &names.fresh(&format!("{bname}_quantized")),
        vec![n],
        TensorData::I32(q),
    );
    let s = add_const(
        g,
        &names.fresh(&format!("{bname}_quantized_scale")),
        vec![n],
        TensorData::F32(scales),
    );
    let z = add_const(
        g,
        &names.fresh(&format!("{bname}_quantized_zero_point")),
        vec![n],
        TensorData::I32(vec![0; n]),
    );
    let dq = g.add_value(
        &names.fresh(&format!("{bname}_dequantized")),
        vec![n],
        DType::F32,
    );
    g.nodes.push(Node {
        name: names.fresh(&format!("{bname}_DequantizeLinear")),
        op: Op::DequantizeLinear { axis: 0 },
        inputs: vec![Some(qb), Some(s), Some(z)],
        outputs: vec![dq],
    });
    Ok(dq)
}

/// Appends DequantizeLinear(int8 weights, per-channel scales, zero points 0) for the float
/// constant `w`, channels along `axis`; returns the dequantized value.
fn weight_dq(g: &mut Graph, w: ValueId, axis: usize, names: &mut Names) -> Result<ValueId, String> {
    let t = g.consts[&w].clone();
    let val = g.value(w).clone();
    let Some(&n) = t.shape.get(axis) else {
        return Err(format!(
            "weights '{}' {:?} have no axis {axis}",
            val.name, t.shape
        ));
    };
    let TensorData::F32(x) = &t.data else {
        return Err(format!("weights '{}' are not float32", val.name));
    };
    if let Some(e) = x.iter().find(|e| !e.is_finite()) {
        return Err(format!("weights '{}' hold {e}", val.name));
    }
    let inner: usize = t.shape[axis + 1..].iter().product();
    let channel = |i: usize| (i / inner) % n;
    let mut absmax = vec![0f32; n];
    for (i, &e) in x.iter().enumerate() {
        let c = channel(i);
        absmax[c] = absmax[c].max(e.abs());
    }
    let scales: Vec<f32> = absmax.iter().map(|&a| weight_scale(a)).collect();
    let q: Vec<i8> = x
        .iter()
        .enumerate()
        .map(|(i, &e)| quantize_weight(e, scales[channel(i)]))
        .collect();
    let base = val.name.clone();
    let qw = add_const(
        g,
        &names.fresh(&format!("{base}_quantized")),
        t.shape.clone(),
        TensorData::I8(q),
    );
    let s = add_const(
        g,
        &names.fresh(&format!("{base}_scale")),
        vec![n],
        TensorData::F32(scales),
    );
    let z = add_const(
        g,
        &names.fresh(&format!("{base}_zero_point")),
        vec![n],
        TensorData::I8(vec![0; n]),
    );
    let dq = g.add_value(
        &names.fresh(&format!("{base}_dequantized")),
        t.shape.clone(),
        DType::F32,
    );
    g.nodes.push(Node {
        name: names.fresh(&format!("{base}_DequantizeLinear")),
        op: Op::DequantizeLinear { axis },
        inputs: vec![Some(qw), Some(s), Some(z)],
        outputs: vec![dq],
    });
    Ok(dq)
}

/// Drops values (and constants) that nothing references any more, renumbering the rest in
/// their original order.
fn compact(g: &Graph) -> Graph {
    let mut used = vec![false; g.values.len()];
    for &v in g.inputs.iter().chain(&g.outputs) {
        used[v] = true;
    }
    for n in &g.nodes {
        for &v in n.inputs.iter().flatten().chain(&n.outputs) {
            used[v] = true;
        }
    }
    let mut map = vec![usize::MAX; g.values.len()];
    let mut out = Graph {
        name: g.name.clone(),
        opset: g.opset,
        ..Default::default()
    };
    for (id, v) in g.values.iter().enumerate() {
        if used[id] {
            map[id] = out.values.len();
            out.values.push(v.clone());
            if let Some(t) = g.consts.get(&id) {
                out.consts.insert(map[id], t.clone());
            }
        }
    }
    out.inputs = g.inputs.iter().map(|&v| map[v]).collect();
    out.outputs = g.outputs.iter().map(|&v| map[v]).collect();
    out.nodes = g
        .nodes
        .iter()
        .map(|n| Node {
            name: n.name.clone(),
            op: n.op.clone(),
            inputs: n.inputs.iter().map(|i| i.map(|v| map[v])).collect(),
            outputs: n.outputs.iter().map(|&v| map[v]).collect(),
        })
        .collect();
    out
}
