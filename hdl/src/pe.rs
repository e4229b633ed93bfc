//! Processing element: weight-stationary int8 x int8 -> int32 multiply-accumulate, or with
//! `binary` an XNOR-popcount of the 8 bipolar values each byte packs (bit 1 = +1): the
//! partial sum grows by the number of agreeing bits, 0..8.
//!
//! Twin of `systole_emulator::systolic::Pe`. All outputs are registers, so a PE's outputs in
//! cycle t depend only on its inputs before t: the activation moves one PE right per cycle,
//! the partial sum one PE down. The weight register loads `w_in` when `w_load` is high; the
//! array chains `w_out` upwards, so `rows` loads shift a weight tile into place. The mode
//! (`binary`) is registered beside the activation and passed on with it, so it reaches every
//! PE with its line through neighbour wires instead of one net to all PEs.

use crate::cast::signed_bit_cast;
use rust_hdl::prelude::*;

#[derive(LogicBlock)]
pub struct Pe {
    pub clock: Signal<In, Clock>,
    /// Activation from the left neighbour (or the input skew).
    pub a_in: Signal<In, Signed<8>>,
    /// Partial sum from the PE above (0 in the top row).
    pub psum_in: Signal<In, Signed<32>>,
    /// Weight from the PE below (or the weight port in the bottom row).
    pub w_in: Signal<In, Signed<8>>,
    pub w_load: Signal<In, Bit>,
    /// XNOR-popcount instead of the int8 product: the mode of the activation on `a_in`.
    pub binary: Signal<In, Bit>,
    pub a_out: Signal<Out, Signed<8>>,
    pub psum_out: Signal<Out, Signed<32>>,
    pub w_out: Signal<Out, Signed<8>>,
    /// The mode of the activation on `a_out`.
    pub binary_out: Signal<Out, Bit>,
    a: DFF<Signed<8>>,
    b: DFF<Bit>,
    psum: DFF<Signed<32>>,
    w: DFF<Signed<8>>,
    /// The bits binary mode counts: the low `array.xnor_bits` of each byte.
    mask: Constant<Bits<8>>,
    /// a XNOR w, bit by bit, masked.
    agree: Signal<Local, Bits<8>>,
    /// Popcount of `agree`: pairs, then nibbles, then the byte (adder tree, widths 2-3-4).
    pairs: Signal<Local, Bits<8>>,
    nibbles: Signal<Local, Bits<8>>,
    count: Signal<Local, Bits<4>>,
}

impl Logic for Pe {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(self, clock, a, b, psum, w);
        self.a.d.next = self.a_in.val();
        self.b.d.next = self.binary.val();
        // rust-hdl multiplies only 16 x 16; the 8-bit operands are sign-extended into it and
        // Verilog sizes the product to the 32-bit sum, so yosys still sees an 8 x 8 multiply.
        self.agree.next =
            !(unsigned_cast(self.a_in.val()) ^ unsigned_cast(self.w.q.val())) & self.mask.val();
        // Two-bit sums of bit pairs, four-bit sums of nibbles, then the byte's count.
        self.pairs.next = (self.agree.val() & 0x55) + ((self.agree.val() >> 1) & 0x55);
        self.nibbles.next = (self.pairs.val() & 0x33) + ((self.pairs.val() >> 2) & 0x33);
        self.count.next = self.nibbles.val().get_bits::<4>(0) + self.nibbles.val().get_bits::<4>(4);
        if self.binary.val() {
            self.psum.d.next =
                self.psum_in.val() + signed_cast(bit_cast::<32, 4>(self.count.val()));
        } else {
            self.psum.d.next = self.psum_in.val()
                + signed_bit_cast::<16, 8>(self.a_in.val())
                    * signed_bit_cast::<16, 8>(self.w.q.val());
        }
        if self.w_load.val() {
            self.w.d.next = self.w_in.val();
        }
        self.a_out.next = self.a.q.val();
        self.psum_out.next = self.psum.q.val();
        self.w_out.next = self.w.q.val();
        self.binary_out.next = self.b.q.val();
    }
}

impl Pe {
    /// A PE whose binary mode counts the low `xnor_bits` bits (1, 2, 4 or 8) of each byte.
    pub fn with_xnor_bits(xnor_bits: u32) -> Pe {
        Pe {
            clock: Default::default(),
            a_in: Default::default(),
            psum_in: Default::default(),
            w_in: Default::default(),
            w_load: Default::default(),
            binary: Default::default(),
            a_out: Default::default(),
            psum_out: Default::default(),
            w_out: Default::default(),
            binary_out: Default::default(),
            a: Default::default(),
            b: Default::default(),
            psum: Default::default(),
            w: Default::default(),
            mask: Constant::new(((0xffu32 >> (8 - xnor_bits)) as u64).into()),
            agree: Default::default(),
            pairs: Default::default(),
            nibbles: Default::default(),
            count: Default::default(),
        }
    }
}

impl Default for Pe {
    fn default() -> Self {
        Pe::with_xnor_bits(8)
    }
}

impl crate::sim::Top for Pe {
    fn clock_mut(&mut self) -> &mut Signal<In, Clock> {
        &mut self.clock
    }
    fn connect_inputs(&mut self) {
        self.clock.connect();
        self.a_in.connect();
        self.psum_in.connect();
        self.w_in.connect();
        self.w_load.connect();
        self.binary.connect();
    }
}
