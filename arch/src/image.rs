//! The program image (`.sysb`): what the compiler writes and the emulator, co-simulator and
//! board loader read.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! 0   magic        8 bytes  "SYSB\r\n\x1a\n"  (catches text-mode mangling, like PNG's)
//! 8   version      u16      FORMAT_VERSION
//! 10  flags        u16      zero
//! 12  sections     u32      number of section table entries
//! 16  fingerprint  u64      ArchConfig::fingerprint of the target
//! 24  dram_bytes   u64      DRAM the program needs (data, tensors, scratch)
//! 32  table        sections x { kind u32, reserved u32, offset u64, length u64 }
//! ..  payloads
//! end crc32        u32      CRC-32 (IEEE) of every byte before it
//! ```
//!
//! Section kinds: 1 code (16-byte instructions), 2 data (DRAM segments: addr u64, len u64,
//! bytes), 3 tensors (I/O descriptors), 4 metadata (key/value strings), 5 arch (the TOML of the
//! arch the program was compiled for, so `systole run` needs no `--arch`).

use crate::config::ArchConfig;
use crate::isa::{self, Insn, INSN_BYTES};
use std::collections::BTreeMap;

pub const MAGIC: [u8; 8] = *b"SYSB\r\n\x1a\n";
pub const FORMAT_VERSION: u16 = 1;
const HEADER_BYTES: usize = 32;
const ENTRY_BYTES: usize = 24;

const SEC_CODE: u32 = 1;
const SEC_DATA: u32 = 2;
const SEC_TENSORS: u32 = 3;
const SEC_META: u32 = 4;
const SEC_ARCH: u32 = 5;

/// Element type of an I/O tensor in DRAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    I8,
    U8,
    I32,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::I8 | DType::U8 => 1,
            DType::I32 => 4,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::I32 => "i32",
        }
    }
    pub fn from_name(s: &str) -> Option<DType> {
        match s {
            "i8" | "int8" => Some(DType::I8),
            "u8" | "uint8" => Some(DType::U8),
            "i32" | "int32" => Some(DType::I32),
            _ => None,
        }
    }
    fn code(self) -> u8 {
        match self {
            DType::I8 => 1,
            DType::U8 => 2,
            DType::I32 => 3,
        }
    }
    fn from_code(c: u8) -> Option<DType> {
        match c {
            1 => Some(DType::I8),
            2 => Some(DType::U8),
            3 => Some(DType::I32),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Input,
    Output,
}

/// Affine quantization of a tensor: real = scale * (q - zero_point). When present, `systole run`
/// accepts float inputs (quantized with round-half-to-even, as onnxruntime does) and can
/// dequantize outputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quant {
    pub scale: f32,
    pub zero_point: i32,
}

/// Where and how an input or output tensor lives in DRAM.
///
/// The logical tensor has `shape` (as the model declares it). It is stored with its dimensions
/// permuted by `perm` (storage dim i = logical dim perm[i]), row-major, except that consecutive
/// rows of the innermost storage dimension are `row_pitch` bytes apart (so rows can be padded
/// to whole buffer lines).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorDesc {
    pub name: String,
    pub role: Role,
    pub dtype: DType,
    pub shape: Vec<u64>,
    pub perm: Vec<u32>,
    pub dram_addr: u64,
    pub row_pitch: u64,
    pub quant: Option<Quant>,
    /// Stored value = logical value + offset. uint8 tensors are held on chip as int8 biased by
    /// -128 (offset -128): a host giving or reading uint8 data adds or removes it.
    pub offset: i32,
}

