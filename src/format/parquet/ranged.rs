//! An arrowquant Parquet file read by byte range: the footer from the file's last bytes, then the
//! body in segments of whole row groups, each checked (pages, rows) as it arrives, so a file of
//! any size is read with memory for its largest row group. The body checksum (2.3) is taken over
//! the segments in order and compared at the end. Reading a file held whole goes the same way
//! (`QuantizedFile::open`).

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::ReaderProperties;
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::serialized_reader::SerializedRowGroupReader;

use super::pages::{self, DecodeBudget};
use super::reader::QuantizedFile;
use super::row_groups::{check_chunk_ranges, check_row, perr, read_row_group, Leaves};
use super::schema::*;
use super::TensorRow;
use crate::error::Result;

/// A run of the body: the bytes from `start` to `end`, holding row groups `row_groups` whole.
/// Segments cover the body from byte 0 without gaps.
#[derive(Debug, Clone)]
pub struct Segment {
    pub start: u64,
    pub end: u64,
    pub row_groups: Range<usize>,
}

/// A file's footer read and checked: its metadata (as a [`QuantizedFile`] without rows), and
/// the segments its body is read in.
pub struct FileIndex {
    meta: ParquetMetaData,
    leaves: Leaves,
    /// The file's metadata, with no rows.
    pub header: QuantizedFile,
    pub segments: Vec<Segment>,
    /// `arrowquant.body_bytes` and `arrowquant.body_crc32` (2.3 on).
    body: Option<(u64, u32)>,
    tensor_count: Option<usize>,
}

/// How many last bytes of a file of `file_len` bytes its footer needs, from at least its last 8
/// (`tail`); `E_PARQUET` when they are not a Parquet footer or it claims more than the file.
pub fn tail_needs(tail: &[u8], file_len: u64) -> Result<u64> {
    if file_len < 12 || tail.len() < 8 || &tail[tail.len() - 4..] != b"PAR1" {
        return Err(perr(format!(
            "not a Parquet file ({file_len} bytes; a Parquet file starts and ends with 'PAR1'; truncated?)"
        )));
    }
    // Checked here, not by parquet-rs: on wasm32 a length near 2^32 overflows its 32-bit
    // arithmetic or asks for a 4 GiB buffer, and either aborts.
    let footer_len = u32::from_le_bytes(tail[tail.len() - 8..tail.len() - 4].try_into().expect("4 bytes"));
    if footer_len as u64 + 12 > file_len {
        return Err(perr(format!(
            "the footer says its metadata is {footer_len} bytes long, but the file has only {file_len} bytes (damaged or truncated)"
        )));
    }
    Ok(footer_len as u64 + 8)
}

/// The minor version of `arrowquant.format_version` (`2.3` → 3), compared as a number.
fn version_minor(kv: &BTreeMap<String, String>) -> Option<u32> {
    kv.get(KEY_FORMAT_VERSION)?.split('.').nth(1)?.parse().ok()
}

