//! Random programs that are valid by construction, for property tests and co-simulation.
//!
//! Every instruction's operands are in range, ALU operands obey the identical-or-disjoint rule,
//! requantization parameters are legal, and every pair of instructions on different units that
//! touch the same memory (one of them writing) is ordered by dependency tokens, carried by
//! `nop`s on the producing unit inserted just before the consumer. Because every dependency
//! points backwards in program order and each token is consumed by the next pop of its queue,
//! such a program never races and never deadlocks, and its result equals executing it one
//! instruction at a time in program order.

use systole_arch::image::{DType, Program, Role, Segment, TensorDesc};
use systole_arch::isa::*;
use systole_arch::{ArchConfig, BufferKind};

/// SplitMix64: small, fast, and the same sequence on every platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in lo..=hi.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.next_u64() as usize % xs.len()]
    }
}

#[derive(Clone, Copy)]
struct Access {
    res: u8,
    lo: u64,
    hi: u64,
    write: bool,
}

const DRAM: u8 = 4;

fn conflicts(a: &[Access], b: &[Access]) -> bool {
    a.iter().any(|x| {
        b.iter()
            .any(|y| x.res == y.res && (x.write || y.write) && x.lo < y.hi && y.lo < x.hi)
    })
}

/// Sizes of the generated DRAM regions (smaller on an arch whose DRAM cannot hold them: each
/// region then takes about two fifths of it, after the parameters).
pub const SRC_BYTES: u64 = 8192;
pub const OUT_BYTES: u64 = 8192;

/// (source bytes, output bytes) for `arch`: SRC_BYTES and OUT_BYTES when its DRAM holds them
/// and the parameter lines (64 x cols bytes at most), else two fifths of the DRAM each, in
/// whole 64-byte blocks.
fn regions(arch: &ArchConfig) -> (u64, u64) {
    let params = 64 * arch.array.cols as u64;
    if arch.dram.size_bytes >= SRC_BYTES + OUT_BYTES + params {
        return (SRC_BYTES, OUT_BYTES);
    }
    let each = (arch.dram.size_bytes.saturating_sub(params) * 2 / 5) / 64 * 64;
    (each, each)
}

struct Gen<'a> {
    arch: &'a ArchConfig,
    rng: Rng,
    code: Vec<Insn>,
    /// (unit index 0..3, footprint) per emitted instruction.
    meta: Vec<(usize, Vec<Access>)>,
    /// synced[v][u]: u has waited for every instruction of v up to this code index.
    synced: [[Option<usize>; 3]; 3],
    out_base: u64,
    src_bytes: u64,
    out_bytes: u64,
    /// The arch has the binary precision: draw binary matmuls and packed stores too.
    binary: bool,
}

fn unit_idx(u: Unit) -> usize {
    match u {
        Unit::Load => 0,
        Unit::Compute => 1,
        Unit::Store => 2,
        Unit::Controller => 3,
    }
}

