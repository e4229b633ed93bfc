//! Post-training quantization: the demo float MLP and CNN, calibrated on 100 test images, keep
//! their accuracy through the reference interpreter, compile for the ulx3s preset, and the
//! emulated programs equal the quantized reference bit for bit.

mod emulate_util;

use systole_compiler::frontend::{import, ImportOptions};
use systole_compiler::interp;
use systole_compiler::ir::{ConvAttrs, Graph, Node, Op, PoolAttrs, ValueId};
use systole_compiler::lower;
use systole_compiler::onnx::load_model;
use systole_compiler::ptq::{self, Calib, PtqError, PtqOptions};
use systole_compiler::tensor::{read_npy, DType, Tensor, TensorData};

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/demo");

fn mlp_float() -> Graph {
    let model = load_model(format!("{DEMO}/mlp_float.onnx")).unwrap();
    import(&model, &ImportOptions::default()).unwrap()
}

fn cnn_float() -> Graph {
    let model = load_model(format!("{DEMO}/cnn_float.onnx")).unwrap();
    import(&model, &ImportOptions::default()).unwrap()
}

/// The test images as [1,64] tensors and their labels.
fn images() -> (Vec<Tensor>, Vec<i64>) {
    images_shaped(&[1, 64])
}

/// The test images (rows of 64 floats) as tensors of `shape`, and their labels.
fn images_shaped(shape: &[usize]) -> (Vec<Tensor>, Vec<i64>) {
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
        .map(|r| Tensor::new(shape.to_vec(), TensorData::F32(r.to_vec())).unwrap())
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

    let (acc_emu, agree) = emulate(&q, &xs, &labels);
    eprintln!(
        "PTQ (emulated) {acc_emu:.2}%, same class as the PTQ graph on {agree}/{} images",
        xs.len()
    );
    assert!(
        (acc_float - acc_emu).abs() <= 1.0,
        "float {acc_float}% vs emulated {acc_emu}%"
    );
}

/// Compiles `q` for ulx3s and runs every image on the emulator, checking that its raw output
/// equals the quantized reference (`QModel::run`). Returns the accuracy in percent of the
/// program's output (through `output_from_hw`, which runs any host tail) and on how many images
/// it predicts the same class as the PTQ graph through the interpreter.
fn emulate(q: &Graph, xs: &[Tensor], labels: &[i64]) -> (f64, usize) {
    let arch = systole_arch::ArchConfig::preset("ulx3s").unwrap();
    let (program, qmodel, _) =
        lower::compile(&arch, q).unwrap_or_else(|e| panic!("lowering the PTQ graph: {e}"));
    let mut right = 0;
    let mut agree = 0;
    for (x, &l) in xs.iter().zip(labels) {
        let out = emulate_util::emulate(&program, &arch, &qmodel, x);
        let pred = argmax(&out.to_f32_vec());
        right += usize::from(pred == l);
        let reference = interp::run(q, std::slice::from_ref(x)).unwrap();
        agree += usize::from(pred == argmax(&reference[0].to_f32_vec()));
    }
    (100.0 * right as f64 / xs.len() as f64, agree)
}

