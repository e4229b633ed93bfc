//! Reference interpreter of the IR: defines what a graph computes, with onnxruntime's CPU
//! semantics.
//!
//! * Float operators compute in f32; dot products accumulate in f32 in ascending-k order (float
//!   results are compared with a tolerance, so onnxruntime's blocked summation order is not
//!   reproduced bit for bit).
//! * Integer operators (MatMulInteger, ConvInteger and the int32 accumulators of QLinearMatMul
//!   and QLinearConv) are exact, with wrapping int32 arithmetic as MLAS's SIMD kernels have.
//! * Quantization follows onnxruntime bit for bit; see [`quantize_value`] and [`requantize`].
//!
//! * AveragePool's `count_include_pad` divisor counts the positions of a window inside the padded
//!   input `[-pad_begin, size + pad_end)`; positions past that (a `ceil_mode` overhang, which the
//!   frontend keeps only for AveragePool-19+, see `frontend`) are not counted.
//!
//! * The QONNX / FINN operators (Quant, BipolarQuant, Trunc, MultiThreshold) follow qonnx 1.0's
//!   numpy code step by step, including its element types: each step computes in float32 unless
//!   numpy (>= 2, NEP 50 promotion) would compute it in float64 because an operand is float64 or
//!   a 32/64-bit integer (e.g. an int64 zero point); the result is float32.
//!
//! Errors (wrong input count, shape or type, inconsistent graphs) are [`InterpError`]s; the
//! interpreter does not panic on any graph or inputs.
//!
//! Known differences from onnxruntime 1.22 (where the interpreter follows the operator
//! definitions instead):
//! * on x86-64 CPUs without VNNI, onnxruntime's uint8 x int8 GEMM and convolution kernels
//!   (QLinearMatMul, QLinearConv, MatMulInteger) add pairs of products with int16 saturation
//!   (`pmaddubsw`), so with full-range int8 weights their results depend on the machine; the
//!   interpreter accumulates exactly in int32 (as onnxruntime does with VNNI, or with weights in
//!   [-63, 63], which cannot saturate);
//! * onnxruntime's 2-D AveragePool-19+ with `count_include_pad` clips windows at
//!   `height + pads[1]` (the left pad) instead of the bottom pad, so with a bottom pad larger than
//!   the left pad it undercounts the divisor; the interpreter counts the bottom padding.

use crate::frontend::shape;
use crate::ir::{ConvAttrs, Graph, Op, PoolAttrs, QonnxRounding};
use crate::tensor::{DType, Tensor, TensorData};

/// Why a graph could not be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InterpError {
    #[error("the graph takes {expected} input(s) but {got} were given")]
    InputCount { expected: usize, got: usize },
    #[error(
        "input {index} ('{name}') must be {expected_dtype} {expected_shape:?}, \
         but {got_dtype} {got_shape:?} was given"
    )]
    InputMismatch {
        index: usize,
        name: String,
        expected_shape: Vec<usize>,
        expected_dtype: DType,
        got_shape: Vec<usize>,
        got_dtype: DType,
    },
    #[error("node '{node}' ({op}): {message}")]
    Node {
        node: String,
        op: &'static str,
        message: String,
    },
    #[error("invalid graph: {0}")]
    Graph(String),
}

/// Runs the graph on `inputs` (in `Graph::inputs` order) and returns its outputs.
pub fn run(g: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, InterpError> {
    let mut values = run_all(g, inputs)?;
    g.outputs
        .iter()
        .map(|&o| {
            values
                .get(o)
                .and_then(|v| v.clone())
                .ok_or_else(|| InterpError::Graph(format!("output value {o} is never computed")))
        })
        .collect::<Result<Vec<_>, _>>()
        .inspect(|_| values.clear())
}

/// Runs the graph and returns every value, indexed by [`ValueId`](crate::ir::ValueId) (`None` for values that
/// nothing computes, e.g. unused ones). Useful to compare layer by layer.
pub fn run_all(g: &Graph, inputs: &[Tensor]) -> Result<Vec<Option<Tensor>>, InterpError> {
    if inputs.len() != g.inputs.len() {
        return Err(InterpError::InputCount {
            expected: g.inputs.len(),
            got: inputs.len(),
        });
    }
    let mut env: Vec<Option<Tensor>> = vec![None; g.values.len()];
    for (index, (&id, t)) in g.inputs.iter().zip(inputs).enumerate() {
        let v = g.values.get(id).ok_or_else(|| {
            InterpError::Graph(format!("input {index} refers to missing value {id}"))
        })?;
        if v.shape != t.shape || v.dtype != t.dtype() || shape::numel(&t.shape) != Some(t.len()) {
            return Err(InterpError::InputMismatch {
                index,
                name: v.name.clone(),
                expected_shape: v.shape.clone(),
                expected_dtype: v.dtype,
                got_shape: t.shape.clone(),
                got_dtype: t.dtype(),
            });
        }
        env[id] = Some(t.clone());
    }
    for (&id, t) in &g.consts {
        let v = g
            .values
            .get(id)
            .ok_or_else(|| InterpError::Graph(format!("constant for missing value {id}")))?;
        if v.shape != t.shape || v.dtype != t.dtype() || shape::numel(&t.shape) != Some(t.len()) {
            return Err(InterpError::Graph(format!(
                "constant '{}' is {} {:?} with {} elements but its value is declared {} {:?}",
                v.name,
                t.dtype(),
                t.shape,
                t.len(),
                v.dtype,
                v.shape
            )));
        }
        env[id] = Some(t.clone());
    }

    for node in &g.nodes {
        let err = |message: String| InterpError::Node {
            node: node.name.clone(),
            op: node.op.op_type(),
            message,
        };
        let mut ins: Vec<Option<&Tensor>> = Vec::with_capacity(node.inputs.len());
        for &i in &node.inputs {
            match i {
                None => ins.push(None),
                Some(id) => match env.get(id) {
                    Some(Some(t)) => ins.push(Some(t)),
                    Some(None) => {
                        return Err(err(format!("input value {id} is not computed before use")))
                    }
                    None => return Err(err(format!("input value {id} does not exist"))),
                },
            }
        }
        let mut out_shapes = Vec::with_capacity(node.outputs.len());
        for &o in &node.outputs {
            let v = g
                .values
                .get(o)
                .ok_or_else(|| err(format!("output value {o} does not exist")))?;
            out_shapes.push((v.shape.clone(), v.dtype));
        }
        let outs = eval(&node.op, &ins, &out_shapes).map_err(err)?;
        if outs.len() != node.outputs.len() {
            return Err(err(format!(
                "computed {} outputs for {} output values",
                outs.len(),
                node.outputs.len()
            )));
        }
        for (t, (&o, (shape, dtype))) in outs.into_iter().zip(node.outputs.iter().zip(&out_shapes))
        {
            if &t.shape != shape || t.dtype() != *dtype {
                return Err(err(format!(
                    "computed {} {:?} but the graph declares {} {:?}",
                    t.dtype(),
                    t.shape,
                    dtype,
                    shape
                )));
            }
            env[o] = Some(t);
        }
    }
    Ok(env)
}

type R<T> = Result<T, String>;

fn check_len(t: &Tensor, what: &str) -> R<()> {
    if shape::numel(&t.shape) == Some(t.len()) {
        Ok(())
    } else {
        Err(format!(
            "{what} has {} elements but shape {:?}",
            t.len(),
            t.shape
        ))
    }
}

fn req<'a>(ins: &[Option<&'a Tensor>], i: usize, what: &str) -> R<&'a Tensor> {
    let t = ins
        .get(i)
        .copied()
        .flatten()
        .ok_or_else(|| format!("required input {i} ({what}) is missing"))?;
    check_len(t, what)?;
    Ok(t)
}

fn opt<'a>(ins: &[Option<&'a Tensor>], i: usize, what: &str) -> R<Option<&'a Tensor>> {
    match ins.get(i).copied().flatten() {
        Some(t) => {
            check_len(t, what)?;
            Ok(Some(t))
        }
        None => Ok(None),
    }
}

fn f32s<'a>(t: &'a Tensor, what: &str) -> R<&'a [f32]> {
    match &t.data {
        TensorData::F32(v) => Ok(v),
        d => Err(format!("{what} must be float32, not {}", d.dtype())),
    }
}

fn tensor(shape: Vec<usize>, data: TensorData) -> R<Tensor> {
    Tensor::new(shape, data).map_err(|e| e.to_string())
}

