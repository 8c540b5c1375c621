// Runs inside a module Web Worker (started by browser.js). Picks the threaded build when the
// page is cross-origin isolated (SharedArrayBuffer available) and starts its thread pool;
// otherwise the single-threaded SIMD build. Quantization never touches the page's main thread.
// Files are read through `internal/` sources, the wasm decides everything about them.
import { errorFields, aqError } from './internal/errors.js';
import { guardInstance } from './internal/instance.js';
import { readFailed, readHeaderBytes, shardedSource } from './internal/sources.js';
import { quantizeStreamWith } from './internal/stream.js';
import { quantizeGgufWith } from './internal/gguf.js';

let lib;
let info;

/** `promise`, or a rejection with `message` after `ms` milliseconds. */
function within(promise, ms, message) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Where a build's .wasm is: beside its glue (the default), or under `wasmPaths`. */
const wasmAt = (wasmPaths, dir) => (wasmPaths ? { module_or_path: new URL(`${dir}/arrowquant_bg.wasm`, wasmPaths) } : undefined);

async function load({ threads = 'auto', numThreads, warmUp: warm = true, readerWorker = true, wasmPaths, threadStartTimeoutMs = 10000 } = {}) {
  useReaderWorker = readerWorker !== false;
  // Started now, so its module has loaded (beside the warm-up) before the first file arrives.
  blobReader();
  const canThread = self.crossOriginIsolated === true && typeof SharedArrayBuffer === 'function';
  const useThreads = threads === true || (threads === 'auto' && canThread);
  if (useThreads && !canThread) throw aqError('E_STATE', 'threads need a cross-origin isolated page (COOP/COEP headers)');
  let fallback;
  if (useThreads) {
    // A package without its threaded build (or a bundle that lost it), or a thread pool that
    // does not start (a bundler's dev server rewriting the pool's worker script), falls back to
    // the single-threaded build, saying why; `threads: true` makes either an error instead.
    const n = numThreads ?? Math.max(1, navigator.hardwareConcurrency || 1);
    try {
      const mt = await import('./wasm-mt/arrowquant.js');
      await mt.default(wasmAt(wasmPaths, 'wasm-mt'));
      await within(mt.initThreadPool(n), threadStartTimeoutMs, `its thread pool did not start within ${threadStartTimeoutMs} ms`);
      lib = guardInstance(mt);
      info = { ...lib.buildInfo(), poolThreads: n, reason: 'cross-origin isolated: threaded build' };
    } catch (e) {
      if (threads === true) throw aqError('E_STATE', `the threaded build could not start: ${e?.message ?? e}`);
      fallback = `threaded build unavailable (${e?.message ?? e}): single-threaded SIMD build`;
    }
  }
  if (!lib) {
    lib = guardInstance(await import('./wasm/arrowquant.js'));
    await lib.default(wasmAt(wasmPaths, 'wasm'));
    info = {
      ...lib.buildInfo(),
      poolThreads: 1,
      reason: fallback ?? (canThread ? 'threads turned off by the caller' : 'page is not cross-origin isolated (no COOP/COEP): single-threaded SIMD build'),
    };
  }
  // The library's throwaway run, so that the user's first model runs on optimised code.
  info.warmUpSeconds = warm ? lib.warmUp() : 0;
  return info;
}

/**
 * Blob reads go through one helper Worker (blob-reader.js) so they proceed while this thread runs
 * wasm (in Chromium a Blob read only progresses on the reading thread's event loop); where a
 * Worker cannot start one (older Safari) or it fails to start, this thread reads.
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

async function readDirect(blob, a, b) {
  try {
    return new Uint8Array(await blob.slice(a, b).arrayBuffer());
  } catch (e) {
    throw readFailed(e?.name ?? 'Error', String(e?.message ?? e));
  }
}

/** A Blob/File as a source, read by the helper Worker when there is one. */
function workerBlobSource(blob) {
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
  if (list.length === 1 && !index) return workerBlobSource(list[0]);
  let indexJson;
  if (index) {
    try {
      indexJson = JSON.parse(await index.text());
    } catch (e) {
      throw aqError('E_SAFETENSORS', `the index file is not JSON (${e.message})`);
    }
  }
  return shardedSource(lib, list.map((f) => ({ name: f.name, ...workerBlobSource(f) })), indexJson);
}

async function bytesOf(x) {
  return x instanceof Blob ? new Uint8Array(await x.arrayBuffer()) : x;
}

