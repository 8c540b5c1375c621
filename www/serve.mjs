// `make serve`: the demo page on http://127.0.0.1:8080/www/ (PORT to change), served with the
// COOP/COEP headers that let the page use the threaded build. `ISOLATED=0` serves without them
// (the page then uses the single-threaded SIMD build and says so).
import { fileURLToPath } from 'node:url';
import { serve } from '../tests/browser/server.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const isolated = process.env.ISOLATED !== '0';
const { url } = await serve(root, { isolated, port: Number(process.env.PORT ?? 8080) });
console.log(`arrowquant demo: ${url}/www/  (${isolated ? 'cross-origin isolated: threaded build' : 'not isolated: single-threaded build'}; Ctrl-C to stop)`);
