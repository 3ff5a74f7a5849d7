#!/usr/bin/env bash
# Profile (not a test): where native tract spends its time on the exported classifier, per
# operator and per node (wasm-infer/examples/profile_tract.rs), on one bundled photo: the plan
# with tract's own depthwise op and the deployed one (wasm-infer's), same run, then the
# deployed plan with THREADS intra-op threads (default 2) and on batches of 2, 4 and 8.
#
#   scripts/profile-tract.sh [MODEL_DIR] [RUNS] [THREADS]
#
# MODEL_DIR is a trainer output folder (manifest.json, backbone.onnx, the head); without it a
# quick model is trained first (1 view, 3 epochs: the graph is the same whatever the head
# learnt). Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-assets.sh
TARGET=${CARGO_TARGET_DIR:-target}
RUNS=${2:-50}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
model=${1:-}
if [ -z "$model" ]; then
  cargo build --release -p trainer
  "$TARGET/release/trainer" train --data assets/datasets/tuxpaint-photos --out "$work/model" \
    --views 1 --epochs 3 >/dev/null
  model=$work/model
fi
photo=$(find assets/datasets/tuxpaint-photos -name '*.png' | sort | sed -n 1p)
cargo run --release -q -p wasm-infer --example profile_tract -- \
  "$model" "$photo" "$RUNS" "${3:-2}"
