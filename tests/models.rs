//! Compiling real models end to end: conformance cases pass `systole check` exactly, accuracy
//! runs print the contract line, and bad models fail with one clear line and no output file.
//!
//! Needs ../shared/fixtures (real models from other projects) and target/onnx-node-tests
//! (scripts/fetch_onnx_node_tests.sh): the tests fail, not skip, when either is missing.

mod common;
use common::*;
use std::path::Path;
use std::process::Output;

/// Runs `systole check` and asserts every case passes; returns its table.
fn assert_check_passes(cases: &[String], arch: &str) -> String {
    let mut args = vec!["check", "--arch", arch];
    args.extend(cases.iter().map(|s| s.as_str()));
    let o = systole(&args);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let rows: Vec<&str> = t.lines().skip(1).collect();
    assert_eq!(rows.len(), cases.len(), "{t}");
    for r in rows {
        let cols: Vec<&str> = r.split_whitespace().collect();
        // "pass~": a float tail on the host, compared within the default 1e-5 tolerance.
        assert!(cols[1] == "pass" || cols[1] == "pass~", "{r}");
        if cols[1] == "pass" {
            assert_eq!(cols[3], "0.000000", "not exact: {r}");
        } else {
            assert!(cols[3].parse::<f64>().unwrap() <= 1e-5, "{r}");
        }
    }
    t
}

/// An arch file in `dir`: the ulx3s preset with each `(from, to)` line replaced.
fn ulx3s_variant(dir: &Path, name: &str, edits: &[(&str, &str)]) -> String {
    let base = text(&systole(&["arch", "show", "ulx3s"]));
    let mut toml: String = base
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    for (from, to) in edits {
        assert!(toml.contains(from), "{from} not in {toml}");
        toml = toml.replace(from, to);
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, toml).unwrap();
    path.to_string_lossy().to_string()
}

#[test]
fn tfc_2w2a_qcdq_and_the_demo_mlps_pass_exactly() {
    let f = fixtures();
    let cases = vec![
        f.join("cases/TFC_2W2A_qcdq").to_string_lossy().to_string(),
        repo("models/demo/cases/mlp_qdq")
            .to_string_lossy()
            .to_string(),
        repo("models/demo/cases/mlp_qop")
            .to_string_lossy()
            .to_string(),
    ];
    assert_check_passes(&cases, "ulx3s");
    assert_check_passes(&cases[1..], "edge");
}

#[test]
fn onnx_node_tests_pass_exactly() {
    let cases: Vec<String> = [
        "test_qlinearmatmul_2D_int8_float32",
        "test_qlinearmatmul_2D_uint8_float32",
        "test_matmulinteger",
    ]
    .iter()
    .map(|n| node_test(n))
    .collect();
    assert_check_passes(&cases, "ulx3s");
}

#[test]
fn check_fails_with_exit_1_and_names_the_problem() {
    // A batched matrix product of two activations (3-D operands) is not lowered.
    let o = systole(&["check", &node_test("test_matmul_3d")]);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(
        t.contains("FAIL") && t.contains("MatMul_0") && t.contains("input A"),
        "{t}"
    );
}

