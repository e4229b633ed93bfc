//! The RTL (Verilog of `systole_top`, run in Verilator by `systole_hdl::cosim`) against the
//! emulator on compiled real models: every output bit-exact and the cycle count exactly equal.
//! Needs verilator on PATH (scripts/test.sh installs it) and ../shared/fixtures; fails, not
//! skips, without them.

use std::path::{Path, PathBuf};
use std::process::Command;
use systole_arch::ArchConfig;
use systole_compiler::lower;
use systole_compiler::tensor::read_tensor_file;
use systole_emulator::IoData;
use systole_hdl::cosim::{cosim, Rtl};

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// Compiles `case/model.onnx` for `arch` and co-simulates `sets` of its data sets.
fn check_model(case: &Path, arch: &ArchConfig, sets: &[usize]) {
    assert!(case.is_dir(), "{} is missing", case.display());
    let c = systole::model::compile(&case.join("model.onnx"), arch)
        .unwrap_or_else(|e| panic!("{}: {e:#}", case.display()));
    let rtl = Rtl::cached(arch, false).unwrap_or_else(|e| panic!("{e}"));
    for &k in sets {
        let input = read_tensor_file(case.join(format!("test_data_set_{k}/input_0.pb"))).unwrap();
        let hw = lower::input_to_hw(&c.qmodel.input, &input).unwrap();
        let r = cosim(&rtl, &c.program, &[IoData::I8(hw)], None).unwrap();
        eprintln!(
            "{} set {k} on {}: {} instructions, rtl {} cycles ({:.2} s), emulator {} cycles ({:.4} s)",
            case.display(),
            arch.name,
            c.program.code.len(),
            r.rtl.cycles,
            r.rtl.wall.as_secs_f64(),
            r.emu_cycles,
            r.emu_wall.as_secs_f64()
        );
        assert!(
            r.outputs_equal(),
            "{} set {k}: outputs differ\nrtl: {:?}\nemulator: {:?}",
            case.display(),
            r.rtl.outputs,
            r.emu_outputs
        );
        assert_eq!(
            r.rtl.cycles,
            r.emu_cycles,
            "{} set {k}: cycles",
            case.display()
        );
    }
}

#[test]
fn mlp_qdq_ulx3s() {
    check_model(
        &repo("models/demo/cases/mlp_qdq"),
        &ArchConfig::preset("ulx3s").unwrap(),
        &[0, 1, 2],
    );
}

#[test]
fn tfc_2w2a_qcdq_ulx3s() {
    check_model(
        &repo("../shared/fixtures/cases/TFC_2W2A_qcdq"),
        &ArchConfig::preset("ulx3s").unwrap(),
        &[0],
    );
}

#[test]
fn cnn_qdq_ulx3s() {
    check_model(
        &repo("models/demo/cases/cnn_qdq"),
        &ArchConfig::preset("ulx3s").unwrap(),
        &[0],
    );
}

/// `systole cosim` on the docs' double-buffering example: exit 0 and "equal" twice.
#[test]
fn cosim_command() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo("docs/isa.md")).unwrap();
    let asm: String = text
        .split("```sysasm\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .unwrap()
        .to_string();
    let src = dir.path().join("db.sysasm");
    std::fs::write(&src, asm).unwrap();
    let img = dir.path().join("db.sysb");
    let bin = env!("CARGO_BIN_EXE_systole");
    let st = Command::new(bin)
        .args(["asm"])
        .arg(&src)
        .arg("-o")
        .arg(&img)
        .status()
        .unwrap();
    assert!(st.success());
    let a: Vec<i8> = (0..64).map(|i| (i * 7 - 100) as i8).collect();
    let npy = dir.path().join("a.npy");
    systole_compiler::tensor::write_npy(
        &npy,
        &systole_compiler::tensor::Tensor::new(
            vec![16, 4],
            systole_compiler::tensor::TensorData::I8(a),
        )
        .unwrap(),
    )
    .unwrap();
    let out = Command::new(bin)
        .arg("cosim")
        .arg(&img)
        .arg("--input")
        .arg(&npy)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("output c [16, 4]: equal"), "{text}");
    assert!(text.contains("(equal)"), "{text}");
}