// The model of the last describe/quantize call, kept for histogram requests.
let last = null;

async function describe({ files, index, config }) {
  const source = await modelSource(files, index);
  const headerBytes = await readHeaderBytes(lib, source);
  const header = lib.readSafetensorsHeader(headerBytes, source.size);
  last = { source, header };
  return { summary: lib.describeModel(headerBytes, source.size, config), shards: source.shards ?? null };
}

/**
 * What each dropped file is: 'index' (a .json file), 'calibration' (with its summary), 'model'
 * (a safetensors file), or 'unreadable' with the error — decided by the library from the headers.
 */
async function classify({ files }) {
  const out = [];
  for (const f of files) {
    if (f.name.endsWith('.json')) {
      out.push({ role: 'index' });
      continue;
    }
    try {
      const header = lib.readSafetensorsHeader(await readHeaderBytes(lib, workerBlobSource(f)), f.size);
      out.push(header.role === 'calibration' ? { role: 'calibration', calibration: lib.readCalibration(await bytesOf(f)) } : { role: 'model' });
    } catch (e) {
      out.push({ role: 'unreadable', error: errorFields(e) });
    }
  }
  return out;
}

/** Output sink: chunks posted to the page (a Blob there), or written to an OPFS file here. */
/**
 * Where output chunks go: into an OPFS file through a sync access handle, or to the page as
 * messages. OPFS can run out of room mid-run (an incognito window keeps it in memory, a disk can
 * fill): a short write is undone, the file is cut at the last whole chunk, and that chunk and every
 * later one go to the page instead (`spilled` says how many bytes the OPFS file holds); the
 * client joins the two. Never a silently short file.
 */
async function openSink(id, output) {
  const toPage = (chunk) => postMessage({ id, type: 'chunk', chunk }, [chunk.buffer]);
  if (output?.opfs) {
    const root = await navigator.storage.getDirectory();
    const handle = await (await root.getFileHandle(output.opfs, { create: true })).createSyncAccessHandle();
    handle.truncate(0);
    let at = 0;
    let spilled = false;
    return {
      write: (chunk) => {
        if (!spilled) {
          let n;
          try {
            n = handle.write(chunk, { at });
          } catch {
            n = -1; // QuotaExceededError and the like: spill as for a short write
          }
          if (n === chunk.length) {
            at += n;
            return;
          }
          handle.truncate(at);
          spilled = true;
        }
        toPage(chunk);
      },
      close: () => {
        handle.flush();
        handle.close();
        return spilled ? { opfs: output.opfs, bytes: at, spilled: true } : { opfs: output.opfs, bytes: at };
      },
      abort: () => handle.close(),
    };
  }
  return { write: toPage, close: () => ({}), abort: () => {} };
}

async function quantize(id, data) {
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
    if (data.gguf) {
      // GGUF (docs/GGUF.md): the header first, then each tensor's blocks; config fields do not apply.
      ({ report } = await quantizeGgufWith(lib, source, data.gguf, {
        calibration,
        layerBitWidths: data.layerBitWidths,
        targetSizeMb: data.targetSizeMb,
        gptq: data.gptq,
        gptqDamp: data.gptqDamp,
        gptqActOrder: data.gptqActOrder,
        onChunk: sink.write,
        onProgress: (p) => postMessage({ id, type: 'progress', progress: { ...p, wasmMemoryBytes: lib.wasmMemoryBytes() } }),
      }));
    } else ({ report } = await quantizeStreamWith(lib, source, data.config, {
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
  return { report, stats, output };
}

async function histogram(data) {
  const t = last?.header?.tensors.find((x) => x.name === data.name);
  if (!t) throw aqError('E_STATE', `no tensor '${data.name}' in the last model`);
  const bytes = await last.source.read(t.start, t.end);
  return lib.layerErrorHistogram(t.name, t.dtype, t.shape, bytes, data.config, last.calibration ?? null, data.bins ?? 64);
}

const handlers = {
  init: (data) => load(data.options),
  describe,
  classify,
  quantize: (data, id) => quantize(id, data),
  histogram,
  resolveConfig: (data) => lib.resolveConfig(data.config),
};

self.onmessage = async ({ data }) => {
  const { id, type } = data;
  try {
    const handler = handlers[type];
    if (!handler) throw aqError('E_STATE', `unknown request '${type}'`);
    postMessage({ id, type: 'result', value: await handler(data, id) });
  } catch (e) {
    postMessage({ id, type: 'error', error: errorFields(e) });
  }
};
