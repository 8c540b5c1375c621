//! The columns that describe a row — name, shape, dtype, widths, checksums, metrics, reason,
//! time groups, spatial metadata: a few values per tensor, written with parquet-rs's column
//! writers into pages held in memory until the row group closes. chunks.rs writes the bulk
//! columns (`data`, `scales`, `mins`) itself.

use std::sync::{Arc, Mutex, MutexGuard};

use parquet::basic::Encoding;
use parquet::column::page::{CompressedPage, Page, PageWriteSpec, PageWriter};
use parquet::column::writer::{get_column_writer, ColumnCloseResult, ColumnWriter};
use parquet::data_type::ByteArray;
use parquet::errors::ParquetError;
use parquet::file::metadata::OffsetIndexBuilder;
use parquet::file::page_index::offset_index::OffsetIndexMetaData;
use parquet::file::properties::WriterPropertiesPtr;
use parquet::schema::types::ColumnDescPtr;

use super::chunks::Pieces;
use super::page_encoding::data_page_header;
use super::{Metrics, TensorRow};
use crate::diffusion::timegroups::TimeGroup;
use crate::error::{AqError, Result};

/// One leaf column's values in a row, with its levels where the column has them.
pub struct LeafRow {
    values: Values,
    def: Vec<i16>,
    rep: Vec<i16>,
}

enum Values {
    Bool(Vec<bool>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bytes(Vec<ByteArray>),
}

impl Values {
    /// Bits the values add to a page's PLAIN encoding: what parquet-rs's encoder reports as its
    /// buffered size (booleans packed; byte arrays with their 4-byte lengths).
    fn plain_bits(&self) -> u64 {
        let n = |len: usize, bits: u64| len as u64 * bits;
        match self {
            Values::Bool(v) => n(v.len(), 1),
            Values::I32(v) => n(v.len(), 32),
            Values::F32(v) => n(v.len(), 32),
            Values::I64(v) => n(v.len(), 64),
            Values::F64(v) => n(v.len(), 64),
            Values::Bytes(v) => v.iter().map(|b| (4 + b.len() as u64) * 8).sum(),
        }
    }
}

/// A physical value type of the schema's columns.
trait Plain: Sized {
    fn values(v: Vec<Self>) -> Values;
}

macro_rules! plain {
    ($t:ty, $variant:ident) => {
        impl Plain for $t {
            fn values(v: Vec<Self>) -> Values {
                Values::$variant(v)
            }
        }
    };
}
plain!(bool, Bool);
plain!(i32, I32);
plain!(i64, I64);
plain!(f32, F32);
plain!(f64, F64);
plain!(ByteArray, Bytes);

/// A required top-level value.
fn required<T: Plain>(v: T) -> LeafRow {
    LeafRow { values: T::values(vec![v]), def: Vec::new(), rep: Vec::new() }
}

/// A required value with one optional level above it (a nullable column, or a required field
/// of a nullable struct): definition level 1 when present, 0 when null.
fn optional<T: Plain>(v: Option<T>) -> LeafRow {
    let def = vec![i16::from(v.is_some())];
    LeafRow { values: T::values(v.into_iter().collect()), def, rep: Vec::new() }
}

/// The items of a list whose items sit at definition level `item_def`: a missing list (or a
/// missing parent) is level 0, an empty list `item_def - 1`; the first item of a row starts at
/// repetition level 0, the others repeat at 1.
fn list<T: Plain>(items: Option<Vec<T>>, item_def: i16) -> LeafRow {
    let (def, rep) = match &items {
        None => (vec![0], vec![0]),
        Some(v) if v.is_empty() => (vec![item_def - 1], vec![0]),
        Some(v) => (vec![item_def; v.len()], (0..v.len()).map(|i| i16::from(i > 0)).collect()),
    };
    LeafRow { values: T::values(items.unwrap_or_default()), def, rep }
}

fn text(s: &str) -> ByteArray {
    ByteArray::from(s.as_bytes().to_vec())
}

/// The row's values of every leaf column but `data`, `scales` and `mins`, in schema order
/// (schema.rs). Unsigned values are stored as the signed physical type's bits, as the
/// `INTEGER(n, false)` annotation says.
pub fn leaf_rows(row: &TensorRow, modality: &str) -> Vec<LeafRow> {
    let metric = |f: fn(&Metrics) -> f64| optional(row.metrics.as_ref().map(f));
    let groups = row.time_groups.as_ref();
    let group_ints = |f: fn(&TimeGroup) -> i32| list(groups.map(|g| g.iter().map(f).collect::<Vec<i32>>()), 2);
    let spatial = row.spatial.as_ref();
    vec![
        required(text(&row.name)),
        list(Some(row.shape.iter().map(|&d| d as i64).collect()), 1),
        required(text(row.dtype.name())),
        required(text(row.stored.storage().as_str())),
        optional(row.requested_bits.map(i32::from)),
        optional(row.stored.bits().map(i32::from)),
        optional(row.stored.group_size().map(|g| g as i32)),
        required(row.data_crc32 as i32),
        metric(|m| m.cosine),
        metric(|m| m.snr_db),
        metric(|m| m.rel_rmse),
        metric(|m| m.max_abs_error),
        required(text(&row.reason)),
        required(text(modality)),
        group_ints(|g| g.t_start as i32),
        group_ints(|g| g.t_end as i32),
        list(groups.map(|g| g.iter().map(|x| x.scale).collect::<Vec<f32>>()), 2),
        group_ints(|g| g.zero_point),
        optional(spatial.map(|s| s.enabled)),
        optional(spatial.map(|s| s.channel_equalization)),
        optional(spatial.map(|s| s.activation_smoothing)),
        optional(spatial.map(|s| s.alpha)),
        list(spatial.map(|s| s.scales.clone()), 2),
        optional(row.weighted_snr_db),
        optional(row.output_snr_db),
        required(row.integrity_crc() as i32),
        optional(row.stored.block_type().map(|t| text(t.name()))),
    ]
}

/// Pages a column writer has closed, kept until the chunk is spliced into its row group.
#[derive(Default)]
struct PageSink {
    pieces: Vec<Vec<u8>>,
    bytes: u64,
    pages: u64,
}

fn lock(sink: &Mutex<PageSink>) -> MutexGuard<'_, PageSink> {
    // Nothing panics while the lock is held; a poisoned lock still holds whole pages.
    sink.lock().unwrap_or_else(|e| e.into_inner())
}