/// The demo CNN (Conv 3x3 -> Relu -> MaxPool 2x2 -> Conv 3x3 -> Relu -> GlobalAveragePool ->
/// Flatten -> Gemm): both convolutions are quantized (input, int8 weights per output channel,
/// int32 bias), the pooled value is requantized with the parameters of its input, the
/// GlobalAveragePool (a layer of its own on the accelerator) gets its own quantizer, and the
/// final Gemm is a quantized layer whose float logits (the graph output) stay float.
#[test]
fn cnn_float_ptq_keeps_accuracy() {
    let (g, q, xs, labels) = cnn_ptq();
    check_well_formed(&q);
    // Input, relu1, pool1, relu2.
    let quantized: Vec<&str> = q
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::QuantizeLinear { .. }))
        .map(|n| q.value(n.input(0).unwrap()).name.as_str())
        .collect();
    assert_eq!(
        quantized,
        ["input", "relu1.out", "pool1.out", "relu2.out", "gap.out"]
    );
    let quantizer = |name: &str| {
        q.nodes
            .iter()
            .find(|n| {
                matches!(n.op, Op::QuantizeLinear { .. })
                    && q.value(n.input(0).unwrap()).name == name
            })
            .unwrap()
    };
    // Max pooling reuses the scale and zero point of its input.
    assert_eq!(
        quantizer("pool1.out").inputs[1..],
        quantizer("relu1.out").inputs[1..]
    );
    for (i, (cout, cin)) in [(8, 1), (16, 8)].into_iter().enumerate() {
        let conv = q
            .nodes
            .iter()
            .filter(|n| matches!(n.op, Op::Conv(_)))
            .nth(i)
            .unwrap();
        let dq_of = |v: ValueId| &q.nodes[q.producer(v).unwrap()];
        // The input is a dequantized int8 activation.
        let x = dq_of(conv.input(0).unwrap());
        assert!(matches!(x.op, Op::DequantizeLinear { .. }));
        assert_eq!(q.value(x.input(0).unwrap()).dtype, DType::I8);
        // Weights: int8 per output channel (axis 0), zero point 0.
        let w = dq_of(conv.input(1).unwrap());
        assert_eq!(w.op, Op::DequantizeLinear { axis: 0 });
        let wq = q.constant(w.input(0).unwrap()).unwrap();
        assert_eq!(
            (wq.dtype(), &wq.shape[..]),
            (DType::I8, &[cout, cin, 3, 3][..])
        );
        let ws = q.constant(w.input(1).unwrap()).unwrap().to_f32_vec();
        assert_eq!(ws.len(), cout);
        let wz = q.constant(w.input(2).unwrap()).unwrap();
        assert_eq!(wz.data, TensorData::I8(vec![0; cout]));
        // Bias: int32 with scales x_scale * w_scale, zero point 0.
        let b = dq_of(conv.input(2).unwrap());
        assert_eq!(b.op, Op::DequantizeLinear { axis: 0 });
        assert_eq!(q.constant(b.input(0).unwrap()).unwrap().dtype(), DType::I32);
        let xs_scale = q.constant(x.input(1).unwrap()).unwrap().to_f32_vec()[0];
        let bs = q.constant(b.input(1).unwrap()).unwrap().to_f32_vec();
        let expect: Vec<f32> = ws.iter().map(|&s| xs_scale * s).collect();
        assert_eq!(bs, expect);
        let bz = q.constant(b.input(2).unwrap()).unwrap();
        assert_eq!(bz.data, TensorData::I32(vec![0; cout]));
        let name = format!("conv{}.bias", i + 1);
        let float_bias = g
            .values
            .iter()
            .position(|v| v.name == name)
            .and_then(|id| g.constant(id))
            .unwrap()
            .to_f32_vec();
        let expect: Vec<i32> = float_bias
            .iter()
            .zip(&bs)
            .map(|(&b, &s)| (b / s).round_ties_even() as i32)
            .collect();
        assert_eq!(
            q.constant(b.input(0).unwrap()).unwrap().data,
            TensorData::I32(expect)
        );
    }
    // GlobalAveragePool reads the dequantized relu2; the Gemm reads the dequantized pooled
    // value (through Flatten) and int8 weights per output channel; its output is the float
    // graph output.
    let node = |op: fn(&Op) -> bool| q.nodes.iter().find(|n| op(&n.op)).unwrap();
    let gap = node(|o| matches!(o, Op::GlobalAveragePool));
    assert_eq!(q.value(gap.input(0).unwrap()).name, "relu2.out_dequantized");
    let fc = node(|o| matches!(o, Op::Gemm { .. }));
    let w = &q.nodes[q.producer(fc.input(1).unwrap()).unwrap()];
    assert!(matches!(w.op, Op::DequantizeLinear { .. }));
    assert_eq!(q.constant(w.input(0).unwrap()).unwrap().dtype(), DType::I8);
    assert_eq!(q.value(q.outputs[0]).name, "logits");
    assert_eq!(q.value(q.outputs[0]).dtype, DType::F32);

    let acc_float = accuracy(&g, &xs, &labels);
    let acc_ptq = accuracy(&q, &xs, &labels);
    eprintln!("CNN: float {acc_float:.2}%  PTQ (interpreter) {acc_ptq:.2}%");
    assert!(
        (acc_float - acc_ptq).abs() <= 1.5,
        "float {acc_float}% vs PTQ {acc_ptq}%"
    );
}

/// The demo CNN quantized with the default options: (float graph, PTQ graph, the 297 test
/// images as [1,1,8,8] tensors, labels); calibrated on the first 100 images.
fn cnn_ptq() -> (Graph, Graph, Vec<Tensor>, Vec<i64>) {
    let g = cnn_float();
    let (xs, labels) = images_shaped(&[1, 1, 8, 8]);
    let q = ptq::quantize(&g, &xs[..100], &PtqOptions::default()).unwrap();
    (g, q, xs, labels)
}

