//! The ISA, defined once. Compiler emits it, emulator and RTL decode it, `docs/isa.md` is
//! generated from the same tables (a test keeps them equal).
//!
//! Every instruction is 128 bits, little-endian. Bits 0..6 hold the opcode, bits 6..10 the
//! dependency flags, and the operation's fields follow from bit 10 upward in declaration order.
//! Unused high bits must be zero (a decoder that ignored them could not be extended safely).

use std::fmt;

/// Bytes per encoded instruction.
pub const INSN_BYTES: usize = 16;
/// Bit position where operation fields start.
pub const FIELDS_LO: u32 = 10;
/// Accumulator lines a `store requant=1` reads from `param` before its data: the zero point
/// and clamps, the multipliers (or binary32 scales), the shifts.
pub const STORE_REQUANT_PARAM_LINES: u32 = 3;

/// The execution unit an instruction is queued to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unit {
    Load,
    Compute,
    Store,
    /// Executed by the controller itself (only `finish`).
    Controller,
}

impl Unit {
    pub fn name(self) -> &'static str {
        match self {
            Unit::Load => "load",
            Unit::Compute => "compute",
            Unit::Store => "store",
            Unit::Controller => "controller",
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Dependency flags (VTA-style token queues between neighbouring units).
///
/// The units form a chain load <-> compute <-> store. "prev" and "next" are the neighbours of
/// the unit the instruction runs on. `pop_*` waits for and consumes one token from that
/// neighbour before the instruction starts; `push_*` sends one token to it when the instruction
/// completes. Load has no prev neighbour and store has no next one: such flags are illegal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Deps {
    pub pop_prev: bool,
    pub pop_next: bool,
    pub push_prev: bool,
    pub push_next: bool,
}

impl Deps {
    pub const NAMES: [&'static str; 4] = ["pop_prev", "pop_next", "push_prev", "push_next"];

    fn to_raw(self) -> u128 {
        (self.pop_prev as u128)
            | (self.pop_next as u128) << 1
            | (self.push_prev as u128) << 2
            | (self.push_next as u128) << 3
    }
    fn from_raw(r: u128) -> Deps {
        Deps {
            pop_prev: r & 1 != 0,
            pop_next: r & 2 != 0,
            push_prev: r & 4 != 0,
            push_next: r & 8 != 0,
        }
    }
    pub fn flags(self) -> [bool; 4] {
        [self.pop_prev, self.pop_next, self.push_prev, self.push_next]
    }
    pub fn set(&mut self, name: &str) -> bool {
        match name {
            "pop_prev" => self.pop_prev = true,
            "pop_next" => self.pop_next = true,
            "push_prev" => self.push_prev = true,
            "push_next" => self.push_next = true,
            _ => return false,
        }
        true
    }
    pub fn is_empty(self) -> bool {
        self == Deps::default()
    }
}

/// A field value that packs into `width` bits.
pub trait FieldValue: Sized + Copy + Default + PartialEq + fmt::Debug {
    /// Raw bits, or None if the value does not fit in `width` bits.
    fn to_raw(self, width: u32) -> Option<u128>;
    /// Value from raw bits, or None if the bit pattern is not a legal value.
    fn from_raw(raw: u128, width: u32) -> Option<Self>;
    /// How the type is documented in docs/isa.md.
    fn type_doc(width: u32) -> String;
    /// Text form for the assembler.
    fn to_text(self) -> String;
    fn from_text(s: &str, width: u32) -> Result<Self, String>;
}

fn parse_int(s: &str) -> Result<i128, String> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let body = body.replace('_', "");
    let v = if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        i128::from_str_radix(h, 16)
    } else if let Some(b) = body.strip_prefix("0b") {
        i128::from_str_radix(b, 2)
    } else {
        body.parse::<i128>()
    }
    .map_err(|_| format!("'{s}' is not an integer"))?;
    Ok(if neg { -v } else { v })
}

impl FieldValue for u32 {
    fn to_raw(self, width: u32) -> Option<u128> {
        ((self as u128) < (1u128 << width)).then_some(self as u128)
    }
    fn from_raw(raw: u128, _width: u32) -> Option<Self> {
        u32::try_from(raw).ok()
    }
    fn type_doc(width: u32) -> String {
        format!("unsigned, 0..={}", (1u64 << width) - 1)
    }
    fn to_text(self) -> String {
        self.to_string()
    }
    fn from_text(s: &str, width: u32) -> Result<Self, String> {
        let v = parse_int(s)?;
        if v < 0 || v >= (1i128 << width) {
            return Err(format!("{s} is out of range 0..={}", (1u64 << width) - 1));
        }
        Ok(v as u32)
    }
}

impl FieldValue for i32 {
    fn to_raw(self, width: u32) -> Option<u128> {
        let lo = -(1i64 << (width - 1));
        let hi = (1i64 << (width - 1)) - 1;
        let v = self as i64;
        (v >= lo && v <= hi).then_some((v as u128) & ((1u128 << width) - 1))
    }
    fn from_raw(raw: u128, width: u32) -> Option<Self> {
        let shift = 128 - width;
        Some((((raw << shift) as i128) >> shift) as i32)
    }
    fn type_doc(width: u32) -> String {
        format!(
            "signed, {}..={}",
            -(1i64 << (width - 1)),
            (1i64 << (width - 1)) - 1
        )
    }
    fn to_text(self) -> String {
        self.to_string()
    }
    fn from_text(s: &str, width: u32) -> Result<Self, String> {
        let v = parse_int(s)?;
        let lo = -(1i128 << (width - 1));
        let hi = (1i128 << (width - 1)) - 1;
        if v < lo || v > hi {
            return Err(format!("{s} is out of range {lo}..={hi}"));
        }
        Ok(v as i32)
    }
}

