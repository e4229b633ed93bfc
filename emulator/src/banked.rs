//! Cycle-level model of the array with two weight registers per PE (`array.weight_banks =
//! 2`), which chained `matmul`s need: the reference its RTL must match register for
//! register, and the proof that the chain timing of docs/timing.md is buildable.
//!
//! Each PE holds weight banks 0 and 1. An input line carries the bank its tile uses (`bank`,
//! registered beside the activation and passed on with it, like `binary`), so lines of two
//! tiles can be in the array at once. Weights do not shift through the stationary registers:
//! they pass down each column through a separate register per PE (`d`), and a capture flag
//! follows them at half their speed (two registers per row), so row k captures the value
//! passing it at the moment line k of the tile does. Column n runs n cycles late (skew
//! registers on the port, as for inputs). With tile line k fed in cycle L + k and the flag in
//! cycle L, PE(k, n) captures in cycle L + 2k + n:
//!
//! * after the last line of the tile before the previous one (same bank) passed it, if that
//!   tile's stream ended by L: a tile's load may start as the previous tile starts streaming;
//! * before the tile's own first line reaches it, if that line enters at L + rows or later.
//!
//! So tiles follow each other every max(m, rows) cycles (`MatMul::chain_period`).

use crate::array::{xnor_popcount, Array};
use crate::buffer::Buffers;
use crate::systolic::shift_in;
use systole_arch::isa::MatMul;
use systole_arch::BufferKind;

/// Inputs of one PE during one cycle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BankedPeIn {
    pub a: i8,
    /// The weight bank the activation on `a` multiplies with.
    pub bank: bool,
    pub binary: bool,
    pub psum: i32,
    /// The weight passing down from the PE above (or the skewed port in row 0).
    pub d: i8,
    /// Capture `d` into bank `cap_bank` at the end of this cycle.
    pub cap: bool,
    pub cap_bank: bool,
}

/// Outputs of one PE during one cycle (registers only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BankedPeOut {
    pub a: i8,
    pub bank: bool,
    pub binary: bool,
    pub psum: i32,
    pub d: i8,
    /// The capture flag two cycles after it came in: the PE below's `cap`.
    pub cap: bool,
    pub cap_bank: bool,
}

/// One PE of the banked array.
#[derive(Debug, Clone, Copy)]
pub struct BankedPe {
    a: i8,
    bank: bool,
    binary: bool,
    psum: i32,
    w: [i8; 2],
    d: i8,
    /// Capture flag and its bank, two stages.
    cap: [(bool, bool); 2],
    pub xnor_bits: u32,
}

impl Default for BankedPe {
    fn default() -> Self {
        BankedPe {
            a: 0,
            bank: false,
            binary: false,
            psum: 0,
            w: [0; 2],
            d: 0,
            cap: [(false, false); 2],
            xnor_bits: 8,
        }
    }
}

impl BankedPe {
    pub fn outputs(&self) -> BankedPeOut {
        BankedPeOut {
            a: self.a,
            bank: self.bank,
            binary: self.binary,
            psum: self.psum,
            d: self.d,
            cap: self.cap[1].0,
            cap_bank: self.cap[1].1,
        }
    }

    pub fn step(&mut self, i: &BankedPeIn) {
        let w = self.w[i.bank as usize];
        let product = if i.binary {
            xnor_popcount(i.a as u8, w as u8, self.xnor_bits)
        } else {
            i.a as i32 * w as i32
        };
        self.psum = i.psum.wrapping_add(product);
        self.a = i.a;
        self.bank = i.bank;
        self.binary = i.binary;
        if i.cap {
            self.w[i.cap_bank as usize] = i.d;
        }
        self.d = i.d;
        self.cap = [(i.cap, i.cap_bank), self.cap[0]];
    }
}

/// Inputs of the banked array during one cycle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BankedIn {
    /// One input line (`rows` elements), not yet skewed.
    pub a: Vec<i8>,
    pub valid: bool,
    pub bank: bool,
    pub binary: bool,
    /// One weight line (`cols` lanes), entering the top row (column n skewed by n).
    pub w: Vec<i8>,
    /// The first line of a tile is on `w`: its capture flag starts.
    pub w_first: bool,
    /// The bank the tile on `w` loads into (read with `w_first`).
    pub w_bank: bool,
}

