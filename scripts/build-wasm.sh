#!/usr/bin/env bash
# Build wasm-infer for the browser and for node (tests), with the wasm-bindgen CLI of exactly
# the version in Cargo.lock (installed from crates.io into a tools cache on first use).
#
#   scripts/build-wasm.sh      → $CARGO_TARGET_DIR/wasm-pkg/{web,node}/wasm_infer{.js,_bg.wasm}
#                                (simd128); EDGEML_WASM_RELAXED=1 adds wasm-pkg/{web,node}-relaxed/
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET_DIR=${CARGO_TARGET_DIR:-target}
TOOLS=${EDGEML_TOOLS:-${HOME:-/root}/.cache/edgeml-tools}

rustup target list --installed | grep -x wasm32-unknown-unknown >/dev/null || rustup target add wasm32-unknown-unknown

version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
[ -n "$version" ] || { echo "build-wasm: wasm-bindgen not found in Cargo.lock" >&2; exit 1; }
bindgen="$TOOLS/bin/wasm-bindgen"
if ! "$bindgen" --version 2>/dev/null | grep -x "wasm-bindgen $version" >/dev/null; then
  echo "build-wasm: installing wasm-bindgen-cli $version into $TOOLS"
  # Not --locked: the CLI's lockfile pins a webpki-roots release the registry here lacks.
  cargo install --quiet wasm-bindgen-cli --version "=$version" --root "$TOOLS" --force
fi

# With EDGEML_WASM_RELAXED=1 (scripts/bench-browser.sh sets it) also a relaxed-SIMD build
# (+simd128,+relaxed-simd: fused multiply-adds in tract-linalg's wasm matrix kernels) into
# wasm-pkg/{web,node}-relaxed, for the benchmark: measured, it did not
# pay on this model (BENCHMARKS.md), so the app ships the simd128 build only. It has its own
# target folder: its flags differ, and sharing one would rebuild each time.
cargo build -p wasm-infer --target wasm32-unknown-unknown --profile wasm-release
builds=(plain)
if [ "${EDGEML_WASM_RELAXED:-0}" = 1 ]; then
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=+simd128,+relaxed-simd" \
    cargo build -p wasm-infer --target wasm32-unknown-unknown --profile wasm-release \
    --target-dir "$TARGET_DIR/wasm-relaxed"
  builds+=(relaxed)
fi
plain="$TARGET_DIR/wasm32-unknown-unknown/wasm-release/wasm_infer.wasm"
relaxed="$TARGET_DIR/wasm-relaxed/wasm32-unknown-unknown/wasm-release/wasm_infer.wasm"
for build in "${builds[@]}"; do
  wasm=${!build}
  for flavour in web nodejs; do
    dir="$TARGET_DIR/wasm-pkg/${flavour%js}"
    [ "$build" = relaxed ] && dir="$dir-relaxed"
    rm -rf "$dir"
    # Browsers get no debug names (3.4 MB raw, 0.66 MB gzip of the module); node keeps them
    # for readable stack traces in tests.
    strip=()
    [ "$flavour" = web ] && strip=(--remove-name-section --remove-producers-section)
    "$bindgen" --target "$flavour" "${strip[@]}" --out-dir "$dir" "$wasm"
  done
done
web="$TARGET_DIR/wasm-pkg/web/wasm_infer_bg.wasm"
echo "build-wasm: $web $(wc -c <"$web") bytes, $(gzip -9 -c "$web" | wc -c) gzipped"
if [ "${#builds[@]}" = 2 ]; then
  # The benchmark loads either module with the one glue file: it must not depend on the build.
  for flavour in web node; do
    cmp -s "$TARGET_DIR/wasm-pkg/$flavour/wasm_infer.js" "$TARGET_DIR/wasm-pkg/$flavour-relaxed/wasm_infer.js" \
      || { echo "build-wasm: the relaxed-SIMD build's $flavour glue differs from the simd128 one" >&2; exit 1; }
  done
  web="$TARGET_DIR/wasm-pkg/web-relaxed/wasm_infer_bg.wasm"
  echo "build-wasm: $web $(wc -c <"$web") bytes, $(gzip -9 -c "$web" | wc -c) gzipped"
fi
