//! Hand-computed cycle counts from docs/timing.md, checked exactly, and the run-time errors.
//!
//! All cases use the `tiny` preset: 4x4 array, 4-byte DRAM beats, DRAM latency 8, queues of 4.
//! A program's total is: 1 cycle to dispatch the first instruction, the units' critical path,
//! and 1 cycle in which `finish` sees everything idle.

use std::collections::HashMap;
use systole_arch::{ArchConfig, Insn, Program};
use systole_emulator::{run, ErrorKind, RunOptions, Stats};

fn prog(arch: &ArchConfig, text: &str) -> Program {
    let mut p = Program::new(arch);
    p.dram_bytes = 4096.min(arch.dram.size_bytes);
    p.code = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.parse::<Insn>().unwrap())
        .collect();
    p
}

fn cycles_on(arch: &ArchConfig, text: &str) -> Stats {
    traced(arch, text).0
}

/// Runs `text` with a trace: the statistics and each instruction's (first, last) cycle.
fn traced(arch: &ArchConfig, text: &str) -> (Stats, HashMap<usize, (u64, u64)>) {
    let p = prog(arch, text);
    let r = run(
        &p,
        arch,
        &[],
        &RunOptions {
            trace: true,
            max_cycles: Some(100_000),
            ..Default::default()
        },
    )
    .unwrap();
    let spans = r
        .spans
        .unwrap()
        .iter()
        .map(|s| (s.insn, (s.start, s.end)))
        .collect();
    (r.stats, spans)
}

fn tiny() -> ArchConfig {
    ArchConfig::preset("tiny").unwrap()
}

fn cycles(text: &str) -> Stats {
    cycles_on(&tiny(), text)
}

#[test]
fn ldw_takes_rows_cycles() {
    // dispatch @0, ldw @1..4, finish @5.
    let s = cycles("ldw wgt=0\nfinish");
    assert_eq!(s.cycles, 6);
    assert_eq!(s.compute.busy_cycles, 4);
}

#[test]
fn matmul_takes_m_plus_rows_plus_cols_minus_one() {
    // m=1: 1+4+4-1 = 8 cycles @1..8, finish @9.
    assert_eq!(cycles("matmul m=1\nfinish").cycles, 10);
    // m=10: 17 cycles @1..17.
    let s = cycles("matmul m=10 accumulate=1\nfinish");
    assert_eq!(s.cycles, 19);
    assert_eq!(s.macs, 160);
    assert_eq!(s.input_buffer.line_reads, 10);
    assert_eq!(s.accumulator_buffer.line_reads, 10);
    assert_eq!(s.accumulator_buffer.line_writes, 10);
}

#[test]
fn chain_overlaps_weight_loads_with_streams() {
    let mut banked = tiny();
    banked.array.weight_banks = 2;
    // 6 tiles of m=10 (period max(10, 4) = 10): 4 + 5 x 10 + 10 + 4 + 4 - 1 = 71 cycles
    // @1..71, finish @72; ldw + matmul for each tile would take 6 x (4 + 17) = 126.
    let s = cycles_on(
        &banked,
        "matmul m=10 groups=2 outer=1 inner=3 group_step=30 wgt=0\nfinish",
    );
    assert_eq!(s.cycles, 73);
    assert_eq!(s.compute.busy_cycles, 71);
    assert_eq!(s.macs, 6 * 10 * 16);
    assert_eq!(s.weight_buffer.line_reads, 24);
    assert_eq!(s.input_buffer.line_reads, 60);
    // Tile 0 overwrites, tiles 1..6 accumulate.
    assert_eq!(s.accumulator_buffer.line_reads, 50);
    assert_eq!(s.accumulator_buffer.line_writes, 60);
    // m=2 < rows: the weight load sets the period, 4: 4 + 2 x 4 + 2 + 7 = 21 cycles.
    let s = cycles_on(&banked, "matmul m=2 outer=3 inner=1 outer_step=2\nfinish");
    assert_eq!(s.cycles, 23);
    // m = 0: nothing, one cycle.
    let s = cycles_on(&banked, "matmul m=0 outer=3 inner=1\nfinish");
    assert_eq!(s.cycles, 3);
    // Without the second weight register, or with one count only, a chain is refused.
    for (arch, text, says) in [
        (
            &tiny(),
            "matmul m=1 outer=1 inner=1\nfinish",
            "weight_banks",
        ),
        (&banked, "matmul m=1 outer=2\nfinish", "outer and inner"),
        (
            &banked,
            "matmul m=4 outer=2 inner=1 outer_step=1000\nfinish",
            "chain input",
        ),
        (
            &banked,
            "matmul m=4 outer=2 inner=1 wgt=250\nfinish",
            "chain weight",
        ),
    ] {
        let e = run(&prog(arch, text), arch, &[], &RunOptions::default()).unwrap_err();
        assert_eq!(e.insn, Some(0), "{e}");
        assert!(e.to_string().contains(says), "{text}: {e}");
    }
}

