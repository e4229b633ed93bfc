//! `systole estimate`: per-layer latency, array utilization, traffic per memory level and
//! energy split by component, all from the cycle-exact emulator's event counts (one run on
//! zero inputs: timing does not depend on data) and the arch's energy table.
//!
//! A model's layers run in one program; the emulator records its statistics at the first
//! instruction of every layer (each layer ends in a barrier), and a layer's share is the
//! difference of two records. A SCALE-Sim topology CSV becomes one synthetic int8
//! convolution per row (no padding: out = (in - filter) / stride + 1), each its own program,
//! as SCALE-Sim simulates its rows one by one.

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use std::path::Path;
use systole_arch::{ArchConfig, Program};
use systole_compiler::lower::{self, LayerReport};
use systole_compiler::qir::{ConvGeom, QDense, QIo, QModel, QOut};
use systole_emulator::stats::Energy;
use systole_emulator::{run, IoData, RunOptions, Stats};

/// One layer's (or the whole program's) estimate.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LayerEstimate {
    pub name: String,
    /// GEMM shape the array runs: m rows (output pixels) x k x n.
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// Useful multiply-accumulates (m x k x n, pooling windows included).
    pub macs: u64,
    /// PE slots the array clocked (its rows x cols for every streamed line): what the MAC
    /// energy is charged on.
    pub mac_slots: u64,
    pub cycles: u64,
    pub latency_us: f64,
    /// Useful MACs over (cycles x array PEs).
    pub utilization: f64,
    pub dram_bytes_read: u64,
    pub dram_bytes_written: u64,
    /// Bytes read plus written per on-chip buffer.
    pub input_buffer_bytes: u64,
    pub weight_buffer_bytes: u64,
    pub accumulator_buffer_bytes: u64,
    pub output_buffer_bytes: u64,
    /// Roofline bounds of the modelled hardware: MACs at full utilization, and the larger of
    /// the DRAM read and write traffic at the channel's bytes per cycle.
    pub compute_bound_cycles: u64,
    pub dram_bound_cycles: u64,
    pub energy: Energy,
    /// Weights and inputs both binary ({-1, +1}): the layer could run on an XNOR-popcount
    /// datapath, whose MAC energy `mac_xnor_pj` prices the same PE slots at
    /// `xnor_popcount_bit_pj` (the int8 array's figure stays in `energy.mac_pj`).
    pub binary: bool,
    pub mac_xnor_pj: f64,
    /// The compiler's tiling: output-pixel tiles, k-tiles of `rows` and n-tiles of `cols`.
    pub m_tiles: usize,
    pub k_tiles: usize,
    pub n_tiles: usize,
    /// The compute unit's busy cycles by instruction kind (closed form per instruction).
    pub ldw_cycles: u64,
    pub matmul_cycles: u64,
    pub ppu_cycles: u64,
    /// With `--check-analytic`: the analytic estimator's cycles and its relative error
    /// against the emulator's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analytic_cycles: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analytic_error: Option<f64>,
}

impl LayerEstimate {
    fn new(
        name: &str,
        (m, k, n): (usize, usize, usize),
        macs: u64,
        s: &Stats,
        arch: &ArchConfig,
    ) -> Self {
        let bpc = arch.dram.bytes_per_cycle.max(1) as u64;
        let peak = s.peak_macs_per_cycle.max(1);
        let both = |b: &systole_emulator::stats::BufferStats| b.bytes_read + b.bytes_written;
        LayerEstimate {
            name: name.to_string(),
            m,
            k,
            n,
            macs,
            mac_slots: s.macs,
            cycles: s.cycles,
            latency_us: s.latency_us,
            utilization: macs as f64 / (s.cycles.max(1) * peak) as f64,
            dram_bytes_read: s.dram_bytes_read,
            dram_bytes_written: s.dram_bytes_written,
            input_buffer_bytes: both(&s.input_buffer),
            weight_buffer_bytes: both(&s.weight_buffer),
            accumulator_buffer_bytes: both(&s.accumulator_buffer),
            output_buffer_bytes: both(&s.output_buffer),
            compute_bound_cycles: macs.div_ceil(peak),
            dram_bound_cycles: s.dram_bytes_read.max(s.dram_bytes_written).div_ceil(bpc),
            energy: s.energy,
            binary: s.xnor_macs > 0,
            mac_xnor_pj: s.xnor_macs as f64 * {
                let e = arch.energy.effective();
                arch.array.xnor_bits as f64 * e.xnor_popcount_bit_pj + e.int32_add_pj
            },
            m_tiles: 0,
            k_tiles: 0,
            n_tiles: 0,
            ldw_cycles: 0,
            matmul_cycles: 0,
            ppu_cycles: 0,
            analytic_cycles: None,
            analytic_error: None,
        }
    }

