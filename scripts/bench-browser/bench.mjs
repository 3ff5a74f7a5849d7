// Browser benchmark (not a test): the same ONNX (any task's model folder: its manifest names
// the files) run by tract-wasm (wasm-infer) and by
// onnxruntime-web (wasm backend, 1 thread) in the same headless Chromium. Prints a markdown
// table: cold start (uncached and cached), median/p90 of N runs, bytes shipped (raw and gzip),
// ratios. tract runs three times: the simd128 module, the relaxed-SIMD one, and the threaded one
// on two threads (in a worker), against onnxruntime-web on one and on two threads. BENCH_ROUNDS
// (default 3) rounds, the engines interleaved.
//
//   node bench.mjs MODEL_DIR WASM_PKG_DIR INPUT_BIN PHOTO_PNG [RUNS]
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serve, measure as load } from './harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const [modelDir, pkgDir, inputBin, photo, runsArg] = process.argv.slice(2);
const runs = Number(runsArg || 50);
const ortDir = join(here, 'node_modules/onnxruntime-web/dist');
const rounds = Number(process.env.BENCH_ROUNDS || 3);
const relaxedDir = join(resolve(pkgDir), '..', 'web-relaxed');
const threadsDir = join(resolve(pkgDir), '..', 'web-threads');
const { server, base } = await serve(
  { '/': join(here, 'page.html'), '/page.js': join(here, 'page.js'), '/tract.js': join(here, 'tract.js'), '/tract-worker.js': join(here, 'tract-worker.js'), '/input.bin': resolve(inputBin), '/photo.png': resolve(photo), '/photo2.png': resolve(process.env.BENCH_PHOTO2 || photo) },
  [['/pkg-relaxed/', relaxedDir], ['/pkg-threads/', threadsDir], ['/pkg/', resolve(pkgDir)], ['/ort/', ortDir], ['/model/', resolve(modelDir)]],
  ['/pkg-relaxed/', '/pkg-threads/', '/pkg/', '/ort/', '/model/'],
);
// One fresh profile per engine and round: the first visit downloads and compiles everything
// (uncached), then a second visit in the same profile stops at the first output, with the
// runtime and the model in the browser's HTTP cache (a returning visitor).
const measure = (engine) => load(`${base}/?engine=${engine}&runs=${runs}`, engine, `${base}/?engine=${engine}&runs=0`);

const size = (files) => files.reduce((acc, f) => {
  const b = readFileSync(f);
  return { raw: acc.raw + b.length, gzip: acc.gzip + gzipSync(b, { level: 9 }).length };
}, { raw: 0, gzip: 0 });
const manifest = JSON.parse(readFileSync(join(modelDir, 'manifest.json'), 'utf8'));
const files = {
  backbone: manifest.backbone.onnx.file,
  backboneQ8: manifest.backbone.int8.file,
  head: manifest.onnx.file,
  headNnef: manifest.nnef.file,
};
const tractBytes = size([join(pkgDir, 'wasm_infer_bg.wasm'), join(pkgDir, 'wasm_infer.js')]);
const relaxedBytes = size([join(relaxedDir, 'wasm_infer_bg.wasm'), join(pkgDir, 'wasm_infer.js')]);
// The threaded module: its own glue, and the pool's worker script (a wasm-bindgen snippet).
const snippets = (dir) => readdirSync(dir, { recursive: true }).filter((f) => f.endsWith('.js')).map((f) => join(dir, f));
const threadsBytes = size([join(threadsDir, 'wasm_infer_bg.wasm'), join(threadsDir, 'wasm_infer.js'), ...snippets(join(threadsDir, 'snippets'))]);
const ortBytes = size([join(ortDir, 'ort-wasm-simd-threaded.wasm'), join(ortDir, 'ort-wasm-simd-threaded.mjs'), join(ortDir, 'ort.wasm.min.mjs')]);

