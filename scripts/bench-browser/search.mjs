// Search benchmark (not a test): per query, encode the text and rank a gallery (int8 vectors)
// in headless Chromium, with the text encoder run by tract-wasm and by onnxruntime-web.
// Tokenization (the shared wasm tokenizer) and ranking (the same JavaScript as the app's
// worker) are identical for both; only the encoder differs. Prints a markdown table.
//
//   node search.mjs MODEL_DIR WASM_PKG_DIR [RUNS]
import { createServer } from 'node:http';
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { join, extname, resolve, dirname } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const [modelDir, pkgDir, runsArg] = process.argv.slice(2);
const runs = Number(runsArg || 100);
const ortDir = join(here, 'node_modules/onnxruntime-web/dist');
const types = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json', '.onnx': 'application/octet-stream' };
const routes = [['/pkg/', resolve(pkgDir)], ['/ort/', ortDir], ['/model/', resolve(modelDir)]];
const server = createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  let file = null;
  if (url.pathname === '/') file = join(here, 'search.html');
  else if (url.pathname === '/search.js') file = join(here, 'search.js');
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
