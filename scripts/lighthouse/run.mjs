// Lighthouse 12 (performance, accessibility, best practices) on the Predict and Search pages of
// the release api (its own fresh data folder, first model trained on start), in the installed
// Chromium: mobile (Lighthouse's default: Moto G Power screen, simulated slow 4G and a 4x
// slower CPU) and desktop presets, each a cold first visit (Lighthouse resets storage, so no
// service worker or cache helps), each LH_RUNS times (3). Prints a table of the median runs;
// exits 1 if a median score is under 95.
// LH_REPORTS=DIR also writes each full report there as JSON; LH_ONLY=Predict/mobile runs one. Run by scripts/lighthouse.sh.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import lighthouse from 'lighthouse';
import desktopConfig from 'lighthouse/core/config/desktop-config.js';
import { startApi, trainRankChampion } from '../../playwright/harness.mjs';

const RUNS = Number(process.env.LH_RUNS || 3);
const port = 9300 + Math.floor(Math.random() * 500);
const profile = mkdtempSync(join(tmpdir(), 'edgeml-lighthouse-'));
const chrome = spawn('/usr/bin/chromium', ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
  '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync',
  `--user-data-dir=${profile}`, `--remote-debugging-port=${port}`, 'about:blank'], { stdio: 'ignore' });
// LH_BASE=URL measures a server already running (with its ranking champion) instead.
const server = process.env.LH_BASE ? { base: process.env.LH_BASE, stop() {} } : await startApi({ quiet: true });
// Search needs a ranking champion.
if (!process.env.LH_BASE) await trainRankChampion(server.base);
for (let i = 0; ; i++) {
  try { await fetch(`http://127.0.0.1:${port}/json/version`); break; } catch { if (i > 100) throw new Error('chromium did not start'); }
  await new Promise((r) => setTimeout(r, 100));
}
const rows = [];
let low = false;
try {
  for (const [name, path] of [['Predict', '/#/'], ['Search', '/#/search']]) {
    for (const [form, config] of [['mobile', undefined], ['desktop', desktopConfig]]) {
      if (process.env.LH_ONLY && process.env.LH_ONLY !== `${name}/${form}`) continue;
      // Lighthouse's scores vary from run to run (its simulated times scale the main-thread
      // tasks it observed, and this machine has 2 cores): the run with the median performance
      // score of RUNS is reported.
      const runs = [];
      for (let i = 0; i < RUNS; i++) {
        runs.push((await lighthouse(`${server.base}${path}`, {
          port, output: 'json', logLevel: 'error', onlyCategories: ['performance', 'accessibility', 'best-practices'],
        }, config)).lhr);
      }
      runs.sort((x, y) => x.categories.performance.score - y.categories.performance.score);
      const lhr = runs[(RUNS - 1) >> 1];
      const all = runs.map((r) => Math.round(r.categories.performance.score * 100)).join(' ');
      if (process.env.LH_REPORTS) writeFileSync(join(process.env.LH_REPORTS, `${name}-${form}.json`), JSON.stringify(lhr));
      const score = (c) => Math.round(lhr.categories[c].score * 100);
      const ms = (a) => `${(lhr.audits[a].numericValue / 1000).toFixed(2)} s`;
      const row = {
        page: name, form, performance: score('performance'), [`performance, ${RUNS} runs`]: all, accessibility: score('accessibility'),
        'best practices': score('best-practices'), FCP: ms('first-contentful-paint'),
        LCP: ms('largest-contentful-paint'), TBT: `${Math.round(lhr.audits['total-blocking-time'].numericValue)} ms`,
        CLS: lhr.audits['cumulative-layout-shift'].numericValue.toFixed(3), 'speed index': ms('speed-index'),
      };
      rows.push(row);
      if ([row.performance, row.accessibility, row['best practices']].some((s) => s < 95)) {
        low = true;
        for (const [id, a] of Object.entries(lhr.audits)) {
          if (a.score !== null && a.score < 0.9 && a.scoreDisplayMode !== 'informative' && a.scoreDisplayMode !== 'notApplicable') {
            console.error(`  ${name}/${form}: ${id} ${a.score} ${a.displayValue || ''}`);
          }
        }
      }
    }
  }
} finally {
  server.stop();
  const exited = new Promise((ok) => chrome.once('exit', ok));
  chrome.kill();
  await exited;
  rmSync(profile, { recursive: true, force: true, maxRetries: 5 });
}
const cols = Object.keys(rows[0]);
console.log(`| ${cols.join(' | ')} |\n|${cols.map(() => '---').join('|')}|`);
for (const r of rows) console.log(`| ${cols.map((c) => r[c]).join(' | ')} |`);
process.exit(low ? 1 : 0);
