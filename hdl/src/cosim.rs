//! Co-simulation of the whole accelerator's Verilog in Verilator against the emulator.
//!
//! `Rtl::build` writes the RTL for one arch (`top::write_rtl`) and the C++ driver
//! (`harness.cpp`: it loads the instruction memory and models DRAM with exactly the timing of
//! `systole_emulator::dram`), and compiles them with Verilator. `Rtl::run` runs a program with
//! its inputs and returns the outputs and the accelerator's cycle count; `cosim` runs both the
//! RTL and the emulator and compares.

use crate::top::{write_rtl, RTL_FILES};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use systole_arch::{ArchConfig, Program};
use systole_emulator::{io, IoData, Machine, RunOptions};

/// The Verilator driver's source.
pub const HARNESS_CPP: &str = include_str!("harness.cpp");

#[derive(Debug, thiserror::Error)]
pub enum CosimError {
    #[error("{0}")]
    Rtl(#[from] crate::verilog::Error),
    #[error("{0}")]
    Tool(String),
    #[error("emulator: {0}")]
    Emu(#[from] systole_emulator::EmuError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A compiled Verilator model of one arch.
pub struct Rtl {
    pub arch: ArchConfig,
    pub dir: PathBuf,
    pub exe: PathBuf,
    pub trace: bool,
}

/// What one RTL run produced.
#[derive(Debug, Clone)]
pub struct RtlRun {
    pub outputs: Vec<IoData>,
    pub cycles: u64,
    pub dram: Vec<u8>,
    pub wall: Duration,
}

fn tool(cmd: &mut Command) -> Result<String, CosimError> {
    let out = cmd.output().map_err(|e| {
        CosimError::Tool(format!(
            "cannot run {:?} (install it: scripts/test.sh): {e}",
            cmd.get_program()
        ))
    })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(CosimError::Tool(format!("{cmd:?} failed:\n{text}")))
    }
}

/// Writes the RTL and the harness of `arch` into `dir` (no compilation).
pub fn write_sources(arch: &ArchConfig, dir: &Path) -> Result<(), CosimError> {
    write_rtl(arch, dir)?;
    std::fs::write(dir.join("harness.cpp"), HARNESS_CPP)?;
    Ok(())
}

/// The folder models are cached in: `$SYSTOLE_RTL_CACHE`, else `systole-rtl` in the system's
/// temporary directory.
pub fn cache_base() -> PathBuf {
    std::env::var_os("SYSTOLE_RTL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("systole-rtl"))
}

/// Writes sources into `dir` with `write` (which returns the Verilog and C++ files to compile,
/// in order) and compiles them with Verilator into `dir/obj/V<top>`, unless a model built
/// from the same sources and flags is already there. One build at a time in this process:
/// tests share cached directories.
pub fn verilate_cached(
    dir: &Path,
    top: &str,
    trace: bool,
    write: impl FnOnce(&Path) -> Result<Vec<String>, CosimError>,
) -> Result<PathBuf, CosimError> {
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    std::fs::create_dir_all(dir)?;
    let files = write(dir)?;
    let obj = dir.join("obj");
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for f in &files {
        std::fs::read(dir.join(f))?.hash(&mut h);
    }
    trace.hash(&mut h);
    let stamp = format!("{:016x}\n", h.finish());
    let exe = obj.join(format!("V{top}"));
    let stamp_path = dir.join("build.stamp");
    if exe.exists() && std::fs::read_to_string(&stamp_path).ok().as_deref() == Some(&stamp) {
        return Ok(exe);
    }
    let _ = std::fs::remove_file(&stamp_path);
    let mut cmd = Command::new("verilator");
    cmd.current_dir(dir)
        .args(["--cc", "--exe", "--build", "-O2", "-j", "2"])
        .args(["-Wno-WIDTH", "-Wno-UNOPTFLAT", "-Wno-PINCONNECTEMPTY"])
        .args(["--top-module", top, "--Mdir"])
        .arg(&obj)
        .args(["-CFLAGS", "-O1"]);
    if trace {
        cmd.arg("--trace");
    }
    cmd.args(&files);
    tool(&mut cmd)?;
    std::fs::write(&stamp_path, stamp)?;
    Ok(exe)
}

impl Rtl {
    /// Writes the sources into `dir` and compiles them with Verilator (`trace`: with VCD
    /// support).
    pub fn build(arch: &ArchConfig, dir: &Path, trace: bool) -> Result<Rtl, CosimError> {
        let exe = verilate_cached(dir, "systole_top", trace, |dir| {
            write_sources(arch, dir)?;
            Ok(RTL_FILES
                .iter()
                .chain(&["harness.cpp"])
                .map(|s| s.to_string())
                .collect())
        })?;
        Ok(Rtl {
            arch: arch.clone(),
            dir: dir.to_path_buf(),
            exe,
            trace,
        })
    }

    /// `build` in a per-arch directory under `cache_base()`, reusing the compiled model while
    /// the sources are unchanged.
    pub fn cached(arch: &ArchConfig, trace: bool) -> Result<Rtl, CosimError> {
        let dir = cache_base().join(format!(
            "{}-{:016x}{}",
            arch.name,
            arch.fingerprint(),
            if trace { "-trace" } else { "" }
        ));
        Rtl::build(arch, &dir, trace)
    }

    /// Runs `prog` with `inputs` (one per input descriptor, in image order).
    pub fn run(
        &self,
        prog: &Program,
        inputs: &[IoData],
        vcd: Option<&Path>,
    ) -> Result<RtlRun, CosimError> {
        self.run_limited(prog, inputs, vcd, 200_000_000)
    }

    /// `run`, stopping the RTL with an error after `max_cycles` (a hung model otherwise runs
    /// to the harness's 200 M).
    pub fn run_limited(
        &self,
        prog: &Program,
        inputs: &[IoData],
        vcd: Option<&Path>,
        max_cycles: u64,
    ) -> Result<RtlRun, CosimError> {
        let mut m = Machine::new(prog, &self.arch, &RunOptions::default())?;
        io::write_inputs(&mut m.dram.bytes, prog, inputs)?;
        let tmp = tempfile::tempdir()?;
        let imem: Vec<u8> = prog
            .code
            .iter()
            .flat_map(|i| i.encode().expect("a loaded program encodes"))
            .collect();
        let (fi, fd, fo) = (
            tmp.path().join("imem.bin"),
            tmp.path().join("dram.bin"),
            tmp.path().join("out.bin"),
        );
        std::fs::write(&fi, &imem)?;
        std::fs::write(&fd, &m.dram.bytes)?;
        let mut cmd = Command::new(&self.exe);
        cmd.arg(&fi)
            .arg(&fd)
            .arg(&fo)
            .arg(self.arch.dram.bytes_per_cycle.to_string())
            .arg(self.arch.dram.latency_cycles.to_string())
            .arg(max_cycles.to_string());
        if let Some(v) = vcd {
            if !self.trace {
                return Err(CosimError::Tool(
                    "this model was built without --trace".into(),
                ));
            }
            cmd.arg(v);
        }
        let t0 = Instant::now();
        let text = tool(&mut cmd)?;
        let wall = t0.elapsed();
        let cycles = text
            .lines()
            .find_map(|l| l.strip_prefix("cycles "))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| CosimError::Tool(format!("harness printed no cycle count:\n{text}")))?;
        let dram = std::fs::read(&fo)?;
        let outputs = prog.outputs().map(|d| io::read_tensor(&dram, d)).collect();
        Ok(RtlRun {
            outputs,
            cycles,
            dram,
            wall,
        })
    }
}

/// Both runs of one program.
#[derive(Debug, Clone)]
pub struct Cosim {
    pub rtl: RtlRun,
    pub emu_outputs: Vec<IoData>,
    pub emu_cycles: u64,
    pub emu_wall: Duration,
    /// The emulator's statistics (stalls show which timing paths a program exercised).
    pub emu_stats: systole_emulator::Stats,
}

impl Cosim {
    pub fn outputs_equal(&self) -> bool {
        self.rtl.outputs == self.emu_outputs
    }
    pub fn cycles_equal(&self) -> bool {
        self.rtl.cycles == self.emu_cycles
    }
    pub fn ok(&self) -> bool {
        self.outputs_equal() && self.cycles_equal()
    }
}

/// Runs `prog` on the RTL and on the emulator.
pub fn cosim(
    rtl: &Rtl,
    prog: &Program,
    inputs: &[IoData],
    vcd: Option<&Path>,
) -> Result<Cosim, CosimError> {
    let t0 = Instant::now();
    let emu = systole_emulator::run(prog, &rtl.arch, inputs, &RunOptions::default())?;
    let emu_wall = t0.elapsed();
    // Twice the emulator's cycles and then some: a model that differs by more has failed, and
    // a hung one stops here rather than at 200 M cycles.
    let r = rtl.run_limited(prog, inputs, vcd, 2 * emu.stats.cycles + 10_000)?;
    Ok(Cosim {
        rtl: r,
        emu_outputs: emu.outputs,
        emu_cycles: emu.stats.cycles,
        emu_wall,
        emu_stats: emu.stats,
    })
}
