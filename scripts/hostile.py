#!/usr/bin/env python3
"""Fault-and-load acceptance suite for the edgeml api, run against its release binary.

Every scenario starts the real `api` binary (never an in-process server) on a fresh database
and bucket, attacks it over loopback TCP and checks what a production server must survive:

  a  kill -9 during a 16-client upload burst: after a restart every acknowledged image is
     there with the same bytes (sha256), and no image row lacks its blob.
  b  1,000 stalled connections (silent, partial request line/headers, partial 1 MB body):
     /health keeps answering 200 in < 100 ms, and the server closes every stalled connection
     within 30 s of its opening.
  c  100 concurrent 40-megapixel decode bombs (6300x6300 PNGs, 16-bit RGBA and 8-bit RGB, all
     zeros, ~0.1-0.3 MB each), half uploaded, half sent to /api/predict: every answer is 2xx,
     413, 422, 429 or 503 (no other 5xx, no dropped connection) and the api's peak RSS stays
     under 2 GB. Then 20 concurrent downloads of the champion's backbone and 20 of its NNEF
     head, at once: all whole and matching its manifest's sha256; 20 concurrent predictions
     of one photo and two lone ones: the same answers; two retrains queued at once while 20 clients poll the registry:
     every read 200, exactly one champion after, every gate consistent with the evidence its
     metrics.json publishes.
  d  20 concurrent identical uploads of a new image (3 rounds): one row for the sha256, one
     201, the other answers 200 with duplicate=true and the same image id, no 5xx.
  e  50 concurrent approvals past the auto-retrain threshold (WORKERS=0): exactly one
     queued run for the dataset.
  f  product classification (scripts/hostile_product.py): hostile titles, 200 stalled product
     predictions, prediction bursts during a product retrain, the registry consistent after.
  g  images with boxes (scripts/hostile_detect.py): hostile boxes and COCO documents, 20
     identical boxed uploads and COCO imports, 200 stalled ones, kill -9 during a burst of
     them: every acknowledged image there with its bytes and its boxes.

Each scenario runs on SQLite + local storage and on PostgreSQL + S3 (the servers that
`scripts/test-services.sh` starts: EDGEML_TEST_POSTGRES_URL, EDGEML_TEST_S3_ENDPOINT; without
them only SQLite runs). A watchdog samples the api's VmRSS every 50 ms and kills it above
6 GB (the scenario then fails). The upload rate limit is raised (UPLOAD_RATE_PER_MIN,
UPLOAD_BURST) so that every request reaches the code under test instead of a 429.

Run (Python 3 standard library only):

    scripts/hostile.sh                                   # both backends, all scenarios
    API_BIN=/tmp/api-baseline scripts/hostile.sh --only a,d --backend sqlite
    bash -c 'source scripts/test-services.sh; python3 scripts/hostile.py --backend postgres'

Options: --only a,b,... (scenarios), --backend sqlite|postgres|both, --bin PATH (default
$API_BIN or ${CARGO_TARGET_DIR:-target}/release/api), --keep (keep the scratch folder).
Environment: HOSTILE_BOMBS (default 100) sets the number of decode bombs in (c);
HOSTILE_HEALTH_MS (default 100) the /health latency limit in (b).
Prints one table row per scenario and backend, a summary table at the end, and exits 1 when
any check failed (the scratch folder with the server logs is then kept).
"""

import argparse
import asyncio
import hashlib
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "hostile-admin-token-0123456789ab"  # 32 characters
ADMIN = {"Authorization": "Bearer " + TOKEN}
DATASET = "default"
SEED_PER_LABEL = 6
WATCHDOG_KILL_BYTES = 6 * 1024**3
BOMB_RSS_LIMIT_BYTES = 2 * 1024**3
BOMB_SIDE = 6300
STALL_DEADLINE_S = 30.0
# /health answers must take less than this (HOSTILE_HEALTH_MS loosens it on a loaded machine).
HEALTH_LIMIT_S = float(os.environ.get("HOSTILE_HEALTH_MS", "100")) / 1000
# Statuses a server may answer a decode bomb with (besides 2xx).
BOMB_OK_STATUSES = {413, 422, 429, 503}
# Server settings every scenario shares: no web app, a known token, no upload rate limit.
BASE_ENV = {
    "ADMIN_TOKEN": TOKEN,
    "STATIC_DIR": "/nonexistent",
    "UPLOAD_RATE_PER_MIN": "1000000",
    "UPLOAD_BURST": "1000000",
    "RUST_LOG": "info,sqlx=warn,tower_http=warn",
}
# Variables of the caller's environment that must not leak into a server's configuration.
SCRUB_ENV = (
    "LISTEN DATA_DIR DATABASE_URL STORAGE_URL S3_ENDPOINT S3_REGION S3_ACCESS_KEY_ID "
    "S3_SECRET_ACCESS_KEY ADMIN_TOKEN EDGEML_PRODUCTION STATIC_DIR SEED_DIR NO_SEED "
    "TRAIN_ON_START AUTO_RETRAIN_AFTER GATE_MARGIN WORKERS WORKER_LEASE_SECS MAX_UPLOAD_BYTES "
    "MAX_IMAGE_SIDE MAX_IMAGE_PIXELS MAX_FILES UPLOAD_RATE_PER_MIN UPLOAD_BURST CORS_ORIGINS "
    "PREDICT_RATE_PER_MIN PREDICT_BURST"
).split()


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# PNG and multipart encoding
# ---------------------------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind, data):
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_file(width, height, bit_depth, color_type, idat, extra_chunks=b""):
    """A PNG from an already compressed IDAT stream (`extra_chunks` go before IDAT)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + extra_chunks
            + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b""))


def random_png(side=64):
    """A distinct small 8-bit RGB PNG of random pixels (filter byte 0 on every row)."""
    raw = b"".join(b"\x00" + os.urandom(side * 3) for _ in range(side))
    return png_file(side, side, 8, 2, zlib.compress(raw, 1))


def zero_idat(side, bytes_per_pixel):
    """The IDAT stream of an all-zero square image, compressed row by row (never holds the
    raw pixels in memory)."""
    row = bytes(1 + side * bytes_per_pixel)
    z = zlib.compressobj(9)
    parts = [z.compress(row) for _ in range(side)]
    parts.append(z.flush())
    return b"".join(parts)


class BombFactory:
    """Decode bombs: 6300x6300 all-zero PNGs, 16-bit RGBA (317 MB decoded) or 8-bit RGB
    (119 MB), each made distinct (its own sha256) by a tEXt chunk."""

    def __init__(self, side=BOMB_SIDE):
        self.side = side
        self.idat_rgba16 = zero_idat(side, 8)
        self.idat_rgb8 = zero_idat(side, 3)

    def make(self, i):
        text = png_chunk(b"tEXt", b"Comment\x00hostile bomb %d %s" % (i, os.urandom(8).hex().encode()))
        if i % 2 == 0:
            return png_file(self.side, self.side, 16, 6, self.idat_rgba16, text)
        return png_file(self.side, self.side, 8, 2, self.idat_rgb8, text)


def multipart(fields, files):
    """Encode a multipart/form-data body: `fields` {name: value}, `files` [(field, filename,
    bytes)]. Returns (body, content type)."""
    boundary = "hostile-" + os.urandom(12).hex()
    out = []
    for name, value in fields.items():
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                   .encode() + value.encode() + b"\r\n")
    for field, filename, data in files:
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
                   f'filename="{filename}"\r\nContent-Type: image/png\r\n\r\n'.encode()
                   + data + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), "multipart/form-data; boundary=" + boundary


def sha256(data):
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# HTTP client (one fresh connection per request)
# ---------------------------------------------------------------------------------------------

class Resp:
    """An answer: `status` None and `error` set when no response came back."""

    def __init__(self, status=None, body=b"", error=None):
        self.status, self.body, self.error = status, body, error

    def json(self):
        return json.loads(self.body)

    def json_or_none(self):
        """The JSON body, or None when the body is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def key(self):
        """Histogram key: the status, or the kind of connection failure."""
        return str(self.status) if self.status is not None else self.error.split(":")[0]

    def snippet(self):
        return self.body[:200].decode("utf-8", "replace") if self.status else self.error


