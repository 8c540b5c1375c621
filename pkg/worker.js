// Runs inside a module Web Worker (started by browser.js). Picks the threaded build when the
// page is cross-origin isolated (SharedArrayBuffer available) and starts its thread pool;
// otherwise the single-threaded SIMD build. Quantization never touches the page's main thread.
import { shardedSource } from './shards.js';
import { quantizeStreamWith } from './stream.js';

let lib;
let info;

/**
 * V8 first runs new wasm code on its baseline compiler and swaps in optimised code for a function
 * only after it has run for a while, on its next call. A user's first model then ran mostly on
 * baseline code. A small throwaway run, over a synthetic 1 MiB tensor at each bit width's default
 * path (scale search at 2 and 4 bits, min/max at 8), gets the hot functions optimised while the
 * page waits for a file. Measured in Chromium (`make bench`, "first run in a fresh Worker"): the
 * first 64 MiB scale-search run 0.55 s without, 0.43 s with (the warm-up itself 0.08 s); a
 * second run takes 0.28 s — the rest of the first run's extra is growing wasm memory. A larger
 * warm-up (4 MiB) or a second one after a pause measured no better.
 */
function warmUp() {
  const rows = 64, cols = 4096;
  const values = new Float32Array(rows * cols);
  let s = 12345;
  for (let i = 0; i < values.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    values[i] = (s / 4294967296 - 0.5) * (1 + (i % 7));
  }
  const header = new TextEncoder().encode(JSON.stringify({ 'w.weight': { dtype: 'F32', shape: [rows, cols], data_offsets: [0, values.byteLength] } }));
  const model = new Uint8Array(8 + header.length + values.byteLength);
  new DataView(model.buffer).setBigUint64(0, BigInt(header.length), true);
  model.set(header, 8);
  model.set(new Uint8Array(values.buffer), 8 + header.length);
  const t0 = performance.now();
  for (const bitWidth of [4, 2, 8]) lib.quantizeModel(model, { bitWidth, groupSize: 64, minAccuracy: 0 });
  return (performance.now() - t0) / 1000;
}

async function load({ threads = 'auto', numThreads, warmUp: warm = true, readerWorker = true } = {}) {
  useReaderWorker = readerWorker !== false;
  // Started now, so its module has loaded (beside the warm-up) before the first file arrives.
  blobReader();
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
  info.warmUpSeconds = warm ? warmUp() : 0;
  return info;
}

/**
 * Blob reads go through one helper Worker (blob-reader.js) so they proceed while this thread runs
 * wasm; where a Worker cannot start one (older Safari) or it fails to start, this thread reads.
 */
let reader;
/** `createWorkerQuantizer({ readerWorker: false })` reads on this thread (for measuring the helper). */
let useReaderWorker = true;
/** Where the current job's reads ran: 'reader worker' or 'this worker' (reported in stats). */
let readVia = null;
function blobReader() {
  if (reader !== undefined) return reader;
  reader = null;
  if (!useReaderWorker || typeof Worker !== 'function') return reader;
  try {
    const worker = new Worker(new URL('./blob-reader.js', import.meta.url), { type: 'module' });
    const waiting = new Map();
    let next = 0;
    // The helper could not start (or died): its pending reads, and every later one, run here.
    const fallBack = () => {
      reader = null;
      worker.terminate();
      for (const w of waiting.values()) readDirect(w.blob, w.start, w.end).then(w.resolve, w.reject);
      waiting.clear();
      readVia = 'this worker';
    };
    worker.onmessage = ({ data }) => {
      const w = waiting.get(data.id);
      waiting.delete(data.id);
      if (!w) return;
      if (data.error) w.reject(readFailed(data.error.name, data.error.message));
      else w.resolve(new Uint8Array(data.buffer));
    };
    worker.onerror = (e) => {
      e.preventDefault?.();
      fallBack();
    };
    reader = {
      read: (blob, start, end) =>
        new Promise((resolve, reject) => {
          const id = next++;
          waiting.set(id, { resolve, reject, blob, start, end });
          worker.postMessage({ id, blob, start, end });
        }),
    };
  } catch {
    reader = null;
  }
  return reader;
}

const readFailed = (name, message) => Object.assign(new Error(`reading the file failed: ${name}: ${message}`), { code: 'E_IO' });

async function readDirect(blob, a, b) {
  try {
    return new Uint8Array(await blob.slice(a, b).arrayBuffer());
  } catch (e) {
    throw readFailed(e?.name ?? 'Error', String(e?.message ?? e));
  }
}

