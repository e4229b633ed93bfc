//! Port-level, cycle-level twins of the RTL's DMA engines (`hdl/src/dma.rs`): the same rules
//! as `dma::LoadExec` / `dma::StoreExec`, but with the external memory and the buffer port
//! arbitration outside, as signals, so a test can drive the generated Verilog and the twin with
//! the same stimuli and compare every output on every cycle. The tests below hold the twins to
//! `LoadExec` / `StoreExec` (same cycles, same stalls, same lines).

use crate::dma::{load_dram_line_bytes, pack_line, store_dram_line_bytes, store_line_beats};
use systole_arch::isa::{Load, LoadBuf, Store, StoreBuf};

/// Inputs of the load engine in one cycle.
#[derive(Debug, Clone, Default)]
pub struct LoadIn {
    /// The instruction starting in this cycle.
    pub start: Option<Load>,
    /// The beat the memory offers in this cycle (`rresp_valid`, `rresp_data`).
    pub beat: Option<Vec<u8>>,
    /// The buffer write port is free for the load (`wgrant`).
    pub wgrant: bool,
}

/// A buffer line the load engine writes: `inp`/`wgt` bytes or accumulator lanes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineData {
    Bytes(Vec<u8>),
    Lanes(Vec<i32>),
}

/// Outputs of the load engine in one cycle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOut {
    /// A row request: (DRAM address, beats).
    pub rreq: Option<(u32, u32)>,
    /// The offered beat is taken (`rresp_valid && rresp_ready`).
    pub take: bool,
    /// The write the engine wants (`wreq`): buffer, line, data; it happens if `wgrant`.
    pub wreq: Option<(LoadBuf, u32, LineData)>,
    pub done: bool,
}

/// The load engine (`systole_load`).
pub struct LoadEngine {
    rows: u32,
    cols: u32,
    beat: u32,
    op: Option<Load>,
    issued: u32,
    raddr: u32,
    pos: u32,
    beats: u32,
    line: Vec<u8>,
}

impl LoadEngine {
    pub fn new(array_rows: u32, array_cols: u32, beat_bytes: u32) -> LoadEngine {
        LoadEngine {
            rows: array_rows,
            cols: array_cols,
            beat: beat_bytes,
            op: None,
            issued: 0,
            raddr: 0,
            pos: 0,
            beats: 0,
            line: vec![0; (array_rows.max(4 * array_cols)) as usize],
        }
    }

    pub fn busy(&self) -> bool {
        self.op.is_some()
    }

