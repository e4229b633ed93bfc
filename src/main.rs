//! `systole`: compile quantized networks to the Systole accelerator, emulate them cycle by
//! cycle, and generate the hardware.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Instant;
use systole::{io_for_input, output_tensor, write_json_atomic};
use systole_arch::image::write_atomic;
use systole_arch::{ArchConfig, Program};
use systole_emulator::{run, RunOptions};

mod rtl;

#[derive(Parser)]
#[command(
    name = "systole",
    version,
    about = "Quantized neural networks to verified systolic-array hardware"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Inspect accelerator configurations.
    Arch {
        #[command(subcommand)]
        cmd: ArchCmd,
    },
    /// Assemble a text program into a program image (.sysb).
    Asm {
        /// Assembler source (see docs/isa.md).
        input: PathBuf,
        /// Output image.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Disassemble a program image to assembler text.
    Disasm {
        image: PathBuf,
        /// Write to a file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Write the accelerator's Verilog (top module systole_top), its manifest and the Verilator
    /// harness for an arch.
    Rtl {
        #[arg(long, default_value = "tiny")]
        arch: String,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Run a program on the RTL (Verilator) and on the emulator; exit 1 unless outputs and
    /// cycle counts are equal.
    Cosim {
        program: PathBuf,
        /// One tensor per program input, in order (.npy or ONNX TensorProto .pb).
        #[arg(long, num_args = 1..)]
        input: Vec<PathBuf>,
        /// Arch (default: the one embedded in the image; must match it).
        #[arg(long)]
        arch: Option<String>,
        /// Write a VCD waveform of the RTL run.
        #[arg(long)]
        vcd: Option<PathBuf>,
    },
    /// Run a program image on the cycle-accurate emulator.
    Run {
        program: PathBuf,
        /// One tensor per program input, in order (.npy or ONNX TensorProto .pb).
        #[arg(long, num_args = 1..)]
        input: Vec<PathBuf>,
        /// One .npy per program output, in order.
        #[arg(long, num_args = 1..)]
        output: Vec<PathBuf>,
        /// Arch to run on (default: the one embedded in the image; must match it).
        #[arg(long)]
        arch: Option<String>,
        /// Write a Chrome/Perfetto trace (one track per unit).
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Write all statistics as JSON.
        #[arg(long)]
        stats_json: Option<PathBuf>,
        /// Dequantize outputs that carry a scale and zero point to float32.
        #[arg(long)]
        dequantize: bool,
        /// Stop with an error after this many cycles.
        #[arg(long)]
        max_cycles: Option<u64>,
    },
    /// Compile an ONNX model to a program image.
    Compile {
        model: PathBuf,
        #[arg(long, default_value = "ulx3s")]
        arch: String,
        /// Output image (required unless --check-only).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Print a per-layer table: shape, MACs, tiles, instructions, weights, exact cycles.
        #[arg(long)]
        report: bool,
        /// Only print what imports and what lowers; exit 0 if the model compiles, 1 if not.
        #[arg(long)]
        check_only: bool,
        /// Post-training quantization of a float model: calibration data (.npy/.pb file or
        /// folder, or an MNIST IDX folder).
        #[arg(long)]
        calib: Option<PathBuf>,
        /// Calibration samples to use.
        #[arg(long, default_value_t = 200)]
        calib_limit: usize,
        /// Clip activation ranges at this percentile of |x| (e.g. 99.99) instead of min/max.
        #[arg(long)]
        percentile: Option<f32>,
    },
    /// Per-layer MACs, exact cycles, latency, array utilization, bytes per memory level and
    /// energy by component, from the cycle-exact emulator and the arch's energy table.
    Estimate {
        /// An ONNX model (or give --topology).
        #[arg(required_unless_present = "topology")]
        model: Option<PathBuf>,
        /// A SCALE-Sim conv topology CSV: one synthetic int8 convolution per row (no padding).
        #[arg(long, conflicts_with = "model")]
        topology: Option<PathBuf>,
        #[arg(long, default_value = "ulx3s")]
        arch: String,
        /// JSON instead of the table.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// CSV (one line per layer, energies in pJ) instead of the table.
        #[arg(long)]
        csv: bool,
        /// Write the output to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Use the fast analytic estimator (src/analytic.rs) instead of the emulator.
        #[arg(long, conflicts_with = "check_analytic")]
        analytic: bool,
        /// Run both; report the analytic estimator's cycles and error per layer.
        #[arg(long)]
        check_analytic: bool,
        /// Report energies at this technology node (scales the on-chip energy entries, see
        /// docs/energy.md); overrides the arch's `energy.scale_to_nm`.
        #[arg(long)]
        node_nm: Option<f64>,
        /// Write roofline.{svg,png} and energy.{svg,png} to this folder.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Compare per-layer cycles with a SCALE-Sim COMPUTE_REPORT.csv (markdown table).
        #[arg(long, requires = "topology")]
        compare_scalesim: Option<PathBuf>,
        /// Post-training quantization of a float model: calibration data.
        #[arg(long)]
        calib: Option<PathBuf>,
        #[arg(long, default_value_t = 200)]
        calib_limit: usize,
        #[arg(long)]
        percentile: Option<f32>,
    },
    /// FPGA boards: build a bitstream of the accelerator for a board, run programs on one.
    Fpga {
        #[command(subcommand)]
        cmd: FpgaCmd,
    },
    /// Design-space sweep: latency, energy and area over array shapes, buffer sizes and MAC
    /// precisions (analytic estimator unless --exact), one CSV line per point.
    #[command(args_conflicts_with_subcommands = true)]
    Sweep {
        #[command(subcommand)]
        cmd: Option<SweepCmd>,
        /// An ONNX model (or give --topology).
        model: Option<PathBuf>,
        /// A SCALE-Sim conv topology CSV.
        #[arg(long, conflicts_with = "model")]
        topology: Option<PathBuf>,
        /// Base arch every point starts from.
        #[arg(long, default_value = "edge")]
        arch: String,
        /// Array rows to try, e.g. 4,8,16,32.
        #[arg(long, default_value = "4,8,16,32")]
        rows: String,
        /// Array columns to try (default: the same as --rows).
        #[arg(long)]
        cols: Option<String>,
        /// Input, weight and output buffer sizes in bytes to try (accumulator: 4x); default:
        /// the base arch's.
        #[arg(long)]
        buffers: Option<String>,
        /// MAC precisions to price: int8, xnor (binary layers on an XNOR-popcount datapath).
        #[arg(long, default_value = "int8")]
        precision: String,
        /// Use the cycle-exact emulator instead of the analytic estimator.
        #[arg(long)]
        exact: bool,
        /// Run only the points whose index is I modulo N (0 <= I < N).
        #[arg(long)]
        shard: Option<String>,
        /// Write pareto.{svg,png} to this folder.
        #[arg(long)]
        plot: Option<PathBuf>,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Conformance: compile each ONNX backend-test folder, run every data set on the emulator,
    /// compare with the expected outputs.
    Check {
        #[arg(required = true)]
        cases: Vec<PathBuf>,
        #[arg(long, default_value = "ulx3s")]
        arch: String,
        /// One JSON object per case instead of the table.
        #[arg(long)]
        json: bool,
        /// Tolerances for float outputs the host computes (float tails left unquantized by the
        /// model, float models compiled through post-training quantization). Everything else
        /// must match exactly.
        #[arg(long, default_value_t = 1e-5)]
        atol: f64,
        #[arg(long, default_value_t = 1e-5)]
        rtol: f64,
        /// Compile float graphs through post-training quantization calibrated on each data
        /// set's own input (outputs compared within --atol/--rtol).
        #[arg(long)]
        ptq: bool,
    },
    /// Top-1 accuracy of the emulated program over an MNIST IDX folder.
    Eval {
        model: PathBuf,
        /// Folder with t10k-images-idx3-ubyte(.gz) and t10k-labels-idx1-ubyte(.gz).
        #[arg(long)]
        mnist: PathBuf,
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long, default_value = "ulx3s")]
        arch: String,
        /// Pixel scaling: the model sees pixel * scale (Brevitas/torchvision: 1/255).
        #[arg(long, default_value_t = 1.0 / 255.0)]
        pixel_scale: f32,
        /// Skip this many test images (e.g. the ones used for calibration).
        #[arg(long, default_value_t = 0)]
        skip: usize,
        /// Also report the float model's accuracy through the reference interpreter.
        #[arg(long)]
        float: bool,
        /// Post-training quantization of a float model: calibration data (.npy/.pb file or
        /// folder, or an MNIST IDX folder).
        #[arg(long)]
        calib: Option<PathBuf>,
        /// Calibration samples to use.
        #[arg(long, default_value_t = 200)]
        calib_limit: usize,
        /// Clip activation ranges at this percentile of |x| (e.g. 99.99) instead of min/max.
        #[arg(long)]
        percentile: Option<f32>,
    },
    /// The main job on the bundled model: compile, emulate the bundled test images, report.
    Demo {
        #[arg(long, default_value = "ulx3s")]
        arch: String,
        /// Write the compiled program here too.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Print the ISA reference (the generated part of docs/isa.md).
    Isa,
    /// Measure emulator speed on a large GEMM program; `--table`: the side-by-side table of
    /// issue [7] (ResNet-18 shapes vs SCALE-Sim v3, emulator vs Verilator, compile times,
    /// cycles over the roofline bound per layer).
    Bench {
        #[arg(long, default_value = "edge")]
        arch: String,
        #[arg(long, default_value_t = 512)]
        m: usize,
        #[arg(long, default_value_t = 1024)]
        k: usize,
        #[arg(long, default_value_t = 1024)]
        n: usize,
        /// Repetitions (the table reports the fastest).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Print the side-by-side table instead (see docs/performance.md).
        #[arg(long)]
        table: bool,
        /// With --table: only the two smallest topology rows, no SCALE-Sim or Verilator run.
        #[arg(long)]
        quick: bool,
        /// With --table: the SCALE-Sim topology (scale.cfg and NAME_layout.csv next to it).
        #[arg(long, default_value_os_t = default_topology())]
        topology: PathBuf,
        /// With --table: the model whose compile time is measured.
        #[arg(long, default_value_os_t = default_tfc())]
        tfc: PathBuf,
        /// With --table: the Python that runs `-m scalesim.scale`.
        #[arg(long, default_value = "python3")]
        python: String,
        /// With --table: SCALE-Sim's time limit in seconds.
        #[arg(long, default_value_t = 3600)]
        scalesim_timeout: u64,
        /// With --table: show SCALE-Sim's recorded figures instead of running it.
        #[arg(long)]
        no_scalesim: bool,
        /// With --table: do not build or run the Verilator model.
        #[arg(long)]
        no_verilator: bool,
        /// Internal: compile and emulate a topology, print per-layer lines and peak memory.
        #[arg(long, hide = true)]
        child_topology: Option<PathBuf>,
    },
}

fn default_topology() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/scalesim/resnet18.csv")
}

fn default_tfc() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/cases/TFC_2W2A_qcdq/model.onnx")
}

