"""FastAPI + onnxruntime peer of the edgeml api, for scripts/bench-api.sh (a benchmark, not a test).

It does the work a typical Python stack does for the two endpoints that are timed, on the same
machine and storage kind as the api's default deployment (local folder + SQLite):

* ``POST /predict?k=5`` (multipart field ``file``): decode with PIL, preprocess exactly as the
  model manifest says (composite alpha over ``background``, centred square crop of side
  ``crop_fraction * min(w, h)``, resize to ``size`` with PIL BILINEAR -- a triangle filter whose
  support widens when downscaling, i.e. the antialiased bilinear of the manifest's
  ``"triangle"`` -- then ``(v / 255 - mean) / std``, NCHW float32), run an onnxruntime CPU
  session, answer ``{"model_id", "predictions": [{"label", "score"}], "ms"}`` like the api.
  Compositing and resampling are done in float32 (PIL mode ``F``), as the api does, so the
  tensors agree to float rounding instead of differing by the 8-bit rounding of an RGB resize.
* ``POST /upload`` (multipart ``label`` + one or more ``files``): check the label exists, then
  per file: content-sniffed format (PNG/JPEG/WebP/GIF/BMP), header dimensions within limits,
  ``verify()`` and a full ``load()`` with PIL, JPEG end marker, sha256; skip content already
  stored; write the blob content-addressed (``objects/images/<sha256>``, temp file + rename, no
  fsync, like the api's local object store), then insert all rows in one SQLite transaction
  (WAL, synchronous=FULL: the api's SQLite settings). Answers 201 with per-file results.

Run: ``python scripts/bench_api_peer.py --manifest manifest.json --model head.onnx --backbone backbone.onnx
--data-dir DIR --port 8001 [--threads 2]``. One uvicorn worker (see ``--workers``' help).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sqlite3
import threading
import time
import uuid

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, File, Form, Header, HTTPException, UploadFile
from fastapi.responses import JSONResponse
from PIL import Image

ALLOWED = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}
MAX_SIDE = 8192
MAX_PIXELS = 40_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


def preprocess(img: Image.Image, p: dict) -> np.ndarray:
    """Decoded image -> (3, size, size) float32, as the manifest's ``preprocess`` says."""
    size = int(p["size"])
    if img.mode != "RGBA":
        img = img.convert("RGBA")
    a = np.asarray(img, dtype=np.float32)
    alpha = a[:, :, 3:4] * np.float32(1.0 / 255.0)
    bg = np.asarray(p["background"], dtype=np.float32)
    rgb = a[:, :, :3] * alpha + bg * (np.float32(1.0) - alpha)
    h, w = rgb.shape[:2]
    side = float(p["crop_fraction"]) * min(w, h)
    x0, y0 = (w - side) * 0.5, (h - side) * 0.5
    box = (x0, y0, x0 + side, y0 + side)
    mean = np.asarray(p["mean"], dtype=np.float32)
    std = np.asarray(p["std"], dtype=np.float32)
    out = np.empty((3, size, size), dtype=np.float32)
    for c in range(3):
        ch = Image.fromarray(np.ascontiguousarray(rgb[:, :, c]))  # mode "F"
        r = np.asarray(ch.resize((size, size), Image.BILINEAR, box=box), dtype=np.float32)
        out[c] = r * (np.float32(1.0) / (np.float32(255.0) * std[c])) - mean[c] / std[c]
    return out


def sniff(data: bytes) -> tuple[Image.Image, str]:
    """Open (header only) and check format and dimensions; 415/422 like the api."""
    try:
        img = Image.open(io.BytesIO(data))
    except Exception:
        raise HTTPException(415, "not a PNG, JPEG, WebP, GIF or BMP image")
    fmt = ALLOWED.get(img.format or "")
    if fmt is None:
        raise HTTPException(415, f"{img.format} is not accepted")
    w, h = img.size
    if w == 0 or h == 0 or w > MAX_SIDE or h > MAX_SIDE or w * h > MAX_PIXELS:
        raise HTTPException(413, f"image is {w}x{h}")
    if fmt == "jpeg" and b"\xff\xd9" not in data[-4096:]:
        raise HTTPException(422, "truncated JPEG")
    return img, fmt


