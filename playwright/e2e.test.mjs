// End-to-end: the real api binary on loopback with a fresh data folder (it imports the bundled
// photos and trains its first model), the built web app (scripts/build-web.sh), headless
// Chromium. Run by scripts/e2e.sh (scripts/test.sh runs it).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import {
  TOKEN, admin, assertAccessible, classifyInPage, launch, makePng, photos, serverPredict, shots,
  startApi, testSplitPhotos, trainChampion, trainRankChampion, waitFor,
} from './harness.mjs';

let server; let base; let browser; let context; let page;
const apiRequests = [];
// Model bytes over the wire: { path, bytes } of every model head and backbone response.
const modelResponses = [];

async function pendingOnServer() {
  const r = await fetch(`${base}/api/review?limit=500`, { headers: admin });
  assert.equal(r.status, 200);
  return (await r.json()).images;
}

// A route handler that serves the real response with one byte flipped (same size, another
// sha256).
async function damaged(route) {
  const response = await route.fetch();
  const body = Buffer.from(await response.body());
  body[body.length >> 1] ^= 0xff;
  await route.fulfill({ response, body });
}

before(async () => {
  mkdirSync(shots, { recursive: true });
  server = await startApi();
  base = server.base;
  browser = await launch();
  ({ context, page } = browser);
  page.on('request', (req) => { const u = new URL(req.url()); if (u.pathname.startsWith('/api/')) apiRequests.push(`${req.method()} ${u.pathname}`); });
  page.on('response', async (res) => {
    const path = new URL(res.url()).pathname;
    if (/^\/api\/(backbones\/|models\/[^/]+\/[a-z_]+\.(onnx|nnef)$)/.test(path)) {
      const sizes = await res.request().sizes().catch(() => null);
      modelResponses.push({ path, status: res.status(), bytes: sizes ? sizes.responseBodySize : -1 });
    }
  });
});

after(async () => {
  await browser?.close();
  server?.stop();
});

test('classifies a test-split photo in the browser, like the server, without the server', async () => {
  await page.goto(base);
  await page.locator('[data-testid=status]').filter({ hasText: /^ready/ }).waitFor({ timeout: 120_000 });
  const model = await (await fetch(`${base}/api/models/current`)).json();
  assert.match(await page.locator('[data-testid=model]').innerText(), new RegExp(model.model_id));
  // A test-split photo (never trained on) that the model gets right on the server.
  let chosen = null; let server = null;
  for (const p of testSplitPhotos()) {
    server = await serverPredict(base, p.bytes);
    if (server.predictions[0].label === p.label) { chosen = p; break; }
  }
  assert.ok(chosen, 'the model classifies at least one test-split photo correctly');
  const before = apiRequests.length;
  const got = await classifyInPage(page, chosen.path);
  await page.screenshot({ path: join(shots, 'predict.png'), fullPage: true });
  await assertAccessible(page, 'Predict with a result');
  assert.equal(got[0].label, chosen.label, 'expected label in the browser');
  assert.equal(got.length, server.predictions.length);
  // The browser runs the 8-bit backbone, the server the f32 one it is measured against (same
  // head, same composition): same top-1, and each label's probability within the 8-bit file's
  // measured bound (max |Δp| 0.11 over the 299 bundled photos, BENCHMARKS.md). Bit-level
  // parity of wasm and native tract on one file is the trainer's parity test.
  const serverScore = new Map(server.predictions.map((p) => [p.label, p.score]));
  for (const b of got) {
    if (!serverScore.has(b.label)) continue; // a near-tie at the edge of the top 5
    const s = serverScore.get(b.label);
    assert.ok(Math.abs(b.score - s) <= 0.12, `${b.label}: browser ${b.score} vs server ${s}`);
  }
  const during = apiRequests.slice(before);
  assert.deepEqual(during.filter((r) => r.includes('/api/predict')), [], 'no server prediction');
  assert.deepEqual(during, [], 'no api request at all while classifying');
});

test('works offline after the first visit: reload offline, classify again', async () => {
  await page.evaluate(() => navigator.serviceWorker.ready.then(() => true));
  await page.locator('[data-testid=offline-ready]').waitFor({ state: 'visible' });
  const photo = testSplitPhotos()[0];
  const online = await classifyInPage(page, photo.path);
  await context.setOffline(true);
  try {
    await page.reload();
    await page.locator('[data-testid=status]').filter({ hasText: /^ready/ }).waitFor({ timeout: 60_000 });
    assert.equal(await page.locator('[data-testid=online]').innerText(), 'offline');
    const offline = await classifyInPage(page, photo.path, { drop: true });
    await page.screenshot({ path: join(shots, 'predict-offline.png'), fullPage: true });
    await assertAccessible(page, 'Predict offline with a result');
    assert.deepEqual(offline.map((p) => p.label), online.map((p) => p.label));
    for (const [a, b] of offline.map((p, i) => [p, online[i]])) assert.ok(Math.abs(a.score - b.score) <= 1e-6);
  } finally {
    await context.setOffline(false);
  }
});