/// Overlapped chains (docs/timing.md "Overlapped chains"): the next chain starts at the
/// running one's offset `T p`, if their accumulator lines are the same or apart.
#[test]
fn overlapped_chains_start_at_tiles_times_period() {
    let mut arch = tiny();
    arch.array.weight_banks = 2;
    arch.array.chain_overlap = true;
    // A: 6 tiles, period 10, @1..71. B: 2 tiles, 4 + 10 + 10 + 7 = 31 cycles, from 1 + 60.
    let a = "matmul m=10 groups=2 outer=1 inner=3 group_step=30 wgt=0";
    let b = |acc: u32| {
        format!("matmul inp=100 acc={acc} m=10 accumulate=1 outer=2 inner=1 outer_step=12 wgt=40")
    };
    for (acc, overlaps) in [(20, true), (0, true), (10, true), (5, false), (9, false)] {
        let s = cycles_on(
            &arch,
            &format!(
                "{a}
{}
finish",
                b(acc)
            ),
        );
        // @61..91 and finish @92; else B @72..102 and finish @103.
        let want = if overlaps { 93 } else { 104 };
        assert_eq!(s.cycles, want, "acc {acc}");
        assert_eq!(s.compute.overlapped, overlaps as u64, "acc {acc}");
        assert_eq!(s.compute.busy_cycles, want - 2, "acc {acc}");
    }
    // Without the feature, or behind a plain matmul, no overlap.
    let mut plain = arch.clone();
    plain.array.chain_overlap = false;
    assert_eq!(
        cycles_on(
            &plain,
            &format!(
                "{a}
{}
finish",
                b(20)
            )
        )
        .cycles,
        104
    );
    let s = cycles_on(
        &arch,
        &format!(
            "matmul m=10
{}
finish",
            b(20)
        ),
    );
    assert_eq!((s.cycles, s.compute.overlapped), (1 + 17 + 31 + 1, 0));
    // The arch validator wants two weight registers for it.
    let mut one = tiny();
    one.array.chain_overlap = true;
    assert!(one.validate().is_err());
}

/// A drained chain whose token finds no room waits for it while the next chain runs, and the
/// next one pushes only after it (one token of room; a long load holds the load `nop`s that
/// take the tokens).
#[test]
fn a_drained_chain_pushes_before_the_chain_after_it() {
    let mut arch = tiny();
    arch.array.weight_banks = 2;
    arch.array.chain_overlap = true;
    arch.controller.token_depth = 1;
    let text = "nop unit=compute push_prev
        load sram=130 rows=1 cols=100 stride=400
        matmul m=10 groups=2 outer=1 inner=3 group_step=30 wgt=0 push_prev
        matmul inp=100 acc=20 m=10 accumulate=1 outer=2 inner=1 outer_step=12 wgt=40 push_prev
        nop unit=load pop_next
        nop unit=load pop_next
        nop unit=load pop_next
        finish";
    let (stats, spans) = traced(&arch, text);
    let span = |i: usize| spans[&i];
    // The load @2..109; A @3..73, B from 3 + 60 @63..93. The first load nop takes the compute
    // nop's token @110; A pushes @111 (room from then), B waits until the second nop takes
    // it @112 and pushes @113, the third nop takes that @114, finish @115.
    assert_eq!(span(1), (2, 109));
    assert_eq!(span(2), (3, 73));
    assert_eq!(span(3), (63, 93));
    assert_eq!([span(4).0, span(5).0, span(6).0], [110, 112, 114]);
    assert_eq!(stats.cycles, 116);
    assert_eq!(stats.compute.overlapped, 1);
}

/// A drained chain whose token never finds room is named in the deadlock error, and the chain
/// after it, which may not push before it, too.
#[test]
fn a_drained_chain_that_cannot_push_is_named_in_the_deadlock() {
    let mut arch = tiny();
    arch.array.weight_banks = 2;
    arch.array.chain_overlap = true;
    arch.controller.token_depth = 1;
    let text = "nop unit=compute push_prev
        matmul m=10 groups=2 outer=1 inner=3 group_step=30 wgt=0 push_prev
        matmul inp=100 acc=20 m=10 accumulate=1 outer=2 inner=1 outer_step=12 wgt=40
        finish";
    let e = run(&prog(&arch, text), &arch, &[], &RunOptions::default()).unwrap_err();
    assert_eq!(
        (e.kind.clone(), e.insn),
        (ErrorKind::Deadlock, Some(1)),
        "{e}"
    );
    let msg = e.to_string();
    for want in [
        "instruction 1 (matmul) on compute waits for room in the compute->load token queue",
        "instruction 2 (matmul) on compute waits for instruction 1 before it to push first",
    ] {
        assert!(msg.contains(want), "{want}: {msg}");
    }
}

