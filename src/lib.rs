//! Glue between the command line and the crates: converting user tensors to what a program's
//! tensor descriptors ask for, and writing result files without leaving partial output.

pub mod analytic;
pub mod bench;
pub mod estimate;
pub mod model;
pub mod plot;
pub mod sweep;

use anyhow::{bail, Result};
use std::path::Path;
use systole_arch::image::{DType, TensorDesc};
use systole_compiler::tensor::{Tensor, TensorData};
use systole_emulator::IoData;

/// onnxruntime's QuantizeLinear: x / scale in fp32, round half to even, add the zero point,
/// saturate.
pub fn quantize(x: f32, scale: f32, zero_point: i32, lo: i32, hi: i32) -> i32 {
    let q = (x / scale).round_ties_even();
    let v = if q.is_nan() { 0.0 } else { q } + zero_point as f32;
    v.clamp(lo as f32, hi as f32) as i32
}

/// Converts a user-supplied tensor to the integer data an input descriptor expects. Integer
/// tensors must fit the element type; float tensors need the descriptor's quantization.
pub fn io_for_input(t: &Tensor, d: &TensorDesc) -> Result<IoData> {
    let n = d.elements() as usize;
    if t.len() != n {
        bail!(
            "input '{}' expects shape {:?} ({} elements), got {:?} ({} elements)",
            d.name,
            d.shape,
            n,
            t.shape,
            t.len()
        );
    }
    // Range of the stored type, and of the logical type (stored = logical + offset).
    let (lo, hi) = match d.dtype {
        DType::I8 => (-128i64, 127i64),
        DType::U8 => (0, 255),
        DType::I32 => (i32::MIN as i64, i32::MAX as i64),
    };
    let off = d.offset as i64;
    let ints: Vec<i64> = match &t.data {
        TensorData::F32(_) | TensorData::F64(_) => {
            let Some(q) = d.quant else {
                bail!(
                    "input '{}' is {} but the program takes {} without a scale to quantize with",
                    d.name,
                    t.dtype_name(),
                    d.dtype.name()
                );
            };
            t.to_f32_vec()
                .iter()
                .map(|&x| {
                    quantize(
                        x,
                        q.scale,
                        q.zero_point,
                        (lo - off) as i32,
                        (hi - off) as i32,
                    ) as i64
                })
                .collect()
        }
        TensorData::I8(v) => v.iter().map(|&x| x as i64).collect(),
        TensorData::U8(v) => v.iter().map(|&x| x as i64).collect(),
        TensorData::I32(v) => v.iter().map(|&x| x as i64).collect(),
        TensorData::I64(v) => v.clone(),
        TensorData::Bool(v) => v.iter().map(|&x| x as i64).collect(),
    };
    if let Some((i, v)) = ints
        .iter()
        .enumerate()
        .find(|(_, &v)| v + off < lo || v + off > hi)
    {
        bail!(
            "input '{}': element {i} = {v} is out of range for the program's input",
            d.name
        );
    }
    Ok(match d.dtype {
        DType::I8 => IoData::I8(ints.iter().map(|&v| (v + off) as i8).collect()),
        DType::U8 => IoData::U8(ints.iter().map(|&v| (v + off) as u8).collect()),
        DType::I32 => IoData::I32(ints.iter().map(|&v| (v + off) as i32).collect()),
    })
}

/// The tensor to save for an output: its integer data, or dequantized float32 on request.
pub fn output_tensor(d: &TensorDesc, v: &IoData, dequantize: bool) -> Result<Tensor> {
    let shape: Vec<usize> = d.shape.iter().map(|&x| x as usize).collect();
    let logical: Vec<i64> = v.to_i64().iter().map(|&x| x - d.offset as i64).collect();
    let data = match (dequantize, d.quant) {
        (true, Some(q)) => TensorData::F32(
            logical
                .iter()
                .map(|&x| (x as i32 - q.zero_point) as f32 * q.scale)
                .collect(),
        ),
        _ => match (v, d.offset) {
            (IoData::I8(_), -128) => TensorData::U8(logical.iter().map(|&x| x as u8).collect()),
            (IoData::I8(x), _) => TensorData::I8(x.clone()),
            (IoData::U8(x), _) => TensorData::U8(x.clone()),
            (IoData::I32(x), _) => TensorData::I32(x.clone()),
        },
    };
    Ok(Tensor::new(shape, data)?)
}

/// Writes pretty JSON through a temporary file.
pub fn write_json_atomic(path: &Path, v: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string(v)?;
    systole_arch::image::write_atomic(path, text.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn quantize_rounds_half_to_even_and_saturates() {
        assert_eq!(quantize(2.5, 1.0, 0, -128, 127), 2);
        assert_eq!(quantize(3.5, 1.0, 0, -128, 127), 4);
        assert_eq!(quantize(-2.5, 1.0, 0, -128, 127), -2);
        assert_eq!(quantize(1000.0, 1.0, 0, -128, 127), 127);
        assert_eq!(quantize(0.3, 0.1, 5, 0, 255), 8);
        assert_eq!(quantize(f32::NAN, 1.0, 3, -128, 127), 3);
    }
}
