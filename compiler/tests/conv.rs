//! Convolutions, lowered and run on the emulator, equal the quantized reference
//! (`QModel::run`) bit for bit: the row-reuse schedule (stride 1, `gemm::emit_conv_rows`) and
//! the gathering one (strides, dilation), over random shapes that span several input-channel
//! tiles, k-chunks, output-channel tiles and items (with a short last one), with padding on
//! every side and a non-zero input zero point.

use proptest::prelude::*;
use std::ops::Range;
use systole_arch::ArchConfig;
use systole_compiler::lower::to_program;
use systole_compiler::qir::{ConvGeom, QData, QDense, QIo, QModel, QOut};
use systole_emulator::{run, IoData, RunOptions};

#[derive(Debug, Clone, Copy)]
struct Shape {
    cin: usize,
    h: usize,
    w: usize,
    k: [usize; 2],
    stride: usize,
    dilation: usize,
    /// top, left, bottom, right
    pads: [usize; 4],
    n: usize,
}

/// A square image and kernel, the same padding on every side, no dilation.
fn square(cin: usize, hw: usize, k: usize, stride: usize, pad: usize, n: usize) -> Shape {
    Shape {
        cin,
        h: hw,
        w: hw,
        k: [k, k],
        stride,
        dilation: 1,
        pads: [pad; 4],
        n,
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn i8(&mut self) -> i8 {
        self.next() as i8
    }
}

fn model(s: Shape, seed: u64) -> (QModel, Vec<i8>) {
    let mut rng = Rng(seed);
    let span = |k: usize| (k - 1) * s.dilation + 1;
    let oh = (s.h + s.pads[0] + s.pads[2] - span(s.k[0])) / s.stride + 1;
    let ow = (s.w + s.pads[1] + s.pads[3] - span(s.k[1])) / s.stride + 1;
    let k = s.k[0] * s.k[1] * s.cin;
    let weights = (0..k * s.n).map(|_| rng.i8()).collect();
    let bias = (0..s.n)
        .map(|_| (rng.next() % 4001) as i32 - 2000)
        .collect();
    let scales = (0..s.n)
        .map(|_| 1.0 / (256.0 + (rng.next() % 2048) as f32))
        .collect();
    let q = QModel {
        name: "conv".into(),
        m: 1,
        input: QIo::int8("x", vec![1, s.cin, s.h, s.w]),
        input_bipolar: false,
        layers: vec![QDense {
            name: "conv".into(),
            k,
            n: s.n,
            weights,
            weights2: None,
            bias,
            out: QOut::Int8 {
                scales,
                zp: 3,
                lo: -128,
                hi: 127,
            },
            conv: Some(ConvGeom {
                cin: s.cin,
                h: s.h,
                w: s.w,
                kh: s.k[0],
                kw: s.k[1],
                stride: [s.stride; 2],
                dilation: [s.dilation; 2],
                pads: s.pads,
                oh,
                ow,
                pad_value: -5,
            }),
            pool: None,
            flat_image: None,
            row_mul: None,
        }],
        output: QIo::int8("y", vec![1, s.n, oh, ow]),
    };
    let x = (0..s.cin * s.h * s.w).map(|_| rng.i8()).collect();
    (q, x)
}

/// A preset by name; `NAME+banked` is the preset with two weight registers per PE, so the
/// compiler emits chained matmuls; `+storeq` adds the store engine's requantizer lanes,
/// `-storeq` takes them away.
fn arch_named(name: &str) -> ArchConfig {
    for (suffix, on) in [("+storeq", true), ("-storeq", false)] {
        if let Some(base) = name.strip_suffix(suffix) {
            let mut a = arch_named(base);
            a.ppu.store_requant = on;
            a.name = name.into();
            return a;
        }
    }
    match name.strip_suffix("+banked") {
        Some(base) => {
            let mut a = ArchConfig::resolve(base).unwrap();
            a.array.weight_banks = 2;
            a.name = name.into();
            a
        }
        None => ArchConfig::resolve(name).unwrap(),
    }
}

fn check(arch: &str, s: Shape, seed: u64) {
    let arch = arch_named(arch);
    let (q, x) = model(s, seed);
    let (prog, _) = to_program(&arch, &q).unwrap_or_else(|e| panic!("{s:?} on {}: {e}", arch.name));
    let got = run(
        &prog,
        &arch,
        &[IoData::I8(x.clone())],
        &RunOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{s:?} on {}: {e}", arch.name));
    let QData::I8(want) = q.run(&x) else {
        panic!("int8 output")
    };
    assert_eq!(
        got.outputs,
        vec![IoData::I8(want)],
        "{s:?} seed {seed} on {}",
        arch.name
    );
}

/// Random shapes: channels, height, width, kernel sides, stride, dilation, padding per side
/// and output channels drawn from these ranges, kernels no larger than the padded image.
#[allow(clippy::too_many_arguments)]
fn shapes(
    cin: Range<usize>,
    h: Range<usize>,
    w: Range<usize>,
    k: Range<usize>,
    stride: Range<usize>,
    dilation: Range<usize>,
    pad: Range<usize>,
    n: Range<usize>,
) -> impl Strategy<Value = Shape> {
    (
        cin,
        h,
        w,
        (k.clone(), k),
        stride,
        dilation,
        (pad.clone(), pad.clone(), pad.clone(), pad),
        n,
    )
        .prop_filter_map("kernel larger than the padded image", |t| {
            let (cin, h, w, (kh, kw), stride, dilation, (pt, pl, pb, pr), n) = t;
            let s = Shape {
                cin,
                h,
                w,
                k: [kh, kw],
                stride,
                dilation,
                pads: [pt, pl, pb, pr],
                n,
            };
            let span = |k: usize| (k - 1) * dilation + 1;
            (h + pt + pb >= span(kh) && w + pl + pr >= span(kw)).then_some(s)
        })
}

fn shape() -> impl Strategy<Value = Shape> {
    shapes(1..40, 1..12, 1..14, 1..4, 1..3, 1..3, 0..3, 1..20)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_convolutions_match_the_reference(s in shape(), seed in any::<u64>(), arch in 0usize..4) {
        check(["ulx3s", "edge", "tiny+banked", "tiny+banked+storeq"][arch], s, seed);
    }
}

/// First layers and wide strided layers, the shapes that pack kernel columns into lines
/// (with the padding pass where there is side padding), chain each output row, hold their
/// weights and relax the load tokens: few channels, wide images.
fn wide_shape() -> impl Strategy<Value = Shape> {
    shapes(1..7, 5..24, 16..100, 1..8, 1..4, 1..3, 0..4, 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_first_layers_match_the_reference(
        s in wide_shape(),
        seed in any::<u64>(),
        arch in 0usize..4,
    ) {
        check(["ulx3s", "ulx3s+banked", "edge+banked", "scalesim32"][arch], s, seed);
    }
}

#[test]
fn resnet_like_convolutions_match_the_reference() {
    let s = square;
    // Several input-channel tiles and k-chunks, several output-channel tiles, items of a few
    // output rows with a short last one (ulx3s: 8 x 8 array, 2048-line input buffer).
    check("ulx3s", s(40, 30, 3, 1, 1, 20), 1);
    check("ulx3s", s(64, 12, 3, 1, 1, 16), 2);
    check("edge", s(48, 21, 3, 1, 1, 40), 3);
    check("ulx3s", s(24, 17, 1, 1, 0, 12), 4);
    check("ulx3s", s(16, 15, 3, 2, 1, 16), 5);
    check("scalesim32", s(64, 14, 3, 1, 1, 64), 6);
    // Conv5_1a of ResNet-18: stride 2, 8 channel tiles, 16 n-tiles; its items are shortened
    // so that all channel tiles' phase blocks stay resident across the n-tiles.
    check("scalesim32", s(256, 14, 3, 2, 0, 512), 8);
    check("ulx3s", s(64, 28, 3, 2, 1, 64), 9);
    // Chained matmuls: chunks, n-tiles, strides 1 and 2, 1 x 1.
    check("ulx3s+banked", s(40, 30, 3, 1, 1, 20), 10);
    check("ulx3s+banked", s(16, 15, 3, 2, 1, 16), 11);
    check("ulx3s+banked", s(24, 17, 1, 1, 0, 12), 12);
    check("ulx3s+banked", s(64, 28, 3, 2, 1, 64), 13);
    // One channel tile: weights per tile, taps phase-major (permuted in DRAM at stride 2).
    check("ulx3s+banked", s(8, 15, 3, 1, 1, 16), 14);
    check("ulx3s+banked", s(8, 15, 3, 2, 1, 16), 15);
    check("ulx3s+banked", s(5, 13, 5, 3, 2, 9), 16);
}

/// With the store engine's requantizer lanes (`ppu.store_requant`) the gathered layers (strided
/// 1 x 1 convolutions: ResNet-18's shortcuts) requantize in their stores, so no `requant`
/// runs on the compute unit; the row-reuse layers still requantize there. Bit for bit.
#[test]
fn stores_requantize_where_the_arch_has_the_lanes() {
    use systole_arch::isa::Op;
    let s = square;
    for (arch, shape, seed, at_store) in [
        ("scalesim32+storeq", s(128, 28, 1, 2, 0, 256), 30, true),
        ("scalesim32+storeq", s(64, 56, 1, 2, 0, 128), 31, true),
        ("tiny+banked+storeq", s(12, 9, 1, 2, 0, 10), 32, true),
        ("edge+storeq", s(24, 17, 1, 1, 0, 12), 33, true),
        ("scalesim32+storeq", s(64, 14, 3, 1, 1, 64), 34, false),
        ("edge", s(24, 17, 1, 1, 0, 12), 35, false),
        // An output slot that fills its accumulator half leaves no room for the store
        // engine's parameter lines: requantized on the compute unit, parameters skipping the
        // settings lines in DRAM.
        ("tiny+banked+storeq", s(8, 9, 1, 1, 0, 4), 36, false),
    ] {
        let (prog, _) = to_program(&arch_named(arch), &model(shape, seed).0).unwrap();
        let count = |f: &dyn Fn(&Op) -> bool| prog.code.iter().filter(|i| f(&i.op)).count();
        let (stores, requants) = (
            count(&|op| matches!(op, Op::Store(st) if st.requant)),
            count(&|op| matches!(op, Op::Requant(_))),
        );
        if at_store {
            assert!(
                stores > 0 && requants == 0,
                "{shape:?} on {arch}: {stores} {requants}"
            );
        } else {
            assert!(
                stores == 0 && requants > 0,
                "{shape:?} on {arch}: {stores} {requants}"
            );
        }
        check(arch, shape, seed);
    }
}

/// A gathered layer's first item runs in pieces of output rows, each chain behind its own
/// rows' input loads and token: more chains that wait for a load than outputs, as many tokens
/// popped as pushed. The first piece starts from the bias row and the others accumulate onto
/// its copy. Bit for bit.
#[test]
fn the_first_gathered_item_starts_in_pieces() {
    use systole_arch::isa::Op;
    let s = square;
    for (arch, shape, seed) in [
        ("scalesim32", s(128, 28, 1, 2, 0, 256), 40),
        ("scalesim32", s(64, 56, 1, 2, 0, 128), 41),
        ("tiny+banked", s(12, 17, 1, 2, 0, 10), 42),
        ("tiny+banked+storeq", s(12, 17, 1, 2, 0, 10), 43),
    ] {
        let (prog, _) = to_program(&arch_named(arch), &model(shape, seed).0).unwrap();
        let count =
            |f: &dyn Fn(&systole_arch::Insn) -> bool| prog.code.iter().filter(|i| f(i)).count();
        let waits = count(&|i| matches!(i.op, Op::MatMul(_)) && i.deps.pop_prev);
        let outputs = count(&|i| matches!(i.op, Op::Store(_)));
        let pushed = count(&|i| matches!(i.op, Op::Load(_)) && i.deps.push_next);
        let popped = count(&|i| i.unit() == systole_arch::isa::Unit::Compute && i.deps.pop_prev);
        assert!(
            waits > outputs,
            "{shape:?} on {arch}: {waits} chains wait, {outputs} outputs"
        );
        assert_eq!(pushed, popped, "{shape:?} on {arch}");
        // The later pieces' bias: one broadcast of the bias row (both sources stride 0),
        // right behind the first piece's chain, and no `alu` over the whole output after it.
        let first_chain = prog
            .code
            .iter()
            .position(|i| matches!(i.op, Op::MatMul(_)))
            .unwrap();
        match prog.code[first_chain + 1].op {
            Op::Alu(a) => assert!(
                a.a_stride == 0 && a.b_stride == 0 && a.m > 0,
                "{shape:?} on {arch}: {a:?}"
            ),
            op => panic!("{shape:?} on {arch}: {op:?} after the first piece"),
        }
        assert_eq!(
            count(&|i| matches!(i.op, Op::Alu(a) if a.b_stride == 0 && a.a_stride == 1)),
            0,
            "{shape:?} on {arch}"
        );
        check(arch, shape, seed);
    }
}

/// Strided convolutions keep whole image rows in one block per column phase (merged row
/// phases, `ConvRows::phases`): the matmuls stream each output row and skip to the next one
/// (`skip` = stride x wq - ow, past the 3 bits it once had), and without left and right
/// padding one load moves many image rows of a phase. Where the skip does not fit its 6 bits
/// the rows are split into phases too (skip = the junk columns only), or, with two weight
/// registers, each output row runs as its own chains (no skip). All bit for bit.
#[test]
fn strided_convolutions_merge_their_row_phases() {
    use systole_arch::isa::{LoadBuf, Op};
    let s = square;
    // (arch, shape, the matmuls' skip, whether an input load moves several image rows)
    for (i, (arch, shape, skip, merged_loads)) in [
        // ow 14, wq 15, s wq = w: loads merge.
        ("scalesim32", s(64, 30, 3, 2, 0, 128), 2 * 15 - 14, true),
        // Padded: ow 8, wq 9, a load per image row.
        ("ulx3s+banked", s(16, 15, 3, 2, 1, 16), 2 * 9 - 8, false),
        ("ulx3s", s(16, 15, 3, 2, 1, 16), 2 * 9 - 8, false),
        // Stride 3, 5 x 5: ow 5, wq 6.
        ("ulx3s+banked", s(5, 13, 5, 3, 2, 9), 3 * 6 - 5, false),
        // ow 100, wq 101: 2 x 101 - 100 does not fit; without the second weight register the
        // rows split into phases that skip wq - ow, with it each output row is a chain of its
        // own (`wide_strided_layers_chain_each_output_row`), which needs no skip.
        ("ulx3s", s(8, 200, 3, 2, 1, 8), 1, false),
        ("ulx3s+banked", s(8, 200, 3, 2, 1, 8), 0, false),
    ]
    .into_iter()
    .enumerate()
    {
        let (q, _) = model(shape, 0);
        let (prog, _) = to_program(&arch_named(arch), &q).unwrap();
        let wq =
            (shape.stride * (q.layers[0].conv.unwrap().ow - 1) + shape.k[1]).div_ceil(shape.stride);
        let (mut skips, mut most_rows) = (std::collections::BTreeSet::new(), 0);
        let ow = q.layers[0].conv.unwrap().ow as u32;
        let mut stored = Vec::new();
        for i in &prog.code {
            match i.op {
                Op::MatMul(mm) => {
                    skips.insert(mm.skip);
                }
                Op::Load(l) if l.buf == LoadBuf::Inp => most_rows = most_rows.max(l.rows),
                Op::Store(st) => stored.push(st.rows),
                _ => {}
            }
        }
        // Without junk lines between the output rows (the matmuls skip them), an item's rows
        // leave in one store.
        if skip > 0 && (shape.stride * wq) as u32 - ow == skip {
            assert!(
                stored.iter().all(|&r| r % ow == 0) && stored.iter().any(|&r| r > ow),
                "{shape:?} on {arch}: stores of {stored:?} rows"
            );
        }
        assert_eq!(
            skips.into_iter().collect::<Vec<_>>(),
            vec![skip],
            "{shape:?} on {arch}"
        );
        assert_eq!(
            most_rows as usize > wq,
            merged_loads,
            "{shape:?} on {arch}: {most_rows}"
        );
        check(arch, shape, 40 + i as u64);
    }
}

/// Where the PEs hold two weight tiles the convolutions run as chains, one per kernel row
/// at stride 1 (all its taps and channel tiles), and nowhere else.
#[test]
fn banked_arrays_get_chains() {
    use systole_arch::isa::Op;
    let shape = square(64, 14, 3, 1, 1, 64);
    let (q, _) = model(shape, 1);
    for (name, banked) in [
        ("scalesim32", true),
        ("ulx3s", false),
        ("ulx3s+banked", true),
    ] {
        let (prog, _) = to_program(&arch_named(name), &q).unwrap();
        let (mut chains, mut ldw, mut tiles) = (0, 0, 0);
        for i in &prog.code {
            match i.op {
                Op::MatMul(mm) if mm.is_chain() => {
                    chains += 1;
                    tiles += mm.tiles();
                }
                Op::LoadWeights(_) => ldw += 1,
                _ => {}
            }
        }
        if banked {
            assert!(chains > 0 && ldw == 0, "{name}: {chains} chains, {ldw} ldw");
            assert!(
                tiles >= 3 * chains,
                "{name}: {tiles} tiles in {chains} chains"
            );
        } else {
            assert_eq!(chains, 0, "{name}");
        }
    }
}

/// Distinct accumulator regions the program's matmuls write: 2 (one slot per output, double
/// buffered) unless the k-chunks run outside the n-tiles, where each n-tile has its own.
fn acc_regions(arch: &str, q: &QModel) -> usize {
    use systole_arch::isa::Op;
    let arch = ArchConfig::resolve(arch).unwrap();
    let (prog, _) = to_program(&arch, q).unwrap();
    let accs: std::collections::BTreeSet<u32> = prog
        .code
        .iter()
        .filter_map(|i| match &i.op {
            Op::MatMul(m) => Some(m.acc),
            _ => None,
        })
        .collect();
    accs.len()
}

/// The row-reuse schedule with its k-chunks outside the n-tiles (`ConvRows::chunks_outside`):
/// every n-tile's accumulators stay in the m-tile's half across the chunks (behind their own
/// parameter lines, so compute-bound layers fold the bias), each chunk's input is loaded once
/// for all n-tiles. Strided layers with many channel tiles and n-tiles
/// take it; checked bit for bit with several m-tiles (a short last one), several chunks and
/// n-tiles, and on Conv5_1a of ResNet-18 (one m-tile, 16 n-tiles).
#[test]
fn chunks_outside_the_output_tiles_match_the_reference() {
    let s = |cin, hw, n| square(cin, hw, 3, 2, 1, n);
    for (arch, shape, seed) in [
        ("edge", s(96, 30, 64), 13),
        ("edge", s(96, 34, 64), 14),
        ("scalesim32", square(256, 14, 3, 2, 0, 512), 8),
    ] {
        assert!(
            acc_regions(arch, &model(shape, 0).0) > 2,
            "{shape:?} on {arch}"
        );
        check(arch, shape, seed);
    }
    // The usual order where the input fits for all n-tiles anyway.
    assert_eq!(acc_regions("ulx3s", &model(s(16, 15, 16), 0).0), 2);
    // Conv3_1a of ResNet-18 (compute-bound): each n-tile's region has its parameter lines in
    // front, so the first chunk's matmul adds the bias and no `alu` does.
    let conv3_1a = square(64, 56, 3, 2, 0, 128);
    let q = model(conv3_1a, 0).0;
    assert!(acc_regions("scalesim32", &q) > 2);
    let arch = ArchConfig::resolve("scalesim32").unwrap();
    let (prog, _) = to_program(&arch, &q).unwrap();
    let alus = prog
        .code
        .iter()
        .filter(|i| matches!(i.op, systole_arch::isa::Op::Alu(_)))
        .count();
    assert_eq!(alus, 0);
    check("scalesim32", conv3_1a, 7);
}

/// A layer stored from its accumulators (int32 outputs, as MatMulInteger and ConvInteger
/// give) keeps the usual order, whose store tokens protect the accumulator slots, even where
/// its int8 twin runs the chunks outside; and stays exact.
#[test]
fn int32_outputs_keep_the_chunks_inside() {
    let s = square(96, 30, 3, 2, 1, 64);
    let arch = ArchConfig::resolve("edge").unwrap();
    let (mut q, x) = model(s, 21);
    assert!(acc_regions("edge", &q) > 2);
    q.layers[0].out = QOut::Int32;
    q.output.dtype = systole_compiler::tensor::DType::I32;
    q.output.quant = None;
    assert_eq!(acc_regions("edge", &q), 2);
    let (prog, _) = to_program(&arch, &q).unwrap();
    let got = run(
        &prog,
        &arch,
        &[IoData::I8(x.clone())],
        &RunOptions::default(),
    )
    .unwrap();
    let QData::I32(want) = q.run(&x) else {
        panic!("int32 output")
    };
    assert_eq!(got.outputs, vec![IoData::I32(want)]);
}

/// The gathering schedule keeps an m-tile's input in the buffer for all output-channel tiles
/// (`Tiling`, `emit_dense`): a strided 1x1 convolution with 8 output-channel tiles issues as
/// many input loads as with one, and stays exact, including where items are shortened to
/// whole output rows so that the input fits (56 x 56 -> 28 x 28 on ulx3s).
#[test]
fn gathered_inputs_are_loaded_once_for_all_output_tiles() {
    use systole_arch::isa::{LoadBuf, Op};
    let s = |hw, n| square(24, hw, 1, 2, 0, n);
    let arch = ArchConfig::resolve("ulx3s").unwrap();
    let input_loads = |s: Shape| {
        let (q, _) = model(s, 0);
        let (prog, _) = to_program(&arch, &q).unwrap();
        prog.code
            .iter()
            .filter(|i| matches!(&i.op, Op::Load(l) if l.buf == LoadBuf::Inp))
            .count()
    };
    for hw in [14, 56] {
        let one = input_loads(s(hw, 8));
        assert!(one > 0);
        assert_eq!(input_loads(s(hw, 64)), one, "{hw} x {hw}");
        check("ulx3s", s(hw, 64), 7);
    }
}

/// Layers whose loads outweigh their compute (issue [7]): a batch-1 fully connected layer
/// (a 1x1 convolution of a 1x1 image: plain dense rows) and ResNet-18's strided 1x1
/// shortcut with 8 input-channel tiles. The shortcut's input moves one load per output row
/// with all of a pixel's channel tiles (the matmuls walk every 8th line); both run several
/// output-channel tiles per weight load with every tile's parameters loaded once, first;
/// and both stay exact, on the banked 32 x 32 array and on ulx3s.
#[test]
fn load_bound_layers_group_output_tiles_and_gather_whole_pixels() {
    use systole_arch::isa::{LoadBuf, Op};
    let fc = square(512, 1, 1, 1, 0, 1000);
    let shortcut = square(256, 14, 1, 2, 0, 512);
    let loads = |arch: &str, s: Shape| {
        let (q, _) = model(s, 0);
        let (prog, _) = to_program(&arch_named(arch), &q).unwrap();
        let mut v = Vec::new();
        for i in &prog.code {
            if let Op::Load(l) = i.op {
                v.push(l);
            }
        }
        v
    };
    // scalesim32: 32 x 32, weight half 1024 lines.
    let (r, kt_fc, kt_sc) = (32, 512 / 32, 256 / 32);
    let fc_loads = loads("scalesim32", fc);
    let inp: Vec<_> = fc_loads.iter().filter(|l| l.buf == LoadBuf::Inp).collect();
    assert_eq!(inp.len(), 1, "the FC input is one run of 16 lines");
    assert_eq!(inp[0].cols, kt_fc as u32);
    let params: Vec<_> = fc_loads.iter().filter(|l| l.buf == LoadBuf::Acc).collect();
    assert_eq!(params.len(), 1, "all n-tiles' parameters in one load");
    assert_eq!(params[0].rows, 1000u32.div_ceil(32));
    assert!(fc_loads
        .iter()
        .any(|l| l.buf == LoadBuf::Wgt && l.rows == 2 * kt_fc as u32 && l.cols == r));
    let sc_loads = loads("scalesim32-storeq", shortcut);
    let inp: Vec<_> = sc_loads.iter().filter(|l| l.buf == LoadBuf::Inp).collect();
    assert_eq!(inp.len(), 7, "one load per output row");
    assert!(inp.iter().all(|l| l.rows == 7 && l.cols == kt_sc as u32));
    assert!(sc_loads
        .iter()
        .any(|l| l.buf == LoadBuf::Wgt && l.rows > kt_sc as u32));
    // Where the store engine requantizes, outputs of 49 rows go one n-tile at a time (their
    // bias folded, no requantization on the compute unit), in two loads of half its k-tiles
    // (`ring_and_parameter_blocks_keep_weight_loads_back_to_back`); FC's single rows still
    // group.
    let sc_loads = loads("scalesim32", shortcut);
    assert!(sc_loads
        .iter()
        .all(|l| l.buf != LoadBuf::Wgt || l.rows == kt_sc as u32 / 2));
    assert!(loads("scalesim32", fc)
        .iter()
        .any(|l| l.buf == LoadBuf::Wgt && l.rows == 2 * kt_fc as u32));
    check("scalesim32", shortcut, 20);
    // Smaller arrays, fewer channels (instruction memory): 8 channel tiles on 8 x 8.
    for arch in ["ulx3s", "ulx3s+banked", "edge"] {
        check(arch, Shape { n: 100, ..fc }, 21);
        check(
            arch,
            Shape {
                cin: 64,
                n: 96,
                ..shortcut
            },
            22,
        );
    }
    check("scalesim32", fc, 25);
    check("scalesim32", shortcut, 26);
    // Several m-tiles with the next one's input loaded early, output tiles one by one.
    check(
        "scalesim32",
        Shape {
            cin: 64,
            h: 56,
            w: 56,
            n: 128,
            ..shortcut
        },
        23,
    );
    check(
        "ulx3s",
        Shape {
            cin: 40,
            h: 45,
            w: 33,
            n: 30,
            ..shortcut
        },
        24,
    );
}

/// Load-bound layers of one m-tile whose stores requantize (ResNet-18's Conv5_s on
/// scalesim32: 512 beats of weights per 392 cycles of compute) cycle their items through a
/// ring of four weight and accumulator slots, load each half's parameter lines in one block
/// at the start (a bias row copied by a one-line `alu` per output), and split each n-tile's
/// weights into two loads with a chain each. Then nothing but weights loads per item, four
/// weight slots are in use, and the output is bit for bit the reference's, with an even and
/// an odd number of n-tiles, and on `tiny` where it applies to outputs of 4 rows.
#[test]
fn ring_and_parameter_blocks_keep_weight_loads_back_to_back() {
    use systole_arch::isa::{LoadBuf, Op};
    let s = square;
    for (arch, shape, seed, slots) in [
        ("scalesim32", s(256, 14, 1, 2, 0, 512), 50, 4),
        ("scalesim32", s(256, 14, 1, 2, 0, 480), 51, 4),
        ("tiny+banked+storeq", s(12, 4, 1, 2, 0, 20), 52, 4),
    ] {
        let a = arch_named(arch);
        let (q, _) = model(shape, seed);
        let (prog, _) = to_program(&a, &q).unwrap();
        let n_tiles = shape.n.div_ceil(a.array.cols as usize);
        let loads: Vec<_> = prog
            .code
            .iter()
            .filter_map(|i| match i.op {
                Op::Load(l) => Some(l),
                _ => None,
            })
            .collect();
        let acc: Vec<_> = loads.iter().filter(|l| l.buf == LoadBuf::Acc).collect();
        assert_eq!(acc.len(), 2, "{arch}: one parameter block per half");
        assert_eq!(
            (acc[0].rows, acc[1].rows, acc[0].cols),
            (n_tiles.div_ceil(2) as u32, n_tiles as u32 / 2, 4),
            "{arch}"
        );
        let wgt: Vec<_> = loads.iter().filter(|l| l.buf == LoadBuf::Wgt).collect();
        assert_eq!(
            wgt.len(),
            2 * n_tiles,
            "{arch}: two weight loads per n-tile"
        );
        let slot = a.lines(systole_arch::BufferKind::Weight) / slots;
        let used: std::collections::BTreeSet<u32> = wgt.iter().map(|l| l.sram / slot).collect();
        assert_eq!(used.len(), slots as usize, "{arch}: weight slots {used:?}");
        let copies = prog
            .code
            .iter()
            .filter(|i| matches!(i.op, Op::Alu(al) if al.m == 1))
            .count();
        assert_eq!(copies, n_tiles, "{arch}: a bias row copied per output");
        check(arch, shape, seed);
    }
}

/// First layers with few channels (RGB: 3 bytes a pixel) carry several kernel columns per
/// input line (`ConvGeom::taps_per_line`): a line read at pixel x holds pixels x, x + d, ...,
/// and one weight tile covers all of them, so the array streams kh x ceil(kw / taps) tiles
/// per output pixel instead of kh x kw. Bit for bit on every schedule it reaches (row reuse
/// with one kernel column left, the gathering one with dilated column groups); with left or
/// right padding after a padding pass that puts padding bytes around each image row.
#[test]
fn first_layers_pack_kernel_columns_into_lines() {
    use systole_arch::isa::Op;
    // Array lines streamed per output pixel and output-channel tile.
    let tiles_per_pixel = |arch: &str, s: Shape| {
        let (q, _) = model(s, 0);
        let cv = q.layers[0].conv.unwrap();
        let a = arch_named(arch);
        let (prog, _) = to_program(&a, &q).unwrap();
        let streamed: u64 = prog
            .code
            .iter()
            .map(|i| match i.op {
                Op::MatMul(mm) => mm.m as u64 * mm.tiles().max(1) as u64,
                _ => 0,
            })
            .sum();
        let pixels = (cv.oh * cv.ow * s.n.div_ceil(a.array.cols as usize)) as u64;
        assert_eq!(streamed % pixels, 0, "{s:?} on {arch}");
        streamed / pixels
    };
    let rgb = |hw: usize, k: usize, stride: usize, n: usize| Shape {
        pads: [0; 4],
        ..square(3, hw, k, stride, 0, n)
    };
    // ResNet-18's first layer shape (7 x 7, stride 2, 64 filters), a smaller image: 7 tiles.
    let conv1 = rgb(40, 7, 2, 64);
    assert_eq!(tiles_per_pixel("scalesim32", conv1), 7);
    check("scalesim32", conv1, 60);
    // Vertical padding comes as whole lines: still packed.
    let tb = Shape {
        pads: [3, 0, 3, 0],
        ..conv1
    };
    assert_eq!(tiles_per_pixel("scalesim32", tb), 7);
    check("scalesim32", tb, 61);
    // Left and right padding: a padding pass first (`PadPass`), then 7 taps a line.
    let lr = square(3, 40, 7, 2, 3, 64);
    assert_eq!(tiles_per_pixel("scalesim32", lr), 7);
    check("scalesim32", lr, 62);
    // The bundled CNN's first layer (MNIST, 1 channel, 3 x 3, padding 1) on the 8 x 8 array:
    // 3 tiles, not 9.
    let mnist = Shape {
        cin: 1,
        ..square(1, 28, 3, 1, 1, 8)
    };
    assert_eq!(tiles_per_pixel("ulx3s", mnist), 3);
    check("ulx3s", mnist, 67);
    check("ulx3s+banked", mnist, 68);
    // 3 channels on 8 x 8: 2 taps a line (kernel columns 0-1, then 2); image rows of 3 x 13
    // bytes, not whole lines (a row's last line carries the next row's first bytes), and
    // padding on one side only.
    let odd = Shape {
        pads: [0, 2, 1, 0],
        ..square(3, 13, 3, 1, 0, 10)
    };
    assert_eq!(tiles_per_pixel("ulx3s", odd), 3 * 2);
    check("ulx3s", odd, 69);
    let right = Shape {
        pads: [1, 0, 0, 2],
        ..odd
    };
    assert_eq!(tiles_per_pixel("edge", right), 3);
    check("edge", right, 70);
    // 16 x 16 array, 5 channels: 3 taps a line, columns in groups 3 pixels apart (dilated).
    let five = Shape {
        cin: 5,
        ..rgb(17, 7, 1, 20)
    };
    assert_eq!(tiles_per_pixel("edge", five), 7 * 3);
    check("edge", five, 63);
    // Dilation 2: taps 2 pixels apart in the line.
    let dil = Shape {
        dilation: 2,
        ..rgb(21, 3, 1, 40)
    };
    assert_eq!(tiles_per_pixel("scalesim32", dil), 3);
    check("scalesim32", dil, 64);
    // 8 x 8 arrays, 2 channels: 4 taps a line; with chains and without.
    let two = Shape {
        cin: 2,
        ..rgb(15, 3, 1, 16)
    };
    assert_eq!(tiles_per_pixel("ulx3s", two), 3);
    check("ulx3s", two, 65);
    check("ulx3s+banked", two, 66);
}

/// Wide strided layers whose merged rows' skip does not fit its 6 bits run one chain per
/// output row and column phase (`ConvRows::row_chains`): rows of `ow` lines without `row`
/// and `skip`, the block's image rows merged, so one load moves many of them, and each row's
/// accumulator lines behind their own parameter copy, so each starts from the bias. A layer whose
/// weights and parameters all fit loads them once per output-channel tile: later items
/// find them in place (`Held`), a load-unit `nop` carries an item's tokens when it has
/// nothing left to load, and the next m-tile's input loads while the whole m-tile before it
/// computes (`Tokens`; the emulator refuses a load that overtakes a reader: error Race). All
/// bit for bit.
#[test]
fn wide_strided_layers_chain_each_output_row() {
    use systole_arch::isa::{LoadBuf, Op, UnitSel};
    // (arch, shape, whether every weight tile and parameter line fits and loads once)
    let cases = [
        // ResNet-18's first layer on a 160 x 40 image: 3 channels packed 7 taps a line, ow 77
        // (merged rows would skip 77 lines).
        (
            "scalesim32",
            Shape {
                pads: [3, 0, 3, 0],
                h: 40,
                ..square(3, 160, 7, 2, 0, 64)
            },
            true,
        ),
        // Two column phases, vertical padding, two n-tiles.
        (
            "ulx3s+banked",
            Shape {
                pads: [1, 0, 1, 0],
                h: 21,
                ..square(8, 200, 3, 2, 0, 12)
            },
            true,
        ),
        // Two channel tiles, one a chunk (the input half holds one tile's blocks).
        (
            "ulx3s+banked",
            Shape {
                pads: [1, 0, 1, 0],
                h: 21,
                ..square(16, 200, 3, 2, 0, 12)
            },
            false,
        ),
    ];
    for (i, (arch, s, held)) in cases.into_iter().enumerate() {
        let (q, _) = model(s, 0);
        let cv = q.layers[0].conv.unwrap();
        let a = arch_named(arch);
        let (prog, _) = to_program(&a, &q).unwrap();
        let n_tiles = s.n.div_ceil(a.array.cols as usize);
        let (mut wgt, mut acc, mut most_rows, mut chains) = (0, Vec::new(), 0, 0);
        for insn in &prog.code {
            match insn.op {
                Op::MatMul(mm) => {
                    assert!(mm.is_chain(), "{s:?} on {arch}: {mm:?}");
                    assert_eq!((mm.m as usize, mm.row), (cv.ow, 0), "{s:?} on {arch}");
                    chains += 1;
                }
                Op::Load(l) if l.buf == LoadBuf::Wgt => wgt += 1,
                Op::Load(l) if l.buf == LoadBuf::Acc => acc.push(l),
                Op::Load(l) if l.buf == LoadBuf::Inp => most_rows = most_rows.max(l.rows),
                _ => {}
            }
        }
        assert!(
            chains >= cv.oh * n_tiles,
            "{s:?} on {arch}: {chains} chains"
        );
        assert!(
            most_rows as usize >= 3 * cv.w / s.stride,
            "{s:?} on {arch}: loads of {most_rows} lines"
        );
        if held {
            // Weights once per n-tile; each output row's parameter copy once per slot.
            assert_eq!(wgt, n_tiles, "{s:?} on {arch}");
            // Items with nothing left to load do not wait for compute, and the next m-tile's
            // input waits only for the m-tile before the last (`Tokens`).
            assert!(
                prog.code
                    .iter()
                    .any(|i| matches!(i.op, Op::Nop(n) if n.unit == UnitSel::Load)
                        && i.deps.push_next
                        && !i.deps.pop_next),
                "{s:?} on {arch}"
            );
            let distinct: std::collections::BTreeSet<_> =
                acc.iter().map(|l| (l.sram, l.dram)).collect();
            assert_eq!(distinct.len(), acc.len(), "{s:?} on {arch}");
        }
        check(arch, s, 70 + i as u64);
    }
}

/// A strided layer's first item loads its input phase by phase, each phase's load handing
/// compute a token of its own, so the first phase's chain starts while the others load
/// (ResNet-18's Conv3_1a: one channel tile a chain, two column phases). Bit for bit.
#[test]
fn the_first_item_loads_phase_by_phase() {
    use systole_arch::isa::{LoadBuf, Op};
    let conv3_1a = square(64, 56, 3, 2, 0, 128);
    let (q, _) = model(conv3_1a, 0);
    let (prog, _) = to_program(&arch_named("scalesim32"), &q).unwrap();
    let mm: Vec<_> = prog
        .code
        .iter()
        .filter(|i| matches!(i.op, Op::MatMul(_)))
        .take(2)
        .collect();
    assert!(mm.iter().all(|i| i.deps.pop_prev), "{mm:?}");
    // The input load that hands compute the second token comes after the first token.
    let pushes: Vec<_> = prog
        .code
        .iter()
        .take_while(|i| !matches!(i.op, Op::MatMul(_)))
        .filter(|i| i.deps.push_next)
        .collect();
    assert!(
        pushes.len() >= 2 && matches!(pushes[1].op, Op::Load(l) if l.buf == LoadBuf::Inp),
        "{pushes:?}"
    );
    check("scalesim32", conv3_1a, 80);
    // Smaller arrays: one channel tile, stride 2 and 3.
    check("ulx3s+banked", square(8, 15, 3, 2, 1, 16), 81);
    check("ulx3s+banked", square(5, 13, 5, 3, 2, 9), 82);
}

/// A one-row kernel at stride 3 with its row phases not merged: a single row phase, whose
/// block still holds every third image row (the emitter once stepped its block rows by one
/// image row while the plan sized the block by three, so the second row phase's block
/// overwrote the first's last rows; proptest found it, seed kept in conv.proptest-regressions).
#[test]
fn one_row_kernels_step_their_block_rows_by_the_stride() {
    check(
        "ulx3s",
        Shape {
            cin: 1,
            h: 5,
            w: 92,
            k: [1, 2],
            stride: 3,
            dilation: 1,
            pads: [0, 1, 0, 2],
            n: 1,
        },
        0,
    );
}
