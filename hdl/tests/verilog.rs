//! The generated Verilog: lint-clean in Verilator, latch-free in yosys, and, simulated in
//! Icarus Verilog, equal to the emulator twins on every cycle. These tests need verilator,
//! yosys and iverilog on PATH (scripts/test.sh installs them) and fail without them.

mod common;

use std::path::Path;
use std::process::Command;
use systole_arch::ArchConfig;
use systole_emulator::systolic::{ArrayIn, Pe, PeIn, SystolicArray};
use systole_hdl::{icarus, write_verilog};

fn tool(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (install it: scripts/test.sh): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{cmd:?} failed:\n{text}"))
    }
}

/// Verilator lint, then yosys.
fn lint(dir: &Path, file: &str, module: &str) -> Result<(), String> {
    // WIDTH: rust-hdl writes every literal as 32 bits and relies on Verilog's context sizing
    // (see hdl/README.md); every other default warning class stays an error.
    tool(Command::new("verilator").current_dir(dir).args([
        "--lint-only",
        "-Wno-WIDTH",
        "--top-module",
        module,
        file,
    ]))?;
    yosys_check(dir, file, module)
}

/// Hierarchy complete, processes lowered, no driver conflicts (`check -assert`) and no latch
/// cell (`check` alone does not reject latches).
fn yosys_check(dir: &Path, file: &str, module: &str) -> Result<(), String> {
    let script = format!(
        "read_verilog {file}; hierarchy -check -top {module}; proc; check -assert; \
         select -assert-none t:$dlatch t:$adlatch t:$dlatchsr t:$sr"
    );
    tool(
        Command::new("yosys")
            .current_dir(dir)
            .args(["-q", "-p", &script]),
    )?;
    Ok(())
}

#[test]
fn lint_rejects_latch_and_bad_verilog() {
    let dir = tempfile::tempdir().unwrap();
    let latch = "module l(input en, input d, output reg q);\n\
                 always @(*) if (en) q = d;\nendmodule\n";
    std::fs::write(dir.path().join("l.v"), latch).unwrap();
    let err = lint(dir.path(), "l.v", "l").unwrap_err();
    assert!(err.contains("LATCH"), "{err}");
    let err = yosys_check(dir.path(), "l.v", "l").unwrap_err();
    assert!(err.contains("dlatch"), "{err}");
    let missing = "module m(input a, output b); n u(.a(a), .b(b)); endmodule\n";
    std::fs::write(dir.path().join("m.v"), missing).unwrap();
    assert!(lint(dir.path(), "m.v", "m").is_err());
}

#[test]
fn presets_lint_clean() {
    for (name, _) in systole_arch::config::PRESETS {
        let arch = ArchConfig::preset(name).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let m = write_verilog(&arch, dir.path()).unwrap();
        assert_eq!((m.rows, m.cols), (arch.array.rows, arch.array.cols));
        let json: systole_hdl::Manifest = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("manifest.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(json, m);
        for module in &m.modules {
            // The 32x32 array takes yosys and Verilator a while; the small ones cover the
            // same generator code.
            if module.block == "array" && m.rows > 16 {
                continue;
            }
            lint(dir.path(), &module.file, &module.module).unwrap();
        }
    }
}

/// Deterministic stimulus source with the int8 extremes over-represented.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn int8(&mut self) -> i8 {
        match self.next() % 4 {
            0 => -128,
            1 => 127,
            _ => self.next() as i8,
        }
    }
    fn line(&mut self, n: usize) -> Vec<i8> {
        (0..n).map(|_| self.int8()).collect()
    }
}

/// `ldw` + `matmul` sequences, then cycles of arbitrary inputs.
fn array_stimuli(rows: usize, cols: usize, rng: &mut Rng) -> Vec<ArrayIn> {
    let idle = |rng: &mut Rng, valid: bool, load: bool, binary: bool| ArrayIn {
        a: if valid { rng.line(rows) } else { vec![0; rows] },
        valid,
        w: if load { rng.line(cols) } else { vec![0; cols] },
        w_load: load,
        binary,
    };
    let mut v = Vec::new();
    // int8 and binary (XNOR-popcount) matmuls, the mode held for the whole instruction.
    for (m, binary) in [(3, false), (1, false), (3, true), (2, true)] {
        v.extend((0..rows).map(|_| idle(rng, false, true, false)));
        v.extend((0..m).map(|_| idle(rng, true, false, binary)));
        v.extend((0..rows + cols - 1).map(|_| idle(rng, false, false, binary)));
    }
    for _ in 0..rows + cols + 4 {
        let (valid, load) = (rng.next() & 1 == 1, rng.next() & 2 == 2);
        let binary = rng.next() & 4 == 4;
        let mut c = idle(rng, valid, load, binary);
        c.a = rng.line(rows);
        v.push(c);
    }
    v
}

