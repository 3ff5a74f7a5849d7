#!/usr/bin/env bash
# The OpenAPI contract, checked from outside: schemathesis (PyPI, pinned, in a venv under
# $EDGEML_TOOLS) generates requests for every operation of /api/openapi.json — valid ones and
# schema-violating ones — and checks every answer against the document (`--checks all`:
# no 5xx, documented status codes, content types and bodies, valid requests accepted, invalid
# ones refused), once without and once with the admin token. Runs against the release binary
# on a fresh SQLite + local data folder with a small seed: a first model is trained (so the
# prediction route answers for real), then the server restarts without a training worker
# (runs the generated requests queue stay queued). Settings: api/schemathesis.toml.
#   scripts/schemathesis.sh [extra schemathesis options]
# Binary: ${API_BIN:-${CARGO_TARGET_DIR:-target}/release/api}.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS="${EDGEML_TOOLS:-${HOME:-/root}/.cache/edgeml-tools}"
ST_VERSION=4.32.5
VENV="$TOOLS/schemathesis-$ST_VERSION"
if [ ! -x "$VENV/bin/schemathesis" ]; then
  echo "installing schemathesis==$ST_VERSION from PyPI"
  rm -rf "$VENV.tmp"
  python3 -m venv "$VENV.tmp" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$VENV.tmp"; }
  "$VENV.tmp/bin/pip" install -q --disable-pip-version-check "schemathesis==$ST_VERSION"
  rm -rf "$VENV" && mv "$VENV.tmp" "$VENV"
  # venv scripts carry the absolute path of the folder they were created in.
  sed -i "1s|$VENV.tmp|$VENV|" "$VENV"/bin/schemathesis "$VENV"/bin/pip
fi

API_BIN="${API_BIN:-${CARGO_TARGET_DIR:-target}/release/api}"
[ -x "$API_BIN" ] || { echo "schemathesis: $API_BIN is missing (cargo build --release -p api)" >&2; exit 1; }

work="$(mktemp -d /tmp/edgeml-schemathesis.XXXXXX)"
seed="$work/seed"
for d in assets/datasets/tuxpaint-photos/*/; do
  label="$(basename "$d")"
  mkdir -p "$seed/$label"
  find "$d" -maxdepth 1 -type f ! -name '*.txt' | sort | sed -n '1,6p' | xargs -r cp -t "$seed/$label"
done
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
token="schemathesis-admin-token-$RANDOM$RANDOM"
start_api() { # $1: in-process training workers
  LISTEN="127.0.0.1:$port" DATA_DIR="$work/data" SEED_DIR="$seed" STATIC_DIR=/nonexistent \
    ADMIN_TOKEN="$token" WORKERS="$1" TRAIN_ON_START=false AUTO_RETRAIN_AFTER=0 \
    UPLOAD_RATE_PER_MIN=1000000 UPLOAD_BURST=1000000 PREDICT_RATE_PER_MIN=1000000 PREDICT_BURST=1000000 \
    RUST_LOG=warn "$API_BIN" >>"$work/api.log" 2>&1 &
  api_pid=$!
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  tail -n 30 "$work/api.log"
  return 1
}
cleanup() { kill "$api_pid" 2>/dev/null || true; wait "$api_pid" 2>/dev/null || true; }
trap cleanup EXIT

# A first model (a quick run), promoted if the gate held it back on so little data.
start_api 1
api() { curl -fsS -H "Authorization: Bearer $token" -H 'Content-Type: application/json' "$@"; }
run="$(api -X POST -d '{"params": {"epochs": 2, "views": 1}}' "http://127.0.0.1:$port/api/train" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')"
for _ in $(seq 1 600); do
  state="$(api "http://127.0.0.1:$port/api/train/$run" | python3 -c 'import json, sys; r = json.load(sys.stdin); print(r["status"], r.get("model_id") or "")')"
  case "$state" in queued*|running*) sleep 1 ;; *) break ;; esac
done
case "$state" in succeeded*) ;; *) echo "first training: $state"; tail -n 30 "$work/api.log"; exit 1 ;; esac
curl -fsS "http://127.0.0.1:$port/api/models/current" >/dev/null 2>&1 \
  || api -X POST "http://127.0.0.1:$port/api/models/${state#succeeded }/promote" >/dev/null
cleanup
start_api 0

status=0
for who in anonymous admin; do
  echo "-- schemathesis as $who"
  auth=()
  [ "$who" = admin ] && auth=(-H "Authorization: Bearer $token")
  "$VENV/bin/schemathesis" --config-file api/schemathesis.toml run "http://127.0.0.1:$port/api/openapi.json" \
    --url "http://127.0.0.1:$port" --checks all --max-examples 25 --seed 1 \
    --no-color "${auth[@]}" "$@" || status=1
done
if [ "$status" != 0 ]; then
  echo "schemathesis found contract failures; server log: $work/api.log"
  tail -n 20 "$work/api.log"
  exit 1
fi
rm -rf "$work"
