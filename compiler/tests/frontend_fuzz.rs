//! The frontend never panics on any `ModelProto`, and the interpreter never panics on what the
//! frontend accepts: random bytes, byte-level mutations of real models and field-level mutations
//! (attributes, dimensions, names, op types, opsets) are decoded, imported and, when the import
//! succeeds and the graph is small, run on zero inputs.

mod frontend_util;

use frontend_util::*;
use proptest::prelude::*;
use proptest::sample::Index;

use systole_compiler::frontend::{import, ImportOptions};
use systole_compiler::interp;
use systole_compiler::onnx::proto::tensor_shape_proto::{dimension, Dimension};
use systole_compiler::onnx::proto::type_proto;
use systole_compiler::onnx::{decode_model, encode, AttributeProto, AttributeType, ModelProto};
use systole_compiler::tensor::{Tensor, TensorData};

fn base_models() -> Vec<ModelProto> {
    let float_cnn = model(
        vec![
            node(
                "Conv",
                &["x", "w", "b"],
                &["c"],
                vec![ints("pads", &[1, 1, 1, 1]), int("group", 1)],
            ),
            node(
                "BatchNormalization",
                &["c", "s", "bb", "m", "v"],
                &["bn"],
                vec![],
            ),
            node("Relu", &["bn"], &["r"], vec![]),
            node(
                "MaxPool",
                &["r"],
                &["p"],
                vec![
                    ints("kernel_shape", &[2, 2]),
                    ints("strides", &[2, 2]),
                    int("ceil_mode", 1),
                ],
            ),
            node(
                "AveragePool",
                &["p"],
                &["ap"],
                vec![
                    ints("kernel_shape", &[2, 2]),
                    ints("pads", &[1, 1, 1, 1]),
                    int("count_include_pad", 1),
                ],
            ),
            node("GlobalAveragePool", &["ap"], &["gp"], vec![]),
            node("Flatten", &["gp"], &["f"], vec![int("axis", 1)]),
            node("Gemm", &["f", "gw", "gb"], &["g"], vec![int("transB", 1)]),
            node("Clip", &["g", "lo", "hi"], &["cl"], vec![]),
            node("Reshape", &["cl", "shape"], &["rs"], vec![]),
            node("Transpose", &["rs"], &["t"], vec![ints("perm", &[1, 0])]),
            node("Unsqueeze", &["t", "axes"], &["u"], vec![]),
            node("Squeeze", &["u", "axes"], &["sq"], vec![]),
            node("Concat", &["sq", "sq"], &["cc"], vec![int("axis", -1)]),
            node("MatMul", &["cc", "mm"], &["mmo"], vec![]),
            node("Sub", &["mmo", "lo"], &["sb"], vec![]),
            node("Div", &["sb", "hi"], &["y"], vec![]),
        ],
        vec![
            init("w", f32t(&[4, 2, 3, 3], 1)),
            init("b", f32t(&[4], 2)),
            init("s", f32t(&[4], 3)),
            init("bb", f32t(&[4], 4)),
            init("m", f32t(&[4], 5)),
            init(
                "v",
                Tensor::new(vec![4], TensorData::F32(vec![1.0, 2.0, 0.5, 4.0])).unwrap(),
            ),
            init("gw", f32t(&[3, 4], 6)),
            init("gb", f32t(&[3], 7)),
            init("lo", scalar_f32(-0.5)),
            init("hi", scalar_f32(2.0)),
            init(
                "shape",
                Tensor::new(vec![2], TensorData::I64(vec![3, -1])).unwrap(),
            ),
            init(
                "axes",
                Tensor::new(vec![1], TensorData::I64(vec![0])).unwrap(),
            ),
            init("mm", f32t(&[6, 2], 8)),
        ],
        vec![vinfo("x", 1, &[1, 2, 6, 6])],
        &["y"],
    );
    let quant = model(
        vec![
            node("QuantizeLinear", &["x", "xs", "xz"], &["q"], vec![]),
            node(
                "QLinearConv",
                &["q", "xs", "xz", "w", "ws", "wz", "ys", "yz", "bias"],
                &["qc"],
                vec![ints("pads", &[1, 1, 1, 1]), ints("strides", &[2, 2])],
            ),
            node("Flatten", &["qc"], &["qf"], vec![]),
            node(
                "QLinearMatMul",
                &["qf", "ys", "yz", "mw", "ms", "mz", "ys", "yz"],
                &["qm"],
                vec![],
            ),
            node("MatMulInteger", &["qm", "mw2", "yz", "mz"], &["mi"], vec![]),
            node("ConvInteger", &["q", "w", "xz", "wz"], &["ci"], vec![]),
            node("DequantizeLinear", &["qm", "ys", "yz"], &["dq"], vec![]),
            node(
                "DequantizeLinear",
                &["w", "ws", "wz"],
                &["dw"],
                vec![int("axis", 0)],
            ),
            node("Identity", &["dq"], &["y"], vec![]),
        ],
        vec![
            init("xs", scalar_f32(0.05)),
            init("xz", scalar_i8(1)),
            init("w", i8t(&[2, 1, 3, 3])),
            init(
                "ws",
                Tensor::new(vec![2], TensorData::F32(vec![0.01, 0.02])).unwrap(),
            ),
            init(
                "wz",
                Tensor::new(vec![2], TensorData::I8(vec![0, 0])).unwrap(),
            ),
            init("ys", scalar_f32(0.1)),
            init("yz", scalar_i8(-2)),
            init(
                "bias",
                Tensor::new(vec![2], TensorData::I32(vec![5, -7])).unwrap(),
            ),
            init("mw", i8t(&[8, 3])),
            init(
                "ms",
                Tensor::new(vec![3], TensorData::F32(vec![0.01, 0.02, 0.03])).unwrap(),
            ),
            init(
                "mz",
                Tensor::new(vec![3], TensorData::I8(vec![0, 1, -1])).unwrap(),
            ),
            init("mw2", i8t(&[3, 3])),
        ],
        vec![vinfo("x", 1, &[1, 1, 4, 4])],
        &["y", "mi", "ci", "dw"],
    );
    let mut v = vec![float_cnn, quant];
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/cases/TFC_2W2A_qcdq/model.onnx"
    );
    if let Ok(m) = systole_compiler::onnx::load_model(fixture) {
        v.push(m);
    }
    v
}

