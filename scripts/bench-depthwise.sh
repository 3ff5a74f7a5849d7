#!/usr/bin/env bash
# Benchmark (not a test): every depthwise layer of EfficientNet-Lite0, tract's own op against
# wasm-infer's (wasm-infer/examples/bench_depthwise.rs), natively and in wasm (simd128, the
# same build flags as the browser module, run by node's WASI), one table each with the ratio.
#
#   scripts/bench-depthwise.sh [RUNS]        (default 30)
#
# Installs the wasm32-wasip1 Rust target if missing. Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-30}
TARGET=${CARGO_TARGET_DIR:-target}
rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
cargo build --release -q -p wasm-infer --example bench_depthwise
RUSTFLAGS="-C target-feature=+simd128" cargo build -q --profile wasm-release \
  --target wasm32-wasip1 -p wasm-infer --example bench_depthwise
echo "### native ($(uname -m), one thread)"
echo
"$TARGET/release/examples/bench_depthwise" "$RUNS"
echo
echo "### wasm32 + simd128 (node $(node --version), wasm-release profile)"
echo
runner=$(mktemp --suffix .mjs)
trap 'rm -f "$runner"' EXIT
cat >"$runner" <<'JS'
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
const wasi = new WASI({ version: 'preview1', args: ['bench_depthwise', ...process.argv.slice(3)], env: {} });
const module = await WebAssembly.compile(await readFile(process.argv[2]));
wasi.start(await WebAssembly.instantiate(module, wasi.getImportObject()));
JS
node --no-warnings "$runner" "$TARGET/wasm32-wasip1/wasm-release/examples/bench_depthwise.wasm" "$RUNS"