/// The PTQ CNN compiles for ulx3s (both convolutions and the pooling on the array, the float
/// tail from GlobalAveragePool on the host), the emulator equals the quantized reference, and
/// the emulated accuracy stays within 1.5 points of the float model's.
#[test]
fn cnn_float_ptq_compiles_and_emulates_exactly() {
    let (g, q, xs, labels) = cnn_ptq();
    let acc_float = accuracy(&g, &xs, &labels);
    let acc_ptq = accuracy(&q, &xs, &labels);
    let (acc_emu, agree) = emulate(&q, &xs, &labels);
    eprintln!(
        "CNN: float {acc_float:.2}%  PTQ (interpreter) {acc_ptq:.2}%  PTQ (emulated) \
         {acc_emu:.2}%, same class as the PTQ graph on {agree}/{} images",
        xs.len()
    );
    assert!(
        (acc_float - acc_emu).abs() <= 1.5,
        "float {acc_float}% vs emulated {acc_emu}%"
    );
}

// ---------------------------------------------------------------------------------------------
// Small synthetic graphs

struct Builder {
    g: Graph,
    seed: u64,
}

impl Builder {
    fn new() -> Builder {
        Builder {
            g: Graph {
                name: "synthetic".into(),
                opset: 17,
                ..Default::default()
            },
            seed: 0x2545_f491_4f6c_dd1d,
        }
    }

    /// Uniform in [-1, 1).
    fn rand(&mut self) -> f32 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        (self.seed >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn rands(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.rand()).collect()
    }

    fn input(&mut self, name: &str, shape: &[usize]) -> ValueId {
        let id = self.g.add_value(name, shape.to_vec(), DType::F32);
        self.g.inputs.push(id);
        id
    }

    fn cst(&mut self, name: &str, shape: &[usize], v: Vec<f32>) -> ValueId {
        let id = self.g.add_value(name, shape.to_vec(), DType::F32);
        self.g
            .consts
            .insert(id, Tensor::new(shape.to_vec(), TensorData::F32(v)).unwrap());
        id
    }

    fn node(&mut self, op: Op, inputs: &[Option<ValueId>], out: &str, shape: &[usize]) -> ValueId {
        let o = self.g.add_value(out, shape.to_vec(), DType::F32);
        self.g.nodes.push(Node {
            name: format!("{out}_node"),
            op,
            inputs: inputs.to_vec(),
            outputs: vec![o],
        });
        o
    }

    fn samples(&mut self, n: usize, shape: &[usize], scale: f32) -> Vec<Tensor> {
        let numel = shape.iter().product();
        (0..n)
            .map(|_| {
                let v = self.rands(numel).into_iter().map(|x| x * scale).collect();
                Tensor::new(shape.to_vec(), TensorData::F32(v)).unwrap()
            })
            .collect()
    }
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0f32, |m, x| m.max(x.abs()))
}

/// PTQ of `g` stays close to the float graph, compiles for ulx3s, and the emulator equals the
/// quantized reference; the program's output equals the PTQ graph's up to float rounding.
fn check_end_to_end(g: &Graph, q: &Graph, xs: &[Tensor], tol: f32) {
    check_well_formed(q);
    let arch = systole_arch::ArchConfig::preset("ulx3s").unwrap();
    let (program, qmodel, _) =
        lower::compile(&arch, q).unwrap_or_else(|e| panic!("lowering the PTQ graph: {e}\n{q}"));
    for x in xs {
        let f = interp::run(g, std::slice::from_ref(x)).unwrap()[0].to_f32_vec();
        let p = interp::run(q, std::slice::from_ref(x)).unwrap()[0].to_f32_vec();
        let err = max_abs(&f.iter().zip(&p).map(|(a, b)| a - b).collect::<Vec<_>>());
        assert!(
            err <= tol * max_abs(&f),
            "PTQ error {err} for outputs up to {}",
            max_abs(&f)
        );
        let e = emulate_util::emulate(&program, &arch, &qmodel, x).to_f32_vec();
        let err = max_abs(&e.iter().zip(&p).map(|(a, b)| a - b).collect::<Vec<_>>());
        assert!(
            err <= 1e-4 * max_abs(&p).max(1.0),
            "program {e:?} vs PTQ graph {p:?}"
        );
    }
}

