//! The DMA engines' Verilog (`systole_load`, `systole_store` in hdl/src/dma.rs), simulated in
//! Icarus Verilog, against their port-level twins (`systole_emulator::rtl_twins`, themselves
//! checked against `dma::LoadExec` / `StoreExec`) on every output of every cycle. Stimuli:
//! random instruction sequences, a memory with random latency that also withholds beats at
//! random, and random buffer-port grants; they are produced in closed loop with the twin and
//! replayed open loop on the Verilog. Needs iverilog on PATH; fails without it.

use proptest::prelude::*;
use systole_arch::isa::{Deps, Insn, Load, LoadBuf, Op, Store, StoreBuf};
use systole_emulator::dram::ReadChannel;
use systole_emulator::randprog::Rng;
use systole_emulator::rtl_twins::*;
use systole_hdl::icarus;
use systole_hdl::verilog::Port;

fn port(name: &str, dir: &str, width: usize) -> Port {
    Port {
        name: name.into(),
        dir: dir.into(),
        width,
        signed: false,
    }
}

fn words(op: Op) -> (i64, i64) {
    let b = Insn {
        op,
        deps: Deps::default(),
    }
    .encode()
    .unwrap();
    let lo = u64::from_le_bytes(b[..8].try_into().unwrap());
    let hi = u64::from_le_bytes(b[8..].try_into().unwrap());
    (lo as i64, hi as i64)
}

fn le(bytes: &[u8]) -> i64 {
    bytes.iter().rev().fold(0u64, |a, &x| (a << 8) | x as u64) as i64
}

fn bytes_of(v: i64, n: usize) -> Vec<u8> {
    (0..n).map(|i| (v as u64 >> (8 * i)) as u8).collect()
}

fn sim(wrapper: &str, ports: &[Port], stimuli: &[Vec<i64>]) -> Vec<Vec<i64>> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dma.v"), systole_hdl::dma::VERILOG).unwrap();
    std::fs::write(dir.path().join("wrap.v"), wrapper).unwrap();
    icarus::run(dir.path(), &["dma.v", "wrap.v"], "wrap", ports, stimuli)
        .unwrap_or_else(|e| panic!("{e} (install iverilog: scripts/test.sh)"))
}

fn random_load(rng: &mut Rng) -> Load {
    Load {
        buf: rng.pick(LoadBuf::ALL),
        sram: rng.range(0, 100) as u32,
        dram: rng.range(0, 1000) as u32,
        rows: rng.range(0, 3) as u32,
        cols: rng.range(0, 3) as u32,
        stride: rng.range(0, 200) as u32,
        pad_top: rng.range(0, 2) as u32,
        pad_bottom: rng.range(0, 2) as u32,
        pad_left: rng.range(0, 2) as u32,
        pad_right: rng.range(0, 2) as u32,
        pad_value: rng.range(0, 255) as i32 - 128,
    }
}

/// Runs a sequence of loads on an R x C array with B-byte beats; returns cycles compared.
fn check_load(r: usize, c: usize, b: usize, seed: u64) -> usize {
    let wrapper = format!(
        "module wrap(input clock, input rst, input start, input [63:0] insn_lo, input [63:0] insn_hi,
    input rresp_valid, input [{bw}:0] rresp_data, input wgrant,
    output rreq_valid, output [31:0] rreq_addr, output [31:0] rreq_beats, output rresp_ready,
    output wreq, output [1:0] wbuf, output [15:0] wline, output [{iw}:0] wdata_inp,
    output [{cw}:0] wdata_wgt, output [{aw}:0] wdata_acc, output done);
    systole_load #(.R({r}), .C({c}), .B({b})) u(.clock(clock), .rst(rst), .start(start),
        .ahead(), .dr_done(),
        .insn({{insn_hi, insn_lo}}), .done(done), .rreq_valid(rreq_valid), .rreq_addr(rreq_addr),
        .rreq_beats(rreq_beats), .rresp_valid(rresp_valid), .rresp_data(rresp_data),
        .rresp_ready(rresp_ready), .wreq(wreq), .wbuf(wbuf), .wline(wline), .wdata_inp(wdata_inp),
        .wdata_wgt(wdata_wgt), .wdata_acc(wdata_acc), .wgrant(wgrant));