    /// Tiling and the compute unit's breakdown from the layer's report and instructions.
    fn with_schedule(
        mut self,
        r: &LayerReport,
        code: &[systole_arch::Insn],
        arch: &ArchConfig,
    ) -> Self {
        self.m_tiles = r.tiling.m_tiles;
        self.k_tiles = r.tiling.k_tiles;
        self.n_tiles = r.tiling.n_tiles;
        (self.ldw_cycles, self.matmul_cycles, self.ppu_cycles) =
            crate::analytic::compute_breakdown(code, arch);
        self
    }

    /// Operational intensity: useful MACs per DRAM byte moved.
    pub fn intensity(&self) -> f64 {
        self.macs as f64 / (self.dram_bytes_read + self.dram_bytes_written).max(1) as f64
    }

    /// Cycles over the roofline lower bound (1.0 = as fast as the hardware allows).
    pub fn roofline_ratio(&self) -> f64 {
        self.cycles as f64 / self.compute_bound_cycles.max(self.dram_bound_cycles).max(1) as f64
    }
}

/// A whole estimate: every layer and the total.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Estimate {
    pub model: String,
    pub arch: String,
    pub clock_mhz: f64,
    /// `emulator` (cycle-exact) or `analytic` (src/analytic.rs).
    pub engine: Engine,
    /// Technology node the energies are quoted at.
    pub node_nm: f64,
    /// Peak MACs per cycle and DRAM bytes per cycle: the roofline's two roofs.
    pub peak_macs_per_cycle: u64,
    pub dram_bytes_per_cycle: u32,
    pub array_rows: u32,
    pub array_cols: u32,
    pub layers: Vec<LayerEstimate>,
    pub total: LayerEstimate,
}

/// Which model gives the cycles and event counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// The cycle-exact emulator (one run on zero inputs).
    Emulator,
    /// The analytic instruction-level model (src/analytic.rs): no cycle loop.
    Analytic,
}

/// The whole run's statistics and one snapshot at the start of each requested instruction.
fn timed(
    program: &Program,
    arch: &ArchConfig,
    snapshot_at: Vec<usize>,
    engine: Engine,
) -> Result<(Stats, Vec<(usize, Stats)>)> {
    Ok(match engine {
        Engine::Emulator => {
            let opts = RunOptions {
                snapshot_at,
                ..Default::default()
            };
            let r = run(program, arch, &zeros(program), &opts)?;
            (r.stats, r.snapshots)
        }
        Engine::Analytic => {
            let r = crate::analytic::run(program, arch, &snapshot_at)?;
            (r.stats, r.snapshots)
        }
    })
}

fn new_estimate(model: &str, arch: &ArchConfig, engine: Engine) -> Estimate {
    Estimate {
        model: model.to_string(),
        arch: arch.name.clone(),
        clock_mhz: arch.clock_mhz,
        engine,
        node_nm: arch.energy.effective().node_nm,
        peak_macs_per_cycle: arch.peak_macs_per_cycle(),
        dram_bytes_per_cycle: arch.dram.bytes_per_cycle,
        array_rows: arch.array.rows,
        array_cols: arch.array.cols,
        layers: vec![],
        total: LayerEstimate::new(
            "total",
            (0, 0, 0),
            0,
            &Stats {
                peak_macs_per_cycle: arch.peak_macs_per_cycle(),
                ..Default::default()
            },
            arch,
        ),
    }
}

