// tract-wasm's side of the browser benchmark, shared by the page (1 thread, on the page's
// thread) and by tract-worker.js (the threaded module: rayon's pool blocks its caller, which
// only a worker may do, as in the app). `now()` is ms since the page's navigation.
export const WARMUP = 5;

export const bytes = async (url) => new Uint8Array(await (await fetch(url)).arrayBuffer());
export const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
export const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(s.length * p))]; };

// The input, then a copy with one value nudged, in turn.
export function alternating(input) {
  const other = input.slice();
  other[0] += 1e-3;
  let i = 0;
  return () => ((i++ % 2) ? other : input);
}

export async function time(fn, runs) {
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
export const manifestText = () => fetch('/model/manifest.json').then((r) => r.text());

export async function tract({ pkg, threads, runs, now }) {
  const glue = await import(`${pkg}/wasm_infer.js`);
  const { default: init, Backbone, Session } = glue;
  const manifest = await manifestText();
  const m = JSON.parse(manifest);
  // tract-wasm loads what browsers get: the NNEF files written at export (same model).
  const [backboneBytes, onnx, input] = await Promise.all([
    bytes(`/model/${m.backbone.int8.file}`),
    bytes(`/model/${m.nnef.file}`),
    fetch('/input.bin').then((r) => r.arrayBuffer()).then((b) => new Float32Array(b)),
  ]);
  await init(`${pkg}/wasm_infer_bg.wasm`);
  // The threaded module's pool: Web Workers sharing its memory, started before the session.
  if (threads > 1) await glue.initThreadPool(threads);
  const t0 = now();
  // As the app's worker does: the backbone's sha256 checked with WebCrypto, then built
  // without hashing it again in wasm.
  const want = JSON.parse(manifest).backbone.int8.sha256;
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', backboneBytes));
  const got = Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
  if (got !== want) throw new Error(`backbone.q8: sha256 ${got}, the manifest says ${want}`);
  const session = Session.composed(Backbone.prechecked(backboneBytes, manifest), onnx, manifest);
  const sessionMs = now() - t0;
  const first = Array.from(session.run(input));
  const cold = now();
  if (runs === 0) return { cold, sessionMs, probs: first };
  // The backbone remembers its last image (one pass for two heads on the same image): the
  // timed runs alternate two inputs so every run is a whole pass.
  const inputs = alternating(input);
  const model = await time(() => session.run(inputs()), runs);
  if (m.task !== 'classify') return { cold, sessionMs, probs: first, model, full: null, top: null };
  const photo = await bytes('/photo.png');
  const photo2 = await bytes('/photo2.png');
  let flip = false;
  const full = await time(() => { flip = !flip; return session.classifyImage(flip ? photo2 : photo, 3); }, runs);
  const top = JSON.parse(session.classifyImage(photo, 3)).predictions;
  return { cold, sessionMs, probs: first, model, full, top };
}

