// Deno server with the same HTTP contract as the Cloudflare Worker:
//   deno serve --allow-read --host 127.0.0.1 --port 8000 server.js
// `arrowquant` resolves through deno.json's import map to the package's deno entry, which loads
// the single-threaded SIMD128 build.
import 'arrowquant';
import { createHandler } from 'arrowquant/http';

const maxBodyBytes = Number(Deno.env.get('ARROWQUANT_MAX_BODY_MB') ?? 2048) * 1024 * 1024;

export default { fetch: createHandler({ maxBodyBytes }) };
