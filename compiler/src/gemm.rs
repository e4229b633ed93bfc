//! Lowering of one quantized GEMM, Y = requant(A x B + bias), to a double-buffered program.
//!
//! This is the kernel every fully connected and (after im2col/implicit GEMM) convolution
//! layer lowers to. Work is split into items (m-tile, n-tile, k-chunk). The load unit fills
//! the ping or pong half of the input and weight buffers for item i while the compute unit
//! works on item i-1 from the other half; the store unit drains output tiles while compute
//! goes on. Tokens (docs/isa.md) order the halves:
//!
//! * load of item i pops compute->load when i >= 2 (compute has released that half) and pushes
//!   load->compute when its data is in;
//! * compute of item i pops load->compute, pushes compute->load with its last instruction; when
//!   the item completes an output tile, requant pops store->compute (for the third and later
//!   tiles: the store of that out half is done) and pushes compute->store;
//! * store pops compute->store and pushes store->compute.
//!
//! DRAM layout: A row-major with rows padded to whole input lines (`k_pad` bytes), B as
//! weight tiles (n-tile major, then k-tile, each `rows` lines of `cols` bytes), per n-tile three
//! int32 lines (bias, multiplier, shift), Y row-major with rows padded to `n_pad` bytes.

use crate::qir::ConvGeom;
use systole_arch::config::Precision;
use systole_arch::image::{DType, Program, Quant, Role, Segment, TensorDesc};
use systole_arch::isa::*;
use systole_arch::{ArchConfig, BufferKind};

/// Requantization of one output channel: y = clamp(round_half_even((acc + bias) * mult /
/// 2^shift) + zp).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelQuant {
    pub bias: i32,
    pub mult: i32,
    pub shift: u32,
}

/// A quantized GEMM layer with its constants.
#[derive(Debug, Clone)]
pub struct GemmLayer {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// B, row-major [k][n].
    pub weights: Vec<i8>,
    /// One entry per output channel.
    pub channels: Vec<ChannelQuant>,
    pub out_zp: i32,
    /// Clamp bounds (int8), e.g. (zp, 127) for a fused ReLU.
    pub out_lo: i8,
    pub out_hi: i8,
    pub in_quant: Option<Quant>,
    pub out_quant: Option<Quant>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GemmError {
    #[error("GEMM {m}x{k}x{n}: {msg}")]
    DoesNotFit {
        m: usize,
        k: usize,
        n: usize,
        msg: String,
    },
    #[error("GEMM: {0}")]
    Invalid(String),
}

/// Decomposes a positive real multiplier into (mult, shift) with mult in [2^30, 2^31) and
/// real ~= mult / 2^shift; None if it cannot be represented with shift <= 62.
pub fn quantize_multiplier(real: f64) -> Option<(i32, u32)> {
    if !(real.is_finite() && real > 0.0) {
        return None;
    }
    let mut shift = 0i32;
    let mut x = real;
    while x < 0.5 {
        x *= 2.0;
        shift += 1;
    }
    while x >= 1.0 {
        x /= 2.0;
        shift -= 1;
    }
    // x in [0.5, 1): mult = round(x * 2^31), shift += 31.
    let mut mult = (x * (1u64 << 31) as f64).round() as i64;
    if mult == 1 << 31 {
        mult /= 2;
        shift -= 1;
    }
    let shift = shift + 31;
    if !(0..=62).contains(&shift) {
        return None;
    }
    Some((mult as i32, shift as u32))
}

/// How the GEMM is tiled on an arch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiling {
    /// Rows of A per item.
    pub tm: usize,
    /// k-tiles per chunk.
    pub kc: usize,
    pub m_tiles: usize,
    pub k_tiles: usize,
    pub n_tiles: usize,
    pub k_chunks: usize,
    /// Accumulator lines of parameters per n-tile.
    pub param_lines: usize,
    /// Rows are scaled by per-row multipliers (two more accumulator slots of `tm` lines).
    pub row_mul: bool,
}

impl Tiling {
    pub fn new(arch: &ArchConfig, m: usize, k: usize, n: usize) -> Result<Tiling, GemmError> {
        Self::with_params(arch, m, k, n, 3, false)
    }

    /// Tiling of a convolution: items hold whole output rows of `ow` pixels.
    pub fn conv(
        arch: &ArchConfig,
        m: usize,
        ow: usize,
        k: usize,
        n: usize,
        param_lines: usize,
        row_mul: bool,
    ) -> Result<Tiling, GemmError> {
        let t = Self::rows_of(arch, m, k, n, param_lines, row_mul, ow)?;
        let tm = (t.tm / ow) * ow;
        if tm == 0 {
            return Err(GemmError::DoesNotFit {
                m,
                k,
                n,
                msg: format!("an output row of {ow} pixels does not fit the buffers"),
            });
        }
        let (r, _) = (arch.array.rows as usize, arch.array.cols as usize);
        let inp_half = arch.lines(BufferKind::Input) as usize / 2;
        let wgt_half = arch.lines(BufferKind::Weight) as usize / 2;
        let kc = (wgt_half / r)
            .min(inp_half / tm)
            .min(t.k_tiles)
            .min(limits().load_dim);
        Ok(Tiling {
            tm,
            kc,
            m_tiles: m.div_ceil(tm),
            k_chunks: t.k_tiles.div_ceil(kc),
            ..t
        })
    }

    /// Tiling when each n-tile needs `param_lines` accumulator lines of parameters (bias plus
    /// requantization or thresholds), double-buffered, and with `row_mul` a double-buffered
    /// slot of per-row multipliers.
    pub fn with_params(
        arch: &ArchConfig,
        m: usize,
        k: usize,
        n: usize,
        param_lines: usize,
        row_mul: bool,
    ) -> Result<Tiling, GemmError> {
        Self::rows_of(arch, m, k, n, param_lines, row_mul, 1)
    }

    /// `with_params` for items of whole multiples of `align` rows (a convolution's output
    /// rows) when it shortens items to keep their input resident.
    fn rows_of(
        arch: &ArchConfig,
        m: usize,
        k: usize,
        n: usize,
        param_lines: usize,
        row_mul: bool,
        align: usize,
    ) -> Result<Tiling, GemmError> {
        let (r, c) = (arch.array.rows as usize, arch.array.cols as usize);
        let fit = |msg: String| GemmError::DoesNotFit { m, k, n, msg };
        if m == 0 || k == 0 || n == 0 {
            return Err(GemmError::Invalid(format!("empty GEMM {m}x{k}x{n}")));
        }
        let k_tiles = k.div_ceil(r);
        let n_tiles = n.div_ceil(c);
        let inp_half = arch.lines(BufferKind::Input) as usize / 2;
        let wgt_half = arch.lines(BufferKind::Weight) as usize / 2;
        let acc_lines = arch.lines(BufferKind::Accumulator) as usize;
        let out_half = arch.lines(BufferKind::Output) as usize / 2;
        // Rows per item first (long matmuls amortise the array's fill and drain): the
        // accumulator holds two slots of tm lines plus two sets of 3 parameter lines, the
        // output half tm lines, a load moves at most `load.rows` rows.
        let tm = m
            .min(inp_half)
            .min(acc_lines.saturating_sub(2 * param_lines) / if row_mul { 4 } else { 2 })
            .min(out_half)
            .min(limits().load_dim);
        if tm == 0 {
            return Err(fit("the buffers hold no row of the tile".into()));
        }
        // Then k-tiles per chunk: what the input half (kc blocks of tm lines) and the weight
        // half (kc tiles of `rows` lines) both hold.
        let mut tm = tm;
        let kc_max = (wgt_half / r).min(k_tiles).min(limits().load_dim);
        // Shorter items whose whole input fits one half stay resident across the n-tiles
        // (`emit_dense`): the input moves once instead of once per n-tile, against the weights
        // once more per extra m-tile and one more weight load and array fill and drain per
        // extra matmul. Taken when that estimate of DRAM and array cycles is smaller, with at
        // most twice the m-tiles (the program grows with them: instruction memory).
        let short = (inp_half / k_tiles).min(tm) / align * align;
        let aligned = tm / align * align;
        if n_tiles > 1
            && tm * k_tiles > inp_half
            && kc_max == k_tiles
            && short >= (r + c).min(m).max(align)
            && 2 * short >= aligned
        {
            let bpc = arch.dram.bytes_per_cycle as usize;
            let cost = |tm: usize, input_loads: usize| {
                let m_tiles = m.div_ceil(tm);
                (m * k * input_loads + m_tiles * k * n) / bpc
                    + m_tiles * n_tiles * k_tiles * (2 * r + c - 1)
            };
            if cost(short, 1) < cost(aligned, n_tiles) {
                tm = short;
            }
        }
        let kc = (wgt_half / r)
            .min(inp_half / tm)
            .min(k_tiles)
            .min(limits().load_dim);
        if kc == 0 {
            return Err(fit(format!(
                "half the weight buffer ({wgt_half} lines) holds no {r}-line weight tile"
            )));
        }
        Ok(Tiling {
            tm,
            kc,
            m_tiles: m.div_ceil(tm),
            k_tiles,
            n_tiles,
            k_chunks: k_tiles.div_ceil(kc),
            param_lines,
            row_mul,
        })
    }
}

/// What a dense layer writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutMode {
    /// Requantized int8 lines (`fp32`: binary32 scales, else multiplier and shift). With
    /// `store_lanes` (arch `ppu.store_requant`) each n-tile's parameters in DRAM start with
    /// the settings line `store requant=1` reads (`store_settings`, `DenseGeom::p_settings`),
    /// and `emit_dense` requantizes in the store engine, which leaves the compute unit to the
    /// chains (`emit_conv_rows` and load groups still requantize on the compute unit).
    Int8 {
        zp: i32,
        lo: i8,
        hi: i8,
        fp32: bool,
        store_lanes: bool,
    },
    /// The int32 accumulators (plus bias), as MatMulInteger produces them.
    Int32,
    /// Multi-threshold activation: base + number of thresholds reached (`count` threshold
    /// lines follow the bias line in each n-tile's parameters).
    Thresh { count: u32, base: i8, step: i8 },
}

impl OutMode {
    /// The same output requantized on the compute unit.
    pub fn on_compute(self) -> OutMode {
        match self {
            OutMode::Int8 {
                zp, lo, hi, fp32, ..
            } => OutMode::Int8 {
                zp,
                lo,
                hi,
                fp32,
                store_lanes: false,
            },
            other => other,
        }
    }

    fn store_lanes(self) -> bool {
        matches!(
            self,
            OutMode::Int8 {
                store_lanes: true,
                ..
            }
        )
    }
}

/// The settings line of `store requant=1` for `n_tiles` n-tiles of `cols` lanes, as a
/// per-channel parameter vector for `pack_params`: lanes 0, 1 and 2 of every n-tile hold the
/// zero point and the clamps' bit patterns.
pub fn store_settings(n_tiles: usize, cols: usize, zp: i32, lo: i8, hi: i8) -> Vec<i32> {
    let mut v = vec![0; n_tiles * cols];
    for nt in 0..n_tiles {
        v[nt * cols..nt * cols + 3].copy_from_slice(&[zp, lo as u8 as i32, hi as u8 as i32]);
    }
    v
}

/// Where a dense layer's operands live in DRAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DenseGeom {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// A: m rows, `a_pitch` bytes apart, zero (or don't-care times zero weights) past k.
    pub a_addr: u64,
    pub a_pitch: u64,
    /// Weight tiles from `pack_weights`.
    pub b_addr: u64,
    /// Parameter lines from `pack_params`.
    pub p_addr: u64,
    /// Each n-tile's parameters in DRAM start with a settings line (`OutMode::Int8::
    /// store_lanes`), which only `store requant=1` reads: the parameter loads skip it.
    pub p_settings: bool,
    /// Y: m rows, `y_pitch` bytes apart.
    pub y_addr: u64,
    pub y_pitch: u64,
    /// k-tiles from this one on read the input again from its first column (a split weight
    /// matrix: the second half of the k-tiles holds the second int8 half of the weights).
    pub k_wrap: Option<usize>,
    /// A convolution (implicit GEMM): A rows are output pixels, k-tiles enumerate (ky, kx,
    /// input-channel tile), and each output row's input pixels are gathered by a strided load
    /// with the borders filled by padding lines.
    pub conv: Option<ConvLoad>,
    /// Per-row int32 multipliers applied after the bias (m accumulator lines, `4 * cols` bytes
    /// apart, every lane of a line the same): an average pool's divisor per output pixel.
    pub row_mul_addr: Option<u64>,
    /// XNOR-popcount layer: A and the weight tiles hold 8 bipolar values a byte (`k` counts
    /// bytes), `matmul binary=1` sums the agreeing bits P, and an `alu add` of the
    /// accumulators to themselves makes 2P, so that the bias line (which must already hold
    /// bias - K) gives the bipolar dot product 2P - K + bias.
    pub binary: bool,
    /// Store bipolar outputs packed (`store pack=1`): each n-tile's `cols` outputs are
    /// `cols / W` bytes at `y_addr + row * y_pitch + nt * cols / W` (W = `array.xnor_bits`).
    pub pack_out: bool,
}

/// One output row's worth of window inputs: output column ox reads input column
/// ox*sx + kx - pad_left of input row iy (padding outside the image).
struct RowGather {
    buf: LoadBuf,
    sram: u32,
    image: u64,
    pitch: u64,
    h: usize,
    w: usize,
    ow: usize,
    iy: i64,
    kx: usize,
    sx: usize,
    pad_left: usize,
    /// Byte offset inside a pixel (the channel tile).
    lane_offset: u64,
    /// Buffer lines per pixel: 1, or all of a pixel's channel tiles (`ConvLoad::pixel_lines`).
    lines: u32,
    pad_value: i32,
}

/// A strided load for one row of a convolution or pooling window, with padding lines for
/// the columns (or the whole row) outside the image.
fn gather_row(g: &RowGather) -> Load {
    let (sx, ow) = (g.sx as i64, g.ow as i64);
    // First and last output column whose input column is inside the image.
    let lo = (g.pad_left as i64 - g.kx as i64 + sx - 1)
        .div_euclid(sx)
        .max(0);
    let hi = (g.w as i64 - 1 + g.pad_left as i64 - g.kx as i64)
        .div_euclid(sx)
        .min(ow - 1);
    if g.iy < 0 || g.iy >= g.h as i64 || hi < lo {
        return Load {
            buf: g.buf,
            sram: g.sram,
            cols: g.ow as u32 * g.lines,
            rows: 0,
            pad_top: 1,
            pad_value: g.pad_value,
            ..Default::default()
        };
    }
    let ix0 = lo * sx + g.kx as i64 - g.pad_left as i64;
    Load {
        buf: g.buf,
        sram: g.sram,
        dram: (g.image + (g.iy as u64 * g.w as u64 + ix0 as u64) * g.pitch + g.lane_offset) as u32,
        rows: (hi - lo + 1) as u32,
        cols: g.lines,
        stride: (sx as u64 * g.pitch) as u32,
        pad_top: lo as u32,
        pad_bottom: (ow - 1 - hi) as u32,
        pad_value: g.pad_value,
        ..Default::default()
    }
}

/// Geometry of a convolution's input gather (NHWC input, `a_pitch` bytes per pixel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvLoad {
    pub h: usize,
    pub w: usize,
    pub ow: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    /// top, left
    pub pad: [usize; 2],
    pub ci_tiles: usize,
    /// The input zero point (hw domain): what padding holds.
    pub pad_value: i8,
}

impl ConvLoad {
    /// Loads filling `sram..` with the A lines of output pixels m0..m0+rows (whole output
    /// rows) for k-tile kt.
    fn loads(
        &self,
        g: &DenseGeom,
        r: usize,
        m0: usize,
        rows: usize,
        kt: usize,
        sram: u32,
    ) -> Vec<Load> {
        let (ct, kk) = (kt % self.ci_tiles, kt / self.ci_tiles);
        let (ky, kx) = (kk / self.kw, kk % self.kw);
        let sy = self.stride[0] as i64;
        let mut v = Vec::new();
        let oy0 = m0 / self.ow;
        for (i, oy) in (oy0..oy0 + rows / self.ow).enumerate() {
            let base = sram + (i * self.ow) as u32;
            let iy = oy as i64 * sy + (ky * self.dilation[0]) as i64 - self.pad[0] as i64;
            v.push(gather_row(&RowGather {
                buf: LoadBuf::Inp,
                sram: base,
                image: g.a_addr,
                pitch: g.a_pitch,
                h: self.h,
                w: self.w,
                ow: self.ow,
                iy,
                // (the tap's column offset)
                kx: kx * self.dilation[1],
                sx: self.stride[1],
                pad_left: self.pad[1],
                lane_offset: (ct * r) as u64,
                lines: 1,
                pad_value: self.pad_value as i32,
            }));
        }
        v
    }