/// Imports; when that works and the graph is small, runs it on zeros. Neither may panic.
fn import_and_run(m: &ModelProto) {
    let Ok(g) = import(m, &ImportOptions::default()) else {
        return;
    };
    let work: Option<usize> = g
        .values
        .iter()
        .map(|v| v.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)))
        .try_fold(0usize, |a, n| a.checked_add(n?));
    let macs_ok = g.nodes.len() < 64;
    if work.is_some_and(|w| w < 200_000) && macs_ok {
        let inputs: Vec<Tensor> = g
            .inputs
            .iter()
            .map(|&i| zeros(&g.value(i).shape, g.value(i).dtype))
            .collect();
        let _ = interp::run(&g, &inputs);
        let _ = interp::run(&g, &[]);
    }
}

const OPS: &[&str] = &[
    "Conv",
    "Gemm",
    "MatMul",
    "Relu",
    "Clip",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Flatten",
    "Reshape",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Identity",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Concat",
    "BatchNormalization",
    "QuantizeLinear",
    "DequantizeLinear",
    "QLinearConv",
    "QLinearMatMul",
    "MatMulInteger",
    "ConvInteger",
    "Constant",
    "Foo",
];

const ATTRS: &[&str] = &[
    "pads",
    "strides",
    "dilations",
    "kernel_shape",
    "group",
    "axis",
    "axes",
    "perm",
    "transA",
    "transB",
    "alpha",
    "beta",
    "ceil_mode",
    "count_include_pad",
    "auto_pad",
    "allowzero",
    "block_size",
    "epsilon",
    "training_mode",
    "min",
    "max",
    "output_dtype",
    "value",
    "value_ints",
];

const INTERESTING: &[i64] = &[
    -9_223_372_036_854_775_808,
    -4_294_967_296,
    -3,
    -2,
    -1,
    0,
    1,
    2,
    3,
    4,
    7,
    1 << 20,
    1 << 33,
    9_223_372_036_854_775_807,
];

