//! A bounded walk over a Thrift compact-protocol struct (the encoding of Parquet's footer and page
//! headers), run before parquet-rs parses the same bytes. parquet-rs trusts declared sizes: a
//! page header's binary field of declared length 2^31 is allocated before it is read (an abort in
//! wasm), and a list of 2^31 booleans is skipped one element at a time without consuming a byte
//! (seconds per list). Here every count is compared with the bytes that remain, so the walk is
//! linear in the input and allocates nothing; whatever passes it parses in bounded time and memory.

/// Deepest nesting of structs, lists and maps accepted. Parquet's own metadata nests 8 deep
/// (FileMetaData → row_groups → RowGroup → columns → ColumnChunk → ColumnMetaData → statistics …).
const MAX_DEPTH: u32 = 32;

/// Why a walk stopped: a message naming the offset, for an `E_PARQUET` error.
pub type WalkError = String;

/// An integer field met on the way (booleans as 0/1), by the ids of the fields that lead to it:
/// `[2]` is a top-level field 2, `[8, 5]` field 5 of the struct in top-level field 8.
#[derive(Debug, Clone, PartialEq)]
pub struct IntField {
    pub path: Vec<i16>,
    pub value: i64,
}

/// The result of walking one struct: where it ended, and its integer fields up to depth 2.
#[derive(Debug, Default)]
pub struct Walked {
    pub len: usize,
    pub ints: Vec<IntField>,
}

impl Walked {
    pub fn int(&self, path: &[i16]) -> Option<i64> {
        self.ints.iter().find(|f| f.path == path).map(|f| f.value)
    }
}

/// Walk the struct that starts at `buf[0]`.
pub fn walk_struct(buf: &[u8]) -> Result<Walked, WalkError> {
    let mut w = Walker { buf, at: 0, ints: Vec::new() };
    let mut path = Vec::new();
    w.structure(&mut path, 0)?;
    Ok(Walked { len: w.at, ints: w.ints })
}

struct Walker<'a> {
    buf: &'a [u8],
    at: usize,
    ints: Vec<IntField>,
}

/// Compact-protocol type codes.
const BOOL_TRUE: u8 = 1;
const BOOL_FALSE: u8 = 2;
const BYTE: u8 = 3;
const I16: u8 = 4;
const I32: u8 = 5;
const I64: u8 = 6;
const DOUBLE: u8 = 7;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const SET: u8 = 10;
const MAP: u8 = 11;
const STRUCT: u8 = 12;
const UUID: u8 = 13;

