// For the people who use it: every page at a phone's width and a desktop's, with axe-core; the
// main flows with the keyboard alone; installable (manifest, icons, a start URL that works
// offline). Its own api and browser profiles (scripts/e2e.sh runs it after e2e.test.mjs).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  TOKEN, admin, assertAccessible, classifyInPage, launch, makePng, predictionsShown, shots,
  startApi, testSplitPhotos, trainChampion, trainRankChampion, waitFor,
} from './harness.mjs';

const phone = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 };
const desktop = { viewport: { width: 1280, height: 800 } };
const pages = [['predict', '/#/'], ['search', '/#/search'], ['products', '/#/products'], ['contribute', '/#/contribute'], ['admin', '/#/admin']];
let server; let base;

before(async () => {
  mkdirSync(shots, { recursive: true });
  server = await startApi();
  base = server.base;
  await trainRankChampion(base);
  await trainChampion(base, 'product', { epochs: 20 });
});

after(() => server?.stop());

async function ready(page) {
  await page.locator('[data-testid=status]').filter({ hasText: /^ready/ }).waitFor({ timeout: 120_000 });
}

async function signIn(page) {
  await page.locator('[data-testid=token]').fill(TOKEN);
  await page.locator('[data-testid=sign-in]').click();
  await page.locator('[data-testid=models]').waitFor({ timeout: 60_000 });
}

// What sticks out of the viewport sideways: the document's own width, and every visible element
// whose box passes the right edge, unless a scrolling (or clipping) box of its own holds it.
function overflowing(page) {
  return page.evaluate(() => {
    const width = document.documentElement.clientWidth;
    const held = (el) => {
      for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
        if (/(auto|scroll|hidden|clip)/.test(getComputedStyle(p).overflowX)) return true;
      }
      return false;
    };
    const out = [];
    if (document.documentElement.scrollWidth > width) out.push(`document ${document.documentElement.scrollWidth} > ${width}`);
    for (const el of document.body.querySelectorAll('*')) {
      const r = el.getBoundingClientRect();
      if (r.width === 0 || r.height === 0 || r.right <= width + 0.5 || held(el)) continue;
      // Only the outermost: a child of an overflowing element says nothing new.
      if (el.parentElement && el.parentElement !== document.body && el.parentElement.getBoundingClientRect().right > width + 0.5) continue;
      out.push(`${el.tagName.toLowerCase()}${el.dataset.testid ? `[${el.dataset.testid}]` : ''}.${el.className}: right ${r.right.toFixed(0)} > ${width}`);
    }
    return out;
  });
}

