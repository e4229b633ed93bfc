//! Boards: FPGA part, pins, clock and I/O standard, and the constraint file (LPF for ECP5,
//! PCF for iCE40) and PLL each needs. The board top level's ports are always `clk`, `btn_n`
//! (reset, active low), `uart_rx`, `uart_tx` and `led[N]`.

use std::fmt::Write;

/// FPGA family and part, as nextpnr names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Lattice ECP5 (`nextpnr-ecp5 --85k --package CABGA381`).
    Ecp5 {
        device: &'static str,
        package: &'static str,
    },
    /// Lattice iCE40 (`nextpnr-ice40 --up5k --package sg48`).
    Ice40 {
        device: &'static str,
        package: &'static str,
    },
}

/// A PLL setting: input clock to output clock through a VCO.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pll {
    pub in_mhz: f64,
    pub out_mhz: f64,
    /// ECP5 EHXPLLL: CLKI_DIV, CLKFB_DIV, CLKOP_DIV, CLKOP_CPHASE.
    /// iCE40 SB_PLL40_PAD: DIVR, DIVF, DIVQ, FILTER_RANGE.
    pub params: [u32; 4],
    /// 1, or 2 for a toggle flip-flop behind the PLL: below the PLL's lowest output (10 MHz
    /// on the EHXPLLL) `out_mhz` is half of it.
    pub fabric_div: u32,
}

impl Pll {
    /// The PLL's own output (before `fabric_div`).
    pub fn pll_out_mhz(&self) -> f64 {
        self.out_mhz * self.fabric_div as f64
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Board {
    pub name: &'static str,
    pub title: &'static str,
    pub family: Family,
    /// The board oscillator.
    pub osc_mhz: f64,
    pub clk_pin: &'static str,
    /// Reset button (active low, pulled up).
    pub btn_n_pin: &'static str,
    /// The FPGA's UART input (the USB bridge's TX) and output.
    pub uart_rx_pin: &'static str,
    pub uart_tx_pin: &'static str,
    pub led_pins: &'static [&'static str],
    pub led_active_low: bool,
    pub io_standard: &'static str,
    /// PLLs from the oscillator, by output clock.
    pub plls: &'static [Pll],
    /// How to load a bitstream into the board's SRAM.
    pub flash: &'static str,
    /// The FPGA's hard blocks, as yosys names the cells that use them: (cell, how many the
    /// device has). A synthesized design needing more of one cannot be placed.
    pub hard_blocks: &'static [(&'static str, u64)],
    /// Logic cells (LUT4s), and the yosys cells that take them: (cell, LUT4s per cell).
    pub luts: u64,
    pub lut_cells: &'static [(&'static str, u64)],
    /// log2 of the on-chip memory's bytes when the user names none: what fits beside the
    /// accelerator's own block RAMs (`fpga build --mem-bits`).
    pub mem_bits: u32,
    /// The arch preset built when the user names none.
    pub default_arch: &'static str,
}

pub const ULX3S: Board = Board {
    name: "ulx3s",
    title: "Radiona ULX3S (Lattice ECP5 LFE5U-85F, CABGA381, 25 MHz, FTDI FT231X UART)",
    family: Family::Ecp5 {
        device: "85k",
        package: "CABGA381",
    },
    osc_mhz: 25.0,
    clk_pin: "G2",
    btn_n_pin: "D6",
    uart_rx_pin: "M1",
    uart_tx_pin: "L4",
    led_pins: &["B2", "C2", "C1", "D2", "D1", "E2", "E1", "H3"],
    led_active_low: false,
    io_standard: "LVCMOS33",
    // VCO = 25 / CLKI_DIV * CLKFB_DIV * CLKOP_DIV (400..800 MHz); out = VCO / CLKOP_DIV.
    plls: &[
        Pll {
            in_mhz: 25.0,
            out_mhz: 50.0,
            params: [1, 2, 12, 5],
            fabric_div: 1,
        },
        Pll {
            in_mhz: 25.0,
            out_mhz: 24.0,
            params: [25, 24, 25, 12],
            fabric_div: 1,
        },
        Pll {
            in_mhz: 25.0,
            out_mhz: 12.5,
            params: [2, 1, 48, 23],
            fabric_div: 1,
        },
        Pll {
            in_mhz: 25.0,
            out_mhz: 10.0,
            params: [5, 2, 60, 29],
            fabric_div: 1,
        },
        // The 12.5 MHz setting halved in the fabric.
        Pll {
            in_mhz: 25.0,
            out_mhz: 6.25,
            params: [2, 1, 48, 23],
            fabric_div: 2,
        },
    ],
    flash: "openFPGALoader --board ulx3s BITSTREAM.bit",
    // LFE5U-85F data sheet: 83,640 LUT4s, 156 18x18 multipliers, 208 EBR (18 Kbit).
    hard_blocks: &[("MULT18X18D", 156), ("DP16KD", 208), ("EHXPLLL", 4)],
    luts: 83_640,
    // A carry cell (CCU2C) is two LUT4s of a slice.
    lut_cells: &[("LUT4", 1), ("CCU2C", 2)],
    mem_bits: 16,
    default_arch: "ulx3s",
};

