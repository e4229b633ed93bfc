//! A plain sequential reference for the ISA: executes instructions in program order, one at a
//! time, with no timing, written straight from docs/isa.md and independent of the emulator's
//! block models. For programs whose dependencies follow program order (what the compiler and
//! the random generator emit) its final memories must equal the emulator's bit for bit.

#![allow(dead_code)]

use systole_arch::isa::{AluFunc, LoadBuf, LoadWeights, MatMul, Op, Round, StoreBuf};
use systole_arch::{ArchConfig, BufferKind, Program};

pub struct Golden {
    pub r: usize,
    pub c: usize,
    pub dram: Vec<u8>,
    pub inp: Vec<Vec<i8>>,
    pub wgt: Vec<Vec<i8>>,
    pub acc: Vec<Vec<i32>>,
    pub out: Vec<Vec<u8>>,
    pub w: Vec<Vec<i8>>,
    /// Binary word width (`array.xnor_bits`).
    pub xnor_bits: usize,
}

fn rshift(x: i128, s: u32, round: Round) -> i128 {
    if s == 0 {
        return x;
    }
    let d = 1i128 << s;
    let q = x.div_euclid(d);
    let r = x.rem_euclid(d);
    let twice = 2 * r;
    match round {
        Round::Floor => q,
        Round::HalfUp => q + (twice >= d) as i128,
        Round::HalfAway => q + (twice > d || (twice == d && x > 0)) as i128,
        Round::HalfEven => q + (twice > d || (twice == d && q % 2 != 0)) as i128,
    }
}

impl Golden {
    pub fn new(prog: &Program, arch: &ArchConfig) -> Golden {
        let r = arch.array.rows as usize;
        let c = arch.array.cols as usize;
        let mut dram = vec![0u8; prog.dram_bytes as usize];
        for s in &prog.data {
            dram[s.dram_addr as usize..][..s.bytes.len()].copy_from_slice(&s.bytes);
        }
        Golden {
            r,
            c,
            dram,
            inp: vec![vec![0; r]; arch.lines(BufferKind::Input) as usize],
            wgt: vec![vec![0; c]; arch.lines(BufferKind::Weight) as usize],
            acc: vec![vec![0; c]; arch.lines(BufferKind::Accumulator) as usize],
            out: vec![vec![0; c]; arch.lines(BufferKind::Output) as usize],
            w: vec![vec![0; c]; r],
            xnor_bits: arch.array.xnor_bits as usize,
        }
    }

    pub fn run(&mut self, prog: &Program) {
        for insn in &prog.code {
            self.exec(&insn.op);
        }
    }

