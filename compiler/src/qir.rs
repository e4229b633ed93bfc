//! The quantized IR: a network as the accelerator computes it, with explicit integer
//! semantics, and its reference interpreter.
//!
//! Activations on chip are int8. A uint8 tensor of the model is held biased by -128 (its bit
//! pattern XOR 0x80), so `hw = logical + offset` with `offset` = -128 for uint8 and 0 for int8;
//! zero points and clamp bounds are moved into the hw domain the same way.
//!
//! A dense layer computes, for each row x (int8) and output channel n:
//!
//! ```text
//! acc[n] = bias[n] + sum_k x[k] * w[k][n]                  (int32, wrapping)
//! y[n]   = clamp(round_half_even(f32(acc[n]) * scale[n]) + zp, lo, hi)   (binary32 steps)
//! ```
//!
//! or keeps `acc` as an int32 output. Zero points of inputs and weights are folded into
//! `bias` and `w` by the lowering, so this is all the hardware needs.

use crate::ir::Graph;
use crate::tensor::DType;

/// A model input or output at the host boundary.
#[derive(Debug, Clone, PartialEq)]
pub struct QIo {
    pub name: String,
    /// The model's shape for this tensor.
    pub shape: Vec<usize>,
    /// The model's element type: F32 for float tensors (quantized or dequantized on the host
    /// with `quant`), or the integer type.
    pub dtype: DType,
    /// (scale, zero point in the logical domain).
    pub quant: Option<(f32, i32)>,
    /// hw = logical + offset.
    pub offset: i32,
    /// Host-side computation between the model's tensor and the program's: for an input, a
    /// graph from the model input (float) to the logical integer the program takes (elementwise
    /// operators before the first quantizer); for an output, a graph from the program's
    /// integer output (logical domain) to the model's output (a float tail such as a final
    /// scale and offset).
    pub host: Option<Graph>,
}

impl QIo {
    /// A tensor the program reads or writes as it is: int8 with scale 1, zero point 0 and no
    /// host-side work (synthetic layers, benchmarks, tests).
    pub fn int8(name: &str, shape: Vec<usize>) -> QIo {
        QIo {
            name: name.into(),
            shape,
            dtype: DType::I8,
            quant: Some((1.0, 0)),
            offset: 0,
            host: None,
        }
    }
}

/// Requantization of one layer's outputs.
#[derive(Debug, Clone, PartialEq)]
pub enum QOut {
    Int8 {
        scales: Vec<f32>,
        zp: i32,
        lo: i8,
        hi: i8,
    },
    /// y = clamp(base + step * #{j : acc >= thresholds[j][n]}, -128, 127).
    Thresh {
        thresholds: Vec<Vec<i32>>,
        base: i8,
        /// Output increment per threshold reached.
        step: i8,
    },
    Int32,
}

/// A convolution's geometry: the layer's rows are output pixels (NHWC order), its k index is
/// (ky, kx, ci).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeom {
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: [usize; 2],
    /// Distance between kernel taps (1 = dense kernel).
    pub dilation: [usize; 2],
    /// top, left, bottom, right
    pub pads: [usize; 4],
    pub oh: usize,
    pub ow: usize,
    /// What padding holds: the input zero point, hw domain.
    pub pad_value: i8,
}

