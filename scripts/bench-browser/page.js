// One engine per page load (?engine=tract|tract-relaxed|ort|ort-2&runs=N): cold start (navigation →
// first model output on the shared input tensor), then N timed runs of the model on that
// tensor, plus, for tract, N runs of the whole path the app uses (decode + preprocess + run of
// a PNG photo). runs=0 stops at the first output (the returning visit of a cached run).
// `tract` is the simd128 module the app ships, `tract-relaxed` the same code built with
// relaxed SIMD (measured, not shipped: BENCHMARKS.md); one glue file loads either.
// Any task's model folder (the files and the backbone output its head reads come from its
// manifest); the whole path is timed for classifiers.
// Both engines run the same graph as two files, the shared backbone then the head: tract the
// 8-bit backbone file the app ships (expanded to f32 when the session is built, so the same
// f32 compute), onnxruntime-web the f32 ONNX (it cannot read the 8-bit file).
const params = new URLSearchParams(location.search);
const engine = params.get('engine');
const runs = Number(params.get('runs') || 50);
const WARMUP = 5;

const bytes = async (url) => new Uint8Array(await (await fetch(url)).arrayBuffer());
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(s.length * p))]; };

// The input, then a copy with one value nudged, in turn.
function alternating(input) {
  const other = input.slice();
  other[0] += 1e-3;
  let i = 0;
  return () => ((i++ % 2) ? other : input);
}

async function time(fn) {
  for (let i = 0; i < WARMUP; i++) await fn();
  const ms = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    ms.push(performance.now() - t0);
  }
  return { median: median(ms), p90: pct(ms, 0.9), min: Math.min(...ms), n: ms.length };
}

// The model's manifest: which files, which backbone output the head reads (the pooled
// features, or the feature map of a detector), which task.
const manifestText = fetch('/model/manifest.json').then((r) => r.text());

async function tract(wasm) {
  const { default: init, Backbone, Session } = await import('/pkg/wasm_infer.js');
  const manifest = await manifestText;
  const m = JSON.parse(manifest);
  // tract-wasm loads what browsers get: the NNEF files written at export (same model).
  const [backboneBytes, onnx, input] = await Promise.all([
    bytes(`/model/${m.backbone.int8.file}`),
    bytes(`/model/${m.nnef.file}`),
    fetch('/input.bin').then((r) => r.arrayBuffer()).then((b) => new Float32Array(b)),
  ]);
  await init(wasm);
  const t0 = performance.now();
  // As the app's worker does: the backbone's sha256 checked with WebCrypto, then built
  // without hashing it again in wasm.
  const want = JSON.parse(manifest).backbone.int8.sha256;
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', backboneBytes));
  const got = Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
  if (got !== want) throw new Error(`backbone.q8: sha256 ${got}, the manifest says ${want}`);
  const session = Session.composed(Backbone.prechecked(backboneBytes, manifest), onnx, manifest);
  const sessionMs = performance.now() - t0;
  const first = Array.from(session.run(input));
  const cold = performance.now();
  if (runs === 0) return { cold, sessionMs, probs: first };
  // The backbone remembers its last image (one pass for two heads on the same image): the
  // timed runs alternate two inputs so every run is a whole pass.
  const inputs = alternating(input);
  const model = await time(() => session.run(inputs()));
  if (m.task !== 'classify') return { cold, sessionMs, probs: first, model, full: null, top: null };
  const photo = await bytes('/photo.png');
  const photo2 = await bytes('/photo2.png');
  let flip = false;
  const full = await time(() => { flip = !flip; return session.classifyImage(flip ? photo2 : photo, 3); });
  const top = JSON.parse(session.classifyImage(photo, 3)).predictions;
  return { cold, sessionMs, probs: first, model, full, top };
}

async function ort(threads) {
  const ortm = await import('/ort/ort.wasm.min.mjs');
  ortm.env.wasm.numThreads = threads;
  ortm.env.wasm.simd = true;
  ortm.env.wasm.wasmPaths = '/ort/';
  const m = JSON.parse(await manifestText);
  const [backboneBytes, onnx, input] = await Promise.all([
    bytes(`/model/${m.backbone.onnx.file}`),
    bytes(`/model/${m.onnx.file}`),
    fetch('/input.bin').then((r) => r.arrayBuffer()).then((b) => new Float32Array(b)),
  ]);
  const t0 = performance.now();
  const backbone = await ortm.InferenceSession.create(backboneBytes, { executionProviders: ['wasm'] });
  const session = await ortm.InferenceSession.create(onnx, { executionProviders: ['wasm'] });
  const sessionMs = performance.now() - t0;
  const feeds = { [backbone.inputNames[0]]: new ortm.Tensor('float32', input, [1, 3, 224, 224]) };
  // The backbone's output the head reads, asked for by name (the file has two).
  const features = m.backbone.output.name;
  const run = async () => {
    const f = await backbone.run(feeds, [features]);
    return session.run({ [session.inputNames[0]]: f[features] });
  };
  const out = await run();
  const first = Array.from(out[session.outputNames[0]].data);
  const cold = performance.now();
  if (runs === 0) return { cold, sessionMs, probs: first };
  // The same alternating inputs as tract's runs.
  const inputs = alternating(input);
  const model = await time(() => {
    feeds[backbone.inputNames[0]] = new ortm.Tensor('float32', inputs(), [1, 3, 224, 224]);
    return run();
  });
  return { cold, sessionMs, probs: first, model, isolated: self.crossOriginIsolated };
}

const engines = {
  tract: () => tract('/pkg/wasm_infer_bg.wasm'),
  'tract-relaxed': () => tract('/pkg-relaxed/wasm_infer_bg.wasm'),
  ort: () => ort(1),
  // Two threads (the page is cross-origin isolated): tract-wasm has no threaded build.
  'ort-2': () => ort(2),
};
engines[engine]()
  .then((r) => { window.result = { engine, ...r }; document.getElementById('out').textContent = JSON.stringify(window.result, null, 1); })
  .catch((e) => { window.result = { engine, error: String(e && e.stack || e) }; });
