//! Streaming Parquet writer: one row per tensor, row groups closed every ~8 MiB, and the bytes
//! written so far can be taken at any time (they are a prefix of the final file).

use std::ops::Range;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Float32Array, Float64Array, Int32Array, ListArray, StringArray, StructArray, UInt32Array,
    UInt64Array, UInt8Array,
};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, FieldRef, Fields, SchemaRef};
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnWriter, ArrowRowGroupWriterFactory, ArrowWriterOptions};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;

use super::chunks::{self, OwnChunk};
use super::schema::{self, ROW_GROUP_TARGET_BYTES};
use super::{Metrics, Stored, TensorRow};
use crate::error::{AqError, Result};

/// The writer's output, kept as the pieces Parquet wrote: a growing `Vec` would reallocate (and
/// briefly hold twice) a file whose largest pieces are whole tensors.
#[derive(Default)]
pub struct ChunkSink {
    chunks: Vec<Vec<u8>>,
    /// Whether the last chunk collects small writes (and may grow).
    last_is_small: bool,
}

impl ChunkSink {
    const SMALL: usize = 1 << 20;
}

impl std::io::Write for ChunkSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.chunks.last_mut() {
            Some(last) if self.last_is_small && buf.len() < Self::SMALL && last.len() < Self::SMALL => {
                last.extend_from_slice(buf)
            }
            _ if buf.len() >= Self::SMALL => {
                // Whole tensors pass through here: copied with the vector kernel (see `copy_bytes`).
                self.chunks.push(crate::kernels::copy_to_vec(buf));
                self.last_is_small = false;
            }
            _ => {
                let mut v = Vec::with_capacity(Self::SMALL.max(buf.len()));
                v.extend_from_slice(buf);
                self.chunks.push(v);
                self.last_is_small = true;
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub struct TensorWriter {
    file: SerializedFileWriter<ChunkSink>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    /// The first Parquet leaf column of each top-level field, and one past the last.
    leaves: Vec<Range<usize>>,
    /// The leaf columns of `data`, `scales` and `mins` (see chunks.rs).
    own_leaves: [usize; 3],
    group: Option<RowGroup>,
    row_groups: usize,
    modality: String,
    bytes_taken: u64,
    row_group_bytes: usize,
    /// The key-value pairs given up front: the metadata checksum, written at the end, covers them.
    upfront: Vec<(String, String)>,
    rows: u64,
    /// CRC-32 of every byte handed out so far (the body, before the footer).
    body_crc: crc32fast::Hasher,
}

/// The row group being filled: parquet-rs's column writers for the small columns, ours for the
/// codes and params.
struct RowGroup {
    writers: Vec<ArrowColumnWriter>,
    own: [OwnChunk; 3],
}

impl RowGroup {
    fn size(&self) -> usize {
        let theirs: usize = self.writers.iter().map(|w| w.get_estimated_total_bytes()).sum();
        theirs + self.own.iter().map(|c| c.size()).sum::<usize>()
    }
}

fn list_item(schema: &SchemaRef, column: &str) -> FieldRef {
    match schema.field_with_name(column).expect("schema column").data_type() {
        DataType::List(item) => item.clone(),
        other => unreachable!("column {column} is {other}, not a list"),
    }
}

/// The fields whose columns chunks.rs writes, in schema order.
const OWN_FIELDS: [&str; 3] = ["data", "scales", "mins"];

impl TensorWriter {
    /// `metadata` are the file's key-value pairs known up front (format, config, …).
    pub fn new(metadata: Vec<(String, String)>, modality: &str) -> Result<Self> {
        let kv: Vec<KeyValue> = metadata.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())).collect();
        // zstd level 1: measured in `make measure-codecs` (README); snappy/lz4 barely shrink packed codes.
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(chunks::ZSTD_LEVEL)?))
            .set_dictionary_enabled(false)
            .set_statistics_enabled(EnabledStatistics::None)
            .set_key_value_metadata(Some(kv))
            .set_created_by(format!("arrowquant {}", env!("CARGO_PKG_VERSION")))
            .build();
        let schema = schema::schema();
        // The Arrow IPC schema blob is skipped: the Parquet logical types say everything
        // (FORMAT.md), and any Parquet reader can read the file without Arrow.
        let options = ArrowWriterOptions::new().with_properties(props).with_skip_arrow_metadata(true);
        let (file, factory) = ArrowWriter::try_new_with_options(ChunkSink::default(), schema.clone(), options)?
            .into_serialized_writer()?;
        let descr = file.schema_descr();
        let leaves: Vec<Range<usize>> = schema
            .fields()
            .iter()
            .map(|f| {
                let in_field = |i: &usize| descr.column(*i).path().parts()[0] == *f.name();
                let start = (0..descr.num_columns()).find(in_field).expect("every field has a leaf");
                start..(start..descr.num_columns()).find(|i| !in_field(i)).unwrap_or(descr.num_columns())
            })
            .collect();
        let own_leaves = OWN_FIELDS.map(|name| leaves[schema.index_of(name).expect("schema column")].start);
        Ok(TensorWriter {
            file,
            factory,
            schema,
            leaves,
            own_leaves,
            group: None,
            row_groups: 0,
            modality: modality.to_string(),
            bytes_taken: 0,
            row_group_bytes: ROW_GROUP_TARGET_BYTES,
            upfront: metadata,
            rows: 0,
            body_crc: crc32fast::Hasher::new(),
        })
    }

    pub fn write(&mut self, mut row: TensorRow) -> Result<()> {
        let data = std::mem::take(&mut row.data);
        // Refused before any column takes the row, so that the open row group stays whole.
        chunks::value_len(&data, &row.name)?;
        let columns = self.small_columns(&row)?;
        // A column chunk has one codec: a row whose codes take the other one starts a row group.
        let codec = chunks::codes_codec(&data);
        if self.group.as_ref().is_some_and(|g| g.own[0].codec() != codec) {
            self.flush()?;
        }
        if self.group.is_none() {
            let descr = self.file.schema_descr();
            let [codes, scales, mins] = self.own_leaves.map(|leaf| descr.column(leaf));
            let own = [OwnChunk::codes(codes, codec)?, OwnChunk::new(scales)?, OwnChunk::new(mins)?];
            let writers = self.factory.create_column_writers(self.row_groups)?;
            self.group = Some(RowGroup { writers, own });
        }
        let group = self.group.as_mut().expect("a row group is open");
        for (f, array) in columns.iter().enumerate() {
            let Some(array) = array else { continue };
            let leaves = compute_leaves(self.schema.field(f), array)?;
            for (writer, leaf) in group.writers[self.leaves[f].clone()].iter_mut().zip(&leaves) {
                writer.write(leaf)?;
            }
        }
        let (scales, mins) = match &row.stored {
            Stored::Quantized { scales, mins, .. } => (Some(scales.as_slice()), Some(mins.as_slice())),
            _ => (None, None),
        };
        let [codes, scale_chunk, min_chunk] = &mut group.own;
        codes.push_bytes(&data, &row.name)?;
        drop(data);
        scale_chunk.push_halfs(scales, &row.name)?;
        min_chunk.push_halfs(mins, &row.name)?;
        self.rows += 1;
        if group.size() >= self.row_group_bytes {
            self.flush()?;
        }
        Ok(())
    }

    /// Close the open row group: every column chunk goes to the output in schema order.
    fn flush(&mut self) -> Result<()> {
        let Some(RowGroup { writers, own }) = self.group.take() else { return Ok(()) };
        let mut own = own.map(Some);
        let mut rg = self.file.next_row_group()?;
        for (leaf, writer) in writers.into_iter().enumerate() {
            match self.own_leaves.iter().position(|&l| l == leaf) {
                Some(k) => {
                    let (pieces, close) = own[k].take().expect("each own chunk once").close()?;
                    rg.append_column(&pieces, close)?;
                }
                None => writer.close()?.append_to_row_group(&mut rg)?,
            }
        }
        rg.close()?;
        self.row_groups += 1;
        Ok(())
    }

    /// Bytes produced since the last call, in pieces. Concatenating every piece and the bytes
    /// returned by [`finish`](Self::finish) gives the file.
    pub fn take_output(&mut self) -> Vec<Vec<u8>> {
        let out = std::mem::take(self.file.inner_mut()).chunks;
        self.bytes_taken += out.iter().map(|c| c.len() as u64).sum::<u64>();
        for c in &out {
            self.body_crc.update(c);
        }
        out
    }

    /// Close row groups once this many bytes are buffered (smaller = smaller chunks, less memory).
    pub fn set_row_group_bytes(&mut self, bytes: usize) {
        self.row_group_bytes = bytes.max(1);
    }

    /// Set the modality written to rows from now on (resolved once the header is known).
    pub fn set_modality(&mut self, modality: &str) {
        self.modality = modality.to_string();
    }

    /// Close the file, adding `metadata`, the tensor count and the checksum of every
    /// `arrowquant.*` key to the footer. Returns the remaining bytes and the total file length.
    pub fn finish(mut self, mut metadata: Vec<(String, String)>) -> Result<(Vec<Vec<u8>>, u64)> {
        // The last row group goes out now, so that everything before the footer (and its page
        // indexes) is the body the checksum covers.
        self.flush()?;
        self.file.flush().map_err(|e| AqError::Parquet(e.to_string()))?;
        let mut body = self.take_output();
        debug_assert_eq!(self.bytes_taken, self.file.bytes_written() as u64);
        metadata.push((schema::KEY_TENSOR_COUNT.to_string(), self.rows.to_string()));
        metadata.push((schema::KEY_BODY_BYTES.to_string(), self.bytes_taken.to_string()));
        metadata.push((schema::KEY_BODY_CRC.to_string(), self.body_crc.clone().finalize().to_string()));
        let all = self.upfront.iter().chain(&metadata);
        let crc = schema::metadata_crc(all.map(|(k, v)| (k.as_str(), v.as_str())));
        metadata.push((schema::KEY_METADATA_CRC.to_string(), crc.to_string()));
        for (k, v) in metadata {
            self.file.append_key_value_metadata(KeyValue::new(k, v));
        }
        let footer = self.file.into_inner()?.chunks;
        let total = self.bytes_taken + footer.iter().map(|c| c.len() as u64).sum::<u64>();
        body.extend(footer);
        Ok((body, total))
    }

    /// The row's values of every column but those chunks.rs writes (`None` there), each as a
    /// one-row array.
    fn small_columns(&self, row: &TensorRow) -> Result<Vec<Option<ArrayRef>>> {
        let s = &self.schema;
        let one_list = |column: &str, values: ArrayRef, len: usize| -> ArrayRef {
            Arc::new(ListArray::new(list_item(s, column), OffsetBuffer::from_lengths([len]), values, None))
        };
        let metric = |f: fn(&Metrics) -> f64| -> Option<ArrayRef> {
            Some(Arc::new(Float64Array::from(vec![row.metrics.as_ref().map(f)])))
        };
        let spatial_fields = match s.field_with_name("spatial")?.data_type() {
            DataType::Struct(f) => f.clone(),
            _ => unreachable!("spatial is a struct"),
        };
        let columns: Vec<Option<ArrayRef>> = vec![
            Some(Arc::new(StringArray::from(vec![row.name.as_str()]))),
            Some(one_list("shape", Arc::new(UInt64Array::from(row.shape.clone())), row.shape.len())),
            Some(Arc::new(StringArray::from(vec![row.dtype.name()]))),
            Some(Arc::new(StringArray::from(vec![row.stored.storage().as_str()]))),
            Some(Arc::new(UInt8Array::from(vec![row.requested_bits]))),
            Some(Arc::new(UInt8Array::from(vec![row.stored.bits()]))),
            Some(Arc::new(UInt32Array::from(vec![row.stored.group_size()]))),
            None, // data
            Some(Arc::new(UInt32Array::from(vec![row.data_crc32]))),
            None, // scales
            None, // mins
            metric(|m| m.cosine),
            metric(|m| m.snr_db),
            metric(|m| m.rel_rmse),
            metric(|m| m.max_abs_error),
            Some(Arc::new(StringArray::from(vec![row.reason.as_str()]))),
            Some(Arc::new(StringArray::from(vec![self.modality.as_str()]))),
            Some(time_groups_column(list_item(s, "time_groups"), row)?),
            Some(spatial_column(spatial_fields, row)?),
            Some(Arc::new(Float64Array::from(vec![row.weighted_snr_db]))),
            Some(Arc::new(Float64Array::from(vec![row.output_snr_db]))),
            Some(Arc::new(UInt32Array::from(vec![row.integrity_crc()]))),
        ];
        debug_assert_eq!(columns.len(), s.fields().len());
        debug_assert!(OWN_FIELDS.iter().all(|f| columns[s.index_of(f).expect("schema column")].is_none()));
        Ok(columns)
    }
}