def exchange(conn, method, path, body=None, headers=None):
    """Send one request on a connected `HTTPConnection` and read its answer. When sending
    fails (the server answered early and closed), still try to read the answer."""
    try:
        try:
            conn.request(method, path, body=body, headers=headers or {})
        except OSError as send_error:
            try:
                r = conn.getresponse()
                return Resp(r.status, r.read())
            except Exception:  # noqa: BLE001 - any failure means: no answer
                return Resp(error=f"{type(send_error).__name__}: {send_error}")
        r = conn.getresponse()
        return Resp(r.status, r.read())
    except Exception as e:  # noqa: BLE001 - any failure means: no answer
        return Resp(error=f"{type(e).__name__}: {e}")
    finally:
        conn.close()


def request(port, method, path, body=None, headers=None, timeout=60):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    return exchange(conn, method, path, body, headers)


def fire_together(port, reqs, timeout=180):
    """Send every (method, path, body, headers) of `reqs` at once: one thread and one
    pre-connected socket each, released together by a barrier. Returns the answers in order."""
    barrier = threading.Barrier(len(reqs))
    out = [None] * len(reqs)

    def one(i, req):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.connect()
        except OSError as e:
            out[i] = Resp(error=f"connect {type(e).__name__}: {e}")
            conn.close()
        try:
            barrier.wait(timeout=60)
        except threading.BrokenBarrierError:
            pass
        if out[i] is None:
            out[i] = exchange(conn, *req)

    threads = [threading.Thread(target=one, args=(i, r), daemon=True) for i, r in enumerate(reqs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 90)
    return [r or Resp(error="client thread did not finish") for r in out]


def histogram(resps):
    h = {}
    for r in resps:
        h[r.key()] = h.get(r.key(), 0) + 1
    return "{" + ",".join(f"{k}:{v}" for k, v in sorted(h.items())) + "}"


def upload_request(label, files, admin):
    """(method, path, body, headers) of an upload of `files` [(name, bytes)]."""
    body, ctype = multipart({"label": label}, [("files", n, d) for n, d in files])
    headers = {"Content-Type": ctype, **(ADMIN if admin else {})}
    return ("POST", f"/api/datasets/{DATASET}/images", body, headers)


def predict_request(data):
    body, ctype = multipart({}, [("file", "bomb.png", data)])
    return ("POST", "/api/predict?k=3", body, {"Content-Type": ctype})


# ---------------------------------------------------------------------------------------------
# Backends: where a server keeps its metadata and blobs
# ---------------------------------------------------------------------------------------------

def suffix():
    return os.urandom(5).hex()


class Backend:
    """SQLite + local storage (`sqlite`) or PostgreSQL + S3 (`postgres`): hands out the
    environment of a fresh database and bucket for each server."""

    def __init__(self, name):
        self.name = name
        self.databases = []
        if name == "postgres":
            self.pg_url = os.environ["EDGEML_TEST_POSTGRES_URL"]
            self.s3 = os.environ["EDGEML_TEST_S3_ENDPOINT"].rstrip("/")

    def fresh_env(self, data_dir):
        env = {"DATA_DIR": data_dir}
        if self.name == "postgres":
            env["DATABASE_URL"] = self.fresh_database()
            env.update({"STORAGE_URL": "s3://" + self.fresh_bucket(), "S3_ENDPOINT": self.s3,
                        "S3_REGION": "us-east-1", "S3_ACCESS_KEY_ID": "hostile",
                        "S3_SECRET_ACCESS_KEY": "hostile-secret"})
        return env

    def psql(self, sql):
        subprocess.run(["psql", self.pg_url, "-v", "ON_ERROR_STOP=1", "-qc", sql],
                       check=True, capture_output=True, timeout=60)

    def fresh_database(self):
        name = "edgeml_hostile_" + suffix()
        self.psql(f"CREATE DATABASE {name}")
        self.databases.append(name)
        return self.pg_url.rsplit("/", 1)[0] + "/" + name

    def fresh_bucket(self):
        bucket = "edgeml-hostile-" + suffix()
        host, port = self.s3.split("://", 1)[1].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        r = exchange(conn, "PUT", "/" + bucket)
        if r.status != 200:
            raise RuntimeError(f"create bucket {bucket}: {r.key()} {r.snippet()}")
        return bucket

    def cleanup(self):
        for name in self.databases:
            try:
                self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            except Exception:  # noqa: BLE001 - best effort
                pass


# ---------------------------------------------------------------------------------------------
# The server process and its memory watchdog
# ---------------------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status_kb(pid, field):
    """A `kB` field of /proc/<pid>/status (VmRSS, VmHWM), or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class Watchdog(threading.Thread):
    """Samples the api's VmRSS every 50 ms, keeps the peak, and SIGKILLs it above 6 GB."""

    def __init__(self, proc):
        super().__init__(daemon=True)
        self.proc, self.peak_kb, self.killed = proc, 0, False

    def run(self):
        while self.proc.poll() is None:
            kb = proc_status_kb(self.proc.pid, "VmRSS")
            if kb is not None:
                self.peak_kb = max(self.peak_kb, kb)
                if kb * 1024 > WATCHDOG_KILL_BYTES:
                    self.killed = True
                    log(f"watchdog: api RSS {kb // 1024} MB > 6 GB, killing pid {self.proc.pid}")
                    self.proc.kill()
                    return
            time.sleep(0.05)


class Server:
    """The api binary on a fresh port, its output in `log_path`. `restart` keeps the
    environment (same data folder, database and bucket)."""

    live = []

    def __init__(self, binary, env, log_path):
        self.binary, self.env, self.log_path = binary, env, log_path
        self.proc = self.watchdog = None
        self.port = None
        self.peak_kb = 0
        self.killed_by_watchdog = False

    def start(self, timeout=120):
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in SCRUB_ENV}
        env.update(BASE_ENV, **self.env, LISTEN=f"127.0.0.1:{self.port}")
        with open(self.log_path, "ab") as out:
            out.write(f"\n=== start on port {self.port} at {time.strftime('%H:%M:%S')}\n".encode())
            self.proc = subprocess.Popen([self.binary], env=env, cwd=ROOT, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        Server.live.append(self)
        self.watchdog = Watchdog(self.proc)
        self.watchdog.start()
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"api exited with {self.proc.returncode} during start-up")
            if self.get("/health", timeout=5).status == 200:
                return
            time.sleep(0.1)
        raise RuntimeError(f"GET /health did not answer 200 within {timeout} s")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def collect_watchdog(self):
        if self.watchdog:
            self.peak_kb = max(self.peak_kb, self.watchdog.peak_kb)
            self.killed_by_watchdog |= self.watchdog.killed

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.watchdog.join()
        self.collect_watchdog()

    def stop(self, grace=10):
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                log(f"api did not exit within {grace} s of SIGTERM; killing it")
                self.proc.kill()
                self.proc.wait()
        if self.watchdog:
            self.watchdog.join()
        self.collect_watchdog()
        if self in Server.live:
            Server.live.remove(self)

    def restart(self):
        self.stop()
        return self.start()

    def reset_peak(self):
        """Forget the peak RSS so far (clear_refs 5 resets VmHWM)."""
        self.peak_kb = 0
        self.watchdog.peak_kb = 0
        try:
            with open(f"/proc/{self.proc.pid}/clear_refs", "w") as f:
                f.write("5")
        except OSError as e:
            log(f"cannot reset VmHWM ({e}); the peak includes earlier work")

    def peak_rss_mb(self):
        """Max of the watchdog's VmRSS samples and the kernel's VmHWM, in MB."""
        self.collect_watchdog()
        hwm = proc_status_kb(self.proc.pid, "VmHWM") if self.alive() else None
        return max(self.peak_kb, hwm or 0) // 1024

    def tail(self, n=15):
        """The last `n` lines of the server's output, without terminal colours."""
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return "(no log)"
        lines = re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines()
        return "\n".join("    | " + line[:300] for line in lines[-n:])

    # -- requests -------------------------------------------------------------------------
    def get(self, path, admin=False, timeout=60):
        return request(self.port, "GET", path, headers=ADMIN if admin else None, timeout=timeout)

    def post_json(self, path, value, admin=True):
        headers = {"Content-Type": "application/json", **(ADMIN if admin else {})}
        return request(self.port, "POST", path, json.dumps(value).encode(), headers)

    def get_json(self, path, admin=True):
        r = self.get(path, admin)
        if r.status != 200:
            raise RuntimeError(f"GET {path}: {r.key()} {r.snippet()}")
        return r.json()