/// The banked array with input skew, weight skew, de-skew and valid registers.
#[derive(Debug, Clone)]
pub struct BankedArray {
    pub rows: usize,
    pub cols: usize,
    pe: Vec<BankedPe>,
    /// skew[k][j]: input row k's stage j, with its bank and mode bits.
    skew: Vec<Vec<i8>>,
    /// wskew[n][j]: weight column n's stage j.
    wskew: Vec<Vec<i8>>,
    /// The capture flag and its bank: one chain, stage n - 1 feeding column n (the flag is
    /// the same for every column, only later).
    fskew: Vec<(bool, bool)>,
    deskew: Vec<Vec<i32>>,
    valid: Vec<bool>,
}

impl BankedArray {
    pub fn new(rows: usize, cols: usize, xnor_bits: u32) -> BankedArray {
        assert!(rows > 0 && cols > 0, "an array needs at least one PE");
        let pe = BankedPe {
            xnor_bits,
            ..Default::default()
        };
        BankedArray {
            rows,
            cols,
            pe: vec![pe; rows * cols],
            skew: (0..rows).map(|k| vec![0; k]).collect(),
            wskew: (0..cols).map(|n| vec![0; n]).collect(),
            fskew: vec![(false, false); cols - 1],
            deskew: (0..cols).map(|n| vec![0; cols - 1 - n]).collect(),
            valid: vec![false; rows + cols - 1],
        }
    }

    /// The weight bank `bank` of every PE, row-major.
    pub fn weights(&self, bank: bool) -> Vec<i32> {
        self.pe.iter().map(|p| p.w[bank as usize] as i32).collect()
    }

    pub fn outputs(&self) -> (Vec<i32>, bool) {
        let bottom = &self.pe[(self.rows - 1) * self.cols..];
        let acc = (0..self.cols)
            .map(|n| match self.deskew[n].last() {
                Some(&v) => v,
                None => bottom[n].psum,
            })
            .collect();
        (acc, *self.valid.last().unwrap())
    }

    /// Whether a result leaves in the next cycle, given this cycle's input `valid` (the
    /// sequencer issues an accumulating read one cycle before the write).
    pub fn pre_valid(&self, in_valid: bool) -> bool {
        let n = self.valid.len();
        if n >= 2 {
            self.valid[n - 2]
        } else {
            in_valid
        }
    }

    pub fn step(&mut self, i: &BankedIn) {
        let (rows, cols) = (self.rows, self.cols);
        let old: Vec<BankedPeOut> = self.pe.iter().map(BankedPe::outputs).collect();
        for k in 0..rows {
            for n in 0..cols {
                let a = match n {
                    0 => self.skew[k].last().copied().unwrap_or(i.a[k]),
                    _ => old[k * cols + n - 1].a,
                };
                // Bank and mode enter PE(0, 0) with the line, go down column 0 and along rows.
                let (bank, binary) = match (k, n) {
                    (0, 0) => (i.bank, i.binary),
                    (_, 0) => (old[(k - 1) * cols].bank, old[(k - 1) * cols].binary),
                    _ => (old[k * cols + n - 1].bank, old[k * cols + n - 1].binary),
                };
                let (d, cap, cap_bank) = if k == 0 {
                    let d = self.wskew[n].last().copied().unwrap_or(i.w[n]);
                    let (cap, bank) = match n {
                        0 => (i.w_first, i.w_bank),
                        _ => self.fskew[n - 1],
                    };
                    (d, cap, bank)
                } else {
                    let up = &old[(k - 1) * cols + n];
                    (up.d, up.cap, up.cap_bank)
                };
                let psum = if k == 0 {
                    0
                } else {
                    old[(k - 1) * cols + n].psum
                };
                self.pe[k * cols + n].step(&BankedPeIn {
                    a,
                    bank,
                    binary,
                    psum,
                    d,
                    cap,
                    cap_bank,
                });
            }
            shift_in(&mut self.skew[k], i.a[k]);
        }
        for n in 0..cols {
            shift_in(&mut self.wskew[n], i.w[n]);
            shift_in(&mut self.deskew[n], old[(rows - 1) * cols + n].psum);
        }
        shift_in(&mut self.fskew, (i.w_first, i.w_bank));
        shift_in(&mut self.valid, i.valid);
    }
}

