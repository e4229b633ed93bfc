//! `systole estimate`: per-layer figures add up to the whole run, match the compiler's layer
//! report and the emulator's own run, and bad topology files get clear errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn systole(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_systole"))
        .args(args)
        .output()
        .expect("run systole")
}

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(args: &[&str]) -> serde_json::Value {
    let o = systole(args);
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn model_layers_add_up_to_the_run() {
    let model = repo("models/demo/cases/cnn_qdq/model.onnx");
    let e = json(&["estimate", model.to_str().unwrap(), "--json"]);
    let layers = e["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 4);
    let total = &e["total"];
    let sum = |f: &dyn Fn(&serde_json::Value) -> f64| layers.iter().map(f).sum::<f64>();
    for key in [
        "cycles",
        "macs",
        "mac_slots",
        "dram_bytes_read",
        "dram_bytes_written",
    ] {
        assert_eq!(
            sum(&|l| l[key].as_f64().unwrap()),
            total[key].as_f64().unwrap(),
            "{key}"
        );
    }
    let e_sum = sum(&|l| l["energy"]["total_pj"].as_f64().unwrap());
    let e_tot = total["energy"]["total_pj"].as_f64().unwrap();
    assert!((e_sum - e_tot).abs() <= 1e-6 * e_tot, "{e_sum} vs {e_tot}");
    // The whole run equals `systole run` of the compiled program on the same arch.
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("cnn.sysb");
    let o = systole(&[
        "compile",
        model.to_str().unwrap(),
        "-o",
        img.to_str().unwrap(),
        "--report",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let t = String::from_utf8_lossy(&o.stdout).to_string();
    let total_line = t.lines().find(|l| l.starts_with("total:")).unwrap();
    assert!(
        total_line.contains(&format!("{} cycles", total["cycles"])),
        "{total_line} vs {}",
        total["cycles"]
    );
    // Each layer's MACs and cycles are the ones `compile --report` prints.
    for l in layers {
        let name = l["name"].as_str().unwrap();
        let row = t
            .lines()
            .find(|r| r.starts_with(&name[..name.len().min(24)]))
            .unwrap_or_else(|| panic!("{name} not in\n{t}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert!(cols.contains(&l["macs"].to_string().as_str()), "{row}");
        assert!(cols.contains(&l["cycles"].to_string().as_str()), "{row}");
    }
}

#[test]
fn scalesim_topology_rows_become_convolutions() {
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("t.csv");
    std::fs::write(
        &topo,
        "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n\
         a, 9, 9, 3, 3, 16, 32, 2,\n\
         fc, 1, 1, 1, 1, 64, 10, 1,\n",
    )
    .unwrap();
    let e = json(&[
        "estimate",
        "--topology",
        topo.to_str().unwrap(),
        "--arch",
        "tiny",
        "--json",
    ]);
    let l = e["layers"].as_array().unwrap();
    // No padding: (9 - 3) / 2 + 1 = 4 -> 16 output pixels.
    assert_eq!(
        (l[0]["m"].as_u64(), l[0]["k"].as_u64()),
        (Some(16), Some(144))
    );
    assert_eq!(l[0]["macs"].as_u64(), Some(16 * 144 * 32));
    assert_eq!(l[1]["macs"].as_u64(), Some(640));
    for x in l {
        assert!(x["cycles"].as_u64().unwrap() >= x["compute_bound_cycles"].as_u64().unwrap());
        assert!(x["cycles"].as_u64().unwrap() >= x["dram_bound_cycles"].as_u64().unwrap());
    }
    // CSV: a header, one line per layer and the total.
    let o = systole(&[
        "estimate",
        "--topology",
        topo.to_str().unwrap(),
        "--arch",
        "tiny",
        "--csv",
    ]);
    let csv = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(csv.starts_with("layer,m,k,n,macs,"));
}

#[test]
fn bad_topologies_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let header = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n";
    for (body, expect) in [
        ("", "empty topology"),
        (header, "no layer rows"),
        ("x,1,2\n", "header"),
        (&format!("{header}a, 9, 9, 3, 3, 16\n"), "line 2: 6 columns"),
        (
            &format!("{header}a, 9, 9, 3, 3, 16, -4, 1,\n"),
            "Num Filter must be a positive integer, got '-4'",
        ),
        (
            &format!("{header}a, 9, 9, 3, 3, 16, 4, 0,\n"),
            "Strides must be a positive integer",
        ),
        (
            &format!("{header}big, 2, 2, 3, 3, 1, 1, 1,\n"),
            "larger than the 2x2 ifmap",
        ),
    ] {
        let p = dir.path().join("bad.csv");
        std::fs::write(&p, body).unwrap();
        let o = systole(&["estimate", "--topology", p.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{body}");
        let t = text(&o);
        assert!(t.contains(expect) && t.contains("bad.csv"), "{body}: {t}");
        assert!(!t.contains("panicked"), "{t}");
    }
}
