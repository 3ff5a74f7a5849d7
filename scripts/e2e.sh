#!/usr/bin/env bash
# End-to-end tests in headless Chromium (Debian package, installed if missing) driven by npm
# playwright-core, against the real api binary and the built web app.
#   scripts/e2e.sh        (after scripts/build-web.sh and `cargo build --release -p api`)
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET_DIR=${CARGO_TARGET_DIR:-target}
command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
(cd playwright && npm ci --no-audit --no-fund --loglevel=error)
rm -rf playwright/screenshots
# The trainer writes the detection composites the detection test uploads.
[ -x "$TARGET_DIR/release/trainer" ] || cargo build --release -p trainer --bin trainer
EDGEML_API_BIN="$(realpath "$TARGET_DIR/release/api")" EDGEML_TRAINER_BIN="$(realpath "$TARGET_DIR/release/trainer")" \
  EDGEML_WEB_DIST="$(realpath dist)" \
  node --test --test-concurrency=1 playwright/e2e.test.mjs playwright/detect.test.mjs playwright/real-boxes.test.mjs \
  playwright/people.test.mjs
