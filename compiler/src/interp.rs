//! Reference interpreter of the IR with onnxruntime semantics.
