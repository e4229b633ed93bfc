//! Reading and writing tensors: `.npy`, ONNX `TensorProto` / `ModelProto`,
//! and MNIST IDX files, on hand-built data and on the shared fixtures.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use proptest::prelude::*;
use prost::Message;
use systole_compiler::onnx::{self, DataType, TensorProto};
use systole_compiler::tensor::{
    idx_from_bytes, npy_from_bytes, npy_to_bytes, read_mnist_idx, read_npy, read_tensor_file,
    write_npy, DType, Tensor, TensorData, TensorError,
};

/// `../shared/fixtures` relative to the repository root. Tests that use it
/// fail (rather than skip) when it is missing.
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures");

fn fixtures() -> PathBuf {
    let dir = PathBuf::from(FIXTURES);
    assert!(
        dir.is_dir(),
        "fixture folder {} is missing (expected ../shared/fixtures beside the repository)",
        dir.display()
    );
    dir
}

fn sample(dtype: DType, n: usize) -> TensorData {
    match dtype {
        DType::F32 => TensorData::F32((0..n).map(|i| i as f32 * 0.5 - 3.25).collect()),
        DType::F64 => TensorData::F64((0..n).map(|i| i as f64 * 1e-3 - 1e10).collect()),
        DType::I8 => TensorData::I8((0..n).map(|i| (i as i64 * 37 % 256 - 128) as i8).collect()),
        DType::U8 => TensorData::U8((0..n).map(|i| (i * 91 % 256) as u8).collect()),
        DType::I32 => TensorData::I32((0..n).map(|i| i as i32 * -70_001 + 5).collect()),
        DType::I64 => TensorData::I64((0..n).map(|i| i as i64 * -(1 << 40) + 9).collect()),
        DType::Bool => TensorData::Bool((0..n).map(|i| i % 3 == 0).collect()),
    }
}

const SHAPES: &[&[usize]] = &[&[], &[5], &[2, 3], &[2, 1, 3, 4], &[0, 3]];

// --------------------------------------------------------------------- npy

