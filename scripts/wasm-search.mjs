// Runs the wasm32 build of wasm-infer (node flavour) on a gallery and prints, as JSON, the
// `similar` reply for each asked id, after adding the given local images. The Rust test
// (wasm-infer/tests/search.rs) compares them with the native search.
//
//   node scripts/wasm-search.mjs PKG_DIR GALLERY_DIR CASES_JSON
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const [pkgDir, dir, casesFile] = process.argv.slice(2);
const require = createRequire(import.meta.url);
const wasm = require(resolve(pkgDir, 'wasm_infer.js'));
globalThis.performance ??= { now: () => Date.now() };

const index = new wasm.SearchIndex(readFileSync(join(dir, 'gallery.json'), 'utf8'), readFileSync(join(dir, 'gallery.bin')));
const cases = JSON.parse(readFileSync(casesFile, 'utf8'));
for (const l of cases.local) index.addLocal(l.id, l.label, l.caption, Float32Array.from(l.vector), l.thumb);
let broken = null;
try {
  new wasm.SearchIndex(readFileSync(join(dir, 'gallery.json'), 'utf8'), readFileSync(join(dir, 'gallery.bin')).subarray(1));
} catch (e) {
  broken = String(e.message ?? e);
}
process.stdout.write(JSON.stringify({
  ready: JSON.parse(index.readyMessage()),
  similar: cases.ids.map((id) => JSON.parse(index.similar(id, cases.k))),
  broken,
}));