/// Adds the analytic estimate's cycles and relative error to an emulator estimate of the same
/// program (layers matched by position).
pub fn attach_analytic(exact: &mut Estimate, analytic: &Estimate) {
    let err = |a: u64, x: u64| (a as f64 - x as f64) / (x.max(1) as f64);
    for (l, a) in exact
        .layers
        .iter_mut()
        .chain(std::iter::once(&mut exact.total))
        .zip(
            analytic
                .layers
                .iter()
                .chain(std::iter::once(&analytic.total)),
        )
    {
        l.analytic_cycles = Some(a.cycles);
        l.analytic_error = Some(err(a.cycles, l.cycles));
    }
}

fn zeros(p: &Program) -> Vec<IoData> {
    p.inputs()
        .map(|d| match d.dtype {
            systole_arch::image::DType::I32 => IoData::I32(vec![0; d.elements() as usize]),
            systole_arch::image::DType::U8 => IoData::U8(vec![0; d.elements() as usize]),
            systole_arch::image::DType::I8 => IoData::I8(vec![0; d.elements() as usize]),
        })
        .collect()
}

/// Runs `program` once and splits its statistics by layer (`reports` in program order).
pub fn estimate_program(
    model: &str,
    program: &Program,
    reports: &[LayerReport],
    arch: &ArchConfig,
    engine: Engine,
) -> Result<Estimate> {
    let mut starts = Vec::with_capacity(reports.len());
    let mut at = 0usize;
    for r in reports {
        starts.push(at);
        at += r.instructions;
    }
    // The program's final `finish` ends the last layer.
    let (stats, snapshots) = timed(
        program,
        arch,
        starts.iter().skip(1).copied().collect(),
        engine,
    )?;
    if snapshots.len() + 1 != reports.len().max(1) {
        bail!(
            "the program's layers did not all start ({} of {})",
            snapshots.len() + 1,
            reports.len()
        );
    }
    let mut bounds: Vec<&Stats> = vec![];
    let first = Stats {
        peak_macs_per_cycle: stats.peak_macs_per_cycle,
        clock_mhz: stats.clock_mhz,
        arch: stats.arch.clone(),
        ..Default::default()
    };
    bounds.push(&first);
    bounds.extend(snapshots.iter().map(|(_, s)| s));
    bounds.push(&stats);
    let layers = reports
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let s = bounds[i + 1].since(bounds[i], arch);
            let code = &program.code[starts[i]..starts[i] + l.instructions];
            LayerEstimate::new(&l.name, (l.m, l.k, l.n), l.macs, &s, arch)
                .with_schedule(l, code, arch)
        })
        .collect();
    Ok(Estimate {
        layers,
        total: LayerEstimate::new(
            "total",
            (0, 0, 0),
            reports.iter().map(|l| l.macs).sum(),
            &stats,
            arch,
        ),
        ..new_estimate(model, arch, engine)
    })
}

/// One row of a SCALE-Sim conv topology CSV.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopoLayer {
    pub name: String,
    pub ifmap_h: usize,
    pub ifmap_w: usize,
    pub filter_h: usize,
    pub filter_w: usize,
    pub channels: usize,
    pub filters: usize,
    pub stride: usize,
}

impl TopoLayer {
    pub fn out_hw(&self) -> (usize, usize) {
        (
            (self.ifmap_h - self.filter_h) / self.stride + 1,
            (self.ifmap_w - self.filter_w) / self.stride + 1,
        )
    }

