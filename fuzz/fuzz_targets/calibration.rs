//! The calibration reader (safetensors and JSON carriers): E_CALIBRATION or statistics.
#![no_main]
use arrowquant::diffusion::calibration::Calibration;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = Calibration::from_bytes(data) {
        assert_eq!(e.code(), "E_CALIBRATION", "{e}");
    }
});
