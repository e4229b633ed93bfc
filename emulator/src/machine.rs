//! The top level: wires controller, DMA engines, buffers, array and PPU together and steps
//! them one clock cycle at a time, skipping ahead (`Machine::fast_forward`) over cycles in
//! which the units run independently, with the same result.
//!
//! Order inside a cycle only matters for buffer port arbitration (compute, then load, then
//! store); every other decision reads the state registered at the start of the cycle.
//! An instruction's effect on data is applied when it starts; the race detector guarantees this
//! equals the hardware's cycle-by-cycle effect by refusing any program in which two units touch
//! the same memory in overlapping time without a token between them.

use crate::array::Array;
use crate::buffer::Buffers;
use crate::controller::{token_use, Controller, TokenQueue, TokenUse};
use crate::dma::{self, LoadExec, Step, StoreExec};
use crate::dram::Dram;
use crate::error::{EmuError, ErrorKind};
use crate::ppu::{self, Ppu};
use crate::stats::{BufferStats, Stats, UnitStats};
use crate::trace::Span;
use systole_arch::config::{Ports, Precision};
use systole_arch::isa::{Insn, LoadBuf, MatMul, Op, Requant, Round, Store, StoreBuf};
use systole_arch::{ArchConfig, BufferKind, Program};

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Record one trace span per instruction.
    pub trace: bool,
    /// Stop with an error after this many cycles.
    pub max_cycles: Option<u64>,
    /// Instruction indices (ascending) at whose start the statistics so far are recorded:
    /// the first instruction of each layer, for per-layer breakdowns (layers end in a
    /// barrier, so everything before one has finished when it starts).
    pub snapshot_at: Vec<usize>,
    /// Step every cycle one by one, never fast-forwarding: the reference the fast path is
    /// tested against (`Machine::fast_forward`).
    pub step_every_cycle: bool,
}

/// A memory range an instruction touches, for race detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Access {
    /// 0..4 buffers (BufferKind index), 4 DRAM.
    res: u8,
    lo: u64,
    hi: u64,
    write: bool,
}

const DRAM_RES: u8 = 4;

fn res_name(r: u8) -> &'static str {
    match r {
        0 => "input buffer lines",
        1 => "weight buffer lines",
        2 => "accumulator lines",
        3 => "output buffer lines",
        _ => "DRAM bytes",
    }
}

enum Exec {
    /// Compute-unit instruction: fixed duration, ports used according to its schedule.
    Fixed {
        cycles: u64,
    },
    Load(LoadExec),
    Store(StoreExec),
}

struct Active {
    idx: usize,
    start: u64,
    exec: Exec,
    pushes: Vec<TokenQueue>,
    footprint: Vec<Access>,
    /// Buffer ports the instruction may claim (`port_bit`), for fast-forwarding: a superset
    /// of those its `fixed_access` / DMA steps name (checked in debug builds).
    ports: u8,
}

enum Slot {
    Idle,
    Busy(Box<Active>),
    /// Finished executing; waiting for room in a token queue.
    Retiring {
        idx: usize,
        pushes: Vec<TokenQueue>,
    },
}

/// The accelerator model.
pub struct Machine {
    pub arch: ArchConfig,
    code: Vec<Insn>,
    pub cycle: u64,
    pub dram: Dram,
    pub bufs: Buffers,
    pub array: Array,
    pub ppu: Ppu,
    pub ctrl: Controller,
    slots: [Slot; 3],
    /// The older instruction of a unit that runs two, by unit: Busy until its last cycle,
    /// then Retiring while its tokens find no room. Compute: the chain that still drains
    /// while the chain after it runs in `slots[1]` (`array.chain_overlap`). Load: the load
    /// that still takes its beats while the one after it, started ahead, issues its requests
    /// in `slots[0]` (`dram.load_ahead`). Store: the store waiting for its acknowledgement
    /// while the one after it, started ahead, sends (`dram.store_ahead`).
    drain: [Slot; 3],
    /// Footprint and last cycle of each unit's most recently completed instruction.
    recent: [Option<(u64, usize, Vec<Access>)>; 3],
    unit_stats: [UnitStats; 3],
    finish_cycle: Option<u64>,
    pub spans: Option<Vec<Span>>,
    max_cycles: Option<u64>,
    snapshot_at: Vec<usize>,
    /// (instruction index, statistics before it started), see `RunOptions::snapshot_at`.
    pub snapshots: Vec<(usize, Stats)>,
    /// Token use of each instruction, decoded once (None: illegal flags, reported when met).
    tokens: Vec<Option<TokenUse>>,
    step_every_cycle: bool,
}

/// How an instruction runs a cycle (`Machine::exec_cycle`).
#[derive(Debug, Clone, Copy, Default)]
struct CycleMode {
    /// It may not push yet: an older instruction of its unit has not.
    held: bool,
    /// A load ahead that only issues requests: an older load still wrote at the cycle's start,
    /// or has just moved to the drain slot (`dram.load_ahead`).
    writer_waits: bool,
}

/// The drain slots at the start of a cycle, by unit (load, compute, store): 0 empty, 1
/// busy, 2 waiting to push.
#[derive(Debug, Clone, Copy)]
struct DrainState([u8; 3]);

impl DrainState {
    fn idle(self, u: usize) -> bool {
        self.0[u] == 0
    }
    fn busy(self, u: usize) -> bool {
        self.0[u] == 1
    }
    fn retiring(self, u: usize) -> bool {
        self.0[u] == 2
    }
}

/// Buffer ports a compute-unit instruction uses in cycle `o` of its execution.
fn fixed_access(
    arch: &ArchConfig,
    array: &Array,
    op: &Op,
    o: u64,
    mut f: impl FnMut(BufferKind, u32, bool),
) {
    match op {
        Op::LoadWeights(op) => array.ldw_access(op, o, &mut f),
        Op::MatMul(op) => array.matmul_access(op, o, &mut f),
        Op::Alu(op) => Ppu::alu_access(op, o, &mut f),
        Op::Requant(op) => Ppu::requant_access(op, o, &mut f),
        Op::Thresh(op) => Ppu::thresh_access(op, arch.ppu.threshold_stages(), o, &mut f),
        _ => {}
    }
}

/// Bit of a buffer port in a port mask: one per port, so a "1rw" bank's read and write share
/// one bit.
fn port_bit(arch: &ArchConfig, k: BufferKind, write: bool) -> u8 {
    let w = write && arch.buffer(k).ports == Ports::OneROneW;
    1 << (2 * k.index() + w as usize)
}

