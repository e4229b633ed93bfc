//! The compiler: lowers networks to Systole program images.

pub mod frontend;
pub mod gemm;
pub mod interp;
pub mod ir;
pub mod lower;
pub mod onnx;
pub mod ptq;
pub mod qir;
pub mod tensor;
