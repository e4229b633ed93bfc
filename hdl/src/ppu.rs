//! One lane of the post-processing unit: `alu` (add/sub/max/min/mul, int32 wrapping) and
//! integer `requant` (exact 64-bit product, rounding right shift, zero point, clamp).
//!
//! Semantics are the emulator's `ppu::alu_lane` and `ppu::requant_lane`; latencies are
//! docs/timing.md's, counted from the cycle an operand is read: an `alu` result is on
//! `acc_out` two cycles later (read a_i at 1 + i, write at 3 + i), a requantized byte on
//! `byte_out` three cycles later (read at 2 + i, write at 5 + i: multiply, round/shift,
//! clamp). The operation's settings travel with the operands, so back-to-back instructions
//! with different settings need no pipeline drain.
//!
//! rust-hdl multiplies only 16 x 16 bits, so both 32-bit products are built from four 16-bit
//! partial products; signed comparisons flip the sign bit and compare unsigned, which means
//! the same in rust-hdl's simulator and in Verilog. Literals are `Constant`s (pitfall 6).

use crate::sim::Top;
use rust_hdl::prelude::*;

#[derive(LogicBlock)]
pub struct PpuLane {
    pub clock: Signal<In, Clock>,
    pub valid: Signal<In, Bit>,
    /// 1: `requant` (a = accumulator, b = multiplier); 0: `alu`.
    pub requant: Signal<In, Bit>,
    /// `AluFunc` encoding (add 0, sub 1, max 2, min 3, mul 4).
    pub func: Signal<In, Bits<3>>,
    /// `Round` encoding (even 0, away 1, up 2, floor 3).
    pub round: Signal<In, Bits<2>>,
    /// uint8 output and lo/hi (`unsigned` is a Verilog keyword).
    pub out_unsigned: Signal<In, Bit>,
    pub zp: Signal<In, Bits<32>>,
    pub lo: Signal<In, Bits<8>>,
    pub hi: Signal<In, Bits<8>>,
    pub shift: Signal<In, Bits<6>>,
    pub a: Signal<In, Bits<32>>,
    pub b: Signal<In, Bits<32>>,
    pub acc_out: Signal<Out, Bits<32>>,
    pub acc_valid: Signal<Out, Bit>,
    pub byte_out: Signal<Out, Bits<8>>,
    pub byte_valid: Signal<Out, Bit>,
    // Stage 1: operands in, products and ALU result out.
    s1_alu: DFF<Bits<32>>,
    s1_prod: DFF<Bits<64>>,
    s1_alu_valid: DFF<Bit>,
    s1_req_valid: DFF<Bit>,
    s1_round: DFF<Bits<2>>,
    s1_shift: DFF<Bits<6>>,
    s1_unsigned: DFF<Bit>,
    s1_zp: DFF<Bits<32>>,
    s1_lo: DFF<Bits<8>>,
    s1_hi: DFF<Bits<8>>,
    // Stage 2: ALU result leaves; rounded shift.
    s2_alu: DFF<Bits<32>>,
    s2_alu_valid: DFF<Bit>,
    s2_r: DFF<Bits<64>>,
    s2_req_valid: DFF<Bit>,
    s2_unsigned: DFF<Bit>,
    s2_zp: DFF<Bits<32>>,
    s2_lo: DFF<Bits<8>>,
    s2_hi: DFF<Bits<8>>,
    // Stage 3: zero point and clamp.
    s3_byte: DFF<Bits<8>>,
    s3_valid: DFF<Bit>,
    // Combinational intermediates (no `let` in #[hdl_gen], pitfall 7).
    p0: Signal<Local, Bits<32>>,
    p1: Signal<Local, Bits<32>>,
    p2: Signal<Local, Bits<32>>,
    p3: Signal<Local, Bits<32>>,
    uprod0: Signal<Local, Bits<64>>,
    uprod1: Signal<Local, Bits<64>>,
    uprod2: Signal<Local, Bits<64>>,
    sfloor: Signal<Local, Bits<64>>,
    sa: Signal<Local, Bits<32>>,
    sb: Signal<Local, Bits<32>>,
    floor: Signal<Local, Bits<64>>,
    rem: Signal<Local, Bits<64>>,
    half: Signal<Local, Bits<64>>,
    up: Signal<Local, Bit>,
    v: Signal<Local, Bits<64>>,
    lo_ext: Signal<Local, Bits<64>>,
    hi_ext: Signal<Local, Bits<64>>,
    tlo: Signal<Local, Bits<64>>,
    thi: Signal<Local, Bits<64>>,
    t1: Signal<Local, Bits<64>>,
    t2: Signal<Local, Bits<64>>,
    t3: Signal<Local, Bits<64>>,
    t4: Signal<Local, Bits<64>>,
    c16: Constant<Bits<6>>,
    c32: Constant<Bits<6>>,
    one: Constant<Bits<64>>,
    ones: Constant<Bits<64>>,
    sign32: Constant<Bits<32>>,
    sign64: Constant<Bits<64>>,
    hi56: Constant<Bits<64>>,
    hi32: Constant<Bits<64>>,
    min8: Constant<Bits<64>>,
    max8: Constant<Bits<64>>,
    max_u8: Constant<Bits<64>>,
    zero64: Constant<Bits<64>>,
}

