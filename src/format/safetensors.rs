//! safetensors container: header-first parsing and per-tensor byte views.
//!
//! We parse the header ourselves (JSON via serde_json) instead of using the `safetensors` crate
//! because streaming needs the header *before* the tensor bytes exist in memory: the crate's
//! `read_metadata` insists on the whole buffer, and its `usize` offsets would cap wasm32 at 4 GiB.
//! Tests cross-check this parser against the crate on every real file in the repository.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::{AqError, Result};
use crate::quant::dtype::Dtype;

/// Upper bound on the JSON header (the reference implementation uses 100 MB too).
pub const MAX_HEADER_BYTES: u64 = 100 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<u64>,
    /// Byte range relative to the start of the data section (after the 8-byte length and header).
    pub begin: u64,
    pub end: u64,
}

impl TensorInfo {
    /// Whether the quantizer treats this tensor as a weight: a float tensor with at least two
    /// dimensions (rows to group). Integer tensors, biases, norms and scalars are stored as is.
    pub fn is_weight(&self) -> bool {
        self.dtype.is_float() && self.shape.len() >= 2
    }
    pub fn numel(&self) -> u64 {
        self.shape.iter().product()
    }
    pub fn byte_len(&self) -> u64 {
        self.end - self.begin
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// Length of the JSON header in bytes (the little-endian u64 at offset 0).
    pub header_len: u64,
    /// Absolute file offset of the data section: 8 + header_len.
    pub data_offset: u64,
    /// Tensors in file order (ascending `begin`).
    pub tensors: Vec<TensorInfo>,
    /// The `__metadata__` string map, if any.
    pub metadata: BTreeMap<String, String>,
}

impl Header {
    /// Absolute byte range of a tensor in the file.
    pub fn file_range(&self, t: &TensorInfo) -> (u64, u64) {
        (self.data_offset + t.begin, self.data_offset + t.end)
    }
    /// Indices of the tensors that lie wholly inside the absolute file range `[start, end)`.
    pub fn tensors_within(&self, start: u64, end: u64) -> std::ops::Range<usize> {
        // Tensors are sorted by offset and do not overlap.
        let first = self.tensors.partition_point(|t| self.data_offset + t.begin < start);
        let last = first + self.tensors[first..].partition_point(|t| self.data_offset + t.end <= end);
        first..last
    }
    pub fn find(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
    /// Bytes the tensors occupy in the source file (what the compression ratio divides).
    pub fn tensor_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.byte_len()).sum()
    }
    /// Total file length implied by the header: data section ends at the last tensor's end.
    pub fn implied_file_len(&self) -> u64 {
        self.data_offset + self.tensors.iter().map(|t| t.end).max().unwrap_or(0)
    }
}

/// How many bytes must be read from the start of the file to parse the header: call with the
/// first 8 bytes. Lets a streaming reader fetch exactly the header with one more slice.
pub fn header_size(prefix: &[u8]) -> Result<u64> {
    if prefix.len() < 8 {
        return Err(AqError::Safetensors(format!(
            "file too short: {} bytes, a safetensors file starts with an 8-byte header length",
            prefix.len()
        )));
    }
    let n = u64::from_le_bytes(prefix[..8].try_into().expect("8 bytes"));
    if n > MAX_HEADER_BYTES {
        return Err(AqError::Safetensors(format!(
            "header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit (not a safetensors file?)"
        )));
    }
    Ok(8 + n)
}