struct MemPageWriter(Arc<Mutex<PageSink>>);

impl PageWriter for MemPageWriter {
    fn write_page(&mut self, page: CompressedPage) -> parquet::errors::Result<PageWriteSpec> {
        // The header is ours (page_encoding.rs), so a page must be the one form it describes.
        let plain_v1 = matches!(
            page.compressed_page(),
            Page::DataPage {
                encoding: Encoding::PLAIN,
                def_level_encoding: Encoding::RLE,
                rep_level_encoding: Encoding::RLE,
                statistics: None,
                ..
            }
        );
        if !plain_v1 {
            return Err(ParquetError::General(
                "a descriptive column made a page other than a PLAIN v1 data page".into(),
            ));
        }
        let size = |n: usize| i32::try_from(n).map_err(|_| ParquetError::General(format!("a page of {n} bytes")));
        let header = data_page_header(
            i32::try_from(page.num_values()).map_err(|_| ParquetError::General("a page of 2^31 values".into()))?,
            size(page.uncompressed_size())?,
            size(page.compressed_size())?,
        );
        let total = header.len() + page.compressed_size();
        let mut sink = lock(&self.0);
        let mut spec = PageWriteSpec::new();
        spec.page_type = page.page_type();
        spec.num_values = page.num_values();
        spec.uncompressed_size = page.uncompressed_size() + header.len();
        spec.compressed_size = total;
        spec.offset = sink.bytes;
        spec.bytes_written = total as u64;
        sink.bytes += total as u64;
        sink.pages += 1;
        sink.pieces.push(header);
        sink.pieces.push(page.data().to_vec());
        Ok(spec)
    }

    fn close(&mut self) -> parquet::errors::Result<()> {
        Ok(())
    }
}

/// One descriptive column of the open row group.
pub struct SmallColumn {
    descr: ColumnDescPtr,
    writer: ColumnWriter<'static>,
    sink: Arc<Mutex<PageSink>>,
    pages_seen: u64,
    /// PLAIN bits of the values not yet in a closed page.
    buffered_bits: u64,
    /// For BYTE_ARRAY columns: the bytes of the values not yet in a closed page, and of each
    /// closed page (the offset index's `unencoded_byte_array_data_bytes`).
    buffered_value_bytes: i64,
    page_value_bytes: Vec<i64>,
}

impl SmallColumn {
    pub fn new(descr: ColumnDescPtr, props: WriterPropertiesPtr) -> Self {
        let sink = Arc::new(Mutex::new(PageSink::default()));
        let writer = get_column_writer(descr.clone(), props, Box::new(MemPageWriter(sink.clone())));
        SmallColumn {
            descr,
            writer,
            sink,
            pages_seen: 0,
            buffered_bits: 0,
            buffered_value_bytes: 0,
            page_value_bytes: Vec::new(),
        }
    }

