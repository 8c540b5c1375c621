//! The column chunks the writer encodes itself: a tensor's codes (`data`) and its group params
//! (`scales`, `mins`) — the bulk of every file. parquet-rs's column writer takes a FLOAT16 value as
//! one `FixedLenByteArray` object (millions per large tensor) and copies the codes into a page
//! buffer of its own before compressing them; here the params go into a page as the f16 bytes
//! they already are, and a large tensor's codes are compressed straight from the row.
//!
//! The pages are the ones docs/FORMAT.md describes for every column: DataPage v1, PLAIN values,
//! RLE/bit-packed hybrid levels, each page compressed with zstd level 1 and holding whole rows —
//! except a `data` chunk of codes that zstd would barely shrink ([`codes_codec`]), which is
//! stored uncompressed.

use std::io::{Read, Write};
use std::sync::Arc;

use bytes::Bytes;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::reader::{ChunkReader, Length};
use parquet::schema::types::ColumnDescPtr;

use super::page_encoding::{data_page_header, Levels};
use crate::error::{AqError, Result};

/// A page is closed once its values reach this size (parquet-rs's default data page size), so
/// small tensors share pages and a large one has a page of its own.
const PAGE_TARGET: usize = 1 << 20;
pub const ZSTD_LEVEL: i32 = 1;

/// How a `data` column chunk's pages are stored.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CodesCodec {
    Zstd,
    Uncompressed,
}

/// Values below this size are always compressed: they share row groups with other tensors, and
/// a codec decided per small value would split those groups for a few bytes.
const UNCOMPRESSED_MIN_VALUE: usize = 1 << 20;
/// The sample a value is judged on: this many slices of this size, evenly spaced.
const SAMPLE_SLICES: usize = 4;
const SAMPLE_SLICE_BYTES: usize = 64 << 10;

/// The codec for one `data` value (a tensor's codes): uncompressed when the value is at least
/// [`UNCOMPRESSED_MIN_VALUE`] and zstd at [`ZSTD_LEVEL`] saves less than 5 % on its sample
/// ([`SAMPLE_SLICES`] slices of [`SAMPLE_SLICE_BYTES`], evenly spaced) — packed codes of
/// weights that fill their range evenly, where compressing costs time for almost no bytes. A
/// function of the bytes alone: the size planner (pipeline/plan.rs) estimates each row with the
/// codec the writer will choose for it.
pub fn codes_codec(value: &[u8]) -> CodesCodec {
    if value.len() < UNCOMPRESSED_MIN_VALUE {
        return CodesCodec::Zstd;
    }
    let stride = value.len() / SAMPLE_SLICES;
    let (mut sampled, mut compressed) = (0usize, 0usize);
    for k in 0..SAMPLE_SLICES {
        let slice = &value[k * stride..(k * stride + SAMPLE_SLICE_BYTES).min(value.len())];
        // An in-memory compression fails only when allocation does; judge such a sample as
        // incompressible rather than fail the write over a choice of codec.
        compressed += zstd::bulk::compress(slice, ZSTD_LEVEL).map_or(slice.len(), |c| c.len());
        sampled += slice.len();
    }
    if compressed * 20 >= sampled * 19 {
        CodesCodec::Uncompressed
    } else {
        CodesCodec::Zstd
    }
}

fn zstd_err(e: std::io::Error) -> AqError {
    AqError::Parquet(format!("zstd: {e}"))
}

fn too_large(what: String) -> AqError {
    AqError::TooLarge(format!("{what}: beyond what one Parquet page can hold (2 GiB)"))
}

/// A `data` value's length as its PLAIN prefix, or `E_TOO_LARGE` naming the tensor: a value
/// must fit one page, whose sizes Parquet states as i32.
pub fn value_len(value: &[u8], tensor: &str) -> Result<i32> {
    i32::try_from(value.len()).map_err(|_| too_large(format!("tensor '{tensor}': {} bytes of codes", value.len())))
}

/// One zstd frame of `parts` concatenated (`total` bytes, stated in the frame as a one-shot
/// compression would), without concatenating them first. The frame comes out in pieces of at
/// most [`FRAME_PIECE`] bytes: no buffer of zstd's worst-case bound (more than the input) is
/// reserved, and a large tensor's page does not need one more contiguous block of its size.
fn compress_parts(parts: &[&[u8]], total: usize) -> std::io::Result<Vec<Vec<u8>>> {
    let mut encoder = zstd::stream::write::Encoder::new(Pieced::default(), ZSTD_LEVEL)?;
    encoder.include_contentsize(true)?;
    encoder.set_pledged_src_size(Some(total as u64))?;
    for part in parts {
        encoder.write_all(part)?;
    }
    let mut out = encoder.finish()?;
    if !out.last.is_empty() {
        out.pieces.push(out.last);
    }
    Ok(out.pieces)
}

