//! From the accelerator's Verilog to a board: board definitions with pins and clocks
//! (`board`), the framed UART protocol the host speaks to a running board (`link`).

pub mod board;
pub mod flow;
pub mod host;
pub mod link;
pub mod rtl;
pub mod serial;
pub mod sim;
