// Renders the app icons the web app manifest lists, with the installed Chromium:
//   public/icon.svg           → public/icons/icon-192.png, icon-512.png   (purpose "any")
//   web/icons/maskable.svg    → public/icons/maskable-192.png, -512.png   (purpose "maskable":
//                               full-bleed background, the drawing inside the central 80 % circle)
// The PNGs are committed; rerun after changing either SVG:
//   node scripts/make-icons.mjs      (needs playwright/node_modules: cd playwright && npm ci)
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { chromium } = createRequire(join(root, 'playwright/package.json'))('playwright-core');
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  for (const [svg, name] of [['public/icon.svg', 'icon'], ['web/icons/maskable.svg', 'maskable']]) {
    const src = `data:image/svg+xml;base64,${readFileSync(join(root, svg)).toString('base64')}`;
    for (const size of [192, 512]) {
      const page = await browser.newPage({ viewport: { width: size, height: size } });
      await page.setContent(`<body style="margin:0;background:transparent"><img src="${src}" width="${size}" height="${size}" style="display:block"></body>`);
      await page.locator('img').evaluate((img) => img.decode());
      await page.screenshot({ path: join(root, `public/icons/${name}-${size}.png`), omitBackground: true });
      await page.close();
      console.log(`public/icons/${name}-${size}.png`);
    }
  }
} finally {
  await browser.close();
}
