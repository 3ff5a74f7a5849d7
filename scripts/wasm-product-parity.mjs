// Runs the wasm32 build of wasm-infer (node flavour) on a product model and prints what it
// computed as JSON: for each case, the probabilities of the NNEF head on the shared 8-bit NNEF
// backbone (as browsers load them) from given features and a title, and from an encoded image
// file decoded in wasm with and without the title; and `tokenize` of each given text. The Rust
// test (trainer/tests/product.rs) compares them with candle, native tract and the native
// tokenizer.
//
//   node scripts/wasm-product-parity.mjs PKG_DIR MODEL_DIR CASES_JSON
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const [pkgDir, modelDir, casesFile] = process.argv.slice(2);
const require = createRequire(import.meta.url);
const wasm = require(resolve(pkgDir, 'wasm_infer.js'));

const manifest = readFileSync(join(modelDir, 'manifest.json'), 'utf8');
const backbone = new wasm.Backbone(readFileSync(join(modelDir, 'backbone.q8')), manifest);
const m = JSON.parse(manifest);
const session = wasm.ProductSession.composed(backbone, readFileSync(join(modelDir, m.nnef.file)), manifest);
const cases = JSON.parse(readFileSync(casesFile, 'utf8'));

let nothing = null;
try {
  session.scores(undefined, ' ?! ');
} catch (e) {
  nothing = String(e.message ?? e);
}
process.stdout.write(JSON.stringify({
  given: cases.given.map((c) => Array.from(
    session.scores(c.features ? Float32Array.from(c.features) : undefined, c.text))),
  files: cases.files.map((c) => {
    const f = session.featuresImage(readFileSync(c.image));
    return {
      both: Array.from(session.scores(f, c.text)),
      image: Array.from(session.scores(f, '')),
      top: JSON.parse(session.classify(f, c.text, 3)).predictions,
    };
  }),
  nothing_error: nothing,
  // The tokenizer the module offers other engines (benchmarks), on the given texts.
  tokens: cases.given.map((c) => JSON.parse(wasm.tokenize(c.text, manifest))),
}));
