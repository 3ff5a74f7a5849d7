// Browser benchmark (not a test): the same ONNX run by tract-wasm (wasm-infer) and by
// onnxruntime-web (wasm backend, 1 thread) in the same headless Chromium. Prints a markdown
// table: cold start, median/p90 of N runs, bytes shipped (raw and gzip), ratios.
//
//   node bench.mjs MODEL_DIR WASM_PKG_DIR INPUT_BIN PHOTO_PNG [RUNS]
import { createServer } from 'node:http';
import { readFileSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join, extname, resolve, dirname } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const [modelDir, pkgDir, inputBin, photo, runsArg] = process.argv.slice(2);
const runs = Number(runsArg || 50);
const ortDir = join(here, 'node_modules/onnxruntime-web/dist');
const types = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json', '.png': 'image/png', '.bin': 'application/octet-stream', '.onnx': 'application/octet-stream' };
const routes = [
  ['/pkg/', resolve(pkgDir)], ['/ort/', ortDir], ['/model/', resolve(modelDir)],
];
const server = createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  let file = null;
  if (url.pathname === '/') file = join(here, 'page.html');
  else if (url.pathname === '/page.js') file = join(here, 'page.js');
  else if (url.pathname === '/input.bin') file = resolve(inputBin);
  else if (url.pathname === '/photo.png') file = resolve(photo);
  else for (const [prefix, dir] of routes) if (url.pathname.startsWith(prefix)) file = join(dir, url.pathname.slice(prefix.length).replace(/\.\./g, ''));
  try {
    const body = readFileSync(file);
    res.writeHead(200, { 'content-type': types[extname(file)] || 'application/octet-stream', 'cache-control': 'no-store' });
    res.end(body);
  } catch {
    res.writeHead(404); res.end();
  }
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const base = `http://127.0.0.1:${server.address().port}`;

const args = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
async function measure(engine) {
  const dir = mkdtempSync(join(tmpdir(), 'edgeml-bench-'));
  const ctx = await chromium.launchPersistentContext(dir, { executablePath: '/usr/bin/chromium', headless: true, args });
  try {
    const page = await ctx.newPage();
    await page.goto(`${base}/?engine=${engine}&runs=${runs}`);
    await page.waitForFunction(() => window.result, null, { timeout: 600_000, polling: 200 });
    const r = await page.evaluate(() => window.result);
    if (r.error) throw new Error(`${engine}: ${r.error}`);
    return r;
  } finally {
    await ctx.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

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