impl Gen<'_> {
    fn lines(&self, k: BufferKind) -> u64 {
        self.arch.lines(k) as u64
    }
    /// Accumulator lines usable as destinations (the last `param_lines` hold requant
    /// parameters).
    fn acc_free(&self) -> u64 {
        self.lines(BufferKind::Accumulator) - param_lines(self.arch)
    }

    /// The `param` line of integer (multipliers, shifts) or binary32 requantization: of a
    /// `requant`, or (`store`) of a `store requant=1`, which reads a settings line first.
    fn param_line(&self, fp32: bool, store: bool) -> u64 {
        let first = self.acc_free();
        match (fp32, self.arch.ppu.store_requant) {
            (false, false) => first,
            (true, false) => first + 2,
            (false, true) => first + 1 - store as u64,
            (true, true) => first + 4 - store as u64,
        }
    }

    fn push(&mut self, insn: Insn, fp: Vec<Access>) {
        let u = unit_idx(insn.unit());
        self.code.push(insn);
        self.meta.push((u, fp));
    }

    fn nop(&mut self, unit: UnitSel, deps: Deps) {
        self.push(
            Insn {
                deps,
                op: Op::Nop(Nop { unit }),
            },
            vec![],
        );
    }

    fn last_of(&self, unit: usize) -> Option<usize> {
        self.meta.iter().rposition(|(u, _)| *u == unit)
    }

    /// Emits `op` after whatever token-carrying nops its hazards need.
    fn emit(&mut self, op: Op, fp: Vec<Access>) {
        let insn = Insn::new(op);
        let u = unit_idx(insn.unit());
        let mut need = [false; 3];
        for (v, n) in need.iter_mut().enumerate() {
            if v == u {
                continue;
            }
            let last_conflict = self
                .meta
                .iter()
                .rposition(|(w, f)| *w == v && conflicts(f, &fp));
            *n = match (last_conflict, self.synced[v][u]) {
                (Some(j), Some(s)) => j > s,
                (Some(_), None) => true,
                _ => false,
            };
        }
        let mut deps = Deps::default();
        let push_prev = Deps {
            push_prev: true,
            ..Default::default()
        };
        match u {
            0 => {
                if need[2] {
                    self.nop(UnitSel::Store, push_prev);
                }
                if need[1] || need[2] {
                    self.nop(
                        UnitSel::Compute,
                        Deps {
                            pop_next: need[2],
                            push_prev: true,
                            ..Default::default()
                        },
                    );
                    deps.pop_next = true;
                }
            }
            1 => {
                if need[0] {
                    self.load_push_next();
                    deps.pop_prev = true;
                }
                if need[2] {
                    self.nop(UnitSel::Store, push_prev);
                    deps.pop_next = true;
                }
            }
            _ => {
                if need[0] {
                    self.load_push_next();
                }
                if need[0] || need[1] {
                    self.nop(
                        UnitSel::Compute,
                        Deps {
                            pop_prev: need[0],
                            push_next: true,
                            ..Default::default()
                        },
                    );
                    deps.pop_prev = true;
                }
            }
        }
        // Everything emitted so far on a unit we waited for (directly, or through the compute
        // nop that relayed a token) is now ordered before this instruction.
        let waited: &[usize] = match u {
            0 if deps.pop_next && need[2] => &[1, 2],
            0 if deps.pop_next => &[1],
            1 if deps.pop_prev && deps.pop_next => &[0, 2],
            1 if deps.pop_prev => &[0],
            1 if deps.pop_next => &[2],
            2 if deps.pop_prev && need[0] => &[0, 1],
            2 if deps.pop_prev => &[1],
            _ => &[],
        };
        for &v in waited {
            self.synced[v][u] = self.last_of(v);
        }
        self.push(insn.with_deps(deps), fp);
    }

    /// A load -> compute token after everything the load unit has run so far: on a nop, or
    /// (where loads start ahead, half the time) on the last load itself when it pushes nothing
    /// yet, so a load that starts ahead may wait behind an older one that pushes.
    fn load_push_next(&mut self) {
        if let Some(j) = self.last_of(0) {
            let insn = &mut self.code[j];
            if self.arch.dram.load_ahead
                && matches!(insn.op, Op::Load(_))
                && !insn.deps.push_next
                && self.rng.chance(50)
            {
                insn.deps.push_next = true;
                return;
            }
        }
        self.nop(
            UnitSel::Load,
            Deps {
                push_next: true,
                ..Default::default()
            },
        );
    }

    fn m(&mut self, max: u64) -> u64 {
        if self.rng.chance(4) {
            0
        } else {
            self.rng.range(1, max)
        }
    }

    fn gen_load(&mut self) {
        let (r, c) = (self.arch.array.rows as u64, self.arch.array.cols as u64);
        let buf = self.rng.pick(LoadBuf::ALL);
        let (kind, dline, lines) = match buf {
            LoadBuf::Inp => (BufferKind::Input, r, self.lines(BufferKind::Input)),
            LoadBuf::Wgt => (BufferKind::Weight, c, self.lines(BufferKind::Weight)),
            LoadBuf::Acc => (BufferKind::Accumulator, 4 * c, self.acc_free()),
            LoadBuf::Acc8 => (BufferKind::Accumulator, c, self.acc_free()),
        };
        let rows = if self.rng.chance(3) {
            0
        } else {
            self.rng.range(1, 4)
        };
        let cols = self.rng.range(1, 4);
        let pad = |g: &mut Self| {
            if g.rng.chance(60) {
                0
            } else {
                g.rng.range(1, 2)
            }
        };
        let (pt, pb, pl, pr) = (pad(self), pad(self), pad(self), pad(self));
        let total = (pl + cols + pr) * (pt + rows + pb);
        if total > lines {
            return;
        }
        let sram = self.rng.range(0, lines - total);
        let row_bytes = cols * dline;
        let stride = row_bytes + self.rng.range(0, 2) * dline;
        let span = if rows == 0 {
            0
        } else {
            (rows - 1) * stride + row_bytes
        };
        if span > self.src_bytes {
            return;
        }
        let dram = self.rng.range(0, self.src_bytes - span);
        let op = Load {
            buf,
            sram: sram as u32,
            dram: dram as u32,
            rows: rows as u32,
            cols: cols as u32,
            stride: stride as u32,
            pad_top: pt as u32,
            pad_bottom: pb as u32,
            pad_left: pl as u32,
            pad_right: pr as u32,
            pad_value: self.rng.range(0, 255) as i32 - 128,
        };
        let fp = vec![
            Access {
                res: kind.index() as u8,
                lo: sram,
                hi: sram + total,
                write: true,
            },
            Access {
                res: DRAM,
                lo: dram,
                hi: dram + span,
                write: false,
            },
        ];
        self.emit(Op::Load(op), fp);
    }

    fn gen_store(&mut self) {
        let c = self.arch.array.cols as u64;
        let buf = self.rng.pick(StoreBuf::ALL);
        // Packed (bipolar) stores only where the arch has the binary precision, so programs
        // for int8-only arches draw the same random numbers as before it existed.
        let pack = buf == StoreBuf::Out && self.binary && self.rng.chance(40);
        // Requantizing stores only where the store engine has the lanes (same reason).
        let requant = buf == StoreBuf::Acc && self.arch.ppu.store_requant && self.rng.chance(60);
        let (kind, dline) = match buf {
            StoreBuf::Out if pack => (BufferKind::Output, c / self.arch.array.xnor_bits as u64),
            StoreBuf::Out => (BufferKind::Output, c),
            StoreBuf::Acc if requant => (BufferKind::Accumulator, c),
            StoreBuf::Acc => (BufferKind::Accumulator, 4 * c),
        };
        let rows = self.rng.range(1, 4);
        let cols = self.rng.range(1, 4);
        let n = rows * cols;
        let lines = self.lines(kind);
        if n > lines {
            return;
        }
        // Mostly store what the compute unit wrote last (a matmul's accumulators, a
        // requantization's output), so stored results depend on the array and the PPU.
        let written = self.meta.iter().rev().find_map(|(u, fp)| {
            (*u == 1)
                .then(|| fp.iter().find(|a| a.write && a.res == kind.index() as u8))
                .flatten()
                .copied()
        });
        let sram = match written {
            Some(a) if self.rng.chance(70) => {
                let lo = a.lo.min(lines - n);
                lo + self
                    .rng
                    .range(0, a.hi.saturating_sub(lo + n).min(lines - n - lo))
            }
            _ => self.rng.range(0, lines - n),
        };
        let row_bytes = cols * dline;
        let stride = row_bytes + self.rng.range(0, 2) * dline;
        let span = (rows - 1) * stride + row_bytes;
        if span > self.out_bytes {
            return;
        }
        let dram = self.out_base + self.rng.range(0, self.out_bytes - span);
        let mut op = Store {
            buf,
            sram: sram as u32,
            dram: dram as u32,
            rows: rows as u32,
            cols: cols as u32,
            stride: stride as u32,
            pack,
            ..Default::default()
        };
        let mut fp = Vec::new();
        if requant {
            let fp32 = self.arch.ppu.fp32_requant && self.rng.chance(50);
            let param = self.param_line(fp32, true);
            op.requant = true;
            op.param = param as u32;
            op.fp32 = fp32;
            op.unsigned = self.rng.chance(50);
            op.round = self.rng.pick(Round::ALL);
            fp.push(Access {
                res: kind.index() as u8,
                lo: param,
                hi: param + 3,
                write: false,
            });
        }
        fp.extend([
            Access {
                res: kind.index() as u8,
                lo: sram,
                hi: sram + n,
                write: false,
            },
            Access {
                res: DRAM,
                lo: dram,
                hi: dram + span,
                write: true,
            },
        ]);
        self.emit(Op::Store(op), fp);
    }

    /// A chain right behind chain `prev`: into the same first accumulator line (accumulating
    /// or not, as long or not) or apart from it, or (rarely) partly over it, where it may not
    /// overlap; sometimes with rows, another row length, a bias row.
    fn gen_follow_chain(&mut self, prev: &MatMul) {
        let r = self.arch.array.rows as u64;
        let acc_free = self.acc_free();
        let m = if self.rng.chance(50) {
            prev.m as u64
        } else {
            self.rng.range(1, 24.min(acc_free))
        };
        let a = match self.rng.range(0, 8) {
            0..=3 => prev.acc as u64,
            _ => self.rng.range(1, acc_free - m),
        };
        if a + m > acc_free {
            return;
        }
        let (outer, inner) = (self.rng.range(1, 3), self.rng.range(1, 3));
        let (so, sg) = (self.rng.range(0, m + 2), self.rng.range(0, 3 * m + 2));
        let groups = self.rng.range(0, 2);
        let mut op = MatMul {
            acc: a as u32,
            m: m as u32,
            accumulate: self.rng.chance(50),
            binary: prev.binary,
            outer: outer as u32,
            inner: inner as u32,
            outer_step: so as u32,
            groups: groups as u32,
            group_step: sg as u32,
            ..Default::default()
        };
        let walker = self.arch.array.input_walker;
        if walker && self.rng.chance(50) && m > 1 {
            op.row = self.rng.range(1, 6) as u32;
            op.skip = self.rng.range(0, 40) as u32;
        }
        op.bias = walker && !op.accumulate && a >= 1 && self.rng.chance(40);
        let span =
            groups.saturating_sub(1) * sg + (outer - 1) * so + (inner - 1) + op.stream_span();
        let wl = groups.max(1) * outer * inner * r;
        let (il, wlines) = (
            self.lines(BufferKind::Input),
            self.lines(BufferKind::Weight),
        );
        if span > il || wl > wlines {
            return;
        }
        op.inp = self.rng.range(0, il - span) as u32;
        op.wgt = self.rng.range(0, wlines - wl) as u32;
        let fp = matmul_footprint(&op, op.inp as u64 + span, wl);
        // Tokens from both chains (compute -> load, taken by load `nop`s right after), so a
        // drained chain pushes while the next one runs, or waits for room.
        let prev_at = self.code.len() - 1;
        let pushes = [self.rng.chance(40), self.rng.chance(40)];
        if pushes[0] && matches!(self.code[prev_at].op, Op::MatMul(m) if m == *prev) {
            self.code[prev_at].deps.push_prev = true;
        }
        self.emit(Op::MatMul(op), fp);
        if pushes[1] {
            let at = self.code.len() - 1;
            self.code[at].deps.push_prev = true;
        }
        let pop = Deps {
            pop_next: true,
            ..Default::default()
        };
        let n = usize::from(self.code[prev_at].deps.push_prev) + usize::from(pushes[1]);
        for _ in 0..n {
            self.nop(UnitSel::Load, pop);
        }
    }

    fn gen_compute(&mut self) {
        let r = self.arch.array.rows as u64;
        let acc_free = self.acc_free();
        let acc_all = self.lines(BufferKind::Accumulator);
        let acc = BufferKind::Accumulator.index() as u8;
        let mut pick = self.rng.range(0, 5);
        // Without integer lanes `alu` (3) and `requant` (5) would be refused: a matmul or a
        // thresh instead. (The draw is unchanged otherwise, so saved seeds keep their programs.)
        if !self.arch.ppu.integer_lanes && (pick == 3 || pick == 5) {
            pick = if pick == 3 { 1 } else { 4 };
        }
        match pick {
            0 => {
                let wgt = self.rng.range(0, self.lines(BufferKind::Weight) - r);
                let fp = vec![Access {
                    res: BufferKind::Weight.index() as u8,
                    lo: wgt,
                    hi: wgt + r,
                    write: false,
                }];
                self.emit(Op::LoadWeights(LoadWeights { wgt: wgt as u32 }), fp);
            }
            1 | 2 => {
                let m = self.m(24.min(acc_free));
                let inp = self.rng.range(0, self.lines(BufferKind::Input) - m);
                let a = self.rng.range(0, acc_free - m);
                let mut op = MatMul {
                    inp: inp as u32,
                    acc: a as u32,
                    m: m as u32,
                    accumulate: self.rng.chance(50),
                    binary: self.binary && self.rng.chance(40),
                    ..Default::default()
                };
                let mut hi = inp + m;
                let mut chain_weights = 0;
                // A chain of up to 3 x 3 tiles where PEs hold two (the draws happen only
                // there, so saved seeds of the other archs keep their programs).
                if self.arch.array.weight_banks == 2 && pick == 2 {
                    let (outer, inner) = (self.rng.range(1, 3), self.rng.range(1, 3));
                    let (so, sg) = (self.rng.range(0, m + 2), self.rng.range(0, 3 * m + 2));
                    let groups = self.rng.range(0, 2);
                    let span = groups.saturating_sub(1) * sg + (outer - 1) * so + (inner - 1) + m;
                    let wl = groups.max(1) * outer * inner * r;
                    let (il, wlines) = (
                        self.lines(BufferKind::Input),
                        self.lines(BufferKind::Weight),
                    );
                    if span <= il && wl <= wlines {
                        let inp = self.rng.range(0, il - span);
                        let wgt = self.rng.range(0, wlines - wl);
                        op.inp = inp as u32;
                        (op.outer, op.inner) = (outer as u32, inner as u32);
                        op.outer_step = so as u32;
                        (op.groups, op.group_step) = (groups as u32, sg as u32);
                        op.wgt = wgt as u32;
                        hi = inp + span;
                        chain_weights = wl;
                    }
                }
                // Every other `pick == 2` matmul streams rows with gaps between them (taken
                // from values already drawn, so every program keeps its instruction sequence).
                let walker = self.arch.array.input_walker;
                if walker && pick == 2 && (a + m).is_multiple_of(2) && m > 1 {
                    let mut rows = op;
                    rows.row = 1 + (m as u32 + a as u32) % 5;
                    // Short gaps, and every third one past 32 (a strided convolution's
                    // skip to its next output row: the field's high bits).
                    rows.skip = if a.is_multiple_of(3) {
                        33 + a % 31
                    } else {
                        a % 4
                    } as u32;
                    let extra = rows.stream_span() - m;
                    if hi + extra <= self.lines(BufferKind::Input) {
                        op = rows;
                        hi += extra;
                    }
                }
                // Some overwriting matmuls start from the bias row a - 1 (again derived from
                // values already drawn).
                op.bias = walker && !op.accumulate && a >= 1 && (m + inp).is_multiple_of(3);
                self.emit(Op::MatMul(op), matmul_footprint(&op, hi, chain_weights));
                // With overlapped chains, often another chain right behind (the draws happen
                // only there, so saved seeds of the other archs keep their programs).
                if self.arch.array.chain_overlap && op.streams_chain() && self.rng.chance(60) {
                    self.gen_follow_chain(&op);
                }
            }
            3 => {
                let m = self.m(12.min(acc_free / 4));
                let dst = self.rng.range(0, acc_free - m);
                let operand = |g: &mut Self| -> (u64, u64) {
                    if g.rng.chance(30) {
                        return (dst, 1);
                    }
                    let stride = g.rng.range(0, 2);
                    let span = if m == 0 { 0 } else { (m - 1) * stride + 1 };
                    (g.rng.range(0, acc_all - span), stride)
                };
                let (a, a_stride) = operand(self);
                let (b, b_stride) = operand(self);
                // Identical-or-disjoint rule, as the emulator checks it.
                for (base, stride) in [(a, a_stride), (b, b_stride)] {
                    for j in 0..m {
                        let line = base + j * stride;
                        if line >= dst && line < dst + m && line - dst != j {
                            return;
                        }
                    }
                }
                let span = |base: u64, s: u64| if m == 0 { base } else { base + (m - 1) * s + 1 };
                let op = Alu {
                    func: self.rng.pick(AluFunc::ALL),
                    dst: dst as u32,
                    a: a as u32,
                    a_stride: a_stride as u32,
                    b: b as u32,
                    b_stride: b_stride as u32,
                    m: m as u32,
                };
                let fp = vec![
                    Access {
                        res: acc,
                        lo: dst,
                        hi: dst + m,
                        write: true,
                    },
                    Access {
                        res: acc,
                        lo: a,
                        hi: span(a, a_stride),
                        write: false,
                    },
                    Access {
                        res: acc,
                        lo: b,
                        hi: span(b, b_stride),
                        write: false,
                    },
                ];
                self.emit(Op::Alu(op), fp);
            }
            4 => {
                let out_lines = self.lines(BufferKind::Output);
                let m = self.m(12.min(out_lines));
                let most = self.arch.ppu.max_thresholds as u64;
                let count = if self.rng.chance(10) {
                    self.rng.range(0, most.min(acc_all))
                } else {
                    self.rng.range(0, 8.min(most))
                };
                let thr = self.rng.range(0, acc_all - count);
                let src = self.rng.range(0, acc_all - m);
                let dst = self.rng.range(0, out_lines - m);
                let op = Thresh {
                    dst: dst as u32,
                    src: src as u32,
                    thr: thr as u32,
                    count: count as u32,
                    m: m as u32,
                    base: self.rng.range(0, 255) as i32 - 128,
                    step: if self.rng.chance(70) {
                        1
                    } else {
                        self.rng.range(0, 255) as i32 - 128
                    },
                };
                let fp = vec![
                    Access {
                        res: acc,
                        lo: src,
                        hi: src + m,
                        write: false,
                    },
                    Access {
                        res: acc,
                        lo: thr,
                        hi: thr + count,
                        write: false,
                    },
                    Access {
                        res: BufferKind::Output.index() as u8,
                        lo: dst,
                        hi: dst + m,
                        write: true,
                    },
                ];
                self.emit(Op::Thresh(op), fp);
            }
            _ => {
                let out_lines = self.lines(BufferKind::Output);
                let m = self.m(12.min(out_lines));
                let src = self.rng.range(0, acc_all - m);
                let dst = self.rng.range(0, out_lines - m);
                let fp32 = self.arch.ppu.fp32_requant && self.rng.chance(50);
                let param = self.param_line(fp32, false);
                let op = Requant {
                    dst: dst as u32,
                    src: src as u32,
                    param: param as u32,
                    m: m as u32,
                    zp: self.rng.range(0, 600) as i32 - 300,
                    lo: self.rng.range(0, 255) as u32,
                    hi: self.rng.range(0, 255) as u32,
                    unsigned: self.rng.chance(50),
                    round: self.rng.pick(Round::ALL),
                    fp32,
                };
                let fp = vec![
                    Access {
                        res: acc,
                        lo: src,
                        hi: src + m,
                        write: false,
                    },
                    Access {
                        res: acc,
                        lo: param,
                        hi: param + 2,
                        write: false,
                    },
                    Access {
                        res: BufferKind::Output.index() as u8,
                        lo: dst,
                        hi: dst + m,
                        write: true,
                    },
                ];
                self.emit(Op::Requant(op), fp);
            }
        }
    }
}

