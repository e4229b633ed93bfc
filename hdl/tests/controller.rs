//! The controller's Verilog (`systole_controller`, hdl/src/controller.rs), simulated in Icarus
//! Verilog, against its port-level twin (`systole_emulator::rtl_twins::ControllerTwin`, itself
//! checked against the emulator's `Machine`) on every output of every cycle: engine starts and
//! the words they start, the compute unit's next start (for the early block-RAM reads),
//! `done` and the cycle count. Programs are random valid programs (`randprog`); the engines
//! answer `done` after random durations, produced in closed loop with the twin and replayed on
//! the Verilog. Needs iverilog on PATH; fails without it.

use proptest::prelude::*;
use systole_arch::isa::{Deps, Finish, Insn, Load, MatMul, Nop, Op, Store, UnitSel};
use systole_arch::ArchConfig;
use systole_emulator::randprog::{random_program, Rng};
use systole_emulator::rtl_twins::ControllerTwin;
use systole_hdl::icarus;
use systole_hdl::verilog::Port;

fn port(name: &str, dir: &str, width: usize) -> Port {
    Port {
        name: name.into(),
        dir: dir.into(),
        width,
        signed: false,
    }
}

fn halves(i: &Insn) -> (i64, i64) {
    let b = i.encode().unwrap();
    (
        u64::from_le_bytes(b[..8].try_into().unwrap()) as i64,
        u64::from_le_bytes(b[8..].try_into().unwrap()) as i64,
    )
}