def kill_live_servers():
    for s in list(Server.live):
        if s.alive():
            s.proc.kill()


# ---------------------------------------------------------------------------------------------
# Shared checks
# ---------------------------------------------------------------------------------------------

class Outcome:
    """What one scenario found: numbers to print, failed checks, notes (odd answers)."""

    def __init__(self):
        self.numbers, self.failures, self.notes = [], [], []

    def num(self, text):
        self.numbers.append(text)

    def check(self, ok, what):
        if not ok:
            self.failures.append(what)
        return ok

    def note_odd(self, where, resps, expected):
        """Remember the first body of each unexpected status (5xx bodies, dropped connections)."""
        for r in resps:
            note = f"{where} {r.key()}: {r.snippet()}"
            if r.status not in expected and not any(n.startswith(f"{where} {r.key()}:") for n in self.notes):
                self.notes.append(note)


def dataset_labels(server):
    return [lab["name"] for lab in server.get_json(f"/api/datasets/{DATASET}")["labels"]]


def all_images(server):
    """Every image row of the dataset (admin listing, 500 a page), deduplicated by id."""
    rows, offset = {}, 0
    while True:
        page = server.get_json(f"/api/images?dataset={DATASET}&limit=500&offset={offset}")
        for row in page["images"]:
            rows[row["id"]] = row
        offset += len(page["images"])
        if not page["images"] or offset >= page["total"]:
            return list(rows.values())


def blob_matches(server, image_id, expected_sha):
    """Whether the image's blob answers 200 with bytes of the expected sha256."""
    r = server.get(f"/api/images/{image_id}/blob", admin=True)
    return r.status == 200 and sha256(r.body) == expected_sha


