//! Running a compiled model on the emulator in the compiler's tests: the program on one host
//! input, checked bit for bit against the quantized IR's interpreter, and the host-visible
//! output (dequantized, or through the model's float tail).

use systole_arch::{ArchConfig, Program};
use systole_compiler::lower;
use systole_compiler::qir::{QData, QModel};
use systole_compiler::tensor::Tensor;
use systole_emulator::IoData;

/// Runs `program` (compiled from `q`) on `x`; panics if the emulator and the quantized IR
/// disagree.
pub fn emulate(program: &Program, arch: &ArchConfig, q: &QModel, x: &Tensor) -> Tensor {
    let hw = lower::input_to_hw(&q.input, x).unwrap();
    let r = systole_emulator::run(
        program,
        arch,
        &[IoData::I8(hw.clone())],
        &Default::default(),
    )
    .unwrap();
    let raw = match &r.outputs[0] {
        IoData::I8(v) => QData::I8(v.clone()),
        IoData::I32(v) => QData::I32(v.clone()),
        IoData::U8(v) => QData::I8(v.iter().map(|&b| b as i8).collect()),
    };
    assert_eq!(raw, q.run(&hw), "emulator vs quantized IR");
    lower::output_from_hw(&q.output, q.m, &raw).unwrap()
}
