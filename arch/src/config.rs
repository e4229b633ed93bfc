//! The arch config: one struct that describes an accelerator instance.
//!
//! Compiler, emulator, RTL generator and docs all read this struct, so a field added here is
//! automatically visible to every layer. Presets are plain TOML files compiled into the binary
//! (`arch/presets/*.toml`) so `systole arch show tiny` prints exactly what a user would write.

use crate::energy::EnergyTable;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// Numeric formats the array can be built to execute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// int8 operands, int32 accumulation.
    Int8,
    /// Bipolar ({-1, +1}) operands packed 8 to a byte: `matmul binary=1` (XNOR-popcount in
    /// every PE, 8 products per PE and cycle) and `store pack=1`.
    Binary,
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Precision::Int8 => write!(f, "int8"),
            Precision::Binary => write!(f, "binary"),
        }
    }
}

/// Which dataflow the array implements. Only weight-stationary is built today; the field
/// exists so configs from SCALE-Sim (`Dataflow: ws`) map one to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dataflow {
    Ws,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArrayConfig {
    /// PE rows: the reduction (K) depth of one weight tile; also the input line width in bytes.
    pub rows: u32,
    /// PE columns: output channels per tile; the output line width in lanes.
    pub cols: u32,
    #[serde(default = "default_dataflow")]
    pub dataflow: Dataflow,
    pub precisions: Vec<Precision>,
    /// Binary mode's word width: bipolar values one PE XNOR-popcounts per cycle, packed in the
    /// low `xnor_bits` bits of each input and weight byte (1, 2, 4 or 8). Narrower words make a
    /// smaller popcount per PE and proportionally fewer binary MACs per cycle.
    #[serde(default = "default_xnor_bits")]
    pub xnor_bits: u32,
    /// Weight registers per PE (1 or 2). With 2 the next tile's weights load while the
    /// current one streams, which chained `matmul`s (docs/isa.md) need; it costs a second
    /// 8-bit register, a pass-through register and a capture flag per PE (docs/timing.md).
    #[serde(default = "default_weight_banks")]
    pub weight_banks: u32,
    /// Build the compute sequencer's input walker and bias-row read: `matmul` with `row`
    /// (rows with gaps: a convolution without its junk columns) or `bias` (results start from
    /// a bias row). Without them (the iCE40 UP5K, full to 98 %) the emulator refuses those
    /// fields, and the compiler computes the junk columns and adds biases with `alu`.
    #[serde(default = "default_true_array")]
    pub input_walker: bool,
    /// Let a chained `matmul` start while the chain before it drains (needs
    /// `weight_banks = 2`): the next chain's first tile loads and streams where the previous
    /// chain would have run one more tile, so back-to-back chains pay the fill and drain
    /// once. It costs a second set of result-side registers in the compute sequencer and a
    /// second retirement slot in the controller (docs/timing.md, "Overlapped chains").
    #[serde(default)]
    pub chain_overlap: bool,
}

fn default_true_array() -> bool {
    true
}

fn default_weight_banks() -> u32 {
    1
}

fn default_xnor_bits() -> u32 {
    8
}

fn default_dataflow() -> Dataflow {
    Dataflow::Ws
}

/// Port organisation of one SRAM bank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ports {
    /// One shared read/write port: one access per cycle per bank.
    #[serde(rename = "1rw")]
    OneRw,
    /// Simple dual port (one read port and one write port): what FPGA block RAM gives for free.
    #[serde(rename = "1r1w")]
    OneROneW,
}

