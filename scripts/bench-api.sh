#!/usr/bin/env bash
# Benchmark (not a test): the api's POST /api/predict and image uploads against a FastAPI +
# onnxruntime peer (scripts/bench_api_peer.py) doing the same work, same model, same machine,
# same run, loaded with wrk over loopback.
#
#   scripts/bench-api.sh        # prints a markdown table; paste it into BENCHMARKS.md
#
# Steps: venv for the peer ($BENCH_API_VENV, from scripts/requirements-bench-api.txt), wrk from
# apt if missing, `cargo build --release -p api` (skip with BENCH_API_NO_BUILD=1), the api on a
# free port with a fresh data dir (it imports the bundled photos and trains its first model),
# the champion's backbone + head + manifest downloaded and served by the peer, a parity check (same
# top-1 and scores within 1e-3 on 10 photos), then per endpoint and server: a warm-up, a
# throughput run (-t2 -c8) and a latency run (-t1 -c1).
#
# Uploads: every request stores new bytes. The Lua script sends the bundled photos (all 299,
# unchanged pixels and compression) with a fresh PNG tEXt chunk inserted after IHDR
# ("bench" = run-thread-counter, with its CRC), so no request is a duplicate on either server
# (counted: the run fails on any duplicate or non-2xx answer). Both servers decode the whole
# image, hash, write the blob and insert a row per request.
# Then the retrain turnaround (scripts/bench_retrain.py, a separate api): 2,000 approved images,
# 10 new approvals, time to the new champion with and without the backbone feature cache.
# Honesty checks printed with the table: CPU used by the server, by wrk and by anything else
# during each run (a warning when other processes used the CPU), and rows stored per server.
# Knobs: BENCH_API_DURATION (default 20 s, throughput runs), BENCH_API_LAT_DURATION (10 s),
# BENCH_API_WARMUP (5 s), BENCH_API_CONNS (8), BENCH_API_PEER_THREADS (2, onnxruntime),
# BENCH_API_CLIENTS (128 client addresses the load comes from).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${BENCH_API_VENV:-${HOME:-/root}/.cache/edgeml-tools/bench-api-venv}
DUR=${BENCH_API_DURATION:-20}
LAT_DUR=${BENCH_API_LAT_DURATION:-10}
WARM=${BENCH_API_WARMUP:-5}
CONNS=${BENCH_API_CONNS:-8}
PEER_THREADS=${BENCH_API_PEER_THREADS:-2}
DATA=assets/datasets/tuxpaint-photos
TOKEN=bench-admin-token-$RANDOM$RANDOM$RANDOM
start_s=$(date +%s)

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools -----------------------------------------------------------------------------------
scripts/fetch-assets.sh
if ! command -v wrk >/dev/null; then
  echo "bench-api: installing wrk"
  apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null; }
fi
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import fastapi, uvicorn, multipart, onnxruntime, PIL, numpy, uvloop, httptools' 2>/dev/null; then
  echo "bench-api: installing the FastAPI peer into $VENV"
  python3 -m venv "$VENV" 2>/dev/null || { apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$VENV"; }
  "$VENV/bin/pip" install -q --disable-pip-version-check -r scripts/requirements-bench-api.txt
fi
PY="$VENV/bin/python"
API_BIN="${CARGO_TARGET_DIR:-target}/release/api"
if [ "${BENCH_API_NO_BUILD:-0}" != 1 ] || [ ! -x "$API_BIN" ]; then
  cargo build --release -p api
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() { # url seconds
  for _ in $(seq 1 "$2"); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = 200 ]; then return 0; fi
    sleep 1
  done
  echo "bench-api: $1 did not answer 200 within $2 s" >&2
  return 1
}

# --- the api -----------------------------------------------------------------------------------
API_PORT=$(free_port)
API=http://127.0.0.1:$API_PORT
mkdir -p "$work/api-data" "$work/peer-data"
# --auto-retrain-after 0: with the default (10) the upload runs would queue retraining runs
# that take both cores in the middle of the timing. The load comes from ordinary (non-admin)
# clients behind a trusted proxy (wrk sends X-Forwarded-For, cycling over $CLIENTS client
# addresses), so every guard runs as in production: the rate quotas are raised out of the way
# (these clients send ~30,000 uploads a minute) but checked on every request; the caps on
# images waiting for review (1,000 per client, 100,000 in total), the in-flight cap, deadlines,
# body and decode budgets keep their defaults.
CLIENTS=${BENCH_API_CLIENTS:-128}
"$API_BIN" --data-dir "$work/api-data" --listen "127.0.0.1:$API_PORT" \
  --admin-token "$TOKEN" --trusted-proxies 127.0.0.1 \
  --upload-rate-per-min 100000000 --upload-burst 1000000 \
  --upload-mb-per-hour 100000000 --upload-files-per-hour 100000000 \
  --predict-rate-per-min 100000000 --predict-burst 1000000 \
  --auto-retrain-after 0 >"$work/api.log" 2>&1 &
