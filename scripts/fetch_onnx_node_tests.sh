#!/usr/bin/env bash
# Fetches the ONNX backend node test cases (model.onnx + test_data_set_*/{input,output}_*.pb)
# from the onnx==1.22.0 wheel on PyPI and unpacks them into target/onnx-node-tests/node/.
#
# Usage: scripts/fetch_onnx_node_tests.sh [--force]
#   Idempotent: does nothing when the cases are already unpacked (use --force to redo).
#   Needs python3 with pip (only to download the wheel; nothing is installed) and
#   either `unzip` or python3's zipfile module (used as a fallback).
#   Env: ONNX_VERSION (default 1.22.0), ONNX_NODE_TESTS_DIR (default target/onnx-node-tests).
set -euo pipefail
cd "$(dirname "$0")/.."

version="${ONNX_VERSION:-1.22.0}"
dest="${ONNX_NODE_TESTS_DIR:-target/onnx-node-tests}"
stamp="$dest/.onnx-$version.done"
force=0
[ "${1:-}" = "--force" ] && force=1

if [ "$force" = 0 ] && [ -f "$stamp" ] && [ -d "$dest/node" ]; then
    n=$(find "$dest/node" -mindepth 1 -maxdepth 1 -type d -name 'test_*' | wc -l)
    echo "ONNX $version node tests already unpacked: $n cases in $(cd "$dest/node" && pwd)"
    exit 0
fi

dl="$dest/.wheel"
mkdir -p "$dl"
wheel=$(ls "$dl"/onnx-"$version"-cp311-cp311-*manylinux*x86_64*.whl 2>/dev/null | head -n1 || true)
if [ -z "$wheel" ]; then
    # Pin the target explicitly so this fetches the same wheel whatever the local Python is.
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
        --python-version 3.11 --implementation cp --abi cp311 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux_2_28_x86_64 \
        "onnx==$version" -d "$dl"
    wheel=$(ls "$dl"/onnx-"$version"-cp311-cp311-*manylinux*x86_64*.whl | head -n1)
fi
echo "wheel: $wheel"

rm -rf "$dest/node" "$stamp"
tmp="$dest/.unpack.tmp"
rm -rf "$tmp"
mkdir -p "$tmp"
if command -v unzip >/dev/null 2>&1; then
    unzip -q "$wheel" 'onnx/backend/test/data/node/*' -d "$tmp"
else
    python3 - "$wheel" "$tmp" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
prefix = "onnx/backend/test/data/node/"
with zipfile.ZipFile(wheel) as z:
    z.extractall(out, [n for n in z.namelist() if n.startswith(prefix)])
PY
fi
mv "$tmp/onnx/backend/test/data/node" "$dest/node"
rm -rf "$tmp"
touch "$stamp"

n=$(find "$dest/node" -mindepth 1 -maxdepth 1 -type d -name 'test_*' | wc -l)
echo "ONNX $version node tests: $n cases in $(cd "$dest/node" && pwd)"
echo "each case: <case>/model.onnx and <case>/test_data_set_N/{input,output}_K.pb"
