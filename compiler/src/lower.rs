//! Lowering: graph IR -> quantized IR (`qir`) -> program image.
//!
//! The graph-level step recognises the quantized layers of a network, whichever way it was
//! exported — QOperator (`QLinearMatMul`, `MatMulInteger`) or QDQ (`DequantizeLinear` ->
//! `MatMul`/`Gemm` (+ bias `Add`) (+ `Relu`/`Clip`) -> `QuantizeLinear`) — and folds zero
//! points, biases and activations into `QDense` layers. Shape-only operators (Flatten,
//! Reshape, Identity, Squeeze, Unsqueeze) between layers cost nothing: every activation is a
//! row-major matrix in DRAM. The program step lays out DRAM and emits each layer with the
//! double-buffered dense emitter (`gemm::emit_dense`).
//!
//! Numerics follow onnxruntime's fused QLinear kernels: the int32 accumulator (with the bias)
//! is converted to binary32 and multiplied by the binary32 scale `(a_scale * w_scale) /
//! y_scale`, rounded half to even, offset by the zero point and saturated; `requant fp32` does
//! exactly that in hardware.

use crate::gemm::{
    emit_conv_rows, emit_dense, emit_pack, emit_pad_pass, pack_params, pack_threshold_line,
    pack_weights, packed_row_bytes, ConvLoad, ConvRows, DenseGeom, OutMode, PackPass, PadPass,
    Tiling,
};
use crate::ir::{Graph, Node, Op, ValueId};
use crate::qir::{gcd, requant_f32, ConvGeom, QDense, QIo, QModel, QOut};
use crate::tensor::{DType, Tensor, TensorData};
use std::collections::{HashMap, HashSet};
use systole_arch::config::Precision;
use systole_arch::image::{self, Program, Quant, Role, Segment, TensorDesc};
use systole_arch::isa::{Finish, Insn, Op as IsaOp};
use systole_arch::ArchConfig;

/// Why a graph could not be lowered; lists every node at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.join("; "))]
pub struct LowerError {
    pub problems: Vec<String>,
}

fn err(msg: impl Into<String>) -> LowerError {
    LowerError {
        problems: vec![msg.into()],
    }
}

/// Quantization parameters of an 8-bit tensor in the logical domain.
#[derive(Debug, Clone, Copy, PartialEq)]
struct QParams {
    scale: f32,
    zp: i32,
    dtype: DType,
}

impl QParams {
    fn offset(&self) -> i32 {
        if self.dtype == DType::U8 {
            -128
        } else {
            0
        }
    }
    /// Logical range.
    fn range(&self) -> (i32, i32) {
        if self.dtype == DType::U8 {
            (0, 255)
        } else {
            (-128, 127)
        }
    }
    /// onnxruntime's QuantizeLinear of one value, in the logical domain.
    fn quantize(&self, x: f32) -> i32 {
        crate::interp::quantize_value(x, self.scale, self.zp, self.dtype)
    }
}

fn const_f32(g: &Graph, id: Option<ValueId>, what: &str) -> Result<Vec<f32>, LowerError> {
    let id = id.ok_or_else(|| err(format!("{what} is missing")))?;
    let t = g.constant(id).ok_or_else(|| {
        err(format!(
            "{what} ('{}') must be a constant",
            g.value(id).name
        ))
    })?;
    Ok(t.to_f32_vec())
}

fn const_ints(g: &Graph, id: Option<ValueId>, what: &str) -> Result<(Vec<i64>, DType), LowerError> {
    let id = id.ok_or_else(|| err(format!("{what} is missing")))?;
    let t = g.constant(id).ok_or_else(|| {
        err(format!(
            "{what} ('{}') must be a constant",
            g.value(id).name
        ))
    })?;
    let v = match &t.data {
        TensorData::I8(v) => v.iter().map(|&x| x as i64).collect(),
        TensorData::U8(v) => v.iter().map(|&x| x as i64).collect(),
        TensorData::I32(v) => v.iter().map(|&x| x as i64).collect(),
        TensorData::I64(v) => v.clone(),
        _ => {
            return Err(err(format!(
                "{what} must be an integer tensor, not {}",
                t.dtype_name()
            )))
        }
    };
    Ok((v, t.dtype()))
}

/// Zero point input (absent = 0) with the type of the quantized tensor.
fn zero_point(
    g: &Graph,
    id: Option<ValueId>,
    default_dtype: DType,
    what: &str,
) -> Result<(i32, DType), LowerError> {
    match id {
        None => Ok((0, default_dtype)),
        Some(_) => {
            let (v, dt) = const_ints(g, id, what)?;
            if v.iter().any(|&x| x != v[0]) {
                return Err(err(format!(
                    "{what}: per-axis zero points are not supported"
                )));
            }
            Ok((v.first().copied().unwrap_or(0) as i32, dt))
        }
    }
}

/// Zero points per output channel (a scalar broadcasts), with the quantized tensor's type.
fn zero_points(
    g: &Graph,
    id: Option<ValueId>,
    default_dtype: DType,
    n: usize,
    what: &str,
) -> Result<(Vec<i32>, DType), LowerError> {
    match id {
        None => Ok((vec![0], default_dtype)),
        Some(_) => {
            let (v, dt) = const_ints(g, id, what)?;
            if v.len() != 1 && v.len() != n {
                return Err(err(format!(
                    "{what}: {} zero points for {n} channels",
                    v.len()
                )));
            }
            Ok((v.iter().map(|&x| x as i32).collect(), dt))
        }
    }
}

fn scalar_f32(g: &Graph, id: Option<ValueId>, what: &str) -> Result<f32, LowerError> {
    let v = const_f32(g, id, what)?;
    if v.len() != 1 {
        return Err(err(format!(
            "{what}: expected a per-tensor scale, got {} values",
            v.len()
        )));
    }
    if !(v[0].is_finite() && v[0] > 0.0) {
        return Err(err(format!(
            "{what}: scale {} must be positive and finite",
            v[0]
        )));
    }
    Ok(v[0])
}

/// Per-output-channel values broadcast to n.
fn per_channel(v: Vec<f32>, n: usize, what: &str) -> Result<Vec<f32>, LowerError> {
    match v.len() {
        1 => Ok(vec![v[0]; n]),
        x if x == n => Ok(v),
        x => Err(err(format!("{what}: {x} values for {n} output channels"))),
    }
}

/// Constant weights: values, scales, zero point, shape.
type Weights = (Vec<i64>, Vec<f32>, i32, Vec<usize>);

/// The layer being built: a matrix product and the elementwise operators after it.
#[derive(Debug, Clone)]
struct Open {
    name: String,
    k: usize,
    n: usize,
    /// Weights with their zero point removed, [k][n].
    weights: Vec<i32>,
    /// Integer bias added to the accumulator (before the input zero point is folded).
    bias: Vec<i32>,
    /// Input zero point (hw domain) still to fold into the bias.
    x_zp_hw: i32,
    /// Range of the input in the hw domain (for accumulator bounds).
    x_range: (i32, i32),
    /// Per-channel scale of the matrix product's float value: x_scale * w_scale.
    mm_scale: Vec<f32>,
    /// The matrix product's output value and the elementwise nodes applied to it since.
    mm_value: ValueId,
    epi: Vec<usize>,
    /// The chain's current value, and its quantization once a QuantizeLinear produced it.
    cur: ValueId,
    cur_q: Option<QParams>,
    /// For a reopened QLinearMatMul: the accumulator first goes through its binary32
    /// requantization (scales, output quantization) and `mm_value` is that int8 output.
    prefix: Option<(Vec<f32>, QParams)>,
    /// Set for a convolution.
    conv: Option<ConvGeom>,
    /// Set for a dense layer reading a convolution's image: (h, w, c), weights in (y, x, c).
    flat_image: Option<[usize; 3]>,
    /// Integer step between the quantizer's output levels (2 for bipolar {-1, +1}).
    q_step: i32,
    /// The epilogue ends in a QONNX quantizer, whose output is already dequantized: the
    /// integers are recovered as round(y / scale) + zero point.
    q_float: bool,
    /// A layer the compiler adds (identity or depthwise-ones weights) so that an operator
    /// without a matrix product of its own runs on the accelerator: the node that started it.
    /// If no quantizer ever ends it, it is dropped and the host runs that node instead.
    synthetic: Option<usize>,
    /// The epilogue works on [rows, n] probes although the model's tensors have more dims
    /// (an identity layer over the last dim of a rank-3 tensor).
    probe_2d: bool,
    /// Gemm's `beta * C` per channel, added in binary32 to the product's float value (as
    /// onnxruntime's float Gemm adds it) before the epilogue.
    post_add: Option<Vec<f32>>,
    /// Per-row multipliers of the accumulators (see `QDense::row_mul`).
    row_mul: Option<Vec<i32>>,
}

/// What a synthetic layer computes.
#[derive(Debug, Clone)]
enum Synth {
    /// acc = x: identity weights over the channels.
    Identity,
    /// Identity over the last dim whatever the tensor's rank: a program that only copies.
    Copy,
    /// acc = sum of a pooling window (depthwise weights of ones); the divisor goes into the
    /// layer's scale.
    AvgPool {
        kernel: [usize; 2],
        stride: [usize; 2],
        pads: [usize; 4],
        dilation: [usize; 2],
        /// The divisor in the layer's scale; with `row_mul`, the least common multiple of the
        /// windows' divisors, each output pixel's accumulator multiplied by lcm / its divisor.
        div: usize,
        row_mul: Option<Vec<i32>>,
    },
}

/// What the lowering knows about a value.
#[derive(Debug, Clone, Copy)]
enum Sym {
    /// Host-side value computed from the graph input before the first quantizer.
    Pre,
    /// An 8-bit activation in DRAM (the input of the next layer), with its hw range.
    Q(QParams, (i32, i32)),
    /// Its float dequantization.
    Deq(QParams, (i32, i32)),
    /// A value inside the open layer's epilogue.
    Epi,
    /// The int32 output of MatMulInteger (ends the chain).
    Int32,
}

fn elementwise(op: &Op) -> bool {
    matches!(
        op,
        Op::Add
            | Op::Sub
            | Op::Mul
            | Op::Div
            | Op::Relu
            | Op::Clip
            | Op::BatchNormalization { .. }
            | Op::Identity
    )
}

fn shape_only(op: &Op) -> bool {
    matches!(
        op,
        Op::Flatten { .. } | Op::Reshape | Op::Identity | Op::Squeeze { .. } | Op::Unsqueeze { .. }
    )
}

struct Lowerer<'g> {
    g: &'g Graph,
    syms: HashMap<ValueId, Sym>,
    layers: Vec<QDense>,
    input: Option<QIo>,
    input_id: ValueId,
    /// Host pre-processing nodes (graph input -> first QuantizeLinear and its Clip).
    pre: Vec<usize>,
    open: Option<Open>,
    /// The last layer if it ended in a fused requantization (QLinearMatMul): elementwise
    /// operators on its dequantized output reopen it. (its Open, its output value)
    reopen: Option<(Open, ValueId)>,
    /// The last DequantizeLinear of a closed layer's output: (node index, its output value).
    last_dq: Option<(usize, ValueId)>,
    /// Values that are an affine function (scale, offset) of an integer graph input: they
    /// stay dequantized 8-bit data with other parameters.
    input_affine: HashSet<ValueId>,
    /// The program input is the output of a bipolar quantizer: every value -1 or +1.
    input_bipolar: bool,
}

/// A sub-graph of `g` with `inputs` replaced by fresh float inputs of shape `rows x n`, the
/// given nodes, and `output` as its output; every chain value gets shape `rows x n`.
fn subgraph(g: &Graph, inputs: &[ValueId], nodes: &[usize], output: ValueId, rows: usize) -> Graph {
    let mut sg = Graph {
        name: format!("{}-sub", g.name),
        opset: g.opset,
        ..Default::default()
    };
    let mut map: HashMap<ValueId, ValueId> = HashMap::new();
    let remap = |sg: &mut Graph, id: ValueId, map: &mut HashMap<ValueId, ValueId>| -> ValueId {
        if let Some(&x) = map.get(&id) {
            return x;
        }
        let v = g.value(id);
        let nid = if let Some(t) = g.constant(id) {
            // On [rows, channels] chains a per-channel constant of an image ([C,1,1] or
            // [1,C,1,1]) becomes [C].
            let mut t = t.clone();
            if rows > 0 && t.shape.len() >= 3 {
                let mut sh = t.shape.clone();
                while sh.len() > 1 && sh.last() == Some(&1) {
                    sh.pop();
                }
                while sh.len() > 1 && sh.first() == Some(&1) {
                    sh.remove(0);
                }
                t.shape = sh;
            }
            let nid = sg.add_value(&v.name, t.shape.clone(), v.dtype);
            sg.consts.insert(nid, t);
            nid
        } else if rows == 0 {
            // Keep the model's shapes (a host tail on whole tensors).
            sg.add_value(&v.name, v.shape.clone(), v.dtype)
        } else {
            let mut shape = v.shape.clone();
            if shape.is_empty() {
                shape = vec![rows];
            } else {
                // One probe per row: an NCHW image becomes [rows, channels]; anything else keeps
                // its other dims (e.g. [1, C, 1] around a BatchNormalization -> [rows, C, 1]).
                if shape.len() == 4 {
                    shape = vec![rows, shape[1]];
                } else {
                    shape[0] = rows;
                }
            }
            sg.add_value(&v.name, shape, v.dtype)
        };
        map.insert(id, nid);
        nid
    };
    for &i in inputs {
        let nid = remap(&mut sg, i, &mut map);
        sg.inputs.push(nid);
    }
    for &ni in nodes {
        let n = &g.nodes[ni];
        let ins = n
            .inputs
            .iter()
            .map(|i| i.map(|id| remap(&mut sg, id, &mut map)))
            .collect();
        let outs = n
            .outputs
            .iter()
            .map(|&o| remap(&mut sg, o, &mut map))
            .collect();
        sg.nodes.push(Node {
            name: n.name.clone(),
            op: n.op.clone(),
            inputs: ins,
            outputs: outs,
        });
    }
    let o = remap(&mut sg, output, &mut map);
    sg.outputs.push(o);
    sg
}

