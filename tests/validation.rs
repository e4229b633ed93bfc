//! Generated documents: docs/validation.md (ResNet-18 on `scalesim32` against SCALE-Sim's
//! cycle report, every difference decomposed into named modelling differences) and
//! docs/estimates/ (tables and plots of the demo model and the TFC fixtures). A change of the
//! schedule, the emulator or the energy table fails this test until they are regenerated:
//!
//! ```sh
//! SYSTOLE_BLESS=1 cargo test --release --test validation
//! ```

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn bless() -> bool {
    std::env::var_os("SYSTOLE_BLESS").is_some()
}

fn stdout(args: &[&str]) -> String {
    let o = systole(args);
    assert!(
        o.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Compares `fresh` with the committed file (or rewrites it when blessing).
fn check_doc(path: &Path, fresh: &str) {
    if bless() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, fresh).unwrap();
        return;
    }
    let current = std::fs::read_to_string(path).unwrap_or_default();
    if current != fresh {
        let diff: Vec<String> = fresh
            .lines()
            .filter(|l| !current.lines().any(|c| c == *l))
            .map(|l| format!("+ {l}"))
            .chain(
                current
                    .lines()
                    .filter(|l| !fresh.lines().any(|c| c == *l))
                    .map(|l| format!("- {l}")),
            )
            .take(40)
            .collect();
        panic!(
            "{} is stale (SYSTOLE_BLESS=1 cargo test --release --test validation):\n{}",
            path.display(),
            diff.join("\n")
        );
    }
}

const BEGIN: &str = "<!-- BEGIN GENERATED: systole estimate --topology resnet18.csv --arch scalesim32 --compare-scalesim -->\n";
const END: &str = "<!-- END GENERATED -->\n";

#[test]
fn validation_against_scalesim_is_current_and_explained() {
    let bench = PathBuf::from("../shared/bench/scalesim");
    let table = stdout(&[
        "estimate",
        "--topology",
        bench.join("resnet18.csv").to_str().unwrap(),
        "--arch",
        "scalesim32",
        "--compare-scalesim",
        bench
            .join("scalesim_resnet18_compute_report.csv")
            .to_str()
            .unwrap(),
    ]);
    // Every row over 10 % names its differences, and the named terms add up to it (the
    // residual is SCALE-Sim's own cycles minus its fold formula, within 10 %).
    let mut rows = 0;
    for line in table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| layer") && !l.starts_with("| **"))
    {
        let f: Vec<&str> = line.split('|').map(str::trim).collect();
        let (ss, sy): (f64, f64) = (f[3].parse().unwrap(), f[4].parse().unwrap());
        let residual: f64 = f[12].parse().unwrap();
        assert!(residual.abs() <= 0.10 * ss, "{line}");
        if ((sy - ss) / ss).abs() > 0.10 {
            assert!(!f[13].is_empty() && f[13] != "within 10 %", "{line}");
        } else {
            assert_eq!(f[13], "within 10 %", "{line}");
        }
        rows += 1;
    }
    assert_eq!(rows, 21, "{table}");
    let path = repo("docs/validation.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_default();
    let (Some(b), Some(e)) = (doc.find(BEGIN), doc.find(END)) else {
        panic!("docs/validation.md lacks the generated-table markers");
    };
    let fresh = format!("{}{}{}", &doc[..b + BEGIN.len()], table, &doc[e..]);
    check_doc(&path, &fresh);
}

#[test]
fn committed_estimates_are_current() {
    // Relative paths (the tool runs in the repository): they appear in tables and captions.
    let models = [
        (
            "mlp_qdq",
            PathBuf::from("models/demo/cases/mlp_qdq/model.onnx"),
        ),
        (
            "TFC_1W1A",
            PathBuf::from("../shared/fixtures/cases/TFC_1W1A/model.onnx"),
        ),
        (
            "TFC_2W2A_qcdq",
            PathBuf::from("../shared/fixtures/cases/TFC_2W2A_qcdq/model.onnx"),
        ),
    ];
    for (name, model) in models {
        let dir = repo("docs/estimates").join(name);
        let mut args = vec![
            "estimate",
            model.to_str().unwrap(),
            "--arch",
            "ulx3s",
            "--check-analytic",
        ];
        let plot = format!("docs/estimates/{name}");
        if bless() {
            args.extend_from_slice(&["--plot", &plot]);
        }
        let mut table = stdout(&args);
        // The path the model was read from is not part of the result.
        table = table.replacen(model.to_str().unwrap(), name, 1);
        check_doc(&dir.join("ulx3s.txt"), &table);
        for f in ["roofline.svg", "roofline.png", "energy.svg", "energy.png"] {
            assert!(
                dir.join(f).exists(),
                "{name}/{f}: regenerate with SYSTOLE_BLESS=1"
            );
        }
    }
}