endmodule
",
        bw = 8 * b - 1,
        iw = 8 * r - 1,
        cw = 8 * c - 1,
        aw = 32 * c - 1,
    );
    let ports = vec![
        port("clock", "in", 1),
        port("rst", "in", 1),
        port("start", "in", 1),
        port("insn_lo", "in", 64),
        port("insn_hi", "in", 64),
        port("rresp_valid", "in", 1),
        port("rresp_data", "in", 8 * b),
        port("wgrant", "in", 1),
        port("rreq_valid", "out", 1),
        port("rreq_addr", "out", 32),
        port("rreq_beats", "out", 32),
        port("rresp_ready", "out", 1),
        port("wreq", "out", 1),
        port("wbuf", "out", 2),
        port("wline", "out", 16),
        port("wdata_inp", "out", 8 * r),
        port("wdata_wgt", "out", 8 * c),
        port("wdata_acc", "out", 32 * c),
        port("done", "out", 1),
    ];
    let mut rng = Rng::new(seed);
    let lat = rng.range(1, 6) as u32;
    let mut tw = LoadEngine::new(r as u32, c as u32, b as u32);
    let mut ch = ReadChannel::default();
    let mut stimuli = Vec::new();
    let mut expect = Vec::new();
    let mut left = 12;
    let mut gap = 1;
    for t in 0..3000u64 {
        let start = if !tw.busy() && left > 0 && gap == 0 {
            left -= 1;
            gap = rng.range(0, 2);
            Some(random_load(&mut rng))
        } else {
            if !tw.busy() && gap > 0 {
                gap -= 1;
            }
            None
        };
        let offer = ch.beat_ready(t) && !rng.chance(20);
        let beat: Vec<u8> = (0..b).map(|_| rng.next_u64() as u8).collect();
        let inp = LoadIn {
            start,
            beat: offer.then(|| beat.clone()),
            wgrant: !rng.chance(25),
        };
        let (lo, hi) = start.map_or((0, 0), |op| words(Op::Load(op)));
        stimuli.push(vec![
            0,
            start.is_some() as i64,
            lo,
            hi,
            offer as i64,
            le(&beat),
            inp.wgrant as i64,
        ]);
        let o = tw.step(&inp);
        if o.take {
            ch.take_beat();
        }
        if let Some((_, beats)) = o.rreq {
            ch.request(t, lat, beats);
        }
        expect.push((o, offer));
        if left == 0 && !tw.busy() {
            break;
        }
    }
    let got = sim(&wrapper, &ports, &stimuli);
    for (t, (row, (o, offer))) in got.iter().zip(&expect).enumerate() {
        let ctx = || format!("seed {seed}, {r}x{c} B={b}, cycle {t}: rtl {row:?}, twin {o:?}");
        assert_eq!(row[0] != 0, o.rreq.is_some(), "rreq_valid {}", ctx());
        if let Some((a, n)) = o.rreq {
            assert_eq!((row[1], row[2]), (a as i64, n as i64), "rreq {}", ctx());
        }
        assert_eq!(*offer && row[3] != 0, o.take, "take {}", ctx());
        assert_eq!(row[4] != 0, o.wreq.is_some(), "wreq {}", ctx());
        if let Some((buf, line, data)) = &o.wreq {
            assert_eq!(row[5], *buf as i64, "wbuf {}", ctx());
            assert_eq!(row[6], *line as i64, "wline {}", ctx());
            let rtl = match buf {
                LoadBuf::Inp => LineData::Bytes(bytes_of(row[7], r)),
                LoadBuf::Wgt => LineData::Bytes(bytes_of(row[8], c)),
                _ => LineData::Lanes(
                    bytes_of(row[9], 4 * c)
                        .chunks(4)
                        .map(|x| i32::from_le_bytes(x.try_into().unwrap()))
                        .collect(),
                ),
            };
            assert_eq!(&rtl, data, "wdata {}", ctx());
        }
        assert_eq!(row[10] != 0, o.done, "done {}", ctx());
    }
    got.len()
}

/// Runs a sequence of stores on a C-column array with B-byte beats.
fn check_store(c: usize, b: usize, xw: usize, seed: u64) -> usize {
    let wrapper = format!(
        "module wrap(input clock, input rst, input start, input [63:0] insn_lo, input [63:0] insn_hi,
    input sgrant, input [{ow}:0] out_rdata, input [{aw}:0] acc_rdata, input wack,
    output sreq, output sbuf, output [15:0] sline, output wvalid, output [31:0] waddr,
    output [{bw}:0] wdata, output [{sw}:0] wstrb, output wlast, output done);
    systole_store #(.C({c}), .B({b}), .XW({xw})) u(.clock(clock), .rst(rst), .start(start),
        .insn({{insn_hi, insn_lo}}), .done(done), .ahead(), .dr_done(), .sreq(sreq), .sbuf(sbuf), .sline(sline),
        .sgrant(sgrant), .out_rdata(out_rdata), .acc_rdata(acc_rdata), .wvalid(wvalid),
        .waddr(waddr), .wdata(wdata), .wstrb(wstrb), .wlast(wlast), .wack(wack));