/// TopK along `axis`: values and int64 indices, best first; ties keep the lower index first
/// (onnxruntime's order).
fn top_k(x: &Tensor, k: usize, axis: usize, largest: bool) -> R<Vec<Tensor>> {
    let v = f32s(x, "X")?;
    let s = &x.shape;
    let n = s[axis];
    let inner: usize = s[axis + 1..].iter().product();
    let outer: usize = s[..axis].iter().product();
    let mut vals = Vec::with_capacity(outer * k * inner);
    let mut idx = Vec::with_capacity(outer * k * inner);
    let mut ov = vec![0f32; outer * k * inner];
    let mut oi = vec![0i64; outer * k * inner];
    for o in 0..outer {
        for i in 0..inner {
            let mut order: Vec<usize> = (0..n).collect();
            let at = |j: usize| v[(o * n + j) * inner + i];
            order.sort_by(|&p, &q| {
                let c = at(p)
                    .partial_cmp(&at(q))
                    .unwrap_or(std::cmp::Ordering::Equal);
                let c = if largest { c.reverse() } else { c };
                c.then(p.cmp(&q))
            });
            for (j, &src) in order.iter().take(k).enumerate() {
                ov[(o * k + j) * inner + i] = at(src);
                oi[(o * k + j) * inner + i] = src as i64;
            }
        }
    }
    vals.extend(ov);
    idx.extend(oi);
    let mut shape = s.clone();
    shape[axis] = k;
    Ok(vec![
        tensor(shape.clone(), TensorData::F32(vals))?,
        tensor(shape, TensorData::I64(idx))?,
    ])
}

/// Evaluates one operator. `outs` are the declared output shapes and types (used by the
/// shape-only operators, whose output shape the frontend resolved).
fn eval(op: &Op, ins: &[Option<&Tensor>], outs: &[(Vec<usize>, DType)]) -> R<Vec<Tensor>> {
    let out_shape = || {
        outs.first()
            .map(|o| o.0.clone())
            .ok_or_else(|| "the node has no output".to_string())
    };
    if let Op::TopK {
        k, axis, largest, ..
    } = op
    {
        return top_k(req(ins, 0, "X")?, *k, *axis, *largest);
    }
    let t = match op {
        Op::Identity => req(ins, 0, "input")?.clone(),
        Op::TopK { .. } => unreachable!("handled above"),
        Op::Flatten { .. } | Op::Reshape | Op::Squeeze { .. } | Op::Unsqueeze { .. } => {
            let x = req(ins, 0, "data")?;
            let s = out_shape()?;
            if shape::numel(&s) != Some(x.len()) {
                return Err(format!("cannot reshape {:?} to {s:?}", x.shape));
            }
            tensor(s, x.data.clone())?
        }
        Op::Relu => relu(req(ins, 0, "X")?)?,
        Op::Add | Op::Sub | Op::Mul | Op::Div => binary(op, req(ins, 0, "A")?, req(ins, 1, "B")?)?,
        Op::Clip => clip(
            req(ins, 0, "input")?,
            opt(ins, 1, "min")?,
            opt(ins, 2, "max")?,
        )?,
        Op::Transpose { perm } => transpose(req(ins, 0, "data")?, perm)?,
        Op::Concat { axis } => {
            let xs = (0..ins.len())
                .map(|i| req(ins, i, "inputs"))
                .collect::<R<Vec<_>>>()?;
            concat(&xs, *axis)?
        }
        Op::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        } => gemm(
            req(ins, 0, "A")?,
            req(ins, 1, "B")?,
            opt(ins, 2, "C")?,
            *alpha,
            *beta,
            *trans_a,
            *trans_b,
        )?,
        Op::MatMul => {
            let (a, b) = (req(ins, 0, "A")?, req(ins, 1, "B")?);
            let s = mm_shape(a, b)?;
            let y = matmul_kernel(f32s(a, "A")?, f32s(b, "B")?, &s);
            tensor(s.out, TensorData::F32(y))?
        }
        Op::MatMulInteger => matmul_integer(ins)?,
        Op::QLinearMatMul => qlinear_matmul(ins)?,
        Op::Conv(attrs) => conv_f32(ins, attrs)?,
        Op::ConvInteger(attrs) => conv_integer(ins, attrs)?,
        Op::QLinearConv(attrs) => qlinear_conv(ins, attrs)?,
        Op::MaxPool(attrs) => max_pool(req(ins, 0, "X")?, attrs)?,
        Op::AveragePool(attrs) => average_pool(req(ins, 0, "X")?, attrs)?,
        Op::GlobalAveragePool => global_average_pool(req(ins, 0, "X")?)?,
        Op::Softmax { axis, single_axis } => softmax(req(ins, 0, "input")?, *axis, *single_axis)?,
        Op::BatchNormalization { epsilon } => batch_norm(ins, *epsilon)?,
        Op::QuantizeLinear { axis } => {
            let dt = outs
                .first()
                .map(|o| o.1)
                .ok_or_else(|| "the node has no output".to_string())?;
            quantize_linear(ins, *axis, dt)?
        }
        Op::DequantizeLinear { axis } => dequantize_linear(ins, *axis)?,
        Op::QonnxQuant {
            signed,
            narrow,
            rounding,
        } => qonnx_quant(ins, *signed, *narrow, *rounding)?,
        Op::BipolarQuant => bipolar_quant(ins)?,
        Op::Trunc { rounding } => qonnx_trunc(ins, *rounding)?,
        Op::MultiThreshold {
            out_scale,
            out_bias,
            channels_last,
        } => multi_threshold(
            req(ins, 0, "v")?,
            req(ins, 1, "thresholds")?,
            *out_scale,
            *out_bias,
            *channels_last,
        )?,
    };
    Ok(vec![t])
}

// ---------------------------------------------------------------------------------------------
// Generic element handling

/// Arithmetic with onnxruntime's semantics per type: IEEE for floats, wrapping for integers
/// (as Eigen's integer kernels behave), truncating integer division.
trait Num: Copy + PartialOrd {
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn div(self, o: Self) -> Option<Self>;
    fn zero() -> Self;
}

macro_rules! impl_float {
    ($($t:ty),*) => {$(
        impl Num for $t {
            fn add(self, o: Self) -> Self { self + o }
            fn sub(self, o: Self) -> Self { self - o }
            fn mul(self, o: Self) -> Self { self * o }
            fn div(self, o: Self) -> Option<Self> { Some(self / o) }
            fn zero() -> Self { 0.0 }
        }
    )*};
}
macro_rules! impl_int {
    ($($t:ty),*) => {$(
        impl Num for $t {
            fn add(self, o: Self) -> Self { self.wrapping_add(o) }
            fn sub(self, o: Self) -> Self { self.wrapping_sub(o) }
            fn mul(self, o: Self) -> Self { self.wrapping_mul(o) }
            fn div(self, o: Self) -> Option<Self> { self.checked_div(o) }
            fn zero() -> Self { 0 }
        }
    )*};
}
impl_float!(f32, f64);
impl_int!(i8, u8, i32, i64);

fn relu(x: &Tensor) -> R<Tensor> {
    fn go<T: Num>(v: &[T]) -> Vec<T> {
        // max(x, 0); NaN stays NaN.
        v.iter()
            .map(|&x| if x < T::zero() { T::zero() } else { x })
            .collect()
    }
    let data = match &x.data {
        TensorData::F32(v) => TensorData::F32(go(v)),
        TensorData::F64(v) => TensorData::F64(go(v)),
        TensorData::I8(v) => TensorData::I8(go(v)),
        TensorData::U8(v) => TensorData::U8(go(v)),
        TensorData::I32(v) => TensorData::I32(go(v)),
        TensorData::I64(v) => TensorData::I64(go(v)),
        TensorData::Bool(_) => return Err("bool tensors are not supported".into()),
    };
    tensor(x.shape.clone(), data)
}