#[test]
fn eval_prints_the_accuracy_line() {
    let f = fixtures();
    let o = systole(&[
        "eval",
        f.join("cases/TFC_2W2A_qcdq/model.onnx").to_str().unwrap(),
        "--mnist",
        f.join("mnist").to_str().unwrap(),
        "--limit",
        "300",
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let last = String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_string();
    // Measured: 295 of the first 300 test images right (the full set gives 96.60%, the qonnx
    // reference executor's figure).
    assert_eq!(last, "accuracy: 98.33% (295/300)", "{t}");
}

#[test]
fn demo_compiles_runs_and_reports() {
    let o = systole(&["demo"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for want in [
        "cycles per image: ",
        "latency per image: ",
        "energy per image: ",
        "accuracy: 99.33% (295/297)",
    ] {
        assert!(t.contains(want), "missing '{want}' in:\n{t}");
    }
}

fn assert_clean_failure(o: &Output, ctx: &str) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!err.contains("panicked"), "{ctx}: {err}");
    assert_eq!(o.status.code(), Some(1), "{ctx}: {err}");
    assert_eq!(err.lines().count(), 1, "{ctx}: {err}");
    err
}

#[test]
fn bad_models_fail_cleanly_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.sysb");
    let outs = out.to_str().unwrap();
    // Malformed protobuf.
    let bad = dir.path().join("bad.onnx");
    std::fs::write(&bad, b"\x0a\xff\xff\xff\xff garbage that is not a model").unwrap();
    let e = assert_clean_failure(
        &systole(&["compile", bad.to_str().unwrap(), "-o", outs]),
        "malformed",
    );
    assert!(e.contains("bad.onnx"), "{e}");
    // A missing initializer.
    let mut m = systole_compiler::onnx::load_model(repo("models/demo/mlp_qdq.onnx")).unwrap();
    let g = m.graph.as_mut().unwrap();
    let gone = g.initializer.remove(0).name;
    let missing = dir.path().join("missing.onnx");
    std::fs::write(&missing, systole_compiler::onnx::encode(&m)).unwrap();
    let e = assert_clean_failure(
        &systole(&["compile", missing.to_str().unwrap(), "-o", outs]),
        "missing initializer",
    );
    assert!(e.contains(&gone), "{e}");
    // Too big for the arch.
    let tfc = fixtures().join("cases/TFC_2W2A_qcdq/model.onnx");
    let e = assert_clean_failure(
        &systole(&[
            "compile",
            tfc.to_str().unwrap(),
            "--arch",
            "tiny",
            "-o",
            outs,
        ]),
        "too big",
    );
    assert!(e.contains("tiny") && e.contains("instructions"), "{e}");
    assert!(!out.exists(), "partial output left behind");
    // A wrong input shape in a conformance case.
    let case = dir.path().join("case");
    std::fs::create_dir_all(case.join("test_data_set_0")).unwrap();
    std::fs::copy(
        repo("models/demo/cases/mlp_qop/model.onnx"),
        case.join("model.onnx"),
    )
    .unwrap();
    let x = systole_compiler::tensor::Tensor::new(
        vec![1, 63],
        systole_compiler::tensor::TensorData::F32(vec![0.5; 63]),
    )
    .unwrap();
    std::fs::write(
        case.join("test_data_set_0/input_0.pb"),
        systole_compiler::onnx::encode(&x.to_onnx()),
    )
    .unwrap();
    std::fs::copy(
        repo("models/demo/cases/mlp_qop/test_data_set_0/output_0.pb"),
        case.join("test_data_set_0/output_0.pb"),
    )
    .unwrap();
    let o = systole(&["check", case.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(t.contains("FAIL") && t.contains("shape"), "{t}");
}

#[test]
fn check_only_reports_coverage() {
    let o = systole(&[
        "compile",
        "--check-only",
        repo("models/demo/mlp_qop.onnx").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("QLinearMatMul x3"), "{}", text(&o));
    let o = systole(&[
        "compile",
        "--check-only",
        repo("models/demo/cnn_float.onnx").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("Conv") && text(&o).contains("--calib"),
        "{}",
        text(&o)
    );
}

#[test]
fn float_cnn_through_post_training_quantization() {
    // qonnx's float mnist-conv (scripts/fetch_qonnx_models.sh), calibrated on the first 200
    // MNIST test images and evaluated on the next 300: the emulated int8 program against the
    // float model through the reference interpreter.
    let model = repo("target/qonnx-data/onnx/mnist-conv/model.onnx");
    assert!(
        model.exists(),
        "{} is missing: run scripts/fetch_qonnx_models.sh",
        model.display()
    );
    let mnist = fixtures().join("mnist");
    let o = systole(&[
        "eval",
        model.to_str().unwrap(),
        "--mnist",
        mnist.to_str().unwrap(),
        "--skip",
        "200",
        "--limit",
        "300",
        "--calib",
        mnist.to_str().unwrap(),
        "--calib-limit",
        "200",
        "--float",
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    // Measured: both 98.33% (295/300) on these images.
    assert!(
        t.contains("float model (reference interpreter): 98.33% (295/300)"),
        "{t}"
    );
    assert!(t.trim_end().ends_with("accuracy: 98.33% (295/300)"), "{t}");
}

#[test]
fn float_node_tests_through_post_training_quantization() {
    // Float Gemm/MatMul/Conv node tests, quantized on their own input: the emulator equals the
    // quantized reference exactly (checked inside), the outputs stay within int8 error.
    let mut args = vec![
        "check".to_string(),
        "--ptq".into(),
        "--atol".into(),
        "0.05".into(),
        "--rtol".into(),
        "0.02".into(),
    ];
    for n in [
        "test_gemm_default_no_bias",
        "test_gemm_transposeB",
        "test_matmul_2d",
        "test_basic_conv_with_padding",
        "test_conv_with_strides_padding",
        "test_conv_with_autopad_same",
    ] {
        args.push(node_test(n));
    }
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let o = systole(&args);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert_eq!(t.lines().filter(|l| l.contains(" pass")).count(), 6, "{t}");
}

#[test]
fn qonnx_brevitas_models_pass_exactly() {
    // QONNX Quant/BipolarQuant models (qonnx reference executor outputs): binarized, ternary
    // and 2-bit MLPs run on the int8 array exactly.
    let f = fixtures();
    let cases: Vec<String> = [
        "TFC_1W1A",
        "TFC_1W2A",
        "TFC_2W2A",
        "finn_tfc_w1a1_streamlined",
    ]
    .iter()
    .map(|c| f.join("cases").join(c).to_string_lossy().to_string())
    .collect();
    assert_check_passes(&cases, "ulx3s");
    // UNSW-NB15 (BIPOLAR-annotated input, its (x + 1) / 2 folded into the first layer's input
    // quantization) and the QKeras jet tagger (float first layer and Softmax on the host).
    assert_check_passes(
        &["unsw_nb15_mlp_w2a2", "qkeras_jettagging"]
            .iter()
            .map(|c| f.join("cases").join(c).to_string_lossy().to_string())
            .collect::<Vec<_>>(),
        "ulx3s",
    );
    // Per-channel-scaled 3-bit keyword spotting MLP: too many instructions for ulx3s.
    assert_check_passes(
        &[f.join("cases/kwsmlp_w3a3").to_string_lossy().to_string()],
        "edge",
    );
}

/// The binary datapath at every word width (`array.xnor_bits` 1, 2, 4, 8): TFC_1W1A stays
/// exact, and narrower words take more cycles (fewer bipolar products per PE and cycle).
#[test]
fn binary_word_widths_run_tfc_1w1a_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let case = fixtures()
        .join("cases/TFC_1W1A")
        .to_string_lossy()
        .to_string();
    let mut last = 0u64;
    for bits in [8, 4, 2, 1] {
        let to = format!("xnor_bits = {bits}");
        let arch = ulx3s_variant(dir.path(), &format!("x{bits}"), &[("xnor_bits = 8", &to)]);
        let t = assert_check_passes(std::slice::from_ref(&case), &arch);
        let row = t.lines().nth(1).unwrap().to_string();
        let cycles: u64 = row.split_whitespace().nth(5).unwrap().parse().unwrap();
        assert!(
            cycles > last,
            "xnor_bits {bits}: {cycles} cycles, not more than {last}"
        );
        last = cycles;
    }
}

/// Without the binary32 requantizer lanes (`ppu.fp32_requant = false`: the ulx3s preset, to fit
/// its FPGA) the compiler turns every binary32 requantization into the equal threshold set:
/// QLinear and QDQ models, convolutions and max pooling stay exact, and no `requant fp32` is
/// emitted. The same models with the lanes (edge) emit `fp32=1`.
#[test]
fn models_stay_exact_without_the_binary32_requantizer() {
    let dir = tempfile::tempdir().unwrap();
    let arch = "ulx3s".to_string();
    let shown = text(&systole(&["arch", "show", &arch]));
    assert!(shown.contains("fp32_requant = false"), "{shown}");
    let cases: Vec<String> = [
        repo("models/demo/cases/mlp_qdq"),
        repo("models/demo/cases/cnn_qdq"),
        fixtures().join("cases/TFC_2W2A_qcdq"),
    ]
    .iter()
    .map(|p| p.to_string_lossy().to_string())
    .collect();
    assert_check_passes(&cases, &arch);
    let img = dir.path().join("cnn.sysb");
    let model = repo("models/demo/cases/cnn_qdq/model.onnx");
    let o = systole(&[
        "compile",
        model.to_str().unwrap(),
        "--arch",
        &arch,
        "-o",
        img.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let asm = text(&systole(&["disasm", img.to_str().unwrap()]));
    assert!(asm.contains("thresh") && !asm.contains("fp32=1"), "{asm}");
    let o = systole(&[
        "compile",
        model.to_str().unwrap(),
        "--arch",
        "edge",
        "-o",
        img.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let asm = text(&systole(&["disasm", img.to_str().unwrap()]));
    assert!(asm.contains("fp32=1"), "{asm}");
}

/// A layer whose thresholds the arch cannot hold is named, whether its thresholds come from the
/// model (TFC_1W2A's 2-bit activations) or stand for a binary32 requantization on an arch
/// without the binary32 lanes (cnn_qop's QLinearConv outputs need 255).
#[test]
fn threshold_storage_too_small_names_the_layer() {
    let dir = tempfile::tempdir().unwrap();
    let one = ulx3s_variant(
        dir.path(),
        "one",
        &[("max_thresholds = 255", "max_thresholds = 1")],
    );
    let case = fixtures().join("cases/TFC_1W2A");
    let o = systole(&["check", "--arch", &one, case.to_str().unwrap()]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("needs 2 thresholds") && t.contains("holds at most 1"),
        "{t}"
    );
    let small = ulx3s_variant(
        dir.path(),
        "small",
        &[
            ("max_thresholds = 255", "max_thresholds = 15"),
            // (ulx3s has no binary32 lanes: its requantizations are thresholds.)
            ("fp32_requant = false", "fp32_requant = false"),
        ],
    );
    let case = repo("models/demo/cases/cnn_qop");
    let o = systole(&["check", "--arch", &small, case.to_str().unwrap()]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("as thresholds needs 255") && t.contains("holds at most 15"),
        "{t}"
    );
}

/// The up5k preset has no integer PPU lanes: compiling a network for it fails with the reason
/// and leaves no image behind.
#[test]
fn compiling_for_an_arch_without_integer_lanes_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tfc.sysb");
    let model = fixtures().join("cases/TFC_1W1A/model.onnx");
    let o = systole(&[
        "compile",
        model.to_str().unwrap(),
        "--arch",
        "up5k",
        "-o",
        out.to_str().unwrap(),
    ]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("ppu.integer_lanes = false"), "{t}");
    assert!(!out.exists(), "a partial image was left behind");
}

/// Runs `systole compile MODEL --report` on `arch`, asserting it succeeds; returns the
/// report and the written image.
fn compile_report(model: &Path, arch: &str) -> (String, systole_arch::Program) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model.sysb");
    let o = systole(&[
        "compile",
        model.to_str().unwrap(),
        "--arch",
        arch,
        "--report",
        "-o",
        out.to_str().unwrap(),
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let p = systole_arch::Program::from_bytes(&std::fs::read(&out).unwrap()).unwrap();
    (t, p)
}

#[test]
fn compile_report_lists_layers_host_work_and_exact_cycles() {
    let model = fixtures().join("cases/TFC_2W2A_qcdq/model.onnx");
    let (t, p) = compile_report(&model, "ulx3s");
    // Four layers 784-64-64-64-10, the host's input pre-processing and output tail, and the
    // total of one emulated run (timing does not depend on the data).
    for want in [
        "1x784x64",
        "1x64x64",
        "1x64x10",
        "host before the program:",
        "host after the program:",
        "total: 1987 instructions, 25084 cycles",
    ] {
        assert!(t.contains(want), "missing '{want}' in:\n{t}");
    }
    for line in t
        .lines()
        .filter(|l| l.contains("1x784x64") || l.contains("1x64x10"))
    {
        assert!(line.ends_with("dense"), "{line}");
    }
    // The image runs standalone on its own quantized input and says what it leaves to the host.
    assert!(p.meta.contains_key("host.input") && p.meta.contains_key("host.output"));
}

/// `compile --report` says how each layer runs: the bundled CNN's first convolution (one
/// channel, 3x3, padding 1) gets the padding pass and packs its kernel columns into lines.
#[test]
fn compile_report_names_each_layers_schedule() {
    let (t, _) = compile_report(&repo("models/demo/cnn_qdq.onnx"), "edge");
    assert!(t.lines().next().unwrap().ends_with("schedule"), "{t}");
    let conv1 = t.lines().find(|l| l.starts_with("conv1 ")).unwrap();
    assert!(
        conv1.ends_with("padding pass, 3 kernel columns a line, row reuse, max pooling pass"),
        "{conv1}"
    );
    let fc = t.lines().find(|l| l.starts_with("fc ")).unwrap();
    assert!(fc.ends_with("dense"), "{fc}");
}
