//! The analytic estimator (src/analytic.rs) against the cycle-exact emulator, layer by layer,
//! at test time (never against stored numbers, so the bound follows schedule changes): the
//! demo models, the TFC fixtures and ResNet-18's topology on `scalesim32`.

mod common;
use common::*;

/// The error bound every layer must meet.
const BOUND: f64 = 0.05;

/// Runs `estimate --check-analytic --json` and checks every layer's error; returns the worst.
fn check(args: &[&str]) -> f64 {
    let mut a = vec!["estimate", "--check-analytic", "--json"];
    a.extend_from_slice(args);
    let o = systole(&a);
    assert!(
        o.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let e: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut worst = 0.0f64;
    let layers = e["layers"].as_array().unwrap();
    for l in layers.iter().chain(std::iter::once(&e["total"])) {
        let err = l["analytic_error"].as_f64().unwrap();
        let (a, x) = (
            l["analytic_cycles"].as_u64().unwrap(),
            l["cycles"].as_u64().unwrap(),
        );
        assert!(
            err.abs() <= BOUND,
            "{args:?} layer {}: analytic {a} vs emulator {x} cycles ({:+.2} %)",
            l["name"],
            100.0 * err
        );
        worst = worst.max(err.abs());
    }
    eprintln!("{args:?}: worst layer error {:.3} %", 100.0 * worst);
    worst
}

#[test]
fn demo_models_within_bound() {
    for m in ["mlp_qdq", "cnn_qdq"] {
        let p = repo(&format!("models/demo/cases/{m}/model.onnx"));
        for arch in ["ulx3s", "edge", "scalesim32"] {
            check(&[p.to_str().unwrap(), "--arch", arch]);
        }
    }
}

#[test]
fn tfc_fixtures_within_bound() {
    for m in ["TFC_1W1A", "TFC_2W2A_qcdq"] {
        let p = repo(&format!("../shared/fixtures/cases/{m}/model.onnx"));
        for arch in ["ulx3s", "edge", "scalesim32"] {
            check(&[p.to_str().unwrap(), "--arch", arch]);
        }
    }
}

#[test]
fn resnet18_on_scalesim32_within_bound() {
    let topo = repo("../shared/bench/scalesim/resnet18.csv");
    check(&["--topology", topo.to_str().unwrap(), "--arch", "scalesim32"]);
}

#[test]
fn analytic_estimate_alone_matches_the_checked_one() {
    // `--analytic` gives the same cycles `--check-analytic` reports, without the emulator.
    let p = repo("models/demo/cases/cnn_qdq/model.onnx");
    let o = systole(&["estimate", p.to_str().unwrap(), "--analytic", "--json"]);
    assert!(o.status.success());
    let a: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(a["engine"], "analytic");
    let o = systole(&[
        "estimate",
        p.to_str().unwrap(),
        "--check-analytic",
        "--json",
    ]);
    let c: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(c["engine"], "emulator");
    for (x, y) in a["layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(c["layers"].as_array().unwrap())
    {
        assert_eq!(x["cycles"], y["analytic_cycles"]);
        // Event counts (bytes per level, MAC slots) are the emulator's exactly.
        for k in [
            "mac_slots",
            "dram_bytes_read",
            "dram_bytes_written",
            "input_buffer_bytes",
            "weight_buffer_bytes",
            "accumulator_buffer_bytes",
            "output_buffer_bytes",
        ] {
            assert_eq!(x[k], y[k], "{} {k}", x["name"]);
        }
    }
}
