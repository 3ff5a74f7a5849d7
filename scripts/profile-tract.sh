#!/usr/bin/env bash
# Profile (not a test): where native tract spends its time on the exported classifier, per
# operator and per node (wasm-infer/examples/profile_tract.rs), on one bundled photo: the plan
# with tract's own kernels and the deployed one (wasm-infer's 1×1, stem and depthwise ops),
# same run, then the deployed plan on one thread against THREADS intra-op threads (default 2),
# runs alternating, node by node and whole, and on batches of 2, 4 and 8. Then
# the same profile in wasm (node's WASI) of the plan browsers build from backbone.q8.
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

# The same profile in wasm: the plan browsers build (backbone.q8 as NNEF), built for
# wasm32-wasip1 with the browser module's flags (simd128, wasm-release) and run by node's WASI.
# WASM_RUSTFLAGS adds target features (e.g. "-C target-feature=+simd128,+relaxed-simd").
rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
flags=${WASM_RUSTFLAGS:-"-C target-feature=+simd128"}
RUSTFLAGS=$flags cargo build -q --profile wasm-release \
  --target wasm32-wasip1 -p wasm-infer --example profile_tract
echo
echo "## wasm32 ($flags, wasm-release; node $(node --version), one thread)"
runner="$work/run.mjs"
cat >"$runner" <<'JS'
import { readFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { WASI } from 'node:wasi';
const [wasm, model, photo, runs] = process.argv.slice(2);
const wasi = new WASI({
  version: 'preview1',
  returnOnExit: false,
  args: ['profile_tract', '/model', `/photo/${basename(photo)}`, runs],
  env: {},
  preopens: { '/model': resolve(model), '/photo': dirname(resolve(photo)) },
});
const module = await WebAssembly.compile(await readFile(wasm));
// returnOnExit false: the program's exit ends node at once (node 20 crashed with SIGSEGV
// unwinding back into JS after this program had printed everything).
wasi.start(await WebAssembly.instantiate(module, wasi.getImportObject()));
JS
node --no-warnings --experimental-wasm-relaxed-simd "$runner" \
  "$TARGET/wasm32-wasip1/wasm-release/examples/profile_tract.wasm" "$model" "$photo" "$RUNS"
