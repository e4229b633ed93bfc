//! The energy table: what one event costs, in picojoules. Every default names its source
//! (`ENERGY_SOURCES`, rendered into docs/energy.md by `markdown()` and checked by a test), and
//! every entry can be overridden under `[energy]` in an arch TOML.
//!
//! The defaults are 45 nm figures. `scale_to_nm` moves the on-chip entries to another node
//! with the rule in `EnergyTable::effective` (energy per event proportional to
//! `(node / node_nm) ^ scale_exponent`); DRAM and static power are not scaled.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnergyTable {
    /// Technology node the entries are quoted at, in nm.
    pub node_nm: f64,
    /// Report energies at this node instead (on-chip entries scaled, see `effective`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale_to_nm: Option<f64>,
    /// Exponent of the node-scaling rule: 1 = constant-voltage scaling (capacitance only).
    pub scale_exponent: f64,
    pub int8_mul_pj: f64,
    pub int8_add_pj: f64,
    pub int32_add_pj: f64,
    pub int32_mul_pj: f64,
    /// One binary multiply-accumulate of an XNOR-popcount datapath: an XNOR gate and its share
    /// of the popcount adder tree, per bit.
    pub xnor_popcount_bit_pj: f64,
    /// 64-bit SRAM read at 8 KiB, 32 KiB and 1 MiB; buffer accesses interpolate on log2(size).
    pub sram_64b_8kib_pj: f64,
    pub sram_64b_32kib_pj: f64,
    pub sram_64b_1mib_pj: f64,
    /// One 64-bit DRAM transfer.
    pub dram_64b_pj: f64,
    /// Static (leakage + clock tree) power; zero unless measured for a given technology.
    pub static_mw: f64,
}

/// Horowitz's 8-bit add, 0.03 pJ, is about eight one-bit full adders; an XNOR-popcount bit is
/// one XNOR (about half a full adder: a full adder is two XOR/XNOR stages plus a majority
/// gate) and about one full adder of the popcount tree (a K-input popcount needs K - log2 K
/// full adders), so 1.5 full adders.
pub const XNOR_POPCOUNT_BIT_PJ_45NM: f64 = 0.03 / 8.0 * 1.5;

impl Default for EnergyTable {
    fn default() -> Self {
        EnergyTable {
            node_nm: 45.0,
            scale_to_nm: None,
            scale_exponent: 1.0,
            int8_mul_pj: 0.2,
            int8_add_pj: 0.03,
            int32_add_pj: 0.1,
            int32_mul_pj: 3.1,
            xnor_popcount_bit_pj: XNOR_POPCOUNT_BIT_PJ_45NM,
            sram_64b_8kib_pj: 10.0,
            sram_64b_32kib_pj: 20.0,
            sram_64b_1mib_pj: 100.0,
            dram_64b_pj: 1950.0,
            static_mw: 0.0,
        }
    }
}

/// Per-event entries (picojoules) that `scale_to_nm` scales and that must all be given when
/// `node_nm` is not the defaults' 45 nm.
pub const ON_CHIP_ENTRIES: &[&str] = &[
    "int8_mul_pj",
    "int8_add_pj",
    "int32_add_pj",
    "int32_mul_pj",
    "xnor_popcount_bit_pj",
    "sram_64b_8kib_pj",
    "sram_64b_32kib_pj",
    "sram_64b_1mib_pj",
];

/// (field, unit, source) for every entry of `EnergyTable`.
pub const ENERGY_SOURCES: &[(&str, &str, &str)] = &[
    (
        "node_nm",
        "nm",
        "Horowitz, \"Computing's Energy Problem (and what we can do about it)\", ISSCC 2014: all figures at 45 nm",
    ),
    (
        "scale_to_nm",
        "nm",
        "no default (energies reported at `node_nm`); set it, or pass `--node-nm`, to scale the on-chip entries",
    ),
    (
        "scale_exponent",
        "",
        "constant-voltage scaling: switching energy is C*V^2 (Dennard et al., IEEE JSSC 1974), capacitance shrinks with feature size while supply voltage has stayed near 1 V since about 90 nm (Horowitz ISSCC 2014), so energy scales with node^1; Dennard's constant-field scaling would be 3",
    ),
    (
        "int8_mul_pj",
        "pJ",
        "Horowitz ISSCC 2014, 8-bit integer multiply 0.2 pJ",
    ),
    (
        "int8_add_pj",
        "pJ",
        "Horowitz ISSCC 2014, 8-bit integer add 0.03 pJ",
    ),
    (
        "int32_add_pj",
        "pJ",
        "Horowitz ISSCC 2014, 32-bit integer add 0.1 pJ",
    ),
    (
        "int32_mul_pj",
        "pJ",
        "Horowitz ISSCC 2014, 32-bit integer multiply 3.1 pJ",
    ),
    (
        "xnor_popcount_bit_pj",
        "pJ",
        "derived from Horowitz ISSCC 2014: 8-bit add 0.03 pJ / 8 = 0.00375 pJ per full adder; one XNOR (half a full adder) plus one full adder of the popcount tree = 1.5 full adders",
    ),
    (
        "sram_64b_8kib_pj",
        "pJ",
        "Horowitz ISSCC 2014, 64-bit read from an 8 KB SRAM 10 pJ",
    ),
    (
        "sram_64b_32kib_pj",
        "pJ",
        "Horowitz ISSCC 2014, 64-bit read from a 32 KB SRAM 20 pJ",
    ),
    (
        "sram_64b_1mib_pj",
        "pJ",
        "Horowitz ISSCC 2014, 64-bit read from a 1 MB SRAM 100 pJ",
    ),
    (
        "dram_64b_pj",
        "pJ",
        "Horowitz ISSCC 2014, DRAM 1.3-2.6 nJ per 64 bits: midpoint 1.95 nJ; not node-scaled (off-chip interface and DRAM process)",
    ),
    (
        "static_mw",
        "mW",
        "no default: static power depends on the device; 0 leaves it out; not node-scaled",
    ),
];

