// Real photographs boxed by hand in the app: the detection test set of real photos
// (fixtures/real-photos). BOXES are the annotator's: each photo was looked at and every object
// of the seven labels boxed (the partly hidden and the small ones too). This test draws them as
// a hand does, on the Contribute page of the real api binary in headless Chromium, one drag
// per box; the admin approves them in Admin; the api exports the dataset as COCO. That export
// is the committed fixtures/real-photos/annotations.json (`UPDATE_FIXTURES=1` writes it):
// here it must match the fixture, file for file and box for box (every edge within 2 pixels:
// a drag lands on whole screen pixels). `trainer eval` scores detectors on it. Run by
// scripts/e2e.sh.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  TOKEN, admin, drag, launch, root, shots, startApi, waitFor,
} from './harness.mjs';

const photos = join(root, 'assets/datasets/real-photos');
const fixture = join(root, 'fixtures/real-photos/annotations.json');
const LABELS = ['animals', 'clothes', 'food', 'household', 'plants', 'space', 'vehicles'];

// [label, [x, y, w, h]] in each photo's pixels.
const BOXES = {
  'imagenet_00_243.jpg': [['animals', [118, 60, 190, 395]]],
  'imagenet_02_438.jpg': [['household', [170, 255, 152, 232]], ['household', [370, 268, 132, 229]], ['household', [0, 25, 297, 225]]],
  'imagenet_03_990.jpg': [['plants', [38, 135, 212, 227]], ['plants', [200, 210, 245, 290]]],
  'imagenet_04_949.jpg': [
    ['food', [198, 27, 110, 116]], ['food', [378, 137, 112, 108]], ['food', [8, 183, 89, 83]],
    ['food', [103, 196, 94, 92]], ['food', [215, 171, 95, 99]], ['food', [327, 266, 73, 80]],
    ['food', [67, 289, 81, 102]], ['food', [168, 298, 84, 74]], ['food', [204, 416, 79, 78]],
  ],
  'imagenet_06_609.jpg': [['vehicles', [105, 133, 313, 204]], ['vehicles', [47, 214, 24, 22]]],
  'imagenet_07_609.jpg': [['vehicles', [42, 152, 458, 238]]],
  'imagenet_11_630.jpg': [['clothes', [0, 92, 512, 256]]],
  'imagenet_14_129.jpg': [['animals', [180, 168, 78, 132]], ['animals', [440, 186, 62, 124]]],
  'imagenet_15_99.jpg': [['animals', [0, 95, 175, 287]], ['animals', [243, 68, 107, 207]], ['animals', [215, 190, 121, 295]], ['animals', [472, 137, 40, 188]]],
  'imagenet_16_251.jpg': [['animals', [0, 0, 512, 452]]],
  'imagenet_17_22.jpg': [['animals', [0, 122, 512, 248]]],
  'imagenet_18_317.jpg': [['animals', [135, 42, 270, 426]]],
  'imagenet_19_305.jpg': [['animals', [118, 122, 314, 268]]],
  'chelsea.png': [['animals', [0, 0, 405, 300]]],
  'coffee.png': [['household', [172, 17, 240, 290]]],
  'rocket.jpg': [['space', [303, 127, 35, 280]]],
  'motorcycle_left.png': [['vehicles', [92, 62, 593, 390]], ['vehicles', [0, 140, 42, 90]]],
};

let server; let base; let browser; let page;

before(async () => {
  server = await startApi();
  base = server.base;
  browser = await launch({ viewport: { width: 1280, height: 1000 } });
  ({ page } = browser);
});

after(async () => {
  await browser?.close();
  server?.stop();
});

// The boxes of a COCO document by file name: [{ label, bbox }] in drawing order.
function boxesByFile(doc) {
  const label = Object.fromEntries(doc.categories.map((c) => [c.id, c.name]));
  return Object.fromEntries(doc.images.map((im) => [im.file_name, doc.annotations
    .filter((a) => a.image_id === im.id)
    .map((a) => ({ label: label[a.category_id], bbox: a.bbox }))]));
}

// Whether two [x, y, w, h] boxes have every edge within 2 of the image's pixels: a drag lands
// on whole screen pixels, which are up to 1.5 image pixels here.
function sameEdges(a, b) {
  const edges = ([x, y, w, h]) => [x, y, x + w, y + h];
  return edges(a).every((v, i) => Math.abs(v - edges(b)[i]) <= 2);
}

