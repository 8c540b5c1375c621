// Browser / bundler entry. Call `await init()` once before anything else: it fetches the .wasm
// next to this file (bundlers that follow `new URL(…, import.meta.url)` — Vite, webpack — emit
// it); `init({ wasmPaths: '/arrowquant/' })` loads it from a copy of the package's files there
// (esbuild, or a CDN), and a URL, Response or compiled WebAssembly.Module works as well.
// `initSync({ module })` where the module is already compiled (Cloudflare Workers).
import wasmInit, { initSync } from './wasm/arrowquant.js';

export default function init(input) {
  if (input && typeof input === 'object' && typeof input.wasmPaths === 'string') {
    const base = new URL(input.wasmPaths, globalThis.location?.href);
    return wasmInit({ module_or_path: new URL('wasm/arrowquant_bg.wasm', base) });
  }
  return wasmInit(input);
}
export { init, initSync };
export * from './api.js';
