//! The Systole accelerator's RTL in rust-hdl, block for block the twin of `emulator/src/`.
//!
//! Every block here has a cycle-level reference model in the emulator (see README.md) and a
//! property test that drives both with the same stimuli and compares every output on every
//! cycle. `write_verilog` turns the blocks for one arch config into Verilog plus a manifest.

pub mod array;
pub mod banked;
pub mod buffer;
pub mod cast;
pub mod compute;
pub mod controller;
pub mod cosim;
pub mod dma;
pub mod icarus;
pub mod pe;
pub mod ppu;
pub mod requant_fp32;
pub mod sim;
pub mod top;
pub mod verilog;

pub use array::Array;
pub use banked::{BankedArray, BankedPe};
pub use pe::Pe;
pub use ppu::PpuLane;
pub use verilog::{write_verilog, Error, Manifest};
