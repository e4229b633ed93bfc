//! Frontend behaviour on hand-built models: every defect is reported, shapes are inferred and
//! attributes resolved as ONNX defines them.

mod frontend_util;

use frontend_util::*;
use systole_compiler::frontend::{import, ImportError, ImportOptions, IssueKind};
use systole_compiler::interp;
use systole_compiler::ir::{Graph, Op};
use systole_compiler::onnx::{ModelProto, NodeProto};
use systole_compiler::tensor::{DType, Tensor, TensorData};

const FLOAT: i32 = 1;
const UINT8: i32 = 2;
const INT8: i32 = 3;
const INT16: i32 = 5;

fn ok(m: &ModelProto) -> Graph {
    import(m, &ImportOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn err(m: &ModelProto) -> ImportError {
    import(m, &ImportOptions::default()).expect_err("the import should fail")
}

fn out_shape(g: &Graph, i: usize) -> Vec<usize> {
    g.value(g.outputs[i]).shape.clone()
}

fn custom(op: &str, ins: &[&str], outs: &[&str]) -> NodeProto {
    let mut n = node(op, ins, outs, vec![]);
    n.domain = "qonnx.custom_op.general".into();
    n
}

#[test]
fn every_defect_is_listed_in_one_error() {
    let m = model(
        vec![
            custom("FloatQuant", &["x", "s"], &["q"]),
            custom("XnorPopcountMatMul", &["q", "t"], &["mt"]),
            node("Relu", &["missing"], &["r"], vec![]),
            node("Reshape", &["x", "x"], &["rs"], vec![]),
            node("Conv", &["x", "w"], &["c"], vec![int("group", 0)]),
            node("Add", &["x", "v3"], &["a"], vec![]),
            node("LpNormalization", &["x"], &["tk"], vec![]),
            // Downstream of an unsupported node: not reported again.
            node("Relu", &["mt"], &["r2"], vec![]),
        ],
        vec![
            init("s", scalar_f32(1.0)),
            init("t", scalar_f32(1.0)),
            init("w", f32t(&[2, 4, 3, 3], 0)),
            init("v3", f32t(&[3], 0)),
            init("k", tensor_i64(&[1])),
        ],
        vec![vinfo("x", FLOAT, &[1, 4, 8, 8])],
        &["r", "rs", "c", "a", "tk", "r2"],
    );
    let e = err(&m);
    let kinds: Vec<IssueKind> = e.issues.iter().map(|i| i.kind).collect();
    assert_eq!(
        kinds,
        vec![
            IssueKind::UnsupportedOp,
            IssueKind::UnsupportedOp,
            IssueKind::MissingValue,
            IssueKind::NonConstant,
            IssueKind::BadAttribute,
            IssueKind::ShapeMismatch,
            IssueKind::UnsupportedOp,
        ],
        "{e}"
    );
    let msg = e.to_string();
    assert_eq!(msg.lines().count(), 8, "{msg}");
    for needle in [
        "FloatQuant",
        "XnorPopcountMatMul",
        "qonnx.custom_op.general",
        "LpNormalization",
        "opset 13",
        "'missing'",
        "must be a constant",
        "group = 0",
        "[1, 4, 8, 8] and [3] do not broadcast",
    ] {
        assert!(msg.contains(needle), "{needle:?} not in:\n{msg}");
    }
    let unsupported: Vec<&str> = e.unsupported_nodes().map(|n| n.op_type.as_str()).collect();
    assert_eq!(
        unsupported,
        ["FloatQuant", "XnorPopcountMatMul", "LpNormalization"]
    );
}

#[test]
fn model_level_defects() {
    let mut m = model(vec![], vec![], vec![], &[]);
    m.opset_import.clear();
    let e = err(&m);
    assert!(e
        .issues
        .iter()
        .any(|i| i.kind == IssueKind::UnsupportedOpset));
    assert!(e.to_string().contains("no outputs"));

    let m = with_opset(
        model(
            vec![node("Relu", &["x"], &["y"], vec![])],
            vec![],
            vec![vinfo("x", FLOAT, &[2])],
            &["y"],
        ),
        6,
    );
    let e = err(&m);
    assert!(e.to_string().contains("opset 6 is not supported"), "{e}");

    let m = ModelProto::default();
    assert!(err(&m).to_string().contains("no graph"));

    let m = model(vec![], vec![], vec![vinfo("x", INT16, &[2])], &["x"]);
    assert!(err(&m).to_string().contains("INT16"));
}

#[test]
fn symbolic_dims_take_the_batch_option() {
    let m = model(
        vec![node("Relu", &["x"], &["y"], vec![])],
        vec![],
        vec![vinfo_sym("x", FLOAT, &[-1, 3])],
        &["y"],
    );
    assert_eq!(out_shape(&ok(&m), 0), [1, 3]);
    let g = import(&m, &ImportOptions { batch: 8 }).unwrap();
    assert_eq!(out_shape(&g, 0), [8, 3]);
}

#[test]
fn nodes_out_of_order_are_sorted() {
    let m = model(
        vec![
            node("Relu", &["a"], &["y"], vec![]),
            node("Relu", &["x"], &["a"], vec![]),
        ],
        vec![],
        vec![vinfo("x", FLOAT, &[2])],
        &["y"],
    );
    let g = ok(&m);
    assert_eq!(g.nodes[0].name, "Relu_a");
    let cyc = model(
        vec![
            node("Relu", &["b"], &["a"], vec![]),
            node("Relu", &["a"], &["b"], vec![]),
        ],
        vec![],
        vec![],
        &["a"],
    );
    assert!(err(&cyc).to_string().contains("cycle"));
}

#[test]
fn conv_auto_pad_strides_dilations_groups() {
    let conv = |attrs, w: &[usize], x: &[i64]| {
        let m = model(
            vec![node("Conv", &["x", "w"], &["y"], attrs)],
            vec![init("w", f32t(w, 0))],
            vec![vinfo("x", FLOAT, x)],
            &["y"],
        );
        let g = ok(&m);
        let Op::Conv(a) = &g.nodes[0].op else {
            unreachable!()
        };
        (a.clone(), out_shape(&g, 0))
    };
    let (a, s) = conv(
        vec![string("auto_pad", "SAME_UPPER"), ints("strides", &[2, 2])],
        &[1, 1, 3, 3],
        &[1, 1, 5, 6],
    );
    assert_eq!((a.pads, s), ([1, 0, 1, 1], vec![1, 1, 3, 3]));
    let (a, _) = conv(
        vec![string("auto_pad", "SAME_LOWER")],
        &[1, 1, 2, 2],
        &[1, 1, 4, 4],
    );
    assert_eq!(a.pads, [1, 1, 0, 0]);
    let (a, s) = conv(
        vec![string("auto_pad", "VALID"), ints("pads", &[3, 3, 3, 3])],
        &[1, 1, 3, 3],
        &[1, 1, 5, 5],
    );
    assert_eq!((a.pads, s), ([0; 4], vec![1, 1, 3, 3]));
    let (a, s) = conv(
        vec![ints("dilations", &[2, 1]), ints("pads", &[0, 1, 2, 1])],
        &[4, 1, 3, 3],
        &[2, 1, 9, 9],
    );
    assert_eq!((a.dilations, s), ([2, 1], vec![2, 4, 7, 9]));
    // Depthwise.
    let (a, s) = conv(vec![int("group", 8)], &[8, 1, 3, 3], &[1, 8, 5, 5]);
    assert_eq!((a.group, s), (8, vec![1, 8, 3, 3]));
    // 1-D convolution: unsupported, named.
    let m = model(
        vec![node("Conv", &["x", "w"], &["y"], vec![])],
        vec![init("w", f32t(&[1, 1, 3], 0))],
        vec![vinfo("x", FLOAT, &[1, 1, 5])],
        &["y"],
    );
    assert!(err(&m).to_string().contains("only 2-D"));
}

#[test]
fn pools_resolve_auto_pad_and_ceil_mode() {
    let pool = |op: &str, attrs, x: &[i64]| {
        let m = model(
            vec![node(op, &["x"], &["y"], attrs)],
            vec![],
            vec![vinfo("x", FLOAT, x)],
            &["y"],
        );
        let g = ok(&m);
        let a = match &g.nodes[0].op {
            Op::MaxPool(a) | Op::AveragePool(a) => a.clone(),
            _ => unreachable!(),
        };
        (a, out_shape(&g, 0))
    };
    // ceil_mode folds the overhang into the end pads for MaxPool.
    let (a, s) = pool(
        "MaxPool",
        vec![
            ints("kernel_shape", &[3, 3]),
            ints("strides", &[2, 2]),
            int("ceil_mode", 1),
        ],
        &[1, 1, 4, 4],
    );
    assert_eq!(
        (a.pads, a.ceil_mode, s),
        ([0, 0, 1, 1], false, vec![1, 1, 2, 2])
    );
    // ...and for AveragePool counting pads before opset 19 (onnxruntime divides by the whole
    // kernel there), but from opset 19 it keeps ceil_mode: the overhang is not counted.
    let avg = |opset| {
        let m = with_opset(
            model(
                vec![node(
                    "AveragePool",
                    &["x"],
                    &["y"],
                    vec![
                        ints("kernel_shape", &[3, 3]),
                        ints("strides", &[2, 2]),
                        int("ceil_mode", 1),
                        int("count_include_pad", 1),
                    ],
                )],
                vec![],
                vec![vinfo("x", FLOAT, &[1, 1, 4, 4])],
                &["y"],
            ),
            opset,
        );
        let g = ok(&m);
        let Op::AveragePool(a) = &g.nodes[0].op else {
            unreachable!()
        };
        (a.pads, a.ceil_mode, out_shape(&g, 0))
    };
    assert_eq!(avg(13), ([0, 0, 1, 1], false, vec![1, 1, 2, 2]));
    assert_eq!(avg(19), ([0; 4], true, vec![1, 1, 2, 2]));
    // The last window may not start in the end padding.
    let (_, s) = pool(
        "MaxPool",
        vec![
            ints("kernel_shape", &[1, 1]),
            ints("strides", &[2, 2]),
            int("ceil_mode", 1),
        ],
        &[1, 1, 2, 2],
    );
    assert_eq!(s, [1, 1, 1, 1]);
    let (a, s) = pool(
        "AveragePool",
        vec![
            ints("kernel_shape", &[2, 2]),
            string("auto_pad", "SAME_LOWER"),
        ],
        &[1, 3, 5, 5],
    );
    assert_eq!((a.pads, s), ([1, 1, 0, 0], vec![1, 3, 5, 5]));
    let m = model(
        vec![node(
            "MaxPool",
            &["x"],
            &["y", "idx"],
            vec![ints("kernel_shape", &[2, 2])],
        )],
        vec![],
        vec![vinfo("x", FLOAT, &[1, 1, 4, 4])],
        &["y"],
    );
    assert!(err(&m).to_string().contains("idx"));
}

#[test]
fn ceil_mode_average_pool_counts_the_overhang_only_before_opset_19() {
    // 1x1x3x3 ones, kernel 2, stride 2, ceil_mode, count_include_pad: the last windows cover one
    // row/column of input and one of overhang. onnxruntime counts the overhang before opset 19
    // (divisor 4) but not from opset 19 (every mean is 1).
    let run = |opset| {
        let m = with_opset(
            model(
                vec![node(
                    "AveragePool",
                    &["x"],
                    &["y"],
                    vec![
                        ints("kernel_shape", &[2, 2]),
                        ints("strides", &[2, 2]),
                        int("ceil_mode", 1),
                        int("count_include_pad", 1),
                    ],
                )],
                vec![],
                vec![vinfo("x", FLOAT, &[1, 1, 3, 3])],
                &["y"],
            ),
            opset,
        );
        let g = ok(&m);
        interp::run(&g, &[tensor_f32(&[1, 1, 3, 3], &[1.0; 9])])
            .unwrap()
            .remove(0)
            .data
    };
    assert_eq!(run(13), TensorData::F32(vec![1.0, 0.5, 0.5, 0.25]));
    assert_eq!(run(19), TensorData::F32(vec![1.0; 4]));
}

#[test]
fn squeeze_unsqueeze_axes_before_and_after_opset_13() {
    let m11 = with_opset(
        model(
            vec![
                node("Unsqueeze", &["x"], &["u"], vec![ints("axes", &[0, -1])]),
                node("Squeeze", &["u"], &["y"], vec![ints("axes", &[-1])]),
            ],
            vec![],
            vec![vinfo("x", FLOAT, &[3, 4])],
            &["u", "y"],
        ),
        11,
    );
    let g = ok(&m11);
    assert_eq!(out_shape(&g, 0), [1, 3, 4, 1]);
    assert_eq!(out_shape(&g, 1), [1, 3, 4]);
    let m13 = model(
        vec![
            node("Unsqueeze", &["x", "a"], &["u"], vec![]),
            node("Squeeze", &["u"], &["y"], vec![]),
        ],
        vec![init("a", tensor_i64(&[-1, 1]))],
        vec![vinfo("x", FLOAT, &[3, 4])],
        &["u", "y"],
    );
    let g = ok(&m13);
    assert_eq!(out_shape(&g, 0), [3, 1, 4, 1]);
    assert_eq!(out_shape(&g, 1), [3, 4]);
    assert_eq!(g.nodes[0].op, Op::Unsqueeze { axes: vec![1, 3] });
    // The opset-11 form at opset 13 is rejected.
    let bad = with_opset(m11, 13);
    assert!(err(&bad).to_string().contains("axes is an input"));
}

#[test]
fn reshape_zero_minus_one_and_allowzero() {
    let reshape = |shape: &[i64], attrs, x: &[i64]| {
        model(
            vec![node("Reshape", &["x", "s"], &["y"], attrs)],
            vec![init("s", tensor_i64(shape))],
            vec![vinfo("x", FLOAT, x)],
            &["y"],
        )
    };
    assert_eq!(
        out_shape(&ok(&reshape(&[0, -1], vec![], &[2, 3, 4])), 0),
        [2, 12]
    );
    assert_eq!(
        out_shape(
            &ok(&reshape(&[0, 4, 0], vec![int("allowzero", 1)], &[0, 3, 4])),
            0
        ),
        [0, 4, 0]
    );
    assert!(err(&reshape(&[-1, -1], vec![], &[2, 3]))
        .to_string()
        .contains("-1"));
    assert!(err(&reshape(&[5, -1], vec![], &[2, 3]))
        .to_string()
        .contains("cannot reshape"));
    assert!(err(&reshape(&[0, -1], vec![int("allowzero", 1)], &[2, 3]))
        .to_string()
        .contains("allowzero"));
}

#[test]
fn constant_nodes_are_folded() {
    let m = model(
        vec![
            node("Constant", &[], &["s"], vec![ints("value_ints", &[6])]),
            node("Constant", &[], &["c"], vec![float("value_float", 2.0)]),
            node("Reshape", &["x", "s"], &["r"], vec![]),
            node("Mul", &["r", "c"], &["y"], vec![]),
        ],
        vec![],
        vec![vinfo("x", FLOAT, &[2, 3])],
        &["y"],
    );
    let g = ok(&m);
    assert_eq!(g.nodes.len(), 2);
    assert_eq!(g.consts.len(), 2);
    let y = interp::run(&g, &[tensor_f32(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])]).unwrap();
    assert_eq!(y[0].shape, [6]);
    assert_eq!(
        y[0].data,
        TensorData::F32(vec![2.0, 4.0, 6.0, 8.0, 10.0, 12.0])
    );
}

#[test]
fn clip_attributes_before_opset_11() {
    let m = with_opset(
        model(
            vec![node(
                "Clip",
                &["x"],
                &["y"],
                vec![float("min", -1.0), float("max", 0.5)],
            )],
            vec![],
            vec![vinfo("x", FLOAT, &[4])],
            &["y"],
        ),
        10,
    );
    let g = ok(&m);
    assert_eq!(g.nodes[0].inputs.len(), 3);
    let y = interp::run(&g, &[tensor_f32(&[4], &[-3.0, -0.5, 0.25, 7.0])]).unwrap();
    assert_eq!(y[0].data, TensorData::F32(vec![-1.0, -0.5, 0.25, 0.5]));
}

#[test]
fn quantization_limits_are_reported_clearly() {
    let q = |zp: Tensor, attrs| {
        model(
            vec![node("QuantizeLinear", &["x", "s", "z"], &["y"], attrs)],
            vec![init("s", tensor_f32(&[2], &[0.5, 0.25])), init("z", zp)],
            vec![vinfo("x", FLOAT, &[3, 2])],
            &["y"],
        )
    };
    let zp8 = Tensor::new(vec![2], TensorData::I8(vec![1, -1])).unwrap();
    let g = ok(&q(zp8.clone(), vec![]));
    assert_eq!(g.nodes[0].op, Op::QuantizeLinear { axis: 1 });
    assert_eq!(g.value(g.outputs[0]).dtype, DType::I8);
    let e = err(&q(zp8.clone(), vec![int("block_size", 2)])).to_string();
    assert!(e.contains("block_size = 2"), "{e}");
    let e = err(&q(zp8.clone(), vec![int("axis", 0)])).to_string();
    assert!(e.contains("per-axis scale must have shape [3]"), "{e}");
    let zp32 = Tensor::new(vec![2], TensorData::I32(vec![0, 0])).unwrap();
    let e = err(&q(zp32, vec![])).to_string();
    assert!(e.contains("only 8-bit"), "{e}");
    let e = err(&model(
        vec![node(
            "QuantizeLinear",
            &["x", "s"],
            &["y"],
            vec![int("output_dtype", 5)],
        )],
        vec![init("s", scalar_f32(1.0))],
        vec![vinfo("x", FLOAT, &[2])],
        &["y"],
    ))
    .to_string();
    assert!(e.contains("INT16") && e.contains("only 8-bit"), "{e}");
}

#[test]
fn batchnorm_training_mode_is_rejected() {
    let bn = |attrs| {
        with_opset(
            model(
                vec![node(
                    "BatchNormalization",
                    &["x", "s", "b", "m", "v"],
                    &["y"],
                    attrs,
                )],
                vec![
                    init("s", f32t(&[2], 0)),
                    init("b", f32t(&[2], 1)),
                    init("m", f32t(&[2], 2)),
                    init("v", tensor_f32(&[2], &[1.0, 2.0])),
                ],
                vec![vinfo("x", FLOAT, &[1, 2, 3, 3])],
                &["y"],
            ),
            15,
        )
    };
    ok(&bn(vec![float("epsilon", 1e-3)]));
    let e = err(&bn(vec![int("training_mode", 1)])).to_string();
    assert!(e.contains("training_mode = 1"), "{e}");
}

#[test]
fn qlinear_ops_shapes_and_types() {
    let m = model(
        vec![
            node(
                "QLinearMatMul",
                &["a", "s", "za", "b", "sb", "zb", "s", "zy"],
                &["y"],
                vec![],
            ),
            node("MatMulInteger", &["a", "b", "za", "zb"], &["i"], vec![]),
        ],
        vec![
            init("s", scalar_f32(0.1)),
            init("za", Tensor::new(vec![], TensorData::U8(vec![3])).unwrap()),
            init(
                "b",
                Tensor::new(vec![4, 2], TensorData::U8(vec![1, 2, 3, 4, 5, 6, 7, 8])).unwrap(),
            ),
            init("sb", tensor_f32(&[2], &[0.5, 0.25])),
            init(
                "zb",
                Tensor::new(vec![2], TensorData::U8(vec![0, 1])).unwrap(),
            ),
            init("zy", Tensor::new(vec![], TensorData::I8(vec![0])).unwrap()),
        ],
        vec![vinfo("a", UINT8, &[2, 3, 4])],
        &["y", "i"],
    );
    let g = ok(&m);
    assert_eq!(out_shape(&g, 0), [2, 3, 2]);
    assert_eq!(g.value(g.outputs[0]).dtype, DType::I8);
    assert_eq!(g.value(g.outputs[1]).dtype, DType::I32);
    let bad = model(
        vec![node(
            "QLinearMatMul",
            &["a", "s", "za", "b", "s", "za", "s", "za"],
            &["y"],
            vec![],
        )],
        vec![
            init("s", scalar_f32(0.1)),
            init("za", Tensor::new(vec![], TensorData::U8(vec![3])).unwrap()),
        ],
        vec![vinfo("a", INT8, &[2, 4]), vinfo("b", UINT8, &[4, 2])],
        &["y"],
    );
    let e = err(&bad).to_string();
    assert!(e.contains("a_zero_point must have a's type"), "{e}");
}

#[test]
fn interpreter_rejects_bad_inputs() {
    let m = model(
        vec![node("Relu", &["x"], &["y"], vec![])],
        vec![],
        vec![vinfo("x", FLOAT, &[2])],
        &["y"],
    );
    let g = ok(&m);
    assert!(interp::run(&g, &[]).is_err());
    assert!(interp::run(&g, &[tensor_f32(&[3], &[0.0; 3])]).is_err());
    let i8x = Tensor::new(vec![2], TensorData::I8(vec![1, 2])).unwrap();
    let e = interp::run(&g, &[i8x]).unwrap_err().to_string();
    assert!(e.contains("float32") && e.contains("int8"), "{e}");
    let all = interp::run_all(&g, &[tensor_f32(&[2], &[-1.0, 1.0])]).unwrap();
    assert_eq!(all.len(), g.values.len());
    assert!(all.iter().all(|v| v.is_some()));
}
