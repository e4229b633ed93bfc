//! The compute sequencer: runs `ldw`, `matmul`, `alu`, `requant` and `thresh` over their `m`
//! lines on the systolic array (`array.rs`) and `cols` PPU lanes (`ppu.rs`), with exactly the
//! buffer access schedules of docs/timing.md (`Array::ldw_access`, `Array::matmul_access`,
//! `Ppu::{alu,requant,thresh}_access` in the emulator, its twins).
//!
//! Block-RAM reads take a cycle, so every operand read is issued one cycle before its contract
//! cycle: for offset `o + 1` of the running instruction, or for offset 0 of the instruction the
//! controller says will start next (`start_next`, `head_next`). The accumulator read of an
//! accumulating `matmul` is issued in its contract cycle, one cycle before the write that uses
//! it. The contract-cycle claims (`cl_*`) go to the top level's port arbitration.
//!
//! `requant fp32` runs the integer lanes and the binary32 lanes (`requant_fp32.rs`) side by
//! side and writes the binary32 result.

/// The compute module (parameterised Verilog; `systole_array_flat` is generated per arch by
/// `top.rs`).
pub const VERILOG: &str = r#"
// A register kept as its own module in synthesis: yosys merges registers with the same
// input, so a value needed in many places (one copy per lane) is replicated through it.
(* keep_hierarchy *)
module systole_keep_reg #(parameter W = 1) (
    input clock, input en, input [W-1:0] d, output reg [W-1:0] q
);
    initial q = {W{1'b0}};
    always @(posedge clock) if (en) q <= d;
endmodule

// INT = 0: no integer PPU lanes (`ppu.integer_lanes = false`); the emulator refuses `alu` and
// `requant` on such an arch, so their decode is left out here too.
// BIN = 0: the arch has no binary precision (the emulator refuses `matmul binary=1`), so the
// array's mode is a constant and synthesis drops every PE's XNOR-popcount.
// WB = 2: two weight registers per PE (`array.weight_banks`): `ldw` and chained `matmul`s
// (docs/timing.md) load the bank the loaded tile is not in; WB = 1 leaves the chain logic out.
// WK = 0: no input walker (`array.input_walker = false`): the emulator refuses `matmul` with
// `row` or `bias`, so their logic is left out.
// OV = 1: overlapped chains (`array.chain_overlap`, docs/timing.md): a chain may start (`start`
// while `active`) when `ovl` says so, while the one before it drains; that one's last input
// lines stream from the tail counter below, its results leave through the result-side
// registers (rs_*), and `dr_done` marks its last cycle. OV = 0 leaves all of it out.
module systole_compute #(parameter R = 4, C = 4, S = 8, FP32 = 1, INT = 1, BIN = 1, OW = 16, LW = 16, WB = 1, WK = 1, OV = 0) (
    input clock, input rst,
    input start, input [127:0] insn,
    input start_next, input [127:0] head_next,
    output done,
    // The queue head (`insn`) may start now, overlapped (registered state only); the same for
    // the next cycle's head (`head_next`) from this cycle's next state; the drained chain's
    // last cycle.
    output ovl, output ovl_next, output dr_done,
    // physical (early) reads; data in the next cycle
    output inp_ren, output [15:0] inp_raddr, input [8*R-1:0] inp_rdata,
    output wgt_ren, output [15:0] wgt_raddr, input [8*C-1:0] wgt_rdata,
    output acc_ren, output [15:0] acc_raddr, input [32*C-1:0] acc_rdata,
    // writes (contract cycle)
    output acc_we, output [15:0] acc_waddr, output [32*C-1:0] acc_wdata,
    output out_we, output [15:0] out_waddr, output [8*C-1:0] out_wdata,
    // contract-cycle read claims for the arbitration
    output cl_inp, output [15:0] cl_inp_line,
    output cl_wgt, output [15:0] cl_wgt_line,
    output cl_acc, output [15:0] cl_acc_line
);
    localparam D = R + C;
    reg active = 1'b0;
    reg [127:0] ir = 128'd0;
    // Offsets and line counts fit OW bits (`top.rs`: no instruction's m exceeds the lines of
    // the buffers it reads or writes, so the longest, `alu` over every accumulator line or
    // `thresh` with 255 thresholds, bounds them; at most 16 bits).
    reg [OW-1:0] o_q = 0;
    reg [OW-1:0] wi_q = 0;
    reg [32*C-1:0] breg = 0, mreg = 0, sreg = 0;

    wire [127:0] cur = start ? insn : ir;
    wire act = start || active;
    wire [OW-1:0] o = start ? 0 : o_q;
    wire [OW-1:0] wi = start ? 0 : wi_q;
    wire [5:0] op = cur[5:0];

    // A chained matmul that streams (a chain with m = 0 runs as a plain one: one cycle).
    function chn(input [127:0] x);
        chn = WB == 2 && x[5:0] == 6'd4 && x[61:56] != 6'd0 && x[53:42] != 12'd0;
    endfunction

    // Chain y may start while chain x drains (`MatMul::may_follow_overlapped`): both stream,
    // in the same mode, into the same first accumulator line or apart (bias rows included).
    function ov_ok(input [127:0] x, input [127:0] y);
        reg [16:0] xl, xh, yl, yh;
        begin
            xl = {1'b0, x[41:26]} - {16'd0, WK && x[127] && !x[54]};
            xh = {1'b0, x[41:26]} + {5'd0, x[53:42]};
            yl = {1'b0, y[41:26]} - {16'd0, WK && y[127] && !y[54]};
            yh = {1'b0, y[41:26]} + {5'd0, y[53:42]};
            ov_ok = OV && chn(x) && chn(y) && x[67:62] != 6'd0 && y[67:62] != 6'd0
                && x[55] == y[55] && (x[41:26] == y[41:26] || xh <= yl || yh <= xl);
        end
    endfunction

    // A matmul whose input lines come from the walker below: a chain, or rows with gaps
    // between them (`row` != 0).
    function wk_use(input [127:0] x);
        wk_use = x[5:0] == 6'd4 && (chn(x) || (WK && x[120:113] != 8'd0));
    endfunction

    function [OW-1:0] dur(input [127:0] x);
        reg [OW-1:0] m;
        begin
            case (x[5:0])
                6'd3: dur = R;
                6'd4: begin m = {4'd0, x[53:42]}; dur = m == 0 ? 16'd1 : m + D - 1; end
                6'd5: begin m = {4'd0, x[80:69]};
                    dur = m == 0 || !INT ? 16'd1 : (x[68:65] == 0 ? m + 16'd3 : 16'd2 * m + 16'd2); end
                6'd6: begin m = {4'd0, x[69:58]}; dur = m == 0 || !INT ? 16'd1 : m + 16'd5; end
                6'd9: begin m = {4'd0, x[77:66]}; dur = m == 0 ? 16'd1 : {8'd0, x[65:58]} + m + S + 2; end
                default: dur = 16'd1;
            endcase
        end
    endfunction

    // Contract read of offset oo: {en, buf (1 inp, 2 wgt, 3 acc), line}. Lines are LW bits
    // (`top.rs`: enough for the largest buffer; a valid program's lines lie inside it, so the
    // sums modulo 2^LW are the lines).
    function [LW+2:0] rdreq(input [127:0] x, input [OW-1:0] oo);
        reg [OW-1:0] m, cnt, i;
        reg e;
        reg [1:0] b;
        reg [LW-1:0] l;
        begin
            e = 1'b0; b = 2'd0; l = 0;
            case (x[5:0])
                6'd3: if (oo < R) begin e = 1'b1; b = 2'd2; l = x[25:10] + oo; end
                6'd4: begin m = {4'd0, x[53:42]};
                    if (oo < m && !wk_use(x)) begin e = 1'b1; b = 2'd1; l = x[25:10] + oo; end end
                6'd5: begin m = {4'd0, x[80:69]};
                    if (INT && m != 0) begin
                        if (x[68:65] == 0) begin
                            if (oo == 0) begin e = 1'b1; b = 2'd3; l = x[64:49]; end
                            else if (oo <= m) begin e = 1'b1; b = 2'd3; l = x[44:29] + (oo - 16'd1) * {12'd0, x[48:45]}; end
                        end else begin
                            i = oo >> 1;
                            if (i < m) begin
                                if (oo[0]) begin e = 1'b1; b = 2'd3; l = x[64:49] + i * {12'd0, x[68:65]}; end
                                else begin e = 1'b1; b = 2'd3; l = x[44:29] + i * {12'd0, x[48:45]}; end
                            end
                        end
                    end
                end
                6'd6: begin m = {4'd0, x[69:58]};
                    if (INT && m != 0) begin
                        if (oo == 0) begin e = 1'b1; b = 2'd3; l = x[57:42]; end
                        else if (oo == 1) begin e = 1'b1; b = 2'd3; l = x[57:42] + 16'd1; end
                        else if (oo - 16'd2 < m) begin e = 1'b1; b = 2'd3; l = x[41:26] + oo - 16'd2; end
                    end
                end
                6'd9: begin m = {4'd0, x[77:66]}; cnt = {8'd0, x[65:58]};
                    if (m != 0) begin
                        if (oo < cnt) begin e = 1'b1; b = 2'd3; l = x[57:42] + oo; end
                        else if (oo - cnt < m) begin e = 1'b1; b = 2'd3; l = x[41:26] + oo - cnt; end
                    end
                end
                default: ;
            endcase
            rdreq = {e, b, l};
        end
    endfunction

    // Chain state of the current offset (cs_*), see `chain` below.
    reg cs_w0 = 1'b0;
    reg [15:0] cs_c = 0;
    reg [17:0] cs_t = 0;
    reg [5:0] cs_a = 0, cs_b = 0;
    reg [LW-1:0] cs_inp = 0, cs_row = 0, cs_grp = 0, cs_wp = 0;
    wire cur_ch = act && chn(cur);
    // Tiles: max(groups, 1) x outer x inner.
    // (Constant without the second weight register, so synthesis builds no multiplier.)
    wire [17:0] cur_tiles = WB != 2 ? 18'd1
        : (cur[102:97] == 6'd0 ? 6'd1 : cur[102:97]) * cur[61:56] * cur[67:62];
    wire [15:0] cur_m = {4'd0, cur[53:42]};
    // The last offset of a chain: the last tile's stream plus the drain.
    wire ch_done = !cs_w0 && cs_t == cur_tiles - 18'd1 && cs_c == cur_m + R + C - 2;
    assign done = act && (chn(cur) ? ch_done : o + 1'b1 == dur(cur));

    // Early (physical) reads. A chain starting overlapped (ovl_nx) reads like one starting
    // from idle: its offset 0 from head_next.
    wire cont = act && !done;
    wire ovl_nx = OV && cont && start_next;
    wire [127:0] nx = cont && !ovl_nx ? cur : head_next;
    wire [OW-1:0] no = cont && !ovl_nx ? o + 1'b1 : 0;
    // A plain matmul streaming rows with gaps reads its input where the walker below says,
    // through the one early read like every other single read.
    wire wk_plain;
    reg [LW-1:0] ns_wk_line;
    wire [LW+2:0] ereq = !(cont || start_next) ? 0
        : wk_plain ? {1'b1, 2'd1, ns_wk_line} : rdreq(nx, no);
    // The early read registered: the contract cycle's claim (below).
    reg [LW+2:0] ereq_q = 0;

    // Chain sequencing. The state of offset o + 1 (ns_*) follows from that of o, or is the
    // first offset's when the next instruction starts; the early reads of a chain come from
    // it. Offsets 0..R-1 load tile 0 (w0); then period t (p = max(m, R, 2) cycles, the last
    // running on through the drain) streams tile t from input line inp_t + c (c < m) while
    // weight line wp (tile t + 1's line c, c < R) loads. Weight lines are contiguous over
    // the whole chain, so one pointer walks them.
    wire [15:0] nx_m = {4'd0, nx[53:42]};
    wire [15:0] cur_p = cur_m > R ? (cur_m > 2 ? cur_m : 16'd2) : (R > 2 ? R : 16'd2);
    wire [17:0] nx_tiles = WB != 2 ? 18'd1
        : (nx[102:97] == 6'd0 ? 6'd1 : nx[102:97]) * nx[61:56] * nx[67:62];
    wire cs_wrd = cs_w0 || (cs_c < R && cs_t + 18'd1 < cur_tiles);
    // nn_*: the running instruction's own next state; ns_*: the state registered, which is
    // the next instruction's first when it starts overlapped.
    reg nn_w0;
    reg [15:0] nn_c;
    reg [17:0] nn_t;
    reg [5:0] nn_a, nn_b;
    reg [LW-1:0] nn_inp, nn_row, nn_grp, nn_wp;
    always @(*) begin
        nn_w0 = cs_w0; nn_c = cs_c + 16'd1; nn_t = cs_t; nn_a = cs_a; nn_b = cs_b;
        nn_inp = cs_inp; nn_row = cs_row; nn_grp = cs_grp; nn_wp = cs_wp + (cs_wrd ? 1'b1 : 1'b0);
        if (!cont) begin
            nn_w0 = 1'b1; nn_c = 16'd0; nn_t = 18'd0; nn_a = 6'd0; nn_b = 6'd0;
            nn_inp = head_next[25:10]; nn_row = head_next[25:10]; nn_grp = head_next[25:10];
            nn_wp = head_next[83:68];
        end else if (cs_w0) begin
            if (cs_c == R - 1) begin
                nn_w0 = 1'b0; nn_c = 16'd0; nn_inp = cur[25:10]; nn_row = cur[25:10]; nn_grp = cur[25:10];
            end
        end else if (cs_c == cur_p - 16'd1 && cs_t + 18'd1 < cur_tiles) begin
            nn_c = 16'd0; nn_t = cs_t + 18'd1;
            if (cs_b + 6'd1 < cur[67:62]) begin
                nn_b = cs_b + 6'd1; nn_inp = cs_inp + 1'b1;
            end else if (cs_a + 6'd1 < cur[61:56]) begin
                nn_b = 6'd0; nn_a = cs_a + 6'd1;
                nn_row = cs_row + cur[96:84]; nn_inp = cs_row + cur[96:84];
            end else begin
                nn_b = 6'd0; nn_a = 6'd0;
                nn_grp = cs_grp + cur[112:103]; nn_row = cs_grp + cur[112:103];
                nn_inp = cs_grp + cur[112:103];
            end
        end
        // Without chains the state stays 0: synthesis then drops it (registers that only
        // feed themselves would survive, and with them the tile-count multipliers).
        if (WB != 2) begin
            nn_w0 = 1'b0; nn_c = 16'd0; nn_t = 18'd0; nn_a = 6'd0; nn_b = 6'd0;
            nn_inp = 0; nn_row = 0; nn_grp = 0; nn_wp = 0;
        end
    end
    wire ns_w0 = ovl_nx ? 1'b1 : nn_w0;
    wire [15:0] ns_c = ovl_nx ? 16'd0 : nn_c;
    wire [17:0] ns_t = ovl_nx ? 18'd0 : nn_t;
    wire [5:0] ns_a = ovl_nx ? 6'd0 : nn_a, ns_b = ovl_nx ? 6'd0 : nn_b;
    wire [LW-1:0] ns_inp = ovl_nx ? head_next[25:10] : nn_inp;
    wire [LW-1:0] ns_row = ovl_nx ? head_next[25:10] : nn_row;
    wire [LW-1:0] ns_grp = ovl_nx ? head_next[25:10] : nn_grp;
    wire [LW-1:0] ns_wp = ovl_nx ? head_next[83:68] : nn_wp;
    // Overlap windows (`Machine::overlap_head`): the running chain is in its last tile, at or
    // past offset tiles x period (nn_c + R >= p there) and before its last cycle, and the
    // head may follow it. Decided a cycle ahead on the next state (`ovl_next`, for the
    // controller's `c_start_next`) and registered for the cycle itself (`ovl`): by then the
    // sequencer state already holds the starting chain's first offset.
    assign ovl_next = OV && cont && chn(cur) && !nn_w0 && nn_t + 18'd1 == cur_tiles
        && nn_c + R >= cur_p && nn_c != cur_m + R + C - 2 && ov_ok(cur, head_next);
    reg ovl_q = 1'b0;
    always @(posedge clock) ovl_q <= !rst && ovl_next;
    assign ovl = ovl_q;
    // The drained chain's input lines still to read after the next one started (its last
    // tile's; they end before the next chain's first stream line).
    reg [11:0] tl_left = 0;
    wire tl_rd0 = ovl_nx && !nn_w0 && nn_c < cur_m;
    wire tl_rd = OV && (tl_rd0 || tl_left != 12'd0);
    wire nx_ch = (cont || start_next) && chn(nx);
    wire ch_wrd = nx_ch && (ns_w0 || (ns_c < R && ns_t + 18'd1 < nx_tiles));
    // The input walker: the line stream line i reads, in rows of `row` lines with `skip`
    // lines after each; it restarts at each chain tile's first line.
    // Its `row` and `skip` are latched where it restarts, so an overlapped chain's tail
    // walks with the drained chain's.
    reg [LW-1:0] wk_line = 0;
    reg [7:0] wk_col = 0;
    reg [7:0] wk_rw = 0;
    reg [5:0] wk_sk = 0;
    reg ch_ird_q = 1'b0;
    reg [7:0] ns_wk_col;
    reg [7:0] ns_wk_rw;
    reg [5:0] ns_wk_sk;
    wire [7:0] wk_row = OV ? wk_rw : cur[120:113];
    wire [5:0] wk_skip = OV ? wk_sk : cur[126:121];
    always @(*) begin
        ns_wk_line = wk_line; ns_wk_col = wk_col; ns_wk_rw = wk_rw; ns_wk_sk = wk_sk;
        if (!cont) begin
            ns_wk_line = head_next[25:10]; ns_wk_col = 8'd0;
            ns_wk_rw = head_next[120:113]; ns_wk_sk = head_next[126:121];
        end else if (ovl_nx ? !nn_w0 && nn_c == 16'd0 : nx_ch && !ns_w0 && ns_c == 16'd0) begin
            // (When the next chain starts overlapped, the running one's last tile may start
            // streaming in the same cycle: its tail restarts the walker.)
            ns_wk_line = ovl_nx ? nn_inp : ns_inp; ns_wk_col = 8'd0;
            ns_wk_rw = ovl_nx ? cur[120:113] : nx[120:113];
            ns_wk_sk = ovl_nx ? cur[126:121] : nx[126:121];
        end else if (ch_ird_q || (ereq_q[LW+2] && ereq_q[LW+1:LW] == 2'd1)) begin
            if (wk_row != 8'd0 && wk_col + 8'd1 == wk_row) begin
                ns_wk_col = 8'd0; ns_wk_line = wk_line + wk_skip + 1'b1;
            end else begin
                ns_wk_col = wk_col + 8'd1; ns_wk_line = wk_line + 1'b1;
            end
        end
    end
    wire nx_wk = (cont || start_next) && wk_use(nx);
    // Chains read input and weights in the same cycle: their input reads go beside `ereq`.
    wire ch_ird = (nx_ch && !ns_w0 && ns_c < nx_m) || tl_rd;
    assign wk_plain = nx_wk && !nx_ch && no < nx_m;
    // Bank bookkeeping: cb holds the bank of the loaded tile; `ldw` loads the other one, a
    // chain's tile t loads and streams bank cb ^ (t even). cbn is cb after this cycle.
    reg cb = 1'b0;
    wire cbn = WB == 2 && (done && op == 6'd3 ? !cb
        : (done || ovl_nx) && chn(cur) ? cb ^ cur_tiles[0] : cb);
    // Accumulating matmul: old line acc + i read at i + D - 2.
    wire [OW-1:0] mm_m = {4'd0, cur[53:42]};
    // Fields used only from offset 1 on come from `ir` (equal to `cur` there): a register,
    // not the start multiplexer, drives their wide fan-out (write data selects, PPU lanes).
    // The accumulating read starts at D - 2, offset 0 only on a 1 x 1 array.
    wire [127:0] late = D > 2 ? ir : cur;
    // `bias` without `accumulate`: the first tile reads the bias row acc - 1 instead.
    wire late_bias = WK && late[127] && !late[54];
    wire mm_acc_rd = act && op == 6'd4 && !chn(cur) && (late[54] || late_bias) && o >= D - 2 && o - (D - 2) < mm_m;
    // A chain's accumulating read: one cycle before the array's result (`pre_valid`), line
    // acc + (results so far mod m); every tile after the first accumulates.
    // The fields come from the result side's registers (rs_*): the instruction whose results
    // leave the array, which after an overlapped start is the older one until its last.
    wire arr_pre;
    reg [11:0] ch_rc = 0;
    reg ch_later = 1'b0;
    reg [LW-1:0] rs_acc = 0, pd_acc = 0;
    reg [11:0] rs_m = 0, pd_m = 0;
    reg [17:0] rs_tiles = 0, pd_tiles = 0, rs_t = 0;
    reg rs_accum = 1'b0, rs_bias = 1'b0, pd_accum = 1'b0, pd_bias = 1'b0, pd_v = 1'b0;
    wire ch_bias = WK && rs_bias && !rs_accum && !ch_later;
    wire ch_pre = cur_ch && arr_pre;
    wire ch_acc_rd = ch_pre && (rs_accum || ch_bias || ch_later);
    wire [LW-1:0] ch_acc_line = ch_bias ? rs_acc - 1'b1 : rs_acc + ch_rc;
    wire ch_wrap = ch_rc + 12'd1 == rs_m;
    // The last result of an instruction with a newer one waiting (or starting in this very
    // cycle, the last an overlapped start may take): switch to the newer.
    wire ov_st = OV && start && active;
    wire rs_sw = OV && ch_pre && ch_wrap && rs_t + 18'd1 == rs_tiles && (pd_v || ov_st);
    wire [LW-1:0] mm_acc_line = late_bias ? late[41:26] - 1'b1 : late[41:26] + o - (D - 2);
    // Whether a read request {en, buf, line} reads buffer b (1 inp, 2 wgt, 3 acc).
    function reads(input [LW+2:0] q, input [1:0] b);
        reads = q[LW+2] && q[LW+1:LW] == b;
    endfunction
    assign inp_ren = reads(ereq, 2'd1) || ch_ird;
    assign wgt_ren = reads(ereq, 2'd2) || ch_wrd;
    assign acc_ren = reads(ereq, 2'd3) || mm_acc_rd || ch_acc_rd;
    assign inp_raddr = ch_ird ? ns_wk_line : ereq[LW-1:0];
    assign wgt_raddr = ch_wrd ? ns_wp : ereq[LW-1:0];
    assign acc_raddr = mm_acc_rd ? mm_acc_line : ch_acc_rd ? ch_acc_line : ereq[LW-1:0];

    // Contract claims of this cycle. The claim of offset o is the early read issued for it
    // a cycle before (start_next is exact: the early reads already rely on it), so it is
    // that request registered rather than the instruction decoded a second time.
    reg ch_wrd_q = 1'b0;
    reg [LW-1:0] ch_iline_q = 0, ch_wline_q = 0;
    always @(posedge clock) begin
        ereq_q <= rst ? 0 : ereq;
        ch_ird_q <= !rst && ch_ird;
        ch_wrd_q <= !rst && ch_wrd;
        ch_iline_q <= ns_wk_line;
        ch_wline_q <= ns_wp;
    end
    wire [LW+2:0] creq = act ? ereq_q : 0;
    wire cl_ich = act && ch_ird_q, cl_wch = act && ch_wrd_q;
    assign cl_inp = reads(creq, 2'd1) || cl_ich;
    assign cl_wgt = reads(creq, 2'd2) || cl_wch;
    assign cl_acc = reads(creq, 2'd3) || mm_acc_rd || ch_acc_rd;
    assign cl_inp_line = cl_ich ? ch_iline_q : creq[LW-1:0];
    assign cl_wgt_line = cl_wch ? ch_wline_q : creq[LW-1:0];
    assign cl_acc_line = mm_acc_rd ? mm_acc_line : ch_acc_rd ? ch_acc_line : creq[LW-1:0];

    // Array. Its mode input goes with each line (the array passes it from PE to PE); it is
    // decoded a cycle early from the instruction the early reads use, so it leaves a
    // register rather than the controller's instruction multiplexer.
    reg bin_q = 1'b0;
    always @(posedge clock) bin_q <= BIN && !rst && (cont || start_next) && nx[5:0] == 6'd4 && nx[55];
    // The banks and a tile's first weight line, decoded with the early reads (WB = 2).
    wire nx_ldw = (cont || start_next) && nx[5:0] == 6'd3;
    reg ib_q = 1'b0, wf_q = 1'b0, wb_q = 1'b0;
    always @(posedge clock) begin
        // (The drained chain's tail streams its last tile, the loaded one: bank cbn.)
        ib_q <= WB == 2 && (tl_rd ? cbn : nx_ch ? cbn ^ !ns_t[0] : cbn);
        wf_q <= WB == 2 && !rst && ((nx_ldw && no == 0) || (ch_wrd && ns_c == 16'd0));
        wb_q <= WB == 2 && (nx_ldw || ns_w0 ? !cbn : cbn ^ ns_t[0]);
    end
    wire [32*C-1:0] arr_out;
    wire arr_valid;
    systole_array_flat arr (
        .clock(clock),
        .a_in(inp_rdata), .in_valid((act && op == 6'd4 && !chn(cur) && o < mm_m) || cl_ich),
        .in_bank(ib_q),
        .w_in(wgt_rdata), .w_load(act && op == 6'd3), .w_first(act && wf_q), .w_bank(wb_q),
        .binary(bin_q),
        .acc_out(arr_out), .out_valid(arr_valid), .pre_valid(arr_pre)
    );

    // PPU lanes.
    wire is_alu = INT && act && op == 6'd5;
    wire is_req = INT && act && op == 6'd6;
    wire [OW-1:0] alu_m = {4'd0, cur[80:69]};
    wire alu_bc = cur[68:65] == 4'd0;
    wire [OW-1:0] rq_m = {4'd0, cur[69:58]};
    wire lane_alu = is_alu && (alu_bc ? (o >= 1 && o <= alu_m) : (o[0] && (o >> 1) < alu_m));
    wire lane_req = is_req && o >= 2 && o - 2 < rq_m;
    // Operand selects and lane settings matter only while a lane is valid (offset 1 on).
    wire ir_req = ir[5:0] == 6'd6;
    wire ir_bc = ir[68:65] == 4'd0;
    wire [32*C-1:0] lane_a = (ir[5:0] == 6'd5 && !ir_bc) ? breg : acc_rdata;
    wire [32*C-1:0] lane_b = ir_req ? mreg : (ir_bc ? breg : acc_rdata);
    // Requantization settings, shared by the integer and the binary32 lanes.
    wire [1:0] rq_round = ir[104:103];
    wire rq_unsigned = ir[102];
    wire [31:0] rq_zp = {{16{ir[85]}}, ir[85:70]};
    wire [7:0] rq_lo = ir[93:86], rq_hi = ir[101:94];
    wire [32*C-1:0] ppu_acc;
    wire [8*C-1:0] ppu_byte;
    wire [C-1:0] ppu_acc_valid, ppu_byte_valid;
    genvar l;
    generate for (l = 0; l < C; l = l + 1) begin : lane
        if (!INT) begin : none
            assign ppu_acc[32*l +: 32] = 32'd0;
            assign ppu_byte[8*l +: 8] = 8'd0;
            assign ppu_acc_valid[l] = 1'b0;
            assign ppu_byte_valid[l] = 1'b0;
        end else begin : ilane
        systole_ppu_lane pl (
            .clock(clock), .valid(lane_alu || lane_req), .requant(ir_req),
            .func(ir[12:10]), .round(rq_round), .out_unsigned(rq_unsigned),
            .zp(rq_zp), .lo(rq_lo), .hi(rq_hi),
            .shift(sreg[32*l +: 6]), .a(lane_a[32*l +: 32]), .b(lane_b[32*l +: 32]),
            .acc_out(ppu_acc[32*l +: 32]), .acc_valid(ppu_acc_valid[l]),
            .byte_out(ppu_byte[8*l +: 8]), .byte_valid(ppu_byte_valid[l])
        );
        end
    end endgenerate

    // Binary32 requantizer lanes (`requant fp32`): scale = multiplier line lane.
    wire [8*C-1:0] fpq_byte;
    wire [C-1:0] fpq_valid;
    // (FP32 = 0: no binary32 lanes; the emulator refuses `requant fp32` on such an arch.)
    generate for (l = 0; l < C; l = l + 1) begin : fpq
        if (!FP32) begin : none
            assign fpq_byte[8*l +: 8] = 8'd0;
            assign fpq_valid[l] = 1'b0;
        end else begin : lane
        systole_requant_fp32_lane fl (
            .clock(clock), .valid(lane_req), .acc(acc_rdata[32*l +: 32]), .scale(mreg[32*l +: 32]),
            .round(rq_round), .out_unsigned(rq_unsigned),
            .zp(rq_zp), .lo(rq_lo), .hi(rq_hi),
            .byte_out(fpq_byte[8*l +: 8]), .byte_valid(fpq_valid[l])
        );
    end
    end endgenerate

    // Threshold unit: a binary search, one stage a cycle, then scale and clamp. Search stage
    // s (2^s = 2^(S-1) first) probes 1-based position n + 2^s; the positions it can probe,
    // (2q + 1) 2^s, live in stage s's own memory at q (2^(S-1-s) entries per lane, block or
    // LUT RAM: one read a cycle), so no lane ever compares against more than S thresholds.
    // Loading writes threshold line o (position o + 1) into the one memory that holds it.
    wire is_thr = act && op == 6'd9;
    wire [OW-1:0] th_cnt = {8'd0, cur[65:58]};
    wire [OW-1:0] th_m = {4'd0, cur[77:66]};
    wire th_src = is_thr && o >= th_cnt && o - th_cnt < th_m;
    wire th_ld = is_thr && o < th_cnt;
    wire [7:0] th_p = o[7:0] + 8'd1;
    wire [8*C-1:0] th_nf;
    wire [17*C-1:0] th_sn;
    genvar k;
    generate for (l = 0; l < C; l = l + 1) begin : thl
        wire [31:0] xin = acc_rdata[32*l +: 32];
        // Step k runs search stage S-1-k in cycle T + k (T: the source line's read cycle).
        wire [32*(S+1)-1:0] xs;  // value entering step k
        wire [8*(S+1)-1:0] ns;   // count entering step k
        wire [8*S-1:0] nn;       // count leaving step k
        wire [32*S-1:0] td;      // the threshold step k compares against
        assign xs[31:0] = xin;
        assign ns[7:0] = 8'd0;
        for (k = 0; k < S; k = k + 1) begin : st
            localparam integer SS = S - 1 - k;
            wire [7:0] probe = ns[8*k +: 8] + (8'd1 << SS);
            wire reach = probe <= cur[65:58] && $signed(xs[32*k +: 32]) >= $signed(td[32*k +: 32]);
            assign nn[8*k +: 8] = reach ? probe : ns[8*k +: 8];
            if (k == 0) begin : one
                // One entry, read in the source line's cycle: a register (a block-RAM read
                // issued a cycle early would miss a threshold loaded in the cycle before).
                reg [31:0] r = 32'd0;
                always @(posedge clock)
                    if (th_ld && th_p == (8'd1 << SS)) r <= xin;
                assign td[31:0] = r;
            end else begin : mem
                reg [31:0] m [0:(1 << k)-1];
                reg [31:0] rd = 32'd0;
                always @(posedge clock) begin
                    if (th_ld && th_p[SS:0] == (9'd1 << SS)) m[th_p >> (SS + 1)] <= xin;
                    // Address from the previous step's result, data in this step's cycle.
                    rd <= m[nn[8*(k-1) +: 8] >> (SS + 1)];
                end
                assign td[32*k +: 32] = rd;
            end
            reg [31:0] xr = 32'd0;
            reg [7:0] nr = 8'd0;
            always @(posedge clock) begin
                xr <= xs[32*k +: 32];
                nr <= nn[8*k +: 8];
            end
            assign xs[32*(k+1) +: 32] = xr;
            assign ns[8*(k+1) +: 8] = nr;
        end
        assign th_nf[8*l +: 8] = ns[8*S +: 8];
        // step x count, the count's S bits only (a 1-stage unit's product is then an AND, not
        // a DSP block).
        assign th_sn[17*l +: 17] = {{9{ir[93]}}, ir[93:86]} * {{(17-S){1'b0}}, th_nf[8*l +: S]};
    end endgenerate
    // th_vs[j]: a source line entered the search j + 1 cycles ago.
    reg [S+1:0] th_vs = 0;
    // base + step x count lies in [-32768, 32512] (8-bit base and step, count <= 255): 17
    // bits hold it exactly, and the clamp compares 17 bits.
    reg [17*C-1:0] th_v;
    reg [8*C-1:0] th_b;
    reg [16:0] tv;
    integer lc;
    always @(posedge clock) begin
        th_vs <= {th_vs[S:0], th_src};
        for (lc = 0; lc < C; lc = lc + 1)
            th_v[17*lc +: 17] <= {{9{ir[85]}}, ir[85:78]} + th_sn[17*lc +: 17];
        for (lc = 0; lc < C; lc = lc + 1) begin
            tv = th_v[17*lc +: 17];
            th_b[8*lc +: 8] <= $signed(tv) > 127 ? 8'd127 : $signed(tv) < -128 ? 8'h80 : tv[7:0];
        end
    end

    // Writes.
    wire [32*C-1:0] mm_sum;
    generate for (l = 0; l < C; l = l + 1) begin : acc_add
        assign mm_sum[32*l +: 32] = arr_out[32*l +: 32] + acc_rdata[32*l +: 32];
    end endgenerate
    wire mm_we = act && op == 6'd4 && arr_valid;
    wire alu_we = is_alu && ppu_acc_valid[0];
    assign acc_we = mm_we || alu_we;
    // A chain's write: the line and tile its read (or pre_valid) cycle saw.
    reg [LW-1:0] ch_wl_q = 0;
    reg ch_later_q = 1'b0;
    reg rs_sw_q = 1'b0;
    always @(posedge clock) begin
        if (start && !active) begin
            ch_rc <= 12'd0; ch_later <= 1'b0; rs_t <= 18'd0;
            rs_acc <= insn[41:26]; rs_m <= insn[53:42]; rs_tiles <= cur_tiles;
            rs_accum <= insn[54]; rs_bias <= insn[127];
        end else if (rs_sw) begin
            ch_rc <= 12'd0; ch_later <= 1'b0; rs_t <= 18'd0;
            rs_acc <= pd_v ? pd_acc : insn[41:26]; rs_m <= pd_v ? pd_m : insn[53:42];
            rs_tiles <= pd_v ? pd_tiles : cur_tiles;
            rs_accum <= pd_v ? pd_accum : insn[54]; rs_bias <= pd_v ? pd_bias : insn[127];
        end else if (ch_pre) begin
            ch_rc <= ch_wrap ? 12'd0 : ch_rc + 12'd1;
            if (ch_wrap) begin
                ch_later <= 1'b1; rs_t <= rs_t + 18'd1;
            end
        end
        if (ov_st) begin
            pd_acc <= insn[41:26]; pd_m <= insn[53:42]; pd_tiles <= cur_tiles;
            pd_accum <= insn[54]; pd_bias <= insn[127];
        end
        pd_v <= OV && !rst && (ov_st || pd_v) && !rs_sw;
        // The write of the older chain's last result: its last cycle.
        rs_sw_q <= !rst && rs_sw;
        ch_wl_q <= rs_acc + ch_rc;
        ch_later_q <= ch_later;
    end
    assign dr_done = rs_sw_q;
    wire ch_we = WB == 2 && mm_we && chn(ir);
    // Writes come at offset D - 1 >= 1 (matmul), 3 (alu), 5 (requant) or later (thresh).
    assign acc_waddr = ch_we ? ch_wl_q : (mm_we ? ir[41:26] : ir[28:13]) + wi;
    // The accumulate flag selects 32 write-data bits per lane: one copy of it per lane
    // (ir[54] alone fanned out to all C x 32 selects and crowded the router).
    wire [C-1:0] acc_fl;
    generate for (l = 0; l < C; l = l + 1) begin : accf
        // (An overlapped start leaves it to the older chain's results; the newer one's flag
        // follows from the switched result-side registers the cycle after they end, before
        // its first write.)
        systole_keep_reg #(.W(1)) r (.clock(clock), .en((start && !active || rs_sw_q) && !rst),
            .d(rs_sw_q ? rs_accum || (WK && rs_bias) : insn[54] || (WK && insn[127])), .q(acc_fl[l]));
        assign acc_wdata[32*l +: 32] = mm_we ? (acc_fl[l] || (ch_we && ch_later_q) ? mm_sum[32*l +: 32] : arr_out[32*l +: 32])
            : ppu_acc[32*l +: 32];
    end endgenerate
    wire rq_we = is_req && ppu_byte_valid[0];
    wire th_we = is_thr && th_vs[S+1];
    assign out_we = rq_we || th_we;
    assign out_waddr = ir[25:10] + wi;
    assign out_wdata = rq_we ? (ir[105] ? fpq_byte : ppu_byte) : th_b;

    always @(posedge clock) begin
        if (rst) begin
            active <= 1'b0;
        end else begin
            if (start) ir <= insn;
            active <= cont;
            cb <= cbn;
            cs_w0 <= ns_w0; cs_c <= ns_c; cs_t <= ns_t; cs_a <= ns_a; cs_b <= ns_b;
            cs_inp <= ns_inp; cs_row <= ns_row; cs_grp <= ns_grp; cs_wp <= ns_wp;
            wk_line <= ns_wk_line; wk_col <= ns_wk_col; wk_rw <= ns_wk_rw; wk_sk <= ns_wk_sk;
            tl_left <= !OV ? 12'd0 : tl_rd0 ? cur_m[11:0] - nn_c[11:0] - 12'd1
                : tl_left != 12'd0 ? tl_left - 12'd1 : 12'd0;
            o_q <= o + 1'b1;
            wi_q <= wi + ((acc_we || out_we) ? 1'b1 : 1'b0);
            // (is_alu and is_req are constant 0 without integer lanes: these registers go.)
            if (is_alu && alu_bc && o == 0) breg <= acc_rdata;
            if (is_alu && !alu_bc && !o[0]) breg <= acc_rdata;
            if (is_req && o == 0) mreg <= acc_rdata;
            if (is_req && o == 1) sreg <= acc_rdata;
        end
    end
endmodule
"#;
