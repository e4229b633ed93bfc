//! The array with two weight registers per PE (`array.weight_banks = 2`), which chained
//! `matmul`s run on: `BankedPe` and `BankedArray`, twins of
//! `systole_emulator::banked::{BankedPe, BankedArray}` (docs/timing.md, "Chained matmul").
//!
//! Each input line carries its weight bank (registered beside the activation, like the
//! mode). Weights pass down each column through a register per PE (`d`), column n skewed by
//! n cycles at the top; a capture flag and its bank follow at half speed (two registers per
//! row), so row k captures the value passing it when line k of the tile does, and loading
//! one bank never disturbs lines multiplying with the other.
//!
//! As for `Array`, the 2-D wiring is written twice (`update` for simulation, `hdl` as text)
//! and hdl/tests/verilog.rs simulates the text against the emulator twin.

use crate::array::{dbase, sbase};
use crate::cast::signed_bit_cast;
use crate::sim::Top;
use rust_hdl::prelude::*;
use std::fmt::Write;

#[derive(LogicBlock)]
pub struct BankedPe {
    pub clock: Signal<In, Clock>,
    pub a_in: Signal<In, Signed<8>>,
    /// The weight bank the activation on `a_in` multiplies with.
    pub bank_in: Signal<In, Bit>,
    pub binary: Signal<In, Bit>,
    pub psum_in: Signal<In, Signed<32>>,
    /// The weight passing down from the PE above (or the skewed port in row 0).
    pub d_in: Signal<In, Signed<8>>,
    /// Capture `d_in` into bank `cap_bank_in` at this clock edge.
    pub cap_in: Signal<In, Bit>,
    pub cap_bank_in: Signal<In, Bit>,
    pub a_out: Signal<Out, Signed<8>>,
    pub bank_out: Signal<Out, Bit>,
    pub binary_out: Signal<Out, Bit>,
    pub psum_out: Signal<Out, Signed<32>>,
    pub d_out: Signal<Out, Signed<8>>,
    /// The capture flag two edges after it came in (the PE below's `cap_in`).
    pub cap_out: Signal<Out, Bit>,
    pub cap_bank_out: Signal<Out, Bit>,
    a: DFF<Signed<8>>,
    bank: DFF<Bit>,
    b: DFF<Bit>,
    psum: DFF<Signed<32>>,
    w0: DFF<Signed<8>>,
    w1: DFF<Signed<8>>,
    d: DFF<Signed<8>>,
    c1: DFF<Bit>,
    c2: DFF<Bit>,
    cb1: DFF<Bit>,
    cb2: DFF<Bit>,
    mask: Constant<Bits<8>>,
    /// The weight of the activation's bank.
    w: Signal<Local, Signed<8>>,
    agree: Signal<Local, Bits<8>>,
    pairs: Signal<Local, Bits<8>>,
    nibbles: Signal<Local, Bits<8>>,
    count: Signal<Local, Bits<4>>,
}

impl Logic for BankedPe {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(self, clock, a, bank, b, psum, w0, w1, d, c1, c2, cb1, cb2);
        if self.bank_in.val() {
            self.w.next = self.w1.q.val();
        } else {
            self.w.next = self.w0.q.val();
        }
        self.a.d.next = self.a_in.val();
        self.bank.d.next = self.bank_in.val();
        self.b.d.next = self.binary.val();
        self.agree.next =
            !(unsigned_cast(self.a_in.val()) ^ unsigned_cast(self.w.val())) & self.mask.val();
        self.pairs.next = (self.agree.val() & 0x55) + ((self.agree.val() >> 1) & 0x55);
        self.nibbles.next = (self.pairs.val() & 0x33) + ((self.pairs.val() >> 2) & 0x33);
        self.count.next = self.nibbles.val().get_bits::<4>(0) + self.nibbles.val().get_bits::<4>(4);
        if self.binary.val() {
            self.psum.d.next =
                self.psum_in.val() + signed_cast(bit_cast::<32, 4>(self.count.val()));
        } else {
            self.psum.d.next = self.psum_in.val()
                + signed_bit_cast::<16, 8>(self.a_in.val())
                    * signed_bit_cast::<16, 8>(self.w.val());
        }
        if self.cap_in.val() {
            if self.cap_bank_in.val() {
                self.w1.d.next = self.d_in.val();
            } else {
                self.w0.d.next = self.d_in.val();
            }
        }
        self.d.d.next = self.d_in.val();
        self.c1.d.next = self.cap_in.val();
        self.c2.d.next = self.c1.q.val();
        self.cb1.d.next = self.cap_bank_in.val();
        self.cb2.d.next = self.cb1.q.val();
        self.a_out.next = self.a.q.val();
        self.bank_out.next = self.bank.q.val();
        self.binary_out.next = self.b.q.val();
        self.psum_out.next = self.psum.q.val();
        self.d_out.next = self.d.q.val();
        self.cap_out.next = self.c2.q.val();
        self.cap_bank_out.next = self.cb2.q.val();
    }
}