/// Parse the header from the first bytes of a file. `bytes` must hold at least `header_size`
/// bytes; extra bytes are ignored. `file_len`, when known, is checked against the header's
/// length and every tensor's offsets.
pub fn parse_header(bytes: &[u8], file_len: Option<u64>) -> Result<Header> {
    let total = header_size(bytes)?;
    let header_len = total - 8;
    if let Some(len) = file_len {
        if total > len {
            return Err(AqError::Safetensors(format!(
                "header length {header_len} is larger than the file ({len} bytes): truncated, or not a safetensors file"
            )));
        }
    }
    if (bytes.len() as u64) < total {
        return Err(AqError::Safetensors(format!(
            "truncated header: it is {header_len} bytes long but only {} bytes follow the length prefix",
            bytes.len() - 8
        )));
    }
    let json = std::str::from_utf8(&bytes[8..total as usize])
        .map_err(|e| AqError::Safetensors(format!("header is not UTF-8: {e}")))?;
    let Entries(obj) = serde_json::from_str(json.trim_end_matches(' '))
        .map_err(|e| AqError::Safetensors(format!("header is not valid JSON: {e}")))?;
    let mut names = std::collections::HashSet::with_capacity(obj.len());
    if let Some((name, _)) = obj.iter().find(|(name, _)| !names.insert(name.as_str())) {
        return Err(AqError::Safetensors(format!(
            "the header names '{name}' twice: a reader would keep one entry and silently drop the other"
        )));
    }

    let mut metadata = BTreeMap::new();
    let mut tensors = Vec::with_capacity(obj.len());
    for (name, entry) in &obj {
        if name == "__metadata__" {
            let m = entry
                .as_object()
                .ok_or_else(|| AqError::Safetensors("__metadata__ must be an object of strings".to_string()))?;
            for (k, v) in m {
                let s = v
                    .as_str()
                    .ok_or_else(|| AqError::Safetensors(format!("__metadata__['{k}'] must be a string, found {v}")))?;
                metadata.insert(k.clone(), s.to_string());
            }
            continue;
        }
        tensors.push(parse_entry(name, entry)?);
    }
    if tensors.is_empty() {
        return Err(AqError::Safetensors("the file holds no tensors (empty model)".to_string()));
    }
    tensors.sort_by_key(|a| (a.begin, a.end));
    for pair in tensors.windows(2) {
        if pair[1].begin < pair[0].end {
            return Err(AqError::Safetensors(format!(
                "tensors '{}' [{}..{}) and '{}' [{}..{}) overlap",
                pair[0].name, pair[0].begin, pair[0].end, pair[1].name, pair[1].begin, pair[1].end
            )));
        }
    }
    let header = Header { header_len, data_offset: total, tensors, metadata };
    if let Some(len) = file_len {
        for t in &header.tensors {
            let (_, end) = header.file_range(t);
            if end > len {
                return Err(AqError::Safetensors(format!(
                    "tensor '{}' ends at byte {end} but the file has only {len} bytes (truncated file or offsets out of range)",
                    t.name
                )));
            }
        }
    }
    Ok(header)
}

/// The header's top-level object with its keys in file order and duplicates kept, so that a
/// repeated tensor name is refused instead of one entry silently replacing the other.
struct Entries(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object of tensor entries")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<Entries, A::Error> {
                let mut out = Vec::new();
                while let Some(pair) = map.next_entry::<String, Value>()? {
                    out.push(pair);
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(Visit)
    }
}

fn parse_entry(name: &str, entry: &Value) -> Result<TensorInfo> {
    let bad = |what: &str| AqError::Safetensors(format!("tensor '{name}': {what}"));
    let obj = entry.as_object().ok_or_else(|| bad("entry is not an object with dtype, shape, data_offsets"))?;
    let dtype_str = obj.get("dtype").and_then(Value::as_str).ok_or_else(|| bad("missing string field 'dtype'"))?;
    let dtype = Dtype::parse(dtype_str).ok_or_else(|| {
        AqError::dtype(name, format!("unknown dtype '{dtype_str}'; expected one of {}", Dtype::ALL_NAMES.join(", ")))
    })?;
    let shape_v = obj.get("shape").and_then(Value::as_array).ok_or_else(|| bad("missing array field 'shape'"))?;
    let shape = shape_v
        .iter()
        .map(|d| d.as_u64().ok_or_else(|| bad(&format!("shape entry {d} is not a non-negative integer"))))
        .collect::<Result<Vec<u64>>>()?;
    let offs = obj
        .get("data_offsets")
        .and_then(Value::as_array)
        .filter(|a| a.len() == 2)
        .ok_or_else(|| bad("missing field 'data_offsets' = [begin, end]"))?;
    let begin = offs[0].as_u64().ok_or_else(|| bad("data_offsets[0] is not a non-negative integer"))?;
    let end = offs[1].as_u64().ok_or_else(|| bad("data_offsets[1] is not a non-negative integer"))?;
    if end < begin {
        return Err(bad(&format!("data_offsets [{begin}, {end}] end before they begin")));
    }
    let numel = shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(&format!("shape {shape:?} overflows")))?;
    if numel == 0 {
        return Err(bad(&format!("shape {shape:?} has zero elements; arrowquant needs non-empty tensors")));
    }
    let expected =
        numel.checked_mul(dtype.size_bytes() as u64).ok_or_else(|| bad(&format!("shape {shape:?} overflows")))?;
    if expected != end - begin {
        return Err(bad(&format!(
            "shape {shape:?} × {} ({} bytes each) = {expected} bytes, but data_offsets span {} bytes",
            dtype.name(),
            dtype.size_bytes(),
            end - begin
        )));
    }
    Ok(TensorInfo { name: name.to_string(), dtype, shape, begin, end })
}