    fn exec(&mut self, op: &Op) {
        let (r, c) = (self.r, self.c);
        match *op {
            Op::Load(l) => {
                let width = (l.pad_left + l.cols + l.pad_right) as usize;
                let height = (l.pad_top + l.rows + l.pad_bottom) as usize;
                for y in 0..height {
                    for x in 0..width {
                        let line = l.sram as usize + y * width + x;
                        let inside = y >= l.pad_top as usize
                            && y < (l.pad_top + l.rows) as usize
                            && x >= l.pad_left as usize
                            && x < (l.pad_left + l.cols) as usize;
                        let row = y.wrapping_sub(l.pad_top as usize);
                        let col = x.wrapping_sub(l.pad_left as usize);
                        let bytes_per_line = match l.buf {
                            LoadBuf::Inp => r,
                            LoadBuf::Wgt | LoadBuf::Acc8 => c,
                            LoadBuf::Acc => 4 * c,
                        };
                        let at = if inside {
                            l.dram as usize + row * l.stride as usize + col * bytes_per_line
                        } else {
                            0
                        };
                        match l.buf {
                            LoadBuf::Inp => {
                                for k in 0..r {
                                    self.inp[line][k] = if inside {
                                        self.dram[at + k] as i8
                                    } else {
                                        l.pad_value as i8
                                    };
                                }
                            }
                            LoadBuf::Wgt => {
                                for k in 0..c {
                                    self.wgt[line][k] = if inside {
                                        self.dram[at + k] as i8
                                    } else {
                                        l.pad_value as i8
                                    };
                                }
                            }
                            LoadBuf::Acc8 => {
                                for k in 0..c {
                                    self.acc[line][k] = if inside {
                                        self.dram[at + k] as i8 as i32
                                    } else {
                                        l.pad_value
                                    };
                                }
                            }
                            LoadBuf::Acc => {
                                for k in 0..c {
                                    self.acc[line][k] = if inside {
                                        let b = &self.dram[at + 4 * k..at + 4 * k + 4];
                                        i32::from_le_bytes([b[0], b[1], b[2], b[3]])
                                    } else {
                                        l.pad_value
                                    };
                                }
                            }
                        }
                    }
                }
            }
            Op::Store(s) => {
                for y in 0..s.rows as usize {
                    for x in 0..s.cols as usize {
                        let line = s.sram as usize + y * s.cols as usize + x;
                        match s.buf {
                            StoreBuf::Acc if s.requant => {
                                // Zero point and clamps: lanes 0..3 of line param.
                                let set = &self.acc[s.param as usize];
                                let at = s.dram as usize + y * s.stride as usize + x * c;
                                for k in 0..c {
                                    self.dram[at + k] = self.requant_byte(
                                        self.acc[line][k],
                                        s.param as usize + 1,
                                        k,
                                        (set[0], set[1] as u32, set[2] as u32),
                                        (s.unsigned, s.round, s.fp32),
                                    );
                                }
                            }
                            StoreBuf::Out if s.pack => {
                                // Bit j of byte i: output lane 8i + j is positive.
                                let wb = self.xnor_bits;
                                let at = s.dram as usize + y * s.stride as usize + x * (c / wb);
                                for i in 0..c / wb {
                                    let mut byte = 0u8;
                                    for j in 0..wb {
                                        if (self.out[line][wb * i + j] as i8) > 0 {
                                            byte |= 1 << j;
                                        }
                                    }
                                    self.dram[at + i] = byte;
                                }
                            }
                            StoreBuf::Out => {
                                let at = s.dram as usize + y * s.stride as usize + x * c;
                                self.dram[at..at + c].copy_from_slice(&self.out[line]);
                            }
                            StoreBuf::Acc => {
                                let at = s.dram as usize + y * s.stride as usize + x * 4 * c;
                                for k in 0..c {
                                    self.dram[at + 4 * k..at + 4 * k + 4]
                                        .copy_from_slice(&self.acc[line][k].to_le_bytes());
                                }
                            }
                        }
                    }
                }
            }
            Op::LoadWeights(l) => {
                for k in 0..r {
                    self.w[k] = self.wgt[l.wgt as usize + k].clone();
                }
            }
            Op::MatMul(mm) if mm.bias && !mm.accumulate && mm.m > 0 => {
                // The bias row acc - 1 is every result's starting value.
                let bias = self.acc[mm.acc as usize - 1].clone();
                for i in 0..mm.m as usize {
                    self.acc[mm.acc as usize + i] = bias.clone();
                }
                self.exec(&Op::MatMul(MatMul {
                    accumulate: true,
                    bias: false,
                    ..mm
                }));
            }
            Op::MatMul(mm) if mm.outer > 0 => {
                // A chain: per tile (a, b), `ldw` of the next weight tile, then a plain
                // matmul from its input lines (docs/isa.md).
                if mm.m == 0 {
                    return;
                }
                let tiles = (0..mm.groups.max(1)).flat_map(|g| {
                    (0..mm.outer).flat_map(move |a| (0..mm.inner).map(move |b| (g, a, b)))
                });
                for (t, (g, a, b)) in (0u32..).zip(tiles) {
                    self.exec(&Op::LoadWeights(LoadWeights {
                        wgt: mm.wgt + t * r as u32,
                    }));
                    self.exec(&Op::MatMul(MatMul {
                        inp: mm.inp + g * mm.group_step + a * mm.outer_step + b,
                        accumulate: mm.accumulate || t > 0,
                        outer: 0,
                        inner: 0,
                        ..mm
                    }));
                }
            }
            Op::MatMul(mm) => {
                for i in 0..mm.m as usize {
                    for n in 0..c {
                        let mut sum: i64 = 0;
                        for k in 0..r {
                            // Rows of `row` lines with `skip` lines between them.
                            let line = match mm.row as usize {
                                0 => i,
                                rl => i / rl * (rl + mm.skip as usize) + i % rl,
                            };
                            let (a, w) = (self.inp[mm.inp as usize + line][k], self.w[k][n]);
                            if mm.binary {
                                // Bit b of both bytes holds one bipolar value; equal bits
                                // multiply to +1.
                                for b in 0..self.xnor_bits {
                                    sum += ((a >> b) & 1 == (w >> b) & 1) as i64;
                                }
                            } else {
                                sum += a as i64 * w as i64;
                            }
                        }
                        let sum = sum as i32; // |sum| <= 256 * 128 * 128 < 2^31
                        let a = &mut self.acc[mm.acc as usize + i][n];
                        *a = if mm.accumulate {
                            a.wrapping_add(sum)
                        } else {
                            sum
                        };
                    }
                }
            }
            Op::Alu(a) => {
                // Read every operand first: legal programs never read a line another row writes.
                let rows: Vec<Vec<i32>> = (0..a.m as usize)
                    .map(|i| {
                        let x = &self.acc[a.a as usize + i * a.a_stride as usize];
                        let y = &self.acc[a.b as usize + i * a.b_stride as usize];
                        (0..c)
                            .map(|k| match a.func {
                                AluFunc::Add => x[k].wrapping_add(y[k]),
                                AluFunc::Sub => x[k].wrapping_sub(y[k]),
                                AluFunc::Max => x[k].max(y[k]),
                                AluFunc::Min => x[k].min(y[k]),
                                AluFunc::Mul => x[k].wrapping_mul(y[k]),
                            })
                            .collect()
                    })
                    .collect();
                for (i, v) in rows.into_iter().enumerate() {
                    self.acc[a.dst as usize + i] = v;
                }
            }
            Op::Requant(q) => {
                for i in 0..q.m as usize {
                    for k in 0..c {
                        let acc = self.acc[q.src as usize + i][k];
                        self.out[q.dst as usize + i][k] = self.requant_byte(
                            acc,
                            q.param as usize,
                            k,
                            (q.zp, q.lo, q.hi),
                            (q.unsigned, q.round, q.fp32),
                        );
                    }
                }
            }
            Op::Thresh(t) => {
                for i in 0..t.m as usize {
                    for k in 0..c {
                        let a = self.acc[t.src as usize + i][k];
                        // The ISA's binary search, written out from docs/isa.md.
                        let mut reached = 0usize;
                        let mut half = 128usize;
                        while half > 0 {
                            let probe = reached + half;
                            if probe <= t.count as usize
                                && a >= self.acc[t.thr as usize + probe - 1][k]
                            {
                                reached = probe;
                            }
                            half /= 2;
                        }
                        let n = t.base as i64 + t.step as i64 * reached as i64;
                        self.out[t.dst as usize + i][k] = n.clamp(-128, 127) as i8 as u8;
                    }
                }
            }
            Op::Nop(_) | Op::Finish(_) => {}
        }
    }

