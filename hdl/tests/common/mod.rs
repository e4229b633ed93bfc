//! The PPU lane's reference model: the emulator's lane functions (`ppu::alu_lane`,
//! `ppu::requant_lane`) behind the pipeline delays docs/timing.md gives `alu` (2 cycles from
//! operand read to write) and `requant` (3 cycles).

#![allow(dead_code)]

use proptest::prelude::*;
use systole_arch::isa::{AluFunc, Requant, Round};
use systole_emulator::ppu::{alu_lane, requant_lane};

#[derive(Debug, Clone, Copy, Default)]
pub struct LaneIn {
    pub valid: bool,
    pub requant: bool,
    pub func: AluFunc,
    pub round: Round,
    pub unsigned: bool,
    pub zp: i32,
    pub lo: u8,
    pub hi: u8,
    pub shift: u32,
    pub a: i32,
    pub b: i32,
}

impl LaneIn {
    /// Values in the lane's input port order (after `clock`).
    pub fn ports(&self) -> Vec<i64> {
        vec![
            self.valid as i64,
            self.requant as i64,
            self.func as i64,
            self.round as i64,
            self.unsigned as i64,
            self.zp as i64,
            self.lo as i64,
            self.hi as i64,
            self.shift as i64,
            self.a as i64,
            self.b as i64,
        ]
    }
}

/// acc_out, acc_valid, byte_out, byte_valid.
pub type LaneOut = (i32, bool, u8, bool);

#[derive(Default)]
pub struct LaneTwin {
    acc: [(i32, bool); 2],
    byte: [(u8, bool); 3],
}

impl LaneTwin {
    pub fn outputs(&self) -> LaneOut {
        (self.acc[1].0, self.acc[1].1, self.byte[2].0, self.byte[2].1)
    }

    /// Both results are computed for every input, as the RTL does; `valid` says which one
    /// an instruction would write.
    pub fn step(&mut self, i: &LaneIn) {
        let op = Requant {
            dst: 0,
            src: 0,
            param: 0,
            m: 1,
            zp: i.zp,
            lo: i.lo as u32,
            hi: i.hi as u32,
            unsigned: i.unsigned,
            round: i.round,
            fp32: false,
        };
        self.acc = [
            (alu_lane(i.func, i.a, i.b), i.valid && !i.requant),
            self.acc[0],
        ];
        self.byte = [
            (requant_lane(i.a, i.b, i.shift, &op), i.valid && i.requant),
            self.byte[0],
            self.byte[1],
        ];
    }
}

pub fn int32() -> impl Strategy<Value = i32> {
    prop_oneof![
        Just(i32::MIN),
        Just(i32::MAX),
        Just(0),
        Just(-1),
        Just(1),
        (0u32..31).prop_map(|k| 1i32 << k),
        -300i32..300,
        any::<i32>(),
    ]
}

pub fn lane_in() -> impl Strategy<Value = LaneIn> {
    (
        (
            any::<bool>(),
            any::<bool>(),
            0usize..5,
            0usize..4,
            any::<bool>(),
        ),
        (-40000i32..40000, any::<u8>(), any::<u8>(), 0u32..=62),
        (int32(), int32()),
    )
        .prop_map(
            |((valid, requant, f, r, unsigned), (zp, lo, hi, shift), (a, b))| LaneIn {
                valid,
                requant,
                func: AluFunc::ALL[f],
                round: Round::ALL[r],
                unsigned,
                zp,
                // Mostly the output type's full range, sometimes a narrower clamp.
                lo: if lo % 3 == 0 {
                    lo
                } else if unsigned {
                    0
                } else {
                    0x80
                },
                hi: if hi % 3 == 0 {
                    hi
                } else if unsigned {
                    255
                } else {
                    0x7f
                },
                shift,
                a,
                b,
            },
        )
}
