// Inference worker: the wasm-infer module (tract, compiled to wasm) runs here so the page never
// freezes. The champion's manifest is fetched network-first (cached copy when offline); its
// ONNX file is content-addressed, so it is kept in Cache Storage and fetched once; older model
// versions are evicted.
import init, { Session, TextSession } from '/pkg/wasm_infer.js';

const MODELS = 'edgeml-models';
const META = 'edgeml-meta';
const CURRENT = '/api/models/current?task=classify';
const CURRENT_RANK = '/api/models/current?task=rank';
const RANK = 'edgeml-rank';
const ready = init({ module_or_path: '/pkg/wasm_infer_bg.wasm' });
let session = null;
let loadedId = null;

async function manifestText(url = CURRENT) {
  const meta = await caches.open(META);
  try {
    const r = await fetch(url, { cache: 'no-cache' });
    if (r.ok) {
      await meta.put(url, r.clone());
      return await r.text();
    }
    if (r.status === 404) throw new Error('no model has been promoted yet');
    throw new Error(`model manifest: HTTP ${r.status}`);
  } catch (e) {
    const cached = await meta.match(url);
    if (cached) return cached.text();
    throw e;
  }
}

// A ranking model's file, from its own cache (immutable: the URL names the model version).
async function rankFile(url) {
  const cache = await caches.open(RANK);
  const hit = await cache.match(url);
  if (hit) return hit;
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  await cache.put(url, r.clone());
  return r;
}

// Images contributed from this browser, embedded here by the ranking image encoder so that
// search finds them before the next retrain; kept in IndexedDB for the ranking model that
// embedded them (dropped when another model arrives: its gallery has the approved ones).
function localDb() {
  return new Promise((ok, fail) => {
    const r = indexedDB.open('edgeml-local', 1);
    r.onupgradeneeded = () => r.result.createObjectStore('vectors', { keyPath: 'id' });
    r.onsuccess = () => ok(r.result);
    r.onerror = () => fail(r.error);
  });
}

async function localTx(mode, work) {
  const db = await localDb();
  try {
    return await new Promise((ok, fail) => {
      const t = db.transaction('vectors', mode);
      const q = work(t.objectStore('vectors'));
      t.oncomplete = () => ok(q.result);
      t.onerror = () => fail(t.error);
    });
  } finally {
    db.close();
  }
}

const withThumb = (e) => ({ ...e, thumb: URL.createObjectURL(e.blob) });

async function imageSession() {
  if (!rank.images) {
    const text = await manifestText(CURRENT_RANK);
    const onnx = await rankFile(`/api/models/${rank.id}/image.onnx`).then((r) => r.arrayBuffer());
    rank.images = new Session(new Uint8Array(onnx), text); // verifies sha256
  }
  return rank.images;
}

async function addLocal(msg) {
  const r = await loadRank();
  const session = await imageSession();
  const vector = Float32Array.from(session.embedImage(new Uint8Array(await msg.blob.arrayBuffer())));
  const entry = { id: msg.id, model_id: r.id, label: msg.label, caption: msg.caption, vector, blob: msg.blob };
  await localTx('readwrite', (s) => s.put(entry));
  r.local = r.local.filter((e) => e.id !== entry.id).concat([withThumb(entry)]);
}

// The search index: the ranking champion's text encoder and its gallery (int8 vectors).
let rank = null;
async function loadRank() {
  await ready;
  const text = await manifestText(CURRENT_RANK);
  const manifest = JSON.parse(text);
  const id = manifest.model_id;
  if (rank && rank.id === id) return rank;
  const base = `/api/models/${id}`;
  const [onnx, bin, gallery] = await Promise.all([
    rankFile(`${base}/text.onnx`).then((r) => r.arrayBuffer()),
    rankFile(`${base}/gallery.bin`).then((r) => r.arrayBuffer()),
    rankFile(`${base}/gallery.json`).then((r) => r.json()),
  ]);
  const encoder = new TextSession(new Uint8Array(onnx), text); // verifies sha256
  const vectors = new Int8Array(bin);
  if (vectors.length !== gallery.count * gallery.dim) throw new Error('gallery size does not match its index');
  // Other ranking versions are not needed any more.
  const cache = await caches.open(RANK);
  for (const req of await cache.keys()) if (!new URL(req.url).pathname.startsWith(`${base}/`)) await cache.delete(req);
  const inGallery = new Set(gallery.items.map((it) => it.id));
  const local = [];
  for (const e of await localTx('readonly', (s) => s.getAll())) {
    if (e.model_id === id && !inGallery.has(e.id)) local.push(withThumb(e));
    else await localTx('readwrite', (s) => s.delete(e.id));
  }
  rank = { id, encoder, vectors, gallery, local };
  return rank;
}

// Top-k gallery images for a text: one embedding, then int8 dot products over the gallery.
function search(query, k) {
  const t0 = performance.now();
  const r = rankVector(rank.encoder.embed(query), k);
  return { results: r, ms: performance.now() - t0 };
}

// "More like this": the gallery image's own vector is the query (image → image).
function similar(id, k) {
  const t0 = performance.now();
  const { dim, scale, items } = rank.gallery;
  const i = items.findIndex((it) => it.id === id);
  const mine = rank.local.find((e) => e.id === id);
  if (i < 0 && !mine) throw new Error(`image ${id} is not in the gallery`);
  const q = i >= 0 ? Float32Array.from(rank.vectors.subarray(i * dim, (i + 1) * dim), (x) => x / scale) : mine.vector;
  const caption = i >= 0 ? (items[i].captions[0] || items[i].label) : (mine.caption || mine.label);
  return { results: rankVector(q, k), ms: performance.now() - t0, caption };
}

