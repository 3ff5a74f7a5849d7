// Inference worker: message passing and caching only. The page's requests and this worker's
// replies are typed in Rust (contract::worker::{ToWorker, FromWorker}); everything computed
// (classification, embeddings, gallery search, captions) is wasm-infer's Rust, compiled to
// wasm. Here: fetch manifests network-first (cached copy offline), keep content-addressed model
// files in Cache Storage (fetched once, older versions evicted), keep images contributed from
// this browser in IndexedDB, and post what the Rust side answers.
import init, { Session, TextSession, SearchIndex } from '/pkg/wasm_infer.js';
import { withStore } from '/idb.js';

const MODELS = 'edgeml-models';
const META = 'edgeml-meta';
const RANK = 'edgeml-rank';
const CURRENT = '/api/models/current?task=classify';
const CURRENT_RANK = '/api/models/current?task=rank';
const LOCAL = { db: 'edgeml-local', store: 'vectors', keyOptions: { keyPath: 'id' } };
const ready = init({ module_or_path: '/pkg/wasm_infer_bg.wasm' });
let session = null;
let loadedId = null;
// The ranking champion: { id, manifest (text), encoder, index, images (image encoder, lazily) }.
let rank = null;

async function manifestText(url) {
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

// An immutable file (its URL names the model version) from `cacheName`, fetched once;
// `progress(loaded)` is told as bytes arrive.
async function cachedFile(cacheName, url, progress) {
  const cache = await caches.open(cacheName);
  const hit = await cache.match(url);
  if (hit) return { bytes: new Uint8Array(await hit.arrayBuffer()), cached: true };
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  const reader = r.body.getReader();
  const chunks = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    if (progress) progress(loaded);
  }
  const blob = new Blob(chunks);
  await cache.put(url, new Response(blob, { headers: { 'content-type': 'application/octet-stream' } }));
  return { bytes: new Uint8Array(await blob.arrayBuffer()), cached: false };
}

// Drop every cached file of `cacheName` that is not under `keepPrefix` (older versions).
async function evictOthers(cacheName, keepPrefix) {
  const cache = await caches.open(cacheName);
  for (const req of await cache.keys()) if (!new URL(req.url).pathname.startsWith(keepPrefix)) await cache.delete(req);
}

async function load() {
  await ready;
  const text = await manifestText(CURRENT);
  const manifest = JSON.parse(text);
  const base = `/api/models/${manifest.model_id}/`;
  const total = manifest.onnx.bytes;
  const { bytes, cached } = await cachedFile(MODELS, base + manifest.onnx.file,
    (loaded) => postMessage({ type: 'progress', loaded, total }));
  session = new Session(bytes, text); // verifies sha256 and shapes against the manifest
  await evictOthers(MODELS, base);
  loadedId = manifest.model_id;
  postMessage({ type: 'ready', model_id: manifest.model_id, cached });
}

// The ranking champion's text encoder and gallery, plus this browser's images for it (images
// embedded for another model are dropped: its gallery has the approved ones).
async function loadRank() {
  await ready;
  const text = await manifestText(CURRENT_RANK);
  const manifest = JSON.parse(text);
  const id = manifest.model_id;
  if (rank && rank.id === id) return rank;
  const base = `/api/models/${id}/`;
  const file = (name) => cachedFile(RANK, base + name).then((f) => f.bytes);
  const [onnx, bin, gallery] = await Promise.all([file(manifest.text.onnx.file), file('gallery.bin'), file('gallery.json')]);
  const encoder = new TextSession(onnx, text); // verifies sha256
  const index = new SearchIndex(new TextDecoder().decode(gallery), bin); // checks sizes
  await evictOthers(RANK, base);
  for (const e of await withStore(LOCAL, 'readonly', (s) => s.getAll())) {
    if (e.model_id === id && !index.inGallery(e.id)) index.addLocal(e.id, e.label, e.caption, e.vector, URL.createObjectURL(e.blob));
    else await withStore(LOCAL, 'readwrite', (s) => s.delete(e.id));
  }
  rank = { id, manifest: text, base, encoder, index, images: null };
  return rank;
}

// The ranking image encoder, downloaded on first use (image → text, local embedding).
async function imageSession(r) {
  if (!r.images) {
    const manifest = JSON.parse(r.manifest);
    const { bytes } = await cachedFile(RANK, r.base + manifest.onnx.file);
    r.images = new Session(bytes, r.manifest); // verifies sha256
  }
  return r.images;
}

async function addLocal(msg) {
  const r = await loadRank();
  const images = await imageSession(r);
  const vector = Float32Array.from(images.embedImage(new Uint8Array(await msg.blob.arrayBuffer())));
  const entry = { id: msg.id, model_id: r.id, label: msg.label, caption: msg.caption, vector, blob: msg.blob };
  await withStore(LOCAL, 'readwrite', (s) => s.put(entry));
  r.index.addLocal(entry.id, entry.label, entry.caption, vector, URL.createObjectURL(msg.blob));
}

const post = (json) => postMessage(JSON.parse(json));

async function rankRequest(msg) {
  const r = await loadRank();
  switch (msg.type) {
    case 'load_rank': return post(r.index.readyMessage());
    case 'search': return post(r.index.search(r.encoder, msg.query, msg.k));
    case 'similar': return post(r.index.similar(msg.id, msg.k));
    case 'captions': return post(r.index.captions(await imageSession(r), r.encoder, msg.bytes, msg.k));
    case 'add_local': await addLocal(msg); return post(r.index.readyMessage());
  }
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
    } else if (msg.type === 'classify' || msg.type === 'classify_rgba') {
      if (!session) throw new Error('the model is not loaded yet');
      const r = JSON.parse(msg.type === 'classify'
        ? session.classifyImage(msg.bytes, msg.k)
        : session.classify(msg.rgba, msg.width, msg.height, msg.k));
      postMessage({ type: 'result', predictions: r.predictions, ms: r.ms });
    } else if (msg.type === 'add_local') {
      // Quietly nothing without a ranking model: the server gallery will have the image.
      await rankRequest(msg).catch((err) => console.warn('not added to the local search index:', err));
    } else if (['load_rank', 'search', 'similar', 'captions'].includes(msg.type)) {
      // Search problems are reported apart: classification keeps working without them.
      await rankRequest(msg).catch((err) => postMessage({ type: 'rank_error', message: String((err && err.message) || err) }));
    }
  } catch (err) {
    postMessage({ type: 'error', message: String((err && err.message) || err) });
  }
};