impl Lowerer<'_> {
    fn problem(&self, node: &Node, msg: impl std::fmt::Display) -> LowerError {
        err(format!(
            "node '{}' ({}): {msg}",
            node.name,
            node.op.op_type()
        ))
    }

    /// The data input of an elementwise node; the others must be constants.
    fn data_input(&self, node: &Node) -> Result<ValueId, LowerError> {
        let mut data = None;
        for i in node.inputs.iter().flatten() {
            if self.g.constant(*i).is_none() {
                if data.is_some() {
                    return Err(self.problem(
                        node,
                        "two computed inputs: only constants can be combined with a layer's output",
                    ));
                }
                data = Some(*i);
            }
        }
        data.ok_or_else(|| self.problem(node, "no computed input"))
    }

    fn node(&mut self, ni: usize) -> Result<(), LowerError> {
        let g = self.g;
        let node = &g.nodes[ni];
        let out = node.outputs[0];
        // Nodes whose data input is a constant only (weights, biases) are evaluated by their
        // consumers.
        if node
            .inputs
            .iter()
            .flatten()
            .all(|i| g.constant(*i).is_some())
        {
            return Ok(());
        }
        // A quantized layer reading the float graph input (or host pre-processing of it): the
        // host computes it, up to the first quantizer (as an hls4ml model's float input layer).
        if matches!(node.op, Op::MatMul | Op::Gemm { .. })
            && self.layers.is_empty()
            && self.open.is_none()
            && node.input(0).is_some_and(|x| {
                (x == self.input_id && !self.input_affine.contains(&x))
                    || matches!(self.syms.get(&x), Some(Sym::Pre))
            })
            && node.input(1).and_then(|w| g.producer(w)).is_some_and(|p| {
                matches!(
                    g.nodes[p].op,
                    Op::QonnxQuant { .. } | Op::BipolarQuant | Op::DequantizeLinear { .. }
                )
            })
        {
            self.pre.push(ni);
            self.syms.insert(out, Sym::Pre);
            return Ok(());
        }
        match &node.op {
            Op::MatMul | Op::Gemm { .. } => return self.matmul(node),
            Op::QLinearMatMul => return self.qlinear_matmul(node),
            Op::MatMulInteger => return self.matmul_integer(node),
            Op::Conv(_) | Op::QLinearConv(_) | Op::ConvInteger(_) => return self.conv(node),
            _ => {}
        }
        let x = match &node.op {
            Op::QuantizeLinear { .. }
            | Op::DequantizeLinear { .. }
            | Op::MaxPool(_)
            | Op::AveragePool(_)
            | Op::GlobalAveragePool
            | Op::Transpose { .. }
            | Op::QonnxQuant { .. }
            | Op::BipolarQuant
            | Op::MultiThreshold { .. } => node
                .input(0)
                .ok_or_else(|| self.problem(node, "input missing"))?,
            op if elementwise(op) || shape_only(op) => self.data_input(node)?,
            other => {
                return Err(self.problem(
                    node,
                    format!("{} has no lowering to the accelerator yet", other.op_type()),
                ))
            }
        };
        let sym = if x == self.input_id && !self.input_affine.contains(&x) {
            Some(Sym::Pre)
        } else {
            self.syms.get(&x).copied()
        };
        let sym = sym.ok_or_else(|| {
            self.problem(
                node,
                format!(
                    "input '{}' is not on the chain the accelerator runs",
                    g.value(x).name
                ),
            )
        })?;
        // An 8-bit integer graph input that is pooled directly: its integers are the data.
        let sym = match (sym, &node.op) {
            (Sym::Pre, Op::MaxPool(_)) if matches!(g.value(x).dtype, DType::I8 | DType::U8) => {
                let qp = QParams {
                    scale: 1.0,
                    zp: 0,
                    dtype: g.value(x).dtype,
                };
                self.bind_input(qp, qp.hw_range())?;
                Sym::Q(qp, qp.hw_range())
            }
            _ => sym,
        };
        // Max pooling that follows no convolution gets an identity convolution to ride on.
        if let (Sym::Q(q, r) | Sym::Deq(q, r), Op::MaxPool(_)) = (sym, &node.op) {
            let after_conv = self
                .layers
                .last()
                .is_some_and(|l| l.conv.is_some() && l.pool.is_none());
            if self.open.is_none() && !after_conv {
                self.push_identity(node, ni, x, q, r, Synth::Identity)?;
            }
        }
        let new = match (sym, &node.op) {
            // QONNX quantizers (quantize and dequantize in one node).
            (Sym::Pre, Op::QonnxQuant { .. } | Op::BipolarQuant | Op::MultiThreshold { .. }) => {
                let (qp, range, step) = self.qonnx_params(node)?;
                self.input_bipolar = range == (-1, 1) && step == 2;
                self.pre.push(ni);
                self.syms.insert(out, Sym::Q(qp, range));
                self.bind_input(qp, range)?;
                Sym::Deq(qp, range)
            }
            (Sym::Epi, Op::QonnxQuant { .. } | Op::BipolarQuant | Op::MultiThreshold { .. }) => {
                let (qp, _, step) = self.qonnx_params(node)?;
                let open = self.open.as_mut().expect("epilogue without a layer");
                if open.cur != x {
                    return Err(self.problem(node, "the layer's output is used twice"));
                }
                open.epi.push(ni);
                open.cur = out;
                open.cur_q = Some(qp);
                open.q_step = step;
                open.q_float = true;
                let r = self.close(out)?;
                // The quantizer's output is already dequantized: nothing to reopen into.
                self.reopen = None;
                self.last_dq = None;
                Sym::Deq(qp, r)
            }
            // Host pre-processing up to the first quantizer (and a Clip of its integers).
            (Sym::Pre, Op::QuantizeLinear { .. }) => {
                let qp = self.qparams(node, 1, 2)?;
                self.pre.push(ni);
                Sym::Q(qp, qp.hw_range())
            }
            (Sym::Pre, op)
                if elementwise(op) || shape_only(op) || matches!(op, Op::Transpose { .. }) =>
            {
                self.pre.push(ni);
                Sym::Pre
            }
            (Sym::Pre, Op::DequantizeLinear { .. }) => {
                // Integer graph input.
                let qp = self.qparams(node, 1, 2)?;
                Sym::Deq(qp, qp.hw_range())
            }
            (Sym::Q(q, r), Op::Clip) if self.open.is_none() => {
                // Clip of the quantized input on the host.
                self.pre.push(ni);
                let (lo, hi) = self.int_clip(node, q)?;
                Sym::Q(q, (r.0.max(lo), r.1.min(hi)))
            }
            (Sym::Q(q, r), Op::MaxPool(pa)) | (Sym::Deq(q, r), Op::MaxPool(pa))
                if self.open.is_none()
                    && self
                        .layers
                        .last()
                        .is_some_and(|l| l.conv.is_some() && l.pool.is_none()) =>
            {
                // Max pooling of the last convolution's int8 output (max commutes with the
                // monotone dequantization).
                let ys = &g.value(out).shape;
                let pool = crate::qir::PoolGeom {
                    kernel: pa.kernel,
                    stride: pa.strides,
                    dilation: pa.dilations,
                    pads: pa.pads,
                    oh: ys[2],
                    ow: ys[3],
                };
                self.layers.last_mut().unwrap().pool = Some(pool);
                self.reopen = None;
                if matches!(sym, Sym::Q(..)) {
                    Sym::Q(q, r)
                } else {
                    Sym::Deq(q, r)
                }
            }
            (Sym::Deq(q, r), Op::QuantizeLinear { .. }) => {
                let y = self.qparams(node, 1, 2)?;
                if y != q {
                    return Err(self.problem(
                        node,
                        "requantizes a pooled value with new parameters (not lowered)",
                    ));
                }
                Sym::Q(q, r)
            }
            (Sym::Q(q, r), Op::DequantizeLinear { .. }) => {
                let d = self.qparams(node, 1, 2)?;
                if d.scale != q.scale || d.zp != q.zp {
                    return Err(self.problem(
                        node,
                        "dequantizes with other parameters than the quantizer used",
                    ));
                }
                if self.input.is_none() {
                    self.bind_input(q, r)?;
                }
                self.last_dq = Some((ni, x));
                Sym::Deq(q, r)
            }
            (Sym::Deq(..), op) if elementwise(op) && self.can_reopen(x) => {
                // Elementwise operators on the dequantized output of a fused layer: the layer
                // reopens and they join its epilogue.
                let (mut o, _) = self.reopen.take().unwrap();
                let (dq_ni, _) = self.last_dq.unwrap();
                self.layers.pop();
                o.epi.push(dq_ni);
                o.epi.push(ni);
                o.cur = out;
                o.cur_q = None;
                self.open = Some(o);
                Sym::Epi
            }
            (Sym::Deq(q, r), Op::Add | Op::Sub | Op::Mul | Op::Div)
                if self.input_affine.contains(&x) && self.affine(node, x, q).is_some() =>
            {
                // An affine map of integer input data (e.g. (x + 1) / 2 of a bipolar x): the
                // same integers, dequantized with other parameters.
                self.input_affine.insert(out);
                Sym::Deq(self.affine(node, x, q).unwrap(), r)
            }
            (Sym::Deq(q, r), op) if elementwise(op) && self.open.is_none() => {
                // Elementwise operators on a tensor no open layer produces: an identity layer
                // carries them to the post-processing unit.
                self.open_synthetic(node, ni, x, q, r, Synth::Identity)?;
                let open = self.open.as_mut().unwrap();
                open.epi.push(ni);
                open.cur = out;
                Sym::Epi
            }
            (Sym::Deq(q, r), Op::AveragePool(_) | Op::GlobalAveragePool) if self.open.is_none() => {
                let kind = self.avg_pool(node, x)?;
                self.open_synthetic(node, ni, x, q, r, kind)?;
                Sym::Epi
            }
            (Sym::Q(q, r), op) | (Sym::Deq(q, r), op) if shape_only(op) => {
                if matches!(sym, Sym::Q(..)) {
                    Sym::Q(q, r)
                } else {
                    Sym::Deq(q, r)
                }
            }
            (Sym::Epi, op)
                if elementwise(op)
                    || matches!(op, Op::QuantizeLinear { .. } | Op::DequantizeLinear { .. }) =>
            {
                let open = self.open.as_mut().expect("epilogue without a layer");
                if open.cur != x {
                    return Err(self.problem(node, "the layer's output is used twice"));
                }
                match op {
                    Op::QuantizeLinear { .. } => {
                        open.epi.push(ni);
                        open.cur = out;
                        let qp = self.qparams(node, 1, 2)?;
                        self.open.as_mut().unwrap().cur_q = Some(qp);
                        Sym::Epi
                    }
                    Op::DequantizeLinear { .. } => {
                        // Dequantizing the epilogue's integers: the layer ends here.
                        let Some(q) = open.cur_q else {
                            return Err(
                                self.problem(node, "dequantizes a value that was not quantized")
                            );
                        };
                        let d = self.qparams(node, 1, 2)?;
                        if d.scale != q.scale || d.zp != q.zp {
                            return Err(self.problem(
                                node,
                                "dequantizes with other parameters than the quantizer used",
                            ));
                        }
                        let r = self.close(x)?;
                        self.last_dq = Some((ni, x));
                        Sym::Deq(q, r)
                    }
                    _ => {
                        open.epi.push(ni);
                        open.cur = out;
                        if matches!(op, Op::Clip | Op::Identity) && open.cur_q.is_some() {
                            // Clip of the quantized integers: stays quantized.
                        } else {
                            open.cur_q = None;
                        }
                        Sym::Epi
                    }
                }
            }
            (Sym::Epi, op) if shape_only(op) => {
                let open = self.open.as_mut().expect("epilogue without a layer");
                open.epi.push(ni);
                open.cur = out;
                Sym::Epi
            }
            (_, op) => {
                return Err(self.problem(
                    node,
                    format!(
                        "{} cannot follow here (input '{}')",
                        op.op_type(),
                        g.value(x).name
                    ),
                ))
            }
        };
        self.syms.insert(out, new);
        Ok(())
    }

    /// The parameters of `node` (Add/Sub/Mul/Div of `x` and a scalar constant) applied to the
    /// dequantized value `x` (parameters `q`), if the result is again a dequantization of the
    /// same integers (an integer zero point, a positive finite scale).
    fn affine(&self, node: &Node, x: ValueId, q: QParams) -> Option<QParams> {
        let other = node.inputs.iter().flatten().find(|&&i| i != x)?;
        let c = self.g.constant(*other)?.to_f32_vec();
        let [c] = c[..] else { return None };
        let first = node.input(0) == Some(x);
        let (scale, zp) = match node.op {
            Op::Add => (q.scale, q.zp as f64 - c as f64 / q.scale as f64),
            Op::Sub if first => (q.scale, q.zp as f64 + c as f64 / q.scale as f64),
            Op::Mul => (q.scale * c, q.zp as f64),
            Op::Div if first => (q.scale / c, q.zp as f64),
            _ => return None,
        };
        let ok = scale.is_finite() && scale > 0.0 && (zp - zp.round()).abs() < 1e-6;
        ok.then_some(QParams {
            scale,
            zp: zp.round() as i32,
            dtype: q.dtype,
        })
    }

    /// Drops an open synthetic layer that no quantizer ended, if its input is the last
    /// dequantized layer output: returns the node that started it (the host tail's start).
    fn rollback_synthetic(&mut self) -> Option<usize> {
        let o = self.open.as_ref()?;
        let start = o.synthetic?;
        if o.cur_q.is_some() {
            return None;
        }
        let x = self.g.nodes[start].input(0)?;
        let on_output = matches!(self.syms.get(&x), Some(Sym::Deq(..)))
            && self
                .last_dq
                .is_some_and(|(d, _)| self.g.nodes[d].outputs[0] == x);
        if !on_output {
            return None;
        }
        self.open = None;
        Some(start)
    }

    /// Whether `x` is the DequantizeLinear output of the last (fused) layer's output.
    fn can_reopen(&self, x: ValueId) -> bool {
        let (Some((dq_ni, q_in)), Some((_, out))) = (self.last_dq, &self.reopen) else {
            return false;
        };
        self.g.nodes[dq_ni].outputs[0] == x && q_in == *out
    }

    fn qparams(&self, node: &Node, si: usize, zi: usize) -> Result<QParams, LowerError> {
        let scale =
            scalar_f32(self.g, node.input(si), "scale").map_err(|e| self.problem(node, e))?;
        let (zp, dt) = zero_point(self.g, node.input(zi), DType::U8, "zero point")
            .map_err(|e| self.problem(node, e))?;
        if !matches!(dt, DType::I8 | DType::U8) {
            return Err(self.problem(node, "only 8-bit quantization is supported"));
        }
        Ok(QParams {
            scale,
            zp,
            dtype: dt,
        })
    }

    /// Quantization, integer range (hw) and level step of a QONNX Quant or BipolarQuant.
    fn qonnx_params(&self, node: &Node) -> Result<(QParams, (i32, i32), i32), LowerError> {
        let g = self.g;
        let scale = if matches!(node.op, Op::MultiThreshold { .. }) {
            1.0
        } else {
            scalar_f32(g, node.input(1), "scale").map_err(|e| {
                self.problem(
                    node,
                    format!("{e} (per-channel activation scales are not lowered)"),
                )
            })?
        };
        match &node.op {
            Op::BipolarQuant => Ok((
                QParams {
                    scale,
                    zp: 0,
                    dtype: DType::I8,
                },
                (-1, 1),
                2,
            )),
            Op::MultiThreshold {
                out_scale,
                out_bias,
                ..
            } => {
                // Outputs out_bias + out_scale * count: held as those integers (scale 1).
                let t = node
                    .input(1)
                    .and_then(|i| g.constant(i))
                    .ok_or_else(|| self.problem(node, "thresholds must be constant"))?;
                let steps = *t.shape.last().unwrap_or(&0) as i32;
                if out_scale.fract() != 0.0 || out_bias.fract() != 0.0 || *out_scale <= 0.0 {
                    return Err(self.problem(
                        node,
                        "only positive integer out_scale and integer out_bias are lowered",
                    ));
                }
                let (lo, hi) = (
                    *out_bias as i32,
                    *out_bias as i32 + *out_scale as i32 * steps,
                );
                if lo < -128 || hi > 127 {
                    return Err(self.problem(node, "the thresholded outputs do not fit int8"));
                }
                Ok((
                    QParams {
                        scale: 1.0,
                        zp: 0,
                        dtype: DType::I8,
                    },
                    (lo, hi),
                    *out_scale as i32,
                ))
            }
            Op::QonnxQuant { signed, narrow, .. } => {
                let zp = const_f32(g, node.input(2), "zeropt")?;
                let bits = const_f32(g, node.input(3), "bitwidth")?;
                if zp.len() != 1
                    || zp[0].fract() != 0.0
                    || bits.len() != 1
                    || bits[0].fract() != 0.0
                {
                    return Err(
                        self.problem(node, "zero point and bit width must be integral scalars")
                    );
                }
                let (z, b) = (zp[0] as i32, bits[0] as i32);
                if *signed && b == 1 {
                    // qonnx: a 1-bit signed Quant is bipolar, {-1, +1} * scale.
                    return Ok((
                        QParams {
                            scale,
                            zp: 0,
                            dtype: DType::I8,
                        },
                        (-1, 1),
                        2,
                    ));
                }
                let (lo, hi) = if *signed {
                    (-(1 << (b - 1)) + *narrow as i32, (1 << (b - 1)) - 1)
                } else {
                    (0, (1 << b) - 1 - *narrow as i32)
                };
                if b == 8 && !*signed {
                    // Held biased by -128 on chip, as uint8 tensors of QDQ models are.
                    let q = QParams {
                        scale,
                        zp: z,
                        dtype: DType::U8,
                    };
                    return Ok((q, (lo + q.offset(), hi + q.offset()), 1));
                }
                if !(1..=8).contains(&b) || lo < -128 || hi > 127 {
                    return Err(self.problem(
                        node,
                        format!(
                            "a {b}-bit {} quantizer does not fit int8 lanes",
                            if *signed { "signed" } else { "unsigned" }
                        ),
                    ));
                }
                Ok((
                    QParams {
                        scale,
                        zp: z,
                        dtype: DType::I8,
                    },
                    (lo, hi),
                    1,
                ))
            }
            _ => unreachable!(),
        }
    }

    /// Integer bounds of a Clip on quantized values (logical domain -> hw).
    fn int_clip(&self, node: &Node, q: QParams) -> Result<(i32, i32), LowerError> {
        let lo = node
            .input(1)
            .map(|_| const_ints(self.g, node.input(1), "Clip min"))
            .transpose()?
            .map(|v| v.0[0] as i32);
        let hi = node
            .input(2)
            .map(|_| const_ints(self.g, node.input(2), "Clip max"))
            .transpose()?
            .map(|v| v.0[0] as i32);
        let (a, b) = q.range();
        Ok((lo.unwrap_or(a) + q.offset(), hi.unwrap_or(b) + q.offset()))
    }

    fn bind_input(&mut self, q: QParams, range: (i32, i32)) -> Result<(), LowerError> {
        let v = self.g.value(self.input_id);
        let float_input = matches!(v.dtype, DType::F32 | DType::F64);
        let host = if self
            .pre
            .iter()
            .any(|&i| !matches!(self.g.nodes[i].op, Op::QuantizeLinear { .. }))
            || range != q.hw_range()
        {
            // Elementwise operators or a clip before the quantizer run on the host.
            let last = *self.pre.last().unwrap();
            let out = self.g.nodes[last].outputs[0];
            let mut sg = subgraph(self.g, &[self.input_id], &self.pre, out, 1);
            // The sub-graph keeps the model's input shape.
            sg.values[sg.inputs[0]].shape = v.shape.clone();
            for n in sg.nodes.clone() {
                let o = n.outputs[0];
                let src = self
                    .g
                    .nodes
                    .iter()
                    .find(|x| x.name == n.name)
                    .map(|x| x.outputs[0]);
                if let Some(src) = src {
                    sg.values[o].shape = self.g.value(src).shape.clone();
                }
            }
            Some(sg)
        } else {
            None
        };
        self.input = Some(QIo {
            name: v.name.clone(),
            shape: v.shape.clone(),
            dtype: if float_input { DType::F32 } else { q.dtype },
            quant: Some((q.scale, q.zp)),
            offset: q.offset(),
            host,
        });
        Ok(())
    }

    /// 2-D weights [k][n] of a matrix product: a DequantizeLinear or a QONNX quantizer of
    /// integer constants, or integer-valued float constants.
    /// With `trans_b` the tensor is [n][k] (Gemm transB) and a per-row scale is per output
    /// channel; the returned scales are per output channel either way.
    fn weights_of(&self, id: ValueId, node: &Node, trans_b: bool) -> Result<Weights, LowerError> {
        let g = self.g;
        if let Some(p) = g.producer(id) {
            let pn = &g.nodes[p];
            // A QONNX quantizer of constant weights (folded): its integers are
            // round(y / scale) + zeropt, the scale per tensor or per output column.
            if matches!(pn.op, Op::QonnxQuant { .. } | Op::BipolarQuant) {
                if let (Some(t), Some(sc)) =
                    (g.constant(id), pn.input(1).and_then(|i| g.constant(i)))
                {
                    if t.shape.len() == 2 {
                        let (k, n) = (t.shape[0], t.shape[1]);
                        let sv = sc.to_f32_vec();
                        // Scale of output channel c: per tensor, per column, or (transB) per
                        // row of the stored tensor.
                        let (out_ch, per_row) = if trans_b { (k, true) } else { (n, false) };
                        let col_scale = |c: usize| -> Option<f32> {
                            match (sc.shape.as_slice(), sv.len()) {
                                (_, 1) => Some(sv[0]),
                                ([m], _) | ([1, m], _) if *m == n && !per_row => Some(sv[c]),
                                ([m], _) | ([m, 1], _) if *m == k && per_row => Some(sv[c]),
                                _ => None,
                            }
                        };
                        let zp = match pn.op {
                            Op::QonnxQuant { .. } => {
                                let z = const_f32(g, pn.input(2), "zeropt")?;
                                if z.len() != 1 || z[0].fract() != 0.0 {
                                    return Err(self
                                        .problem(node, "weight zero points must be one integer"));
                                }
                                z[0] as i32
                            }
                            _ => 0,
                        };
                        let scales: Option<Vec<f32>> = (0..out_ch).map(col_scale).collect();
                        let Some(scales) = scales else {
                            return Err(self.problem(node, format!("weight scale of shape {:?} is not per tensor or per output channel", sc.shape)));
                        };
                        let f = t.to_f32_vec();
                        let w: Vec<i64> = (0..k * n)
                            .map(|i| {
                                let s = if per_row {
                                    scales[i / n]
                                } else {
                                    scales[i % n]
                                };
                                (f[i] / s).round_ties_even() as i64 + zp as i64
                            })
                            .collect();
                        return Ok((w, scales, zp, vec![k, n]));
                    }
                }
            }
        }
        let (w, scales, zp, shape) = self.weights_of_any(id, node)?;
        if shape.len() != 2 {
            return Err(self.problem(node, format!("weights must be 2-D, got {shape:?}")));
        }
        Ok((w, scales, zp, shape))
    }

    /// Starts a layer; closes nothing (the previous one closed at its DequantizeLinear).
    // The arguments are the layer's independent facts; a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    fn start(
        &mut self,
        node: &Node,
        a: QParams,
        range: (i32, i32),
        w: Vec<i64>,
        w_zp: Vec<i32>,
        k: usize,
        n: usize,
        mm_scale: Vec<f32>,
    ) -> Result<(), LowerError> {
        if self.open.is_some() {
            return Err(self.problem(
                node,
                "the previous layer's output is not requantized to 8 bits",
            ));
        }
        self.reopen = None;
        if self.input.is_none() {
            self.bind_input(a, range)?;
        }
        let weights: Vec<i32> = w
            .iter()
            .enumerate()
            .map(|(i, &x)| (x - w_zp[(i % n) % w_zp.len()] as i64) as i32)
            .collect();
        if let Some(x) = weights.iter().find(|&&x| !(-255..=255).contains(&x)) {
            return Err(self.problem(
                node,
                format!("weight minus zero point ({x}) does not fit two int8 halves"),
            ));
        }
        self.open = Some(Open {
            name: node.name.clone(),
            k,
            n,
            weights,
            bias: vec![0; n],
            x_zp_hw: a.zp + a.offset(),
            x_range: range,
            mm_scale,
            mm_value: node.outputs[0],
            epi: Vec::new(),
            cur: node.outputs[0],
            cur_q: None,
            prefix: None,
            conv: None,
            flat_image: None,
            q_step: 1,
            q_float: false,
            synthetic: None,
            probe_2d: false,
            post_add: None,
            row_mul: None,
        });
        self.syms.insert(node.outputs[0], Sym::Epi);
        Ok(())
    }

    /// Opens a layer the compiler adds for `node`, which has no matrix product of its own, on
    /// the dequantized 8-bit tensor `x` (quantization `q`, hw range `r`): identity weights
    /// (elementwise operators, a graph without layers) or depthwise weights of ones (average
    /// pooling) on the array, so that the post-processing unit can apply the operator. An image
    /// `[1, C, H, W]` (or the output of a convolution) becomes a 1x1 or pooling-window
    /// convolution over C channels; anything else a dense layer over its last dim.
    fn open_synthetic(
        &mut self,
        node: &Node,
        ni: usize,
        x: ValueId,
        q: QParams,
        r: (i32, i32),
        kind: Synth,
    ) -> Result<(), LowerError> {
        let xs = self.g.value(x).shape.clone();
        if xs.contains(&0) {
            return Err(self.problem(node, format!("an empty tensor {xs:?} has nothing to run")));
        }
        let last_image = self.layers.last().and_then(|l| {
            l.conv
                .map(|cv| (l.n, l.pool.map_or((cv.oh, cv.ow), |p| (p.oh, p.ow))))
        });
        let image = !matches!(kind, Synth::Copy)
            && ((xs.len() == 4 && xs[0] == 1)
                || last_image.is_some()
                || matches!(kind, Synth::AvgPool { .. }));
        let (k, n, conv) = if image {
            if xs.len() != 4 || xs[0] != 1 {
                return Err(self.problem(
                    node,
                    format!("only single 2-D images are lowered (input {xs:?})"),
                ));
            }
            let (c, h, w) = (xs[1], xs[2], xs[3]);
            if let Some((lc, (lh, lw))) = last_image {
                if (lc, lh, lw) != (c, h, w) {
                    return Err(self.problem(
                        node,
                        format!(
                            "reads a {c}x{h}x{w} image, the last convolution makes {lc}x{lh}x{lw}"
                        ),
                    ));
                }
            }
            let ys = &self.g.value(node.outputs[0]).shape;
            let (kernel, stride, pads, dilation, oh, ow) = match kind {
                Synth::Identity | Synth::Copy => ([1, 1], [1, 1], [0; 4], [1, 1], h, w),
                Synth::AvgPool {
                    kernel,
                    stride,
                    pads,
                    dilation,
                    ..
                } => (kernel, stride, pads, dilation, ys[2], ys[3]),
            };
            let geom = ConvGeom {
                cin: c,
                h,
                w,
                kh: kernel[0],
                kw: kernel[1],
                stride,
                dilation,
                pads,
                oh,
                ow,
                pad_value: (q.zp + q.offset()).clamp(-128, 127) as i8,
            };
            (kernel[0] * kernel[1] * c, c, Some(geom))
        } else {
            let n = *xs.last().unwrap_or(&1);
            if let Some(l) = self.layers.last() {
                if l.n != n {
                    return Err(self.problem(
                        node,
                        format!("works on rows of {n}, the last layer makes rows of {}", l.n),
                    ));
                }
            }
            (n, n, None)
        };
        // Identity: w[c][c] = 1; pooling: w[(ky, kx, c)][c] = 1.
        let mut w = vec![0i64; k * n];
        for (row, chunk) in w.chunks_mut(n).enumerate() {
            chunk[row % n] = 1;
        }
        let (div, row_mul) = match &kind {
            Synth::Identity | Synth::Copy => (1, None),
            Synth::AvgPool { div, row_mul, .. } => (*div, row_mul.clone()),
        };
        let mm_scale = vec![q.scale / div as f32; n];
        self.start(node, q, r, w, vec![0], k, n, mm_scale)?;
        let o = self.open.as_mut().unwrap();
        o.name = format!(
            "{} ({})",
            node.name,
            match kind {
                Synth::Identity | Synth::Copy => "identity",
                Synth::AvgPool { .. } => "window sum",
            }
        );
        o.conv = conv;
        o.row_mul = row_mul;
        o.synthetic = Some(ni);
        o.probe_2d = conv.is_none() && xs.len() != 2;
        if matches!(kind, Synth::Identity | Synth::Copy) {
            // The product is x itself: the operator joins the epilogue.
            self.syms.remove(&node.outputs[0]);
            o.mm_value = x;
            o.cur = x;
        }
        Ok(())
    }

    /// A closed identity layer whose int8 output equals its input: a convolution-shaped
    /// carrier for pooling, or the whole program of a graph without arithmetic.
    fn push_identity(
        &mut self,
        node: &Node,
        ni: usize,
        x: ValueId,
        q: QParams,
        r: (i32, i32),
        kind: Synth,
    ) -> Result<(), LowerError> {
        self.open_synthetic(node, ni, x, q, r, kind)?;
        let o = self.open.take().unwrap();
        let bias = self.fold_bias(&o);
        self.layers.push(dense(
            &o,
            bias,
            QOut::Int8 {
                scales: vec![1.0; o.n],
                zp: q.zp + q.offset(),
                lo: r.0 as i8,
                hi: r.1 as i8,
            },
        ));
        self.reopen = None;
        Ok(())
    }

    /// Average pooling that a layer can compute: no dilation, and one divisor for every
    /// window (padding counted, or no window reaching into padding or past the edge).
    fn avg_pool(&self, node: &Node, x: ValueId) -> Result<Synth, LowerError> {
        let xs = &self.g.value(x).shape;
        if xs.len() != 4 {
            return Err(self.problem(node, format!("pools a {xs:?} tensor, not an image")));
        }
        let (kernel, stride, pads, dilation, include_pad) = match &node.op {
            Op::GlobalAveragePool => ([xs[2], xs[3]], [1, 1], [0; 4], [1, 1], false),
            Op::AveragePool(pa) => (
                pa.kernel,
                pa.strides,
                pa.pads,
                pa.dilations,
                pa.count_include_pad,
            ),
            _ => unreachable!(),
        };
        let ys = &self.g.value(node.outputs[0]).shape;
        // The divisor of every output pixel's window.
        let mut per = Vec::with_capacity(ys[2] * ys[3]);
        for oy in 0..ys[2] {
            for ox in 0..ys[3] {
                let mut valid = 0;
                let mut counted = 0;
                for ky in 0..kernel[0] {
                    for kx in 0..kernel[1] {
                        let iy = (oy * stride[0] + ky * dilation[0]) as i64 - pads[0] as i64;
                        let ix = (ox * stride[1] + kx * dilation[1]) as i64 - pads[1] as i64;
                        let inside = |v: i64, size: usize| v >= 0 && v < size as i64;
                        let padded = |v: i64, i: usize| {
                            v >= -(pads[i] as i64) && v < (xs[2 + i] + pads[i + 2]) as i64
                        };
                        valid += (inside(iy, xs[2]) && inside(ix, xs[3])) as usize;
                        counted += (padded(iy, 0) && padded(ix, 1)) as usize;
                    }
                }
                per.push(if include_pad { counted } else { valid });
            }
        }
        let gcd = |mut a: usize, mut b: usize| {
            while b != 0 {
                (a, b) = (b, a % b);
            }
            a
        };
        // One scale for the layer: s / lcm; each pixel's window sum times lcm / its divisor
        // (0 for a window with no input element, whose average is 0).
        let lcm = per
            .iter()
            .filter(|&&d| d > 0)
            .fold(1usize, |l, &d| l / gcd(l, d) * d);
        if lcm > 1 << 20 {
            return Err(self.problem(
                node,
                format!("its divisors' common multiple {lcm} is too large for int32 window sums"),
            ));
        }
        let uniform = per.iter().all(|&d| d == per[0]) && per[0] > 0;
        Ok(Synth::AvgPool {
            kernel,
            stride,
            pads,
            dilation,
            div: lcm,
            row_mul: (!uniform).then(|| {
                per.iter()
                    .map(|&d| lcm.checked_div(d).unwrap_or(0) as i32)
                    .collect()
            }),
        })
    }

    fn matmul(&mut self, node: &Node) -> Result<(), LowerError> {
        let (alpha, beta, trans_a, trans_b) = match node.op {
            Op::Gemm {
                alpha,
                beta,
                trans_a,
                trans_b,
            } => (alpha, beta, trans_a, trans_b),
            _ => (1.0, 1.0, false, false),
        };
        if trans_a {
            return Err(self.problem(
                node,
                "transA (a transposed activation) is not lowered; transpose on the host first",
            ));
        }
        let x = node
            .input(0)
            .ok_or_else(|| self.problem(node, "input missing"))?;
        let Some(Sym::Deq(a, range)) = self.syms.get(&x).copied() else {
            return Err(self.problem(node, "input A must be a dequantized 8-bit activation"));
        };
        let wid = node
            .input(1)
            .ok_or_else(|| self.problem(node, "weights missing"))?;
        let (mut w, scales, w_zp, shape) = self.weights_of(wid, node, trans_b)?;
        let (mut k, mut n) = (shape[0], shape[1]);
        if trans_b {
            let mut t = vec![0i64; w.len()];
            for r in 0..k {
                for c in 0..n {
                    t[c * k + r] = w[r * n + c];
                }
            }
            w = t;
            std::mem::swap(&mut k, &mut n);
        }
        let w_scales = per_channel(scales, n, "weight scale")?;
        // alpha scales the product: it joins the per-channel scale of its float value.
        let mm_scale = w_scales.iter().map(|&ws| a.scale * ws * alpha).collect();
        // C must be one value per output channel (or one for all): a per-row matrix bias
        // cannot be a layer's bias.
        let post_add = match (&node.op, node.input(2)) {
            (Op::Gemm { .. }, Some(c)) => {
                let g = self.g;
                let cv = const_f32(g, Some(c), "C")?;
                let cv = match cv.len() {
                    1 => vec![cv[0]; n],
                    len if len == n && g.value(c).shape.iter().rev().skip(1).all(|&d| d == 1) => cv,
                    _ => {
                        return Err(self.problem(
                            node,
                            format!(
                                "bias C of shape {:?} is not one value per output channel",
                                g.value(c).shape
                            ),
                        ))
                    }
                };
                Some(cv.iter().map(|&v| beta * v).collect::<Vec<f32>>())
            }
            _ => None,
        };
        // A dense layer after a convolution reads its image flattened in NCHW order; the image
        // is NHWC in DRAM, so reorder the weight rows to (y, x, c).
        let mut flat = None;
        if let Some(last) = self.layers.last() {
            if let Some(cv) = last.conv {
                let (h, wd) = last.pool.map_or((cv.oh, cv.ow), |p| (p.oh, p.ow));
                let c = last.n;
                if k != c * h * wd {
                    return Err(
                        self.problem(node, format!("reads {k} values from a {c}x{h}x{wd} image"))
                    );
                }
                let mut re = vec![0i64; k * n];
                for ch in 0..c {
                    for pix in 0..h * wd {
                        let src = (ch * h * wd + pix) * n;
                        let dst = (pix * c + ch) * n;
                        re[dst..dst + n].copy_from_slice(&w[src..src + n]);
                    }
                }
                w = re;
                flat = Some([h, wd, c]);
            }
        }
        self.start(node, a, range, w, vec![w_zp], k, n, mm_scale)?;
        let o = self.open.as_mut().unwrap();
        o.flat_image = flat;
        o.post_add = post_add;
        Ok(())
    }

    /// Conv (QDQ), QLinearConv and ConvInteger: an implicit GEMM over output pixels.
    fn conv(&mut self, node: &Node) -> Result<(), LowerError> {
        let g = self.g;
        let attrs = match &node.op {
            Op::Conv(a) | Op::QLinearConv(a) | Op::ConvInteger(a) => a.clone(),
            _ => unreachable!(),
        };
        let groups = attrs.group.max(1);
        let x = node
            .input(0)
            .ok_or_else(|| self.problem(node, "input missing"))?;
        let xs = g.value(x).shape.clone();
        let ys = g.value(node.outputs[0]).shape.clone();
        if xs.len() != 4 || xs[0] != 1 {
            return Err(self.problem(
                node,
                format!("only single 2-D images are lowered (input {xs:?})"),
            ));
        }
        let (cin, h, w) = (xs[1], xs[2], xs[3]);
        let (cout, oh, ow) = (ys[1], ys[2], ys[3]);
        // Operand positions per op: (weights, w_scale, w_zp), bias.
        let qlinear = matches!(node.op, Op::QLinearConv(_));
        let integer = matches!(node.op, Op::ConvInteger(_));
        // The input activation.
        let (a, range) = if qlinear {
            let a = self.qparams(node, 1, 2)?;
            self.close_at(x)?;
            if x == self.input_id {
                self.syms.insert(x, Sym::Q(a, a.hw_range()));
            }
            match self.syms.get(&x) {
                Some(Sym::Q(q, r)) if q.scale == a.scale && q.zp == a.zp => (a, *r),
                _ => {
                    return Err(
                        self.problem(node, "input must be an 8-bit activation with its scale")
                    )
                }
            }
        } else if integer {
            let xv = g.value(x);
            let (zp, dt) = zero_point(g, node.input(2), xv.dtype, "x_zero_point")?;
            let a = QParams {
                scale: 1.0,
                zp,
                dtype: dt,
            };
            if x == self.input_id {
                self.syms.insert(x, Sym::Q(a, a.hw_range()));
            }
            match self.syms.get(&x) {
                Some(Sym::Q(_, r)) => (a, *r),
                _ => return Err(self.problem(node, "input must be an 8-bit activation")),
            }
        } else {
            match self.syms.get(&x) {
                Some(Sym::Deq(a, r)) => (*a, *r),
                _ => return Err(self.problem(node, "input must be a dequantized 8-bit activation (float convolutions need --calib)")),
            }
        };
        // Weights [cout][cin][kh][kw] -> [(ky, kx, ci)][cout].
        let (wv, wscales, wzp) = if qlinear {
            let (wv, dt) = const_ints(g, node.input(3), "w")?;
            let sc = const_f32(g, node.input(4), "w_scale")?;
            let (zp, _) = zero_points(g, node.input(5), dt, cout, "w_zero_point")?;
            (wv, sc, zp)
        } else if integer {
            let (wv, dt) = const_ints(g, node.input(1), "w")?;
            let (zp, _) = zero_points(g, node.input(3), dt, cout, "w_zero_point")?;
            (wv, vec![1.0], zp)
        } else {
            let wid = node
                .input(1)
                .ok_or_else(|| self.problem(node, "weights missing"))?;
            let (wv, sc, zp, _) = self.weights_of_any(wid, node)?;
            (wv, sc, vec![zp])
        };
        let (kh, kw) = (attrs.kernel[0], attrs.kernel[1]);
        if !cin.is_multiple_of(groups) || !cout.is_multiple_of(groups) {
            return Err(self.problem(
                node,
                format!("{groups} groups do not divide {cin} input and {cout} output channels"),
            ));
        }
        // A grouped (or depthwise) convolution is one dense convolution whose weights are zero
        // between groups: output channel co reads input channels of its own group only.
        let (cin_g, cout_g) = (cin / groups, cout / groups);
        if wv.len() != cout * cin_g * kh * kw {
            return Err(self.problem(node, "weight tensor does not match the convolution's shape"));
        }
        let k = kh * kw * cin;
        let w_zp_of = |co: usize| wzp[co % wzp.len()] as i64;
        let mut wt = vec![0i64; k * cout];
        for co in 0..cout {
            let grp = co / cout_g;
            for ci in 0..cin {
                for ky in 0..kh {
                    for kx in 0..kw {
                        // Outside the group the weight is "zero": its zero point, which the
                        // lowering subtracts again.
                        wt[((ky * kw + kx) * cin + ci) * cout + co] = if ci / cin_g == grp {
                            wv[((co * cin_g + ci % cin_g) * kh + ky) * kw + kx]
                        } else {
                            w_zp_of(co)
                        };
                    }
                }
            }
        }
        let w_scales = per_channel(wscales, cout, "weight scale")?;
        let mm_scale: Vec<f32> = w_scales.iter().map(|&ws| a.scale * ws).collect();
        let pad_value = (a.zp + a.offset()).clamp(-128, 127) as i8;
        let geom = ConvGeom {
            cin,
            h,
            w,
            kh,
            kw,
            stride: attrs.strides,
            dilation: attrs.dilations,
            pads: attrs.pads,
            oh,
            ow,
            pad_value,
        };
        if let Some(last) = self.layers.last() {
            if last.conv.is_none() {
                return Err(self.problem(
                    node,
                    "a convolution after a fully connected layer is not lowered",
                ));
            }
        }
        self.start(node, a, range, wt, wzp, k, cout, mm_scale)?;
        self.open.as_mut().unwrap().conv = Some(geom);
        // Bias: int32 (QLinearConv input 8, or a DequantizeLinear'd int32 for QDQ Conv).
        let bias_in = if qlinear {
            node.input(8)
        } else if integer {
            None
        } else {
            node.input(2)
        };
        if let Some(b) = bias_in {
            let bias = match g.producer(b).map(|p| &g.nodes[p]) {
                Some(pn)
                    if matches!(pn.op, Op::DequantizeLinear { .. })
                        && g.constant(pn.input(0).unwrap_or(usize::MAX)).is_some() =>
                {
                    const_ints(g, pn.input(0), "bias")?.0
                }
                _ => {
                    const_ints(g, Some(b), "bias")
                        .map_err(|_| self.problem(node, "the bias must be int32 (quantized)"))?
                        .0
                }
            };
            let open = self.open.as_mut().unwrap();
            for (acc, v) in open.bias.iter_mut().zip(bias) {
                *acc = acc.wrapping_add(v as i32);
            }
        }
        if qlinear {
            let y = self.qparams(node, 6, 7)?;
            let w_sc = per_channel(const_f32(g, node.input(4), "w_scale")?, cout, "w_scale")?;
            let scales: Vec<f32> = w_sc.iter().map(|&ws| (a.scale * ws) / y.scale).collect();
            let open = self.open.take().unwrap();
            let bias = self.fold_bias(&open);
            let mut again = open.clone();
            again.prefix = Some((scales.clone(), y));
            self.reopen = Some((again, node.outputs[0]));
            let (lo, hi) = y.hw_range();
            self.layers.push(dense(
                &open,
                bias,
                QOut::Int8 {
                    scales,
                    zp: y.zp + y.offset(),
                    lo: lo as i8,
                    hi: hi as i8,
                },
            ));
            self.syms.insert(node.outputs[0], Sym::Q(y, y.hw_range()));
        } else if integer {
            let open = self.open.take().unwrap();
            let bias = self.fold_bias(&open);
            self.layers.push(dense(&open, bias, QOut::Int32));
            self.syms.insert(node.outputs[0], Sym::Int32);
        }
        Ok(())
    }

    /// Weights of any rank from a DequantizeLinear of integer constants, or integer-valued
    /// float constants (e.g. Brevitas' ternary weights after folding).
    fn weights_of_any(&self, id: ValueId, node: &Node) -> Result<Weights, LowerError> {
        let g = self.g;
        if let Some(p) = g.producer(id) {
            let pn = &g.nodes[p];
            if let Op::DequantizeLinear { .. } = pn.op {
                let (w, dt) = const_ints(g, pn.input(0), "weight")?;
                let scales = const_f32(g, pn.input(1), "weight scale")?;
                let (zp, _) = zero_point(g, pn.input(2), dt, "weight zero point")?;
                let shape = g.value(pn.input(0).unwrap()).shape.clone();
                return Ok((w, scales, zp, shape));
            }
        }
        if let Some(t) = g.constant(id) {
            let f = t.to_f32_vec();
            if f.iter()
                .all(|x| x.fract() == 0.0 && (-128.0..=127.0).contains(x))
            {
                return Ok((
                    f.iter().map(|&x| x as i64).collect(),
                    vec![1.0],
                    0,
                    t.shape.clone(),
                ));
            }
        }
        Err(self.problem(node, format!("weights '{}' must be a DequantizeLinear of integer constants, or integer-valued constants (float weights need --calib)", g.value(id).name)))
    }

    /// A QLinear op reading `x` directly (no DequantizeLinear between): if the open layer's
    /// epilogue ends in that quantized value, the layer closes here.
    fn close_at(&mut self, x: ValueId) -> Result<(), LowerError> {
        let Some(q) = self
            .open
            .as_ref()
            .filter(|o| o.cur == x)
            .and_then(|o| o.cur_q)
        else {
            return Ok(());
        };
        if matches!(self.syms.get(&x), Some(Sym::Epi)) {
            let r = self.close(x)?;
            self.syms.insert(x, Sym::Q(q, r));
        }
        Ok(())
    }

    fn qlinear_matmul(&mut self, node: &Node) -> Result<(), LowerError> {
        let g = self.g;
        let a = self.qparams(node, 1, 2)?;
        let x = node
            .input(0)
            .ok_or_else(|| self.problem(node, "input missing"))?;
        self.close_at(x)?;
        let range = if x == self.input_id {
            self.syms.insert(x, Sym::Q(a, a.hw_range()));
            a.hw_range()
        } else {
            match self.syms.get(&x) {
                Some(Sym::Q(q, r)) if q.scale == a.scale && q.zp == a.zp => *r,
                _ => {
                    return Err(
                        self.problem(node, "input A must be an 8-bit activation with its scale")
                    )
                }
            }
        };
        let (w, dt) = const_ints(g, node.input(3), "B")?;
        let shape = &g.value(node.input(3).unwrap()).shape;
        if shape.len() != 2 {
            return Err(self.problem(node, "B must be a 2-D constant"));
        }
        let (k, n) = (shape[0], shape[1]);
        let b_scales = per_channel(const_f32(g, node.input(4), "b_scale")?, n, "b_scale")?;
        let (b_zp, _) = zero_points(g, node.input(5), dt, n, "b_zero_point")?;
        let y = self.qparams(node, 6, 7)?;
        // onnxruntime: (a_scale * b_scale) / y_scale in binary32, then the fp32 requantizer.
        let scales: Vec<f32> = b_scales
            .iter()
            .map(|&bs| (a.scale * bs) / y.scale)
            .collect();
        self.start(node, a, range, w, b_zp, k, n, vec![1.0; n])?;
        let open = self.open.take().unwrap();
        let bias = self.fold_bias(&open);
        let off = y.offset();
        let (lo, hi) = y.hw_range();
        let mut again = open.clone();
        again.prefix = Some((scales.clone(), y));
        self.reopen = Some((again, node.outputs[0]));
        self.layers.push(dense(
            &open,
            bias,
            QOut::Int8 {
                scales,
                zp: y.zp + off,
                lo: lo as i8,
                hi: hi as i8,
            },
        ));
        self.syms.insert(node.outputs[0], Sym::Q(y, y.hw_range()));
        Ok(())
    }

    fn matmul_integer(&mut self, node: &Node) -> Result<(), LowerError> {
        let g = self.g;
        let x = node
            .input(0)
            .ok_or_else(|| self.problem(node, "input missing"))?;
        let xv = g.value(x);
        let (a_zp, a_dt) = zero_point(g, node.input(2), xv.dtype, "a_zero_point")?;
        let a = QParams {
            scale: 1.0,
            zp: a_zp,
            dtype: a_dt,
        };
        let range = if x == self.input_id {
            self.syms.insert(x, Sym::Q(a, a.hw_range()));
            a.hw_range()
        } else {
            match self.syms.get(&x) {
                Some(Sym::Q(_, r)) => *r,
                _ => return Err(self.problem(node, "input A must be an 8-bit activation")),
            }
        };
        let (w, dt) = const_ints(g, node.input(1), "B")?;
        let shape = &g.value(node.input(1).unwrap()).shape;
        if shape.len() != 2 {
            return Err(self.problem(node, "B must be a 2-D constant"));
        }
        let (b_zp, _) = zero_points(g, node.input(3), dt, shape[1], "b_zero_point")?;
        let (k, n) = (shape[0], shape[1]);
        self.start(node, a, range, w, b_zp, k, n, vec![1.0; n])?;
        let open = self.open.take().unwrap();
        let bias = self.fold_bias(&open);
        self.layers.push(dense(&open, bias, QOut::Int32));
        self.syms.insert(node.outputs[0], Sym::Int32);
        Ok(())
    }

    /// Bias with the input zero point folded in: sum_k (x - z) w = sum_k x w - z sum_k w.
    fn fold_bias(&self, o: &Open) -> Vec<i32> {
        let (k, n) = (o.k, o.n);
        (0..n)
            .map(|col| {
                let s: i64 = (0..k).map(|r| o.weights[r * n + col] as i64).sum();
                (o.bias[col] as i64 - o.x_zp_hw as i64 * s) as i32
            })
            .collect()
    }

    /// Closes the open layer whose epilogue ends in the quantized value `q_value`: the
    /// epilogue becomes a per-channel threshold set. Returns the output's hw range.
    fn close(&mut self, q_value: ValueId) -> Result<(i32, i32), LowerError> {
        let mut o = self.open.take().expect("open layer");
        let q = o.cur_q.expect("quantized epilogue");
        // Elementwise operators on this layer's dequantized output may reopen it.
        self.reopen = Some((o.clone(), q_value));
        let (k, n) = (o.k, o.n);
        let mut bias = self.fold_bias(&o);
        // Accumulator bounds per channel from the input's hw range.
        let (xl, xh) = (o.x_range.0 as i64, o.x_range.1 as i64);
        let mut bounds: Vec<(i64, i64)> = (0..n)
            .map(|c| {
                let (mut lo, mut hi) = (bias[c] as i64, bias[c] as i64);
                for r in 0..k {
                    let w = o.weights[r * n + c] as i64;
                    lo += (w * xl).min(w * xh);
                    hi += (w * xl).max(w * xh);
                }
                // The f32 conversion of acc (exact below 2^24) is what the epilogue sees.
                match &o.row_mul {
                    // Per-row multipliers in 0..=max scale the range (and 0 is reachable).
                    Some(v) => {
                        let mul = *v.iter().max().unwrap_or(&1) as i64;
                        (lo.min(lo * mul).min(0), hi.max(hi * mul).max(0))
                    }
                    None => (lo, hi),
                }
            })
            .collect();
        // The epilogue, evaluated exactly as the reference interpreter does, on batches of
        // accumulator values (one row per probe, one column per channel).
        let eval = |accs: &[Vec<i64>]| -> Result<Vec<Vec<i32>>, LowerError> {
            let rows = accs.len();
            let mut sg = subgraph(self.g, &[o.mm_value], &o.epi, q_value, rows);
            if o.probe_2d {
                rows_by_last_dim(&mut sg, rows, n);
            }
            let t = match &o.prefix {
                None => {
                    let mut data = Vec::with_capacity(rows * n);
                    for row in accs {
                        data.extend(row.iter().zip(&o.mm_scale).enumerate().map(
                            |(c, (&a, &s))| match &o.post_add {
                                Some(b) => a as f32 * s + b[c],
                                None => a as f32 * s,
                            },
                        ));
                    }
                    Tensor::new(vec![rows, n], TensorData::F32(data))
                }
                Some((scales, y)) => {
                    // The fused layer's own binary32 requantization, in the logical domain.
                    let (lo, hi) = y.range();
                    let q: Vec<i32> = accs
                        .iter()
                        .flat_map(|row| {
                            (0..n).map(move |c| {
                                let a = row[c].clamp(i32::MIN as i64, i32::MAX as i64) as i32;
                                ((a as f32 * scales[c]).round_ties_even() as i64 + y.zp as i64)
                                    .clamp(lo as i64, hi as i64)
                                    as i32
                            })
                        })
                        .collect();
                    let data = if y.dtype == DType::U8 {
                        TensorData::U8(q.iter().map(|&v| v as u8).collect())
                    } else {
                        TensorData::I8(q.iter().map(|&v| v as i8).collect())
                    };
                    Tensor::new(vec![rows, n], data)
                }
            }
            .map_err(|e| err(e.to_string()))?;
            let out = crate::interp::run(&sg, &[t])
                .map_err(|e| err(format!("layer '{}': evaluating its epilogue: {e}", o.name)))?;
            let v = if o.q_float {
                // A QONNX quantizer's dequantized output: back to its integers.
                Some(
                    out[0]
                        .to_f32_vec()
                        .iter()
                        .map(|&y| (y / q.scale).round_ties_even() as i32 + q.zp)
                        .collect(),
                )
            } else {
                tensor_ints(&out[0])
            };
            let v = v.ok_or_else(|| {
                err(format!(
                    "layer '{}': epilogue does not end in integers",
                    o.name
                ))
            })?;
            Ok(v.chunks(n).map(|c| c.to_vec()).collect())
        };
        let ends = eval(&[
            bounds.iter().map(|b| b.0).collect(),
            bounds.iter().map(|b| b.1).collect(),
        ])?;
        // Decreasing channels: negate their weights and bias so every channel increases.
        let mut neg = vec![false; n];
        for c in 0..n {
            if ends[0][c] > ends[1][c] {
                neg[c] = true;
                for r in 0..k {
                    o.weights[r * n + c] = -o.weights[r * n + c];
                }
                bias[c] = -bias[c];
                bounds[c] = (-bounds[c].1, -bounds[c].0);
            }
        }
        let f_lo: Vec<i32> = (0..n)
            .map(|c| if neg[c] { ends[1][c] } else { ends[0][c] })
            .collect();
        let f_hi: Vec<i32> = (0..n)
            .map(|c| if neg[c] { ends[0][c] } else { ends[1][c] })
            .collect();
        let base = *f_lo.iter().min().unwrap();
        let top = *f_hi.iter().max().unwrap();
        let step = o.q_step.max(1);
        if (top - base) % step != 0 {
            return Err(err(format!(
                "layer '{}': output levels are not a multiple of the quantizer's step {step}",
                o.name
            )));
        }
        let count = ((top - base) / step) as usize;
        if count > 255 {
            return Err(err(format!(
                "layer '{}': its output takes {} levels; thresholds hold at most 255",
                o.name,
                count + 1
            )));
        }
        // Bisection for every level and channel at once: thr[j][c] = min acc with f >= base+1+j.
        let mut lo: Vec<Vec<i64>> = vec![bounds.iter().map(|b| b.0).collect(); count];
        let mut hi: Vec<Vec<i64>> = vec![bounds.iter().map(|b| b.1 + 1).collect(); count];
        loop {
            let mut mids = vec![vec![0i64; n]; count];
            let mut active = false;
            for j in 0..count {
                for c in 0..n {
                    mids[j][c] = lo[j][c] + (hi[j][c] - lo[j][c]) / 2;
                    active |= lo[j][c] < hi[j][c];
                }
            }
            if !active || count == 0 {
                break;
            }
            let probes: Vec<Vec<i64>> = mids
                .iter()
                .map(|row| {
                    row.iter()
                        .enumerate()
                        .map(|(c, &a)| if neg[c] { -a } else { a })
                        .collect()
                })
                .collect();
            let f = eval(&probes)?;
            for j in 0..count {
                for c in 0..n {
                    if lo[j][c] >= hi[j][c] {
                        continue;
                    }
                    if f[j][c] >= base + step * (1 + j as i32) {
                        hi[j][c] = mids[j][c];
                    } else {
                        lo[j][c] = mids[j][c] + 1;
                    }
                }
            }
        }
        let thresholds: Vec<Vec<i32>> = (0..count)
            .map(|j| {
                (0..n)
                    .map(|c| {
                        let t = lo[j][c];
                        if t > bounds[c].1 {
                            i32::MAX
                        } else if t <= bounds[c].0 && f_lo[c] >= base + step * (1 + j as i32) {
                            i32::MIN
                        } else {
                            t.clamp(i32::MIN as i64, i32::MAX as i64) as i32
                        }
                    })
                    .collect()
            })
            .collect();
        let off = q.offset();
        // Output range in the hw domain.
        let range = ((base + off).clamp(-128, 127), (top + off).clamp(-128, 127));
        // A plain requantization reproduces the same function with two parameter lines
        // instead of `count` threshold lines: use it when it provably does.
        if step == 1 && count > 2 && !neg.iter().any(|&x| x) {
            if let Some((scales, beta)) =
                requant_equivalent(&o.mm_scale, q, &thresholds, &bounds, base, top)
            {
                let bias = bias
                    .iter()
                    .zip(&beta)
                    .map(|(&b, &x)| b.wrapping_add(x))
                    .collect();
                let layer = dense(
                    &o,
                    bias,
                    QOut::Int8 {
                        scales,
                        zp: q.zp + off,
                        lo: range.0 as i8,
                        hi: range.1 as i8,
                    },
                );
                self.layers.push(layer);
                return Ok(range);
            }
        }
        let layer = dense(
            &o,
            bias,
            QOut::Thresh {
                thresholds,
                base: (base + off).clamp(-128, 127) as i8,
                step: step as i8,
            },
        );
        self.layers.push(layer);
        Ok(range)
    }
}

