//! The ONNX importer: walks a `ModelProto`, checks every node and infers static shapes.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::shape::{self, AutoPad};
use super::{ImportError, ImportOptions, Issue, IssueKind, NodeInfo, MAX_OPSET, MIN_OPSET};
use crate::ir::{ConvAttrs, Graph, Node, Op, PoolAttrs, QonnxRounding, ValueId};
use crate::onnx::proto::tensor_shape_proto::dimension;
use crate::onnx::{AttributeProto, DataType, ModelProto, NodeProto, TensorProto, ValueInfoProto};
use crate::tensor::{DType, Tensor, TensorData};

/// The default domain is spelled `""` or `"ai.onnx"`.
pub(super) fn normalize_domain(domain: &str) -> &str {
    if domain == "ai.onnx" {
        ""
    } else {
        domain
    }
}

/// Domain (normalized) -> imported opset version. The first import of a domain wins.
pub(super) fn opset_map(model: &ModelProto) -> HashMap<String, i64> {
    let mut map = HashMap::new();
    for o in &model.opset_import {
        map.entry(normalize_domain(&o.domain).to_string())
            .or_insert(o.version);
    }
    map
}

/// The first default-domain opset at which the frontend accepts `op_type` (`None` for operators
/// it does not support at all).
fn since_version(op_type: &str) -> Option<i64> {
    Some(match op_type {
        "Constant" | "Conv" | "MatMul" | "Relu" | "Clip" | "MaxPool" | "AveragePool"
        | "GlobalAveragePool" | "Flatten" | "Reshape" | "Transpose" | "Squeeze" | "Unsqueeze"
        | "Identity" | "Gemm" | "Add" | "Sub" | "Mul" | "Div" | "Concat" | "BatchNormalization" => {
            MIN_OPSET
        }
        "QuantizeLinear" | "DequantizeLinear" | "QLinearConv" | "QLinearMatMul"
        | "MatMulInteger" | "ConvInteger" | "TopK" => 10,
        "Softmax" => MIN_OPSET,
        _ => return None,
    })
}

/// The custom domains of QONNX and FINN operators. qonnx 1.0 executes `onnx.brevitas` (the
/// domain of Brevitas exports) as an alias of `qonnx.custom_op.general`; FINN models before the
/// move to qonnx use `finn.custom_op.general`.
pub(super) const QONNX_DOMAINS: &[&str] = &[
    "qonnx.custom_op.general",
    "onnx.brevitas",
    "finn.custom_op.general",
];

/// The operators of [`QONNX_DOMAINS`] the frontend imports (`IntQuant` is qonnx 1.0's name of
/// `Quant`, with the same definition).
const QONNX_OPS: &[&str] = &[
    "Quant",
    "IntQuant",
    "BipolarQuant",
    "Trunc",
    "MultiThreshold",
];

/// Whether a QONNX/FINN operator is supported at `opset` of its domain (`None`: the model
/// imports no opset for the domain, which qonnx executes as opset 1). qonnx defines every
/// supported operator once (version 1), except Trunc, whose version 2 (opset >= 2: an output
/// scale input and signed/narrow attributes) the IR does not represent.
fn qonnx_supported(op_type: &str, opset: Option<i64>) -> bool {
    match op_type {
        "Trunc" => !matches!(opset, Some(v) if v >= 2),
        _ => QONNX_OPS.contains(&op_type),
    }
}

/// Whether the frontend supports `op_type` of (normalized) `domain` at `opset`.
pub(super) fn op_supported(domain: &str, op_type: &str, opset: Option<i64>) -> bool {
    match (domain, opset, since_version(op_type)) {
        ("", Some(v), Some(since)) => (MIN_OPSET..=MAX_OPSET).contains(&v) && v >= since,
        (d, _, _) if QONNX_DOMAINS.contains(&d) => qonnx_supported(op_type, opset),
        _ => false,
    }
}

/// Converts a model to the IR; see the [module documentation](super).
pub fn import(model: &ModelProto, opts: &ImportOptions) -> Result<Graph, ImportError> {
    let mut imp = Importer {
        opts,
        opsets: opset_map(model),
        opset: 0,
        g: Graph::default(),
        names: HashMap::new(),
        inits: HashMap::new(),
        issues: Vec::new(),
    };
    imp.run(model);
    if imp.issues.is_empty() {
        Ok(imp.g)
    } else {
        Err(ImportError { issues: imp.issues })
    }
}

/// What a name stands for while importing.
#[derive(Clone, Copy)]
enum Slot {
    Value(ValueId),
    /// Produced by a node that could not be imported (already reported).
    Poisoned,
}

struct Importer<'m> {
    opts: &'m ImportOptions,
    opsets: HashMap<String, i64>,
    /// The default-domain opset (0 if not imported).
    opset: i64,
    g: Graph,
    names: HashMap<String, Slot>,
    /// Initializers not yet referenced (converted on first use).
    inits: HashMap<&'m str, &'m TensorProto>,
    issues: Vec<Issue>,
}

impl<'m> Importer<'m> {
    fn issue(&mut self, kind: IssueKind, node: Option<&NodeInfo>, message: String) {
        self.issues.push(Issue {
            kind,
            node: node.cloned(),
            message,
        });
    }

    fn run(&mut self, model: &'m ModelProto) {
        let Some(graph) = &model.graph else {
            self.issue(IssueKind::Malformed, None, "the model has no graph".into());
            return;
        };
        self.g.name = graph.name.clone();

        match self.opsets.get("").copied() {
            None => self.issue(
                IssueKind::UnsupportedOpset,
                None,
                "the model imports no default-domain (ai.onnx) opset".into(),
            ),
            Some(v) => {
                self.opset = v;
                self.g.opset = v;
                if !(MIN_OPSET..=MAX_OPSET).contains(&v) {
                    self.issue(
                        IssueKind::UnsupportedOpset,
                        None,
                        format!(
                            "default-domain opset {v} is not supported (supported: \
                             {MIN_OPSET}..={MAX_OPSET})"
                        ),
                    );
                }
            }
        }

        for t in &graph.initializer {
            if t.name.is_empty() {
                self.issue(
                    IssueKind::Malformed,
                    None,
                    "an initializer has no name".into(),
                );
                continue;
            }
            self.inits.entry(t.name.as_str()).or_insert(t);
        }
        for t in &graph.sparse_initializer {
            let name = t.values.as_ref().map_or("", |v| v.name.as_str());
            self.issue(
                IssueKind::UnsupportedType,
                None,
                format!("sparse initializer '{name}' is not supported"),
            );
            if !name.is_empty() {
                self.names.insert(name.to_string(), Slot::Poisoned);
            }
        }

        for input in &graph.input {
            // Inputs with an initializer are constants (IR version < 4 lists them as inputs).
            if self.inits.contains_key(input.name.as_str()) {
                continue;
            }
            self.graph_input(input);
        }

        // FINN datatype annotations on graph inputs: integer inputs (e.g. a bipolar feature
        // vector) the lowering can take as 8-bit data directly.
        for a in &graph.quantization_annotation {
            let Some(&Slot::Value(id)) = self.names.get(a.tensor_name.as_str()) else {
                continue;
            };
            if !self.g.inputs.contains(&id) {
                continue;
            }
            for e in &a.quant_parameter_tensor_names {
                if e.key == "finn_datatype" {
                    if let Some(r) = crate::ir::finn_datatype_range(&e.value) {
                        self.g.int_inputs.insert(id, r);
                    }
                }
            }
        }

        let order = self.topological_order(&graph.node);
        for i in order {
            self.node(i, &graph.node[i]);
        }

        if graph.output.is_empty() {
            self.issue(
                IssueKind::Malformed,
                None,
                "the graph has no outputs".into(),
            );
        }
        for out in &graph.output {
            match self.lookup(&out.name) {
                Some(Slot::Value(id)) => {
                    self.check_declared(out, id);
                    self.g.outputs.push(id);
                }
                Some(Slot::Poisoned) => {}
                None => self.issue(
                    IssueKind::MissingValue,
                    None,
                    format!("graph output '{}' is not produced by any node", out.name),
                ),
            }
        }
    }

