#!/usr/bin/env bash
# Benchmark (not a test): every depthwise layer of EfficientNet-Lite0, tract's own op against
# wasm-infer's (wasm-infer/examples/bench_depthwise.rs), natively, one table with the ratio.
# (wasm-infer's op is not in the wasm build: browsers run tract's channel-last kernels, see
# the wasm profile of scripts/profile-tract.sh.)
#
#   scripts/bench-depthwise.sh [RUNS]        (default 30)
#
# Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-30}
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p wasm-infer --example bench_depthwise
echo "### native ($(uname -m), one thread)"
echo
"$TARGET/release/examples/bench_depthwise" "$RUNS"
