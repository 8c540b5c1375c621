//! Which Parquet codec for the V2 Extended file? Quantizes real and Gaussian weights, rewrites the
//! resulting file with each codec, and reports the size of the `data` (codes) column and of the
//! whole file relative to uncompressed, plus encode time. `make measure-codecs`.

use std::sync::Arc;
use std::time::Instant;

use arrowquant::pipeline::{default_clock, quantize_model};
use arrowquant::policy::config::parse_config_str;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::{FileReader, SerializedFileReader};

fn gaussian_model(n: usize) -> Vec<u8> {
    let mut s = 1u64;
    let mut vals = Vec::with_capacity(n);
    while vals.len() < n {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let u = ((s >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let v = (s >> 11) as f64 / (1u64 << 53) as f64;
        vals.push(((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32);
    }
    let header =
        format!(r#"{{"g.weight":{{"dtype":"F32","shape":[{},4096],"data_offsets":[0,{}]}}}}"#, n / 4096, n * 4);
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend(vals.iter().flat_map(|v| v.to_le_bytes()));
    out
}

/// (data column compressed bytes, data column uncompressed bytes, file bytes, encode seconds)
fn rewrite(file: &[u8], codec: Compression) -> (i64, i64, usize, f64) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(Bytes::copy_from_slice(file)).unwrap();
    let schema = builder.schema().clone();
    let batches: Vec<_> = builder.build().unwrap().map(|b| b.unwrap()).collect();
    let props = WriterProperties::builder()
        .set_compression(codec)
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::None)
        .build();
    let t = Instant::now();
    let mut w = ArrowWriter::try_new_with_options(
        Vec::new(),
        Arc::clone(&schema),
        ArrowWriterOptions::new().with_properties(props).with_skip_arrow_metadata(true),
    )
    .unwrap();
    for b in &batches {
        w.write(b).unwrap();
    }
    let out = w.into_inner().unwrap();
    let secs = t.elapsed().as_secs_f64();
    let reader = SerializedFileReader::new(Bytes::from(out.clone())).unwrap();
    let (mut comp, mut uncomp) = (0, 0);
    for rg in reader.metadata().row_groups() {
        for c in rg.columns() {
            if c.column_path().string() == "data" {
                comp += c.compressed_size();
                uncomp += c.uncompressed_size();
            }
        }
    }
    (comp, uncomp, out.len(), secs)
}

fn main() {
    let root = env!("CARGO_MANIFEST_DIR");
    let real = |p: &str| std::fs::read(format!("{root}/{p}")).unwrap();
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("gaussian 8M f32", gaussian_model(8 << 20)),
        ("RivaGAN F32", real("samples/rivagan_f32.safetensors")),
        ("MiniLM BF16", real("tests/data/minilm_l6_bf16_subset.safetensors")),
    ];
    let codecs = [
        ("none", Compression::UNCOMPRESSED),
        ("snappy", Compression::SNAPPY),
        ("lz4_raw", Compression::LZ4_RAW),
        ("zstd(1)", Compression::ZSTD(ZstdLevel::try_new(1).unwrap())),
        ("zstd(3)", Compression::ZSTD(ZstdLevel::try_new(3).unwrap())),
    ];
    println!("| input | bits | codec | codes column (compressed ÷ raw) | whole file vs none | encode ms |");
    println!("|---|---|---|---|---|---|");
    for (label, model) in &inputs {
        for bits in [2, 4, 8] {
            let cfg = parse_config_str(&format!(r#"{{"bitWidth":{bits},"groupSize":64,"minAccuracy":0}}"#)).unwrap();
            let (file, _) = quantize_model(model, cfg, None, default_clock, &mut |_| true).unwrap();
            let (_, _, base_len, _) = rewrite(&file, Compression::UNCOMPRESSED);
            for (name, codec) in codecs {
                let (c, u, len, secs) = rewrite(&file, codec);
                println!(
                    "| {label} | {bits} | {name} | {:.3} | {:.3} | {:.1} |",
                    c as f64 / u as f64,
                    len as f64 / base_len as f64,
                    secs * 1e3
                );
            }
        }
    }
}
