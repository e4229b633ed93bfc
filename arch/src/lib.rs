//! Systole's single source of truth: the arch config, the ISA and the program image.
//!
//! The compiler emits what is defined here, the emulator and the RTL decode it, and the docs
//! are generated from it. Nothing else in the workspace defines an encoding or a config field.

pub mod asm;
pub mod config;
pub mod energy;
pub mod image;
pub mod isa;

pub use config::{ArchConfig, BufferKind};
pub use image::Program;
pub use isa::Insn;
