//! Shapes of the plain JS objects the bindings return. TypeScript declarations are generated from
//! these structs by tsify; the few composite results that carry typed arrays are declared in the
//! custom section below in terms of the generated types.

use std::collections::BTreeMap;

use serde::Serialize;
use tsify::Tsify;
use wasm_bindgen::prelude::*;

use crate::diffusion::calibration::Calibration;
use crate::format::parquet::reader::QuantizedFile;
use crate::format::safetensors::Header;
use crate::policy::config::QuantConfig;

#[wasm_bindgen(typescript_custom_section)]
const TS_COMPOSITES: &'static str = r#"
/** The GGUF mixes (docs/GGUF.md): the type of most tensors and of the sensitive layers. */
export type GgmlTypeName = 'Q8_0' | 'Q6_K' | 'Q5_K_M' | 'Q5_K_S' | 'Q5_1' | 'Q5_0' | 'Q4_K_M' | 'Q4_K_S' | 'Q4_1' | 'Q4_0' | 'Q3_K_L' | 'Q3_K_M' | 'Q3_K_S' | 'Q2_K' | 'F16' | 'BF16' | 'F32';
/** What a GGUF run takes of the config: per-layer widths (2/4/8/16 → Q2_K, the mix's 4-bit type, Q8_0, F16) and a size budget in MiB. */
export type GgufConfigInput = Pick<QuantConfigInput, "layerBitWidths" | "targetSizeMb" | "gptq" | "gptqDamp" | "gptqActOrder">;
/** Config as callers pass it: any subset of QuantConfig fields; `profile` picks the defaults. */
export type QuantConfigInput = Partial<Omit<QuantConfig, "profile" | "scaleSearch" | "modality">> & {
  profile?: Profile | "base";
  /** Alias of bitWidth. */
  bits?: 2 | 4 | 8;
  scaleSearch?: ScaleSearch | boolean;
  modality?: Modality | "auto" | null;
};
export interface QuantizeOptions {
  /** Called after each tensor. Throwing from it cancels the run and rethrows. */
  onProgress?: (progress: Progress) => void;
  /** Calibration statistics (docs/CALIBRATION.md): the .safetensors file's bytes or an object. */
  calibration?: Uint8Array | CalibrationInput;
}
/** Calibration statistics as a plain object (docs/CALIBRATION.md). */
export interface CalibrationInput {
  /** Diffusion timestep value of each calibration step; arrays below are indexed like this. */
  timesteps: number[];
  /** Layer name (the module path: `L.weight` is the weight its input multiplies) → its statistics. */
  layers: Record<string, {
    /** Smallest input activation per timestep (null where none was seen). */
    actMin: (number | null)[];
    /** Largest input activation per timestep (null where none was seen). */
    actMax: (number | null)[];
    /** Batch elements seen per timestep; 0 marks a timestep without data. */
    samples: number[];
    /** max |x_j| per input channel: [C_in] or per timestep [T][C_in]. */
    channelAbsMax?: number[] | number[][];
  }>;
}
export interface MergedShards {
  /** The virtual file's first bytes: its length prefix and JSON header. */
  header: Uint8Array;
  /** Length of the virtual file in bytes. */
  size: number;
  /** Where the virtual file's data bytes live: [start, end) is shards[shard] from `offset`. */
  segments: Segment[];
  /** What each shard contributes, in model order. */
  shards: ShardSummary[];
}
export interface ConfigField {
  /** camelCase name (the key of QuantConfigInput). */
  name: string;
  /** Other names the input form accepts. */
  aliases: string[];
  /** The JSON type of the value (`choice`: one of the strings in `allowed`). */
  kind: "boolean" | "number" | "choice" | "list" | "map";
  /** What the field allows, as error messages say it. */
  allowed: string;
}
export interface QuantizeResult {
  /** The Parquet file (or, from ModelQuantizer.finish, the bytes not yet taken). */
  parquet: Uint8Array;
  /** What was stored and how good it is, per tensor and for the model. */
  report: ModelReport;
}
export interface QuantizedTensorResult {
  /** How the tensor is stored: `quantized`, `f16` or `raw`. */
  storage: Storage;
  /** Stored width: 2/4/8 for codes, 16 for f16, null for raw. */
  bits: number | null;
  /** Values per scale/min group; null unless quantized. */
  groupSize: number | null;
  /** Packed codes (quantized) or f16 / raw bytes, as stored in the file. */
  codes: Uint8Array;
  /** f16 bit patterns, one per group (null unless quantized). */
  scales: Uint16Array | null;
  /** f16 bit patterns of each group's offset m in ŵ = q·s + m (null unless quantized). */
  mins: Uint16Array | null;
  /** The tensor's metrics against the source. */
  report: LayerReport;
}
"#;

#[derive(Serialize, Tsify)]
#[tsify(missing_as_null)]
#[serde(rename_all = "camelCase")]
pub struct BuildInfo {
    /// arrowquant version of this build.
    pub version: String,
    /// Parquet format version it writes (docs/FORMAT.md).
    pub format_version: String,
    /// Whether this build uses WebAssembly SIMD128.
    pub simd: bool,
    /// Whether this is the threaded build (a thread pool may run).
    pub threads: bool,
    /// The kernel set in use: "simd128" or "scalar".
    pub kernels: String,
}

