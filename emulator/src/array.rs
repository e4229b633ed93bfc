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
use multiversion::multiversion;
use systole_arch::isa::{LoadWeights, MatMul};
use systole_arch::BufferKind;

/// One binary PE's product: how many of the low `bits` bit positions of `a` and `w` agree
/// (the arch's `xnor_bits`; the other bits of the bytes are not wired to the popcount).
pub fn xnor_popcount(a: u8, w: u8, bits: u32) -> i32 {
    (!(a ^ w) & (0xffu16 >> (8 - bits)) as u8).count_ones() as i32
}

/// Dot product of two i16 vectors in i32 (no overflow for int8-range operands, see `matmul`).
#[inline(always)]
fn dot16(a: &[i16], w: &[i16]) -> i32 {
    let mut acc = [0i32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cw = w.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cw) {
        for l in 0..8 {
            acc[l] += x[l] as i32 * y[l] as i32;
        }
    }
    let tail: i32 = ca
        .remainder()
        .iter()
        .zip(cw.remainder())
        .map(|(&x, &y)| x as i32 * y as i32)
        .sum();
    acc.iter().sum::<i32>() + tail
}

/// Result rows of int8 `matmul`s: `inp` holds the input lines (`r` bytes each), `acc` the
/// accumulator lines they write, `wt` the weights column by column. Compiled for AVX2 too,
/// picked at run time.
#[multiversion(targets("x86_64+avx2"))]
fn int8_rows(inp: &[i8], wt: &[i16], w: &[i32], acc: &mut [i32], r: usize, accumulate: bool) {
    let c = wt.len() / r;
    // One loop per shape, so each gets its own fully unrolled kernel.
    macro_rules! bcast {
        ($r:literal, $c:literal) => {
            for (a, dst) in inp.chunks_exact($r).zip(acc.chunks_exact_mut($c)) {
                bcast_row::<$r, $c>(a, w, dst, accumulate)
            }
        };
    }
    // Wider arrays: dot products over i16 (one multiply-add instruction per pair of products).
    macro_rules! dots {
        ($r:literal) => {{
            let mut a16 = [0i16; $r];
            for (a, dst) in inp.chunks_exact($r).zip(acc.chunks_exact_mut(c)) {
                a16.iter_mut().zip(a).for_each(|(x, &v)| *x = v as i16);
                dot_rows(&a16, wt, dst, accumulate);
            }
        }};
    }
    match (r, c) {
        (4, 4) => bcast!(4, 4),
        (8, 8) => bcast!(8, 8),
        (16, 16) => bcast!(16, 16),
        (32, 32) => dots!(32),
        _ => {
            let mut a16 = vec![0i16; r];
            for (a, dst) in inp.chunks_exact(r).zip(acc.chunks_exact_mut(c)) {
                a16.iter_mut().zip(a).for_each(|(x, &v)| *x = v as i16);
                for (d, w) in dst.iter_mut().zip(wt.chunks_exact(r)) {
                    let v = dot16(&a16, w);
                    *d = if accumulate { d.wrapping_add(v) } else { v };
                }
            }
        }
    }
}

/// Result rows of binary `matmul`s (see `int8_rows`): agreeing bits under `mask`, eight
/// bytes of a row against eight of a weight column per popcount.
#[multiversion(targets("x86_64+avx2+popcnt"))]
fn binary_rows(inp: &[i8], wt: &[u8], acc: &mut [i32], r: usize, mask: u64, accumulate: bool) {
    let c = wt.len() / r;
    if r.is_multiple_of(8) {
        let words = r / 8;
        let word = |b: &[u8]| u64::from_ne_bytes(b.try_into().expect("8 bytes"));
        let wcols: Vec<u64> = wt.chunks_exact(8).map(word).collect();
        let mut a = vec![0u64; words];
        for (row, dst) in inp.chunks_exact(r).zip(acc.chunks_exact_mut(c)) {
            for (x, b) in a.iter_mut().zip(row.chunks_exact(8)) {
                *x = u64::from_ne_bytes(std::array::from_fn(|i| b[i] as u8));
            }
            for (d, col) in dst.iter_mut().zip(wcols.chunks_exact(words)) {
                let v = a
                    .iter()
                    .zip(col)
                    .map(|(&x, &y)| (!(x ^ y) & mask).count_ones())
                    .sum::<u32>() as i32;
                *d = if accumulate { d.wrapping_add(v) } else { v };
            }
        }
        return;
    }
    let mut a8 = vec![0u8; r];
    for (a, dst) in inp.chunks_exact(r).zip(acc.chunks_exact_mut(c)) {
        a8.iter_mut().zip(a).for_each(|(x, &v)| *x = v as u8);
        for (d, w) in dst.iter_mut().zip(wt.chunks_exact(r)) {
            let v = xnor_dot(&a8, w, mask);
            *d = if accumulate { d.wrapping_add(v) } else { v };
        }
    }
}

