//! Text assembler and disassembler for whole program images (`.sysb` <-> `.sysasm`).
//!
//! [`disassemble`] prints a [`Program`] as text and [`assemble`] reads it back:
//! `assemble(&disassemble(&p), _) == Ok(p)` (with equal `to_bytes()`) for every program the
//! image loader accepts whose tensor names are distinct. Errors are one line,
//! `SOURCE:LINE: cause`.
//!
//! # Format
//!
//! The text is read line by line. `#` starts a comment that runs to the end of the line (except
//! inside a quoted string); blank lines are ignored. Every other line is a directive (it starts
//! with `.`) or one instruction.
//!
//! ```text
//! .arch tiny                      # target arch: a preset name (ArchConfig::preset)
//! .dram 4096                      # Program::dram_bytes
//! .meta model "mlp \"small\""     # metadata KEY "VALUE"
//! .input x i8 [1,16] @0x0 scale=0.5 zp=-3
//! .output y u8 [1,2,2,3] @0x100 perm=[0,2,3,1] pitch=4
//! .data 0x400                     # one DRAM segment starting at 0x400 ...
//! .hex 000102030405060708090a0b0c0d0e0f   # ... whose bytes follow in .hex lines
//! .hex 1011
//!     load buf=wgt dram=0x400 rows=1 cols=4 push_next
//!     ldw pop_prev                # instructions: Insn's text form
//!     finish
//! ```
//!
//! Directives:
//!
//! * `.arch NAME` — the target is the preset `NAME`: the program's `arch_toml` is that preset's
//!   `ArchConfig::to_toml()` and its `fingerprint` the preset's fingerprint.
//! * `.arch_toml` followed by TOML lines and a line `.end` — the target is the arch described by
//!   the TOML text. The lines in between are taken verbatim (no comment stripping; a trailing
//!   `\r` is dropped), each followed by a newline, and become `arch_toml`. For text that does
//!   not fit a block (no final newline, a carriage return, or a line reading `.end`) the
//!   disassembler writes the one-line form `.arch_toml "ESCAPED TOML"` instead.
//!
//!   Exactly one `.arch` or `.arch_toml` is required, before the first instruction.
//! * `.dram BYTES` — `Program::dram_bytes` (0 when absent). At most once.
//! * `.meta KEY "VALUE"` — one metadata entry; keys must be distinct.
//! * `.input NAME DTYPE [D0,D1,...] @ADDR [perm=[P0,...]] [pitch=N] [scale=F zp=Z] [offset=O]` and
//!   `.output ...` — one I/O tensor (`TensorDesc`), in image order. DTYPE is `i8`, `u8` or
//!   `i32`; the shape may be `[]` (a scalar). `perm` defaults to the identity, `pitch` to dense
//!   rows (innermost stored dimension x element size), and `scale`/`zp` (quantization, both or
//!   neither) to none. The disassembler prints `scale` with `{:?}`, which round-trips exactly.
//!   Names must be distinct.
//! * `.data ADDR` — starts a DRAM segment at ADDR; the `.hex` lines directly after it (comments
//!   and blank lines may come between) hold its bytes, two hex digits each, whitespace ignored.
//!   The disassembler writes at most 32 bytes per `.hex` line.
//!
//! Strings (`.meta` values, and names or keys that are empty or contain whitespace, control
//! characters, `"`, `#`, `[` or `]`) are double-quoted with the escapes `\"`, `\\`, `\n`, `\r`,
//! `\t`, `\0` and `\u{HEX}`. Numbers are decimal, `0x` hex or `0b` binary, with
//! optional `_` separators.
//!
//! Instructions use `Insn`'s `Display`/`FromStr` form, `mnemonic field=value ... flags`;
//! fields left out are zero. The disassembler indents them and ends each with its index as a
//! comment (`    matmul acc=4 m=4 pop_prev   # 12`).
//!
//! The assembler checks syntax, value ranges, that `perm` is a permutation, that scales are
//! positive, and that every segment and tensor lies inside `.dram` bytes (what
//! `Program::check_layout` checks). It does not check dependency flags or buffer addresses
//! against the arch: that is the validator's and the emulator's job.

use crate::config::{ArchConfig, ConfigError, PRESETS};
use crate::image::{DType, ImageError, Program, Quant, Role, Segment, TensorDesc};
use crate::isa::Insn;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

/// Most bytes the disassembler puts on one `.hex` line.
pub const HEX_BYTES_PER_LINE: usize = 32;

/// An assembler error: `SOURCE:LINE: cause`, always on one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}:{line}: {msg}")]
pub struct AsmError {
    pub source_name: String,
    /// 1-based line number.
    pub line: usize,
    pub msg: String,
}