    /// A strided 1x1 convolution without padding whose input-channel tiles all fit one item
    /// and the input walker's skip: returns the tiles per pixel, and the input is gathered
    /// whole pixels at a time (`pixel_loads`), one load per output row instead of one per
    /// output row and channel tile, the `matmul` of tile ct streaming every `ci_tiles`-th
    /// line from line ct (`row` 1, `skip` ci_tiles - 1). At most 8 tiles: the bound `skip`'s
    /// former 3 bits set, kept as measured (ResNet-18's shortcuts have 2 to 8).
    fn pixel_lines(&self, arch: &ArchConfig, t: &Tiling, g: &DenseGeom) -> Option<usize> {
        let ct = self.ci_tiles;
        let oh = g.m / self.ow;
        let fits = self.kh == 1
            && self.kw == 1
            && self.pad == [0, 0]
            && (self.ow - 1) * self.stride[1] < self.w
            && (oh.max(1) - 1) * self.stride[0] < self.h
            && (2..=8).contains(&ct)
            && t.k_chunks == 1
            && t.k_tiles == ct
            && g.k_wrap.is_none()
            && !g.binary
            && arch.array.input_walker
            && g.a_pitch >= (ct * arch.array.rows as usize) as u64;
        fits.then_some(ct)
    }

    /// The loads of `pixel_lines`: output pixels m0..m0+rows, line p * ci_tiles + ct.
    fn pixel_loads(&self, g: &DenseGeom, m0: usize, rows: usize, sram: u32) -> Vec<Load> {
        let oy0 = m0 / self.ow;
        (oy0..oy0 + rows / self.ow)
            .enumerate()
            .map(|(i, oy)| {
                gather_row(&RowGather {
                    buf: LoadBuf::Inp,
                    sram: sram + (i * self.ow * self.ci_tiles) as u32,
                    image: g.a_addr,
                    pitch: g.a_pitch,
                    h: self.h,
                    w: self.w,
                    ow: self.ow,
                    iy: (oy * self.stride[0]) as i64,
                    kx: 0,
                    sx: self.stride[1],
                    pad_left: 0,
                    lane_offset: 0,
                    lines: self.ci_tiles as u32,
                    pad_value: self.pad_value as i32,
                })
            })
            .collect()
    }
}

/// The ISA field limits the schedules respect, read from the field layouts
/// (`isa::field_max`) so that a layout change moves them too.
struct Limits {
    /// `load` rows and lines per row.
    load_dim: usize,
    /// `load` padding lines on a side.
    pad: usize,
    /// `store` rows.
    store_rows: usize,
    /// `matmul` fields: lines, lines per row, lines skipped after a row, chain tile counts
    /// (outer, inner, groups), outer and group steps.
    m: usize,
    row: usize,
    skip: usize,
    count: usize,
    outer_step: usize,
    group_step: usize,
}

fn limits() -> &'static Limits {
    static LIMITS: std::sync::OnceLock<Limits> = std::sync::OnceLock::new();
    LIMITS.get_or_init(|| {
        let f = |op: &str, field: &str| {
            field_max(op, field).unwrap_or_else(|| panic!("the ISA has no field {op}.{field}"))
                as usize
        };
        let min = |op: &str, fields: &[&str]| fields.iter().map(|x| f(op, x)).min().unwrap();
        Limits {
            load_dim: min("load", &["rows", "cols"]),
            pad: min("load", &["pad_top", "pad_bottom", "pad_left", "pad_right"]),
            store_rows: f("store", "rows"),
            m: f("matmul", "m"),
            row: f("matmul", "row"),
            skip: f("matmul", "skip"),
            count: min("matmul", &["outer", "inner", "groups"]),
            outer_step: f("matmul", "outer_step"),
            group_step: f("matmul", "group_step"),
        }
    })
}

