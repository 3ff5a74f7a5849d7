// Browser benchmark (not a test): the same ONNX run by tract-wasm (wasm-infer) and by
// onnxruntime-web (wasm backend, 1 thread) in the same headless Chromium. Prints a markdown
// table: cold start, median/p90 of N runs, bytes shipped (raw and gzip), ratios.
//
//   node bench.mjs MODEL_DIR WASM_PKG_DIR INPUT_BIN PHOTO_PNG [RUNS]
import { readFileSync, statSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serve, measure as load } from './harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const [modelDir, pkgDir, inputBin, photo, runsArg] = process.argv.slice(2);
const runs = Number(runsArg || 50);
const ortDir = join(here, 'node_modules/onnxruntime-web/dist');
const { server, base } = await serve(
  { '/': join(here, 'page.html'), '/page.js': join(here, 'page.js'), '/input.bin': resolve(inputBin), '/photo.png': resolve(photo), '/photo2.png': resolve(process.env.BENCH_PHOTO2 || photo) },
  [['/pkg/', resolve(pkgDir)], ['/ort/', ortDir], ['/model/', resolve(modelDir)]],
);
const measure = (engine) => load(`${base}/?engine=${engine}&runs=${runs}`, engine);

const size = (files) => files.reduce((acc, f) => {
  const b = readFileSync(f);
  return { raw: acc.raw + b.length, gzip: acc.gzip + gzipSync(b, { level: 9 }).length };
}, { raw: 0, gzip: 0 });
const tractBytes = size([join(pkgDir, 'wasm_infer_bg.wasm'), join(pkgDir, 'wasm_infer.js')]);
const ortBytes = size([join(ortDir, 'ort-wasm-simd-threaded.wasm'), join(ortDir, 'ort-wasm-simd-threaded.mjs'), join(ortDir, 'ort.wasm.min.mjs')]);

const t = await measure('tract');
const o = await measure('ort');
server.close();
const diff = Math.max(...t.probs.map((p, i) => Math.abs(p - o.probs[i])));
const argmax = (v) => v.indexOf(Math.max(...v));
const mb = (n) => (n / 1e6).toFixed(2);
const f = (x) => x.toFixed(1);
console.log(`model: backbone ${statSync(join(modelDir, 'backbone.onnx')).size} bytes (f32; 8-bit: ${statSync(join(modelDir, 'backbone.q8')).size}) + head ${statSync(join(modelDir, 'head.onnx')).size} bytes (NNEF: ${statSync(join(modelDir, 'head.nnef')).size}); ${runs} timed runs after 5 warm-up runs, one page per engine, fresh profile each`);
console.log(`agreement on the shared input: same top-1 = ${argmax(t.probs) === argmax(o.probs)}, max |Δp| = ${diff.toExponential(1)}`);
console.log('');
console.log('| engine | cold start: navigation → first output, ms | session create, ms | model run median ms | p90 ms | runtime shipped (wasm + js), MB raw / gzip |');
console.log('|---|---|---|---|---|---|');
console.log(`| tract-wasm (wasm-infer, simd128) | ${f(t.cold)} | ${f(t.sessionMs)} | ${f(t.model.median)} | ${f(t.model.p90)} | ${mb(tractBytes.raw)} / ${mb(tractBytes.gzip)} |`);
console.log(`| onnxruntime-web 1.30 (wasm, 1 thread) | ${f(o.cold)} | ${f(o.sessionMs)} | ${f(o.model.median)} | ${f(o.model.p90)} | ${mb(ortBytes.raw)} / ${mb(ortBytes.gzip)} |`);
console.log(`| ratio tract / ort | ${(t.cold / o.cold).toFixed(2)} | ${(t.sessionMs / o.sessionMs).toFixed(2)} | ${(t.model.median / o.model.median).toFixed(2)} | ${(t.model.p90 / o.model.p90).toFixed(2)} | ${(tractBytes.gzip / ortBytes.gzip).toFixed(2)} (gzip) |`);
console.log('');
console.log(`tract full path (decode PNG + preprocess + run, classifyImage): median ${f(t.full.median)} ms, p90 ${f(t.full.p90)} ms; top-1 ${t.top[0].label} (${t.top[0].score.toFixed(3)})`);
// Bytes a browser downloads: on the first visit (runtime + backbone + head) and after a retrain
// (the new head only: both engines given the same split files, the backbone cached).
const tractModel = size([join(modelDir, 'backbone.q8'), join(modelDir, 'head.nnef')]);
const ortModel = size([join(modelDir, 'backbone.onnx'), join(modelDir, 'head.onnx')]);
const update = size([join(modelDir, 'head.nnef')]);
const ortUpdate = size([join(modelDir, 'head.onnx')]);
console.log('');
console.log('| engine | first visit: runtime + backbone + head, MB raw / gzip | update after a retrain (head), KB raw / gzip |');
console.log('|---|---|---|');
console.log(`| tract-wasm, 8-bit backbone | ${mb(tractBytes.raw + tractModel.raw)} / ${mb(tractBytes.gzip + tractModel.gzip)} | ${(update.raw / 1e3).toFixed(1)} / ${(update.gzip / 1e3).toFixed(1)} |`);
console.log(`| onnxruntime-web, f32 backbone | ${mb(ortBytes.raw + ortModel.raw)} / ${mb(ortBytes.gzip + ortModel.gzip)} | ${(ortUpdate.raw / 1e3).toFixed(1)} / ${(ortUpdate.gzip / 1e3).toFixed(1)} |`);
console.log(`| ratio tract / ort | ${((tractBytes.gzip + tractModel.gzip) / (ortBytes.gzip + ortModel.gzip)).toFixed(2)} (gzip) | ${(update.gzip / ortUpdate.gzip).toFixed(2)} (gzip) |`);
