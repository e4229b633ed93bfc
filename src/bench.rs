//! `systole bench`: emulator speed on one large GEMM, and (`--table`) the side-by-side table of
//! issue [7]: ResNet-18 shapes against SCALE-Sim v3, the emulator against Verilator on the
//! same RTL and program, compile times, and schedule quality against the roofline bound.
//!
//! Every row is measured in the same run. Wall times on a shared machine are noisy; the table
//! is about ratios. Peak memory of the emulator is the `VmHWM` (peak resident set) of a child
//! `systole` process that only compiles and emulates the topology, read from its own
//! `/proc/self/status` when it ends; SCALE-Sim's is `ru_maxrss` of its process from
//! `getrusage(RUSAGE_CHILDREN)` in a small Python parent.

use crate::estimate::TopoLayer;
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use systole_arch::{ArchConfig, Program};
use systole_compiler::gemm::{gemm_program, ChannelQuant, GemmLayer};
use systole_emulator::{run, IoData, RunOptions};

/// SCALE-Sim v3 on the ResNet-18 topology, recorded in ../shared/bench/scalesim/README.md.
const SCALESIM_RECORDED_WALL_S: f64 = 366.0;
const SCALESIM_RECORDED_RSS_MB: f64 = 5500.0;
/// Verilator on the generated RTL, 8x8 array (BRIEF.md), when it cannot be run here.
const VERILATOR_RECORDED_CPS: f64 = 2.5e6;

/// A random int8 GEMM layer (identity-like requantization) and its input.
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
    let a: Vec<i8> = (0..m * k).map(|_| rng.next_u64() as i8).collect();
    (layer, a)
}

/// Random data for every input of `prog` (values do not change the timing).
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

/// Emulator speed on one large GEMM: simulated cycles and MACs per wall-clock second.
pub fn gemm(arch: &ArchConfig, m: usize, k: usize, n: usize, repeat: usize) -> Result<()> {
    let (layer, a) = gemm_layer(m, k, n, 42);
    let prog = gemm_program(arch, &layer)?;
    println!(
        "gemm {m}x{k}x{n} on {} ({}x{}): {} instructions",
        arch.name,
        arch.array.rows,
        arch.array.cols,
        prog.code.len()
    );
    println!(
        "{:>4} {:>12} {:>14} {:>10} {:>14} {:>14}",
        "run", "cycles", "MACs", "wall s", "cycles/s", "MACs/s"
    );
    let mut best = f64::MAX;
    for i in 0..repeat.max(1) {
        let t0 = Instant::now();
        let r = run(
            &prog,
            arch,
            &[IoData::I8(a.clone())],
            &RunOptions::default(),
        )?;
        let wall = t0.elapsed().as_secs_f64();
        best = best.min(wall);
        let s = &r.stats;
        println!(
            "{:>4} {:>12} {:>14} {:>10.3} {:>14.3e} {:>14.3e}",
            i,
            s.cycles,
            s.macs,
            wall,
            s.cycles as f64 / wall,
            s.macs as f64 / wall
        );
        if i + 1 == repeat.max(1) {
            println!(
                "best: {:.3} s, {:.2} M simulated cycles/s, {:.1} M MACs/s; utilization {:.1}%",
                best,
                s.cycles as f64 / best / 1e6,
                s.macs as f64 / best / 1e6,
                s.utilization * 100.0
            );
        }
    }
    Ok(())
}

/// The synthetic int8 convolutions of a topology, `quick`: only its smallest rows.
fn topology_rows(path: &Path, quick: bool) -> Result<Vec<TopoLayer>> {
    let mut layers = crate::estimate::read_topology(path)?;
    if quick {
        // The two rows with the fewest MACs: enough to exercise every path of the table.
        let macs = |t: &TopoLayer| {
            let (oh, ow) = t.out_hw();
            oh * ow * t.filter_h * t.filter_w * t.channels * t.filters
        };
        let mut order: Vec<usize> = (0..layers.len()).collect();
        order.sort_by_key(|&i| macs(&layers[i]));
        let keep: Vec<usize> = order.into_iter().take(2).collect();
        layers = layers
            .into_iter()
            .enumerate()
            .filter(|(i, _)| keep.contains(i))
            .map(|(_, l)| l)
            .collect();
    }
    Ok(layers)
}

