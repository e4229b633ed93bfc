//! Dense tensors and the file formats they come in: ONNX `TensorProto`
//! (`.pb`), NumPy `.npy`, and the IDX format of the MNIST data set.
//!
//! A [`Tensor`] is a row-major (C order) array: a shape plus a flat vector
//! of one of the element types in [`TensorData`]. Half-precision inputs
//! (`float16`, `bfloat16`) are widened to `f32` when read.

use std::fmt;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use half::{bf16, f16};

use crate::onnx::{self, DataType, OnnxError, TensorProto};

/// The elements of a [`Tensor`], in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I8(Vec<i8>),
    U8(Vec<u8>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
}

/// The element type of a [`TensorData`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
    I8,
    U8,
    I32,
    I64,
    Bool,
}

impl DType {
    /// Every element type, in declaration order.
    pub const ALL: [DType; 7] = [
        DType::F32,
        DType::F64,
        DType::I8,
        DType::U8,
        DType::I32,
        DType::I64,
        DType::Bool,
    ];

    /// NumPy's name for the type: `float32`, `float64`, `int8`, `uint8`,
    /// `int32`, `int64` or `bool`.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::Bool => "bool",
        }
    }

    /// Bytes per element in `.npy` and ONNX `raw_data`.
    pub fn size(self) -> usize {
        match self {
            DType::I8 | DType::U8 | DType::Bool => 1,
            DType::F32 | DType::I32 => 4,
            DType::F64 | DType::I64 => 8,
        }
    }

    /// The `.npy` type descriptor written for this type, e.g. `<f4`.
    pub fn npy_descr(self) -> &'static str {
        match self {
            DType::F32 => "<f4",
            DType::F64 => "<f8",
            DType::I8 => "|i1",
            DType::U8 => "|u1",
            DType::I32 => "<i4",
            DType::I64 => "<i8",
            DType::Bool => "|b1",
        }
    }

    /// The ONNX element type.
    pub fn onnx(self) -> DataType {
        match self {
            DType::F32 => DataType::Float,
            DType::F64 => DataType::Double,
            DType::I8 => DataType::Int8,
            DType::U8 => DataType::Uint8,
            DType::I32 => DataType::Int32,
            DType::I64 => DataType::Int64,
            DType::Bool => DataType::Bool,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl TensorData {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F64(_) => DType::F64,
            TensorData::I8(_) => DType::I8,
            TensorData::U8(_) => DType::U8,
            TensorData::I32(_) => DType::I32,
            TensorData::I64(_) => DType::I64,
            TensorData::Bool(_) => DType::Bool,
        }
    }

    /// NumPy's name for the element type (see [`DType::name`]).
    pub fn dtype_name(&self) -> &'static str {
        self.dtype().name()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::I8(v) => v.len(),
            TensorData::U8(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::Bool(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as little-endian bytes, [`DType::size`] bytes each
    /// (booleans as `0`/`1`).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        fn flat<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
            let mut out = Vec::with_capacity(v.len() * N);
            for &x in v {
                out.extend_from_slice(&f(x));
            }
            out
        }
        match self {
            TensorData::F32(v) => flat(v, f32::to_le_bytes),
            TensorData::F64(v) => flat(v, f64::to_le_bytes),
            TensorData::I8(v) => v.iter().map(|&x| x as u8).collect(),
            TensorData::U8(v) => v.clone(),
            TensorData::I32(v) => flat(v, i32::to_le_bytes),
            TensorData::I64(v) => flat(v, i64::to_le_bytes),
            TensorData::Bool(v) => v.iter().map(|&x| u8::from(x)).collect(),
        }
    }

    /// Parses `bytes` as little-endian elements of `dtype`. The length must
    /// be a multiple of the element size. Any non-zero byte is `true` for
    /// [`DType::Bool`].
    fn from_le_bytes(dtype: DType, bytes: &[u8]) -> TensorData {
        fn parse<T, const N: usize>(bytes: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
            bytes
                .chunks_exact(N)
                .map(|c| f(c.try_into().expect("chunks_exact yields N bytes")))
                .collect()
        }
        match dtype {
            DType::F32 => TensorData::F32(parse(bytes, f32::from_le_bytes)),
            DType::F64 => TensorData::F64(parse(bytes, f64::from_le_bytes)),
            DType::I8 => TensorData::I8(bytes.iter().map(|&b| b as i8).collect()),
            DType::U8 => TensorData::U8(bytes.to_vec()),
            DType::I32 => TensorData::I32(parse(bytes, i32::from_le_bytes)),
            DType::I64 => TensorData::I64(parse(bytes, i64::from_le_bytes)),
            DType::Bool => TensorData::Bool(bytes.iter().map(|&b| b != 0).collect()),
        }
    }
}

