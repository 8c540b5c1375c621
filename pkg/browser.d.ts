import type { BuildInfo, CalibrationInput, CalibrationSummary, ErrorHistogram, GgufLayer, GgufReport, LayerReport, ModelReport, ModelSummary, Progress, QuantConfig, QuantConfigInput } from './wasm/arrowquant.js';
import type { GgmlTypeName } from './wasm/arrowquant.js';
export interface WorkerQuantizerInfo extends BuildInfo {
  /** Threads in the pool (1 for the single-threaded build). */
  poolThreads: number;
  /** Why this build was chosen. */
  reason: string;
  /** Seconds the start-up warm-up run took (0 when turned off). */
  warmUpSeconds: number;
  /** Workers replaced after their wasm instance trapped (each then answers with E_INTERNAL). */
  restarts: number;
}
export interface WorkerRunStats {
  /** Distinct pool threads that ran quantization blocks. */
  threadsSeen: number;
  /** The Worker's wasm memory at the end of the run (its peak: wasm memory never shrinks). */
  wasmMemoryBytes: number;
  /** Wall time of the run in the Worker. */
  seconds: number;
  /**
   * Which thread read the File: 'reader worker' (a helper Worker, so reads overlap the
   * quantizing) or 'this worker' (no helper: disabled, or it could not start).
   */
  readVia: 'reader worker' | 'this worker' | null;
}
/** A quantizer in a Web Worker (its own wasm instance and, with the threaded build, a thread pool). */
export interface WorkerQuantizer {
  /** Which build runs and why, its threads and start-up cost. */
  info: WorkerQuantizerInfo;
  /** The full config a partial one resolves to (profile defaults applied), or an E_CONFIG error. */
  resolveConfig(config: QuantConfigInput): Promise<QuantConfig>;
  /** What each file is, from its header (a calibration file comes with its summary). */
  classify(files: (Blob | File)[]): Promise<{ role: 'model' | 'calibration' | 'index' | 'unreadable'; calibration?: CalibrationSummary; error?: { code: string; message: string } }[]>;
  /** The model's summary from its header(s) alone: tensors, modality, size estimates per profile. */
  describe(files: Blob | File[], options?: { index?: Blob; config?: QuantConfigInput }): Promise<{ summary: ModelSummary; shards: { name: string; tensors: number }[] | null }>;
  /** Re-quantize one layer of the last described or quantized model as `config` would, and histogram ŵ − w. */
  histogram(name: string, config: QuantConfigInput, bins?: number): Promise<ErrorHistogram>;
  /** Quantize into Parquet, streamed: bytes to `onChunk`, OPFS (`output`) or a Blob. */
  quantize(
    /** One model file, or its shards (with `index`). */
    file: Blob | File[],
    /** Config (see QuantConfigInput); the `local` profile when omitted. */
    config?: QuantConfigInput,
    options?: {
      /** Called after each tensor with the progress and the tensor's report row. */
      onProgress?: (p: Progress & { layer: LayerReport }) => void;
      /** Receives the file's bytes in order (then no Blob is returned). */
      onChunk?: (bytes: Uint8Array) => void;
      /** Close row groups at about this many bytes (default 8 MiB). */
      rowGroupBytes?: number;
      /** Calibration statistics (docs/CALIBRATION.md): a File/Blob or bytes of the .safetensors file, or an object. */
      calibration?: Blob | Uint8Array | CalibrationInput;
      /** The index JSON (model.safetensors.index.json) when `file` is a list of shards. */
      index?: Blob;
      /** Write the Parquet file into the origin-private file system under this name instead of returning a Blob. */
      output?: { opfs: string };
      /** Stops the run with E_CANCELLED (the worker is replaced: every job on it is cancelled). */
      signal?: AbortSignal;
    },
  ): Promise<{ report: ModelReport; stats: WorkerRunStats; parquet?: Blob; output?: { opfs?: string; bytes?: number; spilled?: boolean } }>;
  /** Quantize into GGUF of a mix (docs/GGUF.md), streamed like `quantize`. */
  quantizeGguf(
    /** One model file, or its shards (with `index`). */
    file: Blob | File[],
    /** The mix (docs/GGUF.md). */
    ggmlType: GgmlTypeName,
    options?: {
      /** Called after each tensor; `bytesDone`/`bytesTotal` count the output. */
      onProgress?: (p: { done: number; total: number; name: string; layer: GgufLayer; bytesDone: number; bytesTotal: number; wasmMemoryBytes: number }) => void;
      /** Receives the file's bytes in order (then no Blob is returned). */
      onChunk?: (bytes: Uint8Array) => void;
      /** The index JSON (model.safetensors.index.json) when `file` is a list of shards. */
      index?: Blob;
      /** Write the GGUF file into the origin-private file system under this name instead of returning a Blob. */
      output?: { opfs: string };
      /** Activation statistics: each layer's input second moments weight its block searches (importance). */
      calibration?: Blob | Uint8Array | CalibrationInput;
      /** Tensor name or glob → 2/4/8/16 bits (Q2_K, the mix's 4-bit type, Q8_0, F16). */
      layerBitWidths?: Record<string, 2 | 4 | 8 | 16>;
      /** A cap on the file's size in MiB. */
      targetSizeMb?: number;
      /** GPTQ with the calibration's Gram matrices (`auto`: whenever a layer has one). */
      gptq?: 'auto' | 'on' | 'off' | boolean;
      /** GPTQ's damping relative to the Gram matrix's mean diagonal (default 0.01). */
      gptqDamp?: number;
      /** GPTQ codes columns by decreasing E[x²] (default true). */
      gptqActOrder?: boolean;
      /** Stops the run with E_CANCELLED (the worker is replaced: every job on it is cancelled). */
      signal?: AbortSignal;
    },
  ): Promise<{ report: GgufReport; stats: WorkerRunStats; gguf?: Blob; output?: { opfs?: string; bytes?: number; spilled?: boolean } }>;
  /** Stop the Worker(s); pending calls reject with E_CANCELLED. */
  terminate(): void;
}
export function createWorkerQuantizer(options?: {
  /** 'auto' (default): the threaded build when the page is cross-origin isolated, else the single-threaded one; true: the threaded build or an error; false: single-threaded. */
  threads?: 'auto' | boolean;
  /** Pool size for the threaded build (default: navigator.hardwareConcurrency). */
  numThreads?: number;
  /** The worker script's URL, when it is served from somewhere the bundler does not know. */
  workerUrl?: string | URL;
  /**
   * URL of a copy of the package's files (`worker.js`, `wasm/`, `wasm-mt/`, …), for bundlers that
   * do not follow `new Worker(new URL(…, import.meta.url))` (esbuild) or a CDN.
   */
  wasmPaths?: string | URL;
  /**
   * How long the threaded build's pool may take to start before the single-threaded build is
   * used instead (with the reason in `info.reason`); default 10000.
   */
  threadStartTimeoutMs?: number;
  /** Run a small throwaway quantization at start-up so the first real one runs on optimised code (default true). */
  warmUp?: boolean;
  /** Read the File in a helper Worker while this one quantizes (default true); false reads in the quantizing Worker. */
  readerWorker?: boolean;
}): Promise<WorkerQuantizer>;
