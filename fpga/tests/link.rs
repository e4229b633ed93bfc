//! The board top level (UART link, on-chip memory, accelerator) in Verilator, driven by the
//! host code of `systole_fpga::link` through a UART model: a compiled program loads, runs and
//! returns the emulator's outputs and cycle count; corrupted frames are refused and reported;
//! a reset or a pause in the middle of a frame leaves the link ready for the next one.
//! Needs verilator on PATH (scripts/test.sh installs it).

use std::time::Duration;
use systole_arch::ArchConfig;
use systole_compiler::gemm::{gemm_program, ChannelQuant, GemmLayer};
use systole_emulator::randprog::Rng;
use systole_emulator::{IoData, RunOptions};
use systole_fpga::host::{run_baked, run_program, HostError};
use systole_fpga::link::{command_frame, Client, Cmd, LinkError, Port, Status};
use systole_fpga::rtl::BoardRtl;
use systole_fpga::sim::{BoardSim, SimPort};

const PARAMS: BoardRtl = BoardRtl {
    cycles_per_bit: 8,
    mem_addr_bits: 14,
    timeout_cycles: 3000,
    leds: 8,
    led_active_low: false,
    baked: false,
};

fn board(arch: &ArchConfig) -> Client<SimPort> {
    client(&BoardSim::cached(arch, &PARAMS, None).unwrap_or_else(|e| panic!("{e}")))
}

/// A link to a fresh instance of a built board.
fn client(sim: &BoardSim) -> Client<SimPort> {
    let mut c = Client::new(sim.spawn().unwrap());
    c.timeout = Duration::from_secs(20);
    c
}

/// A 6x10 by 10x5 GEMM compiled by `gemm_program` (bias, requantization).
fn gemm(arch: &ArchConfig) -> systole_arch::Program {
    let (m, k, n) = (6, 10, 5);
    let mut rng = Rng::new(42);
    let layer = GemmLayer {
        m,
        k,
        n,
        weights: (0..k * n).map(|_| rng.next_u64() as i8).collect(),
        channels: (0..n)
            .map(|i| ChannelQuant {
                bias: i as i32 * 100 - 200,
                mult: 1 << 30,
                shift: 36,
            })
            .collect(),
        out_zp: -5,
        out_lo: -128,
        out_hi: 127,
        in_quant: None,
        out_quant: None,
    };
    gemm_program(arch, &layer).unwrap()
}

#[test]
fn compiled_gemm_runs_on_the_board_as_on_the_emulator() {
    let arch = ArchConfig::preset("tiny").unwrap();
    let mut c = board(&arch);
    assert_eq!(c.ping().unwrap(), arch.fingerprint());
    // The ping reply also says how large the board's memory is.
    let info = c.board_info().unwrap();
    assert_eq!(info.mem_bits, Some(PARAMS.mem_addr_bits));
    let (m, k) = (6, 10);
    let prog = gemm(&arch);
    for seed in [1u64, 2] {
        let mut rng = Rng::new(seed);
        let x = IoData::I8((0..m * k).map(|_| rng.next_u64() as i8).collect());
        let run = run_program(&mut c, &prog, std::slice::from_ref(&x), 1 << 14, 1000).unwrap();
        let emu = systole_emulator::run(&prog, &arch, &[x], &RunOptions::default()).unwrap();
        assert_eq!(run.outputs, emu.outputs, "seed {seed}: outputs");
        assert_eq!(run.cycles, emu.stats.cycles, "seed {seed}: cycles");
        assert!(run.outputs[0].to_i64().iter().any(|&v| v != 0));
        eprintln!(
            "seed {seed}: board {} cycles, emulator {}",
            run.cycles, emu.stats.cycles
        );
    }
    // The host refuses, before sending anything, a program for another arch, one too big for
    // the board's memory, and the wrong number of inputs.
    let other = gemm(&ArchConfig::preset("ulx3s").unwrap());
    let x = IoData::I8(vec![0; m * k]);
    assert!(matches!(
        run_program(&mut c, &other, std::slice::from_ref(&x), 1 << 14, 10),
        Err(HostError::Arch { .. })
    ));
    assert!(matches!(
        run_program(&mut c, &prog, std::slice::from_ref(&x), 64, 10),
        Err(HostError::TooBig { need, have: 64 }) if need == prog.dram_bytes
    ));
    let e = run_program(&mut c, &prog, &[], 1 << 14, 10).unwrap_err();
    assert!(e.to_string().contains("takes 1 input(s)"), "{e}");
}

/// The iCEBreaker's machine (up5k: no integer PPU lanes, 2 KB board memory, narrow counters):
/// random programs of the threshold unit, matmuls, loads and stores, sent over the link a
/// byte at a time into the instruction memory, give the emulator's outputs and cycles.
///
/// Random programs read buffer lines they never wrote (zero in the emulator, which starts
/// every run from clean buffers); a board's block RAMs keep what the last run left there, so
/// each seed runs on a freshly configured board (docs/fpga.md, "The host link").
#[test]
fn up5k_random_programs_run_on_the_board_as_on_the_emulator() {
    let arch = ArchConfig::preset("up5k").unwrap();
    let params = BoardRtl {
        mem_addr_bits: 11,
        ..PARAMS
    };
    let sim = BoardSim::cached(&arch, &params, None).unwrap_or_else(|e| panic!("{e}"));
    let mem = 1u64 << params.mem_addr_bits;
    for seed in 500..504u64 {
        let mut c = client(&sim);
        assert_eq!(c.ping().unwrap(), arch.fingerprint());
        let prog = systole_emulator::randprog::random_program(&arch, seed, 60);
        assert!(
            prog.dram_bytes <= mem,
            "seed {seed}: {} bytes",
            prog.dram_bytes
        );
        let run = run_program(&mut c, &prog, &[], mem, 1000).unwrap();
        let emu = systole_emulator::run(&prog, &arch, &[], &RunOptions::default()).unwrap();
        assert_eq!(run.outputs, emu.outputs, "seed {seed}: outputs");
        assert_eq!(run.cycles, emu.stats.cycles, "seed {seed}: cycles");
        assert!(
            run.outputs[0].to_i64().iter().any(|&v| v != 0),
            "seed {seed}"
        );
    }
}