#[test]
fn array_verilog_equals_twin() {
    let mut rng = Rng(0x5eed_1234_9876_abcd);
    for (rows, cols, bits) in [
        (1, 1, 8),
        (2, 3, 1),
        (3, 5, 2),
        (5, 2, 4),
        (4, 4, 8),
        (8, 8, 2),
    ] {
        let mut arch = ArchConfig::preset("tiny").unwrap();
        arch.array.rows = rows as u32;
        arch.array.cols = cols as u32;
        arch.array.xnor_bits = bits;
        let dir = tempfile::tempdir().unwrap();
        let m = write_verilog(&arch, dir.path()).unwrap();
        let info = m.module("array").unwrap();
        let inputs = array_stimuli(rows, cols, &mut rng);
        let stimuli: Vec<Vec<i64>> = inputs
            .iter()
            .map(|i| {
                let mut s: Vec<i64> = i.a.iter().map(|&x| x as i64).collect();
                s.push(i.valid as i64);
                s.extend(i.w.iter().map(|&x| x as i64));
                s.push(i.w_load as i64);
                s.push(i.binary as i64);
                s
            })
            .collect();
        let got = icarus::run(
            dir.path(),
            &[&info.file],
            &info.module,
            &info.ports,
            &stimuli,
        )
        .unwrap();
        let mut twin = SystolicArray::with_xnor_bits(rows, cols, bits);
        let mut results = 0;
        for (t, (i, g)) in inputs.iter().zip(&got).enumerate() {
            let o = twin.outputs();
            let mut want: Vec<i64> = o.acc.iter().map(|&x| x as i64).collect();
            want.push(o.valid as i64);
            results += o.valid as usize;
            assert_eq!(g, &want, "{rows}x{cols} array Verilog, cycle {t}");
            twin.step(i);
        }
        assert!(results >= 4, "{rows}x{cols}: only {results} result lines");
    }
}

#[test]
fn pe_verilog_equals_twin() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let dir = tempfile::tempdir().unwrap();
    let m = write_verilog(&ArchConfig::preset("tiny").unwrap(), dir.path()).unwrap();
    let info = m.module("pe").unwrap();
    let ext = [i32::MIN, i32::MAX, -1, 0];
    let inputs: Vec<PeIn> = (0..300)
        .map(|t| PeIn {
            a: rng.int8(),
            psum: if t % 3 == 0 {
                ext[t % 4]
            } else {
                rng.next() as i32
            },
            w: rng.int8(),
            w_load: rng.next().is_multiple_of(3),
            binary: rng.next().is_multiple_of(2),
        })
        .collect();
    let stimuli: Vec<Vec<i64>> = inputs
        .iter()
        .map(|i| {
            vec![
                i.a as i64,
                i.psum as i64,
                i.w as i64,
                i.w_load as i64,
                i.binary as i64,
            ]
        })
        .collect();
    let got = icarus::run(
        dir.path(),
        &[&info.file],
        &info.module,
        &info.ports,
        &stimuli,
    )
    .unwrap();
    let mut twin = Pe::default();
    for (t, (i, g)) in inputs.iter().zip(&got).enumerate() {
        let o = twin.outputs();
        assert_eq!(
            g,
            &vec![o.a as i64, o.psum as i64, o.w as i64, o.binary as i64],
            "PE Verilog, cycle {t}"
        );
        twin.step(i);
    }
}

#[test]
fn ppu_lane_verilog_equals_twin() {
    use proptest::strategy::{Strategy, ValueTree};
    let dir = tempfile::tempdir().unwrap();
    let m = write_verilog(&ArchConfig::preset("tiny").unwrap(), dir.path()).unwrap();
    let info = m.module("ppu_lane").unwrap();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let inputs: Vec<common::LaneIn> = (0..400)
        .map(|_| common::lane_in().new_tree(&mut runner).unwrap().current())
        .collect();
    let stimuli: Vec<Vec<i64>> = inputs.iter().map(|i| i.ports()).collect();
    let got = icarus::run(
        dir.path(),
        &[&info.file],
        &info.module,
        &info.ports,
        &stimuli,
    )
    .unwrap();
    let mut twin = common::LaneTwin::default();
    for (t, (i, g)) in inputs.iter().zip(&got).enumerate() {
        let (acc, acc_valid, byte, byte_valid) = twin.outputs();
        // acc_out is unsigned in the port list: compare its 32-bit pattern.
        let want = vec![
            acc as u32 as i64,
            acc_valid as i64,
            byte as i64,
            byte_valid as i64,
        ];
        assert_eq!(g, &want, "PPU lane Verilog, cycle {t}");
        twin.step(i);
    }
}
