#!/usr/bin/env bash
# Lighthouse scores (performance, accessibility, best practices; mobile and desktop presets) of
# the Predict and Search pages, served by the release api with the built web app, in the
# Debian Chromium. Prints a table (BENCHMARKS.md keeps the last one); exits 1 below 95.
#   scripts/lighthouse.sh        (builds what is missing: assets, web app, release api)
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET_DIR=${CARGO_TARGET_DIR:-target}
scripts/fetch-assets.sh
[ -f dist/index.html ] || scripts/build-web.sh
[ -x "$TARGET_DIR/release/api" ] || cargo build --release -p api
command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
(cd playwright && npm ci --no-audit --no-fund --loglevel=error)
(cd scripts/lighthouse && npm ci --no-audit --no-fund --loglevel=error)
EDGEML_API_BIN="$(realpath "$TARGET_DIR/release/api")" EDGEML_WEB_DIST="$(realpath dist)" \
  node scripts/lighthouse/run.mjs