/// The banked array's port in cycle `o` of a `matmul` (plain or chain), from the buffer
/// reads of `Array::matmul_access` in that cycle: what the compute sequencer drives. `bank`
/// is the bank holding the loaded tile before the instruction; a chain's tile t loads into
/// and streams from `bank ^ (t + 1 is odd)`, so consecutive tiles alternate.
pub fn matmul_port(arr: &Array, op: &MatMul, o: u64, bufs: &Buffers, bank: bool) -> BankedIn {
    let (r, c) = (arr.rows, arr.cols);
    let mut port = BankedIn {
        a: vec![0; r],
        w: vec![0; c],
        binary: false,
        ..Default::default()
    };
    let tile_bank = |t: u64| bank ^ (op.is_chain() && t.is_multiple_of(2));
    let (rr, p) = (r as u64, op.chain_period(r as u32));
    let stream_tile = |o: u64| {
        if op.is_chain() {
            (o - rr) / p
        } else {
            0
        }
    };
    arr.matmul_access(op, o, |kind, line, write| match (kind, write) {
        (BufferKind::Input, false) => {
            let l = line as usize * r;
            port.a.copy_from_slice(&bufs.inp[l..l + r]);
            port.valid = true;
            port.binary = op.binary;
            port.bank = tile_bank(stream_tile(o));
        }
        (BufferKind::Weight, false) => {
            let l = line as usize * c;
            port.w.copy_from_slice(&bufs.wgt[l..l + c]);
            // Tile 0's load is cycles 0..rows, tile t's starts rows + (t - 1) p.
            let (t, first) = if o < rr {
                (0, o == 0)
            } else {
                ((o - rr) / p + 1, (o - rr).is_multiple_of(p))
            };
            port.w_first = first;
            port.w_bank = tile_bank(t);
        }
        _ => {}
    });
    port
}