test('contributes offline: the upload waits in IndexedDB, survives a reload, reaches the server online', async () => {
  await page.goto(`${base}/#/contribute`);
  await page.locator('[data-testid=label] option[value=animals]').waitFor({ state: 'attached' });
  const files = [1, 2].map((i) => ({ name: `e2e-contribution-${i}.png`, mimeType: 'image/png', buffer: makePng(96, 80, i) }));
  await context.setOffline(true);
  try {
    await page.locator('[data-testid=online]').filter({ hasText: 'offline' }).waitFor();
    await page.locator('[data-testid=label]').selectOption('animals');
    await page.locator('[data-testid=uploader]').fill('e2e');
    await page.locator('[data-testid=files]').setInputFiles(files);
    await page.locator('[data-testid=send]').click();
    await page.locator('[data-testid=waiting][data-count="1"]').waitFor();
    assert.match(await page.locator('[data-testid=message]').innerText(), /kept in this browser/);
    // Kept in IndexedDB: still there after reloading the page (offline, from the service worker).
    await page.reload();
    await page.locator('[data-testid=waiting][data-count="1"]').waitFor({ timeout: 30_000 });
    assert.match(await page.locator('[data-testid=waiting]').innerText(), /e2e-contribution-1\.png, e2e-contribution-2\.png/);
    await page.screenshot({ path: join(shots, 'contribute-offline.png'), fullPage: true });
    await assertAccessible(page, 'Contribute offline with uploads waiting');
    const names = (await pendingOnServer()).map((i) => i.filename);
    assert.ok(!names.includes('e2e-contribution-1.png'), 'nothing reached the server while offline');
  } finally {
    await context.setOffline(false);
  }
  // Back online: the outbox is sent, the page says what became of each file.
  await page.locator('[data-testid=sent][data-count="2"]').waitFor({ timeout: 60_000 });
  const statuses = await page.locator('[data-testid=sent] li').evaluateAll((lis) => lis.map((li) => [li.dataset.file, li.dataset.status]));
  assert.deepEqual(statuses.sort(), [['e2e-contribution-1.png', 'pending'], ['e2e-contribution-2.png', 'pending']]);
  assert.equal(await page.locator('[data-testid=waiting]').getAttribute('data-count'), '0');
  const stored = (await pendingOnServer()).filter((i) => i.filename.startsWith('e2e-contribution-'));
  assert.equal(stored.length, 2);
  for (const i of stored) assert.deepEqual([i.label, i.status, i.uploader], ['animals', 'pending', 'e2e']);
  // The counts table shows them as pending.
  await page.locator('[data-testid=counts] tr[data-label=animals] td:nth-child(3)').filter({ hasText: /^[1-9]/ }).waitFor();
  await page.screenshot({ path: join(shots, 'contribute.png'), fullPage: true });
  await assertAccessible(page, 'Contribute with uploads sent');
});

