// `arrowquant/http` under Node: the wasm is loaded first (node.js initialises it synchronously),
// so the handler works on its own import.
import './node.js';

export * from './http.js';