    /// The synthetic int8 network of this one convolution: int8 input, weights and output,
    /// binary32 requantization.
    pub fn model(&self) -> QModel {
        let (oh, ow) = self.out_hw();
        let (k, n) = (self.filter_h * self.filter_w * self.channels, self.filters);
        // Weights do not change the timing; a fixed pattern keeps runs reproducible.
        let weights = (0..k * n).map(|i| ((i * 37 + 11) % 255) as i8).collect();
        QModel {
            name: self.name.clone(),
            m: 1,
            input: QIo::int8("ifmap", vec![1, self.channels, self.ifmap_h, self.ifmap_w]),
            input_bipolar: false,
            layers: vec![QDense {
                name: self.name.clone(),
                k,
                n,
                weights,
                weights2: None,
                bias: vec![0; n],
                out: QOut::Int8 {
                    scales: vec![1.0 / 1024.0; n],
                    zp: 0,
                    lo: -128,
                    hi: 127,
                },
                conv: Some(ConvGeom {
                    cin: self.channels,
                    h: self.ifmap_h,
                    w: self.ifmap_w,
                    kh: self.filter_h,
                    kw: self.filter_w,
                    stride: [self.stride; 2],
                    dilation: [1, 1],
                    pads: [0; 4],
                    oh,
                    ow,
                    pad_value: 0,
                }),
                pool: None,
                flat_image: None,
                row_mul: None,
            }],
            output: QIo::int8("ofmap", vec![1, n, oh, ow]),
        }
    }
}

/// Reads a SCALE-Sim topology CSV (header line, then `name, ifmap h, ifmap w, filter h,
/// filter w, channels, filters, stride` per row, trailing commas allowed).
pub fn read_topology(path: &Path) -> Result<Vec<TopoLayer>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read topology {}", path.display()))?;
    parse_topology(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
}

pub fn parse_topology(text: &str) -> Result<Vec<TopoLayer>> {
    let mut layers = Vec::new();
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        bail!("empty topology (expected a header line and one row per layer)");
    };
    if !header.to_ascii_lowercase().contains("layer") {
        bail!(
            "line 1: expected SCALE-Sim's header ('Layer name, IFMAP Height, ...'), got '{header}'"
        );
    }
    const FIELDS: [&str; 7] = [
        "IFMAP Height",
        "IFMAP Width",
        "Filter Height",
        "Filter Width",
        "Channels",
        "Num Filter",
        "Strides",
    ];
    for (i, line) in lines {
        let no = i + 1;
        let mut cols: Vec<&str> = line.split(',').map(str::trim).collect();
        while cols.last() == Some(&"") {
            cols.pop();
        }
        if cols.len() != 8 {
            bail!(
                "line {no}: {} columns, expected 8 (name and {})",
                cols.len(),
                FIELDS.join(", ")
            );
        }
        if cols[0].is_empty() {
            bail!("line {no}: the layer name is empty");
        }
        let mut v = [0usize; 7];
        for (j, f) in FIELDS.iter().enumerate() {
            v[j] = cols[j + 1]
                .parse::<usize>()
                .ok()
                .filter(|&x| x > 0)
                .ok_or_else(|| {
                    anyhow!(
                        "line {no} ('{}'): {f} must be a positive integer, got '{}'",
                        cols[0],
                        cols[j + 1]
                    )
                })?;
        }
        let l = TopoLayer {
            name: cols[0].to_string(),
            ifmap_h: v[0],
            ifmap_w: v[1],
            filter_h: v[2],
            filter_w: v[3],
            channels: v[4],
            filters: v[5],
            stride: v[6],
        };
        if l.filter_h > l.ifmap_h || l.filter_w > l.ifmap_w {
            bail!(
                "line {no} ('{}'): the {}x{} filter is larger than the {}x{} ifmap (topologies have no padding)",
                l.name,
                l.filter_h,
                l.filter_w,
                l.ifmap_h,
                l.ifmap_w
            );
        }
        layers.push(l);
    }
    if layers.is_empty() {
        bail!("no layer rows after the header");
    }
    Ok(layers)
}

