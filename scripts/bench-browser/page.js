// One engine per page load (?engine=tract|ort&runs=N): cold start (navigation → first model
// output on the shared input tensor), then N timed runs of the model on that tensor, plus, for
// tract, N runs of the whole path the app uses (decode + preprocess + run of a PNG photo).
const params = new URLSearchParams(location.search);
const engine = params.get('engine');
const runs = Number(params.get('runs') || 50);
const WARMUP = 5;

const bytes = async (url) => new Uint8Array(await (await fetch(url)).arrayBuffer());
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(s.length * p))]; };

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

async function tract() {
  const { default: init, Session } = await import('/pkg/wasm_infer.js');
  const [manifest, onnx, input] = await Promise.all([
    fetch('/model/manifest.json').then((r) => r.text()),
    bytes('/model/model.onnx'),
    fetch('/input.bin').then((r) => r.arrayBuffer()).then((b) => new Float32Array(b)),
  ]);
  await init('/pkg/wasm_infer_bg.wasm');
  const t0 = performance.now();
  const session = new Session(onnx, manifest);
  const sessionMs = performance.now() - t0;
  const first = Array.from(session.run(input));
  const cold = performance.now();
  const model = await time(() => session.run(input));
  const photo = await bytes('/photo.png');
  const full = await time(() => session.classifyImage(photo, 3));
  const top = JSON.parse(session.classifyImage(photo, 3)).predictions;
  return { cold, sessionMs, probs: first, model, full, top };
}

async function ort() {
  const ortm = await import('/ort/ort.wasm.min.mjs');
  ortm.env.wasm.numThreads = 1;
  ortm.env.wasm.simd = true;
  ortm.env.wasm.wasmPaths = '/ort/';
  const [onnx, input] = await Promise.all([
    bytes('/model/model.onnx'),
    fetch('/input.bin').then((r) => r.arrayBuffer()).then((b) => new Float32Array(b)),
  ]);
  const t0 = performance.now();
  const session = await ortm.InferenceSession.create(onnx, { executionProviders: ['wasm'] });
  const sessionMs = performance.now() - t0;
  const feeds = { [session.inputNames[0]]: new ortm.Tensor('float32', input, [1, 3, 224, 224]) };
  const out = await session.run(feeds);
  const first = Array.from(out[session.outputNames[0]].data);
  const cold = performance.now();
  const model = await time(() => session.run(feeds));
  return { cold, sessionMs, probs: first, model };
}

(engine === 'tract' ? tract() : ort())
  .then((r) => { window.result = { engine, ...r }; document.getElementById('out').textContent = JSON.stringify(window.result, null, 1); })
  .catch((e) => { window.result = { engine, error: String(e && e.stack || e) }; });