/// Per-channel binary32 requantizations equal to a threshold set on the whole accumulator
/// range: `clamp(round_half_even(f32(acc + beta[c]) * scale[c]) + zp, base, top)` with
/// `scale[c] = mm_scale[c] / q.scale` and an integer `beta[c]` (the epilogue's bias in
/// accumulator units). Both functions are monotone, so agreeing on both sides of every
/// threshold inside the accumulator bounds makes them equal there; any channel that does not
/// agree for some small `beta` keeps the thresholds (None). Levels are logical integers.
fn requant_equivalent(
    mm_scale: &[f32],
    q: QParams,
    thresholds: &[Vec<i32>],
    bounds: &[(i64, i64)],
    base: i32,
    top: i32,
) -> Option<(Vec<f32>, Vec<i32>)> {
    let mut scales = Vec::with_capacity(mm_scale.len());
    let mut betas = Vec::with_capacity(mm_scale.len());
    for (c, &ms) in mm_scale.iter().enumerate() {
        let s0 = ms / q.scale;
        if !(s0.is_finite() && s0 > 0.0) {
            return None;
        }
        let g = |acc: i64, beta: i64, s: f32| -> Option<i32> {
            let a = i32::try_from(acc + beta).ok()?;
            let v = (a as f32 * s).round_ties_even() as i64 + q.zp as i64;
            Some(v.clamp(base as i64, top as i64) as i32)
        };
        let agrees = |beta: i64, s: f32| -> bool {
            thresholds.iter().enumerate().all(|(j, thr)| {
                let level = base + 1 + j as i32;
                let (lo, hi) = bounds[c];
                match thr[c] {
                    i32::MAX => g(hi, beta, s).is_some_and(|v| v < level),
                    i32::MIN => g(lo, beta, s).is_some_and(|v| v >= level),
                    t => {
                        let t = t as i64;
                        g(t, beta, s).is_some_and(|v| v >= level)
                            && (t - 1 < lo || g(t - 1, beta, s).is_some_and(|v| v < level))
                    }
                }
            })
        };
        // Estimate beta from the first threshold inside the bounds:
        // (t + beta) * s crosses level - zp - 1/2 there.
        let (j, t) = thresholds.iter().enumerate().find_map(|(j, thr)| {
            (thr[c] != i32::MIN && thr[c] != i32::MAX).then_some((j, thr[c]))
        })?;
        let level = (base + 1 + j as i32 - q.zp) as f64 - 0.5;
        let est = (level / s0 as f64 - t as f64).round() as i64;
        // The epilogue rounds in its own order (a division by the output scale, a float bias):
        // the scale that reproduces it may be a few ulps away from the quotient.
        let found = (0..=8i32)
            .flat_map(|u| [u, -u])
            .map(|u| f32::from_bits((s0.to_bits() as i64 + u as i64) as u32))
            .find_map(|s| {
                (-3..=3)
                    .map(|d| est + d)
                    .find(|&b| agrees(b, s))
                    .map(|b| (s, b))
            });
        let (s, beta) = found?;
        scales.push(s);
        betas.push(i32::try_from(beta).ok()?);
    }
    Some((scales, betas))
}

