//! Whole-accelerator co-simulation: the Verilog of `systole_top`, compiled by Verilator and
//! driven by `harness.cpp` (DRAM with the emulator's timing), against the emulator on random
//! valid programs (`systole_emulator::randprog`): the same DRAM bytes and the same cycle count.
//! Needs verilator on PATH (scripts/test.sh installs it); fails without it.

use systole_arch::config::Precision;
use systole_arch::isa::Op;
use systole_arch::ArchConfig;
use systole_emulator::randprog::{
    banked_arch, load_ahead_arch, random_program, store_ahead_arch, store_requant_arch,
};
use systole_emulator::IoData;
use systole_hdl::cosim::{cosim, Rtl};

/// What a batch exercised: the stall cycles the emulator counted (port, push, dispatch,
/// token) and the features its programs used.
#[derive(Default, Debug)]
struct Stalls {
    /// Chained matmuls and requantizing stores among the programs' instructions.
    chains: usize,
    requant_stores: usize,
    port: u64,
    push: u64,
    dispatch: u64,
    token: u64,
    /// Chains started while the one before drained.
    overlapped: u64,
    /// Loads started while the one before took its beats.
    ahead: u64,
    /// Stores started while the one before waited for its acknowledgement.
    store_ahead: u64,
}

fn check_random(arch: &ArchConfig, seeds: std::ops::Range<u64>, n: usize) -> Stalls {
    let mut st = Stalls::default();
    let rtl = Rtl::cached(arch, false).unwrap_or_else(|e| panic!("{e}"));
    let mut failures = Vec::new();
    let (mut nonzero, mut cycles) = (0usize, 0u64);
    // Mixed precision: binary matmuls and packed stores among the int8 ones.
    let (mut binary, mut int8, mut packed) = (0usize, 0usize, 0usize);
    for seed in seeds.clone() {
        let prog = random_program(arch, seed, n);
        for insn in &prog.code {
            match &insn.op {
                Op::MatMul(mm) if mm.binary => binary += 1,
                Op::MatMul(_) => int8 += 1,
                Op::Store(st) if st.pack => packed += 1,
                _ => {}
            }
            match &insn.op {
                Op::MatMul(mm) if mm.is_chain() => st.chains += 1,
                Op::Store(s) if s.requant => st.requant_stores += 1,
                _ => {}
            }
        }
        let inputs: Vec<_> = prog.inputs().map(|_| unreachable!()).collect();
        let c = cosim(&rtl, &prog, &inputs, None).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        nonzero += c
            .rtl
            .outputs
            .iter()
            .map(|o| o.to_i64().iter().filter(|&&v| v != 0).count())
            .sum::<usize>();
        cycles += c.emu_cycles;
        let s = &c.emu_stats;
        for u in [&s.load, &s.compute, &s.store] {
            st.port += u.port_stall_cycles;
            st.push += u.push_stall_cycles;
            st.token += u.token_stall_cycles;
        }
        st.dispatch += s.dispatch_stall_cycles;
        st.overlapped += s.compute.overlapped;
        st.ahead += s.load.overlapped;
        st.store_ahead += s.store.overlapped;
        if !c.ok() {
            let diff = c
                .rtl
                .outputs
                .iter()
                .zip(&c.emu_outputs)
                .filter(|(a, b)| a != b)
                .count();
            failures.push(format!(
                "seed {seed}: rtl {} cycles, emulator {} cycles, {diff} output(s) differ",
                c.rtl.cycles, c.emu_cycles
            ));
        }
    }
    eprintln!(
        "{}: {} programs, {cycles} cycles, {nonzero} non-zero output bytes, stalls {st:?}",
        arch.name,
        seeds.end - seeds.start
    );
    assert!(
        nonzero > 0,
        "the programs stored nothing: the comparison is vacuous"
    );
    eprintln!(
        "{}: {binary} binary and {int8} int8 matmuls, {packed} packed stores",
        arch.name
    );
    if arch.supports(Precision::Binary) {
        assert!(
            binary > 0 && int8 > 0 && packed > 0,
            "no mixed precision: {binary} binary / {int8} int8 matmuls, {packed} packed stores"
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} programs differ on {}:\n{}",
        failures.len(),
        seeds.end - seeds.start,
        arch.name,
        failures.join("\n")
    );
    st
}

