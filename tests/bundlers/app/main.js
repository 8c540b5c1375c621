// A minimal app as a web developer writes it: the README's imports, bundled by Vite, webpack or
// esbuild from the packed tarball (tests/js/bundlers.test.mjs). `data-wasm-paths` on <body> is the
// esbuild recipe (a copy of the package's files); `?threadStartTimeoutMs=` shortens the wait for
// a thread pool that cannot start (Vite's dev server).
import init, { quantizeModel } from 'arrowquant';
import { createWorkerQuantizer } from 'arrowquant/browser';

const wasmPaths = document.body.dataset.wasmPaths || undefined;
const timeout = new URLSearchParams(location.search).get('threadStartTimeoutMs');

async function sha256(bytes) {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return [...d].map((b) => b.toString(16).padStart(2, '0')).join('');
}

window.runApp = async () => {
  const model = new Uint8Array(await (await fetch('./model.safetensors')).arrayBuffer());
  await init(wasmPaths ? { wasmPaths } : undefined);
  const main = quantizeModel(model, { profile: 'edge' }).parquet;
  const q = await createWorkerQuantizer({ wasmPaths, threadStartTimeoutMs: timeout ? Number(timeout) : undefined });
  try {
    const { parquet } = await q.quantize(new Blob([model]), { profile: 'edge' });
    const { gguf } = await q.quantizeGguf(new Blob([model]), 'Q4_K_M');
    return {
      main: await sha256(main),
      worker: await sha256(new Uint8Array(await parquet.arrayBuffer())),
      gguf: await sha256(new Uint8Array(await gguf.arrayBuffer())),
      threads: q.info.threads,
      poolThreads: q.info.poolThreads,
      reason: q.info.reason,
    };
  } finally {
    q.terminate();
  }
};
document.body.dataset.ready = '1';
