//! The GGUF v3 container: header, key-value metadata, tensor infos, aligned tensor data
//! (ggml's docs/gguf.md). Everything little-endian; strings are a u64 length and UTF-8 bytes.
//! Offsets are relative to the data section, each a multiple of the alignment.

use crate::error::{AqError, Result};
use crate::quant::ggml::GgmlType;

pub const MAGIC: &[u8; 4] = b"GGUF";
pub const VERSION: u32 = 3;
pub const ALIGNMENT: u64 = 32;

/// Metadata value types (the `gguf_type` enum).
const T_U8: u32 = 0;
const T_I8: u32 = 1;
const T_U16: u32 = 2;
const T_I16: u32 = 3;
const T_U32: u32 = 4;
const T_I32: u32 = 5;
const T_F32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
const T_U64: u32 = 10;
const T_I64: u32 = 11;
const T_F64: u32 = 12;

/// A metadata value this library writes or reads back.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U32(u32),
    I32(i32),
    U64(u64),
    F32(f32),
    Bool(bool),
    String(String),
    /// An array of i32 (what ComfyUI-GGUF writes for `comfy.gguf.orig_shape.*`).
    I32Array(Vec<i32>),
    /// Any other value read from a file: its type id, kept so a reader can list it.
    Other(u32),
}

/// One tensor's entry in the header. `dims` are ggml's: innermost (a row) first.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    pub offset: u64,
}

impl TensorInfo {
    pub fn count(&self) -> Option<u64> {
        self.dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d))
    }

    pub fn bytes(&self) -> Option<u64> {
        self.ty.bytes_for(self.count()?)
    }
}

pub fn align(n: u64) -> Option<u64> {
    n.checked_add(ALIGNMENT - 1).map(|v| v / ALIGNMENT * ALIGNMENT)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The header and everything up to the data section (padded to the alignment).
pub fn encode_header(kv: &[(String, Value)], tensors: &[TensorInfo]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(kv.len() as u64).to_le_bytes());
    for (key, value) in kv {
        put_str(&mut out, key);
        match value {
            Value::U32(v) => {
                out.extend_from_slice(&T_U32.to_le_bytes());
                out.extend_from_slice(&v.to_le_bytes());
            }
            Value::I32(v) => {
                out.extend_from_slice(&T_I32.to_le_bytes());
                out.extend_from_slice(&v.to_le_bytes());
            }
            Value::U64(v) => {
                out.extend_from_slice(&T_U64.to_le_bytes());
                out.extend_from_slice(&v.to_le_bytes());
            }
            Value::F32(v) => {
                out.extend_from_slice(&T_F32.to_le_bytes());
                out.extend_from_slice(&v.to_le_bytes());
            }
            Value::Bool(v) => {
                out.extend_from_slice(&T_BOOL.to_le_bytes());
                out.push(u8::from(*v));
            }
            Value::String(s) => {
                out.extend_from_slice(&T_STRING.to_le_bytes());
                put_str(&mut out, s);
            }
            Value::I32Array(items) => {
                out.extend_from_slice(&T_ARRAY.to_le_bytes());
                out.extend_from_slice(&T_I32.to_le_bytes());
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for v in items {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            Value::Other(_) => unreachable!("only read from files"),
        }
    }
    for t in tensors {
        put_str(&mut out, &t.name);
        out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&t.ty.id().to_le_bytes());
        out.extend_from_slice(&t.offset.to_le_bytes());
    }
    out.resize(align(out.len() as u64).expect("a header fits in memory") as usize, 0);
    out
}

/// A parsed header: metadata, tensor infos, and where the data section starts.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub kv: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    pub data_start: u64,
}

impl Parsed {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.kv.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

fn gerr(msg: impl Into<String>) -> AqError {
    AqError::Gguf(msg.into())
}

/// Reads the header from `buf`, the first bytes of a file of `file_len` bytes. A read past the
/// file's end is an error; a read past `buf` (but inside the file) is recorded in `short` as the
/// length of prefix it needs, and ends the parse.
struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
    file_len: u64,
    short: Option<u64>,
}