fn time_groups_column(item: FieldRef, row: &TensorRow) -> Result<ArrayRef> {
    let DataType::Struct(fields) = item.data_type() else { unreachable!("time_groups items are structs") };
    let Some(groups) = &row.time_groups else { return Ok(Arc::new(ListArray::new_null(item, 1))) };
    let values = StructArray::try_new(
        fields.clone(),
        vec![
            Arc::new(UInt32Array::from(groups.iter().map(|g| g.t_start).collect::<Vec<_>>())),
            Arc::new(UInt32Array::from(groups.iter().map(|g| g.t_end).collect::<Vec<_>>())),
            Arc::new(Float32Array::from(groups.iter().map(|g| g.scale).collect::<Vec<_>>())),
            Arc::new(Int32Array::from(groups.iter().map(|g| g.zero_point).collect::<Vec<_>>())),
        ],
        None,
    )?;
    Ok(Arc::new(ListArray::try_new(item, OffsetBuffer::from_lengths([groups.len()]), Arc::new(values), None)?))
}

fn spatial_column(fields: Fields, row: &TensorRow) -> Result<ArrayRef> {
    let Some(sp) = &row.spatial else { return Ok(Arc::new(StructArray::new_null(fields, 1))) };
    let DataType::List(item) = fields[4].data_type() else { unreachable!("equalization_scales is a list") };
    let scales = ListArray::try_new(
        item.clone(),
        OffsetBuffer::from_lengths([sp.scales.len()]),
        Arc::new(Float32Array::from(sp.scales.clone())),
        None,
    )?;
    Ok(Arc::new(StructArray::try_new(
        fields,
        vec![
            Arc::new(BooleanArray::from(vec![sp.enabled])),
            Arc::new(BooleanArray::from(vec![sp.channel_equalization])),
            Arc::new(BooleanArray::from(vec![sp.activation_smoothing])),
            Arc::new(Float32Array::from(vec![sp.alpha])),
            Arc::new(scales),
        ],
        None,
    )?))
}