API_PID=$!
pids+=($API_PID)
echo "bench-api: api on $API, training its first model (about 1-2 min)"
t0=$(date +%s)
wait_http "$API/api/models/current" 600 || { tail -n 30 "$work/api.log"; exit 1; }
echo "bench-api: first model ready after $(($(date +%s) - t0)) s"
curl -sf "$API/api/models/current" >"$work/manifest.json"
MODEL_ID=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["model_id"])' "$work/manifest.json")
HEAD_FILE=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["onnx"]["file"])' "$work/manifest.json")
BACKBONE_SHA=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["backbone"]["onnx"]["sha256"])' "$work/manifest.json")
curl -sf -o "$work/head.onnx" "$API/api/models/$MODEL_ID/$HEAD_FILE"
curl -sf -o "$work/backbone.onnx" "$API/api/backbones/$BACKBONE_SHA.onnx"

# --- the peer ----------------------------------------------------------------------------------
PEER_PORT=$(free_port)
PEER=http://127.0.0.1:$PEER_PORT
"$PY" scripts/bench_api_peer.py --manifest "$work/manifest.json" --model "$work/head.onnx" --backbone "$work/backbone.onnx" \
  --data-dir "$work/peer-data" --port "$PEER_PORT" --threads "$PEER_THREADS" \
  --admin-token "$TOKEN" >"$work/peer.log" 2>&1 &
PEER_PID=$!
pids+=($PEER_PID)
wait_http "$PEER/health" 60 || { tail -n 30 "$work/peer.log"; exit 1; }
UVICORN=$("$PY" -c 'import uvicorn, onnxruntime, fastapi; print(f"FastAPI {fastapi.__version__}, uvicorn {uvicorn.__version__} (uvloop, httptools), onnxruntime {onnxruntime.__version__}")')

# --- request bodies + parity -------------------------------------------------------------------
# predict: 20 photos spread over the sorted list; upload: all photos, shuffled (fixed seed).
# Each body is stored as head (multipart headers + PNG signature and IHDR) and tail (the rest of
# the PNG + closing boundary); the Lua script puts a tEXt chunk between them for uploads.
"$PY" - "$DATA" "$work" "$API" "$PEER" "$TOKEN" <<'PY'
import glob, json, os, random, sys, urllib.request
data, work, api, peer, token = sys.argv[1:]
files = sorted(glob.glob(os.path.join(data, "*", "*.png")))
boundary = "edgemlbench" + "%016x" % random.Random(1).getrandbits(64)

def body(field, path, label=None):
    pre = b""
    if label is not None:
        pre += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"label\"\r\n\r\n{label}\r\n").encode()
    name = os.path.basename(path)
    pre += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode()
    png = open(path, "rb").read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR" and boundary.encode() not in png
    return pre + png[:33], png[33:] + f"\r\n--{boundary}--\r\n".encode()

def write_pool(name, items):
    os.makedirs(os.path.join(work, name))
    for i, (h, t) in enumerate(items):
        open(os.path.join(work, name, f"{i}.head"), "wb").write(h)
        open(os.path.join(work, name, f"{i}.tail"), "wb").write(t)
    return len(items)

