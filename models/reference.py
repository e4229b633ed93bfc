#!/usr/bin/env python3
"""A small numpy interpreter for the ONNX operators used by the demo models (models/demo/).

It follows the ONNX operator specification literally: QLinearMatMul and QLinearConv accumulate
exactly in int64 (no int16 intermediate, so no saturation), QuantizeLinear rounds half to even
and saturates. train_demo.py uses it to check the expected outputs that onnxruntime computes,
because onnxruntime's int8 kernels on x86 CPUs without VNNI can saturate intermediate sums
(see models/README.md).

Usage as a tool:  python3 models/reference.py MODEL.onnx INPUT.pb [EXPECTED.pb]
"""

import sys

import numpy as np
import onnx
from onnx import numpy_helper


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _per_axis(v, axis, ndim):
    """Reshape a 1-D per-axis parameter so it broadcasts along `axis` of an ndim tensor."""
    v = np.asarray(v)
    if v.ndim == 0 or v.size == 1:
        return v.reshape(())
    shape = [1] * ndim
    shape[axis % ndim] = v.size
    return v.reshape(shape)


def _round_sat(v, dtype):
    info = np.iinfo(dtype)
    return np.clip(np.rint(v), info.min, info.max).astype(dtype)


def _requantize(acc, mult, zy):
    """int accumulator -> quantized output: round_half_even(acc * multiplier) + zero point,
    in float32 like onnxruntime's MLAS requantization (the spec leaves the precision open)."""
    v = np.rint(acc.astype(np.float32) * mult.astype(np.float32)) + zy.astype(np.float32)
    return _round_sat(v, zy.dtype)


def quantize_linear(x, scale, zp=None, axis=1):
    zp = np.zeros((), np.uint8) if zp is None else zp
    s = _per_axis(scale, axis, x.ndim).astype(np.float32)
    z = _per_axis(zp, axis, x.ndim).astype(np.float32)
    return _round_sat(x.astype(np.float32) / s + z, zp.dtype)


def dequantize_linear(x, scale, zp=None, axis=1):
    s = _per_axis(scale, axis, x.ndim).astype(np.float32)
    z = 0 if zp is None else _per_axis(zp, axis, x.ndim).astype(np.int64)
    return ((x.astype(np.int64) - z).astype(np.float32) * s).astype(np.float32)


