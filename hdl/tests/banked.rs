//! The banked array's RTL (`systole_hdl::BankedArray`) against its emulator twin
//! (`systole_emulator::banked::BankedArray`), every output on every cycle: random stimuli
//! (captures and lines of both banks at any time) and the port sequences of chained
//! matmuls as the compute sequencer drives them (`banked::matmul_port`).

use proptest::prelude::*;
use systole_arch::isa::MatMul;
use systole_arch::ArchConfig;
use systole_emulator::array::Array as FastArray;
use systole_emulator::banked::{self, BankedArray as Twin, BankedIn};
use systole_emulator::buffer::Buffers;
use systole_hdl::cast::{from_signed, to_signed};
use systole_hdl::sim::{prepare, settle, tick};
use systole_hdl::BankedArray;

fn line(n: usize) -> impl Strategy<Value = Vec<i8>> {
    proptest::collection::vec(prop_oneof![Just(-128i8), Just(127), any::<i8>()], n)
}

fn random_cycles(rows: usize, cols: usize) -> impl Strategy<Value = Vec<BankedIn>> {
    let cycle = (
        line(rows),
        any::<(bool, bool, bool)>(),
        line(cols),
        any::<(bool, bool)>(),
    )
        .prop_map(
            |(a, (valid, bank, binary), w, (w_first, w_bank))| BankedIn {
                a,
                valid,
                bank,
                binary,
                w,
                w_first,
                w_bank,
            },
        );
    proptest::collection::vec(cycle, 1..3 * (rows + cols) + 8)
}

/// Runs the RTL and the twin over `inputs`, comparing every output of every cycle; returns
/// the number of result lines seen.
fn run(rows: usize, cols: usize, bits: u32, inputs: &[BankedIn]) -> Result<usize, TestCaseError> {
    let mut rtl = prepare(BankedArray::with_xnor_bits(rows, cols, bits));
    let mut twin = Twin::new(rows, cols, bits);
    let mut results = 0;
    for (t, i) in inputs.iter().enumerate() {
        for (s, &v) in rtl.a_in.iter_mut().zip(&i.a) {
            s.next = to_signed(v as i64);
        }
        for (s, &v) in rtl.w_in.iter_mut().zip(&i.w) {
            s.next = to_signed(v as i64);
        }
        rtl.in_valid.next = i.valid;
        rtl.in_bank.next = i.bank;
        rtl.binary.next = i.binary;
        rtl.w_first.next = i.w_first;
        rtl.w_bank.next = i.w_bank;
        settle(&mut rtl);
        let got: Vec<i32> = rtl
            .acc_out
            .iter()
            .map(|s| from_signed(s.val()) as i32)
            .collect();
        let (acc, valid) = twin.outputs();
        results += valid as usize;
        prop_assert_eq!(
            (got, rtl.out_valid.val(), rtl.pre_valid.val()),
            (acc, valid, twin.pre_valid(i.valid)),
            "{}x{} banked array, cycle {}",
            rows,
            cols,
            t
        );
        tick(&mut rtl);
        twin.step(i);
    }
    Ok(results)
}

/// The port of a plain `matmul` and a chain after it, cycle by cycle.
fn chain_cycles(rows: usize, cols: usize, seed: &[i8], m: u32, tiles: (u32, u32)) -> Vec<BankedIn> {
    let mut arch = ArchConfig::preset("tiny").unwrap();
    (arch.array.rows, arch.array.cols) = (rows as u32, cols as u32);
    let mut bufs = Buffers::new(&arch);
    let mut byte = seed.iter().copied().cycle();
    for v in bufs.inp.iter_mut().chain(bufs.wgt.iter_mut()) {
        *v = byte.next().unwrap();
    }
    let fast = FastArray::new(rows, cols);
    let mut v = Vec::new();
    for o in 0..rows as u64 {
        v.push(banked::ldw_port(&fast, 0, o, &bufs, false));
    }
    let chain = MatMul {
        inp: 1,
        acc: 0,
        m,
        outer: tiles.0,
        inner: tiles.1,
        wgt: 3,
        outer_step: 2,
        groups: 2,
        group_step: 3,
        ..Default::default()
    };
    let plain = MatMul {
        m,
        ..Default::default()
    };
    for (op, bank) in [(plain, true), (chain, true)] {
        for o in 0..fast.matmul_cycles(&op) {
            v.push(banked::matmul_port(&fast, &op, o, &bufs, bank));
        }
    }
    v
}

fn shape() -> impl Strategy<Value = (usize, usize)> {
    prop_oneof![
        Just((1, 1)),
        Just((2, 3)),
        Just((3, 2)),
        Just((4, 4)),
        (1usize..6, 1usize..6),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn banked_array_equals_twin_random(
        (rows, cols, inputs) in shape().prop_flat_map(|(r, c)| (Just(r), Just(c), random_cycles(r, c))),
        bits in prop_oneof![Just(1u32), Just(8)],
    ) {
        run(rows, cols, bits, &inputs)?;
    }

    #[test]
    fn banked_array_equals_twin_chains(
        (rows, cols) in shape(),
        seed in proptest::collection::vec(any::<i8>(), 1..32),
        m in 1u32..9,
        tiles in (1u32..3, 1u32..3),
    ) {
        let inputs = chain_cycles(rows, cols, &seed, m, tiles);
        let results = run(rows, cols, 8, &inputs)?;
        prop_assert_eq!(results as u32, m * (1 + 2 * tiles.0 * tiles.1));
    }
}
