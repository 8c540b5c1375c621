// Types of the Deno entry (`arrowquant` under the `deno` condition, `arrowquant/deno`): the wasm is
// loaded on import.
export * from './api.js';
