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

/// Read requests a load issues, one per cycle from its first: one per DRAM row, none when
/// the rows are empty.
pub fn load_requests(op: &Load) -> u32 {
    if op.cols == 0 {
        0
    } else {
        op.rows
    }
}

pub use systole_arch::isa::STORE_REQUANT_PARAM_LINES;
/// Cycles from a `store requant=1` reading a line to its bytes reaching the send register
/// (the requantizer lanes' multiply, round/shift and clamp stages, as in `requant`; the RTL's
/// three beat-signal registers in `systole_store`).
pub const STORE_REQUANT_STAGES: u32 = 3;

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
        StoreBuf::Acc if op.requant => cols,
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

/// A load in flight. Its read requests (one DRAM row each, `cols` lines of beats) are issued
/// one per cycle from the first cycle and never wait, so request i is ready `latency` cycles
/// after cycle first + i: the read channel's state is two counters, not a queue (it equals
/// `dram::ReadChannel` fed the same way).
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
    /// `load_requests`.
    requests: u32,
    /// Cycle of the first step (the first request); None before it.
    first: Option<u64>,
    /// The request being delivered and how many of its beats were taken.
    served: u32,
    served_beats: u32,
    pos: u32,
    beats: u32,
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
            requests: load_requests(op),
            first: None,
            served: 0,
            served_beats: 0,
            pos: 0,
            beats: 0,
        }
    }

    pub fn kind(&self) -> BufferKind {
        self.kind
    }

    /// Issues requests from `cycle` without writing (a load started ahead, whose writer waits
    /// for the load before it: `dram.load_ahead`).
    pub fn issue(&mut self, cycle: u64) {
        self.first.get_or_insert(cycle);
    }

    /// The first cycle after the last request was issued (None before the first step): from
    /// then on the next load may start ahead.
    pub fn requests_done_at(&self) -> Option<u64> {
        self.first.map(|f| f + self.requests as u64)
    }

    fn is_data(&self, pos: u32) -> bool {
        let (r, c) = (pos / self.width, pos % self.width);
        r >= self.pad_top
            && r < self.pad_top + self.rows
            && c >= self.pad_left
            && c < self.pad_left + self.cols
    }

    /// Beats a request carries.
    fn row_beats(&self) -> u32 {
        self.cols * self.beats_per_line
    }

    /// The cycle the next beat can be delivered in (None: every request delivered).
    fn next_ready(&self, cycle: u64) -> Option<u64> {
        (self.served < self.rows && self.cols > 0)
            .then(|| self.first.unwrap_or(cycle) + self.served as u64 + self.latency as u64)
    }

    fn beat_ready(&self, cycle: u64) -> bool {
        self.next_ready(cycle).is_some_and(|r| r <= cycle)
    }

    fn take_beats(&mut self, n: u32) {
        let t = self.served_beats + n;
        self.served += t / self.row_beats();
        self.served_beats = t % self.row_beats();
    }

    pub fn step(&mut self, cycle: u64, bufs: &mut Buffers) -> Step {
        let kind = self.kind;
        self.step_with(cycle, |line, w| bufs.claim(kind, line, w, cycle))
    }

    /// Whether the step of `cycle` would complete the load (given the port it needs).
    fn would_finish(&self, cycle: u64) -> bool {
        self.pos >= self.total
            || (self.pos + 1 == self.total
                && (!self.is_data(self.pos)
                    || (self.beats + 1 == self.beats_per_line && self.beat_ready(cycle))))
    }

    /// Runs cycles `from..until` with every port claim granted (`count(n)` is told of each
    /// n lines written), stopping before the cycle in which the load would complete; returns
    /// the first cycle not run. For fast-forwarding while no other unit can take the load's
    /// port: waits for the DRAM are skipped and a request's beats taken in one go.
    pub fn advance(&mut self, from: u64, until: u64, mut count: impl FnMut(u64)) -> u64 {
        let mut c = from;
        self.first.get_or_insert(from);
        while c < until && !self.would_finish(c) {
            if !self.is_data(self.pos) {
                self.step_with(c, |_, _| {
                    count(1);
                    true
                });
                c += 1;
                continue;
            }
            let ready = self.next_ready(c).expect("a data line has a request");
            if ready > c {
                c = ready.min(until); // nothing happens until the next beat arrives
                continue;
            }
            // Every beat of the request being served is ready: take them one a cycle. They
            // fill the rest of this grid row's data lines; keep the load's last beat for a
            // step of its own (it completes the load). Without left and right padding the
            // data lines of all remaining rows follow each other, and every later request is
            // ready before its first beat is wanted (request i + 1 is issued one cycle after
            // request i, whose beats take at least a cycle): one run to the last data line.
            let left = if self.width == self.cols {
                let data_end = (self.pad_top + self.rows) * self.width;
                (data_end - self.pos) * self.beats_per_line - self.beats
            } else {
                self.row_beats() - self.served_beats
            };
            let lines = (left + self.beats) / self.beats_per_line;
            let mut n = left.min((until - c).min(u32::MAX as u64) as u32);
            if self.pos + lines == self.total {
                n = n.min(left - 1);
            }
            if n == 0 {
                self.step_with(c, |_, _| {
                    count(1);
                    true
                });
                c += 1;
                continue;
            }
            let done = (self.beats + n) / self.beats_per_line;
            count(done as u64);
            self.pos += done;
            self.beats = (self.beats + n) % self.beats_per_line;
            self.take_beats(n);
            c += n as u64;
        }
        c
    }

    fn step_with(&mut self, cycle: u64, mut claim: impl FnMut(u32, bool) -> bool) -> Step {
        self.first.get_or_insert(cycle);
        let mut port_stall = false;
        if self.pos < self.total {
            let line = self.sram + self.pos;
            if self.is_data(self.pos) {
                if self.beat_ready(cycle) {
                    if self.beats + 1 == self.beats_per_line {
                        if claim(line, true) {
                            self.take_beats(1);
                            self.beats = 0;
                            self.pos += 1;
                        } else {
                            port_stall = true;
                        }
                    } else {
                        self.take_beats(1);
                        self.beats += 1;
                    }
                }
            } else if claim(line, true) {
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
    /// `requant=1`: the parameter lines from `param` are read before the data, and every
    /// line's beats leave `STORE_REQUANT_STAGES` cycles later (RTL: `pr_q`, the `dly` block).
    requant: bool,
    param: u32,
    params_read: u32,
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
            requant: op.requant,
            param: op.param,
            params_read: 0,
            read: 0,
            reg_beats: 0,
            ack_at: None,
        }
    }

    pub fn kind(&self) -> BufferKind {
        self.kind
    }

    /// Parameter lines this store reads before its data.
    fn params(&self) -> u32 {
        if self.requant {
            STORE_REQUANT_PARAM_LINES
        } else {
            0
        }
    }

    /// Cycles a line's beats leave after those of a plain store.
    fn stages(&self) -> u64 {
        if self.requant {
            STORE_REQUANT_STAGES as u64
        } else {
            0
        }
    }

    pub fn step(&mut self, cycle: u64, bufs: &mut Buffers) -> Step {
        let kind = self.kind;
        self.step_with(cycle, |line| bufs.claim(kind, line, false, cycle))
    }

    /// The cycle whose step reports completion, counting from `cycle` (the next step) and
    /// assuming every port claim is granted.
    pub fn done_cycle(&self, cycle: u64) -> u64 {
        if self.total == 0 {
            return cycle;
        }
        let lat = self.latency as u64;
        // The step in which the acknowledgement time is set; done `latency` later, and never
        // in that same step.
        let set = match self.ack_at {
            Some(at) => return cycle.max(at),
            None => {
                // First step that finds the send register empty.
                let z0 = cycle + (self.reg_beats as u64).saturating_sub(1);
                z0 + (self.params() - self.params_read) as u64
                    + (self.total - self.read) as u64 * self.beats_per_line as u64
            }
        };
        let ack = set + self.stages() + lat;
        ack.max(set + 1)
    }

    /// The first cycle in which a store may start ahead of this one (`dram.store_ahead`):
    /// the one after its last beat left (the requantizer's stages included), counting from
    /// `cycle` (the next step) and assuming every port claim is granted; `None` for a store
    /// of no lines, which ends in its first cycle.
    pub fn ahead_cycle(&self, cycle: u64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let lat = self.latency as u64;
        Some(match self.ack_at {
            Some(at) => cycle.max(at - lat + 1),
            None => {
                let z0 = cycle + (self.reg_beats as u64).saturating_sub(1);
                let set = z0
                    + (self.params() - self.params_read) as u64
                    + (self.total - self.read) as u64 * self.beats_per_line as u64;
                set + self.stages() + 1
            }
        })
    }

    /// Runs cycles `from..until` (all before `done_cycle`) with every port claim granted
    /// (`count` is told of each).
    pub fn advance(&mut self, from: u64, until: u64, mut count: impl FnMut(u32)) {
        let mut c = from;
        while c < until {
            if self.ack_at.is_some() {
                return; // waiting for the acknowledgement: nothing changes
            }
            self.step_with(c, |line| {
                count(line);
                true
            });
            c += 1;
        }
    }

    fn step_with(&mut self, cycle: u64, mut claim: impl FnMut(u32) -> bool) -> Step {
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
            if self.params_read < self.params() {
                if claim(self.param + self.params_read) {
                    self.params_read += 1;
                } else {
                    port_stall = true;
                }
            } else if self.read < self.total {
                if claim(self.sram + self.read) {
                    self.read += 1;
                    self.reg_beats = self.beats_per_line;
                } else {
                    port_stall = true;
                }
            } else {
                // The last beat (of a requantizing store: the last line's read) was in
                // this cycle; its beat leaves the requantizer `stages` cycles later.
                self.ack_at = Some(cycle + self.stages() + self.latency as u64);
            }
        }
        Step {
            done: false,
            port_stall,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `StoreExec::done_cycle`'s closed form equals stepping the engine with every port free,
    /// from any cycle of a store in flight (fast-forwarding relies on it).
    #[test]
    fn store_done_cycle_equals_stepping() {
        for (rows, cols, beat, latency, pack, requant) in [
            (1, 1, 4, 1, false, false),
            (3, 2, 4, 12, false, false),
            (5, 1, 2, 3, true, false),
            (0, 4, 4, 5, false, false),
            (7, 3, 8, 1, false, false),
            (1, 1, 4, 1, false, true),
            (3, 2, 2, 12, false, true),
            (0, 2, 2, 3, false, true),
            (4, 1, 8, 0, false, true),
        ] {
            let op = Store {
                buf: if requant {
                    StoreBuf::Acc
                } else {
                    StoreBuf::Out
                },
                rows,
                cols,
                pack,
                requant,
                ..Default::default()
            };
            let mut ex = StoreExec::new(&op, beat, latency, 8, 8);
            let mut cycle = 10;
            loop {
                let predicted = ex.done_cycle(cycle);
                let mut probe = StoreExec { ..ex };
                let mut t = cycle;
                while !probe.step_with(t, |_| true).done {
                    t += 1;
                }
                assert_eq!(predicted, t, "{op:?} from cycle {cycle}");
                if ex.step_with(cycle, |_| true).done {
                    break;
                }
                cycle += 1;
            }
        }
    }
}
