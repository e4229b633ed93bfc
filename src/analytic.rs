//! The fast analytic estimator: cycles and event counts of a compiled program without
//! simulating cycles.
//!
//! Every instruction's duration is closed-form (docs/timing.md: `ldw` R, `matmul`
//! m + R + C - 1, `alu`, `requant`, `thresh` from the emulator's own duration functions; a
//! load's DMA beats, latency and padding lines row by row; a store's beats plus latency), and
//! the three units are composed by the controller's rules as a recurrence over the
//! instruction stream rather than a cycle loop:
//!
//! * fetch: one instruction per cycle in program order, stalled while the target unit's queue
//!   holds `queue_depth` instructions not yet started;
//! * start: the cycle after fetch, after the unit's previous instruction, and after the
//!   producer of every token it pops (the n-th pop of a token queue takes the n-th push);
//! * retire: a push into a queue holding `token_depth` tokens waits for the pop that makes
//!   room (the unit starts nothing meanwhile);
//! * overlapped chains (`array.chain_overlap`): a chain behind a chain it may overlap
//!   (`MatMul::may_follow_overlapped`) may start from the earlier one's offset `T p` up to
//!   the cycle before its last, once nothing else drains;
//! * finish: the first cycle after fetch with every unit idle.
//!
//! Reading the compiler's instruction stream (rather than re-deriving `gemm::emit_dense`'s
//! loops) keeps the model in step with the schedule: a new tiling, a different gather or more
//! loads per item change the instructions and so the estimate, with no edit here. What it
//! leaves out is the emulator's buffer port arbitration (a load that loses a bank's write port
//! to the compute unit waits a cycle); `tests/analytic.rs`
//! measures the error this costs against the emulator on every layer of the demo models, the
//! TFC fixtures and ResNet-18.

use anyhow::{bail, Result};
use systole_arch::isa::{Load, Op, Store};
use systole_arch::{ArchConfig, BufferKind, Program};
use systole_emulator::array::Array;
use systole_emulator::controller::token_use;
use systole_emulator::dma::{
    load_dram_line_bytes, load_kind, load_requests, store_dram_line_bytes, store_kind,
    store_line_beats, STORE_REQUANT_PARAM_LINES, STORE_REQUANT_STAGES,
};
use systole_emulator::ppu::Ppu;
use systole_emulator::stats::UnitStats;
use systole_emulator::Stats;

/// Cycles of a load: the writer walks the destination grid one line per cycle at most; a data
/// line is written when its last beat arrives; beats flow one per cycle from `L` after the
/// first request (later requests are issued one per cycle, ahead of their data), and DRAM holds
/// them while the writer is on padding. `ahead`: cycles the requests started before the
/// writer (`dram.load_ahead`), which the first beat's latency no longer waits for.
pub fn load_cycles(op: &Load, arch: &ArchConfig, ahead: u64) -> u64 {
    let beat = arch.dram.bytes_per_cycle as u64;
    let lat = (arch.dram.latency_cycles as u64).saturating_sub(ahead);
    let bpl = load_dram_line_bytes(op.buf, arch.array.rows, arch.array.cols) as u64 / beat;
    let width = (op.pad_left + op.cols + op.pad_right) as u64;
    let total = width * (op.pad_top + op.rows + op.pad_bottom) as u64;
    if total == 0 {
        return 1;
    }
    let mut t = op.pad_top as u64 * width;
    let mut taken = 0u64;
    for _ in 0..op.rows {
        t += op.pad_left as u64;
        if op.cols > 0 {
            t = t.max(lat + taken) + op.cols as u64 * bpl;
            taken += op.cols as u64 * bpl;
        }
        t += op.pad_right as u64;
    }
    t + op.pad_bottom as u64 * width
}

/// Cycles of a store: `n x beats + L + 1` (1 for an empty store), plus the parameter reads
/// and requantizer stages of `requant=1`.
pub fn store_cycles(op: &Store, arch: &ArchConfig) -> u64 {
    let n = op.rows as u64 * op.cols as u64;
    if n == 0 {
        return 1;
    }
    let (c, b, w) = (
        arch.array.cols,
        arch.dram.bytes_per_cycle,
        arch.array.xnor_bits,
    );
    let beats = store_line_beats(op, c, b, w) as u64;
    let rq = if op.requant {
        (STORE_REQUANT_PARAM_LINES + STORE_REQUANT_STAGES) as u64
    } else {
        0
    };
    n * beats + arch.dram.latency_cycles as u64 + 1 + rq
}