/// Gemm with transB, alpha, beta and C biases: C moves into an Add, alpha into the weights,
/// weights are quantized per row (axis 0) under transB.
#[test]
fn gemm_bias_alpha_beta_trans_b() {
    let mut b = Builder::new();
    let x = b.input("x", &[1, 16]);
    let w1v = b.rands(8 * 16);
    let w1 = b.cst("w1", &[8, 16], w1v);
    let c1v = b.rands(8);
    let c1 = b.cst("c1", &[8], c1v);
    let gemm1 = Op::Gemm {
        alpha: 1.0,
        beta: 1.0,
        trans_a: false,
        trans_b: true,
    };
    let h = b.node(gemm1, &[Some(x), Some(w1), Some(c1)], "h", &[1, 8]);
    let r = b.node(Op::Relu, &[Some(h)], "r", &[1, 8]);
    let w2v = b.rands(8 * 4);
    let w2 = b.cst("w2", &[8, 4], w2v);
    let c2v = b.rands(4);
    let c2 = b.cst("c2", &[1, 4], c2v);
    let gemm2 = Op::Gemm {
        alpha: 0.5,
        beta: 2.0,
        trans_a: false,
        trans_b: false,
    };
    let y = b.node(gemm2, &[Some(r), Some(w2), Some(c2)], "y", &[1, 4]);
    b.g.outputs.push(y);
    let xs = b.samples(64, &[1, 16], 2.0);
    let g = b.g;
    let q = ptq::quantize(&g, &xs, &PtqOptions::default()).unwrap();
    for n in &q.nodes {
        if let Op::Gemm { alpha, .. } = n.op {
            assert_eq!(alpha, 1.0);
            assert_eq!(n.input(2), None, "Gemm '{}' still has C", n.name);
        }
    }
    // The first layer's weights: per row under transB.
    let dq = q
        .nodes
        .iter()
        .find(|n| {
            matches!(n.op, Op::DequantizeLinear { .. }) && q.value(n.outputs[0]).shape == [8, 16]
        })
        .unwrap();
    assert_eq!(dq.op, Op::DequantizeLinear { axis: 0 });
    assert_eq!(q.value(dq.input(1).unwrap()).shape, vec![8]);
    assert_eq!(count(&q, |o| matches!(o, Op::Add)), 2);
    assert_eq!(count(&q, |o| matches!(o, Op::QuantizeLinear { .. })), 2);
    check_end_to_end(&g, &q, &xs, 0.05);
}

/// Float pre-processing (Sub) stays before the input quantizer, shape-only operators pass
/// through, BatchNormalization and Clip join the epilogue; uint8 activations.
#[test]
fn preprocessing_batchnorm_clip_uint8() {
    let mut b = Builder::new();
    let x = b.input("x", &[1, 2, 8]);
    let mean = b.cst("mean", &[1, 2, 8], vec![0.25; 16]);
    let s = b.node(Op::Sub, &[Some(x), Some(mean)], "centred", &[1, 2, 8]);
    let f = b.node(Op::Flatten { axis: 1 }, &[Some(s)], "flat", &[1, 16]);
    let w1v = b.rands(16 * 8);
    let w1 = b.cst("w1", &[16, 8], w1v);
    let m1 = b.node(Op::MatMul, &[Some(f), Some(w1)], "m1", &[1, 8]);
    let bn: Vec<ValueId> = ["bn_scale", "bn_bias", "bn_mean", "bn_var"]
        .iter()
        .map(|name| {
            let v = b.rands(8);
            let v = if name.ends_with("var") {
                v.iter().map(|x| x.abs() + 0.5).collect()
            } else {
                v
            };
            b.cst(name, &[8], v)
        })
        .collect();
    let mut ins = vec![Some(m1)];
    ins.extend(bn.iter().map(|&v| Some(v)));
    let n1 = b.node(
        Op::BatchNormalization { epsilon: 1e-5 },
        &ins,
        "bn",
        &[1, 8],
    );
    let lo = b.cst("lo", &[], vec![0.0]);
    let hi = b.cst("hi", &[], vec![6.0]);
    let c = b.node(Op::Clip, &[Some(n1), Some(lo), Some(hi)], "clip", &[1, 8]);
    let w2v = b.rands(8 * 4);
    let w2 = b.cst("w2", &[8, 4], w2v);
    let m2 = b.node(Op::MatMul, &[Some(c), Some(w2)], "m2", &[1, 4]);
    let bias = b.cst("bias", &[4], vec![0.1, -0.2, 0.3, -0.4]);
    let y = b.node(Op::Add, &[Some(m2), Some(bias)], "y", &[1, 4]);
    b.g.outputs.push(y);
    let xs = b.samples(64, &[1, 2, 8], 1.5);
    let g = b.g;
    let opts = PtqOptions {
        activation_signed: false,
        ..Default::default()
    };
    let q = ptq::quantize(&g, &xs, &opts).unwrap();
    let quantizers: Vec<&Node> = q
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::QuantizeLinear { .. }))
        .collect();
    assert_eq!(quantizers.len(), 2);
    let names: Vec<&str> = quantizers
        .iter()
        .map(|n| q.value(n.input(0).unwrap()).name.as_str())
        .collect();
    assert_eq!(names, ["centred", "clip"]);
    for n in &quantizers {
        assert_eq!(q.value(n.outputs[0]).dtype, DType::U8);
    }
    check_end_to_end(&g, &q, &xs, 0.05);
}

