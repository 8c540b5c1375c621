// Runs inside a module Web Worker (started by browser.js). Picks the threaded build when the
// page is cross-origin isolated (SharedArrayBuffer available) and starts its thread pool;
// otherwise the single-threaded SIMD build. Quantization never touches the page's main thread.
import { quantizeStreamWith } from './stream.js';

let lib;
let info;

async function load({ threads = 'auto', numThreads } = {}) {
  const canThread = self.crossOriginIsolated === true && typeof SharedArrayBuffer === 'function';
  const useThreads = threads === true || (threads === 'auto' && canThread);
  if (useThreads && !canThread) throw Object.assign(new Error('threads need a cross-origin isolated page (COOP/COEP headers)'), { code: 'E_STATE' });
  if (useThreads) {
    lib = await import('./wasm-mt/arrowquant.js');
    await lib.default();
    const n = numThreads ?? Math.max(1, navigator.hardwareConcurrency || 1);
    await lib.initThreadPool(n);
    info = { ...lib.buildInfo(), poolThreads: n, reason: 'cross-origin isolated: threaded build' };
  } else {
    lib = await import('./wasm/arrowquant.js');
    await lib.default();
    info = { ...lib.buildInfo(), poolThreads: 1, reason: canThread ? 'threads turned off by the caller' : 'page is not cross-origin isolated (no COOP/COEP): single-threaded SIMD build' };
  }
  return info;
}

function blobSource(blob) {
  return { size: blob.size, read: async (a, b) => new Uint8Array(await blob.slice(a, b).arrayBuffer()) };
}

const errorOf = (e) => ({ message: String(e?.message ?? e), code: e?.code ?? 'E_INTERNAL', field: e?.field, tensor: e?.tensor });

self.onmessage = async ({ data }) => {
  const { id, type } = data;
  try {
    if (type === 'init') {
      postMessage({ id, type: 'result', value: await load(data.options) });
    } else if (type === 'quantize') {
      lib.threadsSeen();
      const t0 = performance.now();
      // A calibration given as a Blob/File is read here, in the worker, like the model.
      const calibration = data.calibration instanceof Blob ? new Uint8Array(await data.calibration.arrayBuffer()) : data.calibration;
      const { report } = await quantizeStreamWith(lib, blobSource(data.file), data.config, {
        rowGroupBytes: data.rowGroupBytes,
        calibration,
        onChunk: (chunk) => postMessage({ id, type: 'chunk', chunk }, [chunk.buffer]),
        onProgress: (p) => postMessage({ id, type: 'progress', progress: p }),
      });
      const stats = { threadsSeen: lib.threadsSeen(), wasmMemoryBytes: lib.wasmMemoryBytes(), seconds: (performance.now() - t0) / 1000 };
      postMessage({ id, type: 'result', value: { report, stats } });
    } else if (type === 'resolveConfig') {
      postMessage({ id, type: 'result', value: lib.resolveConfig(data.config) });
    }
  } catch (e) {
    postMessage({ id, type: 'error', error: errorOf(e) });
  }
};