impl Machine {
    /// Builds a machine with the program's DRAM image (data segments) loaded.
    pub fn new(prog: &Program, arch: &ArchConfig, opts: &RunOptions) -> Result<Machine, EmuError> {
        prog.check_arch(arch)
            .map_err(|e| EmuError::new(ErrorKind::BadInput, e.to_string()))?;
        if prog.code.len() > arch.controller.imem_instructions as usize {
            return Err(EmuError::new(
                ErrorKind::ProgramTooLarge,
                format!(
                    "program has {} instructions; the instruction memory holds {}",
                    prog.code.len(),
                    arch.controller.imem_instructions
                ),
            ));
        }
        if prog.dram_bytes > arch.dram.size_bytes {
            return Err(EmuError::new(
                ErrorKind::ProgramTooLarge,
                format!(
                    "program needs {} bytes of DRAM; arch '{}' has {}",
                    prog.dram_bytes, arch.name, arch.dram.size_bytes
                ),
            ));
        }
        let mut dram = Dram::new(prog.dram_bytes as usize);
        for (i, s) in prog.data.iter().enumerate() {
            let a = s.dram_addr as usize;
            let end = a
                .checked_add(s.bytes.len())
                .filter(|&e| e <= dram.bytes.len())
                .ok_or_else(|| {
                    EmuError::new(
                        ErrorKind::OutOfRange,
                        format!("data segment {i} lies outside the program's DRAM"),
                    )
                })?;
            dram.bytes[a..end].copy_from_slice(&s.bytes);
        }
        Ok(Machine {
            arch: arch.clone(),
            code: prog.code.clone(),
            cycle: 0,
            dram,
            bufs: Buffers::new(arch),
            array: Array::with_xnor_bits(
                arch.array.rows as usize,
                arch.array.cols as usize,
                arch.array.xnor_bits,
            ),
            ppu: Ppu::default(),
            ctrl: Controller::new(arch.controller.queue_depth, arch.controller.token_depth),
            slots: [Slot::Idle, Slot::Idle, Slot::Idle],
            drain: [Slot::Idle, Slot::Idle, Slot::Idle],
            recent: [None, None, None],
            unit_stats: Default::default(),
            finish_cycle: None,
            spans: opts.trace.then(Vec::new),
            max_cycles: opts.max_cycles,
            snapshot_at: opts.snapshot_at.clone(),
            snapshots: Vec::new(),
            tokens: prog
                .code
                .iter()
                .map(|i| token_use(i.unit(), i.deps).ok())
                .collect(),
            step_every_cycle: opts.step_every_cycle,
        })
    }

    fn err(&self, kind: ErrorKind, idx: usize, msg: impl Into<String>) -> EmuError {
        EmuError::at(kind, idx, self.code[idx].op.mnemonic(), self.cycle, msg)
    }

    /// A chain needs both tile counts and PEs with two weight registers.
    fn check_chain(&self, idx: usize, op: &MatMul) -> Result<(), EmuError> {
        if op.outer == 0 || op.inner == 0 {
            return Err(self.err(
                ErrorKind::IllegalOperands,
                idx,
                format!(
                    "matmul chain needs outer and inner both >= 1 (or both 0), got outer={} inner={}",
                    op.outer, op.inner
                ),
            ));
        }
        if self.arch.array.weight_banks < 2 {
            return Err(self.err(
                ErrorKind::IllegalOperands,
                idx,
                format!(
                    "matmul chain (outer={} inner={}): arch '{}' has one weight register per PE \
                     (array.weight_banks = {}; chains need 2)",
                    op.outer, op.inner, self.arch.name, self.arch.array.weight_banks
                ),
            ));
        }
        Ok(())
    }

    fn no_binary(&self, idx: usize, what: &str) -> EmuError {
        self.err(
            ErrorKind::IllegalOperands,
            idx,
            format!(
                "{what}: arch '{}' has no binary precision (array.precisions = {:?})",
                self.arch.name,
                self.arch
                    .array
                    .precisions
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
            ),
        )
    }

    /// Runs to `finish`; returns the cycle count.
    pub fn run(&mut self) -> Result<u64, EmuError> {
        while self.finish_cycle.is_none() {
            if let Some(max) = self.max_cycles {
                if self.cycle >= max {
                    return Err(EmuError::new(
                        ErrorKind::CycleLimit,
                        format!("no finish within {max} cycles"),
                    ));
                }
            }
            if self.step_every_cycle || !self.fast_forward() {
                self.step()?;
            }
        }
        Ok(self.cycle)
    }

    /// One clock cycle.
    pub fn step(&mut self) -> Result<(), EmuError> {
        let t = self.cycle;
        let tok0 = self.ctrl.tokens;
        let qlen0 = [0, 1, 2].map(|q| self.ctrl.queues[q].len());
        // The drain slots at the start of the cycle.
        let d0 = self.drain_state();
        let idle0 = [0, 1, 2].map(|u| matches!(self.slots[u], Slot::Idle) && d0.idle(u));
        let mut delta = [0i32; 4];
        let mut progress = false;
        // Compute first: it has priority on buffer ports. A draining chain goes before the
        // one that overlaps it (their ports never meet: docs/timing.md), the older load
        // before the one ahead (whose writer waits for it).
        for u in [1, 0, 2] {
            progress |= self.step_drain(u, t, &tok0, &mut delta)?;
            progress |= self.step_unit(u, t, &tok0, &mut delta, d0)?;
        }
        progress |= self.step_controller(t, &qlen0, &idle0)?;
        for (q, d) in delta.iter().enumerate() {
            if *d != 0 {
                progress = true;
            }
            self.ctrl.tokens[q] = (self.ctrl.tokens[q] as i32 + d) as u32;
        }
        if self.finish_cycle.is_none() && !progress {
            return Err(self.deadlock_error());
        }
        self.cycle += 1;
        Ok(())
    }