// Controls smaller than a fingertip (44 × 44 CSS px), among those shown.
function smallTargets(page) {
  return page.evaluate(() => [...document.querySelectorAll('button, a[href], select, input, [role=button]')]
    .filter((el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden')
    .map((el) => [el, el.getBoundingClientRect()])
    .filter(([, r]) => r.height < 44 || r.width < 44)
    .map(([el, r]) => `${el.tagName.toLowerCase()}${el.dataset.testid ? `[${el.dataset.testid}]` : ''} "${(el.innerText || el.value || '').slice(0, 20)}" ${r.width.toFixed(0)}×${r.height.toFixed(0)}`));
}

test('every page fits a phone (390 × 844) and a desktop: no sideways overflow, touch-sized targets, no axe violation', async () => {
  for (const [size, options] of [['phone', phone], ['desktop', desktop]]) {
    const { page, close } = await launch(options);
    try {
      await page.goto(base);
      await ready(page);
      // The static first view in index.html (painted before the wasm arrives) says what the
      // app then shows, and is gone once the app runs.
      const shell = await page.evaluate(async () => {
        const doc = new DOMParser().parseFromString(await (await fetch('/')).text(), 'text/html');
        return Object.fromEntries([...doc.querySelectorAll('#shell section')].map((s) => [
          s.className.replace('shell-', ''), [s.querySelector('h1').textContent, s.querySelector('.hint')?.textContent ?? null]]));
      });
      assert.deepEqual(Object.keys(shell).sort(), pages.map(([n]) => n).sort());
      for (const [name, path] of pages) {
        await page.goto(`${base}${path}`);
        if (name === 'admin') await signIn(page);
        if (name === 'search') {
          await page.locator('[data-testid=search-status][data-ready=true]').waitFor({ timeout: 120_000 });
          await page.locator('[data-testid=query]').fill('a koala in a tree');
          await page.locator('[data-testid=hits] li img').first().waitFor({ timeout: 30_000 });
        }
        if (name === 'products') {
          await page.locator('[data-testid=product-status][data-ready=true]').waitFor({ timeout: 120_000 });
          await page.locator('[data-testid=product-title]').fill('A koala in a tree.');
          await page.locator('[data-testid=product-predictions] li').first().waitFor({ timeout: 30_000 });
        }
        if (name === 'contribute') await page.locator('[data-testid=label] option[value=animals]').waitFor({ state: 'attached' });
        // Admin with everything the classifier champion shows: its detail, gate, curves and
        // confusion matrix (the ranking champion is listed first).
        if (name === 'admin') {
          const { model_id: id } = await (await fetch(`${base}/api/models/current`)).json();
          await page.locator(`[data-testid=model-row][data-id="${id}"] a`).click();
          await page.locator(`[data-testid=model-detail][data-id="${id}"] [data-testid=model-loss-chart]`).waitFor({ timeout: 60_000 });
          await page.locator(`[data-testid=model-detail][data-id="${id}"] [data-testid=confusion]`).waitFor();
        }
        assert.equal(await page.locator('#shell').count(), 0, 'the static shell is removed');
        const shown = await page.evaluate(() => [document.querySelector('main h1').textContent,
          document.querySelector('main h1 ~ .hint')?.textContent ?? null]);
        if (name !== 'admin') assert.deepEqual(shell[name], shown, `the static shell of ${name}`);
        else assert.equal(shell[name][0], shown[0]);
        await page.screenshot({ path: join(shots, `${size}-${name}.png`), fullPage: true });
        assert.deepEqual(await overflowing(page), [], `${name} at ${size} width`);
        if (size === 'phone') assert.deepEqual(await smallTargets(page), [], `${name}: targets under 44 px at phone width`);
        await assertAccessible(page, `${name} at ${size} width`);
      }
    } finally {
      await close();
    }
  }
});

test('on a phone: the camera box appears only once the camera runs, the prediction lands in view, announced', async () => {
  const { page, close } = await launch(phone);
  try {
    await page.goto(base);
    await ready(page);
    const video = page.locator('video');
    assert.equal(await video.isVisible(), false, 'no empty camera box before the camera is started');
    const photo = testSplitPhotos()[0];
    const got = await classifyInPage(page, photo.path);
    assert.equal(got.length, 5);
    assert.equal(await page.evaluate(() => window.scrollY), 0, 'nothing scrolled the page');
    // Every label of the answer is inside the viewport, with no scrolling.
    const boxes = await page.locator('[data-testid=predictions] li').evaluateAll((lis) => lis.map((li) => {
      const r = li.getBoundingClientRect();
      return [r.top, r.bottom, r.left, r.right];
    }));
    for (const [top, bottom, left, right] of boxes) {
      assert.ok(top >= 0 && bottom <= 844 && left >= 0 && right <= 390, `a prediction outside the first screen: ${[top, bottom, left, right]}`);
    }
    // Screen readers hear each new answer: the list sits in a live region that was there before.
    assert.equal(await page.locator('[data-testid=predictions]').evaluate((el) => el.closest('[aria-live]')?.getAttribute('aria-live')), 'polite');
    await page.screenshot({ path: join(shots, 'phone-predict-result.png') });
    await assertAccessible(page, 'Predict with a result at phone width');
    // The camera: started, its preview shows; closed, it is gone again.
    await page.locator('[data-testid=camera]').click();
    await video.waitFor({ state: 'visible' });
    await page.waitForFunction(() => document.querySelector('video').videoWidth > 0);
    assert.deepEqual(await overflowing(page), [], 'the camera preview fits the phone');
    await page.screenshot({ path: join(shots, 'phone-camera.png') });
    await page.getByRole('button', { name: 'Close the camera' }).click();
    await video.waitFor({ state: 'hidden' });
  } finally {
    await close();
  }
});

// Press Tab until the focused element matches `selector` (at most `max` presses); the focus
// ring must be visible on it.
async function tabTo(page, selector, max = 40) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press('Tab');
    const found = await page.evaluate((sel) => document.activeElement?.matches(sel), selector);
    if (found) {
      const ring = await page.evaluate(() => {
        const s = getComputedStyle(document.activeElement);
        return { style: s.outlineStyle, width: parseFloat(s.outlineWidth), visible: document.activeElement.matches(':focus-visible') };
      });
      assert.ok(ring.visible && ring.style !== 'none' && ring.width >= 2, `visible focus on ${selector}: ${JSON.stringify(ring)}`);
      return;
    }
  }
  assert.fail(`${selector} not reached with ${max} presses of Tab`);
}