    /// One lane of `requant` (and `store requant=1`): accumulator `acc`, lane `k` of the
    /// parameter lines from `param`.
    fn requant_byte(
        &self,
        acc: i32,
        param: usize,
        k: usize,
        (zp, lo, hi): (i32, u32, u32),
        (unsigned, round, fp32): (bool, Round, bool),
    ) -> u8 {
        let v = if fp32 {
            // binary32: convert, multiply (both round to nearest even), round.
            let x = acc as f32 * f32::from_bits(self.acc[param][k] as u32);
            let r = match round {
                Round::HalfEven => x.round_ties_even(),
                Round::HalfAway => x.round(),
                Round::HalfUp => {
                    if x - x.floor() >= 0.5 {
                        x.floor() + 1.0
                    } else {
                        x.floor()
                    }
                }
                Round::Floor => x.floor(),
            };
            (r as i64 as i128).saturating_add(zp as i128)
        } else {
            let mult = self.acc[param][k] as i128;
            let shift = self.acc[param + 1][k] as u32;
            rshift(acc as i128 * mult, shift, round) + zp as i128
        };
        if unsigned {
            v.clamp(0, 255).max(lo as i128).min(hi as i128) as u8
        } else {
            let lo = lo as u8 as i8 as i128;
            let hi = hi as u8 as i8 as i128;
            (v.clamp(-128, 127).max(lo).min(hi) as i8) as u8
        }
    }
}