    /// Skips ahead over cycles in which nothing but independent progress happens: the
    /// controller stalls, idle units stay idle, retiring ones keep waiting, and the busy units
    /// cannot compete for a buffer port (their port masks are disjoint), so each can run alone
    /// until the first cycle in which one of them completes. Returns false, doing nothing, when
    /// the current cycle is not such a cycle; `step` then runs it. The result equals stepping
    /// every cycle, statistics included (tested against `RunOptions::step_every_cycle`).
    fn fast_forward(&mut self) -> bool {
        let t = self.cycle;
        let mut h = self.max_cycles.unwrap_or(u64::MAX);
        // The controller must stall throughout: waiting to finish, or on a full queue (queues
        // only drain when a unit starts an instruction, which ends the window).
        let Some(insn) = self.code.get(self.ctrl.pc) else {
            return false;
        };
        let stalled_queue = match Controller::queue_of(insn.unit()) {
            None => {
                let done = self.ctrl.queues.iter().all(|q| q.is_empty())
                    && self.slots.iter().all(|s| matches!(s, Slot::Idle));
                if done || !insn.deps.is_empty() {
                    return false;
                }
                None
            }
            Some(q) if self.ctrl.queues[q].len() >= self.ctrl.queue_depth => Some(q),
            Some(_) => return false,
        };
        #[derive(Clone, Copy)]
        enum Wait {
            Idle,
            Tokens,
            Push,
            Busy,
        }
        // A draining chain runs beside the newer one (their ports never meet: docs/timing.md)
        // until its last cycle, which ends the window; one waiting to push is stepped.
        let drain_ports = match &self.drain[1] {
            Slot::Idle => 0,
            Slot::Busy(d) => {
                if let Exec::Fixed { cycles } = &d.exec {
                    h = h.min(d.start + cycles - 1);
                }
                d.ports
            }
            Slot::Retiring { .. } => return false,
        };
        // A chain's overlap window: the window stops where it opens; inside it, a head that
        // may start overlapped starts now (step), and otherwise nothing changes until an
        // event (tokens only arrive with a completion, the drain's end bounds the window).
        if let Slot::Busy(a) = &self.slots[1] {
            if let Some(w) = self.overlap_window(a) {
                if t < w.start {
                    h = h.min(w.start);
                } else if t < w.end {
                    let idle = matches!(self.drain[1], Slot::Idle);
                    if self.overlap_head(a, t, &self.ctrl.tokens, idle).is_some() {
                        return false;
                    }
                    if let Some(&(_, vis)) = self.ctrl.queues[1].front() {
                        if vis > t {
                            h = h.min(vis);
                        }
                    }
                }
            }
        }
        // Loads ahead: while an older load writes, the newer one waits for it (its end bounds
        // the window); otherwise the window stops where the running load has issued its
        // requests, after which a load at the head with its tokens starts ahead (step).
        let mut ports = [0u8; 3];
        match &self.drain[0] {
            Slot::Idle => {
                if let (Slot::Busy(a), Some(&(idx, vis))) =
                    (&self.slots[0], self.ctrl.queues[0].front())
                {
                    if let (Exec::Load(l), Op::Load(_), true) =
                        (&a.exec, &self.code[idx].op, self.arch.dram.load_ahead)
                    {
                        let at = l.requests_done_at().unwrap_or(t).max(vis);
                        if at > t {
                            h = h.min(at);
                        } else if self.ahead_head(a, t, &self.ctrl.tokens, true).is_some() {
                            return false;
                        }
                    }
                }
            }
            Slot::Busy(d) => ports[0] = d.ports,
            Slot::Retiring { .. } => return false,
        }
        // Stores ahead: the same for a store that waits for its acknowledgement (no ports),
        // and the window stops where the running store has sent its last beat.
        match &self.drain[2] {
            Slot::Idle => {
                if let (Slot::Busy(a), Some(&(idx, vis)), true) = (
                    &self.slots[2],
                    self.ctrl.queues[2].front(),
                    self.arch.dram.store_ahead,
                ) {
                    if let (Exec::Store(st), Op::Store(_)) = (&a.exec, &self.code[idx].op) {
                        if let Some(at) = st.ahead_cycle(t) {
                            let at = at.max(vis);
                            if at > t {
                                h = h.min(at);
                            } else if self
                                .store_ahead_head(a, t, &self.ctrl.tokens, true)
                                .is_some()
                            {
                                return false;
                            }
                        }
                    }
                }
            }
            Slot::Busy(d) => {
                if let Exec::Store(st) = &d.exec {
                    h = h.min(st.done_cycle(t));
                }
            }
            Slot::Retiring { .. } => return false,
        }
        let mut wait = [Wait::Idle; 3];
        let depth = self.ctrl.token_depth;
        for u in 0..3 {
            wait[u] = match &self.slots[u] {
                Slot::Idle => match self.ctrl.queues[u].front() {
                    None => Wait::Idle,
                    Some(&(_, vis)) if vis > t => {
                        h = h.min(vis);
                        Wait::Idle
                    }
                    Some(&(idx, _)) => match &self.tokens[idx] {
                        Some(tu) if !tu.pops.iter().all(|&q| self.ctrl.tokens[q as usize] > 0) => {
                            Wait::Tokens
                        }
                        _ => return false, // starts now (or reports its flags)
                    },
                },
                Slot::Retiring { pushes, .. } => {
                    if pushes.iter().all(|&q| self.ctrl.tokens[q as usize] < depth) {
                        return false;
                    }
                    Wait::Push
                }
                Slot::Busy(a) => {
                    ports[u] |= a.ports;
                    match &a.exec {
                        Exec::Fixed { cycles } => h = h.min(a.start + cycles - 1),
                        Exec::Store(s) => h = h.min(s.done_cycle(t)),
                        Exec::Load(_) => {}
                    }
                    Wait::Busy
                }
            };
        }
        if !wait.iter().any(|w| matches!(w, Wait::Busy)) {
            return false; // nothing moves: a deadlock, which `step` reports
        }
        ports[1] |= drain_ports;
        if ports[0] & ports[1] != 0 || ports[0] & ports[2] != 0 || ports[1] & ports[2] != 0 {
            return false;
        }
        // The load's completion is found by running it; it goes first and may shorten the
        // window for the others.
        let writer = match &mut self.drain[0] {
            Slot::Busy(d) => Some(d),
            _ => match &mut self.slots[0] {
                Slot::Busy(a) => Some(a),
                _ => None,
            },
        };
        if let Some(a) = writer {
            if let Exec::Load(l) = &mut a.exec {
                if h > t {
                    let (bufs, kind) = (&mut self.bufs, l.kind());
                    h = l.advance(t, h, |n| bufs.count_n(kind, true, n));
                }
            }
        }
        if h <= t {
            return false;
        }
        let k = h - t;
        for (st, w) in self.unit_stats.iter_mut().zip(wait) {
            match w {
                Wait::Idle => st.idle_cycles += k,
                Wait::Tokens => st.token_stall_cycles += k,
                Wait::Push => st.push_stall_cycles += k,
                Wait::Busy => st.busy_cycles += k,
            }
        }
        if let Some(q) = stalled_queue {
            self.ctrl.dispatch_stalls[q] += k;
        }
        for slot in [&self.slots[1], &self.drain[1]] {
            if let Slot::Busy(a) = slot {
                let bufs = &mut self.bufs;
                let op = &self.code[a.idx].op;
                let (arch, mask) = (&self.arch, a.ports);
                for o in t - a.start..h - a.start {
                    fixed_access(arch, &self.array, op, o, |kind, _, w| {
                        debug_assert!(
                            port_bit(arch, kind, w) & mask != 0,
                            "port mask misses a port"
                        );
                        bufs.count(kind, w)
                    });
                }
            }
        }
        if let Slot::Busy(a) = &mut self.slots[2] {
            if let Exec::Store(s) = &mut a.exec {
                let (bufs, kind) = (&mut self.bufs, s.kind());
                s.advance(t, h, |_| bufs.count(kind, false));
            }
        }
        self.cycle = h;
        true
    }

    fn drain_state(&self) -> DrainState {
        let st = |u: usize| match self.drain[u] {
            Slot::Idle => 0,
            Slot::Busy(_) => 1,
            Slot::Retiring { .. } => 2,
        };
        DrainState([st(0), st(1), st(2)])
    }

    /// Steps unit `u`'s drain slot, if it holds an instruction; returns whether anything
    /// changed. Its cycles count as the unit's running instruction's busy cycles, not twice.
    fn step_drain(
        &mut self,
        u: usize,
        t: u64,
        tok0: &[u32; 4],
        delta: &mut [i32; 4],
    ) -> Result<bool, EmuError> {
        match std::mem::replace(&mut self.drain[u], Slot::Idle) {
            Slot::Idle => Ok(false),
            Slot::Retiring { idx, pushes } => {
                let pushed = self.try_push(&pushes, tok0, delta);
                if !pushed {
                    self.drain[u] = Slot::Retiring { idx, pushes };
                }
                Ok(pushed)
            }
            Slot::Busy(a) => {
                self.drain[u] = self.exec_cycle(u, a, t, tok0, delta, CycleMode::default())?;
                Ok(true)
            }
        }
    }

    /// The load at the load queue's head, if it may start ahead in cycle `t` behind running
    /// load `a` (`dram.load_ahead`, docs/timing.md "Loads ahead"): `a` has issued all its
    /// requests before `t`, no older load still writes (`drain_idle` at the start of `t`),
    /// and the head is a load that was visible with its tokens there at the start of `t`.
    fn ahead_head(&self, a: &Active, t: u64, tok0: &[u32; 4], drain_idle: bool) -> Option<usize> {
        if !drain_idle || !self.arch.dram.load_ahead {
            return None;
        }
        let Exec::Load(l) = &a.exec else {
            return None;
        };
        if l.requests_done_at()? > t {
            return None;
        }
        let idx = self.ctrl.head(0, t)?;
        let Op::Load(_) = &self.code[idx].op else {
            return None;
        };
        let tu = self.tokens[idx].as_ref()?;
        tu.pops.iter().all(|&q| tok0[q as usize] > 0).then_some(idx)
    }

    /// The store at the store queue's head, if it may start ahead in cycle `t` behind running
    /// store `a` (`dram.store_ahead`, docs/timing.md "Stores ahead"): `a` has sent its last
    /// beat before `t` and waits for its acknowledgement, no older store still waits
    /// (`drain_idle` at the start of `t`), and the head is a store of at least one line that
    /// was visible with its tokens there at the start of `t` (a store of none would end, and
    /// retire, before the older one).
    fn store_ahead_head(
        &self,
        a: &Active,
        t: u64,
        tok0: &[u32; 4],
        drain_idle: bool,
    ) -> Option<usize> {
        if !drain_idle || !self.arch.dram.store_ahead {
            return None;
        }
        let Exec::Store(s) = &a.exec else {
            return None;
        };
        if s.ahead_cycle(t)? > t {
            return None;
        }
        let idx = self.ctrl.head(2, t)?;
        let Op::Store(st) = &self.code[idx].op else {
            return None;
        };
        if st.rows * st.cols == 0 {
            return None;
        }
        let tu = self.tokens[idx].as_ref()?;
        tu.pops.iter().all(|&q| tok0[q as usize] > 0).then_some(idx)
    }