/// One result row of an `R` x `C` array: each input element times its weight row (row-major
/// i32 weights), added to all C elements at once.
#[inline(always)]
fn bcast_row<const R: usize, const C: usize>(
    a: &[i8],
    w: &[i32],
    dst: &mut [i32],
    accumulate: bool,
) {
    let a: &[i8; R] = a.try_into().expect("R input lanes");
    assert!(w.len() >= R * C, "R x C weights");
    let mut out = [0i32; C];
    for (k, &x) in a.iter().enumerate() {
        let row: &[i32; C] = w[k * C..k * C + C].try_into().expect("C weights");
        let x = x as i32;
        out.iter_mut().zip(row).for_each(|(o, &wv)| *o += x * wv);
    }
    let dst: &mut [i32; C] = dst.try_into().expect("C results");
    for n in 0..C {
        dst[n] = if accumulate {
            dst[n].wrapping_add(out[n])
        } else {
            out[n]
        };
    }
}

/// One result row of an array of `R` rows from the weights column by column: element n =
/// dot(a, column n).
#[inline(always)]
fn dot_rows<const R: usize>(a: &[i16; R], wt: &[i16], dst: &mut [i32], accumulate: bool) {
    for (d, w) in dst.iter_mut().zip(wt.chunks_exact(R)) {
        let w: &[i16; R] = w.try_into().expect("R weights");
        let v: i32 = a.iter().zip(w).map(|(&x, &y)| x as i32 * y as i32).sum();
        *d = if accumulate { d.wrapping_add(v) } else { v };
    }
}