def queued_runs(server):
    runs = server.get_json("/api/train?limit=500")
    return sum(1 for r in runs if r["dataset_id"] == DATASET and r["status"] == "queued")


# ---------------------------------------------------------------------------------------------
# (e) 50 concurrent approvals past the auto-retrain threshold
# ---------------------------------------------------------------------------------------------

def scenario_e(server, out):
    """Needs a server with WORKERS=0, AUTO_RETRAIN_AFTER=10 and no queued run yet."""
    before = queued_runs(server)
    out.check(before == 0, f"precondition: {before} queued runs before the approvals")
    labels = dataset_labels(server)
    ids = []
    for batch in range(5):
        files = [(f"e-{batch}-{i}.png", random_png()) for i in range(10)]
        r = request(server.port, *upload_request(labels[batch % len(labels)], files, False))
        if out.check(r.status == 201, f"upload of 10 new images answered {r.key()}: {r.snippet()}"):
            ids += [img["id"] for img in r.json()["images"]]
    out.check(len(ids) == 50, f"only {len(ids)} of 50 images uploaded")
    reviews = fire_together(server.port, [
        ("POST", "/api/review", json.dumps({"decisions": [{"id": i, "action": "approve"}]}).encode(),
         {"Content-Type": "application/json", **ADMIN}) for i in ids])
    queued = queued_runs(server)
    out.num(f"approvals={histogram(reviews)} queued_runs={queued}")
    out.note_odd("review", reviews, {200})
    out.check(all(r.status == 200 for r in reviews), "a concurrent approval did not answer 200")
    out.check(queued == 1, f"{queued} queued runs for '{DATASET}' (expected exactly 1)")


# ---------------------------------------------------------------------------------------------
# (d) 20 concurrent identical uploads of a new image, 3 rounds
# ---------------------------------------------------------------------------------------------

def first_image(r):
    """The first `images[]` entry of an upload answer, or None."""
    body = r.json_or_none()
    images = body.get("images") if isinstance(body, dict) else None
    return images[0] if images else None


def identical_upload_round(server, label, out, n):
    """Round `n`; returns (answers, rows stored for the image's sha256)."""
    data = random_png()
    digest = sha256(data)
    resps = fire_together(server.port, [upload_request(label, [("same.png", data)], False)] * 20)
    rows = sum(1 for row in all_images(server) if row["sha256"] == digest)
    created = [r for r in resps if r.status == 201 and first_image(r)]
    dups = [r for r in resps if r.status == 200 and (first_image(r) or {}).get("duplicate")]
    ids = {first_image(r)["id"] for r in created + dups}
    broken = sum(1 for r in resps if r.status is None or r.status >= 500)
    out.check(not broken, f"round {n}: {broken} answers were 5xx or missing")
    out.check(len(created) == 1, f"round {n}: {len(created)} answers were 201 (expected exactly 1)")
    out.check(len(created) + len(dups) == 20,
              f"round {n}: {20 - len(created) - len(dups)} answers neither 201 nor 200 duplicate=true")
    out.check(len(ids) <= 1, f"round {n}: answers carry {len(ids)} different image ids")
    out.check(rows == 1, f"round {n}: {rows} rows stored for one sha256 (expected 1)")
    out.note_odd("identical upload", resps, {200, 201})
    return resps, rows


def scenario_d(server, out):
    label = dataset_labels(server)[0]
    for n in range(3):
        resps, rows = identical_upload_round(server, label, out, n + 1)
        out.num(f"round{n + 1}={histogram(resps)} rows={rows}")


# ---------------------------------------------------------------------------------------------
# (a) kill -9 during a 16-client upload burst
# ---------------------------------------------------------------------------------------------

class Burst:
    """16 clients uploading distinct 64x64 PNGs (1-3 a request; even clients as admin) until
    `stop`; records every acknowledged image id with its sha256."""

    def __init__(self, server, labels, clients=16):
        self.server, self.labels, self.clients = server, labels, clients
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked = {}  # image id -> sha256
        self.statuses = []
        self.bad_acks = []
        self.in_flight = 0

    def client(self, i):
        n = 0
        while not self.stop.is_set():
            files = {f"a-{i}-{n}-{k}.png": random_png() for k in range(1 + n % 3)}
            n += 1
            req = upload_request(self.labels[i % len(self.labels)], list(files.items()), i % 2 == 0)
            with self.lock:
                self.in_flight += 1
            r = request(self.server.port, *req, timeout=30)
            with self.lock:
                self.in_flight -= 1
                self.record(r, files)

    def record(self, r, files):
        self.statuses.append(r)
        body = r.json_or_none() if r.status in (200, 201) else None
        if not isinstance(body, dict):
            return
        for img in body.get("images", []):
            expected = sha256(files.get(img["filename"], b""))
            if img["sha256"] != expected:
                self.bad_acks.append(img["id"])
            self.acked[img["id"]] = img["sha256"]

    def run_then_kill(self, seconds=1.0):
        """Burst for `seconds`, SIGKILL the server mid-flight; returns requests in flight."""
        threads = [threading.Thread(target=self.client, args=(i,), daemon=True)
                   for i in range(self.clients)]
        for t in threads:
            t.start()
        time.sleep(seconds)
        with self.lock:
            in_flight = self.in_flight
        self.server.kill9()
        self.stop.set()
        for t in threads:
            t.join(60)
        return in_flight


def acknowledged_present(server, image_id, expected_sha):
    """Whether an acknowledged image has its row (admin GET) and its exact bytes."""
    row = server.get(f"/api/images/{image_id}", admin=True)
    return row.status == 200 and blob_matches(server, image_id, expected_sha)


def verify_stored(server, acked):
    """After the restart: (acknowledged images missing, all rows, rows whose blob is not
    served with the row's sha256)."""
    with ThreadPoolExecutor(8) as pool:
        present = list(pool.map(lambda kv: acknowledged_present(server, *kv), acked.items()))
        rows = all_images(server)
        served = list(pool.map(lambda row: blob_matches(server, row["id"], row["sha256"]), rows))
    return present.count(False), rows, served.count(False)


