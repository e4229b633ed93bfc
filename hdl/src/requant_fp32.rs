//! The binary32 requantizer lane (`requant fp32`): out = clamp(round(f32(acc) * scale) + zp,
//! lo, hi) with every step rounded as IEEE binary32 does (onnxruntime's QLinear* rule). Twin
//! of `systole_emulator::ppu::requant_lane` with `fp32` set (`requant_fp32`, `round_f32`).
//!
//! Datapath (combinational, then three registers, so the byte leaves three cycles after the
//! operand like the integer lane: read at 2 + i, write at 5 + i):
//!
//! 1. int32 -> binary32: the magnitude's top 24 bits rounded to nearest even at the bit the
//!    leading one fixes (exact below 2^24).
//! 2. The 24 x 24-bit mantissa product, normalised and rounded to nearest even (the binary32
//!    product). A product below 2^-126 (subnormal range) is never rounded to zero, because
//!    |acc| >= 1 and |scale| >= 2^-149; its rounding to an integer depends only on its sign, so
//!    it is kept as "tiny, non-zero". Above 2^40 every output clamps, so it is kept as "huge".
//!    A subnormal scale gives a tiny product, an infinite one a huge product, NaN gives 0 (the
//!    Rust `as i64` of NaN).
//! 3. Rounding to an integer on (sign, integer part, remainder, half): half-even, half-away,
//!    half-up (toward +inf: `floor(v) + (v - floor(v) >= 0.5)`, whose f32 subtraction is exact
//!    or rounds only where it does not change the comparison) and floor.
//! 4. Zero point (saturating in a 48-bit sum) and the clamps of `requant_lane`.

/// The lane module (the same Verilog text for every arch).
pub const VERILOG: &str = r#"
module systole_requant_fp32_lane (
    input clock, input valid, input [31:0] acc, input [31:0] scale, input [1:0] round,
    input out_unsigned, input [31:0] zp, input [7:0] lo, input [7:0] hi,
    output [7:0] byte_out, output byte_valid
);
    // 1. int32 -> binary32 (value = ma * 2^(ea - 23)).
    reg sa;
    reg [31:0] mag, rem_a, half_a;
    reg [5:0] n;
    reg [23:0] ma;
    reg [24:0] ma_r;
    integer ea, k;
    // 2. product (value = m * 2^(e - 23)).
    reg sb, zero, tiny, huge, nan;
    reg [23:0] mb, m;
    reg [24:0] m_r;
    reg [47:0] p;
    reg g, st;
    integer eb, e, s;
    // 3. integer rounding.
    reg neg;
    reg [63:0] ip, rem, half;
    reg [63:0] mag_r;
    reg signed [63:0] r, v;
    reg [7:0] b;
    always @(*) begin
        rem_a = 32'd0;
        half_a = 32'd0;
        ma_r = 25'd0;
        sa = acc[31];
        mag = sa ? (~acc + 32'd1) : acc;
        n = 0;
        for (k = 0; k < 32; k = k + 1) if (mag[k]) n = k;
        if (n <= 23) begin
            ma = mag << (23 - n);
            ea = n;
        end else begin
            rem_a = mag & ((32'd1 << (n - 23)) - 32'd1);
            half_a = 32'd1 << (n - 24);
            ma_r = {1'b0, mag >> (n - 23)};
            if (rem_a > half_a || (rem_a == half_a && ma_r[0])) ma_r = ma_r + 25'd1;
            if (ma_r[24]) begin ma = 24'h800000; ea = n + 1; end
            else begin ma = ma_r[23:0]; ea = n; end
        end
        sb = scale[31];
        neg = sa ^ sb;
        zero = mag == 0 || scale[30:0] == 0;
        nan = scale[30:23] == 8'hff && scale[22:0] != 0;
        huge = scale[30:23] == 8'hff && scale[22:0] == 0;
        tiny = scale[30:23] == 8'h00 && scale[22:0] != 0;
        mb = {1'b1, scale[22:0]};
        eb = scale[30:23];
        eb = eb - 127;
        p = ma * mb;
        if (p[47]) begin m = p[47:24]; g = p[23]; st = p[22:0] != 0; e = ea + eb + 1; end
        else begin m = p[46:23]; g = p[22]; st = p[21:0] != 0; e = ea + eb; end
        m_r = {1'b0, m};
        if (g && (st || m[0])) m_r = m_r + 25'd1;
        if (m_r[24]) begin m = 24'h800000; e = e + 1; end else m = m_r[23:0];
        if (e > 40) huge = 1'b1;
        if (e < -126) tiny = 1'b1;
        // 3. value = m * 2^(e - 23): integer part ip, remainder rem, half.
        s = 23 - e;
        if (s <= 0) begin
            ip = {40'd0, m} << (-s); rem = 0; half = 1;
        end else if (s > 24) begin
            ip = 0; rem = {40'd0, m}; half = 64'd1 << 30;
        end else begin
            ip = {40'd0, m} >> s;
            rem = {40'd0, m} & ((64'd1 << s) - 64'd1);
            half = 64'd1 << (s - 1);
        end
        if (tiny) begin ip = 0; rem = 1; half = 2; end
        case (round)
            2'd0: mag_r = ip + ((rem > half || (rem == half && ip[0])) ? 64'd1 : 64'd0);
            2'd1: mag_r = ip + (rem >= half && rem != 0 ? 64'd1 : 64'd0);
            2'd2: mag_r = ip + ((neg ? rem > half : (rem >= half && rem != 0)) ? 64'd1 : 64'd0);
            default: mag_r = ip + ((neg && rem != 0) ? 64'd1 : 64'd0);
        endcase
        r = neg ? -$signed(mag_r) : $signed(mag_r);
        if (huge) r = neg ? -(64'sd1 << 50) : (64'sd1 << 50);
        if (zero || nan) r = 0;
        // 4. zero point and clamps (requant_lane).
        v = r + {{32{zp[31]}}, zp};
        if (out_unsigned) begin
            if (v < 0) v = 0;
            if (v > 255) v = 255;
            if (v < $signed({56'd0, lo})) v = $signed({56'd0, lo});
            if (v > $signed({56'd0, hi})) v = $signed({56'd0, hi});
        end else begin
            if (v < -128) v = -128;
            if (v > 127) v = 127;
            if (v < $signed({{56{lo[7]}}, lo})) v = $signed({{56{lo[7]}}, lo});
            if (v > $signed({{56{hi[7]}}, hi})) v = $signed({{56{hi[7]}}, hi});
        end
        b = v[7:0];
    end
    reg [7:0] b1 = 0, b2 = 0, b3 = 0;
    reg v1 = 0, v2 = 0, v3 = 0;
    always @(posedge clock) begin
        b1 <= b; v1 <= valid;
        b2 <= b1; v2 <= v1;
        b3 <= b2; v3 <= v2;
    end
    assign byte_out = b3;
    assign byte_valid = v3;
endmodule
"#;
