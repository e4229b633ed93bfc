#!/usr/bin/env python3
"""Train, export and quantize the bundled demo models (see models/README.md).

Dataset: scikit-learn's `load_digits` (1797 greyscale 8x8 digits, pixel values 0..16), which
ships inside the scikit-learn wheel, so nothing is downloaded at run time.

Writes, under models/demo/:
  {mlp,cnn}_{float,qdq,qop}.onnx   float model, QDQ-quantized and QOperator-quantized model
  test_images.npy                  float32 [297, 64], pixel/16 (the CNN reads them as [N,1,8,8])
  test_labels.npy                  int64 [297]
  cases/<model>/model.onnx + test_data_set_{0..4}/{input_0,output_0}.pb
                                   ONNX backend-test layout, outputs computed by onnxruntime (CPU)
  results.json                     accuracies and settings, also summarised in models/README.md

Usage:  python3 -m pip install -r models/requirements.txt && python3 models/train_demo.py
Deterministic: fixed seeds, single-threaded BLAS and onnxruntime; reruns give identical files.
"""

import os

# Single-threaded BLAS so float reductions, and so the trained weights, are bit-reproducible.
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import sklearn  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnxruntime.quantization import (  # noqa: E402
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = HERE / "demo"

SPLIT_SEED = 0  # permutation of the 1797 images; the last 297 of it are the test split
N_TEST = 297
N_CALIB = 200  # calibration images: the first 200 of the training split
N_CASES = 5  # test_data_set_0..4 per model: test images 0..4, batch 1
OPSET = 13
IR_VERSION = 7  # the IR version that goes with opset 13

# Static quantization settings shared by the QDQ and the QOperator models.
QUANT = dict(
    activation_type=QuantType.QInt8,  # int8 activations, asymmetric (zero point in -128..127)
    weight_type=QuantType.QInt8,  # int8 weights, symmetric (zero point 0) ...
    per_channel=True,  # ... one scale per output channel
    reduce_range=False,
    calibrate_method=CalibrationMethod.MinMax,
    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
)


# ----------------------------------------------------------------------------------------------
# data


def load_split():
    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)  # [1797, 64], row-major 8x8
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    x, y = x[perm], y[perm]
    n_train = len(x) - N_TEST
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


# ----------------------------------------------------------------------------------------------
# MLP 64-64-32-10 (scikit-learn)


def train_mlp(x, y):
    clf = MLPClassifier(
        hidden_layer_sizes=(64, 32),
        activation="relu",
        solver="adam",
        alpha=1e-4,
        batch_size=64,
        learning_rate_init=1e-3,
        max_iter=300,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
    ws = [w.astype(np.float32) for w in clf.coefs_]  # [64,64], [64,32], [32,10]
    bs = [b.astype(np.float32) for b in clf.intercepts_]
    return ws, bs


def mlp_forward(params, x):
    ws, bs = params
    h = x
    for i, (w, b) in enumerate(zip(ws, bs)):
        h = h @ w + b
        if i < len(ws) - 1:
            h = np.maximum(h, 0)
    return h


# ----------------------------------------------------------------------------------------------
# CNN (plain numpy): [N,1,8,8] -> Conv3x3 p1 (8) -> Relu -> MaxPool2 -> Conv3x3 p1 (16) -> Relu
#                    -> GlobalAveragePool -> Flatten -> Gemm (10)


def im2col3(x):
    """[B,C,H,W] -> [B*H*W, C*9] for a 3x3 kernel, stride 1, zero padding 1."""
    b, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))  # [B,C,H,W,3,3]
    return np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(b * h * w, c * 9)


