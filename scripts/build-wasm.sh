#!/usr/bin/env bash
# Build wasm-infer for the browser and for node (tests), with the wasm-bindgen CLI of exactly
# the version in Cargo.lock (installed from crates.io into a tools cache on first use).
#
#   scripts/build-wasm.sh      → $CARGO_TARGET_DIR/wasm-pkg/{web,node}/wasm_infer{.js,_bg.wasm}
#                                (simd128); EDGEML_WASM_RELAXED=1 adds wasm-pkg/{web,node}-relaxed/,
#                                EDGEML_WASM_THREADS=1 adds wasm-pkg/web-threads/ (benchmarks)
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
# With EDGEML_WASM_THREADS=1 (scripts/bench-browser.sh sets it) also the threaded module
# (wasm-infer's `threads` feature: rayon's pool over Web Workers, for cross-origin isolated
# pages) into wasm-pkg/web-threads, for the benchmark: measured, it beat onnxruntime-web on
# two threads in some runs and lost badly in others, and it is 0.16 MB gzip larger, so the app
# does not ship it (BENCHMARKS.md). Wasm
# atomics need a standard library built with them: nightly's `-Z build-std` (the toolchain
# and its rust-src installed by rustup on first use; EDGEML_NIGHTLY picks another). The
# memory is shared, imported, and exports its thread-local layout for wasm-bindgen's thread
# start-up.
if [ "${EDGEML_WASM_THREADS:-0}" = 1 ]; then
  nightly=${EDGEML_NIGHTLY:-nightly}
  rustup run "$nightly" rustc --version >/dev/null 2>&1 || rustup toolchain install "$nightly" --profile minimal
  rustup component list --toolchain "$nightly" --installed | grep -x rust-src >/dev/null \
    || rustup component add --toolchain "$nightly" rust-src
  link=(--shared-memory --import-memory --max-memory=2147483648 --export=__wasm_init_tls
    --export=__tls_size --export=__tls_align --export=__tls_base)
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=+simd128,+atomics,+bulk-memory,+mutable-globals ${link[*]/#/-C link-arg=}" \
    cargo "+$nightly" build -Z build-std=panic_abort,std -p wasm-infer --features threads \
    --target wasm32-unknown-unknown --profile wasm-release --target-dir "$TARGET_DIR/wasm-threads"
  builds+=(threads)
fi
plain="$TARGET_DIR/wasm32-unknown-unknown/wasm-release/wasm_infer.wasm"
relaxed="$TARGET_DIR/wasm-relaxed/wasm32-unknown-unknown/wasm-release/wasm_infer.wasm"
threads="$TARGET_DIR/wasm-threads/wasm32-unknown-unknown/wasm-release/wasm_infer.wasm"
for build in "${builds[@]}"; do
  wasm=${!build}
  flavours=(web nodejs)
  # The pool's workers are Web Workers: the threaded module is for browsers only.
  [ "$build" = threads ] && flavours=(web)
  for flavour in "${flavours[@]}"; do
    dir="$TARGET_DIR/wasm-pkg/${flavour%js}"
    [ "$build" = plain ] || dir="$dir-$build"
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
if [[ " ${builds[*]} " == *" relaxed "* ]]; then
  # The benchmark loads either module with the one glue file: it must not depend on the build.
  for flavour in web node; do
    cmp -s "$TARGET_DIR/wasm-pkg/$flavour/wasm_infer.js" "$TARGET_DIR/wasm-pkg/$flavour-relaxed/wasm_infer.js" \
      || { echo "build-wasm: the relaxed-SIMD build's $flavour glue differs from the simd128 one" >&2; exit 1; }
  done
  web="$TARGET_DIR/wasm-pkg/web-relaxed/wasm_infer_bg.wasm"
  echo "build-wasm: $web $(wc -c <"$web") bytes, $(gzip -9 -c "$web" | wc -c) gzipped"
fi
if [[ " ${builds[*]} " == *" threads "* ]]; then
  web="$TARGET_DIR/wasm-pkg/web-threads/wasm_infer_bg.wasm"
  echo "build-wasm: $web $(wc -c <"$web") bytes, $(gzip -9 -c "$web" | wc -c) gzipped"
fi
