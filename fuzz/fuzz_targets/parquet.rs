//! The Parquet reader: any input is refused with E_PARQUET or opens into rows whose every tensor
//! dequantizes and exports without a panic.
#![no_main]
use arrowquant::{Dtype, QuantizedFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match QuantizedFile::open(data.to_vec()) {
        Ok(file) => {
            let names: Vec<String> = file.rows.iter().map(|r| r.name.clone()).collect();
            for name in &names {
                let _ = file.dequantize(name);
                let _ = file.export_tensor(name, Dtype::F16);
            }
            let _ = file.export_header(Dtype::F32);
        }
        Err(e) => assert_eq!(e.code(), "E_PARQUET", "{e}"),
    }
});