def scenario_a(server, out):
    burst = Burst(server, dataset_labels(server))
    in_flight = burst.run_then_kill()
    server.start()
    missing, rows, orphans = verify_stored(server, burst.acked)
    out.num(f"requests={histogram(burst.statuses)} in_flight_at_kill={in_flight} "
            f"acknowledged={len(burst.acked)} rows={len(rows)} missing={missing} "
            f"rows_without_blob={orphans}")
    out.note_odd("burst upload", [r for r in burst.statuses if r.status is not None], {200, 201})
    out.check(len(burst.acked) > 0, "no upload was acknowledged before the kill")
    out.check(not burst.bad_acks, f"{len(burst.bad_acks)} acknowledgements with a wrong sha256")
    out.check(missing == 0, f"{missing} acknowledged images missing or with other bytes after restart")
    out.check(orphans == 0, f"{orphans} image rows whose blob is missing or corrupt")


# ---------------------------------------------------------------------------------------------
# (b) 1,000 stalled connections
# ---------------------------------------------------------------------------------------------

STALL_KINDS = ("silent", "partial-head", "partial-body")
# Product predictions (scenario f, scripts/hostile_product.py): the title cut mid-word, or
# the title then an image cut mid-file.
PRODUCT_STALL_KINDS = ("product-title", "product-image")