impl BankedPe {
    /// A PE whose binary mode counts the low `xnor_bits` bits (1, 2, 4 or 8) of each byte.
    pub fn with_xnor_bits(xnor_bits: u32) -> BankedPe {
        BankedPe {
            clock: Default::default(),
            a_in: Default::default(),
            bank_in: Default::default(),
            binary: Default::default(),
            psum_in: Default::default(),
            d_in: Default::default(),
            cap_in: Default::default(),
            cap_bank_in: Default::default(),
            a_out: Default::default(),
            bank_out: Default::default(),
            binary_out: Default::default(),
            psum_out: Default::default(),
            d_out: Default::default(),
            cap_out: Default::default(),
            cap_bank_out: Default::default(),
            a: Default::default(),
            bank: Default::default(),
            b: Default::default(),
            psum: Default::default(),
            w0: Default::default(),
            w1: Default::default(),
            d: Default::default(),
            c1: Default::default(),
            c2: Default::default(),
            cb1: Default::default(),
            cb2: Default::default(),
            mask: Constant::new(((0xffu32 >> (8 - xnor_bits)) as u64).into()),
            w: Default::default(),
            agree: Default::default(),
            pairs: Default::default(),
            nibbles: Default::default(),
            count: Default::default(),
        }
    }
}

impl Top for BankedPe {
    fn clock_mut(&mut self) -> &mut Signal<In, Clock> {
        &mut self.clock
    }
    fn connect_inputs(&mut self) {
        self.clock.connect();
        self.a_in.connect();
        self.bank_in.connect();
        self.binary.connect();
        self.psum_in.connect();
        self.d_in.connect();
        self.cap_in.connect();
        self.cap_bank_in.connect();
    }
}

#[derive(LogicBlock)]
pub struct BankedArray {
    pub clock: Signal<In, Clock>,
    /// One input line, element k for PE row k (un-skewed).
    pub a_in: Vec<Signal<In, Signed<8>>>,
    pub in_valid: Signal<In, Bit>,
    /// The weight bank the line on `a_in` multiplies with.
    pub in_bank: Signal<In, Bit>,
    pub binary: Signal<In, Bit>,
    /// One weight line, lane n for PE column n; enters the top row.
    pub w_in: Vec<Signal<In, Signed<8>>>,
    /// `w_in` holds a tile's first line: its capture flag starts.
    pub w_first: Signal<In, Bit>,
    /// The bank that tile loads into.
    pub w_bank: Signal<In, Bit>,
    pub acc_out: Vec<Signal<Out, Signed<32>>>,
    pub out_valid: Signal<Out, Bit>,
    /// `out_valid` of the next cycle (an accumulating read is issued one cycle early).
    pub pre_valid: Signal<Out, Bit>,
    /// Row-major: PE(k, n) is `pe[k * cols + n]`.
    pe: Vec<BankedPe>,
    /// Row k's input skew chain is `skew[k(k-1)/2 ..][..k]`.
    skew: Vec<DFF<Signed<8>>>,
    /// Column n's weight skew chain is `wskew[n(n-1)/2 ..][..n]`.
    wskew: Vec<DFF<Signed<8>>>,
    /// The capture flag and bank for column n: stage n - 1 of one shared chain each.
    fskew: Vec<DFF<Bit>>,
    bskew: Vec<DFF<Bit>>,
    deskew: Vec<DFF<Signed<32>>>,
    valid: Vec<DFF<Bit>>,
}

