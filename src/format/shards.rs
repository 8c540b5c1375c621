//! A sharded safetensors model (several files + an optional `model.safetensors.index.json`) seen
//! as one safetensors file: a synthetic header lists every tensor with offsets into the shards'
//! data sections laid end to end, and a segment table maps each byte range of that virtual file
//! back to a shard. The quantizer streams it like any single file, one tensor at a time, so the
//! shards are never concatenated in memory; a reader only copies bytes along the table.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::{Map, Value};

#[cfg(target_arch = "wasm32")]
use tsify::Tsify;

use crate::error::{AqError, Result};
use crate::format::safetensors::{header_size, parse_header, MAX_HEADER_BYTES};

/// One shard as the caller read it: its file name, size and the first bytes of the file holding
/// at least its whole header.
pub struct ShardHeader<'a> {
    pub name: &'a str,
    pub size: u64,
    pub header: &'a [u8],
}

/// A piece of the virtual file: `[start, end)` of it is `[offset, offset + end − start)` of shard
/// `shard` (an index into the shards as given).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct Segment {
    /// First byte of the piece in the virtual (merged) file.
    pub start: u64,
    /// One past its last byte.
    pub end: u64,
    /// Index of the shard that holds it, in the order the shards were given.
    pub shard: u32,
    /// Where the piece starts in that shard.
    pub offset: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct ShardSummary {
    /// The shard's file name (from the index).
    pub name: String,
    /// Tensors the shard contributes.
    pub tensors: u32,
}

/// The merged model: the virtual file's header bytes (its first `header.len()` bytes), its size,
/// where its data bytes live, and how many tensors each shard gave (in model order).
#[derive(Debug, Clone, PartialEq)]
pub struct MergedShards {
    pub header: Vec<u8>,
    pub size: u64,
    pub segments: Vec<Segment>,
    pub shards: Vec<ShardSummary>,
}

fn fail(message: String) -> AqError {
    AqError::Safetensors(message)
}