impl FileIndex {
    /// The index of a file of `file_len` bytes from its last bytes `tail` (at least
    /// [`tail_needs`] of them): the footer is walked before parquet-rs decodes it, the arrowquant
    /// keys and their checksum are checked, and every column chunk is inside the file.
    pub fn open(tail: &[u8], file_len: u64) -> Result<Self> {
        let needs = tail_needs(tail, file_len)?;
        if (tail.len() as u64) < needs {
            return Err(perr(format!("the footer needs the last {needs} bytes; {} were given", tail.len())));
        }
        let footer_len = (needs - 8) as usize;
        pages::check_footer(tail, footer_len)?;
        let footer = &tail[tail.len() - 8 - footer_len..tail.len() - 8];
        let meta = ParquetMetaDataReader::decode_metadata(footer)?;
        let kv: BTreeMap<String, String> = meta
            .file_metadata()
            .key_value_metadata()
            .map(|kvs| kvs.iter().filter_map(|kv| kv.value.clone().map(|v| (kv.key.clone(), v))).collect())
            .unwrap_or_default();
        match kv.get(KEY_FORMAT) {
            Some(f) if f == FORMAT_NAME => {}
            Some(f) => {
                return Err(perr(format!("not an arrowquant file: {KEY_FORMAT} = '{f}', expected '{FORMAT_NAME}'")))
            }
            None => return Err(perr(format!("not an arrowquant file: metadata key '{KEY_FORMAT}' is missing"))),
        }
        match kv.get(KEY_METADATA_CRC) {
            Some(v)
                if v.parse::<u32>().ok() == Some(metadata_crc(kv.iter().map(|(k, v)| (k.as_str(), v.as_str())))) => {}
            Some(_) => {
                return Err(perr("the arrowquant.* metadata does not match arrowquant.metadata_crc32 (damaged file)"))
            }
            // Before 2.2 the metadata had no checksum.
            None if version_minor(&kv).is_some_and(|m| m >= 2) => {
                return Err(perr(format!("metadata key '{KEY_METADATA_CRC}' is missing")))
            }
            None => {}
        }
        let format_version = kv.get(KEY_FORMAT_VERSION).cloned().unwrap_or_default();
        let major = format_version.split('.').next().and_then(|m| m.parse::<u32>().ok());
        let minor = version_minor(&kv).unwrap_or(0);
        if major != Some(FORMAT_MAJOR) {
            return Err(perr(format!(
                "format version '{format_version}' is not supported; this reader reads {FORMAT_MAJOR}.x"
            )));
        }
        let source_metadata = match kv.get(KEY_SOURCE_METADATA) {
            Some(s) => serde_json::from_str(s)
                .map_err(|e| perr(format!("{KEY_SOURCE_METADATA} is not a JSON string map: {e}")))?,
            None => BTreeMap::new(),
        };
        let number = |key: &str| kv.get(key).and_then(|v| v.parse::<u64>().ok());
        let body = if minor >= 3 {
            match (number(KEY_BODY_BYTES), number(KEY_BODY_CRC)) {
                (Some(len), Some(crc)) if len <= file_len - needs && crc <= u32::MAX as u64 => Some((len, crc as u32)),
                _ => {
                    return Err(perr(format!(
                        "metadata keys '{KEY_BODY_BYTES}' and '{KEY_BODY_CRC}' are missing or do not fit the file"
                    )))
                }
            }
        } else {
            None
        };
        check_chunk_ranges(&meta, file_len)?;
        let leaves = Leaves::find(meta.file_metadata().schema_descr())?;
        let body_end = body.map_or(file_len - needs, |(len, _)| len);
        let segments = segments(&meta, body_end)?;
        let tensor_count =
            if minor >= 3 { Some(number(KEY_TENSOR_COUNT).map_or(usize::MAX, |n| n as usize)) } else { None };
        let header = QuantizedFile {
            format_version,
            library_version: kv.get(KEY_LIBRARY_VERSION).cloned().unwrap_or_default(),
            config_json: kv.get(KEY_CONFIG).cloned().unwrap_or_default(),
            modality: kv.get(KEY_MODALITY).cloned().unwrap_or_else(|| "unknown".to_string()),
            source_metadata,
            calibration_json: kv.get(KEY_CALIBRATION).cloned(),
            rows: Vec::new(),
        };
        Ok(FileIndex { meta, leaves, header, segments, body, tensor_count })
    }

