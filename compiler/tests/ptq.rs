//! Post-training quantization: the demo float MLP, calibrated on 100 test images, keeps its
//! accuracy through the reference interpreter, compiles for the ulx3s preset, and the emulated
//! program equals the quantized reference bit for bit.

use systole_compiler::frontend::{import, ImportOptions};
use systole_compiler::interp;
use systole_compiler::ir::{Graph, Op};
use systole_compiler::lower;
use systole_compiler::onnx::load_model;
use systole_compiler::ptq::{self, PtqOptions};
use systole_compiler::qir::QData;
use systole_compiler::tensor::{read_npy, DType, Tensor, TensorData};
use systole_emulator::IoData;

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/demo");

fn mlp_float() -> Graph {
    let model = load_model(format!("{DEMO}/mlp_float.onnx")).unwrap();
    import(&model, &ImportOptions::default()).unwrap()
}

/// The test images as [1,64] tensors and their labels.
fn images() -> (Vec<Tensor>, Vec<i64>) {
    let x = read_npy(format!("{DEMO}/test_images.npy")).unwrap();
    let y = read_npy(format!("{DEMO}/test_labels.npy")).unwrap();
    assert_eq!(x.shape, vec![297, 64]);
    let TensorData::F32(xv) = &x.data else {
        panic!("images are {}", x.dtype())
    };
    let TensorData::I64(labels) = y.data else {
        panic!("labels are {}", y.dtype())
    };
    let rows = xv
        .chunks(64)
        .map(|r| Tensor::new(vec![1, 64], TensorData::F32(r.to_vec())).unwrap())
        .collect();
    (rows, labels)
}

fn argmax(v: &[f32]) -> i64 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as i64
}

/// Accuracy in percent of `g` through the reference interpreter.
fn accuracy(g: &Graph, xs: &[Tensor], labels: &[i64]) -> f64 {
    let right = xs
        .iter()
        .zip(labels)
        .filter(|(x, &l)| {
            let out = interp::run(g, std::slice::from_ref(*x)).unwrap();
            argmax(&out[0].to_f32_vec()) == l
        })
        .count();
    100.0 * right as f64 / xs.len() as f64
}

fn count(g: &Graph, f: impl Fn(&Op) -> bool) -> usize {
    g.nodes.iter().filter(|n| f(&n.op)).count()
}

/// Every value referenced once as an output at most, inputs computed before use, names unique.
fn check_well_formed(g: &Graph) {
    let mut defined = vec![false; g.values.len()];
    for &i in &g.inputs {
        defined[i] = true;
    }
    for &c in g.consts.keys() {
        defined[c] = true;
    }
    for n in &g.nodes {
        for &i in n.inputs.iter().flatten() {
            assert!(
                defined[i],
                "node '{}' reads value {i} before it is computed",
                n.name
            );
        }
        for &o in &n.outputs {
            assert!(!defined[o], "value {o} is defined twice");
            defined[o] = true;
        }
    }
    let mut names: Vec<&str> = g.values.iter().map(|v| v.name.as_str()).collect();
    names.sort();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len(), "value names are not unique");
    let mut nodes: Vec<&str> = g.nodes.iter().map(|n| n.name.as_str()).collect();
    nodes.sort();
    let before = nodes.len();
    nodes.dedup();
    assert_eq!(before, nodes.len(), "node names are not unique");
}

#[test]
fn mlp_float_ptq_keeps_accuracy_compiles_and_emulates_exactly() {
    let g = mlp_float();
    let (xs, labels) = images();
    let q = ptq::quantize(&g, &xs[..100], &PtqOptions::default()).unwrap();
    check_well_formed(&q);
    // Three layers: input Q/DQ, two hidden boundaries; the logits stay float.
    assert_eq!(count(&q, |o| matches!(o, Op::QuantizeLinear { .. })), 3);
    assert_eq!(
        count(&q, |o| matches!(o, Op::DequantizeLinear { .. })),
        3 + 3
    );
    assert_eq!(q.value(q.outputs[0]).dtype, DType::F32);
    assert_eq!(q.value(q.outputs[0]).name, g.value(g.outputs[0]).name);

    let acc_float = accuracy(&g, &xs, &labels);
    let acc_ptq = accuracy(&q, &xs, &labels);
    eprintln!("float {acc_float:.2}%  PTQ (interpreter) {acc_ptq:.2}%");
    assert!(
        (acc_float - acc_ptq).abs() <= 1.0,
        "float {acc_float}% vs PTQ {acc_ptq}%"
    );

    let arch = systole_arch::ArchConfig::preset("ulx3s").unwrap();
    let (program, qmodel, _) =
        lower::compile(&arch, &q).unwrap_or_else(|e| panic!("lowering the PTQ graph: {e}"));
    let mut right = 0;
    let mut agree = 0;
    for (x, &l) in xs.iter().zip(&labels) {
        let hw = lower::input_to_hw(&qmodel.input, x).unwrap();
        let r = systole_emulator::run(
            &program,
            &arch,
            &[IoData::I8(hw.clone())],
            &Default::default(),
        )
        .unwrap();
        let raw = match &r.outputs[0] {
            IoData::I8(v) => QData::I8(v.clone()),
            IoData::I32(v) => QData::I32(v.clone()),
            IoData::U8(v) => QData::I8(v.iter().map(|&b| b as i8).collect()),
        };
        assert_eq!(raw, qmodel.run(&hw), "emulator vs quantized reference");
        let out = lower::output_from_hw(&qmodel.output, qmodel.m, &raw).unwrap();
        let logits = out.to_f32_vec();
        let pred = argmax(&logits);
        right += usize::from(pred == l);
        let reference = interp::run(&q, std::slice::from_ref(x)).unwrap();
        agree += usize::from(pred == argmax(&reference[0].to_f32_vec()));
    }
    let acc_emu = 100.0 * right as f64 / xs.len() as f64;
    eprintln!(
        "PTQ (emulated) {acc_emu:.2}%, same class as the PTQ graph on {agree}/{} images",
        xs.len()
    );
    assert!(
        (acc_float - acc_emu).abs() <= 1.0,
        "float {acc_float}% vs emulated {acc_emu}%"
    );
}
