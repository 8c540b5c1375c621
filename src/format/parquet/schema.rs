//! Column names, types and metadata keys of the V2 Extended schema (docs/FORMAT.md).

use std::sync::Arc;

use parquet::schema::parser::parse_message_type;
use parquet::schema::types::{SchemaDescPtr, SchemaDescriptor};

pub const FORMAT_NAME: &str = "arrowquant-v2-extended";
/// MAJOR.MINOR. A reader accepts any file with the same major version; minor versions only add
/// nullable columns or metadata keys, which older readers ignore.
pub const FORMAT_VERSION: &str = "2.4";
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

/// (2.4) Present in a file converted from another container (`gguf`) rather than quantized
/// from a source model: its rows carry no quality columns and `arrowquant.config` is `null`.
pub const KEY_CONVERTED_FROM: &str = "arrowquant.converted_from";

/// Row groups are closed once this much data is buffered, so output reaches JS in chunks and the
/// writer never holds more than about this much plus one tensor.
pub const ROW_GROUP_TARGET_BYTES: usize = 8 * 1024 * 1024;

/// The file's Parquet schema (docs/FORMAT.md §2), as parquet-rs's schema printer writes it: the
/// schema parquet-rs derives from the Arrow types readers see (UInt8, Float16, …; the test
/// below), root name included, so every file of this version has the same schema bytes.
const MESSAGE: &str = "message arrow_schema {
  REQUIRED BYTE_ARRAY name (STRING);
  REQUIRED group shape (LIST) {
    REPEATED group list {
      REQUIRED INT64 item (INTEGER(64,false));
    }
  }
  REQUIRED BYTE_ARRAY dtype (STRING);
  REQUIRED BYTE_ARRAY storage (STRING);
  OPTIONAL INT32 requested_bits (INTEGER(8,false));
  OPTIONAL INT32 bits (INTEGER(8,false));
  OPTIONAL INT32 group_size (INTEGER(32,false));
  REQUIRED BYTE_ARRAY data;
  REQUIRED INT32 data_crc32 (INTEGER(32,false));
  OPTIONAL group scales (LIST) {
    REPEATED group list {
      REQUIRED FIXED_LEN_BYTE_ARRAY (2) item (FLOAT16);
    }
  }
  OPTIONAL group mins (LIST) {
    REPEATED group list {
      REQUIRED FIXED_LEN_BYTE_ARRAY (2) item (FLOAT16);
    }
  }
  OPTIONAL DOUBLE cosine;
  OPTIONAL DOUBLE snr_db;
  OPTIONAL DOUBLE rel_rmse;
  OPTIONAL DOUBLE max_abs_error;
  REQUIRED BYTE_ARRAY reason (STRING);
  REQUIRED BYTE_ARRAY modality (STRING);
  OPTIONAL group time_groups (LIST) {
    REPEATED group list {
      REQUIRED group item {
        REQUIRED INT32 t_start (INTEGER(32,false));
        REQUIRED INT32 t_end (INTEGER(32,false));
        REQUIRED FLOAT scale;
        REQUIRED INT32 zero_point;
      }
    }
  }
  OPTIONAL group spatial {
    REQUIRED BOOLEAN enabled;
    REQUIRED BOOLEAN channel_equalization;
    REQUIRED BOOLEAN activation_smoothing;
    REQUIRED FLOAT alpha;
    REQUIRED group equalization_scales (LIST) {
      REPEATED group list {
        REQUIRED FLOAT item;
      }
    }
  }
  OPTIONAL DOUBLE weighted_snr_db;
  OPTIONAL DOUBLE output_snr_db;
  REQUIRED INT32 row_crc32 (INTEGER(32,false));
  OPTIONAL BYTE_ARRAY block_type (STRING);
}";

pub fn schema() -> SchemaDescPtr {
    let root = parse_message_type(MESSAGE).expect("the schema message parses");
    Arc::new(SchemaDescriptor::new(Arc::new(root)))
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

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use std::sync::Arc;

    use arrow_schema::{DataType, Field, Fields, Schema};
    use parquet::arrow::ArrowSchemaConverter;

    /// The message is the schema parquet-rs derives from the Arrow types docs/FORMAT.md §2 lists
    /// (what pyarrow and other Arrow readers return): the files earlier versions wrote with
    /// parquet-rs's Arrow writer and the ones written now have one schema.
    #[test]
    fn the_message_is_the_arrow_types_schema() {
        let list_of = |item: DataType| DataType::List(Arc::new(Field::new("item", item, false)));
        let time_group = Fields::from(vec![
            Field::new("t_start", DataType::UInt32, false),
            Field::new("t_end", DataType::UInt32, false),
            Field::new("scale", DataType::Float32, false),
            Field::new("zero_point", DataType::Int32, false),
        ]);
        let spatial = Fields::from(vec![
            Field::new("enabled", DataType::Boolean, false),
            Field::new("channel_equalization", DataType::Boolean, false),
            Field::new("activation_smoothing", DataType::Boolean, false),
            Field::new("alpha", DataType::Float32, false),
            Field::new("equalization_scales", list_of(DataType::Float32), false),
        ]);
        let arrow = Schema::new(vec![
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
            Field::new("time_groups", list_of(DataType::Struct(time_group)), true),
            Field::new("spatial", DataType::Struct(spatial), true),
            Field::new("weighted_snr_db", DataType::Float64, true),
            Field::new("output_snr_db", DataType::Float64, true),
            Field::new("row_crc32", DataType::UInt32, false),
            Field::new("block_type", DataType::Utf8, true),
        ]);
        let from_arrow = ArrowSchemaConverter::new().convert(&arrow).unwrap();
        assert_eq!(from_arrow.root_schema(), super::schema().root_schema());
    }
}
