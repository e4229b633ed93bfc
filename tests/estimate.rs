//! `systole estimate`: per-layer figures add up to the whole run, match the compiler's layer
//! report and the emulator's own run, and bad topology files get clear errors.

mod common;
use common::*;
use std::path::PathBuf;

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

fn fixture(p: &str) -> PathBuf {
    repo("../shared/fixtures/cases").join(p).join("model.onnx")
}

#[test]
fn plots_are_svg_and_png_and_follow_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let model = repo("models/demo/cases/mlp_qdq/model.onnx");
    let mut seen = vec![];
    for arch in ["ulx3s", "edge"] {
        let out = dir.path().join(arch);
        let o = systole(&[
            "estimate",
            model.to_str().unwrap(),
            "--arch",
            arch,
            "--plot",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        for name in ["roofline", "energy"] {
            let svg = std::fs::read_to_string(out.join(format!("{name}.svg"))).unwrap();
            assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
            // Text is drawn: the caption names the arch, the axes their quantities.
            assert!(svg.contains(arch), "{name}.svg lacks the arch name");
            let png = std::fs::read(out.join(format!("{name}.png"))).unwrap();
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name}.png");
            // IHDR: 1000 x 640.
            assert_eq!(&png[16..24], &[0, 0, 3, 232, 0, 0, 2, 128]);
            seen.push((name, svg, png));
        }
        let leftovers: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
    // Different data, different pictures (both formats).
    for i in 0..2 {
        assert_ne!(seen[i].1, seen[i + 2].1, "{} svg", seen[i].0);
        assert_ne!(seen[i].2, seen[i + 2].2, "{} png", seen[i].0);
    }
    // A plot folder that cannot be created is a clear error, and -o is not written.
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let out = dir.path().join("table.txt");
    let o = systole(&[
        "estimate",
        model.to_str().unwrap(),
        "--plot",
        file.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("plot folder"), "{}", text(&o));
    assert!(!text(&o).contains("panicked"));
    assert!(!out.exists());
}

#[test]
fn node_scaling_scales_on_chip_energy_only() {
    let model = repo("models/demo/cases/mlp_qdq/model.onnx");
    let base = json(&["estimate", model.to_str().unwrap(), "--json"]);
    let half = json(&[
        "estimate",
        model.to_str().unwrap(),
        "--json",
        "--node-nm",
        "22.5",
    ]);
    assert_eq!(half["node_nm"].as_f64(), Some(22.5));
    let (b, h) = (&base["total"]["energy"], &half["total"]["energy"]);
    for k in ["mac_pj", "ppu_pj", "input_buffer_pj", "control_pj"] {
        let (x, y) = (b[k].as_f64().unwrap(), h[k].as_f64().unwrap());
        assert!(
            x > 0.0 && (y - x / 2.0).abs() <= 1e-9 * x,
            "{k}: {x} -> {y}"
        );
    }
    assert_eq!(b["dram_pj"], h["dram_pj"]);
    assert_eq!(base["total"]["cycles"], half["total"]["cycles"]);
    let o = systole(&["estimate", model.to_str().unwrap(), "--node-nm=-3"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("energy.scale_to_nm"), "{}", text(&o));
}

#[test]
fn bad_energy_tables_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let model = repo("models/demo/cases/mlp_qdq/model.onnx");
    let preset = String::from_utf8(systole(&["arch", "show", "ulx3s"]).stdout).unwrap();
    let preset: String = preset
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    for (energy, expect) in [
        (
            "int8_mul_pj = -0.2",
            "`energy.int8_mul_pj`: must be a non-negative number",
        ),
        (
            "dram_64b_pj = nan",
            "`energy.dram_64b_pj`: must be a non-negative number, got NaN",
        ),
        (
            "node_nm = 28.0\nint8_mul_pj = 0.1",
            "`energy.int8_add_pj`: missing: required when node_nm = 28",
        ),
        ("bogus_pj = 1.0", "bogus_pj"),
    ] {
        // The preset without its [energy] table, then ours.
        let cut = preset.find("[energy]").unwrap_or(preset.len());
        let text_toml = format!("{}\n[energy]\n{energy}\n", &preset[..cut]);
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, text_toml).unwrap();
        let o = systole(&[
            "estimate",
            model.to_str().unwrap(),
            "--arch",
            p.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(1), "{energy}");
        let t = text(&o);
        assert!(
            t.contains(expect) && t.contains("bad.toml"),
            "{energy}: {t}"
        );
        assert!(!t.contains("panicked"), "{t}");
    }
}

#[test]
fn binary_layers_run_on_xnor_popcount() {
    let e = json(&["estimate", fixture("TFC_1W1A").to_str().unwrap(), "--json"]);
    let layers = e["layers"].as_array().unwrap();
    let binary: Vec<bool> = layers
        .iter()
        .map(|l| l["binary"].as_bool().unwrap())
        .collect();
    // w1a1 throughout: the bipolar image is packed on chip, every layer runs binary.
    assert_eq!(binary, [true, true, true, true]);
    for l in layers {
        let (mac, xnor) = (
            l["energy"]["mac_pj"].as_f64().unwrap(),
            l["mac_xnor_pj"].as_f64().unwrap(),
        );
        // Each PE slot: 8 XNOR-popcount bits (1.5 full adders each) and the int32 add.
        let slots = l["mac_slots"].as_f64().unwrap();
        assert!(
            (xnor - slots * (8.0 * 0.005625 + 0.1)).abs() < 1e-6 * xnor,
            "{xnor}"
        );
        assert!((xnor - mac).abs() < 1e-6 * mac, "{xnor} vs {mac}");
        // 8 binary MACs a slot: fewer slots than the layer has MACs.
        assert!(slots * 4.0 < l["macs"].as_f64().unwrap());
    }
    // An 8-bit model has none.
    let e = json(&[
        "estimate",
        fixture("TFC_2W2A_qcdq").to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(e["total"]["mac_xnor_pj"].as_f64(), Some(0.0));
}

/// ResNet-18's strided 3 x 3 rows on `scalesim32`, which keep every n-tile's accumulators in
/// one region: no parameter load waits for the accumulator write port (the chains write a line
/// every cycle there), and Conv4_1a, whose whole output fits the accumulator, loads its weights
/// once (one m-tile).
#[test]
fn strided_resnet_rows_load_parameters_where_no_chain_writes() {
    let topo =
        systole::estimate::read_topology(&repo("../shared/bench/scalesim/resnet18.csv")).unwrap();
    let arch = systole_arch::ArchConfig::preset("scalesim32").unwrap();
    for name in ["Conv3_1a", "Conv4_1a"] {
        let t = topo.iter().find(|t| t.name == name).unwrap();
        let q = t.model();
        let (prog, _) = systole_compiler::lower::to_program(&arch, &q).unwrap();
        let n: usize = q.input.shape.iter().product();
        let input = systole_emulator::IoData::I8(vec![1; n]);
        let r = systole_emulator::run(&prog, &arch, &[input], &Default::default()).unwrap();
        let s = &r.stats;
        assert_eq!(s.accumulator_buffer.conflict_stalls, 0, "{name}");
        assert_eq!(s.load.port_stall_cycles, 0, "{name}");
        let weights = (t.filter_h * t.filter_w * t.channels * t.filters) as u64;
        if name == "Conv4_1a" {
            assert!(
                s.dram_bytes_read < 2 * weights,
                "{name}: {}",
                s.dram_bytes_read
            );
        }
    }
}