function assertSameBoxes(got, want, what) {
  assert.deepEqual(Object.keys(got).sort(), Object.keys(want).sort(), `${what}: the same photos`);
  for (const [file, boxes] of Object.entries(want)) {
    assert.equal(got[file].length, boxes.length, `${what}: ${file}: ${JSON.stringify(got[file])}`);
    boxes.forEach((b, k) => {
      assert.equal(got[file][k].label, b.label, `${what}: ${file} box ${k}`);
      assert.ok(sameEdges(got[file][k].bbox, b.bbox), `${what}: ${file} box ${k}: ${got[file][k].bbox} vs ${b.bbox}`);
    });
  }
}

test('real photos boxed by hand in the app export as the committed COCO fixture', async () => {
  const r = await fetch(`${base}/api/datasets`, { method: 'POST', headers: admin, body: JSON.stringify({ name: 'real photos', labels: LABELS, task: 'detect' }) });
  const created = await r.text();
  assert.equal(r.status, 201, created);
  const dataset = JSON.parse(created).id;

  await page.goto(`${base}/#/contribute`);
  await page.locator('[data-testid=dataset]').selectOption({ label: 'real photos' });
  for (const [file, boxes] of Object.entries(BOXES)) {
    const bytes = readFileSync(join(photos, file));
    await page.locator('[data-testid=box-image]').setInputFiles({ name: file, mimeType: file.endsWith('.png') ? 'image/png' : 'image/jpeg', buffer: bytes });
    // Drawn once the photo is on the page at its size.
    await waitFor(`${file} shown to draw on`, () => page.locator('.drawing img.preview').evaluate((img) => img.complete && img.naturalWidth > 0 && img.src.startsWith('blob:')).catch(() => false));
    for (const [k, [label, bbox]] of boxes.entries()) {
      await page.locator('[data-testid=contribute-label]').selectOption(label);
      await drag(page, '[data-testid=contribute-canvas]', bbox);
      await page.locator(`[data-testid=contribute-boxes][data-count="${k + 1}"]`).waitFor();
    }
    if (file === 'imagenet_04_949.jpg') await page.screenshot({ path: join(shots, 'contribute-real-boxes.png'), fullPage: true });
    await page.locator('[data-testid=send]').click();
    await page.locator(`[data-testid=sent] li[data-file="${file}"][data-status=pending]`).waitFor({ timeout: 60_000 });
  }

  // The admin looks them over and approves them as drawn.
  await page.goto(`${base}/#/admin`);
  await page.locator('[data-testid=token]').fill(TOKEN);
  await page.locator('[data-testid=sign-in]').click();
  await page.locator('[data-testid=review-card]').first().waitFor({ timeout: 30_000 });
  assert.equal(await page.locator('[data-testid=review-card]').count(), Object.keys(BOXES).length);
  await page.locator('[data-testid=approve-all]').click();
  await page.locator('[data-testid=queue-empty]').waitFor({ timeout: 60_000 });

  const exported = await (await fetch(`${base}/api/datasets/${dataset}/coco`, { headers: admin })).json();
  assert.equal(exported.info.total_images, Object.keys(BOXES).length);
  const drawn = Object.fromEntries(Object.entries(BOXES).map(([f, bs]) => [f, bs.map(([label, bbox]) => ({ label, bbox }))]));
  assertSameBoxes(boxesByFile(exported), drawn, 'the export against the boxes drawn');
  // The fixture: what the app exported, less what only this server knows.
  delete exported.info;
  for (const im of exported.images) delete im.coco_url;
  if (process.env.UPDATE_FIXTURES === '1' || !existsSync(fixture)) {
    assert.ok(process.env.UPDATE_FIXTURES === '1', `${fixture} is missing: run with UPDATE_FIXTURES=1`);
    // One image, annotation or category a line.
    const lines = (key) => `"${key}": [\n${exported[key].map((v) => `  ${JSON.stringify(v)}`).join(',\n')}\n]`;
    writeFileSync(fixture, `{\n${['images', 'annotations', 'categories'].map(lines).join(',\n')}\n}\n`);
  }
  const committed = JSON.parse(readFileSync(fixture, 'utf8'));
  assert.deepEqual(committed.categories, exported.categories);
  const files = (d) => d.images.map((im) => [im.file_name, im.sha256, im.width, im.height]).sort();
  assert.deepEqual(files(committed), files(exported), 'the same photos, bound by sha256');
  assertSameBoxes(boxesByFile(exported), boxesByFile(committed), 'the export against the fixture');
});
