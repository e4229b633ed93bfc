//! ONNX frontend: `ModelProto` -> [`ir::Graph`](crate::ir::Graph).
//!
//! [`import`] checks the whole model and either returns a graph whose every value has a static
//! shape and element type, or an [`ImportError`] that lists *every* problem it found (each
//! unsupported node, each missing input, each bad attribute, ...), not just the first.
//!
//! Supported: the default ONNX domain (`""` / `"ai.onnx"`) at opsets
//! [`MIN_OPSET`]`..=`[`MAX_OPSET`], for exactly the operators of [`ir::Op`](crate::ir::Op), plus
//! `Constant` nodes, which are folded into `Graph::consts`. Symbolic dimensions of graph inputs
//! take the value [`ImportOptions::batch`].
//!
//! QONNX and FINN operators (qonnx 1.0 definitions) of the domains `qonnx.custom_op.general`,
//! `onnx.brevitas` and `finn.custom_op.general`, at any opset of their domain (or none imported):
//! `Quant` (and its new name `IntQuant`), `BipolarQuant`, `MultiThreshold`, and `Trunc` at
//! opset 1 (`Trunc` from opset 2 is qonnx's `Trunc_v2`, which is not supported). Their
//! quantization parameters (scales, zero points, bit widths, thresholds) must be constants;
//! other operators of those domains are reported as unsupported.

mod onnx;
pub mod shape;

use std::collections::BTreeMap;
use std::fmt;

pub use self::onnx::import;
use crate::onnx::ModelProto;

/// Lowest default-domain opset accepted. The node semantics implemented are those of opsets
/// 11..=21; the older and newer opsets in the accepted range define the same semantics for the
/// supported operators (differences, such as `Clip`'s attributes before opset 11 or `Squeeze`'s
/// `axes` input from opset 13, are handled per node).
pub const MIN_OPSET: i64 = 7;
/// Highest default-domain opset accepted.
pub const MAX_OPSET: i64 = 25;

/// Options of [`import`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    /// The value given to symbolic (or unknown) dimensions of graph inputs.
    pub batch: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions { batch: 1 }
    }
}

/// The ONNX node an [`Issue`] is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Position of the node in `GraphProto::node`.
    pub index: usize,
    /// The node's name (may be empty in the model).
    pub name: String,
    pub op_type: String,
    /// The node's domain as written in the model (`""` is the default ONNX domain).
    pub domain: String,
    /// The opset version the model imports for that domain, if it imports one.
    pub opset: Option<i64>,
}

impl NodeInfo {
    /// The node's name, or `#index` for an unnamed node.
    pub fn display_name(&self) -> String {
        if self.name.is_empty() {
            format!("#{}", self.index)
        } else {
            self.name.clone()
        }
    }

    /// The domain for display: `ai.onnx` for the default domain.
    pub fn display_domain(&self) -> &str {
        if self.domain.is_empty() {
            "ai.onnx"
        } else {
            &self.domain
        }
    }
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "node '{}' ({}, domain {}, opset {})",
            self.display_name(),
            self.op_type,
            self.display_domain(),
            self.opset
                .map_or_else(|| "not imported".to_string(), |v| v.to_string())
        )
    }
}

/// What kind of defect an [`Issue`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IssueKind {
    /// An operator (op_type, domain, opset) the frontend does not support.
    UnsupportedOp,
    /// A model-level opset (or a missing default-domain opset import).
    UnsupportedOpset,
    /// An element type the frontend or the operator does not support.
    UnsupportedType,
    /// A value that no initializer, graph input or earlier node provides.
    MissingValue,
    /// An input that must be a constant (e.g. `Reshape`'s shape) but is computed.
    NonConstant,
    /// A missing, malformed or unsupported attribute value.
    BadAttribute,
    /// Input shapes that the operator cannot accept together.
    ShapeMismatch,
    /// Anything else wrong with the model's structure (no graph, bad tensor data, cycles, ...).
    Malformed,
}

impl IssueKind {
    /// A short lower-case label.
    pub fn label(self) -> &'static str {
        match self {
            IssueKind::UnsupportedOp => "unsupported operator",
            IssueKind::UnsupportedOpset => "unsupported opset",
            IssueKind::UnsupportedType => "unsupported type",
            IssueKind::MissingValue => "missing value",
            IssueKind::NonConstant => "non-constant input",
            IssueKind::BadAttribute => "bad attribute",
            IssueKind::ShapeMismatch => "shape mismatch",
            IssueKind::Malformed => "malformed model",
        }
    }
}

/// One defect found in a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub kind: IssueKind,
    /// The node concerned, if the defect is about one node.
    pub node: Option<NodeInfo>,
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.node {
            Some(n) => write!(f, "{}: {}: {}", self.kind.label(), n, self.message),
            None => write!(f, "{}: {}", self.kind.label(), self.message),
        }
    }
}

/// Why a model could not be imported: every problem found, in model order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    pub issues: Vec<Issue>,
}

impl ImportError {
    /// The issues about unsupported operators.
    pub fn unsupported_nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.issues
            .iter()
            .filter(|i| i.kind == IssueKind::UnsupportedOp)
            .filter_map(|i| i.node.as_ref())
    }
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unsupported = self
            .issues
            .iter()
            .filter(|i| i.kind == IssueKind::UnsupportedOp)
            .count();
        let other = self.issues.len() - unsupported;
        write!(
            f,
            "cannot import the ONNX model: {unsupported} unsupported node(s) and {other} other problem(s)"
        )?;
        // Unsupported operators first, grouped, so the list reads as a coverage summary.
        for issue in self
            .issues
            .iter()
            .filter(|i| i.kind == IssueKind::UnsupportedOp)
        {
            write!(f, "\n  - {issue}")?;
        }
        for issue in self
            .issues
            .iter()
            .filter(|i| i.kind != IssueKind::UnsupportedOp)
        {
            write!(f, "\n  - {issue}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ImportError {}

/// One row of an operator coverage table: how many nodes of the model use one
/// (domain, op_type, opset) and whether the frontend supports that operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpCoverage {
    /// `""` for the default domain.
    pub domain: String,
    pub op_type: String,
    pub opset: Option<i64>,
    pub count: usize,
    /// Whether the frontend supports the operator at that opset (the nodes may still have
    /// other problems, reported by [`import`]).
    pub supported: bool,
}

/// Counts the operators of a model's main graph, for `--check-only` style reports.
pub fn op_coverage(model: &ModelProto) -> Vec<OpCoverage> {
    let Some(graph) = &model.graph else {
        return Vec::new();
    };
    let opsets = onnx::opset_map(model);
    let mut rows: BTreeMap<(String, String), OpCoverage> = BTreeMap::new();
    for node in &graph.node {
        let domain = onnx::normalize_domain(&node.domain).to_string();
        let opset = opsets.get(&domain).copied();
        let supported = onnx::op_supported(&domain, &node.op_type, opset);
        rows.entry((domain.clone(), node.op_type.clone()))
            .or_insert(OpCoverage {
                domain,
                op_type: node.op_type.clone(),
                opset,
                count: 0,
                supported,
            })
            .count += 1;
    }
    rows.into_values().collect()
}
