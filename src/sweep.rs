//! `systole sweep`: latency, energy and area of a model over a grid of accelerator shapes.
//!
//! Each design point is the base arch with the array resized (`--rows`, `--cols`), the input,
//! weight and output buffers resized (`--buffers`, bytes each; the accumulator gets four times
//! as much, its lines being int32) and a MAC precision (`--precision int8|xnor`: `xnor` builds
//! the binary precision in, so bipolar layers run on the XNOR-popcount datapath; it needs
//! columns in multiples of 8). A DMA beat
//! must not straddle a buffer line, so a point's DRAM bytes per cycle is the base's capped at
//! gcd(rows, cols); its instruction memory grows to the next power of two that holds the
//! program when the base's is too small (control energy is priced at that size).
//!
//! Points run in parallel on every core (rayon), with a progress bar; `--shard I/N` runs the
//! points whose index is I modulo N, and `systole sweep merge` joins shard CSVs (checking that
//! every point of the grid is there exactly once) and recomputes the Pareto front.

use anyhow::{anyhow, bail, Context, Result};
use rayon::prelude::*;
use std::path::Path;
use systole_arch::ArchConfig;

use crate::estimate::{Engine, Estimate, TopoLayer};

/// MAC datapath a point prices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Int8,
    Xnor,
}

impl Precision {
    pub fn parse(s: &str) -> Result<Precision> {
        match s.trim() {
            "int8" => Ok(Precision::Int8),
            "xnor" | "binary" => Ok(Precision::Xnor),
            o => bail!("unknown precision '{o}' (int8, xnor)"),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Precision::Int8 => "int8",
            Precision::Xnor => "xnor",
        }
    }
}

/// One design point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub index: usize,
    pub rows: u32,
    pub cols: u32,
    /// Bytes of the input, weight and output buffers (None: the base arch's).
    pub buffer_bytes: Option<u32>,
    pub precision: Precision,
}

/// The grid, in a fixed order (rows, then cols, buffers, precision).
pub fn points(rows: &[u32], cols: &[u32], buffers: &[u32], precisions: &[Precision]) -> Vec<Point> {
    let bufs: Vec<Option<u32>> = if buffers.is_empty() {
        vec![None]
    } else {
        buffers.iter().map(|&b| Some(b)).collect()
    };
    let mut v = Vec::new();
    for &r in rows {
        for &c in cols {
            for &b in &bufs {
                for &p in precisions {
                    v.push(Point {
                        index: v.len(),
                        rows: r,
                        cols: c,
                        buffer_bytes: b,
                        precision: p,
                    });
                }
            }
        }
    }
    v
}

/// `I/N` (0 <= I < N).
pub fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| anyhow!("--shard '{s}': expected I/N, e.g. 0/4"))?;
    let (i, n): (usize, usize) = (
        i.trim()
            .parse()
            .map_err(|_| anyhow!("--shard '{s}': I is not a number"))?,
        n.trim()
            .parse()
            .map_err(|_| anyhow!("--shard '{s}': N is not a number"))?,
    );
    if n == 0 || i >= n {
        bail!("--shard '{s}': need 0 <= I < N");
    }
    Ok((i, n))
}

/// A comma-separated list of positive integers (`--rows 4,8,16`).
pub fn parse_list(flag: &str, s: &str) -> Result<Vec<u32>> {
    let v: Vec<u32> = s
        .split(',')
        .map(|x| {
            x.trim()
                .parse::<u32>()
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| anyhow!("--{flag} '{s}': '{}' is not a positive integer", x.trim()))
        })
        .collect::<Result<_>>()?;
    if v.is_empty() {
        bail!("--{flag}: empty list");
    }
    Ok(v)
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The arch of a design point (validated).
pub fn point_arch(base: &ArchConfig, p: &Point, imem: u32) -> Result<ArchConfig> {
    let mut a = base.clone();
    a.name = format!("{}-{}x{}", base.name, p.rows, p.cols);
    a.array.rows = p.rows;
    a.array.cols = p.cols;
    a.array.precisions = match p.precision {
        Precision::Int8 => vec![systole_arch::config::Precision::Int8],
        Precision::Xnor => vec![
            systole_arch::config::Precision::Int8,
            systole_arch::config::Precision::Binary,
        ],
    };
    if let Some(b) = p.buffer_bytes {
        a.name.push_str(&format!("-{b}B"));
        a.buffers.input.size_bytes = b;
        a.buffers.weight.size_bytes = b;
        a.buffers.output.size_bytes = b;
        a.buffers.accumulator.size_bytes = b.saturating_mul(4);
    }
    a.dram.bytes_per_cycle = gcd(base.dram.bytes_per_cycle, gcd(p.rows, p.cols));
    a.dram.size_bytes = 1 << 32;
    a.controller.imem_instructions = imem;
    a.validate()
        .map_err(|(f, m)| anyhow!("point {}: arch `{f}`: {m}", describe(p)))?;
    Ok(a)
}

