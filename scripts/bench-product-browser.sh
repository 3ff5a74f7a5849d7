#!/usr/bin/env bash
# Benchmark (not a test): the Products page's latency in the browser. The product model (the
# shared backbone + the product head) run by tract-wasm (wasm-infer's ProductSession, as the
# app's worker runs it) and by onnxruntime-web (wasm backend, 1 thread) in the same headless
# Chromium: a head run per typed title (without and with an image's features), the backbone +
# head when an image is picked, session creation, head bytes; ratios.
#
#   scripts/bench-product-browser.sh [RUNS]        (default 200)
#
# Installs what it needs (assets, the wasm build, Debian chromium, the npm packages of
# scripts/bench-browser). Trains a product model on the bundled Open Clip Art items into
# $CARGO_TARGET_DIR/bench-product on first use (a few minutes; backbone features kept in
# $CARGO_TARGET_DIR/bench-product-features), or uses $BENCH_PRODUCT_MODEL.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-200}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
MODEL=${BENCH_PRODUCT_MODEL:-$TARGET_DIR/bench-product}
ITEMS=assets/datasets/openclipart/items.jsonl

scripts/fetch-assets.sh
scripts/build-wasm.sh
command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
(cd scripts/bench-browser && npm ci --no-audit --no-fund --loglevel=error)
if [ ! -f "$MODEL/product_head.nnef" ]; then
  cargo build --release -p trainer
  "$TARGET_DIR"/release/trainer product --items "$ITEMS" --out "$MODEL" \
    --feature-cache "$TARGET_DIR/bench-product-features" | tail -n 12
fi
photos=(assets/datasets/tuxpaint-photos/animals/*.png)
echo "photos: ${photos[0]} ${photos[1]}"
node scripts/bench-browser/product.mjs "$MODEL" "$ITEMS" "$TARGET_DIR/wasm-pkg/web" "${photos[0]}" "${photos[1]}" "$RUNS"