#[test]
fn bias_row_is_read_where_the_accumulator_would_be() {
    // m=3 from the bias row 4: same 10 cycles as an accumulating matmul (@1..10), one
    // accumulator read per line (of line 4), three writes.
    let s = cycles("matmul acc=5 m=3 bias=1\nfinish");
    assert_eq!(s.cycles, 12);
    assert_eq!(s.accumulator_buffer.line_reads, 3);
    assert_eq!(s.accumulator_buffer.line_writes, 3);
    // With accumulate the bias flag changes nothing; at acc = 0 there is no bias row.
    let s = cycles("matmul acc=5 m=3 accumulate=1 bias=1\nfinish");
    assert_eq!(s.accumulator_buffer.line_reads, 3);
    let e = error("matmul acc=0 m=3 bias=1\nfinish");
    assert_eq!(e.kind, ErrorKind::OutOfRange, "{e}");
    assert!(e.to_string().contains("bias row"), "{e}");
}

#[test]
fn load_takes_latency_plus_beats() {
    // One 4-byte line: request @1, beat @9 (latency 8), written @9; finish @10.
    assert_eq!(
        cycles("load buf=inp rows=1 cols=1 stride=4\nfinish").cycles,
        11
    );
    // 3 rows x 2 lines of 4 bytes = 6 beats: @1..(8+6) = 14 cycles; finish @15.
    let s = cycles("load buf=inp rows=3 cols=2 stride=64\nfinish");
    assert_eq!(s.cycles, 16);
    assert_eq!(s.load.busy_cycles, 14);
    assert_eq!(s.dram_bytes_read, 24);
    // Accumulator lines are 16 bytes: 4 beats per line. 2 lines: 8 + 8 = 16 cycles.
    assert_eq!(
        cycles("load buf=acc rows=1 cols=2 stride=32\nfinish")
            .load
            .busy_cycles,
        16
    );
    // acc8 reads 4 bytes per line: 1 beat.
    assert_eq!(
        cycles("load buf=acc8 rows=1 cols=2 stride=8\nfinish")
            .load
            .busy_cycles,
        10
    );
}

#[test]
fn load_padding_lines_cost_a_cycle_each_unless_hidden_by_latency() {
    // Top/left padding (3 lines @1..3) is hidden under the 8-cycle latency: same as no padding.
    assert_eq!(
        cycles("load rows=1 cols=1 stride=4 pad_top=1 pad_left=1\nfinish")
            .load
            .busy_cycles,
        9
    );
    // rows=2 with one right pad line each: data @9, pad @10, data @11 (row 1's beat waits for
    // the writer), pad @12: 12 cycles.
    assert_eq!(
        cycles("load rows=2 cols=1 stride=4 pad_right=1\nfinish")
            .load
            .busy_cycles,
        12
    );
    // Only padding: one line per cycle.
    assert_eq!(
        cycles("load rows=0 cols=3 pad_top=2\nfinish")
            .load
            .busy_cycles,
        6
    );
}

#[test]
fn store_takes_beats_plus_ack_latency_plus_one() {
    // 2 output lines of 4 bytes: read @1, beats @2,@3, ack @3+8=11: 11 cycles.
    let s = cycles("store buf=out rows=1 cols=2 stride=8\nfinish");
    assert_eq!(s.store.busy_cycles, 11);
    assert_eq!(s.cycles, 13);
    // Accumulator lines: 4 beats each; 2 lines: 8 beats + 8 + 1 = 17.
    assert_eq!(
        cycles("store buf=acc rows=2 cols=1 stride=16\nfinish")
            .store
            .busy_cycles,
        17
    );
}

#[test]
fn ppu_cycles() {
    // Broadcast b: m + 3. Streaming b: 2m + 2. Requant: m + 5.
    assert_eq!(
        cycles("alu func=add dst=0 a=0 a_stride=1 b=20 b_stride=0 m=5\nfinish")
            .compute
            .busy_cycles,
        8
    );
    assert_eq!(
        cycles("alu func=add dst=0 a=0 a_stride=1 b=20 b_stride=1 m=5\nfinish")
            .compute
            .busy_cycles,
        12
    );
    let mut p = prog(
        &tiny(),
        "requant dst=0 src=0 param=100 m=7 lo=128 hi=127\nfinish",
    );
    p.dram_bytes = 64;
    let r = run(&p, &tiny(), &[], &RunOptions::default()).unwrap();
    assert_eq!(r.stats.compute.busy_cycles, 12);
    assert_eq!(cycles("nop unit=store\nnop unit=load\nfinish").cycles, 4);
    // Thresh: count + m + S + 2, S = 8 search stages for tiny's 255 thresholds.
    assert_eq!(
        cycles("thresh dst=0 src=0 thr=50 count=3 m=4\nfinish")
            .compute
            .busy_cycles,
        17
    );
}

#[test]
fn token_handoff_overlaps_nothing_and_costs_no_extra_cycle() {
    // load @1..9 pushes at the end of 9; matmul pops @10, runs @10..17; finish @18.
    let s = cycles("load rows=1 cols=1 stride=4 push_next\nmatmul m=1 pop_prev\nfinish");
    assert_eq!(s.cycles, 19);
    assert_eq!(s.compute.token_stall_cycles, 8); // @2..9
}

