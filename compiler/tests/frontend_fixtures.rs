//! Imports every model under `shared/fixtures/cases/`: the importable models must import and
//! the interpreter must reproduce their expected outputs exactly (kwsmlp_w3a3 imports but its
//! float MatMul is compared with a tolerance in `qonnx.rs`); the others must fail with an error
//! naming every unsupported node's op_type and domain.

use std::path::{Path, PathBuf};

use systole_compiler::frontend::{self, ImportOptions};
use systole_compiler::interp;
use systole_compiler::onnx::load_model;
use systole_compiler::tensor::read_tensor_pb;

const CASES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/cases");

/// Models that import and run (the rest must be rejected).
const IMPORTABLE: &[&str] = &[
    "TFC_2W2A_qcdq",
    "TFC_1W1A",
    "TFC_1W2A",
    "TFC_2W2A",
    "kwsmlp_w3a3",
    "unsw_nb15_mlp_w2a2",
    "finn_tfc_w1a1_streamlined",
    "qkeras_jettagging",
];

/// Importable models whose outputs the interpreter reproduces bit for bit.
const EXACT: &[&str] = &[
    "TFC_2W2A_qcdq",
    "TFC_1W1A",
    "TFC_1W2A",
    "TFC_2W2A",
    "unsw_nb15_mlp_w2a2",
];

fn case_dirs() -> Vec<PathBuf> {
    let root = Path::new(CASES);
    assert!(
        root.is_dir(),
        "fixture folder {} is missing",
        root.display()
    );
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .expect("read fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no fixture models in {}", root.display());
    dirs
}

fn name(dir: &Path) -> String {
    dir.file_name().unwrap().to_string_lossy().into_owned()
}

fn data_sets(dir: &Path) -> Vec<PathBuf> {
    let mut sets: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("test_data_set_"))
        })
        .collect();
    sets.sort();
    sets
}

#[test]
fn importable_models_reproduce_their_outputs_exactly() {
    for dir in case_dirs()
        .iter()
        .filter(|d| EXACT.contains(&name(d).as_str()))
    {
        let model = load_model(dir.join("model.onnx")).unwrap();
        let graph = frontend::import(&model, &ImportOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", name(dir)));
        let sets = data_sets(dir);
        assert!(!sets.is_empty());
        for set in sets {
            let input = read_tensor_pb(set.join("input_0.pb")).unwrap();
            let expected = read_tensor_pb(set.join("output_0.pb")).unwrap();
            let got = interp::run(&graph, &[input]).unwrap();
            assert_eq!(got.len(), 1);
            // Bit-exact: compare the raw little-endian bytes.
            assert_eq!(got[0].shape, expected.shape);
            assert_eq!(
                got[0].data.to_le_bytes(),
                expected.data.to_le_bytes(),
                "{} {}: got {:?}, expected {:?}",
                name(dir),
                set.display(),
                got[0].data,
                expected.data
            );
        }
    }
}

/// Every fixture imports today; with its last node turned into an operator the frontend does
/// not have (Hardmax), each must be rejected by one message naming that node.
#[test]
fn other_models_are_rejected_naming_every_unsupported_node() {
    let mut checked = 0;
    for dir in case_dirs().iter() {
        let mut model = load_model(dir.join("model.onnx")).unwrap();
        let last = model.graph.as_mut().unwrap().node.last_mut().unwrap();
        last.op_type = "Hardmax".into();
        last.domain = String::new();
        last.attribute.clear();
        let err = frontend::import(&model, &ImportOptions::default())
            .expect_err(&format!("{} should not import", name(dir)));
        let msg = err.to_string();
        let graph = model.graph.as_ref().unwrap();
        let unsupported: Vec<(String, String)> = frontend::op_coverage(&model)
            .into_iter()
            .filter(|r| !r.supported)
            .map(|r| (r.domain, r.op_type))
            .collect();
        let custom: Vec<_> = graph
            .node
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                let d = if n.domain == "ai.onnx" {
                    ""
                } else {
                    n.domain.as_str()
                };
                unsupported.contains(&(d.to_string(), n.op_type.clone()))
            })
            .collect();
        assert!(
            !custom.is_empty(),
            "{}: expected unsupported nodes",
            name(dir)
        );
        for (i, node) in custom {
            assert!(
                err.unsupported_nodes()
                    .any(|u| u.index == i && u.op_type == node.op_type && u.domain == node.domain),
                "{}: node {i} ({} of {}) is not listed: {msg}",
                name(dir),
                node.op_type,
                node.domain
            );
            assert!(msg.contains(&node.op_type) && msg.contains(&node.domain));
            if !node.name.is_empty() {
                assert!(
                    msg.contains(&node.name),
                    "{}: {} not named: {msg}",
                    name(dir),
                    node.name
                );
            }
        }
        // One message, one line per issue.
        assert_eq!(msg.lines().count(), err.issues.len() + 1, "{msg}");
        checked += 1;
    }
    assert_eq!(checked, case_dirs().len());
}

#[test]
fn coverage_table_counts_every_node() {
    for dir in case_dirs() {
        let model = load_model(dir.join("model.onnx")).unwrap();
        let rows = frontend::op_coverage(&model);
        let total: usize = rows.iter().map(|r| r.count).sum();
        assert_eq!(total, model.graph.as_ref().unwrap().node.len());
        let qcdq = IMPORTABLE.contains(&name(&dir).as_str());
        assert_eq!(
            rows.iter().all(|r| r.supported),
            qcdq,
            "{}: {rows:?}",
            name(&dir)
        );
    }
}