/// Compiles and runs every topology row as its own program.
pub fn estimate_topology(
    name: &str,
    layers: &[TopoLayer],
    arch: &ArchConfig,
    engine: Engine,
    mut progress: impl FnMut(usize),
) -> Result<Estimate> {
    let mut out = Vec::with_capacity(layers.len());
    let mut total: Option<Stats> = None;
    for (i, t) in layers.iter().enumerate() {
        let q = t.model();
        let (program, reports) = lower::to_program(arch, &q).map_err(|e| {
            anyhow!(
                "layer '{}': cannot compile for arch '{}': {e}",
                t.name,
                arch.name
            )
        })?;
        let (stats, _) = timed(&program, arch, vec![], engine)
            .map_err(|e| anyhow!("layer '{}': {e}", t.name))?;
        let l = &reports[0];
        out.push(
            LayerEstimate::new(&t.name, (l.m, l.k, l.n), l.macs, &stats, arch).with_schedule(
                l,
                &program.code[..l.instructions],
                arch,
            ),
        );
        total = Some(match total {
            None => stats,
            Some(acc) => add_stats(&acc, &stats, arch),
        });
        progress(i + 1);
    }
    let total = total.expect("at least one layer");
    let macs = out.iter().map(|l| l.macs).sum();
    Ok(Estimate {
        layers: out,
        total: LayerEstimate::new("total", (0, 0, 0), macs, &total, arch),
        ..new_estimate(name, arch, engine)
    })
}

/// Two runs back to back: the counters add up.
fn add_stats(a: &Stats, b: &Stats, arch: &ArchConfig) -> Stats {
    let zero = Stats {
        arch: a.arch.clone(),
        clock_mhz: a.clock_mhz,
        peak_macs_per_cycle: a.peak_macs_per_cycle,
        ..Default::default()
    };
    let mut s = a.clone();
    s.cycles += b.cycles;
    s.instructions += b.instructions;
    for (x, y) in [
        (&mut s.load, &b.load),
        (&mut s.compute, &b.compute),
        (&mut s.store, &b.store),
    ] {
        x.instructions += y.instructions;
        x.busy_cycles += y.busy_cycles;
        x.port_stall_cycles += y.port_stall_cycles;
        x.token_stall_cycles += y.token_stall_cycles;
        x.push_stall_cycles += y.push_stall_cycles;
        x.idle_cycles += y.idle_cycles;
    }
    s.dispatch_stall_cycles += b.dispatch_stall_cycles;
    s.macs += b.macs;
    s.dram_bytes_read += b.dram_bytes_read;
    s.dram_bytes_written += b.dram_bytes_written;
    for (x, y) in [
        (&mut s.input_buffer, &b.input_buffer),
        (&mut s.weight_buffer, &b.weight_buffer),
        (&mut s.accumulator_buffer, &b.accumulator_buffer),
        (&mut s.output_buffer, &b.output_buffer),
    ] {
        x.line_reads += y.line_reads;
        x.line_writes += y.line_writes;
        x.bytes_read += y.bytes_read;
        x.bytes_written += y.bytes_written;
        x.conflict_stalls += y.conflict_stalls;
    }
    s.alu_lane_ops += b.alu_lane_ops;
    s.alu_mul_lane_ops += b.alu_mul_lane_ops;
    s.requant_lane_ops += b.requant_lane_ops;
    s.thresh_compares += b.thresh_compares;
    // Utilization and energy of the sum (`since` a zero record recomputes them).
    s.since(&zero, arch)
}

fn kib(b: u64) -> String {
    format!("{:.1}", b as f64 / 1024.0)
}