#[test]
fn independent_units_overlap() {
    // load (9 cycles @1..9) and matmul m=8 (15 cycles @2..16) run concurrently: finish @17.
    let s = cycles("load sram=100 rows=1 cols=1 stride=4\nmatmul m=8\nfinish");
    assert_eq!(s.cycles, 18);
}

#[test]
fn queue_full_stalls_fetch() {
    // Queue depth 4, six matmuls m=1 (8 cycles each). mm0 is dispatched @0 and leaves the queue
    // @1; mm1..mm4 are dispatched @1..4 and fill it. mm5 waits while the queue is full at the
    // start of cycles 5..9 (mm1 leaves @9), and is dispatched @10. Compute runs @1..48, finish @49.
    let s =
        cycles("matmul m=1\nmatmul m=1\nmatmul m=1\nmatmul m=1\nmatmul m=1\nmatmul m=1\nfinish");
    assert_eq!(s.cycles, 50);
    assert_eq!(s.dispatch_stall_cycles, 5);
}

#[test]
fn single_port_buffers_make_dma_wait_for_compute() {
    let mut arch = tiny();
    arch.buffers.input.ports = systole_arch::config::Ports::OneRw;
    arch.buffers.input.banks = 1;
    // matmul @1..23 reads input lines @1..16; the load's beat arrives @10 and its write waits
    // until the port is free @17.
    let text = "matmul inp=0 m=16\nload sram=100 rows=1 cols=1 stride=4\nfinish";
    let s = cycles_on(&arch, text);
    assert_eq!(s.load.busy_cycles, 16); // @2..17
    assert_eq!(s.load.port_stall_cycles, 7); // @10..16
    assert_eq!(s.input_buffer.conflict_stalls, 7);
    assert_eq!(s.cycles, 25);
    // Dual-ported (the preset): no stall, the load ends @10.
    let s = cycles(text);
    assert_eq!(s.load.busy_cycles, 9);
    assert_eq!(s.load.port_stall_cycles, 0);
    // Two banks with the load in the other bank: no stall even with one port.
    arch.buffers.input.banks = 2;
    let s = cycles_on(
        &arch,
        "matmul inp=0 m=16\nload sram=200 rows=1 cols=1 stride=4\nfinish",
    );
    assert_eq!(s.load.port_stall_cycles, 0);
}

/// The race check takes a chained `matmul`'s input lines group by group: a load may write the
/// lines between its groups while it runs (a convolution's other phase blocks), not a line of
/// a group's span.
#[test]
fn a_chains_input_footprint_is_one_span_per_group() {
    let mut banked = tiny();
    banked.array.weight_banks = 2;
    // Groups at lines 0..12 and 30..42 (m = 10, inner 3: each group spans 10 + 2 lines).
    let chain = "matmul m=10 groups=2 outer=1 inner=3 group_step=30 wgt=0";
    let between = format!("{chain}\nload sram=20 rows=1 cols=1 stride=4\nfinish");
    let s = cycles_on(&banked, &between);
    // The load runs beside the chain: the run is no longer than the chain alone (73).
    assert_eq!(s.cycles, 73);
    for sram in [11, 30] {
        let text = format!("{chain}\nload sram={sram} rows=1 cols=1 stride=4\nfinish");
        let e = run(&prog(&banked, &text), &banked, &[], &RunOptions::default()).unwrap_err();
        assert_eq!(
            (e.kind.clone(), e.insn),
            (ErrorKind::Race, Some(1)),
            "{sram}: {e}"
        );
    }
}

fn error(text: &str) -> systole_emulator::EmuError {
    let arch = tiny();
    run(&prog(&arch, text), &arch, &[], &RunOptions::default()).unwrap_err()
}

#[test]
fn deadlock_names_the_waiting_instruction() {
    let e = error("nop unit=load\nmatmul m=1 pop_prev\nfinish");
    assert_eq!(e.kind, ErrorKind::Deadlock);
    assert_eq!(e.insn, Some(1));
    let msg = e.to_string();
    assert!(
        msg.contains("instruction 1 (matmul)") && msg.contains("load->compute"),
        "{msg}"
    );
    // A full compute queue blocking the fetch of the load that would feed it.
    let e = error("matmul pop_prev\nmatmul pop_prev\nmatmul pop_prev\nmatmul pop_prev\nmatmul\nload push_next\nfinish");
    assert_eq!(e.kind, ErrorKind::Deadlock);
    assert!(e.to_string().contains("fetch of instruction 4"), "{e}");
}

