//! Real QONNX models from `shared/fixtures/cases/` compiled to programs: the emulator equals
//! the quantized IR bit for bit, and the host-visible outputs equal the qonnx reference
//! executor's (exactly, or within 1e-5 where a float tail runs on the host).

mod emulate_util;

use emulate_util::emulate;
use std::path::{Path, PathBuf};
use systole_compiler::frontend::{self, ImportOptions};
use systole_compiler::lower;
use systole_compiler::onnx::load_model;
use systole_compiler::tensor::{read_tensor_pb, Tensor};

const CASES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/cases");

fn sets(dir: &Path) -> Vec<(Tensor, Tensor)> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e} (shared fixtures missing)", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("test_data_set_")
        })
        .collect();
    v.sort();
    assert!(!v.is_empty());
    v.iter()
        .map(|s| {
            (
                read_tensor_pb(s.join("input_0.pb")).unwrap(),
                read_tensor_pb(s.join("output_0.pb")).unwrap(),
            )
        })
        .collect()
}

/// Compiles `case` for `arch` and runs every data set; returns the largest difference.
fn run_case(case: &str, arch: &str) -> f32 {
    let dir = Path::new(CASES).join(case);
    let m = load_model(dir.join("model.onnx")).unwrap();
    let g = frontend::import(&m, &ImportOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let arch = systole_arch::ArchConfig::preset(arch).unwrap();
    let (program, q, _) = lower::compile(&arch, &g).unwrap_or_else(|e| panic!("{case}: {e}"));
    let mut worst = 0f32;
    for (x, want) in sets(&dir) {
        let got = emulate(&program, &arch, &q, &x);
        assert_eq!(got.len(), want.len());
        for (a, b) in got.to_f32_vec().iter().zip(want.to_f32_vec()) {
            worst = worst.max((a - b).abs());
        }
    }
    worst
}

/// UNSW-NB15 MLP: the graph input is annotated BIPOLAR (FINN datatype), so the float
/// pre-processing (x + 1) / 2 is folded into the first layer's input quantization; weights are
/// per-tensor 2-bit under transB; the output is bipolar.
#[test]
fn unsw_nb15_mlp_w2a2_runs_exactly() {
    assert_eq!(run_case("unsw_nb15_mlp_w2a2", "ulx3s"), 0.0);
}

/// The QKeras jet tagger (6-bit, finn.custom_op.general Quant): four layers on the array, the
/// last bias and the Softmax on the host (a float tail), within 1e-5 of the reference.
#[test]
fn qkeras_jettagging_runs_with_a_softmax_tail() {
    let d = run_case("qkeras_jettagging", "ulx3s");
    assert!(d <= 1e-5, "{d}");
}