fn align(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

/// Weight tiles in DRAM order: tile (nt, kt) line kk lane nn = B[kt*rows + kk][nt*cols + nn]
/// (`weights` row-major [k][n]), zero padded.
pub fn pack_weights(arch: &ArchConfig, t: &Tiling, k: usize, n: usize, weights: &[i8]) -> Vec<u8> {
    let (r, c) = (arch.array.rows as usize, arch.array.cols as usize);
    let mut bt = vec![0u8; t.n_tiles * t.k_tiles * r * c];
    for nt in 0..t.n_tiles {
        for kt in 0..t.k_tiles {
            let base = (nt * t.k_tiles + kt) * r * c;
            for kk in 0..r {
                for nn in 0..c {
                    let (row, col) = (kt * r + kk, nt * c + nn);
                    if row < k && col < n {
                        bt[base + kk * c + nn] = weights[row * n + col] as u8;
                    }
                }
            }
        }
    }
    bt
}

/// Per n-tile `t.param_lines` int32 lines: the requantization lines (multiplier and shift,
/// or binary32 scale bits and zero) or the threshold lines, then the bias. `extra[j][ch]` is
/// line j for output channel ch. The bias comes last so that, with the accumulator slot right
/// behind the parameter slot, it is the row `acc - 1` a `matmul bias=1` starts from.
pub fn pack_params(
    arch: &ArchConfig,
    t: &Tiling,
    bias: &[i32],
    extra: &[Vec<i32>],
    settings: Option<&[i32]>,
) -> Vec<u8> {
    let c = arch.array.cols as usize;
    let lead = settings.is_some() as usize;
    let pl = t.param_lines + lead;
    let mut params = vec![0u8; t.n_tiles * pl * 4 * c];
    for nt in 0..t.n_tiles {
        for nn in 0..c {
            let ch = nt * c + nn;
            // The settings line, the extra lines, then the bias.
            let lines = settings
                .into_iter()
                .chain(extra.iter().map(Vec::as_slice))
                .chain([bias]);
            for (line, src) in lines.take(pl).enumerate() {
                let v = src.get(ch).copied().unwrap_or(0);
                let at = ((nt * pl + line) * c + nn) * 4;
                params[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
    }
    params
}

/// The per-row multiplier lines `DenseGeom::row_mul_addr` points at: one accumulator line per
/// row, every lane holding that row's multiplier.
pub fn pack_row_mul(arch: &ArchConfig, row_mul: &[i32]) -> Vec<u8> {
    let c = arch.array.cols as usize;
    let mut v = Vec::with_capacity(row_mul.len() * 4 * c);
    for &x in row_mul {
        for _ in 0..c {
            v.extend_from_slice(&x.to_le_bytes());
        }
    }
    v
}

/// Emits one dense layer (see the module docs for the token protocol), followed by a barrier
/// after which every store has completed and every token queue is empty, so layers can be
/// chained through DRAM.
pub fn emit_dense(
    arch: &ArchConfig,
    t: &Tiling,
    g: &DenseGeom,
    out: OutMode,
    code: &mut Vec<Insn>,
) {
    let (r, c) = (arch.array.rows as usize, arch.array.cols as usize);
    let m = g.m;
    let inp_half = arch.lines(BufferKind::Input) / 2;
    let wgt_half = arch.lines(BufferKind::Weight) / 2;
    let out_half = arch.lines(BufferKind::Output) / 2;
    let pl = t.param_lines as u32;
    // Accumulator halves (banks): half h holds parameter slot h, then accumulator slot h, then
    // row-multiplier slot h, so that the load of item i + 1's parameters (half (i + 1) % 2)
    // does not wait for the bank compute is writing item i's results into (half i % 2).
    let acc_half = arch.lines(BufferKind::Accumulator) / 2;
    // Load-bound layers run several n-tiles per item (`LoadGroups`): their parameters are
    // loaded once, at the start of half 0, and the slots move behind them.
    let lg = LoadGroups::plan(arch, t, g, out);
    // The store engine requantizes (`OutMode::Int8::store_lanes`): it reads the settings,
    // multiplier and shift lines while the compute unit runs on. Each n-tile's three lines
    // have a place of their own in a block at the start of each half, loaded with the first
    // item whose output is stored from that half and never rewritten (the per-output
    // parameter slots are rewritten while the store of the output before the last may still
    // read them). The store of output o reads the copy in its own half: the next output's
    // chains read the other half's bank every cycle, and the compute unit wins the port.
    // Not in groups: their outputs are short (the requantization costs the compute unit
    // little) and their loads long.
    let row_lines = if t.row_mul { 2 * t.tm } else { t.tm } as u32;
    let spl = STORE_REQUANT_PARAM_LINES;
    let store_block = spl * t.n_tiles as u32;
    let at_store = out.store_lanes()
        && g.p_settings
        && lg.is_none()
        && pl + store_block + row_lines <= acc_half;
    let out = if at_store { out } else { out.on_compute() };
    // Outputs start from their bias row (see the parameter loads below); not in groups,
    // where the parameter block is not next to the accumulator slot.
    let fold = !g.binary && arch.array.input_walker && lg.is_none();
    let resident = t.k_chunks == 1 && t.n_tiles > 1;
    // One m-tile whose input stays resident and whose outputs leave requantized from the
    // accumulator slots: output o is n-tile o, stored from half o % 2. Each half's n-tiles'
    // parameter lines (settings, multipliers, shifts, bias: one DRAM row of `pitch` lines
    // each) then move in one load, at the start (`blocks`), so the items' loads are their
    // weights alone and follow each other without a DRAM latency between them (a short load
    // between two weight loads holds the second one back: loads ahead start one load ahead).
    // Each output's first matmul finds its bias row copied there by a one-line `alu`.
    // Only where the weights take longer to load than to use: the `alu` stops the next
    // output's chain from overlapping the one before (Conv4_s: 600 cycles lost).
    let weight_beats = (t.k_tiles * r * c) as u64 / u64::from(arch.dram.bytes_per_cycle);
    let blocks = at_store
        && resident
        && t.m_tiles == 1
        && fold
        && param_pitch_lines(g, t.param_lines) == spl as usize + 1
        && weight_beats >= (m * t.k_tiles) as u64;
    let spl_b = if blocks { spl + 1 } else { spl };
    let store_block = if !at_store {
        0
    } else if blocks {
        spl_b * t.n_tiles.div_ceil(2) as u32
    } else {
        store_block
    };
    let lead = lg.map_or(pl, |lg| lg.param_block) + store_block;
    // The first of n-tile nt's lines `store requant=1` reads for output o.
    let store_param = |o: usize, nt: usize| match blocks {
        true => (nt % 2) as u32 * acc_half + (nt / 2) as u32 * spl_b,
        false => (o % 2) as u32 * acc_half + nt as u32 * spl,
    };
    // (half, n-tile) places loaded so far.
    let mut store_params = std::collections::HashSet::new();
    let ring = ring_depth(arch, t, blocks, pl + row_lines, store_block);
    // Item i's place in the ring: bank i % 2 (as in the 2-deep protocol), and the slot
    // (i / 2) % (ring / 2) within it.
    let ring_pos = |i: usize| ((i / 2) % (ring / 2)) as u32;
    let param_slot = |i: usize, nt: usize| match lg {
        Some(_) => nt as u32 * pl,
        None => (i % 2) as u32 * acc_half + store_block + ring_pos(i) * (pl + row_lines),
    };
    let acc_slot = |o: usize| (o % 2) as u32 * acc_half + lead + ring_pos(o) * (pl + row_lines);
    let row_mul_slot = |i: usize| acc_slot(i) + t.tm as u32;
    let wgt_slot =
        |i: usize| (i % 2) as u32 * wgt_half + ring_pos(i) * (wgt_half / (ring as u32 / 2));
    let groups = match lg {
        Some(lg) => lg.ranges(t.n_tiles),
        None => (0..t.n_tiles).map(|nt| nt..nt + 1).collect(),
    };
    // An item's parameter lines; when the stores requantize, only the bias line (the last),
    // in its place.
    let item_params = |nt: usize, slot: u32| {
        let mut op = params_load(g, t.param_lines, c, nt, slot);
        if let (true, Op::Load(l)) = (at_store, &mut op) {
            let skip = t.param_lines as u32 - 1;
            l.sram += skip;
            l.dram += skip * 4 * c as u32;
            l.cols = 1;
        }
        op
    };
    let pixel_lines = g.conv.and_then(|cv| cv.pixel_lines(arch, t, g));
    let mut item = 0usize;
    let mut out_idx = 0usize;
    // When an m-tile's whole input fits one half of the input buffer (one k-chunk), it stays
    // there for all n-tiles: loaded by the m-tile's first item into half mt % 2, read by the
    // rest. The 2-deep token protocol already covers it: the first item i of m-tile mt + 1
    // waits for compute item i - 2, at or after the last one of m-tile mt - 1, the previous
    // user of that half.
    let mut order = ItemOrder::default();
    // One row per item (batch-1 dense layers): every k-tile is one line, and lines
    // contiguous in DRAM land contiguous in the buffer, so one load moves a whole run of
    // them (one DRAM latency instead of one per tile).
    let single_row = t.tm == 1 && g.conv.is_none();
    // The loads of k-tiles k0..k0 + tiles of rows m0..m0 + rows into input half `in_half`.
    let input_loads = |m0: usize, rows: usize, in_half: u32, k0: usize, tiles: usize| {
        let mut loads = Vec::new();
        let mut j = 0;
        while single_row && j < tiles {
            let col = |j: usize| (k0 + j) % g.k_wrap.unwrap_or(usize::MAX);
            let mut run = 1;
            while j + run < tiles && col(j + run) == col(j) + run && run < limits().load_dim {
                run += 1;
            }
            loads.push(Op::Load(Load {
                buf: LoadBuf::Inp,
                sram: in_half * inp_half + j as u32,
                dram: (g.a_addr + m0 as u64 * g.a_pitch + (col(j) * r) as u64) as u32,
                rows: 1,
                cols: run as u32,
                stride: g.a_pitch as u32,
                ..Default::default()
            }));
            j += run;
        }
        if let (Some(cv), Some(_)) = (&g.conv, pixel_lines) {
            let sram = in_half * inp_half;
            loads.extend(cv.pixel_loads(g, m0, rows, sram).into_iter().map(Op::Load));
        }
        for j in 0..tiles {
            if single_row || pixel_lines.is_some() {
                break;
            }
            if let Some(cv) = &g.conv {
                let sram = in_half * inp_half + (j * t.tm) as u32;
                loads.extend(
                    cv.loads(
                        g,
                        r,
                        m0,
                        rows,
                        (k0 + j) % g.k_wrap.unwrap_or(usize::MAX),
                        sram,
                    )
                    .into_iter()
                    .map(Op::Load),
                );
                continue;
            }
            loads.push(Op::Load(Load {
                buf: LoadBuf::Inp,
                sram: in_half * inp_half + (j * t.tm) as u32,
                dram: (g.a_addr
                    + m0 as u64 * g.a_pitch
                    + (((k0 + j) % g.k_wrap.unwrap_or(usize::MAX)) * r) as u64)
                    as u32,
                rows: rows as u32,
                cols: 1,
                stride: g.a_pitch as u32,
                ..Default::default()
            }));
        }
        loads
    };
    // m-tiles of equal whole output rows (or rows), a short one first: the array starts
    // sooner, and each m-tile's compute covers the next one's input loads.
    let align = g.conv.map_or(1, |cv| cv.ow);
    let tm = (m / align).div_ceil(t.m_tiles) * align;
    let m_tiles = m.div_ceil(tm);
    let short = m - (m_tiles - 1) * tm;
    let m_tile = |mt: usize| match mt {
        0 => (0, short),
        _ => (short + (mt - 1) * tm, tm),
    };
    // A resident input moves early: m-tile mt + 1's loads are spread over the loads of
    // m-tile mt's items from the second on, behind each item's last load (they delay no
    // compute of theirs; the next items' tokens come after them on the in-order load
    // unit). The second item's token from compute item i - 2 says that m-tile mt - 1, the
    // half's previous user, is done.
    let hoist = resident && groups.len() >= 2;
    let mut early: Vec<Op> = Vec::new();
    for mt in 0..m_tiles {
        let (m0, rows) = m_tile(mt);
        for (gi, nts) in groups.iter().enumerate() {
            let nts = nts.clone();
            let nt = nts.start;
            for kc in 0..t.k_chunks {
                let k0 = kc * t.kc;
                let tiles = t.kc.min(t.k_tiles - k0);
                let last_chunk = kc + 1 == t.k_chunks;
                let half = (item % 2) as u32;
                let in_half = if resident { (mt % 2) as u32 } else { half };
                let load_inputs = !resident || (nt == 0 && (!hoist || mt == 0));
                // The layer's first item, gathered a pixel's lines together (`pixel_lines`),
                // computes its output rows in pieces of at least the array's `rows` pixels
                // (chains of full period), each with a token of its own behind its rows' input loads,
                // so the array starts when the first piece's input is in instead of the
                // whole m-tile's (Conv4_s on scalesim32: 1,960 cycles of loads). The first
                // piece starts from the bias row; the others accumulate onto a copy of it
                // that an `alu` writes after the first piece (a piece's own bias row would
                // be the piece before's last result line).
                let pieces: Vec<std::ops::Range<usize>> = {
                    // (`align` is the output width: m-tiles hold whole output rows.)
                    let out_rows = rows / align;
                    let room = (arch.controller.token_depth as usize).saturating_sub(ring);
                    let per = r.div_ceil(align).max(out_rows.div_ceil(room.max(1)));
                    if item == 0
                        && load_inputs
                        && pixel_lines.is_some()
                        && arch.array.weight_banks == 2
                        && nts.len() == 1
                        && t.k_chunks == 1
                        && out_rows >= 2 * per
                    {
                        let n = out_rows / per;
                        (0..n)
                            .map(|k| {
                                k * per * align..if k + 1 == n {
                                    rows
                                } else {
                                    (k + 1) * per * align
                                }
                            })
                            .collect()
                    } else {
                        Vec::new()
                    }
                };
                let in_pieces = !pieces.is_empty();
                // In `blocks` the last item's weights come in two halves of its k-tiles, each
                // with a token and a chain of its own: the first half's chain runs while the
                // second half loads, so less of its compute follows the layer's last load.
                let k_split = if blocks && tiles >= 2 { tiles / 2 } else { 0 };
                // --- load ---
                let mut loads = Vec::new();
                let mut piece_loads = Vec::new();
                if load_inputs {
                    let inputs = input_loads(m0, rows, in_half, k0, tiles);
                    if in_pieces {
                        // One load per output row (`ConvLoad::pixel_loads`).
                        piece_loads = pieces
                            .iter()
                            .map(|p| inputs[p.start / align..p.end / align].to_vec())
                            .collect::<Vec<_>>();
                    } else {
                        loads.extend(inputs);
                    }
                }
                // A group's n-tiles hold all k-tiles (one chunk), so their weight tiles are
                // contiguous in DRAM: one load.
                let weights = |from: usize, to: usize| {
                    Op::Load(Load {
                        buf: LoadBuf::Wgt,
                        sram: wgt_slot(item) + (from * r) as u32,
                        dram: (g.b_addr + ((nt * t.k_tiles + k0 + from) * r * c) as u64) as u32,
                        rows: (to - from) as u32,
                        cols: r as u32,
                        stride: (r * c) as u32,
                        ..Default::default()
                    })
                };
                let weight_rest = match k_split {
                    0 => {
                        loads.push(weights(0, tiles * nts.len()));
                        None
                    }
                    h => {
                        loads.push(weights(0, h));
                        Some(weights(h, tiles))
                    }
                };
                // The bias is added by the output's first matmul (`matmul bias=1`), so its
                // parameters come with the output's first chunk, in the slot of its parity;
                // binary layers double the count first and add the bias in the epilogue.
                if fold && kc == 0 && !blocks {
                    loads.insert(0, item_params(nt, param_slot(out_idx, nt)));
                }
                if item == 0 && lg.is_some() {
                    // Every n-tile's parameters, first of all.
                    loads.insert(0, params_block_load(g, t.param_lines, c, 0..t.n_tiles, 0));
                }
                if blocks && item < 2 {
                    // Half `item`'s parameter block: n-tiles item, item + 2, ...
                    let pitch = param_pitch_lines(g, t.param_lines);
                    loads.insert(
                        0,
                        Op::Load(Load {
                            buf: LoadBuf::Acc,
                            sram: store_param(item, item),
                            dram: (g.p_addr + (item * pitch * 4 * c) as u64) as u32,
                            rows: (t.n_tiles - item).div_ceil(2) as u32,
                            cols: spl_b,
                            stride: (2 * pitch * 4 * c) as u32,
                            ..Default::default()
                        }),
                    );
                }
                if at_store && last_chunk && !blocks && store_params.insert((out_idx % 2, nt)) {
                    // This output's lines for the store engine, the first time its half
                    // stores n-tile nt.
                    let pitch = param_pitch_lines(g, t.param_lines);
                    loads.insert(
                        0,
                        Op::Load(Load {
                            buf: LoadBuf::Acc,
                            sram: store_param(out_idx, nt),
                            dram: (g.p_addr + (nt * pitch * 4 * c) as u64) as u32,
                            rows: 1,
                            cols: spl,
                            stride: (pitch * 4 * c) as u32,
                            ..Default::default()
                        }),
                    );
                }
                if last_chunk {
                    if !fold && lg.is_none() {
                        loads.push(item_params(nt, param_slot(item, nt)));
                    }
                    if let Some(addr) = g.row_mul_addr {
                        loads.push(Op::Load(Load {
                            buf: LoadBuf::Acc,
                            sram: row_mul_slot(item),
                            dram: (addr + (m0 * 4 * c) as u64) as u32,
                            rows: rows as u32,
                            cols: 1,
                            stride: 4 * c as u32,
                            ..Default::default()
                        }));
                    }
                }
                if in_pieces {
                    // The weights and parameters, then each piece's rows with its token.
                    let mut rest = piece_loads.into_iter();
                    loads.extend(rest.next().unwrap_or_default());
                    push_ring_loads(code, loads, item, ring);
                    for p in rest {
                        push_loads(code, p, false);
                    }
                } else {
                    push_ring_loads(code, loads, item, ring);
                    if let Some(w) = weight_rest {
                        push_loads(code, vec![w], false);
                    }
                }
                if hoist && gi == 1 && mt + 1 < m_tiles {
                    let (m0, rows) = m_tile(mt + 1);
                    early = input_loads(m0, rows, ((mt + 1) % 2) as u32, 0, t.k_tiles);
                }
                if hoist && gi >= 1 {
                    // An equal share for each of the items gi..groups.len().
                    let share = early.len().div_ceil(groups.len() - gi);
                    code.extend(early.drain(..share).map(Insn::new));
                }
                order.release(code);
                // --- compute ---
                let mut comp: Vec<Insn> = Vec::new();
                // Each output's store right behind its epilogue in program order: the
                // requantization of output o waits for the store of o - 2, which may be in
                // the same item.
                let mut last_compute = 0;
                for (j, nt) in nts.clone().enumerate() {
                    let first = comp.len();
                    if blocks {
                        // The bias row from the half's parameter block (max(b, b) = b).
                        let bias = store_param(out_idx, nt) + spl;
                        comp.push(Insn::new(Op::Alu(Alu {
                            func: AluFunc::Max,
                            dst: acc_slot(out_idx) - 1,
                            a: bias,
                            a_stride: 1,
                            b: bias,
                            b_stride: 0,
                            m: 1,
                        })));
                    }
                    let spans: Vec<std::ops::Range<usize>> = if in_pieces {
                        pieces.clone()
                    } else {
                        std::iter::once(0..rows).collect()
                    };
                    // (Output rows, k-tiles) of each chain.
                    let spans: Vec<_> = match k_split {
                        0 => spans.into_iter().map(|p| (p, 0..tiles)).collect(),
                        h => vec![(0..rows, 0..h), (0..rows, h..tiles)],
                    };
                    // Tile j's lines: block j of tm, or every ci_tiles-th from j.
                    let outer_step = pixel_lines.map_or(t.tm, |_| 1);
                    for (k, (p, kt)) in spans.iter().enumerate() {
                        let at = comp.len();
                        tile_run(
                            arch,
                            &TileRun {
                                inp: in_half * inp_half
                                    + (p.start * pixel_lines.unwrap_or(0)) as u32
                                    + (kt.start * outer_step) as u32,
                                wgt: wgt_slot(item) + ((j * tiles + kt.start) * r) as u32,
                                groups: (1, 0),
                                outer: (kt.len() as u32, outer_step as u32),
                                inner: (1, 0),
                                acc: acc_slot(out_idx) + p.start as u32,
                                m: p.len() as u32,
                                row: pixel_lines.map_or(0, |_| 1),
                                skip: pixel_lines.map_or(0, |ct| ct as u32 - 1),
                                accumulate: kc != 0 || kt.start > 0 || (in_pieces && k > 0),
                                bias: fold && k == 0 && kt.start == 0,
                                binary: g.binary,
                            },
                            &mut comp,
                        );
                        if k > 0 {
                            comp[at].deps.pop_prev = true;
                        }
                        if in_pieces && fold && k == 0 {
                            // The later pieces accumulate onto their bias: one broadcast of
                            // the bias row (max(b, b) = b) over their lines, while the array
                            // waits for their input rows anyway (a piece's own bias row
                            // would be the last result line of the piece before).
                            let bias = acc_slot(out_idx) - 1;
                            comp.push(Insn::new(Op::Alu(Alu {
                                func: AluFunc::Max,
                                dst: acc_slot(out_idx) + p.end as u32,
                                a: bias,
                                a_stride: 0,
                                b: bias,
                                b_stride: 0,
                                m: (rows - p.end) as u32,
                            })));
                        }
                    }
                    if kc == 0 && (out == OutMode::Int32 || at_store) && out_idx >= ring {
                        // The store of output o - ring reads this accumulator slot.
                        comp[first].deps.pop_next = true;
                    }
                    if last_chunk {
                        epilogue(
                            &mut comp,
                            &Epilogue {
                                acc: acc_slot(out_idx),
                                lines: rows as u32,
                                param: param_slot(if fold { out_idx } else { item }, nt),
                                param_lines: t.param_lines as u32,
                                bias_folded: fold,
                                row_mul: g.row_mul_addr.map(|_| row_mul_slot(item)),
                                out_line: (out_idx % 2) as u32 * out_half,
                                out_idx,
                                binary: g.binary,
                            },
                            out,
                        );
                    }
                    // --- store ---
                    if last_chunk {
                        let (buf, sram, lane_bytes) = match out {
                            _ if at_store => (StoreBuf::Acc, acc_slot(out_idx), 1),
                            OutMode::Int8 { .. } | OutMode::Thresh { .. } => {
                                (StoreBuf::Out, (out_idx % 2) as u32 * out_half, 1)
                            }
                            OutMode::Int32 => (StoreBuf::Acc, acc_slot(out_idx), 4),
                        };
                        let fp32 = matches!(out, OutMode::Int8 { fp32: true, .. });
                        let col_bytes = if g.pack_out {
                            c / arch.array.xnor_bits as usize
                        } else {
                            c * lane_bytes
                        };
                        last_compute = comp.len() - 1;
                        push_store(
                            &mut comp,
                            Store {
                                buf,
                                sram,
                                dram: (g.y_addr + m0 as u64 * g.y_pitch + (nt * col_bytes) as u64)
                                    as u32,
                                rows: rows as u32,
                                cols: 1,
                                stride: g.y_pitch as u32,
                                pack: g.pack_out,
                                requant: at_store,
                                param: if at_store {
                                    store_param(out_idx, nt)
                                } else {
                                    0
                                },
                                fp32: at_store && fp32,
                                ..Default::default()
                            },
                        );
                        out_idx += 1;
                    }
                }
                if !last_chunk {
                    last_compute = comp.len() - 1;
                }
                comp[0].deps.pop_prev = true;
                // Release the input/weight/parameter half once nothing reads it any more.
                comp[last_compute].deps.push_prev = true;
                order.body.extend(comp);
                item += 1;
            }
        }
    }
    order.finish(code);
    barrier_after(code, item.min(ring), out_idx.min(ring));
}

/// The number of slots items cycle through in `emit_dense` (even; 2 is the 2-deep protocol):
/// item i loads its weights and parameters into slot i % ring, which the compute of item
/// i - ring has left, and its output takes the accumulator slot the store of output i - ring
/// has read. With two slots a load-bound layer's next weight load waits for the compute two
/// items back, which ends about when the load before it does, so the loads could not run
/// back to back (Conv5_s on scalesim32: a period of 636 cycles for 512 beats). Deeper when
/// `deep` (one m-tile whose input stays resident, outputs stored from the accumulator slots,
/// so nothing else alternates per item) and the slots fit: `slot_lines` accumulator lines
/// each after `lead`, the item's weights in a weight slot, one token per slot in flight.
fn ring_depth(arch: &ArchConfig, t: &Tiling, deep: bool, slot_lines: u32, lead: u32) -> usize {
    const DEEPEST: usize = 4;
    if !deep {
        return 2;
    }
    let acc_half = arch.lines(BufferKind::Accumulator) / 2;
    let wgt_half = arch.lines(BufferKind::Weight) as usize / 2;
    let wgt_lines = t.k_tiles * arch.array.rows as usize;
    (2..=DEEPEST)
        .step_by(2)
        .filter(|&d| {
            let per_half = (d / 2) as u32;
            lead + per_half * slot_lines <= acc_half
                && (d / 2) * wgt_lines <= wgt_half
                && d <= arch.controller.token_depth as usize
        })
        .max()
        .unwrap_or(2)
}

/// Several n-tiles per item, for layers whose loads take longer than their compute (batch-1
/// fully connected layers, strided 1x1 convolutions with many output channels): each weight
/// load then pays the DRAM latency once for `size` n-tiles, and the parameters of all n-tiles
/// move in one load at the start (`param_block` accumulator lines at the start of half 0, the
/// slots behind them), instead of one latency per n-tile for each. The cost: the bias is
/// added by an `alu` (the parameter block is not next to the accumulator slot), and the last
/// group's compute is exposed after the last load, so the last n-tile goes alone where its
/// compute is longer than a latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LoadGroups {
    size: usize,
    /// The last n-tile is a group of its own.
    last_alone: bool,
    param_block: u32,
}

impl LoadGroups {
    fn plan(arch: &ArchConfig, t: &Tiling, g: &DenseGeom, out: OutMode) -> Option<LoadGroups> {
        let (r, c) = (arch.array.rows as usize, arch.array.cols as usize);
        // (Where the store engine requantizes outputs of a full array's rows or more, the
        // per-output loads fold the bias and keep requantization off the compute unit.)
        let rows = t.tm.min(g.m);
        if t.k_chunks != 1
            || t.n_tiles < 2
            || out == OutMode::Int32
            || (out.store_lanes() && g.p_settings && rows >= r)
        {
            return None;
        }
        let acc_half = arch.lines(BufferKind::Accumulator) as usize / 2;
        let wgt_half = arch.lines(BufferKind::Weight) as usize / 2;
        let param_block = t.n_tiles * t.param_lines;
        let slots = if t.row_mul { 2 * t.tm } else { t.tm };
        let fit = (wgt_half / (t.k_tiles * r)).min(t.n_tiles);
        if param_block + slots > acc_half
            || param_block > limits().load_dim * t.param_lines
            || fit < 2
        {
            return None;
        }
        // Cycles per n-tile: loading its weights and parameters (one latency each), and
        // computing it (the chain, the bias, requantization).
        let (lat, bpc) = (
            arch.dram.latency_cycles as usize,
            arch.dram.bytes_per_cycle as usize,
        );
        let load = 2 * lat + (t.k_tiles * r * c + t.param_lines * 4 * c) / bpc;
        let compute = t.k_tiles * rows.max(r) + 2 * r + c + 2 * rows + 8;
        if load <= compute {
            return None;
        }
        // Latencies saved against the last group's compute left exposed. Groups also load
        // the whole parameter block up front and add the bias with an `alu`, which this count
        // leaves out: they must save more than two latencies to pay for those (the 64x64
        // binary layers of TFC on `ulx3s` save an estimated 6 cycles and lose 44).
        let cost = |size: usize| t.n_tiles.div_ceil(size) * lat + size * compute;
        let size = (1..=fit).min_by_key(|&s| cost(s)).unwrap();
        (size > 1 && cost(1) > cost(size) + 2 * lat).then_some(LoadGroups {
            size,
            last_alone: compute > lat,
            param_block: param_block as u32,
        })
    }

    /// The n-tiles of each item.
    fn ranges(&self, n_tiles: usize) -> Vec<std::ops::Range<usize>> {
        let body = if self.last_alone {
            n_tiles - 1
        } else {
            n_tiles
        };
        let mut v: Vec<_> = (0..body)
            .step_by(self.size)
            .map(|a| a..(a + self.size).min(body))
            .collect();
        if body < n_tiles {
            v.push(body..n_tiles);
        }
        v
    }
}

/// The row-reuse schedule of a convolution without dilation (`emit_conv_rows`). The input
/// buffer holds whole padded input rows, one block per input-channel tile, so that kernel tap
/// (ky, kx) is one long `matmul` over consecutive lines and each input line is loaded once per
/// item and used by every tap, where the gathering schedule (`ConvLoad::loads`) loads it again
/// for each. With stride s the columns are split into s phases (padded pixel (y, s b + rx) is
/// line b of row y of phase rx, `wq` = ceil(padded width / s) lines a row): tap (ky, s qx +
/// rx) is then the stride-1 tap (ky, qx) of phase rx, and a tap's `matmul` streams each output
/// row's `ow` lines and skips the `s wq - ow` lines to the next output row's (`MatMul::row`,
/// `skip`), so the accumulators hold only real pixels. Where that skip does not fit, the rows
/// are split into phases too (s x s phases: pixel (s a + ry, s b + rx) is line (a, b) of phase
/// (ry, rx)), and each output row skips only its `wq - ow` junk columns. Merged rows make half
/// the chains (phases) and let one load move many image rows of a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvRows {
    /// Output rows per item.
    pub rows: usize,
    pub oh: usize,
    pub stride: usize,
    /// Lines of a phase row.
    pub wq: usize,
    /// Accumulator and output lines of an output row: `ow` when the matmuls skip the
    /// `wq - ow` junk columns of each row (`MatMul::row`, `skip`), else `wq`.
    pub ol: usize,
    /// Phases in use (1 or min(s, kh) row phases x min(s, kw) column phases), and the lines of
    /// each phase's block: its rows (`block_rows`) and the (kw - 1) / s lines the last taps
    /// read past them.
    pub phases: [usize; 2],
    /// Image rows from one row of a phase block to the next: 1 at stride 1 or with merged
    /// row phases, else the stride (each phase's block holds every s-th image row), also
    /// where a one-row kernel leaves a single row phase.
    pub row_step: usize,
    pub block: usize,
    /// Channel tiles per k-chunk, and chunks.
    pub cc: usize,
    pub chunks: usize,
    pub n_tiles: usize,
    pub param_lines: usize,
    /// Loop order: k-chunks outside the n-tiles. Each chunk's input blocks are loaded once
    /// and used by every n-tile, whose accumulators (one region per n-tile, in the m-tile's
    /// accumulator half) stay in the buffer across the chunks; the items can then be as long
    /// as that many accumulators allow instead of as short as keeping every channel tile's
    /// blocks resident needs.
    pub chunks_outside: bool,
    /// Each output's first `matmul` adds the bias (its parameters load with its first chunk)
    /// where the arch has the input walker. In the chunks-outside order the first two
    /// m-tiles' parameters load where no chain writes (`emit_conv_rows`, `params_early`), so
    /// every layer folds; row chains fold where the parameters have their copies.
    pub fold_bias: bool,
    /// Weights in the buffer phase by phase, then channel tile by channel tile, each tile's
    /// taps of that phase in `tap_order` (the layer's DRAM weights permuted to match:
    /// `permute_taps`), so one
    /// chained `matmul` runs a whole phase of all the chunk's channel tiles: taken where the
    /// PEs hold two tiles and that makes fewer chains than the tap-major order (one per
    /// kernel row at stride 1, one per tap otherwise).
    pub per_tile: bool,
    /// Start with a short m-tile (`items`).
    pub ramp: bool,
    /// One chain per output row and column phase, rows of `ow` lines without `row` and
    /// `skip` (merged rows whose skip does not fit). With the input walker (the `bias` flag)
    /// and a few parameter lines, output row y's accumulator lines start at y x `ol` behind
    /// their own copy of the parameters (`ol` = ow + parameter lines), so that every row's
    /// first chain adds the bias (`fold_bias`); otherwise an `alu` adds it as usual.
    pub row_chains: bool,
}

impl ConvRows {
    /// The taps in weight-buffer order: phase by phase ((ky % s, kx % s) row-major), then
    /// (ky / s, kx / s) row-major; the identity at stride 1. Position p holds tap
    /// `tap_order[p]` (= ky * kw + kx).
    pub fn tap_order(&self, kh: usize, kw: usize) -> Vec<usize> {
        let (st, ys) = (self.stride, self.row_step);
        let mut order = Vec::with_capacity(kh * kw);
        for ry in 0..self.phases[0] {
            for rx in 0..st.min(kw) {
                for ky in (ry..kh).step_by(ys) {
                    for kx in (rx..kw).step_by(st) {
                        order.push(ky * kw + kx);
                    }
                }
            }
        }
        order
    }

    /// Taps per phase, in phase order (`tap_order`).
    fn phase_taps(&self, kh: usize, kw: usize) -> Vec<usize> {
        let (st, ys) = (self.stride, self.row_step);
        let mut v = Vec::new();
        for ry in 0..self.phases[0] {
            for rx in 0..st.min(kw) {
                v.push((kh - ry).div_ceil(ys) * (kw - rx).div_ceil(st));
            }
        }
        v
    }

    /// Rows of a phase block for `rows` output rows (`block_rows`).
    pub fn block_rows(&self, rows: usize, kh: usize) -> usize {
        block_rows(rows, self.stride, self.row_step, kh)
    }

    /// Reorders packed weights (`pack_weights`: per n-tile, k-tile = tap x channel tiles +
    /// channel tile) for `per_tile`: per n-tile, chunk by chunk of channel tiles, phase by
    /// phase, then channel tile by channel tile, each one's taps of that phase in `tap_order`.
    /// An item's weights are then one contiguous block of DRAM, and a phase's taps of all the
    /// chunk's channel tiles one run of the weight buffer: one chained matmul (the channel
    /// tiles its groups). At stride 1 (one phase) that is channel tile by channel tile.
    pub fn permute_taps(&self, arch: &ArchConfig, cv: &ConvLoad, bt: &mut [u8]) {
        if !self.per_tile {
            return;
        }
        let tile = (arch.array.rows * arch.array.cols) as usize;
        let order = self.tap_order(cv.kh, cv.kw);
        let phase_taps = self.phase_taps(cv.kh, cv.kw);
        let taps = order.len();
        let per_nt = taps * cv.ci_tiles * tile;
        for block in bt.chunks_exact_mut(per_nt) {
            let old = block.to_vec();
            let mut dst = 0;
            for c0 in (0..cv.ci_tiles).step_by(self.cc) {
                let cc = self.cc.min(cv.ci_tiles - c0);
                let mut first = 0;
                for &n in &phase_taps {
                    for ci in c0..c0 + cc {
                        for &tap in &order[first..first + n] {
                            let src = (tap * cv.ci_tiles + ci) * tile;
                            block[dst..dst + tile].copy_from_slice(&old[src..src + tile]);
                            dst += tile;
                        }
                    }
                    first += n;
                }
            }
        }
    }

    /// The schedule for the convolution `g` (m = oh * ow output pixels, n channels), or None
    /// when `g` is no convolution or one this schedule does not run: dilated, split weights,
    /// row multipliers, binary operands or packed outputs, rows that do not fit the buffers or
    /// the load's fields (`emit_dense`'s gathering schedule then runs it).
    /// `acc_out`: the layer's output is stored from the accumulators (`OutMode::Int32`), which
    /// the chunks-outside order does not do.
    pub fn plan(
        arch: &ArchConfig,
        g: &DenseGeom,
        param_lines: usize,
        acc_out: bool,
    ) -> Option<ConvRows> {
        let cv = g.conv?;
        if g.k_wrap.is_some() || g.row_mul_addr.is_some() || g.binary || g.pack_out {
            return None;
        }
        let (m, n) = (g.m, g.n);
        let st = cv.stride[0];
        if cv.stride[1] != st || st == 0 || cv.dilation != [1, 1] || cv.ow == 0 {
            return None;
        }
        if !m.is_multiple_of(cv.ow) || (st > 1 && cv.kh * cv.kw == 1) {
            // (A strided 1x1 kernel reads each pixel once anyway: nothing to reuse.)
            return None;
        }
        let (r, c) = (arch.array.rows as usize, arch.array.cols as usize);
        let oh = m / cv.ow;
        // Padded width: what the output width implies (the right padding may be partly unused).
        let wp = st * (cv.ow - 1) + cv.kw;
        let wq = wp.div_ceil(st);
        let lim = limits();
        if cv.pad[1] > lim.pad || wq > lim.load_dim || wq < cv.ow || cv.w > lim.load_dim {
            return None;
        }
        // Junk columns skipped where `row` (8 bits) and `skip` (6 bits) can say so; merged
        // rows (`phases`) skip whole rows too.
        let walk = arch.array.input_walker && cv.ow <= lim.row;
        let merged = walk && st > 1 && st * wq - cv.ow <= lim.skip;
        // Wide strided layers whose merged rows' skip does not fit (ResNet-18's first layer,
        // ow 109 at stride 2) run one chain per output row and column phase, which needs no
        // skip, so the rows stay merged (an image row is loaded once, not once per row phase).
        // Taken where each row's stream fills the array (a chained tile costs max(ow, rows)
        // cycles) and the weights are per tile (chains of a phase's taps).
        let row_chains = !merged
            && st > 1
            && arch.array.weight_banks == 2
            && cv.ow >= r
            && st.min(cv.kw) < cv.kh * cv.kw;
        // Rows of w / s lines (the phase's whole image row) follow each other in DRAM, so one
        // load moves many of them, but fewer rows fit the input half: taken where the load
        // unit's time per output row comes out lower (scalesim32: ResNet-18's first layer,
        // w 224, wide rows; padded to 256 pixels, narrow ones).
        let per_row_load = |wq: usize, merge: usize| {
            let half = arch.lines(BufferKind::Input) as usize / 2;
            let block = |rows: usize| {
                st.min(cv.kw) * (block_rows(rows, st, 1, cv.kh) * wq + (cv.kw - 1) / st)
            };
            let rows = (1..=oh).take_while(|&rows| block(rows) <= half).last()?;
            let image_rows = block_rows(rows, st, 1, cv.kh);
            let loads = st.min(cv.kw) * image_rows.div_ceil(merge);
            let beats =
                (r * wq * image_rows * st.min(cv.kw)).div_ceil(arch.dram.bytes_per_cycle as usize);
            Some((loads * arch.dram.latency_cycles as usize + beats) as f64 / rows as f64)
        };
        let wide = cv.w / st;
        let wq = if row_chains
            && cv.pad[1] == 0
            && cv.w % st == 0
            && (wq..=lim.load_dim / 2).contains(&wide)
            && match (per_row_load(wide, lim.load_dim / wide), per_row_load(wq, 1)) {
                (Some(a), Some(b)) => a < b,
                (a, _) => a.is_some(),
            } {
            wide
        } else {
            wq
        };
        let merged = merged || row_chains;
        // Row chains where `matmul` can start from a bias row and the parameters are a few
        // lines (not a threshold set): each output row's lines behind a copy of the
        // parameters, whose last line is that row.
        let copies = row_chains && arch.array.input_walker && 8 * param_lines <= cv.ow;
        let ol = if copies {
            cv.ow + param_lines
        } else if merged || (walk && wq - cv.ow <= lim.skip) {
            cv.ow
        } else {
            wq
        };
        // Every phase row's load fits the 4-bit padding fields.
        let phases = [if merged { 1 } else { st.min(cv.kh) }, st.min(cv.kw)];
        let ys = if merged { 1 } else { st };
        let rows_of_block = |rows: usize| block_rows(rows, st, ys, cv.kh);
        for rx in 0..phases[1] {
            let (lo, hi) = phase_columns(&cv, st, wq, rx)?;
            if lo > lim.pad || wq - 1 - hi > lim.pad {
                return None;
            }
        }
        let inp_half = arch.lines(BufferKind::Input) as usize / 2;
        let wgt_half = arch.lines(BufferKind::Weight) as usize / 2;
        let acc_lines = arch.lines(BufferKind::Accumulator) as usize;
        let out_half = arch.lines(BufferKind::Output) as usize / 2;
        let taps = cv.kh * cv.kw;
        if taps * r > wgt_half {
            return None;
        }
        let np = phases[0] * phases[1];
        let block = |rows: usize| rows_of_block(rows) * wq + (cv.kw - 1) / st;
        let merge = rows_per_load(&cv, st, ys, wq);
        let slot = acc_lines.saturating_sub(2 * param_lines) / 2;
        let fits = |rows: usize, tiles: usize| tiles * np * block(rows) <= inp_half;
        let mut rows = oh.min(slot / ol).min(out_half / ol).min(lim.m / ol);
        while rows > 0 && !fits(rows, 1) {
            rows -= 1;
        }
        if rows == 0 {
            return None;
        }
        // Even out the items: 56 rows in items of at most 12 become 5 x 11.2 -> 12,12,12,12,8
        // otherwise; ceil(oh / items) keeps the count and shortens the longest.
        let even = |rows: usize| oh.div_ceil(oh.div_ceil(rows));
        rows = even(rows);
        let n_tiles = n.div_ceil(c);
        // Shorter items can keep the blocks of every channel tile resident across the n-tiles
        // (`emit_conv_rows`): fewer input loads, more weight loads and shorter matmuls. The
        // chunks-outside order keeps the accumulators of every n-tile instead, which bounds
        // the items by the accumulator half. Each is taken when a first-order estimate of the
        // layer's cycles says so: the larger of the load unit's time (each load pays the DRAM
        // latency, then its beats) and the compute unit's (ldw, matmul with fill and drain,
        // bias and requantization).
        let lat = arch.dram.latency_cycles as usize;
        let bpc = arch.dram.bytes_per_cycle as usize;
        let beats = |bytes: usize| bytes.div_ceil(bpc).max(1);
        // Merged input loads and chains refine the estimate for strided layers only: on
        // ResNet-18's stride-1 layers the cruder one (a latency per block row, a fill and drain
        // per tile) picks the faster orders (measured on scalesim32: Conv4_1b 91041 cycles
        // against 126866 with the refined one, Conv2_1a 116954 against 122961).
        let refined = st > 1;
        // (load, compute) with `extra` more m-tiles than `rows` makes.
        let parts = |rows: usize, outside: bool, extra: usize| {
            let m_tiles = oh.div_ceil(rows) + extra;
            // Every channel tile's blocks in the buffer at once (inputs loaded once per
            // m-tile); the chunks-outside order loads each chunk's once instead.
            let all_resident = !outside && fits(rows, cv.ci_tiles);
            let cc = cv.ci_tiles.min(wgt_half / (taps * r)).min(if all_resident {
                cv.ci_tiles
            } else {
                inp_half / (np * block(rows))
            });
            let chunks = cv.ci_tiles.div_ceil(cc);
            let reloads = if outside || all_resident { 1 } else { n_tiles };
            let blocks = m_tiles * cv.ci_tiles * np * reloads;
            let input_loads =
                blocks * rows_of_block(rows).div_ceil(if refined { merge } else { 1 });
            let input_lines = blocks * rows_of_block(rows) * wq;
            let items = m_tiles * n_tiles * chunks;
            let load = input_loads * lat
                + input_lines * beats(r)
                + items * (lat + cc * taps * r * beats(c));
            let lines = rows * ol;
            // Two weight registers: tiles follow each other every max(lines, rows) cycles
            // and each chain (one per chunk and phase) pays the fill and drain once.
            let (tile, chains) = if arch.array.weight_banks == 2 && refined {
                let per_chunk = if st == 1 { 1 } else { np };
                (
                    lines.max(r),
                    chunks * per_chunk * if row_chains { rows } else { 1 },
                )
            } else {
                (lines, cv.ci_tiles * taps)
            };
            let compute = m_tiles
                * n_tiles
                * (cv.ci_tiles * taps * tile + chains * (2 * r + c - 1) + 2 * lines);
            (load, compute)
        };
        // The units overlap only item by item (two tokens deep): where their times are close,
        // each waits for the other now and then, so the refined estimate adds a quarter of
        // the smaller (Conv3_1a on scalesim32: chunks outside 68019 cycles, resident 78334,
        // where the larger alone says 66600 against 65800).
        let estimate = |rows: usize, outside: bool| {
            let (load, compute) = parts(rows, outside, 0);
            load.max(compute) + if refined { load.min(compute) / 4 } else { 0 }
        };
        let mut res_rows = rows;
        while res_rows > 0 && !fits(res_rows, cv.ci_tiles) {
            res_rows -= 1;
        }
        if n_tiles > 1 && res_rows > 0 && res_rows < rows {
            let res_rows = even(res_rows);
            if estimate(res_rows, false) < estimate(rows, false) {
                rows = res_rows;
            }
        }
        let mut chunks_outside = false;
        if n_tiles > 1 && !acc_out {
            // Each n-tile's region has its parameter lines in front (the bias row folds).
            let region = (acc_lines / 2 / n_tiles).saturating_sub(param_lines);
            let mut out_rows = oh.min(region / ol).min(out_half / ol).min(lim.m / ol);
            while out_rows > 0 && !fits(out_rows, 1) {
                out_rows -= 1;
            }
            // The whole output in one m-tile where every n-tile's region fits the whole
            // accumulator (there is no next m-tile to double-buffer for): the weights then
            // load once instead of once per m-tile. Judged by the refined estimate only (on
            // scalesim32: Conv4_1a 57456 -> 53825 cycles; the crude one would take it for
            // Conv4_1b too, 87650 -> 88518).
            let whole = refined
                && n_tiles * (oh * ol + param_lines) <= acc_lines
                && oh * ol <= out_half
                && oh * ol <= lim.m
                && fits(oh, 1);
            if whole && (out_rows == 0 || estimate(oh, true) < estimate(even(out_rows), true)) {
                out_rows = oh;
            }
            if out_rows > 0 {
                let out_rows = even(out_rows);
                if estimate(out_rows, true) < estimate(rows, false) {
                    rows = out_rows;
                    chunks_outside = true;
                }
            }
        }
        let fold_bias = copies || !row_chains;
        let most = cv
            .ci_tiles
            .min(wgt_half / (taps * r))
            .min(inp_half / (np * block(rows)));
        // Equal chunks where a divisor of the channel tiles comes close (8 tiles at most 3 a
        // chunk: 4 x 2, not 3 + 3 + 2): an item's loads overlap the item before's compute,
        // and after a short chunk a full one's loads would not.
        let cc = (1..=most)
            .rev()
            .find(|&d| cv.ci_tiles % d == 0)
            .filter(|&d| 3 * d >= 2 * most)
            .unwrap_or(most);
        // A short first m-tile (`items`) costs one more pass over the weights: taken while
        // the loads stay under the compute.
        let ramp = !chunks_outside && oh >= 4 && {
            let (load, compute) = parts(rows, false, 1);
            // Chained tiles take max(lines, rows) cycles each, not the fill and drain too.
            let compute = if arch.array.weight_banks == 2 {
                let lines = rows * ol;
                (oh.div_ceil(rows) + 1) * n_tiles * (cv.ci_tiles * taps * lines.max(r) + lines)
            } else {
                compute
            };
            load <= compute
        };
        // At stride 1 one chain covers every tap of every channel tile (groups).
        let per_tile = arch.array.weight_banks == 2 && (st == 1 || np < taps);
        Some(ConvRows {
            per_tile,
            row_chains,
            ramp,
            rows,
            oh,
            stride: st,
            wq,
            ol,
            phases,
            row_step: ys,
            block: block(rows),
            cc,
            chunks: cv.ci_tiles.div_ceil(cc),
            n_tiles,
            param_lines,
            chunks_outside,
            fold_bias,
        })
    }

    /// The m-tiles as (first output row, rows): with `ramp` a short first one (a quarter of
    /// `rows`), so the array starts after a fraction of the first input has
    /// loaded (later inputs load while the array works), then the rest in even tiles of at
    /// most `rows`.
    pub fn items(&self) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        let mut oy = 0;
        if self.ramp {
            let first = self.rows.div_ceil(4);
            v.push((0, first));
            oy = first;
        }
        let rest = self.oh - oy;
        let each = rest.div_ceil(rest.div_ceil(self.rows).max(1));
        while oy < self.oh {
            let r = each.min(self.oh - oy);
            v.push((oy, r));
            oy += r;
        }
        v
    }

    /// The tiling this amounts to, for reports: items of `rows` output rows, k-chunks of cc
    /// channel tiles times the taps.
    pub fn tiling(&self, cv: &ConvLoad) -> Tiling {
        Tiling {
            tm: self.rows * cv.ow,
            kc: self.cc * cv.kh * cv.kw,
            m_tiles: self.items().len(),
            k_tiles: cv.kh * cv.kw * cv.ci_tiles,
            n_tiles: self.n_tiles,
            k_chunks: self.chunks,
            param_lines: self.param_lines,
            row_mul: false,
        }
    }
}

/// Rows of a phase block for `rows` output rows at stride `st`, block rows `ys` image rows
/// apart (`ConvRows::row_step`): each output row `st / ys` block rows after the one before,
/// plus the taps' reach below the last.
fn block_rows(rows: usize, st: usize, ys: usize, kh: usize) -> usize {
    (rows.max(1) - 1) * (st / ys) + (kh - 1) / ys + 1
}

/// Block rows one input load moves (`emit_conv_rows`). Where a block's rows are consecutive
/// image rows (`ys` = 1: stride 1 or merged row phases) without left and right padding and
/// s wq = w, they follow each other in DRAM as in the block (a row's last pixel of the phase
/// is s pixels before the next row's first), so one load moves a run of them (one DRAM
/// latency, not one a row); else one.
fn rows_per_load(cv: &ConvLoad, st: usize, ys: usize, wq: usize) -> usize {
    if ys == 1 && cv.pad[1] == 0 && st * wq == cv.w {
        (limits().load_dim / wq).max(1)
    } else {
        1
    }
}

/// The first and last line (b) of a phase-rx row of `wq` lines that hold image pixels
/// (padded column s b + rx inside the image), or None when none does.
fn phase_columns(cv: &ConvLoad, st: usize, wq: usize, rx: usize) -> Option<(usize, usize)> {
    let (pl, w) = (cv.pad[1] as i64, cv.w as i64);
    let (st, rx) = (st as i64, rx as i64);
    let lo = ((pl - rx).max(0) as u64).div_ceil(st as u64) as i64;
    let hi = ((w - 1 + pl - rx).div_euclid(st)).min(wq as i64 - 1);
    (w > 0 && hi >= lo).then_some((lo as usize, hi as usize))
}

/// Emits a convolution with the row-reuse schedule `t` (`ConvRows::plan` of `g`): same
/// layers, token protocol and DRAM layout as `emit_dense`.
pub fn emit_conv_rows(
    arch: &ArchConfig,
    t: &ConvRows,
    g: &DenseGeom,
    out: OutMode,
    code: &mut Vec<Insn>,
) {
    let cv = g.conv.expect("planned for a convolution");
    let out = out.on_compute();
    let (r, c) = (arch.array.rows as usize, arch.array.cols as usize);
    let inp_half = arch.lines(BufferKind::Input) / 2;
    let wgt_half = arch.lines(BufferKind::Weight) / 2;
    let out_half = arch.lines(BufferKind::Output) / 2;
    let taps = cv.kh * cv.kw;
    let k_tiles = taps * cv.ci_tiles;
    let pl = t.param_lines as u32;
    // Accumulator halves as in `emit_dense`: parameter slot h, then accumulator slot h.
    let acc_half = arch.lines(BufferKind::Accumulator) / 2;
    // Outputs start from their bias row (see the parameter loads below).
    let fold = arch.array.input_walker && t.fold_bias;
    let param_slot = |i: usize| (i % 2) as u32 * acc_half;
    let acc_slot = |o: usize| (o % 2) as u32 * acc_half + pl;
    let st = t.stride;
    let np = t.phases[0] * t.phases[1];
    // Image rows from one block row to the next.
    let ys = t.row_step;
    let block_rows = |rows: usize| t.block_rows(rows, cv.kh);
    // When the blocks of every channel tile fit one half of the input buffer, they stay there
    // for all n-tiles (as in `emit_dense`): the items of the first n-tile load them into half
    // mt % 2, tile c at block c; the other items read them.
    let resident =
        !t.chunks_outside && t.n_tiles > 1 && cv.ci_tiles * np * t.block <= inp_half as usize;
    // Chunks outside the n-tiles: n-tile nt accumulates in its own region of the m-tile's
    // accumulator half, behind its own parameter lines (loaded with its first chunk, read by
    // its last chunk's epilogue); the input of the layer's g-th chunk (counting over the
    // m-tiles) goes to input half g % 2.
    let region = (t.rows * t.ol) as u32;
    let region_params =
        |mt: usize, nt: usize| (mt % 2) as u32 * acc_half + nt as u32 * (pl + region);
    let chunk_block = |g: usize, j: usize| (g % 2) as u32 * inp_half + (j * np * t.block) as u32;
    // Input: per channel tile and phase, one load per run of block rows (`rows_per_load`).
    let merge = rows_per_load(&cv, st, ys, t.wq);
    // The input loads of channel tiles c0..c0 + cc for output rows oy0..oy0 + rows, tile j
    // into the block at `block_at(j)`: every phase's, or with `only` one phase's.
    let input_loads = |oy0: usize,
                       rows: usize,
                       c0: usize,
                       cc: usize,
                       block_at: &dyn Fn(usize) -> u32,
                       only: Option<usize>| {
        let mut ops = Vec::new();
        for j in 0..cc {
            for (ph, (ry, rx)) in (0..t.phases[0])
                .flat_map(|ry| (0..t.phases[1]).map(move |rx| (ry, rx)))
                .enumerate()
            {
                if only.is_some_and(|p| p != ph) {
                    continue;
                }
                let base = block_at(j) + (ph * t.block) as u32;
                let cols = phase_columns(&cv, st, t.wq, rx);
                let image_row = |a: usize| {
                    let iy = (st * oy0 + ys * a + ry) as i64 - cv.pad[0] as i64;
                    (iy >= 0 && iy < cv.h as i64 && cols.is_some()).then_some(iy as u64)
                };
                let mut a = 0;
                while a < block_rows(rows) {
                    let sram = base + (a * t.wq) as u32;
                    let iy = image_row(a);
                    let mut run = 1;
                    while run < merge
                        && a + run < block_rows(rows)
                        && iy.is_some()
                        && image_row(a + run).is_some()
                    {
                        run += 1;
                    }
                    a += run;
                    ops.push(Op::Load(match (iy, cols) {
                        (Some(iy), Some((lo, hi))) => {
                            let ix = (st * lo + rx - cv.pad[1]) as u64;
                            Load {
                                buf: LoadBuf::Inp,
                                sram,
                                dram: (g.a_addr
                                    + (iy * cv.w as u64 + ix) * g.a_pitch
                                    + ((c0 + j) * r) as u64)
                                    as u32,
                                rows: (run * (hi - lo + 1)) as u32,
                                cols: 1,
                                stride: (st as u64 * g.a_pitch) as u32,
                                pad_top: lo as u32,
                                pad_bottom: (t.wq - 1 - hi) as u32,
                                pad_value: cv.pad_value as i32,
                                ..Default::default()
                            }
                        }
                        _ => Load {
                            buf: LoadBuf::Inp,
                            sram,
                            rows: 0,
                            cols: t.wq as u32,
                            pad_top: 1,
                            pad_value: cv.pad_value as i32,
                            ..Default::default()
                        },
                    }));
                }
            }
        }
        ops
    };
    let (mut item, mut out_idx) = (0usize, 0usize);
    let mut next_inputs: Vec<Op> = Vec::new();
    let mut item_order = ItemOrder::default();
    let mut held = Held::default();
    let items = t.items();
    // Resident inputs: items whose only loads are the next m-tile's inputs wait for the
    // m-tile before the last instead of the item before the last (`Tokens`), so the input of
    // m-tile mt + 1 loads during all of m-tile mt's items (ResNet-18's first layer: two
    // n-tiles whose weights stay in the buffer). Where the compute -> load queue holds the
    // up to two m-tiles of tokens compute can then run ahead.
    let items_per_mt = t.n_tiles * t.chunks;
    let relaxed = resident
        && !t.chunks_outside
        && 2 * items_per_mt + 2 <= arch.controller.token_depth as usize;
    let mut tokens = Tokens::default();
    for (mt, &(oy0, rows)) in items.iter().enumerate() {
        // (Row chains with parameter copies: the last row ends `pl` lines before rows x ol.)
        let lines = (rows * t.ol) as u32 - if t.row_chains && fold { pl } else { 0 };
        let order: Vec<(usize, usize)> = if t.chunks_outside {
            (0..t.chunks)
                .flat_map(|chunk| (0..t.n_tiles).map(move |nt| (nt, chunk)))
                .collect()
        } else {
            (0..t.n_tiles)
                .flat_map(|nt| (0..t.chunks).map(move |chunk| (nt, chunk)))
                .collect()
        };
        for (nt, chunk) in order {
            let c0 = chunk * t.cc;
            let cc = t.cc.min(cv.ci_tiles - c0);
            let last_chunk = chunk + 1 == t.chunks;
            let half = (item % 2) as u32;
            // Chunks outside the n-tiles: every n-tile of an m-tile accumulates in one
            // accumulator half, where the chains write a line every cycle, so a parameter load
            // there waits for the write port until the chain before it ends. The first
            // m-tile's parameters are all loaded before anything computes, and the second's
            // while the first's last chunk computes in the other half (its first chunk's items
            // have their weights and the next chunk's input to load); later m-tiles find them
            // in place (`Held`).
            let params_early = fold && t.chunks_outside && !t.row_chains && mt == 0;
            // Input block of the chunk's tile j.
            let in_block = |j: usize| {
                if t.chunks_outside {
                    chunk_block(mt * t.chunks + chunk, j)
                } else if resident {
                    (mt % 2) as u32 * inp_half + ((c0 + j) * np * t.block) as u32
                } else {
                    half * inp_half + (j * np * t.block) as u32
                }
            };
            // Chunks outside the n-tiles: the first chunk's input comes with its first item;
            // every later chunk's is prefetched during the chunk before it (below).
            let load_inputs = if t.chunks_outside {
                mt == 0 && chunk == 0 && nt == 0
            } else {
                !resident || nt == 0
            };
            let acc = if t.chunks_outside {
                region_params(mt, nt) + pl
            } else {
                acc_slot(out_idx)
            };
            let param = match (t.chunks_outside, fold) {
                (true, _) => region_params(mt, nt),
                (false, true) => param_slot(out_idx),
                (false, false) => param_slot(item),
            };
            // The layer's first item loads its input phase by phase, each with its own token
            // for that phase's chain, so the first chain starts before the other phases' input
            // has arrived (the race check takes a chain's input lines group by group, so
            // the other phases' blocks between a chain's channel tiles stay free).
            let split = item == 0
                && load_inputs
                && t.per_tile
                && st > 1
                && !t.row_chains
                && np > 1
                && arch.controller.token_depth as usize >= np + 4;
            let mut loads = if load_inputs {
                input_loads(oy0, rows, c0, cc, &in_block, split.then_some(0))
            } else {
                Vec::new()
            };
            let later_phases: Vec<Vec<Op>> = if split {
                (1..np)
                    .map(|p| input_loads(oy0, rows, c0, cc, &in_block, Some(p)))
                    .collect()
            } else {
                Vec::new()
            };
            // Weights: for every tap, the chunk's channel tiles (tap-major in the buffer), or
            // with `per_tile` every channel tile's taps (one load each).
            if t.per_tile {
                // The chunk's tiles are contiguous in DRAM (`permute_taps`): one load, a row
                // per channel tile when its taps fit a row's 10-bit line count.
                let (rows, cols) = if taps * r <= limits().load_dim {
                    (cc, taps * r)
                } else {
                    (cc * taps, r)
                };
                loads.push(Op::Load(Load {
                    buf: LoadBuf::Wgt,
                    sram: half * wgt_half,
                    dram: (g.b_addr + ((nt * k_tiles + c0 * taps) * r * c) as u64) as u32,
                    rows: rows as u32,
                    cols: cols as u32,
                    stride: (cols * c) as u32,
                    ..Default::default()
                }));
            } else {
                loads.push(Op::Load(Load {
                    buf: LoadBuf::Wgt,
                    sram: half * wgt_half,
                    dram: (g.b_addr + ((nt * k_tiles + c0) * r * c) as u64) as u32,
                    rows: taps as u32,
                    cols: (cc * r) as u32,
                    stride: (cv.ci_tiles * r * c) as u32,
                    ..Default::default()
                }));
            }
            // As in `emit_dense`: the output's first matmul adds the bias, so its parameters
            // come with its first chunk.
            if fold && chunk == 0 {
                // First: the token goes with the item's last load, which this one then does
                // not delay.
                loads.insert(0, params_load(g, t.param_lines, c, nt, param));
                // (`params_early`: the first m-tile's, with its first item.)
                if params_early && nt == 0 {
                    for n in 1..t.n_tiles {
                        loads.insert(n, params_load(g, t.param_lines, c, n, region_params(0, n)));
                    }
                }
                if t.row_chains {
                    for y in 1..rows {
                        let at = param + (y * t.ol) as u32;
                        loads.insert(y, params_load(g, t.param_lines, c, nt, at));
                    }
                }
            } else if !fold && last_chunk {
                loads.push(params_load(g, t.param_lines, c, nt, param));
            }
            if t.row_chains {
                for y in 0..rows {
                    let first = u64::from(acc) + (y * t.ol) as u64;
                    held.written(first..first + cv.ow as u64);
                }
            } else {
                held.written(u64::from(acc)..u64::from(acc + lines));
            }
            let loads = held.filter(loads);
            // Compute tokens the load unit has taken once this item's loads may start
            // (`Tokens`): item - 1 in the 2-deep protocol (compute of item - 2 done); an item
            // that only loads resident inputs needs only the last item that read their half
            // done (the last of m-tile mt - 2), and one that loads nothing none.
            let only_inputs = loads.iter().all(|op| match op {
                Op::Load(l) => l.buf == LoadBuf::Inp,
                _ => true,
            });
            let target = if relaxed && only_inputs {
                if load_inputs {
                    items_per_mt * mt.saturating_sub(1)
                } else {
                    0
                }
            } else {
                item.saturating_sub(1)
            };
            tokens.take(code, target, item);
            push_item_loads_after(code, loads, &mut tokens);
            // (`params_early`: the second m-tile's, behind the first's last chunk's items.)
            if params_early && last_chunk && items.len() > 1 {
                if let Op::Load(l) = params_load(g, t.param_lines, c, nt, region_params(1, nt)) {
                    if held.admit(l) {
                        code.push(Insn::new(Op::Load(l)));
                    }
                }
            }
            for phase in later_phases {
                push_loads(code, held.filter(phase), false);
            }
            if t.chunks_outside && nt >= 1 {
                // Prefetch of the next chunk's input into the other input half, spread over
                // this chunk's items 1..n_tiles, after each item's own loads: that half was
                // last read by the previous chunk, whose last item compute finished before
                // item 1's loads could pop their token, and one share per item keeps the
                // item's weight loads from waiting behind all of it.
                let next = mt * t.chunks + chunk + 1;
                let (nmt, nchunk) = (next / t.chunks, next % t.chunks);
                if let Some(&(noy0, nrows)) = items.get(nmt) {
                    if nt == 1 {
                        let nc0 = nchunk * t.cc;
                        let block_at = |j: usize| chunk_block(next, j);
                        next_inputs = input_loads(
                            noy0,
                            nrows,
                            nc0,
                            t.cc.min(cv.ci_tiles - nc0),
                            &block_at,
                            None,
                        );
                    }
                    let share = next_inputs.len().div_ceil(t.n_tiles - 1);
                    code.extend(
                        next_inputs[((nt - 1) * share).min(next_inputs.len())..]
                            .iter()
                            .take(share)
                            .map(|&op| Insn::new(op)),
                    );
                }
            }
            item_order.release(code);
            let mut comp: Vec<Insn> = Vec::new();
            let mut comp_phase_starts: Vec<usize> = Vec::new();
            // Weights are tap-major, (tap * cc + j) * r: at stride 1 the taps of a kernel row
            // and the channel tiles form one run (kx with input step 1, then j); otherwise
            // each tap's channel tiles do.
            let bstep = (np * t.block) as u32;
            // Output rows `ol` lines apart: without the junk columns (or with merged row
            // phases) the matmuls stream rows of ow lines and skip to the next output row's.
            let stream_row = if t.ol < t.wq || ys < st {
                cv.ow as u32
            } else {
                0
            };
            let wbase = half * wgt_half;
            let mut first = chunk == 0;
            // A run from weight tile `wt` of the item's weights.
            let mut run = |comp: &mut Vec<Insn>,
                           wt: usize,
                           inp: u32,
                           groups: (u32, u32),
                           outer: (u32, u32),
                           inner| {
                tile_run(
                    arch,
                    &TileRun {
                        inp,
                        wgt: wbase + (wt * r) as u32,
                        groups,
                        outer,
                        inner,
                        acc,
                        m: lines,
                        row: stream_row,
                        skip: ((st / ys) * t.wq - cv.ow) as u32,
                        accumulate: !first,
                        bias: fold && first,
                        binary: false,
                    },
                    comp,
                );
                first = false;
            };
            if t.per_tile && st == 1 {
                // Weights [j][tap]: one chain over the channel tiles (groups), kernel rows and
                // kernel columns.
                run(
                    &mut comp,
                    0,
                    in_block(0),
                    (cc as u32, bstep),
                    (cv.kh as u32, t.wq as u32),
                    (cv.kw as u32, 1),
                );
            } else if t.row_chains {
                // Weights as below (one row phase); each output row y streams its ow lines
                // from block row s * y into its own accumulator lines, the first column phase
                // of the first chunk starting them.
                let mut pos = 0;
                for rx in 0..t.phases[1] {
                    let nb = (cv.kw - rx).div_ceil(st);
                    for y in 0..rows {
                        let start = chunk == 0 && rx == 0;
                        tile_run(
                            arch,
                            &TileRun {
                                inp: in_block(0) + (rx * t.block + st * y * t.wq) as u32,
                                wgt: wbase + (pos * r) as u32,
                                groups: (cc as u32, bstep),
                                outer: (cv.kh as u32, t.wq as u32),
                                inner: (nb as u32, 1),
                                acc: acc + (y * t.ol) as u32,
                                m: cv.ow as u32,
                                row: 0,
                                skip: 0,
                                accumulate: !start,
                                bias: fold && start,
                                binary: false,
                            },
                            &mut comp,
                        );
                    }
                    pos += cc * cv.kh * nb;
                }
            } else if t.per_tile {
                // Weights [phase][j][the phase's taps] (`ConvRows::permute_taps`): one chain
                // per phase over the chunk's channel tiles (groups) and the phase's taps
                // (a, b) = (ky / row_step, kx / s).
                let mut pos = 0;
                for ry in 0..t.phases[0] {
                    for rx in 0..t.phases[1] {
                        let (na, nb) = ((cv.kh - ry).div_ceil(ys), (cv.kw - rx).div_ceil(st));
                        let inp = in_block(0) + ((ry * t.phases[1] + rx) * t.block) as u32;
                        // (`split`: each phase's chain takes its input's token.)
                        if split && !comp.is_empty() {
                            let at = comp.len();
                            comp_phase_starts.push(at);
                        }
                        run(
                            &mut comp,
                            pos,
                            inp,
                            (cc as u32, bstep),
                            (na as u32, t.wq as u32),
                            (nb as u32, 1),
                        );
                        pos += cc * na * nb;
                    }
                }
            } else if st == 1 {
                for ky in 0..cv.kh {
                    let inp = in_block(0) + (ky * t.wq) as u32;
                    run(
                        &mut comp,
                        ky * cv.kw * cc,
                        inp,
                        (1, 0),
                        (cv.kw as u32, 1),
                        (cc as u32, bstep),
                    );
                }
            } else {
                for tap in 0..taps {
                    let (ky, kx) = (tap / cv.kw, tap % cv.kw);
                    let inp = in_block(0)
                        + (((ky % ys) * t.phases[1] + kx % st) * t.block
                            + (ky / ys) * t.wq
                            + kx / st) as u32;
                    run(&mut comp, tap * cc, inp, (1, 0), (cc as u32, bstep), (1, 0));
                }
            }
            comp[0].deps.pop_prev = true;
            for &at in &comp_phase_starts {
                comp[at].deps.pop_prev = true;
            }
            if chunk == 0 && out == OutMode::Int32 && out_idx >= 2 {
                // The store of output o-2 reads this accumulator slot.
                comp[0].deps.pop_next = true;
            }
            if last_chunk {
                epilogue(
                    &mut comp,
                    &Epilogue {
                        acc,
                        lines,
                        param,
                        param_lines: t.param_lines as u32,
                        bias_folded: fold,
                        row_mul: None,
                        out_line: (out_idx % 2) as u32 * out_half,
                        out_idx,
                        binary: false,
                    },
                    out,
                );
            }
            comp.last_mut().unwrap().deps.push_prev = true;
            item_order.body.extend(comp);
            if last_chunk {
                // One store per output row, skipping the junk columns, or, without junk
                // lines between the rows, one for as many rows as its `rows` field holds
                // (each store pays the DRAM's write acknowledgement: Conv3_1a's last item
                // stored 7 rows in 1,085 cycles, in 479 as one). The first takes compute's
                // token, the last returns the slot.
                let (buf, first, lane_bytes) = match out {
                    OutMode::Int32 => (StoreBuf::Acc, acc_slot(out_idx), 4),
                    _ => (StoreBuf::Out, (out_idx % 2) as u32 * out_half, 1),
                };
                let per = if t.ol == cv.ow {
                    (limits().store_rows / cv.ow).max(1)
                } else {
                    1
                };
                for i in (0..rows).step_by(per) {
                    let n = per.min(rows - i);
                    item_order.body.push(Insn {
                        deps: Deps {
                            pop_prev: i == 0,
                            push_prev: i + n == rows,
                            ..Default::default()
                        },
                        op: Op::Store(Store {
                            buf,
                            sram: first + (i * t.ol) as u32,
                            dram: (g.y_addr
                                + ((oy0 + i) * cv.ow) as u64 * g.y_pitch
                                + (nt * c * lane_bytes) as u64)
                                as u32,
                            rows: (n * cv.ow) as u32,
                            cols: 1,
                            stride: g.y_pitch as u32,
                            pack: false,
                            ..Default::default()
                        }),
                    });
                }
                out_idx += 1;
            }
            item += 1;
        }
    }
    item_order.finish(code);
    barrier_after(code, item - tokens.taken, out_idx.min(2));
}

/// One run of weight tiles into the same accumulator lines, contiguous in the weight buffer
/// in (group, outer, inner) order: tile (g, a, b) is weight lines
/// `wgt + ((g * outer.0 + a) * inner.0 + b) * rows` and input lines from
/// `inp + g * groups.1 + a * outer.1 + b * inner.1`.
struct TileRun {
    inp: u32,
    wgt: u32,
    /// (count, input line step).
    groups: (u32, u32),
    outer: (u32, u32),
    inner: (u32, u32),
    acc: u32,
    m: u32,
    /// Stream rows of `row` lines with `skip` lines after each (`MatMul::row`; 0: none).
    row: u32,
    skip: u32,
    /// Whether the run's first tile adds to the accumulator.
    accumulate: bool,
    /// Without `accumulate`: the first tile starts from the bias row `acc - 1`.
    bias: bool,
    binary: bool,
}

/// The compute instructions of a `TileRun`: chained `matmul`s where the PEs hold two weight
/// tiles (`array.weight_banks = 2`): one chain when the run fits its fields (`Limits`: counts
/// up to 63, inner step 1, group step up to 1023), else one per (group, outer) row with the inner
/// tiles as its outer level; without the second register `ldw` and `matmul` per tile.
fn tile_run(arch: &ArchConfig, run: &TileRun, comp: &mut Vec<Insn>) {
    let lim = limits();
    let max = lim.count as u32;
    let r = arch.array.rows;
    let (ng, na, nb) = (run.groups.0, run.outer.0, run.inner.0);
    let inp =
        |g: u32, a: u32, b: u32| run.inp + g * run.groups.1 + a * run.outer.1 + b * run.inner.1;
    let wgt = |g: u32, a: u32, b: u32| run.wgt + ((g * na + a) * nb + b) * r;
    let mut first = true;
    let mm = |first: &mut bool| {
        let m = MatMul {
            acc: run.acc,
            m: run.m,
            accumulate: run.accumulate || !*first,
            bias: run.bias && *first,
            binary: run.binary,
            row: run.row,
            skip: run.skip,
            ..Default::default()
        };
        *first = false;
        m
    };
    if arch.array.weight_banks < 2 {
        for g in 0..ng {
            for a in 0..na {
                for b in 0..nb {
                    comp.push(Insn::new(Op::LoadWeights(LoadWeights {
                        wgt: wgt(g, a, b),
                    })));
                    comp.push(Insn::new(Op::MatMul(MatMul {
                        inp: inp(g, a, b),
                        ..mm(&mut first)
                    })));
                }
            }
        }
        return;
    }
    // Larger steps than `outer_step` holds (input buffers over 8192 lines) split the run.
    let fits = ng <= max
        && (ng <= 1 || run.groups.1 as usize <= lim.group_step)
        && na <= max
        && (na <= 1 || run.outer.1 as usize <= lim.outer_step)
        && nb <= max
        && (nb <= 1 || run.inner.1 == 1);
    if fits {
        comp.push(Insn::new(Op::MatMul(MatMul {
            inp: run.inp,
            groups: ng,
            group_step: if ng > 1 { run.groups.1 } else { 0 },
            outer: na,
            inner: nb,
            wgt: run.wgt,
            outer_step: run.outer.1,
            ..mm(&mut first)
        })));
        return;
    }
    // Chains over the inner tiles, or single tiles where their step does not fit.
    let per = if run.inner.1 as usize <= lim.outer_step {
        max
    } else {
        1
    };
    for g in 0..ng {
        for a in 0..na {
            for b0 in (0..nb).step_by(per as usize) {
                comp.push(Insn::new(Op::MatMul(MatMul {
                    inp: inp(g, a, b0),
                    outer: per.min(nb - b0),
                    inner: 1,
                    wgt: wgt(g, a, b0),
                    outer_step: if per > 1 { run.inner.1 } else { 0 },
                    ..mm(&mut first)
                })));
            }
        }
    }
}

/// The load of n-tile `nt`'s parameter lines (bias, then requantization or thresholds) into
/// accumulator lines `sram..`.
fn params_load(g: &DenseGeom, param_lines: usize, cols: usize, nt: usize, sram: u32) -> Op {
    params_block_load(g, param_lines, cols, nt..nt + 1, sram)
}

/// DRAM lines of one n-tile's parameters: `param_lines`, after the settings line if any.
fn param_pitch_lines(g: &DenseGeom, param_lines: usize) -> usize {
    param_lines + g.p_settings as usize
}

/// The load of n-tiles `nts`' parameter lines, one after the other from accumulator line
/// `sram` (one DRAM row per n-tile).
fn params_block_load(
    g: &DenseGeom,
    param_lines: usize,
    cols: usize,
    nts: std::ops::Range<usize>,
    sram: u32,
) -> Op {
    let pitch = param_pitch_lines(g, param_lines);
    let first = nts.start * pitch + g.p_settings as usize;
    Op::Load(Load {
        buf: LoadBuf::Acc,
        sram,
        dram: (g.p_addr + (first * 4 * cols) as u64) as u32,
        rows: nts.len() as u32,
        cols: param_lines as u32,
        stride: (pitch * 4 * cols) as u32,
        ..Default::default()
    })
}

/// Where the end of an output's computation reads and writes (`epilogue`).
struct Epilogue {
    /// Accumulator slot of the output and its lines.
    acc: u32,
    lines: u32,
    /// The item's parameter slot: requantization or threshold lines, then the bias line.
    param: u32,
    param_lines: u32,
    /// The output's first matmul added the bias already.
    bias_folded: bool,
    /// Per-row multiplier slot, if any.
    row_mul: Option<u32>,
    /// First output-buffer line written.
    out_line: u32,
    /// Outputs before this one in the layer (the first two need no store token).
    out_idx: usize,
    binary: bool,
}

/// The instructions that finish an output once its last k-chunk is in the accumulators: a
/// binary layer's doubling, the bias, a row multiplier, then requantization or thresholds into
/// the output buffer (waiting for the store of output o - 2), and the token to the store.
fn epilogue(comp: &mut Vec<Insn>, e: &Epilogue, out: OutMode) {
    let alu = |func, b: u32, b_stride: u32| {
        Insn::new(Op::Alu(Alu {
            func,
            dst: e.acc,
            a: e.acc,
            a_stride: 1,
            b,
            b_stride,
            m: e.lines,
        }))
    };
    if e.binary {
        // P agreeing bits -> 2P; the bias line holds bias - K.
        comp.push(alu(AluFunc::Add, e.acc, 1));
    }
    if !e.bias_folded {
        comp.push(alu(AluFunc::Add, e.param + e.param_lines - 1, 0));
    }
    if let Some(rm) = e.row_mul {
        comp.push(alu(AluFunc::Mul, rm, 1));
    }
    let deps = Deps {
        pop_next: e.out_idx >= 2,
        ..Default::default()
    };
    match out {
        OutMode::Thresh { count, base, step } => comp.push(Insn {
            deps,
            op: Op::Thresh(Thresh {
                dst: e.out_line,
                src: e.acc,
                thr: e.param,
                count,
                m: e.lines,
                base: base as i32,
                step: step as i32,
            }),
        }),
        // (The store engine requantizes.)
        OutMode::Int8 {
            store_lanes: true, ..
        } => {}
        OutMode::Int8 {
            zp, lo, hi, fp32, ..
        } => comp.push(Insn {
            deps,
            op: Op::Requant(Requant {
                dst: e.out_line,
                src: e.acc,
                param: e.param,
                m: e.lines,
                zp,
                lo: lo as u8 as u32,
                hi: hi as u8 as u32,
                unsigned: false,
                round: Round::HalfEven,
                fp32,
            }),
        }),
        OutMode::Int32 => {}
    }
    comp.last_mut().unwrap().deps.push_next = true;
}

/// Program order of a layer's items, one item of lookahead: item i's loads go before item
/// i - 1's compute and stores. The controller dispatches in program order into queues of
/// `controller.queue_depth`, so with each item's loads right behind its own compute (dozens of
/// `ldw`/`matmul`s) the next item's loads reached the load engine only as that compute ended,
/// and compute then waited for them. Every dependency still points backwards in program order
/// (item i's loads wait for item i - 2's compute, emitted before them).
#[derive(Default)]
struct ItemOrder {
    /// The previous item's compute and stores, not yet emitted.
    body: Vec<Insn>,
}

impl ItemOrder {
    /// Call after an item's loads: emits the previous item's body behind them.
    fn release(&mut self, code: &mut Vec<Insn>) {
        code.append(&mut self.body);
    }
    /// Emits the last item's body.
    fn finish(mut self, code: &mut Vec<Insn>) {
        self.release(code);
    }
}

/// Weight tiles and parameter lines the buffers already hold, as the loads that brought them.
/// Only loads write the weight buffer, and the parameter lines are only read, so a load that
/// would bring the same block to the same lines again can be left out: a layer whose weights
/// all fit alternates the same n-tiles through the two weight halves item after item
/// (ResNet-18's first layer on scalesim32: its two n-tiles' weights load once for all 55
/// m-tiles). Accumulator lines a matmul writes are forgotten (`written`).
#[derive(Default)]
struct Held(Vec<Load>);

impl Held {
    /// The buffer a load writes (`acc8` loads land in the accumulator too) and its lines.
    fn dest(l: &Load) -> (BufferKind, std::ops::Range<u64>) {
        let lines = u64::from(l.pad_top + l.rows + l.pad_bottom)
            * u64::from(l.pad_left + l.cols + l.pad_right);
        let buf = match l.buf {
            LoadBuf::Inp => BufferKind::Input,
            LoadBuf::Wgt => BufferKind::Weight,
            LoadBuf::Acc | LoadBuf::Acc8 => BufferKind::Accumulator,
        };
        (buf, u64::from(l.sram)..u64::from(l.sram) + lines)
    }

    fn forget(&mut self, buf: BufferKind, lines: std::ops::Range<u64>) {
        self.0.retain(|h| {
            let (b, r) = Self::dest(h);
            b != buf || r.end <= lines.start || lines.end <= r.start
        });
    }

    /// Accumulator lines `lines` were written by compute.
    fn written(&mut self, lines: std::ops::Range<u64>) {
        self.forget(BufferKind::Accumulator, lines);
    }

    /// Whether load `l` is needed (its block is not already in place); records what it
    /// leaves in the buffer.
    fn admit(&mut self, l: Load) -> bool {
        let keep = matches!(l.buf, LoadBuf::Wgt | LoadBuf::Acc);
        if keep && self.0.contains(&l) {
            return false;
        }
        let (buf, lines) = Self::dest(&l);
        self.forget(buf, lines);
        if keep {
            self.0.push(l);
        }
        true
    }

    /// An item's loads without the blocks already in place; a load-unit `nop` carries the
    /// item's tokens when nothing is left.
    fn filter(&mut self, loads: Vec<Op>) -> Vec<Op> {
        let mut out = Vec::with_capacity(loads.len());
        for op in loads {
            if let Op::Load(l) = op {
                if !self.admit(l) {
                    continue;
                }
            }
            out.push(op);
        }
        if out.is_empty() {
            out.push(Op::Nop(Nop {
                unit: UnitSel::Load,
            }));
        }
        out
    }
}

/// The compute -> load tokens the load unit has taken: one per item compute finishes, taken
/// in order, so holding `n` means compute items 0..n are done.
#[derive(Default)]
struct Tokens {
    taken: usize,
    /// Still to take with the next item's first load.
    owed: usize,
}

impl Tokens {
    /// Before item `item`'s loads: hold at least `target` tokens (at most `item - 1`, the
    /// 2-deep protocol's); all but one are taken by load-unit `nop`s here, the last by the
    /// item's first load.
    fn take(&mut self, code: &mut Vec<Insn>, target: usize, item: usize) {
        let target = target.min(item.saturating_sub(1)).max(self.taken);
        for _ in self.taken + 1..target {
            code.push(Insn {
                deps: Deps {
                    pop_next: true,
                    ..Default::default()
                },
                op: Op::Nop(Nop {
                    unit: UnitSel::Load,
                }),
            });
        }
        self.owed = usize::from(target > self.taken);
        self.taken = target;
    }
}

/// `push_item_loads` with the pops `Tokens::take` left to the first load.
fn push_item_loads_after(code: &mut Vec<Insn>, loads: Vec<Op>, tokens: &mut Tokens) {
    push_loads(code, loads, tokens.owed > 0);
    tokens.owed = 0;
}

/// The loads of one item in the 2-deep token protocol: the first waits for the compute token
/// of item - 2 (when there is one), the last hands the item to compute.
fn push_item_loads(code: &mut Vec<Insn>, loads: impl IntoIterator<Item = Op>, item: usize) {
    push_ring_loads(code, loads.into_iter().collect(), item, 2);
}

/// `push_item_loads` in a ring of `ring` slots (`ring_depth`): the first load waits for the
/// compute token of item - ring.
fn push_ring_loads(code: &mut Vec<Insn>, loads: Vec<Op>, item: usize, ring: usize) {
    push_loads(code, loads, item >= ring);
}

/// An item's loads: the first takes a compute token when `pop`, the last hands the item to
/// compute.
fn push_loads(code: &mut Vec<Insn>, loads: Vec<Op>, pop: bool) {
    let nl = loads.len();
    for (x, op) in loads.into_iter().enumerate() {
        let deps = Deps {
            pop_next: x == 0 && pop,
            push_next: x + 1 == nl,
            ..Default::default()
        };
        code.push(Insn { deps, op });
    }
}

/// An item's store in the 2-deep token protocol: waits for compute's result and returns the
/// output slot to compute.
fn push_store(code: &mut Vec<Insn>, store: Store) {
    code.push(Insn {
        deps: Deps {
            pop_prev: true,
            push_prev: true,
            ..Default::default()
        },
        op: Op::Store(store),
    });
}

/// End-of-layer barrier after `items` load/compute items and `outs` stores of the 2-deep
/// token protocol: compute consumes the store tokens nobody popped (waiting for the last
/// stores), then hands one token to load, which first consumes its own leftovers. Afterwards
/// every store has completed and every token queue is empty.
pub fn barrier(code: &mut Vec<Insn>, items: usize, outs: usize) {
    barrier_after(code, items.min(2), outs.min(2));
}

/// `barrier` where `left` compute -> load tokens and `stores` store -> compute tokens are
/// still to take.
fn barrier_after(code: &mut Vec<Insn>, left: usize, stores: usize) {
    let nop = |unit, deps| Insn {
        deps,
        op: Op::Nop(Nop { unit }),
    };
    for _ in 0..stores {
        code.push(nop(
            UnitSel::Compute,
            Deps {
                pop_next: true,
                ..Default::default()
            },
        ));
    }
    code.push(nop(
        UnitSel::Compute,
        Deps {
            push_prev: true,
            ..Default::default()
        },
    ));
    for _ in 0..left + 1 {
        code.push(nop(
            UnitSel::Load,
            Deps {
                pop_next: true,
                ..Default::default()
            },
        ));
    }
}

/// A padding pass for a convolution that packs kernel columns into lines
/// (`ConvGeom::taps_per_line`) but has left or right padding, which loads can only give as
/// whole lines: it copies the image (`h` rows of `row_in` bytes at `in_addr`) to `out_addr`
/// in rows of `row_out` = `left + row_in` bytes, each starting with `left` bytes of
/// `pad_value`, then one row of padding only. A row's left padding bytes then precede its
/// pixels and its right padding bytes are the next row's left ones, so the convolution reads
/// the padded image as an unpadded one `left / pitch` pixels wider. On chip: `load acc8`
/// (`cols` bytes into int32 lanes a line, the padding as whole lines), an identity `requant`,
/// `store`; a row's last line may carry bytes past the row, which land in the next row's
/// padding before that row's store writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PadPass {
    pub h: usize,
    pub row_in: usize,
    pub in_addr: u64,
    /// Bytes of padding in front of each row: whole lines (`array.cols` bytes).
    pub left: usize,
    pub out_addr: u64,
    pub pad_value: i8,
    /// The identity requantization (`pool_params`).
    pub param_addr: u64,
}