#[test]
fn npy_round_trips_every_dtype_and_shape() {
    let dir = tempfile::tempdir().unwrap();
    for &dtype in &DType::ALL {
        for shape in SHAPES {
            let n = shape.iter().product();
            let t = Tensor::new(shape.to_vec(), sample(dtype, n)).unwrap();
            let path = dir
                .path()
                .join(format!("{}_{}.npy", dtype.name(), shape.len()));
            write_npy(&path, &t).unwrap();
            let bytes = fs::read(&path).unwrap();
            // Header padded so the data starts on a 64-byte boundary.
            let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            assert_eq!((10 + header_len) % 64, 0);
            assert_eq!(bytes[10 + header_len - 1], b'\n');
            assert_eq!(bytes.len(), 10 + header_len + n * dtype.size());
            let back = read_npy(&path).unwrap();
            assert_eq!(back, t, "{dtype} {shape:?}");
            assert_eq!(back.dtype_name(), dtype.name());
        }
    }
    // Nothing but the written files is left in the directory.
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.ends_with(".npy"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn npy_header_matches_numpy_layout() {
    let t = Tensor::new(vec![4, 1, 28, 28], TensorData::F32(vec![0.0; 4 * 784])).unwrap();
    let bytes = npy_to_bytes(&t);
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let header = std::str::from_utf8(&bytes[10..128]).unwrap();
    assert!(
        header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (4, 1, 28, 28), }")
    );
    let t1 = Tensor::new(vec![4], TensorData::I64(vec![7, 2, 1, 0])).unwrap();
    let header = String::from_utf8_lossy(&npy_to_bytes(&t1)[10..64]).into_owned();
    assert!(header.contains("'shape': (4,)"), "{header}");
}

#[test]
fn npy_long_header_uses_version_2() {
    // A shape with many dimensions pushes the header past 64 KiB.
    let shape = vec![1usize; 30_000];
    let t = Tensor::new(shape.clone(), TensorData::U8(vec![42])).unwrap();
    let bytes = npy_to_bytes(&t);
    assert_eq!(&bytes[6..8], &[2, 0]);
    let header_len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
    assert_eq!((12 + header_len) % 64, 0);
    assert_eq!(npy_from_bytes(&bytes).unwrap(), t);
}

fn npy_with_header(version: (u8, u8), header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[version.0, version.1]);
    let mut h = header.to_string();
    h.push('\n');
    if version.0 == 1 {
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(h.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn npy_reads_float16_and_header_variants() {
    // float16 1.0, -2.0, 0.5 → widened to f32.
    let data = [0x00, 0x3c, 0x00, 0xc0, 0x00, 0x38];
    let bytes = npy_with_header(
        (1, 0),
        "{'descr': '<f2', 'fortran_order': False, 'shape': (3,), }",
        &data,
    );
    let t = npy_from_bytes(&bytes).unwrap();
    assert_eq!(t.shape, vec![3]);
    assert_eq!(t.data, TensorData::F32(vec![1.0, -2.0, 0.5]));

    // Version 3.0, double quotes, key order, Python 2 longs, no trailing comma.
    let bytes = npy_with_header(
        (3, 0),
        r#"{"shape": (2L, 1L), "fortran_order": False, "descr": "|i1"}"#,
        &[0xff, 0x05],
    );
    let t = npy_from_bytes(&bytes).unwrap();
    assert_eq!(t.shape, vec![2, 1]);
    assert_eq!(t.data, TensorData::I8(vec![-1, 5]));

    // A Fortran-order 1-element array is still refused, with a clear message.
    let bytes = npy_with_header(
        (1, 0),
        "{'descr': '<i4', 'fortran_order': True, 'shape': (2, 2), }",
        &[0; 16],
    );
    let err = npy_from_bytes(&bytes).unwrap_err().to_string();
    assert!(err.contains("Fortran"), "{err}");
}

#[test]
fn npy_rejects_bad_input() {
    let cases: &[(&str, &[u8], &str)] = &[
        ("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", &[0; 4], "big-endian"),
        ("{'descr': '<u2', 'fortran_order': False, 'shape': (1,), }", &[0; 2], "unsupported dtype"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", &[0; 4], "needs 8 data bytes"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", &[0; 5], "needs 4 data bytes"),
        ("{'descr': '<f4', 'shape': (1,), }", &[0; 4], "lacks key 'fortran_order'"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", &[0; 4], "unexpected key"),
        ("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", &[0; 4], "structured"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", &[], "header"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999, 99999999999), }", &[], "more elements"),
        ("((((((((((((((((((((((((((((((((((((((((", &[], "nesting"),
        ("not a dict", &[], "header"),
    ];
    for (header, data, expect) in cases {
        let err = npy_from_bytes(&npy_with_header((1, 0), header, data))
            .expect_err(header)
            .to_string();
        assert!(err.contains(expect), "{header}: {err}");
    }
    let err = npy_from_bytes(&npy_with_header((4, 0), "{}", &[])).unwrap_err();
    assert!(err.to_string().contains("version 4.0"), "{err}");
}

#[test]
fn npy_truncated_anywhere_is_an_error() {
    let t = Tensor::new(vec![3, 2], sample(DType::I32, 6)).unwrap();
    let bytes = npy_to_bytes(&t);
    for len in 0..bytes.len() {
        assert!(
            npy_from_bytes(&bytes[..len]).is_err(),
            "prefix of {len} bytes accepted"
        );
    }
    assert_eq!(npy_from_bytes(&bytes).unwrap(), t);
}

#[test]
fn read_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("garbage.npy");
    fs::write(&bad, b"\x93NUMPY\x01\x00\xff\xff{'descr'").unwrap();
    let err = read_npy(&bad).unwrap_err().to_string();
    assert!(
        err.contains("garbage.npy") && err.contains("truncated"),
        "{err}"
    );

    let missing = dir.path().join("missing.npy");
    let err = read_tensor_file(&missing).unwrap_err();
    assert!(matches!(err, TensorError::Io { .. }));
    assert!(err.to_string().contains("missing.npy"), "{err}");

    let txt = dir.path().join("t.txt");
    fs::write(&txt, b"1 2 3").unwrap();
    let err = read_tensor_file(&txt).unwrap_err().to_string();
    assert!(
        err.contains("t.txt") && err.contains(".npy or .pb"),
        "{err}"
    );

    let pb = dir.path().join("bad.pb");
    fs::write(&pb, [0xff, 0xff, 0xff]).unwrap();
    let err = read_tensor_file(&pb).unwrap_err().to_string();
    assert!(
        err.contains("bad.pb") && err.contains("TensorProto"),
        "{err}"
    );

    let pb = dir.path().join("string.pb");
    let proto = TensorProto {
        dims: vec![1],
        data_type: DataType::String as i32,
        string_data: vec![b"hi".to_vec()],
        name: "s".into(),
        ..Default::default()
    };
    fs::write(&pb, proto.encode_to_vec()).unwrap();
    let err = read_tensor_file(&pb).unwrap_err().to_string();
    assert!(err.contains("string.pb") && err.contains("STRING"), "{err}");

    let err = onnx::load_model(dir.path().join("nope.onnx"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope.onnx"), "{err}");
    let junk = dir.path().join("junk.onnx");
    fs::write(&junk, [0x0a, 0xff, 0xff, 0xff, 0x0f]).unwrap();
    let err = onnx::load_model(&junk).unwrap_err().to_string();
    assert!(
        err.contains("junk.onnx") && err.contains("ModelProto"),
        "{err}"
    );
}

#[test]
fn write_npy_is_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.npy");
    let first = Tensor::new(vec![2], TensorData::U8(vec![1, 2])).unwrap();
    write_npy(&path, &first).unwrap();

    // An inconsistent tensor is refused and the existing file is untouched.
    let broken = Tensor {
        shape: vec![3],
        data: TensorData::U8(vec![1]),
    };
    assert!(write_npy(&path, &broken).is_err());
    assert_eq!(read_npy(&path).unwrap(), first);

    // Overwriting replaces the whole file.
    let second = Tensor::new(vec![1, 2], TensorData::F64(vec![0.25, 8.0])).unwrap();
    write_npy(&path, &second).unwrap();
    assert_eq!(read_npy(&path).unwrap(), second);

    // A missing directory is an error naming the file, and creates nothing.
    let nested = dir.path().join("no/such/dir/x.npy");
    let err = write_npy(&nested, &first).unwrap_err().to_string();
    assert!(err.contains("x.npy"), "{err}");
    assert!(!dir.path().join("no").exists());

    // Renaming onto a directory fails; the temporary file is cleaned up.
    let as_dir = dir.path().join("dir.npy");
    fs::create_dir(&as_dir).unwrap();
    fs::write(as_dir.join("keep"), b"x").unwrap();
    assert!(write_npy(&as_dir, &first).is_err());
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["dir.npy", "out.npy"], "{names:?}");
}

// ------------------------------------------------------------------- ONNX

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u64, wire: u64) {
    varint(out, (field << 3) | wire);
}

fn len_delimited(out: &mut Vec<u8>, field: u64, body: &[u8]) {
    key(out, field, 2);
    varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

#[test]
fn hand_built_tensor_proto_decodes() {
    // dims 2, 3 unpacked (as proto2 writes them), data_type FLOAT,
    // float_data packed, name "x".
    let mut b = Vec::new();
    for d in [2, 3] {
        key(&mut b, 1, 0);
        varint(&mut b, d);
    }
    key(&mut b, 2, 0);
    varint(&mut b, 1);
    let floats: Vec<u8> = [1.5f32, -2.0, 0.0, 3.25, 1e-3, -7.0]
        .iter()
        .flat_map(|f| f.to_le_bytes())
        .collect();
    len_delimited(&mut b, 4, &floats);
    len_delimited(&mut b, 8, b"x");
    let proto = onnx::decode_tensor(&b).unwrap();
    assert_eq!(proto.dims, vec![2, 3]);
    assert_eq!(proto.data_type_enum(), Some(DataType::Float));
    assert_eq!(proto.name, "x");
    let t = Tensor::from_onnx(&proto).unwrap();
    assert_eq!(t.shape, vec![2, 3]);
    assert_eq!(
        t.data,
        TensorData::F32(vec![1.5, -2.0, 0.0, 3.25, 1e-3, -7.0])
    );

    // Packed dims, INT8 in raw_data.
    let mut b = Vec::new();
    len_delimited(&mut b, 1, &[4]);
    key(&mut b, 2, 0);
    varint(&mut b, 3);
    len_delimited(&mut b, 9, &[0x80, 0xff, 0x00, 0x7f]);
    let t = Tensor::from_onnx(&onnx::decode_tensor(&b).unwrap()).unwrap();
    assert_eq!(t.data, TensorData::I8(vec![-128, -1, 0, 127]));

    // INT64 typed field with a negative (10-byte varint) value, scalar.
    let mut b = Vec::new();
    key(&mut b, 2, 0);
    varint(&mut b, 7);
    let mut packed = Vec::new();
    varint(&mut packed, (-5i64) as u64);
    len_delimited(&mut b, 7, &packed);
    let t = Tensor::from_onnx(&onnx::decode_tensor(&b).unwrap()).unwrap();
    assert_eq!(t.shape, Vec::<usize>::new());
    assert_eq!(t.data, TensorData::I64(vec![-5]));

    // FLOAT16 via int32_data (bit patterns) and BFLOAT16 via raw_data.
    let proto = TensorProto {
        dims: vec![2],
        data_type: DataType::Float16 as i32,
        int32_data: vec![0x3c00, 0xc000],
        ..Default::default()
    };
    let t = Tensor::from_onnx(&proto).unwrap();
    assert_eq!(t.data, TensorData::F32(vec![1.0, -2.0]));
    let proto = TensorProto {
        dims: vec![1],
        data_type: DataType::Bfloat16 as i32,
        raw_data: vec![0xc0, 0x3f],
        ..Default::default()
    };
    assert_eq!(
        Tensor::from_onnx(&proto).unwrap().data,
        TensorData::F32(vec![1.5])
    );
}

#[test]
fn to_onnx_round_trips_every_dtype() {
    for &dtype in &DType::ALL {
        for shape in SHAPES {
            let n = shape.iter().product();
            let t = Tensor::new(shape.to_vec(), sample(dtype, n)).unwrap();
            let mut proto = t.to_onnx();
            proto.name = "t".into();
            let decoded = onnx::decode_tensor(&proto.encode_to_vec()).unwrap();
            assert_eq!(decoded, proto);
            assert_eq!(Tensor::from_onnx(&decoded).unwrap(), t, "{dtype} {shape:?}");
        }
    }
}

#[test]
fn from_onnx_rejects_bad_tensors() {
    let base = TensorProto {
        dims: vec![2, 2],
        data_type: DataType::Float as i32,
        float_data: vec![1.0; 4],
        name: "w".into(),
        ..Default::default()
    };
    let check = |proto: TensorProto, expect: &str| {
        let err = Tensor::from_onnx(&proto).unwrap_err().to_string();
        assert!(err.contains(expect) && err.contains("'w'"), "{err}");
    };
    check(
        TensorProto {
            data_location: Some(onnx::DataLocation::External as i32),
            external_data: vec![onnx::StringStringEntryProto {
                key: "location".into(),
                value: "w.bin".into(),
            }],
            float_data: vec![],
            ..base.clone()
        },
        "external",
    );
    check(
        TensorProto {
            float_data: vec![1.0; 3],
            ..base.clone()
        },
        "3 elements in float_data",
    );
    check(
        TensorProto {
            dims: vec![2, -2],
            ..base.clone()
        },
        "negative",
    );
    check(
        TensorProto {
            dims: vec![i64::MAX, i64::MAX],
            ..base.clone()
        },
        "overflows",
    );
    check(
        TensorProto {
            data_type: DataType::Uint16 as i32,
            ..base.clone()
        },
        "UINT16",
    );
    check(
        TensorProto {
            data_type: 99,
            ..base.clone()
        },
        "unsupported data type 99",
    );
    check(
        TensorProto {
            raw_data: vec![0; 15],
            float_data: vec![],
            ..base.clone()
        },
        "15 bytes of raw_data",
    );
    check(
        TensorProto {
            data_type: DataType::Int8 as i32,
            int32_data: vec![1, 2, 300, 4],
            float_data: vec![],
            ..base.clone()
        },
        "out-of-range value 300",
    );
    // Huge dims with tiny data: an error, not an allocation.
    check(
        TensorProto {
            dims: vec![1 << 40],
            float_data: vec![1.0],
            ..base.clone()
        },
        "needs 1099511627776",
    );
}

// --------------------------------------------------------------- fixtures

fn case_dirs() -> Vec<PathBuf> {
    let cases = fixtures().join("cases");
    let mut dirs: Vec<PathBuf> = fs::read_dir(&cases)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", cases.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no cases in {}", cases.display());
    dirs
}

#[test]
fn fixture_test_data_sets_decode() {
    let mut count = 0;
    for case in case_dirs() {
        let mut sets: Vec<PathBuf> = fs::read_dir(&case)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("test_data_set_"))
            })
            .collect();
        sets.sort();
        assert!(!sets.is_empty(), "no test data sets in {}", case.display());
        for set in sets {
            for file in ["input_0.pb", "output_0.pb"] {
                let path = set.join(file);
                let t =
                    read_tensor_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(!t.is_empty(), "{} is empty", path.display());
                assert_eq!(t.len(), t.shape.iter().product::<usize>());
                // The same through the lower-level API.
                let proto = onnx::load_tensor_proto(&path).unwrap();
                assert_eq!(Tensor::from_onnx(&proto).unwrap(), t);
                if file == "input_0.pb" {
                    assert_eq!(t.dtype(), DType::F32, "{}", path.display());
                }
                count += 1;
            }
        }
    }
    assert!(count >= 16, "only {count} tensors found");
}