/// The port of `ldw` in cycle `o`: line `wgt + o`, into the bank not holding the loaded tile.
pub fn ldw_port(arr: &Array, wgt: u32, o: u64, bufs: &Buffers, bank: bool) -> BankedIn {
    let (r, c) = (arr.rows, arr.cols);
    let l = (wgt as usize + o as usize) * c;
    BankedIn {
        a: vec![0; r],
        w: bufs.wgt[l..l + c].to_vec(),
        w_first: o == 0,
        w_bank: !bank,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use systole_arch::isa::LoadWeights;
    use systole_arch::ArchConfig;

    /// A plain `ldw` + `matmul`, then a chain, then a plain `matmul` on the chain's last tile,
    /// all driven through the banked array one cycle after another exactly as the access
    /// schedule says; every accumulator write must come out in its scheduled cycle with the
    /// fast `Array`'s value.
    #[allow(clippy::too_many_arguments)]
    fn check(
        rows: usize,
        cols: usize,
        seed: &[i8],
        m: u32,
        outer: u32,
        inner: u32,
        steps: (u32, u32),
        accumulate: bool,
        binary: bool,
    ) {
        let mut arch = ArchConfig::preset("tiny").unwrap();
        arch.array.rows = rows as u32;
        arch.array.cols = cols as u32;
        let mut bufs = Buffers::new(&arch);
        let mut byte = seed.iter().copied().cycle();
        for v in bufs.inp.iter_mut().chain(bufs.wgt.iter_mut()) {
            *v = byte.next().unwrap();
        }
        for v in bufs.acc.iter_mut() {
            *v = (byte.next().unwrap() as i32) << 20 | byte.next().unwrap() as u8 as i32;
        }
        let plain = MatMul {
            inp: 1,
            acc: 2,
            m,
            accumulate,
            binary,
            ..Default::default()
        };
        let chain = MatMul {
            inp: 3,
            acc: 4,
            m,
            accumulate,
            binary,
            outer,
            inner,
            wgt: 2,
            outer_step: steps.0,
            // Two groups when the inner step is odd, steps.1 lines apart.
            groups: 1 + steps.1 % 2,
            group_step: steps.1,
            // Rows of 3 lines with a gap of 1 when m is odd.
            row: if m % 2 == 1 { 3 } else { 0 },
            skip: 1,
            bias: false,
        };
        let after = MatMul {
            accumulate: true,
            ..plain
        };
        let mut fast = Array::with_xnor_bits(rows, cols, 8);
        let mut want = bufs.clone();
        let mut sys = BankedArray::new(rows, cols, 8);
        let mut bank = false;
        let ldw = LoadWeights { wgt: 1 };
        for o in 0..fast.ldw_cycles() {
            sys.step(&ldw_port(&fast, ldw.wgt, o, &bufs, bank));
        }
        fast.load_weights(&ldw, &want);
        bank = !bank;
        for op in [plain, chain, after] {
            let mut writes = Vec::new();
            let mut sched = Vec::new();
            for o in 0..fast.matmul_cycles(&op) {
                let (acc, valid) = sys.outputs();
                if valid {
                    writes.push((o, acc));
                }
                fast.matmul_access(&op, o, |k, line, write| {
                    if write && k == BufferKind::Accumulator {
                        sched.push((o, line));
                    }
                });
                sys.step(&matmul_port(&fast, &op, o, &bufs, bank));
            }
            assert!(
                !sys.outputs().1,
                "a result left after the instruction ended"
            );
            // Apply the writes as the sequencer does: add the old line when accumulating.
            assert_eq!(writes.len(), sched.len(), "write count of {op:?}");
            let tiles = op.tiles().max(1) as usize;
            for (j, ((o, v), (so, line))) in writes.iter().zip(&sched).enumerate() {
                assert_eq!(o, so, "write cycle of {op:?}");
                let first_tile = j < op.m as usize;
                let add = op.accumulate || !first_tile;
                let l = *line as usize * cols;
                for (d, x) in bufs.acc[l..l + cols].iter_mut().zip(v) {
                    *d = if add { d.wrapping_add(*x) } else { *x };
                }
            }
            assert_eq!(writes.len(), tiles * op.m as usize);
            fast.matmul(&op, &mut want);
            if op.is_chain() && op.m > 0 {
                bank ^= op.tiles() % 2 == 1;
            }
            // Every capture has landed by the end of a matmul that streams (the lower rows
            // of an `ldw` capture after it ends, before the next line can reach them).
            if op.m > 0 {
                assert_eq!(sys.weights(bank), fast.weights, "loaded tile after {op:?}");
            }
            assert_eq!(bufs.acc, want.acc, "accumulators after {op:?}");
        }
    }

    #[test]
    fn chains_at_the_edges() {
        // m below, at and above rows; one tile; 1 x 1 arrays (period 2).
        for (r, c, m) in [
            (1, 1, 1),
            (1, 1, 3),
            (2, 3, 1),
            (3, 2, 3),
            (4, 4, 9),
            (5, 2, 2),
        ] {
            check(
                r,
                c,
                &[-128, 127, 3, -1, 0x55],
                m,
                1,
                1,
                (0, 0),
                true,
                false,
            );
            check(
                r,
                c,
                &[-128, 127, 3, -1, 0x55],
                m,
                2,
                3,
                (4, 1),
                false,
                false,
            );
            check(r, c, &[-128, 127, 3, -1, 0x55], m, 3, 1, (m, 0), true, true);
        }
        check(3, 3, &[7, -9], 0, 2, 2, (1, 1), true, false);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn banked_chains_equal_array(
            rows in 1usize..7,
            cols in 1usize..7,
            seed in proptest::collection::vec(any::<i8>(), 1..48),
            m in 0u32..10,
            outer in 1u32..4,
            inner in 1u32..4,
            steps in (0u32..6, 0u32..6),
            accumulate in any::<bool>(),
            binary in any::<bool>(),
        ) {
            check(rows, cols, &seed, m, outer, inner, steps, accumulate, binary);
        }
    }
}