fn binary(op: &Op, a: &Tensor, b: &Tensor) -> R<Tensor> {
    fn go<T: Num>(
        op: &Op,
        x: &[T],
        sx: &[usize],
        y: &[T],
        sy: &[usize],
    ) -> R<(Vec<usize>, Vec<T>)> {
        broadcast_zip(x, sx, y, sy, |p, q| match op {
            Op::Add => Ok(p.add(q)),
            Op::Sub => Ok(p.sub(q)),
            Op::Mul => Ok(p.mul(q)),
            _ => p
                .div(q)
                .ok_or_else(|| "integer division by zero or overflow".to_string()),
        })
    }
    let (sa, sb) = (&a.shape, &b.shape);
    let (s, data) = match (&a.data, &b.data) {
        (TensorData::F32(x), TensorData::F32(y)) => {
            let (s, v) = go(op, x, sa, y, sb)?;
            (s, TensorData::F32(v))
        }
        (TensorData::F64(x), TensorData::F64(y)) => {
            let (s, v) = go(op, x, sa, y, sb)?;
            (s, TensorData::F64(v))
        }
        (TensorData::I8(x), TensorData::I8(y)) => {
            let (s, v) = go(op, x, sa, y, sb)?;
            (s, TensorData::I8(v))
        }
        (TensorData::U8(x), TensorData::U8(y)) => {
            let (s, v) = go(op, x, sa, y, sb)?;
            (s, TensorData::U8(v))
        }
        (TensorData::I32(x), TensorData::I32(y)) => {
            let (s, v) = go(op, x, sa, y, sb)?;
            (s, TensorData::I32(v))
        }
        (TensorData::I64(x), TensorData::I64(y)) => {
            let (s, v) = go(op, x, sa, y, sb)?;
            (s, TensorData::I64(v))
        }
        _ => {
            return Err(format!(
                "unsupported operand types {} and {}",
                a.dtype(),
                b.dtype()
            ))
        }
    };
    tensor(s, data)
}

/// Numpy-broadcast elementwise combination of two row-major arrays.
fn broadcast_zip<T: Copy, U>(
    a: &[T],
    sa: &[usize],
    b: &[T],
    sb: &[usize],
    mut f: impl FnMut(T, T) -> R<U>,
) -> R<(Vec<usize>, Vec<U>)> {
    let out = shape::broadcast(sa, sb)
        .ok_or_else(|| format!("shapes {sa:?} and {sb:?} do not broadcast"))?;
    let n = shape::numel(&out).ok_or("output too large")?;
    let rank = out.len();
    let (ta, tb) = (
        shape::broadcast_strides(sa, rank),
        shape::broadcast_strides(sb, rank),
    );
    let mut idx = vec![0usize; rank];
    let (mut ia, mut ib) = (0usize, 0usize);
    let mut res = Vec::with_capacity(n);
    for _ in 0..n {
        let (&x, &y) = a
            .get(ia)
            .zip(b.get(ib))
            .ok_or("broadcast index out of range")?;
        res.push(f(x, y)?);
        for d in (0..rank).rev() {
            idx[d] += 1;
            ia += ta[d];
            ib += tb[d];
            if idx[d] < out[d] {
                break;
            }
            ia -= ta[d] * out[d];
            ib -= tb[d] * out[d];
            idx[d] = 0;
        }
    }
    Ok((out, res))
}

fn clip(x: &Tensor, lo: Option<&Tensor>, hi: Option<&Tensor>) -> R<Tensor> {
    fn go<T: Num>(v: &[T], lo: Option<T>, hi: Option<T>) -> Vec<T> {
        v.iter()
            .map(|&x| {
                let x = match lo {
                    Some(l) if x < l => l,
                    _ => x,
                };
                match hi {
                    Some(h) if x > h => h,
                    _ => x,
                }
            })
            .collect()
    }
    macro_rules! bound {
        ($var:ident, $t:expr) => {
            match $t {
                None => None,
                Some(t) => match &t.data {
                    TensorData::$var(b) if b.len() == 1 => Some(b[0]),
                    _ => {
                        return Err(format!(
                            "min/max must be scalars of the input's type, not {} {:?}",
                            t.dtype(),
                            t.shape
                        ))
                    }
                },
            }
        };
    }
    macro_rules! arm {
        ($var:ident, $v:expr) => {
            TensorData::$var(go($v, bound!($var, lo), bound!($var, hi)))
        };
    }
    let data = match &x.data {
        TensorData::F32(v) => arm!(F32, v),
        TensorData::F64(v) => arm!(F64, v),
        TensorData::I8(v) => arm!(I8, v),
        TensorData::U8(v) => arm!(U8, v),
        TensorData::I32(v) => arm!(I32, v),
        TensorData::I64(v) => arm!(I64, v),
        TensorData::Bool(_) => return Err("bool tensors are not supported".into()),
    };
    tensor(x.shape.clone(), data)
}

/// Gathers elements of any type by index.
fn gather(data: &TensorData, idx: &[usize]) -> R<TensorData> {
    fn g<T: Copy>(v: &[T], idx: &[usize]) -> R<Vec<T>> {
        idx.iter()
            .map(|&i| {
                v.get(i)
                    .copied()
                    .ok_or_else(|| "index out of range".to_string())
            })
            .collect()
    }
    Ok(match data {
        TensorData::F32(v) => TensorData::F32(g(v, idx)?),
        TensorData::F64(v) => TensorData::F64(g(v, idx)?),
        TensorData::I8(v) => TensorData::I8(g(v, idx)?),
        TensorData::U8(v) => TensorData::U8(g(v, idx)?),
        TensorData::I32(v) => TensorData::I32(g(v, idx)?),
        TensorData::I64(v) => TensorData::I64(g(v, idx)?),
        TensorData::Bool(v) => TensorData::Bool(g(v, idx)?),
    })
}

fn transpose(x: &Tensor, perm: &[usize]) -> R<Tensor> {
    let s = &x.shape;
    let rank = s.len();
    let mut seen = vec![false; rank];
    if perm.len() != rank
        || !perm
            .iter()
            .all(|&p| p < rank && !std::mem::replace(&mut seen[p], true))
    {
        return Err(format!(
            "perm {perm:?} is not a permutation for shape {s:?}"
        ));
    }
    let out: Vec<usize> = perm.iter().map(|&p| s[p]).collect();
    let in_strides = shape::broadcast_strides(s, rank);
    // Strides of the input for broadcast dims are 0; for size-1 dims the index is always 0, so
    // that is harmless here.
    let n = x.len();
    let mut idx = Vec::with_capacity(n);
    let mut pos = vec![0usize; rank];
    for _ in 0..n {
        idx.push((0..rank).map(|d| pos[d] * in_strides[perm[d]]).sum());
        for d in (0..rank).rev() {
            pos[d] += 1;
            if pos[d] < out[d] {
                break;
            }
            pos[d] = 0;
        }
    }
    tensor(out, gather(&x.data, &idx)?)
}

fn concat(xs: &[&Tensor], axis: usize) -> R<Tensor> {
    let first = xs.first().ok_or("Concat needs inputs")?;
    let rank = first.shape.len();
    if axis >= rank {
        return Err(format!("axis {axis} out of range for rank {rank}"));
    }
    let mut out = first.shape.clone();
    out[axis] = 0;
    for x in xs {
        if x.shape.len() != rank
            || x.dtype() != first.dtype()
            || (0..rank).any(|d| d != axis && x.shape[d] != first.shape[d])
        {
            return Err(format!(
                "inputs {} {:?} and {} {:?} do not concatenate on axis {axis}",
                first.dtype(),
                first.shape,
                x.dtype(),
                x.shape
            ));
        }
        out[axis] += x.shape[axis];
    }
    let outer: usize = first.shape[..axis].iter().product();
    let inner: usize = first.shape[axis + 1..].iter().product();
    // Build a flat index into the concatenation of all inputs' data.
    let mut offsets = Vec::with_capacity(xs.len());
    let mut total = 0usize;
    for x in xs {
        offsets.push(total);
        total += x.len();
    }
    let mut idx = Vec::with_capacity(total);
    for o in 0..outer {
        for (x, &base) in xs.iter().zip(&offsets) {
            let chunk = x.shape[axis] * inner;
            idx.extend((0..chunk).map(|i| base + o * chunk + i));
        }
    }
    let all = concat_data(xs)?;
    tensor(out, gather(&all, &idx)?)
}

fn concat_data(xs: &[&Tensor]) -> R<TensorData> {
    macro_rules! cat {
        ($var:ident) => {{
            let mut v = Vec::new();
            for x in xs {
                match &x.data {
                    TensorData::$var(d) => v.extend_from_slice(d),
                    _ => return Err("inputs of different types".into()),
                }
            }
            TensorData::$var(v)
        }};
    }
    Ok(match xs.first().map(|x| x.dtype()) {
        Some(DType::F32) => cat!(F32),
        Some(DType::F64) => cat!(F64),
        Some(DType::I8) => cat!(I8),
        Some(DType::U8) => cat!(U8),
        Some(DType::I32) => cat!(I32),
        Some(DType::I64) => cat!(I64),
        Some(DType::Bool) => cat!(Bool),
        None => return Err("Concat needs inputs".into()),
    })
}

// ---------------------------------------------------------------------------------------------
// Matrix products

/// Multiply-accumulate of an accumulator type: f32 (IEEE, no fused multiply-add) or int32
/// (wrapping, as MLAS's integer kernels).
trait Acc: Copy {
    const ZERO: Self;
    fn mac(self, a: Self, b: Self) -> Self;
}