/// Pieces [`compress_parts`] writes a frame into.
const FRAME_PIECE: usize = 1 << 20;

#[derive(Default)]
struct Pieced {
    pieces: Vec<Vec<u8>>,
    last: Vec<u8>,
}

impl Write for Pieced {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.last.len() == FRAME_PIECE {
            self.pieces.push(std::mem::take(&mut self.last));
        }
        if self.last.capacity() == 0 {
            self.last.reserve_exact(FRAME_PIECE);
        }
        let n = buf.len().min(FRAME_PIECE - self.last.len());
        self.last.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What a column holds, from its levels: a required top-level BYTE_ARRAY (`data`: no levels) or
/// a nullable list of required f16 (`scales`, `mins`: repetition ≤ 1, definition ≤ 2).
#[derive(Clone, Copy, PartialEq, Debug)]
enum Layout {
    Bytes,
    HalfList,
}

/// One column chunk being written: closed pages, and the page being filled.
pub struct OwnChunk {
    descr: ColumnDescPtr,
    page_target: usize,
    layout: Layout,
    codec: CodesCodec,
    pieces: Vec<Vec<u8>>,
    chunk_bytes: u64,
    uncompressed_bytes: u64,
    values_total: u64,
    rows: u64,
    page: Vec<u8>,
    page_values: u32,
    rep: Levels,
    def: Levels,
}

impl OwnChunk {
    /// A chunk of zstd pages.
    pub fn new(descr: ColumnDescPtr) -> Result<Self> {
        Self::with_page_target(descr, PAGE_TARGET, CodesCodec::Zstd)
    }

    /// A `data` chunk whose pages are stored with `codec` ([`codes_codec`] of its values).
    pub fn codes(descr: ColumnDescPtr, codec: CodesCodec) -> Result<Self> {
        Self::with_page_target(descr, PAGE_TARGET, codec)
    }

    pub fn codec(&self) -> CodesCodec {
        self.codec
    }

    fn with_page_target(descr: ColumnDescPtr, page_target: usize, codec: CodesCodec) -> Result<Self> {
        let layout = match (descr.max_rep_level(), descr.max_def_level()) {
            (0, 0) => Layout::Bytes,
            (1, 2) => Layout::HalfList,
            (r, d) => {
                return Err(AqError::Parquet(format!(
                    "column '{}' has levels ({r}, {d}), which the chunk writer does not write",
                    descr.path()
                )))
            }
        };
        Ok(OwnChunk {
            descr,
            page_target,
            layout,
            codec,
            pieces: Vec::new(),
            chunk_bytes: 0,
            uncompressed_bytes: 0,
            values_total: 0,
            rows: 0,
            page: Vec::new(),
            page_values: 0,
            rep: Levels::default(),
            def: Levels::default(),
        })
    }

    /// Bytes held: the closed pages and the open one.
    pub fn size(&self) -> usize {
        self.chunk_bytes as usize + self.page.len()
    }

    /// One row of a `data` column: the value's length, then its bytes. A value of a page's size
    /// or more gets a page of its own, compressed without being copied first, or kept as it is
    /// when stored uncompressed (the value is taken, so a tensor's codes are never held twice).
    pub fn push_bytes(&mut self, value: Vec<u8>, tensor: &str) -> Result<()> {
        debug_assert_eq!(self.layout, Layout::Bytes);
        let len = value_len(&value, tensor)?;
        let prefix = (len as u32).to_le_bytes();
        if value.len() >= self.page_target {
            self.close_page()?;
            let total = value.len() + 4;
            let stored = match self.codec {
                CodesCodec::Zstd => {
                    let mut pieces = compress_parts(&[&prefix, &value], total).map_err(zstd_err)?;
                    // The last piece is kept until the row group closes: only its bytes.
                    if let Some(last) = pieces.last_mut() {
                        last.shrink_to_fit();
                    }
                    pieces
                }
                CodesCodec::Uncompressed => vec![prefix.to_vec(), value],
            };
            self.add_page(1, total, stored, tensor)?;
        } else {
            self.page.extend_from_slice(&prefix);
            self.page.extend_from_slice(&value);
            self.page_values += 1;
        }
        self.rows += 1;
        if self.page.len() >= self.page_target {
            self.close_page()?;
        }
        Ok(())
    }