def col2im3(dcols, shape):
    b, c, h, w = shape
    d = dcols.reshape(b, h, w, c, 3, 3)
    dxp = np.zeros((b, c, h + 2, w + 2), dtype=dcols.dtype)
    for i in range(3):
        for j in range(3):
            dxp[:, :, i : i + h, j : j + w] += d[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return dxp[:, :, 1:-1, 1:-1]


def conv_fwd(x, w, b):
    bsz, _, h, wd = x.shape
    f = w.shape[0]
    cols = im2col3(x)
    out = cols @ w.reshape(f, -1).T + b
    return out.reshape(bsz, h, wd, f).transpose(0, 3, 1, 2), cols


def conv_bwd(dout, cols, w, xshape):
    f = w.shape[0]
    dflat = dout.transpose(0, 2, 3, 1).reshape(-1, f)
    dw = (dflat.T @ cols).reshape(w.shape)
    db = dflat.sum(0)
    dx = col2im3(dflat @ w.reshape(f, -1), xshape)
    return dx, dw, db


def maxpool2_fwd(x):
    b, c, h, w = x.shape
    r = x.reshape(b, c, h // 2, 2, w // 2, 2)
    out = r.max(axis=(3, 5))
    mask = r == out[:, :, :, None, :, None]
    mask = mask / mask.sum(axis=(3, 5), keepdims=True)  # ties share the gradient
    return out, mask


def maxpool2_bwd(dout, mask):
    b, c, h2, _, w2, _ = mask.shape
    return (mask * dout[:, :, :, None, :, None]).reshape(b, c, h2 * 2, w2 * 2)


def cnn_forward(p, x, keep=False):
    x = x.reshape(-1, 1, 8, 8)
    z1, c1 = conv_fwd(x, p["w1"], p["b1"])
    a1 = np.maximum(z1, 0)
    m1, mask1 = maxpool2_fwd(a1)
    z2, c2 = conv_fwd(m1, p["w2"], p["b2"])
    a2 = np.maximum(z2, 0)
    g = a2.mean(axis=(2, 3))  # GlobalAveragePool + Flatten: [B,16]
    logits = g @ p["w3"] + p["b3"]
    if keep:
        return logits, (x, z1, c1, mask1, m1, z2, c2, g)
    return logits


def train_cnn(x, y, epochs=60, batch=32, lr=3e-3, seed=1):
    rng = np.random.default_rng(seed)

    def he(shape, fan_in):
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    p = {
        "w1": he((8, 1, 3, 3), 9),
        "b1": np.zeros(8, np.float32),
        "w2": he((16, 8, 3, 3), 72),
        "b2": np.zeros(16, np.float32),
        "w3": (rng.standard_normal((16, 10)) * np.sqrt(1.0 / 16)).astype(np.float32),
        "b3": np.zeros(10, np.float32),
    }
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(v) for k, v in p.items()}
    b1, b2, eps, step = 0.9, 0.999, 1e-8, 0
    n = len(x)
    for ep in range(epochs):
        cur_lr = lr * (0.5 * (1 + np.cos(np.pi * ep / epochs)))  # cosine decay
        order = rng.permutation(n)
        for s in range(0, n, batch):
            idx = order[s : s + batch]
            xb, yb = x[idx], y[idx]
            logits, (x4, z1, c1, mask1, m1, z2, c2, g) = cnn_forward(p, xb, keep=True)
            # softmax cross-entropy
            e = np.exp(logits - logits.max(1, keepdims=True))
            prob = e / e.sum(1, keepdims=True)
            dlog = prob
            dlog[np.arange(len(yb)), yb] -= 1
            dlog /= len(yb)
            grads = {"w3": g.T @ dlog, "b3": dlog.sum(0)}
            dg = dlog @ p["w3"].T
            da2 = np.broadcast_to(dg[:, :, None, None] / 16.0, z2.shape)
            dz2 = da2 * (z2 > 0)
            dm1, grads["w2"], grads["b2"] = conv_bwd(dz2, c2, p["w2"], m1.shape)
            da1 = maxpool2_bwd(dm1, mask1)
            dz1 = da1 * (z1 > 0)
            _, grads["w1"], grads["b1"] = conv_bwd(dz1, c1, p["w1"], x4.shape)
            step += 1
            for k in p:
                gk = grads[k].astype(np.float32) + 1e-4 * p[k] * (k[0] == "w")
                m[k] = b1 * m[k] + (1 - b1) * gk
                v[k] = b2 * v[k] + (1 - b2) * gk * gk
                mh = m[k] / (1 - b1**step)
                vh = v[k] / (1 - b2**step)
                p[k] = (p[k] - cur_lr * mh / (np.sqrt(vh) + eps)).astype(np.float32)
    return p


# ----------------------------------------------------------------------------------------------
# ONNX export (onnx.helper, opset 13, float32 initializers)


def _finish(graph, name):
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="systole-models-train_demo",
        producer_version="1",
    )
    model.ir_version = IR_VERSION
    model.doc_string = f"Systole demo model '{name}', trained on scikit-learn load_digits"
    onnx.checker.check_model(model, full_check=True)
    return model


