"""Generates the onnxruntime reference cases used by compiler/tests/frontend_ort.rs.

Each case is <name>/model.onnx plus test_data_set_0/{input,output}_<i>.pb, the outputs computed
by onnxruntime's CPU provider with graph optimizations disabled (so every node runs as written).
The committed data came from onnxruntime 1.22.1 and onnx 1.22.0:

    python3 -m pip install onnx==1.22.0 onnxruntime==1.22.1
    python3 compiler/tests/data/ort/generate.py

The scales are arbitrary floats (not powers of two) and the data large enough that the f32
rounding of the requantization scale and the half-to-even ties are exercised.

uint8 x int8 products use weights in [-63, 63]: on x86-64 CPUs without VNNI, onnxruntime's
u8s8 kernels (pmaddubsw) saturate the sum of two adjacent products to int16, so full-range
int8 weights give machine-dependent results that differ from the exact int32 accumulation the
operators define (and the interpreter computes). 7-bit weights cannot saturate.
"""
import os
import shutil

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(20240601)


def np_type(t):
    return helper.tensor_dtype_to_np_dtype(t)


def case(name, nodes, inputs, inits, outputs, opset=13):
    """inputs: list of (name, array); inits: list of (name, array); outputs: names."""
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in inputs],
        [],
        [numpy_helper.from_array(a, n) for n, a in inits],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    # Declare the outputs with the types and shapes ONNX shape inference gives them.
    inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(model, strict_mode=True).graph.value_info}
    model.graph.output.extend(inferred[o] for o in outputs)
    onnx.checker.check_model(model)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    results = sess.run(None, {n: a for n, a in inputs})
    out = os.path.join(HERE, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(os.path.join(out, "test_data_set_0"))
    onnx.save(model, os.path.join(out, "model.onnx"))
    for i, (_, a) in enumerate(inputs):
        with open(os.path.join(out, "test_data_set_0", f"input_{i}.pb"), "wb") as f:
            f.write(numpy_helper.from_array(a).SerializeToString())
    for i, a in enumerate(results):
        with open(os.path.join(out, "test_data_set_0", f"output_{i}.pb"), "wb") as f:
            f.write(numpy_helper.from_array(a).SerializeToString())
    print(name, [r.shape for r in results])


def q(shape, dtype):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, size=shape, dtype=np.int64).astype(dtype)


def q7(shape):
    """int8 weights in [-63, 63] (see the module docstring)."""
    return rng.integers(-63, 64, size=shape, dtype=np.int64).astype(np.int8)


def f32(shape, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, size=shape).astype(np.float32)


def scalar(v, dtype):
    return np.array(v, dtype=dtype)


# QLinearConv: uint8 activations, int8 per-channel weights, bias, stride 2, pads.
case(
    "qlinearconv_u8s8_per_channel",
    [helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"],
                      pads=[1, 1, 1, 1], strides=[2, 2])],
    [("x", q((2, 3, 9, 9), np.uint8))],
    [("xs", scalar(0.0173, np.float32)), ("xz", scalar(131, np.uint8)), ("w", q7((8, 3, 3, 3))),
     ("ws", f32((8,), 0.001, 0.009)), ("wz", np.zeros(8, np.int8)), ("ys", scalar(0.0911, np.float32)),
     ("yz", scalar(121, np.uint8)), ("b", rng.integers(-3000, 3000, 8).astype(np.int32))],
    ["y"],
)

# QLinearConv: int8, depthwise, SAME_UPPER, dilation 1, per-tensor.
case(
    "qlinearconv_s8_depthwise",
    [helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"],
                      group=6, auto_pad="SAME_UPPER", strides=[2, 2])],
    [("x", q((1, 6, 10, 10), np.int8))],
    [("xs", scalar(0.0213, np.float32)), ("xz", scalar(-5, np.int8)), ("w", q((6, 1, 3, 3), np.int8)),
     ("ws", scalar(0.00731, np.float32)), ("wz", scalar(0, np.int8)), ("ys", scalar(0.0377, np.float32)),
     ("yz", scalar(3, np.int8))],
    ["y"],
)