/// Merge shards into one virtual safetensors file. `index` is the parsed index JSON
/// (`{ weight_map: { tensor: file }, metadata? }`): the files it names, in name order, are the
/// shards, and it is checked against what they hold. Without it the given order is kept.
pub fn merge_shards(shards: &[ShardHeader], index: Option<&Value>) -> Result<MergedShards> {
    if shards.is_empty() {
        return Err(fail("no shards given".into()));
    }
    let by_name: HashMap<&str, usize> = shards.iter().enumerate().map(|(i, s)| (s.name, i)).collect();
    let weight_map = match index {
        None => None,
        Some(ix) => Some(
            ix.get("weight_map")
                .and_then(Value::as_object)
                .ok_or_else(|| fail("the index JSON has no weight_map object".into()))?,
        ),
    };
    let order: Vec<usize> = match weight_map {
        None => (0..shards.len()).collect(),
        Some(map) => {
            let mut listed: Vec<&str> = Vec::new();
            for file in map.values() {
                let file =
                    file.as_str().ok_or_else(|| fail(format!("the index maps a tensor to {file}, not a file name")))?;
                if !listed.contains(&file) {
                    listed.push(file);
                }
            }
            // Shard files are numbered (model-00001-of-00003, …): their names give the order.
            listed.sort_unstable();
            let missing: Vec<&str> = listed.iter().copied().filter(|f| !by_name.contains_key(f)).collect();
            if !missing.is_empty() {
                return Err(fail(format!("the index lists shard(s) that were not given: {}", missing.join(", "))));
            }
            let extra: Vec<&str> = shards.iter().map(|s| s.name).filter(|n| !listed.contains(n)).collect();
            if !extra.is_empty() {
                return Err(fail(format!("file(s) not in the index's weight_map: {}", extra.join(", "))));
            }
            listed.iter().map(|f| by_name[f]).collect()
        }
    };
    let mut metadata: BTreeMap<String, String> = BTreeMap::new();
    if let Some(meta) = index.and_then(|ix| ix.get("metadata")).and_then(Value::as_object) {
        for (k, v) in meta {
            // Strings only in __metadata__ (the safetensors rule); other values become JSON.
            metadata.insert(k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string));
        }
    }
    let mut entries = Map::new();
    let mut seen: HashMap<String, &str> = HashMap::new();
    let mut segments = Vec::new();
    let mut summaries = Vec::new();
    let mut base = 0u64;
    for &i in &order {
        let shard = &shards[i];
        let too_short =
            || fail(format!("shard '{}': {} bytes, too short for a safetensors file", shard.name, shard.size));
        if shard.size < 8 || shard.header.len() < 8 {
            return Err(too_short());
        }
        let total = header_size(shard.header).map_err(|e| fail(format!("shard '{}': {e}", shard.name)))?;
        if total - 8 > MAX_HEADER_BYTES || total > shard.size {
            return Err(fail(format!(
                "shard '{}': header length {} does not fit its {} bytes",
                shard.name,
                total - 8,
                shard.size
            )));
        }
        let header =
            parse_header(shard.header, Some(shard.size)).map_err(|e| fail(format!("shard '{}': {e}", shard.name)))?;
        for (k, v) in &header.metadata {
            metadata.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for t in &header.tensors {
            if let Some(other) = seen.insert(t.name.clone(), shard.name) {
                return Err(fail(format!("tensor '{}' is in both '{other}' and '{}'", t.name, shard.name)));
            }
            if let Some(map) = weight_map {
                let said = map.get(&t.name).and_then(Value::as_str);
                if said != Some(shard.name) {
                    return Err(fail(format!(
                        "tensor '{}' is in '{}' but the index says '{}'",
                        t.name,
                        shard.name,
                        said.unwrap_or("(not listed)")
                    )));
                }
            }
            entries.insert(
                t.name.clone(),
                serde_json::json!({
                    "dtype": t.dtype.name(),
                    "shape": t.shape,
                    "data_offsets": [base + t.begin, base + t.end],
                }),
            );
        }
        let data_len = shard.size - header.data_offset;
        if data_len > 0 {
            segments.push(Segment { start: base, end: base + data_len, shard: i as u32, offset: header.data_offset });
        }
        summaries.push(ShardSummary { name: shard.name.to_string(), tensors: header.tensors.len() as u32 });
        base += data_len;
    }
    if let Some(map) = weight_map {
        let absent: Vec<&String> = map.keys().filter(|n| !seen.contains_key(n.as_str())).collect();
        if let Some(first) = absent.first() {
            return Err(fail(format!("the index lists {} tensor(s) no shard holds, e.g. '{first}'", absent.len())));
        }
    }
    if !metadata.is_empty() {
        entries.insert("__metadata__".into(), serde_json::to_value(&metadata).expect("string map"));
    }
    let mut json = Value::Object(entries).to_string().into_bytes();
    // Pad with spaces so the data section starts on 8 bytes, as safetensors writers do.
    json.resize(json.len() + (8 - (8 + json.len()) % 8) % 8, b' ');
    let mut head = (json.len() as u64).to_le_bytes().to_vec();
    head.extend_from_slice(&json);
    let header_len = head.len() as u64;
    for s in &mut segments {
        s.start += header_len;
        s.end += header_len;
    }
    Ok(MergedShards { size: header_len + base, header: head, segments, shards: summaries })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::safetensors::write_header;
    use crate::quant::dtype::Dtype;

    fn shard(tensors: &[(&str, u64)], meta: &[(&str, &str)]) -> Vec<u8> {
        let specs: Vec<(String, Dtype, Vec<u64>)> =
            tensors.iter().map(|(n, k)| (n.to_string(), Dtype::F32, vec![*k])).collect();
        let metadata = meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut out = write_header(&specs, &metadata);
        let n: u64 = tensors.iter().map(|t| t.1).sum();
        out.extend((0..n).flat_map(|i| (i as f32).to_le_bytes()));
        out
    }

    fn sh<'a>(name: &'a str, bytes: &'a [u8]) -> ShardHeader<'a> {
        ShardHeader { name, size: bytes.len() as u64, header: bytes }
    }

    #[test]
    fn shards_merge_into_one_virtual_file_that_maps_back() {
        let a = shard(&[("x", 3), ("y", 2)], &[("modality", "image")]);
        let b = shard(&[("z", 4)], &[("modality", "text"), ("other", "1")]);
        let index =
            serde_json::json!({"weight_map": {"z": "m-1", "x": "m-2", "y": "m-2"}, "metadata": {"total_size": 36}});
        // With an index the shards come in file-name order (z first), whatever order they are given in.
        let m = merge_shards(&[sh("m-2", &a), sh("m-1", &b)], Some(&index)).unwrap();
        assert_eq!(
            m.shards,
            vec![ShardSummary { name: "m-1".into(), tensors: 1 }, ShardSummary { name: "m-2".into(), tensors: 2 }]
        );
        let h = parse_header(&m.header, Some(m.size)).unwrap();
        assert_eq!(h.metadata.get("modality").map(String::as_str), Some("text"));
        assert_eq!(h.metadata.get("total_size").map(String::as_str), Some("36"));
        assert_eq!(m.header.len() % 8, 0);
        // Every tensor's bytes, read through the segment table, are the shard's own.
        let shards = [&a, &b]; // as given: m-2, m-1
        for t in &h.tensors {
            let (start, end) = h.file_range(t);
            let seg = m.segments.iter().find(|s| s.start <= start && end <= s.end).unwrap();
            let src = shards[seg.shard as usize];
            let bytes = &src[(seg.offset + start - seg.start) as usize..(seg.offset + end - seg.start) as usize];
            let own = parse_header(src, None).unwrap();
            let ot = own.find(&t.name).unwrap();
            let (oa, ob) = own.file_range(ot);
            assert_eq!(bytes, &src[oa as usize..ob as usize], "{}", t.name);
        }
        // Without an index the given order is kept.
        let m = merge_shards(&[sh("m-2", &a), sh("m-1", &b)], None).unwrap();
        assert_eq!(m.shards[0].name, "m-2");
    }

    #[test]
    fn inconsistent_shard_sets_are_named() {
        let a = shard(&[("x", 3)], &[]);
        let b = shard(&[("x", 1)], &[]);
        let err = |r: Result<MergedShards>| r.unwrap_err().to_string();
        assert!(err(merge_shards(&[sh("a", &a), sh("b", &b)], None)).contains("is in both 'a' and 'b'"));
        let ix = serde_json::json!({"weight_map": {"x": "a", "w": "c"}});
        assert!(err(merge_shards(&[sh("a", &a)], Some(&ix))).contains("not given: c"));
        let ix = serde_json::json!({"weight_map": {"x": "a"}});
        assert!(err(merge_shards(&[sh("a", &a), sh("b", &b)], Some(&ix))).contains("not in the index's weight_map: b"));
        let c = shard(&[("y", 1)], &[]);
        let ix = serde_json::json!({"weight_map": {"x": "c", "y": "a"}});
        assert!(err(merge_shards(&[sh("a", &a), sh("c", &c)], Some(&ix)))
            .contains("tensor 'x' is in 'a' but the index says 'c'"));
        assert!(err(merge_shards(&[ShardHeader { name: "s", size: 4, header: &[0; 4] }], None))
            .contains("shard 's': 4 bytes"));
        assert!(err(merge_shards(&[], None)).contains("no shards"));
    }
}