/// A dense row-major tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Dimensions, outermost first; empty for a scalar.
    pub shape: Vec<usize>,
    pub data: TensorData,
}

/// Why a tensor could not be built, read, converted or written.
#[derive(Debug, thiserror::Error)]
pub enum TensorError {
    /// A file could not be opened, read or written.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// `"read"` or `"write"`.
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Something went wrong with the contents of a file.
    #[error("{}: {source}", path.display())]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<TensorError>,
    },
    /// The file name's extension says nothing about its format.
    #[error("{}: unknown tensor file type (expected a .npy or .pb file)", path.display())]
    UnknownExtension { path: PathBuf },
    /// Malformed or unsupported `.npy` data.
    #[error("invalid .npy data: {0}")]
    Npy(String),
    /// Malformed or unsupported IDX data.
    #[error("invalid IDX data: {0}")]
    Idx(String),
    /// The protobuf itself could not be decoded.
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    /// An ONNX tensor whose elements live in an external file.
    #[error("ONNX tensor '{tensor}' keeps its data in an external file, which is not supported")]
    ExternalData { tensor: String },
    /// An ONNX element type this crate does not convert.
    #[error("ONNX tensor '{tensor}' has unsupported data type {data_type} ({name})")]
    UnsupportedDataType {
        tensor: String,
        data_type: i32,
        name: &'static str,
    },
    /// A shape with a negative dimension or too many elements.
    #[error("tensor '{tensor}' has invalid shape {dims:?}: {reason}")]
    InvalidShape {
        tensor: String,
        dims: Vec<i64>,
        reason: &'static str,
    },
    /// The number of stored elements does not match the shape.
    #[error("tensor '{tensor}' has {actual} elements in {field} but its shape {shape:?} needs {expected}")]
    ElementCount {
        tensor: String,
        field: &'static str,
        shape: Vec<usize>,
        expected: usize,
        actual: usize,
    },
    /// `raw_data` whose length does not match the shape and type.
    #[error(
        "ONNX tensor '{tensor}' has {actual_bytes} bytes of raw_data but its shape {shape:?} \
         of {ty} needs {expected_bytes}"
    )]
    RawDataLength {
        tensor: String,
        shape: Vec<usize>,
        ty: &'static str,
        expected_bytes: usize,
        actual_bytes: usize,
    },
    /// A typed-field element out of range of the declared element type.
    #[error("ONNX tensor '{tensor}' of type {ty} holds out-of-range value {value} in {field}")]
    OutOfRange {
        tensor: String,
        ty: &'static str,
        field: &'static str,
        value: i64,
    },
}

impl TensorError {
    fn in_file(self, path: &Path) -> TensorError {
        match self {
            // Already names the file.
            e @ (TensorError::Io { .. }
            | TensorError::InFile { .. }
            | TensorError::UnknownExtension { .. }) => e,
            TensorError::Onnx(OnnxError::Decode {
                path: None,
                what,
                source,
            }) => TensorError::Onnx(OnnxError::Decode {
                path: Some(path.to_path_buf()),
                what,
                source,
            }),
            e @ TensorError::Onnx(_) => e,
            e => TensorError::InFile {
                path: path.to_path_buf(),
                source: Box::new(e),
            },
        }
    }
}

/// Number of elements of `shape`, or `None` on overflow.
fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

impl Tensor {
    /// A tensor of the given shape; fails if the element count does not
    /// match.
    pub fn new(shape: Vec<usize>, data: TensorData) -> Result<Tensor, TensorError> {
        let expected = element_count(&shape).ok_or_else(|| TensorError::InvalidShape {
            tensor: String::new(),
            dims: shape.iter().map(|&d| d as i64).collect(),
            reason: "element count overflows",
        })?;
        if expected != data.len() {
            return Err(TensorError::ElementCount {
                tensor: String::new(),
                field: "data",
                shape,
                expected,
                actual: data.len(),
            });
        }
        Ok(Tensor { shape, data })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// NumPy's name for the element type, e.g. `"float32"`.
    pub fn dtype_name(&self) -> &'static str {
        self.data.dtype_name()
    }