impl PadPass {
    /// The pass for convolution `cv` reading an image at `in_addr` (`pitch` bytes a pixel)
    /// with `n` output channels, and the convolution on the padded image, where only left or
    /// right padding keeps it from packing kernel columns into lines
    /// (`ConvGeom::pad_for_packing`), the pass fits the buffers and the array lines it saves
    /// outweigh twice its DRAM traffic. `out_addr` and `param_addr` are the caller's to place.
    pub fn plan(
        arch: &ArchConfig,
        cv: &ConvGeom,
        n: usize,
        in_addr: u64,
        pitch: usize,
    ) -> Option<(PadPass, ConvGeom)> {
        let (r, c) = (arch.array.rows as usize, arch.array.cols as usize);
        if cv.is_pointwise() || !(arch.ppu.fp32_requant || arch.ppu.integer_lanes) {
            return None;
        }
        let (left, padded) = cv.pad_for_packing(r, pitch, c, limits().pad)?;
        let taps = padded.taps_per_line(r, pitch);
        let saved = (cv.kw - cv.kw.div_ceil(taps)) * cv.kh * cv.oh * cv.ow * n.div_ceil(c);
        let pass = PadPass {
            h: cv.h,
            row_in: cv.w * pitch,
            in_addr,
            left,
            out_addr: 0,
            pad_value: cv.pad_value,
            param_addr: 0,
        };
        let traffic = 2 * pass.out_bytes(arch) as usize / arch.dram.bytes_per_cycle as usize;
        (saved > 2 * traffic && pass.layout(arch).is_some()).then_some((pass, padded))
    }

