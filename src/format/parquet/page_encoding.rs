//! The byte-level encodings of the pages the writer makes itself (chunks.rs): the RLE form of
//! repetition and definition levels, and the Thrift compact `PageHeader` of a v1 data page.

/// Thrift enum values (parquet.thrift).
const PAGE_TYPE_DATA_PAGE: i32 = 0;
const ENCODING_PLAIN: i32 = 0;
const ENCODING_RLE: i32 = 3;

/// Levels of one page as runs of equal values; adjacent runs of the same value merge.
#[derive(Default)]
pub struct Levels {
    runs: Vec<(u8, u32)>,
}

impl Levels {
    pub fn push(&mut self, value: u8, count: u32) {
        match self.runs.last_mut() {
            _ if count == 0 => {}
            Some((v, c)) if *v == value => *c += count,
            _ => self.runs.push((value, count)),
        }
    }

    /// An upper bound of the encoded length.
    pub fn encoded_bound(&self) -> usize {
        4 + 6 * self.runs.len()
    }

    /// The v1 page form: a 4-byte little-endian length, then RLE runs (a ULEB128 header of
    /// `count << 1` and the value in one byte: every level width here is at most 8 bits).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        for &(value, count) in &self.runs {
            uleb128(u64::from(count) << 1, out);
            out.push(value);
        }
        let len = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    }
}

fn uleb128(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Thrift compact protocol: an i32 field `id` after field `last`.
fn thrift_i32(out: &mut Vec<u8>, last: &mut i16, id: i16, value: i32) {
    out.push((((id - *last) as u8) << 4) | 5);
    uleb128(u64::from(((value << 1) ^ (value >> 31)) as u32), out);
    *last = id;
}

/// A `PageHeader` of a v1 data page of PLAIN values with RLE levels, without statistics.
pub fn data_page_header(num_values: i32, uncompressed: i32, compressed: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    let mut last = 0;
    thrift_i32(&mut out, &mut last, 1, PAGE_TYPE_DATA_PAGE);
    thrift_i32(&mut out, &mut last, 2, uncompressed);
    thrift_i32(&mut out, &mut last, 3, compressed);
    out.push(((5 - last as u8) << 4) | 12); // field 5, data_page_header: a struct
    let mut inner = 0;
    thrift_i32(&mut out, &mut inner, 1, num_values);
    thrift_i32(&mut out, &mut inner, 2, ENCODING_PLAIN);
    thrift_i32(&mut out, &mut inner, 3, ENCODING_RLE);
    thrift_i32(&mut out, &mut inner, 4, ENCODING_RLE);
    out.push(0); // end of DataPageHeader
    out.push(0); // end of PageHeader
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::parquet::thrift::walk_struct;

    #[test]
    fn page_headers_are_the_thrift_parquet_reads() {
        let header = data_page_header(70_000, 1 << 20, 12_345);
        let w = walk_struct(&header).unwrap();
        assert_eq!(w.len, header.len());
        for (path, value) in [
            (&[1][..], 0),
            (&[2], 1 << 20),
            (&[3], 12_345),
            (&[5, 1], 70_000),
            (&[5, 2], 0),
            (&[5, 3], 3),
            (&[5, 4], 3),
        ] {
            assert_eq!(w.int(path), Some(value), "{path:?}");
        }
    }

    #[test]
    fn levels_are_rle_runs_with_a_length() {
        let mut l = Levels::default();
        l.push(0, 1);
        l.push(1, 0);
        l.push(2, 100);
        l.push(2, 100);
        let mut out = Vec::new();
        l.encode(&mut out);
        // run of 1 zero: header 2, value 0; run of 200 twos: header 400 = [0x90, 0x03], value 2
        assert_eq!(out, [5, 0, 0, 0, 2, 0, 0x90, 0x03, 2]);
    }
}
