//! The post-processing unit: lane-wise int32 ALU and requantization, one accumulator line per
//! cycle through a short pipeline.
//!
//! `alu` with a broadcast `b` (b_stride = 0) reads b in cycle 0 and a_i in cycle 1 + i and writes
//! line i in cycle 3 + i: m + 3 cycles. Otherwise it reads a_i in cycle 2i and b_i in 2i + 1 (one
//! accumulator read port) and writes in 2i + 3: 2m + 2 cycles. `requant` reads the multiplier
//! and shift lines in cycles 0 and 1, src_i in 2 + i, and writes output line i in 5 + i (multiply,
//! round/shift, clamp): m + 5 cycles.

use crate::buffer::Buffers;
use systole_arch::isa::{Alu, AluFunc, Requant, Round, Thresh};
use systole_arch::BufferKind;

#[derive(Default)]
pub struct Ppu {
    /// Lane operations performed, by kind (for energy).
    pub alu_lane_ops: u64,
    pub alu_mul_lane_ops: u64,
    pub requant_lane_ops: u64,
    /// Threshold comparisons (lanes x thresholds).
    pub thresh_compares: u64,
}

/// The threshold unit's binary search (`thresh`): how many of the `count` thresholds `thr(j)`
/// the value `a` reaches, stage s = 7..0 adding 2^s when threshold n + 2^s - 1 exists and is
/// reached. Equals #{j : a >= thr(j)} when the thresholds ascend; for any other order it is
/// still exactly what the hardware's stage memories compute.
pub fn thresh_search(a: i32, count: usize, thr: impl Fn(usize) -> i32) -> usize {
    let mut n = 0;
    for s in (0..8).rev() {
        let p = n + (1 << s);
        if p <= count && a >= thr(p - 1) {
            n = p;
        }
    }
    n
}

/// Rounding right shift of an exact product, as the requantizer's shifter does it.
pub fn round_shift(x: i64, shift: u32, round: Round) -> i64 {
    if shift == 0 {
        return x;
    }
    let floor = x >> shift;
    let rem = x - (floor << shift);
    let half = 1i64 << (shift - 1);
    let up = match round {
        Round::Floor => false,
        Round::HalfUp => rem >= half,
        Round::HalfAway => rem > half || (rem == half && x >= 0),
        Round::HalfEven => rem > half || (rem == half && floor & 1 == 1),
    };
    floor + up as i64
}

/// Rounds a binary32 value to an integer with the requantizer's rounding mode; NaN gives 0 and
/// out-of-range values saturate (the clamp that follows makes the exact bound irrelevant).
pub fn round_f32(v: f32, round: Round) -> i64 {
    let r = match round {
        Round::HalfEven => v.round_ties_even(),
        Round::HalfAway => v.round(),
        Round::HalfUp => {
            let f = v.floor();
            if v - f >= 0.5 {
                f + 1.0
            } else {
                f
            }
        }
        Round::Floor => v.floor(),
    };
    r as i64
}

/// The binary32 requantization of one lane: f32(acc) * scale, each rounded to nearest even.
pub fn requant_fp32(acc: i32, scale_bits: i32, round: Round) -> i64 {
    round_f32(acc as f32 * f32::from_bits(scale_bits as u32), round)
}

/// One lane of `requant`. `mult` holds the f32 scale bits when `op.fp32`.
pub fn requant_lane(acc: i32, mult: i32, shift: u32, op: &Requant) -> u8 {
    let r = if op.fp32 {
        requant_fp32(acc, mult, op.round)
    } else {
        round_shift(acc as i64 * mult as i64, shift, op.round)
    };
    let v = r.saturating_add(op.zp as i64);
    if op.unsigned {
        v.clamp(0, 255).max(op.lo as i64).min(op.hi as i64) as u8
    } else {
        let lo = op.lo as u8 as i8 as i64;
        let hi = op.hi as u8 as i8 as i64;
        v.clamp(-128, 127).max(lo).min(hi) as i8 as u8
    }
}