# QLinearMatMul: uint8 x int8 with per-column scales, batched.
case(
    "qlinearmatmul_u8s8_per_column",
    [helper.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"])],
    [("a", q((3, 17, 40), np.uint8))],
    [("as", scalar(0.0123, np.float32)), ("az", scalar(117, np.uint8)), ("b", q7((40, 33))),
     ("bs", f32((33,), 0.001, 0.01)), ("bz", np.zeros(33, np.int8)), ("ys", scalar(0.173, np.float32)),
     ("yz", scalar(128, np.uint8))],
    ["y"],
)

# QLinearMatMul: int8 everywhere, per-tensor, many outputs.
case(
    "qlinearmatmul_s8",
    [helper.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"])],
    [("a", q((64, 48), np.int8))],
    [("as", scalar(0.0271, np.float32)), ("az", scalar(-3, np.int8)), ("b", q((48, 64), np.int8)),
     ("bs", scalar(0.00517, np.float32)), ("bz", scalar(2, np.int8)), ("ys", scalar(0.311, np.float32)),
     ("yz", scalar(-7, np.int8))],
    ["y"],
)

# QuantizeLinear / DequantizeLinear, per-tensor and per-axis, with exact .5 ties in the data.
xs = f32((4, 5, 6), -3.0, 3.0)
ties = (np.arange(-60, 60, dtype=np.float32) + 0.5) * np.float32(0.02)
xs.flat[: ties.size] = ties
case(
    "quantize_dequantize",
    [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
     helper.make_node("QuantizeLinear", ["x", "sa", "za"], ["qa"], axis=1),
     helper.make_node("QuantizeLinear", ["x", "s"], ["qu"]),
     helper.make_node("DequantizeLinear", ["qa", "sa", "za"], ["dqa"], axis=1),
     helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"]),
     helper.make_node("DequantizeLinear", ["b32", "sb"], ["db"])],
    [("x", xs)],
    [("s", scalar(0.02, np.float32)), ("z", scalar(-1, np.int8)), ("sa", f32((5,), 0.005, 0.05)),
     ("za", np.array([0, 10, 128, 250, 3], np.uint8)), ("b32", rng.integers(-100000, 100000, 7).astype(np.int32)),
     ("sb", scalar(0.000123, np.float32))],
    ["q", "qa", "qu", "dqa", "dq", "db"],
)

# Float operators: dilated grouped conv, batch norm, pools with ceil_mode/count_include_pad.
# onnxruntime's AveragePool counts the ceil_mode overhang with count_include_pad before opset 19
# and not from opset 19, so the case runs at both.
for opset in (13, 19):
    case(
        f"float_conv_bn_pools_opset{opset}",
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], group=2, dilations=[2, 1], pads=[2, 1, 1, 0]),
         helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"], epsilon=1e-3),
         helper.make_node("Relu", ["n"], ["r"]),
         helper.make_node("AveragePool", ["r"], ["ap"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                          ceil_mode=1, count_include_pad=1),
         helper.make_node("AveragePool", ["r"], ["ap0"], kernel_shape=[3, 2], strides=[2, 3], pads=[1, 0, 1, 1],
                          ceil_mode=1, count_include_pad=0),
         helper.make_node("MaxPool", ["r"], ["mp"], kernel_shape=[2, 3], strides=[3, 2], ceil_mode=1),
         helper.make_node("GlobalAveragePool", ["r"], ["gp"])],
        [("x", f32((2, 4, 11, 9)))],
        [("w", f32((6, 2, 3, 3))), ("b", f32((6,))), ("s", f32((6,), 0.5, 1.5)), ("bb", f32((6,))),
         ("m", f32((6,), -0.2, 0.2)), ("v", f32((6,), 0.1, 2.0))],
        ["ap", "ap0", "mp", "gp"],
        opset=opset,
    )

