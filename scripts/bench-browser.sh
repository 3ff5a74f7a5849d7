#!/usr/bin/env bash
# Benchmark (not a test): the champion-style ONNX (EfficientNet-Lite0 + head, trained on the
# bundled photos) run by tract-wasm (wasm-infer) and by onnxruntime-web (wasm backend, 1 thread)
# in the same headless Chromium: cold start (uncached and cached), median of N runs, bytes
# shipped, ratios. tract both as its simd128 and its relaxed-SIMD build, and both engines on
# two threads too (tract's threaded module, built with nightly: scripts/build-wasm.sh);
# BENCH_ROUNDS rounds (default 3), engines interleaved.
#
#   scripts/bench-browser.sh [RUNS]        (default 50)
#
# Installs what it needs: assets, the wasm build (scripts/build-wasm.sh), Debian chromium,
# npm playwright-core + onnxruntime-web (scripts/bench-browser/package-lock.json). Trains a
# model into target/bench-model on first use (about a minute), or uses $BENCH_MODEL (any task's
# model folder with a shared backbone, e.g. a detector from `trainer detect`: the input is then
# the photo stretched whole, as its manifest says).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-50}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
MODEL=${BENCH_MODEL:-$TARGET_DIR/bench-model}

scripts/fetch-assets.sh
photos=(assets/datasets/tuxpaint-photos/animals/*.png)
PHOTO=${photos[0]}
export BENCH_PHOTO2=${photos[1]}
EDGEML_WASM_RELAXED=1 EDGEML_WASM_THREADS=1 scripts/build-wasm.sh
command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
(cd scripts/bench-browser && npm ci --no-audit --no-fund --loglevel=error)
if [ ! -f "$MODEL/manifest.json" ]; then
  cargo run --release -p trainer -- train --data assets/datasets/tuxpaint-photos --out "$MODEL"
fi
input=$(mktemp --suffix .bin)
trap 'rm -f "$input"' EXIT
node -e '
  const fs = require("fs");
  const w = require(process.argv[1] + "/wasm_infer.js");
  const t = w.preprocessImage(fs.readFileSync(process.argv[3]), fs.readFileSync(process.argv[2] + "/manifest.json", "utf8"));
  fs.writeFileSync(process.argv[4], Buffer.from(t.buffer, t.byteOffset, t.byteLength));
' "$(realpath "$TARGET_DIR/wasm-pkg/node")" "$MODEL" "$PHOTO" "$input"
echo "photo: $PHOTO"
node scripts/bench-browser/bench.mjs "$MODEL" "$TARGET_DIR/wasm-pkg/web" "$input" "$PHOTO" "$RUNS"