impl ConvGeom {
    /// A 1x1 kernel with stride 1 and no padding: output pixel i is input pixel i.
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.stride == [1, 1]
            && self.pads == [0; 4]
            && (self.oh, self.ow) == (self.h, self.w)
    }

    /// Kernel columns one input line of `line` bytes can carry when the image's pixels are
    /// `pitch` bytes apart in DRAM (a first layer with few channels: RGB has 3 bytes a pixel).
    /// A line read at pixel x then holds pixels x, x + d, ... (d the column dilation) at
    /// bytes 0, d * pitch, ..., so one weight tile covers that many taps instead of one tap
    /// using `cin` of its rows. 1 (no packing) when fewer than two taps fit, or when a tap
    /// could fall in the left or right padding: padding comes as whole lines, and a packed
    /// line would hold the neighbouring row's pixels where padding belongs.
    pub fn taps_per_line(&self, line: usize, pitch: usize) -> usize {
        let d = self.dilation[1];
        if self.kw < 2 || self.cin == 0 || pitch < self.cin || d == 0 || self.ow == 0 {
            return 1;
        }
        let inside =
            self.pads[1] == 0 && (self.ow - 1) * self.stride[1] + (self.kw - 1) * d < self.w;
        if !inside || line < self.cin {
            return 1;
        }
        ((line - self.cin) / (d * pitch) + 1).min(self.kw)
    }

    /// Where only left or right padding keeps `taps_per_line` at 1: the padding bytes a
    /// padding pass (`gemm::PadPass`) puts in front of each image row (whole lines of `lane`
    /// bytes, at most `max_lines`, and whole pixels) and the convolution on the padded image
    /// (`left / pitch` pixels wider, no left or right padding: a row's right padding is the
    /// next row's left), when that packs at least two taps a line.
    pub fn pad_for_packing(
        &self,
        line: usize,
        pitch: usize,
        lane: usize,
        max_lines: usize,
    ) -> Option<(usize, ConvGeom)> {
        if self.taps_per_line(line, pitch) > 1 || self.kw < 2 || self.ow == 0 || lane == 0 {
            return None;
        }
        let (pl, d) = (self.pads[1], self.dilation[1]);
        // Padded columns the taps reach, and how many of them lie right of the image.
        let reach = (self.ow - 1) * self.stride[1] + (self.kw - 1) * d + 1;
        let pr = reach.saturating_sub(self.w + pl);
        if pl + pr == 0 || pitch == 0 {
            return None;
        }
        let unit = lane / gcd(lane as u64, pitch as u64) as usize * pitch;
        let left = ((pl + pr) * pitch).div_ceil(unit) * unit;
        if left / lane > max_lines {
            return None;
        }
        let g = ConvGeom {
            w: self.w + left / pitch,
            pads: [self.pads[0], 0, self.pads[2], 0],
            ..*self
        };
        (g.taps_per_line(line, pitch) > 1).then_some((left, g))
    }

    /// The convolution as the array runs it with `taps` kernel columns per input line
    /// (`taps_per_line`): `line` channels (one whole input line per pixel, the image's bytes
    /// from that pixel on) and ceil(kw / taps) kernel columns, `taps` pixels apart.
    pub fn packed(&self, taps: usize, line: usize) -> ConvGeom {
        if taps <= 1 {
            return *self;
        }
        let kw = self.kw.div_ceil(taps);
        ConvGeom {
            cin: line,
            kw,
            dilation: [
                self.dilation[0],
                if kw > 1 { taps * self.dilation[1] } else { 1 },
            ],
            ..*self
        }
    }

    /// im2col of one image (`x` pixel-major [h*w][cin]): [oh*ow][kh*kw*cin].
    pub fn im2col(&self, x: &[i8]) -> Vec<i8> {
        let k = self.kh * self.kw * self.cin;
        let mut out = vec![self.pad_value; self.oh * self.ow * k];
        for oy in 0..self.oh {
            for ox in 0..self.ow {
                let row = &mut out[(oy * self.ow + ox) * k..][..k];
                for ky in 0..self.kh {
                    for kx in 0..self.kw {
                        let iy = (oy * self.stride[0] + ky * self.dilation[0]) as i64
                            - self.pads[0] as i64;
                        let ix = (ox * self.stride[1] + kx * self.dilation[1]) as i64
                            - self.pads[1] as i64;
                        if iy < 0 || ix < 0 || iy >= self.h as i64 || ix >= self.w as i64 {
                            continue;
                        }
                        let src = &x[(iy as usize * self.w + ix as usize) * self.cin..][..self.cin];
                        row[(ky * self.kw + kx) * self.cin..][..self.cin].copy_from_slice(src);
                    }
                }
            }
        }
        out
    }
}

