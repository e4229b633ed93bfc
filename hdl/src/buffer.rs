//! The four on-chip buffers: `banks` block-RAM banks of `lines / banks` lines each, with one
//! compute read port, one store read port (output and accumulator buffers only), one compute
//! write port and one load write port. Twin of `systole_emulator::buffer::Buffers`.
//!
//! Reads are synchronous (block RAM): data is on `*_rdata` in the cycle after the address. A read
//! of the line written in the same cycle returns the new data (write-first), because the
//! emulator applies an instruction's writes before any later instruction reads. The port
//! arbitration (compute > load > store per bank and port) lives in the top level
//! (`top.rs`), which guarantees that at most one write reaches a bank per cycle.

/// The buffer module (parameterised Verilog, the same text for every arch).
pub const VERILOG: &str = r#"
// Banked scratchpad: BANKS banks of LPB lines of W bits.
module systole_buffer #(parameter W = 32, LPB = 16, BANKS = 2) (
    input clock,
    input c_ren, input [15:0] c_raddr, output [W-1:0] c_rdata,
    input s_ren, input [15:0] s_raddr, output [W-1:0] s_rdata,
    input c_we, input [15:0] c_waddr, input [W-1:0] c_wdata,
    input l_we, input [15:0] l_waddr, input [W-1:0] l_wdata
);
    wire [W-1:0] c_bank_data [0:BANKS-1];
    wire [W-1:0] s_bank_data [0:BANKS-1];
    reg [15:0] c_bank_q = 16'd0;
    reg [15:0] s_bank_q = 16'd0;
    always @(posedge clock) begin
        if (c_ren) c_bank_q <= c_raddr / LPB;
        if (s_ren) s_bank_q <= s_raddr / LPB;
    end
    assign c_rdata = c_bank_data[c_bank_q];
    assign s_rdata = s_bank_data[s_bank_q];
    genvar b;
    generate
        for (b = 0; b < BANKS; b = b + 1) begin : bank
            reg [W-1:0] mem [0:LPB-1];
            reg [W-1:0] cq = {W{1'b0}};
            reg [W-1:0] sq = {W{1'b0}};
            wire cw = c_we && (c_waddr / LPB) == b;
            wire lw = l_we && (l_waddr / LPB) == b;
            wire we = cw || lw;
            wire [15:0] wa = cw ? (c_waddr % LPB) : (l_waddr % LPB);
            wire [W-1:0] wd = cw ? c_wdata : l_wdata;
            wire [15:0] cra = c_raddr % LPB;
            wire [15:0] sra = s_raddr % LPB;
            integer i;
            initial for (i = 0; i < LPB; i = i + 1) mem[i] = {W{1'b0}};
            always @(posedge clock) begin
                if (we) mem[wa] <= wd;
                if (c_ren && (c_raddr / LPB) == b) cq <= (we && wa == cra) ? wd : mem[cra];
                if (s_ren && (s_raddr / LPB) == b) sq <= (we && wa == sra) ? wd : mem[sra];
            end
            assign c_bank_data[b] = cq;
            assign s_bank_data[b] = sq;
        end
    endgenerate
endmodule
"#;
