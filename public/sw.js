// Service worker: precaches the app shell (index, JS, wasm, worker) so the app starts offline.
// The build (scripts/build-web.sh) fills in the file list and a content hash for the cache name,
// so a new deployment replaces the old shell. Models are cached by the inference worker.
const SHELL = 'edgeml-shell-dev';
const PRECACHE = ['/', '/index.html'];
// The run-time image cache is bounded: at most IMAGES_KEPT images (the oldest stored is
// dropped first), none larger than IMAGE_MAX_BYTES (those are fetched each time).
const IMAGES = 'edgeml-images';
const IMAGES_KEPT = 300;
const IMAGE_MAX_BYTES = 2 * 1024 * 1024;

self.addEventListener('install', (e) => {
  e.waitUntil(caches.open(SHELL).then((c) => c.addAll(PRECACHE)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (e) => {
  e.waitUntil((async () => {
    for (const k of await caches.keys()) if (k.startsWith('edgeml-shell-') && k !== SHELL) await caches.delete(k);
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (e) => {
  const url = new URL(e.request.url);
  if (e.request.method !== 'GET' || url.origin !== self.location.origin) return;
  // Approved images never change under their id: kept once seen, so search results show
  // their thumbnails offline. Requests that carry the admin token (header or query) are not.
  if (/^\/api\/images\/[\w-]+\/blob$/.test(url.pathname) && !url.search && !e.request.headers.has('authorization')) {
    e.respondWith(caches.open(IMAGES).then(async (c) => {
      const hit = await c.match(e.request);
      if (hit) return hit;
      const r = await fetch(e.request);
      const size = Number(r.headers.get('content-length'));
      if (r.ok && !(size > IMAGE_MAX_BYTES)) await keepImage(c, e.request, r.clone());
      return r;
    }));
    return;
  }
  if (url.pathname.startsWith('/api/') || url.pathname === '/health' || url.pathname === '/metrics') return;
  if (e.request.mode === 'navigate') {
    e.respondWith(fetch(e.request).catch(() => caches.match('/index.html', { cacheName: SHELL })));
    return;
  }
  e.respondWith(
    caches.match(e.request, { cacheName: SHELL }).then((hit) => hit || fetch(e.request)),
  );
});

// Store one image, then drop the oldest stored ones beyond IMAGES_KEPT (Cache Storage lists
// its entries in the order they were stored).
async function keepImage(cache, request, response) {
  await cache.put(request, response);
  const keys = await cache.keys();
  for (const old of keys.slice(0, Math.max(0, keys.length - IMAGES_KEPT))) await cache.delete(old);
}