impl fmt::Display for Ports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ports::OneRw => write!(f, "1rw"),
            Ports::OneROneW => write!(f, "1r1w"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    /// Total capacity in bytes.
    pub size_bytes: u32,
    /// Number of banks. Lines are split into `banks` contiguous ranges (bank = line / lines
    /// per bank), so ping-pong halves of a double-buffered tile live in different banks.
    pub banks: u32,
    pub ports: Ports,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuffersConfig {
    /// Activations streamed into the array (int8 lines of `rows` bytes).
    pub input: BufferConfig,
    /// Weight tiles (int8 lines of `cols` bytes, `rows` lines per tile).
    pub weight: BufferConfig,
    /// int32 accumulators and post-processing parameters (lines of `cols` x 4 bytes).
    pub accumulator: BufferConfig,
    /// Requantized results waiting for the store DMA (int8 lines of `cols` bytes).
    pub output: BufferConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DramConfig {
    /// Bytes per response beat; one beat per cycle at most, per channel (read and write are
    /// independent AXI-style channels).
    pub bytes_per_cycle: u32,
    /// Cycles from a request being accepted to its first beat.
    pub latency_cycles: u32,
    /// Largest DRAM a program may use.
    pub size_bytes: u64,
    /// Let a load start issuing its read requests while the load before it still takes its
    /// beats (once that one has issued all of its own): the next load's latency hides behind
    /// the previous load's data, so a run of short loads pays the latency once. Its data are
    /// written after the previous load's, in order. It costs a second request counter and
    /// instruction register in the load engine and a second retirement slot in the
    /// controller (docs/timing.md, "Loads ahead").
    #[serde(default)]
    pub load_ahead: bool,
    /// Let a store start while the store before it waits for DRAM's acknowledgement (once
    /// that one has sent all its beats): a run of stores pays the latency once instead of per
    /// store. The older store retires on its acknowledgement, before the newer one. It costs
    /// a pending-acknowledgement flag in the store engine and a store retirement slot in the
    /// controller (docs/timing.md, "Stores ahead").
    #[serde(default)]
    pub store_ahead: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerConfig {
    /// Depth of each unit's command queue (load, compute, store).
    pub queue_depth: u32,
    /// Capacity of each dependency-token queue.
    pub token_depth: u32,
    /// Instruction memory capacity in instructions.
    pub imem_instructions: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchConfig {
    pub name: String,
    pub clock_mhz: f64,
    pub array: ArrayConfig,
    pub buffers: BuffersConfig,
    pub dram: DramConfig,
    pub controller: ControllerConfig,
    #[serde(default)]
    pub ppu: PpuConfig,
    #[serde(default)]
    pub energy: EnergyTable,
}

/// The post-processing unit's threshold storage.
///
/// `thresh` finds how many of its thresholds an accumulator reaches by a binary search over
/// per-stage threshold memories (block RAM, one read per cycle each), not by comparing against
/// every threshold at once: 255 x cols x 32-bit registers and comparators do not fit an FPGA.
/// `max_thresholds` = 2^k - 1 gives k search stages, one cycle each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PpuConfig {
    /// Most thresholds one `thresh` may use: 1, 3, 7, 15, 31, 63, 127 or 255.
    #[serde(default = "default_max_thresholds")]
    pub max_thresholds: u32,
    /// Build the binary32 requantizer lanes (`requant fp32`). Without them the compiler turns
    /// every binary32 requantization into the equal threshold set: slower, far smaller (each
    /// lane is about 3.6 k ECP5 LUTs).
    #[serde(default = "default_true")]
    pub fp32_requant: bool,
    /// Build the integer lanes (`alu`, integer `requant`: a 32 x 32 product and a barrel
    /// shifter per lane, about 1.3 k iCE40 LUTs and 4 DSPs each). Without them the PPU is the
    /// threshold unit alone, small enough for an iCE40 UP5K; the emulator refuses `alu` and
    /// `requant` on such an arch. Needs `fp32_requant = false` (those lanes run beside these).
    #[serde(default = "default_true")]
    pub integer_lanes: bool,
    /// Build a second set of requantizer lanes in the store engine (`store requant=1`): it
    /// reads accumulator lines and sends them requantized, so requantization leaves the compute
    /// unit (as Gemmini scales on `mvout`) and a layer's chains follow each other. It costs
    /// `cols` more integer lanes (and binary32 lanes with `fp32_requant`) and a 3-line
    /// parameter register in the store engine (docs/timing.md, "Store with requantization").
    #[serde(default)]
    pub store_requant: bool,
}

fn default_true() -> bool {
    true
}

fn default_max_thresholds() -> u32 {
    255
}

impl Default for PpuConfig {
    fn default() -> Self {
        PpuConfig {
            max_thresholds: default_max_thresholds(),
            fp32_requant: true,
            integer_lanes: true,
            store_requant: false,
        }
    }
}

impl PpuConfig {
    /// Binary-search stages of the threshold unit: log2(max_thresholds + 1).
    pub fn threshold_stages(&self) -> u32 {
        (self.max_thresholds + 1).trailing_zeros()
    }
}

/// The names of the presets compiled into the binary.
pub const PRESETS: &[(&str, &str)] = &[
    ("tiny", include_str!("../presets/tiny.toml")),
    ("ulx3s", include_str!("../presets/ulx3s.toml")),
    ("edge", include_str!("../presets/edge.toml")),
    ("scalesim32", include_str!("../presets/scalesim32.toml")),
    ("up5k", include_str!("../presets/up5k.toml")),
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown arch preset or file '{0}' (presets: tiny, ulx3s, edge, scalesim32, up5k)")]
    Unknown(String),
    #[error("cannot read arch file {path}: {err}")]
    Io { path: String, err: std::io::Error },
    #[error("arch config {source_name}: {msg}")]
    Parse { source_name: String, msg: String },
    #[error("arch config {source_name}: field `{field}`: {msg}")]
    Invalid {
        source_name: String,
        field: String,
        msg: String,
    },
}

/// Which buffer an address or instruction refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BufferKind {
    Input,
    Weight,
    Accumulator,
    Output,
}

impl BufferKind {
    pub const ALL: [BufferKind; 4] = [
        BufferKind::Input,
        BufferKind::Weight,
        BufferKind::Accumulator,
        BufferKind::Output,
    ];
    pub fn name(self) -> &'static str {
        match self {
            BufferKind::Input => "input",
            BufferKind::Weight => "weight",
            BufferKind::Accumulator => "accumulator",
            BufferKind::Output => "output",
        }
    }
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for BufferKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl ArchConfig {
    /// Resolve `PRESET|FILE`: a preset name wins; anything else is read as a TOML path.
    pub fn resolve(spec: &str) -> Result<ArchConfig, ConfigError> {
        if let Some(cfg) = Self::preset(spec) {
            return Ok(cfg);
        }
        let path = Path::new(spec);
        if path.exists() {
            return Self::from_file(path);
        }
        Err(ConfigError::Unknown(spec.to_string()))
    }

    pub fn preset(name: &str) -> Option<ArchConfig> {
        PRESETS.iter().find(|(n, _)| *n == name).map(|(n, text)| {
            Self::from_toml_str(text, &format!("preset {n}")).expect("bundled preset is valid")
        })
    }

    pub fn from_file(path: &Path) -> Result<ArchConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Io {
            path: path.display().to_string(),
            err,
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    pub fn from_toml_str(text: &str, source_name: &str) -> Result<ArchConfig, ConfigError> {
        let cfg: ArchConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            source_name: source_name.to_string(),
            msg: toml_error_text(text, &e),
        })?;
        let invalid = |(field, msg)| ConfigError::Invalid {
            source_name: source_name.to_string(),
            field,
            msg,
        };
        cfg.validate().map_err(invalid)?;
        // Which `[energy]` entries the file gives (the others take their 45 nm defaults).
        let given: Vec<String> = toml::from_str::<toml::Table>(text)
            .ok()
            .and_then(|t| t.get("energy").and_then(|e| e.as_table()).cloned())
            .map(|e| e.keys().cloned().collect())
            .unwrap_or_default();
        let given: Vec<&str> = given.iter().map(String::as_str).collect();
        cfg.energy.check_required(&given).map_err(invalid)?;
        Ok(cfg)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("arch config serializes")
    }

    pub fn buffer(&self, kind: BufferKind) -> &BufferConfig {
        match kind {
            BufferKind::Input => &self.buffers.input,
            BufferKind::Weight => &self.buffers.weight,
            BufferKind::Accumulator => &self.buffers.accumulator,
            BufferKind::Output => &self.buffers.output,
        }
    }

    /// Bytes in one line (the unit of addressing) of a buffer.
    pub fn line_bytes(&self, kind: BufferKind) -> u32 {
        match kind {
            BufferKind::Input => self.array.rows,
            BufferKind::Weight => self.array.cols,
            BufferKind::Accumulator => self.array.cols * 4,
            BufferKind::Output => self.array.cols,
        }
    }

    /// Capacity of a buffer in lines.
    pub fn lines(&self, kind: BufferKind) -> u32 {
        self.buffer(kind).size_bytes / self.line_bytes(kind)
    }

    /// Lines of the largest buffer: no instruction's line count or line address (of a valid
    /// program) exceeds it, so the RTL sizes its line counters and addresses by it.
    pub fn max_lines(&self) -> u32 {
        BufferKind::ALL
            .iter()
            .map(|&k| self.lines(k))
            .max()
            .unwrap_or(1)
    }

    /// Bits of a line address in the largest buffer (at most 16: the validator's 2^16 lines).
    pub fn line_bits(&self) -> u32 {
        index_bits(self.max_lines() as u64)
    }

    /// Bits of a DRAM byte address (at most 32: the validator's 4 GiB).
    pub fn dram_addr_bits(&self) -> u32 {
        index_bits(self.dram.size_bytes)
    }

    /// Lines per bank (banks split the line range into equal contiguous parts).
    pub fn lines_per_bank(&self, kind: BufferKind) -> u32 {
        self.lines(kind) / self.buffer(kind).banks
    }

    /// Checks every field; the error names the field at fault.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |f: &str, m: String| Err((f.to_string(), m));
        if self.name.trim().is_empty() {
            return err("name", "must not be empty".into());
        }
        if !(self.clock_mhz.is_finite() && self.clock_mhz > 0.0) {
            return err(
                "clock_mhz",
                format!("must be a positive number, got {}", self.clock_mhz),
            );
        }
        let a = &self.array;
        for (f, v) in [("array.rows", a.rows), ("array.cols", a.cols)] {
            if v == 0 {
                return err(f, "must be at least 1".into());
            }
            if v > 256 {
                return err(
                    f,
                    format!("{v} exceeds the largest supported array side (256)"),
                );
            }
        }
        if a.precisions.is_empty() {
            return err(
                "array.precisions",
                "must list at least one precision".into(),
            );
        }
        if !a.precisions.contains(&Precision::Int8) {
            return err(
                "array.precisions",
                "must include int8 (the accumulate path is int8 x int8 -> int32)".into(),
            );
        }
        if ![1, 2].contains(&a.weight_banks) {
            return err(
                "array.weight_banks",
                format!(
                    "{} must be 1 or 2 (weight registers per PE)",
                    a.weight_banks
                ),
            );
        }
        if a.chain_overlap && a.weight_banks != 2 {
            return err(
                "array.chain_overlap",
                format!(
                    "needs weight_banks = 2 (chains), got weight_banks = {}",
                    a.weight_banks
                ),
            );
        }
        if ![1, 2, 4, 8].contains(&a.xnor_bits) {
            return err(
                "array.xnor_bits",
                format!("{} must be 1, 2, 4 or 8 (bits of a byte lane)", a.xnor_bits),
            );
        }
        if a.precisions.contains(&Precision::Binary) && !a.cols.is_multiple_of(8) {
            return err(
                "array.precisions",
                format!(
                    "binary needs array.cols to be a multiple of 8 (a packed store turns each \
                     output line into cols/8 bytes), got {}",
                    a.cols
                ),
            );
        }
        for kind in BufferKind::ALL {
            let b = self.buffer(kind);
            let f = |x: &str| format!("buffers.{}.{x}", kind.name());
            let line = self.line_bytes(kind);
            if b.size_bytes == 0 {
                return err(&f("size_bytes"), "must not be zero".into());
            }
            if b.banks == 0 {
                return err(&f("banks"), "must be at least 1".into());
            }
            if !b.size_bytes.is_multiple_of(line) {
                return err(
                    &f("size_bytes"),
                    format!(
                        "{} is not a whole number of {line}-byte lines",
                        b.size_bytes
                    ),
                );
            }
            let lines = b.size_bytes / line;
            if lines > 1 << 16 {
                return err(
                    &f("size_bytes"),
                    format!("{lines} lines exceed the 16-bit line address of the ISA (65536)"),
                );
            }
            if !lines.is_multiple_of(b.banks) {
                return err(
                    &f("banks"),
                    format!("{lines} lines do not split evenly into {} banks", b.banks),
                );
            }
            // One tile: `rows` lines for input, weight and accumulator, `rows` lines of output.
            let tile_lines = a.rows;
            if lines < tile_lines {
                return err(
                    &f("size_bytes"),
                    format!(
                        "{} bytes hold {lines} lines, less than one {}x{} tile ({tile_lines} lines of {line} bytes)",
                        b.size_bytes, a.rows, a.cols
                    ),
                );
            }
        }
        if self.buffers.accumulator.ports != Ports::OneROneW {
            return err(
                "buffers.accumulator.ports",
                "must be \"1r1w\": accumulation reads and writes the accumulator every cycle"
                    .into(),
            );
        }
        // Accumulator holds at least the two parameter lines (multiplier, shift) plus one tile.
        if self.lines(BufferKind::Accumulator) < a.rows + 2 {
            return err(
                "buffers.accumulator.size_bytes",
                "must hold one tile plus two requantization parameter lines".into(),
            );
        }
        let d = &self.dram;
        if d.bytes_per_cycle == 0 {
            return err("dram.bytes_per_cycle", "must be at least 1".into());
        }
        for (what, w) in [("array.rows", a.rows), ("array.cols", a.cols)] {
            if !w.is_multiple_of(d.bytes_per_cycle) {
                return err(
                    "dram.bytes_per_cycle",
                    format!(
                        "{} does not divide {what} ({w}): DMA beats must fill whole buffer lines",
                        d.bytes_per_cycle
                    ),
                );
            }
        }
        if d.latency_cycles == 0 {
            return err(
                "dram.latency_cycles",
                "must be at least 1 (a request is registered before data returns)".into(),
            );
        }
        if d.size_bytes == 0 || d.size_bytes > 1 << 32 {
            return err(
                "dram.size_bytes",
                format!(
                    "{} must be in 1..=4 GiB (32-bit DMA addresses)",
                    d.size_bytes
                ),
            );
        }
        let c = &self.controller;
        if c.queue_depth == 0 {
            return err("controller.queue_depth", "must be at least 1".into());
        }
        if c.token_depth == 0 || c.token_depth > 255 {
            return err("controller.token_depth", "must be in 1..=255".into());
        }
        if c.imem_instructions == 0 {
            return err("controller.imem_instructions", "must be at least 1".into());
        }
        let t = self.ppu.max_thresholds;
        if !(1..=255).contains(&t) || !(t + 1).is_power_of_two() {
            return err(
                "ppu.max_thresholds",
                format!(
                    "{t} must be one of 1, 3, 7, 15, 31, 63, 127, 255 (2^k - 1: k search stages)"
                ),
            );
        }
        if !self.ppu.integer_lanes && self.ppu.fp32_requant {
            return err(
                "ppu.fp32_requant",
                "the binary32 lanes run beside the integer lanes: set it to false when \
                 ppu.integer_lanes = false"
                    .into(),
            );
        }
        if self.ppu.store_requant && !self.ppu.integer_lanes {
            return err(
                "ppu.store_requant",
                "the store engine's requantizer lanes are integer lanes: it needs \
                 ppu.integer_lanes = true"
                    .into(),
            );
        }
        self.energy.validate()?;
        Ok(())
    }

    /// A 64-bit fingerprint of everything that changes what a program means or how long it
    /// takes. Names, clock and energy are excluded: a program runs unchanged on a faster clock.
    pub fn fingerprint(&self) -> u64 {
        let mut h = Fnv64::new();
        h.write(b"systole-arch-v2");
        let a = &self.array;
        h.write_u32(a.rows);
        h.write_u32(a.cols);
        let mut p = a.precisions.clone();
        p.sort();
        p.dedup();
        for x in p {
            h.write(x.to_string().as_bytes());
        }
        h.write_u32(a.xnor_bits);
        for kind in BufferKind::ALL {
            let b = self.buffer(kind);
            h.write_u32(b.size_bytes);
            h.write_u32(b.banks);
            h.write(b.ports.to_string().as_bytes());
        }
        h.write_u32(self.dram.bytes_per_cycle);
        h.write_u32(self.dram.latency_cycles);
        h.write_u64(self.dram.size_bytes);
        h.write_u32(self.controller.queue_depth);
        h.write_u32(self.controller.token_depth);
        h.write_u32(self.controller.imem_instructions);
        h.write_u32(self.ppu.max_thresholds);
        h.write_u32(self.ppu.fp32_requant as u32);
        // Written only when off, so the fingerprints of every arch built before the field
        // existed stay what they were.
        if !self.ppu.integer_lanes {
            h.write(b"no-integer-lanes");
        }
        if !self.array.input_walker {
            h.write(b"no-input-walker");
        }
        if self.array.weight_banks != 1 {
            h.write(b"weight-banks");
            h.write_u32(self.array.weight_banks);
        }
        if self.array.chain_overlap {
            h.write(b"chain-overlap");
        }
        if self.dram.load_ahead {
            h.write(b"load-ahead");
        }
        if self.dram.store_ahead {
            h.write(b"store-ahead");
        }
        if self.ppu.store_requant {
            h.write(b"store-requant");
        }
        h.finish()
    }

    /// Whether the array is built to execute `p`.
    pub fn supports(&self, p: Precision) -> bool {
        self.array.precisions.contains(&p)
    }

    /// Peak MACs per cycle of the array.
    pub fn peak_macs_per_cycle(&self) -> u64 {
        self.array.rows as u64 * self.array.cols as u64
    }
}