impl AsmError {
    fn new(source_name: &str, line: usize, msg: impl Into<String>) -> AsmError {
        let msg: String = msg.into();
        AsmError {
            source_name: source_name.to_string(),
            line,
            msg: msg.replace(['\r', '\n'], " "),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Disassembler

/// Prints a program in the assembler text format (see the module docs).
pub fn disassemble(p: &Program) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Systole program: {} instructions, {} data segments, {} tensors",
        p.code.len(),
        p.data.len(),
        p.tensors.len()
    );
    write_arch(&mut s, p);
    let _ = writeln!(s, ".dram {}", p.dram_bytes);

    if !p.meta.is_empty() {
        s.push('\n');
    }
    for (k, v) in &p.meta {
        let _ = writeln!(s, ".meta {} {}", word(k), quote(v));
    }

    if !p.tensors.is_empty() {
        s.push('\n');
    }
    for t in &p.tensors {
        write_tensor(&mut s, t);
    }

    for seg in &p.data {
        let _ = writeln!(s, "\n.data {:#x}", seg.dram_addr);
        for chunk in seg.bytes.chunks(HEX_BYTES_PER_LINE) {
            s.push_str(".hex ");
            for b in chunk {
                let _ = write!(s, "{b:02x}");
            }
            s.push('\n');
        }
    }

    if !p.code.is_empty() {
        s.push('\n');
    }
    for (i, insn) in p.code.iter().enumerate() {
        let _ = writeln!(s, "    {insn}   # {i}");
    }
    s
}

fn write_arch(s: &mut String, p: &Program) {
    let preset = PRESETS
        .iter()
        .map(|(n, _)| *n)
        .find(|n| ArchConfig::preset(n).is_some_and(|a| a.to_toml() == p.arch_toml));
    match preset {
        Some(name) => {
            let _ = writeln!(s, ".arch {name}");
        }
        None if fits_block(&p.arch_toml) => {
            let _ = writeln!(s, ".arch_toml\n{}.end", p.arch_toml);
        }
        None => {
            let _ = writeln!(s, ".arch_toml {}", quote(&p.arch_toml));
        }
    }
    match ArchConfig::from_toml_str(&p.arch_toml, "embedded arch") {
        Ok(a) if a.fingerprint() == p.fingerprint => {
            let _ = writeln!(s, "# fingerprint {:016x}", p.fingerprint);
        }
        Ok(a) => {
            let _ = writeln!(
                s,
                "# warning: header fingerprint {:016x} does not match the arch's {:016x}",
                p.fingerprint,
                a.fingerprint()
            );
        }
        Err(e) => {
            let msg = e.to_string().replace(['\r', '\n'], " ");
            let _ = writeln!(s, "# warning: the embedded arch is invalid: {msg}");
        }
    }
}

/// Whether TOML text can be written as an `.arch_toml` ... `.end` block and read back exactly.
fn fits_block(toml: &str) -> bool {
    toml.ends_with('\n') && !toml.contains('\r') && toml.lines().all(|l| l.trim() != ".end")
}

fn write_tensor(s: &mut String, t: &TensorDesc) {
    let dir = match t.role {
        Role::Input => "input",
        Role::Output => "output",
    };
    let _ = write!(
        s,
        ".{dir} {} {} {} @{:#x}",
        word(&t.name),
        t.dtype.name(),
        list(&t.shape),
        t.dram_addr
    );
    let identity: Vec<u32> = (0..t.shape.len() as u32).collect();
    if t.perm != identity {
        let _ = write!(s, " perm={}", list(&t.perm));
    }
    if dense_pitch(t) != Some(t.row_pitch) {
        let _ = write!(s, " pitch={}", t.row_pitch);
    }
    if let Some(q) = t.quant {
        let _ = write!(s, " scale={:?} zp={}", q.scale, q.zero_point);
    }
    if t.offset != 0 {
        let _ = write!(s, " offset={}", t.offset);
    }
    s.push('\n');
}

fn list<T: std::fmt::Display>(v: &[T]) -> String {
    let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", items.join(","))
}

/// Row pitch of unpadded rows: innermost stored dimension x element size. None if `perm` is not
/// a permutation of the shape's dimensions (or the product overflows).
fn dense_pitch(t: &TensorDesc) -> Option<u64> {
    let rank = t.shape.len();
    if t.perm.len() != rank {
        return None;
    }
    let mut seen = vec![false; rank];
    for &p in &t.perm {
        if p as usize >= rank || std::mem::replace(&mut seen[p as usize], true) {
            return None;
        }
    }
    let inner = t.perm.last().map_or(1, |&p| t.shape[p as usize]);
    inner.checked_mul(t.dtype.size() as u64)
}

/// A name or key: bare when unambiguous, else quoted.
fn word(s: &str) -> String {
    let plain = !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '#' | '[' | ']'));
    if plain {
        s.to_string()
    } else {
        quote(s)
    }
}

/// A double-quoted string with escapes, on one line.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------------------------
// Assembler

const DIRECTIVES: &str = ".arch, .arch_toml, .dram, .meta, .input, .output, .data, .hex";

