//! Cycle-stepped reference model of the processing element and the systolic array: the
//! twins of hdl/src/pe.rs and hdl/src/array.rs, port for port and register for register.
//!
//! `Array` (array.rs) applies a `matmul` functionally at its start, which is fast; this model
//! moves every value through the same registers as the RTL, so the RTL can be compared with
//! it on every cycle, and it with `Array` on results and write cycles (tests below).
//! Each model's `outputs()` are what its output ports show during a cycle (registers only);
//! `step(inputs)` is the clock edge at the end of that cycle.

/// Inputs of one PE during one cycle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeIn {
    pub a: i8,
    pub psum: i32,
    pub w: i8,
    pub w_load: bool,
    /// XNOR-popcount of the 8 packed bipolar values instead of the int8 product: the mode
    /// of the activation on `a`, which passes on with it.
    pub binary: bool,
}

/// Outputs of one PE during one cycle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeOut {
    pub a: i8,
    pub psum: i32,
    pub w: i8,
    /// The mode of the activation on `a` (registered beside it).
    pub binary: bool,
}

/// One PE: activation, partial-sum and weight registers.
#[derive(Debug, Clone, Copy)]
pub struct Pe {
    a: i8,
    psum: i32,
    w: i8,
    binary: bool,
    /// Binary mode's word width (`array.xnor_bits`): the popcount sees the low bits only.
    pub xnor_bits: u32,
}

impl Default for Pe {
    fn default() -> Self {
        Pe {
            a: 0,
            psum: 0,
            w: 0,
            binary: false,
            xnor_bits: 8,
        }
    }
}

impl Pe {
    pub fn outputs(&self) -> PeOut {
        PeOut {
            a: self.a,
            psum: self.psum,
            w: self.w,
            binary: self.binary,
        }
    }

    pub fn step(&mut self, i: &PeIn) {
        self.a = i.a;
        self.binary = i.binary;
        let product = if i.binary {
            crate::array::xnor_popcount(i.a as u8, self.w as u8, self.xnor_bits)
        } else {
            i.a as i32 * self.w as i32
        };
        self.psum = i.psum.wrapping_add(product);
        if i.w_load {
            self.w = i.w;
        }
    }
}

/// Inputs of the array during one cycle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArrayIn {
    /// One input line (`rows` elements), not yet skewed.
    pub a: Vec<i8>,
    pub valid: bool,
    /// One weight line (`cols` lanes), entering the bottom row.
    pub w: Vec<i8>,
    pub w_load: bool,
    /// The line on `a` is binary (XNOR-popcount): the mode travels with the line through
    /// the PEs (PE(0, 0) takes it from the port, column 0 passes it down, each row to the
    /// right), so no control signal fans out to every PE.
    pub binary: bool,
}

/// Outputs of the array during one cycle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArrayOut {
    /// One de-skewed result line (`cols` lanes).
    pub acc: Vec<i32>,
    pub valid: bool,
}

/// The array with its skew (row k delays by k), de-skew (column n by cols - 1 - n) and
/// valid (rows + cols - 1) registers.
#[derive(Debug, Clone)]
pub struct SystolicArray {
    pub rows: usize,
    pub cols: usize,
    /// Row-major [rows][cols].
    pe: Vec<Pe>,
    /// skew[k][j]: stage j of row k (stage 0 is fed by the input port).
    skew: Vec<Vec<i8>>,
    /// deskew[n][j]: stage j of column n (stage 0 is fed by the bottom PE).
    deskew: Vec<Vec<i32>>,
    valid: Vec<bool>,
}

impl SystolicArray {
    /// An array whose PEs XNOR-popcount `bits` bits of each byte in binary mode.
    pub fn with_xnor_bits(rows: usize, cols: usize, bits: u32) -> SystolicArray {
        let mut a = SystolicArray::new(rows, cols);
        a.pe.iter_mut().for_each(|p| p.xnor_bits = bits);
        a
    }

    pub fn new(rows: usize, cols: usize) -> SystolicArray {
        assert!(rows > 0 && cols > 0, "an array needs at least one PE");
        SystolicArray {
            rows,
            cols,
            pe: vec![Pe::default(); rows * cols],
            skew: (0..rows).map(|k| vec![0; k]).collect(),
            deskew: (0..cols).map(|n| vec![0; cols - 1 - n]).collect(),
            valid: vec![false; rows + cols - 1],
        }
    }