# A QDQ chain: requantization by QuantizeLinear of float results.
case(
    "qdq_gemm_chain",
    [helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["x"]),
     helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=0),
     helper.make_node("Gemm", ["x", "w", "b"], ["g"], transB=1),
     helper.make_node("Relu", ["g"], ["r"]),
     helper.make_node("QuantizeLinear", ["r", "ys", "yz"], ["y"])],
    [("xq", q((5, 24), np.uint8))],
    [("xs", scalar(0.0173, np.float32)), ("xz", scalar(127, np.uint8)), ("wq", q((10, 24), np.int8)),
     ("ws", f32((10,), 0.001, 0.01)), ("wz", np.zeros(10, np.int8)), ("b", f32((10,), -0.1, 0.1)),
     ("ys", scalar(0.0157, np.float32)), ("yz", scalar(0, np.uint8))],
    ["y", "g"],
)

# MatMulInteger / ConvInteger with per-column / per-channel zero points.
case(
    "integer_ops",
    [helper.make_node("MatMulInteger", ["a", "b", "az", "bz"], ["mi"]),
     helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["ci"], pads=[1, 0, 1, 0])],
    [("a", q((2, 6, 9), np.uint8)), ("x", q((1, 2, 5, 5), np.uint8))],
    [("b", q7((9, 4))), ("az", scalar(7, np.uint8)), ("bz", np.array([1, -2, 0, 3], np.int8)),
     ("w", q((3, 2, 2, 2), np.uint8)), ("xz", scalar(100, np.uint8)), ("wz", np.array([5], np.uint8))],
    ["mi", "ci"],
    opset=10,
)

# Requantization scale rounding: per-column / per-channel scales chosen so that onnxruntime's
# f32 `a_scale * b_scale / y_scale` (left to right) and other evaluation orders, e.g.
# `a_scale * (b_scale / y_scale)`, give scales one ulp apart that round some accumulator
# differently. The accumulators are every value in [-127, 127] (x times a weight of 1).
def flipping_scales(a_s, y_s, count):
    acc = np.arange(-127, 128, dtype=np.float32)
    found = []
    while len(found) < count:
        b_s = np.float32(rng.uniform(0.3, 1.0) * y_s / a_s)
        s1 = np.float32(np.float32(a_s * b_s) / y_s)
        s2 = np.float32(a_s * np.float32(b_s / y_s))
        if s1 != s2 and (np.rint(acc * s1) != np.rint(acc * s2)).any():
            found.append(b_s)
    return np.array(found, np.float32)


a_s, y_s = np.float32(0.0173), np.float32(0.0419)
col_scales = flipping_scales(a_s, y_s, 6)
case(
    "qlinearmatmul_scale_rounding",
    [helper.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"])],
    [("a", np.arange(-127, 128, dtype=np.int8).reshape(255, 1))],
    [("as", scalar(a_s, np.float32)), ("az", scalar(0, np.int8)), ("b", np.ones((1, 6), np.int8)),
     ("bs", col_scales), ("bz", np.zeros(6, np.int8)), ("ys", scalar(y_s, np.float32)),
     ("yz", scalar(0, np.int8))],
    ["y"],
    opset=21,
)
case(
    "qlinearconv_scale_rounding",
    [helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"])],
    [("x", np.arange(-127, 128, dtype=np.int8).reshape(1, 1, 15, 17))],
    [("xs", scalar(a_s, np.float32)), ("xz", scalar(0, np.int8)), ("w", np.ones((6, 1, 1, 1), np.int8)),
     ("ws", col_scales), ("wz", np.zeros(6, np.int8)), ("ys", scalar(y_s, np.float32)),
     ("yz", scalar(0, np.int8))],
    ["y"],
)