test('admin: review, retrain with live curves, promote, page offers and loads the new version, rollback', async () => {
  const before = await (await fetch(`${base}/api/models/current`)).json();
  await page.goto(`${base}/#/admin`);
  await page.locator('[data-testid=token]').fill('wrong-token-000000000');
  await page.locator('[data-testid=sign-in]').click();
  await page.locator('[data-testid=sign-in-error]').filter({ hasText: /403/ }).waitFor();
  await assertAccessible(page, 'Admin sign-in refused');
  await page.locator('[data-testid=token]').fill(TOKEN);
  await page.locator('[data-testid=sign-in]').click();
  // The review queue shows the contributions with their thumbnails.
  const card1 = page.locator('[data-testid=review-card][data-file="e2e-contribution-1.png"]');
  const card2 = page.locator('[data-testid=review-card][data-file="e2e-contribution-2.png"]');
  await card1.locator('img.thumb').waitFor();
  await card2.locator('img.thumb').waitFor();
  assert.equal(await card1.locator('img.thumb').evaluate((img) => img.decode().then(() => img.naturalWidth)), 96);
  await page.screenshot({ path: join(shots, 'admin-review.png'), fullPage: true });
  await assertAccessible(page, 'Admin review queue');
  // Relabel one, then reject it; approve the other.
  await card1.locator('[data-testid=card-label]').selectOption('plants');
  await card1.locator('[data-testid=relabel]').click();
  await waitFor('relabel', async () => (await pendingOnServer()).find((i) => i.filename === 'e2e-contribution-1.png')?.label === 'plants');
  await page.locator('[data-testid=review-card][data-file="e2e-contribution-1.png"] [data-testid=reject]').click();
  await page.locator('[data-testid=review-card][data-file="e2e-contribution-2.png"] [data-testid=approve]').click();
  await page.locator('[data-testid=review-card]').first().waitFor({ state: 'detached' }).catch(() => {});
  await waitFor('review', async () => !(await pendingOnServer()).some((i) => i.filename.startsWith('e2e-contribution-')));
  const all = await (await fetch(`${base}/api/images?limit=500`, { headers: admin })).json();
  const byName = Object.fromEntries(all.images.map((i) => [i.filename, i]));
  assert.deepEqual([byName['e2e-contribution-1.png'].status, byName['e2e-contribution-1.png'].label], ['rejected', 'plants']);
  assert.deepEqual([byName['e2e-contribution-2.png'].status, byName['e2e-contribution-2.png'].label], ['approved', 'animals']);

  // The contributor's page says what became of their images (kept across reloads).
  await page.locator('[data-testid=nav-contribute]').click();
  await page.reload();
  await page.locator('[data-testid=sent] li[data-file="e2e-contribution-2.png"][data-status=approved]').waitFor();
  await page.locator('[data-testid=sent] li[data-file="e2e-contribution-1.png"][data-status=rejected]').waitFor();
  assert.match(await page.locator('[data-testid=sent] li[data-file="e2e-contribution-1.png"]').innerText(), /plants/);
  await page.screenshot({ path: join(shots, 'contribute-reviewed.png'), fullPage: true });
  await assertAccessible(page, 'Contribute with review outcomes');
  await page.locator('[data-testid=nav-admin]').click();

  // Retrain from the page; follow its live progress and curves.
  await page.locator('[data-testid=epochs]').fill('5');
  await page.locator('[data-testid=retrain]').click();
  const run = page.locator('[data-testid=run]');
  await run.waitFor();
  const runId = await run.getAttribute('data-run-id');
  // With cached features a retrain is seconds long, most of them the export's checks: any
  // live stage counts.
  await page.locator('[data-testid=run-progress]').filter({ hasText: /epoch|features|exporting/ }).waitFor({ timeout: 300_000 });
  await page.locator('[data-testid=loss-chart]:not([data-points="0"])').waitFor({ timeout: 300_000 });
  await page.screenshot({ path: join(shots, 'admin-training.png'), fullPage: true });
  await assertAccessible(page, 'Admin with a training run live');
  await page.locator('[data-testid=run][data-status=succeeded]').waitFor({ timeout: 600_000 });
  const fresh = (await run.locator('[data-testid=run-model]').innerText()).trim();
  const done = await (await fetch(`${base}/api/train/${runId}`)).json();
  assert.equal(done.model_id, fresh);
  const points = Number(await page.locator('[data-testid=loss-chart]').getAttribute('data-points'));
  assert.equal(points, 2 * done.epochs.length, 'every epoch drawn (train and validation loss)');

  // The new version in the model list, with the gate's verdict; promote it if the gate held
  // it back.
  const row = page.locator(`[data-testid=model-row][data-id="${fresh}"]`);
  await row.waitFor();
  const gate = (await (await fetch(`${base}/api/models/${fresh}`)).json()).gate;
  assert.ok(['promote', 'inconclusive', 'reject'].includes(gate.verdict), JSON.stringify(gate));
  assert.equal((await row.locator('[data-testid=model-verdict]').innerText()).trim(), gate.verdict);
  assert.equal(await row.getAttribute('data-stage') === 'champion', gate.verdict === 'promote');
  if (await row.getAttribute('data-stage') !== 'champion') await row.locator('[data-testid=promote]').click();
  await page.locator(`[data-testid=model-row][data-id="${fresh}"][data-stage=champion]`).waitFor();
  assert.equal((await (await fetch(`${base}/api/models/current`)).json()).model_id, fresh);
  // Its metrics: the confusion matrix covers the test split.
  const detail = page.locator(`[data-testid=model-detail][data-id="${fresh}"]`);
  await detail.waitFor();
  const info = await (await fetch(`${base}/api/models/${fresh}`)).json();
  const cells = await detail.locator('[data-testid=confusion] td').evaluateAll((tds) => tds.map((td) => Number(td.dataset.count)));
  assert.equal(cells.length, info.manifest.labels.length ** 2);
  assert.equal(cells.reduce((a, b) => a + b, 0), info.manifest.metrics.n_test);
  await detail.locator('[data-testid=model-loss-chart]').waitFor();
  // The gate's evidence as Admin shows it: verdict, figure with its interval and n, how the
  // examples were predicted (the bundled photos' test split is small: cross-validation), the
  // test, one row and one plotted interval per comparison.
  const shown = detail.locator('[data-testid=gate]');
  assert.equal(await shown.getAttribute('data-verdict'), gate.verdict);
  assert.equal((await shown.locator('[data-testid=gate-verdict]').innerText()).trim(), gate.verdict);
  const figure = await shown.locator('[data-testid=gate-figure]').innerText();
  assert.match(figure, new RegExp(`n = ${gate.n}\\b`));
  assert.match(figure, /\[\d+\.\d % – \d+\.\d %\]/);
  assert.match(await shown.locator('[data-testid=gate-method]').innerText(), /5-fold cross-validation over train \+ test/);
  assert.match(await shown.locator('[data-testid=gate-test]').innerText(), /paired bootstrap/);
  const compared = await shown.locator('[data-testid=gate-comparison]').evaluateAll((trs) => trs.map((tr) => [tr.dataset.role, tr.dataset.check]));
  const words = { pass: 'clears', unsure: 'cannot tell', fail: 'fails' };
  assert.deepEqual(compared, gate.comparisons.map((c) => [c.role, words[c.check]]));
  assert.ok(gate.comparisons.some((c) => c.against.startsWith('kNN')), JSON.stringify(gate.comparisons));
  assert.ok(gate.comparisons.some((c) => c.role === 'champion' && c.paired), 'the champion paired on the same images');
  assert.equal(await shown.locator('[data-testid=gate-forest] circle').count(), gate.comparisons.length);
  await shown.screenshot({ path: join(shots, 'admin-gate.png') });
  await page.screenshot({ path: join(shots, 'admin-models.png'), fullPage: true });
  await assertAccessible(page, 'Admin models with the gate detail');

  // The page offers the new champion and loads it with one click.
  const notice = page.locator('[data-testid=update]');
  await notice.waitFor({ timeout: 60_000 });
  assert.match(await notice.innerText(), new RegExp(fresh));
  await page.screenshot({ path: join(shots, 'update-offered.png'), fullPage: true });
  await assertAccessible(page, 'a newer model offered');
  const sentBefore = modelResponses.length;
  await page.locator('[data-testid=switch]').click();
  await page.locator('[data-testid=model]').filter({ hasText: fresh }).waitFor({ timeout: 120_000 });
  await page.locator('[data-testid=status]').filter({ hasText: /^ready/ }).waitFor({ timeout: 120_000 });
  assert.equal(await notice.count(), 0, 'the notice is gone after switching');
  // The update is the new head only: the backbone is the one the browser already runs.
  await waitFor('head response sizes', async () => modelResponses.length > sentBefore && modelResponses.slice(sentBefore).every((r) => r.bytes >= 0));
  const update = modelResponses.slice(sentBefore);
  assert.deepEqual(update.map((r) => [r.path, r.status]), [[`/api/models/${fresh}/head.nnef`, 200]]);
  assert.ok(update[0].bytes > 1000 && update[0].bytes < 100_000, `update of ${update[0].bytes} bytes`);
  console.log(`update after a retrain: ${update[0].bytes} bytes over the wire`);
  const cached = await page.evaluate(async () => (await (await caches.open('edgeml-models')).keys()).map((k) => k.url));
  assert.equal(cached.length, 1, `one model version cached: ${cached}`);
  assert.match(cached[0], new RegExp(`/api/models/${fresh}/head.nnef$`));
  // The 8-bit backbone (what the app runs), kept across versions.
  const shipped = info.manifest.backbone.int8;
  assert.ok(shipped.bytes < 4_000_000, `backbone of ${shipped.bytes} bytes`);
  const backbonesCached = await page.evaluate(async () => (await (await caches.open('edgeml-backbones')).keys()).map((k) => new URL(k.url).pathname));
  assert.deepEqual(backbonesCached, [`/api/backbones/${shipped.sha256}.q8`], 'one backbone, kept across versions');
  await page.locator('[data-testid=nav-predict]').click();
  const got = await classifyInPage(page, testSplitPhotos()[0].path);
  assert.equal(got.length, 5);

  // Roll back from the page: the previous champion is back.
  await page.locator('[data-testid=nav-admin]').click();
  await page.locator(`[data-testid=model-row][data-id="${fresh}"] [data-testid=rollback]`).click();
  await page.locator(`[data-testid=model-row][data-id="${before.model_id}"][data-stage=champion]`).waitFor();
  assert.equal((await (await fetch(`${base}/api/models/current`)).json()).model_id, before.model_id);
});