    /// One row of a `scales`/`mins` column: null, or a list of f16 bit patterns.
    pub fn push_halfs(&mut self, values: Option<&[u16]>, tensor: &str) -> Result<()> {
        debug_assert_eq!(self.layout, Layout::HalfList);
        let levels = match values {
            None => {
                self.rep.push(0, 1);
                self.def.push(0, 1);
                1
            }
            Some([]) => {
                self.rep.push(0, 1);
                self.def.push(1, 1);
                1
            }
            Some(v) => {
                let n = u32::try_from(v.len())
                    .ok()
                    .filter(|&n| n <= i32::MAX as u32 - self.page_values)
                    .ok_or_else(|| too_large(format!("tensor '{tensor}': {} group params", v.len())))?;
                self.rep.push(0, 1);
                self.rep.push(1, n - 1);
                self.def.push(2, n);
                self.page.reserve(v.len() * 2);
                self.page.extend(v.iter().flat_map(|h| h.to_le_bytes()));
                n
            }
        };
        self.page_values += levels;
        self.rows += 1;
        if self.page.len() >= self.page_target {
            self.close_page()?;
        }
        Ok(())
    }

    fn close_page(&mut self) -> Result<()> {
        if self.page_values == 0 {
            return Ok(());
        }
        let values = std::mem::take(&mut self.page);
        let body = match self.layout {
            Layout::Bytes => values,
            Layout::HalfList => {
                let mut body = Vec::with_capacity(values.len() + self.rep.encoded_bound() + self.def.encoded_bound());
                std::mem::take(&mut self.rep).encode(&mut body);
                std::mem::take(&mut self.def).encode(&mut body);
                body.extend_from_slice(&values);
                body
            }
        };
        let uncompressed = body.len();
        let stored = match self.codec {
            CodesCodec::Zstd => vec![zstd::bulk::compress(&body, ZSTD_LEVEL).map_err(zstd_err)?],
            CodesCodec::Uncompressed => vec![body],
        };
        let n = std::mem::take(&mut self.page_values);
        self.add_page(n, uncompressed, stored, self.descr.path().string().as_str())
    }

    /// One page: its header, then its stored bytes (`compressed`, in pieces).
    fn add_page(&mut self, num_values: u32, uncompressed: usize, compressed: Vec<Vec<u8>>, what: &str) -> Result<()> {
        let size = |n: usize| i32::try_from(n).map_err(|_| too_large(format!("a page of {what} of {n} bytes")));
        let stored: usize = compressed.iter().map(Vec::len).sum();
        let header = data_page_header(num_values as i32, size(uncompressed)?, size(stored)?);
        self.chunk_bytes += (header.len() + stored) as u64;
        self.uncompressed_bytes += (header.len() + uncompressed) as u64;
        self.values_total += u64::from(num_values);
        self.pieces.push(header);
        self.pieces.extend(compressed);
        Ok(())
    }

    /// The chunk's bytes and what the row group writer needs to splice them in.
    pub fn close(mut self) -> Result<(Pieces, ColumnCloseResult)> {
        self.close_page()?;
        let encodings = match self.layout {
            Layout::Bytes => vec![Encoding::PLAIN],
            Layout::HalfList => vec![Encoding::PLAIN, Encoding::RLE],
        };
        let codec = match self.codec {
            CodesCodec::Zstd => Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL)?),
            CodesCodec::Uncompressed => Compression::UNCOMPRESSED,
        };
        let metadata = ColumnChunkMetaData::builder(self.descr.clone())
            .set_compression_codec(codec.into())
            .set_encodings(encodings)
            .set_total_compressed_size(self.chunk_bytes as i64)
            .set_total_uncompressed_size(self.uncompressed_bytes as i64)
            .set_num_values(self.values_total as i64)
            .set_data_page_offset(0)
            .build()?;
        let close = ColumnCloseResult {
            bytes_written: self.chunk_bytes,
            rows_written: self.rows,
            metadata,
            bloom_filter: None,
            column_index: None,
            offset_index: None,
        };
        Ok((Pieces::new(self.pieces), close))
    }
}

/// A column chunk's pages as written, read back once, in order, by the row group writer.
pub struct Pieces(Arc<Vec<Vec<u8>>>);

impl Pieces {
    pub fn new(pieces: Vec<Vec<u8>>) -> Self {
        Pieces(Arc::new(pieces))
    }
}

impl Length for Pieces {
    fn len(&self) -> u64 {
        self.0.iter().map(|p| p.len() as u64).sum()
    }
}

impl ChunkReader for Pieces {
    type T = PiecesReader;