/// Elements of the tensor the program takes: the model input's, or the host pre-processing
/// graph's output when that changes the shape (a float first layer the host computes).
fn program_numel(input: &QIo) -> usize {
    match &input.host {
        Some(h) => h.value(h.outputs[0]).shape.iter().product(),
        None => input.shape.iter().product(),
    }
}

/// Gives every computed value of a probe sub-graph the shape [rows, last dim] (an identity
/// layer over the last dim of a tensor of higher rank).
fn rows_by_last_dim(sg: &mut Graph, rows: usize, n: usize) {
    for id in 0..sg.values.len() {
        if sg.constant(id).is_none() {
            sg.values[id].shape = vec![rows, n];
        }
    }
}

/// int8 weights, plus a second int8 matrix when some weight (after its zero point) lies outside
/// int8: w = w1 + w2, and the layer runs the input through both (twice the k-tiles).
fn split_weights(w: &[i32]) -> (Vec<i8>, Option<Vec<i8>>) {
    let w1: Vec<i8> = w.iter().map(|&x| x.clamp(-128, 127) as i8).collect();
    if w.iter().all(|&x| (-128..=127).contains(&x)) {
        return (w1, None);
    }
    let w2 = w
        .iter()
        .zip(&w1)
        .map(|(&x, &a)| (x - a as i32) as i8)
        .collect();
    (w1, Some(w2))
}

