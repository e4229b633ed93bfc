//! The `systole` command line: the documented commands work, and bad input of every kind gives
//! a one-line error, a non-zero exit, no panic and no partial output file.

mod common;
use common::*;
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::process::Output;

fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A failure as users must see it: exit 1, exactly one line on stderr starting `error:`.
fn assert_clean_failure(o: &Output, ctx: &str) {
    let err = stderr(o);
    assert!(!err.contains("panicked"), "{ctx}: panic: {err}");
    assert_eq!(o.status.code(), Some(1), "{ctx}: {err}");
    assert_eq!(err.lines().count(), 1, "{ctx}: not one line: {err}");
    assert!(err.starts_with("error: "), "{ctx}: {err}");
}

fn assemble_example(dir: &Path) -> PathBuf {
    let img = dir.join("gemm.sysb");
    let o = systole(&[
        "asm",
        &example("gemm_tiny.sysasm"),
        "-o",
        img.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    img
}

#[test]
fn asm_run_matches_the_reference_and_writes_trace_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let img = assemble_example(dir.path());
    let out = dir.path().join("y.npy");
    let trace = dir.path().join("trace.json");
    let stats = dir.path().join("stats.json");
    let o = systole(&[
        "run",
        img.to_str().unwrap(),
        "--input",
        &example("gemm_tiny_input.npy"),
        "--output",
        out.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
        "--stats-json",
        stats.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report = String::from_utf8_lossy(&o.stdout);
    assert!(
        report.contains("cycles: ") && report.contains("energy: "),
        "{report}"
    );
    // Output equals the reference computed when the example was made (not by the emulator).
    let got = systole_compiler::tensor::read_npy(&out).unwrap();
    let want = systole_compiler::tensor::read_npy(example("gemm_tiny_expected.npy")).unwrap();
    assert_eq!(got, want);
    // Trace: Chrome JSON with a named track per unit and one slice per instruction.
    let t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    let ev = t["traceEvents"].as_array().unwrap();
    for unit in ["load", "compute", "store"] {
        assert!(
            ev.iter()
                .any(|e| e["name"] == "thread_name" && e["args"]["name"] == unit),
            "no {unit} track"
        );
    }
    let slices = ev.iter().filter(|e| e["ph"] == "X").count();
    assert_eq!(slices, 29, "one slice per instruction incl. finish");
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert!(s["cycles"].as_u64().unwrap() > 0);
    assert_eq!(s["macs"].as_u64().unwrap(), 6 * 3 * 2 * 16);
    assert!(s["energy"]["total_pj"].as_f64().unwrap() > 0.0);
}

#[test]
fn disasm_of_asm_is_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let img = assemble_example(dir.path());
    let o = systole(&["disasm", img.to_str().unwrap()]);
    assert!(o.status.success());
    let src = std::fs::read_to_string(example("gemm_tiny.sysasm")).unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), src);
}

/// Output into a pipe nobody reads (`systole disasm x.sysb | head`): the command ends as Unix
/// filters do (SIGPIPE), without a panic.
#[test]
fn a_closed_output_pipe_is_no_panic() {
    let dir = tempfile::tempdir().unwrap();
    let img = assemble_example(dir.path());
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_systole"))
        .args(["disasm", img.to_str().unwrap()])
        .stdout(writer)
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(o.status.code(), Some(101), "{err}");
}

#[test]
fn run_with_wrong_inputs_fails_cleanly_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let img = assemble_example(dir.path());
    let out = dir.path().join("y.npy");
    let img = img.to_str().unwrap();
    let o = systole(&["run", img, "--output", out.to_str().unwrap()]);
    assert_clean_failure(&o, "no input");
    assert!(stderr(&o).contains("A"), "{}", stderr(&o));
    let o = systole(&[
        "run",
        img,
        "--input",
        &example("gemm_tiny_expected.npy"),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "wrong shape");
    assert!(stderr(&o).contains("shape"), "{}", stderr(&o));
    let o = systole(&["run", img, "--input", "/nonexistent.npy"]);
    assert_clean_failure(&o, "missing file");
    let o = systole(&[
        "run",
        img,
        "--arch",
        "ulx3s",
        "--input",
        &example("gemm_tiny_input.npy"),
    ]);
    assert_clean_failure(&o, "wrong arch");
    assert!(stderr(&o).contains("recompile"), "{}", stderr(&o));
    assert!(!out.exists(), "partial output left behind");
}