/// The scale and zero point of the quantizer of value `name`.
fn qparams_of(q: &Graph, name: &str) -> (f32, i32) {
    let n = q
        .nodes
        .iter()
        .find(|n| {
            matches!(n.op, Op::QuantizeLinear { .. }) && q.value(n.input(0).unwrap()).name == name
        })
        .unwrap_or_else(|| panic!("no quantizer of '{name}'"));
    let s = q.constant(n.input(1).unwrap()).unwrap().to_f32_vec();
    let z = q.constant(n.input(2).unwrap()).unwrap().to_f32_vec();
    (s[0], z[0] as i32)
}

/// x -> MatMul -> y with inputs 0, 1, ..., 399 spread over 100 samples (negated on odd ones).
fn ramp_graph() -> (Graph, Vec<Tensor>) {
    let mut b = Builder::new();
    let x = b.input("x", &[1, 4]);
    let w = b.cst("w", &[4, 2], vec![1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0]);
    let y = b.node(Op::MatMul, &[Some(x), Some(w)], "y", &[1, 2]);
    b.g.outputs.push(y);
    let xs = (0..100)
        .map(|i| {
            let v = (0..4)
                .map(|j| {
                    let k = (4 * i + j) as f32;
                    if k as usize % 2 == 1 {
                        -k
                    } else {
                        k
                    }
                })
                .collect();
            Tensor::new(vec![1, 4], TensorData::F32(v)).unwrap()
        })
        .collect();
    (b.g, xs)
}

#[test]
fn calibration_rules() {
    let (g, xs) = ramp_graph();
    // MinMax: [-399, 398].
    let q = ptq::quantize(&g, &xs, &PtqOptions::default()).unwrap();
    assert_eq!(
        qparams_of(&q, "x"),
        ptq::activation_qparams(-399.0, 398.0, true)
    );
    // Percentile 99 of |x| in {0..399}: nearest rank ceil(0.99 * 400) = 396 -> 395.
    let opts = PtqOptions {
        method: Calib::Percentile(99.0),
        activation_signed: true,
    };
    let q = ptq::quantize(&g, &xs, &opts).unwrap();
    assert_eq!(
        qparams_of(&q, "x"),
        ptq::activation_qparams(-395.0, 395.0, true)
    );
    // uint8.
    let opts = PtqOptions {
        method: Calib::MinMax,
        activation_signed: false,
    };
    let q = ptq::quantize(&g, &xs, &opts).unwrap();
    assert_eq!(
        qparams_of(&q, "x"),
        ptq::activation_qparams(-399.0, 398.0, false)
    );
}

#[test]
fn scale_and_zero_point_follow_onnxruntime() {
    // [-1, 3]: scale 4/255, zero point round(-128 + 63.75) = -64 (int8), 64 (uint8).
    assert_eq!(ptq::activation_qparams(-1.0, 3.0, true), (4.0 / 255.0, -64));
    assert_eq!(ptq::activation_qparams(-1.0, 3.0, false), (4.0 / 255.0, 64));
    // The range is widened to include 0.
    assert_eq!(ptq::activation_qparams(0.5, 2.0, true), (2.0 / 255.0, -128));
    assert_eq!(ptq::activation_qparams(0.5, 2.0, false), (2.0 / 255.0, 0));
    assert_eq!(
        ptq::activation_qparams(-2.0, -0.5, true),
        (2.0 / 255.0, 127)
    );
    assert_eq!(
        ptq::activation_qparams(-2.0, -0.5, false),
        (2.0 / 255.0, 255)
    );
    // A zero range: scale 1, zero point 0 (as onnxruntime).
    assert_eq!(ptq::activation_qparams(0.0, 0.0, true), (1.0, 0));
    // Scale 0.5 (a range of 127.5): -128 + 0.5/0.5 = -127 exactly; -128 + 0.75/0.5 = -126.5
    // is a tie and rounds to even, -126 (-127 in uint8 terms: 1.5 -> 2).
    assert_eq!(ptq::activation_qparams(-0.5, 127.0, true), (0.5, -127));
    assert_eq!(ptq::activation_qparams(-0.75, 126.75, true), (0.5, -126));
    assert_eq!(ptq::activation_qparams(-0.75, 126.75, false), (0.5, 2));

    // Weights: absmax / 127, round half to even, clamp to [-127, 127].
    assert_eq!(ptq::weight_scale(127.0), 1.0);
    assert_eq!(ptq::weight_scale(0.0), 1.0);
    assert_eq!(ptq::weight_scale(0.3), 0.3f32 / 127.0);
    assert_eq!(ptq::quantize_weight(0.5, 1.0), 0);
    assert_eq!(ptq::quantize_weight(1.5, 1.0), 2);
    assert_eq!(ptq::quantize_weight(-2.5, 1.0), -2);
    assert_eq!(ptq::quantize_weight(-300.0, 1.0), -127);
    let s = ptq::weight_scale(0.3);
    assert_eq!(ptq::quantize_weight(0.3, s), 127);
    assert_eq!(ptq::quantize_weight(-0.3, s), -127);
}

