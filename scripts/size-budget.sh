#!/usr/bin/env bash
# The app's size budget (a check in the test suite): the bytes a first visit downloads to run
# the app — the shell, the Leptos app, the inference module, their JS, styles and manifest —
# as the api serves them to a browser that accepts gzip (the precompressed `x.gz` build-web.sh
# writes next to `x`; small files without one, as they are), must stay at or under the budget.
# Model files (backbone, heads) are not part of the app; scripts/bench-browser.sh counts them.
#
#   scripts/size-budget.sh [DIST_DIR] [BUDGET_BYTES]     (defaults: dist, 2000000)
set -euo pipefail
cd "$(dirname "$0")/.."
DIST=${1:-${EDGEML_WEB_DIST:-dist}}
BUDGET=${2:-2000000}
[ -f "$DIST/index.html" ] || { echo "size-budget: no built app in $DIST (run scripts/build-web.sh)" >&2; exit 1; }
total=0; gz9=0
rows=$(mktemp)
trap 'rm -f "$rows"' EXIT
while IFS= read -r -d '' f; do
  raw=$(wc -c <"$f")
  if [ -f "$f.gz" ]; then
    served=$(wc -c <"$f.gz")
    gzip -dc "$f.gz" | cmp -s - "$f" || { echo "size-budget: $f.gz is not $f" >&2; exit 1; }
  else
    served=$raw
  fi
  total=$((total + served))
  gz9=$((gz9 + $(gzip -9 -n -c "$f" | wc -c)))
  printf '%10d %10d  %s\n' "$served" "$raw" "${f#"$DIST"/}" >>"$rows"
done < <(find "$DIST" -type f \( -name '*.js' -o -name '*.wasm' -o -name '*.css' -o -name '*.html' -o -name '*.webmanifest' \) -print0)
printf '%10s %10s  %s\n' "served" "raw" "file"
sort -rn "$rows" | head -8
echo "size-budget: the app is $total bytes as served, gzip-compressed (gzip -9 would be $gz9; budget $BUDGET)"
if [ "$total" -gt "$BUDGET" ]; then
  echo "size-budget: over budget by $((total - BUDGET)) bytes" >&2
  exit 1
fi
