// Inference worker: message passing and caching only. The page's requests and this worker's
// replies are typed in Rust (contract::worker::{ToWorker, FromWorker}); everything computed
// (classification, detection, embeddings, gallery search, captions) is wasm-infer's Rust, compiled to
// wasm. Here: fetch manifests network-first (cached copy offline), check every downloaded model
// file against its manifest's sha256 and size (WebCrypto) before it is cached or used, keep
// content-addressed model files in Cache Storage (fetched once, older versions evicted only
// once the new one is checked and loaded), keep images contributed from this browser in
// IndexedDB, and post what the Rust side answers.
// A model is the shared frozen backbone (one content-addressed file, downloaded once, kept
// for good, one session for classification and search) and the version's small head: after a
// retrain only the head is downloaded.
import init, { Backbone, Session, TextSession, SearchIndex, ProductSession } from '/pkg/wasm_infer.js';
import { withStore } from '/idb.js';

const MODELS = 'edgeml-models';
const META = 'edgeml-meta';
const RANK = 'edgeml-rank';
const PRODUCT = 'edgeml-product';
const DETECT = 'edgeml-detect';
const BACKBONES = 'edgeml-backbones';
const CURRENT = '/api/models/current?task=classify';
const CURRENT_RANK = '/api/models/current?task=rank';
const CURRENT_PRODUCT = '/api/models/current?task=product';
const CURRENT_DETECT = '/api/models/current?task=detect';
const LOCAL = { db: 'edgeml-local', store: 'vectors', keyOptions: { keyPath: 'id' } };
const ready = init({ module_or_path: '/pkg/wasm_infer_bg.wasm' });
let session = null;
let loadedId = null;
// The ranking champion: { id, manifest (text), encoder, index, images (image encoder, lazily) }.
let rank = null;
// Ranking versions refused in this worker's life (a file did not match the manifest): not
// downloaded again on every request while the version in use keeps answering.
const refusedRank = new Set();
// Why the newest ranking version was refused, told once, after the next answer.
let rankNotice = null;
// The product champion: { id, session, features (of the image last given, or null) }.
let product = null;
// The detection champion: { id, session }.
let detector = null;
// Backbones of this worker's life by sha256 and the output planned (the pooled features, or
// the feature map detectors read): a promise of `{ backbone, cached }`, shared by every session
// on it (one download, one compile, one forward pass per image for the tasks that share it).
// The file is the same for both outputs: it is downloaded and cached once.
const backbones = new Map();

// A downloaded file that is not the one its manifest describes.
class IntegrityError extends Error {}

// A model manifest, network-first: `{ text, fresh }`, `fresh` when the network answered (the
// caller keeps it with `keepManifest` once its model is checked and loaded, so an offline
// start never finds a manifest whose files were refused), else the copy kept last time.
async function manifestText(url) {
  try {
    const r = await fetch(url, { cache: 'no-cache' });
    if (r.ok) return { text: await r.text(), fresh: true };
    if (r.status === 404) throw new Error('no model has been promoted yet');
    throw new Error(`model manifest: HTTP ${r.status}`);
  } catch (e) {
    const text = await keptManifest(url);
    if (text !== null) return { text, fresh: false };
    throw e;
  }
}

// The manifest of the last model loaded from `url` in this browser, or null.
async function keptManifest(url) {
  const hit = await (await caches.open(META)).match(url);
  return hit ? hit.text() : null;
}

async function keepManifest(url, text) {
  const meta = await caches.open(META);
  await meta.put(url, new Response(text, { headers: { 'content-type': 'application/json' } }));
}

// Lower-case hex sha256 of `bytes`.
async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

// Why `bytes` is not the file its manifest entry `spec` ({ file, sha256, bytes }) describes, or
// null when it is. Manifests written before gallery files were hashed name them without a
// digest: those are only checked by the wasm side (sizes against the gallery index).
async function mismatch(bytes, spec) {
  if (spec.bytes !== undefined && bytes.length !== spec.bytes) return `${bytes.length} bytes, the manifest says ${spec.bytes}`;
  if (spec.sha256 === undefined) return null;
  const got = await sha256Hex(bytes);
  return got === spec.sha256.toLowerCase() ? null : `sha256 ${got}, the manifest says ${spec.sha256}`;
}