// Rounds interleave the engines, so a slow spell of this shared machine hits all of them.
const engines = ['tract', 'tract-relaxed', 'ort', 'tract-2', 'ort-2'];
const got = Object.fromEntries(engines.map((e) => [e, []]));
for (let r = 0; r < rounds; r++) for (const e of engines) got[e].push(await measure(e));
server.close();
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
// Per engine: cold starts and session creation, median over rounds; model runs, median and
// p90 of the per-round figures' median.
const summary = (e) => {
  const visits = got[e];
  return {
    cold: median(visits.map(([a]) => a.cold)),
    cached: median(visits.map(([, b]) => b.cold)),
    sessionMs: median(visits.map(([a]) => a.sessionMs)),
    cachedSessionMs: median(visits.map(([, b]) => b.sessionMs)),
    run: median(visits.map(([a]) => a.model.median)),
    p90: median(visits.map(([a]) => a.model.p90)),
    perRound: visits.map(([a]) => a.model.median),
    full: e.startsWith('ort') || !visits[0][0].full ? null : median(visits.map(([a]) => a.full.median)),
    probs: visits[0][0].probs,
    top: visits[0][0].top,
  };
};
const t = summary('tract');
const x = summary('tract-relaxed');
const o = summary('ort');
const o2 = summary('ort-2');
const t2 = summary('tract-2');
if (!got['ort-2'][0][0].isolated) throw new Error('the page is not cross-origin isolated: no threads');
const argmax = (v) => v.indexOf(Math.max(...v));
const maxDiff = (a, b) => Math.max(...a.map((p, i) => Math.abs(p - b[i])));
const mb = (n) => (n / 1e6).toFixed(2);
const f = (v) => v.toFixed(1);
const r2 = (a, b) => (a / b).toFixed(2);
console.log(`model (${manifest.task}, ${manifest.model_id}): backbone ${statSync(join(modelDir, files.backbone)).size} bytes (f32; 8-bit: ${statSync(join(modelDir, files.backboneQ8)).size}) + head ${statSync(join(modelDir, files.head)).size} bytes (NNEF: ${statSync(join(modelDir, files.headNnef)).size}); ${rounds} rounds, engines interleaved; each round one fresh profile per engine: a first visit (uncached, 5 warm-up + ${runs} timed runs) then a returning visit (runtime and model from the HTTP cache)`);
if (manifest.task === 'classify') {
  console.log(`agreement on the shared input: tract simd128 vs ort same top-1 = ${argmax(t.probs) === argmax(o.probs)}, max |Δp| = ${maxDiff(t.probs, o.probs).toExponential(1)}; relaxed vs simd128 same top-1 = ${argmax(x.probs) === argmax(t.probs)}, max |Δp| = ${maxDiff(x.probs, t.probs).toExponential(1)}`);
} else {
  // tract runs the 8-bit backbone, onnxruntime the f32 one: the outputs differ by that.
  console.log(`agreement on the shared input (${t.probs.length} outputs): tract simd128 vs ort max |Δ| = ${maxDiff(t.probs, o.probs).toExponential(1)}; relaxed vs simd128 max |Δ| = ${maxDiff(x.probs, t.probs).toExponential(1)}`);
}
console.log(`2 threads: tract vs its 1-thread run same top-1 = ${argmax(t2.probs) === argmax(t.probs)}, max |Δ| = ${maxDiff(t2.probs, t.probs).toExponential(1)}`);
console.log(`model run median per round, ms: tract simd128 ${t.perRound.map(f).join(' / ')}; tract relaxed ${x.perRound.map(f).join(' / ')}; ort ${o.perRound.map(f).join(' / ')}; tract 2 threads ${t2.perRound.map(f).join(' / ')}; ort 2 threads ${o2.perRound.map(f).join(' / ')}`);
console.log('');
console.log('| engine | cold start uncached: navigation → first output, ms | cold start cached, ms | session create uncached / cached, ms | model run median ms | p90 ms | runtime shipped (wasm + js), MB raw / gzip |');
console.log('|---|---|---|---|---|---|---|');
const row = (name, s, b) => console.log(`| ${name} | ${f(s.cold)} | ${f(s.cached)} | ${f(s.sessionMs)} / ${f(s.cachedSessionMs)} | ${f(s.run)} | ${f(s.p90)} | ${mb(b.raw)} / ${mb(b.gzip)} |`);
row('tract-wasm (wasm-infer, simd128)', t, tractBytes);
row('tract-wasm (wasm-infer, simd128 + relaxed SIMD; not shipped)', x, relaxedBytes);
row('onnxruntime-web 1.30 (wasm, 1 thread)', o, ortBytes);
row('tract-wasm (wasm-infer, simd128, atomics: 2 threads, in a worker)', t2, threadsBytes);
row('onnxruntime-web 1.30 (wasm, 2 threads)', o2, ortBytes);
const ratio = (name, s, b) => console.log(`| ratio ${name} / ort | ${r2(s.cold, o.cold)} | ${r2(s.cached, o.cached)} | ${r2(s.sessionMs, o.sessionMs)} / ${r2(s.cachedSessionMs, o.cachedSessionMs)} | ${r2(s.run, o.run)} | ${r2(s.p90, o.p90)} | ${r2(b.gzip, ortBytes.gzip)} (gzip) |`);
ratio('tract simd128', t, tractBytes);
ratio('tract relaxed', x, relaxedBytes);
console.log(`| ratio tract 2 threads / ort 2 threads | ${r2(t2.cold, o2.cold)} | ${r2(t2.cached, o2.cached)} | ${r2(t2.sessionMs, o2.sessionMs)} / ${r2(t2.cachedSessionMs, o2.cachedSessionMs)} | ${r2(t2.run, o2.run)} | ${r2(t2.p90, o2.p90)} | ${r2(threadsBytes.gzip, ortBytes.gzip)} (gzip) |`);
console.log('');
if (t.full !== null) console.log(`tract full path (decode PNG + preprocess + run, classifyImage), median over rounds: simd128 ${f(t.full)} ms, relaxed ${f(x.full)} ms; top-1 ${t.top[0].label} (${t.top[0].score.toFixed(3)})`);
// Bytes a browser downloads: on the first visit (runtime + backbone + head) and after a retrain
// (the new head only: both engines given the same split files, the backbone cached).
const tractModel = size([join(modelDir, files.backboneQ8), join(modelDir, files.headNnef)]);
const ortModel = size([join(modelDir, files.backbone), join(modelDir, files.head)]);
const update = size([join(modelDir, files.headNnef)]);
const ortUpdate = size([join(modelDir, files.head)]);
console.log('');
console.log('| engine | first visit: runtime + backbone + head, MB raw / gzip | update after a retrain (head), KB raw / gzip |');
console.log('|---|---|---|');
console.log(`| tract-wasm, 8-bit backbone | ${mb(tractBytes.raw + tractModel.raw)} / ${mb(tractBytes.gzip + tractModel.gzip)} | ${(update.raw / 1e3).toFixed(1)} / ${(update.gzip / 1e3).toFixed(1)} |`);
console.log(`| onnxruntime-web, f32 backbone | ${mb(ortBytes.raw + ortModel.raw)} / ${mb(ortBytes.gzip + ortModel.gzip)} | ${(ortUpdate.raw / 1e3).toFixed(1)} / ${(ortUpdate.gzip / 1e3).toFixed(1)} |`);
console.log(`| ratio tract / ort | ${((tractBytes.gzip + tractModel.gzip) / (ortBytes.gzip + ortModel.gzip)).toFixed(2)} (gzip) | ${(update.gzip / ortUpdate.gzip).toFixed(2)} (gzip) |`);