impl Acc for f32 {
    const ZERO: Self = 0.0;
    fn mac(self, a: Self, b: Self) -> Self {
        self + a * b
    }
}

impl Acc for i32 {
    const ZERO: Self = 0;
    fn mac(self, a: Self, b: Self) -> Self {
        self.wrapping_add(a.wrapping_mul(b))
    }
}

fn mm_shape(a: &Tensor, b: &Tensor) -> R<shape::MatMulShape> {
    shape::matmul(&a.shape, &b.shape).ok_or_else(|| {
        format!(
            "shapes {:?} and {:?} cannot be multiplied",
            a.shape, b.shape
        )
    })
}

/// Numpy `matmul` over already-converted operands, accumulating in ascending k.
fn matmul_kernel<A: Acc>(a: &[A], b: &[A], s: &shape::MatMulShape) -> Vec<A> {
    let (m, k, n) = (s.m, s.k, s.n);
    let rank = s.batch.len();
    let batches: usize = s.batch.iter().product();
    let sa = shape::broadcast_strides(&s.a_batch, rank);
    let sb = shape::broadcast_strides(&s.b_batch, rank);
    let mut out = Vec::with_capacity(batches * m * n);
    let mut pos = vec![0usize; rank];
    for _ in 0..batches {
        let oa: usize = (0..rank).map(|d| pos[d] * sa[d]).sum::<usize>() * m * k;
        let ob: usize = (0..rank).map(|d| pos[d] * sb[d]).sum::<usize>() * k * n;
        for i in 0..m {
            for j in 0..n {
                let mut acc = A::ZERO;
                for p in 0..k {
                    acc = acc.mac(a[oa + i * k + p], b[ob + p * n + j]);
                }
                out.push(acc);
            }
        }
        for d in (0..rank).rev() {
            pos[d] += 1;
            if pos[d] < s.batch[d] {
                break;
            }
            pos[d] = 0;
        }
    }
    out
}

fn gemm(
    a: &Tensor,
    b: &Tensor,
    c: Option<&Tensor>,
    alpha: f32,
    beta: f32,
    trans_a: bool,
    trans_b: bool,
) -> R<Tensor> {
    let (av, bv) = (f32s(a, "A")?, f32s(b, "B")?);
    let (&[ra, ca], &[rb, cb]) = (a.shape.as_slice(), b.shape.as_slice()) else {
        return Err(format!("A {:?} and B {:?} must be 2-D", a.shape, b.shape));
    };
    let (m, k) = if trans_a { (ca, ra) } else { (ra, ca) };
    let (kb, n) = if trans_b { (cb, rb) } else { (rb, cb) };
    if k != kb {
        return Err(format!(
            "inner dimensions of A {:?} and B {:?} differ",
            a.shape, b.shape
        ));
    }
    let cdata = match c {
        Some(c) => {
            if !shape::broadcasts_to(&c.shape, &[m, n]) {
                return Err(format!("C {:?} does not broadcast to [{m}, {n}]", c.shape));
            }
            let cv = f32s(c, "C")?;
            let (_, full) =
                broadcast_zip(cv, &c.shape, &vec![0.0f32; m * n], &[m, n], |x, _| Ok(x))?;
            Some(full)
        }
        None => None,
    };
    let mut y = Vec::with_capacity(m * n);
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for p in 0..k {
                let x = if trans_a {
                    av[p * m + i]
                } else {
                    av[i * k + p]
                };
                let w = if trans_b {
                    bv[j * k + p]
                } else {
                    bv[p * n + j]
                };
                acc += x * w;
            }
            let mut v = alpha * acc;
            if let Some(cd) = &cdata {
                v += beta * cd[i * n + j];
            }
            y.push(v);
        }
    }
    tensor(vec![m, n], TensorData::F32(y))
}

/// 8-bit tensor elements widened to i32.
fn q8(t: &Tensor, what: &str) -> R<Vec<i32>> {
    match &t.data {
        TensorData::I8(v) => Ok(v.iter().map(|&x| i32::from(x)).collect()),
        TensorData::U8(v) => Ok(v.iter().map(|&x| i32::from(x)).collect()),
        d => Err(format!("{what} must be int8 or uint8, not {}", d.dtype())),
    }
}

/// Zero point(s) as i32: `n` values (one broadcast if per-tensor); 0 when absent.
fn zero_points(t: Option<&Tensor>, n: usize, what: &str) -> R<Vec<i32>> {
    let Some(t) = t else {
        return Ok(vec![0; n]);
    };
    let v = match &t.data {
        TensorData::I8(v) => v.iter().map(|&x| i32::from(x)).collect::<Vec<_>>(),
        TensorData::U8(v) => v.iter().map(|&x| i32::from(x)).collect(),
        TensorData::I32(v) => v.clone(),
        d => return Err(format!("{what} has unsupported type {}", d.dtype())),
    };
    per_channel(v, n, what)
}

fn scales(t: &Tensor, n: usize, what: &str) -> R<Vec<f32>> {
    per_channel(f32s(t, what)?.to_vec(), n, what)
}

/// A per-tensor (one element) or per-channel (`n` elements) parameter as `n` values.
fn per_channel<T: Copy>(v: Vec<T>, n: usize, what: &str) -> R<Vec<T>> {
    match v.len() {
        1 => Ok(vec![v[0]; n]),
        l if l == n => Ok(v),
        l => Err(format!("{what} has {l} elements; expected 1 or {n}")),
    }
}

fn scalar_param<T: Copy>(v: Vec<T>, what: &str) -> R<T> {
    match v.as_slice() {
        [x] => Ok(*x),
        _ => Err(format!("{what} must have one element, not {}", v.len())),
    }
}

fn matmul_integer(ins: &[Option<&Tensor>]) -> R<Tensor> {
    let (a, b) = (req(ins, 0, "A")?, req(ins, 1, "B")?);
    let s = mm_shape(a, b)?;
    let az = scalar_param(
        zero_points(opt(ins, 2, "a_zero_point")?, 1, "a_zero_point")?,
        "a_zero_point",
    )?;
    let bz = zero_points(opt(ins, 3, "b_zero_point")?, s.n, "b_zero_point")?;
    let av: Vec<i32> = q8(a, "A")?.into_iter().map(|x| x - az).collect();
    let bv: Vec<i32> = q8(b, "B")?
        .into_iter()
        .enumerate()
        .map(|(i, x)| x - bz[i % s.n])
        .collect();
    let y = matmul_kernel(&av, &bv, &s);
    tensor(s.out, TensorData::I32(y))
}

/// onnxruntime's requantization of an int32 accumulator (MLAS `MlasRequantizeOutput`):
/// `float(acc) * scale`, clamped to `[qmin - zp, qmax - zp]` with MAXPS/MINPS semantics (a NaN
/// becomes the lower bound), rounded to nearest even (`cvtps2dq`), plus the zero point.
pub fn requantize(acc: i32, scale: f32, zp: i32, dtype: DType) -> i32 {
    clamp_round(acc as f32 * scale, zp, dtype)
}

/// onnxruntime's QuantizeLinear of one value (MLAS `MlasQuantizeLinear`): `x / scale` in f32 (a
/// true division, not a multiplication by the reciprocal), clamped, rounded half to even, plus
/// the zero point.
pub fn quantize_value(x: f32, scale: f32, zp: i32, dtype: DType) -> i32 {
    clamp_round(x / scale, zp, dtype)
}

fn clamp_round(v: f32, zp: i32, dtype: DType) -> i32 {
    let (qmin, qmax) = if dtype == DType::I8 {
        (-128, 127)
    } else {
        (0, 255)
    };
    let lo = (qmin - zp) as f32;
    let hi = (qmax - zp) as f32;
    let v = if v > lo { v } else { lo };
    let v = if v < hi { v } else { hi };
    v.round_ties_even() as i32 + zp
}

fn q8_data(v: Vec<i32>, dtype: DType) -> R<TensorData> {
    // Values are already saturated to the type's range.
    match dtype {
        DType::I8 => Ok(TensorData::I8(v.into_iter().map(|x| x as i8).collect())),
        DType::U8 => Ok(TensorData::U8(v.into_iter().map(|x| x as u8).collect())),
        d => Err(format!("quantized output type {d} is not supported")),
    }
}