    /// The cycles in which a chain may start overlapped behind running instruction `a`
    /// (`Array::overlap_window`, from `a`'s start), when the arch overlaps chains.
    fn overlap_window(&self, a: &Active) -> Option<std::ops::Range<u64>> {
        match &self.code[a.idx].op {
            Op::MatMul(mm) if self.arch.array.chain_overlap => {
                let w = self.array.overlap_window(mm)?;
                Some(a.start + w.start..a.start + w.end)
            }
            _ => None,
        }
    }

    /// The chain at the compute queue's head, if it may start in cycle `t` while `a` drains
    /// (docs/timing.md "Overlapped chains"): `t` lies in `a`'s overlap window, nothing else
    /// drains (`drain_idle` at the start of `t`), the head was visible and its tokens were
    /// there at the start of `t`, and `MatMul::may_follow_overlapped`.
    fn overlap_head(&self, a: &Active, t: u64, tok0: &[u32; 4], drain_idle: bool) -> Option<usize> {
        if !drain_idle || !self.overlap_window(a)?.contains(&t) {
            return None;
        }
        let Op::MatMul(prev) = &self.code[a.idx].op else {
            return None;
        };
        let idx = self.ctrl.head(1, t)?;
        let Op::MatMul(next) = &self.code[idx].op else {
            return None;
        };
        let tu = self.tokens[idx].as_ref()?;
        (prev.may_follow_overlapped(next) && tu.pops.iter().all(|&q| tok0[q as usize] > 0))
            .then_some(idx)
    }

    /// Steps one unit; returns whether anything changed.
    fn step_unit(
        &mut self,
        u: usize,
        t: u64,
        tok0: &[u32; 4],
        delta: &mut [i32; 4],
        d0: DrainState,
    ) -> Result<bool, EmuError> {
        // A unit retires in order: nothing while its drained instruction waits to push.
        let held = d0.retiring(u);
        // A load ahead writes once the older load has stopped writing.
        let mode = CycleMode {
            held,
            writer_waits: u == 0 && d0.busy(0),
        };
        match std::mem::replace(&mut self.slots[u], Slot::Idle) {
            Slot::Retiring { idx, pushes } => {
                if !held && self.try_push(&pushes, tok0, delta) {
                    Ok(true)
                } else {
                    self.unit_stats[u].push_stall_cycles += 1;
                    self.slots[u] = Slot::Retiring { idx, pushes };
                    Ok(false)
                }
            }
            Slot::Busy(active) => {
                let next = match u {
                    0 => self.ahead_head(&active, t, tok0, d0.idle(0)),
                    1 => self.overlap_head(&active, t, tok0, d0.idle(1)),
                    _ => self.store_ahead_head(&active, t, tok0, d0.idle(2)),
                };
                if let Some(idx) = next {
                    // The running instruction moves to the drain slot and the next one starts.
                    let older = self.exec_cycle(u, active, t, tok0, delta, CycleMode::default())?;
                    self.drain[u] = older;
                    self.unit_stats[u].overlapped += 1;
                    self.start_head(u, idx, t, tok0, delta, u == 0)?;
                } else {
                    self.unit_stats[u].busy_cycles += 1;
                    self.slots[u] = self.exec_cycle(u, active, t, tok0, delta, mode)?;
                }
                Ok(true)
            }
            Slot::Idle => {
                let Some(idx) = self.ctrl.head(u, t) else {
                    self.unit_stats[u].idle_cycles += 1;
                    return Ok(false);
                };
                let Some(tu) = &self.tokens[idx] else {
                    let insn = self.code[idx];
                    let m = token_use(insn.unit(), insn.deps).expect_err("decoded as illegal");
                    return Err(self.err(ErrorKind::IllegalDeps, idx, m));
                };
                if !tu.pops.iter().all(|&q| tok0[q as usize] > 0) {
                    self.unit_stats[u].token_stall_cycles += 1;
                    return Ok(false);
                }
                self.start_head(u, idx, t, tok0, delta, false)?;
                Ok(true)
            }
        }
    }

    /// Pops the queue head `idx` and its tokens and runs its first cycle (`ahead`: a load
    /// started ahead, which only issues requests in it).
    fn start_head(
        &mut self,
        u: usize,
        idx: usize,
        t: u64,
        tok0: &[u32; 4],
        delta: &mut [i32; 4],
        ahead: bool,
    ) -> Result<(), EmuError> {
        let tu = self.tokens[idx].as_ref().expect("checked by the caller");
        for &q in &tu.pops {
            delta[q as usize] -= 1;
        }
        let pushes = tu.pushes.clone();
        self.ctrl.queues[u].pop_front();
        let active = self.start(u, idx, t, pushes)?;
        self.unit_stats[u].busy_cycles += 1;
        let mode = CycleMode {
            held: false,
            writer_waits: ahead,
        };
        self.slots[u] = self.exec_cycle(u, Box::new(active), t, tok0, delta, mode)?;
        Ok(())
    }

    /// Executes cycle `t` of a unit's active instruction; returns the unit's slot after it:
    /// still busy, idle (retired, its tokens pushed) or retiring (no room for its tokens, or
    /// `mode.held`: an older instruction of the unit has not pushed yet).
    fn exec_cycle(
        &mut self,
        u: usize,
        mut a: Box<Active>,
        t: u64,
        tok0: &[u32; 4],
        delta: &mut [i32; 4],
        mode: CycleMode,
    ) -> Result<Slot, EmuError> {
        let st = &mut self.unit_stats[u];
        let step = match &mut a.exec {
            Exec::Fixed { cycles } => {
                let o = t - a.start;
                let bufs = &mut self.bufs;
                fixed_access(
                    &self.arch,
                    &self.array,
                    &self.code[a.idx].op,
                    o,
                    |k, line, w| {
                        let ok = bufs.claim(k, line, w, t);
                        debug_assert!(ok, "compute unit lost a port");
                    },
                );
                Step {
                    done: o + 1 == *cycles,
                    port_stall: false,
                }
            }
            Exec::Load(l) if mode.writer_waits => {
                l.issue(t);
                Step {
                    done: false,
                    port_stall: false,
                }
            }
            Exec::Load(l) => l.step(t, &mut self.bufs),
            Exec::Store(s) => s.step(t, &mut self.bufs),
        };
        if step.port_stall {
            st.port_stall_cycles += 1;
        }
        if !step.done {
            return Ok(Slot::Busy(a));
        }
        if let Some(spans) = &mut self.spans {
            spans.push(Span {
                track: u,
                insn: a.idx,
                name: self.code[a.idx].op.mnemonic().to_string(),
                start: a.start,
                end: t,
            });
        }
        self.recent[u] = Some((t, a.idx, std::mem::take(&mut a.footprint)));
        if !mode.held && self.try_push(&a.pushes, tok0, delta) {
            Ok(Slot::Idle)
        } else {
            Ok(Slot::Retiring {
                idx: a.idx,
                pushes: a.pushes,
            })
        }
    }