#[test]
fn emulator_errors_leave_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("dead.sysasm");
    std::fs::write(
        &src,
        ".arch tiny\n.dram 64\n.output y i8 [4] @0x0\nmatmul m=1 pop_prev\nfinish\n",
    )
    .unwrap();
    let img = dir.path().join("dead.sysb");
    assert!(
        systole(&["asm", src.to_str().unwrap(), "-o", img.to_str().unwrap()])
            .status
            .success()
    );
    let out = dir.path().join("y.npy");
    let trace = dir.path().join("t.json");
    let o = systole(&[
        "run",
        img.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "deadlock");
    assert!(
        stderr(&o).contains("instruction 0 (matmul)") && stderr(&o).contains("deadlock"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists() && !trace.exists());
}

#[test]
fn asm_errors_name_the_line_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bad.sysasm");
    std::fs::write(&src, ".arch tiny\nmatmul m=1\nfrobnicate x=1\nfinish\n").unwrap();
    let img = dir.path().join("bad.sysb");
    let o = systole(&["asm", src.to_str().unwrap(), "-o", img.to_str().unwrap()]);
    assert_clean_failure(&o, "asm");
    assert!(stderr(&o).contains(":3:"), "{}", stderr(&o));
    assert!(!img.exists());
}

#[test]
fn bad_arguments_are_usage_errors() {
    let o = systole(&["run"]);
    assert_eq!(o.status.code(), Some(2));
    let o = systole(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    let o = systole(&["arch", "show", "nope"]);
    assert_clean_failure(&o, "arch");
    let o = systole(&["bench", "--m", "0", "--repeat", "1"]);
    assert_clean_failure(&o, "bench");
}

fn check_bytes(dir: &Path, name: &str, bytes: &[u8]) {
    let f = dir.join(name);
    std::fs::write(&f, bytes).unwrap();
    let f = f.to_str().unwrap();
    assert_clean_failure(&systole(&["disasm", f]), "disasm");
    assert_clean_failure(
        &systole(&["run", f, "--input", &example("gemm_tiny_input.npy")]),
        "run",
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_bytes_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let dir = tempfile::tempdir().unwrap();
        check_bytes(dir.path(), "r.sysb", &bytes);
    }

    #[test]
    fn mutated_images_fail_cleanly(pos in any::<prop::sample::Index>(), val in any::<u8>(), cut in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let img = assemble_example(dir.path());
        let mut b = std::fs::read(img).unwrap();
        let i = pos.index(b.len());
        if cut { b.truncate(i) } else if b[i] != val { b[i] = val } else { b[i] ^= 1 }
        check_bytes(dir.path(), "m.sysb", &b);
    }
}

#[test]
fn run_takes_onnx_tensor_protos_too() {
    let dir = tempfile::tempdir().unwrap();
    let img = assemble_example(dir.path());
    let x = systole_compiler::tensor::read_npy(example("gemm_tiny_input.npy")).unwrap();
    let pb = dir.path().join("input_0.pb");
    std::fs::write(&pb, systole_compiler::onnx::encode(&x.to_onnx())).unwrap();
    let out = dir.path().join("y.npy");
    let o = systole(&[
        "run",
        img.to_str().unwrap(),
        "--input",
        pb.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let want = systole_compiler::tensor::read_npy(example("gemm_tiny_expected.npy")).unwrap();
    assert_eq!(systole_compiler::tensor::read_npy(&out).unwrap(), want);
}

#[test]
fn fpga_commands_name_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("b");
    let o = systole(&[
        "fpga",
        "build",
        "--board",
        "arty",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "unknown board");
    assert!(
        stderr(&o).contains("unknown board 'arty' (boards: ulx3s, icebreaker)"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists(), "a failed build left {}", out.display());
    // An arch whose clock no PLL of the board makes.
    let o = systole(&[
        "fpga",
        "build",
        "--board",
        "icebreaker",
        "--arch",
        "ulx3s",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "no PLL");
    assert!(
        stderr(&o).contains("no PLL makes 6.25 MHz"),
        "{}",
        stderr(&o)
    );
    let img = assemble_example(dir.path());
    let o = systole(&[
        "fpga",
        "run",
        "--port",
        "/nonexistent/ttyUSB9",
        img.to_str().unwrap(),
        "--input",
        example("gemm_tiny_input.npy").as_str(),
    ]);
    assert_clean_failure(&o, "bad port");
    assert!(
        stderr(&o).contains("/nonexistent/ttyUSB9"),
        "{}",
        stderr(&o)
    );
}
