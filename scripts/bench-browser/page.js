// One engine per page load (?engine=tract|tract-relaxed|tract-2|ort|ort-2&runs=N): cold start (navigation →
// first model output on the shared input tensor), then N timed runs of the model on that
// tensor, plus, for tract, N runs of the whole path the app uses (decode + preprocess + run of
// a PNG photo). runs=0 stops at the first output (the returning visit of a cached run).
// `tract` is the simd128 module the app ships, `tract-relaxed` the same code built with
// relaxed SIMD (measured, not shipped: BENCHMARKS.md); one glue file loads either. `tract-2`
// is the threaded module (its own glue) on two threads, run in a worker (tract-worker.js).
// Any task's model folder (the files and the backbone output its head reads come from its
// manifest); the whole path is timed for classifiers.
// Both engines run the same graph as two files, the shared backbone then the head: tract the
// 8-bit backbone file the app ships (expanded to f32 when the session is built, so the same
// f32 compute), onnxruntime-web the f32 ONNX (it cannot read the 8-bit file).
import { bytes, manifestText, alternating, time, tract } from '/tract.js';

const params = new URLSearchParams(location.search);
const engine = params.get('engine');
const runs = Number(params.get('runs') || 50);

const manifest = manifestText();

// The threaded module in a worker of its own (its pool makes the caller wait, which only a
// worker may do; the app's inference runs in a worker too); cold start still counted from
// this page's navigation.
function tractWorker(pkg, threads) {
  const worker = new Worker('/tract-worker.js', { type: 'module' });
  return new Promise((resolve, reject) => {
    worker.onmessage = ({ data }) => (data.error ? reject(new Error(data.error)) : resolve(data.result));
    worker.onerror = (e) => reject(new Error(e.message));
    worker.postMessage({ pkg, threads, runs, origin: performance.timeOrigin });
  });
}

async function ort(threads) {
  const ortm = await import('/ort/ort.wasm.min.mjs');
  ortm.env.wasm.numThreads = threads;
  ortm.env.wasm.simd = true;
  ortm.env.wasm.wasmPaths = '/ort/';
  const m = JSON.parse(await manifest);
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
  }, runs);
  return { cold, sessionMs, probs: first, model, isolated: self.crossOriginIsolated };
}

const engines = {
  tract: () => tract({ pkg: '/pkg', threads: 1, runs, now: () => performance.now() }),
  'tract-relaxed': () => tract({ pkg: '/pkg-relaxed', threads: 1, runs, now: () => performance.now() }),
  // The threaded module (cross-origin isolated page), two threads in rayon's pool.
  'tract-2': () => tractWorker('/pkg-threads', 2),
  ort: () => ort(1),
  // Two threads (the page is cross-origin isolated).
  'ort-2': () => ort(2),
};
engines[engine]()
  .then((r) => { window.result = { engine, ...r }; document.getElementById('out').textContent = JSON.stringify(window.result, null, 1); })
  .catch((e) => { window.result = { engine, error: String(e && e.stack || e) }; });