    /// One cycle: the outputs for `inp`, then the clock edge.
    pub fn step(&mut self, inp: &LoadIn) -> LoadOut {
        if let Some(op) = inp.start {
            self.op = Some(op);
            self.issued = 0;
            self.raddr = op.dram;
            self.pos = 0;
            self.beats = 0;
        }
        let Some(op) = self.op else {
            return LoadOut::default();
        };
        let width = op.pad_left + op.cols + op.pad_right;
        let height = op.pad_top + op.rows + op.pad_bottom;
        let total = width * height;
        let bpl = load_dram_line_bytes(op.buf, self.rows, self.cols) / self.beat;
        let mut out = LoadOut::default();
        if self.issued < op.rows && op.cols > 0 {
            out.rreq = Some((self.raddr, op.cols * bpl));
            self.issued += 1;
            self.raddr = self.raddr.wrapping_add(op.stride);
        }
        if self.pos < total {
            let (r, c) = (self.pos / width, self.pos % width);
            let is_data = r >= op.pad_top
                && r < op.pad_top + op.rows
                && c >= op.pad_left
                && c < op.pad_left + op.cols;
            let line = op.sram + self.pos;
            let pad = op.pad_value;
            let lanes = |bytes: Option<&[u8]>| -> LineData {
                match op.buf {
                    LoadBuf::Inp | LoadBuf::Wgt => {
                        let n = if op.buf == LoadBuf::Inp {
                            self.rows
                        } else {
                            self.cols
                        } as usize;
                        LineData::Bytes(match bytes {
                            Some(b) => b[..n].to_vec(),
                            None => vec![pad as u8; n],
                        })
                    }
                    LoadBuf::Acc => LineData::Lanes(match bytes {
                        Some(b) => b
                            .chunks(4)
                            .take(self.cols as usize)
                            .map(|x| i32::from_le_bytes(x.try_into().unwrap()))
                            .collect(),
                        None => vec![pad; self.cols as usize],
                    }),
                    LoadBuf::Acc8 => LineData::Lanes(match bytes {
                        Some(b) => b[..self.cols as usize]
                            .iter()
                            .map(|&x| x as i8 as i32)
                            .collect(),
                        None => vec![pad; self.cols as usize],
                    }),
                }
            };
            if is_data {
                if let Some(beat) = &inp.beat {
                    let at = (self.beats * self.beat) as usize;
                    let last = self.beats + 1 == bpl;
                    let mut full = self.line.clone();
                    full[at..at + self.beat as usize].copy_from_slice(beat);
                    if last {
                        out.wreq = Some((op.buf, line, lanes(Some(&full))));
                        if inp.wgrant {
                            out.take = true;
                            self.beats = 0;
                            self.pos += 1;
                        }
                    } else {
                        out.take = true;
                        self.line = full;
                        self.beats += 1;
                    }
                }
            } else {
                out.wreq = Some((op.buf, line, lanes(None)));
                if inp.wgrant {
                    self.pos += 1;
                }
            }
        }
        out.done = self.pos == total;
        if out.done {
            self.op = None;
        }
        out
    }
}

/// Inputs of the store engine in one cycle.
#[derive(Debug, Clone, Default)]
pub struct StoreIn {
    pub start: Option<Store>,
    /// The buffer read port is free for the store (`sgrant`).
    pub sgrant: bool,
    /// The line read in the previous granted cycle, as DRAM bytes (`out` bytes or the
    /// accumulator's little-endian lanes); the store port holds it until the next read.
    pub rdata: Vec<u8>,
    /// The memory acknowledges the instruction's writes (`wack`).
    pub wack: bool,
}

/// Outputs of the store engine in one cycle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreOut {
    /// A read of (buffer, line) (`sreq`); it happens if `sgrant`.
    pub sreq: Option<(StoreBuf, u32)>,
    /// A beat sent: (DRAM address, bytes).
    pub beat: Option<(u32, Vec<u8>)>,
    /// The beat is the instruction's last (`wlast`).
    pub last: bool,
    pub done: bool,
}

/// The store engine (`systole_store`).
pub struct StoreEngine {
    cols: u32,
    beat: u32,
    /// Bits per packed byte (`array.xnor_bits`), the RTL's `XW`.
    xnor_bits: u32,
    op: Option<Store>,
    read: u32,
    reg_beats: u32,
    ack_wait: bool,
    send_addr: u32,
    next_row: u32,
    next_line: u32,
    next_col: u32,
}

impl StoreEngine {
    pub fn new(array_cols: u32, beat_bytes: u32, xnor_bits: u32) -> StoreEngine {
        StoreEngine {
            cols: array_cols,
            beat: beat_bytes,
            xnor_bits,
            op: None,
            read: 0,
            reg_beats: 0,
            ack_wait: false,
            send_addr: 0,
            next_row: 0,
            next_line: 0,
            next_col: 0,
        }
    }

    pub fn busy(&self) -> bool {
        self.op.is_some()
    }

