#!/usr/bin/env bash
# The Grafana dashboard (deploy/grafana/dashboards/) against Grafana's published dashboard
# schema (npm @grafana/schema, through the TypeScript compiler), plus panel ids, grid and data
# source. Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
(cd scripts/dashboard-check && npm ci --no-audit --no-fund --loglevel=error)
node scripts/dashboard-check/check.mjs