    /// Pushes `pushes` if every target queue had room at the start of the cycle (`tok0`);
    /// returns whether it did.
    fn try_push(&self, pushes: &[TokenQueue], tok0: &[u32; 4], delta: &mut [i32; 4]) -> bool {
        let room = pushes
            .iter()
            .all(|&q| tok0[q as usize] < self.ctrl.token_depth);
        if room {
            for &q in pushes {
                delta[q as usize] += 1;
            }
        }
        room
    }

    fn step_controller(
        &mut self,
        t: u64,
        qlen0: &[usize; 3],
        idle0: &[bool; 3],
    ) -> Result<bool, EmuError> {
        let pc = self.ctrl.pc;
        let Some(insn) = self.code.get(pc).copied() else {
            let last = self.code.len().checked_sub(1);
            let msg = match last {
                Some(l) => format!(
                    "fetch ran past the last instruction ({l}): the program has no `finish`"
                ),
                None => "the program has no instructions (not even `finish`)".to_string(),
            };
            let mut e = EmuError::new(ErrorKind::MissingFinish, msg);
            e.cycle = t;
            return Err(e);
        };
        let unit = insn.unit();
        match Controller::queue_of(unit) {
            None => {
                if !insn.deps.is_empty() {
                    return Err(self.err(
                        ErrorKind::IllegalDeps,
                        pc,
                        "`finish` takes no dependency flags",
                    ));
                }
                if qlen0.iter().all(|&l| l == 0) && idle0.iter().all(|&i| i) {
                    self.finish_cycle = Some(t);
                    if let Some(spans) = &mut self.spans {
                        spans.push(Span {
                            track: 3,
                            insn: pc,
                            name: "finish".into(),
                            start: t,
                            end: t,
                        });
                    }
                    return Ok(true);
                }
                Ok(false)
            }
            Some(q) => {
                if qlen0[q] >= self.ctrl.queue_depth {
                    self.ctrl.dispatch_stalls[q] += 1;
                    return Ok(false);
                }
                // Flags are checked at dispatch so the error points at the fetch, not a stall.
                if self.tokens[pc].is_none() {
                    let m = token_use(unit, insn.deps).expect_err("decoded as illegal");
                    return Err(self.err(ErrorKind::IllegalDeps, pc, m));
                }
                self.ctrl.queues[q].push_back((pc, t + 1));
                self.ctrl.pc += 1;
                self.ctrl.dispatched += 1;
                Ok(true)
            }
        }
    }

    fn deadlock_error(&self) -> EmuError {
        let mut waits = Vec::new();
        let mut first: Option<usize> = None;
        let mut note = |idx: usize, s: String, waits: &mut Vec<String>| {
            first = Some(first.map_or(idx, |f| f.min(idx)));
            waits.push(s);
        };
        // The drained instructions waiting to push, by unit (the drain slots are listed after
        // the three unit slots).
        let drained = self.drain.each_ref().map(|d| match d {
            Slot::Retiring { idx, .. } => Some(*idx),
            _ => None,
        });
        let names = ["load", "compute", "store"];
        for (u, slot, unit, is_drain) in names
            .iter()
            .enumerate()
            .map(|(u, n)| (u, &self.slots[u], n, false))
            .chain((0..3).map(|u| (u, &self.drain[u], &names[u], true)))
        {
            // In-order retirement: a unit's newer instruction waits for the drained one.
            let behind = drained.get(u).copied().flatten().filter(|_| !is_drain);
            match (slot, behind) {
                (Slot::Retiring { idx, .. }, Some(d)) => {
                    note(
                        *idx,
                        format!(
                            "instruction {idx} ({}) on {unit} waits for instruction {d} before it to push first",
                            self.code[*idx].op.mnemonic(),
                        ),
                        &mut waits,
                    );
                }
                (Slot::Retiring { idx, pushes }, None) => {
                    let qs: Vec<_> = pushes.iter().map(|q| q.describe()).collect();
                    note(
                        *idx,
                        format!(
                            "instruction {idx} ({}) on {unit} waits for room in the {} token queue",
                            self.code[*idx].op.mnemonic(),
                            qs.join(" and ")
                        ),
                        &mut waits,
                    );
                }
                (Slot::Idle, _) if !is_drain => {
                    if let Some(idx) = self.ctrl.head(u, self.cycle) {
                        let insn = &self.code[idx];
                        let tu = token_use(insn.unit(), insn.deps).unwrap_or_default();
                        let missing: Vec<_> = tu
                            .pops
                            .iter()
                            .filter(|&&q| self.ctrl.tokens[q as usize] == 0)
                            .map(|q| q.describe())
                            .collect();
                        note(idx, format!("instruction {idx} ({}) on {unit} waits for a {} token that nothing will send", insn.op.mnemonic(), missing.join(" and ")), &mut waits);
                    }
                }
                (Slot::Idle | Slot::Busy(_), _) => {}
            }
        }
        let pc = self.ctrl.pc;
        if let Some(insn) = self.code.get(pc) {
            match Controller::queue_of(insn.unit()) {
                Some(q) if self.ctrl.queues[q].len() >= self.ctrl.queue_depth => {
                    note(
                        pc,
                        format!(
                            "fetch of instruction {pc} ({}) waits for room in the full {} queue",
                            insn.op.mnemonic(),
                            insn.unit()
                        ),
                        &mut waits,
                    );
                }
                _ => {}
            }
        }
        let mut e = EmuError::new(
            ErrorKind::Deadlock,
            format!("deadlock: {}", waits.join("; ")),
        );
        e.cycle = self.cycle;
        if let Some(i) = first {
            e.insn = Some(i);
            e.mnemonic = Some(self.code[i].op.mnemonic());
        }
        e
    }

    /// The `requant` a `store requant=1` performs: its mode from the instruction, the zero
    /// point and clamps from lanes 0..3 of its settings line `param`, the multipliers and
    /// shifts from the two lines after it.
    fn store_requant_op(&self, op: &Store) -> Result<Requant, String> {
        let line = op.param;
        let lanes = &self.bufs.acc[line as usize * self.bufs.cols..][..3];
        let (zp, lo, hi) = (lanes[0], lanes[1], lanes[2]);
        if !(-32768..=32767).contains(&zp) {
            return Err(format!(
                "zero point {zp} in lane 0 of accumulator line {line} is outside -32768..=32767"
            ));
        }
        for (lane, v) in [(1, lo), (2, hi)] {
            if !(0..=255).contains(&v) {
                return Err(format!(
                    "clamp {v} in lane {lane} of accumulator line {line} is outside 0..=255"
                ));
            }
        }
        Ok(Requant {
            param: op.param + 1,
            m: op.rows * op.cols,
            zp,
            lo: lo as u32,
            hi: hi as u32,
            unsigned: op.unsigned,
            round: op.round,
            fp32: op.fp32,
            ..Default::default()
        })
    }

    /// `requant fp32=1` and `store requant=1 fp32=1` run on the binary32 lanes, which an arch
    /// may leave out.
    fn check_fp32_lanes(&self, idx: usize, fp32: bool) -> Result<(), EmuError> {
        if !fp32 || self.arch.ppu.fp32_requant {
            return Ok(());
        }
        Err(self.err(
            ErrorKind::IllegalOperands,
            idx,
            format!(
                "fp32=1: arch '{}' has no binary32 requantizer (ppu.fp32_requant = false)",
                self.arch.name
            ),
        ))
    }

    /// `alu` and integer `requant` run on the integer PPU lanes, which an arch may leave out.
    fn check_integer_lanes(&self, idx: usize, what: &str) -> Result<(), EmuError> {
        if self.arch.ppu.integer_lanes {
            return Ok(());
        }
        Err(self.err(
            ErrorKind::IllegalOperands,
            idx,
            format!(
                "{what}: arch '{}' has no integer PPU lanes (ppu.integer_lanes = false)",
                self.arch.name
            ),
        ))
    }