def stall_payload(kind, i):
    """What a stalled connection of `kind` sends before going silent."""
    if kind == "silent":
        return b""
    if kind == "partial-head":
        if i % 2:
            return b"GET /api/data"
        return b"POST /api/datasets/default/images HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty"
    boundary = "hostile-stall"
    if kind.startswith("product-"):
        head = ("POST /api/predict?task=product HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                f"Content-Length: {256 * 1024}\r\n\r\n").encode()
        title = f'--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\n'.encode()
        if kind == "product-title":
            return head + title + b"a small brown ani"
        return (head + title + b"a small brown animal\r\n"
                + f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="s.png"\r\n'
                  f"Content-Type: image/png\r\n\r\n".encode()
                + PNG_SIGNATURE + os.urandom(32 * 1024))
    head = (f"POST /api/datasets/{DATASET}/images HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {1024 * 1024}\r\n\r\n").encode()
    part = (f'--{boundary}\r\nContent-Disposition: form-data; name="label"\r\n\r\nanimals\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="s.png"\r\n'
            f"Content-Type: image/png\r\n\r\n").encode()
    return head + part + PNG_SIGNATURE + os.urandom(32 * 1024)


class Stalled:
    """One stalled connection: when it opened, when and how the server closed it."""

    def __init__(self, kind):
        self.kind, self.opened, self.closed, self.how, self.answer = kind, None, None, None, b""


async def hold_stalled(port, conn, i, connect_slots, payload=None):
    """Open, send the partial payload (`payload(kind, i)`, by default `stall_payload`), then
    read until the server closes (EOF or reset). Cancelled at the deadline, a connection stays
    `closed=None` (still open)."""
    try:
        async with connect_slots:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    except (OSError, asyncio.TimeoutError) as e:
        conn.how = f"connect failed: {type(e).__name__}"
        return
    conn.opened = time.monotonic()
    try:
        writer.write((payload or stall_payload)(conn.kind, i))
        await writer.drain()
        while True:
            data = await reader.read(65536)
            if not data:
                conn.how = "eof"
                break
            conn.answer += data[:64] if not conn.answer else b""
    except OSError:
        conn.how = "reset"
    finally:
        if conn.how is not None:
            conn.closed = time.monotonic()
        writer.transport.abort()


class HealthProbe(threading.Thread):
    """GET /health every 200 ms on a fresh connection, from its own thread (blocking sockets,
    so the event loop holding the stalled sockets cannot skew the latencies)."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.stop, self.samples = port, threading.Event(), []

    def run(self):
        start = time.perf_counter()
        while not self.stop.is_set():
            t0 = time.perf_counter()
            r = request(self.port, "GET", "/health", timeout=5)
            self.samples.append((r, time.perf_counter() - t0, t0 - start))
            self.stop.wait(max(0.0, 0.2 - (time.perf_counter() - t0)))


async def stall_all(port, n, kinds=STALL_KINDS, payload=None):
    conns = [Stalled(kinds[i % len(kinds)]) for i in range(n)]
    slots = asyncio.Semaphore(64)
    tasks = [asyncio.create_task(hold_stalled(port, c, i, slots, payload))
             for i, c in enumerate(conns)]
    while any(c.opened is None and c.how is None for c in conns):
        await asyncio.sleep(0.05)
    last_open = max((c.opened for c in conns if c.opened), default=time.monotonic())
    deadline = last_open + STALL_DEADLINE_S
    while time.monotonic() < deadline and not all(t.done() for t in tasks):
        await asyncio.sleep(0.1)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return conns


def still_open_at_deadline(c):
    return c.opened is not None and (c.closed is None or c.closed - c.opened > STALL_DEADLINE_S)


def scenario_b(server, out, n=1000):
    probe = HealthProbe(server.port)
    probe.start()
    conns = asyncio.run(stall_all(server.port, n))
    probe.stop.set()
    probe.join()
    late = [c for c in conns if still_open_at_deadline(c)]
    failed = [c for c in conns if c.opened is None]
    by_kind = ",".join(f"{k}:{sum(1 for c in late if c.kind == k)}" for k in STALL_KINDS)
    answers = sorted({c.answer.split(b"\r\n")[0].decode("latin1") for c in conns if c.answer})
    lat = sorted(t for _, t, _ in probe.samples)
    bad = [(r, t, at) for r, t, at in probe.samples if r.status != 200 or t >= HEALTH_LIMIT_S]
    p50 = lat[len(lat) // 2] * 1000 if lat else float("nan")
    out.num(f"open_at_30s={len(late)}/{n} ({by_kind}) connect_failed={len(failed)} "
            f"closed: eof={sum(c.how == 'eof' for c in conns)} reset={sum(c.how == 'reset' for c in conns)} "
            f"answers={answers or 'none'} health: n={len(lat)} p50={p50:.1f}ms "
            f"max={(lat[-1] * 1000 if lat else float('nan')):.1f}ms bad={len(bad)}")
    for r, t, at in bad[:5]:
        out.notes.append(f"health probe sent {at:.1f} s into the scenario: {r.key()} in {t * 1000:.0f} ms")
    out.note_odd("health", [r for r, _, _ in bad], {200})
    out.check(not late, f"{len(late)} stalled connections still open {STALL_DEADLINE_S:.0f} s after opening")
    out.check(not failed, f"{len(failed)} connections could not be opened")
    out.check(lat and not bad, f"{len(bad)} of {len(lat)} health probes not 200 in "
                               f"< {HEALTH_LIMIT_S * 1000:.0f} ms")


# ---------------------------------------------------------------------------------------------
# (c) 100 concurrent decode bombs on upload and predict
# ---------------------------------------------------------------------------------------------

def wait_run(server, run_id, timeout=300):
    """Poll a training run until it ends; returns it."""
    deadline = time.time() + timeout
    while True:
        run = server.get_json(f"/api/train/{run_id}")
        if run["status"] not in ("queued", "running"):
            return run
        if time.time() > deadline or not server.alive():
            raise RuntimeError(f"training run {run_id} did not finish (status {run['status']})")
        time.sleep(0.5)


def train_champion(server, task="classify", params=None, timeout=300):
    """Train a quick first model of `task` (by default 2 epochs, 1 view) and make sure it is
    the champion; returns its manifest."""
    params = params or {"epochs": 2, "views": 1}
    r = server.post_json("/api/train", {"dataset_id": DATASET, "task": task, "params": params})
    if r.status != 202:
        raise RuntimeError(f"POST /api/train ({task}) answered {r.key()}: {r.snippet()}")
    run = wait_run(server, r.json()["id"], timeout)
    if run["status"] != "succeeded":
        raise RuntimeError(f"training run {run['id']} {run['status']}: {run.get('error')}")
    if server.get(f"/api/models/current?task={task}").status != 200:
        p = server.post_json(f"/api/models/{run['model_id']}/promote", {})
        if p.status != 200:
            raise RuntimeError(f"promote {run['model_id']}: {p.key()} {p.snippet()}")
    current = server.get(f"/api/models/current?task={task}")
    if current.status != 200:
        raise RuntimeError(f"no {task} champion after training and promotion")
    return current.json()


def bomb_requests(count, label):
    """`count` distinct bombs: the first half uploads (anonymous), the rest predictions."""
    log(f"building {count} decode bombs ({BOMB_SIDE}x{BOMB_SIDE})")
    factory = BombFactory()
    uploads = count // 2
    reqs = [upload_request(label, [(f"bomb-{i}.png", factory.make(i))], False) for i in range(uploads)]
    reqs += [predict_request(factory.make(i)) for i in range(uploads, count)]
    return reqs, uploads


def bomb_status_ok(r):
    return r.status is not None and (200 <= r.status < 300 or r.status in BOMB_OK_STATUSES)


def scenario_c(server, out, count):
    t0 = time.time()
    train_champion(server)
    log(f"champion model ready after {time.time() - t0:.0f} s")
    reqs, uploads = bomb_requests(count, dataset_labels(server)[0])
    server.reset_peak()
    before = (proc_status_kb(server.proc.pid, "VmRSS") or 0) // 1024
    t0 = time.time()
    resps = fire_together(server.port, reqs, timeout=240)
    took = time.time() - t0
    time.sleep(0.3)
    peak = server.peak_rss_mb()
    alive = server.alive()
    out.num(f"bombs={count} upload={histogram(resps[:uploads])} "
            f"predict={histogram(resps[uploads:])} rss_before={before}MB peak_rss={peak}MB alive_after={alive} "
            f"answered_in={took:.1f}s")
    out.note_odd("bomb", resps, {s for s in range(200, 300)} | BOMB_OK_STATUSES)
    bad = [r for r in resps if not bomb_status_ok(r)]
    out.check(not bad, f"{len(bad)} answers neither 2xx/413/422/429/503 (other 5xx or dropped)")
    out.check(peak * 1024 * 1024 < BOMB_RSS_LIMIT_BYTES, f"peak RSS {peak} MB >= 2048 MB")
    out.check(alive, "the api died")
    if not alive:
        return
    # The files a browser downloads, 20 clients each, all at once right after the bombs: the
    # shared backbone and the champion's NNEF head. Every one gets the whole file, byte for
    # byte the one the champion's manifest names.
    m = server.get_json("/api/models/current?task=classify")
    q, head = m["backbone"]["int8"], m["nnef"]
    reqs = [("GET", f"/api/backbones/{q['sha256']}.q8", None, None)] * 20
    reqs += [("GET", f"/api/models/{m['model_id']}/{head['file']}", None, None)] * 20
    got = fire_together(server.port, reqs)
    whole = [r for r in got[:20] if r.status == 200 and sha256(r.body) == q["sha256"]]
    heads = [r for r in got[20:] if r.status == 200 and sha256(r.body) == head["sha256"]]
    out.num(f"download_burst={histogram(got)} backbone_intact={len(whole)}/20 "
            f"nnef_head_intact={len(heads)}/20")
    out.check(len(whole) == 20, f"{20 - len(whole)} of 20 concurrent backbone downloads not intact")
    out.check(len(heads) == 20, f"{20 - len(heads)} of 20 concurrent NNEF head downloads not intact")
    # The same real photo predicted by 20 clients at once (side by side, one core each), then
    # by one client alone, twice (a lone prediction gets every core): every answer 200 with the
    # same labels and scores (to 1e-5): how many threads a prediction gets changes no answer.
    src = os.path.join(ROOT, "assets/datasets/tuxpaint-photos")
    label = sorted(d for d in os.listdir(src) if os.path.isdir(os.path.join(src, d)))[0]
    name = sorted(p for p in os.listdir(os.path.join(src, label)) if p.endswith(".png"))[0]
    with open(os.path.join(src, label, name), "rb") as f:
        req = predict_request(f.read())
    burst = fire_together(server.port, [req] * 20, timeout=240)
    alone = [fire_together(server.port, [req], timeout=60)[0] for _ in range(2)]
    answers = [r for r in burst + alone if r.status == 200]
    preds = [[(p["label"], p["score"]) for p in r.json()["predictions"]] for r in answers]
    same = all(
        [l for l, _ in p] == [l for l, _ in preds[0]]
        and all(abs(a - b) <= 1e-5 for (_, a), (_, b) in zip(p, preds[0]))
        for p in preds
    )
    out.num(f"predict_burst={histogram(burst)} alone={histogram(alone)} same_answer={same}")
    out.check(len(answers) == 22, f"{22 - len(answers)} of 22 real predictions not 200")
    out.check(same, "concurrent and lone predictions of one photo disagree")
    gate_under_load(server, out)


def gate_under_load(server, out, timeout=300):
    """Two retrains queued at once, read by 20 clients polling the registry while they train
    and register: every read 200 and whole, exactly one champion after, and every version's
    gate consistent with the evidence its metrics.json publishes (n = its examples, the
    candidate's figure = the mean of its per-example values, a verdict of the three)."""
    body = json.dumps({"dataset_id": DATASET, "params": {"epochs": 2, "views": 1}}).encode()
    post = ("POST", "/api/train", body, {"Content-Type": "application/json", **ADMIN})
    started = fire_together(server.port, [post] * 2)
    runs = [r.json()["id"] for r in started if r.status == 202]
    out.check(len(runs) == 2, f"two concurrent retrains answered {histogram(started)}")
    reads, deadline = [], time.time() + timeout
    while time.time() < deadline:
        reads += fire_together(server.port, [("GET", "/api/models?limit=50", None, None)] * 20)
        states = [server.get_json(f"/api/train/{r}")["status"] for r in runs]
        if all(st not in ("queued", "running") for st in states):
            break
    whole = [r for r in reads if r.status == 200 and isinstance(r.json_or_none(), list)]
    out.check(len(whole) == len(reads), f"{len(reads) - len(whole)} registry reads not 200 + JSON")
    out.check(all(st == "succeeded" for st in states), f"retrains ended {states}")
    models = server.get_json("/api/models?task=classify&limit=50")
    champions = [m["id"] for m in models if m["stage"] == "champion"]
    out.check(len(champions) == 1, f"{len(champions)} champions after concurrent retrains")
    verdicts, consistent = [], 0
    for m in models:
        gate = m["gate"]
        verdicts.append(gate.get("verdict"))
        ev = server.get_json(f"/api/models/{m['id']}/metrics.json")["evidence"]
        values = ev["candidate"]["values"]
        consistent += (gate.get("n") == len(ev["items"]) == len(values)
                       and abs(gate["candidate"] - sum(values) / len(values)) < 1e-12
                       and gate.get("verdict") in ("promote", "inconclusive", "reject")
                       and gate["promote"] == (gate.get("verdict") == "promote"))
    out.num(f"retrains={histogram(started)} registry_reads={histogram(reads)} "
            f"champions={len(champions)} verdicts={sorted(map(str, verdicts))} gate_consistent={consistent}/{len(models)}")
    out.check(consistent == len(models), f"{len(models) - consistent} gates disagree with their evidence")


# ---------------------------------------------------------------------------------------------
# Orchestration
# ---------------------------------------------------------------------------------------------

class Suite:
    """Runs scenarios on backends, prints a row per scenario and the summary table."""

    def __init__(self, binary, work, seed_dir, only, bombs):
        self.binary, self.work, self.seed_dir = binary, work, seed_dir
        self.only, self.bombs = only, bombs
        self.rows = []

    def new_server(self, backend, tag, **settings):
        data = os.path.join(self.work, f"{backend.name}-{tag}")
        os.makedirs(data)
        env = backend.fresh_env(data)
        env.update(SEED_DIR=self.seed_dir, **{k: str(v) for k, v in settings.items()})
        return Server(self.binary, env, os.path.join(self.work, f"{backend.name}-{tag}.log"))

    def run_scenario(self, name, backend, server, fn, *args):
        """Run one scenario function, turn exceptions and watchdog kills into failures, print
        its row (and the server log tail when it failed)."""
        out = Outcome()
        t0 = time.time()
        try:
            fn(server, out, *args)
        except Exception as e:  # noqa: BLE001 - an exception is a failed scenario
            out.failures.append(f"{type(e).__name__}: {e}")
        server.collect_watchdog()
        if server.killed_by_watchdog:
            out.failures.append("api killed by the watchdog (RSS > 6 GB)")
            server.killed_by_watchdog = False
        row = (name, backend.name, "FAIL" if out.failures else "PASS", " ".join(out.numbers),
               out.failures, out.notes, time.time() - t0)
        self.rows.append(row)
        print_row(row)
        if out.failures:
            print(f"    server log {server.log_path}, last lines:\n{server.tail()}", flush=True)

    def start_or_fail(self, name, backend, server):
        try:
            server.start()
            return True
        except Exception as e:  # noqa: BLE001
            row = (name, backend.name, "FAIL", "", [f"server start: {e}"], [], 0.0)
            self.rows.append(row)
            print_row(row)
            print(f"    server log {server.log_path}, last lines:\n{server.tail()}", flush=True)
            server.stop()
            return False

    def shared(self, backend):
        """(e), (d), (a) on one server: (e) first (needs no queued run), (a) last (kills it)."""
        wanted = [s for s in "eda" if s in self.only]
        if not wanted:
            return
        server = self.new_server(backend, "shared", WORKERS=0, TRAIN_ON_START="false",
                                 AUTO_RETRAIN_AFTER=10)
        if not self.start_or_fail("+".join(wanted), backend, server):
            return
        scenarios = {"e": ("e approvals", scenario_e), "d": ("d identical", scenario_d),
                     "a": ("a kill -9", scenario_a)}
        for s in wanted:
            if not server.alive():
                server.start()
            self.run_scenario(scenarios[s][0], backend, server, scenarios[s][1])
        server.stop()

    def stalled(self, backend):
        server = self.new_server(backend, "stalled", WORKERS=0, TRAIN_ON_START="false")
        if self.start_or_fail("b stalled", backend, server):
            self.run_scenario("b stalled", backend, server, scenario_b)
            server.stop()

    def bombs_scenario(self, backend):
        server = self.new_server(backend, "bombs", WORKERS=1, TRAIN_ON_START="false",
                                 AUTO_RETRAIN_AFTER=0, PREDICT_RATE_PER_MIN=1000000,
                                 PREDICT_BURST=1000000)
        if self.start_or_fail("c bombs", backend, server):
            self.run_scenario("c bombs", backend, server, scenario_c, self.bombs)
            server.stop()

    def products(self, backend):
        from hostile_product import scenario_f
        server = self.new_server(backend, "products", WORKERS=1, TRAIN_ON_START="false",
                                 AUTO_RETRAIN_AFTER=0, PREDICT_RATE_PER_MIN=1000000,
                                 PREDICT_BURST=1000000)
        if self.start_or_fail("f products", backend, server):
            self.run_scenario("f products", backend, server, scenario_f)
            server.stop()

    def detection(self, backend):
        from hostile_detect import scenario_g
        server = self.new_server(backend, "detection", WORKERS=0, TRAIN_ON_START="false",
                                 AUTO_RETRAIN_AFTER=0)
        if self.start_or_fail("g boxes", backend, server):
            self.run_scenario("g boxes", backend, server, scenario_g)
            server.stop()

    def run(self, backend):
        log(f"backend {backend.name}")
        self.shared(backend)
        if "b" in self.only:
            self.stalled(backend)
        if "c" in self.only:
            self.bombs_scenario(backend)
        if "f" in self.only:
            self.products(backend)
        if "g" in self.only:
            self.detection(backend)


HEADER = f"{'scenario':<14} {'backend':<9} {'result':<6} details"


def print_row(row):
    name, backend, result, numbers, failures, notes, secs = row
    print(f"{name:<14} {backend:<9} {result:<6} {numbers} ({secs:.0f}s)", flush=True)
    for f in failures:
        print(f"{'':<31}! {f}", flush=True)
    for n in notes:
        print(f"{'':<31}~ {n}", flush=True)


def print_summary(rows):
    print("\n== hostile suite summary", flush=True)
    print(HEADER)
    print("-" * 100)
    for name, backend, result, numbers, failures, _, _ in rows:
        print(f"{name:<14} {backend:<9} {result:<6} {numbers}")
        for f in failures:
            print(f"{'':<31}! {f}")
    failed = sum(1 for r in rows if r[2] == "FAIL")
    print(f"-> {len(rows) - failed} passed, {failed} failed", flush=True)


def make_seed(work):
    """A small seed dataset: the first SEED_PER_LABEL photos of every bundled class."""
    src = os.path.join(ROOT, "assets/datasets/tuxpaint-photos")
    if not os.path.isdir(src):
        raise SystemExit(f"{src} is missing: run scripts/fetch-assets.sh")
    seed = os.path.join(work, "seed")
    # With each photo its caption (NAME.txt), the title of the product scenario's items.
    for label in sorted(os.listdir(src)):
        if not os.path.isdir(os.path.join(src, label)):
            continue
        photos = sorted(p for p in os.listdir(os.path.join(src, label)) if p.endswith(".png"))
        os.makedirs(os.path.join(seed, label))
        for p in photos[:SEED_PER_LABEL]:
            for name in (p, p[:-4] + ".txt"):
                if os.path.exists(os.path.join(src, label, name)):
                    shutil.copy(os.path.join(src, label, name), os.path.join(seed, label, name))
    return seed


def raise_open_files():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192 if hard == resource.RLIM_INFINITY else min(8192, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default="a,b,c,d,e,f,g", help="scenarios to run, e.g. a,d")
    p.add_argument("--backend", default="both", choices=["sqlite", "postgres", "both"])
    p.add_argument("--bin", default=os.environ.get("API_BIN") or os.path.join(
        os.environ.get("CARGO_TARGET_DIR", "target"), "release", "api"))
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = p.parse_args()
    args.only = {s.strip() for s in args.only.split(",") if s.strip()}
    if not args.only <= set("abcdefg"):
        p.error("--only takes letters among a,b,c,d,e,f,g")
    return args


def backends_for(choice):
    have_pg = bool(os.environ.get("EDGEML_TEST_POSTGRES_URL") and os.environ.get("EDGEML_TEST_S3_ENDPOINT"))
    if choice == "postgres" and not have_pg:
        raise SystemExit("EDGEML_TEST_POSTGRES_URL / EDGEML_TEST_S3_ENDPOINT are not set "
                         "(source scripts/test-services.sh first)")
    if choice == "both" and not have_pg:
        log("EDGEML_TEST_POSTGRES_URL / EDGEML_TEST_S3_ENDPOINT not set: SQLite backend only")
        return ["sqlite"]
    if have_pg and not shutil.which("psql"):
        raise SystemExit("psql is needed to create the PostgreSQL databases")
    return ["sqlite", "postgres"] if choice == "both" else [choice]


def main():
    args = parse_args()
    binary = os.path.abspath(os.path.join(ROOT, args.bin))
    if not os.access(binary, os.X_OK):
        raise SystemExit(f"api binary {binary} not found (cargo build --release -p api, or set API_BIN)")
    names = backends_for(args.backend)
    log(f"binary {binary}, open-file limit {raise_open_files()}, scenarios {','.join(sorted(args.only))}")
    work = tempfile.mkdtemp(prefix="edgeml-hostile.")
    bombs = int(os.environ.get("HOSTILE_BOMBS", "100"))
    suite = Suite(binary, work, make_seed(work), args.only, bombs)
    print(HEADER, flush=True)
    started = time.time()
    backends = [Backend(n) for n in names]
    try:
        for b in backends:
            suite.run(b)
    finally:
        kill_live_servers()
        for b in backends:
            b.cleanup()
    print_summary(suite.rows)
    log(f"suite took {time.time() - started:.0f} s")
    failed = any(r[2] == "FAIL" for r in suite.rows)
    if failed or args.keep:
        log(f"scratch folder (server logs) kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        sys.exit(main())
    finally:
        kill_live_servers()