    fn graph_input(&mut self, input: &ValueInfoProto) {
        let name = &input.name;
        let fail = |imp: &mut Self, msg: String| {
            imp.issue(IssueKind::UnsupportedType, None, msg);
            imp.names.insert(name.clone(), Slot::Poisoned);
        };
        let Some(tt) = input.r#type.as_ref().and_then(|t| t.tensor_type()) else {
            return fail(self, format!("graph input '{name}' is not a tensor"));
        };
        let Some(dtype) = dtype_of(tt.elem_type) else {
            return fail(
                self,
                format!(
                    "graph input '{name}' has unsupported element type {}",
                    type_name(tt.elem_type)
                ),
            );
        };
        let Some(shape) = &tt.shape else {
            return fail(
                self,
                format!("graph input '{name}' has no shape (unknown rank)"),
            );
        };
        let mut dims = Vec::with_capacity(shape.dim.len());
        for d in &shape.dim {
            match &d.value {
                Some(dimension::Value::DimValue(v)) => match usize::try_from(*v) {
                    Ok(v) => dims.push(v),
                    Err(_) => {
                        return fail(
                            self,
                            format!("graph input '{name}' has negative dimension {v}"),
                        )
                    }
                },
                // Symbolic or unknown: the batch size.
                _ => dims.push(self.opts.batch),
            }
        }
        if shape::numel(&dims).is_none() {
            return fail(
                self,
                format!("graph input '{name}' has too many elements: {dims:?}"),
            );
        }
        if self.names.contains_key(name) {
            self.issue(
                IssueKind::Malformed,
                None,
                format!("graph input '{name}' is declared more than once"),
            );
            return;
        }
        let id = self.g.add_value(name, dims, dtype);
        self.g.inputs.push(id);
        self.names.insert(name.clone(), Slot::Value(id));
    }

    /// Compares a graph output's declared element type with the inferred one.
    fn check_declared(&mut self, out: &ValueInfoProto, id: ValueId) {
        let Some(tt) = out.r#type.as_ref().and_then(|t| t.tensor_type()) else {
            return;
        };
        let v = self.g.value(id).clone();
        if tt.elem_type != 0 && dtype_of(tt.elem_type) != Some(v.dtype) {
            self.issue(
                IssueKind::ShapeMismatch,
                None,
                format!(
                    "graph output '{}' is declared {} but computes {}",
                    out.name,
                    type_name(tt.elem_type),
                    v.dtype
                ),
            );
        }
        // Declared dimensions are not checked: exporters write what ONNX shape inference says,
        // which can differ from what onnxruntime computes (e.g. pools with ceil_mode, where
        // onnxruntime drops a last window starting in the padding, and itself only warns).
    }

    /// Node indices in a topological order (the model order when it already is one).
    fn topological_order(&mut self, nodes: &[NodeProto]) -> Vec<usize> {
        let mut producer: HashMap<&str, usize> = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            for o in &n.output {
                if !o.is_empty() {
                    producer.entry(o.as_str()).or_insert(i);
                }
            }
        }
        let mut indegree = vec![0usize; nodes.len()];
        let mut users: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
        for (i, n) in nodes.iter().enumerate() {
            for inp in &n.input {
                if let Some(&p) = producer.get(inp.as_str()) {
                    if p != i {
                        indegree[i] += 1;
                        users[p].push(i);
                    }
                }
            }
        }
        let mut ready: BinaryHeap<Reverse<usize>> = (0..nodes.len())
            .filter(|&i| indegree[i] == 0)
            .map(Reverse)
            .collect();
        let mut order = Vec::with_capacity(nodes.len());
        while let Some(Reverse(i)) = ready.pop() {
            order.push(i);
            for &u in &users[i] {
                indegree[u] -= 1;
                if indegree[u] == 0 {
                    ready.push(Reverse(u));
                }
            }
        }
        if order.len() < nodes.len() {
            let mut stuck: Vec<usize> = (0..nodes.len()).filter(|&i| indegree[i] > 0).collect();
            let names: Vec<String> = stuck
                .iter()
                .take(10)
                .map(|&i| node_label(&nodes[i], i))
                .collect();
            self.issue(
                IssueKind::Malformed,
                None,
                format!(
                    "{} node(s) depend on each other in a cycle: {}{}",
                    stuck.len(),
                    names.join(", "),
                    if stuck.len() > 10 { ", ..." } else { "" }
                ),
            );
            order.append(&mut stuck);
        }
        order
    }

    /// The value a name stands for, converting an initializer on first use.
    fn lookup(&mut self, name: &str) -> Option<Slot> {
        if let Some(s) = self.names.get(name) {
            return Some(*s);
        }
        let proto = self.inits.remove(name)?;
        let slot = match Tensor::from_onnx(proto) {
            Ok(t) => Slot::Value(self.add_const(name, t)),
            Err(e) => {
                self.issue(
                    IssueKind::Malformed,
                    None,
                    format!("initializer '{name}' cannot be read: {e}"),
                );
                Slot::Poisoned
            }
        };
        self.names.insert(name.to_string(), slot);
        Some(slot)
    }

    fn add_const(&mut self, name: &str, t: Tensor) -> ValueId {
        let id = self.g.add_value(name, t.shape.clone(), t.dtype());
        self.g.consts.insert(id, t);
        id
    }

    fn poison_outputs(&mut self, node: &NodeProto) {
        for o in &node.output {
            if !o.is_empty() {
                self.names.insert(o.clone(), Slot::Poisoned);
            }
        }
    }

    fn node(&mut self, index: usize, node: &'m NodeProto) {
        let domain = normalize_domain(&node.domain);
        let info = NodeInfo {
            index,
            name: node.name.clone(),
            op_type: node.op_type.clone(),
            domain: node.domain.clone(),
            opset: self.opsets.get(domain).copied(),
        };
        if !op_supported(domain, &node.op_type, info.opset) {
            let why = if QONNX_DOMAINS.contains(&domain) {
                if node.op_type == "Trunc" {
                    "Trunc from opset 2 of its domain (qonnx's Trunc_v2, with an output scale) is \
                     not supported; opset 1 is"
                } else {
                    "QONNX/FINN operator not supported (supported: Quant, IntQuant, BipolarQuant, \
                     Trunc, MultiThreshold)"
                }
            } else if !domain.is_empty() {
                if info.opset.is_none() {
                    "custom-domain operator (and the model imports no opset for its domain)"
                } else {
                    "custom-domain operator"
                }
            } else if since_version(&node.op_type).is_none() {
                "operator not supported by the frontend"
            } else if info
                .opset
                .is_some_and(|v| since_version(&node.op_type) > Some(v))
            {
                "operator not supported at this opset"
            } else {
                "operator not supported at this opset (the model's opset is out of range)"
            };
            self.issue(IssueKind::UnsupportedOp, Some(&info), why.to_string());
            self.poison_outputs(node);
            return;
        }

        // Inputs.
        let mut ins = Vec::with_capacity(node.input.len());
        let mut poisoned = false;
        let mut missing = Vec::new();
        for name in &node.input {
            if name.is_empty() {
                ins.push(None);
                continue;
            }
            match self.lookup(name) {
                Some(Slot::Value(id)) => ins.push(Some(id)),
                Some(Slot::Poisoned) => {
                    poisoned = true;
                    ins.push(None);
                }
                None => {
                    missing.push(name.clone());
                    ins.push(None);
                }
            }
        }
        for name in &missing {
            self.issue(
                IssueKind::MissingValue,
                Some(&info),
                format!("input '{name}' is not a graph input, an initializer or an earlier node's output"),
            );
        }
        if poisoned || !missing.is_empty() {
            self.poison_outputs(node);
            return;
        }

        let name = if node.name.is_empty() {
            format!("{}_{index}", node.op_type)
        } else {
            node.name.clone()
        };
        let mut cx = Cx {
            imp: self,
            info,
            node,
            ins,
            failed: false,
        };
        let result = cx.op();
        let failed = cx.failed;
        let ins = std::mem::take(&mut cx.ins);
        let info = cx.info;
        match result {
            Some(Built::Const(t)) if !failed => {
                let out = node.output.first().cloned().unwrap_or_default();
                let id = self.add_const(&out, t);
                self.bind(&out, id, &info);
            }
            Some(Built::Op(op, outs)) if !failed => {
                let mut out_ids = Vec::with_capacity(outs.len());
                for (k, (shape, dtype)) in outs.into_iter().enumerate() {
                    let out = node.output.get(k).cloned().unwrap_or_default();
                    let vname = if out.is_empty() {
                        format!("{name}_out{k}")
                    } else {
                        out.clone()
                    };
                    let id = self.g.add_value(&vname, shape, dtype);
                    if !out.is_empty() {
                        self.bind(&out, id, &info);
                    }
                    out_ids.push(id);
                }
                self.g.nodes.push(Node {
                    name,
                    op,
                    inputs: ins,
                    outputs: out_ids,
                });
            }
            result => {
                if result.is_none() && !failed {
                    // Every failure path reports an issue; this only catches size overflows.
                    self.issue(
                        IssueKind::ShapeMismatch,
                        Some(&info),
                        "the output shape cannot be computed (sizes overflow)".into(),
                    );
                }
                self.poison_outputs(node);
            }
        }
    }

    fn bind(&mut self, name: &str, id: ValueId, info: &NodeInfo) {
        if name.is_empty() {
            self.issue(
                IssueKind::Malformed,
                Some(info),
                "the node's output has no name".into(),
            );
            return;
        }
        if self.names.contains_key(name) || self.inits.contains_key(name) {
            self.issue(
                IssueKind::Malformed,
                Some(info),
                format!("output '{name}' is already defined elsewhere in the graph"),
            );
        }
        self.names.insert(name.to_string(), Slot::Value(id));
    }
}

/// What a node imports to.
enum Built {
    Op(Op, Vec<(Vec<usize>, DType)>),
    /// A folded `Constant`.
    Const(Tensor),
}

/// Per-node import context: attribute access, input checks, issue reporting.
struct Cx<'a, 'm> {
    imp: &'a mut Importer<'m>,
    info: NodeInfo,
    node: &'m NodeProto,
    ins: Vec<Option<ValueId>>,
    failed: bool,
}

const FLOATS: &[DType] = &[DType::F32];
const NUMERIC: &[DType] = &[
    DType::F32,
    DType::F64,
    DType::I8,
    DType::U8,
    DType::I32,
    DType::I64,
];
const Q8: &[DType] = &[DType::I8, DType::U8];

impl Cx<'_, '_> {
    fn issue(&mut self, kind: IssueKind, message: String) {
        self.failed = true;
        self.imp.issues.push(Issue {
            kind,
            node: Some(self.info.clone()),
            message,
        });
    }

    fn opset(&self) -> i64 {
        self.imp.opset
    }

    // ---- attributes

