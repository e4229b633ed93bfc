//! The systolic array's RTL against its emulator twin
//! (`systole_emulator::systolic::SystolicArray`), every output on every cycle, for the
//! preset shapes and odd ones, with random stimuli and with `ldw` + `matmul` sequences.

use proptest::prelude::*;
use systole_arch::ArchConfig;
use systole_emulator::systolic::{ArrayIn, ArrayOut, SystolicArray};
use systole_hdl::cast::{from_signed, to_signed};
use systole_hdl::sim::{prepare, settle, tick};
use systole_hdl::Array;

fn int8() -> impl Strategy<Value = i8> {
    prop_oneof![Just(-128i8), Just(127), any::<i8>()]
}

fn line(n: usize) -> impl Strategy<Value = Vec<i8>> {
    proptest::collection::vec(int8(), n)
}

/// Arbitrary per-cycle inputs: weights may load while data flows.
fn random_cycles(rows: usize, cols: usize) -> impl Strategy<Value = Vec<ArrayIn>> {
    let cycle = (
        line(rows),
        any::<bool>(),
        line(cols),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(a, valid, w, w_load, binary)| ArrayIn {
            a,
            valid,
            w,
            w_load,
            binary,
        });
    proptest::collection::vec(cycle, 1..2 * (rows + cols) + 8)
}

/// `ldw` (w_load for `rows` cycles) then `matmul` of m lines and its drain, as the compute
/// unit drives them, repeated for a second tile.
fn matmul_cycles(rows: usize, cols: usize) -> impl Strategy<Value = Vec<ArrayIn>> {
    let tile = (
        proptest::collection::vec(line(cols), rows),
        proptest::collection::vec(line(rows), 0..6),
        any::<bool>(),
    );
    proptest::collection::vec(tile, 1..3).prop_map(move |tiles| {
        let mut v = Vec::new();
        for (w, a, binary) in tiles {
            for wl in w {
                v.push(ArrayIn {
                    a: vec![0; rows],
                    valid: false,
                    w: wl,
                    w_load: true,
                    binary: false,
                });
            }
            // The matmul's mode (int8 or XNOR-popcount) holds through its drain.
            let m = a.len();
            for al in a {
                v.push(ArrayIn {
                    a: al,
                    valid: true,
                    w: vec![0; cols],
                    w_load: false,
                    binary,
                });
            }
            for _ in 0..rows + cols - 1 + usize::from(m == 0) {
                v.push(ArrayIn {
                    a: vec![0; rows],
                    valid: false,
                    w: vec![0; cols],
                    w_load: false,
                    binary,
                });
            }
        }
        v
    })
}

/// Runs the RTL and the twin over `inputs`, comparing every output of every cycle; returns
/// the number of valid result lines seen.
fn run(rows: usize, cols: usize, inputs: &[ArrayIn]) -> Result<usize, TestCaseError> {
    run_bits(rows, cols, inputs, 8)
}

/// `run` with binary mode counting the low `bits` bits of each byte.
fn run_bits(
    rows: usize,
    cols: usize,
    inputs: &[ArrayIn],
    bits: u32,
) -> Result<usize, TestCaseError> {
    let mut rtl = prepare(Array::with_xnor_bits(rows, cols, bits));
    let mut twin = SystolicArray::with_xnor_bits(rows, cols, bits);
    let mut results = 0;
    for (t, i) in inputs.iter().enumerate() {
        for (s, &v) in rtl.a_in.iter_mut().zip(&i.a) {
            s.next = to_signed(v as i64);
        }
        for (s, &v) in rtl.w_in.iter_mut().zip(&i.w) {
            s.next = to_signed(v as i64);
        }
        rtl.in_valid.next = i.valid;
        rtl.w_load.next = i.w_load;
        rtl.binary.next = i.binary;
        settle(&mut rtl);
        let got = ArrayOut {
            acc: rtl
                .acc_out
                .iter()
                .map(|s| from_signed(s.val()) as i32)
                .collect(),
            valid: rtl.out_valid.val(),
        };
        let want = twin.outputs();
        results += want.valid as usize;
        prop_assert_eq!(got, want, "{}x{} array, cycle {}", rows, cols, t);
        tick(&mut rtl);
        twin.step(i);
    }
    Ok(results)
}

fn preset_shape(name: &str) -> (usize, usize) {
    let a = ArchConfig::preset(name).unwrap().array;
    (a.rows as usize, a.cols as usize)
}

/// Odd shapes and the small presets (tiny 4x4, ulx3s 8x8).
fn small_shape() -> impl Strategy<Value = (usize, usize)> {
    prop_oneof![
        Just((1, 1)),
        Just((2, 3)),
        Just((3, 5)),
        Just((5, 2)),
        Just((1, 4)),
        Just((4, 1)),
        Just(preset_shape("tiny")),
        Just(preset_shape("ulx3s")),
        (1usize..7, 1usize..7),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn array_equals_twin_random(
        (rows, cols, inputs) in small_shape()
            .prop_flat_map(|(r, c)| (Just(r), Just(c), random_cycles(r, c)))
    ) {
        run(rows, cols, &inputs)?;
    }

    #[test]
    fn array_equals_twin_matmul(
        (rows, cols, inputs) in small_shape()
            .prop_flat_map(|(r, c)| (Just(r), Just(c), matmul_cycles(r, c))),
        bits in prop_oneof![Just(1u32), Just(2), Just(4), Just(8)],
    ) {
        run_bits(rows, cols, &inputs, bits)?;
    }
}

/// The large presets (edge 16x16, scalesim32 32x32): few cases, rust-hdl simulates them
/// slowly.
#[test]
fn array_equals_twin_large_presets() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRunner};
    for (name, cases) in [("edge", 3), ("scalesim32", 1)] {
        let (rows, cols) = preset_shape(name);
        let mut runner = TestRunner::new(Config::default());
        for _ in 0..cases {
            let inputs = matmul_cycles(rows, cols)
                .new_tree(&mut runner)
                .unwrap()
                .current();
            let results = run(rows, cols, &inputs).unwrap();
            assert!(results > 0 || inputs.iter().all(|i| !i.valid));
        }
    }
}

/// Every PE sees -128 x -128 and 127 x -128 with a full column: the largest sums.
#[test]
fn array_extreme_values() {
    for (rows, cols) in [(1, 1), (2, 3), (3, 5), (4, 4), (8, 8)] {
        let mut v = Vec::new();
        for k in 0..rows {
            let w = if k % 2 == 0 { -128 } else { 127 };
            v.push(ArrayIn {
                a: vec![0; rows],
                valid: false,
                w: vec![w; cols],
                w_load: true,
                binary: false,
            });
        }
        for a in [-128i8, 127, -128, 0] {
            v.push(ArrayIn {
                a: vec![a; rows],
                valid: true,
                w: vec![0; cols],
                w_load: false,
                binary: false,
            });
        }
        for _ in 0..rows + cols {
            v.push(ArrayIn {
                a: vec![0; rows],
                valid: false,
                w: vec![0; cols],
                w_load: false,
                binary: false,
            });
        }
        assert_eq!(run(rows, cols, &v).unwrap(), 4);
    }
}
