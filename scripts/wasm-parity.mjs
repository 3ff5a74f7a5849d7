// Runs the wasm32 build of wasm-infer (node flavour) on cases prepared by the Rust parity test
// and prints what it computed as JSON: the preprocessed tensor's sha256 and the probabilities
// for each image (the model's NNEF head composed on the shipped 8-bit NNEF backbone, as in the
// browser, and on the same backbone with f32 weights, F32_DIR, the reference candle is checked
// against), the top labels of the encoded file decoded in wasm, the error a tampered head and
// a tampered backbone raise, and the refusal of a manifest without NNEF files.
//
//   node scripts/wasm-parity.mjs PKG_DIR MODEL_DIR CASES_DIR F32_DIR
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
  const head = readFileSync(join(dir, m.nnef.file));
  const backboneBytes = readFileSync(join(dir, m.backbone.int8.file));
  const backbone = new wasm.Backbone(backboneBytes, manifest);
  return { manifest, head, backboneBytes, backbone, session: wasm.Session.composed(backbone, head, manifest) };
};
const { manifest, head, backboneBytes, backbone, session } = load(modelDir);
const full = load(f32Dir).session;
const cases = JSON.parse(readFileSync(join(casesDir, 'cases.json'), 'utf8'));

const results = cases.map((c) => {
  const rgba = readFileSync(join(casesDir, c.file));
  const tensor = wasm.preprocess(rgba, c.width, c.height, manifest);
  const sha256 = createHash('sha256')
    .update(Buffer.from(tensor.buffer, tensor.byteOffset, tensor.byteLength))
    .digest('hex');
  const probs = Array.from(session.run(tensor));
  const probsF32 = Array.from(full.run(tensor));
  const classified = JSON.parse(session.classify(rgba, c.width, c.height, 3));
  // The encoded file, decoded inside wasm by the server's decoder.
  const fromFile = JSON.parse(session.classifyImage(readFileSync(join(casesDir, c.encoded)), 3));
  return {
    file: c.file,
    tensor_sha256: sha256,
    probs,
    probs_f32: probsF32,
    top: classified.predictions,
    ms: classified.ms,
    encoded_top: fromFile.predictions,
    encoded_size: [fromFile.width, fromFile.height],
  };
});

// A flipped byte in either file is refused when the session or backbone is built.
const refusal = (build) => {
  try {
    build();
    return null;
  } catch (e) {
    return String(e.message ?? e);
  }
};
const flip = (bytes) => {
  const t = Buffer.from(bytes);
  t[t.length >> 1] ^= 0x40;
  return t;
};
const tamperError = refusal(() => wasm.Session.composed(backbone, flip(head), manifest));
const backboneTamperError = refusal(() => new wasm.Backbone(flip(backboneBytes), manifest));
// What the worker uses once WebCrypto has checked the file: the same model, no second hash;
// the size is still checked.
const prechecked = wasm.Session.composed(wasm.Backbone.prechecked(backboneBytes, manifest), head, manifest);
const precheckedSame = (() => {
  const c = cases[0];
  const tensor = wasm.preprocess(readFileSync(join(casesDir, c.file)), c.width, c.height, manifest);
  const a = Array.from(session.run(tensor));
  const b = Array.from(prechecked.run(tensor));
  return a.length > 0 && a.every((v, i) => v === b[i]);
})();
const precheckedSizeError = refusal(() => wasm.Backbone.prechecked(backboneBytes.subarray(0, backboneBytes.length - 1), manifest));
// A manifest written before NNEF files (no `nnef`): browsers refuse it (the api serves it).
const old = JSON.parse(manifest);
delete old.nnef;
const oldError = refusal(() => wasm.Session.composed(backbone, head, JSON.stringify(old)));
process.stdout.write(JSON.stringify({
  results,
  tamper_error: tamperError,
  backbone_tamper_error: backboneTamperError,
  prechecked_same: precheckedSame,
  prechecked_size_error: precheckedSizeError,
  old_error: oldError,
  backbone_sha256: backbone.sha256,
}));
