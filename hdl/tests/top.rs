//! Whole-accelerator co-simulation: the Verilog of `systole_top`, compiled by Verilator and
//! driven by `harness.cpp` (DRAM with the emulator's timing), against the emulator on random
//! valid programs (`systole_emulator::randprog`): the same DRAM bytes and the same cycle count.
//! Needs verilator on PATH (scripts/test.sh installs it); fails without it.

use systole_arch::ArchConfig;
use systole_emulator::randprog::random_program;
use systole_emulator::IoData;
use systole_hdl::cosim::{cosim, Rtl};

fn check_random(arch: &ArchConfig, seeds: std::ops::Range<u64>, n: usize) {
    let rtl = Rtl::cached(arch, false).unwrap_or_else(|e| panic!("{e}"));
    let mut failures = Vec::new();
    let (mut nonzero, mut cycles) = (0usize, 0u64);
    for seed in seeds.clone() {
        let prog = random_program(arch, seed, n);
        let inputs: Vec<_> = prog.inputs().map(|_| unreachable!()).collect();
        let c = cosim(&rtl, &prog, &inputs, None).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        nonzero += c
            .rtl
            .outputs
            .iter()
            .map(|o| o.to_i64().iter().filter(|&&v| v != 0).count())
            .sum::<usize>();
        cycles += c.emu_cycles;
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
        "{}: {} programs, {cycles} cycles, {nonzero} non-zero output bytes",
        arch.name,
        seeds.end - seeds.start
    );
    assert!(
        nonzero > 0,
        "the programs stored nothing: the comparison is vacuous"
    );
    assert!(
        failures.is_empty(),
        "{} of {} programs differ on {}:\n{}",
        failures.len(),
        seeds.end - seeds.start,
        arch.name,
        failures.join("\n")
    );
}

#[test]
fn random_programs_tiny() {
    check_random(&ArchConfig::preset("tiny").unwrap(), 0..60, 80);
}

#[test]
fn random_programs_ulx3s() {
    check_random(&ArchConfig::preset("ulx3s").unwrap(), 100..125, 80);
}

/// 16 x 16 with 16-byte beats (128-bit DRAM data port).
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
    check_gemm(&ArchConfig::preset("tiny").unwrap(), 7);
}