    pub fn row_out(&self) -> usize {
        self.left + self.row_in
    }

    /// DRAM bytes the padded image takes from `out_addr` (the padding row, and what its
    /// last line carries past it).
    pub fn out_bytes(&self, arch: &ArchConfig) -> u64 {
        ((self.h + 1) * self.row_out() + arch.array.cols as usize) as u64
    }

    /// (padding lines in front of a row, data lines of a row, accumulator slot lines, padded
    /// rows an item moves), or None where a row does not fit the buffers or the load's fields.
    fn layout(&self, arch: &ArchConfig) -> Option<(usize, usize, usize, usize)> {
        let c = arch.array.cols as usize;
        let (left, cols) = (self.left / c, self.row_in.div_ceil(c));
        let out_half = arch.lines(BufferKind::Output) as usize / 2;
        let slot_lines = (arch.lines(BufferKind::Accumulator) as usize).saturating_sub(2) / 2;
        let lim = limits();
        if !self.left.is_multiple_of(c) || left > lim.pad || cols > lim.load_dim {
            return None;
        }
        let rows = (slot_lines.min(out_half) / (left + cols)).min(lim.load_dim);
        (rows > 0).then_some((left, cols, slot_lines, rows))
    }
}

pub fn emit_pad_pass(
    arch: &ArchConfig,
    p: &PadPass,
    code: &mut Vec<Insn>,
) -> Result<(), GemmError> {
    let Some((left, cols, slot_lines, rows)) = p.layout(arch) else {
        return Err(GemmError::DoesNotFit {
            m: p.h,
            k: p.row_in,
            n: 1,
            msg: "a padded image row does not fit the buffers".into(),
        });
    };
    let per_row = left + cols;
    let out_half = arch.lines(BufferKind::Output) as usize / 2;
    let slot = |i: usize| (2 + (i % 2) * slot_lines) as u32;
    let mut item_order = ItemOrder::default();
    let mut item = 0;
    // Rows y0..y1 of the padded image, row h the padding-only one.
    for y0 in (0..=p.h).step_by(rows) {
        let y1 = (y0 + rows).min(p.h + 1);
        let data = y1.min(p.h) - y0.min(p.h);
        let mut loads = Vec::new();
        if item == 0 {
            loads.push(identity_params_load(arch, p.param_addr));
        }
        loads.push(Load {
            buf: LoadBuf::Acc8,
            sram: slot(item),
            dram: (p.in_addr + (y0.min(p.h) * p.row_in) as u64) as u32,
            rows: data as u32,
            cols: cols as u32,
            stride: p.row_in as u32,
            pad_left: left as u32,
            pad_bottom: u32::from(y1 == p.h + 1),
            pad_value: p.pad_value as i32,
            ..Default::default()
        });
        push_item_loads(code, loads.into_iter().map(Op::Load), item);
        item_order.release(code);
        let lines = (y1 - y0) * per_row;
        item_order.body.push(Insn {
            deps: Deps {
                pop_prev: true,
                pop_next: item >= 2,
                push_next: true,
                push_prev: true,
            },
            op: Op::Requant(Requant {
                dst: ((item % 2) * out_half) as u32,
                src: slot(item),
                param: 0,
                m: lines as u32,
                zp: 0,
                lo: 0x80,
                hi: 0x7f,
                unsigned: false,
                round: Round::HalfEven,
                fp32: arch.ppu.fp32_requant,
            }),
        });
        push_store(
            &mut item_order.body,
            Store {
                buf: StoreBuf::Out,
                sram: ((item % 2) * out_half) as u32,
                dram: (p.out_addr + (y0 * p.row_out()) as u64) as u32,
                rows: (y1 - y0) as u32,
                cols: per_row as u32,
                stride: p.row_out() as u32,
                pack: false,
                ..Default::default()
            },
        );
        item += 1;
    }
    item_order.finish(code);
    barrier(code, item, item);
    Ok(())
}

