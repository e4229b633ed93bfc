//! The PE's RTL against its emulator twin (`systole_emulator::systolic::Pe`), every cycle.

use proptest::prelude::*;
use systole_emulator::systolic::{Pe as Twin, PeIn, PeOut};
use systole_hdl::cast::{from_signed, to_signed};
use systole_hdl::sim::{prepare, settle, tick};
use systole_hdl::Pe;

fn int8() -> impl Strategy<Value = i8> {
    prop_oneof![Just(-128i8), Just(127), Just(0), Just(-1), any::<i8>()]
}

fn int32() -> impl Strategy<Value = i32> {
    prop_oneof![Just(i32::MIN), Just(i32::MAX), any::<i32>(), -1000i32..1000]
}

fn stimulus() -> impl Strategy<Value = PeIn> {
    (int8(), int32(), int8(), any::<bool>(), any::<bool>()).prop_map(
        |(a, psum, w, w_load, binary)| PeIn {
            a,
            psum,
            w,
            w_load,
            binary,
        },
    )
}

/// Runs both models over `inputs`, comparing the outputs of every cycle.
fn run(inputs: &[PeIn]) -> Result<(), TestCaseError> {
    let mut rtl = prepare(Pe::default());
    let mut twin = Twin::default();
    for (t, i) in inputs.iter().enumerate() {
        rtl.a_in.next = to_signed(i.a as i64);
        rtl.psum_in.next = to_signed(i.psum as i64);
        rtl.w_in.next = to_signed(i.w as i64);
        rtl.w_load.next = i.w_load;
        rtl.binary.next = i.binary;
        settle(&mut rtl);
        let got = PeOut {
            a: from_signed(rtl.a_out.val()) as i8,
            psum: from_signed(rtl.psum_out.val()) as i32,
            w: from_signed(rtl.w_out.val()) as i8,
            binary: rtl.binary_out.val(),
        };
        prop_assert_eq!(got, twin.outputs(), "cycle {}", t);
        tick(&mut rtl);
        twin.step(i);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn pe_equals_twin(inputs in proptest::collection::vec(stimulus(), 1..40)) {
        run(&inputs)?;
    }
}

#[test]
fn pe_extreme_products() {
    // Every extreme pair, after a weight load, and the wrapping sum at both int32 ends.
    let ext = [-128i8, -127, -1, 0, 1, 127];
    let mut inputs = Vec::new();
    for &w in &ext {
        inputs.push(PeIn {
            a: 0,
            psum: 0,
            w,
            w_load: true,
            binary: false,
        });
        for &a in &ext {
            for psum in [i32::MIN, -1, 0, i32::MAX] {
                for binary in [false, true] {
                    inputs.push(PeIn {
                        a,
                        psum,
                        w: 0,
                        w_load: false,
                        binary,
                    });
                }
            }
        }
    }
    run(&inputs).unwrap();
}
