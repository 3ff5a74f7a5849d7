// Products benchmark (not a test): the product model's head, and backbone + head, run by
// tract-wasm (the app's ProductSession) and by onnxruntime-web (wasm backend, 1 thread) in the
// same headless Chromium, one page per engine, on titles of the model's own test split.
// Prints a markdown table.
//
//   node product.mjs MODEL_DIR ITEMS_JSONL WASM_PKG_DIR PHOTO PHOTO2 [RUNS]
import { readFileSync, statSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { serve, measure as load } from './harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const [modelDir, itemsFile, pkgDir, photo, photo2, runsArg] = process.argv.slice(2);
const runs = Number(runsArg || 100);
// The test split's titles, in the trainer's order (`splits.test`: `FILE:LINE` sources).
const lines = readFileSync(itemsFile, 'utf8').split('\n');
const metrics = JSON.parse(readFileSync(join(modelDir, 'metrics.json'), 'utf8'));
const titles = metrics.splits.test
  .map((s) => JSON.parse(lines[Number(s.slice(s.lastIndexOf(':') + 1)) - 1]).title)
  .filter((t) => /\w/.test(t));
if (titles.length < 20) throw new Error(`only ${titles.length} test titles`);
const { writeFileSync, mkdtempSync } = await import('node:fs');
const tmp = mkdtempSync(join((await import('node:os')).tmpdir(), 'edgeml-product-'));
writeFileSync(join(tmp, 'titles.json'), JSON.stringify(titles));
const ortDir = join(here, 'node_modules/onnxruntime-web/dist');
const { server, base } = await serve(
  { '/': join(here, 'product.html'), '/product.js': join(here, 'product.js'), '/titles.json': join(tmp, 'titles.json'), '/photo.png': resolve(photo), '/photo2.png': resolve(photo2) },
  [['/pkg/', resolve(pkgDir)], ['/ort/', ortDir], ['/model/', resolve(modelDir)]],
);
const measure = (engine) => load(`${base}/?engine=${engine}&runs=${runs}`, engine);
const t = await measure('tract');
const o = await measure('ort');
server.close();

const top = (p) => p.indexOf(Math.max(...p));
const agree = (a, b) => ({
  diff: Math.max(...a.flatMap((row, i) => row.map((x, j) => Math.abs(x - b[i][j])))),
  same: a.filter((row, i) => top(row) === top(b[i])).length,
});
const text = agree(t.textOnly, o.textOnly);
const both = agree(t.withPhoto, o.withPhoto);
const f = (x) => x.toFixed(2);
const size = (name) => statSync(join(modelDir, name)).size;
const gz = (name) => gzipSync(readFileSync(join(modelDir, name)), { level: 9 }).length;
console.log(`${titles.length} test titles; ${runs} timed runs per row after 10 warm-up runs (a quarter of that for the backbone row), one page per engine, 1 thread each`);
console.log(`agreement on 20 titles: title only max |Δp| = ${text.diff.toExponential(1)}, same top-1 ${text.same}/20; with the photo (tract: the 8-bit backbone the app ships, onnxruntime: the f32 one) max |Δp| = ${both.diff.toExponential(1)}, same top-1 ${both.same}/20`);
console.log(`head file: tract NNEF ${size('product_head.nnef')} B (${gz('product_head.nnef')} gzip), onnxruntime ONNX ${size('product_head.onnx')} B (${gz('product_head.onnx')} gzip)`);
console.log('');
console.log('| per title | tract-wasm median ms | p90 | onnxruntime-web median ms | p90 | ratio tract / ort (median) |');
console.log('|---|---|---|---|---|---|');
const row = (name, a, b) => console.log(`| ${name} | ${f(a.median)} | ${f(a.p90)} | ${f(b.median)} | ${f(b.p90)} | ${(a.median / b.median).toFixed(2)} |`);
row('title only (tokenize + head)', t.titleOnly, o.titleOnly);
row('title, the picked image\'s features kept (tokenize + head)', t.titleWithImage, o.titleWithImage);
row('image picked: preprocess + backbone + head (two photos in turn)', t.picked, o.picked);
console.log(`| session built from the files (ms, once) | ${f(t.sessionMs)} | | ${f(o.sessionMs)} | | ${(t.sessionMs / o.sessionMs).toFixed(2)} |`);
