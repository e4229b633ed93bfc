//! ONNX frontend: ModelProto -> ir::Graph.