impl FieldValue for bool {
    fn to_raw(self, _width: u32) -> Option<u128> {
        Some(self as u128)
    }
    fn from_raw(raw: u128, _width: u32) -> Option<Self> {
        Some(raw != 0)
    }
    fn type_doc(_width: u32) -> String {
        "flag, 0 or 1".into()
    }
    fn to_text(self) -> String {
        (self as u8).to_string()
    }
    fn from_text(s: &str, _width: u32) -> Result<Self, String> {
        match s {
            "0" | "false" => Ok(false),
            "1" | "true" => Ok(true),
            _ => Err(format!("'{s}' is not a flag (0 or 1)")),
        }
    }
}

/// Declares a small enum field type with its encodings and assembler names.
macro_rules! field_enum {
    ($(#[doc = $doc:literal])* $name:ident { $($(#[doc = $vdoc:literal])* $var:ident = $val:literal, $text:literal),+ $(,)? }) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
        pub enum $name {
            #[default]
            $($(#[doc = $vdoc])* $var = $val),+
        }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$var),+];
            pub fn text(self) -> &'static str {
                match self { $($name::$var => $text),+ }
            }
        }
        impl FieldValue for $name {
            fn to_raw(self, _width: u32) -> Option<u128> { Some(self as u128) }
            fn from_raw(raw: u128, _width: u32) -> Option<Self> {
                match raw { $($val => Some($name::$var),)+ _ => None }
            }
            fn type_doc(_width: u32) -> String {
                let v: Vec<String> = vec![$(format!("{}={}", $val, $text)),+];
                v.join(", ")
            }
            fn to_text(self) -> String { self.text().to_string() }
            fn from_text(s: &str, _width: u32) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$var),)+
                    _ => Err(format!("'{}' is not one of {}", s, [$($text),+].join(", "))),
                }
            }
        }
    };
}

// The first variant of each enum is its default (needed by the derive above).
#[allow(clippy::derivable_impls)]
mod enums {
    use super::*;
    field_enum! {
        /// Destination of a `load`.
        LoadBuf {
            /// input buffer, int8 lines of `rows` bytes
            Inp = 0, "inp",
            /// weight buffer, int8 lines of `cols` bytes
            Wgt = 1, "wgt",
            /// accumulator buffer, int32 lines of `cols` lanes read as int32 from DRAM
            Acc = 2, "acc",
            /// accumulator buffer, int8 DRAM bytes sign-extended to int32 lanes
            Acc8 = 3, "acc8",
        }
    }
    field_enum! {
        /// Source of a `store`.
        StoreBuf {
            /// output buffer, int8 lines of `cols` bytes
            Out = 0, "out",
            /// accumulator buffer, int32 lines (for int32 results such as MatMulInteger)
            Acc = 1, "acc",
        }
    }
    field_enum! {
        /// Lane-wise operation of `alu` (int32, wrapping).
        AluFunc {
            Add = 0, "add",
            Sub = 1, "sub",
            Max = 2, "max",
            Min = 3, "min",
            Mul = 4, "mul",
        }
    }
    field_enum! {
        /// Rounding of the right shift in `requant`.
        Round {
            /// round half to even (onnxruntime's QuantizeLinear / QLinear* rule)
            HalfEven = 0, "even",
            /// round half away from zero
            HalfAway = 1, "away",
            /// round half up, towards +infinity (TFLite/gemmlowp style)
            HalfUp = 2, "up",
            /// floor (arithmetic shift)
            Floor = 3, "floor",
        }
    }
    field_enum! {
        /// Unit that executes a `nop`.
        UnitSel {
            Load = 0, "load",
            Compute = 1, "compute",
            Store = 2, "store",
        }
    }
}
pub use enums::*;

impl UnitSel {
    pub fn unit(self) -> Unit {
        match self {
            UnitSel::Load => Unit::Load,
            UnitSel::Compute => Unit::Compute,
            UnitSel::Store => Unit::Store,
        }
    }
}

/// Layout of one field, for docs, assembler and tests.
#[derive(Debug, Clone)]
pub struct FieldLayout {
    pub name: &'static str,
    pub lo: u32,
    pub width: u32,
    pub type_doc: String,
    pub doc: &'static str,
}

/// Layout of one operation.
#[derive(Debug, Clone)]
pub struct OpLayout {
    pub mnemonic: &'static str,
    pub opcode: u8,
    pub unit: Option<Unit>,
    pub doc: &'static str,
    pub fields: Vec<FieldLayout>,
}