fn qlinear_matmul(ins: &[Option<&Tensor>]) -> R<Tensor> {
    let a = req(ins, 0, "a")?;
    let a_scale = scalar_param(
        f32s(req(ins, 1, "a_scale")?, "a_scale")?.to_vec(),
        "a_scale",
    )?;
    let a_zp = scalar_param(
        zero_points(Some(req(ins, 2, "a_zero_point")?), 1, "a_zero_point")?,
        "a_zero_point",
    )?;
    let b = req(ins, 3, "b")?;
    let s = mm_shape(a, b)?;
    let b_scale = scales(req(ins, 4, "b_scale")?, s.n, "b_scale")?;
    let b_zp = zero_points(Some(req(ins, 5, "b_zero_point")?), s.n, "b_zero_point")?;
    let y_scale = scalar_param(
        f32s(req(ins, 6, "y_scale")?, "y_scale")?.to_vec(),
        "y_scale",
    )?;
    let y_zp_t = req(ins, 7, "y_zero_point")?;
    let y_zp = scalar_param(
        zero_points(Some(y_zp_t), 1, "y_zero_point")?,
        "y_zero_point",
    )?;
    let dt = y_zp_t.dtype();

    let av: Vec<i32> = q8(a, "a")?.into_iter().map(|x| x - a_zp).collect();
    let bv: Vec<i32> = q8(b, "b")?
        .into_iter()
        .enumerate()
        .map(|(i, x)| x - b_zp[i % s.n])
        .collect();
    let acc = matmul_kernel(&av, &bv, &s);
    // onnxruntime (quantize_linear_matmul.cc) forms one f32 scale per column of b:
    //   output_scales[i] = a_scale * b_scale[i] / y_scale   (f32, left to right)
    // and requantizes with MlasRequantizeOutput.
    let out_scales: Vec<f32> = b_scale.iter().map(|&bs| a_scale * bs / y_scale).collect();
    let y: Vec<i32> = acc
        .iter()
        .enumerate()
        .map(|(i, &v)| requantize(v, out_scales[i % s.n], y_zp, dt))
        .collect();
    tensor(s.out, q8_data(y, dt)?)
}

// ---------------------------------------------------------------------------------------------
// Convolution and pooling

struct ConvGeom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    m: usize,
    oh: usize,
    ow: usize,
}

fn conv_geom(x: &Tensor, w: &Tensor, a: &ConvAttrs) -> R<ConvGeom> {
    let (&[n, c, h, wd], &[m, cg, kh, kw]) = (x.shape.as_slice(), w.shape.as_slice()) else {
        return Err(format!("X {:?} and W {:?} must be 4-D", x.shape, w.shape));
    };
    if a.group == 0 || m % a.group != 0 || cg.checked_mul(a.group) != Some(c) {
        return Err(format!(
            "X {:?} and W {:?} do not match group = {}",
            x.shape, w.shape, a.group
        ));
    }
    if [kh, kw] != a.kernel {
        return Err(format!(
            "W {:?} does not match kernel {:?}",
            w.shape, a.kernel
        ));
    }
    let dim = |i: usize, k: usize, s: usize, d: usize, p0: usize, p1: usize| -> R<usize> {
        shape::conv_dim(i, k, s, d, shape::AutoPad::NotSet, (p0, p1))
            .map(|r| r.2)
            .ok_or_else(|| "the kernel does not fit the padded input".to_string())
    };
    let oh = dim(h, kh, a.strides[0], a.dilations[0], a.pads[0], a.pads[2])?;
    let ow = dim(wd, kw, a.strides[1], a.dilations[1], a.pads[1], a.pads[3])?;
    Ok(ConvGeom {
        n,
        c,
        h,
        w: wd,
        m,
        oh,
        ow,
    })
}

/// Direct convolution over already-converted operands; padding contributes nothing (zero for
/// floats; for the integer convolutions the pad value is the input zero point, which also
/// contributes zero after the zero-point subtraction).
fn conv_kernel<A: Acc>(x: &[A], w: &[A], g: &ConvGeom, a: &ConvAttrs) -> Vec<A> {
    let [kh, kw] = a.kernel;
    let cg = g.c / a.group;
    let mg = g.m / a.group;
    let mut out = Vec::with_capacity(g.n * g.m * g.oh * g.ow);
    for n in 0..g.n {
        for m in 0..g.m {
            let grp = m / mg;
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let mut acc = A::ZERO;
                    for ci in 0..cg {
                        let c = grp * cg + ci;
                        let xbase = (n * g.c + c) * g.h * g.w;
                        let wbase = (m * cg + ci) * kh * kw;
                        for ky in 0..kh {
                            let iy = (oy * a.strides[0] + ky * a.dilations[0]) as isize
                                - a.pads[0] as isize;
                            if iy < 0 || iy >= g.h as isize {
                                continue;
                            }
                            for kx in 0..kw {
                                let ix = (ox * a.strides[1] + kx * a.dilations[1]) as isize
                                    - a.pads[1] as isize;
                                if ix < 0 || ix >= g.w as isize {
                                    continue;
                                }
                                acc = acc.mac(
                                    x[xbase + iy as usize * g.w + ix as usize],
                                    w[wbase + ky * kw + kx],
                                );
                            }
                        }
                    }
                    out.push(acc);
                }
            }
        }
    }
    out
}

fn conv_f32(ins: &[Option<&Tensor>], a: &ConvAttrs) -> R<Tensor> {
    let (x, w) = (req(ins, 0, "X")?, req(ins, 1, "W")?);
    let g = conv_geom(x, w, a)?;
    let mut y = conv_kernel(f32s(x, "X")?, f32s(w, "W")?, &g, a);
    if let Some(b) = opt(ins, 2, "B")? {
        let bv = f32s(b, "B")?;
        if bv.len() != g.m {
            return Err(format!("B has {} elements, expected {}", bv.len(), g.m));
        }
        let plane = g.oh * g.ow;
        for (i, v) in y.iter_mut().enumerate() {
            *v += bv[(i / plane) % g.m];
        }
    }
    tensor(vec![g.n, g.m, g.oh, g.ow], TensorData::F32(y))
}

/// Integer operands of ConvInteger / QLinearConv with their zero points subtracted.
fn conv_int_operands(
    x: &Tensor,
    x_zp: Option<&Tensor>,
    w: &Tensor,
    w_zp: Option<&Tensor>,
    g: &ConvGeom,
) -> R<(Vec<i32>, Vec<i32>)> {
    let xz = scalar_param(zero_points(x_zp, 1, "x_zero_point")?, "x_zero_point")?;
    let wz = zero_points(w_zp, g.m, "w_zero_point")?;
    let per_m = w.len() / g.m.max(1);
    let xv = q8(x, "x")?.into_iter().map(|v| v - xz).collect();
    let wv = q8(w, "w")?
        .into_iter()
        .enumerate()
        .map(|(i, v)| v - wz[i / per_m.max(1)])
        .collect();
    Ok((xv, wv))
}

fn conv_integer(ins: &[Option<&Tensor>], a: &ConvAttrs) -> R<Tensor> {
    let (x, w) = (req(ins, 0, "x")?, req(ins, 1, "w")?);
    let g = conv_geom(x, w, a)?;
    let (xv, wv) = conv_int_operands(
        x,
        opt(ins, 2, "x_zero_point")?,
        w,
        opt(ins, 3, "w_zero_point")?,
        &g,
    )?;
    let y = conv_kernel(&xv, &wv, &g, a);
    tensor(vec![g.n, g.m, g.oh, g.ow], TensorData::I32(y))
}

fn qlinear_conv(ins: &[Option<&Tensor>], a: &ConvAttrs) -> R<Tensor> {
    let x = req(ins, 0, "x")?;
    let x_scale = scalar_param(
        f32s(req(ins, 1, "x_scale")?, "x_scale")?.to_vec(),
        "x_scale",
    )?;
    let w = req(ins, 3, "w")?;
    let g = conv_geom(x, w, a)?;
    let w_scale = scales(req(ins, 4, "w_scale")?, g.m, "w_scale")?;
    let y_scale = scalar_param(
        f32s(req(ins, 6, "y_scale")?, "y_scale")?.to_vec(),
        "y_scale",
    )?;
    let y_zp_t = req(ins, 7, "y_zero_point")?;
    let y_zp = scalar_param(
        zero_points(Some(y_zp_t), 1, "y_zero_point")?,
        "y_zero_point",
    )?;
    let dt = y_zp_t.dtype();
    let (xv, wv) = conv_int_operands(
        x,
        Some(req(ins, 2, "x_zero_point")?),
        w,
        Some(req(ins, 5, "w_zero_point")?),
        &g,
    )?;
    let bias = match opt(ins, 8, "B")? {
        Some(b) => match &b.data {
            TensorData::I32(v) if v.len() == g.m => v.clone(),
            _ => return Err(format!("B must be int32 [{}]", g.m)),
        },
        None => vec![0; g.m],
    };
    let acc = conv_kernel(&xv, &wv, &g, a);
    // onnxruntime (qlinearconv.cc, ComputeOutputScale) forms one f32 scale per output channel:
    //   output_scales[i] = X_scale_value * W_scale_data[i] / Y_scale_value   (f32, left to right)
    // adds the int32 bias to the int32 accumulator and requantizes with MlasRequantizeOutput.
    let out_scales: Vec<f32> = w_scale.iter().map(|&ws| x_scale * ws / y_scale).collect();
    let plane = g.oh * g.ow;
    let y: Vec<i32> = acc
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let m = (i / plane) % g.m;
            requantize(v.wrapping_add(bias[m]), out_scales[m], y_zp, dt)
        })
        .collect();
    tensor(vec![g.n, g.m, g.oh, g.ow], q8_data(y, dt)?)
}