// One file of the model folder `base`, `spec` its manifest entry: a copy kept in `cacheName`
// that still matches the manifest, else downloaded (`progress(loaded)` told as bytes arrive)
// and checked against the manifest before anything else sees it. Nothing is cached here:
// `keep` stores downloaded files once the whole model is checked and loaded.
async function modelFile(cacheName, base, spec, progress) {
  return checkedFile(cacheName, base + spec.file, spec, progress);
}

// `url` as `modelFile` fetches a file: cached copy if it still matches `spec`, else downloaded
// and checked.
async function checkedFile(cacheName, url, spec, progress) {
  const cache = await caches.open(cacheName);
  const hit = await cache.match(url);
  if (hit) {
    const bytes = new Uint8Array(await hit.arrayBuffer());
    if ((await mismatch(bytes, spec)) === null) return { url, bytes, cached: true };
    await cache.delete(url); // damaged in storage: downloaded again
  }
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
    // A body longer than the manifest says is refused as it arrives, not held in memory.
    if (spec.bytes !== undefined && loaded > spec.bytes) {
      await reader.cancel();
      throw new IntegrityError(`${url} is longer than the manifest's ${spec.bytes} bytes: refused, not cached`);
    }
    if (progress) progress(loaded);
  }
  const bytes = new Uint8Array(await new Blob(chunks).arrayBuffer());
  const why = await mismatch(bytes, spec);
  if (why) throw new IntegrityError(`${url} does not match the model's manifest (${why}): refused, not cached`);
  return { url, bytes, cached: false };
}

// Store the downloaded `files` (checked, their model loaded) in `cacheName`, then drop every
// cached file that is not under `base` (older versions). If the browser refuses to store them
// (quota), the older version is left in place and this one works until the page is closed.
async function keep(cacheName, base, files) {
  const cache = await caches.open(cacheName);
  try {
    for (const f of files) {
      if (!f.cached) await cache.put(f.url, new Response(f.bytes, { headers: { 'content-type': 'application/octet-stream' } }));
    }
  } catch (err) {
    console.warn(`model files not kept for offline use: ${err}`);
    return;
  }
  for (const req of await cache.keys()) if (!new URL(req.url).pathname.startsWith(base)) await cache.delete(req);
}

// The backbone a manifest (`text`) names: the one already loaded, else its cached copy or a
// download (checked against the manifest, kept for good once its session is built). A refused
// backbone is forgotten, so the next attempt downloads it again.
function backboneFor(text, progress) {
  const manifest = JSON.parse(text);
  const spec = shippedBackbone(manifest);
  const sha = `${spec.sha256.toLowerCase()}:${manifest.backbone.output.name}`;
  if (!backbones.has(sha)) {
    const loading = (async () => {
      const url = backboneUrl(spec);
      const file = await checkedFile(BACKBONES, url, spec, progress);
      // `checkedFile` has checked its size and sha256 (WebCrypto): the module checks the size
      // and the graph's shapes, and does not hash the 3.6 MB again.
      const backbone = Backbone.prechecked(file.bytes, text);
      if (!file.cached) {
        const cache = await caches.open(BACKBONES);
        await cache.put(url, new Response(file.bytes, { headers: { 'content-type': 'application/octet-stream' } }))
          .catch((err) => console.warn(`backbone not kept for offline use: ${err}`));
      }
      return { backbone, cached: file.cached };
    })();
    backbones.set(sha, loading);
    loading.catch(() => backbones.delete(sha));
    return loading;
  }
  return backbones.get(sha).then(({ backbone }) => ({ backbone, cached: true }));
}

// The backbone file a manifest's model runs on in a browser: the 8-bit NNEF one (the f32 ONNX
// file is the server's). (contract::BackboneRef::shipped)
function shippedBackbone(manifest) {
  return browserFile(manifest, manifest.backbone.int8);
}

// Where a backbone file is served: its sha256 and its kind's extension (ModelFiles::backbone_url).
function backboneUrl(spec) {
  return `/api/backbones/${spec.sha256.toLowerCase()}.${spec.file.split('.').pop()}`;
}

