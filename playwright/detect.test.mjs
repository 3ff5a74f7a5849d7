// End-to-end object detection: the real api binary on loopback with a fresh data folder, the
// built web app, headless Chromium. A detection dataset is filled with the bundled composites
// through the api; one composite is contributed on the page with a box dragged over it, the
// admin corrects the box and approves it; a detector is trained; a held-out composite is then
// searched for objects in the browser, offline. Run by scripts/e2e.sh.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  TOKEN, admin, assertAccessible, detectInPage, drag, iou, launch, root, shots, startApi,
  trainChampion, trainerBin, waitFor,
} from './harness.mjs';

let server; let base; let browser; let context; let page;
const apiRequests = [];

async function pendingOnServer() {
  const r = await fetch(`${base}/api/review?limit=500`, { headers: admin });
  assert.equal(r.status, 200);
  return (await r.json()).images;
}

before(async () => {
  mkdirSync(shots, { recursive: true });
  server = await startApi();
  base = server.base;
  browser = await launch();
  ({ context, page } = browser);
  page.on('request', (req) => { const u = new URL(req.url()); if (u.pathname.startsWith('/api/')) apiRequests.push(`${req.method()} ${u.pathname}`); });
});

after(async () => {
  await browser?.close();
  server?.stop();
});

test('finds objects in a held-out image offline: boxes drawn, as the server finds them, no api request', async () => {
  // The bundled composites (Tux Paint cut-outs on photographs, exact boxes): train and val
  // uploaded with their boxes, test held out (its cut-outs never seen in training).
  const dir = mkdtempSync(join(tmpdir(), 'edgeml-composites-'));
  execFileSync(trainerBin, ['compose', '--out', dir, '--count', '160', '--size', '256', '--seed', '9'], { cwd: root, stdio: 'ignore' });
  const coco = (split) => JSON.parse(readFileSync(join(dir, split, 'annotations.json'), 'utf8'));
  const boxesOf = (set, image) => set.annotations.filter((a) => a.image_id === image.id)
    .map((a) => ({ label: set.categories.find((c) => c.id === a.category_id).name, bbox: a.bbox }));
  const labels = coco('train').categories.map((c) => c.name);
  const r = await fetch(`${base}/api/datasets`, { method: 'POST', headers: admin, body: JSON.stringify({ name: 'objects', labels, task: 'detect' }) });
  assert.equal(r.status, 201);
  const dataset = (await r.json()).id;
  // One training composite with one object is contributed through the page, boxed by hand.
  const train = coco('train');
  const mine = train.images.find((i) => boxesOf(train, i).length === 1);
  const truth = boxesOf(train, mine)[0];
  for (const split of ['train', 'val']) {
    const set = coco(split);
    for (const image of set.images.filter((i) => split !== 'train' || i.id !== mine.id)) {
      const fd = new FormData();
      fd.append('boxes', JSON.stringify(boxesOf(set, image)));
      fd.append('files', new Blob([readFileSync(join(dir, split, image.file_name))]), image.file_name);
      const up = await fetch(`${base}/api/datasets/${dataset}/images`, { method: 'POST', headers: { authorization: admin.authorization }, body: fd });
      assert.equal(up.status, 201, await up.text());
    }
  }

  // Contribute: pick the detection dataset, the image, a label; drag a box (a sloppy one, 12 px
  // off); send it.
  await page.goto(`${base}/#/contribute`);
  await page.locator('[data-testid=dataset]').selectOption({ label: 'objects' });
  await page.locator('[data-testid=box-image]').setInputFiles({ name: 'e2e-boxes.png', mimeType: 'image/png', buffer: readFileSync(join(dir, 'train', mine.file_name)) });
  await page.locator('[data-testid=contribute-label]').selectOption(truth.label);
  const sloppy = [truth.bbox[0] + 12, truth.bbox[1] + 12, truth.bbox[2] - 12, truth.bbox[3] - 12];
  await drag(page, '[data-testid=contribute-canvas]', sloppy);
  await page.locator('[data-testid=contribute-boxes][data-count="1"]').waitFor();
  await page.screenshot({ path: join(shots, 'contribute-boxes.png'), fullPage: true });
  await assertAccessible(page, 'Contribute: a box drawn on a detection image');
  await page.locator('[data-testid=send]').click();
  await page.locator('[data-testid=sent] li[data-file="e2e-boxes.png"][data-status=pending]').waitFor({ timeout: 60_000 });
  const sent = (await pendingOnServer()).find((i) => i.filename === 'e2e-boxes.png');
  assert.equal(sent.boxes.length, 1);
  assert.equal(sent.boxes[0].label, truth.label);
  assert.ok(iou(sent.boxes[0].bbox, sloppy) > 0.95, JSON.stringify(sent.boxes));

  // The uploads queued an auto-retrain; its end refetches the review queue and redraws the
  // cards (unsent edits are kept, a drag in progress is not): let it finish first.
  await waitFor('no run queued or running', async () => {
    const runs = await (await fetch(`${base}/api/train`)).json();
    return runs.every((r) => !['queued', 'running'].includes(r.status));
  }, 600_000);

  // Another contribution waits for review beside it (a held-out composite: it is rejected).
  const held = coco('test');
  const another = held.images[0];
  const fd = new FormData();
  fd.append('boxes', JSON.stringify(boxesOf(held, another)));
  fd.append('files', new Blob([readFileSync(join(dir, 'test', another.file_name))]), 'e2e-other.png');
  const up = await fetch(`${base}/api/datasets/${dataset}/images`, { method: 'POST', body: fd });
  assert.equal(up.status, 201, await up.text());

  // Admin: the card shows the box; the admin deletes it, draws the right one and approves.
  await page.evaluate(() => sessionStorage.removeItem('edgeml-admin-token'));
  await page.goto(`${base}/#/admin`);
  await page.locator('[data-testid=token]').fill(TOKEN);
  await page.locator('[data-testid=sign-in]').click();
  const card = page.locator('[data-testid=review-card][data-file="e2e-boxes.png"]');
  await card.locator('[data-testid=review-boxes][data-count="1"]').waitFor({ timeout: 30_000 });
  await card.locator('[data-testid=delete-box]').click();
  await card.locator('[data-testid=review-boxes][data-count="0"]').waitFor({ state: 'attached' });
  await card.locator('[data-testid=review-label]').selectOption(truth.label);
  await drag(page, '[data-testid=review-card][data-file="e2e-boxes.png"] [data-testid=review-canvas]', truth.bbox);
  await card.locator('[data-testid=review-boxes][data-count="1"]').waitFor();
  await page.screenshot({ path: join(shots, 'admin-review-boxes.png'), fullPage: true });
  await assertAccessible(page, 'Admin review of a detection image');
  // Rejecting another card refetches the queue and redraws every card: the unsent box stays.
  const other = page.locator('[data-testid=review-card][data-file="e2e-other.png"]');
  await other.locator('[data-testid=reject]').click();
  await other.waitFor({ state: 'detached' });
  await card.locator('[data-testid=review-boxes][data-count="1"]').waitFor();
  await card.locator('[data-testid=save-boxes]').waitFor({ state: 'visible' });
  await card.locator('[data-testid=approve]').click();
  const approved = await waitFor('the approval', async () => {
    const all = await (await fetch(`${base}/api/images?dataset=${dataset}&status=approved&limit=500`, { headers: admin })).json();
    return all.images.find((i) => i.filename === 'e2e-boxes.png');
  });
  assert.equal(approved.boxes.length, 1);
  assert.equal(approved.boxes[0].label, truth.label);
  assert.ok(iou(approved.boxes[0].bbox, truth.bbox) > 0.9, `${JSON.stringify(approved.boxes)} vs ${JSON.stringify(truth)}`);

  const detector = await trainChampion(base, 'detect', { epochs: 40 });
  // A held-out composite whose object the server's detector places (IoU ≥ 0.5, right label).
  const test = coco('test');
  let chosen = null;
  for (const image of test.images) {
    const bytes = readFileSync(join(dir, 'test', image.file_name));
    const fd = new FormData();
    fd.append('file', new Blob([bytes]), image.file_name);
    const p = await (await fetch(`${base}/api/predict?task=detect`, { method: 'POST', body: fd })).json();
    assert.equal(p.model_id, detector);
    const truths = boxesOf(test, image);
    if (p.boxes.some((b) => truths.some((t) => t.label === b.label && iou(t.bbox, b.bbox) >= 0.5))) {
      chosen = { path: join(dir, 'test', image.file_name), truths, server: p.boxes };
      break;
    }
  }
  assert.ok(chosen, 'the detector places an object of at least one held-out composite');

  await page.goto(`${base}/#/`);
  await page.locator('[data-testid=mode-detect]').click();
  // Online once: the detector's head is downloaded (the backbone is the classifier's file).
  const online = await detectInPage(page, chosen.path);
  assert.ok(online.length > 0);
  await context.setOffline(true);
  try {
    const before = apiRequests.length;
    const found = await detectInPage(page, chosen.path, { drop: true });
    await page.screenshot({ path: join(shots, 'detect-offline.png'), fullPage: true });
    await assertAccessible(page, 'Predict: objects found offline');
    assert.ok(found.some((b) => chosen.truths.some((t) => t.label === b.label && iou(t.bbox, b.bbox) >= 0.5)),
      `no box overlaps the truth: ${JSON.stringify(found)} vs ${JSON.stringify(chosen.truths)}`);
    // The browser's 8-bit files find what the server's f32 ones find: each clear server box
    // has a browser box of its label in the same place.
    for (const s of chosen.server.filter((b) => b.score >= 0.3)) {
      assert.ok(found.some((b) => b.label === s.label && iou(b.bbox, s.bbox) >= 0.75), `${JSON.stringify(s)} not in ${JSON.stringify(found)}`);
    }
    assert.deepEqual(found, online, 'the same boxes offline');
    // Drawn over the image: one rectangle per box listed.
    assert.equal(await page.locator('[data-testid=detected] svg rect').count(), found.length);
    const during = apiRequests.slice(before).filter((u) => u !== 'GET /api/models/current');
    assert.deepEqual(during, [], 'no server request while detecting');
  } finally {
    await context.setOffline(false);
  }
});