/// Event counters accumulated per instruction (what the emulator counts while it runs).
#[derive(Default, Clone)]
struct Counts {
    line_reads: [u64; 4],
    line_writes: [u64; 4],
    dram_read: u64,
    dram_written: u64,
    macs: u64,
    xnor_macs: u64,
    alu: u64,
    alu_mul: u64,
    requant: u64,
    thresh: u64,
    instructions: u64,
    unit: [UnitStats; 3],
}

impl Counts {
    fn add(&mut self, op: &Op, arch: &ArchConfig, cycles: u64) {
        let (r, c) = (arch.array.rows as u64, arch.array.cols as u64);
        let (inp, wgt, acc, out) = (
            BufferKind::Input.index(),
            BufferKind::Weight.index(),
            BufferKind::Accumulator.index(),
            BufferKind::Output.index(),
        );
        match op {
            Op::Load(l) => {
                let k = load_kind(l.buf).index();
                let width = (l.pad_left + l.cols + l.pad_right) as u64;
                self.line_writes[k] += width * (l.pad_top + l.rows + l.pad_bottom) as u64;
                self.dram_read += l.rows as u64
                    * l.cols as u64
                    * load_dram_line_bytes(l.buf, arch.array.rows, arch.array.cols) as u64;
            }
            Op::Store(s) => {
                let n = s.rows as u64 * s.cols as u64;
                self.line_reads[store_kind(s.buf).index()] += n;
                if s.requant && n > 0 {
                    self.line_reads[acc] += STORE_REQUANT_PARAM_LINES as u64;
                    self.requant += n * c;
                }
                self.dram_written +=
                    n * store_dram_line_bytes(s, arch.array.cols, arch.array.xnor_bits) as u64;
            }
            Op::LoadWeights(_) => self.line_reads[wgt] += r,
            Op::MatMul(mm) => {
                // A chain of T tiles: T weight tiles read, T streams of m lines, every tile
                // but an overwriting first one reading the accumulator lines.
                let (tiles, m) = (mm.tiles().max(1) as u64, mm.m as u64);
                let reads = if mm.accumulate || mm.adds_bias() {
                    tiles
                } else {
                    tiles - 1
                };
                if mm.is_chain() && m > 0 {
                    self.line_reads[wgt] += tiles * r;
                }
                self.line_reads[acc] += reads * m;
                let m = tiles * m;
                self.line_reads[inp] += m;
                self.line_writes[acc] += m;
                self.macs += m * r * c;
                if mm.binary {
                    self.xnor_macs += m * r * c;
                }
            }
            Op::Alu(a) => {
                let m = a.m as u64;
                self.line_reads[acc] += if a.b_stride == 0 {
                    m + (m > 0) as u64
                } else {
                    2 * m
                };
                self.line_writes[acc] += m;
                if a.func == systole_arch::isa::AluFunc::Mul {
                    self.alu_mul += m * c;
                } else {
                    self.alu += m * c;
                }
            }
            Op::Requant(q) => {
                let m = q.m as u64;
                if m > 0 {
                    self.line_reads[acc] += 2 + m;
                    self.line_writes[out] += m;
                }
                self.requant += m * c;
            }
            Op::Thresh(th) => {
                let m = th.m as u64;
                if m > 0 {
                    self.line_reads[acc] += th.count as u64 + m;
                    self.line_writes[out] += m;
                }
                // One compare per search stage that can succeed (as `Ppu::thresh` counts).
                self.thresh += m * c * (u32::BITS - th.count.leading_zeros()) as u64;
            }
            Op::Nop(_) | Op::Finish(_) => {}
        }
        if !matches!(op, Op::Finish(_)) {
            self.instructions += 1;
        }
        let u = match op {
            Op::Load(_) => 0,
            Op::Store(_) => 2,
            Op::Nop(n) => match n.unit {
                systole_arch::isa::UnitSel::Load => 0,
                systole_arch::isa::UnitSel::Compute => 1,
                systole_arch::isa::UnitSel::Store => 2,
            },
            Op::Finish(_) => return,
            _ => 1,
        };
        self.unit[u].instructions += 1;
        self.unit[u].busy_cycles += cycles;
    }

