//! The DMA engines. Twins of `systole_emulator::dma::{LoadExec, StoreExec}` with the external
//! memory of `systole_emulator::dram` behind a valid/ready port (docs/rtl.md has the port
//! tables):
//!
//! * load: one row request per cycle from the first cycle (`rreq_*`, always accepted); the
//!   memory offers beats on `rresp_valid`/`rresp_data` and the engine takes one with
//!   `rresp_ready`. A writer walks the padded destination grid one line per cycle at most:
//!   padding lines are written when reached, data lines in the cycle their last beat is taken.
//!   The beat completing a line is refused while the bank's write port is taken (`wgrant` low).
//!   `acc` lines are little-endian int32 lanes, `acc8` bytes are sign-extended into lanes.
//! * store: a send register (the buffer's store read port) is refilled when empty or when its
//!   last beat leaves; it sends one beat per cycle (`wvalid`, `waddr`, `wdata`, `wlast` on the
//!   last beat); the instruction ends when the memory acknowledges (`wack`, `L` cycles after
//!   `wlast`).
//!
//! Field positions are those `systole_arch::isa` packs (checked by `tests/top.rs` through the
//! co-simulation of random programs).

/// Load and store engine modules (parameterised Verilog).
pub const VERILOG: &str = r#"
// DA: DRAM address bits (log2 of dram.size_bytes). Every address a valid program touches is
// below the DRAM's size (the emulator refuses others), so address arithmetic modulo 2^DA gives
// the same addresses; grid positions count at most a buffer's 2^16 lines (17 bits).
// LA = 1: loads ahead (`dram.load_ahead`, docs/timing.md "Loads ahead"). Once the running
// load has issued all its requests the engine says so (`ahead`), and a load started then
// (`start` while busy) only issues its requests (from its own instruction register `nx_ir`)
// until the writer finishes the older load; the writer takes it over the next cycle. The
// older load's last cycle says `dr_done` while a load waits ahead (`pend`), else `done`: in
// the cycle a load starts ahead that is `done` (the controller tells the two apart; deciding
// it here would make `done` depend on `start`, a combinational loop through the controller).
module systole_load #(parameter R = 4, C = 4, B = 4, DA = 32, LA = 0) (
    input clock, input rst,
    input start, input [127:0] insn,
    output done, output ahead, output dr_done,
    output rreq_valid, output [31:0] rreq_addr, output [31:0] rreq_beats,
    input rresp_valid, input [8*B-1:0] rresp_data, output rresp_ready,
    output wreq, output [1:0] wbuf, output [15:0] wline,
    output [8*R-1:0] wdata_inp, output [8*C-1:0] wdata_wgt, output [32*C-1:0] wdata_acc,
    input wgrant
);
    localparam LB = (R > 4 * C) ? R : 4 * C;
    reg active = 1'b0;
    reg [127:0] ir = 128'd0;
    // A load started ahead: its instruction, waiting for the writer.
    reg pend = 1'b0;
    reg [127:0] nx_ir = 128'd0;
    // Grid coordinates and request counts: rows and columns are 10-bit fields, pads 4 bits.
    reg [10:0] issued_q = 0;
    reg [DA-1:0] raddr_q = 0;
    reg [16:0] pos_q = 0;
    reg [10:0] r_q = 0, c_q = 0;
    reg [15:0] beats_q = 0;
    reg [8*LB-1:0] line_q = 0;

    // The writer's instruction (a start while idle: the new one) and the request issuer's
    // (the newest: a start, the load ahead, else the writer's). `older`: the writer's load
    // has a load ahead of it. With LA = 0 a start always finds the engine idle, and the
    // issuer and the writer share one instruction (none of the second one is built).
    wire wstart = LA != 0 ? start && !active : start;
    wire older = LA != 0 && (pend || (start && active));
    wire [127:0] cur = wstart ? insn : ir;
    wire [127:0] icur = LA == 0 ? cur : start ? insn : pend ? nx_ir : ir;
    wire act = start || active;
    wire [10:0] irows = {1'd0, icur[69:60]};
    wire [10:0] icols = {1'd0, icur[79:70]};
    wire [DA-1:0] istride = icur[99:80];
    wire [DA-1:0] dram = icur[28 +: DA];
    wire [1:0] ibuf = icur[11:10];
    wire [15:0] ibpl = ibuf == 2'd0 ? R / B : ibuf == 2'd2 ? 4 * C / B : C / B;
    wire [10:0] ir_rows = {1'd0, ir[69:60]};
    wire [10:0] ir_cols = {1'd0, ir[79:70]};
    assign ahead = LA != 0 && active && !pend && (issued_q == ir_rows || ir_cols == 0);
    wire [1:0] buf_ = cur[11:10];
    wire [15:0] sram = cur[27:12];
    wire [10:0] rows = {1'd0, cur[69:60]};
    wire [10:0] cols = {1'd0, cur[79:70]};
    wire [10:0] pt = {7'd0, cur[103:100]};
    wire [10:0] pb = {7'd0, cur[107:104]};
    wire [10:0] pl = {7'd0, cur[111:108]};
    wire [10:0] pr = {7'd0, cur[115:112]};
    wire [7:0] pv = cur[123:116];
    wire [10:0] width = pl + cols + pr;
    wire [10:0] height = pt + rows + pb;
    wire [16:0] total = width * height;
    wire [15:0] bpl = buf_ == 2'd0 ? R / B : buf_ == 2'd2 ? 4 * C / B : C / B;

    wire [10:0] issued = start ? 11'd0 : issued_q;
    wire [DA-1:0] raddr = start ? dram : raddr_q;
    wire [16:0] pos = wstart ? 17'd0 : pos_q;
    wire [10:0] r = wstart ? 11'd0 : r_q;
    wire [10:0] c = wstart ? 11'd0 : c_q;
    wire [15:0] beats = wstart ? 16'd0 : beats_q;

    assign rreq_valid = act && issued < irows && icols != 0;
    assign rreq_addr = raddr;
    assign rreq_beats = icols * ibpl;
    wire in_grid = pos < total;
    wire is_data = r >= pt && r < pt + rows && c >= pl && c < pl + cols;
    wire last_beat = beats + 16'd1 == bpl;
    assign wreq = act && in_grid && (is_data ? (rresp_valid && last_beat) : 1'b1);
    assign rresp_ready = act && in_grid && is_data && (!last_beat || wgrant);
    wire take = rresp_valid && rresp_ready;
    wire advance = wreq && wgrant;
    wire [16:0] pos_n = pos + (advance ? 17'd1 : 17'd0);
    wire wdone = act && pos_n == total;
    assign done = wdone && !pend;
    assign dr_done = wdone && pend;

    // The beat goes into its place in the line: one decoded write enable per beat position
    // (a shift by the 16-bit beat count would build a mux for every possible count).
    localparam NB = LB / B;
    reg [8*LB-1:0] full;
    integer k;
    always @(*) begin
        full = line_q;
        for (k = 0; k < NB; k = k + 1)
            if (beats == k) full[k * 8 * B +: 8 * B] = rresp_data;
    end
    assign wbuf = buf_;
    assign wline = sram + pos[15:0];
    assign wdata_inp = is_data ? full[8*R-1:0] : {R{pv}};
    assign wdata_wgt = is_data ? full[8*C-1:0] : {C{pv}};
    genvar l;
    generate for (l = 0; l < C; l = l + 1) begin : lane
        assign wdata_acc[32*l +: 32] = !is_data ? {{24{pv[7]}}, pv}
            : buf_ == 2'd2 ? full[32*l +: 32] : {{24{full[8*l+7]}}, full[8*l +: 8]};
    end endgenerate

    always @(posedge clock) begin
        if (rst) begin
            active <= 1'b0;
            pend <= 1'b0;
        end else begin
            active <= act && !(wdone && !older);
            issued_q <= issued + (rreq_valid ? 11'd1 : 11'd0);
            raddr_q <= raddr + (rreq_valid ? istride : {DA{1'b0}});
            if (LA != 0 && start && active) nx_ir <= insn;
            if (wdone && older) begin
                // The load ahead becomes the writer's, from a fresh grid.
                ir <= pend ? nx_ir : insn;
                pend <= 1'b0;
                pos_q <= 0; c_q <= 0; r_q <= 0; beats_q <= 0;
            end else begin
                if (wstart) ir <= insn;
                pend <= LA != 0 && (pend || (start && active));
                pos_q <= pos_n;
                if (advance) begin
                    if (c + 11'd1 == width) begin c_q <= 0; r_q <= r + 11'd1; end
                    else begin c_q <= c + 11'd1; r_q <= r; end
                end else begin
                    c_q <= c; r_q <= r;
                end
                beats_q <= take ? (last_beat ? 16'd0 : beats + 16'd1) : beats;
            end
            if (take && !last_beat) line_q <= full;
        end
    end
endmodule

// DA as in systole_load; BIN = 0: no binary precision, so no packed stores (the emulator
// refuses `store pack=1`) and no packing logic. SQ = 1: requantizer lanes (`store requant=1`,
// `ppu.store_requant`; with FP32 = 1 binary32 lanes too): the parameter lines are read into
// registers first, then every line read goes through the lanes' three stages, and its beats
// (valid, address, strobes, last) leave three cycles later than without them.
module systole_store #(parameter C = 4, B = 4, XW = 8, DA = 32, BIN = 1, SQ = 0, FP32 = 0, SA = 0) (
    input clock, input rst,
    input start, input [127:0] insn,
    output done, output ahead, output dr_done,
    output sreq, output sbuf, output [15:0] sline, input sgrant,
    input [8*C-1:0] out_rdata, input [32*C-1:0] acc_rdata,
    output wvalid, output [31:0] waddr, output [8*B-1:0] wdata, output [B-1:0] wstrb,
    output wlast,
    input wack
);
    reg active = 1'b0;
    reg [127:0] ir = 128'd0;
    reg [16:0] read_q = 0;
    reg [15:0] regb_q = 0;
    reg ackw_q = 1'b0;
    reg [DA-1:0] saddr_q = 0;
    reg [DA-1:0] nrow_q = 0, nline_q = 0;
    reg [15:0] ncol_q = 0;
    reg sbuf_q = 1'b0;

    wire [127:0] cur = start ? insn : ir;
    wire act = start || active;
    wire buf_ = cur[10];
    wire [15:0] sram = cur[26:11];
    wire [DA-1:0] dram = cur[27 +: DA];
    wire [16:0] rows = {7'd0, cur[68:59]};
    wire [16:0] cols = {7'd0, cur[78:69]};
    wire [DA-1:0] stride = cur[98:79];
    wire pack = BIN && cur[99];
    wire [16:0] total = rows * cols;
    wire rq = SQ && cur[100];
    wire [15:0] param = cur[116:101];
    // A packed line is C/XW bytes of XW bits: its last (or only) beat may be partial (wstrb).
    wire [15:0] bpl = buf_ && !rq ? 4 * C / B : pack ? (C / XW + B - 1) / B : C / B;
    wire [DA-1:0] dline = buf_ && !rq ? 4 * C : pack ? C / XW : C;

    wire [16:0] rd = start ? 17'd0 : read_q;
    wire [15:0] regb = start ? 16'd0 : regb_q;
    wire ackw = start ? 1'b0 : ackw_q;
    wire [DA-1:0] nrow = start ? dram : nrow_q;
    wire [DA-1:0] nline = start ? dram : nline_q;
    wire [15:0] ncol = start ? 16'd0 : ncol_q;
    // Parameter lines read (`requant=1`: three before the data; `StoreExec::params_read`).
    reg [1:0] pr_q = 2'd0;
    wire [1:0] pr = start ? 2'd0 : pr_q;
    wire in_params = rq && pr != 2'd3;

    wire run = act && !ackw && total != 0;
    wire beat_out = run && regb != 0;
    wire [15:0] regb_dec = regb != 0 ? regb - 16'd1 : 16'd0;
    assign sreq = run && regb_dec == 0 && (in_params || rd < total);
    assign sbuf = buf_;
    assign sline = in_params ? param + {14'd0, pr} : sram + rd[15:0];
    wire got = sreq && sgrant;
    wire got_line = got && !in_params;
    // The beat signals as the send register gives them; `requant=1` delays them three cycles
    // (`dma::STORE_REQUANT_STAGES`). No beat leaves while the parameters are read.
    wire last_v = beat_out && regb_dec == 0 && rd == total;
    // SA = 1: stores ahead (`dram.store_ahead`, docs/timing.md "Stores ahead"). Once the
    // running store has sent its last beat (`ackw_q`) it says so (`ahead`); a store started
    // then runs from a fresh instruction, and the older one's acknowledgement, the next
    // `wack` (acknowledgements come in order), is `dr_done` (`dpend_q` while it waits).
    // Twin of `StoreExec::ahead_cycle` and `Machine::store_ahead_head`.
    wire ahd = SA != 0 && start && active && ackw_q;
    reg dpend_q = 1'b0;
    wire dpend = SA != 0 && (dpend_q || ahd);
    assign ahead = SA != 0 && active && ackw_q;
    assign dr_done = dpend && wack;
    assign done = act && (total == 0 || (ackw && wack && !dpend));

    wire [15:0] bi = bpl - regb;
    // The beat's place in the line: fewer than 4 C / B beats, so only the low bits select
    // (a full 16-bit index made a 16-stage shifter over the whole line).
    localparam BW = $clog2(4 * C / B + 1);
    wire [BW-1:0] bi_n = bi[BW-1:0];
    // Packing: bit j of packed byte i is lane XW i + j > 0 (a bipolar +1).
    wire [C-1:0] pos;
    wire [8*C-1:0] pk_line;
    genvar l;
    generate for (l = 0; l < C; l = l + 1) begin : pk
        assign pos[l] = !out_rdata[8*l+7] && out_rdata[8*l +: 8] != 8'd0;
    end
    for (l = 0; l < C; l = l + 1) begin : pb
        if (l < C / XW) begin : used
            if (XW < 8) begin : narrow
                assign pk_line[8*l +: 8] = {{(8-XW){1'b0}}, pos[XW*l +: XW]};
            end else begin : full
                assign pk_line[8*l +: 8] = pos[XW*l +: XW];
            end
        end else begin : unused
            assign pk_line[8*l +: 8] = 8'd0;
        end
    end endgenerate
    reg pack_q = 1'b0;
    reg rq_q = 1'b0;
    // Requantizer lanes: parameters captured the cycle after their reads, the line's lanes
    // from the read port, which holds them while the line's beats leave.
    wire [8*C-1:0] rq_bytes;
    generate if (SQ != 0) begin : sq
        reg [1:0] cap_q = 2'd0;
        reg cap_v = 1'b0;
        reg [32*C-1:0] mult_q = 0, shift_q = 0;
        reg [31:0] zp_q = 0;
        reg [7:0] lo_q = 0, hi_q = 0;
        reg [1:0] round_q = 0;
        reg uns_q = 1'b0, fp_q = 1'b0;
        always @(posedge clock) begin
            cap_v <= got && in_params;
            cap_q <= pr;
            if (start) begin
                round_q <= insn[119:118]; uns_q <= insn[117]; fp_q <= FP32 && insn[120];
            end
            if (cap_v && cap_q == 2'd0) begin
                zp_q <= acc_rdata[31:0]; lo_q <= acc_rdata[39:32]; hi_q <= acc_rdata[71:64];
            end
            if (cap_v && cap_q == 2'd1) mult_q <= acc_rdata;
            if (cap_v && cap_q == 2'd2) shift_q <= acc_rdata;
        end
        wire [8*C-1:0] ib, fb;
        genvar q;
        for (q = 0; q < C; q = q + 1) begin : lane
            wire iv, fv;
            systole_ppu_lane pl (
                .clock(clock), .valid(1'b1), .requant(1'b1), .func(3'd0),
                .round(round_q), .out_unsigned(uns_q), .zp(zp_q), .lo(lo_q), .hi(hi_q),
                .shift(shift_q[32*q +: 6]), .a(acc_rdata[32*q +: 32]), .b(mult_q[32*q +: 32]),
                .acc_out(), .acc_valid(), .byte_out(ib[8*q +: 8]), .byte_valid(iv)
            );
            if (FP32 != 0) begin : fp
                systole_requant_fp32_lane fl (
                    .clock(clock), .valid(1'b1), .acc(acc_rdata[32*q +: 32]),
                    .scale(mult_q[32*q +: 32]), .round(round_q), .out_unsigned(uns_q),
                    .zp(zp_q), .lo(lo_q), .hi(hi_q), .byte_out(fb[8*q +: 8]), .byte_valid(fv)
                );
            end else begin : nofp
                assign fb[8*q +: 8] = 8'd0;
            end
        end
        assign rq_bytes = fp_q ? fb : ib;
    end else begin : nosq
        assign rq_bytes = {(8*C){1'b0}};
    end endgenerate
    wire [32*C-1:0] sdata = rq_q ? {{(24*C){1'b0}}, rq_bytes} : sbuf_q ? acc_rdata
        : pack_q ? {{(24*C){1'b0}}, pk_line} : {{(24*C){1'b0}}, out_rdata};
    wire [31:0] dline_q = rq_q ? C : sbuf_q ? 4 * C : pack_q ? C / XW : C;
    genvar sb;
    wire [B-1:0] strb_v;
    generate for (sb = 0; sb < B; sb = sb + 1) begin : strb
        assign strb_v[sb] = beat_out && {16'd0, bi} * B + sb < dline_q;
    end endgenerate
    wire [31:0] waddr_v = saddr_q + bi * B;
    generate if (SQ != 0) begin : dly
        // Three stages of beat signals behind the lanes (the beat index selects the bytes
        // the lanes give three cycles after their line arrived).
        reg [2:0] v_d = 3'd0, l_d = 3'd0;
        reg [31:0] a_d0 = 0, a_d1 = 0, a_d2 = 0;
        reg [B-1:0] s_d0 = 0, s_d1 = 0, s_d2 = 0;
        reg [BW-1:0] i_d0 = 0, i_d1 = 0, i_d2 = 0;
        always @(posedge clock) begin
            v_d <= rst ? 3'd0 : {v_d[1:0], beat_out && rq_q};
            l_d <= rst ? 3'd0 : {l_d[1:0], last_v && rq_q};
            a_d0 <= waddr_v; a_d1 <= a_d0; a_d2 <= a_d1;
            s_d0 <= strb_v; s_d1 <= s_d0; s_d2 <= s_d1;
            i_d0 <= bi_n; i_d1 <= i_d0; i_d2 <= i_d1;
        end
        wire dv = v_d[2];
        assign wvalid = dv || (beat_out && !rq_q);
        assign wlast = l_d[2] || (last_v && !rq_q);
        assign waddr = dv ? a_d2 : waddr_v;
        assign wstrb = dv ? s_d2 : (rq_q ? {B{1'b0}} : strb_v);
        assign wdata = dv ? sdata[i_d2 * 8 * B +: 8 * B]
            : beat_out && !rq_q ? sdata[bi_n * 8 * B +: 8 * B] : {(8 * B){1'b0}};
    end else begin : nodly
        assign wvalid = beat_out;
        assign wlast = last_v;
        assign waddr = waddr_v;
        assign wstrb = strb_v;
        assign wdata = beat_out ? sdata[bi_n * 8 * B +: 8 * B] : {(8 * B){1'b0}};
    end endgenerate

    always @(posedge clock) begin
        if (rst) begin
            active <= 1'b0;
            dpend_q <= 1'b0;
        end else begin
            if (start) ir <= insn;
            active <= act && !done;
            ackw_q <= ackw || wlast;
            dpend_q <= dpend && !wack;
            read_q <= rd + (got_line ? 17'd1 : 17'd0);
            pr_q <= pr + (got && in_params ? 2'd1 : 2'd0);
            regb_q <= got_line ? bpl : regb_dec;
            if (got_line) begin
                sbuf_q <= buf_;
                rq_q <= rq;
                pack_q <= pack && !buf_;
                saddr_q <= nline;
                if (ncol + 16'd1 == cols[15:0]) begin
                    ncol_q <= 0; nrow_q <= nrow + stride; nline_q <= nrow + stride;
                end else begin
                    ncol_q <= ncol + 16'd1; nrow_q <= nrow; nline_q <= nline + dline;
                end
            end else begin
                ncol_q <= ncol; nrow_q <= nrow; nline_q <= nline;
            end
        end
    end
endmodule
"#;
