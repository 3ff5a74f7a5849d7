// Thin browser glue for the Leptos app (web/src/outbox.rs): the contribution outbox in
// IndexedDB (files are kept as Blobs, so a contribution made offline survives a reload), and
// uploads with progress (XMLHttpRequest: fetch reports no upload progress). IndexedDB through
// the app's one helper, public/idb.js.
import { withStore } from '/idb.js';

const OUTBOX = { db: 'edgeml', store: 'outbox', keyOptions: { keyPath: 'id', autoIncrement: true } };

// Keep one contribution (dataset, label, uploader, optional caption; for a detection dataset its
// one image's boxes, as JSON, instead of a label) as one item per request: `groups` is File[][],
// each group within the server's limits (web/src/limits.rs splits the selection). One
// transaction: all items are kept or none.
export function outboxAdd(dataset, label, uploader, groups, caption, boxes) {
  const created = Date.now();
  return withStore(OUTBOX, 'readwrite', (s) => {
    for (const files of groups) {
      s.add({
        dataset, label, uploader, caption: caption || '', boxes: boxes || '', created,
        files: Array.from(files, (f) => ({ name: f.name, type: f.type, blob: f })),
      });
    }
  });
}

// Replace a kept item by one item per group of its files (`groups`: arrays of indexes into
// `item.files`): an item kept under larger limits than the server's now. One transaction.
export function outboxSplit(item, groups) {
  const { id, ...rest } = item;
  return withStore(OUTBOX, 'readwrite', (s) => {
    s.delete(id);
    for (const g of groups) s.add({ ...rest, files: g.map((i) => item.files[i]) });
  });
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
  // A detection image is labelled by its boxes.
  if (item.boxes) form.append('boxes', item.boxes);
  else form.append('label', item.label);
  if (item.caption) form.append('caption', item.caption);
  for (const f of item.files) form.append('files', f.blob, f.name);
  return new Promise((ok) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', url);
    // Header values are bytes: the name travels percent-encoded UTF-8, decoded by the server.
    if (item.uploader) xhr.setRequestHeader('X-Uploader', encodeURIComponent(item.uploader));
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded, e.total); };
    xhr.onload = () => ok({ status: xhr.status, body: xhr.responseText });
    xhr.onerror = () => ok({ status: 0, body: '' });
    xhr.ontimeout = () => ok({ status: 0, body: '' });
    xhr.send(form);
  });
}