/// Output size and the range of window positions of one pooled dimension.
struct PoolDim {
    input: usize,
    out: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad_begin: usize,
    pad_end: usize,
}

impl PoolDim {
    /// Input positions of window `o` inside the input, and the number of positions inside the
    /// padded extent `[-pad_begin, input + pad_end)` (the count_include_pad divisor).
    fn window(&self, o: usize) -> (Vec<usize>, usize) {
        let start = (o * self.stride) as isize - self.pad_begin as isize;
        let mut inside = Vec::with_capacity(self.kernel);
        let mut counted = 0;
        for j in 0..self.kernel {
            let p = start + (j * self.dilation) as isize;
            if p >= -(self.pad_begin as isize) && p < (self.input + self.pad_end) as isize {
                counted += 1;
            }
            if p >= 0 && p < self.input as isize {
                inside.push(p as usize);
            }
        }
        (inside, counted)
    }
}

fn pool_dims(x: &Tensor, a: &PoolAttrs) -> R<(usize, usize, [PoolDim; 2])> {
    let &[n, c, h, w] = x.shape.as_slice() else {
        return Err(format!("X must be 4-D, not {:?}", x.shape));
    };
    let mk = |d: usize, input: usize| -> R<PoolDim> {
        let (pb, pe) = (a.pads[d], a.pads[2 + d]);
        let (_, _, out) = shape::pool_dim(
            input,
            a.kernel[d],
            a.strides[d],
            a.dilations[d],
            shape::AutoPad::NotSet,
            (pb, pe),
            a.ceil_mode,
        )
        .ok_or_else(|| "the window does not fit the padded input".to_string())?;
        Ok(PoolDim {
            input,
            out,
            kernel: a.kernel[d],
            stride: a.strides[d],
            dilation: a.dilations[d],
            pad_begin: pb,
            pad_end: pe,
        })
    };
    Ok((n, c, [mk(0, h)?, mk(1, w)?]))
}

/// Runs `f(plane, rows, cols, counted)` for each output position of each N*C plane.
fn pool_generic<T: Copy, U>(
    x: &[T],
    n: usize,
    c: usize,
    dims: &[PoolDim; 2],
    mut f: impl FnMut(&[T], &[usize], &[usize], usize) -> U,
) -> Vec<U> {
    let (h, w) = (dims[0].input, dims[1].input);
    let mut out = Vec::with_capacity(n * c * dims[0].out * dims[1].out);
    let cols: Vec<(Vec<usize>, usize)> = (0..dims[1].out).map(|o| dims[1].window(o)).collect();
    for p in 0..n * c {
        let plane = &x[p * h * w..(p + 1) * h * w];
        for oy in 0..dims[0].out {
            let (rows, rc) = dims[0].window(oy);
            for (cols, cc) in &cols {
                out.push(f(plane, &rows, cols, rc * cc));
            }
        }
    }
    out
}

fn max_pool(x: &Tensor, a: &PoolAttrs) -> R<Tensor> {
    let (n, c, dims) = pool_dims(x, a)?;
    let out = vec![n, c, dims[0].out, dims[1].out];
    // onnxruntime starts from numeric_limits<T>::lowest() and keeps the first maximum (`x > y`).
    fn go<T: Copy + PartialOrd>(
        x: &[T],
        n: usize,
        c: usize,
        dims: &[PoolDim; 2],
        lowest: T,
    ) -> Vec<T> {
        let w = dims[1].input;
        pool_generic(x, n, c, dims, |plane, rows, cols, _| {
            let mut best = lowest;
            for &r in rows {
                for &q in cols {
                    let v = plane[r * w + q];
                    if v > best {
                        best = v;
                    }
                }
            }
            best
        })
    }
    let data = match &x.data {
        TensorData::F32(v) => TensorData::F32(go(v, n, c, &dims, f32::MIN)),
        TensorData::I8(v) => TensorData::I8(go(v, n, c, &dims, i8::MIN)),
        TensorData::U8(v) => TensorData::U8(go(v, n, c, &dims, u8::MIN)),
        d => return Err(format!("MaxPool of {} is not supported", d.dtype())),
    };
    tensor(out, data)
}

fn average_pool(x: &Tensor, a: &PoolAttrs) -> R<Tensor> {
    let (n, c, dims) = pool_dims(x, a)?;
    let v = f32s(x, "X")?;
    let w = dims[1].input;
    let y = pool_generic(v, n, c, &dims, |plane, rows, cols, counted| {
        let mut sum = 0.0f32;
        for &r in rows {
            for &q in cols {
                sum += plane[r * w + q];
            }
        }
        let valid = rows.len() * cols.len();
        let div = if a.count_include_pad { counted } else { valid };
        if valid == 0 || div == 0 {
            0.0
        } else {
            sum / div as f32
        }
    });
    tensor(vec![n, c, dims[0].out, dims[1].out], TensorData::F32(y))
}

/// Softmax as onnxruntime's CPU kernel computes it in float32: subtract the group's maximum,
/// exponentiate, divide by the sum (accumulated in order). A group is every element with the
/// same index outside the softmax dims.
fn softmax(x: &Tensor, axis: usize, single_axis: bool) -> R<Tensor> {
    let v = f32s(x, "input")?;
    let s = &x.shape;
    let inner: usize = if single_axis {
        s[axis + 1..].iter().product()
    } else {
        1
    };
    let n: usize = if single_axis {
        s[axis]
    } else {
        s[axis..].iter().product()
    };
    let outer: usize = s[..axis].iter().product();
    let mut y = vec![0f32; v.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| (o * n + j) * inner + i;
            let max = (0..n).map(|j| v[at(j)]).fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for j in 0..n {
                let e = (v[at(j)] - max).exp();
                y[at(j)] = e;
                sum += e;
            }
            for j in 0..n {
                y[at(j)] /= sum;
            }
        }
    }
    tensor(s.clone(), TensorData::F32(y))
}

fn global_average_pool(x: &Tensor) -> R<Tensor> {
    let v = f32s(x, "X")?;
    if x.shape.len() < 3 {
        return Err(format!("X must have rank >= 3, not {:?}", x.shape));
    }
    let planes = x.shape[0] * x.shape[1];
    let size: usize = x.shape[2..].iter().product();
    let y: Vec<f32> = (0..planes)
        .map(|p| {
            let s: f32 = v[p * size..(p + 1) * size].iter().sum();
            s / size as f32
        })
        .collect();
    let mut out = x.shape.clone();
    for d in &mut out[2..] {
        *d = 1;
    }
    tensor(out, TensorData::F32(y))
}

// ---------------------------------------------------------------------------------------------
// Normalization and quantization

fn batch_norm(ins: &[Option<&Tensor>], epsilon: f32) -> R<Tensor> {
    let x = req(ins, 0, "X")?;
    let xv = f32s(x, "X")?;
    if x.shape.len() < 2 {
        return Err(format!("X must have rank >= 2, not {:?}", x.shape));
    }
    let c = x.shape[1];
    let mut p = Vec::with_capacity(4);
    for (i, what) in [(1, "scale"), (2, "B"), (3, "input_mean"), (4, "input_var")] {
        let v = f32s(req(ins, i, what)?, what)?;
        if v.len() != c {
            return Err(format!("{what} has {} elements, expected {c}", v.len()));
        }
        p.push(v);
    }
    let (scale, bias, mean, var) = (p[0], p[1], p[2], p[3]);
    // onnxruntime (batch_norm.h, inference): inv_std = 1 / sqrt(var + epsilon);
    // new_scale = inv_std * scale; new_bias = B - mean * new_scale; y = x * new_scale + new_bias.
    let new_scale: Vec<f32> = (0..c)
        .map(|i| (1.0 / (var[i] + epsilon).sqrt()) * scale[i])
        .collect();
    let new_bias: Vec<f32> = (0..c).map(|i| bias[i] - mean[i] * new_scale[i]).collect();
    let inner: usize = x.shape[2..].iter().product();
    let y: Vec<f32> = xv
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let ch = (i / inner.max(1)) % c;
            v * new_scale[ch] + new_bias[ch]
        })
        .collect();
    tensor(x.shape.clone(), TensorData::F32(y))
}

