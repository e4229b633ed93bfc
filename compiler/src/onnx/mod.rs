//! Reading ONNX models and serialized tensors.
//!
//! [`proto`] holds hand-written `prost` messages for the ONNX schema;
//! [`load_model`] and [`decode_tensor`] decode them from files and bytes.
//! Converting a [`TensorProto`] to a dense array is
//! [`Tensor::from_onnx`](crate::tensor::Tensor::from_onnx).

pub mod proto;

use std::path::{Path, PathBuf};

use prost::Message;

pub use proto::attribute_proto::AttributeType;
pub use proto::tensor_proto::{DataLocation, DataType};
pub use proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// Why an ONNX file or message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a valid protobuf encoding of the expected message.
    /// `path` is `None` when decoding bytes that did not come from a file.
    #[error("{}: not a valid ONNX {what}: {source}", path.as_ref().map_or_else(|| "<bytes>".to_string(), |p| p.display().to_string()))]
    Decode {
        path: Option<PathBuf>,
        /// The message that was expected, e.g. `"ModelProto"`.
        what: &'static str,
        #[source]
        source: prost::DecodeError,
    },
}

/// Reads and decodes an ONNX model file (`.onnx`, a serialized `ModelProto`).
///
/// Only decodes: it does not check that the model has a graph or that the
/// graph is well formed. Tensors with external data are returned as they are
/// (see [`TensorProto::is_external`]).
pub fn load_model(path: impl AsRef<Path>) -> Result<ModelProto, OnnxError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| OnnxError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    ModelProto::decode(bytes.as_slice()).map_err(|source| OnnxError::Decode {
        path: Some(path.to_path_buf()),
        what: "ModelProto",
        source,
    })
}

/// Decodes an ONNX model from bytes.
pub fn decode_model(bytes: &[u8]) -> Result<ModelProto, OnnxError> {
    ModelProto::decode(bytes).map_err(|source| OnnxError::Decode {
        path: None,
        what: "ModelProto",
        source,
    })
}

/// Decodes a serialized `TensorProto` (the `.pb` files of ONNX test data
/// sets).
pub fn decode_tensor(bytes: &[u8]) -> Result<TensorProto, OnnxError> {
    TensorProto::decode(bytes).map_err(|source| OnnxError::Decode {
        path: None,
        what: "TensorProto",
        source,
    })
}

/// Reads and decodes a serialized `TensorProto` file.
pub fn load_tensor_proto(path: impl AsRef<Path>) -> Result<TensorProto, OnnxError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| OnnxError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    TensorProto::decode(bytes.as_slice()).map_err(|source| OnnxError::Decode {
        path: Some(path.to_path_buf()),
        what: "TensorProto",
        source,
    })
}

/// Encodes a message to bytes (the inverse of the decoders above).
pub fn encode<M: Message>(message: &M) -> Vec<u8> {
    message.encode_to_vec()
}
