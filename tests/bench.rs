//! `systole bench --table --quick`: the side-by-side table keeps its shape (no timing is
//! checked here; the figures live in docs/performance.md).

use std::process::Command;

#[test]
fn bench_table_quick_has_every_row() {
    let out = Command::new(env!("CARGO_BIN_EXE_systole"))
        .args(["bench", "--table", "--quick"])
        .output()
        .expect("run systole");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with('|')).collect();
    let cells = |l: &str| -> Vec<String> {
        l.trim_matches('|')
            .split(" | ")
            .map(|c| c.trim().to_string())
            .collect()
    };
    assert_eq!(
        cells(lines[0]),
        ["row", "measure", "systole", "peer", "ratio", "target", "met"]
    );
    let rows: Vec<Vec<String>> = lines[2..].iter().map(|l| cells(l)).collect();
    for r in &rows {
        assert_eq!(r.len(), 7, "{r:?}");
    }
    let of = |k: &str| rows.iter().filter(|r| r[0] == k).collect::<Vec<_>>();
    // (a) wall, peak memory, cycles; the emulator side always measured.
    let a = of("a");
    assert_eq!(a.len(), 3, "{stdout}");
    assert!(
        a[0][2].ends_with(')') && a[0][3].contains("SCALE-Sim"),
        "{a:?}"
    );
    assert!(a[1][2].ends_with("MB") || a[1][2] == "n/a", "{a:?}");
    assert!(a[2][2].parse::<u64>().unwrap() > 0, "{a:?}");
    // (b) skipped by --quick, with the recorded Verilator figure.
    let b = of("b");
    assert_eq!(b.len(), 1);
    assert!(b[0][3].contains("Verilator"), "{b:?}");
    // (c) TFC and the topology's compile times.
    let c = of("c");
    assert_eq!(c.len(), 2);
    assert!(c[0][1].contains("TFC_2W2A_qcdq"), "{c:?}");
    for r in &c {
        assert!(r[2].ends_with(" ms") || r[2].ends_with(" s"), "{r:?}");
    }
    // (d) the two quick rows and the total, each a cycles / roofline ratio.
    let d = of("d");
    assert_eq!(d.len(), 3, "{stdout}");
    for r in &d {
        let ratio: f64 = r[4].parse().unwrap();
        assert!(
            ratio >= 1.0,
            "a schedule faster than its lower bound: {r:?}"
        );
    }
}
