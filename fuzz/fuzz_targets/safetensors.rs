//! The safetensors header parser, and for files small enough the whole quantization pipeline over
//! them: any input is an error with a code or a file the reader opens again.
#![no_main]
use arrowquant::format::safetensors::parse_header;
use arrowquant::pipeline::quantize_model;
use arrowquant::{QuantConfig, QuantizedFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if parse_header(data, Some(data.len() as u64)).is_err() || data.len() > 1 << 16 {
        return;
    }
    match quantize_model(data, QuantConfig::base_mode(), None, || 0.0, &mut |_| true) {
        Ok((parquet, report)) => {
            let file = QuantizedFile::open(parquet).expect("our own output opens");
            assert_eq!(file.rows.len(), report.layers.len());
        }
        Err(e) => assert!(e.code().starts_with("E_"), "{e}"),
    }
});
