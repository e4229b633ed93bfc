//! The energy table: what one event costs, in picojoules. Every default names its source
//! (`ENERGY_SOURCES`), and every entry can be overridden under `[energy]` in an arch TOML.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnergyTable {
    /// Technology node the defaults are quoted at, in nm.
    pub node_nm: f64,
    pub int8_mul_pj: f64,
    pub int8_add_pj: f64,
    pub int32_add_pj: f64,
    pub int32_mul_pj: f64,
    /// 64-bit SRAM read at 8 KiB, 32 KiB and 1 MiB; buffer accesses interpolate on log2(size).
    pub sram_64b_8kib_pj: f64,
    pub sram_64b_32kib_pj: f64,
    pub sram_64b_1mib_pj: f64,
    /// One 64-bit DRAM transfer.
    pub dram_64b_pj: f64,
    /// Static (leakage + clock tree) power; zero unless measured for a given technology.
    pub static_mw: f64,
}

impl Default for EnergyTable {
    fn default() -> Self {
        EnergyTable {
            node_nm: 45.0,
            int8_mul_pj: 0.2,
            int8_add_pj: 0.03,
            int32_add_pj: 0.1,
            int32_mul_pj: 3.1,
            sram_64b_8kib_pj: 10.0,
            sram_64b_32kib_pj: 20.0,
            sram_64b_1mib_pj: 100.0,
            dram_64b_pj: 1950.0,
            static_mw: 0.0,
        }
    }
}

/// (field, source) for every default in `EnergyTable`.
pub const ENERGY_SOURCES: &[(&str, &str)] = &[
    (
        "node_nm",
        "Horowitz, \"Computing's Energy Problem\", ISSCC 2014: all figures at 45 nm",
    ),
    (
        "int8_mul_pj",
        "Horowitz ISSCC 2014, 8-bit integer multiply 0.2 pJ",
    ),
    (
        "int8_add_pj",
        "Horowitz ISSCC 2014, 8-bit integer add 0.03 pJ",
    ),
    (
        "int32_add_pj",
        "Horowitz ISSCC 2014, 32-bit integer add 0.1 pJ",
    ),
    (
        "int32_mul_pj",
        "Horowitz ISSCC 2014, 32-bit integer multiply 3.1 pJ",
    ),
    (
        "sram_64b_8kib_pj",
        "Horowitz ISSCC 2014, 64-bit read from an 8 KB SRAM 10 pJ",
    ),
    (
        "sram_64b_32kib_pj",
        "Horowitz ISSCC 2014, 64-bit read from a 32 KB SRAM 20 pJ",
    ),
    (
        "sram_64b_1mib_pj",
        "Horowitz ISSCC 2014, 64-bit read from a 1 MB SRAM 100 pJ",
    ),
    (
        "dram_64b_pj",
        "Horowitz ISSCC 2014, DRAM 1.3-2.6 nJ per 64 bits: midpoint 1.95 nJ",
    ),
    (
        "static_mw",
        "no default: static power depends on the device; 0 leaves it out",
    ),
];

impl EnergyTable {
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        let fields = [
            ("node_nm", self.node_nm),
            ("int8_mul_pj", self.int8_mul_pj),
            ("int8_add_pj", self.int8_add_pj),
            ("int32_add_pj", self.int32_add_pj),
            ("int32_mul_pj", self.int32_mul_pj),
            ("sram_64b_8kib_pj", self.sram_64b_8kib_pj),
            ("sram_64b_32kib_pj", self.sram_64b_32kib_pj),
            ("sram_64b_1mib_pj", self.sram_64b_1mib_pj),
            ("dram_64b_pj", self.dram_64b_pj),
            ("static_mw", self.static_mw),
        ];
        for (name, v) in fields {
            if !(v.is_finite() && v >= 0.0) {
                return Err((
                    format!("energy.{name}"),
                    format!("must be a non-negative number, got {v}"),
                ));
            }
        }
        if self.node_nm == 0.0 {
            return Err(("energy.node_nm".into(), "must be positive".into()));
        }
        Ok(())
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
        let t = toml::to_string(&EnergyTable::default()).unwrap();
        let table: toml::Table = toml::from_str(&t).unwrap();
        for k in table.keys() {
            assert!(
                ENERGY_SOURCES.iter().any(|(f, _)| f == k),
                "{k} has no source"
            );
        }
        assert_eq!(table.len(), ENERGY_SOURCES.len());
    }
}
