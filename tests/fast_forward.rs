//! The emulator's fast-forwarding (issue [7]) changes nothing: compiled networks and layers run
//! with it and with `RunOptions::step_every_cycle` give the same outputs, cycle counts, per-layer
//! snapshots and statistics, counter for counter. (Random programs: emulator/tests/
//! random_programs.rs; the RTL co-simulations of tests/cosim.rs run the fast path too.)

mod common;

use systole::bench::{gemm_layer, random_inputs};
use systole_arch::{ArchConfig, Program};
use systole_emulator::{run, IoData, RunOptions};

fn same_both_ways(name: &str, prog: &Program, arch: &ArchConfig, inputs: &[IoData]) -> u64 {
    let snapshot_at: Vec<usize> = (0..prog.code.len()).step_by(7).collect();
    let fast = RunOptions {
        snapshot_at: snapshot_at.clone(),
        ..Default::default()
    };
    let slow = RunOptions {
        snapshot_at,
        step_every_cycle: true,
        ..Default::default()
    };
    let a = run(prog, arch, inputs, &fast).unwrap_or_else(|e| panic!("{name}: {e}"));
    let b = run(prog, arch, inputs, &slow).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(a.stats.cycles, b.stats.cycles, "{name}: cycles");
    assert!(a.outputs == b.outputs, "{name}: outputs differ");
    assert_eq!(a.stats, b.stats, "{name}: statistics");
    assert_eq!(
        a.snapshots, b.snapshots,
        "{name}: per-instruction snapshots"
    );
    a.stats.cycles
}

#[test]
fn compiled_models_run_the_same_stepping_every_cycle() {
    let fx = common::fixtures().join("cases");
    let cases = [
        (common::repo("models/demo/mlp_qdq.onnx"), "ulx3s"),
        (common::repo("models/demo/cnn_qdq.onnx"), "edge"),
        (common::repo("models/demo/cnn_qdq.onnx"), "ulx3s"),
        (fx.join("TFC_1W1A/model.onnx"), "ulx3s"),
        (fx.join("TFC_2W2A_qcdq/model.onnx"), "ulx3s"),
        (fx.join("unsw_nb15_mlp_w2a2/model.onnx"), "edge"),
    ];
    for (path, arch) in cases {
        let arch = ArchConfig::resolve(arch).unwrap();
        let c = systole::model::compile(&path, &arch)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = format!("{} on {}", path.display(), arch.name);
        for seed in [1, 2] {
            same_both_ways(&name, &c.program, &arch, &random_inputs(&c.program, seed));
        }
    }
}

#[test]
fn gemms_and_resnet_convolutions_run_the_same_stepping_every_cycle() {
    for (arch, (m, k, n)) in [
        ("tiny", (37, 20, 9)),
        ("ulx3s", (256, 64, 40)),
        ("edge", (64, 100, 48)),
    ] {
        let arch = ArchConfig::resolve(arch).unwrap();
        let (layer, a) = gemm_layer(m, k, n, 5);
        let prog = systole_compiler::gemm::gemm_program(&arch, &layer).unwrap();
        let name = format!("gemm {m}x{k}x{n} on {}", arch.name);
        same_both_ways(&name, &prog, &arch, &[IoData::I8(a)]);
    }
    // Two ResNet-18 rows (3x3 and strided 1x1 convolutions with padding) on scalesim32.
    let topo = common::repo("../shared/bench/scalesim/resnet18.csv");
    let rows = systole::estimate::read_topology(&topo)
        .unwrap_or_else(|e| panic!("{e} (../shared/bench is needed)"));
    let s32 = ArchConfig::resolve("scalesim32").unwrap();
    for t in rows
        .iter()
        .filter(|t| t.name == "Conv5_1a" || t.name == "Conv3_s")
    {
        let (prog, _) = systole_compiler::lower::to_program(&s32, &t.model()).unwrap();
        same_both_ways(&t.name, &prog, &s32, &random_inputs(&prog, 9));
    }
}
