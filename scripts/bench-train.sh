#!/usr/bin/env bash
# Benchmark (not a test): training throughput and accuracy of the candle trainer against the
# PyTorch CPU peer (scripts/bench_train_torch.py) on the same data, machine and run.
#
#   scripts/bench-train.sh            # prints a table; paste it into BENCHMARKS.md
#
# PyTorch comes from PyPI into a venv ($TORCH_VENV, default ~/.cache/edgeml-bench/torchvenv),
# CPU-only (see the docstring of bench_train_torch.py for why the stubs are needed).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${TORCH_VENV:-${HOME:-/root}/.cache/edgeml-bench/torchvenv}
DATA=assets/datasets/tuxpaint-photos
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

scripts/fetch-assets.sh
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import torch, efficientnet_lite_pytorch' 2>/dev/null; then
  echo "bench: installing CPU PyTorch into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --no-deps -r scripts/requirements-bench.txt nvidia-cuda-runtime==13.2.86
  "$VENV/bin/pip" install -q filelock typing-extensions sympy networkx jinja2 fsspec
  "$VENV/bin/python" scripts/bench_train_torch.py --make-cuda-stubs
fi

cargo build --release -p trainer
echo "bench: candle trainer"
"${CARGO_TARGET_DIR:-target}"/release/trainer train --data "$DATA" --out "$out/candle" | tail -n 25
echo "bench: PyTorch peer"
"$VENV/bin/python" scripts/bench_train_torch.py --data "$DATA" --threads 2 --json "$out/torch.json" | tail -n 12

python3 - "$out/candle/metrics.json" "$out/torch.json" <<'PY'
import json, platform, sys, os
c = json.load(open(sys.argv[1]))
t = json.load(open(sys.argv[2]))
cm = c["manifest"]["metrics"]
rows = [
    ("training throughput, img/s (augment + backbone + head)", c["timing"]["train_images_per_sec"], t["images_per_sec_train"]),
    ("test accuracy", cm["accuracy"], t["test_accuracy"]),
    ("test macro-F1", cm["macro_f1"], t["test_macro_f1"]),
    ("majority baseline", cm["majority_baseline"], t["majority_baseline_test_accuracy"]),
    ("wall time of the whole run, s", c["timing"]["total_secs"], t["seconds_total"]),
]
print(f"\nmachine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}; peer: {t['framework']}, {t['threads']} threads")
print(f"| metric | candle (edgeml) | PyTorch | candle / PyTorch |\n|---|---|---|---|")
for name, a, b in rows:
    print(f"| {name} | {a:.3f} | {b:.3f} | {a / b:.2f} |")
PY
