//! The PPU lane's RTL against its reference model (tests/common), every output on every
//! cycle, for random `alu` and `requant` operands with the int32 extremes.

mod common;

use common::{lane_in, LaneIn, LaneTwin};
use proptest::prelude::*;
use systole_arch::isa::{AluFunc, Round};
use systole_hdl::sim::{prepare, settle, tick};
use systole_hdl::PpuLane;

fn run(inputs: &[LaneIn]) -> Result<(), TestCaseError> {
    let mut rtl = prepare(PpuLane::default());
    let mut twin = LaneTwin::default();
    for (t, i) in inputs.iter().enumerate() {
        rtl.valid.next = i.valid;
        rtl.requant.next = i.requant;
        rtl.func.next = (i.func as u64).into();
        rtl.round.next = (i.round as u64).into();
        rtl.out_unsigned.next = i.unsigned;
        rtl.zp.next = (i.zp as u32 as u64).into();
        rtl.lo.next = (i.lo as u64).into();
        rtl.hi.next = (i.hi as u64).into();
        rtl.shift.next = (i.shift as u64).into();
        rtl.a.next = (i.a as u32 as u64).into();
        rtl.b.next = (i.b as u32 as u64).into();
        settle(&mut rtl);
        let got = (
            rtl.acc_out.val().to_u64() as u32 as i32,
            rtl.acc_valid.val(),
            rtl.byte_out.val().to_u64() as u8,
            rtl.byte_valid.val(),
        );
        prop_assert_eq!(
            got,
            twin.outputs(),
            "cycle {}, inputs {:?}",
            t,
            inputs.get(t.wrapping_sub(3))
        );
        tick(&mut rtl);
        twin.step(i);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn ppu_lane_equals_twin(inputs in proptest::collection::vec(lane_in(), 1..24)) {
        run(&inputs)?;
    }
}

/// Every rounding mode on exact ties of both signs, the largest products, the clamp around
/// its 9-bit boundaries, and every ALU function on the int32 extremes.
#[test]
fn ppu_lane_ties_and_extremes() {
    let mut v = Vec::new();
    for round in Round::ALL {
        for unsigned in [false, true] {
            for (a, b, shift) in [
                (5, 1, 1),
                (-5, 1, 1),
                (7, 1, 1),
                (-7, 1, 1),
                (-6, 1, 2),
                (3, 1, 0),
                (i32::MIN, i32::MIN, 62),
                (i32::MIN, i32::MAX, 62),
                (i32::MAX, i32::MAX, 40),
                (i32::MIN, 1, 24),
                (1000, 1 << 30, 31),
                (-1000, 1 << 30, 31),
            ] {
                v.push(LaneIn {
                    valid: true,
                    requant: true,
                    round: *round,
                    unsigned,
                    zp: if unsigned { 3 } else { -3 },
                    lo: if unsigned { 0 } else { 0x80 },
                    hi: if unsigned { 255 } else { 0x7f },
                    shift,
                    a,
                    b,
                    ..Default::default()
                });
            }
        }
    }
    // The clamp around the 9-bit boundaries (the RTL compares 9 bits when v fits), with
    // narrow and crossed (lo > hi) bounds of both output types.
    for unsigned in [false, true] {
        for (lo, hi) in [
            (0x80u8, 0x7fu8),
            (0, 255),
            (0x85, 0x10),
            (3, 250),
            (200, 100),
            (0x7f, 0x80),
        ] {
            for a in [
                -65_537,
                -257,
                -256,
                -255,
                -129,
                -128,
                -127,
                -1,
                0,
                1,
                127,
                128,
                129,
                254,
                255,
                256,
                257,
                65_536,
                i32::MIN,
                i32::MAX,
            ] {
                v.push(LaneIn {
                    valid: true,
                    requant: true,
                    unsigned,
                    lo,
                    hi,
                    a,
                    b: 1,
                    ..Default::default()
                });
            }
        }
    }
    for func in AluFunc::ALL {
        for (a, b) in [
            (i32::MIN, -1),
            (i32::MAX, 1),
            (i32::MIN, i32::MAX),
            (-7, 9),
            (65537, 65537),
        ] {
            v.push(LaneIn {
                valid: true,
                func: *func,
                a,
                b,
                ..Default::default()
            });
        }
    }
    v.extend([LaneIn::default(); 3]);
    run(&v).unwrap();
}
