//! `systole sweep`: the grid, shards and their merge, the Pareto front and plot, and errors.

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn ok(args: &[&str]) {
    let o = systole(args);
    assert!(o.status.success(), "{args:?}: {}", text(&o));
}

#[test]
fn shards_merge_into_the_whole_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let model = repo("../shared/fixtures/cases/TFC_1W1A/model.onnx");
    let m = model.to_str().unwrap();
    let grid = [
        "--rows",
        "4,8",
        "--cols",
        "8,16",
        "--buffers",
        "8192,32768",
        "--precision",
        "int8,xnor",
    ];
    let mut whole = vec!["sweep", m];
    whole.extend_from_slice(&grid);
    let (full, plots) = (d("full.csv"), d("plots"));
    whole.extend_from_slice(&["-o", &full, "--plot", &plots]);
    ok(&whole);
    let csv = std::fs::read_to_string(&full).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 2 * 2 * 2 * 2, "{csv}");
    assert!(lines[0].starts_with("index,of,rows,cols,buffer_bytes,precision,engine,status"));
    assert!(
        lines.iter().skip(1).all(|l| l.contains(",analytic,ok,")),
        "{csv}"
    );
    assert!(
        lines.iter().any(|l| l.ends_with(",true")),
        "no Pareto point"
    );
    // xnor points run TFC_1W1A's bipolar layers on the XNOR-popcount datapath: fewer
    // cycles (8 products per PE slot) and less energy than the same shape in int8.
    let field = |l: &str, i: usize| l.split(',').nth(i).unwrap().to_string();
    for pair in lines[1..].chunks(2) {
        assert_eq!(field(pair[0], 5), "int8");
        assert_eq!(field(pair[1], 5), "xnor");
        let num = |l: &str, i: usize| field(l, i).parse::<f64>().unwrap();
        assert!(num(pair[1], 8) < num(pair[0], 8) / 2.0, "cycles: {pair:?}");
        assert!(
            num(pair[1], 10) < num(pair[0], 10) / 2.0,
            "energy: {pair:?}"
        );
    }
    // Bigger arrays cost more LUTs and DSPs.
    let luts = |i: usize| field(lines[i], 15).parse::<f64>().unwrap();
    assert!(luts(1) < luts(lines.len() - 1));
    for ext in ["svg", "png"] {
        let p = dir.path().join("plots").join(format!("pareto.{ext}"));
        assert!(
            std::fs::metadata(&p).unwrap().len() > 1000,
            "{}",
            p.display()
        );
    }
    // Three shards, merged in any order, give the same file.
    let mut shards = vec![];
    for i in 0..3 {
        let out = d(&format!("s{i}.csv"));
        let shard = format!("{i}/3");
        let mut a = vec!["sweep", m];
        a.extend_from_slice(&grid);
        a.extend_from_slice(&["--shard", &shard, "-o", &out]);
        ok(&a);
        shards.push(out);
    }
    let merged = d("merged.csv");
    ok(&[
        "sweep", "merge", &shards[2], &shards[0], &shards[1], "-o", &merged,
    ]);
    assert_eq!(std::fs::read_to_string(&merged).unwrap(), csv);
    // A missing or repeated shard is named; nothing is written.
    let bad = d("bad.csv");
    let o = systole(&["sweep", "merge", &shards[0], &shards[1], "-o", &bad]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("points are missing"), "{}", text(&o));
    let o = systole(&[
        "sweep", "merge", &shards[0], &shards[0], &shards[1], &shards[2], "-o", &bad,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("more than one shard"), "{}", text(&o));
    let o = systole(&["sweep", "merge", &model.to_string_lossy(), "-o", &bad]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!text(&o).contains("panicked"), "{}", text(&o));
    assert!(!Path::new(&bad).exists());
}

#[test]
fn exact_sweep_agrees_with_the_analytic_one() {
    let dir = tempfile::tempdir().unwrap();
    let model = repo("models/demo/cases/cnn_qdq/model.onnx");
    let (a, x) = (dir.path().join("a.csv"), dir.path().join("x.csv"));
    for (out, extra) in [(&a, None), (&x, Some("--exact"))] {
        let mut args = vec![
            "sweep",
            model.to_str().unwrap(),
            "--rows",
            "4,8",
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        ok(&args);
    }
    let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap();
    let (a, x) = (read(&a), read(&x));
    assert!(x.contains(",emulator,ok,"), "{x}");
    for (la, lx) in a.lines().skip(1).zip(x.lines().skip(1)) {
        let c = |l: &str| l.split(',').nth(8).unwrap().parse::<f64>().unwrap();
        assert!((c(la) - c(lx)).abs() <= 0.05 * c(lx), "{la}\n{lx}");
    }
}

#[test]
fn bad_sweep_arguments_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.csv");
    let model = repo("models/demo/cases/mlp_qdq/model.onnx");
    for (args, expect) in [
        (vec!["--rows", "4,x"], "'x' is not a positive integer"),
        (vec!["--rows", "0"], "'0' is not a positive integer"),
        (vec!["--shard", "3/2"], "need 0 <= I < N"),
        (vec!["--shard", "1"], "expected I/N"),
        (vec!["--precision", "fp16"], "unknown precision 'fp16'"),
    ] {
        let mut a = vec![
            "sweep",
            model.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ];
        a.extend(args.iter().copied());
        let o = systole(&a);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(expect), "{args:?}: {}", text(&o));
        assert!(!out.exists());
    }
    // An infeasible point (buffers too small for one tile) is reported in its row.
    let o = systole(&[
        "sweep",
        model.to_str().unwrap(),
        "--rows",
        "4,256",
        "--cols",
        "4",
        "--buffers",
        "1024",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let csv = std::fs::read_to_string(&out).unwrap();
    assert!(csv.contains("infeasible: point 256x4 1024 B"), "{csv}");
}