/// Geometry of a max pooling pass over an NHWC int8 image in DRAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolPass {
    pub h: usize,
    pub w: usize,
    pub channels: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    /// top, left
    pub pad: [usize; 2],
    pub oh: usize,
    pub ow: usize,
    pub in_addr: u64,
    pub in_pitch: u64,
    pub out_addr: u64,
    pub out_pitch: u64,
    /// Two accumulator lines: binary32 1.0 per lane, then zeros (an identity requantization).
    pub param_addr: u64,
}

/// The load of `pool_params` (at `addr`) into accumulator lines 0 and 1, where the pooling and
/// padding passes' `requant param=0` reads them.
fn identity_params_load(arch: &ArchConfig, addr: u64) -> Load {
    Load {
        buf: LoadBuf::Acc,
        sram: 0,
        dram: addr as u32,
        rows: 1,
        cols: 2,
        stride: 8 * arch.array.cols,
        ..Default::default()
    }
}

/// The parameter lines `PoolPass::param_addr` points at: an identity requantization, binary32
/// (1.0, then zeros) or, without the binary32 lanes (`ppu.fp32_requant = false`), integer
/// (multiplier 2^30, shift 30).
pub fn pool_params(arch: &ArchConfig) -> Vec<u8> {
    let c = arch.array.cols as usize;
    let mut v = Vec::with_capacity(8 * c);
    let (a, b) = if arch.ppu.fp32_requant {
        (1.0f32.to_bits() as i32, 0)
    } else {
        (1 << 30, 30)
    };
    for x in [a, b] {
        for _ in 0..c {
            v.extend_from_slice(&x.to_le_bytes());
        }
    }
    v
}