def make_app(manifest: dict, model_path: str, backbone_path: str | None, data_dir: str, threads: int, token: str | None) -> FastAPI:
    app = FastAPI()
    prep = manifest["preprocess"]
    labels = manifest["labels"]
    model_id = manifest["model_id"]
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    in_name = sess.get_inputs()[0].name
    out_name = sess.get_outputs()[0].name
    # The same composition as edgeml: the shared backbone, then the version's head.
    backbone = ort.InferenceSession(backbone_path, so, providers=["CPUExecutionProvider"]) if backbone_path else None

    def run(x: np.ndarray) -> np.ndarray:
        if backbone is not None:
            x = backbone.run(None, {backbone.get_inputs()[0].name: x})[0]
        return sess.run([out_name], {in_name: x})[0]

    objects = os.path.join(data_dir, "objects", "images")
    os.makedirs(objects, exist_ok=True)
    db_path = os.path.join(data_dir, "peer.db")
    local = threading.local()

    def db() -> sqlite3.Connection:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(db_path, timeout=15, isolation_level=None)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            local.conn = conn
        return conn

    c = db()
    c.execute("CREATE TABLE IF NOT EXISTS labels (name TEXT PRIMARY KEY)")
    c.execute(
        "CREATE TABLE IF NOT EXISTS images (id TEXT PRIMARY KEY, sha256 TEXT NOT NULL UNIQUE, "
        "label TEXT NOT NULL REFERENCES labels(name), status TEXT NOT NULL, format TEXT NOT NULL, "
        "bytes INTEGER NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL, "
        "filename TEXT NOT NULL, uploader TEXT NOT NULL, created_at INTEGER NOT NULL)"
    )
    c.executemany("INSERT OR IGNORE INTO labels (name) VALUES (?)", [(l,) for l in labels])

    @app.get("/health")
    def health():
        return {"ok": True, "model_id": model_id}

    @app.post("/predict")
    def predict(file: UploadFile = File(...), k: int = 5):
        data = file.file.read()
        img, _ = sniff(data)
        try:
            img.load()
        except Exception as e:
            raise HTTPException(422, f"does not decode: {e}")
        t0 = time.perf_counter()
        x = preprocess(img, prep)[None]
        probs = run(x)[0]
        k = max(1, min(k, 100, len(labels)))
        top = np.argsort(-probs, kind="stable")[:k]
        return {
            "model_id": model_id,
            "predictions": [{"label": labels[i], "score": float(probs[i])} for i in top],
            "ms": (time.perf_counter() - t0) * 1e3,
        }

    @app.post("/upload", status_code=201)
    def upload(
        label: str = Form(...),
        files: list[UploadFile] = File(...),
        authorization: str | None = Header(None),
    ):
        if token is not None and authorization != f"Bearer {token}":
            raise HTTPException(401, "admin token required")
        conn = db()
        if conn.execute("SELECT 1 FROM labels WHERE name = ?", (label,)).fetchone() is None:
            raise HTTPException(422, f"unknown label {label!r}")
        checked = []
        for f in files:
            data = f.file.read()
            if not data:
                raise HTTPException(400, "empty file")
            img, fmt = sniff(data)
            try:
                img.verify()
                img = Image.open(io.BytesIO(data))
                img.load()
            except Exception as e:
                raise HTTPException(422, f"does not decode: {e}")
            checked.append((f.filename or "", data, fmt, img.size, hashlib.sha256(data).hexdigest()))
        results, fresh, created = [], [], []
        for name, data, fmt, (w, h), sha in checked:
            row = conn.execute("SELECT id, label, status FROM images WHERE sha256 = ?", (sha,)).fetchone()
            if row is not None or any(sha == r[4] for r in fresh):
                results.append({"filename": name, "sha256": sha, "duplicate": True})
                continue
            fresh.append((name, data, fmt, (w, h), sha, "img-" + uuid.uuid4().hex))
        for name, data, fmt, _, sha, _ in fresh:
            path = os.path.join(objects, sha)
            try:
                same = os.stat(path).st_size == len(data)
            except FileNotFoundError:
                same = False
            if not same:
                tmp = f"{path}#{uuid.uuid4().hex}"
                with open(tmp, "wb") as out:
                    out.write(data)
                os.replace(tmp, path)
                created.append(path)
        now = int(time.time() * 1000)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO images VALUES (?, ?, ?, 'approved', ?, ?, ?, ?, ?, 'admin', ?)",
                [(iid, sha, label, fmt, len(data), w, h, name, now) for name, data, fmt, (w, h), sha, iid in fresh],
            )
            conn.execute("COMMIT")
        except Exception:
            conn.execute("ROLLBACK")
            for p in created:
                os.unlink(p)
            raise
        for name, _, _, _, sha, iid in fresh:
            results.append({"filename": name, "id": iid, "sha256": sha, "label": label, "duplicate": False})
        return JSONResponse({"label": label, "files": results}, status_code=201)

    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--model", required=True, help="the head (with --backbone) or a whole graph")
    ap.add_argument("--backbone", help="the shared backbone the head runs on")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    ap.add_argument("--admin-token", help="when set, /upload needs `Authorization: Bearer TOKEN`")
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="uvicorn workers; 1 because onnxruntime already spreads one inference over both "
        "cores, each extra worker would hold its own session, and SQLite has one writer",
    )
    args = ap.parse_args()
    manifest = json.load(open(args.manifest))
    if args.workers != 1:
        raise SystemExit("only --workers 1 is supported (one onnxruntime session, one SQLite writer)")
    app = make_app(manifest, args.model, args.backbone, args.data_dir, args.threads, args.admin_token)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
