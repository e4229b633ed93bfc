//! Builders of small ONNX models for the frontend tests.
#![allow(dead_code)]

use systole_compiler::onnx::proto::tensor_shape_proto::{dimension, Dimension};
use systole_compiler::onnx::proto::type_proto;
use systole_compiler::onnx::{
    AttributeProto, AttributeType, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use systole_compiler::tensor::{DType, Tensor, TensorData};

pub fn vinfo(name: &str, elem: i32, dims: &[i64]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(dimension::Value::DimValue(d)),
                            denotation: String::new(),
                        })
                        .collect(),
                }),
            })),
            denotation: String::new(),
        }),
        ..Default::default()
    }
}

pub fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}

pub fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: Some(v),
        ..Default::default()
    }
}

pub fn node(op: &str, ins: &[&str], outs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: ins.iter().map(|s| s.to_string()).collect(),
        output: outs.iter().map(|s| s.to_string()).collect(),
        name: format!("{op}_{}", outs.first().copied().unwrap_or("")),
        op_type: op.into(),
        attribute: attrs,
        ..Default::default()
    }
}

pub fn init(name: &str, t: Tensor) -> TensorProto {
    let mut p = t.to_onnx();
    p.name = name.into();
    p
}

pub fn model(
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    ins: Vec<ValueInfoProto>,
    outs: &[&str],
) -> ModelProto {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(GraphProto {
            node: nodes,
            name: "g".into(),
            initializer: inits,
            input: ins,
            output: outs
                .iter()
                .map(|o| vinfo(o, 0, &[]))
                .map(|mut v| {
                    v.r#type = None;
                    v
                })
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn f32t(shape: &[usize], seed: u32) -> Tensor {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| ((i as u32 * 7 + seed) % 11) as f32 * 0.25 - 1.0)
        .collect();
    Tensor::new(shape.to_vec(), TensorData::F32(data)).unwrap()
}

pub fn i8t(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::new(
        shape.to_vec(),
        TensorData::I8((0..n).map(|i| (i % 7) as i8 - 3).collect()),
    )
    .unwrap()
}

pub fn scalar_f32(v: f32) -> Tensor {
    Tensor::new(vec![], TensorData::F32(vec![v])).unwrap()
}

pub fn scalar_i8(v: i8) -> Tensor {
    Tensor::new(vec![], TensorData::I8(vec![v])).unwrap()
}

/// Small models covering every operator.
pub fn zeros(shape: &[usize], dtype: DType) -> Tensor {
    let n = shape.iter().product();
    let data = match dtype {
        DType::F32 => TensorData::F32(vec![0.0; n]),
        DType::F64 => TensorData::F64(vec![0.0; n]),
        DType::I8 => TensorData::I8(vec![0; n]),
        DType::U8 => TensorData::U8(vec![0; n]),
        DType::I32 => TensorData::I32(vec![0; n]),
        DType::I64 => TensorData::I64(vec![0; n]),
        DType::Bool => TensorData::Bool(vec![false; n]),
    };
    Tensor::new(shape.to_vec(), data).unwrap()
}

pub fn float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f: Some(v),
        ..Default::default()
    }
}

pub fn string(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::String as i32,
        s: Some(v.as_bytes().to_vec()),
        ..Default::default()
    }
}

/// A graph input with a symbolic dimension where `dims` has -1.
pub fn vinfo_sym(name: &str, elem: i32, dims: &[i64]) -> ValueInfoProto {
    let mut v = vinfo(name, elem, dims);
    if let Some(type_proto::Value::TensorType(t)) = v.r#type.as_mut().and_then(|t| t.value.as_mut())
    {
        for d in &mut t.shape.as_mut().unwrap().dim {
            if d.value == Some(dimension::Value::DimValue(-1)) {
                d.value = Some(dimension::Value::DimParam("N".into()));
            }
        }
    }
    v
}

pub fn with_opset(mut m: ModelProto, version: i64) -> ModelProto {
    m.opset_import[0].version = version;
    m
}

pub fn tensor_f32(shape: &[usize], v: &[f32]) -> Tensor {
    Tensor::new(shape.to_vec(), TensorData::F32(v.to_vec())).unwrap()
}

pub fn tensor_i64(v: &[i64]) -> Tensor {
    Tensor::new(vec![v.len()], TensorData::I64(v.to_vec())).unwrap()
}