/// Serialize a safetensors header (used when exporting dequantized tensors). Tensors are laid out
/// back to back in the given order; returns the full prefix (8-byte length + padded JSON).
pub fn write_header(tensors: &[(String, Dtype, Vec<u64>)], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut obj = serde_json::Map::new();
    if !metadata.is_empty() {
        obj.insert("__metadata__".to_string(), serde_json::to_value(metadata).expect("string map"));
    }
    let mut offset = 0u64;
    for (name, dtype, shape) in tensors {
        let len = shape.iter().product::<u64>() * dtype.size_bytes() as u64;
        obj.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype.name(), "shape": shape, "data_offsets": [offset, offset + len]}),
        );
        offset += len;
    }
    let mut json = serde_json::to_string(&Value::Object(obj)).expect("header serializes");
    // Pad to 8 bytes so the data section is aligned, as the reference writer does.
    while !(json.len() + 8).is_multiple_of(8) {
        json.push(' ');
    }
    let mut out = Vec::with_capacity(8 + json.len());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(json.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data_len: usize) -> Vec<u8> {
        let mut v = (header.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(header.as_bytes());
        v.extend(std::iter::repeat_n(0u8, data_len));
        v
    }

    #[test]
    fn parses_a_minimal_file() {
        let f = file(r#"{"__metadata__":{"a":"b"},"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#, 16);
        let h = parse_header(&f, Some(f.len() as u64)).unwrap();
        assert_eq!(h.tensors.len(), 1);
        assert_eq!(h.tensors[0].shape, vec![2, 2]);
        assert_eq!(h.metadata.get("a").map(String::as_str), Some("b"));
        assert_eq!(h.implied_file_len(), f.len() as u64);
    }

    #[test]
    fn rejects_lies() {
        let cases: &[(&[u8], &str)] = &[
            (b"\x05\x00\x00", "too short"),
            (&file(r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, 8), "ends at byte"),
            (
                &file(r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}"#, 16),
                "12 bytes, but data_offsets span 16",
            ),
            (&file(r#"{"w":{"dtype":"Q4","shape":[3],"data_offsets":[0,3]}}"#, 3), "unknown dtype 'Q4'"),
            (&file(r#"{"w":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]}}"#, 0), "zero elements"),
            (&file(r#"{}"#, 0), "no tensors"),
            (&file(r#"not json"#, 0), "not valid JSON"),
            (
                &file(
                    r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}"#,
                    6,
                ),
                "overlap",
            ),
            (
                &file(
                    r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}"#,
                    8,
                ),
                "names 'a' twice",
            ),
            (&file(&format!("{}1{}", "[".repeat(200), "]".repeat(200)), 0), "not valid JSON"),
        ];
        for (bytes, needle) in cases {
            let err = parse_header(bytes, Some(bytes.len() as u64)).unwrap_err();
            assert!(err.to_string().contains(needle), "{err} should mention {needle}");
        }
        // header length larger than the file
        let mut f = file(r#"{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#, 1);
        f[0..8].copy_from_slice(&1000u64.to_le_bytes());
        let err = parse_header(&f, Some(f.len() as u64)).unwrap_err();
        assert!(err.to_string().contains("larger than the file"), "{err}");
        assert_eq!(err.code(), "E_SAFETENSORS");
    }

    #[test]
    fn header_roundtrip() {
        let tensors = vec![("x".to_string(), Dtype::F16, vec![3, 5]), ("y".to_string(), Dtype::F32, vec![7])];
        let mut f = write_header(&tensors, &BTreeMap::new());
        assert_eq!(f.len() % 8, 0);
        f.extend(std::iter::repeat_n(0u8, 30 + 28));
        let h = parse_header(&f, Some(f.len() as u64)).unwrap();
        assert_eq!(h.tensors[1].begin, 30);
        assert_eq!(h.tensors[1].byte_len(), 28);
    }
}