    pub fn step(&mut self, inp: &StoreIn) -> StoreOut {
        if let Some(op) = inp.start {
            self.op = Some(op);
            self.read = 0;
            self.reg_beats = 0;
            self.ack_wait = false;
            self.next_row = op.dram;
            self.next_line = op.dram;
            self.next_col = 0;
        }
        let Some(op) = self.op else {
            return StoreOut::default();
        };
        let total = op.rows * op.cols;
        let bpl = store_line_beats(&op, self.cols, self.beat, self.xnor_bits);
        let dline = store_dram_line_bytes(&op, self.cols, self.xnor_bits);
        let mut out = StoreOut::default();
        if total == 0 {
            out.done = true;
        } else if self.ack_wait {
            out.done = inp.wack;
        } else {
            if self.reg_beats > 0 {
                let bi = bpl - self.reg_beats;
                let at = (bi * self.beat) as usize;
                // A packed line's last beat carries only the bytes left (the port's strobes).
                let line = if op.pack {
                    pack_line(&inp.rdata[..self.cols as usize], self.xnor_bits)
                } else {
                    inp.rdata.clone()
                };
                let end = (at + self.beat as usize).min(dline as usize);
                out.beat = Some((self.send_addr + bi * self.beat, line[at..end].to_vec()));
                self.reg_beats -= 1;
                if self.reg_beats == 0 && self.read == total {
                    out.last = true;
                    self.ack_wait = true;
                }
            }
            if self.reg_beats == 0 && self.read < total {
                out.sreq = Some((op.buf, op.sram + self.read));
                if inp.sgrant {
                    self.read += 1;
                    self.reg_beats = bpl;
                    self.send_addr = self.next_line;
                    if self.next_col + 1 == op.cols {
                        self.next_col = 0;
                        self.next_row = self.next_row.wrapping_add(op.stride);
                        self.next_line = self.next_row;
                    } else {
                        self.next_col += 1;
                        self.next_line += dline;
                    }
                }
            }
        }
        if out.done {
            self.op = None;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::Buffers;
    use crate::dma::{LoadExec, StoreExec};
    use crate::dram::ReadChannel;
    use crate::randprog::Rng;
    use systole_arch::ArchConfig;

    fn random_load(rng: &mut Rng) -> Load {
        let buf = rng.pick(LoadBuf::ALL);
        Load {
            buf,
            sram: rng.range(0, 8) as u32,
            dram: rng.range(0, 64) as u32,
            rows: rng.range(0, 3) as u32,
            cols: rng.range(0, 3) as u32,
            stride: rng.range(0, 96) as u32,
            pad_top: rng.range(0, 2) as u32,
            pad_bottom: rng.range(0, 1) as u32,
            pad_left: rng.range(0, 2) as u32,
            pad_right: rng.range(0, 1) as u32,
            pad_value: rng.range(0, 255) as i32 - 128,
        }
    }

    /// The twin and `LoadExec` take the same cycles and stall in the same cycles when compute
    /// holds the write port of the load's bank in random cycles.
    #[test]
    fn load_twin_equals_load_exec() {
        let arch = ArchConfig::preset("tiny").unwrap();
        let (r, c, b, l) = (4, 4, 4, arch.dram.latency_cycles);
        let mut stalls = 0;
        for seed in 0..300 {
            let mut rng = Rng::new(seed);
            let op = random_load(&mut rng);
            let busy: Vec<bool> = (0..400).map(|_| rng.chance(30)).collect();
            // Reference: LoadExec with compute claiming the write port in `busy` cycles.
            let mut bufs = Buffers::new(&arch);
            let mut ex = LoadExec::new(&op, b, l, r, c);
            let kind = crate::dma::load_kind(op.buf);
            let mut ref_trace = Vec::new();
            for t in 0..400u64 {
                if busy[t as usize] {
                    for line in [0, arch.lines_per_bank(kind)] {
                        bufs.claim(kind, line, true, t);
                    }
                }
                let s = ex.step(t, &mut bufs);
                ref_trace.push(s.port_stall);
                if s.done {
                    break;
                }
            }
            // Twin with a channel model and wgrant = !busy.
            let mut tw = LoadEngine::new(r, c, b);
            let mut ch = ReadChannel::default();
            let mut trace = Vec::new();
            for t in 0..400u64 {
                let ready = ch.beat_ready(t);
                let inp = LoadIn {
                    start: (t == 0).then_some(op),
                    beat: ready.then(|| vec![t as u8; b as usize]),
                    wgrant: !busy[t as usize],
                };
                let o = tw.step(&inp);
                if o.take {
                    ch.take_beat();
                }
                if let Some((_, beats)) = o.rreq {
                    ch.request(t, l, beats);
                }
                trace.push(o.wreq.is_some() && !inp.wgrant);
                if o.done {
                    break;
                }
            }
            assert_eq!(trace, ref_trace, "seed {seed}: {op:?}");
            stalls += trace.iter().filter(|&&x| x).count();
        }
        assert!(stalls > 0, "no port stall exercised");
    }

    /// The twin and `StoreExec` take the same cycles and stall in the same cycles.
    #[test]
    fn store_twin_equals_store_exec() {
        let arch = ArchConfig::preset("tiny").unwrap();
        let (c, b, l) = (4, 4, arch.dram.latency_cycles);
        let mut stalls = 0;
        for seed in 0..300 {
            let mut rng = Rng::new(seed);
            let op = Store {
                buf: rng.pick(StoreBuf::ALL),
                sram: rng.range(0, 8) as u32,
                dram: rng.range(0, 64) as u32,
                rows: rng.range(0, 3) as u32,
                cols: rng.range(0, 3) as u32,
                stride: rng.range(0, 96) as u32,
                pack: false,
                ..Default::default()
            };
            let busy: Vec<bool> = (0..300).map(|_| rng.chance(30)).collect();
            let kind = crate::dma::store_kind(op.buf);
            let mut bufs = Buffers::new(&arch);
            let mut ex = StoreExec::new(&op, b, l, c, 8);
            let mut ref_trace = Vec::new();
            for t in 0..300u64 {
                if busy[t as usize] {
                    for line in [0, arch.lines_per_bank(kind)] {
                        bufs.claim(kind, line, false, t);
                    }
                }
                let s = ex.step(t, &mut bufs);
                ref_trace.push(s.port_stall);
                if s.done {
                    break;
                }
            }
            let mut tw = StoreEngine::new(c, b, 8);
            let mut ack: Option<u64> = None;
            let mut trace = Vec::new();
            let rdata = vec![0u8; 16];
            for t in 0..300u64 {
                let inp = StoreIn {
                    start: (t == 0).then_some(op),
                    sgrant: !busy[t as usize],
                    rdata: rdata.clone(),
                    wack: ack == Some(t),
                };
                let o = tw.step(&inp);
                if o.last {
                    ack = Some(t + l as u64);
                }
                trace.push(o.sreq.is_some() && !inp.sgrant);
                if o.done {
                    break;
                }
            }
            assert_eq!(trace, ref_trace, "seed {seed}: {op:?}");
            stalls += trace.iter().filter(|&&x| x).count();
        }
        assert!(stalls > 0, "no port stall exercised");
    }

    /// Driven with the instruction durations the emulator measured, the controller twin starts
    /// every instruction in the cycle the emulator's trace says and finishes in the same cycle.
    #[test]
    fn controller_twin_equals_machine() {
        use crate::{Machine, RunOptions};
        for (preset, seeds) in [("tiny", 0..40u64), ("ulx3s", 40..50)] {
            let arch = ArchConfig::preset(preset).unwrap();
            for seed in seeds {
                let prog = crate::randprog::random_program(&arch, seed, 60);
                let opts = RunOptions {
                    trace: true,
                    ..Default::default()
                };
                let mut m = Machine::new(&prog, &arch, &opts).unwrap();
                let cycles = m.run().unwrap();
                let spans = m.spans.take().unwrap();
                let mut tracks: [std::collections::VecDeque<(u64, u64)>; 3] = Default::default();
                let mut sorted: Vec<_> = spans.iter().filter(|s| s.track < 3).collect();
                sorted.sort_by_key(|s| (s.track, s.start));
                for s in sorted {
                    tracks[s.track].push_back((s.start, s.end));
                }
                let c = &arch.controller;
                let mut tw = ControllerTwin::new(prog.code.clone(), c.queue_depth, c.token_depth);
                let mut end: [Option<u64>; 3] = [None; 3];
                for t in 0..cycles + 5 {
                    tw.starts();
                    let st = tw.starting();
                    for u in 0..3 {
                        if st[u].is_some() {
                            let (s, e) = tracks[u].pop_front().expect("an instruction to start");
                            assert_eq!(s, t, "seed {seed} unit {u}: start cycle");
                            end[u] = Some(e);
                        }
                    }
                    let done = [0, 1, 2].map(|u| end[u] == Some(t));
                    for u in 0..3 {
                        if done[u] {
                            end[u] = None;
                        }
                    }
                    tw.clock(done);
                    if tw.cycles().is_some() {
                        break;
                    }
                }
                assert_eq!(tw.cycles(), Some(cycles), "seed {seed}: cycles");
                assert!(
                    tracks.iter().all(|t| t.is_empty()),
                    "seed {seed}: unstarted"
                );
            }
        }
    }
}

/// Port-level twin of the RTL controller (`hdl/src/controller.rs`): fetch, the three command
/// queues, the four token counters, the unit sequencers (idle / busy / retiring) and `finish`,
/// with the engines outside (they answer `done` in an instruction's last cycle). The same
/// rules as `Machine::step_unit` and `Machine::step_controller`, which the whole-machine
/// co-simulation checks; this twin lets a test drive the controller alone.
pub struct ControllerTwin {
    code: Vec<systole_arch::isa::Insn>,
    queue_depth: usize,
    token_depth: u32,
    pc: usize,
    queues: [std::collections::VecDeque<systole_arch::isa::Insn>; 3],
    tokens: [u32; 4],
    busy: [bool; 3],
    /// Pending pushes of a finished instruction waiting for room.
    retiring: [Option<Vec<crate::controller::TokenQueue>>; 3],
    /// Pushes of each unit's active instruction.
    pushes: [Vec<crate::controller::TokenQueue>; 3],
    cycle: u64,
    done: Option<u64>,
    /// Decided in `starts`, applied in `clock`.
    starting: [Option<systole_arch::isa::Insn>; 3],
    /// Cycles a finished instruction waited for room in a token queue (all units).
    pub push_stall_cycles: u64,
    /// Cycles fetch waited for a full command queue.
    pub dispatch_stall_cycles: u64,
}

/// What the controller tells the engines in one cycle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControllerStarts {
    /// Per unit, the instruction an engine starts in this cycle (`nop`s stay in the controller).
    pub start: [Option<systole_arch::isa::Insn>; 3],
}

impl ControllerTwin {
    pub fn new(code: Vec<systole_arch::isa::Insn>, queue_depth: u32, token_depth: u32) -> Self {
        ControllerTwin {
            code,
            queue_depth: queue_depth as usize,
            token_depth,
            pc: 0,
            queues: Default::default(),
            tokens: [0; 4],
            busy: [false; 3],
            retiring: Default::default(),
            pushes: Default::default(),
            cycle: 0,
            done: None,
            starting: [None; 3],
            push_stall_cycles: 0,
            dispatch_stall_cycles: 0,
        }
    }