/// Why an instruction failed to encode or decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IsaError {
    #[error("illegal opcode {0:#04x}")]
    IllegalOpcode(u8),
    #[error("{op}: field `{field}` holds illegal value {raw}")]
    IllegalField {
        op: &'static str,
        field: &'static str,
        raw: u128,
    },
    #[error("{op}: reserved bits {lo}..128 are not zero")]
    ReservedBits { op: &'static str, lo: u32 },
    #[error("{op}: field `{field}` value {value} does not fit in {width} bits")]
    DoesNotFit {
        op: &'static str,
        field: &'static str,
        value: String,
        width: u32,
    },
}

macro_rules! isa {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident = $code:literal, $mnem:literal, $unit:expr, {
            $( $field:ident : $ty:ty = $width:literal, $fdoc:literal ),* $(,)?
        }
    )*) => {
        $(
            $(#[doc = $doc])*
            #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
            pub struct $name { $( #[doc = $fdoc] pub $field: $ty, )* }

            impl $name {
                pub const MNEMONIC: &'static str = $mnem;
                pub const OPCODE: u8 = $code;
                #[allow(unused_mut, unused_variables, unused_assignments)]
                fn pack(&self) -> Result<u128, IsaError> {
                    let mut bits: u128 = 0;
                    let mut lo = FIELDS_LO;
                    $(
                        let raw = FieldValue::to_raw(self.$field, $width).ok_or_else(|| IsaError::DoesNotFit {
                            op: $mnem, field: stringify!($field), value: format!("{:?}", self.$field), width: $width,
                        })?;
                        bits |= raw << lo;
                        lo += $width;
                    )*
                    Ok(bits)
                }
                #[allow(unused_mut, unused_variables, unused_assignments)]
                fn unpack(bits: u128) -> Result<Self, IsaError> {
                    let mut lo = FIELDS_LO;
                    $(
                        let raw = (bits >> lo) & ((1u128 << $width) - 1);
                        let $field: $ty = FieldValue::from_raw(raw, $width).ok_or(IsaError::IllegalField {
                            op: $mnem, field: stringify!($field), raw,
                        })?;
                        lo += $width;
                    )*
                    if lo < 128 && bits >> lo != 0 {
                        return Err(IsaError::ReservedBits { op: $mnem, lo });
                    }
                    Ok($name { $($field),* })
                }
                #[allow(unused_mut, unused_assignments)]
                fn layout() -> OpLayout {
                    let mut fields = Vec::new();
                    let mut lo = FIELDS_LO;
                    $(
                        fields.push(FieldLayout {
                            name: stringify!($field), lo, width: $width,
                            type_doc: <$ty as FieldValue>::type_doc($width), doc: $fdoc,
                        });
                        lo += $width;
                    )*
                    assert!(lo <= 128, "{} does not fit in 128 bits", $mnem);
                    OpLayout { mnemonic: $mnem, opcode: $code, unit: $unit, doc: concat!($($doc),*).trim(), fields }
                }
                #[allow(unused_mut)]
                fn fields_text(&self) -> Vec<(&'static str, String)> {
                    let mut v = Vec::new();
                    $( if self.$field != <$ty>::default() { v.push((stringify!($field), self.$field.to_text())); } )*
                    v
                }
                #[allow(unused_mut, unused_variables)]
                fn set_text(&mut self, key: &str, val: &str) -> Result<(), String> {
                    match key {
                        $( stringify!($field) => { self.$field = <$ty as FieldValue>::from_text(val, $width)
                            .map_err(|e| format!("{}: field `{}`: {}", $mnem, key, e))?; Ok(()) } )*
                        _ => Err(format!("{} has no field `{}` (fields: {})", $mnem, key,
                            { let names: &[&str] = &[$(stringify!($field)),*]; names.join(", ") })),
                    }
                }
            }
        )*

        /// One operation with its fields.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Op { $( $name($name), )* }

        impl Op {
            pub fn mnemonic(&self) -> &'static str {
                match self { $( Op::$name(_) => $mnem, )* }
            }
            pub fn opcode(&self) -> u8 {
                match self { $( Op::$name(_) => $code, )* }
            }
            fn pack(&self) -> Result<u128, IsaError> {
                match self { $( Op::$name(x) => x.pack(), )* }
            }
            fn unpack(opcode: u8, bits: u128) -> Result<Op, IsaError> {
                match opcode {
                    $( $code => Ok(Op::$name($name::unpack(bits)?)), )*
                    _ => Err(IsaError::IllegalOpcode(opcode)),
                }
            }
            /// Field `name=value` pairs that differ from zero, in declaration order.
            pub fn fields_text(&self) -> Vec<(&'static str, String)> {
                match self { $( Op::$name(x) => x.fields_text(), )* }
            }
            /// A zeroed operation for a mnemonic (the assembler fills fields in).
            pub fn from_mnemonic(m: &str) -> Option<Op> {
                match m { $( $mnem => Some(Op::$name($name::default())), )* _ => None }
            }
            pub fn set_field_text(&mut self, key: &str, val: &str) -> Result<(), String> {
                match self { $( Op::$name(x) => x.set_text(key, val), )* }
            }
        }

        /// Every operation's layout, in opcode order.
        pub fn layouts() -> Vec<OpLayout> {
            vec![ $( $name::layout(), )* ]
        }

        /// The largest unsigned value field `field` of operation `mnemonic` holds (its width's
        /// all-ones), or None when either does not exist. Schedules take their limits from
        /// here, so a layout change moves them with it.
        pub fn field_max(mnemonic: &str, field: &str) -> Option<u64> {
            let op = layouts().into_iter().find(|l| l.mnemonic == mnemonic)?;
            let f = op.fields.into_iter().find(|f| f.name == field)?;
            Some(if f.width >= 64 { u64::MAX } else { (1u64 << f.width) - 1 })
        }
    };
}

isa! {
    /// DMA load: copy a 2-D block from DRAM into a buffer. Row `r` of the block starts at
    /// `dram + r*stride` and holds `cols` buffer lines' worth of contiguous bytes. The block
    /// lands in consecutive buffer lines from `sram`, surrounded by `pad_*` lines filled with
    /// `pad_value` (every byte, or every int32 lane for the accumulator), so the destination is a
    /// row-major grid of (pad_top+rows+pad_bottom) x (pad_left+cols+pad_right) lines.
    Load = 0x01, "load", Some(Unit::Load), {
        buf: LoadBuf = 2, "destination buffer",
        sram: u32 = 16, "first destination line",
        dram: u32 = 32, "DRAM byte address of the first row",
        rows: u32 = 10, "rows in the block",
        cols: u32 = 10, "buffer lines per row",
        stride: u32 = 20, "DRAM bytes from one row to the next",
        pad_top: u32 = 4, "padding rows above",
        pad_bottom: u32 = 4, "padding rows below",
        pad_left: u32 = 4, "padding lines before each row",
        pad_right: u32 = 4, "padding lines after each row",
        pad_value: i32 = 8, "value of padding lanes (the input zero point, typically)",
    }
    /// DMA store: copy `rows` x `cols` consecutive buffer lines from `sram` to DRAM, row `r` to
    /// `dram + r*stride`. Completes when DRAM acknowledges the last write.
    Store = 0x02, "store", Some(Unit::Store), {
        buf: StoreBuf = 1, "source buffer",
        sram: u32 = 16, "first source line",
        dram: u32 = 32, "DRAM byte address of the first row",
        rows: u32 = 10, "rows in the block",
        cols: u32 = 10, "buffer lines per row",
        stride: u32 = 20, "DRAM bytes from one row to the next",
        pack: bool = 1, "`out` only: each line's cols bytes leave as cols/W bytes (W = `array.xnor_bits`), bit j < W of byte i set when byte W*i+j is > 0 (bipolar +1); row r, line l at dram + r*stride + l*cols/W (arch precision `binary`)",
        requant: bool = 1, "`acc` only (arch `ppu.store_requant`): each line leaves requantized as `requant` computes it, as `cols` bytes at dram + r*stride + l*cols; accumulator line `param` holds the zero point (lane 0, -32768..=32767), lo (lane 1) and hi (lane 2, 0..=255), line `param+1` the multipliers (or binary32 scales), line `param+2` the shifts",
        param: u32 = 16, "`requant` only: first of the three parameter lines",
        unsigned: bool = 1, "`requant` only: uint8 output instead of int8",
        round: Round = 2, "`requant` only: rounding of the shift",
        fp32: bool = 1, "`requant` only: binary32 scale in line `param` (arch `ppu.fp32_requant`)",
    }
    /// Preload a weight tile: weight lines `wgt` to `wgt+rows-1` become the PE registers (line k
    /// feeds PE row k, lane n PE column n). The tile stays until the next `ldw`.
    LoadWeights = 0x03, "ldw", Some(Unit::Compute), {
        wgt: u32 = 16, "first weight line of the tile",
    }
    /// Stream `m` input lines through the array: acc[acc+i][n] (+)= sum_k inp[inp+i][k] *
    /// W[k][n], int8 x int8 products summed in int32 (wrapping). With `accumulate` = 0 the
    /// accumulator line is overwritten.
    ///
    /// A *chain* (`outer` and `inner` both >= 1; arch `array.weight_banks = 2`) runs
    /// T = G x outer x inner weight tiles (G = max(`groups`, 1)) in one instruction, with the
    /// effect of `ldw` then `matmul` per tile: tile t = (g x outer + a) x inner + b is weight
    /// lines `wgt + t*rows ..` and streams input lines from
    /// `inp + g*group_step + a*outer_step + b` (a convolution's channel tiles, kernel rows and
    /// kernel columns), all into the same `m` accumulator lines (tile 0 accumulates as `accumulate` says, the
    /// others always). The next tile's weights load into the PEs' second register while the
    /// current tile streams, so the tiles follow each other every max(m, rows) cycles instead
    /// of paying `ldw` and the array's fill and drain each. Afterwards the last tile is the
    /// loaded one. With `m` = 0 a chain does nothing.
    MatMul = 0x04, "matmul", Some(Unit::Compute), {
        inp: u32 = 16, "first input line",
        acc: u32 = 16, "first accumulator line",
        m: u32 = 12, "input lines to stream",
        accumulate: bool = 1, "add to the accumulator instead of overwriting it",
        binary: bool = 1, "XNOR-popcount: the low W = `array.xnor_bits` bits of each input and weight byte hold W bipolar values (bit 1 = +1, bit 0 = -1) and a PE adds the number of them that agree, 0..W, instead of a x w (arch precision `binary`)",
        outer: u32 = 6, "chain: outer tile count (0 with `inner` = 0: no chain, use the loaded tile)",
        inner: u32 = 6, "chain: inner tile count",
        wgt: u32 = 16, "chain: first weight line of tile 0 (tile t at `wgt + t*rows`)",
        outer_step: u32 = 13, "chain: input lines from one outer tile to the next",
        groups: u32 = 6, "chain: times the outer x inner tiles repeat (0 counts as 1)",
        group_step: u32 = 10, "chain: input lines from one group to the next",
        row: u32 = 8, "input lines per row (0: the m lines are consecutive): stream line i reads input line `i / row * (row + skip) + i % row` from the (tile's) first, so a convolution's junk columns are skipped",
        skip: u32 = 6, "input lines skipped after each row of `row` lines (a strided convolution's junk columns and the rows between its output rows)",
        bias: bool = 1, "with `accumulate` = 0: the first (or only) tile adds accumulator line `acc - 1` (a bias row) to each result instead of overwriting",
    }
    /// Lane-wise int32 operation on accumulator lines: acc[dst+i] = func(acc[a + i*a_stride],
    /// acc[b + i*b_stride]) for i in 0..m. `b_stride` = 0 broadcasts one line (a bias row).
    /// Source ranges must equal the destination range or not overlap it.
    Alu = 0x05, "alu", Some(Unit::Compute), {
        func: AluFunc = 3, "operation",
        dst: u32 = 16, "first destination accumulator line",
        a: u32 = 16, "first line of operand a",
        a_stride: u32 = 4, "line step of operand a",
        b: u32 = 16, "first line of operand b",
        b_stride: u32 = 4, "line step of operand b (0 = broadcast)",
        m: u32 = 12, "lines to produce",
    }
    /// Requantize accumulator lines to 8-bit output lines: for lane c,
    /// out = clamp(round_shift(acc * mult[c], shift[c]) + zp, lo, hi), where mult is lane c of
    /// accumulator line `param` and shift (0..=62) lane c of line `param+1`; the product is
    /// exact (64-bit). With `fp32` lane c of line `param` is instead an IEEE binary32 scale and
    /// out = clamp(round(f32(acc) * scale) + zp, lo, hi) with every step rounded as binary32
    /// does (onnxruntime's QLinear* rule); `round` applies to the final rounding to integer.
    /// With `unsigned` the output byte and lo/hi are uint8, else int8.
    Requant = 0x06, "requant", Some(Unit::Compute), {
        dst: u32 = 16, "first output line",
        src: u32 = 16, "first accumulator line",
        param: u32 = 16, "accumulator line holding the multipliers (shifts in the next line)",
        m: u32 = 12, "lines to produce",
        zp: i32 = 16, "output zero point",
        lo: u32 = 8, "lower clamp (output type's bit pattern)",
        hi: u32 = 8, "upper clamp (output type's bit pattern)",
        unsigned: bool = 1, "uint8 output instead of int8",
        round: Round = 2, "rounding of the shift",
        fp32: bool = 1, "binary32 scale in line `param` instead of multiplier and shift",
    }
    /// Do nothing for one cycle on the given unit: carries dependency tokens.
    Nop = 0x07, "nop", None, {
        unit: UnitSel = 2, "executing unit",
    }
    /// End of program: the controller waits until every queue is empty and every unit idle.
    Finish = 0x08, "finish", Some(Unit::Controller), {}
    /// Multi-threshold activation (FINN's MultiThreshold): for lane c,
    /// out = clamp(base + step * n, -128, 127), where n is how many thresholds
    /// acc[src+i][c] reaches, found by binary search over thr[j][c] = accumulator line
    /// `thr + j`: n = 0, then for s = 7 down to 0, n += 2^s if n + 2^s <= count and
    /// acc >= thr[n + 2^s - 1]. For thresholds ascending per lane (the compiler sorts them)
    /// n = #{j < count : acc >= thr[j]}. Any monotone function of the accumulator with at
    /// most 255 steps (requantization with float rounding, batch norm, clipping, low-bit
    /// quantizers) is exactly such a threshold set. count <= the arch's `ppu.max_thresholds`.
    Thresh = 0x09, "thresh", Some(Unit::Compute), {
        dst: u32 = 16, "first output line",
        src: u32 = 16, "first accumulator line",
        thr: u32 = 16, "first threshold line (one line per threshold)",
        count: u32 = 8, "number of thresholds",
        m: u32 = 12, "lines to produce",
        base: i32 = 8, "output when no threshold is reached",
        step: i32 = 8, "output increment per threshold reached (bipolar outputs use 2)",
    }
}

impl MatMul {
    /// Weight tiles a chain runs (`groups x outer x inner`); 0 for a plain `matmul`.
    pub fn tiles(&self) -> u32 {
        self.groups.max(1) * self.outer * self.inner
    }

    /// A chain: both counts set. (One set without the other is malformed; the emulator
    /// refuses it.)
    pub fn is_chain(&self) -> bool {
        self.outer > 0 || self.inner > 0
    }

    /// First input line of chain tile `t`.
    pub fn tile_inp(&self, t: u32) -> u64 {
        let per_group = (self.outer * self.inner).max(1);
        let (g, r) = (t / per_group, t % per_group);
        let (a, b) = (r / self.inner.max(1), r % self.inner.max(1));
        self.inp as u64
            + g as u64 * self.group_step as u64
            + a as u64 * self.outer_step as u64
            + b as u64
    }

    /// Whether the first tile adds the bias row `acc - 1` (`bias` without `accumulate`).
    pub fn adds_bias(&self) -> bool {
        self.bias && !self.accumulate
    }

    /// Input line of stream line `i`, counted from the (tile's) first input line.
    pub fn stream_line(&self, i: u64) -> u64 {
        match self.row {
            0 => i,
            r => i / r as u64 * (r + self.skip) as u64 + i % r as u64,
        }
    }

    /// Input lines a stream of `m` lines spans from its first (0 when `m` = 0).
    pub fn stream_span(&self) -> u64 {
        match self.m {
            0 => 0,
            m => self.stream_line(m as u64 - 1) + 1,
        }
    }

    /// First weight line of chain tile `t` on an array of `rows` PE rows.
    pub fn tile_wgt(&self, t: u32, rows: u32) -> u64 {
        self.wgt as u64 + t as u64 * rows as u64
    }

    /// A chain that streams something: the only kind one chain may overlap
    /// (`array.chain_overlap`).
    pub fn streams_chain(&self) -> bool {
        self.outer > 0 && self.inner > 0 && self.m > 0
    }

    /// Accumulator lines the chain reads or writes: its `m` lines, and the bias row before
    /// them when it adds one.
    pub fn acc_lines(&self) -> std::ops::Range<u64> {
        (self.acc as u64).saturating_sub(self.adds_bias() as u64)..self.acc as u64 + self.m as u64
    }

    /// Whether chain `next` may start while chain `self` drains (`array.chain_overlap`,
    /// docs/timing.md "Overlapped chains"): both stream, in the same mode, and `next`'s
    /// accumulator lines are `self`'s own (same first line: `next` reads each line at least a
    /// cycle after `self` wrote it) or lie apart from them (nothing to order).
    pub fn may_follow_overlapped(&self, next: &MatMul) -> bool {
        let (a, b) = (self.acc_lines(), next.acc_lines());
        self.streams_chain()
            && next.streams_chain()
            && self.binary == next.binary
            && (self.acc == next.acc || a.end <= b.start || b.end <= a.start)
    }

    /// Cycles from one chain tile's first input line to the next tile's: the longer of the
    /// tile's stream and the next tile's weight load, and at least 2 so that a tile's
    /// accumulator read comes after the previous tile's write of the same line.
    pub fn chain_period(&self, rows: u32) -> u64 {
        (self.m as u64).max(rows as u64).max(2)
    }
}

/// One instruction: dependency flags plus an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Insn {
    pub deps: Deps,
    pub op: Op,
}