    /// The elements converted to `f32` (`true` is 1; large integers round).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            TensorData::F32(v) => v.clone(),
            TensorData::F64(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::I8(v) => v.iter().map(|&x| f32::from(x)).collect(),
            TensorData::U8(v) => v.iter().map(|&x| f32::from(x)).collect(),
            TensorData::I32(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| f32::from(u8::from(x))).collect(),
        }
    }

    /// Converts an ONNX tensor.
    ///
    /// Reads `raw_data` (little-endian) when it is non-empty, otherwise the
    /// typed field that the ONNX schema assigns to the data type. Supports
    /// FLOAT, DOUBLE, INT8, UINT8, INT32, INT64, BOOL, and FLOAT16 / BFLOAT16
    /// (widened to `f32`). Fails on other types, on external data, and when
    /// the element count does not match `dims`.
    pub fn from_onnx(proto: &TensorProto) -> Result<Tensor, TensorError> {
        let tensor = || {
            if proto.name.is_empty() {
                "<unnamed>".to_string()
            } else {
                proto.name.clone()
            }
        };
        if proto.is_external() {
            return Err(TensorError::ExternalData { tensor: tensor() });
        }
        let invalid_shape = |reason| TensorError::InvalidShape {
            tensor: tensor(),
            dims: proto.dims.clone(),
            reason,
        };
        let shape = proto
            .dims
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| invalid_shape("negative dimension")))
            .collect::<Result<Vec<usize>, _>>()?;
        let numel =
            element_count(&shape).ok_or_else(|| invalid_shape("element count overflows"))?;

        let unsupported = |name| TensorError::UnsupportedDataType {
            tensor: tensor(),
            data_type: proto.data_type,
            name,
        };
        let data_type = proto
            .data_type_enum()
            .ok_or_else(|| unsupported("unknown"))?;
        // (dtype read from raw_data, bytes per raw element)
        let (dtype, raw_size) = match data_type {
            DataType::Float => (DType::F32, 4),
            DataType::Double => (DType::F64, 8),
            DataType::Int8 => (DType::I8, 1),
            DataType::Uint8 => (DType::U8, 1),
            DataType::Int32 => (DType::I32, 4),
            DataType::Int64 => (DType::I64, 8),
            DataType::Bool => (DType::Bool, 1),
            DataType::Float16 | DataType::Bfloat16 => (DType::F32, 2),
            other => return Err(unsupported(other.onnx_name())),
        };
        let count_error = |field, actual| TensorError::ElementCount {
            tensor: tensor(),
            field,
            shape: shape.clone(),
            expected: numel,
            actual,
        };

        let data = if !proto.raw_data.is_empty() {
            let raw = &proto.raw_data;
            let expected_bytes = numel.checked_mul(raw_size);
            if expected_bytes != Some(raw.len()) {
                return Err(TensorError::RawDataLength {
                    tensor: tensor(),
                    shape: shape.clone(),
                    ty: data_type.onnx_name(),
                    expected_bytes: expected_bytes.unwrap_or(usize::MAX),
                    actual_bytes: raw.len(),
                });
            }
            match data_type {
                DataType::Float16 => TensorData::F32(
                    raw.chunks_exact(2)
                        .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                        .collect(),
                ),
                DataType::Bfloat16 => TensorData::F32(
                    raw.chunks_exact(2)
                        .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                        .collect(),
                ),
                _ => TensorData::from_le_bytes(dtype, raw),
            }
        } else {
            let field = match data_type {
                DataType::Float => "float_data",
                DataType::Double => "double_data",
                DataType::Int64 => "int64_data",
                _ => "int32_data",
            };
            let actual = match data_type {
                DataType::Float => proto.float_data.len(),
                DataType::Double => proto.double_data.len(),
                DataType::Int64 => proto.int64_data.len(),
                _ => proto.int32_data.len(),
            };
            if actual != numel {
                return Err(count_error(field, actual));
            }
            let ints = &proto.int32_data;
            let narrow = |ty: &'static str| {
                move |&v: &i32| TensorError::OutOfRange {
                    tensor: tensor(),
                    ty,
                    field: "int32_data",
                    value: i64::from(v),
                }
            };
            match data_type {
                DataType::Float => TensorData::F32(proto.float_data.clone()),
                DataType::Double => TensorData::F64(proto.double_data.clone()),
                DataType::Int64 => TensorData::I64(proto.int64_data.clone()),
                DataType::Int32 => TensorData::I32(ints.clone()),
                DataType::Int8 => TensorData::I8(
                    ints.iter()
                        .map(|v| i8::try_from(*v).map_err(|_| narrow("INT8")(v)))
                        .collect::<Result<_, _>>()?,
                ),
                DataType::Uint8 => TensorData::U8(
                    ints.iter()
                        .map(|v| u8::try_from(*v).map_err(|_| narrow("UINT8")(v)))
                        .collect::<Result<_, _>>()?,
                ),
                DataType::Bool => TensorData::Bool(
                    ints.iter()
                        .map(|v| match v {
                            0 => Ok(false),
                            1 => Ok(true),
                            _ => Err(narrow("BOOL")(v)),
                        })
                        .collect::<Result<_, _>>()?,
                ),
                DataType::Float16 => TensorData::F32(
                    ints.iter()
                        .map(|v| {
                            u16::try_from(*v)
                                .map(|b| f16::from_bits(b).to_f32())
                                .map_err(|_| narrow("FLOAT16")(v))
                        })
                        .collect::<Result<_, _>>()?,
                ),
                DataType::Bfloat16 => TensorData::F32(
                    ints.iter()
                        .map(|v| {
                            u16::try_from(*v)
                                .map(|b| bf16::from_bits(b).to_f32())
                                .map_err(|_| narrow("BFLOAT16")(v))
                        })
                        .collect::<Result<_, _>>()?,
                ),
                _ => unreachable!("data type filtered above"),
            }
        };
        Ok(Tensor { shape, data })
    }

    /// Converts to an ONNX tensor (unnamed; elements in `raw_data`).
    pub fn to_onnx(&self) -> TensorProto {
        TensorProto {
            dims: self.shape.iter().map(|&d| d as i64).collect(),
            data_type: self.dtype().onnx() as i32,
            raw_data: self.data.to_le_bytes(),
            ..TensorProto::default()
        }
    }
}

