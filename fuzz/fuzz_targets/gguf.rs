//! The GGUF reader: any input is refused with E_GGUF (or E_TOO_LARGE) or opens into tensors that
//! all decode and export without a panic.
#![no_main]
use arrowquant::format::gguf::reader::GgufFile;
use arrowquant::Dtype;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match GgufFile::open(data.to_vec()) {
        Ok(file) => {
            let names: Vec<String> = file.tensors.iter().map(|t| t.name.clone()).collect();
            for name in &names {
                let _ = file.dequantize(name);
            }
            let _ = file.export_safetensors(Dtype::F16);
        }
        Err(e) => assert!(matches!(e.code(), "E_GGUF" | "E_TOO_LARGE"), "{e}"),
    }
});