#[test]
fn fixture_models_load() {
    for case in case_dirs() {
        let path = case.join("model.onnx");
        let model = onnx::load_model(&path).unwrap_or_else(|e| panic!("{e}"));
        let graph = model
            .graph
            .as_ref()
            .unwrap_or_else(|| panic!("{} has no graph", path.display()));
        assert!(!graph.node.is_empty(), "{} has no nodes", path.display());
        assert!(!graph.input.is_empty() && !graph.output.is_empty());
        assert!(!model.opset_import.is_empty(), "{}", path.display());
        assert!(model.ir_version > 0);
        for node in &graph.node {
            assert!(!node.op_type.is_empty());
        }
        // Graph input 0 is a tensor whose element type and static shape match
        // the test input.
        let input = &graph.input[0];
        let tt = input
            .r#type
            .as_ref()
            .and_then(|t| t.tensor_type())
            .unwrap_or_else(|| panic!("{}: input is not a tensor", path.display()));
        assert_eq!(tt.elem_type, DataType::Float as i32);
        let x = read_tensor_file(case.join("test_data_set_0/input_0.pb")).unwrap();
        if let Some(shape) = &tt.shape {
            use onnx::proto::tensor_shape_proto::dimension::Value;
            for (dim, &n) in shape.dim.iter().zip(&x.shape) {
                if let Some(Value::DimValue(v)) = dim.value {
                    assert_eq!(v as usize, n, "{}", path.display());
                }
            }
        }
        // Initializers convert (unless stored in a type we do not handle).
        for init in &graph.initializer {
            match Tensor::from_onnx(init) {
                Ok(t) => assert_eq!(t.len(), t.shape.iter().product::<usize>()),
                Err(TensorError::UnsupportedDataType { .. }) => {}
                Err(e) => panic!("{}: {e}", path.display()),
            }
        }
        // Re-encoding and decoding gives the same model.
        let again = onnx::decode_model(&model.encode_to_vec()).unwrap();
        assert_eq!(again, model);
    }
}