test('a model download that does not match its manifest is refused: not cached, the loaded model keeps answering', async () => {
  // The admin test rolled back: the page still runs the version it switched to, and is offered
  // the champion again, whose file it evicted (so it is downloaded).
  const champion = (await (await fetch(`${base}/api/models/current`)).json()).model_id;
  await page.locator('[data-testid=nav-predict]').click();
  const loaded = (await page.locator('[data-testid=model]').innerText()).replace(/^model /, '');
  assert.notEqual(loaded, champion);
  const cachedModels = () => page.evaluate(async () => (await (await caches.open('edgeml-models')).keys()).map((k) => new URL(k.url).pathname));
  assert.deepEqual(await cachedModels(), [`/api/models/${loaded}/head.nnef`]);
  // The champion's head arrives damaged: one byte flipped (same size, another sha256).
  const url = `${base}/api/models/${champion}/head.nnef`;
  await context.route(url, damaged);
  try {
    await page.locator('[data-testid=update]').waitFor({ timeout: 60_000 });
    await page.locator('[data-testid=switch]').click();
    const status = page.locator('[data-testid=status]');
    await status.filter({ hasText: /does not match the model's manifest/ }).waitFor({ timeout: 60_000 });
    const words = await status.innerText();
    assert.match(words, /sha256/);
    assert.match(words, new RegExp(`still using model ${loaded}`));
    await page.screenshot({ path: join(shots, 'model-refused.png'), fullPage: true });
    await assertAccessible(page, 'a refused model download');
    // Nothing of the refused version was cached; the old one is still there and still answers.
    assert.deepEqual(await cachedModels(), [`/api/models/${loaded}/head.nnef`]);
    assert.match(await page.locator('[data-testid=model]').innerText(), new RegExp(loaded));
    const got = await classifyInPage(page, testSplitPhotos()[0].path);
    assert.equal(got.length, 5);
    // A fresh start while the champion's file still arrives damaged: the page falls back to
    // the model this browser loaded last (from the cache), and says why.
    await page.reload();
    await page.locator('[data-testid=model]').filter({ hasText: loaded }).waitFor({ timeout: 60_000 });
    await status.filter({ hasText: new RegExp(`does not match the model's manifest.*still using model ${loaded}`) }).waitFor({ timeout: 60_000 });
    assert.deepEqual(await cachedModels(), [`/api/models/${loaded}/head.nnef`]);
  } finally {
    await context.unroute(url);
  }
  // Served intact, the same switch loads it, and only then is the old version evicted.
  await page.locator('[data-testid=switch]').click();
  await page.locator('[data-testid=model]').filter({ hasText: champion }).waitFor({ timeout: 120_000 });
  await page.locator('[data-testid=status]').filter({ hasText: /^ready/ }).waitFor({ timeout: 60_000 });
  assert.deepEqual(await cachedModels(), [`/api/models/${champion}/head.nnef`]);

  // A damaged backbone is refused too: with this browser's copy gone, a fresh start gets a
  // flipped byte, says so, and keeps nothing; served intact, the next start works again.
  const manifest = await (await fetch(`${base}/api/models/current`)).json();
  const backboneUrl = `${base}/api/backbones/${manifest.backbone.int8.sha256}.q8`;
  const cachedBackbones = () => page.evaluate(async () => (await (await caches.open('edgeml-backbones')).keys()).map((k) => new URL(k.url).pathname));
  await page.evaluate(() => caches.delete('edgeml-backbones'));
  await context.route(backboneUrl, damaged);
  try {
    await page.reload();
    await page.locator('[data-testid=status]').filter({ hasText: /backbones.*does not match the model's manifest/ }).waitFor({ timeout: 60_000 });
    assert.deepEqual(await cachedBackbones(), []);
  } finally {
    await context.unroute(backboneUrl);
  }
  await page.reload();
  await page.locator('[data-testid=model]').filter({ hasText: champion }).waitFor({ timeout: 120_000 });
  await page.locator('[data-testid=status]').filter({ hasText: /^ready/ }).waitFor({ timeout: 60_000 });
  assert.deepEqual(await cachedBackbones(), [new URL(backboneUrl).pathname]);
  assert.equal((await classifyInPage(page, testSplitPhotos()[0].path)).length, 5);
});

// Put files in the Contribute page's file input (made in the page: no transfer of big buffers).
async function pickFiles(files) {
  await page.evaluate((list) => {
    const dt = new DataTransfer();
    for (const f of list) {
      const bytes = f.png ? new Uint8Array(f.png) : new Uint8Array(f.size);
      dt.items.add(new File([bytes], f.name, { type: 'image/png' }));
    }
    const input = document.querySelector('[data-testid=files]');
    input.files = dt.files;
    input.dispatchEvent(new Event('change', { bubbles: true }));
  }, files);
}

test("checks the server's limits before queueing: split into uploads that fit, too large refused at once", async () => {
  // Small limits, so a few small files exercise them (served in place of the server's).
  const limits = { max_files: 2, max_upload_bytes: 1024 * 1024, max_image_side: 8192, max_image_pixels: 40000000,
    max_predict_pixels: 40000000, max_caption_chars: 40, max_captions_per_image: 20, upload_rate_per_min: 120,
    predict_rate_per_min: 240, max_pending_per_client: 1000 };
  const url = `${base}/api/limits`;
  await context.route(url, (route) => route.fulfill({ json: limits }));
  try {
    await page.goto(`${base}/#/contribute`);
    await page.reload();
    await page.locator('[data-testid=caption][maxlength="40"]').waitFor();
    await page.locator('[data-testid=label] option[value=food]').waitFor({ state: 'attached' });
    await page.locator('[data-testid=label]').selectOption('food');
    // One file larger than an upload may be: refused at once, naming it and the limit.
    await pickFiles([{ name: 'e2e-small.png', png: [...makePng(40, 30, 50)] }, { name: 'e2e-huge.png', size: 1536 * 1024 }]);
    await page.locator('[data-testid=send]').click();
    const message = page.locator('[data-testid=message]');
    await message.filter({ hasText: /e2e-huge\.png/ }).waitFor();
    const words = await message.innerText();
    assert.match(words, /e2e-huge\.png \(1\.5 MiB\)/);
    assert.match(words, /at most 1\.0 MiB per upload/);
    assert.match(words, /nothing was queued/);
    await page.screenshot({ path: join(shots, 'contribute-refused.png'), fullPage: true });
    await assertAccessible(page, 'Contribute with a file refused');
    assert.equal(await page.locator('[data-testid=waiting]').getAttribute('data-count'), '0');
    assert.equal(await page.evaluate(() => new Promise((ok) => {
      const r = indexedDB.open('edgeml', 1);
      r.onsuccess = () => { const q = r.result.transaction('outbox').objectStore('outbox').count(); q.onsuccess = () => ok(q.result); };
    })), 0, 'nothing kept in the outbox');
    // Three files, two per upload: sent in two requests, every file arrives.
    const names = [1, 2, 3].map((i) => `e2e-split-${i}.png`);
    const posts = [];
    const onRequest = (req) => { if (req.method() === 'POST' && /\/api\/datasets\/[^/]+\/images$/.test(new URL(req.url()).pathname)) posts.push(req.url()); };
    page.on('request', onRequest);
    try {
      await pickFiles(names.map((name, i) => ({ name, png: [...makePng(48, 40, 60 + i)] })));
      await page.locator('[data-testid=send]').click();
      await message.filter({ hasText: /in 2 uploads/ }).waitFor();
      for (const name of names) await page.locator(`[data-testid=sent] li[data-file="${name}"][data-status=pending]`).waitFor({ timeout: 60_000 });
    } finally {
      page.off('request', onRequest);
    }
    assert.equal(posts.length, 2, `two upload requests: ${posts}`);
    const pending = (await pendingOnServer()).map((i) => i.filename);
    for (const name of names) assert.ok(pending.includes(name), `${name} on the server`);
    assert.ok(!pending.includes('e2e-huge.png') && !pending.includes('e2e-small.png'), 'nothing of the refused selection was sent');
  } finally {
    await context.unroute(url);
  }
  // Without the route, the server's own limits (or, from a server without /api/limits, the
  // defaults) apply again.
  await page.reload();
  await page.locator('[data-testid=caption][maxlength="500"]').waitFor();
});

test('a contributor name in any script reaches the server exactly as typed', async () => {
  const name = 'Zoë Łukasz 李';
  await page.goto(`${base}/#/contribute`);
  await page.locator('[data-testid=label] option[value=plants]').waitFor({ state: 'attached' });
  await page.locator('[data-testid=label]').selectOption('plants');
  await page.locator('[data-testid=uploader]').fill(name);
  await pickFiles([{ name: 'e2e-uploader-utf8.png', png: [...makePng(64, 48, 90)] }]);
  try {
    await page.locator('[data-testid=send]').click();
    const item = page.locator('[data-testid=sent] li[data-file="e2e-uploader-utf8.png"]');
    await item.waitFor({ timeout: 60_000 });
    assert.equal(await item.getAttribute('data-status'), 'pending', await item.innerText());
  } finally {
    // Later contributions are sent without a name again.
    await page.evaluate(() => localStorage.removeItem('edgeml-uploader'));
  }
  const all = await (await fetch(`${base}/api/images?limit=500`, { headers: admin })).json();
  const stored = all.images.find((i) => i.filename === 'e2e-uploader-utf8.png');
  assert.equal(stored?.uploader, name);
});

test('classifies a camera frame (synthetic camera) in the browser', async () => {
  await page.goto(`${base}/#/`);
  await page.locator('[data-testid=status]').filter({ hasText: /^ready/ }).waitFor({ timeout: 120_000 });
  const run = Number(await page.locator('[data-testid=predictions]').getAttribute('data-run', { timeout: 100 }).catch(() => 0)) + 1;
  await page.locator('[data-testid=camera]').click();
  await page.locator('video').evaluate((v) => new Promise((ok) => (v.videoWidth ? ok() : v.addEventListener('loadeddata', () => ok(), { once: true }))));
  const before = apiRequests.length;
  await page.locator('[data-testid=snap]').click();
  const list = page.locator(`[data-testid=predictions][data-run="${run}"]`);
  await list.waitFor({ timeout: 60_000 });
  const got = await list.locator('li').evaluateAll((lis) => lis.map((li) => ({ label: li.dataset.label, score: Number(li.dataset.score) })));
  const labels = (await (await fetch(`${base}/api/models/current`)).json()).labels;
  assert.equal(got.length, 5);
  for (const p of got) assert.ok(labels.includes(p.label), p.label);
  for (let i = 1; i < got.length; i++) assert.ok(got[i - 1].score >= got[i].score, 'sorted by score');
  const total = got.reduce((a, p) => a + p.score, 0);
  assert.ok(total > 0 && total <= 1 + 1e-5, `probabilities: ${total}`);
  assert.match(await page.locator('img.preview').getAttribute('src'), /^data:image\/jpeg/);
  assert.deepEqual(apiRequests.slice(before), [], 'no api request for a camera frame');
  await page.screenshot({ path: join(shots, 'camera.png'), fullPage: true });
  await assertAccessible(page, 'Predict with the camera on');
});

test('searches the gallery by text in the browser, offline, live as you type', async () => {
  // A ranking model, trained through the api on the seed photos' captions, made champion.
  const modelId = await trainRankChampion(base);
  // A damaged download of the text encoder is refused: Search says why, and nothing of that
  // version is cached (the gallery files, fine, are kept only with a whole checked version).
  const textUrl = `${base}/api/models/${modelId}/text.nnef`;
  await context.route(textUrl, damaged);
  try {
    await page.goto(`${base}/#/search`);
    await page.locator('[data-testid=search-status]').filter({ hasText: /not available: .*text\.nnef does not match the model's manifest/ }).waitFor({ timeout: 120_000 });
    assert.equal(await page.evaluate(async () => (await (await caches.open('edgeml-rank')).keys()).length), 0);
  } finally {
    await context.unroute(textUrl);
  }
  // Served intact, it loads when the page asks again.
  await page.locator('[data-testid=nav-predict]').click();
  await page.locator('[data-testid=nav-search]').click();
  await page.locator('[data-testid=search-status][data-ready=true]').waitFor({ timeout: 120_000 });
  assert.match(await page.locator('[data-testid=search-status]').innerText(), new RegExp(`ranking model ${modelId}`));
  // Online once: the thumbnails of the answer are kept by the service worker.
  const query = page.locator('[data-testid=query]');
  await query.fill('koala');
  await page.locator('[data-testid=hits][data-query="koala"] li img').first().waitFor();
  await page.waitForFunction(() => [...document.querySelectorAll('[data-testid=hits] img')].slice(0, 5).every((i) => i.complete && i.naturalWidth > 0));
  // Image → text: the koala photo finds its caption among the gallery's captions.
  const sentBefore = modelResponses.length;
  await page.locator('[data-testid=caption-image]').setInputFiles(join(photos, 'animals', 'koala.png'));
  const caps = page.locator('[data-testid=captions] li');
  await caps.first().waitFor({ timeout: 120_000 });
  const top5 = await caps.evaluateAll((lis) => lis.slice(0, 5).map((li) => li.dataset.caption));
  await assertAccessible(page, 'Search with captions for a picked image');
  assert.ok(top5.some((c) => /koala/i.test(c)), `image → caption: ${JSON.stringify(top5)}`);
  // The image tower is a head on the backbone the classifier already runs: only the head is
  // downloaded, and one backbone is kept for both tasks.
  await waitFor('image head response size', async () => modelResponses.length > sentBefore && modelResponses.slice(sentBefore).every((r) => r.bytes >= 0));
  assert.deepEqual(modelResponses.slice(sentBefore).map((r) => r.path), [`/api/models/${modelId}/image_head.nnef`]);
  const backbonesKept = await page.evaluate(async () => (await (await caches.open('edgeml-backbones')).keys()).length);
  assert.equal(backbonesKept, 1, 'one backbone for classification and search');
  // A new photo contributed from this browser joins its search index at once (embedded here),
  // long before a retrain: the koala, mirrored by a canvas.
  await page.locator('[data-testid=nav-contribute]').click();
  await page.locator('[data-testid=label] option[value=animals]').waitFor({ state: 'attached' });
  await page.locator('[data-testid=label]').selectOption('animals');
  await page.locator('[data-testid=caption]').fill('A koala, mirrored.');
  await page.evaluate(async (b) => {
    const bmp = await createImageBitmap(new Blob([new Uint8Array(b)]));
    const c = new OffscreenCanvas(bmp.width, bmp.height);
    const g = c.getContext('2d');
    g.translate(bmp.width, 0); g.scale(-1, 1); g.drawImage(bmp, 0, 0);
    const png = await c.convertToBlob({ type: 'image/png' });
    const dt = new DataTransfer();
    dt.items.add(new File([png], 'koala-mirrored.png', { type: 'image/png' }));
    const input = document.querySelector('[data-testid=files]');
    input.files = dt.files;
    input.dispatchEvent(new Event('change', { bubbles: true }));
  }, [...readFileSync(join(photos, 'animals', 'koala.png'))]);
  await page.locator('[data-testid=send]').click();
  await page.locator('[data-testid=sent] li[data-file="koala-mirrored.png"][data-status=pending]').waitFor({ timeout: 60_000 });
  const stored = (await pendingOnServer()).find((i) => i.filename === 'koala-mirrored.png');
  assert.ok(stored, 'the contribution reached the server');
  const caps2 = await (await fetch(`${base}/api/images/status?ids=${stored.id}`)).json();
  assert.equal(caps2[0].status, 'pending');
  await page.locator('[data-testid=nav-search]').click();
  await page.locator('[data-testid=search-status]').filter({ hasText: '+ 1 from this browser' }).waitFor({ timeout: 120_000 });
  await context.setOffline(true);
  try {
    await page.reload();
    await page.locator('[data-testid=search-status][data-ready=true]').waitFor({ timeout: 60_000 });
    const before = apiRequests.length;
    // Typed letter by letter: each pause answers the query so far (debounced).
    await query.pressSequentially('koala', { delay: 20 });
    const hits = page.locator('[data-testid=hits][data-query="koala"]');
    await hits.waitFor({ timeout: 30_000 });
    const top = await hits.locator('li').evaluateAll((lis) => lis.slice(0, 5).map((li) => ({ caption: li.dataset.caption, label: li.dataset.label, score: Number(li.dataset.score) })));
    assert.ok(top.some((h) => /koala/i.test(h.caption)), `a koala in the top 5 offline: ${JSON.stringify(top)}`);
    const mine = await hits.locator('li[data-local=true]').evaluateAll((lis) => lis.map((li) => [li.dataset.caption, [...li.parentNode.children].indexOf(li)]));
    assert.ok(mine.some(([c, i]) => c === 'A koala, mirrored.' && i < 5), `the browser's own koala in the top 5: ${JSON.stringify(mine)}`);
    for (let i = 1; i < top.length; i++) assert.ok(top[i - 1].score >= top[i].score, 'sorted by score');
    await page.waitForFunction(() => [...document.querySelectorAll('[data-testid=hits] img')].slice(0, 5).every((i) => i.complete && i.naturalWidth > 0));
    await page.screenshot({ path: join(shots, 'search-offline.png'), fullPage: true });
    await assertAccessible(page, 'Search offline with results');
    // Screen readers hear the count, from a live region that was there before the query.
    assert.match(await page.locator('[data-testid=search-announce]').innerText(), /^\d+ results for koala$/);
    assert.equal(await page.locator('[data-testid=search-announce]').getAttribute('aria-live'), 'polite');
    // Apart from thumbnails (answered by the service worker's cache) and the periodic
    // newer-champion check (which fails quietly offline), nothing asked the server.
    const during = apiRequests.slice(before)
      .filter((u) => !/\/api\/images\/[^/]+\/blob$/.test(u) && u !== 'GET /api/models/current');
    assert.deepEqual(during, [], 'no server request for the search');
    assert.equal(await page.locator('[data-testid=online]').innerText(), 'offline');
    // More like this (image → image, from the gallery vectors): the koala finds itself first.
    const koala = hits.locator('li').filter({ hasText: /koala/i }).first();
    const koalaId = await koala.getAttribute('data-id');
    await koala.locator('[data-testid=more-like-this]').click();
    const like = page.locator('[data-testid=hits][data-query^="like: "]');
    await like.waitFor({ timeout: 30_000 });
    const first = await like.locator('li').first();
    assert.equal(await first.getAttribute('data-id'), koalaId);
    assert.ok(Number(await first.getAttribute('data-score')) > 0.98, 'an image is nearest to itself');
    assert.deepEqual(apiRequests.slice(before).filter((u) => !/\/api\/images\/[^/]+\/blob$/.test(u) && u !== 'GET /api/models/current'), []);
  } finally {
    await context.setOffline(false);
  }
  // The model page shows its retrieval figures next to the baselines.
  await page.locator('[data-testid=nav-admin]').click();
  await page.locator(`[data-testid=model-row][data-id="${modelId}"] a`).click();
  const rows = page.locator(`[data-testid=model-detail][data-id="${modelId}"] [data-testid=rank-metrics] tr`);
  await rows.first().waitFor();
  assert.equal(await rows.count(), 5);
  await page.screenshot({ path: join(shots, 'admin-rank-model.png'), fullPage: true });
  await assertAccessible(page, 'Admin with a ranking model shown');
});

// Train a ranking model through the api (the search scenario's quick parameters) and make it
// the champion (promoted by hand when the gate held it back); its model id.
// The captions the Search page finds for a picked image (image → caption, in the browser), with
// the ranking champion `model` loaded (a reload: the page loads the newest champion).
async function captionsInSearch(model, path) {
  await page.goto(`${base}/#/search`);
  await page.reload();
  await page.locator('[data-testid=search-status][data-ready=true]').filter({ hasText: `ranking model ${model}` }).waitFor({ timeout: 120_000 });
  await page.locator('[data-testid=caption-image]').setInputFiles(path);
  const caps = page.locator('[data-testid=captions] li');
  await caps.first().waitFor({ timeout: 120_000 });
  return caps.evaluateAll((lis) => lis.map((li) => li.dataset.caption));
}

test('a caption added to an approved image is invisible in Search until approved on the Admin page', async () => {
  const phrase = 'zebra-striped teapot on the moon';
  const uploader = 'e2e captioner';
  // An approved seed image in the ranking gallery: the teapot (its own caption "A teapot.").
  const approved = await (await fetch(`${base}/api/images?status=approved&label=household&limit=500`, { headers: admin })).json();
  const teapot = approved.images.find((i) => i.captions.some((c) => c.caption === 'A teapot.'));
  assert.ok(teapot, 'the teapot photo is approved');
  const bytes = Buffer.from(await (await fetch(`${base}/api/images/${teapot.id}/blob`)).arrayBuffer());
  const teapotFile = join(photos, 'household', 'teapot.png');
  assert.ok(bytes.equals(readFileSync(teapotFile)), 'the stored blob is the bundled photo');
  // Sent again anonymously with a new caption: a duplicate, the caption waits for review. A new
  // image with a caption goes to the image queue, its caption with it.
  const upload = async (file, name, caption) => {
    const fd = new FormData();
    fd.append('label', teapot.label);
    fd.append('caption', caption);
    fd.append('files', new Blob([file], { type: 'image/png' }), name);
    return fetch(`${base}/api/datasets/${teapot.dataset_id}/images`, {
      method: 'POST', body: fd, headers: { 'x-uploader': encodeURIComponent(uploader) },
    });
  };
  const dup = await upload(bytes, 'teapot-again.png', phrase);
  assert.equal(dup.status, 200);
  const dupBody = await dup.json();
  assert.deepEqual([dupBody.images[0].id, dupBody.images[0].duplicate, dupBody.images[0].status], [teapot.id, true, 'approved']);
  assert.equal((await upload(makePng(72, 56, 120), 'e2e-captioned.png', 'a striped test card')).status, 201);
  const queued = async () => (await (await fetch(`${base}/api/review/captions?status=pending&limit=500`, { headers: admin })).json()).captions;
  const pending = (await queued()).find((c) => c.image_id === teapot.id && c.caption === phrase);
  assert.deepEqual([pending?.status, pending?.uploader], ['pending', uploader]);

  // Retrained while the caption waits: neither the gallery nor the page knows it.
  const before = await trainRankChampion(base);
  const galleryItem = async (model) => (await (await fetch(`${base}/api/models/${model}/gallery.json`)).json()).items.find((i) => i.id === teapot.id);
  const item = await galleryItem(before);
  assert.ok(item, 'the teapot is in the gallery');
  assert.ok(item.captions.includes('A teapot.') && !item.captions.includes(phrase), JSON.stringify(item.captions));
  const shownBefore = await captionsInSearch(before, teapotFile);
  assert.ok(!shownBefore.includes(phrase), `a pending caption in Search: ${JSON.stringify(shownBefore)}`);

  // The Admin page: the new image's card shows its caption (decided with it); the caption queue
  // lists the teapot's, with its thumbnail, label and sender; approve it there.
  // Signed in with the token (whatever an earlier scenario left in this tab is forgotten).
  await page.evaluate(() => sessionStorage.removeItem('edgeml-admin-token'));
  await page.goto(`${base}/#/admin`);
  await page.locator('[data-testid=token]').fill(TOKEN);
  await page.locator('[data-testid=sign-in]').click();
  const queue = page.locator('[data-testid=caption-queue]');
  const card = page.locator('[data-testid=review-card][data-file="e2e-captioned.png"]');
  const cardCaption = card.locator('[data-testid=card-caption][data-caption="a striped test card"][data-status=pending]');
  await cardCaption.waitFor();
  assert.match(await cardCaption.innerText(), /by e2e captioner/);
  assert.match(await card.locator('[data-testid=card-captions]').innerText(), /with the image/);
  const row = queue.locator(`[data-testid=caption-row][data-image="${teapot.id}"][data-caption="${phrase}"]`);
  await row.waitFor();
  assert.equal(await row.locator('[data-testid=caption-label]').innerText(), teapot.label);
  assert.match(await row.innerText(), /by e2e captioner/);
  const thumb = row.locator('img.thumb');
  await thumb.waitFor();
  assert.match(await thumb.getAttribute('src'), /^blob:/);
  assert.match(await thumb.getAttribute('alt'), new RegExp(teapot.label));
  assert.ok(await thumb.evaluate((img) => img.decode().then(() => img.naturalWidth > 0)));
  await page.screenshot({ path: join(shots, 'admin-captions.png'), fullPage: true });
  await assertAccessible(page, 'Admin caption queue');
  await row.locator('[data-testid=caption-approve]').click();
  await row.waitFor({ state: 'detached' });
  await page.locator('[data-testid=admin-message]').filter({ hasText: /caption\(s\): 1 approved/ }).waitFor();
  assert.ok(!(await queued()).some((c) => c.caption === phrase), 'the caption left the queue');
  const stored = await (await fetch(`${base}/api/images/${teapot.id}`, { headers: admin })).json();
  assert.equal(stored.captions.find((c) => c.caption === phrase)?.status, 'approved');
  // Rejecting the new image from its card rejects its caption with it.
  await card.locator('[data-testid=reject]').click();
  await card.waitFor({ state: 'detached' });
  const rejected = (await (await fetch(`${base}/api/images?status=rejected&limit=500`, { headers: admin })).json()).images.find((i) => i.filename === 'e2e-captioned.png');
  assert.deepEqual(rejected?.captions.map((c) => c.status), ['rejected']);

  // Retrained: the approved caption is in the gallery, and the page finds it for the teapot.
  const after = await trainRankChampion(base);
  assert.ok((await galleryItem(after)).captions.includes(phrase));
  const shownAfter = await captionsInSearch(after, teapotFile);
  assert.ok(shownAfter.includes(phrase), `the approved caption in Search: ${JSON.stringify(shownAfter)}`);
  await page.screenshot({ path: join(shots, 'search-approved-caption.png'), fullPage: true });
});

test('classifies a product by its title in the browser, offline, live as you type; its photo changes the scores', async () => {
  // A product model, trained through the api on the seed photos with their captions as titles.
  const modelId = await trainChampion(base, 'product', { epochs: 40 });
  const metrics = await (await fetch(`${base}/api/models/${modelId}/metrics.json`)).json();
  const labels = metrics.labels;
  // A held-out photo whose category the model's text tower names first (as recorded by the
  // server's run): its file and caption from the bundled set, found by sha256.
  const bySha = new Map();
  for (const label of readdirSync(photos, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name)) {
    for (const f of readdirSync(join(photos, label)).filter((n) => n.endsWith('.png'))) {
      const path = join(photos, label, f);
      bySha.set(createHash('sha256').update(readFileSync(path)).digest('hex'), { label, path });
    }
  }
  const ev = metrics.evidence;
  const k = ev.items.findIndex((sha, i) => metrics.splits.predicted[i][0] === labels[ev.truth[i]] && bySha.has(sha));
  assert.ok(k >= 0, 'a test item the text tower gets right');
  const item = bySha.get(ev.items[k]);
  const title = readFileSync(item.path.replace(/\.png$/, '.txt'), 'utf8').split('\n')[0].trim();
  assert.equal(item.label, labels[ev.truth[k]]);

  await page.goto(`${base}/#/products`);
  await page.locator('[data-testid=product-status][data-ready=true]').waitFor({ timeout: 120_000 });
  assert.match(await page.locator('[data-testid=product-status]').innerText(), new RegExp(`product model ${modelId}`));
  await context.setOffline(true);
  try {
    await page.reload();
    await page.locator('[data-testid=product-status][data-ready=true]').waitFor({ timeout: 60_000 });
    const before = apiRequests.length;
    await page.locator('[data-testid=product-title]').pressSequentially(title, { delay: 10 });
    // Answered for the whole title (earlier answers are for what was typed so far).
    const answered = (withImage) => page.waitForFunction(([t, w]) => {
      const ol = document.querySelector('[data-testid=product-predictions]');
      return ol && ol.dataset.title === t && ol.dataset.withImage === String(w);
    }, [title, withImage], { timeout: 30_000 });
    const answer = page.locator('[data-testid=product-predictions]');
    await answered(false);
    const byTitle = await answer.locator('li').evaluateAll((lis) => lis.map((li) => ({ label: li.dataset.label, score: Number(li.dataset.score) })));
    assert.ok(byTitle.slice(0, 3).some((p) => p.label === item.label), `${item.label} in the top 3 for ${JSON.stringify(title)}: ${JSON.stringify(byTitle)}`);
    for (let i = 1; i < byTitle.length; i++) assert.ok(byTitle[i - 1].score >= byTitle[i].score, 'sorted by score');
    // Adding the photo changes the scores (the backbone runs once, in the browser).
    await page.locator('[data-testid=product-image]').setInputFiles(item.path);
    await answered(true);
    const both = await answer.locator('li').evaluateAll((lis) => lis.map((li) => ({ label: li.dataset.label, score: Number(li.dataset.score) })));
    assert.notDeepEqual(both, byTitle, 'the photo changes the scores');
    await page.screenshot({ path: join(shots, 'products-offline.png'), fullPage: true });
    await assertAccessible(page, 'Products offline with a title and a photo');
    // Apart from the periodic newer-champion check (which fails quietly offline), nothing
    // asked the server.
    const during = apiRequests.slice(before).filter((u) => u !== 'GET /api/models/current');
    assert.deepEqual(during, [], 'no server request for a product');
  } finally {
    await context.setOffline(false);
  }

  // Admin: the product model's row and detail show its figures, as its run recorded them.
  await page.evaluate(() => sessionStorage.removeItem('edgeml-admin-token'));
  await page.goto(`${base}/#/admin`);
  await page.locator('[data-testid=token]').fill(TOKEN);
  await page.locator('[data-testid=sign-in]').click();
  await page.locator(`[data-testid=model-row][data-id="${modelId}"] a`).click();
  const detail = page.locator(`[data-testid=model-detail][data-id="${modelId}"]`);
  const rows = await detail.locator('[data-testid=product-metrics] tr').evaluateAll((trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent.trim())));
  const t = metrics.test;
  assert.deepEqual(rows.slice(1).map((r) => [r[0], r[2]]), [
    ['title only', t.text.weighted_f1.toFixed(3)],
    ['image only', t.image.weighted_f1.toFixed(3)],
    ['title + image', t.both.weighted_f1.toFixed(3)],
    ['majority class', ''],
  ]);
  const perClass = await detail.locator('[data-testid=product-per-class] tr').count();
  assert.equal(perClass, 1 + t.both.per_class.length);
  await assertAccessible(page, 'Admin with a product model');
});
