// Platform-neutral API: the wasm-bindgen exports plus streaming helpers built on them.
// Every entry point (web, node, deno) re-exports this module after initialising the wasm.
import * as wasm from './wasm/arrowquant.js';
import { quantizeStreamWith } from './stream.js';

export { shardedSource } from './shards.js';

export {
  buildInfo,
  configFields,
  configFromText,
  dequantizeTensor,
  describeModel,
  layerErrorHistogram,
  ModelQuantizer,
  openQuantized,
  QuantizedFile,
  quantizeModel,
  quantizeTensor,
  readCalibration,
  readSafetensorsHeader,
  resolveConfig,
  safetensorsHeaderSize,
  setReferenceKernels,
  SizePlanner,
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

/**
 * Quantize a safetensors file tensor by tensor. Consecutive tensors are read together up to 16 MiB
 * (a larger tensor alone; with the threaded build such a group is quantized together), and the next
 * group (up to 64 MiB) is read while this one is quantized: so the header, the group being quantized
 * and one read ahead are in memory, never the whole model. Finished Parquet bytes go to `onChunk` as
 * soon as a row group closes.
 *
 * @param source  `{ size, read(start, end) }` — `read` returns (a promise of) a Uint8Array.
 * @param config  config object (see QuantConfigInput).
 * @param options `onChunk(bytes)` (may return a promise; without it the chunks are collected and
 *                returned as `parquet`), `onProgress({done,total,name,bytesDone,bytesTotal,layer})`,
 *                `onHeader(header)`, `signal` (AbortSignal), `rowGroupBytes`, `calibration`
 *                (docs/CALIBRATION.md: the .safetensors bytes or a plain object), and
 *                `onPlanProgress` (with `targetSizeMb`, the planning pass reads every tensor first).
 * @returns `{ report, parquet? }`
 */
export function quantizeStream(source, config, options = {}) {
  return quantizeStreamWith(wasm, source, config, options);
}