    fn stats(&self, arch: &ArchConfig, cycles: u64) -> Stats {
        let buf = |k: BufferKind| {
            let i = k.index();
            let lb = arch.line_bytes(k) as u64;
            systole_emulator::stats::BufferStats {
                line_reads: self.line_reads[i],
                line_writes: self.line_writes[i],
                bytes_read: self.line_reads[i] * lb,
                bytes_written: self.line_writes[i] * lb,
                conflict_stalls: 0,
            }
        };
        let peak = arch.peak_macs_per_cycle();
        let mut s = Stats {
            arch: arch.name.clone(),
            clock_mhz: arch.clock_mhz,
            cycles,
            latency_us: cycles as f64 / arch.clock_mhz,
            instructions: self.instructions,
            load: self.unit[0],
            compute: self.unit[1],
            store: self.unit[2],
            dispatch_stall_cycles: 0,
            macs: self.macs,
            xnor_macs: self.xnor_macs,
            peak_macs_per_cycle: peak,
            utilization: if cycles == 0 {
                0.0
            } else {
                self.macs as f64 / (cycles as f64 * peak as f64)
            },
            dram_bytes_read: self.dram_read,
            dram_bytes_written: self.dram_written,
            input_buffer: buf(BufferKind::Input),
            weight_buffer: buf(BufferKind::Weight),
            accumulator_buffer: buf(BufferKind::Accumulator),
            output_buffer: buf(BufferKind::Output),
            alu_lane_ops: self.alu,
            alu_mul_lane_ops: self.alu_mul,
            requant_lane_ops: self.requant,
            thresh_compares: self.thresh,
            energy: Default::default(),
        };
        s.compute_energy(arch);
        s
    }
}

/// What `systole_emulator::run` returns for timing: the whole run's statistics and a snapshot
/// at the start of every instruction index in `snapshot_at` (ascending).
pub struct AnalyticRun {
    pub stats: Stats,
    pub snapshots: Vec<(usize, Stats)>,
}

