// Search benchmark (not a test): per query, encode the text and rank a gallery (int8 vectors)
// in headless Chromium, with the text encoder run by tract-wasm and by onnxruntime-web.
// Tokenization (the shared wasm tokenizer) and ranking (the same JavaScript as the app's
// worker) are identical for both; only the encoder differs. Prints a markdown table.
//
//   node search.mjs MODEL_DIR WASM_PKG_DIR [RUNS]
import { readFileSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serve, measure as load } from './harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const [modelDir, pkgDir, runsArg] = process.argv.slice(2);
const runs = Number(runsArg || 100);
const ortDir = join(here, 'node_modules/onnxruntime-web/dist');
const { server, base } = await serve(
  { '/': join(here, 'search.html'), '/search.js': join(here, 'search.js') },
  [['/pkg/', resolve(pkgDir)], ['/ort/', ortDir], ['/model/', resolve(modelDir)]],
);
const measure = (engine) => load(`${base}/?engine=${engine}&runs=${runs}`, engine);

const t = await measure('tract');
const o = await measure('ort');
server.close();
const diff = Math.max(...t.embedding.map((x, i) => Math.abs(x - o.embedding[i])));
const f = (x) => x.toFixed(2);
console.log(`text encoder: ${readFileSync(join(modelDir, 'text.onnx')).length} bytes; ${runs} timed queries per row after 10 warm-up queries, one page per engine`);
console.log(`agreement on a query embedding: max |Δ| = ${diff.toExponential(1)}`);
console.log('');
console.log('| per query | tract-wasm median ms | p90 | onnxruntime-web median ms | p90 | ratio tract / ort (median) |');
console.log('|---|---|---|---|---|---|');
console.log(`| text encoding only | ${f(t.encode.median)} | ${f(t.encode.p90)} | ${f(o.encode.median)} | ${f(o.encode.p90)} | ${(t.encode.median / o.encode.median).toFixed(2)} |`);
for (const n of Object.keys(t.search)) {
  console.log(`| encode + rank ${Number(n).toLocaleString('en')} images | ${f(t.search[n].median)} | ${f(t.search[n].p90)} | ${f(o.search[n].median)} | ${f(o.search[n].p90)} | ${(t.search[n].median / o.search[n].median).toFixed(2)} |`);
}
