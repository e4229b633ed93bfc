//! The ONNX backend node tests (from the onnx==1.22.0 wheel) run through the frontend and the
//! reference interpreter, compared with the outputs the ONNX project ships.
//!
//! The cases live in `target/onnx-node-tests/node/test_*/` (or `$ONNX_NODE_TESTS_DIR/node`),
//! unpacked by `scripts/fetch_onnx_node_tests.sh`. This test fails when they are missing.
//!
//! Integer outputs must match exactly; float outputs within `1e-5 + 1e-5 * |expected|`.

use std::path::{Path, PathBuf};

use systole_compiler::frontend::{self, ImportOptions};
use systole_compiler::interp;
use systole_compiler::onnx::{load_model, load_tensor_proto};
use systole_compiler::tensor::{read_tensor_pb, Tensor, TensorData};

/// The cases run: exact names, or prefixes ending in `*`.
const CASES: &[&str] = &[
    "test_qlinearmatmul_2D_int8_float32",
    "test_qlinearmatmul_2D_uint8_float32",
    "test_qlinearmatmul_3D_int8_float32",
    "test_qlinearmatmul_3D_uint8_float32",
    "test_qlinearconv",
    "test_matmulinteger",
    "test_convinteger_with_padding",
    "test_convinteger_without_padding",
    "test_quantizelinear",
    "test_quantizelinear_axis",
    "test_dequantizelinear",
    "test_dequantizelinear_axis",
    "test_gemm_*",
    "test_matmul_2d",
    "test_matmul_3d",
    "test_matmul_4d",
    "test_basic_conv_*",
    "test_conv_with_*",
    "test_relu",
    "test_clip*",
    "test_maxpool_2d_*",
    "test_averagepool_2d_*",
    "test_globalaveragepool*",
    "test_flatten_*",
    "test_reshape_*",
    "test_add*",
    "test_batchnorm_example",
    "test_batchnorm_epsilon",
    // Beyond the required set: the other operators of the IR.
    "test_batchnorm_example_training_mode",
    "test_batchnorm_epsilon_training_mode",
    "test_matmul_*",
    "test_transpose_*",
    "test_concat_*",
    "test_squeeze*",
    "test_unsqueeze*",
    "test_identity",
    "test_sub",
    "test_sub_bcast",
    "test_sub_example",
    "test_sub_int8",
    "test_sub_uint8",
    "test_mul",
    "test_mul_bcast",
    "test_mul_example",
    "test_mul_int8",
    "test_mul_uint8",
    "test_div",
    "test_div_bcast",
    "test_div_example",
    "test_div_int8",
    "test_div_uint8",
    "test_div_int32_trunc",
];

/// What to do with a case that cannot run as a plain comparison.
enum Exclusion {
    /// Not run at all.
    Skip,
    /// The import must fail, naming each of these op_types as unsupported.
    ImportFails(&'static [&'static str]),
}

/// Cases matched by [`CASES`] that are excluded, with the reason (printed by the test).
const EXCLUDED: &[(&str, Exclusion, &str)] = &[
    (
        "test_batchnorm_example_training_mode",
        Exclusion::ImportFails(&["BatchNormalization"]),
        "training mode (training_mode = 1, running-statistics outputs) is rejected: inference only",
    ),
    (
        "test_batchnorm_epsilon_training_mode",
        Exclusion::ImportFails(&["BatchNormalization"]),
        "training mode (training_mode = 1, running-statistics outputs) is rejected: inference only",
    ),
    (
        "test_add_int16",
        Exclusion::Skip,
        "int16 tensors are not representable (tensor::DType has no int16)",
    ),
    (
        "test_add_uint16",
        Exclusion::Skip,
        "uint16 tensors are not representable (tensor::DType has no uint16)",
    ),
    (
        "test_add_uint32",
        Exclusion::Skip,
        "uint32 tensors are not representable (tensor::DType has no uint32)",
    ),
    (
        "test_add_uint64",
        Exclusion::Skip,
        "uint64 tensors are not representable (tensor::DType has no uint64)",
    ),
    (
        "test_clip_default_int8_max_expanded",
        Exclusion::ImportFails(&["Less", "Where"]),
        "the expanded function body uses Less/Where, which are not IR operators",
    ),
    (
        "test_clip_default_int8_min_expanded",
        Exclusion::ImportFails(&["Less", "Where"]),
        "the expanded function body uses Less/Where, which are not IR operators",
    ),
    (
        "test_clip_default_max_expanded",
        Exclusion::ImportFails(&["Less", "Where"]),
        "the expanded function body uses Less/Where, which are not IR operators",
    ),
    (
        "test_clip_default_min_expanded",
        Exclusion::ImportFails(&["Less", "Where"]),
        "the expanded function body uses Less/Where, which are not IR operators",
    ),
    (
        "test_clip_example_expanded",
        Exclusion::ImportFails(&["Less", "Where"]),
        "the expanded function body uses Less/Where, which are not IR operators",
    ),
    (
        "test_clip_expanded",
        Exclusion::ImportFails(&["Less", "Where"]),
        "the expanded function body uses Less/Where, which are not IR operators",
    ),
    (
        "test_clip_inbounds_expanded",
        Exclusion::ImportFails(&["Less", "Where"]),
        "the expanded function body uses Less/Where, which are not IR operators",
    ),
    (
        "test_clip_min_greater_than_max_expanded",
        Exclusion::ImportFails(&["Less", "Where"]),
        "the expanded function body uses Less/Where, which are not IR operators",
    ),
    (
        "test_clip_outbounds_expanded",
        Exclusion::ImportFails(&["Less", "Where"]),
        "the expanded function body uses Less/Where, which are not IR operators",
    ),
    (
        "test_clip_splitbounds_expanded",
        Exclusion::ImportFails(&["Less", "Where"]),
        "the expanded function body uses Less/Where, which are not IR operators",
    ),
];

