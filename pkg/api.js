// Platform-neutral API: the wasm-bindgen exports plus streaming helpers built on them.
// Every entry point (web, node, deno) re-exports this module after initialising the wasm.
import { ModelQuantizer, safetensorsHeaderSize } from './wasm/arrowquant.js';

export {
  benchKernels,
  buildInfo,
  dequantizeTensor,
  ModelQuantizer,
  openQuantized,
  QuantizedFile,
  quantizeModel,
  quantizeTensor,
  readSafetensorsHeader,
  resolveConfig,
  safetensorsHeaderSize,
  setReferenceKernels,
  wasmMemoryBytes,
} from './wasm/arrowquant.js';

/** A source over a Blob/File: reads byte ranges with `slice`, never the whole file. */
export function blobSource(blob) {
  return {
    size: blob.size,
    async read(start, end) {
      return new Uint8Array(await blob.slice(start, end).arrayBuffer());
    },
  };
}

/** A source over bytes already in memory. */
export function bytesSource(bytes) {
  return { size: bytes.length, read: (start, end) => bytes.subarray(start, end) };
}

function concat(chunks) {
  const total = chunks.reduce((n, c) => n + c.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/**
 * Quantize a safetensors file tensor by tensor: only the header and one tensor are in memory at a
 * time, and finished Parquet bytes go to `onChunk` as soon as a row group closes.
 *
 * @param source  `{ size, read(start, end) }` — `read` returns (a promise of) a Uint8Array.
 * @param config  config object (see QuantConfigInput).
 * @param options `onChunk(bytes)` (may return a promise; without it the chunks are collected and
 *                returned as `parquet`), `onProgress({done,total,name,bytesDone,bytesTotal,layer})`,
 *                `onHeader(header)`, `signal` (AbortSignal), `rowGroupBytes`.
 * @returns `{ report, parquet? }`
 */
export async function quantizeStream(source, config, options = {}) {
  const { onChunk, onProgress, onHeader, signal, rowGroupBytes } = options;
  const collected = onChunk ? null : [];
  const emit = async (chunk) => {
    if (chunk.length === 0) return;
    if (collected) collected.push(chunk);
    else await onChunk(chunk);
  };
  const q = new ModelQuantizer(config);
  try {
    if (rowGroupBytes) q.setRowGroupBytes(rowGroupBytes);
    const prefix = await source.read(0, Math.min(8, source.size));
    const headerSize = safetensorsHeaderSize(prefix);
    const header = q.begin(await source.read(0, Math.min(headerSize, source.size)), source.size);
    if (onHeader) await onHeader(header);
    for (const t of header.tensors) {
      signal?.throwIfAborted();
      const layer = q.addTensor(t.name, await source.read(t.start, t.end));
      await emit(q.takeOutput());
      if (onProgress) onProgress({ ...q.progress(), layer });
    }
    signal?.throwIfAborted();
    const { parquet, report } = q.finish();
    await emit(parquet);
    return collected ? { report, parquet: concat(collected) } : { report };
  } finally {
    q.free();
  }
}