impl Insn {
    pub fn new(op: Op) -> Insn {
        Insn {
            deps: Deps::default(),
            op,
        }
    }
    pub fn with_deps(mut self, deps: Deps) -> Insn {
        self.deps = deps;
        self
    }

    /// The unit this instruction is queued to.
    pub fn unit(&self) -> Unit {
        match &self.op {
            Op::Load(_) => Unit::Load,
            Op::Store(_) => Unit::Store,
            Op::LoadWeights(_) | Op::MatMul(_) | Op::Alu(_) | Op::Requant(_) | Op::Thresh(_) => {
                Unit::Compute
            }
            Op::Nop(n) => n.unit.unit(),
            Op::Finish(_) => Unit::Controller,
        }
    }

    pub fn encode(&self) -> Result<[u8; INSN_BYTES], IsaError> {
        let bits = self.op.opcode() as u128 | self.deps.to_raw() << 6 | self.op.pack()?;
        Ok(bits.to_le_bytes())
    }

    pub fn decode(bytes: &[u8; INSN_BYTES]) -> Result<Insn, IsaError> {
        let bits = u128::from_le_bytes(*bytes);
        let opcode = (bits & 0x3f) as u8;
        let op = Op::unpack(opcode, bits)?;
        Ok(Insn {
            deps: Deps::from_raw((bits >> 6) & 0xf),
            op,
        })
    }
}