/// Estimates `program`'s cycles and events on `arch` (see the module docs).
pub fn run(program: &Program, arch: &ArchConfig, snapshot_at: &[usize]) -> Result<AnalyticRun> {
    let q = arch.controller.queue_depth as usize;
    let arr = Array::new(arch.array.rows as usize, arch.array.cols as usize);
    // Per unit: start cycles of its instructions so far (queue occupancy), next free cycle.
    let mut starts: [Vec<u64>; 3] = Default::default();
    let mut free = [0u64; 3];
    let depth = arch.controller.token_depth as usize;
    // Per token queue: the cycle each push lands (end of the producer, or later when the
    // queue was full), and the cycle of each pop (the consumer's start).
    let mut pushes: [Vec<u64>; 4] = Default::default();
    let mut pops: [Vec<u64>; 4] = Default::default();
    let mut fetch: Option<u64> = None;
    let mut counts = Counts::default();
    let mut snapshots = Vec::with_capacity(snapshot_at.len());
    // The compute unit's last instruction (start, end, duration, the op) and the end of the
    // last one an overlapped chain started behind.
    let mut last_compute: Option<(u64, u64, u64, Op)> = None;
    let mut drain_end = 0u64;
    // The load unit's last load (start, end, writer's first cycle, requests) for loads ahead.
    let mut last_load: Option<(u64, u64, u64, u64)> = None;
    // The store unit's last store (its last cycle before any push wait, its end, the first
    // cycle a store may start ahead of it) and the end of the store it started ahead of.
    let mut last_store: Option<(u64, u64, u64)> = None;
    let mut store_drain_end = 0u64;
    for (idx, insn) in program.code.iter().enumerate() {
        let f = fetch.map_or(0, |x| x + 1);
        let u = match &insn.op {
            Op::Finish(_) => {
                let end = free.iter().copied().max().unwrap_or(0).max(f);
                counts.add(&insn.op, arch, 1);
                return Ok(AnalyticRun {
                    stats: counts.stats(arch, end + 1),
                    snapshots,
                });
            }
            Op::Load(_) => 0,
            Op::Store(_) => 2,
            Op::Nop(n) => match n.unit {
                systole_arch::isa::UnitSel::Load => 0,
                systole_arch::isa::UnitSel::Compute => 1,
                systole_arch::isa::UnitSel::Store => 2,
            },
            _ => 1,
        };
        // Fetch waits for room: the instruction `q` earlier on this unit must have started.
        let n = starts[u].len();
        let f = if n >= q {
            f.max(starts[u][n - q] + 1)
        } else {
            f
        };
        let tu = token_use(insn.unit(), insn.deps)
            .map_err(|m| anyhow::anyhow!("instruction {idx}: {m}"))?;
        let mut s = f + 1;
        for &tq in &tu.pops {
            let k = tq as usize;
            let Some(&at) = pushes[k].get(pops[k].len()) else {
                bail!(
                    "instruction {idx} ({}): pops a {} token no earlier instruction pushes (the analytic model needs producers before consumers in program order)",
                    insn.op.mnemonic(),
                    tq.describe()
                );
            };
            s = s.max(at + 1);
        }
        // (Behind one that did not wait to push: a drain that waits starts nothing.)
        let overlap = match (&insn.op, &last_compute) {
            (Op::MatMul(b), Some((sa, ea, da, Op::MatMul(a))))
                if u == 1
                    && arch.array.chain_overlap
                    && a.may_follow_overlapped(b)
                    && *ea == sa + da - 1 =>
            {
                let w = arr
                    .overlap_window(a)
                    .expect("may_follow_overlapped: a streams");
                let at = s.max(sa + w.start).max(drain_end + 1);
                (at < sa + w.end).then_some((at, *ea))
            }
            _ => None,
        };
        // A load ahead (`dram.load_ahead`) starts once the load before it has issued its
        // requests and its own writer (after the one before it) has begun, up to that load's
        // last cycle; its writer follows that load's.
        let ahead = match (&insn.op, last_load) {
            (Op::Load(_), Some((sa, ea, wa, ra))) if arch.dram.load_ahead => {
                let at = s.max(wa).max(sa + ra.max(1));
                (at <= ea).then_some((at, ea))
            }
            _ => None,
        };
        // A store ahead (`dram.store_ahead`) starts once the store before it has sent its
        // last beat and the one that store started ahead of has retired, up to that store's
        // last cycle.
        let store_ahead = match (&insn.op, last_store) {
            (Op::Store(st), Some((na, ea, aa)))
                if arch.dram.store_ahead && st.rows * st.cols > 0 =>
            {
                let at = s.max(aa).max(store_drain_end + 1);
                (at <= na).then_some((at, ea))
            }
            _ => None,
        };
        s = match (overlap, ahead, store_ahead) {
            (Some((at, ea)), _, _) => {
                drain_end = ea;
                at
            }
            (None, Some((at, _)), _) => at,
            (None, None, Some((at, ea))) => {
                store_drain_end = ea;
                at
            }
            (None, None, None) => s.max(free[u]),
        };
        // The first cycle of a load's writer.
        let w = ahead.map_or(s, |(_, ea)| ea + 1);
        for &tq in &tu.pops {
            pops[tq as usize].push(s);
        }
        let d = match &insn.op {
            Op::Load(l) => load_cycles(l, arch, w - s),
            Op::Store(st) => store_cycles(st, arch),
            Op::LoadWeights(_) => arr.ldw_cycles(),
            Op::MatMul(mm) => arr.matmul_cycles(mm),
            Op::Alu(a) => Ppu::alu_cycles(a),
            Op::Requant(rq) => Ppu::requant_cycles(rq),
            Op::Thresh(th) => Ppu::thresh_cycles(th, arch.ppu.threshold_stages()),
            Op::Nop(_) | Op::Finish(_) => 1,
        };
        if snapshot_at.get(snapshots.len()) == Some(&idx) {
            snapshots.push((idx, counts.stats(arch, s)));
        }
        // A push into a full queue waits (the unit retiring) until a pop makes room: push n
        // needs pop n - depth one cycle earlier. A pop later in program order than the push
        // is not known yet and is taken as no stall.
        let mut e = w + d - 1;
        let natural_end = e;
        if let Some((_, ea)) = store_ahead {
            // Retirement in order: not before the older store has pushed.
            e = e.max(ea + 1);
        }
        for &tq in &tu.pushes {
            let k = tq as usize;
            if let Some(&p) = pushes[k]
                .len()
                .checked_sub(depth)
                .and_then(|i| pops[k].get(i))
            {
                e = e.max(p + 1);
            }
        }
        for &tq in &tu.pushes {
            pushes[tq as usize].push(e);
        }
        counts.add(&insn.op, arch, d);
        if let Some((at, ea)) = overlap {
            // The unit is busy once in the cycles the two share.
            counts.unit[1].busy_cycles -= ea + 1 - at;
            counts.unit[1].overlapped += 1;
        }
        // (Busy cycles stay each load's writer cycles: a load ahead starts inside the span
        // of the one before it.)
        if ahead.is_some() {
            counts.unit[0].overlapped += 1;
        }
        if store_ahead.is_some() {
            counts.unit[2].overlapped += 1;
        }
        if u == 2 {
            let lat = arch.dram.latency_cycles as u64;
            last_store = match &insn.op {
                Op::Store(st) if st.rows * st.cols > 0 => Some((natural_end, e, s + d - lat)),
                _ => None,
            };
        }
        if u == 0 {
            last_load = match &insn.op {
                Op::Load(l) => Some((s, e, w, load_requests(l) as u64)),
                _ => None,
            };
        }
        if u == 1 {
            last_compute = Some((s, e, d, insn.op));
        }
        free[u] = e + 1;
        starts[u].push(s);
        fetch = Some(f);
    }
    bail!("the program has no `finish`")
}

