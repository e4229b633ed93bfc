//! Programs shared by the benchmarks.

#![allow(dead_code)]

use std::path::Path;
use systole::estimate::TopoLayer;

// (each bench binary uses a subset)
#[allow(unused_imports)]
pub use systole::bench::{gemm_layer, random_inputs};

/// The ResNet-18 rows of ../shared/bench/scalesim/resnet18.csv.
pub fn resnet18() -> Vec<TopoLayer> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/scalesim/resnet18.csv");
    systole::estimate::read_topology(&path)
        .unwrap_or_else(|e| panic!("{e} (../shared/bench is needed)"))
}