/// The human-readable table.
pub fn table(e: &Estimate) -> String {
    let mut s = format!(
        "model: {}  arch: {} ({} MHz)  engine: {}  energy at {} nm\n",
        e.model,
        e.arch,
        e.clock_mhz,
        match e.engine {
            Engine::Emulator => "emulator (cycle-exact)",
            Engine::Analytic => "analytic",
        },
        e.node_nm
    );
    let checked = e.total.analytic_cycles.is_some();
    s.push_str(format!(
        "{:<22} {:>16} {:>11} {:>10} {:>10} {:>6} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}\n",
        "layer", "m x k x n", "MACs", "cycles", "us", "util%", "roof", "DRAM KiB",
        "SRAM KiB", "MAC nJ", "PPU nJ", "SRAM nJ", "DRAM nJ", "ctrl nJ", "stat nJ", "total nJ"
    ).trim_end());
    if checked {
        s.push_str(&format!(" {:>10} {:>7}", "analytic", "err%"));
    }
    s.push('\n');
    let row = |l: &LayerEstimate| {
        let en = &l.energy;
        let sram = en.input_buffer_pj
            + en.weight_buffer_pj
            + en.accumulator_buffer_pj
            + en.output_buffer_pj;
        format!(
            "{:<22} {:>16} {:>11} {:>10} {:>10.2} {:>6.1} {:>6.2} {:>9} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>10.2}\n",
            truncate(&l.name, 22),
            if l.k > 0 { format!("{}x{}x{}", l.m, l.k, l.n) } else { String::new() },
            l.macs,
            l.cycles,
            l.latency_us,
            100.0 * l.utilization,
            l.roofline_ratio(),
            kib(l.dram_bytes_read + l.dram_bytes_written),
            kib(l.input_buffer_bytes
                + l.weight_buffer_bytes
                + l.accumulator_buffer_bytes
                + l.output_buffer_bytes),
            en.mac_pj / 1e3,
            en.ppu_pj / 1e3,
            sram / 1e3,
            en.dram_pj / 1e3,
            en.control_pj / 1e3,
            en.static_pj / 1e3,
            en.total_pj / 1e3,
        )
        .trim_end()
        .to_string()
            + &match (l.analytic_cycles, l.analytic_error) {
                (Some(a), Some(err)) => format!(" {a:>10} {:>+7.2}\n", 100.0 * err),
                _ => "\n".into(),
            }
    };
    for l in &e.layers {
        s.push_str(&row(l));
    }
    s.push_str(&row(&e.total));
    s.push_str(
        "roof: cycles over the roofline bound max(MACs / PEs, DRAM bytes / bytes per cycle)\n",
    );
    if e.total.mac_xnor_pj > 0.0 {
        s.push_str(&format!(
            "binary layers ({}): XNOR-popcount MACs (8 bipolar products per PE slot), {:.2} nJ of the MAC energy\n",
            e.layers
                .iter()
                .filter(|l| l.binary)
                .map(|l| l.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            e.total.mac_xnor_pj / 1e3
        ));
    }
    if checked {
        s.push_str(
            "analytic: the analytic estimator's cycles; err%: its error against the emulator\n",
        );
    }
    s
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let t: String = s.chars().take(n - 1).collect();
        format!("{t}~")
    }
}

/// One CSV line per layer and a total line; energies in pJ.
pub fn csv(e: &Estimate) -> String {
    let mut s = String::from(
        "layer,m,k,n,macs,mac_slots,cycles,latency_us,utilization,dram_bytes_read,dram_bytes_written,input_buffer_bytes,weight_buffer_bytes,accumulator_buffer_bytes,output_buffer_bytes,compute_bound_cycles,dram_bound_cycles,mac_pj,ppu_pj,input_buffer_pj,weight_buffer_pj,accumulator_buffer_pj,output_buffer_pj,dram_pj,control_pj,static_pj,total_pj,binary,mac_xnor_pj,analytic_cycles,analytic_error\n",
    );
    for l in e.layers.iter().chain(std::iter::once(&e.total)) {
        let en = &l.energy;
        let name = if l.name.contains([',', '"']) {
            format!("\"{}\"", l.name.replace('"', "\"\""))
        } else {
            l.name.clone()
        };
        s.push_str(&format!(
            "{name},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            l.m,
            l.k,
            l.n,
            l.macs,
            l.mac_slots,
            l.cycles,
            l.latency_us,
            l.utilization,
            l.dram_bytes_read,
            l.dram_bytes_written,
            l.input_buffer_bytes,
            l.weight_buffer_bytes,
            l.accumulator_buffer_bytes,
            l.output_buffer_bytes,
            l.compute_bound_cycles,
            l.dram_bound_cycles,
            en.mac_pj,
            en.ppu_pj,
            en.input_buffer_pj,
            en.weight_buffer_pj,
            en.accumulator_buffer_pj,
            en.output_buffer_pj,
            en.dram_pj,
            en.control_pj,
            en.static_pj,
            en.total_pj,
            l.binary,
            l.mac_xnor_pj,
            l.analytic_cycles.map_or(String::new(), |c| c.to_string()),
            l.analytic_error.map_or(String::new(), |c| c.to_string()),
        ));
    }
    s
}

