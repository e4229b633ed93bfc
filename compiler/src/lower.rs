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

use crate::gemm::{emit_dense, pack_params, pack_weights, DenseGeom, OutMode, Tiling};
use crate::ir::{Graph, Node, Op, ValueId};
use crate::qir::{QDense, QIo, QModel, QOut};
use crate::tensor::{DType, Tensor, TensorData};
use std::collections::HashMap;
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
    LowerError { problems: vec![msg.into()] }
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
        let (lo, hi) = self.range();
        let q = (x / self.scale).round_ties_even();
        let q = if q.is_nan() { 0.0 } else { q } + self.zp as f32;
        q.clamp(lo as f32, hi as f32) as i32
    }
}

/// A dense layer whose accumulator is known but not yet requantized.
#[derive(Debug, Clone)]
struct Pending {
    name: String,
    k: usize,
    n: usize,
    /// Weights with their zero point removed, [k][n].
    weights: Vec<i32>,
    /// Input zero point (hw domain) still to fold.
    x_zp_hw: i32,
    /// Integer bias in units of x_scale * w_scale.
    bias: Vec<i32>,
    x_scale: f32,
    w_scales: Vec<f32>,
    /// Float clamp applied before quantization (Relu/Clip).
    lo: Option<f32>,
    hi: Option<f32>,
}

/// What the lowering knows about a value.
#[derive(Debug, Clone)]
enum Sym {
    /// An 8-bit activation held on chip (the current chain tensor).
    Q(QParams),
    /// The float dequantization of the chain tensor.
    Deq(QParams),
    /// The float output of a matrix product on the chain tensor, not yet requantized.
    Acc(Pending),
    /// The int32 output of MatMulInteger (ends the chain).
    Int32,
}

fn const_f32(g: &Graph, id: Option<ValueId>, what: &str) -> Result<Vec<f32>, LowerError> {
    let id = id.ok_or_else(|| err(format!("{what} is missing")))?;
    let t = g.constant(id).ok_or_else(|| err(format!("{what} ('{}') must be a constant", g.value(id).name)))?;
    Ok(t.to_f32_vec())
}

fn const_ints(g: &Graph, id: Option<ValueId>, what: &str) -> Result<(Vec<i64>, DType), LowerError> {
    let id = id.ok_or_else(|| err(format!("{what} is missing")))?;
    let t = g.constant(id).ok_or_else(|| err(format!("{what} ('{}') must be a constant", g.value(id).name)))?;
    let v = match &t.data {
        TensorData::I8(v) => v.iter().map(|&x| x as i64).collect(),
        TensorData::U8(v) => v.iter().map(|&x| x as i64).collect(),
        TensorData::I32(v) => v.iter().map(|&x| x as i64).collect(),
        TensorData::I64(v) => v.clone(),
        _ => return Err(err(format!("{what} must be an integer tensor, not {}", t.dtype_name()))),
    };
    Ok((v, t.dtype()))
}

/// Zero point input (absent = 0) with the type of the quantized tensor.
fn zero_point(g: &Graph, id: Option<ValueId>, default_dtype: DType, what: &str) -> Result<(i32, DType), LowerError> {
    match id {
        None => Ok((0, default_dtype)),
        Some(_) => {
            let (v, dt) = const_ints(g, id, what)?;
            if v.iter().any(|&x| x != v[0]) {
                return Err(err(format!("{what}: per-axis zero points are not supported")));
            }
            Ok((v.first().copied().unwrap_or(0) as i32, dt))
        }
    }
}