/// `requant`'s lanes over whole lines: `params` holds the multiplier (or binary32 scale) line
/// and the shift line, `src` the accumulator lines, `dst` gets the bytes (`requant` and
/// `store requant=1` share it). Fails with the lane if a shift is outside 0..=62.
pub fn requant_lines(
    op: &Requant,
    params: &[i32],
    src: &[i32],
    dst: &mut [u8],
    c: usize,
) -> Result<(), String> {
    let (mult, shift) = params.split_at(c);
    if !src.is_empty() && !op.fp32 {
        if let Some((lane, s)) = shift
            .iter()
            .enumerate()
            .find(|(_, &s)| !(0..=62).contains(&s))
        {
            return Err(format!(
                "shift {s} in lane {lane} of accumulator line {} is outside 0..=62",
                op.param + 1
            ));
        }
    }
    // The lane function with the instruction's mode picked once (it is `requant_lane`).
    match (op.fp32, op.round) {
        (true, _) => requant_rows(src, dst, c, |a, l| requant_lane(a, mult[l], 0, op)),
        (false, round) => {
            let sh: Vec<u32> = shift.iter().map(|&s| s.clamp(0, 62) as u32).collect();
            let (zp, unsigned) = (op.zp as i64, op.unsigned);
            let (lo, hi) = if unsigned {
                (op.lo as i64, op.hi as i64)
            } else {
                (op.lo as u8 as i8 as i64, op.hi as u8 as i8 as i64)
            };
            let (min, max) = if unsigned { (0, 255) } else { (-128, 127) };
            let lane = |a: i32, l: usize| {
                let v = round_shift(a as i64 * mult[l] as i64, sh[l], round);
                v.saturating_add(zp).clamp(min, max).max(lo).min(hi) as u8
            };
            match round {
                Round::HalfEven => requant_rows(src, dst, c, |a, l| {
                    let v = round_shift(a as i64 * mult[l] as i64, sh[l], Round::HalfEven);
                    v.saturating_add(zp).clamp(min, max).max(lo).min(hi) as u8
                }),
                _ => requant_rows(src, dst, c, lane),
            }
        }
    }
    Ok(())
}

/// `dst[i][l] = lane(src[i][l], l)` over lines of `c` lanes.
#[inline(always)]
fn requant_rows(src: &[i32], dst: &mut [u8], c: usize, lane: impl Fn(i32, usize) -> u8) {
    for (s, d) in src.chunks_exact(c).zip(dst.chunks_exact_mut(c)) {
        for (l, (&a, o)) in s.iter().zip(d.iter_mut()).enumerate() {
            *o = lane(a, l);
        }
    }
}

pub fn alu_lane(func: AluFunc, a: i32, b: i32) -> i32 {
    match func {
        AluFunc::Add => a.wrapping_add(b),
        AluFunc::Sub => a.wrapping_sub(b),
        AluFunc::Max => a.max(b),
        AluFunc::Min => a.min(b),
        AluFunc::Mul => a.wrapping_mul(b),
    }
}

impl Ppu {
    pub fn alu_cycles(op: &Alu) -> u64 {
        match (op.m, op.b_stride) {
            (0, _) => 1,
            (m, 0) => m as u64 + 3,
            (m, _) => 2 * m as u64 + 2,
        }
    }

    pub fn requant_cycles(op: &Requant) -> u64 {
        if op.m == 0 {
            1
        } else {
            op.m as u64 + 5
        }
    }

    /// Functional effect of `alu` (ranges already checked: sources equal or disjoint from dst).
    pub fn alu(&mut self, op: &Alu, bufs: &mut Buffers) {
        let c = bufs.cols;
        let mut tmp = vec![0i32; c];
        for i in 0..op.m as usize {
            let a = (op.a as usize + i * op.a_stride as usize) * c;
            let b = (op.b as usize + i * op.b_stride as usize) * c;
            for (l, t) in tmp.iter_mut().enumerate() {
                *t = alu_lane(op.func, bufs.acc[a + l], bufs.acc[b + l]);
            }
            let d = (op.dst as usize + i) * c;
            bufs.acc[d..d + c].copy_from_slice(&tmp);
        }
        let n = op.m as u64 * c as u64;
        if op.func == AluFunc::Mul {
            self.alu_mul_lane_ops += n;
        } else {
            self.alu_lane_ops += n;
        }
    }

    /// Functional effect of `requant`; fails with the lane if a shift is outside 0..=62.
    pub fn requant(&mut self, op: &Requant, bufs: &mut Buffers) -> Result<(), String> {
        let c = bufs.cols;
        let p = op.param as usize * c;
        let m = op.m as usize;
        let (params, src) = (
            &bufs.acc[p..p + 2 * c],
            &bufs.acc[op.src as usize * c..][..m * c],
        );
        requant_lines(
            op,
            params,
            src,
            &mut bufs.out[op.dst as usize * c..][..m * c],
            c,
        )?;
        self.requant_lane_ops += op.m as u64 * c as u64;
        Ok(())
    }

    /// `thresh` writes its `count` threshold lines into the threshold unit's stage memories
    /// (cycles 0..count), then reads src_i in count + i, searches one stage a cycle
    /// (`stages` = the arch's `ppu.threshold_stages()`), scales and clamps, and writes output
    /// line i in count + i + stages + 2: count + m + stages + 2 cycles.
    pub fn thresh_cycles(op: &Thresh, stages: u32) -> u64 {
        if op.m == 0 {
            1
        } else {
            op.count as u64 + op.m as u64 + stages as u64 + 2
        }
    }

