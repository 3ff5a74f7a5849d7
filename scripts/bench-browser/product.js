// One engine per page load (?engine=tract|ort&runs=N). What the Products page does, per
// engine: the session built from the model's files, then as a title is typed, one head run
// per title (without an image, and with a picked image's features kept), and when an image is
// picked, the backbone on its pixels then the head. Tokenization (the shared wasm tokenizer)
// and preprocessing (the shared wasm resize + normalise) are the same code for both; only the
// graph runs differ. tract: the app's own ProductSession (8-bit backbone expanded to f32, the
// NNEF head); onnxruntime-web: the f32 backbone ONNX and the head ONNX.
const params = new URLSearchParams(location.search);
const engine = params.get('engine');
const runs = Number(params.get('runs') || 100);
const WARMUP = 10;

const bytes = async (url) => new Uint8Array(await (await fetch(url)).arrayBuffer());
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(s.length * p))]; };

async function time(fn, n = runs) {
  for (let i = 0; i < WARMUP; i++) await fn(i);
  const ms = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn(i);
    ms.push(performance.now() - t0);
  }
  return { median: median(ms), p90: pct(ms, 0.9) };
}

async function pixels(url) {
  const bitmap = await createImageBitmap(await (await fetch(url)).blob());
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext('2d');
  ctx.drawImage(bitmap, 0, 0);
  return { rgba: new Uint8Array(ctx.getImageData(0, 0, bitmap.width, bitmap.height).data.buffer), width: bitmap.width, height: bitmap.height };
}

// Each engine's three calls: features of pixels, and class scores of (features or null, title).
async function tract(wasm, manifest) {
  const [backbone, head] = await Promise.all([bytes('/model/backbone.q8'), bytes('/model/product_head.nnef')]);
  const t0 = performance.now();
  const session = wasm.ProductSession.composed(wasm.Backbone.prechecked(backbone, manifest), head, manifest);
  return {
    sessionMs: performance.now() - t0,
    features: (p) => session.features(p.rgba, p.width, p.height),
    scores: (f, title) => session.scores(f ?? undefined, title),
  };
}

async function ort(wasm, manifest) {
  const ortModule = await import('/ort/ort.wasm.min.mjs');
  ortModule.env.wasm.numThreads = 1;
  ortModule.env.wasm.wasmPaths = '/ort/';
  const [backbone, head] = await Promise.all([bytes('/model/backbone.onnx'), bytes('/model/product_head.onnx')]);
  const t0 = performance.now();
  const opts = { executionProviders: ['wasm'] };
  const b = await ortModule.InferenceSession.create(backbone, opts);
  const h = await ortModule.InferenceSession.create(head, opts);
  const sessionMs = performance.now() - t0;
  const m = JSON.parse(manifest);
  const [, c, hh, w] = m.input.shape;
  const dim = m.product.ids.shape[1];
  const T = ortModule.Tensor;
  const zeros = new Float32Array(1280);
  return {
    sessionMs,
    features: async (p) => {
      const x = wasm.preprocess(p.rgba, p.width, p.height, manifest);
      const out = await b.run({ [b.inputNames[0]]: new T('float32', x, [1, c, hh, w]) });
      return out[b.outputNames[0]].data;
    },
    scores: async (f, title) => {
      const t = JSON.parse(wasm.tokenize(title, manifest));
      const out = await h.run({
        features: new T('float32', f ?? zeros, [1, 1280]),
        ids: new T('int64', BigInt64Array.from(t.ids.map(BigInt)), [1, dim]),
        mask: new T('float32', Float32Array.from(t.mask), [1, dim]),
        has_image: new T('float32', Float32Array.of(f ? 1 : 0), [1, 1]),
      });
      return out[h.outputNames[0]].data;
    },
  };
}

async function main() {
  const wasm = await import('/pkg/wasm_infer.js');
  await wasm.default('/pkg/wasm_infer_bg.wasm');
  const manifest = await fetch('/model/manifest.json').then((r) => r.text());
  const titles = await fetch('/titles.json').then((r) => r.json());
  // Two photos in turn when timing the backbone: tract's backbone keeps the features of the
  // last image it saw (one pass for two heads on one image), so one photo would be a cache hit.
  const photos = [await pixels('/photo.png'), await pixels('/photo2.png')];
  const e = engine === 'tract' ? await tract(wasm, manifest) : await ort(wasm, manifest);
  const f32 = Float32Array.from(await e.features(photos[0]));
  const title = (i) => titles[i % titles.length];
  const textOnly = [];
  const withPhoto = [];
  for (let i = 0; i < Math.min(titles.length, 20); i++) {
    textOnly.push(Array.from(await e.scores(null, title(i))));
    withPhoto.push(Array.from(await e.scores(f32, title(i))));
  }
  const titleOnly = await time((i) => e.scores(null, title(i)));
  const titleWithImage = await time((i) => e.scores(f32, title(i)));
  const picked = await time(async (i) => e.scores(await e.features(photos[i % 2]), title(i)), Math.max(20, Math.floor(runs / 4)));
  return { sessionMs: e.sessionMs, textOnly, withPhoto, titleOnly, titleWithImage, picked };
}

main()
  .then((r) => { window.result = { engine, ...r }; document.getElementById('out').textContent = 'done'; })
  .catch((e) => { window.result = { engine, error: String(e && e.stack || e) }; });
