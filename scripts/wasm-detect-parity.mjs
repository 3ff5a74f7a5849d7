// Runs the wasm32 build of wasm-infer (node flavour) on a detection model and on cases prepared
// by the Rust test (trainer/tests/detect_model.rs), and prints as JSON, per image: the
// preprocessed tensor's sha256 (the whole image stretched), the head's maps and the boxes the
// session shows (`Session.detect`: decoding inside wasm), on the shipped 8-bit backbone (as in
// the browser) and on the same backbone with f32 weights (F32_DIR, what candle is checked
// against).
//
//   node scripts/wasm-detect-parity.mjs PKG_DIR MODEL_DIR CASES_DIR F32_DIR
import { createRequire } from 'node:module';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const [pkgDir, modelDir, casesDir, f32Dir] = process.argv.slice(2);
const require = createRequire(import.meta.url);
const wasm = require(resolve(pkgDir, 'wasm_infer.js'));

const load = (dir) => {
  const manifest = readFileSync(join(dir, 'manifest.json'), 'utf8');
  const m = JSON.parse(manifest);
  const backbone = new wasm.Backbone(readFileSync(join(dir, m.backbone.int8.file)), manifest);
  return { manifest, session: wasm.Session.composed(backbone, readFileSync(join(dir, m.nnef.file)), manifest) };
};
const shipped = load(modelDir);
const full = load(f32Dir);
const cases = JSON.parse(readFileSync(join(casesDir, 'cases.json'), 'utf8'));

const results = cases.map((c) => {
  const rgba = readFileSync(join(casesDir, c.file));
  const tensor = wasm.preprocess(rgba, c.width, c.height, shipped.manifest);
  const sha256 = createHash('sha256')
    .update(Buffer.from(tensor.buffer, tensor.byteOffset, tensor.byteLength))
    .digest('hex');
  return {
    file: c.file,
    tensor_sha256: sha256,
    maps: Array.from(shipped.session.run(tensor)),
    maps_f32: Array.from(full.session.run(tensor)),
    shown: JSON.parse(shipped.session.detect(rgba, c.width, c.height)),
    shown_f32: JSON.parse(full.session.detect(rgba, c.width, c.height)),
  };
});
console.log(JSON.stringify({ results }));
