// One engine per page load (?engine=tract|ort&runs=N). Gallery: N int8 vectors of the model's
// dimension from a fixed-seed generator (ranking cost does not depend on the values). tract:
// the app's own path, wasm-infer's SearchIndex (Rust: encode + int8 ranking + top-k);
// onnxruntime-web: its encoder and the ranking a JavaScript app would write (`rank` below).
const params = new URLSearchParams(location.search);
const engine = params.get('engine');
const runs = Number(params.get('runs') || 100);
const WARMUP = 10;
const QUERIES = ['a koala', 'a red car', 'two strawberries', 'the planet saturn', 'a pair of scissors',
  'a yellow flower', 'a green tree frog', 'a police car', 'a slice of bread', 'a blue t-shirt'];

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(s.length * p))]; };

function gallery(count, dim) {
  const v = new Int8Array(count * dim);
  let x = 12345;
  for (let i = 0; i < v.length; i++) { x = (x * 1103515245 + 12345) >>> 0; v[i] = ((x >>> 16) % 255) - 127; }
  return v;
}

function rank(q, v, count, dim, k) {
  const scores = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    let s = 0;
    const o = i * dim;
    for (let j = 0; j < dim; j++) s += v[o + j] * q[j];
    scores[i] = s / 127;
  }
  return Array.from(scores.keys()).sort((a, b) => scores[b] - scores[a]).slice(0, k);
}

async function time(fn) {
  for (let i = 0; i < WARMUP; i++) await fn(i);
  const ms = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn(i);
    ms.push(performance.now() - t0);
  }
  return { median: median(ms), p90: pct(ms, 0.9) };
}

async function main() {
  const wasm = await import('/pkg/wasm_infer.js');
  await wasm.default('/pkg/wasm_infer_bg.wasm');
  const manifest = await fetch('/model/manifest.json').then((r) => r.text());
  const onnx = new Uint8Array(await (await fetch('/model/text.onnx')).arrayBuffer());
  const dim = JSON.parse(manifest).text.output.shape[1];
  let embed;
  let session = null;
  if (engine === 'tract') {
    const nnef = new Uint8Array(await (await fetch('/model/text.nnef')).arrayBuffer());
    session = new wasm.TextSession(nnef, manifest);
    embed = async (text) => session.embed(text);
  } else {
    const ort = await import('/ort/ort.wasm.min.mjs');
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.wasmPaths = '/ort/';
    const ortSession = await ort.InferenceSession.create(onnx, { executionProviders: ['wasm'] });
    embed = async (text) => {
      const t = JSON.parse(wasm.tokenize(text, manifest));
      const n = t.ids.length;
      const out = await ortSession.run({
        ids: new ort.Tensor('int64', BigInt64Array.from(t.ids.map(BigInt)), [1, n]),
        mask: new ort.Tensor('float32', Float32Array.from(t.mask), [1, n]),
      });
      return out[ortSession.outputNames[0]].data;
    };
  }
  const embedding = Array.from(await embed(QUERIES[0]));
  const encode = await time((i) => embed(QUERIES[i % QUERIES.length]));
  const search = {};
  for (const count of [1000, 10000]) {
    const v = gallery(count, dim);
    if (session) {
      const items = Array.from({ length: count }, (_, i) => ({ id: `img${i}`, label: 'x', captions: [] }));
      const index = new wasm.SearchIndex(JSON.stringify({ model_id: 'bench', dim, count, scale: 127, items }), new Uint8Array(v.buffer));
      search[count] = await time((i) => JSON.parse(index.search(session, QUERIES[i % QUERIES.length], 12)));
    } else {
      search[count] = await time(async (i) => rank(await embed(QUERIES[i % QUERIES.length]), v, count, dim, 12));
    }
  }
  return { embedding, encode, search };
}

main()
  .then((r) => { window.result = { engine, ...r }; document.getElementById('out').textContent = JSON.stringify(window.result, null, 1); })
  .catch((e) => { window.result = { engine, error: String(e && e.stack || e) }; });
