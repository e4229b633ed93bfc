//! The four on-chip buffers (scratchpads) with their banks and ports.
//!
//! Lines are the unit of addressing; bank = line / lines_per_bank. Each cycle a bank serves one
//! access per port: a "1rw" bank one read *or* one write, a "1r1w" bank one read *and* one
//! write. When two units want the same port of the same bank in the same cycle, the compute
//! unit wins, then load, then store; the loser stalls for that cycle.

use systole_arch::config::{ArchConfig, Ports};
use systole_arch::BufferKind;

/// Per-buffer access counters (lines), for bandwidth and energy accounting.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct BufferCounters {
    pub line_reads: u64,
    pub line_writes: u64,
    /// Cycles some unit lost to a port conflict on this buffer.
    pub conflict_stalls: u64,
}

#[derive(Clone)]
pub struct PortState {
    ports: Ports,
    lines_per_bank: u32,
    /// Per bank: cycle+1 of the last read / write claim (for 1rw only `read` is used).
    read: Vec<u64>,
    write: Vec<u64>,
}

impl PortState {
    fn new(ports: Ports, banks: u32, lines_per_bank: u32) -> Self {
        PortState {
            ports,
            lines_per_bank,
            read: vec![0; banks as usize],
            write: vec![0; banks as usize],
        }
    }
    fn claim(&mut self, line: u32, write: bool, cycle: u64) -> bool {
        let bank = (line / self.lines_per_bank) as usize;
        let slot = match (self.ports, write) {
            (Ports::OneRw, _) | (Ports::OneROneW, false) => &mut self.read[bank],
            (Ports::OneROneW, true) => &mut self.write[bank],
        };
        if *slot == cycle + 1 {
            return false;
        }
        *slot = cycle + 1;
        true
    }
}

#[derive(Clone)]
pub struct Buffers {
    pub rows: usize,
    pub cols: usize,
    /// input: `lines x rows` int8
    pub inp: Vec<i8>,
    /// weight: `lines x cols` int8
    pub wgt: Vec<i8>,
    /// accumulator: `lines x cols` int32
    pub acc: Vec<i32>,
    /// output: `lines x cols` bytes (int8 or uint8 bit patterns)
    pub out: Vec<u8>,
    pub lines: [u32; 4],
    ports: [PortState; 4],
    pub counters: [BufferCounters; 4],
}

impl Buffers {
    pub fn new(arch: &ArchConfig) -> Buffers {
        let rows = arch.array.rows as usize;
        let cols = arch.array.cols as usize;
        let lines = BufferKind::ALL.map(|k| arch.lines(k));
        let ports = BufferKind::ALL.map(|k| {
            let b = arch.buffer(k);
            PortState::new(b.ports, b.banks, arch.lines_per_bank(k))
        });
        Buffers {
            rows,
            cols,
            inp: vec![0; lines[0] as usize * rows],
            wgt: vec![0; lines[1] as usize * cols],
            acc: vec![0; lines[2] as usize * cols],
            out: vec![0; lines[3] as usize * cols],
            lines,
            ports,
            counters: Default::default(),
        }
    }

    /// Try to use a port of `kind`'s bank holding `line` in `cycle`; counts the access.
    pub fn claim(&mut self, kind: BufferKind, line: u32, write: bool, cycle: u64) -> bool {
        let i = kind.index();
        if self.ports[i].claim(line, write, cycle) {
            let c = &mut self.counters[i];
            if write {
                c.line_writes += 1;
            } else {
                c.line_reads += 1;
            }
            true
        } else {
            self.counters[i].conflict_stalls += 1;
            false
        }
    }

    /// Counts an access whose port is known to be free (fast-forwarding).
    pub fn count(&mut self, kind: BufferKind, write: bool) {
        self.count_n(kind, write, 1)
    }

    /// Counts `n` such accesses.
    pub fn count_n(&mut self, kind: BufferKind, write: bool, n: u64) {
        let c = &mut self.counters[kind.index()];
        if write {
            c.line_writes += n;
        } else {
            c.line_reads += n;
        }
    }

    pub fn lines(&self, kind: BufferKind) -> u32 {
        self.lines[kind.index()]
    }
}