// Drop cached backbones that no kept manifest (classification, ranking, product) runs on.
async function pruneBackbones() {
  const used = new Set();
  for (const url of [CURRENT, CURRENT_RANK, CURRENT_PRODUCT, CURRENT_DETECT]) {
    const text = await keptManifest(url);
    const m = text && JSON.parse(text);
    if (m && m.backbone && m.backbone.int8) used.add(backboneUrl(shippedBackbone(m)));
  }
  const cache = await caches.open(BACKBONES);
  for (const req of await cache.keys()) if (!used.has(new URL(req.url).pathname)) await cache.delete(req);
}

// Versions exported before browsers loaded NNEF (no `nnef` in the manifest) run on the server
// only: this module has no ONNX parser.
function browserFile(manifest, spec) {
  if (!spec) throw new Error(`model ${manifest.model_id} was exported before in-browser models (NNEF): retrain it, or predict on the server`);
  return spec;
}

// A session for the model a manifest (`text`) describes: its NNEF head (from `cacheName`,
// under `base`) on the shared backbone. Returns `{ session, files (to keep), cached }`.
async function sessionFor(text, cacheName, base, progress) {
  const manifest = JSON.parse(text);
  const headSpec = browserFile(manifest, manifest.backbone && manifest.backbone.int8 && manifest.nnef);
  const seen = [0, 0];
  const tell = (i) => (n) => { seen[i] = n; if (progress) progress(seen[0] + seen[1]); };
  const [bb, head] = await Promise.all([
    backboneFor(text, tell(0)),
    modelFile(cacheName, base, headSpec, tell(1)),
  ]);
  // Checks the backbone is the manifest's, the head's bytes and shapes.
  const session = Session.composed(bb.backbone, head.bytes, text);
  return { session, files: [head], cached: head.cached && bb.cached };
}

// Load the classifier a manifest (`text`) describes, replacing the one in use only once its
// files are checked and its session built; posts `ready`.
async function loadClassifier(text) {
  const manifest = JSON.parse(text);
  const base = `/api/models/${manifest.model_id}/`;
  const total = (manifest.nnef ? manifest.nnef.bytes : 0) + (manifest.backbone ? shippedBackbone(manifest).bytes : 0);
  const loaded = await sessionFor(text, MODELS, base, (n) => reply('progress', { loaded: n, total }));
  session = loaded.session;
  loadedId = manifest.model_id;
  await keep(MODELS, base, loaded.files);
  reply('ready', { model_id: manifest.model_id, cached: loaded.cached });
}

// Load the classification champion. When its files are refused, the model in use stays; a page
// that has none yet falls back to the last one this browser loaded (still in the cache), and
// the error is reported either way.
async function load() {
  await ready;
  const { text, fresh } = await manifestText(CURRENT);
  try {
    await loadClassifier(text);
  } catch (err) {
    const kept = !session && fresh ? await keptManifest(CURRENT) : null;
    // If the fallback fails too, the champion's error is the one worth reporting.
    if (kept && JSON.parse(kept).model_id !== JSON.parse(text).model_id) await loadClassifier(kept).catch(() => {});
    throw err;
  }
  if (fresh) await keepManifest(CURRENT, text);
  await pruneBackbones();
}

// The ranking champion, loaded once per version. When a newer version's files are refused,
// the version in use keeps answering and the refusal is told once (`rankNotice`).
async function loadRank() {
  await ready;
  const { text, fresh } = await manifestText(CURRENT_RANK);
  const id = JSON.parse(text).model_id;
  if (rank && (rank.id === id || refusedRank.has(id))) return rank;
  try {
    rank = await rankVersion(text, fresh);
  } catch (err) {
    if (!(err instanceof IntegrityError) || !rank) throw err;
    refusedRank.add(id);
    rankNotice = `${err.message}; still using ranking model ${rank.id}`;
  }
  return rank;
}