fn mnist_paths() -> (PathBuf, PathBuf) {
    let dir = fixtures().join("mnist");
    (
        dir.join("t10k-images-idx3-ubyte.gz"),
        dir.join("t10k-labels-idx1-ubyte.gz"),
    )
}

#[test]
fn finn_npy_fixtures_read() {
    let dir = fixtures().join("finn/src/finn/qnn-data/build_dataflow");
    let input = read_tensor_file(dir.join("input.npy")).unwrap();
    assert_eq!(input.shape, vec![4, 1, 28, 28]);
    let TensorData::F32(pixels) = &input.data else {
        panic!("input.npy is {}", input.dtype_name());
    };
    assert!(pixels
        .iter()
        .all(|&p| (0.0..=255.0).contains(&p) && p.fract() == 0.0));
    let expected = read_npy(dir.join("expected_output.npy")).unwrap();
    assert_eq!(expected.shape, vec![4]);
    assert_eq!(expected.data, TensorData::I64(vec![7, 2, 1, 0]));

    // input.npy holds the first four MNIST test images.
    let (images, labels) = mnist_paths();
    let mnist = read_mnist_idx(images, labels, Some(4)).unwrap();
    let TensorData::U8(raw) = &mnist.images.data else {
        unreachable!()
    };
    assert_eq!(
        pixels,
        &raw.iter().map(|&p| f32::from(p)).collect::<Vec<_>>()
    );

    // And survives a write/read round trip unchanged.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("input.npy");
    write_npy(&out, &input).unwrap();
    assert_eq!(
        fs::read(&out).unwrap(),
        fs::read(dir.join("input.npy")).unwrap()
    );
}