    /// The rows of segment `i` from its bytes: every page of its row groups checked (within
    /// `budget`), then each row against the format's invariants.
    pub fn rows_in(&self, i: usize, bytes: Bytes, budget: &mut DecodeBudget) -> Result<Vec<TensorRow>> {
        let seg = &self.segments[i];
        if bytes.len() as u64 != seg.end - seg.start {
            return Err(perr(format!(
                "segment {i} is bytes {}..{} ({} bytes); {} were given",
                seg.start,
                seg.end,
                seg.end - seg.start,
                bytes.len()
            )));
        }
        for g in seg.row_groups.clone() {
            pages::check_row_group_pages(g, self.meta.row_group(g), seg.start, &bytes, budget)?;
        }
        let window = Arc::new(Window { base: seg.start, bytes });
        let props = Arc::new(ReaderProperties::builder().build());
        let mut rows = Vec::new();
        for g in seg.row_groups.clone() {
            let reader = SerializedRowGroupReader::new(
                window.clone(),
                self.meta.row_group(g),
                self.meta.page_index_for_row_group(g),
                props.clone(),
            )?;
            read_row_group(&reader, &self.leaves, &mut rows)?;
        }
        for row in &rows {
            check_row(row)?;
        }
        Ok(rows)
    }

    /// The body checksum over the segments, fed in order.
    pub fn body_check(&self) -> BodyCheck {
        BodyCheck { expected: self.body, crc: crc32fast::Hasher::new(), at: 0 }
    }

    /// With every segment read: the file holds as many tensors as its metadata says (2.3 on).
    pub fn check_tensor_count(&self, rows: usize) -> Result<()> {
        match self.tensor_count {
            Some(said) if said != rows => Err(perr(format!(
                "the file holds {rows} tensors but its metadata says {} (damaged: row groups lost?)",
                if said == usize::MAX { "nothing".to_string() } else { said.to_string() }
            ))),
            _ => Ok(()),
        }
    }
}

/// The body in segments: each ends where its last row group ends (the last one at the body's
/// end), row groups in file order and inside the body.
fn segments(meta: &ParquetMetaData, body_end: u64) -> Result<Vec<Segment>> {
    let mut out: Vec<Segment> = Vec::new();
    let mut at = 0u64;
    for (g, rg) in meta.row_groups().iter().enumerate() {
        // check_chunk_ranges has put every chunk inside the file.
        let range = |c: &parquet::file::metadata::ColumnChunkMetaData| {
            let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset()) as u64;
            (start, start + c.compressed_size() as u64)
        };
        let start = rg.columns().iter().map(|c| range(c).0).min().unwrap_or(at);
        let end = rg.columns().iter().map(|c| range(c).1).max().unwrap_or(at);
        if start < at || end > body_end {
            return Err(perr(format!(
                "row group {g} (bytes {start}..{end}) overlaps the one before it or lies outside the body (damaged file)"
            )));
        }
        out.push(Segment { start: at, end, row_groups: g..g + 1 });
        at = end;
    }
    match out.last_mut() {
        Some(last) => last.end = body_end,
        None => out.push(Segment { start: 0, end: body_end, row_groups: 0..0 }),
    }
    Ok(out)
}

/// The body checksum (2.3), over segments handed in order.
pub struct BodyCheck {
    expected: Option<(u64, u32)>,
    crc: crc32fast::Hasher,
    at: u64,
}

impl BodyCheck {
    /// Add segment `seg`'s bytes (the segments in order, each once).
    pub fn update(&mut self, seg: &Segment, bytes: &[u8]) -> Result<()> {
        if seg.start != self.at {
            return Err(perr(format!("segments read out of order: bytes {} expected, {} given", self.at, seg.start)));
        }
        if self.at == 0 && bytes.get(..4) != Some(b"PAR1") {
            return Err(perr("not a Parquet file (it does not start with 'PAR1')"));
        }
        self.crc.update(bytes);
        self.at += bytes.len() as u64;
        Ok(())
    }

    /// Whether the body read matches `arrowquant.body_crc32`.
    pub fn finish(self) -> Result<()> {
        match self.expected {
            Some((len, crc)) if len != self.at || self.crc.finalize() != crc => {
                Err(perr("the row groups do not match arrowquant.body_crc32 (damaged file)"))
            }
            _ => Ok(()),
        }
    }
}

/// The bytes of one segment, read by parquet-rs at the file's offsets.
struct Window {
    base: u64,
    bytes: Bytes,
}