/// Assembles program text (see the module docs). `source_name` names the text in errors.
pub fn assemble(text: &str, source_name: &str) -> Result<Program, AsmError> {
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut prog = Program {
        fingerprint: 0,
        dram_bytes: 0,
        code: Vec::new(),
        data: Vec::new(),
        tensors: Vec::new(),
        meta: BTreeMap::new(),
        arch_toml: String::new(),
    };
    let mut arch_line: Option<usize> = None;
    let mut dram_line: Option<usize> = None;
    // Line of each segment's `.data` and each tensor's directive, for layout errors.
    let mut seg_lines: Vec<usize> = Vec::new();
    let mut tensor_lines: Vec<usize> = Vec::new();
    let mut tensor_names: HashMap<String, usize> = HashMap::new();
    // The segment `.hex` lines add to, while no other directive or instruction intervenes.
    let mut open_segment: Option<usize> = None;

    let mut i = 0;
    while i < lines.len() {
        let no = i + 1;
        i += 1;
        let body = strip_comment(lines[i - 1]).trim();
        if body.is_empty() {
            continue;
        }
        let err = |msg: String| AsmError::new(source_name, no, msg);
        let Some(directive) = body.strip_prefix('.') else {
            open_segment = None;
            if arch_line.is_none() {
                return Err(err(
                    "instruction before `.arch`: the target arch must come first".into(),
                ));
            }
            let insn: Insn = body.parse().map_err(err)?;
            prog.code.push(insn);
            continue;
        };
        let (name, args) = split_word(directive);
        if name != "hex" {
            open_segment = None;
        }
        match name {
            "arch" | "arch_toml" => {
                if let Some(prev) = arch_line {
                    return Err(err(format!(
                        "second arch directive (the arch was already set on line {prev})"
                    )));
                }
                arch_line = Some(no);
                let (cfg, toml) = if name == "arch" {
                    let toks = tokens(args).map_err(err)?;
                    let [t] = toks.as_slice() else {
                        return Err(err(format!(
                            "`.arch` takes one preset name ({})",
                            presets()
                        )));
                    };
                    let cfg = ArchConfig::preset(&t.text).ok_or_else(|| {
                        err(format!(
                            "unknown arch preset '{}' (presets: {})",
                            t.text,
                            presets()
                        ))
                    })?;
                    let toml = cfg.to_toml();
                    (cfg, toml)
                } else {
                    let toks = tokens(args).map_err(err)?;
                    let block = toks.is_empty();
                    let toml = match toks.as_slice() {
                        [] => {
                            let mut toml = String::new();
                            loop {
                                let Some(line) = lines.get(i) else {
                                    return Err(err(
                                        "`.arch_toml` block is not closed by a `.end` line".into(),
                                    ));
                                };
                                i += 1;
                                if line.trim() == ".end" {
                                    break;
                                }
                                toml.push_str(line);
                                toml.push('\n');
                            }
                            toml
                        }
                        [t] if t.quoted => t.text.clone(),
                        _ => {
                            return Err(err(
                                "`.arch_toml` takes no argument (then TOML lines up to `.end`) \
                                 or one quoted string"
                                    .into(),
                            ))
                        }
                    };
                    let cfg = ArchConfig::from_toml_str(&toml, "`.arch_toml`")
                        .map_err(|e| arch_toml_error(source_name, no, block, e))?;
                    (cfg, toml)
                };
                prog.fingerprint = cfg.fingerprint();
                prog.arch_toml = toml;
            }
            "end" => return Err(err("`.end` without a preceding `.arch_toml`".into())),
            "dram" => {
                if let Some(prev) = dram_line {
                    return Err(err(format!("second `.dram` (first on line {prev})")));
                }
                let toks = tokens(args).map_err(&err)?;
                let [t] = toks.as_slice() else {
                    return Err(err("`.dram` takes one byte count".into()));
                };
                prog.dram_bytes = parse_u64(bare(t).map_err(&err)?).map_err(&err)?;
                dram_line = Some(no);
            }
            "meta" => {
                let toks = tokens(args).map_err(&err)?;
                let [k, v] = toks.as_slice() else {
                    return Err(err("`.meta` takes KEY \"VALUE\"".into()));
                };
                if !v.quoted {
                    return Err(err(format!(
                        "`.meta` value must be a quoted string, not '{}'",
                        v.text
                    )));
                }
                if prog.meta.contains_key(&k.text) {
                    return Err(err(format!("duplicate `.meta` key {}", quote(&k.text))));
                }
                prog.meta.insert(k.text.clone(), v.text.clone());
            }
            "input" | "output" => {
                let role = if name == "input" {
                    Role::Input
                } else {
                    Role::Output
                };
                let toks = tokens(args).map_err(&err)?;
                let t = parse_tensor(role, &toks).map_err(&err)?;
                if let Some(prev) = tensor_names.insert(t.name.clone(), no) {
                    return Err(err(format!(
                        "duplicate tensor name {} (first declared on line {prev})",
                        quote(&t.name)
                    )));
                }
                prog.tensors.push(t);
                tensor_lines.push(no);
            }
            "data" => {
                let toks = tokens(args).map_err(&err)?;
                let [t] = toks.as_slice() else {
                    return Err(err("`.data` takes one DRAM address".into()));
                };
                let dram_addr = parse_u64(bare(t).map_err(&err)?).map_err(&err)?;
                prog.data.push(Segment {
                    dram_addr,
                    bytes: Vec::new(),
                });
                seg_lines.push(no);
                open_segment = Some(prog.data.len() - 1);
            }
            "hex" => {
                let Some(seg) = open_segment else {
                    return Err(err(
                        "`.hex` outside a data segment (it must follow `.data` or `.hex`)".into(),
                    ));
                };
                parse_hex(args, &mut prog.data[seg].bytes).map_err(err)?;
            }
            _ => {
                return Err(err(format!(
                    "unknown directive '.{name}' (directives: {DIRECTIVES})"
                )))
            }
        }
    }

    let last = lines.len().max(1);
    if arch_line.is_none() {
        return Err(AsmError::new(
            source_name,
            last,
            "missing `.arch NAME` or `.arch_toml` directive",
        ));
    }
    check_layout(&prog, &seg_lines, &tensor_lines)
        .map_err(|(line, msg)| AsmError::new(source_name, line, msg))?;
    Ok(prog)
}

/// The layout checks of `Program::check_layout`, with the line of the item at fault.
fn check_layout(
    prog: &Program,
    seg_lines: &[usize],
    tensor_lines: &[usize],
) -> Result<(), (usize, String)> {
    for (seg, &line) in prog.data.iter().zip(seg_lines) {
        let end = seg.dram_addr.checked_add(seg.bytes.len() as u64);
        if end.is_none_or(|e| e > prog.dram_bytes) {
            return Err((
                line,
                format!(
                    "segment at {:#x} + {} bytes lies outside the program's {} bytes of DRAM \
                     (see `.dram`)",
                    seg.dram_addr,
                    seg.bytes.len(),
                    prog.dram_bytes
                ),
            ));
        }
    }
    for (t, &line) in prog.tensors.iter().zip(tensor_lines) {
        let one = Program {
            fingerprint: prog.fingerprint,
            dram_bytes: prog.dram_bytes,
            code: Vec::new(),
            data: Vec::new(),
            tensors: vec![t.clone()],
            meta: BTreeMap::new(),
            arch_toml: String::new(),
        };
        if let Err(e) = one.check_layout() {
            let msg = match e {
                ImageError::Malformed { msg, .. } => msg,
                e => e.to_string(),
            };
            return Err((line, format!("{msg} (see `.dram`)")));
        }
    }
    Ok(())
}

/// A TOML error in an `.arch_toml` block points at the file line when the error has a line.
fn arch_toml_error(source_name: &str, line: usize, block: bool, e: ConfigError) -> AsmError {
    if let (true, ConfigError::Parse { msg, .. }) = (block, &e) {
        let at = msg.strip_prefix("line ").and_then(|r| r.split_once(','));
        if let Some((n, rest)) = at {
            if let Ok(n) = n.parse::<usize>() {
                let msg = format!("arch config in `.arch_toml` block:{rest}");
                return AsmError::new(source_name, line + n, msg);
            }
        }
    }
    AsmError::new(source_name, line, e.to_string())
}

