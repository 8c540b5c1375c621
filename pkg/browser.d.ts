import type { BuildInfo, CalibrationInput, LayerReport, ModelReport, Progress, QuantConfig, QuantConfigInput } from './wasm/arrowquant.js';
export interface WorkerQuantizerInfo extends BuildInfo {
  /** Threads in the pool (1 for the single-threaded build). */
  poolThreads: number;
  /** Why this build was chosen. */
  reason: string;
}
export interface WorkerRunStats {
  /** Distinct pool threads that ran quantization blocks. */
  threadsSeen: number;
  wasmMemoryBytes: number;
  seconds: number;
}
export interface WorkerQuantizer {
  info: WorkerQuantizerInfo;
  resolveConfig(config: QuantConfigInput): Promise<QuantConfig>;
  quantize(
    file: Blob,
    config?: QuantConfigInput,
    options?: {
      onProgress?: (p: Progress & { layer: LayerReport }) => void;
      onChunk?: (bytes: Uint8Array) => void;
      rowGroupBytes?: number;
      /** Calibration statistics (docs/CALIBRATION.md): a File/Blob or bytes of the .safetensors file, or an object. */
      calibration?: Blob | Uint8Array | CalibrationInput;
    },
  ): Promise<{ report: ModelReport; stats: WorkerRunStats; parquet?: Blob }>;
  terminate(): void;
}
export function createWorkerQuantizer(options?: { threads?: 'auto' | boolean; numThreads?: number; workerUrl?: string | URL }): Promise<WorkerQuantizer>;