// Image → text: the dropped image through the ranking image encoder (downloaded on first
// use), against every gallery caption embedded once by the text encoder.
async function captionsFor(bytes, k) {
  await imageSession();
  const { dim, items } = rank.gallery;
  if (!rank.captions) {
    const texts = [];
    for (const it of items) for (const c of it.captions) texts.push({ caption: c, label: it.label, id: it.id });
    const vecs = new Float32Array(texts.length * dim);
    texts.forEach((t, i) => vecs.set(rank.encoder.embed(t.caption), i * dim));
    rank.captions = { texts, vecs };
  }
  const t0 = performance.now();
  const q = rank.images.embedImage(bytes);
  const { texts, vecs } = rank.captions;
  const scored = texts.map((t, i) => {
    let s = 0;
    for (let j = 0; j < dim; j++) s += vecs[i * dim + j] * q[j];
    return { ...t, score: s };
  }).sort((a, b) => b.score - a.score);
  const seen = new Set();
  const results = [];
  for (const t of scored) {
    if (seen.has(t.caption)) continue;
    seen.add(t.caption);
    results.push(t);
    if (results.length === k) break;
  }
  return { results, ms: performance.now() - t0 };
}

function rankVector(q, k) {
  const { dim, count, scale, items } = rank.gallery;
  const v = rank.vectors;
  const scores = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    let s = 0;
    const o = i * dim;
    for (let j = 0; j < dim; j++) s += v[o + j] * q[j];
    scores[i] = s / scale;
  }
  const order = Array.from(scores.keys()).sort((a, b) => scores[b] - scores[a]).slice(0, k);
  const found = order.map((i) => ({
    id: items[i].id, label: items[i].label, caption: items[i].captions[0] || '', score: scores[i],
  }));
  for (const e of rank.local) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += e.vector[j] * q[j];
    found.push({ id: e.id, label: e.label, caption: e.caption, score: s, local: true, thumb: e.thumb });
  }
  return found.sort((a, b) => b.score - a.score).slice(0, k);
}

async function modelBytes(url, total) {
  const cache = await caches.open(MODELS);
  const hit = await cache.match(url);
  if (hit) return { bytes: new Uint8Array(await hit.arrayBuffer()), cached: true };
  const r = await fetch(url);
  if (!r.ok) throw new Error(`model download: HTTP ${r.status}`);
  const reader = r.body.getReader();
  const chunks = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    postMessage({ type: 'progress', loaded, total });
  }
  const blob = new Blob(chunks);
  await cache.put(url, new Response(blob, { headers: { 'content-type': 'application/octet-stream' } }));
  const keep = new URL(url, self.location.href).href;
  for (const req of await cache.keys()) if (req.url !== keep) await cache.delete(req);
  return { bytes: new Uint8Array(await blob.arrayBuffer()), cached: false };
}

async function load() {
  await ready;
  const text = await manifestText();
  const manifest = JSON.parse(text);
  const url = `/api/models/${manifest.model_id}/model.onnx`;
  const { bytes, cached } = await modelBytes(url, manifest.onnx.bytes);
  session = new Session(bytes, text); // verifies sha256 and shapes against the manifest
  loadedId = manifest.model_id;
  postMessage({ type: 'ready', model_id: manifest.model_id, cached });
}

self.onmessage = async (e) => {
  const msg = e.data;
  try {
    if (msg.type === 'load') {
      await load();
    } else if (msg.type === 'check') {
      // Is there a newer champion than the one loaded? (Quietly nothing when offline.)
      const r = await fetch(CURRENT, { cache: 'no-cache' }).catch(() => null);
      if (r && r.ok) {
        const m = await r.json();
        if (loadedId && m.model_id !== loadedId) postMessage({ type: 'update', model_id: m.model_id });
      }
    } else if (msg.type === 'classify') {
      if (!session) throw new Error('the model is not loaded yet');
      const r = JSON.parse(session.classifyImage(msg.bytes, msg.k || 5));
      postMessage({ type: 'result', predictions: r.predictions, ms: r.ms });
    } else if (msg.type === 'add_local') {
      // Quietly nothing without a ranking model: the server gallery will have the image.
      try {
        await addLocal(msg);
        postMessage({ type: 'rank_ready', model_id: rank.id, count: rank.gallery.count, local: rank.local.length });
      } catch (err) {
        console.warn('not added to the local search index:', err);
      }
    } else if (['load_rank', 'search', 'similar', 'captions'].includes(msg.type)) {
      // Search problems are reported apart: classification keeps working without them.
      try {
        const r = await loadRank();
        if (msg.type === 'load_rank') {
          postMessage({ type: 'rank_ready', model_id: r.id, count: r.gallery.count, local: r.local.length });
        } else if (msg.type === 'captions') {
          const { results, ms } = await captionsFor(msg.bytes, msg.k || 8);
          postMessage({ type: 'captions_result', results, ms });
        } else if (msg.type === 'similar') {
          const { results, ms, caption } = similar(msg.id, msg.k || 10);
          postMessage({ type: 'search_result', query: `like: ${caption}`, results, ms });
        } else {
          const { results, ms } = search(msg.query, msg.k || 10);
          postMessage({ type: 'search_result', query: msg.query, results, ms });
        }
      } catch (err) {
        postMessage({ type: 'rank_error', message: String((err && err.message) || err) });
      }
    } else if (msg.type === 'classify_rgba') {
      // A camera frame: RGBA pixels straight from a canvas.
      if (!session) throw new Error('the model is not loaded yet');
      const r = JSON.parse(session.classify(msg.rgba, msg.width, msg.height, msg.k || 5));
      postMessage({ type: 'result', predictions: r.predictions, ms: r.ms });
    }
  } catch (err) {
    postMessage({ type: 'error', message: String((err && err.message) || err) });
  }
};