    /// Functional effect of `thresh`.
    pub fn thresh(&mut self, op: &Thresh, bufs: &mut Buffers) {
        let c = bufs.cols;
        let count = op.count as usize;
        for i in 0..op.m as usize {
            let s = (op.src as usize + i) * c;
            let d = (op.dst as usize + i) * c;
            for l in 0..c {
                let a = bufs.acc[s + l];
                let n = thresh_search(a, count, |j| bufs.acc[(op.thr as usize + j) * c + l]);
                bufs.out[d + l] =
                    (op.base as i64 + op.step as i64 * n as i64).clamp(-128, 127) as i8 as u8;
            }
        }
        // One compare per search stage that can succeed.
        let stages = usize::BITS - count.leading_zeros();
        self.thresh_compares += op.m as u64 * c as u64 * stages as u64;
    }

    pub fn thresh_access(
        op: &Thresh,
        stages: u32,
        o: u64,
        mut f: impl FnMut(BufferKind, u32, bool),
    ) {
        let (m, t) = (op.m as u64, op.count as u64);
        if m == 0 {
            return;
        }
        let lat = stages as u64 + 2;
        if o < t {
            f(BufferKind::Accumulator, op.thr + o as u32, false);
        }
        if o >= t && o - t < m {
            f(BufferKind::Accumulator, op.src + (o - t) as u32, false);
        }
        if o >= t + lat && o - t - lat < m {
            f(BufferKind::Output, op.dst + (o - t - lat) as u32, true);
        }
    }

    pub fn alu_access(op: &Alu, o: u64, mut f: impl FnMut(BufferKind, u32, bool)) {
        let m = op.m as u64;
        let acc = BufferKind::Accumulator;
        if op.b_stride == 0 {
            if o == 0 && m > 0 {
                f(acc, op.b, false);
            }
            if o >= 1 && o - 1 < m {
                f(acc, op.a + ((o - 1) * op.a_stride as u64) as u32, false);
            }
            if o >= 3 && o - 3 < m {
                f(acc, op.dst + (o - 3) as u32, true);
            }
        } else {
            let i = o / 2;
            if i < m {
                if o.is_multiple_of(2) {
                    f(acc, op.a + (i * op.a_stride as u64) as u32, false);
                } else {
                    f(acc, op.b + (i * op.b_stride as u64) as u32, false);
                }
            }
            if o >= 3 && (o - 3).is_multiple_of(2) && (o - 3) / 2 < m {
                f(acc, op.dst + ((o - 3) / 2) as u32, true);
            }
        }
    }

    pub fn requant_access(op: &Requant, o: u64, mut f: impl FnMut(BufferKind, u32, bool)) {
        let m = op.m as u64;
        if m == 0 {
            return;
        }
        match o {
            0 => f(BufferKind::Accumulator, op.param, false),
            1 => f(BufferKind::Accumulator, op.param + 1, false),
            _ => {}
        }
        if o >= 2 && o - 2 < m {
            f(BufferKind::Accumulator, op.src + (o - 2) as u32, false);
        }
        if o >= 5 && o - 5 < m {
            f(BufferKind::Output, op.dst + (o - 5) as u32, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_modes_on_ties() {
        // 5/2 = 2.5, -5/2 = -2.5, 7/2 = 3.5
        assert_eq!(round_shift(5, 1, Round::HalfEven), 2);
        assert_eq!(round_shift(7, 1, Round::HalfEven), 4);
        assert_eq!(round_shift(-5, 1, Round::HalfEven), -2);
        assert_eq!(round_shift(-7, 1, Round::HalfEven), -4);
        assert_eq!(round_shift(5, 1, Round::HalfAway), 3);
        assert_eq!(round_shift(-5, 1, Round::HalfAway), -3);
        assert_eq!(round_shift(5, 1, Round::HalfUp), 3);
        assert_eq!(round_shift(-5, 1, Round::HalfUp), -2);
        assert_eq!(round_shift(-5, 1, Round::Floor), -3);
        assert_eq!(round_shift(-6, 2, Round::HalfEven), -2); // -1.5 -> -2
        assert_eq!(round_shift(i64::MAX >> 1, 62, Round::HalfEven), 1);
    }

    #[test]
    fn rounding_matches_f64_reference() {
        // Exhaustive over small values: compare with f64 arithmetic (exact here).
        for x in -600i64..600 {
            for s in 0..6 {
                let q = x as f64 / (1u64 << s) as f64;
                let even = {
                    let f = q.floor();
                    let d = q - f;
                    if d > 0.5 || (d == 0.5 && f.rem_euclid(2.0) == 1.0) {
                        f + 1.0
                    } else {
                        f
                    }
                };
                assert_eq!(
                    round_shift(x, s, Round::HalfEven) as f64,
                    even,
                    "{x} >> {s}"
                );
                assert_eq!(
                    round_shift(x, s, Round::HalfAway) as f64,
                    q.round(),
                    "{x} >> {s}"
                );
                assert_eq!(
                    round_shift(x, s, Round::HalfUp) as f64,
                    (q + 0.5).floor(),
                    "{x} >> {s}"
                );
                assert_eq!(
                    round_shift(x, s, Round::Floor) as f64,
                    q.floor(),
                    "{x} >> {s}"
                );
            }
        }
    }
}
