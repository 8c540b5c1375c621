//! Which bytes to read together. Consecutive tensors that sit back to back in the file are read
//! as one group of up to [`BATCH_BYTES`] (a larger tensor alone): one read of a Blob slice or a
//! file costs far less than many small ones, and with a thread pool a group is quantized together,
//! so many small tensors keep every thread busy; without one each tensor is quantized (and its
//! output taken) alone, so output and progress arrive tensor by tensor. Every reader (the whole-file driver, the JS
//! stream, the HTTP handler, the planning pass) follows this plan; the file is the same for any
//! grouping.

use serde::Serialize;

#[cfg(target_arch = "wasm32")]
use tsify::Tsify;

use crate::format::safetensors::Header;

/// Source bytes read (and, with threads, quantized) together: big enough to give every thread a
/// tensor, small enough that a group's outputs stay a fraction of the model.
pub const BATCH_BYTES: u64 = 16 << 20;

/// A group is read ahead, while the one before it is quantized, only up to this size: the ahead
/// read and the group being quantized are both in memory.
pub const READ_AHEAD_BYTES: u64 = 64 << 20;

/// One read: the absolute byte range `[start, end)` of the file and the tensors it holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct ReadGroup {
    /// First byte of the read (absolute file offset).
    pub start: u64,
    /// One past its last byte.
    pub end: u64,
    /// Tensor names in file order.
    pub tensors: Vec<String>,
    /// Whether to read this group while the previous one is quantized.
    pub read_ahead: bool,
    /// The byte ranges to quantize as one call each, in order: the whole group with a thread
    /// pool, each tensor alone without one.
    #[cfg_attr(target_arch = "wasm32", tsify(type = "[number, number][]"))]
    pub units: Vec<(u64, u64)>,
}

/// The reads that cover every tensor of `header`, in file order. `together`: quantize a group's
/// tensors in one call (with a thread pool).
pub fn read_groups(header: &Header, limit: u64, together: bool) -> Vec<ReadGroup> {
    let ts = &header.tensors;
    let mut groups = Vec::new();
    let mut i = 0;
    while i < ts.len() {
        let mut j = i + 1;
        let mut bytes = ts[i].byte_len();
        while j < ts.len() && ts[j].begin == ts[j - 1].end && bytes + ts[j].byte_len() <= limit {
            bytes += ts[j].byte_len();
            j += 1;
        }
        let (start, _) = header.file_range(&ts[i]);
        let (_, end) = header.file_range(&ts[j - 1]);
        let units = match together {
            true => vec![(start, end)],
            false => ts[i..j].iter().map(|t| header.file_range(t)).collect(),
        };
        groups.push(ReadGroup {
            start,
            end,
            tensors: ts[i..j].iter().map(|t| t.name.clone()).collect(),
            read_ahead: end - start <= READ_AHEAD_BYTES,
            units,
        });
        i = j;
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::safetensors::parse_header;

    fn header(sizes: &[(u64, u64)]) -> Header {
        let entries: Vec<String> = sizes
            .iter()
            .enumerate()
            .map(|(k, (b, e))| {
                format!("\"t{k}\":{{\"dtype\":\"U8\",\"shape\":[{}],\"data_offsets\":[{b},{e}]}}", e - b)
            })
            .collect();
        let json = format!("{{{}}}", entries.join(","));
        let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(json.as_bytes());
        parse_header(&bytes, None).unwrap()
    }

    #[test]
    fn contiguous_tensors_group_up_to_the_limit_and_gaps_split() {
        let h = header(&[(0, 10), (10, 30), (30, 35), (40, 50), (50, 200), (200, 201)]);
        let g = read_groups(&h, 40, true);
        let names: Vec<Vec<&str>> = g.iter().map(|g| g.tensors.iter().map(String::as_str).collect()).collect();
        assert_eq!(names, [vec!["t0", "t1", "t2"], vec!["t3"], vec!["t4"], vec!["t5"]]);
        let d = h.data_offset;
        assert_eq!((g[0].start, g[0].end, g[2].start, g[2].end), (d, d + 35, d + 50, d + 200));
        assert!(g.iter().all(|g| g.read_ahead));
        // Every tensor is in exactly one group, in header order.
        let all: Vec<&str> = g.iter().flat_map(|g| g.tensors.iter().map(String::as_str)).collect();
        assert_eq!(all, ["t0", "t1", "t2", "t3", "t4", "t5"]);
        assert_eq!(g[0].units, vec![(d, d + 35)]);
        // Without a pool each tensor is its own unit.
        let g = read_groups(&h, 40, false);
        assert_eq!(g[0].units, vec![(d, d + 10), (d + 10, d + 30), (d + 30, d + 35)]);
    }
}
