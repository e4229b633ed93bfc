//! The board top level's RTL (Verilog text, parameterised like hdl/'s control blocks): UART
//! receiver and transmitter, the link engine that serves `link`'s frames, the on-chip memory
//! that stands in for DRAM with exactly the emulator's DRAM timing, and `systole_board`, which
//! wires them to `systole_top` (hdl/) and the board's clock, reset button and LEDs.

use std::fmt::Write;
use std::path::Path;
use systole_arch::config::index_bits;
use systole_arch::{ArchConfig, Program};

/// UART 8N1. `CPB` clock cycles per bit. The receiver samples each bit in its middle (after a
/// two-flop synchronizer) and drops a byte whose stop bit is low; the transmitter holds the
/// stop bit a full bit time before the next start bit.
pub const UART: &str = r#"
module systole_uart_rx #(parameter CPB = 434) (
    input clock, input rst, input rx, output reg valid = 1'b0, output reg [7:0] data = 8'd0
);
    reg [1:0] sync = 2'b11;
    reg busy = 1'b0;
    reg [15:0] cnt = 16'd0;
    reg [3:0] bitn = 4'd0;
    reg [7:0] sh = 8'd0;
    always @(posedge clock) begin
        sync <= {sync[0], rx};
        valid <= 1'b0;
        if (rst) begin
            busy <= 1'b0;
        end else if (!busy) begin
            if (!sync[1]) begin busy <= 1'b1; cnt <= CPB / 2; bitn <= 4'd0; end
        end else if (cnt != 0) begin
            cnt <= cnt - 16'd1;
        end else begin
            cnt <= CPB - 1;
            if (bitn == 4'd0) begin
                if (sync[1]) busy <= 1'b0;  // a glitch, not a start bit
                bitn <= 4'd1;
            end else if (bitn <= 4'd8) begin
                sh <= {sync[1], sh[7:1]};
                bitn <= bitn + 4'd1;
            end else begin
                busy <= 1'b0;
                if (sync[1]) begin valid <= 1'b1; data <= sh; end
            end
        end
    end
endmodule

module systole_uart_tx #(parameter CPB = 434) (
    input clock, input rst, input start, input [7:0] data, output busy, output reg tx = 1'b1
);
    reg [10:0] sh = 11'h7ff;
    reg [3:0] n = 4'd0;
    reg [15:0] cnt = 16'd0;
    assign busy = n != 4'd0;
    always @(posedge clock) begin
        if (rst) begin
            n <= 4'd0; tx <= 1'b1;
        end else if (n == 4'd0) begin
            // start bit, 8 data bits LSB first, stop bit, and one bit time to end the stop bit
            if (start) begin sh <= {2'b11, data, 1'b0}; n <= 4'd11; cnt <= 16'd0; end
        end else if (cnt != 0) begin
            cnt <= cnt - 16'd1;
        end else begin
            tx <= sh[0];
            sh <= {1'b1, sh[10:1]};
            n <= n - 4'd1;
            cnt <= n == 4'd1 ? 16'd0 : CPB - 1;
        end
    end
endmodule
"#;

/// The DRAM stand-in: `2^AW` bytes in `B` byte-wide banks (any byte address, one beat a cycle),
/// with `harness.cpp`'s timing: a read request accepted in cycle t offers its first beat from
/// t + L, beats in request order, one per cycle at most, held until taken; `wack` L cycles
/// after `wlast`. Requests wait in a block-RAM queue of `2^QAW` entries; a request reaches the
/// head at the earliest three cycles after it was accepted, so L must be at least 3. Ready
/// times are not stored: requests mature in the order they came (at most one a cycle), so an
/// L-cycle delay line of "accepted" bits and a count of matured, unfinished requests say
/// whether the head may go (no cycle counter or per-request timestamps). While `host` is high
/// the host's byte port owns the banks (read data one cycle later).
pub const BOARD_MEM: &str = r#"
module systole_board_mem #(parameter B = 4, BW = 2, AW = 16, L = 12, QAW = 10, INIT = 0) (
    input clock, input rst, input host,
    input rreq_valid, input [31:0] rreq_addr, input [31:0] rreq_beats,
    output rresp_valid, output [8*B-1:0] rresp_data, input rresp_ready,
    input wvalid, input [31:0] waddr, input [8*B-1:0] wdata, input [B-1:0] wstrb, input wlast,
    output wack,
    input h_we, input [AW-1:0] h_addr, input [7:0] h_wdata, output [7:0] h_rdata
);
    localparam RW = AW - BW;  // row address bits of one bank
    // Request queue: {byte address, beats}. Entries keep the address's AW bits only: the
    // banks decode no more.
    localparam QW = AW + 20;
    // acc_dl[j]: a request was accepted j + 1 cycles ago; wr_dl likewise for `wlast`.
    reg [L-2:0] acc_dl = 0;
    reg [L-1:0] wr_dl = 0;
    // Requests L or more cycles old that have not sent their last beat (the head among them).
    reg [QAW:0] rdy = 0;
    reg [QW-1:0] q [0:(1 << QAW) - 1];
    reg [QAW:0] wp = 0, rp = 0;
    reg [QW-1:0] fdata = {QW{1'b0}};
    reg fvalid = 1'b0;
    // The head request.
    reg e_v = 1'b0;
    reg [AW-1:0] e_addr = 0;
    reg [19:0] e_beats = 20'd0;
    wire serve = e_v && rdy != 0;
    wire take = serve && rresp_ready;
    wire e_done = take && e_beats == 20'd1;
    wire refill = !e_v || e_done;
    wire fcons = refill && fvalid;
    wire fre = wp != rp && (!fvalid || fcons);
    // The head in the next cycle: its beat's bytes are read now.
    wire n_v = refill ? fvalid : 1'b1;
    wire [AW-1:0] n_addr = refill ? fdata[AW+19:20] : (take ? e_addr + B : e_addr);
    // Banks.
    wire [8*B-1:0] bq;  // each bank's registered read data
    reg [BW-1:0] rot = 0;
    wire [31:0] a_rd = host ? {{(32-AW){1'b0}}, h_addr} : {{(32-AW){1'b0}}, n_addr};
    genvar j;
    generate for (j = 0; j < B; j = j + 1) begin : bank
        localparam [BW-1:0] JB = j;
        reg [7:0] m [0:(1 << RW) - 1];
        reg [7:0] qj = 8'd0;
        // Baked contents (`systole fpga build --model`): bank j from mem_b<j in hex>.hex.
        if (INIT) begin : baked
            localparam [7:0] D = j < 10 ? 8'd48 + j : 8'd87 + j;
            initial $readmemh({"mem_b", D, ".hex"}, m);
        end
        // Byte i of a beat at address a is at a + i; bank j holds the one with (a + i) % B == j.
        wire [BW-1:0] ri = JB - a_rd[BW-1:0];
        wire [31:0] ra = a_rd + {{(32-BW){1'b0}}, ri};
        wire [BW-1:0] wi = JB - waddr[BW-1:0];
        wire [31:0] wa = waddr + {{(32-BW){1'b0}}, wi};
        wire acc_we = !host && wvalid && wstrb[wi];
        wire hw = host && h_we && h_addr[BW-1:0] == JB;
        always @(posedge clock) begin
            if (acc_we) m[wa[AW-1:BW]] <= wdata[8*wi +: 8];
            if (hw) m[h_addr[AW-1:BW]] <= h_wdata;
            qj <= m[ra[AW-1:BW]];
        end
        assign bq[8*j +: 8] = qj;
        wire [BW-1:0] sel = rot + JB;
        assign rresp_data[8*j +: 8] = bq[8*sel +: 8];
    end endgenerate
    assign rresp_valid = serve;
    assign h_rdata = bq[8*rot +: 8];
    // Write acknowledgement (the store engine waits for it before its next instruction).
    assign wack = wr_dl[L-1];
    always @(posedge clock) begin
        rot <= a_rd[BW-1:0];
        if (rst) begin
            wp <= 0; rp <= 0; fvalid <= 1'b0; e_v <= 1'b0; acc_dl <= 0; wr_dl <= 0; rdy <= 0;
        end else begin
            acc_dl <= {acc_dl, rreq_valid && rreq_beats != 0};
            wr_dl <= {wr_dl, wvalid && wlast};
            rdy <= rdy + acc_dl[L-2] - e_done;
            if (rreq_valid && rreq_beats != 0) begin
                q[wp[QAW-1:0]] <= {rreq_addr[AW-1:0], rreq_beats[19:0]};
                wp <= wp + 1'b1;
            end
            if (fre) begin
                fdata <= q[rp[QAW-1:0]];
                rp <= rp + 1'b1;
                fvalid <= 1'b1;
            end else if (fcons) begin
                fvalid <= 1'b0;
            end
            e_v <= n_v;
            if (refill) begin
                e_addr <= fdata[AW+19:20]; e_beats <= fdata[19:0];
            end else if (take) begin
                e_addr <= e_addr + B; e_beats <= e_beats - 20'd1;
            end
        end
    end
endmodule
"#;

/// The link engine: parses `link` frames from the UART receiver, checks their CRC, runs the
/// command (instruction memory and board memory writes, memory reads, start, status) and sends
/// the reply. A frame whose bytes stop for `TIMEOUT` cycles is dropped. The accelerator is held
/// in reset (`acc_rst`) except while it runs, so the host owns the memories between runs.
pub const LINK: &str = r#"
module systole_link #(parameter AW = 16, MAXP = 1028, TIMEOUT = 100000, FP = 64'd0) (
    input clock, input rst,
    input rx_valid, input [7:0] rx_data,
    output reg tx_start = 1'b0, output reg [7:0] tx_data = 8'd0, input tx_busy,
    output reg acc_rst = 1'b1, input acc_done, input [63:0] acc_cycles,
    // Instructions go into the instruction memory a byte at a time, as they arrive.
    output reg imem_we = 1'b0, output reg [31:0] imem_waddr = 32'd0, output [127:0] imem_wdata,
    output reg [15:0] imem_wstrb = 16'd0,
    output reg h_we = 1'b0, output reg [AW-1:0] h_addr = 0, output reg [7:0] h_wdata = 8'd0,
    input [7:0] h_rdata,
    output running, output reg done_seen = 1'b0, output reg bad_frame = 1'b0
);
    localparam S_SYNC = 0, S_CMD = 1, S_LEN0 = 2, S_LEN1 = 3, S_PAY = 4, S_CRC0 = 5, S_CRC1 = 6,
        S_EXEC = 7, S_IMEM = 8, S_WMEM = 9, S_TX = 10, S_TXW = 11;
    reg [3:0] st = S_SYNC;
    reg [7:0] cmd = 8'd0;
    reg [15:0] len = 16'd0, idx = 16'd0, crc = 16'hffff, crc_rx = 16'd0;
    // Counts to TIMEOUT at most (the frame is dropped there and the count restarts).
    localparam IW = $clog2(TIMEOUT + 2);
    reg [IW-1:0] idle = 0;
    // Written while a frame's payload arrives, read only after it: no collision logic.
    (* no_rw_check *)
    reg [7:0] pbuf [0:MAXP-1];
    reg [7:0] pq = 8'd0;
    reg [15:0] praddr = 16'd0;
    reg run = 1'b0;
    assign running = run;
    reg [63:0] cyc = 64'd0;
    // Reply: status, payload source (0 none, 1 ping, 2 status, 3 memory), length, cursor.
    reg [7:0] rstat = 8'd0;
    reg [1:0] rsrc = 2'd0;
    reg [15:0] rlen = 16'd0, rpos = 16'd0;
    reg [3:0] rphase = 4'd0;  // 0 sync, 1 status, 2 len lo, 3 len hi, 4 payload, 5 crc lo, 6 crc hi, 7 end
    reg [31:0] addr = 32'd0;
    reg [3:0] bcnt = 4'd0;
    reg [7:0] imem_byte = 8'd0;
    assign imem_wdata = {16{imem_byte}};

    function [15:0] crc_byte(input [15:0] c, input [7:0] b);
        integer k;
        reg [15:0] x;
        begin
            x = c ^ {b, 8'd0};
            for (k = 0; k < 8; k = k + 1)
                x = x[15] ? {x[14:0], 1'b0} ^ 16'h1021 : {x[14:0], 1'b0};
            crc_byte = x;
        end
    endfunction

    wire [63:0] fpw = FP;
    // Byte indices of the fingerprint (payload bytes 4-11) and the cycle count (1-8): three
    // bits each, so each is one 8-way byte multiplexer rather than a shifter.
    wire [2:0] fp_i = rpos[2:0] - 3'd4;
    wire [2:0] cyc_i = rpos[2:0] - 3'd1;
    // Address range checks without wrapping: an address past the memory fails however long.
    localparam EW = (AW > 16 ? AW : 16) + 1;
    wire addr_hi = (addr >> AW) != 32'd0;
    wire [EW-1:0] rd_end = addr[AW-1:0] + {pq, rlen[7:0]};
    wire [EW-1:0] wr_end = addr[AW-1:0] + len - 16'd4;
    reg [7:0] tb;
    // The byte the reply sends at (rphase, rpos); memory bytes come from h_rdata.
    always @(*) begin
        case (rphase)
            4'd0: tb = 8'h5a;
            4'd1: tb = rstat;
            4'd2: tb = rlen[7:0];
            4'd3: tb = rlen[15:8];
            4'd4: case (rsrc)
                2'd1: tb = rpos < 4 ? (rpos == 0 ? 8'h53 : rpos == 1 ? 8'h59 : rpos == 2 ? 8'h53 : 8'h54)
                                    : rpos == 12 ? AW : fpw[8*fp_i +: 8];
                2'd2: tb = rpos == 0 ? (run ? 8'd1 : done_seen ? 8'd2 : 8'd0) : cyc[8*cyc_i +: 8];
                default: tb = h_rdata;
            endcase
            4'd5: tb = crc[7:0];
            default: tb = crc[15:8];
        endcase
    end

    always @(posedge clock) begin
        tx_start <= 1'b0;
        imem_we <= 1'b0;
        h_we <= 1'b0;
        pq <= pbuf[praddr];
        if (rst) begin
            st <= S_SYNC; run <= 1'b0; acc_rst <= 1'b1; done_seen <= 1'b0; bad_frame <= 1'b0;
        end else begin
            if (run && acc_done) begin
                run <= 1'b0; acc_rst <= 1'b1; done_seen <= 1'b1; cyc <= acc_cycles;
            end
            // A frame whose bytes stop arriving is dropped.
            if (st >= S_CMD && st <= S_CRC1 && !rx_valid) begin
                idle <= idle + 1'b1;
                if (idle >= TIMEOUT) begin st <= S_SYNC; bad_frame <= 1'b1; end
            end else begin
                idle <= 0;
            end
            case (st)
                S_SYNC: if (rx_valid && rx_data == 8'ha5) begin st <= S_CMD; crc <= 16'hffff; end
                S_CMD: if (rx_valid) begin cmd <= rx_data; crc <= crc_byte(crc, rx_data); st <= S_LEN0; end
                S_LEN0: if (rx_valid) begin len[7:0] <= rx_data; crc <= crc_byte(crc, rx_data); st <= S_LEN1; end
                S_LEN1: if (rx_valid) begin
                    len[15:8] <= rx_data; crc <= crc_byte(crc, rx_data); idx <= 16'd0;
                    st <= {rx_data, len[7:0]} == 16'd0 ? S_CRC0 : S_PAY;
                end
                S_PAY: if (rx_valid) begin
                    if (idx < MAXP) pbuf[idx] <= rx_data;
                    crc <= crc_byte(crc, rx_data);
                    idx <= idx + 16'd1;
                    if (idx + 16'd1 == len) st <= S_CRC0;
                end
                S_CRC0: if (rx_valid) begin crc_rx[7:0] <= rx_data; st <= S_CRC1; end
                S_CRC1: if (rx_valid) begin crc_rx[15:8] <= rx_data; st <= S_EXEC; praddr <= 16'd0; end
                S_EXEC: begin
                    // pq holds pbuf[0] from here on as praddr walks; the address is gathered below.
                    rsrc <= 2'd0; rlen <= 16'd0; rpos <= 16'd0; rphase <= 4'd0;
                    st <= S_TX;
                    if (crc_rx != crc) begin
                        rstat <= 8'h01; bad_frame <= 1'b1;
                    end else begin
                        bad_frame <= 1'b0;
                        rstat <= 8'h00;
                        case (cmd)
                            8'h01: begin rsrc <= 2'd1; rlen <= 16'd13; end
                            8'h06: begin rsrc <= 2'd2; rlen <= 16'd9; end
                            8'h02, 8'h03, 8'h04: begin
                                if (run) rstat <= 8'h04;
                                else if (len < 4 || len > MAXP
                                         || (cmd == 8'h02 && len[3:0] != 4'd4)
                                         || (cmd == 8'h04 && len != 6)) rstat <= 8'h03;
                                else begin st <= S_IMEM; idx <= 16'd0; praddr <= 16'd1; bcnt <= 4'd0; end
                            end
                            8'h05: begin
                                if (run) rstat <= 8'h04;
                                else begin run <= 1'b1; acc_rst <= 1'b0; done_seen <= 1'b0; end
                            end
                            default: rstat <= 8'h02;
                        endcase
                    end
                end
                // Gather the 4-byte address (and for read_mem the length), then the data.
                S_IMEM: begin
                    praddr <= praddr + 16'd1;
                    idx <= idx + 16'd1;
                    if (cmd != 8'h04 && idx + 16'd1 == len) begin st <= S_TX; rphase <= 4'd0; end
                    if (idx < 4) begin
                        addr <= {pq, addr[31:8]};
                    end else if (cmd == 8'h04) begin
                        if (idx == 4) rlen[7:0] <= pq;
                        else begin
                            rlen <= {pq, rlen[7:0]};
                            h_addr <= addr[AW-1:0];
                            if (addr_hi || rd_end > (1 << AW) || {pq, rlen[7:0]} > MAXP)
                                begin rstat <= 8'h03; rlen <= 16'd0; end
                            else rsrc <= 2'd3;
                            st <= S_TX; rphase <= 4'd0; rpos <= 16'd0;
                        end
                    end else if (cmd == 8'h03) begin
                        if (idx == 4 && (addr_hi || wr_end > (1 << AW))) begin
                            rstat <= 8'h03; st <= S_TX; rphase <= 4'd0;
                        end else begin
                            h_we <= 1'b1; h_addr <= addr[AW-1:0]; h_wdata <= pq;
                            addr <= addr + 32'd1;
                        end
                    end else begin
                        imem_we <= 1'b1; imem_waddr <= addr; imem_byte <= pq;
                        imem_wstrb <= 16'd1 << bcnt;
                        bcnt <= bcnt + 4'd1;
                        if (bcnt == 4'd15) addr <= addr + 32'd1;
                    end
                end
                // Send the reply byte by byte; memory payload bytes are read one cycle ahead.
                S_TX: if (!tx_busy && !tx_start) begin
                    tx_start <= 1'b1; tx_data <= tb;
                    if (rphase >= 4'd1 && rphase <= 4'd4) crc <= crc_byte(rphase == 4'd1 ? 16'hffff : crc, tb);
                    st <= S_TXW;
                    if (rphase == 4'd4) begin
                        rpos <= rpos + 16'd1;
                        h_addr <= h_addr + 1'b1;
                        if (rpos + 16'd1 == rlen) rphase <= 4'd5;
                    end else if (rphase == 4'd3) begin
                        rphase <= rlen == 16'd0 ? 4'd5 : 4'd4;
                    end else begin
                        rphase <= rphase + 4'd1;
                    end
                end
                S_TXW: st <= rphase == 4'd7 ? S_SYNC : S_TX;
                default: st <= S_SYNC;
            endcase
        end
    end
endmodule
"#;

/// Parameters of one board top level.
#[derive(Debug, Clone, PartialEq)]
pub struct BoardRtl {
    /// Clock cycles per UART bit (clock / baud rate).
    pub cycles_per_bit: u32,
    /// log2 of the on-chip memory's bytes.
    pub mem_addr_bits: u32,
    /// Cycles without a byte after which a partial frame is dropped.
    pub timeout_cycles: u32,
    pub leds: u32,
    pub led_active_low: bool,
    /// A program baked into the block RAMs' initial values (`imem.hex`, `mem_b<j>.hex`, read
    /// relative to the tool's working directory): the board runs it from power-up, the host
    /// sends only inputs.
    pub baked: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RtlError {
    #[error("arch '{arch}': the board memory needs dram.latency_cycles >= 3 (got {got})")]
    Latency { arch: String, got: u32 },
    #[error("arch '{arch}': the board memory needs dram.bytes_per_cycle a power of two >= 2 (got {got})")]
    Beat { arch: String, got: u32 },
    #[error(transparent)]
    Hdl(#[from] systole_hdl::verilog::Error),
    #[error("baking the program: {0}")]
    Bake(String),
    #[error("cannot write {path}: {err}")]
    Io { path: String, err: std::io::Error },
}

/// The board top level `systole_board` for `arch`: UART link, on-chip memory, the accelerator
/// and LEDs (0 running, 1 done, 2 last frame bad, 3 UART activity).
pub fn board_verilog(arch: &ArchConfig, p: &BoardRtl) -> Result<String, RtlError> {
    let d = &arch.dram;
    if d.latency_cycles < 3 {
        return Err(RtlError::Latency {
            arch: arch.name.clone(),
            got: d.latency_cycles,
        });
    }
    if !d.bytes_per_cycle.is_power_of_two() || d.bytes_per_cycle < 2 {
        return Err(RtlError::Beat {
            arch: arch.name.clone(),
            got: d.bytes_per_cycle,
        });
    }
    let b = d.bytes_per_cycle;
    let mut v = String::new();
    let _ = write!(
        v,
        r#"
module systole_board (
    input clk, input btn_n, input uart_rx, output uart_tx, output [{ln}:0] led
);
    wire clock, locked;
    systole_board_clock pll (.clk_in(clk), .clk_out(clock), .locked(locked));
    reg [2:0] rs = 3'b111;
    always @(posedge clock) rs <= {{rs[1:0], !locked || !btn_n}};
    wire rst = rs[2];

    wire rx_valid; wire [7:0] rx_data;
    systole_uart_rx #(.CPB({cpb})) urx (.clock(clock), .rst(rst), .rx(uart_rx), .valid(rx_valid), .data(rx_data));
    wire tx_start, tx_busy; wire [7:0] tx_data;
    systole_uart_tx #(.CPB({cpb})) utx (.clock(clock), .rst(rst), .start(tx_start), .data(tx_data), .busy(tx_busy), .tx(uart_tx));

    wire acc_rst, acc_done, running, done_seen, bad_frame;
    wire [63:0] acc_cycles;
    wire imem_we; wire [31:0] imem_waddr; wire [127:0] imem_wdata; wire [15:0] imem_wstrb;
    wire h_we; wire [{aw1}:0] h_addr; wire [7:0] h_wdata, h_rdata;
    systole_link #(.AW({aw}), .TIMEOUT({timeout}), .FP(64'h{fp:016x})) link (
        .clock(clock), .rst(rst), .rx_valid(rx_valid), .rx_data(rx_data),
        .tx_start(tx_start), .tx_data(tx_data), .tx_busy(tx_busy),
        .acc_rst(acc_rst), .acc_done(acc_done), .acc_cycles(acc_cycles),
        .imem_we(imem_we), .imem_waddr(imem_waddr), .imem_wdata(imem_wdata), .imem_wstrb(imem_wstrb),
        .h_we(h_we), .h_addr(h_addr), .h_wdata(h_wdata), .h_rdata(h_rdata),
        .running(running), .done_seen(done_seen), .bad_frame(bad_frame)
    );

    wire rreq_valid, rresp_valid, rresp_ready, wvalid, wlast, wack;
    wire [31:0] rreq_addr, rreq_beats, waddr;
    wire [{bw}:0] rresp_data, wdata;
    wire [{sw}:0] wstrb;
    systole_top #(.IMEM_INIT("{imem_init}")) acc (
        .clock(clock), .rst(acc_rst || rst),
        .imem_we(imem_we), .imem_waddr(imem_waddr), .imem_wdata(imem_wdata), .imem_wstrb(imem_wstrb),
        .rreq_valid(rreq_valid), .rreq_addr(rreq_addr), .rreq_beats(rreq_beats),
        .rresp_valid(rresp_valid), .rresp_data(rresp_data), .rresp_ready(rresp_ready),
        .wvalid(wvalid), .waddr(waddr), .wdata(wdata), .wstrb(wstrb), .wlast(wlast), .wack(wack),
        .done(acc_done), .cycles(acc_cycles)
    );
    systole_board_mem #(.B({b}), .BW({bwl}), .AW({aw}), .L({lat}), .QAW({qaw}), .INIT({baked})) mem (
        .clock(clock), .rst(acc_rst || rst), .host(acc_rst),
        .rreq_valid(rreq_valid), .rreq_addr(rreq_addr), .rreq_beats(rreq_beats),
        .rresp_valid(rresp_valid), .rresp_data(rresp_data), .rresp_ready(rresp_ready),
        .wvalid(wvalid), .waddr(waddr), .wdata(wdata), .wstrb(wstrb), .wlast(wlast), .wack(wack),
        .h_we(h_we), .h_addr(h_addr), .h_wdata(h_wdata), .h_rdata(h_rdata)
    );

    reg [23:0] act = 24'd0;
    always @(posedge clock) act <= rx_valid ? 24'hffffff : (act != 0 ? act - 24'd1 : 24'd0);
    wire [{ln}:0] on = {{{pad}running, done_seen, bad_frame, act != 0}};
    assign led = {inv}on;
endmodule
"#,
        ln = p.leds - 1,
        cpb = p.cycles_per_bit,
        aw = p.mem_addr_bits,
        aw1 = p.mem_addr_bits - 1,
        timeout = p.timeout_cycles,
        fp = arch.fingerprint(),
        bw = 8 * b - 1,
        sw = b - 1,
        bwl = b.trailing_zeros(),
        lat = d.latency_cycles,
        qaw = request_queue_bits(arch),
        pad = if p.leds > 4 {
            format!("{}'d0, ", p.leds - 4)
        } else {
            String::new()
        },
        inv = if p.led_active_low { "~" } else { "" },
        imem_init = if p.baked { "imem.hex" } else { "" },
        baked = p.baked as u32,
    );
    // LED order: led[0] = activity ... led[3] = running (the concatenation is MSB first).
    Ok(v)
}

/// Address bits of the board memory's request queue. The load engine alone reads, one request
/// per row of a load (at most 1,023 rows), and a load finishes only after its last beat; each
/// row fills at least one line of the load's buffer, so no more requests than the largest
/// buffer's lines (or 1,023) are ever outstanding.
pub fn request_queue_bits(arch: &ArchConfig) -> u32 {
    index_bits(arch.max_lines().min(1023) as u64)
}

/// Every Verilog file of the board top level, in compile order: the accelerator's (hdl/), the
/// board modules and `systole_board.v`. `clock` is `systole_board_clock` (a PLL, or a wire).
pub const BOARD_FILES: &[&str] = &[
    "systole_uart.v",
    "systole_board_mem.v",
    "systole_link.v",
    "systole_board_clock.v",
    "systole_board.v",
];

/// The initial-value files of a baked program: `imem.hex` (one 128-bit word per instruction,
/// most significant digit first) and `mem_b<j>.hex` (bank j: the bytes at addresses
/// row * B + j of the program's DRAM image, inputs zero).
pub fn bake_files(arch: &ArchConfig, prog: &Program) -> Vec<(String, String)> {
    let mut imem = String::new();
    for insn in &prog.code {
        let w = insn.encode().expect("a loaded program encodes");
        for b in w.iter().rev() {
            let _ = write!(imem, "{b:02x}");
        }
        imem.push('\n');
    }
    let b = arch.dram.bytes_per_cycle as usize;
    let mut image = vec![0u8; prog.dram_bytes.div_ceil(b as u64) as usize * b];
    for s in &prog.data {
        let a = s.dram_addr as usize;
        image[a..a + s.bytes.len()].copy_from_slice(&s.bytes);
    }
    let mut files = vec![("imem.hex".to_string(), imem)];
    for j in 0..b {
        let mut t = String::new();
        for row in image.chunks(b) {
            let _ = writeln!(t, "{:02x}", row[j]);
        }
        files.push((format!("mem_b{j:x}.hex"), t));
    }
    files
}

/// Writes the accelerator's RTL and the board top level for `arch` into `dir` (with `bake`'s
/// initial-value files when `p.baked`).
pub fn write_board_rtl(
    arch: &ArchConfig,
    p: &BoardRtl,
    clock_verilog: &str,
    dir: &Path,
    bake: Option<&Program>,
) -> Result<Vec<String>, RtlError> {
    if let Some(prog) = bake {
        if prog.dram_bytes > 1 << p.mem_addr_bits {
            return Err(RtlError::Bake(format!(
                "the program needs {} bytes of memory; the board has {}",
                prog.dram_bytes,
                1u64 << p.mem_addr_bits
            )));
        }
        if prog.fingerprint != arch.fingerprint() {
            return Err(RtlError::Bake(format!(
                "the program was compiled for arch fingerprint {:016x}, not {}'s {:016x}",
                prog.fingerprint,
                arch.name,
                arch.fingerprint()
            )));
        }
        for (f, text) in bake_files(arch, prog) {
            let path = dir.join(&f);
            std::fs::write(&path, text).map_err(|err| RtlError::Io {
                path: path.display().to_string(),
                err,
            })?;
        }
    }
    systole_hdl::top::write_rtl(arch, dir)?;
    let top = board_verilog(arch, p)?;
    for (f, text) in [
        ("systole_uart.v", UART),
        ("systole_board_mem.v", BOARD_MEM),
        ("systole_link.v", LINK),
        ("systole_board_clock.v", clock_verilog),
        ("systole_board.v", top.as_str()),
    ] {
        let path = dir.join(f);
        std::fs::write(&path, text).map_err(|err| RtlError::Io {
            path: path.display().to_string(),
            err,
        })?;
    }
    Ok(systole_hdl::top::RTL_FILES
        .iter()
        .chain(BOARD_FILES)
        .map(|s| s.to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use systole_arch::BufferKind;

    /// The queue holds every outstanding request: one per row of a load, never more rows than
    /// lines of the largest buffer (or 1,023); and it is no deeper than that needs.
    #[test]
    fn request_queue_covers_the_longest_load() {
        for name in ["tiny", "ulx3s", "edge", "scalesim32", "up5k"] {
            let arch = ArchConfig::resolve(name).unwrap();
            let most = BufferKind::ALL
                .iter()
                .map(|&k| arch.lines(k))
                .max()
                .unwrap();
            let bits = request_queue_bits(&arch);
            assert!(1u32 << bits >= most.min(1023), "{name}: {bits} bits");
            assert!(1u32 << (bits - 1) < most.min(1023), "{name}: {bits} bits");
        }
        let tiny = ArchConfig::resolve("tiny").unwrap();
        assert_eq!(request_queue_bits(&tiny), 8);
        assert_eq!(
            request_queue_bits(&ArchConfig::resolve("ulx3s").unwrap()),
            10
        );
    }
}
