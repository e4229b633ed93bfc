//! Running a program image on a board through the link: load memory and instructions, start,
//! wait, read the outputs back.

use crate::link::{Client, LinkError, Port, RunState};
use systole_arch::Program;
use systole_emulator::{io, IoData};

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{0}")]
    Link(#[from] LinkError),
    #[error(
        "the board runs arch fingerprint {board:016x}, the program was compiled for {prog:016x}"
    )]
    Arch { board: u64, prog: u64 },
    #[error("the program needs {need} bytes of memory; the board has {have}")]
    TooBig { need: u64, have: u64 },
    #[error("inputs: {0}")]
    Input(String),
    #[error("the board did not finish within {0} status polls")]
    NoFinish(usize),
}

/// Outputs and cycle count of one run on the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardRun {
    pub outputs: Vec<IoData>,
    pub cycles: u64,
}

/// Runs `prog` with `inputs` on a board with `mem_bytes` of memory: the whole memory image
/// and the instructions go over the link first.
pub fn run_program<P: Port>(
    c: &mut Client<P>,
    prog: &Program,
    inputs: &[IoData],
    mem_bytes: u64,
    max_polls: usize,
) -> Result<BoardRun, HostError> {
    check_board(c, prog)?;
    if prog.dram_bytes > mem_bytes {
        return Err(HostError::TooBig {
            need: prog.dram_bytes,
            have: mem_bytes,
        });
    }
    let mut image = vec![0u8; prog.dram_bytes as usize];
    for s in &prog.data {
        let a = s.dram_addr as usize;
        image[a..a + s.bytes.len()].copy_from_slice(&s.bytes);
    }
    write_inputs_into(prog, inputs, &mut image)?;
    c.write_mem(0, &image)?;
    let code: Vec<[u8; 16]> = prog
        .code
        .iter()
        .map(|i| i.encode().expect("a loaded program encodes"))
        .collect();
    c.write_imem(0, &code)?;
    execute(c, prog, max_polls)
}

/// Runs `prog` on a board whose bitstream has it baked in (`systole fpga build --model`):
/// only the inputs go over the link.
pub fn run_baked<P: Port>(
    c: &mut Client<P>,
    prog: &Program,
    inputs: &[IoData],
    max_polls: usize,
) -> Result<BoardRun, HostError> {
    check_board(c, prog)?;
    let mut image = vec![0u8; prog.dram_bytes as usize];
    for (lo, hi) in write_inputs_into(prog, inputs, &mut image)? {
        c.write_mem(lo as u32, &image[lo as usize..hi as usize])?;
    }
    execute(c, prog, max_polls)
}

fn check_board<P: Port>(c: &mut Client<P>, prog: &Program) -> Result<(), HostError> {
    let fp = c.ping()?;
    if fp != prog.fingerprint {
        return Err(HostError::Arch {
            board: fp,
            prog: prog.fingerprint,
        });
    }
    Ok(())
}

/// Writes the inputs into `image`; returns each input's byte range.
fn write_inputs_into(
    prog: &Program,
    inputs: &[IoData],
    image: &mut [u8],
) -> Result<Vec<(u64, u64)>, HostError> {
    io::write_inputs(image, prog, inputs).map_err(|e| HostError::Input(e.to_string()))?;
    Ok(prog
        .inputs()
        .map(|d| (d.dram_addr, d.dram_addr + d.span_bytes()))
        .collect())
}

/// Starts the loaded program, waits for it and reads the outputs back.
fn execute<P: Port>(
    c: &mut Client<P>,
    prog: &Program,
    max_polls: usize,
) -> Result<BoardRun, HostError> {
    c.start()?;
    for _ in 0..max_polls {
        let (state, cycles) = c.status()?;
        if state == RunState::Done {
            let mut outputs = Vec::new();
            for d in prog.outputs() {
                let end = d.span_bytes();
                let bytes = c.read_mem(d.dram_addr as u32, end as usize)?;
                let mut scratch = vec![0u8; (d.dram_addr + end) as usize];
                scratch[d.dram_addr as usize..].copy_from_slice(&bytes);
                outputs.push(io::read_tensor(&scratch, d));
            }
            return Ok(BoardRun { outputs, cycles });
        }
    }
    Err(HostError::NoFinish(max_polls))
}
