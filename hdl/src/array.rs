//! The weight-stationary systolic array: `rows` x `cols` PEs with input skew and output
//! de-skew registers. Twin of `systole_emulator::systolic::SystolicArray`.
//!
//! Timing (docs/timing.md, emulator/src/array.rs), counted from the cycle an input line is
//! presented on `a_in` with `in_valid`: element k of line i reaches PE(k, n) in cycle
//! i + k + n (row k has k skew registers); column n leaves the bottom row's register in
//! cycle i + rows + n and waits in cols - 1 - n de-skew registers, so the whole result line
//! is on `acc_out` with `out_valid` in cycle i + rows + cols - 1, the cycle `matmul` writes
//! it. `w_load` for `rows` cycles shifts weight lines in at the bottom row and up one row
//! per cycle, so the line presented first ends in row 0 (`ldw` reads line wgt + o at o).
//! `binary` is the mode of the line on `a_in` and travels with it: into PE(0, 0), down
//! column 0 and along each row, one PE per cycle like the line's elements.
//!
//! rust-hdl's `#[hdl_gen]` cannot index 2-D or by expressions (notes, pitfall 3), so the
//! wiring is written twice, in `update` for simulation and as text in `hdl`; the Verilog
//! test in hdl/tests simulates the generated text against the same reference model.

use crate::pe::Pe;
use crate::sim::Top;
use rust_hdl::prelude::*;
use std::fmt::Write;

#[derive(LogicBlock)]
pub struct Array {
    pub clock: Signal<In, Clock>,
    /// One input line, element k for PE row k (un-skewed).
    pub a_in: Vec<Signal<In, Signed<8>>>,
    pub in_valid: Signal<In, Bit>,
    /// One weight line, lane n for PE column n; loaded into the bottom row.
    pub w_in: Vec<Signal<In, Signed<8>>>,
    pub w_load: Signal<In, Bit>,
    /// The line on `a_in` is binary (XNOR-popcount); the mode travels with the line.
    pub binary: Signal<In, Bit>,
    /// One result line, de-skewed: lane n is column n.
    pub acc_out: Vec<Signal<Out, Signed<32>>>,
    pub out_valid: Signal<Out, Bit>,
    /// Row-major: PE(k, n) is `pe[k * cols + n]`.
    pe: Vec<Pe>,
    /// Row k's skew chain is `skew[k(k-1)/2 ..][..k]`, first stage first.
    skew: Vec<DFF<Signed<8>>>,
    /// Column n's de-skew chain is `deskew[dbase(n) ..][..cols-1-n]`, first stage first.
    deskew: Vec<DFF<Signed<32>>>,
    /// `in_valid` delayed by rows + cols - 1 cycles.
    valid: Vec<DFF<Bit>>,
}

/// First skew register of row k (also the first of column k's weight skew in `banked.rs`).
pub(crate) fn sbase(k: usize) -> usize {
    k * k.saturating_sub(1) / 2
}

/// First de-skew register of column n (columns 0.. have cols-1, cols-2, ... registers).
pub(crate) fn dbase(cols: usize, n: usize) -> usize {
    (0..n).map(|j| cols - 1 - j).sum()
}

impl Array {
    pub fn new(rows: usize, cols: usize) -> Array {
        Array::with_xnor_bits(rows, cols, 8)
    }

    /// An array whose PEs count the low `xnor_bits` bits of each byte in binary mode.
    pub fn with_xnor_bits(rows: usize, cols: usize, xnor_bits: u32) -> Array {
        assert!(rows > 0 && cols > 0, "an array needs at least one PE");
        Array {
            clock: Default::default(),
            a_in: (0..rows).map(|_| Default::default()).collect(),
            in_valid: Default::default(),
            w_in: (0..cols).map(|_| Default::default()).collect(),
            w_load: Default::default(),
            binary: Default::default(),
            acc_out: (0..cols).map(|_| Default::default()).collect(),
            out_valid: Default::default(),
            pe: (0..rows * cols)
                .map(|_| Pe::with_xnor_bits(xnor_bits))
                .collect(),
            skew: (0..sbase(rows)).map(|_| Default::default()).collect(),
            deskew: (0..dbase(cols, cols)).map(|_| Default::default()).collect(),
            valid: (0..rows + cols - 1).map(|_| Default::default()).collect(),
        }
    }

    pub fn rows(&self) -> usize {
        self.a_in.len()
    }

    pub fn cols(&self) -> usize {
        self.w_in.len()
    }
}

