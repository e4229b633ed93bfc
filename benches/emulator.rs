//! Emulator throughput: simulated cycles per second and useful MACs per second (criterion's
//! `Throughput::Elements`) on a GEMM, ResNet-18 convolutions and a binarized QONNX MLP.
//!
//! `cargo bench --bench emulator` (add `-- --quick` for a short run). Each program runs with
//! random inputs, so tensor values are computed as well as cycles.

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use std::hint::black_box;
use std::path::Path;
use systole_arch::{ArchConfig, Program};
use systole_emulator::{run, IoData, RunOptions};

mod common;

struct Case {
    name: String,
    arch: ArchConfig,
    prog: Program,
    inputs: Vec<IoData>,
    cycles: u64,
    /// Useful multiply-accumulates (m x k x n per layer).
    macs: u64,
}

fn case(name: &str, arch: ArchConfig, prog: Program, inputs: Vec<IoData>, macs: u64) -> Case {
    let cycles = run(&prog, &arch, &inputs, &RunOptions::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .stats
        .cycles;
    Case {
        name: name.to_string(),
        arch,
        prog,
        inputs,
        cycles,
        macs,
    }
}

fn cases() -> Vec<Case> {
    let mut out = vec![];
    // A large int8 GEMM on the 16x16 `edge` array.
    let edge = ArchConfig::resolve("edge").expect("preset");
    let (m, k, n) = (256, 512, 512);
    let (layer, a) = common::gemm_layer(m, k, n, 42);
    let prog = systole_compiler::gemm::gemm_program(&edge, &layer).expect("gemm program");
    out.push(case(
        &format!("gemm_{m}x{k}x{n}_edge"),
        edge,
        prog,
        vec![IoData::I8(a)],
        (m * k * n) as u64,
    ));
    // Three ResNet-18 convolutions (SCALE-Sim topology rows) on the 32x32 `scalesim32` array:
    // the first layer (kernel columns packed into lines, a chain per output row) and two
    // chained row-reuse ones.
    let s32 = ArchConfig::resolve("scalesim32").expect("preset");
    for t in common::resnet18()
        .into_iter()
        .filter(|t| ["Conv1", "Conv2_1a", "Conv4_1b"].contains(&t.name.as_str()))
    {
        let (prog, reports) =
            systole_compiler::lower::to_program(&s32, &t.model()).expect("conv program");
        let inputs = common::random_inputs(&prog, 7);
        out.push(case(
            &format!("conv_{}_scalesim32", t.name),
            s32.clone(),
            prog,
            inputs,
            reports.iter().map(|r| r.macs).sum(),
        ));
    }
    // The binarized TFC-w1a1 MLP (QONNX), compiled by the library, on `ulx3s`.
    let ulx3s = ArchConfig::resolve("ulx3s").expect("preset");
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/cases/TFC_1W1A/model.onnx");
    let c = systole::model::compile(&path, &ulx3s)
        .unwrap_or_else(|e| panic!("{}: {e} (../shared/fixtures is needed)", path.display()));
    let inputs = common::random_inputs(&c.program, 3);
    out.push(case(
        "tfc_1w1a_ulx3s",
        ulx3s,
        c.program,
        inputs,
        c.layers.iter().map(|r| r.macs).sum(),
    ));
    out
}

fn emulator(c: &mut Criterion) {
    let cases = cases();
    for (unit, count) in [
        ("cycles", (|c: &Case| c.cycles) as fn(&Case) -> u64),
        ("macs", |c: &Case| c.macs),
    ] {
        let mut g = c.benchmark_group(format!("emulator_{unit}"));
        g.sample_size(10).sampling_mode(SamplingMode::Flat);
        for k in &cases {
            g.throughput(Throughput::Elements(count(k)));
            g.bench_function(&k.name, |b| {
                b.iter(|| {
                    run(
                        black_box(&k.prog),
                        &k.arch,
                        black_box(&k.inputs),
                        &RunOptions::default(),
                    )
                    .expect("run")
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, emulator);
criterion_main!(benches);
