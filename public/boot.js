// Start the Leptos app (its wasm runs `main` on init), tell it where the inference worker is,
// and ask the browser to keep our caches (app shell, model) under storage pressure.
// scripts/build-web.sh rewrites these paths to content-hashed file names.
import init from '/app/web.js';

document.documentElement.dataset.worker = '/worker.js';
init({ module_or_path: '/app/web_bg.wasm' });
navigator.storage?.persist?.().catch(() => {});
