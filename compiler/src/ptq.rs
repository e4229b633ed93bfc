//! Post-training quantization (PTQ): a float graph -> a QDQ graph the lowering compiles.
//!
//! [`quantize`] calibrates activation ranges by running the reference interpreter on sample
//! inputs, then rewrites the graph the way onnxruntime's `quantize_static` lays out a QDQ
//! model (int8 activations per tensor, int8 symmetric weights per output channel):
//!
//! * **Layers** are `MatMul` and `Gemm` nodes whose `B` is a 2-D constant (float, or already
//!   behind a `DequantizeLinear`). Other nodes stay as they are.
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
//!   quantized boundary), it gets `QuantizeLinear -> DequantizeLinear`, and every consumer of
//!   the origin reads the dequantized value (one quantization per tensor, as onnxruntime does).
//!   When the graph input flows into the first layer through shape-only operators, this is the
//!   quantizer of the graph input. Float pre-processing between the input and the first layer
//!   (e.g. `Sub` mean, `Div` std) stays before the quantizer: the lowering runs it on the host,
//!   and it could not run a float operator after the input's quantizer.
//! * **Weights**: each float constant `B` becomes `DequantizeLinear(int8 weights, per-channel
//!   scale, zero point 0, axis = output-channel axis)` with [`weight_scale`] and
//!   [`quantize_weight`]. Biases stay float constants of their `Add`s: the lowering evaluates
//!   the epilogue exactly.
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
    let g = normalize_gemms(g, &mut names)?;
    let targets = plan(&g);
    let ranges = calibrate(&g, calib, &targets, opts.method)?;
    let q = rewrite(&g, &ranges, opts.activation_signed, &mut names)?;
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

/// The weights of a layer, if `n` is one.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Weights {
    /// A float 2-D constant, quantized per channel along `axis`.
    Float { value: ValueId, axis: usize },
    /// Already behind a DequantizeLinear.
    Quantized,
}

fn layer_weights(g: &Graph, n: &Node) -> Option<Weights> {
    let axis = match n.op {
        Op::MatMul => 1,
        Op::Gemm { trans_b, .. } => usize::from(!trans_b),
        _ => return None,
    };
    let b = n.input(1)?;
    n.input(0)?;
    if let Some(t) = g.constant(b) {
        return (t.shape.len() == 2 && t.dtype() == DType::F32)
            .then_some(Weights::Float { value: b, axis });
    }
    let p = g.producer(b)?;
    let pn = &g.nodes[p];
    let w = pn.input(0)?;
    (matches!(pn.op, Op::DequantizeLinear { .. })
        && g.constant(w).is_some_and(|t| t.shape.len() == 2))
    .then_some(Weights::Quantized)
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
fn normalize_gemms(g: &Graph, names: &mut Names) -> Result<Graph, PtqError> {
    let mut out = g.clone();
    out.nodes.clear();
    for n in &g.nodes {
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
        let layer = layer_weights(g, n);
        let mut n = n.clone();
        let mut alpha_now = alpha;
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
                trans_a,
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
                trans_a,
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

/// The values to quantize with QuantizeLinear -> DequantizeLinear, in value order.
fn plan(g: &Graph) -> BTreeSet<ValueId> {
    let consumers = consumer_map(g);
    let producers = producer_map(g);
    let outputs: HashSet<ValueId> = g.outputs.iter().copied().collect();
    let cons = |v: ValueId| consumers.get(&v).map(Vec::as_slice).unwrap_or(&[]);
    let is_float = |v: ValueId| g.value(v).dtype == DType::F32 && g.constant(v).is_none();
    let mut targets = BTreeSet::new();
    let layers: Vec<usize> = (0..g.nodes.len())
        .filter(|&ni| layer_weights(g, &g.nodes[ni]).is_some())
        .collect();
    // Layer boundaries.
    for &ni in &layers {
        let mut cur = g.nodes[ni].outputs[0];
        let mut boundary = cur;
        let mut keep_float = false;
        loop {
            if outputs.contains(&cur) {
                keep_float = true;
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
    // A operands.
    for &ni in &layers {
        let Some(mut v) = g.nodes[ni].input(0) else {
            continue;
        };
        let quantized = loop {
            if targets.contains(&v) {
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
    targets
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
    ranges: &BTreeMap<ValueId, (f32, f32)>,
    signed: bool,
    names: &mut Names,
) -> Result<Graph, PtqError> {
    let mut out = g.clone();
    out.nodes.clear();
    // Original value -> its dequantized replacement for consumers.
    let mut repl: HashMap<ValueId, ValueId> = HashMap::new();
    // (float weights, axis) -> dequantized weights.
    let mut weights: HashMap<(ValueId, usize), ValueId> = HashMap::new();
    for &i in &g.inputs {
        if let Some(&(lo, hi)) = ranges.get(&i) {
            let dq = qdq(&mut out, i, lo, hi, signed, names);
            repl.insert(i, dq);
        }
    }
    for n in &g.nodes {
        let mut node = n.clone();
        for i in node.inputs.iter_mut().flatten() {
            if let Some(&r) = repl.get(i) {
                *i = r;
            }
        }
        if let Some(Weights::Float { value, axis }) = layer_weights(g, n) {
            let dq = match weights.get(&(value, axis)) {
                Some(&dq) => dq,
                None => {
                    let dq = weight_dq(&mut out, value, axis, names).map_err(|message| {
                        PtqError::Node {
                            node: n.name.clone(),
                            op: n.op.op_type(),
                            message,
                        }
                    })?;
                    weights.insert((value, axis), dq);
                    dq
                }
            };
            node.inputs[1] = Some(dq);
        }
        out.nodes.push(node);
        for &o in &n.outputs {
            if let Some(&(lo, hi)) = ranges.get(&o) {
                let dq = qdq(&mut out, o, lo, hi, signed, names);
                repl.insert(o, dq);
            }
        }
    }
    Ok(out)
}

/// Appends QuantizeLinear -> DequantizeLinear of `v` (per tensor) and returns the
/// dequantized value.
fn qdq(g: &mut Graph, v: ValueId, lo: f32, hi: f32, signed: bool, names: &mut Names) -> ValueId {
    let (scale, zp) = activation_qparams(lo, hi, signed);
    let val = g.value(v).clone();
    let (qdt, zp_data) = if signed {
        (DType::I8, TensorData::I8(vec![zp as i8]))
    } else {
        (DType::U8, TensorData::U8(vec![zp as u8]))
    };
    let base = val.name.clone();
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

/// Appends DequantizeLinear(int8 weights, per-channel scales, zero points 0) for the float
/// 2-D constant `w`, channels along `axis`; returns the dequantized value.
fn weight_dq(g: &mut Graph, w: ValueId, axis: usize, names: &mut Names) -> Result<ValueId, String> {
    let t = g.consts[&w].clone();
    let val = g.value(w).clone();
    let [rows, cols] = t.shape[..] else {
        return Err(format!("weights '{}' are not 2-D", val.name));
    };
    let TensorData::F32(x) = &t.data else {
        return Err(format!("weights '{}' are not float32", val.name));
    };
    if let Some(e) = x.iter().find(|e| !e.is_finite()) {
        return Err(format!("weights '{}' hold {e}", val.name));
    }
    let n = if axis == 0 { rows } else { cols };
    let channel = |i: usize| if axis == 0 { i / cols } else { i % cols };
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