#[derive(Subcommand)]
enum FpgaCmd {
    /// Synthesis, place and route and bitstream of the board top level (accelerator, UART host
    /// link, on-chip memory); writes the bitstream, utilization.md and the tools' logs, and
    /// fails if timing is not met at the arch's clock.
    Build {
        /// ulx3s or icebreaker.
        #[arg(long)]
        board: String,
        /// Arch preset or file (default: ulx3s on the ULX3S, up5k on the iCEBreaker).
        #[arg(long)]
        arch: Option<String>,
        /// log2 of the on-chip memory's bytes (the programs' DRAM; default: 16 on the ULX3S,
        /// 11 on the iCEBreaker).
        #[arg(long)]
        mem_bits: Option<u32>,
        /// Bake this network (compiled for the arch) into the bitstream: its program and
        /// weights are the block RAMs' initial values; run it with `fpga run --baked`.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Extra nextpnr option, passed as is (repeatable), e.g. `--pnr-arg=--seed=3` or
        /// `--pnr-arg=--placer=heap` (instead of the flow's static placer on ECP5).
        #[arg(long = "pnr-arg", allow_hyphen_values = true)]
        pnr_args: Vec<String>,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Run a program image on a board over its USB serial port: outputs and cycle count.
    Run {
        /// Serial device, e.g. /dev/ttyUSB0.
        #[arg(long)]
        port: String,
        program: PathBuf,
        /// One tensor per program input, in order (.npy or ONNX TensorProto .pb).
        #[arg(long, num_args = 1..)]
        input: Vec<PathBuf>,
        #[arg(long, default_value_t = systole_fpga::flow::BAUD)]
        baud: u32,
        /// log2 of the board's on-chip memory bytes (as built). Default: what the board's
        /// `ping` reply says (bitstreams from before that reply: 16).
        #[arg(long)]
        mem_bits: Option<u32>,
        /// The bitstream has this program baked in (`fpga build --model`): send only inputs.
        #[arg(long)]
        baked: bool,
    },
}

#[derive(Subcommand)]
enum SweepCmd {
    /// Join shard CSVs of one sweep (every point exactly once) and recompute the Pareto front.
    Merge {
        #[arg(required = true)]
        shards: Vec<PathBuf>,
        #[arg(short, long)]
        output: PathBuf,
        /// Write pareto.{svg,png} to this folder.
        #[arg(long)]
        plot: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ArchCmd {
    /// Print a resolved arch config (a preset name or a TOML file).
    Show { arch: String },
    /// List the bundled presets.
    List,
}

fn main() {
    // A closed stdout (a pipe into `head`) ends the program as it ends `cat`, by SIGPIPE,
    // instead of a panic in `print!`.
    #[cfg(unix)]
    // SAFETY: restores the default action of one signal before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    if let Err(e) = dispatch(cli) {
        // One line: the chain of causes joined, so scripts can grep it.
        let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
        let one_line = msg.join(": ").replace("\n  - ", "; ").replace('\n', "; ");
        eprintln!("error: {one_line}");
        std::process::exit(1);
    }
}

fn shape_of(g: &systole_compiler::ir::Graph) -> Vec<usize> {
    g.value(g.inputs[0]).shape.clone()
}

/// One tensor file per program input, converted to what its descriptor asks for.
fn program_inputs(prog: &Program, input: &[PathBuf]) -> Result<Vec<systole_emulator::IoData>> {
    let descs: Vec<_> = prog.inputs().collect();
    if input.len() != descs.len() {
        let names: Vec<_> = descs.iter().map(|d| d.name.as_str()).collect();
        bail!(
            "the program takes {} input(s) ({}); {} --input given",
            descs.len(),
            names.join(", "),
            input.len()
        );
    }
    input
        .iter()
        .zip(descs)
        .map(|(path, d)| {
            let t = systole_compiler::tensor::read_tensor_file(path)?;
            io_for_input(&t, d).with_context(|| format!("{}", path.display()))
        })
        .collect()
}

/// The arch a program runs on: `--arch` (which must match the image's) or the image's own.
fn program_arch(prog: &Program, spec: Option<&str>) -> Result<ArchConfig> {
    Ok(match spec {
        Some(spec) => {
            let a = resolve_arch(spec)?;
            prog.check_arch(&a)?;
            a
        }
        None => prog.arch()?,
    })
}

fn resolve_arch(spec: &str) -> Result<ArchConfig> {
    Ok(ArchConfig::resolve(spec)?)
}

fn load_program(path: &Path) -> Result<Program> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Program::from_bytes(&bytes).with_context(|| format!("{}", path.display()))
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Arch {
            cmd: ArchCmd::Show { arch },
        } => {
            print!("{}", resolve_arch(&arch)?);
        }
        Cmd::Arch { cmd: ArchCmd::List } => {
            for (name, _) in systole_arch::config::PRESETS {
                let a = ArchConfig::preset(name).expect("preset");
                println!(
                    "{name:<12} {}x{} array, {} MHz, {} KiB on chip",
                    a.array.rows,
                    a.array.cols,
                    a.clock_mhz,
                    systole_arch::BufferKind::ALL
                        .iter()
                        .map(|&k| a.buffer(k).size_bytes as u64)
                        .sum::<u64>()
                        / 1024
                );
            }
        }
        Cmd::Asm { input, output } => {
            let text = std::fs::read_to_string(&input)
                .with_context(|| format!("cannot read {}", input.display()))?;
            let prog = systole_arch::asm::assemble(&text, &input.display().to_string())?;
            let bytes = prog.to_bytes()?;
            write_atomic(&output, &bytes)
                .with_context(|| format!("cannot write {}", output.display()))?;
            eprintln!(
                "{}: {} instructions, {} bytes",
                output.display(),
                prog.code.len(),
                bytes.len()
            );
        }
        Cmd::Disasm { image, output } => {
            let prog = load_program(&image)?;
            let text = systole_arch::asm::disassemble(&prog);
            match output {
                Some(o) => write_atomic(&o, text.as_bytes())
                    .with_context(|| format!("cannot write {}", o.display()))?,
                None => print!("{text}"),
            }
        }
        Cmd::Rtl { arch, output } => rtl::write(&resolve_arch(&arch)?, &output)?,
        Cmd::Fpga {
            cmd:
                FpgaCmd::Build {
                    board,
                    arch,
                    mem_bits,
                    model,
                    pnr_args,
                    output,
                },
        } => {
            let board = systole_fpga::board::Board::by_name(&board)?;
            let arch = resolve_arch(arch.as_deref().unwrap_or(board.default_arch))?;
            let mem_bits = mem_bits.unwrap_or(board.mem_bits);
            let baked = match &model {
                Some(m) => Some(systole::model::compile(m, &arch)?.program),
                None => None,
            };
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            let t0 = std::time::Instant::now();
            let r = systole_fpga::flow::build(
                board,
                &arch,
                mem_bits,
                baked.as_ref(),
                &pnr_args,
                &output,
                |s| {
                    bar.set_message(format!("{} / {}: {s}", board.name, arch.name));
                },
            );
            bar.finish_and_clear();
            let r = r.with_context(|| {
                format!(
                    "building {} for {} (files in {})",
                    arch.name,
                    board.name,
                    output.display()
                )
            })?;
            print!("{}", r.table());
            for (step, secs) in &r.steps {
                println!("{step}: {secs:.1} s");
            }
            println!(
                "bitstream: {} ({:.0} s); flash: {}",
                r.bitstream.display(),
                t0.elapsed().as_secs_f64(),
                board
                    .flash
                    .replace("BITSTREAM.bit", &r.bitstream.display().to_string())
                    .replace("BITSTREAM.bin", &r.bitstream.display().to_string())
            );
        }
        Cmd::Fpga {
            cmd:
                FpgaCmd::Run {
                    port,
                    program,
                    input,
                    baud,
                    mem_bits,
                    baked,
                },
        } => {
            let prog = load_program(&program)?;
            let data = program_inputs(&prog, &input)?;
            let port = systole_fpga::serial::SerialPort::open(&port, baud)?;
            let mut c = systole_fpga::link::Client::new(port);
            let r = if baked {
                systole_fpga::host::run_baked(&mut c, &prog, &data, 100_000)?
            } else {
                let bits = match mem_bits {
                    Some(b) => b,
                    None => c.board_info()?.mem_bits.unwrap_or(16),
                };
                systole_fpga::host::run_program(&mut c, &prog, &data, 1u64 << bits, 100_000)?
            };
            for (d, o) in prog.outputs().zip(&r.outputs) {
                println!("output {} {:?}: {:?}", d.name, d.shape, o.to_i64());
            }
            println!("cycles: {}", r.cycles);
        }
        Cmd::Cosim {
            program,
            input,
            arch,
            vcd,
        } => {
            let prog = load_program(&program)?;
            let arch = program_arch(&prog, arch.as_deref())?;
            let data = program_inputs(&prog, &input)?;
            rtl::run(&prog, &arch, &data, vcd.as_deref())?;
        }
        Cmd::Run {
            program,
            input,
            output,
            arch,
            trace,
            stats_json,
            dequantize,
            max_cycles,
        } => {
            let prog = load_program(&program)?;
            let arch = program_arch(&prog, arch.as_deref())?;
            for (key, side) in [("host.input", "before"), ("host.output", "after")] {
                if let Some(ops) = prog.meta.get(key) {
                    eprintln!("note: the model runs {ops} on the host {side} this program; `systole run` does not (use `systole check` or `eval` for the whole model)");
                }
            }
            let outs: Vec<_> = prog.outputs().cloned().collect();
            if output.len() > outs.len() {
                bail!(
                    "the program has {} output(s); {} --output given",
                    outs.len(),
                    output.len()
                );
            }
            let data = program_inputs(&prog, &input)?;
            let opts = RunOptions {
                trace: trace.is_some(),
                max_cycles,
                ..Default::default()
            };
            let t0 = Instant::now();
            let r = run(&prog, &arch, &data, &opts)?;
            let wall = t0.elapsed().as_secs_f64();
            for (path, (d, v)) in output.iter().zip(outs.iter().zip(&r.outputs)) {
                let t = output_tensor(d, v, dequantize)?;
                systole_compiler::tensor::write_npy(path, &t)?;
            }
            if let Some(path) = &trace {
                let name = prog
                    .meta
                    .get("model")
                    .cloned()
                    .unwrap_or_else(|| program.display().to_string());
                let json = systole_emulator::trace::chrome_trace(
                    r.spans.as_deref().unwrap_or(&[]),
                    arch.clock_mhz,
                    &name,
                );
                write_json_atomic(path, &json)?;
            }
            if let Some(path) = &stats_json {
                write_json_atomic(path, &serde_json::to_value(&r.stats)?)?;
            }
            print!("{}", r.stats.report());
            println!(
                "emulator: {:.3} s wall, {:.2} M cycles/s",
                wall,
                r.stats.cycles as f64 / wall.max(1e-9) / 1e6
            );
            if output.len() < outs.len() {
                for (d, v) in outs.iter().zip(&r.outputs).skip(output.len()) {
                    let vals = v.to_i64();
                    let shown: Vec<String> = vals.iter().take(16).map(|x| x.to_string()).collect();
                    println!(
                        "output {} {:?}: [{}{}]",
                        d.name,
                        d.shape,
                        shown.join(", "),
                        if vals.len() > 16 { ", ..." } else { "" }
                    );
                }
            }
        }
        Cmd::Compile {
            model,
            arch,
            output,
            report,
            check_only,
            calib,
            calib_limit,
            percentile,
        } => {
            let arch = resolve_arch(&arch)?;
            if check_only {
                let (ok, text) = systole::model::coverage(&model, &arch)?;
                print!("{text}");
                std::process::exit(if ok { 0 } else { 1 });
            }
            let Some(output) = output else {
                bail!("give -o OUT.sysb (or --check-only)")
            };
            let t0 = Instant::now();
            let ca = calib.map(|path| systole::model::CalibArgs {
                path,
                limit: calib_limit,
                percentile,
                pixel_scale: 1.0 / 255.0,
            });
            let c = systole::model::compile_calibrated(&model, &arch, ca.as_ref())?;
            let secs = t0.elapsed().as_secs_f64();
            let bytes = c.program.to_bytes()?;
            if report {
                print!("{}", systole::model::report(&c, &arch)?);
            }
            write_atomic(&output, &bytes)
                .with_context(|| format!("cannot write {}", output.display()))?;
            println!(
                "{}: {} layers, {} instructions, {} bytes, compiled in {:.3} s",
                output.display(),
                c.qmodel.layers.len(),
                c.program.code.len(),
                bytes.len(),
                secs
            );
        }
        Cmd::Estimate {
            model,
            topology,
            arch,
            json,
            csv,
            output,
            analytic,
            check_analytic,
            node_nm,
            plot,
            compare_scalesim,
            calib,
            calib_limit,
            percentile,
        } => {
            let mut arch = resolve_arch(&arch)?;
            if let Some(n) = node_nm {
                arch.energy.scale_to_nm = Some(n);
                arch.energy
                    .validate()
                    .map_err(|(f, m)| anyhow::anyhow!("--node-nm: {f} {m}"))?;
            }
            let scalesim = match &compare_scalesim {
                Some(p) => Some(systole::estimate::read_scalesim_report(p)?),
                None => None,
            };
            let engine = if analytic {
                systole::estimate::Engine::Analytic
            } else {
                systole::estimate::Engine::Emulator
            };
            let estimate = |engine| -> Result<systole::estimate::Estimate> {
                Ok(match (&model, &topology) {
                    (_, Some(t)) => {
                        let layers = systole::estimate::read_topology(t)?;
                        let bar = indicatif::ProgressBar::new(layers.len() as u64).with_style(
                            indicatif::ProgressStyle::with_template(
                                "{bar:40} {pos}/{len} layers {elapsed}",
                            )
                            .expect("template"),
                        );
                        let name = t
                            .file_stem()
                            .map_or("topology".into(), |s| s.to_string_lossy().to_string());
                        let e = systole::estimate::estimate_topology(
                            &name,
                            &layers,
                            &arch,
                            engine,
                            |i| bar.set_position(i as u64),
                        )?;
                        bar.finish_and_clear();
                        e
                    }
                    (Some(m), None) => {
                        let ca = calib.clone().map(|path| systole::model::CalibArgs {
                            path,
                            limit: calib_limit,
                            percentile,
                            pixel_scale: 1.0 / 255.0,
                        });
                        let c = systole::model::compile_calibrated(m, &arch, ca.as_ref())?;
                        systole::estimate::estimate_program(
                            &m.display().to_string(),
                            &c.program,
                            &c.layers,
                            &arch,
                            engine,
                        )?
                    }
                    (None, None) => bail!("give a model or --topology FILE.csv"),
                })
            };
            let mut e = estimate(engine)?;
            if check_analytic {
                let a = estimate(systole::estimate::Engine::Analytic)?;
                systole::estimate::attach_analytic(&mut e, &a);
            }
            let text = if let Some(report) = &scalesim {
                systole::estimate::scalesim_comparison(&e, report)?
            } else if json {
                serde_json::to_string_pretty(&e)? + "\n"
            } else if csv {
                systole::estimate::csv(&e)
            } else {
                systole::estimate::table(&e)
            };
            if let Some(dir) = &plot {
                systole::plot::estimate_plots(&e, dir)?;
            }
            match &output {
                Some(p) => write_atomic(p, text.as_bytes())
                    .with_context(|| format!("cannot write {}", p.display()))?,
                None => print!("{text}"),
            }
        }
        Cmd::Sweep {
            cmd:
                Some(SweepCmd::Merge {
                    shards,
                    output,
                    plot,
                }),
            ..
        } => {
            let rows = systole::sweep::merge(&shards)?;
            if let Some(dir) = &plot {
                systole::plot::sweep_plots(&rows, &output.display().to_string(), dir)?;
            }
            systole::sweep::write_csv(&rows, &output)?;
            eprintln!(
                "{} points, {} Pareto-optimal -> {}",
                rows.len(),
                rows.iter().filter(|r| r.pareto).count(),
                output.display()
            );
        }
        Cmd::Sweep {
            cmd: None,
            model,
            topology,
            arch,
            rows,
            cols,
            buffers,
            precision,
            exact,
            shard,
            plot,
            output,
        } => {
            use systole::sweep;
            let base = resolve_arch(&arch)?;
            let r = sweep::parse_list("rows", &rows)?;
            let c = match &cols {
                Some(c) => sweep::parse_list("cols", c)?,
                None => r.clone(),
            };
            let b = match &buffers {
                Some(b) => sweep::parse_list("buffers", b)?,
                None => vec![],
            };
            let p: Vec<sweep::Precision> = precision
                .split(',')
                .map(sweep::Precision::parse)
                .collect::<Result<_>>()?;
            let (si, sn) = match &shard {
                Some(s) => sweep::parse_shard(s)?,
                None => (0, 1),
            };
            let Some(output) = output else {
                bail!("give -o OUT.csv");
            };
            let (work, title) = match (&model, &topology) {
                (_, Some(t)) => {
                    let layers = systole::estimate::read_topology(t)?;
                    let name = t
                        .file_stem()
                        .map_or("topology".into(), |s| s.to_string_lossy().to_string());
                    (
                        sweep::Workload::Topology {
                            name: name.clone(),
                            layers,
                        },
                        name,
                    )
                }
                (Some(m), None) => (
                    sweep::Workload::Model {
                        graph: systole::model::import(m)?,
                        path: m.clone(),
                    },
                    m.display().to_string(),
                ),
                (None, None) => bail!("give a model or --topology FILE.csv"),
            };
            let all = sweep::points(&r, &c, &b, &p);
            let of = all.len();
            let mine: Vec<_> = all.into_iter().filter(|x| x.index % sn == si).collect();
            let bar = indicatif::ProgressBar::new(mine.len() as u64).with_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} points {elapsed} (eta {eta})",
                )
                .expect("template"),
            );
            let engine = if exact {
                systole::estimate::Engine::Emulator
            } else {
                systole::estimate::Engine::Analytic
            };
            let res = sweep::run(&work, &base, &mine, of, engine, || bar.inc(1));
            bar.finish_and_clear();
            if let Some(dir) = &plot {
                systole::plot::sweep_plots(&res, &title, dir)?;
            }
            sweep::write_csv(&res, &output)?;
            eprintln!(
                "{} of {of} points ({} feasible, {} Pareto-optimal in this shard) -> {}",
                res.len(),
                res.iter().filter(|x| x.status == "ok").count(),
                res.iter().filter(|x| x.pareto).count(),
                output.display()
            );
        }
        Cmd::Check {
            cases,
            arch,
            json,
            atol,
            rtol,
            ptq,
        } => {
            let arch = resolve_arch(&arch)?;
            if !json {
                println!(
                    "{:<40} {:>6} {:>5} {:>12} {:>12} {:>10}",
                    "case", "result", "sets", "max |diff|", "mismatches", "cycles"
                );
            }
            let mut all = true;
            for dir in &cases {
                let r = systole::model::check_case_with(dir, &arch, atol, rtol, ptq);
                all &= r.pass;
                if json {
                    println!("{}", serde_json::to_string(&r)?);
                } else {
                    println!(
                        "{:<40} {:>6} {:>5} {:>12.6} {:>12} {:>10}{}",
                        r.case,
                        match (r.pass, r.tolerance && r.max_abs_diff > 0.0) {
                            (true, false) => "pass",
                            (true, true) => "pass~",
                            _ => "FAIL",
                        },
                        r.data_sets,
                        r.max_abs_diff,
                        format!("{}/{}", r.mismatches, r.elements),
                        r.cycles,
                        match &r.error {
                            Some(e) => format!("  {e}"),
                            None if !r.host_ops.is_empty() =>
                                format!("  host: {}", r.host_ops.join(",")),
                            None => String::new(),
                        }
                    );
                }
            }
            if !all {
                std::process::exit(1);
            }
        }
        Cmd::Eval {
            model,
            mnist,
            limit,
            arch,
            pixel_scale,
            skip,
            float,
            calib,
            calib_limit,
            percentile,
        } => {
            let arch = resolve_arch(&arch)?;
            let ca = calib.map(|path| systole::model::CalibArgs {
                path,
                limit: calib_limit,
                percentile,
                pixel_scale,
            });
            let c = systole::model::compile_calibrated(&model, &arch, ca.as_ref())?;
            let find = |stem: &str| -> Result<PathBuf> {
                [mnist.join(stem), mnist.join(format!("{stem}.gz"))]
                    .into_iter()
                    .find(|p| p.exists())
                    .ok_or_else(|| anyhow::anyhow!("{}: no {stem}(.gz)", mnist.display()))
            };
            let data = systole_compiler::tensor::read_mnist_idx(
                find("t10k-images-idx3-ubyte")?,
                find("t10k-labels-idx1-ubyte")?,
                limit.map(|l| l + skip),
            )?;
            let pixels: Vec<u8> = match &data.images.data {
                systole_compiler::tensor::TensorData::U8(v) => v.clone(),
                _ => bail!("MNIST images are not uint8"),
            };
            let per = pixels.len() / data.labels.len().max(1);
            let images: Vec<Vec<f32>> = pixels
                .chunks(per)
                .skip(skip)
                .map(|im| im.iter().map(|&p| p as f32 * pixel_scale).collect())
                .collect();
            let labels: Vec<usize> = data.labels.iter().skip(skip).map(|&l| l as usize).collect();
            if float {
                let g = systole::model::import(&model)?;
                let mut correct = 0;
                for (im, &l) in images.iter().zip(&labels) {
                    let t = systole_compiler::tensor::Tensor::new(
                        shape_of(&g),
                        systole_compiler::tensor::TensorData::F32(im.clone()),
                    )?;
                    let out = systole_compiler::interp::run(&g, &[t])?;
                    let v: Vec<f64> = out[0].to_f32_vec().iter().map(|&x| x as f64).collect();
                    correct += (systole::model::argmax(&v) == l) as usize;
                }
                println!(
                    "float model (reference interpreter): {:.2}% ({}/{})",
                    100.0 * correct as f64 / images.len().max(1) as f64,
                    correct,
                    images.len()
                );
            }
            let shape: Vec<usize> = c.qmodel.input.shape.clone();
            let r = systole::model::eval_images(&c, &arch, &images, &labels, &shape, true)?;
            println!(
                "model: {}  arch: {}  images: {}",
                model.display(),
                arch.name,
                r.total
            );
            println!(
                "cycles per image: {} ({:.2} us at {} MHz)",
                r.cycles,
                r.cycles as f64 / arch.clock_mhz,
                arch.clock_mhz
            );
            println!(
                "accuracy: {:.2}% ({}/{})",
                100.0 * r.correct as f64 / r.total.max(1) as f64,
                r.correct,
                r.total
            );
        }
        Cmd::Demo { arch, output } => {
            systole::model::demo(&resolve_arch(&arch)?, output.as_deref())?
        }
        Cmd::Isa => print!("{}", systole_arch::isa::markdown_reference()),
        Cmd::Bench {
            arch,
            m,
            k,
            n,
            repeat,
            table,
            quick,
            topology,
            tfc,
            python,
            scalesim_timeout,
            no_scalesim,
            no_verilator,
            child_topology,
        } => match child_topology {
            Some(t) => systole::bench::child_topology(&t, &resolve_arch(&arch)?, quick)?,
            None if table => systole::bench::table(&systole::bench::TableOpts {
                topology,
                tfc,
                python,
                scalesim_timeout,
                no_scalesim,
                no_verilator,
                quick,
            })?,
            None => systole::bench::gemm(&resolve_arch(&arch)?, m, k, n, repeat)?,
        },
    }
    Ok(())
}