/// The layer an open layer becomes, with its (zero-point-folded) bias and output.
fn dense(o: &Open, bias: Vec<i32>, out: QOut) -> QDense {
    let (weights, weights2) = split_weights(&o.weights);
    QDense {
        name: o.name.clone(),
        k: o.k,
        n: o.n,
        weights,
        weights2,
        conv: o.conv,
        pool: None,
        flat_image: o.flat_image,
        row_mul: o.row_mul.clone(),
        bias,
        out,
    }
}

fn tensor_ints(t: &Tensor) -> Option<Vec<i32>> {
    match &t.data {
        TensorData::I8(v) => Some(v.iter().map(|&x| x as i32).collect()),
        TensorData::U8(v) => Some(v.iter().map(|&x| x as i32).collect()),
        TensorData::I32(v) => Some(v.clone()),
        _ => None,
    }
}

impl QParams {
    fn hw_range(&self) -> (i32, i32) {
        (-128, 127)
    }
}

/// Evaluates every node whose inputs are all constants (weight quantizers, bias
/// DequantizeLinear, ...) with the reference interpreter and makes its outputs constants.
pub fn fold_constants(g: &Graph) -> Result<Graph, LowerError> {
    let mut g = g.clone();
    for ni in 0..g.nodes.len() {
        let n = &g.nodes[ni];
        if n.inputs.iter().flatten().all(|i| g.consts.contains_key(i))
            && n.outputs.iter().all(|o| !g.consts.contains_key(o))
        {
            let mut sg = Graph {
                name: "fold".into(),
                opset: g.opset,
                ..Default::default()
            };
            let mut map = HashMap::new();
            let mut ins = Vec::new();
            for i in &n.inputs {
                ins.push(i.map(|id| {
                    *map.entry(id).or_insert_with(|| {
                        let v = g.value(id);
                        let nid = sg.add_value(&v.name, v.shape.clone(), v.dtype);
                        sg.consts.insert(nid, g.consts[&id].clone());
                        nid
                    })
                }));
            }
            let outs: Vec<ValueId> = n
                .outputs
                .iter()
                .map(|&o| {
                    let v = g.value(o);
                    sg.add_value(&v.name, v.shape.clone(), v.dtype)
                })
                .collect();
            sg.outputs = outs.clone();
            sg.nodes.push(Node {
                name: n.name.clone(),
                op: n.op.clone(),
                inputs: ins,
                outputs: outs,
            });
            let res = crate::interp::run(&sg, &[])
                .map_err(|e| err(format!("node '{}': folding constants: {e}", n.name)))?;
            for (o, t) in n.outputs.clone().into_iter().zip(res) {
                g.consts.insert(o, t);
            }
        }
    }
    Ok(g)
}