/// Cases whose inputs at these indices are bound as constants (initializers holding the data
/// set's values) before import, with the reason.
const FROZEN_INPUTS: &[(&str, &[usize], &str)] = &[
    (
        "test_reshape_*",
        &[1],
        "Reshape's shape must be a constant for static shapes; the test feeds it as an input",
    ),
    (
        "test_squeeze*",
        &[1],
        "Squeeze's axes must be a constant; the test feeds them as an input",
    ),
    (
        "test_unsqueeze*",
        &[1],
        "Unsqueeze's axes must be a constant; the test feeds them as an input",
    ),
];

/// Cases compared with a looser float tolerance, with the reason.
const LOOSE: &[(&str, f64, &str)] = &[(
    "test_averagepool_2d_ceil_last_window_starts_on_pad",
    1e-4,
    "the expected output is stored rounded to 4 decimals (0.1511 for 0.15105554, which \
     onnxruntime 1.22 computes too)",
)];

fn node_tests_dir() -> PathBuf {
    match std::env::var_os("ONNX_NODE_TESTS_DIR") {
        Some(d) => PathBuf::from(d).join("node"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/onnx-node-tests/node"),
    }
}

fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

/// Files `<dir>/<prefix><i>.pb` for i = 0, 1, ... while they exist.
fn numbered(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    (0..)
        .map(|i| dir.join(format!("{prefix}{i}.pb")))
        .take_while(|p| p.exists())
        .collect()
}

/// Compares one output; `None` when equal within tolerance.
fn compare(expected: &Tensor, got: &Tensor, tol: f64) -> Option<String> {
    if expected.shape != got.shape || expected.dtype() != got.dtype() {
        return Some(format!(
            "expected {} {:?}, got {} {:?}",
            expected.dtype(),
            expected.shape,
            got.dtype(),
            got.shape
        ));
    }
    let close = |e: f64, g: f64| (e.is_nan() && g.is_nan()) || (e - g).abs() <= tol + tol * e.abs();
    let mismatch = match (&expected.data, &got.data) {
        (TensorData::F32(e), TensorData::F32(g)) => e
            .iter()
            .zip(g)
            .position(|(&e, &g)| !close(f64::from(e), f64::from(g)))
            .map(|i| format!("element {i}: expected {}, got {}", e[i], g[i])),
        (TensorData::F64(e), TensorData::F64(g)) => e
            .iter()
            .zip(g)
            .position(|(&e, &g)| !close(e, g))
            .map(|i| format!("element {i}: expected {}, got {}", e[i], g[i])),
        (e, g) if e == g => None,
        (e, g) => {
            let (e, g) = (e.to_le_bytes(), g.to_le_bytes());
            let size = expected.dtype().size();
            let i = e.iter().zip(&g).position(|(a, b)| a != b).unwrap_or(0) / size;
            Some(format!(
                "integer outputs differ first at element {i}: expected {:?}, got {:?}",
                element(expected, i),
                element(got, i)
            ))
        }
    };
    mismatch
}

fn element(t: &Tensor, i: usize) -> String {
    match &t.data {
        TensorData::I8(v) => v.get(i).map(|x| x.to_string()),
        TensorData::U8(v) => v.get(i).map(|x| x.to_string()),
        TensorData::I32(v) => v.get(i).map(|x| x.to_string()),
        TensorData::I64(v) => v.get(i).map(|x| x.to_string()),
        TensorData::Bool(v) => v.get(i).map(|x| x.to_string()),
        TensorData::F32(v) => v.get(i).map(|x| x.to_string()),
        TensorData::F64(v) => v.get(i).map(|x| x.to_string()),
    }
    .unwrap_or_default()
}

/// Runs one case; returns the number of data sets checked.
fn run_case(dir: &Path, frozen: &[usize], tol: f64) -> Result<usize, String> {
    let model = load_model(dir.join("model.onnx")).map_err(|e| e.to_string())?;
    let mut sets: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("test_data_set_"))
        })
        .collect();
    sets.sort();
    if sets.is_empty() {
        return Err("no test_data_set_* folder".into());
    }
    for set in &sets {
        let input_files = numbered(set, "input_");
        // Bind the frozen inputs as initializers.
        let mut model = model.clone();
        let graph = model.graph.as_mut().ok_or("no graph")?;
        let mut feed = Vec::new();
        let mut kept = Vec::new();
        for (i, (vi, path)) in graph.input.iter().zip(&input_files).enumerate() {
            if frozen.contains(&i) {
                let mut t = load_tensor_proto(path).map_err(|e| e.to_string())?;
                t.name = vi.name.clone();
                graph.initializer.push(t);
            } else {
                kept.push(vi.clone());
                feed.push(read_tensor_pb(path).map_err(|e| e.to_string())?);
            }
        }
        graph.input = kept;
        let g = frontend::import(&model, &ImportOptions::default()).map_err(|e| e.to_string())?;
        let expected = numbered(set, "output_")
            .iter()
            .map(|p| read_tensor_pb(p).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        let got = interp::run(&g, &feed).map_err(|e| e.to_string())?;
        if got.len() != expected.len() {
            return Err(format!(
                "{} outputs, expected {}",
                got.len(),
                expected.len()
            ));
        }
        for (k, (e, g)) in expected.iter().zip(&got).enumerate() {
            if let Some(m) = compare(e, g, tol) {
                let set_name = set.file_name().unwrap_or_default().to_string_lossy();
                return Err(format!("{set_name} output {k}: {m}"));
            }
        }
    }
    Ok(sets.len())
}