    fn attr(&self, name: &str) -> Option<&'_ AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    fn attr_int(&mut self, name: &str) -> Option<i64> {
        let a = self.attr(name)?;
        match a.i {
            Some(v) => Some(v),
            None => {
                self.issue(
                    IssueKind::BadAttribute,
                    format!("attribute '{name}' must be an integer"),
                );
                None
            }
        }
    }

    fn attr_int_or(&mut self, name: &str, default: i64) -> i64 {
        self.attr_int(name).unwrap_or(default)
    }

    fn attr_float_or(&mut self, name: &str, default: f32) -> f32 {
        let Some(a) = self.attr(name) else {
            return default;
        };
        match a.f {
            Some(v) => v,
            None => {
                self.issue(
                    IssueKind::BadAttribute,
                    format!("attribute '{name}' must be a float"),
                );
                default
            }
        }
    }

    fn attr_ints(&mut self, name: &str) -> Option<Vec<i64>> {
        let a = self.attr(name)?;
        let ok = a.r#type == crate::onnx::AttributeType::Ints as i32
            || !a.ints.is_empty()
            || (a.r#type == 0 && a.i.is_none() && a.f.is_none() && a.s.is_none());
        if ok {
            Some(a.ints.clone())
        } else {
            self.issue(
                IssueKind::BadAttribute,
                format!("attribute '{name}' must be a list of integers"),
            );
            None
        }
    }

    fn attr_string(&mut self, name: &str) -> Option<String> {
        let a = self.attr(name)?;
        match &a.s {
            Some(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
            None => {
                self.issue(
                    IssueKind::BadAttribute,
                    format!("attribute '{name}' must be a string"),
                );
                None
            }
        }
    }

    /// A list of non-negative integers of length `len` (or the default when absent).
    fn attr_dims(
        &mut self,
        name: &str,
        len: usize,
        default: usize,
        min: usize,
    ) -> Option<Vec<usize>> {
        match self.attr_ints(name) {
            None => {
                if self.attr(name).is_some() {
                    None
                } else {
                    Some(vec![default; len])
                }
            }
            Some(v) if v.is_empty() => Some(vec![default; len]),
            Some(v) => {
                let parsed: Option<Vec<usize>> = v
                    .iter()
                    .map(|&x| usize::try_from(x).ok().filter(|&x| x >= min))
                    .collect();
                match parsed {
                    Some(p) if p.len() == len => Some(p),
                    _ => {
                        self.issue(
                            IssueKind::BadAttribute,
                            format!("attribute '{name}' = {v:?} must hold {len} integers >= {min}"),
                        );
                        None
                    }
                }
            }
        }
    }

    // ---- inputs

    fn input(&mut self, i: usize, what: &str) -> Option<ValueId> {
        match self.ins.get(i).copied().flatten() {
            Some(id) => Some(id),
            None => {
                self.issue(
                    IssueKind::MissingValue,
                    format!("required input {i} ({what}) is missing"),
                );
                None
            }
        }
    }

    fn opt_input(&self, i: usize) -> Option<ValueId> {
        self.ins.get(i).copied().flatten()
    }

    fn shape(&self, id: ValueId) -> Vec<usize> {
        self.imp.g.value(id).shape.clone()
    }

    fn dtype(&self, id: ValueId) -> DType {
        self.imp.g.value(id).dtype
    }

    fn vname(&self, id: ValueId) -> String {
        self.imp.g.value(id).name.clone()
    }

    fn constant(&self, id: ValueId) -> Option<&Tensor> {
        self.imp.g.constant(id)
    }

    /// Checks that input `id` has one of the `allowed` types.
    fn expect_dtype(&mut self, id: ValueId, allowed: &[DType], what: &str) -> bool {
        let d = self.dtype(id);
        if allowed.contains(&d) {
            return true;
        }
        let names: Vec<&str> = allowed.iter().map(|d| d.name()).collect();
        self.issue(
            IssueKind::UnsupportedType,
            format!(
                "{what} '{}' has element type {d}; supported: {}",
                self.vname(id),
                names.join(", ")
            ),
        );
        false
    }

    fn expect_same_dtype(&mut self, a: ValueId, b: ValueId, what: &str) -> bool {
        if self.dtype(a) == self.dtype(b) {
            return true;
        }
        self.issue(
            IssueKind::UnsupportedType,
            format!(
                "{what}: '{}' is {} but '{}' is {}",
                self.vname(a),
                self.dtype(a),
                self.vname(b),
                self.dtype(b)
            ),
        );
        false
    }

    /// A scalar or one-element 1-D tensor (per-tensor quantization parameter).
    fn expect_scalar(&mut self, id: ValueId, what: &str) -> bool {
        let s = self.shape(id);
        if s.len() <= 1 && shape::numel(&s) == Some(1) {
            return true;
        }
        self.issue(
            IssueKind::ShapeMismatch,
            format!(
                "{what} '{}' must be a scalar or a 1-element vector, but has shape {s:?}",
                self.vname(id)
            ),
        );
        false
    }

    /// A per-tensor parameter or a 1-D tensor of `n` elements.
    fn expect_scalar_or_vec(&mut self, id: ValueId, n: usize, what: &str) -> bool {
        let s = self.shape(id);
        if (s.len() <= 1 && shape::numel(&s) == Some(1)) || s == [n] {
            return true;
        }
        self.issue(
            IssueKind::ShapeMismatch,
            format!(
                "{what} '{}' must be a scalar or have shape [{n}], but has shape {s:?}",
                self.vname(id)
            ),
        );
        false
    }

    /// A constant integer tensor (for shape and axes inputs).
    fn const_ints(&mut self, id: ValueId, what: &str) -> Option<Vec<i64>> {
        let name = self.vname(id);
        let Some(t) = self.constant(id) else {
            self.issue(
                IssueKind::NonConstant,
                format!("{what} '{name}' must be a constant (an initializer or a Constant node)"),
            );
            return None;
        };
        let v = match &t.data {
            TensorData::I64(v) => v.clone(),
            TensorData::I32(v) => v.iter().map(|&x| i64::from(x)).collect(),
            _ => {
                let d = t.dtype();
                self.issue(
                    IssueKind::UnsupportedType,
                    format!("{what} '{name}' must be int64, not {d}"),
                );
                return None;
            }
        };
        if t.shape.len() > 1 {
            let s = t.shape.clone();
            self.issue(
                IssueKind::ShapeMismatch,
                format!("{what} '{name}' must be 1-D, but has shape {s:?}"),
            );
            return None;
        }
        Some(v)
    }

    fn check_outputs(&mut self, max: usize) {
        let extra: Vec<String> = self
            .node
            .output
            .iter()
            .skip(max)
            .filter(|o| !o.is_empty())
            .cloned()
            .collect();
        if !extra.is_empty() {
            self.issue(
                IssueKind::UnsupportedOp,
                format!(
                    "optional output(s) {extra:?} are not supported (only the first {max} output(s))"
                ),
            );
        }
    }

    fn check_inputs_at_most(&mut self, max: usize) {
        if self.node.input.len() > max {
            let n = self.node.input.len();
            self.issue(
                IssueKind::Malformed,
                format!(
                    "the node has {n} inputs; {} takes at most {max}",
                    self.info.op_type
                ),
            );
        }
    }

    // ---- operators

    fn op(&mut self) -> Option<Built> {
        let op_type = self.info.op_type.clone();
        let one =
            |op: Op, shape: Vec<usize>, dtype: DType| Some(Built::Op(op, vec![(shape, dtype)]));
        if op_type != "Constant" {
            self.check_outputs(if op_type == "TopK" { 2 } else { 1 });
        }
        if !normalize_domain(&self.info.domain).is_empty() {
            // A QONNX/FINN operator (`op_supported` admitted no other custom-domain node).
            return match op_type.as_str() {
                "Quant" | "IntQuant" => self.qonnx_quant(),
                "BipolarQuant" => self.bipolar_quant(),
                "Trunc" => self.qonnx_trunc(),
                "MultiThreshold" => self.multi_threshold(),
                _ => {
                    self.issue(IssueKind::UnsupportedOp, "operator not supported".into());
                    None
                }
            };
        }
        match op_type.as_str() {
            "Constant" => self.constant_node(),
            "Identity" => {
                self.check_inputs_at_most(1);
                let x = self.input(0, "input")?;
                one(Op::Identity, self.shape(x), self.dtype(x))
            }
            "Relu" => {
                self.check_inputs_at_most(1);
                let x = self.input(0, "X")?;
                self.expect_dtype(
                    x,
                    &[DType::F32, DType::F64, DType::I8, DType::I32, DType::I64],
                    "X",
                );
                one(Op::Relu, self.shape(x), self.dtype(x))
            }
            "Add" | "Sub" | "Mul" | "Div" => self.binary(&op_type),
            "Clip" => self.clip(),
            "Conv" => self.conv(),
            "ConvInteger" => self.conv_integer(),
            "QLinearConv" => self.qlinear_conv(),
            "Gemm" => self.gemm(),
            "MatMul" => self.matmul(),
            "MatMulInteger" => self.matmul_integer(),
            "QLinearMatMul" => self.qlinear_matmul(),
            "MaxPool" | "AveragePool" => self.pool(op_type == "MaxPool"),
            "GlobalAveragePool" => {
                self.check_inputs_at_most(1);
                let x = self.input(0, "X")?;
                self.expect_dtype(x, FLOATS, "X");
                let mut s = self.shape(x);
                if s.len() < 3 {
                    self.issue(
                        IssueKind::ShapeMismatch,
                        format!("X must have rank >= 3 (N, C, spatial...), but has shape {s:?}"),
                    );
                    return None;
                }
                for d in &mut s[2..] {
                    *d = 1;
                }
                one(Op::GlobalAveragePool, s, DType::F32)
            }
            "Flatten" => self.flatten(),
            "TopK" => self.top_k(),
            "Softmax" => {
                self.check_inputs_at_most(1);
                let x = self.input(0, "input")?;
                self.expect_dtype(x, FLOATS, "input");
                let s = self.shape(x);
                let single_axis = self.opset() >= 13;
                let axis = self.attr_int_or("axis", if single_axis { -1 } else { 1 });
                let Some(a) = shape::normalize_axis(axis, s.len(), !single_axis) else {
                    self.issue(
                        IssueKind::BadAttribute,
                        format!("axis = {axis} is out of range for rank {}", s.len()),
                    );
                    return None;
                };
                one(
                    Op::Softmax {
                        axis: a,
                        single_axis,
                    },
                    s,
                    DType::F32,
                )
            }
            "Reshape" => self.reshape(),
            "Transpose" => self.transpose(),
            "Squeeze" | "Unsqueeze" => self.squeeze(op_type == "Squeeze"),
            "Concat" => self.concat(),
            "BatchNormalization" => self.batch_norm(),
            "QuantizeLinear" => self.quantize(),
            "DequantizeLinear" => self.dequantize(),
            _ => {
                self.issue(IssueKind::UnsupportedOp, "operator not supported".into());
                None
            }
        }
    }

    fn constant_node(&mut self) -> Option<Built> {
        self.check_inputs_at_most(0);
        if self.node.output.len() != 1 {
            self.issue(
                IssueKind::Malformed,
                "Constant must have exactly one output".into(),
            );
            return None;
        }
        let attrs: Vec<&AttributeProto> = self.node.attribute.iter().collect();
        if attrs.len() != 1 {
            self.issue(
                IssueKind::BadAttribute,
                format!(
                    "Constant must have exactly one value attribute, found {}",
                    attrs.len()
                ),
            );
            return None;
        }
        let a = attrs[0];
        let t = match a.name.as_str() {
            "value" => match a.t.as_ref().map(Tensor::from_onnx) {
                Some(Ok(t)) => t,
                Some(Err(e)) => {
                    self.issue(
                        IssueKind::Malformed,
                        format!("Constant value cannot be read: {e}"),
                    );
                    return None;
                }
                None => {
                    self.issue(
                        IssueKind::BadAttribute,
                        "attribute 'value' must be a tensor".into(),
                    );
                    return None;
                }
            },
            "value_float" => Tensor {
                shape: vec![],
                data: TensorData::F32(vec![self.attr_float_or("value_float", 0.0)]),
            },
            "value_floats" => Tensor {
                shape: vec![a.floats.len()],
                data: TensorData::F32(a.floats.clone()),
            },
            "value_int" => Tensor {
                shape: vec![],
                data: TensorData::I64(vec![self.attr_int_or("value_int", 0)]),
            },
            "value_ints" => Tensor {
                shape: vec![a.ints.len()],
                data: TensorData::I64(a.ints.clone()),
            },
            other => {
                self.issue(
                    IssueKind::UnsupportedType,
                    format!("Constant attribute '{other}' is not supported"),
                );
                return None;
            }
        };
        Some(Built::Const(t))
    }

    fn binary(&mut self, op_type: &str) -> Option<Built> {
        self.check_inputs_at_most(2);
        let a = self.input(0, "A")?;
        let b = self.input(1, "B")?;
        if self.attr("broadcast").is_some() || self.attr("axis").is_some() {
            self.issue(
                IssueKind::BadAttribute,
                "legacy 'broadcast'/'axis' attributes (opset < 7) are not supported".into(),
            );
        }
        let ok = self.expect_dtype(a, NUMERIC, "A") & self.expect_dtype(b, NUMERIC, "B");
        if ok {
            self.expect_same_dtype(a, b, "A and B must have the same type");
        }
        let (sa, sb) = (self.shape(a), self.shape(b));
        let Some(out) = shape::broadcast(&sa, &sb) else {
            self.issue(
                IssueKind::ShapeMismatch,
                format!("shapes {sa:?} and {sb:?} do not broadcast"),
            );
            return None;
        };
        let op = match op_type {
            "Add" => Op::Add,
            "Sub" => Op::Sub,
            "Mul" => Op::Mul,
            _ => Op::Div,
        };
        Some(Built::Op(op, vec![(out, self.dtype(a))]))
    }

    fn clip(&mut self) -> Option<Built> {
        self.check_inputs_at_most(3);
        let x = self.input(0, "input")?;
        let dt = self.dtype(x);
        self.expect_dtype(x, NUMERIC, "input");
        if self.opset() < 11 {
            // Clip-6: min/max attributes (float inputs only); turn them into constant inputs.
            if self.node.input.len() > 1 {
                self.issue(
                    IssueKind::Malformed,
                    "Clip before opset 11 takes min/max as attributes, not inputs".into(),
                );
            }
            let bound = |cx: &mut Self, attr: &str| -> Option<ValueId> {
                cx.attr(attr)?;
                let v = cx.attr_float_or(attr, 0.0);
                let name = format!("{}_{attr}", cx.info.display_name());
                Some(cx.imp.add_const(
                    &name,
                    Tensor {
                        shape: vec![],
                        data: TensorData::F32(vec![v]),
                    },
                ))
            };
            let lo = bound(self, "min");
            let hi = bound(self, "max");
            self.ins = vec![Some(x), lo, hi];
            if dt != DType::F32 && (lo.is_some() || hi.is_some()) {
                self.issue(
                    IssueKind::UnsupportedType,
                    format!("Clip-6 min/max attributes need a float32 input, not {dt}"),
                );
            }
        } else {
            for (i, what) in [(1, "min"), (2, "max")] {
                if let Some(b) = self.opt_input(i) {
                    self.expect_same_dtype(x, b, &format!("{what} must have the input's type"));
                    self.expect_scalar(b, what);
                }
            }
        }
        Some(Built::Op(Op::Clip, vec![(self.shape(x), dt)]))
    }

    /// Conv geometry shared by Conv, ConvInteger and QLinearConv: attributes and output shape.
    fn conv_geometry(&mut self, x: ValueId, w: ValueId) -> Option<(ConvAttrs, Vec<usize>)> {
        let (xs, ws) = (self.shape(x), self.shape(w));
        if xs.len() != 4 {
            self.issue(
                IssueKind::UnsupportedOp,
                format!(
                    "only 2-D convolutions (4-D input N,C,H,W) are supported; input has shape {xs:?}"
                ),
            );
            return None;
        }
        if ws.len() != 4 {
            self.issue(
                IssueKind::ShapeMismatch,
                format!("weights must be 4-D (M, C/group, kH, kW), but have shape {ws:?}"),
            );
            return None;
        }
        let group = self.attr_int_or("group", 1);
        let group = match usize::try_from(group) {
            Ok(g) if g >= 1 => g,
            _ => {
                self.issue(
                    IssueKind::BadAttribute,
                    format!("group = {group} must be >= 1"),
                );
                return None;
            }
        };
        let kernel = [ws[2], ws[3]];
        if let Some(ks) = self.attr_ints("kernel_shape") {
            if !ks.is_empty() && (ks.len() != 2 || ks[0] != ws[2] as i64 || ks[1] != ws[3] as i64) {
                self.issue(
                    IssueKind::ShapeMismatch,
                    format!("kernel_shape {ks:?} does not match the weights' shape {ws:?}"),
                );
            }
        }
        let strides = self.attr_dims("strides", 2, 1, 1);
        let dilations = self.attr_dims("dilations", 2, 1, 1);
        let pads = self.attr_dims("pads", 4, 0, 0);
        let auto_pad = self.auto_pad();
        let (strides, dilations, pads, auto_pad) = (strides?, dilations?, pads?, auto_pad?);
        if ws[0] % group != 0 || xs[1] != ws[1].checked_mul(group)? {
            self.issue(
                IssueKind::ShapeMismatch,
                format!(
                    "input channels {} and weights {ws:?} do not match group = {group} \
                     (need C = W[1] * group and W[0] divisible by group)",
                    xs[1]
                ),
            );
            return None;
        }
        let mut out = vec![xs[0], ws[0], 0, 0];
        let mut resolved = [0usize; 4];
        for d in 0..2 {
            match shape::conv_dim(
                xs[2 + d],
                kernel[d],
                strides[d],
                dilations[d],
                auto_pad,
                (pads[d], pads[2 + d]),
            ) {
                Some((pb, pe, o)) => {
                    resolved[d] = pb;
                    resolved[2 + d] = pe;
                    out[2 + d] = o;
                }
                None => {
                    self.issue(
                        IssueKind::ShapeMismatch,
                        format!(
                            "the {}x{} kernel (dilations {dilations:?}) does not fit the padded \
                             {}x{} input (pads {pads:?})",
                            kernel[0], kernel[1], xs[2], xs[3]
                        ),
                    );
                    return None;
                }
            }
        }
        Some((
            ConvAttrs {
                kernel,
                strides: [strides[0], strides[1]],
                pads: resolved,
                dilations: [dilations[0], dilations[1]],
                group,
            },
            out,
        ))
    }

    fn auto_pad(&mut self) -> Option<AutoPad> {
        let s = self.attr_string("auto_pad").unwrap_or_default();
        let p = AutoPad::parse(&s);
        if p.is_none() {
            self.issue(
                IssueKind::BadAttribute,
                format!("auto_pad = '{s}' is not valid"),
            );
        }
        p
    }

    fn conv(&mut self) -> Option<Built> {
        self.check_inputs_at_most(3);
        let x = self.input(0, "X")?;
        let w = self.input(1, "W")?;
        self.expect_dtype(x, FLOATS, "X");
        self.expect_dtype(w, FLOATS, "W");
        let (attrs, out) = self.conv_geometry(x, w)?;
        if let Some(b) = self.opt_input(2) {
            self.expect_dtype(b, FLOATS, "B");
            let bs = self.shape(b);
            if bs != [out[1]] {
                self.issue(
                    IssueKind::ShapeMismatch,
                    format!("bias must have shape [{}], but has {bs:?}", out[1]),
                );
            }
        }
        Some(Built::Op(Op::Conv(attrs), vec![(out, DType::F32)]))
    }

    fn conv_integer(&mut self) -> Option<Built> {
        self.check_inputs_at_most(4);
        let x = self.input(0, "x")?;
        let w = self.input(1, "w")?;
        self.expect_dtype(x, Q8, "x");
        self.expect_dtype(w, Q8, "w");
        let (attrs, out) = self.conv_geometry(x, w)?;
        if let Some(z) = self.opt_input(2) {
            self.expect_same_dtype(x, z, "x_zero_point must have x's type");
            self.expect_scalar(z, "x_zero_point");
        }
        if let Some(z) = self.opt_input(3) {
            self.expect_same_dtype(w, z, "w_zero_point must have w's type");
            self.expect_scalar_or_vec(z, out[1], "w_zero_point");
        }
        Some(Built::Op(Op::ConvInteger(attrs), vec![(out, DType::I32)]))
    }

    fn qlinear_conv(&mut self) -> Option<Built> {
        self.check_inputs_at_most(9);
        let x = self.input(0, "x")?;
        let xs = self.input(1, "x_scale")?;
        let xz = self.input(2, "x_zero_point")?;
        let w = self.input(3, "w")?;
        let ws = self.input(4, "w_scale")?;
        let wz = self.input(5, "w_zero_point")?;
        let ys = self.input(6, "y_scale")?;
        let yz = self.input(7, "y_zero_point")?;
        self.expect_dtype(x, Q8, "x");
        self.expect_dtype(w, Q8, "w");
        self.expect_dtype(yz, Q8, "y_zero_point");
        for (s, what) in [(xs, "x_scale"), (ws, "w_scale"), (ys, "y_scale")] {
            self.expect_dtype(s, FLOATS, what);
        }
        self.expect_same_dtype(x, xz, "x_zero_point must have x's type");
        self.expect_same_dtype(w, wz, "w_zero_point must have w's type");
        let (attrs, out) = self.conv_geometry(x, w)?;
        let m = out[1];
        self.expect_scalar(xs, "x_scale");
        self.expect_scalar(xz, "x_zero_point");
        self.expect_scalar_or_vec(ws, m, "w_scale");
        self.expect_scalar_or_vec(wz, m, "w_zero_point");
        self.expect_scalar(ys, "y_scale");
        self.expect_scalar(yz, "y_zero_point");
        if let Some(b) = self.opt_input(8) {
            self.expect_dtype(b, &[DType::I32], "B");
            let bs = self.shape(b);
            if bs != [m] {
                self.issue(
                    IssueKind::ShapeMismatch,
                    format!("bias must have shape [{m}], but has {bs:?}"),
                );
            }
        }
        let dt = self.dtype(yz);
        Some(Built::Op(Op::QLinearConv(attrs), vec![(out, dt)]))
    }

    fn gemm(&mut self) -> Option<Built> {
        self.check_inputs_at_most(3);
        let a = self.input(0, "A")?;
        let b = self.input(1, "B")?;
        self.expect_dtype(a, FLOATS, "A");
        self.expect_dtype(b, FLOATS, "B");
        let alpha = self.attr_float_or("alpha", 1.0);
        let beta = self.attr_float_or("beta", 1.0);
        let trans_a = self.attr_int_or("transA", 0) != 0;
        let trans_b = self.attr_int_or("transB", 0) != 0;
        if self.attr("broadcast").is_some() {
            self.issue(
                IssueKind::BadAttribute,
                "legacy 'broadcast' attribute (opset < 7) is not supported".into(),
            );
        }
        let (sa, sb) = (self.shape(a), self.shape(b));
        if sa.len() != 2 || sb.len() != 2 {
            self.issue(
                IssueKind::ShapeMismatch,
                format!("A and B must be 2-D, but have shapes {sa:?} and {sb:?}"),
            );
            return None;
        }
        let (m, ka) = if trans_a {
            (sa[1], sa[0])
        } else {
            (sa[0], sa[1])
        };
        let (kb, n) = if trans_b {
            (sb[1], sb[0])
        } else {
            (sb[0], sb[1])
        };
        if ka != kb {
            self.issue(
                IssueKind::ShapeMismatch,
                format!(
                    "inner dimensions differ: A {sa:?} (transA={}) and B {sb:?} (transB={})",
                    trans_a as u8, trans_b as u8
                ),
            );
            return None;
        }
        if let Some(c) = self.opt_input(2) {
            self.expect_dtype(c, FLOATS, "C");
            let sc = self.shape(c);
            if !shape::broadcasts_to(&sc, &[m, n]) {
                self.issue(
                    IssueKind::ShapeMismatch,
                    format!("C {sc:?} does not broadcast to [{m}, {n}]"),
                );
            }
        } else if self.opset() < 11 {
            self.issue(
                IssueKind::MissingValue,
                "Gemm before opset 11 requires C".into(),
            );
        }
        Some(Built::Op(
            Op::Gemm {
                alpha,
                beta,
                trans_a,
                trans_b,
            },
            vec![(vec![m, n], DType::F32)],
        ))
    }

    fn matmul_shape(&mut self, a: ValueId, b: ValueId) -> Option<shape::MatMulShape> {
        let (sa, sb) = (self.shape(a), self.shape(b));
        let s = shape::matmul(&sa, &sb);
        if s.is_none() {
            self.issue(
                IssueKind::ShapeMismatch,
                format!("shapes {sa:?} and {sb:?} cannot be matrix-multiplied"),
            );
        }
        s
    }

    fn matmul(&mut self) -> Option<Built> {
        self.check_inputs_at_most(2);
        let a = self.input(0, "A")?;
        let b = self.input(1, "B")?;
        self.expect_dtype(a, FLOATS, "A");
        self.expect_dtype(b, FLOATS, "B");
        let s = self.matmul_shape(a, b)?;
        Some(Built::Op(Op::MatMul, vec![(s.out, DType::F32)]))
    }

    fn matmul_integer(&mut self) -> Option<Built> {
        self.check_inputs_at_most(4);
        let a = self.input(0, "A")?;
        let b = self.input(1, "B")?;
        self.expect_dtype(a, Q8, "A");
        self.expect_dtype(b, Q8, "B");
        let s = self.matmul_shape(a, b)?;
        if let Some(z) = self.opt_input(2) {
            self.expect_same_dtype(a, z, "a_zero_point must have A's type");
            self.expect_scalar(z, "a_zero_point");
        }
        if let Some(z) = self.opt_input(3) {
            self.expect_same_dtype(b, z, "b_zero_point must have B's type");
            self.expect_scalar_or_vec(z, s.n, "b_zero_point");
        }
        Some(Built::Op(Op::MatMulInteger, vec![(s.out, DType::I32)]))
    }

    fn qlinear_matmul(&mut self) -> Option<Built> {
        self.check_inputs_at_most(8);
        let a = self.input(0, "a")?;
        let a_s = self.input(1, "a_scale")?;
        let a_z = self.input(2, "a_zero_point")?;
        let b = self.input(3, "b")?;
        let b_s = self.input(4, "b_scale")?;
        let b_z = self.input(5, "b_zero_point")?;
        let y_s = self.input(6, "y_scale")?;
        let y_z = self.input(7, "y_zero_point")?;
        self.expect_dtype(a, Q8, "a");
        self.expect_dtype(b, Q8, "b");
        self.expect_dtype(y_z, Q8, "y_zero_point");
        for (s, what) in [(a_s, "a_scale"), (b_s, "b_scale"), (y_s, "y_scale")] {
            self.expect_dtype(s, FLOATS, what);
        }
        self.expect_same_dtype(a, a_z, "a_zero_point must have a's type");
        self.expect_same_dtype(b, b_z, "b_zero_point must have b's type");
        let s = self.matmul_shape(a, b)?;
        self.expect_scalar(a_s, "a_scale");
        self.expect_scalar(a_z, "a_zero_point");
        self.expect_scalar_or_vec(b_s, s.n, "b_scale");
        self.expect_scalar_or_vec(b_z, s.n, "b_zero_point");
        self.expect_scalar(y_s, "y_scale");
        self.expect_scalar(y_z, "y_zero_point");
        let dt = self.dtype(y_z);
        Some(Built::Op(Op::QLinearMatMul, vec![(s.out, dt)]))
    }

    fn pool(&mut self, max: bool) -> Option<Built> {
        self.check_inputs_at_most(1);
        let x = self.input(0, "X")?;
        if max {
            self.expect_dtype(x, &[DType::F32, DType::I8, DType::U8], "X");
        } else {
            self.expect_dtype(x, FLOATS, "X");
        }
        let xs = self.shape(x);
        if xs.len() != 4 {
            self.issue(
                IssueKind::UnsupportedOp,
                format!(
                    "only 2-D pooling (4-D input N,C,H,W) is supported; input has shape {xs:?}"
                ),
            );
            return None;
        }
        let kernel = match self.attr_ints("kernel_shape") {
            Some(k) if k.len() == 2 && k.iter().all(|&v| v >= 1) => {
                [usize::try_from(k[0]).ok()?, usize::try_from(k[1]).ok()?]
            }
            Some(k) => {
                self.issue(
                    IssueKind::BadAttribute,
                    format!("kernel_shape = {k:?} must hold 2 integers >= 1"),
                );
                return None;
            }
            None => {
                if self.attr("kernel_shape").is_none() {
                    self.issue(IssueKind::BadAttribute, "kernel_shape is required".into());
                }
                return None;
            }
        };
        let strides = self.attr_dims("strides", 2, 1, 1);
        let dilations = self.attr_dims("dilations", 2, 1, 1);
        let pads = self.attr_dims("pads", 4, 0, 0);
        let auto_pad = self.auto_pad();
        let ceil_mode = self.attr_int_or("ceil_mode", 0) != 0;
        let count_include_pad = !max && self.attr_int_or("count_include_pad", 0) != 0;
        let (strides, dilations, pads, auto_pad) = (strides?, dilations?, pads?, auto_pad?);
        if max && self.attr_int_or("storage_order", 0) != 0 {
            // Only affects the Indices output, which is rejected above; accept.
        }
        if auto_pad == AutoPad::NotSet
            && (0..2).any(|d| pads[d] >= kernel[d] || pads[2 + d] >= kernel[d])
        {
            self.issue(
                IssueKind::BadAttribute,
                format!("pads {pads:?} must be smaller than the kernel {kernel:?}"),
            );
            return None;
        }
        let mut out = vec![xs[0], xs[1], 0, 0];
        let mut resolved = [0usize; 4];
        let mut overhang = false;
        for d in 0..2 {
            let Some((pb, pe, o)) = shape::pool_dim(
                xs[2 + d],
                kernel[d],
                strides[d],
                dilations[d],
                auto_pad,
                (pads[d], pads[2 + d]),
                ceil_mode,
            ) else {
                self.issue(
                    IssueKind::ShapeMismatch,
                    format!(
                        "the {}x{} window (dilations {dilations:?}) does not fit the padded \
                         {}x{} input (pads {pads:?})",
                        kernel[0], kernel[1], xs[2], xs[3]
                    ),
                );
                return None;
            };
            out[2 + d] = o;
            resolved[d] = pb;
            // With ceil_mode the last window may reach past the end padding. For MaxPool and for
            // AveragePool without count_include_pad those positions behave exactly like padding,
            // so fold them into the end pad. With count_include_pad, onnxruntime's AveragePool
            // before opset 19 (MLAS) divides by the whole kernel, i.e. counts them like padding
            // too (fold), while AveragePool-19+ does not count them: keep ceil_mode for that case.
            let dk = dilations[d].saturating_mul(kernel[d] - 1).saturating_add(1);
            let need = (o - 1).saturating_mul(strides[d]).saturating_add(dk);
            let have = xs[2 + d].saturating_add(pb).saturating_add(pe);
            let extra = need.saturating_sub(have);
            if extra > 0 && count_include_pad && self.opset() >= 19 {
                overhang = true;
                resolved[2 + d] = pe;
            } else {
                resolved[2 + d] = pe + extra;
            }
        }
        let attrs = PoolAttrs {
            kernel,
            strides: [strides[0], strides[1]],
            pads: resolved,
            dilations: [dilations[0], dilations[1]],
            ceil_mode: overhang,
            count_include_pad,
        };
        let dt = self.dtype(x);
        let op = if max {
            Op::MaxPool(attrs)
        } else {
            Op::AveragePool(attrs)
        };
        Some(Built::Op(op, vec![(out, dt)]))
    }

    fn top_k(&mut self) -> Option<Built> {
        self.check_inputs_at_most(2);
        let x = self.input(0, "X")?;
        let kid = self.input(1, "K")?;
        let k = *self.const_ints(kid, "K")?.first()?;
        let s = self.shape(x);
        let axis = self.attr_int_or("axis", -1);
        let Some(a) = shape::normalize_axis(axis, s.len(), false) else {
            self.issue(
                IssueKind::BadAttribute,
                format!("axis = {axis} is out of range for rank {}", s.len()),
            );
            return None;
        };
        if k < 0 || k as usize > s[a] {
            self.issue(
                IssueKind::BadAttribute,
                format!("K = {k} is out of range for an axis of {}", s[a]),
            );
            return None;
        }
        let largest = self.attr_int_or("largest", 1) != 0;
        let sorted = self.attr_int_or("sorted", 1) != 0;
        let mut o = s.clone();
        o[a] = k as usize;
        Some(Built::Op(
            Op::TopK {
                k: k as usize,
                axis: a,
                largest,
                sorted,
            },
            vec![(o.clone(), self.dtype(x)), (o, DType::I64)],
        ))
    }

    fn flatten(&mut self) -> Option<Built> {
        self.check_inputs_at_most(1);
        let x = self.input(0, "input")?;
        let s = self.shape(x);
        let axis = self.attr_int_or("axis", 1);
        let Some(a) = shape::normalize_axis(axis, s.len(), true) else {
            self.issue(
                IssueKind::BadAttribute,
                format!("axis = {axis} is out of range for rank {}", s.len()),
            );
            return None;
        };
        let outer = shape::numel(&s[..a])?;
        let inner = shape::numel(&s[a..])?;
        Some(Built::Op(
            Op::Flatten { axis: a },
            vec![(vec![outer, inner], self.dtype(x))],
        ))
    }

    fn reshape(&mut self) -> Option<Built> {
        self.check_inputs_at_most(2);
        let x = self.input(0, "data")?;
        let sh = self.input(1, "shape")?;
        let target = self.const_ints(sh, "shape")?;
        let allowzero = self.attr_int_or("allowzero", 0) != 0;
        let s = self.shape(x);
        let total = shape::numel(&s)?;
        let mut out = Vec::with_capacity(target.len());
        let mut infer = None;
        for (i, &d) in target.iter().enumerate() {
            match d {
                -1 if infer.is_none() => {
                    infer = Some(i);
                    out.push(1);
                }
                0 if !allowzero => match s.get(i) {
                    Some(&v) => out.push(v),
                    None => {
                        self.issue(
                            IssueKind::ShapeMismatch,
                            format!("shape {target:?} copies dimension {i} (0) that the input {s:?} lacks"),
                        );
                        return None;
                    }
                },
                d if d >= 0 => out.push(usize::try_from(d).ok()?),
                _ => {
                    self.issue(
                        IssueKind::BadAttribute,
                        format!(
                            "shape {target:?} is not valid (at most one -1, no other negatives)"
                        ),
                    );
                    return None;
                }
            }
        }
        if allowzero && infer.is_some() && target.contains(&0) {
            self.issue(
                IssueKind::BadAttribute,
                format!("shape {target:?} has both 0 and -1 with allowzero = 1"),
            );
            return None;
        }
        let known = shape::numel(&out)?;
        if let Some(i) = infer {
            if known == 0 || total % known != 0 {
                self.issue(
                    IssueKind::ShapeMismatch,
                    format!("cannot reshape {s:?} ({total} elements) to {target:?}"),
                );
                return None;
            }
            out[i] = total / known;
        } else if known != total {
            self.issue(
                IssueKind::ShapeMismatch,
                format!("cannot reshape {s:?} ({total} elements) to {target:?}"),
            );
            return None;
        }
        Some(Built::Op(Op::Reshape, vec![(out, self.dtype(x))]))
    }

    fn transpose(&mut self) -> Option<Built> {
        self.check_inputs_at_most(1);
        let x = self.input(0, "data")?;
        let s = self.shape(x);
        let perm: Vec<usize> = match self.attr_ints("perm") {
            Some(p) if !p.is_empty() || s.is_empty() => {
                let parsed: Option<Vec<usize>> = p
                    .iter()
                    .map(|&v| usize::try_from(v).ok().filter(|&v| v < s.len()))
                    .collect();
                let valid = parsed.as_ref().is_some_and(|q| {
                    let mut seen = vec![false; s.len()];
                    q.len() == s.len() && q.iter().all(|&v| !std::mem::replace(&mut seen[v], true))
                });
                if !valid {
                    self.issue(
                        IssueKind::BadAttribute,
                        format!("perm = {p:?} is not a permutation of 0..{}", s.len()),
                    );
                    return None;
                }
                parsed?
            }
            Some(_) | None => {
                if self.failed {
                    return None;
                }
                (0..s.len()).rev().collect()
            }
        };
        let out = perm.iter().map(|&p| s[p]).collect();
        Some(Built::Op(
            Op::Transpose { perm },
            vec![(out, self.dtype(x))],
        ))
    }

    fn squeeze(&mut self, squeeze: bool) -> Option<Built> {
        self.check_inputs_at_most(2);
        let x = self.input(0, "data")?;
        let s = self.shape(x);
        let axes = if self.opset() >= 13 {
            if self.attr("axes").is_some() {
                self.issue(
                    IssueKind::BadAttribute,
                    "from opset 13 axes is an input, not an attribute".into(),
                );
            }
            match self.opt_input(1) {
                Some(a) => Some(self.const_ints(a, "axes")?),
                None => None,
            }
        } else {
            if self.node.input.len() > 1 {
                self.issue(
                    IssueKind::Malformed,
                    "before opset 13 axes is an attribute, not an input".into(),
                );
            }
            self.attr_ints("axes")
        };
        let out_rank = if squeeze {
            s.len()
        } else {
            s.len() + axes.as_ref().map_or(0, |a| a.len())
        };
        let mut norm = Vec::new();
        if let Some(axes) = &axes {
            for &a in axes {
                match shape::normalize_axis(a, out_rank, false) {
                    Some(n) if !norm.contains(&n) => norm.push(n),
                    _ => {
                        self.issue(
                            IssueKind::BadAttribute,
                            format!("axes {axes:?} are out of range or repeated (rank {out_rank})"),
                        );
                        return None;
                    }
                }
            }
        }
        norm.sort_unstable();
        if squeeze {
            if axes.is_none() {
                norm = (0..s.len()).filter(|&i| s[i] == 1).collect();
            }
            if let Some(&bad) = norm.iter().find(|&&i| s[i] != 1) {
                self.issue(
                    IssueKind::ShapeMismatch,
                    format!("cannot squeeze axis {bad} of shape {s:?} (size is not 1)"),
                );
                return None;
            }
            let out = (0..s.len())
                .filter(|i| !norm.contains(i))
                .map(|i| s[i])
                .collect();
            Some(Built::Op(
                Op::Squeeze { axes: norm },
                vec![(out, self.dtype(x))],
            ))
        } else {
            if axes.is_none() {
                self.issue(IssueKind::BadAttribute, "Unsqueeze needs axes".into());
                return None;
            }
            let mut out = Vec::with_capacity(out_rank);
            let mut it = s.iter();
            for i in 0..out_rank {
                if norm.contains(&i) {
                    out.push(1);
                } else {
                    out.push(*it.next()?);
                }
            }
            Some(Built::Op(
                Op::Unsqueeze { axes: norm },
                vec![(out, self.dtype(x))],
            ))
        }
    }

    fn concat(&mut self) -> Option<Built> {
        if self.ins.is_empty() {
            self.issue(
                IssueKind::MissingValue,
                "Concat needs at least one input".into(),
            );
            return None;
        }
        let mut ids = Vec::with_capacity(self.ins.len());
        for i in 0..self.ins.len() {
            ids.push(self.input(i, "inputs")?);
        }
        let Some(axis) = self.attr_int("axis") else {
            if self.attr("axis").is_none() {
                self.issue(IssueKind::BadAttribute, "axis is required".into());
            }
            return None;
        };
        let first = self.shape(ids[0]);
        let Some(a) = shape::normalize_axis(axis, first.len(), false) else {
            self.issue(
                IssueKind::BadAttribute,
                format!("axis = {axis} is out of range for rank {}", first.len()),
            );
            return None;
        };
        let mut out = first.clone();
        out[a] = 0;
        for &id in &ids {
            self.expect_same_dtype(ids[0], id, "all inputs must have the same type");
            let s = self.shape(id);
            let compatible =
                s.len() == first.len() && (0..s.len()).all(|i| i == a || s[i] == first[i]);
            if !compatible {
                self.issue(
                    IssueKind::ShapeMismatch,
                    format!("input shapes {first:?} and {s:?} differ outside axis {a}"),
                );
                return None;
            }
            out[a] = out[a].checked_add(s[a])?;
        }
        Some(Built::Op(
            Op::Concat { axis: a },
            vec![(out, self.dtype(ids[0]))],
        ))
    }

    fn batch_norm(&mut self) -> Option<Built> {
        self.check_inputs_at_most(5);
        let x = self.input(0, "X")?;
        let params = [
            self.input(1, "scale")?,
            self.input(2, "B")?,
            self.input(3, "input_mean")?,
            self.input(4, "input_var")?,
        ];
        let epsilon = self.attr_float_or("epsilon", 1e-5);
        if self.attr_int_or("training_mode", 0) != 0 {
            self.issue(
                IssueKind::UnsupportedOp,
                "training_mode = 1 is not supported (inference only)".into(),
            );
        }
        if self.attr_int_or("spatial", 1) != 1 {
            self.issue(
                IssueKind::UnsupportedOp,
                "spatial = 0 is not supported".into(),
            );
        }
        self.expect_dtype(x, FLOATS, "X");
        let s = self.shape(x);
        if s.len() < 2 {
            self.issue(
                IssueKind::ShapeMismatch,
                format!("X must have rank >= 2 (N, C, ...), but has shape {s:?}"),
            );
            return None;
        }
        for (p, what) in params.iter().zip(["scale", "B", "input_mean", "input_var"]) {
            self.expect_dtype(*p, FLOATS, what);
            let ps = self.shape(*p);
            if ps != [s[1]] {
                self.issue(
                    IssueKind::ShapeMismatch,
                    format!(
                        "{what} must have shape [{}] (channels), but has {ps:?}",
                        s[1]
                    ),
                );
            }
        }
        Some(Built::Op(
            Op::BatchNormalization { epsilon },
            vec![(s, DType::F32)],
        ))
    }

    /// Quantization axis and parameter checks shared by QuantizeLinear and DequantizeLinear.
    fn qdq_axis(&mut self, x: ValueId, scale: ValueId, zp: Option<ValueId>) -> Option<usize> {
        let block = self.attr_int_or("block_size", 0);
        if block != 0 {
            self.issue(
                IssueKind::UnsupportedOp,
                format!("blocked quantization (block_size = {block}) is not supported"),
            );
            return None;
        }
        let xs = self.shape(x);
        let ss = self.shape(scale);
        let axis = self.attr_int_or("axis", 1);
        let per_tensor = ss.len() <= 1 && shape::numel(&ss) == Some(1);
        let norm = shape::normalize_axis(axis, xs.len(), false);
        if !per_tensor {
            let Some(a) = norm else {
                self.issue(
                    IssueKind::BadAttribute,
                    format!("axis = {axis} is out of range for rank {}", xs.len()),
                );
                return None;
            };
            if ss != [xs[a]] {
                self.issue(
                    IssueKind::ShapeMismatch,
                    format!(
                        "per-axis scale must have shape [{}] (axis {a} of {xs:?}), but has {ss:?}",
                        xs[a]
                    ),
                );
                return None;
            }
        }
        if let Some(z) = zp {
            let zs = self.shape(z);
            let ok = if per_tensor {
                zs.len() <= 1 && shape::numel(&zs) == Some(1)
            } else {
                zs == ss
            };
            if !ok {
                self.issue(
                    IssueKind::ShapeMismatch,
                    format!("zero point shape {zs:?} does not match scale shape {ss:?}"),
                );
                return None;
            }
        }
        Some(norm.unwrap_or(0))
    }

    fn quantize(&mut self) -> Option<Built> {
        self.check_inputs_at_most(3);
        let x = self.input(0, "x")?;
        let scale = self.input(1, "y_scale")?;
        let zp = self.opt_input(2);
        self.expect_dtype(x, FLOATS, "x");
        self.expect_dtype(scale, FLOATS, "y_scale");
        let out_attr = self.attr_int_or("output_dtype", 0);
        let precision = self.attr_int_or("precision", 0);
        if precision != 0 && precision != DataType::Float as i32 as i64 {
            self.issue(
                IssueKind::UnsupportedType,
                format!(
                    "precision = {} is not supported (only float32)",
                    type_name(precision as i32)
                ),
            );
        }
        let dt = match zp {
            Some(z) => {
                let d = self.dtype(z);
                if !Q8.contains(&d) {
                    self.issue(
                        IssueKind::UnsupportedType,
                        format!(
                            "quantized type {d} is not supported: only 8-bit (int8, uint8) \
                             quantization"
                        ),
                    );
                    return None;
                }
                if out_attr != 0 && dtype_of(out_attr as i32) != Some(d) {
                    self.issue(
                        IssueKind::BadAttribute,
                        format!(
                            "output_dtype = {} does not match the zero point's type {d}",
                            type_name(out_attr as i32)
                        ),
                    );
                }
                d
            }
            None => match out_attr {
                0 => DType::U8,
                v if v == DataType::Uint8 as i64 => DType::U8,
                v if v == DataType::Int8 as i64 => DType::I8,
                v => {
                    self.issue(
                        IssueKind::UnsupportedType,
                        format!(
                            "quantized type {} is not supported: only 8-bit (int8, uint8) \
                             quantization",
                            type_name(v as i32)
                        ),
                    );
                    return None;
                }
            },
        };
        let axis = self.qdq_axis(x, scale, zp)?;
        Some(Built::Op(
            Op::QuantizeLinear { axis },
            vec![(self.shape(x), dt)],
        ))
    }

    fn dequantize(&mut self) -> Option<Built> {
        self.check_inputs_at_most(3);
        let x = self.input(0, "x")?;
        let scale = self.input(1, "x_scale")?;
        let zp = self.opt_input(2);
        let d = self.dtype(x);
        if !matches!(d, DType::I8 | DType::U8 | DType::I32) {
            self.issue(
                IssueKind::UnsupportedType,
                format!(
                    "quantized type {d} of '{}' is not supported: only 8-bit (int8, uint8) \
                     quantization (and int32, e.g. for biases)",
                    self.vname(x)
                ),
            );
            return None;
        }
        self.expect_dtype(scale, FLOATS, "x_scale");
        if let Some(z) = zp {
            self.expect_same_dtype(x, z, "x_zero_point must have x's type");
        }
        let out_attr = self.attr_int_or("output_dtype", 0);
        if out_attr != 0 && out_attr != DataType::Float as i64 {
            self.issue(
                IssueKind::UnsupportedType,
                format!(
                    "output_dtype = {} is not supported (only float32)",
                    type_name(out_attr as i32)
                ),
            );
        }
        let axis = self.qdq_axis(x, scale, zp)?;
        Some(Built::Op(
            Op::DequantizeLinear { axis },
            vec![(self.shape(x), DType::F32)],
        ))
    }
}

impl Cx<'_, '_> {
    // ---- QONNX / FINN operators (qonnx 1.0)

    /// A `rounding_mode` attribute: qonnx accepts any letter case and `HALF_EVEN` for `ROUND`.
    fn rounding_mode(&mut self, default: QonnxRounding) -> Option<QonnxRounding> {
        if self.attr("rounding_mode").is_none() {
            return Some(default);
        }
        let s = self.attr_string("rounding_mode")?;
        match s.to_uppercase().as_str() {
            "ROUND" | "HALF_EVEN" => Some(QonnxRounding::Round),
            "CEIL" => Some(QonnxRounding::Ceil),
            "FLOOR" => Some(QonnxRounding::Floor),
            "UP" | "DOWN" | "HALF_UP" | "HALF_DOWN" => {
                self.issue(
                    IssueKind::UnsupportedOp,
                    format!(
                        "rounding_mode = '{s}' is not supported (only ROUND/HALF_EVEN, CEIL, FLOOR)"
                    ),
                );
                None
            }
            _ => {
                self.issue(
                    IssueKind::BadAttribute,
                    format!("rounding_mode = '{s}' is not a QONNX rounding mode"),
                );
                None
            }
        }
    }

    /// A quantization parameter (scale, zero point, bit width): a constant of one of
    /// `types` that broadcasts to `x`'s shape without enlarging it (numpy broadcasting, as qonnx
    /// computes).
    fn qonnx_param(
        &mut self,
        x: ValueId,
        i: usize,
        what: &str,
        types: &[DType],
    ) -> Option<ValueId> {
        let id = self.input(i, what)?;
        let typed = self.expect_dtype(id, types, what);
        let (xs, ps) = (self.shape(x), self.shape(id));
        if shape::broadcast(&xs, &ps).as_deref() != Some(xs.as_slice()) {
            self.issue(
                IssueKind::ShapeMismatch,
                format!(
                    "{what} '{}' of shape {ps:?} does not broadcast to the input's shape {xs:?}",
                    self.vname(id)
                ),
            );
            return None;
        }
        if self.constant(id).is_none() {
            self.issue(
                IssueKind::NonConstant,
                format!(
                    "{what} '{}' must be a constant (an initializer or a Constant node)",
                    self.vname(id)
                ),
            );
            return None;
        }
        typed.then_some(id)
    }

    /// A bit-width input: a constant holding one integer in `1..=32`.
    fn bit_width(&mut self, x: ValueId, i: usize, what: &str) -> Option<ValueId> {
        let id = self.qonnx_param(x, i, what, NUMERIC)?;
        let t = self.constant(id)?;
        let v = match &t.data {
            TensorData::F32(v) if v.len() == 1 => f64::from(v[0]),
            TensorData::F64(v) if v.len() == 1 => v[0],
            TensorData::I8(v) if v.len() == 1 => f64::from(v[0]),
            TensorData::U8(v) if v.len() == 1 => f64::from(v[0]),
            TensorData::I32(v) if v.len() == 1 => f64::from(v[0]),
            TensorData::I64(v) if v.len() == 1 => v[0] as f64,
            _ => {
                let n = t.len();
                self.issue(
                    IssueKind::ShapeMismatch,
                    format!("{what} '{}' must hold one value, not {n}", self.vname(id)),
                );
                return None;
            }
        };
        if v.fract() != 0.0 || v < 1.0 {
            self.issue(
                IssueKind::BadAttribute,
                format!("{what} = {v} is not a positive integer"),
            );
            return None;
        }
        if v > 32.0 {
            self.issue(
                IssueKind::UnsupportedOp,
                format!("{what} = {v} is not supported (at most 32 bits)"),
            );
            return None;
        }
        Some(id)
    }

    /// QONNX Quant (also IntQuant): X, scale, zeropt, bitwidth.
    fn qonnx_quant(&mut self) -> Option<Built> {
        self.check_inputs_at_most(4);
        let x = self.input(0, "X")?;
        self.expect_dtype(x, FLOATS, "X");
        let scale = self.qonnx_param(x, 1, "scale", NUMERIC);
        let zeropt = self.qonnx_param(x, 2, "zeropt", NUMERIC);
        let bits = self.bit_width(x, 3, "bitwidth");
        let signed = self.attr_int_or("signed", 1) != 0;
        let narrow = self.attr_int_or("narrow", 0) != 0;
        let rounding = self.rounding_mode(QonnxRounding::Round);
        let (Some(_), Some(_), Some(_), Some(rounding)) = (scale, zeropt, bits, rounding) else {
            return None;
        };
        Some(Built::Op(
            Op::QonnxQuant {
                signed,
                narrow,
                rounding,
            },
            vec![(self.shape(x), DType::F32)],
        ))
    }

    /// QONNX BipolarQuant: X, scale.
    fn bipolar_quant(&mut self) -> Option<Built> {
        self.check_inputs_at_most(2);
        let x = self.input(0, "X")?;
        self.expect_dtype(x, FLOATS, "X");
        self.qonnx_param(x, 1, "scale", FLOATS)?;
        Some(Built::Op(
            Op::BipolarQuant,
            vec![(self.shape(x), DType::F32)],
        ))
    }

    /// QONNX Trunc (opset 1 of its domain): X, scale, zeropt, in_bitwidth, out_bitwidth.
    fn qonnx_trunc(&mut self) -> Option<Built> {
        self.check_inputs_at_most(5);
        let x = self.input(0, "X")?;
        self.expect_dtype(x, FLOATS, "X");
        let scale = self.qonnx_param(x, 1, "scale", NUMERIC);
        let zeropt = self.qonnx_param(x, 2, "zeropt", NUMERIC);
        let in_bits = self.bit_width(x, 3, "in_bitwidth");
        let out_bits = self.bit_width(x, 4, "out_bitwidth");
        let rounding = self.rounding_mode(QonnxRounding::Floor);
        let (Some(_), Some(_), Some(_), Some(_), Some(rounding)) =
            (scale, zeropt, in_bits, out_bits, rounding)
        else {
            return None;
        };
        Some(Built::Op(
            Op::Trunc { rounding },
            vec![(self.shape(x), DType::F32)],
        ))
    }

    /// FINN MultiThreshold: v, thresholds `[C, T]` or `[1, T]`. The channel axis is where
    /// `data_layout` has its `C`; without the attribute qonnx takes NC, NWC and NCHW for ranks 2,
    /// 3 and 4 (so a rank-3 input has its channels last) and axis 1 otherwise.
    fn multi_threshold(&mut self) -> Option<Built> {
        self.check_inputs_at_most(2);
        let x = self.input(0, "v")?;
        self.expect_dtype(x, FLOATS, "v");
        let out_scale = self.attr_float_or("out_scale", 1.0);
        let out_bias = self.attr_float_or("out_bias", 0.0);
        // FINN's annotation of the output's integer type: not needed to compute the values.
        let _ = self.attr_string("out_dtype");
        let layout = self.attr_string("data_layout").unwrap_or_default();
        let xs = self.shape(x);
        let rank = xs.len();
        if rank < 2 {
            self.issue(
                IssueKind::ShapeMismatch,
                format!("v must have rank >= 2 (N, C, ...), but has shape {xs:?}"),
            );
            return None;
        }
        let axis = if layout.is_empty() {
            if rank == 3 {
                2
            } else {
                1
            }
        } else {
            layout.chars().position(|c| c == 'C').unwrap_or(1)
        };
        if axis >= rank {
            self.issue(
                IssueKind::BadAttribute,
                format!("data_layout = '{layout}' does not fit v's shape {xs:?}"),
            );
            return None;
        }
        let channels_last = axis == rank - 1 && axis != 1;
        if axis != 1 && !channels_last {
            self.issue(
                IssueKind::UnsupportedOp,
                format!(
                    "data_layout = '{layout}' puts the channels on axis {axis} of {xs:?}: only \
                     axis 1 or the last axis is supported"
                ),
            );
            return None;
        }
        let th = self.input(1, "thresholds")?;
        if !self.expect_dtype(th, FLOATS, "thresholds") {
            return None;
        }
        if self.constant(th).is_none() {
            self.issue(
                IssueKind::NonConstant,
                format!(
                    "thresholds '{}' must be a constant (an initializer or a Constant node)",
                    self.vname(th)
                ),
            );
            return None;
        }
        let ts = self.shape(th);
        let c = xs[axis];
        if !(ts.len() == 2 && (ts[0] == c || ts[0] == 1)) {
            self.issue(
                IssueKind::ShapeMismatch,
                format!(
                    "thresholds must have shape [{c}, T] or [1, T] ({c} channels on axis {axis} \
                     of {xs:?}), but have {ts:?}"
                ),
            );
            return None;
        }
        Some(Built::Op(
            Op::MultiThreshold {
                out_scale,
                out_bias,
                channels_last,
            },
            vec![(xs, DType::F32)],
        ))
    }
}

/// The IR element type of an ONNX element type, if supported.
fn dtype_of(elem_type: i32) -> Option<DType> {
    Some(match DataType::try_from(elem_type).ok()? {
        DataType::Float => DType::F32,
        DataType::Double => DType::F64,
        DataType::Int8 => DType::I8,
        DataType::Uint8 => DType::U8,
        DataType::Int32 => DType::I32,
        DataType::Int64 => DType::I64,
        DataType::Bool => DType::Bool,
        _ => return None,
    })
}

fn type_name(elem_type: i32) -> String {
    match DataType::try_from(elem_type) {
        Ok(d) => d.onnx_name().to_string(),
        Err(_) => format!("<unknown type {elem_type}>"),
    }
}

fn node_label(node: &NodeProto, index: usize) -> String {
    if node.name.is_empty() {
        format!("#{index} ({})", node.op_type)
    } else {
        format!("'{}' ({})", node.name, node.op_type)
    }
}
