//! The footer and every page header are walked (thrift.rs) and their declared sizes checked
//! against the bytes that are there before parquet-rs reads them: it allocates a page's declared
//! decompressed size up front, and an allocation wasm32 cannot satisfy aborts the instance.

use parquet::basic::Compression;
use parquet::file::metadata::RowGroupMetaData;

use super::thrift::walk_struct;
use crate::error::{AqError, Result};

/// Largest expansion of a zstd page: a block decodes to at most 128 KiB and takes at least 4
/// bytes (a 3-byte header and one RLE byte). A page declaring more cannot be honest.
const MAX_ZSTD_RATIO: u64 = 32768;

/// The input and every page decompressed must fit beside each other in what the build can
/// address; on wasm32 (4 GiB at most) a file beyond this could not be opened whole anyway.
const MAX_DECODED_BYTES: u64 = if cfg!(target_pointer_width = "32") { 3 << 30 } else { 1 << 42 };

/// And in proportion to the file: our files decode to about their own size (zstd saves a few
/// percent on packed codes), so pages that claim more than this multiple of the input (plus a
/// floor for small files) are a decompression bomb, refused before anything is allocated.
const MAX_EXPANSION: u64 = 256;
const EXPANSION_FLOOR: u64 = 64 << 20;

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

const DATA_PAGE: i64 = 0;
const INDEX_PAGE: i64 = 1;
const DICTIONARY_PAGE: i64 = 2;
const DATA_PAGE_V2: i64 = 3;

/// The dictionary encodings (PLAIN_DICTIONARY, RLE_DICTIONARY): their pages index a dictionary.
const DICTIONARY_ENCODINGS: [i64; 2] = [2, 8];

fn perr(msg: impl Into<String>) -> AqError {
    AqError::Parquet(msg.into())
}

/// The footer (FileMetaData, `footer_len` bytes before the last 8) is a well-formed struct whose
/// every declared size fits in it.
pub fn check_footer(bytes: &[u8], footer_len: usize) -> Result<()> {
    let end = bytes.len() - 8;
    let footer = &bytes[end - footer_len..end];
    walk_struct(footer).map_err(|e| perr(format!("the footer metadata is damaged: {e}")))?;
    Ok(())
}

/// What a reader may decompress: the bytes it holds plus every page's decoded size, within
/// `MAX_DECODED_BYTES` and [`MAX_EXPANSION`] times the input (plus a floor).
pub struct DecodeBudget {
    input: u64,
    total: u64,
    limit: u64,
}

impl DecodeBudget {
    /// For pages read from `input` bytes (a whole file, or the part of one held at a time).
    pub fn for_input(input: u64) -> Self {
        let limit = MAX_DECODED_BYTES.min(input.saturating_mul(MAX_EXPANSION).saturating_add(EXPANSION_FLOOR));
        DecodeBudget { input, total: input, limit }
    }

    fn spend(&mut self, decoded: u64) -> Result<()> {
        self.total = self.total.saturating_add(decoded);
        if self.total > self.limit {
            return Err(perr(format!(
                "the pages claim more than {} bytes once decompressed, from a {}-byte file \
                 (at most {MAX_EXPANSION}x the file + 64 MiB, and {} GiB in all): a decompression bomb, or damage",
                self.limit,
                self.input,
                MAX_DECODED_BYTES >> 30
            )));
        }
        Ok(())
    }
}

/// Every page of row group `g` (`rg`), whose column chunks lie in `bytes`, the file's bytes from
/// offset `base` on: a well-formed header, a body inside the chunk, a declared decompressed size
/// the codec can produce from that body, and all of them within `budget`.
pub fn check_row_group_pages(
    g: usize,
    rg: &RowGroupMetaData,
    base: u64,
    bytes: &[u8],
    budget: &mut DecodeBudget,
) -> Result<()> {
    for col in rg.columns() {
        let name = col.column_path().string();
        let bad = |what: String| perr(format!("column '{name}' of row group {g}: {what} (damaged file)"));
        let codec = col.compression();
        if !matches!(codec, Compression::UNCOMPRESSED | Compression::ZSTD(_)) {
            return Err(perr(format!(
                "column '{name}' is compressed with {codec}; this reader reads ZSTD and uncompressed pages"
            )));
        }
        // check_chunk_ranges has put the chunk inside the file; the caller, inside `bytes`.
        let start = col.dictionary_page_offset().unwrap_or(col.data_page_offset()) as u64;
        let chunk = start
            .checked_sub(base)
            .and_then(|s| bytes.get(s as usize..)?.get(..col.compressed_size() as usize))
            .ok_or_else(|| bad("the column chunk lies outside the bytes read for its row group".into()))?;
        let start = start as usize;
        let mut at = 0usize;
        let mut dictionary = false;
        while at < chunk.len() {
            let header =
                walk_struct(&chunk[at..]).map_err(|e| bad(format!("a page header at byte {}: {e}", start + at)))?;
            let field = |path: &[i16], what: &str| {
                header
                    .int(path)
                    .filter(|v| (0..=i64::from(i32::MAX)).contains(v))
                    .ok_or_else(|| bad(format!("the page at byte {} has no valid {what}", start + at)))
            };
            let kind = field(&[1], "page type")?;
            let decoded = field(&[2], "uncompressed size")? as u64;
            let stored = field(&[3], "compressed size")? as usize;
            let body_start = at + header.len;
            let body = chunk
                .get(body_start..)
                .and_then(|rest| rest.get(..stored))
                .ok_or_else(|| bad(format!("the page at byte {} runs past its column chunk", start + at)))?;
            // Levels of a v2 page are stored uncompressed in front of the values.
            let (levels, compressed) = if kind == DATA_PAGE_V2 {
                let levels = field(&[8, 5], "definition levels length")? as u64
                    + field(&[8, 6], "repetition levels length")? as u64;
                (levels, header.int(&[8, 7]) != Some(0))
            } else if matches!(kind, DATA_PAGE | INDEX_PAGE | DICTIONARY_PAGE) {
                (0, true)
            } else {
                return Err(bad(format!("the page at byte {} has unknown type {kind}", start + at)));
            };
            if levels > body.len() as u64 || levels > decoded {
                return Err(bad(format!("the page at byte {} has levels longer than the page", start + at)));
            }
            // parquet-rs panics on dictionary-encoded values without a dictionary before them.
            let encoding = match kind {
                DATA_PAGE => header.int(&[5, 2]),
                DATA_PAGE_V2 => header.int(&[8, 4]),
                _ => None,
            };
            if kind == DICTIONARY_PAGE {
                if dictionary {
                    return Err(bad(format!("a second dictionary page at byte {}", start + at)));
                }
                dictionary = true;
            } else if encoding.is_some_and(|e| DICTIONARY_ENCODINGS.contains(&e)) && !dictionary {
                return Err(bad(format!(
                    "the page at byte {} indexes a dictionary, but no dictionary page comes before it",
                    start + at
                )));
            }
            let values = &body[levels as usize..];
            let values_decoded = decoded - levels;
            match codec {
                Compression::ZSTD(_) if compressed => check_zstd(values, values_decoded)
                    .map_err(|e| bad(format!("the page at byte {}: {e}", start + at)))?,
                _ if values_decoded != values.len() as u64 => {
                    return Err(bad(format!(
                        "the uncompressed page at byte {} says it holds {values_decoded} bytes but stores {}",
                        start + at,
                        values.len()
                    )))
                }
                _ => {}
            }
            budget.spend(decoded)?;
            at = body_start + stored;
        }
    }
    Ok(())
}