#[test]
fn other_errors_name_instruction_and_cause() {
    let e = error("load pop_prev\nfinish");
    assert_eq!((e.kind.clone(), e.insn), (ErrorKind::IllegalDeps, Some(0)));
    assert!(e.to_string().contains("pop_prev"), "{e}");
    let e = error("nop");
    assert_eq!(e.kind, ErrorKind::MissingFinish);
    let e = error("matmul inp=255 m=2\nfinish");
    assert_eq!((e.kind.clone(), e.insn), (ErrorKind::OutOfRange, Some(0)));
    assert!(e.to_string().contains("input"), "{e}");
    let e = error("load dram=4090 rows=2 cols=1 stride=4\nfinish");
    assert_eq!((e.kind.clone(), e.insn), (ErrorKind::OutOfRange, Some(0)));
    assert!(e.to_string().contains("DRAM"), "{e}");
    let e = error("load rows=1 cols=1 stride=4\nmatmul inp=0 m=1\nfinish");
    assert_eq!((e.kind.clone(), e.insn), (ErrorKind::Race, Some(1)));
    assert!(e.to_string().contains("dependency token"), "{e}");
    let e = error("alu dst=0 a=1 a_stride=1 b=50 b_stride=1 m=4\nfinish");
    assert_eq!(
        (e.kind.clone(), e.insn),
        (ErrorKind::IllegalOperands, Some(0))
    );
    // Shift lanes from the accumulator are validated at run time: 99 is no legal shift.
    let arch = tiny();
    let mut p = prog(
        &arch,
        "load buf=acc sram=10 rows=1 cols=2 stride=32\nrequant param=10 m=1 pop_prev\nfinish",
    );
    p.code[0].deps.push_next = true;
    let mut bytes = vec![0u8; 32];
    bytes[16..20].copy_from_slice(&99i32.to_le_bytes());
    p.data.push(systole_arch::image::Segment {
        dram_addr: 0,
        bytes,
    });
    let e = run(&p, &arch, &[], &RunOptions::default()).unwrap_err();
    assert_eq!((e.kind.clone(), e.insn), (ErrorKind::IllegalValue, Some(1)));
    assert!(e.to_string().contains("shift 99"), "{e}");
}

