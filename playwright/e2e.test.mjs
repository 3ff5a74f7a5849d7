// End-to-end: the real api binary on loopback with a fresh data folder (it imports the bundled
// photos and trains its first model), the built web app (scripts/build-web.sh), headless
// Chromium. Run by scripts/e2e.sh (scripts/test.sh runs it).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer } from 'node:net';
import { chromium } from 'playwright-core';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const apiBin = process.env.EDGEML_API_BIN || join(root, 'target/release/api');
const dist = process.env.EDGEML_WEB_DIST || join(root, 'dist');
const photos = join(root, 'assets/datasets/tuxpaint-photos');
const shots = join(root, 'playwright/screenshots');
const TOKEN = 'e2e-admin-token-0123456789';
const chromiumArgs = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let api; let base; let dataDir; let profile; let context; let page;
const apiRequests = [];

const freePort = () => new Promise((ok) => {
  const s = createServer();
  s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => ok(p)); });
});
const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms).unref());

// The trainer's split: first 8 bytes of the sha256, big-endian, mod 100; ≥ 90 is test.
function testSplitPhotos() {
  const out = [];
  const labels = readdirSync(photos, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  for (const label of labels) {
    for (const f of readdirSync(join(photos, label)).filter((n) => n.endsWith('.png')).sort()) {
      const bytes = readFileSync(join(photos, label, f));
      const d = createHash('sha256').update(bytes).digest();
      if (d.readBigUInt64BE(0) % 100n >= 90n) out.push({ label, path: join(photos, label, f), bytes });
    }
  }
  return out;
}

async function serverPredict(bytes) {
  const fd = new FormData();
  fd.append('file', new Blob([bytes]), 'x.png');
  const r = await fetch(`${base}/api/predict?k=5`, { method: 'POST', body: fd });
  assert.equal(r.status, 200);
  return r.json();
}

async function classifyInPage(path, { drop = false } = {}) {
  const run = Number(await page.locator('[data-testid=predictions]').getAttribute('data-run', { timeout: 100 }).catch(() => 0)) + 1;
  if (drop) {
    // Drop the file on the drop zone, as a user dragging it from their desktop.
    const bytes = [...readFileSync(path)];
    const dt = await page.evaluateHandle(([b, name]) => {
      const t = new DataTransfer();
      t.items.add(new File([new Uint8Array(b)], name, { type: 'image/png' }));
      return t;
    }, [bytes, path.split('/').pop()]);
    await page.locator('[data-testid=drop]').dispatchEvent('drop', { dataTransfer: dt });
  } else {
    await page.locator('[data-testid=file]').setInputFiles(path);
  }
  const list = page.locator(`[data-testid=predictions][data-run="${run}"]`);
  await list.waitFor({ timeout: 60_000 });
  return list.locator('li').evaluateAll((lis) => lis.map((li) => ({ label: li.dataset.label, score: Number(li.dataset.score) })));
}

before(async () => {
  mkdirSync(shots, { recursive: true });
  dataDir = mkdtempSync(join(tmpdir(), 'edgeml-e2e-'));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  api = spawn(apiBin, ['--data-dir', dataDir, '--listen', `127.0.0.1:${port}`, '--static-dir', dist,
    '--admin-token', TOKEN, '--seed-dir', photos], { stdio: ['ignore', 'inherit', 'inherit'] });
  const t0 = Date.now();
  for (;;) {
    try {
      const r = await fetch(`${base}/api/models/current`);
      if (r.status === 200) break;
    } catch { /* not listening yet */ }
    assert.ok(Date.now() - t0 < 600_000, 'the first model was not trained within 10 minutes');
    await sleep(1000);
  }
  profile = mkdtempSync(join(tmpdir(), 'edgeml-chromium-'));
  context = await chromium.launchPersistentContext(profile, { executablePath: '/usr/bin/chromium', headless: true, args: chromiumArgs });
  page = context.pages()[0] || await context.newPage();
  page.on('request', (req) => { const u = new URL(req.url()); if (u.pathname.startsWith('/api/')) apiRequests.push(`${req.method()} ${u.pathname}`); });
});

after(async () => {
  await context?.close();
  api?.kill('SIGTERM');
  rmSync(profile, { recursive: true, force: true });
  rmSync(dataDir, { recursive: true, force: true });
});

test('classifies a test-split photo in the browser, like native tract, without the server', async () => {
  await page.goto(base);
  await page.locator('[data-testid=status]').filter({ hasText: /^ready/ }).waitFor({ timeout: 120_000 });
  const model = await (await fetch(`${base}/api/models/current`)).json();
  assert.match(await page.locator('[data-testid=model]').innerText(), new RegExp(model.model_id));
  // A test-split photo (never trained on) that the model gets right on the server.
  let chosen = null; let server = null;
  for (const p of testSplitPhotos()) {
    server = await serverPredict(p.bytes);
    if (server.predictions[0].label === p.label) { chosen = p; break; }
  }
  assert.ok(chosen, 'the model classifies at least one test-split photo correctly');
  const before = apiRequests.length;
  const got = await classifyInPage(chosen.path);
  await page.screenshot({ path: join(shots, 'predict.png'), fullPage: true });
  assert.equal(got[0].label, chosen.label, 'expected label in the browser');
  assert.equal(got.length, server.predictions.length);
  for (const [b, s] of got.map((g, i) => [g, server.predictions[i]])) {
    assert.equal(b.label, s.label);
    assert.ok(Math.abs(b.score - s.score) <= 1e-4, `${b.label}: browser ${b.score} vs native ${s.score}`);
  }
  const during = apiRequests.slice(before);
  assert.deepEqual(during.filter((r) => r.includes('/api/predict')), [], 'no server prediction');
  assert.deepEqual(during, [], 'no api request at all while classifying');
});

test('works offline after the first visit: reload offline, classify again', async () => {
  await page.evaluate(() => navigator.serviceWorker.ready.then(() => true));
  await page.locator('[data-testid=offline-ready]').waitFor({ state: 'visible' });
  const photo = testSplitPhotos()[0];
  const online = await classifyInPage(photo.path);
  await context.setOffline(true);
  try {
    await page.reload();
    await page.locator('[data-testid=status]').filter({ hasText: /^ready/ }).waitFor({ timeout: 60_000 });
    assert.equal(await page.locator('[data-testid=online]').innerText(), 'offline');
    const offline = await classifyInPage(photo.path, { drop: true });
    await page.screenshot({ path: join(shots, 'predict-offline.png'), fullPage: true });
    assert.deepEqual(offline.map((p) => p.label), online.map((p) => p.label));
    for (const [a, b] of offline.map((p, i) => [p, online[i]])) assert.ok(Math.abs(a.score - b.score) <= 1e-6);
  } finally {
    await context.setOffline(false);
  }
});

test('offers a newer champion and switches to it with one click', async () => {
  const admin = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
  const r = await fetch(`${base}/api/train`, {
    method: 'POST', headers: admin,
    body: JSON.stringify({ params: { epochs: 5, patience: 5, views: 1, seed: 7 } }),
  });
  assert.equal(r.status, 202);
  const run = await r.json();
  let done;
  for (const t0 = Date.now(); ; await sleep(1000)) {
    done = await (await fetch(`${base}/api/train/${run.id}`)).json();
    if (['succeeded', 'failed', 'cancelled'].includes(done.status)) break;
    assert.ok(Date.now() - t0 < 600_000, 'retrain did not finish');
  }
  assert.equal(done.status, 'succeeded', done.error);
  const fresh = done.model_id;
  const info = await (await fetch(`${base}/api/models/${fresh}`)).json();
  if (info.stage !== 'champion') {
    const p = await fetch(`${base}/api/models/${fresh}/promote`, { method: 'POST', headers: admin });
    assert.equal(p.status, 200);
  }
  const notice = page.locator('[data-testid=update]');
  await notice.waitFor({ timeout: 60_000 });
  assert.match(await notice.innerText(), new RegExp(fresh));
  await page.screenshot({ path: join(shots, 'update-offered.png'), fullPage: true });
  await page.locator('[data-testid=switch]').click();
  await page.locator('[data-testid=model]').filter({ hasText: fresh }).waitFor({ timeout: 120_000 });
  await page.locator('[data-testid=status]').filter({ hasText: /^ready/ }).waitFor({ timeout: 120_000 });
  assert.equal(await notice.count(), 0, 'the notice is gone after switching');
  const got = await classifyInPage(testSplitPhotos()[0].path);
  assert.equal(got.length, 5);
  const cached = await page.evaluate(async () => (await (await caches.open('edgeml-models')).keys()).map((k) => k.url));
  assert.equal(cached.length, 1, `one model version cached: ${cached}`);
  assert.match(cached[0], new RegExp(`/api/models/${fresh}/model.onnx$`));
});