/// The compute unit's busy cycles of `code`, by kind: (`ldw`, `matmul`, post-processing:
/// `alu`, `requant`, `thresh`).
pub fn compute_breakdown(code: &[systole_arch::Insn], arch: &ArchConfig) -> (u64, u64, u64) {
    let arr = Array::new(arch.array.rows as usize, arch.array.cols as usize);
    let (mut ldw, mut mm, mut ppu) = (0, 0, 0);
    for insn in code {
        match &insn.op {
            Op::LoadWeights(_) => ldw += arr.ldw_cycles(),
            Op::MatMul(m) => mm += arr.matmul_cycles(m),
            Op::Alu(a) => ppu += Ppu::alu_cycles(a),
            Op::Requant(r) => ppu += Ppu::requant_cycles(r),
            Op::Thresh(t) => ppu += Ppu::thresh_cycles(t, arch.ppu.threshold_stages()),
            _ => {}
        }
    }
    (ldw, mm, ppu)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A push into a full token queue holds its unit: with room for one token, load's second
    /// push waits for compute's first pop, late behind a long matmul, and load's third
    /// instruction starts only after it. The estimate equals the emulator's cycles (without
    /// the retire rule it is short by the wait).
    #[test]
    fn push_into_a_full_token_queue_waits_for_the_pop() {
        let mut arch = ArchConfig::preset("tiny").unwrap();
        arch.controller.token_depth = 1;
        let mut p = systole_arch::asm::assemble(
            ".arch tiny
             .dram 64
             load rows=6 cols=1 stride=12 push_next
             matmul inp=100 acc=0 m=120
             ldw pop_prev
             load sram=6 rows=6 cols=1 stride=12 push_next
             load sram=12 rows=6 cols=1 stride=12
             ldw pop_prev
             finish",
            "push_stall",
        )
        .unwrap();
        p.fingerprint = arch.fingerprint();
        p.arch_toml = arch.to_toml();
        let emu = systole_emulator::run(&p, &arch, &[], &Default::default()).unwrap();
        assert!(
            emu.stats.load.push_stall_cycles > 90,
            "{:?}",
            emu.stats.load
        );
        let a = run(&p, &arch, &[]).unwrap();
        assert_eq!(a.stats.cycles, emu.stats.cycles);
    }

    /// Stores ahead (`dram.store_ahead`): the model starts a store once the one before it has
    /// sent its last beat and the one before that has retired, and retires them in order;
    /// equal to the emulator's cycles and stores ahead (without the drain rule the third
    /// program comes out 6 cycles short).
    #[test]
    fn stores_ahead_match_the_emulator() {
        let mut arch = ArchConfig::preset("tiny").unwrap();
        arch.dram.store_ahead = true;
        let mut storeq = arch.clone();
        storeq.ppu.store_requant = true;
        for (arch, text) in [
            (
                &arch,
                "store buf=out rows=1 cols=2 stride=8
                 store buf=out sram=2 dram=64 rows=1 cols=3 stride=12",
            ),
            (
                &storeq,
                "store buf=acc sram=0 rows=2 cols=1 stride=4 requant=1 param=100
                 store buf=acc sram=2 dram=64 rows=2 cols=1 stride=4 requant=1 param=100",
            ),
            (
                &arch,
                "store buf=out rows=1 cols=2 stride=8
                 store buf=out sram=2 dram=64 rows=1 cols=1 stride=4
                 store buf=out sram=3 dram=128 rows=1 cols=1 stride=4
                 store buf=out sram=3 dram=128 rows=0 cols=1 stride=4
                 nop unit=store
                 store buf=out sram=4 dram=192 rows=1 cols=1 stride=4",
            ),
        ] {
            let mut p = systole_arch::asm::assemble(
                &format!(".arch tiny\n.dram 256\n{text}\nfinish"),
                "stores_ahead",
            )
            .unwrap();
            p.fingerprint = arch.fingerprint();
            p.arch_toml = arch.to_toml();
            let emu = systole_emulator::run(&p, arch, &[], &Default::default()).unwrap();
            let a = run(&p, arch, &[]).unwrap();
            assert!(emu.stats.store.overlapped > 0, "{text}");
            assert_eq!(
                (a.stats.cycles, a.stats.store.overlapped),
                (emu.stats.cycles, emu.stats.store.overlapped),
                "{text}"
            );
        }
    }
}