/// One row of SCALE-Sim's COMPUTE_REPORT.csv.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaleSimRow {
    pub layer: usize,
    /// "Total Cycles (incl. prefetch)".
    pub cycles_incl_prefetch: u64,
    /// "Total Cycles": compute only.
    pub cycles: u64,
    pub stall_cycles: u64,
    pub util_percent: f64,
}

/// Reads SCALE-Sim's COMPUTE_REPORT.csv (header `LayerID, Total Cycles (incl. prefetch),
/// Total Cycles, Stall Cycles, Overall Util %, ...`).
pub fn read_scalesim_report(path: &Path) -> Result<Vec<ScaleSimRow>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read SCALE-Sim report {}", path.display()))?;
    parse_scalesim_report(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
}

pub fn parse_scalesim_report(text: &str) -> Result<Vec<ScaleSimRow>> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    match lines.next() {
        Some((_, h)) if h.contains("LayerID") && h.contains("Total Cycles") => {}
        _ => bail!("expected SCALE-Sim's COMPUTE_REPORT header ('LayerID, Total Cycles (incl. prefetch), Total Cycles, ...')"),
    }
    let mut rows = Vec::new();
    for (i, line) in lines {
        let cols: Vec<&str> = line.split(',').map(str::trim).collect();
        let num = |j: usize, what: &str| -> Result<f64> {
            cols.get(j)
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| anyhow!("line {}: {what} is not a non-negative number", i + 1))
        };
        rows.push(ScaleSimRow {
            layer: num(0, "LayerID")? as usize,
            cycles_incl_prefetch: num(1, "Total Cycles (incl. prefetch)")? as u64,
            cycles: num(2, "Total Cycles")? as u64,
            stall_cycles: num(3, "Stall Cycles")? as u64,
            util_percent: num(4, "Overall Util %")?,
        });
    }
    if rows.is_empty() {
        bail!("no layer rows after the header");
    }
    Ok(rows)
}

/// The named modelling differences between Systole's schedule and SCALE-Sim's weight-
/// stationary model for one layer, in cycles added to Systole's count (they sum exactly to
/// the difference, up to `residual`: SCALE-Sim's own cycles minus its fold formula).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaleSimDiff {
    /// SCALE-Sim's row folds, ceil(K / R).
    pub row_folds: usize,
    /// Systole runs kh x kw x ceil(cin / R) k-tiles where SCALE-Sim folds K = kh kw cin rows.
    pub padding: i64,
    /// Systole splits the output pixels into m-tiles, each repeating the weight load and the
    /// array fill/drain; SCALE-Sim streams every pixel through one fold.
    pub m_tiling: i64,
    /// Bias add and requantization, which SCALE-Sim does not model.
    pub ppu: i64,
    /// Cycles the compute unit waits for DMA (latency per load, bytes per cycle, the last
    /// store): SCALE-Sim's compute report assumes the data is there.
    pub dma_wait: i64,
    /// SCALE-Sim's prefetch cycles (counted in its total).
    pub prefetch: i64,
    pub residual: i64,
}

/// Decomposes `systole - scalesim` for one layer (see `ScaleSimDiff`). SCALE-Sim's
/// weight-stationary compute time is folds x (Sr + 2R + C - 2) cycles, folds = ceil(K/R) x
/// ceil(N/C), Sr the output pixels.
pub fn scalesim_diff(l: &LayerEstimate, s: &ScaleSimRow, rows: u64, cols: u64) -> ScaleSimDiff {
    let row_folds = l.k.div_ceil(rows as usize);
    let fold = l.m as i64 + 2 * rows as i64 + cols as i64 - 2;
    let nt = l.n.div_ceil(cols as usize) as i64;
    let busy = (l.ldw_cycles + l.matmul_cycles) as i64;
    let padding = (l.k_tiles as i64 - row_folds as i64) * nt * fold;
    let m_tiling = busy - l.k_tiles as i64 * nt * fold;
    let ppu = l.ppu_cycles as i64;
    let dma_wait = l.cycles as i64 - busy - ppu;
    let prefetch = -(s.cycles_incl_prefetch as i64 - s.cycles as i64);
    let total = l.cycles as i64 - s.cycles_incl_prefetch as i64;
    ScaleSimDiff {
        row_folds,
        padding,
        m_tiling,
        ppu,
        dma_wait,
        prefetch,
        residual: total - (padding + m_tiling + ppu + dma_wait + prefetch),
    }
}