    fn check_lines(
        &self,
        idx: usize,
        kind: BufferKind,
        lo: u64,
        n: u64,
        what: &str,
    ) -> Result<Access, EmuError> {
        let cap = self.bufs.lines(kind) as u64;
        if lo + n > cap {
            return Err(self.err(
                ErrorKind::OutOfRange,
                idx,
                format!(
                    "{what} lines {lo}..{} exceed the {} buffer ({cap} lines)",
                    lo + n,
                    kind.name()
                ),
            ));
        }
        Ok(Access {
            res: kind.index() as u8,
            lo,
            hi: lo + n,
            write: false,
        })
    }

    fn check_dram(
        &self,
        idx: usize,
        base: u64,
        rows: u64,
        stride: u64,
        row_bytes: u64,
    ) -> Result<Access, EmuError> {
        if rows == 0 || row_bytes == 0 {
            return Ok(Access {
                res: DRAM_RES,
                lo: base,
                hi: base,
                write: false,
            });
        }
        let end = base + (rows - 1) * stride + row_bytes;
        if end > self.dram.len() {
            return Err(self.err(
                ErrorKind::OutOfRange,
                idx,
                format!(
                    "DRAM bytes {base:#x}..{end:#x} exceed the program's {} bytes of DRAM",
                    self.dram.len()
                ),
            ));
        }
        Ok(Access {
            res: DRAM_RES,
            lo: base,
            hi: end,
            write: false,
        })
    }

    /// Starts instruction `idx` on unit `u` in cycle `t`: checks operands and races, applies
    /// its effect on data, and returns its execution state.
    fn start(
        &mut self,
        u: usize,
        idx: usize,
        t: u64,
        pushes: Vec<TokenQueue>,
    ) -> Result<Active, EmuError> {
        let insn = self.code[idx];
        let (rows, cols) = (self.arch.array.rows, self.arch.array.cols);
        let beat = self.arch.dram.bytes_per_cycle;
        let lat = self.arch.dram.latency_cycles;
        let w = |mut a: Access| {
            a.write = true;
            a
        };
        let (footprint, exec) = match &insn.op {
            Op::Load(op) => {
                let kind = dma::load_kind(op.buf);
                let width = (op.pad_left + op.cols + op.pad_right) as u64;
                let total = width * (op.pad_top + op.rows + op.pad_bottom) as u64;
                let dline = dma::load_dram_line_bytes(op.buf, rows, cols) as u64;
                let fb = w(self.check_lines(idx, kind, op.sram as u64, total, "destination")?);
                let fd = self.check_dram(
                    idx,
                    op.dram as u64,
                    op.rows as u64,
                    op.stride as u64,
                    op.cols as u64 * dline,
                )?;
                (
                    vec![fb, fd],
                    Exec::Load(LoadExec::new(op, beat, lat, rows, cols)),
                )
            }
            Op::Store(op) => {
                let kind = dma::store_kind(op.buf);
                if op.pack && op.buf != StoreBuf::Out {
                    return Err(self.err(
                        ErrorKind::IllegalOperands,
                        idx,
                        "pack=1 needs buf=out (it packs bipolar output bytes)",
                    ));
                }
                if op.pack && !self.arch.supports(Precision::Binary) {
                    return Err(self.no_binary(idx, "pack=1"));
                }
                let mut fs = Vec::new();
                if op.requant {
                    if op.buf != StoreBuf::Acc {
                        return Err(self.err(
                            ErrorKind::IllegalOperands,
                            idx,
                            "requant=1 needs buf=acc (it requantizes accumulator lines)",
                        ));
                    }
                    if !self.arch.ppu.store_requant {
                        return Err(self.err(
                            ErrorKind::IllegalOperands,
                            idx,
                            format!(
                                "requant=1: arch '{}' has no requantizer in its store engine \
                                 (ppu.store_requant = false)",
                                self.arch.name
                            ),
                        ));
                    }
                    self.check_fp32_lanes(idx, op.fp32)?;
                    fs.push(self.check_lines(
                        idx,
                        BufferKind::Accumulator,
                        op.param as u64,
                        dma::STORE_REQUANT_PARAM_LINES as u64,
                        "parameter",
                    )?);
                } else if op.param != 0 || op.unsigned || op.fp32 || op.round != Round::HalfEven {
                    return Err(self.err(
                        ErrorKind::IllegalOperands,
                        idx,
                        "param, unsigned, round and fp32 belong to requant=1 (leave them 0)",
                    ));
                }
                let dline = dma::store_dram_line_bytes(op, cols, self.arch.array.xnor_bits) as u64;
                let fb = self.check_lines(
                    idx,
                    kind,
                    op.sram as u64,
                    op.rows as u64 * op.cols as u64,
                    "source",
                )?;
                let fd = w(self.check_dram(
                    idx,
                    op.dram as u64,
                    op.rows as u64,
                    op.stride as u64,
                    op.cols as u64 * dline,
                )?);
                fs.extend([fb, fd]);
                (
                    fs,
                    Exec::Store(StoreExec::new(
                        op,
                        beat,
                        lat,
                        cols,
                        self.arch.array.xnor_bits,
                    )),
                )
            }
            Op::LoadWeights(op) => {
                let f = self.check_lines(
                    idx,
                    BufferKind::Weight,
                    op.wgt as u64,
                    rows as u64,
                    "weight tile",
                )?;
                (
                    vec![f],
                    Exec::Fixed {
                        cycles: self.array.ldw_cycles(),
                    },
                )
            }
            Op::MatMul(op) => {
                if op.binary && !self.arch.supports(Precision::Binary) {
                    return Err(self.no_binary(idx, "binary=1"));
                }
                if (op.row != 0 || op.bias) && !self.arch.array.input_walker {
                    return Err(self.err(
                        ErrorKind::IllegalOperands,
                        idx,
                        format!(
                            "matmul row={} bias={}: arch '{}' has no input walker \
                             (array.input_walker = false)",
                            op.row, op.bias as u8, self.arch.name
                        ),
                    ));
                }
                if op.adds_bias() && op.m > 0 && op.acc == 0 {
                    return Err(self.err(
                        ErrorKind::OutOfRange,
                        idx,
                        "matmul bias=1 reads the bias row acc - 1, but acc = 0",
                    ));
                }
                // (With a bias row, the footprint starts at it.)
                let b = (op.adds_bias() && op.m > 0) as u64;
                let fa = w(self.check_lines(
                    idx,
                    BufferKind::Accumulator,
                    op.acc as u64 - b,
                    op.m as u64 + b,
                    "accumulator",
                )?);
                let mut fp = vec![fa];
                if op.is_chain() {
                    self.check_chain(idx, op)?;
                    let tiles = op.tiles();
                    // The input lines of a group's tiles lie between its first tile's first
                    // line and its last tile's end (the steps are non-negative); a group's
                    // span, not the whole chain's, so that the lines between groups (a
                    // convolution's other phases) stay free for loads.
                    let per_group = tiles / op.groups.max(1);
                    for g in 0..op.groups.max(1) {
                        let first = op.tile_inp(g * per_group);
                        let last = op.tile_inp(g * per_group + per_group - 1) + op.stream_span();
                        fp.push(self.check_lines(
                            idx,
                            BufferKind::Input,
                            first,
                            last - first,
                            "chain input",
                        )?);
                    }
                    fp.push(self.check_lines(
                        idx,
                        BufferKind::Weight,
                        op.wgt as u64,
                        tiles as u64 * rows as u64,
                        "chain weight tiles",
                    )?);
                } else {
                    fp.push(self.check_lines(
                        idx,
                        BufferKind::Input,
                        op.inp as u64,
                        op.stream_span(),
                        "input",
                    )?);
                }
                (
                    fp,
                    Exec::Fixed {
                        cycles: self.array.matmul_cycles(op),
                    },
                )
            }
            Op::Alu(op) => {
                self.check_integer_lanes(idx, "alu")?;
                let m = op.m as u64;
                let fd = w(self.check_lines(
                    idx,
                    BufferKind::Accumulator,
                    op.dst as u64,
                    m,
                    "destination",
                )?);
                let mut fp = vec![fd];
                for (name, base, stride) in [("a", op.a, op.a_stride), ("b", op.b, op.b_stride)] {
                    let span = if m == 0 {
                        0
                    } else {
                        (m - 1) * stride as u64 + 1
                    };
                    fp.push(self.check_lines(
                        idx,
                        BufferKind::Accumulator,
                        base as u64,
                        span,
                        &format!("operand {name}"),
                    )?);
                    // A line read by row j and written by another row i would see the
                    // pipeline's timing, not program order: refuse it.
                    for j in 0..m {
                        let line = base as u64 + j * stride as u64;
                        if line >= op.dst as u64
                            && line < op.dst as u64 + m
                            && line - op.dst as u64 != j
                        {
                            return Err(self.err(
                                ErrorKind::IllegalOperands,
                                idx,
                                format!(
                                    "operand {name} line {line} is read by row {j} but written by row {}: source and destination ranges must be identical or disjoint",
                                    line - op.dst as u64
                                ),
                            ));
                        }
                    }
                }
                (
                    fp,
                    Exec::Fixed {
                        cycles: Ppu::alu_cycles(op),
                    },
                )
            }
            Op::Requant(op) => {
                self.check_integer_lanes(idx, "requant")?;
                let m = op.m as u64;
                self.check_fp32_lanes(idx, op.fp32)?;
                let fs =
                    self.check_lines(idx, BufferKind::Accumulator, op.src as u64, m, "source")?;
                let fp = self.check_lines(
                    idx,
                    BufferKind::Accumulator,
                    op.param as u64,
                    2,
                    "parameter",
                )?;
                let fd = w(self.check_lines(
                    idx,
                    BufferKind::Output,
                    op.dst as u64,
                    m,
                    "destination",
                )?);
                (
                    vec![fs, fp, fd],
                    Exec::Fixed {
                        cycles: Ppu::requant_cycles(op),
                    },
                )
            }
            Op::Thresh(op) => {
                let m = op.m as u64;
                if op.count > self.arch.ppu.max_thresholds {
                    return Err(self.err(
                        ErrorKind::IllegalOperands,
                        idx,
                        format!(
                            "{} thresholds; arch '{}' holds at most {} (ppu.max_thresholds)",
                            op.count, self.arch.name, self.arch.ppu.max_thresholds
                        ),
                    ));
                }
                let fs =
                    self.check_lines(idx, BufferKind::Accumulator, op.src as u64, m, "source")?;
                let ft = self.check_lines(
                    idx,
                    BufferKind::Accumulator,
                    op.thr as u64,
                    op.count as u64,
                    "threshold",
                )?;
                let fd = w(self.check_lines(
                    idx,
                    BufferKind::Output,
                    op.dst as u64,
                    m,
                    "destination",
                )?);
                (
                    vec![fs, ft, fd],
                    Exec::Fixed {
                        cycles: Ppu::thresh_cycles(op, self.arch.ppu.threshold_stages()),
                    },
                )
            }
            Op::Nop(_) => (vec![], Exec::Fixed { cycles: 1 }),
            Op::Finish(_) => unreachable!("finish is not queued"),
        };
        self.check_races(u, idx, t, &footprint)?;
        if self.snapshot_at.get(self.snapshots.len()) == Some(&idx) {
            let s = self.stats();
            self.snapshots.push((idx, s));
        }
        self.apply(idx)?;
        self.unit_stats[u].instructions += 1;
        let ports = match &exec {
            Exec::Fixed { .. } => {
                let b = |k, w| port_bit(&self.arch, k, w);
                use BufferKind::*;
                match &insn.op {
                    Op::LoadWeights(_) => b(Weight, false),
                    Op::MatMul(mm) => {
                        b(Input, false)
                            | b(Accumulator, false)
                            | b(Accumulator, true)
                            | if mm.is_chain() { b(Weight, false) } else { 0 }
                    }
                    Op::Alu(_) => b(Accumulator, false) | b(Accumulator, true),
                    Op::Requant(_) | Op::Thresh(_) => b(Accumulator, false) | b(Output, true),
                    _ => 0,
                }
            }
            Exec::Load(l) => port_bit(&self.arch, l.kind(), true),
            Exec::Store(s) => port_bit(&self.arch, s.kind(), false),
        };
        Ok(Active {
            idx,
            start: t,
            exec,
            pushes,
            footprint,
            ports,
        })
    }