impl Default for PpuLane {
    fn default() -> Self {
        let c = |v: u64| Constant::new(Bits::<64>::from(v));
        PpuLane {
            clock: Default::default(),
            valid: Default::default(),
            requant: Default::default(),
            func: Default::default(),
            round: Default::default(),
            out_unsigned: Default::default(),
            zp: Default::default(),
            lo: Default::default(),
            hi: Default::default(),
            shift: Default::default(),
            a: Default::default(),
            b: Default::default(),
            acc_out: Default::default(),
            acc_valid: Default::default(),
            byte_out: Default::default(),
            byte_valid: Default::default(),
            s1_alu: Default::default(),
            s1_prod: Default::default(),
            s1_alu_valid: Default::default(),
            s1_req_valid: Default::default(),
            s1_round: Default::default(),
            s1_shift: Default::default(),
            s1_unsigned: Default::default(),
            s1_zp: Default::default(),
            s1_lo: Default::default(),
            s1_hi: Default::default(),
            s2_alu: Default::default(),
            s2_alu_valid: Default::default(),
            s2_r: Default::default(),
            s2_req_valid: Default::default(),
            s2_unsigned: Default::default(),
            s2_zp: Default::default(),
            s2_lo: Default::default(),
            s2_hi: Default::default(),
            s3_byte: Default::default(),
            s3_valid: Default::default(),
            p0: Default::default(),
            p1: Default::default(),
            p2: Default::default(),
            p3: Default::default(),
            uprod0: Default::default(),
            uprod1: Default::default(),
            uprod2: Default::default(),
            sfloor: Default::default(),
            sa: Default::default(),
            sb: Default::default(),
            floor: Default::default(),
            rem: Default::default(),
            half: Default::default(),
            up: Default::default(),
            v: Default::default(),
            lo_ext: Default::default(),
            hi_ext: Default::default(),
            tlo: Default::default(),
            thi: Default::default(),
            t1: Default::default(),
            t2: Default::default(),
            t3: Default::default(),
            t4: Default::default(),
            c16: Constant::new(Bits::<6>::from(16u64)),
            c32: Constant::new(Bits::<6>::from(32u64)),
            one: c(1),
            ones: c(u64::MAX),
            sign32: Constant::new(Bits::<32>::from(1u64 << 31)),
            sign64: c(1 << 63),
            hi56: c(!0xff),
            hi32: c(!0xffff_ffff),
            min8: c(-128i64 as u64),
            max8: c(127),
            max_u8: c(255),
            zero64: c(0),
        }
    }
}

