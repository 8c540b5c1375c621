// Browser / bundler entry. Call `await init()` once before anything else (it fetches the .wasm
// next to this file; pass a URL, Response or compiled WebAssembly.Module to load it elsewhere),
// or `initSync({ module })` where the module is already compiled (Cloudflare Workers).
export { default as init, initSync } from './wasm/arrowquant.js';
export * from './api.js';
