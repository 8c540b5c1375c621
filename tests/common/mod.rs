//! Helpers shared by the native and wasm test binaries: a seeded RNG and tiny file builders.
#![allow(dead_code)]

/// PCG-style generator: the same stream on every target.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u32(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 ^ (self.0 >> 22)) >> 22) as u32
    }
    /// Uniform in (0, 1].
    pub fn unit(&mut self) -> f64 {
        (self.next_u32() as f64 + 1.0) / 4294967296.0
    }
    /// Standard normal (Box–Muller).
    pub fn gauss(&mut self) -> f32 {
        let (u, v) = (self.unit(), self.unit());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }
}

/// A safetensors file from (name, dtype, shape, little-endian bytes).
pub fn safetensors_file(tensors: &[(&str, &str, Vec<u64>, Vec<u8>)]) -> Vec<u8> {
    let mut entries = Vec::new();
    let mut offset = 0usize;
    for (name, dtype, shape, bytes) in tensors {
        let shape_s = shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(",");
        entries.push(format!(
            r#""{name}":{{"dtype":"{dtype}","shape":[{shape_s}],"data_offsets":[{offset},{}]}}"#,
            offset + bytes.len()
        ));
        offset += bytes.len();
    }
    let header = format!("{{{}}}", entries.join(","));
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    for (_, _, _, bytes) in tensors {
        out.extend_from_slice(bytes);
    }
    out
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// SNR and cosine of quantizing `n` N(0,1) samples as one [rows, row_len] tensor: min/max, or the
/// range search with least-squares params (`search`), or with gain-matched params (`match_gain`).
pub fn gaussian_quality(n: usize, bits: u8, group: u32, search: bool, match_gain: bool) -> (f64, f64) {
    use arrowquant::quant::layout::Layout;
    use arrowquant::quant::tensor::{quantize_source, ParamChoice, Source};
    use arrowquant::quant::width::Width;
    let mut rng = Rng::new(42);
    let vals: Vec<f32> = (0..n).map(|_| rng.gauss()).collect();
    let bytes = f32_bytes(&vals);
    let src = Source { name: "gauss", dtype: arrowquant::Dtype::F32, bytes: &bytes };
    let row_len = 4096;
    let layout = Layout::for_shape(&[(n / row_len) as u64, row_len as u64], group as usize);
    let choice = if search { ParamChoice::Search { match_gain } } else { ParamChoice::MinMax };
    let (_, sums) = quantize_source(src, layout, Width::from_bits(bits).unwrap(), choice).unwrap().unwrap();
    (sums.snr_db(), sums.cosine())
}
