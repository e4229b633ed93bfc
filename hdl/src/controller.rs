//! The controller: instruction memory, fetch, decode of the 128-bit ISA word
//! (`systole_arch::isa`), one command queue per unit (`controller.queue_depth` words), the
//! four token counters (`controller.token_depth`), the three unit sequencers (idle / busy /
//! retiring) and `finish`. Twin of `systole_emulator::controller` and of
//! `Machine::step_unit` / `step_controller`; docs/rtl.md describes every rule.
//!
//! Engines see `start[u]` in the first cycle of an instruction (with the queue head on
//! `head`) and answer `eng_done[u]` in its last cycle. `nop` never reaches an engine: its
//! sequencer finishes it in its start cycle. For the compute unit's early block-RAM reads the
//! controller also says whether the compute unit will start an instruction in the next cycle
//! (`c_start_next`) and which (`c_head_next`): the values its registers will hold then.
//!
//! Overlapped chains (`array.chain_overlap`): while the compute engine says the queue head may
//! start overlapped (`c_ovl`), the head starts although the unit is busy; the running
//! instruction moves to the drain slot (`dr`, its flags in `dr_flags`) and retires on
//! `c_dr_done`, pushing its tokens then or, without room, as soon as there is (`dr_ret`). The
//! unit retires in order: the newer instruction pushes only once the drained one has. These
//! are `Machine::step_drain` / `overlap_head`'s rules.
//!
//! Loads ahead (`dram.load_ahead`, LA = 1): the load unit has a drain slot too (`ldr`,
//! `ldr_ret`; the `la` generate block). While the load engine says the running load has issued its requests
//! (`l_ahead`), a load at the queue head starts although the unit is busy; the running one
//! moves to the drain slot and retires on `l_dr_done`, or on `eng_done[0]` when it finishes in
//! that same cycle (`Machine::ahead_head`).
//!
//! Stores ahead (`dram.store_ahead`, SA = 1): the store unit's drain slot (`sdr`, `sdr_ret`;
//! the `sa` generate block). While the store engine says the running store has sent its last
//! beat (`s_ahead`), a store of at least one line at the queue head starts; the running one
//! moves to the drain slot and retires on `s_dr_done`, its acknowledgement, which may come in
//! that same cycle (`Machine::store_ahead_head`).

/// Decoded opcodes (`arch/src/isa.rs`).
pub const OP_LOAD: u32 = 0x01;
pub const OP_STORE: u32 = 0x02;
pub const OP_NOP: u32 = 0x07;
pub const OP_FINISH: u32 = 0x08;