/// Agreeing bits (under `mask`, the low `xnor_bits` of every byte) of two byte vectors.
#[inline(always)]
fn xnor_dot(a: &[u8], w: &[u8], mask: u64) -> i32 {
    let mut n = 0u32;
    let mut ca = a.chunks_exact(8);
    let mut cw = w.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cw) {
        let x = u64::from_ne_bytes(x.try_into().unwrap());
        let y = u64::from_ne_bytes(y.try_into().unwrap());
        n += (!(x ^ y) & mask).count_ones();
    }
    for (&x, &y) in ca.remainder().iter().zip(cw.remainder()) {
        n += (!(x ^ y) & mask as u8).count_ones();
    }
    n as i32
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
    /// The weights column by column ([cols][rows]) as i16 and as bytes, so a result element
    /// is one contiguous dot product (pmaddwd-friendly) or XNOR-popcount over whole words.
    wt16: Vec<i16>,
    wt8: Vec<u8>,
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
            wt16: vec![0; rows * cols],
            wt8: vec![0; rows * cols],
        }
    }

    pub fn ldw_cycles(&self) -> u64 {
        self.rows as u64
    }

    /// Cycles of a `matmul`: `m + rows + cols - 1`; a chain of T tiles loads tile 0's
    /// weights first (`rows` cycles), starts a tile every `MatMul::chain_period` cycles, and
    /// drains the last: `rows + (T - 1) period + m + rows + cols - 1`. 1 cycle when `m` = 0.
    pub fn matmul_cycles(&self, op: &MatMul) -> u64 {
        let (r, m) = (self.rows as u64, op.m as u64);
        if m == 0 {
            return 1;
        }
        let stream = m + r + self.cols as u64 - 1;
        match op.tiles() {
            0 => stream,
            t => r + (t as u64 - 1) * op.chain_period(self.rows as u32) + stream,
        }
    }

    /// Offsets of chain `op` at which the next chain may start overlapped
    /// (`array.chain_overlap`, docs/timing.md "Overlapped chains"): from `tiles x period`, where
    /// it would start loading one more tile, up to the one before its last. None for anything
    /// but a streaming chain.
    pub fn overlap_window(&self, op: &MatMul) -> Option<std::ops::Range<u64>> {
        op.streams_chain().then(|| {
            op.tiles() as u64 * op.chain_period(self.rows as u32)..self.matmul_cycles(op) - 1
        })
    }

    /// Functional effect of `ldw` (operands already bounds-checked).
    pub fn load_weights(&mut self, op: &LoadWeights, bufs: &Buffers) {
        self.load_tile(op.wgt as usize, bufs);
    }

    fn load_tile(&mut self, line: usize, bufs: &Buffers) {
        let base = line * self.cols;
        for (w, &v) in self
            .weights
            .iter_mut()
            .zip(&bufs.wgt[base..base + self.rows * self.cols])
        {
            *w = v as i32;
        }
        let (r, c) = (self.rows, self.cols);
        for k in 0..r {
            for n in 0..c {
                let v = self.weights[k * c + n];
                self.wt16[n * r + k] = v as i16;
                self.wt8[n * r + k] = v as u8;
            }
        }
    }

    /// Functional effect of `matmul`: int8 x int8 products (or, `binary`, XNOR-popcounts of
    /// packed bipolar values) summed in wrapping int32. Element n of a result row is the dot
    /// product of the input line with weight column n: the sum of at most 2^17 products of
    /// magnitude <= 2^14 is exact in i32, so summing in any order equals the PE chain's
    /// wrapping sums. A chain is its tiles' `ldw` and `matmul` one after the other.
    pub fn matmul(&mut self, op: &MatMul, bufs: &mut Buffers) {
        let mut op = *op;
        if op.adds_bias() && op.m > 0 {
            // Every result line starts from the bias row acc - 1 (read before any write).
            let c = self.cols;
            let (head, lines) = bufs.acc.split_at_mut(op.acc as usize * c);
            let bias = &head[head.len() - c..];
            for line in lines[..op.m as usize * c].chunks_exact_mut(c) {
                line.copy_from_slice(bias);
            }
            op.accumulate = true;
        }
        let op = &op;
        if op.tiles() == 0 {
            self.stream(op.inp as usize, op, op.accumulate, bufs);
            return;
        }
        if op.m == 0 {
            return;
        }
        for t in 0..op.tiles() {
            self.load_tile(op.tile_wgt(t, self.rows as u32) as usize, bufs);
            self.stream(op.tile_inp(t) as usize, op, op.accumulate || t > 0, bufs);
        }
    }

    /// `m` input lines from `inp` (in rows of `op.row` with `op.skip` between, if set)
    /// through the loaded weights into `op.acc`.
    fn stream(&mut self, inp: usize, op: &MatMul, accumulate: bool, bufs: &mut Buffers) {
        let (r, c, m) = (self.rows, self.cols, op.m as usize);
        let seg = if op.row == 0 {
            m.max(1)
        } else {
            op.row as usize
        };
        let mask = u64::from_ne_bytes([(0xffu16 >> (8 - self.xnor_bits)) as u8; 8]);
        for i0 in (0..m).step_by(seg) {
            let n = seg.min(m - i0);
            let first = inp + op.stream_line(i0 as u64) as usize;
            let src = &bufs.inp[first * r..][..n * r];
            let acc = &mut bufs.acc[(op.acc as usize + i0) * c..][..n * c];
            if op.binary {
                binary_rows(src, &self.wt8, acc, r, mask, accumulate);
            } else {
                int8_rows(src, &self.wt16, &self.weights, acc, r, accumulate);
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

    /// Buffer ports a `matmul` uses in cycle `o` of its execution. A chain reads tile 0's
    /// weight lines in cycles 0..rows (as `ldw`), tile t + 1's in the first `rows` cycles of
    /// tile t's stream, and streams tile t from cycle rows + t x period.
    pub fn matmul_access(&self, op: &MatMul, o: u64, mut f: impl FnMut(BufferKind, u32, bool)) {
        let (m, r) = (op.m as u64, self.rows as u64);
        if m == 0 {
            return;
        }
        let drain = (self.rows + self.cols) as u64 - 2;
        if !op.is_chain() {
            // A plain matmul streams line o at offset o from the loaded weights (this runs
            // every cycle a matmul shares the buffers with another unit: no divisions).
            if o < m {
                f(
                    BufferKind::Input,
                    (op.inp as u64 + op.stream_line(o)) as u32,
                    false,
                );
            }
            if let Some(i) = o.checked_sub(drain).filter(|&i| i < m) {
                if op.accumulate {
                    f(BufferKind::Accumulator, op.acc + i as u32, false);
                } else if op.adds_bias() {
                    f(BufferKind::Accumulator, op.acc - 1, false);
                }
            }
            if let Some(i) = o.checked_sub(drain + 1).filter(|&i| i < m) {
                f(BufferKind::Accumulator, op.acc + i as u32, true);
            }
            return;
        }
        // A chain streams tile t from r + t p on.
        let tiles = op.tiles() as u64;
        let p = op.chain_period(self.rows as u32);
        // Its weights: tile 0 in 0..r, tile t >= 1 from r + (t - 1) p.
        let wt = if o < r {
            Some((0, o))
        } else {
            let t = (o - r) / p + 1;
            let c = (o - r) % p;
            (t < tiles && c < r).then_some((t, c))
        };
        if let Some((t, c)) = wt {
            f(
                BufferKind::Weight,
                (op.tile_wgt(t as u32, self.rows as u32) + c) as u32,
                false,
            );
        }
        // The stream, and the accumulator read (drain) and write (drain + 1) of line i.
        let at = |d: u64| -> Option<(u64, u64)> {
            let x = o.checked_sub(r + d)?;
            let (t, i) = (x / p, x % p);
            (t < tiles && i < m).then_some((t, i))
        };
        if let Some((t, i)) = at(0) {
            let line = op.tile_inp(t as u32) + op.stream_line(i);
            f(BufferKind::Input, line as u32, false);
        }
        if let Some((t, i)) = at(drain) {
            if t > 0 || op.accumulate {
                f(BufferKind::Accumulator, op.acc + i as u32, false);
            } else if op.adds_bias() {
                f(BufferKind::Accumulator, op.acc - 1, false);
            }
        }
        if let Some((_, i)) = at(drain + 1) {
            f(BufferKind::Accumulator, op.acc + i as u32, true);
        }
    }
}
