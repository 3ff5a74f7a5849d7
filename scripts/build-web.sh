#!/usr/bin/env bash
# Build the web app into a folder the api serves (STATIC_DIR, default `dist`):
#   dist/index.html, manifest.webmanifest, icon.svg, sw.js      fixed names (entry points)
#   dist/boot-<hash>.js, route-<hash>.js, style-<hash>.css        (public/)
#   dist/app/web-<hash>.js + web_bg-<hash>.wasm   the Leptos app (wasm32, wasm-release,
#                                                 wasm-bindgen), its JS snippets under app/snippets
#   dist/pkg/wasm_infer-<hash>.js + _bg-<hash>.wasm   the inference module (build-wasm.sh)
#   dist/worker-<hash>.js                         inference worker
#   dist/idb-<hash>.js                            the IndexedDB helper (worker and page)
# Every other file is named by its content (the api serves those as immutable), and references
# are rewritten leaves first. sw.js gets the precache list and a cache name derived from the
# content of every file, so a new deployment replaces the old shell.
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
# Our scripts ship without their whole-line comments: documentation for the repository, about
# 3 KB gzip of every first visit. Only lines that start with `//` (after blanks) go, which is
# safe while no string spans lines: a template literal that does (an odd count of backticks
# on a line) stops the build.
ours=("$tmp"/boot.js "$tmp"/idb.js "$tmp"/route.js "$tmp"/sw.js "$tmp"/worker.js)
sed -i -E '/^[[:space:]]*\/\//d' "${ours[@]}"
if awk '{ if (gsub(/`/, "`") % 2) { print FILENAME ":" FNR ": " $0; bad = 1 } } END { exit !bad }' "${ours[@]}"; then
  echo "build-web: a template literal spans lines; whole-line comments cannot be stripped safely" >&2
  exit 1
fi

# name FILE REF...: rename FILE to NAME-<sha256 prefix>.EXT and rewrite "/path" (or the bare
# "./relative" path for snippets) in each REF.
name() {
  local f=$1; shift
  local rel=${f#"$tmp"} h base ext new
  h=$(sha256sum "$f" | cut -c1-12)
  base=${f%.*}; ext=${f##*.}
  new="$base-$h.$ext"
  mv "$f" "$new"
  for ref in "$@"; do
    grep -qF "$rel" "$ref" || { echo "build-web: $rel not referenced in $ref" >&2; exit 1; }
    sed -i "s|$rel|${new#"$tmp"}|g" "$ref"
  done
}
# The IndexedDB helper is imported by the worker and by a snippet: named before the snippets are.
name "$tmp/idb.js" "$tmp/worker.js" $(find "$tmp/app/snippets" -type f -name 'glue.js')
for snippet in $(cd "$tmp/app" && find snippets -type f -name '*.js' 2>/dev/null); do
  h=$(sha256sum "$tmp/app/$snippet" | cut -c1-12)
  mv "$tmp/app/$snippet" "$tmp/app/${snippet%.js}-$h.js"
  grep -qF "./$snippet" "$tmp/app/web.js" || { echo "build-web: $snippet not imported by web.js" >&2; exit 1; }
  sed -i "s|\./$snippet|./${snippet%.js}-$h.js|g" "$tmp/app/web.js"
done
name "$tmp/app/web_bg.wasm" "$tmp/boot.js"
name "$tmp/app/web.js" "$tmp/boot.js"
name "$tmp/pkg/wasm_infer_bg.wasm" "$tmp/worker.js"
name "$tmp/pkg/wasm_infer.js" "$tmp/worker.js"
name "$tmp/worker.js" "$tmp/boot.js"
name "$tmp/boot.js" "$tmp/index.html"
name "$tmp/style.css" "$tmp/index.html"
name "$tmp/route.js" "$tmp/index.html"
version=$(cd "$tmp" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
files=$(cd "$tmp" && find . -type f ! -name sw.js | sed 's|^\.||' | sort | awk 'BEGIN{printf "\"/\""} {printf ", \"%s\"", $0}')
sed -i "s|const SHELL = 'edgeml-shell-dev';|const SHELL = 'edgeml-shell-$version';|; s|const PRECACHE = \\['/', '/index.html'\\];|const PRECACHE = [$files];|" "$tmp/sw.js"
grep -q "edgeml-shell-$version" "$tmp/sw.js" || { echo "build-web: could not stamp sw.js" >&2; exit 1; }
# Precompressed copies: the api serves `x.gz` for `x` to browsers that accept gzip, so the
# wasm is not compressed again on every download. zopfli (PyPI, in a venv under $TOOLS) writes
# gzip streams 4-5 % smaller than gzip -9; without it (offline), gzip -9.
ZOPFLI_VENV="$TOOLS/zopfli-0.4.3"
if [ ! -x "$ZOPFLI_VENV/bin/python" ]; then
  rm -rf "$ZOPFLI_VENV.tmp"
  if python3 -m venv "$ZOPFLI_VENV.tmp" >/dev/null 2>&1 \
    && "$ZOPFLI_VENV.tmp/bin/pip" install -q --disable-pip-version-check "zopfli==0.4.3" >/dev/null 2>&1; then
    rm -rf "$ZOPFLI_VENV" && mv "$ZOPFLI_VENV.tmp" "$ZOPFLI_VENV"
  else
    rm -rf "$ZOPFLI_VENV.tmp"
    echo "build-web: zopfli not installed; precompressing with gzip -9" >&2
  fi
fi
py=python3
[ -x "$ZOPFLI_VENV/bin/python" ] && py="$ZOPFLI_VENV/bin/python"
find "$tmp" -type f \( -name '*.js' -o -name '*.wasm' -o -name '*.css' -o -name '*.html' -o -name '*.svg' -o -name '*.webmanifest' \) \
  -size +1k -print0 | xargs -0 "$py" scripts/precompress.py
rm -rf "$OUT"
mv "$tmp" "$OUT"
echo "build-web: $OUT ready (shell $version)"
scripts/size-budget.sh "$OUT" 999999999 | tail -1