    pub fn write(&mut self, leaf: &LeafRow) -> Result<()> {
        let descr = &self.descr;
        let def = (descr.max_def_level() > 0).then_some(&leaf.def[..]);
        let rep = (descr.max_rep_level() > 0).then_some(&leaf.rep[..]);
        match (&mut self.writer, &leaf.values) {
            (ColumnWriter::BoolColumnWriter(w), Values::Bool(v)) => w.write_batch(v, def, rep),
            (ColumnWriter::Int32ColumnWriter(w), Values::I32(v)) => w.write_batch(v, def, rep),
            (ColumnWriter::Int64ColumnWriter(w), Values::I64(v)) => w.write_batch(v, def, rep),
            (ColumnWriter::FloatColumnWriter(w), Values::F32(v)) => w.write_batch(v, def, rep),
            (ColumnWriter::DoubleColumnWriter(w), Values::F64(v)) => w.write_batch(v, def, rep),
            (ColumnWriter::ByteArrayColumnWriter(w), Values::Bytes(v)) => w.write_batch(v, def, rep),
            _ => return Err(AqError::Parquet(format!("column '{}': values of another physical type", descr.path()))),
        }?;
        if let Values::Bytes(v) = &leaf.values {
            self.buffered_value_bytes += v.iter().map(|b| b.len() as i64).sum::<i64>();
        }
        self.buffered_bits += leaf.values.plain_bits();
        // A page closes only at the end of a row (a row is one record, written as one batch), so
        // after a new page nothing of this column is buffered.
        self.note_closed_pages();
        Ok(())
    }

    fn note_closed_pages(&mut self) {
        let pages = lock(&self.sink).pages;
        if pages != self.pages_seen {
            debug_assert_eq!(pages, self.pages_seen + 1, "one page per row at most");
            self.pages_seen = pages;
            self.buffered_bits = 0;
            self.page_value_bytes.push(std::mem::take(&mut self.buffered_value_bytes));
        }
    }

    /// The chunk's size so far as parquet-rs estimates it: closed pages and buffered values.
    pub fn estimated_bytes(&self) -> usize {
        (lock(&self.sink).bytes + self.buffered_bits.div_ceil(8)) as usize
    }

    /// The chunk's pages and what the row group writer needs to splice them in.
    pub fn close(self) -> Result<(Pieces, ColumnCloseResult)> {
        let SmallColumn { writer, sink, pages_seen, buffered_value_bytes, mut page_value_bytes, .. } = self;
        let is_byte_array = matches!(writer, ColumnWriter::ByteArrayColumnWriter(_));
        let mut close = match writer {
            ColumnWriter::BoolColumnWriter(w) => w.close(),
            ColumnWriter::Int32ColumnWriter(w) => w.close(),
            ColumnWriter::Int64ColumnWriter(w) => w.close(),
            ColumnWriter::Int96ColumnWriter(w) => w.close(),
            ColumnWriter::FloatColumnWriter(w) => w.close(),
            ColumnWriter::DoubleColumnWriter(w) => w.close(),
            ColumnWriter::ByteArrayColumnWriter(w) => w.close(),
            ColumnWriter::FixedLenByteArrayColumnWriter(w) => w.close(),
        }?;
        let mut sink = lock(&sink);
        if sink.pages != pages_seen {
            page_value_bytes.push(buffered_value_bytes);
        }
        if is_byte_array {
            close.offset_index = close
                .offset_index
                .map(|index| with_value_bytes(&index, close.rows_written, &page_value_bytes))
                .transpose()?;
        }
        Ok((Pieces::new(std::mem::take(&mut sink.pieces)), close))
    }
}

/// `index` with each page's unencoded value bytes. A BYTE_ARRAY column's offset index lists them
/// (Parquet's size statistics: what a reader allocates for a page's strings); parquet-rs's
/// column writer records them only with statistics on, which the files do not carry.
fn with_value_bytes(index: &OffsetIndexMetaData, rows: u64, page_bytes: &[i64]) -> Result<OffsetIndexMetaData> {
    let pages = index.page_locations();
    if pages.len() != page_bytes.len() {
        return Err(AqError::Parquet(format!("{} pages written, {} counted", pages.len(), page_bytes.len())));
    }
    let mut b = OffsetIndexBuilder::new();
    for (i, page) in pages.iter().enumerate() {
        let next = pages.get(i + 1).map_or(rows as i64, |p| p.first_row_index);
        b.append_offset_and_size(page.offset, page.compressed_page_size);
        b.append_row_count(next - page.first_row_index);
        b.append_unencoded_byte_array_data_bytes(Some(page_bytes[i]));
    }
    Ok(b.build())
}
