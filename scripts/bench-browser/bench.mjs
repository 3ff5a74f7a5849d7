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
  { '/': join(here, 'page.html'), '/page.js': join(here, 'page.js'), '/input.bin': resolve(inputBin), '/photo.png': resolve(photo) },
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
console.log(`model: ${statSync(join(modelDir, 'model.onnx')).size} bytes; ${runs} timed runs after 5 warm-up runs, one page per engine, fresh profile each`);
console.log(`agreement on the shared input: same top-1 = ${argmax(t.probs) === argmax(o.probs)}, max |Δp| = ${diff.toExponential(1)}`);
console.log('');
console.log('| engine | cold start: navigation → first output, ms | session create, ms | model run median ms | p90 ms | runtime shipped (wasm + js), MB raw / gzip |');
console.log('|---|---|---|---|---|---|');
console.log(`| tract-wasm (wasm-infer, simd128) | ${f(t.cold)} | ${f(t.sessionMs)} | ${f(t.model.median)} | ${f(t.model.p90)} | ${mb(tractBytes.raw)} / ${mb(tractBytes.gzip)} |`);
console.log(`| onnxruntime-web 1.30 (wasm, 1 thread) | ${f(o.cold)} | ${f(o.sessionMs)} | ${f(o.model.median)} | ${f(o.model.p90)} | ${mb(ortBytes.raw)} / ${mb(ortBytes.gzip)} |`);
console.log(`| ratio tract / ort | ${(t.cold / o.cold).toFixed(2)} | ${(t.sessionMs / o.sessionMs).toFixed(2)} | ${(t.model.median / o.model.median).toFixed(2)} | ${(t.model.p90 / o.model.p90).toFixed(2)} | ${(tractBytes.gzip / ortBytes.gzip).toFixed(2)} (gzip) |`);
console.log('');
console.log(`tract full path (decode PNG + preprocess + run, classifyImage): median ${f(t.full.median)} ms, p90 ${f(t.full.p90)} ms; top-1 ${t.top[0].label} (${t.top[0].score.toFixed(3)})`);
