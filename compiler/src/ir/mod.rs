//! The compiler's graph IR: what the ONNX frontend produces, what the reference interpreter
//! executes (with onnxruntime's semantics) and what the passes rewrite and the backend lowers.
//!
//! A [`Graph`] is a list of [`Node`]s in topological order over [`Value`]s (tensors with a
//! static shape and element type). Constant tensors (initializers and folded values) live in
//! `Graph::consts`. Operator attributes are parsed into typed structs at import, so nothing
//! after the frontend looks at ONNX attributes again.

use crate::tensor::{DType, Tensor};
use std::collections::HashMap;
use std::fmt;

pub type ValueId = usize;

/// A tensor flowing through the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: DType,
}

/// Convolution geometry shared by Conv, ConvInteger and QLinearConv (2-D only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvAttrs {
    /// Kernel height and width.
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    /// Pads: top, left, bottom, right (ONNX order x1_begin, x2_begin, x1_end, x2_end),
    /// already resolved from `auto_pad`.
    pub pads: [usize; 4],
    pub dilations: [usize; 2],
    pub group: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolAttrs {
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    /// top, left, bottom, right; resolved from `auto_pad` and `ceil_mode` at import.
    pub pads: [usize; 4],
    pub dilations: [usize; 2],
    pub ceil_mode: bool,
    /// AveragePool only: padded elements count in the divisor.
    pub count_include_pad: bool,
}

/// Operators, with typed attributes. Inputs follow the ONNX operator's input order; optional
/// inputs that are absent are `None` in `Node::inputs`.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// X, W, B?
    Conv(ConvAttrs),
    /// A, B, C?
    Gemm {
        alpha: f32,
        beta: f32,
        trans_a: bool,
        trans_b: bool,
    },
    MatMul,
    Relu,
    /// input, min?, max? (opset >= 11 takes them as inputs; older attrs are converted)
    Clip,
    MaxPool(PoolAttrs),
    AveragePool(PoolAttrs),
    GlobalAveragePool,
    Flatten {
        axis: usize,
    },
    /// data, shape (constant)
    Reshape,
    Transpose {
        perm: Vec<usize>,
    },
    /// data, axes? (constant) — axes resolved at import into the op
    Squeeze {
        axes: Vec<usize>,
    },
    Unsqueeze {
        axes: Vec<usize>,
    },
    Identity,
    /// A, B with numpy broadcasting
    Add,
    Sub,
    Mul,
    Div,
    Concat {
        axis: usize,
    },
    /// X, scale, B, mean, var
    BatchNormalization {
        epsilon: f32,
    },
    /// x, y_scale, y_zero_point? ; axis for per-axis scales
    QuantizeLinear {
        axis: usize,
    },
    /// x, x_scale, x_zero_point?
    DequantizeLinear {
        axis: usize,
    },
    /// x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, B?
    QLinearConv(ConvAttrs),
    /// a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp
    QLinearMatMul,
    /// A, B, a_zero_point?, b_zero_point?
    MatMulInteger,
    /// x, w, x_zero_point?, w_zero_point?
    ConvInteger(ConvAttrs),
    /// QONNX Quant (qonnx 1.0; domains qonnx.custom_op.general, onnx.brevitas,
    /// finn.custom_op.general): x, scale, zeropt, bitwidth (constants).
    /// y = (clamp(round(x / scale + zeropt), lo, hi) - zeropt) * scale, where [lo, hi] follows
    /// from bitwidth, `signed` and `narrow`, and `round` is ROUND (half to even), CEIL or FLOOR.
    QonnxQuant {
        signed: bool,
        narrow: bool,
        rounding: QonnxRounding,
    },
    /// QONNX BipolarQuant: x, scale. y = (x >= 0 ? 1 : -1) * scale.
    BipolarQuant,
    /// QONNX Trunc: x, scale, zeropt, in_bitwidth, out_bitwidth (truncation of low bits).
    Trunc {
        rounding: QonnxRounding,
    },
    /// FINN MultiThreshold: x, thresholds [C, T] (or [1, T] shared).
    /// y = out_scale * #{t : x >= thresholds[c][t]} + out_bias, channel axis 1 (NCHW) or the
    /// last axis (`channels_last`).
    MultiThreshold {
        out_scale: f32,
        out_bias: f32,
        channels_last: bool,
    },
    /// X, K (constant): the `k` largest (or smallest) along `axis`; outputs values, indices.
    /// Softmax over the dims from `axis` on taken as one (opset < 13 coerces the input to 2-D
    /// there), or over `axis` alone (opset 13+, `single_axis`).
    Softmax {
        axis: usize,
        single_axis: bool,
    },
    TopK {
        k: usize,
        axis: usize,
        largest: bool,
        sorted: bool,
    },
}

/// Rounding of QONNX's Quant and Trunc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QonnxRounding {
    /// ROUND: half to even.
    Round,
    Ceil,
    Floor,
}