impl Cursor<'_> {
    /// Bytes of the file after the cursor (not only of the prefix held).
    fn left(&self) -> u64 {
        self.file_len - self.at as u64
    }
    fn take(&mut self, n: u64, what: &str) -> Result<&[u8]> {
        if n > self.left() {
            return Err(gerr(format!("{what} at byte {} needs {n} bytes; the file has {} left", self.at, self.left())));
        }
        if n > (self.buf.len() - self.at) as u64 {
            self.short = Some(self.at as u64 + n);
            return Err(gerr("the header runs past the bytes read"));
        }
        let n = n as usize;
        let s = &self.buf[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.u64(what)?;
        let bytes = self.take(n, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| gerr(format!("{what} is not UTF-8")))
    }
    fn scalar_size(ty: u32) -> Option<u64> {
        match ty {
            T_U8 | T_I8 | T_BOOL => Some(1),
            T_U16 | T_I16 => Some(2),
            T_U32 | T_I32 | T_F32 => Some(4),
            T_U64 | T_I64 | T_F64 => Some(8),
            _ => None,
        }
    }
    fn value(&mut self, ty: u32, key: &str, depth: u32) -> Result<Value> {
        let what = || format!("metadata '{key}'");
        Ok(match ty {
            T_U32 => Value::U32(self.u32(&what())?),
            T_I32 => Value::I32(self.u32(&what())? as i32),
            T_U64 => Value::U64(self.u64(&what())?),
            T_F32 => Value::F32(f32::from_bits(self.u32(&what())?)),
            T_BOOL => Value::Bool(self.take(1, &what())?[0] != 0),
            T_STRING => Value::String(self.string(&what())?),
            T_ARRAY => {
                if depth > 2 {
                    return Err(gerr(format!("{} nests arrays more than 2 deep", what())));
                }
                let elem = self.u32(&what())?;
                let n = self.u64(&what())?;
                if elem == T_I32 {
                    let bytes =
                        self.take(n.checked_mul(4).ok_or_else(|| gerr(format!("{} is too long", what())))?, &what())?;
                    Value::I32Array(
                        bytes.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().expect("4"))).collect(),
                    )
                } else if let Some(size) = Self::scalar_size(elem) {
                    self.take(n.checked_mul(size).ok_or_else(|| gerr(format!("{} is too long", what())))?, &what())?;
                    Value::Other(T_ARRAY)
                } else {
                    // Each element takes at least 8 bytes (a string's length, an array's header).
                    if n > self.left() / 8 {
                        return Err(gerr(format!("{} claims {n} items; the file is shorter", what())));
                    }
                    for _ in 0..n {
                        self.value(elem, key, depth + 1)?;
                    }
                    Value::Other(T_ARRAY)
                }
            }
            other => match Self::scalar_size(other) {
                Some(size) => {
                    self.take(size, &what())?;
                    Value::Other(other)
                }
                None => return Err(gerr(format!("{} has unknown value type {other}", what()))),
            },
        })
    }
}

/// The most header bytes a reader takes in: GGUF headers run to a few MiB (an LLM's vocabulary is
/// the largest part), and a file claiming more is refused rather than read whole into memory.
pub const MAX_HEADER_BYTES: u64 = 256 << 20;

/// What the first bytes of a GGUF file give: its parsed header, or how many first bytes the
/// header needs (more than were given).
#[derive(Debug)]
pub enum HeaderPrefix {
    Complete(Parsed),
    NeedsBytes(u64),
}

/// Parse the header of a GGUF file held whole in `buf`.
pub fn parse_header(buf: &[u8]) -> Result<Parsed> {
    match parse_header_prefix(buf, buf.len() as u64)? {
        HeaderPrefix::Complete(p) => Ok(p),
        HeaderPrefix::NeedsBytes(n) => Err(gerr(format!("the header needs {n} bytes; the file has {}", buf.len()))),
    }
}

/// Parse the header of a GGUF file of `file_len` bytes from its first bytes `buf` (any prefix).
/// Every count and length is checked against the file's length before anything is allocated, so
/// a lie is an error whatever prefix was given; a true header longer than `buf` asks for more
/// (`NeedsBytes`), up to [`MAX_HEADER_BYTES`].
pub fn parse_header_prefix(buf: &[u8], file_len: u64) -> Result<HeaderPrefix> {
    let buf = &buf[..buf.len().min(usize::try_from(file_len).unwrap_or(usize::MAX))];
    let mut c = Cursor { buf, at: 0, file_len, short: None };
    match parse_with(&mut c) {
        Ok(p) => Ok(HeaderPrefix::Complete(p)),
        Err(_) if c.short.is_some_and(|n| n > MAX_HEADER_BYTES) => Err(gerr(format!(
            "the header is longer than {} MiB, more than this reader takes in",
            MAX_HEADER_BYTES >> 20
        ))),
        Err(e) => c.short.map(HeaderPrefix::NeedsBytes).ok_or(e),
    }
}