// ---------------------------------------------------------------------------
// .npy

const NPY_MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Serializes a tensor in the `.npy` format (version 1.0, or 2.0 when the
/// header does not fit 1.0's 16-bit length), C order.
pub fn npy_to_bytes(tensor: &Tensor) -> Vec<u8> {
    let shape = match tensor.shape.as_slice() {
        [] => "()".to_string(),
        [d] => format!("({d},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
        tensor.dtype().npy_descr()
    );
    // Magic, version and length prefix; pad so the data starts on a 64-byte
    // boundary, the header ending in '\n'.
    let mut prefix = NPY_MAGIC.len() + 2 + 2;
    if header.len() + 1 + 63 > usize::from(u16::MAX) {
        prefix = NPY_MAGIC.len() + 2 + 4;
    }
    let unpadded = prefix + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');

    let data = tensor.data.to_le_bytes();
    let mut out = Vec::with_capacity(prefix + header.len() + data.len());
    out.extend_from_slice(NPY_MAGIC);
    if prefix == 10 {
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&[2, 0]);
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&data);
    out
}

/// The element types `.npy` files may hold, as descriptors without byte
/// order.
#[derive(Clone, Copy)]
enum NpyType {
    Plain(DType),
    F16,
}

fn npy_type(descr: &str) -> Result<NpyType, TensorError> {
    const SUPPORTED: &str = "supported: <f4 <f8 <f2 |i1 |u1 <i4 <i8 |b1";
    let err = |msg: String| TensorError::Npy(format!("{msg} ({SUPPORTED})"));
    let (order, code) = match descr.chars().next() {
        Some(c @ ('<' | '>' | '|' | '=')) => (c, &descr[1..]),
        _ => ('=', descr),
    };
    let ty = match code {
        "f4" => NpyType::Plain(DType::F32),
        "f8" => NpyType::Plain(DType::F64),
        "f2" => NpyType::F16,
        "i1" => NpyType::Plain(DType::I8),
        "u1" => NpyType::Plain(DType::U8),
        "b1" => NpyType::Plain(DType::Bool),
        "i4" => NpyType::Plain(DType::I32),
        "i8" => NpyType::Plain(DType::I64),
        _ => return Err(err(format!("unsupported dtype '{descr}'"))),
    };
    let single_byte = matches!(code, "i1" | "u1" | "b1");
    match order {
        '<' => Ok(ty),
        _ if single_byte => Ok(ty),
        '>' => Err(err(format!("big-endian dtype '{descr}' is not supported"))),
        _ => Err(err(format!("dtype '{descr}' has no explicit byte order"))),
    }
}

/// A value in a `.npy` header (a Python literal).
#[derive(Debug)]
enum PyValue {
    Str(String),
    Bool(bool),
    None,
    Int(u64),
    Seq(Vec<PyValue>),
    Dict(Vec<(PyValue, PyValue)>),
}

/// A small parser for the Python literals NumPy writes in `.npy` headers:
/// dicts, tuples, lists, strings, integers, True/False/None.
struct PyParser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> PyParser<'a> {
    const MAX_DEPTH: usize = 16;

    fn err<T>(&self, what: &str) -> Result<T, TensorError> {
        Err(TensorError::Npy(format!(
            "header: {what} at byte {} of the header",
            self.pos
        )))
    }

    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), TensorError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            self.err(&format!("expected '{}'", c as char))
        }
    }

    /// Items up to `close`, separated by commas, trailing comma allowed.
    fn items<T>(
        &mut self,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Result<T, TensorError>,
    ) -> Result<Vec<T>, TensorError> {
        let mut out = Vec::new();
        loop {
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok(out);
            }
            out.push(item(self)?);
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(c) if c == close => {}
                _ => return self.err(&format!("expected ',' or '{}'", close as char)),
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<PyValue, TensorError> {
        if depth > Self::MAX_DEPTH {
            return self.err("nesting too deep");
        }
        match self.peek() {
            None => self.err("unexpected end"),
            Some(b'{') => {
                self.pos += 1;
                let entries = self.items(b'}', |p| {
                    let k = p.value(depth + 1)?;
                    p.expect(b':')?;
                    let v = p.value(depth + 1)?;
                    Ok((k, v))
                })?;
                Ok(PyValue::Dict(entries))
            }
            Some(open @ (b'(' | b'[')) => {
                self.pos += 1;
                let close = if open == b'(' { b')' } else { b']' };
                Ok(PyValue::Seq(self.items(close, |p| p.value(depth + 1))?))
            }
            Some(quote @ (b'\'' | b'"')) => {
                self.pos += 1;
                let start = self.pos;
                while self.pos < self.s.len() && self.s[self.pos] != quote {
                    if self.s[self.pos] == b'\\' {
                        return self.err("escape sequences in strings are not supported");
                    }
                    self.pos += 1;
                }
                if self.pos >= self.s.len() {
                    return self.err("unterminated string");
                }
                let text = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
                self.pos += 1;
                Ok(PyValue::Str(text))
            }
            Some(c) if c.is_ascii_digit() => {
                let start = self.pos;
                while self.pos < self.s.len() && self.s[self.pos].is_ascii_digit() {
                    self.pos += 1;
                }
                let digits = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("");
                let Ok(n) = digits.parse::<u64>() else {
                    return self.err("integer too large");
                };
                // Python 2 wrote long integers as e.g. `3L`.
                if self.s.get(self.pos) == Some(&b'L') {
                    self.pos += 1;
                }
                Ok(PyValue::Int(n))
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.pos;
                while self.pos < self.s.len() && self.s[self.pos].is_ascii_alphanumeric() {
                    self.pos += 1;
                }
                match &self.s[start..self.pos] {
                    b"True" => Ok(PyValue::Bool(true)),
                    b"False" => Ok(PyValue::Bool(false)),
                    b"None" => Ok(PyValue::None),
                    _ => {
                        self.pos = start;
                        self.err("unexpected name")
                    }
                }
            }
            Some(_) => self.err("unexpected character"),
        }
    }
}