/// Lowers a graph to the quantized IR.
pub fn to_qir(g: &Graph) -> Result<QModel, LowerError> {
    if g.inputs.len() != 1 || g.outputs.len() != 1 {
        return Err(err(format!(
            "only single-input, single-output networks are lowered yet (this one has {} inputs and {} outputs)",
            g.inputs.len(),
            g.outputs.len()
        )));
    }
    let folded = fold_constants(g)?;
    let g = &folded;
    let mut l = Lowerer {
        g,
        syms: HashMap::new(),
        layers: Vec::new(),
        input: None,
        input_id: g.inputs[0],
        pre: Vec::new(),
        open: None,
        reopen: None,
        last_dq: None,
        input_affine: HashSet::new(),
        input_bipolar: false,
    };
    // An input annotated as integers (FINN datatype) is 8-bit data as it is.
    if let Some(&range) = g.int_inputs.get(&g.inputs[0]) {
        let v = g.value(g.inputs[0]);
        if matches!(v.dtype, DType::F32 | DType::I8) && range.0 >= -128 && range.1 <= 127 {
            let q = QParams {
                scale: 1.0,
                zp: 0,
                dtype: DType::I8,
            };
            l.input = Some(QIo {
                name: v.name.clone(),
                shape: v.shape.clone(),
                dtype: v.dtype,
                quant: Some((1.0, 0)),
                offset: 0,
                host: None,
            });
            l.syms.insert(g.inputs[0], Sym::Deq(q, range));
            l.input_affine.insert(g.inputs[0]);
        }
    }
    let mut tail: Option<usize> = None;
    // Why the node that starts the host tail could not run on the accelerator.
    let mut tail_err: Option<LowerError> = None;
    for ni in 0..g.nodes.len() {
        if let Err(e) = l.node(ni) {
            // Operators the accelerator does not run, after the last layer's dequantized
            // output, form a float tail that the host computes (as FINN leaves its tails).
            let data = g.nodes[ni]
                .inputs
                .iter()
                .flatten()
                .find(|i| g.constant(**i).is_none())
                .copied();
            // (through shape-only operators after that DequantizeLinear, which join the tail)
            let mut start = ni;
            let mut src = data;
            while let Some(p) = src.and_then(|x| g.producer(x)) {
                if !shape_only(&g.nodes[p].op) || l.last_dq.is_some_and(|(d, _)| d == p) {
                    break;
                }
                start = p;
                src = g.nodes[p].input(0);
            }
            let on_output = src.is_some_and(|x| {
                matches!(l.syms.get(&x), Some(Sym::Deq(..)))
                    && l.last_dq.is_some_and(|(d, _)| g.nodes[d].outputs[0] == x)
            });
            if l.open.is_none() && on_output {
                tail = Some(start);
                tail_err = Some(e);
                break;
            }
            // A layer the compiler added that no quantizer ends: the host runs its operator
            // and everything after it instead.
            if let Some(start) = l.rollback_synthetic() {
                tail = Some(start);
                tail_err = Some(e);
                break;
            }
            // The same after a layer whose float epilogue is still open (no quantizer follows):
            // the epilogue and everything after it run on the host.
            let on_open = l
                .open
                .as_ref()
                .is_some_and(|o| data == Some(o.cur) && o.cur_q.is_none() && o.prefix.is_none());
            if on_open {
                let rest: Vec<usize> = (ni..g.nodes.len())
                    .filter(|&i| {
                        !g.nodes[i]
                            .inputs
                            .iter()
                            .flatten()
                            .all(|x| g.constant(*x).is_some())
                    })
                    .collect();
                l.open.as_mut().unwrap().epi.extend(rest);
                l.syms.insert(g.outputs[0], Sym::Epi);
                break;
            }
            return Err(e);
        }
    }
    let out_id = g.outputs[0];
    let v = g.value(out_id);
    if tail.is_none() && !l.layers.is_empty() {
        tail = l.rollback_synthetic();
    }
    if l.layers.is_empty() && l.open.is_none() {
        // No arithmetic at all (shape changes of a quantized tensor): the program copies it
        // through an identity layer over the output's last dim.
        if let Some(sym @ (Sym::Q(q, r) | Sym::Deq(q, r))) = l.syms.get(&out_id).copied() {
            let node = Node {
                name: "copy".into(),
                op: Op::Identity,
                inputs: vec![Some(out_id)],
                outputs: vec![out_id],
            };
            l.push_identity(&node, usize::MAX, out_id, q, r, Synth::Copy)?;
            l.syms.insert(out_id, sym);
        }
    }
    if let Some(start) = tail {
        let (dq_ni, q_value) = l.last_dq.unwrap();
        let mut nodes = vec![dq_ni];
        nodes.extend((start..g.nodes.len()).filter(|&i| {
            !g.nodes[i]
                .inputs
                .iter()
                .flatten()
                .all(|x| g.constant(*x).is_some())
        }));
        let sg = subgraph(g, &[q_value], &nodes, out_id, 0);
        let Some(Sym::Deq(q, _)) = l.syms.get(&g.nodes[dq_ni].outputs[0]).copied() else {
            unreachable!()
        };
        let output = QIo {
            name: v.name.clone(),
            shape: v.shape.clone(),
            dtype: DType::F32,
            quant: Some((q.scale, q.zp)),
            offset: q.offset(),
            host: Some(sg),
        };
        let input = l
            .input
            .ok_or_else(|| err("the graph input is never quantized"))?;
        if l.layers.is_empty() {
            return Err(tail_err
                .unwrap_or_else(|| err("the network has no matrix product to run on the array")));
        }
        let m = match &l.layers[0].conv {
            Some(_) => 1,
            None => program_numel(&input) / l.layers[0].k.max(1),
        };
        return Ok(QModel {
            name: g.name.clone(),
            m,
            input,
            input_bipolar: l.input_bipolar,
            layers: l.layers,
            output,
        });
    }
    let output = match (l.syms.get(&out_id).copied(), l.open.take()) {
        (Some(Sym::Deq(q, _)), None) => QIo {
            name: v.name.clone(),
            shape: v.shape.clone(),
            dtype: DType::F32,
            quant: Some((q.scale, q.zp)),
            offset: q.offset(),
            host: None,
        },
        (Some(Sym::Q(q, _)), None) => QIo {
            name: v.name.clone(),
            shape: v.shape.clone(),
            dtype: q.dtype,
            quant: Some((q.scale, q.zp)),
            offset: q.offset(),
            host: None,
        },
        (Some(Sym::Int32), None) => QIo {
            name: v.name.clone(),
            shape: v.shape.clone(),
            dtype: DType::I32,
            quant: None,
            offset: 0,
            host: None,
        },
        (Some(Sym::Epi), Some(o)) if o.prefix.is_some() => {
            // A fused layer followed by a float tail: keep its int8 output, the host runs the
            // tail from there.
            let (scales, y) = o.prefix.clone().unwrap();
            let bias = l.fold_bias(&o);
            let (lo, hi) = y.hw_range();
            l.layers.push(dense(
                &o,
                bias,
                QOut::Int8 {
                    scales,
                    zp: y.zp + y.offset(),
                    lo: lo as i8,
                    hi: hi as i8,
                },
            ));
            let sg = subgraph(g, &[o.mm_value], &o.epi, out_id, 1);
            QIo {
                name: v.name.clone(),
                shape: v.shape.clone(),
                dtype: DType::F32,
                quant: Some((y.scale, y.zp)),
                offset: y.offset(),
                host: Some(sg),
            }
        }
        (Some(Sym::Epi), Some(o)) => {
            // A float tail after the last matrix product: the program returns the int32
            // accumulators and the host applies the tail (as FINN leaves a final scale to the host).
            if o.cur_q.is_some() {
                return Err(err(format!(
                    "output '{}': a quantized output without its DequantizeLinear is not supported",
                    v.name
                )));
            }
            let bias = l.fold_bias(&o);
            let n = o.n;
            // Host graph: int32 acc -> float value of the matrix product -> the tail.
            // (a convolution keeps its NCHW image shape; its scale broadcasts per channel).
            // The host runs it on the whole tensor in the model's shapes (a Gemm's matrix bias
            // differs per row).
            let image = o.conv.is_some();
            let mut sg = subgraph(g, &[o.mm_value], &o.epi, out_id, 0);
            let scale_shape = if image { vec![n, 1, 1] } else { vec![n] };
            let scale_id = sg.add_value("systole_mm_scale", scale_shape.clone(), DType::F32);
            sg.consts.insert(
                scale_id,
                Tensor::new(scale_shape, TensorData::F32(o.mm_scale.clone()))
                    .map_err(|e| err(e.to_string()))?,
            );
            let acc_shape = g.value(o.mm_value).shape.clone();
            let acc_in = sg.add_value("systole_acc", acc_shape.clone(), DType::F32);
            let mm_in = sg.inputs[0];
            let mut scaled = mm_in;
            if let Some(b) = &o.post_add {
                // Gemm's beta * C after the scale.
                scaled = sg.add_value("systole_scaled", acc_shape, DType::F32);
                let c_id = sg.add_value("systole_gemm_c", vec![n], DType::F32);
                sg.consts.insert(
                    c_id,
                    Tensor::new(vec![n], TensorData::F32(b.clone()))
                        .map_err(|e| err(e.to_string()))?,
                );
                sg.nodes.insert(
                    0,
                    Node {
                        name: "systole_gemm_bias".into(),
                        op: Op::Add,
                        inputs: vec![Some(scaled), Some(c_id)],
                        outputs: vec![mm_in],
                    },
                );
            }
            sg.nodes.insert(
                0,
                Node {
                    name: "systole_scale".into(),
                    op: Op::Mul,
                    inputs: vec![Some(acc_in), Some(scale_id)],
                    outputs: vec![scaled],
                },
            );
            sg.inputs = vec![acc_in];
            l.layers.push(dense(&o, bias, QOut::Int32));
            QIo {
                name: v.name.clone(),
                shape: v.shape.clone(),
                dtype: DType::F32,
                quant: None,
                offset: 0,
                host: Some(sg),
            }
        }
        _ => {
            return Err(err(format!(
                "output '{}' is not produced by a quantized layer",
                v.name
            )))
        }
    };
    let input = l
        .input
        .ok_or_else(|| err("the graph input is never quantized"))?;
    if l.layers.is_empty() {
        return Err(err("the network has no matrix product to run on the array"));
    }
    let numel = program_numel(&input);
    let m = match &l.layers[0].conv {
        Some(cv) => {
            if numel != cv.cin * cv.h * cv.w {
                return Err(err(format!(
                    "input of {numel} elements is not the first convolution's {}x{}x{} image",
                    cv.cin, cv.h, cv.w
                )));
            }
            1
        }
        None => {
            let k0 = l.layers[0].k;
            if !numel.is_multiple_of(k0) {
                return Err(err(format!(
                    "input of {numel} elements is not a whole number of {k0}-element rows"
                )));
            }
            numel / k0
        }
    };
    for w in l.layers.windows(2) {
        let ok = match (&w[0].conv, &w[1].conv) {
            (Some(_), None) => w[1].flat_image.is_some(),
            (None, None) => w[0].n == w[1].k,
            (Some(a), Some(b)) => {
                let (oh, ow) = w[0].pool.map_or((a.oh, a.ow), |p| (p.oh, p.ow));
                w[0].n == b.cin && oh == b.h && ow == b.w
            }
            (None, Some(_)) => false,
        };
        if !ok {
            return Err(err(format!("layer '{}' does not feed '{}' the way they are lowered (dense after convolution needs a Flatten reorder, not lowered yet)", w[0].name, w[1].name)));
        }
        if matches!(w[0].out, QOut::Int32) {
            return Err(err(format!(
                "layer '{}' has an int32 output that another layer consumes",
                w[0].name
            )));
        }
    }
    let last = l.layers.last().unwrap();
    let n_last = last.n;
    let expect = match &last.conv {
        Some(cv) => last
            .pool
            .map_or(n_last * cv.oh * cv.ow, |p| n_last * p.oh * p.ow),
        None => m * n_last,
    };
    // (a host tail may change the shape: TopK, pooling, ...)
    if output.host.is_none()
        && (output.shape.iter().product::<usize>() != expect
            || (last.conv.is_none() && output.shape.last().copied() != Some(n_last)))
    {
        return Err(err(format!(
            "output '{}' {:?} is not what the last layer produces",
            output.name, output.shape
        )));
    }
    Ok(QModel {
        name: g.name.clone(),
        m,
        input,
        input_bipolar: l.input_bipolar,
        layers: l.layers,
        output,
    })
}