impl TensorDesc {
    /// A plain row-major tensor with unpadded rows.
    pub fn dense(
        name: &str,
        role: Role,
        dtype: DType,
        shape: &[u64],
        dram_addr: u64,
    ) -> TensorDesc {
        let inner = shape.last().copied().unwrap_or(1);
        TensorDesc {
            name: name.to_string(),
            role,
            dtype,
            shape: shape.to_vec(),
            perm: (0..shape.len() as u32).collect(),
            dram_addr,
            row_pitch: inner * dtype.size() as u64,
            quant: None,
            offset: 0,
        }
    }
    pub fn elements(&self) -> u64 {
        self.shape.iter().product()
    }
    /// Storage-order shape.
    pub fn stored_shape(&self) -> Vec<u64> {
        self.perm.iter().map(|&p| self.shape[p as usize]).collect()
    }
    /// Number of rows (product of all storage dims but the innermost).
    pub fn rows(&self) -> u64 {
        let s = self.stored_shape();
        s.iter()
            .rev()
            .skip(1)
            .fold(1u64, |a, &d| a.saturating_mul(d))
    }
    /// Bytes of DRAM the tensor spans.
    pub fn span_bytes(&self) -> u64 {
        let s = self.stored_shape();
        let inner = s.last().copied().unwrap_or(1) * self.dtype.size() as u64;
        if self.elements() == 0 {
            0
        } else {
            (self.rows() - 1) * self.row_pitch + inner
        }
    }
    /// DRAM byte offset (relative to `dram_addr`) of each element in logical row-major order.
    pub fn element_offsets(&self) -> Vec<u64> {
        let rank = self.shape.len();
        let n = self.elements() as usize;
        let stored = self.stored_shape();
        // Byte stride of each storage dim.
        let mut sstride = vec![0u64; rank];
        if rank > 0 {
            sstride[rank - 1] = self.dtype.size() as u64;
            if rank > 1 {
                sstride[rank - 2] = self.row_pitch;
                for i in (0..rank.saturating_sub(2)).rev() {
                    sstride[i] = sstride[i + 1] * stored[i + 1];
                }
            }
        }
        // Byte stride of each logical dim.
        let mut lstride = vec![0u64; rank];
        for (i, &p) in self.perm.iter().enumerate() {
            lstride[p as usize] = sstride[i];
        }
        let mut out = Vec::with_capacity(n);
        if n == 0 {
            return out;
        }
        if rank == 0 {
            out.push(0);
            return out;
        }
        // The innermost logical dim as a run, the outer ones as an odometer that keeps the
        // run's first offset up to date (this runs for every program input and output).
        let (inner, step) = (self.shape[rank - 1], lstride[rank - 1]);
        let mut idx = vec![0u64; rank - 1];
        let mut base = 0u64;
        loop {
            out.extend((0..inner).map(|j| base + j * step));
            let mut d = rank - 1;
            loop {
                if d == 0 {
                    return out;
                }
                d -= 1;
                idx[d] += 1;
                base += lstride[d];
                if idx[d] < self.shape[d] {
                    break;
                }
                base -= lstride[d] * self.shape[d];
                idx[d] = 0;
            }
        }
    }
}

/// A contiguous block of DRAM initialised by the image (weights, biases, constants).
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub dram_addr: u64,
    pub bytes: Vec<u8>,
}

/// A decoded program image.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    pub fingerprint: u64,
    pub dram_bytes: u64,
    pub code: Vec<Insn>,
    pub data: Vec<Segment>,
    pub tensors: Vec<TensorDesc>,
    pub meta: BTreeMap<String, String>,
    /// TOML text of the arch the image was compiled for.
    pub arch_toml: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ImageError {
    #[error("not a Systole program image (bad magic; expected \"SYSB\")")]
    BadMagic,
    #[error(
        "image format version {found} is not supported (this build reads version {FORMAT_VERSION})"
    )]
    Version { found: u16 },
    #[error("image is truncated: {what} needs {need} bytes, only {have} present")]
    Truncated { what: String, need: u64, have: u64 },
    #[error("image checksum mismatch (stored {stored:08x}, computed {computed:08x}): the file is corrupt")]
    Checksum { stored: u32, computed: u32 },
    #[error("image section {what} is malformed: {msg}")]
    Malformed { what: String, msg: String },
    #[error("instruction {index}: {err}")]
    Insn { index: usize, err: isa::IsaError },
    #[error("program was compiled for arch '{image_arch}' (fingerprint {image:016x}), not '{arch}' ({expected:016x}); recompile with --arch {arch}")]
    ArchMismatch {
        image: u64,
        expected: u64,
        image_arch: String,
        arch: String,
    },
    #[error("cannot encode image: {0}")]
    Encode(String),
}

fn malformed(what: &str, msg: impl Into<String>) -> ImageError {
    ImageError::Malformed {
        what: what.into(),
        msg: msg.into(),
    }
}