#[test]
fn mnist_test_set_reads() {
    let (images, labels) = mnist_paths();
    let set = read_mnist_idx(&images, &labels, None).unwrap();
    assert_eq!(set.images.shape, vec![10_000, 28, 28]);
    assert_eq!(set.images.dtype(), DType::U8);
    assert_eq!(set.labels.len(), 10_000);
    assert_eq!(&set.labels[..4], &[7, 2, 1, 0]);
    assert!(set.labels.iter().all(|&l| l < 10));

    let few = read_mnist_idx(&images, &labels, Some(3)).unwrap();
    assert_eq!(few.images.shape, vec![3, 28, 28]);
    assert_eq!(few.labels, vec![7, 2, 1]);
    let TensorData::U8(all) = &set.images.data else {
        unreachable!()
    };
    assert_eq!(few.images.data, TensorData::U8(all[..3 * 784].to_vec()));

    // Swapped paths: an error naming the offending file.
    let err = read_mnist_idx(&labels, &images, Some(1))
        .unwrap_err()
        .to_string();
    assert!(err.contains("t10k-labels-idx1-ubyte.gz"), "{err}");
}

// -------------------------------------------------------------------- IDX

fn idx_bytes(type_code: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, type_code, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[test]
fn idx_plain_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let pixels: Vec<u8> = (0..2 * 3 * 2).collect();
    let images = idx_bytes(0x08, &[2, 3, 2], &pixels);
    let labels = idx_bytes(0x08, &[2], &[4, 9]);
    let write = |name: &str, b: &[u8]| -> PathBuf {
        let p = dir.path().join(name);
        fs::write(&p, b).unwrap();
        p
    };
    let (ip, lp) = (write("i", &images), write("l", &labels));
    let (igz, lgz) = (write("i.gz", &gzip(&images)), write("l.gz", &gzip(&labels)));
    for (i, l) in [(&ip, &lp), (&igz, &lgz), (&ip, &lgz)] {
        let set = read_mnist_idx(i, l, None).unwrap();
        assert_eq!(set.images.shape, vec![2, 3, 2]);
        assert_eq!(set.images.data, TensorData::U8(pixels.clone()));
        assert_eq!(set.labels, vec![4, 9]);
    }
    assert_eq!(idx_from_bytes(&gzip(&images)).unwrap().shape, vec![2, 3, 2]);

    // Big-endian i32 elements.
    let t = idx_from_bytes(&idx_bytes(
        0x0C,
        &[2],
        &[0, 0, 1, 0, 0xff, 0xff, 0xff, 0xfe],
    ))
    .unwrap();
    assert_eq!(t.data, TensorData::I32(vec![256, -2]));

    // Count mismatch, truncation, bad magic.
    let three = write("l3", &idx_bytes(0x08, &[3], &[1, 2, 3]));
    let err = read_mnist_idx(&ip, &three, Some(1))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("3 labels") && err.contains("2 images"),
        "{err}"
    );
    let short = write("short", &images[..images.len() - 1]);
    let err = read_mnist_idx(&short, &lp, None).unwrap_err().to_string();
    assert!(err.contains("short") && err.contains("11 of 12"), "{err}");
    let err = idx_from_bytes(&[1, 2, 3, 4]).unwrap_err().to_string();
    assert!(err.contains("magic"), "{err}");
    assert!(idx_from_bytes(&gzip(&images)[..20]).is_err());
}