fn presets() -> String {
    let names: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
    names.join(", ")
}

/// The line up to a `#` that is not inside a quoted string.
fn strip_comment(line: &str) -> &str {
    let mut in_str = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if in_str {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
        } else if c == '#' {
            return &line[..i];
        }
    }
    line
}

/// Splits off the first whitespace-delimited word.
fn split_word(s: &str) -> (&str, &str) {
    match s.char_indices().find(|(_, c)| c.is_whitespace()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

/// One argument of a directive.
#[derive(Debug)]
struct Tok {
    text: String,
    /// Written as a quoted string (escapes already resolved).
    quoted: bool,
}

/// Splits directive arguments into bare words (a `[...]` inside a word may contain spaces) and
/// quoted strings.
fn tokens(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else {
            return Ok(out);
        };
        let mut text = String::new();
        if first == '"' {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(format!("unterminated string \"{text}")),
                    Some('"') => break,
                    Some('\\') => text.push(unescape(&mut chars)?),
                    Some(c) => text.push(c),
                }
            }
            if let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                return Err(format!("unexpected '{c}' after a closing quote"));
            }
            out.push(Tok { text, quoted: true });
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                match c {
                    '"' => return Err(format!("unexpected '\"' inside '{text}'")),
                    '[' => {
                        text.push(c);
                        loop {
                            match chars.next() {
                                None => return Err(format!("'{text}' has no closing ']'")),
                                Some(c) => {
                                    text.push(c);
                                    if c == ']' {
                                        break;
                                    }
                                }
                            }
                        }
                    }
                    c => text.push(c),
                }
            }
            out.push(Tok {
                text,
                quoted: false,
            });
        }
    }
}

/// Resolves the escape after a backslash inside a quoted string.
fn unescape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<char, String> {
    match chars.next() {
        Some('"') => Ok('"'),
        Some('\\') => Ok('\\'),
        Some('n') => Ok('\n'),
        Some('r') => Ok('\r'),
        Some('t') => Ok('\t'),
        Some('0') => Ok('\0'),
        Some('u') => {
            if chars.next() != Some('{') {
                return Err("escape \\u must be written \\u{HEX}".into());
            }
            let mut hex = String::new();
            loop {
                match chars.next() {
                    Some('}') => break,
                    Some(c) if c.is_ascii_hexdigit() && hex.len() < 6 => hex.push(c),
                    _ => {
                        return Err("escape \\u must be written \\u{HEX} (1 to 6 hex digits)".into())
                    }
                }
            }
            u32::from_str_radix(&hex, 16)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| format!("\\u{{{hex}}} is not a Unicode scalar value"))
        }
        Some(c) => Err(format!(
            "unknown escape '\\{c}' (escapes: \\\" \\\\ \\n \\r \\t \\0 \\u{{HEX}})"
        )),
        None => Err("unterminated string (it ends in a backslash)".into()),
    }
}

/// The text of a token that must not be a quoted string.
fn bare(t: &Tok) -> Result<&str, String> {
    if t.quoted {
        Err(format!("unexpected quoted string {}", quote(&t.text)))
    } else {
        Ok(&t.text)
    }
}

/// An unsigned integer: decimal, `0x` hex or `0b` binary, `_` separators allowed.
fn parse_u64(s: &str) -> Result<u64, String> {
    let v = parse_int(s)?;
    u64::try_from(v).map_err(|_| format!("{s} is out of range 0..={}", u64::MAX))
}

fn parse_int(s: &str) -> Result<i128, String> {
    let bad = || format!("'{s}' is not an integer");
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let body = body.replace('_', "");
    let (digits, radix) = if let Some(h) = body.strip_prefix("0x").or(body.strip_prefix("0X")) {
        (h, 16)
    } else if let Some(b) = body.strip_prefix("0b") {
        (b, 2)
    } else {
        (body.as_str(), 10)
    };
    // from_str_radix would accept a sign here; only the one stripped above is allowed.
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(bad());
    }
    let v = u128::from_str_radix(digits, radix).map_err(|_| format!("{s} is out of range"))?;
    let v = i128::try_from(v).map_err(|_| format!("{s} is out of range"))?;
    Ok(if neg { -v } else { v })
}

/// `[a,b,...]` of unsigned integers.
fn parse_list(s: &str, what: &str) -> Result<Vec<u64>, String> {
    let inner = s
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .ok_or_else(|| format!("{what} must be a list like [1,2,3], not '{s}'"))?;
    if inner.trim().is_empty() {
        return Ok(Vec::new());
    }
    inner
        .split(',')
        .map(|x| parse_u64(x.trim()).map_err(|e| format!("{what}: {e}")))
        .collect()
}