/// Emits a max pooling pass: per output row and channel tile, the window's input rows are
/// gathered into accumulator lines (int8 sign-extended, padding -128), reduced with `alu max`,
/// converted back to int8 by an identity `requant` and stored. Same token protocol and
/// barrier as `emit_dense`.
pub fn emit_pool(arch: &ArchConfig, p: &PoolPass, code: &mut Vec<Insn>) -> Result<(), GemmError> {
    let c = arch.array.cols as usize;
    let kk = p.kernel[0] * p.kernel[1];
    let out_half = arch.lines(BufferKind::Output) as usize / 2;
    let acc_lines = arch.lines(BufferKind::Accumulator) as usize;
    let slot_lines = kk * p.ow;
    if 2 + 2 * slot_lines > acc_lines || p.ow > out_half || p.ow > limits().load_dim {
        return Err(GemmError::DoesNotFit {
            m: p.oh * p.ow,
            k: kk,
            n: p.channels,
            msg: "a pooled output row does not fit the buffers".into(),
        });
    }
    let ct_n = p.channels.div_ceil(c);
    let slot = |i: usize| (2 + (i % 2) * slot_lines) as u32;
    let sy = p.stride[0] as i64;
    let mut item = 0usize;
    let mut item_order = ItemOrder::default();
    for oy in 0..p.oh {
        for ct in 0..ct_n {
            let mut loads = Vec::new();
            if item == 0 {
                loads.push(identity_params_load(arch, p.param_addr));
            }
            for ky in 0..p.kernel[0] {
                for kx in 0..p.kernel[1] {
                    let j = ky * p.kernel[1] + kx;
                    let base = slot(item) + (j * p.ow) as u32;
                    let iy = oy as i64 * sy + (ky * p.dilation[0]) as i64 - p.pad[0] as i64;
                    loads.push(gather_row(&RowGather {
                        buf: LoadBuf::Acc8,
                        sram: base,
                        image: p.in_addr,
                        pitch: p.in_pitch,
                        h: p.h,
                        w: p.w,
                        ow: p.ow,
                        iy,
                        kx: kx * p.dilation[1],
                        sx: p.stride[1],
                        pad_left: p.pad[1],
                        lane_offset: (ct * c) as u64,
                        lines: 1,
                        pad_value: -128,
                    }));
                }
            }
            push_item_loads(code, loads.into_iter().map(Op::Load), item);
            item_order.release(code);
            let mut comp = Vec::new();
            for j in 1..kk {
                comp.push(Insn::new(Op::Alu(Alu {
                    func: AluFunc::Max,
                    dst: slot(item),
                    a: slot(item),
                    a_stride: 1,
                    b: slot(item) + (j * p.ow) as u32,
                    b_stride: 1,
                    m: p.ow as u32,
                })));
            }
            comp.push(Insn {
                deps: Deps {
                    pop_next: item >= 2,
                    push_next: true,
                    ..Default::default()
                },
                op: Op::Requant(Requant {
                    dst: ((item % 2) * out_half) as u32,
                    src: slot(item),
                    param: 0,
                    m: p.ow as u32,
                    zp: 0,
                    lo: 0x80,
                    hi: 0x7f,
                    unsigned: false,
                    round: Round::HalfEven,
                    fp32: arch.ppu.fp32_requant,
                }),
            });
            comp[0].deps.pop_prev = true;
            comp.last_mut().unwrap().deps.push_prev = true;
            item_order.body.extend(comp);
            push_store(
                &mut item_order.body,
                Store {
                    buf: StoreBuf::Out,
                    sram: ((item % 2) * out_half) as u32,
                    dram: (p.out_addr + (oy * p.ow) as u64 * p.out_pitch + (ct * c) as u64) as u32,
                    rows: p.ow as u32,
                    cols: 1,
                    stride: p.out_pitch as u32,
                    pack: false,
                    ..Default::default()
                },
            );
            item += 1;
        }
    }
    item_order.finish(code);
    barrier(code, item, item);
    Ok(())
}