/// Peak resident set of this process in kB (`VmHWM` in /proc/self/status; Linux only).
fn vm_hwm_kb() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The child side of row (a): compile and emulate every topology row with random int8 inputs
/// (values computed), one line per layer, then this process's peak memory.
pub fn child_topology(path: &Path, arch: &ArchConfig, quick: bool) -> Result<()> {
    let t_all = Instant::now();
    let layers = topology_rows(path, quick)?;
    let (mut compile_s, mut emulate_s) = (0.0, 0.0);
    for (i, t) in layers.iter().enumerate() {
        let t0 = Instant::now();
        let (prog, _) = systole_compiler::lower::to_program(arch, &t.model())
            .map_err(|e| anyhow!("layer '{}': {e}", t.name))?;
        compile_s += t0.elapsed().as_secs_f64();
        let inputs = random_inputs(&prog, 1000 + i as u64);
        let t0 = Instant::now();
        let r = run(&prog, arch, &inputs, &RunOptions::default())
            .map_err(|e| anyhow!("layer '{}': {e}", t.name))?;
        let dt = t0.elapsed().as_secs_f64();
        emulate_s += dt;
        // A checksum of the computed output tensor: the values exist and are reproducible.
        let sum = r
            .outputs
            .iter()
            .flat_map(|o| o.to_i64())
            .fold(0u64, |h, v| {
                h.wrapping_mul(1_000_003).wrapping_add(v as u64)
            });
        println!(
            "layer\t{}\t{}\t{}\t{}\t{}\t{:.6}\t{:016x}",
            t.name,
            r.stats.cycles,
            r.stats.macs,
            r.stats.dram_bytes_read,
            r.stats.dram_bytes_written,
            dt,
            sum
        );
    }
    println!(
        "done\t{}\t{:.6}\t{:.6}\t{:.6}",
        vm_hwm_kb().map_or("-".to_string(), |k| k.to_string()),
        compile_s,
        emulate_s,
        t_all.elapsed().as_secs_f64()
    );
    Ok(())
}

struct ChildLayer {
    name: String,
    cycles: u64,
}

struct ChildRun {
    layers: Vec<ChildLayer>,
    vm_hwm_kb: Option<u64>,
    emulate_s: f64,
    /// Wall time of the child process as the parent saw it (start, compile, emulate, exit).
    process_s: f64,
}

fn run_child(path: &Path, arch: &str, quick: bool) -> Result<ChildRun> {
    let exe = std::env::current_exe().context("cannot find the systole executable")?;
    let mut cmd = Command::new(exe);
    cmd.args(["bench", "--child-topology"])
        .arg(path)
        .args(["--arch", arch]);
    if quick {
        cmd.arg("--quick");
    }
    let t0 = Instant::now();
    let out = cmd.stderr(Stdio::inherit()).output()?;
    let process_s = t0.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("the emulator child process failed ({})", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut layers = vec![];
    let mut done = None;
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.first() {
            Some(&"layer") if f.len() >= 3 => layers.push(ChildLayer {
                name: f[1].to_string(),
                cycles: f[2].parse()?,
            }),
            Some(&"done") if f.len() >= 4 => done = Some((f[1].parse().ok(), f[3].parse()?)),
            _ => {}
        }
    }
    let (vm_hwm_kb, emulate_s) =
        done.ok_or_else(|| anyhow!("the emulator child printed no summary:\n{text}"))?;
    Ok(ChildRun {
        layers,
        vm_hwm_kb,
        emulate_s,
        process_s,
    })
}

