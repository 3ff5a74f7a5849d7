// The threaded tract module's benchmark runs here: rayon's pool makes its caller wait, which a
// page's own thread may not do. Times are reported from the page's navigation (`origin`).
import { tract } from '/tract.js';

self.onmessage = async ({ data: { pkg, threads, runs, origin } }) => {
  const now = () => performance.timeOrigin + performance.now() - origin;
  try {
    self.postMessage({ result: await tract({ pkg, threads, runs, now }) });
  } catch (e) {
    self.postMessage({ error: String((e && e.stack) || e) });
  }
};