impl Op {
    /// The ONNX op_type this came from.
    pub fn op_type(&self) -> &'static str {
        match self {
            Op::Conv(_) => "Conv",
            Op::Gemm { .. } => "Gemm",
            Op::MatMul => "MatMul",
            Op::Relu => "Relu",
            Op::Clip => "Clip",
            Op::MaxPool(_) => "MaxPool",
            Op::AveragePool(_) => "AveragePool",
            Op::GlobalAveragePool => "GlobalAveragePool",
            Op::Flatten { .. } => "Flatten",
            Op::Reshape => "Reshape",
            Op::Transpose { .. } => "Transpose",
            Op::Squeeze { .. } => "Squeeze",
            Op::Unsqueeze { .. } => "Unsqueeze",
            Op::Identity => "Identity",
            Op::Add => "Add",
            Op::Sub => "Sub",
            Op::Mul => "Mul",
            Op::Div => "Div",
            Op::Concat { .. } => "Concat",
            Op::BatchNormalization { .. } => "BatchNormalization",
            Op::QuantizeLinear { .. } => "QuantizeLinear",
            Op::DequantizeLinear { .. } => "DequantizeLinear",
            Op::QLinearConv(_) => "QLinearConv",
            Op::QLinearMatMul => "QLinearMatMul",
            Op::MatMulInteger => "MatMulInteger",
            Op::ConvInteger(_) => "ConvInteger",
            Op::QonnxQuant { .. } => "Quant",
            Op::BipolarQuant => "BipolarQuant",
            Op::Trunc { .. } => "Trunc",
            Op::MultiThreshold { .. } => "MultiThreshold",
            Op::TopK { .. } => "TopK",
            Op::Softmax { .. } => "Softmax",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub inputs: Vec<Option<ValueId>>,
    pub outputs: Vec<ValueId>,
}

impl Node {
    /// Input `i`, if present.
    pub fn input(&self, i: usize) -> Option<ValueId> {
        self.inputs.get(i).copied().flatten()
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Graph {
    pub name: String,
    pub values: Vec<Value>,
    pub consts: HashMap<ValueId, Tensor>,
    pub nodes: Vec<Node>,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    /// Default-domain opset the model was exported with.
    pub opset: i64,
    /// Graph inputs that a FINN/QONNX `finn_datatype` quantization annotation declares to hold
    /// integers (BIPOLAR, BINARY, INTn, UINTn): their value range.
    pub int_inputs: HashMap<ValueId, (i32, i32)>,
}

/// The integer range of a FINN datatype name (`BIPOLAR` counts as [-1, 1]: its values are
/// -1 and +1), or None for float and unknown types.
pub fn finn_datatype_range(name: &str) -> Option<(i32, i32)> {
    let bits = |s: &str| s.parse::<u32>().ok().filter(|b| (1..=8).contains(b));
    match name {
        "BIPOLAR" => Some((-1, 1)),
        "BINARY" => Some((0, 1)),
        "TERNARY" => Some((-1, 1)),
        _ => {
            if let Some(b) = name.strip_prefix("UINT").and_then(bits) {
                Some((0, (1 << b) - 1))
            } else {
                name.strip_prefix("INT")
                    .and_then(bits)
                    .map(|b| (-(1 << (b - 1)), (1 << (b - 1)) - 1))
            }
        }
    }
}

impl Graph {
    pub fn add_value(&mut self, name: &str, shape: Vec<usize>, dtype: DType) -> ValueId {
        self.values.push(Value {
            name: name.to_string(),
            shape,
            dtype,
        });
        self.values.len() - 1
    }

    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id]
    }

    pub fn constant(&self, id: ValueId) -> Option<&Tensor> {
        self.consts.get(&id)
    }

    /// Nodes that read `id`.
    pub fn consumers(&self, id: ValueId) -> Vec<usize> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.inputs.contains(&Some(id)))
            .map(|(i, _)| i)
            .collect()
    }

    /// The node producing `id`, if any.
    pub fn producer(&self, id: ValueId) -> Option<usize> {
        self.nodes.iter().position(|n| n.outputs.contains(&id))
    }
}

impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = |id: &ValueId| {
            let x = &self.values[*id];
            format!("{}:{}{:?}", x.name, x.dtype.name(), x.shape)
        };
        writeln!(f, "graph {} (opset {})", self.name, self.opset)?;
        for i in &self.inputs {
            writeln!(f, "  input {}", v(i))?;
        }
        for n in &self.nodes {
            let ins: Vec<String> = n
                .inputs
                .iter()
                .map(|i| match i {
                    Some(id) if self.consts.contains_key(id) => format!("const {}", v(id)),
                    Some(id) => v(id),
                    None => "-".into(),
                })
                .collect();
            let outs: Vec<String> = n.outputs.iter().map(v).collect();
            writeln!(
                f,
                "  {} = {}({})  # {}",
                outs.join(", "),
                n.op.op_type(),
                ins.join(", "),
                n.name
            )?;
        }
        for o in &self.outputs {
            writeln!(f, "  output {}", v(o))?;
        }
        Ok(())
    }
}
