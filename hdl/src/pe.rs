//! Processing element: weight-stationary int8 x int8 -> int32 multiply-accumulate.
//!
//! Twin of `systole_emulator::systolic::Pe`. All outputs are registers, so a PE's outputs in
//! cycle t depend only on its inputs before t: the activation moves one PE right per cycle,
//! the partial sum one PE down. The weight register loads `w_in` when `w_load` is high; the
//! array chains `w_out` upwards, so `rows` loads shift a weight tile into place.

use crate::cast::signed_bit_cast;
use rust_hdl::prelude::*;

#[derive(LogicBlock, Default)]
pub struct Pe {
    pub clock: Signal<In, Clock>,
    /// Activation from the left neighbour (or the input skew).
    pub a_in: Signal<In, Signed<8>>,
    /// Partial sum from the PE above (0 in the top row).
    pub psum_in: Signal<In, Signed<32>>,
    /// Weight from the PE below (or the weight port in the bottom row).
    pub w_in: Signal<In, Signed<8>>,
    pub w_load: Signal<In, Bit>,
    pub a_out: Signal<Out, Signed<8>>,
    pub psum_out: Signal<Out, Signed<32>>,
    pub w_out: Signal<Out, Signed<8>>,
    a: DFF<Signed<8>>,
    psum: DFF<Signed<32>>,
    w: DFF<Signed<8>>,
}

impl Logic for Pe {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(self, clock, a, psum, w);
        self.a.d.next = self.a_in.val();
        // rust-hdl multiplies only 16 x 16; the 8-bit operands are sign-extended into it and
        // Verilog sizes the product to the 32-bit sum, so yosys still sees an 8 x 8 multiply.
        self.psum.d.next = self.psum_in.val()
            + signed_bit_cast::<16, 8>(self.a_in.val()) * signed_bit_cast::<16, 8>(self.w.q.val());
        if self.w_load.val() {
            self.w.d.next = self.w_in.val();
        }
        self.a_out.next = self.a.q.val();
        self.psum_out.next = self.psum.q.val();
        self.w_out.next = self.w.q.val();
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
    }
}
