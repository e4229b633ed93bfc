//! Run statistics and the energy estimate derived from their event counts.

use serde::Serialize;
use systole_arch::{ArchConfig, BufferKind};

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct UnitStats {
    pub instructions: u64,
    /// Cycles an instruction was executing (port stalls included).
    pub busy_cycles: u64,
    /// Busy cycles lost to buffer port conflicts.
    pub port_stall_cycles: u64,
    /// Cycles the queue head waited for a dependency token.
    pub token_stall_cycles: u64,
    /// Cycles a finished instruction waited for room in a token queue.
    pub push_stall_cycles: u64,
    /// Cycles with nothing to do.
    pub idle_cycles: u64,
    /// Instructions started while the one before them still drained (compute: chains,
    /// `array.chain_overlap`; load: loads started ahead, `dram.load_ahead`; store: stores
    /// started ahead, `dram.store_ahead`).
    pub overlapped: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct BufferStats {
    pub line_reads: u64,
    pub line_writes: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub conflict_stalls: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Energy {
    pub mac_pj: f64,
    pub ppu_pj: f64,
    pub input_buffer_pj: f64,
    pub weight_buffer_pj: f64,
    pub accumulator_buffer_pj: f64,
    pub output_buffer_pj: f64,
    pub dram_pj: f64,
    pub control_pj: f64,
    pub static_pj: f64,
    pub total_pj: f64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Stats {
    pub arch: String,
    pub clock_mhz: f64,
    pub cycles: u64,
    pub latency_us: f64,
    pub instructions: u64,
    pub load: UnitStats,
    pub compute: UnitStats,
    pub store: UnitStats,
    pub dispatch_stall_cycles: u64,
    pub macs: u64,
    /// The binary (`matmul binary=1`) PE slots among `macs`: each `array.xnor_bits`
    /// XNOR-popcount bit products, priced at `xnor_popcount_bit_pj` per bit instead of an int8
    /// multiply.
    pub xnor_macs: u64,
    pub peak_macs_per_cycle: u64,
    pub utilization: f64,
    pub dram_bytes_read: u64,
    pub dram_bytes_written: u64,
    pub input_buffer: BufferStats,
    pub weight_buffer: BufferStats,
    pub accumulator_buffer: BufferStats,
    pub output_buffer: BufferStats,
    pub alu_lane_ops: u64,
    pub alu_mul_lane_ops: u64,
    pub requant_lane_ops: u64,
    pub thresh_compares: u64,
    pub energy: Energy,
}

impl Stats {
    pub fn buffer(&self, k: BufferKind) -> &BufferStats {
        match k {
            BufferKind::Input => &self.input_buffer,
            BufferKind::Weight => &self.weight_buffer,
            BufferKind::Accumulator => &self.accumulator_buffer,
            BufferKind::Output => &self.output_buffer,
        }
    }

    /// The events between an earlier snapshot of the same run and this one (a layer's share),
    /// with utilization and energy recomputed for that stretch.
    pub fn since(&self, earlier: &Stats, arch: &ArchConfig) -> Stats {
        let unit = |a: &UnitStats, b: &UnitStats| UnitStats {
            instructions: a.instructions - b.instructions,
            busy_cycles: a.busy_cycles - b.busy_cycles,
            port_stall_cycles: a.port_stall_cycles - b.port_stall_cycles,
            token_stall_cycles: a.token_stall_cycles - b.token_stall_cycles,
            push_stall_cycles: a.push_stall_cycles - b.push_stall_cycles,
            idle_cycles: a.idle_cycles - b.idle_cycles,
            overlapped: a.overlapped - b.overlapped,
        };
        let buf = |a: &BufferStats, b: &BufferStats| BufferStats {
            line_reads: a.line_reads - b.line_reads,
            line_writes: a.line_writes - b.line_writes,
            bytes_read: a.bytes_read - b.bytes_read,
            bytes_written: a.bytes_written - b.bytes_written,
            conflict_stalls: a.conflict_stalls - b.conflict_stalls,
        };
        let cycles = self.cycles - earlier.cycles;
        let macs = self.macs - earlier.macs;
        let mut s = Stats {
            arch: self.arch.clone(),
            clock_mhz: self.clock_mhz,
            cycles,
            latency_us: cycles as f64 / self.clock_mhz,
            instructions: self.instructions - earlier.instructions,
            load: unit(&self.load, &earlier.load),
            compute: unit(&self.compute, &earlier.compute),
            store: unit(&self.store, &earlier.store),
            dispatch_stall_cycles: self.dispatch_stall_cycles - earlier.dispatch_stall_cycles,
            macs,
            xnor_macs: self.xnor_macs - earlier.xnor_macs,
            peak_macs_per_cycle: self.peak_macs_per_cycle,
            utilization: if cycles == 0 {
                0.0
            } else {
                macs as f64 / (cycles as f64 * self.peak_macs_per_cycle as f64)
            },
            dram_bytes_read: self.dram_bytes_read - earlier.dram_bytes_read,
            dram_bytes_written: self.dram_bytes_written - earlier.dram_bytes_written,
            input_buffer: buf(&self.input_buffer, &earlier.input_buffer),
            weight_buffer: buf(&self.weight_buffer, &earlier.weight_buffer),
            accumulator_buffer: buf(&self.accumulator_buffer, &earlier.accumulator_buffer),
            output_buffer: buf(&self.output_buffer, &earlier.output_buffer),
            alu_lane_ops: self.alu_lane_ops - earlier.alu_lane_ops,
            alu_mul_lane_ops: self.alu_mul_lane_ops - earlier.alu_mul_lane_ops,
            requant_lane_ops: self.requant_lane_ops - earlier.requant_lane_ops,
            thresh_compares: self.thresh_compares - earlier.thresh_compares,
            energy: Default::default(),
        };
        s.compute_energy(arch);
        s
    }

    /// Fills `energy` from the event counts and the arch's energy table.
    pub fn compute_energy(&mut self, arch: &ArchConfig) {
        // The table in force (node-scaled when `energy.scale_to_nm` is set).
        let e = &arch.energy.effective();
        let mut en = Energy {
            mac_pj: (self.macs - self.xnor_macs) as f64 * (e.int8_mul_pj + e.int32_add_pj)
                + self.xnor_macs as f64
                    * (arch.array.xnor_bits as f64 * e.xnor_popcount_bit_pj + e.int32_add_pj),
            // ALU: one int32 op per lane; requant: a 32x32 multiply, a rounding add, a zero-point
            // add and two compares (priced as int32 adds).
            ppu_pj: self.alu_lane_ops as f64 * e.int32_add_pj
                + self.alu_mul_lane_ops as f64 * e.int32_mul_pj
                + self.requant_lane_ops as f64 * (e.int32_mul_pj + 4.0 * e.int32_add_pj)
                // A 32-bit compare costs about a 32-bit add.
                + self.thresh_compares as f64 * e.int32_add_pj,
            ..Default::default()
        };
        for k in BufferKind::ALL {
            let b = arch.buffer(k);
            let bank_bytes = (b.size_bytes / b.banks) as u64;
            let s = self.buffer(k);
            let words = (s.bytes_read + s.bytes_written) as f64 / 8.0;
            let pj = words * e.sram_64b_pj(bank_bytes);
            match k {
                BufferKind::Input => en.input_buffer_pj = pj,
                BufferKind::Weight => en.weight_buffer_pj = pj,
                BufferKind::Accumulator => en.accumulator_buffer_pj = pj,
                BufferKind::Output => en.output_buffer_pj = pj,
            }
        }
        en.dram_pj = (self.dram_bytes_read + self.dram_bytes_written) as f64 / 8.0 * e.dram_64b_pj;
        // Instruction fetch: two 64-bit reads of the instruction memory per instruction.
        let imem_bytes = arch.controller.imem_instructions as u64 * 16;
        en.control_pj = self.instructions as f64 * 2.0 * e.sram_64b_pj(imem_bytes);
        // mW x us = nJ = 1000 pJ.
        en.static_pj = e.static_mw * self.latency_us * 1000.0;
        en.total_pj = en.mac_pj
            + en.ppu_pj
            + en.input_buffer_pj
            + en.weight_buffer_pj
            + en.accumulator_buffer_pj
            + en.output_buffer_pj
            + en.dram_pj
            + en.control_pj
            + en.static_pj;
        self.energy = en;
    }

    /// A human-readable summary.
    pub fn report(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "cycles: {}\nlatency: {:.3} us at {} MHz\nmacs: {}\nutilization: {:.2}%\n",
            self.cycles,
            self.latency_us,
            self.clock_mhz,
            self.macs,
            self.utilization * 100.0
        ));
        s.push_str("unit      insns     busy  port-stall  token-stall  push-stall       idle\n");
        for (n, u) in [
            ("load", &self.load),
            ("compute", &self.compute),
            ("store", &self.store),
        ] {
            s.push_str(&format!(
                "{n:<8}{:>7}{:>9}{:>12}{:>13}{:>12}{:>11}\n",
                u.instructions,
                u.busy_cycles,
                u.port_stall_cycles,
                u.token_stall_cycles,
                u.push_stall_cycles,
                u.idle_cycles
            ));
        }
        if self.compute.overlapped > 0 {
            s.push_str(&format!(
                "overlapped chains: {} (started while the chain before drained)\n",
                self.compute.overlapped
            ));
        }
        s.push_str(&format!(
            "dram: {} B read, {} B written\n",
            self.dram_bytes_read, self.dram_bytes_written
        ));
        for k in BufferKind::ALL {
            let b = self.buffer(k);
            s.push_str(&format!(
                "{:<12} {:>10} B read {:>10} B written {:>6} conflict stalls\n",
                k.name(),
                b.bytes_read,
                b.bytes_written,
                b.conflict_stalls
            ));
        }
        s.push_str(&format!(
            "energy: {:.3} nJ\n",
            self.energy.total_pj / 1000.0
        ));
        s
    }
}