/// Accumulator lines at the top holding requantization parameters: multipliers, shifts,
/// binary32 scales and an unused line; with `ppu.store_requant` each set after a settings line
/// (zero point, clamps) for `store requant=1`.
fn param_lines(arch: &ArchConfig) -> u64 {
    if arch.ppu.store_requant {
        6
    } else {
        4
    }
}

/// What a `matmul` touches: its input lines up to `input_end`, its chain's `weight_lines`
/// weight lines (0 for a plain one) and its accumulator lines (with the bias row).
fn matmul_footprint(op: &MatMul, input_end: u64, weight_lines: u64) -> Vec<Access> {
    let mut fp = Vec::with_capacity(3);
    if weight_lines > 0 {
        fp.push(Access {
            res: BufferKind::Weight.index() as u8,
            lo: op.wgt as u64,
            hi: op.wgt as u64 + weight_lines,
            write: false,
        });
    }
    let acc = op.acc as u64;
    fp.extend([
        Access {
            res: BufferKind::Input.index() as u8,
            lo: op.inp as u64,
            hi: input_end,
            write: false,
        },
        Access {
            res: BufferKind::Accumulator.index() as u8,
            lo: acc - op.bias as u64,
            hi: acc + op.m as u64,
            write: true,
        },
    ]);
    fp
}

