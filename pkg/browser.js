// Main-thread client for browsers: quantization runs in a module Worker (worker.js), on the
// threaded build when the page is cross-origin isolated, else on the single-threaded SIMD build.
//
//   const q = await createWorkerQuantizer();          // q.info: { threads, poolThreads, kernels, reason, restarts, … }
//   const { report, parquet } = await q.quantize(file, { profile: 'edge' }, { onProgress, onChunk });
//   q.terminate();                                    // also the way to cancel a running job
//
// Without options the worker is `new URL('./worker.js', import.meta.url)`, written literally so
// Vite and webpack bundle it; `wasmPaths` points at a copy of the package's files instead. A
// threaded build that is missing or whose pool does not start within `threadStartTimeoutMs`
// gives way to the single-threaded build, and `info.reason` says why.
import { aqError, errorFrom, throwIfAborted } from './internal/errors.js';

/**
 * A finished run's result: the output as a Blob when it was collected here; with an OPFS output,
 * nothing more — unless OPFS ran out of room mid-run (`output.spilled`), when the Blob is the OPFS
 * file's bytes followed by the chunks that came here instead.
 */
async function finished(value, chunks, streamed, key, type) {
  if (streamed) return value;
  if (!value.output?.opfs) return { ...value, [key]: new Blob(chunks, { type }) };
  if (!value.output.spilled) return value;
  const head = await (await (await navigator.storage.getDirectory()).getFileHandle(value.output.opfs)).getFile();
  return { ...value, [key]: new Blob([head, ...chunks], { type }) };
}