fn align(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

/// One row in the per-layer compile report.
#[derive(Debug, Clone)]
pub struct LayerReport {
    pub name: String,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub macs: u64,
    pub tiling: Tiling,
    pub instructions: usize,
    pub weight_bytes: usize,
    /// How the layer runs, in a few words each (`systole compile --report`): the convolution
    /// schedule and what the compiler did to the layer (packed kernel columns, a padding pass).
    pub schedule: Vec<String>,
}

/// The threshold set equal to `requant_f32(acc, scales[c], zp, lo, hi)` for every int32 `acc`
/// except possibly i32::MAX: threshold j of channel c is the least acc whose output reaches
/// lo + 1 + j (found by bisection; the function is monotone for a positive scale). None when a
/// scale is not positive and finite.
fn requant_thresholds(scales: &[f32], zp: i32, lo: i8, hi: i8) -> Option<Vec<Vec<i32>>> {
    if scales.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return None;
    }
    let levels = (hi as i32 - lo as i32).max(0) as usize;
    let mut t = vec![vec![0i32; scales.len()]; levels];
    for (c, &s) in scales.iter().enumerate() {
        for (j, row) in t.iter_mut().enumerate() {
            let want = lo as i32 + 1 + j as i32;
            let (mut a, mut b) = (i32::MIN as i64, i32::MAX as i64 + 1);
            while a < b {
                let mid = a + (b - a) / 2;
                if requant_f32(mid as i32, s, zp, lo, hi) as i32 >= want {
                    b = mid;
                } else {
                    a = mid + 1;
                }
            }
            row[c] = a.min(i32::MAX as i64) as i32;
        }
    }
    Some(t)
}

/// Each channel's thresholds in ascending order: the hardware's binary search counts the
/// thresholds reached only when they ascend, and the count does not depend on their order.
fn ascending(thresholds: &[Vec<i32>]) -> Vec<Vec<i32>> {
    let mut t = thresholds.to_vec();
    let lanes = t.first().map_or(0, Vec::len);
    for c in 0..lanes {
        let mut col: Vec<i32> = t.iter().map(|row| row[c]).collect();
        col.sort_unstable();
        for (row, v) in t.iter_mut().zip(col) {
            row[c] = v;
        }
    }
    t
}