    fn check_races(&self, u: usize, idx: usize, t: u64, fp: &[Access]) -> Result<(), EmuError> {
        for v in 0..3 {
            if v == u {
                continue;
            }
            fn busy(s: &Slot) -> Option<(usize, &[Access])> {
                match s {
                    Slot::Busy(a) => Some((a.idx, &a.footprint[..])),
                    _ => None,
                }
            }
            let recent = match &self.recent[v] {
                Some((end, i, f)) if *end >= t => Some((*i, &f[..])),
                _ => None,
            };
            let drain = self.drain.get(v).and_then(busy);
            for (oi, ofp) in [busy(&self.slots[v]), drain, recent].into_iter().flatten() {
                self.check_race_pair(idx, fp, oi, ofp)?;
            }
        }
        Ok(())
    }

    fn check_race_pair(
        &self,
        idx: usize,
        fp: &[Access],
        oi: usize,
        ofp: &[Access],
    ) -> Result<(), EmuError> {
        for a in fp {
            for b in ofp {
                if a.res == b.res
                    && (a.write || b.write)
                    && a.lo < b.hi
                    && b.lo < a.hi
                    && a.lo < a.hi
                    && b.lo < b.hi
                {
                    let lo = a.lo.max(b.lo);
                    let hi = a.hi.min(b.hi);
                    return Err(self.err(
                            ErrorKind::Race,
                            idx,
                            format!(
                                "{} {lo}..{hi} are {} while instruction {oi} ({}) still {} them: a dependency token is missing",
                                res_name(a.res),
                                if a.write { "written" } else { "read" },
                                self.code[oi].op.mnemonic(),
                                if b.write { "writes" } else { "reads" },
                            ),
                        ));
                }
            }
        }
        Ok(())
    }