impl BankedArray {
    pub fn with_xnor_bits(rows: usize, cols: usize, xnor_bits: u32) -> BankedArray {
        assert!(rows > 0 && cols > 0, "an array needs at least one PE");
        BankedArray {
            clock: Default::default(),
            a_in: (0..rows).map(|_| Default::default()).collect(),
            in_valid: Default::default(),
            in_bank: Default::default(),
            binary: Default::default(),
            w_in: (0..cols).map(|_| Default::default()).collect(),
            w_first: Default::default(),
            w_bank: Default::default(),
            acc_out: (0..cols).map(|_| Default::default()).collect(),
            out_valid: Default::default(),
            pre_valid: Default::default(),
            pe: (0..rows * cols)
                .map(|_| BankedPe::with_xnor_bits(xnor_bits))
                .collect(),
            skew: (0..sbase(rows)).map(|_| Default::default()).collect(),
            wskew: (0..sbase(cols)).map(|_| Default::default()).collect(),
            fskew: (0..cols - 1).map(|_| Default::default()).collect(),
            bskew: (0..cols - 1).map(|_| Default::default()).collect(),
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

impl Logic for BankedArray {
    fn update(&mut self) {
        let (rows, cols) = (self.rows(), self.cols());
        let clk = self.clock.val();
        for p in &mut self.pe {
            p.clock.next = clk;
        }
        for d in &mut self.skew {
            d.clock.next = clk;
        }
        for d in &mut self.wskew {
            d.clock.next = clk;
        }
        for d in self.fskew.iter_mut().chain(self.bskew.iter_mut()) {
            d.clock.next = clk;
        }
        for d in &mut self.deskew {
            d.clock.next = clk;
        }
        for d in &mut self.valid {
            d.clock.next = clk;
        }
        // Input skew, weight skew, flag and bank chains.
        for k in 0..rows {
            let b = sbase(k);
            for j in 0..k {
                self.skew[b + j].d.next = if j == 0 {
                    self.a_in[k].val()
                } else {
                    self.skew[b + j - 1].q.val()
                };
            }
        }
        for n in 0..cols {
            let b = sbase(n);
            for j in 0..n {
                self.wskew[b + j].d.next = if j == 0 {
                    self.w_in[n].val()
                } else {
                    self.wskew[b + j - 1].q.val()
                };
            }
        }
        for j in 0..cols.saturating_sub(1) {
            let (f, bk) = if j == 0 {
                (self.w_first.val(), self.w_bank.val())
            } else {
                (self.fskew[j - 1].q.val(), self.bskew[j - 1].q.val())
            };
            self.fskew[j].d.next = f;
            self.bskew[j].d.next = bk;
        }
        for k in 0..rows {
            for n in 0..cols {
                let i = k * cols + n;
                let a = if n > 0 {
                    self.pe[i - 1].a_out.val()
                } else if k == 0 {
                    self.a_in[0].val()
                } else {
                    self.skew[sbase(k) + k - 1].q.val()
                };
                let (bank, mode) = match (k, n) {
                    (0, 0) => (self.in_bank.val(), self.binary.val()),
                    (_, 0) => (
                        self.pe[i - cols].bank_out.val(),
                        self.pe[i - cols].binary_out.val(),
                    ),
                    _ => (
                        self.pe[i - 1].bank_out.val(),
                        self.pe[i - 1].binary_out.val(),
                    ),
                };
                let (d, cap, capb) = if k > 0 {
                    (
                        self.pe[i - cols].d_out.val(),
                        self.pe[i - cols].cap_out.val(),
                        self.pe[i - cols].cap_bank_out.val(),
                    )
                } else if n == 0 {
                    (self.w_in[0].val(), self.w_first.val(), self.w_bank.val())
                } else {
                    (
                        self.wskew[sbase(n) + n - 1].q.val(),
                        self.fskew[n - 1].q.val(),
                        self.bskew[n - 1].q.val(),
                    )
                };
                let psum = if k == 0 {
                    Signed::default()
                } else {
                    self.pe[i - cols].psum_out.val()
                };
                let p = &mut self.pe[i];
                p.a_in.next = a;
                p.bank_in.next = bank;
                p.binary.next = mode;
                p.psum_in.next = psum;
                p.d_in.next = d;
                p.cap_in.next = cap;
                p.cap_bank_in.next = capb;
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
        let nv = self.valid.len();
        for j in 0..nv {
            self.valid[j].d.next = if j == 0 {
                self.in_valid.val()
            } else {
                self.valid[j - 1].q.val()
            };
        }
        self.out_valid.next = self.valid[nv - 1].q.val();
        self.pre_valid.next = if nv >= 2 {
            self.valid[nv - 2].q.val()
        } else {
            self.in_valid.val()
        };
    }

    fn connect(&mut self) {
        for p in &mut self.pe {
            p.clock.connect();
            p.a_in.connect();
            p.bank_in.connect();
            p.binary.connect();
            p.psum_in.connect();
            p.d_in.connect();
            p.cap_in.connect();
            p.cap_bank_in.connect();
        }
        for d in &mut self.skew {
            d.clock.connect();
            d.d.connect();
        }
        for d in &mut self.wskew {
            d.clock.connect();
            d.d.connect();
        }
        for d in self.fskew.iter_mut().chain(self.bskew.iter_mut()) {
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
        self.pre_valid.connect();
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
        }
        for (name, len) in [
            ("skew", self.skew.len()),
            ("wskew", self.wskew.len()),
            ("fskew", self.fskew.len()),
            ("bskew", self.bskew.len()),
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
        }
        for n in 0..cols {
            let b = sbase(n);
            for j in 0..n {
                let src = if j == 0 {
                    format!("w_in${n}")
                } else {
                    format!("wskew${}$q", b + j - 1)
                };
                line(format!("wskew${}$d = {src}", b + j));
            }
        }
        for j in 0..cols.saturating_sub(1) {
            let (f, bk) = if j == 0 {
                ("w_first".to_string(), "w_bank".to_string())
            } else {
                (format!("fskew${}$q", j - 1), format!("bskew${}$q", j - 1))
            };
            line(format!("fskew${j}$d = {f}"));
            line(format!("bskew${j}$d = {bk}"));
        }
        for k in 0..rows {
            for n in 0..cols {
                let i = k * cols + n;
                let a = if n > 0 {
                    format!("pe${}$a_out", i - 1)
                } else if k == 0 {
                    "a_in$0".to_string()
                } else {
                    format!("skew${}$q", sbase(k) + k - 1)
                };
                let (bank, mode) = match (k, n) {
                    (0, 0) => ("in_bank".to_string(), "binary".to_string()),
                    (_, 0) => (
                        format!("pe${}$bank_out", i - cols),
                        format!("pe${}$binary_out", i - cols),
                    ),
                    _ => (
                        format!("pe${}$bank_out", i - 1),
                        format!("pe${}$binary_out", i - 1),
                    ),
                };
                let (d, cap, capb) = if k > 0 {
                    (
                        format!("pe${}$d_out", i - cols),
                        format!("pe${}$cap_out", i - cols),
                        format!("pe${}$cap_bank_out", i - cols),
                    )
                } else if n == 0 {
                    (
                        "w_in$0".to_string(),
                        "w_first".to_string(),
                        "w_bank".to_string(),
                    )
                } else {
                    (
                        format!("wskew${}$q", sbase(n) + n - 1),
                        format!("fskew${}$q", n - 1),
                        format!("bskew${}$q", n - 1),
                    )
                };
                let psum = if k == 0 {
                    "32'sd0".to_string()
                } else {
                    format!("pe${}$psum_out", i - cols)
                };
                line(format!("pe${i}$a_in = {a}"));
                line(format!("pe${i}$bank_in = {bank}"));
                line(format!("pe${i}$binary = {mode}"));
                line(format!("pe${i}$psum_in = {psum}"));
                line(format!("pe${i}$d_in = {d}"));
                line(format!("pe${i}$cap_in = {cap}"));
                line(format!("pe${i}$cap_bank_in = {capb}"));
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
        let nv = self.valid.len();
        for j in 0..nv {
            let src = if j == 0 {
                "in_valid".to_string()
            } else {
                format!("valid${}$q", j - 1)
            };
            line(format!("valid${j}$d = {src}"));
        }
        line(format!("out_valid = valid${}$q", nv - 1));
        let pre = if nv >= 2 {
            format!("valid${}$q", nv - 2)
        } else {
            "in_valid".to_string()
        };
        line(format!("pre_valid = {pre}"));
        let _ = writeln!(v, "end");
        Verilog::Custom(v)
    }
}

impl Top for BankedArray {
    fn clock_mut(&mut self) -> &mut Signal<In, Clock> {
        &mut self.clock
    }
    fn connect_inputs(&mut self) {
        self.clock.connect();
        for s in &mut self.a_in {
            s.connect();
        }
        self.in_valid.connect();
        self.in_bank.connect();
        self.binary.connect();
        for s in &mut self.w_in {
            s.connect();
        }
        self.w_first.connect();
        self.w_bank.connect();
    }
}