fn parse_with(c: &mut Cursor) -> Result<Parsed> {
    if c.take(4, "the magic")? != MAGIC {
        return Err(gerr("not a GGUF file (it does not start with 'GGUF')"));
    }
    let version = c.u32("the version")?;
    if !(2..=3).contains(&version) {
        return Err(gerr(format!("GGUF version {version} is not supported; this reader reads 2 and 3")));
    }
    let n_tensors = c.u64("the tensor count")?;
    let n_kv = c.u64("the metadata count")?;
    // A key-value pair takes at least 13 bytes, a tensor info at least 24.
    let left = c.left();
    if n_kv > left / 13 || n_tensors > left / 24 {
        return Err(gerr(format!(
            "the header claims {n_kv} metadata pairs and {n_tensors} tensors; the file is too short"
        )));
    }
    // Reserved by the bytes at hand, not the counts: those are bounded only by the file's length.
    let held = (c.buf.len() - c.at) as u64;
    let mut kv = Vec::with_capacity(n_kv.min(held / 13) as usize);
    for i in 0..n_kv {
        let key = c.string(&format!("metadata key {i}"))?;
        let ty = c.u32(&format!("the type of metadata '{key}'"))?;
        let value = c.value(ty, &key, 0)?;
        kv.push((key, value));
    }
    let alignment = match kv.iter().find(|(k, _)| k == "general.alignment").map(|(_, v)| v) {
        None => ALIGNMENT,
        Some(Value::U32(a)) if *a > 0 && a.is_power_of_two() => u64::from(*a),
        Some(v) => return Err(gerr(format!("general.alignment = {v:?} is not a power of two"))),
    };
    let mut tensors = Vec::with_capacity(n_tensors.min((c.buf.len() - c.at) as u64 / 24) as usize);
    for i in 0..n_tensors {
        let name = c.string(&format!("the name of tensor {i}"))?;
        let n_dims = c.u32(&format!("the dimension count of '{name}'"))?;
        if n_dims > 4 {
            return Err(gerr(format!("tensor '{name}' has {n_dims} dimensions; ggml has at most 4")));
        }
        let dims = (0..n_dims).map(|_| c.u64(&format!("the shape of '{name}'"))).collect::<Result<Vec<u64>>>()?;
        let id = c.u32(&format!("the type of '{name}'"))?;
        let ty = GgmlType::from_id(id)
            .ok_or_else(|| gerr(format!("tensor '{name}' has ggml type {id}, which this reader does not decode")))?;
        let offset = c.u64(&format!("the offset of '{name}'"))?;
        if offset % alignment != 0 {
            return Err(gerr(format!("tensor '{name}' starts at data offset {offset}, not a multiple of {alignment}")));
        }
        let info = TensorInfo { name, dims, ty, offset };
        if info.bytes().is_none() {
            return Err(gerr(format!(
                "tensor '{}' of shape {:?} is not a whole number of {} blocks (or overflows)",
                info.name,
                info.dims,
                ty.name()
            )));
        }
        tensors.push(info);
    }
    let data_start = (c.at as u64).div_ceil(alignment) * alignment;
    Ok(Parsed { kv, tensors, data_start })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_is_aligned() {
        let kv = vec![
            ("general.architecture".to_string(), Value::String("sd1".into())),
            ("general.quantization_version".to_string(), Value::U32(2)),
            ("comfy.gguf.orig_shape.x".to_string(), Value::I32Array(vec![2, 3, 4, 5, 6])),
        ];
        let tensors = vec![
            TensorInfo { name: "a".into(), dims: vec![64, 2], ty: GgmlType::Q8_0, offset: 0 },
            TensorInfo { name: "b".into(), dims: vec![3], ty: GgmlType::F32, offset: 160 },
        ];
        let h = encode_header(&kv, &tensors);
        assert_eq!(h.len() as u64 % ALIGNMENT, 0);
        let p = parse_header(&h).unwrap();
        assert_eq!(p.kv, kv);
        assert_eq!(p.tensors, tensors);
        assert_eq!(p.data_start, h.len() as u64);
        // every truncation is an error, never a panic
        for n in 0..h.len() - 1 {
            let _ = parse_header(&h[..n]);
        }
        // Any prefix of a longer file asks for more bytes (no more than the header) or is whole.
        for n in 0..h.len() {
            match parse_header_prefix(&h[..n], h.len() as u64 + 1000).unwrap() {
                HeaderPrefix::NeedsBytes(k) => assert!(k > n as u64 && k <= h.len() as u64, "{n}: {k}"),
                HeaderPrefix::Complete(p) => assert_eq!(p.tensors, tensors),
            }
        }
    }

    /// A header that claims more than the file holds is refused from its first bytes; one longer
    /// than the reader takes in is refused instead of being asked for.
    #[test]
    fn prefixes_refuse_lies_and_oversized_headers() {
        let mut h =
            encode_header(&[], &[TensorInfo { name: "a".into(), dims: vec![32], ty: GgmlType::Q8_0, offset: 0 }]);
        h[8..16].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(parse_header_prefix(&h[..24], 1 << 30).unwrap_err().to_string().contains("too short"));
        let mut big = Vec::new();
        big.extend_from_slice(MAGIC);
        big.extend_from_slice(&VERSION.to_le_bytes());
        big.extend_from_slice(&0u64.to_le_bytes());
        big.extend_from_slice(&1u64.to_le_bytes());
        big.extend_from_slice(&(MAX_HEADER_BYTES + 1).to_le_bytes());
        let err = parse_header_prefix(&big, 1 << 40).unwrap_err();
        assert!(err.to_string().contains("longer than 256 MiB"), "{err}");
    }

    #[test]
    fn lies_are_refused() {
        let mut h =
            encode_header(&[], &[TensorInfo { name: "a".into(), dims: vec![33], ty: GgmlType::Q4_0, offset: 0 }]);
        assert!(parse_header(&h).unwrap_err().to_string().contains("whole number"));
        h[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(parse_header(&h).unwrap_err().code(), "E_GGUF");
        assert!(parse_header(b"GGML\x03\0\0\0").is_err());
    }
}
