//! The GGUF reader: any input is refused with E_GGUF (or E_TOO_LARGE) or opens into tensors that
//! all decode and export without a panic. Read by range, any prefix of it asks for no more than
//! the file, and opens to the same index once it holds the header.
#![no_main]
use arrowquant::format::gguf::container::{parse_header_prefix, HeaderPrefix};
use arrowquant::format::gguf::reader::GgufFile;
use arrowquant::Dtype;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = GgufFile::open(data.to_vec());
    match &whole {
        Ok(file) => {
            let names: Vec<String> = file.index.tensors.iter().map(|t| t.name.clone()).collect();
            for name in &names {
                let _ = file.dequantize(name);
            }
            let _ = file.export_safetensors(Dtype::F16);
        }
        Err(e) => assert!(matches!(e.code(), "E_GGUF" | "E_TOO_LARGE"), "{e}"),
    }
    // A prefix: its length from the input's first byte.
    let cut = data.first().map_or(0, |&b| data.len() * b as usize / 255);
    match parse_header_prefix(&data[..cut], data.len() as u64) {
        Ok(HeaderPrefix::NeedsBytes(n)) => assert!(n > cut as u64 && n <= data.len() as u64),
        Ok(HeaderPrefix::Complete(h)) => {
            if let Ok(file) = &whole {
                assert_eq!(h.tensors, file.index.header.tensors);
            }
        }
        Err(e) => assert_eq!(e.code(), "E_GGUF", "{e}"),
    }
});
