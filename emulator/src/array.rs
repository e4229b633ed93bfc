//! The weight-stationary systolic array (rows x cols PEs).
//!
//! `ldw` shifts one weight line per cycle into the PE registers (`rows` cycles). `matmul`
//! streams input lines in from the left with a skew of one cycle per row; partial sums flow
//! down. Input line i, element k reaches PE(k, n) in cycle i + k + n of the instruction, so
//! column n of result row i leaves the bottom row in cycle i + rows - 1 + n. The de-skew
//! registers complete row i in cycle i + rows + cols - 2, where the accumulator line is read
//! (when accumulating), and write it in the next cycle: a `matmul` of m lines lasts
//! m + rows + cols - 1 cycles.

use crate::buffer::Buffers;
use systole_arch::isa::{LoadWeights, MatMul};
use systole_arch::BufferKind;

/// One binary PE's product: how many of the low `bits` bit positions of `a` and `w` agree
/// (the arch's `xnor_bits`; the other bits of the bytes are not wired to the popcount).
pub fn xnor_popcount(a: u8, w: u8, bits: u32) -> i32 {
    (!(a ^ w) & (0xffu16 >> (8 - bits)) as u8).count_ones() as i32
}

pub struct Array {
    pub rows: usize,
    pub cols: usize,
    /// PE weight registers, row-major [rows][cols].
    pub weights: Vec<i32>,
    /// MAC slots used (m x rows x cols per matmul), int8 and binary.
    pub macs: u64,
    /// The binary ones among them (each `xnor_bits` XNOR-popcount bit products).
    pub xnor_macs: u64,
    /// Binary mode's word width per PE (`array.xnor_bits`).
    pub xnor_bits: u32,
}

impl Array {
    pub fn new(rows: usize, cols: usize) -> Array {
        Array::with_xnor_bits(rows, cols, 8)
    }

    /// An array whose binary mode counts the low `xnor_bits` bits of each byte (the twin of
    /// `systole_hdl::Array::with_xnor_bits`).
    pub fn with_xnor_bits(rows: usize, cols: usize, xnor_bits: u32) -> Array {
        Array {
            rows,
            cols,
            weights: vec![0; rows * cols],
            macs: 0,
            xnor_macs: 0,
            xnor_bits,
        }
    }

    pub fn ldw_cycles(&self) -> u64 {
        self.rows as u64
    }

    pub fn matmul_cycles(&self, m: u32) -> u64 {
        if m == 0 {
            1
        } else {
            m as u64 + (self.rows + self.cols) as u64 - 1
        }
    }

    /// Functional effect of `ldw` (operands already bounds-checked).
    pub fn load_weights(&mut self, op: &LoadWeights, bufs: &Buffers) {
        let base = op.wgt as usize * self.cols;
        for (w, &v) in self
            .weights
            .iter_mut()
            .zip(&bufs.wgt[base..base + self.rows * self.cols])
        {
            *w = v as i32;
        }
    }

    /// Functional effect of `matmul`: int8 x int8 products (or, `binary`, XNOR-popcounts of
    /// 8 packed bipolar values) summed in wrapping int32.
    pub fn matmul(&mut self, op: &MatMul, bufs: &mut Buffers) {
        let (r, c) = (self.rows, self.cols);
        let mut row = vec![0i32; c];
        for i in 0..op.m as usize {
            let inp = &bufs.inp[(op.inp as usize + i) * r..][..r];
            row.iter_mut().for_each(|x| *x = 0);
            if op.binary {
                for (k, &a) in inp.iter().enumerate() {
                    let w = &self.weights[k * c..][..c];
                    for (acc, &wv) in row.iter_mut().zip(w) {
                        *acc += xnor_popcount(a as u8, wv as u8, self.xnor_bits);
                    }
                }
            }
            for (k, &a) in inp.iter().enumerate().filter(|_| !op.binary) {
                if a == 0 {
                    continue;
                }
                let a = a as i32;
                let w = &self.weights[k * c..][..c];
                for (acc, &wv) in row.iter_mut().zip(w) {
                    *acc = acc.wrapping_add(a * wv);
                }
            }
            let dst = &mut bufs.acc[(op.acc as usize + i) * c..][..c];
            if op.accumulate {
                for (d, v) in dst.iter_mut().zip(&row) {
                    *d = d.wrapping_add(*v);
                }
            } else {
                dst.copy_from_slice(&row);
            }
        }
        self.macs += op.m as u64 * (r * c) as u64;
        if op.binary {
            self.xnor_macs += op.m as u64 * (r * c) as u64;
        }
    }

    /// Buffer ports a `ldw` uses in cycle `o` of its execution.
    pub fn ldw_access(&self, op: &LoadWeights, o: u64, mut f: impl FnMut(BufferKind, u32, bool)) {
        if o < self.rows as u64 {
            f(BufferKind::Weight, op.wgt + o as u32, false);
        }
    }

    /// Buffer ports a `matmul` uses in cycle `o` of its execution.
    pub fn matmul_access(&self, op: &MatMul, o: u64, mut f: impl FnMut(BufferKind, u32, bool)) {
        let m = op.m as u64;
        if o < m {
            f(BufferKind::Input, op.inp + o as u32, false);
        }
        let drain = (self.rows + self.cols) as u64 - 2;
        if op.accumulate && o >= drain && o - drain < m {
            f(BufferKind::Accumulator, op.acc + (o - drain) as u32, false);
        }
        if o > drain && o - drain - 1 < m {
            f(
                BufferKind::Accumulator,
                op.acc + (o - drain - 1) as u32,
                true,
            );
        }
    }
}