/// A packing pass: `m` rows of `k` bipolar bytes (-1 / +1, zero past `k` up to whole
/// `cols`-byte lines) become rows of bits for a binary layer, on chip: the bytes enter
/// accumulator lines (`load acc8`), `thresh` with the threshold 1 keeps them -1 / +1, and
/// `store pack=1` writes each line as `cols / W` bytes of W bits (W = `array.xnor_bits`; bit
/// set for +1, zero past `k`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackPass {
    pub m: usize,
    pub k: usize,
    pub in_addr: u64,
    pub in_pitch: u64,
    pub out_addr: u64,
    pub out_pitch: u64,
    /// One accumulator line of 1s (`pack_threshold_line`).
    pub param_addr: u64,
}

/// The threshold line `PackPass::param_addr` points at: 1 in every lane.
pub fn pack_threshold_line(arch: &ArchConfig) -> Vec<u8> {
    (0..arch.array.cols)
        .flat_map(|_| 1i32.to_le_bytes())
        .collect()
}

/// Packed bytes per row a `PackPass` of `k` values writes: whole lines of `cols / W` bytes.
pub fn packed_row_bytes(arch: &ArchConfig, k: usize) -> usize {
    let c = arch.array.cols as usize;
    k.div_ceil(c) * c / arch.array.xnor_bits as usize
}

/// Emits a packing pass (same token protocol and barrier as `emit_dense`).
pub fn emit_pack(arch: &ArchConfig, p: &PackPass, code: &mut Vec<Insn>) -> Result<(), GemmError> {
    let c = arch.array.cols as usize;
    if !arch.supports(Precision::Binary) {
        return Err(GemmError::Invalid(format!(
            "arch '{}' has no binary precision to pack for",
            arch.name
        )));
    }
    let lines = p.k.div_ceil(c);
    let wb = arch.array.xnor_bits as usize;
    let out_half = arch.lines(BufferKind::Output) as usize / 2;
    let per = ((arch.lines(BufferKind::Accumulator) as usize - 1) / 2)
        .min(out_half)
        .min(limits().load_dim);
    let slot = |i: usize| (1 + (i % 2) * per) as u32;
    let mut item = 0usize;
    for row in 0..p.m {
        for l0 in (0..lines).step_by(per) {
            let n = per.min(lines - l0);
            let mut loads = Vec::new();
            if item == 0 {
                loads.push(Load {
                    buf: LoadBuf::Acc,
                    sram: 0,
                    dram: p.param_addr as u32,
                    rows: 1,
                    cols: 1,
                    stride: (4 * c) as u32,
                    ..Default::default()
                });
            }
            loads.push(Load {
                buf: LoadBuf::Acc8,
                sram: slot(item),
                dram: (p.in_addr + row as u64 * p.in_pitch + (l0 * c) as u64) as u32,
                rows: 1,
                cols: n as u32,
                stride: (n * c) as u32,
                ..Default::default()
            });
            push_item_loads(code, loads.into_iter().map(Op::Load), item);
            let out = ((item % 2) * out_half) as u32;
            code.push(Insn {
                deps: Deps {
                    pop_prev: true,
                    pop_next: item >= 2,
                    push_next: true,
                    push_prev: true,
                },
                op: Op::Thresh(Thresh {
                    dst: out,
                    src: slot(item),
                    thr: 0,
                    count: 1,
                    m: n as u32,
                    base: -1,
                    step: 2,
                }),
            });
            push_store(
                code,
                Store {
                    buf: StoreBuf::Out,
                    sram: out,
                    dram: (p.out_addr + row as u64 * p.out_pitch + (l0 * c / wb) as u64) as u32,
                    rows: 1,
                    cols: n as u32,
                    stride: (n * c / wb) as u32,
                    pack: true,
                    ..Default::default()
                },
            );
            item += 1;
        }
    }
    barrier(code, item, item);
    Ok(())
}

/// Builds the program for `layer` on `arch`.
pub fn gemm_program(arch: &ArchConfig, layer: &GemmLayer) -> Result<Program, GemmError> {
    let (m, k, n) = (layer.m, layer.k, layer.n);
    if layer.weights.len() != k * n {
        return Err(GemmError::Invalid(format!(
            "weights hold {} values, expected {k}x{n}",
            layer.weights.len()
        )));
    }
    if layer.channels.len() != n {
        return Err(GemmError::Invalid(format!(
            "{} channel parameters for {n} output channels",
            layer.channels.len()
        )));
    }
    if let Some(ch) = layer.channels.iter().position(|c| c.shift > 62) {
        return Err(GemmError::Invalid(format!(
            "channel {ch}: shift {} > 62",
            layer.channels[ch].shift
        )));
    }
    if !arch.ppu.integer_lanes {
        return Err(GemmError::Invalid(format!(
            "arch '{}' has no integer PPU lanes (ppu.integer_lanes = false): the GEMM's bias \
             and requantization need them",
            arch.name
        )));
    }
    let t = Tiling::new(arch, m, k, n)?;
    let (r, c) = (arch.array.rows as usize, arch.array.cols as usize);
    let a_pitch = (t.k_tiles * r) as u64;
    let y_pitch = (t.n_tiles * c) as u64;
    let bt = pack_weights(arch, &t, k, n, &layer.weights);
    let bias: Vec<i32> = layer.channels.iter().map(|q| q.bias).collect();
    let mult: Vec<i32> = layer.channels.iter().map(|q| q.mult).collect();
    let shift: Vec<i32> = layer.channels.iter().map(|q| q.shift as i32).collect();
    let params = pack_params(arch, &t, &bias, &[mult, shift], None);
    let a_addr = 0u64;
    let b_addr = align(a_addr + m as u64 * a_pitch, 64);
    let p_addr = align(b_addr + bt.len() as u64, 64);
    let y_addr = align(p_addr + params.len() as u64, 64);
    let total = align(y_addr + m as u64 * y_pitch, 64);
    if total > arch.dram.size_bytes {
        return Err(GemmError::DoesNotFit {
            m,
            k,
            n,
            msg: format!(
                "needs {total} bytes of DRAM, arch has {}",
                arch.dram.size_bytes
            ),
        });
    }
    let g = DenseGeom {
        m,
        k,
        n,
        a_addr,
        a_pitch,
        b_addr,
        p_addr,
        p_settings: false,
        y_addr,
        y_pitch,
        k_wrap: None,
        conv: None,
        row_mul_addr: None,
        binary: false,
        pack_out: false,
    };
    let mut code = Vec::new();
    let out = OutMode::Int8 {
        zp: layer.out_zp,
        lo: layer.out_lo,
        hi: layer.out_hi,
        fp32: false,
        store_lanes: false,
    };
    emit_dense(arch, &t, &g, out, &mut code);
    code.push(Insn::new(Op::Finish(Finish {})));
    if code.len() > arch.controller.imem_instructions as usize {
        return Err(GemmError::DoesNotFit {
            m,
            k,
            n,
            msg: format!(
                "{} instructions exceed the instruction memory ({})",
                code.len(),
                arch.controller.imem_instructions
            ),
        });
    }
    let mut p = Program::new(arch);
    p.dram_bytes = total;
    p.code = code;
    p.data = vec![
        Segment {
            dram_addr: b_addr,
            bytes: bt,
        },
        Segment {
            dram_addr: p_addr,
            bytes: params,
        },
    ];
    let mut a = TensorDesc::dense("A", Role::Input, DType::I8, &[m as u64, k as u64], a_addr);
    a.row_pitch = a_pitch;
    a.quant = layer.in_quant;
    let mut y = TensorDesc::dense("Y", Role::Output, DType::I8, &[m as u64, n as u64], y_addr);
    y.row_pitch = y_pitch;
    y.quant = layer.out_quant;
    p.tensors = vec![a, y];
    p.meta.insert("kernel".into(), format!("gemm {m}x{k}x{n}"));
    p.meta.insert("tiling".into(), format!("{t:?}"));
    Ok(p)
}

/// The exact result the program must produce, computed directly (the test oracle).
pub fn gemm_reference(layer: &GemmLayer, a: &[i8]) -> Vec<i8> {
    let (m, k, n) = (layer.m, layer.k, layer.n);
    let mut y = vec![0i8; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc: i64 = 0;
            for kk in 0..k {
                acc += a[i * k + kk] as i64 * layer.weights[kk * n + j] as i64;
            }
            let q = layer.channels[j];
            let prod = (acc + q.bias as i64) as i128 * q.mult as i128;
            let v = if q.shift == 0 {
                prod
            } else {
                let d = 1i128 << q.shift;
                let (fl, rem) = (prod.div_euclid(d), prod.rem_euclid(d));
                fl + (2 * rem > d || (2 * rem == d && fl % 2 != 0)) as i128
            };
            let v = (v + layer.out_zp as i128).clamp(layer.out_lo as i128, layer.out_hi as i128);
            y[i * n + j] = v as i8;
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A padded image row wider than the buffers (or a padding that is no whole number of
    /// lines) is refused by name, and `PadPass::plan` never proposes such a pass.
    #[test]
    fn padding_passes_that_do_not_fit_are_refused() {
        let arch = ArchConfig::resolve("ulx3s").unwrap();
        let pass = |row_in, left| PadPass {
            h: 4,
            row_in,
            in_addr: 0,
            left,
            out_addr: 4096,
            pad_value: 0,
            param_addr: 8192,
        };
        let mut code = Vec::new();
        assert!(emit_pad_pass(&arch, &pass(3 * 28, 24), &mut code).is_ok());
        assert!(!code.is_empty());
        for bad in [pass(8 * 1024 * 3, 24), pass(3 * 28, 12)] {
            let e = emit_pad_pass(&arch, &bad, &mut Vec::new()).unwrap_err();
            assert!(e.to_string().contains("padded image row"), "{e}");
            assert!(bad.layout(&arch).is_none());
        }
    }

    /// Every (weight line, input line) a run's instructions stream, tile by tile.
    fn tiles_of(arch: &ArchConfig, code: &[Insn]) -> Vec<(u32, u64)> {
        let mut v = Vec::new();
        let mut wgt = 0;
        for i in code {
            match i.op {
                Op::LoadWeights(l) => wgt = l.wgt,
                Op::MatMul(mm) if mm.is_chain() => v.extend(
                    (0..mm.tiles())
                        .map(|t| (mm.tile_wgt(t, arch.array.rows) as u32, mm.tile_inp(t))),
                ),
                Op::MatMul(mm) => v.push((wgt, mm.inp as u64)),
                _ => {}
            }
        }
        v
    }

    /// A run too long for one chain's fields (70 inner tiles, an inner step of 3) becomes
    /// chains over the same tiles, in the same order, as `ldw` + `matmul` per tile; only the
    /// first starts from the bias row.
    #[test]
    fn runs_beyond_the_chain_fields_split_into_chains() {
        let plain = ArchConfig::preset("tiny").unwrap();
        let mut banked = plain.clone();
        banked.array.weight_banks = 2;
        let run = TileRun {
            inp: 5,
            wgt: 0,
            groups: (2, 200),
            outer: (2, 90),
            inner: (70, 3),
            acc: 7,
            m: 4,
            row: 0,
            skip: 0,
            accumulate: false,
            bias: true,
            binary: false,
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        tile_run(&plain, &run, &mut a);
        tile_run(&banked, &run, &mut b);
        assert_eq!(tiles_of(&plain, &a).len(), 2 * 2 * 70);
        assert_eq!(tiles_of(&banked, &b), tiles_of(&plain, &a));
        assert!(b.len() > 1 && b.len() < a.len() / 2, "{} chains", b.len());
        let biased: Vec<bool> = b
            .iter()
            .filter_map(|i| match i.op {
                Op::MatMul(mm) => Some(mm.bias && !mm.accumulate),
                _ => None,
            })
            .collect();
        assert!(biased[0] && biased[1..].iter().all(|&x| !x));
    }

    /// Steps past `outer_step`'s 13 bits (input buffers over 8192 lines) split a run: an
    /// outer step into chains per outer tile, an inner step into single tiles. The same tiles
    /// in the same order as `ldw` + `matmul` per tile, and every instruction encodes.
    #[test]
    fn steps_beyond_outer_step_split_the_run() {
        let plain = ArchConfig::preset("tiny").unwrap();
        let mut banked = plain.clone();
        banked.array.weight_banks = 2;
        for (outer, inner) in [((3, 9000), (2, 1)), ((2, 5), (3, 9000))] {
            let run = TileRun {
                inp: 5,
                wgt: 0,
                groups: (1, 0),
                outer,
                inner,
                acc: 7,
                m: 4,
                row: 0,
                skip: 0,
                accumulate: false,
                bias: false,
                binary: false,
            };
            let (mut a, mut b) = (Vec::new(), Vec::new());
            tile_run(&plain, &run, &mut a);
            tile_run(&banked, &run, &mut b);
            assert_eq!(tiles_of(&plain, &a).len(), (outer.0 * inner.0) as usize);
            assert_eq!(
                tiles_of(&banked, &b),
                tiles_of(&plain, &a),
                "{outer:?} {inner:?}"
            );
            for i in &b {
                i.encode()
                    .unwrap_or_else(|e| panic!("{outer:?} {inner:?}: {i:?}: {e}"));
            }
        }
    }

    #[test]
    fn multiplier_decomposition() {
        for real in [1.0, 0.5, 0.75, 1e-3, 3.3e-5, 1.9999, 123.0] {
            let (m, s) = quantize_multiplier(real).unwrap();
            assert!((1 << 30..1i64 << 31).contains(&(m as i64)), "{real}");
            let back = m as f64 / (1u64 << s) as f64;
            assert!((back - real).abs() / real < 1e-9, "{real} -> {m} >> {s}");
        }
        assert_eq!(quantize_multiplier(0.0), None);
        assert_eq!(quantize_multiplier(f64::NAN), None);
        assert_eq!(quantize_multiplier(1e-30), None);
    }

    #[test]
    fn tiling_respects_buffers() {
        let arch = ArchConfig::preset("tiny").unwrap();
        let t = Tiling::new(&arch, 1000, 300, 50).unwrap();
        assert!(t.kc * 4 <= arch.lines(BufferKind::Weight) as usize / 2);
        assert!(t.kc * t.tm <= arch.lines(BufferKind::Input) as usize / 2);
        assert_eq!(t.k_tiles, 75);
        assert_eq!(t.n_tiles, 13);
    }
}
