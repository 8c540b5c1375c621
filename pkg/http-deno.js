// `arrowquant/http` under Deno: the wasm is loaded first (deno.js initialises it), so the handler
// works on its own import.
import './deno.js';

export * from './http.js';
