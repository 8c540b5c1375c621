// Platform-neutral API: the wasm-bindgen exports plus the streaming helpers built on them.
// Every entry point (web, node, deno) re-exports this module after initialising the wasm.
import * as raw from './wasm/arrowquant.js';
import { aqError } from './internal/errors.js';
import { guardFreed } from './internal/freed.js';
import { guardInstance } from './internal/instance.js';
import { shardedSource as shardedSourceWith } from './internal/sources.js';
import { quantizeStreamWith } from './internal/stream.js';
import { quantizeGgufWith } from './internal/gguf.js';
import { openGgufSourceWith } from './internal/gguf-source.js';
import { openQuantizedSourceWith } from './internal/parquet-source.js';

import { huggingFaceUrl, isStreamLike, streamSource, urlSource } from './internal/web-sources.js';

export { blobSource, bytesSource } from './internal/sources.js';
export { huggingFaceUrl, streamSource, urlSource };

guardFreed(raw.ModelQuantizer, raw.QuantizedFile, raw.SizePlanner, raw.GgufQuantizer, raw.GgufFile, raw.GgufIndex, raw.GgufParquetWriter, raw.QuantizedIndex, raw.GgufWriter);
// Every call below goes through the guard: a trap poisons the instance (internal/instance.js).
const wasm = guardInstance(raw);