    /// Cycles from an input line on the port to its result line on the output.
    pub fn latency(&self) -> usize {
        self.rows + self.cols - 1
    }

    /// The weight registers, row-major (as `Array::weights`).
    pub fn weights(&self) -> Vec<i32> {
        self.pe.iter().map(|p| p.w as i32).collect()
    }

    pub fn outputs(&self) -> ArrayOut {
        let bottom = &self.pe[(self.rows - 1) * self.cols..];
        let acc = (0..self.cols)
            .map(|n| match self.deskew[n].last() {
                Some(&v) => v,
                None => bottom[n].psum,
            })
            .collect();
        ArrayOut {
            acc,
            valid: *self.valid.last().unwrap(),
        }
    }

    pub fn step(&mut self, i: &ArrayIn) {
        assert_eq!(i.a.len(), self.rows, "input line width");
        assert_eq!(i.w.len(), self.cols, "weight line width");
        let (rows, cols) = (self.rows, self.cols);
        // Every PE's inputs from the registers before the edge, then all edges at once.
        let old: Vec<PeOut> = self.pe.iter().map(Pe::outputs).collect();
        for k in 0..rows {
            for n in 0..cols {
                let a = match n {
                    0 => self.skew[k].last().copied().unwrap_or(i.a[k]),
                    _ => old[k * cols + n - 1].a,
                };
                let psum = if k == 0 {
                    0
                } else {
                    old[(k - 1) * cols + n].psum
                };
                let w = if k == rows - 1 {
                    i.w[n]
                } else {
                    old[(k + 1) * cols + n].w
                };
                let binary = match (k, n) {
                    (0, 0) => i.binary,
                    (_, 0) => old[(k - 1) * cols].binary,
                    _ => old[k * cols + n - 1].binary,
                };
                self.pe[k * cols + n].step(&PeIn {
                    a,
                    psum,
                    w,
                    w_load: i.w_load,
                    binary,
                });
            }
            shift_in(&mut self.skew[k], i.a[k]);
        }
        for n in 0..cols {
            shift_in(&mut self.deskew[n], old[(rows - 1) * cols + n].psum);
        }
        shift_in(&mut self.valid, i.valid);
    }
}