/// Returns the twin's (push, dispatch) stall cycles.
fn check(preset: &str, queue_depth: u32, token_depth: u32, seed: u64) -> (u64, u64) {
    let arch = ArchConfig::preset(preset).unwrap();
    let code = if seed.is_multiple_of(2) {
        random_program(&arch, seed, 40).code
    } else {
        token_program(seed, 60, token_depth)
    };
    let n = code.len();
    let imem = 512;
    assert!(n <= imem);
    let wrapper = format!(
        "module wrap(input clock, input rst, input imem_we, input [31:0] imem_waddr,
    input [63:0] imem_lo, input [63:0] imem_hi, input [2:0] eng_done,
    output [2:0] eng_start, output [63:0] h0_lo, output [63:0] h0_hi, output [63:0] h1_lo,
    output [63:0] h1_hi, output [63:0] h2_lo, output [63:0] h2_hi, output c_start_next,
    output [63:0] n_lo, output [63:0] n_hi, output done, output [63:0] cycles);
    wire [127:0] h0, h1, h2, hn;
    systole_controller #(.Q({queue_depth}), .T({token_depth}), .IMEM({imem})) u(.clock(clock),
        .rst(rst), .imem_we(imem_we), .imem_waddr(imem_waddr), .imem_wdata({{imem_hi, imem_lo}}),
        .imem_wstrb(16'hffff),
        .eng_start(eng_start), .head0(h0), .head1(h1), .head2(h2), .eng_done(eng_done),
        .c_ovl(1'b0), .c_ovl_next(1'b0), .c_dr_done(1'b0), .l_ahead(1'b0), .l_dr_done(1'b0),
        .s_ahead(1'b0), .s_dr_done(1'b0),
        .c_start_next(c_start_next), .c_head_next(hn), .done(done), .cycles(cycles));
    assign h0_lo = h0[63:0]; assign h0_hi = h0[127:64];
    assign h1_lo = h1[63:0]; assign h1_hi = h1[127:64];
    assign h2_lo = h2[63:0]; assign h2_hi = h2[127:64];
    assign n_lo = hn[63:0]; assign n_hi = hn[127:64];
endmodule
"
    );
    let mut ports = vec![
        port("clock", "in", 1),
        port("rst", "in", 1),
        port("imem_we", "in", 1),
        port("imem_waddr", "in", 32),
        port("imem_lo", "in", 64),
        port("imem_hi", "in", 64),
        port("eng_done", "in", 3),
        port("eng_start", "out", 3),
    ];
    for h in ["h0_lo", "h0_hi", "h1_lo", "h1_hi", "h2_lo", "h2_hi"] {
        ports.push(port(h, "out", 64));
    }
    ports.push(port("c_start_next", "out", 1));
    ports.push(port("n_lo", "out", 64));
    ports.push(port("n_hi", "out", 64));
    ports.push(port("done", "out", 1));
    ports.push(port("cycles", "out", 64));

    let mut stimuli = Vec::new();
    for (i, insn) in code.iter().enumerate() {
        let (lo, hi) = halves(insn);
        stimuli.push(vec![1, 1, i as i64, lo, hi, 0]);
    }
    stimuli.push(vec![1, 0, 0, 0, 0, 0]);
    let skip = stimuli.len();
    let mut rng = Rng::new(seed ^ 0x5eed);
    let mut tw = ControllerTwin::new(code.clone(), queue_depth, token_depth);
    let mut left = [0u64; 3];
    let mut expect = Vec::new();
    for _ in 0..20_000 {
        let done_before = tw.cycles();
        let st = tw.starts();
        for (u, l) in left.iter_mut().enumerate() {
            if st.start[u].is_some() {
                *l = if rng.chance(20) {
                    rng.range(10, 40)
                } else {
                    rng.range(1, 6)
                };
            }
        }
        let done = [0, 1, 2].map(|u| left[u] == 1);
        for l in &mut left {
            *l = l.saturating_sub(1);
        }
        let next = tw.clock(done);
        stimuli.push(vec![
            0,
            0,
            0,
            0,
            0,
            done.iter().enumerate().map(|(u, &d)| (d as i64) << u).sum(),
        ]);
        expect.push((st, next, done_before));
        if done_before.is_some() {
            break;
        }
    }
    assert!(
        tw.cycles().is_some(),
        "seed {seed}: the twin never finished"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ctl.v"), systole_hdl::controller::VERILOG).unwrap();
    std::fs::write(dir.path().join("wrap.v"), &wrapper).unwrap();
    let got = icarus::run(dir.path(), &["ctl.v", "wrap.v"], "wrap", &ports, &stimuli)
        .unwrap_or_else(|e| panic!("{e} (install iverilog: scripts/test.sh)"));
    for (t, (row, (st, next, done))) in got[skip..].iter().zip(&expect).enumerate() {
        let ctx = format!("{preset} Q={queue_depth} T={token_depth} seed {seed} cycle {t}");
        for u in 0..3 {
            assert_eq!(
                row[0] >> u & 1 == 1,
                st.start[u].is_some(),
                "start[{u}] {ctx}"
            );
            if let Some(i) = &st.start[u] {
                let (lo, hi) = halves(i);
                assert_eq!((row[1 + 2 * u], row[2 + 2 * u]), (lo, hi), "head{u} {ctx}");
            }
        }
        assert_eq!(row[7] != 0, next.is_some(), "c_start_next {ctx}");
        if let Some(i) = next {
            assert_eq!((row[8], row[9]), halves(i), "c_head_next {ctx}");
        }
        assert_eq!(row[10] != 0, done.is_some(), "done {ctx}");
        if let Some(c) = done {
            assert_eq!(row[11], *c as i64, "cycles {ctx}");
        }
    }
    (tw.push_stall_cycles, tw.dispatch_stall_cycles)
}

/// One-token queues and one-entry command queues: push and dispatch stalls happen.
#[test]
fn controller_stalls() {
    let (mut push, mut dispatch) = (0, 0);
    for seed in 0..16 {
        let (p, d) = check("tiny", 1, 1, seed);
        push += p;
        dispatch += d;
    }
    assert!(push > 0 && dispatch > 0, "push {push}, dispatch {dispatch}");
}

/// Instructions with many tokens: each pops only tokens pushed earlier in program order, pushes
/// at most one, and never more than `token_depth` are outstanding in program order, so the
/// program cannot deadlock, yet a producer that runs ahead waits to push (push stalls).
fn token_program(seed: u64, n: usize, token_depth: u32) -> Vec<Insn> {
    let mut rng = Rng::new(seed);
    let mut pend = [0u32; 4];
    let mut code = Vec::new();
    for _ in 0..n {
        let u = rng.range(0, 2) as usize;
        let nop = rng.chance(30);
        let op = match (u, nop) {
            (_, true) => Op::Nop(Nop {
                unit: [UnitSel::Load, UnitSel::Compute, UnitSel::Store][u],
            }),
            (0, _) => Op::Load(Load::default()),
            (1, _) => Op::MatMul(MatMul::default()),
            _ => Op::Store(Store::default()),
        };
        // (flag, token queue) pairs legal on unit u: pops then pushes.
        type Flags = Vec<(usize, usize)>;
        let (pops, pushes): (Flags, Flags) = match u {
            0 => (vec![(1, 1)], vec![(3, 0)]),
            1 => (vec![(0, 0), (1, 3)], vec![(2, 1), (3, 2)]),
            _ => (vec![(0, 2)], vec![(2, 3)]),
        };
        let mut f = [false; 4];
        for (flag, q) in pops {
            if pend[q] > 0 && rng.chance(60) {
                pend[q] -= 1;
                f[flag] = true;
            }
        }
        let (flag, q) = pushes[rng.range(0, pushes.len() as u64 - 1) as usize];
        if pend[q] < token_depth && rng.chance(70) {
            pend[q] += 1;
            f[flag] = true;
        }
        let deps = Deps {
            pop_prev: f[0],
            pop_next: f[1],
            push_prev: f[2],
            push_next: f[3],
        };
        code.push(Insn { op, deps });
    }
    code.push(Insn {
        op: Op::Finish(Finish {}),
        deps: Deps::default(),
    });
    code
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn controller_verilog_equals_twin(seed in 0u64..1_000_000, cfg in 0usize..4) {
        let (preset, q, t) = [("tiny", 4, 8), ("tiny", 1, 1), ("ulx3s", 8, 8), ("tiny", 2, 2)][cfg];
        check(preset, q, t, seed);
    }
}
