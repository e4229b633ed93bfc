//! Errors a program can hit at run time. Each names the instruction (by its index in the code
//! section) and the cycle, so a compiler bug can be found from the message alone.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// A buffer line or DRAM byte outside the arch's or the program's capacity.
    OutOfRange,
    /// A dependency flag the executing unit does not have (e.g. `pop_prev` on a load).
    IllegalDeps,
    /// Two units touch the same memory in overlapping time without a dependency token.
    Race,
    /// No unit can make progress.
    Deadlock,
    /// The controller fetched past the end of the code (no `finish`).
    MissingFinish,
    /// The code does not fit the instruction memory.
    ProgramTooLarge,
    /// A value read at run time is illegal (e.g. a requantization shift above 62).
    IllegalValue,
    /// The operand layout is illegal (e.g. partially overlapping ALU ranges).
    IllegalOperands,
    /// Inputs do not match the program's tensor descriptors.
    BadInput,
    /// The run exceeded the caller's cycle limit.
    CycleLimit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmuError {
    pub kind: ErrorKind,
    /// Index of the instruction at fault, when there is one.
    pub insn: Option<usize>,
    pub mnemonic: Option<&'static str>,
    pub cycle: u64,
    pub msg: String,
}

impl EmuError {
    pub fn new(kind: ErrorKind, msg: impl Into<String>) -> Self {
        EmuError {
            kind,
            insn: None,
            mnemonic: None,
            cycle: 0,
            msg: msg.into(),
        }
    }
    pub fn at(
        kind: ErrorKind,
        insn: usize,
        mnemonic: &'static str,
        cycle: u64,
        msg: impl Into<String>,
    ) -> Self {
        EmuError {
            kind,
            insn: Some(insn),
            mnemonic: Some(mnemonic),
            cycle,
            msg: msg.into(),
        }
    }
}

impl fmt::Display for EmuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.insn, self.mnemonic) {
            (Some(i), Some(m)) => write!(
                f,
                "instruction {i} ({m}) at cycle {}: {}",
                self.cycle, self.msg
            ),
            _ if self.cycle > 0 => write!(f, "at cycle {}: {}", self.cycle, self.msg),
            _ => write!(f, "{}", self.msg),
        }
    }
}

impl std::error::Error for EmuError {}
