//! Programs shared by the benchmarks.

#![allow(dead_code)]

use std::path::Path;
use systole::estimate::TopoLayer;
use systole_arch::Program;
use systole_compiler::gemm::{ChannelQuant, GemmLayer};
use systole_emulator::IoData;

/// A random int8 GEMM layer and its input.
pub fn gemm_layer(m: usize, k: usize, n: usize, seed: u64) -> (GemmLayer, Vec<i8>) {
    let mut rng = systole_emulator::randprog::Rng::new(seed);
    let layer = GemmLayer {
        m,
        k,
        n,
        weights: (0..k * n).map(|_| rng.next_u64() as i8).collect(),
        channels: vec![
            ChannelQuant {
                bias: 0,
                mult: 1 << 30,
                shift: 40
            };
            n
        ],
        out_zp: 0,
        out_lo: -128,
        out_hi: 127,
        in_quant: None,
        out_quant: None,
    };
    let a = (0..m * k).map(|_| rng.next_u64() as i8).collect();
    (layer, a)
}

/// Random data for every input of `prog`.
pub fn random_inputs(prog: &Program, seed: u64) -> Vec<IoData> {
    let mut rng = systole_emulator::randprog::Rng::new(seed);
    prog.inputs()
        .map(|d| {
            let n = d.elements() as usize;
            match d.dtype {
                systole_arch::image::DType::I8 => {
                    IoData::I8((0..n).map(|_| rng.next_u64() as i8).collect())
                }
                systole_arch::image::DType::U8 => {
                    IoData::U8((0..n).map(|_| rng.next_u64() as u8).collect())
                }
                systole_arch::image::DType::I32 => IoData::I32(
                    (0..n)
                        .map(|_| (rng.next_u64() % 256) as i32 - 128)
                        .collect(),
                ),
            }
        })
        .collect()
}

/// The ResNet-18 rows of ../shared/bench/scalesim/resnet18.csv.
pub fn resnet18() -> Vec<TopoLayer> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/scalesim/resnet18.csv");
    systole::estimate::read_topology(&path)
        .unwrap_or_else(|e| panic!("{e} (../shared/bench is needed)"))
}