#[test]
fn random_programs_tiny() {
    check_random(&ArchConfig::preset("tiny").unwrap(), 0..60, 80);
}

#[test]
fn random_programs_ulx3s() {
    check_random(&ArchConfig::preset("ulx3s").unwrap(), 100..125, 80);
}

/// Binary mode with 2-bit words (`array.xnor_bits = 2`): masked popcounts in the PEs, 2 bits
/// a byte in packed stores.
#[test]
fn random_programs_ulx3s_xnor2() {
    let mut arch = ArchConfig::preset("ulx3s").unwrap();
    arch.array.xnor_bits = 2;
    arch.name = "ulx3s_xnor2".into();
    check_random(&arch, 400..415, 80);
}

/// 16 x 16 with 16-byte beats (128-bit DRAM data port).
/// The UP5K machine: no integer PPU lanes (the random programs use the threshold unit alone),
/// narrow counters (one-deep queues, two tokens, 256 instructions), a 2 x 2 array.
#[test]
fn random_programs_up5k() {
    let arch = ArchConfig::preset("up5k").unwrap();
    assert!(!arch.ppu.integer_lanes);
    check_random(&arch, 400..440, 80);
}

/// Two weight registers per PE (`array.weight_banks = 2`): random programs with chained
/// matmuls (up to 3 x 3 tiles, streams shorter and longer than the array is tall) among
/// `ldw` and plain matmuls, on 4 x 4, on 8 x 8 with binary mode, and on 2 x 2.
#[test]
fn random_programs_banked() {
    for (arch, seeds) in [
        (banked_arch("tiny", 4, 4, 4, false), 0..80),
        (banked_arch("ulx3s", 8, 8, 8, false), 100..115),
        (banked_arch("tiny", 2, 2, 2, false), 200..260),
    ] {
        let st = check_random(&arch, seeds, 80);
        assert!(st.chains >= 20, "{}: {} chains", arch.name, st.chains);
    }
}

/// Overlapped chains (`array.chain_overlap`): chains right behind chains start while the one
/// before drains (its last input lines, results and tokens still on their way), on 4 x 4,
/// on 8 x 8 with binary mode, and on 2 x 2 with one token of room (drained chains wait to
/// push, and the chain after them to retire).
#[test]
fn random_programs_overlapped() {
    let mut one_token = banked_arch("tiny", 2, 2, 2, true);
    one_token.controller.token_depth = 1;
    for (arch, seeds) in [
        (banked_arch("tiny", 4, 4, 4, true), 0..150),
        (banked_arch("ulx3s", 8, 8, 8, true), 100..130),
        (one_token, 200..300),
    ] {
        let st = check_random(&arch, seeds, 80);
        assert!(
            st.overlapped >= 20,
            "{}: {} overlapped chains",
            arch.name,
            st.overlapped
        );
        let one_token = arch.controller.token_depth == 1;
        assert!(!one_token || st.push > 0, "{}: no push stalls", arch.name);
    }
}

/// Loads ahead (`dram.load_ahead`): a load issues its requests while the one before takes
/// its beats, and writes after it; on `tiny`, on 8 x 8 with overlapped chains and binary
/// mode, and on `tiny` with one token of room and a short latency (loads that push wait
/// behind the older load in the drain slot).
#[test]
fn random_programs_load_ahead() {
    for (arch, seeds) in [
        (
            load_ahead_arch(ArchConfig::preset("tiny").unwrap(), 8, 8),
            0..100,
        ),
        (
            load_ahead_arch(banked_arch("ulx3s", 8, 8, 8, true), 20, 8),
            100..130,
        ),
        (
            load_ahead_arch(ArchConfig::preset("tiny").unwrap(), 3, 1),
            200..300,
        ),
    ] {
        let st = check_random(&arch, seeds, 80);
        assert!(st.ahead >= 20, "{}: {} loads ahead", arch.name, st.ahead);
        let one_token = arch.controller.token_depth == 1;
        assert!(!one_token || st.push > 0, "{}: no push stalls", arch.name);
    }
}