    /// The data effect of an instruction (operands already checked).
    fn apply(&mut self, idx: usize) -> Result<(), EmuError> {
        let (rows, cols) = (self.arch.array.rows as usize, self.arch.array.cols as usize);
        match self.code[idx].op {
            Op::Load(op) => {
                let width = (op.pad_left + op.cols + op.pad_right) as usize;
                let height = (op.pad_top + op.rows + op.pad_bottom) as usize;
                let dline = dma::load_dram_line_bytes(op.buf, rows as u32, cols as u32) as usize;
                let lanes = match op.buf {
                    LoadBuf::Inp => rows,
                    _ => cols,
                };
                let (pl, dc) = (op.pad_left as usize, op.cols as usize);
                let dram = &self.dram.bytes;
                let no_pad = op.pad_top + op.pad_bottom + op.pad_left + op.pad_right == 0;
                if no_pad && matches!(op.buf, LoadBuf::Inp | LoadBuf::Wgt) {
                    // The common case, kept tight: DRAM row dr fills lines dr * cols.. .
                    let dst = if op.buf == LoadBuf::Inp {
                        &mut self.bufs.inp
                    } else {
                        &mut self.bufs.wgt
                    };
                    let n = dc * lanes;
                    let (mut s, mut d) = (op.dram as usize, op.sram as usize * lanes);
                    for _ in 0..op.rows {
                        for (x, &b) in dst[d..d + n].iter_mut().zip(&dram[s..s + n]) {
                            *x = b as i8;
                        }
                        s += op.stride as usize;
                        d += n;
                    }
                    self.dram.bytes_read += op.rows as u64 * op.cols as u64 * dline as u64;
                    return Ok(());
                }
                // One grid row at a time: left padding, the data lines (one DRAM row, its
                // lines contiguous), right padding.
                for r in 0..height {
                    let first = op.sram as usize + r * width;
                    let src = r
                        .checked_sub(op.pad_top as usize)
                        .filter(|&x| x < op.rows as usize)
                        .map(|dr| op.dram as usize + dr * op.stride as usize);
                    let data = match src {
                        Some(_) => pl..pl + dc,
                        None => 0..0,
                    };
                    match op.buf {
                        LoadBuf::Inp | LoadBuf::Wgt => {
                            let dst = if op.buf == LoadBuf::Inp {
                                &mut self.bufs.inp
                            } else {
                                &mut self.bufs.wgt
                            };
                            let row = &mut dst[first * lanes..][..width * lanes];
                            let pad = op.pad_value as i8;
                            let (lo, hi) = (data.start * lanes, data.end.max(data.start) * lanes);
                            if lo > 0 {
                                row[..lo].fill(pad);
                            }
                            if let Some(s) = src {
                                row[lo..hi]
                                    .iter_mut()
                                    .zip(&dram[s..s + dc * lanes])
                                    .for_each(|(x, &b)| *x = b as i8);
                            }
                            if hi < row.len() {
                                row[hi..].fill(pad);
                            }
                        }
                        LoadBuf::Acc | LoadBuf::Acc8 => {
                            let row = &mut self.bufs.acc[first * cols..][..width * cols];
                            row[..data.start * cols].fill(op.pad_value);
                            if let Some(s) = src {
                                let d = &mut row[data.start * cols..data.end * cols];
                                if op.buf == LoadBuf::Acc {
                                    d.iter_mut()
                                        .zip(dram[s..s + 4 * dc * cols].chunks_exact(4))
                                        .for_each(|(x, b)| {
                                            *x = i32::from_le_bytes(b.try_into().unwrap())
                                        });
                                } else {
                                    d.iter_mut()
                                        .zip(&dram[s..s + dc * cols])
                                        .for_each(|(x, &b)| *x = b as i8 as i32);
                                }
                            }
                            row[data.end.max(data.start) * cols..].fill(op.pad_value);
                        }
                    }
                }
                self.dram.bytes_read += op.rows as u64 * op.cols as u64 * dline as u64;
            }
            Op::Store(op) if op.requant && op.rows * op.cols > 0 => {
                let rq = self
                    .store_requant_op(&op)
                    .map_err(|m| self.err(ErrorKind::IllegalValue, idx, m))?;
                // The rows x cols source lines are consecutive: requantized in one pass.
                let n = op.rows as u64 * op.cols as u64;
                let p = (op.param as usize + 1) * cols;
                let params = &self.bufs.acc[p..p + 2 * cols];
                let src = &self.bufs.acc[op.sram as usize * cols..][..n as usize * cols];
                let mut bytes = vec![0u8; n as usize * cols];
                ppu::requant_lines(&rq, params, src, &mut bytes, cols)
                    .map_err(|m| self.err(ErrorKind::IllegalValue, idx, m))?;
                let row_bytes = op.cols as usize * cols;
                for (r, row) in bytes.chunks_exact(row_bytes).enumerate() {
                    let d = op.dram as usize + r * op.stride as usize;
                    self.dram.bytes[d..d + row_bytes].copy_from_slice(row);
                }
                self.ppu.requant_lane_ops += n * cols as u64;
                self.dram.bytes_written += n * cols as u64;
            }
            Op::Store(op) => {
                let xb = self.arch.array.xnor_bits;
                let dline = dma::store_dram_line_bytes(&op, cols as u32, xb) as usize;
                for r in 0..op.rows as usize {
                    for c in 0..op.cols as usize {
                        let line = op.sram as usize + r * op.cols as usize + c;
                        let d = op.dram as usize + r * op.stride as usize + c * dline;
                        match op.buf {
                            StoreBuf::Out if op.pack => self.dram.bytes[d..d + dline]
                                .copy_from_slice(&dma::pack_line(
                                    &self.bufs.out[line * cols..][..cols],
                                    xb,
                                )),
                            StoreBuf::Out => self.dram.bytes[d..d + cols]
                                .copy_from_slice(&self.bufs.out[line * cols..][..cols]),
                            StoreBuf::Acc => {
                                for (l, v) in
                                    self.bufs.acc[line * cols..][..cols].iter().enumerate()
                                {
                                    self.dram.bytes[d + 4 * l..d + 4 * l + 4]
                                        .copy_from_slice(&v.to_le_bytes());
                                }
                            }
                        }
                    }
                }
                self.dram.bytes_written += op.rows as u64 * op.cols as u64 * dline as u64;
            }
            Op::LoadWeights(op) => self.array.load_weights(&op, &self.bufs),
            Op::MatMul(op) => self.array.matmul(&op, &mut self.bufs),
            Op::Alu(op) => self.ppu.alu(&op, &mut self.bufs),
            Op::Requant(op) => self
                .ppu
                .requant(&op, &mut self.bufs)
                .map_err(|m| self.err(ErrorKind::IllegalValue, idx, m))?,
            Op::Thresh(op) => self.ppu.thresh(&op, &mut self.bufs),
            Op::Nop(_) | Op::Finish(_) => {}
        }
        Ok(())
    }

    /// Statistics of the run so far (complete after `run`).
    pub fn stats(&self) -> Stats {
        let cycles = self.finish_cycle.map_or(self.cycle, |f| f + 1);
        let arch = &self.arch;
        let buf = |k: BufferKind| {
            let c = &self.bufs.counters[k.index()];
            let lb = arch.line_bytes(k) as u64;
            BufferStats {
                line_reads: c.line_reads,
                line_writes: c.line_writes,
                bytes_read: c.line_reads * lb,
                bytes_written: c.line_writes * lb,
                conflict_stalls: c.conflict_stalls,
            }
        };
        let peak = arch.peak_macs_per_cycle();
        let mut s = Stats {
            arch: arch.name.clone(),
            clock_mhz: arch.clock_mhz,
            cycles,
            latency_us: cycles as f64 / arch.clock_mhz,
            instructions: self.ctrl.dispatched + self.finish_cycle.is_some() as u64,
            load: self.unit_stats[0],
            compute: self.unit_stats[1],
            store: self.unit_stats[2],
            dispatch_stall_cycles: self.ctrl.dispatch_stalls.iter().sum(),
            macs: self.array.macs,
            xnor_macs: self.array.xnor_macs,
            peak_macs_per_cycle: peak,
            utilization: if cycles == 0 {
                0.0
            } else {
                self.array.macs as f64 / (cycles as f64 * peak as f64)
            },
            dram_bytes_read: self.dram.bytes_read,
            dram_bytes_written: self.dram.bytes_written,
            input_buffer: buf(BufferKind::Input),
            weight_buffer: buf(BufferKind::Weight),
            accumulator_buffer: buf(BufferKind::Accumulator),
            output_buffer: buf(BufferKind::Output),
            alu_lane_ops: self.ppu.alu_lane_ops,
            alu_mul_lane_ops: self.ppu.alu_mul_lane_ops,
            requant_lane_ops: self.ppu.requant_lane_ops,
            thresh_compares: self.ppu.thresh_compares,
            energy: Default::default(),
        };
        s.compute_energy(arch);
        s
    }
}