/// Bounds-checked little-endian reader; every read names what it was reading.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }
    fn take(&mut self, n: u64) -> Result<&'a [u8], ImageError> {
        let have = (self.buf.len() - self.pos) as u64;
        if n > have {
            return Err(malformed(
                self.what,
                format!(
                    "needs {n} more bytes at offset {}, only {have} left",
                    self.pos
                ),
            ));
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, ImageError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, ImageError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, ImageError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, ImageError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn string(&mut self) -> Result<String, ImageError> {
        let n = self.u32()?;
        let b = self.take(n as u64)?;
        String::from_utf8(b.to_vec()).map_err(|_| malformed(self.what, "string is not UTF-8"))
    }
    fn done(&self) -> bool {
        self.pos == self.buf.len()
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl Program {
    /// An empty program for `arch`.
    pub fn new(arch: &ArchConfig) -> Program {
        Program {
            fingerprint: arch.fingerprint(),
            dram_bytes: 0,
            code: Vec::new(),
            data: Vec::new(),
            tensors: Vec::new(),
            meta: BTreeMap::new(),
            arch_toml: arch.to_toml(),
        }
    }

    pub fn inputs(&self) -> impl Iterator<Item = &TensorDesc> {
        self.tensors.iter().filter(|t| t.role == Role::Input)
    }
    pub fn outputs(&self) -> impl Iterator<Item = &TensorDesc> {
        self.tensors.iter().filter(|t| t.role == Role::Output)
    }

    /// The arch embedded in the image.
    pub fn arch(&self) -> Result<ArchConfig, ImageError> {
        let arch = ArchConfig::from_toml_str(&self.arch_toml, "image arch section")
            .map_err(|e| malformed("arch", e.to_string()))?;
        if arch.fingerprint() != self.fingerprint {
            return Err(malformed(
                "arch",
                "embedded arch does not match the header fingerprint",
            ));
        }
        Ok(arch)
    }

    /// Fails unless the image was built for `arch`.
    pub fn check_arch(&self, arch: &ArchConfig) -> Result<(), ImageError> {
        if self.fingerprint != arch.fingerprint() {
            let image_arch = self.arch().map(|a| a.name).unwrap_or_else(|_| "?".into());
            return Err(ImageError::ArchMismatch {
                image: self.fingerprint,
                expected: arch.fingerprint(),
                image_arch,
                arch: arch.name.clone(),
            });
        }
        Ok(())
    }

    /// Checks that data segments and tensors lie inside `dram_bytes`.
    pub fn check_layout(&self) -> Result<(), ImageError> {
        for (i, s) in self.data.iter().enumerate() {
            let end = s.dram_addr.checked_add(s.bytes.len() as u64);
            if end.is_none_or(|e| e > self.dram_bytes) {
                return Err(malformed(
                    "data",
                    format!(
                        "segment {i} at {:#x}+{} lies outside the program's {} bytes of DRAM",
                        s.dram_addr,
                        s.bytes.len(),
                        self.dram_bytes
                    ),
                ));
            }
        }
        for t in &self.tensors {
            let rank = t.shape.len();
            let mut seen = vec![false; rank];
            for &p in &t.perm {
                if p as usize >= rank || std::mem::replace(&mut seen[p as usize], true) {
                    return Err(malformed(
                        "tensors",
                        format!(
                            "tensor '{}': perm {:?} is not a permutation of {rank} dims",
                            t.name, t.perm
                        ),
                    ));
                }
            }
            if t.perm.len() != rank {
                return Err(malformed(
                    "tensors",
                    format!(
                        "tensor '{}': perm has {} entries for rank {rank}",
                        t.name,
                        t.perm.len()
                    ),
                ));
            }
            let inner = t
                .stored_shape()
                .last()
                .copied()
                .unwrap_or(1)
                .saturating_mul(t.dtype.size() as u64);
            if rank > 1 && t.row_pitch < inner {
                return Err(malformed(
                    "tensors",
                    format!(
                        "tensor '{}': row pitch {} is less than a row ({inner} bytes)",
                        t.name, t.row_pitch
                    ),
                ));
            }
            let elems = t.shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
            if elems.is_none_or(|e| e > 1 << 32) {
                return Err(malformed(
                    "tensors",
                    format!("tensor '{}': shape {:?} is too large", t.name, t.shape),
                ));
            }
            let span = (t.rows().saturating_sub(1))
                .checked_mul(t.row_pitch)
                .and_then(|x| x.checked_add(inner));
            let end = span.and_then(|s| t.dram_addr.checked_add(s));
            if end.is_none_or(|e| e > self.dram_bytes) {
                return Err(malformed(
                    "tensors",
                    format!(
                        "tensor '{}' at {:#x} lies outside the program's {} bytes of DRAM",
                        t.name, t.dram_addr, self.dram_bytes
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, ImageError> {
        let mut code = Vec::with_capacity(self.code.len() * INSN_BYTES);
        for (index, insn) in self.code.iter().enumerate() {
            code.extend_from_slice(
                &insn
                    .encode()
                    .map_err(|err| ImageError::Insn { index, err })?,
            );
        }
        let mut data = Vec::new();
        data.extend_from_slice(&(self.data.len() as u32).to_le_bytes());
        for s in &self.data {
            data.extend_from_slice(&s.dram_addr.to_le_bytes());
            data.extend_from_slice(&(s.bytes.len() as u64).to_le_bytes());
            data.extend_from_slice(&s.bytes);
        }
        let mut tens = Vec::new();
        tens.extend_from_slice(&(self.tensors.len() as u32).to_le_bytes());
        for t in &self.tensors {
            put_str(&mut tens, &t.name);
            tens.push(match t.role {
                Role::Input => 0,
                Role::Output => 1,
            });
            tens.push(t.dtype.code());
            tens.push(t.shape.len() as u8);
            for d in &t.shape {
                tens.extend_from_slice(&d.to_le_bytes());
            }
            for p in &t.perm {
                tens.push(*p as u8);
            }
            tens.extend_from_slice(&t.dram_addr.to_le_bytes());
            tens.extend_from_slice(&t.row_pitch.to_le_bytes());
            match t.quant {
                None => tens.push(0),
                Some(q) => {
                    tens.push(1);
                    tens.extend_from_slice(&q.scale.to_le_bytes());
                    tens.extend_from_slice(&q.zero_point.to_le_bytes());
                }
            }
            tens.extend_from_slice(&t.offset.to_le_bytes());
        }
        let mut meta = Vec::new();
        meta.extend_from_slice(&(self.meta.len() as u32).to_le_bytes());
        for (k, v) in &self.meta {
            put_str(&mut meta, k);
            put_str(&mut meta, v);
        }
        let sections: [(u32, &[u8]); 5] = [
            (SEC_CODE, &code),
            (SEC_DATA, &data),
            (SEC_TENSORS, &tens),
            (SEC_META, &meta),
            (SEC_ARCH, self.arch_toml.as_bytes()),
        ];
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&(sections.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.fingerprint.to_le_bytes());
        out.extend_from_slice(&self.dram_bytes.to_le_bytes());
        let mut offset = (HEADER_BYTES + ENTRY_BYTES * sections.len()) as u64;
        for (kind, body) in &sections {
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            out.extend_from_slice(&(body.len() as u64).to_le_bytes());
            offset += body.len() as u64;
        }
        for (_, body) in &sections {
            out.extend_from_slice(body);
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    /// Parses and fully validates an image. Never panics, whatever the bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Program, ImageError> {
        let have = bytes.len() as u64;
        if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
            // A prefix of the magic is a truncated image, anything else is not an image.
            if bytes.len() < MAGIC.len() && MAGIC.starts_with(bytes) && !bytes.is_empty() {
                return Err(ImageError::Truncated {
                    what: "header".into(),
                    need: HEADER_BYTES as u64 + 4,
                    have,
                });
            }
            return Err(ImageError::BadMagic);
        }
        if bytes.len() < 10 {
            return Err(ImageError::Truncated {
                what: "header".into(),
                need: HEADER_BYTES as u64 + 4,
                have,
            });
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != FORMAT_VERSION {
            return Err(ImageError::Version { found: version });
        }
        if bytes.len() < HEADER_BYTES + 4 {
            return Err(ImageError::Truncated {
                what: "header".into(),
                need: HEADER_BYTES as u64 + 4,
                have,
            });
        }
        let mut h = Reader::new(&bytes[..HEADER_BYTES], "header");
        h.take(10)?;
        let flags = h.u16()?;
        let nsec = h.u32()?;
        let fingerprint = h.u64()?;
        let dram_bytes = h.u64()?;
        let table_end = HEADER_BYTES as u64 + nsec as u64 * ENTRY_BYTES as u64;
        if table_end + 4 > have {
            return Err(ImageError::Truncated {
                what: format!("section table ({nsec} entries)"),
                need: table_end + 4,
                have,
            });
        }
        // Sections must tile the body exactly, so the expected length is known before the CRC.
        let mut r = Reader::new(&bytes[HEADER_BYTES..table_end as usize], "section table");
        let mut entries = Vec::new();
        let mut expect = table_end;
        for _ in 0..nsec {
            let kind = r.u32()?;
            let _reserved = r.u32()?;
            let off = r.u64()?;
            let len = r.u64()?;
            if off != expect {
                return Err(malformed(
                    "table",
                    format!("section {kind} starts at {off}, expected {expect}"),
                ));
            }
            expect = off
                .checked_add(len)
                .ok_or_else(|| malformed("table", "section length overflows"))?;
            entries.push((kind, off, len));
        }
        if expect + 4 > have {
            return Err(ImageError::Truncated {
                what: "sections".into(),
                need: expect + 4,
                have,
            });
        }
        if expect + 4 < have {
            return Err(malformed(
                "file",
                format!("{} trailing bytes after the checksum", have - expect - 4),
            ));
        }
        let body = &bytes[..expect as usize];
        let stored = u32::from_le_bytes(bytes[expect as usize..].try_into().unwrap());
        let computed = crc32fast::hash(body);
        if stored != computed {
            return Err(ImageError::Checksum { stored, computed });
        }
        if flags != 0 {
            return Err(malformed("header", format!("unknown flags {flags:#06x}")));
        }
        let mut prog = Program {
            fingerprint,
            dram_bytes,
            code: Vec::new(),
            data: Vec::new(),
            tensors: Vec::new(),
            meta: BTreeMap::new(),
            arch_toml: String::new(),
        };
        let mut seen = [false; 6];
        for (kind, off, len) in entries {
            let payload = &bytes[off as usize..(off + len) as usize];
            if kind == 0 || kind > 5 {
                return Err(malformed("table", format!("unknown section kind {kind}")));
            }
            if std::mem::replace(&mut seen[kind as usize], true) {
                return Err(malformed(
                    "table",
                    format!("section kind {kind} appears twice"),
                ));
            }
            match kind {
                SEC_CODE => {
                    if !payload.len().is_multiple_of(INSN_BYTES) {
                        return Err(malformed(
                            "code",
                            format!(
                                "{} bytes is not a whole number of 16-byte instructions",
                                payload.len()
                            ),
                        ));
                    }
                    prog.code = isa::decode_all(payload)
                        .map_err(|(index, err)| ImageError::Insn { index, err })?;
                }
                SEC_DATA => prog.data = parse_data(payload)?,
                SEC_TENSORS => prog.tensors = parse_tensors(payload)?,
                SEC_META => prog.meta = parse_meta(payload)?,
                SEC_ARCH => {
                    prog.arch_toml = String::from_utf8(payload.to_vec())
                        .map_err(|_| malformed("arch", "not UTF-8"))?;
                }
                _ => unreachable!(),
            }
        }
        for (k, name) in [(SEC_CODE, "code"), (SEC_ARCH, "arch")] {
            if !seen[k as usize] {
                return Err(malformed(name, "section is missing"));
            }
        }
        prog.arch()?;
        prog.check_layout()?;
        Ok(prog)
    }

    pub fn write_file(&self, path: &std::path::Path) -> std::io::Result<()> {
        let bytes = self
            .to_bytes()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        write_atomic(path, &bytes)
    }
}

/// Writes through a temporary file in the same folder and renames it, so a failed or
/// interrupted write never leaves a partial file behind.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let res = std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path));
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

fn parse_data(p: &[u8]) -> Result<Vec<Segment>, ImageError> {
    let mut r = Reader::new(p, "data");
    let n = r.u32()?;
    let mut v = Vec::new();
    for _ in 0..n {
        let dram_addr = r.u64()?;
        let len = r.u64()?;
        v.push(Segment {
            dram_addr,
            bytes: r.take(len)?.to_vec(),
        });
    }
    if !r.done() {
        return Err(malformed("data", "trailing bytes"));
    }
    Ok(v)
}

fn parse_tensors(p: &[u8]) -> Result<Vec<TensorDesc>, ImageError> {
    let mut r = Reader::new(p, "tensors");
    let n = r.u32()?;
    let mut v = Vec::new();
    for _ in 0..n {
        let name = r.string()?;
        let role = match r.u8()? {
            0 => Role::Input,
            1 => Role::Output,
            x => {
                return Err(malformed(
                    "tensors",
                    format!("tensor '{name}': unknown role {x}"),
                ))
            }
        };
        let dt = r.u8()?;
        let dtype = DType::from_code(dt).ok_or_else(|| {
            malformed(
                "tensors",
                format!("tensor '{name}': unknown dtype code {dt}"),
            )
        })?;
        let rank = r.u8()? as usize;
        let mut shape = Vec::with_capacity(rank);
        for _ in 0..rank {
            shape.push(r.u64()?);
        }
        let mut perm = Vec::with_capacity(rank);
        for _ in 0..rank {
            perm.push(r.u8()? as u32);
        }
        let dram_addr = r.u64()?;
        let row_pitch = r.u64()?;
        let quant = match r.u8()? {
            0 => None,
            1 => {
                let scale = f32::from_le_bytes(r.take(4)?.try_into().unwrap());
                let zero_point = r.u32()? as i32;
                if !(scale.is_finite() && scale > 0.0) {
                    return Err(malformed(
                        "tensors",
                        format!("tensor '{name}': scale {scale} is not positive"),
                    ));
                }
                Some(Quant { scale, zero_point })
            }
            x => {
                return Err(malformed(
                    "tensors",
                    format!("tensor '{name}': bad quant tag {x}"),
                ))
            }
        };
        let offset = r.u32()? as i32;
        v.push(TensorDesc {
            name,
            role,
            dtype,
            shape,
            perm,
            dram_addr,
            row_pitch,
            quant,
            offset,
        });
    }
    if !r.done() {
        return Err(malformed("tensors", "trailing bytes"));
    }
    Ok(v)
}

fn parse_meta(p: &[u8]) -> Result<BTreeMap<String, String>, ImageError> {
    let mut r = Reader::new(p, "metadata");
    let n = r.u32()?;
    let mut m = BTreeMap::new();
    for _ in 0..n {
        let k = r.string()?;
        let v = r.string()?;
        m.insert(k, v);
    }
    if !r.done() {
        return Err(malformed("metadata", "trailing bytes"));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::{MatMul, Op};
    use proptest::prelude::*;

    fn sample() -> Program {
        let arch = ArchConfig::preset("tiny").unwrap();
        let mut p = Program::new(&arch);
        p.dram_bytes = 4096;
        p.code = vec![
            Insn::new(Op::MatMul(MatMul {
                inp: 1,
                acc: 2,
                m: 3,
                accumulate: true,
                binary: false,
                ..Default::default()
            })),
            Insn::new(Op::Finish(isa::Finish {})),
        ];
        p.data = vec![Segment {
            dram_addr: 1024,
            bytes: (0..64).collect(),
        }];
        let mut t = TensorDesc::dense("x", Role::Input, DType::I8, &[1, 16], 0);
        t.quant = Some(Quant {
            scale: 0.5,
            zero_point: -3,
        });
        p.tensors = vec![
            t,
            TensorDesc::dense("y", Role::Output, DType::I32, &[2, 4], 2048),
        ];
        p.meta.insert("model".into(), "sample".into());
        p
    }

    #[test]
    fn round_trip() {
        let p = sample();
        let b = p.to_bytes().unwrap();
        assert_eq!(Program::from_bytes(&b).unwrap(), p);
    }

    #[test]
    fn clear_errors() {
        let b = sample().to_bytes().unwrap();
        assert_eq!(
            Program::from_bytes(b"hello world, not an image at all"),
            Err(ImageError::BadMagic)
        );
        assert!(matches!(
            Program::from_bytes(&b[..b.len() - 1]),
            Err(ImageError::Truncated { .. })
        ));
        assert!(matches!(
            Program::from_bytes(&b[..40]),
            Err(ImageError::Truncated { .. })
        ));
        let mut v = b.clone();
        v[8] = 9;
        assert_eq!(
            Program::from_bytes(&v),
            Err(ImageError::Version { found: 9 })
        );
        let mut c = b.clone();
        let n = c.len();
        c[n - 10] ^= 0x40;
        assert!(matches!(
            Program::from_bytes(&c),
            Err(ImageError::Checksum { .. })
        ));
        let p = Program::from_bytes(&b).unwrap();
        let other = ArchConfig::preset("ulx3s").unwrap();
        let e = p.check_arch(&other).unwrap_err().to_string();
        assert!(e.contains("tiny") && e.contains("ulx3s"), "{e}");
    }

    #[test]
    fn element_offsets_follow_perm_and_pitch() {
        // NCHW [1,2,2,3] stored NHWC with 8-byte rows (channel dim padded).
        let mut t = TensorDesc::dense("x", Role::Input, DType::I8, &[1, 2, 2, 3], 0);
        t.perm = vec![0, 2, 3, 1];
        t.row_pitch = 8;
        let off = t.element_offsets();
        // logical (0,c,h,w) -> ((h*3)+w)*8 + c ... stored dims [1,2,3,2]: rows of 2 channels.
        // stored shape is [N,H,W,C] = [1,2,3,2]; row = (n,h,w), pitch 8; element c at +c.
        assert_eq!(t.stored_shape(), vec![1, 2, 3, 2]);
        assert_eq!(off[0], 0); // c0 h0 w0
        assert_eq!(off[1], 8); // c0 h0 w1
        assert_eq!(off[3], 24); // c0 h1 w0
        assert_eq!(off[6], 1); // c1 h0 w0
        assert_eq!(t.span_bytes(), 5 * 8 + 2);
    }

    proptest! {
        /// The odometer in `element_offsets` against its definition: the sum over logical
        /// dims of index x that dim's byte stride, for every element.
        #[test]
        fn element_offsets_equal_their_definition(
            shape in proptest::collection::vec(0u64..5, 0..5),
            perm_seed in any::<u64>(),
            pad in 0u64..4,
            i32s in any::<bool>(),
        ) {
            let rank = shape.len();
            let dtype = if i32s { DType::I32 } else { DType::I8 };
            let mut t = TensorDesc::dense("x", Role::Input, dtype, &shape, 0);
            let mut perm: Vec<u32> = (0..rank as u32).collect();
            let mut r = perm_seed;
            for i in (1..rank).rev() {
                perm.swap(i, (r % (i as u64 + 1)) as usize);
                r /= i as u64 + 1;
            }
            t.perm = perm.clone();
            let stored = t.stored_shape();
            t.row_pitch = (stored.last().copied().unwrap_or(1) + pad) * dtype.size() as u64;
            let mut sstride = vec![0u64; rank];
            for i in (0..rank).rev() {
                sstride[i] = match rank - 1 - i {
                    0 => dtype.size() as u64,
                    1 => t.row_pitch,
                    _ => sstride[i + 1] * stored[i + 1],
                };
            }
            let mut want = Vec::new();
            let n: u64 = shape.iter().product();
            for e in 0..n {
                let (mut rest, mut off) = (e, 0);
                for d in (0..rank).rev() {
                    let s = perm.iter().position(|&p| p as usize == d).unwrap();
                    off += rest % shape[d] * sstride[s];
                    rest /= shape[d];
                }
                want.push(off);
            }
            prop_assert_eq!(t.element_offsets(), want);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Program::from_bytes(&bytes);
        }

        #[test]
        fn mutated_images_never_panic_and_mostly_fail(pos in any::<prop::sample::Index>(), val in any::<u8>(), cut in any::<prop::sample::Index>(), mode in 0u8..3) {
            let mut b = sample().to_bytes().unwrap();
            match mode {
                0 => { let i = pos.index(b.len()); if b[i] == val { return Ok(()); } b[i] = val; }
                1 => { b.truncate(cut.index(b.len())); }
                _ => { let i = pos.index(b.len()); b.insert(i, val); }
            }
            // CRC-32 detects every single-byte change, so a mutation must never load.
            prop_assert!(Program::from_bytes(&b).is_err());
        }

        #[test]
        fn mutated_images_with_fixed_crc_never_panic(pos in any::<prop::sample::Index>(), val in any::<u8>()) {
            // Re-seal after mutating so the parser behind the checksum is exercised too.
            let mut b = sample().to_bytes().unwrap();
            let n = b.len() - 4;
            let i = pos.index(n);
            b[i] = val;
            b.truncate(n);
            let crc = crc32fast::hash(&b);
            b.extend_from_slice(&crc.to_le_bytes());
            let _ = Program::from_bytes(&b);
        }
    }
}
