// Deno entry: reads the wasm next to this file and initialises synchronously.
import { initSync } from './wasm/arrowquant.js';

initSync({ module: await Deno.readFile(new URL('./wasm/arrowquant_bg.wasm', import.meta.url)) });

export * from './api.js';
