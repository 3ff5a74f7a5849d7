// Shared by the browser benchmarks: a static server on loopback and "one page per engine in a
// fresh Chromium profile, wait for window.result".
import { createServer } from 'node:http';
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { join, extname } from 'node:path';
import { tmpdir } from 'node:os';
import { chromium } from 'playwright-core';

const types = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json', '.png': 'image/png', '.bin': 'application/octet-stream', '.onnx': 'application/octet-stream' };

// files: exact path → file; dirs: [prefix, folder] served below the prefix. Resolves to the
// server and its base URL. Files below a prefix in `cacheable` may be kept by the browser's
// HTTP cache (a returning visit); everything else is `no-store`.
export async function serve(files, dirs, cacheable = []) {
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    let file = files[url.pathname] || null;
    if (!file) for (const [prefix, dir] of dirs) if (url.pathname.startsWith(prefix)) file = join(dir, url.pathname.slice(prefix.length).replace(/\.\./g, ''));
    try {
      const body = readFileSync(file);
      const keep = cacheable.some((prefix) => url.pathname.startsWith(prefix));
      // Cross-origin isolated (COOP + COEP), so SharedArrayBuffer and wasm threads are allowed
      // (onnxruntime-web's 2-thread row) and performance.now() is fine-grained.
      res.writeHead(200, {
        'content-type': types[extname(file)] || 'application/octet-stream',
        'cache-control': keep ? 'max-age=3600, immutable' : 'no-store',
        'cross-origin-opener-policy': 'same-origin',
        'cross-origin-embedder-policy': 'require-corp',
      });
      res.end(body);
    } catch {
      res.writeHead(404); res.end();
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { server, base: `http://127.0.0.1:${server.address().port}` };
}

const args = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

// Load `url` in a fresh headless Chromium and return the page's window.result; with `again`,
// then load `again` in the same profile (what its HTTP cache kept) and return both results.
export async function measure(url, what, again = null) {
  const dir = mkdtempSync(join(tmpdir(), 'edgeml-bench-'));
  const ctx = await chromium.launchPersistentContext(dir, { executablePath: '/usr/bin/chromium', headless: true, args });
  try {
    const visit = async (page, target) => {
      await page.goto(target);
      await page.waitForFunction(() => window.result, null, { timeout: 600_000, polling: 200 });
      const r = await page.evaluate(() => window.result);
      if (r.error) throw new Error(`${what}: ${r.error}`);
      return r;
    };
    const page = await ctx.newPage();
    const first = await visit(page, url);
    if (!again) return first;
    await page.close();
    return [first, await visit(await ctx.newPage(), again)];
  } finally {
    await ctx.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