function blobSource(blob) {
  return {
    size: blob.size,
    read: (a, b) => {
      const r = blobReader();
      readVia ??= r ? 'reader worker' : 'this worker';
      return r ? r.read(blob, a, b) : readDirect(blob, a, b);
    },
  };
}

/** One Blob/File, or several shards (+ index) seen as one model. */
async function modelSource(files, index) {
  const list = Array.isArray(files) ? files : [files];
  if (list.length === 1 && !index) return blobSource(list[0]);
  const indexJson = index ? JSON.parse(await index.text()) : undefined;
  return shardedSource(list.map((f) => ({ name: f.name, ...blobSource(f) })), indexJson);
}

async function bytesOf(x) {
  return x instanceof Blob ? new Uint8Array(await x.arrayBuffer()) : x;
}

const errorOf = (e) => ({ message: String(e?.message ?? e), code: e?.code ?? 'E_INTERNAL', field: e?.field, tensor: e?.tensor });

// The model of the last describe/quantize call, kept for histogram requests.
let last = null;

async function describe({ files, index, config }) {
  const source = await modelSource(files, index);
  const prefix = await source.read(0, Math.min(8, source.size));
  const headerBytes = await source.read(0, Math.min(lib.safetensorsHeaderSize(prefix), source.size));
  const header = lib.readSafetensorsHeader(headerBytes, source.size);
  last = { source, header };
  return { summary: lib.describeModel(headerBytes, source.size, config), shards: source.shards ?? null };
}

/** Output sink: chunks posted to the page (a Blob there), or written to an OPFS file here. */
async function openSink(id, output) {
  if (output?.opfs) {
    const root = await navigator.storage.getDirectory();
    const handle = await (await root.getFileHandle(output.opfs, { create: true })).createSyncAccessHandle();
    handle.truncate(0);
    let at = 0;
    return {
      write: (chunk) => {
        at += handle.write(chunk, { at });
      },
      close: () => {
        handle.flush();
        handle.close();
        return { opfs: output.opfs, bytes: at };
      },
      abort: () => handle.close(),
    };
  }
  return { write: (chunk) => postMessage({ id, type: 'chunk', chunk }, [chunk.buffer]), close: () => ({}), abort: () => {} };
}

self.onmessage = async ({ data }) => {
  const { id, type } = data;
  try {
    if (type === 'init') {
      postMessage({ id, type: 'result', value: await load(data.options) });
    } else if (type === 'describe') {
      postMessage({ id, type: 'result', value: await describe(data) });
    } else if (type === 'quantize') {
      lib.threadsSeen();
      readVia = null;
      const t0 = performance.now();
      // A calibration given as a Blob/File is read here, in the worker, like the model.
      const calibration = await bytesOf(data.calibration);
      const source = await modelSource(data.file ?? data.files, data.index);
      last = { source, header: null, calibration };
      const sink = await openSink(id, data.output);
      let report;
      try {
        ({ report } = await quantizeStreamWith(lib, source, data.config, {
          rowGroupBytes: data.rowGroupBytes,
          calibration,
          onChunk: sink.write,
          onHeader: (h) => {
            last.header = h;
          },
          onPlanProgress: (p) => postMessage({ id, type: 'progress', progress: { ...p, planning: true } }),
          onProgress: (p) => postMessage({ id, type: 'progress', progress: { ...p, wasmMemoryBytes: lib.wasmMemoryBytes() } }),
        }));
      } catch (e) {
        sink.abort();
        throw e;
      }
      const output = sink.close();
      // wasm memory only grows, so its size now is the run's peak.
      const stats = { threadsSeen: lib.threadsSeen(), wasmMemoryBytes: lib.wasmMemoryBytes(), seconds: (performance.now() - t0) / 1000, readVia };
      postMessage({ id, type: 'result', value: { report, stats, output } });
    } else if (type === 'histogram') {
      const t = last?.header?.tensors.find((x) => x.name === data.name);
      if (!t) throw Object.assign(new Error(`no tensor '${data.name}' in the last model`), { code: 'E_STATE' });
      const bytes = await last.source.read(t.start, t.end);
      const value = lib.layerErrorHistogram(t.name, t.dtype, t.shape, bytes, data.config, last.calibration ?? null, data.bins ?? 64);
      postMessage({ id, type: 'result', value });
    } else if (type === 'resolveConfig') {
      postMessage({ id, type: 'result', value: lib.resolveConfig(data.config) });
    }
  } catch (e) {
    postMessage({ id, type: 'error', error: errorOf(e) });
  }
};
