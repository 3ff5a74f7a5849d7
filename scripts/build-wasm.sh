#!/usr/bin/env bash
# Build wasm-infer for the browser and for node (tests), with the wasm-bindgen CLI of exactly
# the version in Cargo.lock (installed from crates.io into a tools cache on first use).
#
#   scripts/build-wasm.sh      → $CARGO_TARGET_DIR/wasm-pkg/{web,node}/wasm_infer{.js,_bg.wasm}
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

cargo build -p wasm-infer --target wasm32-unknown-unknown --profile wasm-release
wasm="$TARGET_DIR/wasm32-unknown-unknown/wasm-release/wasm_infer.wasm"
for flavour in web nodejs; do
  dir="$TARGET_DIR/wasm-pkg/${flavour%js}"
  rm -rf "$dir"
  # Browsers get no debug names (3.4 MB raw, 0.66 MB gzip of the module); node keeps them
  # for readable stack traces in tests.
  strip=()
  [ "$flavour" = web ] && strip=(--remove-name-section --remove-producers-section)
  "$bindgen" --target "$flavour" "${strip[@]}" --out-dir "$dir" "$wasm"
done
web="$TARGET_DIR/wasm-pkg/web/wasm_infer_bg.wasm"
echo "build-wasm: $web $(wc -c <"$web") bytes, $(gzip -9 -c "$web" | wc -c) gzipped"