fn scalar_f32(g: &Graph, id: Option<ValueId>, what: &str) -> Result<f32, LowerError> {
    let v = const_f32(g, id, what)?;
    if v.len() != 1 {
        return Err(err(format!("{what}: expected a per-tensor scale, got {} values", v.len())));
    }
    if !(v[0].is_finite() && v[0] > 0.0) {
        return Err(err(format!("{what}: scale {} must be positive and finite", v[0])));
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

struct Lowerer<'g> {
    g: &'g Graph,
    syms: HashMap<ValueId, Sym>,
    layers: Vec<QDense>,
    input: Option<QIo>,
    /// The graph input feeding the chain.
    input_id: ValueId,
}

impl Lowerer<'_> {
    fn sym(&self, id: Option<ValueId>, node: &Node) -> Result<Sym, LowerError> {
        let id = id.ok_or_else(|| err(format!("node '{}' ({}): input missing", node.name, node.op.op_type())))?;
        self.syms.get(&id).cloned().ok_or_else(|| {
            err(format!(
                "node '{}' ({}): input '{}' is not on the quantized chain the accelerator runs",
                node.name,
                node.op.op_type(),
                self.g.value(id).name
            ))
        })
    }

    /// Records the graph input's quantization the first time a node consumes it.
    fn bind_input(&mut self, qp: QParams, float_input: bool) {
        if self.input.is_none() {
            let v = self.g.value(self.input_id);
            self.input = Some(QIo {
                name: v.name.clone(),
                shape: v.shape.clone(),
                dtype: if float_input { DType::F32 } else { qp.dtype },
                quant: Some((qp.scale, qp.zp)),
                offset: qp.offset(),
            });
        }
    }

    /// Weights of a matrix product: constant B [k][n] (already DequantizeLinear'd or raw).
    fn weights_from(&self, id: Option<ValueId>, node: &Node) -> Result<(Vec<i64>, DType, Vec<f32>, i32, usize, usize), LowerError> {
        let id = id.ok_or_else(|| err(format!("node '{}': weight input missing", node.name)))?;
        // B = DequantizeLinear(const int, scale, zp)?
        if let Some(p) = self.g.producer(id) {
            let pn = &self.g.nodes[p];
            if let Op::DequantizeLinear { .. } = pn.op {
                let (w, dt) = const_ints(self.g, pn.input(0), "weight")?;
                let shape = &self.g.value(pn.input(0).unwrap()).shape;
                if shape.len() != 2 {
                    return Err(err(format!("node '{}': weights must be 2-D, got {:?}", node.name, shape)));
                }
                let scales = const_f32(self.g, pn.input(1), "weight scale")?;
                let (zp, _) = zero_point(self.g, pn.input(2), dt, "weight zero point")?;
                return Ok((w, dt, scales, zp, shape[0], shape[1]));
            }
        }
        Err(err(format!(
            "node '{}' ({}): weights '{}' must be a DequantizeLinear of a constant (float weights need --calib)",
            node.name,
            node.op.op_type(),
            self.g.value(id).name
        )))
    }

    fn pending(&self, name: &str, a: QParams, w: Vec<i64>, w_zp: i32, k: usize, n: usize, w_scales: Vec<f32>) -> Result<Pending, LowerError> {
        let weights: Vec<i32> = w.iter().map(|&x| (x - w_zp as i64) as i32).collect();
        if let Some(x) = weights.iter().find(|&&x| !(-128..=127).contains(&x)) {
            return Err(err(format!("node '{name}': weight minus zero point ({x}) does not fit int8")));
        }
        Ok(Pending {
            name: name.to_string(),
            k,
            n,
            weights,
            x_zp_hw: a.zp + a.offset(),
            bias: vec![0; n],
            x_scale: a.scale,
            w_scales,
            lo: None,
            hi: None,
        })
    }

    /// Closes a pending layer into a QDense with int8 output `y` (or int32 when None).
    fn finish(&mut self, p: Pending, y: Option<QParams>, fused_scale: Option<Vec<f32>>) -> Result<(), LowerError> {
        let (k, n) = (p.k, p.n);
        let mut bias = p.bias.clone();
        // Fold the input zero point: sum_k (x - z) w = sum_k x w - z sum_k w.
        for (col, b) in bias.iter_mut().enumerate() {
            let s: i64 = (0..k).map(|r| p.weights[r * n + col] as i64).sum();
            *b = (*b as i64 - p.x_zp_hw as i64 * s) as i32;
        }
        let out = match y {
            None => QOut::Int32,
            Some(y) => {
                let scales = fused_scale.unwrap_or_else(|| p.w_scales.iter().map(|&ws| (p.x_scale * ws) / y.scale).collect());
                let off = y.offset();
                let (mut lo, mut hi) = y.range();
                if let Some(l) = p.lo {
                    lo = lo.max(y.quantize(l));
                }
                if let Some(h) = p.hi {
                    hi = hi.min(y.quantize(h));
                }
                QOut::Int8 { scales, zp: y.zp + off, lo: (lo + off).clamp(-128, 127) as i8, hi: (hi + off).clamp(-128, 127) as i8 }
            }
        };
        self.layers.push(QDense { name: p.name, k, n, weights: p.weights.iter().map(|&w| w as i8).collect(), bias, out });
        Ok(())
    }

    fn node(&mut self, node: &Node) -> Result<(), LowerError> {
        let g = self.g;
        let out = node.outputs[0];
        let x = node.input(0);
        let sym = match &node.op {
            Op::QuantizeLinear { .. } => {
                let scale = scalar_f32(g, node.input(1), "y_scale")?;
                let (zp, dt) = zero_point(g, node.input(2), DType::U8, "y_zero_point")?;
                if !matches!(dt, DType::I8 | DType::U8) {
                    return Err(err(format!("node '{}': only 8-bit quantization is supported", node.name)));
                }
                let y = QParams { scale, zp, dtype: dt };
                if x == Some(self.input_id) && !self.syms.contains_key(&self.input_id) {
                    // Host-side quantization of the float input.
                    self.bind_input(y, true);
                    Sym::Q(y)
                } else {
                    match self.sym(x, node)? {
                        Sym::Acc(p) => {
                            self.finish(p, Some(y), None)?;
                            Sym::Q(y)
                        }
                        Sym::Deq(q) if q == y => Sym::Q(q),
                        _ => return Err(err(format!("node '{}' (QuantizeLinear): only the output of a matrix product or of the same quantization can be quantized", node.name))),
                    }
                }
            }
            Op::DequantizeLinear { .. } => {
                if x.is_some_and(|i| g.constant(i).is_some()) {
                    return Ok(()); // weights or bias: read by their consumer
                }
                let scale = scalar_f32(g, node.input(1), "x_scale")?;
                let (zp, dt) = zero_point(g, node.input(2), DType::U8, "x_zero_point")?;
                let qp = QParams { scale, zp, dtype: dt };
                if x == Some(self.input_id) && !self.syms.contains_key(&self.input_id) {
                    self.bind_input(qp, false);
                    self.syms.insert(self.input_id, Sym::Q(qp));
                }
                match self.sym(x, node)? {
                    Sym::Q(q) if q.scale == qp.scale && q.zp == qp.zp => Sym::Deq(q),
                    Sym::Q(q) => return Err(err(format!("node '{}': dequantizes with scale {}/zp {} a tensor quantized with {}/{}", node.name, qp.scale, qp.zp, q.scale, q.zp))),
                    _ => return Err(err(format!("node '{}' (DequantizeLinear): input is not an 8-bit activation", node.name))),
                }
            }
            Op::MatMul | Op::Gemm { .. } => {
                let (alpha, beta, trans_a, trans_b) = match node.op {
                    Op::Gemm { alpha, beta, trans_a, trans_b } => (alpha, beta, trans_a, trans_b),
                    _ => (1.0, 1.0, false, false),
                };
                if alpha != 1.0 || trans_a {
                    return Err(err(format!("node '{}' (Gemm): alpha != 1 or transA is not supported", node.name)));
                }
                let Sym::Deq(a) = self.sym(x, node)? else {
                    return Err(err(format!("node '{}' ({}): input A must be a dequantized 8-bit activation", node.name, node.op.op_type())));
                };
                let (mut w, dt, scales, w_zp, mut k, mut n) = self.weights_from(node.input(1), node)?;
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
                let _ = dt;
                let w_scales = per_channel(scales, n, "weight scale")?;
                let mut p = self.pending(&node.name, a, w, w_zp, k, n, w_scales)?;
                if let Op::Gemm { .. } = node.op {
                    if let Some(c) = node.input(2) {
                        if beta != 1.0 {
                            return Err(err(format!("node '{}' (Gemm): beta != 1 with a bias is not supported", node.name)));
                        }
                        self.add_bias(&mut p, c, node)?;
                    }
                }
                Sym::Acc(p)
            }
            Op::Add => {
                let (acc_in, other) = match (self.syms.get(&node.input(0).unwrap_or(usize::MAX)), self.syms.get(&node.input(1).unwrap_or(usize::MAX))) {
                    (Some(Sym::Acc(_)), _) => (node.input(0), node.input(1)),
                    (_, Some(Sym::Acc(_))) => (node.input(1), node.input(0)),
                    _ => return Err(err(format!("node '{}' (Add): only a bias added to a matrix product is supported", node.name))),
                };
                let Sym::Acc(mut p) = self.sym(acc_in, node)? else { unreachable!() };
                let other = other.ok_or_else(|| err(format!("node '{}': input missing", node.name)))?;
                self.add_bias(&mut p, other, node)?;
                Sym::Acc(p)
            }
            Op::Relu => match self.sym(x, node)? {
                Sym::Acc(mut p) => {
                    p.lo = Some(p.lo.unwrap_or(0.0).max(0.0));
                    Sym::Acc(p)
                }
                _ => return Err(err(format!("node '{}' (Relu): only a ReLU fused after a matrix product is supported", node.name))),
            },
            Op::Clip => {
                let lo = node.input(1).map(|_| const_f32(g, node.input(1), "Clip min")).transpose()?.map(|v| v[0]);
                let hi = node.input(2).map(|_| const_f32(g, node.input(2), "Clip max")).transpose()?.map(|v| v[0]);
                match self.sym(x, node)? {
                    Sym::Acc(mut p) => {
                        if let Some(l) = lo {
                            p.lo = Some(p.lo.map_or(l, |x| x.max(l)));
                        }
                        if let Some(h) = hi {
                            p.hi = Some(p.hi.map_or(h, |x| x.min(h)));
                        }
                        Sym::Acc(p)
                    }
                    _ => return Err(err(format!("node '{}' (Clip): only a clip fused after a matrix product is supported", node.name))),
                }
            }
            Op::Flatten { .. } | Op::Reshape | Op::Identity | Op::Squeeze { .. } | Op::Unsqueeze { .. } => {
                if x == Some(self.input_id) && !self.syms.contains_key(&self.input_id) {
                    return Err(err(format!("node '{}' ({}): reshaping the raw graph input is not supported; quantize first", node.name, node.op.op_type())));
                }
                self.sym(x, node)?
            }
            Op::QLinearMatMul => {
                let a_scale = scalar_f32(g, node.input(1), "a_scale")?;
                let (a_zp, a_dt) = zero_point(g, node.input(2), DType::U8, "a_zero_point")?;
                let a = QParams { scale: a_scale, zp: a_zp, dtype: a_dt };
                if x == Some(self.input_id) && !self.syms.contains_key(&self.input_id) {
                    self.bind_input(a, false);
                    self.syms.insert(self.input_id, Sym::Q(a));
                }
                match self.sym(x, node)? {
                    Sym::Q(q) if q.scale == a.scale && q.zp == a.zp => {}
                    _ => return Err(err(format!("node '{}' (QLinearMatMul): input A must be an 8-bit activation with its scale", node.name))),
                }
                let (w, dt) = const_ints(g, node.input(3), "B")?;
                let shape = &g.value(node.input(3).unwrap()).shape;
                if shape.len() != 2 {
                    return Err(err(format!("node '{}' (QLinearMatMul): B must be a 2-D constant", node.name)));
                }
                let (k, n) = (shape[0], shape[1]);
                let b_scales = per_channel(const_f32(g, node.input(4), "b_scale")?, n, "b_scale")?;
                let (b_zp, _) = zero_point(g, node.input(5), dt, "b_zero_point")?;
                let y_scale = scalar_f32(g, node.input(6), "y_scale")?;
                let (y_zp, y_dt) = zero_point(g, node.input(7), DType::U8, "y_zero_point")?;
                let y = QParams { scale: y_scale, zp: y_zp, dtype: y_dt };
                let p = self.pending(&node.name, a, w, b_zp, k, n, b_scales.clone())?;
                // onnxruntime: (a_scale * b_scale) / y_scale in binary32.
                let fused: Vec<f32> = b_scales.iter().map(|&bs| (a_scale * bs) / y_scale).collect();
                self.finish(p, Some(y), Some(fused))?;
                Sym::Q(y)
            }
            Op::MatMulInteger => {
                let (a_zp, a_dt) = zero_point(g, node.input(2), DType::U8, "a_zero_point")?;
                let a = QParams { scale: 1.0, zp: a_zp, dtype: a_dt };
                if x == Some(self.input_id) && !self.syms.contains_key(&self.input_id) {
                    let v = g.value(self.input_id);
                    let a = QParams { dtype: v.dtype, ..a };
                    self.input = Some(QIo { name: v.name.clone(), shape: v.shape.clone(), dtype: v.dtype, quant: None, offset: a.offset() });
                    self.syms.insert(self.input_id, Sym::Q(a));
                }
                let Sym::Q(q) = self.sym(x, node)? else {
                    return Err(err(format!("node '{}' (MatMulInteger): input A must be an 8-bit activation", node.name)));
                };
                let a = QParams { dtype: q.dtype, ..a };
                let (w, dt) = const_ints(g, node.input(1), "B")?;
                let shape = &g.value(node.input(1).unwrap()).shape;
                if shape.len() != 2 {
                    return Err(err(format!("node '{}' (MatMulInteger): B must be a 2-D constant", node.name)));
                }
                let (b_zp, _) = zero_point(g, node.input(3), dt, "b_zero_point")?;
                let p = self.pending(&node.name, a, w, b_zp, shape[0], shape[1], vec![1.0; shape[1]])?;
                self.finish(p, None, None)?;
                Sym::Int32
            }
            other => {
                return Err(err(format!(
                    "node '{}' ({}): no lowering to the accelerator yet",
                    node.name,
                    other.op_type()
                )))
            }
        };
        self.syms.insert(out, sym);
        Ok(())
    }

    fn add_bias(&self, p: &mut Pending, id: ValueId, node: &Node) -> Result<(), LowerError> {
        let g = self.g;
        // DequantizeLinear(int32 bias) with scale x_scale * w_scale: exact integers.
        if let Some(pi) = g.producer(id) {
            let pn = &g.nodes[pi];
            if let Op::DequantizeLinear { .. } = pn.op {
                let (b, _) = const_ints(g, pn.input(0), "bias")?;
                if b.len() != p.n {
                    return Err(err(format!("node '{}': bias has {} values for {} channels", node.name, b.len(), p.n)));
                }
                for (acc, v) in p.bias.iter_mut().zip(b) {
                    *acc = acc.wrapping_add(v as i32);
                }
                return Ok(());
            }
        }
        // A float constant bias: quantize to the accumulator's scale (round half to even).
        let b = const_f32(g, Some(id), "bias")?;
        let b = per_channel(b, p.n, "bias")?;
        for (col, acc) in p.bias.iter_mut().enumerate() {
            let s = p.x_scale * p.w_scales[col];
            *acc = acc.wrapping_add((b[col] / s).round_ties_even() as i32);
        }
        Ok(())
    }
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
    let mut l = Lowerer { g, syms: HashMap::new(), layers: Vec::new(), input: None, input_id: g.inputs[0] };
    let mut problems = Vec::new();
    for node in &g.nodes {
        if let Err(e) = l.node(node) {
            problems.extend(e.problems);
            break; // later nodes depend on this one; the first cause is the useful one
        }
    }
    if !problems.is_empty() {
        return Err(LowerError { problems });
    }
    let out_id = g.outputs[0];
    let v = g.value(out_id);
    let output = match l.syms.get(&out_id) {
        Some(Sym::Deq(q)) => QIo { name: v.name.clone(), shape: v.shape.clone(), dtype: DType::F32, quant: Some((q.scale, q.zp)), offset: q.offset() },
        Some(Sym::Q(q)) => QIo { name: v.name.clone(), shape: v.shape.clone(), dtype: q.dtype, quant: Some((q.scale, q.zp)), offset: q.offset() },
        Some(Sym::Int32) => QIo { name: v.name.clone(), shape: v.shape.clone(), dtype: DType::I32, quant: None, offset: 0 },
        _ => return Err(err(format!("output '{}' is not produced by a quantized layer", v.name))),
    };
    let input = l.input.ok_or_else(|| err("the graph input is never quantized"))?;
    if l.layers.is_empty() {
        return Err(err("the network has no matrix product to run on the array"));
    }
    let k0 = l.layers[0].k;
    let numel: usize = input.shape.iter().product();
    if numel % k0 != 0 {
        return Err(err(format!("input of {numel} elements is not a whole number of {k0}-element rows")));
    }
    let m = numel / k0;
    for w in l.layers.windows(2) {
        if w[0].n != w[1].k {
            return Err(err(format!("layer '{}' produces {} channels but '{}' expects {}", w[0].name, w[0].n, w[1].name, w[1].k)));
        }
        if matches!(w[0].out, QOut::Int32) {
            return Err(err(format!("layer '{}' has an int32 output that another layer consumes", w[0].name)));
        }
    }
    let n_last = l.layers.last().unwrap().n;
    if output.shape.last().copied() != Some(n_last) || output.shape.iter().product::<usize>() != m * n_last {
        return Err(err(format!("output '{}' {:?} is not the last layer's {m}x{n_last} matrix", output.name, output.shape)));
    }
    Ok(QModel { name: g.name.clone(), m, input, layers: l.layers, output })
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
}

