//! Model-level commands: compile, check (conformance), eval (accuracy) and demo.

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use systole_arch::{ArchConfig, Program};
use systole_compiler::frontend::{self, ImportOptions};
use systole_compiler::ir::Graph;
use systole_compiler::lower::{self, LayerReport};
use systole_compiler::qir::{QData, QModel};
use systole_compiler::tensor::{Tensor, TensorData};
use systole_emulator::{run, IoData, RunOptions, Stats};

/// Reads and imports an ONNX model; the error names the file and every problem.
pub fn import(path: &Path) -> Result<Graph> {
    let model = systole_compiler::onnx::load_model(path)?;
    frontend::import(&model, &ImportOptions::default())
        .map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// A compiled model.
pub struct Compiled {
    pub program: Program,
    pub qmodel: QModel,
    pub layers: Vec<LayerReport>,
}

pub fn compile(path: &Path, arch: &ArchConfig) -> Result<Compiled> {
    let g = import(path)?;
    compile_graph(&g, path, arch)
}

/// Post-training quantization settings from the command line.
#[derive(Debug, Clone)]
pub struct CalibArgs {
    /// A .npy/.pb file (one sample, or a batch whose first dimension is the sample), a folder of
    /// such files, or a folder with MNIST IDX files (t10k-images-idx3-ubyte[.gz]).
    pub path: PathBuf,
    pub limit: usize,
    /// Percentile clipping (e.g. 99.99) instead of min/max.
    pub percentile: Option<f32>,
    /// Pixel scaling for MNIST IDX calibration images.
    pub pixel_scale: f32,
}

/// Calibration samples shaped like the graph's input.
pub fn calib_samples(g: &Graph, c: &CalibArgs) -> Result<Vec<Tensor>> {
    let shape = g
        .value(
            *g.inputs
                .first()
                .ok_or_else(|| anyhow!("the model has no input"))?,
        )
        .shape
        .clone();
    let per: usize = shape.iter().product();
    let mut flat: Vec<f32> = Vec::new();
    let mut push_tensor = |t: &Tensor| -> Result<()> {
        if !t.len().is_multiple_of(per) {
            bail!(
                "calibration tensor {:?} is not a whole number of {:?} samples",
                t.shape,
                shape
            );
        }
        flat.extend(t.to_f32_vec());
        Ok(())
    };
    let p = &c.path;
    if p.is_dir() {
        let idx = [
            "t10k-images-idx3-ubyte",
            "t10k-images-idx3-ubyte.gz",
            "train-images-idx3-ubyte",
            "train-images-idx3-ubyte.gz",
        ]
        .iter()
        .map(|n| p.join(n))
        .find(|f| f.exists());
        if let Some(images) = idx {
            let t = systole_compiler::tensor::read_idx(&images)?;
            let v: Vec<f32> = t
                .to_f32_vec()
                .iter()
                .take(c.limit * per)
                .map(|&x| x * c.pixel_scale)
                .collect();
            flat.extend(v);
        } else {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("cannot read {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| matches!(f.extension().and_then(|e| e.to_str()), Some("npy" | "pb")))
                .collect();
            files.sort();
            for f in files {
                push_tensor(&systole_compiler::tensor::read_tensor_file(&f)?)?;
            }
        }
    } else {
        push_tensor(&systole_compiler::tensor::read_tensor_file(p)?)?;
    }
    let samples: Vec<Tensor> = flat
        .chunks(per)
        .take(c.limit)
        .map(|s| Tensor::new(shape.clone(), TensorData::F32(s.to_vec())))
        .collect::<Result<_, _>>()?;
    if samples.is_empty() {
        bail!("{}: no calibration samples", p.display());
    }
    Ok(samples)
}

/// Compiles a model, quantizing it first when `calib` is given (float models).
pub fn compile_calibrated(
    path: &Path,
    arch: &ArchConfig,
    calib: Option<&CalibArgs>,
) -> Result<Compiled> {
    let g = import(path)?;
    let g = match calib {
        None => g,
        Some(c) => {
            // Fold constant sub-graphs first (e.g. a Reshape of the weights) so the pass sees
            // every weight as a constant.
            let g = lower::fold_constants(&g).map_err(|e| anyhow!("{}: {e}", path.display()))?;
            let samples = calib_samples(&g, c)?;
            let opts = systole_compiler::ptq::PtqOptions {
                method: match c.percentile {
                    Some(p) => systole_compiler::ptq::Calib::Percentile(p),
                    None => systole_compiler::ptq::Calib::MinMax,
                },
                ..Default::default()
            };
            systole_compiler::ptq::quantize(&g, &samples, &opts)
                .map_err(|e| anyhow!("{}: post-training quantization: {e}", path.display()))?
        }
    };
    compile_graph(&g, path, arch)
}

pub fn compile_graph(g: &Graph, path: &Path, arch: &ArchConfig) -> Result<Compiled> {
    let (program, qmodel, layers) = lower::compile(arch, g).map_err(|e| {
        anyhow!(
            "{}: cannot compile for arch '{}': {e}",
            path.display(),
            arch.name
        )
    })?;
    Ok(Compiled {
        program,
        qmodel,
        layers,
    })
}

/// Runs a compiled model on one host input: the host side of the model (quantization or
/// pre-processing, dequantization or a float tail) exactly as the model defines it, the rest
/// on the emulator. Also checks the emulator against the quantized reference interpreter.
pub fn run_model(c: &Compiled, arch: &ArchConfig, input: &Tensor) -> Result<(Tensor, Stats)> {
    let hw = lower::input_to_hw(&c.qmodel.input, input).map_err(|e| anyhow!(e))?;
    let r = run(
        &c.program,
        arch,
        &[IoData::I8(hw.clone())],
        &RunOptions::default(),
    )?;
    let raw = match &r.outputs[0] {
        IoData::I8(v) => QData::I8(v.clone()),
        IoData::I32(v) => QData::I32(v.clone()),
        IoData::U8(v) => QData::I8(v.iter().map(|&x| x as i8).collect()),
    };
    let reference = c.qmodel.run(&hw);
    if raw != reference {
        // Debugging aid: the layers and both results.
        if std::env::var_os("SYSTOLE_DEBUG_DISAGREE").is_some() {
            eprintln!(
                "layers: {:#?}\nemulator: {raw:?}\nreference: {reference:?}\ninput: {hw:?}",
                c.qmodel
                    .layers
                    .iter()
                    .map(|l| (&l.name, l.k, l.n, l.conv, l.pool, &l.out))
                    .collect::<Vec<_>>()
            );
        }
        bail!("the emulator and the quantized reference interpreter disagree (a compiler or emulator bug)");
    }
    let out = lower::output_from_hw(&c.qmodel.output, c.qmodel.m, &raw).map_err(|e| anyhow!(e))?;
    Ok((out, r.stats))
}

/// Per-layer table for `systole compile --report`, with exact cycles from one emulated run.
pub fn report(c: &Compiled, arch: &ArchConfig) -> Result<String> {
    // Timing does not depend on data: one run on zeros gives every layer's exact cycles
    // (split at each layer's first instruction, as `systole estimate` does).
    let e = crate::estimate::estimate_program(
        "",
        &c.program,
        &c.layers,
        arch,
        crate::estimate::Engine::Emulator,
    )?;
    let mut s = String::new();
    s.push_str(&format!(
        "{:<24} {:>16} {:>12} {:>18} {:>7} {:>10} {:>10} {:>8}  {}\n",
        "layer",
        "m x k x n",
        "MACs",
        "tiles m/n/k (kc)",
        "insns",
        "weights B",
        "cycles",
        "util",
        "schedule"
    ));
    for (l, le) in c.layers.iter().zip(&e.layers) {
        let t = &l.tiling;
        s.push_str(&format!(
            "{:<24} {:>16} {:>12} {:>18} {:>7} {:>10} {:>10} {:>7.1}%  {}\n",
            truncate(&l.name, 24),
            format!("{}x{}x{}", l.m, l.k, l.n),
            l.macs,
            format!("{}/{}/{} ({})", t.m_tiles, t.n_tiles, t.k_tiles, t.kc),
            l.instructions,
            l.weight_bytes,
            le.cycles,
            100.0 * le.utilization,
            l.schedule.join(", ")
        ));
    }
    for (key, side) in [("host.input", "before"), ("host.output", "after")] {
        if let Some(ops) = c.program.meta.get(key) {
            s.push_str(&format!("host {side} the program: {ops}\n"));
        }
    }
    let st = &e.total;
    s.push_str(&format!(
        "total: {} instructions, {} cycles = {:.2} us at {} MHz, {:.3} nJ, DRAM {} B\n",
        c.program.code.len(),
        st.cycles,
        st.latency_us,
        arch.clock_mhz,
        st.energy.total_pj / 1000.0,
        c.program.dram_bytes
    ));
    Ok(s)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let t: String = s.chars().take(n - 1).collect();
        format!("{t}~")
    }
}

/// The coverage report of `compile --check-only`: what imports, what lowers.
pub fn coverage(path: &Path, arch: &ArchConfig) -> Result<(bool, String)> {
    let model = systole_compiler::onnx::load_model(path)?;
    let mut s = String::new();
    let g = match frontend::import(&model, &ImportOptions::default()) {
        Ok(g) => g,
        Err(e) => {
            s.push_str(&format!(
                "{}: {} problem(s)\n",
                path.display(),
                e.issues.len()
            ));
            for i in &e.issues {
                s.push_str(&format!("  {i}\n"));
            }
            return Ok((false, s));
        }
    };
    let mut ops = std::collections::BTreeMap::<&str, usize>::new();
    for n in &g.nodes {
        *ops.entry(n.op.op_type()).or_default() += 1;
    }
    s.push_str(&format!(
        "{}: imports: {} nodes (",
        path.display(),
        g.nodes.len()
    ));
    s.push_str(
        &ops.iter()
            .map(|(k, v)| format!("{k} x{v}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    s.push_str(")\n");
    match lower::compile(arch, &g) {
        Ok((p, q, _)) => {
            s.push_str(&format!(
                "  compiles for '{}': {} layers, {} instructions, {} bytes of DRAM\n",
                arch.name,
                q.layers.len(),
                p.code.len(),
                p.dram_bytes
            ));
            Ok((true, s))
        }
        Err(e) => {
            for p in &e.problems {
                s.push_str(&format!("  cannot lower: {p}\n"));
            }
            Ok((false, s))
        }
    }
}

/// One row of `systole check`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseResult {
    pub case: String,
    pub pass: bool,
    pub data_sets: usize,
    pub max_abs_diff: f64,
    pub mismatches: usize,
    pub elements: usize,
    pub cycles: u64,
    /// Compared within --atol/--rtol (a float tail on the host) rather than exactly.
    pub tolerance: bool,
    /// Operators the host computes around the program (besides quantizing the input,
    /// dequantizing the output and reshaping), e.g. a float tail.
    pub host_ops: Vec<String>,
    pub error: Option<String>,
}

fn tensor_f64(t: &Tensor) -> Vec<f64> {
    match &t.data {
        TensorData::F32(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::F64(v) => v.clone(),
        TensorData::I8(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::U8(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::I32(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::Bool(v) => v.iter().map(|&x| x as u8 as f64).collect(),
    }
}

fn data_sets(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("test_data_set_"))
        })
        .collect();
    v.sort();
    Ok(v)
}

fn numbered(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    (0..)
        .map(|i| dir.join(format!("{prefix}_{i}.pb")))
        .take_while(|p| p.exists())
        .collect()
}

/// Compiles and runs one backend-test case folder; never fails, errors go in the row.
pub fn check_case(dir: &Path, arch: &ArchConfig, atol: f64, rtol: f64) -> CaseResult {
    check_case_with(dir, arch, atol, rtol, false)
}

/// As `check_case`; with `ptq`, float graphs are compiled through post-training quantization
/// calibrated on each data set's own input, and compared within the tolerances.
pub fn check_case_with(
    dir: &Path,
    arch: &ArchConfig,
    atol: f64,
    rtol: f64,
    ptq: bool,
) -> CaseResult {
    let case = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| dir.display().to_string());
    let mut row = CaseResult {
        case,
        pass: false,
        data_sets: 0,
        max_abs_diff: 0.0,
        mismatches: 0,
        elements: 0,
        cycles: 0,
        tolerance: false,
        host_ops: Vec::new(),
        error: None,
    };
    if let Err(e) = check_case_inner(dir, arch, atol, rtol, ptq, &mut row) {
        let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
        row.error = Some(msg.join(": ").replace("\n  - ", "; ").replace('\n', "; "));
        row.pass = false;
    }
    row
}

fn check_case_inner(
    dir: &Path,
    arch: &ArchConfig,
    atol: f64,
    rtol: f64,
    ptq: bool,
    row: &mut CaseResult,
) -> Result<()> {
    let model_path = dir.join("model.onnx");
    let proto = systole_compiler::onnx::load_model(&model_path)?;
    let sets = data_sets(dir)?;
    if sets.is_empty() {
        bail!("no test_data_set_* folders in {}", dir.display());
    }
    let initializers: std::collections::HashSet<&str> = proto
        .graph
        .iter()
        .flat_map(|g| g.initializer.iter().map(|t| t.name.as_str()))
        .collect();
    let proto_inputs: Vec<String> = proto
        .graph
        .iter()
        .flat_map(|g| g.input.iter().map(|v| v.name.clone()))
        .filter(|n| !initializers.contains(n.as_str()))
        .collect();
    // A model whose parameters are graph inputs (the ONNX node tests) is specialised to each
    // data set: every input but the first becomes a constant, the first stays the data. When
    // the import needs such a parameter (a Reshape's shape), it is bound before the import.
    let graph = match frontend::import(&proto, &ImportOptions::default()) {
        Ok(g) => Some(g),
        Err(_) if proto_inputs.len() > 1 => None,
        Err(e) => bail!("{}: {e}", model_path.display()),
    };
    let specialise = graph.as_ref().is_none_or(|g| g.inputs.len() > 1) || ptq;
    let mut compiled = match &graph {
        Some(g) if !specialise => Some(compile_graph(g, &model_path, arch)?),
        _ => None,
    };
    // Integer results and the dequantized outputs of quantized graphs must match exactly; a
    // float tail the host computes (float operators the model leaves unquantized) is compared
    // within the tolerances.
    let float_tail = |c: &Compiled| {
        c.qmodel.output.host.as_ref().is_some_and(|h| {
            h.nodes
                .iter()
                .any(|n| !matches!(n.op, systole_compiler::ir::Op::DequantizeLinear { .. }))
        })
    };
    for set in &sets {
        let inputs: Vec<Tensor> = numbered(set, "input")
            .iter()
            .map(systole_compiler::tensor::read_tensor_pb)
            .collect::<Result<_, _>>()?;
        let expected: Vec<Tensor> = numbered(set, "output")
            .iter()
            .map(systole_compiler::tensor::read_tensor_pb)
            .collect::<Result<_, _>>()?;
        if specialise {
            if inputs.len() != proto_inputs.len() {
                bail!(
                    "{}: {} inputs for a model with {}",
                    set.display(),
                    inputs.len(),
                    proto_inputs.len()
                );
            }
            let mut g = match &graph {
                Some(graph) => {
                    let mut g = graph.clone();
                    for (id, t) in graph.inputs.iter().zip(&inputs).skip(1) {
                        g.consts.insert(*id, t.clone());
                    }
                    g.inputs.truncate(1);
                    g
                }
                None => {
                    let mut p = proto.clone();
                    let pg = p.graph.as_mut().expect("a graph");
                    for (name, file) in proto_inputs.iter().zip(numbered(set, "input")).skip(1) {
                        let mut t = systole_compiler::onnx::load_tensor_proto(&file)?;
                        t.name = name.clone();
                        pg.initializer.push(t);
                        pg.input.retain(|v| &v.name != name);
                    }
                    frontend::import(&p, &ImportOptions::default())
                        .map_err(|e| anyhow!("{}: {e}", model_path.display()))?
                }
            };
            if ptq {
                let f = lower::fold_constants(&g).map_err(|e| anyhow!("{e}"))?;
                g = systole_compiler::ptq::quantize(&f, &inputs[..1], &Default::default())
                    .map_err(|e| anyhow!("post-training quantization: {e}"))?;
            }
            compiled = Some(compile_graph(&g, &model_path, arch)?);
        }
        let c = compiled.as_ref().expect("compiled");
        for key in ["host.input", "host.output"] {
            for op in c
                .program
                .meta
                .get(key)
                .into_iter()
                .flat_map(|v| v.split(','))
            {
                let view = [
                    "QuantizeLinear",
                    "DequantizeLinear",
                    "Identity",
                    "Reshape",
                    "Flatten",
                    "Squeeze",
                    "Unsqueeze",
                ];
                if !view.contains(&op) && !row.host_ops.iter().any(|o| o == op) {
                    row.host_ops.push(op.to_string());
                }
            }
        }
        if expected.len() != 1 {
            bail!("{}: only one output is supported", set.display());
        }
        let (atol, rtol) = if float_tail(c) || ptq {
            (atol, rtol)
        } else {
            (0.0, 0.0)
        };
        row.tolerance = atol > 0.0 || rtol > 0.0;
        let (out, stats) = run_model(c, arch, &inputs[0])?;
        let got = [out];
        for (g, e) in got.iter().zip(&expected) {
            if g.len() != e.len() {
                bail!(
                    "{}: output has {} elements, expected {}",
                    set.display(),
                    g.len(),
                    e.len()
                );
            }
            for (a, b) in tensor_f64(g).iter().zip(tensor_f64(e)) {
                let d = (a - b).abs();
                row.max_abs_diff = row.max_abs_diff.max(d);
                if d > atol + rtol * b.abs() || d.is_nan() {
                    row.mismatches += 1;
                }
                row.elements += 1;
            }
        }
        row.cycles = row.cycles.max(stats.cycles);
        row.data_sets += 1;
    }
    row.pass = row.mismatches == 0;
    Ok(())
}

/// Accuracy over an MNIST IDX folder: the emulated program's top-1.
pub struct EvalResult {
    pub correct: usize,
    pub total: usize,
    pub cycles: u64,
    pub stats: Option<Stats>,
}

pub fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Runs `program` over images (u8, [N, pixels]) scaled by `scale`, counting top-1 hits.
pub fn eval_images(
    c: &Compiled,
    arch: &ArchConfig,
    images: &[Vec<f32>],
    labels: &[usize],
    shape: &[usize],
    progress: bool,
) -> Result<EvalResult> {
    let pb = if progress {
        let pb = ProgressBar::new(images.len() as u64);
        pb.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} images, {per_sec}, eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb
    } else {
        ProgressBar::hidden()
    };
    let mut res = EvalResult {
        correct: 0,
        total: 0,
        cycles: 0,
        stats: None,
    };
    for (img, &label) in images.iter().zip(labels) {
        let t = Tensor::new(shape.to_vec(), TensorData::F32(img.clone()))?;
        let (out, stats) = run_model(c, arch, &t)?;
        if argmax(&tensor_f64(&out)) == label {
            res.correct += 1;
        }
        res.total += 1;
        res.cycles = stats.cycles;
        res.stats = Some(stats);
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(res)
}

/// Folder of the bundled demo model (trained by models/train_demo.py).
pub fn demo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join("demo")
}

/// `systole demo`: compile the bundled quantized MLP, run the bundled test images on the
/// emulator, and report accuracy, cycles, latency and energy.
pub fn demo(arch: &ArchConfig, output: Option<&Path>) -> Result<()> {
    let dir = demo_dir();
    let model = dir.join("mlp_qdq.onnx");
    println!(
        "model: {} (8x8 digits MLP, int8, trained by models/train_demo.py)",
        model.display()
    );
    println!(
        "arch: {} ({}x{} array at {} MHz)",
        arch.name, arch.array.rows, arch.array.cols, arch.clock_mhz
    );
    let t0 = std::time::Instant::now();
    let c = compile(&model, arch)?;
    println!(
        "compiled in {:.3} s: {} layers, {} instructions",
        t0.elapsed().as_secs_f64(),
        c.qmodel.layers.len(),
        c.program.code.len()
    );
    print!("{}", report(&c, arch)?);
    if let Some(out) = output {
        systole_arch::image::write_atomic(out, &c.program.to_bytes()?)
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    let images = systole_compiler::tensor::read_npy(dir.join("test_images.npy"))?;
    let labels = systole_compiler::tensor::read_npy(dir.join("test_labels.npy"))?;
    let per: usize = images.shape.iter().skip(1).product();
    let imgs: Vec<Vec<f32>> = images
        .to_f32_vec()
        .chunks(per)
        .map(|c| c.to_vec())
        .collect();
    let labels: Vec<usize> = tensor_f64(&labels).iter().map(|&l| l as usize).collect();
    let t0 = std::time::Instant::now();
    let r = eval_images(&c, arch, &imgs, &labels, &c.qmodel.input.shape, true)?;
    let wall = t0.elapsed().as_secs_f64();
    let st = r.stats.as_ref().ok_or_else(|| anyhow!("no test images"))?;
    println!("emulated {} images in {:.2} s", r.total, wall);
    println!("cycles per image: {}", st.cycles);
    println!(
        "latency per image: {:.2} us at {} MHz ({:.0} images/s)",
        st.latency_us,
        arch.clock_mhz,
        1e6 / st.latency_us
    );
    println!(
        "energy per image: {:.3} nJ (DRAM {:.1}%)",
        st.energy.total_pj / 1000.0,
        100.0 * st.energy.dram_pj / st.energy.total_pj.max(1e-12)
    );
    println!(
        "accuracy: {:.2}% ({}/{})",
        100.0 * r.correct as f64 / r.total.max(1) as f64,
        r.correct,
        r.total
    );
    Ok(())
}
