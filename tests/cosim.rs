//! The RTL (Verilog of `systole_top`, run in Verilator by `systole_hdl::cosim`) against the
//! emulator on compiled real models: every output bit-exact and the cycle count exactly equal.
//! Needs verilator on PATH (scripts/test.sh installs it) and ../shared/fixtures; fails, not
//! skips, without them.

use std::path::{Path, PathBuf};
use std::process::Command;
use systole_arch::ArchConfig;
use systole_compiler::lower;
use systole_compiler::tensor::read_tensor_file;
use systole_emulator::IoData;
use systole_hdl::cosim::{cosim, Rtl};

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// Compiles `case/model.onnx` for `arch` and co-simulates `sets` of its data sets.
fn check_model(case: &Path, arch: &ArchConfig, sets: &[usize]) {
    assert!(case.is_dir(), "{} is missing", case.display());
    let c = systole::model::compile(&case.join("model.onnx"), arch)
        .unwrap_or_else(|e| panic!("{}: {e:#}", case.display()));
    let rtl = Rtl::cached(arch, false).unwrap_or_else(|e| panic!("{e}"));
    for &k in sets {
        let input = read_tensor_file(case.join(format!("test_data_set_{k}/input_0.pb"))).unwrap();
        let hw = lower::input_to_hw(&c.qmodel.input, &input).unwrap();
        let r = cosim(&rtl, &c.program, &[IoData::I8(hw)], None).unwrap();
        eprintln!(
            "{} set {k} on {}: {} instructions, rtl {} cycles ({:.2} s), emulator {} cycles ({:.4} s)",
            case.display(),
            arch.name,
            c.program.code.len(),
            r.rtl.cycles,
            r.rtl.wall.as_secs_f64(),
            r.emu_cycles,
            r.emu_wall.as_secs_f64()
        );
        assert!(
            r.outputs_equal(),
            "{} set {k}: outputs differ\nrtl: {:?}\nemulator: {:?}",
            case.display(),
            r.rtl.outputs,
            r.emu_outputs
        );
        assert_eq!(
            r.rtl.cycles,
            r.emu_cycles,
            "{} set {k}: cycles",
            case.display()
        );
    }
}

#[test]
fn mlp_qdq_ulx3s() {
    check_model(
        &repo("models/demo/cases/mlp_qdq"),
        &ArchConfig::preset("ulx3s").unwrap(),
        &[0, 1, 2],
    );
}

#[test]
fn tfc_2w2a_qcdq_ulx3s() {
    check_model(
        &repo("../shared/fixtures/cases/TFC_2W2A_qcdq"),
        &ArchConfig::preset("ulx3s").unwrap(),
        &[0],
    );
}

/// Binary: every layer on the XNOR-popcount datapath (packed weights, an on-chip packing
/// pass for the bipolar image, packed stores between layers).
#[test]
fn tfc_1w1a_ulx3s() {
    check_model(
        &repo("../shared/fixtures/cases/TFC_1W1A"),
        &ArchConfig::preset("ulx3s").unwrap(),
        &[0, 1],
    );
}

#[test]
fn cnn_qdq_ulx3s() {
    check_model(
        &repo("models/demo/cases/cnn_qdq"),
        &ArchConfig::preset("ulx3s").unwrap(),
        &[0],
    );
}

/// Strided and plain 3 x 3 convolutions with enough channels for the compiler to put chains
/// behind chains (its n-tiles' regions, its channel chunks), on ulx3s with two weight registers
/// per PE and `chain_overlap`: outputs and cycles equal, chains started overlapped.
#[test]
fn convolutions_with_overlapped_chains_ulx3s() {
    let mut arch = ArchConfig::preset("ulx3s").unwrap();
    arch.array.weight_banks = 2;
    arch.array.chain_overlap = true;
    arch.name = "ulx3s_overlap".into();
    let rtl = Rtl::cached(&arch, false).unwrap_or_else(|e| panic!("{e}"));
    let topo = systole::estimate::parse_topology(
        "Layer name,IFMAP Height,IFMAP Width,Filter Height,Filter Width,Channels,Num Filter,Strides,\n\
         A,30,30,3,3,16,32,2,\n\
         E,20,20,3,3,24,40,2,\n\
         B,16,16,3,3,32,32,1,\n",
    )
    .unwrap();
    let mut rng = systole_emulator::randprog::Rng::new(7);
    for t in &topo {
        let q = t.model();
        let (prog, _) = lower::to_program(&arch, &q).unwrap();
        let n: usize = q.input.shape.iter().product();
        let x = systole_compiler::tensor::Tensor {
            shape: q.input.shape.clone(),
            data: systole_compiler::tensor::TensorData::I8(
                (0..n).map(|_| rng.next_u64() as i8).collect(),
            ),
        };
        let hw = lower::input_to_hw(&q.input, &x).unwrap();
        let r = cosim(&rtl, &prog, &[IoData::I8(hw)], None).unwrap();
        let ov = r.emu_stats.compute.overlapped;
        eprintln!(
            "{}: rtl {} cycles, emulator {} cycles, {ov} overlapped chains",
            t.name, r.rtl.cycles, r.emu_cycles
        );
        assert!(r.outputs_equal(), "{}: outputs differ", t.name);
        assert_eq!(r.rtl.cycles, r.emu_cycles, "{}: cycles", t.name);
        assert!(ov > 0, "{}: no chain started overlapped", t.name);
    }
}