/// Emits the program for a quantized model.
pub fn to_program(
    arch: &ArchConfig,
    q: &QModel,
) -> Result<(Program, Vec<LayerReport>), LowerError> {
    if !arch.ppu.integer_lanes {
        // Every layer's epilogue adds its bias (and binary layers rescale) with `alu`.
        return Err(err(format!(
            "arch '{}' has no integer PPU lanes (ppu.integer_lanes = false): compiled layers \
             add their bias with `alu`; run hand-written programs (`systole asm`) on it",
            arch.name
        )));
    }
    let (r, c) = (arch.array.rows as u64, arch.array.cols as u64);
    let m = q.m;
    let mut data = Vec::new();
    let mut code = Vec::new();
    let mut report = Vec::new();
    // The input: dense rows of k0 bytes (+ slack: the last tile of the last row reads past k).
    // (a convolution's input is NHWC with `cin` bytes per pixel).
    let (in_rows, k0) = match &q.layers[0].conv {
        Some(cv) => ((cv.h * cv.w) as u64, cv.cin as u64),
        None => (m as u64, q.layers[0].k as u64),
    };
    let a_addr = 0u64;
    // (slack: the last line of a row, or a packing pass's last line, reads past k)
    let mut next = align(in_rows * k0 + r.max(c), 64);
    // Layers that run on the XNOR-popcount datapath: bipolar weights and bipolar inputs
    // (the program's, or the layer before's one-threshold {-1, +1} output), on an arch with
    // the binary precision. A first layer of several rows needs whole lines per row, since
    // its packing pass reads whole lines.
    let binary: Vec<bool> = q
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            arch.supports(Precision::Binary)
                && l.bipolar_weights()
                && match i {
                    0 => q.input_bipolar && (m == 1 || l.k % c as usize == 0),
                    _ => q.layers[i - 1].bipolar_out(),
                }
        })
        .collect();
    let mut a = (a_addr, k0);
    let pitch_unit = r.max(c) * r.min(c) / gcd(r, c);
    let mut out_desc_addr = 0;
    let mut out_pitch = 0;
    for (i, l) in q.layers.iter().enumerate() {
        let pack_out = binary.get(i + 1).copied().unwrap_or(false);
        if binary[i] && i == 0 {
            // The program's bipolar bytes become bits on chip first.
            let out_pitch = align(packed_row_bytes(arch, l.k) as u64, pitch_unit);
            let out_addr = reserve(&mut next, m as u64 * out_pitch + r);
            let param_addr = place(&mut data, &mut next, pack_threshold_line(arch));
            let pass = PackPass {
                m,
                k: l.k,
                in_addr: a.0,
                in_pitch: a.1,
                out_addr,
                out_pitch,
                param_addr,
            };
            emit_pack(arch, &pass, &mut code)
                .map_err(|e| err(format!("layer '{}' input packing: {e}", l.name)))?;
            a = (out_addr, out_pitch);
        }
        let (mut extra, out): (Vec<Vec<i32>>, OutMode) = match &l.out {
            // Without the binary32 lanes: the same function as a threshold set.
            QOut::Int8 { scales, zp, lo, hi } if !arch.ppu.fp32_requant => {
                let thresholds = requant_thresholds(scales, *zp, *lo, *hi).ok_or_else(|| {
                    err(format!(
                        "layer '{}': a binary32 requantization with a scale that is not positive \
                         and finite needs the binary32 lanes (ppu.fp32_requant = true)",
                        l.name
                    ))
                })?;
                let count = thresholds.len() as u32;
                if count > arch.ppu.max_thresholds {
                    return Err(err(format!(
                        "layer '{}': its binary32 requantization as thresholds needs {count}; \
                         arch '{}' holds at most {} (ppu.max_thresholds)",
                        l.name, arch.name, arch.ppu.max_thresholds
                    )));
                }
                (
                    thresholds,
                    OutMode::Thresh {
                        count,
                        base: *lo,
                        step: 1,
                    },
                )
            }
            QOut::Int8 { scales, zp, lo, hi } => (
                vec![
                    scales.iter().map(|s| s.to_bits() as i32).collect(),
                    vec![0; l.n],
                ],
                OutMode::Int8 {
                    zp: *zp,
                    lo: *lo,
                    hi: *hi,
                    fp32: true,
                    store_lanes: arch.ppu.store_requant && !pack_out,
                },
            ),
            QOut::Thresh {
                thresholds,
                base,
                step,
            } => (
                {
                    if thresholds.len() > arch.ppu.max_thresholds as usize {
                        return Err(err(format!(
                            "layer '{}': needs {} thresholds; arch '{}' holds at most {} \
                             (ppu.max_thresholds)",
                            l.name,
                            thresholds.len(),
                            arch.name,
                            arch.ppu.max_thresholds
                        )));
                    }
                    ascending(thresholds)
                },
                OutMode::Thresh {
                    count: thresholds.len() as u32,
                    base: *base,
                    step: *step,
                },
            ),
            QOut::Int32 => (vec![], OutMode::Int32),
        };
        if pack_out {
            // Lanes past n must pack to 0 bits (the next layer's padding weights are 1s):
            // thresholds nothing reaches make them -1.
            let lanes = l.n.div_ceil(c as usize) * c as usize;
            extra.iter_mut().for_each(|v| v.resize(lanes, i32::MAX));
        }
        let ru = arch.array.rows as usize;
        // (The layer's instructions start here: a padding pass counts as the layer's.)
        let before = code.len();
        // Where only left or right padding keeps a first layer with few channels from packing
        // kernel columns into lines, a padding pass copies its image into rows with padding
        // bytes around them first (`PadPass`), and the layer reads that image (`a_in`,
        // `conv_in`): taken when the array lines saved outweigh twice the pass's DRAM traffic.
        let (a_in, conv_in) = match l.conv.filter(|_| !binary[i]).and_then(|cv| {
            PadPass::plan(arch, &cv, l.n, a.0, a.1 as usize).map(|(p, g)| (p, g, cv.pads[1]))
        }) {
            Some((pass, padded, pad_left)) => {
                let pass = PadPass {
                    param_addr: place(&mut data, &mut next, crate::gemm::pool_params(arch)),
                    out_addr: reserve(&mut next, pass.out_bytes(arch)),
                    ..pass
                };
                emit_pad_pass(arch, &pass, &mut code)
                    .map_err(|e| err(format!("layer '{}' padding pass: {e}", l.name)))?;
                // Pixel 0 of the padded image: `pads[1]` pixels before the first.
                let at = pass.out_addr + (pass.left - pad_left * a.1 as usize) as u64;
                ((at, a.1), Some(padded))
            }
            None => (a, l.conv),
        };
        // A first layer with few channels carries several kernel columns per input line
        // (`ConvGeom::taps_per_line`); the array then runs `conv_hw`, whose channels are whole
        // lines of the image's bytes.
        let taps = match &conv_in {
            Some(cv) if !binary[i] && !cv.is_pointwise() => cv.taps_per_line(ru, a_in.1 as usize),
            _ => 1,
        };
        let conv_hw = conv_in.map(|cv| cv.packed(taps, ru));
        // A convolution's k runs over (ky, kx, ci) with ci padded to whole input lines, so
        // each k-tile is one kernel position and one input-channel tile.
        let (k_log, w1, w2) = match &l.conv {
            Some(cv) if taps > 1 => {
                // Tap group g's line holds column g * taps + j at byte j * d * pitch.
                let (kwg, step) = (cv.kw.div_ceil(taps), cv.dilation[1] * a_in.1 as usize);
                let pack = |w: &[i8]| {
                    let mut o = vec![0i8; cv.kh * kwg * ru * l.n];
                    for ky in 0..cv.kh {
                        for kx in 0..cv.kw {
                            let (g, j) = (kx / taps, kx % taps);
                            for ci in 0..cv.cin {
                                let src = ((ky * cv.kw + kx) * cv.cin + ci) * l.n;
                                let dst = ((ky * kwg + g) * ru + j * step + ci) * l.n;
                                o[dst..dst + l.n].copy_from_slice(&w[src..src + l.n]);
                            }
                        }
                    }
                    o
                };
                (
                    cv.kh * kwg * ru,
                    pack(&l.weights),
                    l.weights2.as_ref().map(|w| pack(w)),
                )
            }
            None if l.flat_image.is_some() => {
                // The image in DRAM has `a.1` bytes (channels padded) per pixel.
                let [h, wd, ch] = l.flat_image.unwrap();
                let p = a.1 as usize;
                let pad = |w: &[i8]| {
                    let mut o = vec![0i8; h * wd * p * l.n];
                    for pix in 0..h * wd {
                        for c in 0..ch {
                            let src = (pix * ch + c) * l.n;
                            let dst = (pix * p + c) * l.n;
                            o[dst..dst + l.n].copy_from_slice(&w[src..src + l.n]);
                        }
                    }
                    o
                };
                (
                    h * wd * p,
                    pad(&l.weights),
                    l.weights2.as_ref().map(|w| pad(w)),
                )
            }
            None => (l.k, l.weights.clone(), l.weights2.clone()),
            Some(cv) => {
                let cip = cv.cin.div_ceil(ru) * ru;
                let pad = |w: &[i8]| {
                    let mut o = vec![0i8; cv.kh * cv.kw * cip * l.n];
                    for pos in 0..cv.kh * cv.kw {
                        for ci in 0..cv.cin {
                            let src = (pos * cv.cin + ci) * l.n;
                            let dst = (pos * cip + ci) * l.n;
                            o[dst..dst + l.n].copy_from_slice(&w[src..src + l.n]);
                        }
                    }
                    o
                };
                (
                    cv.kh * cv.kw * cip,
                    pad(&l.weights),
                    l.weights2.as_ref().map(|w| pad(w)),
                )
            }
        };
        // A split weight matrix doubles k: [w1 (k padded to whole tiles); w2].
        let (k_eff, weights, k_wrap) = match &w2 {
            None => (k_log, w1, None),
            Some(w2) => {
                let kp = k_log.div_ceil(ru) * ru;
                let mut w = vec![0i8; 2 * kp * l.n];
                w[..k_log * l.n].copy_from_slice(&w1);
                w[kp * l.n..kp * l.n + k_log * l.n].copy_from_slice(w2);
                (2 * kp, w, Some(kp / ru))
            }
        };
        // A binary layer's k counts bytes of W = xnor_bits bipolar weights: bit b of byte kb
        // is weight row W kb + b (set for +1); rows past k are 1s, which never agree with the
        // 0 bits the input holds there, so padding adds nothing to the count.
        let (k_eff, weights, bias) = if binary[i] {
            let wb = arch.array.xnor_bits as usize;
            let kt = l.k.div_ceil(wb).div_ceil(ru) * ru;
            let mut wp = vec![-1i8; kt * l.n];
            for kk in 0..l.k {
                for ch in 0..l.n {
                    if l.weights[kk * l.n + ch] < 0 {
                        wp[(kk / wb) * l.n + ch] &= !(1i8 << (kk % wb));
                    }
                }
            }
            let bias = l.bias.iter().map(|b| b.wrapping_sub(l.k as i32)).collect();
            (kt, wp, bias)
        } else {
            (k_eff, weights, l.bias.clone())
        };
        let m = match &l.conv {
            Some(cv) => cv.oh * cv.ow,
            None => m,
        };
        // A 1x1 convolution with stride 1 and no padding is a plain GEMM over the pixels
        // (A rows are pixels, `a.1` bytes apart): its input moves as whole rows, all
        // k-tiles of a run of pixels in one load, instead of being gathered tile by tile.
        let gathered = conv_hw.filter(|_| l.conv.is_some_and(|cv| !cv.is_pointwise()));
        let t = match &gathered {
            Some(cv) => Tiling::conv(
                arch,
                m,
                cv.ow,
                k_eff,
                l.n,
                1 + extra.len(),
                l.row_mul.is_some(),
            ),
            None => Tiling::with_params(arch, m, k_eff, l.n, 1 + extra.len(), l.row_mul.is_some()),
        }
        .map_err(|e| err(format!("layer '{}': {e}", l.name)))?;
        let mut bt = pack_weights(arch, &t, k_eff, l.n, &weights);
        // (`store requant=1` reads a settings line before each n-tile's parameters.)
        let settings = match out {
            OutMode::Int8 {
                zp,
                lo,
                hi,
                store_lanes: true,
                ..
            } => Some(crate::gemm::store_settings(
                t.n_tiles, c as usize, zp, lo, hi,
            )),
            _ => None,
        };
        let params = pack_params(arch, &t, &bias, &extra, settings.as_deref());
        let b_addr = next;
        next = align(b_addr + bt.len() as u64, 64);
        let p_addr = next;
        next = align(p_addr + params.len() as u64, 64);
        let row_mul_addr = l
            .row_mul
            .as_ref()
            .map(|v| place(&mut data, &mut next, crate::gemm::pack_row_mul(arch, v)));
        let lane = if out == OutMode::Int32 { 4 } else { 1 };
        let y_pitch = if pack_out {
            align(
                (t.n_tiles * c as usize / arch.array.xnor_bits as usize) as u64,
                pitch_unit,
            )
        } else {
            align(l.n as u64, pitch_unit) * lane
        };
        let mut y_addr = next;
        next = align(y_addr + m as u64 * y_pitch + r, 64);
        // A pooled convolution writes its full output here first, the pool pass the final.
        let pooled_to = match (&l.pool, &l.conv) {
            (Some(p), Some(_)) => {
                let pa = next;
                next = align(pa + (p.oh * p.ow) as u64 * y_pitch + r, 64);
                Some(pa)
            }
            _ => None,
        };
        let g = DenseGeom {
            m,
            k: if binary[i] { k_eff } else { l.k },
            n: l.n,
            a_addr: a_in.0,
            a_pitch: a_in.1,
            b_addr,
            p_addr,
            p_settings: settings.is_some(),
            y_addr,
            y_pitch,
            k_wrap,
            conv: gathered.map(|cv| ConvLoad {
                h: cv.h,
                w: cv.w,
                ow: cv.ow,
                kh: cv.kh,
                kw: cv.kw,
                stride: cv.stride,
                dilation: cv.dilation,
                pad: [cv.pads[0], cv.pads[1]],
                ci_tiles: cv.cin.div_ceil(ru),
                pad_value: cv.pad_value,
            }),
            row_mul_addr,
            binary: binary[i],
            pack_out,
        };
        let mut schedule = Vec::new();
        if conv_in != l.conv {
            schedule.push("padding pass".to_string());
        }
        if taps > 1 {
            schedule.push(format!("{taps} kernel columns a line"));
        }
        // Stride-1 convolutions reuse each loaded input row for all kernel taps.
        let t = match (
            ConvRows::plan(arch, &g, 1 + extra.len(), out == OutMode::Int32),
            &g.conv,
        ) {
            (Some(p), Some(cv)) => {
                schedule.push("row reuse".to_string());
                if p.row_chains {
                    schedule.push("a chain per output row".to_string());
                } else if p.stride > 1 {
                    schedule.push(format!("{}x{} phases", p.phases[0], p.phases[1]));
                }
                if p.chunks_outside {
                    schedule.push("channel chunks outside the n-tiles".to_string());
                }
                p.permute_taps(arch, cv, &mut bt);
                emit_conv_rows(arch, &p, &g, out, &mut code);
                p.tiling(cv)
            }
            (None, Some(_)) => {
                schedule.push("gathered rows".to_string());
                emit_dense(arch, &t, &g, out, &mut code);
                t
            }
            (_, None) => {
                schedule.push("dense".to_string());
                emit_dense(arch, &t, &g, out, &mut code);
                t
            }
        };
        if arch.array.weight_banks == 2 && !binary[i] {
            schedule.push("chained".to_string());
        }
        if let (Some(pa), Some(p), Some(cv)) = (pooled_to, &l.pool, &l.conv) {
            schedule.push("max pooling pass".to_string());
            let param_addr = place(&mut data, &mut next, crate::gemm::pool_params(arch));
            let pass = crate::gemm::PoolPass {
                h: cv.oh,
                w: cv.ow,
                channels: l.n,
                kernel: p.kernel,
                stride: p.stride,
                dilation: p.dilation,
                pad: [p.pads[0], p.pads[1]],
                oh: p.oh,
                ow: p.ow,
                in_addr: y_addr,
                in_pitch: y_pitch,
                out_addr: pa,
                out_pitch: y_pitch,
                param_addr,
            };
            crate::gemm::emit_pool(arch, &pass, &mut code)
                .map_err(|e| err(format!("layer '{}' max pooling: {e}", l.name)))?;
            y_addr = pa;
        }
        report.push(LayerReport {
            name: l.name.clone(),
            m,
            k: l.k,
            n: l.n,
            macs: (m * l.k * l.n) as u64,
            tiling: t,
            instructions: code.len() - before,
            weight_bytes: bt.len(),
            schedule,
        });
        data.push(Segment {
            dram_addr: b_addr,
            bytes: bt,
        });
        data.push(Segment {
            dram_addr: p_addr,
            bytes: params,
        });
        a = (y_addr, y_pitch);
        if i + 1 == q.layers.len() {
            out_desc_addr = y_addr;
            out_pitch = y_pitch;
        }
    }
    code.push(Insn::new(IsaOp::Finish(Finish {})));
    if code.len() > arch.controller.imem_instructions as usize {
        return Err(err(format!(
            "the program needs {} instructions; arch '{}' holds {}",
            code.len(),
            arch.name,
            arch.controller.imem_instructions
        )));
    }
    if next > arch.dram.size_bytes {
        return Err(err(format!(
            "the program needs {next} bytes of DRAM; arch '{}' has {}",
            arch.name, arch.dram.size_bytes
        )));
    }
    let mut p = Program::new(arch);
    p.dram_bytes = next;
    p.code = code;
    p.data = data;
    let io_desc = |io: &QIo, role: Role, addr: u64, pitch: Option<u64>, dtype: image::DType| {
        let shape: Vec<u64> = io.shape.iter().map(|&d| d as u64).collect();
        let mut d = TensorDesc::dense(&io.name, role, dtype, &shape, addr);
        if let Some(pitch) = pitch {
            d.row_pitch = pitch;
        }
        d.quant = io
            .quant
            .map(|(scale, zero_point)| Quant { scale, zero_point });
        d.offset = io.offset;
        d
    };
    let out_dtype = if matches!(q.layers.last().unwrap().out, QOut::Int32) {
        image::DType::I32
    } else {
        image::DType::I8
    };
    let raw_out_pitch = out_pitch;
    // The program takes what the host's pre-processing produces (its shape may differ).
    let program_in = match &q.input.host {
        Some(h) => QIo {
            shape: h.value(h.outputs[0]).shape.clone(),
            ..q.input.clone()
        },
        None => q.input.clone(),
    };
    let mut din = io_desc(&program_in, Role::Input, a_addr, None, image::DType::I8);
    if q.layers[0].conv.is_some() && din.shape.len() == 4 {
        // NCHW image stored NHWC, one pixel of channels per row.
        din.perm = vec![0, 2, 3, 1];
        din.row_pitch = din.shape[1];
    }
    // With a host tail the program returns the tail's input (the last layer's output).
    let out_io = match &q.output.host {
        Some(h) => {
            let hin = h.value(h.inputs[0]);
            let mut shape = hin.shape.clone();
            if shape.iter().product::<usize>()
                != q.layers.last().map_or(0, |l| {
                    l.conv.map_or(q.m * l.n, |cv| {
                        l.pool.map_or(cv.oh * cv.ow, |p| p.oh * p.ow) * l.n
                    })
                })
            {
                let l = q.layers.last().unwrap();
                shape = match l.conv {
                    Some(cv) => {
                        let (oh, ow) = l.pool.map_or((cv.oh, cv.ow), |p| (p.oh, p.ow));
                        vec![1, l.n, oh, ow]
                    }
                    None => vec![q.m, l.n],
                };
            }
            QIo {
                shape,
                ..q.output.clone()
            }
        }
        None => q.output.clone(),
    };
    let out_pitch = if out_io.shape.len() >= 2 {
        Some(raw_out_pitch)
    } else {
        None
    };
    let mut dout = io_desc(&out_io, Role::Output, out_desc_addr, out_pitch, out_dtype);
    if q.layers.last().unwrap().conv.is_some() && dout.shape.len() == 4 {
        dout.perm = vec![0, 2, 3, 1];
    }
    p.tensors = vec![din, dout];
    // What the host must do around the program (`systole check`/`eval` do it; `systole run`
    // takes and returns the program's own tensors).
    let ops = |g: &Graph| {
        g.nodes
            .iter()
            // (the per-channel scale of int32 accumulators is their dequantization)
            .map(|n| match n.name.as_str() {
                "systole_scale" => "DequantizeLinear",
                _ => n.op.op_type(),
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    if let Some(h) = &q.input.host {
        p.meta.insert("host.input".into(), ops(h));
    }
    if let Some(h) = &q.output.host {
        p.meta.insert("host.output".into(), ops(h));
    }
    p.meta.insert("model".into(), q.name.clone());
    p.meta.insert(
        "compiler".into(),
        format!("systole {}", env!("CARGO_PKG_VERSION")),
    );
    Ok((p, report))
}

/// Reserves `bytes` of DRAM at `next` (64-byte aligned after them); returns where.
fn reserve(next: &mut u64, bytes: u64) -> u64 {
    let at = *next;
    *next = align(at + bytes, 64);
    at
}

/// Places a data segment at `next` (`reserve`); returns its address.
fn place(data: &mut Vec<Segment>, next: &mut u64, bytes: Vec<u8>) -> u64 {
    let at = reserve(next, bytes.len() as u64);
    data.push(Segment {
        dram_addr: at,
        bytes,
    });
    at
}

/// The whole way from a graph to a program.
pub fn compile(
    arch: &ArchConfig,
    g: &Graph,
) -> Result<(Program, QModel, Vec<LayerReport>), LowerError> {
    let q = to_qir(g)?;
    let (p, r) = to_program(arch, &q)?;
    Ok((p, q, r))
}

/// Converts a host tensor to the hw-domain int8 input of a quantized model (running the
/// host pre-processing graph when the model has one).
pub fn input_to_hw(io: &QIo, t: &Tensor) -> Result<Vec<i8>, String> {
    let n: usize = io.shape.iter().product();
    if t.len() != n {
        return Err(format!(
            "input '{}' expects shape {:?}, got {:?}",
            io.name, io.shape, t.shape
        ));
    }
    let off = io.offset;
    let vals: Vec<i32> = if let Some(host) = &io.host {
        let t = Tensor::new(io.shape.clone(), t.data.clone()).map_err(|e| e.to_string())?;
        let out = crate::interp::run(host, &[t])
            .map_err(|e| format!("input '{}': host pre-processing: {e}", io.name))?;
        match (tensor_ints(&out[0]), io.quant) {
            (Some(v), _) => v,
            // A QONNX quantizer ends the pre-processing with dequantized values.
            (None, Some((scale, zp))) => out[0]
                .to_f32_vec()
                .iter()
                .map(|&y| (y / scale).round_ties_even() as i32 + zp)
                .collect(),
            (None, None) => {
                return Err(format!(
                    "input '{}': pre-processing does not end in integers",
                    io.name
                ))
            }
        }
    } else {
        match (&t.data, io.quant) {
            (TensorData::F32(_) | TensorData::F64(_), Some((scale, zp))) => {
                let qp = QParams {
                    scale,
                    zp,
                    dtype: if off == -128 { DType::U8 } else { DType::I8 },
                };
                t.to_f32_vec().iter().map(|&x| qp.quantize(x)).collect()
            }
            (TensorData::I8(v), _) => v.iter().map(|&x| x as i32).collect(),
            (TensorData::U8(v), _) => v.iter().map(|&x| x as i32).collect(),
            _ => {
                return Err(format!(
                    "input '{}': cannot use a {} tensor",
                    io.name,
                    t.dtype_name()
                ))
            }
        }
    };
    vals.iter()
        .map(|&v| {
            let h = v + off;
            i8::try_from(h).map_err(|_| format!("input '{}': value {v} is out of range", io.name))
        })
        .collect()
}

/// Converts the program's output (hw domain) to the model's output tensor: removes the offset,
/// dequantizes (exactly as DequantizeLinear) or runs the host tail graph.
pub fn output_from_hw(io: &QIo, m: usize, data: &crate::qir::QData) -> Result<Tensor, String> {
    use crate::qir::QData;
    let logical: Vec<i64> = match data {
        QData::I8(v) => v.iter().map(|&x| x as i64 - io.offset as i64).collect(),
        QData::I32(v) => v.iter().map(|&x| x as i64).collect(),
    };
    if let Some(host) = &io.host {
        let hin = host.value(host.inputs[0]);
        if hin.shape.iter().product::<usize>() == logical.len() {
            let data = match hin.dtype {
                DType::U8 => TensorData::U8(logical.iter().map(|&x| x as u8).collect()),
                DType::I8 => TensorData::I8(logical.iter().map(|&x| x as i8).collect()),
                DType::I32 => TensorData::I32(logical.iter().map(|&x| x as i32).collect()),
                _ => TensorData::F32(logical.iter().map(|&x| x as f32).collect()),
            };
            let t = Tensor::new(hin.shape.clone(), data).map_err(|e| e.to_string())?;
            let o = crate::interp::run(host, &[t])
                .map_err(|e| format!("output '{}': host tail: {e}", io.name))?;
            return Tensor::new(io.shape.clone(), o[0].data.clone()).map_err(|e| e.to_string());
        }
        let n = logical.len() / m.max(1);
        let mut outs = Vec::new();
        let in_dtype = host.value(host.inputs[0]).dtype;
        for row in logical.chunks(n.max(1)) {
            let data = match in_dtype {
                DType::U8 => TensorData::U8(row.iter().map(|&x| x as u8).collect()),
                DType::I8 => TensorData::I8(row.iter().map(|&x| x as i8).collect()),
                _ => TensorData::F32(row.iter().map(|&x| x as f32).collect()),
            };
            let t = Tensor::new(vec![1, n], data).map_err(|e| e.to_string())?;
            let o = crate::interp::run(host, &[t])
                .map_err(|e| format!("output '{}': host tail: {e}", io.name))?;
            outs.extend(o[0].to_f32_vec());
        }
        return Tensor::new(io.shape.clone(), TensorData::F32(outs)).map_err(|e| e.to_string());
    }
    let data = match (io.dtype, io.quant) {
        (DType::F32, Some((scale, zp))) => TensorData::F32(
            logical
                .iter()
                .map(|&x| (x as i32 - zp) as f32 * scale)
                .collect(),
        ),
        (DType::U8, _) => TensorData::U8(logical.iter().map(|&x| x as u8).collect()),
        (DType::I8, _) => TensorData::I8(logical.iter().map(|&x| x as i8).collect()),
        (DType::I32, _) => TensorData::I32(logical.iter().map(|&x| x as i32).collect()),
        (d, _) => {
            return Err(format!(
                "output '{}': unsupported type {}",
                io.name,
                d.name()
            ))
        }
    };
    Tensor::new(io.shape.clone(), data).map_err(|e| e.to_string())
}