#[test]
fn bad_calibration_and_options() {
    let (g, xs) = ramp_graph();
    let opts = PtqOptions::default();
    assert_eq!(
        ptq::quantize(&g, &[], &opts).unwrap_err(),
        PtqError::NoCalibration
    );
    let wrong = Tensor::new(vec![4], TensorData::F32(vec![0.0; 4])).unwrap();
    let e = ptq::quantize(&g, &[xs[0].clone(), wrong], &opts).unwrap_err();
    assert!(matches!(e, PtqError::CalibInput { index: 1, .. }), "{e}");
    let nan = Tensor::new(vec![1, 4], TensorData::F32(vec![f32::NAN; 4])).unwrap();
    let e = ptq::quantize(&g, &[nan], &opts).unwrap_err();
    assert!(matches!(e, PtqError::Value { .. }), "{e}");
    for p in [0.0, -1.0, 100.5, f32::NAN] {
        let opts = PtqOptions {
            method: Calib::Percentile(p),
            activation_signed: true,
        };
        let e = ptq::quantize(&g, &xs, &opts).unwrap_err();
        assert!(matches!(e, PtqError::Options(_)), "{e}");
    }
}

/// An already quantized QDQ model gets no further quantizers.
#[test]
fn qdq_model_is_left_as_it_is() {
    let model = load_model(format!("{DEMO}/mlp_qdq.onnx")).unwrap();
    let g = import(&model, &ImportOptions::default()).unwrap();
    let (xs, _) = images();
    let q = ptq::quantize(&g, &xs[..10], &PtqOptions::default()).unwrap();
    assert_eq!(q.nodes, g.nodes);
}

/// The other calibration settings on the demo MLP: accuracy through the interpreter, and the
/// uint8 variant on the emulator.
#[test]
fn mlp_float_percentile_and_uint8() {
    let g = mlp_float();
    let (xs, labels) = images();
    let acc_float = accuracy(&g, &xs, &labels);
    for (method, signed) in [
        (Calib::Percentile(99.99), true),
        (Calib::Percentile(99.9), true),
        (Calib::MinMax, false),
    ] {
        let opts = PtqOptions {
            method,
            activation_signed: signed,
        };
        let q = ptq::quantize(&g, &xs[..100], &opts).unwrap();
        let acc = accuracy(&q, &xs, &labels);
        eprintln!("{opts:?}: {acc:.2}% (float {acc_float:.2}%)");
        assert!((acc - acc_float).abs() <= 1.0, "{opts:?}: {acc}%");
        if !signed {
            check_end_to_end(&g, &q, &xs[..20], 0.2);
        }
    }
}

/// max |a - b| over max |a|.
fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    let d: Vec<f32> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    max_abs(&d) / max_abs(a)
}

/// A strided, padded convolution without bias, BatchNormalization and Relu in its epilogue,
/// then a dense layer on its flattened image: weights per output channel on axis 0 for the
/// convolution, axis 1 for the MatMul; no bias to quantize.
#[test]
fn conv_without_bias_batchnorm_then_dense() {
    let (g, xs) = conv_dense_graph();
    let q = ptq::quantize(&g, &xs, &PtqOptions::default()).unwrap();
    check_well_formed(&q);
    let quantized: Vec<&str> = q
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::QuantizeLinear { .. }))
        .map(|n| q.value(n.input(0).unwrap()).name.as_str())
        .collect();
    assert_eq!(quantized, ["x", "r"]);
    let axes: Vec<(Vec<usize>, Op)> = q
        .nodes
        .iter()
        .filter(|n| q.value(n.outputs[0]).name.starts_with('w'))
        .map(|n| (q.value(n.outputs[0]).shape.clone(), n.op.clone()))
        .collect();
    assert_eq!(
        axes,
        [
            (vec![4, 2, 3, 3], Op::DequantizeLinear { axis: 0 }),
            (vec![36, 5], Op::DequantizeLinear { axis: 1 })
        ]
    );
    let conv = q
        .nodes
        .iter()
        .find(|n| matches!(n.op, Op::Conv(_)))
        .unwrap();
    assert_eq!(conv.inputs.len(), 2);
    for x in &xs {
        let f = interp::run(&g, std::slice::from_ref(x)).unwrap()[0].to_f32_vec();
        let p = interp::run(&q, std::slice::from_ref(x)).unwrap()[0].to_f32_vec();
        assert!(rel_err(&f, &p) <= 0.05, "float {f:?} vs PTQ {p:?}");
    }
}

