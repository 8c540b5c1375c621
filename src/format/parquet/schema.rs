//! Column names, types and metadata keys of the V2 Extended schema (docs/FORMAT.md).

use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};

pub const FORMAT_NAME: &str = "arrowquant-v2-extended";
/// MAJOR.MINOR. A reader accepts any file with the same major version; minor versions only add
/// nullable columns or metadata keys, which older readers ignore.
pub const FORMAT_VERSION: &str = "2.3";
pub const FORMAT_MAJOR: u32 = 2;

pub const KEY_FORMAT: &str = "arrowquant.format";
pub const KEY_FORMAT_VERSION: &str = "arrowquant.format_version";
pub const KEY_LIBRARY_VERSION: &str = "arrowquant.library_version";
pub const KEY_CONFIG: &str = "arrowquant.config";
pub const KEY_MODALITY: &str = "arrowquant.modality";
pub const KEY_SOURCE_METADATA: &str = "arrowquant.source_metadata";
/// CRC-32 of the other `arrowquant.*` keys and values (2.2; docs/FORMAT.md §3).
pub const KEY_METADATA_CRC: &str = "arrowquant.metadata_crc32";
/// Present when calibration statistics were used: `{"timesteps": [...], "activationBits": 8, …}`.
pub const KEY_CALIBRATION: &str = "arrowquant.calibration";
/// (2.3) The number of rows (tensors) written, so that a file whose row groups were lost or
/// whose footer lists none is refused rather than read as a smaller model.
pub const KEY_TENSOR_COUNT: &str = "arrowquant.tensor_count";
/// (2.3) How many bytes from the start of the file the row groups occupy, and their CRC-32:
/// checked before any page is decoded, so damaged pages never reach the Parquet decoder.
pub const KEY_BODY_BYTES: &str = "arrowquant.body_bytes";
pub const KEY_BODY_CRC: &str = "arrowquant.body_crc32";

/// Row groups are closed once this much data is buffered, so output reaches JS in chunks and the
/// writer never holds more than about this much plus one tensor.
pub const ROW_GROUP_TARGET_BYTES: usize = 8 * 1024 * 1024;

pub fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, false)))
}

pub fn time_group_fields() -> Fields {
    Fields::from(vec![
        Field::new("t_start", DataType::UInt32, false),
        Field::new("t_end", DataType::UInt32, false),
        Field::new("scale", DataType::Float32, false),
        Field::new("zero_point", DataType::Int32, false),
    ])
}

pub fn spatial_fields() -> Fields {
    Fields::from(vec![
        Field::new("enabled", DataType::Boolean, false),
        Field::new("channel_equalization", DataType::Boolean, false),
        Field::new("activation_smoothing", DataType::Boolean, false),
        Field::new("alpha", DataType::Float32, false),
        Field::new("equalization_scales", list_of(DataType::Float32), false),
    ])
}

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("shape", list_of(DataType::UInt64), false),
        Field::new("dtype", DataType::Utf8, false),
        Field::new("storage", DataType::Utf8, false),
        Field::new("requested_bits", DataType::UInt8, true),
        Field::new("bits", DataType::UInt8, true),
        Field::new("group_size", DataType::UInt32, true),
        Field::new("data", DataType::Binary, false),
        Field::new("data_crc32", DataType::UInt32, false),
        Field::new("scales", list_of(DataType::Float16), true),
        Field::new("mins", list_of(DataType::Float16), true),
        Field::new("cosine", DataType::Float64, true),
        Field::new("snr_db", DataType::Float64, true),
        Field::new("rel_rmse", DataType::Float64, true),
        Field::new("max_abs_error", DataType::Float64, true),
        Field::new("reason", DataType::Utf8, false),
        Field::new("modality", DataType::Utf8, false),
        Field::new(
            "time_groups",
            DataType::List(Arc::new(Field::new("item", DataType::Struct(time_group_fields()), false))),
            true,
        ),
        Field::new("spatial", DataType::Struct(spatial_fields()), true),
        // 2.1
        Field::new("weighted_snr_db", DataType::Float64, true),
        // 2.2
        Field::new("output_snr_db", DataType::Float64, true),
        Field::new("row_crc32", DataType::UInt32, false),
    ]))
}

/// The `arrowquant.metadata_crc32` value for the key-value pairs `kv`: CRC-32 of `key=value\n`
/// for every `arrowquant.*` key but itself, in byte order of the keys.
pub fn metadata_crc<'a>(kv: impl IntoIterator<Item = (&'a str, &'a str)>) -> u32 {
    let mut pairs: Vec<(&str, &str)> =
        kv.into_iter().filter(|(k, _)| k.starts_with("arrowquant.") && *k != KEY_METADATA_CRC).collect();
    pairs.sort();
    let mut h = crc32fast::Hasher::new();
    for (k, v) in pairs {
        h.update(k.as_bytes());
        h.update(b"=");
        h.update(v.as_bytes());
        h.update(b"\n");
    }
    h.finalize()
}
