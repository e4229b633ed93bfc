//! Compile time: the QONNX TFC-w2a2 (QCDQ) MLP from file to program image, and the 21
//! ResNet-18 topology shapes lowered and emitted. Throughput is instructions emitted per
//! second (criterion's `Throughput::Elements`).
//!
//! `cargo bench --bench compiler`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::path::Path;
use systole_arch::ArchConfig;

mod common;

fn compiler(c: &mut Criterion) {
    let mut g = c.benchmark_group("compile");
    let ulx3s = ArchConfig::resolve("ulx3s").expect("preset");
    let tfc = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/cases/TFC_2W2A_qcdq/model.onnx");
    let n = systole::model::compile(&tfc, &ulx3s)
        .unwrap_or_else(|e| panic!("{}: {e} (../shared/fixtures is needed)", tfc.display()))
        .program
        .code
        .len();
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("tfc_2w2a_qcdq_ulx3s", |b| {
        b.iter(|| systole::model::compile(black_box(&tfc), &ulx3s).expect("compile"))
    });

    let s32 = ArchConfig::resolve("scalesim32").expect("preset");
    let rows = common::resnet18();
    let lower_all = |rows: &[systole::estimate::TopoLayer]| -> usize {
        rows.iter()
            .map(|t| {
                systole_compiler::lower::to_program(&s32, &t.model())
                    .expect("lower")
                    .0
                    .code
                    .len()
            })
            .sum()
    };
    let n = lower_all(&rows);
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(10);
    g.bench_function("resnet18_shapes_scalesim32", |b| {
        b.iter(|| lower_all(black_box(&rows)))
    });
    g.finish();
}

criterion_group!(benches, compiler);
criterion_main!(benches);
