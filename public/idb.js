// The one IndexedDB helper of the app: open a database with one object store (created on first
// use), run `work(store)` in a transaction and resolve with the request's result once the
// transaction commits. The page's contribution outbox (web/js/glue.js) and the inference
// worker's locally embedded images (worker.js) both use it.
function open(db, store, keyOptions) {
  return new Promise((ok, fail) => {
    const r = indexedDB.open(db, 1);
    r.onupgradeneeded = () => r.result.createObjectStore(store, keyOptions);
    r.onsuccess = () => ok(r.result);
    r.onerror = () => fail(r.error);
  });
}

export async function withStore({ db, store, keyOptions }, mode, work) {
  const conn = await open(db, store, keyOptions);
  try {
    return await new Promise((ok, fail) => {
      const t = conn.transaction(store, mode);
      const req = work(t.objectStore(store));
      t.oncomplete = () => ok(req ? req.result : undefined);
      t.onerror = () => fail(t.error);
      t.onabort = () => fail(t.error || new Error('IndexedDB transaction aborted'));
    });
  } finally {
    conn.close();
  }
}
