#!/usr/bin/env python3
"""Retrain turnaround (a benchmark, not a test; run by scripts/bench-api.sh).

A fresh api holds a dataset of N approved images (default 2,000: the bundled photos, each
repeated with a PNG tEXt chunk that makes its bytes, hash and cache entries its own) and a
first champion trained on them. Then an admin approves 10 new images in one review request;
the api queues its auto-retrain, and we time the span from that request's answer to the new
champion's manifest at /api/models/current: once with the backbone feature cache, once with
FEATURE_CACHE=false (the same server data, restarted). The cold first training is timed too.

Standard library only. Prints progress lines and, last, a JSON object with the figures.

  python3 scripts/bench_retrain.py --api-bin target/release/api [--images 2000]
"""

import argparse
import glob
import json
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zlib

TOKEN = "bench-retrain-" + "%016x" % random.SystemRandom().getrandbits(64)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def with_text(png, tag):
    """The PNG with a tEXt chunk after IHDR: same pixels, other bytes."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    data = b"bench\x00" + tag.encode()
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data
    chunk += struct.pack(">I", zlib.crc32(b"tEXt" + data) & 0xFFFFFFFF)
    return png[:33] + chunk + png[33:]


class Api:
    def __init__(self, binary, data_dir, log, extra):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [binary, "--data-dir", data_dir, "--listen", f"127.0.0.1:{self.port}",
                "--admin-token", TOKEN, "--no-seed", "--train-on-start", "false",
                "--upload-rate-per-min", "100000", "--upload-burst", "100000"] + extra
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while True:
            try:
                if self.get("/health")["status"] == "ok":
                    return
            except (urllib.error.URLError, ConnectionError, KeyError, ValueError):
                pass
            if time.time() > deadline or self.proc.poll() is not None:
                raise SystemExit("bench-retrain: the api did not start (see its log)")
            time.sleep(0.5)

    def request(self, method, path, body=None, headers=None, admin=True):
        h = dict(headers or {})
        if admin:
            h["Authorization"] = f"Bearer {TOKEN}"
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=h)
        with urllib.request.urlopen(req, timeout=600) as r:
            return json.load(r) if r.status != 204 else None

    def get(self, path):
        return self.request("GET", path, admin=False)

    def post_json(self, path, value):
        return self.request("POST", path, json.dumps(value).encode(),
                            {"Content-Type": "application/json"})

    def upload(self, label, files, admin):
        boundary = "benchretrain%016x" % random.getrandbits(64)
        parts = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"label\"\r\n\r\n{label}\r\n".encode()]
        for name, data in files:
            parts.append((f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
                          f"filename=\"{name}\"\r\nContent-Type: image/png\r\n\r\n").encode() + data + b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        return self.request("POST", "/api/datasets/default/images", b"".join(parts),
                            {"Content-Type": f"multipart/form-data; boundary={boundary}"}, admin)

    def current(self):
        try:
            return self.get("/api/models/current?task=classify")["model_id"]
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)


def wait_run(api, run, timeout):
    t0 = time.time()
    while time.time() - t0 < timeout:
        info = api.get(f"/api/train/{run}")
        if info["status"] in ("succeeded", "failed", "cancelled"):
            return info
        time.sleep(0.2)
    raise SystemExit(f"bench-retrain: run {run} did not finish in {timeout} s")


def turnaround(api, ids):
    """Approve `ids` in one review request; seconds until the retrain's model is registered and
    until it is the current champion (None when the gate kept the old one)."""
    before = api.current()
    decisions = [{"id": i, "action": "approve"} for i in ids]
    r = api.post_json("/api/review", {"decisions": decisions})
    t0 = time.time()
    run = r.get("auto_retrain")
    if not run:
        raise SystemExit(f"bench-retrain: approving {len(ids)} images queued no retrain: {r}")
    registered = champion = None
    while champion is None:
        cur = api.current()
        if cur and cur != before:
            champion = time.time() - t0
        if registered is None:
            info = api.get(f"/api/train/{run}")
            if info["status"] in ("failed", "cancelled"):
                raise SystemExit(f"bench-retrain: the retrain ended {info['status']}: {info}")
            if info["status"] == "succeeded":
                registered = time.time() - t0
        elif champion is None and time.time() - t0 > registered + 5:
            break  # registered but not promoted: the gate kept the champion
        time.sleep(0.05)
    info = wait_run(api, run, 60)
    metrics = api.get(f"/api/models/{info['model_id']}/metrics.json")
    return {"to_champion_secs": None if champion is None else round(champion, 2),
            "to_candidate_secs": round(registered or champion, 2),
            "run": run, "model": info["model_id"], "images": info.get("images"),
            "feature_cache": metrics["timing"]["feature_cache"],
            "features_secs": round(metrics["timing"]["features_secs"], 2),
            "train_total_secs": round(metrics["timing"]["total_secs"], 2)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--api-bin", required=True)
    ap.add_argument("--data", default="assets/datasets/tuxpaint-photos")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--new", type=int, default=10)
    args = ap.parse_args()

    files = sorted(glob.glob(os.path.join(args.data, "*", "*.png")))
    labels = sorted({os.path.basename(os.path.dirname(p)) for p in files})
    originals = [(os.path.basename(os.path.dirname(p)), os.path.basename(p), open(p, "rb").read())
                 for p in files]
    random.Random(7).shuffle(originals)  # every label in any prefix
    # N dataset images + 2 × `new` pending ones, every one with its own bytes.
    items = []
    for i in range(args.images + 2 * args.new):
        label, name, png = originals[i % len(originals)]
        items.append((label, f"{i}-{name}", with_text(png, f"retrain-{i}")))
    base, fresh = items[:args.images], items[args.images:]

    work = tempfile.mkdtemp(prefix="bench-retrain-")
    log = open(os.path.join(work, "api.log"), "ab")
    data_dir = os.path.join(work, "data")
    out = {"images": args.images, "new": args.new}
    print(f"bench-retrain: {args.images} approved images ({len(originals)} photos, each "
          f"repeated with its own bytes), {args.new} new approvals per retrain; api log {log.name}",
          flush=True)

    # 1. The dataset and a first champion (cold: nothing cached yet).
    api = Api(args.api_bin, data_dir, log, ["--auto-retrain-after", "0"])
    try:
        for label in labels:
            api.post_json("/api/datasets/default/labels", {"name": label})
        by_label = {}
        for label, name, data in base:
            by_label.setdefault(label, []).append((name, data))
        for label, group in by_label.items():
            for k in range(0, len(group), 200):
                api.upload(label, group[k:k + 200], admin=True)
        pending = []
        for label, name, data in fresh:
            r = api.upload(label, [(name, data)], admin=False)
            pending.append(r["images"][0]["id"])
        t0 = time.time()
        run = api.post_json("/api/train", {"dataset_id": "default"})["id"]
        info = wait_run(api, run, 3600)
        if info["status"] != "succeeded":
            raise SystemExit(f"bench-retrain: the first training failed: {info}")
        first = api.current()
        m = api.get(f"/api/models/{first}/metrics.json")
        out["cold"] = {"seconds": round(time.time() - t0, 2), "images": info.get("images"),
                       "feature_cache": m["timing"]["feature_cache"],
                       "features_secs": round(m["timing"]["features_secs"], 2),
                       "train_total_secs": round(m["timing"]["total_secs"], 2)}
        print(f"bench-retrain: cold first training: {json.dumps(out['cold'])}", flush=True)
    finally:
        api.stop()

    # 2. Ten approvals → auto-retrain, with the feature cache, then without it.
    for name, extra, ids in (("cached", [], pending[:args.new]),
                             ("uncached", ["--feature-cache", "false"], pending[args.new:])):
        api = Api(args.api_bin, data_dir, log, ["--auto-retrain-after", str(args.new)] + extra)
        try:
            out[name] = turnaround(api, ids)
            print(f"bench-retrain: {name}: {json.dumps(out[name])}", flush=True)
        finally:
            api.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