/// The controller module (parameterised Verilog).
pub const VERILOG: &str = r#"
// LA = 0: no loads ahead, and no load drain slot; SA = 0: the same for stores.
module systole_controller #(parameter Q = 4, T = 8, IMEM = 4096, IMEM_INIT = "", LA = 0, SA = 0) (
    input clock, input rst,
    // Instruction writes, byte lanes enabled by imem_wstrb (the board's link writes a byte at
    // a time, the Verilator harness whole words).
    input imem_we, input [31:0] imem_waddr, input [127:0] imem_wdata, input [15:0] imem_wstrb,
    output [2:0] eng_start,
    output [127:0] head0, output [127:0] head1, output [127:0] head2,
    input [2:0] eng_done,
    input c_ovl, input c_ovl_next, input c_dr_done,
    input l_ahead, input l_dr_done,
    input s_ahead, input s_dr_done,
    output c_start_next, output [127:0] c_head_next,
    output reg done = 1'b0, output [63:0] cycles
);
    // The host writes instructions only while the accelerator is held in reset, so a read and
    // a write of one address never meet in a cycle whose read matters: no collision logic
    // (yosys would otherwise keep a 128-bit copy of the write data and a bypass multiplexer).
    (* no_rw_check *)
    reg [127:0] imem [0:IMEM-1];
    // A program baked into the bitstream (`systole fpga build --model`): one 32-digit hex word
    // per instruction.
    generate if (IMEM_INIT != "") begin : baked
        initial $readmemh(IMEM_INIT, imem);
    end endgenerate
    // Counters as wide as their ranges: queue slots 0..Q, tokens 0..T, the program counter up
    // to past the last instruction (a program runs off the end only if it has no `finish`).
    localparam QB = $clog2(Q + 1), TB = $clog2(T + 1), PB = $clog2(IMEM) + 1;
    reg [127:0] ir = 128'd0;
    reg [PB-1:0] pc = 0;
    // Counts until `finish` retires, then holds: the run's cycle count is the counter itself.
    reg [63:0] cycle = 64'd0;
    assign cycles = cycle;
    reg [127:0] q0 [0:Q-1];
    reg [127:0] q1 [0:Q-1];
    reg [127:0] q2 [0:Q-1];
    reg [QB-1:0] rd [0:2];
    reg [QB-1:0] cnt [0:2];
    reg [TB-1:0] tok [0:3];
    reg [2:0] busy = 3'd0, ret = 3'd0;
    reg [3:0] flags [0:2];
    reg [3:0] pend [0:2];
    // The drain slot of the compute unit.
    reg dr = 1'b0, dr_ret = 1'b0;
    reg [3:0] dr_flags = 4'd0, dr_pend = 4'd0;
    integer k;
    initial begin
        for (k = 0; k < 3; k = k + 1) begin rd[k] = 0; cnt[k] = 0; flags[k] = 0; pend[k] = 0; end
        for (k = 0; k < 4; k = k + 1) tok[k] = 0;
        for (k = 0; k < Q; k = k + 1) begin q0[k] = 0; q1[k] = 0; q2[k] = 0; end
    end

    // Token queues: 0 load->compute, 1 compute->load, 2 compute->store, 3 store->compute.
    // Flags: [0] pop_prev, [1] pop_next, [2] push_prev, [3] push_next.
    function [3:0] popmask(input [1:0] u, input [3:0] f);
        case (u)
            2'd0: popmask = {2'b00, f[1], 1'b0};
            2'd1: popmask = {f[1], 2'b00, f[0]};
            default: popmask = {1'b0, f[0], 2'b00};
        endcase
    endfunction
    function [3:0] pushmask(input [1:0] u, input [3:0] f);
        case (u)
            2'd0: pushmask = {3'b000, f[3]};
            2'd1: pushmask = {1'b0, f[3], f[2], 1'b0};
            default: pushmask = {f[2], 3'b000};
        endcase
    endfunction

    wire [5:0] op = ir[5:0];
    wire is_finish = op == 6'd8;
    wire [1:0] unit = op == 6'd1 ? 2'd0 : op == 6'd2 ? 2'd2 : op == 6'd7 ? ir[11:10] : 2'd1;
    wire [127:0] head [0:2];
    assign head[0] = q0[rd[0]];
    assign head[1] = q1[rd[1]];
    assign head[2] = q2[rd[2]];
    assign head0 = head[0];
    assign head1 = head[1];
    assign head2 = head[2];

    wire [3:0] tok_nz, tok_room;
    genvar g;
    generate for (g = 0; g < 4; g = g + 1) begin : tq
        assign tok_nz[g] = tok[g] != 0;
        assign tok_room[g] = tok[g] < T;
    end endgenerate

    reg [2:0] can_start, st, fin, room_ok, do_push, busy_d, ret_d;
    reg ovl_start, dr_fin, dr_room, dr_do_push, dr_d, dr_ret_d;
    reg [3:0] dr_psh;
    // The load unit's drain slot (LA = 1, below): a start ahead, the slot busy or waiting to
    // push, and its push.
    wire ahd_start, ldr, ldr_ret, ldr_do_push;
    wire [3:0] ldr_psh;
    // The store unit's drain slot (SA = 1, below).
    wire sahd_start, sdr, sdr_ret, sdr_do_push;
    wire [3:0] sdr_psh;
    reg [3:0] pm [0:2];
    reg [3:0] psh [0:2];
    reg [TB-1:0] tok_d [0:3];
    reg [QB-1:0] cnt_d [0:2];
    reg [QB-1:0] rd_d [0:2];
    reg disp, fin_ok;
    reg [127:0] head1_d;
    reg [QB-1:0] wr1;
    integer u, q, v;
    // Starts: from registers and the engines' `c_ovl` / `l_ahead` only. With loads ahead
    // (LA = 1) the engines see these wires, so their `done` (which depends on `start`) never
    // feeds back into a start: taken from the `always` block below, which reads `done`, the
    // simulator sees a (false) combinational loop and, with loads ahead, mis-evaluated it (a
    // load never finished). Without loads ahead the engines see the block's copy as they
    // always did: that loop is evaluated correctly (every co-simulation since), and the
    // Verilated model of ulx3s runs a third faster so (0.81 against 0.55 M cycles/s) than
    // without the loop, for reasons of its scheduling that were not found. Same logic.
    wire [3:0] pm_w [0:2];
    wire [2:0] can_w;
    generate for (g = 0; g < 3; g = g + 1) begin : sq
        assign pm_w[g] = popmask(g, head[g][9:6]);
        assign can_w[g] = !done && !rst && !busy[g] && !ret[g] && cnt[g] != 0
            && (pm_w[g] & ~tok_nz) == 4'd0;
    end endgenerate
    wire ovl_w = !done && !rst && busy[1] && c_ovl && !dr && !dr_ret && cnt[1] != 0
        && (pm_w[1] & ~tok_nz) == 4'd0;
    wire [2:0] st_w = can_w | {sahd_start, ovl_w, ahd_start};
    always @(*) begin
        for (v = 0; v < 3; v = v + 1) begin
            pm[v] = pm_w[v];
            can_start[v] = can_w[v];
        end
        ovl_start = ovl_w;
        st = st_w;
        // (The drain slot goes first: the unit's newer instruction retires only after it.)
        dr_fin = dr && c_dr_done;
        dr_psh = dr_ret ? dr_pend : pushmask(2'd1, dr_flags);
        dr_room = (dr_psh & ~tok_room) == 4'd0;
        dr_do_push = (dr_fin || dr_ret) && dr_room;
        dr_d = dr && !dr_fin;
        dr_ret_d = (dr_fin || dr_ret) && !dr_room;
        for (u = 0; u < 3; u = u + 1) begin
            fin[u] = (can_start[u] && head[u][5:0] == 6'd7) ? 1'b1
                : ((can_start[u] || busy[u]) && eng_done[u] && !(u == 0 && ahd_start));
            psh[u] = ret[u] ? pend[u] : pushmask(u[1:0], can_start[u] ? head[u][9:6] : flags[u]);
            room_ok[u] = (psh[u] & ~tok_room) == 4'd0 && !(u == 1 && dr_ret) && !(u == 0 && ldr_ret)
                && !(u == 2 && sdr_ret);
            do_push[u] = (fin[u] || ret[u]) && room_ok[u];
            busy_d[u] = (can_start[u] || busy[u]) && !fin[u];
            ret_d[u] = (fin[u] || ret[u]) && !room_ok[u];
        end
        for (q = 0; q < 4; q = q + 1) begin
            tok_d[q] = tok[q];
            for (u = 0; u < 3; u = u + 1) begin
                if (st[u] && pm[u][q]) tok_d[q] = tok_d[q] - 1'b1;
                if (do_push[u] && psh[u][q]) tok_d[q] = tok_d[q] + 1'b1;
            end
            if (dr_do_push && dr_psh[q]) tok_d[q] = tok_d[q] + 1'b1;
            if (ldr_do_push && ldr_psh[q]) tok_d[q] = tok_d[q] + 1'b1;
            if (sdr_do_push && sdr_psh[q]) tok_d[q] = tok_d[q] + 1'b1;
        end
        disp = !done && !rst && !is_finish && cnt[unit] < Q;
        fin_ok = !done && !rst && is_finish && cnt[0] == 0 && cnt[1] == 0 && cnt[2] == 0
            && busy == 3'd0 && ret == 3'd0 && !dr && !dr_ret && !ldr && !ldr_ret && !sdr && !sdr_ret;
        for (u = 0; u < 3; u = u + 1) begin
            cnt_d[u] = cnt[u] + ((disp && unit == u) ? 1'b1 : 1'b0) - (st[u] ? 1'b1 : 1'b0);
            rd_d[u] = st[u] ? ((rd[u] + 1 == Q) ? 0 : rd[u] + 1'b1) : rd[u];
        end
        wr1 = (rd[1] + cnt[1]) % Q;
        head1_d = (disp && unit == 2'd1 && wr1 == rd_d[1]) ? ir : q1[rd_d[1]];
    end
    // (A chain never overlaps a `nop`: c_ovl needs a chain at the head.)
    assign eng_start = (LA != 0 || SA != 0 ? st_w : st) & {head[2][5:0] != 6'd7, head[1][5:0] != 6'd7, head[0][5:0] != 6'd7};
    assign c_head_next = head1_d;
    wire tok_next_ok = (popmask(2'd1, head1_d[9:6])
        & ~{tok_d[3] != 0, tok_d[2] != 0, tok_d[1] != 0, tok_d[0] != 0}) == 4'd0;
    assign c_start_next = cnt_d[1] != 0 && !done && !fin_ok && tok_next_ok
        && ((!busy_d[1] && !ret_d[1]) || (busy_d[1] && c_ovl_next && !dr_d && !dr_ret_d));

    wire [PB-1:0] raddr = rst ? 0 : (disp ? pc + 1'b1 : pc);
    always @(posedge clock) begin
        for (k = 0; k < 16; k = k + 1)
            if (imem_we && imem_wstrb[k]) imem[imem_waddr][8*k +: 8] <= imem_wdata[8*k +: 8];
        ir <= imem[raddr];
        if (rst) begin
            pc <= 0; cycle <= 0; done <= 0; busy <= 0; ret <= 0; dr <= 0; dr_ret <= 0;
            for (k = 0; k < 3; k = k + 1) begin rd[k] <= 0; cnt[k] <= 0; flags[k] <= 0; pend[k] <= 0; end
            for (k = 0; k < 4; k = k + 1) tok[k] <= 0;
        end else begin
            if (!done) cycle <= cycle + 64'd1;
            if (disp) pc <= pc + 1'b1;
            if (fin_ok) done <= 1'b1;
            if (disp && unit == 2'd0) q0[(rd[0] + cnt[0]) % Q] <= ir;
            if (disp && unit == 2'd1) q1[(rd[1] + cnt[1]) % Q] <= ir;
            if (disp && unit == 2'd2) q2[(rd[2] + cnt[2]) % Q] <= ir;
            for (k = 0; k < 3; k = k + 1) begin
                cnt[k] <= cnt_d[k];
                rd[k] <= rd_d[k];
                if (st[k]) flags[k] <= head[k][9:6];
                if (fin[k] && !room_ok[k]) pend[k] <= psh[k];
            end
            busy <= busy_d;
            ret <= ret_d;
            dr <= dr_d || ovl_start;
            if (ovl_start) dr_flags <= flags[1];
            dr_ret <= dr_ret_d;
            if (dr_fin && !dr_room) dr_pend <= dr_psh;
            for (k = 0; k < 4; k = k + 1) tok[k] <= tok_d[k];
        end
    end

    // The load unit's drain slot, built only with LA = 1 (with LA = 0 its signals are
    // constants, and Verilator's model of the controller is the one without it).
    generate if (LA != 0) begin : la
        reg busy_q = 1'b0, ret_q = 1'b0;
        reg [3:0] flags_q = 4'd0, pend_q = 4'd0;
        assign ahd_start = !done && !rst && busy[0] && l_ahead && !busy_q && !ret_q
            && cnt[0] != 0 && head[0][5:0] == 6'd1
            && (popmask(2'd0, head[0][9:6]) & ~tok_nz) == 4'd0;
        // The older load finishes in the drain slot, or in the cycle it moves there.
        wire fin_l = (busy_q && l_dr_done) || (ahd_start && eng_done[0]);
        assign ldr_psh = ret_q ? pend_q : pushmask(2'd0, busy_q ? flags_q : flags[0]);
        wire room_l = (ldr_psh & ~tok_room) == 4'd0;
        assign ldr_do_push = (fin_l || ret_q) && room_l;
        assign ldr = busy_q;
        assign ldr_ret = ret_q;
        always @(posedge clock) begin
            if (rst) begin
                busy_q <= 1'b0; ret_q <= 1'b0;
            end else begin
                busy_q <= (busy_q || ahd_start) && !fin_l;
                if (ahd_start) flags_q <= flags[0];
                ret_q <= (fin_l || ret_q) && !room_l;
                if (fin_l && !room_l) pend_q <= ldr_psh;
            end
        end
    end else begin : no_la
        assign ahd_start = 1'b0;
        assign ldr_psh = 4'd0;
        assign ldr_do_push = 1'b0;
        assign ldr = 1'b0;
        assign ldr_ret = 1'b0;
    end endgenerate

    // The store unit's drain slot, built only with SA = 1. A store of no lines never starts
    // ahead (it would end, and retire, before the older one): rows and cols of the head.
    generate if (SA != 0) begin : sa
        reg busy_q = 1'b0, ret_q = 1'b0;
        reg [3:0] flags_q = 4'd0, pend_q = 4'd0;
        assign sahd_start = !done && !rst && busy[2] && s_ahead && !busy_q && !ret_q
            && cnt[2] != 0 && head[2][5:0] == 6'd2
            && head[2][68:59] != 10'd0 && head[2][78:69] != 10'd0
            && (popmask(2'd2, head[2][9:6]) & ~tok_nz) == 4'd0;
        // The older store finishes in the drain slot, or in the cycle it moves there.
        wire fin_s = (busy_q || sahd_start) && s_dr_done;
        assign sdr_psh = ret_q ? pend_q : pushmask(2'd2, busy_q ? flags_q : flags[2]);
        wire room_s = (sdr_psh & ~tok_room) == 4'd0;
        assign sdr_do_push = (fin_s || ret_q) && room_s;
        assign sdr = busy_q;
        assign sdr_ret = ret_q;
        always @(posedge clock) begin
            if (rst) begin
                busy_q <= 1'b0; ret_q <= 1'b0;
            end else begin
                busy_q <= (busy_q || sahd_start) && !fin_s;
                if (sahd_start) flags_q <= flags[2];
                ret_q <= (fin_s || ret_q) && !room_s;
                if (fin_s && !room_s) pend_q <= sdr_psh;
            end
        end
    end else begin : no_sa
        assign sahd_start = 1'b0;
        assign sdr_psh = 4'd0;
        assign sdr_do_push = 1'b0;
        assign sdr = 1'b0;
        assign sdr_ret = 1'b0;
    end endgenerate
endmodule
"#;