    fn unit_of(insn: &systole_arch::isa::Insn) -> Option<usize> {
        crate::controller::Controller::queue_of(insn.unit())
    }

    /// The starts of this cycle (they depend only on registered state).
    #[allow(clippy::needless_range_loop)]
    pub fn starts(&mut self) -> ControllerStarts {
        let mut out = ControllerStarts::default();
        for u in 0..3 {
            self.starting[u] = None;
            if self.done.is_some() || self.busy[u] || self.retiring[u].is_some() {
                continue;
            }
            let Some(&head) = self.queues[u].front() else {
                continue;
            };
            let tu = crate::controller::token_use(head.unit(), head.deps).unwrap_or_default();
            if tu.pops.iter().all(|&q| self.tokens[q as usize] > 0) {
                self.starting[u] = Some(head);
                if !matches!(head.op, systole_arch::isa::Op::Nop(_)) {
                    out.start[u] = Some(head);
                }
            }
        }
        out
    }

    /// The clock edge, given the engines' `done` in this cycle; returns whether the compute
    /// unit starts an instruction in the next cycle and which (`c_start_next`, `c_head_next`).
    #[allow(clippy::needless_range_loop)]
    pub fn clock(&mut self, eng_done: [bool; 3]) -> Option<systole_arch::isa::Insn> {
        let t0 = self.tokens;
        let qlen0 = [0, 1, 2].map(|u| self.queues[u].len());
        let idle0 = [0, 1, 2].map(|u| !self.busy[u] && self.retiring[u].is_none());
        let mut delta = [0i64; 4];
        for u in 0..3 {
            let mut fin = false;
            let mut pushes = Vec::new();
            if let Some(p) = self.retiring[u].take() {
                pushes = p;
                fin = true;
            } else if let Some(head) = self.starting[u] {
                self.queues[u].pop_front();
                let tu = crate::controller::token_use(head.unit(), head.deps).unwrap_or_default();
                for &q in &tu.pops {
                    delta[q as usize] -= 1;
                }
                self.pushes[u] = tu.pushes;
                if matches!(head.op, systole_arch::isa::Op::Nop(_)) || eng_done[u] {
                    fin = true;
                    pushes = std::mem::take(&mut self.pushes[u]);
                } else {
                    self.busy[u] = true;
                }
            } else if self.busy[u] && eng_done[u] {
                self.busy[u] = false;
                fin = true;
                pushes = std::mem::take(&mut self.pushes[u]);
            }
            if fin {
                if pushes.iter().all(|&q| t0[q as usize] < self.token_depth) {
                    for &q in &pushes {
                        delta[q as usize] += 1;
                    }
                } else {
                    self.retiring[u] = Some(pushes);
                    self.push_stall_cycles += 1;
                }
            }
        }
        if self.done.is_none() {
            let insn = self.code[self.pc];
            match Self::unit_of(&insn) {
                None => {
                    if qlen0.iter().all(|&l| l == 0) && idle0.iter().all(|&i| i) {
                        self.done = Some(self.cycle + 1);
                    }
                }
                Some(q) => {
                    if qlen0[q] < self.queue_depth {
                        self.queues[q].push_back(insn);
                        self.pc += 1;
                    } else {
                        self.dispatch_stall_cycles += 1;
                    }
                }
            }
        }
        for (t, d) in self.tokens.iter_mut().zip(delta) {
            *t = (*t as i64 + d) as u32;
        }
        self.cycle += 1;
        // The compute unit's start in the next cycle.
        let u = 1;
        if self.done.is_some() || self.busy[u] || self.retiring[u].is_some() {
            return None;
        }
        let head = *self.queues[u].front()?;
        let tu = crate::controller::token_use(head.unit(), head.deps).unwrap_or_default();
        tu.pops
            .iter()
            .all(|&q| self.tokens[q as usize] > 0)
            .then_some(head)
    }

    /// Per unit, the instruction (`nop`s included) starting in this cycle (after `starts`).
    pub fn starting(&self) -> [Option<systole_arch::isa::Insn>; 3] {
        self.starting
    }

    /// The cycle count once `finish` has retired.
    pub fn cycles(&self) -> Option<u64> {
        self.done
    }
}