// A ranking version's text encoder and gallery, plus this browser's images for it (images
// embedded for another model are dropped: its gallery has the approved ones). Every file is
// checked against the manifest before it is cached or replaces the loaded version.
async function rankVersion(text, fresh) {
  const manifest = JSON.parse(text);
  const id = manifest.model_id;
  const base = `/api/models/${id}/`;
  // Manifests written before galleries were hashed: the files by name only.
  const gallery = manifest.gallery || { index: { file: 'gallery.json' }, vectors: { file: 'gallery.bin' } };
  const textSpec = browserFile(manifest, manifest.text.nnef);
  const files = await Promise.all([textSpec, gallery.vectors, gallery.index].map((spec) => modelFile(RANK, base, spec)));
  const [nnef, bin, index] = files.map((f) => f.bytes);
  const encoder = new TextSession(nnef, text); // checks shapes (and sha256 again)
  const search = new SearchIndex(new TextDecoder().decode(index), bin); // checks sizes
  await keep(RANK, base, files);
  if (fresh) await keepManifest(CURRENT_RANK, text);
  for (const e of await withStore(LOCAL, 'readonly', (s) => s.getAll())) {
    if (e.model_id === id && !search.inGallery(e.id)) search.addLocal(e.id, e.label, e.caption, e.vector, URL.createObjectURL(e.blob));
    else await withStore(LOCAL, 'readwrite', (s) => s.delete(e.id));
  }
  return { id, manifest: text, base, encoder, index: search, images: null };
}

// The ranking image tower, downloaded on first use (image → text, local embedding): its head
// on the backbone the classifier already loaded.
async function imageSession(r) {
  if (!r.images) {
    const loaded = await sessionFor(r.manifest, RANK, r.base);
    r.images = loaded.session;
    await keep(RANK, r.base, loaded.files);
    await pruneBackbones();
  }
  return r.images;
}

async function addLocal(msg) {
  const r = await loadRank();
  const images = await imageSession(r);
  const vector = Float32Array.from(images.embedImage(await wasmReadable(new Uint8Array(await msg.blob.arrayBuffer()))));
  const entry = { id: msg.id, model_id: r.id, label: msg.label, caption: msg.caption, vector, blob: msg.blob };
  await withStore(LOCAL, 'readwrite', (s) => s.put(entry));
  r.index.addLocal(entry.id, entry.label, entry.caption, vector, URL.createObjectURL(msg.blob));
}

// Replies are contract::worker::FromWorker: { kind: { fields } }.
const reply = (kind, fields) => postMessage({ [kind]: fields });
const post = (json) => postMessage(JSON.parse(json));

// The product champion, loaded once per version: its NNEF head on the shared backbone. A
// version whose files are refused leaves the loaded one answering (the error is reported).
async function loadProduct() {
  await ready;
  const { text, fresh } = await manifestText(CURRENT_PRODUCT);
  const manifest = JSON.parse(text);
  if (product && product.id === manifest.model_id) return product;
  const base = `/api/models/${manifest.model_id}/`;
  const headSpec = browserFile(manifest, manifest.backbone && manifest.backbone.int8 && manifest.nnef);
  const [bb, head] = await Promise.all([backboneFor(text), modelFile(PRODUCT, base, headSpec)]);
  // Checks the backbone is the manifest's, the head's bytes, inputs and output.
  const session = ProductSession.composed(bb.backbone, head.bytes, text);
  await keep(PRODUCT, base, [head]);
  if (fresh) await keepManifest(CURRENT_PRODUCT, text);
  product = { id: manifest.model_id, labels: manifest.labels, session, features: null };
  await pruneBackbones();
  return product;
}

// The detection champion, loaded once per version: its NNEF head on the shared backbone's
// feature map. A version whose files are refused leaves the loaded one answering.
async function loadDetector() {
  await ready;
  const { text, fresh } = await manifestText(CURRENT_DETECT);
  const manifest = JSON.parse(text);
  if (detector && detector.id === manifest.model_id) return detector;
  const base = `/api/models/${manifest.model_id}/`;
  const loaded = await sessionFor(text, DETECT, base);
  await keep(DETECT, base, loaded.files);
  if (fresh) await keepManifest(CURRENT_DETECT, text);
  detector = { id: manifest.model_id, session: loaded.session };
  await pruneBackbones();
  return detector;
}

