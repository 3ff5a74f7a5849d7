#!/usr/bin/env bash
# Benchmark (not a test): product classification on the bundled Open Clip Art items, the
# trainer's three modalities against the TF-IDF + linear SVM baseline (scikit-learn) on the
# same split, same run.
#
#   scripts/bench-product.sh          # prints a table; paste it into BENCHMARKS.md
#
# scikit-learn comes from PyPI into a venv ($PRODUCT_VENV, default
# ~/.cache/edgeml-bench/productvenv), pinned in scripts/requirements-bench-product.txt.
# Honours CARGO_TARGET_DIR. Extra arguments go to `trainer product`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${PRODUCT_VENV:-${HOME:-/root}/.cache/edgeml-bench/productvenv}
ITEMS=assets/datasets/openclipart/items.jsonl
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

scripts/fetch-assets.sh
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sklearn' 2>/dev/null; then
  echo "bench: installing scikit-learn into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r scripts/requirements-bench-product.txt
fi
cargo build --release -p trainer
echo "bench: trainer product (backbone features computed fresh, no cache)"
"${CARGO_TARGET_DIR:-target}"/release/trainer product --items "$ITEMS" --out "$out/model" "$@" | tail -n 12
echo "bench: TF-IDF + linear SVM on the same split"
"$VENV/bin/python" scripts/bench_product_baseline.py "$ITEMS" "$out/model/metrics.json" > "$out/baseline.json"

python3 - "$out/model/metrics.json" "$out/baseline.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
b = json.load(open(sys.argv[2]))
t = m["test"]
print(f"\n{m['counts'][0]} train, {m['counts'][1]} val, {m['counts'][3]} test items scored "
      f"(with a title and a drawing), {len(m['labels'])} categories; best epoch {m['best_epoch']}; "
      f"backbone {m['seconds'][0]:.1f} s, training {m['seconds'][1]:.1f} s; "
      f"candle vs tract max |Δp| {m['parity']['max_abs_diff']:.1e}\n")
print("| model | accuracy | weighted F1 | macro F1 | weighted F1 − baseline (title) | − baseline (title + keywords) |")
print("|---|---|---|---|---|---|")
bt, bk = b["baseline"]["title"], b["baseline"]["title + keywords"]
for name, s in [("TF-IDF + linear SVM, title", bt), ("TF-IDF + linear SVM, title + keywords", bk)]:
    print(f"| {name} (C={s['C']}) | {s['accuracy']:.3f} | {s['weighted_f1']:.3f} | {s['macro_f1']:.3f} | "
          f"{100*(s['weighted_f1']-bt['weighted_f1']):+.1f} | {100*(s['weighted_f1']-bk['weighted_f1']):+.1f} |")
for key, name in [("text", "edgeml, text only (title + keywords)"), ("image", "edgeml, image only"), ("both", "edgeml, text + image")]:
    s = t[key]
    print(f"| {name} | {s['accuracy']:.3f} | {s['weighted_f1']:.3f} | {s['macro_f1']:.3f} | "
          f"{100*(s['weighted_f1']-bt['weighted_f1']):+.1f} | {100*(s['weighted_f1']-bk['weighted_f1']):+.1f} |")
print(f"| majority class | {t['majority_baseline']:.3f} | | | | |")
print("\nPer-class F1 (test items):\n")
print("| category | test items | SVM, title | SVM, title + keywords | text only | image only | text + image |")
print("|---|---|---|---|---|---|---|")
for k, label in enumerate(m["labels"]):
    print(f"| {label} | {t['both']['per_class'][k]['support']} | {bt['per_class_f1'][label]:.3f} | "
          f"{bk['per_class_f1'][label]:.3f} | {t['text']['per_class'][k]['f1']:.3f} | "
          f"{t['image']['per_class'][k]['f1']:.3f} | {t['both']['per_class'][k]['f1']:.3f} |")
PY
