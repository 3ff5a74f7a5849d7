// Service worker: precaches the app shell (index, JS, wasm, worker) so the app starts offline.
// The build (scripts/build-web.sh) fills in the file list and a content hash for the cache name,
// so a new deployment replaces the old shell. Models are cached by the inference worker.
const SHELL = 'edgeml-shell-dev';
const PRECACHE = ['/', '/index.html'];

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
  // their thumbnails offline.
  if (/^\/api\/images\/[\w-]+\/blob$/.test(url.pathname) && !e.request.headers.has('authorization')) {
    e.respondWith(caches.open('edgeml-images').then(async (c) => {
      const hit = await c.match(e.request);
      if (hit) return hit;
      const r = await fetch(e.request);
      if (r.ok) await c.put(e.request, r.clone());
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