/// x [1,2,6,6] -> Conv 3x3 stride 2 pad 1 (4 channels, no bias) -> BatchNormalization -> Relu
/// -> Flatten -> MatMul [36,5], with 64 calibration samples.
fn conv_dense_graph() -> (Graph, Vec<Tensor>) {
    let mut b = Builder::new();
    let x = b.input("x", &[1, 2, 6, 6]);
    let wv = b.rands(4 * 2 * 3 * 3);
    let w = b.cst("w", &[4, 2, 3, 3], wv);
    let attrs = ConvAttrs {
        kernel: [3, 3],
        strides: [2, 2],
        pads: [1, 1, 1, 1],
        dilations: [1, 1],
        group: 1,
    };
    let c = b.node(Op::Conv(attrs), &[Some(x), Some(w)], "c", &[1, 4, 3, 3]);
    let bn: Vec<Option<ValueId>> = ["bn_scale", "bn_bias", "bn_mean", "bn_var"]
        .iter()
        .map(|name| {
            let v: Vec<f32> = b.rands(4);
            let v = if name.ends_with("var") {
                v.iter().map(|x| x.abs() + 0.5).collect()
            } else {
                v
            };
            Some(b.cst(name, &[4], v))
        })
        .collect();
    let mut ins = vec![Some(c)];
    ins.extend(bn);
    let n = b.node(
        Op::BatchNormalization { epsilon: 1e-5 },
        &ins,
        "bn",
        &[1, 4, 3, 3],
    );
    let r = b.node(Op::Relu, &[Some(n)], "r", &[1, 4, 3, 3]);
    let f = b.node(Op::Flatten { axis: 1 }, &[Some(r)], "flat", &[1, 36]);
    let w2v = b.rands(36 * 5);
    let w2 = b.cst("w2", &[36, 5], w2v);
    let y = b.node(Op::MatMul, &[Some(f), Some(w2)], "y", &[1, 5]);
    b.g.outputs.push(y);
    let xs = b.samples(64, &[1, 2, 6, 6], 1.0);
    (b.g, xs)
}

#[test]
fn conv_without_bias_batchnorm_then_dense_end_to_end() {
    let (g, xs) = conv_dense_graph();
    let q = ptq::quantize(&g, &xs, &PtqOptions::default()).unwrap();
    check_end_to_end(&g, &q, &xs, 0.05);
}

/// A layer after an operator the lowering does not run (here Transpose) is part of the host's
/// float tail: it stays float, and the graph compiles with that tail.
#[test]
fn layers_after_an_unlowered_operator_stay_float() {
    let mut b = Builder::new();
    let x = b.input("x", &[1, 16]);
    let w1v = b.rands(16 * 8);
    let w1 = b.cst("w1", &[16, 8], w1v);
    let h = b.node(Op::MatMul, &[Some(x), Some(w1)], "h", &[1, 8]);
    let r = b.node(Op::Relu, &[Some(h)], "r", &[1, 8]);
    let t = b.node(Op::Transpose { perm: vec![0, 1] }, &[Some(r)], "t", &[1, 8]);
    let w2v = b.rands(8 * 4);
    let w2 = b.cst("w2", &[8, 4], w2v);
    let c2v = b.rands(4);
    let c2 = b.cst("c2", &[4], c2v);
    let gemm = Op::Gemm {
        alpha: 0.5,
        beta: 2.0,
        trans_a: false,
        trans_b: false,
    };
    let y = b.node(gemm.clone(), &[Some(t), Some(w2), Some(c2)], "y", &[1, 4]);
    b.g.outputs.push(y);
    let xs = b.samples(64, &[1, 16], 2.0);
    let g = b.g;
    let q = ptq::quantize(&g, &xs, &PtqOptions::default()).unwrap();
    assert_eq!(count(&q, |o| matches!(o, Op::QuantizeLinear { .. })), 2);
    // The Gemm is untouched: alpha, beta and C stay, its weights are float.
    let n = q.nodes.last().unwrap();
    assert_eq!(n.op, gemm);
    assert_eq!(q.constant(n.input(1).unwrap()).unwrap().dtype(), DType::F32);
    assert!(q.constant(n.input(2).unwrap()).is_some());
    check_end_to_end(&g, &q, &xs, 0.05);
}