/// `systole cosim` on the docs' double-buffering example: exit 0 and "equal" twice.
#[test]
fn cosim_command() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo("docs/isa.md")).unwrap();
    let asm: String = text
        .split("```sysasm\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .unwrap()
        .to_string();
    let src = dir.path().join("db.sysasm");
    std::fs::write(&src, asm).unwrap();
    let img = dir.path().join("db.sysb");
    let bin = env!("CARGO_BIN_EXE_systole");
    let st = Command::new(bin)
        .args(["asm"])
        .arg(&src)
        .arg("-o")
        .arg(&img)
        .status()
        .unwrap();
    assert!(st.success());
    let a: Vec<i8> = (0..64).map(|i| (i * 7 - 100) as i8).collect();
    let npy = dir.path().join("a.npy");
    systole_compiler::tensor::write_npy(
        &npy,
        &systole_compiler::tensor::Tensor::new(
            vec![16, 4],
            systole_compiler::tensor::TensorData::I8(a),
        )
        .unwrap(),
    )
    .unwrap();
    // `systole cosim IMG --input NPY ARGS...`: its stdout, which must report success.
    let cosim = |args: &[&std::ffi::OsStr]| -> String {
        let out = Command::new(bin)
            .arg("cosim")
            .arg(&img)
            .arg("--input")
            .arg(&npy)
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let text = cosim(&[]);
    assert!(text.contains("output c [16, 4]: equal"), "{text}");
    assert!(text.contains("(equal)"), "{text}");

    // The same run with a waveform: a VCD whose `done` rises, whose `cycles` ends at the
    // cycle count both sides printed, and whose clock ticks through every cycle.
    let vcd = dir.path().join("run.vcd");
    let text = cosim(&["--vcd".as_ref(), vcd.as_os_str()]);
    let cycles: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("cycles: rtl "))
        .and_then(|l| l.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no cycle count in {text}"));
    let w = Vcd::read(&vcd);
    assert_eq!(w.last("done"), Some(1), "done never rose");
    assert_eq!(w.last("cycles"), Some(cycles), "final value of `cycles`");
    assert!(
        w.changes("clock") >= 2 * cycles,
        "clock changed {} times in a {cycles}-cycle run",
        w.changes("clock")
    );
}

/// The top scope's signals of a VCD file: (name, identifier code) and every value change.
struct Vcd {
    ids: Vec<(String, String)>,
    changes: Vec<(String, u64)>,
}

impl Vcd {
    fn read(path: &Path) -> Vcd {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let (header, body) = text
            .split_once("$enddefinitions")
            .unwrap_or_else(|| panic!("{}: no $enddefinitions", path.display()));
        let mut ids = Vec::new();
        for l in header.lines() {
            // $var wire 64 id name [63:0] $end
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.first() == Some(&"$var") && f.len() >= 5 {
                ids.push((f[4].to_string(), f[3].to_string()));
            }
        }
        let mut changes = Vec::new();
        for l in body.lines().map(str::trim) {
            if let Some(rest) = l.strip_prefix('b') {
                if let Some((v, id)) = rest.split_once(' ') {
                    if let Ok(v) = u64::from_str_radix(v, 2) {
                        changes.push((id.to_string(), v));
                    }
                }
            } else if let Some(id) = l.strip_prefix('0').or_else(|| l.strip_prefix('1')) {
                if !id.is_empty() && !l.starts_with('#') {
                    changes.push((id.to_string(), l.starts_with('1') as u64));
                }
            }
        }
        Vcd { ids, changes }
    }

    /// The first (outermost) signal called `name`.
    fn id(&self, name: &str) -> &str {
        self.ids
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, i)| i.as_str())
            .unwrap_or_else(|| panic!("no signal `{name}` in the VCD"))
    }

    fn last(&self, name: &str) -> Option<u64> {
        let id = self.id(name);
        self.changes
            .iter()
            .rev()
            .find(|(i, _)| i == id)
            .map(|c| c.1)
    }

    fn changes(&self, name: &str) -> u64 {
        let id = self.id(name);
        self.changes.iter().filter(|(i, _)| i == id).count() as u64
    }
}