    fn get_read(&self, start: u64) -> parquet::errors::Result<PiecesReader> {
        let mut reader = PiecesReader { pieces: self.0.clone(), piece: 0, at: 0 };
        let mut skip = start;
        while let Some(p) = reader.pieces.get(reader.piece) {
            if skip < p.len() as u64 {
                reader.at = skip as usize;
                break;
            }
            skip -= p.len() as u64;
            reader.piece += 1;
        }
        Ok(reader)
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let mut out = vec![0; length];
        self.get_read(start)?.read_exact(&mut out)?;
        Ok(out.into())
    }
}

pub struct PiecesReader {
    pieces: Arc<Vec<Vec<u8>>>,
    piece: usize,
    at: usize,
}

impl Read for PiecesReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while let Some(p) = self.pieces.get(self.piece) {
            if self.at < p.len() {
                let n = buf.len().min(p.len() - self.at);
                buf[..n].copy_from_slice(&p[self.at..self.at + n]);
                self.at += n;
                return Ok(n);
            }
            self.piece += 1;
            self.at = 0;
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Float16Type;
    use arrow_array::{Array, RecordBatch};
    use arrow_schema::{DataType, Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::arrow_writer::ArrowWriterOptions;
    use parquet::arrow::ArrowWriter;

    /// Rows of every shape (null, empty and long lists; values below and above a page), written
    /// with pages far smaller than the default so chunks span many pages, read back by
    /// parquet-rs's Arrow reader.
    #[test]
    fn chunks_read_back_through_the_arrow_reader() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("data", DataType::Binary, false),
            Field::new("scales", DataType::List(Arc::new(Field::new("item", DataType::Float16, false))), true),
        ]));
        let mut rng = 0x2545_f491_u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let rows: Vec<(Vec<u8>, Option<Vec<u16>>)> = (0..60)
            .map(|i| {
                let len = [0, 1, 3, 40, 300, 5000][i % 6] + (next() % 7) as usize;
                let data = (0..len).map(|_| next() as u8).collect();
                let halfs = match i % 5 {
                    0 => None,
                    1 => Some(Vec::new()),
                    _ => Some((0..[1, 2, 90, 700][i % 4]).map(|_| next() as u16).collect()),
                };
                (data, halfs)
            })
            .collect();
        for (page_target, codec) in
            [1, 64, 1000, PAGE_TARGET].into_iter().flat_map(|t| [(t, CodesCodec::Zstd), (t, CodesCodec::Uncompressed)])
        {
            let options = ArrowWriterOptions::new().with_skip_arrow_metadata(true);
            let (mut file, _) = ArrowWriter::try_new_with_options(Vec::new(), schema.clone(), options)
                .unwrap()
                .into_serialized_writer()
                .unwrap();
            for group in rows.chunks(25) {
                let mut data = OwnChunk::with_page_target(file.schema_descr().column(0), page_target, codec).unwrap();
                let mut scales =
                    OwnChunk::with_page_target(file.schema_descr().column(1), page_target, CodesCodec::Zstd).unwrap();
                for (d, s) in group {
                    data.push_bytes(d.clone(), "t").unwrap();
                    scales.push_halfs(s.as_deref(), "t").unwrap();
                }
                let mut rg = file.next_row_group().unwrap();
                for chunk in [data, scales] {
                    let (pieces, close) = chunk.close().unwrap();
                    rg.append_column(&pieces, close).unwrap();
                }
                rg.close().unwrap();
            }
            let bytes = file.into_inner().unwrap();
            let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes)).unwrap().build().unwrap();
            let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
            let mut got = Vec::new();
            for b in &batches {
                let data = b.column(0).as_binary::<i32>();
                let scales = b.column(1).as_list::<i32>();
                for i in 0..b.num_rows() {
                    let s = (!scales.is_null(i)).then(|| {
                        let v = scales.value(i);
                        v.as_primitive::<Float16Type>().values().iter().map(|h| h.to_bits()).collect::<Vec<u16>>()
                    });
                    got.push((data.value(i).to_vec(), s));
                }
            }
            assert_eq!(got, rows, "page target {page_target}, {codec:?}");
        }
    }

    #[test]
    fn codes_zstd_barely_shrinks_are_stored_uncompressed() {
        let mut rng = 0x9e37_79b9_u64;
        let random: Vec<u8> = (0..3 << 20)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng as u8
            })
            .collect();
        assert_eq!(codes_codec(&random), CodesCodec::Uncompressed);
        // Below the size the choice is made at, and codes that compress: zstd.
        assert_eq!(codes_codec(&random[..UNCOMPRESSED_MIN_VALUE - 1]), CodesCodec::Zstd);
        let peaked: Vec<u8> = random.iter().map(|&b| if b < 200 { 0x77 } else { b }).collect();
        assert_eq!(codes_codec(&peaked), CodesCodec::Zstd);
    }
}
