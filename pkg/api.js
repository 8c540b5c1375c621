// Platform-neutral API: the wasm-bindgen exports plus the streaming helpers built on them.
// Every entry point (web, node, deno) re-exports this module after initialising the wasm.
import * as raw from './wasm/arrowquant.js';
import { guardFreed } from './internal/freed.js';
import { guardInstance } from './internal/instance.js';
import { shardedSource as shardedSourceWith } from './internal/sources.js';
import { quantizeStreamWith } from './internal/stream.js';
import { quantizeGgufWith } from './internal/gguf.js';

export { blobSource, bytesSource } from './internal/sources.js';

guardFreed(raw.ModelQuantizer, raw.QuantizedFile, raw.SizePlanner, raw.GgufQuantizer, raw.GgufFile);
// Every call below goes through the guard: a trap poisons the instance (internal/instance.js).
const wasm = guardInstance(raw);

export const {
  buildInfo,
  configField,
  configFields,
  configFromText,
  dequantizeTensor,
  GgufFile,
  GgufQuantizer,
  describeModel,
  layerErrorHistogram,
  mergeShards,
  ModelQuantizer,
  openGguf,
  openQuantized,
  QuantizedFile,
  quantizeModel,
  quantizeModelGguf,
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

/**
 * Quantize a safetensors file into GGUF (docs/GGUF.md), tensor by tensor: the header first (every
 * tensor's type and offset is decided from the safetensors header), then each tensor's blocks.
 *
 * @param source   `{ size, read(start, end) }`, as for `quantizeStream`.
 * @param ggmlType the mix: `Q8_0`, `Q6_K`, `Q5_K_M`, `Q5_K_S`, `Q5_1`, `Q5_0`, `Q4_K_M`, `Q4_K_S`,
 *                 `Q4_1`, `Q4_0`, `Q3_K_L`, `Q3_K_M`, `Q3_K_S`, `Q2_K`, `F16`, `BF16` or `F32`
 *                 (docs/GGUF.md).
 * @param options  `onChunk(bytes)` (without it the file is returned as `gguf`),
 *                 `onProgress({ done, total, name, layer, bytesDone, bytesTotal })` (bytes of the
 *                 output, whose size is known from the header), `signal` (E_CANCELLED),
 *                 `calibration` (docs/CALIBRATION.md): each layer's input second moments weight
 *                 its block searches, as llama.cpp's importance matrix does.
 * @returns `{ report, gguf? }`
 */
export function quantizeGguf(source, ggmlType, options = {}) {
  return quantizeGgufWith(wasm, source, ggmlType, options);
}
