//! The compiler: lowers networks to Systole program images.

pub mod gemm;
pub mod onnx;
pub mod tensor;