endmodule
",
        ow = 8 * c - 1,
        aw = 32 * c - 1,
        bw = 8 * b - 1,
        sw = b - 1,
    );
    let ports = vec![
        port("clock", "in", 1),
        port("rst", "in", 1),
        port("start", "in", 1),
        port("insn_lo", "in", 64),
        port("insn_hi", "in", 64),
        port("sgrant", "in", 1),
        port("out_rdata", "in", 8 * c),
        port("acc_rdata", "in", 32 * c),
        port("wack", "in", 1),
        port("sreq", "out", 1),
        port("sbuf", "out", 1),
        port("sline", "out", 16),
        port("wvalid", "out", 1),
        port("waddr", "out", 32),
        port("wdata", "out", 8 * b),
        port("wstrb", "out", b),
        port("wlast", "out", 1),
        port("done", "out", 1),
    ];
    let mut rng = Rng::new(seed);
    let lat = rng.range(1, 6);
    let line_bytes = |buf: StoreBuf, line: u32| -> Vec<u8> {
        let n = if buf == StoreBuf::Out { c } else { 4 * c };
        (0..n)
            .map(|i| (line as usize * 31 + i * 7 + buf as usize * 101) as u8)
            .collect()
    };
    let mut tw = StoreEngine::new(c as u32, b as u32, xw as u32);
    let mut stimuli = Vec::new();
    let mut expect = Vec::new();
    let (mut out_reg, mut acc_reg) = (vec![0u8; c], vec![0u8; 4 * c]);
    let mut acks: Vec<u64> = Vec::new();
    let mut send_buf = StoreBuf::Out;
    let mut left = 12;
    for t in 0..3000u64 {
        let start = (!tw.busy() && left > 0).then(|| {
            left -= 1;
            // (an accumulator line wider than 8 bytes does not fit the i64 stimuli)
            let buf = if 4 * c > 8 {
                StoreBuf::Out
            } else {
                rng.pick(StoreBuf::ALL)
            };
            Store {
                buf,
                sram: rng.range(0, 100) as u32,
                dram: rng.range(0, 1000) as u32,
                rows: rng.range(0, 3) as u32,
                cols: rng.range(0, 3) as u32,
                stride: rng.range(0, 200) as u32,
                // Packed bipolar lines where the arch could have them (cols % 8 == 0).
                pack: buf == StoreBuf::Out && c.is_multiple_of(8) && rng.chance(50),
                ..Default::default()
            }
        });
        let wack = acks.first() == Some(&t);
        if wack {
            acks.remove(0);
        }
        let sgrant = !rng.chance(25);
        let (lo, hi) = start.map_or((0, 0), |op| words(Op::Store(op)));
        stimuli.push(vec![
            0,
            start.is_some() as i64,
            lo,
            hi,
            sgrant as i64,
            le(&out_reg),
            le(&acc_reg),
            wack as i64,
        ]);
        // The send register is the store port of the buffer the current line came from.
        let rdata = match send_buf {
            StoreBuf::Out => out_reg.clone(),
            StoreBuf::Acc => acc_reg.clone(),
        };
        let o = tw.step(&StoreIn {
            start,
            sgrant,
            rdata,
            wack,
        });
        expect.push(o.clone());
        if o.last {
            acks.push(t + lat);
        }
        if let (Some((buf, line)), true) = (o.sreq, sgrant) {
            send_buf = buf;
            match buf {
                StoreBuf::Out => out_reg = line_bytes(buf, line),
                StoreBuf::Acc => acc_reg = line_bytes(buf, line),
            }
        }
        if left == 0 && !tw.busy() {
            break;
        }
    }
    let got = sim(&wrapper, &ports, &stimuli);
    let mut sent = 0;
    for (t, (row, o)) in got.iter().zip(&expect).enumerate() {
        let ctx = || format!("seed {seed}, C={c} B={b}, cycle {t}: rtl {row:?}, twin {o:?}");
        assert_eq!(row[0] != 0, o.sreq.is_some(), "sreq {}", ctx());
        if let Some((buf, line)) = o.sreq {
            assert_eq!(
                (row[1], row[2]),
                (buf as i64, line as i64),
                "sreq {}",
                ctx()
            );
        }
        assert_eq!(row[3] != 0, o.beat.is_some(), "wvalid {}", ctx());
        if let Some((addr, data)) = &o.beat {
            // The twin's beat holds the bytes written: the strobed ones.
            assert_eq!(row[4], *addr as i64, "waddr {}", ctx());
            assert_eq!(row[6], (1i64 << data.len()) - 1, "wstrb {}", ctx());
            assert_eq!(&bytes_of(row[5], b)[..data.len()], data, "wdata {}", ctx());
            sent += 1;
        }
        assert_eq!(row[7] != 0, o.last, "wlast {}", ctx());
        assert_eq!(row[8] != 0, o.done, "done {}", ctx());
    }
    assert!(sent > 0, "seed {seed}: no beat sent");
    got.len()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn load_verilog_equals_twin(seed in any::<u64>(), shape in 0usize..4) {
        let (r, c, b) = [(2, 2, 2), (4, 2, 2), (1, 1, 1), (2, 2, 1)][shape];
        check_load(r, c, b, seed);
    }

    #[test]
    fn store_verilog_equals_twin(seed in any::<u64>(), shape in 0usize..6) {
        // The last three also pack bipolar lines, 8, 4 and 2 bits a byte (xnor_bits): one
        // byte in a 4-byte beat, two bytes in a 2-byte beat, four bytes in four 1-byte beats.
        let (c, b, xw) = [(2, 2, 8), (1, 1, 8), (2, 1, 8), (8, 4, 8), (8, 2, 4), (8, 1, 2)][shape];
        check_store(c, b, xw, seed);
    }
}
