// Runs before the first paint (a classic script in <head>): which page the address asks for and
// whether the browser is online, so the static shell in index.html shows that page's header and
// intro until the app (wasm) replaces it. The same rules as `page_from_hash` in web/src/main.rs.
(() => {
  const pages = { contribute: 'contribute', search: 'search', products: 'products', admin: 'admin' };
  const hash = location.hash.replace(/^#/, '').replace(/^\/+/, '');
  document.documentElement.dataset.page = pages[hash] || 'predict';
  document.documentElement.dataset.online = String(navigator.onLine);
})();
