// The API every entry point (web, node, deno) shares. The wasm API's types are generated from the
// Rust structs (tsify + wasm-bindgen) into wasm/arrowquant.d.ts; only the JS helpers are declared
// here. Each entry's own additions are in web.d.ts, node.d.ts and deno.d.ts.
// Every generated type, and as values exactly what api.js exports (not the glue's initialisers).
export type * from './wasm/arrowquant.js';
export {
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
} from './wasm/arrowquant.js';
import type { CalibrationInput, FileMetadata, GgmlTypeName, GgufLayer, GgufReport, LayerReport, ModelReport, Progress, QuantConfigInput, SafetensorsHeader } from './wasm/arrowquant.js';


/** Random-access bytes: what the quantizers read from. */
export interface ByteSource {
  /** Length of the file in bytes. */
  size: number;
  /** Bytes [start, end) of the file (or a promise of them). */
  read(start: number, end: number): Uint8Array | Promise<Uint8Array>;
}
export interface StreamOptions {
  /** Receives the Parquet file's bytes in order as row groups close (the run waits for a returned promise); without it they are returned as `parquet`. */
  onChunk?: (bytes: Uint8Array) => void | Promise<void>;
  /** Called after each tensor with the progress and the tensor's report row. */
  onProgress?: (progress: Progress & { layer: LayerReport }) => void;
  /** Called once with the source's parsed safetensors header, before any tensor is read. */
  onHeader?: (header: SafetensorsHeader) => void | Promise<void>;
  /** Aborting stops the run with E_CANCELLED. */
  signal?: AbortSignal;
  /** Close row groups at about this many bytes (default 8 MiB): smaller means smaller chunks and less memory. */
  rowGroupBytes?: number;
  /** Calibration statistics (docs/CALIBRATION.md): the .safetensors file's bytes or an object. */
  calibration?: Uint8Array | CalibrationInput;
  /** With `targetSizeMb`, the planning pass reads every tensor first; called after each one. */
  onPlanProgress?: (p: { done: number; total: number; name: string }) => void;
}
export function blobSource(blob: Blob): ByteSource;
/**
 * Several safetensors shards (+ the parsed `model.safetensors.index.json`, optional) as one
 * source: a synthetic header over the shards' data laid end to end. Tensors stay in their shards.
 */
export function shardedSource(
  shards: (ByteSource & { name: string })[],
  index?: { weight_map: Record<string, string>; metadata?: Record<string, unknown> },
): Promise<ByteSource & { shards: { name: string; tensors: number }[] }>;
export function bytesSource(bytes: Uint8Array): ByteSource;
/** What the quantizers read: a random-access source, or a stream / fetch Response (read once, front to back). */
export type SourceInput = ByteSource | ReadableStream<Uint8Array> | Response;
/**
 * A ReadableStream of bytes (or a fetch Response: its body, the size from Content-Length), read
 * once front to back. A second pass (`targetSizeMb` planning) is `E_STATE`.
 */
export function streamSource(input: ReadableStream<Uint8Array> | Response, size?: number): ByteSource & { cancel(reason?: unknown): Promise<void> };
export interface UrlOptions {
  /** Replaces the global fetch. */
  fetch?: typeof fetch;
  /** Sent with every request (an Authorization header for a private model). */
  headers?: Record<string, string>;
  /** Aborting stops pending requests with E_CANCELLED. */
  signal?: AbortSignal;
}
/** A file on a web server, read with HTTP range requests (the server must answer 206). */
export function urlSource(url: string, options?: UrlOptions): Promise<ByteSource>;
/** A sharded model on a web server, through its `model.safetensors.index.json`; shards read with range requests. */
export function urlShardedSource(indexUrl: string, options?: UrlOptions): Promise<ByteSource & { shards: { name: string; tensors: number }[] }>;
/** `https://huggingface.co/<repo>/resolve/<revision>/<file>` (revision `main` by default). */
export function huggingFaceUrl(repo: string, file: string, options?: { revision?: string; endpoint?: string }): string;
/** `quantizeStream` with the Parquet file as a ReadableStream; `report` settles when it is done. */
export function quantizeReadable(source: SourceInput, config?: QuantConfigInput, options?: Omit<StreamOptions, 'onChunk'>): { readable: ReadableStream<Uint8Array>; report: Promise<ModelReport> };
/** `quantizeGguf` with the GGUF file as a ReadableStream. */
export function quantizeGgufReadable(source: SourceInput, ggmlType: GgmlTypeName, options?: Omit<GgufOptions, 'onChunk'>): { readable: ReadableStream<Uint8Array>; report: Promise<GgufReport> };
export function quantizeStream(
  source: SourceInput,
  config?: QuantConfigInput,
  options?: StreamOptions,
): Promise<{ report: ModelReport; parquet?: Uint8Array }>;
export interface GgufOptions {
  /** Receives the GGUF file's bytes in order (the run waits for a returned promise); without it they are returned as `gguf`. */
  onChunk?: (bytes: Uint8Array) => void | Promise<void>;
  /** `bytesDone`/`bytesTotal` count the output, whose size is known from the header. */
  onProgress?: (progress: { done: number; total: number; name: string; layer: GgufLayer; bytesDone: number; bytesTotal: number }) => void;
  /** Aborting stops the run with E_CANCELLED. */
  signal?: AbortSignal;
  /**
   * Activation statistics (docs/CALIBRATION.md): a layer's Gram matrix codes it by GPTQ (`gptq`),
   * else its input second moments weight its block searches, as llama.cpp's importance matrix;
   * measured sensitivities steer `targetSizeMb`; the report gains `outputSnrDb`.
   */
  calibration?: Uint8Array | CalibrationInput;
  /** Tensor name or glob → 2/4/8/16 bits: Q2_K, the mix's 4-bit type (Q4_K or Q4_0), Q8_0, F16. */
  layerBitWidths?: Record<string, 2 | 4 | 8 | 16>;
  /** A cap in MiB: the largest tensors move down the type ladder (sensitive ones last) until the file fits. */
  targetSizeMb?: number;
  /**
   * GPTQ for the layers whose calibration has a Gram matrix (`auto`, the default: whenever it
   * has one): codes chosen with each value's error compensated in the values still to come.
   */
  gptq?: 'auto' | 'on' | 'off' | boolean;
  /** GPTQ's damping, relative to the mean of the Gram matrix's diagonal (default 0.01). */
  gptqDamp?: number;
  /** GPTQ codes columns by decreasing E[x²] (default true). */
  gptqActOrder?: boolean;
}
/**
 * Quantize a safetensors source into GGUF, tensor by tensor: the header first (every tensor's type
 * and offset comes from the safetensors header), then each tensor's blocks.
 */