impl ScaleSimDiff {
    /// The terms that carry at least a tenth of the difference, largest first.
    pub fn explanation(&self, l: &LayerEstimate, rows: u64) -> String {
        let total: i64 =
            self.padding + self.m_tiling + self.ppu + self.dma_wait + self.prefetch + self.residual;
        let mut terms = [
            (
                self.padding,
                format!(
                    "input-channel padding ({} k-tiles of {rows} rows vs {} row folds)",
                    l.k_tiles, self.row_folds
                ),
            ),
            (
                self.m_tiling,
                if self.m_tiling < 0 {
                    "array time below SCALE-Sim's folds (chained tiles pay the weight load and \
                     the fill and drain once per chain, SCALE-Sim once per fold)"
                        .to_string()
                } else if l.m_tiles == 1 {
                    "m-tiling (1 m-tile: the array's refills and the unstored columns of row \
                     reuse)"
                        .to_string()
                } else {
                    format!(
                        "m-tiling ({} m-tiles each refill the array and reload the weights \
                         the buffer does not hold, plus the unstored columns of row reuse)",
                        l.m_tiles
                    )
                },
            ),
            (
                self.ppu,
                "post-processing (bias, requantization)".to_string(),
            ),
            (
                self.dma_wait,
                "DMA waits (latency per load, DRAM bytes/cycle)".to_string(),
            ),
            (self.prefetch, "SCALE-Sim prefetch".to_string()),
        ];
        terms.sort_by_key(|(v, _)| -(v.abs()));
        terms
            .iter()
            .filter(|(v, _)| v.abs() * 10 >= total.abs() && *v != 0)
            .map(|(v, n)| format!("{n} {v:+}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// docs/validation.md's table: each layer's cycles next to SCALE-Sim's, the difference and
/// its decomposition into named modelling differences.
pub fn scalesim_comparison(e: &Estimate, report: &[ScaleSimRow]) -> Result<String> {
    if report.len() != e.layers.len() {
        bail!(
            "the SCALE-Sim report has {} layers, the topology {}",
            report.len(),
            e.layers.len()
        );
    }
    let (rows, cols) = (e.array_rows as u64, e.array_cols as u64);
    let mut s = String::from(
        "| layer | M x K x N | SCALE-Sim cycles | Systole cycles | diff | k-tiles / row folds | padding | m-tiling | PPU | DMA wait | prefetch | residual | explanation (terms carrying >= 10 % of the difference) |\n|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    let (mut ys, mut ss) = (0u64, 0u64);
    for (l, r) in e.layers.iter().zip(report) {
        let d = scalesim_diff(l, r, rows, cols);
        let diff = (l.cycles as f64 - r.cycles_incl_prefetch as f64)
            / r.cycles_incl_prefetch.max(1) as f64;
        ys += l.cycles;
        ss += r.cycles_incl_prefetch;
        s.push_str(&format!(
            "| {} | {}x{}x{} | {} | {} | {:+.1} % | {} / {} | {:+} | {:+} | {:+} | {:+} | {:+} | {:+} | {} |\n",
            l.name,
            l.m,
            l.k,
            l.n,
            r.cycles_incl_prefetch,
            l.cycles,
            100.0 * diff,
            l.k_tiles,
            d.row_folds,
            d.padding,
            d.m_tiling,
            d.ppu,
            d.dma_wait,
            d.prefetch,
            d.residual,
            if diff.abs() > 0.10 {
                d.explanation(l, rows)
            } else {
                "within 10 %".to_string()
            }
        ));
    }
    s.push_str(&format!(
        "| **total** | | {ss} | {ys} | {:+.1} % | | | | | | | | |\n",
        100.0 * (ys as f64 - ss as f64) / ss.max(1) as f64
    ));
    Ok(s)
}