/// A delay line's clock edge: every stage takes the one before, stage 0 takes `v`.
pub(crate) fn shift_in<T: Copy>(line: &mut [T], v: T) {
    if line.is_empty() {
        return;
    }
    line.copy_within(..line.len() - 1, 1);
    line[0] = v;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::array::Array;
    use crate::buffer::Buffers;
    use proptest::prelude::*;
    use systole_arch::isa::{LoadWeights, MatMul};
    use systole_arch::{ArchConfig, BufferKind};

    /// Drives `ldw` then `matmul` through the cycle-level array exactly as their timing
    /// describes (weight line wgt + o in cycle o; input line inp + o in cycle o) and checks
    /// the weights, the accumulator lines and the cycle of every accumulator write against
    /// the fast `Array` and its access schedule.
    fn check(rows: usize, cols: usize, seed: &[i8], m: u32, accumulate: bool, binary: bool) {
        check_bits(rows, cols, seed, m, accumulate, binary, 8)
    }

    fn check_bits(
        rows: usize,
        cols: usize,
        seed: &[i8],
        m: u32,
        accumulate: bool,
        binary: bool,
        bits: u32,
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
        let ldw = LoadWeights { wgt: 1 };
        let mm = MatMul {
            inp: 2,
            acc: 3,
            m,
            accumulate,
            binary,
            ..Default::default()
        };
        assert!(
            bufs.inp.len() >= (2 + m as usize) * rows && bufs.acc.len() >= (3 + m as usize) * cols
        );

        let mut fast = Array::with_xnor_bits(rows, cols, bits);
        let mut want = Buffers::new(&arch);
        want.inp.clone_from(&bufs.inp);
        want.wgt.clone_from(&bufs.wgt);
        want.acc.clone_from(&bufs.acc);
        fast.load_weights(&ldw, &want);
        fast.matmul(&mm, &mut want);

        let mut sys = SystolicArray::with_xnor_bits(rows, cols, bits);
        let zeros_a = vec![0i8; rows];
        for o in 0..fast.ldw_cycles() as usize {
            let line = (ldw.wgt as usize + o) * cols;
            sys.step(&ArrayIn {
                a: zeros_a.clone(),
                valid: false,
                w: bufs.wgt[line..line + cols].to_vec(),
                w_load: true,
                binary: false,
            });
        }
        assert_eq!(sys.weights(), fast.weights, "weights after ldw");

        let mut writes = Vec::new();
        let mut next_row = 0u32;
        for o in 0..fast.matmul_cycles(&mm) {
            let out = sys.outputs();
            if out.valid {
                let line = (mm.acc + next_row) as usize * cols;
                for (d, v) in bufs.acc[line..line + cols].iter_mut().zip(&out.acc) {
                    *d = if accumulate { d.wrapping_add(*v) } else { *v };
                }
                writes.push((o, mm.acc + next_row));
                next_row += 1;
            }
            let a = if o < m as u64 {
                let line = (mm.inp as usize + o as usize) * rows;
                bufs.inp[line..line + rows].to_vec()
            } else {
                zeros_a.clone()
            };
            // The mode goes in with the lines only: it travels with them to every PE.
            sys.step(&ArrayIn {
                a,
                valid: o < m as u64,
                w: vec![0; cols],
                w_load: false,
                binary: binary && o < m as u64,
            });
        }
        assert!(
            !sys.outputs().valid,
            "a result left after the instruction ended"
        );
        let mut sched = Vec::new();
        for o in 0..fast.matmul_cycles(&mm) {
            fast.matmul_access(&mm, o, |k, line, write| {
                if write && k == BufferKind::Accumulator {
                    sched.push((o, line));
                }
            });
        }
        assert_eq!(writes, sched, "accumulator write cycles");
        assert_eq!(bufs.acc, want.acc, "accumulator contents");
    }

    #[test]
    fn matmul_extremes() {
        for (r, c) in [(1, 1), (2, 3), (3, 5), (4, 4), (5, 2)] {
            check(
                r,
                c,
                &[-128, -128, 127, -128, 127, 127, 0, -1],
                7,
                true,
                false,
            );
            check(r, c, &[-128], 3, false, false);
            check(r, c, &[-128, 127, 0, -1, 0x55, -86], 7, true, true);
        }
    }

    #[test]
    fn matmul_of_no_lines_writes_nothing() {
        check(3, 2, &[5, -7], 0, true, false);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn cycle_level_matmul_equals_array(
            rows in 1usize..9,
            cols in 1usize..9,
            seed in proptest::collection::vec(any::<i8>(), 1..64),
            m in 0u32..12,
            accumulate in any::<bool>(),
            binary in any::<bool>(),
            bits in prop_oneof![Just(1u32), Just(2), Just(4), Just(8)],
        ) {
            check_bits(rows, cols, &seed, m, accumulate, binary, bits);
        }

        #[test]
        fn pe_multiplies_and_accumulates(a in any::<i8>(), w in any::<i8>(), psum in any::<i32>()) {
            let mut pe = Pe::default();
            pe.step(&PeIn { a: 0, psum: 0, w, w_load: true, binary: false });
            pe.step(&PeIn { a, psum, w: 0, w_load: false, binary: false });
            prop_assert_eq!(pe.outputs(), PeOut { a, psum: psum.wrapping_add(a as i32 * w as i32), w, binary: false });
        }

        #[test]
        fn pe_counts_agreeing_bits(a in any::<i8>(), w in any::<i8>(), psum in any::<i32>()) {
            let mut pe = Pe::default();
            pe.step(&PeIn { a: 0, psum: 0, w, w_load: true, binary: false });
            pe.step(&PeIn { a, psum, w: 0, w_load: false, binary: true });
            let agree = (0..8).filter(|b| (a >> b) & 1 == (w >> b) & 1).count() as i32;
            prop_assert_eq!(pe.outputs(), PeOut { a, psum: psum.wrapping_add(agree), w, binary: true });
        }
    }
}