/// What SCALE-Sim did in this run.
struct ScaleSim {
    wall_s: f64,
    rss_mb: f64,
    /// Per-layer "Total Cycles (incl. prefetch)" of its COMPUTE_REPORT.csv.
    cycles: Vec<u64>,
    /// "ran", or why the recorded figures are shown.
    how: String,
}

/// Parses a SCALE-Sim COMPUTE_REPORT.csv: the second column of every data row.
fn scalesim_cycles(text: &str) -> Vec<u64> {
    text.lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(1)?.trim().parse().ok())
        .collect()
}

const SCALESIM_WRAPPER: &str = r#"
import resource, subprocess, sys, time
args, timeout = sys.argv[1:-1], float(sys.argv[-1])
t0 = time.time()
try:
    p = subprocess.run([sys.executable, "-m", "scalesim.scale"] + args,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout)
    rc = p.returncode
except subprocess.TimeoutExpired:
    rc = "timeout"
wall = time.time() - t0
print("scalesim", rc, "%.3f" % wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"#;

fn recorded_scalesim(dir: &Path, why: String) -> ScaleSim {
    ScaleSim {
        wall_s: SCALESIM_RECORDED_WALL_S,
        rss_mb: SCALESIM_RECORDED_RSS_MB,
        cycles: std::fs::read_to_string(dir.join("scalesim_resnet18_compute_report.csv"))
            .map(|t| scalesim_cycles(&t))
            .unwrap_or_default(),
        how: format!("ResNet-18 figures recorded in ../shared/bench/scalesim, not run: {why}"),
    }
}

/// Runs `python -m scalesim.scale` on the topology (with `scale.cfg` and the layout file of
/// the topology's folder) when the module imports; otherwise the recorded figures.
fn scalesim(opts: &TableOpts) -> ScaleSim {
    let dir = opts
        .topology
        .parent()
        .map_or(PathBuf::from("."), Path::to_path_buf);
    if opts.quick || opts.no_scalesim {
        return recorded_scalesim(&dir, "--quick or --no-scalesim".into());
    }
    let py = &opts.python;
    let import = Command::new(py)
        .args(["-c", "import scalesim.scale"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(import, Ok(s) if s.success()) {
        return recorded_scalesim(
            &dir,
            format!(
                "`{py} -c 'import scalesim.scale'` fails (pip install scalesim==3.0.0 \"numpy<2\")"
            ),
        );
    }
    let stem = opts
        .topology
        .file_stem()
        .map_or("resnet18".into(), |s| s.to_string_lossy().to_string());
    let layout = dir.join(format!("{stem}_layout.csv"));
    let tmp = std::env::temp_dir().join(format!("systole-bench-scalesim-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&tmp) {
        return recorded_scalesim(&dir, format!("cannot create {}: {e}", tmp.display()));
    }
    eprintln!(
        "running SCALE-Sim v3 on {} (timeout {} s) ...",
        opts.topology.display(),
        opts.scalesim_timeout
    );
    let out = Command::new(py)
        .arg("-c")
        .arg(SCALESIM_WRAPPER)
        .arg("-c")
        .arg(dir.join("scale.cfg"))
        .arg("-t")
        .arg(&opts.topology)
        .arg("-l")
        .arg(&layout)
        .arg("-p")
        .arg(&tmp)
        .args(["-s", "N"])
        .arg(opts.scalesim_timeout.to_string())
        .output();
    // Its outputs are reports and traces we only need the compute report of.
    let report = std::fs::read_dir(&tmp)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .find_map(|e| std::fs::read_to_string(e.path().join("COMPUTE_REPORT.csv")).ok());
    let _ = std::fs::remove_dir_all(&tmp);
    let text = match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout).to_string(),
        Err(e) => return recorded_scalesim(&dir, format!("cannot run {py}: {e}")),
    };
    let f: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("scalesim "))
        .unwrap_or("")
        .split_whitespace()
        .collect();
    if f.len() != 4 || f[1] != "0" {
        return recorded_scalesim(
            &dir,
            format!(
                "the run ended with {}",
                f.get(1).map_or("no result".to_string(), |r| r.to_string())
            ),
        );
    }
    // The report lands in <out>/<run_name>/COMPUTE_REPORT.csv.
    let cycles = report.map(|t| scalesim_cycles(&t)).unwrap_or_default();
    ScaleSim {
        wall_s: f[2].parse().unwrap_or(f64::NAN),
        // ru_maxrss is in kilobytes on Linux.
        rss_mb: f[3].parse::<f64>().unwrap_or(f64::NAN) / 1000.0,
        cycles,
        how: "ran in this run".into(),
    }
}

/// Row (b): one program on the Verilated RTL and on the emulator.
struct Verilated {
    arch: String,
    program: String,
    cycles: u64,
    cycles_equal: bool,
    outputs_equal: bool,
    emu_s: f64,
    /// Verilator process wall time for the program, and for an empty program with the same
    /// DRAM image (process start, DRAM image written and read back, reset).
    rtl_s: f64,
    rtl_empty_s: f64,
    build_s: f64,
}

fn verilator(quick: bool) -> Result<Verilated> {
    if quick {
        bail!("not run (--quick)");
    }
    let arch = ArchConfig::resolve("ulx3s")?;
    // The largest GEMM of this shape family whose program fits ulx3s's 8192-entry instruction
    // memory, about a million cycles.
    let (m, k, n) = (1024, 128, 256);
    let (layer, a) = gemm_layer(m, k, n, 7);
    let prog = gemm_program(&arch, &layer)?;
    let inputs = vec![IoData::I8(a)];
    let t0 = Instant::now();
    let rtl = systole_hdl::cosim::Rtl::cached(&arch, false)?;
    let build_s = t0.elapsed().as_secs_f64();
    // Three rounds, each running the emulator then Verilator, the best of each: both sides
    // see the same machine load and get the same number of tries.
    let (mut emu_s, mut rtl_s) = (f64::MAX, f64::MAX);
    let (mut emu, mut r) = (None, None);
    for _ in 0..3 {
        let t0 = Instant::now();
        let e = run(&prog, &arch, &inputs, &RunOptions::default())?;
        emu_s = emu_s.min(t0.elapsed().as_secs_f64());
        emu = Some(e);
        let v = rtl.run(&prog, &inputs, None)?;
        rtl_s = rtl_s.min(v.wall.as_secs_f64());
        r = Some(v);
    }
    let (emu, r) = (emu.expect("ran"), r.expect("ran"));
    let finish = systole_arch::asm::assemble(&format!(".arch {}\nfinish\n", arch.name), "empty")?;
    let mut empty = prog.clone();
    empty.code = finish.code;
    let mut rtl_empty_s = f64::MAX;
    for _ in 0..2 {
        rtl_empty_s = rtl_empty_s.min(rtl.run(&empty, &inputs, None)?.wall.as_secs_f64());
    }
    Ok(Verilated {
        arch: arch.name.clone(),
        program: format!("gemm {m}x{k}x{n}"),
        cycles: emu.stats.cycles,
        cycles_equal: r.cycles == emu.stats.cycles,
        outputs_equal: r.outputs == emu.outputs,
        emu_s,
        rtl_s,
        rtl_empty_s,
        build_s,
    })
}

/// Fastest of `n` runs of `f`, in seconds.
fn best_of<T>(n: usize, mut f: impl FnMut() -> Result<T>) -> Result<f64> {
    let mut best = Duration::MAX;
    for _ in 0..n.max(1) {
        let t0 = Instant::now();
        f()?;
        best = best.min(t0.elapsed());
    }
    Ok(best.as_secs_f64())
}

/// Minimal cycles on the modelled hardware for one topology row: every MAC at full array
/// utilization, and each tensor moved over DRAM once (reads: the ifmap pixels the
/// convolution reads, and the weights; writes: the ofmap; the two channels run concurrently).
/// A strided 1x1 convolution reads one pixel in `stride^2`: counting the whole ifmap would
/// make a bound that a schedule can beat.
pub struct Roofline {
    pub compute: u64,
    pub dram: u64,
}

impl Roofline {
    pub fn of(t: &TopoLayer, arch: &ArchConfig) -> Roofline {
        let (oh, ow) = t.out_hw();
        let k = (t.filter_h * t.filter_w * t.channels) as u64;
        let macs = (oh * ow) as u64 * k * t.filters as u64;
        // Input rows (columns) some window covers: all of them up to the last window's end
        // when windows meet (filter >= stride), else filter rows per window.
        let used = |o: usize, f: usize| {
            if f >= t.stride {
                (o - 1) * t.stride + f
            } else {
                o * f
            }
        };
        let pixels = used(oh, t.filter_h) * used(ow, t.filter_w);
        let read = (pixels * t.channels) as u64 + k * t.filters as u64;
        let write = (oh * ow * t.filters) as u64;
        let b = arch.dram.bytes_per_cycle.max(1) as u64;
        Roofline {
            compute: macs.div_ceil(arch.peak_macs_per_cycle().max(1)),
            dram: read.max(write).div_ceil(b),
        }
    }
    pub fn bound(&self) -> u64 {
        self.compute.max(self.dram).max(1)
    }
}

/// Whether a row's channels fill the array: input channels at least the rows and filters at
/// least the columns (the weight-stationary array maps cin x kh x kw on rows, filters on
/// columns; with fewer input channels every k-tile of one filter tap is part empty).
pub fn fills(t: &TopoLayer, arch: &ArchConfig) -> bool {
    t.channels >= arch.array.rows as usize && t.filters >= arch.array.cols as usize
}

pub struct TableOpts {
    pub topology: PathBuf,
    pub tfc: PathBuf,
    pub python: String,
    pub scalesim_timeout: u64,
    pub no_scalesim: bool,
    pub no_verilator: bool,
    pub quick: bool,
}

fn secs(s: f64) -> String {
    if s < 1.0 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

/// The table: one line per measurement, `| row | measure | systole | peer | ratio | target |`.
pub fn table(opts: &TableOpts) -> Result<()> {
    let arch = ArchConfig::resolve("scalesim32")?;
    let rows = topology_rows(&opts.topology, opts.quick)?;
    let mut out: Vec<[String; 7]> = vec![];
    #[rustfmt::skip]
    let mut line = |a: &str, b: String, c: String, d: String, e: String, f: &str, met: Option<bool>| {
        let m = match met {
            Some(true) => "yes",
            Some(false) => "no",
            None => "-",
        };
        out.push([a.into(), b, c, d, e, f.into(), m.into()]);
    };

    // (a) the emulator in a child process, then SCALE-Sim.
    eprintln!("(a) emulating {} topology rows ...", rows.len());
    let child = run_child(&opts.topology, &arch.name, opts.quick)?;
    let ss = scalesim(opts);
    let mb = child.vm_hwm_kb.map(|k| k as f64 / 1000.0);
    let what = if opts.quick {
        format!("{} smallest ResNet-18 rows (--quick)", rows.len())
    } else {
        format!("ResNet-18 shapes ({} rows)", rows.len())
    };
    line(
        "a",
        format!(
            "{what} on scalesim32, values computed: wall (child process: start, compile, emulate)"
        ),
        format!(
            "{} (emulate {})",
            secs(child.process_s),
            secs(child.emulate_s)
        ),
        format!("SCALE-Sim v3 {} ({})", secs(ss.wall_s), ss.how),
        if opts.quick {
            "- (part of the topology)".into()
        } else {
            format!("{:.0}x", ss.wall_s / child.process_s)
        },
        ">= 100x (stretch: < 1 s)",
        (!opts.quick).then_some(ss.wall_s / child.process_s >= 100.0),
    );
    line(
        "a",
        "peak memory (systole: VmHWM of the child; SCALE-Sim: ru_maxrss)".into(),
        mb.map_or("n/a".into(), |m| format!("{m:.1} MB")),
        format!("{:.0} MB", ss.rss_mb),
        mb.map_or("n/a".into(), |m| format!("{:.0}x", ss.rss_mb / m)),
        "<= 200 MB",
        mb.map(|m| m <= 200.0),
    );
    let our_cycles: u64 = child.layers.iter().map(|l| l.cycles).sum();
    let their_cycles: u64 = if opts.quick {
        0
    } else {
        ss.cycles.iter().sum()
    };
    line(
        "a",
        "simulated cycles (systole: DRAM latency and bandwidth modelled)".into(),
        format!("{our_cycles}"),
        if their_cycles > 0 {
            format!("{their_cycles}")
        } else {
            "-".into()
        },
        if their_cycles > 0 {
            format!("{:.2}x", our_cycles as f64 / their_cycles as f64)
        } else {
            "-".into()
        },
        "-",
        None,
    );

    // (b) Verilator.
    eprintln!("(b) emulator vs Verilator ...");
    let v = if opts.no_verilator {
        Err(anyhow!("not run (--no-verilator)"))
    } else {
        verilator(opts.quick)
    };
    match v {
        Ok(v) => {
            let rtl_net = (v.rtl_s - v.rtl_empty_s).max(1e-9);
            let cps = |s: f64| v.cycles as f64 / s.max(1e-9) / 1e6;
            line(
                "b",
                format!(
                    "{} on {} RTL, {} cycles ({}; outputs {}); best of 3 rounds, each running both; Verilator model build/cache {}",
                    v.program,
                    v.arch,
                    v.cycles,
                    if v.cycles_equal {
                        "cycles equal"
                    } else {
                        "CYCLES DIFFER"
                    },
                    if v.outputs_equal { "equal" } else { "DIFFER" },
                    secs(v.build_s)
                ),
                format!("{} = {:.1} M cycles/s", secs(v.emu_s), cps(v.emu_s)),
                format!(
                    "Verilator {} = {:.2} M cycles/s (process {}, minus {} for an empty program)",
                    secs(rtl_net),
                    cps(rtl_net),
                    secs(v.rtl_s),
                    secs(v.rtl_empty_s)
                ),
                format!("{:.1}x", rtl_net / v.emu_s),
                ">= 100x",
                Some(rtl_net / v.emu_s >= 100.0 && v.cycles_equal && v.outputs_equal),
            );
        }
        Err(e) => line(
            "b",
            format!("emulator vs Verilator: {e}"),
            "-".into(),
            format!(
                "Verilator {:.1} M cycles/s on 8x8 (BRIEF.md; recorded, not run)",
                VERILATOR_RECORDED_CPS / 1e6
            ),
            "-".into(),
            ">= 100x",
            None,
        ),
    }

    // (c) compile times (fastest of several).
    eprintln!("(c) compile times ...");
    let ulx3s = ArchConfig::resolve("ulx3s")?;
    let n = if opts.quick { 1 } else { 5 };
    match best_of(n, || crate::model::compile(&opts.tfc, &ulx3s)) {
        Ok(s) => line(
            "c",
            format!(
                "compile {} on ulx3s (load, import, lower, emit; best of {n})",
                opts.tfc
                    .parent()
                    .and_then(|p| p.file_name())
                    .map_or("TFC".into(), |s| s.to_string_lossy().to_string())
            ),
            secs(s),
            "-".into(),
            "-".into(),
            "< 50 ms",
            Some(s < 0.05),
        ),
        Err(e) => line(
            "c",
            format!("compile TFC: {e}"),
            "-".into(),
            "-".into(),
            "-".into(),
            "< 50 ms",
            None,
        ),
    }
    let s = best_of(if opts.quick { 1 } else { 3 }, || {
        for t in &rows {
            systole_compiler::lower::to_program(&arch, &t.model())
                .map_err(|e| anyhow!("{}: {e}", t.name))?;
        }
        Ok(())
    })?;
    line(
        "c",
        format!("compile {what} on scalesim32 (lower, emit)"),
        secs(s),
        "-".into(),
        "-".into(),
        "< 2 s",
        Some(s < 2.0),
    );

    // (d) schedule quality.
    let (mut total_c, mut total_b) = (0u64, 0u64);
    for (t, l) in rows.iter().zip(&child.layers) {
        let r = Roofline::of(t, &arch);
        let ratio = l.cycles as f64 / r.bound() as f64;
        total_c += l.cycles;
        total_b += r.bound();
        let peer = rows_index(&opts.topology, &t.name)
            .and_then(|i| ss.cycles.get(i))
            .map_or("-".into(), |&c| {
                format!("SCALE-Sim {:.2}x ({c})", c as f64 / r.bound() as f64)
            });
        let f = fills(t, &arch);
        line(
            "d",
            format!(
                "{} cycles / roofline ({} bound: compute {}, DRAM {}){}",
                l.name,
                if r.compute >= r.dram {
                    "compute"
                } else {
                    "DRAM"
                },
                r.compute,
                r.dram,
                if f { ", fills the array" } else { "" }
            ),
            format!("{:.2}x ({})", ratio, l.cycles),
            peer,
            format!("{ratio:.2}"),
            if f {
                "<= 1.15 (fills)"
            } else {
                "- (does not fill)"
            },
            f.then_some(ratio <= 1.15),
        );
    }
    line(
        "d",
        "all rows: cycles / sum of bounds".into(),
        format!("{:.2}x", total_c as f64 / total_b.max(1) as f64),
        "-".into(),
        format!("{:.2}", total_c as f64 / total_b.max(1) as f64),
        "-",
        None,
    );

    let head = [
        "row", "measure", "systole", "peer", "ratio", "target", "met",
    ];
    println!("| {} |", head.join(" | "));
    println!("|{}", "---|".repeat(head.len()));
    for r in &out {
        println!("| {} |", r.join(" | "));
    }
    Ok(())
}

/// Index of the row called `name` in the full topology (SCALE-Sim's LayerID).
fn rows_index(topology: &Path, name: &str) -> Option<usize> {
    crate::estimate::read_topology(topology)
        .ok()?
        .iter()
        .position(|t| t.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(h: usize, f: usize, c: usize, n: usize, s: usize) -> TopoLayer {
        TopoLayer {
            name: "t".into(),
            ifmap_h: h,
            ifmap_w: h,
            filter_h: f,
            filter_w: f,
            channels: c,
            filters: n,
            stride: s,
        }
    }

    /// The DRAM bound counts the ifmap pixels a convolution reads: one in four for a 1x1 at
    /// stride 2 (ResNet-18's Conv4_s), all but the last row and column for a 3x3 at stride 2
    /// on an even size (Conv3_1a), every pixel at stride 1.
    #[test]
    fn the_roofline_counts_the_pixels_a_convolution_reads() {
        let arch = ArchConfig::resolve("scalesim32").unwrap();
        let r = Roofline::of(&row(28, 1, 128, 256, 2), &arch);
        assert_eq!(
            (r.compute, r.dram),
            (6272, (14 * 14 * 128 + 128 * 256) / 16)
        );
        assert_eq!(r.bound(), 6272);
        let r = Roofline::of(&row(56, 3, 64, 128, 2), &arch);
        assert_eq!(r.dram, (55 * 55 * 64 + 576 * 128) as u64 / 16);
        let r = Roofline::of(&row(58, 3, 64, 64, 1), &arch);
        assert_eq!(r.dram, (58 * 58 * 64 + 576 * 64) as u64 / 16);
    }
}