export async function createWorkerQuantizer({
  threads = 'auto',
  numThreads,
  workerUrl,
  wasmPaths,
  threadStartTimeoutMs = 10000,
  warmUp = true,
  readerWorker = true,
} = {}) {
  const base = wasmPaths === undefined ? undefined : new URL(wasmPaths, globalThis.location?.href).href;
  const pending = new Map();
  let next = 0;
  let worker;
  let ready;
  let terminated = false;
  // A job is pending from the moment it is asked for, so terminate() cancels it even before it
  // reaches the worker (while a restarted worker is still starting).
  const send = (msg, hooks = {}, before = null) =>
    new Promise((resolve, reject) => {
      const id = next++;
      pending.set(id, { resolve, reject, onChunk: () => {}, ...hooks });
      const post = () => {
        if (pending.has(id) && !terminated) worker.postMessage({ ...msg, id });
      };
      if (before) before.then(post, (e) => pending.delete(id) && reject(e));
      else post();
    });
  // A worker whose wasm instance trapped answers every later call with E_INTERNAL
  // (internal/instance.js); it is replaced by a fresh one, so the next call runs on a new instance.
  const start = () => {
    // The literal `new Worker(new URL('./worker.js', import.meta.url), …)` is the form Vite and
    // webpack recognise and bundle; `workerUrl`/`wasmPaths` serve a copied package.
    if (workerUrl !== undefined) worker = new Worker(workerUrl, { type: 'module' });
    else if (base !== undefined) worker = new Worker(new URL('worker.js', base), { type: 'module' });
    else worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    worker.onmessage = ({ data }) => {
      const job = pending.get(data.id);
      if (!job) return;
      if (data.type === 'chunk') job.onChunk(data.chunk);
      else if (data.type === 'progress') job.onProgress?.(data.progress);
      else {
        pending.delete(data.id);
        if (data.type === 'result') job.resolve(data.value);
        else {
          job.reject(errorFrom(data.error));
          if (data.error.detail === 'instance-poisoned') restart();
        }
      }
    };
    worker.onerror = (e) => {
      for (const job of pending.values()) job.reject(aqError('E_INTERNAL', e.message || 'worker failed'));
      pending.clear();
    };
    ready = send({ type: 'init', options: { threads, numThreads, warmUp, readerWorker, wasmPaths: base, threadStartTimeoutMs } });
    return ready;
  };
  // Replace the worker: after a fatal wasm error, or to stop a run whose signal aborted (wasm
  // cannot be interrupted mid-call). Every job on the old worker ends with `error`.
  const restart = (error = aqError('E_INTERNAL', 'the worker was restarted after a fatal wasm error')) => {
    worker.terminate();
    for (const job of pending.values()) job.reject(error);
    pending.clear();
    start().then((info) => Object.assign(client.info, info, { restarts: client.info.restarts + 1 })).catch(() => {});
  };
  const call = (msg, hooks) => send(msg, hooks, ready);
  /** `call` for a long run that `signal` may stop: E_CANCELLED, and the client goes on with a fresh worker. */
  const cancellable = async (msg, hooks, signal) => {
    throwIfAborted(signal);
    const onAbort = () => {
      const reason = signal.reason instanceof Error ? signal.reason.message : String(signal.reason ?? 'aborted');
      restart(aqError('E_CANCELLED', `cancelled: ${reason}`));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      return await call(msg, hooks);
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  };
  const info = { ...(await start()), restarts: 0 };
  const client = {
    info,
    /** Resolve and validate a config in the worker (throws E_CONFIG naming the field). */
    resolveConfig: (config) => call({ type: 'resolveConfig', config }),
    /**
     * What each of `files` is, from its header: `{ role: 'model' | 'calibration' | 'index' |
     * 'unreadable', calibration?, error? }` (a calibration file comes with its summary).
     */
    classify: (files) => call({ type: 'classify', files }),
    /**
     * Summarise a model from its header(s) alone: `files` is a File/Blob or the shards of one
     * model (with `index`, the index JSON File). Resolves to { summary, shards }.
     */
    describe: (files, { index, config } = {}) => call({ type: 'describe', files, index, config }),
    /**
     * Histogram of ŵ − w for one tensor of the last model, re-quantized as stored: pass the run's
     * config with `layerBitWidths: { [name]: storedBits }`.
     */
    histogram: (name, config, bins = 64) => call({ type: 'histogram', name, config, bins }),
    /**
     * Quantize a File/Blob. Chunks go to `onChunk` as they are ready; without it they are joined
     * and returned as `parquet` (a Blob). Resolves to { report, stats, parquet? }.
     */
    async quantize(file, config, { onProgress, onChunk, rowGroupBytes, calibration, index, output, signal } = {}) {
      const chunks = [];
      const value = await cancellable({ type: 'quantize', files: file, index, config, rowGroupBytes, calibration, output }, { onProgress, onChunk: onChunk ?? ((c) => chunks.push(c)) }, signal);
      return finished(value, chunks, !!onChunk, 'parquet', 'application/vnd.apache.parquet');
    },
    /**
     * Quantize a File/Blob (or shards) into GGUF of `ggmlType` (`Q4_K_M`, `Q8_0`, …; docs/GGUF.md).
     * Resolves to { report, stats, gguf? } (`gguf`, a Blob, without `onChunk` or an OPFS output).
     */
    async quantizeGguf(file, ggmlType, { onProgress, onChunk, index, output, calibration, layerBitWidths, targetSizeMb, gptq, gptqDamp, gptqActOrder, signal } = {}) {
      const chunks = [];
      const value = await cancellable({ type: 'quantize', files: file, index, gguf: ggmlType, output, calibration, layerBitWidths, targetSizeMb, gptq, gptqDamp, gptqActOrder }, { onProgress, onChunk: onChunk ?? ((c) => chunks.push(c)) }, signal);
      return finished(value, chunks, !!onChunk, 'gguf', 'application/octet-stream');
    },
    /** Stop the worker (cancels any running job; its promise rejects with E_CANCELLED). */
    terminate() {
      terminated = true;
      worker.terminate();
      for (const job of pending.values()) job.reject(aqError('E_CANCELLED', 'cancelled'));
      pending.clear();
    },
  };
  return client;
}