/// `--model`: the program and its weights in the block RAMs' initial values; only the input
/// crosses the link.
#[test]
fn a_baked_program_runs_with_only_its_input_sent() {
    let arch = ArchConfig::preset("tiny").unwrap();
    let prog = gemm(&arch);
    let params = BoardRtl {
        baked: true,
        ..PARAMS
    };
    let sim = BoardSim::cached(&arch, &params, Some(&prog)).unwrap_or_else(|e| panic!("{e}"));
    let mut c = client(&sim);
    let mut rng = Rng::new(9);
    let x = IoData::I8((0..60).map(|_| rng.next_u64() as i8).collect());
    let run = run_baked(&mut c, &prog, std::slice::from_ref(&x), 1000).unwrap();
    let emu = systole_emulator::run(&prog, &arch, &[x], &RunOptions::default()).unwrap();
    assert_eq!(run.outputs, emu.outputs);
    assert_eq!(run.cycles, emu.stats.cycles);
    // The weights were never sent: the image holds them from power-up.
    let w = &prog.data[0];
    let got = c.read_mem(w.dram_addr as u32, w.bytes.len()).unwrap();
    assert_eq!(got, w.bytes);
}

#[test]
fn bad_frames_are_refused_and_the_link_recovers() {
    let arch = ArchConfig::preset("tiny").unwrap();
    let mut c = board(&arch);
    // A flipped CRC bit: refused, nothing done.
    let mut f = command_frame(Cmd::WriteMem, &[0, 0, 0, 0, 0x11, 0x22]);
    let last = f.len() - 1;
    f[last] ^= 0x40;
    let r = c.transact_raw(&f).unwrap();
    assert_eq!(r.status, Status::BadCrc);
    assert_eq!(
        c.read_mem(0, 2).unwrap(),
        vec![0, 0],
        "a refused write wrote"
    );
    // Unknown command, bad lengths and out-of-range addresses are named.
    assert_eq!(c.transact(Cmd::Ping, &[]).map(|_| ()), Ok(()));
    let r = c.transact_raw(&command_frame(Cmd::Ping, &[])).unwrap();
    assert_eq!(r.status, Status::Ok);
    let bad_cmd = {
        let mut f = command_frame(Cmd::Ping, &[]);
        f[1] = 0x7f;
        let crc = systole_fpga::link::crc16(0xFFFF, &f[1..4]);
        f[4..6].copy_from_slice(&crc.to_le_bytes());
        f
    };
    assert_eq!(c.transact_raw(&bad_cmd).unwrap().status, Status::BadCmd);
    assert_eq!(
        c.transact(Cmd::ReadMem, &[0, 0, 0, 0, 1]),
        Err(LinkError::Refused(Status::BadArg))
    );
    assert_eq!(
        c.transact(Cmd::ReadMem, &[0xff, 0x3f, 0, 0, 2, 0]),
        Err(LinkError::Refused(Status::BadArg)),
        "a read past the end of memory"
    );
    // Addresses whose sum with the length wraps 32 bits are past the end too.
    assert_eq!(
        c.transact(Cmd::ReadMem, &[0xff, 0xff, 0xff, 0xff, 2, 0]),
        Err(LinkError::Refused(Status::BadArg)),
        "a read at 2^32 - 1"
    );
    assert_eq!(
        c.transact(Cmd::WriteMem, &[0xfe, 0xff, 0xff, 0xff, 1, 2, 3]),
        Err(LinkError::Refused(Status::BadArg)),
        "a write at 2^32 - 2"
    );
    assert_eq!(
        c.transact(Cmd::WriteImem, &[0, 0, 0, 0, 1, 2, 3]),
        Err(LinkError::Refused(Status::BadArg))
    );
    // Writes and reads round-trip at any address and length.
    let data: Vec<u8> = (0..300).map(|i| (i * 7 + 3) as u8).collect();
    c.write_mem(1001, &data).unwrap();
    assert_eq!(c.read_mem(1001, 300).unwrap(), data);
    assert_eq!(c.read_mem(1000, 1).unwrap(), vec![0]);
}

#[test]
fn a_reset_or_a_pause_mid_frame_leaves_the_link_ready() {
    let arch = ArchConfig::preset("tiny").unwrap();
    let mut c = board(&arch);
    c.write_mem(0, &[9, 8, 7]).unwrap();
    let f = command_frame(Cmd::WriteMem, &[0, 0, 0, 0, 1, 2, 3]);
    // Half a frame, then the reset button: no reply, and the next frame is served.
    c.port.send(&f[..5]).unwrap();
    c.port.press_reset(50).unwrap();
    assert_eq!(c.port.recv(Duration::from_millis(300)).unwrap(), None);
    assert_eq!(c.ping().unwrap(), arch.fingerprint());
    assert_eq!(
        c.read_mem(0, 3).unwrap(),
        vec![9, 8, 7],
        "the half frame wrote"
    );
    // Half a frame, then silence past the timeout: dropped the same way.
    c.port.send(&f[..6]).unwrap();
    assert_eq!(c.port.recv(Duration::from_millis(500)).unwrap(), None);
    assert_eq!(c.ping().unwrap(), arch.fingerprint());
    assert_eq!(c.read_mem(0, 3).unwrap(), vec![9, 8, 7]);
}
