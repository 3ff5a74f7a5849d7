#!/usr/bin/env bash
# Build the web app into a folder the api serves (STATIC_DIR, default `dist`):
#   dist/index.html, boot.js, style.css, manifest.webmanifest, icon.svg   (public/)
#   dist/app/web.js + web_bg.wasm         the Leptos app (wasm32, wasm-release, wasm-bindgen)
#   dist/pkg/wasm_infer.js + _bg.wasm     the inference module (scripts/build-wasm.sh)
#   dist/worker.js                        inference worker
#   dist/sw.js                            service worker, with the precache list and a cache
#                                         name derived from the content of every file
#   scripts/build-web.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${EDGEML_WEB_DIST:-dist}}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
TOOLS=${EDGEML_TOOLS:-${HOME:-/root}/.cache/edgeml-tools}

scripts/build-wasm.sh
cargo build -p web --target wasm32-unknown-unknown --profile wasm-release
tmp="$OUT.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp/app" "$tmp/pkg"
"$TOOLS/bin/wasm-bindgen" --target web --remove-name-section --remove-producers-section \
  --out-dir "$tmp/app" --out-name web "$TARGET_DIR/wasm32-unknown-unknown/wasm-release/web.wasm"
rm -f "$tmp"/app/*.d.ts
cp "$TARGET_DIR"/wasm-pkg/web/wasm_infer.js "$TARGET_DIR"/wasm-pkg/web/wasm_infer_bg.wasm "$tmp/pkg/"
cp -r public/. "$tmp/"
version=$(cd "$tmp" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
files=$(cd "$tmp" && find . -type f ! -name sw.js | sed 's|^\.||' | sort | awk 'BEGIN{printf "\"/\""} {printf ", \"%s\"", $0}')
sed -i "s|const SHELL = 'edgeml-shell-dev';|const SHELL = 'edgeml-shell-$version';|; s|const PRECACHE = \\['/', '/index.html'\\];|const PRECACHE = [$files];|" "$tmp/sw.js"
grep -q "edgeml-shell-$version" "$tmp/sw.js" || { echo "build-web: could not stamp sw.js" >&2; exit 1; }
rm -rf "$OUT"
mv "$tmp" "$OUT"
shipped=0; gz=0
for f in "$OUT"/app/web_bg.wasm "$OUT"/app/web.js "$OUT"/pkg/wasm_infer_bg.wasm "$OUT"/pkg/wasm_infer.js "$OUT"/worker.js "$OUT"/boot.js "$OUT"/sw.js; do
  shipped=$((shipped + $(wc -c <"$f"))); gz=$((gz + $(gzip -9 -c "$f" | wc -c)))
done
echo "build-web: $OUT ready (shell $version); wasm + js shipped: $shipped bytes, $gz gzipped"
