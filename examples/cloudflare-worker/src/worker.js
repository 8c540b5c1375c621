// Cloudflare Worker: quantize a POSTed .safetensors file and stream the Parquet file back.
// Workers have no threads: this uses the single-threaded SIMD128 build, compiled by the runtime
// from the .wasm module import and initialised synchronously.
import { initSync } from 'arrowquant/web';
import { createHandler } from 'arrowquant/http';
import wasm from 'arrowquant/arrowquant_bg.wasm';

initSync({ module: wasm });

let handler;

export default {
  async fetch(request, env, ctx) {
    // MAX_BODY_MB (wrangler.toml [vars]) should match your plan's request-size limit.
    handler ??= createHandler({ maxBodyBytes: Number(env.MAX_BODY_MB ?? 500) * 1024 * 1024 });
    // ctx keeps the streaming pump alive after the Response is returned (ctx.waitUntil).
    return handler(request, ctx);
  },
};
