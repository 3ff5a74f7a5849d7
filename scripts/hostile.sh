#!/usr/bin/env bash
# Fault-and-load acceptance suite against the api release binary (scripts/hostile.py):
# kill -9 during uploads, 1,000 stalled connections, decode bombs, duplicate-upload races,
# concurrent approvals, hostile and stalled product predictions during a retrain, hostile,
# stalled, duplicated and killed uploads and COCO imports with boxes. Runs on
# SQLite + local storage, and on PostgreSQL + S3 when `scripts/test-services.sh` was sourced
# first (as scripts/test.sh does).
#   scripts/hostile.sh [--only a,b,c,d,e,f,g] [--backend sqlite|postgres|both] [--keep]
# Binary: ${API_BIN:-${CARGO_TARGET_DIR:-target}/release/api}. HOSTILE_BOMBS sets the number
# of decode bombs (default 100).
set -euo pipefail
cd "$(dirname "$0")/.."

# 1,000 stalled sockets on our side and the server's: raise the open-file limit to 8192 (or
# the hard limit when it is lower); never lower it.
soft="$(ulimit -Sn)"
hard="$(ulimit -Hn)"
if [ "$soft" != unlimited ] && [ "$soft" -lt 8192 ]; then
  if [ "$hard" = unlimited ] || [ "$hard" -ge 8192 ]; then ulimit -n 8192; else ulimit -n "$hard"; fi
fi

export API_BIN="${API_BIN:-${CARGO_TARGET_DIR:-target}/release/api}"
[ -x "$API_BIN" ] || { echo "hostile: $API_BIN is missing (cargo build --release -p api)" >&2; exit 1; }
exec python3 scripts/hostile.py "$@"