/// Bits that index `n` things: ceil(log2(n)), at least 1.
pub fn index_bits(n: u64) -> u32 {
    64 - (n.max(2) - 1).leading_zeros()
}

/// "line L, column C: message" from a TOML error (toml's Display spans several lines).
fn toml_error_text(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
            let src_line = text.lines().nth(line - 1).unwrap_or("").trim();
            format!(
                "line {line}, column {col} (`{src_line}`): {}",
                e.message().trim_end()
            )
        }
        None => e.message().trim_end().to_string(),
    }
}

/// FNV-1a: tiny, stable across Rust versions (unlike `DefaultHasher`), good enough to tell
/// configs apart.
struct Fnv64(u64);
impl Fnv64 {
    fn new() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separator so ("ab","c") and ("a","bc") differ.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
    }
    fn write_u32(&mut self, v: u32) {
        self.write(&v.to_le_bytes())
    }
    fn write_u64(&mut self, v: u64) {
        self.write(&v.to_le_bytes())
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl fmt::Display for ArchConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "# arch {} (fingerprint {:016x})",
            self.name,
            self.fingerprint()
        )?;
        writeln!(
            f,
            "# {}x{} {:?} array, peak {} MAC/cycle = {:.1} GMAC/s at {} MHz",
            self.array.rows,
            self.array.cols,
            self.array.dataflow,
            self.peak_macs_per_cycle(),
            self.peak_macs_per_cycle() as f64 * self.clock_mhz / 1000.0,
            self.clock_mhz
        )?;
        for kind in BufferKind::ALL {
            writeln!(
                f,
                "# {:<11} {:>6} lines x {:>4} B, {} bank(s) of {} lines, {}",
                kind.name(),
                self.lines(kind),
                self.line_bytes(kind),
                self.buffer(kind).banks,
                self.lines_per_bank(kind),
                self.buffer(kind).ports
            )?;
        }
        write!(f, "{}", self.to_toml())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse_and_validate() {
        for (name, _) in PRESETS {
            let cfg = ArchConfig::preset(name).unwrap();
            assert_eq!(&cfg.name, name);
            // Round trip through TOML gives the same struct.
            let again = ArchConfig::from_toml_str(&cfg.to_toml(), "rt").unwrap();
            assert_eq!(cfg, again);
        }
    }

    #[test]
    fn preset_shapes_match_the_spec() {
        let t = ArchConfig::preset("tiny").unwrap();
        assert_eq!((t.array.rows, t.array.cols), (4, 4));
        let u = ArchConfig::preset("ulx3s").unwrap();
        assert_eq!((u.array.rows, u.array.cols), (8, 8));
        let e = ArchConfig::preset("edge").unwrap();
        assert_eq!((e.array.rows, e.array.cols), (16, 16));
        let s = ArchConfig::preset("scalesim32").unwrap();
        assert_eq!((s.array.rows, s.array.cols), (32, 32));
        for k in [BufferKind::Input, BufferKind::Weight, BufferKind::Output] {
            assert_eq!(s.buffer(k).size_bytes, 64 * 1024, "{k}");
        }
    }

    #[test]
    fn binary_settings_are_validated() {
        let base = ArchConfig::preset("ulx3s").unwrap().to_toml();
        for (from, to, field, says) in [
            ("cols = 8", "cols = 4", "array.precisions", "multiple of 8"),
            (
                "xnor_bits = 8",
                "xnor_bits = 3",
                "array.xnor_bits",
                "1, 2, 4 or 8",
            ),
            (
                "weight_banks = 1",
                "weight_banks = 3",
                "array.weight_banks",
                "1 or 2",
            ),
            (
                "max_thresholds = 255",
                "max_thresholds = 100",
                "ppu.max_thresholds",
                "2^k - 1",
            ),
        ] {
            assert!(base.contains(from), "{from} not in {base}");
            let e = ArchConfig::from_toml_str(&base.replace(from, to), "t").unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(field) && msg.contains(says), "{msg}");
        }
    }

    #[test]
    fn index_bits_is_ceil_log2() {
        let got: Vec<u32> = [1u64, 2, 3, 4, 128, 129, 65536, 1 << 32]
            .iter()
            .map(|&n| index_bits(n))
            .collect();
        assert_eq!(got, [1, 1, 2, 2, 7, 8, 16, 32]);
        let up5k = ArchConfig::preset("up5k").unwrap();
        assert_eq!((up5k.line_bits(), up5k.dram_addr_bits()), (7, 11));
    }

    #[test]
    fn fingerprints_differ_between_presets() {
        let mut seen = std::collections::HashSet::new();
        for (name, _) in PRESETS {
            assert!(seen.insert(ArchConfig::preset(name).unwrap().fingerprint()));
        }
    }

    /// Leaving out the integer PPU lanes changes the fingerprint (programs with `alu` or
    /// `requant` no longer run); spelling out the default keeps it; the binary32 lanes cannot
    /// be built without them.
    #[test]
    fn integer_lanes_are_part_of_the_contract() {
        let tiny = ArchConfig::preset("tiny").unwrap();
        let mut t: toml::Table = toml::from_str(PRESETS[0].1).unwrap();
        set(&mut t, &["ppu", "integer_lanes"], true.into());
        let same = ArchConfig::from_toml_str(&toml::to_string(&t).unwrap(), "t.toml").unwrap();
        assert_eq!(same.fingerprint(), tiny.fingerprint());
        set(&mut t, &["ppu", "integer_lanes"], false.into());
        set(&mut t, &["ppu", "fp32_requant"], false.into());
        let off = ArchConfig::from_toml_str(&toml::to_string(&t).unwrap(), "t.toml").unwrap();
        assert!(!off.ppu.integer_lanes);
        assert_ne!(off.fingerprint(), tiny.fingerprint());
        let msg = broken(|t| set(t, &["ppu", "integer_lanes"], false.into()));
        assert!(msg.contains("ppu.fp32_requant"), "{msg}");
        assert!(msg.contains("integer_lanes"), "{msg}");
    }

    fn broken(edit: impl Fn(&mut toml::Table)) -> String {
        let mut t: toml::Table = toml::from_str(PRESETS[0].1).unwrap();
        edit(&mut t);
        let text = toml::to_string(&t).unwrap();
        ArchConfig::from_toml_str(&text, "test.toml")
            .unwrap_err()
            .to_string()
    }

    fn set(t: &mut toml::Table, path: &[&str], v: toml::Value) {
        let mut cur = t;
        for p in &path[..path.len() - 1] {
            cur = cur
                .entry(p.to_string())
                .or_insert_with(|| toml::Value::Table(Default::default()))
                .as_table_mut()
                .unwrap();
        }
        cur.insert(path[path.len() - 1].to_string(), v);
    }

    #[test]
    fn invalid_configs_name_the_field() {
        let cases: Vec<(&[&str], toml::Value, &str)> = vec![
            (&["array", "rows"], 0.into(), "array.rows"),
            (
                &["buffers", "input", "size_bytes"],
                0.into(),
                "buffers.input.size_bytes",
            ),
            (
                &["buffers", "weight", "size_bytes"],
                6.into(),
                "buffers.weight.size_bytes",
            ),
            (
                &["buffers", "weight", "size_bytes"],
                8.into(),
                "buffers.weight.size_bytes",
            ),
            (
                &["buffers", "output", "banks"],
                0.into(),
                "buffers.output.banks",
            ),
            (
                &["buffers", "output", "banks"],
                3.into(),
                "buffers.output.banks",
            ),
            (
                &["buffers", "accumulator", "ports"],
                "1rw".into(),
                "buffers.accumulator.ports",
            ),
            (
                &["dram", "bytes_per_cycle"],
                3.into(),
                "dram.bytes_per_cycle",
            ),
            (
                &["dram", "bytes_per_cycle"],
                0.into(),
                "dram.bytes_per_cycle",
            ),
            (
                &["controller", "queue_depth"],
                0.into(),
                "controller.queue_depth",
            ),
            (&["clock_mhz"], (-1.0).into(), "clock_mhz"),
            (
                &["energy", "int8_mul_pj"],
                (-1.0).into(),
                "energy.int8_mul_pj",
            ),
            (
                &["energy", "dram_64b_pj"],
                f64::NAN.into(),
                "energy.dram_64b_pj",
            ),
            (
                &["energy", "xnor_popcount_bit_pj"],
                (-0.5).into(),
                "energy.xnor_popcount_bit_pj",
            ),
            (&["energy", "scale_to_nm"], 0.0.into(), "energy.scale_to_nm"),
            // A table quoted at another node must give every on-chip entry.
            (&["energy", "node_nm"], 28.0.into(), "energy.int8_mul_pj"),
        ];
        for (path, v, field) in cases {
            let msg = broken(|t| set(t, path, v.clone()));
            assert!(msg.contains(&format!("`{field}`")), "{path:?}: {msg}");
            assert!(msg.contains("test.toml"), "{msg}");
        }
    }

    #[test]
    fn energy_overrides_and_node_scaling_load_from_toml() {
        let mut t: toml::Table = toml::from_str(PRESETS[0].1).unwrap();
        set(&mut t, &["energy", "scale_to_nm"], 28.0.into());
        set(&mut t, &["energy", "dram_64b_pj"], 1300.0.into());
        let cfg = ArchConfig::from_toml_str(&toml::to_string(&t).unwrap(), "e.toml").unwrap();
        assert_eq!(cfg.energy.scale_to_nm, Some(28.0));
        let e = cfg.energy.effective();
        assert!((e.int8_mul_pj - 0.2 * 28.0 / 45.0).abs() < 1e-12);
        assert_eq!(e.dram_64b_pj, 1300.0);
        // Quoting every on-chip entry at another node is accepted.
        let mut t: toml::Table = toml::from_str(PRESETS[0].1).unwrap();
        set(&mut t, &["energy", "node_nm"], 28.0.into());
        for f in crate::energy::ON_CHIP_ENTRIES {
            set(&mut t, &["energy", f], 0.1.into());
        }
        let cfg = ArchConfig::from_toml_str(&toml::to_string(&t).unwrap(), "e.toml").unwrap();
        assert_eq!(cfg.energy.int8_mul_pj, 0.1);
        let msg = broken(|t| set(t, &["energy", "node_nm"], 28.0.into()));
        assert!(msg.contains("missing: required when node_nm = 28"), "{msg}");
    }

    #[test]
    fn unknown_fields_and_types_are_parse_errors() {
        let msg = broken(|t| set(t, &["array", "bogus"], 1.into()));
        assert!(msg.contains("bogus"), "{msg}");
        let msg = broken(|t| set(t, &["array", "rows"], "four".into()));
        assert!(msg.contains("rows"), "{msg}");
    }

    #[test]
    fn unknown_spec_is_an_error() {
        let e = ArchConfig::resolve("no-such-preset")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no-such-preset"), "{e}");
    }
}
