#!/usr/bin/env bash
# Benchmark (not a test): search latency in the browser — text encoding of a query + ranking of
# a gallery of 1k and 10k images (int8 vectors, as the api publishes them) — with the ranking
# model's text encoder run by tract-wasm (wasm-infer) and by onnxruntime-web (wasm backend,
# 1 thread) in the same headless Chromium. Median of N queries; ratios.
#
#   scripts/bench-search.sh [RUNS]        (default 100)
#
# Installs what it needs (assets, wasm build, Debian chromium, npm packages of
# scripts/bench-browser). Trains a ranking model into target/bench-rank on first use (about
# 30 s), or uses $BENCH_RANK_MODEL.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-100}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
MODEL=${BENCH_RANK_MODEL:-$TARGET_DIR/bench-rank}

scripts/fetch-assets.sh
scripts/build-wasm.sh
command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
(cd scripts/bench-browser && npm ci --no-audit --no-fund --loglevel=error)
if [ ! -f "$MODEL/text.nnef" ]; then
  cargo run --release -p trainer -- rank --data assets/datasets/tuxpaint-photos --out "$MODEL"
fi
node scripts/bench-browser/search.mjs "$MODEL" "$TARGET_DIR/wasm-pkg/web" "$RUNS"