fn parse_tensor(role: Role, toks: &[Tok]) -> Result<TensorDesc, String> {
    const USAGE: &str =
        "expected NAME DTYPE [D0,D1,...] @ADDR [perm=[...]] [pitch=N] [scale=F zp=Z]";
    let [name, dtype, shape, addr, opts @ ..] = toks else {
        return Err(USAGE.into());
    };
    let dtype_text = bare(dtype)?;
    let dtype = DType::from_name(dtype_text)
        .ok_or_else(|| format!("unknown dtype '{dtype_text}' (dtypes: i8, u8, i32)"))?;
    let shape = parse_list(bare(shape)?, "shape")?;
    if shape.len() > 255 {
        return Err(format!(
            "rank {} exceeds the image format's 255",
            shape.len()
        ));
    }
    // Zero dims included, so that no product over a subset of the dims can overflow.
    if shape
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d.max(1)))
        .is_none()
    {
        return Err(format!("shape {} is too large", list(&shape)));
    }
    let addr_text = bare(addr)?;
    let dram_addr = parse_u64(
        addr_text
            .strip_prefix('@')
            .ok_or_else(|| format!("expected @ADDR, found '{addr_text}' ({USAGE})"))?,
    )?;
    let mut perm: Option<Vec<u32>> = None;
    let mut pitch: Option<u64> = None;
    let mut scale: Option<f32> = None;
    let mut zp: Option<i32> = None;
    let mut offset: Option<i32> = None;
    for opt in opts {
        let text = bare(opt)?;
        let (key, val) = text
            .split_once('=')
            .ok_or_else(|| format!("expected key=value, found '{text}' ({USAGE})"))?;
        let dup = match key {
            "perm" => {
                let rank = shape.len() as u64;
                let v = parse_list(val, "perm")?;
                let mut seen = vec![false; shape.len()];
                for &p in &v {
                    if p >= rank || std::mem::replace(&mut seen[p as usize], true) {
                        return Err(format!("perm {val} is not a permutation of {rank} dims"));
                    }
                }
                if v.len() as u64 != rank {
                    return Err(format!("perm {val} is not a permutation of {rank} dims"));
                }
                perm.replace(v.into_iter().map(|p| p as u32).collect())
                    .is_some()
            }
            "pitch" => pitch.replace(parse_u64(val)?).is_some(),
            "scale" => {
                let s: f32 = val
                    .parse()
                    .map_err(|_| format!("scale '{val}' is not a number"))?;
                if !(s.is_finite() && s > 0.0) {
                    return Err(format!("scale {val} must be positive and finite"));
                }
                scale.replace(s).is_some()
            }
            "zp" => {
                let v = parse_int(val)?;
                let v = i32::try_from(v).map_err(|_| format!("zp {val} does not fit in int32"))?;
                zp.replace(v).is_some()
            }
            "offset" => {
                let v = parse_int(val)?;
                let v =
                    i32::try_from(v).map_err(|_| format!("offset {val} does not fit in int32"))?;
                offset.replace(v).is_some()
            }
            _ => {
                return Err(format!(
                    "unknown tensor option '{key}' (options: perm, pitch, scale, zp, offset)"
                ))
            }
        };
        if dup {
            return Err(format!("`{key}` given twice"));
        }
    }
    let quant = match (scale, zp) {
        (Some(scale), Some(zero_point)) => Some(Quant { scale, zero_point }),
        (None, None) => None,
        _ => return Err("`scale` and `zp` go together: give both or neither".into()),
    };
    let mut t = TensorDesc {
        name: name.text.clone(),
        role,
        dtype,
        perm: perm.unwrap_or_else(|| (0..shape.len() as u32).collect()),
        shape,
        dram_addr,
        row_pitch: 0,
        quant,
        offset: offset.unwrap_or(0),
    };
    t.row_pitch = match pitch {
        Some(p) => p,
        None => dense_pitch(&t).ok_or("the dense row pitch overflows; give pitch=N")?,
    };
    Ok(t)
}