impl Logic for Array {
    fn update(&mut self) {
        let (rows, cols) = (self.rows(), self.cols());
        let clk = self.clock.val();
        for p in &mut self.pe {
            p.clock.next = clk;
            p.w_load.next = self.w_load.val();
        }
        for d in &mut self.skew {
            d.clock.next = clk;
        }
        for d in &mut self.deskew {
            d.clock.next = clk;
        }
        for d in &mut self.valid {
            d.clock.next = clk;
        }
        for k in 0..rows {
            let b = sbase(k);
            for j in 0..k {
                self.skew[b + j].d.next = if j == 0 {
                    self.a_in[k].val()
                } else {
                    self.skew[b + j - 1].q.val()
                };
            }
            self.pe[k * cols].a_in.next = if k == 0 {
                self.a_in[0].val()
            } else {
                self.skew[b + k - 1].q.val()
            };
            self.pe[k * cols].binary.next = if k == 0 {
                self.binary.val()
            } else {
                self.pe[(k - 1) * cols].binary_out.val()
            };
            for n in 1..cols {
                self.pe[k * cols + n].a_in.next = self.pe[k * cols + n - 1].a_out.val();
                self.pe[k * cols + n].binary.next = self.pe[k * cols + n - 1].binary_out.val();
            }
            for n in 0..cols {
                self.pe[k * cols + n].psum_in.next = if k == 0 {
                    Signed::default()
                } else {
                    self.pe[(k - 1) * cols + n].psum_out.val()
                };
                self.pe[k * cols + n].w_in.next = if k == rows - 1 {
                    self.w_in[n].val()
                } else {
                    self.pe[(k + 1) * cols + n].w_out.val()
                };
            }
        }
        for n in 0..cols {
            let b = dbase(cols, n);
            let bottom = self.pe[(rows - 1) * cols + n].psum_out.val();
            let len = cols - 1 - n;
            for j in 0..len {
                self.deskew[b + j].d.next = if j == 0 {
                    bottom
                } else {
                    self.deskew[b + j - 1].q.val()
                };
            }
            self.acc_out[n].next = if len == 0 {
                bottom
            } else {
                self.deskew[b + len - 1].q.val()
            };
        }
        for j in 0..self.valid.len() {
            self.valid[j].d.next = if j == 0 {
                self.in_valid.val()
            } else {
                self.valid[j - 1].q.val()
            };
        }
        self.out_valid.next = self.valid[self.valid.len() - 1].q.val();
    }

    fn connect(&mut self) {
        for p in &mut self.pe {
            p.clock.connect();
            p.a_in.connect();
            p.psum_in.connect();
            p.w_in.connect();
            p.w_load.connect();
            p.binary.connect();
        }
        for d in &mut self.skew {
            d.clock.connect();
            d.d.connect();
        }
        for d in &mut self.deskew {
            d.clock.connect();
            d.d.connect();
        }
        for d in &mut self.valid {
            d.clock.connect();
            d.d.connect();
        }
        for o in &mut self.acc_out {
            o.connect();
        }
        self.out_valid.connect();
    }

    fn hdl(&self) -> Verilog {
        let (rows, cols) = (self.rows(), self.cols());
        let mut v = String::from("always @(*) begin\n");
        let mut line = |s: String| {
            v.push_str("    ");
            v.push_str(&s);
            v.push_str(";\n");
        };
        for i in 0..rows * cols {
            line(format!("pe${i}$clock = clock"));
            line(format!("pe${i}$w_load = w_load"));
        }
        for (name, len) in [
            ("skew", self.skew.len()),
            ("deskew", self.deskew.len()),
            ("valid", self.valid.len()),
        ] {
            for i in 0..len {
                line(format!("{name}${i}$clock = clock"));
            }
        }
        for k in 0..rows {
            let b = sbase(k);
            for j in 0..k {
                let src = if j == 0 {
                    format!("a_in${k}")
                } else {
                    format!("skew${}$q", b + j - 1)
                };
                line(format!("skew${}$d = {src}", b + j));
            }
            let left = if k == 0 {
                "a_in$0".to_string()
            } else {
                format!("skew${}$q", b + k - 1)
            };
            line(format!("pe${}$a_in = {left}", k * cols));
            let mode = if k == 0 {
                "binary".to_string()
            } else {
                format!("pe${}$binary_out", (k - 1) * cols)
            };
            line(format!("pe${}$binary = {mode}", k * cols));
            for n in 1..cols {
                let i = k * cols + n;
                line(format!("pe${i}$a_in = pe${}$a_out", i - 1));
                line(format!("pe${i}$binary = pe${}$binary_out", i - 1));
            }
            for n in 0..cols {
                let i = k * cols + n;
                let up = if k == 0 {
                    "32'sd0".to_string()
                } else {
                    format!("pe${}$psum_out", i - cols)
                };
                line(format!("pe${i}$psum_in = {up}"));
                let below = if k == rows - 1 {
                    format!("w_in${n}")
                } else {
                    format!("pe${}$w_out", i + cols)
                };
                line(format!("pe${i}$w_in = {below}"));
            }
        }
        for n in 0..cols {
            let b = dbase(cols, n);
            let bottom = format!("pe${}$psum_out", (rows - 1) * cols + n);
            let len = cols - 1 - n;
            for j in 0..len {
                let src = if j == 0 {
                    bottom.clone()
                } else {
                    format!("deskew${}$q", b + j - 1)
                };
                line(format!("deskew${}$d = {src}", b + j));
            }
            let out = if len == 0 {
                bottom
            } else {
                format!("deskew${}$q", b + len - 1)
            };
            line(format!("acc_out${n} = {out}"));
        }
        for j in 0..self.valid.len() {
            let src = if j == 0 {
                "in_valid".to_string()
            } else {
                format!("valid${}$q", j - 1)
            };
            line(format!("valid${j}$d = {src}"));
        }
        line(format!("out_valid = valid${}$q", self.valid.len() - 1));
        let _ = writeln!(v, "end");
        Verilog::Custom(v)
    }
}

impl Top for Array {
    fn clock_mut(&mut self) -> &mut Signal<In, Clock> {
        &mut self.clock
    }
    fn connect_inputs(&mut self) {
        self.clock.connect();
        for s in &mut self.a_in {
            s.connect();
        }
        self.in_valid.connect();
        for s in &mut self.w_in {
            s.connect();
        }
        self.w_load.connect();
        self.binary.connect();
    }
}