/// A zstd page decodes to `decoded` bytes: no more than zstd can expand its bytes to, and exactly
/// the frame's own content size when the frame states one.
fn check_zstd(values: &[u8], decoded: u64) -> std::result::Result<(), String> {
    if decoded == 0 && values.is_empty() {
        return Ok(());
    }
    if values.get(..4) != Some(&ZSTD_MAGIC[..]) {
        return Err("its values are not a zstd frame".into());
    }
    if decoded > (values.len() as u64).saturating_mul(MAX_ZSTD_RATIO) {
        return Err(format!("{} compressed bytes cannot decompress to the {decoded} bytes it declares", values.len()));
    }
    if let Some(content) = zstd_content_size(values) {
        if content != decoded {
            return Err(format!("its zstd frame holds {content} bytes but the page declares {decoded}"));
        }
    }
    Ok(())
}

/// The Frame_Content_Size of the zstd frame at the start of `frame` (RFC 8878 §3.1.1.1), when
/// the frame header states it.
fn zstd_content_size(frame: &[u8]) -> Option<u64> {
    let descriptor = *frame.get(4)?;
    let fcs_flag = descriptor >> 6;
    let single_segment = descriptor & 0x20 != 0;
    let dictionary_id_len = [0usize, 1, 2, 4][(descriptor & 3) as usize];
    let fcs_len = match (fcs_flag, single_segment) {
        (0, false) => return None,
        (0, true) => 1,
        (1, _) => 2,
        (2, _) => 4,
        _ => 8,
    };
    let at = 5 + usize::from(!single_segment) + dictionary_id_len;
    let field = frame.get(at..at + fcs_len)?;
    let mut le = [0u8; 8];
    le[..fcs_len].copy_from_slice(field);
    let value = u64::from_le_bytes(le);
    Some(if fcs_len == 2 { value + 256 } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_that_decode_beyond_the_limit_are_refused() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let mut st = crate::format::safetensors::write_header(
            &[("w".to_string(), crate::quant::dtype::Dtype::F32, vec![64, 64])],
            &Default::default(),
        );
        st.extend(std::iter::repeat_n(0u8, 64 * 64 * 4));
        let cfg = crate::policy::config::QuantConfig::base_mode();
        let (file, _) =
            crate::pipeline::quantize_model(&st, cfg, None, crate::pipeline::default_clock, &mut |_| true).unwrap();
        let reader = SerializedFileReader::new(bytes::Bytes::from(file.clone())).unwrap();
        let check = |limit: u64| {
            let mut budget = DecodeBudget { input: file.len() as u64, total: file.len() as u64, limit };
            reader
                .metadata()
                .row_groups()
                .iter()
                .enumerate()
                .try_for_each(|(g, rg)| check_row_group_pages(g, rg, 0, &file, &mut budget))
        };
        check(1 << 30).unwrap();
        let e = check(file.len() as u64 + 16).unwrap_err();
        assert!(e.to_string().contains("decompression bomb"), "{e}");
    }

    #[test]
    fn zstd_content_size_matches_the_encoder() {
        for n in [0usize, 1, 255, 256, 300, 65_791, 70_000, 5_000_000] {
            let data = vec![7u8; n];
            let frame = zstd::bulk::compress(&data, 1).unwrap();
            assert_eq!(zstd_content_size(&frame), Some(n as u64), "{n}");
            check_zstd(&frame, n as u64).unwrap();
            assert!(check_zstd(&frame, n as u64 + 1).is_err());
        }
        assert!(check_zstd(&[1, 2, 3, 4, 5], 5).unwrap_err().contains("not a zstd frame"));
        let frame = zstd::bulk::compress(&[0u8; 10], 1).unwrap();
        assert!(check_zstd(&frame, 1 << 40).unwrap_err().contains("cannot decompress"));
    }
}
