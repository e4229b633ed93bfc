//! Cycle-accurate emulator of the Systole accelerator.
//!
//! One module per hardware block, mirroring the RTL: `dram` (external memory and its
//! channels), `dma` (load and store engines), `buffer` (banked scratchpads), `array` (the
//! systolic array), `ppu` (post-processing), `controller` (fetch, queues, tokens), and
//! `machine` (the top level). Timing rules are written down in docs/timing.md.

pub mod array;
pub mod banked;
pub mod buffer;
pub mod controller;
pub mod dma;
pub mod dram;
pub mod error;
pub mod io;
pub mod machine;
pub mod ppu;
pub mod randprog;
pub mod rtl_twins;
pub mod stats;
pub mod systolic;
pub mod trace;

pub use error::{EmuError, ErrorKind};
pub use io::IoData;
pub use machine::{Machine, RunOptions};
pub use stats::Stats;

use systole_arch::{ArchConfig, Program};

/// Everything a run produces.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// One entry per output descriptor, in image order.
    pub outputs: Vec<IoData>,
    pub stats: Stats,
    pub spans: Option<Vec<trace::Span>>,
    /// Statistics at the start of each `RunOptions::snapshot_at` instruction.
    pub snapshots: Vec<(usize, Stats)>,
}

/// Runs `prog` on `arch` with `inputs` (one per input descriptor, in image order).
pub fn run(
    prog: &Program,
    arch: &ArchConfig,
    inputs: &[IoData],
    opts: &RunOptions,
) -> Result<RunResult, EmuError> {
    let mut m = Machine::new(prog, arch, opts)?;
    io::write_inputs(&mut m.dram.bytes, prog, inputs)?;
    m.run()?;
    let outputs = prog
        .outputs()
        .map(|d| io::read_tensor(&m.dram.bytes, d))
        .collect();
    Ok(RunResult {
        outputs,
        stats: m.stats(),
        spans: m.spans.take(),
        snapshots: std::mem::take(&mut m.snapshots),
    })
}