predict = [files[i * len(files) // 20] for i in range(20)]
uploads = files[:]
random.Random(42).shuffle(uploads)
n_pred = write_pool("predict", [body("file", p) for p in predict])
n_up = write_pool("upload", [body("files", p, os.path.basename(os.path.dirname(p))) for p in uploads])
open(os.path.join(work, "boundary"), "w").write(boundary)
print(f"bench-api: bodies: {n_pred} predict photos, {n_up} upload photos")

# Parity: same top-1 label and every score within 1e-3, on 10 photos.
worst, agree = 0.0, 0
for p in predict[::2]:
    h, t = body("file", p)
    out = []
    for url in (f"{api}/api/predict?k=7", f"{peer}/predict?k=7"):
        req = urllib.request.Request(url, data=h + t, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        out.append(json.load(urllib.request.urlopen(req, timeout=60)))
    a, b = ({d["label"]: d["score"] for d in o["predictions"]} for o in out)
    diff = max(abs(a[k] - b[k]) for k in a)
    same = out[0]["predictions"][0]["label"] == out[1]["predictions"][0]["label"]
    worst = max(worst, diff)
    agree += same
    if not same or diff > 1e-3:
        sys.exit(f"bench-api: predictions differ on {p}: {out}")
print(f"bench-api: parity on {agree} photos: same top-1, max |score difference| {worst:.1e}")
open(os.path.join(work, "parity"), "w").write(f"{agree} {worst:.1e}")
PY

cat >"$work/bench.lua" <<'LUA'
-- args: mode (static|unique) pool_dir count run_tag boundary clients [authorization]
-- clients: X-Forwarded-For cycles over that many addresses (10.77.x.y), one per request
local bit = require("bit")
local crc_table = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do
    if bit.band(c, 1) == 1 then c = bit.bxor(0xEDB88320, bit.rshift(c, 1)) else c = bit.rshift(c, 1) end
  end
  crc_table[i] = c
end
local function be32(n)
  return string.char(bit.band(bit.rshift(n, 24), 255), bit.band(bit.rshift(n, 16), 255),
                     bit.band(bit.rshift(n, 8), 255), bit.band(n, 255))
end
local function chunk(kind, data)
  local s, c = kind .. data, 0xFFFFFFFF
  for i = 1, #s do
    c = bit.bxor(crc_table[bit.band(bit.bxor(c, s:byte(i)), 255)], bit.rshift(c, 8))
  end
  return be32(#data) .. s .. be32(bit.bnot(c))
end
local function slurp(p)
  local f = assert(io.open(p, "rb")); local s = f:read("*a"); f:close(); return s
end

local counter = 1
local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

local mode, heads, tails, n, tag, next_i, clients = nil, {}, {}, 0, "", 0, 1
function init(args)
  mode, n, tag = args[1], tonumber(args[3]), args[4]
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. args[5]
  clients = tonumber(args[6])
  if args[7] then wrk.headers["Authorization"] = args[7] end
  for i = 0, n - 1 do
    heads[i] = slurp(args[2] .. "/" .. i .. ".head")
    tails[i] = slurp(args[2] .. "/" .. i .. ".tail")
  end
  next_i = (id * 7) % n
  dups, bad = 0, 0
end

function request()
  local i = next_i
  next_i = (next_i + 1) % n
  counter = counter + 1
  local k = (id * 7919 + counter) % clients
  wrk.headers["X-Forwarded-For"] = "10.77." .. math.floor(k / 256) .. "." .. (k % 256)
  if mode == "static" then return wrk.format(nil, nil, nil, heads[i] .. tails[i]) end
  local text = chunk("tEXt", "bench\0" .. tag .. "-" .. id .. "-" .. counter)
  return wrk.format(nil, nil, nil, heads[i] .. text .. tails[i])
end

function response(status, headers, body)
  if status >= 300 then
    bad = bad + 1
  elseif mode == "unique" and body:find('"duplicate":true', 1, true) then
    dups = dups + 1
  end
end

function done(summary, latency, requests)
  local d, b = 0, 0
  for _, t in ipairs(threads) do d = d + t:get("dups"); b = b + t:get("bad") end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "seconds": %.3f, "rps": %.2f, "p50_ms": %.2f, "p99_ms": %.2f, ' ..
    '"non2xx": %d, "socket_errors": %d, "duplicates": %d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3, b,
    e.connect + e.read + e.write + e.timeout, d))
end
LUA

# Other load skews everything on 2 cores: measure how busy the machine is while both servers
# are idle, and say so in the output.
busy_pct() {
  local a1 a2 a3 a4 a5 a6 a7 a8 b1 b2 b3 b4 b5 b6 b7 b8 busy idle
  read -r _ a1 a2 a3 a4 a5 a6 a7 a8 _ </proc/stat; sleep 2
  read -r _ b1 b2 b3 b4 b5 b6 b7 b8 _ </proc/stat
  busy=$(((b1 + b2 + b3 + b6 + b7 + b8) - (a1 + a2 + a3 + a6 + a7 + a8)))
  idle=$(((b4 + b5) - (a4 + a5)))
  echo $((100 * busy / (busy + idle + 1)))
}
BUSY=$(busy_pct)
echo "bench-api: machine busy ${BUSY}% over 2 s before timing (both servers idle)"
[ "$BUSY" -le 10 ] || echo "bench-api: WARNING: something else is using the CPU; these numbers are not reliable" >&2

BOUNDARY=$(cat "$work/boundary")
N_PRED=$(ls "$work/predict" | grep -c '\.head$')
N_UP=$(ls "$work/upload" | grep -c '\.head$')
results="$work/results.jsonl"
: >"$results"
run=0
# Images each server holds (uploads add one per request).
api_rows() { curl -sf "$API/api/datasets/default" | "$PY" -c 'import json,sys; print(sum(l["approved"] + l["pending"] for l in json.load(sys.stdin)["labels"]))'; }
peer_rows() { "$PY" -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from images").fetchone()[0])' "$work/peer-data/peer.db"; }

# CPU accounting per run (clock ticks): the whole machine, the server process, wrk.
machine_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
bench() { # endpoint server pid url mode pool n threads conns seconds record [auth]
  local endpoint=$1 server=$2 pid=$3 url=$4 mode=$5 pool=$6 n=$7 t=$8 c=$9 secs=${10} record=${11} auth=${12:-}
  run=$((run + 1))
  local out m0 p0 m1 p1 w0 w1 tf=$work/time.$run
  m0=$(machine_ticks); p0=$(proc_ticks "$pid"); w0=$(date +%s%N)
  out=$( { TIMEFORMAT='%U %S'; time wrk -t"$t" -c"$c" -d"${secs}s" --timeout 60s -s "$work/bench.lua" "$url" -- \
    "$mode" "$work/$pool" "$n" "r$run" "$BOUNDARY" "$CLIENTS" ${auth:+"$auth"}; } 2>"$tf")
  m1=$(machine_ticks); p1=$(proc_ticks "$pid"); w1=$(date +%s%N)
  local line
  line=$(grep '^RESULT ' <<<"$out" | sed 's/^RESULT //')
  [ -n "$line" ] || { echo "$out" >&2; cat "$tf" >&2; echo "bench-api: wrk gave no result" >&2; exit 1; }
  local what=timed; [ "$record" = 1 ] || what=warm-up
  "$PY" -c '
import json, sys
a = sys.argv
r = json.loads(a[4])
wall, hz = (int(a[9]) - int(a[8])) / 1e9, int(a[10])
server = (int(a[7]) - int(a[6])) / hz / wall
wrk = sum(map(float, open(a[11]).read().split()[-2:])) / wall
machine = (int(a[13]) - int(a[12])) / hz / wall
r.update(endpoint=a[1], server=a[2], conns=int(a[3]), timed=a[5] == "1", server_cores=round(server, 2),
         wrk_cores=round(wrk, 2), other_cores=round(max(0.0, machine - server - wrk), 2))
print(json.dumps(r))' "$endpoint" "$server" "$c" "$line" "$record" "$p0" "$p1" "$w0" "$w1" "$HZ" "$tf" "$m0" "$m1" \
    >>"$results"
  local held=""
  if [ "$endpoint" = upload ]; then held=" (images held now: $([ "$server" = edgeml ] && api_rows || peer_rows))"; fi
  echo "bench-api: $endpoint $server -c$c ${secs}s $what$held: $(tail -n 1 "$results")"
}

for endpoint in predict upload; do
  for server in edgeml peer; do
    if [ "$server" = edgeml ]; then
      base=$API/api; auth=""
      if [ $endpoint = predict ]; then url="$base/predict?k=5"; else url="$base/datasets/default/images"; fi
    else
      base=$PEER; auth="Bearer $TOKEN"
      if [ $endpoint = predict ]; then url="$base/predict?k=5"; else url="$base/upload"; fi
    fi
    if [ $endpoint = predict ]; then mode=static pool=predict n=$N_PRED; else mode=unique pool=upload n=$N_UP; fi
    if [ "$server" = edgeml ]; then pid=$API_PID; else pid=$PEER_PID; fi
    bench $endpoint $server $pid "$url" $mode $pool "$n" 2 "$CONNS" "$WARM" 0 "$auth"
    bench $endpoint $server $pid "$url" $mode $pool "$n" 2 "$CONNS" "$DUR" 1 "$auth"
    bench $endpoint $server $pid "$url" $mode $pool "$n" 1 1 "$LAT_DUR" 1 "$auth"
  done
done

# Stored rows: every upload request must have added one image on each side.
API_ROWS=$(api_rows)
PEER_ROWS=$(peer_rows)

"$PY" - "$results" "$UVICORN" "$PEER_THREADS" "$(cat "$work/parity")" "$API_ROWS" "$PEER_ROWS" "$N_UP" "$(($(date +%s) - start_s))" "$BUSY" <<'PY'
import json, os, platform, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
rows = [r for r in runs if r["timed"]]
peer_desc, threads, parity, api_rows, peer_rows, n_seed, secs, busy = sys.argv[2:]
bad = [r for r in runs if r["non2xx"] or r["socket_errors"] or r["duplicates"]]
sent = {s: sum(r["requests"] for r in runs if r["endpoint"] == "upload" and r["server"] == s) for s in ("edgeml", "peer")}
stored = {"edgeml": int(api_rows) - int(n_seed), "peer": int(peer_rows)}
for s in sent:  # responses wrk counted; requests cut off at a run's end may add a few rows
    if not sent[s] <= stored[s] <= sent[s] + 64:
        bad.append(f"{s}: {stored[s]} new images stored for {sent[s]} upload responses")
names = {"edgeml": "edgeml api (tract; a request running alone gets every core)",
         "peer": f"FastAPI peer (1 uvicorn worker, onnxruntime {threads} threads)"}
paths = {"predict": "predict (k=5)", "upload": "upload (1 PNG, stored)"}
print(f"\nmachine: {os.cpu_count()} cores ({platform.machine()}), servers and wrk share them, "
      f"{busy}% busy before timing; peer: {peer_desc}")
n, worst = parity.split()
print(f"parity before timing: same top-1 on {n} photos, max |score difference| {worst}; "
      f"new images stored by the upload runs: edgeml {stored['edgeml']}, peer {stored['peer']} "
      f"(for {sent['edgeml']} and {sent['peer']} counted 201 answers, none a duplicate)\n")
print("| endpoint | server | connections | req/s | p50 ms | p99 ms | server CPU, cores | "
      "edgeml/peer req/s | edgeml/peer p50 |")
print("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    if r["server"] == "edgeml":
        p = next(q for q in rows if q["server"] == "peer" and q["endpoint"] == r["endpoint"] and q["conns"] == r["conns"])
        ratio = f" {r['rps'] / p['rps']:.2f} | {r['p50_ms'] / p['p50_ms']:.2f} |"
    else:
        ratio = " | |"
    print(f"| {paths[r['endpoint']]} | {names[r['server']]} | {r['conns']} | {r['rps']:.1f} | "
          f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['server_cores']:.2f} |{ratio}")
other = max(r["other_cores"] for r in rows)
print(f"\nwrk used up to {max(r['wrk_cores'] for r in rows):.2f} cores; other processes up to "
      f"{other:.2f} cores during a timed run")
if other > 0.15 or int(busy) > 10:
    print("WARNING: other processes used the CPU during the runs; rerun on an idle machine")
print(f"\ntotal wall time {secs} s")
if bad:
    sys.exit(f"bench-api: errors or duplicates in runs: {bad}")
PY

# --- retrain turnaround ------------------------------------------------------------------------
# A separate api (its own data): N approved images and a first champion, then 10 approvals →
# auto-retrain → new champion, with the backbone feature cache and without it (FEATURE_CACHE=
# false). scripts/bench_retrain.py says how. BENCH_API_RETRAIN=0 skips it (about 10 minutes at
# the default 2,000 images, BENCH_API_RETRAIN_IMAGES).
if [ "${BENCH_API_RETRAIN:-1}" = 1 ]; then
  kill "$API_PID" "$PEER_PID" 2>/dev/null || true
  wait "$API_PID" "$PEER_PID" 2>/dev/null || true
  python3 scripts/bench_retrain.py --api-bin "$API_BIN" --images "${BENCH_API_RETRAIN_IMAGES:-2000}" \
    | tee "$work/retrain.log"
  python3 - "$work/retrain.log" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
def secs(x):
    return f"{x:.1f}" if x is not None else "not promoted"
def cache(x):
    c = x["feature_cache"]
    return f"{c['computed']} computed, {c['hits']} cached; backbone {x['features_secs']:.1f} s"
print(f"\n| retrain, {r['images']:,} approved images | time | feature views | ")
print("|---|---|---|")
print(f"| first training (cold, fills the cache) | {r['cold']['seconds']:.1f} s | {cache(r['cold'])} |")
for name, what in (("uncached", "without the cache"), ("cached", "with the cache")):
    x = r[name]
    print(f"| {r['new']} approvals → new champion, {what} | {secs(x['to_champion_secs'])} s "
          f"(candidate registered {x['to_candidate_secs']:.1f} s) | {cache(x)} |")
u, c = r["uncached"]["to_candidate_secs"], r["cached"]["to_candidate_secs"]
print(f"\nthe cache makes the retrain {u / c:.1f}x faster ({u:.1f} → {c:.1f} s to the registered candidate)")
PY
fi