impl EnergyTable {
    fn entries(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("node_nm", self.node_nm),
            ("scale_exponent", self.scale_exponent),
            ("int8_mul_pj", self.int8_mul_pj),
            ("int8_add_pj", self.int8_add_pj),
            ("int32_add_pj", self.int32_add_pj),
            ("int32_mul_pj", self.int32_mul_pj),
            ("xnor_popcount_bit_pj", self.xnor_popcount_bit_pj),
            ("sram_64b_8kib_pj", self.sram_64b_8kib_pj),
            ("sram_64b_32kib_pj", self.sram_64b_32kib_pj),
            ("sram_64b_1mib_pj", self.sram_64b_1mib_pj),
            ("dram_64b_pj", self.dram_64b_pj),
            ("static_mw", self.static_mw),
        ]
    }

    /// Checks every entry; the error is (`energy.FIELD`, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (name, v) in self.entries() {
            if !(v.is_finite() && v >= 0.0) {
                return Err((
                    format!("energy.{name}"),
                    format!("must be a non-negative number, got {v}"),
                ));
            }
        }
        for (name, v) in [
            ("node_nm", self.node_nm),
            ("scale_exponent", self.scale_exponent),
        ] {
            if v == 0.0 {
                return Err((format!("energy.{name}"), "must be positive".into()));
            }
        }
        if let Some(n) = self.scale_to_nm {
            if !(n.is_finite() && n > 0.0) {
                return Err((
                    "energy.scale_to_nm".into(),
                    format!("must be a positive number of nm, got {n}"),
                ));
            }
        }
        Ok(())
    }

    /// Checks the entries an `[energy]` table must give: the defaults are 45 nm figures, so a
    /// table that moves `node_nm` elsewhere must quote every on-chip entry at that node (or keep
    /// 45 nm and use `scale_to_nm`). `given` lists the keys the TOML table has.
    pub fn check_required(&self, given: &[&str]) -> Result<(), (String, String)> {
        if self.node_nm == 45.0 {
            return Ok(());
        }
        for name in ON_CHIP_ENTRIES {
            if !given.contains(name) {
                return Err((
                    format!("energy.{name}"),
                    format!(
                        "missing: required when node_nm = {} (the defaults are 45 nm figures; keep node_nm = 45 and set scale_to_nm to scale them)",
                        self.node_nm
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The factor the node-scaling rule applies to on-chip entries.
    pub fn scale_factor(&self) -> f64 {
        match self.scale_to_nm {
            Some(to) => (to / self.node_nm).powf(self.scale_exponent),
            None => 1.0,
        }
    }

    /// The table in force: with `scale_to_nm`, every on-chip per-event entry multiplied by
    /// `(scale_to_nm / node_nm) ^ scale_exponent` and `node_nm` set to the target; DRAM (an
    /// off-chip interface on its own process) and the measured static power unchanged.
    pub fn effective(&self) -> EnergyTable {
        let Some(to) = self.scale_to_nm else {
            return self.clone();
        };
        let f = self.scale_factor();
        EnergyTable {
            node_nm: to,
            scale_to_nm: None,
            scale_exponent: self.scale_exponent,
            int8_mul_pj: self.int8_mul_pj * f,
            int8_add_pj: self.int8_add_pj * f,
            int32_add_pj: self.int32_add_pj * f,
            int32_mul_pj: self.int32_mul_pj * f,
            xnor_popcount_bit_pj: self.xnor_popcount_bit_pj * f,
            sram_64b_8kib_pj: self.sram_64b_8kib_pj * f,
            sram_64b_32kib_pj: self.sram_64b_32kib_pj * f,
            sram_64b_1mib_pj: self.sram_64b_1mib_pj * f,
            dram_64b_pj: self.dram_64b_pj,
            static_mw: self.static_mw,
        }
    }

    /// Energy of one 64-bit access to an SRAM of `size_bytes`: piecewise linear in log2(size)
    /// through Horowitz's three points, flat below 8 KiB and extrapolated above 1 MiB.
    pub fn sram_64b_pj(&self, size_bytes: u64) -> f64 {
        let x = (size_bytes.max(1) as f64).log2();
        let pts = [
            (13.0, self.sram_64b_8kib_pj),
            (15.0, self.sram_64b_32kib_pj),
            (20.0, self.sram_64b_1mib_pj),
        ];
        if x <= pts[0].0 {
            return pts[0].1;
        }
        let (lo, hi) = if x <= pts[1].0 {
            (pts[0], pts[1])
        } else {
            (pts[1], pts[2])
        };
        lo.1 + (hi.1 - lo.1) * (x - lo.0) / (hi.0 - lo.0)
    }

    /// docs/energy.md: every entry with its default and source, the scaling rule and how the
    /// emulator's events are priced.
    pub fn markdown() -> String {
        let d = EnergyTable::default();
        let value = |f: &str| -> String {
            match f {
                "scale_to_nm" => "(none)".into(),
                _ => {
                    let v = d
                        .entries()
                        .into_iter()
                        .find(|(n, _)| *n == f)
                        .map(|(_, v)| v)
                        .expect("every source names an entry");
                    format!("{v}")
                }
            }
        };
        let mut s = String::from(
            "# Energy table\n\n\
             <!-- Generated from arch/src/energy.rs (ENERGY_SOURCES); `cargo test -p systole-arch` fails\n\
             when it drifts, `SYSTOLE_BLESS=1 cargo test -p systole-arch energy` rewrites it. -->\n\n\
             Every default of the `[energy]` table of an arch config, with its source. Any entry can be\n\
             overridden in the arch TOML; negative or NaN entries are rejected with the entry's name.\n\n\
             | entry | default | unit | source |\n|---|---|---|---|\n",
        );
        for (f, unit, src) in ENERGY_SOURCES {
            s.push_str(&format!("| `{f}` | {} | {unit} | {src} |\n", value(f)));
        }
        s.push_str(&format!(
            "\n## Technology-node scaling\n\n\
             `scale_to_nm = N` under `[energy]` (or `systole estimate --node-nm N`) reports energies at\n\
             N nm: every on-chip per-event entry ({}) is multiplied by\n\
             `(N / node_nm) ^ scale_exponent`. With the default exponent 1 this is constant-voltage\n\
             scaling: switching energy is `C * V^2` (Dennard et al., \"Design of ion-implanted MOSFET's\n\
             with very small physical dimensions\", IEEE JSSC 1974), wire and gate capacitance shrink\n\
             in proportion to the feature size, and supply voltage has stayed near 1 V since about\n\
             90 nm (Horowitz, ISSCC 2014), so energy per operation falls about linearly with the node.\n\
             It is a first-order rule, not a process model: published per-node fits (for example\n\
             Stillmaker and Baas, Integration 2017) differ from it by tens of percent at some nodes;\n\
             a user with numbers for a real process should quote them directly (set `node_nm` and\n\
             every on-chip entry, which the validator then requires). DRAM energy is an off-chip\n\
             interface on its own process and `static_mw` a measured figure: neither is scaled.\n\
             Example: at 28 nm the factor is 28 / 45 = {:.3}, an int8 multiply costs {:.4} pJ.\n",
            ON_CHIP_ENTRIES
                .iter()
                .map(|e| format!("`{e}`"))
                .collect::<Vec<_>>()
                .join(", "),
            28.0 / 45.0,
            0.2 * 28.0 / 45.0,
        ));
        s.push_str(
            "\n## How events are priced\n\n\
             | component | events (emulator/src/stats.rs) | price |\n|---|---|---|\n\
             | MACs | PE slots the array clocks (rows x cols per streamed line) | `int8_mul_pj + int32_add_pj` |\n\
             | XNOR MACs | the same slots of layers whose weights and inputs are both binary, if run on an XNOR-popcount datapath (`estimate` reports `mac_xnor_pj` beside the int8 figure) | `xnor_popcount_bit_pj` |\n\
             | PPU | alu lane ops, alu multiplies, requantizer lanes, threshold compares | `int32_add_pj`, `int32_mul_pj`, `int32_mul_pj + 4 int32_add_pj`, `int32_add_pj` |\n\
             | buffers | bytes read and written per buffer, in 64-bit words | `sram_64b_pj(bank size)`: log2-interpolated through the 8 KiB, 32 KiB and 1 MiB points |\n\
             | DRAM | bytes read and written, in 64-bit words | `dram_64b_pj` |\n\
             | control | two 64-bit instruction-memory reads per instruction | `sram_64b_pj(imem size)` |\n\
             | static | latency | `static_mw` |\n",
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn sram_interpolation_hits_the_cited_points() {
        let e = EnergyTable::default();
        assert_eq!(e.sram_64b_pj(8 * 1024), 10.0);
        assert_eq!(e.sram_64b_pj(32 * 1024), 20.0);
        assert_eq!(e.sram_64b_pj(1 << 20), 100.0);
        assert_eq!(e.sram_64b_pj(1024), 10.0);
        assert!((e.sram_64b_pj(16 * 1024) - 15.0).abs() < 1e-9);
    }

    #[test]
    fn every_field_has_a_source() {
        let t = toml::to_string(&EnergyTable {
            scale_to_nm: Some(28.0),
            ..Default::default()
        })
        .unwrap();
        let table: toml::Table = toml::from_str(&t).unwrap();
        for k in table.keys() {
            assert!(
                ENERGY_SOURCES.iter().any(|(f, _, _)| f == k),
                "{k} has no source"
            );
        }
        assert_eq!(table.len(), ENERGY_SOURCES.len());
        for e in ON_CHIP_ENTRIES {
            assert!(table.contains_key(*e), "{e}");
        }
    }

    #[test]
    fn node_scaling_follows_the_documented_rule() {
        let e = EnergyTable {
            scale_to_nm: Some(22.5),
            ..Default::default()
        };
        let s = e.effective();
        assert_eq!(s.node_nm, 22.5);
        assert!((s.int8_mul_pj - 0.1).abs() < 1e-12);
        assert!((s.sram_64b_1mib_pj - 50.0).abs() < 1e-9);
        assert!((s.xnor_popcount_bit_pj - XNOR_POPCOUNT_BIT_PJ_45NM / 2.0).abs() < 1e-15);
        // Off-chip and measured entries stay.
        assert_eq!(s.dram_64b_pj, 1950.0);
        assert_eq!(s.static_mw, 0.0);
        let cubic = EnergyTable {
            scale_exponent: 3.0,
            ..e.clone()
        };
        assert!((cubic.effective().int8_mul_pj - 0.2 / 8.0).abs() < 1e-12);
        // No target: unchanged.
        assert_eq!(EnergyTable::default().effective(), EnergyTable::default());
    }

    #[test]
    fn xnor_entry_is_cheaper_than_an_int8_mac() {
        let e = EnergyTable::default();
        assert!((e.xnor_popcount_bit_pj - 0.005625).abs() < 1e-15);
        assert!(e.xnor_popcount_bit_pj < (e.int8_mul_pj + e.int32_add_pj) / 10.0);
    }

    #[test]
    fn bad_entries_are_named() {
        type Edit = fn(&mut EnergyTable);
        let cases: [(Edit, &str); 6] = [
            (|e| e.int8_mul_pj = -0.1, "energy.int8_mul_pj"),
            (|e| e.dram_64b_pj = f64::NAN, "energy.dram_64b_pj"),
            (
                |e| e.xnor_popcount_bit_pj = f64::INFINITY,
                "energy.xnor_popcount_bit_pj",
            ),
            (|e| e.node_nm = 0.0, "energy.node_nm"),
            (|e| e.scale_to_nm = Some(-7.0), "energy.scale_to_nm"),
            (|e| e.scale_exponent = 0.0, "energy.scale_exponent"),
        ];
        for (edit, field) in cases {
            let mut e = EnergyTable::default();
            edit(&mut e);
            assert_eq!(e.validate().unwrap_err().0, field);
        }
        let e = EnergyTable {
            node_nm: 28.0,
            ..Default::default()
        };
        let (f, msg) = e.check_required(&["node_nm", "int8_mul_pj"]).unwrap_err();
        assert_eq!(f, "energy.int8_add_pj");
        assert!(msg.contains("required when node_nm = 28"), "{msg}");
        assert!(e.check_required(ON_CHIP_ENTRIES).is_ok());
    }

    #[test]
    fn energy_docs_are_generated_from_the_table() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/energy.md");
        let fresh = EnergyTable::markdown();
        if std::env::var_os("SYSTOLE_BLESS").is_some() {
            std::fs::write(&path, &fresh).unwrap();
            return;
        }
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            current == fresh,
            "docs/energy.md is stale: run SYSTOLE_BLESS=1 cargo test -p systole-arch energy"
        );
        for (f, _, src) in ENERGY_SOURCES {
            assert!(current.contains(&format!("`{f}`")) && current.contains(src));
        }
    }
}
