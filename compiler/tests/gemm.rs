//! Random GEMMs lowered to programs: the emulator's output equals a plain Rust reference bit
//! for bit, on several array shapes, including tilings with several m, n and k tiles.

use proptest::prelude::*;
use systole_arch::ArchConfig;
use systole_compiler::gemm::{gemm_program, gemm_reference, ChannelQuant, GemmLayer};
use systole_emulator::{run, IoData, RunOptions};

fn layer(m: usize, k: usize, n: usize, seed: u64) -> (GemmLayer, Vec<i8>) {
    let mut rng = systole_emulator::randprog::Rng::new(seed);
    let mut byte = || rng.next_u64() as i8;
    let weights: Vec<i8> = (0..k * n).map(|_| byte()).collect();
    let a: Vec<i8> = (0..m * k).map(|_| byte()).collect();
    let mut rng = systole_emulator::randprog::Rng::new(seed ^ 0x55);
    let channels = (0..n)
        .map(|_| {
            let bias = rng.range(0, 20000) as i32 - 10000;
            if rng.chance(50) {
                // A power-of-two scale: exact ties are frequent, so rounding is exercised.
                ChannelQuant {
                    bias,
                    mult: 1 << 30,
                    shift: rng.range(31, 38) as u32,
                }
            } else {
                ChannelQuant {
                    bias,
                    mult: rng.range(1 << 30, (1 << 31) - 1) as i32,
                    shift: rng.range(30, 48) as u32,
                }
            }
        })
        .collect();
    let zp = rng.range(0, 20) as i32 - 10;
    let relu = rng.chance(50);
    let l = GemmLayer {
        m,
        k,
        n,
        weights,
        channels,
        out_zp: zp,
        out_lo: if relu { zp as i8 } else { -128 },
        out_hi: 127,
        in_quant: None,
        out_quant: None,
    };
    (l, a)
}

fn check(arch: &str, m: usize, k: usize, n: usize, seed: u64) -> u64 {
    // `NAME+banked`: the preset with two weight registers per PE (chained matmuls).
    let arch = match arch.strip_suffix("+banked") {
        Some(base) => {
            let mut a = ArchConfig::preset(base).unwrap();
            a.array.weight_banks = 2;
            a.name = arch.into();
            a
        }
        None => ArchConfig::preset(arch).unwrap(),
    };
    let (l, a) = layer(m, k, n, seed);
    let p = gemm_program(&arch, &l).unwrap();
    let r = run(&p, &arch, &[IoData::I8(a.clone())], &RunOptions::default())
        .unwrap_or_else(|e| panic!("{m}x{k}x{n} seed {seed} on {}: {e}", arch.name));
    let want = gemm_reference(&l, &a);
    assert_eq!(
        r.outputs[0],
        IoData::I8(want),
        "{m}x{k}x{n} seed {seed} on {}",
        arch.name
    );
    assert_eq!(r.stats.macs, {
        let t = systole_compiler::gemm::Tiling::new(&arch, m, k, n).unwrap();
        // Every (m-row, k-tile, n-tile) passes the full array once.
        (m * t.k_tiles * t.n_tiles) as u64 * arch.peak_macs_per_cycle()
    });
    r.stats.cycles
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_gemm_tiles_match_reference(m in 1usize..40, k in 1usize..40, n in 1usize..20, seed in any::<u64>(), arch in 0usize..3) {
        check(["tiny", "ulx3s", "tiny+banked"][arch], m, k, n, seed);
    }
}

#[test]
fn many_tiles_in_every_dimension() {
    // tiny: 128-line input halves force several m-tiles and k-chunks.
    check("tiny", 150, 96, 30, 1);
    check("ulx3s", 300, 200, 70, 2);
    check("edge", 64, 100, 40, 3);
    check("tiny+banked", 150, 96, 30, 4);
    check("ulx3s+banked", 300, 200, 70, 5);
}

#[test]
fn double_buffering_overlaps_load_and_compute() {
    // With the same work, a run is shorter than the sum of the units' busy cycles.
    let arch = ArchConfig::preset("ulx3s").unwrap();
    let (l, a) = layer(64, 256, 64, 9);
    let p = gemm_program(&arch, &l).unwrap();
    let r = run(&p, &arch, &[IoData::I8(a)], &RunOptions::default()).unwrap();
    let s = &r.stats;
    assert!(
        s.cycles < s.load.busy_cycles + s.compute.busy_cycles,
        "{s:?}"
    );
}

/// A GEMM adds its bias and requantizes on the integer PPU lanes: on an arch without them
/// (up5k) `gemm_program` refuses by name instead of emitting instructions the emulator and
/// the RTL would refuse.
#[test]
fn gemm_needs_the_integer_lanes() {
    let arch = ArchConfig::preset("up5k").unwrap();
    let (l, _) = layer(2, 4, 2, 7);
    let e = gemm_program(&arch, &l).unwrap_err().to_string();
    assert!(e.contains("ppu.integer_lanes = false"), "{e}");
}
