//! The iCEBreaker's bitstream, built end to end as `systole fpga build --board icebreaker`
//! builds it (yosys, nextpnr-ice40, icepack: about a minute): the board's default arch (up5k)
//! fits the UP5K and meets its clock after routing. Needs the tools (scripts/test.sh installs
//! them); fails without them. The ULX3S build takes 20 minutes and is not run here
//! (docs/fpga.md has its last figures).

use systole_arch::ArchConfig;
use systole_fpga::board::Board;
use systole_fpga::flow::build;

#[test]
fn icebreaker_bitstream_fits_the_up5k_and_meets_timing() {
    let board = Board::by_name("icebreaker").unwrap();
    let arch = ArchConfig::preset(board.default_arch).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let r = build(board, &arch, board.mem_bits, None, &[], dir.path(), |_| {})
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.target_mhz, arch.clock_mhz);
    assert!(r.fmax_mhz >= r.target_mhz, "{} MHz", r.fmax_mhz);
    let used = |res: &str| {
        r.utilization
            .iter()
            .find(|u| u.resource == res)
            .unwrap_or_else(|| panic!("no {res} in {:?}", r.utilization))
            .clone()
    };
    for res in ["ICESTORM_LC", "ICESTORM_RAM", "ICESTORM_DSP"] {
        let u = used(res);
        assert!(u.used > 0 && u.used <= u.available, "{u:?}");
        eprintln!("{res}: {} of {}", u.used, u.available);
    }
    // An UP5K bitstream is 104,090 bytes whatever the design.
    let bytes = std::fs::metadata(&r.bitstream).unwrap().len();
    assert_eq!(bytes, 104_090, "{}", r.bitstream.display());
    eprintln!(
        "Fmax {:.2} MHz (target {} MHz); steps {:?}",
        r.fmax_mhz, r.target_mhz, r.steps
    );
}
