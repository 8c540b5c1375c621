// Types of the browser / bundler entry (`arrowquant` under the `browser` and default conditions,
// `arrowquant/web`): the shared API plus the wasm initialisers.
export * from './api.js';
import type { InitInput, InitOutput } from './wasm/arrowquant.js';
/**
 * Browser entry only: fetch and instantiate the wasm (no-op after the first call). Without an
 * argument the .wasm beside the package's glue is fetched (bundlers that follow
 * `new URL(…, import.meta.url)`, like Vite and webpack, emit it); `{ wasmPaths }` is the URL of a
 * copy of the package's files (esbuild, a CDN); a URL, Response or compiled Module also works.
 */
export function init(input?: { wasmPaths: string | URL } | { module_or_path: InitInput | Promise<InitInput> } | InitInput | Promise<InitInput>): Promise<InitOutput>;
export default init;
export { initSync } from './wasm/arrowquant.js';
