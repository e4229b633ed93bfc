//! Random valid programs: the emulator's final memories equal the sequential golden model's,
//! bit for bit, on every preset shape; the race detector and deadlock detector stay quiet.

mod common;

use common::golden::Golden;
use proptest::prelude::*;
use systole_arch::ArchConfig;
use systole_emulator::randprog::{
    banked_arch, load_ahead_arch, random_program, store_ahead_arch, store_requant_arch,
};
use systole_emulator::{Machine, RunOptions};

fn check(arch_name: &str, seed: u64, n: usize) {
    check_arch(&ArchConfig::preset(arch_name).unwrap(), seed, n);
}

/// Checks seed `seed`'s program on `arch`; returns the run's statistics.
fn check_arch(arch: &ArchConfig, seed: u64, n: usize) -> systole_emulator::Stats {
    check_program(arch, &random_program(arch, seed, n), seed)
}

/// Checks `prog` (seed `seed`'s) on `arch`; returns the run's statistics.
fn check_program(
    arch: &ArchConfig,
    prog: &systole_arch::Program,
    seed: u64,
) -> systole_emulator::Stats {
    let arch_name = arch.name.as_str();
    let arch = arch.clone();
    // The image survives a round trip through bytes.
    let prog = systole_arch::Program::from_bytes(&prog.to_bytes().unwrap()).unwrap();
    let mut m = Machine::new(&prog, &arch, &RunOptions::default()).unwrap();
    let cycles = m
        .run()
        .unwrap_or_else(|e| panic!("seed {seed} on {arch_name}: {e}"));
    let mut g = Golden::new(&prog, &arch);
    g.run(&prog);
    let ctx = format!(
        "seed {seed} on {arch_name} ({} insns, {cycles} cycles)",
        prog.code.len()
    );
    assert!(m.dram.bytes == g.dram, "DRAM differs: {ctx}");
    let (r, c) = (g.r, g.c);
    for (i, line) in g.inp.iter().enumerate() {
        assert_eq!(
            &m.bufs.inp[i * r..][..r],
            &line[..],
            "input line {i}: {ctx}"
        );
    }
    for (i, line) in g.wgt.iter().enumerate() {
        assert_eq!(
            &m.bufs.wgt[i * c..][..c],
            &line[..],
            "weight line {i}: {ctx}"
        );
    }
    for (i, line) in g.acc.iter().enumerate() {
        assert_eq!(
            &m.bufs.acc[i * c..][..c],
            &line[..],
            "accumulator line {i}: {ctx}"
        );
    }
    for (i, line) in g.out.iter().enumerate() {
        assert_eq!(
            &m.bufs.out[i * c..][..c],
            &line[..],
            "output line {i}: {ctx}"
        );
    }
    let w: Vec<i32> = g.w.iter().flatten().map(|&x| x as i32).collect();
    assert_eq!(m.array.weights, w, "PE weights: {ctx}");
    // Fast-forwarding changes nothing: stepping every cycle gives the same cycles,
    // statistics and memories.
    let opts = RunOptions {
        step_every_cycle: true,
        ..Default::default()
    };
    let mut s = Machine::new(&prog, &arch, &opts).unwrap();
    assert_eq!(
        s.run().unwrap(),
        cycles,
        "cycle count stepping every cycle: {ctx}"
    );
    assert_eq!(
        s.stats(),
        m.stats(),
        "statistics stepping every cycle: {ctx}"
    );
    assert!(
        s.dram.bytes == m.dram.bytes,
        "DRAM stepping every cycle: {ctx}"
    );
    m.stats()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn random_programs_match_golden_tiny(seed in any::<u64>()) {
        check("tiny", seed, 120);
    }

    #[test]
    fn random_programs_match_golden_ulx3s(seed in any::<u64>()) {
        check("ulx3s", seed, 40);
    }
}

#[test]
fn random_programs_on_every_preset() {
    for arch in ["tiny", "ulx3s", "edge", "scalesim32", "up5k"] {
        for seed in 0..4 {
            check(arch, seed, 50);
        }
    }
}

/// Binary matmuls and packed stores at every word width (`array.xnor_bits`).
#[test]
fn random_binary_programs_at_every_word_width() {
    for bits in [1, 2, 4] {
        let mut arch = ArchConfig::preset("ulx3s").unwrap();
        arch.array.xnor_bits = bits;
        arch.name = format!("ulx3s-xnor{bits}");
        for seed in 0..12 {
            check_arch(&arch, seed, 60);
        }
    }
}

/// Chained matmuls (two weight registers per PE) on small arrays, where chains of up to
/// 3 x 3 tiles with short streams overlap most: golden values, and the same cycles stepping
/// every cycle.
#[test]
fn random_chain_programs() {
    for (rows, cols, beat) in [(4, 4, 4), (8, 4, 4), (2, 2, 2)] {
        let arch = banked_arch("tiny", rows, cols, beat, false);
        let mut chains = 0;
        for seed in 0..16 {
            check_arch(&arch, seed, 80);
            chains += random_program(&arch, seed, 80)
                .code
                .iter()
                .filter(|i| matches!(i.op, systole_arch::isa::Op::MatMul(mm) if mm.is_chain()))
                .count();
        }
        assert!(chains >= 16, "{}: only {chains} chains drawn", arch.name);
    }
}

