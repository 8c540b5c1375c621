//! Streaming Parquet writer: one row per tensor, row groups closed every ~8 MiB, and the bytes
//! written so far can be taken at any time (they are a prefix of the final file).

use std::sync::Arc;

use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesPtr};
use parquet::file::writer::SerializedFileWriter;

use super::chunks::{self, OwnChunk};
use super::schema::{self, ROW_GROUP_TARGET_BYTES};
use super::small_columns::{leaf_rows, SmallColumn};
use super::{Stored, TensorRow};
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
    props: WriterPropertiesPtr,
    /// The leaf columns of `data`, `scales` and `mins` (see chunks.rs).
    own_leaves: [usize; 3],
    group: Option<RowGroup>,
    modality: String,
    bytes_taken: u64,
    row_group_bytes: usize,
    /// The key-value pairs given up front: the metadata checksum, written at the end, covers them.
    upfront: Vec<(String, String)>,
    rows: u64,
    /// CRC-32 of every byte handed out so far (the body, before the footer).
    body_crc: crc32fast::Hasher,
}

/// The row group being filled: parquet-rs's column writers for the descriptive columns (in
/// schema order), ours for the codes and params.
struct RowGroup {
    small: Vec<SmallColumn>,
    own: [OwnChunk; 3],
}

impl RowGroup {
    fn size(&self) -> usize {
        let small: usize = self.small.iter().map(|c| c.estimated_bytes()).sum();
        small + self.own.iter().map(|c| c.size()).sum::<usize>()
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
        let props = Arc::new(props);
        let schema = schema::schema();
        let file = SerializedFileWriter::new(ChunkSink::default(), schema.root_schema_ptr(), props.clone())?;
        let leaf = |name: &str| {
            (0..schema.num_columns()).find(|&i| schema.column(i).path().parts()[0] == name).expect("schema column")
        };
        let own_leaves = OWN_FIELDS.map(leaf);
        Ok(TensorWriter {
            file,
            props,
            own_leaves,
            group: None,
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
        let leaves = leaf_rows(&row, &self.modality);
        // A column chunk has one codec: a row whose codes take the other one starts a row group.
        let codec = chunks::codes_codec(&data);
        if self.group.as_ref().is_some_and(|g| g.own[0].codec() != codec) {
            self.flush()?;
        }
        if self.group.is_none() {
            let descr = self.file.schema_descr();
            let [codes, scales, mins] = self.own_leaves.map(|leaf| descr.column(leaf));
            let own = [OwnChunk::codes(codes, codec)?, OwnChunk::new(scales)?, OwnChunk::new(mins)?];
            let small = (0..descr.num_columns())
                .filter(|leaf| !self.own_leaves.contains(leaf))
                .map(|leaf| SmallColumn::new(descr.column(leaf), self.props.clone()))
                .collect();
            self.group = Some(RowGroup { small, own });
        }
        let group = self.group.as_mut().expect("a row group is open");
        debug_assert_eq!(group.small.len(), leaves.len());
        for (column, leaf) in group.small.iter_mut().zip(&leaves) {
            column.write(leaf)?;
        }
        let (scales, mins) = match &row.stored {
            Stored::Quantized { scales, mins, .. } => (Some(scales.as_slice()), Some(mins.as_slice())),
            _ => (None, None),
        };
        let [codes, scale_chunk, min_chunk] = &mut group.own;
        codes.push_bytes(data, &row.name)?;
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
        let Some(RowGroup { small, own }) = self.group.take() else { return Ok(()) };
        let mut own = own.map(Some);
        let mut small = small.into_iter();
        let leaves = self.file.schema_descr().num_columns();
        let mut rg = self.file.next_row_group()?;
        for leaf in 0..leaves {
            let (pieces, close) = match self.own_leaves.iter().position(|&l| l == leaf) {
                Some(k) => own[k].take().expect("each own chunk once").close()?,
                None => small.next().expect("a descriptive column per leaf").close()?,
            };
            rg.append_column(&pieces, close)?;
        }
        rg.close()?;
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
}