fn describe(p: &Point) -> String {
    format!(
        "{}x{}{} {}",
        p.rows,
        p.cols,
        p.buffer_bytes.map_or(String::new(), |b| format!(" {b} B")),
        p.precision.name()
    )
}

/// What a sweep runs.
pub enum Workload {
    Model {
        graph: systole_compiler::ir::Graph,
        path: std::path::PathBuf,
    },
    Topology {
        name: String,
        layers: Vec<TopoLayer>,
    },
}

/// Estimate of `w` on `arch` with `engine`.
pub fn estimate(w: &Workload, arch: &ArchConfig, engine: Engine) -> Result<Estimate> {
    match w {
        Workload::Model { graph, path } => {
            let c = crate::model::compile_graph(graph, path, arch)?;
            crate::estimate::estimate_program(
                &path.display().to_string(),
                &c.program,
                &c.layers,
                arch,
                engine,
            )
        }
        Workload::Topology { name, layers } => {
            crate::estimate::estimate_topology(name, layers, arch, engine, |_| {})
        }
    }
}

/// Instructions of the largest program `w` compiles to on `arch` (to size the instruction
/// memory).
fn program_size(w: &Workload, arch: &ArchConfig) -> Result<usize> {
    Ok(match w {
        Workload::Model { graph, path } => crate::model::compile_graph(graph, path, arch)?
            .program
            .code
            .len(),
        Workload::Topology { layers, .. } => {
            let mut n = 0;
            for t in layers {
                let (p, _) = systole_compiler::lower::to_program(arch, &t.model())
                    .map_err(|e| anyhow!("layer '{}': {e}", t.name))?;
                n = n.max(p.code.len());
            }
            n
        }
    })
}

/// FPGA resources of an arch from the per-block area model (`AREA_MODEL`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Area {
    pub luts: f64,
    pub ffs: f64,
    pub dsp: u64,
    pub bram: u64,
}

/// Per-block ECP5 resources (LUT4s and flip-flops) of the generated RTL, from yosys
/// `synth_ecp5` of each block (docs/area.md says how to regenerate them).
pub struct AreaModel {
    pub pe_luts: f64,
    pub pe_ffs: f64,
    pub pe_dsp: u64,
    pub ppu_lane_luts: f64,
    pub ppu_lane_ffs: f64,
    pub ppu_lane_dsp: u64,
    /// Controller, DMA engines and buffer port logic: a fixed part plus a part per byte of
    /// line width (rows + cols).
    pub fixed_luts: f64,
    pub fixed_ffs: f64,
    pub per_lane_luts: f64,
    pub per_lane_ffs: f64,
    pub source: &'static str,
}

/// Calibration (docs/area.md): yosys 0.23 `synth_ecp5 -top BLOCK; stat` of the Verilog
/// `systole rtl` writes (LUT-equivalents = LUT4 + 2 per CCU2C carry cell): `systole_pe` 16
/// CCU2C, 48 TRELLIS_FF, 1 MULT18X18D; `systole_ppu_lane` 1855 LUT4, 384 CCU2C, 311 FF, 4
/// MULT18X18D (neither depends on the array size). The controller, load and store engines
/// (`fixed_*`, `per_lane_*`): a line through two synthesized points, tiny (rows + cols = 8:
/// controller 2401, load 1517, store 987 LUT4 under `synth_ice40`, 2690 flip-flops) and ulx3s
/// (rows + cols = 16: 1674 + 5376 + 901 LUT4 under `synth_ecp5`); both families count 4-input
/// LUTs, and the load engine's beat multiplexer is what grows with the line width. Flip-flops
/// are from the tiny point only. Block RAMs come from the buffer geometry.
pub const AREA_MODEL: AreaModel = AreaModel {
    pe_luts: 32.0,
    pe_ffs: 48.0,
    pe_dsp: 1,
    ppu_lane_luts: 2623.0,
    ppu_lane_ffs: 311.0,
    ppu_lane_dsp: 4,
    fixed_luts: 1859.0,
    fixed_ffs: 2690.0,
    per_lane_luts: 380.75,
    per_lane_ffs: 0.0,
    source: "yosys 0.23: synth_ecp5 of systole_pe and systole_ppu_lane; controller, load and store fitted through tiny (synth_ice40) and ulx3s (synth_ecp5) per-block runs",
};