/// Stores ahead (`dram.store_ahead`): a store sends while the one before waits for its
/// acknowledgement, which retires it; on `tiny`, on 8 x 8 with overlapped chains, loads
/// ahead, requantizing stores and binary mode, and on `tiny` with one token of room and a
/// short latency (stores that push wait behind the older store in the drain slot).
#[test]
fn random_programs_store_ahead() {
    for (arch, seeds) in [
        (
            store_ahead_arch(ArchConfig::preset("tiny").unwrap(), 8, 8),
            0..100,
        ),
        (
            store_ahead_arch(
                store_requant_arch(load_ahead_arch(banked_arch("ulx3s", 8, 8, 8, true), 20, 8)),
                20,
                8,
            ),
            100..130,
        ),
        (
            store_ahead_arch(ArchConfig::preset("tiny").unwrap(), 3, 1),
            200..300,
        ),
    ] {
        let st = check_random(&arch, seeds, 80);
        assert!(
            st.store_ahead >= 20,
            "{}: {} stores ahead",
            arch.name,
            st.store_ahead
        );
        let one_token = arch.controller.token_depth == 1;
        assert!(!one_token || st.push > 0, "{}: no push stalls", arch.name);
    }
}

/// Requantizing stores (`ppu.store_requant`): parameter lines into the store engine's
/// registers, lines through its integer and binary32 lanes, beats three cycles later; on
/// `tiny`, on 8 x 8 with overlapped chains, loads ahead and binary mode, and on `tiny`
/// without binary32 lanes and with one token of room.
#[test]
fn random_programs_store_requant() {
    let mut no_fp32 = load_ahead_arch(ArchConfig::preset("tiny").unwrap(), 3, 1);
    no_fp32.ppu.fp32_requant = false;
    for (arch, seeds) in [
        (
            store_requant_arch(ArchConfig::preset("tiny").unwrap()),
            0..100,
        ),
        (
            store_requant_arch(load_ahead_arch(banked_arch("ulx3s", 8, 8, 8, true), 20, 8)),
            100..130,
        ),
        (store_requant_arch(no_fp32), 200..300),
    ] {
        let stores = check_random(&arch, seeds, 80).requant_stores;
        assert!(stores >= 20, "{}: {stores} requantizing stores", arch.name);
    }
}

