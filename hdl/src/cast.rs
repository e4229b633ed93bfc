//! Workarounds for rust-hdl 0.46 casts (see ../shared/notes/rust-hdl.md).

use rust_hdl::prelude::{bit_cast, signed_cast, unsigned_cast, Bits, Signed};

/// Sign extension that also works for the most negative value: rust-hdl's own
/// `signed_bit_cast` negates its argument and recurses forever on -2^(N-1). `#[hdl_gen]`
/// matches the call by name and still emits `$signed(x)`.
pub fn signed_bit_cast<const M: usize, const N: usize>(x: Signed<N>) -> Signed<M> {
    let mut b: Bits<M> = bit_cast::<M, N>(unsigned_cast(x));
    if x.sign_bit() {
        for i in N..M {
            b = b.replace_bit(i, true);
        }
    }
    signed_cast(b)
}

/// A Rust integer as an N-bit signed value (two's complement, truncated).
pub fn to_signed<const N: usize>(v: i64) -> Signed<N> {
    signed_cast(Bits::<N>::from(v as u64 & mask(N)))
}

/// The value of an N-bit signed signal as an i64.
pub fn from_signed<const N: usize>(v: Signed<N>) -> i64 {
    let u = unsigned_cast(v).to_u64();
    if N < 64 && v.sign_bit() {
        (u | !mask(N)) as i64
    } else {
        u as i64
    }
}

fn mask(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_extremes() {
        for v in [-128i64, -1, 0, 1, 127] {
            assert_eq!(from_signed(to_signed::<8>(v)), v);
            assert_eq!(from_signed(signed_bit_cast::<16, 8>(to_signed::<8>(v))), v);
            assert_eq!(from_signed(signed_bit_cast::<32, 8>(to_signed::<8>(v))), v);
        }
        for v in [i32::MIN as i64, -1, i32::MAX as i64] {
            assert_eq!(from_signed(to_signed::<32>(v)), v);
        }
        assert_eq!(from_signed(to_signed::<64>(i64::MIN)), i64::MIN);
    }
}