impl Window {
    fn local(&self, start: u64, len: u64) -> parquet::errors::Result<Range<usize>> {
        start
            .checked_sub(self.base)
            .filter(|&s| s.checked_add(len).is_some_and(|e| e <= self.bytes.len() as u64))
            .map(|s| s as usize..(s + len) as usize)
            .ok_or_else(|| {
                parquet::errors::ParquetError::General(format!("bytes {start}..+{len} are not in the segment read"))
            })
    }
}

impl Length for Window {
    fn len(&self) -> u64 {
        self.base + self.bytes.len() as u64
    }
}

impl ChunkReader for Window {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        use bytes::Buf;
        let r = self.local(start, 0)?;
        Ok(self.bytes.slice(r.start..).reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        Ok(self.bytes.slice(self.local(start, length as u64)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::run::ModelQuantizer;
    use crate::policy::config::QuantConfig;

    /// A model of 40 tensors in row groups of about 4 KiB (one or two tensors each).
    fn many_row_groups() -> Vec<u8> {
        let tensors: Vec<(String, crate::quant::dtype::Dtype, Vec<u64>)> = (0..40)
            .map(|i| (format!("l{i}.weight"), crate::quant::dtype::Dtype::F32, vec![32, 64 + 32 * (i % 3)]))
            .collect();
        let mut st = crate::format::safetensors::write_header(&tensors, &Default::default());
        let mut k = 0u32;
        for (_, _, shape) in &tensors {
            for _ in 0..shape[0] * shape[1] {
                k = k.wrapping_mul(1664525).wrapping_add(1013904223);
                st.extend_from_slice(&((k >> 8) as f32 / 16_777_216.0 - 0.5).to_le_bytes());
            }
        }
        let mut q = ModelQuantizer::new(QuantConfig::base_mode()).unwrap();
        q.set_row_group_bytes(4096);
        q.begin(&st, Some(st.len() as u64)).unwrap();
        let data_start = st.len() - tensors.iter().map(|(_, _, s)| (s[0] * s[1] * 4) as usize).sum::<usize>();
        q.add_range(data_start as u64, &st[data_start..]).unwrap();
        q.finish().unwrap().0
    }

    #[test]
    fn segments_read_in_turn_give_the_whole_file_rows_and_check_the_body() {
        let file = many_row_groups();
        let whole = QuantizedFile::open(file.clone()).unwrap();
        let len = file.len() as u64;
        let tail = &file[file.len() - tail_needs(&file[file.len() - 8..], len).unwrap() as usize..];
        let index = FileIndex::open(tail, len).unwrap();
        assert!(index.segments.len() > 10, "{} segments", index.segments.len());
        let bytes = Bytes::from(file.clone());
        let mut body = index.body_check();
        let mut rows = Vec::new();
        for (i, seg) in index.segments.iter().enumerate() {
            let part = bytes.slice(seg.start as usize..seg.end as usize);
            body.update(seg, &part).unwrap();
            rows.extend(index.rows_in(i, part.clone(), &mut DecodeBudget::for_input(part.len() as u64)).unwrap());
        }
        body.finish().unwrap();
        index.check_tensor_count(rows.len()).unwrap();
        assert_eq!(rows, whole.rows);
        // A segment's bytes from elsewhere, a segment skipped, a flipped body byte: refused.
        let other = bytes.slice(index.segments[1].start as usize..index.segments[1].end as usize);
        assert!(index.rows_in(2, other.clone(), &mut DecodeBudget::for_input(1 << 20)).is_err());
        let mut skipping = index.body_check();
        let first = &index.segments[0];
        skipping.update(first, &bytes[..first.end as usize]).unwrap();
        assert!(skipping.update(&index.segments[2], &[]).is_err());
        let mut flipped = index.body_check();
        for seg in &index.segments {
            let mut part = bytes[seg.start as usize..seg.end as usize].to_vec();
            if seg.start > 0 {
                part[0] ^= 1;
            }
            flipped.update(seg, &part).unwrap();
        }
        assert_eq!(flipped.finish().unwrap_err().code(), "E_PARQUET");
    }
}