impl Logic for PpuLane {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self,
            clock,
            s1_alu,
            s1_prod,
            s1_alu_valid,
            s1_req_valid,
            s1_round,
            s1_shift,
            s1_unsigned,
            s1_zp,
            s1_lo,
            s1_hi,
            s2_alu,
            s2_alu_valid,
            s2_r,
            s2_req_valid,
            s2_unsigned,
            s2_zp,
            s2_lo,
            s2_hi,
            s3_byte,
            s3_valid
        );
        // Stage 1. Unsigned 32 x 32 product from 16-bit halves, then the two's complement
        // corrections: a*b = ua*ub - 2^32 (b if a < 0) - 2^32 (a if b < 0), modulo 2^64.
        self.p0.next = self.a.val().get_bits::<16>(0) * self.b.val().get_bits::<16>(0);
        self.p1.next = self.a.val().get_bits::<16>(0) * self.b.val().get_bits::<16>(16);
        self.p2.next = self.a.val().get_bits::<16>(16) * self.b.val().get_bits::<16>(0);
        self.p3.next = self.a.val().get_bits::<16>(16) * self.b.val().get_bits::<16>(16);
        // Each step is its own Local: in rust-hdl's simulator a Local read in the same
        // update is its old value (pitfall 7).
        self.uprod0.next = bit_cast::<64, 32>(self.p0.val())
            + (bit_cast::<64, 32>(self.p1.val()) << self.c16.val())
            + (bit_cast::<64, 32>(self.p2.val()) << self.c16.val())
            + (bit_cast::<64, 32>(self.p3.val()) << self.c32.val());
        if self.a.val().get_bit(31) {
            self.uprod1.next =
                self.uprod0.val() - (bit_cast::<64, 32>(self.b.val()) << self.c32.val());
        } else {
            self.uprod1.next = self.uprod0.val();
        }
        if self.b.val().get_bit(31) {
            self.uprod2.next =
                self.uprod1.val() - (bit_cast::<64, 32>(self.a.val()) << self.c32.val());
        } else {
            self.uprod2.next = self.uprod1.val();
        }
        self.s1_prod.d.next = self.uprod2.val();
        // Signed order as unsigned order of the sign-flipped values.
        self.sa.next = self.a.val() ^ self.sign32.val();
        self.sb.next = self.b.val() ^ self.sign32.val();
        match self.func.val().index() {
            0 => self.s1_alu.d.next = self.a.val() + self.b.val(),
            1 => self.s1_alu.d.next = self.a.val() - self.b.val(),
            2 => {
                if self.sa.val() > self.sb.val() {
                    self.s1_alu.d.next = self.a.val();
                } else {
                    self.s1_alu.d.next = self.b.val();
                }
            }
            3 => {
                if self.sa.val() < self.sb.val() {
                    self.s1_alu.d.next = self.a.val();
                } else {
                    self.s1_alu.d.next = self.b.val();
                }
            }
            _ => {
                self.s1_alu.d.next = self.p0.val()
                    + (bit_cast::<32, 64>(
                        (bit_cast::<64, 32>(self.p1.val()) + bit_cast::<64, 32>(self.p2.val()))
                            << self.c16.val(),
                    ));
            }
        }
        self.s1_alu_valid.d.next = self.valid.val() & !self.requant.val();
        self.s1_req_valid.d.next = self.valid.val() & self.requant.val();
        self.s1_round.d.next = self.round.val();
        self.s1_shift.d.next = self.shift.val();
        self.s1_unsigned.d.next = self.out_unsigned.val();
        self.s1_zp.d.next = self.zp.val();
        self.s1_lo.d.next = self.lo.val();
        self.s1_hi.d.next = self.hi.val();

        // Stage 2: ALU result out; arithmetic shift right with rounding.
        self.s2_alu.d.next = self.s1_alu.q.val();
        self.s2_alu_valid.d.next = self.s1_alu_valid.q.val();
        self.sfloor.next = self.s1_prod.q.val() >> self.s1_shift.q.val();
        if self.s1_prod.q.val().get_bit(63) {
            self.floor.next = self.sfloor.val() | !(self.ones.val() >> self.s1_shift.q.val());
        } else {
            self.floor.next = self.sfloor.val();
        }
        self.rem.next = self.s1_prod.q.val() & !(self.ones.val() << self.s1_shift.q.val());
        self.half.next = (self.one.val() << self.s1_shift.q.val()) >> 1;
        self.up.next = false;
        if self.s1_shift.q.val().any() {
            match self.s1_round.q.val().index() {
                0 => {
                    self.up.next = (self.rem.val() > self.half.val())
                        | ((self.rem.val() == self.half.val()) & self.floor.val().get_bit(0));
                }
                1 => {
                    self.up.next = (self.rem.val() > self.half.val())
                        | ((self.rem.val() == self.half.val()) & !self.s1_prod.q.val().get_bit(63));
                }
                2 => {
                    self.up.next = self.rem.val() >= self.half.val();
                }
                _ => {
                    self.up.next = false;
                }
            }
        }
        self.s2_r.d.next = self.floor.val() + self.up.val();
        self.s2_req_valid.d.next = self.s1_req_valid.q.val();
        self.s2_unsigned.d.next = self.s1_unsigned.q.val();
        self.s2_zp.d.next = self.s1_zp.q.val();
        self.s2_lo.d.next = self.s1_lo.q.val();
        self.s2_hi.d.next = self.s1_hi.q.val();

        // Stage 3: zero point, clamp to the output type, then to [lo, hi]; all compares
        // on sign-flipped 64-bit values.
        self.v.next = self.s2_r.q.val() + bit_cast::<64, 32>(self.s2_zp.q.val());
        if self.s2_zp.q.val().get_bit(31) {
            self.v.next =
                self.s2_r.q.val() + (bit_cast::<64, 32>(self.s2_zp.q.val()) | self.hi32.val());
        }
        self.lo_ext.next = bit_cast::<64, 8>(self.s2_lo.q.val());
        self.hi_ext.next = bit_cast::<64, 8>(self.s2_hi.q.val());
        if self.s2_unsigned.q.val() {
            self.tlo.next = self.zero64.val() ^ self.sign64.val();
            self.thi.next = self.max_u8.val() ^ self.sign64.val();
        } else {
            self.tlo.next = self.min8.val() ^ self.sign64.val();
            self.thi.next = self.max8.val() ^ self.sign64.val();
            if self.s2_lo.q.val().get_bit(7) {
                self.lo_ext.next = bit_cast::<64, 8>(self.s2_lo.q.val()) | self.hi56.val();
            }
            if self.s2_hi.q.val().get_bit(7) {
                self.hi_ext.next = bit_cast::<64, 8>(self.s2_hi.q.val()) | self.hi56.val();
            }
        }
        self.t1.next = self.v.val() ^ self.sign64.val();
        if self.t1.val() < self.tlo.val() {
            self.t2.next = self.tlo.val();
        } else {
            self.t2.next = self.t1.val();
        }
        if self.t2.val() > self.thi.val() {
            self.t3.next = self.thi.val();
        } else {
            self.t3.next = self.t2.val();
        }
        if self.t3.val() < (self.lo_ext.val() ^ self.sign64.val()) {
            self.t4.next = self.lo_ext.val() ^ self.sign64.val();
        } else {
            self.t4.next = self.t3.val();
        }
        // The last clamp, to hi; flipping the sign bit leaves the low byte as it is.
        if self.t4.val() > (self.hi_ext.val() ^ self.sign64.val()) {
            self.s3_byte.d.next = self.hi_ext.val().get_bits::<8>(0);
        } else {
            self.s3_byte.d.next = self.t4.val().get_bits::<8>(0);
        }
        self.s3_valid.d.next = self.s2_req_valid.q.val();

        self.acc_out.next = self.s2_alu.q.val();
        self.acc_valid.next = self.s2_alu_valid.q.val();
        self.byte_out.next = self.s3_byte.q.val();
        self.byte_valid.next = self.s3_valid.q.val();
    }
}

impl Top for PpuLane {
    fn clock_mut(&mut self) -> &mut Signal<In, Clock> {
        &mut self.clock
    }
    fn connect_inputs(&mut self) {
        self.clock.connect();
        self.valid.connect();
        self.requant.connect();
        self.func.connect();
        self.round.connect();
        self.out_unsigned.connect();
        self.zp.connect();
        self.lo.connect();
        self.hi.connect();
        self.shift.connect();
        self.a.connect();
        self.b.connect();
    }
}