impl fmt::Display for Insn {
    /// Assembler text: `mnemonic field=value ... [pop_prev] [push_next] ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.op.mnemonic())?;
        for (k, v) in self.op.fields_text() {
            write!(f, " {k}={v}")?;
        }
        for (name, on) in Deps::NAMES.iter().zip(self.deps.flags()) {
            if on {
                write!(f, " {name}")?;
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for Insn {
    type Err = String;
    /// Parses one line of assembler text (see `Display`).
    fn from_str(line: &str) -> Result<Insn, String> {
        let mut words = line.split_whitespace();
        let m = words.next().ok_or("empty instruction")?;
        let mut op = Op::from_mnemonic(m).ok_or_else(|| {
            let all: Vec<_> = layouts().iter().map(|l| l.mnemonic).collect();
            format!("unknown mnemonic '{m}' (known: {})", all.join(", "))
        })?;
        let mut deps = Deps::default();
        for w in words {
            if let Some((k, v)) = w.split_once('=') {
                op.set_field_text(k, v)?;
            } else if !deps.set(w) {
                return Err(format!(
                    "'{w}' is neither field=value nor a dependency flag ({})",
                    Deps::NAMES.join(", ")
                ));
            }
        }
        Ok(Insn { deps, op })
    }
}

/// Decode a whole code section; the error carries the instruction index.
pub fn decode_all(code: &[u8]) -> Result<Vec<Insn>, (usize, IsaError)> {
    code.chunks_exact(INSN_BYTES)
        .enumerate()
        .map(|(i, c)| Insn::decode(c.try_into().unwrap()).map_err(|e| (i, e)))
        .collect()
}

/// Markdown tables for docs/isa.md, generated from the definitions above.
pub fn markdown_reference() -> String {
    let mut s = String::new();
    s.push_str("| opcode | mnemonic | unit | summary |\n|---|---|---|---|\n");
    for l in layouts() {
        let unit = l.unit.map(|u| u.name()).unwrap_or("field `unit`");
        let summary = l.doc.split(". ").next().unwrap_or("").replace('\n', " ");
        s.push_str(&format!(
            "| {:#04x} | `{}` | {} | {} |\n",
            l.opcode, l.mnemonic, unit, summary
        ));
    }
    s.push_str(
        "\nCommon header of every instruction:\n\n| bits | field | meaning |\n|---|---|---|\n",
    );
    s.push_str("| 0..6 | opcode | see above; 0x00 and unlisted values are illegal |\n");
    for (i, n) in Deps::NAMES.iter().enumerate() {
        s.push_str(&format!("| {} | {} | dependency flag |\n", 6 + i, n));
    }
    for l in layouts() {
        s.push_str(&format!(
            "\n### `{}` (opcode {:#04x})\n\n",
            l.mnemonic, l.opcode
        ));
        s.push_str(&l.doc.split_whitespace().collect::<Vec<_>>().join(" "));
        s.push_str("\n\n");
        if l.fields.is_empty() {
            s.push_str("No fields; bits 10..128 are reserved (zero).\n");
            continue;
        }
        s.push_str("| bits | field | type | meaning |\n|---|---|---|---|\n");
        let mut end = FIELDS_LO;
        for f in &l.fields {
            s.push_str(&format!(
                "| {}..{} | `{}` | {} | {} |\n",
                f.lo,
                f.lo + f.width,
                f.name,
                f.type_doc,
                f.doc
            ));
            end = f.lo + f.width;
        }
        if end < 128 {
            s.push_str(&format!("| {end}..128 | reserved | zero | |\n"));
        }
    }
    s
}

/// Proptest strategies for instructions, shared by the tests of this crate.
#[cfg(test)]
pub(crate) mod strategies {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn arb_deps() -> impl Strategy<Value = Deps> {
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(a, b, c, d)| Deps {
            pop_prev: a,
            pop_next: b,
            push_prev: c,
            push_next: d,
        })
    }

    fn bits(w: u32) -> impl Strategy<Value = u32> {
        0u32..=((1u64 << w) - 1) as u32
    }

    pub(crate) fn arb_op() -> impl Strategy<Value = Op> {
        let load = (
            0usize..4,
            bits(16),
            any::<u32>(),
            bits(10),
            bits(10),
            bits(20),
            bits(4),
            bits(4),
            bits(4),
            bits(4),
            -128i32..128,
        )
            .prop_map(|(b, sram, dram, rows, cols, stride, pt, pb, pl, pr, pv)| {
                Op::Load(Load {
                    buf: LoadBuf::ALL[b],
                    sram,
                    dram,
                    rows,
                    cols,
                    stride,
                    pad_top: pt,
                    pad_bottom: pb,
                    pad_left: pl,
                    pad_right: pr,
                    pad_value: pv,
                })
            });
        let store = (
            0usize..2,
            bits(16),
            any::<u32>(),
            bits(10),
            bits(10),
            bits(20),
            any::<bool>(),
            (
                any::<bool>(),
                bits(16),
                any::<bool>(),
                0usize..4,
                any::<bool>(),
            ),
        )
            .prop_map(
                |(b, sram, dram, rows, cols, stride, pack, (requant, param, unsigned, r, fp32))| {
                    Op::Store(Store {
                        buf: StoreBuf::ALL[b],
                        sram,
                        dram,
                        rows,
                        cols,
                        stride,
                        pack,
                        requant,
                        param,
                        unsigned,
                        round: Round::ALL[r],
                        fp32,
                    })
                },
            );
        let ldw = bits(16).prop_map(|wgt| Op::LoadWeights(LoadWeights { wgt }));
        let mm = (
            (bits(16), bits(16), bits(12), any::<bool>(), any::<bool>()),
            (bits(6), bits(6), bits(16), bits(13), bits(6), bits(10)),
            (bits(8), bits(6), any::<bool>()),
        )
            .prop_map(
                |(
                    (inp, acc, m, accumulate, binary),
                    (outer, inner, wgt, outer_step, groups, group_step),
                    (row, skip, bias),
                )| {
                    Op::MatMul(MatMul {
                        row,
                        skip,
                        bias,
                        inp,
                        acc,
                        m,
                        accumulate,
                        binary,
                        outer,
                        inner,
                        wgt,
                        outer_step,
                        groups,
                        group_step,
                    })
                },
            );
        let alu = (
            0usize..5,
            bits(16),
            bits(16),
            bits(4),
            bits(16),
            bits(4),
            bits(12),
        )
            .prop_map(|(f, dst, a, a_stride, b, b_stride, m)| {
                Op::Alu(Alu {
                    func: AluFunc::ALL[f],
                    dst,
                    a,
                    a_stride,
                    b,
                    b_stride,
                    m,
                })
            });
        let rq = (
            bits(16),
            bits(16),
            bits(16),
            bits(12),
            -32768i32..32768,
            bits(8),
            bits(8),
            any::<bool>(),
            (0usize..4, any::<bool>()),
        )
            .prop_map(|(dst, src, param, m, zp, lo, hi, unsigned, (r, fp32))| {
                Op::Requant(Requant {
                    dst,
                    src,
                    param,
                    m,
                    zp,
                    lo,
                    hi,
                    unsigned,
                    round: Round::ALL[r],
                    fp32,
                })
            });
        let nop = (0usize..3).prop_map(|u| {
            Op::Nop(Nop {
                unit: UnitSel::ALL[u],
            })
        });
        let th = (
            bits(16),
            bits(16),
            bits(16),
            bits(8),
            bits(12),
            -128i32..128,
            -128i32..128,
        )
            .prop_map(|(dst, src, thr, count, m, base, step)| {
                Op::Thresh(Thresh {
                    dst,
                    src,
                    thr,
                    count,
                    m,
                    base,
                    step,
                })
            });
        prop_oneof![
            load,
            store,
            ldw,
            mm,
            alu,
            rq,
            nop,
            Just(Op::Finish(Finish {})),
            th
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::strategies::*;
    use super::*;
    use proptest::prelude::*;

    /// `field_max` is the widest value that encodes: it encodes, one more does not.
    #[test]
    fn field_max_is_the_largest_value_that_encodes() {
        assert_eq!(field_max("matmul", "skip"), Some(63));
        assert_eq!(field_max("matmul", "outer_step"), Some(8191));
        assert_eq!(field_max("load", "rows"), Some(1023));
        assert_eq!(field_max("load", "nope"), None);
        assert_eq!(field_max("nope", "rows"), None);
        let skip = field_max("matmul", "skip").unwrap() as u32;
        let mm = |skip| {
            Insn::new(Op::MatMul(MatMul {
                skip,
                ..Default::default()
            }))
        };
        assert!(mm(skip).encode().is_ok());
        assert!(mm(skip + 1).encode().is_err());
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(op in arb_op(), deps in arb_deps()) {
            let insn = Insn { deps, op };
            let bytes = insn.encode().unwrap();
            prop_assert_eq!(Insn::decode(&bytes).unwrap(), insn);
            // And through the assembler text.
            let text = insn.to_string();
            prop_assert_eq!(text.parse::<Insn>().unwrap(), insn);
        }

        #[test]
        fn decode_random_bytes_never_panics(bytes in any::<[u8; 16]>()) {
            if let Ok(insn) = Insn::decode(&bytes) {
                // Whatever decodes re-encodes to the same bytes: no aliasing encodings.
                prop_assert_eq!(insn.encode().unwrap(), bytes);
            }
        }
    }

    #[test]
    fn layouts_fit_and_do_not_overlap() {
        let ls = layouts();
        let mut codes = std::collections::HashSet::new();
        for l in &ls {
            assert!(codes.insert(l.opcode), "duplicate opcode {}", l.opcode);
            assert!(l.opcode != 0 && l.opcode < 64);
            let mut next = FIELDS_LO;
            for f in &l.fields {
                assert_eq!(f.lo, next);
                next += f.width;
            }
            assert!(next <= 128, "{}", l.mnemonic);
        }
    }

    #[test]
    fn zero_is_illegal_and_errors_name_the_field() {
        assert_eq!(Insn::decode(&[0; 16]), Err(IsaError::IllegalOpcode(0)));
        let mut b = Insn::new(Op::Nop(Nop {
            unit: UnitSel::Load,
        }))
        .encode()
        .unwrap();
        b[1] |= 0x0c; // unit field = 3
        let e = Insn::decode(&b).unwrap_err().to_string();
        assert!(e.contains("nop") && e.contains("unit"), "{e}");
        let e = Insn::new(Op::MatMul(MatMul {
            m: 5000,
            ..Default::default()
        }))
        .encode()
        .unwrap_err();
        assert!(e.to_string().contains("`m`"), "{e}");
        let mut b = Insn::new(Op::Finish(Finish {})).encode().unwrap();
        b[15] = 1;
        assert!(matches!(
            Insn::decode(&b),
            Err(IsaError::ReservedBits { .. })
        ));
    }

    #[test]
    fn assembler_errors_are_specific() {
        let e = "matmul inp=1 bogus=2".parse::<Insn>().unwrap_err();
        assert!(e.contains("bogus") && e.contains("fields:"), "{e}");
        let e = "frobnicate".parse::<Insn>().unwrap_err();
        assert!(e.contains("frobnicate"), "{e}");
        let e = "matmul m=99999".parse::<Insn>().unwrap_err();
        assert!(e.contains("out of range"), "{e}");
        let e = "load buf=xyz".parse::<Insn>().unwrap_err();
        assert!(e.contains("inp, wgt, acc, acc8"), "{e}");
        assert!(
            "load pad_value=-3 pop_next"
                .parse::<Insn>()
                .unwrap()
                .deps
                .pop_next
        );
    }
}
