#!/usr/bin/env bash
# Fetches the models that ship inside the qonnx==1.0.0 wheel on PyPI (the float mnist-conv
# CNN and the ESPCN nets) and unpacks them into target/qonnx-data/onnx/. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${QONNX_DATA_DIR:-target/qonnx-data}"
if [ -f "$dest/onnx/mnist-conv/model.onnx" ]; then
    echo "qonnx 1.0.0 models already unpacked in $dest/onnx"
    exit 0
fi
dl="$dest/.wheel"
mkdir -p "$dl"
if ! ls "$dl"/qonnx-1.0.0-*.whl >/dev/null 2>&1; then
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$dl" qonnx==1.0.0
fi
wheel=$(ls "$dl"/qonnx-1.0.0-*.whl | head -n1)
python3 - "$wheel" "$dest" <<'PY'
import sys, zipfile, os
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for n in z.namelist():
        if n.startswith("qonnx/data/onnx/") and not n.endswith("/"):
            out = os.path.join(dest, n[len("qonnx/data/"):])
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(n) as src, open(out, "wb") as f:
                f.write(src.read())
PY
echo "qonnx 1.0.0 models unpacked in $dest/onnx"