/// Parses the header dict; returns (type, shape).
fn parse_npy_header(text: &[u8]) -> Result<(NpyType, Vec<usize>), TensorError> {
    let mut parser = PyParser { s: text, pos: 0 };
    let value = parser.value(0)?;
    if parser.peek().is_some() {
        return parser.err("trailing characters after the header dict");
    }
    let PyValue::Dict(entries) = value else {
        return Err(TensorError::Npy("header is not a dict".into()));
    };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    for (key, value) in entries {
        let PyValue::Str(key) = key else {
            return Err(TensorError::Npy("header has a non-string key".into()));
        };
        let slot = match key.as_str() {
            "descr" => &mut descr,
            "fortran_order" => &mut fortran,
            "shape" => &mut shape,
            other => {
                return Err(TensorError::Npy(format!(
                    "header has unexpected key '{other}'"
                )))
            }
        };
        if slot.replace(value).is_some() {
            return Err(TensorError::Npy(format!("header repeats key '{key}'")));
        }
    }
    let missing = |k: &str| TensorError::Npy(format!("header lacks key '{k}'"));
    let ty = match descr.ok_or_else(|| missing("descr"))? {
        PyValue::Str(d) => npy_type(&d)?,
        PyValue::Seq(_) => {
            return Err(TensorError::Npy(
                "structured (record) dtypes are not supported".into(),
            ))
        }
        other => return Err(TensorError::Npy(format!("bad descr {other:?}"))),
    };
    match fortran.ok_or_else(|| missing("fortran_order"))? {
        PyValue::Bool(false) => {}
        PyValue::Bool(true) => {
            return Err(TensorError::Npy(
                "Fortran-order (column-major) arrays are not supported; save a C-order array \
                 (numpy.ascontiguousarray)"
                    .into(),
            ))
        }
        other => return Err(TensorError::Npy(format!("bad fortran_order {other:?}"))),
    }
    let PyValue::Seq(dims) = shape.ok_or_else(|| missing("shape"))? else {
        return Err(TensorError::Npy("shape is not a tuple".into()));
    };
    let shape = dims
        .into_iter()
        .map(|d| match d {
            PyValue::Int(n) => usize::try_from(n)
                .map_err(|_| TensorError::Npy(format!("dimension {n} is too large"))),
            other => Err(TensorError::Npy(format!(
                "shape holds a non-integer {other:?}"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((ty, shape))
}

/// Parses a `.npy` file's bytes (format versions 1.0, 2.0 and 3.0,
/// little-endian `f4 f8 f2 i1 u1 i4 i8 b1`, C order). `f2` is widened to
/// `f32`. The data must be exactly as long as the shape requires.
pub fn npy_from_bytes(bytes: &[u8]) -> Result<Tensor, TensorError> {
    let bad = |msg: &str| TensorError::Npy(msg.to_string());
    if bytes.len() < NPY_MAGIC.len() || &bytes[..NPY_MAGIC.len()] != NPY_MAGIC {
        return Err(bad("missing the \\x93NUMPY magic; not a .npy file"));
    }
    let rest = &bytes[NPY_MAGIC.len()..];
    let [major, minor, rest @ ..] = rest else {
        return Err(bad("truncated before the format version"));
    };
    let (header_len, rest) = match (major, minor) {
        (1, 0) => match rest {
            [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), rest),
            _ => return Err(bad("truncated before the header length")),
        },
        (2 | 3, 0) => match rest {
            [a, b, c, d, rest @ ..] => (u32::from_le_bytes([*a, *b, *c, *d]) as usize, rest),
            _ => return Err(bad("truncated before the header length")),
        },
        _ => {
            return Err(TensorError::Npy(format!(
                "unsupported format version {major}.{minor}"
            )))
        }
    };
    if rest.len() < header_len {
        return Err(TensorError::Npy(format!(
            "header is truncated ({} of {header_len} bytes present)",
            rest.len()
        )));
    }
    let (header, data) = rest.split_at(header_len);
    if *major < 3 && !header.is_ascii() {
        return Err(bad("header is not ASCII text"));
    }
    let (ty, shape) = parse_npy_header(header)?;
    let numel =
        element_count(&shape).ok_or_else(|| bad("shape has more elements than can be held"))?;
    let size = match ty {
        NpyType::Plain(d) => d.size(),
        NpyType::F16 => 2,
    };
    let expected = numel
        .checked_mul(size)
        .ok_or_else(|| bad("shape has more elements than can be held"))?;
    if data.len() != expected {
        return Err(TensorError::Npy(format!(
            "shape {shape:?} needs {expected} data bytes but the file has {}",
            data.len()
        )));
    }
    let data = match ty {
        NpyType::Plain(d) => TensorData::from_le_bytes(d, data),
        NpyType::F16 => TensorData::F32(
            data.chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        ),
    };
    Ok(Tensor { shape, data })
}

fn read_file(path: &Path) -> Result<Vec<u8>, TensorError> {
    fs::read(path).map_err(|source| TensorError::Io {
        op: "read",
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a `.npy` file (see [`npy_from_bytes`]); errors name the file.
pub fn read_npy(path: impl AsRef<Path>) -> Result<Tensor, TensorError> {
    let path = path.as_ref();
    npy_from_bytes(&read_file(path)?).map_err(|e| e.in_file(path))
}

/// Writes `bytes` to `path` through a temporary file in the same directory
/// that is renamed over `path` once complete, so that `path` is never left
/// partially written. On error the temporary file is removed.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), TensorError> {
    let io_err = |source| TensorError::Io {
        op: "write",
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".systole-tmp-").suffix(".part");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // The process umask still applies, as for an ordinary new file.
        builder.permissions(fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder.tempfile_in(dir).map_err(io_err)?;
    tmp.write_all(bytes).map_err(io_err)?;
    tmp.as_file().sync_all().map_err(io_err)?;
    tmp.persist(path).map_err(|e| io_err(e.error))?;
    Ok(())
}

/// Writes a tensor as a `.npy` file (see [`npy_to_bytes`]), atomically:
/// either the complete file appears at `path` or `path` is untouched.
pub fn write_npy(path: impl AsRef<Path>, tensor: &Tensor) -> Result<(), TensorError> {
    let path = path.as_ref();
    let expected = element_count(&tensor.shape);
    if expected != Some(tensor.len()) {
        return Err(TensorError::ElementCount {
            tensor: path.display().to_string(),
            field: "data",
            shape: tensor.shape.clone(),
            expected: expected.unwrap_or(usize::MAX),
            actual: tensor.len(),
        });
    }
    write_atomically(path, &npy_to_bytes(tensor))
}

/// Reads a serialized ONNX `TensorProto` file (`.pb`) and converts it.
pub fn read_tensor_pb(path: impl AsRef<Path>) -> Result<Tensor, TensorError> {
    let path = path.as_ref();
    let bytes = read_file(path)?;
    onnx::decode_tensor(&bytes)
        .map_err(TensorError::from)
        .and_then(|proto| Tensor::from_onnx(&proto))
        .map_err(|e| e.in_file(path))
}

/// Reads a tensor file by extension: `.npy` ([`read_npy`]) or `.pb`
/// ([`read_tensor_pb`]).
pub fn read_tensor_file(path: impl AsRef<Path>) -> Result<Tensor, TensorError> {
    let path = path.as_ref();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("npy") => read_npy(path),
        Some("pb") => read_tensor_pb(path),
        _ => Err(TensorError::UnknownExtension {
            path: path.to_path_buf(),
        }),
    }
}

// ---------------------------------------------------------------------------
// IDX (MNIST)

/// Images and labels of an IDX-format data set such as MNIST.
#[derive(Clone, Debug, PartialEq)]
pub struct LabeledImages {
    /// `u8` pixels, shape `[N, rows, cols]` (`[N, 28, 28]` for MNIST).
    pub images: Tensor,
    /// One label per image.
    pub labels: Vec<u8>,
}

/// The decoded fixed part of an IDX file.
struct IdxHeader {
    type_code: u8,
    dims: Vec<usize>,
}

fn read_idx_header(r: &mut impl Read) -> Result<IdxHeader, TensorError> {
    let io = |e: io::Error| {
        TensorError::Idx(if e.kind() == io::ErrorKind::UnexpectedEof {
            "truncated header".to_string()
        } else {
            e.to_string()
        })
    };
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic).map_err(io)?;
    if magic[0] != 0 || magic[1] != 0 {
        return Err(TensorError::Idx(format!(
            "bad magic number {magic:02x?} (an IDX file starts with two zero bytes)"
        )));
    }
    let mut dims = Vec::with_capacity(usize::from(magic[3]));
    for _ in 0..magic[3] {
        let mut d = [0u8; 4];
        r.read_exact(&mut d).map_err(io)?;
        dims.push(u32::from_be_bytes(d) as usize);
    }
    Ok(IdxHeader {
        type_code: magic[2],
        dims,
    })
}

/// Reads an IDX stream. With `limit`, keeps only the first `limit` items
/// along the first dimension (and reads no further). Also returns the first
/// dimension as the header states it, before the limit.
fn idx_from_reader(mut r: impl Read, limit: Option<usize>) -> Result<(Tensor, usize), TensorError> {
    let IdxHeader {
        type_code,
        mut dims,
    } = read_idx_header(&mut r)?;
    let full_count = dims.first().copied().unwrap_or(1);
    let (size, dtype) = match type_code {
        0x08 => (1, DType::U8),
        0x09 => (1, DType::I8),
        0x0C => (4, DType::I32),
        0x0D => (4, DType::F32),
        0x0E => (8, DType::F64),
        0x0B => return Err(TensorError::Idx("16-bit elements are not supported".into())),
        other => {
            return Err(TensorError::Idx(format!(
                "unknown element type code {other:#04x}"
            )))
        }
    };
    if let (Some(limit), Some(first)) = (limit, dims.first_mut()) {
        *first = (*first).min(limit);
    }
    let too_big = || TensorError::Idx(format!("dimensions {dims:?} are too large"));
    let nbytes = element_count(&dims)
        .and_then(|n| n.checked_mul(size))
        .ok_or_else(too_big)?;
    let mut data = Vec::new();
    (&mut r)
        .take(nbytes as u64)
        .read_to_end(&mut data)
        .map_err(|e| TensorError::Idx(e.to_string()))?;
    if data.len() != nbytes {
        return Err(TensorError::Idx(format!(
            "data ends after {} of {nbytes} bytes",
            data.len()
        )));
    }
    // IDX stores multi-byte elements big-endian.
    let data = match dtype {
        DType::U8 => TensorData::U8(data),
        DType::I8 => TensorData::I8(data.into_iter().map(|b| b as i8).collect()),
        DType::I32 => TensorData::I32(
            data.chunks_exact(4)
                .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        DType::F32 => TensorData::F32(
            data.chunks_exact(4)
                .map(|c| f32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        _ => TensorData::F64(
            data.chunks_exact(8)
                .map(|c| f64::from_be_bytes(c.try_into().expect("8-byte chunk")))
                .collect(),
        ),
    };
    Ok((Tensor { shape: dims, data }, full_count))
}

/// Parses IDX data held in memory, gzip-compressed or not.
pub fn idx_from_bytes(bytes: &[u8]) -> Result<Tensor, TensorError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        idx_from_reader(flate2::read::MultiGzDecoder::new(bytes), None)
    } else {
        idx_from_reader(bytes, None)
    }
    .map(|(tensor, _)| tensor)
}

fn read_idx_limited(path: &Path, limit: Option<usize>) -> Result<(Tensor, usize), TensorError> {
    let file = fs::File::open(path).map_err(|source| TensorError::Io {
        op: "read",
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = BufReader::new(file);
    let gzip = reader
        .fill_buf()
        .map_err(|source| TensorError::Io {
            op: "read",
            path: path.to_path_buf(),
            source,
        })?
        .starts_with(&[0x1f, 0x8b]);
    let result = if gzip {
        idx_from_reader(flate2::bufread::MultiGzDecoder::new(reader), limit)
    } else {
        idx_from_reader(reader, limit)
    };
    result.map_err(|e| e.in_file(path))
}

/// Reads an IDX file (`u8`, `i8`, `i32`, `f32` or `f64` elements), plain or
/// gzip-compressed (detected from the content, not the name).
pub fn read_idx(path: impl AsRef<Path>) -> Result<Tensor, TensorError> {
    read_idx_limited(path.as_ref(), None).map(|(tensor, _)| tensor)
}

/// Reads an MNIST-style image/label pair of IDX files (plain or gzipped):
/// `u8` images `[N, rows, cols]` and `u8` labels `[N]`. With `limit`, only
/// the first `limit` images and labels are read.
pub fn read_mnist_idx(
    images_path: impl AsRef<Path>,
    labels_path: impl AsRef<Path>,
    limit: Option<usize>,
) -> Result<LabeledImages, TensorError> {
    let (images_path, labels_path) = (images_path.as_ref(), labels_path.as_ref());
    let (images, image_count) = read_idx_limited(images_path, limit)?;
    let (labels, label_count) = read_idx_limited(labels_path, limit)?;
    let in_file = |path: &Path, msg: String| TensorError::InFile {
        path: path.to_path_buf(),
        source: Box::new(TensorError::Idx(msg)),
    };
    if images.dtype() != DType::U8 || images.shape.len() != 3 {
        return Err(in_file(
            images_path,
            format!(
                "expected uint8 images of shape [N, rows, cols], found {} {:?}",
                images.dtype_name(),
                images.shape
            ),
        ));
    }
    let TensorData::U8(label_values) = labels.data else {
        return Err(in_file(
            labels_path,
            format!("expected uint8 labels, found {}", labels.data.dtype_name()),
        ));
    };
    if labels.shape.len() != 1 {
        return Err(in_file(
            labels_path,
            format!("expected labels of shape [N], found {:?}", labels.shape),
        ));
    }
    // Compare the files' own counts, not the truncated ones.
    if label_count != image_count {
        return Err(in_file(
            labels_path,
            format!(
                "has {label_count} labels but {} has {image_count} images",
                images_path.display(),
            ),
        ));
    }
    Ok(LabeledImages {
        images,
        labels: label_values,
    })
}
