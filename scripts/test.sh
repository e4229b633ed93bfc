#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine with Rust, then runs it all:
# formatting, lints, and every crate's tests. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

fixtures="../shared/fixtures"
if [ ! -d "$fixtures" ]; then
    echo "warning: $fixtures is missing: the tests that read it will fail" >&2
fi

# The RTL tests (hdl/tests/verilog.rs) lint and simulate the generated Verilog, and
# fpga/tests/bitstream.rs builds the iCEBreaker bitstream; they fail without these tools.
if ! command -v verilator >/dev/null || ! command -v yosys >/dev/null || ! command -v iverilog >/dev/null \
    || ! command -v nextpnr-ice40 >/dev/null || ! command -v icepack >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq verilator yosys iverilog \
        nextpnr-ice40 fpga-icestorm
fi

# The ONNX backend node tests ship in the onnx==1.22.0 wheel (PyPI); unpacked into target/.
./scripts/fetch_onnx_node_tests.sh
# The float mnist-conv CNN ships in the qonnx==1.0.0 wheel (PyPI); unpacked into target/.
./scripts/fetch_qonnx_models.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace
