#!/usr/bin/env bash
# Start the real servers the api tests run against, on loopback, in a scratch folder:
#   - PostgreSQL (Debian package, installed if missing), trust auth on 127.0.0.1;
#   - an S3-compatible server: moto[server] from PyPI, in a venv under $EDGEML_TOOLS;
#   - SciPy and pycocotools from PyPI (a venv there too), the references of the gate's
#     statistics test and of the detection mAP test.
# Source it: `source scripts/test-services.sh` exports EDGEML_TEST_POSTGRES_URL,
# EDGEML_TEST_S3_ENDPOINT, EDGEML_TEST_SCIPY_PYTHON and a `stop_test_services` function (also run on EXIT).
set -euo pipefail

TOOLS="${EDGEML_TOOLS:-${HOME:-/root}/.cache/edgeml-tools}"
MOTO_VERSION=5.2.5
SERVICES_DIR="$(mktemp -d /tmp/edgeml-services.XXXXXX)"
chmod 755 "$SERVICES_DIR"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

pg_bin() {
  local d
  for d in "$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/x)")" /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  done
  return 1
}

if ! PGBIN="$(pg_bin)"; then
  echo "installing PostgreSQL from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
  PGBIN="$(pg_bin)"
fi

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

PGDATA="$SERVICES_DIR/pg"
PGPORT="$(free_port)"
mkdir -p "$PGDATA"
[ "$(id -u)" = 0 ] && chown postgres "$PGDATA" "$SERVICES_DIR"
as_pg "$PGBIN/initdb" -D "$PGDATA" -U edgeml --auth=trust -E UTF8 >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/log" -w \
  -o "-p $PGPORT -k $PGDATA -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off" start >/dev/null
export EDGEML_TEST_POSTGRES_URL="postgres://edgeml@127.0.0.1:$PGPORT/postgres"

MOTO_VENV="$TOOLS/moto-$MOTO_VERSION"
if [ ! -x "$MOTO_VENV/bin/moto_server" ]; then
  echo "installing moto[server]==$MOTO_VERSION from PyPI"
  python3 -m venv "$MOTO_VENV.tmp" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$MOTO_VENV.tmp"; }
  "$MOTO_VENV.tmp/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION"
  rm -rf "$MOTO_VENV" && mv "$MOTO_VENV.tmp" "$MOTO_VENV"
  # venv scripts carry the absolute path of the folder they were created in.
  sed -i "1s|$MOTO_VENV.tmp|$MOTO_VENV|" "$MOTO_VENV"/bin/moto_server "$MOTO_VENV"/bin/pip
fi
# SciPy, the reference the gate's statistics are checked against (contract/tests/scipy_reference.rs),
# and pycocotools, the reference of the detection mAP (contract/tests/coco_reference.rs).
SCIPY_VERSION=1.14.1
PYCOCOTOOLS_VERSION=2.0.11
SCIPY_VENV="$TOOLS/scipy-$SCIPY_VERSION"
if [ ! -x "$SCIPY_VENV/bin/python" ] || ! "$SCIPY_VENV/bin/python" -c 'import scipy, pycocotools' 2>/dev/null; then
  echo "installing scipy==$SCIPY_VERSION and pycocotools==$PYCOCOTOOLS_VERSION from PyPI"
  rm -rf "$SCIPY_VENV"
  python3 -m venv "$SCIPY_VENV" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$SCIPY_VENV"; }
  "$SCIPY_VENV/bin/pip" install -q --disable-pip-version-check "scipy==$SCIPY_VERSION" "pycocotools==$PYCOCOTOOLS_VERSION"
fi
export EDGEML_TEST_SCIPY_PYTHON="$SCIPY_VENV/bin/python"

S3PORT="$(free_port)"
"$MOTO_VENV/bin/python" -m moto.server -H 127.0.0.1 -p "$S3PORT" >"$SERVICES_DIR/moto.log" 2>&1 &
MOTO_PID=$!
export EDGEML_TEST_S3_ENDPOINT="http://127.0.0.1:$S3PORT"
for _ in $(seq 1 100); do
  curl -fsS "$EDGEML_TEST_S3_ENDPOINT/moto-api/" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "$EDGEML_TEST_S3_ENDPOINT/moto-api/" >/dev/null || { echo "moto did not start:"; cat "$SERVICES_DIR/moto.log"; exit 1; }

stop_test_services() {
  kill "$MOTO_PID" 2>/dev/null || true
  as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$SERVICES_DIR"
}
trap stop_test_services EXIT
echo "PostgreSQL on 127.0.0.1:$PGPORT, S3 (moto $MOTO_VERSION) on $EDGEML_TEST_S3_ENDPOINT"