/// Appends the bytes of a `.hex` line.
fn parse_hex(s: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let digits: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
    for pair in digits.chunks(2) {
        let [hi, lo] = pair else {
            return Err("`.hex` needs an even number of hex digits (two per byte)".into());
        };
        let d = |c: char| {
            c.to_digit(16)
                .ok_or_else(|| format!("'{c}' is not a hex digit"))
        };
        out.push((d(*hi)? * 16 + d(*lo)?) as u8);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::strategies::{arb_deps, arb_op};
    use crate::isa::{self, MatMul, Op};
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
            bytes: (0..70).collect(),
        }];
        let mut t = TensorDesc::dense("x", Role::Input, DType::I8, &[1, 16], 0);
        t.quant = Some(Quant {
            scale: 0.1,
            zero_point: -3,
        });
        p.tensors = vec![
            t,
            TensorDesc::dense("y", Role::Output, DType::I32, &[2, 4], 2048),
        ];
        p.meta
            .insert("model".into(), "sample \"q\" \\ # not a comment".into());
        p
    }

    fn round_trip(p: &Program) {
        let text = disassemble(p);
        let q = assemble(&text, "rt.sysasm").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(&q, p, "{text}");
        assert_eq!(q.to_bytes().unwrap(), p.to_bytes().unwrap());
        assert_eq!(disassemble(&q), text);
    }

    #[test]
    fn sample_round_trips_and_reads_well() {
        let p = sample();
        round_trip(&p);
        let text = disassemble(&p);
        for want in [
            ".arch tiny\n",
            ".dram 4096\n",
            ".meta model \"sample \\\"q\\\" \\\\ # not a comment\"\n",
            ".input x i8 [1,16] @0x0 scale=0.1 zp=-3\n",
            ".output y i32 [2,4] @0x800\n",
            ".data 0x400\n",
            "    matmul inp=1 acc=2 m=3 accumulate=1   # 0\n",
            "    finish   # 1\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        // 70 bytes: two full lines of 32 and one of 6.
        let hex: Vec<&str> = text.lines().filter(|l| l.starts_with(".hex")).collect();
        assert_eq!(hex.len(), 3);
        assert_eq!(hex[2], ".hex 404142434445");
    }

    const HAND_WRITTEN: &str = r#"
# A hand-written program: y = x (4x4 int8) through an identity weight tile.
.arch tiny
.dram 0x400
.meta model "identity"   # a trailing comment
.meta "odd key" "tab\there"
.input x i8 [4, 4] @0x0 scale=0.25 zp=0
.output y u8 [1,4,2,2] @0x100 perm=[0,2,3,1] pitch=8 scale=0.5 zp=128
.data 0x200      # weights: identity
.hex 01000000 00010000
.hex 00000100 00000001
# an empty segment
.data 0x3ff

    load buf=wgt sram=0 dram=0x200 rows=1 cols=4 push_next
    load dram=0 rows=1 cols=4 push_next       # input, buf=inp by default
    ldw wgt=0 pop_prev
    matmul inp=0 acc=0 m=4 pop_prev
    requant dst=0 src=0 param=4 m=4 lo=0 hi=255 unsigned=1 round=even push_next
    store dram=0x100 rows=1 cols=4 pop_prev
    finish
"#;

    #[test]
    fn hand_written_program() {
        let p = assemble(HAND_WRITTEN, "hand.sysasm").unwrap();
        let tiny = ArchConfig::preset("tiny").unwrap();
        assert_eq!(p.fingerprint, tiny.fingerprint());
        assert_eq!(p.arch().unwrap(), tiny);
        assert_eq!(p.dram_bytes, 1024);
        assert_eq!(p.meta["model"], "identity");
        assert_eq!(p.meta["odd key"], "tab\there");
        assert_eq!(p.tensors.len(), 2);
        let x = &p.tensors[0];
        assert_eq!((x.role, x.dtype, x.row_pitch), (Role::Input, DType::I8, 4));
        assert_eq!(x.shape, vec![4, 4]);
        assert_eq!(x.perm, vec![0, 1]);
        let y = &p.tensors[1];
        assert_eq!((y.role, y.dtype, y.row_pitch), (Role::Output, DType::U8, 8));
        assert_eq!(y.perm, vec![0, 2, 3, 1]);
        assert_eq!(
            y.quant,
            Some(Quant {
                scale: 0.5,
                zero_point: 128
            })
        );
        assert_eq!(p.data.len(), 2);
        assert_eq!(p.data[0].dram_addr, 0x200);
        assert_eq!(
            p.data[0].bytes,
            vec![1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]
        );
        assert_eq!(
            p.data[1],
            Segment {
                dram_addr: 0x3ff,
                bytes: vec![]
            }
        );
        assert_eq!(p.code.len(), 7);
        assert!(p.code[0].deps.push_next);
        assert_eq!(p.code[6].op, Op::Finish(isa::Finish {}));
        // The image loads, and the text survives a trip through the binary image.
        let q = Program::from_bytes(&p.to_bytes().unwrap()).unwrap();
        assert_eq!(q, p);
        round_trip(&p);
    }

    #[test]
    fn arch_block_forms() {
        // A custom arch becomes an .arch_toml block.
        let mut arch = ArchConfig::preset("ulx3s").unwrap();
        arch.name = "custom".into();
        arch.controller.token_depth = 3;
        let p = Program::new(&arch);
        let text = disassemble(&p);
        assert!(text.starts_with("# Systole program"), "{text}");
        assert!(text.contains("\n.arch_toml\nname = \"custom\"\n"), "{text}");
        round_trip(&p);
        // The bundled preset text (with its comments) is not to_toml() output: also a block.
        let mut p = Program::new(&ArchConfig::preset("edge").unwrap());
        p.arch_toml = PRESETS[2].1.to_string();
        assert!(disassemble(&p).contains(".arch_toml\n"));
        round_trip(&p);
        // Text that cannot be a block is one quoted line.
        for toml in [
            PRESETS[0].1.trim_end().to_string(),
            PRESETS[0].1.replace('\n', "\r\n"),
            PRESETS[0]
                .1
                .replace("name = \"tiny\"", "name = \"\"\"\n.end\n\"\"\""),
        ] {
            let mut p = Program::new(&ArchConfig::preset("tiny").unwrap());
            p.arch_toml = toml;
            p.fingerprint = p.arch().unwrap().fingerprint();
            let text = disassemble(&p);
            assert!(text.contains(".arch_toml \""), "{text}");
            round_trip(&p);
        }
    }

    #[test]
    fn disassembling_broken_programs_warns() {
        let mut p = sample();
        p.fingerprint ^= 1;
        assert!(disassemble(&p).contains("# warning: header fingerprint"));
        p.arch_toml = "bogus = 1\nline = 2\n".into();
        let text = disassemble(&p);
        let warning = text.lines().find(|l| l.starts_with("# warning")).unwrap();
        assert!(warning.contains("invalid"), "{text}");
        // Tensors with invalid perms print without panicking.
        p.tensors[0].perm = vec![7];
        assert!(disassemble(&p).contains("perm=[7]"));
    }

    /// (text, line, words the message must contain)
    const ERRORS: &[(&str, usize, &[&str])] = &[
        ("", 1, &["missing", ".arch"]),
        ("# nothing\n\n.dram 5\n", 4, &["missing", ".arch"]),
        (
            "matmul m=1\n.arch tiny\n",
            1,
            &["instruction before", ".arch"],
        ),
        (
            ".arch tiny\n.frob 1\n",
            2,
            &["unknown directive", ".frob", ".hex"],
        ),
        (".arch huge\n", 1, &["unknown arch preset", "huge", "tiny"]),
        (".arch tiny\n.arch tiny\n", 2, &["second arch", "line 1"]),
        (".arch\n", 1, &[".arch", "preset"]),
        (".arch_toml\nname = \"x\"\n", 1, &["not closed", ".end"]),
        (
            ".arch_toml\nname = 3\n.end\n",
            2,
            &["`.arch_toml` block", "column", "name"],
        ),
        (
            ".arch_toml\n\n# c\nname = = 1\n.end\n",
            4,
            &["`.arch_toml` block", "column"],
        ),
        (".arch_toml \"name = 3\"\n", 1, &["`.arch_toml`", "line 1"]),
        (".arch_toml bare\n", 1, &["quoted string"]),
        (".arch tiny\n.end\n", 2, &[".end", ".arch_toml"]),
        (".arch tiny\n.dram lots\n", 2, &["'lots'", "not an integer"]),
        (".arch tiny\n.dram -1\n", 2, &["out of range"]),
        (
            ".arch tiny\n.dram 99999999999999999999999\n",
            2,
            &["out of range"],
        ),
        (
            ".arch tiny\n.dram 1\n.dram 2\n",
            3,
            &["second `.dram`", "line 2"],
        ),
        (".arch tiny\n.meta k v\n", 2, &["quoted"]),
        (
            ".arch tiny\n.meta k \"v\"\n.meta k \"w\"\n",
            3,
            &["duplicate", "\"k\""],
        ),
        (".arch tiny\n.meta k \"v\n", 2, &["unterminated"]),
        (
            ".arch tiny\n.meta k \"\\q\"\n",
            2,
            &["unknown escape", "\\q"],
        ),
        (
            ".arch tiny\n.meta k \"\\u{110000}\"\n",
            2,
            &["not a Unicode scalar"],
        ),
        (
            ".arch tiny\n.meta k \"v\"x\n",
            2,
            &["after a closing quote"],
        ),
        (
            ".arch tiny\n.dram 64\n.input a i8 [4] @0\n.output a i8 [4] @8\n",
            4,
            &["duplicate tensor", "line 3"],
        ),
        (
            ".arch tiny\n.dram 64\n.input a f32 [4] @0\n",
            3,
            &["unknown dtype", "f32"],
        ),
        (
            ".arch tiny\n.dram 64\n.input a i8 [4 @0\n",
            3,
            &["no closing ']'"],
        ),
        (
            ".arch tiny\n.dram 64\n.input a i8 [4,,2] @0\n",
            3,
            &["shape", "not an integer"],
        ),
        (".arch tiny\n.dram 64\n.input a i8 [4] 0\n", 3, &["@ADDR"]),
        (
            ".arch tiny\n.dram 64\n.input a i8 [4]\n",
            3,
            &["expected NAME DTYPE"],
        ),
        (
            ".arch tiny\n.dram 64\n.input a i8 [2,2] @0 perm=[0,0]\n",
            3,
            &["not a permutation"],
        ),
        (
            ".arch tiny\n.dram 64\n.input a i8 [2,2] @0 perm=[1]\n",
            3,
            &["not a permutation"],
        ),
        (
            ".arch tiny\n.dram 64\n.input a i8 [2,2] @0 scale=0.5\n",
            3,
            &["scale", "zp", "both"],
        ),
        (
            ".arch tiny\n.dram 64\n.input a i8 [2,2] @0 scale=-1 zp=0\n",
            3,
            &["positive"],
        ),
        (
            ".arch tiny\n.dram 64\n.input a i8 [2,2] @0 scale=NaN zp=0\n",
            3,
            &["positive"],
        ),
        (
            ".arch tiny\n.dram 64\n.input a i8 [2,2] @0 zp=99999999999 scale=1\n",
            3,
            &["int32"],
        ),
        (
            ".arch tiny\n.dram 64\n.input a i8 [2,2] @0 pitch=2 pitch=2\n",
            3,
            &["given twice"],
        ),
        (
            ".arch tiny\n.dram 64\n.input a i8 [2,2] @0 colour=red\n",
            3,
            &["unknown tensor option", "colour"],
        ),
        (
            ".arch tiny\n.dram 64\n.input a i8 [2,2] @0 pitch=1\n",
            3,
            &["row pitch"],
        ),
        (
            ".arch tiny\n.dram 64\n.input a i32 [4,5] @0\n",
            3,
            &["outside", "64 bytes"],
        ),
        (
            ".arch tiny\n.input a i8 [4] @0\n.dram 2\n",
            2,
            &["outside", "2 bytes"],
        ),
        (
            ".arch tiny\n.input a i8 [0,1099511627776,1099511627776,5] @0\n",
            2,
            &["too large"],
        ),
        (
            ".arch tiny\n.hex 00\n",
            2,
            &[".hex", "outside a data segment"],
        ),
        (
            ".arch tiny\n.data 0\nnop\n.hex 00\n",
            4,
            &["outside a data segment"],
        ),
        (
            ".arch tiny\n.dram 8\n.data 0\n.hex 0\n",
            4,
            &["even number"],
        ),
        (
            ".arch tiny\n.dram 8\n.data 0\n.hex zz\n",
            4,
            &["'z'", "hex digit"],
        ),
        (
            ".arch tiny\n.dram 8\n.data 4\n.hex 0102030405\n",
            3,
            &["segment at 0x4", "outside"],
        ),
        (".arch tiny\n.data\n", 2, &[".data", "address"]),
        (
            ".arch tiny\nfrobnicate x=1\n",
            2,
            &["unknown mnemonic", "frobnicate"],
        ),
        (
            ".arch tiny\nmatmul m=99999   # too big\n",
            2,
            &["out of range"],
        ),
        (".arch tiny\nmatmul bogus=1\n", 2, &["bogus"]),
        (".arch tiny\nload pop_sideways\n", 2, &["pop_sideways"]),
    ];

    #[test]
    fn errors_name_the_line_and_the_cause() {
        for &(text, line, words) in ERRORS {
            let e = assemble(text, "bad.sysasm").expect_err(text);
            let msg = e.to_string();
            assert_eq!(e.line, line, "{text:?}: {msg}");
            assert!(
                msg.starts_with(&format!("bad.sysasm:{line}: ")),
                "{text:?}: {msg}"
            );
            assert!(!msg.contains('\n'), "{text:?}: {msg}");
            for w in words {
                assert!(msg.contains(w), "{text:?}: '{msg}' lacks '{w}'");
            }
        }
    }

    #[test]
    fn invalid_arch_block_names_the_field() {
        let toml = PRESETS[0].1.replace("rows = 4", "rows = 0");
        let text = format!("# arch\n.arch_toml\n{toml}.end\nfinish\n");
        let e = assemble(&text, "a.sysasm").unwrap_err().to_string();
        assert!(
            e.starts_with("a.sysasm:2: ") && e.contains("array.rows"),
            "{e}"
        );
    }

    #[test]
    fn lenient_spellings() {
        let text = ".arch tiny\r\n.dram 0x1_000\r\n.input \"a b\" int8 [ 2 , 2 ] @0b100 perm=[1, 0]\r\n\t  nop unit=store   # x\r\n";
        let p = assemble(text, "crlf").unwrap();
        assert_eq!(p.dram_bytes, 4096);
        assert_eq!(p.tensors[0].name, "a b");
        assert_eq!(p.tensors[0].dram_addr, 4);
        assert_eq!(p.tensors[0].perm, vec![1, 0]);
        assert_eq!(p.code.len(), 1);
        round_trip(&p);
    }

    fn arb_arch_toml() -> impl Strategy<Value = String> {
        let preset =
            (0..PRESETS.len()).prop_map(|i| ArchConfig::preset(PRESETS[i].0).unwrap().to_toml());
        let raw = (0..PRESETS.len()).prop_map(|i| PRESETS[i].1.to_string());
        let custom = (0..PRESETS.len(), 1u32..=255, "[a-z]{1,8}").prop_map(|(i, depth, name)| {
            let mut a = ArchConfig::preset(PRESETS[i].0).unwrap();
            a.controller.token_depth = depth;
            a.name = name;
            a.to_toml()
        });
        let odd = (0..PRESETS.len()).prop_map(|i| PRESETS[i].1.trim_end().replace('\n', "\r\n"));
        prop_oneof![preset, raw, custom, odd]
    }

    fn arb_name() -> impl Strategy<Value = String> {
        prop_oneof!["[a-z_][a-z0-9_./:]{0,10}", any::<String>()]
    }

    fn arb_tensor() -> impl Strategy<Value = TensorDesc> {
        let shape = proptest::collection::vec(1u64..6, 0..4);
        (
            shape,
            0usize..3,
            any::<bool>(),
            arb_name(),
            0u64..8,
            0u64..0x4000,
        )
            .prop_flat_map(|(shape, dt, input, name, extra, addr)| {
                let rank = shape.len() as u32;
                let perm = Just((0..rank).collect::<Vec<u32>>()).prop_shuffle();
                let scale =
                    prop::num::f32::POSITIVE | prop::num::f32::NORMAL | prop::num::f32::SUBNORMAL;
                let quant = proptest::option::of(
                    (scale, any::<i32>())
                        .prop_map(|(scale, zero_point)| Quant { scale, zero_point }),
                );
                (perm, quant).prop_map(move |(perm, quant)| {
                    let dtype = [DType::I8, DType::U8, DType::I32][dt];
                    let mut t = TensorDesc {
                        name: name.clone(),
                        role: if input { Role::Input } else { Role::Output },
                        dtype,
                        shape: shape.clone(),
                        perm,
                        dram_addr: addr,
                        row_pitch: 0,
                        quant,
                        offset: if dt == 0 { -128 } else { 0 },
                    };
                    t.row_pitch = dense_pitch(&t).unwrap() + extra;
                    t
                })
            })
    }

    fn arb_program() -> impl Strategy<Value = Program> {
        let segs = proptest::collection::vec(
            (0u64..0x8000, proptest::collection::vec(any::<u8>(), 0..80))
                .prop_map(|(dram_addr, bytes)| Segment { dram_addr, bytes }),
            0..4,
        );
        let tensors = proptest::collection::vec(arb_tensor(), 0..5);
        let meta = proptest::collection::btree_map(any::<String>(), any::<String>(), 0..4);
        let code = proptest::collection::vec(
            (arb_op(), arb_deps()).prop_map(|(op, deps)| Insn { deps, op }),
            0..40,
        );
        (arb_arch_toml(), segs, tensors, meta, code, 0u64..100).prop_map(
            |(arch_toml, data, mut tensors, meta, code, slack)| {
                // Distinct names: a single-digit suffix keeps them apart.
                for (i, t) in tensors.iter_mut().enumerate() {
                    t.name.push_str(&i.to_string());
                }
                let ends = data
                    .iter()
                    .map(|s: &Segment| s.dram_addr + s.bytes.len() as u64)
                    .chain(tensors.iter().map(|t| t.dram_addr + t.span_bytes()));
                let dram_bytes = ends.max().unwrap_or(0) + slack;
                let fingerprint = ArchConfig::from_toml_str(&arch_toml, "t")
                    .unwrap()
                    .fingerprint();
                Program {
                    fingerprint,
                    dram_bytes,
                    code,
                    data,
                    tensors,
                    meta,
                    arch_toml,
                }
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_programs_round_trip(p in arb_program()) {
            // Only loadable images are promised to round-trip: check the generator.
            prop_assert_eq!(&Program::from_bytes(&p.to_bytes().unwrap()).unwrap(), &p);
            round_trip(&p);
        }

        #[test]
        fn random_text_never_panics(text in any::<String>()) {
            let _ = assemble(&text, "random");
        }

        #[test]
        fn random_token_soup_never_panics(parts in proptest::collection::vec(prop_oneof![
            Just(".arch tiny"), Just(".arch_toml"), Just(".end"), Just(".dram"), Just(".meta"),
            Just(".input"), Just(".output"), Just(".data"), Just(".hex"), Just("\n"), Just(" "),
            Just("\""), Just("\\"), Just("\\u{"), Just("["), Just("]"), Just("@"), Just("#"),
            Just("="), Just("perm="), Just("pitch="), Just("scale="), Just("zp="), Just("0x"),
            Just("-"), Just("1"), Just("ff"), Just("i8"), Just("é"), Just("\r"), Just("matmul"),
            Just("m=3"), Just("pop_prev"), Just("\u{a0}"), Just("0b"), Just("_"),
            Just(".input a i8 "), Just("[0,"), Just("4294967296"), Just("18446744073709551615"),
            Just("\\n"), Just("@0"), Just("scale=1 zp=2"),
        ], 0..60)) {
            let text: String = parts.concat();
            if let Ok(p) = assemble(&text, "soup") {
                round_trip(&p);
            }
        }

        #[test]
        fn mutated_disassembly_never_panics(pos in any::<prop::sample::Index>(), ch in any::<char>(), mode in 0u8..3) {
            let mut text = disassemble(&sample());
            let idx: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
            let at = idx[pos.index(idx.len())];
            match mode {
                0 => { text.insert(at, ch); }
                1 => { text.remove(at); }
                _ => { text.truncate(at); }
            }
            if let Ok(p) = assemble(&text, "mutated") {
                round_trip(&p);
            }
        }
    }
}