def export_mlp(params):
    ws, bs = params
    inits, nodes = [], []
    cur = "input"
    for i, (w, b) in enumerate(zip(ws, bs)):
        inits += [numpy_helper.from_array(w, f"fc{i + 1}.weight"),
                  numpy_helper.from_array(b, f"fc{i + 1}.bias")]
        last = i == len(ws) - 1
        mm, out = f"fc{i + 1}.matmul", ("logits" if last else f"fc{i + 1}.out")
        nodes.append(helper.make_node("MatMul", [cur, f"fc{i + 1}.weight"], [mm], name=f"fc{i + 1}_MatMul"))
        nodes.append(helper.make_node("Add", [mm, f"fc{i + 1}.bias"], [out], name=f"fc{i + 1}_Add"))
        cur = out
        if not last:
            nodes.append(helper.make_node("Relu", [cur], [f"relu{i + 1}.out"], name=f"relu{i + 1}"))
            cur = f"relu{i + 1}.out"
    graph = helper.make_graph(
        nodes,
        "systole_demo_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    return _finish(graph, "mlp")


def export_cnn(p):
    inits = [numpy_helper.from_array(p[k], n) for k, n in [
        ("w1", "conv1.weight"), ("b1", "conv1.bias"), ("w2", "conv2.weight"), ("b2", "conv2.bias"),
        ("w3", "fc.weight"), ("b3", "fc.bias")]]
    nodes = [
        helper.make_node("Conv", ["input", "conv1.weight", "conv1.bias"], ["conv1.out"], name="conv1",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("Relu", ["conv1.out"], ["relu1.out"], name="relu1"),
        helper.make_node("MaxPool", ["relu1.out"], ["pool1.out"], name="pool1",
                         kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["pool1.out", "conv2.weight", "conv2.bias"], ["conv2.out"], name="conv2",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("Relu", ["conv2.out"], ["relu2.out"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["relu2.out"], ["gap.out"], name="gap"),
        helper.make_node("Flatten", ["gap.out"], ["flatten.out"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flatten.out", "fc.weight", "fc.bias"], ["logits"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes,
        "systole_demo_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    return _finish(graph, "cnn")


# ----------------------------------------------------------------------------------------------
# quantization (onnxruntime.quantization.quantize_static)

# In QOperator format, onnxruntime turns Add, Gemm and GlobalAveragePool into com.microsoft
# contrib ops (QLinearAdd, QGemm, QLinearGlobalAveragePool). The QOperator models quantize only
# the op types whose QOperator form is standard ONNX, so they use the default domain only.
QOP_OP_TYPES = ["MatMul", "Conv", "MaxPool", "Relu", "Flatten"]


class DigitsCalibration(CalibrationDataReader):
    """Feeds N_CALIB training images, one batch-1 tensor at a time."""

    def __init__(self, images, shape):
        self._feeds = iter([{"input": images[i : i + 1].reshape(shape)} for i in range(len(images))])

    def get_next(self):
        return next(self._feeds, None)


def quantize(float_path, out_path, fmt, calib, shape):
    kw = dict(QUANT)
    if fmt == QuantFormat.QOperator:
        kw["op_types_to_quantize"] = QOP_OP_TYPES
    quantize_static(str(float_path), str(out_path), DigitsCalibration(calib, shape), quant_format=fmt, **kw)
    model = onnx.load(str(out_path))
    model.producer_name = "systole-models-train_demo (onnxruntime.quantization " + ort.__version__ + ")"
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(out_path))
    return model


# ----------------------------------------------------------------------------------------------
# onnxruntime evaluation


def session(path, optimize=True):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run(sess, x):
    return sess.run(None, {"input": x})[0]


# ----------------------------------------------------------------------------------------------
# main


def op_summary(model):
    ops = {}
    for n in model.graph.node:
        key = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
        ops[key] = ops.get(key, 0) + 1
    return ops


def write_case(case_dir, model_path, model, sess, images, shape, quantized):
    """Backend-test layout; expected outputs from onnxruntime (CPU, optimizations disabled),
    each checked against reference.py. Returns the largest |onnxruntime - reference|, in output
    quantization steps where a DequantizeLinear produces the output, else absolute."""
    if case_dir.exists():
        shutil.rmtree(case_dir)
    case_dir.mkdir(parents=True)
    shutil.copyfile(model_path, case_dir / "model.onnx")
    step = output_step(model) if quantized else None
    worst = 0.0
    for k in range(N_CASES):
        x = images[k : k + 1].reshape(shape)
        y = run(sess, x)
        (r,) = reference.run(model, {"input": x})
        worst = max(worst, float(np.abs(y - r).max()) / (step or 1.0))
        ds = case_dir / f"test_data_set_{k}"
        ds.mkdir()
        (ds / "input_0.pb").write_bytes(numpy_helper.from_array(x, "input").SerializeToString())
        (ds / "output_0.pb").write_bytes(numpy_helper.from_array(y, "logits").SerializeToString())
    return f"{worst:.3g} " + ("output quantization steps" if step else "absolute")


def output_step(model):
    """Scale of the DequantizeLinear producing the output, or None if a float op computes it."""
    out = model.graph.output[0].name
    inits = {i.name: i for i in model.graph.initializer}
    for n in model.graph.node:
        if out in n.output and n.op_type == "DequantizeLinear":
            return float(numpy_helper.to_array(inits[n.input[1]]))
    return None


def main():
    t0 = time.time()
    np.random.seed(0)
    OUT.mkdir(parents=True, exist_ok=True)
    x_train, y_train, x_test, y_test = load_split()
    np.save(OUT / "test_images.npy", x_test)
    np.save(OUT / "test_labels.npy", y_test)
    calib = x_train[:N_CALIB]

    results = {
        "versions": {
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "scikit-learn": sklearn.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
        },
        "split": {"seed": SPLIT_SEED, "train": int(len(x_train)), "test": int(len(x_test)), "calibration": N_CALIB},
        "quantization": {
            "activation_type": "int8 (QInt8), asymmetric, per tensor",
            "weight_type": "int8 (QInt8), symmetric (zero point 0), per channel",
            "reduce_range": False,
            "calibrate_method": "MinMax",
            "qoperator_op_types_to_quantize": QOP_OP_TYPES,
        },
        "models": {},
    }

    t = time.time()
    mlp = train_mlp(x_train, y_train)
    t_mlp = time.time() - t
    t = time.time()
    cnn = train_cnn(x_train, y_train)
    t_cnn = time.time() - t
    specs = {
        "mlp": (export_mlp(mlp), (1, 64), (-1, 64), mlp_forward, mlp),
        "cnn": (export_cnn(cnn), (1, 1, 8, 8), (-1, 1, 8, 8), cnn_forward, cnn),
    }

    for name, (fmodel, shape1, shape_n, fwd, params) in specs.items():
        np_acc = float((fwd(params, x_test).argmax(1) == y_test).mean())
        paths = {"float": OUT / f"{name}_float.onnx"}
        onnx.save(fmodel, str(paths["float"]))
        paths["qdq"] = OUT / f"{name}_qdq.onnx"
        quantize(paths["float"], paths["qdq"], QuantFormat.QDQ, calib, shape1)
        paths["qop"] = OUT / f"{name}_qop.onnx"
        quantize(paths["float"], paths["qop"], QuantFormat.QOperator, calib, shape1)

        for variant, path in paths.items():
            key = f"{name}_{variant}"
            model = onnx.load(str(path))
            xs = x_test.reshape(shape_n)
            plain = session(path, optimize=False)
            y_plain = run(plain, xs)
            y_opt = run(session(path), xs)
            (y_ref,) = reference.run(model, {"input": xs})
            entry = {
                "file": f"demo/{path.name}",
                "bytes": path.stat().st_size,
                "test_accuracy_ort_disable_all": round(float((y_plain.argmax(1) == y_test).mean()), 4),
                "test_accuracy_ort_enable_all": round(float((y_opt.argmax(1) == y_test).mean()), 4),
                "test_accuracy_reference_py": round(float((y_ref.argmax(1) == y_test).mean()), 4),
                "max_abs_diff_ort_enable_all_vs_disable_all": float(np.abs(y_opt - y_plain).max()),
                "ops": op_summary(model),
                "opsets": {(o.domain or "ai.onnx"): o.version for o in model.opset_import},
            }
            if variant == "float":
                entry["test_accuracy_numpy_training_code"] = round(np_acc, 4)
            entry["cases_max_diff_vs_reference_py"] = write_case(
                OUT / "cases" / key, path, model, plain, x_test, shape1, variant != "float"
            )
            results["models"][key] = entry
            print(
                f"{key:10s} acc ort(disable_all)={entry['test_accuracy_ort_disable_all']:.4f} "
                f"ort(enable_all)={entry['test_accuracy_ort_enable_all']:.4f} "
                f"reference.py={entry['test_accuracy_reference_py']:.4f} ops={entry['ops']}"
            )

    (OUT / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"trained mlp in {t_mlp:.1f} s, cnn in {t_cnn:.1f} s; wrote {OUT} in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