/// Preset `name` reshaped to a `rows` x `cols` array with two weight registers per PE,
/// `beat`-byte DRAM beats and, with `overlap`, overlapped chains: the archs the emulator's
/// and the RTL's random-program tests draw chains on.
pub fn banked_arch(name: &str, rows: u32, cols: u32, beat: u32, overlap: bool) -> ArchConfig {
    let mut arch = ArchConfig::preset(name).expect("a preset");
    arch.array.weight_banks = 2;
    arch.array.chain_overlap = overlap;
    (arch.array.rows, arch.array.cols) = (rows, cols);
    arch.dram.bytes_per_cycle = beat;
    let tag = if overlap { "overlap" } else { "banked" };
    arch.name = format!("{name}_{tag}_{rows}x{cols}");
    arch.validate()
        .unwrap_or_else(|e| panic!("{}: {e:?}", arch.name));
    arch
}

/// `arch` with loads ahead (`dram.load_ahead`), DRAM latency `latency` and `tokens` of room
/// per token queue.
pub fn load_ahead_arch(mut arch: ArchConfig, latency: u32, tokens: u32) -> ArchConfig {
    arch.dram.load_ahead = true;
    arch.dram.latency_cycles = latency;
    arch.controller.token_depth = tokens;
    arch.name = format!("{}_ahead_l{latency}_t{tokens}", arch.name);
    arch.validate()
        .unwrap_or_else(|e| panic!("{}: {e:?}", arch.name));
    arch
}