#[test]
fn machine_level_errors() {
    let arch = tiny();
    // More instructions than the instruction memory holds.
    let mut p = prog(&arch, "finish");
    p.code = vec![p.code[0]; arch.controller.imem_instructions as usize + 1];
    let e = run(&p, &arch, &[], &RunOptions::default()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::ProgramTooLarge);
    assert!(e.to_string().contains("instruction memory"), "{e}");
    // More DRAM than the arch has.
    let mut p = prog(&arch, "finish");
    p.dram_bytes = arch.dram.size_bytes + 1;
    let e = run(&p, &arch, &[], &RunOptions::default()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::ProgramTooLarge);
    assert!(e.to_string().contains("DRAM"), "{e}");
    // The caller's cycle limit.
    let p = prog(&arch, "matmul m=100\nfinish");
    let e = run(
        &p,
        &arch,
        &[],
        &RunOptions {
            trace: false,
            max_cycles: Some(50),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::CycleLimit);
    // Inputs that do not match the descriptors.
    let mut p = prog(&arch, "finish");
    p.tensors = vec![systole_arch::image::TensorDesc::dense(
        "x",
        systole_arch::image::Role::Input,
        systole_arch::image::DType::I8,
        &[4],
        0,
    )];
    let e = run(&p, &arch, &[], &RunOptions::default()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadInput);
    assert!(e.to_string().contains("x"), "{e}");
    let e = run(
        &p,
        &arch,
        &[systole_emulator::IoData::I8(vec![0; 3])],
        &RunOptions::default(),
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadInput);
    assert!(e.to_string().contains("4 elements"), "{e}");
}

/// Instructions the arch was not built for are refused before they run, naming the setting:
/// binary matmuls and packed stores without the binary precision, packing the accumulator
/// buffer, more thresholds than `ppu.max_thresholds`, binary32 requantization without its lanes.
#[test]
fn instructions_the_arch_lacks_are_named() {
    let tiny = tiny();
    let up5k = ArchConfig::preset("up5k").unwrap();
    let mut ulx3s = ArchConfig::preset("ulx3s").unwrap();
    let on = |arch: &ArchConfig, text: &str| {
        run(&prog(arch, text), arch, &[], &RunOptions::default()).unwrap_err()
    };
    for (arch, text, says) in [
        (&tiny, "matmul m=1 binary=1\nfinish", "no binary precision"),
        (
            &tiny,
            "store pack=1 rows=1 cols=1\nfinish",
            "no binary precision",
        ),
        (
            &ulx3s,
            "store buf=acc pack=1 rows=1 cols=1\nfinish",
            "needs buf=out",
        ),
        (
            &up5k,
            "matmul m=2 row=1 skip=1\nfinish",
            "array.input_walker",
        ),
        (
            &up5k,
            "matmul acc=3 m=1 bias=1\nfinish",
            "array.input_walker",
        ),
    ] {
        let e = on(arch, text);
        assert_eq!(
            (e.kind.clone(), e.insn),
            (ErrorKind::IllegalOperands, Some(0)),
            "{e}"
        );
        assert!(e.to_string().contains(says), "{e}");
    }
    ulx3s.ppu.max_thresholds = 15;
    ulx3s.ppu.fp32_requant = false;
    let e = on(&ulx3s, "thresh thr=0 src=20 count=16 m=1\nfinish");
    assert_eq!(e.kind, ErrorKind::IllegalOperands, "{e}");
    assert!(e.to_string().contains("ppu.max_thresholds"), "{e}");
    let fits = prog(&ulx3s, "thresh thr=0 src=20 count=15 m=1\nfinish");
    run(&fits, &ulx3s, &[], &RunOptions::default()).expect("15 thresholds fit");
    let e = on(&ulx3s, "requant src=4 param=0 m=1 fp32=1\nfinish");
    assert_eq!(e.kind, ErrorKind::IllegalOperands, "{e}");
    assert!(e.to_string().contains("fp32_requant"), "{e}");
    // The UP5K machine has the threshold unit only: `thresh` runs, `alu` and `requant` are
    // refused by name.
    let up5k = ArchConfig::preset("up5k").unwrap();
    for text in [
        "alu func=add dst=0 a=1 a_stride=1 b=2 b_stride=1 m=1\nfinish",
        "requant src=4 param=0 m=1\nfinish",
    ] {
        let e = on(&up5k, text);
        assert_eq!(e.kind, ErrorKind::IllegalOperands, "{e}");
        assert!(e.to_string().contains("ppu.integer_lanes = false"), "{e}");
    }
    let th = prog(&up5k, "thresh thr=0 src=4 count=1 m=2\nfinish");
    run(&th, &up5k, &[], &RunOptions::default()).expect("thresh runs on up5k");
}

/// Loads ahead (docs/timing.md "Loads ahead"): the next load issues its requests once the
/// running one has issued its own, and writes after it.
#[test]
fn a_load_ahead_issues_while_the_one_before_takes_its_beats() {
    let mut arch = tiny();
    arch.dram.load_ahead = true;
    let text = "load rows=3 cols=2 stride=64
        load sram=10 dram=256 rows=2 cols=1 stride=64
        finish";
    // A: requests @1..3, six beats @9..14. B, visible @2, starts ahead @4 (A's requests all
    // issued): requests @4..5, beats ready @12..13, written after A @15..16; finish @17.
    let s = cycles_on(&arch, text);
    assert_eq!(s.cycles, 18);
    assert_eq!(s.load.overlapped, 1);
    assert_eq!(s.load.busy_cycles, 16);
    // Without it B starts @15: beats @23..24, finish @25.
    let s = cycles(text);
    assert_eq!((s.cycles, s.load.overlapped), (26, 0));
    // A padding line waits for A's writer too: B's top padding @15, its beats @16..17.
    let (s, spans) = traced(
        &arch,
        "load rows=3 cols=2 stride=64
        load sram=10 dram=256 rows=2 cols=1 stride=64 pad_top=1
        finish",
    );
    assert_eq!((spans[&1], s.cycles), ((4, 17), 19));
    // A nop never starts ahead, nor does a load behind one.
    let s = cycles_on(
        &arch,
        "load rows=3 cols=2 stride=64
        nop unit=load
        load sram=10 dram=256 rows=2 cols=1 stride=64
        finish",
    );
    assert_eq!((s.cycles, s.load.overlapped), (27, 0));
}

/// A load ahead that finishes while the older one waits for room for its token pushes after
/// it (one token of room; a long matmul holds the nops that take the tokens).
#[test]
fn a_load_ahead_pushes_after_the_older_load() {
    let mut arch = tiny();
    arch.dram.load_ahead = true;
    arch.controller.token_depth = 1;
    let text = "load rows=1 cols=1 stride=4 push_next
        load sram=4 rows=3 cols=2 stride=64 push_next
        load sram=10 dram=256 rows=2 cols=1 stride=64 push_next
        matmul inp=50 m=40
        nop unit=compute pop_prev
        nop unit=compute pop_prev
        nop unit=compute pop_prev
        finish";
    let (stats, spans) = traced(&arch, text);
    let span = |i: usize| spans[&i];
    // Z @1..9 pushes @9. A starts ahead @2 (requests @2..4), writes @10..15 and waits for
    // room. B starts ahead @10, when Z no longer writes (requests @10..11), writes @18..19
    // and waits behind A. The matmul @4..50; the first nop takes Z's token @51, A pushes @52,
    // the second nop takes it @53, B pushes @54, the third nop @55, finish @56.
    assert_eq!([span(0), span(1), span(2)], [(1, 9), (2, 15), (10, 19)]);
    assert_eq!(span(3), (4, 50));
    assert_eq!([span(4).0, span(5).0, span(6).0], [51, 53, 55]);
    assert_eq!(stats.cycles, 57);
    assert_eq!(stats.load.overlapped, 2);
    // Without the nops nothing takes the tokens: the deadlock names both loads.
    let text: String = text
        .lines()
        .filter(|l| !l.contains("nop"))
        .collect::<Vec<_>>()
        .join("\n");
    let e = run(&prog(&arch, &text), &arch, &[], &RunOptions::default()).unwrap_err();
    assert_eq!(
        (e.kind.clone(), e.insn),
        (ErrorKind::Deadlock, Some(1)),
        "{e}"
    );
    for want in [
        "instruction 1 (load) on load waits for room in the load->compute token queue",
        "instruction 2 (load) on load waits for instruction 1 before it to push first",
    ] {
        assert!(e.to_string().contains(want), "{want}: {e}");
    }
}

/// Stores ahead (docs/timing.md "Stores ahead"): the next store starts once the running one
/// has sent its last beat, and the older one retires on its acknowledgement.
#[test]
fn a_store_ahead_sends_while_the_one_before_waits_for_its_acknowledgement() {
    let mut arch = tiny();
    arch.dram.store_ahead = true;
    let text = "store buf=out rows=1 cols=2 stride=8
        store buf=out sram=2 dram=64 rows=1 cols=3 stride=12
        finish";
    // A: reads @1 and @2, beats @2 and @3, acknowledged @3 + 8 = 11. B starts ahead @4:
    // beats @5..7, acknowledged @15; finish @16.
    let (s, spans) = traced(&arch, text);
    assert_eq!([spans[&0], spans[&1]], [(1, 11), (4, 15)]);
    assert_eq!((s.cycles, s.store.overlapped), (17, 1));
    // Without it B starts @12: acknowledged @23, finish @24.
    let (s, spans) = traced(&tiny(), text);
    assert_eq!((spans[&1], s.cycles, s.store.overlapped), ((12, 23), 25, 0));
    // A requantizing store sends its last beat three stages after the register: @6 + 3,
    // so the next one starts @10.
    let mut q = tiny_storeq();
    q.dram.store_ahead = true;
    let (_, spans) = traced(
        &q,
        "store buf=acc sram=0 rows=2 cols=1 stride=4 requant=1 param=100
        store buf=acc sram=2 dram=64 rows=2 cols=1 stride=4 requant=1 param=100
        finish",
    );
    assert_eq!([spans[&0], spans[&1]], [(1, 17), (10, 26)]);
    // One store waits at a time: B (one line) starts ahead of A @4 and sends its beat @5,
    // but C starts only once A has left the drain slot (acknowledged @11): @12. A store of
    // no lines and a store behind a nop never start ahead.
    let (s, spans) = traced(
        &arch,
        "store buf=out rows=1 cols=2 stride=8
        store buf=out sram=2 dram=64 rows=1 cols=1 stride=4
        store buf=out sram=3 dram=128 rows=1 cols=1 stride=4
        store buf=out sram=3 dram=128 rows=0 cols=1 stride=4
        nop unit=store
        store buf=out sram=4 dram=192 rows=1 cols=1 stride=4
        finish",
    );
    assert_eq!(
        [spans[&0], spans[&1], spans[&2]],
        [(1, 11), (4, 13), (12, 21)]
    );
    assert_eq!(spans[&3], (22, 22));
    assert_eq!(spans[&5].0, 24);
    assert_eq!(s.store.overlapped, 2);
}

/// A store ahead that finishes while the older one waits for room for its token pushes after
/// it (one token of room; a long matmul holds the nops that take the tokens), and the
/// deadlock without the nops names both.
#[test]
fn a_store_ahead_pushes_after_the_older_store() {
    let mut arch = tiny();
    arch.dram.store_ahead = true;
    arch.controller.token_depth = 1;
    let text = "store buf=out rows=1 cols=1 stride=4 push_prev
        store buf=out sram=1 dram=64 rows=1 cols=2 stride=8 push_prev
        store buf=out sram=3 dram=128 rows=1 cols=1 stride=4 push_prev
        matmul inp=50 m=40
        nop unit=compute pop_next
        nop unit=compute pop_next
        nop unit=compute pop_next
        finish";
    let (stats, spans) = traced(&arch, text);
    let span = |i: usize| spans[&i];
    // Z @1..10 pushes @10. A starts ahead @3, its beats @4..5, acknowledged @13, and waits
    // for room in the drain slot. B starts ahead of A once Z has left it (@11), its beat
    // @12, acknowledged @20, and waits behind A. The nops take the tokens one by one after
    // the matmul, each push the cycle after the pop before it.
    assert_eq!([span(0), span(1), span(2)], [(1, 10), (3, 13), (11, 20)]);
    let m = span(3).1;
    assert_eq!([span(4).0, span(5).0, span(6).0], [m + 1, m + 3, m + 5]);
    assert_eq!(stats.store.overlapped, 2);
    let text: String = text
        .lines()
        .filter(|l| !l.contains("nop"))
        .collect::<Vec<_>>()
        .join("\n");
    let e = run(&prog(&arch, &text), &arch, &[], &RunOptions::default()).unwrap_err();
    assert_eq!(
        (e.kind.clone(), e.insn),
        (ErrorKind::Deadlock, Some(1)),
        "{e}"
    );
    for want in [
        "instruction 1 (store) on store waits for room in the store->compute token queue",
        "instruction 2 (store) on store waits for instruction 1 before it to push first",
    ] {
        assert!(e.to_string().contains(want), "{want}: {e}");
    }
}

/// `tiny` with the store engine's requantizer lanes (`ppu.store_requant`).
fn tiny_storeq() -> ArchConfig {
    let mut arch = tiny();
    arch.ppu.store_requant = true;
    arch
}

#[test]
fn a_requantizing_store_reads_its_parameters_then_pays_the_lanes_stages() {
    let arch = tiny_storeq();
    // Parameter lines read @0..2, lines @3 and @4 (one 4-byte beat each), the last line's
    // beat leaves 3 stages later @5+3 = 8, acknowledged @8+8 = 16: 17 cycles, 6 more than
    // `buf=out` (`n x beats + L + 1` + 3 + 3).
    let (s, spans) = traced(
        &arch,
        "store buf=acc sram=0 rows=2 cols=1 stride=4 requant=1 param=100\nfinish",
    );
    assert_eq!(s.store.busy_cycles, 17);
    assert_eq!(spans[&0], (1, 17));
    // Each line leaves as 4 bytes, not 16: the beats are those of `buf=out`.
    let s = cycles_on(
        &arch,
        "store buf=acc rows=3 cols=2 stride=8 requant=1 param=100\nfinish",
    );
    assert_eq!(s.store.busy_cycles, 6 + 8 + 1 + 6);
    assert_eq!(s.dram_bytes_written, 24);
    // The parameter reads take the accumulator's read port: an `alu` reading the same bank
    // (lines 0..64) each cycle (b broadcast @0, a_i @1 + i) delays them. The alu starts @1
    // and reads @1..@5; the store starts @2 and gets the port @6, so it ends 4 cycles later.
    let (s, spans) = traced(
        &arch,
        "alu func=add dst=20 a=0 a_stride=1 b=30 b_stride=0 m=4\n\
         store buf=acc sram=40 rows=2 cols=1 stride=4 requant=1 param=50\nfinish",
    );
    assert_eq!(spans[&1], (2, 2 + 16 + 4));
    assert_eq!(s.store.port_stall_cycles, 4);
    // An empty requantizing store reads nothing: 1 cycle.
    assert_eq!(
        cycles_on(
            &arch,
            "store buf=acc rows=0 cols=1 requant=1 param=100\nfinish"
        )
        .store
        .busy_cycles,
        1
    );
}

#[test]
fn requantizing_store_errors_name_the_cause() {
    let arch = tiny_storeq();
    let mut no_fp32 = arch.clone();
    no_fp32.ppu.fp32_requant = false;
    // (arch, program, error kind, what the message names)
    for (arch, text, kind, what) in [
        (
            &tiny(),
            "store buf=acc rows=1 cols=1 requant=1 param=100",
            ErrorKind::IllegalOperands,
            "ppu.store_requant",
        ),
        (
            &arch,
            "store buf=out rows=1 cols=1 requant=1 param=100",
            ErrorKind::IllegalOperands,
            "buf=acc",
        ),
        (
            &arch,
            "store buf=acc rows=1 cols=1 param=100",
            ErrorKind::IllegalOperands,
            "requant=1",
        ),
        (
            &arch,
            "store buf=acc rows=1 cols=1 requant=1 param=127",
            ErrorKind::OutOfRange,
            "parameter",
        ),
        (
            &no_fp32,
            "store buf=acc rows=1 cols=1 requant=1 fp32=1 param=10",
            ErrorKind::IllegalOperands,
            "ppu.fp32_requant",
        ),
    ] {
        let e = run(
            &prog(arch, &format!("{text}\nfinish")),
            arch,
            &[],
            &RunOptions::default(),
        )
        .unwrap_err();
        assert_eq!((e.kind.clone(), e.insn), (kind, Some(0)), "{text}: {e}");
        assert!(e.to_string().contains(what), "{text}: {e}");
    }
    // The parameter lines' values are checked when the store starts: a zero point beyond 16
    // bits, a clamp beyond a byte (settings line 10), a shift beyond 62 (shift line 12).
    for (line, lane, v, what) in [
        (
            0usize,
            0usize,
            40_000i32,
            "zero point 40000 in lane 0 of accumulator line 10",
        ),
        (0, 2, -1, "clamp -1 in lane 2 of accumulator line 10"),
        (2, 1, 63, "shift 63 in lane 1 of accumulator line 12"),
    ] {
        let mut p = prog(
            &arch,
            "load buf=acc sram=10 rows=1 cols=3 stride=48 push_next\n\
             nop unit=compute pop_prev push_next\n\
             store buf=acc rows=1 cols=1 requant=1 param=10 pop_prev\nfinish",
        );
        let mut bytes = vec![0u8; 48];
        bytes[16 * line + 4 * lane..][..4].copy_from_slice(&v.to_le_bytes());
        p.data.push(systole_arch::image::Segment {
            dram_addr: 0,
            bytes,
        });
        let e = run(&p, &arch, &[], &RunOptions::default()).unwrap_err();
        assert_eq!((e.kind.clone(), e.insn), (ErrorKind::IllegalValue, Some(2)));
        assert!(e.to_string().contains(what), "{e}");
    }
}
