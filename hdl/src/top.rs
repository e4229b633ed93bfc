//! The top level: controller, load and store engines, compute sequencer (array + PPU lanes)
//! and the four buffers, with the per-bank port arbitration (compute > load > store) of
//! `systole_emulator::buffer` and the external memory port of docs/rtl.md. Twin of
//! `systole_emulator::Machine`: for every program the emulator accepts, the same DRAM bytes
//! after the same number of cycles (`tests/top.rs` co-simulates it in Verilator).
//!
//! `write_rtl` writes every module for one arch config into a directory: the rust-hdl blocks
//! (`systole_array.v`, `systole_ppu_lane.v`, via `write_verilog`), the parameterised control
//! and datapath modules, the generated `systole_array_flat.v` and `systole_top.v`, and the
//! Verilator harness (`harness.cpp`, see `cosim.rs`).

use crate::verilog::{write_verilog, Error, Manifest};
use std::fmt::Write;
use std::path::Path;
use systole_arch::config::{index_bits, Ports};
use systole_arch::{ArchConfig, BufferKind};

fn write(dir: &Path, file: &str, text: &str) -> Result<(), Error> {
    let path = dir.join(file);
    std::fs::write(&path, text).map_err(|err| Error::Io {
        path: path.display().to_string(),
        err,
    })
}

/// The array with packed line ports (rust-hdl names every lane port `name$i`). Both arrays
/// get the same ports: the one-register array ignores the bank inputs and never raises
/// `pre_valid` (the compute sequencer uses it for chains only); the banked one ignores
/// `w_load` (its weights pass by every cycle and are captured on `w_first`).
pub fn array_flat_verilog(rows: usize, cols: usize, banked: bool) -> String {
    let mut v = String::from("module systole_array_flat (\n    input clock,\n");
    let _ = writeln!(
        v,
        "    input [{}:0] a_in, input in_valid, input in_bank,",
        8 * rows - 1
    );
    let _ = writeln!(
        v,
        "    input [{}:0] w_in, input w_load, input w_first, input w_bank, input binary,",
        8 * cols - 1
    );
    let _ = writeln!(
        v,
        "    output [{}:0] acc_out, output out_valid, output pre_valid\n);",
        32 * cols - 1
    );
    if banked {
        v.push_str("    systole_array a (\n        .clock(clock), .in_valid(in_valid), .in_bank(in_bank), .w_first(w_first), .w_bank(w_bank), .binary(binary), .out_valid(out_valid), .pre_valid(pre_valid)");
    } else {
        v.push_str("    assign pre_valid = 1'b0;\n");
        v.push_str("    systole_array a (\n        .clock(clock), .in_valid(in_valid), .w_load(w_load), .binary(binary), .out_valid(out_valid)");
    }
    for k in 0..rows {
        let _ = write!(v, ",\n        .a_in${k}(a_in[{}:{}])", 8 * k + 7, 8 * k);
    }
    for n in 0..cols {
        let _ = write!(v, ",\n        .w_in${n}(w_in[{}:{}])", 8 * n + 7, 8 * n);
    }
    for n in 0..cols {
        let _ = write!(
            v,
            ",\n        .acc_out${n}(acc_out[{}:{}])",
            32 * n + 31,
            32 * n
        );
    }
    v.push_str("\n    );\nendmodule\n");
    v
}

