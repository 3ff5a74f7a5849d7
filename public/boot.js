// Start the Leptos app (its wasm runs `main` on init), and ask the browser to keep our caches
// (app shell, model) under storage pressure.
import init from '/app/web.js';

init({ module_or_path: '/app/web_bg.wasm' });
navigator.storage?.persist?.().catch(() => {});
