//! Verilog output: the generated modules for one arch config and a JSON manifest that tells
//! a harness (Verilator, Icarus, a board top level) what each module is and what its ports
//! are.

use crate::sim::prepare;
use crate::{Array, BankedArray, BankedPe, Pe, PpuLane};
use regex::Regex;
use rust_hdl::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;
use systole_arch::ArchConfig;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write {path}: {err}")]
    Io { path: String, err: std::io::Error },
    #[error("arch {0}: {1}")]
    Arch(String, String),
    #[error("{0}")]
    Tool(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    pub name: String,
    /// "in" or "out".
    pub dir: String,
    pub width: usize,
    pub signed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleInfo {
    /// The block's file in hdl/src and emulator twin.
    pub block: String,
    pub twin: String,
    /// Top module name in `file`.
    pub module: String,
    pub file: String,
    /// Cycles from an input on the ports to its result on the outputs.
    pub latency_cycles: usize,
    pub ports: Vec<Port>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub arch: String,
    pub generator: String,
    pub rows: u32,
    pub cols: u32,
    /// Cycles of `ldw` (weight lines shifted in) and fixed part of `matmul` (m + this).
    pub ldw_cycles: u32,
    pub matmul_extra_cycles: u32,
    pub modules: Vec<ModuleInfo>,
}

impl Manifest {
    pub fn module(&self, block: &str) -> Option<&ModuleInfo> {
        self.modules.iter().find(|m| m.block == block)
    }
}

/// The top-level ports of a block, in declaration order.
pub fn ports<B: Block>(uut: &B) -> Vec<Port> {
    struct Lister {
        depth: usize,
        ports: Vec<Port>,
    }
    impl Probe for Lister {
        fn visit_start_scope(&mut self, _name: &str, _node: &dyn Block) {
            self.depth += 1;
        }
        fn visit_atom(&mut self, name: &str, signal: &dyn Atom) {
            let dir = match signal.kind() {
                AtomKind::InputParameter => "in",
                AtomKind::OutputParameter => "out",
                _ => return,
            };
            if self.depth == 1 {
                self.ports.push(Port {
                    name: name.to_string(),
                    dir: dir.into(),
                    width: signal.bits(),
                    signed: matches!(signal.descriptor().kind, TypeKind::Signed(_)),
                });
            }
        }
        fn visit_end_scope(&mut self, _name: &str, _node: &dyn Block) {
            self.depth -= 1;
        }
    }
    let mut l = Lister {
        depth: 0,
        ports: vec![],
    };
    uut.accept("top", &mut l);
    l.ports
}

/// rust-hdl names the top module `top` and every instance `top$path`; give them `name`.
pub fn module_verilog<B: Block>(uut: &B, name: &str) -> String {
    let text = generate_verilog(uut);
    let re = Regex::new(r"(?m)(^|[^A-Za-z0-9_$])top(\$|\(| |$)").unwrap();
    re.replace_all(&text, |c: &regex::Captures| {
        format!("{}{}{}", &c[1], name, &c[2])
    })
    .into_owned()
}

fn write(dir: &Path, file: &str, text: &str) -> Result<(), Error> {
    let path = dir.join(file);
    std::fs::write(&path, text).map_err(|err| Error::Io {
        path: path.display().to_string(),
        err,
    })
}

/// Writes one Verilog file per block for `arch` into `dir` (created if needed), plus
/// `manifest.json`, and returns the manifest.
pub fn write_verilog(arch: &ArchConfig, dir: &Path) -> Result<Manifest, Error> {
    let (rows, cols) = (arch.array.rows as usize, arch.array.cols as usize);
    if rows == 0 || cols == 0 {
        return Err(Error::Arch(arch.name.clone(), "empty array".into()));
    }
    std::fs::create_dir_all(dir).map_err(|err| Error::Io {
        path: dir.display().to_string(),
        err,
    })?;
    let mut modules = Vec::new();
    let mut emit = |block: &str, twin: &str, latency: usize, text: String, ports: Vec<Port>| {
        let module = format!("systole_{block}");
        let file = format!("{module}.v");
        write(dir, &file, &text)?;
        modules.push(ModuleInfo {
            block: block.into(),
            twin: twin.into(),
            module,
            file,
            latency_cycles: latency,
            ports,
        });
        Ok::<(), Error>(())
    };
    let bits = arch.array.xnor_bits;
    if arch.array.weight_banks == 2 {
        let pe = prepare(BankedPe::with_xnor_bits(bits));
        emit(
            "pe",
            "systole_emulator::banked::BankedPe",
            1,
            module_verilog(&pe, "systole_pe"),
            ports(&pe),
        )?;
        let array = prepare(BankedArray::with_xnor_bits(rows, cols, bits));
        emit(
            "array",
            "systole_emulator::banked::BankedArray",
            rows + cols - 1,
            module_verilog(&array, "systole_array"),
            ports(&array),
        )?;
    } else {
        let pe = prepare(Pe::with_xnor_bits(bits));
        emit(
            "pe",
            "systole_emulator::systolic::Pe",
            1,
            module_verilog(&pe, "systole_pe"),
            ports(&pe),
        )?;
        let array = prepare(Array::with_xnor_bits(rows, cols, bits));
        emit(
            "array",
            "systole_emulator::systolic::SystolicArray",
            rows + cols - 1,
            module_verilog(&array, "systole_array"),
            ports(&array),
        )?;
    }
    let lane = prepare(PpuLane::default());
    emit(
        "ppu_lane",
        "systole_emulator::ppu::{alu_lane, requant_lane} behind the docs/timing.md delays",
        3,
        // Kept as its own module in synthesis: flattened, yosys merges the eight lanes'
        // identical setting registers and decoders into one, whose outputs then fan out to
        // every lane (800 loads on ulx3s) and crowd the router.
        module_verilog(&lane, "systole_ppu_lane").replacen(
            "module systole_ppu_lane(",
            "(* keep_hierarchy *)\nmodule systole_ppu_lane(",
            1,
        ),
        ports(&lane),
    )?;
    let manifest = Manifest {
        arch: arch.name.clone(),
        generator: format!("systole-hdl {} (rust-hdl 0.46)", env!("CARGO_PKG_VERSION")),
        rows: rows as u32,
        cols: cols as u32,
        ldw_cycles: rows as u32,
        matmul_extra_cycles: (rows + cols - 1) as u32,
        modules,
    };
    let json = serde_json::to_string_pretty(&manifest).expect("manifest serializes");
    write(dir, "manifest.json", &json)?;
    Ok(manifest)
}