#[derive(Serialize, Tsify)]
#[tsify(missing_as_null)]
#[serde(rename_all = "camelCase")]
pub struct HeaderTensor {
    /// Tensor name.
    pub name: String,
    /// dtype as the safetensors header spells it (F32, F16, BF16, …).
    pub dtype: String,
    /// Shape (row-major).
    pub shape: Vec<u64>,
    /// Number of values.
    pub params: u64,
    /// Absolute file offset of the tensor's first byte.
    pub start: u64,
    /// Absolute file offset one past its last byte.
    pub end: u64,
}

#[derive(Serialize, Tsify)]
#[tsify(missing_as_null)]
#[serde(rename_all = "camelCase")]
pub struct SafetensorsHeader {
    /// 8 + JSON length: where the data section starts.
    pub header_size: u64,
    /// Bytes of all tensors.
    pub tensor_bytes: u64,
    /// File length implied by the header.
    pub file_size: u64,
    /// The header's `__metadata__` map.
    #[tsify(type = "Record<string, string>")]
    pub metadata: BTreeMap<String, String>,
    /// Every tensor, in file order.
    pub tensors: Vec<HeaderTensor>,
    /// "calibration" for a calibration statistics file (docs/CALIBRATION.md), else "model".
    pub role: String,
}

impl SafetensorsHeader {
    pub fn from_core(h: &Header) -> Self {
        SafetensorsHeader {
            header_size: h.data_offset,
            tensor_bytes: h.tensor_bytes(),
            file_size: h.implied_file_len(),
            metadata: h.metadata.clone(),
            role: if crate::format::calibration::is_calibration(h) { "calibration" } else { "model" }.to_string(),
            tensors: h
                .tensors
                .iter()
                .map(|t| {
                    let (start, end) = h.file_range(t);
                    HeaderTensor {
                        name: t.name.clone(),
                        dtype: t.dtype.name().to_string(),
                        shape: t.shape.clone(),
                        params: t.numel(),
                        start,
                        end,
                    }
                })
                .collect(),
        }
    }
}

#[derive(Serialize, Tsify)]
#[tsify(missing_as_null)]
#[serde(rename_all = "camelCase")]
pub struct FileMetadata {
    /// Format version the file was written in.
    pub format_version: String,
    /// arrowquant version that wrote it.
    pub library_version: String,
    /// The config the file was written with (null if the file's config could not be parsed).
    pub config: Option<QuantConfig>,
    /// The modality the writer used (text/code/image/audio or unknown).
    pub modality: String,
    /// The source safetensors file's `__metadata__`, carried over.
    #[tsify(type = "Record<string, string>")]
    pub source_metadata: BTreeMap<String, String>,
    /// What calibration the file was made with (`timesteps`, `activationBits`, `timeGrouping`, …);
    /// null when none. Time groups index into `timesteps`.
    #[tsify(
        type = "{ timesteps: number[]; layers: number; activationBits: number; timeGrouping: string; timeSmoothing: number } | null"
    )]
    pub calibration: Option<serde_json::Value>,
}

impl FileMetadata {
    pub fn from_file(f: &QuantizedFile) -> Self {
        FileMetadata {
            format_version: f.format_version.clone(),
            library_version: f.library_version.clone(),
            config: serde_json::from_str(&f.config_json).ok(),
            modality: f.modality.clone(),
            source_metadata: f.source_metadata.clone(),
            calibration: f.calibration_json.as_deref().and_then(|s| serde_json::from_str(s).ok()),
        }
    }
}

#[derive(Serialize, Tsify)]
#[tsify(missing_as_null)]
#[serde(rename_all = "camelCase")]
pub struct CalibrationLayerSummary {
    /// Layer name (the weight tensor's name without `.weight`).
    pub name: String,
    /// Input channels of the per-channel statistics; null when there are none.
    pub input_channels: Option<u32>,
    /// Whether the per-channel maxima are recorded per timestep.
    pub per_timestep_channels: bool,
    /// Timestep indices without data.
    pub missing_timesteps: Vec<u32>,
    /// Batch elements seen over all timesteps.
    pub samples: u64,
}

#[derive(Serialize, Tsify)]
#[tsify(missing_as_null)]
#[serde(rename_all = "camelCase")]
pub struct CalibrationSummary {
    /// Diffusion timestep of each calibration step.
    pub timesteps: Vec<f64>,
    /// Every layer with statistics.
    pub layers: Vec<CalibrationLayerSummary>,
}

impl CalibrationSummary {
    pub fn from_core(c: &Calibration) -> Self {
        CalibrationSummary {
            timesteps: c.timesteps.clone(),
            layers: c
                .layers
                .iter()
                .map(|(name, l)| CalibrationLayerSummary {
                    name: name.clone(),
                    input_channels: l.channel_absmax.as_ref().map(|v| v.len() as u32),
                    per_timestep_channels: l.channel_absmax_per_t.is_some(),
                    missing_timesteps: l.missing().into_iter().map(|t| t as u32).collect(),
                    samples: l.samples.iter().sum(),
                })
                .collect(),
        }
    }
}