/// 18 Kbit block RAMs (DP16KD, 2048 x 9 bits) a buffer takes: one per byte lane of a line
/// per 2048 lines, per bank.
fn brams(arch: &ArchConfig, k: systole_arch::BufferKind) -> u64 {
    let b = arch.buffer(k);
    let lines_per_bank = arch.lines_per_bank(k) as u64;
    b.banks as u64 * arch.line_bytes(k) as u64 * lines_per_bank.div_ceil(2048)
}

pub fn area(arch: &ArchConfig) -> Area {
    let m = &AREA_MODEL;
    let (r, c) = (arch.array.rows as f64, arch.array.cols as f64);
    Area {
        luts: m.fixed_luts + m.pe_luts * r * c + m.ppu_lane_luts * c + m.per_lane_luts * (r + c),
        ffs: m.fixed_ffs + m.pe_ffs * r * c + m.ppu_lane_ffs * c + m.per_lane_ffs * (r + c),
        dsp: m.pe_dsp * (arch.array.rows * arch.array.cols) as u64
            + m.ppu_lane_dsp * arch.array.cols as u64,
        bram: systole_arch::BufferKind::ALL
            .iter()
            .map(|&k| brams(arch, k))
            .sum(),
    }
}

/// One point's results (or why it could not be built).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub point: Point,
    pub of: usize,
    pub engine: Engine,
    pub status: String,
    pub cycles: u64,
    pub latency_us: f64,
    pub energy_nj: f64,
    pub mac_nj: f64,
    pub sram_nj: f64,
    pub dram_nj: f64,
    pub utilization: f64,
    pub area: Area,
    pub pareto: bool,
}

/// Runs one point.
pub fn run_point(w: &Workload, base: &ArchConfig, p: &Point, of: usize, engine: Engine) -> Row {
    let mut row = Row {
        point: *p,
        of,
        engine,
        status: "ok".into(),
        cycles: 0,
        latency_us: 0.0,
        energy_nj: 0.0,
        mac_nj: 0.0,
        sram_nj: 0.0,
        dram_nj: 0.0,
        utilization: 0.0,
        area: Area {
            luts: 0.0,
            ffs: 0.0,
            dsp: 0,
            bram: 0,
        },
        pareto: false,
    };
    let result = (|| -> Result<Estimate> {
        let big = point_arch(base, p, 1 << 24)?;
        let need = program_size(w, &big)?;
        let imem = base
            .controller
            .imem_instructions
            .max((need as u32).next_power_of_two());
        let arch = point_arch(base, p, imem)?;
        row.area = area(&arch);
        estimate(w, &arch, engine)
    })();
    match result {
        Ok(e) => {
            let t = &e.total;
            let en = &t.energy;
            // The point's arch runs binary layers on the XNOR datapath or not: the
            // emulator's MAC energy already prices what ran.
            let mac = en.mac_pj;
            row.cycles = t.cycles;
            row.latency_us = t.latency_us;
            row.energy_nj = (en.total_pj - en.mac_pj + mac) / 1e3;
            row.mac_nj = mac / 1e3;
            row.sram_nj = (en.input_buffer_pj
                + en.weight_buffer_pj
                + en.accumulator_buffer_pj
                + en.output_buffer_pj)
                / 1e3;
            row.dram_nj = en.dram_pj / 1e3;
            row.utilization = t.utilization;
        }
        Err(e) => row.status = format!("infeasible: {e:#}"),
    }
    row
}

/// Marks the rows no other ok row beats on latency, energy and LUTs at once.
pub fn mark_pareto(rows: &mut [Row]) {
    let key = |r: &Row| (r.latency_us, r.energy_nj, r.area.luts);
    let ok: Vec<(f64, f64, f64)> = rows.iter().filter(|r| r.status == "ok").map(key).collect();
    for r in rows.iter_mut() {
        let (l, e, a) = key(r);
        r.pareto = r.status == "ok"
            && !ok
                .iter()
                .any(|&(l2, e2, a2)| l2 <= l && e2 <= e && a2 <= a && (l2 < l || e2 < e || a2 < a));
    }
}

/// Runs `pts` in parallel; `progress` is called once per finished point.
pub fn run(
    w: &Workload,
    base: &ArchConfig,
    pts: &[Point],
    of: usize,
    engine: Engine,
    progress: impl Fn() + Sync,
) -> Vec<Row> {
    let mut rows: Vec<Row> = pts
        .par_iter()
        .map(|p| {
            let r = run_point(w, base, p, of, engine);
            progress();
            r
        })
        .collect();
    rows.sort_by_key(|r| r.point.index);
    mark_pareto(&mut rows);
    rows
}

pub const HEADER: &str = "index,of,rows,cols,buffer_bytes,precision,engine,status,cycles,latency_us,energy_nj,mac_nj,sram_nj,dram_nj,utilization,luts,ffs,dsp,bram,pareto";

