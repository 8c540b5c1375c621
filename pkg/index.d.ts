// Types of every entry point. The wasm API's types are generated from the Rust structs
// (tsify + wasm-bindgen) into wasm/arrowquant.d.ts; only the JS helpers are declared here.
export * from './wasm/arrowquant.js';
import type { CalibrationInput, LayerReport, ModelReport, Progress, QuantConfigInput, SafetensorsHeader } from './wasm/arrowquant.js';

/** Browser entry only: fetch and instantiate the wasm (no-op after the first call). */
export { default as init, initSync } from './wasm/arrowquant.js';

export interface ByteSource {
  size: number;
  read(start: number, end: number): Uint8Array | Promise<Uint8Array>;
}
export interface StreamOptions {
  onChunk?: (bytes: Uint8Array) => void | Promise<void>;
  onProgress?: (progress: Progress & { layer: LayerReport }) => void;
  onHeader?: (header: SafetensorsHeader) => void | Promise<void>;
  signal?: AbortSignal;
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
/** Node entry only. */
export function fileSource(path: string): ByteSource & { close(): void };
export function quantizeStream(
  source: ByteSource,
  config?: QuantConfigInput,
  options?: StreamOptions,
): Promise<{ report: ModelReport; parquet?: Uint8Array }>;
