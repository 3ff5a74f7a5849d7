// Shared by the end-to-end suites: the real api binary on loopback with a fresh data folder (it
// imports the bundled photos and trains its first model), headless Chromium (Debian package),
// the bundled photos' test split, small PNGs no one uploaded before, and the accessibility check
// (axe-core, every rule, zero violations).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer } from 'node:net';
import { deflateSync } from 'node:zlib';
import { chromium } from 'playwright-core';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const apiBin = process.env.EDGEML_API_BIN || join(root, 'target/release/api');
export const trainerBin = process.env.EDGEML_TRAINER_BIN || join(root, 'target/release/trainer');
export const dist = process.env.EDGEML_WEB_DIST || join(root, 'dist');
export const photos = join(root, 'assets/datasets/tuxpaint-photos');
export const shots = join(root, 'playwright/screenshots');
export const TOKEN = 'e2e-admin-token-0123456789';
export const admin = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
const chromiumArgs = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  // A synthetic camera, allowed without a prompt (for the camera test).
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'];
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

export const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms).unref());

const freePort = () => new Promise((ok) => {
  const s = createServer();
  s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => ok(p)); });
});

export async function waitFor(what, f, ms = 60_000) {
  for (const t0 = Date.now(); ; await sleep(500)) {
    const v = await f();
    if (v) return v;
    assert.ok(Date.now() - t0 < ms, `timed out waiting for ${what}`);
  }
}

// The api on a free loopback port with a fresh data folder, once its first model is served.
// Resolves to { base, stop }. `quiet`: its log is not shown.
export async function startApi({ quiet = false } = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), 'edgeml-e2e-'));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const api = spawn(apiBin, ['--data-dir', dataDir, '--listen', `127.0.0.1:${port}`, '--static-dir', dist,
    '--admin-token', TOKEN, '--seed-dir', photos], { cwd: root, stdio: ['ignore', quiet ? 'ignore' : 'inherit', quiet ? 'ignore' : 'inherit'] });
  let exited = null;
  api.on('exit', (code) => { exited = code; });
  const t0 = Date.now();
  for (;;) {
    assert.equal(exited, null, 'the api exited before serving its first model');
    try {
      const r = await fetch(`${base}/api/models/current`);
      if (r.status === 200) break;
    } catch { /* not listening yet */ }
    assert.ok(Date.now() - t0 < 600_000, 'the first model was not trained within 10 minutes');
    await sleep(1000);
  }
  const stop = () => { api.kill('SIGTERM'); rmSync(dataDir, { recursive: true, force: true }); };
  return { base, stop };
}

// Chromium with a fresh profile. `options` go to launchPersistentContext (viewport, isMobile…).
// Resolves to { context, page, close }.
export async function launch(options = {}) {
  const profile = mkdtempSync(join(tmpdir(), 'edgeml-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium', headless: true, args: chromiumArgs, ...options,
  });
  const page = context.pages()[0] || await context.newPage();
  const close = async () => { await context.close(); rmSync(profile, { recursive: true, force: true }); };
  return { context, page, close };
}

// axe-core on the page as it is now: every rule axe runs by default (WCAG 2.0–2.2 A/AA and best
// practices), zero violations of any impact. Evaluated through the DevTools protocol, which the
// api's Content-Security-Policy does not apply to (no script tag is added to the page).
export async function assertAccessible(page, state) {
  const violations = await page.evaluate(async (src) => {
    if (!window.axe) (0, eval)(src);
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({
      id: v.id, impact: v.impact, help: v.help,
      nodes: v.nodes.slice(0, 5).map((n) => `${n.target.join(' ')}: ${n.failureSummary}`),
    }));
  }, axeSource);
  assert.deepEqual(violations, [], `axe-core violations on ${state}:\n${JSON.stringify(violations, null, 2)}`);
}

// Train a ranking model (30 epochs) and make it the champion; resolves to its id.
export async function trainRankChampion(base) {
  return trainChampion(base, 'rank', { epochs: 30 });
}

// Train a `task` model through the api, wait for the run, make it the champion if the gate
// did not; its model id.
export async function trainChampion(base, task, params) {
  const r = await fetch(`${base}/api/train`, {
    method: 'POST', headers: admin, body: JSON.stringify({ task, params }),
  });
  assert.equal(r.status, 202);
  const run = await r.json();
  const done = await waitFor(`the ${task} run`, async () => {
    const d = await (await fetch(`${base}/api/train/${run.id}`)).json();
    return ['succeeded', 'failed', 'cancelled'].includes(d.status) ? d : null;
  }, 600_000);
  assert.equal(done.status, 'succeeded', done.error);
  const info = await (await fetch(`${base}/api/models/${done.model_id}`)).json();
  if (info.stage !== 'champion') {
    assert.equal((await fetch(`${base}/api/models/${done.model_id}/promote`, { method: 'POST', headers: admin })).status, 200);
  }
  assert.equal((await (await fetch(`${base}/api/models/current?task=${task}`)).json()).model_id, done.model_id);
  return done.model_id;
}