/// Emits the program for a quantized model.
pub fn to_program(arch: &ArchConfig, q: &QModel) -> Result<(Program, Vec<LayerReport>), LowerError> {
    let (r, c) = (arch.array.rows as u64, arch.array.cols as u64);
    let m = q.m;
    let mut data = Vec::new();
    let mut code = Vec::new();
    let mut report = Vec::new();
    // The input: dense rows of k0 bytes (+ slack: the last tile of the last row reads past k).
    let k0 = q.layers[0].k as u64;
    let a_addr = 0u64;
    let mut next = align(m as u64 * k0 + r, 64);
    let mut a = (a_addr, k0);
    let pitch_unit = r.max(c) * r.min(c) / gcd(r, c);
    let mut out_desc_addr = 0;
    let mut out_pitch = 0;
    for (i, l) in q.layers.iter().enumerate() {
        let t = Tiling::new(arch, m, l.k, l.n).map_err(|e| err(format!("layer '{}': {e}", l.name)))?;
        let bt = pack_weights(arch, &t, l.k, l.n, &l.weights);
        let (p1, p2, out) = match &l.out {
            QOut::Int8 { scales, zp, lo, hi } => (
                scales.iter().map(|s| s.to_bits() as i32).collect::<Vec<_>>(),
                vec![0; l.n],
                OutMode::Int8 { zp: *zp, lo: *lo, hi: *hi, fp32: true },
            ),
            QOut::Int32 => (vec![0; l.n], vec![0; l.n], OutMode::Int32),
        };
        let params = pack_params(arch, &t, &l.bias, &p1, &p2);
        let b_addr = next;
        next = align(b_addr + bt.len() as u64, 64);
        let p_addr = next;
        next = align(p_addr + params.len() as u64, 64);
        let lane = if out == OutMode::Int32 { 4 } else { 1 };
        let y_pitch = align(l.n as u64, pitch_unit) * lane;
        let y_addr = next;
        next = align(y_addr + m as u64 * y_pitch + r, 64);
        let g = DenseGeom { m, k: l.k, n: l.n, a_addr: a.0, a_pitch: a.1, b_addr, p_addr, y_addr, y_pitch };
        let before = code.len();
        emit_dense(arch, &t, &g, out, &mut code);
        report.push(LayerReport {
            name: l.name.clone(),
            m,
            k: l.k,
            n: l.n,
            macs: (m * l.k * l.n) as u64,
            tiling: t,
            instructions: code.len() - before,
            weight_bytes: bt.len(),
        });
        data.push(Segment { dram_addr: b_addr, bytes: bt });
        data.push(Segment { dram_addr: p_addr, bytes: params });
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
        return Err(err(format!("the program needs {next} bytes of DRAM; arch '{}' has {}", arch.name, arch.dram.size_bytes)));
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
        d.quant = io.quant.map(|(scale, zero_point)| Quant { scale, zero_point });
        d.offset = io.offset;
        d
    };
    let out_dtype = if matches!(q.layers.last().unwrap().out, QOut::Int32) { image::DType::I32 } else { image::DType::I8 };
    let out_rank = q.output.shape.len();
    let out_pitch = if out_rank >= 2 { Some(out_pitch) } else { None };
    p.tensors = vec![
        io_desc(&q.input, Role::Input, a_addr, None, image::DType::I8),
        io_desc(&q.output, Role::Output, out_desc_addr, out_pitch, out_dtype),
    ];
    p.meta.insert("model".into(), q.name.clone());
    p.meta.insert("compiler".into(), format!("systole {}", env!("CARGO_PKG_VERSION")));
    Ok((p, report))
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The whole way from a graph to a program.
pub fn compile(arch: &ArchConfig, g: &Graph) -> Result<(Program, QModel, Vec<LayerReport>), LowerError> {
    let q = to_qir(g)?;
    let (p, r) = to_program(arch, &q)?;
    Ok((p, q, r))
}

/// Converts a host tensor to the hw-domain int8 input of a quantized model.
pub fn input_to_hw(io: &QIo, t: &Tensor) -> Result<Vec<i8>, String> {
    let n: usize = io.shape.iter().product();
    if t.len() != n {
        return Err(format!("input '{}' expects shape {:?}, got {:?}", io.name, io.shape, t.shape));
    }
    let off = io.offset;
    let vals: Vec<i32> = match (&t.data, io.quant) {
        (TensorData::F32(_) | TensorData::F64(_), Some((scale, zp))) => {
            let qp = QParams { scale, zp, dtype: if off == -128 { DType::U8 } else { DType::I8 } };
            t.to_f32_vec().iter().map(|&x| qp.quantize(x)).collect()
        }
        (TensorData::I8(v), _) => v.iter().map(|&x| x as i32).collect(),
        (TensorData::U8(v), _) => v.iter().map(|&x| x as i32).collect(),
        _ => return Err(format!("input '{}': cannot use a {} tensor", io.name, t.dtype_name())),
    };
    vals.iter()
        .map(|&v| {
            let h = v + off;
            i8::try_from(h).map_err(|_| format!("input '{}': value {v} is out of range", io.name))
        })
        .collect()
}