pub const ICEBREAKER: Board = Board {
    name: "icebreaker",
    title: "1BitSquared iCEBreaker (Lattice iCE40UP5K, SG48, 12 MHz, FTDI FT2232H UART)",
    family: Family::Ice40 {
        device: "up5k",
        package: "sg48",
    },
    osc_mhz: 12.0,
    clk_pin: "35",
    btn_n_pin: "10",
    uart_rx_pin: "6",
    uart_tx_pin: "9",
    led_pins: &["11", "37"],
    led_active_low: true,
    io_standard: "SB_LVCMOS",
    // F_VCO = 12 * (DIVF + 1) / (DIVR + 1) (533..1066 MHz); out = F_VCO / 2^DIVQ.
    plls: &[Pll {
        in_mhz: 12.0,
        out_mhz: 24.0,
        params: [0, 63, 5, 1],
        fabric_div: 1,
    }],
    flash: "iceprog BITSTREAM.bin",
    // iCE40UP5K data sheet: 5,280 LUT4s, 8 DSP (SB_MAC16), 30 EBR (4 Kbit), 4 SPRAM (256 Kbit).
    hard_blocks: &[
        ("SB_MAC16", 8),
        ("SB_RAM40_4K", 30),
        ("SB_SPRAM256KA", 4),
        ("SB_PLL40_PAD", 1),
    ],
    luts: 5_280,
    // SB_CARRY shares a logic cell with its LUT.
    lut_cells: &[("SB_LUT4", 1)],
    // 2 KB: four of the UP5K's 30 block RAMs; the up5k preset's DRAM is that size.
    mem_bits: 11,
    default_arch: "up5k",
};

pub const BOARDS: &[Board] = &[ULX3S, ICEBREAKER];

const CLOCK_HEAD: &str =
    "module systole_board_clock(input clk_in, output clk_out, output locked);\n";

/// `systole_board_clock` as a wire: the oscillator's clock straight through (also what a
/// simulation of the board top level uses).
pub fn wire_clock_verilog() -> String {
    format!("{CLOCK_HEAD}    assign clk_out = clk_in;\n    assign locked = 1'b1;\nendmodule\n")
}

/// `systole_board_clock` as the oscillator halved by a toggle flip-flop: for a clock below the
/// PLL's range (the iCE40's SB_PLL40 makes 16 MHz at the least) and a design too slow for the
/// oscillator itself.
pub fn halved_clock_verilog(osc_mhz: f64) -> String {
    format!(
        "{CLOCK_HEAD}    // {osc_mhz} MHz oscillator halved by a flip-flop: {} MHz
    reg half = 1'b0;
    always @(posedge clk_in) half <= !half;
    assign clk_out = half;
    assign locked = 1'b1;
endmodule
",
        osc_mhz / 2.0
    )
}

