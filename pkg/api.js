// Platform-neutral API: the wasm-bindgen exports plus the streaming helpers built on them.
// Every entry point (web, node, deno) re-exports this module after initialising the wasm.
import * as raw from './wasm/arrowquant.js';
import { guardFreed } from './internal/freed.js';
import { guardInstance } from './internal/instance.js';
import { shardedSource as shardedSourceWith } from './internal/sources.js';
import { quantizeStreamWith } from './internal/stream.js';

export { blobSource, bytesSource } from './internal/sources.js';

guardFreed(raw.ModelQuantizer, raw.QuantizedFile, raw.SizePlanner);
// Every call below goes through the guard: a trap poisons the instance (internal/instance.js).
const wasm = guardInstance(raw);

export const {
  buildInfo,
  configField,
  configFields,
  configFromText,
  dequantizeTensor,
  describeModel,
  layerErrorHistogram,
  mergeShards,
  ModelQuantizer,
  openQuantized,
  QuantizedFile,
  quantizeModel,
  quantizeTensor,
  readCalibration,
  readSafetensorsHeader,
  resolveConfig,
  resolveSinglePassConfig,
  safetensorsHeaderSize,
  setReferenceKernels,
  SizePlanner,
  wasmMemoryBytes,
} = wasm;

/**
 * Several safetensors shards (+ the parsed `model.safetensors.index.json`, optional) as one
 * source: a virtual file over the shards' data laid end to end. Tensors stay in their shards.
 */
export function shardedSource(shards, index) {
  return shardedSourceWith(wasm, shards, index);
}

/**
 * Quantize a safetensors file tensor by tensor. The file is read in the groups the library plans
 * (consecutive tensors up to 16 MiB, a larger tensor alone; with the threaded build a group is
 * quantized together), and the next group (up to 64 MiB) is read while this one is quantized: so
 * the header, the group being quantized and one read ahead are in memory, never the whole model.
 * Finished Parquet bytes go to `onChunk` as soon as a row group closes.
 *
 * @param source  `{ size, read(start, end) }` — `read` returns (a promise of) a Uint8Array.
 * @param config  config object (see QuantConfigInput).
 * @param options `onChunk(bytes)` (may return a promise; without it the chunks are collected and
 *                returned as `parquet`), `onProgress({done,total,name,bytesDone,bytesTotal,layer})`,
 *                `onHeader(header)`, `signal` (AbortSignal: the run stops with E_CANCELLED),
 *                `rowGroupBytes`, `calibration` (docs/CALIBRATION.md: the .safetensors bytes or a
 *                plain object), and `onPlanProgress` (with `targetSizeMb`, the planning pass reads
 *                every tensor first).
 * @returns `{ report, parquet? }`
 */
export function quantizeStream(source, config, options = {}) {
  return quantizeStreamWith(wasm, source, config, options);
}