fn quote(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\"").replace('\n', " "))
    } else {
        s.to_string()
    }
}

pub fn to_csv(rows: &[Row]) -> String {
    let mut s = format!("{HEADER}\n");
    for r in rows {
        let p = &r.point;
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.0},{:.0},{},{},{}\n",
            p.index,
            r.of,
            p.rows,
            p.cols,
            p.buffer_bytes.map_or(String::new(), |b| b.to_string()),
            p.precision.name(),
            match r.engine {
                Engine::Emulator => "emulator",
                Engine::Analytic => "analytic",
            },
            quote(&r.status),
            r.cycles,
            r.latency_us,
            r.energy_nj,
            r.mac_nj,
            r.sram_nj,
            r.dram_nj,
            r.utilization,
            r.area.luts,
            r.area.ffs,
            r.area.dsp,
            r.area.bram,
            r.pareto
        ));
    }
    s
}

/// Splits one CSV line (double quotes around fields with commas).
fn split_csv(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                out.last_mut().unwrap().push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out
}

/// Reads a sweep CSV back.
pub fn parse_csv(text: &str, name: &str) -> Result<Vec<Row>> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    match lines.next() {
        Some((_, h)) if h.trim() == HEADER => {}
        Some(_) => bail!("{name}: line 1 is not a sweep header ({HEADER})"),
        None => bail!("{name}: empty file"),
    }
    let mut rows = Vec::new();
    for (i, line) in lines {
        let f = split_csv(line);
        let no = i + 1;
        if f.len() != 20 {
            bail!("{name}: line {no}: {} fields, expected 20", f.len());
        }
        let num = |j: usize| -> Result<f64> {
            f[j].parse::<f64>()
                .map_err(|_| anyhow!("{name}: line {no}: field {j} '{}' is not a number", f[j]))
        };
        let int = |j: usize| -> Result<u64> {
            f[j].parse::<u64>()
                .map_err(|_| anyhow!("{name}: line {no}: field {j} '{}' is not an integer", f[j]))
        };
        rows.push(Row {
            point: Point {
                index: int(0)? as usize,
                rows: int(2)? as u32,
                cols: int(3)? as u32,
                buffer_bytes: if f[4].is_empty() {
                    None
                } else {
                    Some(int(4)? as u32)
                },
                precision: Precision::parse(&f[5])
                    .map_err(|e| anyhow!("{name}: line {no}: {e}"))?,
            },
            of: int(1)? as usize,
            engine: match f[6].as_str() {
                "emulator" => Engine::Emulator,
                "analytic" => Engine::Analytic,
                o => bail!("{name}: line {no}: unknown engine '{o}'"),
            },
            status: f[7].clone(),
            cycles: int(8)?,
            latency_us: num(9)?,
            energy_nj: num(10)?,
            mac_nj: num(11)?,
            sram_nj: num(12)?,
            dram_nj: num(13)?,
            utilization: num(14)?,
            area: Area {
                luts: num(15)?,
                ffs: num(16)?,
                dsp: int(17)?,
                bram: int(18)?,
            },
            pareto: f[19] == "true",
        });
    }
    Ok(rows)
}

/// Joins shard CSVs: every index of the grid exactly once, Pareto front recomputed.
pub fn merge(paths: &[std::path::PathBuf]) -> Result<Vec<Row>> {
    let mut all: Vec<Row> = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("cannot read shard {}", p.display()))?;
        all.extend(parse_csv(&text, &p.display().to_string())?);
    }
    if all.is_empty() {
        bail!("the shards hold no points");
    }
    let of = all[0].of;
    if let Some(r) = all.iter().find(|r| r.of != of) {
        bail!(
            "the shards come from different sweeps: point {} is one of {}, others of {of}",
            r.point.index,
            r.of
        );
    }
    all.sort_by_key(|r| r.point.index);
    for w in all.windows(2) {
        if w[0].point.index == w[1].point.index {
            bail!("point {} appears in more than one shard", w[0].point.index);
        }
    }
    let have: std::collections::HashSet<usize> = all.iter().map(|r| r.point.index).collect();
    let missing: Vec<String> = (0..of)
        .filter(|i| !have.contains(i))
        .map(|i| i.to_string())
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} of {of} points are missing (indices {}): a shard did not run or was not given",
            missing.len(),
            missing
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(r) = all.iter().find(|r| r.point.index >= of) {
        bail!("point {} is outside the grid of {of}", r.point.index);
    }
    mark_pareto(&mut all);
    Ok(all)
}

/// Writes `rows` as CSV to `out` atomically.
pub fn write_csv(rows: &[Row], out: &Path) -> Result<()> {
    systole_arch::image::write_atomic(out, to_csv(rows).as_bytes())
        .with_context(|| format!("cannot write {}", out.display()))
}
