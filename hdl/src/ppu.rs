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
    mid: Signal<Local, Bits<33>>,
    upper: Signal<Local, Bits<48>>,
    ca: Signal<Local, Bits<32>>,
    cb: Signal<Local, Bits<32>>,
    low32: Signal<Local, Bits<32>>,
    lt: Signal<Local, Bit>,
    sa: Signal<Local, Bits<32>>,
    sb: Signal<Local, Bits<32>>,
    smask: Signal<Local, Bits<64>>,
    below: Signal<Local, Bits<64>>,
    below1: Signal<Local, Bits<64>>,
    floor: Signal<Local, Bits<64>>,
    half: Signal<Local, Bit>,
    sticky: Signal<Local, Bit>,
    up: Signal<Local, Bit>,
    v: Signal<Local, Bits<64>>,
    any_hi: Signal<Local, Bit>,
    all_hi: Signal<Local, Bit>,
    fits: Signal<Local, Bit>,
    v9: Signal<Local, Bits<9>>,
    lo9: Signal<Local, Bits<9>>,
    hi9: Signal<Local, Bits<9>>,
    below_lo: Signal<Local, Bit>,
    above_hi: Signal<Local, Bit>,
    c16: Constant<Bits<6>>,
    c32: Constant<Bits<6>>,
    ones: Constant<Bits<64>>,
    zero64: Constant<Bits<64>>,
    hi32: Constant<Bits<64>>,
    low8: Constant<Bits<64>>,
    sign9: Constant<Bits<9>>,
    sign32: Constant<Bits<32>>,
    zero32: Constant<Bits<32>>,
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
            mid: Default::default(),
            upper: Default::default(),
            ca: Default::default(),
            cb: Default::default(),
            low32: Default::default(),
            lt: Default::default(),
            sa: Default::default(),
            sb: Default::default(),
            smask: Default::default(),
            below: Default::default(),
            below1: Default::default(),
            floor: Default::default(),
            half: Default::default(),
            sticky: Default::default(),
            up: Default::default(),
            v: Default::default(),
            any_hi: Default::default(),
            all_hi: Default::default(),
            fits: Default::default(),
            v9: Default::default(),
            lo9: Default::default(),
            hi9: Default::default(),
            below_lo: Default::default(),
            above_hi: Default::default(),
            c16: Constant::new(Bits::<6>::from(16u64)),
            c32: Constant::new(Bits::<6>::from(32u64)),
            ones: c(u64::MAX),
            zero64: c(0),
            hi32: c(!0xffff_ffff),
            low8: c(0xff),
            sign9: Constant::new(Bits::<9>::from(0x100u64)),
            sign32: Constant::new(Bits::<32>::from(1u64 << 31)),
            zero32: Constant::new(Bits::<32>::from(0u64)),
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
        // Stage 1. Unsigned 32 x 32 product from 16-bit halves: p3:p0 plus the middle
        // products at bit 16, added only above bit 16 (bits 0-15 are p0's). Then the two's
        // complement corrections, which touch only the high word:
        // a*b = ua*ub - 2^32 (b if a < 0) - 2^32 (a if b < 0), modulo 2^64.
        self.p0.next = self.a.val().get_bits::<16>(0) * self.b.val().get_bits::<16>(0);
        self.p1.next = self.a.val().get_bits::<16>(0) * self.b.val().get_bits::<16>(16);
        self.p2.next = self.a.val().get_bits::<16>(16) * self.b.val().get_bits::<16>(0);
        self.p3.next = self.a.val().get_bits::<16>(16) * self.b.val().get_bits::<16>(16);
        // Each step is its own Local: in rust-hdl's simulator a Local read in the same
        // update is its old value (pitfall 7).
        self.mid.next = bit_cast::<33, 32>(self.p1.val()) + bit_cast::<33, 32>(self.p2.val());
        self.upper.next = ((bit_cast::<48, 32>(self.p3.val()) << self.c16.val())
            | bit_cast::<48, 32>(self.p0.val() >> self.c16.val()))
            + bit_cast::<48, 33>(self.mid.val());
        self.low32.next = (bit_cast::<32, 16>(self.upper.val().get_bits::<16>(0))
            << self.c16.val())
            | bit_cast::<32, 16>(self.p0.val().get_bits::<16>(0));
        self.ca.next = self.zero32.val();
        if self.a.val().get_bit(31) {
            self.ca.next = self.b.val();
        }
        self.cb.next = self.zero32.val();
        if self.b.val().get_bit(31) {
            self.cb.next = self.a.val();
        }
        self.s1_prod.d.next = (bit_cast::<64, 32>(
            self.upper.val().get_bits::<32>(16) - self.ca.val() - self.cb.val(),
        ) << self.c32.val())
            | bit_cast::<64, 32>(self.low32.val());
        // Signed order as unsigned order of the sign-flipped values; one comparator serves
        // max and min (on equal operands either is the result).
        self.sa.next = self.a.val() ^ self.sign32.val();
        self.sb.next = self.b.val() ^ self.sign32.val();
        self.lt.next = self.sa.val() < self.sb.val();
        match self.func.val().index() {
            0 => self.s1_alu.d.next = self.a.val() + self.b.val(),
            1 => self.s1_alu.d.next = self.a.val() - self.b.val(),
            2 => {
                if self.lt.val() {
                    self.s1_alu.d.next = self.b.val();
                } else {
                    self.s1_alu.d.next = self.a.val();
                }
            }
            3 => {
                if self.lt.val() {
                    self.s1_alu.d.next = self.a.val();
                } else {
                    self.s1_alu.d.next = self.b.val();
                }
            }
            // The low word of the product is the same for signed and unsigned operands.
            _ => self.s1_alu.d.next = self.low32.val(),
        }
        self.s1_alu_valid.d.next = self.valid.val() & !self.requant.val();
        self.s1_req_valid.d.next = self.valid.val() & self.requant.val();
        self.s1_round.d.next = self.round.val();
        self.s1_shift.d.next = self.shift.val();
        self.s1_unsigned.d.next = self.out_unsigned.val();
        self.s1_zp.d.next = self.zp.val();
        self.s1_lo.d.next = self.lo.val();
        self.s1_hi.d.next = self.hi.val();

        // Stage 2: ALU result out; arithmetic shift right with rounding. One barrel shifter:
        // x >> s (arithmetic) = ((x ^ m) >> s) ^ m with m the sign mask. The rounding needs
        // only the half bit (bit s - 1) and whether any bit below it is set.
        self.s2_alu.d.next = self.s1_alu.q.val();
        self.s2_alu_valid.d.next = self.s1_alu_valid.q.val();
        self.smask.next = self.zero64.val();
        if self.s1_prod.q.val().get_bit(63) {
            self.smask.next = self.ones.val();
        }
        self.floor.next =
            ((self.s1_prod.q.val() ^ self.smask.val()) >> self.s1_shift.q.val()) ^ self.smask.val();
        self.below.next = !(self.ones.val() << self.s1_shift.q.val());
        self.below1.next = self.below.val() >> 1;
        self.half.next = (self.s1_prod.q.val() & self.below.val() & !self.below1.val()).any();
        self.sticky.next = (self.s1_prod.q.val() & self.below1.val()).any();
        match self.s1_round.q.val().index() {
            0 => self.up.next = self.half.val() & (self.sticky.val() | self.floor.val().get_bit(0)),
            1 => {
                self.up.next =
                    self.half.val() & (self.sticky.val() | !self.s1_prod.q.val().get_bit(63))
            }
            2 => self.up.next = self.half.val(),
            _ => self.up.next = false,
        }
        self.s2_r.d.next = self.floor.val() + self.up.val();
        self.s2_req_valid.d.next = self.s1_req_valid.q.val();
        self.s2_unsigned.d.next = self.s1_unsigned.q.val();
        self.s2_zp.d.next = self.s1_zp.q.val();
        self.s2_lo.d.next = self.s1_lo.q.val();
        self.s2_hi.d.next = self.s1_hi.q.val();

        // Stage 3: zero point, then min(max(v, lo), hi). lo and hi always lie inside the
        // output type's range, so the clamp to the type changes nothing after them. v is
        // compared as 9-bit signed when it fits (bits 63-8 all equal), else by its sign;
        // compares on sign-flipped values.
        self.v.next = self.s2_r.q.val() + bit_cast::<64, 32>(self.s2_zp.q.val());
        if self.s2_zp.q.val().get_bit(31) {
            self.v.next =
                self.s2_r.q.val() + (bit_cast::<64, 32>(self.s2_zp.q.val()) | self.hi32.val());
        }
        self.any_hi.next = (self.v.val() & !self.low8.val()).any();
        self.all_hi.next = (self.v.val() | self.low8.val()) == self.ones.val();
        self.fits.next = !self.any_hi.val() | self.all_hi.val();
        self.v9.next = self.v.val().get_bits::<9>(0) ^ self.sign9.val();
        self.lo9.next = bit_cast::<9, 8>(self.s2_lo.q.val()) | self.sign9.val();
        if !self.s2_unsigned.q.val() & self.s2_lo.q.val().get_bit(7) {
            self.lo9.next = bit_cast::<9, 8>(self.s2_lo.q.val());
        }
        self.hi9.next = bit_cast::<9, 8>(self.s2_hi.q.val()) | self.sign9.val();
        if !self.s2_unsigned.q.val() & self.s2_hi.q.val().get_bit(7) {
            self.hi9.next = bit_cast::<9, 8>(self.s2_hi.q.val());
        }
        self.below_lo.next = (self.v.val().get_bit(63) & !self.fits.val())
            | (self.fits.val() & (self.v9.val() < self.lo9.val()));
        self.above_hi.next = (!self.v.val().get_bit(63) & !self.fits.val())
            | (self.fits.val() & (self.v9.val() > self.hi9.val()));
        if self.below_lo.val() {
            if self.lo9.val() > self.hi9.val() {
                self.s3_byte.d.next = self.s2_hi.q.val();
            } else {
                self.s3_byte.d.next = self.s2_lo.q.val();
            }
        } else if self.above_hi.val() {
            self.s3_byte.d.next = self.s2_hi.q.val();
        } else {
            self.s3_byte.d.next = self.v.val().get_bits::<8>(0);
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
