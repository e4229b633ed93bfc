//! The binary32 requantizer lane's Verilog (`requant_fp32.rs`), simulated in Icarus Verilog,
//! against `systole_emulator::ppu::requant_lane` with `fp32` set, on every cycle: random and
//! extreme accumulators (0, +-1, int32 limits, values above 2^24 that round on conversion),
//! random normal scales of both signs, subnormal, zero, infinite and NaN scales, exact .5 ties,
//! every rounding mode, signed and unsigned outputs with random clamps and zero points.
//! Needs iverilog on PATH; fails without it.

use proptest::prelude::*;
use systole_arch::isa::{Requant, Round};
use systole_emulator::ppu::requant_lane;
use systole_emulator::randprog::Rng;
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

fn case(rng: &mut Rng) -> (i32, u32, Requant) {
    let acc = match rng.range(0, 7) {
        0 => rng.pick(&[
            0,
            1,
            -1,
            i32::MAX,
            i32::MIN,
            1 << 24,
            (1 << 24) + 1,
            -(1 << 25) - 3,
        ]),
        1 => rng.range(0, 1000) as i32 - 500,
        2 => (rng.next_u64() as i32) >> rng.range(0, 31),
        _ => rng.next_u64() as i32,
    };
    let scale: u32 = match rng.range(0, 9) {
        0 => rng.pick(&[
            0,
            0x8000_0000,
            0x7f80_0000,
            0xff80_0000,
            0x7fc0_0000,
            1,
            0x8000_0001,
        ]),
        1 => 0x3f00_0000 | ((rng.chance(50) as u32) << 31), // 0.5: ties on every odd acc
        2 => (rng.range(126 - 20, 126) as u32) << 23 | (rng.next_u64() as u32 & 0x7f_ffff),
        3 => (rng.range(1, 254) as u32) << 23 | (rng.next_u64() as u32 & 0x807f_ffff),
        _ => {
            (rng.range(127 - 24, 127 + 3) as u32) << 23
                | (rng.next_u64() as u32 & 0x7f_ffff)
                | ((rng.chance(20) as u32) << 31)
        }
    };
    let unsigned = rng.chance(40);
    let (lo, hi) = if rng.chance(50) {
        if unsigned {
            (0, 255)
        } else {
            (0x80, 0x7f)
        }
    } else {
        (rng.range(0, 255) as u32, rng.range(0, 255) as u32)
    };
    let op = Requant {
        fp32: true,
        unsigned,
        lo,
        hi,
        zp: if rng.chance(50) {
            0
        } else {
            rng.range(0, 65535) as i32 - 32768
        },
        round: rng.pick(&[
            Round::HalfEven,
            Round::HalfAway,
            Round::HalfUp,
            Round::Floor,
        ]),
        ..Default::default()
    };
    (acc, scale, op)
}

fn check(seed: u64, n: usize) {
    let mut rng = Rng::new(seed);
    let cases: Vec<_> = (0..n).map(|_| case(&mut rng)).collect();
    let ports = vec![
        port("clock", "in", 1),
        port("valid", "in", 1),
        port("acc", "in", 32),
        port("scale", "in", 32),
        port("round", "in", 2),
        port("out_unsigned", "in", 1),
        port("zp", "in", 32),
        port("lo", "in", 8),
        port("hi", "in", 8),
        port("byte_out", "out", 8),
        port("byte_valid", "out", 1),
    ];
    let mut stimuli: Vec<Vec<i64>> = cases
        .iter()
        .map(|(acc, scale, op)| {
            vec![
                1,
                *acc as u32 as i64,
                *scale as i64,
                op.round as i64,
                op.unsigned as i64,
                op.zp as u32 as i64,
                op.lo as i64,
                op.hi as i64,
            ]
        })
        .collect();
    for _ in 0..3 {
        stimuli.push(vec![0; 8]);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fpq.v"), systole_hdl::requant_fp32::VERILOG).unwrap();
    let got = icarus::run(
        dir.path(),
        &["fpq.v"],
        "systole_requant_fp32_lane",
        &ports,
        &stimuli,
    )
    .unwrap_or_else(|e| panic!("{e} (install iverilog: scripts/test.sh)"));
    for (t, row) in got.iter().enumerate() {
        // The byte for the operand of cycle t leaves in cycle t + 3.
        assert_eq!(row[1] != 0, t >= 3 && t - 3 < n, "byte_valid in cycle {t}");
        if t >= 3 && t - 3 < n {
            let (acc, scale, op) = &cases[t - 3];
            let want = requant_lane(*acc, *scale as i32, 0, op);
            assert_eq!(
                row[0] as u8,
                want,
                "acc {acc} scale {scale:#010x} ({}) {op:?}",
                f32::from_bits(*scale)
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]
    #[test]
    fn fp32_lane_equals_requant_lane(seed in any::<u64>()) {
        check(seed, 2000);
    }
}

/// Every acc in -1000..1000 at scale 0.5 and 1.5 (all ties), every rounding mode.
#[test]
fn fp32_lane_ties() {
    let ports = [
        port("clock", "in", 1),
        port("valid", "in", 1),
        port("acc", "in", 32),
        port("scale", "in", 32),
        port("round", "in", 2),
        port("out_unsigned", "in", 1),
        port("zp", "in", 32),
        port("lo", "in", 8),
        port("hi", "in", 8),
        port("byte_out", "out", 8),
        port("byte_valid", "out", 1),
    ];
    let mut cases = Vec::new();
    for round in [
        Round::HalfEven,
        Round::HalfAway,
        Round::HalfUp,
        Round::Floor,
    ] {
        for scale in [0.5f32, -0.5, 1.5, 0.25] {
            for acc in -300..300 {
                let op = Requant {
                    fp32: true,
                    lo: 0x80,
                    hi: 0x7f,
                    round,
                    ..Default::default()
                };
                cases.push((acc, scale.to_bits(), op));
            }
        }
    }
    let mut stimuli: Vec<Vec<i64>> = cases
        .iter()
        .map(|(acc, s, op)| {
            vec![
                1,
                *acc as u32 as i64,
                *s as i64,
                op.round as i64,
                0,
                0,
                0x80,
                0x7f,
            ]
        })
        .collect();
    for _ in 0..3 {
        stimuli.push(vec![0; 8]);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fpq.v"), systole_hdl::requant_fp32::VERILOG).unwrap();
    let got = icarus::run(
        dir.path(),
        &["fpq.v"],
        "systole_requant_fp32_lane",
        &ports,
        &stimuli,
    )
    .unwrap_or_else(|e| panic!("{e} (install iverilog: scripts/test.sh)"));
    for (i, (acc, s, op)) in cases.iter().enumerate() {
        let want = requant_lane(*acc, *s as i32, 0, op);
        assert_eq!(
            got[i + 3][0] as u8,
            want,
            "acc {acc} scale {} {:?}",
            f32::from_bits(*s),
            op.round
        );
    }
}
