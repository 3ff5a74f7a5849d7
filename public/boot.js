// Start the Leptos app: compile and instantiate its wasm, then `mount` it in the next task. Tell
// it where the inference worker is, and ask the browser to keep our caches (app shell, model)
// under storage pressure. scripts/build-web.sh rewrites these paths to content-hashed names.
import init, { mount } from '/app/web.js';

document.documentElement.dataset.worker = '/worker.js';
await init({ module_or_path: '/app/web_bg.wasm' });
// Compiled and instantiated; the app mounts in a task of its own.
await new Promise((ok) => { setTimeout(ok, 0); });
mount();
navigator.storage?.persist?.().catch(() => {});