async function detectRequest(msg) {
  const d = await loadDetector();
  const r = JSON.parse(msg.type === 'detect'
    ? d.session.detectImage(await wasmReadable(msg.bytes))
    : d.session.detect(msg.rgba, msg.width, msg.height));
  reply('detect_result', { model_id: d.id, boxes: r.boxes, width: r.width, height: r.height, ms: r.ms });
}

async function productRequest(msg) {
  const p = await loadProduct();
  if (msg.type === 'load_product') {
    reply('product_ready', { model_id: p.id, labels: p.labels });
    return;
  }
  const t0 = performance.now();
  if (msg.type === 'product_image') p.features = p.session.featuresImage(await wasmReadable(msg.bytes));
  const withImage = msg.type === 'product_image' || (msg.with_image && p.features !== null);
  const r = JSON.parse(p.session.classify(withImage ? p.features : undefined, msg.title, msg.k));
  reply('product_result', { title: msg.title, with_image: withImage, predictions: r.predictions, ms: performance.now() - t0 });
}

// The inference module decodes PNG and JPEG itself (the server's decoder: the same pixels);
// other formats (WebP, GIF, BMP) are decoded by the browser and handed over as PNG.
async function wasmReadable(bytes) {
  const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const png = b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47;
  const jpeg = b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff;
  if (png || jpeg) return b;
  let bitmap;
  try {
    bitmap = await createImageBitmap(new Blob([b]), { premultiplyAlpha: 'none', colorSpaceConversion: 'none' });
  } catch {
    return b; // not an image the browser reads either: the module says why
  }
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  canvas.getContext('2d').drawImage(bitmap, 0, 0);
  bitmap.close();
  return new Uint8Array(await (await canvas.convertToBlob({ type: 'image/png' })).arrayBuffer());
}

async function rankRequest(msg) {
  const r = await loadRank();
  switch (msg.type) {
    case 'load_rank': post(r.index.readyMessage()); break;
    case 'search': post(r.index.search(r.encoder, msg.query, msg.k)); break;
    case 'similar': post(r.index.similar(msg.id, msg.k)); break;
    case 'captions': post(r.index.captions(await imageSession(r), r.encoder, await wasmReadable(msg.bytes), msg.k)); break;
    case 'add_local': await addLocal(msg); post(r.index.readyMessage()); break;
  }
  if (rankNotice) {
    reply('rank_error', { message: rankNotice });
    rankNotice = null;
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
        if (loadedId && m.model_id !== loadedId) reply('update', { model_id: m.model_id });
      }
    } else if (msg.type === 'classify' || msg.type === 'classify_rgba') {
      if (!session) throw new Error('the model is not loaded yet');
      const bytes = msg.type === 'classify' ? await wasmReadable(msg.bytes) : null;
      const r = JSON.parse(msg.type === 'classify'
        ? session.classifyImage(bytes, msg.k)
        : session.classify(msg.rgba, msg.width, msg.height, msg.k));
      reply('result', { predictions: r.predictions, ms: r.ms });
    } else if (msg.type === 'add_local') {
      // Quietly nothing without a ranking model: the server gallery will have the image.
      await rankRequest(msg).catch((err) => console.warn('not added to the local search index:', err));
    } else if (['load_product', 'product_classify', 'product_image'].includes(msg.type)) {
      // Product problems are reported apart: the other pages keep working without them.
      await productRequest(msg).catch((err) => reply('product_error', { message: String((err && err.message) || err) }));
    } else if (msg.type === 'detect' || msg.type === 'detect_rgba') {
      // Detection problems are reported apart: classification keeps working without them.
      await detectRequest(msg).catch((err) => reply('detect_error', { message: String((err && err.message) || err) }));
    } else if (['load_rank', 'search', 'similar', 'captions'].includes(msg.type)) {
      // Search problems are reported apart: classification keeps working without them.
      await rankRequest(msg).catch((err) => reply('rank_error', { message: String((err && err.message) || err) }));
    }
  } catch (err) {
    // A refused new model leaves the loaded one in use: say which.
    const inUse = msg.type === 'load' && loadedId ? `; still using model ${loadedId}` : '';
    reply('error', { message: String((err && err.message) || err) + inUse });
  }
};