export const {
  buildInfo,
  configField,
  configFields,
  configFromText,
  dequantizeTensor,
  GgufFile,
  GgufIndex,
  GgufParquetWriter,
  GgufQuantizer,
  GgufWriter,
  describeModel,
  ggufHeaderNeeds,
  layerErrorHistogram,
  mergeShards,
  ModelQuantizer,
  openGguf,
  openGgufIndex,
  openQuantized,
  openQuantizedIndex,
  parquetTailNeeds,
  QuantizedFile,
  QuantizedIndex,
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
 * @param source  `{ size, read(start, end) }` — `read` returns (a promise of) a Uint8Array — or
 *                a ReadableStream / fetch Response (read once, front to back: `streamSource`).
 * @param config  config object (see QuantConfigInput).
 * @param options `onChunk(bytes)` (may return a promise; without it the chunks are collected and
 *                returned as `parquet`), `onProgress({done,total,name,bytesDone,bytesTotal,layer})`,
 *                `onHeader(header)`, `signal` (AbortSignal: the run stops with E_CANCELLED),
 *                `rowGroupBytes`, `calibration` (docs/CALIBRATION.md: the .safetensors bytes or a
 *                plain object), and `onPlanProgress` (with `targetSizeMb`, the planning pass reads
 *                every tensor first).
 * @returns `{ report, parquet? }`
 */
export async function quantizeStream(source, config, options = {}) {
  return quantizeStreamWith(wasm, toSource(source), config, options);
}

/** A ReadableStream or Response becomes a `streamSource`; any other source is used as given. */
function toSource(source) {
  return isStreamLike(source) ? streamSource(source) : source;
}

/**
 * The shards of a model on a web server, read with range requests: `indexUrl` is its
 * `model.safetensors.index.json` (the shards are the files its `weight_map` names, beside it).
 * `options` as for `urlSource`.
 */
export async function urlShardedSource(indexUrl, options = {}) {
  const fetchFn = options.fetch ?? globalThis.fetch;
  let index;
  try {
    const res = await fetchFn(indexUrl, { headers: options.headers ?? {}, signal: options.signal });
    if (!res.ok) throw new Error(`${res.status} ${res.statusText}`.trim());
    index = await res.json();
  } catch (e) {
    throw aqError('E_IO', `reading the index ${indexUrl} failed: ${e?.message ?? e}`);
  }
  const files = [...new Set(Object.values(index?.weight_map ?? {}))];
  // Shards live beside their index: a name that would lead elsewhere (a path, another origin) is
  // refused before anything is fetched.
  const elsewhere = files.find((f) => typeof f !== 'string' || !/^[^/\\:?#]+$/.test(f) || f === '..' || f === '.');
  if (elsewhere !== undefined) {
    throw aqError('E_SAFETENSORS', `the index names the shard ${JSON.stringify(elsewhere).slice(0, 80)}: expected a file name beside the index`);
  }
  const shards = [];
  for (const name of files) shards.push({ name, ...(await urlSource(new URL(name, indexUrl).href, options)) });
  return shardedSourceWith(wasm, shards, index);
}

/**
 * The output as a ReadableStream: `run(onChunk)` writes through `onChunk`, which waits while the
 * stream's reader is behind (backpressure). Returns `{ readable, report }` (a promise).
 */
function readableOf(run) {
  let controller;
  let wake = null;
  let cancelled = null;
  const readable = new ReadableStream(
    {
      start: (c) => {
        controller = c;
      },
      pull: () => {
        wake?.();
        wake = null;
      },
      cancel: (reason) => {
        cancelled = reason ?? 'the reader cancelled the stream';
        wake?.();
      },
    },
    { highWaterMark: 4 },
  );
  const onChunk = async (chunk) => {
    if (cancelled !== null) throw aqError('E_CANCELLED', `cancelled: ${cancelled}`);
    controller.enqueue(chunk.slice());
    if (controller.desiredSize <= 0) await new Promise((resolve) => (wake = resolve));
  };
  const report = run(onChunk).then(
    ({ report }) => {
      if (cancelled === null) controller.close();
      return report;
    },
    (e) => {
      if (cancelled === null) controller.error(e);
      throw e;
    },
  );
  report.catch(() => {});
  return { readable, report };
}

/**
 * `quantizeStream` with the Parquet file as a ReadableStream (for a Response body, a
 * WritableStream or a file handle's stream): `{ readable, report }`, `report` a promise.
 */
export function quantizeReadable(source, config, options = {}) {
  return readableOf(async (onChunk) => quantizeStreamWith(wasm, toSource(source), config, { ...options, onChunk }));
}

/** `quantizeGguf` with the GGUF file as a ReadableStream: `{ readable, report }`. */
export function quantizeGgufReadable(source, ggmlType, options = {}) {
  return readableOf(async (onChunk) => quantizeGgufWith(wasm, toSource(source), ggmlType, { ...options, onChunk }));
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
export async function quantizeGguf(source, ggmlType, options = {}) {
  return quantizeGgufWith(wasm, toSource(source), ggmlType, options);
}

/**
 * A GGUF file read by byte range (ours or another writer's), never whole: the header first, then
 * each tensor from its own range when asked for, so memory holds one tensor at a time.
 *
 * @param source `{ size, read(start, end) }` (`fileSource`, `blobSource`, `urlSource`, …).
 * @returns `{ metadata(), tensors(), dequantize(name), toParquet(options), toSafetensors(dtype,
 *          options), free() }`: `tensors()` lists `{ name, shape, ggmlType, bytes, start, end }`;
 *          `dequantize` resolves to a Float32Array (bit-identical to gguf-py); `toParquet` /
 *          `toSafetensors` take `{ onChunk, onProgress({ done, total, name }), signal }` and
 *          resolve to the whole file without `onChunk`.
 */
export async function openGgufSource(source) {
  return openGgufSourceWith(wasm, source);
}

/**
 * An arrowquant Parquet file read by byte range, never whole: the footer from its last bytes,
 * then its body in segments of whole row groups. Opening reads every segment once (pages and rows
 * checked, the body's checksum compared) and keeps the tensor list; the rest reads again only the
 * segments it needs, so memory holds one segment (about 8 MiB, or one large tensor) at a time.
 *
 * @param source  `{ size, read(start, end) }` (`fileSource`, `blobSource`, `urlSource`, …).
 * @param options `onProgress({ done, total, bytesDone, bytesTotal })` and `signal` for the opening scan.
 * @returns `{ metadata(), tensors(), dequantize(name), toSafetensors(dtype, options), toGguf(options),
 *          free() }`: `tensors()` lists what `openQuantized(bytes).tensors()` lists; `toSafetensors`
 *          / `toGguf` take `{ onChunk, onProgress, signal }` and resolve to the whole file without
 *          `onChunk`.
 */
export async function openQuantizedSource(source, options = {}) {
  return openQuantizedSourceWith(wasm, source, options);
}