test('keyboard only: predict, contribute and review without a pointer', async () => {
  const { page, close } = await launch(desktop);
  // File choosers are intercepted once a listener exists; switching that on is a round trip to
  // the browser, which a key press right after `waitForEvent` can overtake (CI saw the native,
  // invisible chooser open instead). Listening from the start keeps it on for the whole test.
  page.on('filechooser', () => {});
  try {
    // Predict: Tab to the file picker, open it with Space, pick a photo.
    await page.goto(base);
    await ready(page);
    const photo = testSplitPhotos()[0];
    await tabTo(page, '[data-testid=file]');
    const [picker] = await Promise.all([page.waitForEvent('filechooser'), page.keyboard.press('Space')]);
    await picker.setFiles(photo.path);
    assert.equal((await predictionsShown(page, 1)).length, 5);

    // Contribute: to the page by its tab link, label chosen with the arrow keys, a name typed,
    // a file picked, sent with Enter.
    await tabTo(page, '[data-testid=nav-contribute]', 10);
    await page.keyboard.press('Enter');
    await page.locator('[data-testid=label] option[value=animals]').waitFor({ state: 'attached' });
    await tabTo(page, '[data-testid=label]');
    const labels = await page.locator('[data-testid=label] option').evaluateAll((os) => os.map((o) => o.value));
    for (let i = 0; i < labels.indexOf('animals'); i++) await page.keyboard.press('ArrowDown');
    assert.equal(await page.locator('[data-testid=label]').inputValue(), 'animals');
    await tabTo(page, '[data-testid=uploader]', 3);
    await page.keyboard.type('keyboard user');
    await tabTo(page, '[data-testid=files]', 3);
    const file = { name: 'keyboard-only.png', mimeType: 'image/png', buffer: makePng(90, 70, 77) };
    const [chooser] = await Promise.all([page.waitForEvent('filechooser'), page.keyboard.press('Space')]);
    await chooser.setFiles(file);
    await tabTo(page, '[data-testid=send]', 3);
    await page.keyboard.press('Enter');
    await page.locator('[data-testid=sent] li[data-file="keyboard-only.png"][data-status=pending]').waitFor({ timeout: 60_000 });
    const review = async () => (await (await fetch(`${base}/api/review?limit=500`, { headers: admin })).json()).images;
    const mine = (await review()).find((i) => i.filename === 'keyboard-only.png');
    assert.deepEqual([mine?.label, mine?.uploader], ['animals', 'keyboard user']);

    // Review: sign in with Enter, Tab to the new image's Approve button, press Enter.
    await page.goto(`${base}/#/admin`);
    await tabTo(page, '[data-testid=token]');
    await page.keyboard.type(TOKEN);
    await page.keyboard.press('Enter');
    const card = page.locator('[data-testid=review-card][data-file="keyboard-only.png"]');
    await card.waitFor({ timeout: 30_000 });
    await tabTo(page, '[data-testid=review-card][data-file="keyboard-only.png"] [data-testid=approve]', 200);
    await page.keyboard.press('Enter');
    await card.waitFor({ state: 'detached' });
    await waitFor('approved', async () => {
      const r = await fetch(`${base}/api/images/status?ids=${mine.id}`);
      return (await r.json())[0]?.status === 'approved';
    });
  } finally {
    await close();
  }
});

test('installable: manifest with 192/512 and maskable icons, theme colours, a start URL that loads offline', async () => {
  const { context, page, close } = await launch(desktop);
  try {
    await page.goto(base);
    await ready(page);
    await page.evaluate(() => navigator.serviceWorker.ready.then(() => true));
    await page.locator('[data-testid=offline-ready]').waitFor({ state: 'visible' });
    // Chromium's own verdict: the manifest parses, and nothing stands in the way of installing.
    const cdp = await context.newCDPSession(page);
    const { errors, data } = await cdp.send('Page.getAppManifest');
    assert.deepEqual(errors, [], 'manifest parse errors');
    const { installabilityErrors } = await cdp.send('Page.getInstallabilityErrors');
    assert.deepEqual(installabilityErrors, [], 'Chromium says the app is installable');
    const manifest = JSON.parse(data);
    assert.equal(manifest.display, 'standalone');
    assert.match(manifest.theme_color, /^#[0-9a-f]{6}$/i);
    assert.match(manifest.background_color, /^#[0-9a-f]{6}$/i);
    // Each icon is a PNG of the size it claims; "any" and "maskable" at 192 and 512.
    const have = new Set();
    for (const icon of manifest.icons) {
      const r = await fetch(new URL(icon.src, base));
      assert.equal(r.status, 200, icon.src);
      const png = Buffer.from(await r.arrayBuffer());
      if (icon.type === 'image/svg+xml') {
        assert.equal(icon.sizes, 'any');
        assert.match(png.toString('utf8', 0, 200), /^<svg /, icon.src);
        continue;
      }
      assert.equal(icon.type, 'image/png', icon.src);
      assert.equal(png.subarray(1, 4).toString(), 'PNG', icon.src);
      const [w, h] = [png.readUInt32BE(16), png.readUInt32BE(20)];
      assert.equal(icon.sizes, `${w}x${h}`, icon.src);
      for (const purpose of (icon.purpose || 'any').split(' ')) have.add(`${purpose} ${w}`);
    }
    for (const want of ['any 192', 'any 512', 'maskable 192', 'maskable 512']) assert.ok(have.has(want), `icon ${want}`);
    // The start URL, opened offline (as a launch from the home screen would), is the app.
    await context.setOffline(true);
    try {
      const app = await context.newPage();
      await app.goto(new URL(manifest.start_url, base).href);
      await ready(app);
      await app.locator('[data-testid=online]').filter({ hasText: 'offline' }).waitFor();
      await app.close();
    } finally {
      await context.setOffline(false);
    }
  } finally {
    await close();
  }
});