/// Where the accelerator's clock comes from (`Board::clock_source`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ClockSource {
    Oscillator,
    Pll(&'static Pll),
    OscillatorHalved,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BoardError {
    #[error("unknown board '{0}' (boards: ulx3s, icebreaker)")]
    Unknown(String),
    #[error(
        "board {board}: no PLL makes {want} MHz from its {osc} MHz oscillator (it has: {have})"
    )]
    NoClock {
        board: &'static str,
        want: f64,
        osc: f64,
        have: String,
    },
}

impl Board {
    pub fn by_name(name: &str) -> Result<&'static Board, BoardError> {
        BOARDS
            .iter()
            .find(|b| b.name == name)
            .ok_or_else(|| BoardError::Unknown(name.to_string()))
    }

    /// How the board makes `mhz`: the oscillator itself, a PLL setting, or (when no PLL
    /// makes it) the oscillator halved by a flip-flop.
    pub fn clock_source(&self, mhz: f64) -> Result<ClockSource, BoardError> {
        let near = |a: f64, b: f64| (a - b).abs() < 1e-9;
        if near(mhz, self.osc_mhz) {
            return Ok(ClockSource::Oscillator);
        }
        if let Some(p) = self.plls.iter().find(|p| near(p.out_mhz, mhz)) {
            return Ok(ClockSource::Pll(p));
        }
        if near(2.0 * mhz, self.osc_mhz) {
            return Ok(ClockSource::OscillatorHalved);
        }
        Err(BoardError::NoClock {
            board: self.name,
            want: mhz,
            osc: self.osc_mhz,
            have: self
                .plls
                .iter()
                .map(|p| format!("{} MHz", p.out_mhz))
                .chain(std::iter::once(format!("{} MHz (no PLL)", self.osc_mhz)))
                .chain(std::iter::once(format!(
                    "{} MHz (the oscillator halved)",
                    self.osc_mhz / 2.0
                )))
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// The PLL for `mhz`, or None when it takes none (the oscillator, or its half).
    pub fn pll_for(&self, mhz: f64) -> Result<Option<&'static Pll>, BoardError> {
        Ok(match self.clock_source(mhz)? {
            ClockSource::Pll(p) => Some(p),
            ClockSource::Oscillator | ClockSource::OscillatorHalved => None,
        })
    }

    /// The constraint file: LPF (ECP5) or PCF (iCE40) for the board top's ports.
    pub fn constraints(&self) -> String {
        let mut s = String::new();
        let pins: Vec<(String, &str)> = [
            ("clk".to_string(), self.clk_pin),
            ("btn_n".to_string(), self.btn_n_pin),
            ("uart_rx".to_string(), self.uart_rx_pin),
            ("uart_tx".to_string(), self.uart_tx_pin),
        ]
        .into_iter()
        .chain(
            self.led_pins
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("led[{i}]"), *p)),
        )
        .collect();
        let _ = writeln!(s, "# {} (generated by systole-fpga)", self.title);
        // The inputs idle high: the reset button and the UART line get pull-ups.
        let pulled = |port: &str| matches!(port, "btn_n" | "uart_rx");
        for (port, site) in &pins {
            match self.family {
                Family::Ecp5 { .. } => {
                    let pull = if pulled(port) { " PULLMODE=UP" } else { "" };
                    let _ = writeln!(s, "LOCATE COMP \"{port}\" SITE \"{site}\";");
                    let _ = writeln!(
                        s,
                        "IOBUF PORT \"{port}\" IO_TYPE={}{pull};",
                        self.io_standard
                    );
                }
                Family::Ice40 { .. } => {
                    let pull = if pulled(port) { " -pullup yes" } else { "" };
                    let _ = writeln!(s, "set_io{pull} {port} {site}");
                }
            }
        }
        if let Family::Ecp5 { .. } = self.family {
            let _ = writeln!(s, "FREQUENCY PORT \"clk\" {} MHZ;", self.osc_mhz);
        }
        s
    }

    /// `module systole_board_clock(input clk_in, output clk_out, output locked)`: the PLL to
    /// `mhz` (or a wire when the oscillator runs at it).
    pub fn clock_verilog(&self, mhz: f64) -> Result<String, BoardError> {
        let head = CLOCK_HEAD;
        let p = match self.clock_source(mhz)? {
            ClockSource::Oscillator => return Ok(wire_clock_verilog()),
            ClockSource::OscillatorHalved => return Ok(halved_clock_verilog(self.osc_mhz)),
            ClockSource::Pll(p) => p,
        };
        let [a, b, c, d] = p.params;
        Ok(match self.family {
            Family::Ecp5 { .. } => format!(
                "{head}    // {in} MHz -> {out} MHz (VCO {vco} MHz){div_note}
    wire pll_clk;
    (* FREQUENCY_PIN_CLKI=\"{in}\" *) (* FREQUENCY_PIN_CLKOP=\"{pll_out}\" *) (* ICP_CURRENT=\"12\" *) (* LPF_RESISTOR=\"8\" *)
    EHXPLLL #(.PLLRST_ENA(\"DISABLED\"), .INTFB_WAKE(\"DISABLED\"), .STDBY_ENABLE(\"DISABLED\"),
        .DPHASE_SOURCE(\"DISABLED\"), .OUTDIVIDER_MUXA(\"DIVA\"), .OUTDIVIDER_MUXB(\"DIVB\"),
        .OUTDIVIDER_MUXC(\"DIVC\"), .OUTDIVIDER_MUXD(\"DIVD\"), .CLKI_DIV({a}), .CLKOP_ENABLE(\"ENABLED\"),
        .CLKOP_DIV({c}), .CLKOP_CPHASE({d}), .CLKOP_FPHASE(0), .FEEDBK_PATH(\"CLKOP\"), .CLKFB_DIV({b}))
    pll (.RST(1'b0), .STDBY(1'b0), .CLKI(clk_in), .CLKOP(pll_clk), .CLKFB(pll_clk), .CLKINTFB(),
        .PHASESEL0(1'b0), .PHASESEL1(1'b0), .PHASEDIR(1'b1), .PHASESTEP(1'b1), .PHASELOADREG(1'b1),
        .PLLWAKESYNC(1'b0), .ENCLKOP(1'b0), .LOCK(locked));
{div}endmodule
",
                in = p.in_mhz,
                out = p.out_mhz,
                pll_out = p.pll_out_mhz(),
                vco = p.in_mhz / a as f64 * b as f64 * c as f64,
                div_note = if p.fabric_div == 2 {
                    format!(", halved by a flip-flop from {}", p.pll_out_mhz())
                } else {
                    String::new()
                },
                div = if p.fabric_div == 2 {
                    "    reg half = 1'b0;\n    always @(posedge pll_clk) half <= !half;\n    \
                     assign clk_out = half;\n"
                } else {
                    "    assign clk_out = pll_clk;\n"
                },
            ),
            Family::Ice40 { .. } => format!(
                "{head}    // {in} MHz -> {out} MHz (VCO {vco} MHz)
    SB_PLL40_PAD #(.FEEDBACK_PATH(\"SIMPLE\"), .DIVR(4'd{a}), .DIVF(7'd{b}), .DIVQ(3'd{c}),
        .FILTER_RANGE(3'd{d}))
    pll (.PACKAGEPIN(clk_in), .PLLOUTGLOBAL(clk_out), .LOCK(locked), .RESETB(1'b1), .BYPASS(1'b0));
endmodule
",
                in = p.in_mhz,
                out = p.out_mhz,
                vco = p.in_mhz * (b + 1) as f64 / (a + 1) as f64,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plls_reach_their_clock_within_vco_range() {
        for b in BOARDS {
            for p in b.plls {
                let [a, f, q, _] = p.params;
                assert!(matches!(p.fabric_div, 1 | 2), "{}: divider", b.name);
                let (vco, out) = match b.family {
                    Family::Ecp5 { .. } => {
                        let vco = p.in_mhz / a as f64 * f as f64 * q as f64;
                        // ecppll: the EHXPLLL's output is 10 to 400 MHz.
                        assert!(vco / q as f64 >= 10.0, "{}: PLL output", b.name);
                        (vco, vco / q as f64 / p.fabric_div as f64)
                    }
                    Family::Ice40 { .. } => {
                        assert_eq!(p.fabric_div, 1, "{}: no divider on iCE40", b.name);
                        let vco = p.in_mhz * (f + 1) as f64 / (a + 1) as f64;
                        (vco, vco / (1u32 << q) as f64)
                    }
                };
                assert!(
                    (out - p.out_mhz).abs() < 1e-9,
                    "{}: {out} != {}",
                    b.name,
                    p.out_mhz
                );
                let range = match b.family {
                    Family::Ecp5 { .. } => 400.0..=800.0,
                    Family::Ice40 { .. } => 533.0..=1066.0,
                };
                assert!(range.contains(&vco), "{}: VCO {vco} MHz", b.name);
            }
        }
    }

    #[test]
    fn a_clock_below_the_pll_range_is_the_pll_halved_in_a_flip_flop() {
        let half = ULX3S.clock_verilog(6.25).unwrap();
        // The PLL is set (and its output constrained) at 12.5 MHz; the design gets the half.
        assert!(half.contains("FREQUENCY_PIN_CLKOP=\"12.5\""), "{half}");
        assert!(
            half.contains("always @(posedge pll_clk) half <= !half;"),
            "{half}"
        );
        assert!(half.contains("assign clk_out = half;"), "{half}");
        let direct = ULX3S.clock_verilog(10.0).unwrap();
        assert!(direct.contains("FREQUENCY_PIN_CLKOP=\"10\""), "{direct}");
        assert!(direct.contains("assign clk_out = pll_clk;"), "{direct}");
        assert!(!direct.contains("half"), "{direct}");
    }

    #[test]
    fn constraints_place_every_port() {
        let lpf = ULX3S.constraints();
        assert!(lpf.contains("LOCATE COMP \"clk\" SITE \"G2\";"));
        assert!(lpf.contains("LOCATE COMP \"uart_rx\" SITE \"M1\";"));
        assert!(lpf.contains("LOCATE COMP \"uart_tx\" SITE \"L4\";"));
        assert!(lpf.contains("LOCATE COMP \"led[7]\" SITE \"H3\";"));
        assert!(lpf.contains("FREQUENCY PORT \"clk\" 25 MHZ;"));
        assert_eq!(lpf.matches("IO_TYPE=LVCMOS33").count(), 12);
        let pcf = ICEBREAKER.constraints();
        assert!(pcf.contains("set_io clk 35"));
        assert!(pcf.contains("set_io -pullup yes uart_rx 6"));
        assert!(pcf.contains("set_io uart_tx 9"));
        assert!(pcf.contains("set_io led[1] 37"));
    }

    #[test]
    fn clocks_without_a_pll_are_named() {
        assert_eq!(ULX3S.pll_for(25.0), Ok(None));
        assert!(ULX3S.pll_for(50.0).unwrap().is_some());
        let e = ICEBREAKER.pll_for(48.0).unwrap_err().to_string();
        assert!(e.contains("48 MHz") && e.contains("24 MHz"), "{e}");
        assert_eq!(
            Board::by_name("arty").unwrap_err().to_string(),
            "unknown board 'arty' (boards: ulx3s, icebreaker)"
        );
        assert!(ULX3S.clock_verilog(50.0).unwrap().contains("EHXPLLL"));
        assert!(ICEBREAKER
            .clock_verilog(24.0)
            .unwrap()
            .contains("SB_PLL40_PAD"));
        assert!(e.contains("6 MHz (the oscillator halved)"), "{e}");
    }

    /// The up5k preset's 6 MHz: the iCEBreaker's 12 MHz oscillator through a toggle
    /// flip-flop (no PLL: the SB_PLL40 makes no less than 16 MHz).
    #[test]
    fn half_the_oscillator_is_a_flip_flop_without_a_pll() {
        let v = ICEBREAKER.clock_verilog(6.0).unwrap();
        assert!(v.contains("always @(posedge clk_in) half <= !half;"), "{v}");
        assert!(v.contains("assign clk_out = half;"), "{v}");
        assert!(!v.contains("SB_PLL40"), "{v}");
        // 12.5 MHz on the ULX3S comes from its PLL, not from halving 25 MHz.
        assert!(ULX3S.clock_verilog(12.5).unwrap().contains("EHXPLLL"));
    }
}