/// Channel of each element for per-axis parameters of `n` elements (all 0 if per-tensor).
fn channel_of(shape: &[usize], axis: usize, n: usize) -> R<impl Fn(usize) -> usize> {
    let per_axis = n != 1;
    if per_axis && shape.get(axis) != Some(&n) {
        return Err(format!(
            "per-axis parameters of {n} elements do not match axis {axis} of {shape:?}"
        ));
    }
    let inner: usize = if per_axis {
        shape[axis + 1..].iter().product()
    } else {
        1
    };
    Ok(move |i: usize| if per_axis { (i / inner.max(1)) % n } else { 0 })
}

fn quantize_linear(ins: &[Option<&Tensor>], axis: usize, dt: DType) -> R<Tensor> {
    let x = req(ins, 0, "x")?;
    let xv = f32s(x, "x")?;
    let s = f32s(req(ins, 1, "y_scale")?, "y_scale")?;
    let zp_t = opt(ins, 2, "y_zero_point")?;
    if let Some(z) = zp_t {
        if z.dtype() != dt {
            return Err(format!("y_zero_point is {}, output is {dt}", z.dtype()));
        }
    }
    let zp = zero_points(zp_t, s.len(), "y_zero_point")?;
    let ch = channel_of(&x.shape, axis, s.len())?;
    let y: Vec<i32> = xv
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let k = ch(i);
            quantize_value(v, s[k], zp[k], dt)
        })
        .collect();
    tensor(x.shape.clone(), q8_data(y, dt)?)
}

fn dequantize_linear(ins: &[Option<&Tensor>], axis: usize) -> R<Tensor> {
    let x = req(ins, 0, "x")?;
    let xv: Vec<i32> = match &x.data {
        TensorData::I32(v) => v.clone(),
        _ => q8(x, "x")?,
    };
    let s = f32s(req(ins, 1, "x_scale")?, "x_scale")?;
    let zp = zero_points(opt(ins, 2, "x_zero_point")?, s.len(), "x_zero_point")?;
    let ch = channel_of(&x.shape, axis, s.len())?;
    // onnxruntime (DequantizeLinearApply): float(int32(x) - zp) * scale.
    let y: Vec<f32> = xv
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let k = ch(i);
            v.wrapping_sub(zp[k]) as f32 * s[k]
        })
        .collect();
    tensor(x.shape.clone(), TensorData::F32(y))
}

// ---------------------------------------------------------------------------------------------
// QONNX / FINN custom operators, as qonnx 1.0 computes them with numpy.
//
// Values are carried as f64; a step that numpy computes in float32 is rounded to f32 right after
// it ([`at`]). For one IEEE operation (+, -, *, /) the f64 result rounded to f32 equals the f32
// result, so this reproduces float32 arithmetic exactly.

/// Whether numpy (>= 2, NEP 50) computes a float32 array combined with an array of type `dt` in
/// float64: float64 and the 32/64-bit integers promote float32 to float64; 8-bit integers and
/// booleans do not.
fn widens_f32(dt: DType) -> bool {
    matches!(dt, DType::F64 | DType::I32 | DType::I64)
}

/// The result of a numpy step: rounded to float32 unless the step computes in float64.
fn at(v: f64, wide: bool) -> f64 {
    if wide {
        v
    } else {
        v as f32 as f64
    }
}

/// The elements of a numeric tensor as f64 (as numpy converts them for float64 arithmetic).
fn as_f64s(t: &Tensor, what: &str) -> R<Vec<f64>> {
    Ok(match &t.data {
        TensorData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::F64(v) => v.clone(),
        TensorData::I8(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::Bool(_) => return Err(format!("{what} must be numeric, not bool")),
    })
}

/// numpy's rounding functions for QONNX's rounding modes (`np.round` is half to even).
fn qonnx_round(v: f64, r: QonnxRounding) -> f64 {
    match r {
        QonnxRounding::Round => v.round_ties_even(),
        QonnxRounding::Ceil => v.ceil(),
        QonnxRounding::Floor => v.floor(),
    }
}

/// The numpy broadcast of several shapes.
fn broadcast_all(shapes: &[&[usize]]) -> R<Vec<usize>> {
    let mut out: Vec<usize> = Vec::new();
    for s in shapes {
        out = shape::broadcast(&out, s)
            .ok_or_else(|| format!("shapes {out:?} and {s:?} do not broadcast"))?;
    }
    Ok(out)
}

/// For each element of the broadcast shape `out` (row-major), the flat index of the element of
/// an operand of shape `s` that numpy broadcasting pairs with it.
fn broadcast_indices(s: &[usize], out: &[usize]) -> R<Vec<usize>> {
    if !shape::broadcasts_to(s, out) {
        return Err(format!("shape {s:?} does not broadcast to {out:?}"));
    }
    let n = shape::numel(out).ok_or("output too large")?;
    let rank = out.len();
    let strides = shape::broadcast_strides(s, rank);
    let mut idx = vec![0usize; rank];
    let mut flat = 0usize;
    let mut res = Vec::with_capacity(n);
    for _ in 0..n {
        res.push(flat);
        for d in (0..rank).rev() {
            idx[d] += 1;
            flat += strides[d];
            if idx[d] < out[d] {
                break;
            }
            flat -= strides[d] * out[d];
            idx[d] = 0;
        }
    }
    Ok(res)
}

/// A bit width input: one integer-valued element in `1..=32`.
fn bit_width(t: &Tensor, what: &str) -> R<u32> {
    let v = as_f64s(t, what)?;
    let [b] = v.as_slice() else {
        return Err(format!("{what} must have one element, not {}", v.len()));
    };
    if b.fract() != 0.0 || !(1.0..=32.0).contains(b) {
        return Err(format!("{what} = {b} is not an integer in 1..=32"));
    }
    Ok(*b as u32)
}

/// qonnx's `min_int` and `max_int` for `bits`, computed in the bit width's type as numpy does:
/// float32 arithmetic (rounded) for a float32 bit width, wrapping integer arithmetic for an
/// integer one (e.g. `2 ** 31` overflows an int32 bit width), exact for float64.
fn int_range(signed: bool, narrow: bool, bits: u32, bits_dtype: DType) -> (f64, f64) {
    // Exact in i128; every intermediate wraps the same way as the final result (+, -, * and
    // integer powers commute with reduction modulo 2^n).
    let p = |e: u32| 1i128 << e;
    let (lo, hi) = match (signed, narrow) {
        (true, true) => (1 - p(bits - 1), p(bits - 1) - 1),
        (true, false) => (-p(bits - 1), p(bits - 1) - 1),
        (false, true) => (0, p(bits) - 2),
        (false, false) => (0, p(bits) - 1),
    };
    let conv = |v: i128| -> f64 {
        match bits_dtype {
            DType::F32 => v as f32 as f64,
            DType::I8 => f64::from(v as i8),
            DType::U8 => f64::from(v as u8),
            DType::I32 => f64::from(v as i32),
            DType::I64 => v as i64 as f64,
            DType::F64 | DType::Bool => v as f64,
        }
    };
    (conv(lo), conv(hi))
}

/// QONNX Quant (qonnx 1.0 `int_quant`):
///
/// ```text
/// y = x / scale + zeropt
/// if bitwidth == 1 and signed: y = (y >= 0 ? 1 : -1)          (qonnx's bipolar special case)
/// else: y = round(clamp(y, min_int, max_int))                  (clamp, then round)
/// out = float32((y - zeropt) * scale)
/// ```
///
/// `x / scale` is float32 unless the scale widens it; the later steps are float32 unless the
/// scale or the zero point widens them (see [`widens_f32`]). scale and zeropt broadcast against
/// x (numpy), and must not enlarge it.
fn qonnx_quant(
    ins: &[Option<&Tensor>],
    signed: bool,
    narrow: bool,
    rounding: QonnxRounding,
) -> R<Tensor> {
    let x = req(ins, 0, "x")?;
    let xv = f32s(x, "x")?;
    let (s, z, b) = (
        req(ins, 1, "scale")?,
        req(ins, 2, "zeropt")?,
        req(ins, 3, "bitwidth")?,
    );
    let bits = bit_width(b, "bitwidth")?;
    let out = broadcast_all(&[&x.shape, &s.shape, &z.shape, &b.shape])?;
    if out != x.shape {
        return Err(format!(
            "scale {:?}, zeropt {:?} and bitwidth {:?} broadcast x {:?} to {out:?}",
            s.shape, z.shape, b.shape, x.shape
        ));
    }
    let (sv, zv) = (as_f64s(s, "scale")?, as_f64s(z, "zeropt")?);
    let (is, iz) = (
        broadcast_indices(&s.shape, &out)?,
        broadcast_indices(&z.shape, &out)?,
    );
    let w_div = widens_f32(s.dtype());
    let w = w_div || widens_f32(z.dtype());
    let bipolar = bits == 1 && signed;
    let (lo, hi) = int_range(signed, narrow, bits, b.dtype());
    let y: Vec<f32> = xv
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let (s, z) = (sv[is[i]], zv[iz[i]]);
            let mut y = at(at(f64::from(x) / s, w_div) + z, w);
            if bipolar {
                y = if y >= 0.0 { 1.0 } else { -1.0 };
            } else {
                // np.where(y > max, max, y); np.where(y < min, min, y): NaN stays NaN.
                if y > hi {
                    y = at(hi, w);
                }
                if y < lo {
                    y = at(lo, w);
                }
                y = qonnx_round(y, rounding);
            }
            at(at(y - z, w) * s, w) as f32
        })
        .collect();
    tensor(out, TensorData::F32(y))
}