export function quantizeGguf(
  source: SourceInput,
  ggmlType: GgmlTypeName,
  options?: GgufOptions,
): Promise<{ report: GgufReport; gguf?: Uint8Array }>;

/** One tensor of a GGUF file: its original shape, ggml type, size and byte range in the file. */
export interface GgufTensorInfo {
  /** The tensor's name in the file. */
  name: string;
  /** Row-major shape (the recorded original shape when the writer reshaped the tensor). */
  shape: number[];
  /** Its ggml type: `Q4_K`, `F16`, … */
  ggmlType: string;
  /** Its stored size. */
  bytes: number;
  /** First byte of its data in the file. */
  start: number;
  /** One past its last byte. */
  end: number;
}
export interface GgufReadOptions {
  /** Receives the output's bytes in order (the run waits for a returned promise); without it the file is returned whole. */
  onChunk?: (bytes: Uint8Array) => void | Promise<void>;
  /** Called after each tensor. */
  onProgress?: (progress: { done: number; total: number; name: string }) => void;
  /** Aborting stops the run with E_CANCELLED. */
  signal?: AbortSignal;
}
/** A GGUF file read by byte range (`openGgufSource`): memory holds its header and one tensor. */
export interface GgufSource {
  /** The metadata: every key with its value (arrays other than i32 ones as null). */
  metadata(): Record<string, string | number | boolean | number[] | null>;
  /** The tensors in file order. */
  tensors(): GgufTensorInfo[];
  /** One tensor decoded to float32 (bit-identical to gguf-py's `dequantize`). */
  dequantize(name: string): Promise<Float32Array>;
  /** The file as an arrowquant Parquet file, every tensor's bytes as stored (`arrowquant convert`). */
  toParquet(options?: GgufReadOptions): Promise<Uint8Array | undefined>;
  /** The file as safetensors of 'f32' (default) or 'f16'. */
  toSafetensors(dtype?: 'f32' | 'f16', options?: GgufReadOptions): Promise<Uint8Array | undefined>;
  /** Release the wasm memory of the header (the source is the caller's to close). */
  free(): void;
}
/** Open a GGUF file by byte range, never whole: the header first, each tensor when asked for. */
export function openGgufSource(source: ByteSource): Promise<GgufSource>;
/** Progress of a pass over a Parquet file read by range: segments done, bytes of the file read. */
export interface SegmentProgress {
  /** Segments read. */
  done: number;
  /** Segments in the file. */
  total: number;
  /** Bytes of the file up to the end of the last segment read. */
  bytesDone: number;
  /** The file's size. */
  bytesTotal: number;
}
export interface ParquetReadOptions {
  /** Receives the output's bytes in order (the run waits for a returned promise); without it the file is returned whole. */
  onChunk?: (bytes: Uint8Array) => void | Promise<void>;
  /** Called after each segment. */
  onProgress?: (progress: SegmentProgress) => void;
  /** Aborting stops the run with E_CANCELLED. */
  signal?: AbortSignal;
}
/** An arrowquant Parquet file read by range (`openQuantizedSource`): memory holds its tensor list and one segment. */
export interface QuantizedSource {
  /** Format, library version, config, modality and source metadata. */
  metadata(): FileMetadata;
  /** One entry per tensor, in file order, as `openQuantized(bytes).tensors()` lists them. */
  tensors(): LayerReport[];
  /** One tensor as f32 in the original weight space (bit-exact with what validation measured); `{ equalized: true }` gives the stored W·diag(s). */
  dequantize(name: string, options?: { equalized?: boolean }): Promise<Float32Array>;
  /** The file as safetensors of 'f32' (default) or 'f16'. */
  toSafetensors(dtype?: 'f32' | 'f16', options?: ParquetReadOptions): Promise<Uint8Array | undefined>;
  /** The file as GGUF without re-quantizing (`arrowquant convert`); E_CONVERT names a tensor GGUF cannot hold exactly. */
  toGguf(options?: ParquetReadOptions): Promise<Uint8Array | undefined>;
  /** Release the wasm memory of the tensor list (the source is the caller's to close). */
  free(): void;
}
/** Open an arrowquant Parquet file by byte range, never whole: one checked pass lists its tensors. */
export function openQuantizedSource(source: ByteSource, options?: { onProgress?: (progress: SegmentProgress) => void; signal?: AbortSignal }): Promise<QuantizedSource>;
