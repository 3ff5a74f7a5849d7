// Start the Leptos app (its wasm runs `main` on init).
import init from '/app/web.js';

init({ module_or_path: '/app/web_bg.wasm' });