/// QONNX BipolarQuant: `(x >= 0 ? 1 : -1) * scale` (NaN gives -scale).
fn bipolar_quant(ins: &[Option<&Tensor>]) -> R<Tensor> {
    let x = req(ins, 0, "x")?;
    let xv = f32s(x, "x")?;
    let s = req(ins, 1, "scale")?;
    let out = broadcast_all(&[&x.shape, &s.shape])?;
    if out != x.shape {
        return Err(format!(
            "scale {:?} broadcasts x {:?} to {out:?}",
            s.shape, x.shape
        ));
    }
    let sv = as_f64s(s, "scale")?;
    let is = broadcast_indices(&s.shape, &out)?;
    let w = widens_f32(s.dtype());
    let y: Vec<f32> = xv
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let sign = if x >= 0.0 { 1.0 } else { -1.0 };
            at(sign * sv[is[i]], w) as f32
        })
        .collect();
    tensor(out, TensorData::F32(y))
}

/// numpy's type of `a - b` for two bit-width tensors is float32 (so that `2.0 ** (a - b)` is
/// float32 too); any other combination gives a float64 power.
fn f32_difference(a: DType, b: DType) -> bool {
    let small = |d: DType| matches!(d, DType::F32 | DType::I8 | DType::U8 | DType::Bool);
    (a == DType::F32 && small(b)) || (b == DType::F32 && small(a))
}

/// QONNX Trunc (qonnx 1.0 `trunc_v1`, the operator at opset 1 of its domain):
///
/// ```text
/// y = round_half_even(x / scale + zeropt)
/// y = rounding(y / 2 ** (in_bitwidth - out_bitwidth))
/// out = float32((y - zeropt) * scale)
/// ```
///
/// with numpy's per-step types as in [`qonnx_quant`] (the power of two is float32 only for two
/// float32 bit widths).
fn qonnx_trunc(ins: &[Option<&Tensor>], rounding: QonnxRounding) -> R<Tensor> {
    let x = req(ins, 0, "x")?;
    let xv = f32s(x, "x")?;
    let (s, z, ib, ob) = (
        req(ins, 1, "scale")?,
        req(ins, 2, "zeropt")?,
        req(ins, 3, "in_bitwidth")?,
        req(ins, 4, "out_bitwidth")?,
    );
    let in_bits = bit_width(ib, "in_bitwidth")?;
    let out_bits = bit_width(ob, "out_bitwidth")?;
    let out = broadcast_all(&[&x.shape, &s.shape, &z.shape, &ib.shape, &ob.shape])?;
    if out != x.shape {
        return Err(format!(
            "the parameters {:?}, {:?}, {:?}, {:?} broadcast x {:?} to {out:?}",
            s.shape, z.shape, ib.shape, ob.shape, x.shape
        ));
    }
    let (sv, zv) = (as_f64s(s, "scale")?, as_f64s(z, "zeropt")?);
    let (is, iz) = (
        broadcast_indices(&s.shape, &out)?,
        broadcast_indices(&z.shape, &out)?,
    );
    // An exact power of two in either type.
    let trunc_scale = 2f64.powi(in_bits as i32 - out_bits as i32);
    let w_div = widens_f32(s.dtype());
    let w = w_div || widens_f32(z.dtype());
    let w_trunc = w || !f32_difference(ib.dtype(), ob.dtype());
    let y: Vec<f32> = xv
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let (s, z) = (sv[is[i]], zv[iz[i]]);
            let y = at(at(f64::from(x) / s, w_div) + z, w).round_ties_even();
            let y = qonnx_round(at(y / trunc_scale, w_trunc), rounding);
            at(at(y - z, w_trunc) * s, w_trunc) as f32
        })
        .collect();
    tensor(out, TensorData::F32(y))
}

/// FINN MultiThreshold (qonnx 1.0 `multithreshold`): each element counts the thresholds of its
/// channel that it is greater than or equal to (NaN reaches none); thresholds are `[C, T]` or
/// `[1, T]` (shared). The channel axis is 1, or the last axis with `channels_last`. The result
/// is `out_scale * count + out_bias` in float32.
fn multi_threshold(
    x: &Tensor,
    th: &Tensor,
    out_scale: f32,
    out_bias: f32,
    channels_last: bool,
) -> R<Tensor> {
    let xv = f32s(x, "v")?;
    let tv = f32s(th, "thresholds")?;
    let rank = x.shape.len();
    if rank < 2 {
        return Err(format!("v must have rank >= 2, not {:?}", x.shape));
    }
    let axis = if channels_last { rank - 1 } else { 1 };
    let c = x.shape[axis];
    let &[tc, t] = th.shape.as_slice() else {
        return Err(format!("thresholds must be 2-D, not {:?}", th.shape));
    };
    if tc != c && tc != 1 {
        return Err(format!(
            "thresholds {:?} do not match {c} channels (axis {axis} of {:?})",
            th.shape, x.shape
        ));
    }
    let inner: usize = x.shape[axis + 1..].iter().product();
    let y: Vec<f32> = xv
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let row = if tc == 1 { 0 } else { (i / inner.max(1)) % c };
            let count = tv[row * t..(row + 1) * t]
                .iter()
                .filter(|&&th| v >= th)
                .count();
            out_scale * count as f32 + out_bias
        })
        .collect();
    tensor(x.shape.clone(), TensorData::F32(y))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_and_saturation() {
        // Half to even, after the division.
        assert_eq!(quantize_value(2.5, 1.0, 0, DType::U8), 2);
        assert_eq!(quantize_value(3.5, 1.0, 0, DType::U8), 4);
        assert_eq!(quantize_value(-2.5, 1.0, 0, DType::I8), -2);
        assert_eq!(quantize_value(1000.0, 1.0, 10, DType::U8), 255);
        assert_eq!(quantize_value(-1000.0, 1.0, 10, DType::I8), -128);
        assert_eq!(quantize_value(f32::NAN, 1.0, 3, DType::U8), 0);
        assert_eq!(requantize(7, 0.5, 1, DType::I8), 5);
        assert_eq!(requantize(i32::MAX, 1.0, 0, DType::I8), 127);
    }

    #[test]
    fn qonnx_int_range_follows_numpy_types() {
        // Values of qonnx 1.0's min_int / max_int with numpy 2 for these bit-width tensors.
        assert_eq!(int_range(true, false, 8, DType::F32), (-128.0, 127.0));
        assert_eq!(int_range(true, true, 8, DType::I64), (-127.0, 127.0));
        assert_eq!(int_range(false, true, 8, DType::I64), (0.0, 254.0));
        // float32 arithmetic rounds 2^30 - 1 up; 2^24 - 1 is exact.
        assert_eq!(int_range(false, false, 30, DType::F32), (0.0, 1073741824.0));
        assert_eq!(
            int_range(true, true, 25, DType::F32),
            (-16777215.0, 16777215.0)
        );
        // int32 arithmetic wraps: 2 ** 32 - 1 is -1.
        assert_eq!(int_range(false, false, 32, DType::I32), (0.0, -1.0));
        assert_eq!(
            int_range(true, false, 32, DType::I32),
            (-2147483648.0, 2147483647.0)
        );
        assert_eq!(int_range(false, false, 8, DType::U8), (0.0, 255.0));
    }
}
