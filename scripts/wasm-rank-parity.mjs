// Runs the wasm32 build of wasm-infer (node flavour) on a ranking model and prints what it
// computed as JSON: token ids of each text, text embeddings, and image embeddings of encoded
// files decoded in wasm (the NNEF image head on the shared 8-bit NNEF backbone, the NNEF text
// encoder, as browsers load them). The Rust test (trainer/tests/rank.rs) compares them with native tract.
//
//   node scripts/wasm-rank-parity.mjs PKG_DIR MODEL_DIR CASES_JSON
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const [pkgDir, modelDir, casesFile] = process.argv.slice(2);
const require = createRequire(import.meta.url);
const wasm = require(resolve(pkgDir, 'wasm_infer.js'));

const manifest = readFileSync(join(modelDir, 'manifest.json'), 'utf8');
const backbone = new wasm.Backbone(readFileSync(join(modelDir, 'backbone.q8')), manifest);
const m = JSON.parse(manifest);
const head = readFileSync(join(modelDir, m.nnef.file));
const images = wasm.Session.composed(backbone, head, manifest);
const texts = new wasm.TextSession(readFileSync(join(modelDir, m.text.nnef.file)), manifest);
const cases = JSON.parse(readFileSync(casesFile, 'utf8'));

let wrongFile = null;
try {
  new wasm.TextSession(head, manifest);
} catch (e) {
  wrongFile = String(e.message ?? e);
}
process.stdout.write(JSON.stringify({
  tokens: cases.texts.map((t) => JSON.parse(wasm.tokenize(t, manifest))),
  text_embeddings: cases.texts.map((t) => Array.from(texts.embed(t))),
  image_embeddings: cases.images.map((f) => Array.from(images.embedImage(readFileSync(f)))),
  wrong_file_error: wrongFile,
}));