/// Overlapped chains (`array.chain_overlap`): chains right behind chains, into the same
/// accumulator lines or apart, start while the one before drains; golden values, the same
/// cycles stepping every cycle, and overlaps that really happen.
#[test]
fn random_overlapped_chain_programs() {
    for (rows, cols, beat, tokens) in [(4, 4, 4, 8), (8, 4, 4, 8), (2, 2, 2, 1)] {
        let mut arch = banked_arch("tiny", rows, cols, beat, true);
        arch.controller.token_depth = tokens;
        let (mut overlapped, mut push_stalls) = (0, 0);
        for seed in 0..16 {
            let s = check_arch(&arch, seed, 80);
            overlapped += s.compute.overlapped;
            push_stalls += s.compute.push_stall_cycles;
        }
        assert!(
            overlapped >= 16,
            "{}: only {overlapped} overlapped starts",
            arch.name
        );
        // One token of room: chains wait to push.
        assert!(
            tokens > 1 || push_stalls > 0,
            "{}: no push stalls",
            arch.name
        );
    }
}

/// Loads ahead (`dram.load_ahead`): a load issues its requests while the one before it takes
/// its beats; golden values, the same cycles stepping every cycle, loads that really start
/// ahead, and (with one token of room) loads that wait to push behind the older one.
#[test]
fn random_load_ahead_programs() {
    for (base, latency, tokens) in [
        ("tiny", 6, 8),
        ("ulx3s", 20, 8),
        ("tiny", 3, 1),
        ("overlap", 9, 2),
    ] {
        let base = match base {
            "overlap" => banked_arch("tiny", 4, 4, 4, true),
            name => ArchConfig::preset(name).unwrap(),
        };
        let arch = load_ahead_arch(base, latency, tokens);
        let (mut ahead, mut push_stalls) = (0, 0);
        for seed in 0..16 {
            let s = check_arch(&arch, seed, 80);
            ahead += s.load.overlapped;
            push_stalls += s.load.push_stall_cycles;
        }
        assert!(ahead >= 16, "{}: only {ahead} loads ahead", arch.name);
        assert!(
            tokens > 1 || push_stalls > 0,
            "{}: no push stalls",
            arch.name
        );
        eprintln!(
            "{}: {ahead} loads ahead, {push_stalls} push stalls",
            arch.name
        );
    }
}

/// Stores ahead (`dram.store_ahead`): a store sends while the one before it waits for its
/// acknowledgement; golden values, the same cycles stepping every cycle, stores that really
/// start ahead, and (with one token of room) stores that wait to push behind the older one.
#[test]
fn random_store_ahead_programs() {
    for (base, latency, tokens) in [
        ("tiny", 6, 8),
        ("ulx3s", 20, 8),
        ("tiny", 3, 1),
        ("storeq", 9, 2),
    ] {
        let base = match base {
            "storeq" => {
                store_requant_arch(load_ahead_arch(banked_arch("tiny", 4, 4, 4, true), 9, 2))
            }
            name => ArchConfig::preset(name).unwrap(),
        };
        let arch = store_ahead_arch(base, latency, tokens);
        let (mut ahead, mut push_stalls) = (0, 0);
        for seed in 0..16 {
            let s = check_arch(&arch, seed, 80);
            ahead += s.store.overlapped;
            push_stalls += s.store.push_stall_cycles;
        }
        eprintln!(
            "{}: {ahead} stores ahead, {push_stalls} push stalls",
            arch.name
        );
        assert!(ahead >= 16, "{}: only {ahead} stores ahead", arch.name);
        assert!(
            tokens > 1 || push_stalls > 0,
            "{}: no push stalls",
            arch.name
        );
    }
}

/// Requantizing stores (`ppu.store_requant`): golden values (the zero point and clamps read
/// from the settings line, integer and binary32 lanes) and the same cycles stepping every
/// cycle, on arches with and without banks, overlapped chains and loads ahead.
#[test]
fn random_store_requant_programs() {
    for base in ["tiny", "ulx3s", "overlap", "ahead"] {
        let base = match base {
            "overlap" => banked_arch("tiny", 4, 4, 4, true),
            "ahead" => load_ahead_arch(ArchConfig::preset("tiny").unwrap(), 5, 2),
            name => ArchConfig::preset(name).unwrap(),
        };
        let arch = store_requant_arch(base);
        let mut stores = 0;
        for seed in 0..16 {
            let prog = random_program(&arch, seed, 80);
            stores += prog
                .code
                .iter()
                .filter(|i| matches!(&i.op, systole_arch::isa::Op::Store(s) if s.requant))
                .count();
            check_program(&arch, &prog, seed);
        }
        assert!(
            stores >= 16,
            "{}: only {stores} requantizing stores",
            arch.name
        );
        eprintln!("{}: {stores} requantizing stores", arch.name);
    }
}

/// Seeds that once failed, kept as regression tests.
#[test]
fn regression_seeds() {
    for seed in [1u64, 2, 3] {
        check("tiny", seed, 80);
    }
}