/// Grouped and dilated convolutions (block-diagonal weights on the array), a depthwise one,
/// then average pooling (a window-sum layer, whose epilogue takes the Relu after it).
#[test]
fn grouped_dilated_depthwise_conv_avgpool_relu_end_to_end() {
    let mut b = Builder::new();
    let x = b.input("x", &[1, 4, 9, 9]);
    let conv = |b: &mut Builder, x, name: &str, cin_g: usize, cout: usize, group, dil, shape| {
        let wv = b.rands(cout * cin_g * 9);
        let w = b.cst(&format!("{name}_w"), &[cout, cin_g, 3, 3], wv);
        let bv = b.rands(cout);
        let bias = b.cst(&format!("{name}_b"), &[cout], bv);
        let attrs = ConvAttrs {
            kernel: [3, 3],
            strides: [1, 1],
            pads: [1, 1, 1, 1],
            dilations: [dil, dil],
            group,
        };
        b.node(
            Op::Conv(attrs),
            &[Some(x), Some(w), Some(bias)],
            name,
            shape,
        )
    };
    // 2 groups of 2 -> 6 channels (3 per group), dilation 2: 9x9 -> 7x7.
    let c1 = conv(&mut b, x, "grouped", 2, 6, 2, 2, &[1, 6, 7, 7]);
    let r1 = b.node(Op::Relu, &[Some(c1)], "r1", &[1, 6, 7, 7]);
    // Depthwise: 6 groups of one channel.
    let c2 = conv(&mut b, r1, "depthwise", 1, 6, 6, 1, &[1, 6, 7, 7]);
    let pool = PoolAttrs {
        kernel: [3, 3],
        strides: [2, 2],
        pads: [1, 1, 1, 1],
        dilations: [1, 1],
        ceil_mode: false,
        count_include_pad: true,
    };
    let p = b.node(Op::AveragePool(pool), &[Some(c2)], "avg", &[1, 6, 4, 4]);
    let y = b.node(Op::Relu, &[Some(p)], "y", &[1, 6, 4, 4]);
    b.g.outputs.push(y);
    let xs = b.samples(32, &[1, 4, 9, 9], 1.0);
    let q = ptq::quantize(&b.g, &xs, &PtqOptions::default()).unwrap();
    check_end_to_end(&b.g, &q, &xs, 0.05);
    // Every operator ran on the accelerator: nothing is left to the host.
    let arch = systole_arch::ArchConfig::preset("ulx3s").unwrap();
    let (_, qmodel, _) = lower::compile(&arch, &q).unwrap();
    let names: Vec<&str> = qmodel.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names[2].starts_with("avg"), "{names:?}");
    assert!(qmodel.output.host.is_none());
}

/// Average pooling whose divisor differs between windows (padding not counted): one layer
/// scale (s / lcm of the divisors) and a multiplier per output pixel (lcm / its divisor).
#[test]
fn average_pooling_with_per_pixel_divisors_end_to_end() {
    let mut b = Builder::new();
    let x = b.input("x", &[1, 3, 7, 7]);
    let pool = PoolAttrs {
        kernel: [3, 3],
        strides: [2, 2],
        pads: [1, 1, 1, 1],
        dilations: [1, 1],
        ceil_mode: false,
        count_include_pad: false,
    };
    let y = b.node(Op::AveragePool(pool), &[Some(x)], "avg", &[1, 3, 4, 4]);
    b.g.outputs.push(y);
    let xs = b.samples(16, &[1, 3, 7, 7], 1.0);
    let q = ptq::quantize(&b.g, &xs, &PtqOptions::default()).unwrap();
    check_end_to_end(&b.g, &q, &xs, 0.03);
    let arch = systole_arch::ArchConfig::preset("ulx3s").unwrap();
    let (_, qmodel, _) = lower::compile(&arch, &q).unwrap();
    // Corner windows hold 4 inputs, edges 6, the inside 9: lcm 36.
    let rm = qmodel.layers[0]
        .row_mul
        .as_ref()
        .expect("per-pixel multipliers");
    assert_eq!(rm[0], 9);
    assert_eq!(rm[1], 6);
    assert_eq!(rm[5], 4);
}