/// `arch` with stores ahead (`dram.store_ahead`), DRAM latency `latency` and `tokens` of room
/// per token queue.
pub fn store_ahead_arch(mut arch: ArchConfig, latency: u32, tokens: u32) -> ArchConfig {
    arch.dram.store_ahead = true;
    arch.dram.latency_cycles = latency;
    arch.controller.token_depth = tokens;
    arch.name = format!("{}_sahead_l{latency}_t{tokens}", arch.name);
    arch.validate()
        .unwrap_or_else(|e| panic!("{}: {e:?}", arch.name));
    arch
}

/// `arch` with requantizer lanes in the store engine (`ppu.store_requant`).
pub fn store_requant_arch(mut arch: ArchConfig) -> ArchConfig {
    arch.ppu.store_requant = true;
    arch.name = format!("{}_storeq", arch.name);
    arch.validate()
        .unwrap_or_else(|e| panic!("{}: {e:?}", arch.name));
    arch
}

/// A random valid program of about `n` instructions (plus token `nop`s) for `arch`.
///
/// DRAM holds random source bytes at 0..SRC_BYTES, requantization parameters after them and
/// an output region (the program's one output tensor, `dram_out`, u8) at the end (`regions`).
pub fn random_program(arch: &ArchConfig, seed: u64, n: usize) -> Program {
    let c = arch.array.cols as u64;
    let (src_bytes, out_bytes) = regions(arch);
    let mut rng = Rng::new(seed);
    let src: Vec<u8> = (0..src_bytes).map(|_| rng.next_u64() as u8).collect();
    // Parameter lines: multipliers (mostly moderate, sometimes extreme) then shifts 0..=62.
    let mut params = Vec::new();
    for _ in 0..c {
        let mult: i32 = match rng.range(0, 3) {
            0 => rng.next_u64() as i32,
            1 => (rng.range(0, 1 << 16) as i32) - (1 << 15),
            _ => rng.range(1 << 29, (1 << 31) - 1) as i32,
        };
        params.extend_from_slice(&mult.to_le_bytes());
    }
    for _ in 0..c {
        let shift = rng.range(0, 62) as i32;
        params.extend_from_slice(&shift.to_le_bytes());
    }
    // Binary32 scales: normal, either sign, 2^-24 .. 2^3, a quarter of them powers of two.
    for _ in 0..c {
        let mant = if rng.chance(25) {
            0
        } else {
            rng.next_u64() as u32 & 0x7f_ffff
        };
        let exp = rng.range(127 - 24, 127 + 3) as u32;
        let sign = (rng.chance(20) as u32) << 31;
        params.extend_from_slice(&(sign | exp << 23 | mant).to_le_bytes());
    }
    // The zero point and clamps of a requantizing store (lanes 0..3; the rest zero).
    let settings = |rng: &mut Rng| {
        let mut line = vec![0u8; 4 * c as usize];
        let zp = rng.range(0, 600) as i32 - 300;
        for (l, v) in [zp, rng.range(0, 255) as i32, rng.range(0, 255) as i32]
            .into_iter()
            .enumerate()
        {
            line[4 * l..4 * l + 4].copy_from_slice(&v.to_le_bytes());
        }
        line
    };
    if arch.ppu.store_requant {
        // settings, multipliers, shifts; settings, scales, an unused line
        let (int, scales) = params.split_at(8 * c as usize);
        let (int, scales) = (int.to_vec(), scales.to_vec());
        params = settings(&mut rng);
        params.extend(int);
        params.extend(settings(&mut rng));
        params.extend(scales);
        params.extend_from_slice(&vec![0u8; 4 * c as usize]);
    } else {
        params.extend_from_slice(&vec![0u8; 4 * c as usize]);
    }
    let plines = param_lines(arch);
    let param_base = src_bytes;
    let out_base = src_bytes + params.len() as u64;
    let mut g = Gen {
        arch,
        rng,
        code: Vec::new(),
        meta: Vec::new(),
        synced: [[None; 3]; 3],
        out_base,
        src_bytes,
        out_bytes,
        binary: arch.supports(systole_arch::config::Precision::Binary),
    };
    let acc_lines = g.lines(BufferKind::Accumulator);
    let pl = Load {
        buf: LoadBuf::Acc,
        sram: (acc_lines - plines) as u32,
        dram: param_base as u32,
        rows: 1,
        cols: plines as u32,
        stride: 4 * plines as u32 * c as u32,
        ..Default::default()
    };
    let fp = vec![
        Access {
            res: BufferKind::Accumulator.index() as u8,
            lo: acc_lines - plines,
            hi: acc_lines,
            write: true,
        },
        Access {
            res: DRAM,
            lo: param_base,
            hi: param_base + 4 * plines * c,
            write: false,
        },
    ];
    g.emit(Op::Load(pl), fp);
    while g.code.len() < n {
        match g.rng.range(0, 9) {
            0..=2 => g.gen_load(),
            3..=6 => g.gen_compute(),
            7 => g.gen_store(),
            _ => {
                let unit = g.rng.pick(UnitSel::ALL);
                g.emit(Op::Nop(Nop { unit }), vec![]);
            }
        }
    }
    g.code.push(Insn::new(Op::Finish(Finish {})));
    let mut p = Program::new(arch);
    p.dram_bytes = out_base + out_bytes;
    p.code = g.code;
    p.data = vec![
        Segment {
            dram_addr: 0,
            bytes: src,
        },
        Segment {
            dram_addr: param_base,
            bytes: params,
        },
    ];
    p.tensors = vec![TensorDesc::dense(
        "dram_out",
        Role::Output,
        DType::U8,
        &[out_bytes],
        out_base,
    )];
    p.meta
        .insert("generator".into(), format!("randprog seed={seed} n={n}"));
    p
}
