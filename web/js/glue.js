// Thin browser glue for the Leptos app (web/src/outbox.rs): the contribution outbox in
// IndexedDB (files are kept as Blobs, so a contribution made offline survives a reload), and
// uploads with progress (XMLHttpRequest: fetch reports no upload progress). IndexedDB through
// the app's one helper, public/idb.js.
import { withStore } from '/idb.js';

const OUTBOX = { db: 'edgeml', store: 'outbox', keyOptions: { keyPath: 'id', autoIncrement: true } };

// Keep one contribution (dataset, label, uploader, File[], optional caption) until it
// reaches the server.
export function outboxAdd(dataset, label, uploader, files, caption) {
  const item = {
    dataset, label, uploader, caption: caption || '', created: Date.now(),
    files: Array.from(files, (f) => ({ name: f.name, type: f.type, blob: f })),
  };
  return withStore(OUTBOX, 'readwrite', (s) => s.add(item));
}

// Every kept contribution, oldest first.
export function outboxAll() {
  return withStore(OUTBOX, 'readonly', (s) => s.getAll());
}

export function outboxDelete(id) {
  return withStore(OUTBOX, 'readwrite', (s) => s.delete(id));
}

// POST one kept contribution as multipart; resolves to {status, body} (status 0: no network).
export function uploadItem(url, item, onProgress) {
  const form = new FormData();
  form.append('label', item.label);
  if (item.caption) form.append('caption', item.caption);
  for (const f of item.files) form.append('file', f.blob, f.name);
  return new Promise((ok) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', url);
    if (item.uploader) xhr.setRequestHeader('X-Uploader', item.uploader);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded, e.total); };
    xhr.onload = () => ok({ status: xhr.status, body: xhr.responseText });
    xhr.onerror = () => ok({ status: 0, body: '' });
    xhr.ontimeout = () => ok({ status: 0, body: '' });
    xhr.send(form);
  });
}