/// A model that has not finished by `run_limited`'s limit stops there with the harness's
/// error instead of running on (cosim gives the RTL twice the emulator's cycles).
#[test]
fn rtl_runs_stop_at_their_cycle_limit() {
    let arch = ArchConfig::preset("tiny").unwrap();
    let rtl = Rtl::cached(&arch, false).unwrap_or_else(|e| panic!("{e}"));
    let prog = random_program(&arch, 0, 80);
    let inputs: Vec<IoData> = Vec::new();
    let full = rtl.run(&prog, &inputs, None).unwrap();
    let e = rtl
        .run_limited(&prog, &inputs, None, full.cycles / 2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no finish within"), "{e}");
    let again = rtl.run_limited(&prog, &inputs, None, full.cycles).unwrap();
    assert_eq!(again.cycles, full.cycles);
}

#[test]
fn random_programs_edge() {
    check_random(&ArchConfig::preset("edge").unwrap(), 200..215, 60);
}

/// A directed GEMM on `arch`: C = 2 * A x W through `ldw`, `matmul` and an accumulating
/// `matmul`, stored as int32 lines; the RTL must equal both the emulator and a plain product.
fn check_gemm(arch: &ArchConfig, seed: u64) {
    let (r, c) = (arch.array.rows as usize, arch.array.cols as usize);
    let m = 16usize;
    let mut rng = systole_emulator::randprog::Rng::new(seed);
    let a: Vec<i8> = (0..m * r).map(|_| rng.next_u64() as i8).collect();
    let w: Vec<i8> = (0..r * c).map(|_| rng.next_u64() as i8).collect();
    let hex = |v: &[i8]| -> String {
        v.chunks(16)
            .map(|ch| {
                ch.iter()
                    .map(|b| format!("{:02x}", *b as u8))
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (wa, oa) = (m * r, m * r + r * c);
    let text = format!(
        ".arch {name}\n.dram {dram}\n.output c i32 [{m},{c}] @{oa}\n.data 0\n.hex {ha}\n.data {wa}\n.hex {hw}\n\
         load buf=wgt sram=0 dram={wa} rows=1 cols={r} push_next\n\
         load buf=inp sram=0 dram=0 rows=1 cols={m} push_next\n\
         ldw wgt=0 pop_prev\n\
         matmul inp=0 acc=0 m={m} pop_prev\n\
         matmul inp=0 acc=0 m={m} accumulate=1 push_next\n\
         store buf=acc sram=0 dram={oa} rows=1 cols={m} pop_prev\n\
         finish\n",
        name = arch.name,
        dram = oa + 4 * m * c,
        ha = hex(&a),
        hw = hex(&w),
    );
    let prog = systole_arch::asm::assemble(&text, "gemm").unwrap();
    let rtl = Rtl::cached(arch, false).unwrap_or_else(|e| panic!("{e}"));
    let res = cosim(&rtl, &prog, &[], None).unwrap();
    let want: Vec<i32> = (0..m)
        .flat_map(|i| {
            let (a, w) = (&a, &w);
            (0..c).map(move |n| {
                2 * (0..r)
                    .map(|k| a[i * r + k] as i32 * w[k * c + n] as i32)
                    .sum::<i32>()
            })
        })
        .collect();
    assert_eq!(res.emu_outputs, vec![IoData::I32(want.clone())], "emulator");
    assert_eq!(res.rtl.outputs, vec![IoData::I32(want)], "RTL");
    assert_eq!(res.rtl.cycles, res.emu_cycles, "cycles");
}

#[test]
fn gemm_tiny() {
    for seed in 0..10 {
        check_gemm(&ArchConfig::preset("tiny").unwrap(), seed);
    }
}

#[test]
fn gemm_ulx3s() {
    for seed in 10..15 {
        check_gemm(&ArchConfig::preset("ulx3s").unwrap(), seed);
    }
}

/// `thresh` on the ulx3s RTL at the counts where the binary search's shape changes (a stage
/// becoming used, the single-entry top stage loaded in the last load cycle) with ascending
/// thresholds: the emulator gives #{j: x >= thr_j} and the RTL the same bytes in the same
/// cycles; and once with thresholds in random order, where both give the ISA's search result.
#[test]
fn thresh_counts_ulx3s() {
    let arch = ArchConfig::preset("ulx3s").unwrap();
    let c = arch.array.cols as usize;
    let rtl = Rtl::cached(&arch, false).unwrap_or_else(|e| panic!("{e}"));
    let mut rng = systole_emulator::randprog::Rng::new(7);
    for (count, sorted) in [
        (1, true),
        (2, true),
        (3, true),
        (4, true),
        (7, true),
        (8, true),
        (9, true),
        (64, true),
        (127, true),
        (128, true),
        (129, true),
        (200, true),
        (255, true),
        (255, false),
        (40, false),
    ] {
        let m = 24usize;
        let mut thr: Vec<Vec<i32>> = (0..c)
            .map(|_| {
                (0..count)
                    .map(|_| (rng.next_u64() % 2001) as i32 - 1000)
                    .collect()
            })
            .collect();
        if sorted {
            thr.iter_mut().for_each(|t| t.sort());
        }
        let src: Vec<i32> = (0..m * c)
            .map(|_| (rng.next_u64() % 2201) as i32 - 1100)
            .collect();
        let mut bytes = Vec::new();
        for j in 0..count {
            for t in &thr {
                bytes.extend_from_slice(&t[j].to_le_bytes());
            }
        }
        for v in &src {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let hex: Vec<String> = bytes
            .chunks(32)
            .map(|ch| ch.iter().map(|b| format!("{b:02x}")).collect())
            .collect();
        let oa = bytes.len();
        let text = format!(
            ".arch ulx3s\n.dram {dram}\n.output y i8 [{m},{c}] @{oa}\n.data 0\n.hex {hex}\n\
             load buf=acc sram=0 dram=0 rows=1 cols={lines} push_next\n\
             thresh dst=0 src={count} thr=0 count={count} m={m} base=-100 step=1 pop_prev push_next\n\
             store buf=out sram=0 dram={oa} rows=1 cols={m} pop_prev\n\
             finish\n",
            dram = oa + m * c,
            hex = hex.join(" "),
            lines = count + m,
        );
        let prog = systole_arch::asm::assemble(&text, "thresh").unwrap();
        let res = cosim(&rtl, &prog, &[], None).unwrap();
        let ctx = format!("count {count}, sorted {sorted}");
        if sorted {
            let want: Vec<i8> = (0..m * c)
                .map(|i| {
                    let n = thr[i % c].iter().filter(|&&t| src[i] >= t).count() as i32;
                    (n - 100).clamp(-128, 127) as i8
                })
                .collect();
            assert_eq!(res.emu_outputs, vec![IoData::I8(want)], "emulator, {ctx}");
        }
        assert_eq!(res.rtl.outputs, res.emu_outputs, "RTL vs emulator, {ctx}");
        assert_eq!(res.rtl.cycles, res.emu_cycles, "cycles, {ctx}");
    }
}

/// `tiny` with single-port (`1rw`) input, weight and output banks, one-entry command queues
/// and one-token queues: load/compute and store/compute conflicts on a shared port, dispatch
/// stalls and push stalls.
fn tiny_small() -> (ArchConfig, String) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../arch/presets/tiny.toml"
    ))
    .unwrap();
    let mut out = String::new();
    let mut section = String::new();
    for line in text.lines() {
        if line.starts_with('[') {
            section = line.to_string();
        }
        if line.starts_with("ports") && section != "[buffers.accumulator]" {
            out.push_str("ports = \"1rw\"\n");
        } else if line.starts_with("name") {
            out.push_str("name = \"tiny_small\"\n");
        } else if line.starts_with("queue_depth") {
            out.push_str("queue_depth = 1\n");
        } else if line.starts_with("token_depth") {
            out.push_str("token_depth = 1\n");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    // A 4-stage threshold search (at most 15 thresholds) instead of 8 stages, and no binary32
    // requantizer lanes.
    out.push_str("\n[ppu]\nmax_thresholds = 15\nfp32_requant = false\n");
    (ArchConfig::from_toml_str(&out, "tiny_small").unwrap(), out)
}

#[test]
fn random_programs_single_port() {
    let st = check_random(&tiny_small().0, 300..330, 80);
    assert!(
        st.port > 0 && st.dispatch > 0,
        "no port conflict or dispatch stall exercised: {st:?}"
    );
}

/// With one-token queues the second load finishes while the first token is still queued, so it
/// waits in the retiring state for room (push stalls), on the RTL exactly as in the emulator.
#[test]
fn push_stalls() {
    let (arch, text) = tiny_small();
    let mut prog = systole_arch::asm::assemble(
        ".arch tiny\n.dram 1024\n.output c i32 [8,4] @512\n.data 0\n.hex 0102030405060708 090a0b0c0d0e0f10\n\
         load buf=wgt sram=0 dram=0 rows=1 cols=4 push_next\n\
         load buf=inp sram=0 dram=0 rows=1 cols=4 push_next\n\
         load buf=inp sram=4 dram=0 rows=1 cols=4 push_next\n\
         matmul inp=8 acc=8 m=40\n\
         ldw wgt=0 pop_prev\n\
         matmul inp=0 acc=0 m=4 pop_prev\n\
         matmul inp=4 acc=4 m=4 pop_prev push_next\n\
         store buf=acc sram=0 dram=512 rows=1 cols=8 pop_prev push_prev\n\
         nop unit=compute pop_next\n\
         finish\n",
        "push_stalls",
    )
    .unwrap();
    prog.fingerprint = arch.fingerprint();
    prog.arch_toml = text.clone();
    let rtl = Rtl::cached(&arch, false).unwrap_or_else(|e| panic!("{e}"));
    let c = cosim(&rtl, &prog, &[], None).unwrap();
    assert!(
        c.emu_stats.load.push_stall_cycles > 0,
        "{:?}",
        c.emu_stats.load
    );
    assert_eq!(c.rtl.outputs, c.emu_outputs);
    assert_eq!(c.rtl.cycles, c.emu_cycles);
}

/// The whole machine's Verilog (tiny) elaborates in yosys with every hierarchy resolved, passes
/// `check -assert` and infers no latch.
#[test]
fn top_verilog_has_no_latch() {
    let arch = ArchConfig::preset("tiny").unwrap();
    let dir = tempfile::tempdir().unwrap();
    systole_hdl::top::write_rtl(&arch, dir.path()).unwrap();
    let script = format!(
        "read_verilog {}; hierarchy -check -top systole_top; proc; check -assert; \
         select -assert-none t:$dlatch t:$adlatch t:$dlatchsr t:$sr",
        systole_hdl::top::RTL_FILES.join(" ")
    );
    let out = std::process::Command::new("yosys")
        .current_dir(dir.path())
        .args(["-q", "-p", &script])
        .output()
        .unwrap_or_else(|e| panic!("cannot run yosys (install it: scripts/test.sh): {e}"));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