// The trainer's split: first 8 bytes of the sha256, big-endian, mod 100; ≥ 90 is test.
export function testSplitPhotos() {
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

// A small RGB PNG no one has uploaded before (content depends on `seed`).
const crcTable = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
export function makePng(w, h, seed) {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4); ihdr[8] = 8; ihdr[9] = 2;
  const raw = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const o = y * (w * 3 + 1) + 1 + x * 3;
      raw[o] = (x * 5 + seed * 37) & 255; raw[o + 1] = (y * 3 + seed * 11) & 255; raw[o + 2] = ((x ^ y) + seed) & 255;
    }
  }
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

// The server's prediction for an image's bytes.
export async function serverPredict(base, bytes) {
  const fd = new FormData();
  fd.append('file', new Blob([bytes]), 'x.png');
  const r = await fetch(`${base}/api/predict?k=5`, { method: 'POST', body: fd });
  assert.equal(r.status, 200);
  return r.json();
}

// Classify a file on the Predict page (picked, or dropped on the drop zone); resolves to the
// list shown, once the new result is on the page.
export async function classifyInPage(page, path, { drop = false } = {}) {
  const run = Number(await page.locator('[data-testid=predictions]').getAttribute('data-run', { timeout: 100 }).catch(() => 0)) + 1;
  await give(page, path, drop);
  return predictionsShown(page, run);
}

// Give the Predict page a file: picked, or dropped on the drop zone as a user dragging it from
// their desktop.
async function give(page, path, drop) {
  if (!drop) {
    await page.locator('[data-testid=file]').setInputFiles(path);
    return;
  }
  const bytes = [...readFileSync(path)];
  const dt = await page.evaluateHandle(([b, name]) => {
    const t = new DataTransfer();
    t.items.add(new File([new Uint8Array(b)], name, { type: 'image/png' }));
    return t;
  }, [bytes, path.split('/').pop()]);
  await page.locator('[data-testid=drop]').dispatchEvent('drop', { dataTransfer: dt });
}

// The `run`-th result's list, once it is on the page.
export async function predictionsShown(page, run) {
  const list = page.locator(`[data-testid=predictions][data-run="${run}"]`);
  await list.waitFor({ timeout: 60_000 });
  return list.locator('li').evaluateAll((lis) => lis.map((li) => ({ label: li.dataset.label, score: Number(li.dataset.score) })));
}

// Intersection over union of two [x, y, w, h] boxes (contract::detection::iou).
export function iou(a, b) {
  const iw = Math.max(0, Math.min(a[0] + a[2], b[0] + b[2]) - Math.max(a[0], b[0]));
  const ih = Math.max(0, Math.min(a[1] + a[3], b[1] + b[3]) - Math.max(a[1], b[1]));
  const inter = iw * ih;
  const union = a[2] * a[3] + b[2] * b[3] - inter;
  return union > 0 ? inter / union : 0;
}

// Drag a box [x, y, w, h] (in the image's pixels) over a box editor's canvas, as a hand does:
// press at one corner, move through the middle, release at the other.
export async function drag(page, canvas, [x, y, w, h]) {
  const el = page.locator(canvas);
  const [, , iw, ih] = (await el.getAttribute('viewBox')).split(' ').map(Number);
  const bb = await el.boundingBox();
  const sx = bb.width / iw; const sy = bb.height / ih;
  await page.mouse.move(bb.x + x * sx, bb.y + y * sy);
  await page.mouse.down();
  await page.mouse.move(bb.x + (x + w / 2) * sx, bb.y + (y + h / 2) * sy, { steps: 4 });
  await page.mouse.move(bb.x + (x + w) * sx, bb.y + (y + h) * sy, { steps: 4 });
  await page.mouse.up();
}

// Find the objects in a file on the Predict page (its Detect tab; picked, or dropped on the
// drop zone); resolves to the boxes listed, once the new answer is on the page.
export async function detectInPage(page, path, { drop = false } = {}) {
  const run = Number(await page.locator('[data-testid=detected]').getAttribute('data-run', { timeout: 100 }).catch(() => 0)) + 1;
  await give(page, path, drop);
  await page.locator(`[data-testid=detected][data-run="${run}"]`).waitFor({ timeout: 120_000 });
  return page.locator('[data-testid=boxes] li').evaluateAll((lis) => lis.map((li) => ({
    label: li.dataset.label, score: Number(li.dataset.score), bbox: li.dataset.bbox.split(',').map(Number),
  })));
}
