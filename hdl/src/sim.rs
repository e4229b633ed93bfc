//! Stepping blocks cycle by cycle without rust-hdl's threaded `Simulation` (several times
//! faster, and lets a test compare outputs with a reference model between clock edges).

use rust_hdl::prelude::*;

/// A block with one clock, usable as the top of a simulation or of generated Verilog.
pub trait Top: Block {
    fn clock_mut(&mut self) -> &mut Signal<In, Clock>;
    /// Marks the block's own inputs as driven from outside.
    fn connect_inputs(&mut self);
}

/// Connects a freshly built block so that it can be simulated or written as Verilog.
pub fn prepare<B: Top>(mut uut: B) -> B {
    uut.connect_inputs();
    uut.connect_all();
    settle(&mut uut);
    uut
}

/// Propagates input changes until every signal is stable.
pub fn settle<B: Block>(uut: &mut B) {
    assert!(simulate(uut, 1000), "combinational logic did not settle");
}

/// One rising then one falling clock edge: registers take the inputs set before the call.
pub fn tick<B: Top>(uut: &mut B) {
    uut.clock_mut().next = Clock { clk: true };
    settle(uut);
    uut.clock_mut().next = Clock { clk: false };
    settle(uut);
}