/// The top module for `arch`.
pub fn top_verilog(arch: &ArchConfig) -> String {
    let (r, c) = (arch.array.rows, arch.array.cols);
    let b = arch.dram.bytes_per_cycle;
    let lpb = |k: BufferKind| arch.lines_per_bank(k);
    let banks = |k: BufferKind| arch.buffer(k).banks;
    let one_rw = |k: BufferKind| (arch.buffer(k).ports == Ports::OneRw) as u32;
    let ctl = &arch.controller;
    format!(
        r#"
module systole_top #(parameter IMEM_INIT = "") (
    input clock, input rst,
    input imem_we, input [31:0] imem_waddr, input [127:0] imem_wdata, input [15:0] imem_wstrb,
    output rreq_valid, output [31:0] rreq_addr, output [31:0] rreq_beats,
    input rresp_valid, input [{bw}:0] rresp_data, output rresp_ready,
    output wvalid, output [31:0] waddr, output [{bw}:0] wdata, output [{sw}:0] wstrb,
    output wlast,
    input wack,
    output done, output [63:0] cycles
);
    localparam R = {r}, C = {c}, B = {b};
    localparam LPB_I = {lpb_i}, LPB_W = {lpb_w}, LPB_A = {lpb_a}, LPB_O = {lpb_o};
    localparam RW_I = {rw_i}, RW_W = {rw_w}, RW_A = {rw_a}, RW_O = {rw_o};

    wire [2:0] eng_start;
    wire [127:0] head0, head1, head2, c_head_next;
    wire c_start_next, c_ovl, c_ovl_next, c_dr_done, l_ahead, l_dr_done, s_ahead, s_dr_done;
    wire ld_done, cp_done, st_done;
    systole_controller #(.Q({q}), .T({t}), .IMEM({imem}), .IMEM_INIT(IMEM_INIT), .LA({la}), .SA({sa})) ctl (
        .clock(clock), .rst(rst),
        .imem_we(imem_we), .imem_waddr(imem_waddr), .imem_wdata(imem_wdata), .imem_wstrb(imem_wstrb),
        .eng_start(eng_start), .head0(head0), .head1(head1), .head2(head2),
        .eng_done({{st_done, cp_done, ld_done}}),
        .c_ovl(c_ovl), .c_ovl_next(c_ovl_next), .c_dr_done(c_dr_done),
        .l_ahead(l_ahead), .l_dr_done(l_dr_done), .s_ahead(s_ahead), .s_dr_done(s_dr_done),
        .c_start_next(c_start_next), .c_head_next(c_head_next),
        .done(done), .cycles(cycles)
    );

    // Compute.
    wire inp_ren, wgt_ren, acc_ren;
    wire [15:0] inp_raddr, wgt_raddr, acc_raddr;
    wire [8*R-1:0] inp_rdata;
    wire [8*C-1:0] wgt_rdata;
    wire [32*C-1:0] acc_rdata;
    wire acc_we, out_we;
    wire [15:0] acc_waddr, out_waddr;
    wire [32*C-1:0] acc_wdata;
    wire [8*C-1:0] out_wdata;
    wire cl_inp, cl_wgt, cl_acc;
    wire [15:0] cl_inp_line, cl_wgt_line, cl_acc_line;
    systole_compute #(.R(R), .C(C), .S({stages}), .FP32({fp32}), .INT({int}), .BIN({bin}), .OW({ow}), .LW({lw}), .WB({wb}), .WK({wk}), .OV({ov})) cp (
        .clock(clock), .rst(rst), .start(eng_start[1]), .insn(head1),
        .start_next(c_start_next), .head_next(c_head_next), .done(cp_done),
        .ovl(c_ovl), .ovl_next(c_ovl_next), .dr_done(c_dr_done),
        .inp_ren(inp_ren), .inp_raddr(inp_raddr), .inp_rdata(inp_rdata),
        .wgt_ren(wgt_ren), .wgt_raddr(wgt_raddr), .wgt_rdata(wgt_rdata),
        .acc_ren(acc_ren), .acc_raddr(acc_raddr), .acc_rdata(acc_rdata),
        .acc_we(acc_we), .acc_waddr(acc_waddr), .acc_wdata(acc_wdata),
        .out_we(out_we), .out_waddr(out_waddr), .out_wdata(out_wdata),
        .cl_inp(cl_inp), .cl_inp_line(cl_inp_line), .cl_wgt(cl_wgt), .cl_wgt_line(cl_wgt_line),
        .cl_acc(cl_acc), .cl_acc_line(cl_acc_line)
    );

    // Load.
    wire l_wreq, l_grant;
    wire [1:0] l_buf;
    wire [15:0] l_line;
    wire [8*R-1:0] l_inp;
    wire [8*C-1:0] l_wgt;
    wire [32*C-1:0] l_acc;
    systole_load #(.R(R), .C(C), .B(B), .DA({da}), .LA({la})) ld (
        .clock(clock), .rst(rst), .start(eng_start[0]), .insn(head0), .done(ld_done),
        .ahead(l_ahead), .dr_done(l_dr_done),
        .rreq_valid(rreq_valid), .rreq_addr(rreq_addr), .rreq_beats(rreq_beats),
        .rresp_valid(rresp_valid), .rresp_data(rresp_data), .rresp_ready(rresp_ready),
        .wreq(l_wreq), .wbuf(l_buf), .wline(l_line),
        .wdata_inp(l_inp), .wdata_wgt(l_wgt), .wdata_acc(l_acc), .wgrant(l_grant)
    );

    // Store.
    wire s_req, s_grant, s_buf;
    wire [15:0] s_line;
    wire [8*C-1:0] out_sdata;
    wire [32*C-1:0] acc_sdata;
    systole_store #(.C(C), .B(B), .XW({xw}), .DA({da}), .BIN({bin}), .SQ({sq}), .FP32({fp32}), .SA({sa})) st (
        .clock(clock), .rst(rst), .start(eng_start[2]), .insn(head2), .done(st_done),
        .ahead(s_ahead), .dr_done(s_dr_done),
        .sreq(s_req), .sbuf(s_buf), .sline(s_line), .sgrant(s_grant),
        .out_rdata(out_sdata), .acc_rdata(acc_sdata),
        .wvalid(wvalid), .waddr(waddr), .wdata(wdata), .wstrb(wstrb), .wlast(wlast),
        .wack(wack)
    );

    // Port arbitration on contract cycles: compute > load > store, per bank and port.
    wire l_is_i = l_buf == 2'd0, l_is_w = l_buf == 2'd1, l_is_a = l_buf[1];
    wire l_conf_i = l_is_i && RW_I != 0 && cl_inp && (cl_inp_line / LPB_I) == (l_line / LPB_I);
    wire l_conf_w = l_is_w && RW_W != 0 && cl_wgt && (cl_wgt_line / LPB_W) == (l_line / LPB_W);
    wire l_conf_a = l_is_a && ((acc_we && (acc_waddr / LPB_A) == (l_line / LPB_A))
        || (RW_A != 0 && cl_acc && (cl_acc_line / LPB_A) == (l_line / LPB_A)));
    assign l_grant = !(l_conf_i || l_conf_w || l_conf_a);
    wire l_wr = l_wreq && l_grant;
    wire s_conf_o = !s_buf && RW_O != 0 && out_we && (out_waddr / LPB_O) == (s_line / LPB_O);
    wire s_conf_a = s_buf && ((cl_acc && (cl_acc_line / LPB_A) == (s_line / LPB_A))
        || (RW_A != 0 && ((acc_we && (acc_waddr / LPB_A) == (s_line / LPB_A))
            || (l_wr && l_is_a && (l_line / LPB_A) == (s_line / LPB_A)))));
    assign s_grant = !(s_conf_o || s_conf_a);
    wire s_rd = s_req && s_grant;

    systole_buffer #(.W(8*R), .LPB(LPB_I), .BANKS({bk_i})) b_inp (
        .clock(clock),
        .c_ren(inp_ren), .c_raddr(inp_raddr), .c_rdata(inp_rdata),
        .s_ren(1'b0), .s_raddr(16'd0), .s_rdata(),
        .c_we(1'b0), .c_waddr(16'd0), .c_wdata({{(8*R){{1'b0}}}}),
        .l_we(l_wr && l_is_i), .l_waddr(l_line), .l_wdata(l_inp)
    );
    systole_buffer #(.W(8*C), .LPB(LPB_W), .BANKS({bk_w})) b_wgt (
        .clock(clock),
        .c_ren(wgt_ren), .c_raddr(wgt_raddr), .c_rdata(wgt_rdata),
        .s_ren(1'b0), .s_raddr(16'd0), .s_rdata(),
        .c_we(1'b0), .c_waddr(16'd0), .c_wdata({{(8*C){{1'b0}}}}),
        .l_we(l_wr && l_is_w), .l_waddr(l_line), .l_wdata(l_wgt)
    );
    systole_buffer #(.W(32*C), .LPB(LPB_A), .BANKS({bk_a})) b_acc (
        .clock(clock),
        .c_ren(acc_ren), .c_raddr(acc_raddr), .c_rdata(acc_rdata),
        .s_ren(s_rd && s_buf), .s_raddr(s_line), .s_rdata(acc_sdata),
        .c_we(acc_we), .c_waddr(acc_waddr), .c_wdata(acc_wdata),
        .l_we(l_wr && l_is_a), .l_waddr(l_line), .l_wdata(l_acc)
    );
    systole_buffer #(.W(8*C), .LPB(LPB_O), .BANKS({bk_o})) b_out (
        .clock(clock),
        .c_ren(1'b0), .c_raddr(16'd0), .c_rdata(),
        .s_ren(s_rd && !s_buf), .s_raddr(s_line), .s_rdata(out_sdata),
        .c_we(out_we), .c_waddr(out_waddr), .c_wdata(out_wdata),
        .l_we(1'b0), .l_waddr(16'd0), .l_wdata({{(8*C){{1'b0}}}})
    );
endmodule
"#,
        bw = 8 * b - 1,
        sw = b - 1,
        lpb_i = lpb(BufferKind::Input),
        lpb_w = lpb(BufferKind::Weight),
        lpb_a = lpb(BufferKind::Accumulator),
        lpb_o = lpb(BufferKind::Output),
        rw_i = one_rw(BufferKind::Input),
        rw_w = one_rw(BufferKind::Weight),
        rw_a = one_rw(BufferKind::Accumulator),
        rw_o = one_rw(BufferKind::Output),
        bk_i = banks(BufferKind::Input),
        bk_w = banks(BufferKind::Weight),
        bk_a = banks(BufferKind::Accumulator),
        bk_o = banks(BufferKind::Output),
        q = ctl.queue_depth,
        t = ctl.token_depth,
        imem = ctl.imem_instructions,
        stages = arch.ppu.threshold_stages(),
        xw = arch.array.xnor_bits,
        fp32 = arch.ppu.fp32_requant as u32,
        int = arch.ppu.integer_lanes as u32,
        bin = arch.supports(systole_arch::config::Precision::Binary) as u32,
        ow = offset_bits(arch),
        lw = arch.line_bits(),
        da = arch.dram_addr_bits(),
        wb = arch.array.weight_banks,
        wk = arch.array.input_walker as u32,
        ov = arch.array.chain_overlap as u32,
        la = arch.dram.load_ahead as u32,
        sq = arch.ppu.store_requant as u32,
        sa = arch.dram.store_ahead as u32,
    )
}

/// Bits of the compute unit's instruction offsets: one more than the longest instruction
/// needs. No instruction's `m` exceeds the lines of a buffer it touches (the emulator refuses
/// it) nor 4,095 (its field), so `alu` over every line (2m + 2 cycles) or `thresh` with 255
/// thresholds (255 + m + S + 2) is the longest.
pub fn offset_bits(arch: &ArchConfig) -> u32 {
    let lines = arch.max_lines().min(4095) as u64;
    let (r, c) = (arch.array.rows as u64, arch.array.cols as u64);
    let s = arch.ppu.threshold_stages() as u64;
    let longest = [
        r,
        lines + r + c - 1,
        2 * lines + 2,
        lines + 5,
        255 + lines + s + 2,
    ]
    .into_iter()
    .max()
    .unwrap();
    index_bits(longest + 1).min(16)
}

/// The Verilog files of the whole accelerator, in compile order (the top last).
pub const RTL_FILES: &[&str] = &[
    "systole_array.v",
    "systole_ppu_lane.v",
    "systole_array_flat.v",
    "systole_requant_fp32.v",
    "systole_buffer.v",
    "systole_controller.v",
    "systole_dma.v",
    "systole_compute.v",
    "systole_top.v",
];

/// Writes the whole accelerator's Verilog for `arch` into `dir` (plus the block manifest of
/// `write_verilog`).
pub fn write_rtl(arch: &ArchConfig, dir: &Path) -> Result<Manifest, Error> {
    let manifest = write_verilog(arch, dir)?;
    let (r, c) = (arch.array.rows as usize, arch.array.cols as usize);
    write(
        dir,
        "systole_array_flat.v",
        &array_flat_verilog(r, c, arch.array.weight_banks == 2),
    )?;
    write(dir, "systole_buffer.v", crate::buffer::VERILOG)?;
    write(dir, "systole_requant_fp32.v", crate::requant_fp32::VERILOG)?;
    write(dir, "systole_controller.v", crate::controller::VERILOG)?;
    write(dir, "systole_dma.v", crate::dma::VERILOG)?;
    write(dir, "systole_compute.v", crate::compute::VERILOG)?;
    write(dir, "systole_top.v", &top_verilog(arch))?;
    Ok(manifest)
}
