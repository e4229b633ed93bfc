//! The DMA engines: load (DRAM -> buffer, read channel) and store (buffer -> DRAM, write
//! channel).
//!
//! Load: one row request per cycle from the instruction's first cycle. A writer walks the
//! destination grid line by line, one line per cycle at most: padding lines are written
//! directly; a data line is assembled from beats and written in the cycle its last beat is
//! accepted. A beat that would complete a line is refused (backpressure) in a cycle when the
//! bank's write port is taken.
//!
//! Store: a reader fetches one line into the send register, which drains one beat per cycle; the
//! next line may be read in the cycle the last beat of the previous one leaves. The instruction
//! completes `latency` cycles after its last beat (the write acknowledgement).

use crate::buffer::Buffers;
use crate::dram::ReadChannel;
use systole_arch::isa::{Load, LoadBuf, Store, StoreBuf};
use systole_arch::BufferKind;

/// Outcome of one cycle of a unit's instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub done: bool,
    /// Lost the cycle to a buffer port conflict.
    pub port_stall: bool,
}

pub fn load_kind(buf: LoadBuf) -> BufferKind {
    match buf {
        LoadBuf::Inp => BufferKind::Input,
        LoadBuf::Wgt => BufferKind::Weight,
        LoadBuf::Acc | LoadBuf::Acc8 => BufferKind::Accumulator,
    }
}

pub fn store_kind(buf: StoreBuf) -> BufferKind {
    match buf {
        StoreBuf::Out => BufferKind::Output,
        StoreBuf::Acc => BufferKind::Accumulator,
    }
}

/// Bytes one buffer line occupies in DRAM for a load.
pub fn load_dram_line_bytes(buf: LoadBuf, rows: u32, cols: u32) -> u32 {
    match buf {
        LoadBuf::Inp => rows,
        LoadBuf::Wgt | LoadBuf::Acc8 => cols,
        LoadBuf::Acc => cols * 4,
    }
}

/// (`xnor_bits`: the arch's binary word width, bits per packed byte.)
pub fn store_dram_line_bytes(op: &Store, cols: u32, xnor_bits: u32) -> u32 {
    match op.buf {
        StoreBuf::Out if op.pack => cols / xnor_bits,
        StoreBuf::Out => cols,
        StoreBuf::Acc => cols * 4,
    }
}

/// DRAM beats one stored line takes: a packed line's last (or only) beat may be partial.
pub fn store_line_beats(op: &Store, cols: u32, beat_bytes: u32, xnor_bits: u32) -> u32 {
    store_dram_line_bytes(op, cols, xnor_bits).div_ceil(beat_bytes)
}

/// A `store pack=1` line: bit j < `bits` of byte i set when byte bits * i + j is > 0 (bipolar
/// +1).
pub fn pack_line(bytes: &[u8], bits: u32) -> Vec<u8> {
    bytes
        .chunks(bits as usize)
        .map(|ch| {
            ch.iter()
                .enumerate()
                .fold(0u8, |b, (j, &x)| b | (((x as i8 > 0) as u8) << j))
        })
        .collect()
}

pub struct LoadExec {
    kind: BufferKind,
    sram: u32,
    rows: u32,
    cols: u32,
    pad_top: u32,
    pad_left: u32,
    width: u32,
    total: u32,
    beats_per_line: u32,
    latency: u32,
    issued: u32,
    pos: u32,
    beats: u32,
    chan: ReadChannel,
}

impl LoadExec {
    pub fn new(
        op: &Load,
        beat_bytes: u32,
        latency: u32,
        array_rows: u32,
        array_cols: u32,
    ) -> LoadExec {
        let width = op.pad_left + op.cols + op.pad_right;
        let height = op.pad_top + op.rows + op.pad_bottom;
        LoadExec {
            kind: load_kind(op.buf),
            sram: op.sram,
            rows: op.rows,
            cols: op.cols,
            pad_top: op.pad_top,
            pad_left: op.pad_left,
            width,
            total: width * height,
            beats_per_line: load_dram_line_bytes(op.buf, array_rows, array_cols) / beat_bytes,
            latency,
            issued: 0,
            pos: 0,
            beats: 0,
            chan: ReadChannel::default(),
        }
    }

    fn is_data(&self, pos: u32) -> bool {
        let (r, c) = (pos / self.width, pos % self.width);
        r >= self.pad_top
            && r < self.pad_top + self.rows
            && c >= self.pad_left
            && c < self.pad_left + self.cols
    }

    pub fn step(&mut self, cycle: u64, bufs: &mut Buffers) -> Step {
        let mut port_stall = false;
        if self.issued < self.rows && self.cols > 0 {
            self.chan
                .request(cycle, self.latency, self.cols * self.beats_per_line);
            self.issued += 1;
        }
        if self.pos < self.total {
            let line = self.sram + self.pos;
            if self.is_data(self.pos) {
                if self.chan.beat_ready(cycle) {
                    if self.beats + 1 == self.beats_per_line {
                        if bufs.claim(self.kind, line, true, cycle) {
                            self.chan.take_beat();
                            self.beats = 0;
                            self.pos += 1;
                        } else {
                            port_stall = true;
                        }
                    } else {
                        self.chan.take_beat();
                        self.beats += 1;
                    }
                }
            } else if bufs.claim(self.kind, line, true, cycle) {
                self.pos += 1;
            } else {
                port_stall = true;
            }
        }
        Step {
            done: self.pos == self.total,
            port_stall,
        }
    }
}

pub struct StoreExec {
    kind: BufferKind,
    sram: u32,
    total: u32,
    beats_per_line: u32,
    latency: u32,
    read: u32,
    reg_beats: u32,
    ack_at: Option<u64>,
}

impl StoreExec {
    pub fn new(
        op: &Store,
        beat_bytes: u32,
        latency: u32,
        array_cols: u32,
        xnor_bits: u32,
    ) -> StoreExec {
        StoreExec {
            kind: store_kind(op.buf),
            sram: op.sram,
            total: op.rows * op.cols,
            beats_per_line: store_line_beats(op, array_cols, beat_bytes, xnor_bits),
            latency,
            read: 0,
            reg_beats: 0,
            ack_at: None,
        }
    }

    pub fn step(&mut self, cycle: u64, bufs: &mut Buffers) -> Step {
        if self.total == 0 {
            return Step {
                done: true,
                port_stall: false,
            };
        }
        if let Some(at) = self.ack_at {
            return Step {
                done: cycle >= at,
                port_stall: false,
            };
        }
        let mut port_stall = false;
        if self.reg_beats > 0 {
            self.reg_beats -= 1;
        }
        if self.reg_beats == 0 {
            if self.read < self.total {
                if bufs.claim(self.kind, self.sram + self.read, false, cycle) {
                    self.read += 1;
                    self.reg_beats = self.beats_per_line;
                } else {
                    port_stall = true;
                }
            } else {
                // The last beat left in this cycle.
                self.ack_at = Some(cycle + self.latency as u64);
            }
        }
        Step {
            done: false,
            port_stall,
        }
    }
}