def _im2col(x, kh, kw, pads, strides, dilations, pad_value):
    n, c, h, w = x.shape
    pt, pl, pb, pr = pads[0], pads[1], pads[2], pads[3]
    xp = np.full((n, c, h + pt + pb, w + pl + pr), pad_value, dtype=x.dtype)
    xp[:, :, pt : pt + h, pl : pl + w] = x
    oh = (xp.shape[2] - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (xp.shape[3] - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    cols = np.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            hi, wj = i * dilations[0], j * dilations[1]
            cols[:, :, i, j] = xp[:, :, hi : hi + strides[0] * oh : strides[0], wj : wj + strides[1] * ow : strides[1]]
    return cols, oh, ow


def _conv_acc(x, w, attrs, pad_value, acc_dtype):
    """Grouped 2-D convolution, returning [N, M, OH, OW] in acc_dtype."""
    n, c = x.shape[:2]
    m, cg, kh, kw = w.shape
    group = attrs.get("group", 1)
    pads = attrs.get("pads", [0, 0, 0, 0])
    strides = attrs.get("strides", [1, 1])
    dil = attrs.get("dilations", [1, 1])
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise NotImplementedError("auto_pad")
    cols, oh, ow = _im2col(x, kh, kw, pads, strides, dil, pad_value)
    out = np.empty((n, m, oh, ow), dtype=acc_dtype)
    mg = m // group
    for g in range(group):
        cg_cols = cols[:, g * cg : (g + 1) * cg].astype(acc_dtype)  # [N, cg, kh, kw, oh, ow]
        wg = w[g * mg : (g + 1) * mg].astype(acc_dtype)  # [mg, cg, kh, kw]
        out[:, g * mg : (g + 1) * mg] = np.einsum("nckloq,mckl->nmoq", cg_cols, wg)
    return out


def _pool(x, attrs, kind):
    kh, kw = attrs["kernel_shape"]
    pads = attrs.get("pads", [0, 0, 0, 0])
    strides = attrs.get("strides", [1, 1])
    if attrs.get("ceil_mode", 0) or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise NotImplementedError("ceil_mode / auto_pad")
    if kind == "max":
        lo = np.iinfo(x.dtype).min if np.issubdtype(x.dtype, np.integer) else -np.inf
        cols, _, _ = _im2col(x, kh, kw, pads, strides, [1, 1], lo)
        return cols.max(axis=(2, 3)).astype(x.dtype)
    raise NotImplementedError(kind)


def run(model, feeds):
    """Runs `model` (onnx.ModelProto) on `feeds` (name -> np.ndarray); returns the outputs in order."""
    env = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    env.update(feeds)
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            raise NotImplementedError(f"{node.domain}.{node.op_type}")
        ins = [env[i] if i else None for i in node.input]
        a = _attrs(node)
        op = node.op_type
        if op == "QuantizeLinear":
            out = quantize_linear(ins[0], ins[1], ins[2] if len(ins) > 2 else None, a.get("axis", 1))
        elif op == "DequantizeLinear":
            out = dequantize_linear(ins[0], ins[1], ins[2] if len(ins) > 2 else None, a.get("axis", 1))
        elif op == "QLinearMatMul":
            xa, sa, za, xb, sb, zb, sy, zy = ins
            if xa.ndim != 2 or xb.ndim != 2:
                raise NotImplementedError("QLinearMatMul rank != 2")
            acc = (xa.astype(np.int64) - za.astype(np.int64)) @ (xb.astype(np.int64) - _per_axis(zb, 1, 2).astype(np.int64))
            mult = (sa.astype(np.float32) * _per_axis(sb, 1, 2).astype(np.float32)) / sy.astype(np.float32)
            out = _requantize(acc, mult, zy)
        elif op == "QLinearConv":
            x, sx, zx, w, sw, zw, sy, zy = ins[:8]
            bias = ins[8] if len(ins) > 8 else None
            xs = x.astype(np.int64) - zx.astype(np.int64)
            ws = w.astype(np.int64) - _per_axis(zw, 0, 4).astype(np.int64)
            acc = _conv_acc(xs, ws, a, 0, np.int64)
            if bias is not None:
                acc = acc + bias.astype(np.int64).reshape(1, -1, 1, 1)
            mult = (sx.astype(np.float32) * _per_axis(sw, 1, 4).astype(np.float32).reshape(1, -1, 1, 1)) / sy.astype(np.float32)
            out = _requantize(acc, mult, zy)
        elif op == "MatMul":
            out = np.matmul(ins[0], ins[1])
        elif op == "Gemm":
            aa = ins[0].T if a.get("transA", 0) else ins[0]
            bb = ins[1].T if a.get("transB", 0) else ins[1]
            out = a.get("alpha", 1.0) * (aa @ bb)
            if len(ins) > 2 and ins[2] is not None:
                out = out + a.get("beta", 1.0) * ins[2]
            out = out.astype(ins[0].dtype)
        elif op == "Conv":
            out = _conv_acc(ins[0], ins[1], a, 0, np.float32)
            if len(ins) > 2 and ins[2] is not None:
                out = out + ins[2].reshape(1, -1, 1, 1)
        elif op == "Add":
            out = ins[0] + ins[1]
        elif op == "Relu":
            out = np.maximum(ins[0], 0).astype(ins[0].dtype)
        elif op == "MaxPool":
            out = _pool(ins[0], a, "max")
        elif op == "GlobalAveragePool":
            out = ins[0].mean(axis=tuple(range(2, ins[0].ndim)), keepdims=True, dtype=np.float32)
        elif op == "Flatten":
            ax = a.get("axis", 1)
            out = ins[0].reshape(int(np.prod(ins[0].shape[:ax])), -1)
        else:
            raise NotImplementedError(op)
        for name, val in zip(node.output, [out]):
            env[name] = val
    return [env[o.name] for o in model.graph.output]


def main():
    if len(sys.argv) not in (3, 4):
        print(__doc__)
        sys.exit(2)
    model = onnx.load(sys.argv[1])
    t = onnx.TensorProto()
    t.ParseFromString(open(sys.argv[2], "rb").read())
    x = numpy_helper.to_array(t)
    (y,) = run(model, {model.graph.input[0].name: x})
    print(y)
    if len(sys.argv) == 4:
        e = onnx.TensorProto()
        e.ParseFromString(open(sys.argv[3], "rb").read())
        exp = numpy_helper.to_array(e)
        print("max abs diff vs expected:", float(np.abs(y.astype(np.float64) - exp).max()))


if __name__ == "__main__":
    main()
