// Inference worker: the wasm-infer module (tract, compiled to wasm) runs here so the page never
// freezes. The champion's manifest is fetched network-first (cached copy when offline); its
// ONNX file is content-addressed, so it is kept in Cache Storage and fetched once; older model
// versions are evicted.
import init, { Session } from '/pkg/wasm_infer.js';

const MODELS = 'edgeml-models';
const META = 'edgeml-meta';
const CURRENT = '/api/models/current?task=classify';
const ready = init({ module_or_path: '/pkg/wasm_infer_bg.wasm' });
let session = null;
let loadedId = null;

async function manifestText() {
  const meta = await caches.open(META);
  try {
    const r = await fetch(CURRENT, { cache: 'no-cache' });
    if (r.ok) {
      await meta.put(CURRENT, r.clone());
      return await r.text();
    }
    if (r.status === 404) throw new Error('no model has been promoted yet');
    throw new Error(`model manifest: HTTP ${r.status}`);
  } catch (e) {
    const cached = await meta.match(CURRENT);
    if (cached) return cached.text();
    throw e;
  }
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