/// Max pooling applied to a convolution's int8 output (NHWC, `n` channels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolGeom {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    /// top, left, bottom, right
    pub pads: [usize; 4],
    pub oh: usize,
    pub ow: usize,
}

impl PoolGeom {
    /// Max pooling of an NHWC image [h*w][n]; padding never wins.
    pub fn run(&self, x: &[i8], h: usize, w: usize, n: usize) -> Vec<i8> {
        let mut out = vec![i8::MIN; self.oh * self.ow * n];
        for oy in 0..self.oh {
            for ox in 0..self.ow {
                for ky in 0..self.kernel[0] {
                    for kx in 0..self.kernel[1] {
                        let iy = (oy * self.stride[0] + ky * self.dilation[0]) as i64
                            - self.pads[0] as i64;
                        let ix = (ox * self.stride[1] + kx * self.dilation[1]) as i64
                            - self.pads[1] as i64;
                        if iy < 0 || ix < 0 || iy >= h as i64 || ix >= w as i64 {
                            continue;
                        }
                        for c in 0..n {
                            let v = x[(iy as usize * w + ix as usize) * n + c];
                            let o = &mut out[(oy * self.ow + ox) * n + c];
                            *o = (*o).max(v);
                        }
                    }
                }
            }
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct QDense {
    pub name: String,
    pub k: usize,
    pub n: usize,
    /// Row-major [k][n].
    pub weights: Vec<i8>,
    /// When weights minus their zero point exceed int8: the rest, w = weights + weights2
    /// (the input streams through the array twice).
    pub weights2: Option<Vec<i8>>,
    pub bias: Vec<i32>,
    pub out: QOut,
    /// Set for a convolution (implicit GEMM over output pixels).
    pub conv: Option<ConvGeom>,
    /// Max pooling of the (convolution's) int8 output.
    pub pool: Option<PoolGeom>,
    /// A dense layer over a convolution's whole image (h, w, c): k runs over (y, x, c).
    pub flat_image: Option<[usize; 3]>,
    /// Per-row multipliers applied to the accumulators after the bias (wrapping int32): an
    /// average pool whose divisor differs between output pixels (row = output pixel).
    pub row_mul: Option<Vec<i32>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QModel {
    pub name: String,
    /// Rows streamed through every layer (batch x leading dims).
    pub m: usize,
    pub input: QIo,
    /// Every program input value is -1 or +1 (a bipolar quantizer's output): a first layer
    /// with bipolar weights can run on the XNOR-popcount datapath.
    pub input_bipolar: bool,
    pub layers: Vec<QDense>,
    pub output: QIo,
}

/// Reorders an NCHW image (c, h, w) to pixel-major NHWC, or back.
pub fn nchw_to_nhwc<T: Copy>(x: &[T], c: usize, h: usize, w: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(x.len());
    for p in 0..h * w {
        for ch in 0..c {
            out.push(x[ch * h * w + p]);
        }
    }
    out
}

pub fn nhwc_to_nchw<T: Copy>(x: &[T], c: usize, h: usize, w: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(x.len());
    for ch in 0..c {
        for p in 0..h * w {
            out.push(x[p * c + ch]);
        }
    }
    out
}

/// Integer data on chip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QData {
    I8(Vec<i8>),
    I32(Vec<i32>),
}

/// binary32 requantization: convert, multiply, round half to even, each as IEEE does.
pub fn requant_f32(acc: i32, scale: f32, zp: i32, lo: i8, hi: i8) -> i8 {
    let v = (acc as f32 * scale).round_ties_even() as i64 + zp as i64;
    v.clamp(lo as i64, hi as i64) as i8
}

impl QDense {
    /// Every weight is -1 or +1 and the layer is a plain dense one: it can run binary.
    pub fn bipolar_weights(&self) -> bool {
        self.conv.is_none()
            && self.flat_image.is_none()
            && self.row_mul.is_none()
            && self.weights2.is_none()
            && self.weights.iter().all(|&w| w == 1 || w == -1)
    }

    /// Every output is -1 or +1 (one threshold, base -1, step 2).
    pub fn bipolar_out(&self) -> bool {
        matches!(&self.out, QOut::Thresh { thresholds, base: -1, step: 2 } if thresholds.len() == 1)
            && self.pool.is_none()
    }

    /// The layer on `m` rows of `x` (row-major [m][k]; for a convolution, the image).
    pub fn run(&self, m: usize, x: &[i8]) -> QData {
        if let Some(cv) = &self.conv {
            let cols = cv.im2col(x);
            let dense = QDense {
                conv: None,
                pool: None,
                ..self.clone()
            };
            let y = dense.run(cv.oh * cv.ow, &cols);
            return match (y, &self.pool) {
                (QData::I8(v), Some(p)) => QData::I8(p.run(&v, cv.oh, cv.ow, self.n)),
                (y, _) => y,
            };
        }
        let (k, n) = (self.k, self.n);
        let mut acc = vec![0i32; m * n];
        for i in 0..m {
            let row = &mut acc[i * n..(i + 1) * n];
            row.copy_from_slice(&self.bias);
            let mul = self.row_mul.as_ref().map_or(1, |v| v[i]);
            for kk in 0..k {
                let a = x[i * k + kk] as i32;
                if a == 0 {
                    continue;
                }
                for (r, &w) in row.iter_mut().zip(&self.weights[kk * n..(kk + 1) * n]) {
                    *r = r.wrapping_add(a * w as i32);
                }
                if let Some(w2) = &self.weights2 {
                    for (r, &w) in row.iter_mut().zip(&w2[kk * n..(kk + 1) * n]) {
                        *r = r.wrapping_add(a * w as i32);
                    }
                }
            }
            if mul != 1 {
                row.iter_mut().for_each(|r| *r = r.wrapping_mul(mul));
            }
        }
        match &self.out {
            QOut::Int32 => QData::I32(acc),
            QOut::Thresh {
                thresholds,
                base,
                step,
            } => QData::I8(
                acc.iter()
                    .enumerate()
                    .map(|(i, &a)| {
                        let c = thresholds.iter().filter(|t| a >= t[i % n]).count() as i64;
                        (*base as i64 + *step as i64 * c).clamp(-128, 127) as i8
                    })
                    .collect(),
            ),
            QOut::Int8 { scales, zp, lo, hi } => QData::I8(
                acc.iter()
                    .enumerate()
                    .map(|(i, &a)| requant_f32(a, scales[i % n], *zp, *lo, *hi))
                    .collect(),
            ),
        }
    }
}

impl QModel {
    /// Runs every layer on the hw-domain input (in the model's logical order); the reference
    /// the emulator must equal. Convolutions work on NHWC images: an NCHW model input is
    /// reordered first, and an image output is reordered back.
    pub fn run(&self, x: &[i8]) -> QData {
        let x = match self.layers.first().and_then(|l| l.conv) {
            Some(cv) => nchw_to_nhwc(x, cv.cin, cv.h, cv.w),
            None => x.to_vec(),
        };
        let mut cur = QData::I8(x);
        for l in &self.layers {
            cur = match cur {
                QData::I8(v) => l.run(self.m, &v),
                QData::I32(_) => unreachable!("lowering ends the chain at an int32 layer"),
            };
        }
        let last = self.layers.last();
        match last.and_then(|l| l.conv) {
            Some(cv) => {
                let n = last.unwrap().n;
                let (oh, ow) = last.unwrap().pool.map_or((cv.oh, cv.ow), |p| (p.oh, p.ow));
                match cur {
                    QData::I8(v) => QData::I8(nhwc_to_nchw(&v, n, oh, ow)),
                    QData::I32(v) => QData::I32(nhwc_to_nchw(&v, n, oh, ow)),
                }
            }
            None => cur,
        }
    }
}

/// Greatest common divisor.
pub fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
