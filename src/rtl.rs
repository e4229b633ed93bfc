//! `systole rtl` and `systole cosim`: the accelerator's Verilog, and a program run on both the
//! RTL (Verilator) and the emulator.

use anyhow::{bail, Context, Result};
use std::path::Path;
use systole_arch::{ArchConfig, Program};
use systole_hdl::cosim::{cosim, write_sources, Rtl};

/// Writes the Verilog, the block manifest and the Verilator harness of `arch` into `dir`.
pub fn write(arch: &ArchConfig, dir: &Path) -> Result<()> {
    write_sources(arch, dir).with_context(|| format!("{}", dir.display()))?;
    println!(
        "wrote the {} RTL (top module systole_top, {}), manifest.json and harness.cpp to {}",
        arch.name,
        systole_hdl::top::RTL_FILES.join(", "),
        dir.display()
    );
    Ok(())
}

/// Runs `prog` on the RTL and on the emulator; an error when outputs or cycles differ.
pub fn run(
    prog: &Program,
    arch: &ArchConfig,
    inputs: &[systole_emulator::IoData],
    vcd: Option<&Path>,
) -> Result<()> {
    let rtl = Rtl::cached(arch, vcd.is_some())?;
    let c = cosim(&rtl, prog, inputs, vcd)?;
    let outs: Vec<_> = prog.outputs().collect();
    for (i, d) in outs.iter().enumerate() {
        let (a, b) = (&c.rtl.outputs[i], &c.emu_outputs[i]);
        let diff = a
            .to_i64()
            .iter()
            .zip(b.to_i64())
            .filter(|(x, y)| **x != *y)
            .count();
        println!(
            "output {} {:?}: {}",
            d.name,
            d.shape,
            if diff == 0 {
                "equal".to_string()
            } else {
                format!("{diff} element(s) differ")
            }
        );
    }
    let secs = |d: std::time::Duration| d.as_secs_f64().max(1e-9);
    println!(
        "cycles: rtl {} emulator {} ({})",
        c.rtl.cycles,
        c.emu_cycles,
        if c.cycles_equal() { "equal" } else { "differ" }
    );
    println!(
        "wall: rtl (Verilator) {:.3} s = {:.2} M cycles/s, emulator {:.3} s = {:.2} M cycles/s",
        secs(c.rtl.wall),
        c.rtl.cycles as f64 / secs(c.rtl.wall) / 1e6,
        secs(c.emu_wall),
        c.emu_cycles as f64 / secs(c.emu_wall) / 1e6
    );
    if let Some(v) = vcd {
        println!("wrote {}", v.display());
    }
    if !c.ok() {
        bail!("the RTL and the emulator disagree");
    }
    Ok(())
}