impl Walker<'_> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.at
    }

    fn byte(&mut self) -> Result<u8, WalkError> {
        let b = *self.buf.get(self.at).ok_or_else(|| format!("ends inside a value at byte {}", self.at))?;
        self.at += 1;
        Ok(b)
    }

    fn skip(&mut self, n: usize, what: &str) -> Result<(), WalkError> {
        if n > self.remaining() {
            return Err(format!(
                "{what} of {n} bytes at byte {} runs past the end ({} left)",
                self.at,
                self.remaining()
            ));
        }
        self.at += n;
        Ok(())
    }

    fn varint(&mut self) -> Result<u64, WalkError> {
        let start = self.at;
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            if shift == 63 && b > 1 {
                break;
            }
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!("an integer at byte {start} is longer than 64 bits"))
    }

    fn zigzag(&mut self) -> Result<i64, WalkError> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    /// A count of items that each take at least `min_bytes`: more than the bytes left is a lie.
    fn count(&mut self, n: u64, min_bytes: usize, what: &str) -> Result<usize, WalkError> {
        let fits = usize::try_from(n).ok().filter(|&n| n.saturating_mul(min_bytes) <= self.remaining());
        fits.ok_or_else(|| {
            format!("{what} of {n} items at byte {} cannot fit in the {} bytes left", self.at, self.remaining())
        })
    }

    fn structure(&mut self, path: &mut Vec<i16>, depth: u32) -> Result<(), WalkError> {
        if depth >= MAX_DEPTH {
            return Err(format!("nesting deeper than {MAX_DEPTH} at byte {}", self.at));
        }
        let mut last_id: i16 = 0;
        loop {
            let header = self.byte()?;
            let kind = header & 0x0f;
            if kind == 0 {
                return Ok(());
            }
            let delta = (header >> 4) as i16;
            let id = if delta != 0 {
                last_id.checked_add(delta).ok_or_else(|| format!("a field id overflows at byte {}", self.at))?
            } else {
                i16::try_from(self.zigzag()?).map_err(|_| format!("a field id out of range at byte {}", self.at))?
            };
            last_id = id;
            path.push(id);
            self.value(kind, path, depth + 1, true)?;
            path.pop();
        }
    }

    /// One value of type `kind`. `in_field`: a struct field, whose booleans live in the type code;
    /// inside lists and maps a boolean takes a byte.
    fn value(&mut self, kind: u8, path: &mut Vec<i16>, depth: u32, in_field: bool) -> Result<(), WalkError> {
        let record = in_field && path.len() <= 2;
        let int = match kind {
            BOOL_TRUE | BOOL_FALSE if in_field => Some(i64::from(kind == BOOL_TRUE)),
            BOOL_TRUE | BOOL_FALSE | BYTE => Some(i64::from(self.byte()? as i8)),
            I16 | I32 | I64 => Some(self.zigzag()?),
            DOUBLE => {
                self.skip(8, "a double")?;
                None
            }
            UUID => {
                self.skip(16, "a uuid")?;
                None
            }
            BINARY => {
                let n = self.varint()?;
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                self.skip(n, "a binary field")?;
                None
            }
            LIST | SET => {
                if depth >= MAX_DEPTH {
                    return Err(format!("nesting deeper than {MAX_DEPTH} at byte {}", self.at));
                }
                let header = self.byte()?;
                let short = u64::from(header >> 4);
                let n = if short == 15 { self.varint()? } else { short };
                let element = header & 0x0f;
                let n = self.count(n, 1, "a list")?;
                for _ in 0..n {
                    self.value(element, path, depth + 1, false)?;
                }
                None
            }
            MAP => {
                if depth >= MAX_DEPTH {
                    return Err(format!("nesting deeper than {MAX_DEPTH} at byte {}", self.at));
                }
                let n = self.varint()?;
                if n > 0 {
                    let types = self.byte()?;
                    let n = self.count(n, 2, "a map")?;
                    for _ in 0..n {
                        self.value(types >> 4, path, depth + 1, false)?;
                        self.value(types & 0x0f, path, depth + 1, false)?;
                    }
                }
                None
            }
            STRUCT => {
                self.structure(path, depth)?;
                None
            }
            other => return Err(format!("unknown type code {other} at byte {}", self.at)),
        };
        if let (true, Some(value)) = (record, int) {
            self.ints.push(IntField { path: path.clone(), value });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_and_nested_fields() {
        // struct { 1: i32 = 3, 2: i32 = -1, 8: struct { 5: i32 = 7, 7: true }, 9: binary "ab" }
        let bytes = [0x15, 6, 0x15, 1, 0x6c, 0x55, 14, 0x21, 0, 0x18, 2, b'a', b'b', 0];
        let w = walk_struct(&bytes).unwrap();
        assert_eq!(w.len, bytes.len());
        assert_eq!(w.int(&[1]), Some(3));
        assert_eq!(w.int(&[2]), Some(-1));
        assert_eq!(w.int(&[8, 5]), Some(7));
        assert_eq!(w.int(&[8, 7]), Some(1));
    }

    #[test]
    fn declared_sizes_beyond_the_input_are_refused() {
        // a binary of 2^31 bytes
        let e = walk_struct(&[0x18, 0x80, 0x80, 0x80, 0x80, 0x08, 0]).unwrap_err();
        assert!(e.contains("binary"), "{e}");
        // a list of 2^31 booleans (parquet-rs skips these without reading a byte)
        let e = walk_struct(&[0x19, 0xf1, 0x80, 0x80, 0x80, 0x80, 0x08, 0]).unwrap_err();
        assert!(e.contains("list"), "{e}");
        // a map of 2^20 entries in 6 bytes
        let e = walk_struct(&[0x1b, 0x80, 0x80, 0x40, 0x55, 0]).unwrap_err();
        assert!(e.contains("map"), "{e}");
    }

    #[test]
    fn depth_truncation_and_bad_types_are_refused() {
        let mut deep = vec![0x1c; 100];
        deep.extend([0; 100]);
        assert!(walk_struct(&deep).unwrap_err().contains("nesting"));
        assert!(walk_struct(&[0x15]).unwrap_err().contains("ends"));
        assert!(walk_struct(&[0x1e, 0]).unwrap_err().contains("type code"));
        assert!(walk_struct(&[0x15, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0])
            .unwrap_err()
            .contains("64 bits"));
    }

    #[test]
    fn walks_any_prefix_of_random_bytes_without_panicking() {
        let mut state = 0x2545f4914f6cdd1du64;
        for _ in 0..20_000 {
            let len = (state % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 24) as u8
                })
                .collect();
            if let Ok(w) = walk_struct(&bytes) {
                assert!(w.len <= bytes.len());
            }
        }
    }
}
