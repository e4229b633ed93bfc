//! Moving tensors between the host and the emulated DRAM, following the program's tensor
//! descriptors.

use crate::error::{EmuError, ErrorKind};
use systole_arch::image::{DType, TensorDesc};

/// Integer tensor data in logical row-major order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoData {
    I8(Vec<i8>),
    U8(Vec<u8>),
    I32(Vec<i32>),
}

impl IoData {
    pub fn len(&self) -> usize {
        match self {
            IoData::I8(v) => v.len(),
            IoData::U8(v) => v.len(),
            IoData::I32(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn dtype(&self) -> DType {
        match self {
            IoData::I8(_) => DType::I8,
            IoData::U8(_) => DType::U8,
            IoData::I32(_) => DType::I32,
        }
    }
    /// Values widened to i64, for comparisons and printing.
    pub fn to_i64(&self) -> Vec<i64> {
        match self {
            IoData::I8(v) => v.iter().map(|&x| x as i64).collect(),
            IoData::U8(v) => v.iter().map(|&x| x as i64).collect(),
            IoData::I32(v) => v.iter().map(|&x| x as i64).collect(),
        }
    }
}

/// Writes `data` into `dram` where `desc` says the tensor lives.
pub fn write_tensor(dram: &mut [u8], desc: &TensorDesc, data: &IoData) -> Result<(), EmuError> {
    if data.dtype() != desc.dtype {
        return Err(EmuError::new(
            ErrorKind::BadInput,
            format!(
                "input '{}' must be {}, got {}",
                desc.name,
                desc.dtype.name(),
                data.dtype().name()
            ),
        ));
    }
    if data.len() as u64 != desc.elements() {
        return Err(EmuError::new(
            ErrorKind::BadInput,
            format!(
                "input '{}' needs {} elements (shape {:?}), got {}",
                desc.name,
                desc.elements(),
                desc.shape,
                data.len()
            ),
        ));
    }
    let base = desc.dram_addr as usize;
    for (i, off) in desc.element_offsets().into_iter().enumerate() {
        let a = base + off as usize;
        match data {
            IoData::I8(v) => dram[a] = v[i] as u8,
            IoData::U8(v) => dram[a] = v[i],
            IoData::I32(v) => dram[a..a + 4].copy_from_slice(&v[i].to_le_bytes()),
        }
    }
    Ok(())
}

/// Writes one tensor per input descriptor of `prog`, in image order; an error naming the
/// inputs when their number does not match.
pub fn write_inputs(
    dram: &mut [u8],
    prog: &systole_arch::Program,
    inputs: &[IoData],
) -> Result<(), EmuError> {
    let descs: Vec<_> = prog.inputs().collect();
    if descs.len() != inputs.len() {
        let names: Vec<_> = descs.iter().map(|d| d.name.as_str()).collect();
        return Err(EmuError::new(
            ErrorKind::BadInput,
            format!(
                "program takes {} input(s) ({}), got {}",
                descs.len(),
                names.join(", "),
                inputs.len()
            ),
        ));
    }
    for (d, x) in descs.iter().zip(inputs) {
        write_tensor(dram, d, x)?;
    }
    Ok(())
}

/// Reads the tensor `desc` describes out of `dram`.
pub fn read_tensor(dram: &[u8], desc: &TensorDesc) -> IoData {
    let base = desc.dram_addr as usize;
    let offs = desc.element_offsets();
    match desc.dtype {
        DType::I8 => IoData::I8(
            offs.iter()
                .map(|&o| dram[base + o as usize] as i8)
                .collect(),
        ),
        DType::U8 => IoData::U8(offs.iter().map(|&o| dram[base + o as usize]).collect()),
        DType::I32 => IoData::I32(
            offs.iter()
                .map(|&o| {
                    let a = base + o as usize;
                    i32::from_le_bytes(dram[a..a + 4].try_into().unwrap())
                })
                .collect(),
        ),
    }
}