#[test]
fn onnx_backend_node_tests() {
    let root = node_tests_dir();
    assert!(
        root.is_dir(),
        "the ONNX node tests are missing: {} does not exist; run scripts/fetch_onnx_node_tests.sh",
        root.display()
    );
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .expect("read the node test folder")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| CASES.iter().any(|p| matches(p, n)))
        .collect();
    names.sort();
    // Every exact name in CASES must exist, so a renamed case is noticed.
    for p in CASES.iter().filter(|p| !p.ends_with('*')) {
        assert!(
            names.iter().any(|n| n == p),
            "node test {p} is missing from {}",
            root.display()
        );
    }

    let mut failures = Vec::new();
    let mut passed = 0;
    for (p, idx, reason) in FROZEN_INPUTS {
        println!("{p}: inputs {idx:?} bound as constants: {reason}");
    }
    for (n, tol, reason) in LOOSE {
        println!("{n}: tolerance {tol}: {reason}");
    }
    println!("excluded ONNX node tests:");
    for name in &names {
        let dir = root.join(name);
        if let Some((_, how, reason)) = EXCLUDED.iter().find(|(n, _, _)| n == name) {
            println!("  {name}: {reason}");
            if let Exclusion::ImportFails(ops) = how {
                let model = load_model(dir.join("model.onnx")).expect("load model");
                match frontend::import(&model, &ImportOptions::default()) {
                    Ok(_) => failures.push(format!("{name}: import should fail but succeeded")),
                    Err(e) => {
                        let msg = e.to_string();
                        for op in *ops {
                            if !e.unsupported_nodes().any(|n| n.op_type == *op) || !msg.contains(op)
                            {
                                failures
                                    .push(format!("{name}: the error does not name {op}: {msg}"));
                            }
                        }
                    }
                }
            }
            continue;
        }
        let frozen: &[usize] = FROZEN_INPUTS
            .iter()
            .find(|(p, _, _)| matches(p, name))
            .map_or(&[], |f| f.1);
        let tol = LOOSE
            .iter()
            .find(|(n, _, _)| n == name)
            .map_or(1e-5, |l| l.1);
        match run_case(&dir, frozen, tol) {
            Ok(_) => passed += 1,
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    for (n, _, _) in EXCLUDED {
        assert!(
            names.iter().any(|m| m == n),
            "excluded case {n} is not among the cases run"
        );
    }
    println!(
        "ONNX node tests: {passed} passed, {} failed, {} excluded",
        failures.len(),
        EXCLUDED.len()
    );
    assert!(
        failures.is_empty(),
        "{} ONNX node test(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(passed >= 140, "only {passed} cases ran");
}