/// One field-level mutation, chosen by `kind` and applied at positions picked by the indices.
fn mutate(m: &mut ModelProto, kind: u8, a: Index, b: Index, v: i64) {
    let Some(g) = m.graph.as_mut() else { return };
    match kind % 12 {
        0 if !g.node.is_empty() => {
            let i = a.index(g.node.len());
            g.node[i].op_type = b.get(OPS).to_string();
        }
        1 if !g.node.is_empty() => {
            let i = a.index(g.node.len());
            let name = b.get(ATTRS).to_string();
            let attr = if v % 3 == 0 {
                int(&name, v)
            } else if v % 3 == 1 {
                ints(&name, &[v, v / 2, 1, 0])
            } else {
                AttributeProto {
                    name: name.clone(),
                    r#type: AttributeType::String as i32,
                    s: Some(b"SAME_LOWER".to_vec()),
                    ..Default::default()
                }
            };
            g.node[i].attribute.retain(|x| x.name != name);
            g.node[i].attribute.push(attr);
        }
        2 if !g.node.is_empty() => {
            let i = a.index(g.node.len());
            if !g.node[i].input.is_empty() {
                let j = b.index(g.node[i].input.len());
                let names: Vec<String> = g
                    .node
                    .iter()
                    .flat_map(|n| n.output.clone())
                    .chain(g.initializer.iter().map(|t| t.name.clone()))
                    .collect();
                g.node[i].input[j] = if v % 4 == 0 {
                    String::new()
                } else {
                    b.get(&names).clone()
                };
            }
        }
        3 if !g.node.is_empty() => {
            let i = a.index(g.node.len());
            g.node.remove(i);
        }
        4 if !g.initializer.is_empty() => {
            let i = a.index(g.initializer.len());
            let t = &mut g.initializer[i];
            if !t.dims.is_empty() {
                let j = b.index(t.dims.len());
                t.dims[j] = v;
            } else {
                t.dims.push(v);
            }
        }
        5 if !g.input.is_empty() => {
            let i = a.index(g.input.len());
            if let Some(type_proto::Value::TensorType(tt)) =
                g.input[i].r#type.as_mut().and_then(|t| t.value.as_mut())
            {
                if let Some(s) = tt.shape.as_mut() {
                    if s.dim.is_empty() || v % 5 == 0 {
                        s.dim.push(Dimension {
                            value: Some(dimension::Value::DimParam("N".into())),
                            denotation: String::new(),
                        });
                    } else {
                        let j = b.index(s.dim.len());
                        s.dim[j].value = if v % 7 == 0 {
                            None
                        } else {
                            Some(dimension::Value::DimValue(v.rem_euclid(9)))
                        };
                    }
                }
                if v % 11 == 0 {
                    tt.elem_type = (v.rem_euclid(27)) as i32;
                }
            }
        }
        6 => {
            if let Some(o) = m.opset_import.first_mut() {
                o.version = v.rem_euclid(30);
            }
        }
        7 if !g.node.is_empty() => {
            let i = a.index(g.node.len());
            g.node[i].domain = if v % 2 == 0 {
                "ai.onnx".into()
            } else {
                "custom.domain".into()
            };
        }
        8 if !g.initializer.is_empty() => {
            let i = a.index(g.initializer.len());
            let t = &mut g.initializer[i];
            t.data_type = v.rem_euclid(27) as i32;
        }
        9 if !g.node.is_empty() => {
            let i = a.index(g.node.len());
            let j = b.index(g.node.len());
            g.node.swap(i, j);
        }
        10 if !g.node.is_empty() => {
            let i = a.index(g.node.len());
            if !g.node[i].output.is_empty() {
                g.node[i].output.push(if v % 2 == 0 {
                    String::new()
                } else {
                    "extra".into()
                });
            }
        }
        11 if !g.node.is_empty() => {
            let i = a.index(g.node.len());
            let n = &mut g.node[i];
            if !n.attribute.is_empty() {
                let j = b.index(n.attribute.len());
                let at = &mut n.attribute[j];
                if !at.ints.is_empty() {
                    let k = b.index(at.ints.len());
                    at.ints[k] = v;
                } else if at.i.is_some() {
                    at.i = Some(v);
                } else if at.f.is_some() {
                    at.f = Some(v as f32);
                } else {
                    at.ints.push(v);
                }
            }
        }
        _ => {}
    }
}

fn value() -> impl Strategy<Value = i64> {
    prop_oneof![
        proptest::sample::select(INTERESTING),
        -10i64..40,
        any::<i64>()
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(m) = decode_model(&bytes) {
            import_and_run(&m);
        }
    }

    #[test]
    fn mutated_bytes_never_panic(
        which in 0usize..3,
        edits in proptest::collection::vec((any::<Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let models = base_models();
        let mut bytes = encode(&models[which % models.len()]);
        for (at, byte, kind) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match kind {
                0 => bytes[i] = byte,
                1 => { bytes.remove(i); }
                _ => bytes.insert(i, byte),
            }
        }
        if let Ok(m) = decode_model(&bytes) {
            import_and_run(&m);
        }
    }

    #[test]
    fn mutated_fields_never_panic(
        which in 0usize..3,
        muts in proptest::collection::vec((any::<u8>(), any::<Index>(), any::<Index>(), value()), 1..5),
    ) {
        let models = base_models();
        let mut m = models[which % models.len()].clone();
        for (kind, a, b, v) in muts {
            mutate(&mut m, kind, a, b, v);
        }
        import_and_run(&m);
    }
}

#[test]
fn base_models_import_and_run() {
    for m in base_models() {
        let g = import(&m, &ImportOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        let inputs: Vec<Tensor> = g
            .inputs
            .iter()
            .map(|&i| zeros(&g.value(i).shape, g.value(i).dtype))
            .collect();
        interp::run(&g, &inputs).unwrap();
    }
}
