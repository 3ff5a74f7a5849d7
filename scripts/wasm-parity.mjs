// Runs the wasm32 build of wasm-infer (node flavour) on cases prepared by the Rust parity test
// and prints what it computed as JSON: the preprocessed tensor's sha256 and the probabilities
// for each image, the top labels of the encoded file decoded in wasm, and the error a tampered
// model raises.
//
//   node scripts/wasm-parity.mjs PKG_DIR MODEL_DIR CASES_DIR
import { createRequire } from 'node:module';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const [pkgDir, modelDir, casesDir] = process.argv.slice(2);
const require = createRequire(import.meta.url);
const wasm = require(resolve(pkgDir, 'wasm_infer.js'));

const manifest = readFileSync(join(modelDir, 'manifest.json'), 'utf8');
const onnx = readFileSync(join(modelDir, 'model.onnx'));
const session = new wasm.Session(onnx, manifest);
const cases = JSON.parse(readFileSync(join(casesDir, 'cases.json'), 'utf8'));

const results = cases.map((c) => {
  const rgba = readFileSync(join(casesDir, c.file));
  const tensor = wasm.preprocess(rgba, c.width, c.height, manifest);
  const sha256 = createHash('sha256')
    .update(Buffer.from(tensor.buffer, tensor.byteOffset, tensor.byteLength))
    .digest('hex');
  const probs = Array.from(session.run(tensor));
  const classified = JSON.parse(session.classify(rgba, c.width, c.height, 3));
  // The encoded file, decoded inside wasm by the server's decoder.
  const fromFile = JSON.parse(session.classifyImage(readFileSync(join(casesDir, c.encoded)), 3));
  return {
    file: c.file,
    tensor_sha256: sha256,
    probs,
    top: classified.predictions,
    ms: classified.ms,
    encoded_top: fromFile.predictions,
    encoded_size: [fromFile.width, fromFile.height],
  };
});

const tampered = Buffer.from(onnx);
tampered[tampered.length >> 1] ^= 0x40;
let tamperError = null;
try {
  new wasm.Session(tampered, manifest);
} catch (e) {
  tamperError = String(e.message ?? e);
}
process.stdout.write(JSON.stringify({ results, tamper_error: tamperError }));