// --------------------------------------------------------- malformed input

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(proto) = onnx::decode_tensor(&bytes) {
            let _ = Tensor::from_onnx(&proto);
        }
        let _ = onnx::decode_model(&bytes);
        let _ = npy_from_bytes(&bytes);
        let _ = idx_from_bytes(&bytes);
    }

    #[test]
    fn random_npy_headers_never_panic(
        version in prop_oneof![Just((1u8, 0u8)), Just((2, 0)), Just((3, 0))],
        header in "[{}()\\[\\]',: a-z_<|0-9fiubTrueFalsLN]{0,80}",
        data in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let _ = npy_from_bytes(&npy_with_header(version, &header, &data));
    }

    #[test]
    fn corrupted_npy_never_panics(
        pos in 0usize..200,
        byte in any::<u8>(),
        cut in 0usize..200,
    ) {
        let t = Tensor::new(vec![3, 4], TensorData::F32(vec![1.0; 12])).unwrap();
        let mut bytes = npy_to_bytes(&t);
        let pos = pos % bytes.len();
        bytes[pos] = byte;
        bytes.truncate(bytes.len() - cut.min(bytes.len()));
        let _ = npy_from_bytes(&bytes);
    }

    #[test]
    fn fuzzed_tensor_protos_convert_or_error(
        dims in proptest::collection::vec(-2i64..6, 0..4),
        data_type in 0i32..30,
        raw in proptest::collection::vec(any::<u8>(), 0..64),
        ints in proptest::collection::vec(any::<i32>(), 0..16),
    ) {
        let proto = TensorProto {
            dims,
            data_type,
            raw_data: raw,
            int32_data: ints,
            ..Default::default()
        };
        if let Ok(t) = Tensor::from_onnx(&proto) {
            prop_assert_eq!(t.len(), t.shape.iter().product::<usize>());
        }
    }
}
